//! The watcher of this node's pods: kube's `watcher` on `/api/v1/pods` with the field selector
//! `spec.nodeName=<node>`, so the agent lists and watches only the pods it can see processes
//! of. kube's watcher brings the informer semantics: a list, then a watch from the list's
//! resource version with bookmarks, a relist after `410 Gone`, and (with `default_backoff`)
//! retries with backoff while the API server is away. Each change goes to the [`PodStore`];
//! a relist replaces its contents, retiring the pods deleted while the watch was down.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{
    runtime::{watcher, WatchStreamExt},
    Api, Client,
};

use super::pods::PodStore;

/// What the watcher has done, for the agent's log and stats.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WatchStats {
    /// Full lists (the first and every relist).
    pub lists: u64,
    /// Changes applied from watch streams.
    pub changes: u64,
    /// Errors the watcher retried after.
    pub errors: u64,
    /// Reads of the node's labels tried (each success or failure).
    pub node_reads: u64,
}

/// Watches the pods of `node` into `store` until the task is dropped.
pub async fn watch_pods(
    client: Client,
    node: &str,
    store: Arc<Mutex<PodStore>>,
    stats: Arc<Mutex<WatchStats>>,
    log: impl Fn(String),
) {
    let pods: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher(pods, config).default_backoff().boxed();
    let mut listing: Vec<Pod> = Vec::new();
    while let Some(event) = stream.next().await {
        let now = Instant::now();
        match event {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(p)) => listing.push(p),
            Ok(watcher::Event::InitDone) => {
                let mut s = lock(&store);
                s.replace(&std::mem::take(&mut listing), now);
                lock(&stats).lists += 1;
            }
            Ok(watcher::Event::Apply(p)) => {
                lock(&store).apply(&p);
                lock(&stats).changes += 1;
            }
            Ok(watcher::Event::Delete(p)) => {
                lock(&store).delete(&p, now);
                lock(&stats).changes += 1;
            }
            Err(e) => {
                lock(&stats).errors += 1;
                log(format!("pod watcher: {e}; retrying"));
            }
        }
        lock(&store).expire(now);
    }
}

/// The value behind `m`, even when a thread panicked while holding it: the store's data stays
/// usable, and the watcher must not stop naming pods because of it.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How often the node's labels are read again.
const NODE_LABELS_EVERY: Duration = Duration::from_secs(30);

/// Reads the labels of `node` into `labels` now and every [`NODE_LABELS_EVERY`]; a failure is
/// logged when it starts and when it ends, the last labels read staying on events meanwhile.
pub async fn watch_node_labels(
    client: Client,
    node: &str,
    labels: Arc<Mutex<Arc<BTreeMap<String, String>>>>,
    stats: Arc<Mutex<WatchStats>>,
    log: impl Fn(String),
) {
    let nodes: Api<Node> = Api::all(client);
    let mut failing = false;
    loop {
        match nodes.get(node).await {
            Ok(n) => {
                if failing {
                    log(format!("node {node}: labels read again"));
                    failing = false;
                }
                let now = n.metadata.labels.unwrap_or_default();
                let mut current = lock(&labels);
                if **current != now {
                    *current = Arc::new(now);
                }
            }
            Err(e) if !failing => {
                log(format!(
                    "node {node}: cannot read its labels: {e}; retrying every {} s",
                    NODE_LABELS_EVERY.as_secs()
                ));
                failing = true;
            }
            Err(_) => {}
        }
        lock(&stats).node_reads += 1;
        tokio::time::sleep(NODE_LABELS_EVERY).await;
    }
}

/// How long a deleted pod's late events still name it.
pub const DELETED_POD_GRACE: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vigil_tests::kube_api::KubeApiServer;

    fn pod(uid: &str, node: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("web-{}", &uid[..4]), "namespace": "shop", "uid": uid,
                "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "web", "image": "nginx:1.27"}]}})
    }

    const A: &str = "aaaaaaaa-7f1b-4c2d-9e8f-1a2b3c4d5e6f";
    const B: &str = "bbbbbbbb-7f1b-4c2d-9e8f-1a2b3c4d5e6f";
    const C: &str = "cccccccc-7f1b-4c2d-9e8f-1a2b3c4d5e6f";

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "not within 20 s: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_watcher_lists_watches_relists_after_410_and_keeps_deleted_pods_a_while() {
        let server = KubeApiServer::start();
        server.put_pod(pod(A, "node-a"));
        server.put_pod(pod(B, "node-b"));
        let config = kube::Config::new(server.url().parse().unwrap());
        let client = Client::try_from(config).unwrap();
        let store = Arc::new(Mutex::new(PodStore::new(DELETED_POD_GRACE, false)));
        let stats = Arc::new(Mutex::new(WatchStats::default()));
        let task = tokio::spawn({
            let (store, stats) = (store.clone(), stats.clone());
            async move { watch_pods(client, "node-a", store, stats, |_| {}).await }
        });
        let known = |uid: &str| store.lock().unwrap().pod(uid, None, None).is_some();
        until("the listed pod", || known(A)).await;
        assert!(!known(B), "another node's pod is not listed");
        assert!(
            server
                .requests()
                .iter()
                .all(|r| r.contains("fieldSelector=spec.nodeName%3Dnode-a")),
            "{:#?}",
            server.requests()
        );

        // A bookmark (the watch asked for them) moves the watch on; a change arrives after it;
        // a deleted pod is still named during its grace period.
        until("a watch that takes bookmarks", || {
            server
                .requests()
                .iter()
                .any(|r| r.contains("watch=true") && r.contains("allowWatchBookmarks=true"))
        })
        .await;
        server.bookmark();
        server.put_pod(pod(C, "node-a"));
        until("the watched pod", || known(C)).await;
        server.delete_pod(A);
        until("the delete", || stats.lock().unwrap().changes >= 2).await;
        assert!(known(A), "late events of a deleted pod still name it");

        // The history is compacted: 410 Gone, then a relist from which nothing is missed.
        let lists_before = stats.lock().unwrap().lists;
        server.compact();
        server.put_pod(pod(B, "node-a"));
        until("the relist", || stats.lock().unwrap().lists > lists_before).await;
        until("the pod added around the 410", || known(B)).await;
        assert!(
            server
                .requests()
                .iter()
                .filter(|r| !r.contains("watch=true"))
                .count()
                >= 2,
            "{:#?}",
            server.requests()
        );
        task.abort();
    }
}
