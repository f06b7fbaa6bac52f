//! How many records the loop reads in its next turn. The ring buffer is the agent's first
//! buffer and the sinks' disk spools its second: a turn that queues more events than an
//! output has room for sends the rest to that output's spool, and every record behind them
//! too (to keep their order) until the spool is read back, so a burst the output would have
//! taken a moment later is written to disk and read again. Where the ring buffer has room, the
//! loop reads no more than its outputs can queue, and gives them their turn when they can take
//! almost nothing; once the ring buffer is a quarter full it reads whatever it can, as it must
//! not let the kernel drop records for an output's sake.
//!
//! The fill is read where the kernel and the reader keep it: the ring buffer's first page
//! holds the consumer's position (the agent's, advanced as records are read) and its second
//! the producer's (the kernel's), both byte counts that only grow.

use std::{
    cell::Cell,
    io,
    os::fd::{AsRawFd, BorrowedFd},
    ptr::NonNull,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use vigil_exporters::{Exporters, Room};

use super::{sinks::Sinks, DRAIN_BUDGET};

/// The fewest records a turn reads: below it, the loop waits for its outputs first.
const MIN_TURN: usize = 1024;
/// The longest the loop waits for its outputs' room before a turn; the ring buffer's fill is
/// read again at every step.
const GIVE_WAY: Duration = Duration::from_millis(50);
const GIVE_WAY_STEP: Duration = Duration::from_millis(1);
/// The longest a sink without room holds the ring buffer's records: one writing a large batch
/// slowly (under emulation, longer than [`GIVE_WAY`]) frees its queue within it; one that stopped
/// (a collector down and retried, a pipe nobody reads) is then given a short turn, which it
/// spools, and no longer counts. Without it, a stopped sink would hold every output's events
/// (the store's, Sigma's) until the ring buffer is a quarter full: hours on a quiet node.
const HOLD: Duration = Duration::from_secs(1);
/// The fill below which the loop reads without waiting for the store's writer.
const STORE_WAITS_FOR: u64 = 256 << 10;

/// The ring buffer's two position pages, mapped read-only beside the reader's own mapping.
pub(super) struct RingFill {
    consumer: NonNull<libc::c_void>,
    producer: NonNull<libc::c_void>,
    page: usize,
    size: u64,
    /// Since when a sink without room has held the ring buffer's records ([`HOLD`]).
    held_since: Cell<Option<Instant>>,
}

impl RingFill {
    /// Maps the position pages of the ring buffer `fd`, of `size` data bytes.
    pub(super) fn new(fd: BorrowedFd<'_>, size: u32) -> io::Result<RingFill> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| io::Error::other("no page size"))?;
        let map = |offset: usize| -> io::Result<NonNull<libc::c_void>> {
            // SAFETY: a new read-only shared mapping of one page of the map's fd; the kernel
            // checks the offset against the ring buffer's pages, and nothing else is mapped
            // over.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    page,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    offset as libc::off_t,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            NonNull::new(p).ok_or_else(|| io::Error::other("mmap returned null"))
        };
        let consumer = map(0)?;
        let producer = match map(page) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: mapped just above, one page, not used after.
                unsafe { libc::munmap(consumer.as_ptr(), page) };
                return Err(e);
            }
        };
        Ok(RingFill {
            consumer,
            producer,
            page,
            size: size.into(),
            held_since: Cell::new(None),
        })
    }

    fn position(page: NonNull<libc::c_void>) -> u64 {
        // SAFETY: each page starts with its position, an unsigned long the kernel and the
        // reader update atomically; the page is page-aligned and mapped while `self` lives.
        unsafe { (*page.as_ptr().cast::<AtomicUsize>()).load(Ordering::Acquire) as u64 }
    }

    /// The bytes written and not yet read.
    pub(super) fn used(&self) -> u64 {
        // Only this thread moves the consumer's position, so it cannot move between the two
        // reads; the producer's may, which only makes the figure newer.
        let consumer = Self::position(self.consumer);
        Self::position(self.producer).saturating_sub(consumer)
    }
}

impl Drop for RingFill {
    fn drop(&mut self) {
        // SAFETY: both pages were mapped in `new`, one page each, and are not used after.
        unsafe {
            libc::munmap(self.consumer.as_ptr(), self.page);
            libc::munmap(self.producer.as_ptr(), self.page);
        }
    }
}

/// The records the next turn may read: as many as every sink can queue (at least
/// [`MIN_TURN`], or the smallest queue if that is smaller; at most [`DRAIN_BUDGET`]), after
/// giving the sinks and the store's writer their turn, for up to [`GIVE_WAY`], when a sink can
/// queue fewer or the store's writer is half its queue behind. When they still are: what a
/// sink can queue (none read past it, which it would spill to disk: the records wait in the
/// ring buffer), or the least when only the store's writer is behind (it sheds, counted);
/// when `stopping`, the least whatever (read and spooled, not left in the ring buffer for the
/// stop's deadline to lose). A whole budget when the ring buffer is a quarter full, when its
/// fill cannot be read, and when it is empty (a tick with nothing to read waits for nobody).
pub(super) async fn turn_budget(
    fill: Option<&RingFill>,
    sinks: &mut Sinks,
    stopping: bool,
) -> usize {
    let Some(fill) = fill else {
        return DRAIN_BUDGET;
    };
    let until = Instant::now() + GIVE_WAY;
    loop {
        let used = fill.used();
        if used == 0 || used >= fill.size / 4 {
            fill.held_since.set(None);
            return DRAIN_BUDGET;
        }
        let room = sinks
            .exporters
            .as_ref()
            .and_then(Exporters::room_now)
            .unwrap_or(Room {
                free: DRAIN_BUDGET,
                size: DRAIN_BUDGET,
            });
        let least = MIN_TURN.min(room.size);
        // A few records are read whatever the store's queue: they cannot make it shed, and
        // a store held up for long (a slow disk) must not hold a quiet node's events.
        let store = used < STORE_WAITS_FOR || sinks.store.has_room();
        if room.free >= least && store {
            fill.held_since.set(None);
            return room.free.clamp(least, DRAIN_BUDGET);
        }
        let now = Instant::now();
        if now >= until {
            // Still behind: a turn no longer than a sink can take (a sink's batch written
            // slowly, as under emulation, holds its queue full for longer than a step), and the
            // next one gives way again, while signals, ticks and answers have their turns in
            // between. A sink that has held the records for HOLD gets a short turn, which it
            // spools; so does the store's writer alone behind (it sheds, counted), and the
            // final drain, whose deadline would lose what it left unread.
            let held = fill.held_since.get().unwrap_or(now);
            fill.held_since.set(Some(held));
            return if stopping || now - held >= HOLD {
                least
            } else {
                room.free.min(least)
            };
        }
        match &sinks.exporters {
            Some(exporters) if room.free < least => {
                let _ = tokio::time::timeout(GIVE_WAY_STEP, exporters.room(least)).await;
            }
            // The store's writer is a thread of its own, not a task: its queue is looked at
            // again a step later, the batch being filled handed to it if it has nothing.
            _ => {
                sinks.store.hand_off();
                tokio::time::sleep(GIVE_WAY_STEP).await;
            }
        }
    }
}
