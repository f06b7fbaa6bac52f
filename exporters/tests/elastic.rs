//! The Elasticsearch sink against the test server (`support/elastic.rs`): the index template,
//! ECS documents through `_bulk`, and a bulk response with partial failures (the 429 item alone
//! is retried; the 400 item goes to the dead-letter file), and a hostile server: bodies of many
//! megabytes and forged log lines cost the agent a clipped, escaped reason shared by the batch.

#[path = "support/common.rs"]
mod common;
#[path = "support/elastic.rs"]
#[allow(dead_code)] // the shared HTTP plumbing has knobs only the HEC tests use
mod elastic;
#[path = "support/http.rs"]
#[allow(dead_code)]
mod http;

use std::{collections::HashSet, time::Duration};

use common::{exec_event, wait_for, Dir};

use vigil_events::Event;
use vigil_exporters::{
    config::ExportersConfig,
    record::Record,
    sinks::{
        elastic::{ElasticConfig, ElasticSink},
        Delivery,
    },
    Exporters,
};

fn event(args: &str) -> Event {
    exec_event("exec", 42, "/usr/bin/curl", args.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_with_ecs_documents_and_partial_failures() {
    let server = elastic::ElasticServer::start("k3y");
    let dir = Dir::new("es");
    std::fs::write(dir.join("key"), "k3y").unwrap();
    let yaml = format!(
        "spool_dir: {}\nsinks:\n- name: es\n  type: elasticsearch\n  endpoint: {}\n  api_key: {{file: {}}}\n  allow_plaintext: true\n  data_stream: false\n  index: vigil\n  linger_ms: 50\n",
        dir.join("spool").display(),
        server.endpoint(),
        dir.join("key").display()
    );
    let cfg: ExportersConfig = serde_yaml::from_str(&yaml).unwrap();
    let mut ex = Exporters::new(&cfg, "node-1").unwrap();
    ex.start();
    for args in [
        "-s https://a",
        "es-retry-me",
        "es-reject-me",
        "-s https://b",
    ] {
        ex.submit(&event(args));
    }
    wait_for(|| server.docs().len() >= 3, 5).await;
    let stats = ex.stats();
    ex.shutdown(Duration::from_secs(5)).await;

    assert_eq!(server.violations(), vec![], "every document follows ECS");
    let templates = server.templates();
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].0, "vigil-vigil");
    let t = &templates[0].1["template"];
    assert_eq!(t["mappings"]["date_detection"], false);
    assert_eq!(t["settings"]["index.lifecycle.name"], "logs");
    assert_eq!(
        templates[0].1["index_patterns"],
        serde_json::json!(["vigil-*"])
    );
    let docs = server.docs();
    let args: Vec<&str> = docs
        .iter()
        .filter_map(|(_, d)| d["process"]["args"][1].as_str())
        .collect();
    assert_eq!(docs.len(), 3, "{docs:#?}");
    assert!(
        args.contains(&"es-retry-me"),
        "the 429 item was retried: {args:?}"
    );
    assert!(!args.contains(&"es-reject-me"));
    assert!(server.bulk_requests() >= 2);
    let (index, d) = &docs[0];
    assert_eq!(index, "vigil-2026.11.25");
    assert_eq!(d["@timestamp"], "2026-11-25T10:00:00.5Z");
    assert_eq!(d["event"]["category"], serde_json::json!(["process"]));
    assert_eq!(d["process"]["executable"], "/usr/bin/curl");
    assert_eq!(d["process"]["pid"], 42);
    assert_eq!(d["user"]["id"], "1000");
    assert_eq!(d["host"]["name"], "node-1");
    let dead = std::fs::read_to_string(dir.join("spool/es/dead-letter.jsonl")).unwrap();
    assert!(
        dead.contains("es-reject-me") && dead.contains("mapper_parsing_exception"),
        "{dead}"
    );
    assert_eq!(stats["es"]["dead_lettered"], 1);
}

