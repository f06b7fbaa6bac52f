//! Kubernetes identity: which pod and container a process belongs to. The cgroup path names
//! them ([`cgroup`]) before the API server has told the agent anything; the pod watcher
//! ([`watch`]) fills in names, labels and images from this node's pods ([`pods`]); the agent's
//! loop names each event's processes ([`identity`]), holding for a bounded time the events of a
//! pod it does not know yet ([`wait`]). The other nodes' pod ranges ([`ranges`]) are the
//! remote ranges of encryption awareness.

pub mod cgroup;
pub mod identity;
pub mod pods;
pub mod policy_objects;
pub mod ranges;
pub mod wait;
pub mod watch;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result};

use identity::PodIdentity;
use pods::PodStore;
use policy_objects::{PolicyObject, StatusUpdate};
use tokio::sync::mpsc;
use wait::{PodStats, PodWait};
use watch::{lock, WatchStats};

/// The largest kubeconfig read.
const KUBECONFIG_MAX: u64 = 1 << 20;

/// How the agent finds its cluster.
pub struct KubeOptions {
    /// A kubeconfig file (running outside a pod); else the pod's service account when the
    /// agent runs in one.
    pub kubeconfig: Option<PathBuf>,
    /// How long an event of a pod not known yet waits for it.
    pub pod_wait: Duration,
    /// Pods' annotations on events.
    pub annotations: bool,
    /// Where the host's cgroup hierarchy is mounted (in a pod, the host's, mounted in);
    /// `None`: where this process sees it.
    pub cgroup_root: Option<PathBuf>,
}

/// The mount point of the cgroup hierarchy the programs read: cgroup v1's memory hierarchy
/// when `subsys` is a v1 subsystem, else cgroup v2.
pub fn hierarchy_root(v2: bool) -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (point, fstype, options) = (f.get(1)?, f.get(2)?, f.get(3)?);
        let wanted = if v2 {
            *fstype == "cgroup2"
        } else {
            *fstype == "cgroup" && options.split(',').any(|o| o == "memory")
        };
        wanted.then(|| PathBuf::from(point))
    })
}

/// The cluster's client configuration, and where it came from; `None` outside a cluster.
async fn client_config(kubeconfig: Option<&Path>) -> Result<Option<(kube::Config, String)>> {
    if let Some(path) = kubeconfig {
        let text = vigil_safe_fs::read_trusted(path, KUBECONFIG_MAX)
            .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
        let file = kube::config::Kubeconfig::from_yaml(&text)
            .with_context(|| format!("{} is not a kubeconfig", path.display()))?;
        let config =
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("cannot use the kubeconfig {}", path.display()))?;
        return Ok(Some((config, format!("kubeconfig {}", path.display()))));
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
        return Ok(None);
    }
    let config = kube::Config::incluster().context(
        "in a pod (KUBERNETES_SERVICE_HOST is set) but its service account cannot be read",
    )?;
    Ok(Some((config, "the pod's service account".into())))
}

/// The agent's Kubernetes side: the watchers' tasks and the stage that names events' pods.
pub struct Kubernetes {
    /// Names processes' pods.
    pub pods: PodIdentity,
    /// Events waiting for their pod.
    pub wait: PodWait,
    watch_stats: Arc<Mutex<WatchStats>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Policy objects added, changed or deleted.
    pub policy_objects: mpsc::UnboundedReceiver<PolicyObject>,
    /// What this node did with them.
    pub statuses: mpsc::UnboundedSender<StatusUpdate>,
    /// Objects refused, by source, tried again when a policy goes.
    pub refused: std::collections::BTreeMap<String, PolicyObject>,
    /// The policy resources whose objects were all listed and applied at least once.
    pub listed: std::collections::BTreeSet<usize>,
    /// The other nodes' pod ranges, as read last.
    pub remote_ranges: Arc<Mutex<ranges::RemoteRanges>>,
}

