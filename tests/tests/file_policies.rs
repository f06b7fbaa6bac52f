//! A TracingPolicy that denies reading `/etc/passwd` and `/etc/shadow` to named binaries,
//! enforced by the real agent: with BPF LSM (the VM) the open fails with EPERM before it
//! happens; without it (the host) the same file, unchanged, gets the process killed before the
//! open returns, so no byte reaches it. Paths are matched as the kernel resolved them.

use std::{
    os::unix::process::ExitStatusExt,
    process::{Command, Output},
};

use serde_json::Value;
use vigil_tests::{
    fixtures,
    kernels::{self, Hook},
    resolved, Agent, AgentRun, TempDir,
};

/// A policy the agent must refuse while it keeps enforcing the other one.
const BROKEN: &str = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: broken\nspec:\n  lsmhooks:\n  - hook: file_open\n    args:\n    - index: 0\n      type: filez\n";

fn cat(args: &[&str], cwd: &str) -> Output {
    Command::new("cat")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run cat")
}

fn lsm() -> bool {
    kernels::current().hooks.contains(&Hook::Lsm)
}

/// The action a deny's event names: what the kernel did (BPF LSM fails the open; without it the
/// process is killed on the way out of the open).
fn override_done() -> &'static str {
    if lsm() {
        "KPROBE_ACTION_OVERRIDE"
    } else {
        "KPROBE_ACTION_SIGKILL"
    }
}

/// The file_open policy events for `path`.
fn policy_events<'a>(run: &'a AgentRun, path: &str) -> Vec<&'a Value> {
    run.events
        .iter()
        .filter_map(|e| e.get("process_lsm"))
        .filter(|e| e["args"][0]["file_arg"]["path"] == path)
        .collect()
}

