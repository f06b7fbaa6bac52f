//! Mirrors of the policy half of `vigil_events.h`: compiled file-open rules and their keys,
//! policy records, generic hooks and their records.

use super::{EventHeader, HOOKS_PER_KEY, HOOK_ARGS, HOOK_CONDS, MATCH_MAX};

/// `VIGIL_HOOK_KEY_SOCK_STATE`: keys of hooks served by TCP state changes in `vigil_hooks`,
/// with the stand-in's code ([`StandIn::code`]).
pub const HOOK_KEY_SOCK_STATE: u64 = 1 << 62;
/// `VIGIL_HOOK_KEY_RETURN`: flipped in a function's address, the key of a hook on its return
/// (see [`kprobe_keys`]).
pub const HOOK_KEY_RETURN: u64 = 1 << 61;

/// The `vigil_hooks` keys of a hook on the function at `addr`, on its entry or (`returns`) its
/// return: the kprobe sits on the function's first instruction, or after its endbr64 where the
/// kernel has indirect branch tracking, and `bpf_get_func_ip` reports whichever it is. A return
/// key flips [`HOOK_KEY_RETURN`]: a kernel address has that bit set already, so OR-ing it in
/// would give the entry's key.
pub fn kprobe_keys(addr: u64, returns: bool) -> [u64; 2] {
    let flip = if returns { HOOK_KEY_RETURN } else { 0 };
    [addr ^ flip, (addr + 4) ^ flip]
}

/// `VIGIL_HOOK_KEY_UPROBE`: keys of uprobe hooks in `vigil_hooks` (bits 63 to 61 clear, so no
/// kernel address, system call or stand-in key is one); the uprobe's program reads its key as
/// its attach cookie.
pub const HOOK_KEY_UPROBE: u64 = 1 << 60;
/// Set in a uprobe key for a hook on the function's return.
pub const HOOK_KEY_UPROBE_RETURN: u64 = 1 << 59;

/// The `vigil_hooks` key of the uprobes on `symbol` + `offset` of `file`, on its entry or
/// (`returns`) its return: a 59-bit FNV-1a hash of the place, so that every hook on one place
/// shares one attachment and two places share none (a collision needs about 2^29 places).
pub fn uprobe_key(file: &str, symbol: &str, offset: u64, returns: bool) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let offset = offset.to_le_bytes();
    let bytes = file
        .as_bytes()
        .iter()
        .chain(&[0])
        .chain(symbol.as_bytes())
        .chain(&[0])
        .chain(&offset);
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let ret = if returns { HOOK_KEY_UPROBE_RETURN } else { 0 };
    HOOK_KEY_UPROBE | ret | (h & (HOOK_KEY_UPROBE_RETURN - 1))
}

