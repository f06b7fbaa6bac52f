//! vigil events in Sigma's Linux taxonomy: which logsource category an event belongs to and its
//! fields under Sigma's names, with ports and ids as signed integers (how sigma-rust compares
//! numbers written in rules).
//!
//! | category | vigil event | fields |
//! |---|---|---|
//! | `process_creation` | `process_exec` | Image, CommandLine, CurrentDirectory, User, LogonId, ProcessId, ParentImage, ParentCommandLine, ParentProcessId |
//! | `file_event` | `process_kprobe` / `process_lsm` with a `file_arg` or `path_arg` | TargetFilename, Image, User, ProcessId, LogonId |
//! | `network_connection` | `process_kprobe` with a `sock_arg` or `sockaddr_arg` | DestinationIp, DestinationPort, SourceIp, SourcePort, Initiated, Protocol, Image, User, ProcessId, LogonId |
//! | `network_connection` | `flow_encryption` (a flow's encryption verdict) | the same (the process's when vigil saw it open the flow), and EncryptionMode (`wireguard`, `ipsec`, `none`, `local`, `unknown`), EncryptionEvidence, EncryptionInterface, RemoteRange |
//! | `dns_query` | `process_kprobe` with a `dns_arg` that is an answer (one per lookup, as Sysmon logs them) | QueryName, QueryType, QueryStatus (`NOERROR`, `NXDOMAIN`, ...), QueryResults (`;`-separated), Image, User, ProcessId, LogonId |
//!
//! Every category also has the Kubernetes pod of the process, on a Kubernetes node:
//! PodNamespace, PodName, ContainerName, ContainerImage and Workload ([`POD_FIELDS`]).
//!
//! Rules written for logs rather than a category are evaluated on records vigil derives from
//! the same events ([`super::auditd`]): `service: auditd` rules on auditd's SYSCALL, EXECVE and
//! PATH records, and rules with a product only (shell and syslog lines) on the command line as
//! it was typed.
//!
//! [`CATEGORY_FIELDS`] lists them for the loader's warnings.

use std::borrow::Cow;

use rustc_hash::FxHashMap;

use vigil_events::{Arg, Event, EventBody, Process};

/// The fields vigil fills in each category's events, by Sigma name: what [`sigma_fields`]
/// writes (a parent's fields when the process has a parent). A rule that names another field
/// loads with a warning ([`super::unfilled`]): nothing it says of that field ever matches.
pub const CATEGORY_FIELDS: [(&str, &[&str]); 6] = [
    (
        "process_creation",
        &[
            "Image",
            "User",
            "ProcessId",
            "LogonId",
            "CommandLine",
            "CurrentDirectory",
            "ParentImage",
            "ParentCommandLine",
            "ParentProcessId",
        ],
    ),
    (
        "file_event",
        &["Image", "User", "ProcessId", "LogonId", "TargetFilename"],
    ),
    (
        "network_connection",
        &[
            "Image",
            "User",
            "ProcessId",
            "LogonId",
            "DestinationIp",
            "DestinationPort",
            "SourceIp",
            "SourcePort",
            "Protocol",
            "Initiated",
            "EncryptionMode",
            "EncryptionEvidence",
            "EncryptionInterface",
            "RemoteRange",
        ],
    ),
    (
        "dns_query",
        &[
            "Image",
            "User",
            "ProcessId",
            "LogonId",
            "QueryName",
            "QueryType",
            "QueryStatus",
            "QueryResults",
        ],
    ),
    (super::auditd::AUDITD, super::auditd::AUDITD_FIELDS),
    (super::auditd::LINUX, &["CommandLine"]),
];

/// The pod fields every category has when the process runs in a pod.
pub const POD_FIELDS: [&str; 5] = [
    "PodNamespace",
    "PodName",
    "ContainerName",
    "ContainerImage",
    "Workload",
];

/// Sigma logsource categories vigil produces (the logs of [`super::auditd`] aside).
pub const CATEGORIES: [&str; 4] = [
    CATEGORY_FIELDS[0].0,
    CATEGORY_FIELDS[1].0,
    CATEGORY_FIELDS[2].0,
    CATEGORY_FIELDS[3].0,
];

/// Whether two names are the same, where the compiler can tell.
const fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() && a[i] == b[i] {
        i += 1;
    }
    i == a.len()
}

