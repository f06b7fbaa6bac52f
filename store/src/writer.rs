//! The store's writer: a thread of its own that takes batches of events from a bounded queue,
//! compresses them at once and hands them back, writes their rows when the loop pauses
//! ([`crate::deferred`]), commits them in large transactions, and enforces retention between
//! commits.
//!
//! The agent's loop only files each event into a batch and tries to queue full batches
//! ([`EventStore::offer_encoded`], [`crate::batch`]): when the writer falls behind (a slow
//! disk, a burst), the queue fills and further events are shed, counted and reported, instead
//! of the loop waiting and the kernel's ring buffer filling behind it. Enforcement and the
//! other outputs never depend on the disk.

use std::{
    num::NonZeroUsize,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use lru::LruCache;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use vigil_events::Event;
use vigil_safe_fs::TrustedDir;

use crate::{
    batch::{Batch, Records, CAPACITY, HAND_OFF_BYTES},
    codec::{self, Compressor},
    deferred::{Compressed, Deferred},
    ledger::{LastRun, Ledger},
    row::{binary_name, columns, EventColumns, ProcessColumns},
    StoreError,
};

/// The store's settings (the configuration file's `store:` section).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Whether the agent keeps events (on by default).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Events older than this many hours are removed.
    #[serde(default = "default_max_age_hours")]
    pub max_age_hours: u64,
    /// The database is kept under this many MiB (the oldest events go first).
    #[serde(default = "default_max_size_mib")]
    pub max_size_mib: u64,
    /// Events waiting for the writer before further ones are shed.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn yes() -> bool {
    true
}
fn default_max_age_hours() -> u64 {
    7 * 24
}
fn default_max_size_mib() -> u64 {
    2048
}
fn default_queue() -> usize {
    65_536
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            enabled: true,
            max_age_hours: default_max_age_hours(),
            max_size_mib: default_max_size_mib(),
            queue: default_queue(),
        }
    }
}

impl StoreConfig {
    /// Refuses settings that cannot work, naming the field.
    pub fn check(&self) -> Result<(), String> {
        if self.max_age_hours == 0 {
            return Err("store.max_age_hours: at least 1 (or enabled: false)".into());
        }
        if self.max_size_mib < 16 {
            return Err("store.max_size_mib: at least 16 (or enabled: false)".into());
        }
        if !(1024..=1 << 22).contains(&self.queue) {
            return Err("store.queue: between 1024 and 4194304 events".into());
        }
        Ok(())
    }
}

/// The most bytes of events the queue holds before it sheds.
pub const MAX_QUEUE_BYTES: u64 = 64 << 20;
/// Batches queued at most. The queue sheds by its bytes first: it holds at most
/// [`MAX_QUEUE_BYTES`] in full batches of [`HAND_OFF_BYTES`] and one smaller batch (the loop's
/// timer hands one over only to an empty queue). Twice that leaves the channel never the bound.
const MAX_QUEUED_BATCHES: usize = 2 * (MAX_QUEUE_BYTES as usize / HAND_OFF_BYTES);
/// Emptied batches the loop keeps to fill again (each about 1.5 MiB): the writer takes the
/// queue every few milliseconds while events flow and hands each batch back once compressed,
/// so a storm has a few in flight (more while the writer is held up, each then allocated
/// fresh); those are written in pages already mapped, not faulted in fresh.
const SPARE_BUFFERS: usize = 4;

/// Events in one transaction (a deferred batch is written whole: a few more).
const MAX_BATCH: usize = 20_000;
/// The shortest time between two commits while events trickle in: fewer, larger
/// transactions.
const COMMIT_GAP: Duration = Duration::from_millis(200);
/// How often the writer takes the batches queued (compresses them and defers their rows):
/// their buffers go back to the loop soon after it filled them.
const TAKE_GAP: Duration = Duration::from_millis(20);
/// ... and while events flow: what the loop filled is read while still in the cache.
const FLOWING_TAKE_GAP: Duration = Duration::from_millis(2);
/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(10);
/// Events removed per retention statement: the writer goes back to its queue between them.
const RETENTION_CHUNK: i64 = 20_000;
/// The memory of emptied deferred batches kept for the next burst (a batch of events that
/// compress badly is let go, not kept at its size).
const EMPTIED_BYTES: usize = 8 << 20;
/// Process and path rows remembered by the writer.
const ROW_CACHE: usize = 16_384;

