//! The `exporters:` part of the agent's configuration file: the sinks, their filters and the
//! shared settings (spool directory and caps, redaction). Secrets are read from a file or an
//! environment variable, never written in the file itself, never printed, and never sent in
//! clear unless a sink says `allow_plaintext: true` ([`SinkKind::plaintext`]). Sink names
//! become directory names under the spool directory, so they are checked
//! ([`ExportersConfig::check_names`]).

mod secret;

use std::path::{Path, PathBuf};

pub use secret::Secret;
use serde::{Deserialize, Deserializer};

use crate::{
    filter::FilterSpec,
    sinks::{file::FileConfig, splunk::SplunkConfig, stdout::StdoutConfig},
};

/// What a sink delivers to: `type:` and that type's fields.
#[derive(Debug, Clone)]
pub enum SinkKind {
    /// The agent's standard output (JSON or compact lines).
    Stdout(StdoutConfig),
    /// Rotated JSON-lines files.
    File(FileConfig),
    /// Splunk HTTP Event Collector.
    SplunkHec(SplunkConfig),
    /// Elasticsearch / OpenSearch.
    Elasticsearch(crate::sinks::elastic::ElasticConfig),
    /// Kafka.
    Kafka(crate::sinks::kafka::KafkaConfig),
    /// OpenTelemetry logs (OTLP/gRPC).
    Otlp(crate::sinks::otlp::OtlpConfig),
}

/// The fields every sink has beside its type's own: [`SinkConfig`]'s, outside `kind`. serde
/// reads a sink's type through a buffer that forgets where each field was, so the agent's
/// configuration loader takes these out and reads the type's fields again to point at a mistake
/// among them (`exporters.sinks[0].max_size_mb`, not `exporters.sinks[0]`).
pub const SINK_FIELDS: [&str; 11] = [
    "name",
    "alerts",
    "allow",
    "deny",
    "fields",
    "batch_size",
    "linger_ms",
    "queue_size",
    "rate_limit",
    "spool_max_mb",
    "dead_letter_max_mb",
];

/// The values of `type:`, in [`SinkKind`]'s order.
pub const SINK_TYPES: [&str; 6] = [
    "stdout",
    "file",
    "splunk_hec",
    "elasticsearch",
    "kafka",
    "otlp",
];

impl SinkKind {
    /// The sink of type `kind` read from `fields`, that type's own fields (not `type:` itself
    /// nor [`SINK_FIELDS`]). Given a deserializer that keeps the path, an error names the
    /// field at fault, which serde's internally tagged enums cannot: they buffer the fields.
    pub fn of_type<'de, D: Deserializer<'de>>(kind: &str, fields: D) -> Result<SinkKind, D::Error> {
        Ok(match kind {
            "stdout" => SinkKind::Stdout(Deserialize::deserialize(fields)?),
            "file" => SinkKind::File(Deserialize::deserialize(fields)?),
            "splunk_hec" => SinkKind::SplunkHec(Deserialize::deserialize(fields)?),
            "elasticsearch" => SinkKind::Elasticsearch(Deserialize::deserialize(fields)?),
            "kafka" => SinkKind::Kafka(Deserialize::deserialize(fields)?),
            "otlp" => SinkKind::Otlp(Deserialize::deserialize(fields)?),
            other => return Err(serde::de::Error::unknown_variant(other, &SINK_TYPES)),
        })
    }
}

impl<'de> Deserialize<'de> for SinkKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SinkKind, D::Error> {
        use serde::de::Error;
        let mut fields = serde_yaml::Mapping::deserialize(d)?;
        let kind = match fields.remove("type") {
            Some(serde_yaml::Value::String(kind)) => kind,
            Some(_) => {
                return Err(D::Error::custom(format!(
                    "`type` is not a name: use one of {}",
                    SINK_TYPES.join(", ")
                )))
            }
            None => return Err(D::Error::missing_field("type")),
        };
        SinkKind::of_type(&kind, serde_yaml::Value::Mapping(fields)).map_err(D::Error::custom)
    }
}

