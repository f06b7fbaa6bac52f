//! A collector (or a proxy before it) that resets the stream whenever a request holds one
//! particular record: a gRPC server written here on `h2`, answering `LogsService/Export` as
//! the protocol says (a length-prefixed message, `grpc-status` in the trailers) and resetting
//! the stream with INTERNAL_ERROR when the request holds the poisoned record. The batch is
//! tried again a few times, then split, and that record alone is dead-lettered: everything
//! else arrives, and the sink is not held up behind it.

#[path = "support/common.rs"]
mod common;

use std::{
    collections::HashSet,
    io::Read,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use common::{exec_event, wait_for, Dir};
use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest, common::v1::any_value::Value,
};
use prost::Message;
use vigil_exporters::{config::ExportersConfig, Exporters};

const POISON: &str = "event /poison";

/// The records' bodies out of one gRPC request body (gzip or not).
fn bodies(data: &[u8]) -> Vec<String> {
    let (flag, len) = (
        data[0],
        u32::from_be_bytes(data[1..5].try_into().unwrap()) as usize,
    );
    let mut msg = data[5..5 + len].to_vec();
    if flag == 1 {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&msg[..])
            .read_to_end(&mut out)
            .unwrap();
        msg = out;
    }
    let req = ExportLogsServiceRequest::decode(&msg[..]).unwrap();
    req.resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .map(|lr| match lr.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(Value::StringValue(s)) => s.clone(),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Serves `LogsService/Export` on `listener`: keeps what it accepted, counts the resets.
async fn serve(
    listener: tokio::net::TcpListener,
    accepted: Arc<Mutex<Vec<String>>>,
    resets: Arc<Mutex<usize>>,
) {
    loop {
        let (sock, _) = listener.accept().await.unwrap();
        let (accepted, resets) = (accepted.clone(), resets.clone());
        tokio::spawn(async move {
            let Ok(mut conn) = h2::server::handshake(sock).await else {
                return;
            };
            while let Some(Ok((req, mut respond))) = conn.accept().await {
                let (accepted, resets) = (accepted.clone(), resets.clone());
                tokio::spawn(async move {
                    assert_eq!(
                        req.uri().path(),
                        "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
                    );
                    let mut body = req.into_body();
                    let mut data = Vec::new();
                    while let Some(chunk) = body.data().await {
                        let chunk = chunk.unwrap();
                        let _ = body.flow_control().release_capacity(chunk.len());
                        data.extend_from_slice(&chunk);
                    }
                    let got = bodies(&data);
                    if got.iter().any(|b| b.contains(POISON)) {
                        *resets.lock().unwrap() += 1;
                        respond.send_reset(h2::Reason::INTERNAL_ERROR);
                        return;
                    }
                    accepted.lock().unwrap().extend(got);
                    let head = http::Response::builder()
                        .status(200)
                        .header("content-type", "application/grpc")
                        .body(())
                        .unwrap();
                    let mut send = respond.send_response(head, false).unwrap();
                    // An empty ExportLogsServiceResponse: uncompressed, length 0.
                    send.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), false)
                        .unwrap();
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", "0".parse().unwrap());
                    send.send_trailers(trailers).unwrap();
                });
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_collector_resets_the_stream_on_is_refused_alone_and_the_rest_arrive() {
    let dir = Dir::new("otlp-cut-off");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let resets = Arc::new(Mutex::new(0));
    tokio::spawn(serve(listener, accepted.clone(), resets.clone()));
    let yaml = format!(
        "spool_dir: {spool}\nsinks:\n- name: otel\n  type: otlp\n  endpoint: http://127.0.0.1:{port}\n  allow_plaintext: true\n  batch_size: 64\n  linger_ms: 20\n  queue_size: 500\n  timeout_secs: 2\n",
        spool = dir.join("spool").display(),
    );
    let cfg: ExportersConfig = serde_yaml::from_str(&yaml).unwrap();
    let mut ex = Exporters::new(&cfg, "node-1").unwrap();
    ex.start();
    const N: usize = 300;
    for n in 0..N {
        let args = if n == 100 {
            POISON.to_string()
        } else {
            format!("event /{n}")
        };
        ex.submit(&exec_event("exec-1", 1, "/usr/bin/true", args));
    }
    let unique = || {
        accepted
            .lock()
            .unwrap()
            .iter()
            .collect::<HashSet<_>>()
            .len()
    };
    let arrived = wait_for(|| unique() >= N - 1, 60).await;
    let dead = dir.join("spool/otel/dead-letter.jsonl");
    let refused = wait_for(|| dead.exists(), 10).await;
    let stats = ex.stats();
    ex.shutdown(Duration::from_secs(5)).await;
    assert!(arrived, "{} of {} arrived; sink {stats}", unique(), N - 1);
    assert!(
        accepted.lock().unwrap().iter().all(|b| !b.contains(POISON)),
        "the server accepted the poisoned record"
    );
    assert!(refused, "nothing dead-lettered; sink {stats}");
    assert_eq!(stats["otel"]["dead_lettered"], 1, "{stats}");
    let letters = std::fs::read_to_string(&dead).unwrap();
    let letter: serde_json::Value = serde_json::from_str(letters.lines().next().unwrap()).unwrap();
    assert!(letters.contains("poison"), "{letters}");
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.contains("times, alone"), "{reason}");
    // A few tries at each halving, not one per backoff.
    let resets = *resets.lock().unwrap();
    assert!((3..=40).contains(&resets), "{resets} resets");
}
