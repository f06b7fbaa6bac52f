//! Override on generic hooks, with Tetragon's own example policies: the call fails with the
//! policy's errno before it has any effect, through an fmod_ret program on the LSM check (the
//! hooked `security_*` function, or the one a system call passes through). The hooks are
//! kprobes and the programs need trampolines, so the scenarios run where both exist (the VM
//! matrix) and are recorded as skipped elsewhere.

use std::{ffi::CString, path::Path};

use serde_json::Value;
use vigil_tests::{
    kernels::{scenario_needs, Hook},
    require_root, tetragon_policies_dir, Agent,
};

fn c(path: &Path) -> CString {
    CString::new(path.as_os_str().as_encoded_bytes()).unwrap()
}

/// linkat(2) or symlinkat(2) from the test process: Ok, or the errno.
fn link(old: &Path, new: &Path, symbolic: bool) -> Result<(), i32> {
    let (o, n) = (c(old), c(new));
    // SAFETY: two NUL-terminated paths that outlive the call.
    let rc = unsafe {
        if symbolic {
            libc::symlinkat(o.as_ptr(), libc::AT_FDCWD, n.as_ptr())
        } else {
            libc::linkat(libc::AT_FDCWD, o.as_ptr(), libc::AT_FDCWD, n.as_ptr(), 0)
        }
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

/// A directory for the test's links, on /etc's filesystem: a hard link across filesystems
/// fails (EXDEV) before any LSM check.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = Path::new("/etc").join(format!(".vigil-override-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// tracingpolicy_hardlink-override.yaml: a hard link to /etc/passwd fails with EPERM and is
/// never made; other links are made, also right after a refused call that failed before its
/// LSM check (its verdict must not deny the next call).
#[test]
fn a_hard_link_to_passwd_is_never_made() {
    if !scenario_needs(
        "a_hard_link_to_passwd_is_never_made",
        &[Hook::Kprobe, Hook::FmodRet],
    ) {
        return;
    }
    require_root();
    let dir = scratch("link");
    let own = dir.join("own");
    std::fs::write(&own, "mine").unwrap();
    let policy = tetragon_policies_dir().join("tracingpolicy_hardlink-override.yaml");
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let denied = link(Path::new("/etc/passwd"), &dir.join("passwd"), false);
    // Judged at the entry, failing before security_path_link (no such directory).
    let early = link(Path::new("/etc/passwd"), &dir.join("none/passwd"), false);
    let allowed = link(&own, &dir.join("own2"), false);
    let run = agent.stop();
    assert_eq!(
        denied,
        Err(libc::EPERM),
        "the link to /etc/passwd is refused"
    );
    assert!(!dir.join("passwd").exists(), "and never made");
    assert_eq!(early, Err(libc::ENOENT), "the lookup fails first");
    assert_eq!(
        allowed,
        Ok(()),
        "a stale verdict must not refuse the next link"
    );
    let ours: Vec<&Value> = run
        .kprobes("__x64_sys_linkat")
        .into_iter()
        .filter(|e| e["process"]["pid"] == std::process::id())
        .collect();
    assert_eq!(
        ours.len(),
        2,
        "both links to /etc/passwd reported: {ours:#?}"
    );
    for e in &ours {
        assert_eq!(e["action"], "KPROBE_ACTION_OVERRIDE", "{e:#}");
        assert_eq!(e["args"][1]["string_arg"], "/etc/passwd", "{e:#}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// tracingpolicy_symlink-override.yaml: a symbolic link pointing at /etc/passwd fails.
#[test]
fn a_symbolic_link_to_passwd_is_never_made() {
    if !scenario_needs(
        "a_symbolic_link_to_passwd_is_never_made",
        &[Hook::Kprobe, Hook::FmodRet],
    ) {
        return;
    }
    require_root();
    let dir = scratch("symlink");
    let policy = tetragon_policies_dir().join("tracingpolicy_symlink-override.yaml");
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let denied = link(Path::new("/etc/passwd"), &dir.join("passwd"), true);
    let allowed = link(Path::new("/etc/hostname"), &dir.join("hostname"), true);
    let run = agent.stop();
    assert_eq!(denied, Err(libc::EPERM));
    assert!(std::fs::symlink_metadata(dir.join("passwd")).is_err());
    assert_eq!(allowed, Ok(()));
    let ours = run.kprobes("__x64_sys_symlinkat");
    assert!(
        ours.iter().any(|e| e["action"] == "KPROBE_ACTION_OVERRIDE"
            && e["args"][0]["string_arg"] == "/etc/passwd"),
        "{ours:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// tracingpolicy_override-security.yaml: its first selector reports bash's mkdir, its second
/// overrides every other: security_inode_mkdir returns -1 (EPERM) for the test process, and
/// the directory is not made.
#[test]
fn an_lsm_check_returns_the_policy_errno() {
    if !scenario_needs(
        "an_lsm_check_returns_the_policy_errno",
        &[Hook::Kprobe, Hook::FmodRet],
    ) {
        return;
    }
    require_root();
    let dir = scratch("mkdir");
    let policy = tetragon_policies_dir().join("tracingpolicy_override-security.yaml");
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let made = std::fs::create_dir(dir.join("new"));
    let run = agent.stop();
    assert_eq!(
        made.as_ref().map_err(|e| e.raw_os_error()),
        Err(Some(libc::EPERM)),
        "mkdir refused"
    );
    assert!(!dir.join("new").exists());
    // Once the agent is gone, mkdir works again.
    std::fs::create_dir(dir.join("after")).expect("mkdir after the agent stopped");
    let ours: Vec<&Value> = run
        .kprobes("security_inode_mkdir")
        .into_iter()
        .filter(|e| e["process"]["pid"] == std::process::id())
        .collect();
    assert!(
        ours.iter().any(|e| e["action"] == "KPROBE_ACTION_OVERRIDE"),
        "{ours:#?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
