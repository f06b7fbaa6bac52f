//! The Elastic Common Schema, for the fields vigil writes: each field's ECS type, whether ECS
//! makes it an array, and the values ECS allows where it lists them (`event.kind`,
//! `event.category` and the `event.type`s each category expects, `event.outcome`,
//! `network.direction`, `host.os.type`). Taken from the ECS field reference (ECS 9), field by
//! field; a field not listed here is not written outside vigil's own `vigil.*` namespace.
//!
//! Two things are built from this one table, so they cannot drift apart: the index template's
//! mappings ([`mappings`]) and the check a document must pass ([`violations`]), which the
//! Elasticsearch test server runs on every document it receives.

use serde_json::{json, Map, Value};

/// An ECS field type (the Elasticsearch mapping type ECS gives it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcsType {
    /// `keyword`.
    Keyword,
    /// `constant_keyword` (the data stream fields).
    ConstantKeyword,
    /// `wildcard` (command lines).
    Wildcard,
    /// `long`.
    Long,
    /// `date`, written as RFC 3339.
    Date,
    /// `ip`.
    Ip,
    /// `boolean`.
    Boolean,
    /// `object`: an array of objects whose keys are fields of their own (`dns.answers`).
    Object,
}

use EcsType::*;

/// (field, type, ECS normalizes it to an array).
pub const FIELDS: &[(&str, EcsType, bool)] = &[
    ("@timestamp", Date, false),
    ("ecs.version", Keyword, false),
    ("tags", Keyword, true),
    ("agent.type", Keyword, false),
    ("agent.version", Keyword, false),
    ("agent.name", Keyword, false),
    ("agent.id", Keyword, false),
    ("host.name", Keyword, false),
    ("host.hostname", Keyword, false),
    ("host.id", Keyword, false),
    ("host.architecture", Keyword, false),
    ("host.os.type", Keyword, false),
    ("host.os.family", Keyword, false),
    ("host.os.name", Keyword, false),
    ("host.os.version", Keyword, false),
    ("host.os.kernel", Keyword, false),
    ("host.os.platform", Keyword, false),
    ("host.os.full", Keyword, false),
    ("event.kind", Keyword, false),
    ("event.category", Keyword, true),
    ("event.type", Keyword, true),
    ("event.action", Keyword, false),
    ("event.outcome", Keyword, false),
    ("event.module", Keyword, false),
    ("event.dataset", Keyword, false),
    ("event.severity", Long, false),
    ("event.reason", Keyword, false),
    ("data_stream.type", ConstantKeyword, false),
    ("data_stream.dataset", ConstantKeyword, false),
    ("data_stream.namespace", ConstantKeyword, false),
    ("process.pid", Long, false),
    ("process.entity_id", Keyword, false),
    ("process.executable", Keyword, false),
    ("process.name", Keyword, false),
    ("process.args", Keyword, true),
    ("process.args_count", Long, false),
    ("process.command_line", Wildcard, false),
    ("process.working_directory", Keyword, false),
    ("process.start", Date, false),
    ("process.exit_code", Long, false),
    ("process.thread.id", Long, false),
    ("process.user.id", Keyword, false),
    ("process.user.name", Keyword, false),
    ("process.group.id", Keyword, false),
    ("process.group.name", Keyword, false),
    ("process.real_user.id", Keyword, false),
    ("process.real_group.id", Keyword, false),
    ("process.saved_user.id", Keyword, false),
    ("process.saved_group.id", Keyword, false),
    ("process.parent.pid", Long, false),
    ("process.parent.entity_id", Keyword, false),
    ("process.parent.executable", Keyword, false),
    ("process.parent.name", Keyword, false),
    ("process.parent.args", Keyword, true),
    ("process.parent.args_count", Long, false),
    ("process.parent.command_line", Wildcard, false),
    ("process.parent.working_directory", Keyword, false),
    ("process.parent.start", Date, false),
    ("process.parent.thread.id", Long, false),
    ("process.parent.user.id", Keyword, false),
    ("process.parent.group.id", Keyword, false),
    ("user.id", Keyword, false),
    ("user.name", Keyword, false),
    ("group.id", Keyword, false),
    ("group.name", Keyword, false),
    ("container.id", Keyword, false),
    ("container.name", Keyword, false),
    ("container.runtime", Keyword, false),
    ("container.image.name", Keyword, false),
    ("container.image.hash.all", Keyword, true),
    ("container.security_context.privileged", Boolean, false),
    ("orchestrator.type", Keyword, false),
    ("orchestrator.namespace", Keyword, false),
    ("orchestrator.resource.type", Keyword, false),
    ("orchestrator.resource.name", Keyword, false),
    ("orchestrator.resource.id", Keyword, false),
    ("orchestrator.resource.label", Keyword, true),
    ("orchestrator.resource.annotation", Keyword, true),
    ("orchestrator.resource.parent.type", Keyword, false),
    ("file.path", Keyword, false),
    ("file.name", Keyword, false),
    ("file.directory", Keyword, false),
    ("file.extension", Keyword, false),
    ("file.mode", Keyword, false),
    ("file.type", Keyword, false),
    ("source.ip", Ip, false),
    ("source.port", Long, false),
    ("source.bytes", Long, false),
    ("destination.ip", Ip, false),
    ("destination.port", Long, false),
    ("destination.bytes", Long, false),
    ("network.transport", Keyword, false),
    ("network.type", Keyword, false),
    ("network.direction", Keyword, false),
    ("network.protocol", Keyword, false),
    ("network.iana_number", Keyword, false),
    ("observer.egress.interface.name", Keyword, false),
    ("dns.type", Keyword, false),
    ("dns.id", Keyword, false),
    ("dns.question.name", Keyword, false),
    ("dns.question.type", Keyword, false),
    ("dns.question.class", Keyword, false),
    ("dns.response_code", Keyword, false),
    ("dns.answers", Object, true),
    ("dns.answers.name", Keyword, false),
    ("dns.answers.type", Keyword, false),
    ("dns.answers.class", Keyword, false),
    ("dns.answers.data", Keyword, false),
    ("dns.answers.ttl", Long, false),
    ("dns.resolved_ip", Ip, true),
    ("dns.header_flags", Keyword, true),
    ("rule.id", Keyword, false),
    ("rule.name", Keyword, false),
    ("rule.ruleset", Keyword, false),
    ("rule.category", Keyword, false),
    ("rule.reference", Keyword, false),
    ("rule.description", Keyword, false),
    ("rule.author", Keyword, true),
    ("threat.framework", Keyword, false),
    ("threat.tactic.name", Keyword, true),
    ("threat.technique.id", Keyword, true),
    ("threat.technique.subtechnique.id", Keyword, true),
];

