//! Selectors on generic hooks, evaluated in the kernel: integer, string and descriptor
//! conditions, binaries, pids (with followForks), capabilities, and the Sigkill action, on a
//! system call hooked by kprobe (VM) or by its enter tracepoint (host). Then Tetragon's example
//! policies that need them, in the VM where kprobes exist.

use std::os::unix::process::{CommandExt, ExitStatusExt};

use serde_json::Value;
use vigil_tests::{
    kernels::{scenario_needs, Hook},
    require_root, Agent, TempDir,
};

/// sys_setuid: uid 4242 is killed; a setuid by a fork of this test (before it execs), holding
/// CAP_SETUID, is reported; nothing else is.
fn setuid_policy(mode: &str, me: &str, pid: u32) -> String {
    format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: setuid-selectors
spec:
  options:
  - name: policy-mode
    value: {mode}
  kprobes:
  - call: sys_setuid
    syscall: true
    args:
    - index: 0
      type: int
    selectors:
    - matchArgs:
      - index: 0
        operator: Equal
        values: ["4242"]
      matchActions:
      - action: Sigkill
    - matchArgs:
      - index: 0
        operator: GT
        values: ["60000"]
      matchBinaries:
      - operator: In
        values: ["{me}"]
      matchPIDs:
      - operator: In
        followForks: true
        values: [{pid}]
      matchCapabilities:
      - type: Effective
        operator: In
        values: ["CAP_SETUID"]
"#
    )
}

fn spawn_as(uid: u32) -> (u32, std::process::ExitStatus) {
    let mut child = std::process::Command::new("true")
        .uid(uid)
        .gid(uid)
        .spawn()
        .expect("spawn");
    let pid = child.id();
    (pid, child.wait().unwrap())
}

fn setuid_scenario(mode: &str) {
    require_root();
    let me = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    let dir = TempDir::new("setuid-selectors");
    let policy = dir.path().join("setuid.yaml");
    let text = setuid_policy(mode, me.to_str().unwrap(), std::process::id());
    std::fs::write(&policy, text).unwrap();
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let (killed_pid, killed) = spawn_as(4242);
    let (posted_pid, posted) = spawn_as(65534);
    let (_, quiet) = spawn_as(1000);
    let run = agent.stop();
    // Once exec'd, a child's new image may call setuid(2) itself (busybox does): count the
    // calls made while it was still this test's binary.
    let events: Vec<_> = run
        .kprobes("sys_setuid")
        .into_iter()
        .filter(|e| e["process"]["binary"] == me.to_str().unwrap())
        .collect();
    let of = |pid: u32| -> Vec<&&Value> {
        events
            .iter()
            .filter(|e| e["process"]["pid"] == pid)
            .collect()
    };

    let k = of(killed_pid);
    assert_eq!(k.len(), 1, "{events:#?}");
    assert_eq!(k[0]["args"][0]["int_arg"], 4242);
    assert_eq!(k[0]["action"], "KPROBE_ACTION_SIGKILL");
    assert_eq!(k[0]["policy_name"], "setuid-selectors");
    if mode == "enforce" {
        assert_eq!(
            killed.signal(),
            Some(9),
            "uid 4242 must be killed: {killed:?}"
        );
        assert_eq!(k[0]["outcome"], "killed");
    } else {
        assert!(killed.success(), "monitor mode must not kill: {killed:?}");
        assert_eq!(k[0]["outcome"], "would_have_been_killed");
    }

    // The fork has not exec'd yet: it is still this test's binary and counts as this pid.
    assert!(posted.success());
    let p = of(posted_pid);
    assert_eq!(p.len(), 1, "{events:#?}");
    assert_eq!(p[0]["args"][0]["int_arg"], 65534);
    assert_eq!(p[0]["outcome"], "posted");
    assert_eq!(p[0]["process"]["binary"], me.to_str().unwrap());

    // uid 1000 fails the GT condition of the second selector and the first selector's value.
    assert!(quiet.success());
    assert_eq!(
        events.len(),
        2,
        "only the two matching calls are reported: {events:#?}"
    );
}

#[test]
fn int_binary_pid_and_capability_selectors_kill_in_the_kernel() {
    setuid_scenario("enforce");
}

#[test]
fn monitor_mode_reports_the_kill_it_would_have_made() {
    setuid_scenario("monitor");
}

