//! vigil's events as Elasticsearch receives them: every event the end-to-end run kept, on the
//! host and in the VM (`VIGIL_EVENT_ARCHIVE`, see tests/src/lib.rs), goes through the real
//! Elasticsearch sink to the test server of the exporters' tests, which checks each document as
//! a strict cluster would: against the ECS definitions of the fields vigil writes (names, types,
//! allowed values, categories and their types) and against the index template the sink
//! installed. `make test` runs this last, with the Tetragon schema check.
//!
//! Host only: the archive is the host's, the VM's events included.

#[path = "../../exporters/tests/support/elastic.rs"]
#[allow(dead_code)]
mod elastic;
#[path = "../../exporters/tests/support/http.rs"]
#[allow(dead_code)]
mod http;

use std::{collections::BTreeMap, path::PathBuf};

use vigil_events::Event;
use vigil_exporters::{
    record::Record,
    sinks::{
        elastic::{ElasticConfig, ElasticSink},
        Delivery,
    },
};
use vigil_tests::{TempDir, EVENT_ARCHIVE_VAR};

#[test]
fn every_archived_event_of_the_end_to_end_run_makes_an_ecs_document() {
    let archive = std::env::var_os(EVENT_ARCHIVE_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!("{EVENT_ARCHIVE_VAR} is not set: this test checks the archive of a whole run, which make test keeps and checks last")
        });
    let text = std::fs::read_to_string(&archive).unwrap_or_else(|e| {
        panic!(
            "{EVENT_ARCHIVE_VAR}={}: {e} (run the scenarios first, as make test does)",
            archive.display()
        )
    });
    let events: Vec<Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!events.is_empty(), "the archive holds no event");

    let server = elastic::ElasticServer::start("k3y");
    let dir = TempDir::new("ecs-documents");
    let key = dir.path().join("key");
    std::fs::write(&key, "k3y").unwrap();
    let cfg: ElasticConfig = serde_yaml::from_str(&format!(
        "endpoint: {}\napi_key: !file {}\nallow_plaintext: true\n",
        server.endpoint(),
        key.display()
    ))
    .unwrap();
    let mut sink = ElasticSink::new(cfg).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let records: Vec<Record> = events.iter().map(Record::encode).collect();
    for batch in records.chunks(500) {
        match runtime.block_on(sink.deliver(batch)) {
            Delivery::Delivered => {}
            other => {
                let v = server.violations();
                panic!(
                    "{} documents are not ECS as vigil's template maps it ({other:?}); the first: {:#?}",
                    v.len(),
                    v.iter().take(3).collect::<Vec<_>>()
                );
            }
        }
    }

    assert_eq!(server.violations(), vec![]);
    let docs = server.docs();
    assert_eq!(docs.len(), events.len(), "every event made one document");
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for r in &records {
        *by_kind.entry(r.kind.to_string()).or_default() += 1;
    }
    for kind in [
        "process_exec",
        "process_exit",
        "process_kprobe",
        "process_lsm",
        "process_alert",
    ] {
        assert!(
            by_kind.contains_key(kind),
            "the run wrote no {kind}, so its documents went unchecked: {by_kind:?}"
        );
    }
    let (index, _) = &docs[0];
    assert_eq!(index, "logs-vigil.events-default");
    eprintln!("{} documents, every one ECS: {by_kind:?}", docs.len());
}
