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

use postcard::ser_flavors::Flavor;

use crate::{
    row::{EventColumns, ProcessColumns},
    StoreError,
};

/// A batch's size at which the loop hands it over.
pub(crate) const HAND_OFF_BYTES: usize = 1 << 20;
/// A new batch's buffer: room for the record that crosses [`HAND_OFF_BYTES`] without growing.
pub(crate) const CAPACITY: usize = HAND_OFF_BYTES + (HAND_OFF_BYTES >> 2);

/// Events appended by the loop, read by the writer. For each: the length of what follows up to
/// the JSON, the number of process rows, the columns and the rows (postcard), then the length
/// of the event's JSON and the JSON; lengths and the count as 4-byte little-endian integers.
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

    /// Appends one event: its columns, the rows of `processes` (its own first) and its JSON.
    /// False if the columns could not be encoded (they are strings, numbers and byte arrays:
    /// they always can); the batch is then as it was.
    #[must_use]
    pub fn push<'p>(
        &mut self,
        columns: &EventColumns<'_>,
        mut processes: impl Iterator<Item = ProcessColumns<'p>>,
        json: &[u8],
    ) -> bool {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 8]);
        let mut count = 0u32;
        let encoded = encode(&mut self.bytes, columns).and_then(|()| {
            processes.try_for_each(|p| {
                count += 1;
                encode(&mut self.bytes, &p)
            })
        });
        if encoded.is_err() {
            self.bytes.truncate(at);
            return false;
        }
        let len = (self.bytes.len() - at - 4) as u32;
        self.bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.bytes[at + 4..at + 8].copy_from_slice(&count.to_le_bytes());
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
            Ok((decode(columns)?, self.part()?))
        })();
        if event.is_err() {
            // Nothing after a damaged record can be found: the rest of the batch is one error.
            self.rest = &[];
        }
        Some(event)
    }
}

/// Appends `value` to `bytes`.
fn encode(bytes: &mut Vec<u8>, value: &impl serde::Serialize) -> postcard::Result<()> {
    postcard::serialize_with_flavor(value, Append(bytes))
}

/// Postcard's output: the end of a batch's buffer.
struct Append<'a>(&'a mut Vec<u8>);

impl Flavor for Append<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// An event's columns and process rows from what [`Batch::push`] wrote before its JSON.
fn decode(part: &[u8]) -> Result<EventColumns<'_>, StoreError> {
    let bad = |e: postcard::Error| StoreError::Batch {
        reason: format!("columns: {e}"),
    };
    let (count, mut rest) = part.split_first_chunk::<4>().ok_or(StoreError::Batch {
        reason: "a count cut short".into(),
    })?;
    let (mut columns, after): (EventColumns, _) = postcard::take_from_bytes(rest).map_err(bad)?;
    rest = after;
    for _ in 0..u32::from_le_bytes(*count) {
        let (process, after) = postcard::take_from_bytes(rest).map_err(bad)?;
        columns.processes.push(process);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(StoreError::Batch {
            reason: format!("{} bytes after the columns", rest.len()),
        });
    }
    Ok(columns)
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
            processes: vec![
                ProcessColumns {
                    exec_id: Cow::Borrowed("e1"),
                    arguments: Cow::Owned(format!("--n {n}")),
                    pod: Some(Cow::Borrowed("web-0")),
                    ..Default::default()
                },
                ProcessColumns {
                    exec_id: Cow::Borrowed("e0"),
                    binary: Cow::Borrowed("/bin/sh"),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn a_batch_reads_back_every_event_in_order() {
        let mut b = Batch::default();
        for n in 0..3 {
            let c = columns(n);
            let json = format!("{{\"n\":{n}}}");
            assert!(b.push(&c, c.processes.iter().cloned(), json.as_bytes()));
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
        let (one, two) = (columns(1), columns(2));
        assert!(b.push(&one, one.processes.iter().cloned(), b"{}"));
        let first = b.bytes.len();
        assert!(b.push(&two, two.processes.iter().cloned(), b"{}"));
        for cut in (1..b.bytes.len()).filter(|&c| c != first) {
            let bytes = &b.bytes[..cut];
            let read: Vec<_> = BatchEvents { rest: bytes }.collect();
            assert!(read.last().unwrap().is_err(), "cut at {cut}");
            assert!(read.len() <= 2);
        }
    }
}
