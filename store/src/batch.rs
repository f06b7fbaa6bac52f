//! How events travel from the agent's loop to the writer: in batches of bytes.
//!
//! The loop takes what the writer files from each event (its columns and its processes'
//! rows, [`EventColumns`]) and appends them with the event's JSON to a buffer of its own; the
//! writer is handed whole buffers and hands them back empty to be filled again. The event and
//! its JSON stay the loop's and are freed by it as soon as every output has them, as they are
//! without the store.
//!
//! Why not hand the writer the events themselves: held until the writer's commit (up to
//! 200 ms), a storm's events were tens of megabytes alive at once, each allocated where the
//! last was not yet freed and freed in bulk by another thread; the loop's allocations left its
//! thread cache for the heap's slow paths and cold memory. Copying a few kilobytes into a
//! buffer that stays mapped and is written in order costs the loop less than that did.

use crate::{row::EventColumns, StoreError};

/// A batch's size at which the loop hands it over.
pub(crate) const HAND_OFF_BYTES: usize = 1 << 20;
/// A new batch's buffer: room for the record that crosses [`HAND_OFF_BYTES`] without growing.
pub(crate) const CAPACITY: usize = HAND_OFF_BYTES + (HAND_OFF_BYTES >> 2);

/// Events appended by the loop, read by the writer: for each, the length of its columns (as
/// JSON) and the columns, then the length of the event's JSON and the JSON, lengths as 4-byte
/// little-endian integers.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub bytes: Vec<u8>,
    pub events: u64,
}

impl Batch {
    /// An empty batch in a new buffer.
    pub fn new() -> Batch {
        Batch::reuse(Vec::with_capacity(CAPACITY))
    }

    /// An empty batch in `bytes`, a buffer the writer handed back (or a new one).
    pub fn reuse(mut bytes: Vec<u8>) -> Batch {
        bytes.clear();
        Batch { bytes, events: 0 }
    }

    /// Appends one event; false if its columns could not be encoded (they are strings,
    /// numbers and byte arrays: they always can).
    #[must_use]
    pub fn push(&mut self, columns: &EventColumns<'_>, json: &[u8]) -> bool {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 4]);
        if serde_json::to_writer(&mut self.bytes, columns).is_err() {
            self.bytes.truncate(at);
            return false;
        }
        let len = (self.bytes.len() - at - 4) as u32;
        self.bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.bytes
            .extend_from_slice(&(json.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(json);
        self.events += 1;
        true
    }

    /// The events, in the order they were appended.
    pub fn events(&self) -> BatchEvents<'_> {
        BatchEvents { rest: &self.bytes }
    }
}

/// The events of a [`Batch`].
pub(crate) struct BatchEvents<'a> {
    rest: &'a [u8],
}

impl<'a> BatchEvents<'a> {
    fn part(&mut self) -> Result<&'a [u8], StoreError> {
        let bad = |reason: &str| StoreError::Batch {
            reason: reason.into(),
        };
        let (len, rest) = self
            .rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("a length cut short"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(bad("a record cut short"));
        }
        let (part, rest) = rest.split_at(len);
        self.rest = rest;
        Ok(part)
    }
}

impl<'a> Iterator for BatchEvents<'a> {
    type Item = Result<(EventColumns<'a>, &'a [u8]), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let event = (|| {
            let columns = self.part()?;
            let columns = serde_json::from_slice(columns).map_err(|e| StoreError::Batch {
                reason: format!("columns: {e}"),
            })?;
            Ok((columns, self.part()?))
        })();
        if event.is_err() {
            // Nothing after a damaged record can be found: the rest of the batch is one error.
            self.rest = &[];
        }
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::row::ProcessColumns;

    fn columns(n: u64) -> EventColumns<'static> {
        EventColumns {
            time_ns: n,
            kind: 2,
            path: Some(Cow::Borrowed("/etc/\"shadow\"\n")),
            daddr: Some([7; 16]),
            processes: vec![ProcessColumns {
                exec_id: Cow::Borrowed("e1"),
                arguments: Cow::Owned(format!("--n {n}")),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_batch_reads_back_every_event_in_order() {
        let mut b = Batch::default();
        for n in 0..3 {
            assert!(b.push(&columns(n), format!("{{\"n\":{n}}}").as_bytes()));
        }
        assert_eq!(b.events, 3);
        let back: Vec<_> = b.events().map(|e| e.unwrap()).collect();
        assert_eq!(back.len(), 3);
        for (n, (c, json)) in back.into_iter().enumerate() {
            assert_eq!(c, columns(n as u64));
            assert_eq!(json, format!("{{\"n\":{n}}}").as_bytes());
        }
        let again = Batch::reuse(b.bytes);
        assert_eq!((again.bytes.len(), again.events), (0, 0));
    }

    #[test]
    fn a_batch_cut_short_is_an_error_not_a_panic() {
        let mut b = Batch::default();
        assert!(b.push(&columns(1), b"{}"));
        let first = b.bytes.len();
        assert!(b.push(&columns(2), b"{}"));
        for cut in (1..b.bytes.len()).filter(|&c| c != first) {
            let bytes = &b.bytes[..cut];
            let read: Vec<_> = BatchEvents { rest: bytes }.collect();
            assert!(read.last().unwrap().is_err(), "cut at {cut}");
            assert!(read.len() <= 2);
        }
    }
}
