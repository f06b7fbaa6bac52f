//! The agent's configuration file (YAML): what the command line cannot say briefly, the
//! exporters' sinks first. `vigil.example.yaml` at the repository's root documents every field.

use std::path::Path;

use serde::Deserialize;
use serde_yaml::Value;
use vigil_exporters::config::{yaml_reason, ExportersConfig, SinkKind, SINK_FIELDS};
use vigil_policy_engine::{locate::Locations, read_yaml, Limits};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Sinks and their shared settings.
    #[serde(default)]
    pub exporters: ExportersConfig,
    /// The API's TCP listener, TLS and roles, and its streams' queues.
    #[serde(default)]
    pub api: Option<crate::api::config::ApiConfig>,
    /// The forensic event store: retention and queue.
    #[serde(default)]
    pub store: vigil_store::StoreConfig,
    /// Encryption awareness: the remote ranges whose flows must leave encrypted.
    #[serde(default)]
    pub encryption: EncryptionConfig,
}

/// `encryption`: which flows' encryption is tracked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// CIDRs: other nodes' pod ranges, peer sites (on a Kubernetes node the other nodes' pod
    /// ranges are found in the cluster too).
    #[serde(default)]
    pub remote_ranges: Vec<ipnet::IpNet>,
}

impl AgentConfig {
    /// Reads and checks `path`; errors name the file, the line and column of the field, the
    /// field's path and the reason. The file is read as every input is (see [`read_yaml`]): it
    /// decides where events and credentials go, so one others can write, or past the gate's
    /// limits, is refused.
    pub fn load(path: &Path) -> anyhow::Result<AgentConfig> {
        let text = read_yaml(path, &Limits::CONFIG).map_err(|e| anyhow::anyhow!("{e}"))?;
        let config = parse(&path.display().to_string(), &text)?;
        if let Some(api) = &config.api {
            api.check()
                .map_err(|reason| anyhow::anyhow!("{}: {reason}", path.display()))?;
        }
        config
            .store
            .check()
            .map_err(|reason| anyhow::anyhow!("{}: {reason}", path.display()))?;
        Ok(config)
    }
}

/// `text`, the configuration file `file`, read and checked.
fn parse(file: &str, text: &str) -> anyhow::Result<AgentConfig> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let reason = yaml_reason(e.inner());
        let (path, reason) = pinpoint(text, path, reason);
        // Where the field is, from the index of every field's place: serde's own position is
        // the sink's for a mistake in its type's fields.
        let at = Locations::index(text)
            .key(&path)
            .map(|p| format!(":{}:{}", p.line, p.column))
            .unwrap_or_default();
        let path = if path == "." { "(document)" } else { &path };
        anyhow::anyhow!("{file}{at}: {path}: {reason}")
    })
}

