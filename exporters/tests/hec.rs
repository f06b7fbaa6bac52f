//! The Splunk HEC sink and the shared pipeline against the HEC test server
//! (`support/hec.rs`): the bytes we send, what each documented status code leads to, and an
//! outage in the middle of 100,000 events; a hostile server's answers cost one short, escaped
//! reason.

#[path = "support/common.rs"]
mod common;
#[path = "support/hec.rs"]
mod hec;
#[path = "support/http.rs"]
#[allow(dead_code)]
mod http;

use std::{collections::HashSet, time::Duration};

use common::{exec_event, rss_kib, wait_for, Dir};

use hec::HecServer;
use vigil_events::Event;
use vigil_exporters::{
    config::ExportersConfig,
    record::Record,
    sinks::{
        splunk::{SplunkConfig, SplunkHecSink},
        Delivery,
    },
    Exporters,
};

/// `len` characters that do not compress away, different per event.
fn noise(n: usize, len: usize) -> String {
    let mut x = n as u64 ^ 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'a' + (x % 26) as u8) as char
        })
        .collect()
}

fn event(n: usize, pad: usize) -> Event {
    let mut e = exec_event(
        "exec",
        n as u32,
        "/usr/bin/true",
        format!("event-{n} {}", noise(n, pad)),
    );
    e.node_name = "test-node".into();
    e
}

fn config(dir: &Dir, endpoint: &str, extra: &str) -> ExportersConfig {
    std::fs::write(dir.0.join("token"), "t0k3n\n").unwrap();
    let yaml = format!(
        "spool_dir: {spool}\nsinks:\n- name: splunk\n  type: splunk_hec\n  endpoint: {endpoint}\n  token: {{file: {token}}}\n  allow_plaintext: true\n  index: security\n  sourcetype: vigil:event\n{extra}",
        spool = dir.0.join("spool").display(),
        token = dir.0.join("token").display(),
    );
    serde_yaml::from_str(&yaml).unwrap()
}

