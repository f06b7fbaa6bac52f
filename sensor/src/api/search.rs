//! `Search` and `ProcessTree`: the node's event store over the API.
//!
//! A search reads the store's database through a read-only connection of its own, on the
//! runtime's blocking pool: it never waits on the agent's loop, and the store's writer never
//! waits on it (WAL readers do not block the writer). Results are streamed as they are read;
//! a client that goes away stops the read.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::sync::mpsc;
use tonic::Status;
use vigil_api::v1::{self, search_response::Response, text_match::How};
use vigil_store::{
    query::{parse_dst, Query, QueryError, TextMatch},
    Searcher, StoreError, StoredEvent,
};

/// Searches running at once; more are refused (`RESOURCE_EXHAUSTED`) rather than queued.
const MAX_SEARCHES: usize = 4;
/// The longest a search or a tree may run, reading included.
const SEARCH_DEADLINE: Duration = Duration::from_secs(60);
/// The longest a client may leave an answer unread before its search is ended.
const SEND_WAIT: Duration = Duration::from_secs(10);

/// Sends `msg` unless the client went or left its stream unread for [`SEND_WAIT`]; says
/// whether it was sent. A client that stops reading cannot keep a search's slot.
fn send<T>(tx: &mpsc::Sender<T>, mut msg: T) -> bool {
    let until = Instant::now() + SEND_WAIT;
    loop {
        match tx.try_send(msg) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
            Err(mpsc::error::TrySendError::Full(m)) => {
                if Instant::now() > until {
                    return false;
                }
                msg = m;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Ends the searcher's statements once the deadline passed or the client went.
fn bound<T: Send + 'static>(searcher: &mut Searcher, tx: &mpsc::Sender<T>) {
    let deadline = Instant::now() + SEARCH_DEADLINE;
    let tx = tx.clone();
    searcher.stop_when(move || tx.is_closed() || Instant::now() > deadline);
}

/// The store as the API reads it.
#[derive(Clone)]
pub struct StoreReader {
    db: Option<PathBuf>,
    running: Arc<AtomicUsize>,
}

/// Counts a running search; uncounted when dropped.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn text_match(m: Option<v1::TextMatch>) -> Option<TextMatch> {
    let m = m?;
    Some(match m.how() {
        How::Exact => TextMatch::Exact(m.text),
        How::Prefix => TextMatch::Prefix(m.text),
        How::Substring => TextMatch::Substring(m.text),
        How::Regex => TextMatch::Regex(m.text),
    })
}

fn text_message(m: &Option<TextMatch>) -> Option<v1::TextMatch> {
    let (how, text) = match m.as_ref()? {
        TextMatch::Exact(t) => (How::Exact, t),
        TextMatch::Prefix(t) => (How::Prefix, t),
        TextMatch::Substring(t) => (How::Substring, t),
        TextMatch::Regex(t) => (How::Regex, t),
    };
    Some(v1::TextMatch {
        how: how as i32,
        text: text.clone(),
    })
}

fn some(s: String) -> Option<String> {
    Some(s).filter(|s| !s.is_empty())
}

/// The query a request asks, checked.
pub fn query_of(r: v1::SearchRequest) -> Result<Query, QueryError> {
    let q = Query {
        from_ns: Some(r.from_ns).filter(|n| *n > 0),
        to_ns: Some(r.to_ns).filter(|n| *n > 0),
        kinds: r.types,
        binary: some(r.binary),
        args: text_match(r.args),
        path: text_match(r.path),
        dst: match some(r.dst) {
            Some(d) => Some(parse_dst(&d)?),
            None => None,
        },
        dport: match r.dport {
            0 => None,
            p => Some(u16::try_from(p).map_err(|_| QueryError {
                field: "dport",
                reason: format!("{p} is not a port"),
            })?),
        },
        dns: some(r.dns),
        pod: some(r.pod),
        namespace: some(r.namespace),
        exec_id: some(r.exec_id),
        subtree: some(r.subtree),
        policy: some(r.policy),
        rule: some(r.rule),
        level: some(r.level),
        limit: Some(r.limit).filter(|l| *l > 0),
    };
    q.check()?;
    Ok(q)
}

/// The request for `q`.
pub fn request_of(q: &Query, count: bool) -> v1::SearchRequest {
    v1::SearchRequest {
        from_ns: q.from_ns.unwrap_or(0),
        to_ns: q.to_ns.unwrap_or(0),
        types: q.kinds.clone(),
        binary: q.binary.clone().unwrap_or_default(),
        args: text_message(&q.args),
        path: text_message(&q.path),
        dst: q.dst.map(|d| d.to_string()).unwrap_or_default(),
        dport: q.dport.map(u32::from).unwrap_or(0),
        dns: q.dns.clone().unwrap_or_default(),
        pod: q.pod.clone().unwrap_or_default(),
        namespace: q.namespace.clone().unwrap_or_default(),
        exec_id: q.exec_id.clone().unwrap_or_default(),
        subtree: q.subtree.clone().unwrap_or_default(),
        policy: q.policy.clone().unwrap_or_default(),
        rule: q.rule.clone().unwrap_or_default(),
        level: q.level.clone().unwrap_or_default(),
        limit: q.limit.unwrap_or(0),
        count,
    }
}

fn stored(e: StoredEvent) -> v1::StoredEvent {
    v1::StoredEvent {
        time_ns: e.time_ns,
        json: e.json,
    }
}

fn status(e: StoreError) -> Status {
    match e {
        StoreError::Query(q) => Status::invalid_argument(q.to_string()),
        e if e.is_interrupted() => Status::deadline_exceeded(format!(
            "the search ran past {} s: narrow it (a time range, an exact path, a binary)",
            SEARCH_DEADLINE.as_secs()
        )),
        e => Status::internal(e.to_string()),
    }
}

impl StoreReader {
    /// The reader of the database at `db` (none: the store is off).
    pub fn new(db: Option<PathBuf>) -> StoreReader {
        StoreReader {
            db,
            running: Arc::default(),
        }
    }

    fn open(&self) -> Result<(Searcher, Running), Status> {
        let Some(db) = &self.db else {
            return Err(Status::failed_precondition(
                "this agent keeps no events: its store is off (store.enabled in the configuration)",
            ));
        };
        if self.running.fetch_add(1, Ordering::Relaxed) >= MAX_SEARCHES {
            self.running.fetch_sub(1, Ordering::Relaxed);
            return Err(Status::resource_exhausted(format!(
                "{MAX_SEARCHES} searches are running: try again when one ends"
            )));
        }
        let running = Running(self.running.clone());
        let searcher = Searcher::open(db).map_err(status)?;
        Ok((searcher, running))
    }

    /// Runs a search; its answers come on the returned channel.
    pub fn search(
        &self,
        req: v1::SearchRequest,
    ) -> Result<mpsc::Receiver<Result<v1::SearchResponse, Status>>, Status> {
        let count = req.count;
        let q = query_of(req).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (mut searcher, running) = self.open()?;
        let (tx, rx) = mpsc::channel(256);
        bound(&mut searcher, &tx);
        tokio::task::spawn_blocking(move || {
            let _running = running;
            let result = if count {
                searcher.count(&q).map(|n| {
                    send(
                        &tx,
                        Ok(v1::SearchResponse {
                            response: Some(Response::Count(n)),
                        }),
                    );
                })
            } else {
                searcher
                    .search(&q, |e| {
                        send(
                            &tx,
                            Ok(v1::SearchResponse {
                                response: Some(Response::Event(stored(e))),
                            }),
                        )
                    })
                    .map(|_| ())
            };
            if let Err(e) = result {
                send(&tx, Err(status(e)));
            }
        });
        Ok(rx)
    }

    /// Answers a process tree.
    pub fn tree(
        &self,
        req: v1::ProcessTreeRequest,
    ) -> Result<mpsc::Receiver<Result<v1::ProcessTreeResponse, Status>>, Status> {
        if req.exec_id.is_empty() || req.exec_id.len() > vigil_store::query::MAX_TEXT {
            return Err(Status::invalid_argument(
                "exec_id: the exec id of a process (as events carry it)",
            ));
        }
        let (mut searcher, running) = self.open()?;
        // Each message holds one process's events (at most 8 MiB): few are queued.
        let (tx, rx) = mpsc::channel(4);
        bound(&mut searcher, &tx);
        tokio::task::spawn_blocking(move || {
            let _running = running;
            let walked = searcher.walk_tree(&req.exec_id, req.events, |n| {
                let p = n.process;
                let msg = v1::ProcessTreeResponse {
                    process: Some(v1::TreeProcess {
                        exec_id: p.exec_id,
                        parent_exec_id: p.parent_exec_id,
                        pid: p.pid,
                        uid: p.uid,
                        binary: p.binary,
                        arguments: p.arguments,
                        start_time: p.start_time,
                        namespace: p.namespace.unwrap_or_default(),
                        pod: p.pod.unwrap_or_default(),
                        depth: n.depth,
                        events: n.events.into_iter().map(stored).collect(),
                    }),
                };
                send(&tx, Ok(msg))
            });
            match walked {
                Ok(true) => {}
                Ok(false) => {
                    send(
                        &tx,
                        Err(Status::not_found(format!(
                            "the store has no process {}: it was never seen, or retention removed it",
                            vigil_events::compact::escape(&req.exec_id)
                        ))),
                    );
                }
                Err(e) => {
                    send(&tx, Err(status(e)));
                }
            }
        });
        Ok(rx)
    }
}
