//! The exporters' half of `make bench`: what it costs to encode an event and to deliver it, per
//! sink, to a local destination (a file; the Splunk HEC test server on loopback), on one core.
//! Tetragon spends about 57 µs of CPU to JSON-encode one event; vigil aims for under 2.

#[path = "../../../exporters/tests/support/hec.rs"]
#[allow(dead_code)]
mod hec;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use vigil_events::{Capabilities, Event, EventBody, Process, ProcessExec};
use vigil_exporters::{
    config::ExportersConfig,
    record::Record,
    sinks::file::{FileConfig, FileSink},
    Exporters,
};

const EVENTS: usize = 100_000;

/// A process_exec as the agent writes it: a process and its parent with credentials,
/// namespaces, capabilities and a cgroup.
fn event(n: usize) -> Event {
    let proc = |pid: u32, binary: &str, args: String| Process {
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
    };
    Event {
        body: EventBody::ProcessExec(ProcessExec {
            process: Arc::new(proc(
                10_000 + n as u32,
                "/usr/bin/curl",
                format!("-s https://example.org/api/v1/items/{n} -H \"Accept: application/json\""),
            )),
            parent: Some(Arc::new(proc(9_999, "/usr/bin/bash", "-l".into()))),
            ancestors: vec![],
        }),
        node_name: "node-1".into(),
        time: "2026-11-25T10:00:01.000000001Z".into(),
    }
}

fn cpu_seconds() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn main() {
    let events: Vec<Event> = (0..EVENTS).map(event).collect();
    println!(
        "| exporter (one core, {EVENTS} events) | events/s | CPU per event | bytes per event |"
    );
    println!("|---|---|---|---|");

    // Encoding alone: what every sink pays once per event. Each record is dropped before the
    // next is made, as in the agent, where records do not pile up.
    let cpu = cpu_seconds();
    let start = Instant::now();
    let mut total = 0usize;
    for e in &events {
        total += std::hint::black_box(Record::encode(e)).json.len();
    }
    let (wall, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let bytes = total / EVENTS;
    let records: Vec<Record> = events.iter().map(Record::encode).collect();
    println!(
        "| JSON encoding (`Record::encode`) | {:.0} | {:.2} µs | {bytes} |",
        EVENTS as f64 / wall,
        cpu * 1e6 / EVENTS as f64
    );

    // The file sink: encoded records appended in batches of 500.
    let dir = std::env::temp_dir().join(format!("vigil-bench-exp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut sink = FileSink::new(FileConfig {
        path: dir.join("events.jsonl"),
        max_size_mb: 0,
        max_age_hours: 0,
        max_backups: 1,
        compress: false,
        mode: 0o600,
    });
    let cpu = cpu_seconds();
    let start = Instant::now();
    for chunk in records.chunks(500) {
        sink.deliver(chunk);
    }
    let (wall, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    println!(
        "| file sink, batches of 500 (encoded records) | {:.0} | {:.2} µs | {} |",
        EVENTS as f64 / wall,
        cpu * 1e6 / EVENTS as f64,
        bytes + 1
    );

    // Splunk HEC through the whole pipeline (redaction off, filters none, gzip on) to the test
    // server on loopback; the server runs in this process, so the rate is an upper bound on
    // what the pipeline costs, not on what a real Splunk takes.
    let server = hec::HecServer::start("t");
    server.keep_ids_only();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), "t").unwrap();
    let yaml = format!(
        "spool_dir: {}\nsinks:\n- name: hec\n  type: splunk_hec\n  endpoint: {}\n  token: {{file: {}}}\n  batch_size: 1000\n  linger_ms: 20\n  queue_size: 200000\n",
        dir.join("spool").display(),
        server.endpoint(),
        dir.join("token").display()
    );
    let cfg: ExportersConfig = serde_yaml::from_str(&yaml).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (wall, sent) = rt.block_on(async {
        let mut ex = Exporters::new(&cfg, "node-1").unwrap();
        ex.start();
        let start = Instant::now();
        for e in &events {
            ex.submit(e);
        }
        while server.count() < EVENTS {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let wall = start.elapsed().as_secs_f64();
        ex.shutdown(Duration::from_secs(5)).await;
        let sent: usize = server.requests().len();
        (wall, sent)
    });
    println!(
        "| Splunk HEC pipeline (encode, queue, batch of 1000, gzip, HTTP to a local server) | {:.0} | - | {bytes} ({sent} requests) |",
        EVENTS as f64 / wall
    );
    let _ = std::fs::remove_dir_all(&dir);
}
