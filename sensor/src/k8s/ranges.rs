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

/// The shortest prefixes taken as one node's pod range: anything wider (`0.0.0.0/0` in a
/// hostile or broken object) would make every flow of the node a "remote" one.
const MIN_PREFIX_V4: u8 = 8;
const MIN_PREFIX_V6: u8 = 32;

/// The most ranges taken (the kernel's map holds 4096, with the configured ones).
const MAX_DISCOVERED: usize = 3072;

/// The ranges read last, and whether the agent took them since.
#[derive(Debug, Default)]
pub struct RemoteRanges {
    ranges: Vec<IpNet>,
    changed: bool,
    /// The agent could not write them: it says so once, and tries again.
    pub failing: bool,
}

impl RemoteRanges {
    /// The ranges, when they changed since the last call.
    pub fn take_changed(&mut self) -> Option<Vec<IpNet>> {
        std::mem::take(&mut self.changed).then(|| self.ranges.clone())
    }

    /// Gives the ranges again at the next [`RemoteRanges::take_changed`] (they could not be
    /// written).
    pub fn retry(&mut self) {
        self.changed = true;
    }
}

/// Which ranges are the other nodes': this node's own taken out (and any range overlapping
/// them: a Node's range and a CiliumNode's may disagree), the too wide refused, the rest
/// aggregated and capped. Returns them and what was refused.
fn remote_only(found: &BTreeSet<IpNet>, own: &BTreeSet<IpNet>) -> (Vec<IpNet>, Vec<String>) {
    let mut refused = Vec::new();
    let kept: Vec<IpNet> = found
        .iter()
        .filter(|r| {
            let floor = match r {
                IpNet::V4(_) => MIN_PREFIX_V4,
                IpNet::V6(_) => MIN_PREFIX_V6,
            };
            if r.prefix_len() < floor {
                refused.push(format!("{r} (wider than /{floor})"));
                return false;
            }
            !own.iter().any(|o| o.contains(*r) || r.contains(o))
        })
        .copied()
        .collect();
    let mut kept = IpNet::aggregate(&kept);
    if kept.len() > MAX_DISCOVERED {
        refused.push(format!(
            "{} ranges past the first {MAX_DISCOVERED}",
            kept.len() - MAX_DISCOVERED
        ));
        kept.truncate(MAX_DISCOVERED);
    }
    (kept, refused)
}

/// The pod ranges of the nodes in `nodes`: `node`'s into `own`, the others' into `out`; what
/// does not parse is skipped.
fn ranges_of<'a>(
    nodes: impl Iterator<Item = (&'a str, Vec<String>)>,
    node: &str,
    out: &mut BTreeSet<IpNet>,
    own: &mut BTreeSet<IpNet>,
) {
    for (name, cidrs) in nodes {
        let into = if name == node { &mut *own } else { &mut *out };
        into.extend(
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
    // CiliumNodes' ranges as read last: a failed list (not a missing CRD) keeps them, since
    // under cluster-pool IPAM they are all the ranges there are.
    let mut cilium_found = (BTreeSet::new(), BTreeSet::new());
    let mut refused_said = Vec::new();
    loop {
        let mut found = BTreeSet::new();
        let mut own = BTreeSet::new();
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
                &mut own,
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
        match cilium.list(&ListParams::default()).await {
            Ok(list) => {
                let (mut theirs, mut mine) = (BTreeSet::new(), BTreeSet::new());
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
                    &mut theirs,
                    &mut mine,
                );
                cilium_found = (theirs, mine);
            }
            // Without Cilium's CRD: nothing to add.
            Err(kube::Error::Api(e)) if e.code == 404 => cilium_found = Default::default(),
            Err(_) => {}
        }
        found.extend(cilium_found.0.iter().copied());
        own.extend(cilium_found.1.iter().copied());
        if listed {
            let (found, refused) = remote_only(&found, &own);
            if refused != refused_said {
                if !refused.is_empty() {
                    log(format!(
                        "the nodes' pod ranges: refused {}",
                        refused.join(", ")
                    ));
                }
                refused_said = refused;
            }
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
        let (mut out, mut own) = (BTreeSet::new(), BTreeSet::new());
        let nodes = vec![
            ("node-a", vec!["10.0.1.0/24".to_string()]),
            ("node-b", vec!["10.0.2.0/24".into(), "fd00:2::/64".into()]),
            ("node-c", vec!["not a range".into(), "10.0.3.7/24".into()]),
        ];
        ranges_of(nodes.into_iter(), "node-a", &mut out, &mut own);
        let got: Vec<String> = out.iter().map(|n| n.to_string()).collect();
        assert_eq!(got, ["10.0.2.0/24", "10.0.3.0/24", "fd00:2::/64"]);
        assert_eq!(own.len(), 1);
    }

    #[test]
    fn too_wide_ranges_and_this_node_s_own_are_refused_the_rest_aggregated() {
        let set =
            |v: &[&str]| -> BTreeSet<IpNet> { v.iter().map(|s| s.parse().unwrap()).collect() };
        let found = set(&[
            "0.0.0.0/0",
            "::/0",
            "10.0.1.0/24",
            "10.0.2.0/24",
            "10.0.3.0/24",
            "10.9.0.0/16",
        ]);
        // A CiliumNode gives this node 10.9.0.0/24 where its Node says 10.0.1.0/24.
        let own = set(&["10.0.1.0/24", "10.9.0.0/24"]);
        let (kept, refused) = remote_only(&found, &own);
        let kept: Vec<String> = kept.iter().map(|n| n.to_string()).collect();
        assert_eq!(kept, ["10.0.2.0/23"]);
        assert_eq!(refused.len(), 2, "{refused:?}");
    }
}
