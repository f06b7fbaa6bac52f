//! The userspace reference evaluator: what the kernel's file-open rules decide for an open,
//! computed from the same compiled rules with the same semantics (first matching selector per
//! policy; paths and binaries compared on their first `MAX_MATCH_VALUE` bytes, as the kernel's
//! keys hold them). `vigil policy test` replays recorded events through it, and a scenario runs
//! the same commands through both to prove they agree.

use crate::compile::{Filter, MatchKind, Rule, MAX_MATCH_VALUE};

/// An open as the kernel sees it: the file's resolved path and the process's binary.
#[derive(Debug, Clone, Copy)]
pub struct FileOpen<'a> {
    /// The opened file, as the kernel resolved it.
    pub path: &'a str,
    /// The opening process's binary.
    pub binary: &'a str,
}

fn cut(s: &str) -> &[u8] {
    &s.as_bytes()[..s.len().min(MAX_MATCH_VALUE)]
}

fn matches(f: &Filter, subject: &str) -> bool {
    let subject = cut(subject);
    let hit = f.values.iter().any(|v| {
        let v = cut(v);
        match f.kind {
            MatchKind::Exact => subject == v,
            MatchKind::Prefix => subject.starts_with(v),
            MatchKind::Postfix => subject.ends_with(v),
        }
    });
    hit != f.negate
}

/// The first of one policy's rules that matches `open`, as the kernel picks it.
pub fn first_match<'r>(rules: &'r [Rule], open: &FileOpen) -> Option<&'r Rule> {
    rules.iter().find(|r| {
        r.path.as_ref().is_none_or(|f| matches(f, open.path))
            && r.binary.as_ref().is_none_or(|f| matches(f, open.binary))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::RuleAction;

    fn rule(path: Option<Filter>, binary: Option<Filter>, action: RuleAction) -> Rule {
        Rule {
            hook_path: "spec.lsmhooks[0]".into(),
            function: "file_open".into(),
            is_lsm: true,
            hook: crate::compile::RuleHook::FileOpen,
            path,
            binary,
            action,
            post: true,
            monitor: false,
            message: None,
            tags: vec![],
        }
    }

    fn f(kind: MatchKind, negate: bool, values: &[&str]) -> Option<Filter> {
        Some(Filter {
            kind,
            negate,
            values: values.iter().map(|v| v.to_string()).collect(),
        })
    }

    #[test]
    fn first_matching_selector_wins() {
        let rules = [
            rule(
                f(MatchKind::Exact, false, &["/etc/passwd"]),
                f(MatchKind::Exact, false, &["/usr/bin/cat"]),
                RuleAction::Sigkill,
            ),
            rule(
                f(MatchKind::Prefix, false, &["/etc/"]),
                None,
                RuleAction::Post,
            ),
        ];
        let open = |path, binary| FileOpen { path, binary };
        assert_eq!(
            first_match(&rules, &open("/etc/passwd", "/usr/bin/cat"))
                .unwrap()
                .action,
            RuleAction::Sigkill
        );
        assert_eq!(
            first_match(&rules, &open("/etc/passwd", "/usr/bin/id"))
                .unwrap()
                .action,
            RuleAction::Post
        );
        assert!(first_match(&rules, &open("/tmp/x", "/usr/bin/cat")).is_none());
    }

    #[test]
    fn negation_and_postfix_and_the_kernels_length_limit() {
        let rules = [rule(
            f(MatchKind::Postfix, true, &[".log"]),
            None,
            RuleAction::Post,
        )];
        assert!(first_match(
            &rules,
            &FileOpen {
                path: "/var/x.log",
                binary: "/b"
            }
        )
        .is_none());
        assert!(first_match(
            &rules,
            &FileOpen {
                path: "/var/x.txt",
                binary: "/b"
            }
        )
        .is_some());
        // Past 251 bytes the kernel compares nothing more: a longer path equals its prefix.
        let long = format!("/{}", "a".repeat(300));
        let rules = [rule(
            f(MatchKind::Exact, false, &[&long[..251]]),
            None,
            RuleAction::Post,
        )];
        assert!(first_match(
            &rules,
            &FileOpen {
                path: &long,
                binary: "/b"
            }
        )
        .is_some());
    }
}
