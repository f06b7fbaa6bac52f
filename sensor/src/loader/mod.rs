//! Loads the agent's eBPF object (process lifecycle, file-open evaluator, generic hooks and
//! the socket stand-ins, linked into one object that shares its maps), configures it and
//! attaches the lifecycle programs to their raw tracepoints; attaches and detaches the policy
//! programs where the attach plan says; reads the in-kernel drop counters.

use std::os::fd::AsFd;

use aya::{
    maps::{Array, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::{
        links::FdLink,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
        FEntry, KProbe, Lsm, ProgramError, RawTracePoint, TracePoint, UProbe,
    },
    Btf, BtfError, Ebpf, EbpfError, EbpfLoader, Endianness,
};
use thiserror::Error;
use vigil_bpf_kprobes::{abi, VIGIL_OBJ};

pub mod flows;
pub mod fmod_ret;
mod handover;
mod parallel;
pub mod pins;
pub use handover::Handover;
use parallel::LoadAs;
pub use parallel::ProgramLoad;
use pins::{ConfigPod, HeldLink, PinDir};

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
    /// A link could not be held as the agent holds every link (by descriptor, to pin it).
    #[error("program {program} ({hook}): cannot hold its link: {detail}")]
    Link {
        /// Program name.
        program: &'static str,
        /// The hook it goes to.
        hook: &'static str,
        /// aya's reason.
        detail: String,
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
    /// A uprobe (`ret`: uretprobe) on a function of a binary, by its hooks' key (the attach
    /// cookie its program reads), which names the place (file, symbol, offset) however the
    /// policy wrote its path: one place, one attachment.
    Uprobe { ret: bool, key: u64 },
    /// A system call's enter tracepoint.
    SyscallEnter(String),
    /// The fmod_ret program on a function that carries out the Overrides judged at `keys`.
    Override { function: String, keys: Vec<u64> },
    /// The policy tracepoint program of this slot.
    Tracepoint(u8),
    /// The raw tracepoint program of this slot.
    RawTracepoint(u8),
}

/// The tracepoint programs by slot, then the raw tracepoint programs by slot.
const TP_PROGRAMS: [&str; 2 * abi::TP_SLOTS] = [
    "vigil_tracepoint_0",
    "vigil_tracepoint_1",
    "vigil_tracepoint_2",
    "vigil_tracepoint_3",
    "vigil_raw_tp_0",
    "vigil_raw_tp_1",
    "vigil_raw_tp_2",
    "vigil_raw_tp_3",
];

/// `struct vigil_tp_fields` as a map value.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct TpFieldsPod(abi::TpFields);
// SAFETY: plain data of fixed layout, every bit pattern valid.
unsafe impl aya::Pod for TpFieldsPod {}

/// A shared attachment: the program attached and its link.
#[derive(Debug)]
struct SharedLink {
    program: &'static str,
    link: HeldLink,
}

/// The links of the programs that stand for the socket functions.
type SockStateLinks = Vec<HeldLink>;

/// The programs that stand for the socket functions, each with its tracepoint (category,
/// name): the TCP state changes, the system calls' entries and returns (one exit program
/// serves every return).
const SOCK_PROGRAMS: [(&str, &str, &str); 18] = [
    ("vigil_sock_state", "sock", "inet_sock_set_state"),
    ("vigil_connect_enter", "syscalls", "sys_enter_connect"),
    ("vigil_connect_enter", "syscalls", "sys_enter_sendmsg"),
    ("vigil_connect_enter", "syscalls", "sys_enter_sendmmsg"),
    ("vigil_connect_enter", "syscalls", "sys_enter_recvmsg"),
    ("vigil_connect_enter", "syscalls", "sys_enter_recvmmsg"),
    ("vigil_sendto_enter", "syscalls", "sys_enter_sendto"),
    ("vigil_sendto_enter", "syscalls", "sys_enter_recvfrom"),
    ("vigil_sock_syscall_exit", "syscalls", "sys_exit_connect"),
    ("vigil_sock_syscall_exit", "syscalls", "sys_exit_accept"),
    ("vigil_sock_syscall_exit", "syscalls", "sys_exit_accept4"),
    ("vigil_sock_syscall_exit", "syscalls", "sys_exit_sendto"),
    ("vigil_sock_syscall_exit", "syscalls", "sys_exit_sendmsg"),
    ("vigil_sock_syscall_exit", "syscalls", "sys_exit_sendmmsg"),
    ("vigil_sock_syscall_exit", "syscalls", "sys_exit_recvfrom"),
    ("vigil_sock_syscall_exit", "syscalls", "sys_exit_recvmsg"),
    ("vigil_sock_syscall_exit", "syscalls", "sys_exit_recvmmsg"),
    ("vigil_rw_enter", "syscalls", "sys_enter_write"),
];

/// Every receive on a socket (6.3+): read() on a connected UDP socket is served here.
const SOCK_RECV_PROGRAM: (&str, &str, &str) = ("vigil_sock_recv", "sock", "sock_recv_length");

/// Where the kernel has no `sock/sock_recv_length` tracepoint (before 6.3), read() on a
/// connected UDP socket is served by its entry and return, which every read() then pays for.
const READ_FALLBACK_PROGRAMS: [(&str, &str, &str); 2] = [
    ("vigil_rw_enter", "syscalls", "sys_enter_read"),
    ("vigil_sock_syscall_exit", "syscalls", "sys_exit_read"),
];

/// The syscall-enter programs of `hooks.bpf.c`, by the number of arguments they read.
const SYSCALL_ENTER_PROGRAMS: [&str; 7] = [
    "vigil_syscall_enter_0",
    "vigil_syscall_enter_1",
    "vigil_syscall_enter_2",
    "vigil_syscall_enter_3",
    "vigil_syscall_enter_4",
    "vigil_syscall_enter_5",
    "vigil_syscall_enter_6",
];

/// What runs the hooks for each program type that tail-calls one (see `hook_run.h`): the
/// runner program and the array its callers find it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runner {
    /// System call, socket and policy tracepoint programs.
    Tracepoint,
    /// Kprobe and kretprobe programs.
    Kprobe,
    /// Policy raw tracepoint programs.
    RawTracepoint,
}

