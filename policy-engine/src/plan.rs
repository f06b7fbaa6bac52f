//! The attach plan: for every hook of a policy, the mechanism this kernel allows and the
//! guarantee it gives, following DESIGN.md's ladder.
//!
//! - `lsmhooks`: BPF LSM (denied before the effect) → a kprobe on the `security_*` function →
//!   the matching system calls' tracepoints; the last two enforce with SIGKILL on the way back
//!   to userspace (the process dies before it sees the result).
//! - `kprobes`: kprobe → fentry → for system calls, their tracepoints.
//! - `tracepoints`: the tracepoint itself.
//!
//! A hook nothing fits is refused with the reason. Planning is pure (it takes [`KernelCaps`]),
//! so it is tested for every kernel shape without that kernel.

use crate::{
    spec::{Action, Selector},
    validate::{Mode, Policy},
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
    /// Tracepoints attach.
    pub tracepoint: bool,
    /// `bpf_send_signal` is available.
    pub send_signal: bool,
    /// `bpf_override_return` is available.
    pub override_return: bool,
}

/// How a hook is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// A BPF LSM program on `security_<hook>`.
    Lsm(String),
    /// A kprobe on a kernel function.
    Kprobe(String),
    /// A kretprobe on a kernel function: the hook reads its return value.
    Kretprobe(String),
    /// An fentry program on a kernel function.
    Fentry(String),
    /// The exit tracepoints of these system calls; the subject is what the kernel resolved.
    SyscallTracepoints(Vec<String>),
    /// The enter tracepoint of this system call, reading its arguments.
    SyscallEnter(String),
    /// What stands for this socket function (SOCK_STATE_FUNCTIONS): a system call's entry or
    /// return, or the TCP state change it makes, in the calling process; the socket is its
    /// first argument.
    SockState(String),
    /// A tracepoint.
    Tracepoint(String, String),
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
                "process killed after the operation, before it returns to userspace: the data never reaches it"
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
}

/// A hook this kernel cannot serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// The hook's field path.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// LSM hooks and the system calls whose exit tracepoints see the same operation.
const LSM_SYSCALLS: [(&str, &[&str]); 6] = [
    ("file_open", &["openat", "openat2", "open", "creat"]),
    ("bprm_check_security", &["execve", "execveat"]),
    ("socket_connect", &["connect"]),
    ("path_truncate", &["truncate", "ftruncate"]),
    ("path_unlink", &["unlink", "unlinkat"]),
    ("kernel_read_file", &["finit_module", "init_module"]),
];

/// Socket functions and what stands for each, in the calling process's context: for the TCP
/// functions where kprobes are not available, for the UDP ones on every kernel (see
/// [`stand_in`]).
pub const SOCK_STATE_FUNCTIONS: [(&str, &str); 6] = [
    (
        "tcp_connect",
        "the return from connect() on a TCP socket that sent its SYN, tracepoint syscalls/sys_exit_connect",
    ),
    (
        "tcp_close",
        "the TCP state change from ESTABLISHED to FIN_WAIT1 or CLOSE_WAIT to LAST_ACK in close() or shutdown(), BTF tracepoint sock/inet_sock_set_state",
    ),
    (
        "inet_csk_listen_start",
        "the TCP state change to LISTEN in listen(), BTF tracepoint sock/inet_sock_set_state",
    ),
    (
        "udp_sendmsg",
        "the return from sendto(), sendmsg() or sendmmsg() that sent on a UDP socket, or the entry to write() on a connected one, tracepoints syscalls/sys_exit_send* and sys_enter_write",
    ),
    (
        "udp_recvmsg",
        "the return from recvfrom(), recvmsg() or recvmmsg() that received on a UDP socket, tracepoints syscalls/sys_exit_recv*, or a read() on a connected one, BTF tracepoint sock/sock_recv_length (before 6.3: syscalls/sys_exit_read)",
    ),
    (
        "inet_csk_accept",
        "the return from accept() or accept4() with a TCP socket, its descriptor resolved to the socket, tracepoints syscalls/sys_exit_accept and sys_exit_accept4",
    ),
];

