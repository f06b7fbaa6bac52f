//! Process lifecycle on the host kernel: exec, exit codes, signals, processes older than the
//! agent, an exec storm and argument truncation, each asserted from the real agent's events.

use std::{
    io::Write,
    os::unix::process::CommandExt,
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use vigil_tests::{procfs_exec_id, resolved, Agent, TempDir, NODE};

fn arguments(v: &Value) -> &str {
    v["process"]["arguments"].as_str().unwrap_or("")
}

#[test]
fn exec_reports_binary_arguments_cwd_uid_parent_and_exit() {
    let cwd = TempDir::new("cwd");
    let agent = Agent::start(&["--enable-process-cred", "--enable-process-ns"]);
    // The outer shell runs the command as a user would type it; its child shell execs echo in
    // place, so echo's parent is the outer shell. Running as nobody makes the uid worth checking.
    let status = Command::new("sh")
        .arg("-c")
        .arg("sh -c 'exec /bin/echo hello-vigil'; exit $?")
        .uid(65534)
        .gid(65534)
        .current_dir(cwd.path())
        .stdout(Stdio::null())
        .status()
        .expect("run sh as nobody");
    assert!(status.success());
    let run = agent.stop();

    let echo = run.exec_with(&resolved("/bin/echo"), "hello-vigil");
    let exec = &echo["process_exec"];
    let p = &exec["process"];
    assert_eq!(p["cwd"], cwd.path().to_str().unwrap());
    assert_eq!(p["uid"], 65534);
    assert_eq!(p["process_credentials"]["gid"], 65534);
    assert!(p["flags"].as_str().unwrap().contains("execve"));
    assert_eq!(echo["node_name"], NODE);

    // The inner shell was the same pid before its exec; the parent is the outer shell.
    let inner =
        &run.exec_with(&resolved("/bin/sh"), "-c \"exec /bin/echo hello-vigil\"")["process_exec"];
    assert_eq!(
        inner["process"]["pid"], p["pid"],
        "echo replaced the inner shell in place"
    );
    let parent = &exec["parent"];
    assert_eq!(parent["binary"], resolved("/bin/sh"));
    assert_eq!(
        parent["arguments"],
        "-c \"sh -c 'exec /bin/echo hello-vigil'; exit $?\""
    );
    assert_eq!(p["parent_exec_id"], parent["exec_id"]);
    let outer = &run.exec_with(
        &resolved("/bin/sh"),
        "-c \"sh -c 'exec /bin/echo hello-vigil'; exit $?\"",
    )["process_exec"];
    assert_eq!(
        outer["process"]["exec_id"], parent["exec_id"],
        "the parent is the outer shell's execution"
    );

    let exit = run.exit_of(&p["exec_id"]);
    assert!(
        exit.get("status").is_none(),
        "a status of 0 is left out: {exit}"
    );
    assert!(exit.get("signal").is_none());
    assert_eq!(exit["process"]["binary"], resolved("/bin/echo"));

    // Tetragon's derived flags: the inner shell was forked and exec'd (`clone`), echo replaced
    // it without a fork; neither ran in `/` (`rootcwd`).
    let flags = |p: &Value| p["flags"].as_str().unwrap().to_string();
    assert_eq!(flags(&inner["process"]), "execve clone");
    assert_eq!(flags(p), "execve");

    // Referenced by the cache while it runs, no more at its exit (Tetragon's refcnt).
    assert_eq!(p["refcnt"], 1, "{p:#}");
    assert!(exit["process"].get("refcnt").is_none(), "{exit:#}");
    // echo has this test's namespaces, each of Tetragon's ten by its inode.
    use std::os::unix::fs::MetadataExt;
    for ns in [
        "uts",
        "ipc",
        "mnt",
        "pid",
        "pid_for_children",
        "net",
        "time",
        "time_for_children",
        "cgroup",
        "user",
    ] {
        let inode = std::fs::metadata(format!("/proc/self/ns/{ns}"))
            .unwrap_or_else(|e| panic!("/proc/self/ns/{ns}: {e}"))
            .ino();
        assert_eq!(p["ns"][ns]["inum"], inode, "{ns}: {:#}", p["ns"]);
    }
}

#[test]
fn capabilities_credentials_and_namespaces_are_written_only_when_asked() {
    // As Tetragon's defaults. The kernel's values are still read: `hook_selectors.rs` selects
    // on the capabilities with this default.
    let agent = Agent::start(&[]);
    let mut sh = Command::new("sh")
        .args(["-c", "exit 0"])
        .spawn()
        .expect("sh");
    let pid = sh.id();
    assert!(sh.wait().unwrap().success());
    let run = agent.stop();
    let exec = run.one("process_exec", pid, &resolved("/bin/sh"));
    let exit = run.exit_of(&exec["process"]["exec_id"]);
    for (what, p) in [
        ("exec's process", &exec["process"]),
        ("exec's parent", &exec["parent"]),
        ("exit's process", &exit["process"]),
    ] {
        for field in ["cap", "ns", "process_credentials"] {
            assert!(p.get(field).is_none(), "{what} has {field}: {p:#}");
        }
        assert!(p["uid"].is_u64(), "{what}: {p:#}");
    }
}

#[test]
fn exit_codes_and_fatal_signals_are_reported() {
    let agent = Agent::start(&["--enable-process-cred"]);
    let three = Command::new("sh")
        .args(["-c", "exit 3"])
        .status()
        .expect("sh");
    assert_eq!(three.code(), Some(3));
    let three_pid = {
        // `status()` hides the pid; spawn again to know it.
        let mut c = Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .expect("sh");
        let pid = c.id();
        c.wait().unwrap();
        pid
    };
    let mut sleeper = Command::new("sleep").arg("30").spawn().expect("sleep");
    let sleeper_pid = sleeper.id();
    std::thread::sleep(Duration::from_millis(200));
    sleeper.kill().expect("SIGKILL");
    sleeper.wait().unwrap();
    let run = agent.stop();

    let sh = run.one("process_exec", three_pid, &resolved("/bin/sh"));
    // Root's capabilities by Tetragon's enum names: DAC_OVERRIDE is the one without CAP_.
    let effective = sh["process"]["cap"]["effective"].as_array().unwrap();
    assert!(
        effective.iter().any(|c| c == "DAC_OVERRIDE")
            && effective.iter().any(|c| c == "CAP_SETUID")
            && !effective.iter().any(|c| c == "CAP_DAC_OVERRIDE"),
        "{effective:?}"
    );
    assert!(
        sh["process"].get("ns").is_none(),
        "namespaces are a switch of their own: {sh:#}"
    );
    let exit = run.exit_of(&sh["process"]["exec_id"]);
    assert_eq!(exit["status"], 3);
    assert!(exit.get("signal").is_none());

    let sleep = run.one("process_exec", sleeper_pid, &resolved("/bin/sleep"));
    let exit = run.exit_of(&sleep["process"]["exec_id"]);
    assert_eq!(exit["signal"], "SIGKILL");
    assert!(
        exit.get("status").is_none(),
        "a status of 0 is left out: {exit}"
    );
}

#[test]
fn processes_older_than_the_agent_carry_procfs_identity_and_ancestry() {
    let mut old = Command::new("sh")
        .args(["-c", "read line; /bin/echo \"$line\"; exit 0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sh");
    let old_pid = old.id();
    let expected_parent_id = procfs_exec_id(old_pid);
    let expected_grandparent_id = procfs_exec_id(std::process::id());

    let agent = Agent::start(&["--ancestors", "8"]);
    old.stdin
        .take()
        .unwrap()
        .write_all(b"late-child\n")
        .unwrap();
    assert!(old.wait().unwrap().success());
    let run = agent.stop();

    let echo = run.exec_with(&resolved("/bin/echo"), "late-child");
    let exec = &echo["process_exec"];
    let parent = &exec["parent"];
    assert_eq!(parent["pid"], old_pid);
    assert_eq!(parent["exec_id"], expected_parent_id.as_str());
    assert!(
        parent["flags"].as_str().unwrap().contains("procFS"),
        "{parent:#}"
    );
    assert_eq!(parent["binary"], resolved("/bin/sh"));
    assert_eq!(
        exec["process"]["parent_exec_id"],
        expected_parent_id.as_str()
    );

    let ancestors = exec["ancestors"].as_array().expect("ancestors requested");
    assert_eq!(
        ancestors[0]["pid"],
        std::process::id(),
        "the test process is the grandparent"
    );
    assert_eq!(ancestors[0]["exec_id"], expected_grandparent_id.as_str());
    assert!(ancestors[0]["flags"].as_str().unwrap().contains("procFS"));
    assert_eq!(parent["parent_exec_id"], ancestors[0]["exec_id"]);

    // The old shell's own exit is reported with its procFS identity.
    let exit = run.exit_of(&Value::from(expected_parent_id));
    assert!(
        exit.get("status").is_none(),
        "a status of 0 is left out: {exit}"
    );
}

#[test]
fn exec_storm_loses_nothing_uncounted() {
    const N: usize = 5000;
    let agent = Agent::start(&[]);
    let pids: Vec<u32> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    (0..N / 4)
                        .map(|_| {
                            let mut c = Command::new("/bin/true").spawn().expect("spawn true");
                            let pid = c.id();
                            assert!(c.wait().unwrap().success());
                            pid
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(pids.len(), N);
    let run = agent.stop();

    let wanted: std::collections::HashSet<u32> = pids.iter().copied().collect();
    let true_bin = resolved("/bin/true");
    let mut execs = std::collections::HashMap::new();
    for e in &run.events {
        let p = &e["process_exec"]["process"];
        if p["binary"] == true_bin.as_str()
            && wanted.contains(&(p["pid"].as_u64().unwrap_or(0) as u32))
        {
            execs.insert(p["exec_id"].as_str().unwrap().to_string(), ());
        }
    }
    let exits: std::collections::HashSet<&str> = run
        .events
        .iter()
        .filter_map(|e| e["process_exit"]["process"]["exec_id"].as_str())
        .collect();
    let execs_with_exit = execs
        .keys()
        .filter(|id| exits.contains(id.as_str()))
        .count();
    let missing_execs = N - execs.len();
    let missing_exits = execs.len() - execs_with_exit;
    let drops = &run.stats["ringbuf_drops"];
    let counted = drops["exec"].as_u64().unwrap() + drops["exit"].as_u64().unwrap();
    eprintln!(
        "exec storm: {N} processes, {} execs seen, {execs_with_exit} with exits, drops {drops}",
        execs.len()
    );
    if counted == 0 {
        assert_eq!(
            (missing_execs, missing_exits),
            (0, 0),
            "events lost without being counted"
        );
    } else {
        assert!(
            (missing_execs + missing_exits) as u64 <= counted,
            "{missing_execs} execs and {missing_exits} exits missing but only {counted} drops counted"
        );
    }
    assert_eq!(run.stats["decode_errors"], 0);
}

#[test]
fn long_argument_lists_are_truncated_and_flagged() {
    let args: Vec<String> = (0..3000).map(|i| format!("arg{i:06}")).collect();
    let agent = Agent::start(&[]);
    let mut c = Command::new("/bin/echo")
        .args(&args)
        .stdout(Stdio::null())
        .spawn()
        .expect("echo");
    let pid = c.id();
    assert!(c.wait().unwrap().success());
    let run = agent.stop();

    let exec = run.one("process_exec", pid, &resolved("/bin/echo"));
    let p = &exec["process"];
    assert!(
        p["flags"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|f| f == "truncArgs"),
        "{}",
        p["flags"]
    );
    let got = arguments(exec);
    assert!(got.len() < 4096, "kept {} bytes", got.len());
    assert!(
        got.len() > 3500,
        "the bound is used, not a tiny prefix: {} bytes",
        got.len()
    );
    let full = args.join(" ");
    assert!(
        full.starts_with(got.trim_end_matches(|c: char| c != ' ').trim_end()),
        "kept a prefix of the real argv"
    );
    let exit = run.exit_of(&p["exec_id"]);
    assert!(
        exit.get("status").is_none(),
        "a status of 0 is left out: {exit}"
    );
}

#[test]
fn compact_lines_name_the_node_binary_arguments_and_outcome() {
    let agent = Agent::start(&["-o", "compact"]);
    let status = Command::new("/bin/echo")
        .arg("hello-compact")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let (text, _stats) = agent.stop_raw();
    let echo = resolved("/bin/echo");
    let exec_line = format!("🚀 process {NODE} {echo} hello-compact");
    let exit_line = format!("💥 exit    {NODE} {echo} hello-compact 0");
    assert!(
        text.lines().any(|l| l == exec_line),
        "no line {exec_line:?} in:\n{text}"
    );
    assert!(
        text.lines().any(|l| l == exit_line),
        "no line {exit_line:?} in:\n{text}"
    );
}

#[test]
fn a_process_older_than_the_agent_with_a_non_utf8_name_is_a_known_parent() {
    // The kernel copies the bytes of a thread's name into `Name:` of /proc/<pid>/status
    // unescaped; a name that is not UTF-8 must not hide the process from the start-up scan.
    let mut old = Command::new("sh")
        .args([
            "-c",
            "read a; printf '\\377\\376sh' > /proc/$$/comm; echo renamed; \
             read b; /bin/echo seeded-parent-marker; exit 0",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh");
    let old_pid = old.id();
    // Read while the name is still plain: the start time does not change with the name.
    let expected_parent_id = procfs_exec_id(old_pid);
    let mut stdin = old.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(old.stdout.take().unwrap());
    let mut line = String::new();
    stdin.write_all(b"rename\n").unwrap();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "renamed\n");
    assert_eq!(
        std::fs::read(format!("/proc/{old_pid}/comm")).unwrap(),
        b"\xff\xfesh\n"
    );

    let agent = Agent::start(&[]);
    stdin.write_all(b"spawn\n").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert!(old.wait().unwrap().success());
    let run = agent.stop();

    let exec = &run.exec_with(&resolved("/bin/echo"), "seeded-parent-marker")["process_exec"];
    let parent = &exec["parent"];
    assert_eq!(parent["pid"], old_pid, "{exec:#}");
    assert_eq!(parent["exec_id"], expected_parent_id.as_str());
    assert!(
        parent["flags"].as_str().unwrap().contains("procFS"),
        "{parent:#}"
    );
    assert_eq!(parent["binary"], resolved("/bin/sh"));
    assert_eq!(
        exec["process"]["parent_exec_id"],
        expected_parent_id.as_str()
    );
}
