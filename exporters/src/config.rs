//! The `exporters:` part of the agent's configuration file: the sinks, their filters and the
//! shared settings (spool directory, redaction). Secrets are read from a file or an environment
//! variable, never written in the file itself, and never printed.

use std::path::PathBuf;

use serde::Deserialize;

use crate::{
    filter::FilterSpec,
    sinks::{file::FileConfig, splunk::SplunkConfig},
};

/// A secret: `{ env: NAME }` or `{ file: /path }` (its content, trailing newline removed).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Secret {
    /// From this environment variable.
    Env(String),
    /// From this file.
    File(PathBuf),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Where it comes from is fine to show; what it is never is.
        match self {
            Secret::Env(n) => write!(f, "Secret(env {n})"),
            Secret::File(p) => write!(f, "Secret(file {})", p.display()),
        }
    }
}

impl Secret {
    /// The secret's value.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Env(name) => {
                std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
            }
            Secret::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("{}: {e}", p.display())),
        }
    }
}

/// What a sink delivers to.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkKind {
    /// Rotated JSON-lines files.
    File(FileConfig),
    /// Splunk HTTP Event Collector.
    SplunkHec(SplunkConfig),
    /// Elasticsearch / OpenSearch.
    Elasticsearch(crate::sinks::elastic::ElasticConfig),
    /// Kafka.
    Kafka(crate::sinks::kafka::KafkaConfig),
    /// OpenTelemetry logs (OTLP/gRPC).
    Otlp(crate::sinks::otlp::OtlpConfig),
}

/// One sink and the settings the pipeline applies to it.
#[derive(Debug, Clone, Deserialize)]
pub struct SinkConfig {
    /// Its name, in logs, metrics and spool paths.
    pub name: String,
    /// Where it delivers.
    #[serde(flatten)]
    pub kind: SinkKind,
    /// Export filters: events pass when one allow line matches (or there is none).
    #[serde(default)]
    pub allow: Vec<FilterSpec>,
    /// Events matching a deny line are not sent (deny wins over allow).
    #[serde(default)]
    pub deny: Vec<FilterSpec>,
    /// Which fields of the events are sent.
    #[serde(default)]
    pub fields: Vec<crate::fields::FieldFilter>,
    /// Most records per delivery.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    #[serde(default = "default_linger")]
    pub linger_ms: u64,
    /// Records held in memory before new ones go to the disk spool.
    #[serde(default = "default_queue")]
    pub queue_size: usize,
    /// Most events per second; more are dropped and counted (0: no limit).
    #[serde(default)]
    pub rate_limit: u64,
}

fn default_batch() -> usize {
    500
}
fn default_linger() -> u64 {
    200
}
fn default_queue() -> usize {
    10_000
}

/// The `exporters:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportersConfig {
    /// Where each sink's spool and dead-letter file live (`<dir>/<sink name>/`).
    #[serde(default = "default_spool")]
    pub spool_dir: PathBuf,
    /// Patterns whose capture groups are hidden in process arguments.
    #[serde(default)]
    pub redact: Vec<String>,
    /// The sinks.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
}

fn default_spool() -> PathBuf {
    PathBuf::from("/var/lib/vigil/spool")
}