/// What a previous agent's crash cost, found when the store opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Recovery {
    /// The run that wrote the ledger (0: none).
    pub previous_run: i64,
    /// Whether that run closed the store after its last commit.
    pub clean: bool,
    /// Events it handed to the store.
    pub offered: u64,
    /// Events it committed.
    pub committed: u64,
    /// Events its queue shed (counted and reported by that run).
    pub shed: u64,
    /// Events taken but never committed: lost with that run.
    pub lost: u64,
}

/// The store's counters.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Events handed to the store.
    pub offered: AtomicU64,
    /// Events shed because the queue was full.
    pub shed: AtomicU64,
    /// Events committed.
    pub committed: AtomicU64,
    /// Events that could not be written (counted, logged once).
    pub failed: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Events removed by retention because of their age.
    pub expired: AtomicU64,
    /// Events removed before their age because the store reached its size.
    pub evicted: AtomicU64,
    /// The oldest event kept after the last size eviction (ns since the epoch).
    pub oldest_kept: AtomicU64,
    /// Events queued for the writer (in the loop's batch or handed over).
    pub queued: AtomicU64,
    /// The memory of the batches handed over that the loop has not taken back yet (queued,
    /// being compressed, or compressed and not yet taken back), by their allocated capacity.
    pub held_bytes: AtomicU64,
}

/// A snapshot of the counters, for the agent's stats and the API's health.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Events handed to the store.
    pub offered: u64,
    /// Events shed because the writer fell behind.
    pub shed: u64,
    /// Events committed.
    pub committed: u64,
    /// Events that could not be written.
    pub failed: u64,
    /// Transactions committed.
    pub commits: u64,
    /// Events removed by retention because of their age.
    pub expired: u64,
    /// Events removed before their age because the store reached its size (a flood can push
    /// older events out: this says it happened).
    pub evicted: u64,
    /// The oldest event kept after the last such eviction, ns since the epoch.
    pub oldest_kept_ns: u64,
    /// What the previous run lost.
    pub recovery: Recovery,
    /// The last error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The store, as the agent holds it.
pub struct EventStore {
    tx: Option<SyncSender<Batch>>,
    /// Batches the writer is done with, to be taken back.
    spare: Receiver<Batch>,
    /// Batches taken back and emptied, to be filled again.
    reusable: Vec<Batch>,
    /// The batch the loop is filling.
    pending: Batch,
    /// The most events queued before further ones are shed (`store.queue`).
    max_queued: u64,
    /// Events offered and shed so far: counted by the loop alone, written to the ledger and
    /// the counters as they change.
    offered: u64,
    shed: u64,
    ledger: Arc<Ledger>,
    counters: Arc<StoreCounters>,
    last_error: Arc<std::sync::Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    /// What the previous run lost, found at open.
    pub recovery: Recovery,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl EventStore {
    /// Opens (or creates) the store in `dir` (created 0700, checked as every directory root
    /// writes in), recovers what a crashed run left, and starts the writer.
    pub fn open(dir: &Path, config: &StoreConfig) -> Result<EventStore, StoreError> {
        let dir = TrustedDir::create(dir)?;
        // The names are checked before SQLite opens them: a planted link or a file another
        // user owns or may write is refused with the fix, not only not followed.
        for name in [
            crate::DB_FILE,
            "events.db-wal",
            "events.db-shm",
            crate::LEDGER_FILE,
        ] {
            dir.check_entry(name)?;
        }
        let path = dir.join(crate::DB_FILE);
        // The ledger's lock first: the database is touched by one agent at a time.
        let (ledger, last) = Ledger::open(&dir)?;
        let conn = crate::schema::open_writer(&path)?;
        let recovery = recover(&conn, last)?;
        conn.execute("INSERT INTO runs(started) VALUES (?1)", [now_ns() as i64])?;
        let run = conn.last_insert_rowid();
        ledger.start(run);
        let ledger = Arc::new(ledger);
        let (tx, rx) = mpsc::sync_channel(MAX_QUEUED_BATCHES);
        // Room for every batch the queue can hold: the writer never has to let one go.
        let (spare_tx, spare) = mpsc::sync_channel(MAX_QUEUED_BATCHES);
        let counters = Arc::new(StoreCounters::default());
        let last_error = Arc::new(std::sync::Mutex::new(None));
        let mut writer = Writer {
            compressor: Compressor::load(&conn)?,
            deferred: Deferred::default(),
            columns_zstd: zstd::bulk::Compressor::new(1).map_err(codec::zstd_error)?,
            columns_unzstd: zstd::bulk::Decompressor::new().map_err(codec::zstd_error)?,
            columns: Vec::new(),
            emptied: Vec::new(),
            emptied_bytes: 0,
            conn,
            run,
            processes: LruCache::new(NonZeroUsize::new(ROW_CACHE).unwrap_or(NonZeroUsize::MIN)),
            paths: LruCache::new(NonZeroUsize::new(ROW_CACHE).unwrap_or(NonZeroUsize::MIN)),
            counters: counters.clone(),
            last_error: last_error.clone(),
            max_age: Duration::from_secs(config.max_age_hours.saturating_mul(3600)),
            max_bytes: config.max_size_mib.saturating_mul(1 << 20),
        };
        let thread = std::thread::Builder::new()
            .name("vigil-store".into())
            .spawn(move || {
                // The writer yields the CPU to the workload and to the agent's loop: behind,
                // it sheds (counted), never they wait for it.
                // SAFETY: setpriority on this thread (a tid is a PRIO_PROCESS who on Linux).
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
                }
                writer.run(rx, spare_tx)
            })
            .map_err(|e| StoreError::Ledger {
                path: path.clone(),
                source: e,
            })?;
        Ok(EventStore {
            tx: Some(tx),
            spare,
            reusable: Vec::with_capacity(SPARE_BUFFERS),
            pending: Batch::allocated(),
            max_queued: config.queue as u64,
            offered: 0,
            shed: 0,
            ledger,
            counters,
            last_error,
            thread: Some(thread),
            path,
            recovery,
        })
    }

