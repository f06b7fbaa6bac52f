//! The sinks: each turns a batch of records into its destination's format and reports how the
//! delivery went, in the terms the pipeline acts on ([`Delivery`]). Queues, retries, spooling
//! and dead letters are the pipeline's, not the sinks'.

pub mod ecs;
pub mod elastic;
pub mod file;
pub mod http;
pub mod kafka;
pub mod otlp;
pub mod semconv;
pub mod splunk;
pub mod stdout;

use std::sync::Arc;

use crate::record::Record;

/// Why a record was refused. Shared: a destination that refuses a whole batch gives one reason
/// for all its records, held once however large the batch.
pub type Reason = Arc<str>;

/// How a batch fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Every record arrived.
    Delivered,
    /// Nothing arrived and trying again may help (network, 429, 5xx): retry after a backoff.
    Retry(String),
    /// The destination cut the request off without answering (it reset the stream): retried
    /// like [`Delivery::Retry`], but a batch cut off [`crate::pipeline::CUTS_BEFORE_SPLIT`]
    /// times is split, and one record cut off that often alone is refused (dead letter), so a
    /// record that crashes the destination does not hold up everything behind it.
    CutOff(String),
    /// The batch is too large for the destination (413): split it and send the halves.
    TooLarge,
    /// Some records were refused for good (with the reason) and go to the dead-letter file;
    /// some may be retried; the rest arrived.
    Partial {
        /// Indexes of records to send again.
        retry: Vec<usize>,
        /// Indexes of records refused, and why.
        rejected: Vec<(usize, Reason)>,
    },
    /// The destination is gone for good (a closed stdout): nothing more can be written there.
    /// The pipeline stops trying and counts what it no longer writes as dropped.
    Closed(String),
}

impl Delivery {
    /// Every record of a batch of `len` refused for good, for one reason.
    pub fn refuse_all(len: usize, why: String) -> Delivery {
        let why = Reason::from(why);
        Delivery::Partial {
            retry: Vec::new(),
            rejected: (0..len).map(|i| (i, why.clone())).collect(),
        }
    }
}

/// Any sink.
pub enum Sink {
    /// The agent's standard output.
    Stdout(stdout::StdoutSink),
    /// Rotated JSON-lines files.
    File(file::FileSink),
    /// Splunk HTTP Event Collector.
    Splunk(splunk::SplunkHecSink),
    /// Elasticsearch / OpenSearch `_bulk`.
    Elastic(elastic::ElasticSink),
    /// Kafka.
    Kafka(kafka::KafkaSink),
    /// OpenTelemetry logs over gRPC.
    Otlp(otlp::OtlpLogsSink),
}

impl Sink {
    /// Delivers `batch`.
    pub async fn deliver(&mut self, batch: &[Record]) -> Delivery {
        match self {
            Sink::Stdout(s) => s.deliver(batch).await,
            Sink::File(s) => s.deliver(batch),
            Sink::Splunk(s) => s.deliver(batch).await,
            Sink::Elastic(s) => s.deliver(batch).await,
            Sink::Kafka(s) => s.deliver(batch).await,
            Sink::Otlp(s) => s.deliver(batch).await,
        }
    }
}
