//! The agent's configuration file (YAML): what the command line cannot say briefly, the
//! exporters' sinks first. `vigil.example.yaml` at the repository's root documents every field.

use std::path::Path;

use serde::Deserialize;
use vigil_exporters::config::ExportersConfig;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Sinks and their shared settings.
    #[serde(default)]
    pub exporters: ExportersConfig,
}

impl AgentConfig {
    /// Reads and checks `path`; errors name the file, the line and the field.
    pub fn load(path: &Path) -> anyhow::Result<AgentConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
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
    #[test]
    fn the_documented_example_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../vigil.example.yaml");
        let cfg = super::AgentConfig::load(&path).unwrap();
        assert_eq!(cfg.exporters.sinks.len(), 5);
    }
}
