//! The agent's gRPC API from outside: Python's grpcio (a client written elsewhere, stubs
//! generated from our .proto in the test), the `vigil` CLI, mutual TLS with roles, and a
//! client that stops reading.

use std::{
    io::{BufRead, BufReader},
    os::unix::{fs::PermissionsExt, process::ExitStatusExt},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use vigil_tests::{
    api_client::python, certs::TestCa, require_root, rules_dir, vigil_bin, Agent, TempDir,
};

fn unix_target(agent: &Agent) -> String {
    format!("unix://{}", agent.socket.display())
}

/// A policy that kills a process opening `file`.
fn deny_policy(dir: &Path, name: &str, file: &Path) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: {name}\nspec:\n  lsmhooks:\n  - hook: file_open\n    args:\n    - index: 0\n      type: file\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Equal\n        values:\n        - {}\n      matchActions:\n      - action: Override\n        argError: -1\n",
            file.display()
        ),
    )
    .unwrap();
    path
}

/// Whether `cat file` was stopped (killed, or refused).
fn cat_is_stopped(file: &Path) -> bool {
    let out = Command::new("/usr/bin/cat").arg(file).output().unwrap();
    out.status.signal() == Some(9) || !out.status.success()
}

#[test]
fn a_python_grpc_client_streams_filtered_events_adds_lists_and_deletes_a_policy_and_reflects() {
    require_root();
    let dir = TempDir::new("api-python");
    let agent = Agent::start(&[]);
    let target = unix_target(&agent);

    // The services, as grpcurl would list them.
    let (reflected, _) = python(&[&target, "reflect"]);
    let services: Vec<&str> = reflected["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for s in [
        "vigil.v1.Vigil",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(services.contains(&s), "{s} not in {services:?}");
    }
    assert_eq!(reflected["vigil_file"], "vigil/v1/vigil.proto");

    // A filtered stream: only the marked echo's events reach the client.
    let mark = format!("api-python-{}", std::process::id());
    let stream = {
        let target = target.clone();
        let mark = mark.clone();
        std::thread::spawn(move || python(&[&target, "stream", "/echo$", &mark, "3"]))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stream.is_finished() && Instant::now() < deadline {
        Command::new("/bin/echo").arg(&mark).output().unwrap();
        Command::new("/bin/true").arg(&mark).output().unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let (events, out) = stream.join().unwrap();
    assert!(out.status.success(), "{events}");
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 3, "{events:#?}");
    for e in events {
        assert!(e["binary"].as_str().unwrap().ends_with("/echo"), "{e}");
        let body = e["event"]["process_exec"]
            .as_object()
            .or(e["event"]["process_exit"].as_object())
            .unwrap_or_else(|| panic!("not an exec or exit: {e}"));
        assert!(body["process"]["arguments"]
            .as_str()
            .unwrap()
            .contains(&mark));
        assert_eq!(body["process"]["exec_id"], e["exec_id"]);
    }

    // A policy added, listed, in force, deleted.
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "s").unwrap();
    let policy = deny_policy(dir.path(), "api-python-deny", &secret);
    let (added, out) = python(&[&target, "add", policy.to_str().unwrap()]);
    assert!(out.status.success(), "{added}");
    assert_eq!(added["state"], "enabled");
    assert_eq!(added["source"], "api");
    assert!(cat_is_stopped(&secret), "the added policy does not act");
    let (listed, _) = python(&[&target, "list"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "api-python-deny" && p["state"] == "enabled"),
        "{listed}"
    );
    let (_, out) = python(&[&target, "delete", "api-python-deny"]);
    assert!(out.status.success());
    let (listed, _) = python(&[&target, "list"]);
    assert!(
        !listed
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "api-python-deny"),
        "{listed}"
    );
    assert!(!cat_is_stopped(&secret), "the deleted policy still acts");
    // A policy that does not validate is refused with its field, and changes nothing.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: bad\nspec:\n  kprobes:\n  - call: sys_setuid\n    selectors:\n    - matchActions:\n      - action: Nope\n").unwrap();
    let (refused, out) = python(&[&target, "add", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(refused["code"], "INVALID_ARGUMENT", "{refused}");
    assert!(
        refused["details"].as_str().unwrap().contains("action"),
        "{refused}"
    );
    agent.stop();
}

/// A free TCP port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn mutual_tls_refuses_no_certificate_another_ca_an_expired_one_and_a_viewer_changing_policies() {
    require_root();
    let dir = TempDir::new("api-mtls");
    let ca = TestCa::new(dir.path(), "vigil");
    let other = TestCa::new(dir.path(), "other");
    let server = ca.server();
    let admin = ca.client("admin", "vigil-admin", false);
    let viewer = ca.client("viewer", "vigil-viewer", false);
    let expired = ca.client("expired", "vigil-admin", true);
    let stranger = other.client("stranger", "vigil-admin", false);
    let port = free_port();
    let config = dir.path().join("vigil.yaml");
    std::fs::write(
        &config,
        format!(
            "api:\n  listen: 127.0.0.1:{port}\n  tls:\n    cert: {}\n    key: {}\n    client_ca: {}\n  roles:\n    admin: [\"CN=vigil-admin\"]\n    viewer: [\"CN=vigil-viewer\"]\n",
            server.cert.display(),
            server.key.display(),
            ca.cert.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let agent = Agent::start(&["--config", config.to_str().unwrap()]);
    let target = format!("localhost:{port}");
    let ca_pem = ca.cert.to_str().unwrap();
    let call = |cert: Option<&vigil_tests::certs::CertFiles>, args: &[&str]| {
        let (c, k) = match cert {
            Some(c) => (c.cert.to_str().unwrap(), c.key.to_str().unwrap()),
            None => ("-", "-"),
        };
        let mut all = vec![target.as_str(), "--tls", ca_pem, c, k];
        all.extend_from_slice(args);
        python(&all).0
    };
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "s").unwrap();
    let policy = deny_policy(dir.path(), "api-mtls-deny", &secret);
    let add = ["add", policy.to_str().unwrap()];

    let refused = call(None, &["version"]);
    assert_eq!(refused["code"], "UNAUTHENTICATED", "{refused}");
    assert!(refused["details"]
        .as_str()
        .unwrap()
        .contains("no client certificate"));
    let refused = call(Some(&stranger), &["version"]);
    assert_eq!(refused["code"], "UNAUTHENTICATED", "{refused}");
    assert!(refused["details"].as_str().unwrap().contains("client CA"));
    let refused = call(Some(&expired), &add);
    assert_eq!(refused["code"], "UNAUTHENTICATED", "{refused}");
    assert!(refused["details"].as_str().unwrap().contains("expired"));
    let refused = call(Some(&viewer), &add);
    assert_eq!(refused["code"], "PERMISSION_DENIED", "{refused}");
    assert!(refused["details"].as_str().unwrap().contains("Admin"));
    let version = call(Some(&viewer), &["version"]);
    assert!(version["version"].is_string(), "{version}");
    let added = call(Some(&admin), &add);
    assert_eq!(added["state"], "enabled", "{added}");
    assert!(cat_is_stopped(&secret));

    // The CLI over TLS: a viewer reads the status, and is refused a change with exit 4.
    let cli = |cert: &vigil_tests::certs::CertFiles, args: &[&str]| {
        Command::new(vigil_bin())
            .args(args)
            .args(["--server", &format!("https://localhost:{port}")])
            .args(["--tls-ca", ca_pem])
            .args(["--tls-cert", cert.cert.to_str().unwrap()])
            .args(["--tls-key", cert.key.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let status = cli(&viewer, &["status"]);
    assert!(status.status.success(), "{status:?}");
    assert!(String::from_utf8_lossy(&status.stdout).contains("status    ok"));
    let denied = cli(&viewer, &["policy", "delete", "api-mtls-deny"]);
    assert_eq!(denied.status.code(), Some(4), "{denied:?}");
    let deleted = cli(&admin, &["policy", "delete", "api-mtls-deny"]);
    assert!(deleted.status.success(), "{deleted:?}");

    let log = agent.log_lines().join("\n");
    assert!(
        log.contains("api: refused /vigil.v1.Vigil/AddPolicy to CN=vigil-viewer from 127.0.0.1"),
        "{log}"
    );
    agent.stop();
}

/// `vigil events` beside the agent, its lines with the time each was read.
struct EventsCli {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl EventsCli {
    fn start(socket: &Path) -> EventsCli {
        let mut child = Command::new(vigil_bin())
            .args([
                "events",
                "-o",
                "compact",
                "--event-type",
                "lsm",
                "--event-type",
                "kprobe",
            ])
            .arg("--server")
            .arg(format!("unix://{}", socket.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let keep = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                keep.lock().unwrap().push((Instant::now(), line));
            }
        });
        EventsCli { child, lines }
    }

    /// When the first line containing every needle was read, waiting up to `wait`.
    fn seen(&self, needles: &[&str], wait: Duration) -> Option<Instant> {
        let deadline = Instant::now() + wait;
        loop {
            let found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|(_, l)| needles.iter().all(|n| l.contains(n)))
                .map(|(t, _)| *t);
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for EventsCli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(socket: &Path, args: &[&str]) -> Output {
    Command::new(vigil_bin())
        .args(args)
        .arg("--server")
        .arg(format!("unix://{}", socket.display()))
        .output()
        .unwrap()
}

#[test]
fn the_cli_shows_a_shadow_denial_within_a_second_and_a_policy_it_added_holds_after_a_restart() {
    require_root();
    let state = TempDir::new("api-state");
    let state_dir = state.path().join("state");
    let state_arg = state_dir.to_str().unwrap();
    let agent = Agent::start(&["--state-dir", state_arg]);
    let events = EventsCli::start(&agent.socket);
    // The stream is open once the agent counts it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&cli(&agent.socket, &["status"]).stdout)
        .contains("api       1 streams")
    {
        assert!(
            Instant::now() < deadline,
            "vigil events never opened its stream"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let policy = rules_dir().join("deny-credential-reads.yaml");
    let added = cli(&agent.socket, &["policy", "add", policy.to_str().unwrap()]);
    assert!(added.status.success(), "{added:?}");
    assert!(String::from_utf8_lossy(&added.stdout).contains("deny-credential-reads added: enabled"));
    // In force as soon as the command returned.
    assert!(
        cat_is_stopped(Path::new("/etc/shadow")),
        "the added policy does not act"
    );
    let denied_at = Instant::now();
    let shown = events
        .seen(
            &["/usr/bin/cat", "/etc/shadow", "deny-credential-reads"],
            Duration::from_secs(1),
        )
        .unwrap_or_else(|| {
            panic!(
                "no compact line of the denial within a second: {:#?}",
                events.lines.lock().unwrap()
            )
        });
    assert!(shown.saturating_duration_since(denied_at) <= Duration::from_secs(1));
    // The policy's first selector acted, and the list says so.
    let listed = cli(&agent.socket, &["policy", "list", "-o", "json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let counters = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "deny-credential-reads")
        .map(|p| p["counters"].clone())
        .unwrap_or_default();
    assert!(
        counters.as_array().is_some_and(|c| c
            .iter()
            .any(|c| c["selector"] == 0 && c["count"].as_u64() >= Some(1))),
        "{listed:#}"
    );
    drop(events);
    agent.stop();

    // The next agent enforces it before it says it is ready.
    let agent = Agent::start(&["--state-dir", state_arg]);
    assert!(
        cat_is_stopped(Path::new("/etc/shadow")),
        "the policy did not survive the restart"
    );
    let listed = cli(&agent.socket, &["policy", "list", "-o", "json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "deny-credential-reads"
                && p["source"] == "api"
                && p["state"] == "enabled"),
        "{listed:#}"
    );
    // Disabled, it stays disabled across a restart too.
    let disabled = cli(
        &agent.socket,
        &["policy", "disable", "deny-credential-reads"],
    );
    assert!(disabled.status.success(), "{disabled:?}");
    assert!(!cat_is_stopped(Path::new("/etc/shadow")));
    agent.stop();
    let agent = Agent::start(&["--state-dir", state_arg]);
    assert!(
        !cat_is_stopped(Path::new("/etc/shadow")),
        "a disabled policy came back enforcing"
    );
    let gone = cli(
        &agent.socket,
        &["policy", "delete", "deny-credential-reads"],
    );
    assert!(gone.status.success(), "{gone:?}");
    let missing = cli(
        &agent.socket,
        &["policy", "delete", "deny-credential-reads"],
    );
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    agent.stop();
}

#[test]
fn a_client_that_stops_reading_is_told_what_it_missed_and_the_other_outputs_lose_nothing() {
    use vigil_api::v1::{self, get_events_response::Response};
    require_root();
    let dir = TempDir::new("api-slow");
    let config = dir.path().join("vigil.yaml");
    std::fs::write(&config, "api:\n  stream_buffer: 16\n").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let agent = Agent::start(&["--config", config.to_str().unwrap()]);
    let mark = format!("api-slow-{}", std::process::id());
    const RUNS: usize = 2000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = vigil_api::ServerAddr::Unix(agent.socket.clone());
    let mut client = rt.block_on(vigil_api::connect(&addr, None)).unwrap();
    let request = v1::GetEventsRequest {
        allow_list: vec![v1::Filter {
            arguments_regex: vec![mark.clone()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut stream = rt
        .block_on(client.get_events(request))
        .unwrap()
        .into_inner();
    // The client reads nothing while the marked processes run.
    for _ in 0..RUNS {
        Command::new("/bin/true").arg(&mark).status().unwrap();
    }
    let (mut events, mut lost, mut total) = (0u64, 0u64, 0u64);
    rt.block_on(async {
        while let Ok(Ok(Some(m))) =
            tokio::time::timeout(Duration::from_secs(3), stream.message()).await
        {
            match m.response {
                Some(Response::Event(_)) => events += 1,
                Some(Response::Lost(l)) => {
                    lost += l.events;
                    total = l.total;
                }
                None => {}
            }
        }
    });
    assert!(
        lost > 0,
        "the slow client was told of no missed event ({events} read)"
    );
    assert_eq!(total, lost, "the running total disagrees with the messages");
    // Missed events are counted before the stream's filters (other processes' among them).
    assert!(
        events < 2 * RUNS as u64,
        "{events} read: nothing was missed"
    );
    assert!(
        events + lost >= 2 * RUNS as u64,
        "a marked exec or exit was neither sent nor counted as missed ({events} + {lost})"
    );
    let health = rt
        .block_on(client.get_health(v1::GetHealthRequest {}))
        .unwrap()
        .into_inner();
    assert!(health.api_events_missed >= lost, "{health:?}");
    drop(stream);
    let run = agent.stop();
    let execs = run
        .events
        .iter()
        .filter(|e| {
            e["process_exec"]["process"]["arguments"]
                .as_str()
                .is_some_and(|a| a.contains(&mark))
        })
        .count();
    assert_eq!(
        execs, RUNS,
        "the export file lost events to the slow client"
    );
}
