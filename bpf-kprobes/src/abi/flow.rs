//! Mirrors of the encryption-awareness part of `vigil_events.h` (`flow.bpf.c`): a flow's key,
//! its verdict, the record that reports it, the ranges' LPM key and the programs' knobs.

use super::EventHeader;

/// `VIGIL_EVENT_FLOW`.
pub const EVENT_FLOW: u32 = 6;

/// `enum vigil_route`: where a route or a device takes a packet.
#[allow(missing_docs)]
pub mod route {
    pub const UNREAD: u8 = 0;
    pub const LOOPBACK: u8 = 1;
    pub const WIREGUARD: u8 = 2;
    pub const XFRM_TRANSPORT: u8 = 3;
    pub const XFRM_TUNNEL: u8 = 4;
    pub const XFRM_OTHER: u8 = 5;
    pub const USER: u8 = 6;
    pub const ENCAP: u8 = 7;
    pub const DEVICE: u8 = 8;
    pub const UPPER: u8 = 9;
}

/// `enum vigil_enc_mode`.
#[allow(missing_docs)]
pub mod enc {
    pub const UNKNOWN: u8 = 0;
    pub const NONE: u8 = 1;
    pub const WIREGUARD: u8 = 2;
    pub const IPSEC: u8 = 3;
    pub const LOCAL: u8 = 4;
}

/// `enum vigil_enc_evidence`.
#[allow(missing_docs)]
pub mod evidence {
    pub const DEVICE: u8 = 1;
    pub const XFRM: u8 = 2;
}

/// `VIGIL_FLOW_VXLAN`: the tuple was read inside a VXLAN packet.
pub const FLOW_VXLAN: u8 = 1 << 0;
/// `VIGIL_FLOW_AH`: the SA is AH (authenticated, not encrypted).
pub const FLOW_AH: u8 = 1 << 1;
/// `VIGIL_FLOW_NULL_ENC`: the SA encrypts nothing (cipher_null, GMAC or IPComp).
pub const FLOW_NULL_ENC: u8 = 1 << 2;
/// `VIGIL_FLOW_CFG_XFRM`: the xfrm_output program is attached.
pub const FLOW_CFG_XFRM: u32 = 1 << 0;

/// `struct vigil_flow_key`: a flow by its inner 5-tuple.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub struct FlowKey {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub family: u8,
    pub protocol: u8,
    pub _pad0: u16,
}

/// `struct vigil_flow_verdict`: how a flow leaves the node.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct FlowVerdict {
    pub mode: u8,
    pub evidence: u8,
    pub route: u8,
    pub flags: u8,
    pub ifindex: u32,
    pub spi: u32,
    pub reqid: u32,
    pub range: u32,
    pub outer_family: u16,
    pub _pad0: u16,
    pub outer_daddr: [u8; 16],
    pub ifname: [u8; 16],
}

/// `struct vigil_flow_event`: a flow's verdict, new or changed.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct FlowEvent {
    pub hdr: EventHeader,
    pub key: FlowKey,
    pub verdict: FlowVerdict,
    /// The sending socket's kernel address (0: none, as for forwarded packets).
    pub sock: u64,
    pub dev_netns: u32,
    pub _pad0: u32,
}

/// `struct vigil_flow_range_key`: an LPM key over IPv6 addresses, IPv4 mapped.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct FlowRangeKey {
    pub prefixlen: u32,
    pub addr: [u8; 16],
}

impl FlowRangeKey {
    /// The key of a range: an IPv4 range is mapped into `::ffff:0:0/96`.
    pub fn of(addr: std::net::IpAddr, prefix: u8) -> Self {
        match addr {
            std::net::IpAddr::V4(a) => FlowRangeKey {
                prefixlen: 96 + u32::from(prefix.min(32)),
                addr: a.to_ipv6_mapped().octets(),
            },
            std::net::IpAddr::V6(a) => FlowRangeKey {
                prefixlen: u32::from(prefix.min(128)),
                addr: a.octets(),
            },
        }
    }
}

/// `struct vigil_flow_config`: the flow programs' knobs.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct FlowConfig {
    pub node_netns: u32,
    pub flags: u32,
    pub first_v4: [u64; 4],
    pub first_v6: [u64; 4],
}

impl FlowConfig {
    /// The knobs for `ranges`: every first byte an address of a range can have, by family.
    pub fn new(node_netns: u32, flags: u32, ranges: &[(std::net::IpAddr, u8)]) -> Self {
        let mut c = FlowConfig {
            node_netns,
            flags,
            ..Default::default()
        };
        for &(addr, prefix) in ranges {
            let (first, words) = match addr {
                std::net::IpAddr::V4(a) => (a.octets()[0], &mut c.first_v4),
                std::net::IpAddr::V6(a) => (a.octets()[0], &mut c.first_v6),
            };
            // A prefix shorter than 8 bits spans several first bytes.
            let free = 8u32.saturating_sub(u32::from(prefix));
            let span = 1u32 << free;
            let base = u32::from(first) & !(span - 1);
            for b in base..base + span {
                words[(b / 64) as usize] |= 1 << (b % 64);
            }
        }
        c
    }

    /// Whether an address with first byte `b` may be in a range.
    pub fn may_hold(&self, v4: bool, b: u8) -> bool {
        let words = if v4 { &self.first_v4 } else { &self.first_v6 };
        words[usize::from(b / 64)] & (1 << (b % 64)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_cover_every_range_and_no_more() {
        let ranges = [
            ("10.20.0.0".parse().unwrap(), 16),
            ("192.0.0.0".parse().unwrap(), 4),
            ("fd00::".parse().unwrap(), 8),
        ];
        let c = FlowConfig::new(7, 0, &ranges);
        assert!(c.may_hold(true, 10));
        assert!(!c.may_hold(true, 11));
        assert!(!c.may_hold(true, 127));
        assert!((192..208).all(|b| c.may_hold(true, b)));
        assert!(!c.may_hold(true, 208) && !c.may_hold(true, 191));
        assert!(c.may_hold(false, 0xfd) && !c.may_hold(false, 0xfe));
        assert!(!c.may_hold(false, 10), "families apart");
        let all = FlowConfig::new(7, 0, &[("0.0.0.0".parse().unwrap(), 0)]);
        assert!((0..=255).all(|b| all.may_hold(true, b)));
    }
}
