//! A sink's dead-letter file, `<spool_dir>/<sink>/dead-letter.jsonl` (mode 0600): one JSON
//! object per line with the `reason` and either the `event` (a record a destination refused for
//! good) or the `line` (spool bytes that are not a record). Opened through
//! [`vigil_safe_fs::TrustedDir`] (root writes it), checked at start so that a planted link stops
//! the agent with its name, and capped: the entries that fit under `cap` bytes are written, the
//! rest counted, not written, and said once. The cap is checked entry by entry while the entries
//! are built, so a write never holds more than the room left and one entry.

use std::{io::Write, time::Instant};

use vigil_safe_fs::{FsError, TrustedDir};

use crate::{record::Record, report::Problem, spool::BadLine};

/// The file's name in the sink's directory.
pub const DEAD_LETTER: &str = "dead-letter.jsonl";

/// What goes to the dead-letter file.
pub enum Letter<'a> {
    /// A record refused for good.
    Record(&'a Record),
    /// Spool bytes that are not a record.
    Line(&'a [u8]),
}

/// One sink's dead-letter file.
pub struct DeadLetter {
    dir: TrustedDir,
    size: u64,
    cap: u64,
    problem: Problem,
}

/// How a write went: entries written, and entries dropped by the cap or a failure.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Entries in the file.
    pub written: u64,
    /// Entries lost (the cap was reached, or the write failed).
    pub dropped: u64,
}

impl DeadLetter {
    /// The dead-letter file of the sink whose directory is `dir`, at most `cap` bytes.
    pub fn open(dir: TrustedDir, cap: u64) -> Result<DeadLetter, FsError> {
        let size = if dir.check_entry(DEAD_LETTER)? {
            dir.size(DEAD_LETTER)?
        } else {
            0
        };
        Ok(DeadLetter {
            dir,
            size,
            cap,
            problem: Problem::default(),
        })
    }

    /// The sink's directory.
    pub fn dir(&self) -> &TrustedDir {
        &self.dir
    }

