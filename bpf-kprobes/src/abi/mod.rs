//! `#[repr(C)]` mirrors of `vigil_events.h` and the decoder for ring-buffer records.
//!
//! A record is a header plus a struct chosen by `kind`; exec records carry their strings after
//! the fixed part. [`Record::parse`] (in `record.rs`) checks every length and count against the
//! record's real size, so a corrupt or truncated record is an error, never an out-of-bounds read.

/// `VIGIL_EVENT_EXEC`.
pub const EVENT_EXEC: u32 = 1;
/// `VIGIL_EVENT_FORK`.
pub const EVENT_FORK: u32 = 2;
/// `VIGIL_EVENT_EXIT`.
pub const EVENT_EXIT: u32 = 3;
/// `VIGIL_EVENT_POLICY`.
pub const EVENT_POLICY: u32 = 4;
/// `VIGIL_EVENT_HOOK`.
pub const EVENT_HOOK: u32 = 5;

mod flow;
mod limits;
mod policy;
mod record;
pub use flow::*;
pub use limits::*;
pub use policy::*;
pub use record::*;

/// Bytes kept of a binary path or cwd (NUL included, as `PATH_MAX`).
pub const PATH_MAX: usize = 4096;
/// Bytes kept of argv, plus one.
pub const ARGS_MAX: usize = 4096;
/// Bytes kept of a cgroup path.
pub const CGROUP_MAX: usize = 512;
/// Number of namespaces in [`Process::ns`].
pub const NS_COUNT: usize = 10;
/// Slots of the per-CPU drop counter map, indexed by event kind.
pub const DROP_SLOTS: usize = 8;
/// `vigil_config.cgroup_subsys` value that selects the cgroup v2 hierarchy.
pub const CGROUP_V2: u32 = u32::MAX;

/// Binary path was truncated.
pub const FLAG_TRUNC_FILENAME: u32 = 1 << 0;
/// argv was truncated to [`ARGS_MAX`] - 1 bytes.
pub const FLAG_TRUNC_ARGS: u32 = 1 << 1;
/// The cwd could not be read.
pub const FLAG_ERROR_CWD: u32 = 1 << 2;
/// The cwd was truncated.
pub const FLAG_TRUNC_CWD: u32 = 1 << 3;
/// argv could not be read.
pub const FLAG_ERROR_ARGS: u32 = 1 << 4;
/// The cgroup path was truncated.
pub const FLAG_TRUNC_CGROUP: u32 = 1 << 5;

/// Index of each namespace in [`Process::ns`], as `enum vigil_ns_index`.
#[allow(missing_docs)]
pub mod ns {
    pub const UTS: usize = 0;
    pub const IPC: usize = 1;
    pub const MNT: usize = 2;
    pub const PID: usize = 3;
    pub const PID_FOR_CHILDREN: usize = 4;
    pub const NET: usize = 5;
    pub const TIME: usize = 6;
    pub const CGROUP: usize = 7;
    pub const USER: usize = 8;
    pub const TIME_FOR_CHILDREN: usize = 9;
}

/// `struct vigil_event_header`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EventHeader {
    /// Event kind, `EVENT_*`.
    pub kind: u32,
    /// Bytes of the whole record.
    pub size: u32,
    /// Boot-time clock at the event, nanoseconds.
    pub ktime: u64,
}

/// `struct vigil_process`: a task's identity at the moment of the event.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct Process {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub nspid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub suid: u32,
    pub sgid: u32,
    pub fsuid: u32,
    pub fsgid: u32,
    pub auid: u32,
    pub flags: u32,
    pub cap_effective: u64,
    pub cap_permitted: u64,
    pub cap_inheritable: u64,
    pub ns: [u32; NS_COUNT],
    pub cgroup_id: u64,
    pub start_ktime: u64,
    pub comm: [u8; 16],
}

/// `struct vigil_exec_event`, the fixed part of an exec record.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct ExecEvent {
    pub hdr: EventHeader,
    pub proc: Process,
    pub binary_len: u16,
    pub args_len: u16,
    pub cwd_len: u16,
    pub cgroup_len: u16,
    pub args_total: u32,
    pub _pad0: u32,
}

/// `struct vigil_fork_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct ForkEvent {
    pub hdr: EventHeader,
    pub proc: Process,
}

