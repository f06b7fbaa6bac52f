//! The OpenTelemetry sink against a real collector, rotel (`make test-deps` fetches
//! `rotel-agent` into target/tools from its PyPI wheel), on 127.0.0.1: vigil exports OTLP/gRPC
//! to rotel, rotel forwards what it received over OTLP/HTTP to a receiver in this test, and the
//! log records are decoded there with the OTLP protobuf types and checked field by field. The
//! collector is then stopped while events keep coming, and started again: every one arrives.

#[path = "support/common.rs"]
mod common;
#[path = "support/http.rs"]
#[allow(dead_code)]
mod http;

use std::{
    collections::HashSet,
    io::Read,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{exec_event, free_port, tool, wait_for, wait_listening, Dir, Server};
use http::HttpServer;
use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{any_value::Value, KeyValue},
    logs::v1::LogRecord,
    resource::v1::Resource,
};
use prost::Message;
use vigil_exporters::{config::ExportersConfig, Exporters};

/// Where rotel forwards to: keeps every decoded export request.
struct Receiver {
    server: HttpServer,
    requests: Arc<Mutex<Vec<ExportLogsServiceRequest>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let kept = requests.clone();
        let server = HttpServer::start(Arc::new(move |req: &http::Request| {
            if !req.line.starts_with("POST /v1/logs ") {
                return (404, String::new());
            }
            let mut body = req.body.clone();
            if req.header("content-encoding") == Some("gzip") {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut out)
                    .unwrap();
                body = out;
            }
            match ExportLogsServiceRequest::decode(&body[..]) {
                Ok(r) => {
                    kept.lock().unwrap().push(r);
                    (200, String::new())
                }
                Err(e) => (400, format!("{{\"error\":\"{e}\"}}")),
            }
        }));
        Receiver { server, requests }
    }

    /// Every log record received, with its resource.
    fn records(&self) -> Vec<(Resource, LogRecord)> {
        let mut out = Vec::new();
        for req in self.requests.lock().unwrap().iter() {
            for rl in &req.resource_logs {
                for sl in &rl.scope_logs {
                    assert_eq!(sl.scope.as_ref().unwrap().name, "vigil");
                    for lr in &sl.log_records {
                        out.push((rl.resource.clone().unwrap_or_default(), lr.clone()));
                    }
                }
            }
        }
        out
    }
}

