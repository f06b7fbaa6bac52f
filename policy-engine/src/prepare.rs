//! The one way a policy goes from a file to what the kernel runs: read through the gate,
//! parse and validate, compile every hook, and plan where each attaches on this kernel, in
//! one pass that reports every problem with its file, line, column, field and fix.
//! `vigil policy lint`, `explain` and `test` and the agent all call [`prepare`], so what they
//! say about a policy is what the agent does with it: the sensor only writes a [`Prepared`]
//! into maps and attaches exactly its [`HookPlan`]s.

use std::path::Path;

use vigil_bpf_kprobes::abi;

use crate::{
    compile::{compile, HookRule},
    error::{PolicyError, PolicyErrors},
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
    let text = read_yaml(path, &Limits::POLICY)?;
    prepare_text(&path.display().to_string(), &text, kernel).map_err(InputError::Invalid)
}

/// [`prepare`] for a policy's text; `file` names it in errors.
pub fn prepare_text(file: &str, text: &str, kernel: &Kernel) -> Result<Prepared, PolicyErrors> {
    let policy = load_policy_for(file, text, kernel.symbols)?;
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
    let rules = compile(&policy).map_err(|errs| {
        PolicyErrors(
            errs.into_iter()
                .map(|e| error(&e.path, e.reason, e.fix))
                .collect(),
        )
    })?;
    let mut errors = check_room(&rules)
        .into_iter()
        .map(|(path, reason, fix)| error(&path, reason, fix))
        .collect::<Vec<_>>();
    let monitor = policy.mode == Mode::Monitor;
    let plans = match plan(&rules, monitor, kernel) {
        Ok(plans) => plans,
        Err(errs) => {
            errors.extend(errs.into_iter().map(|e| {
                error(
                    &e.path,
                    e.reason,
                    "run `vigil probe` to see what this kernel allows, and hook what it can serve (`vigil policy explain` shows each hook's attach point)".into(),
                )
            }));
            Vec::new()
        }
    };
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

/// What one policy alone needs of the kernel's slots: more than the kernel holds can never
/// load, whatever else runs.
fn check_room(rules: &[HookRule]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let file_rules: usize = rules
        .iter()
        .filter(|h| h.is_file_open())
        .map(|h| h.selectors.len().max(1))
        .sum();
    let hooks = rules.iter().filter(|h| !h.is_file_open()).count();
    let selectors: usize = rules
        .iter()
        .filter(|h| !h.is_file_open())
        .map(|h| h.selectors.len())
        .sum();
    for (n, max, what, fix) in [
        (file_rules, abi::MAX_RULES, "file-open selectors", "split the policy, or merge selectors with the same action by listing more values in one filter"),
        (hooks, abi::MAX_RULES, "hooks other than file opens", "split the policy into several files"),
        (selectors, abi::HOOK_RULES, "selectors of hooks other than file opens", "merge selectors with the same action by listing more values in one filter"),
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
