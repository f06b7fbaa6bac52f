//! This node's pods as the agent knows them: each pod by its UID (the key its cgroup path
//! gives, [`super::cgroup`]) with what an event's `pod` object says of it: namespace, name,
//! labels, annotations, the workload that owns it and, per container, the name, image and start
//! time. A pod deleted from the API server stays for a grace period, so the late events of its
//! last processes still name it.
//!
//! Fed by the pod watcher with the API server's own objects (`k8s-openapi`'s `Pod`).

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod as ApiPod;
use vigil_events::{Container, Image, Pod, SecurityContext};

/// One container of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ContainerInfo {
    /// The runtime's id alone (no `containerd://`).
    id: String,
    /// `containerd://<id>`, as the pod's status writes it.
    full_id: String,
    name: String,
    image: String,
    image_id: String,
    started_at: String,
    privileged: bool,
    /// Exec probes' commands (liveness, readiness, startup).
    probes: Vec<Vec<String>>,
}

/// What the store keeps of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PodInfo {
    namespace: String,
    name: String,
    uid: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    workload: String,
    workload_kind: String,
    containers: Vec<ContainerInfo>,
    /// Its phase is `Succeeded` or `Failed`: its processes and cgroups are gone.
    ended: bool,
}

/// The workload that owns a pod, as Tetragon names it: a Deployment for a ReplicaSet with
/// the Deployment's pod-template hash, a CronJob for a Job it named, else the controller
/// itself, else the pod.
fn workload(pod: &ApiPod) -> (String, String) {
    let meta = &pod.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let Some(owner) = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    else {
        return (name, "Pod".into());
    };
    let hash = meta
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"));
    match (owner.kind.as_str(), hash) {
        ("ReplicaSet", Some(h)) => match owner.name.strip_suffix(&format!("-{h}")) {
            Some(deployment) => (deployment.to_string(), "Deployment".into()),
            None => (owner.name.clone(), "ReplicaSet".into()),
        },
        // A CronJob names its Jobs `<cronjob>-<scheduled time in minutes>`.
        ("Job", _) => match owner.name.rsplit_once('-') {
            Some((cron, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                (cron.to_string(), "CronJob".into())
            }
            _ => (owner.name.clone(), "Job".into()),
        },
        (kind, _) => (owner.name.clone(), kind.to_string()),
    }
}

impl PodInfo {
    fn of(pod: &ApiPod) -> Option<PodInfo> {
        let meta = &pod.metadata;
        let uid = meta.uid.clone()?;
        let (workload, workload_kind) = workload(pod);
        let spec = pod.spec.as_ref();
        let statuses = pod.status.as_ref().map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
                .chain(s.ephemeral_container_statuses.iter().flatten())
                .collect::<Vec<_>>()
        });
        let mut containers = Vec::new();
        for status in statuses.into_iter().flatten() {
            let Some(full_id) = status.container_id.clone() else {
                continue; // not started yet: no cgroup to find it by
            };
            let id = full_id
                .split_once("://")
                .map_or(full_id.as_str(), |(_, id)| id)
                .to_string();
            let spec_container = spec.and_then(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .find(|c| c.name == status.name)
            });
            let probes = spec_container
                .map(|c| {
                    [&c.liveness_probe, &c.readiness_probe, &c.startup_probe]
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p.exec.as_ref()?.command.clone())
                        .collect()
                })
                .unwrap_or_default();
            let privileged = spec_container
                .and_then(|c| c.security_context.as_ref()?.privileged)
                .unwrap_or(false);
            let started_at = status
                .state
                .as_ref()
                .and_then(|s| s.running.as_ref()?.started_at.as_ref())
                .map(|t| t.0.to_string())
                .unwrap_or_default();
            containers.push(ContainerInfo {
                id,
                full_id,
                name: status.name.clone(),
                image: status.image.clone(),
                image_id: status.image_id.clone(),
                started_at,
                privileged,
                probes,
            });
        }
        Some(PodInfo {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid,
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
            workload,
            workload_kind,
            containers,
            ended: pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|p| p == "Succeeded" || p == "Failed"),
        })
    }
}

/// What a policy scope reads of a pod.
pub struct PodView<'a> {
    /// The pod's UID.
    pub uid: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// Its labels.
    pub labels: &'a BTreeMap<String, String>,
    /// It ended (`Succeeded`, `Failed`).
    pub ended: bool,
}

/// This node's pods by UID, and those deleted within the grace period.
pub struct PodStore {
    pods: HashMap<String, PodInfo>,
    deleted: VecDeque<(Instant, String)>,
    grace: Duration,
    annotations: bool,
    generation: u64,
}