    /// The database's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Encodes `event` and hands it to the writer ([`EventStore::offer_encoded`]).
    pub fn offer(&mut self, event: &Event) {
        // Events always serialize (their types have no map with non-string keys).
        let json = serde_json::to_vec(event).unwrap_or_default();
        let time_ns = vigil_events::time::parse_rfc3339_ns(&event.time).unwrap_or(0);
        self.offer_encoded(event, time_ns, &json);
    }

    /// Files `event` and its JSON, as the exporters encoded it, into the batch the writer is
    /// handed next, or sheds it (counted) if the writer is behind. Never waits: a full batch is
    /// handed over with a `try_send`.
    pub fn offer_encoded(&mut self, event: &Event, time_ns: u64, json: &[u8]) {
        if self.tx.is_none() {
            return;
        }
        self.offered += 1;
        self.ledger.set_offered(self.offered);
        self.counters.offered.store(self.offered, Ordering::Relaxed);
        // Bounded in bytes as well as in events: events of long arguments and paths cannot
        // make the queue the agent's memory.
        let (queued, bytes) = self.backlog();
        // An event's columns are a part of its JSON, so at most as long.
        let size = 2 * json.len() as u64 + 12;
        if queued >= self.max_queued
            || bytes + size > MAX_QUEUE_BYTES
            || !self
                .pending
                .push(&columns(event, time_ns), event.shared_processes(), json)
        {
            self.shed(1);
            return;
        }
        if self.pending.size() >= HAND_OFF_BYTES {
            self.send();
        }
    }

    /// Whether the writer has at most half of what its queue may hold still to write: a loop
    /// that can wait (its ring buffer has room) reads no further burst before it does, so that
    /// a burst is kept whole instead of shed.
    pub fn has_room(&mut self) -> bool {
        // The bytes of the batches the writer is done with leave the bound only when taken back.
        self.take_back();
        let (queued, bytes) = self.backlog();
        queued < self.max_queued / 2 && bytes < MAX_QUEUE_BYTES / 2
    }

    /// The events and bytes not yet written: queued for the writer, and in the batch being
    /// filled.
    fn backlog(&self) -> (u64, u64) {
        let c = &self.counters;
        (
            c.queued.load(Ordering::Relaxed) + self.pending.events,
            c.held_bytes.load(Ordering::Relaxed) + self.pending.held() as u64,
        )
    }

