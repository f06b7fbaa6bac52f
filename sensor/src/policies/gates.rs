//! The gate of a system call's hook list, or of a kprobe's on a function's entry (the lists
//! whose programs apply gates): where every selector of every hook on the call compares the
//! file of the same argument with values (observe-system-writes' Prefix on a write's
//! descriptor), a call to a file none of those values matches cannot match any selector, so
//! the entry program (`gate_admits` in hooks.bpf.c) skips the hooks' walk for it.
//! The gate holds the union of the values under a key of its own; its decision is cached per
//! file like a selector's, for the same second. A flags gate does the same for a Mask test
//! (observe-file-changes' open for writing): where every selector tests one integer argument
//! with Mask, a call sharing no bit with the union of the masks skips the hooks, at the cost of
//! one AND.
//!
//! A gate is a necessary condition only: a file that passes it runs the hooks as before, which
//! decide. Negated comparisons (`NotPrefix` matches files the values do not name), selectors
//! without such a comparison, hooks without selectors (they report every call) and lists with
//! an Override (the runner clears a thread's unused verdict on every call) get no gate.

use std::collections::BTreeSet;

use vigil_bpf_kprobes::abi;
use vigil_policy_engine::{
    compile::{HookRule, MatchKind},
    hook_rule::{Cond, CondOp, HookArgKind},
};

use super::{
    hook_rules::{text_key, WrittenKey},
    PolicyLoadError, PolicyTable,
};

/// What a list's gate compares: the argument (its register and kernel type) and the values.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Gate {
    reg: u8,
    arg_type: u8,
    values: BTreeSet<(u8, String)>,
}

/// The kernel's type of a file argument the gate can resolve to a path, if it is one.
fn file_arg_type(kind: &HookArgKind) -> Option<u32> {
    match kind {
        HookArgKind::Fd => Some(abi::ARG_FD),
        HookArgKind::File => Some(abi::ARG_FILE),
        HookArgKind::Path => Some(abi::ARG_PATH),
        HookArgKind::Dentry => Some(abi::ARG_DENTRY),
        HookArgKind::Kiocb => Some(abi::ARG_KIOCB),
        _ => None,
    }
}

fn gate_op(kind: MatchKind) -> u8 {
    match kind {
        MatchKind::Exact => abi::GATE_EQ,
        MatchKind::Prefix => abi::GATE_PREFIX,
        MatchKind::Postfix => abi::GATE_POSTFIX,
    }
}

/// One condition of each selector of every hook in `hooks`, as `pick` finds it: the argument
/// it tests (`K`, the same for all) and what each tests it with. None where a hook has no
/// selector (it reports every call), a selector has no such condition, or two test different
/// arguments: then no gate can stand for the list.
fn each_selector_tests<'a, K: PartialEq, T>(
    hooks: impl IntoIterator<Item = &'a HookRule>,
    pick: impl Fn(&'a HookRule, &'a Cond) -> Option<(K, T)>,
) -> Option<(K, Vec<T>)> {
    let mut found: Option<(K, Vec<T>)> = None;
    for h in hooks {
        if h.selectors.is_empty() {
            return None;
        }
        for s in &h.selectors {
            let (arg, test) = s.conds.iter().find_map(|c| pick(h, c))?;
            match found.as_mut() {
                None => found = Some((arg, vec![test])),
                Some((a, tests)) if *a == arg => tests.push(test),
                Some(_) => return None,
            }
        }
    }
    found
}

/// The gate of a list holding `hooks`, if every selector of every one compares one file
/// argument, the same for all, with values.
pub(super) fn list_gate<'a>(hooks: impl IntoIterator<Item = &'a HookRule>) -> Option<Gate> {
    let ((reg, arg_type), tests) = each_selector_tests(hooks, |h, c| {
        let CondOp::Text(kind, values) = &c.op else {
            return None;
        };
        let arg = h.args.get(c.arg).filter(|_| !c.negate)?;
        let t = file_arg_type(&arg.kind)?;
        Some(((arg.index as u8, t as u8), (gate_op(*kind), values)))
    })?;
    let values = tests
        .into_iter()
        .flat_map(|(op, values)| values.iter().map(move |v| (op, v.clone())))
        .collect();
    Some(Gate {
        reg,
        arg_type,
        values,
    })
}

