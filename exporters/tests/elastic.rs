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
        "spool_dir: {}\nsinks:\n- name: es\n  type: elasticsearch\n  endpoint: {}\n  api_key: {{file: {}}}\n  data_stream: false\n  index: vigil\n  linger_ms: 50\n",
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
