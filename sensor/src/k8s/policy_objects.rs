//! Policies as Kubernetes objects: the agent watches vigil's `TracingPolicy` and
//! `TracingPolicyNamespaced` (`vigil.dev/v1alpha1`, the CRDs the chart installs) and Tetragon's
//! (`cilium.io/v1alpha1`, when that CRD is installed, so users migrate without rewriting), and
//! hands each object to the agent's loop as the policy text it is ([`PolicyObject`]): the same
//! gate, validation, plan and install as a file's. What the node did with a vigil object goes
//! back into its `status`, under this node's name ([`write_statuses`]); Tetragon's objects are
//! Tetragon's to describe.
//!
//! A resource whose CRD is not installed answers 404: the watcher says so once and keeps
//! trying with backoff, so installing the CRD later is picked up.

use std::collections::HashMap;

use futures::StreamExt;
use kube::{
    api::{Api, ApiResource, DynamicObject, Patch, PatchParams},
    runtime::{watcher, WatchStreamExt},
    Client,
};
use serde_json::json;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// A policy resource the agent watches.
pub struct PolicyResource {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    /// The agent writes the object's status (vigil's own objects).
    writes_status: bool,
}

/// vigil's kinds, then Tetragon's.
pub const POLICY_RESOURCES: [PolicyResource; 4] = [
    PolicyResource {
        group: "vigil.dev",
        kind: "TracingPolicy",
        plural: "tracingpolicies",
        writes_status: true,
    },
    PolicyResource {
        group: "vigil.dev",
        kind: "TracingPolicyNamespaced",
        plural: "tracingpoliciesnamespaced",
        writes_status: true,
    },
    PolicyResource {
        group: "cilium.io",
        kind: "TracingPolicy",
        plural: "tracingpolicies",
        writes_status: false,
    },
    PolicyResource {
        group: "cilium.io",
        kind: "TracingPolicyNamespaced",
        plural: "tracingpoliciesnamespaced",
        writes_status: false,
    },
];

const VERSION: &str = "v1alpha1";

impl PolicyResource {
    fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.into(),
            version: VERSION.into(),
            api_version: format!("{}/{VERSION}", self.group),
            kind: self.kind.into(),
            plural: self.plural.into(),
        }
    }
}

/// Which object a status is about.
#[derive(Debug, Clone)]
pub struct StatusTarget {
    resource: usize,
    namespace: Option<String>,
    name: String,
}

/// A change of a policy object.
#[derive(Debug, Clone)]
pub enum PolicyObject {
    /// Added or changed: its policy text, named `source` in logs and errors.
    Applied {
        /// `<plural>.<group>/[<namespace>/]<name>`.
        source: String,
        /// The object as a policy document.
        text: String,
        /// A namespaced object's namespace: its policy is named `<namespace>/<name>`, so no
        /// namespace can take another's (or a cluster policy's) name.
        namespace: Option<String>,
        /// Where the outcome goes, for vigil's objects.
        status: Option<StatusTarget>,
    },
    /// Deleted.
    Deleted {
        /// As in `Applied`.
        source: String,
    },
    /// Every object of [`POLICY_RESOURCES`]`[resource]` the API server listed has been sent
    /// (after each full list).
    Listed {
        /// Its index.
        resource: usize,
    },
}

/// What a node did with a policy object.
#[derive(Debug)]
pub struct StatusUpdate {
    /// The object.
    pub target: StatusTarget,
    /// `loaded` or `refused`.
    pub state: &'static str,
    /// How it attached, or why it was refused.
    pub message: String,
}

fn source(r: &PolicyResource, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{}.{}/{ns}/{name}", r.plural, r.group),
        None => format!("{}.{}/{name}", r.plural, r.group),
    }
}

/// The object as the policy document a file would hold.
fn policy_text(r: &PolicyResource, o: &DynamicObject) -> String {
    let mut metadata = json!({"name": o.metadata.name.clone().unwrap_or_default()});
    if let Some(ns) = &o.metadata.namespace {
        metadata["namespace"] = json!(ns);
    }
    let doc = json!({
        "apiVersion": format!("{}/{VERSION}", r.group),
        "kind": r.kind,
        "metadata": metadata,
        "spec": o.data.get("spec").cloned().unwrap_or(json!({})),
    });
    serde_yaml::to_string(&doc).unwrap_or_default()
}

