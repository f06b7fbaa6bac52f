//! Kubernetes label selectors as written in a filter (`labels:`) or on the command line
//! (`--label`): comma-separated requirements, `key=value` (or `==`), `key!=value`,
//! `key in (a, b)`, `key notin (a, b)`, `key` (the label exists) and `!key` (it does not), all
//! of which must hold; a pod's labels are matched, and a process in no pod has none.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equal(String, String),
    NotEqual(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

/// Splits on the commas outside parentheses.
fn terms(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn key(k: &str) -> Result<String, String> {
    let k = k.trim();
    let ok = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(k.to_string())
    } else {
        Err(format!("`{k}` is not a label key"))
    }
}

fn set(values: &str) -> Result<Vec<String>, String> {
    let inner = values
        .trim()
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| format!("`{}` is not a set of values: write `(a, b)`", values.trim()))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

impl LabelSelector {
    /// Parses `s`; the error says which requirement is wrong and why.
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        for t in terms(s) {
            let t = t.trim();
            if t.is_empty() {
                return Err("an empty requirement (two commas, or one at an end)".into());
            }
            let words: Vec<&str> = t.splitn(3, char::is_whitespace).collect();
            let r = if let Some(k) = t.strip_prefix('!') {
                Requirement::Absent(key(k)?)
            } else if words.len() == 3 && words[1] == "in" {
                Requirement::In(key(words[0])?, set(words[2])?)
            } else if words.len() == 3 && words[1] == "notin" {
                Requirement::NotIn(key(words[0])?, set(words[2])?)
            } else if let Some((k, v)) = t.split_once("!=") {
                Requirement::NotEqual(key(k)?, v.trim().to_string())
            } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                Requirement::Equal(key(k)?, v.trim().to_string())
            } else {
                Requirement::Exists(key(t)?)
            };
            reqs.push(r);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Equal(k, v) => labels.get(k) == Some(v),
            Requirement::NotEqual(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::Absent(k) => !labels.contains_key(k),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_requirement_kind_is_read_and_all_must_hold() {
        let s = LabelSelector::parse(
            "app=web, tier in (front, edge),team notin (ops),owner,!canary,env!=prod",
        )
        .unwrap();
        let web = labels(&[
            ("app", "web"),
            ("tier", "edge"),
            ("owner", "x"),
            ("env", "dev"),
        ]);
        assert!(s.matches(&web));
        for (k, v) in [
            ("canary", "1"),
            ("team", "ops"),
            ("env", "prod"),
            ("tier", "back"),
            ("app", "db"),
        ] {
            let mut l = web.clone();
            l.insert(k.into(), v.into());
            assert!(!s.matches(&l), "{k}={v}");
        }
        assert!(
            !s.matches(&labels(&[])),
            "a process in no pod has no labels"
        );
        assert!(LabelSelector::parse("app==web").unwrap().matches(&web));
    }

    #[test]
    fn a_malformed_selector_says_what_is_wrong() {
        assert!(LabelSelector::parse("app=web,")
            .unwrap_err()
            .contains("empty requirement"));
        assert!(LabelSelector::parse("tier in front")
            .unwrap_err()
            .contains("set of values"));
        assert!(LabelSelector::parse("a b=c")
            .unwrap_err()
            .contains("not a label key"));
    }
}
