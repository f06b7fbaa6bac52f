//! The file-open deny on each rung of the attach plan's ladder (BPF LSM, fmod_ret on
//! security_file_open, the open system calls' exit tracepoints), on the rung this kernel gives:
//! what `vigil policy explain` says is what the agent attaches and what a denied open does.

use std::{os::unix::process::ExitStatusExt, process::Command};

use serde_json::Value;
use vigil_tests::{
    kernels::{self, FileOpenRung},
    rules_dir, vigil_bin, Agent,
};

/// `vigil policy explain` of the shipped deny policy on this kernel.
fn explain_deny() -> String {
    let out = Command::new(vigil_bin())
        .args(["policy", "explain"])
        .arg(rules_dir().join("deny-credential-reads.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_deny_acts_on_the_rung_explain_names() {
    let rung = kernels::current().file_open_rung();
    let explained = explain_deny();
    let (attach, guarantee) = match rung {
        FileOpenRung::Lsm => (
            "attach:    BPF LSM on file_open",
            "denied before the effect",
        ),
        FileOpenRung::FmodRet => (
            "attach:    fmod_ret on security_file_open",
            "denied before the effect",
        ),
        FileOpenRung::Tracepoints => (
            "attach:    system call tracepoints sys_exit_openat",
            "process killed after the operation, before it returns to userspace",
        ),
    };
    assert!(explained.contains(attach), "{rung:?}:\n{explained}");
    assert!(explained.contains(guarantee), "{rung:?}:\n{explained}");
    if rung == FileOpenRung::FmodRet {
        assert!(
            explained.contains("fallback:  BPF LSM is not available"),
            "{explained}"
        );
    }

    let agent = Agent::start(&[
        "--policy",
        rules_dir()
            .join("deny-credential-reads.yaml")
            .to_str()
            .unwrap(),
    ]);
    let cat = Command::new("/usr/bin/cat")
        .arg("/etc/shadow")
        .output()
        .unwrap();
    let run = agent.stop();
    let how = match rung {
        FileOpenRung::Lsm => "BPF LSM on file_open",
        FileOpenRung::FmodRet => "fentry and fmod_ret on security_file_open",
        FileOpenRung::Tracepoints => "tracepoints sys_exit_openat",
    };
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains(&format!("file-open policies enforced through {how}"))),
        "{:#?}",
        run.stderr
    );
    assert!(
        cat.stdout.is_empty(),
        "{} bytes reached cat",
        cat.stdout.len()
    );
    let denied: Vec<&Value> = run
        .events
        .iter()
        .filter_map(|e| e.get("process_lsm"))
        .filter(|e| e["policy_name"] == "deny-credential-reads")
        .collect();
    assert_eq!(denied.len(), 1, "{denied:#?}");
    match rung {
        FileOpenRung::Lsm | FileOpenRung::FmodRet => {
            // The open failed with EPERM and cat lived to say so.
            assert_eq!(cat.status.code(), Some(1), "{:?}", cat.status);
            assert!(
                String::from_utf8_lossy(&cat.stderr).contains("Operation not permitted"),
                "{}",
                String::from_utf8_lossy(&cat.stderr)
            );
            assert_eq!(denied[0]["outcome"], "denied");
            assert_eq!(denied[0]["action"], "KPROBE_ACTION_OVERRIDE");
        }
        FileOpenRung::Tracepoints => {
            assert_eq!(cat.status.signal(), Some(9), "{:?}", cat.status);
            assert_eq!(denied[0]["outcome"], "killed");
        }
    }
}
