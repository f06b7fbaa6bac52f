//! A policy's `tracepoints:`, with Tetragon's own examples: a tracepoint's fields read by their
//! index in its format (raw_syscalls/sys_enter's `id`, matched against a list of system calls),
//! and a raw tracepoint's arguments (sched_process_exec's `struct linux_binprm *`). Tracepoints
//! attach on every kernel, so both run on the host and in the VM.

use std::process::Command;

use serde_json::Value;
use vigil_tests::{require_root, tetragon_policies_dir, Agent};

fn tracepoint_events<'a>(events: &'a [Value], subsys: &str, event: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter_map(|e| e.get("process_tracepoint"))
        .filter(|e| e["subsys"] == subsys && e["event"] == event)
        .collect()
}

/// tracingpolicy_list-syscalls-tracepoint.yaml: every system call's entry is one tracepoint;
/// the policy's `InMap` on its `id` field keeps the calls of its list (dup, dup2), each
/// reported with its number, and no other.
#[test]
fn a_tracepoint_field_is_matched_against_a_list_of_system_calls() {
    require_root();
    let policy = tetragon_policies_dir().join("tracingpolicy_list-syscalls-tracepoint.yaml");
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    // SAFETY: dup, dup2, close and getppid on descriptors this test owns.
    let tid = unsafe {
        let a = libc::dup(1);
        let b = libc::dup2(1, a + 1);
        libc::close(a);
        libc::close(b);
        libc::getppid();
        libc::syscall(libc::SYS_gettid) as u32
    };
    let run = agent.stop();
    let ours: Vec<&Value> = tracepoint_events(&run.events, "raw_syscalls", "sys_enter")
        .into_iter()
        .filter(|e| e["process"]["tid"] == tid)
        .collect();
    let ids: Vec<String> = ours
        .iter()
        .map(|e| e["args"][0]["size_arg"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(
        ids,
        [libc::SYS_dup.to_string(), libc::SYS_dup2.to_string()],
        "only dup and dup2, in order: {ours:#?}"
    );
    assert!(ours
        .iter()
        .all(|e| e["policy_name"] == "list-syscalls-tracepoint"
            && e["action"] == "KPROBE_ACTION_POST"));
}

/// tracingpolicy_rawtp.yaml: sched_process_exec's raw arguments; the third, the
/// `struct linux_binprm *`, is reported as the file executed.
#[test]
fn a_raw_tracepoint_reports_the_program_executed() {
    require_root();
    let policy = tetragon_policies_dir().join("tracingpolicy_rawtp.yaml");
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let child = Command::new("/bin/true").spawn().unwrap();
    let pid = child.id();
    let status = child.wait_with_output().unwrap().status;
    assert!(status.success());
    let run = agent.stop();
    let ours: Vec<&Value> = tracepoint_events(&run.events, "sched", "sched_process_exec")
        .into_iter()
        .filter(|e| e["process"]["pid"] == pid)
        .collect();
    let truth = std::fs::canonicalize("/bin/true").unwrap();
    assert!(
        ours.iter()
            .any(|e| e["args"][0]["linux_binprm_arg"]["path"] == truth.to_str().unwrap()),
        "the exec of {} reported: {ours:#?}",
        truth.display()
    );
}
