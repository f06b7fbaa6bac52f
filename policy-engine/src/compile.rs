//! From a validated policy to the rules the kernel evaluates (`struct vigil_rule` plus its
//! values), one rule per selector.
//!
//! File opens (`lsmhooks: file_open`, `kprobes: security_file_open`) have their own evaluator,
//! which matches the path the kernel resolved and can deny (Override) before the open: a
//! `file` argument filtered by Equal, NotEqual, Prefix, NotPrefix, Postfix or NotPostfix,
//! `matchBinaries`, and the actions Post, NoPost, Sigkill, Signal and Override. Every other
//! kprobe compiles to a generic hook (`hooks.rs`). A policy using anything the kernel cannot
//! evaluate is refused here with the hook or filter named, so it is never loaded half-enforced.

pub use crate::hooks::{HookArg, HookArgKind, HookRule};
use crate::{
    hooks::generic_hook,
    spec::Selector,
    validate::{Mode, Policy},
};

/// The hook a rule runs on (`enum vigil_hook`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleHook {
    /// A file is being opened.
    FileOpen,
}

/// What a rule does when it matches (`enum vigil_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// Report.
    Post,
    /// Match without reporting.
    NoPost,
    /// Kill the process.
    Sigkill,
    /// Fail the operation with this (negative) errno.
    Override(i32),
    /// Send this signal.
    Signal(i32),
}

/// How a filter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// Equal to one of the values.
    Exact,
    /// Starts with one of the values.
    Prefix,
    /// Ends with one of the values.
    Postfix,
}

/// A path or binary filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// How it compares.
    pub kind: MatchKind,
    /// Matches when the comparison fails.
    pub negate: bool,
    /// The values.
    pub values: Vec<String>,
}

/// One compiled selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The hook's field path, for events and errors (`spec.lsmhooks[0]`).
    pub hook_path: String,
    /// The function or LSM hook as the policy names it.
    pub function: String,
    /// `process_lsm` (LSM hook) or `process_kprobe` (kprobe) events.
    pub is_lsm: bool,
    /// Where it runs.
    pub hook: RuleHook,
    /// The path filter.
    pub path: Option<Filter>,
    /// The binary filter.
    pub binary: Option<Filter>,
    /// What it does.
    pub action: RuleAction,
    /// Whether it reports (a `NoPost` beside an enforcing action silences it).
    pub post: bool,
    /// Monitor mode: report what the action would have done.
    pub monitor: bool,
    /// The hook's `message`.
    pub message: Option<String>,
    /// The hook's `tags`.
    pub tags: Vec<String>,
}

/// Everything a policy compiles to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compiled {
    /// File-open rules, one per selector.
    pub rules: Vec<Rule>,
    /// Generic hooks.
    pub hooks: Vec<HookRule>,
}

/// Why a policy cannot be compiled for the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// The field path.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// The longest value a filter compares in the kernel (`VIGIL_MATCH_MAX`).
pub const MAX_MATCH_VALUE: usize = 251;

/// A hook about to be compiled.
struct HookSource<'a> {
    path: String,
    function: &'a str,
    is_lsm: bool,
    file_arg: Option<u32>,
    selectors: &'a [Selector],
    message: &'a Option<String>,
    tags: &'a [String],
}