impl Runner {
    fn program(self) -> &'static str {
        match self {
            Runner::Tracepoint => "vigil_tp_run_hooks",
            Runner::Kprobe => "vigil_kprobe_run_hooks",
            Runner::RawTracepoint => "vigil_raw_tp_run_hooks",
        }
    }

    fn array(self) -> &'static str {
        match self {
            Runner::Tracepoint => "vigil_tp_runner",
            Runner::Kprobe => "vigil_kprobe_runner",
            Runner::RawTracepoint => "vigil_raw_tp_runner",
        }
    }
}

/// A family of programs that policies' hooks attach with, as their attach plans chose: what
/// the agent loads, in parallel, before it attaches the first hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramNeed {
    /// Kprobes on kernel functions.
    Kprobe,
    /// Kretprobes on kernel functions.
    Kretprobe,
    /// Uprobes (`ret`: uretprobes) on functions of binaries.
    Uprobe {
        /// On the return.
        ret: bool,
    },
    /// System calls' enter tracepoints.
    SyscallEnter,
    /// What stands for the socket functions.
    SockState,
    /// The file-open evaluator, the way the plan chose.
    FileOpen(FileOpenVia),
}

/// How the file-open evaluator is attached: the rungs of the attach plan's ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOpenVia {
    /// BPF LSM on `file_open`.
    Lsm,
    /// fentry and fmod_ret on `security_file_open` ([`fmod_ret`]).
    FmodRet,
    /// The open system calls' exit tracepoints.
    Tracepoints,
}

impl FileOpenVia {
    /// The rung a file-open hook's plan chose, or None for a mechanism of other hooks.
    pub fn of(m: &vigil_policy_engine::plan::Mechanism) -> Option<FileOpenVia> {
        use vigil_policy_engine::plan::Mechanism;
        match m {
            Mechanism::Lsm(_) => Some(FileOpenVia::Lsm),
            Mechanism::FmodRet(_) => Some(FileOpenVia::FmodRet),
            Mechanism::SyscallTracepoints(_) => Some(FileOpenVia::Tracepoints),
            _ => None,
        }
    }
}

