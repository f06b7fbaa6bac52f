//! The pods each scoped policy applies to, in the kernel: `vigil_scopes` holds one entry per
//! scope and pod cgroup, which the file-open programs look up for the caller's cgroup and its
//! ancestors before a scoped policy's rule acts (`bpf-kprobes/src/bpf/include/scope.h`).
//!
//! Generic hooks are dispatched by caller class instead: each set of scopes some cgroup is in
//! is a class, `vigil_cgroup_classes` names each scoped cgroup's class, and the hooks of scoped
//! policies are listed by attach point and class (`hook_lists.rs`), so a call runs only the
//! hooks of the scopes its process is in, and a process in none runs none of them. A change
//! is planned first ([`PodScopes::plan`], which names the classes it needs), the class lists
//! are written, then the plan is applied ([`PodScopes::apply`]); a class no cgroup has any more
//! keeps its lists a while ([`PodScopes::take_retired`]), for a call that found it just before.
//!
//! A scope's entries are written before its policy's rules are, and removed after they are
//! gone, so a scoped policy never acts outside its pods, not even while it loads. The pods come
//! from the pod store, matched by [`PodScope::selects`]; their cgroups are found where the
//! kubelet makes them ([`crate::k8s::cgroup::pod_dirs`]). [`PodScopes::sync`] brings the map up
//! to date when the pods change, and looks again for the cgroups of selected pods that had none
//! yet (the API server tells of a pod before the kubelet makes its cgroup, and the sandbox is
//! made after the cgroup, so the next look finds it before the pod's first container starts).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aya::{
    maps::{Array, HashMap as BpfHashMap, MapData},
    Pod,
};
use vigil_bpf_kprobes::abi;
use vigil_policy_engine::scope::PodScope;

use super::{map_err, take, PolicyLoadError};
use crate::k8s::{cgroup::pod_dirs, pods::PodStore, watch::lock};

#[derive(Clone, Copy)]
#[repr(transparent)]
struct ScopeKeyPod(abi::ScopeKey);
// SAFETY: #[repr(C)] integers only.
unsafe impl Pod for ScopeKeyPod {}

/// How long a container cgroup the pod store does not name is looked at again every tick.
const UNNAMED_LOOK: Duration = Duration::from_secs(30);

/// How long a class no cgroup has keeps its lists: far longer than a program runs.
const RETIRED_KEEP: Duration = Duration::from_secs(1);

/// What the scopes call for now: the `vigil_scopes` entries and each scoped cgroup's class.
pub struct ScopePlan {
    pairs: HashSet<(u16, u64)>,
    classes: HashMap<u64, u32>,
    new: Vec<u32>,
}

impl ScopePlan {
    /// The classes the plan made (or brought back): their lists are to be written before it
    /// is applied.
    pub fn new_classes(&self) -> impl Iterator<Item = u32> + '_ {
        self.new.iter().copied()
    }

    /// Leaves the classes in `failed` (their lists could not be written) to no cgroup: each
    /// cgroup planned for one keeps the class it has (`current`), a new one gets none yet.
    pub fn withhold(&mut self, failed: &HashSet<u32>, current: &HashMap<u64, u32>) {
        self.classes.retain(|cgroup, class| {
            if !failed.contains(class) {
                return true;
            }
            match current.get(cgroup) {
                Some(kept) => {
                    *class = *kept;
                    true
                }
                None => false,
            }
        });
    }
}

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

