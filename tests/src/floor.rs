//! The floor of the agent's hooks: programs that do nothing (`floor.bpf.c`), attached where a
//! running agent's programs are attached, so that a benchmark measures what the kernel charges
//! for hooking those points (the system call slow path every call takes once any system call
//! tracepoint is on, the tracepoint's dispatch) apart from what vigil's programs add on top.
//!
//! The points are read from the kernel, not from the agent: each BPF link the agent holds is a
//! descriptor whose `/proc/<pid>/fdinfo` names its tracepoint (Linux 6.6 and later for perf
//! links), so the floor follows whatever the shipped policies attach on this kernel.

use std::collections::BTreeSet;

use aya::{
    programs::{Program, RawTracePoint, TracePoint},
    Ebpf,
};

/// One place a program of the agent runs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FloorPoint {
    /// A tracepoint through a perf event (`category/name` under the tracing directory).
    Tracepoint { category: String, name: String },
    /// A raw tracepoint (`sys_exit`, `sched_process_exec`, ...).
    RawTracepoint(String),
}

impl std::fmt::Display for FloorPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FloorPoint::Tracepoint { category, name } => write!(f, "tracepoint {category}/{name}"),
            FloorPoint::RawTracepoint(name) => write!(f, "raw tracepoint {name}"),
        }
    }
}

/// The tracing directory's `events/`, where a tracepoint's category is found by its name.
fn events_dir() -> std::path::PathBuf {
    [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.is_dir())
    .expect("the tracing directory (tracefs) is mounted")
}

/// The category of tracepoint `name` (`syscalls` for `sys_enter_write`).
fn category_of(events: &std::path::Path, name: &str) -> String {
    std::fs::read_dir(events)
        .expect("events directory")
        .flatten()
        .find(|c| c.path().join(name).is_dir())
        .map(|c| c.file_name().to_string_lossy().into_owned())
        .unwrap_or_else(|| panic!("no tracepoint named {name} under {}", events.display()))
}

/// Every point process `pid`'s BPF links attach a program to. A link of a kind the floor has
/// no program for (a kprobe, a BTF tracepoint) fails the benchmark, naming it: its floor would
/// be missing from the table.
pub fn attach_points(pid: u32) -> Vec<FloorPoint> {
    let events = events_dir();
    let mut points = BTreeSet::new();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the agent's descriptors");
    for fd in fds.flatten() {
        let is_link = std::fs::read_link(fd.path())
            .map(|t| t.to_string_lossy() == "anon_inode:bpf_link")
            .unwrap_or(false);
        if !is_link {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        )) else {
            continue; // closed since it was listed
        };
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        };
        let (kind, name) = (field("link_type"), field("tp_name"));
        let point = match (kind.as_deref(), name, field("event_type").as_deref()) {
            (Some("raw_tracepoint"), Some(name), _) => FloorPoint::RawTracepoint(name),
            (Some("perf"), Some(name), Some("tracepoint")) => FloorPoint::Tracepoint {
                category: category_of(&events, &name),
                name,
            },
            _ => panic!("the floor has no program for the agent's link {info:?}"),
        };
        points.insert(point);
    }
    assert!(!points.is_empty(), "process {pid} holds no BPF link");
    points.into_iter().collect()
}

/// No-op programs attached at a set of points; dropping it detaches them.
pub struct Floor {
    _ebpf: Ebpf,
}

/// The floor object's program `name`, as its kind `P`.
fn program<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut P
where
    &'a mut P: TryFrom<&'a mut Program>,
    <&'a mut P as TryFrom<&'a mut Program>>::Error: std::fmt::Debug,
{
    let prog = ebpf
        .program_mut(name)
        .unwrap_or_else(|| panic!("the floor object has no program {name}"));
    prog.try_into()
        .unwrap_or_else(|e| panic!("{name} is not of the expected kind: {e:?}"))
}

const TRACEPOINT: &str = "vigil_floor_tracepoint";
const RAW_TRACEPOINT: &str = "vigil_floor_raw_tracepoint";

impl Floor {
    /// Loads the no-op programs and attaches one at each point.
    pub fn attach(points: &[FloorPoint]) -> Floor {
        let mut ebpf = Ebpf::load(vigil_bpf_kprobes::FLOOR_OBJ).expect("load the floor object");
        program::<TracePoint>(&mut ebpf, TRACEPOINT)
            .load()
            .expect("load the floor's tracepoint program");
        program::<RawTracePoint>(&mut ebpf, RAW_TRACEPOINT)
            .load()
            .expect("load the floor's raw tracepoint program");
        for p in points {
            let attached = match p {
                FloorPoint::Tracepoint { category, name } => {
                    program::<TracePoint>(&mut ebpf, TRACEPOINT)
                        .attach(category, name)
                        .map(drop)
                }
                FloorPoint::RawTracepoint(name) => {
                    program::<RawTracePoint>(&mut ebpf, RAW_TRACEPOINT)
                        .attach(name)
                        .map(drop)
                }
            };
            attached.unwrap_or_else(|e| panic!("attach the floor at {p}: {e}"));
        }
        Floor { _ebpf: ebpf }
    }
}
