//! vigil's exporters, in Vector's spirit: sinks that batch, encode and deliver events, over one
//! shared pipeline for queues, disk spooling, retries, dead letters and counters.
//!
//! Every output of the agent is a sink of this one pipeline: its stdout (JSON or compact lines,
//! [`sinks::stdout`]), its `--export-file` (a file sink with the file sink's rotation), and the
//! sinks of its configuration file; so every output gets the same redaction, filters, rotation
//! and accounting, and none can stall the agent's reading of the ring buffer.
//!
//! The agent hands each event to [`Exporters::submit`], which never blocks and never fails: the
//! event's secrets are redacted ([`redact::Redactor`]), it is encoded once ([`record::Record`]),
//! and each sink whose filters pass it ([`filter::ExportFilter`]) queues it in memory or, when its
//! queue is full, in its disk spool ([`spool::Spool`]). A task per sink
//! ([`pipeline::SinkWorker`]) delivers batches and decides from the outcome
//! ([`sinks::Delivery`]) whether to retry, split, dead-letter ([`deadletter`]) or stop trying,
//! after cutting the fields the sink does not send ([`fields::FieldFilters`]). Failures are
//! counted and said rate-limited ([`report`]), never per event. Sinks are in [`sinks`]; their
//! settings come from the agent's configuration file ([`config::ExportersConfig`]), checked at
//! start: names that can name a spool directory, no secret over plaintext without
//! `allow_plaintext: true`, and no link or foreign file where root writes
//! ([`vigil_safe_fs`]).

pub mod config;
pub mod deadletter;
pub mod fields;
pub mod filter;
pub mod labels;
pub mod pipeline;
pub mod record;
pub mod redact;
pub mod report;
pub mod sinks;
pub mod spool;
mod stop;

use std::time::Duration;

use config::{ExportersConfig, SinkKind};
use filter::ExportFilter;
pub use pipeline::Room;
use pipeline::{SinkHandle, SinkWorker, StopHandle, StopSignal};
use record::Record;
use redact::Redactor;
use vigil_events::Event;

