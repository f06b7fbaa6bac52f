//! Kubernetes: the pod of every event. The test serves this node's pods from a Kubernetes API
//! server over real HTTP (`vigil_tests::kube_api`), makes the cgroups a pod's containers get
//! under the systemd and the cgroupfs drivers, runs processes in them, and reads the `pod`
//! object the agent put on their events: a pod listed before the agent started, one added
//! while its process already runs (its events wait for it), and one the API server never
//! names (its events go on without it, counted).

use std::{
    os::unix::process::ExitStatusExt,
    thread::sleep,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use vigil_tests::{
    kube_api::KubeApiServer,
    pod_cgroups::{container_id, hierarchy_root, pod_uid, ContainerCgroup, Driver},
    resolved, vigil_bin, Agent, TempDir, NODE,
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
    let config = server.kubeconfig(dir.path());
    let agent = Agent::start(&["--kubeconfig", &config, "--pod-wait-ms", "1500"]);
    agent.wait_for_log("Kubernetes: watching the pods of node", 0);
    // The binary the kernel reports for /bin/true (busybox in the VM).
    let t = resolved("/bin/true");
    assert!(cg_a.run("/bin/true", &["pod-a"]).status.success());
    assert!(cg_b.run("/bin/true", &["pod-b"]).status.success());
    // Pod C's process runs before the API server has the pod: its event waits for it.
    assert!(cg_c.run("/bin/true", &["pod-c"]).status.success());
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
    assert!(cg_d.run("/bin/true", &["pod-d"]).status.success());
    let outside = std::process::Command::new("/bin/true")
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
    assert!(std::process::Command::new("/bin/true")
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

/// A namespaced policy with a podSelector: deny opening `secret` (a kill where the kernel has no
/// BPF LSM), for the pods of `shop` labelled `app: web` only.
fn scoped_deny(secret: &str) -> String {
    format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicyNamespaced
metadata:
  name: shop-web-secret
  namespace: shop
spec:
  podSelector:
    matchLabels:
      app: web
  lsmhooks:
  - hook: file_open
    args:
    - index: 0
      type: file
    selectors:
    - matchArgs:
      - index: 0
        operator: Equal
        values: ["{secret}"]
      matchActions:
      - action: Override
        argError: -1
"#
    )
}

/// A cluster-wide policy with a podSelector on a system call hook: kill the setuid helper when
/// it calls setuid(0), in the pods labelled `app: web` of every namespace.
fn scoped_setuid_kill(helper: &str) -> String {
    format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: web-no-setuid
spec:
  podSelector:
    matchExpressions:
    - key: app
      operator: In
      values: ["web"]
  kprobes:
  - call: sys_setuid
    syscall: true
    args:
    - index: 0
      type: int
    selectors:
    - matchBinaries:
      - operator: In
        values: ["{helper}"]
      matchArgs:
      - index: 0
        operator: Equal
        values: ["0"]
      matchActions:
      - action: Sigkill
"#
    )
}

fn in_namespace(mut pod: Value, namespace: &str) -> Value {
    pod["metadata"]["namespace"] = json!(namespace);
    pod
}

#[test]
fn a_namespaced_policy_with_a_pod_selector_acts_in_its_pods_cgroups_only() {
    let root = hierarchy_root();
    let server = KubeApiServer::start();
    let uid = |h: &str| pod_uid(h);
    let (web, db, bank, late) = (
        uid("e0e00001"),
        uid("e0e00002"),
        uid("e0e00003"),
        uid("e0e00004"),
    );
    let (idw, idd, idb, idl) = (
        container_id("e1"),
        container_id("e2"),
        container_id("e3"),
        container_id("e4"),
    );
    server.put_pod(deployment_pod(&web, "web-1", "containerd", &idw, "web"));
    server.put_pod(deployment_pod(&db, "db-1", "containerd", &idd, "db"));
    server.put_pod(in_namespace(
        deployment_pod(&bank, "web-2", "containerd", &idb, "web"),
        "bank",
    ));
    let cg_web = ContainerCgroup::make(&root, Driver::Systemd, &web, &idw);
    let cg_db = ContainerCgroup::make(&root, Driver::Cgroupfs, &db, &idd);
    let cg_bank = ContainerCgroup::make(&root, Driver::Systemd, &bank, &idb);

    let dir = TempDir::new("scoped");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "the secret\n").unwrap();
    let secret = secret.display().to_string();
    let policy = dir.path().join("scoped.yaml");
    std::fs::write(&policy, scoped_deny(&secret)).unwrap();
    let helper = vigil_bin().with_file_name("vigil-setuid-helper");
    let helper = helper.to_str().unwrap();
    let setuid_policy = dir.path().join("setuid.yaml");
    std::fs::write(&setuid_policy, scoped_setuid_kill(&resolved(helper))).unwrap();
    let config = server.kubeconfig(dir.path());
    let agent = Agent::start(&[
        "--kubeconfig",
        &config,
        "--policy",
        policy.to_str().unwrap(),
        "--policy",
        setuid_policy.to_str().unwrap(),
    ]);
    agent.wait_for_log(
        "applies to the pods labelled app=web of namespace shop: 1 pods now, 1 of their cgroups in the kernel",
        0,
    );
    let refused = |out: &std::process::Output| out.stdout.is_empty() && !out.status.success();
    let read = |out: &std::process::Output| out.status.success() && out.stdout == b"the secret\n";

    let in_web = cg_web.run("/bin/cat", &[&secret]);
    assert!(refused(&in_web), "the selected pod is denied: {in_web:?}");
    // A cgroup its process makes below its container's, however deep, is still the pod's.
    let mut chain = vec![cg_web.nested("escape-0")];
    for i in 1..24 {
        let next = chain[i - 1].nested(&format!("escape-{i}"));
        chain.push(next);
    }
    let in_nested = chain[23].run("/bin/cat", &[&secret]);
    while let Some(c) = chain.pop() {
        drop(c);
    }
    assert!(
        refused(&in_nested),
        "a cgroup 24 levels below the pod's is in its scope: {in_nested:?}"
    );
    let in_db = cg_db.run("/bin/cat", &[&secret]);
    assert!(
        read(&in_db),
        "a pod of the namespace the selector leaves out: {in_db:?}"
    );
    let in_bank = cg_bank.run("/bin/cat", &[&secret]);
    assert!(
        read(&in_bank),
        "the same labels in another namespace: {in_bank:?}"
    );
    let outside = std::process::Command::new("/bin/cat")
        .arg(&secret)
        .output()
        .unwrap();
    assert!(read(&outside), "a process in no pod: {outside:?}");

    // The system call hook of the cluster-wide policy: its pods in every namespace, no other.
    let killed = |out: &std::process::Output| out.status.signal() == Some(9);
    let web_setuid = cg_web.run(helper, &[]);
    assert!(killed(&web_setuid), "{web_setuid:?}");
    let bank_setuid = cg_bank.run(helper, &[]);
    assert!(
        killed(&bank_setuid),
        "the same labels in another namespace: {bank_setuid:?}"
    );
    let db_setuid = cg_db.run(helper, &[]);
    assert!(db_setuid.status.success(), "{db_setuid:?}");
    let host_setuid = std::process::Command::new(helper).output().unwrap();
    assert!(host_setuid.status.success(), "{host_setuid:?}");

    // A pod the API server tells of before the kubelet makes its cgroup.
    server.put_pod(deployment_pod(&late, "web-3", "containerd", &idl, "web"));
    sleep(Duration::from_millis(300));
    let cg_late = ContainerCgroup::make(&root, Driver::Cgroupfs, &late, &idl);
    agent.wait_for_log("policy scopes: 2 pod cgroups added", 0);
    let in_late = cg_late.run("/bin/cat", &[&secret]);
    assert!(
        refused(&in_late),
        "a pod started after the policy: {in_late:?}"
    );
    let run = agent.stop();

    let denials: Vec<&Value> = run
        .events
        .iter()
        .filter_map(|e| e.get("process_lsm"))
        .filter(|e| e["args"][0]["file_arg"]["path"] == secret.as_str())
        .collect();
    assert_eq!(denials.len(), 3, "{denials:#?}");
    let pods: Vec<&str> = denials
        .iter()
        .map(|e| e["process"]["pod"]["name"].as_str().unwrap_or("-"))
        .collect();
    // The process 24 levels down has a cgroup path too long to name its pod by: it is denied
    // all the same (the kernel checks cgroup ids), and its event names no pod rather than one
    // a cut path could fake.
    assert_eq!(pods, ["web-1", "-", "web-3"]);
    let kills: Vec<&str> = run
        .events
        .iter()
        .filter_map(|e| e.get("process_kprobe"))
        .filter(|e| e["policy_name"] == "web-no-setuid")
        .map(|e| e["process"]["pod"]["name"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        kills,
        ["web-1", "web-2"],
        "{:#?}",
        run.events
            .iter()
            .filter(|e| e.to_string().contains("setuid"))
            .collect::<Vec<_>>()
    );
    for e in denials {
        assert_eq!(e["policy_name"], "shop-web-secret");
        assert!(
            ["denied", "killed"].contains(&e["outcome"].as_str().unwrap_or("")),
            "{e:#}"
        );
    }
}

/// The spec of `scoped_deny`, as a Kubernetes object's.
fn scoped_deny_object(secret: &str) -> Value {
    let doc: Value = serde_yaml::from_str(&scoped_deny(secret)).unwrap();
    json!({"apiVersion": "vigil.dev/v1alpha1", "kind": "TracingPolicyNamespaced",
        "metadata": {"name": "shop-secret", "namespace": "shop", "uid": "9d1e0b1c-0000-4000-8000-000000000001"},
        "spec": doc["spec"]})
}

/// Waits until `f` holds, for at most 20 s.
fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "not within 20 s: {what}"
        );
        sleep(Duration::from_millis(50));
    }
}

