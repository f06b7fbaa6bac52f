//! `vigil search`, `vigil tree` and `vigil timeline`: the forensic store's answers.
//!
//! A search goes to the agent's API by default (`Search`), to a database file with `--store`
//! (a copy taken off a node, or a node whose agent is down), or to Elasticsearch with
//! `--elasticsearch`, where the same criteria become the query DSL over the ECS fields vigil's
//! exporter writes: one syntax for one node and for the fleet.

use std::path::PathBuf;

use serde_json::Value;
use vigil_api::v1::search_response::Response;
use vigil_store::{
    query::{parse_dst, parse_duration_ns, parse_time_ns, Query, QueryError, TextMatch},
    Searcher, StoredEvent,
};

use super::{colour, failed, paint, Exit, ServerArgs};
use crate::{agent::log, api::search::request_of, stdout::outln};

/// How results print.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchFormat {
    /// Each event's JSON, one per line (Tetragon's shape; ECS documents from Elasticsearch).
    Json,
    /// One readable line per event.
    Compact,
    /// Aligned columns: time, type, pid, binary, what.
    Table,
}

/// Where the events are.
#[derive(clap::Args, Debug, Clone)]
pub struct SourceArgs {
    /// Read this store database (`<state-dir>/store/events.db`) instead of asking the agent.
    #[arg(long, value_name = "FILE", conflicts_with = "elasticsearch")]
    store: Option<PathBuf>,
    /// Search an Elasticsearch or OpenSearch cluster instead: its URL.
    #[arg(long, value_name = "URL")]
    pub(super) elasticsearch: Option<String>,
    /// The index, data stream or pattern vigil's exporter writes.
    #[arg(long, value_name = "INDEX", default_value = "logs-vigil.events-*")]
    index: String,
    /// A file holding the Elasticsearch API key (sent as `Authorization: ApiKey`).
    #[arg(long, value_name = "FILE")]
    es_api_key_file: Option<PathBuf>,
    /// CA certificates (PEM) for the cluster, beside the system's.
    #[arg(long, value_name = "FILE")]
    es_ca_file: Option<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
}

impl SourceArgs {
    /// The database file, when the search reads one.
    pub(super) fn store_path(&self) -> Option<&std::path::Path> {
        self.store.as_deref()
    }

    /// The agent, when the search asks it.
    pub(super) fn server(&self) -> &ServerArgs {
        &self.server
    }

    pub(super) fn index(&self) -> &str {
        &self.index
    }

    pub(super) fn es_api_key_file(&self) -> Option<&std::path::Path> {
        self.es_api_key_file.as_deref()
    }

    pub(super) fn es_ca_file(&self) -> Option<&std::path::Path> {
        self.es_ca_file.as_deref()
    }
}

