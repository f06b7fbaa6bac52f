//! Many teams' policies on one node, for the policy-scale scenario (`tests/tests/policy_scale.rs`)
//! and its bench (`vigil-bench-scale`): [`NAMESPACES`] namespaces with one pod each (its cgroup
//! made by the test, the pod served by the Kubernetes API test server), and [`PER_NAMESPACE`]
//! `TracingPolicyNamespaced` in each. Every policy kills a process of its namespace's pods that
//! makes one system call on one path of its own (`vigil-syscall` makes exactly that call), so
//! each policy's reach can be checked alone. [`OPEN_POLICIES`] of them hook `openat`, the call
//! every process makes.

use std::{
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::json;

use crate::{
    kube_api::KubeApiServer,
    pod_cgroups::{container_id, hierarchy_root, pod_uid, ContainerCgroup, Driver},
    vigil_bin, NODE,
};

/// Namespaces, one pod each.
pub const NAMESPACES: usize = 100;
/// Policies per namespace.
pub const PER_NAMESPACE: usize = 10;
/// Policies on the open system call, over every namespace.
pub const OPEN_POLICIES: usize = 256;

/// One generated policy.
#[derive(Debug, Clone)]
pub struct ScalePolicy {
    /// Its namespace's index.
    pub ns: usize,
    /// Its index in the namespace.
    pub k: usize,
    /// `team-NNN-pK`.
    pub name: String,
    /// `team-NNN`.
    pub namespace: String,
    /// The system call it hooks, as `vigil-syscall` names it.
    pub call: &'static str,
    /// The path it kills for.
    pub path: String,
}

/// The namespace of index `ns`.
pub fn namespace(ns: usize) -> String {
    format!("team-{ns:03}")
}

/// The call policy `k` of namespace `ns` hooks: two or three per namespace on `openat`
/// ([`OPEN_POLICIES`] in all), the others one each on calls a shell, a package manager or a
/// build makes all day.
fn call_of(ns: usize, k: usize) -> &'static str {
    let extra_opens = OPEN_POLICIES - 2 * NAMESPACES;
    match k {
        0 | 1 => "openat",
        2 if ns < extra_opens => "openat",
        2 => "chmod",
        3 => "mkdir",
        4 => "chdir",
        5 => "truncate",
        6 => "unlink",
        7 => "rmdir",
        8 => "access",
        _ => "statfs",
    }
}

/// Every policy, namespace by namespace. The paths are under `/vigil-scale`, which need not
/// exist: each hook is on the call's entry, so a call on a missing path is judged too.
pub fn policies() -> Vec<ScalePolicy> {
    (0..NAMESPACES)
        .flat_map(|ns| {
            (0..PER_NAMESPACE).map(move |k| ScalePolicy {
                ns,
                k,
                name: format!("{}-p{k}", namespace(ns)),
                namespace: namespace(ns),
                call: call_of(ns, k),
                path: format!("/vigil-scale/t{ns:03}/p{k}"),
            })
        })
        .collect()
}

/// The policy's YAML: a `TracingPolicyNamespaced` for the pods labelled `app: svc` of its
/// namespace, a Sigkill when its call names its path.
pub fn policy_yaml(p: &ScalePolicy) -> String {
    // openat(dirfd, path, ...): the path is the second argument; the others take it first.
    let index = if p.call == "openat" { 1 } else { 0 };
    format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicyNamespaced
metadata:
  name: {name}
  namespace: {namespace}
spec:
  podSelector:
    matchLabels:
      app: svc
  kprobes:
  - call: sys_{call}
    syscall: true
    args:
    - index: {index}
      type: string
    selectors:
    - matchArgs:
      - index: {index}
        operator: Equal
        values: ["{path}"]
      matchActions:
      - action: Sigkill
"#,
        name = p.name,
        namespace = p.namespace,
        call = p.call,
        path = p.path,
    )
}

/// Writes `policies` into `dir`, one file each.
pub fn write_policies(dir: &Path, policies: &[ScalePolicy]) {
    std::fs::create_dir_all(dir).unwrap();
    for p in policies {
        std::fs::write(dir.join(format!("{}.yaml", p.name)), policy_yaml(p)).unwrap();
    }
}

/// The namespaces' pods: served by a Kubernetes API test server, each with its cgroup.
pub struct ScaleCluster {
    /// The API server (kept running).
    pub server: KubeApiServer,
    /// Each namespace's pod's container cgroup, by namespace index.
    pub pods: Vec<ContainerCgroup>,
    /// The kubeconfig naming the server.
    pub kubeconfig: PathBuf,
}

impl ScaleCluster {
    /// Serves a pod `svc-NNN` (labelled `app: svc`) in each namespace and makes its cgroups;
    /// the kubeconfig is written into `dir`.
    pub fn start(dir: &Path) -> ScaleCluster {
        let root = hierarchy_root();
        let server = KubeApiServer::start();
        let mut pods = Vec::new();
        for ns in 0..NAMESPACES {
            let uid = pod_uid(&format!("5ca1{ns:04x}"));
            let id = container_id(&format!("5c{ns:04x}"));
            server.put_pod(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("svc-{ns:03}"), "namespace": namespace(ns), "uid": uid,
                    "labels": {"app": "svc"}},
                "spec": {"nodeName": NODE, "containers": [{"name": "svc", "image": "busybox:1.36"}]},
                "status": {"phase": "Running", "containerStatuses": [{"name": "svc", "ready": true,
                    "restartCount": 0, "image": "docker.io/library/busybox:1.36",
                    "imageID": "docker.io/library/busybox@sha256:0123",
                    "containerID": format!("containerd://{id}"),
                    "state": {"running": {"startedAt": "2026-12-07T10:00:00Z"}}}]}}));
            pods.push(ContainerCgroup::make(&root, Driver::Systemd, &uid, &id));
        }
        let kubeconfig = PathBuf::from(server.kubeconfig(dir));
        ScaleCluster {
            server,
            pods,
            kubeconfig,
        }
    }
}

impl ScaleCluster {
    /// Makes policy `p`'s call in its namespace's pod with `vigil-syscall` until the policy
    /// kills it: the pods' cgroups reach the kernel as the agent's pod watcher learns of the
    /// pods. Panics after 30 s with `log()` (the agent's log).
    pub fn wait_until_acting(&self, p: &ScalePolicy, log: impl Fn() -> String) {
        let helper = vigil_bin().with_file_name("vigil-syscall");
        let helper = helper.to_str().expect("a UTF-8 path");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.pods[p.ns]
            .run(helper, &[p.call, &p.path])
            .status
            .signal()
            != Some(9)
        {
            assert!(
                Instant::now() < deadline,
                "{} never acted in its pod:\n{}",
                p.name,
                log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
