//! The shipped file-change policy (`rules/policies/observe-file-changes.yaml`) with real
//! commands: a shell redirect creating a file under /etc, `chmod`, `mv` (by a relative name, and
//! from /tmp through `..`), `chown`, `truncate`, `rm` and `rmdir`. Each event names the file by
//! its absolute, normalized path, made so in the kernel before the policy's prefixes are
//! compared; the same commands under /tmp are not reported. On the host the system calls' enter
//! tracepoints carry the policy, in the VM kprobes on the same calls; busybox's tools there and
//! coreutils here make different calls for the same command (chmod or fchmodat, rename or
//! renameat2), and the policy hooks both.

use std::process::Command;

use serde_json::Value;
use vigil_tests::{rules_dir, Agent, AgentRun, TempDir};

fn sh(script: &str, cwd: &str) {
    let out = Command::new("sh")
        .args(["-c", script])
        .current_dir(cwd)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "`{script}` in {cwd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (function, paths of its path and file arguments, its integer arguments) of each event of
/// the policy.
fn changes(run: &AgentRun) -> Vec<(String, Vec<String>, Vec<i64>)> {
    run.events
        .iter()
        .filter_map(|e| e.get("process_kprobe"))
        .filter(|e| e["policy_name"] == "observe-file-changes")
        .map(|e| {
            let args = e["args"].as_array().cloned().unwrap_or_default();
            let path = |a: &Value| {
                a.get("path_arg")
                    .or(a.get("file_arg"))
                    .and_then(|p| p["path"].as_str())
                    .map(str::to_string)
            };
            (
                e["function_name"].as_str().unwrap_or_default().to_string(),
                args.iter().filter_map(path).collect(),
                args.iter().filter_map(|a| a["int_arg"].as_i64()).collect(),
            )
        })
        .collect()
}

#[test]
fn chmod_mv_chown_truncate_and_rm_under_etc_are_reported_by_absolute_path() {
    vigil_tests::require_root();
    let dir = format!("/etc/vigil-changes-{}", std::process::id());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let scratch = TempDir::new("changes");
    let elsewhere = scratch.path().display().to_string();
    let name = dir.trim_start_matches("/etc/");
    let policy = rules_dir().join("observe-file-changes.yaml");
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    for cwd in [dir.as_str(), elsewhere.as_str()] {
        sh("echo x > a && chmod 600 a && mv a b", cwd);
    }
    // From /tmp, through `..` and `.`, and with a doubled slash.
    sh(
        &format!("mv ../etc/{name}/b ../etc/{name}/./c && chown 1:1 /etc//{name}/c"),
        "/tmp",
    );
    sh(
        &format!("truncate -s 0 {dir}/c && rm {dir}/c && rmdir {dir}"),
        "/",
    );
    sh(&format!("rm {elsewhere}/b"), "/");
    let run = agent.stop();
    let _ = std::fs::remove_dir_all(&dir);

    let all = changes(&run);
    let find = |op: &str, paths: &[&str]| {
        all.iter()
            .find(|(f, p, _)| {
                f.contains(op) && p.iter().map(String::as_str).eq(paths.iter().copied())
            })
            .unwrap_or_else(|| panic!("no {op} of {paths:?} among {all:#?}"))
    };
    let (a, b, c) = (format!("{dir}/a"), format!("{dir}/b"), format!("{dir}/c"));
    find("open", &[&a]);
    let (_, _, mode) = find("chmod", &[&a]);
    assert_eq!(mode, &[0o600]);
    find("rename", &[&a, &b]);
    find("rename", &[&b, &c]);
    let (_, _, ids) = find("chown", &[&c]);
    assert_eq!(ids, &[1, 1]);
    find("truncate", &[&c]);
    find("unlink", &[&c]);
    find("rmdir", &[&dir]);
    assert!(
        all.iter()
            .all(|(_, p, _)| p.iter().all(|p| !p.starts_with(&elsewhere))),
        "the same commands outside the watched places are not reported: {all:#?}"
    );
}