fn ids(server: &HecServer) -> Vec<String> {
    server
        .events()
        .iter()
        .filter_map(|e| {
            e.as_str()
                .or_else(|| e["event"]["process_exec"]["process"]["arguments"].as_str())
        })
        .map(|a| a.split(' ').next().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_carry_the_splunk_envelope_and_headers() {
    let server = HecServer::start("t0k3n");
    let dir = Dir::new("envelope");
    let fields = "  fields:\n  - {event_set: [process_exec], fields: [process.ns, process.cap], action: exclude}\n";
    let mut ex = Exporters::new(&config(&dir, &server.endpoint(), fields), "test-node").unwrap();
    ex.start();
    for n in 0..3 {
        ex.submit(&event(n, 0));
    }
    ex.submit(&common::in_pod(event(3, 0)));
    ex.shutdown(Duration::from_secs(5)).await;
    let events = server.events();
    assert_eq!(events.len(), 4, "{events:#?}");
    assert_eq!(
        events[0]["fields"],
        serde_json::json!({"vigil.kind": "process_exec"}),
        "a process in no pod"
    );
    assert_eq!(
        events[3]["fields"],
        serde_json::json!({"vigil.kind": "process_exec", "k8s.namespace.name": "shop",
            "k8s.pod.name": "web-7d9f5c6b8-x2x4k", "k8s.container.name": "web",
            "k8s.workload.name": "web"})
    );
    assert_eq!(
        events[3]["event"]["process_exec"]["process"]["pod"]["name"],
        "web-7d9f5c6b8-x2x4k"
    );
    let e = &events[0];
    assert_eq!(e["time"], serde_json::json!(1_795_600_800.5));
    assert_eq!(e["host"], "test-node");
    assert_eq!(e["index"], "security");
    assert_eq!(e["sourcetype"], "vigil:event");
    assert_eq!(e["source"], "vigil");
    assert_eq!(e["event"]["node_name"], "test-node");
    let process = &e["event"]["process_exec"]["process"];
    assert_eq!(process["binary"], "/usr/bin/true");
    assert!(process.get("ns").is_none(), "field filter: {process}");
    assert!(process.get("process_credentials").is_some());
    let req = &server.requests()[0];
    let h = |k: &str| {
        req.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(h("authorization"), Some("Splunk t0k3n"));
    assert_eq!(h("content-encoding"), Some("gzip"));
    assert_eq!(req.raw[..2], [0x1f, 0x8b], "the body is gzip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_codes_lead_to_retry_split_or_dead_letter() {
    let server = HecServer::start("other-token");
    let dir = Dir::new("status");
    let mut ex = Exporters::new(
        &config(
            &dir,
            &server.endpoint(),
            "  batch_size: 50\n  linger_ms: 20\n",
        ),
        "n",
    )
    .unwrap();
    ex.start();
    // 403 (a wrong token) is retried until the token is right.
    for n in 0..10 {
        ex.submit(&event(n, 0));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(server.events().is_empty());
    assert!(server.requests().iter().any(|r| r.status == 403));
    server.set_token("t0k3n");
    // 503 and 429 are retried.
    server.force_status(503);
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.force_status(429);
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.force_status(0);
    assert!(wait_for(|| server.events().len() == 10, 15).await);
    // 413: batches are halved until they fit.
    server.set_max_body(1500);
    for n in 10..60 {
        ex.submit(&event(n, 100));
    }
    assert!(
        wait_for(|| server.events().len() == 60, 15).await,
        "{}",
        server.events().len()
    );
    assert!(server.requests().iter().any(|r| r.status == 413));
    server.set_max_body(0);
    // 400: refused for good, into the dead-letter file with the reason.
    server.reject_containing("event-99");
    ex.submit(&event(99, 0));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = ex.stats();
    ex.shutdown(Duration::from_secs(5)).await;
    let dead = std::fs::read_to_string(dir.0.join("spool/splunk/dead-letter.jsonl")).unwrap();
    assert!(
        dead.contains("event-99") && dead.contains("HEC 400"),
        "{dead}"
    );
    assert_eq!(stats["splunk"]["dead_lettered"], 1);
    assert!(stats["splunk"]["retries"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_keeps_memory_bounded() {
    const TOTAL: usize = 100_000;
    let mut server = HecServer::start("t0k3n");
    server.keep_ids_only();
    let dir = Dir::new("outage");
    let mut ex = Exporters::new(
        &config(
            &dir,
            &server.endpoint(),
            "  batch_size: 1000\n  linger_ms: 50\n  queue_size: 2000\n",
        ),
        "n",
    )
    .unwrap();
    ex.start();
    let rss = rss_kib;
    let before = rss();
    let mut peak = before;
    let (mut outage_start, mut outage_end) = (0, 0);
    for n in 0..TOTAL {
        if n == TOTAL / 5 {
            server.stop();
        }
        if n == TOTAL * 3 / 10 {
            outage_start = rss();
        }
        if n == TOTAL * 4 / 5 {
            outage_end = rss();
            server.restart();
        }
        ex.submit(&event(n, 2000));
        if n % 1000 == 0 {
            peak = peak.max(rss());
            tokio::task::yield_now().await;
        }
    }
    // Distinct ids: a batch resent across the outage arrives twice, and a count with
    // duplicates reaches the total before every event did.
    let got = || ids(&server).iter().collect::<HashSet<_>>().len();
    assert!(
        wait_for(|| got() >= TOTAL, 120).await,
        "{} of {TOTAL}",
        got()
    );
    let stats = ex.stats();
    ex.shutdown(Duration::from_secs(5)).await;
    let received = ids(&server);
    let unique: HashSet<&String> = received.iter().collect();
    assert_eq!(unique.len(), TOTAL, "every event arrived: {stats}");
    eprintln!(
        "outage: {} received, {} duplicates, {} spooled, peak RSS growth {} MiB, during the outage {} KiB",
        received.len(),
        received.len() - unique.len(),
        stats["splunk"]["spooled"],
        (peak - before) / 1024,
        outage_end.saturating_sub(outage_start)
    );
    assert!(stats["splunk"]["spooled"].as_u64().unwrap() > 0, "{stats}");
    // The events are ~2.4 KiB each: the 50,000 submitted in the middle of the outage would take
    // ~120 MiB in memory; they go to the spool and memory stays flat.
    assert!(
        outage_end.saturating_sub(outage_start) < 8 * 1024,
        "RSS grew {} KiB during the outage",
        outage_end.saturating_sub(outage_start)
    );
    // Over the whole run the test's own HEC server and the allocator's arenas add 60 to 95 MiB
    // (measured, before and after the output changes of issue 13); holding the events instead
    // of spooling them would take all 240 MiB of them. Half of that tells the two apart.
    let all_events_kib = (TOTAL * 2400 / 1024) as u64;
    assert!(
        peak - before < all_events_kib / 2,
        "RSS grew {} KiB, the events are {all_events_kib} KiB",
        peak - before
    );
    let left: u64 = std::fs::read_dir(dir.0.join("spool/splunk/spool"))
        .unwrap()
        .count() as u64;
    assert_eq!(left, 0, "the spool drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexer_acknowledgement_resends_what_was_never_indexed() {
    let server = HecServer::start("t0k3n");
    server.require_ack();
    server.lose_ack(2); // the second batch is answered 200 but never indexed
    let dir = Dir::new("ack");
    let extra = "  ack: true\n  ack_timeout_secs: 1\n  batch_size: 10\n  linger_ms: 20\n";
    let mut ex = Exporters::new(&config(&dir, &server.endpoint(), extra), "n").unwrap();
    ex.start();
    for n in 0..50 {
        ex.submit(&event(n, 0));
    }
    let unique = || ids(&server).into_iter().collect::<HashSet<_>>().len();
    let delivered = || ex.stats()["splunk"]["delivered"] == 50;
    let arrived = wait_for(|| unique() == 50 && delivered(), 30).await;
    let stats = ex.stats();
    ex.shutdown(Duration::from_secs(5)).await;
    assert!(arrived, "{} of 50 indexed; {stats}", unique());
    assert_eq!(ids(&server).len(), 50, "nothing indexed twice");
    assert_eq!(stats["splunk"]["delivered"], 50, "{stats}");
    assert!(stats["splunk"]["retries"].as_u64().unwrap() >= 1, "{stats}");
    let requests = server.requests();
    let channel = |r: &hec::HecRequest| {
        r.headers
            .iter()
            .find(|(n, _)| n == "x-splunk-request-channel")
            .map(|(_, v)| v.clone())
    };
    let first = channel(&requests[0]).expect("a channel");
    assert_eq!(first.len(), 36, "a UUID: {first}");
    assert!(requests
        .iter()
        .all(|r| channel(r).as_deref() == Some(&first)));
}

/// A 400 of megabytes for a batch of 500 gives the batch one reason of about 1 KiB (before,
/// each record held a copy of the body), and a 503 or 400 whose body forges a log line and
/// clears the terminal gives reasons without a newline or an ESC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_answer_costs_one_short_escaped_reason() {
    let server = HecServer::start("t0k3n");
    let dir = Dir::new("hec-hostile");
    std::fs::write(dir.join("token"), "t0k3n").unwrap();
    let yaml = format!(
        "endpoint: {}\ntoken: !file {}\nallow_plaintext: true\n",
        server.endpoint(),
        dir.join("token").display()
    );
    let cfg: SplunkConfig = serde_yaml::from_str(&yaml).unwrap();
    let mut sink = SplunkHecSink::new(cfg, "n").unwrap();
    let batch: Vec<Record> = (0..500).map(|n| Record::encode(&event(n, 0))).collect();
    let forged = "\nvigil: policy x removed (forged)\n\x1b[2J";
    server.force_answer(400, format!("{forged}{}", "e".repeat(4 << 20)));
    let Delivery::Partial { rejected, .. } = sink.deliver(&batch).await else {
        panic!("a 400 refuses the batch")
    };
    assert_eq!(rejected.len(), 500);
    let copies: HashSet<(*const u8, usize)> = rejected
        .iter()
        .map(|(_, why)| (why.as_ptr(), why.len()))
        .collect();
    assert_eq!(copies.len(), 1, "one reason for the whole batch");
    let refused = &*rejected[0].1;
    assert!(refused.len() <= 1536, "{} bytes", refused.len());
    server.force_answer(503, forged.to_string());
    let Delivery::Retry(retry) = sink.deliver(&batch[..1]).await else {
        panic!("a 503 is retried")
    };
    for why in [refused, &*retry] {
        assert!(!why.contains(['\n', '\x1b']), "{why:?}");
        assert!(why.contains("\\x0avigil: policy x removed"), "{why:?}");
    }
}
