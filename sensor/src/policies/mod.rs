//! Policies in the kernel: a [`Prepared`] policy (validated, compiled and planned by
//! `vigil_policy_engine::prepare`) lowered into maps, and the table that turns a matched rule
//! back into the policy's name, hook and action for events. File-open hooks go to the
//! file-open evaluator's rules (`file_rules.rs`), every other hook to a generic hook slot
//! (`hook_slots.rs`, its selectors in `hook_rules.rs`), listed on the attach point its plan
//! chose (`hook_lists.rs`: for every process, or for the pods' classes of a scoped policy).
//!
//! A policy is installed whole or not at all: it is prepared before any map is touched; then
//! [`PolicyTable::install`] writes it beside the running ones (a version it
//! replaces keeps running), the caller attaches its hooks, and [`PolicyTable::commit`] retires
//! the replaced version, or [`PolicyTable::abort`] removes everything the install added (rules,
//! values, prefilter names, selectors, hook lists and links), leaving the table as it was.

use std::collections::BTreeMap;

use aya::{
    maps::{Array, HashMap, LpmTrie, MapData},
    Pod,
};
use thiserror::Error;
use vigil_bpf_kprobes::abi;

use crate::loader::{FileOpenVia, HookLink};

mod file_rules;
mod gates;
mod hook_lists;
mod hook_rules;
mod hook_slots;
pub mod inodes;
pub mod scopes;
mod tracepoint_fields;
pub use file_rules::FileRule;
use file_rules::{kernel_action, prefilter_names};
use hook_rules::HookRuleMaps;
use hook_slots::{hook_keys, HookConfigPod, HookListPod, Placement};
pub use hook_slots::{AttachTarget, InstalledHook};
use scopes::PodScopes;
use vigil_policy_engine::{
    compile::HookRule, kernel::RunningKernel, plan::describe_mechanism, scope::PodScope, Prepared,
};

/// Why a policy was refused.
#[derive(Debug, Error)]
pub enum PolicyLoadError {
    /// The policy does not fit beside the running ones, or its hooks cannot be placed; every
    /// reason, one per line.
    #[error("{0}")]
    Refused(String),
    /// The kernel refused a map update.
    #[error("policy {policy}: map {map}: {detail}")]
    Map {
        /// Policy name.
        policy: String,
        /// Map name.
        map: &'static str,
        /// The error.
        detail: String,
    },
}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct RulePod(abi::Rule);
// SAFETY: #[repr(C)] integers only.
unsafe impl Pod for RulePod {}

#[derive(Clone, Copy)]
#[repr(transparent)]
pub(super) struct MatchKeyPod(abi::MatchKey);
// SAFETY: #[repr(C)] integers and bytes only.
unsafe impl Pod for MatchKeyPod {}

#[derive(Clone, Copy)]
#[repr(transparent)]
struct StatePod(abi::PolicyState);
// SAFETY: #[repr(C)] integers only.
unsafe impl Pod for StatePod {}

/// A rule the kernel may report, as events name it.
#[derive(Debug, Clone)]
pub struct InstalledRule {
    /// The policy's name.
    pub policy: String,
    /// Its hook's first-match group in the kernel (a bit of the walk's mask).
    pub group: u32,
    /// The selector, and its hook.
    pub rule: FileRule,
    /// It holds only for the executables its exact `matchBinaries` values name.
    pub bin_scoped: bool,
}