/// `VIGIL_HOOK_KEY_SYSCALL`: keys of syscall hooks in `vigil_hooks`.
pub const HOOK_KEY_SYSCALL: u64 = 1 << 63;
/// `VIGIL_HOOK_SYSCALL`: the hook is a syscall wrapper.
pub const HOOK_SYSCALL: u32 = 1;
/// `VIGIL_HOOK_TRACK_RETURN`: on a match, the socket the function returned is the event's
/// process's (`returnArgAction: TrackSock`).
pub const HOOK_TRACK_RETURN: u32 = 1 << 1;
/// `VIGIL_HOOK_UNTRACK_RETURN`: `returnArgAction: UntrackSock`.
pub const HOOK_UNTRACK_RETURN: u32 = 1 << 2;
/// `VIGIL_SOCK_TRACK`: [`HookRule::sock_action`] TrackSock.
pub const SOCK_TRACK: u8 = 1;
/// `VIGIL_SOCK_UNTRACK`: [`HookRule::sock_action`] UntrackSock.
pub const SOCK_UNTRACK: u8 = 2;
/// `VIGIL_HOOK_RETURN_REG`: the register slot a hook on a return that also reads the
/// arguments kept at the entry reads the return value from.
pub const HOOK_RETURN_REG: u8 = 6;
/// `enum vigil_arg_type`.
pub const ARG_INT: u32 = 1;
/// `VIGIL_ARG_SOCK`: a `struct sock *`.
pub const ARG_SOCK: u32 = 2;
/// `VIGIL_ARG_STRING`: a NUL-terminated `char *`.
pub const ARG_STRING: u32 = 3;
/// `VIGIL_ARG_FILE`: a `struct file *`, reported as its path.
pub const ARG_FILE: u32 = 4;
/// `VIGIL_ARG_PATH`: a `struct path *`, reported as its path.
pub const ARG_PATH: u32 = 5;
/// `VIGIL_ARG_FD`: a descriptor, reported as its file's path.
pub const ARG_FD: u32 = 6;
/// `VIGIL_ARG_SOCKADDR`: a `struct sockaddr *`.
pub const ARG_SOCKADDR: u32 = 7;
/// `VIGIL_ARG_BUF`: bytes whose count another argument gives.
pub const ARG_BUF: u32 = 8;
/// `VIGIL_ARG_CONST`: a value the attach point implies.
pub const ARG_CONST: u32 = 9;
/// `VIGIL_ARG_AT_PATH`: a system call's file name, made absolute and normalized.
pub const ARG_AT_PATH: u32 = 10;
/// `VIGIL_ARG_CRED`: a `struct cred *`.
pub const ARG_CRED: u32 = 11;
/// `VIGIL_ARG_CAP`: a `kernel_cap_t *`, read as the 64-bit set.
pub const ARG_CAP: u32 = 12;
/// `VIGIL_ARG_SKB`: a `struct sk_buff *`.
pub const ARG_SKB: u32 = 13;
/// `VIGIL_ARG_DENTRY`: a `struct dentry *`, read as its path within its filesystem.
pub const ARG_DENTRY: u32 = 14;
/// `VIGIL_ARG_KIOCB`: a `struct kiocb *`, read as its file's path.
pub const ARG_KIOCB: u32 = 15;
/// `VIGIL_ARG_IOV`: a `struct iov_iter *`, read as the bytes it holds next.
pub const ARG_IOV: u32 = 16;
/// `VIGIL_ARG_BPF_ATTR`: a `union bpf_attr *` of a program being loaded.
pub const ARG_BPF_ATTR: u32 = 17;
/// `VIGIL_ARG_BPF_MAP`: a `struct bpf_map *`.
pub const ARG_BPF_MAP: u32 = 18;
/// `VIGIL_ARG_PERF_EVENT`: a `struct perf_event *`.
pub const ARG_PERF_EVENT: u32 = 19;
/// `VIGIL_ARG_MODULE`: a `struct module *`.
pub const ARG_MODULE: u32 = 20;
/// `VIGIL_ARG_LOAD_INFO`: a `struct load_info *` of a module being loaded.
pub const ARG_LOAD_INFO: u32 = 21;
/// `VIGIL_ARG_BINPRM`: a `struct linux_binprm *`, read as the path of the file it executes.
pub const ARG_BINPRM: u32 = 22;
/// `VIGIL_HOOK_KEY_TP`: with a slot, the key of a policy's hooks on a tracepoint.
pub const HOOK_KEY_TP: u64 = 1 << 58;
/// `VIGIL_HOOK_KEY_RAW_TP`: with a slot, the key of a policy's hooks on a raw tracepoint.
pub const HOOK_KEY_RAW_TP: u64 = 1 << 57;
/// `VIGIL_TP_SLOTS`: tracepoints (and, apart, raw tracepoints) policies can hook at once (a
/// program each).
pub const TP_SLOTS: usize = 4;
/// `enum vigil_tp_field_kind`.
#[allow(missing_docs)]
pub mod tp_field {
    pub const NONE: u8 = 0;
    pub const INT: u8 = 1;
    pub const DATA_LOC: u8 = 2;
    pub const ARRAY: u8 = 3;
}

