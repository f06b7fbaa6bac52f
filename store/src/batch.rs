//! How events travel from the agent's loop to the writer: in batches.
//!
//! The loop takes what the writer files from each event (its columns and its processes'
//! rows, [`EventColumns`]) and appends them to a buffer of its own, with a reference to the
//! event's JSON the exporters encoded (shared, not copied); the writer is handed whole batches
//! and hands them back. The loop takes them back, lets go of the JSON they reference (so the
//! memory is usually freed by the thread that allocated it; an exporter may hold the last
//! reference) and fills them again. The queue's byte bound counts a batch from its hand-off
//! until the loop takes it back, each event's JSON with what keeping it costs besides its
//! bytes ([`JSON_OVERHEAD`]; the exporters encode it without spare capacity).
//!
//! Why not hand the writer the events themselves: held until the writer's commit (up to
//! 200 ms), a storm's events were tens of megabytes alive at once, each allocated where the
//! last was not yet freed and freed in bulk by another thread; the loop's allocations left its
//! thread cache for the heap's slow paths and cold memory. Why not copy the JSON into the
//! buffer (as the columns are): a 5 KiB event's copy into memory the writer last read was
//! a microsecond of the loop's, most of what the store cost it.

use bytes::Bytes;
use postcard::ser_flavors::Flavor;

use crate::{
    row::{EventColumns, ProcessColumns},
    StoreError,
};

/// A batch's size (its columns and its events' JSON) at which the loop hands it over.
pub(crate) const HAND_OFF_BYTES: usize = 1 << 20;
/// The largest columns buffer kept for reuse: one a flood of huge events grew is let go.
pub(crate) const CAPACITY: usize = HAND_OFF_BYTES + (HAND_OFF_BYTES >> 2);
/// What a batch's reference to one event's JSON costs besides the JSON's bytes: the reference
/// in the batch, the count shared with the exporters, the allocator's header.
pub(crate) const JSON_OVERHEAD: usize = 64;
/// A new batch's columns buffer: the columns are a fraction of the JSON.
const COLUMNS_CAPACITY: usize = HAND_OFF_BYTES / 4;

/// Events appended by the loop, read by the writer. In `columns`, for each event: the length of
/// what follows, the number of process rows (both 4-byte little-endian integers), the columns
/// and the rows (postcard); in `json`, each event's JSON, in the same order.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub columns: Vec<u8>,
    pub json: Vec<Bytes>,
    /// The memory the JSON references hold: their bytes and [`JSON_OVERHEAD`] each.
    json_bytes: usize,
    pub events: u64,
}

impl Batch {
    /// An empty batch in new buffers.
    pub fn allocated() -> Batch {
        Batch {
            columns: Vec::with_capacity(COLUMNS_CAPACITY),
            ..Default::default()
        }
    }

    /// `self` emptied, to be filled again.
    pub fn reuse(mut self) -> Batch {
        self.columns.clear();
        self.json.clear();
        self.json_bytes = 0;
        self.events = 0;
        self
    }

    /// What the batch holds, in bytes: its columns and its events' JSON (with what keeping it
    /// costs).
    pub fn size(&self) -> usize {
        self.columns.len() + self.json_bytes
    }

    /// Appends one event: its columns, the rows of `processes` (its own first) and its JSON.
    /// False if the columns could not be encoded (they are strings, numbers and byte arrays:
    /// they always can); the batch is then as it was.
    #[must_use]
    pub fn push<'p>(
        &mut self,
        columns: &EventColumns<'_>,
        mut processes: impl Iterator<Item = ProcessColumns<'p>>,
        json: &Bytes,
    ) -> bool {
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
        self.json.push(json.clone());
        self.json_bytes += json.len() + JSON_OVERHEAD;
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
            let json = Bytes::from(format!("{{\"n\":{n}}}"));
            assert!(b.push(&c, c.processes.iter().cloned(), &json));
        }
        assert_eq!(b.events, 3);
        let back: Vec<_> = Records(&b.columns).map(|e| e.unwrap()).collect();
        assert_eq!((back.len(), b.json.len()), (3, 3));
        for (n, (c, json)) in back.into_iter().zip(&b.json).enumerate() {
            assert_eq!(c, columns(n as u64));
            assert_eq!(&json[..], format!("{{\"n\":{n}}}").as_bytes());
        }
        assert_eq!(b.size(), b.columns.len() + 3 * (7 + JSON_OVERHEAD));
        let again = b.reuse();
        assert_eq!(
            (again.columns.len(), again.json.len(), again.size()),
            (0, 0, 0)
        );
    }

    #[test]
    fn a_batch_cut_short_is_an_error_not_a_panic() {
        let mut b = Batch::default();
        let (one, two) = (columns(1), columns(2));
        let json = Bytes::from_static(b"{}");
        assert!(b.push(&one, one.processes.iter().cloned(), &json));
        let first = b.columns.len();
        assert!(b.push(&two, two.processes.iter().cloned(), &json));
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
