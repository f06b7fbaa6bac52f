//! A sink's dead-letter file, `<spool_dir>/<sink>/dead-letter.jsonl` (mode 0600): one JSON
//! object per line with the `reason` and either the `event` (a record a destination refused for
//! good) or the `line` (spool bytes that are not a record). Opened through
//! [`vigil_safe_fs::TrustedDir`] (root writes it), checked at start so that a planted link stops
//! the agent with its name, and capped: what would go beyond `cap` bytes is counted, not
//! written, and said once.

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

    /// Writes `letters` with their reasons; `say` receives the lines to log.
    pub fn write(&mut self, letters: &[(Letter<'_>, &str)], say: impl Fn(&str)) -> Written {
        if letters.is_empty() {
            return Written::default();
        }
        let mut buf = Vec::new();
        for (letter, why) in letters {
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
                    buf.extend_from_slice(
                        serde_json::to_string(&text).unwrap_or_default().as_bytes(),
                    );
                }
            }
            buf.extend_from_slice(b"}\n");
        }
        let n = letters.len() as u64;
        let path = self.dir.join(DEAD_LETTER);
        let failure = if self.size + buf.len() as u64 > self.cap {
            Some(format!(
                "the dead-letter file {} holds its cap of {} bytes (`dead_letter_max_mb`): refused records are counted, no longer written; move the file away to keep more",
                path.display(),
                self.cap
            ))
        } else {
            match self
                .dir
                .open_append(DEAD_LETTER, 0o600)
                .map_err(std::io::Error::from)
                .and_then(|mut f| f.write_all(&buf))
            {
                Ok(()) => None,
                Err(e) => Some(format!("cannot write the dead-letter file: {e}")),
            }
        };
        match failure {
            None => {
                self.size += buf.len() as u64;
                if let Some(line) = self
                    .problem
                    .cleared("the dead-letter file is written again")
                {
                    say(&line);
                }
                Written {
                    written: n,
                    dropped: 0,
                }
            }
            Some(why) => {
                if let Some(line) = self.problem.occurred(&why, Instant::now()) {
                    say(&line);
                }
                Written {
                    written: 0,
                    dropped: n,
                }
            }
        }
    }

    /// Writes spool lines that are not records.
    pub fn write_lines(&mut self, bad: &[BadLine], say: impl Fn(&str)) -> Written {
        let letters: Vec<(Letter<'_>, &str)> = bad
            .iter()
            .map(|b| (Letter::Line(&b.bytes), b.reason.as_str()))
            .collect();
        self.write(&letters, say)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> Record {
        Record {
            time_ns: 1,
            kind: "process_exec".into(),
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