/// Two policies hook setuid(2): each runs its own selectors and actions on every call, and
/// removing one leaves the other's in force.
#[test]
fn policies_hooking_the_same_function_each_run() {
    require_root();
    let me = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    let dir = TempDir::new("shared-hook");
    let policy = |name: &str, selector: &str| {
        format!(
            r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: {name}
spec:
  kprobes:
  - call: sys_setuid
    syscall: true
    args:
    - index: 0
      type: int
    selectors:
    - matchBinaries:
      - operator: In
        values: ["{me}"]
{selector}
"#,
            me = me.display()
        )
    };
    for (file, name, selector) in [
        (
            "wide.yaml",
            "setuid-wide",
            "      matchArgs:\n      - index: 0\n        operator: GT\n        values: [\"4240\"]",
        ),
        (
            "narrow.yaml",
            "setuid-narrow",
            "      matchArgs:\n      - index: 0\n        operator: Equal\n        values: [\"4244\"]\n      matchActions:\n      - action: Sigkill",
        ),
    ] {
        std::fs::write(dir.path().join(file), policy(name, selector)).unwrap();
    }
    let agent = Agent::start(&["--policy-dir", dir.path().to_str().unwrap()]);
    let (only_wide, reported) = spawn_as(4243);
    let (both, killed) = spawn_as(4244);
    std::fs::remove_file(dir.path().join("narrow.yaml")).unwrap();
    agent.wait_for_log("policy setuid-narrow removed", 0);
    let (after, survived) = spawn_as(4244);
    let run = agent.stop();
    let events = run.kprobes("sys_setuid");
    let of = |pid: u32| -> Vec<&str> {
        let mut names: Vec<&str> = events
            .iter()
            .filter(|e| {
                e["process"]["pid"] == pid && e["process"]["binary"] == me.to_str().unwrap()
            })
            .map(|e| e["policy_name"].as_str().unwrap())
            .collect();
        names.sort();
        names
    };
    assert!(reported.success(), "{reported:?}");
    assert_eq!(of(only_wide), ["setuid-wide"], "{events:#?}");
    assert_eq!(
        killed.signal(),
        Some(9),
        "the narrow policy kills uid 4244: {killed:?}"
    );
    assert_eq!(of(both), ["setuid-narrow", "setuid-wide"], "{events:#?}");
    assert!(
        survived.success(),
        "the narrow policy is gone: {survived:?}"
    );
    assert_eq!(of(after), ["setuid-wide"], "{events:#?}");
}

