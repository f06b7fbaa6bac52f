//! A Kubernetes API server for tests (no real one installs here): pods and nodes over real
//! HTTP, in the API's own JSON, with what a watcher relies on. `GET /api/v1/pods` lists (with a
//! `spec.nodeName=` field selector, the list's `resourceVersion`); `?watch=true` streams watch
//! events (`ADDED`, `MODIFIED`, `DELETED`) newer than the request's `resourceVersion`, chunked,
//! `BOOKMARK`s when asked for and allowed, and, once the test has compacted the history, the
//! `ERROR` event with a `410 Gone` status a watcher must answer with a relist.
//! `GET /api/v1/nodes/<name>` serves a node. Objects are `serde_json::Value`s written as the API
//! reference describes them; each change gets the next resource version.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{mpsc, Arc, Mutex},
    thread,
};

use serde_json::{json, Value};

/// One open watch: where its events go and the node it selected.
struct Watch {
    node: Option<String>,
    /// It asked for bookmarks (`allowWatchBookmarks=true`).
    bookmarks: bool,
    tx: mpsc::Sender<String>,
}

#[derive(Default)]
struct State {
    rv: u64,
    pods: BTreeMap<String, Value>,
    nodes: BTreeMap<String, Value>,
    /// (resource version, watch event type, the object then).
    history: Vec<(u64, &'static str, Value)>,
    /// Watches asking for a resource version older than this get 410 Gone.
    compacted_below: u64,
    watches: Vec<Watch>,
    requests: Vec<String>,
}

fn node_of(pod: &Value) -> Option<&str> {
    pod["spec"]["nodeName"].as_str()
}

fn selected(node: &Option<String>, pod: &Value) -> bool {
    node.as_deref().is_none_or(|n| node_of(pod) == Some(n))
}

fn event_line(kind: &str, object: &Value) -> String {
    format!("{}\n", json!({"type": kind, "object": object}))
}

fn gone(rv: u64) -> String {
    event_line(
        "ERROR",
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {rv}"), "reason": "Expired", "code": 410}),
    )
}

impl State {
    fn change(&mut self, kind: &'static str, mut object: Value) {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let uid = object["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if kind == "DELETED" {
            self.pods.remove(&uid);
        } else {
            self.pods.insert(uid, object.clone());
        }
        let line = event_line(kind, &object);
        self.watches
            .retain(|w| !selected(&w.node, &object) || w.tx.send(line.clone()).is_ok());
        self.history.push((self.rv, kind, object));
    }
}

