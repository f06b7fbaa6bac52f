//! The Elasticsearch sink against the test server (`support/elastic.rs`): the index template,
//! ECS documents through `_bulk`, and a bulk response with partial failures (the 429 item alone
//! is retried; the 400 item goes to the dead-letter file).

#[path = "support/common.rs"]
mod common;
#[path = "support/elastic.rs"]
#[allow(dead_code)] // the shared HTTP plumbing has knobs only the HEC tests use
mod elastic;
#[path = "support/http.rs"]
#[allow(dead_code)]
mod http;

use std::time::Duration;

use common::{exec_event, wait_for, Dir};

use vigil_events::Event;
use vigil_exporters::{config::ExportersConfig, Exporters};

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

    let templates = server.templates();
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].0, "vigil");
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
