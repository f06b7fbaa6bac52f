//! The agent's start and stop: a policy asked for by name that cannot be enforced stops the
//! start in one line; a refused file of the policy directory is refused alone; the start says
//! what it is doing and how long each step took; a stop leaves no program attached once the
//! kernel has detached them.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use vigil_tests::{require_root, vigil_bin, Agent, TempDir};

const GOOD: &str = "apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: watch-setuid
spec:
  kprobes:
  - call: \"sys_setuid\"
    syscall: true
    args:
    - index: 0
      type: \"int\"
";

/// The same policy with a misspelt field on line 16.
fn typo() -> String {
    GOOD.replace("name: watch-setuid", "name: typo")
        + "    selectors:
    - matchArgs:
      - index: 0
        operator: \"Equal\"
        valuez: [\"0\"]
"
}

fn write(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn agent(args: &[&str]) -> Output {
    Command::new(vigil_bin())
        .args(["agent", vigil_tests::NO_PERSIST])
        .args(args)
        .output()
        .expect("run vigil agent")
}

/// A failed start: a non-zero exit and one line of error (besides the notices of filesystems
/// the first run after boot mounts and the steps done), starting with `prefix`, naming
/// `needle`.
fn assert_stopped_in_one_line_as(out: &Output, prefix: &str, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("vigil: mounted ") && !l.starts_with("vigil: start: "))
        .collect();
    assert!(!out.status.success(), "the agent started: {stderr}");
    assert_eq!(lines.len(), 1, "one line expected: {lines:#?}");
    assert!(lines[0].starts_with(prefix), "{}", lines[0]);
    assert!(lines[0].contains(needle), "{:?} lacks {needle:?}", lines[0]);
}

fn assert_stopped_in_one_line(out: &Output, needle: &str) {
    assert_stopped_in_one_line_as(out, "vigil: error: --policy ", needle);
}

#[test]
fn a_sigma_path_named_on_the_command_line_that_does_not_exist_stops_the_start() {
    require_root();
    let dir = TempDir::new("start-sigma");
    let missing = dir.path().join("no-such-rules");
    let out = agent(&["--sigma-dir", missing.to_str().unwrap()]);
    assert_stopped_in_one_line_as(&out, "vigil: error: Sigma rule path ", "no-such-rules");
}

#[test]
fn a_policy_named_on_the_command_line_that_does_not_exist_stops_the_start() {
    require_root();
    let dir = TempDir::new("start-missing");
    let missing = dir.path().join("typo-in-the-name.yaml");
    let out = agent(&["--policy", missing.to_str().unwrap()]);
    assert_stopped_in_one_line(&out, "typo-in-the-name.yaml");
}

#[test]
fn a_refused_policy_named_on_the_command_line_stops_the_start_at_its_line() {
    require_root();
    let dir = TempDir::new("start-refused");
    let good = write(&dir, "good.yaml", GOOD);
    let typo = write(&dir, "typo.yaml", &typo());
    let out = agent(&[
        "--policy",
        good.to_str().unwrap(),
        "--policy",
        typo.to_str().unwrap(),
    ]);
    assert_stopped_in_one_line(&out, &format!("{}:16:", typo.display()));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("valuez"),
        "the field is not named"
    );
}

#[test]
fn a_refused_file_of_the_policy_directory_is_refused_alone_while_the_others_run() {
    let dir = TempDir::new("start-dir");
    write(&dir, "good.yaml", GOOD);
    write(&dir, "typo.yaml", &typo());
    let agent = Agent::start(&["--policy-dir", dir.path().to_str().unwrap()]);
    let log = agent.log_lines().join("\n");
    assert!(log.contains("policy watch-setuid loaded"), "{log}");
    assert!(
        log.contains("policy refused, the others keep running"),
        "{log}"
    );
    assert!(log.contains("typo.yaml:16:"), "{log}");
    agent.stop();
}

/// The names of the BPF programs loaded in the kernel.
fn loaded_programs() -> Vec<String> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .expect("run bpftool (make deps installs it)");
    assert!(out.status.success(), "bpftool prog show failed");
    let progs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    progs
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_start_says_each_step_with_its_time_and_a_stop_leaves_no_program_behind() {
    let rules = vigil_tests::rules_dir();
    let sigma = Path::new(&rules).join("../sigma");
    let agent = Agent::start(&[
        "--policy-dir",
        rules.to_str().unwrap(),
        "--sigma-dir",
        sigma.to_str().unwrap(),
    ]);
    let log = agent.log_lines();
    for step in [
        "vigil: start: policies read and planned in ",
        "programs verified in parallel (slowest: ",
        "vigil: start: policies enforced in ",
        "processes read from /proc in ",
        "vigil: start: outputs started in ",
        "vigil: start: event store opened in ",
        "vigil: agent ready in ",
    ] {
        assert!(
            log.iter().any(|l| l.contains(step)),
            "no {step:?} line: {log:#?}"
        );
    }
    assert!(
        loaded_programs()
            .iter()
            .any(|p| p.starts_with("vigil_tp_run")),
        "the hook runner is not loaded while the agent runs"
    );
    let run = agent.stop();
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("vigil: stopped in ") && l.contains("detaching in process ")),
        "{:#?}",
        run.stderr
    );
    // stop() waited for the process the kernel objects were handed to; the kernel frees a
    // program whose last reference went (a runner in its emptied array) a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let left = loop {
        let left: Vec<String> = loaded_programs()
            .into_iter()
            .filter(|p| p.starts_with("vigil_"))
            .collect();
        if left.is_empty() || std::time::Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        left.is_empty(),
        "programs left 10 s after the stop: {left:?}"
    );
    assert_eq!(run.stats["hooks_not_run"], 0, "a hook runner went missing");
}