/// Whether something stands for `call` (on its return if `returns`; inet_csk_accept's stands
/// for its return, the others' for their entry), and then whether it is used on every kernel:
/// the UDP functions' kprobes would see an unconnected socket without its peer, which only
/// the system call knows, and the datagram inside the kernel's iterators, so their stand-ins
/// are better everywhere; the TCP ones serve only where kprobes are not available.
pub fn stand_in(call: &str, returns: bool) -> Option<bool> {
    SOCK_STATE_FUNCTIONS
        .iter()
        .any(|(f, _)| *f == call && (*f == "inet_csk_accept") == returns)
        .then_some(matches!(call, "udp_sendmsg" | "udp_recvmsg"))
}

/// The system calls behind an LSM hook, if they fully cover it.
pub fn lsm_syscalls(hook: &str) -> Option<&'static [&'static str]> {
    LSM_SYSCALLS
        .iter()
        .find(|(h, _)| *h == hook)
        .map(|(_, s)| *s)
}

fn requested(selectors: &[Selector]) -> Enforcement {
    let actions = selectors.iter().flat_map(|s| s.match_actions.iter());
    let mut out = Enforcement::None;
    for a in actions {
        out = match (a.action.as_str(), out) {
            ("Override", _) => Enforcement::Deny(a.arg_error.unwrap_or(-1)),
            ("Sigkill", Enforcement::None | Enforcement::Signal(_)) => Enforcement::Kill,
            ("Signal", Enforcement::None) => Enforcement::Signal(signal_of(a)),
            _ => out,
        };
    }
    out
}

fn signal_of(a: &Action) -> i64 {
    a.arg_sig.unwrap_or(9)
}

/// Plans every hook of `policy` on a kernel with `caps`.
pub fn plan(policy: &Policy, caps: &KernelCaps) -> Result<Vec<HookPlan>, Vec<PlanError>> {
    let mut plans = Vec::new();
    let mut errors = Vec::new();
    let monitor = policy.mode == Mode::Monitor;
    for (i, h) in policy.spec.lsmhooks.iter().enumerate() {
        let path = format!("spec.lsmhooks[{i}]");
        let want = requested(&h.selectors);
        let mechanism = if caps.lsm {
            Ok((Mechanism::Lsm(h.hook.clone()), None))
        } else if caps.kprobe {
            Ok((
                Mechanism::Kprobe(format!("security_{}", h.hook)),
                Some("BPF LSM is not available".to_string()),
            ))
        } else if let (true, Some(calls)) = (caps.tracepoint, lsm_syscalls(&h.hook)) {
            Ok((
                Mechanism::SyscallTracepoints(calls.iter().map(|c| c.to_string()).collect()),
                Some("neither BPF LSM nor kprobes are available".to_string()),
            ))
        } else {
            Err(format!(
                "LSM hook {} needs BPF LSM, a kprobe on security_{}, or a system call fallback; this kernel has none of them",
                h.hook, h.hook
            ))
        };
        push(
            &mut plans,
            &mut errors,
            path,
            h.hook.clone(),
            mechanism,
            want,
            caps,
            monitor,
        );
    }
    for (i, k) in policy.spec.kprobes.iter().enumerate() {
        let path = format!("spec.kprobes[{i}]");
        let want = requested(&k.selectors);
        let syscall_name = k
            .syscall
            .then(|| k.call.strip_prefix("sys_").unwrap_or(&k.call).to_string());
        let stands_in = stand_in(&k.call, k.r#return);
        // A stand-in carries the socket, and the UDP functions' also the datagram (argument 1,
        // as `dns`) and its length (argument 2).
        let udp = stands_in == Some(true);
        let use_stand_in = |fallback: Option<String>| {
            let readable: &[u32] = if udp { &[0, 1, 2] } else { &[0] };
            match k.args.iter().find(|a| !readable.contains(&a.index)) {
                Some(a) => Err(format!(
                    "{} is served by what stands for it, which carries only the socket{}: argument {} cannot be read",
                    k.call,
                    if udp { ", the datagram (argument 1) and its length (argument 2)" } else { " (argument 0)" },
                    a.index
                )),
                None => Ok((Mechanism::SockState(k.call.clone()), fallback)),
            }
        };
        let mechanism = if caps.tracepoint && udp {
            use_stand_in(None)
        } else if caps.kprobe && k.r#return {
            Ok((Mechanism::Kretprobe(k.call.clone()), None))
        } else if caps.kprobe {
            Ok((Mechanism::Kprobe(k.call.clone()), None))
        } else if caps.fentry && !k.r#return {
            Ok((
                Mechanism::Fentry(k.call.clone()),
                Some("kprobes are not available".to_string()),
            ))
        } else if let (true, Some(name)) = (caps.tracepoint, syscall_name) {
            Ok((
                Mechanism::SyscallEnter(name),
                Some("neither kprobes nor fentry are available".to_string()),
            ))
        } else if caps.tracepoint && stands_in.is_some() {
            use_stand_in(Some("neither kprobes nor fentry are available".to_string()))
        } else {
            Err(format!(
                "{}{} needs a kprobe, and this kernel allows none; only system calls (`syscall: true`), the entry of tcp_connect, tcp_close, inet_csk_listen_start, udp_sendmsg and udp_recvmsg and the return of inet_csk_accept fall back to tracepoints",
                k.call,
                if k.r#return { "'s return" } else { "" }
            ))
        };
        push(
            &mut plans,
            &mut errors,
            path,
            k.call.clone(),
            mechanism,
            want,
            caps,
            monitor,
        );
    }
    for (i, t) in policy.spec.tracepoints.iter().enumerate() {
        let path = format!("spec.tracepoints[{i}]");
        let want = requested(&t.selectors);
        let mechanism = if caps.tracepoint {
            Ok((
                Mechanism::Tracepoint(t.subsystem.clone(), t.event.clone()),
                None,
            ))
        } else {
            Err("this kernel does not attach tracepoints".to_string())
        };
        push(
            &mut plans,
            &mut errors,
            path,
            format!("{}/{}", t.subsystem, t.event),
            mechanism,
            want,
            caps,
            monitor,
        );
    }
    if errors.is_empty() {
        Ok(plans)
    } else {
        Err(errors)
    }
}

