//! `vigil policy ...`: policy files checked the way the agent will check them before loading.

use std::path::PathBuf;

use anyhow::{bail, Result};
use vigil_policy_engine::{
    kernel::RunningKernel,
    load_policy_file,
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
        match load_policy_file(f, kernel.as_ref().map(|k| k as &dyn KernelSymbols)) {
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
    let kernel = RunningKernel::read().ok();
    let policy = match load_policy_file(file, kernel.as_ref().map(|k| k as &dyn KernelSymbols)) {
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
        compile::{compile, RuleAction},
        evaluate::{first_match, FileOpen},
        evaluate_hooks::first_hook_match,
    };
    let name = policy_file.display().to_string();
    let policy = load_policy_file(policy_file, None).map_err(|e| anyhow::anyhow!("{e}"))?;
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
    let (mut opens, mut calls, mut matched) = (0usize, 0usize, 0usize);
    for (n, line) in input.lines().enumerate() {
        let event: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: not an event: {e}", events.display(), n + 1))?;
        let Some(body) = event
            .get("process_lsm")
            .or_else(|| event.get("process_kprobe"))
        else {
            continue;
        };
        let function = body["function_name"].as_str().unwrap_or("");
        let binary = body["process"]["binary"].as_str().unwrap_or("");
        // (subject, action, monitor, selector) of what the kernel would do.
        let verdict = if matches!(function, "file_open" | "security_file_open") {
            let Some(path) = body["args"][0]["file_arg"]["path"].as_str() else {
                continue;
            };
            opens += 1;
            first_match(&compiled.rules, &FileOpen { path, binary }).map(|rule| {
                (
                    path.to_string(),
                    rule.action,
                    rule.monitor,
                    rule.hook_path.clone(),
                )
            })
        } else if let Some(hook) = compiled.hooks.iter().find(|h| h.call == function) {
            calls += 1;
            let call = hook_call(body);
            first_hook_match(hook, &call).map(|s| {
                let (action, path) = match s {
                    Some(s) => {
                        let j = hook
                            .selectors
                            .iter()
                            .position(|o| std::ptr::eq(o, s))
                            .unwrap_or(0);
                        (s.action, format!("{}.selectors[{j}]", hook.hook_path))
                    }
                    None => (RuleAction::Post, hook.hook_path.clone()),
                };
                (args_text(body), action, hook.monitor, path)
            })
        } else {
            continue;
        };
        let Some((subject, action, monitor, selector)) = verdict else {
            continue;
        };
        matched += 1;
        let action = crate::builder::rule_action_name(action);
        if json {
            let out = serde_json::json!({
                "time": event["time"], "binary": binary, "function": function,
                "path": subject, "policy_name": policy.name, "action": action, "monitor": monitor,
                "selector": selector,
            });
            println!("{out}");
        } else {
            println!(
                "{} {binary} {function} {subject}: {action}{}",
                event["time"].as_str().unwrap_or(""),
                if monitor { " (monitor)" } else { "" }
            );
        }
    }
    if !json {
        println!(
            "{opens} file opens and {calls} hook calls replayed, {matched} matched policy {}",
            policy.name
        );
    }
    Ok(())
}

/// A recorded `process_kprobe` event as the kernel saw the call: its arguments in order and the
/// calling process. Record with the hook and arguments of the policy under test (and no
/// selectors), so positions line up.
fn hook_call(body: &serde_json::Value) -> vigil_policy_engine::evaluate_hooks::HookCall {
    use vigil_policy_engine::evaluate_hooks::{CallArg, HookCall};
    let p = &body["process"];
    let args = body["args"]
        .as_array()
        .map(|a| a.iter().map(call_arg).collect())
        .unwrap_or_default();
    let flags = p["flags"].as_str().unwrap_or("");
    let fork_of = (flags.split(' ').any(|f| f == "clone"))
        .then(|| body["parent"]["pid"].as_u64())
        .flatten()
        .map(|n| n as u32);
    // The event's namespace keys are the /proc/<pid>/ns names, in vigil's index order.
    let mut ns = [(0u32, false); 9];
    for (slot, name) in ns.iter_mut().zip(crate::identity::NS_FILES) {
        let n = &p["ns"][name];
        *slot = (
            n["inum"].as_u64().unwrap_or(0) as u32,
            n["is_host"].as_bool().unwrap_or(false),
        );
    }
    let mask = |set: &str| {
        p["cap"][set]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().and_then(vigil_events::caps::bit))
            .fold(0u64, |m, b| m | 1 << b)
    };
    return HookCall {
        args,
        binary: p["binary"].as_str().unwrap_or("").to_string(),
        pid: p["pid"].as_u64().unwrap_or(0) as u32,
        fork_of,
        ns,
        caps: [mask("effective"), mask("permitted"), mask("inheritable")],
    };

    fn call_arg(a: &serde_json::Value) -> CallArg {
        use base64::Engine;
        let family = |f: &str| match f {
            "AF_INET" => 2,
            "AF_INET6" => 10,
            "AF_UNIX" => 1,
            other => other.trim_start_matches("AF_").parse().unwrap_or(0),
        };
        let ip = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse().ok());
        if let Some(v) = a.get("int_arg").and_then(|v| v.as_i64()) {
            CallArg::Int(v)
        } else if let Some(v) = a.get("size_arg").and_then(|v| v.as_u64()) {
            CallArg::Int(v as i64)
        } else if let Some(v) = a.get("string_arg").and_then(|v| v.as_str()) {
            CallArg::Text(v.to_string())
        } else if let Some(v) = a.get("bytes_arg").and_then(|v| v.as_str()) {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v)
                .unwrap_or_default();
            CallArg::Text(String::from_utf8_lossy(&bytes).into_owned())
        } else if let Some(f) = a.get("file_arg").or_else(|| a.get("path_arg")) {
            CallArg::Text(f["path"].as_str().unwrap_or("").to_string())
        } else if let Some(s) = a.get("sock_arg") {
            CallArg::Sock {
                family: family(s["family"].as_str().unwrap_or("")),
                protocol: match s["protocol"].as_str().unwrap_or("") {
                    "IPPROTO_TCP" => 6,
                    "IPPROTO_UDP" => 17,
                    "IPPROTO_ICMP" => 1,
                    "IPPROTO_ICMPV6" => 58,
                    other => other.trim_start_matches("IPPROTO_").parse().unwrap_or(0),
                },
                saddr: ip(&s["saddr"]),
                daddr: ip(&s["daddr"]),
                sport: s["sport"].as_u64().unwrap_or(0) as u16,
                dport: s["dport"].as_u64().unwrap_or(0) as u16,
            }
        } else if let Some(s) = a.get("sockaddr_arg") {
            let port = s["port"].as_u64().unwrap_or(0) as u16;
            CallArg::Sock {
                family: family(s["family"].as_str().unwrap_or("")),
                protocol: 0,
                saddr: ip(&s["addr"]),
                daddr: ip(&s["addr"]),
                sport: port,
                dport: port,
            }
        } else {
            CallArg::Text(String::new())
        }
    }
}

/// The arguments of a recorded call, for the report.
fn args_text(body: &serde_json::Value) -> String {
    body["args"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| match a.as_object().and_then(|o| o.values().next()) {
            Some(serde_json::Value::Object(o)) => o
                .get("path")
                .or_else(|| o.get("daddr"))
                .or_else(|| o.get("addr"))
                .map(|v| v.to_string())
                .unwrap_or_default(),
            Some(v) => v.to_string(),
            None => String::new(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn lint_and_test_refuse_a_policy_file_others_can_write() {
        let dir = std::env::temp_dir().join(format!("vigil-policy-cmd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../rules/policies/deny-credential-reads.yaml");
        let path = dir.join("p.yaml");
        std::fs::copy(&src, &path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let linted = super::lint(std::slice::from_ref(&path));
        let tested = super::test(&path, &path, false).map_err(|e| e.to_string());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let linted_after = super::lint(std::slice::from_ref(&path));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(linted.is_err());
        let e = tested.unwrap_err();
        assert!(e.contains("p.yaml: is writable by group or others"), "{e}");
        assert!(e.contains("chmod go-w"), "{e}");
        assert!(linted_after.is_ok(), "{linted_after:?}");
    }
}
