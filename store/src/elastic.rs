//! The query of `vigil search` as Elasticsearch's query DSL, over the ECS documents vigil's
//! exporter writes (`vigil_exporters::sinks::ecs`, into `logs-vigil.events-default` by
//! default), so that one [`Query`] searches one node's store and a whole fleet's data stream
//! and finds the same events. [`search_body`] and [`count_body`] are the bodies of
//! `POST /<index>/_search` and `POST /<index>/_count`.
//!
//! Every criterion becomes a filter clause on the ECS fields that carry the fact the store's
//! column holds ([`crate::search`]), and where ECS keeps that fact in another shape the clause
//! reshapes it, so the answer is the store's:
//!
//! - the event key is in no field: exec, exit, alert and policy events are told apart by
//!   `event.kind`, `event.action`, `event.type` and the `vigil.policy` object;
//! - `process.command_line` is the binary, a space, then the arguments the store matches: the
//!   arguments are what follows the first space;
//! - a rename's document names the new path in `file.path` and the old one, the path the store
//!   keeps (the first path argument), in `vigil.file.original_path`;
//! - an accepted or received socket's peer, the store's destination, is ECS's `source.*`;
//! - the store keeps a DNS name in lower case, the document as it was asked: the term ignores
//!   ASCII case.
//!
//! What the DSL cannot say is refused with the criterion and what to do instead: a process
//! subtree (it needs the process table: `vigil tree`), `process_kprobe` without `process_lsm`
//! or the reverse (the documents do not tell them apart), regular-expression constructs
//! Lucene's regexp lacks or reads otherwise, and more hits than `index.max_result_window`.

use ipnet::IpNet;
use serde_json::{json, Map, Value};

use crate::query::{level_rank, Query, QueryError, TextMatch};

/// The most hits one search returns: Elasticsearch's default `index.max_result_window`,
/// above which it refuses the search rather than answering less.
pub const MAX_RESULT_WINDOW: u64 = 10_000;

/// The bounds' format: RFC 3339 with up to nine fraction digits, so a bound keeps its
/// nanoseconds on the way to the cluster.
const TIME_FORMAT: &str = "strict_date_optional_time_nanos";

/// `event.severity` of each Sigma level, in [`crate::query::LEVELS`]' order: the numbers the
/// exporter writes (Elastic's scale). Kept here because this crate must not depend on the
/// exporters; the tests crate checks both agree.
const SEVERITIES: [u64; 5] = [1, 21, 47, 73, 99];

/// The `event.severity` vigil's ECS documents give alerts of `level`.
pub fn severity(level: &str) -> Option<u64> {
    level_rank(level).map(|r| SEVERITIES[r])
}

fn refuse(field: &'static str, reason: impl Into<String>) -> QueryError {
    QueryError {
        field,
        reason: reason.into(),
    }
}

/// The body of `POST /<index>/_search` for `q`: its newest [`Query::limit`] events, newest
/// first (the caller reverses them, as the store returns the newest oldest first).
pub fn search_body(q: &Query) -> Result<Value, QueryError> {
    let query = query(q)?;
    let size = q.limit();
    if size > MAX_RESULT_WINDOW {
        return Err(refuse(
            "limit",
            format!(
                "Elasticsearch returns at most {MAX_RESULT_WINDOW} events a search (index.max_result_window): ask for {MAX_RESULT_WINDOW} or fewer, narrow the time range, or use --count for how many match"
            ),
        ));
    }
    Ok(json!({
        "query": query,
        "size": size,
        "sort": [{"@timestamp": {"order": "desc"}}],
    }))
}

/// The body of `POST /<index>/_count` for `q`: how many events match.
pub fn count_body(q: &Query) -> Result<Value, QueryError> {
    Ok(json!({ "query": query(q)? }))
}

fn term(field: &str, value: impl Into<Value>) -> Value {
    json!({"term": {field: value.into()}})
}

fn exists(field: &str) -> Value {
    json!({"exists": {"field": field}})
}

/// Every clause of `clauses` (one alone as itself).
fn all(mut clauses: Vec<Value>) -> Value {
    if clauses.len() == 1 {
        clauses.remove(0)
    } else {
        json!({"bool": {"filter": clauses}})
    }
}

/// Any clause of `clauses` (one alone as itself).
fn any(mut clauses: Vec<Value>) -> Value {
    if clauses.len() == 1 {
        clauses.remove(0)
    } else {
        json!({"bool": {"should": clauses, "minimum_should_match": 1}})
    }
}