/// The fields of [`CATEGORY_FIELDS`] and [`POD_FIELDS`], each once in their order, and how
/// many there are.
const fn distinct_fields() -> ([&'static str; 256], usize) {
    let mut out = [""; 256];
    let mut n = 0;
    let mut c = 0;
    while c <= CATEGORY_FIELDS.len() {
        let list: &[&str] = if c < CATEGORY_FIELDS.len() {
            CATEGORY_FIELDS[c].1
        } else {
            &POD_FIELDS
        };
        let mut i = 0;
        while i < list.len() {
            let mut j = 0;
            while j < n && !same_name(out[j], list[i]) {
                j += 1;
            }
            if j == n {
                out[n] = list[i];
                n += 1;
            }
            i += 1;
        }
        c += 1;
    }
    (out, n)
}

const DISTINCT_FIELDS: ([&str; 256], usize) = distinct_fields();

/// Every field vigil fills in some view, once: a field's place here is its [`Field::id`].
const ALL_FIELDS: &[&str] = DISTINCT_FIELDS.0.split_at(DISTINCT_FIELDS.1).0;

/// How many fields vigil fills: the size of a table indexed by [`Field::id`].
pub(super) const FIELDS: usize = ALL_FIELDS.len();
const _: () = assert!(FIELDS <= 256, "a field's id is a byte");

/// A field vigil fills: its Sigma name and its number, by which the engine's tables are
/// indexed (a view's field is found without comparing or hashing its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Field {
    /// Its place in vigil's list of fields.
    pub id: u8,
    /// Its Sigma name.
    pub name: &'static str,
}

/// The field named `name`; evaluated at compile time by [`field!`], where a name vigil does not
/// list stops the build.
pub(super) const fn named(name: &'static str) -> Field {
    let mut i = 0;
    while i < ALL_FIELDS.len() {
        if same_name(ALL_FIELDS[i], name) {
            return Field {
                id: i as u8,
                name: ALL_FIELDS[i],
            };
        }
        i += 1;
    }
    panic!("a Sigma field vigil does not list in CATEGORY_FIELDS or POD_FIELDS")
}

/// The [`Field`] of a name, computed when the crate is built.
macro_rules! field {
    ($name:expr) => {
        const { $crate::sigma::fields::named($name) }
    };
}
pub(super) use field;

/// The field called `name`, if vigil fills a field of that name in some view.
pub fn known_field(name: &str) -> Option<Field> {
    let at = ALL_FIELDS.iter().position(|f| *f == name)?;
    Some(Field {
        id: at as u8,
        name: ALL_FIELDS[at],
    })
}

/// The fields vigil fills in `category`'s events.
pub fn filled(category: &str) -> &'static [&'static str] {
    CATEGORY_FIELDS
        .iter()
        .find(|(c, _)| *c == category)
        .map_or(&[], |(_, f)| f)
}

/// Names of users by uid, read from `/etc/passwd` once.
#[derive(Debug, Default, Clone)]
pub struct Users(FxHashMap<u32, String>);

impl Users {
    /// Reads `/etc/passwd` (an empty table when it cannot be read: `User` is then the uid).
    pub fn read() -> Self {
        let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        Users(
            text.lines()
                .filter_map(|l| {
                    let mut f = l.split(':');
                    let name = f.next()?;
                    let uid = f.nth(1)?.parse().ok()?;
                    Some((uid, name.to_string()))
                })
                .collect(),
        )
    }

    pub(super) fn name(&self, uid: u32) -> Cow<'_, str> {
        self.0.get(&uid).map_or_else(
            || Cow::Owned(uid.to_string()),
            |n| Cow::Borrowed(n.as_str()),
        )
    }
}

/// One field's value, borrowed from the event where it is one of the event's strings.
#[derive(Debug, Clone)]
pub enum FieldValue<'a> {
    /// A string.
    Text(Cow<'a, str>),
    /// A number (ports, ids), signed as sigma-rust compares numbers.
    Int(i64),
}

/// An event's fields for Sigma, and the category they belong to.
pub struct SigmaFields<'a> {
    /// The logsource category (or log, [`super::auditd`]).
    pub category: &'static str,
    /// The fields, by Sigma name.
    pub values: Vec<(Field, FieldValue<'a>)>,
}

impl SigmaFields<'_> {
    /// The fields as sigma-rust evaluates them; built only for events a rule may match.
    pub fn to_event(&self) -> sigma_rust::Event {
        let mut e = sigma_rust::Event::new();
        for (k, v) in &self.values {
            match v {
                FieldValue::Text(t) => e.insert(k.name, t.to_string()),
                FieldValue::Int(i) => e.insert(k.name, *i),
            }
        }
        e
    }
}