#[test]
fn string_and_descriptor_arguments_are_decoded_and_matched() {
    require_root();
    let dir = TempDir::new("hook-args");
    let target = dir.path().join("fd-target.vigil");
    std::fs::write(&target, "x").unwrap();
    let target = std::fs::canonicalize(&target).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    // A file whose path is longer than the kernel keeps of an argument (251 bytes).
    let deep_dir = target.with_file_name("d".repeat(200));
    std::fs::create_dir(&deep_dir).unwrap();
    let deep = deep_dir.join("f".repeat(100));
    std::fs::write(&deep, "x").unwrap();
    std::fs::set_permissions(&deep, std::fs::Permissions::from_mode(0o600)).unwrap();
    // One that ends as the Postfix says, behind a directory that pushes its end out of the
    // bytes kept: the condition holds for it (its end cannot be compared), never lets it by.
    let long_dir = target.with_file_name("e".repeat(200));
    std::fs::create_dir(&long_dir).unwrap();
    let long = long_dir.join(format!("{}.vigil", "g".repeat(100)));
    std::fs::write(&long, "x").unwrap();
    let deep_prefix = format!("{}/ddd", target.parent().unwrap().display());
    let policy = dir.path().join("args.yaml");
    std::fs::write(
        &policy,
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: hook-args
spec:
  kprobes:
  - call: sys_symlinkat
    syscall: true
    args:
    - index: 0
      type: string
    - index: 2
      type: string
    selectors:
    - matchArgs:
      - index: 0
        operator: Prefix
        values: ["/etc/"]
  - call: sys_symlink
    syscall: true
    args:
    - index: 0
      type: string
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 0
        operator: Prefix
        values: ["/etc/"]
  - call: sys_fchmod
    syscall: true
    args:
    - index: 0
      type: fd
    - index: 1
      type: uint32
    selectors:
    - matchArgs:
      - index: 0
        operator: Postfix
        values: [".vigil"]
      - index: 1
        operator: Mask
        values: ["64"]
    - matchArgs:
      - index: 0
        operator: Prefix
        values: ["DEEP"]
"#
        .replace("DEEP", &deep_prefix),
    )
    .unwrap();
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let link = dir.path().join("link-to-hostname");
    let other = dir.path().join("link-elsewhere");
    std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
    std::os::unix::fs::symlink("/tmp/nothing", &other).unwrap();
    let f = std::fs::File::open(&target).unwrap();
    f.set_permissions(std::fs::Permissions::from_mode(0o744))
        .unwrap();
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
        .unwrap();
    std::fs::File::open(&deep)
        .unwrap()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .unwrap();
    std::fs::File::open(&long)
        .unwrap()
        .set_permissions(std::fs::Permissions::from_mode(0o744))
        .unwrap();
    let run = agent.stop();

    // libc makes the link with symlink(2) or symlinkat(2); either is hooked.
    let mut links = run.kprobes("sys_symlinkat");
    links.extend(run.kprobes("sys_symlink"));
    assert_eq!(links.len(), 1, "only the link to /etc/: {links:#?}");
    assert_eq!(links[0]["args"][0]["string_arg"], "/etc/hostname");
    assert_eq!(
        links[0]["args"][1]["string_arg"],
        link.to_str().unwrap(),
        "{links:#?}"
    );
    let all_chmods: Vec<&Value> = run
        .kprobes("sys_fchmod")
        .into_iter()
        .filter(|e| e["process"]["pid"] == std::process::id())
        .collect();
    let kept_of = |path: &std::path::Path| {
        let path = path.to_str().unwrap().to_string();
        move |e: &&&Value| {
            e["args"][0]["file_arg"]["path"]
                .as_str()
                .is_some_and(|kept| path.starts_with(kept) && kept.len() > 60)
        }
    };
    let long_chmods: Vec<&&Value> = all_chmods.iter().filter(kept_of(&long)).collect();
    assert_eq!(
        long_chmods.len(),
        1,
        "the long path's chmod, by the Postfix: {all_chmods:#?}"
    );
    let (chmods, deep_chmods): (Vec<&Value>, Vec<&Value>) = all_chmods
        .iter()
        .filter(|e| !kept_of(&long)(e))
        .partition(|e| e["args"][0]["file_arg"]["path"] == target.to_str().unwrap());
    assert_eq!(chmods.len(), 1, "only the mode with 0o100: {all_chmods:#?}");
    assert_eq!(chmods[0]["args"][1]["int_arg"], 0o744);
    // The inode's mode when the call was made, as Tetragon writes it; a whole path.
    let file = &chmods[0]["args"][0]["file_arg"];
    assert_eq!(file["permission"], "-rw-r-----", "{file}");
    assert!(file.get("flags").is_none(), "{file}");
    // Tetragon never fills `mount`; vigil leaves it out as well.
    assert!(file.get("mount").is_none(), "{file}");
    // The path cut short says so: its first bytes are kept, for prefixes.
    assert_eq!(
        deep_chmods.len(),
        1,
        "the deep file's chmod: {all_chmods:#?}"
    );
    let file = &deep_chmods[0]["args"][0]["file_arg"];
    assert_eq!(file["flags"], "unresolvedPathComponents", "{file}");
    assert_eq!(file["permission"], "-rw-------", "{file}");
    let kept = file["path"].as_str().unwrap();
    assert!(
        kept.len() < deep.to_str().unwrap().len() && deep.to_str().unwrap().starts_with(kept),
        "{kept}"
    );
}

