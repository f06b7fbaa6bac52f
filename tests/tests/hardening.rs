//! What a local user tries first against the agent, on the host kernel: a cgroup named to crash
//! it, a spool left torn by a crash, symbolic links planted where root writes, a reader that
//! closes the agent's stdout, and policy files built to exhaust its memory. Each scenario runs
//! the real agent and asserts that it stays up and keeps enforcing, or refuses with a message
//! that names the path.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{fs::PermissionsExt, process::ExitStatusExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use vigil_exporters::record::Record;
use vigil_tests::{
    kernels::{self, Hook},
    require_root, rules_dir, vigil_bin, Agent, TempDir,
};

/// The cgroup directory the agent tracks for processes of this test (cgroup v1's memory
/// hierarchy where the host mounts it, else the unified one), as (mount point, path in it).
fn tracked_cgroup() -> (PathBuf, String) {
    let own = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    for line in own.lines() {
        let mut f = line.splitn(3, ':');
        let (id, ctrls, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        if id != "0" && ctrls.split(',').any(|c| c == "memory") {
            return (PathBuf::from("/sys/fs/cgroup/memory"), path.to_string());
        }
    }
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line");
    let root = if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        "/sys/fs/cgroup/unified"
    } else {
        "/sys/fs/cgroup"
    };
    (PathBuf::from(root), path.to_string())
}

/// A child cgroup of ours, removed (after its processes) on drop.
struct Cgroup(PathBuf);

impl Cgroup {
    fn create(name: &str) -> (Cgroup, String) {
        let (mount, path) = tracked_cgroup();
        let dir = mount.join(path.trim_start_matches('/')).join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let in_hierarchy = format!("{}/{name}", path.trim_end_matches('/'));
        (Cgroup(dir), in_hierarchy)
    }