/// The rule maps of the loaded object and what is in them.
pub struct PolicyTable {
    rules: Array<MapData, RulePod>,
    path_exact: HashMap<MapData, MatchKeyPod, u8>,
    path_prefix: LpmTrie<MapData, [u8; abi::LPM_DATA], u8>,
    path_postfix: LpmTrie<MapData, [u8; abi::LPM_DATA], u8>,
    bin_exact: HashMap<MapData, MatchKeyPod, u8>,
    bin_prefix: LpmTrie<MapData, [u8; abi::LPM_DATA], u8>,
    names: HashMap<MapData, [u8; abi::NAME_LEN], u64>,
    /// Exact path values by the file they name (`vigil_path_inodes`).
    inodes: inodes::InodeKeys,
    /// Exact binary values by the file they name (`vigil_bin_inodes`).
    bin_inodes: inodes::InodeKeys,
    state: Array<MapData, StatePod>,
    slots: Vec<Option<InstalledRule>>,
    /// The hooks on each attach point (`vigil_hooks`) and each hook's description.
    hooks: HashMap<MapData, u64, HookListPod>,
    /// The entries that keep their arguments for a hook on the return (`vigil_entry_saves`).
    entry_saves: HashMap<MapData, u64, u64>,
    hook_configs: HashMap<MapData, u32, HookConfigPod>,
    /// The scoped policies' hooks by attach point and caller class (`vigil_class_hooks`).
    class_lists: hook_lists::ClassLists,
    hook_slots: Vec<Option<InstalledHook>>,
    hook_maps: HookRuleMaps,
    /// The hook slot owning each selector slot.
    hook_rule_owner: Vec<Option<usize>>,
    /// The host's namespaces, for `host_ns` values.
    host_ns: [u32; abi::NS_COUNT],
    /// Last selector or gate generation written (`vigil_hook_rule.generation`,
    /// `vigil_hook_list.gate_generation`).
    generation: u32,
    /// The keys each list's gate wrote its values under (`gates.rs`).
    gates: std::collections::HashMap<u64, Vec<hook_rules::WrittenKey>>,
    /// The number of each kprobe list's gate key, and the next number to hand out (`gates.rs`).
    kprobe_gates: std::collections::HashMap<u64, u16>,
    next_kprobe_gate: u16,
    policies: BTreeMap<String, u32>,
    /// The rule slots (a bit each) with a value of each prefilter name (`vigil_names`).
    name_rules: std::collections::HashMap<[u8; abi::NAME_LEN], u64>,
    /// The pods of scoped policies (`vigil_scopes`).
    pub scopes: PodScopes,
    /// The scope of each running scoped policy.
    policy_scopes: BTreeMap<String, u16>,
}

fn map_err(policy: &str, map: &'static str, e: impl std::fmt::Display) -> PolicyLoadError {
    PolicyLoadError::Map {
        policy: policy.to_string(),
        map,
        detail: e.to_string(),
    }
}

/// Takes map `name` out of the agent's object, as the type that reads it.
fn take<M>(ebpf: &mut aya::Ebpf, name: &'static str) -> Result<M, PolicyLoadError>
where
    M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| map_err("-", name, "not in the embedded object"))?;
    M::try_from(map).map_err(|e| map_err("-", name, e))
}

impl PolicyTable {
    /// The bytes of kernel map entries each running policy holds: its file-open rules and the
    /// values they match, its hooks ([`InstalledHook::kernel_bytes`]), and its share of the
    /// hook lists it is on (each list's bytes split evenly among the hooks it holds; a key's
    /// list for every process exists for the scoped hooks on the key too, and is shared by
    /// them all). One pass over what is loaded, so a scrape of a thousand policies costs what
    /// one does.
    pub fn kernel_bytes_by_policy(&self) -> std::collections::HashMap<String, u64> {
        let mut bytes: std::collections::HashMap<&str, f64> = Default::default();
        for r in self.slots.iter().flatten() {
            *bytes.entry(r.policy.as_str()).or_default() +=
                (std::mem::size_of::<abi::Rule>() + r.rule.entry_bytes()) as f64;
        }
        let mut on_key: std::collections::HashMap<u64, Vec<&str>> = Default::default();
        for h in self.hook_slots.iter().flatten() {
            *bytes.entry(h.policy.as_str()).or_default() += h.kernel_bytes() as f64;
            for k in h.keys() {
                on_key.entry(*k).or_default().push(h.policy.as_str());
            }
        }
        let size = std::mem::size_of::<abi::HookList>() as f64;
        for owners in on_key.values() {
            for o in owners {
                *bytes.entry(o).or_default() += size / owners.len() as f64;
            }
        }
        for (_, slots) in self.class_lists.entries() {
            for s in slots {
                if let Some(h) = self.hook(*s) {
                    *bytes.entry(h.policy.as_str()).or_default() += size / slots.len() as f64;
                }
            }
        }
        bytes
            .into_iter()
            .map(|(name, b)| (name.to_string(), b.round() as u64))
            .collect()
    }

