//! An Elasticsearch for tests (there is no installable one here), speaking real HTTP with
//! `Authorization: ApiKey <key>` (401 otherwise). It serves:
//!
//! - `PUT /_index_template/<name>`: installs a template (the newest matching an index, by
//!   priority, maps its fields);
//! - `POST /_bulk` with `create` actions, with the partial failures of a real bulk response: a
//!   document holding `es-retry-me` gets a 429 item the first time it is seen, one holding
//!   `es-reject-me` a 400 `mapper_parsing_exception`. A test can also queue crafted bulk
//!   responses ([`ElasticServer::respond_next`], [`ElasticServer::respond_next_raw`] for any
//!   status and bytes), answered (in order) instead of the real ones, to play a broken or
//!   hostile server;
//! - `POST` or `GET /<target>/_search` and `/<target>/_count` (`/_search` for every index),
//!   the target an index or data stream, a `*` pattern or a comma list of them (404
//!   `index_not_found_exception` for a name that is not there). The query is checked as a strict
//!   cluster checks it and evaluated over the stored documents with Elasticsearch's semantics
//!   (`elastic_query.rs`: the clauses, types and refusals); `_search` reads `query`, `size`,
//!   `from` and `sort` (refusing `from + size` above 10000, `index.max_result_window`) and
//!   answers hits sorted and cut as asked, `_count` reads `query` and answers `{"count": N}`.
//!   Every body is kept ([`ElasticServer::searches`]) so a test can say what DSL arrived.
//!
//! Every document is checked as a strict cluster would: against the ECS definitions of the
//! fields vigil writes (names, types, allowed values: `vigil_exporters::sinks::ecs::spec`), and
//! each of its fields outside `vigil.*` against the installed template's mappings. A document
//! that fails is refused with a 400 `mapper_parsing_exception` item naming what is wrong, and
//! kept in [`ElasticServer::violations`]. Fields under `vigil.*` are mapped as the template's
//! dynamic mapping maps them, by the first stored document that has them.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use serde_json::{json, Value};

use super::http::{self, HttpServer};

// Beside this file whoever includes it: a path relative to this file's directory.
#[path = "elastic_query.rs"]
mod query;

use query::{EsError, FieldType, Lookup};

#[derive(Default)]
struct Shared {
    api_key: String,
    templates: Mutex<Vec<(String, Value)>>,
    docs: Mutex<Vec<(String, Value)>>,
    seen_retry: Mutex<HashSet<String>>,
    bulk_requests: Mutex<usize>,
    crafted: Mutex<std::collections::VecDeque<(u16, String)>>,
    violations: Mutex<Vec<(Value, Vec<String>)>>,
    searches: Mutex<Vec<(String, Value)>>,
}

/// The leaf field paths of `doc` outside `vigil.*` (an array of objects is one field).
fn leaves(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v.as_object() {
        Some(o) if !o.is_empty() => {
            for (k, v) in o {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if path != "vigil" {
                    leaves(&path, v, out);
                }
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// The template's mapping node of `path` in its `mappings.properties`.
fn mapping<'a>(template: &'a Value, path: &str) -> Option<&'a Value> {
    let mut at = &template["template"]["mappings"]["properties"];
    for (i, part) in path.split('.').enumerate() {
        if i > 0 {
            at = &at["properties"];
        }
        at = &at[part];
        if at.is_null() {
            return None;
        }
    }
    Some(at)
}

/// The type the template's `mappings.properties` give `path`, if they map it.
fn mapped(template: &Value, path: &str) -> Option<FieldType> {
    let m = mapping(template, path)?;
    Some(FieldType {
        ty: m.get("type")?.as_str()?.to_string(),
        ignore_above: m["ignore_above"].as_u64().map(|n| n as usize),
    })
}

/// What a strict cluster would refuse in `doc`, written with the newest template.
fn check(shared: &Shared, doc: &Value) -> Vec<String> {
    let mut problems = vigil_exporters::sinks::ecs::spec::violations(doc);
    if let Some((_, template)) = shared.templates.lock().unwrap().last() {
        let mut fields = Vec::new();
        leaves("", doc, &mut fields);
        for f in fields {
            if mapped(template, &f).is_none() {
                problems.push(format!("{f}: the index template does not map it"));
            }
        }
    } else {
        problems.push("a document before any index template".into());
    }
    problems
}

/// Whether `name` matches an index pattern, whose `*` is any text.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len()).any(|i| {
                    name.is_char_boundary(head.len() + i) && glob(tail, &name[head.len() + i..])
                })
        }
    }
}

