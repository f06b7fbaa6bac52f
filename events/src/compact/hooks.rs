//! The line of a policy's event (`process_kprobe`, `process_lsm`): the operation its hook
//! stands for, whatever the policy called the function (`sys_write`, `__x64_sys_write`,
//! `security_file_open` or the LSM hook `file_open`), its arguments read as that operation
//! takes them, what the call returned, what the kernel did and the policy that asked.

use super::names;
use crate::{dns::DnsArg, Arg, ProcessPolicy, SockArg};

/// How an operation reads its integer arguments.
///
/// An event lists the arguments its policy declared, in order, without their indexes, so they
/// are counted from the first after the operation's subject (the file, path or string it acts
/// on): an integer before the subject is a directory descriptor (openat's `dfd`) or the like,
/// and is shown as it is.
#[derive(Clone, Copy, PartialEq)]
enum Ints {
    /// As they are.
    Plain,
    /// The byte count: the `size_t` argument, else the first integer counted.
    Bytes,
    /// The open flags, then the mode.
    OpenFlags,
    /// `creat`, which is open with `O_WRONLY|O_CREAT|O_TRUNC` (creat(2)): its integer is the
    /// mode.
    Creat,
    /// A file mode, in octal.
    Mode,
    /// Each integer by its name, when the policy declared them all (else which is which is not
    /// known).
    Labels(&'static [&'static str]),
    /// `unshare`'s flags.
    CloneFlags,
    /// `bpf`'s command.
    BpfCommand,
    /// `ptrace`'s request, then the pid.
    PtraceRequest,
}

/// How an operation shows a socket and a socket address.
#[derive(Clone, Copy, PartialEq)]
enum Sock {
    /// `source -> peer`.
    Outbound,
    /// `source <- peer`: what a socket received came from its peer.
    Inbound,
    /// `source -> peer`, and whether the connection failed.
    Connect,
    /// The local address alone (listen, bind).
    Local,
}

struct Op {
    emoji: &'static str,
    verb: &'static str,
    ints: Ints,
    sock: Sock,
}

const fn op(emoji: &'static str, verb: &'static str, ints: Ints) -> Op {
    sock_op(emoji, verb, ints, Sock::Outbound)
}

const fn sock_op(emoji: &'static str, verb: &'static str, ints: Ints, sock: Sock) -> Op {
    Op {
        emoji,
        verb,
        ints,
        sock,
    }
}

/// A function vigil does not know: its name is shown, its arguments as they are.
const UNKNOWN: Op = op("", "", Ints::Plain);

