//! vigil's policies as Kubernetes objects: the CustomResourceDefinitions of `TracingPolicy`
//! (cluster-wide) and `TracingPolicyNamespaced` in the `vigil.dev` group, generated from the
//! policy's Rust types (their schema included), and the status each node's agent writes.
//!
//! The spec is Tetragon's, field for field, so a `cilium.io/v1alpha1` object moves to
//! `vigil.dev/v1alpha1` by changing its `apiVersion`. The chart installs what
//! [`custom_resource_definitions`] returns (`vigil crd` prints it).

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::TracingPolicyResource;

/// `status`: what each node's agent did with the policy, by node name (each agent writes its
/// own key, so nodes never overwrite each other).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct PolicyStatus {
    /// Per node.
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeStatus>,
}

/// One node's word on a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct NodeStatus {
    /// `loaded` or `refused`.
    pub state: String,
    /// How each hook attached, or why the policy was refused, in `vigil policy lint`'s words.
    pub message: String,
    /// When the agent wrote it (RFC 3339).
    #[serde(default)]
    pub time: String,
}

/// The API group of vigil's policies.
pub const GROUP: &str = "vigil.dev";

/// The definitions of `TracingPolicy` and `TracingPolicyNamespaced`.
pub fn custom_resource_definitions() -> [CustomResourceDefinition; 2] {
    let cluster = TracingPolicyResource::crd();
    let mut namespaced = cluster.clone();
    namespaced.metadata.name = Some(format!("tracingpoliciesnamespaced.{GROUP}"));
    namespaced.spec.scope = "Namespaced".into();
    let names = &mut namespaced.spec.names;
    names.kind = "TracingPolicyNamespaced".into();
    names.plural = "tracingpoliciesnamespaced".into();
    names.singular = Some("tracingpolicynamespaced".into());
    names.short_names = Some(vec!["vtpn".into()]);
    for v in &mut namespaced.spec.versions {
        if let Some(schema) = v
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            schema.description = Some(
                "A vigil tracing policy, applied to the pods of its namespace on every node where a vigil agent runs."
                    .into(),
            );
        }
    }
    [cluster, namespaced]
}

/// The definitions as one YAML stream, as the chart's `crds/` holds them.
pub fn custom_resource_definitions_yaml() -> String {
    custom_resource_definitions()
        .iter()
        .map(|crd| {
            format!(
                "---\n{}",
                serde_yaml::to_string(crd).expect("a CRD serializes")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_are_defined_with_the_policy_s_schema() {
        let [cluster, namespaced] = custom_resource_definitions();
        assert_eq!(
            cluster.metadata.name.as_deref(),
            Some("tracingpolicies.vigil.dev")
        );
        assert_eq!(cluster.spec.scope, "Cluster");
        assert_eq!(namespaced.spec.scope, "Namespaced");
        assert_eq!(namespaced.spec.names.kind, "TracingPolicyNamespaced");
        let v = &cluster.spec.versions[0];
        assert!(v.served && v.storage);
        assert!(v.subresources.as_ref().is_some_and(|s| s.status.is_some()));
        let schema = serde_json::to_value(&v.schema).unwrap();
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"]["properties"];
        for field in [
            "kprobes",
            "tracepoints",
            "lsmhooks",
            "podSelector",
            "options",
        ] {
            assert!(spec.get(field).is_some(), "{field}: {spec:#}");
        }
        let selector = &spec["kprobes"]["items"]["properties"]["selectors"]["items"]["properties"];
        assert!(selector.get("matchArgs").is_some(), "{selector:#}");
        let values = &selector["matchArgs"]["items"]["properties"]["values"]["items"];
        assert_eq!(values["x-kubernetes-int-or-string"], true, "{values:#}");
    }
}