/// Why the exporters could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A filter or redaction pattern does not compile.
    #[error(transparent)]
    Pattern(#[from] filter::PatternError),
    /// A field filter names no field.
    #[error(transparent)]
    FieldPath(#[from] fields::FieldPathError),
    /// A sink's settings are unusable.
    #[error("sink {sink}: {reason}")]
    Sink {
        /// The sink.
        sink: String,
        /// Why.
        reason: String,
    },
}

struct Entry {
    handle: SinkHandle,
    filter: ExportFilter,
    /// See [`config::SinkConfig::takes_alerts`].
    alerts: bool,
}

/// Every configured sink.
pub struct Exporters {
    redactor: Redactor,
    entries: Vec<Entry>,
    workers: Vec<SinkWorker>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: StopHandle,
    signal: StopSignal,
}

const MIB: u64 = 1 << 20;

impl Exporters {
    /// Builds the sinks of `cfg` (on a tokio runtime); `node` is the node's name (Splunk's host
    /// field, OpenTelemetry's `host.name`). Refuses names that cannot name a spool directory,
    /// secrets over plaintext without `allow_plaintext: true` (with it, warns once here), and
    /// links or foreign files where a sink, its spool or its dead-letter file would write.
    pub fn new(cfg: &ExportersConfig, node: &str) -> Result<Exporters, ExportError> {
        cfg.check_names()
            .map_err(|(sink, reason)| ExportError::Sink { sink, reason })?;
        let mut entries = Vec::new();
        let mut workers = Vec::new();
        for (i, s) in cfg.sinks.iter().enumerate() {
            let err = |reason: String| ExportError::Sink {
                sink: s.name.clone(),
                reason,
            };
            if let Some(what) = s.kind.plaintext() {
                if !s.kind.allows_plaintext() {
                    return Err(err(format!(
                        "would send {what} in clear: anyone on the network path can read it; use TLS (https://, or `tls:` for Kafka), or say `allow_plaintext: true` in this sink for a network you trust"
                    )));
                }
                report::log(
                    &s.name,
                    &format!("warning: sends {what} in clear (allow_plaintext: true)"),
                );
            }
            let sink = match &s.kind {
                SinkKind::Stdout(c) => sinks::Sink::Stdout(
                    sinks::stdout::StdoutSink::new(c)
                        .map_err(|e| err(format!("cannot start its writer thread: {e}")))?,
                ),
                SinkKind::File(f) => sinks::Sink::File(
                    sinks::file::FileSink::new(f.clone()).map_err(|e| err(e.to_string()))?,
                ),
                SinkKind::SplunkHec(h) => sinks::Sink::Splunk(
                    sinks::splunk::SplunkHecSink::new(h.clone(), node).map_err(err)?,
                ),
                SinkKind::Elasticsearch(c) => {
                    sinks::Sink::Elastic(sinks::elastic::ElasticSink::new(c.clone()).map_err(err)?)
                }
                SinkKind::Kafka(c) => {
                    sinks::Sink::Kafka(sinks::kafka::KafkaSink::new(c.clone()).map_err(err)?)
                }
                SinkKind::Otlp(c) => {
                    sinks::Sink::Otlp(sinks::otlp::OtlpLogsSink::new(c, node).map_err(err)?)
                }
            };
            let filter = ExportFilter::new(&s.allow, &s.deny, &format!("sinks[{i}]"))?;
            let fields = fields::FieldFilters::new(&s.fields, &format!("sinks[{i}].fields"))?;
            let spool_cap = s
                .spool_max_mb
                .unwrap_or(cfg.spool_max_mb)
                .saturating_mul(MIB);
            let dead_cap = s
                .dead_letter_max_mb
                .unwrap_or(cfg.dead_letter_max_mb)
                .saturating_mul(MIB);
            let (handle, worker) = pipeline::pipeline(
                s,
                sink,
                fields,
                &cfg.spool_root().join(s.spool_name()),
                spool_cap,
                dead_cap,
            )
            .map_err(|e| err(e.to_string()))?;
            entries.push(Entry {
                handle,
                filter,
                alerts: s.takes_alerts(),
            });
            workers.push(worker);
        }
        let (stop, signal) = pipeline::stop_signal();
        Ok(Exporters {
            redactor: Redactor::new(&cfg.redact)?,
            entries,
            workers,
            tasks: Vec::new(),
            stop,
            signal,
        })
    }

    /// Starts the delivery tasks (on the current tokio runtime).
    pub fn start(&mut self) {
        for w in self.workers.drain(..) {
            self.tasks.push(tokio::spawn(w.run(self.signal.clone())));
        }
    }

    /// Hands an event to every sink whose filters pass it; never blocks, never fails (what a
    /// sink cannot keep is counted in its stats).
    pub fn submit(&mut self, event: &Event) {
        if self.entries.is_empty() {
            return;
        }
        if self.redactor.is_empty() {
            return self.submit_record(event, Record::encode(event));
        }
        let mut redacted = event.clone();
        self.redactor.apply(&mut redacted);
        self.submit_record(&redacted, Record::encode(&redacted))
    }

    /// Hides `event`'s secrets in place, as every output gets it: the agent redacts once what
    /// it then exports, streams and stores.
    pub fn redact(&self, event: &mut Event) {
        self.redactor.apply(event);
    }

    /// Whether any sink takes events (whether an event needs encoding for them).
    pub fn takes_events(&self) -> bool {
        !self.entries.is_empty()
    }

    /// [`Exporters::submit`] for an event already redacted ([`Exporters::redact`]) and
    /// encoded, by a caller that uses the encoding too.
    pub fn submit_record(&mut self, event: &Event, record: Record) {
        let alert = matches!(event.body, vigil_events::EventBody::ProcessAlert(_));
        // The last sink that takes it gets the record itself: a clone shares its bytes, and
        // the first share of them costs an allocation.
        let mut taker = None;
        for i in 0..self.entries.len() {
            let e = &mut self.entries[i];
            if (!alert || e.alerts) && e.filter.passes(event) {
                if let Some(before) = taker.replace(i) {
                    self.entries[before].handle.submit(record.clone());
                }
            } else {
                e.handle.filtered();
            }
        }
        if let Some(last) = taker {
            self.entries[last].handle.submit(record);
        }
    }

    /// The least room of the sinks that queue in memory now ([`SinkHandle::room_now`]): the
    /// fewest records one can take, and the smallest queue; `None` when no sink does.
    pub fn room_now(&self) -> Option<Room> {
        self.entries
            .iter()
            .filter_map(|e| e.handle.room_now())
            .reduce(|a, b| Room {
                free: a.free.min(b.free),
                size: a.size.min(b.size),
            })
    }

    /// Waits until every sink that queues in memory has room for `n` more
    /// ([`SinkHandle::room`]). The agent's loop awaits it, bounded in time and by the ring
    /// buffer's fill, before reading a burst its outputs could not queue.
    pub async fn room(&self, n: usize) {
        for e in &self.entries {
            e.handle.room(n).await;
        }
    }

    /// Whether any sink gets the Sigma alerts.
    pub fn takes_alerts(&self) -> bool {
        self.entries.iter().any(|e| e.alerts)
    }

    /// Every sink's counters, by name.
    pub fn stats(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.entries
                .iter()
                .map(|e| (e.handle.name().to_string(), e.handle.stats()))
                .collect(),
        )
    }

    /// Delivers what is queued, for up to `grace`; then abandons the deliveries still in flight
    /// and spools what is left for the next run. Returns the final counters.
    pub async fn shutdown(mut self, grace: Duration) -> serde_json::Value {
        self.stop.finish();
        let deadline = tokio::time::Instant::now() + grace;
        let mut left = Vec::new();
        for mut t in self.tasks.drain(..) {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                left.push(t);
            }
        }
        if !left.is_empty() {
            self.stop.abandon();
            for t in left {
                // Spooling what is left is a local write: it does not wait on any destination.
                if tokio::time::timeout(SPOOL_GRACE, t).await.is_err() {
                    eprintln!("vigil: a sink could not spool what it held within {SPOOL_GRACE:?}");
                }
            }
        }
        self.stats()
    }
}