/// Each operation by the names of the system calls, LSM hooks and kernel functions that stand
/// for it (system calls and `security_*` functions without their prefix, see [`base_name`]).
#[rustfmt::skip] // One operation a row reads as a table; rustfmt would spread each over lines.
const OPS: &[(&[&str], Op)] = &[
    (&["write", "pwrite64", "vfs_write", "kernel_write", "__kernel_write"], op("✍️", "write", Ints::Bytes)),
    // Their integers count buffers, not bytes.
    (&["writev", "pwritev", "pwritev2", "vfs_writev"], op("✍️", "write", Ints::Plain)),
    (&["read", "pread64", "vfs_read", "kernel_read"], op("📚", "read", Ints::Bytes)),
    (&["readv", "preadv", "preadv2"], op("📚", "read", Ints::Plain)),
    (&["open", "openat", "do_sys_open"], op("📬", "open", Ints::OpenFlags)),
    // openat2's flags are in a structure; the others take an open file.
    (&["openat2", "file_open", "fd_install", "do_filp_open", "vfs_open", "dentry_open",
       "do_dentry_open"], op("📬", "open", Ints::Plain)),
    (&["creat"], op("📬", "open", Ints::Creat)),
    (&["close", "close_range", "close_fd", "filp_close"], op("📪", "close", Ints::Plain)),
    (&["unlink", "unlinkat", "path_unlink", "inode_unlink", "vfs_unlink", "do_unlinkat"],
     op("🧨", "unlink", Ints::Plain)),
    (&["rmdir", "path_rmdir", "inode_rmdir", "vfs_rmdir", "do_rmdir"], op("🧨", "rmdir", Ints::Plain)),
    (&["rename", "renameat", "renameat2", "path_rename", "inode_rename", "vfs_rename",
       "do_renameat2"], op("🚚", "rename", Ints::Plain)),
    (&["link", "linkat", "symlink", "symlinkat", "path_link", "path_symlink", "inode_link",
       "inode_symlink", "vfs_link", "vfs_symlink"], op("🔗", "link", Ints::Plain)),
    (&["mkdir", "mkdirat", "path_mkdir", "inode_mkdir", "vfs_mkdir"], op("📁", "mkdir", Ints::Mode)),
    (&["chmod", "fchmod", "fchmodat", "fchmodat2", "path_chmod", "chmod_common"],
     op("🔐", "chmod", Ints::Mode)),
    (&["chown", "fchown", "lchown", "fchownat", "path_chown", "chown_common"],
     op("👤", "chown", Ints::Labels(&["owner", "group"]))),
    (&["truncate", "ftruncate", "path_truncate", "file_truncate", "do_truncate", "vfs_truncate"],
     op("✂️", "truncate", Ints::Bytes)),
    (&["setuid"], op("🔑", "setuid", Ints::Labels(&["uid"]))),
    (&["setgid"], op("🔑", "setgid", Ints::Labels(&["gid"]))),
    (&["setreuid"], op("🔑", "setreuid", Ints::Labels(&["ruid", "euid"]))),
    (&["setregid"], op("🔑", "setregid", Ints::Labels(&["rgid", "egid"]))),
    (&["setresuid"], op("🔑", "setresuid", Ints::Labels(&["ruid", "euid", "suid"]))),
    (&["setresgid"], op("🔑", "setresgid", Ints::Labels(&["rgid", "egid", "sgid"]))),
    (&["setfsuid"], op("🔑", "setfsuid", Ints::Labels(&["fsuid"]))),
    (&["setfsgid"], op("🔑", "setfsgid", Ints::Labels(&["fsgid"]))),
    (&["task_fix_setuid", "task_fix_setgid", "commit_creds"], op("🔑", "setuid", Ints::Plain)),
    (&["setgroups"], op("🔑", "setgroups", Ints::Plain)),
    (&["capset"], op("🔑", "capset", Ints::Plain)),
    (&["unshare"], op("📦", "unshare", Ints::CloneFlags)),
    (&["setns"], op("📦", "setns", Ints::Plain)),
    (&["bpf"], op("🐝", "bpf", Ints::BpfCommand)),
    (&["bpf_prog_load", "bpf_check", "bpf_map_create"], op("🐝", "bpf", Ints::Plain)),
    (&["ptrace"], op("🔍", "ptrace", Ints::PtraceRequest)),
    (&["ptrace_access_check", "ptrace_attach"], op("🔍", "ptrace", Ints::Plain)),
    (&["init_module"], op("🧩", "module", Ints::Bytes)),
    // finit_module's integer is its flags.
    (&["finit_module", "load_module", "do_init_module", "kernel_module_request"],
     op("🧩", "module", Ints::Plain)),
    (&["mount", "sb_mount", "move_mount", "fsmount"], op("💾", "mount", Ints::Plain)),
    (&["umount", "umount2", "sb_umount"], op("💾", "umount", Ints::Plain)),
    (&["pivot_root", "sb_pivotroot"], op("💾", "pivot_root", Ints::Plain)),
    (&["execve", "execveat", "bprm_check_security", "bprm_check", "bprm_creds_for_exec"],
     op("⚡", "exec", Ints::Plain)),
    (&["kill", "tkill", "tgkill", "task_kill"], op("📡", "kill", Ints::Plain)),
    (&["connect", "tcp_connect", "tcp_v4_connect", "tcp_v6_connect", "inet_stream_connect",
       "socket_connect"], sock_op("🔌", "connect", Ints::Plain, Sock::Connect)),
    (&["listen", "inet_csk_listen_start", "inet_listen", "socket_listen"],
     sock_op("👂", "listen", Ints::Plain, Sock::Local)),
    (&["bind", "inet_bind", "inet6_bind", "socket_bind"], sock_op("📌", "bind", Ints::Plain, Sock::Local)),
    (&["accept", "accept4", "inet_csk_accept", "inet_accept", "socket_accept"],
     op("📥", "accept", Ints::Plain)),
    (&["tcp_close"], op("🧹", "close", Ints::Plain)),
    (&["sendmsg", "sendto", "sendmmsg", "tcp_sendmsg", "udp_sendmsg", "udpv6_sendmsg",
       "inet_sendmsg", "sock_sendmsg", "socket_sendmsg"], op("📤", "sendmsg", Ints::Bytes)),
    (&["recvmsg", "recvfrom", "recvmmsg", "tcp_recvmsg", "udp_recvmsg", "udpv6_recvmsg",
       "inet_recvmsg", "sock_recvmsg", "socket_recvmsg"],
     sock_op("📨", "recvmsg", Ints::Bytes, Sock::Inbound)),
];

