//! Every command piped into a reader that goes away (`vigil ... | head -1`): the output ends
//! there, quietly. A subcommand finishes its work and exits with the status it would have had,
//! with no panic and nothing about the pipe on stderr; the agent closes its stdout sink and
//! goes on running.
//!
//! Each command runs twice on a real pipe: once read up to its first line and then closed, as
//! `head -1` does, and once with the reader gone before it writes anything, so the closed pipe
//! is met whatever the command's output size. The pipe holds one page, so a command that
//! writes more than that is still writing when the reader goes.

use std::{
    ffi::OsString,
    fs::File,
    io::Read,
    os::fd::FromRawFd,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

mod raw_agent;

use raw_agent::RawAgent;
use vigil_tests::{fixtures, require_root, rules_dir, vigil_bin, Agent, TempDir, NODE};

/// A pipe of one page: (reader, writer).
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors, which the files below then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: F_SETPIPE_SZ on a pipe this function just made.
    unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 4096) };
    // SAFETY: both descriptors are open and owned by nothing else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

/// One line read byte by byte, so nothing past it leaves the pipe.
fn first_line(r: &mut File) -> String {
    let mut line = Vec::new();
    let mut b = [0u8];
    while r.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// How a command ended.
struct Ended {
    status: ExitStatus,
    /// What it wrote on stderr, without the notices of the filesystems it mounted.
    stderr: Vec<String>,
    /// The line read before the reader went (empty when it went first).
    first: String,
}

/// Runs `vigil args` with stdout a pipe whose reader reads the first line and goes
/// (`read_first`), or has gone before the command starts.
fn through_closed_pipe(args: &[OsString], read_first: bool) -> Ended {
    let (mut reader, writer) = pipe();
    if !read_first {
        drop(reader);
        reader = File::open("/dev/null").unwrap();
    }
    // The command is a temporary: its copy of the writer is closed once the child runs.
    let agent = args.first().is_some_and(|a| a == "agent");
    let child = Command::new(vigil_bin())
        .args(args)
        .args(agent.then_some(vigil_tests::NO_PERSIST))
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vigil");
    let first = if read_first {
        first_line(&mut reader)
    } else {
        String::new()
    };
    drop(reader);
    let out = child.wait_with_output().expect("wait for vigil");
    Ended {
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.starts_with("vigil: mounted "))
            .map(str::to_string)
            .collect(),
        first,
    }
}

/// Recorded events for the replaying commands: execs and the file opens of the deny-passwd
/// policy in monitor mode, repeated until their output fills many pages.
fn recorded_events(dir: &Path, policy: &Path) -> PathBuf {
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    for _ in 0..3 {
        let _ = Command::new("cat").arg("/etc/passwd").output();
    }
    let run = agent.stop();
    let lines: String = run.events.iter().map(|e| format!("{e}\n")).collect();
    assert!(
        run.events.iter().any(|e| e.get("process_exec").is_some()),
        "no exec recorded"
    );
    let events = dir.join("events.jsonl");
    std::fs::write(&events, lines.repeat(50)).unwrap();
    events
}

/// A Sigma rule every exec matches, so `sigma test` prints an alert per recorded exec.
fn every_exec_rule(dir: &Path) -> PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("every_exec.yml"),
        "title: Every Exec\nid: every-exec\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  s:\n    Image|startswith: '/'\n  condition: s\nlevel: low\n",
    )
    .unwrap();
    rules
}

