//! The one way a policy goes from a file to what the kernel runs: read through the gate,
//! parse and validate, compile every hook, and plan where each attaches on this kernel, in
//! one pass that reports every problem with its file, line, column, field and fix.
//! `vigil policy lint`, `explain` and `test` and the agent all call [`prepare`], so what they
//! say about a policy is what the agent does with it: the sensor only writes a [`Prepared`]
//! into maps and attaches exactly its [`HookPlan`]s.

use std::{collections::BTreeSet, path::Path};

use vigil_bpf_kprobes::abi;

use crate::{
    compile::{compile_all, HookRule, HookSelector, MatchKind},
    error::{PolicyError, PolicyErrors},
    hook_rule::CondOp,
    input::{read_yaml, InputError, Limits},
    locate::Locations,
    plan::{plan, HookPlan, Kernel, Mechanism},
    validate::{load_policy_for, Mode, Policy},
};

/// A policy ready to be written into the kernel.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The file it came from.
    pub file: String,
    /// The policy as validated.
    pub policy: Policy,
    /// Its hooks, in the policy's order (LSM hooks, then kprobes).
    pub hooks: Vec<PreparedHook>,
}

/// One hook: what the kernel evaluates and where it attaches.
#[derive(Debug, Clone)]
pub struct PreparedHook {
    /// Its arguments and selectors.
    pub rule: HookRule,
    /// Where it attaches on this kernel and what that guarantees.
    pub plan: HookPlan,
}

impl Prepared {
    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.policy.name
    }
}

/// Reads the policy file `path` through the gate (a file others can write is refused, and so
/// is one past [`Limits::POLICY`]) and prepares it for `kernel`.
pub fn prepare(path: &Path, kernel: &Kernel) -> Result<Prepared, InputError> {
    prepare_as(path, kernel, &|_| None)
}

/// A mode set for a policy by name from outside its text (the agent's API), which takes the
/// place of its `policy-mode` option.
pub type ModeOf<'a> = &'a dyn Fn(&str) -> Option<Mode>;

/// [`prepare`], in the mode `mode_of` gives the policy's name, if any.
pub fn prepare_as(path: &Path, kernel: &Kernel, mode_of: ModeOf) -> Result<Prepared, InputError> {
    let text = read_yaml(path, &Limits::POLICY)?;
    // A file on this machine: its `${NAME}` placeholders are filled (load_local_policy).
    prepare_loaded(
        &path.display().to_string(),
        &text,
        kernel,
        mode_of,
        crate::validate::load_policy_with(&path.display().to_string(), &text, kernel.symbols, true),
    )
    .map_err(InputError::Invalid)
}

/// [`prepare`] for a policy's text; `file` names it in errors.
pub fn prepare_text(file: &str, text: &str, kernel: &Kernel) -> Result<Prepared, PolicyErrors> {
    prepare_text_as(file, text, kernel, &|_| None)
}

/// [`prepare_text`], in the mode `mode_of` gives the policy's name, if any.
pub fn prepare_text_as(
    file: &str,
    text: &str,
    kernel: &Kernel,
    mode_of: ModeOf,
) -> Result<Prepared, PolicyErrors> {
    prepare_loaded(
        file,
        text,
        kernel,
        mode_of,
        load_policy_for(file, text, kernel.symbols),
    )
}