/// How a kprobe names a system call: by its architecture's wrapper or as Tetragon's policies
/// write it.
const SYSCALL_PREFIXES: [&str; 9] = [
    "__x64_sys_",
    "__ia32_sys_",
    "__arm64_sys_",
    "__riscv_sys_",
    "__s390x_sys_",
    "__se_sys_",
    "__do_sys_",
    "ksys_",
    "sys_",
];

/// The system call `function` enters, if it is one.
fn syscall_name(function: &str) -> Option<&str> {
    SYSCALL_PREFIXES
        .iter()
        .find_map(|prefix| function.strip_prefix(prefix))
}

/// The name [`OPS`] knows `function` by: a system call without its prefix, an LSM hook
/// without the `security_` of the function a kprobe names it by.
fn base_name(function: &str) -> &str {
    syscall_name(function)
        .or_else(|| function.strip_prefix("security_"))
        .unwrap_or(function)
}

fn op_of(function: &str) -> Option<&'static Op> {
    let base = base_name(function);
    OPS.iter()
        .find(|(names, _)| names.contains(&base))
        .map(|(_, op)| op)
}

/// The line of a policy's event: `<emoji> <verb> <node> <binary> <details> <outcome>
/// [<policy>]`; `lsm` for a `process_lsm` event.
pub(super) fn line(node: &str, e: &ProcessPolicy, lsm: bool) -> String {
    let known = op_of(&e.function_name);
    let dns = e.args.iter().any(|a| matches!(a, Arg::DnsArg(_)));
    let (emoji, verb) = match known {
        _ if dns => ("🔎", "dns"),
        Some(op) => (op.emoji, op.verb),
        None if lsm => ("🔒", "lsm"),
        None if syscall_name(&e.function_name).is_some() => ("🔧", "syscall"),
        None => ("🔧", "kprobe"),
    };
    let op = known.unwrap_or(&UNKNOWN);
    let mut parts = Vec::with_capacity(e.args.len() + 4);
    if known.is_none() {
        // The verb of an unknown function cannot say what it is: its name does.
        parts.push(e.function_name.clone());
    }
    parts.extend(op.args(&e.args));
    parts.extend(op.result(e));
    parts.push(e.outcome.clone());
    if !e.policy_name.is_empty() {
        parts.push(format!("[{}]", e.policy_name));
    }
    super::line(emoji, verb, node, &e.process.binary, parts)
}

/// The line of a uprobe's event: `🔗 uprobe <node> <binary> <path> <symbol> <args...>
/// <outcome> [<policy>]`; each argument as an unknown function's.
pub(super) fn uprobe_line(node: &str, e: &ProcessPolicy) -> String {
    let mut parts = Vec::with_capacity(e.args.len() + 4);
    parts.push(e.path.clone());
    parts.push(match (e.symbol.is_empty(), e.offset) {
        (false, 0) => e.symbol.clone(),
        (false, off) => format!("{}+{off:#x}", e.symbol),
        (true, off) => format!("{off:#x}"),
    });
    parts.extend(UNKNOWN.args(&e.args));
    parts.push(e.outcome.clone());
    if !e.policy_name.is_empty() {
        parts.push(format!("[{}]", e.policy_name));
    }
    super::line("🔗", "uprobe", node, &e.process.binary, parts)
}

