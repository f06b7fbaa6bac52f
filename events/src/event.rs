//! The serde types of events, field for field in Tetragon's JSON shape.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{caps::CapSet, ExecId};

/// One event: exactly one event key, the node and the time.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    #[serde(flatten)]
    pub body: EventBody,
    /// The node the event happened on. Shared by every event of the node: one pointer copy
    /// per event, not a copy of the name.
    #[serde(default, skip_serializing_if = "str::is_empty")]
    pub node_name: Arc<str>,
    /// The node's Kubernetes labels, on a Kubernetes node. Shared by every event of the node:
    /// one pointer copy per event, not a copy of the map.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub node_labels: Arc<std::collections::BTreeMap<String, String>>,
    /// When it happened, RFC 3339 with nanoseconds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub time: String,
}

fn is_empty_map(m: &Arc<std::collections::BTreeMap<String, String>>) -> bool {
    m.is_empty()
}

/// The event key and its payload.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventBody {
    /// A successful execve.
    ProcessExec(ProcessExec),
    /// A process ended.
    ProcessExit(ProcessExit),
    /// A kprobe policy matched.
    ProcessKprobe(Box<ProcessPolicy>),
    /// An LSM hook policy matched.
    ProcessLsm(Box<ProcessPolicy>),
    /// A uprobe policy matched (a function of a program or library, in user space).
    ProcessUprobe(Box<ProcessPolicy>),
    /// A policy's tracepoint matched (`subsys` and `event` name it).
    ProcessTracepoint(Box<ProcessPolicy>),
    /// A process mapped an executable file (`path`, `buildid`): a policy's `loader`.
    ProcessLoader(Box<ProcessPolicy>),
    /// A Sigma rule matched an event.
    ProcessAlert(Box<ProcessAlert>),
    /// A flow's encryption verdict, when first known and when it changes (vigil's).
    FlowEncryption(Box<FlowEncryption>),
    /// Events were lost before they reached the stream (a full ring buffer in the kernel): the
    /// stream says so in place, as Tetragon's `rate_limit_info` does, so a reader of the
    /// stream alone knows it has a gap and how large.
    RateLimitInfo(RateLimitInfo),
}

/// `rate_limit_info`: how many events were lost since the last such event.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RateLimitInfo {
    /// Records the kernel could not hand to the agent, of every kind (a decimal string, as
    /// protojson writes Tetragon's `uint64`; a number is read too).
    #[serde(
        default,
        serialize_with = "crate::int64::serialize",
        deserialize_with = "crate::int64::deserialize"
    )]
    pub number_of_dropped_process_events: u64,
}

/// The process of an event about none (`rate_limit_info`): empty, pid 0.
static NO_PROCESS: std::sync::LazyLock<Process> = std::sync::LazyLock::new(Process::default);

/// `process_alert`: a Sigma rule matched `event`.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessAlert {
    /// The process the matching event is about.
    #[serde(serialize_with = "crate::encoded::process")]
    pub process: Arc<Process>,
    /// Its parent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::encoded::parent"
    )]
    pub parent: Option<Arc<Process>>,
    /// The rule's `id` (its title when it has none).
    pub rule_id: String,
    /// The rule's title.
    pub title: String,
    /// `informational`, `low`, `medium`, `high` or `critical`.
    pub level: String,
    /// The rule's tags (ATT&CK techniques as `attack.t1059`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The file the rule was loaded from.
    pub rule_file: String,
    /// The Sigma logsource category it matched as.
    pub category: String,
    /// The event that matched, whole.
    pub event: Box<Event>,
}

/// `flow_encryption`: how a flow to a remote range leaves the node, when the kernel first
/// judged its packets and whenever that changes (never per packet).
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowEncryption {
    /// The process that opened the flow, when vigil saw it do so (a network policy's event on
    /// its socket); none for a flow vigil saw only on the wire.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::encoded::parent"
    )]
    pub process: Option<Arc<Process>>,
    /// Its parent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::encoded::parent"
    )]
    pub parent: Option<Arc<Process>>,
    /// The flow, as its packets carry it, with its `encryption`.
    pub flow: SockArg,
}