#[test]
fn deny_policy_stops_named_binaries_and_spares_the_rest() {
    let dir = TempDir::new("policy");
    let policy = dir.path().join("deny.yaml");
    // A broken file of a policy directory is refused alone (one named with --policy would
    // stop the start).
    let others = TempDir::new("policy-others");
    std::fs::write(&policy, fixtures::deny_passwd("enforce")).unwrap();
    std::fs::write(others.path().join("broken.yaml"), BROKEN).unwrap();
    let link = dir.path().join("link-to-passwd");
    std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();

    let agent = Agent::start(&[
        "--policy-dir",
        others.path().to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    let direct = cat(&["/etc/passwd"], "/");
    let relative = cat(&["passwd"], "/etc");
    let via_link = cat(&[link.to_str().unwrap()], "/");
    let shadow = cat(&["/etc/shadow"], "/");
    let hostname = cat(&["/etc/hostname"], "/");
    // A binary the policy does not name (this test) reads the file.
    let allowed = std::fs::read_to_string("/etc/passwd");
    let run = agent.stop();

    assert!(
        run.stderr.iter().any(|l| l.contains("policy refused")),
        "{:#?}",
        run.stderr
    );
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("argument type `filez` is not supported")),
        "{:#?}",
        run.stderr
    );
    for (what, out) in [
        ("cat /etc/passwd", &direct),
        ("cd /etc && cat passwd", &relative),
        ("cat a symlink to /etc/passwd", &via_link),
        ("cat /etc/shadow", &shadow),
    ] {
        assert!(
            out.stdout.is_empty(),
            "{what}: {} bytes reached cat",
            out.stdout.len()
        );
        if lsm() {
            assert_eq!(out.status.code(), Some(1), "{what}: {:?}", out.status);
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
                "{what}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            assert_eq!(out.status.signal(), Some(9), "{what}: {:?}", out.status);
        }
    }
    assert!(
        hostname.status.success() && !hostname.stdout.is_empty(),
        "cat /etc/hostname is untouched"
    );
    assert!(
        allowed.is_ok_and(|t| t.contains("root")),
        "a binary the policy does not name reads /etc/passwd"
    );

    let events = policy_events(&run, "/etc/passwd");
    assert_eq!(
        events.len(),
        3,
        "one event per blocked open of /etc/passwd: {events:#?}"
    );
    for e in events {
        assert_eq!(e["policy_name"], "deny-passwd");
        assert_eq!(e["function_name"], "file_open");
        assert_eq!(e["action"], override_done());
        assert_eq!(e["outcome"], if lsm() { "denied" } else { "killed" });
        assert_eq!(e["message"], "credential file read");
        assert_eq!(e["process"]["binary"], resolved("/bin/cat"));
        assert!(e["process"]["exec_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()));
    }
    assert_eq!(policy_events(&run, "/etc/shadow").len(), 1);
    assert!(policy_events(&run, "/etc/hostname").is_empty());
}

#[test]
fn monitor_mode_reports_what_it_would_have_done() {
    let dir = TempDir::new("monitor");
    let policy = dir.path().join("deny.yaml");
    std::fs::write(&policy, fixtures::deny_passwd("monitor")).unwrap();

    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let out = cat(&["/etc/passwd"], "/");
    let run = agent.stop();

    assert!(
        out.status.success(),
        "monitor mode must not enforce: {:?}",
        out.status
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("root"));
    let events = policy_events(&run, "/etc/passwd");
    assert_eq!(events.len(), 1, "{events:#?}");
    let would = if lsm() {
        "would_have_been_denied"
    } else {
        "would_have_been_killed"
    };
    assert_eq!(events[0]["outcome"], would);
    assert_eq!(events[0]["action"], override_done());
    // The opened file's inode mode, as `ls -l` and Tetragon write it.
    use std::os::unix::fs::MetadataExt;
    let mode = std::fs::metadata("/etc/passwd").unwrap().mode();
    assert_eq!(mode & 0o177000, 0o100000, "a plain regular file: {mode:o}");
    let rwx: String = (0..9)
        .map(|bit| match mode & (0o400 >> bit) {
            0 => '-',
            _ => ['r', 'w', 'x'][bit % 3],
        })
        .collect();
    let file = &events[0]["args"][0]["file_arg"];
    assert_eq!(file["permission"], format!("-{rwx}"), "{file}");
    assert!(file.get("flags").is_none(), "{file}");
    // cat ran in `/`: Tetragon's `rootcwd`.
    let flags = events[0]["process"]["flags"].as_str().unwrap();
    assert!(flags.split(' ').any(|w| w == "rootcwd"), "{flags}");
}

/// Policies added, changed and removed in `--policy-dir` while the agent runs take effect
/// within seconds; a broken file is refused and enforcement goes on; removal detaches.
#[test]
fn policy_directory_changes_apply_at_run_time() {
    let dir = TempDir::new("policy-dir");
    let policy = dir.path().join("deny.yaml");
    let agent = Agent::start(&["--policy-dir", dir.path().to_str().unwrap()]);
    assert!(cat(&["/etc/passwd"], "/").status.success(), "no policy yet");

    std::fs::write(&policy, fixtures::deny_passwd("enforce")).unwrap();
    agent.wait_for_log("policy deny-passwd loaded", 0);
    assert!(
        !cat(&["/etc/passwd"], "/").status.success(),
        "enforced once loaded"
    );

    // A broken file next to it is refused; the loaded policy keeps enforcing.
    std::fs::write(dir.path().join("broken.yaml"), BROKEN).unwrap();
    agent.wait_for_log("policy refused", 0);
    assert!(
        !cat(&["/etc/passwd"], "/").status.success(),
        "still enforced next to a broken file"
    );

    // Switched to monitor mode in place: the new rules replace the old ones.
    std::fs::write(&policy, fixtures::deny_passwd("monitor")).unwrap();
    agent.wait_for_log("policy deny-passwd reloaded", 0);
    assert!(
        cat(&["/etc/passwd"], "/").status.success(),
        "monitor mode after the reload"
    );

    std::fs::remove_file(&policy).unwrap();
    agent.wait_for_log("policy deny-passwd removed", 0);
    agent.wait_for_log("file-open programs detached", 0);
    assert!(cat(&["/etc/passwd"], "/").status.success());
    let run = agent.stop();
    let outcomes: Vec<&str> = policy_events(&run, "/etc/passwd")
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    let enforced = if lsm() { "denied" } else { "killed" };
    let would = if lsm() {
        "would_have_been_denied"
    } else {
        "would_have_been_killed"
    };
    assert_eq!(
        outcomes,
        [enforced, enforced, would],
        "one event per open while a policy was loaded"
    );
}

/// Every policy of the broken corpus dropped next to a running policy is refused with its
/// reason, and the running policy never stops enforcing.
#[test]
fn broken_policies_are_refused_while_enforcement_continues() {
    let corpus = vigil_tests::broken_policies_dir();
    let mut broken: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    broken.sort();
    assert!(
        broken.len() >= 25,
        "{} broken policies in {}",
        broken.len(),
        corpus.display()
    );
    let dir = TempDir::new("corpus");
    std::fs::write(
        dir.path().join("deny.yaml"),
        fixtures::deny_passwd("enforce"),
    )
    .unwrap();
    let agent = Agent::start(&["--policy-dir", dir.path().to_str().unwrap()]);
    // Half of the corpus, a check, the other half, a check: refusals never stop enforcement.
    let (first, second) = broken.split_at(broken.len() / 2);
    for (done, batch) in [(first.len(), first), (broken.len(), second)] {
        for f in batch {
            std::fs::copy(f, dir.path().join(f.file_name().unwrap())).unwrap();
        }
        agent.wait_for_log("policy refused", done - 1);
        assert!(
            !cat(&["/etc/passwd"], "/").status.success(),
            "enforcement stopped after {done} refusals"
        );
    }
    let run = agent.stop();
    let refusals = run
        .stderr
        .iter()
        .filter(|l| l.contains("policy refused"))
        .count();
    assert_eq!(refusals, broken.len(), "{:#?}", run.stderr);
    for f in &broken {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            run.stderr.iter().any(|l| l.contains(&name)),
            "no reason given for {name}"
        );
    }
}

/// `vigil policy test` decides recorded opens exactly as the kernel decides live ones: the same
/// commands, recorded under an observing policy and replayed through the deny policy offline,
/// give the matches the agent reports when it enforces that policy.
#[test]
fn policy_test_agrees_with_the_kernel() {
    use std::collections::BTreeSet;
    let dir = TempDir::new("policy-test");
    let observe = dir.path().join("observe.yaml");
    let deny = dir.path().join("deny.yaml");
    std::fs::write(&deny, fixtures::deny_passwd("enforce")).unwrap();
    std::fs::write(
        &observe,
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: observe-etc\nspec:\n  lsmhooks:\n  - hook: file_open\n    args:\n    - index: 0\n      type: file\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Prefix\n        values: [\"/etc/\"]\n",
    )
    .unwrap();
    let commands = || {
        for f in ["/etc/passwd", "/etc/hostname", "/etc/shadow"] {
            let _ = cat(&[f], "/");
        }
        let _ = std::fs::read("/etc/passwd");
    };
    let key = |e: &Value| {
        (
            e["binary"].as_str().unwrap_or("").to_string(),
            e["path"].as_str().unwrap_or("").to_string(),
            e["action"].as_str().unwrap_or("").to_string(),
        )
    };

    let recorder = Agent::start(&["--policy", observe.to_str().unwrap()]);
    commands();
    let recorded = recorder.stop();
    let events = dir.path().join("events.jsonl");
    let lines: Vec<String> = recorded.events.iter().map(|e| e.to_string()).collect();
    std::fs::write(&events, lines.join("\n")).unwrap();
    let out = std::process::Command::new(vigil_tests::vigil_bin())
        .args(["policy", "test", "--json", "--events"])
        .arg(&events)
        .arg(&deny)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline: BTreeSet<_> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| key(&serde_json::from_str::<Value>(l).unwrap()))
        .collect();

    let enforcer = Agent::start(&["--policy", deny.to_str().unwrap()]);
    commands();
    let live = enforcer.stop();
    let online: BTreeSet<_> = live
        .events
        .iter()
        .filter_map(|e| e.get("process_lsm"))
        .map(|e| {
            // The event names what the kernel did (without BPF LSM, the deny policy's Override
            // is a kill); the replay names the selector's action, Override.
            let action = if e["action"] == override_done() {
                "KPROBE_ACTION_OVERRIDE"
            } else {
                e["action"].as_str().unwrap_or("")
            };
            key(&serde_json::json!({
                "binary": e["process"]["binary"], "path": e["args"][0]["file_arg"]["path"], "action": action,
            }))
        })
        .collect();
    assert!(!online.is_empty(), "the enforcing run matched nothing");
    assert_eq!(offline, online, "offline replay and the kernel disagree");
}

/// `Sigkill` kills the process on every kernel (with BPF LSM the open is also refused, so the
/// file is never opened at all); `NoPost` enforces without an event.
#[test]
fn sigkill_signal_and_nopost_actions() {
    let dir = TempDir::new("sigkill");
    let kill = dir.path().join("kill.yaml");
    let quiet = dir.path().join("quiet.yaml");
    let override_action = "- action: Override\n        argError: -1";
    std::fs::write(
        &kill,
        fixtures::deny_passwd("enforce").replace(override_action, "- action: Sigkill"),
    )
    .unwrap();
    std::fs::write(
        &quiet,
        fixtures::deny_passwd("enforce")
            .replace("name: deny-passwd", "name: quiet-deny")
            .replace("\"/etc/passwd\", \"/etc/shadow\"", "\"/etc/shadow\"")
            .replace(override_action, "- action: Sigkill\n      - action: NoPost"),
    )
    .unwrap();
    let agent = Agent::start(&[
        "--policy",
        kill.to_str().unwrap(),
        "--policy",
        quiet.to_str().unwrap(),
    ]);
    let passwd = cat(&["/etc/passwd"], "/");
    let run = agent.stop();
    assert_eq!(passwd.status.signal(), Some(9), "{:?}", passwd.status);
    assert!(passwd.stdout.is_empty());
    let events = policy_events(&run, "/etc/passwd");
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["action"], "KPROBE_ACTION_SIGKILL");
    assert_eq!(events[0]["outcome"], "killed");

    let agent = Agent::start(&["--policy", quiet.to_str().unwrap()]);
    let shadow = cat(&["/etc/shadow"], "/");
    let run = agent.stop();
    assert_eq!(
        shadow.status.signal(),
        Some(9),
        "NoPost still enforces: {:?}",
        shadow.status
    );
    assert!(
        policy_events(&run, "/etc/shadow").is_empty(),
        "NoPost reports nothing"
    );
}

