//! Generic hooks: kprobes on any kernel function or system call, compiled into what the kernel
//! evaluates (`struct vigil_hook_config` and one `struct vigil_hook_rule` per selector).
//!
//! The kernel decodes integers, sockets, sockaddrs, strings, buffers and file paths (from a
//! `struct file *`, a `struct path *` or a descriptor), and evaluates per selector: up to 8
//! argument conditions, one binary filter, one pid filter, one filter per namespace kind and
//! up to three capability filters, then Post, NoPost, Sigkill or Signal. Anything the kernel
//! cannot evaluate is refused here with the field named, so a policy never loads
//! half-enforced.

use ipnet::IpNet;
use vigil_bpf_kprobes::abi::HOOK_CONDS;

use crate::{
    args::{arg_class, ArgClass},
    compile::{binary_filter, CompileError, Filter, MatchKind, RuleAction},
    spec::{ArgSpec, KprobeSpec, Selector},
    values,
};

/// How a generic hook reads one argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookArgKind {
    /// An integer of this width and sign.
    Int {
        /// Bits.
        bits: u32,
        /// Signed.
        signed: bool,
        /// Tetragon writes size_t as `size_arg`.
        size: bool,
    },
    /// A `struct sock *`.
    Sock,
    /// A `struct sockaddr *`.
    Sockaddr,
    /// A NUL-terminated string.
    String,
    /// A buffer whose length is the argument at this position.
    CharBuf {
        /// Position of the length argument.
        size_index: u32,
    },
    /// A `struct file *`, reported as its path.
    File,
    /// A `struct path *`, reported as its path.
    Path,
    /// A descriptor, reported as its file's path.
    Fd,
    /// The datagram of udp_sendmsg or udp_recvmsg, decoded as a DNS message.
    Dns,
    /// A system call's file name, made absolute in the kernel from the working directory or
    /// the directory descriptor at this argument index, and normalized.
    AtPath {
        /// The directory descriptor's argument index; `None`: the working directory.
        dirfd: Option<u32>,
    },
    /// A `struct cred *`.
    Cred,
    /// A `struct sk_buff *`.
    Skb,
    /// A `struct dentry *`, reported as its path within its filesystem.
    Dentry,
    /// A `struct kiocb *`, reported as its file's path.
    Kiocb,
    /// A `struct iov_iter *`, reported as the bytes it holds next.
    IovIter,
    /// A `kernel_cap_t *`, read as the set it holds; which set it is names its event field.
    Cap(CapArg),
    /// A kernel object, reported whole.
    Object(KernelObject),
    /// A `struct linux_binprm *`, reported as the path of the file it executes.
    Binprm,
}

/// The kernel objects an argument can be (Tetragon's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelObject {
    /// `bpf_attr`: a `union bpf_attr *` of a program being loaded.
    BpfAttr,
    /// `bpf_map`: a `struct bpf_map *`.
    BpfMap,
    /// `perf_event`: a `struct perf_event *`.
    PerfEvent,
    /// `module`: a `struct module *`.
    Module,
    /// `load_info`: a `struct load_info *`, a module being loaded.
    LoadInfo,
}

impl KernelObject {
    /// The object a policy's argument type names.
    pub fn named(t: &str) -> Option<KernelObject> {
        Some(match t {
            "bpf_attr" => KernelObject::BpfAttr,
            "bpf_map" => KernelObject::BpfMap,
            "perf_event" => KernelObject::PerfEvent,
            "module" => KernelObject::Module,
            "load_info" => KernelObject::LoadInfo,
            _ => return None,
        })
    }
}

/// Which capability set a `kernel_cap_t *` argument is, for its event field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapArg {
    /// `kernel_cap_t`.
    Any,
    /// `cap_effective`.
    Effective,
    /// `cap_inheritable`.
    Inheritable,
    /// `cap_permitted`.
    Permitted,
}