/// serde_yaml's message without what it adds to the reason when it reads text: the path it
/// was at and ` at line L column C` (the caller says where, in its own words).
pub fn yaml_reason(e: &serde_yaml::Error) -> String {
    let message = e.to_string();
    let reason = message.split(" at line ").next().unwrap_or(&message);
    // A path has no spaces; a reason's first words do (`invalid type: ...`).
    match reason.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') => rest.to_string(),
        _ => reason.to_string(),
    }
}

/// One sink and the settings the pipeline applies to it (the fields of [`SINK_FIELDS`]).
#[derive(Debug, Clone, Deserialize)]
pub struct SinkConfig {
    /// Its name, in logs, metrics and spool paths.
    pub name: String,
    /// Whether it gets the Sigma alerts (`process_alert`), which Tetragon's API has no event
    /// type for. Unset: every sink but a Tetragon-shaped JSON stream (stdout or a file of JSON
    /// lines, what `tetra getevents` reads) gets them ([`SinkConfig::takes_alerts`]).
    #[serde(default)]
    pub alerts: Option<bool>,
    /// Where it delivers.
    #[serde(flatten)]
    pub kind: SinkKind,
    /// Export filters: events pass when one allow line matches (or there is none).
    #[serde(default)]
    pub allow: Vec<FilterSpec>,
    /// Events matching a deny line are not sent (deny wins over allow).
    #[serde(default)]
    pub deny: Vec<FilterSpec>,
    /// Which fields of the events are sent.
    #[serde(default)]
    pub fields: Vec<crate::fields::FieldFilter>,
    /// Most records per delivery.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    #[serde(default = "default_linger")]
    pub linger_ms: u64,
    /// Records held in memory before new ones go to the disk spool.
    #[serde(default = "default_queue")]
    pub queue_size: usize,
    /// Most events per second; more are dropped and counted (0: no limit).
    #[serde(default)]
    pub rate_limit: u64,
    /// Most MiB this sink's disk spool holds (default: `exporters.spool_max_mb`); records
    /// beyond it are dropped and counted.
    #[serde(default)]
    pub spool_max_mb: Option<u64>,
    /// Most MiB of this sink's dead-letter file (default: `exporters.dead_letter_max_mb`);
    /// refused records beyond it are counted, not written.
    #[serde(default)]
    pub dead_letter_max_mb: Option<u64>,
    /// The name of its directory under the spool directory, when not its name (the agent's
    /// own export file: one per path, so that what a run left for one file is never delivered
    /// to another). Not in the file: the agent sets it.
    #[serde(skip)]
    pub spool_key: Option<String>,
}

impl SinkConfig {
    /// A sink with the default pipeline settings.
    pub fn new(name: &str, kind: SinkKind) -> SinkConfig {
        SinkConfig {
            name: name.to_string(),
            alerts: None,
            kind,
            allow: Vec::new(),
            deny: Vec::new(),
            fields: Vec::new(),
            batch_size: default_batch(),
            linger_ms: default_linger(),
            queue_size: default_queue(),
            rate_limit: 0,
            spool_max_mb: None,
            dead_letter_max_mb: None,
            spool_key: None,
        }
    }

    /// Whether it gets the Sigma alerts: as `alerts:` says, else all but JSON lines on stdout
    /// or in a file, where a Tetragon reader would stop at an event type it does not know.
    pub fn takes_alerts(&self) -> bool {
        self.alerts.unwrap_or(match &self.kind {
            SinkKind::Stdout(c) => c.format == crate::record::LineFormat::Compact,
            SinkKind::File(c) => c.format == crate::record::LineFormat::Compact,
            _ => true,
        })
    }

    /// The directory under the spool directory that holds its spool and dead letters.
    pub fn spool_name(&self) -> &str {
        self.spool_key.as_deref().unwrap_or(&self.name)
    }
}