impl Event {
    /// The processes the event names, the one it is about first, then its parent and
    /// ancestors: for what is learnt of a process after its event was built (its pod).
    pub fn processes_mut(&mut self) -> impl Iterator<Item = &mut Arc<Process>> {
        let (process, parent, ancestors) = match &mut self.body {
            EventBody::ProcessExec(e) => {
                (Some(&mut e.process), &mut e.parent, &mut e.ancestors[..])
            }
            EventBody::ProcessExit(e) => {
                (Some(&mut e.process), &mut e.parent, &mut e.ancestors[..])
            }
            EventBody::ProcessKprobe(e)
            | EventBody::ProcessLsm(e)
            | EventBody::ProcessUprobe(e)
            | EventBody::ProcessTracepoint(e)
            | EventBody::ProcessLoader(e) => {
                (Some(&mut e.process), &mut e.parent, &mut e.ancestors[..])
            }
            EventBody::ProcessAlert(e) => (Some(&mut e.process), &mut e.parent, &mut [][..]),
            EventBody::FlowEncryption(e) => (e.process.as_mut(), &mut e.parent, &mut [][..]),
            EventBody::RateLimitInfo(_) => {
                return None.into_iter().chain(None).chain([][..].iter_mut())
            }
        };
        process
            .into_iter()
            .chain(parent.as_mut())
            .chain(ancestors.iter_mut())
    }

    /// The processes the event names, the one it is about first, then its parent and
    /// ancestors.
    pub fn processes(&self) -> impl Iterator<Item = &Process> {
        self.shared_processes().map(|p| &**p)
    }

    /// [`Event::processes`], as the shared processes the event holds (the process cache's,
    /// unless redaction changed them).
    pub fn shared_processes(&self) -> impl Iterator<Item = &Arc<Process>> + Clone {
        let (process, parent, ancestors) = match &self.body {
            EventBody::ProcessExec(e) => (Some(&e.process), &e.parent, &e.ancestors[..]),
            EventBody::ProcessExit(e) => (Some(&e.process), &e.parent, &e.ancestors[..]),
            EventBody::ProcessKprobe(e)
            | EventBody::ProcessLsm(e)
            | EventBody::ProcessUprobe(e)
            | EventBody::ProcessTracepoint(e)
            | EventBody::ProcessLoader(e) => (Some(&e.process), &e.parent, &e.ancestors[..]),
            EventBody::ProcessAlert(e) => (Some(&e.process), &e.parent, &[][..]),
            EventBody::FlowEncryption(e) => (e.process.as_ref(), &e.parent, &[][..]),
            EventBody::RateLimitInfo(_) => (None, &None, &[][..]),
        };
        process
            .into_iter()
            .chain(parent.as_ref())
            .chain(ancestors.iter())
    }

    /// The process the event is about (an empty one, pid 0, for `rate_limit_info`).
    pub fn process(&self) -> &Process {
        match &self.body {
            EventBody::ProcessExec(e) => &e.process,
            EventBody::ProcessExit(e) => &e.process,
            EventBody::ProcessKprobe(e)
            | EventBody::ProcessLsm(e)
            | EventBody::ProcessUprobe(e)
            | EventBody::ProcessTracepoint(e)
            | EventBody::ProcessLoader(e) => &e.process,
            EventBody::ProcessAlert(e) => &e.process,
            EventBody::FlowEncryption(e) => e.process.as_deref().unwrap_or(&NO_PROCESS),
            EventBody::RateLimitInfo(_) => &NO_PROCESS,
        }
    }

    /// Every event key, in the order of [`Event::kind_index`].
    pub const KINDS: [&'static str; 10] = [
        "process_exec",
        "process_exit",
        "process_kprobe",
        "process_lsm",
        "process_uprobe",
        "process_tracepoint",
        "process_loader",
        "process_alert",
        "rate_limit_info",
        "flow_encryption",
    ];

    /// The event key (`process_exec`, ...).
    pub fn kind(&self) -> &'static str {
        Self::KINDS[self.kind_index()]
    }

    /// The place of its key in [`Event::KINDS`]: counters by kind are an array.
    pub fn kind_index(&self) -> usize {
        match &self.body {
            EventBody::ProcessExec(_) => 0,
            EventBody::ProcessExit(_) => 1,
            EventBody::ProcessKprobe(_) => 2,
            EventBody::ProcessLsm(_) => 3,
            EventBody::ProcessUprobe(_) => 4,
            EventBody::ProcessTracepoint(_) => 5,
            EventBody::ProcessLoader(_) => 6,
            EventBody::ProcessAlert(_) => 7,
            EventBody::RateLimitInfo(_) => 8,
            EventBody::FlowEncryption(_) => 9,
        }
    }
}