    /// Hands the batch being filled to the writer, unless the writer has not taken the last
    /// one yet (the batch then grows until it is full). The agent calls it on its timer, so
    /// that a quiet node's events reach the database soon (the writer writes a quiet loop's
    /// events within its commit gap, [`crate::deferred`]'s bounds otherwise); a writer
    /// held up (retention, a slow disk) finds one batch per stall, not one per tick, and the
    /// queue sheds by its bounds in events and bytes only.
    pub fn hand_off(&mut self) {
        self.take_back();
        if self.counters.queued.load(Ordering::Relaxed) == 0 {
            self.send();
        }
    }

    /// Hands the batch being filled to the writer.
    fn send(&mut self) {
        if self.pending.events == 0 {
            return;
        }
        self.take_back();
        let Some(tx) = &self.tx else { return };
        let next = self.reusable.pop().unwrap_or_else(Batch::allocated);
        let mut batch = std::mem::replace(&mut self.pending, next);
        batch.seal();
        let (n, bytes) = (batch.events, batch.held() as u64);
        self.counters.queued.fetch_add(n, Ordering::Relaxed);
        self.counters.held_bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(batch) {
            // Full only when the writer is gone, or has taken nothing while the loop filled
            // hundreds of batches: what it cannot take is shed, counted.
            self.counters.queued.fetch_sub(n, Ordering::Relaxed);
            self.counters.held_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.shed(n);
        }
    }

    /// Takes back the batches the writer is done with: their bytes leave the queue's bound
    /// only now. A few are kept to be filled again.
    fn take_back(&mut self) {
        while let Ok(batch) = self.spare.try_recv() {
            self.counters
                .held_bytes
                .fetch_sub(batch.held() as u64, Ordering::Relaxed);
            if self.reusable.len() < SPARE_BUFFERS {
                self.reusable.extend(batch.reuse());
            }
        }
    }

    /// Counts `events` the store could not take, in the ledger and for `GetHealth`.
    fn shed(&mut self, events: u64) {
        self.shed += events;
        self.ledger.set_shed(self.shed);
        self.counters.shed.store(self.shed, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            offered: c.offered.load(Ordering::Relaxed),
            shed: c.shed.load(Ordering::Relaxed),
            committed: c.committed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            commits: c.commits.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
            oldest_kept_ns: c.oldest_kept.load(Ordering::Relaxed),
            recovery: self.recovery,
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    /// Commits what is queued, stops the writer and marks the ledger closed.
    pub fn close(mut self) -> StoreStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        self.send();
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            // A writer that died did not commit what it took: the ledger stays open, and the
            // next agent counts those events as lost.
            if t.join().is_ok() {
                self.ledger.close();
            }
        }
    }
}