/// The flags gate of a list holding `hooks`: the register every selector of every one tests
/// with Mask, and the union of their masks, if they all do. A mask reaching the argument's
/// sign bit gets none: the register's bits above the argument's width are not the value's.
pub(super) fn list_mask_gate<'a>(
    hooks: impl IntoIterator<Item = &'a HookRule>,
) -> Option<(u8, u64)> {
    let (reg, masks) = each_selector_tests(hooks, |h, c| {
        let CondOp::Mask(mask) = c.op else {
            return None;
        };
        let arg = h.args.get(c.arg).filter(|_| !c.negate)?;
        let HookArgKind::Int { bits, .. } = arg.kind else {
            return None;
        };
        let fits = mask > 0 && bits >= 2 && (mask as u64) < 1u64 << (bits.min(64) - 1);
        fits.then_some((arg.index as u8, mask as u64))
    })?;
    Some((reg, masks.into_iter().fold(0, |all, m| all | m)))
}

impl Gate {
    /// The keys of its values under `key`.
    fn keys(&self, key: u32) -> Vec<WrittenKey> {
        self.values
            .iter()
            .map(|(op, v)| {
                let kind = match *op {
                    abi::GATE_EQ => MatchKind::Exact,
                    abi::GATE_PREFIX => MatchKind::Prefix,
                    _ => MatchKind::Postfix,
                };
                text_key(kind, abi::gate_value_key(key, *op), v)
            })
            .collect()
    }

    fn ops(&self) -> u8 {
        self.values.iter().fold(0, |ops, (op, _)| ops | op)
    }
}

impl PolicyTable {
    /// The gate key of the list at `key` (a system call entry's or a kprobe's on a function's
    /// entry): a system call's by its number; a kprobe's numbered apart, each kprobe list with
    /// a file gate holding its number until that gate goes. Numbers are handed out in turn,
    /// not the lowest free one, so a number a list just gave up (whose old entry a CPU may
    /// still be reading) goes to another list only 65,536 gates later. `None` when every
    /// number is held, which `vigil_hooks`' size rules out (those lists would run every hook:
    /// slower, never wrong).
    fn gate_key_of(&mut self, key: u64) -> Option<u32> {
        if let Some(nr) = abi::syscall_of_key(key) {
            return Some(abi::gate_key(nr));
        }
        if let Some(&n) = self.kprobe_gates.get(&key) {
            return Some(abi::kprobe_gate_key(n));
        }
        let taken: BTreeSet<u16> = self.kprobe_gates.values().copied().collect();
        let n = (0..=u16::MAX)
            .map(|i| self.next_kprobe_gate.wrapping_add(i))
            .find(|n| !taken.contains(n))?;
        self.next_kprobe_gate = n.wrapping_add(1);
        self.kprobe_gates.insert(key, n);
        Some(abi::kprobe_gate_key(n))
    }

