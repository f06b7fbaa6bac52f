//! The pods each scoped policy applies to, in the kernel: `vigil_scopes` holds one entry per
//! scope and pod cgroup, which the programs look up for the caller's cgroup and its ancestors
//! before a scoped policy's hook or rule acts (`bpf-kprobes/src/bpf/include/scope.h`).
//!
//! A scope's entries are written before its policy's rules are, and removed after they are
//! gone, so a scoped policy never acts outside its pods, not even while it loads. The pods come
//! from the pod store, matched by [`PodScope::selects`]; their cgroups are found where the
//! kubelet makes them ([`crate::k8s::cgroup::pod_dirs`]). [`PodScopes::sync`] brings the map up
//! to date when the pods change, and looks again for the cgroups of selected pods that had none
//! yet (the API server tells of a pod before the kubelet makes its cgroup, and the sandbox is
//! made after the cgroup, so the next look finds it before the pod's first container starts).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aya::{
    maps::{HashMap as BpfHashMap, MapData},
    Pod,
};
use vigil_bpf_kprobes::abi;
use vigil_policy_engine::scope::PodScope;

use super::{map_err, PolicyLoadError};
use crate::k8s::{cgroup::pod_dirs, pods::PodStore, watch::lock};

#[derive(Clone, Copy)]
#[repr(transparent)]
struct ScopeKeyPod(abi::ScopeKey);
// SAFETY: #[repr(C)] integers only.
unsafe impl Pod for ScopeKeyPod {}

/// How long a container cgroup the pod store does not name is looked at again every tick.
const UNNAMED_LOOK: Duration = Duration::from_secs(30);

/// Where the pods come from: the pod store and the root of the cgroup hierarchy the programs
/// read (cgroup v2, or v1's memory hierarchy).
pub struct ScopeSource {
    /// This node's pods.
    pub pods: Arc<Mutex<PodStore>>,
    /// The hierarchy's mount point.
    pub root: PathBuf,
    /// This node's labels, for the policies' `nodeSelector`.
    pub node_labels: Arc<Mutex<Arc<BTreeMap<String, String>>>>,
}

/// What a sync changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScopeChanges {
    /// Entries written.
    pub added: usize,
    /// Entries removed.
    pub removed: usize,
}

/// The scopes and their entries in `vigil_scopes`.
pub struct PodScopes {
    map: BpfHashMap<MapData, ScopeKeyPod, u8>,
    scopes: BTreeMap<u16, (String, PodScope)>,
    written: HashSet<(u16, u64)>,
    source: Option<ScopeSource>,
    /// Each selected pod's cgroup ids, once found.
    found: HashMap<String, Vec<u64>>,
    /// The pod store's generation at the last sync.
    seen: Option<u64>,
    /// Selected pods whose cgroup was not found at the last sync, and containers whose cgroup
    /// is there but not their name yet.
    missing: usize,
    /// When each container cgroup the pod store does not name was first seen: the sandbox's
    /// (which no status lists) is looked at for a while, then no more.
    unnamed: HashMap<String, Instant>,
}

impl PodScopes {
    /// Over the `vigil_scopes` map.
    pub fn new(ebpf: &mut aya::Ebpf) -> Result<Self, PolicyLoadError> {
        let map = ebpf
            .take_map("vigil_scopes")
            .ok_or_else(|| map_err("-", "vigil_scopes", "not in the embedded object"))?;
        Ok(PodScopes {
            map: BpfHashMap::try_from(map).map_err(|e| map_err("-", "vigil_scopes", e))?,
            scopes: BTreeMap::new(),
            written: HashSet::new(),
            source: None,
            found: HashMap::new(),
            seen: None,
            missing: 0,
            unnamed: HashMap::new(),
        })
    }

    /// Where pods come from, once the agent watches a cluster.
    pub fn set_source(&mut self, source: ScopeSource) {
        self.source = Some(source);
        self.seen = None;
    }

    /// This node's labels (none without a cluster).
    pub fn node_labels(&self) -> Arc<BTreeMap<String, String>> {
        self.source
            .as_ref()
            .map(|s| lock(&s.node_labels).clone())
            .unwrap_or_default()
    }

