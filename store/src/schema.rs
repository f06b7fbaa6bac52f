//! The database's layout and how a connection is opened.
//!
//! Investigations filter on few facts and read whole events: the layout keeps those facts in
//! narrow integer-keyed columns and the event itself as one compressed blob. What repeats is
//! stored once: a process's exec id, parent, binary, arguments and pod in `processes` (an
//! event names its process by row id), each distinct file path in `paths`. Substring search
//! over arguments and paths goes through FTS5 trigram indexes of those two small tables, not of
//! the events. The indexes are the ones the queries of [`crate::search`] use: time, process and
//! time, path and time, destination, DNS name, policy, Sigma rule. The id of a removed row is
//! never reused (`AUTOINCREMENT`), so an id the writer remembers never names another row; a
//! rolled-back transaction rolls its ids back too, which is why the writer forgets every id
//! it learnt when it rolls one back.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::StoreError;

/// The layout's version, in `PRAGMA user_version`: a database of another version is not
/// opened (the agent names it and the fix).
pub const VERSION: i64 = 1;

/// Page cache per connection, KiB (negative `cache_size` is KiB).
const CACHE_KIB: i64 = 32 * 1024;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs(
    id INTEGER PRIMARY KEY,
    started INTEGER NOT NULL,
    committed INTEGER NOT NULL DEFAULT 0,
    lost INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE TABLE IF NOT EXISTS dicts(id INTEGER PRIMARY KEY AUTOINCREMENT, dict BLOB NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS processes(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    exec_id TEXT NOT NULL UNIQUE,
    parent_exec_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    binary TEXT NOT NULL,
    name TEXT NOT NULL,
    arguments TEXT NOT NULL,
    start_time TEXT NOT NULL,
    namespace TEXT,
    pod TEXT,
    first_seen INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS processes_parent ON processes(parent_exec_id);
CREATE INDEX IF NOT EXISTS processes_binary ON processes(binary);
CREATE INDEX IF NOT EXISTS processes_name ON processes(name);
CREATE INDEX IF NOT EXISTS processes_pod ON processes(namespace, pod);
CREATE INDEX IF NOT EXISTS processes_seen ON processes(first_seen);
CREATE TABLE IF NOT EXISTS paths(id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL UNIQUE) STRICT;
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    process INTEGER NOT NULL,
    path INTEGER,
    daddr BLOB,
    dport INTEGER,
    dns TEXT,
    policy TEXT,
    rule TEXT,
    rule_title TEXT,
    level INTEGER,
    dict INTEGER NOT NULL,
    body BLOB NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS events_time ON events(time);
CREATE INDEX IF NOT EXISTS events_process ON events(process, time);
CREATE INDEX IF NOT EXISTS events_path ON events(path, time) WHERE path IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_daddr ON events(daddr, dport) WHERE daddr IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_dns ON events(dns) WHERE dns IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_policy ON events(policy, time) WHERE policy IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_rule ON events(rule, time) WHERE rule IS NOT NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS arguments_text USING fts5(
    arguments, content='', contentless_delete=1, tokenize='trigram case_sensitive 1');
CREATE VIRTUAL TABLE IF NOT EXISTS paths_text USING fts5(
    path, content='', contentless_delete=1, tokenize='trigram case_sensitive 1');
CREATE TRIGGER IF NOT EXISTS processes_gone AFTER DELETE ON processes BEGIN
    DELETE FROM arguments_text WHERE rowid = old.id;
END;
CREATE TRIGGER IF NOT EXISTS paths_gone AFTER DELETE ON paths BEGIN
    DELETE FROM paths_text WHERE rowid = old.id;
END;
";

/// Event keys as stored (`events.kind`), in [`crate::query::KINDS`]' order.
pub fn kind_code(kind: &str) -> Option<i64> {
    crate::query::KINDS
        .iter()
        .position(|k| *k == kind)
        .map(|i| i as i64)
}

/// Opens the database for writing, creating it and its layout: WAL, so that searches read
/// while the writer writes; `synchronous=NORMAL`, so a commit is one WAL append (a crash of the
/// agent loses nothing committed; a power cut may lose the last commits, never the database);
/// incremental vacuum, so that retention can hand space back to the file system.
pub fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NOFOLLOW
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::open(path, e))?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
        .map_err(|e| StoreError::open(path, e))?;
    conn.pragma_update(None, "trusted_schema", "OFF")
        .map_err(|e| StoreError::open(path, e))?;
    let fresh: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| StoreError::open(path, e))?;
    if fresh == 0 {
        // Only an empty database takes a new vacuum mode.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .map_err(|e| StoreError::open(path, e))?;
    }
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| StoreError::open(path, e))?;
    if fresh > 0 && version != VERSION {
        return Err(StoreError::Version {
            path: path.to_path_buf(),
            found: version,
        });
    }
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-{CACHE_KIB};
         PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint=4000;
         PRAGMA journal_size_limit=67108864;"
    ))
    .map_err(|e| StoreError::open(path, e))?;
    // Readers checkpointing at the same moment wait instead of failing a batch.
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| StoreError::open(path, e))?;
    conn.execute_batch(SCHEMA)
        .map_err(|e| StoreError::open(path, e))?;
    conn.pragma_update(None, "user_version", VERSION)
        .map_err(|e| StoreError::open(path, e))?;
    Ok(conn)
}

/// Opens the database for searching, read-only: a search can never change or lock out the
/// writer (WAL readers do not block it).
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NOFOLLOW
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::open(path, e))?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| StoreError::open(path, e))?;
    if version != VERSION {
        return Err(StoreError::Version {
            path: path.to_path_buf(),
            found: version,
        });
    }
    // A database handed to `vigil search --store` may come from anywhere: its schema may not
    // call functions from views or triggers, nor change the file's structure.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
        .map_err(|e| StoreError::open(path, e))?;
    conn.execute_batch(&format!(
        "PRAGMA trusted_schema=OFF; PRAGMA cache_size=-{CACHE_KIB}; PRAGMA temp_store=MEMORY;
         PRAGMA query_only=1;"
    ))
    .map_err(|e| StoreError::open(path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| StoreError::open(path, e))?;
    crate::search::register_regexp(&conn).map_err(|e| StoreError::open(path, e))?;
    Ok(conn)
}
