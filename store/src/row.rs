//! What of an event goes into the columns: the facts investigations filter on, taken from the
//! event by the agent's loop and filed by the writer.

use std::{borrow::Cow, net::IpAddr};

use serde::{Deserialize, Serialize};
use vigil_events::{Arg, Event, EventBody, Process};

use crate::query::level_rank;

/// The columns of one event, and the process rows it names. Borrowed from the event where the
/// loop makes them (nothing is copied but the DNS name it lowercases); read back by the writer.
///
/// Encoded with postcard: strings as a length and their bytes, numbers as varints. JSON cost
/// the loop a twentieth of its time on an exec storm, most of it scanning arguments for
/// characters to escape.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct EventColumns<'a> {
    pub time_ns: u64,
    pub kind: i64,
    /// A process exec: its image replaces what the process row held (a process keeps its
    /// exec id across execve).
    pub exec: bool,
    #[serde(borrow)]
    pub path: Option<Cow<'a, str>>,
    pub daddr: Option<[u8; 16]>,
    pub dport: Option<u16>,
    #[serde(borrow)]
    pub dns: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub policy: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub rule: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub rule_title: Option<Cow<'a, str>>,
    pub level: Option<i64>,
    /// The event's process first, then its parent and ancestors. Not encoded with the rest:
    /// the loop appends the rows straight from the event ([`crate::batch::Batch::push`]), so
    /// that it builds no list of them for each event.
    #[serde(skip)]
    pub processes: Vec<ProcessColumns<'a>>,
}

/// A process row's columns.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ProcessColumns<'a> {
    #[serde(borrow)]
    pub exec_id: Cow<'a, str>,
    #[serde(borrow)]
    pub parent_exec_id: Cow<'a, str>,
    pub pid: u32,
    pub uid: u32,
    #[serde(borrow)]
    pub binary: Cow<'a, str>,
    #[serde(borrow)]
    pub arguments: Cow<'a, str>,
    #[serde(borrow)]
    pub start_time: Cow<'a, str>,
    #[serde(borrow)]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub pod: Option<Cow<'a, str>>,
}

impl<'a> ProcessColumns<'a> {
    pub(crate) fn of(p: &'a Process) -> Self {
        ProcessColumns {
            exec_id: Cow::Borrowed(p.exec_id.as_str()),
            parent_exec_id: Cow::Borrowed(p.parent_exec_id.as_str()),
            pid: p.pid,
            uid: p.uid,
            binary: Cow::Borrowed(&p.binary),
            arguments: Cow::Borrowed(&p.arguments),
            start_time: Cow::Borrowed(&p.start_time),
            namespace: p.pod.as_ref().map(|p| Cow::Borrowed(p.namespace.as_str())),
            pod: p.pod.as_ref().map(|p| Cow::Borrowed(p.name.as_str())),
        }
    }
}

/// An address as a 16-byte key that sorts as its range does: IPv4 as IPv4-mapped IPv6, so a
/// range is one `BETWEEN` over the index.
pub(crate) fn ip_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The columns of `event`, which happened at `time_ns`, without its processes (see
/// [`EventColumns::processes`]).
pub(crate) fn columns(event: &Event, time_ns: u64) -> EventColumns<'_> {
    let mut c = EventColumns {
        time_ns,
        kind: crate::schema::kind_code(event.kind()).unwrap_or(-1),
        exec: matches!(event.body, EventBody::ProcessExec(_)),
        ..Default::default()
    };
    match &event.body {
        EventBody::ProcessKprobe(p)
        | EventBody::ProcessLsm(p)
        | EventBody::ProcessUprobe(p)
        | EventBody::ProcessTracepoint(p)
        | EventBody::ProcessLoader(p) => {
            c.policy = Some(Cow::Borrowed(p.policy_name.as_str())).filter(|n| !n.is_empty());
            for arg in p.args.iter().chain(p.return_arg.as_ref()) {
                match arg {
                    Arg::FileArg(f) | Arg::PathArg(f) if c.path.is_none() && !f.path.is_empty() => {
                        c.path = Some(Cow::Borrowed(&f.path));
                    }
                    Arg::SockArg(s) if c.daddr.is_none() => {
                        if let Ok(ip) = s.daddr.parse::<IpAddr>() {
                            c.daddr = Some(ip_key(ip));
                            c.dport = Some(s.dport);
                        }
                    }
                    Arg::SockaddrArg(s) if c.daddr.is_none() => {
                        if let Ok(ip) = s.addr.parse::<IpAddr>() {
                            c.daddr = Some(ip_key(ip));
                            c.dport = Some(s.port);
                        }
                    }
                    Arg::DnsArg(d) if c.dns.is_none() && !d.query.is_empty() => {
                        c.dns = Some(Cow::Owned(
                            d.query.trim_end_matches('.').to_ascii_lowercase(),
                        ));
                    }
                    _ => {}
                }
            }
        }
        EventBody::ProcessAlert(a) => {
            c.rule = Some(Cow::Borrowed(&a.rule_id));
            c.rule_title = Some(Cow::Borrowed(&a.title));
            c.level = level_rank(&a.level).map(|r| r as i64);
        }
        EventBody::FlowEncryption(f) => {
            if let Ok(ip) = f.flow.daddr.parse::<IpAddr>() {
                c.daddr = Some(ip_key(ip));
                c.dport = Some(f.flow.dport);
            }
        }
        EventBody::ProcessExec(_) | EventBody::ProcessExit(_) | EventBody::RateLimitInfo(_) => {}
    }
    c
}

/// A process's last path component, the `name` a search by binary name matches.
pub(crate) fn binary_name(binary: &str) -> &str {
    binary.rsplit('/').next().unwrap_or(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_key_sorts_inside_its_mapped_range() {
        let a = ip_key("10.0.0.1".parse().unwrap());
        let b = ip_key("10.0.0.2".parse().unwrap());
        let v6 = ip_key("fd00::1".parse().unwrap());
        assert!(a < b);
        assert_eq!(&a[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert!(v6 > b);
    }

    #[test]
    fn a_name_is_the_last_component() {
        assert_eq!(binary_name("/usr/bin/cat"), "cat");
        assert_eq!(binary_name("cat"), "cat");
    }
}
