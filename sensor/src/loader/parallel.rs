//! Loading the agent's programs in parallel.
//!
//! The kernel verifies a program when it is loaded, and verifies privileged loads concurrently,
//! so the programs a start needs are loaded on one thread each: the start waits for the slowest
//! verification, not for their sum.

use std::time::{Duration, Instant};

use aya::{
    programs::{Program, ProgramError},
    Btf, Ebpf,
};

/// How a program is loaded: LSM programs name the hook they are verified against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadAs {
    /// Tracepoint, raw tracepoint and kprobe programs.
    Plain,
    /// A BPF LSM program, for this hook.
    Lsm(&'static str),
    /// An fentry program, on this kernel function.
    FEntry(&'static str),
}

/// One program's load.
#[derive(Debug)]
pub struct ProgramLoad {
    /// The program.
    pub name: &'static str,
    /// How long the kernel took to verify it.
    pub took: Duration,
    /// Why the kernel refused it.
    pub error: Option<ProgramError>,
}

/// Loads the programs of `wanted` that are not loaded yet, each on its own thread.
pub fn load_all(ebpf: &mut Ebpf, btf: &Btf, wanted: &[(&'static str, LoadAs)]) -> Vec<ProgramLoad> {
    let jobs: Vec<(&'static str, LoadAs, &mut Program)> = ebpf
        .programs_mut()
        .filter(|(_, p)| p.fd().is_err())
        .filter_map(|(name, p)| {
            let (name, how) = wanted.iter().find(|(w, _)| *w == name)?;
            Some((*name, *how, p))
        })
        .collect();
    std::thread::scope(|scope| {
        let threads: Vec<_> = jobs
            .into_iter()
            .map(|(name, how, program)| {
                scope.spawn(move || {
                    let start = Instant::now();
                    let error = load_one(program, how, btf).err();
                    ProgramLoad {
                        name,
                        took: start.elapsed(),
                        error,
                    }
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

fn load_one(program: &mut Program, how: LoadAs, btf: &Btf) -> Result<(), ProgramError> {
    match (program, how) {
        (Program::TracePoint(p), _) => p.load(),
        (Program::KProbe(p), _) => p.load(),
        (Program::UProbe(p), _) => p.load(),
        (Program::RawTracePoint(p), _) => p.load(),
        (Program::Lsm(p), LoadAs::Lsm(hook)) => p.load(hook, btf),
        (Program::FEntry(p), LoadAs::FEntry(function)) => p.load(function, btf),
        // A kind the agent does not use, or a table entry that does not match its program:
        // the attach that needs it loads it and says what is wrong.
        _ => Ok(()),
    }
}