/// `struct vigil_tp_field`: where a tracepoint's field is in its record.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct TpField {
    pub off: u16,
    pub kind: u8,
    pub size: u8,
}

/// `struct vigil_tp_fields`: the fields a policy tracepoint's hooks read, by register.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct TpFields {
    pub f: [TpField; HOOK_ARGS],
}

/// `VIGIL_AT_CWD`: an `ARG_AT_PATH` relative to the working directory.
pub const AT_CWD: u8 = 0xff;
/// `VIGIL_ARGF_USER`: the pointer is a user address.
pub const ARGF_USER: u8 = 1;
/// `VIGIL_ARGF_SIGNED`: sign-extend the integer.
pub const ARGF_SIGNED: u8 = 2;
/// `VIGIL_HOOK_NO_RULE`: the hook has no selectors.
pub const HOOK_NO_RULE: u32 = u32::MAX;
/// `VIGIL_PART_NS`: value-key part of namespace values (+ the namespace's index).
pub const PART_NS: u32 = 16;
/// `VIGIL_PART_PIDS`: value-key part of pid values.
pub const PART_PIDS: u32 = 32;
/// `VIGIL_PART_BINARY`: value-key part of binary values.
pub const PART_BINARY: u32 = 48;

/// `VIGIL_HOOK_RULE_KEY`: the key of a selector's values in the value maps.
pub fn hook_rule_key(rule: u32, part: u32) -> u32 {
    0x8000_0000 | (rule << 8) | part
}

/// `enum vigil_cond_op`.
#[allow(missing_docs)]
pub mod op {
    pub const INT_IN: u8 = 1;
    pub const GT: u8 = 2;
    pub const LT: u8 = 3;
    pub const MASK: u8 = 4;
    pub const STR_EQ: u8 = 5;
    pub const STR_PREFIX: u8 = 6;
    pub const STR_POSTFIX: u8 = 7;
    pub const SADDR: u8 = 8;
    pub const DADDR: u8 = 9;
    pub const SPORT: u8 = 10;
    pub const DPORT: u8 = 11;
    pub const PROTOCOL: u8 = 12;
    pub const FAMILY: u8 = 13;
    pub const STATE: u8 = 14;
}

/// `VIGIL_PIDS_*` bits of [`HookRule::pid_flags`].
#[allow(missing_docs)]
pub mod pids {
    pub const IN: u32 = 1;
    pub const NOT_IN: u32 = 2;
    pub const NS: u32 = 4;
    pub const FOLLOW: u32 = 8;
}

/// `struct vigil_hook_cond`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct HookCond {
    pub arg: u8,
    pub op: u8,
    pub negate: u8,
    pub _pad0: [u8; 5],
    pub value: i64,
}

/// `struct vigil_hook_rule`: one selector of a generic hook.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct HookRule {
    pub flags: u32,
    pub policy_id: u32,
    pub action: u32,
    pub arg: i32,
    pub nconds: u32,
    pub pid_flags: u32,
    pub ns_in: u32,
    pub ns_not_in: u32,
    pub cap_set: [u8; 3],
    pub cap_not: [u8; 3],
    pub sock_action: u8,
    pub sock_arg: u8,
    pub generation: u32,
    pub _pad1: u32,
    pub cap_mask: [u64; 3],
    pub conds: [HookCond; HOOK_CONDS],
}

mod syscalls {
    include!(concat!(env!("OUT_DIR"), "/syscalls.rs"));
}

/// The x86-64 number of system call `name` (`setuid` or `sys_setuid`).
pub fn syscall_nr(name: &str) -> Option<u32> {
    let bare = name.strip_prefix("__x64_").unwrap_or(name);
    let bare = bare.strip_prefix("sys_").unwrap_or(bare);
    syscalls::SYSCALLS
        .iter()
        .find(|(n, _)| *n == bare)
        .map(|(_, nr)| *nr)
}