impl HookArgKind {
    /// Whether the kernel reports it as bytes after the record (strings and paths).
    pub fn is_text(self) -> bool {
        matches!(
            self,
            HookArgKind::String
                | HookArgKind::CharBuf { .. }
                | HookArgKind::File
                | HookArgKind::Path
                | HookArgKind::Fd
                | HookArgKind::Dns
                | HookArgKind::AtPath { .. }
                | HookArgKind::Dentry
                | HookArgKind::Kiocb
                | HookArgKind::IovIter
                | HookArgKind::Binprm
        )
    }
}

/// One argument of a generic hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookArg {
    /// Its position in the call.
    pub index: u32,
    /// How to read it.
    pub kind: HookArgKind,
    /// Its label in events.
    pub label: Option<String>,
}

/// What an argument condition compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CondOp {
    /// One of these integers (Equal; NotEqual negated).
    IntIn(Vec<i64>),
    /// Greater than.
    Gt(i64),
    /// Less than.
    Lt(i64),
    /// Shares a bit with.
    Mask(i64),
    /// A string comparison.
    Text(MatchKind, Vec<String>),
    /// The source (`true`) or destination address is in one of the networks.
    Addr(bool, Vec<IpNet>),
    /// The source (`true`) or destination port is one of these.
    Port(bool, Vec<u16>),
    /// The socket's protocol is one of these.
    Protocol(Vec<u8>),
    /// The address family is one of these.
    Family(Vec<u16>),
    /// The socket's TCP state is one of these.
    State(Vec<u8>),
}

/// One argument condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    /// Position of the argument in the hook's `args`.
    pub arg: usize,
    /// The comparison.
    pub op: CondOp,
    /// The `Not` form.
    pub negate: bool,
}

/// `matchPIDs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidFilter {
    /// The pids.
    pub values: Vec<u32>,
    /// `NotIn`.
    pub not_in: bool,
    /// Pids as seen in the process's own pid namespace.
    pub namespace: bool,
    /// A fork that has not exec'd counts as its parent.
    pub follow_forks: bool,
}

/// A namespace value: an inode number or the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsValue {
    /// This inode.
    Inode(u32),
    /// The host's namespace of this kind (the agent reads it when it loads the policy).
    Host,
}

/// `matchNamespaces`, one namespace kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsFilter {
    /// vigil's index of the namespace (`enum vigil_ns_index`).
    pub ns: usize,
    /// The values.
    pub values: Vec<NsValue>,
    /// `NotIn`.
    pub not_in: bool,
}

/// `matchCapabilities`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapFilter {
    /// 1 effective, 2 permitted, 3 inheritable (`VIGIL_CAPS_*`).
    pub set: u8,
    /// The capabilities as a bit mask.
    pub mask: u64,
    /// `NotIn`: the process has none of them (`In`: at least one).
    pub not_in: bool,
}

/// One selector of a generic hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSelector {
    /// Argument conditions.
    pub conds: Vec<Cond>,
    /// The binary filter.
    pub binary: Option<Filter>,
    /// The pid filter.
    pub pids: Option<PidFilter>,
    /// Namespace filters.
    pub namespaces: Vec<NsFilter>,
    /// Capability filters.
    pub caps: Vec<CapFilter>,
    /// What it does.
    pub action: RuleAction,
    /// With an Override: the process is killed as well.
    pub kill: bool,
    /// Whether it reports.
    pub post: bool,
    /// `rateLimit` on Post: a report at most once per this many seconds for the same process,
    /// selector and arguments (the agent holds back the others).
    pub rate_limit_secs: Option<u64>,
    /// TrackSock (`true`) or UntrackSock on the socket argument at this position in `args`.
    pub sock_action: Option<(bool, usize)>,
}