/// Whether `name` can name a spool directory: not empty, only `[A-Za-z0-9._-]`, not `.`/`..`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl SinkKind {
    /// When this sink would send a secret (a token, a password, an API key, metadata) or, for
    /// Kafka, the events themselves over an unencrypted connection: what it would send and how,
    /// for the refusal or the warning.
    pub fn plaintext(&self) -> Option<String> {
        fn clear(endpoint: &str) -> bool {
            endpoint
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
        }
        match self {
            SinkKind::SplunkHec(c) if clear(&c.endpoint) => {
                Some(format!("the HEC token over {}", c.endpoint))
            }
            SinkKind::Elasticsearch(c)
                if clear(&c.endpoint) && (c.api_key.is_some() || c.password.is_some()) =>
            {
                let what = if c.api_key.is_some() {
                    "API key"
                } else {
                    "password"
                };
                Some(format!("the {what} over {}", c.endpoint))
            }
            SinkKind::Otlp(c) if clear(&c.endpoint) && !c.headers.is_empty() => {
                Some(format!("the headers (gRPC metadata) over {}", c.endpoint))
            }
            // Kafka without `tls:` sends every event (and any credential a broker would ask
            // for) readable by anyone on the path: it is no longer a silent default.
            SinkKind::Kafka(c) if c.tls.is_none() => Some(format!(
                "the events unencrypted to {} (no `tls:`)",
                c.brokers.join(",")
            )),
            _ => None,
        }
    }

    /// Whether the sink says `allow_plaintext: true`.
    pub fn allows_plaintext(&self) -> bool {
        match self {
            SinkKind::SplunkHec(c) => c.allow_plaintext,
            SinkKind::Elasticsearch(c) => c.allow_plaintext,
            SinkKind::Kafka(c) => c.allow_plaintext,
            SinkKind::Otlp(c) => c.allow_plaintext,
            SinkKind::Stdout(_) | SinkKind::File(_) => false,
        }
    }
}

fn default_batch() -> usize {
    500
}
fn default_linger() -> u64 {
    200
}
fn default_queue() -> usize {
    10_000
}

/// The `exporters:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportersConfig {
    /// Where each sink's spool and dead-letter file live (`<dir>/<sink name>/`); the agent
    /// puts them in its state directory's `spool/` when this is not set.
    #[serde(default)]
    pub spool_dir: Option<PathBuf>,
    /// Patterns whose capture groups are hidden in process arguments and in the string,
    /// buffer, path and file arguments of policy events.
    #[serde(default)]
    pub redact: Vec<String>,
    /// Most MiB each sink's disk spool holds (a sink may say otherwise).
    #[serde(default = "default_spool_max")]
    pub spool_max_mb: u64,
    /// Most MiB of each sink's dead-letter file (a sink may say otherwise).
    #[serde(default = "default_dead_letter_max")]
    pub dead_letter_max_mb: u64,
    /// The sinks.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
}

/// The spool directory of an agent with the default state directory.
pub const DEFAULT_SPOOL_DIR: &str = "/var/lib/vigil/spool";
fn default_spool_max() -> u64 {
    1024
}
fn default_dead_letter_max() -> u64 {
    64
}

impl Default for ExportersConfig {
    fn default() -> Self {
        ExportersConfig {
            spool_dir: None,
            redact: Vec::new(),
            spool_max_mb: default_spool_max(),
            dead_letter_max_mb: default_dead_letter_max(),
            sinks: Vec::new(),
        }
    }
}

