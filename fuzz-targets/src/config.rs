//! `config`: the agent's configuration file's text through the YAML gate and the parse of its
//! `exporters:` section, then what the agent builds from it without opening anything: the
//! redaction patterns, each sink's export filters and field filters (applied to the sample
//! events' records).

use serde::Deserialize;
use vigil_exporters::{
    config::ExportersConfig,
    fields::FieldFilters,
    filter::{ExportFilter, Redactor},
    record::Record,
};
use vigil_policy_engine::{check_yaml, Limits};

/// The file's shape, as the agent's `AgentConfig` (sensor/src/config.rs, in the binary crate)
/// declares it: one `exporters:` section and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    #[serde(default)]
    #[allow(dead_code)]
    exporters: ExportersConfig,
}

/// See the module's documentation.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if check_yaml("fuzz.yaml", text, &Limits::CONFIG).is_err() {
        return;
    }
    let de = serde_yaml::Deserializer::from_str(text);
    let cfg: AgentFile = match serde_path_to_error::deserialize(de) {
        Ok(c) => c,
        Err(e) => {
            let _ = format!("{}: {}", e.path(), e.inner());
            return;
        }
    };
    let cfg = cfg.exporters;
    if let Ok(r) = Redactor::new(&cfg.redact) {
        for e in crate::samples::events() {
            r.apply(&mut e.clone());
        }
    }
    for (i, s) in cfg.sinks.iter().enumerate() {
        let _ = format!("{s:?}");
        if let Ok(f) = ExportFilter::new(&s.allow, &s.deny, &format!("sinks[{i}]")) {
            for e in crate::samples::events() {
                f.passes(e);
            }
        }
        if let Ok(f) = FieldFilters::new(&s.fields, &format!("sinks[{i}].fields")) {
            for e in crate::samples::events() {
                f.apply(Record::encode(e));
            }
        }
    }
}