    /// `sh -c 'echo $$ > cgroup.procs; exec <cmd>'`: the command runs inside from its exec.
    fn spawn(&self, cmd: &str) -> Child {
        Command::new("sh")
            .arg("-c")
            .arg(format!("echo $$ > \"$0/cgroup.procs\" && exec {cmd}"))
            .arg(&self.0)
            .stdout(Stdio::null())
            .spawn()
            .expect("sh")
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_cgroup_named_in_non_ascii_text_neither_crashes_the_agent_nor_stops_its_restart() {
    require_root();
    // 80 bytes of two-byte characters: every 64-byte window of the name that starts inside a
    // character is not a string boundary.
    let name = format!("{}-{}", "ä".repeat(40), std::process::id());
    let (cgroup, path) = Cgroup::create(&name);
    // Older than the agent: found by the /proc scan at start-up.
    let mut before = cgroup.spawn("sleep 30");
    std::thread::sleep(Duration::from_millis(200));
    let agent = Agent::start(&[]);
    let after = cgroup
        .spawn("/bin/echo non-ascii-cgroup")
        .wait()
        .expect("echo");
    assert!(after.success());
    let _ = before.kill();
    let _ = before.wait();
    let run = agent.stop();

    let echo =
        &run.exec_with(&vigil_tests::resolved("/bin/echo"), "non-ascii-cgroup")["process_exec"];
    assert_eq!(echo["process"]["cgroup"]["path"], path.as_str(), "{echo:#}");
    // The process older than the agent exits after it started: its exit names the cgroup too.
    let exits = run.of_pid("process_exit", before.id());
    assert_eq!(exits.len(), 1, "{exits:#?}");
    let p = &exits[0]["process_exit"]["process"];
    assert_eq!(p["cgroup"]["path"], path.as_str(), "{p:#}");
    assert!(p["flags"].as_str().unwrap().contains("procFS"), "{p:#}");
    drop(cgroup);
}

/// Writes a configuration file (root's, 0600) in `dir` with one file sink, `archive`, writing
/// `out` and spooling under `spool`, and returns its path.
fn config(dir: &Path, spool: &Path, out: &Path) -> PathBuf {
    let path = dir.join("vigil.yaml");
    let yaml = format!(
        "exporters:\n  spool_dir: {}\n  sinks:\n    - name: archive\n      type: file\n      path: {}\n      max_size_mb: 1\n",
        spool.display(),
        out.display()
    );
    std::fs::write(&path, yaml).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn record_line(n: u32) -> Vec<u8> {
    Record {
        time_ns: 1_764_000_000_000_000_000 + n as u64,
        kind: "process_exec",
        exec_id: format!("spooled-{n}").into(),
        json: format!("{{\"process_exec\":{{\"process\":{{\"exec_id\":\"spooled-{n}\"}}}},\"time\":\"2026-11-24T16:00:00Z\"}}")
            .into_bytes()
            .into(),
    }
    .to_line()
}

#[test]
fn a_torn_spool_line_is_dead_lettered_and_the_agent_still_delivers_and_stops() {
    let tmp = TempDir::new("torn");
    let spool = tmp.path().join("spool");
    let segments = spool.join("archive/spool");
    std::fs::create_dir_all(&segments).unwrap();
    for d in [&spool, &spool.join("archive"), &segments] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let mut seg = Vec::new();
    for n in 0..3 {
        seg.extend(record_line(n));
    }
    // A crash in the middle of an append: half a line, no newline.
    let torn = record_line(3);
    seg.extend_from_slice(&torn[..torn.len() / 2]);
    let seg_path = segments.join("seg-0000000000000000.jsonl");
    std::fs::write(&seg_path, &seg).unwrap();
    std::fs::set_permissions(&seg_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = tmp.path().join("out/events.jsonl");
    let cfg = config(tmp.path(), &spool, &out);
    let agent = Agent::start(&["--config", cfg.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let delivered = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if (0..3).all(|n| text.contains(&format!("spooled-{n}"))) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stopping = Instant::now();
    let run = agent.stop();
    let took = stopping.elapsed();
    for n in 0..3 {
        assert!(
            delivered.contains(&format!("\"exec_id\":\"spooled-{n}\"")),
            "record {n} delivered:\n{delivered}"
        );
    }
    assert!(
        !delivered.contains("spooled-3"),
        "the torn record is not delivered"
    );
    let dead = std::fs::read_to_string(spool.join("archive/dead-letter.jsonl"))
        .expect("a dead-letter file");
    let lines: Vec<Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).expect("dead letters are JSON lines"))
        .collect();
    assert_eq!(lines.len(), 1, "{dead}");
    assert!(
        lines[0]["reason"].as_str().unwrap_or("").contains("torn")
            || lines[0]["reason"]
                .as_str()
                .unwrap_or("")
                .contains("incomplete"),
        "the reason says the line was cut: {dead}"
    );
    assert!(
        dead.contains("spooled-3"),
        "the torn bytes are kept: {dead}"
    );
    // SIGTERM is honoured within the exporters' grace (5 s) and the agent's own drain.
    assert!(took < Duration::from_secs(15), "stopping took {took:?}");
    assert_eq!(
        run.stats["exporters"]["archive"]["dead_lettered"], 1,
        "{}",
        run.stats
    );
}

/// Runs an agent that must refuse to start; returns what it said.
fn refused(args: &[&str]) -> String {
    require_root();
    let mut child = Command::new(vigil_bin())
        .arg("agent")
        .args(["--node-name", vigil_tests::NODE, vigil_tests::NO_PERSIST])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vigil agent");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the agent did not refuse within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "the agent started:\n{err}");
    err
}

/// A file whose content a planted link must not change.
fn precious(dir: &Path) -> PathBuf {
    let p = dir.join("precious");
    std::fs::write(&p, "root's data\n").unwrap();
    p
}

fn assert_untouched(p: &Path) {
    assert_eq!(
        std::fs::read_to_string(p).unwrap(),
        "root's data\n",
        "{} changed",
        p.display()
    );
}

#[test]
fn a_symlink_planted_at_the_export_file_is_refused_by_name() {
    let tmp = TempDir::new("link-export");
    let target = precious(tmp.path());
    let export = tmp.path().join("events.jsonl");
    std::os::unix::fs::symlink(&target, &export).unwrap();
    let err = refused(&["--export-file", export.to_str().unwrap()]);
    assert!(
        err.contains(export.to_str().unwrap()),
        "names the path:\n{err}"
    );
    assert!(err.contains("symbolic link"), "says why:\n{err}");
    assert_untouched(&target);
}

#[test]
fn a_symlink_planted_at_a_rotation_backup_name_is_refused_by_name() {
    let tmp = TempDir::new("link-backup");
    let target = precious(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let backup = out.join("events.jsonl.1.gz");
    std::os::unix::fs::symlink(&target, &backup).unwrap();
    let cfg = config(
        tmp.path(),
        &tmp.path().join("spool"),
        &out.join("events.jsonl"),
    );
    let err = refused(&["--config", cfg.to_str().unwrap()]);
    assert!(
        err.contains(backup.to_str().unwrap()),
        "names the path:\n{err}"
    );
    assert_untouched(&target);
    // The export file's own backups are checked the same way.
    let export = tmp.path().join("events.jsonl");
    let backup = tmp.path().join("events.jsonl.1.gz");
    std::os::unix::fs::symlink(&target, &backup).unwrap();
    let err = refused(&["--export-file", export.to_str().unwrap()]);
    assert!(
        err.contains(backup.to_str().unwrap()),
        "names the path:\n{err}"
    );
    assert_untouched(&target);
}

#[test]
fn a_symlink_planted_in_the_spool_directory_is_refused_by_name() {
    let tmp = TempDir::new("link-spool");
    let target = precious(tmp.path());
    let spool = tmp.path().join("spool");
    let segments = spool.join("archive/spool");
    std::fs::create_dir_all(&segments).unwrap();
    for (planted, name) in [
        (segments.join("seg-0000000000000000.jsonl"), "segment"),
        (spool.join("archive/dead-letter.jsonl"), "dead-letter file"),
    ] {
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        let cfg = config(tmp.path(), &spool, &tmp.path().join("out/events.jsonl"));
        let err = refused(&["--config", cfg.to_str().unwrap()]);
        assert!(
            err.contains(planted.to_str().unwrap()),
            "{name}: names the path:\n{err}"
        );
        assert_untouched(&target);
        std::fs::remove_file(&planted).unwrap();
    }
}

#[test]
fn when_the_reader_of_stdout_goes_away_the_agent_says_so_and_keeps_enforcing() {
    require_root();
    // `vigil agent --policy-dir rules/policies | head -1`
    let mut agent = Command::new(vigil_bin())
        .args([
            "agent",
            "--node-name",
            vigil_tests::NODE,
            vigil_tests::NO_PERSIST,
            "--policy-dir",
        ])
        .arg(rules_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vigil agent");
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let lines = log.clone();
    let stderr = agent.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(l);
        }
    });
    let wait_log = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !log.lock().unwrap().iter().any(|l| l.contains(needle)) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in:\n{}",
                log.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_log("agent ready");
    {
        let mut out = BufReader::new(agent.stdout.take().unwrap());
        let mut first = String::new();
        // Something to print: an exec after the agent is ready.
        Command::new("true").status().unwrap();
        out.read_line(&mut first).unwrap();
        assert!(first.starts_with('{'), "a JSON event line: {first}");
    } // head -1 exits: the read end closes.
      // Keep it busy so that it writes to the closed pipe.
    for _ in 0..20 {
        Command::new("true").status().unwrap();
    }
    wait_log("stdout");
    let said = log.lock().unwrap().join("\n");
    assert!(
        said.contains("closed") || said.contains("broken pipe"),
        "the agent says stdout closed:\n{said}"
    );
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent is still running:\n{said}"
    );

    let cat = Command::new("/usr/bin/cat")
        .arg("/etc/shadow")
        .output()
        .unwrap();
    assert!(
        cat.stdout.is_empty(),
        "{} bytes of /etc/shadow reached cat",
        cat.stdout.len()
    );
    if kernels::current().hooks.contains(&Hook::Lsm) {
        assert_eq!(cat.status.code(), Some(1), "{:?}", cat.status);
    } else {
        assert_eq!(cat.status.signal(), Some(9), "{:?}", cat.status);
    }
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent is still running"
    );
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = agent.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no stop within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        status.success(),
        "{status}:\n{}",
        log.lock().unwrap().join("\n")
    );
}

