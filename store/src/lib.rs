//! vigil's forensic event store.
//!
//! After an alert an analyst asks what a process and its children did, who started it, what
//! else read that file, which processes talked to that address. This crate keeps every event
//! the agent publishes in a SQLite database in the agent's state directory, written by a thread
//! of its own in large transactions so that the agent's loop never waits on a disk
//! ([`writer`]), and answers those questions ([`search`]): events by time, type, process,
//! file, address, DNS name, pod, policy or Sigma rule, and a process's tree of ancestors and
//! descendants. The same [`query::Query`] also becomes Elasticsearch's query DSL over the ECS
//! fields vigil's exporter writes ([`elastic`]), so one syntax searches a node and a fleet.
//!
//! The layout ([`schema`]): one row per process (exec id, parent, binary, arguments, pod), one
//! per distinct path, and one per event with the columns investigations filter on and the
//! event's JSON compressed with zstd and a dictionary trained on the node's own events.
//! Arguments and paths are indexed by FTS5 trigrams for substring search. Retention by age and
//! by size runs continuously in the writer. A small ledger file beside the database, updated
//! through shared memory for every event handed to the store, tells the next agent how many
//! events a crash (`kill -9`) took with it.

pub mod elastic;
pub mod query;
pub mod schema;
pub mod search;
pub mod writer;

mod batch;
mod codec;
mod deferred;
mod ledger;
mod row;

use std::path::{Path, PathBuf};

pub use search::{ProcessRow, Searcher, StoredEvent, TreeNode};
pub use writer::{EventStore, Recovery, StoreConfig, StoreStats, MAX_QUEUE_BYTES};

/// The database's file name in the store's directory.
pub const DB_FILE: &str = "events.db";
/// The ledger's file name in the store's directory.
pub const LEDGER_FILE: &str = "events.ledger";

/// Why the store cannot be opened, written or searched.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store's directory or ledger.
    #[error(transparent)]
    Fs(#[from] vigil_safe_fs::FsError),
    /// SQLite refused to open the database.
    #[error("cannot open the event store {path}: {source}; if it is damaged, move it aside (the agent starts a new one)")]
    Open {
        /// The database.
        path: PathBuf,
        /// SQLite's reason.
        source: rusqlite::Error,
    },
    /// The database was written by another version of vigil.
    #[error("the event store {path} has layout version {found}, this vigil writes version {}; move it aside to keep it (the agent starts a new one)", schema::VERSION)]
    Version {
        /// The database.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// A statement failed.
    #[error("event store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The ledger file could not be mapped.
    #[error("cannot map the event store's ledger {path}: {source}")]
    Ledger {
        /// The ledger.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another agent writes this store (a hand-off in progress).
    #[error("the event store {path} is written by another agent now; this one keeps events once it lets go")]
    Busy {
        /// The ledger.
        path: PathBuf,
    },
    /// A query the store refuses.
    #[error(transparent)]
    Query(#[from] query::QueryError),
    /// A batch the agent's loop handed to the writer could not be read (a bug: the loop and
    /// the writer are one program).
    #[error("a batch of events handed to the store's writer cannot be read: {reason}")]
    Batch {
        /// Why.
        reason: String,
    },
    /// zstd could not train a compression dictionary on the events sampled.
    #[error("its compression dictionary: {reason}")]
    Dictionary {
        /// Why, and what happens next.
        reason: String,
    },
    /// A stored event could not be read back.
    #[error("stored event {id} cannot be read: {reason}")]
    Corrupt {
        /// Its row id.
        id: i64,
        /// Why.
        reason: String,
    },
}

impl StoreError {
    /// Whether a search was ended by its [`Searcher::stop_when`] condition.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, StoreError::Sql(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::OperationInterrupted)
    }

    fn open(path: &Path, source: rusqlite::Error) -> StoreError {
        StoreError::Open {
            path: path.to_path_buf(),
            source,
        }
    }
}