/// A loader's line: the executable file mapped.
pub(super) fn loader_line(node: &str, e: &ProcessPolicy) -> String {
    super::line(
        "📚",
        "loaded",
        node,
        &e.process.binary,
        vec![e.path.clone()],
    )
}

/// A policy tracepoint's line: the tracepoint, its arguments, what was done.
pub(super) fn tracepoint_line(node: &str, e: &ProcessPolicy) -> String {
    let mut parts = Vec::with_capacity(e.args.len() + 3);
    parts.push(format!("{}/{}", e.subsys, e.event));
    parts.extend(UNKNOWN.args(&e.args));
    parts.push(e.outcome.clone());
    if !e.policy_name.is_empty() {
        parts.push(format!("[{}]", e.policy_name));
    }
    super::line("📍", "tracepoint", node, &e.process.binary, parts)
}

impl Op {
    /// Each argument as this operation reads it.
    fn args(&self, args: &[Arg]) -> Vec<String> {
        let subject = args
            .iter()
            .position(|a| matches!(a, Arg::FileArg(_) | Arg::PathArg(_) | Arg::StringArg(_)));
        let counted: Vec<usize> = (0..args.len())
            .filter(|&i| int(&args[i]).is_some() && subject.is_none_or(|s| i > s))
            .collect();
        let bytes_at = args
            .iter()
            .position(|a| matches!(a, Arg::SizeArg(_)))
            .or(counted.first().copied());
        let creat_flags =
            || names::open_flags(i128::from(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC));
        let mut out = Vec::with_capacity(args.len() + 1);
        if self.ints == Ints::Creat && subject.is_none() {
            out.push(creat_flags());
        }
        for (i, arg) in args.iter().enumerate() {
            out.push(match int(arg) {
                Some(v) if self.ints == Ints::Bytes && bytes_at == Some(i) => {
                    format!("{v} bytes")
                }
                Some(v) => match counted.iter().position(|&c| c == i) {
                    Some(n) => self.int(v, n, counted.len()),
                    None => v.to_string(),
                },
                None => self.value(arg),
            });
            if self.ints == Ints::Creat && subject == Some(i) {
                out.push(creat_flags());
            }
        }
        out
    }

    /// The `n`th of `count` integers counted (see [`Ints`]).
    fn int(&self, v: i128, n: usize, count: usize) -> String {
        match (self.ints, n) {
            (Ints::OpenFlags, 0) => names::open_flags(v),
            (Ints::OpenFlags, 1) | (Ints::Creat | Ints::Mode, 0) => names::mode(v),
            (Ints::Labels(labels), n) if labels.len() == count => format!("{} {v}", labels[n]),
            (Ints::CloneFlags, 0) => names::clone_flags(v),
            (Ints::BpfCommand, 0) => names::bpf_command(v),
            (Ints::PtraceRequest, 0) => names::ptrace_request(v),
            (Ints::PtraceRequest, 1) => format!("pid {v}"),
            _ => v.to_string(),
        }
    }

