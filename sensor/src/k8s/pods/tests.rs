use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod as ApiPod;
use serde_json::json;

use super::PodStore;

const UID: &str = "0c5d3a4e-7f1b-4c2d-9e8f-1a2b3c4d5e6f";
const ID: &str = "4f1e2b9c0d3a5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f";

/// A pod of a Deployment as the API server writes it (`GET /api/v1/pods`).
fn deployment_pod(uid: &str, name: &str) -> ApiPod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "shop", "uid": uid, "resourceVersion": "4711",
            "labels": {"app": "web", "pod-template-hash": "7d9f5c6b8"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-25T10:00:00Z"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f5c6b8",
                "uid": "1d2c3b4a-0000-4000-8000-000000000001", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "nodeName": "node-a",
            "containers": [{
                "name": "web", "image": "docker.io/library/nginx:1.27",
                "securityContext": {"privileged": true},
                "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}}
            }]
        },
        "status": {
            "phase": "Running",
            "containerStatuses": [{
                "name": "web", "ready": true, "restartCount": 0,
                "image": "docker.io/library/nginx:1.27",
                "imageID": "docker.io/library/nginx@sha256:ab12cd34",
                "containerID": format!("containerd://{ID}"),
                "state": {"running": {"startedAt": "2026-11-25T10:00:03Z"}}
            }]
        }
    }))
    .unwrap()
}

#[test]
fn a_deployment_s_pod_is_named_with_its_workload_container_and_image() {
    let mut store = PodStore::new(Duration::from_secs(60), false);
    store.apply(&deployment_pod(UID, "web-7d9f5c6b8-x2x4k"));
    let pod = store
        .pod(UID, Some(ID), Some(("/bin/cat", "/tmp/healthy", 12)))
        .unwrap();
    assert_eq!(
        (pod.namespace.as_str(), pod.name.as_str()),
        ("shop", "web-7d9f5c6b8-x2x4k")
    );
    assert_eq!(
        (pod.workload.as_str(), pod.workload_kind.as_str()),
        ("web", "Deployment")
    );
    assert_eq!(pod.pod_labels["app"], "web");
    assert!(
        pod.pod_annotations.is_empty(),
        "annotations only when asked"
    );
    let c = pod.container.unwrap();
    assert_eq!(c.id, format!("containerd://{ID}"));
    assert_eq!(c.name, "web");
    let image = c.image.unwrap();
    assert_eq!(image.id, "docker.io/library/nginx@sha256:ab12cd34");
    assert_eq!(image.name, "docker.io/library/nginx:1.27");
    assert_eq!(c.start_time, "2026-11-25T10:00:03Z");
    assert_eq!(c.pid, Some(12));
    assert!(c.maybe_exec_probe, "cat /tmp/healthy is the liveness probe");
    assert!(c.security_context.unwrap().privileged);
    let other = store
        .pod(UID, Some(ID), Some(("/bin/cat", "/etc/passwd", 13)))
        .unwrap();
    assert!(!other.container.unwrap().maybe_exec_probe);
    // The pod's own cgroup (no container), and an unknown container, still name the pod.
    assert!(store.pod(UID, None, None).unwrap().container.is_none());
    assert!(store
        .pod(UID, Some(&"0".repeat(64)), None)
        .unwrap()
        .container
        .is_none());
    let with_annotations = {
        let mut s = PodStore::new(Duration::from_secs(60), true);
        s.apply(&deployment_pod(UID, "web-7d9f5c6b8-x2x4k"));
        s.pod(UID, None, None).unwrap()
    };
    assert_eq!(with_annotations.pod_annotations.len(), 1);
}

#[test]
fn workloads_are_named_as_tetragon_names_them() {
    let owned = |kind: &str, owner: &str, hash: Option<&str>| {
        let mut labels = serde_json::Map::new();
        if let Some(h) = hash {
            labels.insert("pod-template-hash".into(), json!(h));
        }
        let pod: ApiPod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "n", "uid": UID, "labels": labels,
                "ownerReferences": [{"apiVersion": "v1", "kind": kind, "name": owner, "uid": UID, "controller": true}]}
        }))
        .unwrap();
        let mut s = PodStore::new(Duration::from_secs(1), false);
        s.apply(&pod);
        let p = s.pod(UID, None, None).unwrap();
        (p.workload, p.workload_kind)
    };
    assert_eq!(
        owned("ReplicaSet", "api-5f6d", Some("5f6d")),
        ("api".into(), "Deployment".into())
    );
    assert_eq!(
        owned("ReplicaSet", "api-5f6d", None),
        ("api-5f6d".into(), "ReplicaSet".into())
    );
    assert_eq!(
        owned("Job", "backup-29123456", None),
        ("backup".into(), "CronJob".into())
    );
    assert_eq!(
        owned("Job", "migrate", None),
        ("migrate".into(), "Job".into())
    );
    assert_eq!(
        owned("DaemonSet", "cilium", None),
        ("cilium".into(), "DaemonSet".into())
    );
    let bare: ApiPod =
        serde_json::from_value(json!({"metadata": {"name": "debug", "uid": UID}})).unwrap();
    let mut s = PodStore::new(Duration::from_secs(1), false);
    s.apply(&bare);
    assert_eq!(s.pod(UID, None, None).unwrap().workload_kind, "Pod");
}

#[test]
fn a_deleted_pod_is_named_for_its_grace_period_and_a_relist_finds_the_deleted() {
    let t0 = Instant::now();
    let mut store = PodStore::new(Duration::from_secs(30), false);
    let a = deployment_pod(UID, "web-a");
    let b_uid = "9e8f7a6b-5c4d-4e3f-8a2b-1c0d9e8f7a6b";
    let b = deployment_pod(b_uid, "web-b");
    store.replace(&[a.clone(), b.clone()], t0);
    store.delete(&a, t0);
    store.expire(t0 + Duration::from_secs(10));
    assert!(
        store.pod(UID, None, None).is_some(),
        "late events still name it"
    );
    store.expire(t0 + Duration::from_secs(31));
    assert!(store.pod(UID, None, None).is_none());
    // The watch was down while b was deleted: the relist without it starts its grace period.
    store.replace(&[], t0 + Duration::from_secs(40));
    assert!(store.pod(b_uid, None, None).is_some());
    store.expire(t0 + Duration::from_secs(71));
    assert_eq!(store.len(), 0);
}
