//! How events travel from the agent's loop to the writer: in batches.
//!
//! The loop appends what the writer files from each event (its columns and its processes'
//! rows, [`EventColumns`]) and a copy of the event's JSON (the exporters' encoding) to buffers
//! of its own; the writer is handed whole batches and hands them back, and the loop fills them
//! again. The queue's byte bound counts a batch from its hand-off until the loop takes it back.
//!
//! Why the JSON is copied and not shared with the exporters: held by reference until the
//! writer was done with the batch, each event's JSON lived beside hundreds of others, and the
//! loop's allocator served every new event from memory its own cache no longer held, and freed
//! them in bulk when the batch came back. Under `perf` that was a third of what the store cost
//! the loop (`_int_malloc`, `unlink_chunk`, `malloc_consolidate`), and an open backlog drained
//! at 0.7 to 0.85 of its rate without the store. Copied, each event's JSON is freed as it is
//! without the store, and the copy is a sequential write into a buffer the loop reuses.

use postcard::ser_flavors::Flavor;

use crate::{
    row::{EventColumns, ProcessColumns},
    StoreError,
};

/// A batch's size (its columns and its events' JSON) at which the loop hands it over.
pub(crate) const HAND_OFF_BYTES: usize = 1 << 20;
/// A new batch's JSON buffer, and the largest kept for reuse: a batch handed over at
/// [`HAND_OFF_BYTES`] takes one more event of up to a quarter of that without growing (a copy
/// of the whole buffer), and one a flood of huge events grew is let go.
pub(crate) const CAPACITY: usize = HAND_OFF_BYTES + (HAND_OFF_BYTES >> 2);
/// A new batch's columns buffer: the columns are a fraction of the JSON.
const COLUMNS_CAPACITY: usize = HAND_OFF_BYTES / 4;
/// Room for the ends of a batch of small events ...
const ENDS_CAPACITY: usize = 4096;
/// ... and the most kept for reuse (a batch of tiny events grows it).
const MAX_ENDS: usize = 64 * 1024;

/// Events appended by the loop, read by the writer. In `columns`, for each event: the length of
/// what follows, the number of process rows (both 4-byte little-endian integers), the columns
/// and the rows (postcard); in `bodies`, each event's JSON, one after the other, where it ends
/// in `ends`, in the same order.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub columns: Vec<u8>,
    bodies: Vec<u8>,
    ends: Vec<u32>,
    pub events: u64,
}

impl Batch {
    /// An empty batch in new buffers.
    pub fn allocated() -> Batch {
        Batch {
            columns: Vec::with_capacity(COLUMNS_CAPACITY),
            bodies: Vec::with_capacity(CAPACITY),
            ends: Vec::with_capacity(ENDS_CAPACITY),
            events: 0,
        }
    }

    /// `self` emptied, to be filled again; none if a huge event grew its buffers.
    pub fn reuse(mut self) -> Option<Batch> {
        if self.columns.capacity() > CAPACITY
            || self.bodies.capacity() > CAPACITY
            || self.ends.capacity() > MAX_ENDS
        {
            return None;
        }
        self.columns.clear();
        self.bodies.clear();
        self.ends.clear();
        self.events = 0;
        Some(self)
    }

    /// What the batch holds, in bytes: its columns, its events' JSON and where each ends. It
    /// is handed over at [`HAND_OFF_BYTES`].
    pub fn size(&self) -> usize {
        self.columns.len() + self.bodies.len() + 4 * self.ends.len()
    }

    /// The memory the batch keeps allocated: what the queue's byte bound counts (a batch of
    /// two 250 KiB events holds more than its [`HAND_OFF_BYTES`]).
    pub fn held(&self) -> usize {
        self.columns.capacity() + self.bodies.capacity() + 4 * self.ends.capacity()
    }

    /// The events' JSON, in order.
    pub fn bodies(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let body = &self.bodies[start..end as usize];
            start = end as usize;
            body
        })
    }

    /// Appends one event: its columns, the rows of `processes` (its own first) and its JSON.
    /// False if the columns could not be encoded (they are strings, numbers and byte arrays:
    /// they always can) or the batch would pass 4 GiB of JSON (the loop hands it over at
    /// 1 MiB); the batch is then as it was.
    #[must_use]
    pub fn push<'p>(
        &mut self,
        columns: &EventColumns<'_>,
        mut processes: impl Iterator<Item = ProcessColumns<'p>>,
        json: &[u8],
    ) -> bool {
        let Ok(end) = u32::try_from(self.bodies.len() + json.len()) else {
            return false;
        };
        let at = self.columns.len();
        self.columns.extend_from_slice(&[0; 8]);
        let mut count = 0u32;
        let encoded = encode(&mut self.columns, columns).and_then(|()| {
            processes.try_for_each(|p| {
                count += 1;
                encode(&mut self.columns, &p)
            })
        });
        if encoded.is_err() {
            self.columns.truncate(at);
            return false;
        }
        let len = (self.columns.len() - at - 4) as u32;
        self.columns[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.columns[at + 4..at + 8].copy_from_slice(&count.to_le_bytes());
        self.bodies.extend_from_slice(json);
        self.ends.push(end);
        self.events += 1;
        true
    }
}

/// The events' columns in a batch's `columns` buffer (or a copy of it): what [`Batch::push`]
/// wrote, one record at a time.
pub(crate) struct Records<'a>(pub &'a [u8]);

impl<'a> Iterator for Records<'a> {
    type Item = Result<EventColumns<'a>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let record = (|| {
            let (len, rest) = self
                .0
                .split_first_chunk::<4>()
                .ok_or_else(|| StoreError::Batch {
                    reason: "a length cut short".into(),
                })?;
            let len = u32::from_le_bytes(*len) as usize;
            if rest.len() < len {
                return Err(StoreError::Batch {
                    reason: "a record cut short".into(),
                });
            }
            let (part, rest) = rest.split_at(len);
            self.0 = rest;
            decode(part)
        })();
        if record.is_err() {
            // Nothing after a damaged record can be found: the rest is one error.
            self.0 = &[];
        }
        Some(record)
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
        let back: Vec<_> = Records(&b.columns).map(|e| e.unwrap()).collect();
        assert_eq!((back.len(), b.bodies().count()), (3, 3));
        for (n, (c, json)) in back.into_iter().zip(b.bodies()).enumerate() {
            assert_eq!(c, columns(n as u64));
            assert_eq!(json, format!("{{\"n\":{n}}}").as_bytes());
        }
        assert_eq!(b.size(), b.columns.len() + 3 * (7 + 4));
        assert!(b.held() >= b.size());
        let again = b.reuse().unwrap();
        assert_eq!(
            (again.columns.len(), again.bodies().count(), again.size()),
            (0, 0, 0)
        );
    }

    #[test]
    fn a_batch_cut_short_is_an_error_not_a_panic() {
        let mut b = Batch::default();
        let (one, two) = (columns(1), columns(2));
        assert!(b.push(&one, one.processes.iter().cloned(), b"{}"));
        let first = b.columns.len();
        assert!(b.push(&two, two.processes.iter().cloned(), b"{}"));
        // Cut anywhere but between the two events: the last record read is an error, and
        // nothing is read after it. (Cut between them, one event reads back whole: the writer
        // finds the second's body left over.)
        for cut in 1..b.columns.len() {
            let read: Vec<_> = Records(&b.columns[..cut]).collect();
            assert!(read.len() <= 2, "cut at {cut}");
            if cut == first {
                assert!(read.len() == 1 && read[0].is_ok());
            } else {
                assert!(read.last().unwrap().is_err(), "cut at {cut}");
            }
        }
    }
}