#[test]
fn every_subcommand_piped_into_a_closed_reader_ends_quietly_with_its_own_status() {
    require_root();
    let dir = TempDir::new("pipes");
    let policy = dir.path().join("deny-passwd.yaml");
    std::fs::write(&policy, fixtures::deny_passwd("monitor")).unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        fixtures::SETUID_POLICY.replace("\"int\"", "\"integer\""),
    )
    .unwrap();
    let events = recorded_events(dir.path(), &policy);
    let rules = every_exec_rule(dir.path());
    let shipped = rules_dir();
    let s = |x: &str| OsString::from(x);
    let p = |x: &Path| x.as_os_str().to_owned();
    // Enough files for lint to write many pages.
    let many: Vec<OsString> = std::iter::repeat_n(p(&shipped), 20).collect();
    let with_bad = [many.clone(), vec![p(&bad)]].concat();
    let shipped_files = std::fs::read_dir(&shipped)
        .unwrap()
        .filter(|e| {
            let p = e.as_ref().unwrap().path();
            p.extension().is_some_and(|x| x == "yaml" || x == "yml")
        })
        .count();
    let lint_verdict = format!(
        "vigil: error: 1 of {} policy files have problems",
        shipped_files * 20 + 1
    );
    let loaded = format!("vigil: sigma: 1 rules loaded from {}", rules.display());
    // (arguments, exit status, stderr)
    let cases: Vec<(Vec<OsString>, i32, Vec<&str>)> = vec![
        (vec![s("--help")], 0, vec![]),
        (vec![s("--version")], 0, vec![]),
        (vec![s("agent"), s("--help")], 0, vec![]),
        (vec![s("probe")], 0, vec![]),
        (vec![s("probe"), s("--json")], 0, vec![]),
        ([vec![s("policy"), s("lint")], many].concat(), 0, vec![]),
        (
            [vec![s("policy"), s("lint")], with_bad].concat(),
            1,
            vec![lint_verdict.as_str()],
        ),
        (vec![s("policy"), s("explain"), p(&shipped)], 0, vec![]),
        (
            vec![s("policy"), s("explain"), s("--json"), p(&shipped)],
            0,
            vec![],
        ),
        (
            vec![
                s("policy"),
                s("test"),
                p(&policy),
                s("--events"),
                p(&events),
            ],
            0,
            vec![],
        ),
        (
            vec![
                s("policy"),
                s("test"),
                s("--json"),
                p(&policy),
                s("--events"),
                p(&events),
            ],
            0,
            vec![],
        ),
        (
            vec![s("sigma"), s("test"), p(&rules), s("--events"), p(&events)],
            0,
            vec![loaded.as_str()],
        ),
        (
            vec![
                s("sigma"),
                s("test"),
                s("--json"),
                p(&rules),
                s("--events"),
                p(&events),
            ],
            0,
            vec![loaded.as_str()],
        ),
    ];
    for (args, code, stderr) in &cases {
        let shown = args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        for read_first in [true, false] {
            let ended = through_closed_pipe(args, read_first);
            assert_eq!(
                ended.status.code(),
                Some(*code),
                "vigil {shown} (first line read: {read_first}): {:#?}",
                ended.stderr
            );
            assert_eq!(
                ended.stderr, *stderr,
                "vigil {shown} (first line read: {read_first})"
            );
            assert!(
                !read_first || !ended.first.is_empty(),
                "vigil {shown} wrote nothing"
            );
        }
    }
}

/// The agent's stdout is a sink: a reader that goes closes it, and the agent goes on (its
/// enforcement with it) until it is told to stop, then stops cleanly.
#[test]
fn the_agent_piped_into_a_reader_that_goes_keeps_running() {
    let dir = TempDir::new("agent-pipe");
    let (mut reader, writer) = pipe();
    let mut agent = RawAgent::start(
        &["agent", "--node-name", NODE],
        Stdio::from(writer),
        dir.path(),
    );
    let _ = Command::new("true").status();
    let first = first_line(&mut reader);
    assert!(first.starts_with('{'), "{first}");
    drop(reader);
    // Events keep coming; the first write after the reader went closes the sink.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !agent.log().contains("no longer written") {
        assert!(Instant::now() < deadline, "the stdout sink never closed");
        let _ = Command::new("true").status();
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        agent.is_running(),
        "the agent stopped when its reader went:\n{}",
        agent.log()
    );
    let (status, log) = agent.stop();
    assert!(status.success(), "{status}:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    let stats: serde_json::Value = serde_json::from_str(
        log.lines()
            .find_map(|l| l.strip_prefix("vigil: stats "))
            .unwrap_or_else(|| panic!("no stats line:\n{log}")),
    )
    .unwrap();
    assert!(
        stats["exporters"]["stdout"]["dropped"].as_u64() > Some(0),
        "{stats}"
    );
}
