//! Splunk HTTP Event Collector: batches POSTed to `/services/collector/event`, one envelope per
//! event (`time` from the event, `host`, `source`, `sourcetype`, `index`, the event under
//! `event`), `Authorization: Splunk <token>`, gzip, TLS verified against the system roots or a
//! CA file. Status codes decide what happens next: 2xx delivered; 413 split; 400 refused for
//! good (dead letter); 401, 403, 429, 5xx and network errors retried after a backoff, since a
//! rotated token or an overloaded indexer recovers.
//!
//! With `ack: true` (for tokens with indexer acknowledgement on), a 200 only means Splunk
//! received the batch: each request carries the sink's channel (`X-Splunk-Request-Channel`), and
//! the batch counts as delivered once `/services/collector/ack` says its `ackId` was indexed. A
//! batch not acknowledged within `ack_timeout_secs` is sent again (at least once: an indexer that
//! was merely slow gets it twice).
//!
//! Each envelope carries indexed `fields` (searchable without extracting the event): the
//! event's kind and, for a process in a Kubernetes pod, `k8s.namespace.name`, `k8s.pod.name`,
//! `k8s.container.name` and `k8s.workload.name` (the OpenTelemetry names Splunk's own collector
//! indexes). The pod is read back from the record's JSON, the only form a spooled record has.
//!
//! Answers are read up to a bound and their words reach reasons and logs clipped and escaped
//! ([`super::http::peer_text`]).

use std::{
    io::Write,
    time::{Duration, Instant},
};

use serde::Deserialize;

use super::{
    http::{body_prefix, peer_body, peer_error, peer_text, SMALL_RESPONSE_MAX},
    Delivery,
};
use crate::{config::Secret, record::Record};

/// The pod part of an event, all that the indexed fields read of it: serde skips the rest
/// without building it.
#[derive(Deserialize)]
struct PodOf {
    #[serde(
        alias = "process_exec",
        alias = "process_exit",
        alias = "process_kprobe",
        alias = "process_lsm",
        alias = "process_uprobe",
        alias = "process_alert"
    )]
    body: Option<BodyOf>,
}

#[derive(Deserialize)]
struct BodyOf {
    process: Option<ProcessOf>,
}

#[derive(Deserialize)]
struct ProcessOf {
    pod: Option<PodFields>,
}

#[derive(Deserialize)]
struct PodFields {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    workload: String,
    container: Option<ContainerFields>,
}

#[derive(Deserialize)]
struct ContainerFields {
    #[serde(default)]
    name: String,
}

/// `,"fields":{...}`: the record's kind and its process's pod.
fn indexed_fields(r: &Record) -> String {
    let mut fields = serde_json::Map::new();
    fields.insert("vigil.kind".into(), r.kind.into());
    let pod = serde_json::from_slice::<PodOf>(&r.json)
        .ok()
        .and_then(|e| e.body?.process?.pod);
    if let Some(pod) = pod {
        let container = pod.container.map(|c| c.name).unwrap_or_default();
        for (k, v) in [
            ("k8s.namespace.name", pod.namespace),
            ("k8s.pod.name", pod.name),
            ("k8s.container.name", container),
            ("k8s.workload.name", pod.workload),
        ] {
            if !v.is_empty() {
                fields.insert(k.into(), v.into());
            }
        }
    }
    format!(",\"fields\":{}", serde_json::Value::Object(fields))
}

/// `type: splunk_hec`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkConfig {
    /// `https://splunk.example:8088`.
    pub endpoint: String,
    /// The HEC token.
    pub token: Secret,
    /// Index (the token's default when absent).
    #[serde(default)]
    pub index: Option<String>,
    /// Source.
    #[serde(default = "default_source")]
    pub source: String,
    /// Sourcetype.
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    /// Host field (the node's name when absent).
    #[serde(default)]
    pub host: Option<String>,
    /// Compress request bodies.
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// A PEM file of CA certificates to verify the server with, beside the system roots.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Request timeout in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Send secrets (or, for Kafka, events) over an unencrypted connection anyway; the agent
    /// warns once at start. Only for a network you trust.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// Wait for indexer acknowledgement before counting a batch delivered.
    #[serde(default)]
    pub ack: bool,
    /// How long to wait for an acknowledgement before sending the batch again, in seconds.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout_secs: u64,
}

fn default_ack_timeout() -> u64 {
    120
}

fn default_source() -> String {
    "vigil".into()
}
fn default_sourcetype() -> String {
    "vigil:event".into()
}
fn default_true() -> bool {
    true
}
fn default_timeout() -> u64 {
    10
}

/// The HEC sink.
pub struct SplunkHecSink {
    cfg: SplunkConfig,
    url: String,
    ack_url: String,
    /// This sink's channel, a random UUID: acknowledgements are per channel.
    channel: String,
    auth: String,
    host: String,
    client: reqwest::Client,
}

