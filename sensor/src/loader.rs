//! Loads the agent's eBPF object (process lifecycle, file-open evaluator, generic hooks and
//! the socket stand-ins, linked into one object that shares its maps), configures it and
//! attaches the lifecycle programs to their raw tracepoints; attaches and detaches the policy
//! programs where the attach plan says; reads the in-kernel drop counters.

use aya::{
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{
        kprobe::KProbeLinkId, tp_btf::BtfTracePointLinkId, trace_point::TracePointLinkId,
        BtfTracePoint, KProbe, Lsm, ProgramError, RawTracePoint, TracePoint,
    },
    Btf, BtfError, Ebpf, EbpfError, EbpfLoader, Endianness, Pod,
};
use thiserror::Error;
use vigil_bpf_kprobes::{abi, VIGIL_OBJ};

/// Why the process sensor could not start.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The BTF file could not be parsed.
    #[error("cannot read kernel BTF from {path}: {source}")]
    Btf {
        /// The BTF file.
        path: String,
        /// Parser error.
        source: BtfError,
    },
    /// The object (maps, relocations) was refused.
    #[error("cannot load the process programs: {0}")]
    Object(#[source] EbpfError),
    /// A map the object must contain is missing or has the wrong type.
    #[error("map {name}: {detail}")]
    Map {
        /// Map name.
        name: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The verifier refused a program, or the kernel refused to attach it.
    #[error("program {program} ({hook}): {source}")]
    Program {
        /// Program name.
        program: &'static str,
        /// The hook it goes to.
        hook: &'static str,
        /// aya's error, with the verifier log when there is one.
        source: ProgramError,
    },
}

/// One hook's use of a generic hook program's attachment. Hooks of several policies on the
/// same function share one attachment (the program runs each hook on its attach point), since
/// two would run them all twice per call.
#[derive(Debug)]
pub enum HookLink {
    /// The program attached to a kprobe, kretprobe or tracepoint, by attach point.
    Shared(AttachPoint),
    /// One user of the TCP state program (attached while it has users).
    SockState,
}

/// Where a generic hook program is attached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttachPoint {
    /// A kprobe (`ret`: kretprobe) on a function.
    Kprobe { function: String, ret: bool },
    /// A system call's enter tracepoint.
    SyscallEnter(String),
}

