//! Which events a sink receives, and what is hidden in them before they leave the node.
//!
//! Export filters follow Tetragon's semantics: a filter is a map of keys, all of which must
//! match (AND); a list of filters matches when any one does (OR); an event passes when the allow
//! list is empty or matches, and the deny list does not (deny wins). What is hidden in events
//! before they leave is [`crate::redact`]'s.

use regex::Regex;

use crate::labels::LabelSelector;
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
    /// Process ids whose descendants pass too: the process, its parent or an ancestor the
    /// event carries has one of them.
    #[serde(default)]
    pub pid_set: Vec<u32>,
    /// Policy names (policy events only).
    #[serde(default)]
    pub policy_names: Vec<String>,
    /// Kubernetes namespaces of the process's pod; `""` matches processes in no pod.
    #[serde(default)]
    pub namespace: Vec<String>,
    /// Regular expressions on the pod's name.
    #[serde(default)]
    pub pod_regex: Vec<String>,
    /// Label selectors on the pod's labels ([`crate::labels`]), any of which may hold.
    #[serde(default)]
    pub labels: Vec<String>,
}

/// A bad pattern in a filter or redaction.
#[derive(Debug, thiserror::Error)]
#[error("{field}: `{pattern}` {reason}")]
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
                reason: format!("is not a regular expression: {e}"),
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
    pid_set: Vec<u32>,
    policy_names: Vec<String>,
    namespace: Vec<String>,
    pod: Vec<Regex>,
    labels: Vec<LabelSelector>,
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
            pid_set: spec.pid_set.clone(),
            policy_names: spec.policy_names.clone(),
            namespace: spec.namespace.clone(),
            pod: compile(&format!("{at}.pod_regex"), &spec.pod_regex)?,
            labels: spec
                .labels
                .iter()
                .map(|l| {
                    LabelSelector::parse(l).map_err(|reason| PatternError {
                        field: format!("{at}.labels"),
                        pattern: l.clone(),
                        reason: format!("is not a label selector: {reason}"),
                    })
                })
                .collect::<Result<_, _>>()?,
        })
    }

    fn matches(&self, e: &Event) -> bool {
        let p = e.process();
        let parent = match &e.body {
            EventBody::ProcessExec(x) => x.parent.as_deref(),
            EventBody::ProcessExit(x) => x.parent.as_deref(),
            EventBody::ProcessKprobe(x)
            | EventBody::ProcessLsm(x)
            | EventBody::ProcessUprobe(x)
            | EventBody::ProcessTracepoint(x)
            | EventBody::ProcessLoader(x) => x.parent.as_deref(),
            EventBody::ProcessAlert(x) => x.parent.as_deref(),
            EventBody::FlowEncryption(x) => x.parent.as_deref(),
            EventBody::RateLimitInfo(_) => None,
        };
        let policy = match &e.body {
            EventBody::ProcessKprobe(x)
            | EventBody::ProcessLsm(x)
            | EventBody::ProcessUprobe(x)
            | EventBody::ProcessTracepoint(x)
            | EventBody::ProcessLoader(x) => Some(x.policy_name.as_str()),
            _ => None,
        };
        (self.event_set.is_empty() || self.event_set.iter().any(|k| k == e.kind()))
            && any_match(&self.binary, &p.binary)
            && (self.parent_binary.is_empty()
                || parent.is_some_and(|pp| any_match(&self.parent_binary, &pp.binary)))
            && any_match(&self.arguments, &p.arguments)
            && (self.pid.is_empty() || self.pid.contains(&p.pid))
            && (self.pid_set.is_empty() || e.processes().any(|q| self.pid_set.contains(&q.pid)))
            && (self.policy_names.is_empty()
                || policy.is_some_and(|n| self.policy_names.iter().any(|w| w == n)))
            && self.pod_matches(p.pod.as_deref())
    }

    fn pod_matches(&self, pod: Option<&vigil_events::Pod>) -> bool {
        let namespace = pod.map_or("", |p| p.namespace.as_str());
        let no_labels = std::collections::BTreeMap::new();
        let labels = pod.map_or(&no_labels, |p| &p.pod_labels);
        (self.namespace.is_empty() || self.namespace.iter().any(|n| n == namespace))
            && (self.pod.is_empty() || pod.is_some_and(|p| any_match(&self.pod, &p.name)))
            && (self.labels.is_empty() || self.labels.iter().any(|l| l.matches(labels)))
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
        if let EventBody::RateLimitInfo(_) = e.body {
            // The note that records were lost is about no process: the process, pod and
            // policy keys cannot say anything of it, and a filter written for processes (deny
            // the host's, allow one namespace's) must not hide a gap in the stream. Only a
            // list that names event kinds decides for it.
            let named = |f: &Filter| f.event_set.iter().any(|k| k == e.kind());
            let names_kinds = |fs: &[Filter]| fs.iter().any(|f| !f.event_set.is_empty());
            return (!names_kinds(&self.allow) || self.allow.iter().any(named))
                && !self.deny.iter().any(named);
        }
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
    fn a_filter_for_processes_never_hides_the_note_of_lost_records() {
        let lost = Event {
            body: EventBody::RateLimitInfo(vigil_events::RateLimitInfo {
                number_of_dropped_process_events: 3,
            }),
            node_name: "n".into(),
            node_labels: Default::default(),
            time: "t".into(),
        };
        let spec = |f: fn(&mut FilterSpec)| {
            let mut s = FilterSpec::default();
            f(&mut s);
            s
        };
        // Deny the host's processes, allow one namespace's, one binary's or one pid's.
        let host = [spec(|s| s.namespace = vec![String::new()])];
        assert!(ExportFilter::new(&[], &host, "s").unwrap().passes(&lost));
        let only = [
            spec(|s| s.namespace = vec!["prod".into()]),
            spec(|s| s.binary_regex = vec!["curl$".into()]),
            spec(|s| s.pid = vec![7]),
        ];
        assert!(ExportFilter::new(&only, &[], "s").unwrap().passes(&lost));
        // A list of kinds decides.
        let execs = [spec(|s| s.event_set = vec!["process_exec".into()])];
        assert!(!ExportFilter::new(&execs, &[], "s").unwrap().passes(&lost));
        let no_notes = [spec(|s| s.event_set = vec!["rate_limit_info".into()])];
        assert!(!ExportFilter::new(&[], &no_notes, "s")
            .unwrap()
            .passes(&lost));
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

    fn in_pod(namespace: &str, name: &str, app: &str) -> Event {
        let mut e = exec("/bin/sh", "");
        if let Some(p) = e.processes_mut().next() {
            Arc::make_mut(p).pod = Some(Box::new(vigil_events::Pod {
                namespace: namespace.into(),
                name: name.into(),
                pod_labels: [("app".to_string(), app.to_string())].into(),
                ..Default::default()
            }));
        }
        e
    }

    #[test]
    fn pods_are_filtered_by_namespace_name_and_labels_as_tetragon_does() {
        let f = |spec: FilterSpec| ExportFilter::new(&[spec], &[], "s").unwrap();
        let shop = f(FilterSpec {
            namespace: vec!["shop".into()],
            ..Default::default()
        });
        assert!(shop.passes(&in_pod("shop", "web-1", "web")));
        assert!(!shop.passes(&in_pod("bank", "web-1", "web")));
        assert!(!shop.passes(&exec("/bin/sh", "")));
        let host = f(FilterSpec {
            namespace: vec![String::new()],
            ..Default::default()
        });
        assert!(
            host.passes(&exec("/bin/sh", "")),
            "\"\" is the host's processes"
        );
        assert!(!host.passes(&in_pod("shop", "web-1", "web")));
        let web = f(FilterSpec {
            pod_regex: vec!["^web-".into()],
            labels: vec!["app in (web, api)".into()],
            ..Default::default()
        });
        assert!(web.passes(&in_pod("shop", "web-1", "web")));
        assert!(!web.passes(&in_pod("shop", "web-1", "db")));
        assert!(!web.passes(&in_pod("shop", "db-1", "web")));
        let bad = ExportFilter::new(
            &[FilterSpec {
                labels: vec!["app in web".into()],
                ..Default::default()
            }],
            &[],
            "sinks[2]",
        )
        .unwrap_err();
        assert_eq!(bad.field, "sinks[2].allow[0].labels");
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
