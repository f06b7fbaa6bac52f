//! The example commands of README.md and rules/README.md run as written: every line of their
//! fenced `sh` blocks, in a directory that holds what the examples name (`rules/policies`,
//! `rules/sigma`, `policy.yaml`, `recorded.jsonl`, `vigil.yaml`), must exit 0. A `vigil agent`
//! example runs until it is ready and is then stopped, which must end it cleanly (`--cleanup`
//! exits by itself, and runs on a pin directory of the test's own); the examples
//! that replay recorded events get events an agent recorded first.
//!
//! `make run` and `make test` are not run: `make run` starts `vigil agent -o compact
//! --policy-dir rules/policies --sigma-dir rules/sigma`, which rules/README.md shows and this
//! test runs, and `make test` runs this very test.

mod raw_agent;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use raw_agent::RawAgent;
use vigil_tests::{require_root, vigil_bin, Agent, TempDir};

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every line of the fenced `sh` blocks of `markdown`: (line number, command).
fn examples(markdown: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(markdown).unwrap();
    let mut inside = false;
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        match line.trim() {
            "```sh" => inside = true,
            "```" => inside = false,
            l if inside && !l.is_empty() => found.push((n + 1, l.to_string())),
            _ => {}
        }
    }
    found
}

/// A command's words, without its comment (the examples quote nothing).
fn words(command: &str) -> Vec<&str> {
    let code = match command.find(" #") {
        Some(i) => &command[..i],
        None => command,
    };
    code.split_whitespace().collect()
}

/// Copies the files of the repository's directory `from` into `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// Fills `dir` with what the examples name.
fn workspace(dir: &Path) {
    copy_dir(&repo().join("rules/policies"), &dir.join("rules/policies"));
    copy_dir(&repo().join("rules/sigma"), &dir.join("rules/sigma"));
    std::fs::copy(
        repo().join("rules/policies/deny-credential-reads.yaml"),
        dir.join("policy.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.join("vigil.yaml"),
        format!(
            "exporters:\n  spool_dir: {}\n  sinks:\n  - name: local\n    type: file\n    path: {}\n",
            dir.join("spool").display(),
            dir.join("sink.jsonl").display()
        ),
    )
    .unwrap();
    let recorder = Agent::start(&[]);
    let _ = Command::new("cat").arg("/etc/hostname").output();
    let run = recorder.stop();
    let lines: String = run.events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(dir.join("recorded.jsonl"), lines).unwrap();
}

#[test]
fn every_example_command_of_the_readmes_runs_as_written() {
    require_root();
    let dir = TempDir::new("readme");
    workspace(dir.path());
    let mut ran = 0;
    for markdown in ["README.md", "rules/README.md"] {
        for (line, command) in examples(&repo().join(markdown)) {
            let at = format!("{markdown}:{line}: {command}");
            let w = words(&command);
            match w.as_slice() {
                // See the module's comment.
                ["make", "run" | "test"] => continue,
                // Removes what is pinned, then exits: in a pin directory of the test's own,
                // so that the machine's own agent keeps its enforcement.
                ["vigil", "agent", "--cleanup"] => {
                    let pins = format!("/sys/fs/bpf/vigil-readme-{}", std::process::id());
                    let out = Command::new(vigil_bin())
                        .args(["agent", "--cleanup", "--bpf-dir", &pins])
                        .output()
                        .unwrap();
                    let log = String::from_utf8_lossy(&out.stderr);
                    assert!(out.status.success(), "{at}: {}\n{log}", out.status);
                    assert!(log.contains("nothing pinned"), "{at}: {log}");
                }
                ["vigil", "agent", ..] => {
                    let agent = RawAgent::start(&w[1..], Stdio::null(), dir.path());
                    let (status, log) = agent.stop();
                    assert!(status.success(), "{at}: {status}\n{log}");
                }
                ["vigil", args @ ..] => {
                    let out = Command::new(vigil_bin())
                        .args(args)
                        .current_dir(dir.path())
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{at}: {}\n{}{}",
                        out.status,
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                _ => panic!("{at}: not a command this test knows how to run"),
            }
            ran += 1;
        }
    }
    assert!(ran >= 18, "only {ran} example commands found");
}
