//! The disk spool of one sink: records that did not fit in its memory queue, or were still
//! undelivered at shutdown, in segment files of record lines (`seg-<seq>.jsonl`, mode 0600) in
//! `<spool_dir>/<sink>/spool/`. Records are appended to the newest segment and read from the
//! oldest; a segment is deleted only once every line in it was consumed, so a crash re-sends (at
//! least once) rather than loses. A spool left by an earlier run is read first.
//!
//! Root writes here, so the directory and every segment are opened through
//! [`vigil_safe_fs::TrustedDir`]: no link followed, new segments created exclusively, a file of
//! another owner refused. The spool holds at most `cap` bytes; an append beyond it is refused
//! ([`SpoolError::Full`]) and the caller counts the records it drops. An append that fails half
//! way is cut back, so a segment only ever holds whole lines, except after a crash: a last line
//! without its newline is *torn*, and comes back from [`Spool::peek`] as a bad line, with a line
//! that does not parse, for the dead-letter file. Every line read counts as consumed, good or
//! bad, so the pending count stays true and a reader can never loop on empty batches.

use std::{
    fs::File,
    io::{BufRead, BufReader, Seek, SeekFrom, Write},
    sync::Mutex,
};

use vigil_safe_fs::{FsError, TrustedDir};

use crate::record::Record;

/// Segment size at which appending moves to a new segment.
const SEGMENT_BYTES: u64 = 8 << 20;

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool holds its cap already.
    #[error("the spool is full ({cap} bytes, `spool_max_mb`)")]
    Full {
        /// The cap.
        cap: u64,
    },
    /// A segment could not be opened.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// A write failed (a full disk, an I/O error).
    #[error("{path}: {source}")]
    Io {
        /// The segment.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A line that is not a record, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// Its bytes (without the newline).
    pub bytes: Vec<u8>,
    /// Why it cannot be delivered.
    pub reason: String,
}

/// What [`Spool::peek`] read.
#[derive(Debug, Default)]
pub struct Peeked {
    /// The records, in order.
    pub records: Vec<Record>,
    /// The lines that are not records.
    pub bad: Vec<BadLine>,
    /// Where the next read starts, for [`Spool::commit`].
    pub offset: u64,
    /// Lines read (records and bad lines), for [`Spool::commit`].
    pub lines: u64,
}

struct State {
    dir: TrustedDir,
    /// Sequence numbers of the segments on disk, oldest first.
    segments: Vec<u64>,
    writer: Option<(u64, File, u64)>,
    /// Read position in the oldest segment: consumed up to here.
    read_offset: u64,
    /// Lines appended and not yet consumed.
    pending: u64,
    /// Bytes of all segments on disk.
    bytes: u64,
    cap: u64,
}

/// A sink's spool.
pub struct Spool {
    state: Mutex<State>,
}

fn seg_name(seq: u64) -> String {
    format!("seg-{seq:016}.jsonl")
}

fn io_err(dir: &TrustedDir, name: &str, op: &str, e: std::io::Error) -> SpoolError {
    SpoolError::Io {
        path: format!("{} ({op})", dir.join(name).display()),
        source: e,
    }
}

/// Lines in a segment, a torn last line included.
fn count_lines(f: File) -> std::io::Result<u64> {
    let mut n = 0;
    for line in BufReader::new(f).split(b'\n') {
        line?;
        n += 1;
    }
    Ok(n)
}