/// `process_exec`: the new image of a process.
///
/// Processes are shared (`Arc`): the same parent appears in many events and in the agent's
/// process cache, and copying it for each would cost more than encoding it.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessExec {
    /// The process after exec.
    #[serde(serialize_with = "crate::encoded::process")]
    pub process: Arc<Process>,
    /// Its parent, when known.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::encoded::parent"
    )]
    pub parent: Option<Arc<Process>>,
    /// Grandparent first up to the oldest known ancestor, when requested.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<Arc<Process>>,
}

/// `process_exit`: the last thread of a process ended.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessExit {
    /// The process that ended.
    #[serde(serialize_with = "crate::encoded::process")]
    pub process: Arc<Process>,
    /// Its parent, when known.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::encoded::parent"
    )]
    pub parent: Option<Arc<Process>>,
    /// The signal that killed it (`SIGKILL`), empty when it exited.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signal: String,
    /// Its exit status, 0 when killed by a signal (left out at 0, as protojson leaves out a
    /// `uint32` at its default).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub status: u32,
    /// When it ended.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub time: String,
    /// Grandparent first, when requested.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<Arc<Process>>,
}

/// `process_kprobe` / `process_lsm`: a policy selector matched in the kernel.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProcessPolicy {
    /// The process that did it.
    #[serde(serialize_with = "crate::encoded::process")]
    pub process: Arc<Process>,
    /// Its parent, when known.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::encoded::parent"
    )]
    pub parent: Option<Arc<Process>>,
    /// The kernel function or LSM hook (empty for a uprobe).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub function_name: String,
    /// A tracepoint's subsystem (`process_tracepoint`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subsys: String,
    /// A tracepoint's name (`process_tracepoint`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event: String,
    /// A uprobe's binary or library, as the policy names it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// A uprobe's symbol (empty when it is placed by offset).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub symbol: String,
    /// A uprobe's offset, past the symbol when there is one (left out at 0, as protojson
    /// leaves out a `uint64` at its default).
    #[serde(
        default,
        skip_serializing_if = "is_zero_u64",
        serialize_with = "crate::int64::serialize",
        deserialize_with = "crate::int64::deserialize"
    )]
    pub offset: u64,
    /// The arguments the policy reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    /// The return value, for a hook on the function's return (`returnArg`).
    #[serde(rename = "return", default, skip_serializing_if = "Option::is_none")]
    pub return_arg: Option<Arg>,
    /// The selector's action, as Tetragon names it (`KPROBE_ACTION_SIGKILL`); left out when
    /// empty (the agent always names one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// The policy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy_name: String,
    /// The hook's message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The hook's tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// What happened (vigil's addition): `denied`, `killed`, `signalled`, `posted`, or in
    /// monitor mode `would_have_been_denied` / `would_have_been_killed` /
    /// `would_have_been_signalled`; empty for a loader's event, which reports only.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub outcome: String,
    /// The build id of a loader event's file (`.note.gnu.build-id`), base64 as protojson
    /// writes Tetragon's `bytes buildid`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub buildid: String,
    /// Grandparent first, when requested.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<Arc<Process>>,
    /// What was done when the hooked function returned, for an event with a `return` value:
    /// `KPROBE_ACTION_POST` (the event), as Tetragon's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub return_action: String,
    /// The index of the selector that matched among its hook's, for the agent's own counters
    /// (not in the event's JSON: Tetragon's has no such field, and a decoded event has none).
    #[serde(skip)]
    #[cfg_attr(feature = "arbitrary", arbitrary(default))]
    pub selector: Option<u32>,
}

/// One argument of a policy event, tagged by type as in Tetragon's JSON.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arg {
    /// A file, by the path the kernel resolved.
    FileArg(FileArg),
    /// A signed integer.
    IntArg(i64),
    /// An unsigned size or count (`size_t`, unsigned 64-bit), written as a decimal string as
    /// protojson writes Tetragon's `uint64 size_arg`; a number is read too.
    SizeArg(
        #[serde(
            serialize_with = "crate::int64::serialize",
            deserialize_with = "crate::int64::deserialize"
        )]
        u64,
    ),
    /// A socket.
    SockArg(SockArg),
    /// A `struct path`, by the path the kernel resolved.
    PathArg(FileArg),
    /// A string.
    StringArg(String),
    /// A buffer, base64-encoded as in Tetragon.
    BytesArg(String),
    /// A socket address.
    SockaddrArg(SockaddrArg),
    /// A DNS message a process sent or received (vigil's addition).
    DnsArg(crate::dns::DnsArg),
    /// A `struct cred *`: ids, securebits, capabilities and user namespace.
    ProcessCredentialsArg(CredentialsArg),
    /// A `kernel_cap_t *` as the set it points at, 16 hex digits (Tetragon's
    /// `kernel_cap_t_arg`, `cap_effective_arg`, `cap_inheritable_arg`, `cap_permitted_arg`).
    KernelCapTArg(String),
    /// The effective set of a capset.
    CapEffectiveArg(String),
    /// The inheritable set of a capset.
    CapInheritableArg(String),
    /// The permitted set of a capset.
    CapPermittedArg(String),
    /// A packet (`struct sk_buff *`).
    SkbArg(SkbArg),
    /// A BPF program being loaded (`union bpf_attr *`).
    BpfAttrArg(crate::kernel_objects::BpfAttrArg),
    /// A BPF map.
    BpfMapArg(crate::kernel_objects::BpfMapArg),
    /// A perf event being created.
    PerfEventArg(crate::kernel_objects::PerfEventArg),
    /// A kernel module (`struct module *`, `struct load_info *`).
    ModuleArg(crate::kernel_objects::ModuleArg),
    /// A program being executed (`struct linux_binprm *`), by its file's path.
    LinuxBinprmArg(FileArg),
}

