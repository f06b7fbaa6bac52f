//! The unit every sink delivers: one event, encoded once as JSON, with the few facts sinks
//! need beside the bytes (its time for Splunk and Elasticsearch, its exec id for Kafka keys, its
//! kind). A record also has a line form, the format of the disk spool, so a spooled record comes
//! back exactly as it went in; and the lines stdout and the file sinks write ([`LineFormat`]).

use std::{
    io::{IoSlice, Write},
    sync::Arc,
};

use bytes::Bytes;
use serde::Deserialize;
use vigil_events::Event;

/// How stdout and the file sinks write a record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineFormat {
    /// The event's JSON, one object per line (Tetragon's shape).
    #[default]
    Json,
    /// One readable line per event, as `tetra getevents -o compact`.
    Compact,
}

thread_local! {
    /// A thread's buffer: each event is written there and copied once, at its length, into
    /// the record's memory. An exec storm's records (under a kilobyte) then come from the
    /// allocator's per-thread free lists, where memory sized ahead of the JSON took its
    /// slower path for larger blocks; and a record held in a queue holds no slack.
    static SCRATCH: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(SCRATCH_BYTES));
}
/// Most events fit; a larger one grows the buffer, and one grown past [`SCRATCH_KEPT`] is let
/// go.
const SCRATCH_BYTES: usize = 4 << 10;
const SCRATCH_KEPT: usize = 64 << 10;

/// One encoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When the event happened, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// `process_exec`, `process_kprobe`, ... (one of [`Event::KINDS`]).
    pub kind: &'static str,
    /// The exec id of the process the event is about (shared by the copies each sink gets).
    pub exec_id: Arc<str>,
    /// The event as one JSON object (shared by every sink that takes it; the event store copies
    /// it into its batch).
    pub json: Bytes,
}

/// Nanoseconds since the epoch of an RFC 3339 UTC time as vigil writes it
/// (`2026-11-25T10:00:00.123456789Z`); 0 when it does not parse.
pub fn rfc3339_ns(t: &str) -> u64 {
    vigil_events::time::parse_rfc3339_ns(t).unwrap_or(0)
}

impl Record {
    /// Encodes `event`.
    pub fn encode(event: &Event) -> Record {
        let write = |out: &mut Vec<u8>| {
            vigil_events::write_json(event, out).expect("events always serialize")
        };
        let json = SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut out) => {
                out.clear();
                write(&mut out);
                let json = Bytes::copy_from_slice(&out);
                if out.capacity() > SCRATCH_KEPT {
                    *out = Vec::with_capacity(SCRATCH_BYTES);
                }
                json
            }
            Err(_) => {
                let mut out = Vec::new();
                write(&mut out);
                Bytes::from(out)
            }
        });
        Record {
            time_ns: rfc3339_ns(&event.time),
            kind: event.kind(),
            exec_id: event.process().exec_id.0.clone(),
            json,
        }
    }

    /// The spool line: time, kind and exec id, tab-separated, then the JSON, then `\n`.
    pub fn to_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.json.len() + self.kind.len() + 64);
        out.extend_from_slice(self.time_ns.to_string().as_bytes());
        out.push(b'\t');
        out.extend_from_slice(self.kind.as_bytes());
        out.push(b'\t');
        out.extend_from_slice(self.exec_id.as_bytes());
        out.push(b'\t');
        out.extend_from_slice(&self.json);
        out.push(b'\n');
        out
    }

    /// A record from its spool line (without the `\n`).
    pub fn from_line(line: &[u8]) -> Option<Record> {
        let mut parts = line.splitn(4, |b| *b == b'\t');
        let time_ns = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let kind = parts.next()?;
        let kind = *Event::KINDS.iter().find(|k| k.as_bytes() == kind)?;
        let exec_id = std::str::from_utf8(parts.next()?).ok()?.into();
        let json = parts.next()?;
        Some(Record {
            time_ns,
            kind,
            exec_id,
            json: Bytes::copy_from_slice(json),
        })
    }
}

impl Record {
    /// Appends the record's line in `format`, with its newline, to `out`.
    ///
    /// A compact line is rendered from the event, which the record holds only as JSON: it is
    /// parsed back ([`Event`] deserializes what it serializes). The JSON is what every sink
    /// shares, already redacted and the only form that survives the spool, so fresh and
    /// spooled records take the same path, the hot path encodes once whatever the outputs, and
    /// the parse is paid by compact output alone, a format for a person's terminal. A record
    /// that does not parse back (a field filter cut what an event needs) is written as JSON
    /// rather than lost.
    pub fn write_line(&self, format: LineFormat, out: &mut Vec<u8>) {
        match format {
            LineFormat::Compact => match serde_json::from_slice::<Event>(&self.json) {
                Ok(e) => out.extend_from_slice(vigil_events::compact::render(&e).as_bytes()),
                Err(_) => out.extend_from_slice(&self.json),
            },
            LineFormat::Json => out.extend_from_slice(&self.json),
        }
        out.push(b'\n');
    }
}

/// Records per `writev`: two slices each (the JSON and its newline), within the kernel's 1,024.
const RECORDS_PER_WRITE: usize = 512;
/// How much compact text gathers before it is written.
const COMPACT_FLUSH: usize = 256 << 10;

