//! Which events a sink receives, and what is hidden in them before they leave the node.
//!
//! Export filters follow Tetragon's semantics: a filter is a map of keys, all of which must
//! match (AND); a list of filters matches when any one does (OR); an event passes when the allow
//! list is empty or matches, and the deny list does not (deny wins). What is hidden in events
//! before they leave is [`crate::redact`]'s.

use regex::Regex;

pub use crate::redact::{Redactor, REDACTED};
use serde::Deserialize;
use vigil_events::{Event, EventBody};

/// One filter as written in the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// Event kinds (`process_exec`, `process_kprobe`, `process_alert`, ...).
    #[serde(default)]
    pub event_set: Vec<String>,
    /// Regular expressions on the process's binary.
    #[serde(default)]
    pub binary_regex: Vec<String>,
    /// Regular expressions on the parent's binary.
    #[serde(default)]
    pub parent_binary_regex: Vec<String>,
    /// Regular expressions on the process's arguments.
    #[serde(default)]
    pub arguments_regex: Vec<String>,
    /// Process ids.
    #[serde(default)]
    pub pid: Vec<u32>,
    /// Policy names (policy events only).
    #[serde(default)]
    pub policy_names: Vec<String>,
}

/// A bad pattern in a filter or redaction.
#[derive(Debug, thiserror::Error)]
#[error("{field}: `{pattern}` is not a regular expression: {reason}")]
pub struct PatternError {
    /// Where it was written.
    pub field: String,
    /// The pattern.
    pub pattern: String,
    /// Why.
    pub reason: String,
}

pub(crate) fn compile(field: &str, patterns: &[String]) -> Result<Vec<Regex>, PatternError> {
    patterns
        .iter()
        .map(|p| {
            Regex::new(p).map_err(|e| PatternError {
                field: field.to_string(),
                pattern: p.clone(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// A compiled filter.
#[derive(Debug, Clone)]
struct Filter {
    event_set: Vec<String>,
    binary: Vec<Regex>,
    parent_binary: Vec<Regex>,
    arguments: Vec<Regex>,
    pid: Vec<u32>,
    policy_names: Vec<String>,
}

fn any_match(res: &[Regex], s: &str) -> bool {
    res.is_empty() || res.iter().any(|r| r.is_match(s))
}

impl Filter {
    fn new(spec: &FilterSpec, at: &str) -> Result<Filter, PatternError> {
        Ok(Filter {
            event_set: spec.event_set.clone(),
            binary: compile(&format!("{at}.binary_regex"), &spec.binary_regex)?,
            parent_binary: compile(
                &format!("{at}.parent_binary_regex"),
                &spec.parent_binary_regex,
            )?,
            arguments: compile(&format!("{at}.arguments_regex"), &spec.arguments_regex)?,
            pid: spec.pid.clone(),
            policy_names: spec.policy_names.clone(),
        })
    }

    fn matches(&self, e: &Event) -> bool {
        let p = e.process();
        let parent = match &e.body {
            EventBody::ProcessExec(x) => x.parent.as_deref(),
            EventBody::ProcessExit(x) => x.parent.as_deref(),
            EventBody::ProcessKprobe(x) | EventBody::ProcessLsm(x) => x.parent.as_deref(),
            EventBody::ProcessAlert(x) => x.parent.as_deref(),
        };
        let policy = match &e.body {
            EventBody::ProcessKprobe(x) | EventBody::ProcessLsm(x) => Some(x.policy_name.as_str()),
            _ => None,
        };
        (self.event_set.is_empty() || self.event_set.iter().any(|k| k == e.kind()))
            && any_match(&self.binary, &p.binary)
            && (self.parent_binary.is_empty()
                || parent.is_some_and(|pp| any_match(&self.parent_binary, &pp.binary)))
            && any_match(&self.arguments, &p.arguments)
            && (self.pid.is_empty() || self.pid.contains(&p.pid))
            && (self.policy_names.is_empty()
                || policy.is_some_and(|n| self.policy_names.iter().any(|w| w == n)))
    }
}

/// Allow and deny lists.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    allow: Vec<Filter>,
    deny: Vec<Filter>,
}

impl ExportFilter {
    /// Compiles the lists; `at` names them in errors.
    pub fn new(
        allow: &[FilterSpec],
        deny: &[FilterSpec],
        at: &str,
    ) -> Result<ExportFilter, PatternError> {
        Ok(ExportFilter {
            allow: allow
                .iter()
                .enumerate()
                .map(|(i, f)| Filter::new(f, &format!("{at}.allow[{i}]")))
                .collect::<Result<_, _>>()?,
            deny: deny
                .iter()
                .enumerate()
                .map(|(i, f)| Filter::new(f, &format!("{at}.deny[{i}]")))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether `e` passes.
    pub fn passes(&self, e: &Event) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|f| f.matches(e)))
            && !self.deny.iter().any(|f| f.matches(e))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;
    use vigil_events::{Process, ProcessExec};

    /// An exec of `binary` with `args` by pid 7 (also for the redaction tests).
    pub(crate) fn exec(binary: &str, args: &str) -> Event {
        Event {
            body: EventBody::ProcessExec(ProcessExec {
                process: Arc::new(Process {
                    binary: binary.into(),
                    arguments: args.into(),
                    pid: 7,
                    ..Default::default()
                }),
                parent: None,
                ancestors: vec![],
            }),
            node_name: "n".into(),
            node_labels: Default::default(),
            time: "t".into(),
        }
    }

    #[test]
    fn keys_and_lines_combine_like_tetragon_and_deny_wins() {
        let allow = [
            FilterSpec {
                event_set: vec!["process_exec".into()],
                binary_regex: vec!["curl$".into()],
                ..Default::default()
            },
            FilterSpec {
                pid: vec![7],
                ..Default::default()
            },
        ];
        let deny = [FilterSpec {
            arguments_regex: vec!["internal".into()],
            ..Default::default()
        }];
        let f = ExportFilter::new(&allow, &deny, "sinks[0]").unwrap();
        assert!(f.passes(&exec("/usr/bin/curl", "x")));
        assert!(f.passes(&exec("/usr/bin/wget", "x")), "pid 7 line");
        assert!(!f.passes(&exec("/usr/bin/curl", "https://internal")));
    }

    #[test]
    fn a_bad_pattern_names_where_it_was_written() {
        let e = ExportFilter::new(
            &[FilterSpec {
                binary_regex: vec!["(".into()],
                ..Default::default()
            }],
            &[],
            "sinks[1]",
        )
        .unwrap_err();
        assert_eq!(e.field, "sinks[1].allow[0].binary_regex");
    }
}
