//! The hooks of scoped policies, listed by attach point and caller class (`vigil_class_hooks`,
//! read by `run_hooks_of_key` in `bpf-kprobes/src/bpf/include/hook_run.h`). A class is a set of
//! scopes some pod's cgroup is in (`scopes.rs`); its list on a point holds every hook there whose
//! policy's scope is in the set, so a call runs the hooks for every process and then its class's
//! list, and nothing of the scopes its process is not in.
//!
//! Lists are computed from the hooks installed now and written where they differ from what is
//! in the kernel; a hash map's entry is replaced whole, so a call sees the old list or the new.
//! When the classes change (a pod comes, a scoped policy comes or goes), the lists of a new class
//! are written before any cgroup is given it, and those of a class no cgroup has are removed a
//! while after the last cgroup left it.

use std::collections::HashMap as StdHashMap;

use aya::{
    maps::{HashMap, MapData},
    Pod,
};
use vigil_bpf_kprobes::abi;

use super::{hook_slots::HookListPod, map_err, scopes::ScopeChanges, PolicyLoadError, PolicyTable};

#[derive(Clone, Copy)]
#[repr(transparent)]
pub(super) struct ClassListKeyPod(abi::ClassListKey);
// SAFETY: #[repr(C)] integers only.
unsafe impl Pod for ClassListKeyPod {}

/// `vigil_class_hooks` and what is written in it.
pub(super) struct ClassLists {
    map: HashMap<MapData, ClassListKeyPod, HookListPod>,
    written: StdHashMap<(u64, u32), Vec<u32>>,
}

impl ClassLists {
    pub(super) fn new(map: HashMap<MapData, ClassListKeyPod, HookListPod>) -> Self {
        ClassLists {
            map,
            written: StdHashMap::new(),
        }
    }

    /// The lists written now, and the slots they hold: what the kernel holds for the
    /// scoped policies' hooks.
    pub(super) fn entries(&self) -> impl Iterator<Item = (&(u64, u32), &Vec<u32>)> {
        self.written.iter()
    }

    fn key(key: u64, cls: u32) -> ClassListKeyPod {
        ClassListKeyPod(abi::ClassListKey { key, cls, _pad0: 0 })
    }

    fn remove(&mut self, key: u64, cls: u32) {
        let _ = self.map.remove(&Self::key(key, cls));
        self.written.remove(&(key, cls));
    }
}

impl PolicyTable {
    /// The attach points scoped policies' hooks are on.
    fn scoped_keys(&self) -> Vec<u64> {
        let mut keys: Vec<u64> = self
            .hook_slots
            .iter()
            .flatten()
            .filter(|h| h.scope != 0)
            .flat_map(|h| h.keys().iter().copied())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Writes the lists of attach point `key` of the classes `which` from the hooks installed
    /// now, and removes those of them no hook needs. A class that would hold more hooks than
    /// a list keeps is refused (its list is left as it was); the other lists are written.
    pub(super) fn write_class_lists(
        &mut self,
        policy: &str,
        key: u64,
        which: &[u32],
    ) -> Result<(), PolicyLoadError> {
        let scoped: Vec<(u32, u16)> = self
            .hook_slots
            .iter()
            .enumerate()
            .filter_map(|(slot, h)| h.as_ref().map(|h| (slot as u32, h)))
            .filter(|(_, h)| h.scope != 0 && h.keys().contains(&key))
            .map(|(slot, h)| (slot, h.scope))
            .collect();
        let mut wanted: StdHashMap<u32, Vec<u32>> = StdHashMap::new();
        if !scoped.is_empty() {
            let classes = self.scopes.classes();
            for (cls, scopes) in which.iter().filter_map(|c| classes.get_key_value(c)) {
                let slots: Vec<u32> = scoped
                    .iter()
                    .filter(|(_, scope)| scopes.contains(scope))
                    .map(|(slot, _)| *slot)
                    .collect();
                if !slots.is_empty() {
                    wanted.insert(*cls, slots);
                }
            }
        }
        let mut first_error = None;
        for (cls, slots) in &wanted {
            if self.class_lists.written.get(&(key, *cls)) == Some(slots) {
                continue;
            }
            if slots.len() > abi::HOOKS_PER_KEY {
                first_error.get_or_insert(PolicyLoadError::Refused(format!(
                    "{policy}: {} hooks of scoped policies on one function would apply to the same pods; the kernel runs at most {} of them there",
                    slots.len(),
                    abi::HOOKS_PER_KEY
                )));
                continue;
            }
            let mut list = abi::HookList {
                n: slots.len() as u32,
                ..Default::default()
            };
            for (d, s) in list.slot.iter_mut().zip(slots) {
                *d = *s;
            }
            match self
                .class_lists
                .map
                .insert(ClassLists::key(key, *cls), HookListPod(list), 0)
            {
                Ok(()) => {
                    self.class_lists.written.insert((key, *cls), slots.clone());
                }
                Err(e) => {
                    first_error.get_or_insert(map_err(policy, "vigil_class_hooks", e));
                }
            }
        }
        let stale: Vec<u32> = which
            .iter()
            .filter(|cls| !wanted.contains_key(cls))
            .filter(|cls| self.class_lists.written.contains_key(&(key, **cls)))
            .copied()
            .collect();
        for cls in stale {
            self.class_lists.remove(key, cls);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Brings the scoped policies' pods and classes in the kernel up to date with the pod
    /// store (when it changed, or `force`): the lists of each class the plan makes are
    /// written before any cgroup is given that class (a class's lists change only with its
    /// hooks, which write them), then the plan is applied, then the lists of classes retired
    /// a while ago are removed.
    pub fn sync_scopes(&mut self, force: bool) -> Result<ScopeChanges, PolicyLoadError> {
        let mut first_error = None;
        if force || self.scopes.needs_sync() {
            let mut plan = self.scopes.plan();
            let new: Vec<u32> = plan.new_classes().collect();
            let mut failed = std::collections::HashSet::new();
            if !new.is_empty() {
                let keys = self.scoped_keys();
                for cls in new {
                    for &key in &keys {
                        if let Err(e) = self.write_class_lists("-", key, &[cls]) {
                            failed.insert(cls);
                            first_error.get_or_insert(e);
                        }
                    }
                }
            }
            // A class whose lists are not all written is given to no cgroup: its pods keep the
            // class they have, and the plan is made again next tick.
            if !failed.is_empty() {
                plan.withhold(&failed, self.scopes.cgroup_classes());
                self.scopes.retry();
            }
            let retry = !failed.is_empty();
            match self.scopes.apply(plan) {
                Ok(changes) => {
                    if retry {
                        self.scopes.retry();
                    }
                    self.drop_retired();
                    return first_error.map_or(Ok(changes), Err);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.drop_retired();
        first_error.map_or(Ok(ScopeChanges::default()), Err)
    }

    /// Removes the lists of the classes retired long enough ago.
    fn drop_retired(&mut self) {
        let retired = self.scopes.take_retired();
        if retired.is_empty() {
            return;
        }
        let gone: Vec<(u64, u32)> = self
            .class_lists
            .written
            .keys()
            .filter(|(_, cls)| retired.contains(cls))
            .copied()
            .collect();
        for (key, cls) in gone {
            self.class_lists.remove(key, cls);
        }
    }
}
