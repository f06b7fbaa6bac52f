//! Policy scale: a thousand namespaced policies on one node, a quarter of them on the open
//! system call, and each one acts on its own namespace's pod and no other.
//!
//! The cluster (`vigil_tests::scale`) is 100 namespaces with one pod each, served by the
//! Kubernetes API test server with the pods' cgroups made here, and ten policies per namespace,
//! each killing a process of its namespace's pods that makes one system call on one path of its
//! own. The agent loads all 1,000 from a policy directory, with one policy for every process
//! on the same open call beside them; a sample of 50, spread over every namespace and call, is
//! then checked end to end: the call in the policy's own pod is killed and reported under the
//! policy's name and pod, the same call in the next namespace's pod and in no pod is not. The
//! policy for every process acts in a pod and outside any, its hook run beside the pod's own.
//! One namespace brings more policies on one call than a namespace may: those past the limit
//! are refused, naming it.

use std::{os::unix::process::ExitStatusExt, process::Command};

use vigil_bpf_kprobes::abi::SCOPED_HOOKS_PER_KEY;
use vigil_tests::{
    scale::{
        namespace, policies, write_policies, ScaleCluster, ScalePolicy, NAMESPACES, OPEN_POLICIES,
        PER_NAMESPACE,
    },
    vigil_bin, Agent, TempDir,
};

/// Policies on openat namespace team-000 brings beyond its ten: two more than fit.
const QUOTA_EXTRA: usize = SCOPED_HOOKS_PER_KEY - 3 + 2;

/// A policy for every process on the call a quarter of the namespaced ones hook.
const EVERYONE: &str = r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: scale-everyone
spec:
  kprobes:
  - call: sys_openat
    syscall: true
    args:
    - index: 1
      type: string
    selectors:
    - matchArgs:
      - index: 1
        operator: Equal
        values: ["/vigil-scale/everyone"]
      matchActions:
      - action: Sigkill
"#;
const EVERYONE_PATH: &str = "/vigil-scale/everyone";

