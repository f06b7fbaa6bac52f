//! `vigil policy ...`: policy files checked the way the agent will check them before loading.

use std::path::PathBuf;

use anyhow::{bail, Result};
use vigil_policy_engine::{
    kernel::RunningKernel,
    load_policy_for,
    plan::{describe_enforcement, describe_mechanism, plan},
    KernelSymbols, Mode, Policy,
};

fn mode_name(p: &Policy) -> &'static str {
    match p.mode {
        Mode::Enforce => "enforce",
        Mode::Monitor => "monitor",
    }
}

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
                println!(
                    "{name}: ok (policy {}, {hooks} hooks, mode {})",
                    p.name,
                    mode_name(&p)
                );
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

/// Prints the attach plan of one policy on this kernel; fails when the policy is invalid or a
/// hook cannot be served here.
pub fn explain(btf: &str, file: &std::path::Path) -> Result<()> {
    crate::system::check_privileges()?;
    crate::system::mount_pseudo_filesystems()?;
    let name = file.display().to_string();
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("cannot read {name}: {e}"))?;
    let kernel = RunningKernel::read().ok();
    let policy = match load_policy_for(
        &name,
        &text,
        kernel.as_ref().map(|k| k as &dyn KernelSymbols),
    ) {
        Ok(p) => p,
        Err(errors) => {
            println!("{errors}");
            bail!("{name} is not a valid policy");
        }
    };
    let report = crate::probe::run(btf);
    println!(
        "policy {} (mode {}) on kernel {}",
        policy.name,
        mode_name(&policy),
        report.kernel
    );
    match plan(&policy, &report.caps()) {
        Ok(plans) => {
            for p in plans {
                println!("  {} {}", p.path, p.hook);
                println!("    attach:    {}", describe_mechanism(&p.mechanism));
                if let Some(why) = &p.fallback_reason {
                    println!("    fallback:  {why}");
                }
                let action = if p.requested == p.enforcement {
                    describe_enforcement(p.enforcement)
                } else {
                    format!(
                        "{} (the policy asks: {})",
                        describe_enforcement(p.enforcement),
                        describe_enforcement(p.requested)
                    )
                };
                println!("    action:    {action}");
                println!("    guarantee: {}", p.guarantee.describe());
            }
            Ok(())
        }
        Err(errors) => {
            for e in &errors {
                println!("  {}: refused: {}", e.path, e.reason);
            }
            bail!(
                "{} of the policy's hooks cannot attach on this kernel",
                errors.len()
            );
        }
    }
}
