//! Kubernetes: the pod of every event. The test serves this node's pods from a Kubernetes API
//! server over real HTTP (`vigil_tests::kube_api`), makes the cgroups a pod's containers get
//! under the systemd and the cgroupfs drivers, runs processes in them, and reads the `pod`
//! object the agent put on their events: a pod listed before the agent started, one added
//! while its process already runs (its events wait for it), and one the API server never
//! names (its events go on without it, counted).

use std::{
    thread::sleep,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use vigil_tests::{
    kube_api::KubeApiServer,
    pod_cgroups::{container_id, hierarchy_root, pod_uid, ContainerCgroup, Driver},
    resolved, Agent, TempDir, NODE,
};

/// A pod of a Deployment `web` in namespace `shop` on this node, its container `web` running
/// as container `id` of `runtime`.
fn deployment_pod(uid: &str, name: &str, runtime: &str, id: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": uid,
            "labels": {"app": app, "pod-template-hash": "7d9f5c6b8"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f5c6b8",
                "uid": "5b1c0e4d-0000-4000-8000-000000000001", "controller": true}]},
        "spec": {"nodeName": NODE, "containers": [{"name": "web", "image": "nginx:1.27"}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "web", "ready": true,
            "restartCount": 0, "image": "docker.io/library/nginx:1.27",
            "imageID": "docker.io/library/nginx@sha256:ab12cd34",
            "containerID": format!("{runtime}://{id}"),
            "state": {"running": {"startedAt": "2026-12-02T10:00:03Z"}}}]}})
}

fn kubeconfig(dir: &TempDir, server: &KubeApiServer) -> String {
    let path = dir.path().join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\nusers:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\n",
        server.url()
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn pod_of<'a>(event: &'a Value, kind: &str) -> &'a Value {
    &event[kind]["process"]["pod"]
}

