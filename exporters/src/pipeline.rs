//! One machinery for every sink: a bounded memory queue that spills to the sink's disk spool
//! when the sink is slow or down, batching, retries with exponential backoff and jitter,
//! splitting of batches a destination finds too large, a dead-letter file (with the reason) for
//! records refused for good and spool lines that are not records, and counters for all of it.
//! Delivery is at least once: a record leaves the spool only after its sink took it, and at
//! shutdown whatever is still in memory is written to the spool for the next run.
//!
//! Nothing here may stop the agent or stall it. The producing half ([`SinkHandle`]) never
//! blocks and never fails: what it cannot keep (a full or unwritable spool, a closed output) is
//! counted as dropped and said rate-limited ([`crate::report`]). The consuming half
//! ([`SinkWorker`]) runs on the agent's single thread, so it yields after every batch, waits
//! (rather than polls) when there is nothing to do, and checks what a sink reports before acting
//! on it: positions outside the batch are a retry, not an index. A sink that is gone for good
//! ([`Delivery::Closed`], a closed stdout) is not tried again.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::sync::{mpsc, Notify};
use vigil_safe_fs::{FsError, TrustedDir};

pub use crate::stop::{stop_signal, StopHandle, StopSignal};
use crate::{
    config::SinkConfig,
    deadletter::{DeadLetter, Letter, DEAD_LETTER},
    fields::FieldFilters,
    record::Record,
    report::{self, Problem},
    sinks::{Delivery, Reason, Sink},
    spool::{Spool, SpoolError},
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
    /// Records refused for good and spool lines that are not records, in the dead-letter file.
    pub dead_lettered: AtomicU64,
    /// Records dropped by the sink's rate limit.
    pub rate_limited: AtomicU64,
    /// Events the sink's filters did not pass.
    pub filtered: AtomicU64,
    /// Records lost: the spool was full or could not be written, or the output closed.
    pub dropped: AtomicU64,
    /// Spool writes that failed (a full disk, an I/O error).
    pub spool_errors: AtomicU64,
    /// Dead letters not written: the file reached its cap or could not be written.
    pub dead_letter_dropped: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Times a batch may be cut off by its destination ([`Delivery::CutOff`]) before it is split.
/// A collector restarting cuts off the request in flight once; the attempts after it meet a
/// closed port (retried without limit) until it is back.
pub const CUTS_BEFORE_SPLIT: u32 = 3;

/// Puts `b`'s two halves on `todo`, the first half to go first, each not cut off yet.
fn halve(todo: &mut Vec<(Vec<Record>, u32)>, mut b: Vec<Record>) {
    let tail = b.split_off(b.len() / 2);
    todo.push((tail, 0));
    todo.push((b, 0));
}

/// What both halves of a pipeline share.
struct Shared {
    name: String,
    spool: Spool,
    /// New records go to the spool (to keep their order behind those already there).
    spilling: AtomicBool,
    /// The output is gone for good: records are dropped.
    closed: AtomicBool,
    /// Wakes the worker when records were spilled.
    spilled: Notify,
    stats: SinkStats,
}

/// A queue's room: the records it can take now, and the most it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Room {
    pub free: usize,
    pub size: usize,
}

/// The producing half of a sink's pipeline: never blocks the agent, never fails it.
pub struct SinkHandle {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Record>,
    rate: Option<(u64, Instant, u64)>,
    spool_problem: Problem,
}

impl SinkHandle {
    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Counts an event the sink's filters did not pass.
    pub fn filtered(&self) {
        add(&self.shared.stats.filtered, 1);
    }