impl PodStore {
    /// An empty store keeping deleted pods for `grace`; `annotations` puts the pods'
    /// annotations on events (off by default: they can hold anything).
    pub fn new(grace: Duration, annotations: bool) -> PodStore {
        PodStore {
            pods: HashMap::new(),
            deleted: VecDeque::new(),
            grace,
            annotations,
            generation: 0,
        }
    }

    /// Changes with every pod added, changed, deleted or relisted: whoever waits for a pod
    /// looks again only when it moved.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A pod was added or changed.
    pub fn apply(&mut self, pod: &ApiPod) {
        if let Some(info) = PodInfo::of(pod) {
            self.pods.insert(info.uid.clone(), info);
            self.generation += 1;
        }
    }

    /// A pod was deleted: it stays for the grace period.
    pub fn delete(&mut self, pod: &ApiPod, now: Instant) {
        if let Some(uid) = &pod.metadata.uid {
            self.apply(pod);
            self.deleted.push_back((now, uid.clone()));
        }
    }

    /// A full list replaced what the store knew (a relist): pods missing from it were deleted
    /// while the watch was down, and start their grace period now.
    pub fn replace(&mut self, pods: &[ApiPod], now: Instant) {
        let listed: std::collections::HashSet<&str> = pods
            .iter()
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        let gone: Vec<String> = self
            .pods
            .keys()
            .filter(|uid| !listed.contains(uid.as_str()))
            .filter(|uid| !self.deleted.iter().any(|(_, d)| d == *uid))
            .cloned()
            .collect();
        for uid in gone {
            self.deleted.push_back((now, uid));
        }
        for p in pods {
            self.apply(p);
        }
    }

    /// Forgets the pods deleted longer than the grace period ago.
    pub fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.deleted.front() {
            if now.duration_since(*at) < self.grace {
                break;
            }
            let (_, uid) = self.deleted.pop_front().expect("front exists");
            self.pods.remove(&uid);
        }
    }

    /// Every pod known (deleted ones within their grace period included).
    pub fn pods(&self) -> impl Iterator<Item = PodView<'_>> {
        self.pods.values().map(|p| PodView {
            uid: &p.uid,
            namespace: &p.namespace,
            labels: &p.labels,
            ended: p.ended,
        })
    }

    /// The containers of pod `uid` the store knows (started ones): runtime id, name and image.
    pub fn containers(&self, uid: &str) -> Vec<(&str, &str, &str)> {
        self.pods
            .get(uid)
            .map(|p| {
                p.containers
                    .iter()
                    .map(|c| (c.id.as_str(), c.name.as_str(), c.image.as_str()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Pods known (deleted ones within their grace period included).
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// The `pod` object of a process in pod `uid`, in the container with runtime id
    /// `container_id` (when the cgroup path names one), running `binary` with `arguments`
    /// (the event's space-joined form, to recognise an exec probe) as `pid` in the
    /// container's pid namespace.
    pub fn pod(
        &self,
        uid: &str,
        container_id: Option<&str>,
        process: Option<(&str, &str, u32)>,
    ) -> Option<Pod> {
        let info = self.pods.get(uid)?;
        let container = container_id
            .and_then(|id| info.containers.iter().find(|c| c.id == id))
            .map(|c| Container {
                id: c.full_id.clone(),
                name: c.name.clone(),
                image: Some(Image {
                    id: c.image_id.clone(),
                    name: c.image.clone(),
                }),
                start_time: c.started_at.clone(),
                pid: process.map(|(_, _, pid)| pid),
                maybe_exec_probe: process.is_some_and(|(binary, args, _)| {
                    c.probes.iter().any(|p| is_probe(p, binary, args))
                }),
                security_context: c.privileged.then_some(SecurityContext { privileged: true }),
            });
        Some(Pod {
            namespace: info.namespace.clone(),
            name: info.name.clone(),
            uid: info.uid.clone(),
            container,
            pod_labels: info.labels.clone(),
            workload: info.workload.clone(),
            workload_kind: info.workload_kind.clone(),
            pod_annotations: if self.annotations {
                info.annotations.clone()
            } else {
                BTreeMap::new()
            },
        })
    }
}

/// Whether a process is an exec probe's command: its binary is the command's first word (a
/// bare name matches any path ending in it) and its arguments are the rest.
fn is_probe(command: &[String], binary: &str, args: &str) -> bool {
    let Some((first, rest)) = command.split_first() else {
        return false;
    };
    let named = if first.contains('/') {
        first == binary
    } else {
        binary.rsplit('/').next() == Some(first.as_str())
    };
    named && vigil_events::join_arguments(rest.iter().map(String::as_str)) == args
}

#[cfg(test)]
mod tests;
