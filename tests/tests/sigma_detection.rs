//! Sigma rules on the live event stream: the agent runs SigmaHQ's Linux rules (the shared test
//! data), real commands that those rules are written to catch are run beside it, and each must
//! raise a `process_alert` naming its rule, with the process that ran it.

use std::process::Command;

use serde_json::Value;
use vigil_tests::{require_root, Agent, AgentRun, TempDir};

fn sigma_testdata() -> std::path::PathBuf {
    vigil_tests::sigma_rules_dir()
}

/// Whether the commands are busybox applets (the VM): every one runs as `/bin/busybox`, so only
/// rules that look at the command line, not at the binary's name, can fire.
fn busybox_userland() -> bool {
    std::fs::canonicalize("/bin/sh").is_ok_and(|p| p.ends_with("busybox"))
}

fn alerts(run: &AgentRun) -> Vec<&Value> {
    run.events
        .iter()
        .filter_map(|e| e.get("process_alert"))
        .collect()
}

/// Runs `sh -c script`; the outcome does not matter, only that the processes ran.
fn sh(script: &str) {
    let _ = Command::new("sh").args(["-c", script]).output();
}

#[test]
fn sigmahq_linux_rules_fire_on_the_commands_they_describe() {
    require_root();
    let dir = TempDir::new("sigma");
    let d = dir.path().display().to_string();
    std::fs::write(dir.path().join("file"), "x").unwrap();
    let agent = Agent::start(&["--sigma-dir", sigma_testdata().to_str().unwrap()]);
    // (command, the rule file it must fire)
    let cases: Vec<(String, &str)> = vec![
        ("nohup true".into(), "proc_creation_lnx_nohup.yml"),
        (
            "find / -maxdepth 1 -perm -4000".into(),
            "proc_creation_lnx_susp_find_execution.yml",
        ),
        (
            "sh -c 'echo dHJ1ZQo= | base64 -d | sh'".into(),
            "proc_creation_lnx_base64_execution.yml",
        ),
        (
            format!("mount -o hidepid=2 {d}/no-such-device {d}/no-such-dir"),
            "proc_creation_lnx_mount_hidepid.yml",
        ),
        (
            format!("tail -n1 {d}/.bash_history"),
            "proc_creation_lnx_susp_history_recon.yml",
        ),
        (
            "rm -f /var/log/vigil-no-such-log".into(),
            "proc_creation_lnx_clear_logs.yml",
        ),
        (
            format!("rm -f {d}/no-such-file"),
            "proc_creation_lnx_file_deletion.yml",
        ),
        (
            format!("chattr -i {d}/file"),
            "proc_creation_lnx_chattr_immutable_removal.yml",
        ),
        (
            format!("dd if=/dev/zero of={d}/dd.out bs=1 count=1"),
            "proc_creation_lnx_dd_file_overwrite.yml",
        ),
        (
            "cp /etc/passwd /tmp/vigil-passwd-copy && rm -f /tmp/vigil-passwd-copy".into(),
            "proc_creation_lnx_cp_passwd_or_shadow_tmp.yml",
        ),
        (
            "cat /proc/2/status".into(),
            "proc_creation_lnx_susp_container_residence_discovery.yml",
        ),
        (
            "ls /.dockerenv".into(),
            "proc_creation_lnx_susp_dockerenv_recon.yml",
        ),
        (
            "grep -q falcond /dev/null".into(),
            "proc_creation_lnx_security_software_discovery.yml",
        ),
        (
            "ip addr show lo".into(),
            "proc_creation_lnx_system_network_discovery.yml",
        ),
        (
            "groupdel vigil-no-such-group".into(),
            "proc_creation_lnx_groupdel.yml",
        ),
        (
            "sh -c 'echo stratum+tcp://pool.invalid:3333'".into(),
            "proc_creation_lnx_crypto_mining.yml",
        ),
    ];
    let cases: Vec<(String, &str)> = if busybox_userland() {
        cases
            .into_iter()
            .filter(|(_, r)| {
                r.ends_with("base64_execution.yml") || r.ends_with("crypto_mining.yml")
            })
            .collect()
    } else {
        cases
    };
    for (cmd, _) in &cases {
        sh(cmd);
    }
    let run = agent.stop();
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("sigma: 48 rules loaded")),
        "{:#?}",
        run.stderr
    );
    let alerts = alerts(&run);
    let mut missing = Vec::new();
    for (cmd, rule) in &cases {
        let hit = alerts.iter().find(|a| {
            a["rule_file"].as_str().is_some_and(|f| f.ends_with(rule))
                && a["event"]["process_exec"].is_object()
        });
        match hit {
            None => missing.push(format!("{rule} did not fire on `{cmd}`")),
            Some(a) => {
                assert!(a["title"].as_str().is_some_and(|t| !t.is_empty()), "{a}");
                assert!(a["rule_id"].as_str().is_some_and(|t| !t.is_empty()), "{a}");
                assert_eq!(a["category"], "process_creation");
                assert_eq!(a["process"], a["event"]["process_exec"]["process"]);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{missing:#?}\nalerts: {:#?}",
        alerts
            .iter()
            .map(|a| format!("{} {}", a["rule_file"], a["process"]["arguments"]))
            .collect::<Vec<_>>()
    );
}

#[test]
fn sigma_test_replays_recorded_events_offline() {
    require_root();
    let dir = TempDir::new("sigma-offline");
    let agent = Agent::start(&[]);
    sh("sh -c 'echo dHJ1ZQo= | base64 -d | sh'");
    let run = agent.stop();
    let events = dir.path().join("events.jsonl");
    let lines: Vec<String> = run.events.iter().map(|e| e.to_string()).collect();
    std::fs::write(&events, lines.join("\n")).unwrap();
    let replay = |rules: &std::path::Path| {
        Command::new(vigil_tests::vigil_bin())
            .args(["sigma", "test", "--json", "--events"])
            .arg(&events)
            .arg(rules)
            .output()
            .unwrap()
    };
    let out = replay(&sigma_testdata());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        alerts.iter().any(|a| a["process_alert"]["rule_file"]
            .as_str()
            .is_some_and(|f| f.ends_with("proc_creation_lnx_base64_execution.yml"))),
        "{alerts:#?}"
    );
    for field in ["\"process_credentials\"", "\"cap\"", "\"ns\""] {
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(field),
            "{field} made up in an alert's event"
        );
    }
    // The agent wrote no credentials (its default): a replay of auditd rules says what that
    // leaves out (the real uid of the SYSCALL records), rather than read a missing uid as 0,
    // root's, and writes none back as zeros in the alerts' events.
    let auditd = dir.path().join("auditd");
    std::fs::create_dir(&auditd).unwrap();
    std::fs::write(
        auditd.join("root_execve.yml"),
        "title: Root execve\nid: 0c7f3e2a-5b1d-4e8f-9a6c-2d4b8e1f7a30\nstatus: test\n\
         logsource:\n  product: linux\n  service: auditd\ndetection:\n  selection:\n    \
         type: SYSCALL\n    SYSCALL: execve\n    uid: 0\n  condition: selection\nlevel: low\n",
    )
    .unwrap();
    let out = replay(&auditd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("have no process_credentials") && stderr.contains("--enable-process-cred"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("Root execve"),
        "an unknown uid read as root's: {stdout}"
    );
}

/// (command, rule file, whether it can fire with busybox's applets)
fn shipped_cases(d: &str) -> Vec<(String, &'static str, bool)> {
    vec![
        (
            // Answered by the test's resolver (NXDOMAIN): the lookup is what the rule sees.
            "busybox nslookup xmr.pool.supportxmr.com 127.0.0.1 >/dev/null 2>&1 || true".into(),
            "dns_query_mining_pool.yml",
            true,
        ),
        (
            "bash -c 'exec 3<>/dev/tcp/127.0.0.1/1' 2>/dev/null".into(),
            "proc_reverse_shell_dev_tcp.yml",
            false,
        ),
        (
            "sh -c 'nc -e /bin/true 127.0.0.1 9 2>/dev/null || true'".into(),
            "proc_reverse_shell_netcat.yml",
            true,
        ),
        (
            "sh -c \"echo python3 -c 'import socket,subprocess'\"".into(),
            "proc_reverse_shell_interpreter_socket.yml",
            true,
        ),
        (
            "cp /bin/true /dev/shm/vigil-true-$$ && /dev/shm/vigil-true-$$; rm -f /dev/shm/vigil-true-$$"
                .into(),
            "proc_exec_from_dev_shm.yml",
            false,
        ),
        (
            format!("cp /bin/true {d}/vigil-true && {d}/vigil-true"),
            "proc_exec_from_tmp.yml",
            true,
        ),
        (
            format!("mkdir -p {d}/.hidden && cp /bin/true {d}/.hidden/true && {d}/.hidden/true"),
            "proc_exec_hidden_binary.yml",
            true,
        ),
        (
            "sh -c 'unset HISTFILE; true'".into(),
            "proc_history_tampering.yml",
            true,
        ),
        (
            "cat /etc/shadow >/dev/null".into(),
            "proc_credential_file_read.yml",
            false,
        ),
        (
            "mkdir -p /etc/cron.d && echo '# vigil test' > /etc/cron.d/vigil-test; rm -f /etc/cron.d/vigil-test"
                .into(),
            "file_cron_persistence.yml",
            true,
        ),
        (
            "mkdir -p /etc/systemd/system && echo '# vigil test' > /etc/systemd/system/vigil-test.service; rm -f /etc/systemd/system/vigil-test.service"
                .into(),
            "file_systemd_unit_persistence.yml",
            true,
        ),
        (
            "echo '# vigil test' > /etc/sudoers.vigil-test; rm -f /etc/sudoers.vigil-test".into(),
            "file_sudoers_write.yml",
            true,
        ),
        (
            format!("sh -c 'mkdir -p {d}/.ssh && echo ssh-ed25519 AAAA >> {d}/.ssh/authorized_keys'"),
            "proc_ssh_authorized_keys.yml",
            true,
        ),
        (
            format!("busybox insmod {d}/bogus.ko 2>/dev/null"),
            "proc_kernel_module_load.yml",
            true,
        ),
        (
            "nsenter -t 1 -m true 2>/dev/null".into(),
            "proc_nsenter_host.yml",
            false,
        ),
        (
            "sh -c 'echo release_agent >/dev/null'".into(),
            "proc_cgroup_release_agent.yml",
            true,
        ),
        (
            "ls /var/run/docker.sock 2>/dev/null".into(),
            "proc_docker_socket.yml",
            true,
        ),
        (
            format!("chmod u+s {d}/file"),
            "proc_setuid_bit.yml",
            false,
        ),
        (
            "sh -c 'curl -s file:///dev/null | sh'".into(),
            "proc_download_pipe_shell.yml",
            true,
        ),
        (
            format!("touch -t 202001010000 {d}/file"),
            "proc_timestomp.yml",
            false,
        ),
        (
            "useradd --help >/dev/null".into(),
            "proc_account_creation.yml",
            false,
        ),
    ]
}

/// Every rule in `rules/sigma/` (but the network ones: below, and in encryption.rs) fires on the commands it
/// describes, with the shipped policies providing the file events.
#[test]
fn shipped_sigma_rules_fire_on_what_they_describe() {
    require_root();
    let dir = TempDir::new("sigma-shipped");
    let d = dir.path().display().to_string();
    std::fs::write(dir.path().join("file"), "x").unwrap();
    std::fs::write(dir.path().join("bogus.ko"), [0u8; 64]).unwrap();
    let rules = vigil_tests::rules_dir().parent().unwrap().join("sigma");
    let policies = vigil_tests::rules_dir();
    let _resolver = vigil_tests::dns::TestResolver::start("127.0.0.1:53", &[]);
    let agent = Agent::start(&[
        "--policy-dir",
        policies.to_str().unwrap(),
        "--sigma-dir",
        rules.to_str().unwrap(),
    ]);
    let busybox = busybox_userland();
    let cases: Vec<_> = shipped_cases(&d)
        .into_iter()
        .filter(|c| c.2 || !busybox)
        .collect();
    for (cmd, _, _) in &cases {
        sh(cmd);
    }
    let run = agent.stop();
    let alerts = alerts(&run);
    let mut missing = Vec::new();
    for (cmd, rule, _) in &cases {
        if !alerts
            .iter()
            .any(|a| a["rule_file"].as_str().is_some_and(|f| f.ends_with(rule)))
        {
            missing.push(format!("{rule} did not fire on `{cmd}`"));
        }
    }
    assert!(
        missing.is_empty(),
        "{missing:#?}\nalerts: {:#?}",
        alerts
            .iter()
            .map(|a| format!("{} {}", a["rule_file"], a["process"]["arguments"]))
            .collect::<Vec<_>>()
    );
    // Every shipped rule but the two network ones is covered above: the port rule below,
    // the plaintext-flow rule in encryption.rs.
    let shipped = std::fs::read_dir(&rules).unwrap().count();
    if !busybox {
        assert_eq!(cases.len() + 2, shipped, "a shipped rule without a case");
    }
}

#[test]
fn connections_to_attack_tool_ports_raise_an_alert() {
    if !vigil_tests::kernels::scenario_needs(
        "connections_to_attack_tool_ports_raise_an_alert",
        &[vigil_tests::kernels::Hook::Kprobe],
    ) {
        return;
    }
    require_root();
    let dir = TempDir::new("sigma-net");
    let policy = dir.path().join("connect.yaml");
    std::fs::write(&policy, vigil_tests::fixtures::CONNECT_POLICY).unwrap();
    let rules = vigil_tests::rules_dir().parent().unwrap().join("sigma");
    let listener = [4444u16, 1337, 31337, 6666]
        .into_iter()
        .find_map(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
        .expect("one of the ports is free on loopback");
    let port = listener.local_addr().unwrap().port();
    let agent = Agent::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--sigma-dir",
        rules.to_str().unwrap(),
    ]);
    drop(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    let run = agent.stop();
    let hits: Vec<_> = alerts(&run)
        .into_iter()
        .filter(|a| {
            a["rule_file"]
                .as_str()
                .is_some_and(|f| f.ends_with("net_suspicious_port.yml"))
        })
        .collect();
    assert_eq!(hits.len(), 1, "{:#?}", run.events);
    assert_eq!(hits[0]["category"], "network_connection");
    assert_eq!(
        hits[0]["event"]["process_kprobe"]["args"][0]["sock_arg"]["dport"],
        port
    );
}

/// A Tetragon-shaped JSON stream (the export file, stdout) carries no `process_alert`, an event
/// type Tetragon's readers do not know, unless `--alerts-in-stream` asks: each alert is logged
/// on stderr instead, with the process that raised it.
#[test]
fn alerts_stay_out_of_a_tetragon_stream_unless_asked_and_are_logged_instead() {
    require_root();
    let dir = TempDir::new("sigma-stream");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    // A rule on the command line alone: it fires with coreutils and with busybox (the VM).
    std::fs::write(
        rules.join("marker.yml"),
        "title: stream-marker\nid: stream-marker\nlogsource:\n    product: linux\n    category: process_creation\ndetection:\n    selection:\n        CommandLine|contains: 'vigil-stream-marker'\n    condition: selection\nlevel: high\n",
    )
    .unwrap();
    let agent = Agent::start_tetragon_stream(&["--sigma-dir", rules.to_str().unwrap()]);
    sh("echo vigil-stream-marker >/dev/null");
    let run = agent.stop();
    assert!(
        alerts(&run).is_empty(),
        "alerts in the stream: {:#?}",
        alerts(&run)
    );
    assert!(
        run.stderr.iter().any(|l| l.starts_with("vigil: alert: ")
            && l.contains("vigil-stream-marker")
            && l.contains("stream-marker")),
        "no alert logged: {:#?}",
        run.stderr
    );
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("no output takes the Sigma alerts")),
        "{:#?}",
        run.stderr
    );
}

