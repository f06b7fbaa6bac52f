//! The store's answers: events by [`Query`], counted or streamed, and a process's tree.
//!
//! A search runs in two steps: the matching events' row ids, newest first up to the limit
//! (index work only: narrow rows, no event decompressed), then those events oldest first,
//! read and decompressed one at a time as the caller takes them, so a search of a million
//! events holds a million ids, not a million events.

use std::{collections::HashMap, path::Path};

use rusqlite::{functions::FunctionFlags, types::Value, Connection, OptionalExtension};
use serde::Serialize;

use crate::{
    codec::Decompressors,
    query::{Query, TextMatch},
    row::ip_key,
    schema::kind_code,
    StoreError,
};

/// One event read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its row id (insertion order).
    pub id: i64,
    /// When it happened, nanoseconds since the epoch.
    pub time_ns: u64,
    /// The event's JSON, as the agent published it.
    pub json: String,
}

/// A process as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessRow {
    /// Its exec id.
    pub exec_id: String,
    /// Its parent's.
    pub parent_exec_id: String,
    /// Its pid.
    pub pid: u32,
    /// Its uid.
    pub uid: u32,
    /// Its binary.
    pub binary: String,
    /// Its arguments.
    pub arguments: String,
    /// When it started (RFC 3339).
    pub start_time: String,
    /// Its pod's namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
}

/// One process of a tree, in drawing order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeNode {
    /// The process.
    pub process: ProcessRow,
    /// Its depth from the process asked for: negative for ancestors, 0 for it, positive for
    /// descendants.
    pub depth: i32,
    /// Its events, oldest first.
    pub events: Vec<StoredEvent>,
}

/// The most ancestors a tree climbs.
const MAX_ANCESTORS: usize = 64;
/// The most descendants a tree holds.
pub const MAX_DESCENDANTS: usize = 10_000;
/// The most events shown per process of a tree (its newest).
pub const MAX_TREE_EVENTS: usize = 1000;
/// The most bytes of events shown per process of a tree (one message of the API's stream).
pub const MAX_NODE_BYTES: usize = 8 << 20;

/// How many of the newest events a search by process alone looks through first.
const RECENT_EVENTS: u64 = 20_000;

/// The columns [`process_row`] reads.
const PROCESS_COLUMNS: &str =
    "id, exec_id, parent_exec_id, pid, uid, binary, arguments, start_time, namespace, pod";

/// A process row and its id, from [`PROCESS_COLUMNS`].
fn process_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, ProcessRow)> {
    Ok((
        r.get(0)?,
        ProcessRow {
            exec_id: r.get(1)?,
            parent_exec_id: r.get(2)?,
            pid: r.get(3)?,
            uid: r.get(4)?,
            binary: r.get(5)?,
            arguments: r.get(6)?,
            start_time: r.get(7)?,
            namespace: r.get(8)?,
            pod: r.get(9)?,
        },
    ))
}

/// `sub(x)`: the exec ids of the process `param` names and of its descendants, at most
/// [`MAX_DESCENDANTS`].
fn subtree(param: &str) -> String {
    format!(
        "WITH RECURSIVE sub(x) AS (SELECT {param} UNION
           SELECT c.exec_id FROM processes c JOIN sub ON c.parent_exec_id = sub.x
           LIMIT {MAX_DESCENDANTS})"
    )
}

/// A read-only view of a store.
pub struct Searcher {
    conn: Connection,
    decompressors: Decompressors,
    /// Events skipped because they could not be read back.
    pub corrupt: u64,
}

/// `REGEXP` for SQLite, with Rust's `regex` (compiled once per statement and pattern).
pub(crate) fn register_regexp(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "regexp",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let re = ctx.get_or_create_aux(0, |v| {
                let pattern = v.as_str().map_err(|e| e.to_string())?;
                regex::RegexBuilder::new(pattern)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| e.to_string())
            })?;
            let text = ctx.get_raw(1).as_str().unwrap_or("");
            Ok(re.is_match(text))
        },
    )
}