/// `struct vigil_exit_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct ExitEvent {
    pub hdr: EventHeader,
    pub pid: u32,
    pub tid: u32,
    pub exit_code: u32,
    pub _pad0: u32,
}

/// `struct vigil_inode_key`: a file by its superblock's device (the kernel's encoding,
/// `major << 20 | minor`) and inode number.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InodeKey {
    /// The inode number.
    pub ino: u64,
    /// The device, as the kernel's `s_dev`.
    pub dev: u32,
    #[allow(missing_docs)]
    pub _pad0: u32,
}

/// `struct vigil_fmod_verdict`: a file-open denial fentry leaves for the fmod_ret program.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FmodVerdict {
    /// The `struct file *` judged.
    pub file: u64,
    /// The errno to return, negative.
    pub verdict: i64,
}

/// Offsets the hand-assembled fmod_ret program reads in an [`FmodVerdict`].
pub const FMOD_VERDICT_FILE: i16 = std::mem::offset_of!(FmodVerdict, file) as i16;
/// See [`FMOD_VERDICT_FILE`].
pub const FMOD_VERDICT_ERRNO: i16 = std::mem::offset_of!(FmodVerdict, verdict) as i16;

/// `struct vigil_config`, written by the agent into `vigil_config_map` before attaching.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// cgroup v1 subsystem id whose path is reported, or [`CGROUP_V2`].
    pub cgroup_subsys: u32,
    /// The agent's own process: generic hooks ignore its calls.
    pub agent_tgid: u32,
    /// Non-zero once the agent stops: no policy acts any more.
    pub stopping: u32,
    /// Padding.
    pub _pad0: u32,
    /// The agent's start in clock ticks since boot: with `agent_tgid` it names the agent, so
    /// a process reusing a dead agent's pid is not taken for it.
    pub agent_start_ticks: u64,
    /// Nanoseconds per clock tick.
    pub tick_ns: u64,
    /// Ring-buffer drops the agent had read and reported.
    pub drops_seen: u64,
    /// A next agent, exempt like this one until it retires this generation.
    pub successor_tgid: u32,
    /// Padding.
    pub _pad1: u32,
    /// The next agent's start in clock ticks since boot.
    pub successor_start_ticks: u64,
}

#[cfg(test)]
mod layout_tests {
    use super::*;
    use std::mem::offset_of;

    include!(concat!(env!("OUT_DIR"), "/abi_layout.rs"));

