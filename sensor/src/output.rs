//! The agent's own outputs: stdout (JSON or compact lines) or, with `--export-file`, a file.
//! Both are sinks of the exporters' pipeline (see vigil_exporters), declared here beside those
//! of the configuration file, so redaction, filters, rotation and the accounting of failures
//! apply to them as to any sink, and a slow or closed reader never stalls the agent.
//!
//! A reader that goes away (`vigil agent | head -1`) shows up as EPIPE: Rust ignores SIGPIPE in
//! its programs, so the write fails instead of killing the agent, and the stdout sink closes for
//! good while enforcement goes on.

use std::path::Path;

use vigil_exporters::{
    config::{ExportersConfig, SinkConfig, SinkKind},
    record::LineFormat,
    sinks::{file::FileConfig, stdout::StdoutConfig},
};

/// Line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line, Tetragon's shape.
    Json,
    /// One readable line per event, as `tetra getevents -o compact`.
    Compact,
}

impl From<Format> for LineFormat {
    fn from(f: Format) -> LineFormat {
        match f {
            Format::Json => LineFormat::Json,
            Format::Compact => LineFormat::Compact,
        }
    }
}

/// The name of the `--export-file` sink (its spool is `<spool_dir>/export-file/`).
pub const EXPORT_FILE: &str = "export-file";
/// The name of the stdout sink.
pub const STDOUT: &str = "stdout";

/// Adds the agent's own output to `cfg`'s sinks, first: the export file when there is one,
/// else stdout unless the configuration declares a stdout sink of its own.
pub fn add_outputs(cfg: &mut ExportersConfig, export_file: Option<&Path>, format: Format) {
    let kind = match export_file {
        Some(path) => SinkKind::File(FileConfig {
            format: format.into(),
            ..FileConfig::at(path.to_path_buf())
        }),
        None if cfg
            .sinks
            .iter()
            .any(|s| matches!(s.kind, SinkKind::Stdout(_))) =>
        {
            return
        }
        None => SinkKind::Stdout(StdoutConfig {
            format: format.into(),
        }),
    };
    let name = if export_file.is_some() {
        EXPORT_FILE
    } else {
        STDOUT
    };
    let mut sink = SinkConfig::new(name, kind);
    // The export file's spool is the path's own: records a run could not write to one file
    // (a flood at shutdown) are written to that file by the next run, never to another.
    sink.spool_key = export_file.map(|p| format!("{EXPORT_FILE}-{:016x}", path_key(p)));
    // Lines appear as soon as the agent's loop has read them (`make run`, tests that read the
    // export file while the agent runs): a batch is what one read of the ring buffer produced.
    sink.linger_ms = 0;
    cfg.sinks.insert(0, sink);
}

/// FNV-1a of the absolute path: stable across builds and Rust versions, unlike std's hasher.
fn path_key(p: &Path) -> u64 {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    abs.as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_export_file_has_a_spool_of_its_own() {
        let key = |p: &str| {
            let mut cfg = ExportersConfig::default();
            add_outputs(&mut cfg, Some(Path::new(p)), Format::Json);
            cfg.sinks[0].spool_name().to_string()
        };
        assert_eq!(key("/var/log/a.jsonl"), key("/var/log/a.jsonl"));
        assert_ne!(key("/var/log/a.jsonl"), key("/var/log/b.jsonl"));
        assert!(key("/var/log/a.jsonl").starts_with("export-file-"));
        let mut cfg = ExportersConfig::default();
        add_outputs(&mut cfg, None, Format::Json);
        assert_eq!(cfg.sinks[0].spool_name(), STDOUT);
    }

    #[test]
    fn stdout_or_the_export_file_becomes_the_first_sink() {
        let mut cfg = ExportersConfig::default();
        add_outputs(&mut cfg, None, Format::Compact);
        assert_eq!(cfg.sinks[0].name, STDOUT);
        assert!(matches!(
            &cfg.sinks[0].kind,
            SinkKind::Stdout(StdoutConfig {
                format: LineFormat::Compact
            })
        ));
        let mut cfg = ExportersConfig::default();
        add_outputs(&mut cfg, Some(Path::new("/var/log/ev.jsonl")), Format::Json);
        let SinkKind::File(f) = &cfg.sinks[0].kind else {
            panic!("a file sink")
        };
        assert_eq!((f.max_size_mb, f.max_backups, f.compress), (100, 5, true));
        assert_eq!(cfg.sinks[0].linger_ms, 0);
    }

    #[test]
    fn a_configured_stdout_sink_replaces_the_agents_own() {
        let mut cfg = ExportersConfig::default();
        cfg.sinks.push(SinkConfig::new(
            "alerts",
            SinkKind::Stdout(StdoutConfig::default()),
        ));
        add_outputs(&mut cfg, None, Format::Json);
        assert_eq!(cfg.sinks.len(), 1);
    }
}
