//! The attach plan: for every hook of a policy, the mechanism this kernel allows and the
//! guarantee it gives, following DESIGN.md's ladder.
//!
//! - File opens (`lsmhooks: file_open`, `kprobes: security_file_open`): BPF LSM (denied before
//!   the effect) → fmod_ret on `security_file_open`, where trampolines work but BPF LSM is not
//!   active (denied before the effect, the same way) → the open system calls' exit
//!   tracepoints, which kill with SIGKILL on the way back to userspace (the process dies
//!   before it sees the file).
//! - Other kprobes: kprobe or kretprobe on the kernel function (for a system call, its
//!   wrapper, as `/proc/kallsyms` names it) → for system calls, their enter tracepoints; for
//!   the socket functions, what stands for them ([`abi::STAND_INS`]), which the UDP ones use
//!   on every kernel.
//!
//! A hook nothing fits is refused with the reason. The sensor attaches exactly what the plan
//! says; planning is pure (it takes a [`Kernel`]), so it is tested for every kernel shape
//! without that kernel.

use vigil_bpf_kprobes::abi;

use crate::{
    compile::{HookRule, HookSelector, RuleAction},
    kernel::{kprobe_function_candidates, KernelSymbols},
};

/// What the running kernel allows, as `vigil probe` measured it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCaps {
    /// BPF LSM programs load, attach and run.
    pub lsm: bool,
    /// kprobes attach.
    pub kprobe: bool,
    /// fentry programs attach.
    pub fentry: bool,
    /// fmod_ret programs attach to `security_file_open` (trampolines, without BPF LSM).
    pub fmod_ret: bool,
    /// Tracepoints attach.
    pub tracepoint: bool,
    /// `bpf_send_signal` is available.
    pub send_signal: bool,
    /// `bpf_override_return` is available.
    pub override_return: bool,
    /// uprobes attach (the kernel's uprobe PMU).
    pub uprobe: bool,
}

impl KernelCaps {
    /// A kernel that allows every mechanism vigil uses, for planning where no kernel is probed
    /// (`vigil policy test`, fuzzing).
    pub const ALL: KernelCaps = KernelCaps {
        lsm: true,
        kprobe: true,
        fentry: true,
        fmod_ret: true,
        tracepoint: true,
        send_signal: true,
        override_return: true,
        uprobe: true,
    };
}

/// How a hook is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// A BPF LSM program on `security_<hook>`.
    Lsm(String),
    /// fentry on `security_<hook>` judges, and an fmod_ret program there returns its errno
    /// before the hook's function runs: BPF LSM's guarantee where trampolines work but BPF LSM
    /// is not among the kernel's active LSMs.
    FmodRet(String),
    /// A kprobe on this kernel function (a system call's wrapper, for a system call).
    Kprobe(String),
    /// A kretprobe on this kernel function: the hook reads its return value.
    Kretprobe(String),
    /// The exit tracepoints of these system calls; the subject is what the kernel resolved.
    SyscallTracepoints(Vec<String>),
    /// The enter tracepoint of this system call, reading its arguments.
    SyscallEnter(String),
    /// What stands for this socket function ([`abi::STAND_INS`]): a system call's entry or
    /// return, or the TCP state change it makes, in the calling process; the socket is its
    /// first argument.
    SockState(String),
    /// A uprobe (`ret`: a uretprobe) on a function of a binary.
    Uprobe {
        /// Where.
        target: crate::hook_rule::UprobeTarget,
        /// On the function's return.
        ret: bool,
    },
    /// Nowhere: this kernel compiled the system call out, so every call fails with ENOSYS and
    /// there is nothing for the hook to see or stop.
    NotInKernel(String),
    /// A list hook: each member's mechanism, by the member's name (members this kernel compiled
    /// out are left out).
    List(Vec<(String, Mechanism)>),
    /// A policy's tracepoint (`raw`: its raw tracepoint).
    Tracepoint(crate::tracepoints::TracepointTarget),
}

/// What happens to a matching operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// Nothing: events only.
    None,
    /// The operation fails with this errno.
    Deny(i64),
    /// The process is killed.
    Kill,
    /// This signal is sent.
    Signal(i64),
}

