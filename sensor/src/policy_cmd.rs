//! `vigil policy ...`: policy files put through `vigil_policy_engine::prepare`, the pass the
//! agent loads them with, so lint's verdict, explain's attach points and test's matches are
//! the agent's.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use vigil_policy_engine::{
    compile::RuleAction,
    evaluate_hooks::first_hook_match,
    hook_rule::HookSelector,
    kernel::RunningKernel,
    plan::{describe_enforcement, describe_mechanism, Enforcement, HookPlan, KernelCaps},
    prepare, Kernel, KernelSymbols, Mode, Prepared,
};

use crate::stdout::outln;

/// What a policy does, in a few words: its `policy-mode` (`spec.options`) alone would say
/// `enforce` of a policy whose hooks only report.
fn what_it_does(p: &Prepared) -> &'static str {
    let enforcing = p
        .hooks
        .iter()
        .any(|h| h.plan.requested != Enforcement::None);
    match (enforcing, p.policy.mode) {
        (false, _) => "observes only",
        (true, Mode::Enforce) => "enforces",
        (true, Mode::Monitor) => "monitor mode: reports what it would enforce",
    }
}

/// A kernel that serves every hook, for the commands that do not attach anything: `test`
/// replays events, and `lint` where it cannot probe (not root). Override is refused on kprobes
/// by the compiler, so whether the kernel could override a return does not matter here.
const ANY_KERNEL: KernelCaps = KernelCaps::ALL;

/// The running kernel as the agent measures it: the program kinds it allows (probed after
/// mounting tracefs, as the agent does, so the tracepoints read are the agent's) and its
/// functions.
struct ThisKernel {
    caps: KernelCaps,
    /// `uname -r`, when probed.
    release: Option<String>,
    /// Without /proc/kallsyms the functions a policy names are not checked.
    symbols: Option<RunningKernel>,
}

impl ThisKernel {
    /// Probes this kernel; fails without the privileges the probe needs.
    fn probe(btf: &str) -> Result<ThisKernel> {
        crate::system::check_privileges()?;
        crate::system::mount_pseudo_filesystems()?;
        let report = crate::probe::run(btf);
        Ok(ThisKernel {
            caps: report.caps(),
            release: Some(report.kernel),
            symbols: ThisKernel::symbols(),
        })
    }

    /// Probes this kernel where it can; without the privileges, every mechanism is assumed
    /// (and it says attach points are not checked).
    fn probe_if_root(btf: &str) -> ThisKernel {
        ThisKernel::probe(btf).unwrap_or_else(|_| {
            crate::agent::log(
                "not root: this kernel's capabilities are not probed, attach points are not checked",
            );
            ThisKernel {
                caps: ANY_KERNEL,
                release: None,
                symbols: ThisKernel::symbols(),
            }
        })
    }

    fn symbols() -> Option<RunningKernel> {
        let symbols = RunningKernel::read().ok();
        if symbols.is_none() {
            crate::agent::log("cannot read /proc/kallsyms: kernel function names are not checked");
        }
        symbols
    }

    fn kernel(&self) -> Kernel<'_> {
        Kernel {
            caps: self.caps,
            symbols: self.symbols.as_ref().map(|k| k as &dyn KernelSymbols),
        }
    }
}

/// The policy files `paths` name: a file as it is, a directory's `*.yaml` and `*.yml` files
/// in name order, as the agent reads `--policy-dir`.
fn policy_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if !p.is_dir() {
            files.push(p.clone());
            continue;
        }
        let found = crate::policy_watch::policy_files(p)
            .map_err(|e| anyhow::anyhow!("cannot read the directory {}: {e}", p.display()))?;
        if found.is_empty() {
            bail!(
                "{}: no policy files in this directory (*.yaml, *.yml)",
                p.display()
            );
        }
        files.extend(found);
    }
    Ok(files)
}

/// Checks every file exactly as the agent loads it; prints each problem on its own line
/// (stdout) and a verdict per file. Fails when any file has a problem.
pub fn lint(btf: &str, paths: &[PathBuf]) -> Result<()> {
    let files = policy_paths(paths)?;
    let this = ThisKernel::probe_if_root(btf);
    let kernel = this.kernel();
    let mut bad = 0;
    for f in &files {
        match prepare(f, &kernel) {
            Ok(p) => {
                for w in &p.policy.warnings {
                    outln!("warning: {w}")?;
                }
                outln!(
                    "{}: ok (policy {}, {} hook{}, {})",
                    f.display(),
                    p.name(),
                    p.hooks.len(),
                    if p.hooks.len() == 1 { "" } else { "s" },
                    what_it_does(&p)
                )?
            }
            Err(errors) => {
                outln!("{errors}")?;
                bad += 1;
            }
        }
    }
    if bad > 0 {
        bail!("{bad} of {} policy files have problems", files.len());
    }
    Ok(())
}