impl ExportersConfig {
    /// Where the spools are: as configured, else [`DEFAULT_SPOOL_DIR`].
    pub fn spool_root(&self) -> PathBuf {
        self.spool_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SPOOL_DIR))
    }

    /// Checks that every sink name can name its spool directory and that no two sinks share
    /// one; the error names the sink and the fix.
    pub fn check_names(&self) -> Result<(), (String, String)> {
        for (i, s) in self.sinks.iter().enumerate() {
            if !valid_name(&s.name) {
                return Err((
                    format!("sinks[{i}] `{}`", s.name.escape_debug()),
                    format!(
                        "the name is also the sink's spool directory under {}: use letters, digits, `.`, `_` and `-` only (not `.` or `..`), such as `splunk-prod`",
                        self.spool_root().display()
                    ),
                ));
            }
            if let Some(j) = self.sinks[..i].iter().position(|o| o.name == s.name) {
                return Err((
                    s.name.clone(),
                    format!(
                        "sinks[{j}] and sinks[{i}] have the same name, and would share one spool under {}: rename one (the agent's own outputs are named `stdout` and `export-file`)",
                        self.spool_root().display()
                    ),
                ));
            }
        }
        // One file, one writer: another sink's rotation would move the file from under it, and
        // what it then appends is counted as delivered and lost. A sink's file may also be one
        // another rotates into (`.rotated`) or keeps as a backup (`.1`, `.1.gz`).
        fn file(s: &SinkConfig) -> Option<&FileConfig> {
            match &s.kind {
                SinkKind::File(f) => Some(f),
                _ => None,
            }
        }
        for (i, s) in self.sinks.iter().enumerate() {
            let Some(f) = file(s) else { continue };
            let clash = self.sinks[..i].iter().find_map(|o| {
                let g = file(o)?;
                (writes_to(g, &f.path) || writes_to(f, &g.path)).then_some((o, g))
            });
            if let Some((o, g)) = clash {
                let what = if absolute(&f.path) == absolute(&g.path) {
                    format!("both write {}", f.path.display())
                } else {
                    format!(
                        "write {} and {}, one where the other rotates or keeps its backups",
                        g.path.display(),
                        f.path.display()
                    )
                };
                return Err((
                    s.name.clone(),
                    format!(
                        "sinks `{}` and `{}` {what} (counting --export-file): give each file sink a path of its own",
                        o.name, s.name,
                    ),
                ));
            }
        }
        let stdouts = self
            .sinks
            .iter()
            .filter(|s| matches!(s.kind, SinkKind::Stdout(_)))
            .count();
        if stdouts > 1 {
            return Err((
                "stdout".into(),
                "more than one sink writes to stdout (counting the agent's own, which -o asks \
                 for), where their lines would interleave: keep one"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// `path` made absolute as the agent will open it (relative to its working directory, `./`
/// dropped, links not followed), so that two spellings of one file compare equal.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Whether the file sink `f` writes `other`: its file, the name it rotates into before its
/// gzip (`<file>.rotated`) or one of its backups (`<file>.N`, or `<file>.N.gz` compressed).
/// Paths compare as written once made absolute: `..` and links are not resolved.
fn writes_to(f: &FileConfig, other: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let (own, other) = (absolute(&f.path), absolute(other));
    if own == other {
        return true;
    }
    let Some(rest) = other
        .as_os_str()
        .as_bytes()
        .strip_prefix(own.as_os_str().as_bytes())
        .and_then(|r| r.strip_prefix(b"."))
    else {
        return false;
    };
    if rest == b"rotated" {
        return f.compress;
    }
    let n = match (f.compress, rest.strip_suffix(b".gz")) {
        (true, Some(n)) => n,
        (false, None) => rest,
        _ => return false,
    };
    // The backups' numbers as the sink writes them: decimal, no sign, no leading zero.
    if n.first().is_none_or(|d| *d == b'0') || !n.iter().all(u8::is_ascii_digit) {
        return false;
    }
    std::str::from_utf8(n)
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| (1..=f.max_backups.max(1)).contains(&n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Result<(), (String, String)> {
        let mut cfg = ExportersConfig::default();
        for (i, n) in names.iter().enumerate() {
            cfg.sinks.push(SinkConfig::new(
                n,
                SinkKind::Stdout(StdoutConfig::default()),
            ));
            // One stdout at most: the others are files.
            if cfg.sinks.len() > 1 {
                let last = cfg.sinks.last_mut().unwrap();
                last.kind = SinkKind::File(FileConfig::at(PathBuf::from(format!("/x/{i}"))));
            }
        }
        cfg.check_names()
    }

    #[test]
    fn sink_names_that_are_not_plain_directory_names_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../../etc",
            "a b",
            "sp\u{f6}ol",
            "x\0",
        ] {
            let (sink, why) = names(&[bad]).unwrap_err();
            assert!(sink.contains("sinks[0]"), "{sink}");
            assert!(why.contains("letters, digits"), "{why}");
        }
        assert!(names(&["splunk-prod", "file_1", "a.b"]).is_ok());
    }

    #[test]
    fn two_file_sinks_on_one_path_are_refused() {
        let mut cfg = ExportersConfig::default();
        for n in ["export-file", "archive"] {
            cfg.sinks.push(SinkConfig::new(
                n,
                SinkKind::File(FileConfig::at(PathBuf::from("/var/log/vigil/events.jsonl"))),
            ));
        }
        let (sink, why) = cfg.check_names().unwrap_err();
        assert_eq!(sink, "archive");
        assert!(
            why.contains("both write /var/log/vigil/events.jsonl"),
            "{why}"
        );
    }

    /// Two spellings of one file, or a file another sink rotates into or keeps as a backup,
    /// are one file.
    #[test]
    fn file_sinks_on_one_file_or_on_anothers_rotations_are_refused() {
        let clash = |a: &str, b: &str| {
            let mut cfg = ExportersConfig::default();
            for (n, p) in [("export-file", a), ("archive", b)] {
                cfg.sinks.push(SinkConfig::new(
                    n,
                    SinkKind::File(FileConfig::at(PathBuf::from(p))),
                ));
            }
            cfg.check_names().err().map(|(_, why)| why)
        };
        for (a, b) in [
            ("events.jsonl", "./events.jsonl"),
            ("/var/log/vigil/e.jsonl", "/var/log/vigil/e.jsonl.rotated"),
            ("/var/log/vigil/e.jsonl.1.gz", "/var/log/vigil/e.jsonl"),
            ("/var/log/vigil/e.jsonl", "/var/log/vigil/e.jsonl.5.gz"),
        ] {
            let why = clash(a, b).unwrap_or_else(|| panic!("{a} and {b} accepted"));
            assert!(
                why.contains("give each file sink a path of its own"),
                "{why}"
            );
        }
        for (a, b) in [
            ("/var/log/vigil/e.jsonl", "/var/log/vigil/e.jsonl.6.gz"),
            ("/var/log/vigil/e.jsonl", "/var/log/vigil/e.jsonl.1"),
            ("/var/log/vigil/e.jsonl", "/var/log/vigil/e.jsonl.01.gz"),
            ("/var/log/vigil/e.jsonl", "/var/log/vigil/e.jsonl.+1.gz"),
            ("/var/log/vigil/e.jsonl", "/var/log/vigil/e.jsonl.1x.gz"),
            ("/var/log/vigil/e.jsonl", "/var/log/vigil/e.jsonl.old"),
            ("/var/log/vigil/e.jsonl", "/var/log/vigil/e.json"),
            ("/var/log/vigil/a.jsonl", "/var/log/vigil/b.jsonl"),
        ] {
            assert_eq!(clash(a, b), None, "{a} and {b}");
        }
        // Uncompressed, a sink keeps `.N` and rotates into it directly.
        let mut cfg = ExportersConfig::default();
        for (n, p) in [("export-file", "/l/e.jsonl"), ("archive", "/l/e.jsonl.2")] {
            let mut f = FileConfig::at(PathBuf::from(p));
            f.compress = false;
            cfg.sinks.push(SinkConfig::new(n, SinkKind::File(f)));
        }
        assert!(cfg.check_names().is_err());
        let SinkKind::File(f) = &mut cfg.sinks[1].kind else {
            unreachable!("pushed above")
        };
        f.path = PathBuf::from("/l/e.jsonl.rotated");
        assert!(cfg.check_names().is_ok(), "no .rotated uncompressed");
    }

    #[test]
    fn two_sinks_of_one_name_are_refused_by_name() {
        let (sink, why) = names(&["archive", "splunk", "archive"]).unwrap_err();
        assert_eq!(sink, "archive");
        assert!(why.contains("sinks[0] and sinks[2]"), "{why}");
    }

    #[test]
    fn sink_fields_are_exactly_the_fields_beside_the_type() {
        // Every name in the list is a field of its own: the stdout type, which has `format`
        // only, would refuse any other.
        let mut yaml = String::from("type: stdout\n");
        for f in SINK_FIELDS {
            let value = match f {
                "name" => "s",
                "allow" | "deny" | "fields" => "[]",
                "alerts" => "true",
                _ => "1",
            };
            yaml.push_str(&format!("{f}: {value}\n"));
        }
        let s = sink(&yaml);
        // A field added to SinkConfig breaks this destructuring: add it to SINK_FIELDS too.
        let SinkConfig {
            name: _,
            alerts: _,
            kind: _,
            allow: _,
            deny: _,
            fields: _,
            batch_size: _,
            linger_ms: _,
            queue_size: _,
            rate_limit: _,
            spool_max_mb: _,
            dead_letter_max_mb: _,
            spool_key: _,
        } = s;
    }

    #[test]
    fn a_json_stream_leaves_the_alerts_out_unless_asked_and_every_other_sink_takes_them() {
        let takes = |yaml: &str| sink(&format!("name: s\n{yaml}")).takes_alerts();
        assert!(!takes("type: stdout\n"));
        assert!(!takes("type: file\npath: /var/log/vigil.jsonl\n"));
        assert!(takes("type: stdout\nformat: compact\n"));
        assert!(takes("type: stdout\nalerts: true\n"));
        assert!(!takes("type: stdout\nformat: compact\nalerts: false\n"));
        assert!(takes(
            "type: splunk_hec\nendpoint: https://splunk:8088\ntoken: {env: T}\n"
        ));
    }

    fn sink(yaml: &str) -> SinkConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn secrets_over_plaintext_are_found_unless_the_connection_is_encrypted() {
        let cases = [
            ("name: s\ntype: splunk_hec\nendpoint: http://h:8088\ntoken: {env: T}\n", true),
            ("name: s\ntype: splunk_hec\nendpoint: HTTP://h:8088\ntoken: {env: T}\n", true),
            ("name: s\ntype: splunk_hec\nendpoint: https://h:8088\ntoken: {env: T}\n", false),
            ("name: e\ntype: elasticsearch\nendpoint: http://h:9200\napi_key: {env: K}\n", true),
            ("name: e\ntype: elasticsearch\nendpoint: http://h:9200\nusername: u\npassword: {env: P}\n", true),
            ("name: e\ntype: elasticsearch\nendpoint: http://h:9200\n", false),
            ("name: o\ntype: otlp\nendpoint: http://h:4317\nheaders: {authorization: {env: A}}\n", true),
            ("name: o\ntype: otlp\nendpoint: http://h:4317\n", false),
            ("name: k\ntype: kafka\nbrokers: [h:9092]\ntopic: t\n", true),
            ("name: k\ntype: kafka\nbrokers: [h:9093]\ntopic: t\ntls: {}\n", false),
        ];
        for (yaml, clear) in cases {
            let s = sink(yaml);
            assert_eq!(s.kind.plaintext().is_some(), clear, "{yaml}");
            assert!(!s.kind.allows_plaintext());
            let allowed = sink(&format!("{yaml}allow_plaintext: true\n"));
            assert!(allowed.kind.allows_plaintext(), "{yaml}");
        }
    }
}