    /// Takes the rule maps out of the agent's object.
    pub fn new(ebpf: &mut aya::Ebpf) -> Result<Self, PolicyLoadError> {
        Ok(PolicyTable {
            rules: take(ebpf, "vigil_rules")?,
            path_exact: take(ebpf, "vigil_path_exact")?,
            path_prefix: take(ebpf, "vigil_path_prefix")?,
            path_postfix: take(ebpf, "vigil_path_postfix")?,
            bin_exact: take(ebpf, "vigil_bin_exact")?,
            bin_prefix: take(ebpf, "vigil_bin_prefix")?,
            names: take(ebpf, "vigil_names")?,
            inodes: inodes::InodeKeys::new(take(ebpf, "vigil_path_inodes")?, "vigil_path_inodes"),
            bin_inodes: inodes::InodeKeys::new(take(ebpf, "vigil_bin_inodes")?, "vigil_bin_inodes"),
            state: take(ebpf, "vigil_policy_state_map")?,
            slots: vec![None; abi::MAX_RULES],
            hooks: take(ebpf, "vigil_hooks")?,
            entry_saves: take(ebpf, "vigil_entry_saves")?,
            hook_configs: take(ebpf, "vigil_hook_configs")?,
            class_lists: hook_lists::ClassLists::new(take(ebpf, "vigil_class_hooks")?),
            hook_slots: (0..abi::HOOK_SLOTS).map(|_| None).collect(),
            hook_maps: HookRuleMaps {
                rules: take(ebpf, "vigil_hook_rules")?,
                values: take(ebpf, "vigil_hook_values")?,
                cidrs: take(ebpf, "vigil_hook_cidrs")?,
            },
            hook_rule_owner: vec![None; abi::HOOK_RULES],
            host_ns: crate::identity::host_namespaces(),
            generation: 0,
            gates: Default::default(),
            kprobe_gates: Default::default(),
            next_kprobe_gate: 0,
            policies: BTreeMap::new(),
            name_rules: Default::default(),
            scopes: PodScopes::new(ebpf)?,
            policy_scopes: BTreeMap::new(),
        })
    }

    /// The rule in `slot`, for events.
    pub fn rule(&self, slot: u32) -> Option<&InstalledRule> {
        self.slots.get(slot as usize).and_then(|s| s.as_ref())
    }

    /// Looks the files of exact path values up again (a file replaced under its name is
    /// followed); returns the names that point at another file now.
    pub fn refresh_inodes(&mut self) -> Vec<String> {
        let mut moved = self.inodes.refresh();
        moved.extend(self.bin_inodes.refresh());
        moved
    }

    /// Whether any installed rule runs on file opens.
    pub fn has_file_rules(&self) -> bool {
        self.slots.iter().any(|s| s.is_some())
    }