/// What the user can rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarantee {
    /// The operation never happens.
    DeniedBeforeEffect,
    /// The operation happens, but the process dies before it returns to userspace, so it never
    /// sees the result (no byte of a file it opened reaches it).
    KilledBeforeReturn,
    /// The process is killed when the call returns to userspace; the call itself completes.
    KilledOnReturn,
    /// The process is killed at the function's first instruction (a uprobe on its entry): the
    /// function never runs in it.
    KilledBeforeFunction,
    /// The signal is delivered when the process returns to userspace.
    SignalledOnReturn,
    /// Events are reported; nothing is enforced (monitor mode, or no enforcement action).
    ObservedOnly,
}

impl Guarantee {
    /// One sentence for `vigil policy explain`.
    pub fn describe(self) -> &'static str {
        match self {
            Guarantee::DeniedBeforeEffect => "denied before the effect: the operation never happens",
            Guarantee::KilledBeforeReturn => {
                "process killed after the operation, before it returns to userspace: the data never reaches it through that call"
            }
            Guarantee::KilledBeforeFunction => {
                "process killed at the function's first instruction, before it runs: in code run from the hooked file (a copy of the binary is another file)"
            }
            Guarantee::KilledOnReturn => {
                "process killed when the call returns to userspace: the call itself completes, nothing after it runs"
            }
            Guarantee::SignalledOnReturn => "signal delivered when the process returns to userspace",
            Guarantee::ObservedOnly => "observed only: events are reported, nothing is enforced",
        }
    }
}

/// The plan for one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookPlan {
    /// The hook's field path (`spec.lsmhooks[0]`).
    pub path: String,
    /// The hook as the policy names it.
    pub hook: String,
    /// How it attaches here.
    pub mechanism: Mechanism,
    /// What the policy asks for when a selector matches.
    pub requested: Enforcement,
    /// What this kernel can do of it.
    pub enforcement: Enforcement,
    /// What that guarantees.
    pub guarantee: Guarantee,
    /// Why a better mechanism was not used, when it was not.
    pub fallback_reason: Option<String>,
    /// What this rung cannot stop, for the hook's selectors.
    pub gaps: Vec<crate::gaps::Gap>,
}

/// A hook this kernel cannot serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// The hook's field path.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// The system calls whose exits the file-open evaluator watches where neither BPF LSM nor
/// fmod_ret is available: every system call that opens a file and returns its descriptor
/// (io_uring's opens are none of them; see `gaps.rs`).
pub const OPEN_SYSCALLS: [&str; 5] = ["openat", "openat2", "open", "creat", "open_by_handle_at"];

/// What planning needs to know of the kernel the policy is for.
#[derive(Clone, Copy, Default)]
pub struct Kernel<'a> {
    /// What it allows.
    pub caps: KernelCaps,
    /// Its functions and tracepoints; `None` plans by the policy's names (`vigil policy test`,
    /// or where `/proc/kallsyms` cannot be read).
    pub symbols: Option<&'a dyn KernelSymbols>,
}

fn requested(selectors: &[HookSelector]) -> Enforcement {
    let mut out = Enforcement::None;
    for a in selectors.iter().map(|s| s.action) {
        out = match (a, out) {
            (RuleAction::Override(e), _) => Enforcement::Deny(e as i64),
            (RuleAction::Sigkill, Enforcement::None | Enforcement::Signal(_)) => Enforcement::Kill,
            (RuleAction::Signal(s), Enforcement::None) => Enforcement::Signal(s as i64),
            _ => out,
        };
    }
    out
}