/// Compiles and plans a policy `text` loaded as `loaded`.
fn prepare_loaded(
    file: &str,
    text: &str,
    kernel: &Kernel,
    mode_of: ModeOf,
    loaded: Result<Policy, PolicyErrors>,
) -> Result<Prepared, PolicyErrors> {
    let mut policy = loaded?;
    if let Some(mode) = mode_of(&policy.name) {
        policy.mode = mode;
    }
    let locations = Locations::index(text);
    let error = |path: &str, reason: String, fix: String| {
        let pos = locations.key(path).or_else(|| locations.value(path));
        let (line, column) = pos.map_or((1, 1), |p| (p.line, p.column));
        PolicyError {
            file: file.to_string(),
            line,
            column,
            path: path.to_string(),
            reason,
            fix,
        }
    };
    let compiled = compile_all(&policy);
    let monitor = policy.mode == Mode::Monitor;
    let plan_fix = "run `vigil probe` to see what this kernel allows, and hook what it can serve (`vigil policy explain` shows each hook's attach point)";
    // Where each hook attaches comes first: a hook this kernel cannot serve is refused for that
    // whatever else is wrong with it. Hooks that did not compile are planned from their
    // skeletons for that alone.
    let mut errors = Vec::new();
    if let Err(errs) = plan(&compiled.skeletons, monitor, kernel) {
        errors.extend(errs);
    }
    let plans = match plan(&compiled.hooks, monitor, kernel) {
        Ok(plans) => plans,
        Err(errs) => {
            errors.extend(errs);
            Vec::new()
        }
    };
    errors.sort_by_key(|e| hook_order(&e.path));
    let mut errors: Vec<PolicyError> = errors
        .into_iter()
        .map(|e| error(&e.path, e.reason, plan_fix.to_string()))
        .collect();
    errors.extend(
        compiled
            .errors
            .into_iter()
            .map(|e| error(&e.path, e.reason, e.fix)),
    );
    errors.extend(
        check_room(&compiled.hooks)
            .into_iter()
            .map(|(path, reason, fix)| error(&path, reason, fix)),
    );
    let rules = compiled.hooks;
    if !errors.is_empty() {
        return Err(PolicyErrors(errors));
    }
    let prepared = Prepared {
        file: file.to_string(),
        policy,
        hooks: rules
            .into_iter()
            .zip(plans)
            .map(|(rule, plan)| PreparedHook { rule, plan })
            .collect(),
    };
    if let Some(e) = crowded_attach_point(&prepared.hooks) {
        return Err(PolicyErrors(vec![error(&e.0, e.1, e.2)]));
    }
    Ok(prepared)
}

type Problem = (String, String, String);

/// A hook's place in the policy (LSM hooks, then kprobes, by index), for ordering errors.
fn hook_order(path: &str) -> (bool, usize) {
    let index = path
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0);
    (path.starts_with("spec.kprobes"), index)
}

/// What one policy alone needs of the kernel's slots and value maps: more than the kernel holds
/// can never load, whatever else runs. (Beside the running policies there may be less room;
/// the agent says so when it installs.)
fn check_room(rules: &[HookRule]) -> Vec<Problem> {
    let (files, generic): (Vec<&HookRule>, Vec<&HookRule>) =
        rules.iter().partition(|h| h.is_file_open());
    let file_rules: usize = files.iter().map(|h| h.selectors.len().max(1)).sum();
    let selectors: usize = generic.iter().map(|h| h.selectors.len()).sum();
    let mut values = ValueCounts::default();
    for s in rules.iter().flat_map(|h| &h.selectors) {
        values.add(s);
    }
    let names: BTreeSet<&str> = files
        .iter()
        .flat_map(|h| &h.selectors)
        .flat_map(|s| &s.conds)
        .filter_map(|c| match &c.op {
            CondOp::Text(MatchKind::Exact, v) if !c.negate => Some(v),
            _ => None,
        })
        .flatten()
        .map(|v| v.rsplit('/').next().unwrap_or(v))
        // The names the prefilter stores (a rule with another can match any name and turns
        // the prefilter off instead).
        .filter(|n| !n.is_empty() && n.len() < abi::NAME_LEN)
        .collect();
    let merge = "merge selectors with the same action by listing more values in one filter";
    let split = "split the policy into several files";
    let fewer = "list fewer values: a Prefix filter covers many paths with one value";
    let mut problems = Vec::new();
    for (n, max, what, fix) in [
        (
            files.len(),
            abi::FILE_OPEN_HOOKS,
            "file-open hooks",
            "merge them into one hook with more selectors",
        ),
        (file_rules, abi::MAX_RULES, "file-open selectors", merge),
        (
            generic.len(),
            abi::MAX_RULES,
            "hooks other than file opens",
            split,
        ),
        (
            selectors,
            abi::HOOK_RULES,
            "selectors of hooks other than file opens",
            merge,
        ),
        (
            names.len(),
            abi::NAMES,
            "file names in Equal file-open filters",
            fewer,
        ),
        (
            values.exact,
            abi::STR_VALUES,
            "Equal string and path values",
            fewer,
        ),
        (
            values.prefix,
            abi::STR_VALUES,
            "Prefix string and path values",
            fewer,
        ),
        (
            values.postfix,
            abi::STR_VALUES,
            "Postfix string and path values",
            fewer,
        ),
        (
            values.bin_exact,
            abi::STR_VALUES,
            "matchBinaries In and NotIn values",
            fewer,
        ),
        (
            values.bin_prefix,
            abi::STR_VALUES,
            "matchBinaries Prefix and NotPrefix values",
            fewer,
        ),
        (
            values.ints,
            abi::INT_VALUES,
            "integer, port, pid and namespace values",
            split,
        ),
        (
            values.nets,
            abi::NET_VALUES,
            "addresses and networks",
            "list wider networks (CIDRs) instead of single addresses",
        ),
    ] {
        if n > max {
            problems.push((
                "spec".to_string(),
                format!("the policy has {n} {what}; the kernel holds {max}"),
                fix.to_string(),
            ));
        }
    }
    problems
}

