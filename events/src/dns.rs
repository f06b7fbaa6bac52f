//! DNS messages seen in datagrams a process sent or received: what `dns_arg` holds.
//!
//! The kernel copies the first bytes of the datagram (up to 251); this module decodes them with
//! `simple-dns` into the question, the response code and the addresses and names answered. A
//! copy that stops inside the answers still gives the header and the question: the answer
//! counts are cleared and the message decoded again, and `truncated` says some answers were
//! left out.

use serde::{Deserialize, Serialize};
use simple_dns::{rdata::RData, Packet, PacketFlag, RCODE};

/// `dns_arg`: one DNS message (vigil's addition; Tetragon has no DNS argument).
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DnsArg {
    /// The message id, which pairs a query with its answer.
    pub id: u16,
    /// Whether the message is an answer (QR set).
    #[serde(default)]
    pub response: bool,
    /// The name asked for (the first question), without the trailing dot.
    #[serde(default)]
    pub query: String,
    /// The record type asked for: `A`, `AAAA`, `TXT`, ... or `TYPE<n>`.
    #[serde(rename = "type", default)]
    pub qtype: String,
    /// An answer's code: `NOERROR`, `NXDOMAIN`, `SERVFAIL`, `REFUSED`, ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rcode: String,
    /// An answer's addresses (A, AAAA) and names (CNAME, PTR, NS, MX), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<String>,
    /// The datagram was longer than the bytes the kernel copied and some answers are missing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
    /// Why the bytes are not a DNS message, when they are not.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl DnsArg {
    /// Decodes a DNS message from the first bytes of a datagram; `cut` says the datagram was
    /// longer than `bytes`.
    pub fn decode(bytes: &[u8], cut: bool) -> DnsArg {
        match Packet::parse(bytes) {
            Ok(p) => from_packet(&p, cut),
            Err(first) => {
                // The copy may stop inside a record: keep the header and question.
                if bytes.len() >= 12 {
                    let mut head = bytes.to_vec();
                    head[6..12].fill(0);
                    if let Ok(p) = Packet::parse(&head) {
                        let mut arg = from_packet(&p, true);
                        arg.truncated = true;
                        return arg;
                    }
                }
                DnsArg {
                    error: format!("not a DNS message: {first}"),
                    truncated: cut,
                    ..Default::default()
                }
            }
        }
    }
}

fn from_packet(p: &Packet, cut: bool) -> DnsArg {
    let response = p.has_flags(PacketFlag::RESPONSE);
    let (query, qtype) = p
        .questions
        .first()
        .map(|q| {
            let name = q.qname.to_string();
            (
                name.trim_end_matches('.').to_string(),
                type_name(q.qtype.into()),
            )
        })
        .unwrap_or_default();
    let answers = p
        .answers
        .iter()
        .filter_map(|rr| match &rr.rdata {
            RData::A(a) => Some(std::net::Ipv4Addr::from(a.address).to_string()),
            RData::AAAA(a) => Some(std::net::Ipv6Addr::from(a.address).to_string()),
            RData::CNAME(n) => Some(n.0.to_string()),
            RData::PTR(n) => Some(n.0.to_string()),
            RData::NS(n) => Some(n.0.to_string()),
            RData::MX(m) => Some(m.exchange.to_string()),
            _ => None,
        })
        .collect();
    DnsArg {
        id: p.id(),
        response,
        query,
        qtype,
        rcode: if response {
            rcode_name(p.rcode())
        } else {
            String::new()
        },
        answers,
        truncated: cut,
        error: String::new(),
    }
}

/// The mnemonic of a record type, as dig prints it.
fn type_name(t: u16) -> String {
    let name = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        43 => "DS",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        252 => "AXFR",
        255 => "ANY",
        n => return format!("TYPE{n}"),
    };
    name.to_string()
}

fn rcode_name(r: RCODE) -> String {
    match r {
        RCODE::NoError => "NOERROR",
        RCODE::FormatError => "FORMERR",
        RCODE::ServerFailure => "SERVFAIL",
        RCODE::NameError => "NXDOMAIN",
        RCODE::NotImplemented => "NOTIMP",
        RCODE::Refused => "REFUSED",
        RCODE::YXDOMAIN => "YXDOMAIN",
        RCODE::YXRRSET => "YXRRSET",
        RCODE::NXRRSET => "NXRRSET",
        RCODE::NOTAUTH => "NOTAUTH",
        RCODE::NOTZONE => "NOTZONE",
        other => return format!("RCODE{}", other as u16),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::{rdata::A, Name, Question, ResourceRecord, CLASS, QCLASS, QTYPE, TYPE};

    fn query(name: &str, t: TYPE) -> Packet<'_> {
        let mut p = Packet::new_query(0x1234);
        p.questions.push(Question::new(
            Name::new_unchecked(name),
            QTYPE::TYPE(t),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        p
    }

    #[test]
    fn a_query_gives_its_name_and_type() {
        let bytes = query("unknown-galaxy.svc.cluster.local", TYPE::AAAA)
            .build_bytes_vec()
            .unwrap();
        let arg = DnsArg::decode(&bytes, false);
        assert_eq!(arg.id, 0x1234);
        assert!(!arg.response);
        assert_eq!(arg.query, "unknown-galaxy.svc.cluster.local");
        assert_eq!(arg.qtype, "AAAA");
        assert_eq!(arg.rcode, "");
    }

    #[test]
    fn an_answer_gives_its_code_and_addresses() {
        let mut p = query("example.internal", TYPE::A).into_reply();
        *p.rcode_mut() = RCODE::NoError;
        p.answers.push(ResourceRecord::new(
            Name::new_unchecked("example.internal"),
            CLASS::IN,
            60,
            RData::A(A {
                address: u32::from(std::net::Ipv4Addr::new(10, 1, 2, 3)),
            }),
        ));
        let arg = DnsArg::decode(&p.build_bytes_vec().unwrap(), false);
        assert!(arg.response);
        assert_eq!(arg.rcode, "NOERROR");
        assert_eq!(arg.answers, ["10.1.2.3"]);

        let mut nx = query("unknown-galaxy.svc.cluster.local", TYPE::A).into_reply();
        *nx.rcode_mut() = RCODE::NameError;
        let arg = DnsArg::decode(&nx.build_bytes_vec().unwrap(), false);
        assert_eq!(arg.rcode, "NXDOMAIN");
        assert!(arg.answers.is_empty());
    }

    #[test]
    fn a_copy_cut_inside_the_answers_keeps_the_question() {
        let mut p = query("cut.example", TYPE::A).into_reply();
        for i in 0..20 {
            p.answers.push(ResourceRecord::new(
                Name::new_unchecked("cut.example"),
                CLASS::IN,
                60,
                RData::A(A { address: i }),
            ));
        }
        let bytes = p.build_bytes_vec().unwrap();
        let arg = DnsArg::decode(&bytes[..60], true);
        assert_eq!(arg.query, "cut.example");
        assert_eq!(arg.rcode, "NOERROR");
        assert!(arg.truncated);
        assert_eq!(arg.error, "");
    }

    #[test]
    fn bytes_that_are_no_dns_message_say_so() {
        let arg = DnsArg::decode(b"GET / HTTP/1.1", false);
        assert!(arg.error.starts_with("not a DNS message"), "{arg:?}");
    }
}