/// `event.kind` values.
pub const KINDS: &[&str] = &[
    "alert",
    "asset",
    "enrichment",
    "event",
    "metric",
    "state",
    "pipeline_error",
    "signal",
];

/// `event.category` values with the `event.type`s ECS expects with each.
pub const CATEGORIES: &[(&str, &[&str])] = &[
    (
        "api",
        &[
            "access", "admin", "allowed", "change", "creation", "deletion", "denied", "end",
            "info", "start", "user",
        ],
    ),
    ("authentication", &["start", "end", "info"]),
    (
        "configuration",
        &["access", "change", "creation", "deletion", "info"],
    ),
    ("database", &["access", "change", "info", "error"]),
    ("driver", &["change", "end", "info", "start"]),
    ("email", &["info"]),
    (
        "file",
        &["access", "change", "creation", "deletion", "info"],
    ),
    ("host", &["access", "change", "end", "info", "start"]),
    (
        "iam",
        &[
            "admin", "change", "creation", "deletion", "group", "info", "user",
        ],
    ),
    ("intrusion_detection", &["allowed", "denied", "info"]),
    ("library", &["start"]),
    ("malware", &["info"]),
    (
        "network",
        &[
            "access",
            "allowed",
            "connection",
            "denied",
            "end",
            "info",
            "protocol",
            "start",
        ],
    ),
    (
        "package",
        &[
            "access",
            "change",
            "deletion",
            "info",
            "installation",
            "start",
        ],
    ),
    ("process", &["access", "change", "end", "info", "start"]),
    ("registry", &["access", "change", "creation", "deletion"]),
    ("session", &["start", "end", "info"]),
    ("threat", &["indicator"]),
    ("vulnerability", &["info"]),
    ("web", &["access", "error", "info"]),
];