#[allow(clippy::too_many_arguments)]
fn push(
    plans: &mut Vec<HookPlan>,
    errors: &mut Vec<PlanError>,
    path: String,
    hook: String,
    mechanism: Result<(Mechanism, Option<String>), String>,
    requested: Enforcement,
    caps: &KernelCaps,
    monitor: bool,
) {
    let (mechanism, fallback_reason) = match mechanism {
        Ok(m) => m,
        Err(reason) => return errors.push(PlanError { path, reason }),
    };
    let (enforcement, guarantee) = match (monitor, requested, &mechanism) {
        (true, _, _) | (false, Enforcement::None, _) => (Enforcement::None, Guarantee::ObservedOnly),
        (false, Enforcement::Deny(e), Mechanism::Lsm(_)) => (Enforcement::Deny(e), Guarantee::DeniedBeforeEffect),
        (false, Enforcement::Kill, Mechanism::Lsm(_)) => (Enforcement::Kill, Guarantee::DeniedBeforeEffect),
        (false, Enforcement::Deny(e), Mechanism::Kprobe(_)) if caps.override_return => {
            (Enforcement::Deny(e), Guarantee::DeniedBeforeEffect)
        }
        (false, Enforcement::Signal(s), _) if caps.send_signal => (Enforcement::Signal(s), Guarantee::SignalledOnReturn),
        // A kill decided on entry to a call (a generic kprobe, a system call's enter tracepoint)
        // lands when the call returns; only the file-open evaluator decides on the result.
        (false, Enforcement::Deny(_) | Enforcement::Kill, Mechanism::SyscallEnter(_) | Mechanism::SockState(_))
            if caps.send_signal =>
        {
            (Enforcement::Kill, Guarantee::KilledOnReturn)
        }
        (
            false,
            Enforcement::Deny(_) | Enforcement::Kill,
            Mechanism::Kprobe(f) | Mechanism::Kretprobe(f) | Mechanism::Fentry(f),
        )
            if caps.send_signal && f != "security_file_open" =>
        {
            (Enforcement::Kill, Guarantee::KilledOnReturn)
        }
        (false, Enforcement::Deny(_) | Enforcement::Kill, _) if caps.send_signal => {
            (Enforcement::Kill, Guarantee::KilledBeforeReturn)
        }
        (false, _, _) => {
            return errors.push(PlanError {
                path,
                reason: format!(
                    "{hook}: the policy enforces, but this kernel can neither deny ({}) nor send signals from eBPF",
                    describe_mechanism(&mechanism)
                ),
            })
        }
    };
    plans.push(HookPlan {
        path,
        hook,
        mechanism,
        requested,
        enforcement,
        guarantee,
        fallback_reason,
    });
}

