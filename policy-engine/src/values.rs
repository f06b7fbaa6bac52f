//! Parsing of selector values, each with the reason a value is refused.

use std::net::IpAddr;

use ipnet::IpNet;

/// A TCP state, by name (`TCP_SYN_RECV`) or number.
pub fn tcp_state(v: &str) -> Result<u8, String> {
    let t = v.trim();
    if let Some(n) = vigil_events::TCP_STATES
        .iter()
        .position(|s| !s.is_empty() && *s == t)
    {
        return Ok(n as u8);
    }
    int(t)
        .ok()
        .and_then(|n| u8::try_from(n).ok())
        .filter(|n| (1..vigil_events::TCP_STATES.len() as u8).contains(n))
        .ok_or_else(|| {
            format!("`{v}` is not a TCP state (TCP_ESTABLISHED, TCP_SYN_RECV, TCP_LISTEN, ...)")
        })
}

/// The network `v` names when it is a CIDR with host bits set past its prefix.
pub fn cidr_with_host_bits(v: &str) -> Option<IpNet> {
    let net = v.trim().parse::<IpNet>().ok()?;
    (net.trunc() != net).then(|| net.trunc())
}

/// An integer in decimal, `0x` hex or `0o` octal, possibly negative.
pub fn int(v: &str) -> Result<i128, String> {
    let t = v.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let parsed = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i128::from_str_radix(h, 16)
    } else if let Some(o) = body.strip_prefix("0o") {
        i128::from_str_radix(o, 8)
    } else {
        body.parse::<i128>()
    };
    parsed
        .map(|n| if neg { -n } else { n })
        .map_err(|_| format!("`{v}` is not an integer"))
}

/// An integer that fits the argument's width and signedness.
pub fn int_for(v: &str, bits: u32, signed: bool) -> Result<i128, String> {
    let n = int(v)?;
    let (min, max) = if signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    };
    // Masks and flags are often written as unsigned values of a signed argument.
    let unsigned_max = (1i128 << bits) - 1;
    if n < min || n > max.max(if signed { unsigned_max } else { max }) {
        return Err(format!(
            "`{v}` does not fit a {}{bits}-bit value",
            if signed { "signed " } else { "unsigned " }
        ));
    }
    Ok(n)
}

/// An address or CIDR (`10.0.0.0/8`, `::1`, `fd00::/8`). A CIDR with host bits set
/// (`127.0.0.1/8`) is its network (`127.0.0.0/8`), as Tetragon reads it; validation warns of it
/// ([`cidr_with_host_bits`]).
pub fn cidr(v: &str) -> Result<IpNet, String> {
    let t = v.trim();
    if let Ok(net) = t.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(addr) = t.parse::<IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    Err(format!("`{v}` is not an IPv4 or IPv6 address or CIDR"))
}

/// A port, 0 to 65535.
pub fn port(v: &str) -> Result<u16, String> {
    let n = int(v)?;
    u16::try_from(n).map_err(|_| format!("`{v}` is not a port (0-65535)"))
}

/// Address families by name or number.
const FAMILIES: [(&str, u16); 4] = [
    ("AF_UNIX", 1),
    ("AF_INET", 2),
    ("AF_INET6", 10),
    ("AF_NETLINK", 16),
];
/// IP protocols by name or number.
const PROTOCOLS: [(&str, u8); 5] = [
    ("IPPROTO_ICMP", 1),
    ("IPPROTO_TCP", 6),
    ("IPPROTO_UDP", 17),
    ("IPPROTO_ICMPV6", 58),
    ("IPPROTO_RAW", 255),
];

/// An address family (`AF_INET` or its number).
pub fn family(v: &str) -> Result<u16, String> {
    if let Some((_, n)) = FAMILIES.iter().find(|(name, _)| *name == v.trim()) {
        return Ok(*n);
    }
    int(v)
        .ok()
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| {
            format!(
                "`{v}` is not an address family ({})",
                FAMILIES.map(|f| f.0).join(", ")
            )
        })
}

/// An IP protocol (`IPPROTO_TCP` or its number).
pub fn protocol(v: &str) -> Result<u8, String> {
    if let Some((_, n)) = PROTOCOLS.iter().find(|(name, _)| *name == v.trim()) {
        return Ok(*n);
    }
    int(v)
        .ok()
        .and_then(|n| u8::try_from(n).ok())
        .ok_or_else(|| {
            format!(
                "`{v}` is not an IP protocol ({})",
                PROTOCOLS.map(|p| p.0).join(", ")
            )
        })
}

/// A rate limit period: `<n>s`, `<n>m` or `<n>h`, in seconds.
pub fn period(v: &str) -> Result<u64, String> {
    let t = v.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{v}` is not a period like 30s, 1m or 2h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("`{v}` is not a period like 30s, 1m or 2h")),
    };
    if secs == 0 {
        return Err(format!("`{v}` is an empty period"));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_in_every_base() {
        assert_eq!(int("42"), Ok(42));
        assert_eq!(int("-1"), Ok(-1));
        assert_eq!(int("0x10"), Ok(16));
        assert!(int("4x").is_err());
        assert!(int_for("256", 8, false).is_err());
        assert_eq!(
            int_for("0xffffffff", 32, true),
            Ok(0xffff_ffff),
            "flags as unsigned"
        );
    }

    #[test]
    fn cidrs_and_addresses() {
        assert!(cidr("10.0.0.0/8").is_ok());
        assert!(cidr("::1").is_ok());
        assert_eq!(cidr("10.0.0.1/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            cidr_with_host_bits("10.0.0.1/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(cidr_with_host_bits("10.0.0.0/8"), None);
        assert!(cidr("10.0.0.0/33").is_err());
        assert!(cidr("example.com").is_err());
    }

    #[test]
    fn names_and_periods() {
        assert_eq!(family("AF_INET6"), Ok(10));
        assert!(family("AF_BOGUS").is_err());
        assert_eq!(protocol("IPPROTO_TCP"), Ok(6));
        assert_eq!(port("443"), Ok(443));
        assert!(port("70000").is_err());
        assert_eq!(period("1m"), Ok(60));
        assert!(period("1d").is_err());
    }
}