/// Fields whose values ECS lists (beside the categorization fields above).
const VALUES: &[(&str, &[&str])] = &[
    ("event.outcome", &["failure", "success", "unknown"]),
    (
        "network.direction",
        &[
            "ingress", "egress", "inbound", "outbound", "internal", "external", "unknown",
        ],
    ),
    (
        "host.os.type",
        &["linux", "macos", "unix", "windows", "ios", "android"],
    ),
];

/// The field's definition.
pub fn field(name: &str) -> Option<(EcsType, bool)> {
    FIELDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, a)| (*t, *a))
}

/// The index template's `mappings.properties` for every field in [`FIELDS`].
pub fn mappings() -> Value {
    let mut root = Map::new();
    for (name, ty, _) in FIELDS {
        let mapping = match ty {
            Keyword => json!({"type": "keyword", "ignore_above": 1024}),
            ConstantKeyword => json!({"type": "constant_keyword"}),
            Wildcard => json!({"type": "wildcard"}),
            Long => json!({"type": "long"}),
            Date => json!({"type": "date"}),
            Ip => json!({"type": "ip"}),
            Boolean => json!({"type": "boolean"}),
            Object => json!({"type": "object"}),
        };
        let mut at = &mut root;
        let parts: Vec<&str> = name.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            if i + 1 == parts.len() {
                // An object's own entry may come after its fields: keep what they added.
                let slot = at.entry(*part).or_insert_with(|| json!({}));
                for (k, v) in mapping.as_object().expect("a mapping").clone() {
                    slot[k] = v;
                }
            } else {
                let slot = at.entry(*part).or_insert_with(|| json!({"properties": {}}));
                if slot.get("properties").is_none() {
                    slot["properties"] = json!({});
                }
                at = slot["properties"].as_object_mut().expect("properties");
            }
        }
    }
    Value::Object(root)
}

/// What is wrong with `doc` as an ECS document: each field outside `vigil.*` must be an ECS
/// field of its type (an array where ECS says so, a scalar elsewhere), with a value ECS allows.
pub fn violations(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(top) = doc.as_object() else {
        return vec!["the document is not a JSON object".into()];
    };
    // A data stream refuses a document without its time; ECS asks for its version.
    for required in ["@timestamp", "ecs"] {
        if !top.contains_key(required) {
            out.push(format!("{required}: missing"));
        }
    }
    for (k, v) in top {
        if k != "vigil" {
            walk(k, v, &mut out);
        }
    }
    categorization(doc, &mut out);
    out
}

fn walk(path: &str, v: &Value, out: &mut Vec<String>) {
    match field(path) {
        Some((Object, _)) => match v.as_array() {
            Some(items) => {
                for item in items {
                    match item.as_object() {
                        Some(o) => o
                            .iter()
                            .for_each(|(k, v)| walk(&format!("{path}.{k}"), v, out)),
                        None => out.push(format!("{path}: {item} is not an object")),
                    }
                }
            }
            None => out.push(format!("{path}: not an array of objects: {v}")),
        },
        Some((ty, array)) => check_value(path, ty, array, v, out),
        None => match v.as_object() {
            Some(o) if !o.is_empty() => o
                .iter()
                .for_each(|(k, v)| walk(&format!("{path}.{k}"), v, out)),
            _ => out.push(format!(
                "{path}: not an ECS field vigil writes (put it under vigil.*)"
            )),
        },
    }
}

