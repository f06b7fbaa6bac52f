//! Naming a process's pod: its cgroup path gives the pod's UID and the container's id
//! ([`super::cgroup`]), the [`PodStore`] the rest. Shared between the pod watcher, which fills
//! the store, and the agent's loop, which names the processes of its events.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use vigil_events::Process;

use super::{cgroup, pods::PodStore, watch::lock};
use crate::cache::ProcessCache;

/// Cgroup paths parsed and remembered; past this the memo starts again (a node has a few
/// hundred cgroups; a user creating many cannot grow it without bound).
const PARSED_MAX: usize = 8192;

/// What naming a process's pod found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Naming {
    /// The process runs in no pod (its cgroup is not one the kubelet made), or already has its
    /// pod.
    NotInPod,
    /// Its pod was named now.
    Named,
    /// Its cgroup names pod `uid`, which the store does not know (yet), or whose container
    /// the store does not know yet (the pod's status lags its containers' starts).
    Unknown(String),
}

/// What the store says of a process's pod.
enum Lookup {
    NotInPod,
    Unknown(String),
    /// The pod, and whether its container is named too.
    Found(Box<vigil_events::Pod>, bool),
}

/// This node's pods and labels, as the watcher last saw them.
#[derive(Clone)]
pub struct PodIdentity {
    /// The pods, filled by the watcher.
    pub store: Arc<Mutex<PodStore>>,
    /// The node's labels, filled by the watcher; events share one map.
    pub node_labels: Arc<Mutex<Arc<BTreeMap<String, String>>>>,
    parsed: HashMap<String, Option<cgroup::PodCgroup>>,
}

impl PodIdentity {
    /// Over `store`.
    pub fn new(store: Arc<Mutex<PodStore>>) -> PodIdentity {
        PodIdentity {
            store,
            node_labels: Arc::default(),
            parsed: HashMap::new(),
        }
    }

    /// The pod (and container) a cgroup path names.
    fn parse(&mut self, path: &str) -> Option<cgroup::PodCgroup> {
        if let Some(p) = self.parsed.get(path) {
            return p.clone();
        }
        if self.parsed.len() >= PARSED_MAX {
            self.parsed.clear();
        }
        let p = cgroup::parse(path);
        self.parsed.insert(path.to_string(), p.clone());
        p
    }

    /// Names the pod of a new execution, not shared yet, when the store knows its pod and
    /// container; otherwise leaves it for [`PodIdentity::name`].
    pub fn name_new(&mut self, process: &mut Process) {
        if let Lookup::Found(pod, true) = self.lookup(process, false) {
            process.pod = Some(pod);
        }
    }

    /// Names the pod of `process` when the store knows it, in the event and in the cache (so
    /// the process's later events have it without asking again). A known pod whose container
    /// is not known yet is named only when `settle` (no more waiting): then its container has
    /// the id its cgroup gives and nothing else.
    pub fn name(
        &mut self,
        process: &mut Arc<Process>,
        cache: &mut ProcessCache,
        settle: bool,
    ) -> Naming {
        if process.pod.is_some() {
            return Naming::NotInPod;
        }
        match self.lookup(process, settle) {
            Lookup::NotInPod => Naming::NotInPod,
            Lookup::Unknown(uid) => Naming::Unknown(uid),
            Lookup::Found(pod, complete) => {
                if complete {
                    cache.set_pod(&process.exec_id, &pod);
                }
                Arc::make_mut(process).pod = Some(pod);
                Naming::Named
            }
        }
    }

    /// The pod of `process`, and whether it is named whole (its container too).
    fn lookup(&mut self, process: &Process, settle: bool) -> Lookup {
        let Some(path) = process.cgroup.as_ref().map(|c| c.path.as_str()) else {
            return Lookup::NotInPod;
        };
        // A path cut short keeps its last components only: a user could make those read as
        // someone else's pod below a deep cgroup of their own.
        if process.flags.split(' ').any(|w| w == "truncCgroup") {
            return Lookup::NotInPod;
        }
        let Some(at) = self.parse(path) else {
            return Lookup::NotInPod;
        };
        let pod = lock(&self.store).pod(
            &at.pod_uid,
            at.container.as_ref().map(|c| c.id.as_str()),
            Some((&process.binary, &process.arguments, process.nspid)),
        );
        // A pod named without its container is not cached: the container's name is looked for
        // again on the process's next event.
        let mut complete = true;
        let pod = match (pod, &at.container) {
            (Some(mut pod), Some(c)) if pod.container.is_none() => {
                complete = false;
                if !settle {
                    return Lookup::Unknown(at.pod_uid);
                }
                pod.container = Some(vigil_events::Container {
                    id: match c.runtime.scheme() {
                        Some(scheme) => format!("{scheme}://{}", c.id),
                        None => c.id.clone(),
                    },
                    pid: Some(process.nspid),
                    ..Default::default()
                });
                Some(pod)
            }
            (pod, _) => pod,
        };
        match pod {
            Some(pod) => Lookup::Found(Box::new(pod), complete),
            None => Lookup::Unknown(at.pod_uid),
        }
    }

    /// The store's generation (see [`PodStore::generation`]).
    pub fn generation(&self) -> u64 {
        lock(&self.store).generation()
    }

    /// The node's labels now.
    pub fn node_labels(&self) -> Arc<BTreeMap<String, String>> {
        lock(&self.node_labels).clone()
    }
}