    /// An argument that is no integer.
    fn value(&self, arg: &Arg) -> String {
        match arg {
            Arg::FileArg(f) | Arg::PathArg(f) | Arg::LinuxBinprmArg(f) => f.path.clone(),
            Arg::StringArg(s) | Arg::BytesArg(s) => format!("{s:?}"),
            Arg::SockaddrArg(s) => match (endpoint(&s.addr, s.port), self.sock) {
                (None, _) => s.family.clone(),
                (Some(at), Sock::Local) => at,
                (Some(at), _) => format!("{} {at}", self.arrow()),
            },
            Arg::SockArg(s) => self.socket(s),
            Arg::DnsArg(d) => dns(d),
            Arg::IntArg(v) => v.to_string(),
            Arg::SizeArg(v) => v.to_string(),
            Arg::ProcessCredentialsArg(c) => credentials(c),
            Arg::KernelCapTArg(s) => format!("caps {s}"),
            Arg::CapEffectiveArg(s) => format!("effective {s}"),
            Arg::CapInheritableArg(s) => format!("inheritable {s}"),
            Arg::CapPermittedArg(s) => format!("permitted {s}"),
            Arg::SkbArg(s) => {
                let proto = s.protocol.trim_start_matches("IPPROTO_").to_lowercase();
                match (
                    endpoint(&s.saddr, s.sport as u16),
                    endpoint(&s.daddr, s.dport as u16),
                ) {
                    (Some(src), Some(dst)) => format!("{proto} {src} -> {dst} len {}", s.len),
                    _ => format!("{proto} len {}", s.len),
                }
            }
            Arg::BpfAttrArg(b) => format!(
                "{} {:?} {} insns",
                b.ProgType
                    .trim_start_matches("BPF_PROG_TYPE_")
                    .to_lowercase(),
                b.ProgName,
                b.InsnCnt
            ),
            Arg::BpfMapArg(m) => format!(
                "{} map {:?} {} entries",
                m.MapType.trim_start_matches("BPF_MAP_TYPE_").to_lowercase(),
                m.MapName,
                m.MaxEntries
            ),
            Arg::PerfEventArg(p) if !p.KprobeFunc.is_empty() => {
                format!("perf event on {}", p.KprobeFunc)
            }
            Arg::PerfEventArg(p) => format!(
                "perf event {} {}",
                p.Type.trim_start_matches("PERF_TYPE_").to_lowercase(),
                p.Config
            ),
            Arg::ModuleArg(m) => format!(
                "module {}{}",
                m.name,
                match m.signature_ok {
                    Some(false) => " (unsigned)",
                    _ => "",
                }
            ),
        }
    }

    fn arrow(&self) -> &'static str {
        if self.sock == Sock::Inbound {
            "<-"
        } else {
            "->"
        }
    }

    /// `tcp 10.0.0.1:43210 -> 10.0.0.2:443`, an end the socket does not have yet left out (a
    /// refused connect has no source), and the bytes of a closing connection.
    fn socket(&self, s: &SockArg) -> String {
        let mut parts = vec![s.protocol.trim_start_matches("IPPROTO_").to_lowercase()];
        parts.extend(endpoint(&s.saddr, s.sport));
        if self.sock != Sock::Local {
            if let Some(peer) = endpoint(&s.daddr, s.dport) {
                parts.push(format!("{} {peer}", self.arrow()));
            }
        }
        if let (Some(tx), Some(rx)) = (s.bytes_sent, s.bytes_received) {
            parts.push(format!("sent {tx} received {rx}"));
        }
        parts.extend(s.encryption.as_deref().and_then(lock));
        parts.retain(|p| !p.is_empty());
        parts.join(" ")
    }

    /// What the call returned, when the hook read it: an error by its name (`failed EACCES`,
    /// `refused ECONNREFUSED`), else the value or the socket. A connect that went through says
    /// nothing more; one whose socket is closed again failed even when its return was not read
    /// (the kernel reports such a connect only when the peer refused it or never answered).
    fn result(&self, e: &ProcessPolicy) -> Option<String> {
        let connect = self.sock == Sock::Connect;
        match &e.return_arg {
            Some(Arg::IntArg(r)) => match r.checked_neg() {
                // A non-blocking connect under way: its SYN went.
                Some(errno) if connect && errno == i64::from(libc::EINPROGRESS) => None,
                Some(errno) if errno == i64::from(libc::ECONNREFUSED) => {
                    Some(format!("refused {}", names::errno(errno)))
                }
                Some(errno) if names::is_errno(errno) => {
                    Some(format!("failed {}", names::errno(errno)))
                }
                _ if connect => None,
                _ => Some(format!("returned {r}")),
            },
            Some(Arg::SizeArg(r)) => Some(format!("returned {r}")),
            Some(other) => Some(self.value(other)),
            None if connect && closed(&e.args) => Some("failed".into()),
            None => None,
        }
    }
}

/// An integer argument's value.
fn int(arg: &Arg) -> Option<i128> {
    match arg {
        Arg::IntArg(v) => Some(i128::from(*v)),
        Arg::SizeArg(v) => Some(i128::from(*v)),
        _ => None,
    }
}