/// Rule directories are watched: a rule added at run time fires, a broken one is refused with
/// its file while the rest keep firing.
#[test]
fn rules_added_at_run_time_fire_and_broken_ones_are_refused() {
    require_root();
    let dir = TempDir::new("sigma-reload");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let rule = |title: &str, needle: &str| {
        format!(
            "title: {title}\nid: {title}\nlogsource:\n    product: linux\n    category: process_creation\ndetection:\n    selection:\n        CommandLine|contains: '{needle}'\n    condition: selection\nlevel: high\n"
        )
    };
    std::fs::write(
        rules.join("first.yml"),
        rule("first-rule", "vigil-marker-one"),
    )
    .unwrap();
    let agent = Agent::start(&["--sigma-dir", rules.to_str().unwrap()]);
    agent.wait_for_log("sigma: 1 rules loaded", 0);
    std::fs::write(
        rules.join("second.yml"),
        rule("second-rule", "vigil-marker-two"),
    )
    .unwrap();
    std::fs::write(rules.join("broken.yml"), "title: broken\ndetection: [\n").unwrap();
    agent.wait_for_log("sigma: 2 rules loaded", 0);
    sh("echo vigil-marker-one vigil-marker-two >/dev/null");
    let run = agent.stop();
    let fired: Vec<&str> = alerts(&run)
        .iter()
        .filter_map(|a| a["rule_id"].as_str())
        .collect();
    assert!(fired.contains(&"first-rule"), "{fired:?}");
    assert!(fired.contains(&"second-rule"), "{fired:?}");
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("sigma rule refused") && l.contains("broken.yml")),
        "{:#?}",
        run.stderr
    );
}

