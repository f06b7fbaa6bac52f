//! Where events go for now: JSON lines or compact lines, on stdout or in an export file.

use std::{
    fs::OpenOptions,
    io::{self, BufWriter, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use vigil_events::{compact, Event};

/// Line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line, Tetragon's shape.
    Json,
    /// One readable line per event, as `tetra getevents -o compact`.
    Compact,
}

/// A buffered event writer.
pub struct Output {
    w: BufWriter<Box<dyn Write + Send>>,
    format: Format,
}

impl Output {
    /// Writes to `path` (appending, created 0600) or to stdout.
    pub fn open(path: Option<&Path>, format: Format) -> io::Result<Self> {
        let inner: Box<dyn Write + Send> = match path {
            Some(p) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(p)?,
            ),
            None => Box::new(io::stdout()),
        };
        Ok(Output {
            w: BufWriter::with_capacity(1 << 16, inner),
            format,
        })
    }

    /// Writes one event.
    pub fn write(&mut self, event: &Event) -> io::Result<()> {
        match self.format {
            Format::Json => serde_json::to_writer(&mut self.w, event).map_err(io::Error::other)?,
            Format::Compact => self.w.write_all(compact::render(event).as_bytes())?,
        }
        self.w.write_all(b"\n")
    }

    /// Pushes buffered lines out.
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}