    /// Writes a prepared policy beside the running ones; `replacing` names a loaded policy
    /// this one replaces, which keeps running until [`PolicyTable::commit`] (so enforcement
    /// never lapses). Returns what was installed and where its hooks must be attached. When a
    /// write fails, everything the install wrote is removed before the error is returned.
    pub fn install(
        &mut self,
        p: Prepared,
        replacing: Option<&str>,
        kernel: Option<&RunningKernel>,
    ) -> Result<Installed, PolicyLoadError> {
        let file = p.file.clone();
        let name = p.name().to_string();
        let scope = PodScope::of(&p.policy);
        let mut lowered = Lowered::default();
        let mut placed = Vec::new();
        let mut report = Vec::new();
        for h in p.hooks {
            let attach = describe_mechanism(&h.plan.mechanism);
            report.push(HookReport {
                path: h.rule.hook_path.clone(),
                hook: h.rule.call.clone(),
                attach,
                guarantee: h.plan.guarantee.describe().to_string(),
            });
            if h.rule.is_file_open() {
                lowered.file_open_via = FileOpenVia::of(&h.plan.mechanism);
                let rules = FileRule::of(h.rule)
                    .map_err(|e| PolicyLoadError::Refused(format!("{file}: {e}")))?;
                lowered.rules.extend(rules);
                continue;
            }
            // A hook this kernel cannot place refuses the whole policy.
            let place = hook_keys(&h.rule, &h.plan.mechanism, kernel).map_err(|e| {
                PolicyLoadError::Refused(format!("{file}: {}: {e}", h.rule.hook_path))
            })?;
            placed.push(place);
            lowered.hooks.push(h.rule);
        }
        let p = lowered;
        let free_hooks: Vec<usize> = (0..self.hook_slots.len())
            .filter(|i| self.hook_slots[*i].is_none())
            .collect();
        if free_hooks.len() < p.hooks.len() {
            return Err(PolicyLoadError::Refused(format!(
                "{file}: no room for {} more hooks: the kernel holds {} generic hooks over every loaded policy (vigil_hook_configs) and {} are free; remove a policy first",
                p.hooks.len(),
                abi::HOOK_SLOTS,
                free_hooks.len()
            )));
        }
        self.check_room(&file, replacing, &p.hooks, &placed, scope.as_ref())?;
        if self.policies.contains_key(&name) && replacing != Some(name.as_str()) {
            return Err(PolicyLoadError::Refused(format!(
                "{file}: a policy named {name} is already loaded"
            )));
        }
        let free: Vec<u32> = (0..abi::MAX_RULES as u32)
            .filter(|s| self.slots[*s as usize].is_none())
            .collect();
        if free.len() < p.rules.len() {
            return Err(PolicyLoadError::Refused(format!(
                "{file}: the policy has {} selectors and only {} of the kernel's {} rule slots are free",
                p.rules.len(),
                free.len(),
                abi::MAX_RULES
            )));
        }
        // Each file-open hook is a first-match group of its own in the kernel (a bit of the
        // walk's mask), as every other hook is, and as `explain` and `policy test` describe it.
        let used: Vec<u32> = self.slots.iter().flatten().map(|r| r.group).collect();
        let mut groups = BTreeMap::new();
        let mut free_groups = (0..abi::FILE_OPEN_HOOKS as u32).filter(|g| !used.contains(g));
        for r in &p.rules {
            if !groups.contains_key(&r.hook.hook_path) {
                let g = free_groups.next().ok_or_else(|| {
                    PolicyLoadError::Refused(format!(
                        "{file}: {}: the kernel holds {} file-open hooks, and the running policies use them (a reload needs room for the running version and the new one until the new one is attached)",
                        r.hook.hook_path,
                        abi::FILE_OPEN_HOOKS
                    ))
                })?;
                groups.insert(r.hook.hook_path.clone(), g);
            }
        }
        let used: std::collections::HashSet<u32> = self.policies.values().copied().collect();
        let policy_id = (0..).find(|id| !used.contains(id)).unwrap_or(0);
        // The scope's pods are in the kernel before any rule of the policy is.
        let scope_text = scope.as_ref().map(PodScope::describe);
        let scope = match scope {
            Some(s) => self
                .add_scope(&name, s)
                .map_err(|e| PolicyLoadError::Refused(format!("{file}: {e}")))?,
            None => 0,
        };
        let mut staged = Installed {
            name,
            policy_id,
            groups,
            replacing: replacing.map(str::to_string),
            rules: p.rules.len(),
            rule_slots: Vec::new(),
            hook_slots: Vec::new(),
            attach: Vec::new(),
            file_open_via: p.file_open_via,
            report,
            scope,
            scope_text,
        };
        match self.write_policy(p, placed, free, free_hooks, &mut staged) {
            Ok(()) => Ok(staged),
            Err(e) => {
                // Nothing is attached yet, so there are no links to detach.
                let (_, _) = self.abort(staged);
                Err(e)
            }
        }
    }

