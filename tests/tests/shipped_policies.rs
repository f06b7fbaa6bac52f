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
    // Any binary opening /etc/shadow is reported by the observing policy, and so is an SSH
    // private key under any home directory.
    let own_read = std::fs::read("/etc/shadow");
    let home = vigil_tests::TempDir::new("home");
    let key = home.path().join(".ssh/id_ed25519");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
    let key_read = std::fs::read(&key);
    let public_key = home.path().join(".ssh/id_ed25519.pub");
    std::fs::write(&public_key, "ssh-ed25519 AAAA").unwrap();
    let _ = std::fs::read(&public_key);
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
    // Every shipped policy loads, on every kernel we test on.
    for f in std::fs::read_dir(&dir).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&f).unwrap();
            let name = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("name: "))
                .unwrap()
                .trim_matches('"');
            assert!(
                run.stderr
                    .iter()
                    .any(|l| l.contains(&format!("policy {name} loaded"))),
                "{} did not load: {:#?}",
                f.display(),
                run.stderr
            );
        }
    }
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
    assert!(key_read.is_ok());
    let key_path = vigil_tests::resolved(key.to_str().unwrap());
    let keys = lsm_events(&run, "observe-secret-reads", &key_path);
    assert!(
        !keys.is_empty(),
        "the private key's open is reported: {:#?}",
        run.events
    );
    let public_path = vigil_tests::resolved(public_key.to_str().unwrap());
    assert!(
        lsm_events(&run, "observe-secret-reads", &public_path).is_empty(),
        "a public key is no secret"
    );
}

fn kprobe_events<'a>(run: &'a AgentRun, policy: &str) -> Vec<&'a Value> {
    run.events
        .iter()
        .filter_map(|e| e.get("process_kprobe"))
        .filter(|e| e["policy_name"] == policy)
        .collect()
}

#[test]
fn writes_under_etc_are_reported_by_the_file_they_really_reach() {
    let dir = rules_dir();
    let name = format!("vigil-write-{}", std::process::id());
    let agent = Agent::start(&["--policy-dir", dir.to_str().unwrap()]);
    // A relative path from inside /etc: the kernel resolves the descriptor, not the string.
    let shell = run("sh", &["-c", &format!("cd /etc && echo vigil >> {name}")]);
    let tmp = vigil_tests::TempDir::new("writes");
    let elsewhere = tmp.path().join(&name);
    std::fs::write(&elsewhere, "not a system file").unwrap();
    let run = agent.stop();
    let _ = std::fs::remove_file(format!("/etc/{name}"));
    assert!(shell.status.success(), "{shell:?}");
    let events = kprobe_events(&run, "observe-system-writes");
    let path = format!("/etc/{name}");
    let hits: Vec<_> = events
        .iter()
        .filter(|e| e["args"][0]["file_arg"]["path"] == path.as_str())
        .collect();
    assert_eq!(hits.len(), 1, "{events:#?}");
    assert_eq!(hits[0]["function_name"], "__x64_sys_write");
    assert_eq!(hits[0]["args"][1]["size_arg"], "6");
    assert_eq!(hits[0]["outcome"], "posted");
    assert!(
        events
            .iter()
            .all(|e| e["args"][0]["file_arg"]["path"] != elsewhere.to_str().unwrap()),
        "a write outside the watched directories is not reported: {events:#?}"
    );
}

#[test]
fn module_loads_are_reported_and_killed_outside_the_host_pid_namespace() {
    let dir = rules_dir();
    let tmp = vigil_tests::TempDir::new("modules");
    let bogus = tmp.path().join("bogus.ko");
    std::fs::write(&bogus, [0u8; 512]).unwrap();
    let bogus = bogus.to_str().unwrap();
    let agent = Agent::start(&["--policy-dir", dir.to_str().unwrap()]);
    // The same attempt from the host's pid namespace and from a new one.
    let host = run("busybox", &["insmod", bogus]);
    let contained = run("unshare", &["-p", "-f", "busybox", "insmod", bogus]);
    let run = agent.stop();
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("policy kill-module-load-in-containers loaded")),
        "{:#?}",
        run.stderr
    );
    assert_ne!(
        host.status.signal(),
        Some(9),
        "host module loads are left alone"
    );
    let events = kprobe_events(&run, "kill-module-load-in-containers");
    let compiled_out = run
        .stderr
        .iter()
        .any(|l| l.contains("sys_finit_module is not implemented by this kernel"));
    if compiled_out {
        // Nothing can load a module on this kernel: the call fails with ENOSYS, nobody dies.
        assert!(
            String::from_utf8_lossy(&contained.stderr).contains("not support"),
            "{contained:?}"
        );
        assert!(events.is_empty(), "{events:#?}");
        assert!(
            kprobe_events(&run, "observe-privilege-changes")
                .iter()
                .all(|e| !e["function_name"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("init_module")),
            "nothing to observe either"
        );
        return;
    }
    assert_eq!(contained.status.signal(), Some(9), "{contained:?}");
    assert_eq!(events.len(), 1, "only the contained attempt: {events:#?}");
    // observe-privilege-changes reports both attempts, with the module file busybox passed.
    let observed: Vec<&Value> = kprobe_events(&run, "observe-privilege-changes")
        .into_iter()
        .filter(|e| {
            e["function_name"]
                .as_str()
                .is_some_and(|f| f.contains("init_module"))
        })
        .collect();
    // (busybox falls back from finit_module to init_module when the first fails.)
    let mut pids: Vec<&Value> = observed.iter().map(|e| &e["process"]["pid"]).collect();
    pids.dedup();
    assert_eq!(
        pids.len(),
        2,
        "the host's and the contained attempt: {observed:#?}"
    );
    assert!(
        pids.contains(&&events[0]["process"]["pid"]),
        "{observed:#?}"
    );
    for e in &observed {
        if e["function_name"]
            .as_str()
            .is_some_and(|f| f.contains("finit_module"))
        {
            assert_eq!(e["args"][0]["file_arg"]["path"], bogus, "{e:#?}");
        }
    }
    assert_eq!(events[0]["outcome"], "killed");
    assert_eq!(events[0]["action"], "KPROBE_ACTION_SIGKILL");
    assert!(
        events[0]["function_name"]
            .as_str()
            .is_some_and(|f| f.contains("init_module")),
        "{events:#?}"
    );
}
