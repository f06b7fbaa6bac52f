//! Which fields of an event a sink sends: Tetragon's field filters. A filter names event kinds
//! (all when empty), dotted field paths inside the event's object (`process.cap`,
//! `parent.arguments`, `process.pod.labels`) and whether those fields are the only ones kept
//! (`include`) or the ones removed (`exclude`); filters apply in order. The event's `node_name`
//! and `time` always stay. A sink with field filters rewrites each record in its own task when
//! it delivers, so the agent's thread and the other sinks never pay for it.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::record::Record;

/// Keep only the named fields, or remove them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldAction {
    /// Only these fields are sent.
    Include,
    /// These fields are not sent.
    Exclude,
}

/// One field filter as written in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldFilter {
    /// Event kinds it applies to (all when empty).
    #[serde(default)]
    pub event_set: Vec<String>,
    /// Dotted paths inside the event's object.
    pub fields: Vec<String>,
    /// What to do with them.
    pub action: FieldAction,
}

/// A path that names nothing: the configuration says which one.
#[derive(Debug, thiserror::Error)]
#[error("{at}: `{path}` is not a field path (dotted names such as `process.cap`)")]
pub struct FieldPathError {
    /// Where it was written.
    pub at: String,
    /// The path.
    pub path: String,
}

/// The field filters of a sink, checked.
#[derive(Debug, Clone, Default)]
pub struct FieldFilters {
    filters: Vec<(Vec<String>, Vec<Vec<String>>, FieldAction)>,
}

/// Removes `path` from `obj`.
fn remove(obj: &mut Map<String, Value>, path: &[String]) {
    match path {
        [] => {}
        [last] => {
            obj.remove(last);
        }
        [first, rest @ ..] => {
            if let Some(Value::Object(inner)) = obj.get_mut(first) {
                remove(inner, rest);
            }
        }
    }
}

/// Moves `path` from `from` into `to`, creating the objects on the way.
fn take(from: &mut Map<String, Value>, to: &mut Map<String, Value>, path: &[String]) {
    match path {
        [] => {}
        [last] => {
            if let Some(v) = from.remove(last) {
                to.insert(last.clone(), v);
            }
        }
        [first, rest @ ..] => {
            if let Some(Value::Object(inner)) = from.get_mut(first) {
                let slot = to
                    .entry(first.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(out) = slot {
                    take(inner, out, rest);
                }
            }
        }
    }
}

impl FieldFilters {
    /// Checks `specs`; `at` names them in errors (`sinks[2].fields`).
    pub fn new(specs: &[FieldFilter], at: &str) -> Result<FieldFilters, FieldPathError> {
        let mut filters = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let mut paths = Vec::new();
            for p in &spec.fields {
                let parts: Vec<String> = p.split('.').map(str::to_string).collect();
                if parts
                    .iter()
                    .any(|s| s.is_empty() || s.contains(char::is_whitespace))
                {
                    return Err(FieldPathError {
                        at: format!("{at}[{i}].fields"),
                        path: p.clone(),
                    });
                }
                paths.push(parts);
            }
            filters.push((spec.event_set.clone(), paths, spec.action));
        }
        Ok(FieldFilters { filters })
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// The record with its fields filtered; unchanged when no filter applies to its kind.
    pub fn apply(&self, r: Record) -> Record {
        let applies = |set: &Vec<String>| set.is_empty() || set.iter().any(|k| k == r.kind);
        if !self.filters.iter().any(|(set, _, _)| applies(set)) {
            return r;
        }
        let Ok(Value::Object(mut top)) = serde_json::from_slice::<Value>(&r.json) else {
            return r;
        };
        if let Some(Value::Object(body)) = top.get_mut(r.kind) {
            for (set, paths, action) in &self.filters {
                if !applies(set) {
                    continue;
                }
                match action {
                    FieldAction::Exclude => paths.iter().for_each(|p| remove(body, p)),
                    FieldAction::Include => {
                        let mut kept = Map::new();
                        paths.iter().for_each(|p| take(body, &mut kept, p));
                        *body = kept;
                    }
                }
            }
        }
        Record {
            json: serde_json::to_vec(&top).unwrap_or_default().into(),
            ..r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: &'static str, json: &str) -> Record {
        Record {
            time_ns: 1,
            kind,
            exec_id: "e".into(),
            json: bytes::Bytes::copy_from_slice(json.as_bytes()),
        }
    }

    fn filters(yaml: &str) -> FieldFilters {
        let specs: Vec<FieldFilter> = serde_yaml::from_str(yaml).unwrap();
        FieldFilters::new(&specs, "sinks[0].fields").unwrap()
    }

    const EXEC: &str = r#"{"process_exec":{"process":{"binary":"/bin/sh","cap":{"effective":["CAP_KILL"]},"ns":{"mnt":{"inum":1}}},"parent":{"binary":"/bin/bash"}},"node_name":"n","time":"t"}"#;

    #[test]
    fn exclude_removes_nested_fields_and_include_keeps_only_the_named() {
        let f = filters("- {fields: [process.cap, parent], action: exclude}");
        let out = f.apply(record("process_exec", EXEC));
        assert_eq!(
            std::str::from_utf8(&out.json).unwrap(),
            r#"{"node_name":"n","process_exec":{"process":{"binary":"/bin/sh","ns":{"mnt":{"inum":1}}}},"time":"t"}"#
        );
        let f =
            filters("- {fields: [process.binary, process.ns.mnt, nothing.here], action: include}");
        let out = f.apply(record("process_exec", EXEC));
        assert_eq!(
            std::str::from_utf8(&out.json).unwrap(),
            r#"{"node_name":"n","process_exec":{"process":{"binary":"/bin/sh","ns":{"mnt":{"inum":1}}}},"time":"t"}"#
        );
    }

    #[test]
    fn filters_apply_only_to_their_event_kinds() {
        let f = filters("- {event_set: [process_exit], fields: [parent], action: exclude}");
        let out = f.apply(record("process_exec", EXEC));
        assert_eq!(
            &out.json[..],
            EXEC.as_bytes(),
            "untouched, not even re-encoded"
        );
    }

    #[test]
    fn a_bad_path_is_named() {
        let specs: Vec<FieldFilter> =
            serde_yaml::from_str("- {fields: [process..cap], action: exclude}").unwrap();
        let err = FieldFilters::new(&specs, "sinks[1].fields").unwrap_err();
        assert_eq!(
            err.to_string(),
            "sinks[1].fields[0].fields: `process..cap` is not a field path (dotted names such as `process.cap`)"
        );
    }
}