/// `skb_arg`: Tetragon's `KprobeSkb`.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct SkbArg {
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub hash: u32,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub len: u32,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub priority: u32,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub mark: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub saddr: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub daddr: String,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub sport: u32,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub dport: u32,
    /// The IP protocol's number.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub proto: u32,
    /// Its name (`IPPROTO_UDP`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// `AF_INET` or `AF_INET6`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub family: String,
}

/// `process_credentials_arg`: Tetragon's `ProcessCredentials`, whose ids are `UInt32Value`
/// wrappers (written even at 0).
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct CredentialsArg {
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub suid: u32,
    pub sgid: u32,
    pub fsuid: u32,
    pub fsgid: u32,
    /// The names of the securebits set (`SecBitNoRoot`, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub securebits: Vec<String>,
    pub caps: Capabilities,
    pub user_ns: UserNamespace,
}

/// `UserNamespace`: its depth (0: the host's), owner and inode.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct UserNamespace {
    pub level: i32,
    pub uid: u32,
    pub gid: u32,
    pub ns: Namespace,
}

/// TCP states by number (`include/net/tcp_states.h`), as Tetragon names them.
pub const TCP_STATES: [&str; 13] = [
    "",
    "TCP_ESTABLISHED",
    "TCP_SYN_SENT",
    "TCP_SYN_RECV",
    "TCP_FIN_WAIT1",
    "TCP_FIN_WAIT2",
    "TCP_TIME_WAIT",
    "TCP_CLOSE",
    "TCP_CLOSE_WAIT",
    "TCP_LAST_ACK",
    "TCP_LISTEN",
    "TCP_CLOSING",
    "TCP_NEW_SYN_RECV",
];

/// The names of the securebits in `bits` (`include/uapi/linux/securebits.h`), as Tetragon's
/// `SecureBitsType` names them.
pub fn securebits_names(bits: u32) -> Vec<String> {
    const NAMES: [(u32, &str); 8] = [
        (1 << 0, "SecBitNoRoot"),
        (1 << 1, "SecBitNoRootLocked"),
        (1 << 2, "SecBitNoSetUidFixup"),
        (1 << 3, "SecBitNoSetUidFixupLocked"),
        (1 << 4, "SecBitKeepCaps"),
        (1 << 5, "SecBitKeepCapsLocked"),
        (1 << 6, "SecBitNoCapAmbientRaise"),
        (1 << 7, "SecBitNoCapAmbientRaiseLocked"),
    ];
    NAMES
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| n.to_string())
        .collect()
}

/// `sockaddr_arg`.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SockaddrArg {
    /// `AF_INET`, `AF_INET6`, ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub family: String,
    /// The address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addr: String,
    /// The port.
    #[serde(default, skip_serializing_if = "is_zero_u16")]
    pub port: u16,
}

