//! `vigil agent` started as a user starts it, for the scenarios that look at what the harness's
//! [`vigil_tests::Agent`] hides: its stdout (the harness sends it to /dev/null and adds an
//! export file) and its exact command line (the README's examples).
//!
//! The agent runs in a process group of its own: at its stop it hands its kernel objects to a
//! child, which holds its programs attached until it exits, so a stop waits for the whole group
//! and no policy of one scenario acts in the next.

// Each scenario file includes this module and uses part of it.
#![allow(dead_code)]

use std::{
    ffi::OsStr,
    fs::File,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use vigil_tests::{require_root, vigil_bin, TempDir};

/// A running agent and the file its stderr goes to.
pub struct RawAgent {
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

impl RawAgent {
    /// Starts `vigil args` (`agent` and its options) with stdout to `stdout`, in `cwd`, and
    /// waits until it says it is ready.
    pub fn start<S: AsRef<OsStr>>(args: &[S], stdout: Stdio, cwd: &std::path::Path) -> RawAgent {
        require_root();
        let dir = TempDir::new("raw-agent");
        let log = dir.path().join("stderr");
        // An agent started here is a test's, even when its command line is the README's.
        let agent = args.first().is_some_and(|a| a.as_ref() == "agent")
            && !args.iter().any(|a| a.as_ref() == vigil_tests::NO_PERSIST);
        let child = Command::new(vigil_bin())
            .args(args)
            .args(agent.then_some(vigil_tests::NO_PERSIST))
            .args(if agent {
                let given: Vec<&str> = args.iter().filter_map(|a| a.as_ref().to_str()).collect();
                vigil_tests::private_state(dir.path(), &given)
            } else {
                Vec::new()
            })
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(File::create(&log).unwrap())
            .process_group(0)
            .spawn()
            .expect("spawn vigil agent");
        let mut agent = RawAgent {
            child,
            log,
            _dir: dir,
        };
        agent.wait_for_log("agent ready");
        agent
    }

    /// Everything it has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until it has logged `needle`; panics with its log after 60 s or when it exits.
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = self.log();
            if text.contains(needle) {
                return text;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the agent exited ({status}) before it said {needle:?}:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "the agent never said {needle:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Stops it with SIGTERM, waits for it and every process of its group, and returns how it
    /// exited and its log.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "the agent did not stop in 60 s");
            std::thread::sleep(Duration::from_millis(20));
        };
        while group_runs(pid) {
            assert!(
                Instant::now() < deadline,
                "the agent's process group still runs 60 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (status, self.log())
    }
}

/// Whether a process of group `pgid` runs (a zombie has closed its descriptors already).
fn group_runs(pgid: i32) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.filter_map(Result::ok).any(|p| {
        let Ok(stat) = std::fs::read_to_string(p.path().join("stat")) else {
            return false;
        };
        // After the command's name: state, ppid, pgrp.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            return false;
        };
        let fields: Vec<&str> = rest.split(' ').collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

impl Drop for RawAgent {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's process group.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}
