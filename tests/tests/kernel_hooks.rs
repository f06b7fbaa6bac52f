//! Hooks beyond tracepoints: where the kernel has them (the Debian VM), vigil's probe must load,
//! attach and run a real program of each kind, an LSM program on `file_open` included.

use std::os::unix::process::CommandExt;

use serde_json::Value;
use vigil_tests::{
    kernels::{scenario_needs, Hook},
    require_root,
};

fn kind(report: &Value, k: &str) -> Value {
    report["program_kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == k)
        .cloned()
        .unwrap_or_else(|| panic!("no {k}"))
}

#[test]
fn an_lsm_program_on_file_open_runs() {
    if !scenario_needs("an_lsm_program_on_file_open_runs", &[Hook::Lsm]) {
        return;
    }
    require_root();
    let report = vigil_tests::probe_json();
    let lsm = kind(&report, "lsm");
    assert_eq!(lsm["loads"], true, "{lsm}");
    assert_eq!(lsm["attaches"], true, "{lsm}");
    assert_eq!(
        lsm["fires"], true,
        "the lsm/file_open program did not run on the probe's own open(): {lsm}"
    );
    assert!(report["lsms"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l == "bpf"));
}

#[test]
fn kprobe_and_fentry_programs_run() {
    if !scenario_needs(
        "kprobe_and_fentry_programs_run",
        &[Hook::Kprobe, Hook::Fentry],
    ) {
        return;
    }
    require_root();
    let report = vigil_tests::probe_json();
    for k in ["kprobe", "fentry"] {
        let r = kind(&report, k);
        assert_eq!(r["available"], true, "{r}");
        assert_eq!(
            r["fires"], true,
            "{k} on do_unlinkat did not run on the probe's unlink(): {r}"
        );
    }
}

#[test]
fn setuid_calls_report_the_uid() {
    require_root();
    let dir = vigil_tests::TempDir::new("setuid");
    let policy = dir.path().join("setuid.yaml");
    std::fs::write(&policy, vigil_tests::fixtures::SETUID_POLICY).unwrap();
    let agent = vigil_tests::Agent::start(&["--policy", policy.to_str().unwrap()]);
    // std drops to uid 65534 with setuid(2) in the child before it execs.
    let mut child = std::process::Command::new("true")
        .uid(65534)
        .gid(65534)
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    let run = agent.stop();
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("policy syscalls loaded")),
        "{:#?}",
        run.stderr
    );
    // The child calls setuid(2) before it execs; what it execs may call it again (busybox does),
    // so count the calls made while it was still this test's image.
    let me = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    let events: Vec<_> = run
        .kprobes("sys_setuid")
        .into_iter()
        .filter(|e| e["process"]["pid"] == pid && e["process"]["binary"] == me.to_str().unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{:#?}", run.kprobes("sys_setuid"));
    assert_eq!(events[0]["args"][0]["int_arg"], 65534);
    assert_eq!(events[0]["policy_name"], "syscalls");
    assert_eq!(events[0]["action"], "KPROBE_ACTION_POST");
}

#[test]
fn tcp_connect_reports_the_socket() {
    if !scenario_needs("tcp_connect_reports_the_socket", &[Hook::Kprobe]) {
        return;
    }
    require_root();
    let dir = vigil_tests::TempDir::new("connect");
    let policy = dir.path().join("connect.yaml");
    std::fs::write(&policy, vigil_tests::fixtures::CONNECT_POLICY).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let agent = vigil_tests::Agent::start(&["--policy", policy.to_str().unwrap()]);
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let local = stream.local_addr().unwrap().port();
    drop(stream);
    let run = agent.stop();
    let events: Vec<_> = run
        .kprobes("tcp_connect")
        .into_iter()
        .filter(|e| e["args"][0]["sock_arg"]["dport"] == port)
        .collect();
    assert_eq!(events.len(), 1, "{:#?}", run.kprobes("tcp_connect"));
    let sock = &events[0]["args"][0]["sock_arg"];
    assert_eq!(sock["family"], "AF_INET");
    assert_eq!(sock["type"], "SOCK_STREAM");
    assert_eq!(sock["protocol"], "IPPROTO_TCP");
    assert_eq!(sock["saddr"], "127.0.0.1");
    assert_eq!(sock["daddr"], "127.0.0.1");
    assert_eq!(sock["sport"], local);
    assert_eq!(events[0]["process"]["pid"], std::process::id());
}

/// What the agent does with each of Tetragon's example policies: loads it, or refuses it whole
/// naming what it does not support (on the host, also what this kernel cannot attach).
#[test]
fn tetragon_examples_load_or_are_refused_by_name() {
    require_root();
    let kprobes = vigil_tests::kernels::current()
        .hooks
        .contains(&Hook::Kprobe);
    let no_kprobes = "needs a kprobe, and this kernel allows none";
    let fmod_ret = vigil_tests::kernels::current()
        .hooks
        .contains(&Hook::FmodRet);
    let no_override = "Override needs fmod_ret programs (BPF trampolines)";
    let expectations: [(&str, Option<&str>); 13] = [
        // Arguments kept from the entry with the return value.
        (
            "policylibrary_modules.yaml",
            if kprobes { None } else { Some(no_kprobes) },
        ),
        // Namespaced without a namespace: `default`, as kubectl applies it.
        (
            "quickstart_file_monitoring_enforce.yaml",
            if kprobes { None } else { Some(no_kprobes) },
        ),
        // `nop` arguments, and arguments with the return value.
        (
            "tracingpolicy_filename_monitoring.yaml",
            if kprobes { None } else { Some(no_kprobes) },
        ),
        // A tracepoint's field matched against a list of system calls.
        ("tracingpolicy_list-syscalls-tracepoint.yaml", None),
        (
            "tracingpolicy_lsm_bprm_check.yaml",
            Some("`imaHash` is not supported by vigil"),
        ),
        ("tracingpolicy_lsm_file_open.yaml", None),
        ("tracingpolicy_rawtp.yaml", None),
        (
            "tracingpolicy_security-socket-connect.yaml",
            if kprobes { None } else { Some(no_kprobes) },
        ),
        // Override at the LSM check symlinkat passes through, by fmod_ret.
        (
            "tracingpolicy_symlink-override.yaml",
            if fmod_ret { None } else { Some(no_override) },
        ),
        ("tracingpolicy_sys_setuid.yaml", None),
        // tcp_connect is served without kprobes by the return from connect().
        ("tracingpolicy_tcp-connect-only-private-addrs.yaml", None),
        (
            "tracingpolicy_tcp-connect.yaml",
            if kprobes { None } else { Some(no_kprobes) },
        ),
        ("tracingpolicy_write.yaml", None),
    ];
    // The listed examples only: the test data holds others, some of which share a policy
    // name with these (two are named `syscalls`) and would be refused as already loaded.
    let data = vigil_tests::tetragon_policies_dir();
    let copy = vigil_tests::TempDir::new("tetragon-examples");
    let dir = copy.path();
    for (file, _) in &expectations {
        std::fs::copy(data.join(file), dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let agent = vigil_tests::Agent::start(&["--policy-dir", dir.to_str().unwrap()]);
    let run = agent.stop();
    let log = run.stderr.join("\n");
    let mut wrong = Vec::new();
    for (file, refusal) in expectations {
        let path = dir.join(file).display().to_string();
        let loaded = run
            .stderr
            .iter()
            .any(|l| l.contains("loaded from") && l.contains(&path));
        let refused_with = |why: &str| {
            run.stderr
                .iter()
                .any(|l| l.starts_with(&path) && l.contains(why))
        };
        match refusal {
            None if !loaded => wrong.push(format!("{file} should load")),
            Some(why) if loaded || !refused_with(why) => {
                wrong.push(format!("{file} should be refused naming {why:?}"))
            }
            _ => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\n--- agent log ---\n{log}",
        wrong.join("\n")
    );
}

/// A policy hooking a function's entry and its return: each kprobe program runs only the hooks
/// of its own side, so one unlink gives one event with the arguments and one with the return
/// value (kernel addresses have the return key's bit set already, so the two keys once
/// coincided and each program ran both hooks).
#[test]
fn entry_and_return_hooks_on_one_function_each_run_on_their_own_side() {
    if !scenario_needs(
        "entry_and_return_hooks_on_one_function_each_run_on_their_own_side",
        &[Hook::Kprobe],
    ) {
        return;
    }
    require_root();
    let dir = vigil_tests::TempDir::new("entry-return");
    let policy = dir.path().join("unlink.yaml");
    std::fs::write(
        &policy,
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: unlink-both-sides\nspec:\n  kprobes:\n  - call: do_unlinkat\n    args:\n    - index: 0\n      type: int\n  - call: do_unlinkat\n    return: true\n    returnArg:\n      index: 0\n      type: int\n",
    )
    .unwrap();
    let victim = dir.path().join("victim");
    let agent = vigil_tests::Agent::start(&["--policy", policy.to_str().unwrap()]);
    std::fs::write(&victim, b"x").unwrap();
    std::fs::remove_file(&victim).unwrap();
    let run = agent.stop();
    let ours: Vec<&Value> = run
        .kprobes("do_unlinkat")
        .into_iter()
        .filter(|e| e["process"]["pid"] == std::process::id())
        .collect();
    assert_eq!(ours.len(), 2, "{ours:#?}");
    let entry: Vec<_> = ours.iter().filter(|e| e.get("return").is_none()).collect();
    let ret: Vec<_> = ours.iter().filter(|e| e.get("return").is_some()).collect();
    assert_eq!((entry.len(), ret.len()), (1, 1), "{ours:#?}");
    assert_eq!(entry[0]["args"][0]["int_arg"], -100, "AT_FDCWD: {ours:#?}");
    assert_eq!(ret[0]["return"]["int_arg"], 0, "{ours:#?}");
}

/// tracingpolicy_loader.yaml (`loader: true`): each executable file a process maps, the program
/// and its libraries, reported as `process_loader` with the file's build id. The loader is
/// judged at the LSM check of every mapping (a kprobe), so it runs where kprobes exist.
#[test]
fn the_loader_reports_each_executable_file_mapped_with_its_build_id() {
    if !vigil_tests::kernels::scenario_needs(
        "the_loader_reports_each_executable_file_mapped_with_its_build_id",
        &[Hook::Kprobe],
    ) {
        return;
    }
    require_root();
    let policy = vigil_tests::tetragon_policies_dir().join("tracingpolicy_loader.yaml");
    let agent = vigil_tests::Agent::start(&["--policy", policy.to_str().unwrap()]);
    // procps' kill, a dynamically linked program in the VM's image too, run twice: the agent
    // waits 20 ms for a file's build id and keeps a later answer for the next event about the
    // file, and the first read of a file in the emulated VM can take longer than that.
    let pids: Vec<u32> = (0..2)
        .map(|_| {
            let child = std::process::Command::new("/usr/bin/kill")
                .arg("-l")
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let pid = child.id();
            assert!(child.wait_with_output().unwrap().status.success());
            std::thread::sleep(std::time::Duration::from_millis(200));
            pid
        })
        .collect();
    let run = agent.stop();
    let loaded: Vec<&serde_json::Value> = run
        .events
        .iter()
        .filter_map(|e| e.get("process_loader"))
        .filter(|e| e["process"]["pid"] == pids[1])
        .collect();
    assert!(!loaded.is_empty(), "no process_loader for pid {}", pids[1]);
    let truth = std::fs::canonicalize("/usr/bin/kill").unwrap();
    let program = loaded
        .iter()
        .find(|e| e["path"] == truth.to_str().unwrap())
        .unwrap_or_else(|| panic!("{} not among {loaded:#?}", truth.display()));
    use base64::Engine;
    let id = base64::engine::general_purpose::STANDARD
        .decode(program["buildid"].as_str().expect("a build id"))
        .unwrap();
    // The id is the note's bytes in the file, after its name.
    let bytes = std::fs::read(&truth).unwrap();
    assert!(id.len() >= 16);
    assert!(bytes
        .windows(id.len() + 4)
        .any(|w| &w[..4] == b"GNU\0" && w[4..] == id[..]));
    assert!(
        loaded
            .iter()
            .any(|e| e["path"].as_str().is_some_and(|p| p.contains("libc.so"))),
        "the C library is mapped executable too: {loaded:#?}"
    );
}