/// A bulk response that does not describe the batch (more items than documents, items without
/// a status, no items at all) is retried, never indexed into: the sink task survives it and the
/// records arrive once the server answers properly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_bulk_response_is_retried_and_never_kills_the_sink() {
    let server = elastic::ElasticServer::start("k3y");
    let dir = Dir::new("es-malformed");
    std::fs::write(dir.join("key"), "k3y").unwrap();
    let yaml = format!(
        "spool_dir: {}\nsinks:\n- name: es\n  type: elasticsearch\n  endpoint: {}\n  api_key: {{file: {}}}\n  allow_plaintext: true\n  linger_ms: 50\n",
        dir.join("spool").display(),
        server.endpoint(),
        dir.join("key").display()
    );
    let bad =
        |status: u64| serde_json::json!({"create": {"status": status, "error": {"type": "x"}}});
    // Positions past the end of a one-document batch.
    server
        .respond_next(serde_json::json!({"errors": true, "items": [bad(201), bad(400), bad(429)]}));
    // Items without a status.
    server.respond_next(serde_json::json!({"errors": true, "items": [{"create": {}}]}));
    // No items at all.
    server.respond_next(serde_json::json!({"errors": true}));
    let cfg: ExportersConfig = serde_yaml::from_str(&yaml).unwrap();
    let mut ex = Exporters::new(&cfg, "node-1").unwrap();
    ex.start();
    ex.submit(&event("-s https://after-the-bad-answers"));
    assert!(
        wait_for(|| !server.docs().is_empty(), 20).await,
        "the record arrived after the malformed responses"
    );
    let stats = ex.shutdown(Duration::from_secs(5)).await;
    assert_eq!(server.docs().len(), 1);
    assert_eq!(server.bulk_requests(), 4);
    assert_eq!(stats["es"]["delivered"], 1, "{stats}");
    assert_eq!(stats["es"]["dead_lettered"], 0, "{stats}");
    assert!(stats["es"]["retries"].as_u64().unwrap() >= 3, "{stats}");
}

/// An Elasticsearch sink (alone, without the pipeline) for `server`.
fn sink(server: &elastic::ElasticServer, dir: &Dir) -> ElasticSink {
    std::fs::write(dir.join("key"), "k3y").unwrap();
    let yaml = format!(
        "endpoint: {}\napi_key: !file {}\nallow_plaintext: true\n",
        server.endpoint(),
        dir.join("key").display()
    );
    ElasticSink::new(serde_yaml::from_str::<ElasticConfig>(&yaml).unwrap()).unwrap()
}

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record::encode(&event(&format!("-s https://{i}"))))
        .collect()
}

/// Most bytes a reason holds: about 1 KiB of the peer's text and the agent's words around it.
const REASON_MAX: usize = 1536;

/// A 400 with a body of megabytes, for a batch of 500: one reason of at most ~1 KiB of the
/// body, shared by every record (before, each record held its own copy of the whole body:
/// gigabytes for one batch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_of_megabytes_gives_the_batch_one_short_shared_reason() {
    let server = elastic::ElasticServer::start("k3y");
    let dir = Dir::new("es-huge-400");
    let mut sink = sink(&server, &dir);
    server.respond_next_raw(400, "e".repeat(4 << 20));
    let Delivery::Partial { retry, rejected } = sink.deliver(&records(500)).await else {
        panic!("a 400 refuses the batch")
    };
    assert!(retry.is_empty());
    assert_eq!(rejected.len(), 500);
    let copies: HashSet<(*const u8, usize)> = rejected
        .iter()
        .map(|(_, why)| (why.as_ptr(), why.len()))
        .collect();
    let held: usize = copies.iter().map(|(_, len)| len).sum();
    assert_eq!(copies.len(), 1, "one reason for the whole batch");
    assert!(held <= REASON_MAX, "{held} bytes of reasons");
    assert!(
        rejected[0].1.starts_with("bulk 400: eee"),
        "{}",
        rejected[0].1
    );
}

