//! Lines in a file (JSON, or compact for `--export-file -o compact`), rotated by size and by
//! age: the current file is renamed to `.1` (older backups shift up, the oldest beyond
//! `max_backups` is deleted) and, when asked, gzipped to `.1.gz`. Files are created 0600: events
//! describe every process on the node.
//!
//! Root writes here, in a directory a user may reach: the directory is a
//! [`vigil_safe_fs::TrustedDir`] (created 0700 where missing, every component owned by root and
//! not writable by others), the file is opened with `O_NOFOLLOW` and created exclusively, a
//! backup is created exclusively, and renames and removals happen inside that directory without
//! following a link. [`FileSink::new`] checks the file and every backup name it will rotate to,
//! so a planted link stops the agent at start with the name of the link, its target untouched.

use std::{
    fs::File,
    io::Write,
    path::PathBuf,
    time::{Duration, SystemTime},
};

use serde::Deserialize;
use vigil_safe_fs::{FsError, TrustedDir};

use super::Delivery;
use crate::record::{LineFormat, Record};

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
        };
        let mut sink = sink;
        for n in 1..=sink.cfg.max_backups {
            sink.dir.check_entry(&sink.backup(n))?;
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

    /// Shifts the backups and moves the current file to `.1` (gzipped when configured).
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
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
            // `.1.gz` was just moved away or removed: it is created new, so a link planted
            // there since is refused rather than followed. The file is streamed, not loaded.
            let mut src = self.dir.open_read(&self.name)?;
            let out = self.dir.create_new(&self.backup(1), self.cfg.mode)?;
            let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            std::io::copy(&mut src, &mut gz)?;
            gz.finish()?;
            self.dir.remove(&self.name)?;
        } else {
            self.dir.rename(&self.name, &self.backup(1))?;
        }
        self.open()
    }

    fn write(&mut self, batch: &[Record]) -> std::io::Result<()> {
        if self.file.is_none() {
            self.open()?;
        }
        let mut buf = Vec::with_capacity(batch.iter().map(|r| r.json.len() + 1).sum());
        // The age is read once a batch, not once a record: rotating by age needs no finer grain.
        let mut aged = self.aged();
        for r in batch {
            if self.due(aged) {
                self.flush_buf(&mut buf)?;
                self.rotate()?;
                aged = false;
            }
            let before = buf.len();
            r.write_line(self.cfg.format, &mut buf);
            self.size += (buf.len() - before) as u64;
        }
        self.flush_buf(&mut buf)
    }

    fn flush_buf(&mut self, buf: &mut Vec<u8>) -> std::io::Result<()> {
        if let Some(f) = self.file.as_mut() {
            f.write_all(buf)?;
        }
        buf.clear();
        Ok(())
    }

    /// Appends the batch, rotating as it goes.
    pub fn deliver(&mut self, batch: &[Record]) -> Delivery {
        match self.write(batch) {
            Ok(()) => Delivery::Delivered,
            Err(e) => {
                // A full or failing disk may recover; reopen on the next try.
                self.file = None;
                Delivery::Retry(format!("{}: {e}", self.cfg.path.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{os::unix::fs::PermissionsExt, path::Path};

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
        for planted in ["events.jsonl", "events.jsonl.1.gz", "events.jsonl.5.gz"] {
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
