//! `spec.lists`: one hook on many functions. The real agent hooks a list of system calls and
//! reads each call's arguments, Tetragon's own example hooks every system call for one binary,
//! and (where kprobes exist) a list generated from the functions ftrace can trace; every event
//! names the member that fired.

use std::path::Path;

use serde_json::Value;
use vigil_tests::{
    kernels::{scenario_needs, Hook},
    require_root, tetragon_policies_dir, Agent, TempDir,
};

/// The binary Tetragon's list examples select (procps' kill; the VM matrix copies it).
const KILL: &str = "/usr/bin/kill";

fn kprobe_events(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter_map(|e| e.get("process_kprobe"))
        .collect()
}

fn functions_of<'a>(events: &[&'a Value], binary: &str) -> Vec<&'a str> {
    let mut f: Vec<&str> = events
        .iter()
        .filter(|e| e["process"]["binary"] == binary)
        .filter_map(|e| e["function_name"].as_str())
        .collect();
    f.sort();
    f.dedup();
    f
}

/// Runs `kill -0` on the test's own pid: a process that makes a known set of system calls.
fn run_kill() {
    assert!(
        Path::new(KILL).is_file(),
        "{KILL} is missing: the scenario runs the binary Tetragon's example selects (make test installs procps)"
    );
    let status = std::process::Command::new(KILL)
        .args(["-0", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_list_of_system_calls_reads_each_call_s_arguments_and_names_the_call() {
    require_root();
    let dir = TempDir::new("list-syscalls");
    let policy = dir.path().join("dups.yaml");
    let me = std::process::id();
    std::fs::write(
        &policy,
        format!(
            "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: dups\nspec:\n  lists:\n  - name: dups\n    type: syscalls\n    values: [sys_dup, sys_dup2, sys_getppid]\n  kprobes:\n  - call: list:dups\n    args:\n    - index: 0\n      type: int\n    - index: 1\n      type: int\n    selectors:\n    - matchPIDs:\n      - operator: In\n        values: [{me}]\n"
        ),
    )
    .unwrap();
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let file = std::fs::File::open("/proc/self/status").unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: dup, dup2 and close on a descriptor this test owns; getppid has no arguments.
    let (copy, target) = unsafe {
        let copy = libc::dup(fd);
        let target = libc::dup2(fd, 900);
        libc::getppid();
        libc::close(copy);
        libc::close(target);
        (copy, target)
    };
    assert!(copy >= 0 && target == 900);
    let run = agent.stop();
    let ours: Vec<&Value> = kprobe_events(&run.events)
        .into_iter()
        .filter(|e| e["process"]["pid"] == me && e["policy_name"] == "dups")
        .collect();
    let by = |f: &str| -> Vec<&Value> {
        ours.iter()
            .copied()
            .filter(|e| e["function_name"] == f)
            .collect()
    };
    let dup = by("__x64_sys_dup");
    assert!(
        dup.iter().any(|e| e["args"][0]["int_arg"] == fd),
        "dup({fd}): {ours:#?}"
    );
    let dup2 = by("__x64_sys_dup2");
    assert!(
        dup2.iter()
            .any(|e| e["args"][0]["int_arg"] == fd && e["args"][1]["int_arg"] == 900),
        "dup2({fd}, 900): {ours:#?}"
    );
    // getppid takes no argument: the ones the hook reads are 0, not another call's.
    let getppid = by("__x64_sys_getppid");
    assert!(!getppid.is_empty(), "getppid: {ours:#?}");
    assert!(
        getppid
            .iter()
            .all(|e| e["args"][0]["int_arg"] == 0 && e["args"][1]["int_arg"] == 0),
        "{getppid:#?}"
    );
    assert!(
        ours.iter().all(|e| matches!(
            e["function_name"].as_str(),
            Some("__x64_sys_dup" | "__x64_sys_dup2" | "__x64_sys_getppid")
        )),
        "only the list's calls: {ours:#?}"
    );
}

#[test]
fn tetragon_s_generated_syscalls_example_reports_every_system_call_of_kill() {
    require_root();
    let file = tetragon_policies_dir().join("tracingpolicy_list-syscalls-generated.yaml");
    let agent = Agent::start(&["--policy", file.to_str().unwrap()]);
    run_kill();
    let run = agent.stop();
    let events = kprobe_events(&run.events);
    let calls = functions_of(&events, KILL);
    // (execve's entry is still the parent's binary: kill's own calls start after it.)
    for expected in ["__x64_sys_kill", "__x64_sys_exit_group"] {
        assert!(calls.contains(&expected), "{expected} in {calls:?}");
    }
    assert!(
        calls.len() >= 5,
        "kill makes more system calls than {calls:?}"
    );
    let kill = events
        .iter()
        .find(|e| e["function_name"] == "__x64_sys_kill" && e["process"]["binary"] == KILL)
        .unwrap();
    assert_eq!(kill["policy_name"], "all-syscalls-for-kill");
    assert!(
        events.iter().all(|e| e["process"]["binary"] == KILL),
        "matchBinaries keeps every other program out: {:#?}",
        events
            .iter()
            .filter(|e| e["process"]["binary"] != KILL)
            .take(3)
            .collect::<Vec<_>>()
    );
}

#[test]
fn tetragon_s_generated_ftrace_example_hooks_every_matching_kernel_function() {
    let file = tetragon_policies_dir().join("tracingpolicy_list-generated-ftrace.yaml");
    if !scenario_needs(
        "tetragon_s_generated_ftrace_example_hooks_every_matching_kernel_function",
        &[Hook::Kprobe],
    ) {
        return;
    }
    require_root();
    let agent = Agent::start(&["--policy", file.to_str().unwrap()]);
    let loaded = agent.log_lines().join("\n");
    run_kill();
    let run = agent.stop();
    let events = kprobe_events(&run.events);
    let functions = functions_of(&events, KILL);
    // kill's dynamic loader maps its libraries: mmap(2) runs ksys_mmap_pgoff.
    assert!(
        functions.contains(&"ksys_mmap_pgoff"),
        "{functions:?}\n{loaded}"
    );
    assert!(
        functions.iter().all(|f| f.starts_with("ksys")),
        "{functions:?}"
    );
}