/// The field serde's error is about. serde reads a sink's type (`type: file` and the file's
/// fields) through a buffer that keeps no path, so a mistake there comes out at the sink
/// itself; those fields are then read again alone, which names the one at fault.
fn pinpoint(text: &str, path: String, reason: String) -> (String, String) {
    let Some(i) = path
        .strip_prefix("exporters.sinks[")
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|i| i.parse::<usize>().ok())
    else {
        return (path, reason);
    };
    let doc: Value = serde_yaml::from_str(text).unwrap_or_default();
    let sink = &doc["exporters"]["sinks"][i];
    let (Some(kind), Some(fields)) = (sink["type"].as_str(), sink.as_mapping()) else {
        return (path, reason);
    };
    let mut own = fields.clone();
    own.retain(|k, _| {
        !k.as_str()
            .is_some_and(|k| k == "type" || SINK_FIELDS.contains(&k))
    });
    let own = Value::Mapping(own);
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(&own, &mut track);
    let Err(e) = SinkKind::of_type(kind, de) else {
        // The type's fields are fine: the mistake is the sink's own (a missing `name`).
        return (path, reason);
    };
    let reason = yaml_reason(&e);
    let inner = match track.path().to_string() {
        // An unknown type is the `type:` field's mistake.
        p if p == "." && reason.starts_with("unknown variant") => "type".to_string(),
        p if p == "." => return (path, reason),
        p => p,
    };
    (format!("{path}.{inner}"), reason)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    /// `text` as a configuration file of `mode` in a fresh directory, and what loading it says.
    fn load(name: &str, text: &str, mode: u32) -> anyhow::Result<super::AgentConfig> {
        let dir = std::env::temp_dir().join(format!("vigil-config-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("vigil.yaml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let loaded = super::AgentConfig::load(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        loaded
    }

    #[test]
    fn a_configuration_others_can_write_is_refused_with_the_fix() {
        let e = load("mode", "exporters: {}\n", 0o666)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("vigil.yaml: is writable by group or others"),
            "{e}"
        );
        assert!(e.contains("chmod go-w"), "{e}");
        assert!(load("mode-ok", "exporters: {}\n", 0o600).is_ok());
    }

    #[test]
    fn a_configuration_with_aliases_or_deep_nesting_is_refused_at_its_line() {
        let aliases = "exporters:\n  sinks: &s []\n  more: *s\n";
        let e = load("alias", aliases, 0o600).unwrap_err().to_string();
        assert!(
            e.contains("vigil.yaml:3:9: (document): YAML alias `*s`"),
            "{e}"
        );
        let deep = format!(
            "exporters: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let e = load("deep", &deep, 0o600).unwrap_err().to_string();
        assert!(e.contains("nest more than 64 levels"), "{e}");
    }

    /// What parsing `text` as `vigil.yaml` says.
    fn error(text: &str) -> String {
        super::parse("vigil.yaml", text).unwrap_err().to_string()
    }

    const SINKS: &str = "exporters:\n  spool_dir: /tmp/x\n  sinks:\n  - name: local\n    type: file\n    path: /tmp/ev.jsonl\n";

    #[test]
    fn a_typo_in_a_sinks_own_field_is_reported_at_its_line_and_column_once() {
        let e = error(&format!(
            "{SINKS}    format: json\n    max_size_mb: 100\n    max_bakups: 5\n"
        ));
        assert!(
            e.starts_with("vigil.yaml:9:5: exporters.sinks[0].max_bakups: unknown field `max_bakups`, expected one of"),
            "{e}"
        );
        assert_eq!(e.matches("exporters.sinks").count(), 1, "{e}");
        assert!(!e.contains(" at line "), "{e}");
    }

    #[test]
    fn a_mistake_nested_in_a_sinks_own_fields_is_reported_at_that_field() {
        let text = "exporters:\n  sinks:\n  - name: s\n    type: splunk_hec\n    endpoint: https://h\n    token:\n      envv: T\n";
        let e = error(text);
        assert!(
            e.starts_with("vigil.yaml:7:7: exporters.sinks[0].token.envv: "),
            "{e}"
        );
        assert!(
            e.contains("unknown field `envv`, expected `env` or `file`"),
            "{e}"
        );
        let e = error(&format!("{SINKS}    max_size_mb: lots\n"));
        assert!(
            e.starts_with(
                "vigil.yaml:7:5: exporters.sinks[0].max_size_mb: invalid type: string \"lots\""
            ),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_sink_type_is_reported_at_its_type_field() {
        let e = error("exporters:\n  sinks:\n  - name: s\n    type: splunk\n");
        assert!(
            e.starts_with("vigil.yaml:4:5: exporters.sinks[0].type: unknown variant `splunk`, expected one of"),
            "{e}"
        );
    }

    #[test]
    fn mistakes_outside_a_sinks_type_keep_their_own_paths() {
        let e = error("exporters:\n  spool_dirr: /x\n");
        assert!(
            e.starts_with("vigil.yaml:2:3: exporters.spool_dirr: unknown field `spool_dirr`"),
            "{e}"
        );
        let e = error(&format!(
            "{SINKS}    allow:\n    - event_sett: [process_exec]\n"
        ));
        assert!(
            e.starts_with("vigil.yaml:8:7: exporters.sinks[0].allow[0].event_sett: unknown field"),
            "{e}"
        );
        let e = error("exporters:\n  sinks:\n  - type: stdout\n");
        assert!(
            e.starts_with("vigil.yaml:3:")
                && e.contains(": exporters.sinks[0]: missing field `name`"),
            "{e}"
        );
    }

    #[test]
    fn the_documented_example_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../vigil.example.yaml");
        let cfg = super::AgentConfig::load(&path).unwrap();
        assert_eq!(cfg.exporters.sinks.len(), 5);
        let api = cfg.api.unwrap();
        assert!(api.listen.is_some() && api.tls.is_some());
        assert_eq!(api.roles.len(), 2);
        assert_eq!(cfg.store, vigil_store::StoreConfig::default());
    }

    #[test]
    fn a_store_setting_that_cannot_work_names_its_field() {
        let dir = std::env::temp_dir().join(format!("vigil-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vigil.yaml");
        std::fs::write(&path, "store:\n  max_size_mib: 1\n").unwrap();
        let err = super::AgentConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("store.max_size_mib"), "{err}");
        std::fs::write(&path, "store:\n  max_age: 3\n").unwrap();
        let err = super::AgentConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("max_age"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