    /// Rewrites the gate of the list at `key`, a system call's or a kprobe's on a function's
    /// entry (its values first, the list already written without a gate), and sets the list's
    /// gate fields, which the caller writes last.
    /// A gate that cannot be written leaves the list without one: slower, never wrong.
    pub(super) fn write_gate(
        &mut self,
        policy: &str,
        key: u64,
        (gate, mask): (Option<Gate>, Option<(u8, u64)>),
        list: &mut abi::HookList,
    ) -> Result<(), PolicyLoadError> {
        // The values the gate had: those the new gate keeps stay written (the list runs
        // ungated while this is rewritten, see write_hook_list), so a policy beside a hundred
        // others on the same call writes its own values, not everyone's again.
        let old = self.gates.remove(&key).unwrap_or_default();
        let drop_old = |t: &mut Self, keep: &[WrittenKey]| {
            let keep: std::collections::HashSet<&WrittenKey> = keep.iter().collect();
            let gone: Vec<WrittenKey> = old.iter().filter(|k| !keep.contains(k)).cloned().collect();
            t.write_keys(policy, &gone, false)
        };
        // Only the programs of system call entries and of kprobes on a function's entry apply
        // gates; the returns' and the other hooks' lists run every hook.
        if abi::syscall_of_key(key).is_none() && !abi::is_kprobe_entry_key(key) {
            return drop_old(self, &[]);
        }
        if let Some((reg, mask)) = mask {
            list.gate_mask_reg = reg as u32;
            list.gate_mask = mask;
        }
        let Some(gate) = gate else {
            self.kprobe_gates.remove(&key);
            return drop_old(self, &[]);
        };
        let Some(gate_key) = self.gate_key_of(key) else {
            return drop_old(self, &[]);
        };
        let keys = gate.keys(gate_key);
        let written: std::collections::HashSet<&WrittenKey> = old.iter().collect();
        let new: Vec<WrittenKey> = keys
            .iter()
            .filter(|k| !written.contains(k))
            .cloned()
            .collect();
        if self.insert_keys(policy, &new).is_err() {
            // No gate then: every call runs the hooks.
            return drop_old(self, &[]);
        }
        drop_old(self, &keys)?;
        self.gates.insert(key, keys);
        self.generation = self.generation.wrapping_add(1);
        list.gate_reg = gate.reg;
        list.gate_type = gate.arg_type;
        list.gate_ops = gate.ops();
        list.gate_key = gate_key;
        list.gate_generation = self.generation;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_of(text: &str) -> Vec<HookRule> {
        let p = vigil_policy_engine::load_policy("p.yaml", text).expect("a policy");
        vigil_policy_engine::compile::compile(&p).expect("compiles")
    }

    const WRITES: &str = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: writes}
spec:
  kprobes:
  - call: sys_write
    syscall: true
    args: [{index: 0, type: fd}, {index: 2, type: size_t}]
    selectors:
    - matchArgs: [{index: 0, operator: Prefix, values: ["/etc/", "/bin/"]}]
    - matchArgs:
      - {index: 2, operator: GT, values: ["100"]}
      - {index: 0, operator: Equal, values: ["/var/log/x"]}
"#;

    #[test]
    fn a_list_whose_selectors_all_compare_the_descriptor_gets_the_union_of_their_values() {
        let hooks = rules_of(WRITES);
        let gate = list_gate(&hooks).expect("a gate");
        assert_eq!((gate.reg, gate.arg_type), (0, abi::ARG_FD as u8));
        assert_eq!(gate.ops(), abi::GATE_PREFIX | abi::GATE_EQ);
        assert_eq!(gate.values.len(), 3);
    }

    #[test]
    fn a_list_whose_selectors_all_test_one_flags_argument_gets_the_union_of_their_masks() {
        let opens = r#"
apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: opens}
spec:
  kprobes:
  - call: sys_openat
    syscall: true
    args: [{index: 1, type: string}, {index: 2, type: int}]
    selectors:
    - matchArgs: [{index: 2, operator: Mask, values: ["3"]}]
    - matchArgs:
      - {index: 1, operator: Prefix, values: ["/etc/"]}
      - {index: 2, operator: Mask, values: ["512"]}
"#;
        assert_eq!(list_mask_gate(&rules_of(opens)), Some((2, 515)));
        // A selector without a Mask, or a mask reaching the int's sign bit: no gate.
        let no_mask = opens.replace(
            "- {index: 2, operator: Mask, values: [\"512\"]}",
            "- {index: 2, operator: GT, values: [\"1\"]}",
        );
        assert_eq!(list_mask_gate(&rules_of(&no_mask)), None);
        let sign = opens.replace("values: [\"512\"]", "values: [\"2147483648\"]");
        assert_eq!(list_mask_gate(&rules_of(&sign)), None);
    }

    #[test]
    fn a_negation_a_selector_without_a_file_comparison_or_no_selector_leaves_no_gate() {
        let not_prefix = WRITES.replace("operator: Prefix", "operator: NotPrefix");
        assert_eq!(list_gate(&rules_of(&not_prefix)), None);
        let size_only = WRITES.replace(
            "{index: 0, operator: Equal, values: [\"/var/log/x\"]}",
            "{index: 2, operator: LT, values: [\"200\"]}",
        );
        assert_eq!(list_gate(&rules_of(&size_only)), None);
        let every_call = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: all}\nspec:\n  kprobes:\n  - call: sys_write\n    syscall: true\n    args: [{index: 0, type: fd}]\n";
        let mut both = rules_of(WRITES);
        both.extend(rules_of(every_call));
        assert_eq!(list_gate(&both), None);
    }
}