/// Prints where each hook of each policy attaches on this kernel and what that guarantees, as
/// text (a header per file) or (`json`) one JSON array of every file's hooks, each naming its
/// file and policy. A refused policy's problems are printed (on stderr with `json`, which keeps
/// stdout one JSON document) and the command fails once all are explained.
pub fn explain(btf: &str, paths: &[PathBuf], json: bool) -> Result<()> {
    let files = policy_paths(paths)?;
    let this = ThisKernel::probe(btf)?;
    let kernel = this.kernel();
    let release = this.release.as_deref().unwrap_or("?");
    let (mut refused, mut hooks) = (0, Vec::new());
    for (i, f) in files.iter().enumerate() {
        let prepared = match prepare(f, &kernel) {
            Ok(mut p) => {
                add_unkeyed_gaps(&mut p);
                p
            }
            Err(errors) if json => {
                eprintln!("{errors}");
                refused += 1;
                continue;
            }
            Err(errors) => {
                outln!("{errors}")?;
                refused += 1;
                continue;
            }
        };
        if json {
            hooks.extend(prepared.hooks.iter().map(|h| plan_json(&prepared, &h.plan)));
            continue;
        }
        if i > 0 {
            outln!()?;
        }
        outln!(
            "{}: policy {} ({}) on kernel {release}",
            f.display(),
            prepared.name(),
            what_it_does(&prepared)
        )?;
        if let Some(nodes) = vigil_policy_engine::scope::describe_node_selector(&prepared.policy) {
            outln!("  loaded on the nodes labelled {nodes} (nodeSelector), elsewhere not at all")?;
        }
        if let Some(scope) = vigil_policy_engine::scope::PodScope::of(&prepared.policy) {
            outln!("  applies to {}", scope.describe())?;
            outln!("    scope:     checked in the kernel on every call of its hooks, by the caller's cgroup and its ancestors; no other process is acted on")?;
            outln!("    new pods:  covered once the agent knows the pod and the kubelet has made its cgroup: a running pod at once, a new one within 50 ms of both (the agent's tick), before its first container normally starts (the sandbox is made in between)")?;
            if scope.containers.is_some() {
                outln!("    containers: a container is named by the pod's status, which lags its start: until then it is in every container selector of its pod (the policy acts on it rather than miss its first moments)")?;
            }
        }
        for h in &prepared.hooks {
            explain_hook(&h.plan)?;
        }
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&hooks)?)?;
    }
    match (refused, files.as_slice()) {
        (0, _) => Ok(()),
        (_, [one]) => bail!("{} is refused on this kernel", one.display()),
        _ => bail!(
            "{refused} of {} policy files are refused on this kernel",
            files.len()
        ),
    }
}

/// Adds to each file-open hook the exact values no file on this machine can stand for (the
/// agent compares those by path only, and says so when it loads them).
fn add_unkeyed_gaps(p: &mut Prepared) {
    use vigil_policy_engine::gaps;
    for h in &mut p.hooks {
        let unkeyed: Vec<String> = gaps::exact_values(&h.rule)
            .into_iter()
            .filter(|v| crate::policies::inodes::inode_of(v).is_none())
            .collect();
        if !unkeyed.is_empty() {
            h.plan.gaps.push(gaps::unkeyed(&unkeyed));
        }
    }
}

