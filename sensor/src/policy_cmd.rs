//! `vigil policy ...`: policy files checked the way the agent will check them before loading.

use std::path::PathBuf;

use anyhow::{bail, Result};
use vigil_policy_engine::{kernel::RunningKernel, load_policy_for, KernelSymbols, Mode};

/// Checks every file; prints each problem on its own line (stdout) and a verdict per file.
/// Fails when any file has a problem.
pub fn lint(files: &[PathBuf]) -> Result<()> {
    // Without /proc/kallsyms the functions a policy names cannot be checked; say so once.
    let kernel = RunningKernel::read().ok();
    if kernel.is_none() {
        crate::agent::log("cannot read /proc/kallsyms: kernel function names are not checked");
    }
    let mut bad = 0;
    for f in files {
        let name = f.display().to_string();
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                println!("{name}: cannot read: {e}");
                bad += 1;
                continue;
            }
        };
        match load_policy_for(
            &name,
            &text,
            kernel.as_ref().map(|k| k as &dyn KernelSymbols),
        ) {
            Ok(p) => {
                let hooks = p.spec.kprobes.len() + p.spec.tracepoints.len() + p.spec.lsmhooks.len();
                let mode = match p.mode {
                    Mode::Enforce => "enforce",
                    Mode::Monitor => "monitor",
                };
                println!("{name}: ok (policy {}, {hooks} hooks, mode {mode})", p.name);
            }
            Err(errors) => {
                println!("{errors}");
                bad += 1;
            }
        }
    }
    if bad > 0 {
        bail!("{bad} of {} policy files have problems", files.len());
    }
    Ok(())
}
