//! Where the agent's events go: stdout carries them when nothing else takes them, or when `-o`
//! asks for them beside an export file or the configuration's sinks; otherwise stdout is left
//! to the agent's log lines' neighbours (a terminal, a journal) and carries no event.

mod raw_agent;

use std::{
    fs::File,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use raw_agent::RawAgent;
use vigil_tests::{TempDir, NODE};

/// What one agent run wrote: its stdout, and the file its other output (`--export-file` or the
/// configured file sink) wrote.
struct Written {
    stdout: String,
    file: String,
}

/// Runs `vigil agent --node-name test-node <args>` until the file `sink` holds the exec of a
/// marked command, then stops it; `dir` holds what the run writes.
fn run(dir: &Path, args: &[&str], sink: &Path, mark: &str) -> Written {
    let out = dir.join(format!("{mark}.stdout"));
    let mut argv = vec!["agent", "--node-name", NODE];
    argv.extend(args);
    let agent = RawAgent::start(&argv, Stdio::from(File::create(&out).unwrap()), dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        Command::new("/bin/echo").arg(mark).output().unwrap();
        let file = std::fs::read_to_string(sink).unwrap_or_default();
        if file.contains(mark) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} never got the exec of {mark}:\n{}",
            sink.display(),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, log) = agent.stop();
    assert!(status.success(), "{status}:\n{log}");
    let written = Written {
        stdout: std::fs::read_to_string(&out).unwrap(),
        file: std::fs::read_to_string(sink).unwrap(),
    };
    // Its JSON lines join the run's archive for the Tetragon schema check.
    vigil_tests::archive_events(&written.stdout);
    vigil_tests::archive_events(&written.file);
    written
}

/// The exec of `mark` as a JSON line and as a compact line.
fn exec_lines<'a>(text: &'a str, mark: &str) -> (Vec<&'a str>, Vec<&'a str>) {
    let lines = text.lines().filter(|l| l.contains(mark));
    let json = lines
        .clone()
        .filter(|l| l.starts_with("{\"process_exec\""))
        .collect();
    let compact = lines.filter(|l| l.starts_with("🚀 process")).collect();
    (json, compact)
}

#[test]
fn with_an_export_file_stdout_carries_no_events_unless_o_asks_for_them() {
    vigil_tests::require_root();
    let dir = TempDir::new("outputs-export");
    let export = dir.path().join("events.jsonl");
    let e = export.to_str().unwrap();

    let quiet = run(
        dir.path(),
        &["--export-file", e],
        &export,
        "vigil-mark-export",
    );
    assert_eq!(quiet.stdout, "", "no events on stdout");
    let (json, _) = exec_lines(&quiet.file, "vigil-mark-export");
    assert!(!json.is_empty(), "the export file has the JSON line");

    let _ = std::fs::remove_file(&export);
    let asked = run(
        dir.path(),
        &["--export-file", e, "-o", "compact"],
        &export,
        "vigil-mark-export-o",
    );
    let (json, compact) = exec_lines(&asked.stdout, "vigil-mark-export-o");
    assert!(json.is_empty() && !compact.is_empty(), "{}", asked.stdout);
    // The export file writes -o's format too.
    let (_, compact) = exec_lines(&asked.file, "vigil-mark-export-o");
    assert!(!compact.is_empty(), "{}", asked.file);
}

#[test]
fn with_a_configured_sink_stdout_carries_no_events_unless_o_asks_for_them() {
    vigil_tests::require_root();
    let dir = TempDir::new("outputs-config");
    let sink = dir.path().join("sink.jsonl");
    let config = dir.path().join("vigil.yaml");
    std::fs::write(
        &config,
        format!(
            "exporters:\n  spool_dir: {}\n  sinks:\n  - name: local\n    type: file\n    path: {}\n",
            dir.path().join("spool").display(),
            sink.display()
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();

    let quiet = run(dir.path(), &["--config", c], &sink, "vigil-mark-config");
    assert_eq!(quiet.stdout, "", "no events on stdout");
    let (json, _) = exec_lines(&quiet.file, "vigil-mark-config");
    assert!(!json.is_empty(), "the sink has the JSON line");

    let asked = run(
        dir.path(),
        &["--config", c, "-o", "compact"],
        &sink,
        "vigil-mark-config-o",
    );
    let (json, compact) = exec_lines(&asked.stdout, "vigil-mark-config-o");
    assert!(json.is_empty() && !compact.is_empty(), "{}", asked.stdout);
    // The configured sink keeps its own format.
    let (json, _) = exec_lines(&asked.file, "vigil-mark-config-o");
    assert!(!json.is_empty(), "{}", asked.file);
}
