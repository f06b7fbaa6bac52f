//! A Kubernetes API server for tests (no real one installs here): pods and nodes over real
//! HTTP, in the API's own JSON, with what a watcher relies on. `GET /api/v1/pods` lists (with a
//! `spec.nodeName=` field selector, the list's `resourceVersion`); `?watch=true` streams watch
//! events (`ADDED`, `MODIFIED`, `DELETED`) newer than the request's `resourceVersion`, chunked,
//! `BOOKMARK`s when asked for and allowed, and, once the test has compacted the history, the
//! `ERROR` event with a `410 Gone` status a watcher must answer with a relist.
//! `GET /api/v1/nodes/<name>` serves a node, `GET /api/v1/nodes` lists them. Custom resources the test installs
//! ([`KubeApiServer::install_crd`]) are listed and watched the same way at
//! `/apis/<group>/<version>/<plural>` (every namespace) and
//! `/apis/<group>/<version>/namespaces/<ns>/<plural>`, and their `status` subresource takes a
//! JSON merge patch (`PATCH .../<name>/status`); a resource not installed answers 404, as it
//! does when its CRD is missing. Objects are `serde_json::Value`s written as the API reference
//! describes them; each change gets the next resource version.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{mpsc, Arc, Mutex},
    thread,
};

use serde_json::{json, Value};

/// The pods' collection.
const PODS: &str = "/api/v1/pods";

/// One open watch: where its events go, the collection and namespace it watches and the node
/// it selected.
struct Watch {
    collection: String,
    namespace: Option<String>,
    node: Option<String>,
    /// It asked for bookmarks (`allowWatchBookmarks=true`).
    bookmarks: bool,
    tx: mpsc::Sender<String>,
}

