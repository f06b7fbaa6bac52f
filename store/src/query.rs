//! The one query language of `vigil search`: what an analyst asks of the node's store, of the
//! API, and of Elasticsearch ([`crate::elastic`]), so that one syntax serves one node and the
//! whole fleet. Every criterion narrows the result (they are and-ed); a query with none returns
//! the newest events.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The event keys a query may name.
pub const KINDS: [&str; 8] = [
    "process_exec",
    "process_exit",
    "process_kprobe",
    "process_lsm",
    "process_alert",
    // Last: a kind's place is its code in databases already written.
    "process_uprobe",
    "rate_limit_info",
    "flow_encryption",
];

/// Sigma levels, lowest first.
pub const LEVELS: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

/// The most events one query returns.
pub const MAX_LIMIT: u64 = 1_000_000;
/// What a query returns when it sets no limit.
pub const DEFAULT_LIMIT: u64 = 1000;
/// The longest text a criterion may hold.
pub const MAX_TEXT: usize = 4096;

/// How a text criterion matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "how", content = "text")]
pub enum TextMatch {
    /// The whole value.
    Exact(String),
    /// The value's start.
    Prefix(String),
    /// Anywhere in the value.
    Substring(String),
    /// A regular expression (Rust's `regex` syntax), anywhere in the value.
    Regex(String),
}

impl TextMatch {
    /// The text the criterion holds.
    pub fn text(&self) -> &str {
        match self {
            TextMatch::Exact(t)
            | TextMatch::Prefix(t)
            | TextMatch::Substring(t)
            | TextMatch::Regex(t) => t,
        }
    }

    /// Whether `value` matches; a regular expression that does not compile matches nothing
    /// ([`Query::check`] refuses it first).
    pub fn matches(&self, value: &str) -> bool {
        match self {
            TextMatch::Exact(t) => value == t,
            TextMatch::Prefix(t) => value.starts_with(t.as_str()),
            TextMatch::Substring(t) => value.contains(t.as_str()),
            TextMatch::Regex(r) => regex::Regex::new(r).is_ok_and(|r| r.is_match(value)),
        }
    }
}

/// One search.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// Events at or after this time, nanoseconds since the epoch.
    pub from_ns: Option<u64>,
    /// Events before this time.
    pub to_ns: Option<u64>,
    /// Event keys (`process_exec`, ...); any of them.
    pub kinds: Vec<String>,
    /// The process's binary: a full path matches it exactly, a name without `/` its last
    /// component.
    pub binary: Option<String>,
    /// The process's arguments.
    pub args: Option<TextMatch>,
    /// A file or path argument of a policy event.
    pub path: Option<TextMatch>,
    /// The destination address of a socket or connect argument, in this range.
    pub dst: Option<IpNet>,
    /// Its destination port.
    pub dport: Option<u16>,
    /// The name a DNS message asked for (case-insensitive, without the trailing dot).
    pub dns: Option<String>,
    /// The process's pod name.
    pub pod: Option<String>,
    /// The process's Kubernetes namespace.
    pub namespace: Option<String>,
    /// Events about this process (its exec id).
    pub exec_id: Option<String>,
    /// Events of this process and every process it started, at any depth.
    pub subtree: Option<String>,
    /// Policy events of this policy.
    pub policy: Option<String>,
    /// Alerts of this Sigma rule (its id or its title).
    pub rule: Option<String>,
    /// Alerts of this level or higher.
    pub level: Option<String>,
    /// At most this many events: the newest, returned oldest first. `None`: [`DEFAULT_LIMIT`].
    pub limit: Option<u64>,
}

/// A query the store refuses, with the criterion and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct QueryError {
    /// The criterion (its command-line flag name).
    pub field: &'static str,
    /// What is wrong and what to do.
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> QueryError {
    QueryError {
        field,
        reason: reason.into(),
    }
}

impl Query {
    /// Refuses what no store can answer: an unknown kind or level, a regular expression that
    /// does not compile, an empty or oversized text, a time range that ends before it starts.
    pub fn check(&self) -> Result<(), QueryError> {
        for k in &self.kinds {
            if !KINDS.contains(&k.as_str()) {
                return Err(refuse(
                    "type",
                    format!(
                        "`{k}` is not an event type; use one of {}",
                        KINDS.join(", ")
                    ),
                ));
            }
        }
        if let Some(l) = &self.level {
            if !LEVELS.contains(&l.as_str()) {
                return Err(refuse(
                    "level",
                    format!(
                        "`{l}` is not a Sigma level; use one of {}",
                        LEVELS.join(", ")
                    ),
                ));
            }
        }
        if let (Some(from), Some(to)) = (self.from_ns, self.to_ns) {
            if to < from {
                return Err(refuse("to", "the range ends before it starts"));
            }
        }
        if self.limit == Some(0) || self.limit.is_some_and(|l| l > MAX_LIMIT) {
            return Err(refuse(
                "limit",
                format!("between 1 and {MAX_LIMIT} events; use --count for how many match"),
            ));
        }
        let texts: [(&'static str, Option<&str>); 10] = [
            ("binary", self.binary.as_deref()),
            ("args", self.args.as_ref().map(TextMatch::text)),
            ("path", self.path.as_ref().map(TextMatch::text)),
            ("dns", self.dns.as_deref()),
            ("pod", self.pod.as_deref()),
            ("namespace", self.namespace.as_deref()),
            ("exec-id", self.exec_id.as_deref()),
            ("subtree", self.subtree.as_deref()),
            ("policy", self.policy.as_deref()),
            ("rule", self.rule.as_deref()),
        ];
        for (field, text) in texts {
            match text {
                Some("") => return Err(refuse(field, "empty: leave the criterion out instead")),
                Some(t) if t.len() > MAX_TEXT => {
                    return Err(refuse(field, format!("longer than {MAX_TEXT} bytes")))
                }
                _ => {}
            }
        }
        for (field, m) in [("args", &self.args), ("path", &self.path)] {
            if let Some(TextMatch::Regex(r)) = m {
                regex::RegexBuilder::new(r)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| refuse(field, format!("not a regular expression: {e}")))?;
            }
        }
        Ok(())
    }