/// A write hook whose selectors all compare the descriptor's file gets a gate at the system
/// call's entry (the union of the values of every hook on the call): writes to the files two
/// policies name are each reported, a write elsewhere is not, and a file whose directory is
/// moved under a named one is reported once the decision cached for it (a second) has aged.
#[test]
fn a_gated_write_hook_reports_the_files_its_policies_name() {
    require_root();
    let dir = TempDir::new("write-gate");
    let root = std::fs::canonicalize(dir.path()).unwrap();
    for d in ["watched", "other", "plain/sub", "policies"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (name, under) in [("gate-watched", "watched"), ("gate-other", "other")] {
        let text = format!(
            "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: {name}\nspec:\n  kprobes:\n  - call: sys_write\n    syscall: true\n    args:\n    - index: 0\n      type: fd\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Prefix\n        values: [\"{}/\"]\n",
            root.join(under).display()
        );
        std::fs::write(root.join("policies").join(format!("{name}.yaml")), text).unwrap();
    }
    let agent = Agent::start(&["--policy-dir", root.join("policies").to_str().unwrap()]);
    let write_to = |f: &mut std::fs::File| {
        use std::io::Write;
        f.write_all(b"x").unwrap();
    };
    let open = |p: &std::path::Path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap()
    };
    for p in ["watched/a", "other/b", "plain/c"] {
        write_to(&mut open(&root.join(p)));
    }
    let mut moved = open(&root.join("plain/sub/d"));
    write_to(&mut moved);
    std::fs::rename(root.join("plain/sub"), root.join("watched/sub")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    write_to(&mut moved);
    let run = agent.stop();

    let paths: Vec<String> = run
        .kprobes("sys_write")
        .into_iter()
        .filter(|e| e["process"]["pid"] == std::process::id())
        .filter_map(|e| e["args"][0]["file_arg"]["path"].as_str().map(String::from))
        .collect();
    let count = |p: &str| {
        let full = root.join(p);
        paths
            .iter()
            .filter(|x| **x == full.to_str().unwrap())
            .count()
    };
    assert_eq!(count("watched/a"), 1, "{paths:#?}");
    assert_eq!(count("other/b"), 1, "{paths:#?}");
    assert_eq!(count("plain/c") + count("plain/sub/d"), 0, "{paths:#?}");
    assert_eq!(
        count("watched/sub/d"),
        1,
        "the moved file, once aged: {paths:#?}"
    );
}

fn tetragon_policy(name: &str) -> String {
    vigil_tests::tetragon_policies_dir()
        .join(name)
        .display()
        .to_string()
}

#[test]
fn tetragon_socket_connect_example_reports_the_sockaddr() {
    if !scenario_needs(
        "tetragon_socket_connect_example_reports_the_sockaddr",
        &[Hook::Kprobe],
    ) {
        return;
    }
    require_root();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let policy = tetragon_policy("tracingpolicy_security-socket-connect.yaml");
    let agent = Agent::start(&["--policy", &policy]);
    drop(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    let run = agent.stop();
    let events: Vec<_> = run
        .kprobes("security_socket_connect")
        .into_iter()
        .filter(|e| e["args"][0]["sockaddr_arg"]["port"] == port)
        .collect();
    assert_eq!(events.len(), 1, "{:#?}", run.events);
    let sa = &events[0]["args"][0]["sockaddr_arg"];
    assert_eq!(sa["family"], "AF_INET");
    assert_eq!(sa["addr"], "127.0.0.1");
    assert_eq!(events[0]["process"]["pid"], std::process::id());
}

#[test]
fn tetragon_private_addrs_example_kills_a_connect_outside_them() {
    if !scenario_needs(
        "tetragon_private_addrs_example_kills_a_connect_outside_them",
        &[Hook::Kprobe],
    ) {
        return;
    }
    require_root();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let policy = tetragon_policy("tracingpolicy_tcp-connect-only-private-addrs.yaml");
    let agent = Agent::start(&["--policy", &policy]);
    // Loopback is private: allowed.
    let allowed = std::net::TcpStream::connect(("127.0.0.1", port));
    // A documentation address (TEST-NET-2), on the loopback of a network namespace made here.
    let outside = std::process::Command::new("unshare")
        .args([
            "-n",
            "sh",
            "-c",
            "ip link set lo up && ip addr add 198.51.100.7/32 dev lo && exec nc 198.51.100.7 9 </dev/null",
        ])
        .status()
        .expect("unshare");
    let run = agent.stop();
    assert!(allowed.is_ok(), "a loopback connect must succeed");
    assert_eq!(outside.signal(), Some(9), "{outside:?}");
    let events = run.kprobes("tcp_connect");
    let killed: Vec<_> = events
        .iter()
        .filter(|e| e["args"][0]["sock_arg"]["daddr"] == "198.51.100.7")
        .collect();
    assert_eq!(killed.len(), 1, "{events:#?}");
    assert_eq!(killed[0]["outcome"], "killed");
    assert!(
        events
            .iter()
            .all(|e| e["args"][0]["sock_arg"]["daddr"] != "127.0.0.1"),
        "loopback matches no selector: {events:#?}"
    );
}

#[test]
fn tetragon_write_example_reports_writes_to_stdout() {
    require_root();
    let policy = tetragon_policy("tracingpolicy_write.yaml");
    let agent = Agent::start(&["--policy", &policy]);
    let out = std::process::Command::new("sh")
        .args(["-c", "echo vigil-write-marker"])
        .output()
        .unwrap();
    let run = agent.stop();
    assert!(out.status.success());
    use base64::Engine;
    let marker = base64::engine::general_purpose::STANDARD.encode("vigil-write-marker\n");
    let events = run.kprobes("sys_write");
    let hits: Vec<_> = events
        .iter()
        .filter(|e| e["args"][1]["bytes_arg"] == marker.as_str())
        .collect();
    assert_eq!(hits.len(), 1, "{events:#?}");
    assert_eq!(hits[0]["args"][0]["int_arg"], 1);
    assert_eq!(hits[0]["args"][2]["size_arg"], "19");
}

/// `vigil policy test` replays recorded setuid calls through the selectors offline; the same
/// calls under the enforcing policy in the kernel give the same (uid, action) set.
#[test]
fn policy_test_agrees_with_the_kernel_on_hook_selectors() {
    use std::collections::BTreeSet;
    require_root();
    let me = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    let dir = TempDir::new("hook-policy-test");
    let observe = dir.path().join("observe.yaml");
    let enforce = dir.path().join("enforce.yaml");
    std::fs::write(&observe, vigil_tests::fixtures::SETUID_POLICY).unwrap();
    std::fs::write(
        &enforce,
        setuid_policy("enforce", me.to_str().unwrap(), std::process::id()),
    )
    .unwrap();
    let commands = || {
        for uid in [4242, 65534, 1000, 61000] {
            spawn_as(uid);
        }
    };
    let mine = |e: &&Value| e["process"]["binary"] == me.to_str().unwrap();

    // The enforcing policy selects on capabilities: the recording must carry them.
    let recorder = Agent::start(&[
        "--policy",
        observe.to_str().unwrap(),
        "--enable-process-cred",
    ]);
    commands();
    let recorded = recorder.stop();
    let events = dir.path().join("events.jsonl");
    let lines: Vec<String> = recorded
        .events
        .iter()
        .filter(|e| e.get("process_kprobe").is_some_and(|k| mine(&k)))
        .map(|e| e.to_string())
        .collect();
    assert_eq!(lines.len(), 4, "{:#?}", recorded.events);
    std::fs::write(&events, lines.join("\n")).unwrap();
    let replay = |events: &std::path::Path| {
        std::process::Command::new(vigil_tests::vigil_bin())
            .args(["policy", "test", "--json", "--events"])
            .arg(events)
            .arg(&enforce)
            .output()
            .unwrap()
    };
    let out = replay(&events);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline: BTreeSet<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["path"].as_str().unwrap_or("").to_string(),
                v["action"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();

    // Recorded without them, the replay refuses rather than read "no capabilities".
    let bare = dir.path().join("bare.jsonl");
    let stripped: Vec<String> = lines
        .iter()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v["process_kprobe"]["process"]
                .as_object_mut()
                .unwrap()
                .remove("cap");
            v.to_string()
        })
        .collect();
    std::fs::write(&bare, stripped.join("\n")).unwrap();
    let out = replay(&bare);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("{}:1:", bare.display()))
            && err.contains("process.cap")
            && err.contains("--enable-process-cred"),
        "{err}"
    );

    let enforcer = Agent::start(&["--policy", enforce.to_str().unwrap()]);
    commands();
    let live = enforcer.stop();
    let online: BTreeSet<(String, String)> = live
        .kprobes("sys_setuid")
        .into_iter()
        .filter(mine)
        .map(|e| {
            (
                e["args"][0]["int_arg"].to_string(),
                e["action"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        online.len(),
        3,
        "4242 killed, 65534 and 61000 posted: {online:#?}"
    );
    assert_eq!(offline, online, "offline replay and the kernel disagree");
}