impl SplunkHecSink {
    /// A sink for `cfg`; `node` is the host field's default.
    pub fn new(cfg: SplunkConfig, node: &str) -> Result<SplunkHecSink, String> {
        let client = super::http::client(cfg.timeout_secs, cfg.ca_file.as_deref())?;
        let token = cfg.token.read().map_err(|e| format!("token: {e}"))?;
        let channel = {
            let (a, b) = (fastrand::u64(..), fastrand::u64(..));
            format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                0x8000 | (b >> 48) & 0x3fff,
                b & 0xffff_ffff_ffff
            )
        };
        let base = cfg.endpoint.trim_end_matches('/');
        Ok(SplunkHecSink {
            url: format!("{base}/services/collector/event"),
            ack_url: format!("{base}/services/collector/ack?channel={channel}"),
            channel,
            auth: format!("Splunk {token}"),
            host: cfg.host.clone().unwrap_or_else(|| node.to_string()),
            client,
            cfg,
        })
    }

    /// The request body: one envelope per record, concatenated as HEC expects.
    pub fn body(&self, batch: &[Record]) -> Vec<u8> {
        let mut out = Vec::with_capacity(batch.iter().map(|r| r.json.len() + 160).sum());
        let head = {
            let mut h = String::from(",\"host\":");
            h.push_str(&serde_json::to_string(&self.host).expect("string"));
            h.push_str(",\"source\":");
            h.push_str(&serde_json::to_string(&self.cfg.source).expect("string"));
            h.push_str(",\"sourcetype\":");
            h.push_str(&serde_json::to_string(&self.cfg.sourcetype).expect("string"));
            if let Some(i) = &self.cfg.index {
                h.push_str(",\"index\":");
                h.push_str(&serde_json::to_string(i).expect("string"));
            }
            h
        };
        for r in batch {
            // Seconds with the fraction HEC keeps (milliseconds and below).
            let _ = write!(
                out,
                "{{\"time\":{}.{:09}",
                r.time_ns / 1_000_000_000,
                r.time_ns % 1_000_000_000
            );
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(indexed_fields(r).as_bytes());
            out.extend_from_slice(b",\"event\":");
            out.extend_from_slice(&r.json);
            out.push(b'}');
        }
        out
    }

    /// Sends one batch.
    pub async fn deliver(&mut self, batch: &[Record]) -> Delivery {
        let body = self.body(batch);
        let mut req = self
            .client
            .post(&self.url)
            .header("Authorization", &self.auth)
            .header("Content-Type", "application/json");
        if self.cfg.ack {
            req = req.header("X-Splunk-Request-Channel", &self.channel);
        }
        let body = if self.cfg.gzip {
            req = req.header("Content-Encoding", "gzip");
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let _ = gz.write_all(&body);
            gz.finish().unwrap_or_default()
        } else {
            body
        };
        let resp = match req.body(body).send().await {
            Ok(r) => r,
            Err(e) => return Delivery::Retry(format!("{}: {}", self.url, peer_error(&e))),
        };
        let status = resp.status().as_u16();
        match status {
            200..=299 if self.cfg.ack => {
                let text = body_prefix(resp, SMALL_RESPONSE_MAX)
                    .await
                    .map(|(text, _)| text)
                    .unwrap_or_default();
                let ack_id = serde_json::from_slice::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["ackId"].as_u64());
                match ack_id {
                    Some(id) => self.wait_for_ack(id).await,
                    None => Delivery::Retry(format!(
                        "HEC {status} without an ackId (is acknowledgement on for the token?): {}",
                        peer_text(&text)
                    )),
                }
            }
            200..=299 => {
                // Read to its end (bounded) so that the connection is kept for the next batch.
                let _ = body_prefix(resp, SMALL_RESPONSE_MAX).await;
                Delivery::Delivered
            }
            413 if batch.len() > 1 => Delivery::TooLarge,
            400 | 413 => Delivery::refuse_all(
                batch.len(),
                format!("HEC {status}: {}", peer_body(resp).await),
            ),
            _ => Delivery::Retry(format!("HEC {status}: {}", peer_body(resp).await)),
        }
    }

    /// Polls the acknowledgement endpoint until `id` is indexed or the timeout passes.
    async fn wait_for_ack(&self, id: u64) -> Delivery {
        let deadline = Instant::now() + Duration::from_secs(self.cfg.ack_timeout_secs);
        let mut pause = Duration::from_millis(100);
        let body = format!("{{\"acks\":[{id}]}}");
        while Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
            let resp = self
                .client
                .post(&self.ack_url)
                .header("Authorization", &self.auth)
                .header("X-Splunk-Request-Channel", &self.channel)
                .body(body.clone())
                .send()
                .await;
            // A failed poll is asked again: the batch may well be indexed.
            let Ok(resp) = resp else { continue };
            let Ok((text, false)) = body_prefix(resp, SMALL_RESPONSE_MAX).await else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text) else {
                continue;
            };
            if v["acks"][id.to_string()].as_bool() == Some(true) {
                return Delivery::Delivered;
            }
        }
        Delivery::Retry(format!(
            "HEC did not acknowledge ackId {id} within {} s; sending the batch again",
            self.cfg.ack_timeout_secs
        ))
    }
}