/// Values a policy writes into each of the kernel's value maps.
#[derive(Default)]
struct ValueCounts {
    exact: usize,
    prefix: usize,
    postfix: usize,
    bin_exact: usize,
    bin_prefix: usize,
    ints: usize,
    nets: usize,
}

impl ValueCounts {
    fn add(&mut self, s: &HookSelector) {
        for c in &s.conds {
            match &c.op {
                CondOp::Text(MatchKind::Exact, v) => self.exact += v.len(),
                CondOp::Text(MatchKind::Prefix, v) => self.prefix += v.len(),
                CondOp::Text(MatchKind::Postfix, v) => self.postfix += v.len(),
                CondOp::IntIn(v) => self.ints += v.len(),
                CondOp::Port(_, v) => self.ints += v.len(),
                CondOp::Protocol(v) => self.ints += v.len(),
                CondOp::Family(v) => self.ints += v.len(),
                CondOp::State(v) => self.ints += v.len(),
                CondOp::Addr(_, v) => self.nets += v.len(),
                CondOp::Gt(_) | CondOp::Lt(_) | CondOp::Mask(_) => {}
            }
        }
        match &s.binary {
            Some(b) if b.kind == MatchKind::Exact => self.bin_exact += b.values.len(),
            Some(b) => self.bin_prefix += b.values.len(),
            None => {}
        }
        self.ints += s.pids.as_ref().map_or(0, |p| p.values.len());
        self.ints += s.namespaces.iter().map(|n| n.values.len()).sum::<usize>();
    }
}