#[derive(Debug)]
enum SharedLinkId {
    Kprobe(&'static str, KProbeLinkId),
    Tracepoint(&'static str, TracePointLinkId),
}

/// The links of the programs that stand for the socket functions.
#[derive(Debug)]
struct SockStateLinks {
    /// The TCP state changes, then (6.3+) the socket receives.
    btf: Vec<(&'static str, BtfTracePointLinkId)>,
    syscalls: Vec<(&'static str, TracePointLinkId)>,
}

/// The system call programs that stand for the socket functions, and their tracepoints (one
/// exit program serves every return).
const SOCK_SYSCALL_PROGRAMS: [(&str, &str); 17] = [
    ("vigil_connect_enter", "sys_enter_connect"),
    ("vigil_connect_enter", "sys_enter_sendmsg"),
    ("vigil_connect_enter", "sys_enter_sendmmsg"),
    ("vigil_connect_enter", "sys_enter_recvmsg"),
    ("vigil_connect_enter", "sys_enter_recvmmsg"),
    ("vigil_sendto_enter", "sys_enter_sendto"),
    ("vigil_sendto_enter", "sys_enter_recvfrom"),
    ("vigil_sock_syscall_exit", "sys_exit_connect"),
    ("vigil_sock_syscall_exit", "sys_exit_accept"),
    ("vigil_sock_syscall_exit", "sys_exit_accept4"),
    ("vigil_sock_syscall_exit", "sys_exit_sendto"),
    ("vigil_sock_syscall_exit", "sys_exit_sendmsg"),
    ("vigil_sock_syscall_exit", "sys_exit_sendmmsg"),
    ("vigil_sock_syscall_exit", "sys_exit_recvfrom"),
    ("vigil_sock_syscall_exit", "sys_exit_recvmsg"),
    ("vigil_sock_syscall_exit", "sys_exit_recvmmsg"),
    ("vigil_rw_enter", "sys_enter_write"),
];

/// Where the kernel has no `sock/sock_recv_length` tracepoint (before 6.3), read() on a
/// connected UDP socket is served by its entry and return, which every read() then pays for.
const READ_FALLBACK_PROGRAMS: [(&str, &str); 2] = [
    ("vigil_rw_enter", "sys_enter_read"),
    ("vigil_sock_syscall_exit", "sys_exit_read"),
];

/// The syscall-enter programs of `hooks.bpf.c`, by the number of arguments they read.
const SYSCALL_ENTER_PROGRAMS: [&str; 6] = [
    "vigil_syscall_enter_1",
    "vigil_syscall_enter_2",
    "vigil_syscall_enter_3",
    "vigil_syscall_enter_4",
    "vigil_syscall_enter_5",
    "vigil_syscall_enter_6",
];

/// The programs of `policy.bpf.c` that enforce on file opens.
const FILE_OPEN_PROGRAMS: [&str; 5] = [
    "vigil_lsm_file_open",
    "vigil_exit_openat",
    "vigil_exit_openat2",
    "vigil_exit_open",
    "vigil_exit_creat",
];

/// The programs of `process.bpf.c` and the raw tracepoint each attaches to.
pub const ATTACH_PLAN: [(&str, &str); 3] = [
    ("vigil_fork", "sched_process_fork"),
    ("vigil_exec", "sched_process_exec"),
    ("vigil_exit", "sched_process_exit"),
];

#[derive(Clone, Copy)]
#[repr(transparent)]
struct ConfigPod(abi::Config);
// SAFETY: abi::Config is #[repr(C)] plain integers, valid for any bit pattern.
unsafe impl Pod for ConfigPod {}

/// Options for [`LoadedObject::load`].
pub struct LoadOptions<'a> {
    /// Kernel BTF file.
    pub btf_path: &'a str,
    /// Ring buffer size in bytes (a power of two, a multiple of the page size).
    pub ringbuf_bytes: u32,
    /// cgroup v1 subsystem to report, or [`abi::CGROUP_V2`].
    pub cgroup_subsys: u32,
}

/// The agent's loaded eBPF object: every program and map, and the links of those attached.
/// Dropping it detaches them.
pub struct LoadedObject {
    ebpf: Ebpf,
    btf: Btf,
    drops: PerCpuArray<MapData, u64>,
    /// The socket stand-ins' links and how many hooks use them: one attachment serves them all
    /// (each finds its own description by key), since two would run them twice per call.
    sock_state: Option<(SockStateLinks, usize)>,
    /// The kprobe and tracepoint attachments and how many hooks use each.
    shared: std::collections::HashMap<AttachPoint, (SharedLinkId, usize)>,
}

impl LoadedObject {
    /// Loads, configures and attaches every program of [`ATTACH_PLAN`].
    pub fn load(opts: &LoadOptions) -> Result<Self, LoadError> {
        let btf = Btf::parse_file(opts.btf_path, Endianness::default()).map_err(|source| {
            LoadError::Btf {
                path: opts.btf_path.to_string(),
                source,
            }
        })?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .map_max_entries("vigil_events", opts.ringbuf_bytes)
            .load(VIGIL_OBJ)
            .map_err(LoadError::Object)?;

        let map = ebpf
            .map_mut("vigil_config_map")
            .ok_or_else(|| missing("vigil_config_map"))?;
        let mut config: Array<_, ConfigPod> =
            Array::try_from(map).map_err(|e| map_err("vigil_config_map", e))?;
        config
            .set(
                0,
                ConfigPod(abi::Config {
                    cgroup_subsys: opts.cgroup_subsys,
                    agent_tgid: std::process::id(),
                }),
                0,
            )
            .map_err(|e| map_err("vigil_config_map", e))?;

        let drops_map = ebpf
            .take_map("vigil_drops")
            .ok_or_else(|| missing("vigil_drops"))?;
        let drops = PerCpuArray::try_from(drops_map).map_err(|e| map_err("vigil_drops", e))?;

        for (program, hook) in ATTACH_PLAN {
            let prog = loaded_program(&mut ebpf, program, hook, RawTracePoint::load)?;
            prog.attach(hook).map_err(|source| LoadError::Program {
                program,
                hook,
                source,
            })?;
        }
        Ok(LoadedObject {
            ebpf,
            btf,
            drops,
            sock_state: None,
            shared: Default::default(),
        })
    }

    /// The agent's object, for the policy table to take its maps.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Attaches the generic hook program to a kernel function (loading it on first use), or
    /// counts one more user of its attachment. (`ret`: to its return, the kretprobe program).
    pub fn attach_kprobe(&mut self, function: &str, ret: bool) -> Result<HookLink, LoadError> {
        let point = AttachPoint::Kprobe {
            function: function.to_string(),
            ret,
        };
        if self.share(&point) {
            return Ok(HookLink::Shared(point));
        }
        let (program, hook) = if ret {
            ("vigil_kretprobe", "kretprobe")
        } else {
            ("vigil_kprobe", "kprobe")
        };
        let prog = loaded_program(&mut self.ebpf, program, hook, KProbe::load)?;
        let link = prog
            .attach(function, 0)
            .map_err(|source| LoadError::Program {
                program,
                hook,
                source,
            })?;
        self.shared
            .insert(point.clone(), (SharedLinkId::Kprobe(program, link), 1));
        Ok(HookLink::Shared(point))
    }

    /// Attaches the generic syscall program that reads `arity` arguments to
    /// `syscalls/<tracepoint>`, or counts one more user of that attachment. A hook that reads
    /// more arguments than the attached program moves the tracepoint to the program that reads
    /// them (attached before the other is detached: no call goes unseen).
    pub fn attach_syscall_enter(
        &mut self,
        tracepoint: &str,
        arity: usize,
    ) -> Result<HookLink, LoadError> {
        let point = AttachPoint::SyscallEnter(tracepoint.to_string());
        let program = SYSCALL_ENTER_PROGRAMS[arity.clamp(1, 6) - 1];
        let reads = |p: &str| SYSCALL_ENTER_PROGRAMS.iter().position(|q| *q == p);
        let attached = match self.shared.get(&point) {
            Some((SharedLinkId::Tracepoint(p, _), _)) => reads(p),
            _ => None,
        };
        if attached.is_some_and(|a| a >= arity.clamp(1, 6) - 1) {
            self.share(&point);
            return Ok(HookLink::Shared(point));
        }
        let hook = "syscalls/sys_enter_*";
        let prog = loaded_program(&mut self.ebpf, program, hook, TracePoint::load)?;
        let link = prog
            .attach("syscalls", tracepoint)
            .map_err(|source| LoadError::Program {
                program,
                hook,
                source,
            })?;
        let users = match self.shared.remove(&point) {
            Some((old, users)) => {
                self.detach_shared(old);
                users + 1
            }
            None => 1,
        };
        self.shared.insert(
            point.clone(),
            (SharedLinkId::Tracepoint(program, link), users),
        );
        Ok(HookLink::Shared(point))
    }

    /// Counts one more user of an existing attachment.
    fn share(&mut self, point: &AttachPoint) -> bool {
        match self.shared.get_mut(point) {
            Some((_, users)) => {
                *users += 1;
                true
            }
            None => false,
        }
    }

    /// Attaches the programs that stand for the socket functions for one more hook (loading and
    /// attaching them on first use).
    pub fn attach_sock_state(&mut self) -> Result<HookLink, LoadError> {
        if let Some((_, users)) = self.sock_state.as_mut() {
            *users += 1;
            return Ok(HookLink::SockState);
        }
        let mut links = SockStateLinks {
            btf: Vec::new(),
            syscalls: Vec::new(),
        };
        let recv_tracepoint =
            std::path::Path::new("/sys/kernel/tracing/events/sock/sock_recv_length").exists();
        let mut btf_programs = vec![("vigil_sock_state", "inet_sock_set_state")];
        let mut syscalls: Vec<(&'static str, &'static str)> = SOCK_SYSCALL_PROGRAMS.to_vec();
        if recv_tracepoint {
            btf_programs.push(("vigil_sock_recv", "sock_recv_length"));
        } else {
            syscalls.extend(READ_FALLBACK_PROGRAMS);
        }
        if let Err(e) = self.attach_sock_programs(&btf_programs, &syscalls, &mut links) {
            self.detach_sock_state_links(links);
            return Err(e);
        }
        self.sock_state = Some((links, 1));
        Ok(HookLink::SockState)
    }

    /// Attaches the socket stand-ins' BTF and system call programs, recording each link as it
    /// is made (the caller detaches them all when one fails).
    fn attach_sock_programs(
        &mut self,
        btf_programs: &[(&'static str, &'static str)],
        syscalls: &[(&'static str, &'static str)],
        links: &mut SockStateLinks,
    ) -> Result<(), LoadError> {
        for &(program, tracepoint) in btf_programs {
            let hook = "tp_btf/inet_sock_set_state, tp_btf/sock_recv_length";
            let btf = &self.btf;
            let prog = loaded_program(&mut self.ebpf, program, hook, |p: &mut BtfTracePoint| {
                p.load(tracepoint, btf)
            })?;
            let link = prog.attach().map_err(|source| LoadError::Program {
                program,
                hook,
                source,
            })?;
            links.btf.push((program, link));
        }
        for &(program, tracepoint) in syscalls {
            let hook = "syscalls/sys_*_connect, sys_exit_accept*, sys_*_send*, sys_*_recv*, sys_*_read, sys_enter_write";
            let prog = loaded_program(&mut self.ebpf, program, hook, TracePoint::load)?;
            let link =
                prog.attach("syscalls", tracepoint)
                    .map_err(|source| LoadError::Program {
                        program,
                        hook,
                        source,
                    })?;
            links.syscalls.push((program, link));
        }
        Ok(())
    }

    fn detach_sock_state_links(&mut self, links: SockStateLinks) {
        for (program, link) in links.btf {
            if let Some(p) = self
                .ebpf
                .program_mut(program)
                .and_then(|p| <&mut BtfTracePoint>::try_from(p).ok())
            {
                let _ = p.detach(link);
            }
        }
        for (program, link) in links.syscalls {
            if let Some(p) = self
                .ebpf
                .program_mut(program)
                .and_then(|p| <&mut TracePoint>::try_from(p).ok())
            {
                let _ = p.detach(link);
            }
        }
    }

    fn detach_shared(&mut self, id: SharedLinkId) {
        let _ = match id {
            SharedLinkId::Kprobe(program, id) => self
                .ebpf
                .program_mut(program)
                .and_then(|p| <&mut KProbe>::try_from(p).ok())
                .map(|p| p.detach(id)),
            SharedLinkId::Tracepoint(program, id) => self
                .ebpf
                .program_mut(program)
                .and_then(|p| <&mut TracePoint>::try_from(p).ok())
                .map(|p| p.detach(id)),
        };
    }

    /// Detaches one generic hook link.
    pub fn detach_hook(&mut self, link: HookLink) {
        match link {
            HookLink::Shared(point) => {
                if let Some((_, users)) = self.shared.get_mut(&point) {
                    *users = users.saturating_sub(1);
                    if *users == 0 {
                        if let Some((id, _)) = self.shared.remove(&point) {
                            self.detach_shared(id);
                        }
                    }
                }
            }
            HookLink::SockState => {
                if let Some((_, users)) = self.sock_state.as_mut() {
                    *users = users.saturating_sub(1);
                    if *users == 0 {
                        if let Some((links, _)) = self.sock_state.take() {
                            self.detach_sock_state_links(links);
                        }
                    }
                }
            }
        }
    }

    /// Detaches and unloads the file-open policy programs (when the last policy goes, opens
    /// cost nothing again).
    pub fn detach_file_open(&mut self) {
        for program in FILE_OPEN_PROGRAMS {
            if let Some(p) = self.ebpf.program_mut(program) {
                let _ = match p {
                    aya::programs::Program::Lsm(p) => p.unload(),
                    aya::programs::Program::TracePoint(p) => p.unload(),
                    _ => Ok(()),
                };
            }
        }
    }

    /// Attaches the file-open policy programs: BPF LSM where the kernel runs it, else the open
    /// system calls' exit tracepoints. Returns how it attached. All or nothing: when one
    /// program fails, those attached are detached again.
    pub fn attach_file_open(&mut self, lsm: bool) -> Result<String, LoadError> {
        let attached = self.attach_file_open_programs(lsm);
        if attached.is_err() {
            self.detach_file_open();
        }
        attached
    }

    fn attach_file_open_programs(&mut self, lsm: bool) -> Result<String, LoadError> {
        if lsm {
            let (program, hook) = ("vigil_lsm_file_open", "lsm/file_open");
            let btf = &self.btf;
            let prog = loaded_program(&mut self.ebpf, program, hook, |p: &mut Lsm| {
                p.load("file_open", btf)
            })?;
            prog.attach().map_err(|source| LoadError::Program {
                program,
                hook,
                source,
            })?;
            return Ok("BPF LSM on file_open".into());
        }
        let mut attached = Vec::new();
        for (program, call) in [
            ("vigil_exit_openat", "openat"),
            ("vigil_exit_openat2", "openat2"),
            ("vigil_exit_open", "open"),
            ("vigil_exit_creat", "creat"),
        ] {
            let tracepoint = format!("sys_exit_{call}");
            // Not every architecture has every open syscall; the ones it has are all covered.
            if !std::path::Path::new("/sys/kernel/tracing/events/syscalls")
                .join(&tracepoint)
                .exists()
            {
                continue;
            }
            let hook = "syscalls/sys_exit_open*";
            let prog = loaded_program(&mut self.ebpf, program, hook, TracePoint::load)?;
            prog.attach("syscalls", &tracepoint)
                .map_err(|source| LoadError::Program {
                    program,
                    hook,
                    source,
                })?;
            attached.push(tracepoint);
        }
        Ok(format!("tracepoints {}", attached.join(", ")))
    }

    /// Takes the ring buffer (once).
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map("vigil_events")
            .ok_or_else(|| missing("vigil_events"))?;
        RingBuf::try_from(map).map_err(|e| map_err("vigil_events", e))
    }

    /// Records the kernel could not put in the ring buffer, by event kind, summed over CPUs.
    pub fn drops(&self) -> [u64; abi::DROP_SLOTS] {
        let mut out = [0u64; abi::DROP_SLOTS];
        for (slot, total) in out.iter_mut().enumerate() {
            if let Ok(per_cpu) = self.drops.get(&(slot as u32), 0) {
                *total = per_cpu.iter().sum();
            }
        }
        out
    }
}

/// The program `program` of `ebpf` as its kind `T`, loaded (with `load`) if it is not yet.
fn loaded_program<'a, T>(
    ebpf: &'a mut Ebpf,
    program: &'static str,
    hook: &'static str,
    load: impl FnOnce(&mut T) -> Result<(), ProgramError>,
) -> Result<&'a mut T, LoadError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    T: HasFd,
{
    let err = |source| LoadError::Program {
        program,
        hook,
        source,
    };
    let prog: &mut T = ebpf
        .program_mut(program)
        .ok_or_else(|| missing(program))?
        .try_into()
        .map_err(err)?;
    if !prog.is_loaded() {
        load(prog).map_err(err)?;
    }
    Ok(prog)
}

/// Whether a program is loaded in the kernel yet.
trait HasFd {
    fn is_loaded(&self) -> bool;
}

macro_rules! has_fd {
    ($($t:ty),*) => { $(impl HasFd for $t { fn is_loaded(&self) -> bool { self.fd().is_ok() } })* };
}
has_fd!(KProbe, TracePoint, Lsm, RawTracePoint, BtfTracePoint);

fn missing(name: &'static str) -> LoadError {
    LoadError::Map {
        name,
        detail: "not in the embedded object".into(),
    }
}

fn map_err(name: &'static str, e: impl std::fmt::Display) -> LoadError {
    LoadError::Map {
        name,
        detail: e.to_string(),
    }
}

/// Picks the cgroup hierarchy whose path identifies containers on this host: cgroup v2 when it
/// is the only one, else the v1 `memory` controller (which every container runtime uses).
pub fn cgroup_subsys_for_host() -> u32 {
    let Ok(own) = std::fs::read_to_string("/proc/self/cgroup") else {
        return abi::CGROUP_V2;
    };
    let v1_memory = own.lines().any(|l| {
        let mut f = l.splitn(3, ':');
        let (id, ctrls) = (f.next().unwrap_or("0"), f.next().unwrap_or(""));
        id != "0" && ctrls.split(',').any(|c| c == "memory")
    });
    if !v1_memory {
        return abi::CGROUP_V2;
    }
    // /proc/cgroups lists the compiled-in subsystems in the order of enum cgroup_subsys_id.
    std::fs::read_to_string("/proc/cgroups")
        .ok()
        .and_then(|t| {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .position(|l| l.split_whitespace().next() == Some("memory"))
        })
        .map(|i| i as u32)
        .unwrap_or(abi::CGROUP_V2)
}