#[test]
fn policies_from_the_api_server_are_enforced_and_each_node_says_so_in_their_status() {
    let root = hierarchy_root();
    let server = KubeApiServer::start();
    server.install_crd("vigil.dev", "v1alpha1", "tracingpolicies");
    server.install_crd("vigil.dev", "v1alpha1", "tracingpoliciesnamespaced");
    let (web, idw) = (pod_uid("f0f00001"), container_id("f1"));
    server.put_pod(deployment_pod(&web, "web-1", "containerd", &idw, "web"));
    let cg_web = ContainerCgroup::make(&root, Driver::Systemd, &web, &idw);
    let dir = TempDir::new("objects");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "the secret\n").unwrap();
    let secret = secret.display().to_string();
    server.put_object("tracingpoliciesnamespaced", scoped_deny_object(&secret));
    // A policy vigil refuses: its status says why, in lint's words.
    server.put_object(
        "tracingpolicies",
        json!({"apiVersion": "vigil.dev/v1alpha1", "kind": "TracingPolicy",
            "metadata": {"name": "broken"},
            "spec": {"kprobes": [{"call": "sys_setuid", "syscall": true,
                "args": [{"index": 0, "type": "integr"}]}]}}),
    );
    // Policies for some nodes only (nodeSelector): this node is in the general pool.
    server.put_node(json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "labels": {"pool": "general"}}}));
    for (name, pool) in [("general-only", "general"), ("gpu-only", "gpu")] {
        server.put_object(
            "tracingpolicies",
            json!({"apiVersion": "vigil.dev/v1alpha1", "kind": "TracingPolicy",
                "metadata": {"name": name},
                "spec": {"nodeSelector": {"matchLabels": {"pool": pool}},
                    "kprobes": [{"call": "sys_setuid", "syscall": true,
                        "args": [{"index": 0, "type": "int"}]}]}}),
        );
    }
    let config = server.kubeconfig(dir.path());
    let agent = Agent::start(&["--kubeconfig", &config]);
    agent.wait_for_log(
        "policy shop/shop-secret loaded from tracingpoliciesnamespaced.vigil.dev/shop/shop-secret",
        0,
    );
    let status = |plural: &str, ns: &str, name: &str| {
        server
            .object("vigil.dev/v1alpha1", plural, ns, name)
            .map(|o| o["status"]["nodes"][NODE].clone())
            .unwrap_or(Value::Null)
    };
    until("the loaded policy's status", || {
        status("tracingpoliciesnamespaced", "shop", "shop-secret")["state"] == "loaded"
    });
    let loaded = status("tracingpoliciesnamespaced", "shop", "shop-secret");
    assert!(
        loaded["message"]
            .as_str()
            .unwrap()
            .contains("applies to the pods labelled app=web of namespace shop"),
        "{loaded:#}"
    );
    until("the refused policy's status", || {
        status("tracingpolicies", "", "broken")["state"] == "refused"
    });
    until("the node-selected policies' statuses", || {
        status("tracingpolicies", "", "general-only")["state"] == "loaded"
            && status("tracingpolicies", "", "gpu-only")["state"] == "not-selected"
    });
    assert!(status("tracingpolicies", "", "gpu-only")["message"]
        .as_str()
        .unwrap()
        .contains("its nodeSelector (pool=gpu) does not select this node's labels"));
    let refused = status("tracingpolicies", "", "broken");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("spec.kprobes[0].args[0].type"),
        "{refused:#}"
    );

    // Another namespace's policy of the same name is its own: neither takes the other's.
    let mut bank = scoped_deny_object(&secret);
    bank["metadata"]["namespace"] = json!("bank");
    server.put_object("tracingpoliciesnamespaced", bank);
    agent.wait_for_log(
        "policy bank/shop-secret loaded from tracingpoliciesnamespaced.vigil.dev/bank/shop-secret",
        0,
    );
    let cat = |cg: &ContainerCgroup| cg.run("/bin/cat", &[&secret]);
    let denied = cat(&cg_web);
    assert!(
        denied.stdout.is_empty() && !denied.status.success(),
        "{denied:?}"
    );

    // Deleted from the cluster, the policy goes.
    server.delete_object(
        "vigil.dev/v1alpha1",
        "tracingpoliciesnamespaced",
        "shop",
        "shop-secret",
    );
    agent.wait_for_log("policy shop/shop-secret removed", 0);
    let read = cat(&cg_web);
    assert!(read.status.success(), "{read:?}");

    // Tetragon's CRD installed later: its objects load too, and their status is left alone.
    server.install_crd("cilium.io", "v1alpha1", "tracingpolicies");
    let mut tetragon = scoped_deny_object(&secret);
    tetragon["apiVersion"] = json!("cilium.io/v1alpha1");
    tetragon["kind"] = json!("TracingPolicy");
    tetragon["metadata"] = json!({"name": "from-tetragon"});
    server.put_object("tracingpolicies", tetragon);
    agent.wait_for_log(
        "policy from-tetragon loaded from tracingpolicies.cilium.io/from-tetragon",
        0,
    );
    let again = cat(&cg_web);
    assert!(
        again.stdout.is_empty() && !again.status.success(),
        "{again:?}"
    );
    let run = agent.stop();
    assert!(server
        .object("cilium.io/v1alpha1", "tracingpolicies", "", "from-tetragon")
        .is_some_and(|o| o.get("status").is_none()));
    assert!(
        run.stderr
            .iter()
            .any(|l| l.contains("tracingpoliciesnamespaced.cilium.io")
                && l.contains("is its CRD installed?")),
        "a resource whose CRD is missing is said once: {:#?}",
        run.stderr
    );
}