/// `sock_arg`, as Tetragon names its fields.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SockArg {
    /// `AF_INET`, `AF_INET6`, ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub family: String,
    /// `SOCK_STREAM`, `SOCK_DGRAM`, ...
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub sock_type: String,
    /// `IPPROTO_TCP`, `IPPROTO_UDP`, ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Source address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub saddr: String,
    /// Destination address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub daddr: String,
    /// Source port.
    #[serde(default, skip_serializing_if = "is_zero_u16")]
    pub sport: u16,
    /// Destination port.
    #[serde(default, skip_serializing_if = "is_zero_u16")]
    pub dport: u16,
    /// TCP state (`TCP_SYN_SENT`, ...), for TCP sockets.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    /// Inode number of the socket's network namespace (vigil's addition), 0 when unknown.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub netns: u32,
    /// TCP bytes sent and acknowledged by the peer, once the connection is closing (vigil's
    /// addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
    /// TCP bytes received, once the connection is closing (vigil's addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_received: Option<u64>,
    /// The same for every event about one socket while it lives (a connect and its close),
    /// as Tetragon's; a keyed hash of the socket's kernel address, which vigil never writes.
    #[serde(
        default,
        skip_serializing_if = "is_zero_u64",
        serialize_with = "crate::int64::serialize",
        deserialize_with = "crate::int64::deserialize"
    )]
    pub cookie: u64,
    /// How the socket's flow leaves the node (vigil's addition): from its route at the event
    /// and the verdict the kernel gave its packets, when either is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Box<crate::Encryption>>,
}

// protojson leaves out a proto3 scalar at its default (0, "", false) unless it is a wrapper
// (`google.protobuf.UInt32Value`) or a oneof member: these say which fields are left out. A
// field left out reads back as that default, so every event reads back as it was written.

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u16(n: &u16) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// `file_arg` and `path_arg`.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FileArg {
    /// Absolute path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// `unresolvedPathComponents` when the path was cut short, as Tetragon's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub flags: String,
    /// The inode's type and mode as `ls -l` writes them (`-rw-r--r--`), as Tetragon's; left
    /// out where no inode was read (a name the call gave, joined to its directory).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub permission: String,
}

impl FileArg {
    /// The argument for `path`, cut short or not, of an inode of `mode` (0: none read).
    pub fn new(path: String, cut: bool, mode: u16) -> FileArg {
        FileArg {
            path,
            flags: if cut {
                "unresolvedPathComponents".into()
            } else {
                String::new()
            },
            permission: crate::mode::permission(mode),
        }
    }
}

/// The identity of one execution.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Process {
    /// Unique id of this execution.
    #[serde(default, skip_serializing_if = "ExecId::is_empty")]
    pub exec_id: ExecId,
    /// Thread-group id in the host pid namespace. This and `tid`, `uid` and `auid` are
    /// `UInt32Value` wrappers in Tetragon's schema, written even at 0.
    #[serde(default)]
    pub pid: u32,
    /// Thread id of the thread that exec'd or exited.
    #[serde(default)]
    pub tid: u32,
    /// Effective uid.
    #[serde(default)]
    pub uid: u32,
    /// Login uid (4294967295 when unset).
    #[serde(default)]
    pub auid: u32,
    /// Working directory at exec.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cwd: String,
    /// Absolute path of the binary as the kernel resolved it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub binary: String,
    /// argv\[1..\], space-joined; arguments with spaces are quoted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub arguments: String,
    /// argv\[0\] as the process was started with it (`nc` where `binary` is
    /// `/usr/bin/nc.openbsd`, reached through a link): for detection, which must see both
    /// names. Not written (Tetragon's process has no such field), so empty in an event read
    /// back from JSON.
    #[serde(skip)]
    pub argv0: String,
    /// Space-separated flags: `execve`, `procFS`, `clone`, `rootcwd`, `truncArgs`, ..., in
    /// Tetragon's order ([`crate::flags::with_derived`] adds `rootcwd` and `clone`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub flags: String,
    /// When the execution started, RFC 3339.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub start_time: String,
    /// The parent's exec id (empty for the kernel's own threads' parent).
    #[serde(default, skip_serializing_if = "ExecId::is_empty")]
    pub parent_exec_id: ExecId,
    /// References the agent's process cache holds: 1 while the process runs, left out (0)
    /// once it exited, as Tetragon's for a process without children. vigil does not count
    /// children's references (Tetragon's internal bookkeeping, which no query uses).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub refcnt: u32,
    /// Capability sets: written only when the agent is asked to (`--enable-process-cred`, as
    /// Tetragon's flag of the name), though always read from the kernel for selectors
    /// ([`Detail`]).
    #[serde(
        default,
        skip_serializing_if = "Capabilities::unwritten",
        serialize_with = "crate::encoded::capabilities"
    )]
    pub cap: Capabilities,
    /// Namespaces: written only when asked to (`--enable-process-ns`).
    #[serde(
        default,
        skip_serializing_if = "Namespaces::unwritten",
        serialize_with = "crate::encoded::namespaces"
    )]
    pub ns: Namespaces,
    /// Full credentials: written only when asked to (`--enable-process-cred`); kept for
    /// selectors and Sigma's auditd records either way.
    #[serde(default, skip_serializing_if = "Credentials::unwritten")]
    pub process_credentials: Credentials,
    /// cgroup of the process in the tracked hierarchy (vigil's addition to Tetragon's shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<Cgroup>,
    /// Container id prefix taken from the cgroup path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<String>,
    /// The Kubernetes pod and container it runs in, on a Kubernetes node. Boxed: a pod is 300
    /// bytes, which every process (each exec's, each one cached) carried whether or not it ran
    /// in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Box<crate::Pod>>,
    /// The pid in the process's own pid namespace: kept for `pod.container.pid`, which may be
    /// written after the exec (when the pod becomes known), and not a field of its own.
    #[serde(skip)]
    #[cfg_attr(feature = "arbitrary", arbitrary(default))]
    pub nspid: u32,
}