/// Plans every compiled hook on `kernel`; every hook this kernel cannot serve is an error.
pub fn plan(
    hooks: &[HookRule],
    monitor: bool,
    kernel: &Kernel,
) -> Result<Vec<HookPlan>, Vec<PlanError>> {
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    for h in hooks {
        let path = h.hook_path.clone();
        let plan = attach(h, kernel).and_then(|(mechanism, fallback_reason)| {
            let requested = requested(&h.selectors);
            let (enforcement, guarantee) = match requested {
                // A generic hook's Override: an fmod_ret program returns the errno.
                Enforcement::Deny(e) if !monitor && !h.is_file_open() => {
                    let gates = crate::overrides::override_gates(h, &mechanism)?;
                    let symbols = kernel.symbols;
                    if let Some(g) = gates
                        .iter()
                        .find(|g| symbols.is_some_and(|k| !k.function(g)))
                    {
                        return Err(format!("Override takes effect at {g}, which this kernel does not have (built without the LSM hooks on paths, CONFIG_SECURITY_PATH?)"));
                    }
                    if !kernel.caps.fmod_ret {
                        return Err("Override needs fmod_ret programs (BPF trampolines) to make the LSM check return the errno, which this kernel does not allow; a Sigkill would land after the call had its effect (fix: use Sigkill, knowing that)".into());
                    }
                    (Enforcement::Deny(e), Guarantee::DeniedBeforeEffect)
                }
                _ => enforcement(&h.call, requested, &mechanism, &kernel.caps, monitor)?,
            };
            Ok(HookPlan {
                path: path.clone(),
                hook: h.call.clone(),
                requested,
                enforcement,
                guarantee,
                gaps: crate::gaps::file_open_gaps(h, &mechanism),
                mechanism,
                fallback_reason,
            })
        });
        match plan {
            Ok(p) => plans.push(p),
            Err(reason) => errors.push(PlanError { path, reason }),
        }
    }
    if errors.is_empty() {
        Ok(plans)
    } else {
        Err(errors)
    }
}

type Attach = Result<(Mechanism, Option<String>), String>;

/// Where each member of a list hook attaches: a system call on its enter tracepoint (where
/// tracepoints exist), a function by kprobe.
fn attach_list(h: &HookRule, list: &crate::lists::ListTarget, kernel: &Kernel) -> Attach {
    let members: Vec<(String, bool)> = match (&list.ftrace, kernel.symbols) {
        (Some(p), Some(symbols)) => crate::lists::ftrace_members(p, symbols)?
            .into_iter()
            .map(|f| (f, false))
            .collect(),
        // Planned by names alone (no kernel read): the functions are not known.
        (Some(_), None) => Vec::new(),
        (None, _) => list.syscalls.iter().map(|c| (c.clone(), true)).collect(),
    };
    let mut each = Vec::new();
    let mut fallback = None;
    for (name, syscall) in members {
        let member = HookRule {
            call: name.clone(),
            syscall,
            list: None,
            ..h.clone()
        };
        let (m, why) = if syscall && kernel.caps.tracepoint {
            syscall_enter(&member, kernel, None)?
        } else {
            attach(&member, kernel)?
        };
        fallback = fallback.or(why);
        if !matches!(m, Mechanism::NotInKernel(_)) {
            each.push((name, m));
        }
    }
    Ok((Mechanism::List(each), fallback))
}

/// Where a hook attaches on this kernel, and why not somewhere better.
fn attach(h: &HookRule, kernel: &Kernel) -> Attach {
    let caps = &kernel.caps;
    if let Some(list) = &h.list {
        return attach_list(h, list, kernel);
    }
    if let Some(tp) = &h.tracepoint {
        return if caps.tracepoint {
            Ok((Mechanism::Tracepoint(tp.clone()), None))
        } else {
            Err("tracepoints do not attach on this kernel".into())
        };
    }
    if let Some(target) = &h.uprobe {
        return if caps.uprobe {
            Ok((
                Mechanism::Uprobe {
                    target: target.clone(),
                    ret: h.returns,
                },
                None,
            ))
        } else {
            Err("uprobes need the kernel's uprobe PMU (CONFIG_UPROBE_EVENTS, /sys/bus/event_source/devices/uprobe), which this kernel lacks".into())
        };
    }
    if h.is_file_open() {
        // The file-open evaluator: BPF LSM, or the open system calls' exits.
        return if caps.lsm {
            Ok((Mechanism::Lsm("file_open".into()), None))
        } else if caps.fmod_ret {
            Ok((
                Mechanism::FmodRet("file_open".into()),
                Some("BPF LSM is not available".to_string()),
            ))
        } else if caps.tracepoint {
            Ok((
                Mechanism::SyscallTracepoints(
                    OPEN_SYSCALLS.iter().map(|c| c.to_string()).collect(),
                ),
                Some("neither BPF LSM nor fmod_ret on security_file_open is available".to_string()),
            ))
        } else {
            Err("file opens need BPF LSM or the open system calls' tracepoints; this kernel has neither".into())
        };
    }
    let stand_in = abi::stand_in(&h.call, h.returns).filter(|_| !h.syscall);
    match stand_in {
        Some(s) if caps.tracepoint && s.everywhere && h.return_sock.is_none() => {
            return use_stand_in(h, s, None)
        }
        _ => {}
    }
    if caps.kprobe {
        let function = kprobe_function(h, kernel)?;
        // A return hook that overrides is judged at the entry, before the function runs; its
        // event reports the errno it was made to return.
        return Ok((
            if h.returns && !crate::overrides::overrides(h) {
                Mechanism::Kretprobe(function)
            } else {
                Mechanism::Kprobe(function)
            },
            None,
        ));
    }
    let fallback = Some("kprobes are not available".to_string());
    match (caps.tracepoint, stand_in) {
        (true, Some(s)) => return use_stand_in(h, s, fallback),
        (true, None) if h.syscall => return syscall_enter(h, kernel, fallback),
        _ => {}
    }
    let stood_for: Vec<String> = abi::STAND_INS
        .iter()
        .map(|s| {
            format!(
                "the {} of {}",
                if s.on_return { "return" } else { "entry" },
                s.call
            )
        })
        .collect();
    Err(format!(
        "{}{} needs a kprobe, and this kernel allows none; only system calls (`syscall: true`) and {} fall back to tracepoints",
        h.call,
        if h.returns { "'s return" } else { "" },
        stood_for.join(", ")
    ))
}