#[test]
fn events_carry_their_pod_under_both_cgroup_drivers_and_wait_a_bounded_time_for_a_new_one() {
    let root = hierarchy_root();
    let server = KubeApiServer::start();
    server.put_node(json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "labels": {"topology.kubernetes.io/zone": "eu-west-1a",
            "kubernetes.io/os": "linux"}}}));
    let (a, b, c, d) = (
        pod_uid("aaaa0001"),
        pod_uid("bbbb0002"),
        pod_uid("cccc0003"),
        pod_uid("dddd0004"),
    );
    let (ida, idb, idc, idd) = (
        container_id("a1"),
        container_id("b2"),
        container_id("c3"),
        container_id("d4"),
    );
    server.put_pod(deployment_pod(
        &a,
        "web-7d9f5c6b8-aaaaa",
        "containerd",
        &ida,
        "web",
    ));
    server.put_pod(deployment_pod(
        &b,
        "web-7d9f5c6b8-bbbbb",
        "cri-o",
        &idb,
        "web",
    ));
    let cg_a = ContainerCgroup::make(&root, Driver::Systemd, &a, &ida);
    let cg_b = ContainerCgroup::make(&root, Driver::Cgroupfs, &b, &idb);
    let cg_c = ContainerCgroup::make(&root, Driver::Systemd, &c, &idc);
    let cg_d = ContainerCgroup::make(&root, Driver::Cgroupfs, &d, &idd);

    let dir = TempDir::new("kubernetes");
    let config = kubeconfig(&dir, &server);
    let agent = Agent::start(&["--kubeconfig", &config, "--pod-wait-ms", "1500"]);
    agent.wait_for_log("Kubernetes: watching the pods of node", 0);
    let t = resolved("/bin/true");
    assert!(cg_a.run(&t, &["pod-a"]).status.success());
    assert!(cg_b.run(&t, &["pod-b"]).status.success());
    // Pod C's process runs before the API server has the pod: its event waits for it.
    assert!(cg_c.run(&t, &["pod-c"]).status.success());
    sleep(Duration::from_millis(300));
    server.put_pod(deployment_pod(
        &c,
        "web-7d9f5c6b8-ccccc",
        "containerd",
        &idc,
        "web",
    ));
    // Pod D is never named.
    let started = Instant::now();
    assert!(cg_d.run(&t, &["pod-d"]).status.success());
    let outside = std::process::Command::new(&t)
        .arg("no-pod")
        .status()
        .unwrap();
    assert!(outside.success());
    sleep(Duration::from_millis(2500).saturating_sub(started.elapsed()));
    let run = agent.stop();

    let exec_a = run.exec_with(&t, "pod-a");
    let pod = pod_of(exec_a, "process_exec");
    assert_eq!(pod["namespace"], "shop");
    assert_eq!(pod["name"], "web-7d9f5c6b8-aaaaa");
    assert_eq!(pod["uid"], a.as_str());
    assert_eq!(pod["pod_labels"]["app"], "web");
    assert_eq!(pod["workload"], "web");
    assert_eq!(pod["workload_kind"], "Deployment");
    let container = &pod["container"];
    assert_eq!(container["id"], format!("containerd://{ida}"));
    assert_eq!(container["name"], "web");
    assert_eq!(container["image"]["name"], "docker.io/library/nginx:1.27");
    assert_eq!(
        container["image"]["id"],
        "docker.io/library/nginx@sha256:ab12cd34"
    );
    assert_eq!(container["start_time"], "2026-12-02T10:00:03Z");
    // No pid namespace of its own here: the pid in the container is the host's.
    assert_eq!(container["pid"], exec_a["process_exec"]["process"]["pid"]);
    assert_eq!(
        exec_a["process_exec"]["process"]["cgroup"]["path"],
        cg_a.path.as_str()
    );
    assert_eq!(
        exec_a["node_labels"]["topology.kubernetes.io/zone"], "eu-west-1a",
        "the node's labels are on its events"
    );
    let exit_a = run.exit_of(&exec_a["process_exec"]["process"]["exec_id"]);
    assert_eq!(exit_a["process"]["pod"]["name"], "web-7d9f5c6b8-aaaaa");

    let pod_b = pod_of(run.exec_with(&t, "pod-b"), "process_exec");
    assert_eq!(pod_b["name"], "web-7d9f5c6b8-bbbbb");
    assert_eq!(pod_b["container"]["id"], format!("cri-o://{idb}"));
    assert_eq!(pod_b["container"]["name"], "web");

    let pod_c = pod_of(run.exec_with(&t, "pod-c"), "process_exec");
    assert_eq!(
        pod_c["name"], "web-7d9f5c6b8-ccccc",
        "the event waited for its pod"
    );

    let exec_d = run.exec_with(&t, "pod-d");
    assert!(pod_of(exec_d, "process_exec").is_null(), "{exec_d:#}");
    assert_eq!(
        exec_d["process_exec"]["process"]["cgroup"]["path"],
        cg_d.path.as_str()
    );
    assert!(pod_of(run.exec_with(&t, "no-pod"), "process_exec").is_null());

    let k = &run.stats["kubernetes"];
    assert!(k["waited"].as_u64().unwrap() >= 1, "{k:#}");
    assert!(k["without_pod"].as_u64().unwrap() >= 1, "{k:#}");
    assert!(k["pod_lists"].as_u64().unwrap() >= 1, "{k:#}");
    assert_eq!(k["held"], 0, "{k:#}");
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.contains("fieldSelector=spec.nodeName%3Dtest-node")),
        "{:#?}",
        server.requests()
    );
}

#[test]
fn without_a_cluster_the_agent_says_so_once_and_runs() {
    let agent = Agent::start(&[]);
    let t = resolved("/bin/true");
    assert!(std::process::Command::new(&t)
        .arg("alone")
        .status()
        .unwrap()
        .success());
    let run = agent.stop();
    assert!(pod_of(run.exec_with(&t, "alone"), "process_exec").is_null());
    let said: Vec<_> = run
        .stderr
        .iter()
        .filter(|l| l.contains("no Kubernetes cluster"))
        .collect();
    assert_eq!(said.len(), 1, "{:#?}", run.stderr);
    assert!(run.stats.get("kubernetes").is_none());
}