/// The enforcing deny of `cat`, on files whose path ends with `value`.
fn deny_postfix(value: &str) -> String {
    fixtures::deny_passwd("enforce")
        .replace("operator: Equal", "operator: Postfix")
        .replace("\"/etc/passwd\", \"/etc/shadow\"", &format!("\"{value}\""))
}

/// Postfix filters compare the end of the resolved path: one holding a `/` through the open
/// prefilter (by the file name it ends with), one without (`sswd` ends any name) without it.
#[test]
fn postfix_filters_match_the_end_of_the_resolved_path() {
    let dir = TempDir::new("postfix");
    for value in ["/passwd", "sswd"] {
        let policy = dir.path().join("postfix.yaml");
        std::fs::write(&policy, deny_postfix(value)).unwrap();
        let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
        let passwd = cat(&["passwd"], "/etc");
        let hostname = cat(&["/etc/hostname"], "/");
        let run = agent.stop();
        assert!(
            passwd.stdout.is_empty() && !passwd.status.success(),
            "Postfix {value}: {:?}",
            passwd.status
        );
        assert!(hostname.status.success());
        assert_eq!(
            policy_events(&run, "/etc/passwd").len(),
            1,
            "Postfix {value}"
        );
    }
}

/// A directory name long enough to push the file's name past the first 251 bytes of its path
/// (what the forward keys hold) does not hide the file from a Postfix.
#[test]
fn a_postfix_holds_for_a_path_longer_than_the_forward_key() {
    let dir = TempDir::new("postfix-long");
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let ssh = root.join("a".repeat(240)).join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let key = ssh.join("id_rsa");
    std::fs::write(&key, "key").unwrap();
    let key = key.to_str().unwrap();
    assert!(key.len() > 251, "{key}");
    let policy = root.join("postfix.yaml");
    std::fs::write(&policy, deny_postfix("/.ssh/id_rsa")).unwrap();
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let read = cat(&[key], "/");
    let run = agent.stop();
    assert!(
        read.stdout.is_empty() && !read.status.success(),
        "the key behind a long directory was read: {:?}",
        read.status
    );
    assert_eq!(policy_events(&run, key).len(), 1);
}