/// The query clause of `q`: its criteria and-ed as filters (they narrow, as the store's WHERE
/// does, and a filter is neither scored nor slower for being cached).
fn query(q: &Query) -> Result<Value, QueryError> {
    q.check()?;
    if q.subtree.is_some() {
        return Err(refuse(
            "subtree",
            "a process's descendants are known to the node's store only (its process table): run vigil tree or vigil timeline against the agent, or search Elasticsearch by --exec-id one process at a time",
        ));
    }
    let mut filter = Vec::new();
    if q.from_ns.is_some() || q.to_ns.is_some() {
        let mut range = Map::new();
        if let Some(from) = q.from_ns {
            range.insert("gte".into(), time(from));
        }
        if let Some(to) = q.to_ns {
            range.insert("lt".into(), time(to));
        }
        range.insert("format".into(), TIME_FORMAT.into());
        filter.push(json!({"range": {"@timestamp": range}}));
    }
    if !q.kinds.is_empty() {
        filter.push(kinds(&q.kinds)?);
    }
    if let Some(b) = &q.binary {
        // As the store: a path is the whole binary, a name its last component.
        let field = if b.contains('/') {
            "process.executable"
        } else {
            "process.name"
        };
        filter.push(term(field, b.as_str()));
    }
    if let Some(m) = &q.args {
        filter.push(args(m)?);
    }
    // The store reads a path, an address, a DNS name and a policy from policy events alone; an
    // alert's document carries them too, from the event it describes.
    if q.path.is_some()
        || q.dst.is_some()
        || q.dport.is_some()
        || q.dns.is_some()
        || q.policy.is_some()
    {
        filter.push(term("event.kind", "event"));
    }
    if let Some(m) = &q.path {
        filter.push(path(m)?);
    }
    if q.dst.is_some() || q.dport.is_some() {
        filter.push(peer(q.dst, q.dport));
    }
    if let Some(name) = q.dns_name() {
        filter.push(
            json!({"term": {"dns.question.name": {"value": name, "case_insensitive": true}}}),
        );
    }
    if let Some(pod) = &q.pod {
        filter.push(term("orchestrator.resource.type", "pod"));
        filter.push(term("orchestrator.resource.name", pod.as_str()));
    }
    if let Some(ns) = &q.namespace {
        filter.push(term("orchestrator.namespace", ns.as_str()));
    }
    if let Some(id) = &q.exec_id {
        filter.push(term("process.entity_id", id.as_str()));
    }
    if let Some(p) = &q.policy {
        filter.push(term("vigil.policy.policy_name", p.as_str()));
    }
    if let Some(r) = &q.rule {
        filter.push(any(vec![
            term("rule.id", r.as_str()),
            term("rule.name", r.as_str()),
        ]));
    }
    if let Some(s) = q.level.as_deref().and_then(severity) {
        filter.push(json!({"range": {"event.severity": {"gte": s}}}));
    }
    Ok(if filter.is_empty() {
        json!({"match_all": {}})
    } else {
        json!({"bool": {"filter": filter}})
    })
}

fn time(ns: u64) -> Value {
    Value::from(vigil_events::time::rfc3339(i128::from(ns)))
}

/// The event keys as ECS describes them. No field holds the key: an alert is
/// `event.kind: alert`; the other documents are `event`s, an exec's action `exec` and type
/// `start`, an exit's `end` and `end` (a policy event on a function of either name has type
/// `info`), and a policy event carries `vigil.policy`.
fn kinds(kinds: &[String]) -> Result<Value, QueryError> {
    let has = |k: &str| kinds.iter().any(|x| x == k);
    if has("process_kprobe") != has("process_lsm") {
        return Err(refuse(
            "type",
            "vigil's Elasticsearch documents do not say whether a policy event came from a kprobe or an LSM hook: ask for both (--type process_kprobe --type process_lsm) and narrow by --policy, or search the node's store",
        ));
    }
    let event = || term("event.kind", "event");
    let mut clauses = Vec::new();
    if has("process_exec") {
        clauses.push(all(vec![
            event(),
            term("event.action", "exec"),
            term("event.type", "start"),
        ]));
    }
    if has("process_exit") {
        clauses.push(all(vec![
            event(),
            term("event.action", "end"),
            term("event.type", "end"),
        ]));
    }
    if has("process_kprobe") {
        clauses.push(all(vec![event(), exists("vigil.policy")]));
    }
    if has("process_alert") {
        clauses.push(term("event.kind", "alert"));
    }
    Ok(any(clauses))
}

/// The arguments, in `process.command_line`: the binary, a space, the arguments (or the
/// binary alone). What follows the first space is the arguments the store matches, for every
/// binary whose path has no space.
fn args(m: &TextMatch) -> Result<Value, QueryError> {
    let rest = match m {
        TextMatch::Exact(t) => literal(t),
        TextMatch::Prefix(t) => format!("{}.*", literal(t)),
        TextMatch::Substring(t) => format!(".*{}.*", literal(t)),
        TextMatch::Regex(r) => unanchored("args", r)?,
    };
    Ok(json!({"regexp": {"process.command_line": {"value": format!("[^ ]* {rest}")}}}))
}

