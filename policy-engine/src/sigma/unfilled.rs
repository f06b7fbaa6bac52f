//! Fields a rule names that vigil never fills in its category's events
//! ([`super::fields::CATEGORY_FIELDS`]). sigma-rust finds no such field in any event, so what
//! the rule says of it never holds: a selection on `ProcessName` never matches, and `not` of it
//! always does. The rule still loads, since it may match through its other selections, with a
//! warning per field that names the file, the line and column, and what to use instead where
//! vigil has something close.

use serde_yaml::{Mapping, Value};

use super::fields::{filled, CATEGORY_FIELDS, POD_FIELDS};
use crate::locate::Locations;

/// A field a loaded rule names that vigil never fills.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {path}: {reason}")]
pub struct SigmaWarning {
    /// The rule file.
    pub file: String,
    /// Where the field is named, 1-based.
    pub line: usize,
    /// Its column.
    pub column: usize,
    /// Its path in the rule (`detection.selection.ProcessName|endswith`).
    pub path: String,
    /// The field.
    pub field: String,
    /// Why it never matches, and what to use instead.
    pub reason: String,
}

/// Fields of Sigma's taxonomy (Sysmon's names) vigil does not fill, and what stands for them.
const INSTEAD: [(&str, &str); 4] = [
    (
        "ProcessName",
        "use `Image`, the binary's path (`Image|endswith: /name` for its name)",
    ),
    (
        "ParentProcessName",
        "use `ParentImage`, the parent's binary path (`ParentImage|endswith: /name`)",
    ),
    (
        "OriginalFileName",
        "use `Image`, the binary's path as the kernel resolved it",
    ),
    (
        "DestinationHostname",
        "a connection does not carry the name its address was looked up by: write a \
         `dns_query` rule on `QueryName` (its `QueryResults` are the addresses answered)",
    ),
];

/// What to use instead of `field` in a rule of `category`.
fn instead(field: &str, category: &str) -> String {
    let here = filled(category);
    if let Some(f) = here.iter().find(|f| f.eq_ignore_ascii_case(field)) {
        return format!("use `{f}` (field names are case-sensitive)");
    }
    if let Some((_, what)) = INSTEAD.iter().find(|(f, _)| *f == field) {
        return what.to_string();
    }
    let elsewhere: Vec<&str> = CATEGORY_FIELDS
        .iter()
        .filter(|(_, fields)| fields.contains(&field))
        .map(|(c, _)| *c)
        .collect();
    if !elsewhere.is_empty() {
        return format!(
            "vigil fills it in {} events: write the rule for that category",
            elsewhere.join(" and ")
        );
    }
    format!("{category} events have {}", here.join(", "))
}

/// The mappings of field conditions in a selection, with their paths: a selection is one
/// mapping, or a list of them (any of which matches), or a list of keywords (no fields).
fn field_maps(path: String, selection: &Value) -> Vec<(String, &Mapping)> {
    match selection {
        Value::Mapping(m) => vec![(path, m)],
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((format!("{path}[{i}]"), v.as_mapping()?)))
            .collect(),
        _ => Vec::new(),
    }
}

/// The warnings for the fields the detection of `doc` (the rule file `file`, whose text is
/// `text`) names that vigil never fills in `category`'s events.
pub fn unfilled_fields(file: &str, text: &str, doc: &Value, category: &str) -> Vec<SigmaWarning> {
    let Some(detection) = doc.get("detection").and_then(Value::as_mapping) else {
        return Vec::new();
    };
    let here = filled(category);
    let mut found = Vec::new();
    for (name, selection) in detection {
        let Some(name) = name.as_str() else { continue };
        if name == "condition" || name == "timeframe" {
            continue;
        }
        for (path, conditions) in field_maps(format!("detection.{name}"), selection) {
            for key in conditions.keys().filter_map(Value::as_str) {
                let field = key.split('|').next().unwrap_or("");
                if !field.is_empty() && !here.contains(&field) && !POD_FIELDS.contains(&field) {
                    found.push((format!("{path}.{key}"), field.to_string()));
                }
            }
        }
    }
    if found.is_empty() {
        return Vec::new();
    }
    let at = Locations::index(text);
    found
        .into_iter()
        .map(|(path, field)| {
            let pos = at.key(&path);
            SigmaWarning {
                file: file.to_string(),
                line: pos.map_or(1, |p| p.line),
                column: pos.map_or(1, |p| p.column),
                reason: format!(
                    "vigil never fills `{field}` in {category} events, so nothing the rule says \
                     of it matches: {}",
                    instead(&field, category)
                ),
                path,
                field,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings(category: &str, detection: &str) -> Vec<SigmaWarning> {
        let text = format!(
            "title: t\nlogsource:\n  product: linux\n  category: {category}\ndetection:\n{detection}"
        );
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        unfilled_fields("r.yml", &text, &doc, category)
    }

    #[test]
    fn a_field_vigil_never_fills_is_named_at_its_line_with_what_to_use_instead() {
        let w = warnings(
            "process_creation",
            "  selection:\n    ProcessName|endswith: /nc\n    CommandLine|contains: ' -e '\n  condition: selection\n",
        );
        assert_eq!(w.len(), 1, "{w:#?}");
        assert_eq!(
            w[0].to_string(),
            "r.yml:7:5: detection.selection.ProcessName|endswith: vigil never fills `ProcessName` \
             in process_creation events, so nothing the rule says of it matches: use `Image`, \
             the binary's path (`Image|endswith: /name` for its name)"
        );
    }

    #[test]
    fn each_kind_of_unfilled_field_gets_its_own_advice() {
        let w = warnings(
            "network_connection",
            "  a:\n  - DestinationHostname: pool.example\n  - image: /bin/x\n  b:\n    TargetFilename: /x\n    Hashes: abc\n  keywords:\n  - evil\n  condition: a or b or keywords\n",
        );
        let said: Vec<(&str, &str)> = w
            .iter()
            .map(|w| (w.path.as_str(), w.reason.split(": ").nth(1).unwrap_or("")))
            .collect();
        assert_eq!(said.len(), 4, "{w:#?}");
        assert_eq!(said[0].0, "detection.a[0].DestinationHostname");
        assert!(
            said[0].1.starts_with("a connection does not carry"),
            "{said:?}"
        );
        assert_eq!(said[1].0, "detection.a[1].image");
        assert!(
            said[1]
                .1
                .contains("use `Image` (field names are case-sensitive)"),
            "{said:?}"
        );
        assert!(
            said[2].1.contains("vigil fills it in file_event events"),
            "{said:?}"
        );
        assert!(
            said[3]
                .1
                .starts_with("network_connection events have Image, User"),
            "{said:?}"
        );
    }

    #[test]
    fn a_rule_on_filled_fields_and_keywords_has_no_warning() {
        let w = warnings(
            "dns_query",
            "  s:\n    QueryName|endswith: .example\n    Image: /usr/bin/curl\n  k:\n  - evil\n  condition: s and k\n",
        );
        assert!(w.is_empty(), "{w:#?}");
    }
}