/// The kernel function a kprobe on `h` attaches to: for a system call, its wrapper.
fn kprobe_function(h: &HookRule, kernel: &Kernel) -> Result<String, String> {
    let candidates = kprobe_function_candidates(&h.call, h.syscall);
    let Some(symbols) = kernel.symbols else {
        return Ok(candidates[0].clone());
    };
    let function = candidates
        .into_iter()
        .find(|f| symbols.function(f))
        .ok_or_else(|| {
            format!(
                "{} is not a function of this kernel (/proc/kallsyms)",
                h.call
            )
        })?;
    match (symbols.copies(&function), symbols.traceable(&function)) {
        (n, _) if n > 1 => Err(format!(
            "this kernel has {n} functions named {function} (copies of an inline function, each in its own file), and a kprobe by name cannot choose one; hook the function they call (for dev_queue_xmit, __dev_queue_xmit)"
        )),
        (_, Some(false)) => Err(format!(
            "{function} cannot be traced on this kernel (it is not in available_filter_functions: a notrace function, or the out-of-line copy of an inline one), and kprobes refuse it; hook the function it calls (for dev_queue_xmit, __dev_queue_xmit)"
        )),
        _ => Ok(function),
    }
}

/// A hook served by what stands for its socket function, if that carries what it reads.
fn use_stand_in(h: &HookRule, s: &abi::StandIn, fallback: Option<String>) -> Attach {
    if h.return_sock.is_some() {
        return Err(format!(
            "{} is served by what stands for it, which cannot track the socket it returns (returnArgAction): that needs a kretprobe",
            h.call
        ));
    }
    if h.returns && h.args.len() > 1 {
        return Err(format!(
            "{} is served by what stands for it, which reads the return value alone: the arguments of its entry cannot be kept for it",
            h.call
        ));
    }
    match h.args.iter().find(|a| !s.args.contains(&a.index)) {
        Some(a) => Err(format!(
            "{} is served by what stands for it, which carries only {}: argument {} cannot be read",
            h.call,
            if s.args.len() > 1 {
                "the socket, the datagram (argument 1) and its length (argument 2)"
            } else {
                "the socket (argument 0)"
            },
            a.index
        )),
        None => Ok((Mechanism::SockState(h.call.clone()), fallback)),
    }
}

/// A system call hook on its enter tracepoint, or nowhere when this kernel compiled the call
/// out (every call fails with ENOSYS, e.g. init_module without CONFIG_MODULES).
fn syscall_enter(h: &HookRule, kernel: &Kernel, fallback: Option<String>) -> Attach {
    let bare = h.call.strip_prefix("__x64_").unwrap_or(&h.call);
    let bare = bare.strip_prefix("sys_").unwrap_or(bare).to_string();
    if abi::syscall_nr(&bare).is_none() {
        return Err(format!("{} is not an x86-64 system call", h.call));
    }
    let tracepoint = |name: &str| {
        kernel
            .symbols
            .and_then(|k| k.tracepoint("syscalls", &format!("sys_enter_{name}")))
    };
    // Every system call compiled into the kernel has its tracepoints; one that exists on x86-64
    // but has none here is compiled out (its kallsyms entry is a stub returning ENOSYS).
    match (tracepoint(&bare), tracepoint("getpid")) {
        (Some(false), Some(true)) => Ok((Mechanism::NotInKernel(h.call.clone()), fallback)),
        (Some(false), _) => Err(format!(
            "no tracepoint syscalls/sys_enter_{bare} to fall back to"
        )),
        _ => Ok((Mechanism::SyscallEnter(bare), fallback)),
    }
}

