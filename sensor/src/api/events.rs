//! `GetEvents`: every event the agent publishes goes into one bounded broadcast ring, which
//! costs the agent's loop one pointer copy per event while a client listens and nothing when
//! none does; it never waits. Each stream reads the ring at its own pace in its own task,
//! applies the client's filters (Tetragon's allow and deny lists), field mask and aggregation,
//! and hands the result to gRPC. A client that reads slower than events come falls behind in
//! the ring; what it missed is counted and told to it in the stream (`Lost`) before its next
//! event, and the agent's other outputs never notice.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
    time::Duration,
};

use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;
use vigil_api::v1;
use vigil_events::{Event, EventBody};
use vigil_exporters::filter::{ExportFilter, FilterSpec};

/// An event as streams share it: its JSON is made once, by the first stream that sends it
/// whole, for all of them.
pub struct Published {
    event: Arc<Event>,
    json: OnceLock<String>,
}

impl Published {
    fn json(&self) -> &str {
        self.json
            .get_or_init(|| serde_json::to_string(&self.event).unwrap_or_default())
    }
}

/// The publishing side, held by the agent's loop.
#[derive(Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Arc<Published>>,
    counters: Arc<HubCounters>,
}

/// What the streams did, for `GetHealth`.
#[derive(Default)]
pub struct HubCounters {
    /// Streams open now.
    pub streams: AtomicUsize,
    /// Events streams missed, all streams together.
    pub missed: AtomicU64,
}

/// Responses a stream's task may have ready for gRPC before it waits on the client.
const READY_RESPONSES: usize = 64;
/// The shortest aggregation window, and the longest.
const MIN_WINDOW_MS: u32 = 100;
const MAX_WINDOW_MS: u32 = 60_000;
/// Most connects and accepts held for one window.
const MAX_HELD: usize = 10_000;
/// Most streams open at once.
pub const MAX_STREAMS: usize = 64;
/// Most filters in a list, values in a filter's field, and paths in a field mask; the longest
/// value or path. Each event costs every stream its filters and mask: a request cannot make
/// that cost unbounded.
const MAX_FILTERS: usize = 16;
const MAX_VALUES: usize = 64;
const MAX_PATHS: usize = 64;
const MAX_TEXT: usize = 1024;

impl EventHub {
    /// A hub whose streams may each fall `capacity` events behind.
    pub fn new(capacity: usize) -> EventHub {
        let (tx, _) = broadcast::channel(capacity.max(1));
        EventHub {
            tx,
            counters: Arc::default(),
        }
    }