/// The FTS5 query for a literal substring: one phrase, its quotes doubled.
fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// GLOB's pattern for a literal prefix: its wildcards put in brackets. GLOB, unlike a range,
/// keeps to the prefix exactly, and SQLite still reads it from the index.
fn glob_prefix(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        match c {
            '*' | '?' | '[' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out.push('*');
    out
}

/// A query's WHERE clause and its parameters.
struct Sql {
    conds: Vec<String>,
    params: Vec<Value>,
}

impl Sql {
    fn bind(&mut self, v: impl Into<Value>) -> String {
        self.params.push(v.into());
        format!("?{}", self.params.len())
    }

    fn text(&mut self, column: &str, m: &TextMatch, fts: Option<(&str, &str)>) -> String {
        match m {
            TextMatch::Exact(t) => format!("{column} = {}", self.bind(t.clone())),
            TextMatch::Prefix(t) => format!("{column} GLOB {}", self.bind(glob_prefix(t))),
            TextMatch::Substring(t) => {
                let exact = format!("instr({column}, {}) > 0", self.bind(t.clone()));
                match fts {
                    // Trigrams find a substring of three characters or more.
                    Some((table, key)) if t.chars().count() >= 3 => format!(
                        "{key} IN (SELECT rowid FROM {table} WHERE {table} MATCH {}) AND {exact}",
                        self.bind(fts_phrase(t))
                    ),
                    _ => exact,
                }
            }
            TextMatch::Regex(r) => format!("{column} REGEXP {}", self.bind(r.clone())),
        }
    }
}

fn where_clause(q: &Query) -> Sql {
    let mut s = Sql {
        conds: Vec::new(),
        params: Vec::new(),
    };
    if let Some(from) = q.from_ns {
        let p = s.bind(from as i64);
        s.conds.push(format!("e.time >= {p}"));
    }
    if let Some(to) = q.to_ns {
        let p = s.bind(to as i64);
        s.conds.push(format!("e.time < {p}"));
    }
    if !q.kinds.is_empty() {
        let codes: Vec<String> = q
            .kinds
            .iter()
            .filter_map(|k| kind_code(k))
            .map(|c| c.to_string())
            .collect();
        s.conds.push(format!("e.kind IN ({})", codes.join(",")));
    }
    if let Some(b) = &q.binary {
        let column = if b.contains('/') {
            "p.binary"
        } else {
            "p.name"
        };
        let p = s.bind(b.clone());
        s.conds.push(format!("{column} = {p}"));
    }
    if let Some(m) = &q.args {
        let c = s.text("p.arguments", m, Some(("arguments_text", "p.id")));
        s.conds.push(c);
    }
    if let Some(m) = &q.path {
        let inner = s.text("path", m, Some(("paths_text", "id")));
        s.conds
            .push(format!("e.path IN (SELECT id FROM paths WHERE {inner})"));
    }
    if let Some(net) = &q.dst {
        let lo = s.bind(ip_key(net.network()).to_vec());
        let hi = s.bind(ip_key(net.broadcast()).to_vec());
        s.conds.push(format!("e.daddr BETWEEN {lo} AND {hi}"));
    }
    if let Some(port) = q.dport {
        let p = s.bind(i64::from(port));
        s.conds.push(format!("e.dport = {p}"));
    }
    if let Some(d) = q.dns_name() {
        let p = s.bind(d);
        s.conds.push(format!("e.dns = {p}"));
    }
    if let Some(ns) = &q.namespace {
        let p = s.bind(ns.clone());
        s.conds.push(format!("p.namespace = {p}"));
    }
    if let Some(pod) = &q.pod {
        let p = s.bind(pod.clone());
        s.conds.push(format!("p.pod = {p}"));
    }
    if let Some(id) = &q.exec_id {
        let p = s.bind(id.clone());
        s.conds.push(format!(
            "e.process = (SELECT id FROM processes WHERE exec_id = {p})"
        ));
    }
    if let Some(id) = &q.subtree {
        let p = s.bind(id.clone());
        s.conds.push(format!(
            "e.process IN ({} SELECT id FROM processes WHERE exec_id IN sub)",
            subtree(&p)
        ));
    }
    if let Some(policy) = &q.policy {
        let p = s.bind(policy.clone());
        s.conds.push(format!("e.policy = {p}"));
    }
    if let Some(rule) = &q.rule {
        let p = s.bind(rule.clone());
        s.conds
            .push(format!("(e.rule = {p} OR e.rule_title = {p})"));
    }
    if let Some(rank) = q.level_rank() {
        let p = s.bind(rank as i64);
        s.conds.push(format!("e.level >= {p}"));
    }
    s
}

impl Searcher {
    /// Opens the store's database at `path` read-only.
    pub fn open(path: &Path) -> Result<Searcher, StoreError> {
        Ok(Searcher {
            conn: crate::schema::open_reader(path)?,
            decompressors: Decompressors::default(),
            corrupt: 0,
        })
    }

    /// Stops whatever this searcher runs once `stop` says so (a deadline passed, the client
    /// went): SQLite checks it every few thousand steps, so even a full scan ends soon after.
    pub fn stop_when(&mut self, stop: impl FnMut() -> bool + Send + 'static) {
        self.conn.progress_handler(4096, Some(stop));
    }

    /// How many events match.
    pub fn count(&mut self, q: &Query) -> Result<u64, StoreError> {
        q.check()?;
        let s = where_clause(q);
        let sql = format!("SELECT count(*) FROM {} {}", tables(q), conditions(&s));
        let n: i64 =
            self.conn
                .query_row(&sql, rusqlite::params_from_iter(s.params.iter()), |r| {
                    r.get(0)
                })?;
        Ok(n.max(0) as u64)
    }

    /// The newest [`Query::limit`] matching events, oldest first, each handed to `each` as it
    /// is read; `each` returns false to stop. Returns how many were handed over.
    pub fn search(
        &mut self,
        q: &Query,
        mut each: impl FnMut(StoredEvent) -> bool,
    ) -> Result<u64, StoreError> {
        q.check()?;
        let mut s = where_clause(q);
        let limit = s.bind(q.limit() as i64);
        let order = format!("ORDER BY e.time DESC, e.id DESC LIMIT {limit}");
        let mut ids = None;
        if process_only(q) {
            // A frequent binary has millions of events: through its processes, every one of
            // them is read and sorted to keep the newest few. The newest events are looked
            // through first, in time order, and that answer stands when it holds the whole
            // limit (an older match cannot be newer than it).
            let mut recent = s.conds.clone();
            recent.push(format!(
                "e.time >= coalesce((SELECT time FROM events ORDER BY time DESC
                                     LIMIT 1 OFFSET {RECENT_EVENTS}), 0)"
            ));
            let sql = format!(
                "SELECT e.id FROM events e CROSS JOIN processes p ON p.id = e.process
                 WHERE {} {order}",
                recent.join(" AND ")
            );
            let found = self.ids(&sql, &s.params)?;
            if found.len() as u64 >= q.limit() {
                ids = Some(found);
            }
        }
        let mut ids = match ids {
            Some(ids) => ids,
            None => {
                let sql = format!("SELECT e.id FROM {} {} {order}", tables(q), conditions(&s));
                self.ids(&sql, &s.params)?
            }
        };
        ids.reverse();
        let mut handed = 0;
        for id in ids {
            let event = match self.event(id) {
                Ok(Some(e)) => e,
                // Removed by retention since the first step.
                Ok(None) => continue,
                // One damaged event does not hide the others.
                Err(StoreError::Corrupt { .. }) => {
                    self.corrupt += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            handed += 1;
            if !each(event) {
                break;
            }
        }
        Ok(handed)
    }

    fn ids(&self, sql: &str, params: &[Value]) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn event(&mut self, id: i64) -> Result<Option<StoredEvent>, StoreError> {
        let row: Option<(i64, i64, Vec<u8>)> = self
            .conn
            .prepare_cached("SELECT time, dict, body FROM events WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((time, dict, body)) = row else {
            return Ok(None);
        };
        let json = self.decompressors.decompress(&self.conn, id, dict, &body)?;
        Ok(Some(StoredEvent {
            id,
            time_ns: time.max(0) as u64,
            json,
        }))
    }

    fn process(&self, exec_id: &str) -> Result<Option<(i64, ProcessRow)>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {PROCESS_COLUMNS} FROM processes WHERE exec_id = ?1"
            ))?
            .query_row([exec_id], process_row)
            .optional()?)
    }

    fn events_of(&mut self, process: i64) -> Result<Vec<StoredEvent>, StoreError> {
        let ids: Vec<i64> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id FROM events WHERE process = ?1 ORDER BY time DESC, id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(rusqlite::params![process, MAX_TREE_EVENTS as i64], |r| {
                r.get(0)
            })?;
            rows.collect::<Result<Vec<i64>, _>>()?
        };
        // The newest (an incident is recent), shown oldest first.
        let ids: Vec<i64> = ids.into_iter().rev().collect();
        let mut out = Vec::with_capacity(ids.len());
        let mut bytes = 0;
        for id in ids {
            match self.event(id) {
                Ok(Some(e)) => {
                    bytes += e.json.len();
                    if bytes > MAX_NODE_BYTES {
                        break;
                    }
                    out.push(e);
                }
                Ok(None) => {}
                Err(StoreError::Corrupt { .. }) => self.corrupt += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The tree of `exec_id`: its ancestors (oldest first), itself, then its descendants
    /// depth first, children by start time, each with its events when `with_events`. `None`
    /// when the store has no such process.
    pub fn tree(
        &mut self,
        exec_id: &str,
        with_events: bool,
    ) -> Result<Option<Vec<TreeNode>>, StoreError> {
        let mut nodes = Vec::new();
        let found = self.walk_tree(exec_id, with_events, |n| {
            nodes.push(n);
            true
        })?;
        Ok(found.then_some(nodes))
    }

    /// [`Searcher::tree`], each process handed to `each` with its events as it is read (only
    /// one process's events are held at a time); `each` returns false to stop. Returns whether
    /// the store has the process.
    pub fn walk_tree(
        &mut self,
        exec_id: &str,
        with_events: bool,
        mut each: impl FnMut(TreeNode) -> bool,
    ) -> Result<bool, StoreError> {
        let Some((root_id, root)) = self.process(exec_id)? else {
            return Ok(false);
        };
        let mut ancestors = Vec::new();
        let mut parent = root.parent_exec_id.clone();
        while ancestors.len() < MAX_ANCESTORS && !parent.is_empty() {
            let Some(found) = self.process(&parent)? else {
                break;
            };
            // A loop of parents (a damaged store) ends the climb.
            if ancestors
                .iter()
                .any(|(_, a): &(i64, ProcessRow)| a.exec_id == found.1.exec_id)
                || found.1.exec_id == root.exec_id
            {
                break;
            }
            parent = found.1.parent_exec_id.clone();
            ancestors.push(found);
        }
        ancestors.reverse();
        let depth0 = -(ancestors.len() as i32);
        let mut order: Vec<(i64, ProcessRow, i32)> = ancestors
            .into_iter()
            .enumerate()
            .map(|(i, (id, p))| (id, p, depth0 + i as i32))
            .collect();
        order.push((root_id, root.clone(), 0));
        // Descendants: every row, then drawn depth first from the root.
        let mut children: HashMap<String, Vec<(i64, ProcessRow)>> = HashMap::new();
        {
            let mut stmt = self.conn.prepare(&format!(
                "{} SELECT {PROCESS_COLUMNS} FROM processes
                 WHERE exec_id IN sub AND exec_id != ?1 ORDER BY start_time, id",
                subtree("?1")
            ))?;
            let rows = stmt.query_map([exec_id], process_row)?;
            for row in rows {
                let (id, p) = row?;
                children
                    .entry(p.parent_exec_id.clone())
                    .or_default()
                    .push((id, p));
            }
        }
        let mut stack: Vec<(i64, ProcessRow, i32)> = children
            .remove(&root.exec_id)
            .unwrap_or_default()
            .into_iter()
            .rev()
            .map(|(id, p)| (id, p, 1))
            .collect();
        while let Some((id, p, depth)) = stack.pop() {
            if let Some(kids) = children.remove(&p.exec_id) {
                stack.extend(kids.into_iter().rev().map(|(id, p)| (id, p, depth + 1)));
            }
            order.push((id, p, depth));
        }
        for (id, process, depth) in order {
            let events = if with_events {
                self.events_of(id)?
            } else {
                Vec::new()
            };
            let node = TreeNode {
                process,
                depth,
                events,
            };
            if !each(node) {
                break;
            }
        }
        Ok(true)
    }
}

/// Whether `q` has a criterion on the process row (binary, arguments, pod, namespace).
fn by_process(q: &Query) -> bool {
    q.binary.is_some() || q.args.is_some() || q.pod.is_some() || q.namespace.is_some()
}

/// Whether `q`'s only criteria, beside time and kind, are the process's: no index of the
/// events narrows it.
fn process_only(q: &Query) -> bool {
    by_process(q)
        && q.path.is_none()
        && q.dst.is_none()
        && q.dport.is_none()
        && q.dns_name().is_none()
        && q.exec_id.is_none()
        && q.subtree.is_none()
        && q.policy.is_none()
        && q.rule.is_none()
        && q.level_rank().is_none()
}

/// The tables a query reads: the process rows only when a criterion is about the process (a
/// join for every event a time range holds costs more than the count itself).
fn tables(q: &Query) -> &'static str {
    if by_process(q) {
        "events e JOIN processes p ON p.id = e.process"
    } else {
        "events e"
    }
}

fn conditions(s: &Sql) -> String {
    if s.conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", s.conds.join(" AND "))
    }
}