    /// The sink's counters, and what waits: records in its queue (`queued`), records and bytes
    /// in its spool (`spool_pending`, `spool_bytes`).
    pub fn stats(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.shared.stats).unwrap_or_default();
        v["spool_pending"] = self.shared.spool.pending().into();
        v["spool_bytes"] = self.shared.spool.bytes().into();
        v["queued"] = (self.tx.max_capacity() - self.tx.capacity()).into();
        v
    }

    /// Queues a record; when the queue is full (or records are already spilling, to keep
    /// their order) it goes to the disk spool instead; when that fails, or the output is
    /// closed, it is counted as dropped.
    pub fn submit(&mut self, r: Record) {
        let s = &self.shared;
        if s.closed.load(Ordering::Acquire) {
            add(&s.stats.dropped, 1);
            return;
        }
        if let Some((limit, start, n)) = self.rate.as_mut() {
            if start.elapsed() >= Duration::from_secs(1) {
                *start = Instant::now();
                *n = 0;
            }
            if *n >= *limit {
                add(&s.stats.rate_limited, 1);
                return;
            }
            *n += 1;
        }
        if !s.spilling.load(Ordering::Acquire) {
            match self.tx.try_send(r) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r)) => {
                    s.spilling.store(true, Ordering::Release);
                    return self.spill(r);
                }
            }
        }
        self.spill(r)
    }

    /// The records the queue has room for now, and the most it holds; `None` for a sink whose
    /// records go to the spool whatever the room (it spills, and keeps their order), or whose
    /// output is closed.
    pub fn room_now(&self) -> Option<Room> {
        let s = &self.shared;
        (!s.spilling.load(Ordering::Acquire) && !s.closed.load(Ordering::Acquire)).then(|| Room {
            free: self.tx.capacity(),
            size: self.tx.max_capacity(),
        })
    }

    /// Waits until the queue has room for `n` more records (as many as it holds, if fewer),
    /// when it is short of that ([`SinkHandle::room_now`]): a caller that gives the worker its
    /// turn first keeps a burst in memory instead of writing it to the spool and reading it
    /// back.
    pub async fn room(&self, n: usize) {
        let n = n.min(self.tx.max_capacity());
        if self.room_now().is_none_or(|room| room.free >= n) {
            return;
        }
        // The permits are only counted, never used: dropped, they go back to the queue.
        drop(self.tx.reserve_many(n).await);
    }

    fn spill(&mut self, r: Record) {
        let s = &*self.shared;
        match s.spool.append(std::slice::from_ref(&r)) {
            Ok(()) => {
                add(&s.stats.spooled, 1);
                if let Some(line) = self.spool_problem.cleared("the spool is written again") {
                    report::log(&s.name, &line);
                }
                s.spilled.notify_one();
            }
            Err(e) => {
                add(&s.stats.dropped, 1);
                if !matches!(e, SpoolError::Full { .. }) {
                    add(&s.stats.spool_errors, 1);
                }
                let what = format!(
                    "records its queue cannot hold are dropped (counted in `dropped`): {e}"
                );
                if let Some(line) = self.spool_problem.occurred(&what, Instant::now()) {
                    report::log(&s.name, &line);
                }
                // The worker may catch up from what is already spooled.
                s.spilled.notify_one();
            }
        }
    }
}

/// How long a batch waits for the records right behind its first, whatever the sink's linger.
const GATHER: Duration = Duration::from_millis(1);
/// Batches a sink delivers in a row while more are queued, before other tasks have a turn.
const BURST_BATCHES: usize = 32;

/// The consuming half: the task that delivers.
pub struct SinkWorker {
    shared: Arc<Shared>,
    sink: Sink,
    fields: FieldFilters,
    rx: mpsc::Receiver<Record>,
    dead_letter: DeadLetter,
    batch_size: usize,
    linger: Duration,
    /// The destination failing, said once then summarized.
    failing: Problem,
    /// Records refused for good, said once then summarized.
    refusing: Problem,
    spool_problem: Problem,
}