/// argv as one line, the way auditd and Sysmon for Linux write it: `argv0` (the binary, or
/// its name as a shell passes it) and the arguments as they were, space-separated, without
/// vigil's quoting.
pub(super) fn command_line<'a>(argv0: &'a str, p: &'a Process) -> Cow<'a, str> {
    if p.arguments.is_empty() {
        return Cow::Borrowed(argv0);
    }
    let mut line = String::with_capacity(argv0.len() + p.arguments.len() + 1);
    line.push_str(argv0);
    // Only arguments with spaces, quotes or backslashes were quoted: the rest is argv as is.
    if !quoted(&p.arguments) {
        line.push(' ');
        line.push_str(&p.arguments);
        return Cow::Owned(line);
    }
    for a in vigil_events::split_arguments(&p.arguments) {
        line.push(' ');
        line.push_str(&a);
    }
    Cow::Owned(line)
}

/// Whether vigil quoted some argument of `arguments` (one with a space, a quote or a
/// backslash): else they are argv as it was, one space between each. A byte scan: argument
/// lines are short, and a search's set-up costs more than the scan.
pub(super) fn quoted(arguments: &str) -> bool {
    arguments.bytes().any(|b| b == b'"' || b == b'\\')
}

/// The arguments of an unquoted argument line ([`quoted`]), split at its spaces.
// A predicate, not the char: the char's searcher sets up a memchr per piece (callgrind:
// 400,000 more instructions in the Sigma bench's batch).
#[allow(clippy::manual_pattern_char_comparison)]
pub(super) fn plain_arguments(arguments: &str) -> impl Iterator<Item = &str> {
    arguments
        .split(|c: char| c == ' ')
        .filter(|a| !a.is_empty())
}

/// Builds one [`SigmaFields`].
pub(super) struct Builder<'a> {
    values: Vec<(Field, FieldValue<'a>)>,
}

/// The fields most views have (an exec's SYSCALL record has 13).
const VIEW_FIELDS: usize = 14;

impl<'a> Builder<'a> {
    pub(super) fn new() -> Self {
        Builder {
            values: Vec::with_capacity(VIEW_FIELDS),
        }
    }

    pub(super) fn text(&mut self, key: Field, v: impl Into<Cow<'a, str>>) {
        self.values.push((key, FieldValue::Text(v.into())));
    }

    pub(super) fn int(&mut self, key: Field, v: i64) {
        self.values.push((key, FieldValue::Int(v)));
    }

    pub(super) fn build(self, category: &'static str) -> SigmaFields<'a> {
        SigmaFields {
            category,
            values: self.values,
        }
    }

    fn process(&mut self, p: &'a Process, users: &'a Users) {
        self.text(field!("Image"), p.binary.as_str());
        self.text(field!("User"), users.name(p.uid));
        self.int(field!("ProcessId"), p.pid as i64);
        self.int(field!("LogonId"), p.auid as i64);
        if let Some(pod) = &p.pod {
            self.text(field!("PodNamespace"), pod.namespace.as_str());
            self.text(field!("PodName"), pod.name.as_str());
            self.text(field!("Workload"), pod.workload.as_str());
            if let Some(c) = &pod.container {
                self.text(field!("ContainerName"), c.name.as_str());
                if let Some(image) = &c.image {
                    self.text(field!("ContainerImage"), image.name.as_str());
                }
            }
        }
    }
}

/// Where the views of an event go as they are built: into a list ([`Vec`]), or each to a
/// closure in turn ([`EachView`]).
pub(super) trait ViewSink<'a> {
    /// A builder for the next view.
    fn builder(&mut self) -> Builder<'a> {
        Builder::new()
    }
    fn view(&mut self, view: SigmaFields<'a>);
}

impl<'a> ViewSink<'a> for Vec<SigmaFields<'a>> {
    fn view(&mut self, view: SigmaFields<'a>) {
        self.push(view);
    }
}

/// Hands each view to a closure as it is built, then builds the next in the same buffer: an
/// exec has six views or more, and each a list of its own was as many allocations per event.
pub(super) struct EachView<'a, F> {
    spare: Vec<(Field, FieldValue<'a>)>,
    each: F,
}

impl<'a, F: FnMut(&SigmaFields<'a>)> EachView<'a, F> {
    pub(super) fn new(each: F) -> Self {
        EachView {
            spare: Vec::with_capacity(VIEW_FIELDS),
            each,
        }
    }
}