/// A hook, its arguments and its selectors: a kprobe, a system call, or an LSM hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRule {
    /// The hook's field path.
    pub hook_path: String,
    /// The kernel function, system call or LSM hook, as the policy names it.
    pub call: String,
    /// An `lsmhooks` entry (its events are `process_lsm`).
    pub lsm: bool,
    /// `call` is a system call.
    pub syscall: bool,
    /// What to read. For a hook on a function's return, the one entry is the return value.
    pub args: Vec<HookArg>,
    /// The hook runs when the function returns and reads its return value (`return: true`
    /// with `returnArg`); its selectors' `matchReturnArgs` are conditions on that value.
    pub returns: bool,
    /// Selectors; none reports every call.
    pub selectors: Vec<HookSelector>,
    /// Monitor mode: Sigkill and Signal are reported, not carried out.
    pub monitor: bool,
    /// The hook's `message`.
    pub message: Option<String>,
    /// The hook's `tags`.
    pub tags: Vec<String>,
    /// A uprobe's place: `call` is then its symbol (or its offset, written `0x...`).
    pub uprobe: Option<UprobeTarget>,
    /// A list hook's members: `call` is then `list:<name>`.
    pub list: Option<crate::lists::ListTarget>,
    /// `returnArgAction`: TrackSock (`true`) or UntrackSock on the socket the function
    /// returned, when a selector matched (or there is none).
    pub return_sock: Option<bool>,
    /// A policy tracepoint: `call` is then `<subsystem>/<event>`.
    pub tracepoint: Option<crate::tracepoints::TracepointTarget>,
    /// The loader (`spec.loader`): its events are `process_loader`, the file mapped.
    pub loader: bool,
}

/// Where in a binary a uprobe sits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UprobeTarget {
    /// The binary as the policy names it.
    pub path: String,
    /// The file the kernel is given (`/procRoot/` read as `/proc/`).
    pub file: String,
    /// The symbol, if it is placed by one.
    pub symbol: Option<String>,
    /// Bytes past the symbol, or in the file without one.
    pub offset: u64,
}

impl HookRule {
    /// Whether the kernel's file-open evaluator serves it (`lsmhooks: file_open`, `kprobes:
    /// security_file_open`): its one argument is the opened file. A `security_file_open` kprobe
    /// that filters on the process (pids, namespaces, capabilities), which that evaluator does
    /// not hold, is a generic hook on the function instead.
    pub fn is_file_open(&self) -> bool {
        if self.lsm {
            self.call == "file_open"
        } else {
            self.call == "security_file_open"
                && self
                    .selectors
                    .iter()
                    .all(|s| s.pids.is_none() && s.namespaces.is_empty() && s.caps.is_empty())
        }
    }
}

/// What a hook is made of, as the policy writes it.
pub(crate) struct HookSource<'a> {
    pub path: String,
    pub call: &'a str,
    pub lsm: bool,
    pub syscall: bool,
    pub returns: bool,
    pub args: &'a [ArgSpec],
    pub selectors: &'a [Selector],
    pub message: &'a Option<String>,
    pub tags: &'a [String],
}