/// Builds the two halves of the sink `cfg` declares; `dir` holds its spool and dead-letter
/// file (created 0700 where missing; a link or a foreign file in it is an error naming it).
/// `spool_cap` and `dead_letter_cap` are in bytes.
pub fn pipeline(
    cfg: &SinkConfig,
    sink: Sink,
    fields: FieldFilters,
    dir: &std::path::Path,
    spool_cap: u64,
    dead_letter_cap: u64,
) -> Result<(SinkHandle, SinkWorker), FsError> {
    let dir = TrustedDir::create(dir)?;
    let spool = Spool::open(&dir, spool_cap)?;
    let dead_letter = DeadLetter::open(dir, dead_letter_cap)?;
    let (tx, rx) = mpsc::channel(cfg.queue_size.max(1));
    let shared = Arc::new(Shared {
        name: cfg.name.clone(),
        spilling: AtomicBool::new(spool.pending() > 0),
        spool,
        closed: AtomicBool::new(false),
        spilled: Notify::new(),
        stats: SinkStats::default(),
    });
    Ok((
        SinkHandle {
            shared: shared.clone(),
            tx,
            rate: (cfg.rate_limit > 0).then(|| (cfg.rate_limit, Instant::now(), 0)),
            spool_problem: Problem::default(),
        },
        SinkWorker {
            shared,
            sink,
            fields,
            rx,
            dead_letter,
            batch_size: cfg.batch_size.max(1),
            linger: Duration::from_millis(cfg.linger_ms),
            failing: Problem::default(),
            refusing: Problem::default(),
            spool_problem: Problem::default(),
        },
    ))
}

/// Checks the positions a sink reported against the batch: each inside it, none twice.
fn check_positions(
    retry: &[usize],
    rejected: &[(usize, Reason)],
    len: usize,
) -> Result<(), String> {
    let mut seen = vec![false; len];
    for &i in retry.iter().chain(rejected.iter().map(|(i, _)| i)) {
        match seen.get_mut(i) {
            None => {
                return Err(format!(
                    "the destination reported position {i} in a batch of {len}"
                ))
            }
            Some(true) => {
                return Err(format!(
                    "the destination reported position {i} twice in a batch of {len}"
                ))
            }
            Some(s) => *s = true,
        }
    }
    Ok(())
}

impl SinkWorker {
    fn log(&self, line: &str) {
        report::log(&self.shared.name, line);
    }