/// Every x86-64 system call vigil knows, by name and number.
pub fn syscalls() -> impl Iterator<Item = (&'static str, u32)> {
    syscalls::SYSCALLS.iter().copied()
}

/// `struct vigil_hook_list`: the hooks on one attach point, by slot: in `vigil_hooks` those
/// for every process, in `vigil_class_hooks` (by [`ClassListKey`]) those of scoped policies
/// for one caller class.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct HookList {
    pub n: u32,
    pub slot: [u32; HOOKS_PER_KEY],
    /// `VIGIL_LIST_*`: [`LIST_CLEARS_VERDICT`], [`LIST_SCOPED`], [`LIST_SYSCALL_REGS`].
    pub flags: u32,
    /// The gate's argument register, its type, and the comparisons its values are written
    /// for (`VIGIL_GATE_*`; 0: no gate).
    pub gate_reg: u8,
    pub gate_type: u8,
    pub gate_ops: u8,
    pub _pad0: u8,
    /// The value key the gate's values are written under ([`gate_key`]).
    pub gate_key: u32,
    /// Changes with the gate's values, so decisions cached before never apply.
    pub gate_generation: u32,
    /// The flags gate: the register every selector tests with Mask, and the union of their
    /// masks (0: no gate).
    pub gate_mask_reg: u32,
    pub gate_mask: u64,
}

impl Default for HookList {
    fn default() -> Self {
        HookList {
            n: 0,
            slot: [0; HOOKS_PER_KEY],
            flags: 0,
            gate_reg: 0,
            gate_type: 0,
            gate_ops: 0,
            _pad0: 0,
            gate_key: 0,
            gate_generation: 0,
            gate_mask_reg: 0,
            gate_mask: 0,
        }
    }
}

/// `struct vigil_class_list_key`: the list of scoped policies' hooks on `key` for the callers
/// of class `cls`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub struct ClassListKey {
    pub key: u64,
    pub cls: u32,
    pub _pad0: u32,
}

/// `struct vigil_class_memo`: a cgroup's class, found in a generation (`value`: the
/// generation in its high half, the class in its low half).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct ClassMemo {
    pub cgroup: u64,
    pub value: u64,
}

/// `VIGIL_GATE_EQ`, `VIGIL_GATE_PREFIX`, `VIGIL_GATE_POSTFIX`: the gate holds values compared
/// for equality, as prefixes, as postfixes.
pub const GATE_EQ: u8 = 1 << 0;
#[allow(missing_docs)]
pub const GATE_PREFIX: u8 = 1 << 1;
#[allow(missing_docs)]
pub const GATE_POSTFIX: u8 = 1 << 2;

/// The system call number of a system call entry's key (`HOOK_KEY_SYSCALL | nr`), and
/// `None` for every other key: a kernel address (a kprobe's key) has bit 63 set as well.
pub const fn syscall_of_key(key: u64) -> Option<u32> {
    if key & !0xffff == HOOK_KEY_SYSCALL {
        Some(key as u32)
    } else {
        None
    }
}

/// The gate key of the list on system call `nr` (apart from the file-open rules' slots and
/// the selectors' keys).
pub const fn gate_key(nr: u32) -> u32 {
    0x4000_0000 | (nr & 0xffff)
}

/// The gate key of the `n`th kprobe list with a gate (apart from the system calls' gates,
/// whose keys have bit 23 clear, and from the comparison bits `gate_value_key` adds).
pub const fn kprobe_gate_key(n: u16) -> u32 {
    0x4080_0000 | n as u32
}

/// Whether `key` is a kprobe's on a function's entry: a kernel address, whose top 16 bits are
/// set (a system call's key has bit 63 alone of them, a return's has bit 61 flipped).
pub const fn is_kprobe_entry_key(key: u64) -> bool {
    key >> 48 == 0xffff
}