/// What this kernel can do of what the hook asks for, and what that guarantees.
fn enforcement(
    hook: &str,
    requested: Enforcement,
    mechanism: &Mechanism,
    caps: &KernelCaps,
    monitor: bool,
) -> Result<(Enforcement, Guarantee), String> {
    // A list's members are all system call tracepoints or all kprobes: the first decides.
    if let Mechanism::List(each) = mechanism {
        return match each.first() {
            Some((_, m)) => enforcement(hook, requested, m, caps, monitor),
            None => Ok((Enforcement::None, Guarantee::ObservedOnly)),
        };
    }
    Ok(match (monitor, requested, mechanism) {
        (true, _, _) | (false, Enforcement::None, _) | (_, _, Mechanism::NotInKernel(_)) => {
            (Enforcement::None, Guarantee::ObservedOnly)
        }
        (false, Enforcement::Deny(e), Mechanism::Lsm(_) | Mechanism::FmodRet(_)) => (Enforcement::Deny(e), Guarantee::DeniedBeforeEffect),
        (false, Enforcement::Kill, Mechanism::Lsm(_) | Mechanism::FmodRet(_)) => (Enforcement::Kill, Guarantee::DeniedBeforeEffect),
        (false, Enforcement::Signal(s), _) if caps.send_signal => (Enforcement::Signal(s), Guarantee::SignalledOnReturn),
        // A kill decided on entry to a call (a kprobe, a system call's enter tracepoint, a
        // stand-in) lands when the call returns; only the file-open evaluator decides on the
        // result, before the process sees it.
        (false, Enforcement::Deny(_) | Enforcement::Kill, Mechanism::SyscallTracepoints(_)) if caps.send_signal => {
            (Enforcement::Kill, Guarantee::KilledBeforeReturn)
        }
        // A uprobe runs from the breakpoint on the function's first instruction, and the
        // kill lands on the way back to that instruction; on the return, before the caller
        // runs again.
        (false, Enforcement::Kill, Mechanism::Uprobe { ret: false, .. }) if caps.send_signal => {
            (Enforcement::Kill, Guarantee::KilledBeforeFunction)
        }
        (false, Enforcement::Kill, Mechanism::Uprobe { ret: true, .. }) if caps.send_signal => {
            (Enforcement::Kill, Guarantee::KilledBeforeReturn)
        }
        (false, Enforcement::Deny(_) | Enforcement::Kill, _) if caps.send_signal => {
            (Enforcement::Kill, Guarantee::KilledOnReturn)
        }
        (false, _, _) => {
            return Err(format!(
                "{hook}: the policy enforces, but this kernel can neither deny ({}) nor send signals from eBPF",
                describe_mechanism(mechanism)
            ))
        }
    })
}