/// `vigil search`.
#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// Events of the last DURATION (`90s`, `15m`, `2h`, `7d`).
    #[arg(long, value_name = "DURATION", conflicts_with = "from")]
    since: Option<String>,
    /// Events at or after TIME (RFC 3339, UTC: `2026-12-03T10:00:00Z`).
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Events before TIME.
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// Event types: process_exec, process_exit, process_kprobe, process_lsm, process_uprobe,
    /// process_alert (or exec, exit, kprobe, lsm, uprobe, alert).
    #[arg(long = "type", value_name = "TYPE")]
    types: Vec<String>,
    /// The process's binary: a full path, or a name (`curl`).
    #[arg(long, value_name = "PATH|NAME")]
    binary: Option<String>,
    /// Text in the process's arguments.
    #[arg(long, value_name = "TEXT", conflicts_with = "args_regex")]
    args: Option<String>,
    /// A regular expression on the process's arguments.
    #[arg(long, value_name = "REGEX")]
    args_regex: Option<String>,
    /// A file, exactly (`/etc/shadow`).
    #[arg(long, value_name = "PATH", group = "paths")]
    path: Option<String>,
    /// Files under a prefix (`/etc/`).
    #[arg(long, value_name = "PREFIX", group = "paths")]
    path_prefix: Option<String>,
    /// Files whose path holds TEXT.
    #[arg(long, value_name = "TEXT", group = "paths")]
    path_contains: Option<String>,
    /// Files whose path matches a regular expression.
    #[arg(long, value_name = "REGEX", group = "paths")]
    path_regex: Option<String>,
    /// The destination: an address or a range (`10.0.0.5`, `10.0.0.0/8`).
    #[arg(long, value_name = "ADDRESS|CIDR")]
    dst: Option<String>,
    /// The destination port.
    #[arg(long, value_name = "PORT")]
    dport: Option<u16>,
    /// The name a DNS message asked for.
    #[arg(long, value_name = "NAME")]
    dns: Option<String>,
    /// The pod's name.
    #[arg(long, value_name = "NAME")]
    pod: Option<String>,
    /// The pod's namespace.
    #[arg(long, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// Events of one process (its exec id).
    #[arg(long, value_name = "EXEC_ID")]
    exec_id: Option<String>,
    /// Policy events of one policy.
    #[arg(long, value_name = "NAME")]
    policy: Option<String>,
    /// Alerts of one Sigma rule (its id or title).
    #[arg(long, value_name = "ID|TITLE")]
    rule: Option<String>,
    /// Alerts of this level or higher: informational, low, medium, high, critical.
    #[arg(long, value_name = "LEVEL")]
    level: Option<String>,
    /// At most this many events: the newest, printed oldest first.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Print only how many events match.
    #[arg(long)]
    count: bool,
    /// json, compact or table.
    #[arg(short = 'o', long = "output", value_enum, default_value = "compact")]
    output: SearchFormat,
    #[command(flatten)]
    source: SourceArgs,
}