/// A file-open hook: the opened file is its one argument, and its selectors may deny
/// (Override), which the file-open evaluator does before the open on BPF LSM.
pub(crate) fn hook_rule(src: HookSource, monitor: bool) -> Result<HookRule, Vec<CompileError>> {
    let file = src.args.iter().find(|a| a.r#type == "file");
    let args = file
        .map(|a| HookArg {
            index: a.index,
            kind: HookArgKind::File,
            label: a.label.clone(),
        })
        .into_iter()
        .collect();
    finish(src, args, monitor, true)
}

/// Compiles the selectors of a hook whose arguments are decided.
fn finish(
    src: HookSource,
    args: Vec<HookArg>,
    monitor: bool,
    file_open: bool,
) -> Result<HookRule, Vec<CompileError>> {
    let mut selectors = Vec::new();
    let mut errors = Vec::new();
    for (i, s) in src.selectors.iter().enumerate() {
        let spath = format!("{}.selectors[{i}]", src.path);
        match selector(&spath, s, &args, src.returns, file_open) {
            Ok(sel) => selectors.push(sel),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(HookRule {
        hook_path: src.path,
        call: src.call.to_string(),
        lsm: src.lsm,
        syscall: src.syscall,
        args,
        returns: src.returns,
        selectors,
        monitor,
        message: src.message.clone(),
        tags: src.tags.to_vec(),
        uprobe: None,
        list: None,
        return_sock: None,
        tracepoint: None,
        loader: false,
    })
}

/// Namespace names in vigil's index order (`enum vigil_ns_index`).
pub(crate) const NAMESPACES: [&str; vigil_bpf_kprobes::abi::NS_COUNT] = [
    "Uts",
    "Ipc",
    "Mnt",
    "Pid",
    "PidForChildren",
    "Net",
    "Time",
    "Cgroup",
    "User",
    "TimeForChildren",
];

/// A value as the kernel holds the argument: cut to `bits`, then sign-extended when the type is
/// signed (so `0xffffffff` for an `int` is -1, as the register's low half reads).
pub fn normalize(n: i128, bits: u32, signed: bool) -> i64 {
    let v = n as u64;
    if bits >= 64 {
        return v as i64;
    }
    let cut = v & ((1u64 << bits) - 1);
    if signed && cut >> (bits - 1) & 1 == 1 {
        (cut | !((1u64 << bits) - 1)) as i64
    } else {
        cut as i64
    }
}

/// Compiles a kprobe (other than the file-open hooks) into a generic hook.
pub fn generic_hook(
    path: &str,
    k: &KprobeSpec,
    monitor: bool,
) -> Result<HookRule, Vec<CompileError>> {
    let err = |p: String, reason: String| vec![CompileError::from_text(p, reason)];
    // A `nop` argument is declared and never read.
    let entry: Vec<(String, &ArgSpec)> = k
        .args
        .iter()
        .enumerate()
        .filter(|(_, a)| arg_class(&a.r#type) != Some(ArgClass::Nop))
        .map(|(i, a)| (format!("{path}.args[{i}].type"), a))
        .collect();
    // On a return, the arguments are read at the entry and kept for the thread; the return
    // value comes last.
    let read: Vec<(String, &ArgSpec)> = if k.r#return {
        if k.syscall {
            return Err(err(
                format!("{path}.return"),
                "return values of system call hooks are not read yet".into(),
            ));
        }
        let Some(r) = k.return_arg.as_ref() else {
            return Err(err(
                format!("{path}.returnArg"),
                "`return: true` needs `returnArg` saying how to read the value".into(),
            ));
        };
        let mut read = entry;
        read.push((format!("{path}.returnArg.type"), r));
        read
    } else {
        entry
    };
    if read.len() > vigil_bpf_kprobes::abi::HOOK_ARGS {
        return Err(err(
            format!("{path}.args"),
            format!(
                "{} values to read (the arguments and the return value); the kernel reads at most {}; read fewer arguments",
                read.len(),
                vigil_bpf_kprobes::abi::HOOK_ARGS
            ),
        ));
    }
    let mut args = Vec::new();
    for (apath, a) in read {
        if let Some((reason, fix)) =
            crate::args::special_arg_error(&a.r#type, &k.call, k.syscall, a.index)
        {
            return Err(err(apath, format!("{reason}: {fix}")));
        }
        let kind = match (arg_class(&a.r#type), a.r#type.as_str()) {
            // Kernel pointers: a system call's arguments are user memory.
            (_, "cred") if !k.syscall => HookArgKind::Cred,
            (_, "kernel_cap_t") if !k.syscall => HookArgKind::Cap(CapArg::Any),
            (_, "cap_effective") if !k.syscall => HookArgKind::Cap(CapArg::Effective),
            (_, "cap_inheritable") if !k.syscall => HookArgKind::Cap(CapArg::Inheritable),
            (_, "cap_permitted") if !k.syscall => HookArgKind::Cap(CapArg::Permitted),
            (_, t) if crate::args::CAP_TYPES.contains(&t) => {
                return Err(err(
                    apath,
                    format!("a system call hook cannot read a `{t}` argument (a kernel pointer)"),
                ))
            }
            (Some(ArgClass::Int { bits, signed }), t) => HookArgKind::Int {
                bits,
                signed,
                size: t == "size_t",
            },
            (Some(ArgClass::Sock), _) if !k.syscall => HookArgKind::Sock,
            (Some(ArgClass::Skb), _) if !k.syscall => HookArgKind::Skb,
            (_, "dentry") if !k.syscall => HookArgKind::Dentry,
            (_, "kiocb") if !k.syscall => HookArgKind::Kiocb,
            (_, "iov_iter") if !k.syscall => HookArgKind::IovIter,
            (_, "linux_binprm") if !k.syscall => HookArgKind::Binprm,
            (Some(ArgClass::Object), t) if !k.syscall => {
                HookArgKind::Object(KernelObject::named(t).expect("every object class is named"))
            }
            (Some(ArgClass::Object), t) => {
                return Err(err(
                    apath,
                    format!("a system call hook cannot read a `{t}` argument (a kernel pointer)"),
                ))
            }
            (Some(ArgClass::Sockaddr), _) => HookArgKind::Sockaddr,
            (_, "string") => HookArgKind::String,
            (_, "char_buf") => match a.size_arg_index {
                Some(n) if n >= 1 => HookArgKind::CharBuf { size_index: n - 1 },
                _ => {
                    return Err(err(
                        apath,
                        "vigil reads a `char_buf` only with `sizeArgIndex` naming its length"
                            .into(),
                    ))
                }
            },
            (_, "fd") => HookArgKind::Fd,
            (Some(ArgClass::Dns), _) if !k.r#return => HookArgKind::Dns,
            (_, "file") if !k.syscall => HookArgKind::File,
            (_, "path") if !k.syscall => HookArgKind::Path,
            (_, "path") => HookArgKind::AtPath {
                dirfd: crate::args::file_name_arg(&k.call, a.index).flatten(),
            },
            (_, t) => {
                return Err(err(
                    apath,
                    format!(
                        "a {} cannot read a `{t}` argument (kernel pointers are not system call arguments)",
                        if k.syscall { "system call hook" } else { "kprobe" }
                    ),
                ))
            }
        };
        args.push(HookArg {
            index: a.index,
            kind,
            label: a.label.clone(),
        });
    }
    let src = HookSource {
        path: path.to_string(),
        call: &k.call,
        lsm: false,
        syscall: k.syscall,
        returns: k.r#return,
        args: &k.args,
        selectors: &k.selectors,
        message: &k.message,
        tags: &k.tags,
    };
    finish(src, args, monitor, false).map(|mut h| {
        h.return_sock = match k.return_arg_action.as_deref() {
            Some("TrackSock") => Some(true),
            Some("UntrackSock") => Some(false),
            _ => None,
        };
        h
    })
}

/// One selector: its argument conditions, process filters and action.
fn selector(
    spath: &str,
    s: &Selector,
    args: &[HookArg],
    returns: bool,
    file_open: bool,
) -> Result<HookSelector, CompileError> {
    let conds = conditions(spath, s, args, returns)?;
    let err =
        |field: String, reason: String| CompileError::from_text(format!("{spath}.{field}"), reason);
    if s.match_binaries.len() > 1 {
        return Err(err("matchBinaries".into(), "the kernel evaluates one matchBinaries filter per selector; list every binary in one filter".into()));
    }
    let binary = binary_filter(s);
    let sock_action = s
        .match_actions
        .iter()
        .enumerate()
        .filter(|(_, a)| matches!(a.action.as_str(), "TrackSock" | "UntrackSock"))
        .map(|(i, a)| {
            let at = a.arg_sock.unwrap_or(0);
            args.iter()
                .position(|d| i64::from(d.index) == at && d.kind == HookArgKind::Sock)
                .map(|p| (a.action == "TrackSock", p))
                .ok_or_else(|| {
                    err(
                        format!("matchActions[{i}].argSock"),
                        format!("argument {at} is not a `sock` argument the hook reads"),
                    )
                })
        })
        .next_back()
        .transpose()?;
    let (action, kill) = action(spath, s, file_open)?;
    Ok(HookSelector {
        sock_action,
        conds,
        binary,
        pids: pid_filter(spath, s)?,
        namespaces: with_namespace_capabilities(namespace_filters(spath, s)?, s),
        caps: capability_filters(spath, s)?,
        action,
        kill,
        post: !s.match_actions.iter().any(|a| a.action == "NoPost"),
        rate_limit_secs: s
            .match_actions
            .iter()
            .enumerate()
            .find_map(|(i, a)| a.rate_limit.as_deref().map(|r| (i, r)))
            .map(|(i, r)| {
                values::period(r).map_err(|e| err(format!("matchActions[{i}].rateLimit"), e))
            })
            .transpose()?,
    })
}

/// `matchArgs` (or, on a return hook, `matchReturnArgs`) as conditions on the hook's arguments.
fn conditions(
    spath: &str,
    s: &Selector,
    args: &[HookArg],
    returns: bool,
) -> Result<Vec<Cond>, CompileError> {
    let err =
        |field: String, reason: String| CompileError::from_text(format!("{spath}.{field}"), reason);
    // On a return hook the return value is the last argument read; those before it were
    // read at the entry.
    let entry = if returns {
        args.len().saturating_sub(1)
    } else {
        args.len()
    };
    if !s.match_return_args.is_empty() && !returns {
        return Err(err(
            "matchReturnArgs".into(),
            "the hook does not read the return value: add `return: true` and `returnArg`".into(),
        ));
    }
    if !s.match_args.is_empty() && entry == 0 && returns {
        return Err(err(
            "matchArgs".into(),
            "a hook on the return reads no arguments; declare them in `args` (read at the entry), or filter on the value with matchReturnArgs"
                .into(),
        ));
    }
    if s.match_args.len() + s.match_return_args.len() > HOOK_CONDS {
        return Err(err(
            "matchArgs".into(),
            format!("the kernel evaluates up to {HOOK_CONDS} argument filters per selector; split the selector"),
        ));
    }
    let filters = s
        .match_args
        .iter()
        .enumerate()
        .map(|(i, f)| ("matchArgs", i, f, 0..entry))
        .chain(
            s.match_return_args
                .iter()
                .enumerate()
                .map(|(i, f)| ("matchReturnArgs", i, f, entry..args.len())),
        );
    let mut conds = Vec::new();
    for (name, i, f, within) in filters {
        let field = format!("{name}[{i}]");
        let Some(pos) = args[within.clone()]
            .iter()
            .position(|a| a.index == f.index)
            .map(|p| p + within.start)
        else {
            return Err(err(
                format!("{field}.index"),
                "names no declared argument".into(),
            ));
        };
        let vals: Vec<&str> = f.values.iter().map(|v| v.0.as_str()).collect();
        let bad = |e: String| err(format!("{field}.values"), e);
        let op = f.operator.as_str();
        let (negate, base) = match op.strip_prefix("Not") {
            Some(rest) => (true, rest),
            None => (false, op),
        };
        let kind = match args[pos].kind {
            // A capability set compares as the integer it holds.
            HookArgKind::Cap(_) => HookArgKind::Int {
                bits: 64,
                signed: false,
                size: false,
            },
            k => k,
        };
        let cond_op = match (kind, base) {
            (HookArgKind::Int { bits, signed, .. }, _) => {
                let ints = vals
                    .iter()
                    .map(|v| values::int_for(v, bits, signed).map(|n| normalize(n, bits, signed)))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(bad)?;
                match base {
                    "Equal" => CondOp::IntIn(ints),
                    "GT" => CondOp::Gt(ints[0]),
                    "LT" => CondOp::Lt(ints[0]),
                    "Mask" => CondOp::Mask(ints.iter().fold(0, |m, v| m | v)),
                    _ => {
                        return Err(err(
                            format!("{field}.operator"),
                            format!("`{op}` does not compare integers"),
                        ))
                    }
                }
            }
            (k, kind @ ("Equal" | "Prefix" | "Postfix")) if k.is_text() => {
                let kind = match kind {
                    "Equal" => MatchKind::Exact,
                    "Prefix" => MatchKind::Prefix,
                    _ => MatchKind::Postfix,
                };
                CondOp::Text(kind, vals.iter().map(|v| v.to_string()).collect())
            }
            (HookArgKind::Sock | HookArgKind::Sockaddr | HookArgKind::Skb, "SAddr" | "DAddr") => {
                CondOp::Addr(
                    base == "SAddr",
                    vals.iter()
                        .map(|v| values::cidr(v))
                        .collect::<Result<_, _>>()
                        .map_err(bad)?,
                )
            }
            (HookArgKind::Sock | HookArgKind::Sockaddr | HookArgKind::Skb, "SPort" | "DPort") => {
                CondOp::Port(
                    base == "SPort",
                    vals.iter()
                        .map(|v| values::port(v))
                        .collect::<Result<_, _>>()
                        .map_err(bad)?,
                )
            }
            (HookArgKind::Sock | HookArgKind::Skb, "Protocol") => CondOp::Protocol(
                vals.iter()
                    .map(|v| values::protocol(v))
                    .collect::<Result<_, _>>()
                    .map_err(bad)?,
            ),
            (HookArgKind::Sock | HookArgKind::Sockaddr | HookArgKind::Skb, "Family") => {
                CondOp::Family(
                    vals.iter()
                        .map(|v| values::family(v))
                        .collect::<Result<_, _>>()
                        .map_err(bad)?,
                )
            }
            (HookArgKind::Sock, "State") => CondOp::State(
                vals.iter()
                    .map(|v| values::tcp_state(v))
                    .collect::<Result<_, _>>()
                    .map_err(bad)?,
            ),
            _ => {
                return Err(err(
                    format!("{field}.operator"),
                    format!("`{op}` is not evaluated on this argument in the kernel"),
                ))
            }
        };
        conds.push(Cond {
            arg: pos,
            op: cond_op,
            negate,
        });
    }
    Ok(conds)
}

/// `matchPIDs`: one filter per selector.
fn pid_filter(spath: &str, s: &Selector) -> Result<Option<PidFilter>, CompileError> {
    let err =
        |field: String, reason: String| CompileError::from_text(format!("{spath}.{field}"), reason);
    let mut merged: Option<PidFilter> = None;
    for (i, f) in s.match_pids.iter().enumerate() {
        let values: Vec<u32> = f
            .values
            .iter()
            .map(|v| values::int_for(&v.0, 32, false).map(|n| n as u32))
            .collect::<Result<_, _>>()
            .map_err(|e| err(format!("matchPIDs[{i}].values"), e))?;
        let next = PidFilter {
            values,
            not_in: f.operator == "NotIn",
            namespace: f.is_namespace_pid,
            follow_forks: f.follow_forks,
        };
        // Filters are ANDed: two that read the pid the same way are one. Not in A and not in B
        // is not in A or B; in A and in B is in both.
        merged = Some(match merged {
            None => next,
            Some(mut m)
                if (m.not_in, m.namespace, m.follow_forks)
                    == (next.not_in, next.namespace, next.follow_forks) =>
            {
                if m.not_in {
                    m.values.extend(next.values);
                    m.values.sort_unstable();
                    m.values.dedup();
                } else {
                    m.values.retain(|v| next.values.contains(v));
                }
                m
            }
            Some(_) => return Err(err(
                format!("matchPIDs[{i}]"),
                "the kernel evaluates one matchPIDs filter per selector, and this one reads the pid another way than the one before (operator, isNamespacePID or followForks); filters that read it the same way are merged"
                    .into(),
            )),
        });
    }
    Ok(merged)
}

/// `matchNamespaces`: at most one filter per namespace kind.
fn namespace_filters(spath: &str, s: &Selector) -> Result<Vec<NsFilter>, CompileError> {
    let err =
        |field: String, reason: String| CompileError::from_text(format!("{spath}.{field}"), reason);
    let mut namespaces: Vec<NsFilter> = Vec::new();
    for (i, f) in s.match_namespaces.iter().enumerate() {
        let field = format!("matchNamespaces[{i}]");
        let Some(ns) = NAMESPACES.iter().position(|n| *n == f.namespace) else {
            return Err(err(
                format!("{field}.namespace"),
                format!(
                    "vigil does not track the `{}` namespace of a process",
                    f.namespace
                ),
            ));
        };
        if namespaces.iter().any(|o| o.ns == ns) {
            return Err(err(
                field,
                format!(
                    "a second `{}` filter in one selector; list every value in one filter",
                    f.namespace
                ),
            ));
        }
        let values = f
            .values
            .iter()
            .map(|v| match v.0.as_str() {
                "host_ns" => Ok(NsValue::Host),
                n => values::int_for(n, 32, false).map(|n| NsValue::Inode(n as u32)),
            })
            .collect::<Result<_, _>>()
            .map_err(|e| err(format!("{field}.values"), e))?;
        namespaces.push(NsFilter {
            ns,
            values,
            not_in: f.operator == "NotIn",
        });
    }
    Ok(namespaces)
}

/// `isNamespaceCapability: true` on a capability filter: it holds only for a process outside
/// the host's user namespace (where its capabilities are a namespace's, as after
/// `unshare -U`), as in Tetragon. Every filter of a selector must hold, so one condition on
/// the user namespace serves them all: a `User` NotIn `host_ns` filter, added or merged.
fn with_namespace_capabilities(mut namespaces: Vec<NsFilter>, s: &Selector) -> Vec<NsFilter> {
    if !s
        .match_capabilities
        .iter()
        .any(|f| f.is_namespace_capability)
    {
        return namespaces;
    }
    let user = NAMESPACES.iter().position(|n| *n == "User").unwrap_or(0);
    match namespaces.iter_mut().find(|f| f.ns == user) {
        Some(f) if f.not_in => {
            if !f.values.contains(&NsValue::Host) {
                f.values.push(NsValue::Host);
            }
        }
        // `In` some namespaces: the host's must not be one of them.
        Some(f) => f.values.retain(|v| *v != NsValue::Host),
        None => namespaces.push(NsFilter {
            ns: user,
            values: vec![NsValue::Host],
            not_in: true,
        }),
    }
    namespaces
}

/// `matchCapabilities`: up to three filters.
fn capability_filters(spath: &str, s: &Selector) -> Result<Vec<CapFilter>, CompileError> {
    let err =
        |field: String, reason: String| CompileError::from_text(format!("{spath}.{field}"), reason);
    if s.match_capabilities.len() > 3 {
        return Err(err(
            "matchCapabilities".into(),
            "the kernel evaluates up to 3 capability filters per selector".into(),
        ));
    }
    let mut caps = Vec::new();
    for f in &s.match_capabilities {
        let set = match f.r#type.as_deref().unwrap_or("Effective") {
            "Effective" => 1,
            "Permitted" => 2,
            _ => 3,
        };
        let mask = f
            .values
            .iter()
            .filter_map(|v| vigil_events::caps::bit(&v.0))
            .fold(0u64, |m, b| m | 1 << b);
        caps.push(CapFilter {
            set,
            mask,
            not_in: f.operator == "NotIn",
        });
    }
    Ok(caps)
}

/// The selector's action: the last of its actions that decides one (NoPost only silences),
/// and whether it kills as well. On a generic hook, Override decides, and a Sigkill beside it
/// kills the process too (Tetragon carries out both); on a file open, a denial is a denial.
fn action(spath: &str, s: &Selector, file_open: bool) -> Result<(RuleAction, bool), CompileError> {
    let err =
        |field: String, reason: String| CompileError::from_text(format!("{spath}.{field}"), reason);
    let mut action = RuleAction::Post;
    for a in &s.match_actions {
        action = match a.action.as_str() {
            "Sigkill" => RuleAction::Sigkill,
            "Signal" => RuleAction::Signal(a.arg_sig.unwrap_or(9) as i32),
            "Override" => RuleAction::Override(a.arg_error.unwrap_or(-1) as i32),
            "NoPost" if action == RuleAction::Post => RuleAction::NoPost,
            _ => action,
        };
    }
    let overrides = s.match_actions.iter().position(|a| a.action == "Override");
    let (Some(o), false) = (overrides, file_open) else {
        return Ok((action, false));
    };
    if let Some(i) = s.match_actions.iter().position(|a| a.action == "Signal") {
        return Err(err(
            format!("matchActions[{i}].action"),
            "Override and Signal in one selector: vigil carries out the Override and a Sigkill beside it, not another signal (fix: use Sigkill, or move the Signal to its own selector)".into(),
        ));
    }
    let kill = s.match_actions.iter().any(|a| a.action == "Sigkill");
    Ok((
        RuleAction::Override(s.match_actions[o].arg_error.unwrap_or(-1) as i32),
        kill,
    ))
}