    /// Writes `letters` with their reasons, as many as fit under the cap, in order; `say`
    /// receives the lines to log.
    pub fn write(&mut self, letters: &[(Letter<'_>, &str)], say: impl Fn(&str)) -> Written {
        if letters.is_empty() {
            return Written::default();
        }
        let room = self.cap.saturating_sub(self.size);
        let mut buf = Vec::new();
        let mut fit = 0;
        for (letter, why) in letters {
            let start = buf.len();
            entry(&mut buf, letter, why);
            if buf.len() as u64 > room {
                buf.truncate(start);
                break;
            }
            fit += 1;
        }
        let n = letters.len() as u64;
        let path = self.dir.join(DEAD_LETTER);
        let written = if buf.is_empty() {
            Ok(())
        } else {
            self.dir
                .open_append(DEAD_LETTER, 0o600)
                .map_err(std::io::Error::from)
                .and_then(|mut f| f.write_all(&buf))
        };
        let (done, failure) = match written {
            Err(e) => (0, Some(format!("cannot write the dead-letter file: {e}"))),
            Ok(()) => {
                self.size += buf.len() as u64;
                let full = (fit < n).then(|| format!(
                    "the dead-letter file {} holds its cap of {} bytes (`dead_letter_max_mb`): refused records that do not fit are counted (dead_letter_dropped), not written; move the file away to keep more",
                    path.display(),
                    self.cap
                ));
                (fit, full)
            }
        };
        let line = match failure {
            None => self
                .problem
                .cleared("the dead-letter file is written again"),
            Some(why) => self.problem.occurred(&why, Instant::now()),
        };
        if let Some(line) = line {
            say(&line);
        }
        Written {
            written: done,
            dropped: n - done,
        }
    }

    /// Writes spool lines that are not records (as many as fit).
    pub fn write_lines(&mut self, bad: &[BadLine], say: impl Fn(&str)) -> Written {
        let letters: Vec<(Letter<'_>, &str)> = bad
            .iter()
            .map(|b| (Letter::Line(&b.bytes), b.reason.as_str()))
            .collect();
        self.write(&letters, say)
    }
}

/// Appends one entry, a JSON line, to `buf`.
fn entry(buf: &mut Vec<u8>, letter: &Letter<'_>, why: &str) {
    buf.extend_from_slice(b"{\"reason\":");
    buf.extend_from_slice(serde_json::to_string(why).unwrap_or_default().as_bytes());
    match letter {
        Letter::Record(r) => {
            buf.extend_from_slice(b",\"event\":");
            buf.extend_from_slice(&r.json);
        }
        Letter::Line(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            buf.extend_from_slice(b",\"line\":");
            buf.extend_from_slice(serde_json::to_string(&text).unwrap_or_default().as_bytes());
        }
    }
    buf.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record {
        Record {
            time_ns: 1,
            kind: "process_exec",
            exec_id: "e".into(),
            json: bytes::Bytes::from_static(b"{\"n\":1}"),
        }
    }

    #[test]
    fn beyond_its_cap_the_dead_letter_file_counts_and_says_so_once() {
        let p = std::env::temp_dir().join(format!("vigil-dead-cap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        let mut d = DeadLetter::open(TrustedDir::create(&p).unwrap(), 100).unwrap();
        let said = std::cell::RefCell::new(Vec::new());
        let say = |l: &str| said.borrow_mut().push(l.to_string());
        let r = rec();
        let one = [(Letter::Record(&r), "refused")];
        assert_eq!(d.write(&one, say).written, 1);
        let mut dropped = 0;
        for _ in 0..10 {
            dropped += d.write(&one, say).dropped;
        }
        let text = std::fs::read_to_string(p.join(DEAD_LETTER)).unwrap();
        assert!(text.len() <= 100, "{text}");
        assert_eq!(dropped, 10 - (text.lines().count() as u64 - 1));
        assert_eq!(said.borrow().len(), 1, "{:?}", said.borrow());
        assert!(said.borrow()[0].contains("dead_letter_max_mb"));
        let _ = std::fs::remove_dir_all(&p);
    }

    /// One write of more entries than there is room for writes those that fit (before, the
    /// whole write was dropped while the file was far from its cap) and says the file is full.
    #[test]
    fn a_write_beyond_the_room_left_writes_what_fits_and_counts_the_rest() {
        let p = std::env::temp_dir().join(format!("vigil-dead-fit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        let mut d = DeadLetter::open(TrustedDir::create(&p).unwrap(), 100).unwrap();
        let said = std::cell::RefCell::new(Vec::new());
        let say = |l: &str| said.borrow_mut().push(l.to_string());
        let r = rec();
        let line = b"{\"reason\":\"refused\",\"event\":{\"n\":1}}\n";
        let ten: Vec<_> = (0..10).map(|_| (Letter::Record(&r), "refused")).collect();
        let w = d.write(&ten, say);
        let fit = 100 / line.len() as u64;
        assert_eq!(
            w,
            Written {
                written: fit,
                dropped: 10 - fit
            }
        );
        let text = std::fs::read(p.join(DEAD_LETTER)).unwrap();
        assert_eq!(text, line.repeat(fit as usize));
        assert_eq!(said.borrow().len(), 1, "{:?}", said.borrow());
        assert!(said.borrow()[0].contains("holds its cap of 100 bytes"));
        let _ = std::fs::remove_dir_all(&p);
    }

    #[test]
    fn a_link_planted_at_the_dead_letter_file_is_refused_by_name() {
        let p = std::env::temp_dir().join(format!("vigil-dead-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", p.join(DEAD_LETTER)).unwrap();
        let err = DeadLetter::open(TrustedDir::open(&p).unwrap(), 100)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(p.join(DEAD_LETTER).to_str().unwrap()), "{err}");
        let _ = std::fs::remove_dir_all(&p);
    }
}
