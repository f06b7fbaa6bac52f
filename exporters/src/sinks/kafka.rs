//! Kafka: each event as a JSON message on a topic, keyed by its exec id and sent to the
//! partition that key hashes to, so one process's events stay in order; the event kind rides in
//! a `kind` header, the event's time is the message timestamp, batches are gzip-compressed. The
//! topic's partitions are read from the cluster at connection; a failed produce is retried whole
//! (at least once: a partition that took its part may get it twice). With `tls:`, brokers are
//! verified against the public roots and the CA file, and a client certificate authenticates
//! vigil where the brokers ask for one (mutual TLS).

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use rskafka::{
    client::{
        partition::{Compression, PartitionClient, UnknownTopicHandling},
        Client, ClientBuilder,
    },
    BackoffConfig,
};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use super::{http::peer_error, Delivery};
use crate::record::Record;

/// `type: kafka`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// The topic (it must exist).
    pub topic: String,
    /// How long one delivery may keep trying before the pipeline sees the failure, counts it
    /// and retries with its own backoff, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Send secrets (or, for Kafka, events) over an unencrypted connection anyway; the agent
    /// warns once at start. Only for a network you trust.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// TLS to the brokers (plaintext when absent, which needs `allow_plaintext: true`).
    #[serde(default)]
    pub tls: Option<KafkaTls>,
}

/// `tls:` of a Kafka sink.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTls {
    /// A PEM file of CA certificates to verify the brokers with, beside the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A PEM certificate chain presented to brokers that ask for one (with `key_file`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl KafkaTls {
    /// The rustls client configuration; errors name the file and what is wrong with it.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        let pem_err =
            |p: &PathBuf, e: rustls::pki_types::pem::Error| format!("{}: {e}", p.display());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(ca) = &self.ca_file {
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| pem_err(ca, e))? {
                roots
                    .add(cert.map_err(|e| pem_err(ca, e))?)
                    .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        match (&self.cert_file, &self.key_file) {
            (None, None) => Ok(builder.with_no_client_auth()),
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| pem_err(cert, e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| pem_err(cert, e))?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| format!("cert_file {}: {e}", cert.display()))
            }
            _ => Err("tls: cert_file and key_file go together".into()),
        }
    }
}

fn default_timeout() -> u64 {
    10
}

/// The Kafka sink.
pub struct KafkaSink {
    cfg: KafkaConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    client: Option<Client>,
    partitions: Vec<PartitionClient>,
}

/// FNV-1a: a stable hash, so a key maps to the same partition across agent restarts.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The partition (index into the topic's partitions) of a key.
pub fn partition_of(key: &str, partitions: usize) -> usize {
    (fnv1a(key.as_bytes()) % partitions.max(1) as u64) as usize
}

impl KafkaSink {
    /// A sink for `cfg` (connected at the first delivery); fails on unusable TLS files.
    pub fn new(cfg: KafkaConfig) -> Result<KafkaSink, String> {
        let tls = match &cfg.tls {
            Some(t) => Some(Arc::new(t.client_config()?)),
            None => None,
        };
        Ok(KafkaSink {
            cfg,
            tls,
            client: None,
            partitions: Vec::new(),
        })
    }

    async fn connect(&mut self) -> Result<(), String> {
        // rskafka retries by itself, forever unless given a deadline: with one, a broker that is
        // down shows in the sink's retries and log instead of hanging a delivery silently.
        let backoff = BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
            deadline: Some(Duration::from_secs(self.cfg.timeout_secs)),
        };
        let mut builder = ClientBuilder::new(self.cfg.brokers.clone()).backoff_config(backoff);
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(tls.clone());
        }
        let client = builder
            .build()
            .await
            .map_err(|e| format!("{}: {}", self.cfg.brokers.join(","), peer_error(&e)))?;
        let topics = client.list_topics().await.map_err(|e| peer_error(&e))?;
        let topic = topics
            .iter()
            .find(|t| t.name == self.cfg.topic)
            .ok_or_else(|| format!("topic {} does not exist", self.cfg.topic))?;
        let mut partitions = Vec::new();
        for p in &topic.partitions {
            partitions.push(
                client
                    .partition_client(self.cfg.topic.clone(), *p, UnknownTopicHandling::Retry)
                    .await
                    .map_err(|e| peer_error(&e))?,
            );
        }
        if partitions.is_empty() {
            return Err(format!("topic {} has no partitions", self.cfg.topic));
        }
        self.partitions = partitions;
        self.client = Some(client);
        Ok(())
    }

    /// Sends one batch.
    pub async fn deliver(&mut self, batch: &[Record]) -> Delivery {
        if self.client.is_none() {
            if let Err(e) = self.connect().await {
                return Delivery::Retry(e);
            }
        }
        let n = self.partitions.len();
        let mut by_partition: Vec<Vec<rskafka::record::Record>> = vec![Vec::new(); n];
        for r in batch {
            let ts = chrono::DateTime::from_timestamp_nanos(r.time_ns as i64);
            by_partition[partition_of(&r.exec_id, n)].push(rskafka::record::Record {
                key: Some(r.exec_id.as_bytes().to_vec()),
                value: Some(r.json.to_vec()),
                headers: BTreeMap::from([("kind".to_string(), r.kind.as_bytes().to_vec())]),
                timestamp: ts,
            });
        }
        for (p, records) in self.partitions.iter().zip(by_partition) {
            if records.is_empty() {
                continue;
            }
            if let Err(e) = p.produce(records, Compression::Gzip).await {
                // Reconnect on the next try: the leader may have moved.
                self.client = None;
                return Delivery::Retry(format!("kafka {}: {}", self.cfg.topic, peer_error(&e)));
            }
        }
        Delivery::Delivered
    }
}
