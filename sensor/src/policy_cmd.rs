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

/// Replays the file opens of recorded events through the policy's compiled rules.
pub fn test(policy_file: &std::path::Path, events: &std::path::Path, json: bool) -> Result<()> {
    use vigil_policy_engine::{
        compile::compile,
        evaluate::{first_match, FileOpen},
    };
    let name = policy_file.display().to_string();
    let text = std::fs::read_to_string(policy_file)
        .map_err(|e| anyhow::anyhow!("cannot read {name}: {e}"))?;
    let policy = load_policy_for(&name, &text, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let compiled = compile(&policy).map_err(|errs| {
        anyhow::anyhow!(
            "{}",
            errs.iter()
                .map(|e| format!("{name}: {}: {}", e.path, e.reason))
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let input = std::fs::read_to_string(events)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", events.display()))?;
    let (mut opens, mut matched) = (0usize, 0usize);
    for (n, line) in input.lines().enumerate() {
        let event: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: not an event: {e}", events.display(), n + 1))?;
        let Some(body) = event
            .get("process_lsm")
            .or_else(|| event.get("process_kprobe"))
        else {
            continue;
        };
        if !matches!(
            body["function_name"].as_str(),
            Some("file_open" | "security_file_open")
        ) {
            continue;
        }
        let (Some(path), Some(binary)) = (
            body["args"][0]["file_arg"]["path"].as_str(),
            body["process"]["binary"].as_str(),
        ) else {
            continue;
        };
        opens += 1;
        let Some(rule) = first_match(&compiled.rules, &FileOpen { path, binary }) else {
            continue;
        };
        matched += 1;
        let action = crate::builder::rule_action_name(rule.action);
        if json {
            let out = serde_json::json!({
                "time": event["time"], "binary": binary, "path": path, "policy_name": policy.name,
                "action": action, "monitor": rule.monitor, "selector": rule.hook_path,
            });
            println!("{out}");
        } else {
            println!(
                "{} {binary} {path}: {action}{}",
                event["time"].as_str().unwrap_or(""),
                if rule.monitor { " (monitor)" } else { "" }
            );
        }
    }
    if !json {
        println!(
            "{opens} file opens replayed, {matched} matched policy {}",
            policy.name
        );
    }
    Ok(())
}
