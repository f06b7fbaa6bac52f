//! Tetragon's `pod` object: the Kubernetes pod and container a process runs in, as the events
//! of a Kubernetes node carry it (`process.pod`), field for field as Tetragon's `Pod`,
//! `Container` and `Image` messages write them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

fn is_false(b: &bool) -> bool {
    !*b
}

/// `pod`.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Pod {
    /// The pod's namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The pod's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The pod's UID.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The container the process runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// The pod's labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// The workload that owns the pod (a Deployment's name, not its ReplicaSet's).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload: String,
    /// Its kind: `Deployment`, `DaemonSet`, `StatefulSet`, `Job`, `CronJob`, `Pod`, ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload_kind: String,
    /// The pod's annotations, when the agent is asked to carry them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
}

/// `pod.container`.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Container {
    /// `<runtime>://<id>`, as the pod's status writes it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The container's name in the pod.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    /// When it started (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub start_time: String,
    /// The process's pid inside the container's pid namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The process may be one of the container's exec probes: its binary and arguments are a
    /// liveness or readiness probe's command.
    #[serde(default, skip_serializing_if = "is_false")]
    pub maybe_exec_probe: bool,
    /// Whether the container is privileged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
}

/// `pod.container.image`.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Image {
    /// The image by digest: `registry/repo@sha256:...`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The image by name and tag: `registry/repo:tag`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// `pod.container.security_context`.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SecurityContext {
    /// The container runs privileged.
    #[serde(default, skip_serializing_if = "is_false")]
    pub privileged: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_is_written_as_tetragon_writes_it_and_reads_back() {
        let pod = Pod {
            namespace: "default".into(),
            name: "web-7d9f".into(),
            uid: "0c5d3a4e-7f1b-4c2d-9e8f-1a2b3c4d5e6f".into(),
            container: Some(Container {
                id: "containerd://4f1e2b9c".into(),
                name: "web".into(),
                image: Some(Image {
                    id: "docker.io/library/nginx@sha256:ab".into(),
                    name: "docker.io/library/nginx:1.27".into(),
                }),
                start_time: "2026-11-25T10:00:00Z".into(),
                pid: Some(1),
                maybe_exec_probe: false,
                security_context: None,
            }),
            pod_labels: BTreeMap::from([("app".into(), "web".into())]),
            workload: "web".into(),
            workload_kind: "Deployment".into(),
            pod_annotations: BTreeMap::new(),
        };
        let v = serde_json::to_value(&pod).unwrap();
        assert_eq!(
            v["container"]["image"]["name"],
            "docker.io/library/nginx:1.27"
        );
        assert_eq!(
            v["container"]["pid"], 1,
            "a wrapper: written even when it is 1 or 0"
        );
        assert_eq!(v["pod_labels"]["app"], "web");
        assert!(
            v.get("pod_annotations").is_none() && v["container"].get("maybe_exec_probe").is_none()
        );
        assert_eq!(serde_json::from_value::<Pod>(v).unwrap(), pod);
    }
}