fn kind(k: &str) -> String {
    match k {
        "exec" | "exit" | "kprobe" | "lsm" | "uprobe" | "alert" => format!("process_{k}"),
        _ => k.to_string(),
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl SearchArgs {
    /// The query the flags ask.
    pub fn query(&self) -> Result<Query, QueryError> {
        let from_ns = match (&self.since, &self.from) {
            (Some(d), _) => Some(now_ns().saturating_sub(parse_duration_ns(d)?)),
            (None, Some(t)) => Some(parse_time_ns("from", t)?),
            (None, None) => None,
        };
        let path = [
            self.path.clone().map(TextMatch::Exact),
            self.path_prefix.clone().map(TextMatch::Prefix),
            self.path_contains.clone().map(TextMatch::Substring),
            self.path_regex.clone().map(TextMatch::Regex),
        ]
        .into_iter()
        .flatten()
        .next();
        let q = Query {
            from_ns,
            to_ns: self
                .to
                .as_deref()
                .map(|t| parse_time_ns("to", t))
                .transpose()?,
            kinds: self.types.iter().map(|k| kind(k)).collect(),
            binary: self.binary.clone(),
            args: self
                .args
                .clone()
                .map(TextMatch::Substring)
                .or(self.args_regex.clone().map(TextMatch::Regex)),
            path,
            dst: self.dst.as_deref().map(parse_dst).transpose()?,
            dport: self.dport,
            dns: self.dns.clone(),
            pod: self.pod.clone(),
            namespace: self.namespace.clone(),
            exec_id: self.exec_id.clone(),
            subtree: None,
            policy: self.policy.clone(),
            rule: self.rule.clone(),
            level: self.level.clone(),
            limit: self.limit,
        };
        q.check()?;
        Ok(q)
    }

    /// Runs the search and prints what it finds.
    pub async fn run(self) -> Exit {
        let q = match self.query() {
            Ok(q) => q,
            Err(e) => {
                log(format!("error: --{e}"));
                return Exit::Refused;
            }
        };
        search(&self.source, q, self.count, self.output).await
    }
}

/// `vigil timeline`: everything a process and its descendants did, in time order.
#[derive(clap::Args, Debug)]
pub struct TimelineArgs {
    /// The process (its exec id, as events carry it).
    exec_id: String,
    /// At most this many events (the newest).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    limit: u64,
    /// json, compact or table.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    output: SearchFormat,
    #[command(flatten)]
    source: SourceArgs,
}

impl TimelineArgs {
    /// Prints the subtree's events.
    pub async fn run(self) -> Exit {
        if self.source.elasticsearch.is_some() {
            log("error: --elasticsearch: a timeline follows the process tree, which the node's store keeps: ask the agent, or --store");
            return Exit::Refused;
        }
        let q = Query {
            subtree: Some(self.exec_id.clone()),
            limit: Some(self.limit),
            ..Default::default()
        };
        if let Err(e) = q.check() {
            log(format!("error: --{e}"));
            return Exit::Refused;
        }
        search(&self.source, q, false, self.output).await
    }
}

async fn search(source: &SourceArgs, q: Query, count: bool, output: SearchFormat) -> Exit {
    let mut printer = Printer::new(output);
    if let Some(url) = &source.elasticsearch {
        return super::elastic_search::run(source, url, &q, count, &mut printer).await;
    }
    if let Some(db) = &source.store {
        let mut searcher = match Searcher::open(db) {
            Ok(s) => s,
            Err(e) => {
                log(format!("error: --store: {e}"));
                return Exit::Refused;
            }
        };
        let result = if count {
            searcher.count(&q).map(|n| printer.count(n))
        } else {
            searcher.search(&q, |e| printer.stored(&e)).map(|_| ())
        };
        return match result {
            Ok(()) => printer.exit(),
            Err(e) => {
                log(format!("error: {e}"));
                Exit::Refused
            }
        };
    }
    let mut client = match source.server.connect().await {
        // One message holds one event, whose arguments may be long.
        Ok(c) => c.max_decoding_message_size(64 << 20),
        Err(e) => return e,
    };
    let mut stream = match client.search(request_of(&q, count)).await {
        Ok(r) => r.into_inner(),
        Err(s) => return failed("Search", &s),
    };
    loop {
        match stream.message().await {
            Ok(Some(m)) => match m.response {
                Some(Response::Event(e)) => {
                    let event = StoredEvent {
                        id: 0,
                        time_ns: e.time_ns,
                        json: e.json,
                    };
                    if !printer.stored(&event) {
                        return printer.exit();
                    }
                }
                Some(Response::Count(n)) => printer.count(n),
                None => {}
            },
            Ok(None) => return printer.exit(),
            Err(s) => return failed("Search", &s),
        }
    }
}

/// Prints results as they come.
pub(super) struct Printer {
    format: SearchFormat,
    colour: bool,
    broken: bool,
    header: bool,
}

/// One row of a table: the facts every source gives.
pub(super) struct Row<'a> {
    pub time: &'a str,
    pub kind: &'a str,
    pub pid: u64,
    pub binary: &'a str,
    pub what: String,
}

impl Printer {
    fn new(format: SearchFormat) -> Printer {
        Printer {
            format,
            colour: colour(),
            broken: false,
            header: false,
        }
    }

    fn exit(&self) -> Exit {
        if self.broken {
            Exit::Refused
        } else {
            Exit::Ok
        }
    }

    pub(super) fn count(&mut self, n: u64) {
        self.broken |= outln!("{n}").is_err();
    }

    /// Prints one of the store's events; false once stdout is gone or failed.
    pub(super) fn stored(&mut self, e: &StoredEvent) -> bool {
        let event = serde_json::from_str::<vigil_events::Event>(&e.json);
        let ok = match (self.format, event) {
            (SearchFormat::Json, _) => outln!("{}", terminal_safe(&e.json)).is_ok(),
            // Not an event (a damaged or planted database): shown, escaped.
            (_, Err(_)) => outln!("{}", vigil_events::compact::escape(&e.json)).is_ok(),
            (SearchFormat::Compact, Ok(ev)) => {
                let line = vigil_events::compact::render(&ev);
                outln!("{}", paint(self.colour, colour_of(ev.kind()), &line)).is_ok()
            }
            (SearchFormat::Table, Ok(ev)) => {
                let p = ev.process();
                let line = vigil_events::compact::render(&ev);
                self.row(&Row {
                    time: &ev.time,
                    kind: ev.kind(),
                    pid: u64::from(p.pid),
                    binary: &p.binary,
                    what: line,
                })
            }
        };
        self.broken |= !ok;
        ok && !crate::stdout::closed()
    }

    /// Prints an Elasticsearch document; false once stdout is gone.
    pub(super) fn document(&mut self, doc: &Value, row: Row<'_>) -> bool {
        let ok = match self.format {
            SearchFormat::Json => outln!("{}", terminal_safe(&doc.to_string())).is_ok(),
            SearchFormat::Compact => {
                let line = vigil_events::compact::escape(&format!(
                    "{} {} {} {}",
                    row.time, row.kind, row.binary, row.what
                ))
                .into_owned();
                outln!("{}", paint(self.colour, colour_of(row.kind), &line)).is_ok()
            }
            SearchFormat::Table => self.row(&row),
        };
        self.broken |= !ok;
        ok && !crate::stdout::closed()
    }

    fn row(&mut self, r: &Row<'_>) -> bool {
        if !self.header {
            self.header = true;
            if outln!(
                "{:<30}  {:<14}  {:>7}  {:<24}  WHAT",
                "TIME",
                "TYPE",
                "PID",
                "BINARY"
            )
            .is_err()
            {
                return false;
            }
        }
        let esc = |s: &str| vigil_events::compact::escape(s).into_owned();
        outln!(
            "{:<30}  {:<14}  {:>7}  {:<24}  {}",
            esc(r.time),
            esc(r.kind),
            r.pid,
            esc(r.binary),
            r.what
        )
        .is_ok()
    }
}

/// JSON text with the characters a terminal acts on that JSON leaves as they are (DEL, the C1
/// controls, the bidirectional overrides a file name may carry) written as `\u` escapes: the
/// same JSON, which cannot reorder or drive the analyst's terminal.
pub(super) fn terminal_safe(json: &str) -> std::borrow::Cow<'_, str> {
    let acts = |c: char| matches!(c, '\u{7f}'..='\u{9f}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !json.chars().any(acts) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if acts(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn colour_of(kind: &str) -> &'static str {
    match kind {
        "process_exec" => "32",
        "process_exit" => "2",
        "process_alert" => "33",
        _ => "36",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::search::query_of;

    fn round_trip(q: &Query) -> Result<Query, QueryError> {
        query_of(request_of(q, false))
    }

    #[test]
    fn json_shown_on_a_terminal_escapes_what_the_terminal_would_act_on_and_stays_json() {
        let hostile =
            serde_json::json!({"path": "/tmp/\u{202e}txt.exe\u{9b}31m\u{7f}"}).to_string();
        let safe = terminal_safe(&hostile);
        assert!(!safe.contains('\u{202e}') && !safe.contains('\u{9b}') && !safe.contains('\u{7f}'));
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back.to_string(), hostile);
        assert!(matches!(
            terminal_safe("{\"a\":1}"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_query_crosses_the_api_unchanged() {
        let q = Query {
            from_ns: Some(5),
            to_ns: Some(9),
            kinds: vec!["process_kprobe".into()],
            binary: Some("curl".into()),
            args: Some(TextMatch::Regex("a.b".into())),
            path: Some(TextMatch::Prefix("/etc/".into())),
            dst: Some(parse_dst("10.0.0.0/8").unwrap()),
            dport: Some(443),
            dns: Some("example.test".into()),
            pod: Some("web".into()),
            namespace: Some("prod".into()),
            exec_id: Some("a".into()),
            subtree: Some("b".into()),
            policy: Some("p".into()),
            rule: Some("r".into()),
            level: Some("high".into()),
            limit: Some(7),
        };
        assert_eq!(round_trip(&q).unwrap(), q);
    }
}
