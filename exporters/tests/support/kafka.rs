//! A tansu broker for the Kafka tests: started on 127.0.0.1 with memory storage, its topic
//! created, and everything on it consumed back.

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    sync::Arc,
    time::Duration,
};

use rskafka::client::{partition::UnknownTopicHandling, Client, ClientBuilder};

use super::common::{tool, Server};

pub const TOPIC: &str = "vigil";
pub const PARTITIONS: i32 = 3;

/// A broker listening on `port` that tells clients to reach it at `advertised` (a proxy's port).
pub fn start_broker(port: u16, advertised: u16) -> Server {
    Server(
        Command::new(tool("tansu"))
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{advertised}"),
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu"),
    )
}

/// A client once the broker answers at `port` (through TLS with `tls`), with the topic created
/// (memory storage starts empty).
pub async fn client_with_topic(port: u16, tls: Option<Arc<rustls::ClientConfig>>) -> Client {
    let mut tries = 0;
    let client = loop {
        let mut builder = ClientBuilder::new(vec![format!("127.0.0.1:{port}")]);
        if let Some(t) = &tls {
            builder = builder.tls_config(t.clone());
        }
        match builder.build().await {
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
pub async fn consume(client: &Client) -> BTreeMap<i32, Vec<(String, String)>> {
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
                // A process's pod, when it has one, after its arguments.
                let pod = &value["process_exec"]["process"]["pod"];
                let args = match (pod["namespace"].as_str(), pod["name"].as_str()) {
                    (Some(ns), Some(name)) => format!("{args} {ns}/{name}"),
                    _ => args,
                };
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
