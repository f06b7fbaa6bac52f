//! What of an event goes into the columns: the facts investigations filter on.

use std::net::IpAddr;

use vigil_events::{Arg, Event, EventBody};

use crate::query::level_rank;

/// The columns of one event (its process goes to `processes`).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct EventColumns {
    pub time_ns: u64,
    pub kind: i64,
    pub path: Option<String>,
    pub daddr: Option<[u8; 16]>,
    pub dport: Option<u16>,
    pub dns: Option<String>,
    pub policy: Option<String>,
    pub rule: Option<String>,
    pub rule_title: Option<String>,
    pub level: Option<i64>,
}

/// An address as a 16-byte key that sorts as its range does: IPv4 as IPv4-mapped IPv6, so a
/// range is one `BETWEEN` over the index.
pub(crate) fn ip_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The columns of `event`.
pub(crate) fn columns(event: &Event) -> EventColumns {
    let mut c = EventColumns {
        time_ns: vigil_events::time::parse_rfc3339_ns(&event.time).unwrap_or(0),
        kind: crate::schema::kind_code(event.kind()).unwrap_or(-1),
        ..Default::default()
    };
    match &event.body {
        EventBody::ProcessKprobe(p) | EventBody::ProcessLsm(p) => {
            c.policy = Some(p.policy_name.clone()).filter(|n| !n.is_empty());
            for arg in p.args.iter().chain(p.return_arg.as_ref()) {
                match arg {
                    Arg::FileArg(f) | Arg::PathArg(f) if c.path.is_none() && !f.path.is_empty() => {
                        c.path = Some(f.path.clone());
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
                        c.dns = Some(d.query.trim_end_matches('.').to_ascii_lowercase());
                    }
                    _ => {}
                }
            }
        }
        EventBody::ProcessAlert(a) => {
            c.rule = Some(a.rule_id.clone());
            c.rule_title = Some(a.title.clone());
            c.level = level_rank(&a.level).map(|r| r as i64);
        }
        EventBody::ProcessExec(_) | EventBody::ProcessExit(_) => {}
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
