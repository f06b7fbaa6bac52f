//! A policy's `tracepoints:` as generic hooks. A tracepoint's arguments are its record's fields
//! by their index in the tracepoint's format (the common fields count), and its selectors'
//! `matchArgs.index` is a position in `args`; a raw tracepoint's (`raw: true`) are the
//! arguments the kernel passes it (its TP_PROTO). `InMap`/`NotInMap` on an integer compare
//! with the values listed, or with a `list:` of system calls (their numbers).

use crate::{
    compile::CompileError,
    hook_rule::generic_hook,
    spec::{ArgFilter, KprobeSpec, PolicySpec, Scalar, Selector},
    uprobes::Compiled,
};

/// Where a tracepoint hook attaches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TracepointTarget {
    /// `sched`, `raw_syscalls`, ...
    pub subsystem: String,
    /// `sched_process_exec`, `sys_enter`, ...
    pub event: String,
    /// A raw tracepoint: the arguments are the kernel's, not the record's fields.
    pub raw: bool,
}

/// The fields before a tracepoint's own (common_type, common_flags, common_preempt_count,
/// common_pid): a policy's field index counts them.
pub const COMMON_FIELDS: u32 = 4;

/// Every tracepoint of `spec` as a hook.
pub(crate) fn compile_tracepoints(spec: &PolicySpec, monitor: bool) -> Compiled {
    let mut out = Compiled::default();
    for (i, t) in spec.tracepoints.iter().enumerate() {
        let path = format!("spec.tracepoints[{i}]");
        let selectors: Result<Vec<Selector>, CompileError> = t
            .selectors
            .iter()
            .enumerate()
            .map(|(j, s)| by_index(&format!("{path}.selectors[{j}]"), s, &t.args, spec))
            .collect();
        let selectors = match selectors {
            Ok(s) => s,
            Err(e) => {
                out.errors.push(e);
                continue;
            }
        };
        let k = KprobeSpec {
            call: format!("{}/{}", t.subsystem, t.event),
            syscall: false,
            r#return: false,
            args: t.args.clone(),
            return_arg: None,
            return_arg_action: None,
            selectors,
            message: t.message.clone(),
            tags: t.tags.clone(),
            ignore: None,
        };
        match generic_hook(&path, &k, monitor) {
            Ok(mut h) => {
                h.tracepoint = Some(TracepointTarget {
                    subsystem: t.subsystem.clone(),
                    event: t.event.clone(),
                    raw: t.raw,
                });
                out.hooks.push(h);
            }
            Err(e) => out.errors.extend(e),
        }
    }
    out
}

/// A selector with its `matchArgs` indexes turned from positions in `args` into the
/// arguments' own indexes (what the compiler matches them by), and `InMap`/`NotInMap` into
/// `Equal`/`NotEqual` over the values they name.
fn by_index(
    spath: &str,
    s: &Selector,
    args: &[crate::spec::ArgSpec],
    spec: &PolicySpec,
) -> Result<Selector, CompileError> {
    let mut s = s.clone();
    for (i, f) in s.match_args.iter_mut().enumerate() {
        let fpath = format!("{spath}.matchArgs[{i}]");
        let Some(a) = args.get(f.index as usize) else {
            return Err(CompileError::new(
                format!("{fpath}.index"),
                format!(
                    "the tracepoint reads {} arguments; there is no position {}",
                    args.len(),
                    f.index
                ),
                "use the position of the argument in `args` (0 for the first)",
            ));
        };
        f.index = a.index;
        in_map(&fpath, f, spec)?;
    }
    Ok(s)
}

/// `InMap`/`NotInMap` as `Equal`/`NotEqual`, a `list:<name>` value as its system calls' numbers.
fn in_map(fpath: &str, f: &mut ArgFilter, spec: &PolicySpec) -> Result<(), CompileError> {
    let op = match f.operator.as_str() {
        "InMap" => "Equal",
        "NotInMap" => "NotEqual",
        _ => return Ok(()),
    };
    let mut values = Vec::new();
    for v in &f.values {
        let Some(name) = v.0.strip_prefix("list:") else {
            values.push(v.clone());
            continue;
        };
        let list = spec
            .lists
            .iter()
            .find(|l| l.name == name && l.r#type == "syscalls")
            .ok_or_else(|| {
                CompileError::new(
                    format!("{fpath}.values"),
                    format!("no list of system calls named `{name}` in `spec.lists`"),
                    "name a list of `type: syscalls` this policy defines",
                )
            })?;
        for call in &list.values {
            let bare = call.strip_prefix("sys_").unwrap_or(call);
            let nr = vigil_bpf_kprobes::abi::syscall_nr(bare).ok_or_else(|| {
                CompileError::new(
                    format!("{fpath}.values"),
                    format!("`{call}` in list `{name}` is not an x86-64 system call"),
                    "correct the list's system call names",
                )
            })?;
            values.push(Scalar(nr.to_string()));
        }
    }
    f.operator = op.to_string();
    f.values = values;
    Ok(())
}