/// The path: the old name of a rename (its first path argument, the one the store keeps),
/// else `file.path`.
fn path(m: &TextMatch) -> Result<Value, QueryError> {
    let regexp = match m {
        TextMatch::Regex(r) => Some(unanchored("path", r)?),
        _ => None,
    };
    let on = |field: &str| match (m, &regexp) {
        (TextMatch::Exact(t), _) => term(field, t.as_str()),
        (TextMatch::Prefix(t), _) => json!({"prefix": {field: {"value": t}}}),
        (TextMatch::Substring(t), _) => {
            json!({"wildcard": {field: {"value": format!("*{}*", wildcard_literal(t))}}})
        }
        (TextMatch::Regex(_), r) => json!({"regexp": {field: {"value": r}}}),
    };
    Ok(any(vec![
        on("vigil.file.original_path"),
        json!({"bool": {
            "filter": [on("file.path")],
            "must_not": [exists("vigil.file.original_path")],
        }}),
    ]))
}

/// The socket's peer, the store's destination: `destination.*` of what the process opened or
/// sent, `source.*` of what it accepted or received (ECS's ingress), both from one socket.
fn peer(dst: Option<IpNet>, dport: Option<u16>) -> Value {
    let side = |s: &str| {
        let mut f = Vec::new();
        if let Some(net) = dst {
            // An ip field reads a CIDR range in a term.
            f.push(term(&format!("{s}.ip"), net.to_string()));
        }
        if let Some(port) = dport {
            f.push(term(&format!("{s}.port"), port));
        }
        f
    };
    let ingress = || term("network.direction", "ingress");
    let mut source = side("source");
    source.push(ingress());
    any(vec![
        json!({"bool": {"filter": side("destination"), "must_not": [ingress()]}}),
        json!({"bool": {"filter": source}}),
    ])
}

/// `text` literally in a `wildcard` pattern.
fn wildcard_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `c` literally in a Lucene regexp. A backslash makes any character literal except the
/// letters Lucene reads as classes (`\d`, `\s`, `\w`), so punctuation, and only punctuation,
/// is escaped: every operator, including the optional ones (`@ & < > ~ #`) Elasticsearch
/// enables by default, and `"`, which opens a quoted string.
fn push_literal(out: &mut String, c: char) {
    if c.is_ascii_punctuation() {
        out.push('\\');
    }
    out.push(c);
}

/// `text` literally in a Lucene regexp.
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        push_literal(&mut out, c);
    }
    out
}

/// A Rust regular expression searched anywhere in a value, as the Lucene regexp that matches
/// the whole value when it does: `.*(...).*`, without the `.*` on a side the pattern anchors
/// with `^` or `$`.
fn unanchored(field: &'static str, pattern: &str) -> Result<String, QueryError> {
    let node = Parser {
        field,
        chars: pattern.chars().collect(),
        pos: 0,
    }
    .parse()?;
    let mut items = match node {
        Node::Concat(items) => items,
        other => vec![other],
    };
    let start = matches!(items.first(), Some(Node::Start));
    if start {
        items.remove(0);
    }
    let end = matches!(items.last(), Some(Node::End));
    if end {
        items.pop();
    }
    let mut out = String::new();
    if !start {
        out.push_str(".*");
    }
    out.push('(');
    emit(field, &Node::Concat(items), &mut out)?;
    out.push(')');
    if !end {
        out.push_str(".*");
    }
    Ok(out)
}

/// A parsed Rust regular expression, of the constructs Lucene's regexp can say.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Literal(char),
    /// `.`: any character but a newline.
    Dot,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Group(Box<Node>),
    Concat(Vec<Node>),
    Alternation(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
    },
    Start,
    End,
}

/// What the refusals say of Lucene's regexp.
const LUCENE: &str = "Elasticsearch's regular expressions (Lucene's)";

