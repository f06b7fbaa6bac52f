//! JSON lines in a file, rotated by size and by age: the current file is renamed to `.1` (older
//! backups shift up, the oldest beyond `max_backups` is deleted) and, when asked, gzipped to
//! `.1.gz`. Files are created 0600: events describe every process on the node.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::Deserialize;

use super::Delivery;
use crate::record::Record;

/// `type: file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file events are appended to.
    pub path: PathBuf,
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
    /// File mode of new files (octal in YAML: `0o600`).
    #[serde(default = "default_mode")]
    pub mode: u32,
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
    file: Option<File>,
    size: u64,
    opened: SystemTime,
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl FileSink {
    /// A sink writing to `cfg.path` (opened on first delivery).
    pub fn new(cfg: FileConfig) -> FileSink {
        FileSink {
            cfg,
            file: None,
            size: 0,
            opened: SystemTime::now(),
        }
    }

    fn open(&mut self) -> std::io::Result<()> {
        if let Some(dir) = self.cfg.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(self.cfg.mode)
            .open(&self.cfg.path)?;
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
        let ext = if self.cfg.compress { ".gz" } else { "" };
        let backup = |n: u32| with_suffix(&self.cfg.path, &format!(".{n}{ext}"));
        let _ = std::fs::remove_file(backup(self.cfg.max_backups.max(1)));
        for n in (1..self.cfg.max_backups.max(1)).rev() {
            if backup(n).exists() {
                std::fs::rename(backup(n), backup(n + 1))?;
            }
        }
        if self.cfg.max_backups == 0 {
            std::fs::remove_file(&self.cfg.path)?;
        } else if self.cfg.compress {
            let data = std::fs::read(&self.cfg.path)?;
            let out = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(self.cfg.mode)
                .open(backup(1))?;
            let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            gz.write_all(&data)?;
            gz.finish()?;
            std::fs::remove_file(&self.cfg.path)?;
        } else {
            std::fs::rename(&self.cfg.path, backup(1))?;
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
            buf.extend_from_slice(&r.json);
            buf.push(b'\n');
            self.size += r.json.len() as u64 + 1;
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
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_rotate_by_size_into_gzipped_backups_and_keep_a_bounded_number() {
        let dir = std::env::temp_dir().join(format!("vigil-file-sink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("events.jsonl");
        let mut sink = FileSink::new(FileConfig {
            path: path.clone(),
            max_size_mb: 1,
            max_age_hours: 0,
            max_backups: 2,
            compress: true,
            mode: 0o600,
        });
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
        let b1 = with_suffix(&path, ".1.gz");
        let b2 = with_suffix(&path, ".2.gz");
        assert!(b1.exists() && b2.exists());
        assert!(
            !with_suffix(&path, ".3.gz").exists(),
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
}
