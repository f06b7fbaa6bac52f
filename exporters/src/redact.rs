//! What is hidden in events before they leave the node: the capture groups of each redaction
//! pattern, replaced by `*****` in every process's arguments (the process, its parent, its
//! ancestors) and in the string, buffer, path and file arguments of policy events, and in the
//! event an alert carries. It runs before encoding, so secrets never reach a sink, stdout, the
//! export file, a spool or a dead-letter file.
//!
//! The groups of all patterns are matched on the original text and their spans merged before
//! anything is replaced: nested groups (`(--(password|token)=\S+)`) and patterns that overlap
//! hide one stretch of text once, rather than editing a string that was already shortened.

use std::{ops::Range, sync::Arc};

use base64::Engine;
use vigil_events::{Arg, Event, EventBody, Process};

use crate::filter::PatternError;

/// What replaces a redacted value.
pub const REDACTED: &str = "*****";

/// Patterns whose capture groups are hidden.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Over bytes, so that one compiled pattern serves text and buffers (`char_buf`) that need
    /// not be UTF-8; in Unicode mode a match on UTF-8 text starts and ends on characters.
    bytes: Vec<regex::bytes::Regex>,
}

/// Sorted, with overlapping, nested and touching spans joined; empty spans (nothing to hide)
/// dropped.
fn merge(mut spans: Vec<Range<usize>>) -> Vec<Range<usize>> {
    spans.retain(|r| !r.is_empty());
    spans.sort_unstable_by_key(|r| (r.start, r.end));
    let mut out: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for r in spans {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// `s` with each of the (merged, in-bounds) `spans` replaced by [`REDACTED`].
fn replace(s: &[u8], spans: &[Range<usize>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + spans.len() * REDACTED.len());
    let mut at = 0;
    for r in spans {
        out.extend_from_slice(&s[at..r.start]);
        out.extend_from_slice(REDACTED.as_bytes());
        at = r.end;
    }
    out.extend_from_slice(&s[at..]);
    out
}

impl Redactor {
    /// Compiles the patterns.
    pub fn new(patterns: &[String]) -> Result<Redactor, PatternError> {
        let bytes = patterns
            .iter()
            .map(|p| {
                regex::bytes::Regex::new(p).map_err(|e| PatternError {
                    field: "redact".into(),
                    pattern: p.clone(),
                    reason: format!("is not a regular expression: {e}"),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Redactor { bytes })
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// `s` redacted, or `None` when nothing matched.
    pub fn redact_str(&self, s: &str) -> Option<String> {
        // Spans of a Unicode-mode match on UTF-8 start and end on characters, and the
        // replacement is ASCII: the result is UTF-8.
        self.redact_bytes(s.as_bytes())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// `b` redacted, or `None` when nothing matched.
    pub fn redact_bytes(&self, b: &[u8]) -> Option<Vec<u8>> {
        let spans = self
            .bytes
            .iter()
            .flat_map(|re| re.captures_iter(b))
            .flat_map(|caps| {
                caps.iter()
                    .skip(1)
                    .flatten()
                    .map(|g| g.range())
                    .collect::<Vec<_>>()
            })
            .collect();
        let spans = merge(spans);
        (!spans.is_empty()).then(|| replace(b, &spans))
    }

    fn redact_process(&self, p: &mut Arc<Process>) {
        if let Some(args) = self.redact_str(&p.arguments) {
            Arc::make_mut(p).arguments = args;
        }
    }

    fn redact_arg(&self, a: &mut Arg) {
        match a {
            Arg::StringArg(s) => {
                if let Some(r) = self.redact_str(s) {
                    *s = r;
                }
            }
            Arg::FileArg(f) | Arg::PathArg(f) | Arg::LinuxBinprmArg(f) => {
                if let Some(r) = self.redact_str(&f.path) {
                    f.path = r;
                }
            }
            // A buffer is carried base64-encoded: the secret is in the bytes it encodes.
            Arg::BytesArg(b64) => {
                let engine = base64::engine::general_purpose::STANDARD;
                if let Ok(raw) = engine.decode(b64.as_bytes()) {
                    if let Some(r) = self.redact_bytes(&raw) {
                        *b64 = engine.encode(r);
                    }
                }
            }
            // A perf event's function name is the opener's string, as a file name is.
            Arg::PerfEventArg(p) => {
                if let Some(r) = self.redact_str(&p.KprobeFunc) {
                    p.KprobeFunc = r;
                }
            }
            Arg::BpfAttrArg(_) | Arg::BpfMapArg(_) | Arg::ModuleArg(_) => {}
            Arg::IntArg(_)
            | Arg::SizeArg(_)
            | Arg::SockArg(_)
            | Arg::SockaddrArg(_)
            | Arg::DnsArg(_)
            | Arg::ProcessCredentialsArg(_)
            | Arg::KernelCapTArg(_)
            | Arg::CapEffectiveArg(_)
            | Arg::CapInheritableArg(_)
            | Arg::CapPermittedArg(_)
            | Arg::SkbArg(_) => {}
        }
    }

    /// Hides secrets in every process `e` carries and in its policy arguments.
    pub fn apply(&self, e: &mut Event) {
        if self.is_empty() {
            return;
        }
        let (process, parent, ancestors) = match &mut e.body {
            EventBody::ProcessExec(x) => (&mut x.process, &mut x.parent, Some(&mut x.ancestors)),
            EventBody::ProcessExit(x) => (&mut x.process, &mut x.parent, Some(&mut x.ancestors)),
            EventBody::ProcessKprobe(x)
            | EventBody::ProcessLsm(x)
            | EventBody::ProcessUprobe(x)
            | EventBody::ProcessTracepoint(x)
            | EventBody::ProcessLoader(x) => {
                for a in x.args.iter_mut().chain(x.return_arg.as_mut()) {
                    self.redact_arg(a);
                }
                (&mut x.process, &mut x.parent, Some(&mut x.ancestors))
            }
            EventBody::ProcessAlert(x) => {
                self.apply(&mut x.event);
                (&mut x.process, &mut x.parent, None)
            }
            EventBody::FlowEncryption(x) => {
                if let Some(p) = &mut x.process {
                    self.redact_process(p);
                }
                if let Some(p) = &mut x.parent {
                    self.redact_process(p);
                }
                return;
            }
            EventBody::RateLimitInfo(_) => return,
        };
        self.redact_process(process);
        if let Some(p) = parent {
            self.redact_process(p);
        }
        for a in ancestors.into_iter().flatten() {
            self.redact_process(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::filter::tests::exec;

    #[test]
    fn capture_groups_are_redacted_everywhere() {
        let r = Redactor::new(&["--password[ =](\\S+)".into(), "(?:token=)(\\w+)".into()]).unwrap();
        let mut e = exec("/usr/bin/mysql", "--password=hunter2 -h db token=abc123");
        r.apply(&mut e);
        assert_eq!(e.process().arguments, "--password=***** -h db token=*****");
    }

    #[test]
    fn nested_capture_groups_are_redacted_once_without_panicking() {
        let r = Redactor::new(&["(--(password|token)=\\S+)".into()]).unwrap();
        let mut e = exec("/usr/bin/app", "--password=hunter2 -v --token=abc");
        r.apply(&mut e);
        assert_eq!(e.process().arguments, "***** -v *****");
        let mut e = exec("/usr/bin/app", "--password=x");
        r.apply(&mut e);
        assert_eq!(e.process().arguments, "*****");
    }

    #[test]
    fn overlapping_spans_of_different_patterns_are_redacted_once() {
        let r = Redactor::new(&["key=(\\w+)".into(), "(\\w+)-secret".into()]).unwrap();
        let mut e = exec("/usr/bin/app", "key=abc-secret tail");
        r.apply(&mut e);
        assert_eq!(e.process().arguments, "key=*****-secret tail");
    }

    fn policy_event(parent_args: &str) -> Event {
        let p = |args: &str| {
            Arc::new(Process {
                binary: "/usr/bin/app".into(),
                arguments: args.into(),
                ..Default::default()
            })
        };
        use base64::Engine;
        Event {
            body: EventBody::ProcessKprobe(Box::new(vigil_events::ProcessPolicy {
                path: String::new(),
                symbol: String::new(),
                offset: 0,
                process: p("--password=p0"),
                parent: Some(p(parent_args)),
                function_name: "security_file_open".into(),
                subsys: String::new(),
                event: String::new(),
                buildid: String::new(),
                args: vec![
                    Arg::StringArg("--password=s1".into()),
                    Arg::BytesArg(
                        base64::engine::general_purpose::STANDARD.encode(b"--password=b2\xff"),
                    ),
                    Arg::PathArg(vigil_events::FileArg {
                        path: "/tmp/--password=p3".into(),
                        ..Default::default()
                    }),
                    Arg::FileArg(vigil_events::FileArg {
                        path: "/tmp/--password=f4".into(),
                        ..Default::default()
                    }),
                    Arg::IntArg(5),
                ],
                return_arg: Some(Arg::StringArg("--password=r5".into())),
                action: "KPROBE_ACTION_POST".into(),
                policy_name: "p".into(),
                message: String::new(),
                tags: vec![],
                outcome: "posted".into(),
                ancestors: vec![p("--password=a6")],
                return_action: "KPROBE_ACTION_POST".into(),
                selector: None,
            })),
            node_name: "n".into(),
            node_labels: Default::default(),
            time: "t".into(),
        }
    }

    #[test]
    fn string_buffer_path_and_file_arguments_of_policy_events_are_redacted() {
        let r = Redactor::new(&["--password=(\\w+)".into()]).unwrap();
        let mut e = policy_event("--password=pp");
        r.apply(&mut e);
        let json = serde_json::to_string(&e).unwrap();
        for secret in ["p0", "s1", "p3", "f4", "r5", "a6", "pp"] {
            assert!(!json.contains(&format!("={secret}")), "{secret} in {json}");
        }
        let EventBody::ProcessKprobe(x) = &e.body else {
            unreachable!()
        };
        use base64::Engine;
        let Arg::BytesArg(b) = &x.args[1] else {
            unreachable!()
        };
        assert_eq!(
            base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
            b"--password=*****\xff"
        );
        assert_eq!(x.args[4], Arg::IntArg(5));
    }

    #[test]
    fn the_event_inside_an_alert_is_redacted() {
        let r = Redactor::new(&["--password=(\\w+)".into()]).unwrap();
        let inner = policy_event("--password=pp");
        let mut e = Event {
            body: EventBody::ProcessAlert(Box::new(vigil_events::ProcessAlert {
                process: inner.process().clone().into(),
                parent: None,
                rule_id: "r".into(),
                title: "t".into(),
                level: "high".into(),
                tags: vec![],
                rule_file: "f".into(),
                category: "c".into(),
                event: Box::new(inner),
            })),
            node_name: "n".into(),
            node_labels: Default::default(),
            time: "t".into(),
        };
        r.apply(&mut e);
        let json = serde_json::to_string(&e).unwrap();
        assert!(!json.contains("=s1") && !json.contains("=p0"), "{json}");
    }

    #[test]
    fn spans_merge_when_nested_overlapping_or_touching() {
        assert_eq!(
            merge(vec![5..9, 0..3, 2..4, 6..7, 9..10, 3..3]),
            vec![0..4, 5..10]
        );
    }
}