struct Parser {
    field: &'static str,
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn refuse(&self, reason: String) -> QueryError {
        refuse(self.field, reason)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek2(&self) -> Option<char> {
        self.chars.get(self.pos + 1).copied()
    }

    fn next(&mut self) -> Result<char, QueryError> {
        let c = self
            .peek()
            .ok_or_else(|| self.refuse("the regular expression ends too early".into()))?;
        self.pos += 1;
        Ok(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn parse(mut self) -> Result<Node, QueryError> {
        let node = self.alternation()?;
        if self.pos < self.chars.len() {
            return Err(self.refuse("an unbalanced `)`".into()));
        }
        Ok(node)
    }

    fn alternation(&mut self) -> Result<Node, QueryError> {
        let mut branches = vec![self.concat()?];
        while self.eat('|') {
            branches.push(self.concat()?);
        }
        Ok(if branches.len() == 1 {
            branches.remove(0)
        } else {
            Node::Alternation(branches)
        })
    }

    fn concat(&mut self) -> Result<Node, QueryError> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            items.push(self.quantifiers(atom)?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Node::Concat(items)
        })
    }

    fn atom(&mut self) -> Result<Node, QueryError> {
        Ok(match self.next()? {
            '(' => {
                if self.eat('?') {
                    self.group_prefix()?;
                }
                let inner = self.alternation()?;
                if !self.eat(')') {
                    return Err(self.refuse("an unclosed `(`".into()));
                }
                Node::Group(Box::new(inner))
            }
            '[' => self.class()?,
            '.' => Node::Dot,
            '^' => Node::Start,
            '$' => Node::End,
            '\\' => Node::Literal(self.escape()?),
            c @ ('*' | '+' | '?' | '{') => {
                return Err(self.refuse(format!("`{c}` repeats nothing")));
            }
            c => Node::Literal(c),
        })
    }

    /// After `(?`: a non-capturing or named group is a group to Lucene; flags are refused.
    fn group_prefix(&mut self) -> Result<(), QueryError> {
        if self.eat(':') {
            return Ok(());
        }
        // `(?P<name>` and `(?<name>`.
        self.eat('P');
        if self.eat('<') {
            while self.next()? != '>' {}
            return Ok(());
        }
        Err(self.refuse(format!(
            "flags such as (?i) or (?s): {LUCENE} have none; write both cases as a class ([Cc]url), and a newline as \\n beside . where it may occur ((.|\\n)*)"
        )))
    }

    fn quantifiers(&mut self, mut atom: Node) -> Result<Node, QueryError> {
        loop {
            let (min, max) = match self.peek() {
                Some('*') => (0, None),
                Some('+') => (1, None),
                Some('?') => (0, Some(1)),
                Some('{') => (0, None),
                _ => return Ok(atom),
            };
            let (min, max) = if self.next()? == '{' {
                self.counted()?
            } else {
                (min, max)
            };
            // A lazy quantifier matches the values a greedy one matches: laziness moves where
            // a match ends, and a search asks only whether there is one.
            self.eat('?');
            atom = Node::Repeat {
                node: Box::new(atom),
                min,
                max,
            };
        }
    }

    /// `{n}`, `{n,}`, `{n,m}` (after the `{`, through the `}`).
    fn counted(&mut self) -> Result<(u32, Option<u32>), QueryError> {
        let mut text = String::new();
        loop {
            match self.next()? {
                '}' => break,
                c => text.push(c),
            }
        }
        let bad = || self.refuse(format!("`{{{text}}}` is not a repetition"));
        let num = |s: &str| s.trim().parse::<u32>().map_err(|_| bad());
        Ok(match text.split_once(',') {
            None => {
                let n = num(&text)?;
                (n, Some(n))
            }
            Some((lo, hi)) => {
                let lo = if lo.trim().is_empty() { 0 } else { num(lo)? };
                let hi = if hi.trim().is_empty() {
                    None
                } else {
                    Some(num(hi)?)
                };
                (lo, hi)
            }
        })
    }

    /// The character an escape stands for (after the `\`).
    fn escape(&mut self) -> Result<char, QueryError> {
        let c = self.next()?;
        Ok(match c {
            'd' | 'D' | 'w' | 'W' | 's' | 'S' => {
                return Err(self.refuse(format!(
                    "`\\{c}` is a Unicode class in Rust's syntax, and {LUCENE} have no Unicode classes: write the characters you mean as a class, such as [0-9] for digits, [A-Za-z0-9_] for word characters, [ \\t\\n] for spaces"
                )))
            }
            'p' | 'P' => {
                return Err(self.refuse(format!(
                    "`\\{c}` names a Unicode property, and {LUCENE} have none: list the characters as a class ([A-Za-z])"
                )))
            }
            'b' | 'B' | 'A' | 'z' | '<' | '>' => {
                return Err(self.refuse(format!(
                    "`\\{c}` is an assertion, and {LUCENE} have none: they match whole values; begin the pattern with ^ or end it with $ to anchor it there"
                )))
            }
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'f' => '\x0c',
            'v' => '\x0b',
            'a' => '\x07',
            'x' => self.hex(2)?,
            'u' => self.hex(4)?,
            'U' => self.hex(8)?,
            c if c.is_ascii_punctuation() => c,
            c => {
                return Err(self.refuse(format!(
                    "`\\{c}` has no counterpart in {LUCENE}: write the character itself"
                )))
            }
        })
    }

    /// `\x7F`, `\x{7F}` and the like: `digits` hex digits, or any number in braces.
    fn hex(&mut self, digits: usize) -> Result<char, QueryError> {
        let mut text = String::new();
        if self.eat('{') {
            loop {
                match self.next()? {
                    '}' => break,
                    c => text.push(c),
                }
            }
        } else {
            for _ in 0..digits {
                text.push(self.next()?);
            }
        }
        u32::from_str_radix(&text, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| self.refuse(format!("`{text}` is not a character's hex code")))
    }

    /// A class, after its `[`: characters and ranges, negated or not. Nested classes, POSIX
    /// classes and set operations are refused.
    fn class(&mut self) -> Result<Node, QueryError> {
        let negated = self.eat('^');
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let c = self.next()?;
            match (c, self.peek()) {
                (']', _) if !first => break,
                ('[', _) => {
                    return Err(self.refuse(format!(
                        "nested and POSIX classes ([[:alpha:]], [a[bc]]): {LUCENE} have flat classes only; list the characters in one class ([A-Za-z])"
                    )))
                }
                ('&', Some('&')) | ('-', Some('-')) | ('~', Some('~')) => {
                    return Err(self.refuse(format!(
                        "class operations (&&, --, ~~): {LUCENE} have none; list the characters that remain in one class"
                    )))
                }
                _ => {}
            }
            first = false;
            let lo = if c == '\\' { self.escape()? } else { c };
            if self.peek() == Some('-') && self.peek2() == Some('-') {
                return Err(self.refuse(format!(
                    "class operations (&&, --, ~~): {LUCENE} have none; list the characters that remain in one class"
                )));
            }
            let hi = if self.peek() == Some('-') && !matches!(self.peek2(), Some(']') | None) {
                self.pos += 1;
                match self.next()? {
                    '\\' => self.escape()?,
                    '[' => {
                        return Err(self.refuse(format!(
                            "a range ending in a class: {LUCENE} have flat classes only"
                        )))
                    }
                    h => h,
                }
            } else {
                lo
            };
            ranges.push((lo, hi));
        }
        Ok(Node::Class { negated, ranges })
    }
}