/// Runs `vigil policy lint FILE` and returns what it printed (stdout and stderr), its wall time
/// and its peak RSS in KiB.
#[allow(clippy::zombie_processes)] // reaped by wait4, which also gives its peak RSS
fn lint_measured(file: &Path) -> (String, Duration, i64) {
    let out = file.with_extension("lint-output");
    let start = Instant::now();
    let child = Command::new(vigil_bin())
        .args(["policy", "lint"])
        .arg(file)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::options().append(true).open(&out).unwrap())
        .spawn()
        .expect("vigil policy lint");
    let mut status = 0;
    // SAFETY: wait4 on our own child, with a zeroed rusage it fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let took = start.elapsed();
    assert_eq!(pid, child.id() as i32);
    let said = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) != 0,
        "lint accepted {} (status {status:#x}):\n{said}",
        file.display()
    );
    (said, took, usage.ru_maxrss)
}

/// Policy files built to exhaust memory, each refused with a message, in little memory.
fn hostile_policies(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let big = dir.join("huge.yaml");
    let mut f = std::fs::File::create(&big).unwrap();
    f.write_all(
        b"apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: huge\n# ",
    )
    .unwrap();
    let pad = vec![b'x'; 1 << 20];
    for _ in 0..100 {
        f.write_all(&pad).unwrap();
    }
    drop(f);
    let deep = dir.join("deep.yaml");
    let mut text = String::from(
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: deep\nspec: ",
    );
    text.push_str(&"[".repeat(100_000));
    text.push_str(&"]".repeat(100_000));
    std::fs::write(&deep, text).unwrap();
    let laughs = dir.join("laughs.yaml");
    let mut text = String::from("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: laughs\nx0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for i in 1..10 {
        let p = i - 1;
        text.push_str(&format!(
            "x{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
        ));
    }
    text.push_str("spec: *a9\n");
    std::fs::write(&laughs, text).unwrap();
    vec![
        (big, "100 MiB"),
        (deep, "nested 100,000 deep"),
        (laughs, "aliases"),
    ]
}

