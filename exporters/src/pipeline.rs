//! One machinery for every sink: a bounded memory queue that spills to the sink's disk spool
//! when the sink is slow or down, batching, retries with exponential backoff and jitter,
//! splitting of batches a destination finds too large, a dead-letter file (record lines with
//! the reason) for records refused for good, and counters for all of it. Delivery is at least
//! once: a record leaves the spool only after its sink took it, and at shutdown whatever is
//! still in memory is written to the spool for the next run.

use std::{
    fs::OpenOptions,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::{
    config::SinkConfig, fields::FieldFilters, record::Record, sinks::Delivery, sinks::Sink,
    spool::Spool,
};

/// A sink's counters.
#[derive(Debug, Default, Serialize)]
pub struct SinkStats {
    /// Records the sink took.
    pub delivered: AtomicU64,
    /// Deliveries that failed and were tried again.
    pub retries: AtomicU64,
    /// Records written to the disk spool.
    pub spooled: AtomicU64,
    /// Records refused for good, in the dead-letter file.
    pub dead_lettered: AtomicU64,
    /// Records dropped by the sink's rate limit.
    pub rate_limited: AtomicU64,
    /// Events the sink's filters did not pass.
    pub filtered: AtomicU64,
}

/// Backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Tells the workers to stop: first to finish (deliver what is queued, spool what fails), then,
/// when the grace period is over, to abandon the delivery in flight and spool what is left, so
/// that a destination that hangs cannot make the agent lose what it still holds.
pub struct StopHandle {
    finish: Arc<AtomicBool>,
    abandon: watch::Sender<bool>,
}

/// A worker's view of the [`StopHandle`].
#[derive(Clone)]
pub struct StopSignal {
    finish: Arc<AtomicBool>,
    abandon: watch::Receiver<bool>,
}

/// A handle and the signal its workers watch.
pub fn stop_signal() -> (StopHandle, StopSignal) {
    let finish = Arc::new(AtomicBool::new(false));
    let (tx, rx) = watch::channel(false);
    (
        StopHandle {
            finish: finish.clone(),
            abandon: tx,
        },
        StopSignal {
            finish,
            abandon: rx,
        },
    )
}

impl StopHandle {
    /// Deliver what is queued, then return.
    pub fn finish(&self) {
        self.finish.store(true, Ordering::Release);
    }

    /// Give up the delivery in flight and spool what is left.
    pub fn abandon(&self) {
        self.finish();
        let _ = self.abandon.send(true);
    }
}

impl StopSignal {
    fn finishing(&self) -> bool {
        self.finish.load(Ordering::Acquire)
    }

    /// Returns once the delivery in flight is to be abandoned; never while the handle lives
    /// and has not said so.
    async fn abandoned(&mut self) {
        if self.abandon.wait_for(|a| *a).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The producing half of a sink's pipeline: never blocks the agent.
pub struct SinkHandle {
    /// The sink's name.
    pub name: String,
    tx: mpsc::Sender<Record>,
    spool: Arc<Spool>,
    spilling: Arc<AtomicBool>,
    /// Its counters.
    pub stats: Arc<SinkStats>,
    rate: Option<(u64, Instant, u64)>,
}

impl SinkHandle {
    /// Queues a record; when the queue is full (or records are already spilling, to keep
    /// their order) it goes to the disk spool instead.
    pub fn submit(&mut self, r: Record) -> std::io::Result<()> {
        if let Some((limit, start, n)) = self.rate.as_mut() {
            if start.elapsed() >= Duration::from_secs(1) {
                *start = Instant::now();
                *n = 0;
            }
            if *n >= *limit {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            *n += 1;
        }
        if !self.spilling.load(Ordering::Acquire) {
            match self.tx.try_send(r) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r)) => {
                    self.spilling.store(true, Ordering::Release);
                    return self.spill(r);
                }
            }
        }
        self.spill(r)
    }

    fn spill(&self, r: Record) -> std::io::Result<()> {
        self.spool.append(std::slice::from_ref(&r))?;
        self.stats.spooled.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The consuming half: the task that delivers.
pub struct SinkWorker {
    name: String,
    sink: Sink,
    fields: FieldFilters,
    rx: mpsc::Receiver<Record>,
    spool: Arc<Spool>,
    spilling: Arc<AtomicBool>,
    stats: Arc<SinkStats>,
    dead_letter: PathBuf,
    batch_size: usize,
    linger: Duration,
}

/// Builds the two halves of the sink `cfg` declares; `dir` holds its spool and dead-letter
/// file.
pub fn pipeline(
    cfg: &SinkConfig,
    sink: Sink,
    fields: FieldFilters,
    dir: PathBuf,
) -> std::io::Result<(SinkHandle, SinkWorker)> {
    let (name, queue, batch_size, rate_limit) =
        (&cfg.name, cfg.queue_size, cfg.batch_size, cfg.rate_limit);
    let linger = Duration::from_millis(cfg.linger_ms);
    let spool = Arc::new(Spool::open(&dir.join("spool"))?);
    let (tx, rx) = mpsc::channel(queue.max(1));
    let spilling = Arc::new(AtomicBool::new(spool.pending() > 0));
    let stats = Arc::new(SinkStats::default());
    Ok((
        SinkHandle {
            name: name.to_string(),
            tx,
            spool: spool.clone(),
            spilling: spilling.clone(),
            stats: stats.clone(),
            rate: (rate_limit > 0).then(|| (rate_limit, Instant::now(), 0)),
        },
        SinkWorker {
            name: name.to_string(),
            sink,
            fields,
            rx,
            spool,
            spilling,
            stats,
            dead_letter: dir.join("dead-letter.jsonl"),
            batch_size: batch_size.max(1),
            linger,
        },
    ))
}

impl SinkWorker {
    /// Writes refused records with the reason, one JSON object per line.
    fn dead_letter(&self, records: &[(&Record, String)]) {
        let mut buf = Vec::new();
        for (r, why) in records {
            buf.extend_from_slice(b"{\"reason\":");
            buf.extend_from_slice(serde_json::to_string(why).unwrap_or_default().as_bytes());
            buf.extend_from_slice(b",\"event\":");
            buf.extend_from_slice(&r.json);
            buf.extend_from_slice(b"}\n");
        }
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.dead_letter)
            .and_then(|mut f| f.write_all(&buf));
        if let Err(e) = written {
            eprintln!(
                "vigil: sink {}: cannot write the dead-letter file {}: {e}",
                self.name,
                self.dead_letter.display()
            );
        }
        self.stats
            .dead_lettered
            .fetch_add(records.len() as u64, Ordering::Relaxed);
    }

    /// Delivers `batch` until every record arrived or was refused for good; returns what is
    /// left when the agent is stopping and a delivery failed, or when it abandons the delivery
    /// in flight.
    async fn deliver_all(&mut self, mut batch: Vec<Record>, stop: &mut StopSignal) -> Vec<Record> {
        if !self.fields.is_empty() {
            batch = batch.into_iter().map(|r| self.fields.apply(r)).collect();
        }
        let mut todo: Vec<Vec<Record>> = vec![batch];
        let mut backoff = BACKOFF_MIN;
        let mut last_error = String::new();
        while let Some(b) = todo.pop() {
            let outcome = tokio::select! {
                d = self.sink.deliver(&b) => d,
                () = stop.abandoned() => {
                    todo.push(b);
                    return todo.into_iter().flatten().collect();
                }
            };
            let pause = match outcome {
                Delivery::Delivered => {
                    self.stats
                        .delivered
                        .fetch_add(b.len() as u64, Ordering::Relaxed);
                    backoff = BACKOFF_MIN;
                    continue;
                }
                Delivery::TooLarge => {
                    let mut b = b;
                    let tail = b.split_off(b.len() / 2);
                    todo.push(tail);
                    todo.push(b);
                    continue;
                }
                Delivery::Partial { retry, rejected } => {
                    let refused: Vec<(&Record, String)> = rejected
                        .iter()
                        .map(|(i, why)| (&b[*i], why.clone()))
                        .collect();
                    self.dead_letter(&refused);
                    let delivered = b.len() - retry.len() - rejected.len();
                    self.stats
                        .delivered
                        .fetch_add(delivered as u64, Ordering::Relaxed);
                    if retry.is_empty() {
                        continue;
                    }
                    todo.push(retry.iter().map(|i| b[*i].clone()).collect());
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    jitter(backoff)
                }
                Delivery::Retry(why) => {
                    if why != last_error {
                        eprintln!("vigil: sink {}: {why}; retrying", self.name);
                        last_error = why;
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    todo.push(b);
                    if stop.finishing() {
                        return todo.into_iter().flatten().collect();
                    }
                    jitter(backoff)
                }
            };
            backoff = (backoff * 2).min(BACKOFF_MAX);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.abandoned() => return todo.into_iter().flatten().collect(),
            }
        }
        Vec::new()
    }

    /// Runs until `stop` is set and the queue is empty; what could not be delivered by then is
    /// spooled for the next run.
    pub async fn run(mut self, mut stop: StopSignal) {
        loop {
            // The spool first: it holds the oldest records.
            if self.spool.pending() > 0 {
                // Records queued in memory before spilling began are older still.
                let mut queued = Vec::new();
                while let Ok(r) = self.rx.try_recv() {
                    queued.push(r);
                }
                if !queued.is_empty() {
                    let left = self.deliver_all(queued, &mut stop).await;
                    if !left.is_empty() {
                        self.save(left);
                        return;
                    }
                    continue;
                }
                match self.spool.peek(self.batch_size) {
                    Ok((batch, offset)) => {
                        let n = batch.len() as u64;
                        let left = self.deliver_all(batch, &mut stop).await;
                        if !left.is_empty() {
                            return; // still in the spool: nothing to save
                        }
                        if let Err(e) = self.spool.commit(offset, n) {
                            eprintln!("vigil: sink {}: spool: {e}", self.name);
                        }
                    }
                    Err(e) => {
                        eprintln!("vigil: sink {}: spool: {e}", self.name);
                        tokio::time::sleep(BACKOFF_MAX).await;
                    }
                }
                if self.spool.pending() == 0 {
                    self.spilling.store(false, Ordering::Release);
                }
                continue;
            }
            let mut batch = Vec::with_capacity(self.batch_size);
            let deadline = tokio::time::Instant::now() + self.linger;
            while batch.len() < self.batch_size {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(r)) => batch.push(r),
                    Ok(None) | Err(_) => break,
                }
            }
            if batch.is_empty() {
                if stop.finishing() {
                    return;
                }
                continue;
            }
            let left = self.deliver_all(batch, &mut stop).await;
            if !left.is_empty() {
                self.save(left);
                return;
            }
        }
    }

    /// Spools what is left in memory at shutdown.
    fn save(&mut self, mut left: Vec<Record>) {
        while let Ok(r) = self.rx.try_recv() {
            left.push(r);
        }
        match self.spool.append(&left) {
            Ok(()) => {
                self.stats
                    .spooled
                    .fetch_add(left.len() as u64, Ordering::Relaxed);
            }
            Err(e) => eprintln!(
                "vigil: sink {}: {} records could not be spooled at shutdown: {e}",
                self.name,
                left.len()
            ),
        }
    }
}

/// `d` give or take a quarter, so that many agents do not retry in step.
fn jitter(d: Duration) -> Duration {
    let ms = d.as_millis() as u64;
    Duration::from_millis(ms - ms / 4 + fastrand::u64(0..=ms / 2))
}