/// `VIGIL_GATE_KEY`: the value key of gate `gate`'s values compared by `op` (a `GATE_*` bit),
/// one per comparison, as its cached decisions are.
pub const fn gate_value_key(gate: u32, op: u8) -> u32 {
    gate | (op as u32) << 16
}

/// `VIGIL_LIST_CLEARS_VERDICT`: a hook on the point overrides at a later LSM check (a system
/// call's), so each call first clears what an earlier one left unused.
pub const LIST_CLEARS_VERDICT: u32 = 1 << 0;
/// `VIGIL_LIST_SCOPED`: scoped policies hook the point too; the caller's class list runs
/// after this one.
pub const LIST_SCOPED: u32 = 1 << 1;
/// `VIGIL_LIST_SYSCALL_REGS`: the point is a system call's wrapper, whose arguments sit in the
/// inner `pt_regs`.
pub const LIST_SYSCALL_REGS: u32 = 1 << 2;

/// `struct vigil_hook_config`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct HookConfig {
    pub hook_id: u32,
    pub flags: u32,
    pub arg_reg: [u8; HOOK_ARGS],
    pub arg_type: [u8; HOOK_ARGS],
    pub arg_flags: [u8; HOOK_ARGS],
    pub arg_bits: [u8; HOOK_ARGS],
    pub nargs: u8,
    pub _pad0: u8,
    pub scope: u16,
    pub rule_first: u16,
    pub rule_count: u16,
    pub konst: i64,
}

/// `struct vigil_sock_value`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct SockValue {
    pub family: u16,
    pub r#type: u16,
    pub protocol: u16,
    pub sport: u16,
    pub dport: u16,
    pub state: u8,
    /// Where the socket's cached route leads ([`super::route`]), 0 when it has none.
    pub route: u8,
    pub netns: u32,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// The socket's kernel address: the agent writes a keyed hash of it, never the address.
    pub cookie: u64,
    /// The route's device, in the socket's network namespace.
    pub route_ifindex: u32,
    /// The route's IPsec SPI (an xfrm route).
    pub route_spi: u32,
}

/// `struct vigil_file_value`: a file, path or descriptor argument's truncation and mode.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct FileValue {
    pub cut: i64,
    /// The inode's mode (type and permission bits); 0 where none was read.
    pub mode: u16,
    pub _pad0: [u16; 3],
}

/// `struct vigil_cred_value`: a `struct cred *` argument.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct CredValue {
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub suid: u32,
    pub sgid: u32,
    pub fsuid: u32,
    pub fsgid: u32,
    pub securebits: u32,
    pub ns_level: i32,
    pub ns_uid: u32,
    pub ns_gid: u32,
    pub ns_inum: u32,
    pub _pad0: u32,
    pub cap_permitted: u64,
    pub cap_effective: u64,
    pub cap_inheritable: u64,
}

/// `struct vigil_skb_value`: a `struct sk_buff *` argument; its first fields are placed as
/// [`SockValue`]'s.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct SkbValue {
    pub family: u16,
    pub _type: u16,
    pub protocol: u16,
    pub sport: u16,
    pub dport: u16,
    pub _state: u8,
    pub _pad0: u8,
    pub _netns: u32,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub hash: u32,
    pub len: u32,
    pub priority: u32,
    pub mark: u32,
}

/// `struct vigil_kobj_value`: a kernel object argument (`ARG_BPF_ATTR` to `ARG_LOAD_INFO`),
/// its numbers by type (hook_args.h `read_kobj` says which) and its name.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct KobjValue {
    pub n: [u32; 6],
    pub name: [u8; 56],
}

impl KobjValue {
    /// The 64-bit number in `n[i]` (low) and `n[i + 1]` (high).
    pub fn wide(&self, i: usize) -> u64 {
        self.n[i] as u64 | (self.n[i + 1] as u64) << 32
    }

