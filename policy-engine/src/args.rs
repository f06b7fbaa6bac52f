//! Argument types: which ones vigil reads, what selectors can compare them with, and the checks
//! of a hook's `args` list.

use vigil_bpf_kprobes::abi;

use crate::{spec::ArgSpec, validate::Checker};

/// What an argument's type lets selectors compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgClass {
    /// An integer of this width.
    Int {
        /// Bits.
        bits: u32,
        /// Signed.
        signed: bool,
    },
    /// Bytes or a string from memory (`string`, `char_buf`).
    Text,
    /// A path the kernel resolves (`file`, `path`, `fd`).
    Path,
    /// A socket (`sock`): addresses, ports, protocol, family.
    Sock,
    /// A socket address (`sockaddr`): address, port, family.
    Sockaddr,
    /// A DNS message (`dns`, vigil's): decoded by the agent, not compared in the kernel.
    Dns,
    /// `nop`: declared, never read (it keeps the positions of the arguments after it, as in
    /// Tetragon, and is left out of events).
    Nop,
    /// A `struct cred *` (`cred`): reported whole (ids, capabilities, user namespace).
    Cred,
    /// A packet (`skb`): its addresses, ports, protocol and family.
    Skb,
    /// A kernel object reported whole (`bpf_attr`, `bpf_map`, `perf_event`, `module`,
    /// `load_info`), not compared in the kernel.
    Object,
}

/// A capability set read through a `kernel_cap_t *`: compared as the 64-bit integer it holds.
const CAP_SET: ArgClass = ArgClass::Int {
    bits: 64,
    signed: false,
};

/// Argument types vigil reads, with their class.
pub const ARG_TYPES: [(&str, ArgClass); 37] = [
    (
        "int",
        ArgClass::Int {
            bits: 32,
            signed: true,
        },
    ),
    (
        "int8",
        ArgClass::Int {
            bits: 8,
            signed: true,
        },
    ),
    (
        "int16",
        ArgClass::Int {
            bits: 16,
            signed: true,
        },
    ),
    (
        "int32",
        ArgClass::Int {
            bits: 32,
            signed: true,
        },
    ),
    (
        "int64",
        ArgClass::Int {
            bits: 64,
            signed: true,
        },
    ),
    (
        "uint8",
        ArgClass::Int {
            bits: 8,
            signed: false,
        },
    ),
    (
        "uint16",
        ArgClass::Int {
            bits: 16,
            signed: false,
        },
    ),
    (
        "uint32",
        ArgClass::Int {
            bits: 32,
            signed: false,
        },
    ),
    (
        "uint64",
        ArgClass::Int {
            bits: 64,
            signed: false,
        },
    ),
    (
        "s64",
        ArgClass::Int {
            bits: 64,
            signed: true,
        },
    ),
    (
        "u64",
        ArgClass::Int {
            bits: 64,
            signed: false,
        },
    ),
    (
        "size_t",
        ArgClass::Int {
            bits: 64,
            signed: false,
        },
    ),
    (
        "long",
        ArgClass::Int {
            bits: 64,
            signed: true,
        },
    ),
    ("string", ArgClass::Text),
    ("char_buf", ArgClass::Text),
    ("file", ArgClass::Path),
    ("path", ArgClass::Path),
    ("fd", ArgClass::Path),
    ("sock", ArgClass::Sock),
    ("sockaddr", ArgClass::Sockaddr),
    ("dns", ArgClass::Dns),
    ("nop", ArgClass::Nop),
    ("cred", ArgClass::Cred),
    ("skb", ArgClass::Skb),
    ("dentry", ArgClass::Path),
    ("kiocb", ArgClass::Path),
    ("iov_iter", ArgClass::Text),
    ("kernel_cap_t", CAP_SET),
    ("cap_effective", CAP_SET),
    ("cap_inheritable", CAP_SET),
    ("cap_permitted", CAP_SET),
    ("bpf_attr", ArgClass::Object),
    ("bpf_map", ArgClass::Object),
    ("perf_event", ArgClass::Object),
    ("module", ArgClass::Object),
    ("load_info", ArgClass::Object),
    ("linux_binprm", ArgClass::Path),
];

/// The capability set types, each the set a `kernel_cap_t *` argument points at.
pub const CAP_TYPES: [&str; 4] = [
    "kernel_cap_t",
    "cap_effective",
    "cap_inheritable",
    "cap_permitted",
];

