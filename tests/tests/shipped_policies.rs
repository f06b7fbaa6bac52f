//! The policies `make run` loads (`rules/policies/`), each triggered with real commands: the
//! deny policy stops the tools it names and nothing else, the observing one reports.

use std::{
    os::unix::process::ExitStatusExt,
    process::{Command, Output},
};

use serde_json::Value;
use vigil_tests::{
    kernels::{self, Hook},
    rules_dir, Agent, AgentRun,
};

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn lsm_events<'a>(run: &'a AgentRun, policy: &str, path: &str) -> Vec<&'a Value> {
    run.events
        .iter()
        .filter_map(|e| e.get("process_lsm"))
        .filter(|e| e["policy_name"] == policy && e["args"][0]["file_arg"]["path"] == path)
        .collect()
}

#[test]
fn shipped_policies_enforce_on_named_tools_and_leave_the_host_usable() {
    let dir = rules_dir();
    let agent = Agent::start(&["--policy-dir", dir.to_str().unwrap()]);
    let cat_shadow = run("/usr/bin/cat", &["/etc/shadow"]);
    let cat_passwd = run("/usr/bin/cat", &["/etc/passwd"]);
    // User lookups read /etc/passwd through glibc (or busybox) and must keep working.
    let id = run("id", &["-un"]);
    let ls = run("ls", &["-l", "/etc/passwd"]);
    // Any binary opening /etc/shadow is reported by the observing policy.
    let own_read = std::fs::read("/etc/shadow");
    let run = agent.stop();

    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("policy deny-credential-reads loaded")),
        "{:#?}",
        run.stderr
    );
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("policy observe-secret-reads loaded")),
        "{:#?}",
        run.stderr
    );
    let lsm = kernels::current().hooks.contains(&Hook::Lsm);
    for out in [&cat_shadow, &cat_passwd] {
        assert!(
            out.stdout.is_empty(),
            "{} bytes reached cat",
            out.stdout.len()
        );
        if lsm {
            assert_eq!(out.status.code(), Some(1), "{:?}", out.status);
        } else {
            assert_eq!(out.status.signal(), Some(9), "{:?}", out.status);
        }
    }
    assert!(
        id.status.success(),
        "id: {}",
        String::from_utf8_lossy(&id.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&id.stdout).trim(), "root");
    assert!(
        ls.status.success(),
        "ls -l: {}",
        String::from_utf8_lossy(&ls.stderr)
    );
    assert!(own_read.is_ok(), "the observing policy does not block");

    let denied = lsm_events(&run, "deny-credential-reads", "/etc/shadow");
    assert_eq!(denied.len(), 1, "{denied:#?}");
    assert_eq!(denied[0]["outcome"], if lsm { "denied" } else { "killed" });
    assert_eq!(
        lsm_events(&run, "deny-credential-reads", "/etc/passwd").len(),
        1
    );
    let observed = lsm_events(&run, "observe-secret-reads", "/etc/shadow");
    assert!(
        observed.len() >= 2,
        "cat's and the test's opens of /etc/shadow: {observed:#?}"
    );
    assert!(observed
        .iter()
        .all(|e| e["outcome"] == "posted" && e["action"] == "KPROBE_ACTION_POST"));
}
