//! From a validated policy to what the kernel evaluates: every hook, file opens included,
//! becomes a [`HookRule`] (its arguments and one [`HookSelector`] per selector; `hook_rule.rs`
//! compiles selectors). Anything the kernel cannot evaluate is refused here with the field
//! named and the fix, so a policy is never loaded half-enforced.
//!
//! File opens (`lsmhooks: file_open`, `kprobes: security_file_open`) are hooks with a `file`
//! argument. The kernel serves them with its file-open evaluator (BPF LSM or the open system
//! calls' exits, see the plan), which matches the path the kernel resolved and can deny before
//! the open: per selector one path filter (Equal, NotEqual, Prefix, NotPrefix, Postfix,
//! NotPostfix) and one `matchBinaries`, and the actions Post, NoPost, Sigkill, Signal and
//! Override. [`check_file_open_selector`] refuses the rest.

pub use crate::hook_rule::{HookArg, HookArgKind, HookRule, HookSelector};
use crate::{
    hook_rule::{generic_hook, hook_rule, HookSource},
    spec::{KprobeSpec, Selector},
    validate::{Mode, Policy},
};

/// What a selector does when it matches (`enum vigil_action`).
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

/// A binary filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// How it compares.
    pub kind: MatchKind,
    /// Matches when the comparison fails.
    pub negate: bool,
    /// The values.
    pub values: Vec<String>,
}

/// Why a policy cannot be compiled for the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    /// The field path.
    pub path: String,
    /// Why.
    pub reason: String,
    /// What to change.
    pub fix: String,
}

impl CompileError {
    /// From a message whose advice follows its reason after `; ` (or, lacking one, with the
    /// advice to bring the field within what vigil evaluates).
    pub(crate) fn from_text(path: String, text: String) -> Self {
        match text.split_once("; ") {
            Some((reason, fix)) => CompileError::new(path, reason, fix),
            None => CompileError::new(
                path,
                text,
                "change the field to a form the kernel evaluates (vigil policy explain lists them), or remove it",
            ),
        }
    }

    pub(crate) fn new(path: String, reason: impl Into<String>, fix: impl Into<String>) -> Self {
        CompileError {
            path,
            reason: reason.into(),
            fix: fix.into(),
        }
    }
}

/// Compiles every hook of `policy`, in the order of the policy: LSM hooks, kprobes.
pub fn compile(policy: &Policy) -> Result<Vec<HookRule>, Vec<CompileError>> {
    let c = compile_all(policy);
    if c.errors.is_empty() {
        Ok(c.hooks)
    } else {
        Err(c.errors)
    }
}

/// Every hook that compiled, every reason one did not, and, for each kprobe that did not, its
/// skeleton: the call and the positions of its arguments, with no selectors, which is all the
/// plan needs to say whether and where it could attach on a kernel.
#[derive(Debug, Default)]
pub struct Compiled {
    /// The hooks that compiled.
    pub hooks: Vec<HookRule>,
    /// Why the others did not.
    pub errors: Vec<CompileError>,
    /// The kprobes that did not, as far as planning needs them.
    pub skeletons: Vec<HookRule>,
}

/// [`compile`], keeping what compiled beside what did not.
pub fn compile_all(policy: &Policy) -> Compiled {
    let mut hooks = Vec::new();
    let mut errors = Vec::new();
    let mut skeletons = Vec::new();
    let monitor = policy.mode == Mode::Monitor;
    for (i, l) in policy.spec.lsmhooks.iter().enumerate() {
        let path = format!("spec.lsmhooks[{i}]");
        if l.hook != "file_open" {
            errors.push(CompileError::new(
                path,
                format!("vigil does not enforce the LSM hook `{}` in the kernel yet (file_open is supported)", l.hook),
                "hook the operation with a kprobe on its kernel function instead",
            ));
            continue;
        }
        let src = HookSource {
            path,
            call: &l.hook,
            lsm: true,
            syscall: false,
            returns: false,
            args: &l.args,
            selectors: &l.selectors,
            message: &l.message,
            tags: &l.tags,
        };
        match file_open_hook(src, monitor) {
            Ok(h) => hooks.push(h),
            Err(e) => errors.extend(e),
        }
    }
    for (i, k) in policy.spec.kprobes.iter().enumerate() {
        if policy.absent_kprobes.contains(&i) {
            continue;
        }
        let path = format!("spec.kprobes[{i}]");
        // The file-open evaluator holds path and binary filters; a filter on the process
        // makes the hook a generic one on the function (a kprobe, Override by fmod_ret).
        let on_process = k.selectors.iter().any(|s| {
            !s.match_pids.is_empty()
                || !s.match_namespaces.is_empty()
                || !s.match_capabilities.is_empty()
        });
        let result = if k.call == "security_file_open" && !on_process {
            let src = HookSource {
                path,
                call: &k.call,
                lsm: false,
                syscall: k.syscall,
                returns: false,
                args: &k.args,
                selectors: &k.selectors,
                message: &k.message,
                tags: &k.tags,
            };
            file_open_hook(src, monitor)
        } else {
            generic_hook(&path, k, monitor).map(|mut h| {
                if let Some(list) = crate::lists::target(&policy.spec, &k.call) {
                    h.syscall = list.ftrace.is_none();
                    h.list = Some(list);
                }
                h
            })
        };
        match result {
            Ok(h) => hooks.push(h),
            Err(e) => {
                errors.extend(e);
                skeletons.push(skeleton(&format!("spec.kprobes[{i}]"), k, monitor));
            }
        }
    }
    let uprobes = crate::uprobes::compile_uprobes(&policy.spec, monitor);
    hooks.extend(uprobes.hooks);
    errors.extend(uprobes.errors);
    if policy.spec.loader {
        match loader_hook(monitor) {
            Ok(h) => hooks.push(h),
            Err(e) => errors.extend(e),
        }
    }
    let tracepoints = crate::tracepoints::compile_tracepoints(&policy.spec, monitor);
    hooks.extend(tracepoints.hooks);
    errors.extend(tracepoints.errors);
    Compiled {
        hooks,
        errors,
        skeletons,
    }
}