    /// The limit in force.
    pub fn limit(&self) -> u64 {
        self.limit.unwrap_or(DEFAULT_LIMIT)
    }

    /// The DNS name as stored: lower case, without the trailing dot.
    pub fn dns_name(&self) -> Option<String> {
        self.dns
            .as_deref()
            .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
    }

    /// The rank of the level asked for (0: informational).
    pub fn level_rank(&self) -> Option<usize> {
        self.level.as_deref().and_then(level_rank)
    }
}

/// The rank of a Sigma level (0: informational), `None` for anything else.
pub fn level_rank(level: &str) -> Option<usize> {
    LEVELS.iter().position(|l| *l == level)
}

/// A destination criterion from the command line: an address (`10.1.2.3`, a /32 or /128) or a
/// range (`10.1.0.0/16`).
pub fn parse_dst(text: &str) -> Result<IpNet, QueryError> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        refuse(
            "dst",
            format!("`{text}` is neither an address nor a range: write 10.0.0.1, 10.0.0.0/8 or fd00::/8"),
        )
    })
}

/// A duration such as `90s`, `15m`, `2h`, `7d`, for `--since`.
pub fn parse_duration_ns(text: &str) -> Result<u64, QueryError> {
    let bad = || {
        refuse(
            "since",
            format!("`{text}` is not a duration: a number and a unit, s, m, h or d (`2h`)"),
        )
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(secs)
        .and_then(|s| s.checked_mul(1_000_000_000))
        .ok_or_else(bad)
}

/// A time for `--from`/`--to`: RFC 3339 (`2026-12-03T10:00:00Z`, fractions allowed) or
/// nanoseconds since the epoch.
pub fn parse_time_ns(field: &'static str, text: &str) -> Result<u64, QueryError> {
    if let Ok(n) = text.parse::<u64>() {
        return Ok(n);
    }
    match vigil_events::time::parse_rfc3339_ns(text) {
        Some(n) => Ok(n),
        None => Err(refuse(
            field,
            format!("`{text}` is not a time: write it as 2026-12-03T10:00:00Z (UTC) or nanoseconds since the epoch"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_is_cut_to_its_network_and_an_address_is_a_host_range() {
        assert_eq!(parse_dst("10.1.2.3/16").unwrap().to_string(), "10.1.0.0/16");
        assert_eq!(parse_dst("10.1.2.3").unwrap().to_string(), "10.1.2.3/32");
        assert_eq!(parse_dst("fd00::1").unwrap().to_string(), "fd00::1/128");
        assert_eq!(parse_dst("host").unwrap_err().field, "dst");
    }

    #[test]
    fn durations_take_a_unit_and_refuse_overflow() {
        assert_eq!(parse_duration_ns("5m").unwrap(), 300_000_000_000);
        assert_eq!(parse_duration_ns("2h").unwrap(), 7_200_000_000_000);
        assert!(parse_duration_ns("5").is_err());
        assert!(parse_duration_ns("m").is_err());
        assert!(parse_duration_ns("99999999999999999d").is_err());
    }

    #[test]
    fn a_bad_criterion_is_refused_by_its_flag() {
        let q = Query {
            kinds: vec!["process_open".into()],
            ..Default::default()
        };
        assert_eq!(q.check().unwrap_err().field, "type");
        let q = Query {
            args: Some(TextMatch::Regex("(".into())),
            ..Default::default()
        };
        assert_eq!(q.check().unwrap_err().field, "args");
        let q = Query {
            from_ns: Some(10),
            to_ns: Some(5),
            ..Default::default()
        };
        assert_eq!(q.check().unwrap_err().field, "to");
        let q = Query {
            pod: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(q.check().unwrap_err().field, "pod");
        let q = Query {
            level: Some("severe".into()),
            ..Default::default()
        };
        assert_eq!(q.check().unwrap_err().field, "level");
    }
}