/// Through the pipeline: the refused records of a batch answered by a 400 of megabytes are all
/// in the dead-letter file, each line short (before, the batch's entries exceeded the file's
/// cap together, and every record was dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_of_megabytes_leaves_short_dead_letters() {
    let server = elastic::ElasticServer::start("k3y");
    let dir = Dir::new("es-huge-dead");
    std::fs::write(dir.join("key"), "k3y").unwrap();
    let yaml = format!(
        "spool_dir: {}\nsinks:\n- name: es\n  type: elasticsearch\n  endpoint: {}\n  api_key: {{file: {}}}\n  allow_plaintext: true\n  batch_size: 50\n  linger_ms: 300\n",
        dir.join("spool").display(),
        server.endpoint(),
        dir.join("key").display()
    );
    server.respond_next_raw(400, "e".repeat(3 << 20));
    let cfg: ExportersConfig = serde_yaml::from_str(&yaml).unwrap();
    let mut ex = Exporters::new(&cfg, "node-1").unwrap();
    ex.start();
    for i in 0..50 {
        ex.submit(&event(&format!("-s https://{i}")));
    }
    let settled = |s: &serde_json::Value| {
        ["delivered", "dead_lettered", "dead_letter_dropped"]
            .iter()
            .map(|k| s["es"][k].as_u64().unwrap_or(0))
            .sum::<u64>()
            == 50
    };
    wait_for(|| settled(&ex.stats()), 10).await;
    let stats = ex.shutdown(Duration::from_secs(5)).await;
    assert!(settled(&stats), "{stats}");
    assert_eq!(stats["es"]["dead_letter_dropped"], 0, "{stats}");
    let dead_lettered = stats["es"]["dead_lettered"].as_u64().unwrap();
    assert!(dead_lettered > 0, "{stats}");
    let dead = std::fs::read_to_string(dir.join("spool/es/dead-letter.jsonl")).unwrap();
    assert_eq!(dead.lines().count() as u64, dead_lettered);
    let longest = dead.lines().map(str::len).max().unwrap();
    assert!(
        longest <= REASON_MAX + 1024,
        "a dead letter of {longest} bytes"
    );
}

/// A 200 whose body is larger than the sink reads for a batch is not parsed: the batch is
/// retried, with the reason (`create` makes the resend safe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_response_beyond_its_bound_is_retried_unread() {
    let server = elastic::ElasticServer::start("k3y");
    let dir = Dir::new("es-huge-200");
    let mut sink = sink(&server, &dir);
    let huge = serde_json::json!({"errors": false, "pad": "p".repeat(12 << 20)});
    server.respond_next(huge);
    let Delivery::Retry(why) = sink.deliver(&records(1)).await else {
        panic!("an oversized bulk response is retried")
    };
    assert!(why.contains("larger than"), "{why}");
    assert!(why.len() <= REASON_MAX, "{why}");
    assert_eq!(sink.deliver(&records(1)).await, Delivery::Delivered);
}

/// A server's text cannot forge agent log lines or drive the terminal: newlines and escapes in
/// a body are escaped in the reason that is logged (retry) or dead-lettered (refusal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_log_lines_and_terminal_escapes_from_the_server_are_escaped() {
    let server = elastic::ElasticServer::start("k3y");
    let dir = Dir::new("es-forged");
    let mut sink = sink(&server, &dir);
    let forged = "\nvigil: policy x removed (forged)\n\x1b[2J\u{202e}";
    server.respond_next_raw(503, forged.to_string());
    server.respond_next_raw(400, forged.to_string());
    let Delivery::Retry(retry) = sink.deliver(&records(2)).await else {
        panic!("a 503 is retried")
    };
    let Delivery::Partial { rejected, .. } = sink.deliver(&records(2)).await else {
        panic!("a 400 refuses the batch")
    };
    for why in [&*retry, &*rejected[0].1, &*rejected[1].1] {
        assert!(
            !why.contains(['\n', '\x1b', '\u{202e}']),
            "{why:?} holds a control character"
        );
        assert!(why.contains("\\x0avigil: policy x removed"), "{why:?}");
    }
}
