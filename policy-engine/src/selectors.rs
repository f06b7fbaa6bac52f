//! Checks of selectors: each filter against the arguments its hook declares, each operator
//! against the argument's type, each value against the operator, and each action against the
//! hook it would run on.

use vigil_bpf_kprobes::abi;

use crate::{
    args::{arg_class, ArgClass},
    spec::{ArgFilter, ArgSpec, Selector},
    validate::{Checker, MAX_SELECTORS},
    values,
};

/// What a selector list hangs off.
pub(crate) struct Hook<'a> {
    /// Field path of the hook.
    pub path: &'a str,
    /// Its declared arguments.
    pub args: &'a [ArgSpec],
    /// `matchArgs.index` is a position in `args` (tracepoints), not an argument index.
    pub by_position: bool,
    /// The hook reports its return value, read as this type (`int` when unsaid).
    pub has_return: bool,
    /// `returnArg.type`.
    pub return_type: Option<&'a str>,
    /// `Override` can act here (system calls and LSM hooks).
    pub can_override: bool,
    /// The kernel function a kprobe hooks; empty for other hooks.
    pub call: &'a str,
}

const TEXT_OPS: [&str; 6] = [
    "Equal",
    "NotEqual",
    "Prefix",
    "NotPrefix",
    "Postfix",
    "NotPostfix",
];
const INT_OPS: [&str; 5] = ["Equal", "NotEqual", "GT", "LT", "Mask"];
const SOCK_OPS: [&str; 11] = [
    "SAddr", "DAddr", "NotSAddr", "NotDAddr", "SPort", "DPort", "NotSPort", "NotDPort", "Protocol",
    "Family", "State",
];
const SKB_OPS: [&str; 10] = [
    "SAddr", "DAddr", "NotSAddr", "NotDAddr", "SPort", "DPort", "NotSPort", "NotDPort", "Protocol",
    "Family",
];
const SOCKADDR_OPS: [&str; 5] = ["SAddr", "NotSAddr", "SPort", "NotSPort", "Family"];
/// Operators Tetragon has and vigil refuses by name.
const UNSUPPORTED_OPS: [&str; 4] = ["InMap", "NotInMap", "CapabilitiesGained", "FileType"];
/// Operators a tracepoint's integer fields take besides [`INT_OPS`]: membership in the values,
/// or in a `list:` of system calls (their numbers).
const MAP_OPS: [&str; 2] = ["InMap", "NotInMap"];
const ACTIONS: [&str; 7] = [
    "Post",
    "NoPost",
    "Sigkill",
    "Signal",
    "Override",
    "TrackSock",
    "UntrackSock",
];
/// Actions Tetragon has and vigil refuses by name.
const UNSUPPORTED_ACTIONS: [&str; 9] = [
    "FollowFD",
    "UnfollowFD",
    "CopyFD",
    "GetUrl",
    "DnsLookup",
    "NotifyEnforcer",
    "CleanupEnforcerNotification",
    "Set",
    "NoOp",
];

fn ops_for(class: ArgClass) -> &'static [&'static str] {
    match class {
        ArgClass::Int { .. } => &INT_OPS,
        ArgClass::Text | ArgClass::Path => &TEXT_OPS,
        ArgClass::Sock => &SOCK_OPS,
        ArgClass::Skb => &SKB_OPS,
        ArgClass::Sockaddr => &SOCKADDR_OPS,
        ArgClass::Dns | ArgClass::Nop | ArgClass::Cred | ArgClass::Object => &[],
    }
}

pub(crate) fn check_selectors(c: &mut Checker, hook: &Hook, selectors: &[Selector]) {
    if selectors.len() > MAX_SELECTORS {
        c.field(
            &format!("{}.selectors", hook.path),
            format!(
                "{} selectors; a hook has at most {MAX_SELECTORS}",
                selectors.len()
            ),
            "merge selectors with the same actions by listing more values in one filter",
        );
    }
    for (i, s) in selectors.iter().enumerate() {
        check_selector(c, hook, &format!("{}.selectors[{i}]", hook.path), s);
    }
}

