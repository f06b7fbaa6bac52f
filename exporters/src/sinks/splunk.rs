//! Splunk HTTP Event Collector: batches POSTed to `/services/collector/event`, one envelope per
//! event (`time` from the event, `host`, `source`, `sourcetype`, `index`, the event under
//! `event`), `Authorization: Splunk <token>`, gzip, TLS verified against the system roots or a
//! CA file. Status codes decide what happens next: 2xx delivered; 413 split; 400 refused for
//! good (dead letter); 401, 403, 429, 5xx and network errors retried after a backoff, since a
//! rotated token or an overloaded indexer recovers.

use std::io::Write;

use serde::Deserialize;

use super::Delivery;
use crate::{config::Secret, record::Record};

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
    auth: String,
    host: String,
    client: reqwest::Client,
}

impl SplunkHecSink {
    /// A sink for `cfg`; `node` is the host field's default.
    pub fn new(cfg: SplunkConfig, node: &str) -> Result<SplunkHecSink, String> {
        let client = super::http::client(cfg.timeout_secs, cfg.ca_file.as_deref())?;
        let token = cfg.token.read().map_err(|e| format!("token: {e}"))?;
        Ok(SplunkHecSink {
            url: format!(
                "{}/services/collector/event",
                cfg.endpoint.trim_end_matches('/')
            ),
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
            Err(e) => return Delivery::Retry(format!("{}: {e}", self.url)),
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        match status {
            200..=299 => Delivery::Delivered,
            413 if batch.len() > 1 => Delivery::TooLarge,
            400 | 413 => Delivery::Partial {
                retry: Vec::new(),
                rejected: (0..batch.len())
                    .map(|i| (i, format!("HEC {status}: {text}")))
                    .collect(),
            },
            _ => Delivery::Retry(format!("HEC {status}: {text}")),
        }
    }
}