/// One hook's plan, as text.
fn explain_hook(p: &HookPlan) -> std::io::Result<()> {
    outln!("  {} {}", p.path, p.hook)?;
    outln!("    attach:    {}", describe_mechanism(&p.mechanism))?;
    if let Some(why) = &p.fallback_reason {
        outln!("    fallback:  {why}")?;
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
    outln!("    action:    {action}")?;
    outln!("    guarantee: {}", p.guarantee.describe())?;
    for g in &p.gaps {
        outln!("    gap:       {}: {}", g.name, g.reason)?;
    }
    Ok(())
}

/// One hook's plan for `explain --json`; `attach` is worded as the agent logs what it attached.
fn plan_json(policy: &Prepared, p: &HookPlan) -> serde_json::Value {
    serde_json::json!({
        "file": policy.file,
        "policy": policy.name(),
        "path": p.path,
        "hook": p.hook,
        "attach": describe_mechanism(&p.mechanism),
        "fallback": p.fallback_reason,
        "action": describe_enforcement(p.enforcement),
        "requested": describe_enforcement(p.requested),
        "guarantee": p.guarantee.describe(),
        "gaps": p.gaps.iter().map(|g| serde_json::json!({"name": g.name, "reason": g.reason})).collect::<Vec<_>>(),
    })
}

/// Replays recorded events through the policy's hooks with the userspace evaluator: which
/// selector would match each call, and what it would do.
pub fn test(policy_file: &Path, events: &Path, json: bool) -> Result<()> {
    let kernel = Kernel {
        caps: ANY_KERNEL,
        symbols: None,
    };
    let prepared = prepare(policy_file, &kernel).map_err(|e| anyhow::anyhow!("{e}"))?;
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
        // Every hook on the function runs, each with its own first match, as in the kernel.
        let hooks: Vec<_> = prepared
            .hooks
            .iter()
            .map(|h| &h.rule)
            // Recorded by vigil as Tetragon names it (`__x64_sys_setuid`), or as the policy does.
            .filter(|h| {
                h.call == function
                    || vigil_policy_engine::kernel::reported_function(&h.call, h.syscall)
                        == function
            })
            .collect();
        let Some(first) = hooks.first() else {
            continue;
        };
        // A file open's subject is the file the kernel resolved.
        let subject = if first.is_file_open() {
            let Some(path) = body["args"][0]["file_arg"]["path"].as_str() else {
                continue;
            };
            opens += 1;
            path.to_string()
        } else {
            calls += 1;
            args_text(body)
        };
        // An agent writes a process's namespaces and capabilities only when asked to
        // (`--enable-process-ns`, `--enable-process-cred`): a selector on what the recording
        // left out cannot be replayed, and guessing "none" would give a wrong verdict.
        let reads =
            |uses: fn(&HookSelector) -> bool| hooks.iter().any(|h| h.selectors.iter().any(uses));
        let missing: Vec<_> = [
            // `isNamespaceCapability` adds a user-namespace filter: both are then read.
            (
                "ns",
                "--enable-process-ns",
                reads(|s| !s.namespaces.is_empty()),
            ),
            (
                "cap",
                "--enable-process-cred",
                reads(|s| !s.caps.is_empty()),
            ),
        ]
        .into_iter()
        .filter(|(field, _, read)| *read && !body["process"][field].is_object())
        .collect();
        if !missing.is_empty() {
            let fields: Vec<_> = missing.iter().map(|m| format!("process.{}", m.0)).collect();
            let flags: Vec<_> = missing.iter().map(|m| m.1).collect();
            anyhow::bail!(
                "{}:{}: the event has no {}, which the policy's selectors read; record with an \
                 agent started with {}",
                events.display(),
                n + 1,
                fields.join(" or "),
                flags.join(" ")
            );
        }
        for hook in hooks {
            let Some(selector) = first_hook_match(hook, &hook_call(body)) else {
                continue;
            };
            let (action, selector) = match selector {
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
            matched += 1;
            let action = crate::enrich::rule_action_name(action);
            let monitor = hook.monitor;
            if json {
                let out = serde_json::json!({
                    "time": event["time"], "binary": binary, "function": function,
                    "path": subject, "policy_name": prepared.name(), "action": action,
                    "monitor": monitor, "selector": selector,
                });
                outln!("{out}")?;
            } else {
                outln!(
                    "{} {binary} {function} {subject}: {action}{}",
                    event["time"].as_str().unwrap_or(""),
                    if monitor { " (monitor)" } else { "" }
                )?;
            }
        }
    }
    if !json {
        outln!(
            "{opens} file opens and {calls} hook calls replayed, {matched} matched policy {}",
            prepared.name()
        )?;
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
    let mut ns = [(0u32, false); vigil_bpf_kprobes::abi::NS_COUNT];
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
        } else if let Some(v) = a.get("size_arg").and_then(|v| {
            // A string as protojson writes a uint64 (vigil's lines), or a number (older ones).
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        }) {
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

/// The arguments of a recorded call, for the report: each as its text (a string unquoted), a
/// file or socket by its path or address.
fn args_text(body: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    body["args"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| match a.as_object().and_then(|o| o.values().next()) {
            Some(serde_json::Value::Object(o)) => o
                .get("path")
                .or_else(|| o.get("daddr"))
                .or_else(|| o.get("addr"))
                .map(text)
                .unwrap_or_default(),
            Some(v) => text(v),
            None => String::new(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn policy_test_writes_a_sockets_address_and_string_arguments_unquoted() {
        let body = serde_json::json!({"args": [
            {"sock_arg": {"daddr": "127.0.0.1", "dport": 53}},
            {"string_arg": "a b"},
            {"int_arg": 5},
            {"file_arg": {"path": "/etc/passwd"}},
        ]});
        assert_eq!(super::args_text(&body), "127.0.0.1,a b,5,/etc/passwd");
    }

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
        let linted = super::lint("/sys/kernel/btf/vmlinux", std::slice::from_ref(&path));
        let tested = super::test(&path, &path, false).map_err(|e| e.to_string());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let linted_after = super::lint("/sys/kernel/btf/vmlinux", std::slice::from_ref(&path));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(linted.is_err());
        let e = tested.unwrap_err();
        assert!(e.contains("p.yaml: is writable by group or others"), "{e}");
        assert!(e.contains("chmod go-w"), "{e}");
        assert!(linted_after.is_ok(), "{linted_after:?}");
    }
}