/// A file mounted on its own under another name (a container's secret, `docker -v
/// key:/root/.ssh/id_rsa`) is opened by the name of its mountpoint: a Postfix on that name
/// holds for it, though the file's own name (which the open prefilter reads) is another.
#[test]
fn a_file_mounted_on_its_own_is_judged_by_its_mounted_name() {
    let dir = TempDir::new("mounted-file");
    let root = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir_all(root.join("home/.ssh")).unwrap();
    std::fs::write(root.join("deploy-key"), "key").unwrap();
    let target = root.join("home/.ssh/id_rsa");
    std::fs::write(&target, "").unwrap();
    let mounted = Command::new("mount")
        .args(["--bind"])
        .arg(root.join("deploy-key"))
        .arg(&target)
        .status()
        .expect("run mount");
    assert!(mounted.success(), "mount --bind: {mounted:?}");
    let policy = root.join("mounted.yaml");
    std::fs::write(&policy, deny_postfix("/.ssh/id_rsa")).unwrap();
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let read = cat(&[target.to_str().unwrap()], "/");
    let own_name = cat(&[root.join("deploy-key").to_str().unwrap()], "/");
    let run = agent.stop();
    let _ = Command::new("umount").arg(&target).status();
    assert!(
        read.stdout.is_empty() && !read.status.success(),
        "the mounted key was read: {:?}",
        read.status
    );
    assert!(own_name.status.success(), "{:?}", own_name.status);
    assert_eq!(policy_events(&run, target.to_str().unwrap()).len(), 1);
}

