//! The agent's own outputs: stdout (JSON or compact lines) and, with `--export-file`, a file.
//! Both are sinks of the exporters' pipeline (see vigil_exporters), declared here beside those
//! of the configuration file, so redaction, filters, rotation and the accounting of failures
//! apply to them as to any sink, and a slow or closed reader never stalls the agent.
//!
//! stdout carries the events when nothing else does (no export file, no configured sink) or
//! when `-o` asks for them: an agent exporting to a file or a SIEM keeps its terminal or journal
//! for its log lines.
//!
//! A reader that goes away (`vigil agent | head -1`) shows up as EPIPE: Rust ignores SIGPIPE in
//! its programs, so the write fails instead of killing the agent, and the stdout sink closes for
//! good while enforcement goes on.

use std::path::Path;

use vigil_exporters::{
    config::{ExportersConfig, SinkConfig, SinkKind},
    filter::FilterSpec,
    record::LineFormat,
    sinks::{file::FileConfig, stdout::StdoutConfig},
};

/// A line format `-o` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LineChoice {
    /// One JSON object per line, Tetragon's shape.
    Json,
    /// One readable line per event, as `tetra getevents -o compact`.
    Compact,
}

impl From<LineChoice> for LineFormat {
    fn from(f: LineChoice) -> LineFormat {
        match f {
            LineChoice::Json => LineFormat::Json,
            LineChoice::Compact => LineFormat::Compact,
        }
    }
}

/// `-o` as given on the command line, `None` when it was not: whether stdout must carry the
/// events beside the other outputs, and in which format the agent's own outputs write them.
pub type Format = Option<LineChoice>;

/// The name of the `--export-file` sink (its spool is `<spool_dir>/export-file/`).
pub const EXPORT_FILE: &str = "export-file";
/// The name of the stdout sink.
pub const STDOUT: &str = "stdout";

/// Adds the agent's own outputs to `cfg`'s sinks, first: the export file when there is one,
/// then stdout when `format` (`-o`) asks for it or nothing else would get the events (no export
/// file, no configured sink). Both write `format`'s lines, JSON without `-o`. A configured
/// stdout sink beside `-o` is refused by [`ExportersConfig::check_names`]: one writer per
/// stream.
pub fn add_outputs(cfg: &mut ExportersConfig, export_file: Option<&Path>, format: Format) {
    let line = format.map_or(LineFormat::Json, LineFormat::from);
    let mut own = Vec::new();
    if let Some(path) = export_file {
        let mut sink = SinkConfig::new(
            EXPORT_FILE,
            SinkKind::File(FileConfig {
                format: line,
                ..FileConfig::at(path.to_path_buf())
            }),
        );
        // The export file's spool is the path's own: records a run could not write to one file
        // (a flood at shutdown) are written to that file by the next run, never to another.
        sink.spool_key = Some(format!("{EXPORT_FILE}-{:016x}", path_key(path)));
        own.push(sink);
    }
    if format.is_some() || (export_file.is_none() && cfg.sinks.is_empty()) {
        own.push(SinkConfig::new(
            STDOUT,
            SinkKind::Stdout(StdoutConfig { format: line }),
        ));
    }
    for mut sink in own.into_iter().rev() {
        // Lines appear as soon as the agent's loop has read them (`make run`, tests that read
        // the export file while the agent runs): a batch is what one read of the ring buffer
        // produced, all of it. Each batch waits for its writer's answer, one batch per turn
        // of the loop: a smaller batch would fall behind a burst and spill to the disk spool.
        sink.linger_ms = 0;
        sink.batch_size = sink.queue_size;
        cfg.sinks.insert(0, sink);
    }
}

/// Makes the agent's own outputs (stdout, the export file) carry the Sigma alerts, which a
/// JSON stream leaves out by default (`--alerts-in-stream`).
pub fn alerts_in_own_outputs(cfg: &mut ExportersConfig) {
    for s in cfg
        .sinks
        .iter_mut()
        .filter(|s| s.name == STDOUT || s.name == EXPORT_FILE)
    {
        s.alerts = Some(true);
    }
}