    /// The name, up to its NUL.
    pub fn name(&self) -> String {
        let end = self
            .name
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(self.name.len());
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

/// Bytes of the union of `struct vigil_arg_value`: its largest member.
const ARG_VALUE_BYTES: usize = {
    let (s, c) = (size_of::<SockValue>(), size_of::<CredValue>());
    if s > c {
        s
    } else {
        c
    }
};

/// `struct vigil_arg_value`: a type and, by type, an integer, a socket, a file or credentials.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ArgValue {
    /// `ARG_*`.
    pub r#type: u32,
    /// Padding.
    pub _pad0: u32,
    /// The union's bytes (8-aligned, as the C union); read them with [`ArgValue::int`],
    /// [`ArgValue::sock`], [`ArgValue::file`] or [`ArgValue::cred`].
    pub value: [u64; ARG_VALUE_BYTES / 8],
}

impl Default for ArgValue {
    fn default() -> Self {
        ArgValue {
            r#type: 0,
            _pad0: 0,
            value: [0; ARG_VALUE_BYTES / 8],
        }
    }
}

impl ArgValue {
    /// The union's member of type `T`, which starts at its first byte.
    fn member<T: Copy>(&self) -> T {
        const { assert!(size_of::<T>() <= ARG_VALUE_BYTES) };
        // SAFETY: every member is plain data no larger than the union (asserted above), and
        // every bit pattern is a valid value of each.
        unsafe { std::ptr::read_unaligned(self.value.as_ptr().cast::<T>()) }
    }

    /// The integer (`ARG_INT`, `ARG_CAP`).
    pub fn int(&self) -> i64 {
        self.member()
    }

    /// The socket (`ARG_SOCK`).
    pub fn sock(&self) -> SockValue {
        self.member()
    }

    /// The file (`ARG_FILE`, `ARG_PATH`, `ARG_FD`, `ARG_AT_PATH`).
    pub fn file(&self) -> FileValue {
        self.member()
    }

    /// The credentials (`ARG_CRED`).
    pub fn cred(&self) -> CredValue {
        self.member()
    }

    /// The packet (`ARG_SKB`).
    pub fn skb(&self) -> SkbValue {
        self.member()
    }

    /// The kernel object (`ARG_BPF_ATTR` to `ARG_LOAD_INFO`).
    pub fn kobj(&self) -> KobjValue {
        self.member()
    }
}

/// `struct vigil_hook_event`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct HookEvent {
    pub hdr: EventHeader,
    pub pid: u32,
    pub tid: u32,
    pub hook_id: u32,
    pub nargs: u32,
    pub rule: u32,
    pub action: u32,
    pub action_arg: i32,
    pub flags: u32,
    pub args: [ArgValue; HOOK_ARGS],
    pub str_len: [u16; HOOK_ARGS],
    pub _pad0: [u16; 3],
    pub key: u64,
}

/// A generic hook record: the fixed part and the bytes of its string-like arguments.
#[derive(Debug)]
pub struct Hook<'a> {
    /// The fixed part.
    pub event: HookEvent,
    /// Per argument: its string, path or buffer bytes (empty for other types).
    pub strings: [&'a [u8]; HOOK_ARGS],
}

/// Bytes of an exact filter's key path, NUL-padded (`VIGIL_MATCH_LEN`).
pub const MATCH_LEN: usize = 256;
/// Bytes of an LPM key's data: rule id and path (`VIGIL_LPM_DATA`, the kernel's limit).
pub const LPM_DATA: usize = 256;

/// `VIGIL_RULE_*` bits of [`Rule::flags`].
#[allow(missing_docs)]
pub mod rule {
    pub const ACTIVE: u32 = 1 << 0;
    pub const MONITOR: u32 = 1 << 1;
    pub const PATH_EQ: u32 = 1 << 2;
    pub const PATH_PREFIX: u32 = 1 << 3;
    pub const PATH_POSTFIX: u32 = 1 << 4;
    pub const PATH_NOT: u32 = 1 << 5;
    pub const BIN_EQ: u32 = 1 << 6;
    pub const BIN_PREFIX: u32 = 1 << 7;
    pub const BIN_NOT: u32 = 1 << 8;
    pub const NOPOST: u32 = 1 << 9;
    pub const BIN_INODE: u32 = 1 << 10;
    /// Override, and kill the process too.
    pub const KILL: u32 = 1 << 11;
}

