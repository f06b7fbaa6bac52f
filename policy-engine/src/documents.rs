//! What of a policy file's text is the policy: the one TracingPolicy document among the
//! file's documents, and `${NAME}` placeholders filled from the environment.
//!
//! Tetragon's examples are written for `kubectl apply`: some put the Pod a policy protects in
//! the same file, and some leave `${PODCIDR}` for `envsubst` to fill. vigil reads such a file as
//! kubectl would after envsubst, and says what it skipped or filled, so the policy that runs is
//! the one its author can read in the file. Both keep every line where it was, so an error still
//! names the line of the file.

use serde::Deserialize;
use yaml_rust2::parser::{Event, Parser};

use crate::error::PolicyError;

/// The kinds that are policies.
const POLICY_KINDS: [&str; 2] = ["TracingPolicy", "TracingPolicyNamespaced"];

/// A policy file's text as the parser should see it.
pub(crate) struct PolicyText {
    /// The text, other documents blanked and placeholders filled.
    pub text: String,
    /// What was skipped or filled, to tell the author.
    pub notes: Vec<PolicyError>,
}

#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default, rename = "apiVersion")]
    api_version: Option<String>,
}

/// The 1-based first line of each document of `text` (the gate has parsed it already).
fn document_lines(text: &str) -> Vec<usize> {
    let mut parser = Parser::new_from_str(text);
    let mut starts = Vec::new();
    while let Ok((event, mark)) = parser.next_token() {
        match event {
            Event::DocumentStart => starts.push(if starts.is_empty() { 1 } else { mark.line() }),
            Event::StreamEnd => break,
            _ => {}
        }
    }
    starts
}

/// The text of `file` with every document but its one policy blanked (lines kept), and a note
/// for each document skipped. A file of one document is returned as it is.
pub(crate) fn policy_document(file: &str, text: &str) -> Result<PolicyText, PolicyError> {
    let starts = document_lines(text);
    if starts.len() < 2 {
        return Ok(PolicyText {
            text: text.to_string(),
            notes: Vec::new(),
        });
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let at = |line: usize, reason: String, fix: &str| PolicyError {
        file: file.to_string(),
        line,
        column: 1,
        path: "(document)".into(),
        reason,
        fix: fix.to_string(),
    };
    let mut policy: Option<(usize, usize)> = None;
    let mut notes = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map(|n| n - 1).unwrap_or(lines.len());
        let body: String = lines
            .get(start.saturating_sub(1)..end.min(lines.len()))
            .unwrap_or_default()
            .concat();
        let head: Option<Head> = serde_yaml::from_str(&body).ok().flatten();
        let Some(Head {
            kind: Some(kind),
            api_version,
        }) = head
        else {
            continue; // empty, or no kind: nothing kubectl would apply either
        };
        if POLICY_KINDS.contains(&kind.as_str()) {
            if policy.is_some() {
                return Err(at(
                    start,
                    format!("a second {kind} in one file: vigil reads one policy per file"),
                    "move each policy to a file of its own",
                ));
            }
            policy = Some((start, end));
        } else {
            let api = api_version.unwrap_or_default();
            notes.push(at(
                start,
                format!(
                    "document {} is a {kind} ({api}), not a policy: skipped",
                    i + 1
                ),
                "apply it with kubectl; vigil reads only the TracingPolicy in this file",
            ));
        }
    }
    let Some((first, last)) = policy else {
        return Err(at(
            1,
            format!(
                "none of the file's {} documents is a TracingPolicy",
                starts.len()
            ),
            "put the policy in this file, or give vigil the file that holds it",
        ));
    };
    let mut out = String::with_capacity(text.len());
    for (n, l) in lines.iter().enumerate() {
        let line = n + 1;
        if (first..=last).contains(&line) {
            out.push_str(l);
        } else if l.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(PolicyText { text: out, notes })
}

/// Whether `c` may appear in a filled-in value: what addresses, CIDRs, names, numbers and
/// paths are written with. Nothing that YAML reads as structure, so a value cannot turn into
/// fields of the policy.
fn value_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '/' | ':' | '_' | '-' | '+')
}