/// A hook of this policy that would make one attach point run more hooks than the kernel
/// keeps there.
fn crowded_attach_point(hooks: &[PreparedHook]) -> Option<Problem> {
    for (i, h) in hooks.iter().enumerate() {
        let same = hooks[..=i]
            .iter()
            .filter(|o| o.plan.mechanism == h.plan.mechanism && !o.rule.is_file_open())
            .count();
        if same > abi::HOOKS_PER_KEY && !matches!(h.plan.mechanism, Mechanism::NotInKernel(_)) {
            return Some((
                h.rule.hook_path.clone(),
                format!(
                    "the policy hooks {} {same} times; the kernel runs at most {} hooks on one attach point",
                    h.rule.call,
                    abi::HOOKS_PER_KEY
                ),
                "merge the hooks into one with more selectors".to_string(),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::KernelCaps;

    const HOST: Kernel = Kernel {
        caps: KernelCaps {
            tracepoint: true,
            send_signal: true,
            lsm: false,
            kprobe: false,
            fentry: false,
            fmod_ret: false,
            override_return: false,
            uprobe: true,
        },
        symbols: None,
    };

    fn file_open(selectors: &str) -> String {
        format!("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: p\nspec:\n  lsmhooks:\n  - hook: file_open\n    args:\n    - index: 0\n      type: file\n    selectors:\n{selectors}")
    }

    #[test]
    fn a_value_longer_than_the_kernel_compares_is_refused_at_its_line_with_a_fix() {
        let long = format!("/{}", "a".repeat(abi::MATCH_MAX));
        let text = file_open(&format!(
            "    - matchArgs:\n      - index: 0\n        operator: Equal\n        values: [\"{long}\"]\n"
        ));
        let e = &prepare_text("p.yaml", &text, &HOST).unwrap_err().0[0];
        assert_eq!(
            e.path,
            "spec.lsmhooks[0].selectors[0].matchArgs[0].values[0]"
        );
        assert_eq!(e.line, 15);
        assert!(
            e.reason.contains("longer than the 251 bytes"),
            "{}",
            e.reason
        );
        assert!(e.fix.contains("Prefix filter"), "{}", e.fix);
    }

    #[test]
    fn time_for_children_is_a_namespace_selectors_can_name() {
        let text = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: p\nspec:\n  kprobes:\n  - call: sys_setuid\n    syscall: true\n    args:\n    - index: 0\n      type: int\n    selectors:\n    - matchNamespaces:\n      - namespace: TimeForChildren\n        operator: NotIn\n        values: [host_ns]\n";
        let prepared = prepare_text("p.yaml", text, &HOST).unwrap();
        let ns = &prepared.hooks[0].rule.selectors[0].namespaces[0];
        assert_eq!((ns.ns, ns.not_in), (abi::ns::TIME_FOR_CHILDREN, true));
    }

    #[test]
    fn what_only_compilation_finds_is_placed_at_its_line_and_column() {
        let text = file_open("    - matchPIDs:\n      - operator: In\n        values: [1]\n");
        let e = &prepare_text("p.yaml", &text, &HOST).unwrap_err().0[0];
        assert_eq!(e.path, "spec.lsmhooks[0].selectors[0].matchPIDs");
        assert_eq!((e.line, e.column), (12, 7));
        assert!(e.reason.contains("on file opens"), "{}", e.reason);
        assert!(!e.fix.is_empty());
    }

    #[test]
    fn pid_filters_that_read_the_pid_the_same_way_are_merged_and_others_refused() {
        let policy = |second: &str| {
            format!("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: p\nspec:\n  kprobes:\n  - call: sys_setuid\n    syscall: true\n    selectors:\n    - matchPIDs:\n      - operator: NotIn\n        isNamespacePID: true\n        values: [1]\n      - operator: {second}\n        isNamespacePID: true\n        values: [0, 1]\n")
        };
        let prepared = prepare_text("p.yaml", &policy("NotIn"), &HOST).unwrap();
        let pids = prepared.hooks[0].rule.selectors[0].pids.clone().unwrap();
        assert_eq!(
            (pids.values, pids.not_in, pids.namespace),
            (vec![0, 1], true, true)
        );
        let errors = prepare_text("p.yaml", &policy("In"), &HOST).unwrap_err().0;
        assert_eq!(errors[0].path, "spec.kprobes[0].selectors[0].matchPIDs[1]");
        assert!(errors[0].reason.contains("another way"), "{errors:?}");
    }

    #[test]
    fn where_a_hook_cannot_attach_is_said_before_what_else_is_wrong_with_it() {
        let text = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: p\nspec:\n  kprobes:\n  - call: do_init_module\n    return: true\n    args:\n    - index: 0\n      type: char_buf\n    returnArg:\n      index: 0\n      type: int\n";
        let errors = prepare_text("p.yaml", text, &HOST).unwrap_err().0;
        assert!(errors[0].reason.contains("needs a kprobe"), "{errors:?}");
        assert!(errors[1].reason.contains("sizeArgIndex"), "{errors:?}");
    }

    #[test]
    fn a_policy_with_more_file_open_hooks_than_the_kernel_holds_is_refused() {
        let hook = "  - hook: file_open\n    args:\n    - index: 0\n      type: file\n";
        let text = format!(
            "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: p\nspec:\n  lsmhooks:\n{}",
            hook.repeat(abi::FILE_OPEN_HOOKS + 1)
        );
        let errors = prepare_text("p.yaml", &text, &HOST).unwrap_err().0;
        assert!(
            errors
                .iter()
                .any(|e| e.reason == "the policy has 33 file-open hooks; the kernel holds 32"),
            "{errors:?}"
        );
    }

    #[test]
    fn the_plan_and_the_rules_are_kept_together_per_hook() {
        let text = file_open(
            "    - matchArgs:\n      - index: 0\n        operator: Equal\n        values: [\"/etc/passwd\"]\n      matchActions:\n      - action: Override\n        argError: -1\n",
        );
        let p = prepare_text("p.yaml", &text, &HOST).unwrap();
        assert_eq!(p.name(), "p");
        assert_eq!(p.hooks.len(), 1);
        assert!(p.hooks[0].rule.is_file_open());
        assert!(matches!(
            p.hooks[0].plan.mechanism,
            Mechanism::SyscallTracepoints(_)
        ));
    }
}