/// The template that maps `index`: of those whose patterns match it the highest priority,
/// the newest of equals.
fn template_for<'a>(templates: &'a [(String, Value)], index: &str) -> Option<&'a Value> {
    templates
        .iter()
        .filter(|(_, t)| {
            t["index_patterns"]
                .as_array()
                .is_some_and(|p| p.iter().filter_map(Value::as_str).any(|p| glob(p, index)))
        })
        .max_by_key(|(_, t)| t["priority"].as_u64().unwrap_or(0))
        .map(|(_, t)| t)
}

/// The type dynamic mapping gives `v` under `template`: its string rule
/// (`strings_as_keyword`), else Elasticsearch's defaults.
fn dynamic_type(template: Option<&Value>, v: &Value) -> FieldType {
    let plain = |ty: &str| FieldType {
        ty: ty.into(),
        ignore_above: None,
    };
    match v {
        Value::String(_) => template
            .and_then(|t| t["template"]["mappings"]["dynamic_templates"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_object()?.values().next())
            .find(|d| d["match_mapping_type"] == "string")
            .map(|d| FieldType {
                ty: d["mapping"]["type"].as_str().unwrap_or("text").into(),
                ignore_above: d["mapping"]["ignore_above"].as_u64().map(|n| n as usize),
            })
            .unwrap_or_else(|| plain("text")),
        Value::Number(n) if n.is_f64() => plain("float"),
        Value::Number(_) => plain("long"),
        Value::Bool(_) => plain("boolean"),
        _ => plain("object"),
    }
}

/// The indices a search's target names, among those holding documents.
fn indices(shared: &Shared, target: &str) -> Result<Vec<String>, EsError> {
    let mut known: Vec<String> = shared
        .docs
        .lock()
        .unwrap()
        .iter()
        .map(|(i, _)| i.clone())
        .collect();
    known.sort();
    known.dedup();
    let mut out = Vec::new();
    for part in target.split(',') {
        if part.contains('*') || part == "_all" {
            let pattern = if part == "_all" { "*" } else { part };
            out.extend(known.iter().filter(|i| glob(pattern, i)).cloned());
        } else if known.iter().any(|i| i == part) {
            out.push(part.to_string());
        } else {
            return Err(EsError {
                status: 404,
                kind: "index_not_found_exception",
                reason: format!("no such index [{part}]"),
            });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `_search` and `_count` at `path` (`/<target>/_search?...`).
fn search(shared: &Shared, path: &str, body: &[u8]) -> (u16, String) {
    let parsed: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
    };
    shared
        .searches
        .lock()
        .unwrap()
        .push((path.to_string(), parsed.clone()));
    match answer(shared, path, &parsed) {
        Ok(v) => (200, v.to_string()),
        Err(e) => (e.status, e.body()),
    }
}

fn answer(shared: &Shared, path: &str, body: &Value) -> Result<Value, EsError> {
    let path = path.split('?').next().unwrap_or(path);
    let (target, count) = match path.rsplit_once('/') {
        Some((target, "_count")) => (target, true),
        Some((target, _)) => (target, false),
        None => (path, false),
    };
    let target = match target.trim_start_matches('/') {
        "" => "_all",
        t => t,
    };
    let o = body
        .as_object()
        .ok_or_else(|| EsError::parsing("the request body must be a JSON object"))?;
    let allowed: &[&str] = if count {
        &["query"]
    } else {
        &["query", "size", "from", "sort", "track_total_hits"]
    };
    if let Some((k, v)) = o.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        let kind = match v {
            Value::Object(_) => "START_OBJECT",
            Value::Array(_) => "START_ARRAY",
            _ => "VALUE",
        };
        return Err(EsError::parsing(format!(
            "Unknown key for a {kind} in [{k}]."
        )));
    }
    let indices = indices(shared, target)?;
    let templates = shared.templates.lock().unwrap().clone();
    let docs: Vec<(usize, String, Value)> = shared
        .docs
        .lock()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, (i, _))| indices.contains(i))
        .map(|(n, (i, d))| (n, i.clone(), d.clone()))
        .collect();
    let lookup = |field: &str| -> Lookup {
        // No index, no shard to check a field against: Elasticsearch answers no hits.
        if indices.is_empty() {
            return Lookup::NotYet;
        }
        for index in &indices {
            if let Some(t) = template_for(&templates, index) {
                if let Some(ty) = mapped(t, field) {
                    return Lookup::Mapped(ty);
                }
                if mapping(t, field).is_some_and(|m| m.get("properties").is_some()) {
                    return Lookup::Mapped(FieldType {
                        ty: "object".into(),
                        ignore_above: None,
                    });
                }
            }
        }
        // Under vigil.* the template's dynamic mapping maps what the documents bring.
        if field == "vigil" || field.starts_with("vigil.") {
            return docs
                .iter()
                .find_map(|(_, index, d)| {
                    let v = query::values(d, field).into_iter().next()?;
                    Some(Lookup::Mapped(dynamic_type(
                        template_for(&templates, index),
                        v,
                    )))
                })
                .unwrap_or(Lookup::NotYet);
        }
        Lookup::Unmapped
    };
    let clause = match o.get("query") {
        Some(q) => query::compile(q, &lookup)?,
        None => query::Clause::MatchAll,
    };
    let mut hits: Vec<&(usize, String, Value)> = docs
        .iter()
        .filter(|(_, _, d)| query::matches(&clause, d))
        .collect();
    if count {
        return Ok(
            json!({"count": hits.len(), "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}),
        );
    }
    let number = |key: &str, default: u64| match o.get(key) {
        None => Ok(default),
        Some(v) => v.as_u64().ok_or_else(|| {
            EsError::parsing(format!("[{key}] must be a non-negative integer, not {v}"))
        }),
    };
    let (size, from) = (number("size", 10)?, number("from", 0)?);
    if size + from > 10_000 {
        return Err(EsError {
            status: 400,
            kind: "illegal_argument_exception",
            reason: format!("Result window is too large, from + size must be less than or equal to: [10000] but was [{}]. See the scroll api for a more efficient way to request large data sets. This limit can be set by changing the [index.max_result_window] index level setting.", size + from),
        });
    }
    let sort = match o.get("sort") {
        Some(s) => query::compile_sort(s, &lookup)?,
        None => Vec::new(),
    };
    // Stable: equal keys keep the order the documents were indexed in, as Lucene's doc ids do.
    hits.sort_by(|(_, _, a), (_, _, b)| {
        for (field, desc) in &sort {
            let (ka, kb) = (query::sort_key(a, field), query::sort_key(b, field));
            let o = match (ka, kb) {
                // A document without the field sorts last either way.
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
                (Some(x), Some(y)) => {
                    let o = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
                    if *desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if o.is_ne() {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    let total = hits.len();
    let page: Vec<Value> = hits
        .into_iter()
        .skip(from as usize)
        .take(size as usize)
        .map(|(id, index, doc)| {
            let keys: Vec<Value> = sort
                .iter()
                .map(|(f, _)| match query::sort_key(doc, f) {
                    Some(query::Scalar::Time(t)) => json!(t),
                    Some(query::Scalar::Int(n)) => json!(n as i64),
                    Some(query::Scalar::Str(s)) => json!(s),
                    _ => Value::Null,
                })
                .collect();
            json!({"_index": index, "_id": id.to_string(), "_score": null, "_source": doc, "sort": keys})
        })
        .collect();
    // Elasticsearch counts exactly up to 10000 hits by default (`track_total_hits`).
    let (value, relation) = if total > 10_000 {
        (10_000, "gte")
    } else {
        (total, "eq")
    };
    Ok(json!({
        "took": 1,
        "timed_out": false,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {"total": {"value": value, "relation": relation}, "max_score": null, "hits": page}
    }))
}

/// The server.
pub struct ElasticServer {
    shared: Arc<Shared>,
    http: HttpServer,
}

fn bulk(shared: &Shared, body: &[u8]) -> (u16, String) {
    *shared.bulk_requests.lock().unwrap() += 1;
    if let Some(crafted) = shared.crafted.lock().unwrap().pop_front() {
        return crafted;
    }
    let text = String::from_utf8_lossy(body);
    let mut lines = text.lines().filter(|l| !l.is_empty());
    let mut items = Vec::new();
    let mut errors = false;
    while let (Some(action), Some(doc)) = (lines.next(), lines.next()) {
        let (Ok(action), Ok(doc)) = (
            serde_json::from_str::<Value>(action),
            serde_json::from_str::<Value>(doc),
        ) else {
            return (
                400,
                json!({"error": {"type": "parse_exception"}, "status": 400}).to_string(),
            );
        };
        let Some(index) = action["create"]["_index"].as_str().map(str::to_string) else {
            return (
                400,
                json!({"error": {"type": "action_request_validation_exception"}, "status": 400})
                    .to_string(),
            );
        };
        let raw = doc.to_string();
        let problems = check(shared, &doc);
        let status = if raw.contains("es-reject-me") {
            400
        } else if !problems.is_empty() {
            shared
                .violations
                .lock()
                .unwrap()
                .push((doc.clone(), problems.clone()));
            400
        } else if raw.contains("es-retry-me")
            && shared.seen_retry.lock().unwrap().insert(raw.clone())
        {
            429
        } else {
            shared.docs.lock().unwrap().push((index.clone(), doc));
            201
        };
        let mut item = json!({"_index": index, "status": status});
        if status >= 300 {
            errors = true;
            let reason = if problems.is_empty() {
                "test".to_string()
            } else {
                problems.join("; ")
            };
            item["error"] = json!({"type": if status == 429 { "es_rejected_execution_exception" } else { "mapper_parsing_exception" }, "reason": reason});
        }
        items.push(json!({"create": item}));
    }
    (
        200,
        json!({"took": 1, "errors": errors, "items": items}).to_string(),
    )
}

impl ElasticServer {
    /// Starts a server accepting `api_key`.
    pub fn start(api_key: &str) -> ElasticServer {
        let shared = Arc::new(Shared {
            api_key: api_key.to_string(),
            ..Default::default()
        });
        let s = shared.clone();
        let http = HttpServer::start(Arc::new(move |req: &http::Request| {
            if req.header("authorization") != Some(&format!("ApiKey {}", s.api_key)) {
                return (
                    401,
                    json!({"error": {"type": "security_exception"}, "status": 401}).to_string(),
                );
            }
            let mut parts = req.line.split(' ');
            match (parts.next(), parts.next()) {
                (Some("PUT"), Some(path)) if path.starts_with("/_index_template/") => {
                    let body = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                    let name = path.trim_start_matches("/_index_template/").to_string();
                    s.templates.lock().unwrap().push((name, body));
                    (200, json!({"acknowledged": true}).to_string())
                }
                (Some("POST"), Some("/_bulk")) => bulk(&s, &req.body),
                (Some("POST" | "GET"), Some(path))
                    if path
                        .split('?')
                        .next()
                        .is_some_and(|p| p.ends_with("/_search") || p.ends_with("/_count")) =>
                {
                    search(&s, path, &req.body)
                }
                _ => (
                    404,
                    json!({"error": "no handler", "status": 404}).to_string(),
                ),
            }
        }));
        ElasticServer { shared, http }
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        self.http.endpoint()
    }

    /// Documents stored, with their index.
    pub fn docs(&self) -> Vec<(String, Value)> {
        self.shared.docs.lock().unwrap().clone()
    }

    /// Index templates installed, by name.
    pub fn templates(&self) -> Vec<(String, Value)> {
        self.shared.templates.lock().unwrap().clone()
    }

    /// Answers the next `_bulk` request with `body` (status 200), storing nothing.
    pub fn respond_next(&self, body: Value) {
        self.respond_next_raw(200, body.to_string());
    }

    /// Answers the next `_bulk` request with `status` and `body`, whatever they are (a hostile
    /// server's), storing nothing.
    pub fn respond_next_raw(&self, status: u16, body: String) {
        self.shared
            .crafted
            .lock()
            .unwrap()
            .push_back((status, body));
    }

    /// Documents refused as a strict cluster would refuse them, with what is wrong.
    pub fn violations(&self) -> Vec<(Value, Vec<String>)> {
        self.shared.violations.lock().unwrap().clone()
    }

    /// The `_search` and `_count` requests received: their path and body (a body that is not
    /// JSON as a string).
    pub fn searches(&self) -> Vec<(String, Value)> {
        self.shared.searches.lock().unwrap().clone()
    }

    /// `_bulk` requests received.
    pub fn bulk_requests(&self) -> usize {
        *self.shared.bulk_requests.lock().unwrap()
    }
}
