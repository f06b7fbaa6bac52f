//! Lines in a file (JSON, or compact for `--export-file -o compact`), rotated by size and by
//! age: the current file is renamed to `.1` (older backups shift up, the oldest beyond
//! `max_backups` is deleted) and, when asked, gzipped to `.1.gz`. Files are created 0600: events
//! describe every process on the node.
//!
//! The gzip runs on a thread of its own: the sink delivers on the agent's event loop, and
//! compressing 100 MiB there held the ring buffer's reader for about a second per rotation. The
//! rotated file waits under a name of its own (`<name>.rotated`) until its `.1.gz` is complete;
//! one found at start, or left by a gzip that failed, is compressed before the next rotation
//! (so `.1.gz`, when that name exists beside it, is only its partial copy), or removed by it
//! where only one backup is kept, and no line is lost to a crash or a full disk in between.
//!
//! A write that fails partway through a batch (a full disk) cuts the file back to where the
//! write began (its length read from the file, which may have been cut from outside), so no
//! line is left cut short; the records already written whole (before a rotation in the batch)
//! are delivered and only the rest are retried, so none appears twice. Where the cut itself
//! fails (the disk gone), that is logged with the write's error, and the lines written may
//! appear again after a cut-short one. One agent writes the file: a second writer on the same
//! file could have its lines cut.
//!
//! Root writes here, in a directory a user may reach: the directory is a
//! [`vigil_safe_fs::TrustedDir`] (created 0700 where missing, every component owned by root and
//! not writable by others), the file is opened with `O_NOFOLLOW` and created exclusively, a
//! backup is created exclusively, and renames and removals happen inside that directory without
//! following a link. [`FileSink::new`] checks the file and every backup name it will rotate to,
//! so a planted link stops the agent at start with the name of the link, its target untouched.

use std::{
    fs::File,
    path::PathBuf,
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

use serde::Deserialize;
use vigil_safe_fs::{FsError, TrustedDir};

use super::Delivery;
use crate::record::{write_lines, LineFormat, Record};

/// `type: file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file events are appended to.
    pub path: PathBuf,
    /// `json` (the default) or `compact`.
    #[serde(default)]
    pub format: LineFormat,
    /// Rotate when the file reaches this many MiB (0: never by size).
    #[serde(default = "default_size")]
    pub max_size_mb: u64,
    /// Rotate when the file is this many hours old (0: never by age).
    #[serde(default)]
    pub max_age_hours: u64,
    /// Rotated files kept.
    #[serde(default = "default_backups")]
    pub max_backups: u32,
    /// Gzip rotated files.
    #[serde(default = "default_true")]
    pub compress: bool,
    /// File mode of new files (octal in YAML: `0o600`); never writable by group or others.
    #[serde(default = "default_mode")]
    pub mode: u32,
}

impl FileConfig {
    /// A file at `path` with the default rotation.
    pub fn at(path: PathBuf) -> FileConfig {
        FileConfig {
            path,
            format: LineFormat::Json,
            max_size_mb: default_size(),
            max_age_hours: 0,
            max_backups: default_backups(),
            compress: true,
            mode: default_mode(),
        }
    }
}

fn default_size() -> u64 {
    100
}
fn default_backups() -> u32 {
    5
}
fn default_true() -> bool {
    true
}
fn default_mode() -> u32 {
    0o600
}

/// The file sink.
pub struct FileSink {
    cfg: FileConfig,
    dir: TrustedDir,
    name: String,
    file: Option<File>,
    size: u64,
    opened: SystemTime,
    /// The gzip of the last rotated file, while it runs.
    gzip: Option<JoinHandle<Result<(), FsError>>>,
    /// Compact lines' buffer, kept between batches.
    scratch: Vec<u8>,
}

