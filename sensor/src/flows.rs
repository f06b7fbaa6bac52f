//! Encryption awareness, the agent's half: the remote ranges whose flows the kernel tracks
//! (`flow.bpf.c`), the verdicts it reports, and the `encryption` object they give socket
//! arguments and `flow_encryption` events.
//!
//! A socket argument's object comes from the kernel's verdict on its flow when there is one
//! (the packets were seen leaving), else from the socket's cached route (read with the
//! argument): loopback is `local`, the WireGuard device `wireguard`, an IPsec transformation
//! `ipsec`, and a plain device `none` when the socket is in the node's network namespace.
//! A socket of another namespace (a pod's) reaches its device inside the node, so its route
//! says nothing of how the node sends the packets on: `unknown`, `pending` until the verdict.
//!
//! A verdict record names no process (the node forwards a pod's packets with no socket on
//! them): the process is the one vigil last saw open the flow, by its 5-tuple, from a network
//! policy's event on its socket.

use std::{
    collections::VecDeque,
    net::IpAddr,
    num::NonZeroUsize,
    sync::Arc,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use lru::LruCache;
use vigil_bpf_kprobes::abi::{self, enc, evidence as kev, route};
use vigil_events::{
    encryption::{evidence, mode},
    Encryption, Event, EventBody, FlowEncryption, Process, SockArg,
};

/// Flows whose opener is remembered, and verdicts kept, each.
const FLOWS_KEPT: usize = 16_384;
/// How long a verdict whose opener vigil has not seen yet waits for it: a connect is reported
/// when connect() returns, after the first packet was judged.
pub const OPENER_WAIT: Duration = Duration::from_secs(1);
/// Verdicts held at most; past it the oldest goes on without its process.
const HELD_MAX: usize = 4096;

/// The ranges, the verdicts and the openers.
pub struct FlowTracker {
    /// The configured ranges and the discovered ones (the other nodes' pod ranges).
    ranges: Vec<IpNet>,
    configured: Vec<IpNet>,
    /// The agent's network namespace (the node's: the agent runs in the host's network).
    node_netns: u32,
    verdicts: LruCache<abi::FlowKey, Box<Encryption>>,
    openers: LruCache<abi::FlowKey, (Arc<Process>, Option<Arc<Process>>)>,
    /// `flow_encryption` events waiting for their opener, oldest first, and their flows.
    held: VecDeque<(Instant, abi::FlowKey, Event)>,
    held_keys: std::collections::HashMap<abi::FlowKey, usize>,
    /// Events ready to go ([`FlowTracker::released`]).
    released: Vec<Event>,
}

impl FlowTracker {
    /// A tracker of flows into `ranges`, judged in network namespace `node_netns`.
    pub fn new(ranges: Vec<IpNet>, node_netns: u32) -> Self {
        let kept = NonZeroUsize::new(FLOWS_KEPT).unwrap_or(NonZeroUsize::MIN);
        FlowTracker {
            configured: ranges.clone(),
            ranges,
            node_netns,
            verdicts: LruCache::new(kept),
            openers: LruCache::new(kept),
            held: VecDeque::new(),
            held_keys: Default::default(),
            released: Vec::new(),
        }
    }

    /// The configured ranges with `discovered` (the other nodes' pod ranges, as read last),
    /// each once.
    pub fn ranges_with(&self, discovered: &[IpNet]) -> Vec<IpNet> {
        let mut all: Vec<IpNet> = self.configured.iter().chain(discovered).copied().collect();
        all.sort();
        all.dedup();
        all
    }

    /// Takes `ranges` (written into the kernel's map) as the ranges flows are judged in.
    pub fn set_ranges(&mut self, ranges: Vec<IpNet>) {
        self.ranges = ranges;
    }

    /// Keeps `event`, the verdict on `key` whose opener is not known yet, until the opener is
    /// seen or [`OPENER_WAIT`] passes.
    pub fn hold(&mut self, key: abi::FlowKey, event: Event, now: Instant) {
        if self.held.len() >= HELD_MAX {
            self.release_oldest();
        }
        *self.held_keys.entry(key).or_default() += 1;
        self.held.push_back((now + OPENER_WAIT, key, event));
    }

    fn release_oldest(&mut self) {
        if let Some((_, key, event)) = self.held.pop_front() {
            if let Some(n) = self.held_keys.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.held_keys.remove(&key);
                }
            }
            self.released.push(event);
        }
    }

    /// The events ready to go: verdicts whose opener was seen since, or that waited long
    /// enough (as of `now`).
    pub fn released(&mut self, now: Instant) -> impl Iterator<Item = Event> + '_ {
        while self.held.front().is_some_and(|(due, _, _)| *due <= now) {
            self.release_oldest();
        }
        self.released.drain(..)
    }

    /// Whether [`FlowTracker::released`] has anything now.
    pub fn has_released(&self, now: Instant) -> bool {
        !self.released.is_empty() || self.held.front().is_some_and(|(due, _, _)| *due <= now)
    }

    /// The range `addr` is in, the most specific.
    fn range_of(&self, addr: IpAddr) -> Option<IpNet> {
        let addr = match addr {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
            a => a,
        };
        self.ranges
            .iter()
            .filter(|r| r.contains(&addr))
            .max_by_key(|r| r.prefix_len())
            .copied()
    }

    /// Gives `arg` (decoded from `raw`) its `encryption` object, when anything is known of how
    /// its flow leaves; returns the flow's key when the flow is tracked (in a remote range), for
    /// [`FlowTracker::opened`].
    pub fn annotate(&mut self, raw: &abi::SockValue, arg: &mut SockArg) -> Option<abi::FlowKey> {
        if !matches!(raw.family, 2 | 10) {
            return None;
        }
        let key = key_of(raw);
        let range = addr_of(key.family, &key.daddr).and_then(|a| self.range_of(a));
        let remote_range = range.map(|r| r.to_string()).unwrap_or_default();
        if let Some(v) = self.verdicts.get(&key) {
            arg.encryption = Some(v.clone());
            return range.is_some().then_some(key);
        }
        let mut e = Encryption {
            evidence: evidence::ROUTE.to_string(),
            remote_range,
            ..Default::default()
        };
        let own_netns = raw.netns == self.node_netns;
        match raw.route {
            route::LOOPBACK => {
                e.mode = mode::LOCAL.into();
                e.interface_kind = "loopback".into();
            }
            route::WIREGUARD => {
                e.mode = mode::WIREGUARD.into();
                e.interface_kind = "wireguard".into();
            }
            route::XFRM_TRANSPORT | route::XFRM_TUNNEL | route::XFRM_OTHER => {
                e.mode = mode::IPSEC.into();
                e.spi = Some(raw.route_spi);
                e.ipsec_mode = ipsec_mode(raw.route).into();
            }
            route::USER => {
                e.mode = mode::UNKNOWN.into();
                e.interface_kind = "tun".into();
                e.reason = TUN_REASON.into();
            }
            route::ENCAP | route::UPPER | route::DEVICE if !own_netns => {
                e.mode = mode::UNKNOWN.into();
                e.evidence = evidence::PENDING.into();
                e.reason = "the socket is in another network namespace: how the node sends \
                            its packets on is seen when they leave"
                    .into();
            }
            route::ENCAP | route::UPPER => {
                // The device hands the packets on (a VXLAN or IP tunnel, a bond, a VLAN, an
                // xfrm interface): the device below or the outer packet decides.
                e.mode = mode::UNKNOWN.into();
                e.evidence = evidence::PENDING.into();
                e.interface_kind = device_kind(raw.route).into();
            }
            route::DEVICE => {
                e.mode = mode::NONE.into();
                e.interface_kind = "device".into();
            }
            // No route (unconnected, closed): said only of a tracked flow.
            _ if range.is_some() => {
                e.mode = mode::UNKNOWN.into();
                e.evidence = evidence::PENDING.into();
            }
            _ => return None,
        }
        if own_netns && raw.route_ifindex != 0 {
            e.interface = interface_name(raw.route_ifindex).unwrap_or_default();
        }
        arg.encryption = Some(Box::new(e));
        range.is_some().then_some(key)
    }

    /// Remembers `process` as the opener of the tracked flow `key`.
    pub fn opened(
        &mut self,
        key: abi::FlowKey,
        process: Arc<Process>,
        parent: Option<Arc<Process>>,
    ) {
        // Verdicts that waited for this opener go now, naming it (found by a scan only when
        // one is there).
        if self.held_keys.remove(&key).is_some() {
            let mut i = 0;
            while i < self.held.len() {
                if self.held[i].1 != key {
                    i += 1;
                    continue;
                }
                if let Some((_, _, mut event)) = self.held.remove(i) {
                    if let EventBody::FlowEncryption(f) = &mut event.body {
                        f.process = Some(process.clone());
                        f.parent = parent.clone();
                    }
                    self.released.push(event);
                }
            }
        }
        self.openers.put(key, (process, parent));
    }

    /// The event of a verdict record (its process, when vigil already saw it open the flow).
    pub fn verdict(&mut self, f: &abi::FlowEvent) -> FlowEncryption {
        let key = f.key;
        let v = &f.verdict;
        let daddr = addr_of(key.family, &key.daddr);
        let mut e = Encryption {
            mode: match v.mode {
                enc::NONE => mode::NONE,
                enc::WIREGUARD => mode::WIREGUARD,
                enc::IPSEC => mode::IPSEC,
                enc::LOCAL => mode::LOCAL,
                _ => mode::UNKNOWN,
            }
            .into(),
            evidence: if v.evidence == kev::XFRM {
                evidence::XFRM
            } else {
                evidence::DEVICE
            }
            .into(),
            interface: vigil_events::text::lossy(until_nul(&v.ifname)).into_owned(),
            remote_range: daddr
                .and_then(|a| self.range_of(a))
                .map(|r| r.to_string())
                .unwrap_or_default(),
            vxlan: v.flags & abi::FLOW_VXLAN != 0,
            ..Default::default()
        };
        match v.route {
            route::XFRM_TRANSPORT | route::XFRM_TUNNEL | route::XFRM_OTHER => {
                e.spi = Some(v.spi);
                e.ipsec_mode = ipsec_mode(v.route).into();
                e.reqid = v.reqid;
                e.outer_destination = addr_of(
                    match v.outer_family {
                        2 => 2,
                        10 => 10,
                        _ => 0,
                    },
                    &v.outer_daddr,
                )
                .map(|a| a.to_string())
                .unwrap_or_default();
                if v.flags & abi::FLOW_AH != 0 {
                    e.reason = "the SA is AH: it authenticates the packets, it does not \
                                encrypt them"
                        .into();
                } else if v.flags & abi::FLOW_NULL_ENC != 0 {
                    e.reason = "the SA encrypts nothing (cipher_null, GMAC or IPComp)".into();
                }
            }
            r => {
                e.interface_kind = device_kind(r).into();
                if r == route::USER {
                    e.reason = TUN_REASON.into();
                }
            }
        }
        let encryption = Box::new(e);
        self.verdicts.put(key, encryption.clone());
        let (process, parent) = match self.openers.get(&key) {
            Some((p, parent)) => (Some(p.clone()), parent.clone()),
            None => (None, None),
        };
        let raw = abi::SockValue {
            family: key.family.into(),
            protocol: key.protocol.into(),
            sport: key.sport,
            dport: key.dport,
            saddr: key.saddr,
            daddr: key.daddr,
            cookie: f.sock,
            r#type: match key.protocol {
                6 => 1,
                17 => 2,
                _ => 0,
            },
            ..Default::default()
        };
        let mut flow = crate::enrich::sock_arg(&raw);
        // A tuple read off the wire has no state, no namespace of its socket.
        flow.state.clear();
        flow.encryption = Some(encryption);
        FlowEncryption {
            process,
            parent,
            flow,
        }
    }
}

