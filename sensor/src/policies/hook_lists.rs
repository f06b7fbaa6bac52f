//! The lists of hooks on each attach point, which `run_hooks_of_key`
//! (`bpf-kprobes/src/bpf/include/hook_run.h`) runs: `vigil_hooks` by attach point, the hooks of
//! policies for every process (and whether scoped ones are there too, and the gate), and
//! `vigil_class_hooks` by attach point and caller class, the hooks of scoped policies. A class
//! is a set of scopes some pod's cgroup is in (`scopes.rs`); its list on a point holds every
//! hook there whose policy's scope is in the set, so a call runs the hooks for every process and
//! then its class's list, and nothing of the scopes its process is not in. How long each list
//! may grow is checked before a policy is written ([`PolicyTable::check_room`]).
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

use vigil_policy_engine::{compile::HookRule, overrides::overrides, scope::PodScope};

use super::{
    gates::{list_gate, list_mask_gate},
    hook_slots::{HookListPod, Placement},
    map_err,
    scopes::ScopeChanges,
    PolicyLoadError, PolicyTable,
};

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

impl PolicyTable {
    /// The slots of the hooks on attach point `key`.
    pub(super) fn hooks_on(&self, key: u64) -> Vec<u32> {
        (0..self.hook_slots.len())
            .filter(|&i| {
                self.hook_slots[i]
                    .as_ref()
                    .is_some_and(|h| h.keys().contains(&key))
            })
            .map(|i| i as u32)
            .collect()
    }

    /// Refuses hooks that would make an attach point's list longer than the kernel keeps. A
    /// scoped policy's hooks go on its pods' class lists, which hold the scoped hooks of one
    /// namespace and the cluster-wide scoped ones: each of those two is held to
    /// [`abi::SCOPED_HOOKS_PER_KEY`] per function, so no class can outgrow its list whatever
    /// pods come, and a namespace's policies never take another's room.
    pub(super) fn check_room(
        &self,
        file: &str,
        replacing: Option<&str>,
        hooks: &[HookRule],
        placed: &[Placement],
        scope: Option<&PodScope>,
    ) -> Result<(), PolicyLoadError> {
        if let Some(scope) = scope {
            let namespace = scope.namespace.as_deref();
            for (h, p) in hooks.iter().zip(placed) {
                for &k in &p.keys {
                    let new = placed.iter().filter(|o| o.keys.contains(&k)).count();
                    let old = self
                        .hooks_on(k)
                        .into_iter()
                        .filter_map(|s| self.hook(s))
                        .filter(|o| o.scope != 0 && Some(o.policy.as_str()) != replacing)
                        .filter(|o| self.scopes.namespace_of(o.scope) == Some(namespace))
                        .count();
                    if old + new > abi::SCOPED_HOOKS_PER_KEY {
                        let whose = namespace
                            .map_or("cluster-wide scoped policies".to_string(), |n| {
                                format!("the policies of namespace {n}")
                            });
                        return Err(PolicyLoadError::Refused(format!(
                            "{file}: {}: {whose} already hook {} {old} times; the kernel runs at most {} of them on one function: remove one of them first",
                            h.hook_path,
                            h.call,
                            abi::SCOPED_HOOKS_PER_KEY
                        )));
                    }
                }
            }
            return Ok(());
        }
        for (h, p) in hooks.iter().zip(placed) {
            for &k in &p.keys {
                let new = placed.iter().filter(|o| o.keys.contains(&k)).count();
                let old = self.unscoped_hooks_on(k).len();
                if old + new > abi::HOOKS_PER_KEY {
                    let others: Vec<&str> = self
                        .unscoped_hooks_on(k)
                        .iter()
                        .filter_map(|&s| self.hook(s))
                        .map(|o| o.policy.as_str())
                        .filter(|p| Some(*p) != replacing)
                        .collect();
                    return Err(PolicyLoadError::Refused(format!(
                        "{file}: {}: {} already runs {old} hooks of policies for every process (policies {}); the kernel runs at most {} of them on one function (scoped policies' hooks are counted apart, per pod): remove one of them first",
                        h.hook_path,
                        h.call,
                        others.join(", "),
                        abi::HOOKS_PER_KEY
                    )));
                }
            }
        }
        Ok(())
    }

    /// The slots of the hooks for every process on attach point `key`.
    fn unscoped_hooks_on(&self, key: u64) -> Vec<u32> {
        self.hooks_on(key)
            .into_iter()
            .filter(|&s| self.hook(s).is_some_and(|h| h.scope == 0))
            .collect()
    }

    /// Writes the lists of hooks on `key` from the hooks installed now (their descriptions
    /// being written first), where a hook of `scope` came or went: the lists of the classes
    /// that hold that scope (none for 0, every process), then the list for every process,
    /// which also says whether scoped hooks are there; or removes the key when no hook is left.
    pub(super) fn write_hook_list(
        &mut self,
        policy: &str,
        key: u64,
        scope: u16,
    ) -> Result<(), PolicyLoadError> {
        let slots = self.hooks_on(key);
        let classes = match scope {
            0 => Ok(()),
            s => {
                let classes = self.scopes.classes_of_scope(s);
                self.write_class_lists(policy, key, &classes)
            }
        };
        if slots.is_empty() {
            let _ = self.hooks.remove(&key);
            self.write_gate(policy, key, (None, None), &mut abi::HookList::default())?;
            return classes;
        }
        let unscoped = self.unscoped_hooks_on(key);
        if unscoped.len() > abi::HOOKS_PER_KEY {
            // check_room refuses such an install before anything is written.
            return Err(PolicyLoadError::Refused(format!(
                "{} hooks on one attach point; the kernel runs at most {}",
                unscoped.len(),
                abi::HOOKS_PER_KEY
            )));
        }
        let installed = || slots.iter().filter_map(|s| self.hook(*s));
        let clears = installed().any(|i| overrides(&i.rule));
        let scoped = installed().any(|i| i.scope != 0);
        // The hooks on one point agree on what it is; the first says.
        let syscall_regs = installed()
            .next()
            .is_some_and(|i| i.cfg_flags & abi::HOOK_SYSCALL != 0);
        let mut list = abi::HookList {
            n: unscoped.len() as u32,
            flags: if clears { abi::LIST_CLEARS_VERDICT } else { 0 }
                | if scoped { abi::LIST_SCOPED } else { 0 }
                | if syscall_regs {
                    abi::LIST_SYSCALL_REGS
                } else {
                    0
                },
            ..Default::default()
        };
        for (d, s) in list.slot.iter_mut().zip(&unscoped) {
            *d = *s;
        }
        // The list without a gate first, so no call is judged by a gate whose values are being
        // rewritten; then the gate's values; then the list with the gate.
        self.hooks
            .insert(key, HookListPod(list), 0)
            .map_err(|e| map_err(policy, "vigil_hooks", e))?;
        let rules: Vec<&HookRule> = slots
            .iter()
            .filter_map(|s| self.hook_slots.get(*s as usize).and_then(Option::as_ref))
            .map(|i| &i.rule)
            .collect();
        let gates = if clears {
            (None, None)
        } else {
            (list_gate(rules.clone()), list_mask_gate(rules))
        };
        self.write_gate(policy, key, gates, &mut list)?;
        if list.gate_ops != 0 || list.gate_mask != 0 {
            self.hooks
                .insert(key, HookListPod(list), 0)
                .map_err(|e| map_err(policy, "vigil_hooks", e))?;
        }
        classes
    }
}
