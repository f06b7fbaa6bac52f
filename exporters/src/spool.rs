//! The disk spool of one sink: records that did not fit in its memory queue, or were still
//! undelivered at shutdown, in segment files of record lines (`seg-<seq>.jsonl`, mode 0600).
//! Records are appended to the newest segment and read from the oldest; a segment is deleted
//! only once every record in it was delivered, so a crash re-sends (at least once) rather than
//! loses. A spool left by an earlier run is read first.

use std::{
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Seek, SeekFrom, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::Mutex,
};

use crate::record::Record;

/// Segment size at which appending moves to a new segment.
const SEGMENT_BYTES: u64 = 8 << 20;

struct State {
    dir: PathBuf,
    /// Sequence numbers of the segments on disk, oldest first.
    segments: Vec<u64>,
    writer: Option<(u64, File, u64)>,
    /// Read position in the oldest segment: delivered up to here.
    read_offset: u64,
    /// Records appended and not yet delivered.
    pending: u64,
}

/// A sink's spool.
pub struct Spool {
    state: Mutex<State>,
}

fn seg_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("seg-{seq:016}.jsonl"))
}

impl Spool {
    /// Opens (creating) the spool in `dir`, picking up segments an earlier run left.
    pub fn open(dir: &Path) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let mut segments: Vec<u64> = std::fs::read_dir(dir)?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("seg-")?
                    .strip_suffix(".jsonl")?
                    .parse()
                    .ok()
            })
            .collect();
        segments.sort_unstable();
        let mut pending = 0;
        for s in &segments {
            let f = File::open(seg_path(dir, *s))?;
            pending += BufReader::new(f).split(b'\n').count() as u64;
        }
        Ok(Spool {
            state: Mutex::new(State {
                dir: dir.to_path_buf(),
                segments,
                writer: None,
                read_offset: 0,
                pending,
            }),
        })
    }

    /// Records waiting in the spool.
    pub fn pending(&self) -> u64 {
        self.state.lock().expect("spool lock").pending
    }

    /// Appends records.
    pub fn append(&self, records: &[Record]) -> std::io::Result<()> {
        let mut st = self.state.lock().expect("spool lock");
        let st = &mut *st;
        let full = st
            .writer
            .as_ref()
            .is_none_or(|(_, _, len)| *len >= SEGMENT_BYTES);
        if full {
            let seq = st.segments.last().map_or(0, |s| s + 1);
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(seg_path(&st.dir, seq))?;
            st.segments.push(seq);
            st.writer = Some((seq, f, 0));
        }
        let (_, f, len) = st.writer.as_mut().expect("writer opened above");
        let mut buf = Vec::new();
        for r in records {
            buf.extend_from_slice(&r.to_line());
        }
        f.write_all(&buf)?;
        *len += buf.len() as u64;
        st.pending += records.len() as u64;
        Ok(())
    }

    /// Up to `max` records from the oldest undelivered position, and the position after them;
    /// nothing is consumed until [`Spool::commit`].
    pub fn peek(&self, max: usize) -> std::io::Result<(Vec<Record>, u64)> {
        let st = self.state.lock().expect("spool lock");
        let Some(&seq) = st.segments.first() else {
            return Ok((Vec::new(), 0));
        };
        let mut f = File::open(seg_path(&st.dir, seq))?;
        f.seek(SeekFrom::Start(st.read_offset))?;
        let mut reader = BufReader::new(f);
        let mut out = Vec::new();
        let mut offset = st.read_offset;
        let mut line = Vec::new();
        while out.len() < max {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break; // the end, or a line still being written
            }
            offset += n as u64;
            // A line that does not parse (a torn write) is skipped, not retried forever.
            if let Some(r) = Record::from_line(&line[..n - 1]) {
                out.push(r);
            }
        }
        Ok((out, offset))
    }

    /// Marks everything before `offset` in the oldest segment (`delivered` records) as
    /// delivered; deletes segments that are done.
    pub fn commit(&self, offset: u64, delivered: u64) -> std::io::Result<()> {
        let mut st = self.state.lock().expect("spool lock");
        st.read_offset = offset;
        st.pending = st.pending.saturating_sub(delivered);
        let Some(&seq) = st.segments.first() else {
            return Ok(());
        };
        let len = std::fs::metadata(seg_path(&st.dir, seq))?.len();
        if offset < len {
            return Ok(());
        }
        // The oldest segment is done. If it is the one being appended to, close it first:
        // the next append starts a new segment.
        if st.writer.as_ref().is_some_and(|(s, _, _)| *s == seq) {
            st.writer = None;
        }
        std::fs::remove_file(seg_path(&st.dir, seq))?;
        st.segments.remove(0);
        st.read_offset = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> Record {
        Record {
            time_ns: i,
            kind: "process_exec".into(),
            exec_id: format!("id{i}"),
            json: format!("{{\"n\":{i}}}").into_bytes().into(),
        }
    }

    #[test]
    fn records_come_back_in_order_and_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("vigil-spool-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir).unwrap();
        spool.append(&(0..5).map(rec).collect::<Vec<_>>()).unwrap();
        let (got, off) = spool.peek(3).unwrap();
        assert_eq!(got, (0..3).map(rec).collect::<Vec<_>>());
        spool.commit(off, 3).unwrap();
        drop(spool);
        // A restart re-reads the whole undeleted segment: at least once, never lost.
        let spool = Spool::open(&dir).unwrap();
        assert_eq!(spool.pending(), 5);
        let (got, off) = spool.peek(10).unwrap();
        assert_eq!(got.len(), 5);
        spool.commit(off, 5).unwrap();
        assert_eq!(spool.pending(), 0);
        assert!(
            std::fs::read_dir(&dir).unwrap().next().is_none(),
            "done segments are deleted"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
