//! Installing a policy is all or nothing: a policy whose hook the kernel refuses to attach is
//! refused whole (its other selectors never act, it reports nothing), the agent keeps running,
//! and on a reload the version it was to replace keeps enforcing exactly as before.
//!
//! The attach failure is real: the scenario runs in a private mount namespace (of a thread of
//! this test, inherited by the agent it starts) where the `id` file of the `sys_enter_acct`
//! tracepoint is covered by an empty file, so attaching to it fails the way it fails on a
//! kernel whose tracefs the agent cannot read; the planner, which only checks the tracepoint
//! exists, lets the hook through. The kprobe PMU's `type` file is covered the same way, so the
//! agent's probe finds no kprobes and serves the system call hook from its tracepoint on any
//! kernel. The host's mounts are not touched.

use std::{
    ffi::CString,
    os::unix::process::ExitStatusExt,
    path::Path,
    process::{Command, Output},
};

use serde_json::Value;
use vigil_tests::{resolved, Agent, AgentRun, TempDir};

/// The tracepoint whose attach fails.
const MASKED_TRACEPOINT: &str = "/sys/kernel/tracing/events/syscalls/sys_enter_acct/id";
/// The kprobe PMU: covered, kprobes cannot attach and the probe says so.
const KPROBE_TYPE: &str = "/sys/bus/event_source/devices/kprobe/type";

/// Runs `scenario` on a thread with its own mount namespace in which attaching to
/// [`MASKED_TRACEPOINT`] fails; processes it starts inherit the namespace.
fn with_unattachable_tracepoint(scenario: impl FnOnce() + Send + 'static) {
    vigil_tests::require_root();
    let handle = std::thread::spawn(move || {
        let empty = TempDir::new("masked");
        let blank = empty.path().join("blank");
        std::fs::write(&blank, b"").unwrap();
        // SAFETY: unshare with CLONE_NEWNS (implying CLONE_FS) is allowed in a threaded
        // process and affects only this thread.
        assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNS) }, 0, "unshare");
        mount(None, Path::new("/"), libc::MS_REC | libc::MS_PRIVATE);
        assert!(
            Path::new(MASKED_TRACEPOINT).exists(),
            "{MASKED_TRACEPOINT} missing: this test needs the sys_enter_acct tracepoint"
        );
        mount(Some(&blank), Path::new(MASKED_TRACEPOINT), libc::MS_BIND);
        if Path::new(KPROBE_TYPE).exists() {
            mount(Some(&blank), Path::new(KPROBE_TYPE), libc::MS_BIND);
        }
        scenario();
    });
    if let Err(panic) = handle.join() {
        std::panic::resume_unwind(panic);
    }
}

fn mount(source: Option<&Path>, target: &Path, flags: libc::c_ulong) {
    let c = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let src = source.map(c);
    let tgt = c(target);
    // SAFETY: valid NUL-terminated paths (or NULL for the source); no data.
    let rc = unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            tgt.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    assert_eq!(
        rc,
        0,
        "mount {target:?}: {}",
        std::io::Error::last_os_error()
    );
}

/// A policy named `name` denying `cat` the files in `deny`; with `failing_hook`, also a hook
/// that attaches (setuid) and one that cannot (acct), in that order.
fn policy(name: &str, deny: &[&Path], failing_hook: bool) -> String {
    let values: Vec<String> = deny
        .iter()
        .map(|p| format!("\"{}\"", resolved(p.to_str().unwrap())))
        .collect();
    let mut text = format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: {name}
spec:
  lsmhooks:
  - hook: file_open
    args:
    - index: 0
      type: file
    selectors:
    - matchBinaries:
      - operator: In
        values: ["{cat}"]
      matchArgs:
      - index: 0
        operator: Equal
        values: [{values}]
      matchActions:
      - action: Override
        argError: -1
"#,
        cat = resolved("/bin/cat"),
        values = values.join(", ")
    );
    if failing_hook {
        text.push_str(
            r#"  kprobes:
  - call: "sys_setuid"
    syscall: true
    args:
    - index: 0
      type: "int"
  - call: "sys_acct"
    syscall: true
    args:
    - index: 0
      type: "string"
"#,
        );
    }
    text
}

fn cat(path: &Path) -> Output {
    Command::new("cat").arg(path).output().expect("run cat")
}

