//! File-open hooks in the kernel: the file-open evaluator (policy.bpf.c) holds one
//! `vigil_rules` slot per selector, its path and binary values in the match maps and its file
//! names in the open prefilter. A rule is written whole or not at all, and removing it removes
//! exactly what it added.

use std::sync::Arc;

use vigil_bpf_kprobes::abi::{self, action, rule};
use vigil_policy_engine::{
    compile::{Filter, HookRule, MatchKind, RuleAction},
    hook_rule::CondOp,
};

/// One selector of a file-open hook as the file-open evaluator holds it (a hook without
/// selectors is one rule that reports every open).
#[derive(Debug, Clone)]
pub struct FileRule {
    /// The hook, for events.
    pub hook: Arc<HookRule>,
    /// Its selector's index in the hook.
    pub selector: u32,
    path: Option<Filter>,
    binary: Option<Filter>,
    action: RuleAction,
    post: bool,
}

impl FileRule {
    /// The rules of a file-open hook, one per selector. policy-engine refuses every selector
    /// the evaluator cannot hold (more than one condition, a condition that is not a path
    /// comparison, pid, namespace or capability filters); one that came this far anyway is an
    /// error here, never a rule with a filter left out.
    pub fn of(hook: HookRule) -> Result<Vec<FileRule>, String> {
        if let Some((i, _)) = hook.selectors.iter().enumerate().find(|(_, s)| {
            s.conds.len() > 1
                || s.conds.iter().any(|c| !matches!(c.op, CondOp::Text(..)))
                || s.pids.is_some()
                || !s.namespaces.is_empty()
                || !s.caps.is_empty()
        }) {
            return Err(format!(
                "{}.selectors[{i}]: the file-open evaluator holds one path condition and one binary filter per selector",
                hook.hook_path
            ));
        }
        let hook = Arc::new(hook);
        if hook.selectors.is_empty() {
            return Ok(vec![FileRule {
                hook,
                selector: 0,
                path: None,
                binary: None,
                action: RuleAction::Post,
                post: true,
            }]);
        }
        Ok(hook
            .selectors
            .iter()
            .zip(0..)
            .map(|(s, selector)| FileRule {
                hook: hook.clone(),
                selector,
                path: s.conds.first().and_then(|c| match &c.op {
                    CondOp::Text(kind, values) => Some(Filter {
                        kind: *kind,
                        negate: c.negate,
                        values: values.clone(),
                    }),
                    _ => None,
                }),
                binary: s.binary.clone(),
                action: s.action,
                post: s.post,
            })
            .collect())
    }
}

use super::{
    hook_rules::{binary_keys, text_key, WrittenKey},
    map_err, InstalledRule, PolicyLoadError, PolicyTable, RulePod,
};

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
/// name (no path filter, a prefix, a negation, a name too long for the key). A postfix that
/// holds a `/` (`/.ssh/id_rsa`) ends with a whole file name, so it can be prefiltered like an
/// exact path; one without (`rsa`) can end any name.
pub(super) fn prefilter_names(r: &FileRule) -> Option<Vec<[u8; abi::NAME_LEN]>> {
    names_of(r.path.as_ref()?)
}

/// The file names a path filter can match, if it can match only those.
fn names_of(f: &Filter) -> Option<Vec<[u8; abi::NAME_LEN]>> {
    let whole_names = match f.kind {
        MatchKind::Exact => true,
        MatchKind::Postfix => f.values.iter().all(|v| v.contains('/')),
        _ => false,
    };
    if !whole_names || f.negate {
        return None;
    }
    f.values.iter().map(|v| name_key(v)).collect()
}

/// The match-map keys of the rule in `slot`.
fn rule_keys(slot: u32, r: &FileRule) -> Vec<WrittenKey> {
    let mut keys = Vec::new();
    if let Some(f) = &r.path {
        keys.extend(f.values.iter().map(|v| text_key(f.kind, slot, v)));
    }
    if let Some(f) = &r.binary {
        keys.extend(binary_keys(slot, f));
    }
    keys
}

impl FileRule {
    /// The bytes of the match-map entries its values take.
    pub fn entry_bytes(&self) -> usize {
        rule_keys(0, self).iter().map(WrittenKey::entry_bytes).sum()
    }
}

