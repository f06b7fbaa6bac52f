//! The other nodes' pod ranges, for encryption awareness ([`crate::flows`]): a flow into one of
//! them is a flow to another node's pods, which a cluster with transparent encryption must
//! send encrypted. Read from every Node's `spec.podCIDRs` (`spec.podCIDR` on older clusters)
//! and, where Cilium's CRD is installed, every CiliumNode's `spec.ipam.podCIDRs` (Cilium's
//! cluster-pool IPAM gives the ranges there, not in the Node), this node's own left out.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::{
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams},
    Api, Client,
};

use super::watch::lock;

/// How often the ranges are read again.
pub const RANGES_EVERY: Duration = Duration::from_secs(10);

/// The ranges read last, and whether the agent took them since.
#[derive(Debug, Default)]
pub struct RemoteRanges {
    ranges: Vec<IpNet>,
    changed: bool,
}

impl RemoteRanges {
    /// The ranges, when they changed since the last call.
    pub fn take_changed(&mut self) -> Option<Vec<IpNet>> {
        std::mem::take(&mut self.changed).then(|| self.ranges.clone())
    }
}

/// The pod ranges of the nodes in `nodes` but `node`, from `field` of each (a list of CIDRs
/// at a JSON pointer); what does not parse is skipped.
fn ranges_of<'a>(
    nodes: impl Iterator<Item = (&'a str, Vec<String>)>,
    node: &str,
    out: &mut BTreeSet<IpNet>,
) {
    for (name, cidrs) in nodes {
        if name == node {
            continue;
        }
        out.extend(
            cidrs
                .iter()
                .filter_map(|c| c.parse::<IpNet>().ok())
                .map(|n| n.trunc()),
        );
    }
}

/// Reads the other nodes' pod ranges into `out` now and every [`RANGES_EVERY`]. A failure is
/// logged when it starts and when it ends; the ranges read last stay meanwhile.
pub async fn watch_remote_ranges(
    client: Client,
    node: String,
    out: Arc<Mutex<RemoteRanges>>,
    log: impl Fn(String),
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let gvk = GroupVersionKind::gvk("cilium.io", "v2", "CiliumNode");
    let cilium: Api<DynamicObject> = Api::all_with(
        client,
        &ApiResource::from_gvk_with_plural(&gvk, "ciliumnodes"),
    );
    let mut failing = false;
    loop {
        let mut found = BTreeSet::new();
        let read = nodes.list(&ListParams::default()).await.map(|list| {
            ranges_of(
                list.items.iter().map(|n| {
                    let spec = n.spec.clone().unwrap_or_default();
                    let cidrs = spec
                        .pod_cidrs
                        .unwrap_or_default()
                        .into_iter()
                        .chain(spec.pod_cidr)
                        .collect();
                    (n.metadata.name.as_deref().unwrap_or(""), cidrs)
                }),
                &node,
                &mut found,
            )
        });
        let listed = read.is_ok();
        match read {
            Ok(()) => {
                if failing {
                    log("the nodes' pod ranges are read again".into());
                    failing = false;
                }
            }
            Err(e) if !failing => {
                log(format!(
                    "cannot list the nodes for their pod ranges: {e}; retrying every {} s (flows to other nodes' pods are judged against the ranges read last, and the configured ones)",
                    RANGES_EVERY.as_secs()
                ));
                failing = true;
            }
            Err(_) => {}
        }
        // Without Cilium's CRD the list fails (404): nothing to add.
        if let Ok(list) = cilium.list(&ListParams::default()).await {
            ranges_of(
                list.items.iter().map(|n| {
                    let cidrs = n.data["spec"]["ipam"]["podCIDRs"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|c| c.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    (n.metadata.name.as_deref().unwrap_or(""), cidrs)
                }),
                &node,
                &mut found,
            );
        }
        if listed {
            let found: Vec<IpNet> = found.into_iter().collect();
            let mut current = lock(&out);
            if current.ranges != found {
                current.ranges = found;
                current.changed = true;
            }
        }
        tokio::time::sleep(RANGES_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_node_s_ranges_and_what_does_not_parse_are_left_out() {
        let mut out = BTreeSet::new();
        let nodes = vec![
            ("node-a", vec!["10.0.1.0/24".to_string()]),
            ("node-b", vec!["10.0.2.0/24".into(), "fd00:2::/64".into()]),
            ("node-c", vec!["not a range".into(), "10.0.3.7/24".into()]),
        ];
        ranges_of(nodes.into_iter(), "node-a", &mut out);
        let got: Vec<String> = out.iter().map(|n| n.to_string()).collect();
        assert_eq!(got, ["10.0.2.0/24", "10.0.3.0/24", "fd00:2::/64"]);
    }
}