const TUN_REASON: &str = "a tun or tap device: a program in user space reads the packets, and \
                          whether it encrypts them cannot be seen from the kernel";

/// The key of a socket's flow, as its packets carry it: an IPv6 socket connected to an
/// IPv4-mapped address sends IPv4 packets.
fn key_of(s: &abi::SockValue) -> abi::FlowKey {
    let mut key = abi::FlowKey {
        saddr: s.saddr,
        daddr: s.daddr,
        sport: s.sport,
        dport: s.dport,
        family: s.family as u8,
        protocol: s.protocol as u8,
        _pad0: 0,
    };
    let mapped = |a: &[u8; 16]| {
        std::net::Ipv6Addr::from(*a)
            .to_ipv4_mapped()
            .map(|v4| v4.octets())
    };
    if key.family == 10 {
        if let (Some(src), Some(dst)) = (mapped(&s.saddr), mapped(&s.daddr)) {
            key.family = 2;
            key.saddr = [0; 16];
            key.daddr = [0; 16];
            key.saddr[..4].copy_from_slice(&src);
            key.daddr[..4].copy_from_slice(&dst);
        }
    }
    key
}

fn addr_of(family: u8, b: &[u8; 16]) -> Option<IpAddr> {
    match family {
        2 => Some(IpAddr::from([b[0], b[1], b[2], b[3]])),
        10 => Some(IpAddr::from(*b)),
        _ => None,
    }
}

