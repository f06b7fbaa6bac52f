//! `spec.lists`: one kprobe hooking many functions (`call: "list:<name>"`).
//!
//! A list is a set of system calls (`syscalls`, or every one with `generated_syscalls`) or of
//! kernel functions whose names match a regular expression (`generated_ftrace`, read from the
//! functions ftrace can trace). Its hook is one hook in the kernel, with one description and
//! one set of selectors, on every member's attach point; its event names the member that fired
//! (the record carries the attach point's key). A system call member attaches to the call's
//! enter tracepoint wherever tracepoints exist, kprobes or not: one key per call instead of two,
//! the same arguments, and no kprobe per call of a list that may hold every system call.

use regex::Regex;
use vigil_bpf_kprobes::abi;

use crate::{
    args::{arg_class, ArgClass},
    kernel::KernelSymbols,
    spec::{KprobeSpec, ListSpec, PolicySpec},
    validate::Checker,
};

/// Most members one list may resolve to: the attach points of every hook share the kernel's
/// table of them (`vigil_hooks`), and every x86-64 system call fits.
pub const MAX_MEMBERS: usize = 512;

/// The list types.
const TYPES: [&str; 3] = ["syscalls", "generated_syscalls", "generated_ftrace"];

/// What a list hook attaches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListTarget {
    /// The list's name.
    pub name: String,
    /// System calls (bare names, `dup`), when the list is of system calls.
    pub syscalls: Vec<String>,
    /// The pattern of a `generated_ftrace` list, resolved on the kernel the plan is for.
    pub ftrace: Option<String>,
}

/// The list `call` names (`list:<name>`), if it names one.
pub fn list_name(call: &str) -> Option<&str> {
    call.strip_prefix("list:")
}

fn find<'a>(spec: &'a PolicySpec, name: &str) -> Option<&'a ListSpec> {
    spec.lists.iter().find(|l| l.name == name)
}

fn bare(call: &str) -> &str {
    let c = call.strip_prefix("__x64_").unwrap_or(call);
    c.strip_prefix("sys_").unwrap_or(c)
}

/// The target of a list hook, from its list (validated).
pub(crate) fn target(spec: &PolicySpec, call: &str) -> Option<ListTarget> {
    let list = find(spec, list_name(call)?)?;
    let syscalls = match list.r#type.as_str() {
        "syscalls" => list.values.iter().map(|v| bare(v).to_string()).collect(),
        "generated_syscalls" => abi::syscalls().map(|(n, _)| n.to_string()).collect(),
        _ => Vec::new(),
    };
    Some(ListTarget {
        name: list.name.clone(),
        syscalls,
        ftrace: (list.r#type == "generated_ftrace")
            .then(|| list.pattern.clone())
            .flatten(),
    })
}

/// The kernel functions a `generated_ftrace` pattern matches on `kernel`, sorted.
pub fn ftrace_members(pattern: &str, kernel: &dyn KernelSymbols) -> Result<Vec<String>, String> {
    let re =
        Regex::new(pattern).map_err(|e| format!("`{pattern}` is not a regular expression: {e}"))?;
    // A system call's wrapper takes the caller's pt_regs, not the call's arguments: hook the
    // system call through a `syscalls` list instead.
    let mut found: Vec<String> = kernel
        .functions_matching(&re)
        .into_iter()
        .filter(|f| !f.starts_with("__x64_sys_") && !f.starts_with("__ia32_sys_"))
        .collect();
    found.sort();
    found.dedup();
    if found.is_empty() {
        return Err(format!(
            "no function this kernel can trace matches `{pattern}`"
        ));
    }
    if found.len() > MAX_MEMBERS {
        return Err(format!(
            "`{pattern}` matches {} functions, more than the {MAX_MEMBERS} one list may hook",
            found.len()
        ));
    }
    Ok(found)
}

/// The regex crate's error in one line (its parse errors draw the pattern over several).
fn not_a_regex(pattern: &str, e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or("").trim();
    let why = last.strip_prefix("error: ").unwrap_or(last);
    format!("`{pattern}` is not a regular expression ({why})")
}