impl<'a, F: FnMut(&SigmaFields<'a>)> ViewSink<'a> for EachView<'a, F> {
    fn builder(&mut self) -> Builder<'a> {
        Builder {
            values: std::mem::take(&mut self.spare),
        }
    }

    fn view(&mut self, view: SigmaFields<'a>) {
        (self.each)(&view);
        let mut values = view.values;
        values.clear();
        self.spare = values;
    }
}

/// The Sigma view of `e`, or `None` for events no category covers.
pub fn sigma_fields<'a>(e: &'a Event, users: &'a Users) -> Option<SigmaFields<'a>> {
    let mut views = Vec::with_capacity(1);
    category_view(e, users, &mut views);
    views.pop()
}

/// The Sigma view of `e`, given to `out`, when a category covers it.
pub(super) fn category_view<'a>(e: &'a Event, users: &'a Users, out: &mut impl ViewSink<'a>) {
    let mut b = out.builder();
    let category = match &e.body {
        EventBody::ProcessExec(x) => {
            b.process(&x.process, users);
            b.text(
                field!("CommandLine"),
                command_line(&x.process.binary, &x.process),
            );
            b.text(field!("CurrentDirectory"), x.process.cwd.as_str());
            if let Some(p) = &x.parent {
                b.text(field!("ParentImage"), p.binary.as_str());
                b.text(field!("ParentCommandLine"), command_line(&p.binary, p));
                b.int(field!("ParentProcessId"), p.pid as i64);
            }
            "process_creation"
        }
        EventBody::ProcessKprobe(x)
        | EventBody::ProcessLsm(x)
        | EventBody::ProcessUprobe(x)
        | EventBody::ProcessTracepoint(x)
        | EventBody::ProcessLoader(x) => {
            let file = x.args.iter().find_map(|a| match a {
                Arg::FileArg(f) | Arg::PathArg(f) => Some(f.path.as_str()),
                _ => None,
            });
            let sock = x.args.iter().find_map(|a| match a {
                Arg::SockArg(s) => Some((
                    s.saddr.as_str(),
                    s.sport,
                    s.daddr.as_str(),
                    s.dport,
                    s.protocol.as_str(),
                )),
                Arg::SockaddrArg(s) => Some(("", 0, s.addr.as_str(), s.port, "")),
                _ => None,
            });
            let dns = x.args.iter().find_map(|a| match a {
                Arg::DnsArg(d) => Some(d),
                _ => None,
            });
            b.process(&x.process, users);
            if let Some(d) = dns {
                // The query itself is not a lookup's result: its answer carries the question.
                if !d.response {
                    return;
                }
                b.text(field!("QueryName"), d.query.as_str());
                b.text(field!("QueryType"), d.qtype.as_str());
                b.text(field!("QueryStatus"), d.rcode.as_str());
                b.text(field!("QueryResults"), d.answers.join(";"));
                "dns_query"
            } else if let Some(path) = file {
                b.text(field!("TargetFilename"), path);
                "file_event"
            } else if let Some((saddr, sport, daddr, dport, proto)) = sock {
                b.text(field!("DestinationIp"), daddr);
                b.int(field!("DestinationPort"), dport as i64);
                b.text(field!("SourceIp"), saddr);
                b.int(field!("SourcePort"), sport as i64);
                b.text(
                    field!("Protocol"),
                    proto.trim_start_matches("IPPROTO_").to_lowercase(),
                );
                // vigil sees connects from the process that makes them.
                b.text(field!("Initiated"), "true");
                "network_connection"
            } else {
                return;
            }
        }
        EventBody::FlowEncryption(x) => {
            let s = &x.flow;
            if let Some(p) = &x.process {
                b.process(p, users);
                b.text(field!("Initiated"), "true");
            }
            b.text(field!("DestinationIp"), s.daddr.as_str());
            b.int(field!("DestinationPort"), s.dport as i64);
            b.text(field!("SourceIp"), s.saddr.as_str());
            b.int(field!("SourcePort"), s.sport as i64);
            b.text(
                field!("Protocol"),
                s.protocol.trim_start_matches("IPPROTO_").to_lowercase(),
            );
            if let Some(enc) = &s.encryption {
                b.text(field!("EncryptionMode"), enc.mode.as_str());
                b.text(field!("EncryptionEvidence"), enc.evidence.as_str());
                b.text(field!("EncryptionInterface"), enc.interface.as_str());
                b.text(field!("RemoteRange"), enc.remote_range.as_str());
            }
            "network_connection"
        }
        EventBody::ProcessExit(_) | EventBody::ProcessAlert(_) | EventBody::RateLimitInfo(_) => {
            return
        }
    };
    out.view(b.build(category));
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, sync::Arc};

    use vigil_events::{dns::DnsArg, Arg, Event, FileArg, Process};

    use super::*;
    use crate::sigma::testing::{self, exec_of};

    fn policy_event(arg: Arg) -> Event {
        testing::policy_event("f", arg)
    }

    #[test]
    fn the_field_list_is_every_category_s_fields_and_the_pods() {
        let listed: BTreeSet<&str> = CATEGORY_FIELDS
            .iter()
            .flat_map(|(_, f)| f.iter())
            .chain(POD_FIELDS.iter())
            .copied()
            .collect();
        let all: BTreeSet<&str> = ALL_FIELDS.iter().copied().collect();
        assert_eq!(all, listed);
        assert_eq!(all.len(), ALL_FIELDS.len(), "each once");
        for (i, name) in ALL_FIELDS.iter().enumerate() {
            assert_eq!(known_field(name).map(|f| usize::from(f.id)), Some(i));
        }
    }

    #[test]
    fn the_fields_listed_per_category_are_the_fields_each_event_gets() {
        let exec = exec_of(Process::default(), Some(Arc::new(Process::default())));
        let file = policy_event(Arg::FileArg(FileArg {
            path: "/x".into(),
            ..Default::default()
        }));
        let sock = policy_event(Arg::SockaddrArg(vigil_events::SockaddrArg {
            family: "AF_INET".into(),
            addr: "10.0.0.1".into(),
            port: 1,
        }));
        let dns = policy_event(Arg::DnsArg(DnsArg {
            response: true,
            ..Default::default()
        }));
        // A flow's verdict, with the process that opened it: every network field.
        let flow = testing::event(EventBody::FlowEncryption(Box::new(
            vigil_events::FlowEncryption {
                process: Some(Arc::new(Process::default())),
                parent: None,
                flow: vigil_events::SockArg {
                    family: "AF_INET".into(),
                    sock_type: String::new(),
                    protocol: "IPPROTO_TCP".into(),
                    saddr: "10.0.0.1".into(),
                    daddr: "10.2.0.1".into(),
                    sport: 1,
                    dport: 2,
                    state: String::new(),
                    netns: 0,
                    cookie: 0,
                    bytes_sent: None,
                    bytes_received: None,
                    encryption: Some(Box::default()),
                },
            },
        )));
        let users = Users::default();
        for e in [exec, file, flow, dns] {
            let f = sigma_fields(&e, &users).unwrap();
            let got: BTreeSet<&str> = f.values.iter().map(|(k, _)| k.name).collect();
            let listed: BTreeSet<&str> = filled(f.category).iter().copied().collect();
            assert_eq!(got, listed, "{}", f.category);
        }
        // A policy's socket event has the network fields but the verdict's: its own
        // `encryption` is in its JSON, and the verdict event is the one rules match.
        let f = sigma_fields(&sock, &users).unwrap();
        let got: BTreeSet<&str> = f.values.iter().map(|(k, _)| k.name).collect();
        let verdict = [
            "EncryptionMode",
            "EncryptionEvidence",
            "EncryptionInterface",
            "RemoteRange",
        ];
        let listed: BTreeSet<&str> = filled(f.category)
            .iter()
            .copied()
            .filter(|n| !verdict.contains(n))
            .collect();
        assert_eq!(got, listed);
    }

    #[test]
    fn a_rule_can_match_the_pod_of_a_process() {
        let rule = "title: Shell in a web pod\nid: 8f1f2a52-0c61-4d55-9c9e-0c1f4c1e2b11\nstatus: test\nlevel: high\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  selection:\n    PodNamespace: shop\n    ContainerName: web\n    Image|endswith: /sh\n  condition: selection\n";
        let loaded = crate::sigma::load_rule(std::path::Path::new("pod.yml"), rule).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let engine = crate::sigma::SigmaEngine::from_rules(vec![loaded]);
        let exec = |namespace: &str| {
            let pod = vigil_events::Pod {
                namespace: namespace.into(),
                name: "web-1".into(),
                container: Some(vigil_events::Container {
                    name: "web".into(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            exec_of(
                Process {
                    binary: "/bin/sh".into(),
                    pod: Some(Box::new(pod)),
                    ..Default::default()
                },
                None,
            )
        };
        assert_eq!(engine.evaluate(&exec("shop")).len(), 1);
        assert!(engine.evaluate(&exec("bank")).is_empty());
        let host = exec_of(
            Process {
                binary: "/bin/sh".into(),
                ..Default::default()
            },
            None,
        );
        assert!(engine.evaluate(&host).is_empty());
    }
}