impl Drop for EventStore {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the last run left: the ledger's count against the run's committed count.
fn recover(conn: &Connection, last: Option<LastRun>) -> Result<Recovery, StoreError> {
    let Some(last) = last else {
        return Ok(Recovery::default());
    };
    let committed: i64 = conn
        .query_row(
            "SELECT committed FROM runs WHERE id = ?1",
            [last.run],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let committed = committed.max(0) as u64;
    let lost = if last.closed {
        0
    } else {
        last.offered
            .saturating_sub(last.shed)
            .saturating_sub(committed)
    };
    conn.execute(
        "UPDATE runs SET lost = ?2 WHERE id = ?1",
        params![last.run, lost as i64],
    )?;
    Ok(Recovery {
        previous_run: last.run,
        clean: last.closed,
        offered: last.offered,
        committed,
        shed: last.shed,
        lost,
    })
}

struct Writer {
    conn: Connection,
    compressor: Compressor,
    /// Batches compressed, their rows not written yet.
    deferred: Deferred,
    /// The batches' columns, compressed as they are deferred ...
    columns_zstd: zstd::bulk::Compressor<'static>,
    /// ... and decompressed when their rows are written.
    columns_unzstd: zstd::bulk::Decompressor<'static>,
    /// The writer's buffer: a batch compressed, before it is copied to what waits; its
    /// columns decompressed, while its rows are written.
    columns: Vec<u8>,
    /// Deferred batches written, emptied to be filled again: a burst's buffers serve the next.
    emptied: Vec<Compressed>,
    /// Their memory (their sizes do not change while they are kept).
    emptied_bytes: usize,
    run: i64,
    processes: LruCache<String, i64>,
    paths: LruCache<String, i64>,
    counters: Arc<StoreCounters>,
    last_error: Arc<std::sync::Mutex<Option<String>>>,
    max_age: Duration,
    max_bytes: u64,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Batch>, spare: SyncSender<Batch>) {
        // Retention first: a store that grew past its limits while no agent ran is cut now.
        let mut last_retention: Option<Instant> = None;
        // The transaction being filled: its events, and when it began.
        let mut filling: Option<(u64, Instant)> = None;
        let mut open = true;
        // Something was queued last time.
        let mut flowing = false;
        while open || !self.deferred.is_empty() || filling.is_some() {
            if filling.is_none() && last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY) {
                if let Err(e) = self.retention() {
                    self.error(format!("retention: {e}"));
                }
                last_retention = Some(Instant::now());
            }
            if filling.is_none() {
                // With no transaction open (a rollback never takes a dictionary back); now if
                // idle (nothing taken last time, nothing waiting), or once it waited too long.
                let idle = !flowing && self.deferred.is_empty();
                if let Err(e) = self.compressor.train_when_due(&self.conn, idle) {
                    self.error(e.to_string());
                }
            }
            // The writer never waits on the queue itself: the loop's hand-offs wake no one.
            // Rows due to be written are written at once.
            if open && !self.deferred.due(Instant::now(), false) {
                std::thread::sleep(if flowing { FLOWING_TAKE_GAP } else { TAKE_GAP });
            }
            let mut took = 0;
            while open && !self.deferred.full() {
                match rx.try_recv() {
                    Ok(batch) => {
                        took += batch.events;
                        self.counters
                            .queued
                            .fetch_sub(batch.events, Ordering::Relaxed);
                        match self.compress(&batch) {
                            Ok(c) => self.deferred.push(c, Instant::now()),
                            Err(e) => self.fail(batch.events, e),
                        }
                        // Back to the loop, which fills it again and takes its bytes out of the
                        // queue's bound (the channel has room for all the queue holds).
                        if let Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) =
                            spare.try_send(batch)
                        {
                            self.counters
                                .held_bytes
                                .fetch_sub(batch.held() as u64, Ordering::Relaxed);
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            flowing = took > 0;
            // At most a transaction's events each turn: the queue is taken between them.
            if self.deferred.due(Instant::now(), !open) {
                while filling.map_or(0, |(events, _)| events) < MAX_BATCH as u64 {
                    let Some(mut batch) = self.deferred.pop() else {
                        break;
                    };
                    self.write(&batch, &mut filling);
                    if self.emptied_bytes + batch.size() <= EMPTIED_BYTES {
                        batch.clear();
                        self.emptied_bytes += batch.size();
                        self.emptied.push(batch);
                    }
                }
            }
            if let Some((events, since)) = filling {
                let last = !open && self.deferred.is_empty();
                if last || events >= MAX_BATCH as u64 || since.elapsed() >= COMMIT_GAP {
                    self.commit(events);
                    filling = None;
                }
            }
        }
    }

    fn error(&self, msg: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(msg);
        }
    }

    /// Writes the rows of `batch` into the transaction being filled (begun if none is).
    fn write(&mut self, batch: &Compressed, filling: &mut Option<(u64, Instant)>) {
        let (events, since) = match *filling {
            Some(f) => f,
            None => {
                if let Err(e) = self.conn.execute_batch("BEGIN") {
                    return self.abort(batch.events, e.into());
                }
                (0, Instant::now())
            }
        };
        let columns = &mut self.columns;
        columns.clear();
        columns.reserve(batch.columns_len);
        let unpacked = self
            .columns_unzstd
            .decompress_to_buffer(&batch.columns, columns);
        if unpacked.ok() != Some(batch.columns_len) {
            return self.abort(
                events + batch.events,
                StoreError::Batch {
                    reason: "its columns do not decompress".into(),
                },
            );
        }
        let mut writer = BatchWriter {
            tx: &self.conn,
            processes: &mut self.processes,
            paths: &mut self.paths,
        };
        // One body per record, and no body left over: the columns and the JSON the bodies
        // came from were filed together, and a damaged batch is refused whole.
        let (mut ends, mut start) = (batch.ends.iter(), 0);
        let written = Records::new(columns)
            .try_for_each(|columns| {
                let columns = columns?;
                let &(dict, end) = ends.next().ok_or_else(|| StoreError::Batch {
                    reason: "columns without their event".into(),
                })?;
                let body = batch
                    .bodies
                    .get(start..end)
                    .ok_or_else(|| StoreError::Batch {
                        reason: "a body out of its buffer".into(),
                    })?;
                start = end;
                writer.write(&columns, dict, body)
            })
            .and_then(|()| match ends.len() {
                0 => Ok(()),
                left => Err(StoreError::Batch {
                    reason: format!("the JSON of {left} events without their columns"),
                }),
            });
        *filling = None;
        match written {
            Ok(()) => *filling = Some((events + batch.events, since)),
            Err(e) => self.abort(events + batch.events, e),
        }
    }

    /// Compresses every event of `batch`, one after the other (zstd's tables stay in the
    /// cache from one event to the next), and its columns: the batch can go back to the loop.
    fn compress(&mut self, batch: &Batch) -> Result<Compressed, StoreError> {
        if self.columns.capacity() > 2 * CAPACITY {
            // Grown by huge events: not kept for the batches after them.
            self.columns = Vec::new();
        }
        // Compressed into the writer's own buffer (zstd wants room for the worst case), then
        // copied: what waits holds its bytes, not that room.
        let mut c = self.emptied.pop().unwrap_or_default();
        self.emptied_bytes -= c.size();
        let scratch = &mut self.columns;
        scratch.clear();
        scratch.reserve(zstd::zstd_safe::compress_bound(batch.columns.len()));
        self.columns_zstd
            .compress_to_buffer(&batch.columns, scratch)
            .map_err(codec::zstd_error)?;
        c.columns.extend_from_slice(scratch);
        scratch.clear();
        for json in batch.bodies() {
            let dict = self.compressor.compress_into(json, scratch)?;
            c.ends.push((dict, scratch.len()));
        }
        c.bodies.extend_from_slice(scratch);
        (c.columns_len, c.events) = (batch.columns.len(), batch.events);
        Ok(c)
    }

    /// Commits the transaction being filled, with the run's committed count.
    fn commit(&mut self, events: u64) {
        let committed = self
            .conn
            .execute(
                "UPDATE runs SET committed = committed + ?2 WHERE id = ?1",
                params![self.run, events as i64],
            )
            .and_then(|_| self.conn.execute_batch("COMMIT"));
        match committed {
            Ok(()) => {
                self.counters.committed.fetch_add(events, Ordering::Relaxed);
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.abort(events, e.into()),
        }
    }

    /// Rolls the transaction being filled back whole, counting its `events` as failed, and
    /// forgets the row ids the caches learnt in it. The compressor keeps its dictionary and
    /// its samples: a dictionary is stored outside any transaction of events
    /// ([`Compressor::train_when_due`] runs with none open), so no rollback takes it back.
    fn abort(&mut self, events: u64, e: StoreError) {
        // SQLite may have rolled it back itself (a full disk): nothing to do then.
        let _ = self.conn.execute_batch("ROLLBACK");
        self.fail(events, e);
        self.processes.clear();
        self.paths.clear();
    }

    /// Counts `events` as failed, for `e`.
    fn fail(&self, events: u64, e: StoreError) {
        self.counters.failed.fetch_add(events, Ordering::Relaxed);
        self.error(format!("{events} events not stored: {e}"));
    }

    /// Removes events older than the age limit, then the oldest until the database is under
    /// its size, a chunk at a time, each time with the process and path rows no event names
    /// any more (a flood of processes with long arguments weighs in those rows, not in its
    /// events: the size is measured again after they go, so no more is removed than needed).
    fn retention(&mut self) -> Result<(), StoreError> {
        let cutoff = now_ns().saturating_sub(self.max_age.as_nanos() as u64) as i64;
        let mut expired = 0u64;
        loop {
            let n = self.conn.execute(
                "DELETE FROM events WHERE id IN
                   (SELECT id FROM events WHERE time < ?1 ORDER BY time LIMIT ?2)",
                params![cutoff, RETENTION_CHUNK],
            )? as u64;
            expired += n;
            if n < RETENTION_CHUNK as u64 {
                break;
            }
        }
        if expired > 0 {
            self.counters.expired.fetch_add(expired, Ordering::Relaxed);
            self.remove_orphans()?;
        }
        let mut evicted = 0u64;
        let mut rounds = 0;
        loop {
            let used = self.used_bytes()?;
            if used <= self.max_bytes || rounds >= 200 {
                break;
            }
            // The oldest events in proportion to the excess (to 95% of the limit), so that
            // a store a little over its size loses a little.
            let events: i64 = self
                .conn
                .query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
            let excess = (used - self.max_bytes / 20 * 19) as f64 / used as f64;
            let chunk = ((events as f64 * excess).ceil() as i64).clamp(64, RETENTION_CHUNK);
            let n = self.conn.execute(
                "DELETE FROM events WHERE id IN
                   (SELECT id FROM events ORDER BY time LIMIT ?1)",
                [chunk],
            )? as u64;
            self.remove_orphans()?;
            // Deleted trigrams are tombstones until their segments merge: merged now, so
            // that the size measured next is the size left.
            self.conn.execute_batch(
                "INSERT INTO arguments_text(arguments_text) VALUES ('optimize');
                 INSERT INTO paths_text(paths_text) VALUES ('optimize');",
            )?;
            evicted += n;
            rounds += 1;
            if n == 0 {
                break;
            }
        }
        if evicted > 0 {
            self.counters.evicted.fetch_add(evicted, Ordering::Relaxed);
            let oldest: Option<i64> =
                self.conn
                    .query_row("SELECT min(time) FROM events", [], |r| r.get(0))?;
            self.counters
                .oldest_kept
                .store(oldest.unwrap_or(0).max(0) as u64, Ordering::Relaxed);
        }
        if expired + evicted > 0 {
            // Give the freed pages back to the file system, and let the planner see the data.
            // Each step of incremental_vacuum frees one page: stepped to its end.
            {
                let mut vacuum = self.conn.prepare("PRAGMA incremental_vacuum")?;
                let mut rows = vacuum.query([])?;
                while rows.next()?.is_some() {}
            }
            self.conn.execute_batch("PRAGMA optimize;")?;
            if evicted > 0 {
                // The file itself shrinks once the log is copied back (as far as readers let).
                self.conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            }
        }
        Ok(())
    }

    /// Removes the process and path rows no event names.
    fn remove_orphans(&mut self) -> Result<(), StoreError> {
        // A process with no event of its own stays while a kept process names it as its
        // parent (a tree climbs through it); a chain of such goes leaf by leaf.
        for _ in 0..64 {
            let gone = self.conn.execute(
                "DELETE FROM processes WHERE NOT EXISTS
                   (SELECT 1 FROM events WHERE events.process = processes.id)
                 AND NOT EXISTS
                   (SELECT 1 FROM processes c WHERE c.parent_exec_id = processes.exec_id)",
                [],
            )?;
            if gone == 0 {
                break;
            }
        }
        self.conn.execute(
            "DELETE FROM paths WHERE NOT EXISTS
               (SELECT 1 FROM events WHERE events.path = paths.id)",
            [],
        )?;
        self.processes.clear();
        self.paths.clear();
        Ok(())
    }

    /// Bytes the database's live pages take (freed pages are reused before the file grows),
    /// with what waits in the write-ahead log.
    fn used_bytes(&self) -> Result<u64, StoreError> {
        let (pages, free, size): (i64, i64, i64) = self.conn.query_row(
            "SELECT (SELECT page_count FROM pragma_page_count()),
                    (SELECT freelist_count FROM pragma_freelist_count()),
                    (SELECT page_size FROM pragma_page_size())",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        // A checkpoint as far as readers allow; the frames it could not copy yet (a long
        // search holds them) are pages beside the database's.
        let frames: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok(r.get::<_, i64>(1)? - r.get::<_, i64>(2)?)
            })
            .unwrap_or(0);
        Ok(((pages - free).max(0) + frames.max(0)) as u64 * size.max(0) as u64)
    }
}

/// One transaction's writes.
struct BatchWriter<'a> {
    tx: &'a Connection,
    processes: &'a mut LruCache<String, i64>,
    paths: &'a mut LruCache<String, i64>,
}

impl BatchWriter<'_> {
    fn write(&mut self, c: &EventColumns<'_>, dict: i64, body: &[u8]) -> Result<(), StoreError> {
        // A process keeps its exec id across execve (it names the clone): its exec event
        // brings the new binary and arguments to the row its earlier events made.
        let mut process = None;
        for (i, p) in c.processes.iter().enumerate() {
            let id = self.process_row(p, c.time_ns, i == 0 && c.exec)?;
            process = process.or(Some(id));
        }
        // An event about no process (`rate_limit_info`: records the kernel lost) is filed
        // under the one empty process row, so a search finds the stream's gaps.
        let process = match process {
            Some(p) => p,
            None => self.process_row(&ProcessColumns::default(), c.time_ns, false)?,
        };
        let path = match &c.path {
            Some(p) => Some(self.path_row(p)?),
            None => None,
        };
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO events(time, kind, process, path, daddr, dport, dns, policy, rule,
                                rule_title, level, dict, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        insert.execute(params![
            c.time_ns as i64,
            c.kind,
            process,
            path,
            c.daddr.as_ref().map(|a| &a[..]),
            c.dport,
            c.dns,
            c.policy,
            c.rule,
            c.rule_title,
            c.level,
            dict,
            body
        ])?;
        Ok(())
    }

    /// The row id of `p`, inserted at its first sight, its image replaced when `refresh`.
    fn process_row(
        &mut self,
        p: &ProcessColumns<'_>,
        seen: u64,
        refresh: bool,
    ) -> Result<i64, StoreError> {
        let exec_id = &*p.exec_id;
        let cached = self.processes.get(exec_id).copied();
        let found: Option<i64> = match cached {
            Some(id) => Some(id),
            None => self
                .tx
                .prepare_cached("SELECT id FROM processes WHERE exec_id = ?1")?
                .query_row([exec_id], |r| r.get(0))
                .optional()?,
        };
        if let (Some(id), false) = (found, refresh) {
            self.processes.put(exec_id.to_string(), id);
            return Ok(id);
        }
        // Its first sight, or its exec replacing the image. An insert or an update, not an
        // upsert: SQLite keeps a statement journal for an upsert (it may abort half-written),
        // which made it half again as costly as these two, measured side by side (the FTS5
        // row written after them may still keep one: that cost is measured in it). A failed
        // statement rolls the whole transaction back anyway, so `OR FAIL` loses nothing.
        let id_column = found.unwrap_or_default();
        let mut values: [&dyn rusqlite::ToSql; 11] = [
            &exec_id,
            &p.parent_exec_id,
            &p.pid,
            &p.uid,
            &p.binary,
            &binary_name(&p.binary),
            &p.arguments,
            &p.start_time,
            &p.namespace,
            &p.pod,
            &(seen as i64),
        ];
        let updated = match found {
            Some(id) => {
                // By its row id (the key, not a second index's lookup), the first value the
                // row's own; one row changed, or the caches named a row that is gone.
                values[0] = &id_column;
                let changed = self
                    .tx
                    .prepare_cached(
                        "UPDATE OR FAIL processes SET parent_exec_id = ?2, pid = ?3, uid = ?4,
                             binary = ?5, name = ?6, arguments = ?7, start_time = ?8,
                             namespace = ?9, pod = ?10
                         WHERE id = ?1",
                    )?
                    .execute(&values[..10])?;
                values[0] = &exec_id;
                if changed == 1 {
                    self.tx
                        .prepare_cached("DELETE FROM arguments_text WHERE rowid = ?1")?
                        .execute([id])?;
                }
                (changed == 1).then_some(id)
            }
            None => None,
        };
        let id = match updated {
            Some(id) => id,
            None => {
                self.tx
                    .prepare_cached(
                        "INSERT OR FAIL INTO processes(exec_id, parent_exec_id, pid, uid, binary,
                             name, arguments, start_time, namespace, pod, first_seen)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    )?
                    .execute(&values[..])?;
                self.tx.last_insert_rowid()
            }
        };
        if !p.arguments.is_empty() {
            self.tx
                .prepare_cached("INSERT INTO arguments_text(rowid, arguments) VALUES (?1, ?2)")?
                .execute(params![id, p.arguments])?;
        }
        self.processes.put(exec_id.to_string(), id);
        Ok(id)
    }

    /// The row id of `path`, inserted at its first sight.
    fn path_row(&mut self, path: &str) -> Result<i64, StoreError> {
        if let Some(id) = self.paths.get(path) {
            return Ok(*id);
        }
        let found: Option<i64> = self
            .tx
            .prepare_cached("SELECT id FROM paths WHERE path = ?1")?
            .query_row([path], |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                self.tx
                    .prepare_cached("INSERT INTO paths(path) VALUES (?1)")?
                    .execute([path])?;
                let id = self.tx.last_insert_rowid();
                self.tx
                    .prepare_cached("INSERT INTO paths_text(rowid, path) VALUES (?1, ?2)")?
                    .execute(params![id, path])?;
                id
            }
        };
        self.paths.put(path.to_string(), id);
        Ok(id)
    }
}