fn until_nul(b: &[u8]) -> &[u8] {
    b.split(|&c| c == 0).next().unwrap_or(b)
}

fn ipsec_mode(r: u8) -> &'static str {
    match r {
        route::XFRM_TRANSPORT => "transport",
        route::XFRM_TUNNEL => "tunnel",
        _ => "other",
    }
}

fn device_kind(r: u8) -> &'static str {
    match r {
        route::LOOPBACK => "loopback",
        route::WIREGUARD => "wireguard",
        route::USER => "tun",
        route::ENCAP => "encapsulation",
        route::UPPER => "stacked",
        _ => "device",
    }
}

/// The name of device `ifindex` in the agent's network namespace.
fn interface_name(ifindex: u32) -> Option<String> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes, NUL included, into `buf`.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    Some(String::from_utf8_lossy(until_nul(&buf)).into_owned())
}

/// The inode of the agent's network namespace.
pub fn own_netns() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/net").map_or(0, |m| m.ino() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(daddr: [u8; 4], route: u8, netns: u32) -> abi::SockValue {
        let mut d = [0u8; 16];
        d[..4].copy_from_slice(&daddr);
        abi::SockValue {
            family: 2,
            protocol: 6,
            r#type: 1,
            sport: 40000,
            dport: 80,
            daddr: d,
            route,
            netns,
            ..Default::default()
        }
    }

    fn tracker() -> FlowTracker {
        FlowTracker::new(vec!["10.2.0.0/16".parse().unwrap()], 7)
    }

    fn annotated(t: &mut FlowTracker, s: &abi::SockValue) -> Option<Encryption> {
        let mut arg = crate::enrich::sock_arg(s);
        t.annotate(s, &mut arg);
        arg.encryption.map(|e| *e)
    }

    #[test]
    fn a_route_decides_only_in_the_node_s_namespace() {
        let mut t = tracker();
        let own = annotated(&mut t, &sock([10, 2, 0, 5], route::DEVICE, 7)).unwrap();
        assert_eq!(
            (own.mode.as_str(), own.evidence.as_str()),
            ("none", "route")
        );
        assert_eq!(own.remote_range, "10.2.0.0/16");
        let pod = annotated(&mut t, &sock([10, 2, 0, 5], route::DEVICE, 8)).unwrap();
        assert_eq!(
            (pod.mode.as_str(), pod.evidence.as_str()),
            ("unknown", "pending")
        );
        let lo = annotated(&mut t, &sock([127, 0, 0, 1], route::LOOPBACK, 8)).unwrap();
        assert_eq!((lo.mode.as_str(), lo.remote_range.as_str()), ("local", ""));
        // Nothing read and not tracked: nothing said.
        assert_eq!(
            annotated(&mut t, &sock([192, 0, 2, 1], route::UNREAD, 7)),
            None
        );
    }

    #[test]
    fn the_kernel_s_verdict_outranks_the_route_and_names_the_opener() {
        let mut t = tracker();
        let s = sock([10, 2, 0, 5], route::DEVICE, 8);
        let mut arg = crate::enrich::sock_arg(&s);
        let key = t.annotate(&s, &mut arg).expect("tracked");
        let opener = Arc::new(Process {
            binary: "/usr/bin/curl".into(),
            ..Default::default()
        });
        t.opened(key, opener, None);
        let mut ev = abi::FlowEvent {
            key,
            ..Default::default()
        };
        ev.verdict.mode = enc::WIREGUARD;
        ev.verdict.evidence = kev::DEVICE;
        ev.verdict.route = route::WIREGUARD;
        ev.verdict.ifname[..3].copy_from_slice(b"wg0");
        let f = t.verdict(&ev);
        assert_eq!(f.process.as_ref().unwrap().binary, "/usr/bin/curl");
        let e = f.flow.encryption.as_deref().unwrap();
        assert_eq!(
            (
                e.mode.as_str(),
                e.interface.as_str(),
                e.interface_kind.as_str()
            ),
            ("wireguard", "wg0", "wireguard")
        );
        assert_eq!(f.flow.daddr, "10.2.0.5");
        assert_eq!(annotated(&mut t, &s).unwrap().mode, "wireguard");
    }

    #[test]
    fn a_verdict_before_its_opener_waits_for_it_and_goes_without_it_after_the_wait() {
        let mut t = tracker();
        let s = sock([10, 2, 0, 5], route::DEVICE, 7);
        let key = key_of(&s);
        let mut ev = abi::FlowEvent {
            key,
            ..Default::default()
        };
        ev.verdict.mode = enc::NONE;
        ev.verdict.evidence = kev::DEVICE;
        let event = |f: FlowEncryption| Event {
            body: EventBody::FlowEncryption(Box::new(f)),
            node_name: Default::default(),
            node_labels: Default::default(),
            time: String::new(),
        };
        let now = Instant::now();
        let f = t.verdict(&ev);
        assert!(f.process.is_none());
        t.hold(key, event(f), now);
        let mut other = ev;
        other.key.sport = 1;
        let f = t.verdict(&other);
        t.hold(other.key, event(f), now);
        assert!(!t.has_released(now));
        let opener = Arc::new(Process {
            pid: 42,
            ..Default::default()
        });
        t.opened(key, opener, None);
        let out: Vec<Event> = t.released(now).collect();
        assert_eq!(out.len(), 1, "the one whose opener came");
        assert_eq!(out[0].process().pid, 42);
        assert!(!t.has_released(now));
        let later = now + OPENER_WAIT;
        let out: Vec<Event> = t.released(later).collect();
        assert_eq!(out.len(), 1, "the other, after the wait");
        assert_eq!(out[0].process().pid, 0);
        assert!(t.held_keys.is_empty());
    }

    #[test]
    fn an_ah_sa_is_not_encryption() {
        let mut t = tracker();
        let mut ev = abi::FlowEvent::default();
        ev.key.family = 2;
        ev.key.daddr[..4].copy_from_slice(&[10, 2, 0, 5]);
        ev.verdict.mode = enc::NONE;
        ev.verdict.evidence = kev::XFRM;
        ev.verdict.route = route::XFRM_TUNNEL;
        ev.verdict.flags = abi::FLOW_AH;
        ev.verdict.spi = 3;
        ev.verdict.outer_family = 2;
        ev.verdict.outer_daddr[..4].copy_from_slice(&[198, 18, 0, 2]);
        let f = t.verdict(&ev);
        let e = f.flow.encryption.as_deref().unwrap();
        assert!(e.plaintext_to_remote());
        assert_eq!(e.spi, Some(3));
        assert_eq!(e.outer_destination, "198.18.0.2");
        assert!(e.reason.contains("AH"));
    }
}