/// `enum vigil_action`.
#[allow(missing_docs)]
pub mod action {
    pub const POST: u32 = 0;
    pub const NOPOST: u32 = 1;
    pub const SIGKILL: u32 = 2;
    pub const OVERRIDE: u32 = 3;
    pub const SIGNAL: u32 = 4;
}

/// Bytes of a file name in the open prefilter (`VIGIL_NAME_LEN`).
pub const NAME_LEN: usize = 64;

/// `struct vigil_policy_state`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicyState {
    /// 1: opens whose file name is not in `vigil_names` are dismissed before any path walk.
    pub prefilter: u32,
    /// Rules are walked from slot 0 up to this one, exclusive.
    pub rule_end: u32,
    /// Rule slots (a bit each) that hold only for the executables their exact
    /// `matchBinaries` values name: opens by other binaries are dismissed before the path walk.
    pub bin_scoped: u64,
}

/// `enum vigil_hook`.
pub const HOOK_FILE_OPEN: u32 = 1;

/// `VIGIL_POLICY_*` bits of [`PolicyEvent::flags`].
#[allow(missing_docs)]
pub mod policy_flags {
    pub const ENFORCED: u32 = 1 << 0;
    pub const MONITOR: u32 = 1 << 1;
    pub const VIA_LSM: u32 = 1 << 2;
    pub const TRUNC_PATH: u32 = 1 << 3;
}

/// `struct vigil_rule`: one compiled selector.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Rule {
    pub flags: u32,
    pub policy_id: u32,
    pub hook: u32,
    pub action: u32,
    pub arg: i32,
    pub scope: u32,
}

/// `struct vigil_scope_key`: a pod cgroup of a policy scope.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub struct ScopeKey {
    pub cgroup: u64,
    pub scope: u32,
    pub _pad0: u32,
}

/// `struct vigil_policy_event`, the fixed part of a policy record.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct PolicyEvent {
    pub hdr: EventHeader,
    pub pid: u32,
    pub tid: u32,
    pub rule: u32,
    pub hook: u32,
    pub action: u32,
    pub arg: i32,
    pub flags: u32,
    pub path_len: u16,
    pub mode: u16,
}

/// `struct vigil_match_key`: a rule id and a NUL-padded path, the key of exact filters.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatchKey {
    /// Rule slot.
    pub rule: u32,
    /// The value, NUL-padded.
    pub path: [u8; MATCH_LEN],
}

impl MatchKey {
    /// The key of `value` for rule `rule` (values longer than [`MATCH_MAX`] are cut).
    pub fn new(rule: u32, value: &[u8]) -> Self {
        let mut path = [0u8; MATCH_LEN];
        let n = value.len().min(MATCH_MAX);
        path[..n].copy_from_slice(&value[..n]);
        MatchKey { rule, path }
    }
}

/// The data of a `struct vigil_lpm_key` (after its prefix length): the rule id big-endian,
/// then the value; and the prefix length in bits that covers both.
pub fn lpm_key(rule: u32, value: &[u8]) -> (u32, [u8; LPM_DATA]) {
    let mut data = [0u8; LPM_DATA];
    data[..4].copy_from_slice(&rule.to_be_bytes());
    let n = value.len().min(MATCH_MAX);
    data[4..4 + n].copy_from_slice(&value[..n]);
    (32 + 8 * n as u32, data)
}

/// A policy record: the fixed part and the subject's path.
#[derive(Debug)]
pub struct Policy<'a> {
    /// The fixed part.
    pub event: PolicyEvent,
    /// The path the rule matched on.
    pub path: &'a [u8],
}