/// Checks `spec.lists` and the kprobes that name a list.
pub(crate) fn check_lists(c: &mut Checker, spec: &PolicySpec) {
    for (i, l) in spec.lists.iter().enumerate() {
        let path = format!("spec.lists[{i}]");
        if l.name.is_empty() || spec.lists[..i].iter().any(|o| o.name == l.name) {
            c.value(
                &format!("{path}.name"),
                format!("list name `{}` is empty or used twice", l.name),
                "give each list a name of its own",
            );
        }
        if !TYPES.contains(&l.r#type.as_str()) {
            c.value(
                &format!("{path}.type"),
                format!("`{}` is not a list type", l.r#type),
                format!("use one of: {}", TYPES.join(", ")),
            );
            continue;
        }
        match l.r#type.as_str() {
            "syscalls" => {
                if l.values.is_empty() {
                    c.field(
                        &path,
                        "a `syscalls` list names no system call",
                        "list them under `values:` (sys_dup, sys_dup2, ...)",
                    );
                }
                if l.values.len() > MAX_MEMBERS {
                    c.value(
                        &format!("{path}.values"),
                        format!(
                            "{} values; a list holds at most {MAX_MEMBERS}",
                            l.values.len()
                        ),
                        "use `type: generated_syscalls` for every system call",
                    );
                }
                for (j, v) in l.values.iter().enumerate() {
                    if abi::syscall_nr(v).is_none() {
                        c.value(
                            &format!("{path}.values[{j}]"),
                            format!("`{v}` is not an x86-64 system call"),
                            "write the call as sys_<name> (sys_dup), as in the kernel's syscall table",
                        );
                    }
                }
            }
            other => {
                if !l.values.is_empty() {
                    c.field(
                        &format!("{path}.values"),
                        format!("a `{other}` list is generated: its values are not written"),
                        "remove `values`, or make the list `type: syscalls`",
                    );
                }
                match (other, &l.pattern) {
                    ("generated_ftrace", None) => c.field(
                        &path,
                        "a `generated_ftrace` list needs `pattern`",
                        "add `pattern:` with a regular expression over function names (^ksys_)",
                    ),
                    ("generated_ftrace", Some(p)) => {
                        if let Err(e) = Regex::new(p) {
                            c.value(
                                &format!("{path}.pattern"),
                                not_a_regex(p, &e),
                                "write the pattern in the syntax of Rust's regex crate (RE2-like)",
                            );
                        }
                    }
                    (_, Some(_)) => c.field(
                        &format!("{path}.pattern"),
                        "only a `generated_ftrace` list takes a pattern",
                        "remove `pattern`",
                    ),
                    _ => {}
                }
            }
        }
    }
    for (i, k) in spec.kprobes.iter().enumerate() {
        if let Some(name) = list_name(&k.call) {
            check_list_hook(c, spec, &format!("spec.kprobes[{i}]"), name, k);
        }
    }
}

fn check_list_hook(c: &mut Checker, spec: &PolicySpec, path: &str, name: &str, k: &KprobeSpec) {
    if find(spec, name).is_none() {
        c.value(
            &format!("{path}.call"),
            format!("no list is named `{name}`"),
            "define it under `spec.lists`, or correct the name",
        );
    }
    if k.r#return {
        c.field(
            &format!("{path}.return"),
            "a list hook reads no return value: its members return different things",
            "hook the function whose return you want on its own",
        );
    }
    for (j, a) in k.args.iter().enumerate() {
        // A capability set is read through a kernel pointer, which a system call's register
        // is not.
        let kernel_pointer = crate::args::CAP_TYPES.contains(&a.r#type.as_str());
        if kernel_pointer
            || !matches!(
                arg_class(&a.r#type),
                Some(ArgClass::Int { .. } | ArgClass::Nop) | None
            )
        {
            c.value(
                &format!("{path}.args[{j}].type"),
                format!(
                    "a list hook reads its members' arguments as integers only, not as `{}`: each member takes different ones",
                    a.r#type
                ),
                "read the argument as an integer type, or hook the functions one by one",
            );
        }
    }
}

/// Checks that a `generated_ftrace` list hooked by a kprobe matches something on `kernel`.
pub(crate) fn check_kernel_lists(c: &mut Checker, spec: &PolicySpec, kernel: &dyn KernelSymbols) {
    for (i, k) in spec.kprobes.iter().enumerate() {
        let Some(t) = target(spec, &k.call) else {
            continue;
        };
        if let Some(pattern) = &t.ftrace {
            if let Err(e) = ftrace_members(pattern, kernel) {
                c.value(
                    &format!("spec.kprobes[{i}].call"),
                    e,
                    "match functions this kernel has (/sys/kernel/tracing/available_filter_functions)",
                );
            }
        }
    }
}