/// Compiles every selector of `policy` into a rule, and every other kprobe into a hook.
pub fn compile(policy: &Policy) -> Result<Compiled, Vec<CompileError>> {
    let mut rules = Vec::new();
    let mut hooks = Vec::new();
    let mut errors = Vec::new();
    let monitor = policy.mode == Mode::Monitor;
    let file_arg =
        |args: &[crate::spec::ArgSpec]| args.iter().find(|a| a.r#type == "file").map(|a| a.index);
    for (i, l) in policy.spec.lsmhooks.iter().enumerate() {
        let path = format!("spec.lsmhooks[{i}]");
        if l.hook != "file_open" {
            let reason = format!("vigil does not enforce the LSM hook `{}` in the kernel yet (file_open is supported)", l.hook);
            errors.push(CompileError { path, reason });
            continue;
        }
        let src = HookSource {
            path,
            function: &l.hook,
            is_lsm: true,
            file_arg: file_arg(&l.args),
            selectors: &l.selectors,
            message: &l.message,
            tags: &l.tags,
        };
        compile_hook(src, monitor, &mut rules, &mut errors);
    }
    for (i, k) in policy.spec.kprobes.iter().enumerate() {
        let path = format!("spec.kprobes[{i}]");
        if k.call != "security_file_open" {
            match generic_hook(&path, k, monitor) {
                Ok(h) => hooks.push(h),
                Err(e) => errors.extend(e),
            }
            continue;
        }
        let src = HookSource {
            path,
            function: &k.call,
            is_lsm: false,
            file_arg: file_arg(&k.args),
            selectors: &k.selectors,
            message: &k.message,
            tags: &k.tags,
        };
        compile_hook(src, monitor, &mut rules, &mut errors);
    }
    for (i, t) in policy.spec.tracepoints.iter().enumerate() {
        errors.push(CompileError {
            path: format!("spec.tracepoints[{i}]"),
            reason: format!(
                "vigil does not run policy tracepoints ({}/{}) yet",
                t.subsystem, t.event
            ),
        });
    }
    if errors.is_empty() {
        Ok(Compiled { rules, hooks })
    } else {
        Err(errors)
    }
}

fn compile_hook(
    src: HookSource,
    monitor: bool,
    rules: &mut Vec<Rule>,
    errors: &mut Vec<CompileError>,
) {
    let Some(file_index) = src.file_arg else {
        errors.push(CompileError {
            path: src.path,
            reason: format!(
                "vigil enforces `{}` in the kernel only with a `file` argument to match on",
                src.function
            ),
        });
        return;
    };
    let rule = |path, binary, action, post| Rule {
        hook_path: src.path.clone(),
        function: src.function.to_string(),
        is_lsm: src.is_lsm,
        hook: RuleHook::FileOpen,
        path,
        binary,
        action,
        post,
        monitor,
        message: src.message.clone(),
        tags: src.tags.to_vec(),
    };
    if src.selectors.is_empty() {
        rules.push(rule(None, None, RuleAction::Post, true));
    }
    for (i, s) in src.selectors.iter().enumerate() {
        match compile_selector(&format!("{}.selectors[{i}]", src.path), s, file_index) {
            Ok((path, binary, action, post)) => rules.push(rule(path, binary, action, post)),
            Err(e) => errors.push(e),
        }
    }
}

type SelectorParts = (Option<Filter>, Option<Filter>, RuleAction, bool);

fn compile_selector(
    spath: &str,
    s: &Selector,
    file_index: u32,
) -> Result<SelectorParts, CompileError> {
    let err = |field: &str, reason: String| CompileError {
        path: format!("{spath}.{field}"),
        reason,
    };
    for (field, present) in [
        ("matchReturnArgs", !s.match_return_args.is_empty()),
        ("matchPIDs", !s.match_pids.is_empty()),
        ("matchNamespaces", !s.match_namespaces.is_empty()),
        ("matchCapabilities", !s.match_capabilities.is_empty()),
    ] {
        if present {
            return Err(err(
                field,
                format!("vigil does not evaluate `{field}` on file opens in the kernel yet"),
            ));
        }
    }
    if s.match_args.len() > 1 || s.match_binaries.len() > 1 {
        return Err(err("matchArgs", "vigil evaluates one matchArgs and one matchBinaries filter per selector in the kernel; split the selector".into()));
    }
    let path = match s.match_args.first() {
        None => None,
        Some(f) if f.index != file_index => {
            return Err(err(
                "matchArgs[0].index",
                format!(
                    "only the `file` argument (index {file_index}) can be matched on file opens"
                ),
            ))
        }
        Some(f) => {
            let (kind, negate) = match f.operator.as_str() {
                "Equal" => (MatchKind::Exact, false),
                "NotEqual" => (MatchKind::Exact, true),
                "Prefix" => (MatchKind::Prefix, false),
                "NotPrefix" => (MatchKind::Prefix, true),
                "Postfix" => (MatchKind::Postfix, false),
                "NotPostfix" => (MatchKind::Postfix, true),
                other => {
                    return Err(err(
                        "matchArgs[0].operator",
                        format!("operator `{other}` is not evaluated on file paths"),
                    ))
                }
            };
            Some(filter(
                spath,
                "matchArgs[0]",
                kind,
                negate,
                f.values.iter().map(|v| v.0.clone()),
            )?)
        }
    };
    let binary = binary_filter(spath, s)?;
    let mut action = RuleAction::Post;
    for a in &s.match_actions {
        action = match a.action.as_str() {
            "Sigkill" => RuleAction::Sigkill,
            "Override" => RuleAction::Override(a.arg_error.unwrap_or(-1) as i32),
            "Signal" => RuleAction::Signal(a.arg_sig.unwrap_or(9) as i32),
            "NoPost" if action == RuleAction::Post => RuleAction::NoPost,
            _ => action,
        };
    }
    let post = !s.match_actions.iter().any(|a| a.action == "NoPost");
    Ok((path, binary, action, post))
}

/// A selector's (first) `matchBinaries` as a filter on the binary's path.
pub(crate) fn binary_filter(spath: &str, s: &Selector) -> Result<Option<Filter>, CompileError> {
    let Some(f) = s.match_binaries.first() else {
        return Ok(None);
    };
    let (kind, negate) = match f.operator.as_str() {
        "In" => (MatchKind::Exact, false),
        "NotIn" => (MatchKind::Exact, true),
        "Prefix" => (MatchKind::Prefix, false),
        _ => (MatchKind::Prefix, true),
    };
    filter(
        spath,
        "matchBinaries[0]",
        kind,
        negate,
        f.values.iter().map(|v| v.0.clone()),
    )
    .map(Some)
}

pub(crate) fn filter(
    spath: &str,
    field: &str,
    kind: MatchKind,
    negate: bool,
    values: impl Iterator<Item = String>,
) -> Result<Filter, CompileError> {
    let values: Vec<String> = values.collect();
    if let Some((j, v)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| v.len() > MAX_MATCH_VALUE)
    {
        return Err(CompileError {
            path: format!("{spath}.{field}.values[{j}]"),
            reason: format!(
                "`{}...` is longer than the {MAX_MATCH_VALUE} bytes the kernel compares",
                crate::error::clip(v, 32)
            ),
        });
    }
    Ok(Filter {
        kind,
        negate,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_value_with_a_multi_byte_character_at_the_cut_does_not_panic() {
        // 31 ASCII bytes, then `é` (2 bytes) straddling byte 32, then enough to be too long.
        let value = format!("/{}é{}", "a".repeat(30), "b".repeat(300));
        let e = filter(
            "spec.kprobes[0].selectors[0]",
            "matchArgs[0]",
            MatchKind::Prefix,
            false,
            [value].into_iter(),
        )
        .unwrap_err();
        assert!(
            e.reason.contains("longer than the 251 bytes"),
            "{}",
            e.reason
        );
        assert!(
            e.reason.starts_with(&format!("`/{}", "a".repeat(30))),
            "{}",
            e.reason
        );
    }
}