impl ProgramNeed {
    /// The programs (with how each loads) that the family uses, besides the small per-arity
    /// system call programs, which are loaded when attached.
    fn programs(self) -> Vec<(&'static str, LoadAs)> {
        let plain = |names: &[&'static str]| names.iter().map(|n| (*n, LoadAs::Plain)).collect();
        match self {
            ProgramNeed::Kprobe => plain(&["vigil_kprobe", Runner::Kprobe.program()]),
            ProgramNeed::Kretprobe => plain(&["vigil_kretprobe", Runner::Kprobe.program()]),
            ProgramNeed::Uprobe { ret } => plain(&[uprobe_program(ret), Runner::Kprobe.program()]),
            ProgramNeed::SyscallEnter => plain(&[Runner::Tracepoint.program()]),
            ProgramNeed::SockState => {
                let mut all: Vec<_> = sock_state_programs()
                    .into_iter()
                    .map(|(p, _, _)| (p, LoadAs::Plain))
                    .collect();
                all.push((Runner::Tracepoint.program(), LoadAs::Plain));
                all
            }
            ProgramNeed::FileOpen(FileOpenVia::Lsm) => {
                vec![("vigil_lsm_file_open", LoadAs::Lsm("file_open"))]
            }
            ProgramNeed::FileOpen(FileOpenVia::FmodRet) => {
                vec![(FILE_OPEN_FENTRY, LoadAs::FEntry(fmod_ret::FUNCTION))]
            }
            ProgramNeed::FileOpen(FileOpenVia::Tracepoints) => {
                plain(&[FILE_OPEN_EXIT, FILE_OPEN_COMPAT_EXIT])
            }
        }
    }
}

/// The socket stand-ins' programs with their tracepoints on this kernel: the receive
/// tracepoint where it exists (6.3+), else read()'s entry and return.
fn sock_state_programs() -> Vec<(&'static str, &'static str, &'static str)> {
    let mut all = SOCK_PROGRAMS.to_vec();
    if std::path::Path::new("/sys/kernel/tracing/events/sock/sock_recv_length").exists() {
        all.push(SOCK_RECV_PROGRAM);
    } else {
        all.extend(READ_FALLBACK_PROGRAMS);
    }
    all
}

/// The exit tracepoints of the open system calls this architecture has (the ones it has are
/// all covered), for [`FILE_OPEN_EXIT`].
fn file_open_exits() -> Vec<String> {
    vigil_policy_engine::plan::OPEN_SYSCALLS
        .into_iter()
        .map(|call| format!("sys_exit_{call}"))
        .filter(|tp| {
            std::path::Path::new("/sys/kernel/tracing/events/syscalls")
                .join(tp)
                .exists()
        })
        .collect()
}

/// The programs of `policy.bpf.c` that enforce on file opens.
const FILE_OPEN_PROGRAMS: [&str; 4] = [
    "vigil_lsm_file_open",
    FILE_OPEN_FENTRY,
    FILE_OPEN_EXIT,
    FILE_OPEN_COMPAT_EXIT,
];

/// The program of `policy.bpf.c` on the raw `sys_exit` tracepoint, for 32-bit opens.
const FILE_OPEN_COMPAT_EXIT: &str = "vigil_exit_compat_open";

/// The program of `policy.bpf.c` that judges opens for the fmod_ret program.
const FILE_OPEN_FENTRY: &str = "vigil_fentry_file_open";

/// The program of `policy.bpf.c` attached to every open system call's exit.
const FILE_OPEN_EXIT: &str = "vigil_exit_open";

/// The programs of `process.bpf.c` and the raw tracepoint each attaches to.
pub const ATTACH_PLAN: [(&str, &str); 3] = [
    ("vigil_fork", "sched_process_fork"),
    ("vigil_exec", "sched_process_exec"),
    ("vigil_exit", "sched_process_exit"),
];

/// Options for [`LoadedObject::load`].
pub struct LoadOptions<'a> {
    /// Kernel BTF file.
    pub btf_path: &'a str,
    /// Ring buffer size in bytes (a power of two, a multiple of the page size).
    pub ringbuf_bytes: u32,
    /// cgroup v1 subsystem to report, or [`abi::CGROUP_V2`].
    pub cgroup_subsys: u32,
    /// Where links and maps are pinned, and whether this agent's are (see [`pins`]).
    pub pins: PinDir,
}

/// The agent's loaded eBPF object: every program and map, and the links of those attached.
/// Dropping it detaches them.
pub struct LoadedObject {
    ebpf: Ebpf,
    btf: Btf,
    pins: PinDir,
    /// The lifecycle programs' links, held for their descriptors (and pins).
    _lifecycle: Vec<HeldLink>,
    /// The file-open programs' links.
    file_open: Vec<HeldLink>,
    /// The encryption-awareness programs' links ([`flows`]), and the node's network namespace
    /// they judge packets in.
    flow_links: Vec<HeldLink>,
    flow_netns: u32,
    flow_flags: u32,
    drops: PerCpuArray<MapData, u64>,
    /// See [`LoadedObject::runner_misses`].
    runner_misses: PerCpuArray<MapData, u64>,
    /// The socket stand-ins' links and how many hooks use them: one attachment serves them all
    /// (each finds its own description by key), since two would run them twice per call.
    sock_state: Option<(SockStateLinks, usize)>,
    /// The kprobe and tracepoint attachments and how many hooks use each.
    shared: std::collections::HashMap<AttachPoint, (SharedLink, usize)>,
    /// The runners in their arrays.
    runners: Vec<Runner>,
}

