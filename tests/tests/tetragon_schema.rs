//! vigil's events against Tetragon's own schema: every JSON line must parse as protojson of
//! Tetragon's `GetEventsResponse` with unknown fields refused, once the additions vigil
//! documents (tests/tetragon-schema/vigil-additions.json, the one list, each with its reason)
//! are taken out. The check is tests/tetragon-schema/validate.py, which compiles Tetragon's
//! `.proto` files (../shared/testdata/tetragon-api/) with grpcio-tools' protoc and parses with
//! the protobuf runtime; `make test-deps` unpacks both wheels into target/tools.
//!
//! The first test runs one agent through a representative set of real scenarios (exec and exit,
//! exit by a signal, a shipped system call policy, a file-open LSM policy in monitor mode, a
//! TCP connect and a DNS exchange on loopback, a Sigma alert, with ancestors) and checks all its
//! events. The second checks every event the whole end-to-end run wrote, when the harness was
//! asked to keep them (`VIGIL_EVENT_ARCHIVE`, see tests/src/lib.rs).
//!
//! Host only: the VM image has no Python. The matrix test (vm_matrix.rs) brings the events the
//! guest's agents wrote back into the archive, so the second test parses the VM's events too.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;
use vigil_tests::{
    dns::{query, TestResolver, TYPE},
    fixtures, rules_dir, Agent, TempDir, EVENT_ARCHIVE_VAR,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf()
}

/// Runs validate.py on `files` with the tools `make test-deps` unpacked; panics with its output
/// when an event does not parse, and with the reason when the tools are missing.
fn validate(files: &[&Path]) {
    let repo = repo();
    let script = repo.join("tests/tetragon-schema/validate.py");
    let tag = Command::new("python3")
        .args(["-c", "import sys; print('cp%d%d' % sys.version_info[:2])"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| {
            panic!("python3 does not run: the Tetragon schema check needs it (run make test-deps)")
        });
    let tools = repo.join("target/tools/grpc-py").join(&tag);
    assert!(
        tools.join(".done").is_file(),
        "grpcio-tools and protobuf for {tag} are not unpacked in {}: run make test-deps",
        tools.display()
    );
    let out = Command::new("python3")
        // -S: the wheels alone, not whatever protobuf the system's site-packages hold.
        .arg("-S")
        .arg(&script)
        .args(files)
        .env("PYTHONPATH", &tools)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "events that are not Tetragon's GetEventsResponse ({}, exit {}):\n{stdout}{stderr}",
        script.display(),
        out.status
    );
    // The summary, for the log of a passing run.
    let summary = stdout
        .split_once("\nTetragon schema")
        .map_or(&*stdout, |(_, s)| s);
    eprintln!("Tetragon schema{summary}");
}

/// The kinds and the argument types of `text`'s events, for the scenario's own check that it
/// produced what it meant to validate.
fn shapes(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let e: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for (kind, body) in e.as_object().expect("an object") {
            if kind == "node_name" || kind == "time" {
                continue;
            }
            found.push(kind.clone());
            let args = body["args"].as_array().into_iter().flatten();
            for arg in args.chain(body.get("return")) {
                if let Some(o) = arg.as_object() {
                    found.extend(
                        o.keys()
                            .filter(|k| *k != "label")
                            .map(|k| format!("{kind}.{k}")),
                    );
                }
            }
            if body["parent"].is_object() {
                found.push(format!("{kind}.parent"));
            }
            if body["ancestors"].as_array().is_some_and(|a| !a.is_empty()) {
                found.push(format!("{kind}.ancestors"));
            }
            if body["signal"].is_string() {
                found.push(format!("{kind}.signal"));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn every_kind_of_event_the_agent_writes_parses_as_tetragon_get_events_response() {
    let dir = TempDir::new("tetragon-schema");
    let file_open = dir.path().join("deny-passwd.yaml");
    std::fs::write(&file_open, fixtures::deny_passwd("monitor")).unwrap();
    let connect = dir.path().join("connect.yaml");
    std::fs::write(&connect, fixtures::CONNECT_POLICY).unwrap();
    let privileges = rules_dir().join("observe-privilege-changes.yaml");
    let dns = rules_dir().join("observe-dns.yaml");
    let sigma = rules_dir().parent().unwrap().join("sigma");

    let known = Ipv4Addr::new(10, 1, 2, 3);
    let resolver = TestResolver::start("127.0.0.1:53", &[("known.vigil.test", known)]);
    let agent = Agent::start(&[
        "--ancestors",
        "3",
        "--policy",
        file_open.to_str().unwrap(),
        "--policy",
        connect.to_str().unwrap(),
        "--policy",
        privileges.to_str().unwrap(),
        "--policy",
        dns.to_str().unwrap(),
        "--sigma-dir",
        sigma.to_str().unwrap(),
    ]);

    // Exec and exit, with arguments and a status; an exit by a signal.
    let status = Command::new("sh")
        .args(["-c", "/bin/true a 'b c'; exit 3"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    // A shipped system call policy: becoming root (a no-op for root, reported all the same).
    // SAFETY: setuid(0) as root changes nothing.
    assert_eq!(unsafe { libc::setuid(0) }, 0);
    // The file-open LSM hook in monitor mode, and the Sigma rule on reading password hashes.
    for file in ["/etc/passwd", "/etc/shadow"] {
        let out = Command::new("cat").arg(file).output().unwrap();
        assert!(out.status.success(), "monitor mode lets cat read {file}");
    }
    // A TCP connect on loopback.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).unwrap();
    drop((client, server));
    // A DNS query and its answer, and a name that does not exist.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for (id, name) in [(0x5151, "known.vigil.test"), (0x5252, "missing.vigil.test")] {
        sock.send_to(&query(id, name, TYPE::A), resolver.addr())
            .unwrap();
        let mut answer = [0u8; 512];
        sock.recv_from(&mut answer)
            .expect("the test resolver answers");
    }
    let (text, _) = agent.stop_raw();
    drop(resolver);

    // The scenario produced what it is meant to check, so a pass means something.
    let found = shapes(&text);
    for want in [
        "process_exec",
        "process_exec.parent",
        "process_exec.ancestors",
        "process_exit",
        "process_exit.signal",
        "process_kprobe",
        "process_kprobe.int_arg",
        "process_kprobe.sock_arg",
        "process_kprobe.dns_arg",
        "process_lsm",
        "process_lsm.file_arg",
        "process_alert",
    ] {
        assert!(
            found.iter().any(|f| f == want),
            "the scenario wrote no {want}; it wrote {found:?}"
        );
    }

    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, &text).unwrap();
    validate(&[&events]);
}

/// Every event the end-to-end run kept (`make test` sets `VIGIL_EVENT_ARCHIVE` and runs this
/// last, after every scenario); without the variable it fails with that reason.
#[test]
fn every_archived_event_of_the_end_to_end_run_parses_as_tetragon_get_events_response() {
    let archive = std::env::var_os(EVENT_ARCHIVE_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!("{EVENT_ARCHIVE_VAR} is not set: this test checks the archive of a whole run, which make test keeps and checks last")
        });
    assert!(
        archive.is_file(),
        "{EVENT_ARCHIVE_VAR}={}: no such file (no agent stopped with it set: run the scenarios first, as make test does)",
        archive.display()
    );
    validate(&[&archive]);
}
