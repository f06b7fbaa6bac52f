//! Events compressed but not yet written as rows: the writer's buffer between taking a batch
//! from the loop and inserting its rows.
//!
//! The writer takes each batch as soon as the loop hands it over, compresses its events and
//! hands the batch back (so the loop can fill it again), and keeps the compressed
//! events and their compressed columns here, a few percent of the JSON's bytes (the bench's
//! open events: about 200 of 5,000 bytes). It inserts them into the
//! database when the loop has handed nothing over for [`QUIET`], when they reach
//! [`DEFER_BYTES`], or when the oldest has waited [`DEFER_MAX`]. Why: while the loop drains a
//! burst, the rows' B-tree and page-cache work on the other CPU slowed it by 10 to 20 % on the
//! bench's machine (the two CPUs share their cache), more than compressing does
//! (BENCHMARKS.md). A burst is written just after it, in the same transactions; a flow that
//! never pauses is written as it comes, as before, once the buffer is full or old enough.
//!
//! What waits here is taken but not committed: a crash loses it, and the next agent counts it
//! as lost ([`crate::ledger`]), as it does for a transaction not yet committed.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// How long the loop hands nothing over before the writer inserts what it deferred. A storm's
/// batches come every few milliseconds; a quiet node's, on the loop's 50 ms timer, find
/// the writer idle and are written as they come.
pub(crate) const QUIET: Duration = Duration::from_millis(20);
/// The most bytes deferred (allocated): beyond, rows are inserted while the loop runs, and the
/// writer takes no more until it is under (the loop's queue, bounded, then sheds). One batch
/// may pass it.
pub(crate) const DEFER_BYTES: usize = 64 << 20;
/// How long an event waits at most, while events keep coming, before the writer inserts rows
/// as they come (later if it is slower than the flow: then the bounds above hold).
pub(crate) const DEFER_MAX: Duration = Duration::from_secs(5);

/// A batch's events compressed: their columns (the batch's buffer, compressed: an event's
/// process and parent rows repeat from event to event) and their length, and their bodies end
/// to end with, for each, the dictionary it used and where it ends.
#[derive(Debug, Default)]
pub(crate) struct Compressed {
    pub columns: Vec<u8>,
    pub columns_len: usize,
    pub bodies: Vec<u8>,
    pub ends: Vec<(i64, usize)>,
    pub events: u64,
}

impl Compressed {
    /// The memory it holds (its buffers' capacities: what is allocated, not only used).
    pub fn size(&self) -> usize {
        self.columns.capacity()
            + self.bodies.capacity()
            + self.ends.capacity() * size_of::<(i64, usize)>()
    }

    /// Emptied, its buffers kept to be filled again.
    pub fn clear(&mut self) {
        self.columns.clear();
        self.bodies.clear();
        self.ends.clear();
        (self.columns_len, self.events) = (0, 0);
    }
}

/// The compressed batches waiting for their rows, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Deferred {
    batches: VecDeque<(Compressed, Instant)>,
    bytes: usize,
    /// When the writer last took a batch from the loop.
    last_take: Option<Instant>,
}

impl Deferred {
    /// Keeps `batch`, taken from the loop `now`.
    pub fn push(&mut self, batch: Compressed, now: Instant) {
        self.bytes += batch.size();
        self.last_take = Some(now);
        self.batches.push_back((batch, now));
    }

    /// The oldest batch, to be written.
    pub fn pop(&mut self) -> Option<Compressed> {
        let (batch, _) = self.batches.pop_front()?;
        self.bytes -= batch.size();
        Some(batch)
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Whether it holds all it may: the writer takes nothing more until it is written.
    pub fn full(&self) -> bool {
        self.bytes >= DEFER_BYTES
    }

    /// Whether its batches are to be written `now`: the loop is quiet, the buffer full or its
    /// oldest batch old, or the store closing.
    pub fn due(&self, now: Instant, closing: bool) -> bool {
        let Some((_, oldest)) = self.batches.front() else {
            return false;
        };
        closing
            || self.full()
            || now.duration_since(*oldest) >= DEFER_MAX
            || self
                .last_take
                .is_none_or(|t| now.duration_since(t) >= QUIET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(bytes: usize) -> Compressed {
        Compressed {
            columns: Vec::with_capacity(bytes),
            events: 1,
            ..Default::default()
        }
    }

    #[test]
    fn deferred_batches_are_due_when_the_loop_pauses_the_buffer_fills_or_they_grow_old() {
        let t0 = Instant::now();
        let mut d = Deferred::default();
        assert!(!d.due(t0, true), "nothing to write");
        d.push(batch(100), t0);
        assert!(!d.due(t0 + QUIET / 2, false), "the loop still handing over");
        assert!(d.due(t0 + QUIET / 2, true), "closing");
        assert!(d.due(t0 + QUIET, false), "quiet");
        // Batches every few milliseconds: not quiet, until the oldest is old.
        let mut t = t0;
        while t < t0 + DEFER_MAX {
            t += QUIET / 4;
            d.push(batch(100), t);
            assert_eq!(d.due(t, false), t - t0 >= DEFER_MAX, "at {:?}", t - t0);
        }
        while d.pop().is_some() {}
        assert_eq!(d.bytes, 0);
        d.push(batch(DEFER_BYTES - 1), t);
        assert!(!d.full() && !d.due(t, false));
        d.push(batch(1), t);
        assert!(d.full() && d.due(t, false), "full");
    }
}