/// Writes the records of `batch` to `out` as lines in `format`, up to and including the one
/// whose line brings the bytes written to `budget` (a file's room before it rotates); returns
/// how many records and bytes were written. JSON lines go from the records' own bytes to the
/// kernel (`writev`), never copied into a buffer: a batch of a storm's 4 KiB events built as
/// one buffer cost the loop a copy of every event and a page fault for each page of a buffer as
/// large as the batch. Compact lines are rendered into `scratch`, written every 256 KiB.
pub fn write_lines(
    batch: &[Record],
    format: LineFormat,
    out: &mut impl Write,
    scratch: &mut Vec<u8>,
    budget: u64,
) -> std::io::Result<(usize, u64)> {
    let mut written = 0;
    let mut taken = 0;
    match format {
        LineFormat::Json => {
            let mut slices = Vec::with_capacity(2 * batch.len().min(RECORDS_PER_WRITE));
            while taken < batch.len() && written < budget {
                slices.clear();
                for r in batch[taken..].iter().take(RECORDS_PER_WRITE) {
                    slices.push(IoSlice::new(&r.json));
                    slices.push(IoSlice::new(b"\n"));
                    written += r.json.len() as u64 + 1;
                    taken += 1;
                    if written >= budget {
                        break;
                    }
                }
                write_all_vectored(out, &mut slices)?;
            }
        }
        LineFormat::Compact => {
            scratch.clear();
            let mut pending = 0;
            for r in batch {
                r.write_line(format, scratch);
                taken += 1;
                if scratch.len() >= COMPACT_FLUSH {
                    out.write_all(scratch)?;
                    written += scratch.len() as u64;
                    scratch.clear();
                }
                pending = scratch.len() as u64;
                if written + pending >= budget {
                    break;
                }
            }
            out.write_all(scratch)?;
            written += pending;
            scratch.clear();
            scratch.shrink_to(COMPACT_FLUSH * 2);
        }
    }
    Ok((taken, written))
}

/// `Write::write_all` for slices (the standard library's is not stable yet).
fn write_all_vectored(out: &mut impl Write, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    while !slices.is_empty() {
        match out.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `limit` bytes per call, as a pipe or a signal may.
    struct Trickle {
        out: Vec<u8>,
        limit: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let n = b.len().min(self.limit);
            self.out.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.limit - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == self.limit {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_written_in_pieces_are_the_lines_one_at_a_time() {
        let batch: Vec<Record> = (0..1300)
            .map(|n| Record {
                time_ns: 0,
                kind: "process_exec",
                exec_id: String::new().into(),
                json: format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(n % 97))
                    .into_bytes()
                    .into(),
            })
            .collect();
        for format in [LineFormat::Json, LineFormat::Compact] {
            let mut one_at_a_time = Vec::new();
            for r in &batch {
                r.write_line(format, &mut one_at_a_time);
            }
            for limit in [1, 7, 4096, usize::MAX] {
                let mut w = Trickle {
                    out: Vec::new(),
                    limit,
                };
                let (n, bytes) =
                    write_lines(&batch, format, &mut w, &mut Vec::new(), u64::MAX).unwrap();
                assert_eq!((n, bytes as usize), (batch.len(), one_at_a_time.len()));
                assert!(
                    w.out == one_at_a_time,
                    "{format:?}, {limit} bytes per write"
                );
            }
            // A budget stops after the line that reaches it, never inside one.
            let mut sink = Vec::new();
            let (n, bytes) =
                write_lines(&batch, format, &mut sink, &mut Vec::new(), 10_000).unwrap();
            let mut expected = Vec::new();
            for r in &batch[..n] {
                r.write_line(format, &mut expected);
            }
            assert!(sink == expected && bytes as usize == expected.len());
            let last_line = expected[..expected.len() - 1]
                .iter()
                .rev()
                .position(|b| *b == b'\n')
                .unwrap();
            let before_last = expected.len() - 1 - last_line;
            assert!(before_last < 10_000 && bytes >= 10_000, "{format:?}");
        }
    }

    #[test]
    fn times_convert_to_epoch_nanoseconds() {
        assert_eq!(rfc3339_ns("1970-01-01T00:00:01Z"), 1_000_000_000);
        assert_eq!(
            rfc3339_ns("2026-11-25T10:00:00.123456789Z"),
            1_795_600_800_123_456_789
        );
        assert_eq!(rfc3339_ns("yesterday"), 0);
    }

    #[test]
    fn a_record_survives_its_spool_line() {
        let r = Record {
            time_ns: 42,
            kind: "process_exec",
            exec_id: "abc=".into(),
            json: Bytes::from_static(br#"{"a":"b\tc"}"#),
        };
        let line = r.to_line();
        assert_eq!(Record::from_line(&line[..line.len() - 1]), Some(r));
    }

    #[test]
    fn a_compact_line_is_rendered_from_the_records_json() {
        let e = Event {
            body: vigil_events::EventBody::ProcessExec(vigil_events::ProcessExec {
                process: std::sync::Arc::new(vigil_events::Process {
                    binary: "/usr/bin/curl".into(),
                    arguments: "https://example.org".into(),
                    ..Default::default()
                }),
                parent: None,
                ancestors: vec![],
            }),
            node_name: "node".into(),
            node_labels: Default::default(),
            time: "2026-11-25T10:00:00Z".into(),
        };
        let r = Record::encode(&e);
        let mut out = Vec::new();
        r.write_line(LineFormat::Compact, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}\n", vigil_events::compact::render(&e))
        );
        let mut out = Vec::new();
        r.write_line(LineFormat::Json, &mut out);
        assert_eq!(out, [&r.json[..], b"\n"].concat());
        let odd = Record {
            json: Bytes::from_static(b"{\"not\":\"an event\"}"),
            ..r
        };
        let mut out = Vec::new();
        odd.write_line(LineFormat::Compact, &mut out);
        assert_eq!(out, b"{\"not\":\"an event\"}\n");
    }
}
