//! An Elasticsearch for tests (there is no installable one here): `PUT /_index_template/<name>`
//! and `POST /_bulk` with `create` actions, `Authorization: ApiKey <key>` (401 otherwise), and
//! the partial failures of a real bulk response: a document holding `es-retry-me` gets a 429
//! item the first time it is seen, one holding `es-reject-me` a 400 `mapper_parsing_exception`.
//! A test can also queue crafted bulk responses ([`ElasticServer::respond_next`],
//! [`ElasticServer::respond_next_raw`] for any status and bytes), answered (in order) instead of
//! the real ones, to play a broken or hostile server.
//!
//! Every document is checked as a strict cluster would: against the ECS definitions of the
//! fields vigil writes (names, types, allowed values: `vigil_exporters::sinks::ecs::spec`), and
//! each of its fields outside `vigil.*` against the installed template's mappings. A document
//! that fails is refused with a 400 `mapper_parsing_exception` item naming what is wrong, and
//! kept in [`ElasticServer::violations`].

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use serde_json::{json, Value};

use super::http::{self, HttpServer};

#[derive(Default)]
struct Shared {
    api_key: String,
    templates: Mutex<Vec<(String, Value)>>,
    docs: Mutex<Vec<(String, Value)>>,
    seen_retry: Mutex<HashSet<String>>,
    bulk_requests: Mutex<usize>,
    crafted: Mutex<std::collections::VecDeque<(u16, String)>>,
    violations: Mutex<Vec<(Value, Vec<String>)>>,
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

/// Whether the template's `mappings.properties` map `path`.
fn mapped(template: &Value, path: &str) -> bool {
    let mut at = &template["template"]["mappings"]["properties"];
    for (i, part) in path.split('.').enumerate() {
        if i > 0 {
            at = &at["properties"];
        }
        at = &at[part];
        if at.is_null() {
            return false;
        }
    }
    at.get("type").is_some()
}

/// What a strict cluster would refuse in `doc`, written with the newest template.
fn check(shared: &Shared, doc: &Value) -> Vec<String> {
    let mut problems = vigil_exporters::sinks::ecs::spec::violations(doc);
    if let Some((_, template)) = shared.templates.lock().unwrap().last() {
        let mut fields = Vec::new();
        leaves("", doc, &mut fields);
        for f in fields {
            if !mapped(template, &f) {
                problems.push(format!("{f}: the index template does not map it"));
            }
        }
    } else {
        problems.push("a document before any index template".into());
    }
    problems
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

    /// `_bulk` requests received.
    pub fn bulk_requests(&self) -> usize {
        *self.shared.bulk_requests.lock().unwrap()
    }
}