/// What is known of a process's optional objects (its capabilities, namespaces and
/// credentials), and whether events write them.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detail {
    /// Read from the kernel and written.
    Written,
    /// Read from the kernel and kept for selectors and detection, not written: the agent was
    /// not asked to (`--enable-process-cred`, `--enable-process-ns`, as Tetragon's flags).
    Kept,
    /// Not known: a process the agent could not read, or one read back from JSON that did not
    /// have the object. Not written, and not used as if it were zero (root's ids, no
    /// capabilities).
    #[default]
    Unknown,
}

impl Detail {
    /// Written if `write`, else kept.
    pub fn known(write: bool) -> Detail {
        if write {
            Detail::Written
        } else {
            Detail::Kept
        }
    }

    fn written() -> Detail {
        Detail::Written
    }

    /// Whether the values were read (written or kept), not left at zero for want of them.
    pub fn is_known(self) -> bool {
        self != Detail::Unknown
    }
}

/// `unwritten`, the test a [`Process`] field holding a [`Detail`] is skipped by.
macro_rules! detailed {
    ($($t:ty),*) => {$(
        impl $t {
            pub(crate) fn unwritten(&self) -> bool {
                self.detail != Detail::Written
            }
        }
    )*};
}
detailed!(Capabilities, Namespaces, Credentials);

impl Process {
    /// A process of which the kernel told only its pid and thread (an exit or a hook's call
    /// after it left both the cache and `/proc`): flagged `unknown`, its ids (uid_t)-1, which
    /// no user has, as an unset login uid is, rather than 0, which would make it root; its
    /// credentials, capabilities and namespaces [`Detail::Unknown`].
    pub fn unknown(pid: u32, tid: u32) -> Process {
        Process {
            pid,
            tid,
            uid: u32::MAX,
            auid: u32::MAX,
            flags: "unknown".into(),
            ..Default::default()
        }
    }
}

/// Capability sets, written as the names of Tetragon's `CapabilitiesType` enum.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Capabilities {
    /// Permitted.
    #[serde(default, skip_serializing_if = "CapSet::is_empty")]
    pub permitted: CapSet,
    /// Effective.
    #[serde(default, skip_serializing_if = "CapSet::is_empty")]
    pub effective: CapSet,
    /// Inheritable.
    #[serde(default, skip_serializing_if = "CapSet::is_empty")]
    pub inheritable: CapSet,
    /// Whether these are written, and known ([`Detail`]).
    #[serde(skip, default = "Detail::written")]
    #[cfg_attr(feature = "arbitrary", arbitrary(value = Detail::Written))]
    pub detail: Detail,
}

/// One namespace.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Namespace {
    /// Inode number of the namespace.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub inum: u32,
    /// Whether it is the host's (pid 1's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_host: bool,
}

/// All namespaces of a process.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Namespaces {
    #[serde(default)]
    pub uts: Namespace,
    #[serde(default)]
    pub ipc: Namespace,
    #[serde(default)]
    pub mnt: Namespace,
    #[serde(default)]
    pub pid: Namespace,
    #[serde(default)]
    pub pid_for_children: Namespace,
    #[serde(default)]
    pub net: Namespace,
    #[serde(default, skip_serializing_if = "is_zero_ns")]
    pub time: Namespace,
    #[serde(default, skip_serializing_if = "is_zero_ns")]
    pub time_for_children: Namespace,
    #[serde(default)]
    pub cgroup: Namespace,
    #[serde(default)]
    pub user: Namespace,
    /// Whether these are written, and known ([`Detail`]).
    #[serde(skip, default = "Detail::written")]
    #[cfg_attr(feature = "arbitrary", arbitrary(value = Detail::Written))]
    pub detail: Detail,
}