impl LoadedObject {
    /// Loads, configures and attaches every program of [`ATTACH_PLAN`], and loads (without
    /// attaching) the programs of `needs`; all are verified in parallel. Returns each load's
    /// time. A program of `needs` the kernel refuses is left unloaded: the policy that attaches
    /// it is refused with the kernel's reason then.
    pub fn load(
        opts: LoadOptions,
        needs: &[ProgramNeed],
    ) -> Result<(Self, Vec<ProgramLoad>), LoadError> {
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
                    stopping: 0,
                    _pad0: 0,
                    agent_start_ticks: procfs::process::Process::myself()
                        .and_then(|p| p.stat())
                        .map(|s| s.starttime)
                        .unwrap_or(0),
                    tick_ns: 1_000_000_000 / crate::system::clk_tck(),
                    drops_seen: 0,
                    successor_tgid: 0,
                    _pad1: 0,
                    successor_start_ticks: 0,
                }),
                0,
            )
            .map_err(|e| map_err("vigil_config_map", e))?;

        // Before any map is taken out of the object: the pins keep the tail-call arrays (which
        // the kernel empties when nothing holds them) and the counters a next agent reads.
        let mut pins = opts.pins;
        pins.pin_maps(&ebpf).map_err(|e| map_err("(pinning)", e))?;
        let drops_map = ebpf
            .take_map("vigil_drops")
            .ok_or_else(|| missing("vigil_drops"))?;
        let drops = PerCpuArray::try_from(drops_map).map_err(|e| map_err("vigil_drops", e))?;
        let misses_map = ebpf
            .take_map("vigil_runner_misses")
            .ok_or_else(|| missing("vigil_runner_misses"))?;
        let runner_misses =
            PerCpuArray::try_from(misses_map).map_err(|e| map_err("vigil_runner_misses", e))?;

        let mut wanted: Vec<(&'static str, LoadAs)> = ATTACH_PLAN
            .iter()
            .map(|(p, _)| (*p, LoadAs::Plain))
            .collect();
        for need in needs {
            wanted.extend(need.programs());
        }
        wanted.dedup();
        let mut loads = parallel::load_all(&mut ebpf, &btf, &wanted);
        let mut lifecycle = Vec::new();
        for (program, hook) in ATTACH_PLAN {
            if let Some(source) = loads
                .iter_mut()
                .find(|l| l.name == program)
                .and_then(|l| l.error.take())
            {
                return Err(LoadError::Program {
                    program,
                    hook,
                    source,
                });
            }
            let prog = loaded_program(&mut ebpf, program, hook, RawTracePoint::load)?;
            let err = |source| LoadError::Program {
                program,
                hook,
                source,
            };
            let id = prog.attach(hook).map_err(err)?;
            let link = prog.take_link(id).map_err(err)?;
            lifecycle.push(hold(&mut pins, link, program, hook)?);
        }
        Ok((
            LoadedObject {
                ebpf,
                btf,
                pins,
                _lifecycle: lifecycle,
                file_open: Vec::new(),
                flow_links: Vec::new(),
                flow_netns: 0,
                flow_flags: 0,
                drops,
                runner_misses,
                sock_state: None,
                shared: Default::default(),
                runners: Vec::new(),
            },
            loads,
        ))
    }

    /// Puts `runner` in its array (loading it unless it is), before a program that tail-calls
    /// it is attached: a call that finds the array empty would run no hook.
    fn ensure_runner(&mut self, runner: Runner) -> Result<(), LoadError> {
        if self.runners.contains(&runner) {
            return Ok(());
        }
        let (program, hook) = (runner.program(), "the hook runner");
        let err = |source| LoadError::Program {
            program,
            hook,
            source,
        };
        let fd = match runner {
            Runner::Tracepoint => {
                loaded_program(&mut self.ebpf, program, hook, TracePoint::load)?.fd()
            }
            Runner::Kprobe => loaded_program(&mut self.ebpf, program, hook, KProbe::load)?.fd(),
            Runner::RawTracepoint => {
                loaded_program(&mut self.ebpf, program, hook, RawTracePoint::load)?.fd()
            }
        }
        .map_err(err)?
        .try_clone()
        .map_err(|e| map_err(runner.array(), e))?;
        let map = self
            .ebpf
            .map_mut(runner.array())
            .ok_or_else(|| missing(runner.array()))?;
        ProgramArray::try_from(map)
            .map_err(|e| map_err(runner.array(), e))?
            .set(0, &fd, 0)
            .map_err(|e| map_err(runner.array(), e))?;
        self.runners.push(runner);
        Ok(())
    }

    /// Tells every program that the agent is stopping: from now on no policy acts (no hook
    /// runs, no file open is judged), so the programs the kernel detaches after the agent has
    /// exited (see [`Handover`]) cannot act on a process, a next agent included.
    pub fn stop_policies(&mut self) -> Result<(), LoadError> {
        self.update_config(|c| c.stopping = 1)
    }

    /// Records in the config the ring-buffer drops the agent has read and reported, so that a
    /// next agent reports only the rest as lost while no agent read.
    pub fn set_drops_seen(&mut self, total: u64) -> Result<(), LoadError> {
        self.update_config(|c| c.drops_seen = total)
    }

    fn update_config(&mut self, change: impl FnOnce(&mut abi::Config)) -> Result<(), LoadError> {
        let map = self
            .ebpf
            .map_mut("vigil_config_map")
            .ok_or_else(|| missing("vigil_config_map"))?;
        let mut config: Array<_, ConfigPod> =
            Array::try_from(map).map_err(|e| map_err("vigil_config_map", e))?;
        let ConfigPod(mut c) = config
            .get(&0, 0)
            .map_err(|e| map_err("vigil_config_map", e))?;
        change(&mut c);
        config
            .set(0, ConfigPod(c), 0)
            .map_err(|e| map_err("vigil_config_map", e))
    }

    /// The pin directory.
    pub fn pins(&self) -> &PinDir {
        &self.pins
    }

    /// Calls whose hooks did not run because a runner was missing from its array, summed over
    /// CPUs (zero unless the arrays were emptied or tampered with).
    pub fn runner_misses(&self) -> u64 {
        self.runner_misses
            .get(&0, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
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
        let (program, hook) = if ret {
            ("vigil_kretprobe", "kretprobe")
        } else {
            ("vigil_kprobe", "kprobe")
        };
        self.attach_shared(
            point,
            Runner::Kprobe,
            (program, hook, hook),
            KProbe::load,
            |p: &mut KProbe| p.attach(function, 0).and_then(|id| p.take_link(id)),
        )
    }

    /// Attaches the uprobe (`ret`: uretprobe) program to `target` for every process, with
    /// `key` as the cookie it finds its hooks by, or counts one more user of that attachment.
    pub fn attach_uprobe(
        &mut self,
        target: &vigil_policy_engine::hook_rule::UprobeTarget,
        ret: bool,
        key: u64,
    ) -> Result<HookLink, LoadError> {
        let point = AttachPoint::Uprobe { ret, key };
        let program = uprobe_program(ret);
        let hook = if ret { "uretprobe" } else { "uprobe" };
        let location = match &target.symbol {
            Some(s) => UProbeAttachLocation::SymbolOffset(s, target.offset),
            None => UProbeAttachLocation::AbsoluteOffset(target.offset),
        };
        let point_with_cookie = UProbeAttachPoint {
            location,
            cookie: Some(key),
        };
        self.attach_shared(
            point,
            Runner::Kprobe,
            (program, hook, hook),
            UProbe::load,
            |p: &mut UProbe| {
                p.attach(point_with_cookie, &target.file, UProbeScope::AllProcesses)
                    .and_then(|id| p.take_link(id))
            },
        )
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
        let program = SYSCALL_ENTER_PROGRAMS[arity.min(6)];
        let reads = |p: &str| SYSCALL_ENTER_PROGRAMS.iter().position(|q| *q == p);
        let attached = match self.shared.get(&point) {
            Some((SharedLink { program, .. }, _)) => reads(program),
            _ => None,
        };
        if attached.is_some_and(|a| a >= arity.min(6)) {
            self.share(&point);
            return Ok(HookLink::Shared(point));
        }
        let hook = "syscalls/sys_enter_*";
        self.ensure_runner(Runner::Tracepoint)?;
        let prog = loaded_program(&mut self.ebpf, program, hook, TracePoint::load)?;
        let err = |source| LoadError::Program {
            program,
            hook,
            source,
        };
        let id = prog.attach("syscalls", tracepoint).map_err(err)?;
        let link = prog.take_link(id).map_err(err)?;
        let link = hold(&mut self.pins, link, program, tracepoint)?;
        let users = match self.shared.remove(&point) {
            Some((old, users)) => {
                old.link.release();
                users + 1
            }
            None => 1,
        };
        self.shared
            .insert(point.clone(), (SharedLink { program, link }, users));
        Ok(HookLink::Shared(point))
    }

    /// Attaches the policy tracepoint program of `slot` to `subsystem/event`, its fields laid
    /// out as `fields` (the same for every hook on it), or counts one more user of it.
    pub fn attach_tracepoint(
        &mut self,
        subsystem: &str,
        event: &str,
        slot: u8,
        fields: abi::TpFields,
    ) -> Result<HookLink, LoadError> {
        let point = AttachPoint::Tracepoint(slot);
        if self.share(&point) {
            return Ok(HookLink::Shared(point));
        }
        let key = abi::HOOK_KEY_TP | slot as u64;
        {
            let map = self
                .ebpf
                .map_mut("vigil_tp_fields")
                .ok_or_else(|| missing("vigil_tp_fields"))?;
            let mut map: aya::maps::HashMap<_, u64, TpFieldsPod> =
                aya::maps::HashMap::try_from(map).map_err(|e| map_err("vigil_tp_fields", e))?;
            map.insert(key, TpFieldsPod(fields), 0)
                .map_err(|e| map_err("vigil_tp_fields", e))?;
        }
        self.attach_shared(
            point,
            Runner::Tracepoint,
            (
                TP_PROGRAMS[slot as usize % abi::TP_SLOTS],
                "a policy's tracepoint",
                event,
            ),
            TracePoint::load,
            |p: &mut TracePoint| p.attach(subsystem, event).and_then(|id| p.take_link(id)),
        )
    }

    /// Attaches the raw tracepoint program of `slot` to `event`, or counts one more user of it.
    pub fn attach_raw_tracepoint(&mut self, event: &str, slot: u8) -> Result<HookLink, LoadError> {
        self.attach_shared(
            AttachPoint::RawTracepoint(slot),
            Runner::RawTracepoint,
            (
                TP_PROGRAMS[abi::TP_SLOTS + slot as usize % abi::TP_SLOTS],
                "a policy's raw tracepoint",
                event,
            ),
            RawTracePoint::load,
            |p: &mut RawTracePoint| p.attach(event).and_then(|id| p.take_link(id)),
        )
    }

    /// Counts one more user of `point` where it is attached; otherwise loads `program` (with
    /// `load`, its runner first), attaches it (`attach` returns the link) and holds the link,
    /// pinned as `<program>-<pin_as>`, as the point's first user. `what` is (program, the hook
    /// errors name, pin_as).
    fn attach_shared<T, L>(
        &mut self,
        point: AttachPoint,
        runner: Runner,
        what: (&'static str, &'static str, &str),
        load: impl FnOnce(&mut T) -> Result<(), ProgramError>,
        attach: impl FnOnce(&mut T) -> Result<L, ProgramError>,
    ) -> Result<HookLink, LoadError>
    where
        for<'a> &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
        T: HasFd,
        FdLink: TryFrom<L>,
        <FdLink as TryFrom<L>>::Error: std::fmt::Display,
    {
        if self.share(&point) {
            return Ok(HookLink::Shared(point));
        }
        let (program, hook, pin_as) = what;
        self.ensure_runner(runner)?;
        let prog = loaded_program(&mut self.ebpf, program, hook, load)?;
        let link = attach(prog).map_err(|source| LoadError::Program {
            program,
            hook,
            source,
        })?;
        let link = hold(&mut self.pins, link, program, pin_as)?;
        self.shared
            .insert(point.clone(), (SharedLink { program, link }, 1));
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
        self.ensure_runner(Runner::Tracepoint)?;
        let mut links = SockStateLinks::new();
        if let Err(e) = self.attach_sock_programs(&mut links) {
            links.into_iter().for_each(HeldLink::release);
            return Err(e);
        }
        self.sock_state = Some((links, 1));
        Ok(HookLink::SockState)
    }

    /// Attaches the socket stand-ins' programs, recording each link as it is made (the caller
    /// detaches them all when one fails).
    fn attach_sock_programs(&mut self, links: &mut SockStateLinks) -> Result<(), LoadError> {
        for (program, category, tracepoint) in sock_state_programs() {
            let hook = "sock/inet_sock_set_state, sock/sock_recv_length, syscalls/sys_*_connect, sys_exit_accept*, sys_*_send*, sys_*_recv*, sys_*_read, sys_enter_write";
            let prog = loaded_program(&mut self.ebpf, program, hook, TracePoint::load)?;
            let err = |source| LoadError::Program {
                program,
                hook,
                source,
            };
            let id = prog.attach(category, tracepoint).map_err(err)?;
            let link = prog.take_link(id).map_err(err)?;
            links.push(hold(&mut self.pins, link, program, tracepoint)?);
        }
        Ok(())
    }

    /// Detaches one generic hook link.
    pub fn detach_hook(&mut self, link: HookLink) {
        match link {
            HookLink::Shared(point) => {
                if let Some((_, users)) = self.shared.get_mut(&point) {
                    *users = users.saturating_sub(1);
                    if *users == 0 {
                        if let Some((shared, _)) = self.shared.remove(&point) {
                            shared.link.release();
                        }
                    }
                }
            }
            HookLink::SockState => {
                if let Some((_, users)) = self.sock_state.as_mut() {
                    *users = users.saturating_sub(1);
                    if *users == 0 {
                        if let Some((links, _)) = self.sock_state.take() {
                            links.into_iter().for_each(HeldLink::release);
                        }
                    }
                }
            }
        }
    }

    /// Detaches and unloads the file-open policy programs (when the last policy goes, opens
    /// cost nothing again).
    pub fn detach_file_open(&mut self) {
        self.file_open.drain(..).for_each(HeldLink::release);
        for program in FILE_OPEN_PROGRAMS {
            if let Some(p) = self.ebpf.program_mut(program) {
                let _ = match p {
                    aya::programs::Program::Lsm(p) => p.unload(),
                    aya::programs::Program::FEntry(p) => p.unload(),
                    aya::programs::Program::TracePoint(p) => p.unload(),
                    aya::programs::Program::RawTracePoint(p) => p.unload(),
                    _ => Ok(()),
                };
            }
        }
    }

    /// Attaches the file-open policy programs the way the plan chose. Returns how it attached.
    /// All or nothing: when one program fails, those attached are detached again.
    pub fn attach_file_open(&mut self, via: FileOpenVia) -> Result<String, LoadError> {
        let attached = self.attach_file_open_programs(via);
        if attached.is_err() {
            self.detach_file_open();
        }
        attached
    }

    fn attach_file_open_programs(&mut self, via: FileOpenVia) -> Result<String, LoadError> {
        if via == FileOpenVia::FmodRet {
            return self.attach_fmod_ret();
        }
        if via == FileOpenVia::Lsm {
            let (program, hook) = ("vigil_lsm_file_open", "lsm/file_open");
            let btf = &self.btf;
            let prog = loaded_program(&mut self.ebpf, program, hook, |p: &mut Lsm| {
                p.load("file_open", btf)
            })?;
            let err = |source| LoadError::Program {
                program,
                hook,
                source,
            };
            let id = prog.attach().map_err(err)?;
            let link = prog.take_link(id).map_err(err)?;
            self.file_open
                .push(hold(&mut self.pins, link, program, "file_open")?);
            return Ok("BPF LSM on file_open".into());
        }
        let mut attached = Vec::new();
        for tracepoint in file_open_exits() {
            let (program, hook) = (FILE_OPEN_EXIT, "syscalls/sys_exit_open*");
            let prog = loaded_program(&mut self.ebpf, program, hook, TracePoint::load)?;
            let err = |source| LoadError::Program {
                program,
                hook,
                source,
            };
            let id = prog.attach("syscalls", &tracepoint).map_err(err)?;
            let link = prog.take_link(id).map_err(err)?;
            self.file_open
                .push(hold(&mut self.pins, link, program, &tracepoint)?);
            attached.push(tracepoint);
        }
        let (program, hook) = (FILE_OPEN_COMPAT_EXIT, "sys_exit");
        let prog = loaded_program(&mut self.ebpf, program, hook, RawTracePoint::load)?;
        let err = |source| LoadError::Program {
            program,
            hook,
            source,
        };
        let id = prog.attach(hook).map_err(err)?;
        let link = prog.take_link(id).map_err(err)?;
        self.file_open
            .push(hold(&mut self.pins, link, program, hook)?);
        Ok(format!(
            "tracepoints {}, and the raw sys_exit for 32-bit opens",
            attached.join(", ")
        ))
    }

    /// A map of verdicts fmod_ret programs carry out: the file-open judge's
    /// (`vigil_fmod_verdicts`) or the generic hooks' Overrides (`vigil_override_verdicts`).
    fn fmod_verdicts(&self, name: &'static str) -> Result<std::os::fd::OwnedFd, LoadError> {
        match self.ebpf.map(name) {
            Some(aya::maps::Map::LruHashMap(m) | aya::maps::Map::HashMap(m)) => {
                m.fd().as_fd().try_clone_to_owned()
            }
            _ => return Err(missing(name)),
        }
        .map_err(|e| map_err(name, e))
    }

    /// Attaches the fmod_ret program that carries out the Overrides judged at `keys` to
    /// `function`, or counts one more user of it.
    pub fn attach_override(&mut self, function: &str, keys: &[u64]) -> Result<HookLink, LoadError> {
        let point = AttachPoint::Override {
            function: function.to_string(),
            keys: keys.to_vec(),
        };
        if self.share(&point) {
            return Ok(HookLink::Shared(point));
        }
        let (program, hook) = ("vigil_fmodret", "fmod_ret (Override)");
        let raw = |detail: String| LoadError::Link {
            program,
            hook,
            detail,
        };
        let verdicts = self.fmod_verdicts("vigil_override_verdicts")?;
        let link = fmod_ret::attach_over(
            &self.btf,
            function,
            verdicts.as_fd(),
            &fmod_ret::VerdictFor::Keys(keys.to_vec()),
        )
        .map_err(raw)?;
        let link = self
            .pins
            .hold_raw(link, &format!("vigil_fmodret-{function}"))
            .map_err(|e| raw(e.to_string()))?;
        self.shared
            .insert(point.clone(), (SharedLink { program, link }, 1));
        Ok(HookLink::Shared(point))
    }

    /// fmod_ret on `security_file_open` first (it denies nothing until the fentry program
    /// judges), then the fentry program that judges.
    fn attach_fmod_ret(&mut self) -> Result<String, LoadError> {
        let (program, hook) = ("vigil_fmodret", "fmod_ret/security_file_open");
        let raw = |detail: String| LoadError::Link {
            program,
            hook,
            detail,
        };
        let verdicts = self.fmod_verdicts("vigil_fmod_verdicts")?;
        let link = fmod_ret::attach_over(
            &self.btf,
            fmod_ret::FUNCTION,
            verdicts.as_fd(),
            &fmod_ret::VerdictFor::File,
        )
        .map_err(raw)?;
        let held = self
            .pins
            .hold_raw(link, "vigil_fmodret-security_file_open")
            .map_err(|e| raw(e.to_string()))?;
        self.file_open.push(held);
        let (program, hook) = (FILE_OPEN_FENTRY, "fentry/security_file_open");
        let btf = &self.btf;
        let prog = loaded_program(&mut self.ebpf, program, hook, |p: &mut FEntry| {
            p.load(fmod_ret::FUNCTION, btf)
        })?;
        let err = |source| LoadError::Program {
            program,
            hook,
            source,
        };
        let id = prog.attach().map_err(err)?;
        let link = prog.take_link(id).map_err(err)?;
        self.file_open
            .push(hold(&mut self.pins, link, program, fmod_ret::FUNCTION)?);
        Ok(format!(
            "fentry and fmod_ret on {} (BPF LSM is not active here)",
            fmod_ret::FUNCTION
        ))
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
        for per_cpu in self.drops_by_cpu() {
            for (total, n) in out.iter_mut().zip(per_cpu) {
                *total += n;
            }
        }
        out
    }

    /// The same per CPU (index: the CPU's number).
    pub fn drops_by_cpu(&self) -> Vec<[u64; abi::DROP_SLOTS]> {
        let mut out: Vec<[u64; abi::DROP_SLOTS]> = Vec::new();
        for slot in 0..abi::DROP_SLOTS {
            let Ok(per_cpu) = self.drops.get(&(slot as u32), 0) else {
                continue;
            };
            if out.len() < per_cpu.len() {
                out.resize(per_cpu.len(), [0; abi::DROP_SLOTS]);
            }
            for (cpu, n) in per_cpu.iter().enumerate() {
                out[cpu][slot] = *n;
            }
        }
        out
    }

    /// Each loaded program of the agent's object with the kernel's run count and run time
    /// (counted only while `bpf_stats` are on).
    pub fn program_runs(&self) -> Vec<(String, u64, std::time::Duration)> {
        self.ebpf
            .programs()
            .filter_map(|(name, p)| {
                let info = p.info().ok()?;
                Some((name.to_string(), info.run_count(), info.run_time()))
            })
            .collect()
    }
}

