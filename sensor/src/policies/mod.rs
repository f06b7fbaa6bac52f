//! Policies in the kernel: compiled rules written into the rule maps, the file-open programs
//! attached the way the attach plan says, and the table that turns a matched rule back into
//! the policy's name, hook and action for events.
//!
//! A policy is installed whole or not at all: it is validated, planned and compiled before any
//! map is touched, so a policy that fails leaves the running ones exactly as they were.

use std::collections::BTreeMap;

use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, MapData},
    Pod,
};
use thiserror::Error;
use vigil_bpf_kprobes::abi::{self, action, rule};

use crate::loader::HookLink;

mod hook_rules;
mod hooks;
use hook_rules::HookRuleMaps;
use hooks::{hook_keys, HookConfigPod, HookListPod};
pub use hooks::{AttachTarget, InstalledHook};
use vigil_policy_engine::{
    compile::{compile, Filter, HookRule, MatchKind, Rule, RuleAction},
    kernel::RunningKernel,
    load_policy_for,
    plan::{plan, KernelCaps},
    KernelSymbols,
};

/// Why a policy was refused.
#[derive(Debug, Error)]
pub enum PolicyLoadError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// Validation, planning or compilation failed; every reason, one per line.
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

/// The file name (last component) the open prefilter keys on, if it fits.
fn name_key(path: &str) -> Option<[u8; abi::NAME_LEN]> {
    let name = path.rsplit('/').next().filter(|n| !n.is_empty())?;
    if name.len() >= abi::NAME_LEN {
        return None;
    }
    let mut key = [0u8; abi::NAME_LEN];
    key[..name.len()].copy_from_slice(name.as_bytes());
    Some(key)
}

/// The names a rule needs in the prefilter, or `None` when the rule can match opens of any
/// name (no path filter, a prefix or postfix, a negation, a name too long for the key).
fn prefilter_names(r: &Rule) -> Option<Vec<[u8; abi::NAME_LEN]>> {
    let f = r.path.as_ref()?;
    if f.kind != MatchKind::Exact || f.negate {
        return None;
    }
    f.values.iter().map(|v| name_key(v)).collect()
}

/// A rule the kernel may report, as events name it.
#[derive(Debug, Clone)]
pub struct InstalledRule {
    /// The policy's name.
    pub policy: String,
    /// The policy's id in the kernel (its first-match bit).
    pub policy_id: u32,
    /// The compiled selector.
    pub rule: Rule,
}

/// The rule maps of the loaded object and what is in them.
pub struct PolicyTable {
    rules: Array<MapData, RulePod>,
    path_exact: HashMap<MapData, MatchKeyPod, u8>,
    path_prefix: LpmTrie<MapData, [u8; abi::LPM_DATA], u8>,
    path_postfix: LpmTrie<MapData, [u8; abi::LPM_DATA], u8>,
    bin_exact: HashMap<MapData, MatchKeyPod, u8>,
    bin_prefix: LpmTrie<MapData, [u8; abi::LPM_DATA], u8>,
    names: HashMap<MapData, [u8; abi::NAME_LEN], u8>,
    state: Array<MapData, StatePod>,
    slots: Vec<Option<InstalledRule>>,
    /// The hooks on each attach point (`vigil_hooks`) and each hook's description.
    hooks: HashMap<MapData, u64, HookListPod>,
    hook_configs: Array<MapData, HookConfigPod>,
    hook_slots: Vec<Option<InstalledHook>>,
    hook_maps: HookRuleMaps,
    /// The hook slot owning each selector slot.
    hook_rule_owner: Vec<Option<usize>>,
    /// The host's namespaces, for `host_ns` values.
    host_ns: [u32; abi::NS_COUNT],
    /// Last selector generation written (`vigil_hook_rule.generation`).
    generation: u32,
    policies: BTreeMap<String, u32>,
    name_refs: std::collections::HashMap<[u8; abi::NAME_LEN], usize>,
}

fn map_err(policy: &str, map: &'static str, e: impl std::fmt::Display) -> PolicyLoadError {
    PolicyLoadError::Map {
        policy: policy.to_string(),
        map,
        detail: e.to_string(),
    }
}