impl PolicyTable {
    /// Writes rule `r` into `slot`: its values and prefilter names first, the rule last, so
    /// the kernel never walks a rule without its values. All or nothing.
    pub(super) fn write_rule(
        &mut self,
        policy: &str,
        group: u32,
        scope: u16,
        slot: u32,
        r: FileRule,
    ) -> Result<(), PolicyLoadError> {
        let keys = rule_keys(slot, &r);
        let names = prefilter_names(&r).unwrap_or_default();
        self.insert_keys(policy, &keys)?;
        if let Err(e) = self.add_names(policy, slot, &names) {
            let _ = self.write_keys(policy, &keys, false);
            return Err(e);
        }
        let exact = |f: &Option<Filter>| match f {
            Some(f) if f.kind == MatchKind::Exact => f.values.clone(),
            _ => Vec::new(),
        };
        let undo = |t: &mut Self| {
            t.inodes.remove(slot);
            t.bin_inodes.remove(slot);
            t.drop_names(slot, &names);
            let _ = t.write_keys(policy, &keys, false);
        };
        let (paths, binaries) = (exact(&r.path), exact(&r.binary));
        let unkeyed = self.inodes.add(policy, slot, &paths).and_then(|mut u| {
            u.extend(self.bin_inodes.add(policy, slot, &binaries)?);
            Ok(u)
        });
        let unkeyed = match unkeyed {
            Ok(u) => u,
            Err(e) => {
                undo(self);
                return Err(e);
            }
        };
        for v in &unkeyed {
            crate::agent::log(format!(
                "policy {policy}: {v} names no file here that can be keyed by device and inode (missing, a symbolic link, or on btrfs or overlayfs): it is compared by path only, so a hard link or a bind mount can give that file or binary another name"
            ));
        }
        let bin_inode = !binaries.is_empty() && binaries.iter().all(|b| !unkeyed.contains(b));
        let bin_scoped = r
            .binary
            .as_ref()
            .is_some_and(|b| b.kind == MatchKind::Exact && !b.negate);
        let raw = abi::Rule {
            flags: rule::ACTIVE
                | if bin_inode { rule::BIN_INODE } else { 0 }
                | if r.hook.monitor { rule::MONITOR } else { 0 }
                | if r.post { 0 } else { rule::NOPOST }
                | filter_flags(&r.path, true)
                | filter_flags(&r.binary, false),
            policy_id: group,
            hook: abi::HOOK_FILE_OPEN,
            action: kernel_action(r.action).0,
            arg: kernel_action(r.action).1,
            scope: scope.into(),
        };
        if let Err(e) = self.rules.set(slot, RulePod(raw), 0) {
            undo(self);
            return Err(map_err(policy, "vigil_rules", e));
        }
        self.slots[slot as usize] = Some(InstalledRule {
            policy: policy.to_string(),
            group,
            rule: r,
            bin_scoped,
        });
        Ok(())
    }

    /// Removes the rules in `slots`: each stops matching before its values go. Goes on past a
    /// failure (removing as much as it can); returns the first.
    pub(super) fn remove_rules(&mut self, slots: &[u32]) -> Result<(), PolicyLoadError> {
        let mut first_error = None;
        for &slot in slots {
            let Some(installed) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
                continue;
            };
            let policy = installed.policy.clone();
            let cleared = self
                .rules
                .set(slot, RulePod(abi::Rule::default()), 0)
                .map_err(|e| map_err(&policy, "vigil_rules", e));
            if let Err(e) = cleared {
                // Still active in the kernel: the slot, its values and its first-match group
                // stay taken, so nothing new is given them while it can still match.
                self.slots[slot as usize] = Some(installed);
                first_error.get_or_insert(e);
                continue;
            }
            self.inodes.remove(slot);
            self.bin_inodes.remove(slot);
            if let Err(e) = self.write_keys(&policy, &rule_keys(slot, &installed.rule), false) {
                first_error.get_or_insert(e);
            }
            self.drop_names(slot, &prefilter_names(&installed.rule).unwrap_or_default());
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Adds rule `slot` to the prefilter's entry of each of its names (rules share names).
    /// All or nothing.
    fn add_names(
        &mut self,
        policy: &str,
        slot: u32,
        names: &[[u8; abi::NAME_LEN]],
    ) -> Result<(), PolicyLoadError> {
        for (i, name) in names.iter().enumerate() {
            let rules = self.name_rules.entry(*name).or_insert(0);
            *rules |= 1 << (slot % 64);
            if let Err(e) = self.names.insert(*name, *rules, 0) {
                self.drop_names(slot, &names[..=i]);
                return Err(map_err(policy, "vigil_names", e));
            }
        }
        Ok(())
    }

    /// Takes rule `slot` out of the prefilter's entry of each of its names, removing the names
    /// no rule has left.
    fn drop_names(&mut self, slot: u32, names: &[[u8; abi::NAME_LEN]]) {
        for name in names {
            let Some(rules) = self.name_rules.get_mut(name) else {
                continue;
            };
            *rules &= !(1 << (slot % 64));
            if *rules == 0 {
                self.name_rules.remove(name);
                let _ = self.names.remove(name);
            } else {
                let _ = self.names.insert(*name, *rules, 0);
            }
        }
    }
}

/// The kernel's action and argument for a rule action.
pub(super) fn kernel_action(a: RuleAction) -> (u32, i32) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(kind: MatchKind, values: &[&str]) -> Filter {
        Filter {
            kind,
            negate: false,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn postfixes_with_a_slash_are_prefiltered_by_their_last_name() {
        let names = |f: &Filter| {
            names_of(f).map(|v| {
                v.iter()
                    .map(|k| {
                        String::from_utf8_lossy(k)
                            .trim_end_matches('\0')
                            .to_string()
                    })
                    .collect::<Vec<_>>()
            })
        };
        let exact = filter(MatchKind::Exact, &["/etc/shadow"]);
        assert_eq!(names(&exact), Some(vec!["shadow".to_string()]));
        let postfix = filter(MatchKind::Postfix, &["/.ssh/id_rsa", ".kube/config"]);
        assert_eq!(
            names(&postfix),
            Some(vec!["id_rsa".to_string(), "config".to_string()])
        );
        // `rsa` ends `id_rsa`: any name may match it.
        assert_eq!(
            names(&filter(MatchKind::Postfix, &["/.ssh/id_rsa", "rsa"])),
            None
        );
        // A postfix ending in `/` names no file.
        assert_eq!(names(&filter(MatchKind::Postfix, &["/etc/"])), None);
        assert_eq!(names(&filter(MatchKind::Prefix, &["/etc/"])), None);
    }
}