/// The file name arguments of the system calls that take them: (call, argument index, the
/// index of the directory descriptor it is relative to, if any). A `path` argument of a
/// system call hook reads one as the call will look it up, made absolute in the kernel.
const FILE_NAME_ARGS: &[(&str, u32, Option<u32>)] = &[
    ("open", 0, None),
    ("creat", 0, None),
    ("openat", 1, Some(0)),
    ("openat2", 1, Some(0)),
    ("unlink", 0, None),
    ("unlinkat", 1, Some(0)),
    ("rmdir", 0, None),
    ("mkdir", 0, None),
    ("mkdirat", 1, Some(0)),
    ("mknod", 0, None),
    ("mknodat", 1, Some(0)),
    ("rename", 0, None),
    ("rename", 1, None),
    ("renameat", 1, Some(0)),
    ("renameat", 3, Some(2)),
    ("renameat2", 1, Some(0)),
    ("renameat2", 3, Some(2)),
    ("link", 0, None),
    ("link", 1, None),
    ("linkat", 1, Some(0)),
    ("linkat", 3, Some(2)),
    ("symlink", 1, None),
    ("symlinkat", 2, Some(1)),
    ("chmod", 0, None),
    ("fchmodat", 1, Some(0)),
    ("fchmodat2", 1, Some(0)),
    ("chown", 0, None),
    ("lchown", 0, None),
    ("fchownat", 1, Some(0)),
    ("truncate", 0, None),
    ("utimensat", 1, Some(0)),
    ("setxattr", 0, None),
    ("lsetxattr", 0, None),
    ("removexattr", 0, None),
    ("lremovexattr", 0, None),
    ("execve", 0, None),
    ("execveat", 1, Some(0)),
    ("chdir", 0, None),
    ("chroot", 0, None),
];

/// Whether argument `index` of system call `call` (`sys_` prefix or not) is a file name, and
/// then the directory descriptor argument it is relative to (`None`: the working directory).
pub fn file_name_arg(call: &str, index: u32) -> Option<Option<u32>> {
    let bare = call.strip_prefix("__x64_").unwrap_or(call);
    let bare = bare.strip_prefix("sys_").unwrap_or(bare);
    FILE_NAME_ARGS
        .iter()
        .find(|(c, i, _)| *c == bare && *i == index)
        .map(|(_, _, dirfd)| *dirfd)
}

/// Why argument `index` of hook `call` cannot be read as a `path` (a system call hook reads
/// only file names) or a `dns` message (only the UDP functions' datagram), with the fix; `None`
/// when it can, or when the type is another.
pub(crate) fn special_arg_error(
    ty: &str,
    call: &str,
    syscall: bool,
    index: u32,
) -> Option<(String, &'static str)> {
    match ty {
        "path" if syscall && file_name_arg(call, index).is_none() => Some((
            format!("argument {index} of {call} is not a file name the call looks up"),
            "a system call hook reads `path` only from a file name argument (made absolute in the kernel); read this one as `string`",
        )),
        "dns" if syscall || index != 1 || !matches!(call, "udp_sendmsg" | "udp_recvmsg") => Some((
            format!("argument {index} of {call} holds no DNS message"),
            "declare `dns` with index 1 of udp_sendmsg or udp_recvmsg (their datagram)",
        )),
        _ => None,
    }
}

/// The class of an argument type, if vigil reads it.
pub fn arg_class(t: &str) -> Option<ArgClass> {
    ARG_TYPES.iter().find(|(n, _)| *n == t).map(|(_, c)| *c)
}

pub(crate) fn check_args(c: &mut Checker, hook: &str, args: &[ArgSpec], calling_convention: bool) {
    let mut seen = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let path = format!("{hook}.args[{i}]");
        if calling_convention && a.index as usize >= abi::HOOK_ARGS {
            c.value(
                &format!("{path}.index"),
                format!(
                    "argument index {} is past the {} arguments a hook can read",
                    a.index,
                    abi::HOOK_ARGS
                ),
                format!("use an index from 0 to {}", abi::HOOK_ARGS - 1),
            );
        }
        if seen.contains(&a.index) {
            c.value(
                &format!("{path}.index"),
                format!("argument {} is declared twice", a.index),
                "declare each argument index once",
            );
        }
        seen.push(a.index);
        let class = arg_class(&a.r#type);
        if class.is_none() {
            let known: Vec<_> = ARG_TYPES.iter().map(|t| t.0).collect();
            c.value(
                &format!("{path}.type"),
                format!("argument type `{}` is not supported by vigil", a.r#type),
                format!("use one of: {}", known.join(", ")),
            );
        }
        if a.max_data && !matches!(a.r#type.as_str(), "char_buf" | "iov_iter") {
            c.field(
                &format!("{path}.maxData"),
                "maxData applies to `char_buf` and `iov_iter` arguments only",
                "remove `maxData` or make the type `char_buf`",
            );
        }
        if a.return_copy {
            c.unsupported(&format!("{path}.returnCopy"), "`returnCopy`");
        }
        if a.resolve.is_some() {
            c.unsupported(&format!("{path}.resolve"), "`resolve`");
        }
        if let Some(size) = a.size_arg_index {
            let target = args.iter().find(|o| o.index.checked_add(1) == Some(size));
            if a.r#type != "char_buf" {
                c.field(
                    &format!("{path}.sizeArgIndex"),
                    "sizeArgIndex applies to `char_buf` arguments only",
                    "remove `sizeArgIndex` or make the type `char_buf`",
                );
            } else if !target
                .is_some_and(|t| matches!(arg_class(&t.r#type), Some(ArgClass::Int { .. })))
            {
                c.value(
                    &format!("{path}.sizeArgIndex"),
                    format!("sizeArgIndex {size} names no integer argument (it counts from 1: {size} is the argument with index {})", size.saturating_sub(1)),
                    "point it at the integer argument that holds the buffer's length, plus one",
                );
            }
        }
    }
}