#[test]
fn policy_files_built_to_exhaust_memory_are_refused_in_little_memory() {
    let tmp = TempDir::new("hostile");
    for (file, what) in hostile_policies(tmp.path()) {
        let (err, took, rss_kib) = lint_measured(&file);
        eprintln!("{what}: refused in {took:?}, peak RSS {} KiB", rss_kib);
        assert!(
            err.contains(file.to_str().unwrap()),
            "{what}: names the file:\n{err}"
        );
        assert!(rss_kib < 64 * 1024, "{what}: peak RSS {rss_kib} KiB");
    }
}

/// The agent's peak resident memory in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// Starts an agent on `dir` and returns its peak RSS once every file in `wait_for` was logged.
fn agent_peak_with(dir: &Path, wait_for: &[&str]) -> (u64, vigil_tests::AgentRun) {
    // A 1 MiB ring buffer: its pages are mapped twice and would otherwise dominate the figure.
    let agent = Agent::start(&["--policy-dir", dir.to_str().unwrap(), "--ringbuf-size", "1"]);
    agent.wait_for_log("policy deny-credential-reads loaded", 0);
    for name in wait_for {
        agent.wait_for_log(name, 0);
    }
    let cat = Command::new("/usr/bin/cat")
        .arg("/etc/shadow")
        .output()
        .unwrap();
    assert!(
        cat.stdout.is_empty(),
        "{} bytes of /etc/shadow reached cat",
        cat.stdout.len()
    );
    let peak = peak_rss_kib(agent.pid());
    (peak, agent.stop())
}

#[test]
fn the_agent_refuses_hostile_policy_files_in_little_memory_and_keeps_enforcing_the_others() {
    let tmp = TempDir::new("hostile-dir");
    let dir = tmp.path().join("policies");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(
        rules_dir().join("deny-credential-reads.yaml"),
        dir.join("deny-credential-reads.yaml"),
    )
    .unwrap();
    let (baseline, _) = agent_peak_with(&dir, &[]);
    hostile_policies(&dir);
    let (peak, run) = agent_peak_with(&dir, &["huge.yaml", "deep.yaml", "laughs.yaml"]);
    eprintln!("agent peak RSS: {baseline} KiB with the deny policy, {peak} KiB with the hostile files beside it");
    assert!(
        run.stderr
            .iter()
            .filter(|l| l.contains("policy refused"))
            .count()
            >= 3,
        "{:#?}",
        run.stderr
    );
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
    assert!(
        peak < baseline + 8 * 1024,
        "the hostile files cost {} KiB",
        peak.saturating_sub(baseline)
    );
}

#[test]
fn an_export_file_in_a_directory_every_user_may_write_is_refused_before_anyone_plants_it() {
    let tmp = TempDir::new("sticky-export");
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let export = shared.join("events.jsonl");
    let err = refused(&["--export-file", export.to_str().unwrap()]);
    assert!(
        err.contains(shared.to_str().unwrap()),
        "names the directory:\n{err}"
    );
    assert!(err.contains("only root can write"), "says the fix:\n{err}");
    assert!(!export.exists(), "nothing was created there");
}