    /// Writes the rules and hooks of a policy, noting each slot in `staged` as soon as
    /// something of it is in the kernel (so an abort finds it).
    fn write_policy(
        &mut self,
        p: Lowered,
        placed: Vec<Placement>,
        free: Vec<u32>,
        free_hooks: Vec<usize>,
        staged: &mut Installed,
    ) -> Result<(), PolicyLoadError> {
        // A rule that can match any file name turns the open prefilter off before it is
        // active; and the free slots' early exit for other binaries goes before they are
        // written (a slot's last rule may have had one).
        let name = staged.name.clone();
        let names_all = p.rules.iter().all(|r| prefilter_names(r).is_some());
        self.set_prefilter(&name, names_all && self.prefilter_possible())?;
        for (slot, r) in free.into_iter().zip(p.rules) {
            let group = staged.groups.get(&r.hook.hook_path).copied().unwrap_or(0);
            self.write_rule(&name, group, staged.scope, slot, r)?;
            staged.rule_slots.push(slot);
        }
        self.write_hooks(&name, staged, p.hooks, placed, free_hooks)?;
        self.set_prefilter(&name, self.prefilter_possible())
    }

    /// Makes an installed policy the one running: the version it replaces (if any) stops
    /// matching and goes. Returns that version's links to detach, and the first map error met
    /// while removing it (the new version runs either way).
    pub fn commit(&mut self, staged: Installed) -> (Vec<HookLink>, Result<(), PolicyLoadError>) {
        let mut links = Vec::new();
        let mut result = Ok(());
        if let Some(old) = staged.replacing.as_deref() {
            let rules = self.rule_slots_of(old, &staged.rule_slots);
            result = self.remove_rules(&rules);
            let hooks = self.hook_slots_of(old, &staged.hook_slots);
            links = self.remove_hook_slots(&hooks);
            self.policies.remove(old);
            if let Some(scope) = self.policy_scopes.remove(old) {
                self.drop_scope(scope);
            }
        }
        self.policies.insert(staged.name.clone(), staged.policy_id);
        if staged.scope != 0 {
            self.policy_scopes.insert(staged.name.clone(), staged.scope);
        }
        let prefilter = self.set_prefilter(&staged.name, self.prefilter_possible());
        (links, result.and(prefilter))
    }

    /// Removes everything an install added (its rules and values, its hooks and the links
    /// attached for them), leaving the table, and a version it was to replace, as before.
    /// Returns the links to detach and the first map error met.
    pub fn abort(&mut self, staged: Installed) -> (Vec<HookLink>, Result<(), PolicyLoadError>) {
        let links = self.remove_hook_slots(&staged.hook_slots);
        let result = self.remove_rules(&staged.rule_slots);
        if staged.scope != 0 {
            self.drop_scope(staged.scope);
        }
        let prefilter = self.set_prefilter(&staged.name, self.prefilter_possible());
        (links, result.and(prefilter))
    }

    /// Removes a loaded policy: its rules stop matching first, then their values go.
    pub fn uninstall(&mut self, name: &str) -> Result<Vec<HookLink>, PolicyLoadError> {
        let rules = self.rule_slots_of(name, &[]);
        let removed = self.remove_rules(&rules);
        let links = self.remove_hook_slots(&self.hook_slots_of(name, &[]));
        self.policies.remove(name);
        if let Some(scope) = self.policy_scopes.remove(name) {
            self.drop_scope(scope);
        }
        removed.and(self.set_prefilter(name, self.prefilter_possible()))?;
        Ok(links)
    }