fn start_rotel(dir: &Dir, grpc: u16, forward_to: &str) -> Server {
    let http = free_port();
    let child = Command::new(tool("rotel-agent"))
        .arg("start")
        .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
        .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
        .args([
            "--otlp-receiver-traces-disabled",
            "--otlp-receiver-metrics-disabled",
        ])
        .args(["--exporter", "otlp", "--otlp-exporter-endpoint", forward_to])
        .args(["--otlp-exporter-protocol", "http"])
        .args(["--otlp-exporter-compression", "none"])
        .args(["--batch-timeout", "100ms"])
        .arg("--pid-file")
        .arg(dir.join("rotel.pid"))
        .arg("--log-file")
        .arg(dir.join("rotel.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rotel-agent");
    let server = Server(child);
    wait_listening(grpc);
    server
}

fn exporters(dir: &Dir, grpc: u16) -> Exporters {
    std::fs::write(dir.join("auth"), "Bearer s3cret\n").unwrap();
    let yaml = format!(
        "spool_dir: {spool}\nsinks:\n- name: otel\n  type: otlp\n  endpoint: http://127.0.0.1:{grpc}\n  headers: {{authorization: {{file: {auth}}}}}\n  allow_plaintext: true\n  cluster: test-cluster\n  resource: {{deployment.environment: ci}}\n  batch_size: 200\n  linger_ms: 20\n  queue_size: 500\n  timeout_secs: 2\n",
        spool = dir.join("spool").display(),
        auth = dir.join("auth").display(),
    );
    let cfg: ExportersConfig = serde_yaml::from_str(&yaml).unwrap();
    let mut ex = Exporters::new(&cfg, "node-1").unwrap();
    ex.start();
    ex
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}

fn str_attr(attrs: &[KeyValue], key: &str) -> String {
    match attr(attrs, key) {
        Some(Value::StringValue(s)) => s.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

/// The event's arguments, from the record's body (the event's JSON).
fn arguments(lr: &LogRecord) -> String {
    let Some(Value::StringValue(body)) = lr.body.as_ref().and_then(|b| b.value.clone()) else {
        panic!("body is not a string: {:?}", lr.body)
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["process_exec"]["process"]["arguments"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_records_reach_a_real_collector() {
    let dir = Dir::new("otlp");
    let receiver = Receiver::start();
    let grpc = free_port();
    let _rotel = start_rotel(&dir, grpc, &receiver.server.endpoint());
    let mut ex = exporters(&dir, grpc);
    const N: usize = 500;
    for n in 0..N {
        ex.submit(&exec_event(
            &format!("exec-{}", n % 7),
            n as u32,
            "/usr/bin/curl",
            format!("-s https://example.org/{n}"),
        ));
    }
    let arrived = wait_for(|| receiver.records().len() >= N, 30).await;
    let stats = ex.stats();
    ex.shutdown(Duration::from_secs(5)).await;
    let log = std::fs::read_to_string(dir.join("rotel.log")).unwrap_or_default();
    assert!(
        arrived,
        "{} of {N} records; sink {stats}; rotel log:\n{log}",
        receiver.records().len()
    );

    let records = receiver.records();
    let (resource, _) = &records[0];
    for (key, want) in [
        ("service.name", "vigil"),
        ("host.name", "node-1"),
        ("k8s.node.name", "node-1"),
        ("k8s.cluster.name", "test-cluster"),
        ("deployment.environment", "ci"),
        ("os.type", "linux"),
    ] {
        assert_eq!(str_attr(&resource.attributes, key), want, "resource {key}");
    }
    let mut seen = HashSet::new();
    for (_, lr) in &records {
        assert_eq!(
            lr.time_unix_nano, 1_795_600_800_500_000_000,
            "the event's time"
        );
        assert!(lr.observed_time_unix_nano > lr.time_unix_nano);
        assert_eq!(lr.severity_text, "INFO");
        assert_eq!(str_attr(&lr.attributes, "event.name"), "process_exec");
        // The process by OpenTelemetry's semantic conventions.
        assert_eq!(
            str_attr(&lr.attributes, "process.executable.path"),
            "/usr/bin/curl"
        );
        assert_eq!(str_attr(&lr.attributes, "process.executable.name"), "curl");
        assert!(str_attr(&lr.attributes, "vigil.exec_id").starts_with("exec-"));
        let args = arguments(lr);
        let n: usize = args.rsplit('/').next().unwrap().parse().unwrap();
        assert_eq!(
            str_attr(&lr.attributes, "vigil.exec_id"),
            format!("exec-{}", n % 7)
        );
        seen.insert(n);
    }
    assert_eq!(seen.len(), N, "every event once at least");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_restart_loses_nothing() {
    let dir = Dir::new("otlp-outage");
    let receiver = Receiver::start();
    let grpc = free_port();
    let mut rotel = Some(start_rotel(&dir, grpc, &receiver.server.endpoint()));
    let mut ex = exporters(&dir, grpc);
    const N: usize = 5_000;
    for n in 0..N {
        if n == N / 5 {
            rotel.take().unwrap().terminate();
        }
        if n == N / 2 {
            // Long enough for exports to fail and be retried.
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        if n == N * 4 / 5 {
            rotel = Some(start_rotel(&dir, grpc, &receiver.server.endpoint()));
        }
        ex.submit(&exec_event(
            "exec-1",
            1,
            "/usr/bin/true",
            format!("event /{n}"),
        ));
        if n % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let unique = || {
        receiver
            .records()
            .iter()
            .map(|(_, lr)| arguments(lr))
            .collect::<HashSet<_>>()
            .len()
    };
    let arrived = wait_for(|| unique() >= N, 60).await;
    let stats = ex.stats();
    ex.shutdown(Duration::from_secs(5)).await;
    let received = receiver.records().len();
    eprintln!(
        "otlp restart: {received} received, {} unique of {N}, sink {stats}",
        unique()
    );
    // Why any were refused, in the collector's words: a restart must only ever be retried.
    let reasons: HashSet<String> =
        std::fs::read_to_string(dir.join("spool/otel/dead-letter.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["reason"].to_string())
            .collect();
    assert!(
        arrived,
        "{} of {N} events arrived; refused because {reasons:?}",
        unique()
    );
    assert_eq!(
        stats["otel"]["dead_lettered"], 0,
        "{stats}; refused because {reasons:?}"
    );
    assert!(stats["otel"]["retries"].as_u64().unwrap() > 0, "{stats}");
    drop(rotel);
}
