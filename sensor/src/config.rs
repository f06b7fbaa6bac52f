//! The agent's configuration file (YAML): what the command line cannot say briefly, the
//! exporters' sinks first. `vigil.example.yaml` at the repository's root documents every field.

use std::path::Path;

use serde::Deserialize;
use vigil_exporters::config::ExportersConfig;
use vigil_policy_engine::{read_yaml, Limits};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Sinks and their shared settings.
    #[serde(default)]
    pub exporters: ExportersConfig,
}

impl AgentConfig {
    /// Reads and checks `path`; errors name the file, the line and the field. The file is
    /// read as every input is (see [`read_yaml`]): it decides where events and credentials go,
    /// so one others can write, or past the gate's limits, is refused.
    pub fn load(path: &Path) -> anyhow::Result<AgentConfig> {
        let text = read_yaml(path, &Limits::CONFIG).map_err(|e| anyhow::anyhow!("{e}"))?;
        let de = serde_yaml::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let loc = e
                .inner()
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            anyhow::anyhow!("{}{loc}: {}: {}", path.display(), e.path(), e.inner())
        })
    }
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

    #[test]
    fn the_documented_example_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../vigil.example.yaml");
        let cfg = super::AgentConfig::load(&path).unwrap();
        assert_eq!(cfg.exporters.sinks.len(), 5);
    }
}
