//! The real agent exporting through its configuration file: events from real processes reach the
//! Splunk HEC test server with secrets in arguments redacted, and a rotated JSON-lines file
//! created 0600.

#[path = "../../exporters/tests/support/hec.rs"]
#[allow(dead_code)] // the server's other knobs serve the exporters crate's own tests
mod hec;
#[path = "../../exporters/tests/support/http.rs"]
#[allow(dead_code)]
mod http;

use std::{
    os::unix::fs::PermissionsExt,
    time::{Duration, Instant},
};

use vigil_tests::{require_root, Agent, TempDir};

#[test]
fn agent_events_reach_splunk_the_file_and_the_store_with_secrets_redacted() {
    require_root();
    let server = hec::HecServer::start("t0k3n");
    let dir = TempDir::new("exporters");
    let token = dir.path().join("token");
    std::fs::write(&token, "t0k3n\n").unwrap();
    let events = dir.path().join("out/events.jsonl");
    let config = dir.path().join("vigil.yaml");
    std::fs::write(
        &config,
        format!(
            "exporters:\n  spool_dir: {spool}\n  redact: ['--password[ =](\\S+)']\n  sinks:\n  - name: splunk\n    type: splunk_hec\n    endpoint: {endpoint}\n    token: {{file: {token}}}\n    allow_plaintext: true\n    index: vigil\n    linger_ms: 50\n    allow:\n    - event_set: [process_exec]\n  - name: file\n    type: file\n    path: {events}\n",
            spool = dir.path().join("spool").display(),
            endpoint = server.endpoint(),
            token = token.display(),
            events = events.display(),
        ),
    )
    .unwrap();
    let agent = Agent::start(&["--config", config.to_str().unwrap()]);
    let out = std::process::Command::new("sh")
        .args(["-c", "exec /bin/echo vigil-hec-marker --password=hunter2"])
        .output()
        .unwrap();
    assert!(out.status.success());
    // The forensic store keeps the event as the sinks got it: redacted, its trigrams too (a
    // search for the secret finds nothing).
    let db = agent.store_db.to_str().unwrap().to_string();
    // By a pattern: the searches are processes too, whose arguments must not hold the secret.
    let stored = |pattern: &str| {
        let out = std::process::Command::new(vigil_tests::vigil_bin())
            .args(["search", "--store", &db, "-o", "json"])
            .args(["--type", "process_exec", "--args-regex", pattern])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut kept = stored("vigil-hec-marker");
    while !kept.contains("vigil-hec-marker") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        kept = stored("vigil-hec-marker");
    }
    assert!(kept.contains("vigil-hec-marker --password=*****"), "{kept}");
    assert!(!kept.contains("hunter2"), "{kept}");
    assert_eq!(stored("hunte[r]2"), "");
    let run = agent.stop();
    assert!(
        run.stderr.iter().any(|l| l.contains("exporters: 2 sinks")),
        "{:#?}",
        run.stderr
    );
    let received = server.events();
    let hit: Vec<_> = received
        .iter()
        .filter(|e| {
            // echo's own exec (the shell's arguments start with -c).
            e["event"]["process_exec"]["process"]["arguments"]
                .as_str()
                .is_some_and(|a| a.starts_with("vigil-hec-marker"))
        })
        .collect();
    assert_eq!(hit.len(), 1, "{received:#?}");
    assert_eq!(
        hit[0]["event"]["process_exec"]["process"]["arguments"],
        "vigil-hec-marker --password=*****"
    );
    assert_eq!(hit[0]["index"], "vigil");
    assert!(
        received
            .iter()
            .all(|e| e["event"]["process_exec"].is_object()),
        "the allow filter passes process_exec only"
    );
    assert!(!format!("{received:?}").contains("hunter2"));
    // The same event in the file sink, redacted too, in a file only root can read.
    let text = std::fs::read_to_string(&events).unwrap();
    assert!(text.contains("vigil-hec-marker --password=*****"));
    assert!(!text.contains("hunter2"));
    assert_eq!(
        std::fs::metadata(&events).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The token is never logged.
    assert!(!run.stderr.iter().any(|l| l.contains("t0k3n")));
}

#[test]
fn a_bad_configuration_names_the_file_line_and_field() {
    let dir = TempDir::new("bad-config");
    let config = dir.path().join("vigil.yaml");
    std::fs::write(
        &config,
        "exporters:\n  sinks:\n  - name: s\n    type: splunk_hec\n    endpoint: http://127.0.0.1:1\n    tokn: {env: X}\n",
    )
    .unwrap();
    let out = std::process::Command::new(vigil_tests::vigil_bin())
        .args(["agent", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("vigil.yaml:") && err.contains("exporters.sinks[0]") && err.contains("tokn"),
        "{err}"
    );
}

#[test]
fn an_agent_given_a_state_directory_keeps_its_spools_there() {
    require_root();
    // Every test agent has an export file of its own: spools under /var/lib/vigil, keyed by
    // that path, were left behind by each run (69 GB of them, until the disk was full).
    let agent = Agent::start(&[]);
    let state = agent
        .store_db
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let spools: Vec<String> = std::fs::read_dir(state.join("spool"))
        .expect("the state directory has the spools")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    agent.stop();
    assert!(
        spools.iter().any(|s| s.starts_with("export-file-")),
        "the export file's spool is in {}: {spools:?}",
        state.display()
    );
}

/// A burst larger than the export file's queue (10,000 records), read while the ring buffer
/// has room, is written without its disk spool: the loop reads no more than the file and the
/// store can queue, and gives them their turn, instead of spilling the rest to the spool and
/// reading it back. Nothing is lost and nothing is shed.
#[test]
fn a_burst_the_outputs_cannot_queue_waits_in_the_ring_buffer_not_the_spool() {
    require_root();
    let agent = Agent::start(&["--ringbuf-size", "256"]);
    let address = agent.metrics_address();
    let scrape = || vigil_tests::http_get(&address, "/metrics").1;
    // The export file rotates at 100 MiB, a burst this size included: its delivered count
    // says what was written.
    let delivered = || {
        vigil_tests::metric(
            &scrape(),
            "vigil_exporter_delivered_total{sink=\"export-file\"}",
        )
        .expect("the export file's delivered count") as u64
    };
    // Until the count has reached `at_least` and stayed for a second.
    let settle = |at_least: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut last, mut since) = (delivered(), Instant::now());
        while last < at_least || since.elapsed() < Duration::from_secs(1) {
            assert!(Instant::now() < deadline, "{last} events delivered");
            std::thread::sleep(Duration::from_millis(200));
            let now = delivered();
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
        last
    };
    let execs = |n: usize| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    for _ in 0..n / 4 {
                        std::process::Command::new("/bin/true").status().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    };
    // The store trains its compression dictionary once, on its first few thousand events:
    // done before the burst, as on any node that has run for a minute.
    execs(3000);
    let before = settle(6000);
    let pid = agent.pid() as i32;
    // SAFETY: signals to the agent this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    // 16,000 execs, 32,000 events (an exec and an exit each), three queues' worth; the old
    // loop spilled half of such a burst.
    execs(16_000);
    // While the burst is read, the ring buffer's fill is seen waiting, in whole records: the
    // first scrape is asked before the agent goes on, and answered at its loop's first tick.
    let scraper = {
        let address = address.clone();
        std::thread::spawn(move || {
            (0..5)
                .filter_map(|_| {
                    let text = vigil_tests::http_get(&address, "/metrics").1;
                    vigil_tests::metric(&text, "vigil_ringbuf_used_bytes")
                })
                .collect::<Vec<f64>>()
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let waiting = scraper.join().unwrap();
    let size = vigil_tests::metric(&scrape(), "vigil_ringbuf_size_bytes").expect("the size");
    assert!(
        waiting.iter().any(|w| *w > 0.0) && waiting.iter().all(|w| *w <= size && w % 8.0 == 0.0),
        "bytes waiting while the burst was read: {waiting:?} of {size}"
    );
    // Stopped only once it is all written: the final drain reads without giving the outputs
    // their turn.
    settle(before + 32_000);
    let run = agent.stop();
    let file = &run.stats["exporters"]["export-file"];
    assert_eq!(file["spooled"], 0, "spooled: {file}");
    assert_eq!(file["dropped"], 0, "{file}");
    assert_eq!(run.stats["ringbuf_drops"]["total"], 0, "{}", run.stats);
    let store = &run.stats["store"];
    // Under emulation (the VM matrix runs this file too) the store's writer is tens of times
    // slower than the loop's short turns behind it, and sheds by design; on a real CPU it
    // keeps up with the burst.
    if vigil_tests::kernels::current() == vigil_tests::kernels::HOST {
        assert_eq!(store["shed"], 0, "the store shed: {store}");
    } else {
        eprintln!("the store under emulation: {store}");
    }
}