fn push_class_char(out: &mut String, c: char) {
    // In a Lucene class as outside: a backslash makes punctuation literal (`]`, `-`, `^`, `\`).
    push_literal(out, c);
}

/// `node` in Lucene's syntax.
fn emit(field: &'static str, node: &Node, out: &mut String) -> Result<(), QueryError> {
    match node {
        Node::Literal(c) => push_literal(out, *c),
        // Lucene's `.` is any character; Rust's leaves out the newline.
        Node::Dot => out.push_str("[^\n]"),
        Node::Class { negated, ranges } => {
            out.push('[');
            if *negated {
                out.push('^');
            }
            for (lo, hi) in ranges {
                push_class_char(out, *lo);
                if hi != lo {
                    out.push('-');
                    push_class_char(out, *hi);
                }
            }
            out.push(']');
        }
        Node::Group(inner) => {
            out.push('(');
            emit(field, inner, out)?;
            out.push(')');
        }
        // Lucene has no empty expression but `()`.
        Node::Concat(items) if items.is_empty() => out.push_str("()"),
        Node::Concat(items) => {
            for n in items {
                emit(field, n, out)?;
            }
        }
        Node::Alternation(branches) => {
            for (i, b) in branches.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                emit(field, b, out)?;
            }
        }
        Node::Repeat { node, min, max } => {
            let single = matches!(
                **node,
                Node::Literal(_) | Node::Dot | Node::Class { .. } | Node::Group(_)
            );
            if !single {
                out.push('(');
            }
            emit(field, node, out)?;
            if !single {
                out.push(')');
            }
            match (min, max) {
                (0, None) => out.push('*'),
                (1, None) => out.push('+'),
                (0, Some(1)) => out.push('?'),
                (n, None) => out.push_str(&format!("{{{n},}}")),
                (n, Some(m)) if n == m => out.push_str(&format!("{{{n}}}")),
                (n, Some(m)) => out.push_str(&format!("{{{n},{m}}}")),
            }
        }
        Node::Start | Node::End => {
            return Err(refuse(
                field,
                format!(
                    "{LUCENE} have no anchors: they match whole values. vigil anchors a pattern that begins with ^ or ends with $ outside any group or alternation; elsewhere ^ and $ cannot be said (write two searches for ^a|^b)"
                ),
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse_dst;

    fn filters(q: Query) -> Vec<Value> {
        let body = search_body(&q).unwrap();
        body["query"]["bool"]["filter"]
            .as_array()
            .unwrap_or_else(|| panic!("no filter: {body}"))
            .clone()
    }

    fn only(q: Query) -> Value {
        let f = filters(q);
        assert_eq!(f.len(), 1, "{f:#?}");
        f[0].clone()
    }

    fn regexp(field: &'static str, r: &str) -> Result<String, QueryError> {
        unanchored(field, r)
    }

    #[test]
    fn no_criterion_matches_all_newest_first_and_the_limit_is_the_size() {
        let body = search_body(&Query::default()).unwrap();
        assert_eq!(
            body,
            json!({"query": {"match_all": {}}, "size": 1000, "sort": [{"@timestamp": {"order": "desc"}}]})
        );
        let q = Query {
            limit: Some(5),
            ..Default::default()
        };
        assert_eq!(search_body(&q).unwrap()["size"], 5);
        assert_eq!(count_body(&q).unwrap(), json!({"query": {"match_all": {}}}));
    }

    #[test]
    fn more_hits_than_elasticsearch_returns_are_refused_by_the_limit() {
        let q = Query {
            limit: Some(MAX_RESULT_WINDOW + 1),
            ..Default::default()
        };
        let e = search_body(&q).unwrap_err();
        assert_eq!(e.field, "limit");
        assert!(e.reason.contains("--count"), "{e}");
        assert!(count_body(&q).is_ok(), "a count has no size");
    }

    #[test]
    fn the_time_range_keeps_its_nanoseconds_from_inclusive_to_exclusive() {
        let q = Query {
            from_ns: Some(1_795_600_800_123_456_789),
            to_ns: Some(1_795_600_801_000_000_001),
            ..Default::default()
        };
        assert_eq!(
            only(q),
            json!({"range": {"@timestamp": {
                "gte": "2026-11-25T10:00:00.123456789Z",
                "lt": "2026-11-25T10:00:01.000000001Z",
                "format": "strict_date_optional_time_nanos"
            }}})
        );
        let q = Query {
            to_ns: Some(0),
            ..Default::default()
        };
        assert_eq!(
            only(q)["range"]["@timestamp"],
            json!({"lt": "1970-01-01T00:00:00.000000000Z", "format": "strict_date_optional_time_nanos"})
        );
    }

    #[test]
    fn event_types_are_told_apart_by_the_ecs_categorization() {
        let q = |kinds: &[&str]| Query {
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(
            only(q(&["process_exec"])),
            json!({"bool": {"filter": [
                {"term": {"event.kind": "event"}},
                {"term": {"event.action": "exec"}},
                {"term": {"event.type": "start"}}
            ]}})
        );
        assert_eq!(
            only(q(&["process_alert"])),
            json!({"term": {"event.kind": "alert"}})
        );
        assert_eq!(
            only(q(&["process_exit", "process_kprobe", "process_lsm"])),
            json!({"bool": {"should": [
                {"bool": {"filter": [
                    {"term": {"event.kind": "event"}},
                    {"term": {"event.action": "end"}},
                    {"term": {"event.type": "end"}}
                ]}},
                {"bool": {"filter": [
                    {"term": {"event.kind": "event"}},
                    {"exists": {"field": "vigil.policy"}}
                ]}}
            ], "minimum_should_match": 1}})
        );
        for alone in ["process_kprobe", "process_lsm"] {
            let e = search_body(&q(&[alone])).unwrap_err();
            assert_eq!(e.field, "type");
            assert!(e
                .reason
                .contains("--type process_kprobe --type process_lsm"));
        }
    }

    #[test]
    fn a_binary_is_a_path_or_a_name() {
        let q = |b: &str| Query {
            binary: Some(b.into()),
            ..Default::default()
        };
        assert_eq!(
            only(q("/usr/bin/curl")),
            json!({"term": {"process.executable": "/usr/bin/curl"}})
        );
        assert_eq!(only(q("curl")), json!({"term": {"process.name": "curl"}}));
    }

    #[test]
    fn arguments_are_what_follows_the_binary_in_the_command_line() {
        let q = |m: TextMatch| Query {
            args: Some(m),
            ..Default::default()
        };
        let value = |m: TextMatch| {
            let c = only(q(m));
            c["regexp"]["process.command_line"]["value"]
                .as_str()
                .unwrap_or_else(|| panic!("{c}"))
                .to_string()
        };
        assert_eq!(
            value(TextMatch::Exact("-s a.b@c".into())),
            "[^ ]* \\-s a\\.b\\@c"
        );
        assert_eq!(
            value(TextMatch::Prefix("-c \"x\"".into())),
            "[^ ]* \\-c \\\"x\\\".*"
        );
        assert_eq!(
            value(TextMatch::Substring("10.0.0.1 <&~#>".into())),
            "[^ ]* .*10\\.0\\.0\\.1 \\<\\&\\~\\#\\>.*"
        );
        assert_eq!(
            value(TextMatch::Regex("^-c .*curl$".into())),
            "[^ ]* (\\-c [^\n]*curl)"
        );
    }

    #[test]
    fn a_path_is_the_first_path_argument_also_of_a_rename() {
        let q = |m: TextMatch| Query {
            path: Some(m),
            ..Default::default()
        };
        let f = filters(q(TextMatch::Exact("/etc/shadow".into())));
        assert_eq!(
            f,
            vec![
                json!({"term": {"event.kind": "event"}}),
                json!({"bool": {"should": [
                    {"term": {"vigil.file.original_path": "/etc/shadow"}},
                    {"bool": {
                        "filter": [{"term": {"file.path": "/etc/shadow"}}],
                        "must_not": [{"exists": {"field": "vigil.file.original_path"}}]
                    }}
                ], "minimum_should_match": 1}}),
            ]
        );
        let on_path =
            |m: TextMatch| filters(q(m))[1]["bool"]["should"][1]["bool"]["filter"][0].clone();
        assert_eq!(
            on_path(TextMatch::Prefix("/etc/".into())),
            json!({"prefix": {"file.path": {"value": "/etc/"}}})
        );
        assert_eq!(
            on_path(TextMatch::Substring("a*b?c\\d".into())),
            json!({"wildcard": {"file.path": {"value": "*a\\*b\\?c\\\\d*"}}})
        );
        assert_eq!(
            on_path(TextMatch::Regex("shadow|passwd".into())),
            json!({"regexp": {"file.path": {"value": ".*(shadow|passwd).*"}}})
        );
    }

    #[test]
    fn a_destination_is_the_sockets_peer_whichever_way_it_was_opened() {
        let q = Query {
            dst: Some(parse_dst("10.200.0.0/16").unwrap()),
            dport: Some(8080),
            ..Default::default()
        };
        assert_eq!(
            filters(q),
            vec![
                json!({"term": {"event.kind": "event"}}),
                json!({"bool": {"should": [
                    {"bool": {
                        "filter": [
                            {"term": {"destination.ip": "10.200.0.0/16"}},
                            {"term": {"destination.port": 8080}}
                        ],
                        "must_not": [{"term": {"network.direction": "ingress"}}]
                    }},
                    {"bool": {"filter": [
                        {"term": {"source.ip": "10.200.0.0/16"}},
                        {"term": {"source.port": 8080}},
                        {"term": {"network.direction": "ingress"}}
                    ]}}
                ], "minimum_should_match": 1}}),
            ]
        );
        let q = Query {
            dst: Some(parse_dst("fd00::1").unwrap()),
            ..Default::default()
        };
        assert_eq!(
            filters(q)[1]["bool"]["should"][0]["bool"]["filter"],
            json!([{"term": {"destination.ip": "fd00::1/128"}}])
        );
    }

    #[test]
    fn a_dns_name_ignores_case_and_the_trailing_dot() {
        let q = Query {
            dns: Some("Example.TEST.".into()),
            ..Default::default()
        };
        assert_eq!(
            filters(q),
            vec![
                json!({"term": {"event.kind": "event"}}),
                json!({"term": {"dns.question.name": {"value": "example.test", "case_insensitive": true}}}),
            ]
        );
    }

    #[test]
    fn pod_namespace_and_exec_id_are_terms_on_the_process() {
        let q = Query {
            pod: Some("web-0".into()),
            namespace: Some("shop".into()),
            exec_id: Some("id-7".into()),
            ..Default::default()
        };
        assert_eq!(
            filters(q),
            vec![
                json!({"term": {"orchestrator.resource.type": "pod"}}),
                json!({"term": {"orchestrator.resource.name": "web-0"}}),
                json!({"term": {"orchestrator.namespace": "shop"}}),
                json!({"term": {"process.entity_id": "id-7"}}),
            ]
        );
    }

    #[test]
    fn a_subtree_is_the_node_stores_alone() {
        let q = Query {
            subtree: Some("id-7".into()),
            ..Default::default()
        };
        let e = search_body(&q).unwrap_err();
        assert_eq!(e.field, "subtree");
        assert!(e.reason.contains("vigil tree"), "{e}");
        assert_eq!(count_body(&q).unwrap_err().field, "subtree");
    }

    #[test]
    fn policy_rule_and_level_are_the_policy_events_and_the_alerts() {
        let q = Query {
            policy: Some("credential-files".into()),
            ..Default::default()
        };
        assert_eq!(
            filters(q),
            vec![
                json!({"term": {"event.kind": "event"}}),
                json!({"term": {"vigil.policy.policy_name": "credential-files"}}),
            ]
        );
        let q = Query {
            rule: Some("Shadow read".into()),
            level: Some("high".into()),
            ..Default::default()
        };
        assert_eq!(
            filters(q),
            vec![
                json!({"bool": {"should": [
                    {"term": {"rule.id": "Shadow read"}},
                    {"term": {"rule.name": "Shadow read"}}
                ], "minimum_should_match": 1}}),
                json!({"range": {"event.severity": {"gte": 73}}}),
            ]
        );
        let ranks: Vec<Option<u64>> = crate::query::LEVELS.iter().map(|l| severity(l)).collect();
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{ranks:?}");
        assert_eq!(severity("severe"), None);
    }

    #[test]
    fn a_query_the_store_refuses_is_refused_here_too() {
        let q = Query {
            args: Some(TextMatch::Regex("(".into())),
            ..Default::default()
        };
        assert_eq!(search_body(&q).unwrap_err().field, "args");
    }

    #[test]
    fn regular_expressions_become_lucenes_over_the_whole_value() {
        for (rust, lucene) in [
            ("curl", ".*(curl).*"),
            ("^/usr/", "(\\/usr\\/).*"),
            ("\\.sh$", ".*(\\.sh)"),
            ("^$", "(())"),
            ("a|b", ".*(a|b).*"),
            ("(?:ab)+c{2,}d{3}e{1,4}?", ".*((ab)+c{2,}d{3}e{1,4}).*"),
            ("(?P<n>x)(?<m>y)", ".*((x)(y)).*"),
            ("[^a-z\\]-]", ".*([^a-z\\]\\-]).*"),
            ("[]x]", ".*([\\]x]).*"),
            ("a.b", ".*(a[^\n]b).*"),
            ("\\t\\x41\\u{263A}", ".*(\tA\u{263a}).*"),
            ("x*?", ".*(x*).*"),
            ("a**", ".*((a*)*).*"),
            ("ab*", ".*(ab*).*"),
            ("x|", ".*(x|()).*"),
            ("[a-]@\"#", ".*([a\\-]\\@\\\"\\#).*"),
        ] {
            assert_eq!(regexp("path", rust).as_deref(), Ok(lucene), "{rust}");
        }
    }

    #[test]
    fn constructs_lucene_lacks_are_refused_with_what_to_write() {
        for (rust, says) in [
            ("\\d+", "[0-9]"),
            ("\\w", "[A-Za-z0-9_]"),
            ("\\s", "[ \\t\\n]"),
            ("\\S", "Unicode class"),
            ("\\bcurl\\b", "assertion"),
            ("\\Acurl", "assertion"),
            ("a^b", "no anchors"),
            ("(^a)", "no anchors"),
            ("^a|^b", "two searches"),
            ("x$y", "no anchors"),
            ("(?i)curl", "[Cc]url"),
            ("(?s:.)", "flags"),
            ("\\p{Greek}", "Unicode property"),
            ("\\pL", "Unicode property"),
            ("[[:alpha:]]", "flat classes"),
            ("[a-z&&[^x]]", "class operations"),
            ("[a--b]", "class operations"),
        ] {
            let e = regexp("args", rust).unwrap_err();
            assert_eq!(e.field, "args");
            assert!(e.reason.contains(says), "{rust}: {e}");
        }
        let q = Query {
            path: Some(TextMatch::Regex("\\d".into())),
            ..Default::default()
        };
        assert_eq!(search_body(&q).unwrap_err().field, "path");
    }

    #[test]
    fn the_translation_means_what_rust_means_on_sample_values() {
        // Lucene's reading, by a regular expression over the same language: the translation's
        // escapes and classes spelled back in Rust's syntax.
        fn back(lucene: &str) -> String {
            let mut out = String::from("^(?s:");
            let mut chars = lucene.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        let n = chars.next().unwrap();
                        out.push_str(&regex::escape(&n.to_string()));
                    }
                    '.' => out.push_str("(?s:.)"),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push_str(")$");
            out
        }
        let values = [
            "curl -s http://10.0.0.1/",
            "/usr/bin/x\ny",
            "ab\nc",
            "",
            "a.sh",
            "b]-",
            "@\"#",
        ];
        for rust in [
            "curl", "^/usr/", "\\.sh$", "b.c", "a.*c", "[^a-z]", "[]\\-]", "^$", "@\"#", "x|",
        ] {
            let lucene = regexp("args", rust).unwrap();
            let r = regex::Regex::new(rust).unwrap();
            let l = regex::Regex::new(&back(&lucene)).unwrap();
            for v in values {
                assert_eq!(r.is_match(v), l.is_match(v), "{rust} as {lucene} on {v:?}");
            }
        }
    }
}