fn is_zero_ns(ns: &Namespace) -> bool {
    ns.inum == 0
}

/// Full credentials: `UInt32Value` wrappers in Tetragon's schema, so written even at 0.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[allow(missing_docs)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub suid: u32,
    pub sgid: u32,
    pub fsuid: u32,
    pub fsgid: u32,
    /// Whether these are written, and known ([`Detail`]).
    #[serde(skip, default = "Detail::written")]
    #[cfg_attr(feature = "arbitrary", arbitrary(value = Detail::Written))]
    pub detail: Detail,
}

/// The cgroup a process belongs to.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cgroup {
    /// Kernfs id (the cgroup v2 id, as `bpf_get_current_cgroup_id`).
    pub id: u64,
    /// Path below the hierarchy root.
    pub path: String,
}

/// Splits an `arguments` field back into argv\[1..\] (the inverse of [`join_arguments`]).
pub fn split_arguments(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let mut arg = String::new();
        if c == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => arg.extend(chars.next()),
                    '"' => break,
                    c => arg.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                arg.push(c);
                chars.next();
            }
        }
        out.push(arg);
    }
    out
}

/// Joins argv\[1..\] the way the `arguments` field shows them: space-separated, and an
/// argument that is empty or holds whitespace or quotes is double-quoted with `"` and `\`
/// escaped, so the line can be split back unambiguously.
pub fn join_arguments(args: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let mut out = String::new();
    for (i, a) in args.into_iter().enumerate() {
        let a = a.as_ref();
        if i > 0 {
            out.push(' ');
        }
        if a.is_empty()
            || a.chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '\\')
        {
            out.push('"');
            for c in a.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        } else {
            out.push_str(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_back_into_argv() {
        let argv = ["-c", "echo aGk= | base64 -d | sh", "", "a\"b\\c", "plain"];
        let line = join_arguments(argv.iter().copied());
        assert_eq!(split_arguments(&line), argv);
    }

    #[test]
    fn serializes_with_one_event_key() {
        let ev = Event {
            body: EventBody::ProcessExit(ProcessExit {
                process: Process {
                    binary: "/bin/true".into(),
                    ..Default::default()
                }
                .into(),
                parent: None,
                signal: "SIGKILL".into(),
                status: 0,
                time: "t".into(),
                ancestors: vec![],
            }),
            node_name: "n".into(),
            node_labels: Default::default(),
            time: "t".into(),
        };
        let v: serde_json::Value = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["process_exit"]["signal"], "SIGKILL");
        assert_eq!(v["process_exit"]["process"]["binary"], "/bin/true");
        assert_eq!(v["node_name"], "n");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn rate_limit_info_is_written_as_tetragon_writes_it_and_names_no_process() {
        let ev = Event {
            body: EventBody::RateLimitInfo(RateLimitInfo {
                number_of_dropped_process_events: 42,
            }),
            node_name: "n".into(),
            node_labels: Default::default(),
            time: "t".into(),
        };
        let v: serde_json::Value = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"rate_limit_info": {"number_of_dropped_process_events": "42"},
                "node_name": "n", "time": "t"})
        );
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), ev);
        assert_eq!(ev.kind(), "rate_limit_info");
        assert_eq!(ev.processes().count(), 0);
        assert_eq!(ev.process().pid, 0);
        let mut ev = ev;
        assert_eq!(ev.processes_mut().count(), 0);
        assert_eq!(
            crate::compact::render(&ev).trim_end(),
            "⚠️ dropped n 42 events lost"
        );
    }

    #[test]
    fn size_arg_is_written_as_a_string_and_read_as_a_string_or_a_number() {
        let big = u64::MAX - 1;
        let json = serde_json::to_string(&Arg::SizeArg(big)).unwrap();
        assert_eq!(json, format!(r#"{{"size_arg":"{big}"}}"#));
        assert_eq!(
            serde_json::from_str::<Arg>(&json).unwrap(),
            Arg::SizeArg(big)
        );
        let old = serde_json::from_str::<Arg>(r#"{"size_arg":4096}"#).unwrap();
        assert_eq!(old, Arg::SizeArg(4096));
        assert_eq!(
            serde_json::to_string(&Arg::SizeArg(0)).unwrap(),
            r#"{"size_arg":"0"}"#,
            "a oneof member is written even at 0"
        );
        assert!(serde_json::from_str::<Arg>(r#"{"size_arg":-1}"#).is_err());
        assert!(serde_json::from_str::<Arg>(r#"{"size_arg":"12x"}"#).is_err());
        // int_arg is Tetragon's int32: a number.
        assert_eq!(
            serde_json::to_string(&Arg::IntArg(-2)).unwrap(),
            r#"{"int_arg":-2}"#
        );
    }

    #[test]
    fn zero_scalars_are_left_out_as_protojson_does_and_wrappers_at_zero_are_kept() {
        let root = Process {
            exec_id: ExecId("aWQ=".into()),
            binary: "/bin/true".into(),
            start_time: "t".into(),
            ns: Namespaces {
                mnt: Namespace {
                    inum: 0,
                    is_host: true,
                },
                detail: Detail::Written,
                ..Default::default()
            },
            process_credentials: Credentials {
                detail: Detail::Written,
                ..Default::default()
            },
            ..Default::default()
        };
        let ev = Event {
            body: EventBody::ProcessExit(ProcessExit {
                process: root.into(),
                parent: None,
                signal: String::new(),
                status: 0,
                time: "t".into(),
                ancestors: vec![],
            }),
            node_name: "n".into(),
            node_labels: Default::default(),
            time: "t".into(),
        };
        let v = serde_json::to_value(&ev).unwrap();
        let exit = &v["process_exit"];
        assert!(
            exit.get("status").is_none(),
            "a clean exit has no status: {v}"
        );
        assert!(exit.get("signal").is_none(), "{v}");
        let p = &exit["process"];
        // pid, tid, uid, auid and the credentials are UInt32Value wrappers: kept at 0.
        for k in ["pid", "tid", "uid", "auid"] {
            assert_eq!(p[k], 0, "{k} in {p}");
        }
        assert_eq!(p["process_credentials"]["uid"], 0, "{p}");
        assert_eq!(p["process_credentials"]["fsgid"], 0, "{p}");
        // Plain strings and uint32s at their default are left out.
        for k in ["cwd", "flags", "parent_exec_id", "arguments", "docker"] {
            assert!(p.get(k).is_none(), "{k} in {p}");
        }
        assert!(p["ns"]["mnt"].get("inum").is_none(), "{p}");
        assert_eq!(p["ns"]["mnt"]["is_host"], true, "{p}");
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), ev);

        // A status other than 0 is written; so is every field of a lived-in socket.
        let mut killed = ev.clone();
        let EventBody::ProcessExit(x) = &mut killed.body else {
            unreachable!()
        };
        x.status = 1;
        assert_eq!(
            serde_json::to_value(&killed).unwrap()["process_exit"]["status"],
            1
        );

        let sock = SockArg {
            family: "AF_INET".into(),
            sock_type: "SOCK_DGRAM".into(),
            protocol: "IPPROTO_UDP".into(),
            saddr: "127.0.0.1".into(),
            daddr: String::new(),
            sport: 5353,
            dport: 0,
            state: String::new(),
            netns: 0,
            cookie: 0,
            bytes_sent: None,
            bytes_received: None,
            encryption: None,
        };
        let v = serde_json::to_value(Arg::SockArg(sock.clone())).unwrap();
        let s = &v["sock_arg"];
        assert!(
            s.get("dport").is_none() && s.get("daddr").is_none() && s.get("cookie").is_none(),
            "{v}"
        );
        assert_eq!(s["sport"], 5353);
        assert_eq!(
            serde_json::from_value::<Arg>(v).unwrap(),
            Arg::SockArg(sock.clone())
        );
        // Tetragon's `uint64 cookie`: a protojson string.
        let cookie = SockArg {
            cookie: u64::MAX,
            ..sock
        };
        let v = serde_json::to_value(Arg::SockArg(cookie.clone())).unwrap();
        assert_eq!(v["sock_arg"]["cookie"], "18446744073709551615");
        assert_eq!(
            serde_json::from_value::<Arg>(v).unwrap(),
            Arg::SockArg(cookie)
        );
        // Recorded lines that wrote the zeros still read.
        let old: SockArg = serde_json::from_str(
            r#"{"family":"AF_INET","type":"SOCK_STREAM","protocol":"IPPROTO_TCP","saddr":"","daddr":"","sport":0,"dport":0}"#,
        )
        .unwrap();
        assert_eq!(old.dport, 0);
    }

    #[test]
    fn arguments_quote_only_when_needed() {
        assert_eq!(
            join_arguments(["a", "b c", "", "x\"y"]),
            r#"a "b c" "" "x\"y""#
        );
    }
}
