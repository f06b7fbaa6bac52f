//! What the kernel side can hold, and what stands for the socket functions where no kprobe
//! serves them: the one definition of each. `vigil_events.h` states the same numbers for the
//! programs, and the layout test compares the two; policy-engine refuses a policy that needs
//! more than these hold, so nothing is ever cut to fit when a policy is written into maps.

/// File-open rules the kernel walks (`VIGIL_MAX_RULES`): one rule per selector of a file-open
/// hook, over every loaded policy.
pub const MAX_RULES: usize = 64;
/// Generic hooks over every loaded policy (`VIGIL_HOOK_SLOTS`, `vigil_hook_configs`).
pub const HOOK_SLOTS: usize = 4096;
/// Attach points with hooks of policies for every process (`VIGIL_HOOK_KEYS`, `vigil_hooks`).
pub const HOOK_KEYS: usize = 4096;
/// Lists of scoped policies' hooks, one per attach point and caller class that has some
/// (`VIGIL_CLASS_LISTS`, `vigil_class_hooks`).
pub const CLASS_LISTS: usize = 16_384;
/// File-open hooks over every loaded policy: each is a first-match group, a bit of the
/// evaluator's 32-bit mask (`vigil_rule.policy_id`).
pub const FILE_OPEN_HOOKS: usize = 32;
/// File names in the open prefilter (`VIGIL_NAMES`, `vigil_names`): the last components of
/// every Equal path value of file-open hooks.
pub const NAMES: usize = 4096;
/// Selectors of generic hooks over every loaded policy (`VIGIL_HOOK_RULES`).
pub const HOOK_RULES: usize = 16_384;
/// Argument conditions per selector of a generic hook (`VIGIL_HOOK_CONDS`).
pub const HOOK_CONDS: usize = 8;
/// Arguments a hook reads: the calling convention's registers (`VIGIL_HOOK_ARGS`).
pub const HOOK_ARGS: usize = 5;
/// Hooks one list holds (`VIGIL_HOOKS_PER_KEY`): those of policies for every process on one
/// attach point, or those of scoped policies on one attach point for one caller class. A call
/// runs at most two lists, so at most twice this many hooks apply to one caller there.
pub const HOOKS_PER_KEY: usize = 256;
/// Hooks of scoped policies on one function: those of one namespace's policies, and those of
/// the cluster-wide scoped ones, each. A pod's class list holds its namespace's and the
/// cluster-wide ones, so it never outgrows [`HOOKS_PER_KEY`], with room for a policy's
/// replacement beside it.
pub const SCOPED_HOOKS_PER_KEY: usize = 120;
/// Longest string, path or binary value a filter compares (`VIGIL_MATCH_MAX`): an LPM key's
/// 256 bytes less the rule id and the terminating byte.
pub const MATCH_MAX: usize = 251;
/// Integer values of every selector together (`VIGIL_INT_VALUES`, `vigil_hook_values`).
pub const INT_VALUES: usize = 65_536;
/// Networks of every selector together (`VIGIL_NET_VALUES`, `vigil_hook_cidrs`).
pub const NET_VALUES: usize = 16_384;
/// String, path and binary values per kind of comparison, of every selector together
/// (`VIGIL_STR_VALUES`: each of the exact, prefix and postfix maps).
pub const STR_VALUES: usize = 16_384;

/// What stands for a socket function, in the calling process's context (sock_hooks.bpf.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandIn {
    /// The kernel function a policy names.
    pub call: &'static str,
    /// `enum vigil_sock_state`: with [`super::HOOK_KEY_SOCK_STATE`], the hook's key.
    pub code: u64,
    /// It stands for the function's return (a policy's `return: true`), not its entry.
    pub on_return: bool,
    /// Used on every kernel, kprobes or not: a kprobe on the UDP functions would see an
    /// unconnected socket without its peer (only the system call knows it) and the datagram
    /// inside the kernel's iterators. The TCP ones serve only where kprobes are not available.
    pub everywhere: bool,
    /// The argument positions it carries: the socket, and for UDP the datagram and its length.
    pub args: &'static [u32],
    /// What it is, for `vigil policy explain`.
    pub what: &'static str,
}

/// Every stand-in.
pub const STAND_INS: [StandIn; 6] = [
    StandIn {
        call: "tcp_connect",
        code: 1,
        on_return: false,
        everywhere: false,
        args: &[0],
        what: "the return from connect() on a TCP socket that sent its SYN, tracepoint syscalls/sys_exit_connect",
    },
    StandIn {
        call: "tcp_close",
        code: 2,
        on_return: false,
        everywhere: false,
        args: &[0],
        what: "the TCP state change from ESTABLISHED to FIN_WAIT1 or CLOSE_WAIT to LAST_ACK in close() or shutdown(), tracepoint sock/inet_sock_set_state",
    },
    StandIn {
        call: "inet_csk_listen_start",
        code: 3,
        on_return: false,
        everywhere: false,
        args: &[0],
        what: "the TCP state change to LISTEN in listen(), tracepoint sock/inet_sock_set_state",
    },
    StandIn {
        call: "inet_csk_accept",
        code: 4,
        on_return: true,
        everywhere: false,
        args: &[0],
        what: "the return from accept() or accept4() with a TCP socket, its descriptor resolved to the socket, tracepoints syscalls/sys_exit_accept and sys_exit_accept4",
    },
    StandIn {
        call: "udp_sendmsg",
        code: 5,
        on_return: false,
        everywhere: true,
        args: &[0, 1, 2],
        what: "the return from sendto(), sendmsg() or sendmmsg() that sent on a UDP socket, or the entry to write() on a connected one, tracepoints syscalls/sys_exit_send* and sys_enter_write",
    },
    StandIn {
        call: "udp_recvmsg",
        code: 6,
        on_return: false,
        everywhere: true,
        args: &[0, 1, 2],
        what: "the return from recvfrom(), recvmsg() or recvmmsg() that received on a UDP socket, tracepoints syscalls/sys_exit_recv*, or a read() on a connected one, tracepoint sock/sock_recv_length (before 6.3: syscalls/sys_exit_read)",
    },
];

/// What stands for `call` (its return if `returns`), if anything does.
pub fn stand_in(call: &str, returns: bool) -> Option<&'static StandIn> {
    STAND_INS
        .iter()
        .find(|s| s.call == call && s.on_return == returns)
}

/// Pod cgroups over every scope (`VIGIL_SCOPE_ENTRIES`): one per pod a scoped policy selects.
pub const SCOPE_ENTRIES: usize = 65_536;
/// Scope ids, 1 to `SCOPES - 1` (`VIGIL_SCOPES`; 0 is "every process").
pub const SCOPES: usize = 4096;
/// Scoped pods' and containers' cgroups with a caller class (`VIGIL_CLASS_CGROUPS`).
pub const CLASS_CGROUPS: usize = 65_536;