/// How long a sink may take to spool what it holds once its delivery is abandoned.
const SPOOL_GRACE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(yaml: &str) -> String {
        let dir = std::env::temp_dir().join(format!("vigil-ex-refused-{}", std::process::id()));
        let cfg: ExportersConfig =
            serde_yaml::from_str(&format!("spool_dir: {}\n{yaml}", dir.display())).unwrap();
        let err = Exporters::new(&cfg, "n")
            .err()
            .expect("refused")
            .to_string();
        let _ = std::fs::remove_dir_all(&dir);
        err
    }

    #[tokio::test]
    async fn a_secret_over_plaintext_is_refused_unless_allowed() {
        let err = refused(
            "sinks:\n- name: hec\n  type: splunk_hec\n  endpoint: http://10.0.0.1:8088\n  token: {env: PATH}\n",
        );
        assert!(
            err.starts_with("sink hec: would send the HEC token over http://10.0.0.1:8088"),
            "{err}"
        );
        assert!(err.contains("allow_plaintext: true"), "{err}");
        let err = refused("sinks:\n- name: k\n  type: kafka\n  brokers: [h:9092]\n  topic: t\n");
        assert!(
            err.contains("sink k: would send the events unencrypted"),
            "{err}"
        );
    }

    #[test]
    fn a_sink_name_that_leaves_the_spool_directory_is_refused() {
        let err = refused("sinks:\n- name: ../../etc\n  type: stdout\n");
        assert!(
            err.contains("`../../etc`") && err.contains("letters, digits"),
            "{err}"
        );
    }
}
