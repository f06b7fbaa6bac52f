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
use vigil_policy_engine::{
    compile::{compile, Filter, MatchKind, Rule, RuleAction},
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
struct MatchKeyPod(abi::MatchKey);
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
    policies: BTreeMap<String, u32>,
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
            policies: BTreeMap::new(),
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

    /// Validates, plans and compiles the policy in `file`, then writes its rules; returns the
    /// policy's name and how many rules it has.
    pub fn install_file(
        &mut self,
        file: &str,
        kernel: Option<&dyn KernelSymbols>,
        caps: &KernelCaps,
    ) -> Result<(String, usize), PolicyLoadError> {
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
        let rules = compile(&policy).map_err(|errs| {
            refuse(
                errs.into_iter()
                    .map(|e| format!("{file}: {}: {}", e.path, e.reason))
                    .collect(),
            )
        })?;
        if self.policies.contains_key(&policy.name) {
            return Err(PolicyLoadError::Refused(format!(
                "{file}: a policy named {} is already loaded",
                policy.name
            )));
        }
        let free: Vec<u32> = (0..abi::MAX_RULES as u32)
            .filter(|s| self.slots[*s as usize].is_none())
            .collect();
        if free.len() < rules.len() {
            return Err(PolicyLoadError::Refused(format!(
                "{file}: the policy has {} selectors and only {} of the kernel's {} rule slots are free",
                rules.len(),
                free.len(),
                abi::MAX_RULES
            )));
        }
        let policy_id = (0..32)
            .find(|id| !self.policies.values().any(|v| v == id))
            .ok_or_else(|| {
                PolicyLoadError::Refused(format!("{file}: 32 policies are loaded already"))
            })?;
        // Values first, rules last: a rule becomes active only once everything it reads exists.
        // A rule that can match any file name turns the prefilter off before it is active; names
        // are in the prefilter before the rules that need them are.
        let count = rules.len();
        let new_names: Option<Vec<_>> = rules
            .iter()
            .map(prefilter_names)
            .collect::<Option<Vec<_>>>()
            .map(|v| v.concat());
        let prefilter = self.prefilter_possible() && new_names.is_some();
        match &new_names {
            Some(names) if prefilter => {
                for n in names {
                    self.names
                        .insert(n, 1, 0)
                        .map_err(|e| map_err(&policy.name, "vigil_names", e))?;
                }
            }
            _ => self.set_prefilter(&policy.name, false)?,
        }
        for (slot, r) in free.into_iter().zip(rules) {
            self.write_values(&policy.name, slot, &r)?;
            let flags = rule::ACTIVE
                | if r.monitor { rule::MONITOR } else { 0 }
                | filter_flags(&r.path, true)
                | filter_flags(&r.binary, false);
            let (action, arg) = match r.action {
                RuleAction::Post => (action::POST, 0),
                RuleAction::NoPost => (action::NOPOST, 0),
                RuleAction::Sigkill => (action::SIGKILL, 0),
                RuleAction::Override(e) => (action::OVERRIDE, e),
                RuleAction::Signal(s) => (action::SIGNAL, s),
            };
            let raw = abi::Rule {
                flags,
                policy_id,
                hook: abi::HOOK_FILE_OPEN,
                action,
                arg,
                _pad0: 0,
            };
            self.rules
                .set(slot, RulePod(raw), 0)
                .map_err(|e| map_err(&policy.name, "vigil_rules", e))?;
            self.slots[slot as usize] = Some(InstalledRule {
                policy: policy.name.clone(),
                rule: r,
            });
        }
        self.policies.insert(policy.name.clone(), policy_id);
        self.set_prefilter(&policy.name, prefilter)?;
        Ok((policy.name, count))
    }

    /// Whether every installed rule compares whole paths for equality.
    fn prefilter_possible(&self) -> bool {
        self.slots
            .iter()
            .flatten()
            .all(|i| prefilter_names(&i.rule).is_some())
    }

    fn set_prefilter(&mut self, policy: &str, on: bool) -> Result<(), PolicyLoadError> {
        let state = abi::PolicyState {
            prefilter: on as u32,
            _pad0: 0,
        };
        self.state
            .set(0, StatePod(state), 0)
            .map_err(|e| map_err(policy, "vigil_policy_state_map", e))
    }

    fn write_values(&mut self, policy: &str, slot: u32, r: &Rule) -> Result<(), PolicyLoadError> {
        if let Some(f) = &r.path {
            for v in &f.values {
                match f.kind {
                    MatchKind::Exact => self
                        .path_exact
                        .insert(MatchKeyPod(abi::MatchKey::new(slot, v.as_bytes())), 1, 0)
                        .map_err(|e| map_err(policy, "vigil_path_exact", e))?,
                    MatchKind::Prefix => {
                        let (bits, data) = abi::lpm_key(slot, v.as_bytes());
                        self.path_prefix
                            .insert(&Key::new(bits, data), 1, 0)
                            .map_err(|e| map_err(policy, "vigil_path_prefix", e))?
                    }
                    MatchKind::Postfix => {
                        let rev: Vec<u8> = v.bytes().rev().collect();
                        let (bits, data) = abi::lpm_key(slot, &rev);
                        self.path_postfix
                            .insert(&Key::new(bits, data), 1, 0)
                            .map_err(|e| map_err(policy, "vigil_path_postfix", e))?
                    }
                }
            }
        }
        if let Some(f) = &r.binary {
            for v in &f.values {
                match f.kind {
                    MatchKind::Exact => self
                        .bin_exact
                        .insert(MatchKeyPod(abi::MatchKey::new(slot, v.as_bytes())), 1, 0)
                        .map_err(|e| map_err(policy, "vigil_bin_exact", e))?,
                    _ => {
                        let (bits, data) = abi::lpm_key(slot, v.as_bytes());
                        self.bin_prefix
                            .insert(&Key::new(bits, data), 1, 0)
                            .map_err(|e| map_err(policy, "vigil_bin_prefix", e))?
                    }
                }
            }
        }
        Ok(())
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