/// Holds `link` as the agent holds every link: by its descriptor, pinned in the agent's
/// generation when it persists. A link the kernel made without a BPF link (perf events
/// before Linux 5.15) cannot be held so; vigil's hooks need 5.17 (`bpf_loop`) anyway.
fn hold<L>(
    pins: &mut PinDir,
    link: L,
    program: &'static str,
    hook: &str,
) -> Result<HeldLink, LoadError>
where
    FdLink: TryFrom<L>,
    <FdLink as TryFrom<L>>::Error: std::fmt::Display,
{
    let fd = FdLink::try_from(link).map_err(|e| LoadError::Link {
        program,
        hook: "attach",
        detail: format!("{e} (a BPF link is needed: Linux 5.15 or later)"),
    })?;
    pins.hold(fd, &format!("{program}-{hook}"))
        .map_err(|e| LoadError::Link {
            program,
            hook: "pin",
            detail: e.to_string(),
        })
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

/// The generic uprobe program (`ret`: the uretprobe one).
fn uprobe_program(ret: bool) -> &'static str {
    if ret {
        "vigil_uretprobe"
    } else {
        "vigil_uprobe"
    }
}

/// Whether a program is loaded in the kernel yet.
trait HasFd {
    fn is_loaded(&self) -> bool;
}

macro_rules! has_fd {
    ($($t:ty),*) => { $(impl HasFd for $t { fn is_loaded(&self) -> bool { self.fd().is_ok() } })* };
}
has_fd!(
    KProbe,
    TracePoint,
    Lsm,
    RawTracePoint,
    FEntry,
    UProbe,
    aya::programs::BtfTracePoint
);

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
