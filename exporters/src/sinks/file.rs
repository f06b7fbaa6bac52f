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
//! appear again after a cut-short one; a file found ending in a line cut short (that, or a
//! crash mid-write) gets a newline before the next lines, so they are whole. One
//! agent writes the file: a second writer on the same file could have its lines cut.
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
    /// The file ends in a line cut short (a crash mid-write, or a failed write whose cut
    /// failed too): a newline goes before the next line, so that it starts on its own.
    cut_line: bool,
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
            cut_line: false,
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
        // Only looked at here; the newline is written with the next lines, so that a full disk
        // delays it (a retry) rather than stopping the agent's start.
        self.cut_line = self.size > 0 && self.ends_in_newline(&meta) == Some(false);
        self.opened = meta
            .created()
            .or_else(|_| meta.modified())
            .unwrap_or(SystemTime::now());
        self.file = Some(f);
        Ok(())
    }

    /// Whether the last byte of the file opened with `meta` ends a line; `None` where that
    /// cannot be read (the name no longer that file, or a failing disk): the file is then left
    /// as it is.
    fn ends_in_newline(&self, meta: &std::fs::Metadata) -> Option<bool> {
        use std::os::unix::fs::{FileExt, MetadataExt};
        let reader = self.dir.open_read(&self.name).ok()?;
        let same = reader.metadata().ok()?;
        if (same.dev(), same.ino()) != (meta.dev(), meta.ino()) || same.len() != meta.len() {
            return None;
        }
        let mut last = [0u8];
        reader
            .read_exact_at(&mut last, meta.len().checked_sub(1)?)
            .ok()?;
        Some(last[0] == b'\n')
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
            if self.cut_line {
                std::io::Write::write_all(file, b"\n").map_err(|e| (done, e))?;
                self.cut_line = false;
                crate::report::log(
                    &self.cfg.path.display().to_string(),
                    "the file ended in a line cut short (a crash or a failed write): a newline \
                     was added so that the lines after it are whole",
                );
            }
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
mod tests;