/// Makes the agent's own outputs (stdout, the export file) carry only the events `filter`
/// allows (`--namespace`, `--pod-regex`, `--label`, as `tetra getevents` takes them); nothing
/// when it is empty.
pub fn filter_own_outputs(cfg: &mut ExportersConfig, filter: &FilterSpec) {
    if filter.namespace.is_empty() && filter.pod_regex.is_empty() && filter.labels.is_empty() {
        return;
    }
    for s in cfg
        .sinks
        .iter_mut()
        .filter(|s| s.name == STDOUT || s.name == EXPORT_FILE)
    {
        s.allow.push(filter.clone());
    }
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

    /// The names of the sinks `add_outputs` leaves, for an export file, `-o` and the
    /// configured sinks given.
    fn outputs(export_file: Option<&str>, format: Format, configured: &[SinkKind]) -> Vec<String> {
        let mut cfg = ExportersConfig::default();
        for (i, kind) in configured.iter().enumerate() {
            cfg.sinks
                .push(SinkConfig::new(&format!("configured-{i}"), kind.clone()));
        }
        add_outputs(&mut cfg, export_file.map(Path::new), format);
        cfg.sinks.into_iter().map(|s| s.name).collect()
    }

    #[test]
    fn each_export_file_has_a_spool_of_its_own() {
        let key = |p: &str| {
            let mut cfg = ExportersConfig::default();
            add_outputs(&mut cfg, Some(Path::new(p)), None);
            cfg.sinks[0].spool_name().to_string()
        };
        assert_eq!(key("/var/log/a.jsonl"), key("/var/log/a.jsonl"));
        assert_ne!(key("/var/log/a.jsonl"), key("/var/log/b.jsonl"));
        assert!(key("/var/log/a.jsonl").starts_with("export-file-"));
        let mut cfg = ExportersConfig::default();
        add_outputs(&mut cfg, None, None);
        assert_eq!(cfg.sinks[0].spool_name(), STDOUT);
    }

    #[test]
    fn stdout_carries_events_only_when_nothing_else_does_or_o_asks() {
        let file = SinkKind::File(FileConfig::at("/var/log/f.jsonl".into()));
        let compact = Some(LineChoice::Compact);
        assert_eq!(outputs(None, None, &[]), [STDOUT]);
        assert_eq!(outputs(Some("/e"), None, &[]), [EXPORT_FILE]);
        assert_eq!(
            outputs(None, None, std::slice::from_ref(&file)),
            ["configured-0"]
        );
        assert_eq!(outputs(Some("/e"), compact, &[]), [EXPORT_FILE, STDOUT]);
        assert_eq!(
            outputs(None, compact, std::slice::from_ref(&file)),
            [STDOUT, "configured-0"]
        );
    }

    #[test]
    fn the_agents_outputs_write_the_format_o_names_and_json_without_it() {
        let mut cfg = ExportersConfig::default();
        add_outputs(
            &mut cfg,
            Some(Path::new("/var/log/ev.jsonl")),
            Some(LineChoice::Compact),
        );
        let SinkKind::File(f) = &cfg.sinks[0].kind else {
            panic!("a file sink")
        };
        assert_eq!(f.format, LineFormat::Compact);
        assert_eq!((f.max_size_mb, f.max_backups, f.compress), (100, 5, true));
        assert!(matches!(
            &cfg.sinks[1].kind,
            SinkKind::Stdout(StdoutConfig {
                format: LineFormat::Compact
            })
        ));
        assert!(cfg.sinks.iter().all(|s| s.linger_ms == 0));
        let mut cfg = ExportersConfig::default();
        add_outputs(&mut cfg, Some(Path::new("/var/log/ev.jsonl")), None);
        let SinkKind::File(f) = &cfg.sinks[0].kind else {
            panic!("a file sink")
        };
        assert_eq!(f.format, LineFormat::Json);
    }

    #[test]
    fn a_configured_stdout_sink_replaces_the_agents_own_and_o_beside_it_is_refused() {
        let stdout = SinkKind::Stdout(StdoutConfig::default());
        assert_eq!(
            outputs(None, None, std::slice::from_ref(&stdout)),
            ["configured-0"]
        );
        let mut cfg = ExportersConfig::default();
        cfg.sinks.push(SinkConfig::new("alerts", stdout));
        add_outputs(&mut cfg, None, Some(LineChoice::Json));
        let (_, why) = cfg.check_names().unwrap_err();
        assert!(why.contains("-o"), "{why}");
    }
}