/// The mechanism in words.
pub fn describe_mechanism(m: &Mechanism) -> String {
    match m {
        Mechanism::Lsm(h) => format!("BPF LSM on {h}"),
        Mechanism::Kprobe(f) => format!("kprobe on {f}"),
        Mechanism::Kretprobe(f) => format!("kretprobe on {f}"),
        Mechanism::Fentry(f) => format!("fentry on {f}"),
        Mechanism::SyscallTracepoints(calls) => format!(
            "system call tracepoints {} (matching on the file the kernel resolved)",
            calls
                .iter()
                .map(|c| format!("sys_exit_{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Mechanism::SyscallEnter(c) => format!("system call tracepoint sys_enter_{c}"),
        Mechanism::SockState(f) => format!(
            "for {f}, {}",
            SOCK_STATE_FUNCTIONS
                .iter()
                .find(|(n, _)| n == f)
                .map_or("", |(_, what)| what)
        ),
        Mechanism::Tracepoint(s, e) => format!("tracepoint {s}/{e}"),
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
    use crate::load_policy;

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
        lsm: true,
        kprobe: true,
        fentry: true,
        tracepoint: true,
        send_signal: true,
        override_return: false,
    };
    const NONE: KernelCaps = KernelCaps {
        lsm: false,
        kprobe: false,
        fentry: false,
        tracepoint: false,
        send_signal: false,
        override_return: false,
    };

    #[test]
    fn bpf_lsm_denies_before_the_effect() {
        let p = load_policy("p.yaml", DENY_PASSWD).unwrap();
        let plans = plan(&p, &VM).unwrap();
        assert_eq!(plans[0].mechanism, Mechanism::Lsm("file_open".into()));
        assert_eq!(plans[0].enforcement, Enforcement::Deny(-1));
        assert_eq!(plans[0].guarantee, Guarantee::DeniedBeforeEffect);
        assert_eq!(plans[1].mechanism, Mechanism::Kprobe("tcp_connect".into()));
        assert_eq!(plans[1].guarantee, Guarantee::ObservedOnly);
    }

    #[test]
    fn without_lsm_or_kprobes_file_open_falls_back_to_syscalls_with_sigkill() {
        let text = DENY_PASSWD.split("  kprobes:").next().unwrap();
        let p = load_policy("p.yaml", text).unwrap();
        let plans = plan(&p, &HOST).unwrap();
        assert_eq!(
            plans[0].mechanism,
            Mechanism::SyscallTracepoints(vec![
                "openat".into(),
                "openat2".into(),
                "open".into(),
                "creat".into()
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
        let p = load_policy("p.yaml", &text).unwrap();
        let errors = plan(&p, &HOST).unwrap_err();
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
        let p = load_policy("p.yaml", DENY_PASSWD).unwrap();
        let plans = plan(&p, &HOST).unwrap();
        assert_eq!(
            plans[1].mechanism,
            Mechanism::SockState("tcp_connect".into())
        );
        assert!(describe_mechanism(&plans[1].mechanism).contains("sys_exit_connect"));
        // inet_csk_accept stands in only for its return.
        let accept = DENY_PASSWD.replace("tcp_connect", "inet_csk_accept");
        let errors = plan(&load_policy("p.yaml", &accept).unwrap(), &HOST).unwrap_err();
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
        let p = load_policy("p.yaml", &text).unwrap();
        let plans = plan(&p, &VM).unwrap();
        assert_eq!(plans[0].requested, Enforcement::Deny(-1));
        assert_eq!(plans[0].enforcement, Enforcement::None);
        assert_eq!(plans[0].guarantee, Guarantee::ObservedOnly);
    }

    #[test]
    fn enforcing_without_any_way_to_enforce_is_refused() {
        let text = DENY_PASSWD.split("  kprobes:").next().unwrap();
        let p = load_policy("p.yaml", text).unwrap();
        let caps = KernelCaps {
            tracepoint: true,
            ..NONE
        };
        let errors = plan(&p, &caps).unwrap_err();
        assert!(
            errors[0].reason.contains("can neither deny"),
            "{}",
            errors[0].reason
        );
    }
}