fn check_selector(c: &mut Checker, hook: &Hook, path: &str, s: &Selector) {
    check_arg_filters(c, hook, path, s);
    check_binaries(c, path, s);
    check_process_filters(c, path, s);
    for (field, present) in [
        (
            "matchNamespaceChanges",
            !s.match_namespace_changes.is_empty(),
        ),
        (
            "matchCapabilityChanges",
            !s.match_capability_changes.is_empty(),
        ),
        ("matchReturnActions", !s.match_return_actions.is_empty()),
    ] {
        if present {
            c.unsupported(&format!("{path}.{field}"), &format!("`{field}`"));
        }
    }
    check_actions(c, hook, path, s);
}

/// `matchArgs` against the hook's declared arguments, `matchReturnArgs` against its return.
fn check_arg_filters(c: &mut Checker, hook: &Hook, path: &str, s: &Selector) {
    for (i, f) in s.match_args.iter().enumerate() {
        let fpath = format!("{path}.matchArgs[{i}]");
        let arg = if hook.by_position {
            hook.args.get(f.index as usize)
        } else {
            hook.args.iter().find(|a| a.index == f.index)
        };
        match arg {
            None => {
                let declared: Vec<String> = if hook.by_position {
                    (0..hook.args.len()).map(|p| p.to_string()).collect()
                } else {
                    hook.args.iter().map(|a| a.index.to_string()).collect()
                };
                c.value(
                    &format!("{fpath}.index"),
                    format!(
                        "matchArgs index {} names no argument declared in `args`",
                        f.index
                    ),
                    if declared.is_empty() {
                        "declare the argument under `args` first".to_string()
                    } else {
                        format!(
                            "use one of the declared {}: {}",
                            if hook.by_position {
                                "positions"
                            } else {
                                "indexes"
                            },
                            declared.join(", ")
                        )
                    },
                );
            }
            Some(a) => {
                if let Some(class) = arg_class(&a.r#type) {
                    check_arg_filter(c, &fpath, f, (class, &a.r#type), hook.by_position);
                }
            }
        }
    }
    for (i, f) in s.match_return_args.iter().enumerate() {
        let fpath = format!("{path}.matchReturnArgs[{i}]");
        if !hook.has_return {
            c.field(
                &fpath,
                "matchReturnArgs on a hook without `return: true`",
                "add `return: true` to the hook",
            );
        }
        let ty = hook.return_type.unwrap_or("int");
        let class = arg_class(ty).unwrap_or(ArgClass::Int {
            bits: 64,
            signed: true,
        });
        check_arg_filter(
            c,
            &fpath,
            f,
            (class, &format!("return value ({ty})")),
            false,
        );
    }
}

/// `matchBinaries`: absolute paths the kernel can compare.
fn check_binaries(c: &mut Checker, path: &str, s: &Selector) {
    for (i, f) in s.match_binaries.iter().enumerate() {
        let fpath = format!("{path}.matchBinaries[{i}]");
        if !["In", "NotIn", "Prefix", "NotPrefix"].contains(&f.operator.as_str()) {
            c.value(
                &format!("{fpath}.operator"),
                format!("matchBinaries operator `{}` is not supported", f.operator),
                "use In, NotIn, Prefix or NotPrefix",
            );
        }
        if f.follow_children {
            c.unsupported(&format!("{fpath}.followChildren"), "`followChildren`");
        }
        check_values(c, &fpath, f.values.len(), abi::STR_VALUES);
        for (j, v) in f.values.iter().enumerate() {
            if !v.0.starts_with('/') {
                c.value(
                    &format!("{fpath}.values[{j}]"),
                    format!("`{}` is not an absolute path", v.0),
                    "write the binary's full path, as the kernel resolves it (e.g. /usr/bin/cat)",
                );
            } else if let Err((reason, fix)) = fits_match(&v.0) {
                c.value(&format!("{fpath}.values[{j}]"), reason, fix);
            }
        }
    }
}

/// `matchPIDs`, `matchNamespaces` and `matchCapabilities`.
fn check_process_filters(c: &mut Checker, path: &str, s: &Selector) {
    for (i, f) in s.match_pids.iter().enumerate() {
        let fpath = format!("{path}.matchPIDs[{i}]");
        in_not_in(c, &fpath, &f.operator);
        check_values(c, &fpath, f.values.len(), abi::INT_VALUES);
        for (j, v) in f.values.iter().enumerate() {
            if let Err(e) = values::int_for(&v.0, 32, false) {
                c.value(&format!("{fpath}.values[{j}]"), e, "write a process id");
            }
        }
    }
    for (i, f) in s.match_namespaces.iter().enumerate() {
        let fpath = format!("{path}.matchNamespaces[{i}]");
        let known = crate::hook_rule::NAMESPACES;
        if !known.contains(&f.namespace.as_str()) {
            c.value(
                &format!("{fpath}.namespace"),
                format!("`{}` is not a namespace", f.namespace),
                format!("use one of: {}", known.join(", ")),
            );
        }
        in_not_in(c, &fpath, &f.operator);
        check_values(c, &fpath, f.values.len(), abi::INT_VALUES);
        for (j, v) in f.values.iter().enumerate() {
            if v.0 != "host_ns" && values::int_for(&v.0, 32, false).is_err() {
                c.value(
                    &format!("{fpath}.values[{j}]"),
                    format!("`{}` is not a namespace inode number", v.0),
                    "write the inode number (ls -Li /proc/<pid>/ns/<ns>) or `host_ns`",
                );
            }
        }
    }
    for (i, f) in s.match_capabilities.iter().enumerate() {
        let fpath = format!("{path}.matchCapabilities[{i}]");
        if let Some(t) = &f.r#type {
            if !["Effective", "Inheritable", "Permitted"].contains(&t.as_str()) {
                c.value(
                    &format!("{fpath}.type"),
                    format!("`{t}` is not a capability set"),
                    "use Effective, Inheritable or Permitted",
                );
            }
        }
        in_not_in(c, &fpath, &f.operator);
        check_values(c, &fpath, f.values.len(), abi::INT_VALUES);
        for (j, v) in f.values.iter().enumerate() {
            if vigil_events::caps::bit(&v.0).is_none() {
                c.value(
                    &format!("{fpath}.values[{j}]"),
                    format!("`{}` is not a capability", v.0),
                    "write a name such as CAP_SYS_ADMIN",
                );
            }
        }
    }
}

fn in_not_in(c: &mut Checker, fpath: &str, op: &str) {
    if op != "In" && op != "NotIn" {
        c.value(
            &format!("{fpath}.operator"),
            format!("operator `{op}` is not valid here"),
            "use In or NotIn",
        );
    }
}

/// A filter lists at least one value, and no more than the kernel's value maps hold (`max`,
/// from `abi`).
fn check_values(c: &mut Checker, fpath: &str, n: usize, max: usize) {
    if n == 0 {
        c.field(
            fpath,
            "the filter lists no values, so it could never match",
            "add `values:` with at least one value",
        );
    } else if n > max {
        c.field(
            &format!("{fpath}.values"),
            format!("{n} values; the kernel holds at most {max}"),
            "split the filter across selectors",
        );
    }
}

fn check_arg_filter(
    c: &mut Checker,
    fpath: &str,
    f: &ArgFilter,
    (class, type_name): (ArgClass, &str),
    hook_by_position: bool,
) {
    let op = f.operator.as_str();
    let allowed = ops_for(class);
    if class == ArgClass::Dns {
        c.value(
            &format!("{fpath}.index"),
            "a `dns` argument is decoded by the agent, not compared in the kernel",
            "select DNS traffic on the `sock` argument (DPort 53) and match query names in Sigma rules or export filters",
        );
        return;
    }
    if class == ArgClass::Cred {
        c.value(
            &format!("{fpath}.index"),
            "a `cred` argument is reported whole, not compared in the kernel",
            "select on the process's credentials with matchCapabilities, or on a uid argument (`int`) of the call",
        );
        return;
    }
    if class == ArgClass::Object {
        c.value(
            &format!("{fpath}.index"),
            format!("a `{type_name}` argument is reported whole, not compared in the kernel"),
            "select on the process (matchBinaries, matchNamespaces) and filter the reports in Sigma rules or export filters",
        );
        return;
    }
    if class == ArgClass::Nop {
        c.value(
            &format!("{fpath}.index"),
            "a `nop` argument is never read, so nothing can compare it",
            "declare the argument with the type it has (e.g. `int`) to match on it",
        );
        return;
    }
    let in_map = hook_by_position && MAP_OPS.contains(&op) && matches!(class, ArgClass::Int { .. });
    if UNSUPPORTED_OPS.contains(&op) && !in_map {
        c.value(
            &format!("{fpath}.operator"),
            format!("operator `{op}` is not supported by vigil"),
            format!("for `{type_name}` use one of: {}", allowed.join(", ")),
        );
        return;
    }
    if in_map {
        // Its values (numbers, or a `list:` of system calls) are read when it compiles.
        return;
    }
    if !allowed.contains(&op) {
        let known = TEXT_OPS
            .iter()
            .chain(&INT_OPS)
            .chain(&SOCK_OPS)
            .any(|o| *o == op);
        let reason = if known {
            format!("operator `{op}` does not apply to an argument of type `{type_name}`")
        } else {
            format!("`{op}` is not an operator")
        };
        c.value(
            &format!("{fpath}.operator"),
            reason,
            format!("for `{type_name}` use one of: {}", allowed.join(", ")),
        );
        return;
    }
    let max = match class {
        ArgClass::Int { .. } => abi::INT_VALUES,
        ArgClass::Text | ArgClass::Path => abi::STR_VALUES,
        _ => abi::NET_VALUES,
    };
    check_values(c, fpath, f.values.len(), max);
    if matches!(op, "GT" | "LT") && f.values.len() > 1 {
        c.field(
            &format!("{fpath}.values"),
            format!(
                "{op} compares with one value, {} are listed",
                f.values.len()
            ),
            "keep one value",
        );
    }
    for (j, v) in f.values.iter().enumerate() {
        let vpath = format!("{fpath}.values[{j}]");
        if let Some(net) = values::cidr_with_host_bits(&v.0) {
            c.warn(
                &vpath,
                format!(
                    "`{}` has host bits set past its prefix; it is read as `{net}`",
                    v.0
                ),
                format!("write `{net}`"),
            );
        }
        let checked = match (class, op) {
            (ArgClass::Int { bits, signed }, _) => values::int_for(&v.0, bits, signed).map(|_| ()),
            (_, "SAddr" | "DAddr" | "NotSAddr" | "NotDAddr") => values::cidr(&v.0).map(|_| ()),
            (_, "SPort" | "DPort" | "NotSPort" | "NotDPort") => values::port(&v.0).map(|_| ()),
            (_, "Protocol") => values::protocol(&v.0).map(|_| ()),
            (_, "Family") => values::family(&v.0).map(|_| ()),
            (_, "State") => values::tcp_state(&v.0).map(|_| ()),
            (ArgClass::Path, _)
                if matches!(op, "Equal" | "NotEqual" | "Prefix" | "NotPrefix")
                    && !v.0.starts_with('/') =>
            {
                // Equal or Prefix: Tetragon loads it, and so does vigil, but it never matches.
                // Not-: it would match every path, and act on every one.
                if op.starts_with("Not") {
                    Err(format!(
                        "`{}` is not an absolute path, so {op} would match every path: the kernel compares the absolute path it resolved",
                        v.0
                    ))
                } else {
                    c.warn(
                        &vpath,
                        format!("`{}` is not an absolute path, so {op} matches no path: the kernel compares the absolute path it resolved", v.0),
                        if op.ends_with("Prefix") { "write the absolute directory, or use Postfix for a name at the end of any path" } else { "write the absolute path" },
                    );
                    fits_match(&v.0).map_err(|(reason, _)| reason)
                }
            }
            (ArgClass::Text | ArgClass::Path, _) => match fits_match(&v.0) {
                Err((reason, fix)) => {
                    c.value(&format!("{fpath}.values[{j}]"), reason, fix);
                    continue;
                }
                Ok(()) => Ok(()),
            },
            _ => Ok(()),
        };
        if let Err(e) = checked {
            c.value(
                &format!("{fpath}.values[{j}]"),
                e,
                format!("write a value that `{op}` can compare with a `{type_name}`"),
            );
        }
    }
}

fn check_actions(c: &mut Checker, hook: &Hook, path: &str, s: &Selector) {
    let sock_actions = s
        .match_actions
        .iter()
        .filter(|a| matches!(a.action.as_str(), "TrackSock" | "UntrackSock"))
        .count();
    if sock_actions > 1 {
        c.field(
            &format!("{path}.matchActions"),
            format!("{sock_actions} TrackSock/UntrackSock actions in one selector; the kernel takes one"),
            "keep one, or split the selector",
        );
    }
    for (i, a) in s.match_actions.iter().enumerate() {
        let apath = format!("{path}.matchActions[{i}]");
        let name = a.action.as_str();
        if UNSUPPORTED_ACTIONS.contains(&name) {
            c.value(
                &format!("{apath}.action"),
                format!("action `{name}` is not supported by vigil"),
                format!("use one of: {}", ACTIONS.join(", ")),
            );
            continue;
        }
        if !ACTIONS.contains(&name) {
            c.value(
                &format!("{apath}.action"),
                format!("`{name}` is not an action"),
                format!("use one of: {}", ACTIONS.join(", ")),
            );
            continue;
        }
        match name {
            "Signal" => match a.arg_sig {
                Some(sig) if (1..=64).contains(&sig) => {}
                Some(sig) => c.value(
                    &format!("{apath}.argSig"),
                    format!("{sig} is not a signal number"),
                    "use a number from 1 to 64 (9 is SIGKILL)",
                ),
                None => c.field(
                    &apath,
                    "the Signal action needs `argSig`",
                    "add `argSig:` with the signal number",
                ),
            },
            "TrackSock" | "UntrackSock" => {
                let at = a.arg_sock.unwrap_or(0);
                let sock = hook
                    .args
                    .iter()
                    .any(|d| i64::from(d.index) == at && d.r#type == "sock");
                if !sock {
                    c.value(
                        &format!("{apath}.argSock"),
                        format!(
                            "{name} names argument {at}, which is not a declared `sock` argument"
                        ),
                        "set `argSock` to the index of the hook's `sock` argument",
                    );
                }
            }
            "Override" => {
                if !hook.can_override {
                    c.value(
                        &format!("{apath}.action"),
                        "Override can only act on system calls and LSM hooks",
                        "hook the system call (`syscall: true`) or an LSM hook, or use Sigkill",
                    );
                }
                match a.arg_error {
                    Some(e) if (-4095..0).contains(&e) => {}
                    // An LSM check's own positive result (not an errno), as Tetragon passes it.
                    Some(e) if e > 0 && e <= i32::MAX as i64 && hook.call.starts_with("security_") => c.warn(
                        &format!("{apath}.argError"),
                        format!("{e} is not an errno: {} returns it as its own result, which its callers read by their kernel's convention (security_inode_copy_up_xattr discards the attribute on 1 before Linux 6.10, and copies it on 1 from 6.10, where -125, ECANCELED, discards it)", hook.call),
                        "check what the function's callers make of this value on the kernels you run",
                    ),
                    Some(e) => c.value(
                        &format!("{apath}.argError"),
                        format!("{e} is not an error number: Override makes the function return a negative errno"),
                        "use a negative errno such as -1 (EPERM); hooks that took a positive value to mean `skip` take an errno now (security_inode_copy_up_xattr discards an attribute on -125, ECANCELED, since Linux 6.10)",
                    ),
                    None => c.field(
                        &apath,
                        "the Override action needs `argError`",
                        "add `argError: -1` (EPERM) or another negative errno",
                    ),
                }
            }
            _ => {}
        }
        if let Some(rl) = &a.rate_limit {
            if name != "Post" {
                c.field(
                    &format!("{apath}.rateLimit"),
                    "rateLimit applies to Post only",
                    "move `rateLimit` to a Post action",
                );
            } else if let Err(e) = values::period(rl) {
                c.value(
                    &format!("{apath}.rateLimit"),
                    e,
                    "write a period such as 30s, 1m or 2h",
                );
            }
        }
        for (field, present) in [
            ("rateLimitScope", a.rate_limit_scope.is_some()),
            ("kernelStackTrace", a.kernel_stack_trace),
            ("userStackTrace", a.user_stack_trace),
            ("imaHash", a.ima_hash),
        ] {
            if present {
                c.unsupported(&format!("{apath}.{field}"), &format!("`{field}`"));
            }
        }
    }
}

/// A string compared in the kernel fits its keys ([`abi::MATCH_MAX`] bytes).
fn fits_match(v: &str) -> Result<(), (String, String)> {
    if v.len() <= abi::MATCH_MAX {
        return Ok(());
    }
    Err((
        format!(
            "`{}...` is {} bytes, longer than the {} bytes the kernel compares",
            crate::error::clip(v, 32),
            v.len(),
            abi::MATCH_MAX
        ),
        format!(
            "shorten it: a Prefix filter on its first {} bytes matches what it begins with",
            abi::MATCH_MAX
        ),
    ))
}