/// A file-open hook: its `file` argument and selectors the file-open evaluator can hold.
fn file_open_hook(src: HookSource, monitor: bool) -> Result<HookRule, Vec<CompileError>> {
    let Some(file_index) = src
        .args
        .iter()
        .find(|a| a.r#type == "file")
        .map(|a| a.index)
    else {
        return Err(vec![CompileError::new(
            src.path.clone(),
            format!(
                "vigil enforces `{}` in the kernel only with a `file` argument to match on",
                src.call
            ),
            "declare `args: [{index: 0, type: file}]`",
        )]);
    };
    let errors: Vec<CompileError> = src
        .selectors
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            check_file_open_selector(&format!("{}.selectors[{i}]", src.path), s, file_index).err()
        })
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    hook_rule(src, monitor)
}

/// The loader as a hook: the LSM check of every mapping of a file, kept where the mapping is
/// executable (PROT_EXEC) and of a file (an anonymous mapping has no path).
const LOADER_HOOK: &str = r#"
call: security_mmap_file
args:
- index: 0
  type: file
- index: 1
  type: uint32
selectors:
- matchArgs:
  - index: 0
    operator: Prefix
    values: ["/"]
  - index: 1
    operator: Mask
    values: ["4"]
"#;

fn loader_hook(monitor: bool) -> Result<HookRule, Vec<CompileError>> {
    let k: KprobeSpec = serde_yaml::from_str(LOADER_HOOK).expect("the loader hook parses");
    let mut h = generic_hook("spec.loader", &k, monitor)?;
    h.loader = true;
    Ok(h)
}

/// Refuses what the file-open evaluator does not hold: one path filter on the `file` argument
/// and one binary filter per selector, no pid, namespace or capability filter.
fn check_file_open_selector(
    spath: &str,
    s: &Selector,
    file_index: u32,
) -> Result<(), CompileError> {
    let err = |field: &str, reason: String, fix: &str| {
        CompileError::new(format!("{spath}.{field}"), reason, fix)
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
                "remove the filter, or hook the open with a kprobe on a function that takes the file",
            ));
        }
    }
    if s.match_args.len() > 1 || s.match_binaries.len() > 1 {
        return Err(err(
            "matchArgs",
            "vigil evaluates one matchArgs and one matchBinaries filter per selector in the kernel"
                .into(),
            "split the selector into one selector per filter",
        ));
    }
    match s.match_args.first() {
        Some(f) if f.index != file_index => Err(err(
            "matchArgs[0].index",
            format!("only the `file` argument (index {file_index}) can be matched on file opens"),
            &format!("use index {file_index}"),
        )),
        Some(f)
            if !matches!(
                f.operator.as_str(),
                "Equal" | "NotEqual" | "Prefix" | "NotPrefix" | "Postfix" | "NotPostfix"
            ) =>
        {
            Err(err(
                "matchArgs[0].operator",
                format!("operator `{}` is not evaluated on file paths", f.operator),
                "use Equal, NotEqual, Prefix, NotPrefix, Postfix or NotPostfix",
            ))
        }
        _ => Ok(()),
    }
}

/// A selector's (first) `matchBinaries` as a filter on the binary's path.
pub(crate) fn binary_filter(s: &Selector) -> Option<Filter> {
    let f = s.match_binaries.first()?;
    let (kind, negate) = match f.operator.as_str() {
        "In" => (MatchKind::Exact, false),
        "NotIn" => (MatchKind::Exact, true),
        "Prefix" => (MatchKind::Prefix, false),
        _ => (MatchKind::Prefix, true),
    };
    Some(Filter {
        kind,
        negate,
        values: f.values.iter().map(|v| v.0.clone()).collect(),
    })
}

/// A kprobe that did not compile, as far as planning needs it: its call and what it reads (its
/// arguments, or on the return the return value), with no selectors.
fn skeleton(path: &str, k: &KprobeSpec, monitor: bool) -> HookRule {
    HookRule {
        hook_path: path.to_string(),
        call: k.call.clone(),
        lsm: false,
        syscall: k.syscall,
        args: k
            .return_arg
            .iter()
            .filter(|_| k.r#return)
            .chain(k.args.iter().filter(|_| !k.r#return))
            .map(|a| HookArg {
                index: a.index,
                kind: HookArgKind::String,
                label: None,
            })
            .collect(),
        returns: k.r#return,
        selectors: Vec::new(),
        monitor,
        message: None,
        tags: Vec::new(),
        uprobe: None,
        list: None,
        return_sock: None,
        tracepoint: None,
        loader: false,
    }
}