#[test]
fn a_container_selector_acts_in_the_containers_it_names_only() {
    let root = hierarchy_root();
    let server = KubeApiServer::start();
    let uid = pod_uid("c0c00001");
    let (web, sidecar) = (container_id("c1"), container_id("c2"));
    let status = |name: &str, image: &str, id: &str| {
        json!({"name": name, "ready": true, "restartCount": 0, "image": image,
            "imageID": format!("{image}@sha256:00"), "containerID": format!("containerd://{id}"),
            "state": {"running": {"startedAt": "2026-12-03T10:00:00Z"}}})
    };
    server.put_pod(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "shop", "uid": uid, "labels": {"app": "web"}},
        "spec": {"nodeName": NODE, "containers": [{"name": "web", "image": "nginx:1.27"},
            {"name": "proxy", "image": "envoyproxy/envoy:v1.31"}]},
        "status": {"containerStatuses": [status("web", "docker.io/library/nginx:1.27", &web),
            status("proxy", "docker.io/envoyproxy/envoy:v1.31", &sidecar)]}}));
    let cg_web = ContainerCgroup::make(&root, Driver::Systemd, &uid, &web);
    let cg_proxy = ContainerCgroup::make(&root, Driver::Systemd, &uid, &sidecar);
    let dir = TempDir::new("containers");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "the secret\n").unwrap();
    let secret = secret.display().to_string();
    let policy = scoped_deny(&secret).replace(
        "  podSelector:",
        "  containerSelector:\n    matchExpressions:\n    - key: repo\n      operator: In\n      values: [\"docker.io/library/nginx\"]\n  podSelector:",
    );
    let file = dir.path().join("containers.yaml");
    std::fs::write(&file, policy).unwrap();
    let config = server.kubeconfig(dir.path());
    let agent = Agent::start(&["--kubeconfig", &config, "--policy", file.to_str().unwrap()]);
    agent.wait_for_log(
        "applies to the containers repo in (docker.io/library/nginx) of the pods labelled app=web of namespace shop: 1 pods now, 1 of their cgroups",
        0,
    );
    let in_web = cg_web.run("/bin/cat", &[&secret]);
    assert!(
        in_web.stdout.is_empty() && !in_web.status.success(),
        "{in_web:?}"
    );
    let in_proxy = cg_proxy.run("/bin/cat", &[&secret]);
    assert!(
        in_proxy.status.success(),
        "the other container of the pod: {in_proxy:?}"
    );
    let run = agent.stop();
    let denied: Vec<&Value> = run
        .events
        .iter()
        .filter_map(|e| e.get("process_lsm"))
        .filter(|e| e["policy_name"] == "shop-web-secret")
        .collect();
    assert_eq!(denied.len(), 1, "{denied:#?}");
    assert_eq!(denied[0]["process"]["pod"]["container"]["name"], "web");
}