/// What the Kubernetes side did, for the `stats` line.
#[derive(Debug, serde::Serialize)]
pub struct KubeStats {
    /// Pods known (deleted ones in their grace period included).
    pub pods_known: usize,
    /// Full lists of this node's pods.
    pub pod_lists: u64,
    /// Pod changes from the watch.
    pub pod_changes: u64,
    /// Errors the watcher retried after.
    pub watch_errors: u64,
    /// The pod stage's counters.
    #[serde(flatten)]
    pub events: PodStats,
}

impl Kubernetes {
    /// Connects to the cluster and starts watching `node`'s pods and labels; `None` (and a
    /// line in the log, through `log`) when there is no cluster to connect to.
    pub async fn start(
        opts: &KubeOptions,
        node: &str,
        log: impl Fn(String) + Clone + Send + 'static,
    ) -> Result<Option<Kubernetes>> {
        let Some((config, source)) = client_config(opts.kubeconfig.as_deref()).await? else {
            log(
                "no Kubernetes cluster (not in a pod, no --kubeconfig): events carry no pod".into(),
            );
            return Ok(None);
        };
        let mut config = config;
        if config.cluster_url.scheme_str() == Some("http") && config.root_cert.is_none() {
            // Plain HTTP needs no trust store; without this the client would still look for
            // the system's, and refuse to start on a host that has none.
            config.root_cert = Some(Vec::new());
        }
        let client =
            kube::Client::try_from(config).context("cannot build the Kubernetes client")?;
        let store = Arc::new(Mutex::new(PodStore::new(
            watch::DELETED_POD_GRACE,
            opts.annotations,
        )));
        let pods = PodIdentity::new(store.clone());
        let watch_stats = Arc::new(Mutex::new(WatchStats::default()));
        let (objects_tx, policy_objects) = mpsc::unbounded_channel();
        let (statuses, statuses_rx) = mpsc::unbounded_channel();
        let remote_ranges = Arc::new(Mutex::new(ranges::RemoteRanges::default()));
        let tasks = vec![
            tokio::spawn({
                let (client, node, out, log) = (
                    client.clone(),
                    node.to_string(),
                    remote_ranges.clone(),
                    log.clone(),
                );
                async move { ranges::watch_remote_ranges(client, node, out, log).await }
            }),
            tokio::spawn({
                let (client, log) = (client.clone(), log.clone());
                async move { policy_objects::watch_policy_objects(client, objects_tx, log).await }
            }),
            tokio::spawn({
                let (client, node, log) = (client.clone(), node.to_string(), log.clone());
                async move { policy_objects::write_statuses(client, node, statuses_rx, log).await }
            }),
            tokio::spawn({
                let (client, node, stats, log) = (
                    client.clone(),
                    node.to_string(),
                    watch_stats.clone(),
                    log.clone(),
                );
                async move { watch::watch_pods(client, &node, store, stats, log).await }
            }),
            tokio::spawn({
                let (node, labels, stats, log) = (
                    node.to_string(),
                    pods.node_labels.clone(),
                    watch_stats.clone(),
                    log.clone(),
                );
                async move { watch::watch_node_labels(client, &node, labels, stats, log).await }
            }),
        ];
        log(format!(
            "Kubernetes: watching the pods of node {node} through {source}"
        ));
        Ok(Some(Kubernetes {
            pods,
            wait: PodWait::new(opts.pod_wait),
            watch_stats,
            tasks,
            policy_objects,
            statuses,
            refused: Default::default(),
            listed: Default::default(),
            remote_ranges,
        }))
    }

    /// Waits until the first list of this node's pods is in and its labels were read (or
    /// failed to be), at most `within`; says whether they are.
    pub async fn listed(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let w = lock(&self.watch_stats).clone();
            if w.lists > 0 && w.node_reads > 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Its counters now.
    pub fn stats(&self) -> KubeStats {
        let w = lock(&self.watch_stats).clone();
        KubeStats {
            pods_known: lock(&self.pods.store).len(),
            pod_lists: w.lists,
            pod_changes: w.changes,
            watch_errors: w.errors,
            events: self.wait.stats(),
        }
    }
}

impl Drop for Kubernetes {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