impl FileSink {
    /// A sink writing to `cfg.path`, created now if missing. Its directory is created 0700
    /// where missing; the file and its backup names must not be links, files of another user,
    /// or writable by others.
    pub fn new(mut cfg: FileConfig) -> Result<FileSink, FsError> {
        // A group- or world-writable file is refused when it exists: never create one.
        cfg.mode &= 0o755;
        let name = cfg
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty() && *n != "." && *n != "..")
            .ok_or_else(|| FsError::BadName {
                dir: cfg.path.parent().map(PathBuf::from).unwrap_or_default(),
                name: cfg.path.display().to_string(),
            })?
            .to_string();
        let parent = match cfg.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = TrustedDir::create(&parent)?;
        let sink = FileSink {
            cfg,
            dir,
            name,
            file: None,
            size: 0,
            opened: SystemTime::now(),
            gzip: None,
            scratch: Vec::new(),
        };
        let mut sink = sink;
        for n in 1..=sink.cfg.max_backups {
            sink.dir.check_entry(&sink.backup(n))?;
        }
        // A rotation the last run did not finish compressing: finished now, in the background;
        // where that cannot start, at the next rotation (the agent starts either way).
        if sink.dir.check_entry(&sink.rotated())? && sink.cfg.compress {
            if let Err(e) = sink.gzip_rotated(true) {
                crate::report::log(&sink.cfg.path.display().to_string(), &e.to_string());
            }
        }
        // Opened (created) now: a problem shows at start, and the file exists from the start,
        // as an export file always did.
        let f = sink.dir.open_append(&sink.name, sink.cfg.mode)?;
        sink.adopt(f).map_err(|source| FsError::Io {
            path: sink.cfg.path.clone(),
            op: "stat",
            source,
        })?;
        Ok(sink)
    }

    fn backup(&self, n: u32) -> String {
        let ext = if self.cfg.compress { ".gz" } else { "" };
        format!("{}.{n}{ext}", self.name)
    }

    /// The name a rotated file has until its gzipped backup is complete.
    fn rotated(&self) -> String {
        format!("{}.rotated", self.name)
    }

    fn open(&mut self) -> std::io::Result<()> {
        let f = self.dir.open_append(&self.name, self.cfg.mode)?;
        self.adopt(f)
    }

    fn adopt(&mut self, f: File) -> std::io::Result<()> {
        let meta = f.metadata()?;
        self.size = meta.len();
        self.opened = meta
            .created()
            .or_else(|_| meta.modified())
            .unwrap_or(SystemTime::now());
        self.file = Some(f);
        Ok(())
    }

    fn aged(&self) -> bool {
        self.cfg.max_age_hours > 0
            && self.opened.elapsed().unwrap_or_default()
                >= Duration::from_secs(self.cfg.max_age_hours * 3600)
    }

    /// Whether the file must rotate before the next record; `aged` is [`Self::aged`].
    fn due(&self, aged: bool) -> bool {
        let by_size = self.cfg.max_size_mb > 0 && self.size >= self.cfg.max_size_mb << 20;
        self.size > 0 && (by_size || aged)
    }

    /// Shifts the backups and moves the current file to `.1` (gzipped when configured, in the
    /// background).
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        self.wait_for_gzip();
        if self.cfg.compress && self.dir.check_entry(&self.rotated())? {
            if self.cfg.max_backups > 1 {
                // The last gzip failed: its file is compressed first, here, before `.1.gz` moves.
                self.gzip_rotated(false)?;
            } else {
                // Its backup would be the one this rotation deletes.
                self.dir.remove(&self.rotated())?;
            }
        }
        let last = self.cfg.max_backups.max(1);
        self.dir.remove(&self.backup(last))?;
        for n in (1..last).rev() {
            if self.dir.check_entry(&self.backup(n))? {
                self.dir.rename(&self.backup(n), &self.backup(n + 1))?;
            }
        }
        if self.cfg.max_backups == 0 {
            self.dir.remove(&self.name)?;
        } else if self.cfg.compress {
            self.dir.rename(&self.name, &self.rotated())?;
            self.gzip_rotated(true)?;
        } else {
            self.dir.rename(&self.name, &self.backup(1))?;
        }
        self.open()
    }

    /// Gzips the rotated file into `.1.gz` and then removes it, on a thread of its own when
    /// `background` is set. `.1.gz` is at most a partial copy of it (see the module's docs): it
    /// is created new, so a link planted there is refused rather than followed. The file is
    /// streamed, not loaded.
    fn gzip_rotated(&mut self, background: bool) -> Result<(), FsError> {
        let (from, to) = (self.rotated(), self.backup(1));
        self.dir.remove(&to)?;
        let src = self.dir.open_read(&from)?;
        let out = self.dir.create_new(&to, self.cfg.mode)?;
        if !background {
            return gzip(&self.dir, src, out, &from, &to);
        }
        let dir = self.dir.try_clone()?;
        let thread = std::thread::Builder::new()
            .name("vigil-gzip".into())
            .spawn(move || gzip(&dir, src, out, &from, &to))
            .map_err(|source| FsError::Io {
                path: self.dir.join(&self.rotated()),
                op: "start the gzip thread",
                source,
            })?;
        self.gzip = Some(thread);
        Ok(())
    }

    /// Waits for the gzip of the last rotation; a failure is logged, and its file is
    /// compressed again at the next rotation.
    fn wait_for_gzip(&mut self) {
        let Some(thread) = self.gzip.take() else {
            return;
        };
        let failure = match thread.join() {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the gzip thread panicked".to_string(),
        };
        crate::report::log(
            &self.cfg.path.display().to_string(),
            &format!(
                "{failure}; the rotated lines stay in {} and are compressed at the next rotation",
                self.dir.join(&self.rotated()).display()
            ),
        );
    }

    /// Appends the batch, rotating as it goes; on a failure, how many of its records are in
    /// a file whole, and the error.
    fn write(&mut self, batch: &[Record]) -> Result<(), (usize, std::io::Error)> {
        let mut done = 0;
        if self.file.is_none() {
            self.open().map_err(|e| (done, e))?;
        }
        // The age is read once a batch, not once a record: rotating by age needs no finer grain.
        let mut aged = self.aged();
        while done < batch.len() {
            if self.due(aged) {
                self.rotate().map_err(|e| (done, e))?;
                aged = false;
            }
            let Some(file) = self.file.as_mut() else {
                return Err((done, std::io::ErrorKind::NotConnected.into()));
            };
            // Where the lines begin, read from the file itself: it may have been cut from
            // outside (`copytruncate`, `: >`) since it was opened.
            let start = file.metadata().map_err(|e| (done, e))?.len();
            self.size = start;
            // Up to the record that fills the file (`due` rotated a full one).
            let budget = match self.cfg.max_size_mb {
                0 => u64::MAX,
                mb => (mb << 20).saturating_sub(self.size).max(1),
            };
            match write_lines(
                &batch[done..],
                self.cfg.format,
                file,
                &mut self.scratch,
                budget,
            ) {
                Ok((n, bytes)) => {
                    self.size += bytes;
                    done += n;
                }
                Err(e) => {
                    // Part of the lines may be in the file, the last one cut short: the file is
                    // cut back to where they began (never lengthened), so that the retry
                    // writes each line once and whole. Where that fails too, both errors are
                    // told, and the lines written may appear again after a cut-short one.
                    let cut = match file.metadata() {
                        Ok(m) if m.len() <= start => Ok(()),
                        _ => file.set_len(start),
                    };
                    return Err(match cut {
                        Ok(()) => (done, e),
                        Err(cut) => (
                            done,
                            std::io::Error::new(
                                e.kind(),
                                format!("{e}; cutting the partly written lines off failed: {cut}"),
                            ),
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Appends the batch, rotating as it goes. Where the disk fails partway (full, or an I/O
    /// error), the records already written are delivered and the rest retried.
    pub fn deliver(&mut self, batch: &[Record]) -> Delivery {
        match self.write(batch) {
            Ok(()) => Delivery::Delivered,
            Err((done, e)) => {
                // A full or failing disk may recover; reopen on the next try.
                self.file = None;
                let why = format!("{}: {e}", self.cfg.path.display());
                if done == 0 {
                    return Delivery::Retry(why);
                }
                crate::report::log(
                    &self.cfg.path.display().to_string(),
                    &format!(
                        "{why}; retrying the batch's last {} records",
                        batch.len() - done
                    ),
                );
                Delivery::Partial {
                    retry: (done..batch.len()).collect(),
                    rejected: Vec::new(),
                }
            }
        }
    }
}

impl Drop for FileSink {
    /// A stopping agent leaves its backups complete.
    fn drop(&mut self) {
        self.wait_for_gzip();
    }
}

/// Streams `src` into `out` gzipped, then removes `from` (`src`'s name); on a failure, `to`
/// (`out`'s name), a partial copy, is removed and `from` kept.
fn gzip(dir: &TrustedDir, mut src: File, out: File, from: &str, to: &str) -> Result<(), FsError> {
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let written = std::io::copy(&mut src, &mut gz).and_then(|_| gz.finish().map(drop));
    if let Err(source) = written {
        let _ = dir.remove(to);
        return Err(FsError::Io {
            path: dir.join(to),
            op: "gzip the rotated file into",
            source,
        });
    }
    dir.remove(from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{io::Write, os::unix::fs::PermissionsExt, path::Path};

    #[test]
    fn files_rotate_by_size_into_gzipped_backups_and_keep_a_bounded_number() {
        let dir = std::env::temp_dir().join(format!("vigil-file-sink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("events.jsonl");
        let mut sink = FileSink::new(FileConfig {
            max_size_mb: 1,
            max_backups: 2,
            ..FileConfig::at(path.clone())
        })
        .unwrap();
        let rec = |n: usize| Record {
            time_ns: 0,
            kind: "process_exec".into(),
            exec_id: String::new(),
            json: format!("{{\"n\":{n},\"pad\":\"{}\"}}", "y".repeat(1000))
                .into_bytes()
                .into(),
        };
        // About 4.1 MiB: four rotations, of which two backups are kept.
        for chunk in (0..4200).collect::<Vec<_>>().chunks(100) {
            let batch: Vec<Record> = chunk.iter().map(|n| rec(*n)).collect();
            assert_eq!(sink.deliver(&batch), Delivery::Delivered);
        }
        // The last rotation's gzip may still run: a stopping sink waits for it.
        drop(sink);
        assert!(!dir.join("events.jsonl.rotated").exists());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        let b1 = dir.join("events.jsonl.1.gz");
        let b2 = dir.join("events.jsonl.2.gz");
        assert!(b1.exists() && b2.exists());
        assert!(
            !dir.join("events.jsonl.3.gz").exists(),
            "only max_backups are kept"
        );
        assert_eq!(mode(&b1), 0o600);
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(File::open(&b1).unwrap()),
            &mut text,
        )
        .unwrap();
        assert!(
            text.lines().count() > 900,
            "a backup holds about 1 MiB of lines"
        );
        assert!(text
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.lines().last().unwrap().contains("\"n\":4199"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_link_at_the_file_or_a_backup_name_is_refused_at_start_and_not_followed() {
        let dir = std::env::temp_dir().join(format!("vigil-file-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let target = dir.join("precious");
        std::fs::write(&target, "root's data\n").unwrap();
        for planted in [
            "events.jsonl",
            "events.jsonl.1.gz",
            "events.jsonl.5.gz",
            "events.jsonl.rotated",
        ] {
            let link = dir.join(planted);
            std::os::unix::fs::symlink(&target, &link).unwrap();
            let err = FileSink::new(FileConfig::at(dir.join("events.jsonl")))
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(link.to_str().unwrap()), "{err}");
            assert!(err.contains("symbolic link"), "{err}");
            std::fs::remove_file(&link).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "root's data\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Numbered records of about 100 bytes.
    fn numbered(range: std::ops::Range<usize>) -> Vec<Record> {
        range
            .map(|n| Record {
                time_ns: 0,
                kind: "process_exec".into(),
                exec_id: String::new(),
                json: format!("{{\"n\":{n},\"pad\":\"{}\"}}", "p".repeat(80))
                    .into_bytes()
                    .into(),
            })
            .collect()
    }

    /// The record numbers of the lines of `files`, in order; every line must be whole.
    fn numbers_in(files: &[PathBuf]) -> Vec<usize> {
        let mut numbers = Vec::new();
        for f in files {
            for line in std::fs::read_to_string(f).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).expect("a whole line");
                numbers.push(v["n"].as_u64().unwrap() as usize);
            }
        }
        numbers
    }

    /// A rotation that fails partway through a batch (a directory where the backup must go)
    /// delivers the lines already written and has only the rest retried: each line once.
    #[test]
    fn a_batch_cut_short_by_a_failed_rotation_delivers_its_written_lines_once() {
        let dir = std::env::temp_dir().join(format!("vigil-file-partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let mut sink = FileSink::new(FileConfig {
            max_size_mb: 1,
            max_backups: 1,
            compress: false,
            ..FileConfig::at(path.clone())
        })
        .unwrap();
        let backup = dir.join("events.jsonl.1");
        std::fs::create_dir(&backup).unwrap();
        std::fs::write(backup.join("kept"), b"x").unwrap();
        let batch = numbered(0..15_000);
        let Delivery::Partial { retry, rejected } = sink.deliver(&batch) else {
            panic!("a batch half written is delivered in part");
        };
        assert!(rejected.is_empty());
        let first = retry[0];
        assert!(
            (10_000..11_000).contains(&first),
            "{first}: a full file's lines"
        );
        assert_eq!(retry, (first..15_000).collect::<Vec<_>>());
        std::fs::remove_dir_all(&backup).unwrap();
        let rest: Vec<Record> = retry.iter().map(|i| batch[*i].clone()).collect();
        assert_eq!(sink.deliver(&rest), Delivery::Delivered);
        drop(sink);
        assert_eq!(numbers_in(&[backup, path]), (0..15_000).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Set in the child process of the full-disk test.
    const FULL_DISK_CHILD: &str = "VIGIL_TEST_FULL_DISK_CHILD";

    /// A write that fails partway (the disk full, here a file size limit) leaves the file as it
    /// was before the batch, not with the batch's first lines and a line cut short: the retry
    /// then writes each line once and whole. Run in a child process, since the limit holds for
    /// every file the process writes.
    #[test]
    fn a_disk_that_fills_partway_through_a_batch_leaves_no_line_twice_or_cut() {
        if std::env::var_os(FULL_DISK_CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "sinks::file::tests::a_disk_that_fills_partway_through_a_batch_leaves_no_line_twice_or_cut",
                ])
                .env(FULL_DISK_CHILD, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        // The hard limit is kept: raising it needs CAP_SYS_RESOURCE.
        let mut hard = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a plain system call filling a valid struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut hard) }, 0);
        let limit = |bytes: libc::rlim_t| {
            let l = libc::rlimit {
                rlim_cur: bytes.min(hard.rlim_max),
                rlim_max: hard.rlim_max,
            };
            // SAFETY: a plain system call on a valid struct.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &l) }, 0);
        };
        // Past the limit a write fails with EFBIG rather than killing the process.
        // SAFETY: ignoring a signal, in a process of its own.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        let dir = std::env::temp_dir().join(format!("vigil-file-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let mut sink = FileSink::new(FileConfig::at(path.clone())).unwrap();
        assert_eq!(sink.deliver(&numbered(0..50)), Delivery::Delivered);
        let before = std::fs::metadata(&path).unwrap().len();
        limit(before + 20_000);
        let batch = numbered(50..2_000);
        assert!(matches!(sink.deliver(&batch), Delivery::Retry(_)));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), before);
        limit(hard.rlim_max);
        assert_eq!(sink.deliver(&batch), Delivery::Delivered);
        assert_eq!(
            numbers_in(std::slice::from_ref(&path)),
            (0..2_000).collect::<Vec<_>>()
        );
        // The file cut to nothing from outside (`copytruncate`), then the disk full again: the
        // cut goes back to the file's own length, never lengthening it with zeros.
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        limit(2_000);
        let batch = numbered(2_000..2_100);
        assert!(matches!(sink.deliver(&batch), Delivery::Retry(_)));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        limit(hard.rlim_max);
        assert_eq!(sink.deliver(&batch), Delivery::Delivered);
        drop(sink);
        assert_eq!(numbers_in(&[path]), (2_000..2_100).collect::<Vec<_>>());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_rotation_cut_short_is_compressed_at_start_and_its_partial_backup_replaced() {
        let dir = std::env::temp_dir().join(format!("vigil-file-cut-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let create = |name: &str, text: &[u8]| {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.join(name))
                .unwrap();
            f.write_all(text).unwrap();
        };
        // A crash during the gzip: the rotated file whole, its backup cut off.
        let lines: String = (0..500).map(|n| format!("{{\"n\":{n}}}\n")).collect();
        create("events.jsonl.rotated", lines.as_bytes());
        create("events.jsonl.1.gz", &[0x1f, 0x8b, 8, 0]);
        create("events.jsonl.2.gz", b"an older backup");
        let sink = FileSink::new(FileConfig::at(dir.join("events.jsonl"))).unwrap();
        drop(sink);
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(File::open(dir.join("events.jsonl.1.gz")).unwrap()),
            &mut text,
        )
        .unwrap();
        assert_eq!(text, lines);
        assert!(!dir.join("events.jsonl.rotated").exists());
        assert_eq!(
            std::fs::read(dir.join("events.jsonl.2.gz")).unwrap(),
            b"an older backup"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_others_may_write_is_refused() {
        let dir = std::env::temp_dir().join(format!("vigil-file-mode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("events.jsonl");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = FileSink::new(FileConfig::at(path.clone()))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("writable by group or others"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