/// A restarting agent on a cluster keeps the enforcement an earlier agent pinned until the
/// cluster's policy objects are listed and enforced again: a policy that lives only in the
/// cluster never lapses while the new agent waits for the API server.
#[test]
fn a_restart_on_a_cluster_keeps_the_pinned_enforcement_until_the_policy_objects_are_back() {
    let server = KubeApiServer::start();
    for (group, plural) in [
        ("vigil.dev", "tracingpolicies"),
        ("vigil.dev", "tracingpoliciesnamespaced"),
        ("cilium.io", "tracingpolicies"),
        ("cilium.io", "tracingpoliciesnamespaced"),
    ] {
        server.install_crd(group, "v1alpha1", plural);
    }
    let dir = TempDir::new("cluster-restart");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "the secret\n").unwrap();
    let secret = secret.display().to_string();
    server.put_object(
        "tracingpolicies",
        json!({"apiVersion": "vigil.dev/v1alpha1", "kind": "TracingPolicy",
            "metadata": {"name": "cluster-secret"},
            "spec": {"lsmhooks": [{"hook": "file_open", "args": [{"index": 0, "type": "file"}],
                "selectors": [{"matchArgs": [{"index": 0, "operator": "Equal", "values": [secret]}],
                    "matchActions": [{"action": "Override", "argError": -1}]}]}]}}),
    );
    let config = server.kubeconfig(dir.path());
    let pins = format!("/sys/fs/bpf/vigil-test-{}-cluster", std::process::id());
    let args = ["--kubeconfig", config.as_str(), "--bpf-dir", pins.as_str()];
    let loaded = "policy cluster-secret loaded from tracingpolicies.vigil.dev/cluster-secret";

    let first = Agent::start(&args);
    first.wait_for_log(loaded, 0);
    first.kill();
    let second = Agent::start(&args);
    second.wait_for_log("replaced the enforcement an earlier agent left pinned", 0);
    let denied = std::process::Command::new("/bin/cat")
        .arg(&secret)
        .output()
        .unwrap();
    let run = second.stop();
    let _ = std::process::Command::new(vigil_bin())
        .args(["agent", "--cleanup", "--bpf-dir", &pins])
        .output();
    let at = |needle: &str| {
        run.stderr
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not logged:\n{}", run.stderr.join("\n")))
    };
    assert!(
        at(loaded) < at("replaced the enforcement an earlier agent left pinned"),
        "the earlier enforcement went before the cluster's policy was back:\n{}",
        run.stderr.join("\n")
    );
    assert!(
        denied.stdout.is_empty() && !denied.status.success(),
        "{denied:?}"
    );
}