/// The scopes, their entries in `vigil_scopes` and the caller classes.
pub struct PodScopes {
    map: BpfHashMap<MapData, ScopeKeyPod, u8>,
    /// `vigil_cgroup_classes` and `vigil_class_generation`.
    class_map: BpfHashMap<MapData, u64, u32>,
    generation_map: Array<MapData, u32>,
    generation: u32,
    /// Each class's scopes, the class of each set of scopes, and the classes of each scope.
    classes: BTreeMap<u32, BTreeSet<u16>>,
    class_ids: HashMap<BTreeSet<u16>, u32>,
    scope_classes: HashMap<u16, BTreeSet<u32>>,
    last_class: u32,
    last_scope: u16,
    /// The class written for each cgroup.
    cgroup_class: HashMap<u64, u32>,
    /// Classes no cgroup has, since when.
    retired: HashMap<u32, Instant>,
    /// The same, oldest first (a class used again, or retired again later, is left here, and
    /// skipped when it comes up).
    retired_at: std::collections::VecDeque<(u32, Instant)>,
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
        Ok(PodScopes {
            map: take(ebpf, "vigil_scopes")?,
            class_map: take(ebpf, "vigil_cgroup_classes")?,
            generation_map: take(ebpf, "vigil_class_generation")?,
            generation: 0,
            classes: BTreeMap::new(),
            class_ids: HashMap::new(),
            scope_classes: HashMap::new(),
            last_class: 0,
            last_scope: 0,
            cgroup_class: HashMap::new(),
            retired: HashMap::new(),
            retired_at: Default::default(),
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

    /// Registers the scope of `policy`; returns its id. Its pods are written by the next
    /// [`PodScopes::plan`] and [`PodScopes::apply`].
    pub fn register(&mut self, policy: &str, scope: PodScope) -> Result<u16, PolicyLoadError> {
        // Numbered on from the last, as classes are: a scope id just freed is not given to
        // another policy while a class made of it may still come back.
        let id = (1..abi::SCOPES as u16)
            .map(|i| ((self.last_scope as usize + i as usize - 1) % (abi::SCOPES - 1)) as u16 + 1)
            .find(|id| !self.scopes.contains_key(id))
            .ok_or_else(|| {
                PolicyLoadError::Refused(format!(
                    "{policy}: the kernel holds {} scoped policies, all in use",
                    abi::SCOPES - 1
                ))
            })?;
        self.scopes.insert(id, (policy.to_string(), scope));
        self.last_scope = id;
        Ok(id)
    }

    /// The namespace of scope `id` (`Some(None)`: a cluster-wide scope), if it is registered.
    pub fn namespace_of(&self, id: u16) -> Option<Option<&str>> {
        self.scopes.get(&id).map(|(_, s)| s.namespace.as_deref())
    }

    /// Forgets scope `id` (its policy's rules and hooks are gone); its entries go at the next
    /// plan and apply.
    pub fn unregister(&mut self, id: u16) {
        self.scopes.remove(&id);
    }

    /// Each class in use, planned or retired a short while ago, with its scopes.
    pub fn classes(&self) -> &BTreeMap<u32, BTreeSet<u16>> {
        &self.classes
    }

    /// The classes in use or planned that hold scope `id` (a retired one keeps its lists as
    /// they were until it goes).
    pub fn classes_of_scope(&self, id: u16) -> Vec<u32> {
        self.scope_classes
            .get(&id)
            .into_iter()
            .flatten()
            .filter(|c| !self.retired.contains_key(c))
            .copied()
            .collect()
    }

    /// The class written for each cgroup.
    pub fn cgroup_classes(&self) -> &HashMap<u64, u32> {
        &self.cgroup_class
    }

    /// Plans again at the next sync (a class's lists could not be written).
    pub fn retry(&mut self) {
        self.seen = None;
    }

    /// Whether the pods changed, or a selected pod's cgroup was still missing, since the last
    /// plan.
    pub fn needs_sync(&self) -> bool {
        let Some(src) = &self.source else {
            return false;
        };
        self.seen != Some(lock(&src.pods).generation()) || self.missing != 0
    }

    /// What the scopes call for now; a set of scopes no class has yet becomes one (its lists
    /// are written before the plan is applied).
    pub fn plan(&mut self) -> ScopePlan {
        if let Some(src) = &self.source {
            self.seen = Some(lock(&src.pods).generation());
        }
        let (pairs, sets) = self.wanted();
        let mut classes = HashMap::new();
        let mut new = Vec::new();
        for (cgroup, set) in sets {
            let id = match self.class_ids.get(&set) {
                Some(id) => *id,
                None => {
                    // Numbered on from the last: a class id is not given again while a call
                    // may still hold it.
                    let mut id = self.last_class;
                    loop {
                        id = id.wrapping_add(1).max(1);
                        if !self.classes.contains_key(&id) {
                            break;
                        }
                    }
                    self.last_class = id;
                    for scope in &set {
                        self.scope_classes.entry(*scope).or_default().insert(id);
                    }
                    self.classes.insert(id, set.clone());
                    self.class_ids.insert(set, id);
                    new.push(id);
                    id
                }
            };
            // A class used again before it went: its lists missed the changes made while it
            // was retired, and are written again with the new ones'.
            if self.retired.remove(&id).is_some() && !new.contains(&id) {
                new.push(id);
            }
            classes.insert(cgroup, id);
        }
        ScopePlan {
            pairs,
            classes,
            new,
        }
    }

    /// Writes a plan: the `vigil_scopes` entries (the file-open rules' scopes), then each
    /// cgroup's class, then a new generation so that no class found before is kept. A class
    /// no cgroup has any more is retired. The first map error is returned after the rest is
    /// written, and the next sync tries again.
    pub fn apply(&mut self, plan: ScopePlan) -> Result<ScopeChanges, PolicyLoadError> {
        let (changes, mut first_error) = match self.write(plan.pairs) {
            Ok(c) => (c, None),
            Err(e) => (ScopeChanges::default(), Some(e)),
        };
        let stale: Vec<u64> = self
            .cgroup_class
            .keys()
            .filter(|c| !plan.classes.contains_key(c))
            .copied()
            .collect();
        // The classes that may have lost their last cgroup here.
        let mut left = plan.new.clone();
        for cgroup in stale {
            let _ = self.class_map.remove(&cgroup);
            left.extend(self.cgroup_class.remove(&cgroup));
        }
        for (cgroup, class) in plan.classes {
            if self.cgroup_class.get(&cgroup) == Some(&class) {
                continue;
            }
            match self.class_map.insert(cgroup, class, 0) {
                Ok(()) => {
                    left.extend(self.cgroup_class.insert(cgroup, class));
                }
                Err(e) => {
                    first_error.get_or_insert(map_err("-", "vigil_cgroup_classes", e));
                }
            }
        }
        self.generation = self.generation.wrapping_add(1);
        if let Err(e) = self.generation_map.set(0, self.generation, 0) {
            first_error.get_or_insert(map_err("-", "vigil_class_generation", e));
        }
        if !left.is_empty() {
            let in_use: HashSet<u32> = self.cgroup_class.values().copied().collect();
            for id in left {
                if !in_use.contains(&id) && !self.retired.contains_key(&id) {
                    let now = Instant::now();
                    self.retired.insert(id, now);
                    self.retired_at.push_back((id, now));
                }
            }
        }
        if first_error.is_some() {
            self.seen = None;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(changes),
        }
    }

    /// The classes retired long enough ago that no program still runs with them: forgotten
    /// here, their lists to be removed by the caller.
    pub fn take_retired(&mut self) -> Vec<u32> {
        let mut old = Vec::new();
        while let Some((id, at)) = self.retired_at.front().copied() {
            if at.elapsed() < RETIRED_KEEP {
                break;
            }
            self.retired_at.pop_front();
            // Used again since, or retired again later (its later entry decides).
            if self.retired.get(&id) != Some(&at) {
                continue;
            }
            old.push(id);
        }
        for id in &old {
            self.retired.remove(id);
            if let Some(set) = self.classes.remove(id) {
                for scope in &set {
                    if let Some(classes) = self.scope_classes.get_mut(scope) {
                        classes.remove(id);
                        if classes.is_empty() {
                            self.scope_classes.remove(scope);
                        }
                    }
                }
                self.class_ids.remove(&set);
            }
        }
        old
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

    /// The entries the scopes call for now, and the scopes of each cgroup written: a
    /// container's cgroup is in its pod's scopes too, as a process below it is.
    #[allow(clippy::type_complexity)]
    fn wanted(&mut self) -> (HashSet<(u16, u64)>, HashMap<u64, BTreeSet<u16>>) {
        let mut wanted = HashSet::new();
        let mut sets: HashMap<u64, BTreeSet<u16>> = HashMap::new();
        self.missing = 0;
        let Some(src) = &self.source else {
            return (wanted, sets);
        };
        let store = lock(&src.pods);
        let mut live = HashSet::new();
        // A namespaced scope is looked at for its namespace's pods only: a thousand teams'
        // policies cost each pod its own team's and the cluster-wide ones.
        let mut by_namespace: HashMap<&str, Vec<u16>> = HashMap::new();
        let mut anywhere = Vec::new();
        for (id, (_, scope)) in &self.scopes {
            match &scope.namespace {
                Some(ns) => by_namespace.entry(ns.as_str()).or_default().push(*id),
                None => anywhere.push(*id),
            }
        }
        for pod in store.pods() {
            let mut ids: Vec<u16> = by_namespace
                .get(pod.namespace)
                .into_iter()
                .flatten()
                .chain(&anywhere)
                .copied()
                .filter(|id| self.scopes[id].1.selects(pod.namespace, pod.labels))
                .collect();
            ids.sort_unstable();
            if ids.is_empty() {
                continue;
            }
            live.insert(pod.uid.to_string());
            // A scope with a container selector holds the cgroups of the containers it selects.
            let (whole, by_container): (Vec<u16>, Vec<u16>) = ids
                .into_iter()
                .partition(|id| self.scopes[id].1.containers.is_none());
            let mut container_sets: Vec<(u64, BTreeSet<u16>)> = Vec::new();
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
                        container_sets.push((cgroup, by_container.iter().copied().collect()));
                        continue;
                    };
                    let mut set = BTreeSet::new();
                    for id in &by_container {
                        if self.scopes[id].1.selects_container(name, image_repo(image)) {
                            wanted.insert((*id, cgroup));
                            set.insert(*id);
                        }
                    }
                    if !set.is_empty() {
                        container_sets.push((cgroup, set));
                    }
                }
            }
            for (cgroup, mut set) in container_sets {
                set.extend(whole.iter().copied());
                sets.entry(cgroup).or_default().extend(set);
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
            for c in &cgroups {
                sets.entry(*c).or_default().extend(ids.iter().copied());
            }
            for id in ids {
                wanted.extend(cgroups.iter().map(|c| (id, *c)));
            }
        }
        self.found.retain(|uid, _| live.contains(uid));
        self.unnamed
            .retain(|_, at| at.elapsed() < UNNAMED_LOOK * 10);
        (wanted, sets)
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