/// The open was stopped: killed (tracepoints) or refused (BPF LSM), no byte read.
fn denied(out: &Output) -> bool {
    out.stdout.is_empty() && (out.status.signal() == Some(9) || out.status.code() == Some(1))
}

fn readable(out: &Output) -> bool {
    out.status.success() && out.stdout == b"secret\n"
}

/// Events a policy reported.
fn events_of<'a>(run: &'a AgentRun, policy: &str) -> Vec<&'a Value> {
    run.events
        .iter()
        .filter_map(|e| e.get("process_lsm").or_else(|| e.get("process_kprobe")))
        .filter(|e| e["policy_name"] == policy)
        .collect()
}

fn file_events<'a>(run: &'a AgentRun, path: &Path) -> Vec<&'a Value> {
    let path = resolved(path.to_str().unwrap());
    run.events
        .iter()
        .filter_map(|e| e.get("process_lsm").or_else(|| e.get("process_kprobe")))
        .filter(|e| e["args"][0]["file_arg"]["path"] == path.as_str())
        .collect()
}

fn secret(dir: &TempDir, name: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, b"secret\n").unwrap();
    p
}

#[test]
fn a_policy_whose_second_hook_cannot_attach_is_refused_whole_and_the_agent_keeps_running() {
    with_unattachable_tracepoint(|| {
        let dir = TempDir::new("install");
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        let guarded = secret(&dir, "guarded");
        let spared = secret(&dir, "spared");
        // A running policy keeps the file-open programs attached, so rules the refused
        // policy left behind would act at once.
        std::fs::write(
            policies.join("running.yaml"),
            policy("running", &[&guarded], false),
        )
        .unwrap();
        let agent = Agent::start(&["--policy-dir", policies.to_str().unwrap()]);
        agent.wait_for_log("policy running loaded", 0);
        std::fs::write(
            policies.join("broken.yaml"),
            policy("half-attached", &[&spared], true),
        )
        .unwrap();
        agent.wait_for_log("policy refused", 0);

        let spared_read = cat(&spared);
        let guarded_read = cat(&guarded);
        let run = agent.stop();

        let refusal = run
            .stderr
            .iter()
            .skip_while(|l| !l.contains("policy refused"))
            .nth(1)
            .cloned()
            .unwrap_or_default();
        assert!(
            refusal.contains("broken.yaml") && refusal.contains("sys_enter_acct"),
            "the refusal names the file and the hook that did not attach: {:#?}",
            run.stderr
        );
        assert!(
            readable(&spared_read),
            "the refused policy's file-open selector acted: {spared_read:?}"
        );
        assert!(
            file_events(&run, &spared).is_empty(),
            "{:#?}",
            file_events(&run, &spared)
        );
        assert!(events_of(&run, "half-attached").is_empty());
        assert!(
            denied(&guarded_read),
            "the running policy stopped enforcing: {guarded_read:?}"
        );
        assert_eq!(file_events(&run, &guarded).len(), 1);
    });
}

#[test]
fn a_reload_whose_new_hook_cannot_attach_keeps_the_previous_version_running_as_it_was() {
    with_unattachable_tracepoint(|| {
        let dir = TempDir::new("reload");
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        let old = secret(&dir, "old");
        let new = secret(&dir, "new");
        let file = policies.join("guard.yaml");
        std::fs::write(&file, policy("guard", &[&old], false)).unwrap();
        let agent = Agent::start(&["--policy-dir", policies.to_str().unwrap()]);
        agent.wait_for_log("policy guard loaded", 0);
        let before = cat(&old);

        // Version 2 guards another file and adds a hook that cannot attach.
        std::fs::write(&file, policy("guard", &[&new], true)).unwrap();
        agent.wait_for_log("policy refused", 0);
        let old_after = cat(&old);
        let new_after = cat(&new);
        let run = agent.stop();

        assert!(denied(&before), "{before:?}");
        assert!(
            run.stderr
                .iter()
                .any(|l| l.contains("policy guard keeps running as it was")),
            "{:#?}",
            run.stderr
        );
        assert!(
            denied(&old_after),
            "the previous version stopped enforcing after the refused reload: {old_after:?}"
        );
        assert!(
            readable(&new_after),
            "the refused version's selector acted: {new_after:?}"
        );
        assert_eq!(file_events(&run, &old).len(), 2, "{:#?}", run.events);
        assert!(file_events(&run, &new).is_empty());
        assert!(!run
            .stderr
            .iter()
            .any(|l| l.contains("policy guard reloaded")));
    });
}