    fn rust_layout(s: &str, f: &str) -> Option<usize> {
        // C names that are Rust keywords, or a union member the mirror stores as bytes.
        match (s, f) {
            ("vigil_sock_value", "type") => return Some(offset_of!(SockValue, r#type)),
            ("vigil_arg_value", "type") => return Some(offset_of!(ArgValue, r#type)),
            ("vigil_arg_value", "int_value") => return Some(offset_of!(ArgValue, value)),
            // What stands for a socket function: its code, by the function's name.
            ("VIGIL_SOCK_STATE", call) => {
                return STAND_INS
                    .iter()
                    .find(|s| s.call == call)
                    .map(|s| s.code as usize)
            }
            _ => {}
        }
        macro_rules! table {
            ($( $cs:literal => $ty:ty { $($field:ident),* } )*) => {
                match (s, f) {
                    $(
                        ($cs, "") => Some(size_of::<$ty>()),
                        $( ($cs, stringify!($field)) => Some(offset_of!($ty, $field)), )*
                    )*
                    ("VIGIL_PATH_MAX", _) => Some(PATH_MAX),
                    ("VIGIL_ARGS_MAX", _) => Some(ARGS_MAX),
                    ("VIGIL_CGROUP_MAX", _) => Some(CGROUP_MAX),
                    ("VIGIL_NS_COUNT", _) => Some(NS_COUNT),
                    ("VIGIL_DROP_SLOTS", _) => Some(DROP_SLOTS),
                    ("VIGIL_EVENT_EXEC", _) => Some(EVENT_EXEC as usize),
                    ("VIGIL_EVENT_FORK", _) => Some(EVENT_FORK as usize),
                    ("VIGIL_EVENT_EXIT", _) => Some(EVENT_EXIT as usize),
                    ("VIGIL_EVENT_POLICY", _) => Some(EVENT_POLICY as usize),
                    ("VIGIL_MAX_RULES", _) => Some(MAX_RULES),
                    ("VIGIL_MATCH_LEN", _) => Some(MATCH_LEN),
                    ("VIGIL_LPM_DATA", _) => Some(LPM_DATA),
                    ("VIGIL_MATCH_MAX", _) => Some(MATCH_MAX),
                    ("VIGIL_NAME_LEN", _) => Some(NAME_LEN),
                    ("VIGIL_EVENT_HOOK", _) => Some(EVENT_HOOK as usize),
                    ("VIGIL_EVENT_FLOW", _) => Some(EVENT_FLOW as usize),
                    ("VIGIL_ROUTE_DEVICE", _) => Some(route::DEVICE as usize),
                    ("VIGIL_ROUTE_USER", _) => Some(route::USER as usize),
                    ("VIGIL_ROUTE_UPPER", _) => Some(route::UPPER as usize),
                    ("VIGIL_FLOW_CFG_XFRM", _) => Some(FLOW_CFG_XFRM as usize),
                    ("VIGIL_ENC_LOCAL", _) => Some(enc::LOCAL as usize),
                    ("VIGIL_EVIDENCE_XFRM", _) => Some(evidence::XFRM as usize),
                    ("VIGIL_HOOK_ARGS", _) => Some(HOOK_ARGS),
                    ("VIGIL_HOOKS_PER_KEY", _) => Some(HOOKS_PER_KEY),
                    ("VIGIL_HOOK_SLOTS", _) => Some(HOOK_SLOTS),
                    ("VIGIL_HOOK_KEYS", _) => Some(HOOK_KEYS),
                    ("VIGIL_CLASS_LISTS", _) => Some(CLASS_LISTS),
                    ("VIGIL_CLASS_CGROUPS", _) => Some(CLASS_CGROUPS),
                    ("VIGIL_LIST_SCOPED", _) => Some(LIST_SCOPED as usize),
                    ("VIGIL_LIST_SYSCALL_REGS", _) => Some(LIST_SYSCALL_REGS as usize),
                    ("VIGIL_HOOK_RULES", _) => Some(HOOK_RULES),
                    ("VIGIL_HOOK_CONDS", _) => Some(HOOK_CONDS),
                    ("VIGIL_HOOK_NO_RULE", _) => Some(HOOK_NO_RULE as usize),
                    ("VIGIL_PART_NS", _) => Some(PART_NS as usize),
                    ("VIGIL_PART_PIDS", _) => Some(PART_PIDS as usize),
                    ("VIGIL_PART_BINARY", _) => Some(PART_BINARY as usize),
                    ("VIGIL_OP_FAMILY", _) => Some(op::FAMILY as usize),
                    ("VIGIL_OP_STATE", _) => Some(op::STATE as usize),
                    ("VIGIL_ARG_CRED", _) => Some(ARG_CRED as usize),
                    ("VIGIL_ARG_CAP", _) => Some(ARG_CAP as usize),
                    ("VIGIL_ARG_SKB", _) => Some(ARG_SKB as usize),
                    ("VIGIL_ARG_DENTRY", _) => Some(ARG_DENTRY as usize),
                    ("VIGIL_ARG_KIOCB", _) => Some(ARG_KIOCB as usize),
                    ("VIGIL_ARG_IOV", _) => Some(ARG_IOV as usize),
                    ("VIGIL_ARG_BPF_ATTR", _) => Some(ARG_BPF_ATTR as usize),
                    ("VIGIL_ARG_BPF_MAP", _) => Some(ARG_BPF_MAP as usize),
                    ("VIGIL_ARG_PERF_EVENT", _) => Some(ARG_PERF_EVENT as usize),
                    ("VIGIL_ARG_MODULE", _) => Some(ARG_MODULE as usize),
                    ("VIGIL_ARG_LOAD_INFO", _) => Some(ARG_LOAD_INFO as usize),
                    ("VIGIL_ARG_BINPRM", _) => Some(ARG_BINPRM as usize),
                    ("VIGIL_TP_SLOTS", _) => Some(TP_SLOTS),
                    ("VIGIL_SOCK_TRACK", _) => Some(SOCK_TRACK as usize),
                    ("VIGIL_SOCK_UNTRACK", _) => Some(SOCK_UNTRACK as usize),
                    ("VIGIL_HOOK_TRACK_RETURN", _) => Some(HOOK_TRACK_RETURN as usize),
                    ("VIGIL_HOOK_UNTRACK_RETURN", _) => Some(HOOK_UNTRACK_RETURN as usize),
                    ("VIGIL_ARG_CONST", _) => Some(ARG_CONST as usize),
                    ("VIGIL_ARG_AT_PATH", _) => Some(ARG_AT_PATH as usize),
                    ("VIGIL_AT_CWD", _) => Some(AT_CWD as usize),
                    ("VIGIL_INT_VALUES", _) => Some(INT_VALUES),
                    ("VIGIL_NET_VALUES", _) => Some(NET_VALUES),
                    ("VIGIL_STR_VALUES", _) => Some(STR_VALUES),
                    ("VIGIL_FILE_OPEN_HOOKS", _) => Some(FILE_OPEN_HOOKS),
                    ("VIGIL_NAMES", _) => Some(NAMES),
                    ("VIGIL_SCOPE_ENTRIES", _) => Some(SCOPE_ENTRIES),
                    ("VIGIL_SCOPES", _) => Some(SCOPES),
                    _ => None,
                }
            };
        }
        table! {
            "vigil_event_header" => EventHeader { kind, size, ktime }
            "vigil_process" => Process { pid, tid, ppid, nspid, uid, gid, euid, egid, suid, sgid,
                fsuid, fsgid, auid, flags, cap_effective, cap_permitted, cap_inheritable, ns,
                cgroup_id, start_ktime, comm }
            "vigil_exec_event" => ExecEvent { hdr, proc, binary_len, args_len, cwd_len,
                cgroup_len, args_total }
            "vigil_fork_event" => ForkEvent { hdr, proc }
            "vigil_exit_event" => ExitEvent { hdr, pid, tid, exit_code }
            "vigil_rule" => Rule { flags, policy_id, hook, action, arg, scope }
            "vigil_scope_key" => ScopeKey { cgroup, scope }
            "vigil_class_list_key" => ClassListKey { key, cls }
            "vigil_class_memo" => ClassMemo { cgroup, value }
            "vigil_policy_event" => PolicyEvent { hdr, pid, tid, rule, hook, action, arg, flags, path_len,
                mode }
            "vigil_fmod_verdict" => FmodVerdict { file, verdict }
            "vigil_inode_key" => InodeKey { ino, dev }
            "vigil_config" => Config { cgroup_subsys, agent_tgid, stopping, agent_start_ticks, tick_ns, drops_seen,
                successor_tgid, successor_start_ticks }
            "vigil_hook_config" => HookConfig { hook_id, flags, arg_reg, arg_type, arg_flags,
                arg_bits, nargs, scope, rule_first, rule_count, konst }
            "vigil_hook_list" => HookList { n, slot, flags, gate_reg, gate_type, gate_ops, gate_key,
                gate_generation, gate_mask_reg, gate_mask }
            "vigil_hook_cond" => HookCond { arg, op, negate, value }
            "vigil_hook_rule" => HookRule { flags, policy_id, action, arg, nconds, pid_flags,
                ns_in, ns_not_in, cap_set, cap_not, sock_action, sock_arg, generation, cap_mask,
                conds }
            "vigil_sock_value" => SockValue { family, protocol, sport, dport, state, route, netns, saddr,
                daddr, bytes_sent, bytes_received, cookie, route_ifindex, route_spi }
            "vigil_flow_key" => FlowKey { saddr, daddr, sport, dport, family, protocol }
            "vigil_flow_verdict" => FlowVerdict { mode, evidence, route, flags, ifindex, spi, reqid,
                range, outer_family, outer_daddr, ifname }
            "vigil_flow_event" => FlowEvent { hdr, key, verdict, sock, dev_netns }
            "vigil_flow_range_key" => FlowRangeKey { prefixlen, addr }
            "vigil_flow_config" => FlowConfig { node_netns, flags, first_v4, first_v6 }
            "vigil_file_value" => FileValue { cut, mode }
            "vigil_kobj_value" => KobjValue { n, name }
            "vigil_tp_field" => TpField { off, kind, size }
            "vigil_tp_fields" => TpFields { f }
            "vigil_skb_value" => SkbValue { family, protocol, sport, dport, saddr, daddr, hash,
                len, priority, mark }
            "vigil_cred_value" => CredValue { uid, gid, euid, egid, suid, sgid, fsuid, fsgid,
                securebits, ns_level, ns_uid, ns_gid, ns_inum, cap_permitted, cap_effective,
                cap_inheritable }
            "vigil_arg_value" => ArgValue { value }
            "vigil_hook_event" => HookEvent { hdr, pid, tid, hook_id, nargs, rule, action,
                action_arg, flags, args, str_len, key }
            "vigil_policy_state" => PolicyState { prefilter, rule_end, bin_scoped }
        }
    }

    #[test]
    fn rust_mirrors_match_the_c_header() {
        let mut mismatches = Vec::new();
        for &(s, f, c) in C_LAYOUT {
            match rust_layout(s, f) {
                Some(r) if r == c => {}
                r => mismatches.push(format!("{s}.{f}: C says {c}, Rust says {r:?}")),
            }
        }
        assert!(
            mismatches.is_empty(),
            "ABI drift:\n{}",
            mismatches.join("\n")
        );
        assert!(C_LAYOUT.len() > 40, "the layout probe printed too little");
    }

    /// Gates are applied by the system call entries' programs and the kprobe on a function's
    /// entry alone, and their value keys never meet: each comparison bit lands on bits 16 to
    /// 18, clear in every gate key.
    #[test]
    fn kprobe_entries_are_told_from_other_lists_and_their_gates_from_the_system_calls() {
        let addr = 0xffff_ffff_8123_4560;
        for key in kprobe_keys(addr, false) {
            assert!(is_kprobe_entry_key(key), "{key:#x}");
        }
        for key in kprobe_keys(addr, true) {
            assert!(!is_kprobe_entry_key(key), "a return's {key:#x}");
        }
        for key in [
            HOOK_KEY_SYSCALL | 1,
            HOOK_KEY_SOCK_STATE | 1,
            HOOK_KEY_UPROBE | 7,
            HOOK_KEY_UPROBE | HOOK_KEY_UPROBE_RETURN | 7,
            HOOK_KEY_TP | 3,
            HOOK_KEY_RAW_TP | 3,
        ] {
            assert!(!is_kprobe_entry_key(key), "{key:#x}");
        }
        let ops = [GATE_EQ, GATE_PREFIX, GATE_POSTFIX];
        let syscalls: Vec<u32> = [0, 1, 0xffff]
            .iter()
            .flat_map(|&nr| ops.map(|op| gate_value_key(gate_key(nr), op)))
            .collect();
        for n in [0, 1, u16::MAX] {
            for op in ops {
                let k = gate_value_key(kprobe_gate_key(n), op);
                assert!(!syscalls.contains(&k), "{k:#x}");
                assert_eq!(k & !(0x7 << 16), kprobe_gate_key(n), "{k:#x}");
            }
        }
    }

    #[test]
    fn a_hook_on_a_function_s_return_is_listed_apart_from_one_on_its_entry() {
        // A kernel text address, as kallsyms and bpf_get_func_ip give it.
        let addr = 0xffff_ffff_8123_4560;
        let entry = kprobe_keys(addr, false);
        let ret = kprobe_keys(addr, true);
        assert_eq!(entry, [addr, addr + 4]);
        assert!(
            entry.iter().all(|k| !ret.contains(k)),
            "{entry:x?} {ret:x?}"
        );
        for k in ret.iter().chain(&entry) {
            assert!(
                k & HOOK_KEY_SYSCALL != 0 && k & HOOK_KEY_SOCK_STATE != 0,
                "{k:x}"
            );
            // Not a system call's key: no gate is written for it.
            assert_eq!(syscall_of_key(*k), None, "{k:x}");
        }
        assert_eq!(syscall_of_key(HOOK_KEY_SYSCALL | 257), Some(257));
    }

    #[test]
    fn syscall_numbers_come_from_the_uapi_header() {
        assert_eq!(syscall_nr("sys_setuid"), Some(105));
        assert_eq!(syscall_nr("openat"), Some(257));
        assert_eq!(syscall_nr("sys_no_such_call"), None);
    }
}
