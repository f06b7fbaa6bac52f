//! The encryption-awareness programs of `flow.bpf.c`: the remote ranges written into their
//! LPM map, the node's network namespace into their knobs, and the programs attached where
//! this kernel lets them (see [`FlowEvidence`]).

use aya::{
    maps::{lpm_trie::Key, Array, LpmTrie},
    programs::{BtfTracePoint, KProbe},
    Pod,
};
use ipnet::IpNet;
use vigil_bpf_kprobes::abi;

use super::{hold, loaded_program, map_err, missing, LoadError, LoadedObject};

const XMIT: &str = "vigil_flow_xmit";
const XFRM: &str = "vigil_flow_xfrm";
/// Entries of `vigil_flow_ranges`.
pub const MAX_RANGES: usize = 4096;

#[derive(Clone, Copy)]
#[repr(transparent)]
struct FlowConfigPod(abi::FlowConfig);
// SAFETY: a #[repr(C)] struct of integers with no padding the kernel reads.
unsafe impl Pod for FlowConfigPod {}

/// What this kernel lets vigil see of how flows leave, for the start-up line.
#[derive(Debug, Clone)]
pub struct FlowEvidence {
    /// The device each packet is handed to (tp_btf/net_dev_start_xmit).
    pub device: Result<(), String>,
    /// The IPsec transformation applied on output (kprobe/xfrm_output).
    pub xfrm: Result<(), String>,
}

impl std::fmt::Display for FlowEvidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let say = |r: &Result<(), String>| match r {
            Ok(()) => "yes".to_string(),
            Err(e) => format!("no ({e})"),
        };
        write!(
            f,
            "the socket's route at each network event: yes; the device packets leave through (net_dev_start_xmit): {}; the IPsec SA applied (xfrm_output): {}",
            say(&self.device),
            say(&self.xfrm)
        )
    }
}

impl LoadedObject {
    /// Writes `ranges` and `node_netns` and attaches the flow programs. A program the kernel
    /// refuses is said in the result, not an error: the other evidence still stands.
    pub fn attach_flows(
        &mut self,
        ranges: &[IpNet],
        node_netns: u32,
    ) -> Result<FlowEvidence, LoadError> {
        self.flow_netns = node_netns;
        self.set_flow_ranges(ranges)?;

        let btf = &self.btf;
        let device = loaded_program(
            &mut self.ebpf,
            XMIT,
            "net_dev_start_xmit",
            |p: &mut BtfTracePoint| p.load("net_dev_start_xmit", btf),
        )
        .and_then(|p| {
            let err = |source| LoadError::Program {
                program: XMIT,
                hook: "net_dev_start_xmit",
                source,
            };
            let id = p.attach().map_err(err)?;
            p.take_link(id).map_err(err)
        })
        .and_then(|link| hold(&mut self.pins, link, XMIT, "net_dev_start_xmit"))
        .map(|held| self.flow_links.push(held))
        .map_err(|e| e.to_string());
        let xfrm = loaded_program(&mut self.ebpf, XFRM, "xfrm_output", KProbe::load)
            .and_then(|p| {
                let err = |source| LoadError::Program {
                    program: XFRM,
                    hook: "xfrm_output",
                    source,
                };
                let id = p.attach("xfrm_output", 0).map_err(err)?;
                p.take_link(id).map_err(err)
            })
            .and_then(|link| hold(&mut self.pins, link, XFRM, "xfrm_output"))
            .map(|held| self.flow_links.push(held))
            .map_err(|e| e.to_string());
        if xfrm.is_ok() {
            // From now an ESP packet of an SA the program did not see is judged.
            self.flow_flags |= abi::FLOW_CFG_XFRM;
            self.set_flow_ranges(ranges)?;
        }
        Ok(FlowEvidence { device, xfrm })
    }

    /// Replaces the remote ranges (at most [`MAX_RANGES`]): each maps to its place in
    /// `ranges`.
    pub fn set_flow_ranges(&mut self, ranges: &[IpNet]) -> Result<(), LoadError> {
        if ranges.len() > MAX_RANGES {
            return Err(LoadError::Map {
                name: "vigil_flow_ranges",
                detail: format!(
                    "{} remote ranges, more than the {MAX_RANGES} the map holds",
                    ranges.len()
                ),
            });
        }
        let map = self
            .ebpf
            .map_mut("vigil_flow_ranges")
            .ok_or_else(|| missing("vigil_flow_ranges"))?;
        let mut trie: LpmTrie<_, [u8; 16], u32> =
            LpmTrie::try_from(map).map_err(|e| map_err("vigil_flow_ranges", e))?;
        let keys = |r: &IpNet| {
            let k = abi::FlowRangeKey::of(r.network(), r.prefix_len());
            Key::new(k.prefixlen, k.addr)
        };
        // The ranges no longer wanted go first, so that the map never holds more than the
        // ranges of the list (a range kept is never removed: its flows stay tracked).
        let wanted: std::collections::HashSet<(u32, [u8; 16])> = ranges
            .iter()
            .map(|r| {
                let k = keys(r);
                (k.prefix_len(), k.data())
            })
            .collect();
        let stale: Vec<Key<[u8; 16]>> = trie
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.contains(&(k.prefix_len(), k.data())))
            .collect();
        for k in stale {
            let _ = trie.remove(&k);
        }
        for (i, r) in ranges.iter().enumerate() {
            trie.insert(&keys(r), i as u32, 0)
                .map_err(|e| map_err("vigil_flow_ranges", e))?;
        }
        // The first bytes last: a first byte dropped only once its ranges are gone.
        let spans: Vec<(std::net::IpAddr, u8)> = ranges
            .iter()
            .map(|r| (r.network(), r.prefix_len()))
            .collect();
        let map = self
            .ebpf
            .map_mut("vigil_flow_config_map")
            .ok_or_else(|| missing("vigil_flow_config_map"))?;
        let mut config: Array<_, FlowConfigPod> =
            Array::try_from(map).map_err(|e| map_err("vigil_flow_config_map", e))?;
        config
            .set(
                0,
                FlowConfigPod(abi::FlowConfig::new(
                    self.flow_netns,
                    self.flow_flags,
                    &spans,
                )),
                0,
            )
            .map_err(|e| map_err("vigil_flow_config_map", e))?;
        Ok(())
    }
}