/// A rule naming a field vigil never fills loads (it may match through its other selections),
/// with a warning at that field's line and column that says what to use instead: from `vigil
/// sigma test` and from the agent alike.
#[test]
fn a_rule_on_a_field_vigil_never_fills_loads_with_a_warning_at_that_field() {
    require_root();
    let dir = TempDir::new("sigma-unfilled");
    let rule = dir.path().join("proc_netcat_name.yml");
    std::fs::write(
        &rule,
        "title: Netcat by Name\nid: netcat-by-name\nlogsource:\n    product: linux\n    category: process_creation\ndetection:\n    selection:\n        ProcessName|endswith: /nc\n    condition: selection\nlevel: high\n",
    )
    .unwrap();
    let warning = format!(
        "sigma rule warning: {}:8:9: detection.selection.ProcessName|endswith: vigil never fills \
         `ProcessName` in process_creation events, so nothing the rule says of it matches: use \
         `Image`",
        rule.display()
    );
    let out = Command::new(vigil_tests::vigil_bin())
        .args(["sigma", "test", "--events", "/dev/null"])
        .arg(&rule)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&warning), "{stderr}");

    let agent = Agent::start(&["--sigma-dir", rule.to_str().unwrap()]);
    agent.wait_for_log("sigma: 1 rules loaded", 0);
    let run = agent.stop();
    assert_eq!(
        run.stderr.iter().filter(|l| l.contains(&warning)).count(),
        1,
        "{:#?}",
        run.stderr
    );
}