impl Spool {
    /// Opens (creating) the spool in `parent`'s `spool/` directory, holding at most `cap` bytes,
    /// and checks the segments an earlier run left (a link or a foreign file among them is an
    /// error that names it).
    pub fn open(parent: &TrustedDir, cap: u64) -> Result<Spool, FsError> {
        let dir = parent.sub_dir("spool", true)?;
        let mut segments: Vec<u64> = dir
            .file_names()?
            .iter()
            .filter_map(|name| {
                name.strip_prefix("seg-")?
                    .strip_suffix(".jsonl")?
                    .parse()
                    .ok()
            })
            .collect();
        segments.sort_unstable();
        let (mut pending, mut bytes) = (0, 0);
        for s in &segments {
            let name = seg_name(*s);
            let f = dir.open_read(&name)?;
            bytes += dir.size(&name)?;
            pending += count_lines(f).map_err(|source| FsError::Io {
                path: dir.join(&name),
                op: "read",
                source,
            })?;
        }
        Ok(Spool {
            state: Mutex::new(State {
                dir,
                segments,
                writer: None,
                read_offset: 0,
                pending,
                bytes,
                cap,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent counters (they are updated last).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lines waiting in the spool.
    pub fn pending(&self) -> u64 {
        self.lock().pending
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Appends records, all or none.
    pub fn append(&self, records: &[Record]) -> Result<(), SpoolError> {
        let mut buf = Vec::new();
        for r in records {
            buf.extend_from_slice(&r.to_line());
        }
        let mut st = self.lock();
        let st = &mut *st;
        if st.bytes + buf.len() as u64 > st.cap {
            return Err(SpoolError::Full { cap: st.cap });
        }
        let full = st
            .writer
            .as_ref()
            .is_none_or(|(_, _, len)| *len >= SEGMENT_BYTES);
        if full {
            let seq = st.segments.last().map_or(0, |s| s + 1);
            // A new segment never exists yet: one that does was planted, and is refused.
            let f = st.dir.create_new(&seg_name(seq), 0o600)?;
            st.segments.push(seq);
            st.writer = Some((seq, f, 0));
        }
        let (seq, f, len) = st.writer.as_mut().expect("writer opened above");
        if let Err(e) = f.write_all(&buf) {
            // Cut a partial line back so that the segment holds whole lines only; when even
            // that fails, the next append goes to a new segment and the reader finds the torn
            // line.
            let cut = f.set_len(*len);
            let name = seg_name(*seq);
            if cut.is_err() {
                st.writer = None;
            }
            return Err(io_err(&st.dir, &name, "append", e));
        }
        *len += buf.len() as u64;
        st.bytes += buf.len() as u64;
        st.pending += records.len() as u64;
        Ok(())
    }

    /// Up to `max` lines from the oldest unconsumed position; nothing is consumed until
    /// [`Spool::commit`].
    pub fn peek(&self, max: usize) -> Result<Peeked, SpoolError> {
        let mut st = self.lock();
        let Some(&seq) = st.segments.first() else {
            // Nothing on disk: whatever the count said, nothing is pending.
            st.pending = 0;
            return Ok(Peeked::default());
        };
        let name = seg_name(seq);
        let mut f = st.dir.open_read(&name)?;
        f.seek(SeekFrom::Start(st.read_offset))
            .map_err(|e| io_err(&st.dir, &name, "seek", e))?;
        let mut reader = BufReader::new(f);
        let mut out = Peeked {
            offset: st.read_offset,
            ..Default::default()
        };
        let mut line = Vec::new();
        while (out.lines as usize) < max {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| io_err(&st.dir, &name, "read", e))?;
            if n == 0 {
                break;
            }
            out.offset += n as u64;
            out.lines += 1;
            // Appends hold the lock and write whole lines, so a line without its newline was
            // cut short by a crash (or a disk that filled), in this segment or an earlier run.
            let Some(body) = line.strip_suffix(b"\n") else {
                out.bad.push(BadLine {
                    bytes: line.clone(),
                    reason: format!(
                        "torn line: {} ends without a newline (an append cut short by a crash or a full disk)",
                        st.dir.join(&name).display()
                    ),
                });
                break;
            };
            match Record::from_line(body) {
                Some(r) => out.records.push(r),
                None => out.bad.push(BadLine {
                    bytes: body.to_vec(),
                    reason: format!(
                        "not a spool record (time, kind, exec id and JSON, tab-separated) in {}",
                        st.dir.join(&name).display()
                    ),
                }),
            }
        }
        Ok(out)
    }

    /// Marks what [`Spool::peek`] returned as consumed; deletes a segment once it is done.
    pub fn commit(&self, peeked: &Peeked) -> Result<(), SpoolError> {
        let mut st = self.lock();
        st.read_offset = peeked.offset;
        st.pending = st.pending.saturating_sub(peeked.lines);
        let Some(&seq) = st.segments.first() else {
            return Ok(());
        };
        let name = seg_name(seq);
        let len = st.dir.size(&name)?;
        if peeked.offset < len {
            return Ok(());
        }
        // The oldest segment is done. If it is the one being appended to, close it first:
        // the next append starts a new segment.
        if st.writer.as_ref().is_some_and(|(s, _, _)| *s == seq) {
            st.writer = None;
        }
        st.dir.remove(&name)?;
        st.segments.remove(0);
        st.read_offset = 0;
        st.bytes = st.bytes.saturating_sub(len);
        if st.segments.is_empty() {
            st.pending = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> Record {
        Record {
            time_ns: i,
            kind: "process_exec",
            exec_id: format!("id{i}").into(),
            json: format!("{{\"n\":{i}}}").into_bytes().into(),
        }
    }

    fn scratch(tag: &str) -> (std::path::PathBuf, TrustedDir) {
        let p = std::env::temp_dir().join(format!("vigil-spool-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        let d = TrustedDir::create(&p).unwrap();
        (p, d)
    }

    #[test]
    fn records_come_back_in_order_and_survive_a_reopen() {
        let (path, dir) = scratch("order");
        let spool = Spool::open(&dir, 1 << 30).unwrap();
        spool.append(&(0..5).map(rec).collect::<Vec<_>>()).unwrap();
        let got = spool.peek(3).unwrap();
        assert_eq!(got.records, (0..3).map(rec).collect::<Vec<_>>());
        spool.commit(&got).unwrap();
        drop(spool);
        // A restart re-reads the whole undeleted segment: at least once, never lost.
        let spool = Spool::open(&dir, 1 << 30).unwrap();
        assert_eq!(spool.pending(), 5);
        let got = spool.peek(10).unwrap();
        assert_eq!(got.records.len(), 5);
        spool.commit(&got).unwrap();
        assert_eq!((spool.pending(), spool.bytes()), (0, 0));
        assert!(
            std::fs::read_dir(path.join("spool"))
                .unwrap()
                .next()
                .is_none(),
            "done segments are deleted"
        );
        let _ = std::fs::remove_dir_all(&path);
    }

    #[test]
    fn a_torn_last_line_counts_as_pending_and_comes_back_as_a_bad_line() {
        let (path, dir) = scratch("torn");
        std::fs::create_dir(path.join("spool")).unwrap();
        let mut seg = rec(0).to_line();
        seg.extend_from_slice(b"garbage\n");
        let torn = rec(1).to_line();
        seg.extend_from_slice(&torn[..5]);
        std::fs::write(path.join("spool").join(seg_name(0)), &seg).unwrap();
        let spool = Spool::open(&dir, 1 << 30).unwrap();
        assert_eq!(
            spool.pending(),
            3,
            "the torn line is pending until consumed"
        );
        let got = spool.peek(10).unwrap();
        assert_eq!(got.records, vec![rec(0)]);
        assert_eq!(got.bad.len(), 2);
        assert!(got.bad[0].reason.contains("not a spool record"));
        assert!(got.bad[1].reason.contains("torn line"));
        assert_eq!(got.bad[1].bytes, torn[..5]);
        spool.commit(&got).unwrap();
        assert_eq!(spool.pending(), 0);
        let again = spool.peek(10).unwrap();
        assert_eq!((again.records.len(), again.bad.len()), (0, 0));
        let _ = std::fs::remove_dir_all(&path);
    }

    #[test]
    fn appends_beyond_the_cap_are_refused_and_the_space_comes_back() {
        let (path, dir) = scratch("cap");
        let line = rec(0).to_line().len() as u64;
        let spool = Spool::open(&dir, line * 2).unwrap();
        spool.append(&[rec(0)]).unwrap();
        spool.append(&[rec(1)]).unwrap();
        assert!(matches!(
            spool.append(&[rec(2)]),
            Err(SpoolError::Full { .. })
        ));
        assert_eq!(spool.pending(), 2);
        let got = spool.peek(10).unwrap();
        spool.commit(&got).unwrap();
        spool.append(&[rec(3)]).unwrap();
        assert_eq!(spool.peek(10).unwrap().records, vec![rec(3)]);
        let _ = std::fs::remove_dir_all(&path);
    }

    #[test]
    fn a_link_planted_as_a_segment_is_refused_by_name_and_not_followed() {
        let (path, dir) = scratch("link");
        std::fs::create_dir(path.join("spool")).unwrap();
        let target = path.join("precious");
        std::fs::write(&target, "root's data\n").unwrap();
        let planted = path.join("spool").join(seg_name(0));
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        let err = Spool::open(&dir, 1 << 30).err().unwrap().to_string();
        assert!(err.contains(planted.to_str().unwrap()), "{err}");
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "root's data\n");
        let _ = std::fs::remove_dir_all(&path);
    }
}