/// The server; stops listening when dropped (open watches end with their connections).
pub struct KubeApiServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl KubeApiServer {
    /// Starts on a free port of 127.0.0.1.
    pub fn start() -> KubeApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            rv: 100,
            ..Default::default()
        }));
        let s = state.clone();
        thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let s = s.clone();
                thread::spawn(move || serve(stream, &s));
            }
        });
        KubeApiServer { addr, state }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds (or replaces) a pod: `ADDED`, or `MODIFIED` when its UID is known.
    pub fn put_pod(&self, pod: Value) {
        let mut s = self.state.lock().unwrap();
        let uid = pod["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kind = if s.pods.contains_key(&uid) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        s.change(kind, pod);
    }

    /// Deletes the pod with `uid` (`DELETED`, carrying the pod as it was).
    pub fn delete_pod(&self, uid: &str) {
        let mut s = self.state.lock().unwrap();
        if let Some(pod) = s.pods.get(uid).cloned() {
            s.change("DELETED", pod);
        }
    }

    /// Adds a node, served at `/api/v1/nodes/<name>`.
    pub fn put_node(&self, node: Value) {
        let mut s = self.state.lock().unwrap();
        let name = node["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        s.nodes.insert(name, node);
    }

    /// Sends a `BOOKMARK` at the current resource version to every open watch that allowed
    /// bookmarks.
    pub fn bookmark(&self) {
        let mut s = self.state.lock().unwrap();
        let line = event_line(
            "BOOKMARK",
            &json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": s.rv.to_string()}}),
        );
        s.watches
            .retain(|w| !w.bookmarks || w.tx.send(line.clone()).is_ok());
    }

    /// Compacts the history, as etcd does: every open watch gets the `410 Gone` error event and
    /// ends, and a watch from an older resource version is refused the same way.
    pub fn compact(&self) {
        let mut s = self.state.lock().unwrap();
        s.compacted_below = s.rv + 1;
        let line = gone(s.rv);
        for w in s.watches.drain(..) {
            let _ = w.tx.send(line.clone());
            let _ = w.tx.send(String::new()); // the end of the stream
        }
    }

    /// The request lines received, in order (`GET /api/v1/pods?... HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

/// The query parameters of a request target, percent-decoded.
fn query(target: &str) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                c => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn respond(stream: &mut TcpStream, status: &str, body: &Value) {
    let body = body.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // The headers: nothing the server needs.
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
            break;
        }
    }
    let target = line.split(' ').nth(1).unwrap_or("/").to_string();
    state
        .lock()
        .unwrap()
        .requests
        .push(line.trim_end().to_string());
    let path = target.split('?').next().unwrap_or("");
    let q = query(&target);
    let node = q
        .get("fieldSelector")
        .and_then(|f| f.strip_prefix("spec.nodeName="))
        .map(str::to_string);
    if let Some(name) = path.strip_prefix("/api/v1/nodes/") {
        let found = state.lock().unwrap().nodes.get(name).cloned();
        match found {
            Some(n) => respond(&mut stream, "200 OK", &n),
            None => respond(
                &mut stream,
                "404 Not Found",
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
            ),
        }
        return;
    }
    if path != "/api/v1/pods" {
        respond(
            &mut stream,
            "404 Not Found",
            &json!({"kind": "Status", "code": 404}),
        );
        return;
    }
    if q.get("watch").map(String::as_str) != Some("true") {
        let s = state.lock().unwrap();
        let items: Vec<&Value> = s.pods.values().filter(|p| selected(&node, p)).collect();
        let list = json!({"kind": "PodList", "apiVersion": "v1",
            "metadata": {"resourceVersion": s.rv.to_string()}, "items": items});
        drop(s);
        respond(&mut stream, "200 OK", &list);
        return;
    }
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (tx, rx) = mpsc::channel();
    {
        let mut s = state.lock().unwrap();
        if from != 0 && from < s.compacted_below {
            let _ = tx.send(gone(from));
            let _ = tx.send(String::new());
        } else {
            for (rv, kind, object) in &s.history {
                if *rv > from && selected(&node, object) {
                    let _ = tx.send(event_line(kind, object));
                }
            }
            let bookmarks = q.get("allowWatchBookmarks").map(String::as_str) == Some("true");
            s.watches.push(Watch {
                node,
                bookmarks,
                tx,
            });
        }
    }
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    for line in rx {
        let ok = if line.is_empty() {
            write!(stream, "0\r\n\r\n")
        } else {
            write!(stream, "{:x}\r\n{line}\r\n", line.len())
        };
        if ok.and_then(|_| stream.flush()).is_err() || line.is_empty() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pod(uid: &str, node: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("p-{uid}"), "namespace": "default", "uid": uid},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}})
    }

    fn get(server: &KubeApiServer, target: &str) -> TcpStream {
        let mut s = TcpStream::connect(server.addr).unwrap();
        write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        s
    }

    /// The next chunk of a chunked body, after the headers were read.
    fn chunk(r: &mut BufReader<TcpStream>) -> Option<Value> {
        let mut size = String::new();
        r.read_line(&mut size).ok()?;
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            return None;
        }
        let mut buf = vec![0; n + 2];
        r.read_exact(&mut buf).ok()?;
        serde_json::from_slice(&buf[..n]).ok()
    }

    fn headers(r: &mut BufReader<TcpStream>) -> String {
        let mut all = String::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h == "\r\n" {
                return all;
            }
            all.push_str(&h);
        }
    }

    #[test]
    fn a_list_selects_the_node_and_a_watch_streams_changes_bookmarks_and_410() {
        let server = KubeApiServer::start();
        server.put_pod(pod("a", "node-a"));
        server.put_pod(pod("b", "node-b"));
        let mut list = String::new();
        get(&server, "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a")
            .read_to_string(&mut list)
            .unwrap();
        let body: Value = serde_json::from_str(list.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["items"].as_array().unwrap().len(), 1);
        assert_eq!(body["metadata"]["resourceVersion"], "102");

        let w = get(
            &server,
            "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a&watch=true&resourceVersion=102&allowWatchBookmarks=true",
        );
        let mut r = BufReader::new(w);
        assert!(headers(&mut r).contains("chunked"));
        server.put_pod(pod("c", "node-a"));
        server.put_pod(pod("d", "node-b"));
        server.delete_pod("a");
        server.bookmark();
        let kinds: Vec<(String, String)> = (0..3)
            .map(|_| chunk(&mut r).unwrap())
            .map(|e| {
                (
                    e["type"].as_str().unwrap().to_string(),
                    e["object"]["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("ADDED".into(), "103".into()),
                ("DELETED".into(), "105".into()),
                ("BOOKMARK".into(), "105".into())
            ],
            "node-b's pod is not this watch's"
        );
        server.compact();
        let e = chunk(&mut r).unwrap();
        assert_eq!(
            (e["type"].as_str(), e["object"]["code"].as_u64()),
            (Some("ERROR"), Some(410))
        );
        assert!(chunk(&mut r).is_none(), "the stream ends");
        // A watch from before the compaction is refused the same way.
        let mut r = BufReader::new(get(&server, "/api/v1/pods?watch=true&resourceVersion=103"));
        headers(&mut r);
        assert_eq!(chunk(&mut r).unwrap()["object"]["code"], 410);
        assert!(server.requests().iter().any(|l| l.contains("watch=true")));
    }
}
