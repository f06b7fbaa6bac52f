//! Which processes a policy applies to on a Kubernetes node: a `TracingPolicyNamespaced`
//! applies to the pods of its namespace, a `podSelector` to the pods whose labels it selects
//! (in the policy's namespace, or in every namespace for a `TracingPolicy`). A policy with
//! neither applies to every process of the node, as before pods were known.
//!
//! The agent keeps, for each scoped policy, the cgroups of the pods [`PodScope::selects`] in a
//! map its programs check on every call of the policy's hooks, so a process outside them is
//! never acted on, whatever the hook sees.

use std::collections::BTreeMap;

use crate::{
    spec::{LabelSelector, PolicyKind},
    Policy,
};

/// The pods a policy applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodScope {
    /// The namespace of a namespaced policy; `None`: every namespace.
    pub namespace: Option<String>,
    /// The pods' labels; `None`: every pod (of the namespace).
    pub selector: Option<LabelSelector>,
    /// The containers' `name` and `repo`; `None`: the whole pod.
    pub containers: Option<LabelSelector>,
}

impl PodScope {
    /// The scope of `policy`; `None` when it applies to every process of the node.
    pub fn of(policy: &Policy) -> Option<PodScope> {
        let namespace = match policy.kind {
            PolicyKind::TracingPolicyNamespaced => policy.namespace.clone(),
            PolicyKind::TracingPolicy => None,
        };
        let selector = policy.spec.pod_selector.clone();
        let containers = policy.spec.container_selector.clone();
        (namespace.is_some() || selector.is_some() || containers.is_some()).then_some(PodScope {
            namespace,
            selector,
            containers,
        })
    }

    /// Whether a container named `name` running an image of `repo` is in the scope (when its
    /// pod is).
    pub fn selects_container(&self, name: &str, repo: &str) -> bool {
        let fields: BTreeMap<String, String> = [("name", name), ("repo", repo)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.containers
            .as_ref()
            .is_none_or(|s| label_selector_holds(s, &fields))
    }

    /// Whether a pod of `namespace` with `labels` is in the scope.
    pub fn selects(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.namespace.as_deref().is_some_and(|n| n != namespace) {
            return false;
        }
        self.selector
            .as_ref()
            .is_none_or(|sel| label_selector_holds(sel, labels))
    }

    /// The scope in words, for `vigil policy explain` and the agent's log.
    pub fn describe(&self) -> String {
        let what = match &self.containers {
            Some(c) => match terms(c) {
                Some(t) => format!("the containers {t} of "),
                None => String::new(),
            },
            None => String::new(),
        };
        let pods = match self.selector.as_ref().and_then(terms) {
            None => "every pod".to_string(),
            Some(t) => format!("the pods labelled {t}"),
        };
        match &self.namespace {
            Some(ns) => format!("{what}{pods} of namespace {ns}"),
            None => format!("{what}{pods} of every namespace"),
        }
    }
}

/// Whether the node labelled `labels` loads `policy` (its `nodeSelector`, when it has one).
pub fn node_selects(policy: &Policy, labels: &BTreeMap<String, String>) -> bool {
    policy
        .spec
        .node_selector
        .as_ref()
        .is_none_or(|sel| label_selector_holds(sel, labels))
}

/// The node selector of `policy` in words, when it has one.
pub fn describe_node_selector(policy: &Policy) -> Option<String> {
    let sel = policy.spec.node_selector.as_ref()?;
    Some(terms(sel).unwrap_or_else(|| "every node".into()))
}

/// A selector's requirements in words; `None` when it has none (it selects everything).
fn terms(sel: &LabelSelector) -> Option<String> {
    let mut terms: Vec<String> = sel
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    terms.extend(
        sel.match_expressions
            .iter()
            .map(|r| match r.operator.as_str() {
                "Exists" => r.key.clone(),
                "DoesNotExist" => format!("!{}", r.key),
                op => format!("{} {} ({})", r.key, op.to_lowercase(), r.values.join(", ")),
            }),
    );
    (!terms.is_empty()).then(|| terms.join(", "))
}

/// Whether `labels` satisfy every requirement of `sel` (Kubernetes' semantics).
fn label_selector_holds(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    sel.match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().all(|r| {
            let value = labels.get(&r.key);
            match r.operator.as_str() {
                "In" => value.is_some_and(|v| r.values.contains(v)),
                "NotIn" => value.is_none_or(|v| !r.values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                // Refused when the policy was checked.
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::LabelRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, operator: &str, values: &[&str]) -> LabelRequirement {
        LabelRequirement {
            key: key.into(),
            operator: operator.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn a_selector_holds_when_every_label_and_requirement_does() {
        let scope = PodScope {
            namespace: Some("shop".into()),
            selector: Some(LabelSelector {
                match_labels: labels(&[("app", "web")]),
                match_expressions: vec![
                    req("tier", "In", &["front", "edge"]),
                    req("canary", "DoesNotExist", &[]),
                    req("team", "NotIn", &["ops"]),
                    req("owner", "Exists", &[]),
                ],
            }),
            containers: None,
        };
        let web = labels(&[("app", "web"), ("tier", "front"), ("owner", "x")]);
        assert!(scope.selects("shop", &web));
        assert!(!scope.selects("bank", &web), "another namespace");
        let mut canary = web.clone();
        canary.insert("canary".into(), "1".into());
        assert!(!scope.selects("shop", &canary));
        let mut ops = web.clone();
        ops.insert("team".into(), "ops".into());
        assert!(!scope.selects("shop", &ops));
        let mut back = web.clone();
        back.insert("tier".into(), "back".into());
        assert!(!scope.selects("shop", &back));
        let mut unowned = web.clone();
        unowned.remove("owner");
        assert!(!scope.selects("shop", &unowned));
        assert!(!scope.selects("shop", &labels(&[("app", "db")])));
        assert_eq!(
            scope.describe(),
            "the pods labelled app=web, tier in (front, edge), !canary, team notin (ops), owner of namespace shop"
        );
    }

    #[test]
    fn an_empty_or_absent_selector_selects_every_pod_of_its_namespace() {
        let ns = PodScope {
            namespace: Some("shop".into()),
            selector: None,
            containers: None,
        };
        assert!(ns.selects("shop", &labels(&[])));
        assert!(!ns.selects("kube-system", &labels(&[])));
        let all = PodScope {
            namespace: None,
            selector: Some(LabelSelector::default()),
            containers: None,
        };
        assert!(all.selects("anything", &labels(&[("a", "b")])));
        assert_eq!(all.describe(), "every pod of every namespace");
    }

    #[test]
    fn a_container_selector_picks_containers_by_name_and_image_repo() {
        let scope = PodScope {
            namespace: None,
            selector: None,
            containers: Some(LabelSelector {
                match_labels: labels(&[("name", "web")]),
                match_expressions: vec![req("repo", "In", &["docker.io/library/nginx"])],
            }),
        };
        assert!(scope.selects_container("web", "docker.io/library/nginx"));
        assert!(!scope.selects_container("sidecar", "docker.io/library/nginx"));
        assert!(!scope.selects_container("web", "docker.io/library/httpd"));
        assert_eq!(
            scope.describe(),
            "the containers name=web, repo in (docker.io/library/nginx) of every pod of every namespace"
        );
    }
}