fn check_value(path: &str, ty: EcsType, array: bool, v: &Value, out: &mut Vec<String>) {
    let items: Vec<&Value> = match (v.as_array(), array) {
        (Some(a), true) => a.iter().collect(),
        (None, false) => vec![v],
        (Some(_), false) => return out.push(format!("{path}: ECS has a single value here: {v}")),
        (None, true) => return out.push(format!("{path}: ECS makes this an array: {v}")),
    };
    for item in items {
        let ok = match ty {
            Keyword | ConstantKeyword | Wildcard => item.is_string(),
            Long => item.is_i64() || item.is_u64(),
            // RFC 3339, which Elasticsearch's default date format reads.
            Date => item
                .as_str()
                .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
            Ip => item
                .as_str()
                .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
            Boolean => item.is_boolean(),
            Object => item.is_object(),
        };
        if !ok {
            out.push(format!("{path}: {item} is not a {ty:?} value"));
        }
    }
    if let Some((_, allowed)) = VALUES.iter().find(|(f, _)| *f == path) {
        if let Some(s) = v.as_str().filter(|s| !allowed.contains(s)) {
            out.push(format!(
                "{path}: `{s}` is not one of ECS's values {allowed:?}"
            ));
        }
    }
}

/// `event.kind`, `event.category` and `event.type` against ECS's lists: each type must be one
/// a category of the event expects.
fn categorization(doc: &Value, out: &mut Vec<String>) {
    let event = &doc["event"];
    match event["kind"].as_str() {
        Some(k) if KINDS.contains(&k) => {}
        other => out.push(format!("event.kind: {other:?} is not one of {KINDS:?}")),
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let categories = strings(&event["category"]);
    let types = strings(&event["type"]);
    if categories.is_empty() {
        out.push("event.category: missing".into());
    }
    if types.is_empty() {
        out.push("event.type: missing".into());
    }
    let mut expected: Vec<&str> = Vec::new();
    for c in &categories {
        match CATEGORIES.iter().find(|(n, _)| n == c) {
            Some((_, t)) => expected.extend(t.iter()),
            None => out.push(format!("event.category: `{c}` is not an ECS category")),
        }
    }
    for t in &types {
        if !expected.contains(&t.as_str()) {
            out.push(format!(
                "event.type: `{t}` is not a type ECS expects with the categories {categories:?}"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_of_ecs_fields_passes_and_each_kind_of_mistake_is_named() {
        let good = json!({
            "@timestamp": "2026-11-25T10:00:00.123456789Z",
            "ecs": {"version": "9.2.0"},
            "event": {"kind": "event", "category": ["process"], "type": ["start"], "outcome": "success"},
            "process": {"pid": 7, "args": ["/bin/sh", "-c"], "parent": {"pid": 1}},
            "dns": {"answers": [{"name": "a.test", "ttl": 60}], "resolved_ip": ["10.1.2.3"]},
            "vigil": {"anything": {"goes": 1}}
        });
        assert_eq!(violations(&good), Vec::<String>::new());
        let bad = json!({
            "@timestamp": "yesterday",
            "event": {"kind": "event", "category": ["process", "nope"], "type": ["creation"], "outcome": "ok"},
            "process": {"pid": "7", "args": "/bin/sh", "exit_status": 1},
            "source": {"ip": "not-an-ip"},
            "dns": {"answers": {"name": "a"}},
        });
        let v = violations(&bad);
        for want in [
            "@timestamp",
            "event.outcome: `ok`",
            "`nope` is not an ECS category",
            "event.type: `creation`",
            "process.pid",
            "process.args: ECS makes this an array",
            "process.exit_status: not an ECS field",
            "source.ip",
            "dns.answers: not an array",
            "ecs: missing",
        ] {
            assert!(v.iter().any(|m| m.contains(want)), "{want}: {v:#?}");
        }
        assert_eq!(v.len(), 10, "{v:#?}");
    }

    #[test]
    fn the_template_maps_every_field_with_its_type() {
        let m = mappings();
        assert_eq!(
            m["process"]["properties"]["parent"]["properties"]["args_count"]["type"],
            "long"
        );
        assert_eq!(
            m["process"]["properties"]["command_line"]["type"],
            "wildcard"
        );
        assert_eq!(
            m["data_stream"]["properties"]["dataset"]["type"],
            "constant_keyword"
        );
        assert_eq!(m["dns"]["properties"]["answers"]["type"], "object");
        assert_eq!(
            m["dns"]["properties"]["answers"]["properties"]["ttl"]["type"],
            "long"
        );
        assert_eq!(m["@timestamp"]["type"], "date");
    }
}
