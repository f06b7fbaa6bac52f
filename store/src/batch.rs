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

use std::sync::Arc;

use postcard::ser_flavors::Flavor;
use vigil_events::Process;

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
/// Before each of an event's processes, 0 if its row follows, or which of the last event's
/// processes it is (1 for the first): a storm's events are mostly one process's, or one
/// parent's children's, and their rows (a few hundred bytes each) were most of what the loop
/// encoded for each event.
const ROW_FOLLOWS: u8 = 0;

/// Events appended by the loop, read by the writer. In `columns`, for each event: the length of
/// what follows, the number of its processes (both 4-byte little-endian integers), the columns
/// (postcard), and for each process a byte ([`ROW_FOLLOWS`], or which of the last event's
/// processes it is) and, after a [`ROW_FOLLOWS`], its row (postcard); in `bodies`, each
/// event's JSON, one after the other, where it ends in `ends`, in the same order.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub columns: Vec<u8>,
    bodies: Vec<u8>,
    ends: Vec<u32>,
    pub events: u64,
    /// The processes of the last event appended, held so that no other process can be
    /// allocated where one of them was while they are compared by address. Let go by the loop
    /// before the batch is handed over.
    last: Vec<Arc<Process>>,
}

impl Batch {
    /// An empty batch in new buffers.
    pub fn allocated() -> Batch {
        Batch {
            columns: Vec::with_capacity(COLUMNS_CAPACITY),
            bodies: Vec::with_capacity(CAPACITY),
            ends: Vec::with_capacity(ENDS_CAPACITY),
            events: 0,
            last: Vec::new(),
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
        self.last.clear();
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

    /// Lets go of the last event's processes (the loop's, not the writer's to free).
    pub fn seal(&mut self) {
        self.last.clear();
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

    /// Appends one event: its columns, the rows of `processes` (its own first; a process that
    /// is one of the last event's, the same shared `Arc`, by its place there) and its JSON.
    /// False if the columns could not be encoded (they are strings, numbers and byte arrays:
    /// they always can) or the batch would pass 4 GiB of JSON (the loop hands it over at
    /// 1 MiB); the batch is then as it was.
    #[must_use]
    pub fn push<'p>(
        &mut self,
        columns: &EventColumns<'_>,
        processes: impl Iterator<Item = &'p Arc<Process>> + Clone,
        json: &[u8],
    ) -> bool {
        let Ok(end) = u32::try_from(self.bodies.len() + json.len()) else {
            return false;
        };
        let at = self.columns.len();
        self.columns.extend_from_slice(&[0; 8]);
        let mut count = 0u32;
        // Whether every process is the last event's at the same place (and no more): then
        // `last` already holds them.
        let mut unchanged = true;
        let last = &self.last;
        let columns_out = &mut self.columns;
        let encoded = encode(columns_out, columns).and_then(|()| {
            processes.clone().try_for_each(|p| {
                // At most a handful each: a scan is cheaper than a map.
                let place = last.iter().position(|l| Arc::ptr_eq(p, l));
                unchanged &= place == Some(count as usize);
                count += 1;
                match place {
                    Some(i) if i < u8::MAX as usize => {
                        columns_out.push(i as u8 + 1);
                        Ok(())
                    }
                    _ => {
                        columns_out.push(ROW_FOLLOWS);
                        encode(columns_out, &ProcessColumns::of(p))
                    }
                }
            })
        });
        if encoded.is_err() {
            self.columns.truncate(at);
            return false;
        }
        if !unchanged || self.last.len() != count as usize {
            self.last.clear();
            self.last.extend(processes.cloned());
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
pub(crate) struct Records<'a> {
    rest: &'a [u8],
    /// The last record's processes, for the next one that names them again.
    last: Vec<ProcessColumns<'a>>,
}

impl<'a> Records<'a> {
    pub(crate) fn new(columns: &'a [u8]) -> Records<'a> {
        Records {
            rest: columns,
            last: Vec::new(),
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<EventColumns<'a>, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let record = (|| {
            let (len, rest) =
                self.rest
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
            self.rest = rest;
            decode(part, &mut self.last)
        })();
        if record.is_err() {
            // Nothing after a damaged record can be found: the rest is one error.
            self.rest = &[];
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

/// An event's columns and process rows from what [`Batch::push`] wrote before its JSON; `last`,
/// the record before's processes, becomes its own.
fn decode<'a>(
    part: &'a [u8],
    last: &mut Vec<ProcessColumns<'a>>,
) -> Result<EventColumns<'a>, StoreError> {
    let bad = |e: postcard::Error| StoreError::Batch {
        reason: format!("columns: {e}"),
    };
    let (count, mut rest) = part.split_first_chunk::<4>().ok_or(StoreError::Batch {
        reason: "a count cut short".into(),
    })?;
    let (mut columns, after): (EventColumns, _) = postcard::take_from_bytes(rest).map_err(bad)?;
    rest = after;
    for _ in 0..u32::from_le_bytes(*count) {
        let (&tag, after) = rest.split_first().ok_or(StoreError::Batch {
            reason: "a process cut short".into(),
        })?;
        rest = after;
        if tag == ROW_FOLLOWS {
            let (process, after) = postcard::take_from_bytes(rest).map_err(bad)?;
            columns.processes.push(process);
            rest = after;
        } else {
            let process = last.get(tag as usize - 1).ok_or(StoreError::Batch {
                reason: format!(
                    "a record naming process {tag} of the one before it, which has {}",
                    last.len()
                ),
            })?;
            columns.processes.push(process.clone());
        }
    }
    last.clone_from(&columns.processes);
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

    /// A process `n` and its parent (the same parent for every `n`).
    fn processes(n: u64, parent: &Arc<Process>) -> Vec<Arc<Process>> {
        let own = Process {
            exec_id: vigil_events::ExecId(format!("e{n}").into()),
            arguments: format!("--n {n}"),
            binary: "/bin/\"cat\"\n".into(),
            ..Default::default()
        };
        vec![Arc::new(own), parent.clone()]
    }

    fn parent() -> Arc<Process> {
        Arc::new(Process {
            exec_id: vigil_events::ExecId("e0".into()),
            binary: "/bin/sh".into(),
            ..Default::default()
        })
    }

    fn columns(n: u64) -> EventColumns<'static> {
        EventColumns {
            time_ns: n,
            kind: 2,
            path: Some(Cow::Borrowed("/etc/\"shadow\"\n")),
            daddr: Some([7; 16]),
            ..Default::default()
        }
    }

    #[test]
    fn a_batch_reads_back_every_event_in_order_with_its_own_processes() {
        let (mut b, parent) = (Batch::default(), parent());
        // Events 0 and 1 of their own processes (the parent shared), 2 and 3 of process 1's
        // again, 4 of the parent alone (second in the event before), 5 of a copy of process 1
        // and its parent (equal, not the same).
        let one = processes(1, &parent);
        let copy: Vec<_> = one.iter().map(|p| Arc::new((**p).clone())).collect();
        let named = [
            processes(0, &parent),
            one.clone(),
            one.clone(),
            one.clone(),
            vec![parent.clone()],
            copy,
        ];
        let mut lengths = Vec::new();
        for (n, procs) in named.iter().enumerate() {
            let json = format!("{{\"n\":{n}}}");
            let at = b.columns.len();
            assert!(b.push(&columns(n as u64), procs.iter(), json.as_bytes()));
            lengths.push(b.columns.len() - at);
        }
        assert_eq!(b.events, 6);
        // A process of the event before is named by its place there, in a byte.
        let alone = |n: u64| {
            let mut bytes = Vec::new();
            encode(&mut bytes, &columns(n)).unwrap();
            8 + bytes.len()
        };
        assert!(lengths[1] > alone(1) + 20 && lengths[0] > lengths[1] + 10);
        assert_eq!(
            (lengths[2], lengths[3], lengths[4]),
            (alone(2) + 2, alone(3) + 2, alone(4) + 1)
        );
        assert_eq!(lengths[5], lengths[0]);
        let back: Vec<_> = Records::new(&b.columns).map(|e| e.unwrap()).collect();
        assert_eq!((back.len(), b.bodies().count()), (6, 6));
        for (n, (c, json)) in back.into_iter().zip(b.bodies()).enumerate() {
            let mut want = columns(n as u64);
            want.processes = named[n].iter().map(|p| ProcessColumns::of(p)).collect();
            assert_eq!(c, want, "event {n}");
            assert_eq!(json, format!("{{\"n\":{n}}}").as_bytes());
        }
        assert_eq!(b.size(), b.columns.len() + 6 * (7 + 4));
        assert!(b.held() >= b.size());
        // Sealed (handed over), it holds no process and names its processes again.
        assert_eq!(Arc::strong_count(&named[5][0]), 2);
        b.seal();
        assert_eq!(Arc::strong_count(&named[5][0]), 1);
        let at = b.columns.len();
        assert!(b.push(&columns(6), named[5].iter(), b"{}"));
        assert_eq!(b.columns.len() - at, lengths[5]);
        let again = b.reuse().unwrap();
        assert_eq!(
            (again.columns.len(), again.bodies().count(), again.size()),
            (0, 0, 0)
        );
        assert_eq!(Arc::strong_count(&named[5][0]), 1);
    }

    #[test]
    fn a_record_naming_a_process_of_the_one_before_it_that_has_none_is_an_error() {
        let (mut b, parent) = (Batch::default(), parent());
        let procs = processes(1, &parent);
        assert!(b.push(&columns(1), procs.iter(), b"{}"));
        let first = b.columns.len();
        assert!(b.push(&columns(2), procs.iter(), b"{}"));
        let read: Vec<_> = Records::new(&b.columns[first..]).collect();
        let e = read[0].as_ref().unwrap_err().to_string();
        assert!(e.contains("of the one before it, which has 0"), "{e}");
    }

    #[test]
    fn a_batch_cut_short_is_an_error_not_a_panic() {
        let (mut b, parent) = (Batch::default(), parent());
        assert!(b.push(&columns(1), processes(1, &parent).iter(), b"{}"));
        let first = b.columns.len();
        assert!(b.push(&columns(2), processes(2, &parent).iter(), b"{}"));
        // Cut anywhere but between the two events: the last record read is an error, and
        // nothing is read after it. (Cut between them, one event reads back whole: the writer
        // finds the second's body left over.)
        for cut in 1..b.columns.len() {
            let read: Vec<_> = Records::new(&b.columns[..cut]).collect();
            assert!(read.len() <= 2, "cut at {cut}");
            if cut == first {
                assert!(read.len() == 1 && read[0].is_ok());
            } else {
                assert!(read.last().unwrap().is_err(), "cut at {cut}");
            }
        }
    }
}