    /// Whether the agent knows any pod (else scoped policies act on nothing).
    pub fn has_source(&self) -> bool {
        self.source.is_some()
    }

    /// Registers the scope of `policy` and writes its pods' cgroups; returns its id.
    pub fn add(&mut self, policy: &str, scope: PodScope) -> Result<u16, PolicyLoadError> {
        let id = (1..abi::SCOPES as u16)
            .find(|id| !self.scopes.contains_key(id))
            .ok_or_else(|| {
                PolicyLoadError::Refused(format!(
                    "{policy}: the kernel holds {} scoped policies, all in use",
                    abi::SCOPES - 1
                ))
            })?;
        self.scopes.insert(id, (policy.to_string(), scope));
        let wanted = self.wanted();
        if let Err(e) = self.write(wanted) {
            self.remove(id);
            return Err(e);
        }
        Ok(id)
    }

    /// Removes scope `id` and its entries (its policy's rules are gone).
    pub fn remove(&mut self, id: u16) {
        self.scopes.remove(&id);
        let gone: Vec<(u16, u64)> = self
            .written
            .iter()
            .filter(|(s, _)| *s == id)
            .copied()
            .collect();
        for k in gone {
            self.delete(k);
        }
    }

    /// The pods and cgroups of scope `id` now: (pods selected, cgroups written).
    pub fn coverage(&self, id: u16) -> (usize, usize) {
        let cgroups = self.written.iter().filter(|(s, _)| *s == id).count();
        let pods = self.scopes.get(&id).map_or(0, |(_, scope)| {
            self.source.as_ref().map_or(0, |src| {
                lock(&src.pods)
                    .pods()
                    .filter(|p| scope.selects(p.namespace, p.labels))
                    .count()
            })
        });
        (pods, cgroups)
    }

    /// Brings the entries up to date when the pods changed, or a selected pod's cgroup was
    /// still missing.
    pub fn sync(&mut self) -> Result<ScopeChanges, PolicyLoadError> {
        let Some(src) = &self.source else {
            return Ok(ScopeChanges::default());
        };
        let generation = lock(&src.pods).generation();
        if self.scopes.is_empty() || (self.seen == Some(generation) && self.missing == 0) {
            self.seen = Some(generation);
            return Ok(ScopeChanges::default());
        }
        self.seen = Some(generation);
        let wanted = self.wanted();
        let written = self.write(wanted);
        if written.is_err() {
            // Looked at again next tick.
            self.seen = None;
        }
        written
    }

    /// The entries the scopes call for now.
    fn wanted(&mut self) -> HashSet<(u16, u64)> {
        let mut wanted = HashSet::new();
        self.missing = 0;
        let Some(src) = &self.source else {
            return wanted;
        };
        let store = lock(&src.pods);
        let mut live = HashSet::new();
        for pod in store.pods() {
            let ids: Vec<u16> = self
                .scopes
                .iter()
                .filter(|(_, (_, s))| s.selects(pod.namespace, pod.labels))
                .map(|(id, _)| *id)
                .collect();
            if ids.is_empty() {
                continue;
            }
            live.insert(pod.uid.to_string());
            // A scope with a container selector holds the cgroups of the containers it selects.
            let (whole, by_container): (Vec<u16>, Vec<u16>) = ids
                .into_iter()
                .partition(|id| self.scopes[id].1.containers.is_none());
            if !by_container.is_empty() {
                let known = store.containers(pod.uid);
                for (container, cgroup) in find_container_cgroups(&src.root, pod.uid) {
                    let Some((_, name, image)) = known.iter().find(|(id, _, _)| *id == container)
                    else {
                        // Started, but not in the pod's status yet: looked for again next tick,
                        // for a while (the sandbox's never is).
                        let since = *self.unnamed.entry(container).or_insert_with(Instant::now);
                        if since.elapsed() < UNNAMED_LOOK {
                            self.missing += 1;
                        }
                        // Until it is named, it is in every container scope of its pod: a
                        // container's first moments are never outside the policy meant for it
                        // (the pod's sandbox, which no status names, stays in them).
                        for id in &by_container {
                            wanted.insert((*id, cgroup));
                        }
                        continue;
                    };
                    for id in &by_container {
                        if self.scopes[id].1.selects_container(name, image_repo(image)) {
                            wanted.insert((*id, cgroup));
                        }
                    }
                }
            }
            if whole.is_empty() {
                continue;
            }
            let ids = whole;
            let cgroups = match self.found.get(pod.uid) {
                Some(c) => c.clone(),
                None => {
                    let c = find_cgroups(&src.root, pod.uid);
                    // A pod that ended (a finished Job's) has no cgroup any more: not looked for.
                    if c.is_empty() && !pod.ended {
                        self.missing += 1;
                    } else if !c.is_empty() {
                        self.found.insert(pod.uid.to_string(), c.clone());
                    }
                    c
                }
            };
            for id in ids {
                wanted.extend(cgroups.iter().map(|c| (id, *c)));
            }
        }
        self.found.retain(|uid, _| live.contains(uid));
        self.unnamed
            .retain(|_, at| at.elapsed() < UNNAMED_LOOK * 10);
        wanted
    }