    /// Writes refused records with their reasons.
    fn dead_letter(&mut self, refused: &[(&Record, &str)]) {
        let Some((_, first)) = refused.first() else {
            return;
        };
        let what = format!(
            "refused for good ({first}); kept in {}",
            self.dead_letter.dir().join(DEAD_LETTER).display()
        );
        if let Some(line) = self.refusing.occurred(&what, Instant::now()) {
            self.log(&line);
        }
        let letters: Vec<(Letter<'_>, &str)> = refused
            .iter()
            .map(|(r, why)| (Letter::Record(r), *why))
            .collect();
        let name = self.shared.name.clone();
        let w = self.dead_letter.write(&letters, |l| report::log(&name, l));
        add(&self.shared.stats.dead_lettered, w.written);
        add(&self.shared.stats.dead_letter_dropped, w.dropped);
    }

    /// The output is gone for good: say so once, and count what it will not get.
    fn close(&mut self, why: &str, lost: u64) {
        let s = &self.shared;
        s.closed.store(true, Ordering::Release);
        let mut lost = lost;
        while self.rx.try_recv().is_ok() {
            lost += 1;
        }
        add(&s.stats.dropped, lost);
        self.log(&format!(
            "{why}: no longer written; what would have gone there is counted as dropped (the agent keeps running and enforcing)"
        ));
    }

    /// Delivers `batch` until every record arrived or was refused for good; returns what is
    /// left when the agent is stopping and a delivery failed, or when it abandons the delivery
    /// in flight.
    async fn deliver_all(&mut self, mut batch: Vec<Record>, stop: &mut StopSignal) -> Vec<Record> {
        if !self.fields.is_empty() {
            batch = batch.into_iter().map(|r| self.fields.apply(r)).collect();
        }
        // Each batch still to send, with how many times the destination cut it off.
        let mut todo: Vec<(Vec<Record>, u32)> = vec![(batch, 0)];
        let left = |todo: Vec<(Vec<Record>, u32)>| todo.into_iter().flat_map(|(b, _)| b).collect();
        let mut backoff = BACKOFF_MIN;
        while let Some((b, cuts)) = todo.pop() {
            let outcome = tokio::select! {
                d = self.sink.deliver(&b) => d,
                () = stop.abandoned() => {
                    todo.push((b, cuts));
                    return left(todo);
                }
            };
            let outcome = match outcome {
                Delivery::Partial { retry, rejected } => {
                    match check_positions(&retry, &rejected, b.len()) {
                        Ok(()) => Delivery::Partial { retry, rejected },
                        Err(why) => Delivery::Retry(why),
                    }
                }
                o => o,
            };
            let pause = match outcome {
                Delivery::Delivered => {
                    add(&self.shared.stats.delivered, b.len() as u64);
                    if let Some(line) = self.failing.cleared("delivering again") {
                        self.log(&line);
                    }
                    backoff = BACKOFF_MIN;
                    continue;
                }
                Delivery::Closed(why) => {
                    let lost = b.len() + todo.iter().map(|(b, _)| b.len()).sum::<usize>();
                    self.close(&why, lost as u64);
                    return Vec::new();
                }
                Delivery::TooLarge if b.len() > 1 => {
                    halve(&mut todo, b);
                    continue;
                }
                Delivery::CutOff(why) if cuts + 1 >= CUTS_BEFORE_SPLIT => {
                    // Cut off every time: something in it, not the moment. The halves go at
                    // once, and a record cut off alone that often is refused.
                    if b.len() > 1 {
                        halve(&mut todo, b);
                        add(&self.shared.stats.retries, 1);
                    } else {
                        let why = format!("{why}, {CUTS_BEFORE_SPLIT} times, alone");
                        self.dead_letter(&[(&b[0], &why)]);
                    }
                    continue;
                }
                Delivery::TooLarge => {
                    self.dead_letter(&[(&b[0], "larger than the destination accepts, alone")]);
                    continue;
                }
                Delivery::Partial { retry, rejected } => {
                    let refused: Vec<(&Record, &str)> =
                        rejected.iter().map(|(i, why)| (&b[*i], &**why)).collect();
                    self.dead_letter(&refused);
                    let delivered = b.len() - retry.len() - rejected.len();
                    add(&self.shared.stats.delivered, delivered as u64);
                    if retry.is_empty() {
                        continue;
                    }
                    todo.push((retry.iter().map(|i| b[*i].clone()).collect(), 0));
                    add(&self.shared.stats.retries, 1);
                    jitter(backoff)
                }
                Delivery::Retry(ref why) | Delivery::CutOff(ref why) => {
                    if let Some(line) = self
                        .failing
                        .occurred(&format!("{why}; retrying"), Instant::now())
                    {
                        self.log(&line);
                    }
                    add(&self.shared.stats.retries, 1);
                    // A cut-off batch is tried again soon: its own count, not the sink's
                    // backoff, sets the pause, so a record that is cut off every time is
                    // found in seconds, not minutes.
                    let (cuts, pause) = match outcome {
                        Delivery::CutOff(_) => (cuts + 1, jitter(BACKOFF_MIN * 2u32.pow(cuts))),
                        _ => (cuts, jitter(backoff)),
                    };
                    todo.push((b, cuts));
                    if stop.finishing() {
                        return left(todo);
                    }
                    pause
                }
            };
            backoff = (backoff * 2).min(BACKOFF_MAX);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = stop.abandoned() => return left(todo),
            }
        }
        Vec::new()
    }