#[test]
fn a_thousand_namespaced_policies_each_act_in_their_own_namespace_only() {
    let dir = TempDir::new("scale");
    let cluster = ScaleCluster::start(dir.path());
    let all = policies();
    assert_eq!(all.len(), NAMESPACES * PER_NAMESPACE);
    assert_eq!(
        all.iter().filter(|p| p.call == "openat").count(),
        OPEN_POLICIES
    );
    let policy_dir = dir.path().join("policies");
    write_policies(&policy_dir, &all);
    std::fs::write(policy_dir.join("everyone.yaml"), EVERYONE).unwrap();
    // Namespace team-000 brings more policies on openat than one namespace may hook one
    // function with: those past the limit are refused by name, the others load.
    let quota: Vec<ScalePolicy> = (0..QUOTA_EXTRA)
        .map(|i| ScalePolicy {
            ns: 0,
            k: PER_NAMESPACE + i,
            name: format!("team-000-zquota-{i:03}"),
            namespace: namespace(0),
            call: "openat",
            path: format!("/vigil-scale/quota/{i}"),
        })
        .collect();
    write_policies(&policy_dir, &quota);
    let open_in_team_0 = all
        .iter()
        .filter(|p| p.ns == 0 && p.call == "openat")
        .count();
    let quota_loaded = SCOPED_HOOKS_PER_KEY - open_in_team_0;
    let agent = Agent::start(&[
        "--kubeconfig",
        cluster.kubeconfig.to_str().unwrap(),
        "--policy-dir",
        policy_dir.to_str().unwrap(),
    ]);
    let log = agent.log_lines();
    let loaded = log.iter().filter(|l| l.contains(" loaded from ")).count();
    let refused = log.iter().filter(|l| l.contains("policy refused")).count();
    let reasons: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("zquota") && l.contains("already hook"))
        .collect();
    assert_eq!(refused, QUOTA_EXTRA - quota_loaded, "{}", log.join("\n"));
    assert_eq!(reasons.len(), refused, "{}", log.join("\n"));
    for r in reasons {
        assert!(
            r.contains(&format!(
                "the policies of namespace team-000 already hook sys_openat {SCOPED_HOOKS_PER_KEY} times; the kernel runs at most {SCOPED_HOOKS_PER_KEY}"
            )),
            "{r}"
        );
    }
    assert_eq!(loaded, all.len() + 1 + quota_loaded, "{}", log.join("\n"));

    let helper = vigil_bin().with_file_name("vigil-syscall");
    let helper = helper.to_str().unwrap();
    let killed = |out: &std::process::Output| out.status.signal() == Some(9);
    let ran = |out: &std::process::Output| out.status.success();

    // The pods' cgroups reach the kernel as the pod watcher learns of the pods.
    cluster.wait_until_acting(&all[0], || agent.log_lines().join("\n"));

    // 50 policies: every second namespace, the policy index cycling through all ten, so the
    // sample holds every call and the namespaces' openat policies.
    let sample: Vec<usize> = (0..50)
        .map(|j| (2 * j) * PER_NAMESPACE + j % PER_NAMESPACE)
        .collect();
    let mut failures = Vec::new();
    for &i in &sample {
        let p = &all[i];
        let own = cluster.pods[p.ns].run(helper, &[p.call, &p.path]);
        if !killed(&own) {
            failures.push(format!("{}: not killed in its own pod: {own:?}", p.name));
        }
        let next = (p.ns + 1) % NAMESPACES;
        let other = cluster.pods[next].run(helper, &[p.call, &p.path]);
        if !ran(&other) {
            failures.push(format!(
                "{}: acted in namespace {next}'s pod: {other:?}",
                p.name
            ));
        }
        let outside = Command::new(helper)
            .args([p.call, &p.path])
            .output()
            .unwrap();
        if !ran(&outside) {
            failures.push(format!("{}: acted in no pod: {outside:?}", p.name));
        }
    }
    // The policy for every process, on the call 256 scoped policies hook too.
    let in_pod = cluster.pods[7].run(helper, &["openat", EVERYONE_PATH]);
    if !killed(&in_pod) {
        failures.push(format!("scale-everyone: not killed in a pod: {in_pod:?}"));
    }
    let outside = Command::new(helper)
        .args(["openat", EVERYONE_PATH])
        .output()
        .unwrap();
    if !killed(&outside) {
        failures.push(format!("scale-everyone: not killed in no pod: {outside:?}"));
    }
    let run = agent.stop();
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Each sampled policy reported its kill once more than the first's retries, naming its
    // pod, and no other policy reported anything.
    for &i in &sample {
        let p = &all[i];
        let kills: Vec<&serde_json::Value> = run
            .events
            .iter()
            .filter_map(|e| e.get("process_kprobe"))
            .filter(|e| e["policy_name"] == p.name.as_str())
            .collect();
        assert!(!kills.is_empty(), "{}: no event", p.name);
        for e in &kills {
            assert_eq!(
                e["process"]["pod"]["namespace"], p.namespace,
                "{}: {e:#}",
                p.name
            );
            assert_eq!(e["action"], "KPROBE_ACTION_SIGKILL", "{e:#}");
        }
    }
    let everyone = run
        .events
        .iter()
        .filter_map(|e| e.get("process_kprobe"))
        .filter(|e| e["policy_name"] == "scale-everyone")
        .count();
    assert_eq!(
        everyone, 2,
        "the policy for every process: one kill in a pod, one outside"
    );
    let mut sampled: Vec<&str> = sample.iter().map(|&i| all[i].name.as_str()).collect();
    sampled.push("scale-everyone");
    let strays: Vec<&serde_json::Value> = run
        .events
        .iter()
        .filter_map(|e| e.get("process_kprobe"))
        .filter(|e| !sampled.contains(&e["policy_name"].as_str().unwrap_or("")))
        .collect();
    assert!(strays.is_empty(), "{strays:#?}");
}
