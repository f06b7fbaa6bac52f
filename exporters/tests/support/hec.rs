//! A Splunk HTTP Event Collector for tests (there is no installable Splunk here): it implements
//! the documented `/services/collector/event` endpoint, `Authorization: Splunk <token>` (401
//! without it, 403 with a wrong one), gzip bodies, batches of concatenated event envelopes (400
//! with code 12 when one has no `event`), 413 for bodies over a limit, injected 429/503, and
//! indexer acknowledgement (`X-Splunk-Request-Channel`, `ackId`, `/services/collector/ack`), with
//! a request whose events the indexer loses and never acknowledges. It
//! can be stopped (listener and open connections closed) and started again on the same port,
//! and it keeps every envelope and request it received.

use std::{
    collections::{HashMap, HashSet},
    io::Read,
    sync::{
        atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use serde_json::Value;

use super::http::{self, HttpServer};

/// One request as received.
#[derive(Debug, Clone)]
pub struct HecRequest {
    /// Header names (lower-cased) and values.
    pub headers: Vec<(String, String)>,
    /// The body as sent (compressed when it was).
    pub raw: Vec<u8>,
    /// The status answered.
    pub status: u16,
}

#[derive(Default)]
struct Shared {
    token: Mutex<String>,
    events: Mutex<Vec<Value>>,
    requests: Mutex<Vec<HecRequest>>,
    max_body: AtomicUsize,
    /// Answer this status to every request while non-zero.
    forced: AtomicU16,
    /// The body of the forced answer, when not the default one.
    forced_body: Mutex<Option<String>>,
    /// Envelopes whose event contains this are refused with 400.
    reject: Mutex<Option<String>>,
    /// Keep only each event's first argument (the tests' event id), to keep the server small.
    ids_only: AtomicBool,
    /// Indexer acknowledgement is on: requests need a channel and get an ackId.
    ack: AtomicBool,
    /// The ackId whose events the "indexer" loses: never indexed, never acknowledged.
    lose_ack: AtomicU64,
    /// Per channel, the last ackId given and the ackIds indexed.
    channels: Mutex<HashMap<String, (u64, HashSet<u64>)>>,
}

/// The server.
pub struct HecServer {
    shared: Arc<Shared>,
    http: HttpServer,
}

fn handle(shared: &Shared, req: &http::Request) -> (u16, String) {
    let (status, body) = answer(shared, req);
    let raw = if shared.ids_only.load(Ordering::SeqCst) {
        Vec::new() // small mode: bodies are not kept
    } else {
        req.body.clone()
    };
    shared.requests.lock().unwrap().push(HecRequest {
        headers: req.headers.clone(),
        raw,
        status,
    });
    (status, body)
}

/// Whether `fields` is what HEC indexes: an object of strings and arrays of strings.
fn flat_fields(fields: &Value) -> bool {
    fields.as_object().is_some_and(|m| {
        m.values()
            .all(|v| v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
    })
}

fn answer(shared: &Shared, req: &http::Request) -> (u16, String) {
    let (line, raw) = (&req.line, &req.body[..]);
    let header = |k: &str| req.header(k).map(str::to_string);
    let is_ack = line.starts_with("POST /services/collector/ack?channel=");
    if !line.starts_with("POST /services/collector/event ") && !is_ack {
        return (
            404,
            r#"{"text":"The requested URL was not found","code":404}"#.into(),
        );
    }
    let forced = shared.forced.load(Ordering::SeqCst);
    if forced != 0 {
        let body = shared.forced_body.lock().unwrap().clone();
        return (
            forced,
            body.unwrap_or_else(|| format!(r#"{{"text":"Server is busy","code":{forced}}}"#)),
        );
    }
    let token = shared.token.lock().unwrap().clone();
    match header("authorization") {
        None => return (401, r#"{"text":"Token is required","code":2}"#.into()),
        Some(a) if a != format!("Splunk {token}") => {
            return (403, r#"{"text":"Invalid token","code":4}"#.into())
        }
        _ => {}
    }
    let ack = shared.ack.load(Ordering::SeqCst);
    if is_ack {
        return acks(shared, line, raw);
    }
    let channel = header("x-splunk-request-channel");
    if ack && channel.is_none() {
        return (
            400,
            r#"{"text":"Data channel is missing","code":10}"#.into(),
        );
    }
    let max = shared.max_body.load(Ordering::SeqCst);
    if max > 0 && raw.len() > max {
        return (413, r#"{"text":"Content too large","code":413}"#.into());
    }
    let body = if header("content-encoding").as_deref() == Some("gzip") {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(raw)
            .read_to_end(&mut out)
            .is_err()
        {
            return (400, r#"{"text":"Invalid data format","code":6}"#.into());
        }
        out
    } else {
        raw.to_vec()
    };
    let mut envelopes = Vec::new();
    for v in serde_json::Deserializer::from_slice(&body).into_iter::<Value>() {
        match v {
            // Indexed fields are flat: strings, or arrays of strings (code 15 otherwise).
            Ok(v) if v.get("fields").is_some_and(|f| !flat_fields(f)) => {
                return (
                    400,
                    r#"{"text":"Error in handling indexed fields","code":15}"#.into(),
                )
            }
            Ok(v) if v.get("event").is_some() => envelopes.push(v),
            Ok(_) => {
                return (
                    400,
                    r#"{"text":"Event field is required","code":12}"#.into(),
                )
            }
            Err(_) => return (400, r#"{"text":"Invalid data format","code":6}"#.into()),
        }
    }
    if let Some(bad) = shared.reject.lock().unwrap().as_ref() {
        if envelopes
            .iter()
            .any(|e| e["event"].to_string().contains(bad.as_str()))
        {
            return (400, r#"{"text":"Invalid data format","code":6}"#.into());
        }
    }
    let mut reply = r#"{"text":"Success","code":0}"#.to_string();
    if let (true, Some(channel)) = (ack, channel) {
        let mut channels = shared.channels.lock().unwrap();
        let (last, indexed) = channels.entry(channel).or_default();
        *last += 1;
        reply = format!(r#"{{"text":"Success","code":0,"ackId":{last}}}"#);
        if *last == shared.lose_ack.load(Ordering::SeqCst) {
            return (200, reply);
        }
        indexed.insert(*last);
    }
    if shared.ids_only.load(Ordering::SeqCst) {
        let ids = envelopes.iter().map(|e| {
            let args = e["event"]["process_exec"]["process"]["arguments"].as_str();
            Value::String(
                args.unwrap_or("")
                    .split(' ')
                    .next()
                    .unwrap_or("")
                    .to_string(),
            )
        });
        shared.events.lock().unwrap().extend(ids);
    } else {
        shared.events.lock().unwrap().extend(envelopes);
    }
    (200, reply)
}

/// `/services/collector/ack?channel=<id>` with `{"acks":[1,2]}`: which were indexed.
fn acks(shared: &Shared, line: &str, body: &[u8]) -> (u16, String) {
    let channel = line
        .split(' ')
        .nth(1)
        .and_then(|p| p.split_once("channel="))
        .map(|(_, c)| c.to_string())
        .unwrap_or_default();
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return (400, r#"{"text":"Invalid data format","code":6}"#.into());
    };
    let channels = shared.channels.lock().unwrap();
    let indexed = channels.get(&channel).map(|(_, i)| i);
    let answer: serde_json::Map<String, Value> = req["acks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .map(|id| {
            let done = indexed.is_some_and(|i| i.contains(&id));
            (id.to_string(), Value::Bool(done))
        })
        .collect();
    (200, serde_json::json!({ "acks": answer }).to_string())
}

impl HecServer {
    /// Turns indexer acknowledgement on.
    pub fn require_ack(&self) {
        self.shared.ack.store(true, Ordering::SeqCst);
    }

    /// Loses the events of the request given this ackId (per channel): answered 200 with the
    /// ackId, never indexed, never acknowledged.
    pub fn lose_ack(&self, id: u64) {
        self.shared.lose_ack.store(id, Ordering::SeqCst);
    }

    /// Starts a server accepting `token` on a free port.
    pub fn start(token: &str) -> HecServer {
        let shared = Arc::new(Shared::default());
        *shared.token.lock().unwrap() = token.to_string();
        let s = shared.clone();
        let http = HttpServer::start(Arc::new(move |req: &http::Request| handle(&s, req)));
        HecServer { shared, http }
    }

    /// Stops listening and closes every open connection.
    pub fn stop(&mut self) {
        self.http.stop();
    }

    /// Listens again on the same port.
    pub fn restart(&mut self) {
        self.http.restart();
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        self.http.endpoint()
    }

    /// Every envelope received, in order.
    pub fn events(&self) -> Vec<Value> {
        self.shared.events.lock().unwrap().clone()
    }

    /// Every request received.
    pub fn requests(&self) -> Vec<HecRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Keeps only each event's first argument from now on (see [`HecServer::events`]).
    pub fn keep_ids_only(&self) {
        self.shared.ids_only.store(true, Ordering::SeqCst);
    }

    /// Accepts only this token from now on.
    pub fn set_token(&self, token: &str) {
        *self.shared.token.lock().unwrap() = token.to_string();
    }

    /// Answers 413 to bodies larger than `bytes` (0: no limit).
    pub fn set_max_body(&self, bytes: usize) {
        self.shared.max_body.store(bytes, Ordering::SeqCst);
    }

    /// Answers `status` to everything (0: back to normal).
    pub fn force_status(&self, status: u16) {
        *self.shared.forced_body.lock().unwrap() = None;
        self.shared.forced.store(status, Ordering::SeqCst);
    }

    /// Answers `status` with `body`, whatever it is (a hostile server's), to everything.
    pub fn force_answer(&self, status: u16, body: String) {
        *self.shared.forced_body.lock().unwrap() = Some(body);
        self.shared.forced.store(status, Ordering::SeqCst);
    }

    /// Refuses (400) batches holding an event whose JSON contains `needle`.
    pub fn reject_containing(&self, needle: &str) {
        *self.shared.reject.lock().unwrap() = Some(needle.to_string());
    }
}