    /// One round of the spool: the oldest lines, delivered or dead-lettered, then consumed.
    /// Returns false when the worker must stop (the agent stops and the delivery failed).
    async fn drain_spool(&mut self, stop: &mut StopSignal) -> bool {
        let peeked = match self.shared.spool.peek(self.batch_size) {
            Ok(p) => p,
            Err(e) => {
                let what = format!("cannot read the spool: {e}");
                if let Some(line) = self.spool_problem.occurred(&what, Instant::now()) {
                    self.log(&line);
                }
                return tokio::select! {
                    () = tokio::time::sleep(BACKOFF_MAX) => true,
                    () = stop.finished() => false,
                };
            }
        };
        if !peeked.bad.is_empty() {
            let name = self.shared.name.clone();
            let w = self
                .dead_letter
                .write_lines(&peeked.bad, |l| report::log(&name, l));
            add(&self.shared.stats.dead_lettered, w.written);
            add(&self.shared.stats.dead_letter_dropped, w.dropped);
        }
        if !peeked.records.is_empty() {
            let left = self.deliver_all(peeked.records.clone(), stop).await;
            if !left.is_empty() {
                return false; // still in the spool: nothing to save
            }
        }
        if let Err(e) = self.shared.spool.commit(&peeked) {
            let what = format!("cannot update the spool: {e}");
            if let Some(line) = self.spool_problem.occurred(&what, Instant::now()) {
                self.log(&line);
            }
        }
        true
    }

    /// Runs until `stop` says finish and the memory queue is empty; what could not be delivered
    /// by then is spooled for the next run.
    pub async fn run(mut self, mut stop: StopSignal) {
        let mut burst = 0;
        loop {
            if self.shared.closed.load(Ordering::Acquire) {
                return;
            }
            if stop.is_abandoned() {
                self.save(Vec::new());
                return;
            }
            // The spool holds the oldest records, except for those queued in memory before
            // spilling began, which are older still.
            if self.shared.spool.pending() > 0 {
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
                } else if stop.finishing() || !self.drain_spool(&mut stop).await {
                    // What is spooled stays there for the next run.
                    return;
                }
                if self.shared.spool.pending() == 0 {
                    self.shared.spilling.store(false, Ordering::Release);
                }
                // A spool of many batches to a sink that answers at once (a file) must not hold
                // the agent's only thread.
                tokio::task::yield_now().await;
                continue;
            }
            let first = tokio::select! {
                biased;
                r = self.rx.recv() => r,
                () = self.shared.spilled.notified() => continue,
                () = stop.finished() => None,
            };
            let Some(first) = first else {
                return;
            };
            let mut batch = Vec::with_capacity(self.batch_size.min(self.rx.len() + 1));
            batch.push(first);
            let deadline = tokio::time::Instant::now() + self.linger;
            // What is queued already; when that is nothing, what comes within GATHER: a
            // trickle's records are taken together, not woken for one by one. A burst already
            // queued goes at once: waiting for it to fill the batch would let the queue fill
            // behind it and spill.
            self.take_queued(&mut batch);
            if batch.len() == 1 && self.batch_size > 1 {
                tokio::select! {
                    () = tokio::time::sleep(GATHER) => {}
                    () = stop.finished() => {}
                }
                self.take_queued(&mut batch);
            }
            while batch.len() < self.batch_size {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(r)) => batch.push(r),
                    Ok(None) | Err(_) => break,
                }
            }
            let left = self.deliver_all(batch, &mut stop).await;
            if !left.is_empty() {
                self.save(left);
                return;
            }
            // The agent's loop queues a turn's records at once: a burst's batches are delivered
            // together, up to a turn's worth, before the loop has its turn again. Otherwise the
            // sink takes one batch per turn of the loop, falls behind and spills to its spool.
            burst += 1;
            if burst >= BURST_BATCHES || self.rx.is_empty() {
                burst = 0;
                tokio::task::yield_now().await;
            }
        }
    }

    /// Moves the records already queued into `batch`, up to the batch size.
    fn take_queued(&mut self, batch: &mut Vec<Record>) {
        while batch.len() < self.batch_size {
            match self.rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
    }

    /// Spools what is left in memory at shutdown.
    fn save(&mut self, mut left: Vec<Record>) {
        while let Ok(r) = self.rx.try_recv() {
            left.push(r);
        }
        if left.is_empty() || self.shared.closed.load(Ordering::Acquire) {
            return;
        }
        match self.shared.spool.append(&left) {
            Ok(()) => add(&self.shared.stats.spooled, left.len() as u64),
            Err(e) => {
                add(&self.shared.stats.dropped, left.len() as u64);
                self.log(&format!(
                    "{} records could not be spooled at shutdown: {e}",
                    left.len()
                ));
            }
        }
    }
}

