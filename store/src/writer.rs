//! The store's writer: a thread of its own that takes events from a bounded queue and commits
//! them in large transactions, and enforces retention between commits.
//!
//! The agent's loop only ever tries to queue an event ([`EventStore::offer`]): when the writer
//! falls behind (a slow disk, a burst), the queue fills and further events are shed, counted
//! and reported, instead of the loop waiting and the kernel's ring buffer filling behind it.
//! Enforcement and the other outputs never depend on the disk.

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

use bytes::Bytes;
use lru::LruCache;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use vigil_events::{Event, Process};
use vigil_safe_fs::TrustedDir;

use crate::{
    codec::Compressor,
    ledger::{LastRun, Ledger},
    row::{binary_name, columns},
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

/// The most bytes of events (approximately) the queue holds before it sheds.
pub const MAX_QUEUE_BYTES: u64 = 64 << 20;

/// About what a queued event holds in memory: its JSON, and the event itself (about as much).
fn approx_bytes(offered: &Offered) -> u64 {
    2 * offered.json.len() as u64
}

/// An event queued for the writer: the event, shared with the API's streams, and its JSON,
/// shared with the exporters. Both are the agent's already: the writer neither copies nor
/// encodes the event again.
struct Offered {
    event: Arc<Event>,
    json: Bytes,
}

/// Events committed in one transaction at most.
const MAX_BATCH: usize = 20_000;
/// The shortest time between two commits while events trickle in: fewer, larger
/// transactions.
const COMMIT_GAP: Duration = Duration::from_millis(200);
/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(10);
/// Events removed per retention statement: the writer goes back to its queue between them.
const RETENTION_CHUNK: i64 = 20_000;
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
    /// Their approximate size.
    pub queued_bytes: AtomicU64,
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
    tx: Option<SyncSender<Offered>>,
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
        let (tx, rx) = mpsc::sync_channel(config.queue);
        let counters = Arc::new(StoreCounters::default());
        let last_error = Arc::new(std::sync::Mutex::new(None));
        let mut writer = Writer {
            compressor: Compressor::load(&conn)?,
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
                writer.run(rx)
            })
            .map_err(|e| StoreError::Ledger {
                path: path.clone(),
                source: e,
            })?;
        Ok(EventStore {
            tx: Some(tx),
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
    pub fn offer(&self, event: Arc<Event>) {
        // Events always serialize (their types have no map with non-string keys).
        let json = serde_json::to_vec(&*event).unwrap_or_default();
        self.offer_encoded(event, json.into());
    }

    /// Hands `event` and its JSON, as the exporters encoded it, to the writer, or sheds it
    /// (counted) if the writer is behind. Never waits.
    pub fn offer_encoded(&self, event: Arc<Event>, json: Bytes) {
        let Some(tx) = &self.tx else { return };
        self.ledger.offered();
        self.counters.offered.fetch_add(1, Ordering::Relaxed);
        let event = Offered { event, json };
        let bytes = approx_bytes(&event);
        // Bounded in bytes as well as in events: events of long arguments and paths cannot
        // make the queue the agent's memory.
        let over = self.counters.queued_bytes.load(Ordering::Relaxed) + bytes > MAX_QUEUE_BYTES;
        if over {
            self.ledger.shed();
            self.counters.shed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match tx.try_send(event) {
            Ok(()) => {
                self.counters
                    .queued_bytes
                    .fetch_add(bytes, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.ledger.shed();
                self.counters.shed.fetch_add(1, Ordering::Relaxed);
            }
        }
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
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
            self.ledger.close();
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
    run: i64,
    processes: LruCache<String, i64>,
    paths: LruCache<String, i64>,
    counters: Arc<StoreCounters>,
    last_error: Arc<std::sync::Mutex<Option<String>>>,
    max_age: Duration,
    max_bytes: u64,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Offered>) {
        let mut batch: Vec<Offered> = Vec::with_capacity(MAX_BATCH);
        let mut last_commit = Instant::now();
        // Retention first: a store that grew past its limits while no agent ran is cut now.
        let mut last_retention: Option<Instant> = None;
        let mut open = true;
        let mut behind = false;
        while open {
            if last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY) {
                if let Err(e) = self.retention() {
                    self.error(format!("retention: {e}"));
                }
                last_retention = Some(Instant::now());
            }
            // Sleep until the next commit is due, then take what queued meanwhile. The writer
            // never waits on the queue itself: a sender that finds no waiting receiver wakes
            // no one, so the agent's loop pays no wake-up per event (it did, a futex call per
            // event, when the writer blocked in recv).
            let due = last_commit + COMMIT_GAP;
            let now = Instant::now();
            // A full batch means more is waiting: no sleep then.
            if due > now && !behind {
                std::thread::sleep(due - now);
            }
            last_commit = Instant::now();
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            behind = batch.len() >= MAX_BATCH;
            if !batch.is_empty() {
                let n = batch.len() as u64;
                let bytes: u64 = batch.iter().map(approx_bytes).sum();
                self.counters
                    .queued_bytes
                    .fetch_sub(bytes, Ordering::Relaxed);
                if let Err(e) = self.commit(&batch) {
                    self.counters.failed.fetch_add(n, Ordering::Relaxed);
                    self.error(format!("{n} events not stored: {e}"));
                }
                batch.clear();
            }
        }
    }

    fn error(&self, msg: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(msg);
        }
    }

    /// Writes `batch` and the run's committed count in one transaction. Whatever fails, the
    /// transaction is rolled back whole, and what the caches and the compressor learnt in it
    /// (row ids, a dictionary) is forgotten with it.
    fn commit(&mut self, batch: &[Offered]) -> Result<(), StoreError> {
        let result = self.try_commit(batch);
        if result.is_err() {
            self.processes.clear();
            self.paths.clear();
            if let Ok(c) = Compressor::load(&self.conn) {
                self.compressor = c;
            }
        }
        result
    }

    fn try_commit(&mut self, batch: &[Offered]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let mut stored = 0i64;
        {
            let mut ctx = BatchWriter {
                tx: &tx,
                processes: &mut self.processes,
                paths: &mut self.paths,
                compressor: &mut self.compressor,
            };
            for o in batch {
                ctx.write(&o.event, &o.json)?;
                stored += 1;
            }
        }
        tx.execute(
            "UPDATE runs SET committed = committed + ?2 WHERE id = ?1",
            params![self.run, stored],
        )?;
        tx.commit()?;
        self.counters
            .committed
            .fetch_add(stored as u64, Ordering::Relaxed);
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
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
    tx: &'a Transaction<'a>,
    processes: &'a mut LruCache<String, i64>,
    paths: &'a mut LruCache<String, i64>,
    compressor: &'a mut Compressor,
}

impl BatchWriter<'_> {
    fn write(&mut self, event: &Event, json: &[u8]) -> Result<(), StoreError> {
        let c = columns(event);
        // A process keeps its exec id across execve (it names the clone): its exec event
        // brings the new binary and arguments to the row its earlier events made.
        let exec = matches!(event.body, vigil_events::EventBody::ProcessExec(_));
        let process = self.process_row(event.process(), c.time_ns, exec)?;
        for p in event.processes().skip(1) {
            self.process_row(p, c.time_ns, false)?;
        }
        let path = match &c.path {
            Some(p) => Some(self.path_row(p)?),
            None => None,
        };
        let (dict, body) = self.compressor.compress(json)?;
        self.compressor.maybe_train(self.tx)?;
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
    fn process_row(&mut self, p: &Process, seen: u64, refresh: bool) -> Result<i64, StoreError> {
        let exec_id = p.exec_id.as_str();
        let cached = self.processes.get(exec_id).copied();
        let found: Option<i64> = match cached {
            Some(id) => Some(id),
            None => self
                .tx
                .prepare_cached("SELECT id FROM processes WHERE exec_id = ?1")?
                .query_row([exec_id], |r| r.get(0))
                .optional()?,
        };
        let pod = p.pod.as_ref();
        let id = match found {
            Some(id) if !refresh => id,
            found => {
                // Its first sight, or its exec replacing the image: one statement either way.
                let id: i64 = self
                    .tx
                    .prepare_cached(
                        "INSERT INTO processes(exec_id, parent_exec_id, pid, uid, binary, name,
                             arguments, start_time, namespace, pod, first_seen)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                         ON CONFLICT(exec_id) DO UPDATE SET
                             parent_exec_id = excluded.parent_exec_id, pid = excluded.pid,
                             uid = excluded.uid, binary = excluded.binary, name = excluded.name,
                             arguments = excluded.arguments, start_time = excluded.start_time,
                             namespace = excluded.namespace, pod = excluded.pod
                         RETURNING id",
                    )?
                    .query_row(
                        params![
                            exec_id,
                            p.parent_exec_id.as_str(),
                            p.pid,
                            p.uid,
                            p.binary,
                            binary_name(&p.binary),
                            p.arguments,
                            p.start_time,
                            pod.map(|p| p.namespace.as_str()),
                            pod.map(|p| p.name.as_str()),
                            seen as i64,
                        ],
                        |r| r.get(0),
                    )?;
                if found.is_some() {
                    self.tx
                        .prepare_cached("DELETE FROM arguments_text WHERE rowid = ?1")?
                        .execute([id])?;
                }
                if !p.arguments.is_empty() {
                    self.tx
                        .prepare_cached(
                            "INSERT INTO arguments_text(rowid, arguments) VALUES (?1, ?2)",
                        )?
                        .execute(params![id, p.arguments])?;
                }
                id
            }
        };
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
