//! The agent's standard output as a sink: JSON or compact lines ([`LineFormat`]), fed by the
//! same pipeline as every other sink, so the same redaction, filters and accounting apply.
//!
//! A write to stdout blocks as long as its reader does not read (a paused terminal, a stalled
//! pipe). The writes therefore happen on a thread of their own: the agent's loop, which reads
//! the ring buffer, never waits on them, and records pile up in the pipeline's queue and spool
//! instead. The thread is never joined, so an agent stopping with a stuck reader is not held by
//! it. A closed reader (`vigil agent | head -1`: EPIPE, since Rust ignores SIGPIPE) closes the
//! sink for good ([`Delivery::Closed`]); other errors (a full disk under a redirected stdout) are
//! retried.

use std::{
    io::{ErrorKind, Write},
    sync::mpsc,
};

use serde::Deserialize;
use tokio::sync::oneshot;

use super::Delivery;
use crate::record::{LineFormat, Record};

/// `type: stdout`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {
    /// `json` (the default) or `compact`.
    #[serde(default)]
    pub format: LineFormat,
}

type Job = (Vec<u8>, oneshot::Sender<std::io::Result<()>>);

/// The stdout sink.
pub struct StdoutSink {
    format: LineFormat,
    jobs: mpsc::Sender<Job>,
    what: String,
}

impl StdoutSink {
    /// A sink writing to the process's stdout; fails only when no thread can be started.
    pub fn new(cfg: &StdoutConfig) -> std::io::Result<StdoutSink> {
        StdoutSink::with_writer(cfg, "stdout", Box::new(std::io::stdout()))
    }

    /// A sink writing to `out` (named `what` in messages).
    pub fn with_writer(
        cfg: &StdoutConfig,
        what: &str,
        mut out: Box<dyn Write + Send>,
    ) -> std::io::Result<StdoutSink> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("vigil-stdout".into())
            .spawn(move || {
                for (buf, reply) in rx {
                    let _ = reply.send(out.write_all(&buf).and_then(|()| out.flush()));
                }
            })?;
        Ok(StdoutSink {
            format: cfg.format,
            jobs,
            what: what.to_string(),
        })
    }

    /// Writes the batch's lines.
    pub async fn deliver(&mut self, batch: &[Record]) -> Delivery {
        let mut buf = Vec::with_capacity(batch.iter().map(|r| r.json.len() + 1).sum());
        for r in batch {
            r.write_line(self.format, &mut buf);
        }
        let (tx, rx) = oneshot::channel();
        if self.jobs.send((buf, tx)).is_err() {
            return Delivery::Closed(format!("{}: its writer stopped", self.what));
        }
        match rx.await {
            Ok(Ok(())) => Delivery::Delivered,
            Ok(Err(e)) if e.kind() == ErrorKind::BrokenPipe => {
                Delivery::Closed(format!("{} closed by its reader ({e})", self.what))
            }
            Ok(Err(e)) => Delivery::Retry(format!("{}: {e}", self.what)),
            Err(_) => Delivery::Closed(format!("{}: its writer stopped", self.what)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record {
        Record {
            time_ns: 1,
            kind: "process_exec",
            exec_id: "e".into(),
            json: bytes::Bytes::from_static(b"{\"n\":1}"),
        }
    }

    #[tokio::test]
    async fn a_closed_reader_closes_the_sink_and_a_full_disk_is_retried() {
        let (r, w) = std::io::pipe().unwrap();
        drop(r);
        let mut s =
            StdoutSink::with_writer(&StdoutConfig::default(), "stdout", Box::new(w)).unwrap();
        let Delivery::Closed(why) = s.deliver(&[rec()]).await else {
            panic!("a write to a closed pipe closes the sink");
        };
        assert!(why.contains("stdout closed"), "{why}");
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let mut s =
            StdoutSink::with_writer(&StdoutConfig::default(), "stdout", Box::new(full)).unwrap();
        let Delivery::Retry(why) = s.deliver(&[rec()]).await else {
            panic!("a full disk may recover");
        };
        assert!(why.contains("No space left"), "{why}");
    }
}