/// A rule path `vigil sigma test` is given that is missing or refused stops it with one line
/// that names the path and the reason, as it stops the agent's start.
#[test]
fn a_missing_or_refused_rule_path_stops_sigma_test_with_one_line() {
    require_root();
    let dir = TempDir::new("sigma-refused");
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, "title: broken\ndetection: [\n").unwrap();
    let missing = dir.path().join("missing.yml");
    for (path, reason) in [
        (&missing, ": cannot read: "),
        (&broken, ":3:1: YAML syntax error: "),
    ] {
        let out = Command::new(vigil_tests::vigil_bin())
            .args(["sigma", "test", "--events", "/dev/null"])
            .arg(path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(!out.status.success(), "{stderr}");
        assert_eq!(lines.len(), 1, "{stderr}");
        let expected = format!("vigil: error: Sigma rule path {}{reason}", path.display());
        assert!(lines[0].starts_with(&expected), "{stderr}");
    }
}

/// auditd-service rules (as written for auditd's SYSCALL, EXECVE and PATH records) fire on
/// vigil's events of the commands they describe: an exec's EXECVE and SYSCALL records, and a
/// PATH record from a shipped policy's file event.
#[test]
fn auditd_rules_fire_on_the_records_vigil_derives() {
    require_root();
    let dir = TempDir::new("sigma-auditd");
    let d = dir.path().display().to_string();
    std::fs::write(dir.path().join("file"), "x").unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let rule = |name: &str, title: &str, selection: &str| {
        let text = format!(
            "title: {title}\nstatus: test\nauthor: vigil tests\nlogsource:\n  product: linux\n  service: auditd\ndetection:\n  selection:\n{selection}  condition: selection\nlevel: medium\n"
        );
        std::fs::write(rules.join(name), text).unwrap();
    };
    rule(
        "auditd_chattr_immutable.yml",
        "Immutable flag cleared",
        "    type: EXECVE\n    a0: chattr\n    a1|contains: '-i'\n",
    );
    // A binary run from the temporary directory (the test's, wherever $TMPDIR puts it).
    rule(
        "auditd_exec_tmp.yml",
        "Binary run from a temporary directory",
        &format!("    type: SYSCALL\n    SYSCALL: execve\n    exe|startswith: '{d}/'\n"),
    );
    rule(
        "auditd_shadow_path.yml",
        "Shadow file opened",
        "    type: PATH\n    name: /etc/shadow\n",
    );
    let agent = Agent::start(&[
        "--policy-dir",
        vigil_tests::rules_dir().to_str().unwrap(),
        "--sigma-dir",
        rules.to_str().unwrap(),
    ]);
    // (command, rule file, whether it runs where every command is busybox: whether its
    // chattr applet is built in varies)
    let cases = [
        (
            format!("chattr -i {d}/file"),
            "auditd_chattr_immutable.yml",
            false,
        ),
        (
            format!("cp /bin/true {d}/vigil-true && {d}/vigil-true"),
            "auditd_exec_tmp.yml",
            true,
        ),
        (
            "cat /etc/shadow >/dev/null".to_string(),
            "auditd_shadow_path.yml",
            true,
        ),
    ];
    let busybox = busybox_userland();
    let cases: Vec<_> = cases.iter().filter(|c| c.2 || !busybox).collect();
    for (cmd, _, _) in &cases {
        sh(cmd);
    }
    let run = agent.stop();
    let alerts = alerts(&run);
    for (cmd, rule, _) in &cases {
        assert!(
            alerts
                .iter()
                .any(|a| a["rule_file"].as_str().is_some_and(|f| f.ends_with(rule))),
            "{rule} did not fire on `{cmd}`; alerts: {:#?}",
            alerts
                .iter()
                .map(|a| format!("{} {}", a["rule_file"], a["process"]["binary"]))
                .collect::<Vec<_>>()
        );
    }
    // The chattr rule's record is the exec's: nothing else raised it.
    assert!(
        !alerts.iter().any(|a| {
            a["rule_file"]
                .as_str()
                .is_some_and(|f| f.ends_with("auditd_chattr_immutable.yml"))
                && !a["process"]["binary"]
                    .as_str()
                    .is_some_and(|b| b.ends_with("/chattr"))
        }),
        "{alerts:#?}"
    );
}