    /// Registers the scope of `policy` and writes its pods' cgroups and classes (before any
    /// rule or hook of the policy is written); returns its id. A write the kernel refuses
    /// (another scope's, as like as this one's) does not refuse the policy: it is logged and
    /// tried again every tick, and the policy's log line says how many of its pods' cgroups
    /// are in.
    fn add_scope(&mut self, policy: &str, scope: PodScope) -> Result<u16, PolicyLoadError> {
        let id = self.scopes.register(policy, scope)?;
        if let Err(e) = self.sync_scopes(true) {
            crate::agent::log(format!(
                "policy {policy}: its scope: {e} (tried again every tick)"
            ));
        }
        Ok(id)
    }

    /// Forgets scope `id`, whose policy's rules and hooks are gone, and rewrites the pods'
    /// cgroups and classes without it.
    fn drop_scope(&mut self, id: u16) {
        self.scopes.unregister(id);
        if let Err(e) = self.sync_scopes(true) {
            crate::agent::log(format!("policy scopes: {e}"));
        }
    }

    /// The rule slots of policy `name`, but those in `except`.
    fn rule_slots_of(&self, name: &str, except: &[u32]) -> Vec<u32> {
        (0..abi::MAX_RULES as u32)
            .filter(|s| !except.contains(s))
            .filter(|&s| {
                self.slots[s as usize]
                    .as_ref()
                    .is_some_and(|r| r.policy == name)
            })
            .collect()
    }

    /// Whether every installed rule compares whole paths for equality.
    fn prefilter_possible(&self) -> bool {
        self.slots
            .iter()
            .flatten()
            .all(|i| prefilter_names(&i.rule).is_some())
    }

    fn set_prefilter(&mut self, policy: &str, on: bool) -> Result<(), PolicyLoadError> {
        // Walk up to the last slot in use; a rule being added is written before this, and the
        // state is rewritten after every change, so a new rule is never past the end.
        let rule_end = self
            .slots
            .iter()
            .rposition(|s| s.is_some())
            .map_or(0, |i| i + 1) as u32;
        let bin_scoped = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.as_ref().is_some_and(|r| r.bin_scoped))
            .fold(0u64, |mask, (slot, _)| mask | 1 << (slot % 64));
        let state = abi::PolicyState {
            prefilter: on as u32,
            rule_end,
            bin_scoped,
        };
        self.state
            .set(0, StatePod(state), 0)
            .map_err(|e| map_err(policy, "vigil_policy_state_map", e))
    }
}

/// A prepared policy split by where its hooks go in the kernel.
#[derive(Default)]
struct Lowered {
    /// File-open rules, one per selector.
    rules: Vec<FileRule>,
    /// Generic hooks.
    hooks: Vec<HookRule>,
    /// Whether file opens are evaluated through BPF LSM (else the open system calls' exits),
    /// when the policy has file-open hooks.
    file_open_via: Option<FileOpenVia>,
}

/// Where one hook of a policy is attached, as `vigil policy explain` words it.
#[derive(Debug, Clone)]
pub struct HookReport {
    /// The hook's field path.
    pub path: String,
    /// The hook as the policy names it.
    pub hook: String,
    /// The attach point ([`describe_mechanism`]).
    pub attach: String,
    /// What that guarantees.
    pub guarantee: String,
}

/// A policy written into the kernel beside the running ones, until it is committed or aborted.
#[must_use = "an installed policy is committed or aborted"]
pub struct Installed {
    name: String,
    policy_id: u32,
    /// Each file-open hook's first-match group, by hook path.
    groups: BTreeMap<String, u32>,
    replacing: Option<String>,
    /// File-open rules written.
    pub rules: usize,
    rule_slots: Vec<u32>,
    hook_slots: Vec<usize>,
    /// Hook slots and where their program must be attached.
    pub attach: Vec<(usize, AttachTarget)>,
    /// Whether the file-open programs must be attached, and through BPF LSM (else the open
    /// system calls' exits), as the plan chose.
    pub file_open_via: Option<FileOpenVia>,
    /// Each hook's path, name and attach point as the plan describes it, for the log once
    /// everything is attached.
    pub report: Vec<HookReport>,
    /// The policy's scope id in the kernel (0: every process).
    pub scope: u16,
    /// Its scope in words.
    pub scope_text: Option<String>,
}