/// Watches every policy resource and sends each change to `tx`, until the task is dropped.
pub async fn watch_policy_objects(
    client: Client,
    tx: UnboundedSender<PolicyObject>,
    log: impl Fn(String) + Clone + Send + 'static,
) {
    let watches = POLICY_RESOURCES
        .iter()
        .enumerate()
        .map(|(i, _)| watch_resource(client.clone(), i, tx.clone(), log.clone()));
    futures::future::join_all(watches).await;
}

async fn watch_resource(
    client: Client,
    index: usize,
    tx: UnboundedSender<PolicyObject>,
    log: impl Fn(String),
) {
    let r = &POLICY_RESOURCES[index];
    let api: Api<DynamicObject> = Api::all_with(client, &r.api_resource());
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    // What was last sent per object: a relist, or a change of the status alone, sends nothing.
    let mut sent: HashMap<String, String> = HashMap::new();
    let mut listing = Vec::new();
    let mut failing = false;
    let what = format!("{}.{}", r.plural, r.group);
    while let Some(event) = stream.next().await {
        if event.is_ok() && failing {
            log(format!("{what}: watched"));
            failing = false;
        }
        let apply = |o: &DynamicObject, sent: &mut HashMap<String, String>| {
            let name = o.metadata.name.clone().unwrap_or_default();
            let ns = o.metadata.namespace.clone();
            let src = source(r, ns.as_deref(), &name);
            let text = policy_text(r, o);
            if sent.get(&src) == Some(&text) {
                return;
            }
            sent.insert(src.clone(), text.clone());
            let status = r.writes_status.then_some(StatusTarget {
                resource: index,
                namespace: ns.clone(),
                name,
            });
            let _ = tx.send(PolicyObject::Applied {
                source: src,
                text,
                namespace: ns,
                status,
            });
        };
        match event {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(o)) => listing.push(o),
            Ok(watcher::Event::InitDone) => {
                let listed: Vec<String> = listing
                    .iter()
                    .map(|o| {
                        source(
                            r,
                            o.metadata.namespace.as_deref(),
                            o.metadata.name.as_deref().unwrap_or(""),
                        )
                    })
                    .collect();
                let gone: Vec<String> = sent
                    .keys()
                    .filter(|s| !listed.contains(s))
                    .cloned()
                    .collect();
                for src in gone {
                    sent.remove(&src);
                    let _ = tx.send(PolicyObject::Deleted { source: src });
                }
                for o in std::mem::take(&mut listing) {
                    apply(&o, &mut sent);
                }
                let _ = tx.send(PolicyObject::Listed { resource: index });
            }
            Ok(watcher::Event::Apply(o)) => apply(&o, &mut sent),
            Ok(watcher::Event::Delete(o)) => {
                let src = source(
                    r,
                    o.metadata.namespace.as_deref(),
                    o.metadata.name.as_deref().unwrap_or(""),
                );
                sent.remove(&src);
                let _ = tx.send(PolicyObject::Deleted { source: src });
            }
            Err(e) if !failing => {
                log(format!(
                    "{what}: {e}; watching again with backoff (is its CRD installed?)"
                ));
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// The longest message a node writes into a status.
const STATUS_MESSAGE_MAX: usize = 1024;

/// Writes each update into its object's `status.nodes.<node>` (a merge patch of the status
/// subresource: every node writes its own key).
pub async fn write_statuses(
    client: Client,
    node: String,
    mut rx: UnboundedReceiver<StatusUpdate>,
    log: impl Fn(String),
) {
    while let Some(u) = rx.recv().await {
        let r = &POLICY_RESOURCES[u.target.resource];
        let api: Api<DynamicObject> = match &u.target.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &r.api_resource()),
            None => Api::all_with(client.clone(), &r.api_resource()),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        // Every node writes its own key: a bounded message keeps the object well below the
        // API server's size limit on a large cluster.
        let mut message = u.message;
        if message.len() > STATUS_MESSAGE_MAX {
            let mut cut = STATUS_MESSAGE_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" …");
        }
        let patch = json!({"status": {"nodes": {node.as_str(): {
            "state": u.state,
            "message": message,
            "time": vigil_events::time::rfc3339(now),
        }}}});
        if let Err(e) = api
            .patch_status(
                &u.target.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            log(format!(
                "cannot write the status of {}.{} {}: {e}",
                r.plural, r.group, u.target.name
            ));
        }
    }
}
