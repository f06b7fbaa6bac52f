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

mod lucene;

use crate::query::{level_rank, Query, QueryError, TextMatch};
use lucene::{literal, unanchored, wildcard_literal};

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
    // A uprobe's event is the one policy event that names a symbol.
    if has("process_kprobe") {
        clauses.push(json!({"bool": {
            "filter": [event(), exists("vigil.policy")],
            "must_not": [exists("vigil.policy.symbol")],
        }}));
    }
    if has("process_uprobe") {
        clauses.push(all(vec![event(), exists("vigil.policy.symbol")]));
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

#[cfg(test)]
mod tests;