/// The mechanism in words.
pub fn describe_mechanism(m: &Mechanism) -> String {
    match m {
        Mechanism::Lsm(h) => format!("BPF LSM on {h}"),
        Mechanism::FmodRet(h) => format!(
            "fmod_ret on security_{h} (fentry there judges the open; its errno is returned before the open happens)"
        ),
        Mechanism::Kprobe(f) => format!("kprobe on {f}"),
        Mechanism::Kretprobe(f) => format!("kretprobe on {f}"),
        Mechanism::SyscallTracepoints(calls) => format!(
            "system call tracepoints {}, and the raw sys_exit for 32-bit opens (matching on the file the kernel resolved)",
            calls
                .iter()
                .map(|c| format!("sys_exit_{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Mechanism::SyscallEnter(c) => format!("system call tracepoint sys_enter_{c}"),
        Mechanism::Tracepoint(t) => format!(
            "{}tracepoint {}/{}",
            if t.raw { "raw " } else { "" },
            t.subsystem,
            t.event
        ),
        Mechanism::SockState(f) => format!(
            "for {f}, {}",
            abi::STAND_INS
                .iter()
                .find(|s| s.call == f)
                .map_or("", |s| s.what)
        ),
        Mechanism::Uprobe { target, ret } => format!(
            "{} on {}{} in {}",
            if *ret { "uretprobe" } else { "uprobe" },
            target.symbol.as_deref().unwrap_or(""),
            match (&target.symbol, target.offset) {
                (Some(_), 0) => String::new(),
                (Some(_), o) => format!("+{o:#x}"),
                (None, o) => format!("{o:#x}"),
            },
            target.file
        ),
        Mechanism::NotInKernel(c) => {
            format!("nowhere: this kernel does not implement {c} (every call fails with ENOSYS)")
        }
        Mechanism::List(each) => {
            let shown: Vec<String> = each.iter().take(4).map(|(_, m)| describe_mechanism(m)).collect();
            let more = each.len().saturating_sub(shown.len());
            format!(
                "{} attach points: {}{}",
                each.len(),
                shown.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            )
        }
    }
}

/// The enforcement in words.
pub fn describe_enforcement(e: Enforcement) -> String {
    match e {
        Enforcement::None => "none (events only)".into(),
        Enforcement::Deny(errno) => format!("deny with {errno}"),
        Enforcement::Kill => "SIGKILL".into(),
        Enforcement::Signal(s) => format!("signal {s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{compile::compile, load_policy, Mode};

    fn plan_of(text: &str, caps: &KernelCaps) -> Result<Vec<HookPlan>, Vec<PlanError>> {
        let p = load_policy("p.yaml", text).unwrap();
        let hooks = compile(&p).unwrap();
        let kernel = Kernel {
            caps: *caps,
            symbols: None,
        };
        plan(&hooks, p.mode == Mode::Monitor, &kernel)
    }

    const DENY_PASSWD: &str = r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: deny-passwd
spec:
  lsmhooks:
  - hook: file_open
    args:
    - index: 0
      type: file
    selectors:
    - matchArgs:
      - index: 0
        operator: Equal
        values: ["/etc/passwd"]
      matchActions:
      - action: Override
        argError: -1
  kprobes:
  - call: tcp_connect
    args:
    - index: 0
      type: sock
"#;

    const HOST: KernelCaps = KernelCaps {
        tracepoint: true,
        send_signal: true,
        ..NONE
    };
    const VM: KernelCaps = KernelCaps {
        override_return: false,
        ..KernelCaps::ALL
    };
    const NONE: KernelCaps = KernelCaps {
        lsm: false,
        kprobe: false,
        fentry: false,
        fmod_ret: false,
        tracepoint: false,
        send_signal: false,
        override_return: false,
        uprobe: false,
    };

    #[test]
    fn bpf_lsm_denies_before_the_effect() {
        let plans = plan_of(DENY_PASSWD, &VM).unwrap();
        assert_eq!(plans[0].mechanism, Mechanism::Lsm("file_open".into()));
        assert_eq!(plans[0].enforcement, Enforcement::Deny(-1));
        assert_eq!(plans[0].guarantee, Guarantee::DeniedBeforeEffect);
        assert_eq!(plans[1].mechanism, Mechanism::Kprobe("tcp_connect".into()));
        assert_eq!(plans[1].guarantee, Guarantee::ObservedOnly);
    }

    #[test]
    fn without_bpf_lsm_but_with_trampolines_fmod_ret_denies_before_the_effect() {
        let no_lsm = KernelCaps { lsm: false, ..VM };
        let plans = plan_of(DENY_PASSWD, &no_lsm).unwrap();
        assert_eq!(plans[0].mechanism, Mechanism::FmodRet("file_open".into()));
        assert_eq!(plans[0].enforcement, Enforcement::Deny(-1));
        assert_eq!(plans[0].guarantee, Guarantee::DeniedBeforeEffect);
        assert_eq!(
            plans[0].fallback_reason.as_deref(),
            Some("BPF LSM is not available")
        );
        let no_trampolines = KernelCaps {
            fmod_ret: false,
            ..no_lsm
        };
        let plans = plan_of(DENY_PASSWD, &no_trampolines).unwrap();
        assert!(matches!(
            plans[0].mechanism,
            Mechanism::SyscallTracepoints(_)
        ));
        assert_eq!(plans[0].guarantee, Guarantee::KilledBeforeReturn);
    }

    #[test]
    fn each_rung_lists_what_it_cannot_stop_and_other_hooks_list_nothing() {
        let names = |caps: &KernelCaps, text: &str| -> Vec<Vec<&'static str>> {
            plan_of(text, caps)
                .unwrap()
                .iter()
                .map(|p| p.gaps.iter().map(|g| g.name).collect())
                .collect()
        };
        let no_lsm = KernelCaps { lsm: false, ..VM };
        assert_eq!(names(&VM, DENY_PASSWD), [vec!["create"], vec![]]);
        assert_eq!(
            names(&no_lsm, DENY_PASSWD),
            [vec!["create", "open while the judge is preempted"], vec![]]
        );
        let file_only = DENY_PASSWD.split("  kprobes:").next().unwrap();
        assert_eq!(
            names(&HOST, file_only),
            [vec![
                "io_uring",
                "shared descriptor table",
                "truncate or create"
            ]]
        );
        // Prefixes of paths and of binaries compare names a mount tree gives.
        let by_prefix = file_only
            .replace("operator: Equal", "operator: Prefix")
            .replace(
                "    - matchArgs:",
                "    - matchBinaries:\n      - operator: Prefix\n        values: [\"/usr/bin/\"]\n      matchArgs:",
            );
        assert_eq!(
            names(&VM, &by_prefix),
            [vec![
                "create",
                "bind mount or hard link under a prefix",
                "binary bind-mounted"
            ]]
        );
    }

    #[test]
    fn without_lsm_or_kprobes_file_open_falls_back_to_syscalls_with_sigkill() {
        let text = DENY_PASSWD.split("  kprobes:").next().unwrap();
        let plans = plan_of(text, &HOST).unwrap();
        assert_eq!(
            plans[0].mechanism,
            Mechanism::SyscallTracepoints(vec![
                "openat".into(),
                "openat2".into(),
                "open".into(),
                "creat".into(),
                "open_by_handle_at".into()
            ])
        );
        assert_eq!(plans[0].requested, Enforcement::Deny(-1));
        assert_eq!(plans[0].enforcement, Enforcement::Kill);
        assert_eq!(plans[0].guarantee, Guarantee::KilledBeforeReturn);
        assert!(plans[0]
            .fallback_reason
            .as_deref()
            .unwrap()
            .contains("BPF LSM"));
    }

    #[test]
    fn a_plain_kernel_function_without_kprobes_is_refused_with_the_reason() {
        let text = DENY_PASSWD.replace("tcp_connect", "tcp_sendmsg");
        let errors = plan_of(&text, &HOST).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "spec.kprobes[0]");
        assert!(
            errors[0]
                .reason
                .contains("tcp_sendmsg needs a kprobe, and this kernel allows none"),
            "{}",
            errors[0].reason
        );
    }

    #[test]
    fn tcp_functions_without_kprobes_are_served_by_what_stands_for_them() {
        let plans = plan_of(DENY_PASSWD, &HOST).unwrap();
        assert_eq!(
            plans[1].mechanism,
            Mechanism::SockState("tcp_connect".into())
        );
        assert!(describe_mechanism(&plans[1].mechanism).contains("sys_exit_connect"));
        // inet_csk_accept stands in only for its return.
        let accept = DENY_PASSWD.replace("tcp_connect", "inet_csk_accept");
        let errors = plan_of(&accept, &HOST).unwrap_err();
        assert!(
            errors[0].reason.contains("needs a kprobe"),
            "{}",
            errors[0].reason
        );
    }

    #[test]
    fn monitor_mode_never_enforces() {
        let text = DENY_PASSWD.replace(
            "spec:\n",
            "spec:\n  options:\n  - name: policy-mode\n    value: monitor\n",
        );
        let plans = plan_of(&text, &VM).unwrap();
        assert_eq!(plans[0].requested, Enforcement::Deny(-1));
        assert_eq!(plans[0].enforcement, Enforcement::None);
        assert_eq!(plans[0].guarantee, Guarantee::ObservedOnly);
    }

    #[test]
    fn enforcing_without_any_way_to_enforce_is_refused() {
        let text = DENY_PASSWD.split("  kprobes:").next().unwrap();
        let caps = KernelCaps {
            tracepoint: true,
            ..NONE
        };
        let errors = plan_of(text, &caps).unwrap_err();
        assert!(
            errors[0].reason.contains("can neither deny"),
            "{}",
            errors[0].reason
        );
    }
}