/// Where a YAML comment starts on `line` (a `#` at its start or after a blank), or its end.
fn comment_start(line: &str) -> usize {
    let b = line.as_bytes();
    (0..b.len())
        .find(|&i| b[i] == b'#' && (i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t'))
        .unwrap_or(b.len())
}

/// Fills each `${NAME}` (NAME of capitals, digits and `_`) in `text` with `lookup(NAME)`, as
/// envsubst does. One `lookup` does not know is refused, as is one whose value holds other
/// characters than [`value_char`]: a filter left holding `${NAME}` would load and never match
/// (or, negated, match everything). Comments are left alone.
pub(crate) fn fill_placeholders(
    file: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    notes: &mut Vec<PolicyError>,
) -> Result<String, PolicyError> {
    if !text.contains("${") {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let (code, comment) = line.split_at(comment_start(line));
        let mut rest = code;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let name_len = after
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..name_len];
            let closed = after[name_len..].starts_with('}');
            let value = if closed && !name.is_empty() {
                lookup(name)
            } else {
                None
            };
            let at = |reason: String, fix: String| PolicyError {
                file: file.to_string(),
                line: n + 1,
                column: code.len() - rest.len() + i + 1,
                path: "(document)".into(),
                reason,
                fix,
            };
            let Some(value) = value else {
                if !closed || name.is_empty() {
                    out.push_str("${");
                    rest = after;
                    continue;
                }
                return Err(at(
                    format!("${{{name}}} is a placeholder, and {name} is not set where vigil reads this policy"),
                    format!("write the value itself; in a policy file on the node, {name} may also be set in vigil's environment (as for envsubst: `export {name}=...`)"),
                ));
            };
            if value.is_empty() || !value.chars().all(value_char) {
                // The value itself is not echoed: it may be a secret of the environment.
                return Err(at(
                    format!("${{{name}}} is set to something that is not a value a policy field takes"),
                    format!("set {name} to an address, CIDR, number or name (letters, digits and . / : _ - +)"),
                ));
            }
            notes.push(at(
                format!("${{{name}}} filled in from the environment as `{value}`"),
                "write the value itself to keep it from depending on where vigil runs".to_string(),
            ));
            out.push_str(&value);
            rest = &after[name_len + 1..];
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    Ok(out)
}

/// The environment variable a placeholder names, for [`fill_placeholders`].
pub(crate) fn from_environment(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD_AND_POLICY: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n---\napiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: x\n";

    #[test]
    fn a_pod_beside_the_policy_is_skipped_with_a_note_and_lines_stay_where_they_were() {
        let t = policy_document("f.yaml", POD_AND_POLICY).unwrap();
        assert_eq!(t.text.lines().count(), POD_AND_POLICY.lines().count());
        assert_eq!(t.text.lines().nth(6), Some("kind: TracingPolicy"));
        assert!(!t.text.contains("Pod"));
        assert_eq!(t.notes.len(), 1);
        assert_eq!(t.notes[0].line, 1);
        assert!(t.notes[0].reason.contains("Pod (v1)"), "{:?}", t.notes);
    }

    #[test]
    fn two_policies_in_one_file_are_refused_at_the_second() {
        let two = "kind: TracingPolicy\nmetadata:\n  name: a\n---\nkind: TracingPolicy\nmetadata:\n  name: b\n";
        let e = policy_document("f.yaml", two).err().unwrap();
        assert_eq!(e.line, 4);
        assert!(e.reason.contains("one policy per file"));
    }

    #[test]
    fn a_file_of_other_kinds_only_is_refused() {
        let e = policy_document("f.yaml", "kind: Pod\n---\nkind: Service\n")
            .err()
            .unwrap();
        assert!(e.reason.contains("none of the file's 2 documents"));
    }

    #[test]
    fn placeholders_are_filled_from_the_lookup_and_noted() {
        let lookup = |n: &str| (n == "PODCIDR").then(|| "10.0.0.0/16".to_string());
        let mut notes = Vec::new();
        let out = fill_placeholders(
            "f",
            "a: [${PODCIDR}, $x, ${]  # ${OTHER} in a comment\n",
            &lookup,
            &mut notes,
        )
        .unwrap();
        assert_eq!(out, "a: [10.0.0.0/16, $x, ${]  # ${OTHER} in a comment\n");
        assert_eq!(notes.len(), 1);
        assert_eq!((notes[0].line, notes[0].column), (1, 5));
    }

    #[test]
    fn a_placeholder_left_unset_is_refused_where_it_is() {
        let e = fill_placeholders(
            "f",
            "a: 1\nb: \"${APP_DIR}/keys\"\n",
            &|_| None,
            &mut Vec::new(),
        )
        .err()
        .unwrap();
        assert_eq!((e.line, e.column), (2, 5));
        assert!(e.reason.contains("APP_DIR is not set"), "{e}");
    }

    #[test]
    fn a_value_that_would_change_the_yaml_is_refused() {
        for bad in ["10.0.0.0/8\nkprobes: []", "a, b", "x # y", "", "{}"] {
            let lookup = |_: &str| Some(bad.to_string());
            let e = fill_placeholders("f", "v: ${V}\n", &lookup, &mut Vec::new());
            assert!(e.is_err(), "{bad:?}");
        }
    }
}
