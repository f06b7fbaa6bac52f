//! The exporters' half of `make bench`: what it costs to encode an event, and to encode and
//! deliver it through the whole pipeline to each sink's local destination: a file, the Splunk
//! HEC and Elasticsearch test servers (in this process), a real Kafka broker (tansu) and a real
//! OpenTelemetry collector (rotel, discarding what it receives), both on 127.0.0.1. Tetragon
//! spends about 57 µs of CPU to JSON-encode one event; vigil aims for under 2.

#[path = "../../../exporters/tests/support/common.rs"]
mod common;
#[path = "../../../exporters/tests/support/elastic.rs"]
#[allow(dead_code)]
mod elastic;
#[path = "../../../exporters/tests/support/hec.rs"]
#[allow(dead_code)]
mod hec;
#[path = "../../../exporters/tests/support/http.rs"]
#[allow(dead_code)]
mod http;

use common::{free_port, installed_tool, wait_listening, Server};
use std::{
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use vigil_events::{
    Arg, Capabilities, Event, EventBody, ExecId, FileArg, Process, ProcessExec, ProcessPolicy,
};
use vigil_exporters::{config::ExportersConfig, record::Record, Exporters};

const EVENTS: usize = 100_000;

/// A process as the agent's process cache holds it: credentials, namespaces, a cwd, flags.
fn process(pid: u32, binary: &str, args: String) -> Arc<Process> {
    Arc::new(Process {
        exec_id: ExecId::new("node-1", 1_000_000, pid),
        pid,
        tid: pid,
        uid: 1000,
        binary: binary.into(),
        arguments: args,
        cwd: "/home/dev/project".into(),
        flags: "execve clone".into(),
        start_time: "2026-11-25T10:00:00.123456789Z".into(),
        cap: Capabilities::default(),
        ..Default::default()
    })
}

fn wrap(body: EventBody) -> Event {
    Event {
        body,
        node_name: "node-1".into(),
        node_labels: Default::default(),
        time: "2026-11-25T10:00:01.000000001Z".into(),
    }
}

/// process_exec `n` of curl under `parent`.
fn exec(n: usize, parent: Arc<Process>) -> Event {
    let args = format!("-s https://example.org/api/v1/items/{n} -H \"Accept: application/json\"");
    wrap(EventBody::ProcessExec(ProcessExec {
        process: process(10_000 + n as u32, "/usr/bin/curl", args),
        parent: Some(parent),
        ancestors: vec![],
    }))
}

/// The three streams the encoding is measured on: process_exec events whose process and parent
/// are both new (nothing can be reused), process_exec events whose parents are 100 shells (as
/// the agent takes them from its process cache), and file-open policy events of 1,000 running
/// processes (each seen before).
fn streams() -> [(&'static str, Vec<Event>); 3] {
    let fresh = (0..EVENTS)
        .map(|n| exec(n, process(9_999, "/usr/bin/bash", "-l".into())))
        .collect();
    let shells: Vec<_> = (0..100)
        .map(|i| process(5_000 + i, "/usr/bin/bash", "-l".into()))
        .collect();
    let shared = (0..EVENTS)
        .map(|n| exec(n, shells[n % shells.len()].clone()))
        .collect();
    let running: Vec<_> = (0..1_000)
        .map(|n| {
            let p = process(20_000 + n as u32, "/usr/bin/rust-analyzer", String::new());
            (p, shells[n % shells.len()].clone())
        })
        .collect();
    let policy = (0..EVENTS)
        .map(|n| {
            let (p, parent) = &running[n % running.len()];
            wrap(EventBody::ProcessKprobe(Box::new(ProcessPolicy {
                path: String::new(),
                symbol: String::new(),
                offset: 0,
                process: p.clone(),
                parent: Some(parent.clone()),
                function_name: "security_file_open".into(),
                subsys: String::new(),
                event: String::new(),
                buildid: String::new(),
                args: vec![Arg::FileArg(FileArg::new(
                    format!("/home/dev/project/src/file{n}.rs"),
                    false,
                    0o100644,
                ))],
                return_arg: None,
                action: "KPROBE_ACTION_POST".into(),
                policy_name: "observe-source-reads".into(),
                message: String::new(),
                tags: vec![],
                outcome: "posted".into(),
                ancestors: vec![],
                return_action: String::new(),
                selector: None,
            })))
        })
        .collect();
    [
        (
            "process_exec, process and parent new (nothing reused)",
            fresh,
        ),
        ("process_exec, parents shared by 100 shells", shared),
        ("process_kprobe of 1,000 running processes", policy),
    ]
}

/// CPU seconds used by this thread (`RUSAGE_THREAD`) or the whole process (`RUSAGE_SELF`).
fn cpu_seconds(who: libc::c_int) -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    unsafe { libc::getrusage(who, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// The best of `passes` timed runs of `f` over `n` items: (items/s, CPU µs per item) of the run
/// with the least CPU, since on a shared machine the others include someone else's work.
fn best_of(passes: usize, n: usize, mut f: impl FnMut()) -> (f64, f64) {
    (0..passes)
        .map(|_| {
            let cpu = cpu_seconds(libc::RUSAGE_THREAD);
            let start = Instant::now();
            f();
            let (wall, cpu) = (
                start.elapsed().as_secs_f64(),
                cpu_seconds(libc::RUSAGE_THREAD) - cpu,
            );
            (n as f64 / wall, cpu * 1e6 / n as f64)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
}

/// Pushes `events` through an [`Exporters`] built from `sink_yaml` until its one sink has
/// delivered them all: (events/s, process CPU µs per event).
fn pipeline(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    sink_yaml: &str,
    events: &[Event],
) -> (f64, f64) {
    let yaml = format!(
        "spool_dir: {}\nsinks:\n- name: s\n  batch_size: 1000\n  linger_ms: 20\n  queue_size: 200000\n{sink_yaml}",
        dir.join("spool").display()
    );
    let cfg: ExportersConfig = serde_yaml::from_str(&yaml).unwrap();
    rt.block_on(async {
        let mut ex = Exporters::new(&cfg, "node-1").unwrap();
        ex.start();
        let cpu = cpu_seconds(libc::RUSAGE_SELF);
        let start = Instant::now();
        // The agent hands events over as they come, and the sink's task runs between them.
        for chunk in events.chunks(500) {
            for e in chunk {
                ex.submit(e);
            }
            tokio::task::yield_now().await;
        }
        let n = events.len() as u64;
        while ex.stats()["s"]["delivered"].as_u64().unwrap() < n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let (wall, cpu) = (
            start.elapsed().as_secs_f64(),
            cpu_seconds(libc::RUSAGE_SELF) - cpu,
        );
        ex.shutdown(Duration::from_secs(5)).await;
        (events.len() as f64 / wall, cpu * 1e6 / events.len() as f64)
    })
}

fn main() {
    // `vigil-bench-exporters local` stops after the file sink: no servers, for profilers.
    let local_only = std::env::args().nth(1).as_deref() == Some("local");
    let streams = streams();
    // `vigil-bench-exporters encode <0|1|2|none>` encodes one stream once, untimed: for
    // instruction counts under a profiler.
    if std::env::args().nth(1).as_deref() == Some("encode") {
        if let Some(Ok(i)) = std::env::args().nth(2).map(|a| a.parse::<usize>()) {
            for e in &streams[i].1 {
                std::hint::black_box(Record::encode(e));
            }
        }
        return;
    }
    let events = &streams[1].1;
    println!("| one core, {EVENTS} events | events/s | CPU per event | bytes per event |");
    println!("|---|---|---|---|");

    // Encoding alone: what every sink pays once per event. Each record is dropped before the
    // next is made, as in the agent, where records do not pile up. Each stream is encoded once
    // before it is timed, as the agent's stdout writer would have.
    for (name, stream) in &streams {
        let bytes = stream
            .iter()
            .map(|e| Record::encode(e).json.len())
            .sum::<usize>()
            / EVENTS;
        let (rate, cpu) = best_of(5, EVENTS, || {
            for e in stream {
                std::hint::black_box(Record::encode(e));
            }
        });
        println!(
            "| JSON encoding (`Record::encode`), {name} | {rate:.0} | {cpu:.2} µs | {bytes} |"
        );
    }

    // What the Elasticsearch and OTLP sinks add per record, apart from their servers: the ECS
    // document, and OpenTelemetry's attributes, each from the record's JSON.
    {
        use vigil_exporters::sinks::{ecs, semconv};
        let records: Vec<Record> = events.iter().map(Record::encode).collect();
        let host = ecs::HostInfo::read();
        let ctx = ecs::EcsContext::new(host.clone(), "vigil.events", Some("default"));
        let bytes = records
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.json).unwrap();
                serde_json::to_vec(&ecs::to_ecs(&v, &ctx)).unwrap().len()
            })
            .sum::<usize>()
            / EVENTS;
        let (rate, cpu) = best_of(5, EVENTS, || {
            for r in &records {
                let v: serde_json::Value = serde_json::from_slice(&r.json).unwrap();
                std::hint::black_box(serde_json::to_vec(&ecs::to_ecs(&v, &ctx)).unwrap());
            }
        });
        println!("| ECS document (`to_ecs`, parsed from the record and written), {} | {rate:.0} | {cpu:.2} µs | {bytes} |", streams[1].0);
        let (rate, cpu) = best_of(5, EVENTS, || {
            for r in &records {
                let v: serde_json::Value = serde_json::from_slice(&r.json).unwrap();
                std::hint::black_box(semconv::event_attributes(&v, &host));
            }
        });
        println!("| OpenTelemetry attributes (`semconv`, parsed from the record), {} | {rate:.0} | {cpu:.2} µs | - |", streams[1].0);
    }

    let dir = std::env::temp_dir().join(format!("vigil-bench-exp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret"), "t").unwrap();
    let secret = dir.join("secret").display().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let row = |name: &str, yaml: &str, events: &[Event]| {
        let (rate, cpu) = pipeline(&rt, &dir, yaml, events);
        println!("| {name} | {rate:.0} | {cpu:.2} µs | - |");
        let _ = std::fs::remove_dir_all(dir.join("spool"));
    };

    row(
        "file sink (encode, queue, batch, append)",
        &format!(
            "  type: file\n  path: {}\n  max_size_mb: 0\n  max_backups: 1\n",
            dir.join("events.jsonl").display()
        ),
        events,
    );

    if local_only {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }

    // The in-process test servers parse every request back: their CPU is in the figure.
    let hec = hec::HecServer::start("t");
    hec.keep_ids_only();
    row(
        "Splunk HEC (gzip, HTTP; includes the in-process test server)",
        &format!(
            "  type: splunk_hec\n  endpoint: {}\n  token: {{file: {secret}}}\n  allow_plaintext: true\n",
            hec.endpoint()
        ),
        events,
    );
    drop(hec);
    // The Elasticsearch test server keeps every document, parsed: a fifth of the events.
    let es = elastic::ElasticServer::start("t");
    row(
        "Elasticsearch (ECS documents, _bulk; includes the in-process test server; 20,000 events)",
        &format!("  type: elasticsearch\n  endpoint: {}\n  api_key: {{file: {secret}}}\n  data_stream: false\n  index: vigil\n  allow_plaintext: true\n", es.endpoint()),
        &events[..EVENTS / 5],
    );
    drop(es);

    match installed_tool("tansu") {
        Some(tansu) => {
            let port = free_port();
            let url = format!("tcp://127.0.0.1:{port}");
            let _broker = Server(
                Command::new(tansu)
                    .args([
                        "broker",
                        "--listener-url",
                        &url,
                        "--advertised-listener-url",
                        &url,
                    ])
                    .args(["--storage-engine", "memory://tansu/"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start tansu"),
            );
            wait_listening(port);
            rt.block_on(async {
                let client = rskafka::client::ClientBuilder::new(vec![format!("127.0.0.1:{port}")])
                    .build()
                    .await
                    .unwrap();
                client
                    .controller_client()
                    .unwrap()
                    .create_topic("vigil", 3, 1, 5_000)
                    .await
                    .unwrap();
            });
            row(
                "Kafka (gzip, 3 partitions, to a tansu broker on loopback)",
                &format!("  type: kafka\n  brokers: ['127.0.0.1:{port}']\n  topic: vigil\n  allow_plaintext: true\n"),
                events,
            );
        }
        None => println!("| Kafka | not measured: `make test-deps` fetches tansu | - | - |"),
    }

    match installed_tool("rotel-agent") {
        Some(rotel) => {
            let (grpc, http) = (free_port(), free_port());
            let _collector = Server(
                Command::new(rotel)
                    .arg("start")
                    .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
                    .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
                    .args(["--exporter", "blackhole"])
                    .arg("--pid-file")
                    .arg(dir.join("rotel.pid"))
                    .arg("--log-file")
                    .arg(dir.join("rotel.log"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start rotel-agent"),
            );
            wait_listening(grpc);
            row(
                "OpenTelemetry (OTLP/gRPC, gzip, to a rotel collector on loopback)",
                &format!(
                    "  type: otlp\n  endpoint: http://127.0.0.1:{grpc}\n  allow_plaintext: true\n"
                ),
                events,
            );
        }
        None => {
            println!(
                "| OpenTelemetry | not measured: `make test-deps` fetches rotel-agent | - | - |"
            )
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
