//! `vigil search --elasticsearch`: the query as Elasticsearch's query DSL
//! ([`vigil_store::elastic`]), sent to `_search` or `_count` of the index vigil's exporter
//! writes, and the ECS documents it answers printed as the store's events are.
//!
//! The cluster is outside the node's trust: its answer is read up to a bound, and what of it
//! reaches the terminal is escaped.

use serde_json::Value;
use vigil_store::query::Query;

use super::{
    search::{Printer, Row, SourceArgs},
    Exit,
};
use crate::agent::log;

/// The largest answer read (10,000 documents of a few KiB).
const MAX_ANSWER: usize = 256 << 20;

fn field<'a>(doc: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(doc, |v, k| &v[k])
}

fn text<'a>(doc: &'a Value, path: &str) -> &'a str {
    field(doc, path).as_str().unwrap_or("")
}

/// The table's row of an ECS document.
fn row(doc: &Value) -> Row<'_> {
    let what = if let Some(p) = field(doc, "file.path").as_str() {
        p.to_string()
    } else if let Some(ip) = field(doc, "destination.ip").as_str() {
        format!("{ip}:{}", field(doc, "destination.port"))
    } else if let Some(n) = field(doc, "dns.question.name").as_str() {
        format!("dns {n}")
    } else if let Some(r) = field(doc, "rule.name").as_str() {
        format!("alert {r}")
    } else {
        text(doc, "process.command_line").to_string()
    };
    Row {
        time: text(doc, "@timestamp"),
        kind: text(doc, "event.action"),
        pid: field(doc, "process.pid").as_u64().unwrap_or(0),
        binary: text(doc, "process.executable"),
        what: vigil_events::compact::escape(&what).into_owned(),
    }
}

/// Runs `q` against the cluster at `url`.
pub(super) async fn run(
    source: &SourceArgs,
    url: &str,
    q: &Query,
    count: bool,
    printer: &mut Printer,
) -> Exit {
    let body = match if count {
        vigil_store::elastic::count_body(q)
    } else {
        vigil_store::elastic::search_body(q)
    } {
        Ok(b) => b,
        Err(e) => {
            log(format!("error: --{e}"));
            return Exit::Refused;
        }
    };
    let client = match vigil_exporters::sinks::http::client(60, source.es_ca_file()) {
        Ok(c) => c,
        Err(e) => {
            log(format!("error: --es-ca-file: {e}"));
            return Exit::Refused;
        }
    };
    let endpoint = format!(
        "{}/{}/{}",
        url.trim_end_matches('/'),
        source.index(),
        if count { "_count" } else { "_search" }
    );
    let mut request = client.post(&endpoint).json(&body);
    if let Some(file) = source.es_api_key_file() {
        match std::fs::read_to_string(file) {
            Ok(key) => request = request.header("Authorization", format!("ApiKey {}", key.trim())),
            Err(e) => {
                log(format!("error: --es-api-key-file {}: {e}", file.display()));
                return Exit::Refused;
            }
        }
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            log(format!("error: {endpoint}: {e}"));
            return Exit::Unreachable;
        }
    };
    let status = response.status();
    let raw = match vigil_exporters::sinks::http::body_prefix(response, MAX_ANSWER).await {
        Ok((_, true)) => {
            log(format!(
                "error: {endpoint}: the answer is over {} MiB: ask fewer events (--limit)",
                MAX_ANSWER >> 20
            ));
            return Exit::Refused;
        }
        Ok((b, false)) => b,
        Err(e) => {
            log(format!("error: {endpoint}: {e}"));
            return Exit::Unreachable;
        }
    };
    if !status.is_success() {
        log(format!(
            "error: {endpoint} answered {status}: {}",
            vigil_exporters::sinks::http::peer_text(&raw)
        ));
        return match status.as_u16() {
            401 | 403 => Exit::Denied,
            _ => Exit::Refused,
        };
    }
    let answer: Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => {
            log(format!("error: {endpoint}: not JSON: {e}"));
            return Exit::Refused;
        }
    };
    if count {
        match answer["count"].as_u64() {
            Some(n) => printer.count(n),
            None => {
                log(format!("error: {endpoint}: no count in the answer"));
                return Exit::Refused;
            }
        }
        return Exit::Ok;
    }
    let Some(hits) = answer["hits"]["hits"].as_array() else {
        log(format!("error: {endpoint}: no hits in the answer"));
        return Exit::Refused;
    };
    // Newest first from the cluster; printed oldest first, as the store's.
    for hit in hits.iter().rev() {
        let doc = &hit["_source"];
        if !printer.document(doc, row(doc)) {
            return Exit::Refused;
        }
    }
    Exit::Ok
}
