//! `make bench`, Kubernetes: what pods cost the agent, measured in one run.
//!
//! - The cgroup check of a scoped policy, per hook call: open()+close() of a file a policy's
//!   rule matches (`NoPost`, so no event is written), by a process in a pod's cgroup, with the
//!   policy unscoped, scoped to that pod (the check looks the caller's ancestors up from the
//!   root and finds the pod's cgroup at level 3), and scoped by a process in no pod (it looks
//!   up each of its ancestors and finds nothing); the rate without the agent is the baseline.
//! - Pod naming, per event: the agent's CPU for an exec storm inside a pod's cgroup, with the
//!   pod watcher (each process named from the pod store and its events carrying the pod) and
//!   without it (`--kubeconfig` left out), the same policies loaded.

use std::time::Duration;

use serde_json::json;
use vigil_tests::{
    kube_api::KubeApiServer,
    measure::{cpu_seconds, median, open_loop_child, open_rate},
    pod_cgroups::{container_id, hierarchy_root, pod_uid, ContainerCgroup, Driver},
    Agent, TempDir, NODE,
};

const OPENS: usize = 200_000;
const EXECS: usize = 10_000;
const ROUNDS: usize = 3;

/// `n` execs of /bin/true by a shell in `cg`.
fn exec_storm(cg: &ContainerCgroup, n: usize) {
    let script = format!("i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done");
    let out = cg.run("/bin/sh", &["-c", &script]);
    assert!(out.status.success());
}

fn named_rounds(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn policy(path: &str, scoped: bool) -> String {
    let selector = if scoped {
        "  podSelector:\n    matchLabels:\n      app: web\n"
    } else {
        ""
    };
    format!(
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: bench-open\nspec:\n{selector}  lsmhooks:\n  - hook: file_open\n    args:\n    - index: 0\n      type: file\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Equal\n        values: [\"{path}\"]\n      matchActions:\n      - action: NoPost\n"
    )
}

fn main() {
    if open_loop_child() {
        return;
    }
    vigil_tests::require_root();
    let root = hierarchy_root();
    let server = KubeApiServer::start();
    let (uid, id) = (pod_uid("be0c0001"), container_id("be"));
    server.put_pod(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "shop", "uid": uid, "labels": {"app": "web"}},
        "spec": {"nodeName": NODE, "containers": [{"name": "web", "image": "nginx"}]},
        "status": {"containerStatuses": [{"name": "web", "image": "nginx", "imageID": "nginx@sha256:00",
            "ready": true, "restartCount": 0, "containerID": format!("containerd://{id}")}]}}));
    let cg = ContainerCgroup::make(&root, Driver::Systemd, &uid, &id);
    let dir = TempDir::new("bench-k8s");
    let file = dir.path().join("watched");
    std::fs::write(&file, "x").unwrap();
    let file = file.to_str().unwrap().to_string();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {}\nusers:\n- name: t\n  user: {{}}\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: t\ncurrent-context: t\n", server.url()),
    )
    .unwrap();
    let kubeconfig = kubeconfig.to_str().unwrap().to_string();
    let (unscoped, scoped) = (
        dir.path().join("unscoped.yaml"),
        dir.path().join("scoped.yaml"),
    );
    std::fs::write(&unscoped, policy(&file, false)).unwrap();
    std::fs::write(&scoped, policy(&file, true)).unwrap();
    let with = |p: &std::path::Path| {
        Agent::start(&["--kubeconfig", &kubeconfig, "--policy", p.to_str().unwrap()])
    };

    let (mut base, mut plain, mut in_pod, mut outside) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        base.push(open_rate(Some(&cg), &file, OPENS));
        let a = with(&unscoped);
        plain.push(open_rate(Some(&cg), &file, OPENS));
        a.stop();
        let a = with(&scoped);
        a.wait_for_log("1 pods now", 0);
        in_pod.push(open_rate(Some(&cg), &file, OPENS));
        outside.push(open_rate(None, &file, OPENS));
        a.stop();
    }
    let rounds = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "rounds (opens/s): no agent {}; unscoped {}; scoped, in the pod {}; scoped, in no pod {}",
        rounds(&base),
        rounds(&plain),
        rounds(&in_pod),
        rounds(&outside)
    );
    let (b, p, i, o) = (median(base), median(plain), median(in_pod), median(outside));
    let ns = |rate: f64| 1e9 / rate;
    println!("| open()+close() of a file a NoPost rule matches, {OPENS} times (median of {ROUNDS}) | rate | ratio to no agent | ratio to the unscoped rule | ns per call over the unscoped rule |");
    println!("|---|---|---|---|---|");
    println!("| no agent | {b:.0}/s | 1.000 | | |");
    println!(
        "| unscoped rule, process in a pod | {p:.0}/s | {:.3} | 1.000 | 0 |",
        p / b
    );
    println!(
        "| rule scoped to the pod, process in it (its pod's cgroup found at level 3) | {i:.0}/s | {:.3} | {:.3} | {:.0} |",
        i / b,
        i / p,
        ns(i) - ns(p)
    );
    println!(
        "| rule scoped to the pod, process in no pod (its 2 ancestors looked up, none found) | {o:.0}/s | {:.3} | {:.3} | {:.0} |",
        o / b,
        o / p,
        ns(o) - ns(p)
    );

    // Pod naming: the agent's CPU per exec in the pod, with and without the cluster.
    let (mut named, mut unnamed) = (vec![], vec![]);
    for _ in 0..ROUNDS {
        for (k8s, out) in [(true, &mut named), (false, &mut unnamed)] {
            let agent = if k8s {
                Agent::start(&["--kubeconfig", &kubeconfig])
            } else {
                Agent::start(&[])
            };
            std::thread::sleep(Duration::from_millis(300));
            let cpu0 = cpu_seconds(agent.pid());
            exec_storm(&cg, EXECS);
            std::thread::sleep(Duration::from_millis(500));
            let cpu = cpu_seconds(agent.pid()) - cpu0;
            let run = agent.stop();
            if k8s {
                let k = &run.stats["kubernetes"];
                assert!(
                    k["events_with_pod"].as_u64().unwrap() as usize >= EXECS,
                    "{k}"
                );
            }
            out.push(cpu * 1e6 / EXECS as f64);
        }
    }
    println!(
        "rounds (µs per exec): without a cluster {}; with the pod watcher {}",
        named_rounds(&unnamed),
        named_rounds(&named)
    );
    let (n, u) = (median(named), median(unnamed));
    println!();
    println!("| agent CPU per exec in a pod (exec + exit events, {EXECS} execs, median of {ROUNDS}) | µs |");
    println!("|---|---|");
    println!("| without a cluster (no pod named) | {u:.1} |");
    println!("| with the pod watcher (every event names its pod) | {n:.1} |");
    println!("| ratio | {:.3} |", n / u);
}