/// Each file-open hook of a policy has its own first match, as every other hook does and as
/// `vigil policy explain` describes it: an audit hook matching every file under /etc does not
/// shadow the policy's second hook, which denies /etc/shadow to cat.
#[test]
fn a_policy_s_second_file_open_hook_is_not_shadowed_by_its_first() {
    let dir = TempDir::new("two-hooks");
    let policy = dir.path().join("two-hooks.yaml");
    let text = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: audit-and-deny\nspec:\n  lsmhooks:\n  - hook: file_open\n    args:\n    - index: 0\n      type: file\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Prefix\n        values: [\"/etc/\"]\n      matchBinaries:\n      - operator: In\n        values: [\"CAT\"]\n  - hook: file_open\n    args:\n    - index: 0\n      type: file\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Equal\n        values: [\"/etc/shadow\"]\n      matchBinaries:\n      - operator: In\n        values: [\"CAT\"]\n      matchActions:\n      - action: Override\n        argError: -1\n"
        .replace("CAT", &resolved("/bin/cat"));
    std::fs::write(&policy, text).unwrap();
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let shadow = cat(&["/etc/shadow"], "/");
    let hostname = cat(&["/etc/hostname"], "/");
    let run = agent.stop();
    assert!(
        shadow.stdout.is_empty() && !shadow.status.success(),
        "{:?}",
        shadow.status
    );
    assert!(hostname.status.success() && !hostname.stdout.is_empty());
    let shadow_events = policy_events(&run, "/etc/shadow");
    let actions: Vec<&str> = shadow_events
        .iter()
        .map(|e| e["action"].as_str().unwrap_or(""))
        .collect();
    assert!(
        actions.contains(&override_done()) && actions.contains(&"KPROBE_ACTION_POST"),
        "both hooks report the open of /etc/shadow: {shadow_events:#?}"
    );
    assert_eq!(policy_events(&run, "/etc/hostname").len(), 1);
}
