//! The ledger: how many events the agent handed to the store, kept where a `kill -9` cannot
//! take it.
//!
//! The writer commits in batches, so an agent killed between two commits loses the events it
//! had taken but not committed. To say how many, the agent counts every event it hands to the
//! store in a small file mapped into its memory: a store into a shared mapping is in the
//! kernel's page cache the moment it is made, and a killed process's pages are written back as
//! any others (only a power cut loses them, and then the database's last commits too). The
//! next agent compares the count with what the run committed (the `runs` table, updated in the
//! same transaction as the events) and reports the difference.

use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapMut;
use vigil_safe_fs::TrustedDir;

use crate::StoreError;

const MAGIC: u64 = u64::from_le_bytes(*b"vigilLG1");
const SIZE: u64 = 4096;

const AT_MAGIC: usize = 0;
const AT_RUN: usize = 1;
const AT_OFFERED: usize = 2;
const AT_SHED: usize = 3;
const AT_CLOSED: usize = 4;

/// What a ledger said about the run that wrote it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LastRun {
    pub run: i64,
    pub offered: u64,
    pub shed: u64,
    pub closed: bool,
}

/// The mapped ledger, locked for the run.
pub(crate) struct Ledger {
    map: MmapMut,
    /// Holds the run's lock (released when the file closes).
    _file: std::fs::File,
}

impl Ledger {
    /// Maps the ledger of `dir`, creating it; returns what it said of the last run (none for a
    /// new or unreadable ledger).
    pub(crate) fn open(dir: &TrustedDir) -> Result<(Ledger, Option<LastRun>), StoreError> {
        let path = dir.join(crate::LEDGER_FILE);
        let file = dir.open_read_write(crate::LEDGER_FILE, 0o600)?;
        let err = |source| StoreError::Ledger {
            path: path.clone(),
            source,
        };
        // One agent writes a store at a time: during a hand-off the next agent waits for the
        // lock (its events until then are not kept, and counted), never shares the counts.
        // SAFETY: flock on a descriptor we own.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } != 0
        {
            let e = std::io::Error::last_os_error();
            return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
                StoreError::Busy { path }
            } else {
                err(e)
            });
        }
        let len = file.metadata().map_err(err)?.len();
        if len != SIZE {
            file.set_len(SIZE).map_err(err)?;
        }
        // SAFETY: the file is the agent's own (created 0600 in a directory only root writes,
        // checked by TrustedDir), and its size was just set: no one else truncates it while it
        // is mapped.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(err)?;
        let ledger = Ledger { map, _file: file };
        let last =
            (len == SIZE && ledger.slot(AT_MAGIC).load(Ordering::Relaxed) == MAGIC).then(|| {
                LastRun {
                    run: ledger.slot(AT_RUN).load(Ordering::Relaxed) as i64,
                    offered: ledger.slot(AT_OFFERED).load(Ordering::Relaxed),
                    shed: ledger.slot(AT_SHED).load(Ordering::Relaxed),
                    closed: ledger.slot(AT_CLOSED).load(Ordering::Relaxed) != 0,
                }
            });
        Ok((ledger, last))
    }

    fn slot(&self, i: usize) -> &AtomicU64 {
        let words = self.map.as_ptr() as *const AtomicU64;
        assert!((i + 1) * 8 <= self.map.len());
        // SAFETY: the mapping is page-aligned and SIZE bytes long, so every 8-byte slot below
        // it is in bounds and aligned; AtomicU64 has u64's layout; the mapping lives as long as
        // `self`.
        unsafe { &*words.add(i) }
    }

    /// Starts counting for `run`.
    pub(crate) fn start(&self, run: i64) {
        self.slot(AT_MAGIC).store(0, Ordering::Relaxed);
        self.slot(AT_RUN).store(run as u64, Ordering::Relaxed);
        self.slot(AT_OFFERED).store(0, Ordering::Relaxed);
        self.slot(AT_SHED).store(0, Ordering::Relaxed);
        self.slot(AT_CLOSED).store(0, Ordering::Relaxed);
        self.slot(AT_MAGIC).store(MAGIC, Ordering::Release);
    }

    /// The events handed to the store so far. Only the agent's loop counts them, so a plain
    /// store serves: no locked add for every event.
    pub(crate) fn set_offered(&self, events: u64) {
        self.slot(AT_OFFERED).store(events, Ordering::Relaxed);
    }

    /// The events the store could not take so far (its queue was full).
    pub(crate) fn set_shed(&self, events: u64) {
        self.slot(AT_SHED).store(events, Ordering::Relaxed);
    }

    /// The store was closed after its last commit.
    pub(crate) fn close(&self) {
        self.slot(AT_CLOSED).store(1, Ordering::Release);
        let _ = self.map.flush_async();
    }
}
