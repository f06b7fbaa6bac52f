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
        fn take(
            ebpf: &mut aya::Ebpf,
            name: &'static str,
        ) -> Result<aya::maps::Map, PolicyLoadError> {
            ebpf.take_map(name)
                .ok_or_else(|| map_err("-", name, "not in the embedded object"))
        }
        Ok(PolicyTable {
            rules: Array::try_from(take(ebpf, "vigil_rules")?)
                .map_err(|e| map_err("-", "vigil_rules", e))?,
            path_exact: HashMap::try_from(take(ebpf, "vigil_path_exact")?)
                .map_err(|e| map_err("-", "vigil_path_exact", e))?,
            path_prefix: LpmTrie::try_from(take(ebpf, "vigil_path_prefix")?)
                .map_err(|e| map_err("-", "vigil_path_prefix", e))?,
            path_postfix: LpmTrie::try_from(take(ebpf, "vigil_path_postfix")?)
                .map_err(|e| map_err("-", "vigil_path_postfix", e))?,
            bin_exact: HashMap::try_from(take(ebpf, "vigil_bin_exact")?)
                .map_err(|e| map_err("-", "vigil_bin_exact", e))?,
            bin_prefix: LpmTrie::try_from(take(ebpf, "vigil_bin_prefix")?)
                .map_err(|e| map_err("-", "vigil_bin_prefix", e))?,
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
        let count = rules.len();
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
        Ok((policy.name, count))
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