impl PolicyTable {
    /// Takes the rule maps out of the agent's object.
    pub fn new(ebpf: &mut aya::Ebpf) -> Result<Self, PolicyLoadError> {
        fn take<M>(ebpf: &mut aya::Ebpf, name: &'static str) -> Result<M, PolicyLoadError>
        where
            M: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
        {
            let map = ebpf
                .take_map(name)
                .ok_or_else(|| map_err("-", name, "not in the embedded object"))?;
            M::try_from(map).map_err(|e| map_err("-", name, e))
        }
        Ok(PolicyTable {
            rules: take(ebpf, "vigil_rules")?,
            path_exact: take(ebpf, "vigil_path_exact")?,
            path_prefix: take(ebpf, "vigil_path_prefix")?,
            path_postfix: take(ebpf, "vigil_path_postfix")?,
            bin_exact: take(ebpf, "vigil_bin_exact")?,
            bin_prefix: take(ebpf, "vigil_bin_prefix")?,
            names: take(ebpf, "vigil_names")?,
            state: take(ebpf, "vigil_policy_state_map")?,
            slots: vec![None; abi::MAX_RULES],
            hooks: take(ebpf, "vigil_hooks")?,
            hook_configs: take(ebpf, "vigil_hook_configs")?,
            hook_slots: (0..abi::MAX_RULES).map(|_| None).collect(),
            hook_maps: HookRuleMaps {
                rules: take(ebpf, "vigil_hook_rules")?,
                values: take(ebpf, "vigil_hook_values")?,
                cidrs: take(ebpf, "vigil_hook_cidrs")?,
            },
            hook_rule_owner: vec![None; abi::HOOK_RULES],
            host_ns: crate::identity::host_namespaces(),
            generation: 0,
            policies: BTreeMap::new(),
            name_refs: Default::default(),
        })
    }

    /// The rule in `slot`, for events.
    pub fn rule(&self, slot: u32) -> Option<&InstalledRule> {
        self.slots.get(slot as usize).and_then(|s| s.as_ref())
    }

    /// Whether any installed rule runs on file opens.
    pub fn has_file_rules(&self) -> bool {
        self.slots.iter().any(|s| s.is_some())
    }

    /// Validates, plans and compiles the policy in `file` without touching the kernel.
    pub fn prepare(
        &self,
        file: &str,
        kernel: Option<&dyn KernelSymbols>,
        caps: &KernelCaps,
    ) -> Result<Prepared, PolicyLoadError> {
        let text = std::fs::read_to_string(file).map_err(|source| PolicyLoadError::Read {
            file: file.to_string(),
            source,
        })?;
        let policy = load_policy_for(file, &text, kernel)
            .map_err(|e| PolicyLoadError::Refused(e.to_string()))?;
        let refuse = |lines: Vec<String>| PolicyLoadError::Refused(lines.join("\n"));
        plan(&policy, caps).map_err(|errs| {
            refuse(
                errs.into_iter()
                    .map(|e| format!("{file}: {}: {}", e.path, e.reason))
                    .collect(),
            )
        })?;
        let compiled = compile(&policy).map_err(|errs| {
            refuse(
                errs.into_iter()
                    .map(|e| format!("{file}: {}: {}", e.path, e.reason))
                    .collect(),
            )
        })?;
        Ok(Prepared {
            file: file.to_string(),
            name: policy.name,
            rules: compiled.rules,
            hooks: compiled.hooks,
        })
    }

    /// Writes a prepared policy's rules; `replacing` names a loaded policy this one replaces
    /// (its slots are freed only after the new rules are active, so enforcement never lapses).
    /// Returns how many rules were installed.
    pub fn install(
        &mut self,
        p: Prepared,
        replacing: Option<&str>,
        caps: &KernelCaps,
        kernel: Option<&RunningKernel>,
    ) -> Result<Installed, PolicyLoadError> {
        let file = &p.file;
        // Hooks are resolved first: a hook this kernel cannot place refuses the whole policy.
        let mut placed = Vec::new();
        for h in &p.hooks {
            let (keys, target) = hook_keys(h, caps, kernel)
                .map_err(|e| PolicyLoadError::Refused(format!("{file}: {}: {e}", h.hook_path)))?;
            placed.push((keys, target));
        }
        let free_hooks: Vec<usize> = (0..self.hook_slots.len())
            .filter(|i| self.hook_slots[*i].is_none())
            .collect();
        if free_hooks.len() < p.hooks.len() {
            return Err(PolicyLoadError::Refused(format!(
                "{file}: no room for {} more hooks",
                p.hooks.len()
            )));
        }
        self.check_room(file, replacing, &p.hooks, &placed)?;
        if self.policies.contains_key(&p.name) && replacing != Some(p.name.as_str()) {
            return Err(PolicyLoadError::Refused(format!(
                "{file}: a policy named {} is already loaded",
                p.name
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
        let used: Vec<u32> = self.slots.iter().flatten().map(|r| r.policy_id).collect();
        let policy_id = (0..32).find(|id| !used.contains(id)).ok_or_else(|| {
            PolicyLoadError::Refused(format!("{file}: 32 policies are loaded already"))
        })?;
        // Everything a rule reads is written before the rule is active. A rule that can match
        // any file name turns the open prefilter off before it becomes active.
        if p.rules.iter().any(|r| prefilter_names(r).is_none()) {
            self.set_prefilter(&p.name, false)?;
        }
        let count = p.rules.len();
        for (slot, r) in free.into_iter().zip(p.rules) {
            self.apply_values(&p.name, slot, &r, true)?;
            let raw = abi::Rule {
                flags: rule::ACTIVE
                    | if r.monitor { rule::MONITOR } else { 0 }
                    | if r.post { 0 } else { rule::NOPOST }
                    | filter_flags(&r.path, true)
                    | filter_flags(&r.binary, false),
                policy_id,
                hook: abi::HOOK_FILE_OPEN,
                action: kernel_action(r.action).0,
                arg: kernel_action(r.action).1,
                _pad0: 0,
            };
            self.rules
                .set(slot, RulePod(raw), 0)
                .map_err(|e| map_err(&p.name, "vigil_rules", e))?;
            self.slots[slot as usize] = Some(InstalledRule {
                policy: p.name.clone(),
                policy_id,
                rule: r,
            });
        }
        if let Some(old) = replacing {
            self.remove_slots(old, |r| r.policy_id != policy_id)?;
        }
        let attach = self.write_hooks(&p.name, policy_id, p.hooks, placed, free_hooks)?;
        self.policies.insert(p.name.clone(), policy_id);
        self.set_prefilter(&p.name, self.prefilter_possible())?;
        Ok(Installed {
            rules: count,
            attach,
        })
    }

    /// Removes a loaded policy: its rules stop matching first, then their values go.
    pub fn uninstall(&mut self, name: &str) -> Result<Vec<HookLink>, PolicyLoadError> {
        self.remove_slots(name, |_| true)?;
        let links = self.remove_hooks(name, &[]);
        self.policies.remove(name);
        self.set_prefilter(name, self.prefilter_possible())?;
        Ok(links)
    }

    fn remove_slots(
        &mut self,
        name: &str,
        pick: impl Fn(&InstalledRule) -> bool,
    ) -> Result<(), PolicyLoadError> {
        for slot in 0..abi::MAX_RULES as u32 {
            let Some(installed) =
                self.slots[slot as usize].take_if(|r| r.policy == name && pick(r))
            else {
                continue;
            };
            self.rules
                .set(slot, RulePod(abi::Rule::default()), 0)
                .map_err(|e| map_err(name, "vigil_rules", e))?;
            self.apply_values(name, slot, &installed.rule, false)?;
        }
        Ok(())
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
        let state = abi::PolicyState {
            prefilter: on as u32,
            rule_end,
        };
        self.state
            .set(0, StatePod(state), 0)
            .map_err(|e| map_err(policy, "vigil_policy_state_map", e))
    }

    /// Inserts (or removes) a rule's values, and its file names in the prefilter (counted, as
    /// rules share names).
    fn apply_values(
        &mut self,
        policy: &str,
        slot: u32,
        r: &Rule,
        insert: bool,
    ) -> Result<(), PolicyLoadError> {
        fn op<K: Pod>(
            map: &mut HashMap<MapData, K, u8>,
            key: K,
            insert: bool,
        ) -> Result<(), aya::maps::MapError> {
            match (insert, map.remove(&key)) {
                (true, _) => map.insert(key, 1, 0),
                (false, Ok(())) | (false, Err(aya::maps::MapError::KeyNotFound)) => Ok(()),
                (false, Err(e)) => Err(e),
            }
        }
        fn lpm(
            map: &mut LpmTrie<MapData, [u8; abi::LPM_DATA], u8>,
            value: &[u8],
            slot: u32,
            insert: bool,
        ) -> Result<(), aya::maps::MapError> {
            let (bits, data) = abi::lpm_key(slot, value);
            let key = Key::new(bits, data);
            match (insert, map.remove(&key)) {
                (true, _) => map.insert(&key, 1, 0),
                (false, Ok(())) | (false, Err(aya::maps::MapError::KeyNotFound)) => Ok(()),
                (false, Err(e)) => Err(e),
            }
        }
        if let Some(f) = &r.path {
            for v in &f.values {
                let (res, map) = match f.kind {
                    MatchKind::Exact => (
                        op(
                            &mut self.path_exact,
                            MatchKeyPod(abi::MatchKey::new(slot, v.as_bytes())),
                            insert,
                        ),
                        "vigil_path_exact",
                    ),
                    MatchKind::Prefix => (
                        lpm(&mut self.path_prefix, v.as_bytes(), slot, insert),
                        "vigil_path_prefix",
                    ),
                    MatchKind::Postfix => {
                        let rev: Vec<u8> = v.bytes().rev().collect();
                        (
                            lpm(&mut self.path_postfix, &rev, slot, insert),
                            "vigil_path_postfix",
                        )
                    }
                };
                res.map_err(|e| map_err(policy, map, e))?;
            }
        }
        if let Some(f) = &r.binary {
            for v in &f.values {
                let (res, map) = match f.kind {
                    MatchKind::Exact => (
                        op(
                            &mut self.bin_exact,
                            MatchKeyPod(abi::MatchKey::new(slot, v.as_bytes())),
                            insert,
                        ),
                        "vigil_bin_exact",
                    ),
                    _ => (
                        lpm(&mut self.bin_prefix, v.as_bytes(), slot, insert),
                        "vigil_bin_prefix",
                    ),
                };
                res.map_err(|e| map_err(policy, map, e))?;
            }
        }
        for name in prefilter_names(r).unwrap_or_default() {
            let count = self.name_refs.entry(name).or_insert(0);
            if insert {
                *count += 1;
                if *count == 1 {
                    self.names
                        .insert(name, 1, 0)
                        .map_err(|e| map_err(policy, "vigil_names", e))?;
                }
            } else {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.name_refs.remove(&name);
                    let _ = self.names.remove(&name);
                }
            }
        }
        Ok(())
    }
}

/// A policy checked and compiled, ready to install.
pub struct Prepared {
    file: String,
    /// The policy's name.
    pub name: String,
    rules: Vec<Rule>,
    hooks: Vec<HookRule>,
}

/// What an install did: rules written, hooks to attach.
pub struct Installed {
    /// File-open rules written.
    pub rules: usize,
    /// Hook slots and where their program must be attached.
    pub attach: Vec<(usize, AttachTarget)>,
}

/// The kernel's action and argument for a rule action.
fn kernel_action(a: RuleAction) -> (u32, i32) {
    match a {
        RuleAction::Post => (action::POST, 0),
        RuleAction::NoPost => (action::NOPOST, 0),
        RuleAction::Sigkill => (action::SIGKILL, 0),
        RuleAction::Override(e) => (action::OVERRIDE, e),
        RuleAction::Signal(s) => (action::SIGNAL, s),
    }
}

fn filter_flags(f: &Option<Filter>, is_path: bool) -> u32 {
    let Some(f) = f else { return 0 };
    let (eq, prefix, postfix, not) = if is_path {
        (
            rule::PATH_EQ,
            rule::PATH_PREFIX,
            rule::PATH_POSTFIX,
            rule::PATH_NOT,
        )
    } else {
        (
            rule::BIN_EQ,
            rule::BIN_PREFIX,
            rule::BIN_PREFIX,
            rule::BIN_NOT,
        )
    };
    let kind = match f.kind {
        MatchKind::Exact => eq,
        MatchKind::Prefix => prefix,
        MatchKind::Postfix => postfix,
    };
    kind | if f.negate { not } else { 0 }
}