#[derive(Default)]
struct State {
    rv: u64,
    /// By collection, then by key (a pod's UID, a custom resource's `namespace/name`).
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    nodes: BTreeMap<String, Value>,
    /// (resource version, collection, watch event type, the object then).
    history: Vec<(u64, String, &'static str, Value)>,
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

fn namespace_of(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or("")
}

/// The key of an object in its collection.
fn key_of(collection: &str, object: &Value) -> String {
    let meta = &object["metadata"];
    if collection == PODS {
        meta["uid"].as_str().unwrap_or_default().to_string()
    } else {
        format!(
            "{}/{}",
            namespace_of(object),
            meta["name"].as_str().unwrap_or("")
        )
    }
}

impl Watch {
    fn wants(&self, collection: &str, object: &Value) -> bool {
        self.collection == collection
            && self
                .namespace
                .as_deref()
                .is_none_or(|n| n == namespace_of(object))
            && selected(&self.node, object)
    }
}

/// A JSON merge patch (RFC 7386) of `patch` onto `target`.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(fields) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().expect("an object");
    for (k, v) in fields {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
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
    fn change(&mut self, collection: &str, kind: &'static str, mut object: Value) {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let key = key_of(collection, &object);
        let objects = self.objects.entry(collection.to_string()).or_default();
        if kind == "DELETED" {
            objects.remove(&key);
        } else {
            objects.insert(key, object.clone());
        }
        let line = event_line(kind, &object);
        self.watches
            .retain(|w| !w.wants(collection, &object) || w.tx.send(line.clone()).is_ok());
        self.history
            .push((self.rv, collection.to_string(), kind, object));
    }

    fn put(&mut self, collection: &str, object: Value) {
        let known = self
            .objects
            .get(collection)
            .is_some_and(|o| o.contains_key(&key_of(collection, &object)));
        self.change(collection, if known { "MODIFIED" } else { "ADDED" }, object);
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
        self.state.lock().unwrap().put(PODS, pod);
    }

    /// Deletes the pod with `uid` (`DELETED`, carrying the pod as it was).
    pub fn delete_pod(&self, uid: &str) {
        self.delete(PODS, uid);
    }

    fn delete(&self, collection: &str, key: &str) {
        let mut s = self.state.lock().unwrap();
        let found = s.objects.get(collection).and_then(|o| o.get(key)).cloned();
        if let Some(object) = found {
            s.change(collection, "DELETED", object);
        }
    }

    /// Serves the custom resource `plural` of `group`/`version` (its CRD is installed).
    pub fn install_crd(&self, group: &str, version: &str, plural: &str) {
        self.state
            .lock()
            .unwrap()
            .objects
            .entry(format!("/apis/{group}/{version}/{plural}"))
            .or_default();
    }

    /// Adds (or replaces) an object of an installed custom resource, its collection named by
    /// its `apiVersion` and `plural`.
    pub fn put_object(&self, plural: &str, object: Value) {
        let collection = format!(
            "/apis/{}/{plural}",
            object["apiVersion"].as_str().unwrap_or("")
        );
        self.state.lock().unwrap().put(&collection, object);
    }

    /// Deletes an object of a custom resource.
    pub fn delete_object(&self, api_version: &str, plural: &str, namespace: &str, name: &str) {
        self.delete(
            &format!("/apis/{api_version}/{plural}"),
            &format!("{namespace}/{name}"),
        );
    }

    /// An object of a custom resource as the server holds it now (its status included).
    pub fn object(
        &self,
        api_version: &str,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let s = self.state.lock().unwrap();
        s.objects
            .get(&format!("/apis/{api_version}/{plural}"))
            .and_then(|o| o.get(&format!("{namespace}/{name}")))
            .cloned()
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

    /// Writes a kubeconfig for this server into `dir`; returns its path.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> String {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\nusers:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\n",
            self.url()
        );
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
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

fn not_found(stream: &mut TcpStream) {
    respond(
        stream,
        "404 Not Found",
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
    );
}

/// A request's collection and, for one object's path, its namespace, name and subresource:
/// `/api/v1/pods`, `/apis/<g>/<v>[/namespaces/<ns>]/<plural>[/<name>[/status]]`.
struct Route {
    collection: String,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn route(path: &str) -> Option<Route> {
    if path == PODS {
        return Some(Route {
            collection: PODS.into(),
            namespace: None,
            name: None,
            status: false,
        });
    }
    let parts: Vec<&str> = path.strip_prefix("/apis/")?.split('/').collect();
    let (group, version, rest) = (parts.first()?, parts.get(1)?, &parts[2..]);
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (plural, name, status) = match rest {
        [plural] => (plural, None, false),
        [plural, name] => (plural, Some(name.to_string()), false),
        [plural, name, "status"] => (plural, Some(name.to_string()), true),
        _ => return None,
    };
    Some(Route {
        collection: format!("/apis/{group}/{version}/{plural}"),
        namespace,
        name,
        status,
    })
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut length = 0;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
        return;
    }
    let method = line.split(' ').next().unwrap_or("GET").to_string();
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
    if path == "/api/v1/nodes" {
        let s = state.lock().unwrap();
        let items: Vec<&Value> = s.nodes.values().collect();
        let list = json!({"kind": "NodeList", "apiVersion": "v1",
            "metadata": {"resourceVersion": s.rv.to_string()}, "items": items});
        drop(s);
        return respond(&mut stream, "200 OK", &list);
    }
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
    let Some(route) = route(path) else {
        return not_found(&mut stream);
    };
    if !state
        .lock()
        .unwrap()
        .objects
        .contains_key(&route.collection)
        && route.collection != PODS
    {
        return not_found(&mut stream);
    }
    if let Some(name) = &route.name {
        let key = format!("{}/{name}", route.namespace.as_deref().unwrap_or(""));
        let mut s = state.lock().unwrap();
        let Some(mut object) = s
            .objects
            .get(&route.collection)
            .and_then(|o| o.get(&key))
            .cloned()
        else {
            drop(s);
            return not_found(&mut stream);
        };
        if method == "PATCH" && route.status {
            let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                drop(s);
                return respond(
                    &mut stream,
                    "400 Bad Request",
                    &json!({"kind": "Status", "code": 400}),
                );
            };
            // The status subresource changes the status alone.
            merge_patch(&mut object["status"], &patch["status"]);
            s.change(&route.collection, "MODIFIED", object.clone());
            object["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        }
        drop(s);
        return respond(&mut stream, "200 OK", &object);
    }
    if q.get("watch").map(String::as_str) != Some("true") {
        let s = state.lock().unwrap();
        let items: Vec<&Value> = s
            .objects
            .get(&route.collection)
            .map(|o| {
                o.values()
                    .filter(|p| selected(&node, p))
                    .filter(|p| {
                        route
                            .namespace
                            .as_deref()
                            .is_none_or(|n| n == namespace_of(p))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let list = json!({"kind": "List", "apiVersion": "v1",
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
            let watch = Watch {
                collection: route.collection.clone(),
                namespace: route.namespace.clone(),
                node,
                bookmarks: q.get("allowWatchBookmarks").map(String::as_str) == Some("true"),
                tx,
            };
            for (rv, collection, kind, object) in &s.history {
                if *rv > from && watch.wants(collection, object) {
                    let _ = watch.tx.send(event_line(kind, object));
                }
            }
            s.watches.push(watch);
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