/// A lock for a flow that leaves encrypted (`🔒 wireguard`, `🔒 ipsec`), an open one for a
/// flow into a remote range that leaves in clear (`🔓 plaintext`); nothing where it stays
/// local, is not known, or goes elsewhere in clear (a TLS connection to the internet is no
/// tunnel's business).
pub(super) fn lock(e: &crate::Encryption) -> Option<String> {
    use crate::encryption::mode;
    match e.mode.as_str() {
        mode::WIREGUARD | mode::IPSEC => Some(format!("🔒 {}", e.mode)),
        mode::NONE if !e.remote_range.is_empty() => Some("🔓 plaintext".to_string()),
        _ => None,
    }
}

/// A flow's verdict line: `🔓 flow <node> <binary> tcp 10.0.0.1:43210 -> 10.2.0.5:80 plaintext
/// via eth0 (range 10.2.0.0/16)`.
pub(super) fn flow_line(node: &str, f: &crate::FlowEncryption) -> String {
    let s = &f.flow;
    let mut parts = vec![s.protocol.trim_start_matches("IPPROTO_").to_lowercase()];
    parts.extend(endpoint(&s.saddr, s.sport));
    parts.extend(endpoint(&s.daddr, s.dport).map(|p| format!("-> {p}")));
    let e = s.encryption.as_deref().cloned().unwrap_or_default();
    parts.push(if e.mode == crate::encryption::mode::NONE {
        "plaintext".to_string()
    } else {
        e.mode.clone()
    });
    if let Some(spi) = e.spi {
        parts.push(format!("spi 0x{spi:x} {}", e.ipsec_mode));
    }
    if !e.interface.is_empty() {
        parts.push(format!("via {}", e.interface));
    }
    if !e.remote_range.is_empty() {
        parts.push(format!("(range {})", e.remote_range));
    }
    let emoji = if e.mode == crate::encryption::mode::NONE {
        "🔓"
    } else {
        "🔒"
    };
    let binary = f.process.as_ref().map_or("", |p| p.binary.as_str());
    parts.retain(|p| !p.is_empty());
    super::line(emoji, "flow", node, binary, parts)
}

/// Whether the socket among `args` is closed (`TCP_CLOSE`).
fn closed(args: &[Arg]) -> bool {
    args.iter()
        .any(|a| matches!(a, Arg::SockArg(s) if s.state == "TCP_CLOSE"))
}

/// `10.0.0.1:443`, `[fd00::1]:443`, or the address alone without a port; `None` when neither
/// is known (the unspecified address and port 0: a socket before it is bound).
fn endpoint(addr: &str, port: u16) -> Option<String> {
    let unspecified = addr.is_empty()
        || addr
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_unspecified());
    match (unspecified, port) {
        (true, 0) => None,
        (false, 0) => Some(addr.to_string()),
        // An IPv6 address holds colons: bracketed, the port cannot be mistaken for part of it.
        _ if addr.contains(':') => Some(format!("[{addr}]:{port}")),
        _ => Some(format!("{addr}:{port}")),
    }
}

/// A DNS question, and for an answer its code and what it answered.
fn dns(d: &DnsArg) -> String {
    if !d.response {
        return format!("query {} {}", d.qtype, d.query);
    }
    let mut out = format!("answer {} {} {}", d.qtype, d.query, d.rcode);
    if !d.answers.is_empty() {
        out.push(' ');
        out.push_str(&d.answers.join(","));
    }
    out
}

/// `uid 1000 euid 0 caps CAP_SETUID,CAP_SYS_ADMIN`: the ids that differ from the real uid, and
/// the effective capabilities (all of them reads `caps all`), the user namespace when not the
/// host's.
fn credentials(c: &crate::event::CredentialsArg) -> String {
    let mut parts = vec![format!("uid {}", c.uid)];
    for (name, id) in [("euid", c.euid), ("suid", c.suid), ("fsuid", c.fsuid)] {
        if id != c.uid {
            parts.push(format!("{name} {id}"));
        }
    }
    if c.gid != c.uid {
        parts.push(format!("gid {}", c.gid));
    }
    let eff = &c.caps.effective;
    if !eff.is_empty() {
        let names = eff.names();
        parts.push(if names.len() >= 40 {
            "caps all".to_string()
        } else {
            format!("caps {}", names.join(","))
        });
    }
    if c.user_ns.level > 0 {
        parts.push(format!("userns level {}", c.user_ns.level));
    }
    parts.join(" ")
}