    /// Removes what is written and not wanted, then writes what is wanted and not written
    /// (so a full map makes room first). An entry the kernel refuses does not stop the others;
    /// the first refusal is returned.
    fn write(&mut self, wanted: HashSet<(u16, u64)>) -> Result<ScopeChanges, PolicyLoadError> {
        let mut changes = ScopeChanges::default();
        let stale: Vec<(u16, u64)> = self.written.difference(&wanted).copied().collect();
        for k in stale {
            self.delete(k);
            changes.removed += 1;
        }
        let mut first_error = None;
        let new: Vec<(u16, u64)> = wanted.difference(&self.written).copied().collect();
        for (scope, cgroup) in new {
            let key = ScopeKeyPod(abi::ScopeKey {
                cgroup,
                scope: scope.into(),
                _pad0: 0,
            });
            match self.map.insert(key, 1, 0) {
                Ok(()) => {
                    self.written.insert((scope, cgroup));
                    changes.added += 1;
                }
                Err(e) if first_error.is_none() => {
                    let policy = self.scopes.get(&scope).map_or("-", |(p, _)| p.as_str());
                    first_error = Some(map_err(policy, "vigil_scopes", e));
                }
                Err(_) => {}
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(changes),
        }
    }

    fn delete(&mut self, (scope, cgroup): (u16, u64)) {
        let key = ScopeKeyPod(abi::ScopeKey {
            cgroup,
            scope: scope.into(),
            _pad0: 0,
        });
        // Gone already (a removed cgroup takes nothing with it, but the entry is ours to drop).
        let _ = self.map.remove(&key);
        self.written.remove(&(scope, cgroup));
    }
}

/// An image's repository: its name without the tag or digest (`docker.io/library/nginx` of
/// `docker.io/library/nginx:1.27`), as a container selector's `repo` compares it.
fn image_repo(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// The containers' cgroups of pod `uid` under `root`: runtime id and cgroup id.
fn find_container_cgroups(root: &std::path::Path, uid: &str) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    for dir in pod_dirs(uid) {
        let Ok(entries) = std::fs::read_dir(root.join(&dir)) else {
            continue;
        };
        // A pod's cgroup holds a few containers; a directory of thousands is not the kubelet's.
        for e in entries.flatten().take(256) {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(c) =
                crate::k8s::cgroup::parse(&format!("{dir}/{name}")).and_then(|p| p.container)
            else {
                continue;
            };
            if let Ok(m) = e.metadata() {
                if m.is_dir() {
                    found.push((c.id, m.ino()));
                }
            }
        }
    }
    found
}

/// The cgroup ids (kernfs ids, the inode numbers cgroupfs shows) of pod `uid` under `root`.
fn find_cgroups(root: &std::path::Path, uid: &str) -> Vec<u64> {
    pod_dirs(uid)
        .iter()
        .filter_map(|d| std::fs::symlink_metadata(root.join(d)).ok())
        .filter(|m| m.is_dir())
        .map(|m| m.ino())
        .collect()
}