    /// Whether any stream listens.
    pub fn listening(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Hands `event` to every open stream; costs nothing without one.
    pub fn publish(&self, event: Arc<Event>) {
        if self.listening() {
            let _ = self.tx.send(Arc::new(Published {
                event,
                json: OnceLock::new(),
            }));
        }
    }

    /// The streams' counters.
    pub fn counters(&self) -> &HubCounters {
        &self.counters
    }

    /// Opens a stream for `req`; a bad filter is `INVALID_ARGUMENT` with its field.
    pub fn subscribe(
        &self,
        req: v1::GetEventsRequest,
    ) -> Result<mpsc::Receiver<Result<v1::GetEventsResponse, Status>>, Status> {
        check_bounds(&req)?;
        if self.counters.streams.load(Ordering::Relaxed) >= MAX_STREAMS {
            return Err(Status::resource_exhausted(format!(
                "{MAX_STREAMS} event streams are open: close one first"
            )));
        }
        let allow: Vec<FilterSpec> = req.allow_list.into_iter().map(spec).collect();
        let deny: Vec<FilterSpec> = req.deny_list.into_iter().map(spec).collect();
        let filter = ExportFilter::new(&allow, &deny, "GetEventsRequest")
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mask = req.field_mask.unwrap_or_default();
        let window = match req.aggregation {
            Some(a) if !(MIN_WINDOW_MS..=MAX_WINDOW_MS).contains(&a.window_ms) => {
                return Err(Status::invalid_argument(format!(
                    "aggregation.window_ms: {} is not between {MIN_WINDOW_MS} and {MAX_WINDOW_MS}",
                    a.window_ms
                )))
            }
            Some(a) => Some(Duration::from_millis(a.window_ms.into())),
            None => None,
        };
        let (out, rx) = mpsc::channel(READY_RESPONSES);
        let stream = Stream {
            events: self.tx.subscribe(),
            out,
            filter,
            mask,
            window,
            counters: self.counters.clone(),
            missed: 0,
        };
        self.counters.streams.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(stream.run());
        Ok(rx)
    }
}

/// Refuses a request past the bounds above, naming the field.
fn check_bounds(req: &v1::GetEventsRequest) -> Result<(), Status> {
    let too_many = |field: &str, n: usize, max: usize| {
        Status::invalid_argument(format!("{field}: {n} entries, at most {max}"))
    };
    for (list, filters) in [
        ("allow_list", &req.allow_list),
        ("deny_list", &req.deny_list),
    ] {
        if filters.len() > MAX_FILTERS {
            return Err(too_many(list, filters.len(), MAX_FILTERS));
        }
        for (i, f) in filters.iter().enumerate() {
            let texts = [
                ("event_set", &f.event_set),
                ("binary_regex", &f.binary_regex),
                ("parent_binary_regex", &f.parent_binary_regex),
                ("arguments_regex", &f.arguments_regex),
                ("policy_names", &f.policy_names),
                ("namespace", &f.namespace),
                ("pod_regex", &f.pod_regex),
                ("labels", &f.labels),
            ];
            for (field, values) in texts {
                let at = format!("{list}[{i}].{field}");
                if values.len() > MAX_VALUES {
                    return Err(too_many(&at, values.len(), MAX_VALUES));
                }
                if values.iter().any(|v| v.len() > MAX_TEXT) {
                    return Err(Status::invalid_argument(format!(
                        "{at}: a value longer than {MAX_TEXT} bytes"
                    )));
                }
            }
            for (field, n) in [("pid", f.pid.len()), ("pid_set", f.pid_set.len())] {
                if n > MAX_VALUES {
                    return Err(too_many(&format!("{list}[{i}].{field}"), n, MAX_VALUES));
                }
            }
        }
    }
    if let Some(m) = &req.field_mask {
        for (field, paths) in [
            ("field_mask.include", &m.include),
            ("field_mask.exclude", &m.exclude),
        ] {
            if paths.len() > MAX_PATHS {
                return Err(too_many(field, paths.len(), MAX_PATHS));
            }
            if paths.iter().any(|p| p.len() > MAX_TEXT) {
                return Err(Status::invalid_argument(format!(
                    "{field}: a path longer than {MAX_TEXT} bytes"
                )));
            }
        }
    }
    Ok(())
}

fn spec(f: v1::Filter) -> FilterSpec {
    FilterSpec {
        event_set: f.event_set,
        binary_regex: f.binary_regex,
        parent_binary_regex: f.parent_binary_regex,
        arguments_regex: f.arguments_regex,
        pid: f.pid,
        pid_set: f.pid_set,
        policy_names: f.policy_names,
        namespace: f.namespace,
        pod_regex: f.pod_regex,
        labels: f.labels,
    }
}

/// One client's stream.
struct Stream {
    events: broadcast::Receiver<Arc<Published>>,
    out: mpsc::Sender<Result<v1::GetEventsResponse, Status>>,
    filter: ExportFilter,
    mask: v1::FieldMask,
    window: Option<Duration>,
    counters: Arc<HubCounters>,
    /// Missed since the stream began.
    missed: u64,
}

/// Connects and accepts held for aggregation, by process, function and arguments.
type Held = HashMap<(String, String, String), (Arc<Published>, u64)>;

impl Stream {
    async fn run(mut self) {
        let mut held = Held::new();
        let mut flush = tokio::time::interval(self.window.unwrap_or(Duration::from_secs(3600)));
        flush.tick().await;
        loop {
            let next = tokio::select! {
                e = self.events.recv() => e,
                _ = flush.tick(), if self.window.is_some() => {
                    if self.flush(&mut held).await.is_err() {
                        break;
                    }
                    continue;
                }
                // The client went away while nothing came.
                _ = self.out.closed() => break,
            };
            let sent = match next {
                Ok(event) if !self.filter.passes(&event.event) => Ok(()),
                Ok(event) => {
                    match aggregation_key(&event.event).filter(|_| self.window.is_some()) {
                        // A window's worth of distinct connects is bounded: past it, they go now.
                        Some(key) if held.len() >= MAX_HELD && !held.contains_key(&key) => {
                            self.send_event(&event, 1).await
                        }
                        Some(key) => {
                            held.entry(key).or_insert_with(|| (event.clone(), 0)).1 += 1;
                            Ok(())
                        }
                        None => self.send_event(&event, 1).await,
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.missed += n;
                    self.counters.missed.fetch_add(n, Ordering::Relaxed);
                    let lost = v1::Lost {
                        events: n,
                        total: self.missed,
                    };
                    self.send(v1::get_events_response::Response::Lost(lost))
                        .await
                }
                Err(broadcast::error::RecvError::Closed) => break,
            };
            if sent.is_err() {
                break;
            }
        }
        self.counters.streams.fetch_sub(1, Ordering::Relaxed);
    }

    async fn flush(&mut self, held: &mut Held) -> Result<(), ()> {
        for (_, (event, count)) in held.drain() {
            self.send_event(&event, count).await?;
        }
        Ok(())
    }

    async fn send_event(&mut self, e: &Published, count: u64) -> Result<(), ()> {
        let event = render(e, &self.mask, count);
        self.send(v1::get_events_response::Response::Event(event))
            .await
    }

    async fn send(&mut self, r: v1::get_events_response::Response) -> Result<(), ()> {
        let response = v1::GetEventsResponse { response: Some(r) };
        self.out.send(Ok(response)).await.map_err(|_| ())
    }
}

/// A connect or an accept, keyed for aggregation; other events pass one by one.
fn aggregation_key(e: &Event) -> Option<(String, String, String)> {
    let (EventBody::ProcessKprobe(p)
    | EventBody::ProcessLsm(p)
    | EventBody::ProcessUprobe(p)
    | EventBody::ProcessTracepoint(p)
    | EventBody::ProcessLoader(p)) = &e.body
    else {
        return None;
    };
    let f = p.function_name.as_str();
    if !(f.contains("connect") || f.contains("accept")) {
        return None;
    }
    let args = serde_json::to_string(&p.args).unwrap_or_default();
    Some((p.process.exec_id.as_str().to_string(), f.to_string(), args))
}

/// The API's event: the fields clients filter on, and the event's JSON after the mask.
fn render(published: &Published, mask: &v1::FieldMask, count: u64) -> v1::Event {
    let e = &published.event;
    let p = e.process();
    let (policy_name, action) = match &e.body {
        EventBody::ProcessKprobe(x)
        | EventBody::ProcessLsm(x)
        | EventBody::ProcessUprobe(x)
        | EventBody::ProcessTracepoint(x)
        | EventBody::ProcessLoader(x) => (x.policy_name.clone(), x.action.clone()),
        _ => (String::new(), String::new()),
    };
    let json = if mask.include.is_empty() && mask.exclude.is_empty() {
        Ok(published.json().to_string())
    } else {
        serde_json::to_value(e).map(|v| apply_mask(v, e.kind(), mask).to_string())
    };
    v1::Event {
        kind: e.kind().to_string(),
        time: e.time.clone(),
        node_name: e.node_name.to_string(),
        exec_id: p.exec_id.as_str().to_string(),
        pid: p.pid,
        binary: p.binary.clone(),
        policy_name,
        action,
        namespace: p
            .pod
            .as_ref()
            .map(|x| x.namespace.clone())
            .unwrap_or_default(),
        pod: p.pod.as_ref().map(|x| x.name.clone()).unwrap_or_default(),
        json: json.unwrap_or_default(),
        count,
    }
}

/// Keeps the `include` paths of the event's body (all when none), then removes the `exclude`
/// paths.
fn apply_mask(mut v: Value, kind: &str, mask: &v1::FieldMask) -> Value {
    let Some(body) = v.get_mut(kind) else {
        return v;
    };
    if !mask.include.is_empty() {
        let mut kept = Value::Object(Default::default());
        for path in &mask.include {
            let parts: Vec<&str> = path.split('.').collect();
            if let Some(found) = lookup(body, &parts) {
                insert(&mut kept, &parts, found.clone());
            }
        }
        *body = kept;
    }
    for path in &mask.exclude {
        let parts: Vec<&str> = path.split('.').collect();
        if let Some((last, parents)) = parts.split_last() {
            if let Some(Value::Object(m)) = lookup_mut(body, parents) {
                m.remove(*last);
            }
        }
    }
    v
}

fn lookup<'a>(v: &'a Value, parts: &[&str]) -> Option<&'a Value> {
    parts.iter().try_fold(v, |v, p| v.get(p))
}

fn lookup_mut<'a>(v: &'a mut Value, parts: &[&str]) -> Option<&'a mut Value> {
    parts.iter().try_fold(v, |v, p| v.get_mut(p))
}

fn insert(v: &mut Value, parts: &[&str], value: Value) {
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut at = v;
    for p in parents {
        let Value::Object(m) = at else { return };
        at = m
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    if let Value::Object(m) = at {
        m.insert(last.to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_mask_keeps_the_paths_asked_for_and_drops_the_excluded() {
        let v = json!({"process_exec": {"process": {"binary": "/bin/ls", "pid": 3, "uid": 0},
                       "parent": {"binary": "/bin/sh"}}, "time": "t"});
        let mask = v1::FieldMask {
            include: vec![
                "process.binary".into(),
                "process.pid".into(),
                "nope.x".into(),
            ],
            exclude: vec!["process.pid".into()],
        };
        assert_eq!(
            apply_mask(v, "process_exec", &mask),
            json!({"process_exec": {"process": {"binary": "/bin/ls"}}, "time": "t"})
        );
    }
}