/// `d` give or take a quarter, so that many agents do not retry in step.
fn jitter(d: Duration) -> Duration {
    let ms = d.as_millis() as u64;
    Duration::from_millis(ms - ms / 4 + fastrand::u64(0..=ms / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_outside_the_batch_or_repeated_are_refused() {
        assert!(check_positions(&[0], &[(2, "x".into())], 3).is_ok());
        assert!(check_positions(&[3], &[], 3)
            .unwrap_err()
            .contains("position 3 in a batch of 3"));
        assert!(check_positions(&[1], &[(1, "x".into())], 3)
            .unwrap_err()
            .contains("twice"));
    }

    use crate::{
        config::SinkKind,
        sinks::stdout::{StdoutConfig, StdoutSink},
    };

    fn rec(n: u64) -> Record {
        Record {
            time_ns: n,
            kind: "process_exec",
            exec_id: format!("e{n}").into(),
            json: format!("{{\"n\":{n}}}").into_bytes().into(),
        }
    }

    fn scratch(tag: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("vigil-pipe-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[tokio::test]
    async fn a_closed_output_stops_being_tried_and_counts_what_it_no_longer_gets() {
        let dir = scratch("closed");
        let (r, w) = std::io::pipe().unwrap();
        drop(r);
        let cfg = SinkConfig::new("stdout", SinkKind::Stdout(StdoutConfig::default()));
        let sink = Sink::Stdout(
            StdoutSink::with_writer(&StdoutConfig::default(), "stdout", Box::new(w)).unwrap(),
        );
        let (mut handle, worker) =
            pipeline(&cfg, sink, FieldFilters::default(), &dir, 1 << 30, 1 << 20).unwrap();
        let (stop, signal) = stop_signal();
        let task = tokio::spawn(worker.run(signal));
        for n in 0..10 {
            handle.submit(rec(n));
        }
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the worker of a closed output ends")
            .unwrap();
        for n in 10..20 {
            handle.submit(rec(n));
        }
        stop.finish();
        let stats = handle.stats();
        assert_eq!(stats["dropped"], 20, "{stats}");
        assert_eq!(stats["delivered"], 0, "{stats}");
        assert_eq!(stats["spooled"], 0, "not spooled forever: {stats}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_full_spool_drops_and_counts_without_failing_the_caller() {
        let dir = scratch("full");
        let mut cfg = SinkConfig::new("s", SinkKind::Stdout(StdoutConfig::default()));
        cfg.queue_size = 1;
        let sink = Sink::Stdout(
            StdoutSink::with_writer(
                &StdoutConfig::default(),
                "stdout",
                Box::new(std::io::sink()),
            )
            .unwrap(),
        );
        let line = rec(1).to_line().len() as u64;
        let (mut handle, _worker) =
            pipeline(&cfg, sink, FieldFilters::default(), &dir, line * 3, 1 << 20).unwrap();
        // No worker runs: one record fills the queue, three the spool, the rest are dropped.
        for n in 0..10 {
            handle.submit(rec(n));
        }
        let stats = handle.stats();
        assert_eq!(stats["spooled"], 3, "{stats}");
        assert_eq!(stats["dropped"], 6, "{stats}");
        assert_eq!(stats["spool_errors"], 0, "a cap is not an error: {stats}");
        assert_eq!(stats["spool_pending"], 3, "{stats}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
