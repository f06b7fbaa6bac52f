//! A DNS resolver the scenarios and the benchmark start on loopback: it answers the names it
//! is given with their IPv4 address, and every other name with NXDOMAIN, as a cluster's DNS
//! answers a service that does not exist.

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

pub use simple_dns::TYPE;
use simple_dns::{
    rdata::{RData, A},
    Packet, ResourceRecord, CLASS, QTYPE, RCODE,
};

/// A resolver answering on a UDP socket until it is stopped.
pub struct TestResolver {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// The answer to one query: the known name's address for its A question, no record for its
/// other types, NXDOMAIN for any other name.
fn answer(query: &[u8], known: &[(String, Ipv4Addr)]) -> Option<Vec<u8>> {
    let q = Packet::parse(query).ok()?;
    let mut reply = Packet::new_reply(q.id());
    let question = q.questions.first()?.clone();
    let name = question.qname.to_string();
    let name = name.trim_end_matches('.');
    match known.iter().find(|(n, _)| n == name) {
        Some((_, ip)) => {
            if question.qtype == QTYPE::TYPE(TYPE::A) {
                reply.answers.push(ResourceRecord::new(
                    question.qname.clone(),
                    CLASS::IN,
                    30,
                    RData::A(A {
                        address: u32::from(*ip),
                    }),
                ));
            }
        }
        None => *reply.rcode_mut() = RCODE::NameError,
    }
    reply.questions.push(question);
    reply.build_bytes_vec().ok()
}

impl TestResolver {
    /// Starts answering on `bind` (`127.0.0.1:53` for clients that take no port). Panics
    /// with the reason when the address cannot be bound.
    pub fn start(bind: &str, known: &[(&str, Ipv4Addr)]) -> TestResolver {
        let sock = UdpSocket::bind(bind).unwrap_or_else(|e| {
            panic!("the test resolver cannot bind {bind}: {e} (is another DNS server running?)")
        });
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let known: Vec<(String, Ipv4Addr)> =
            known.iter().map(|(n, a)| (n.to_string(), *a)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, answered) = (stop.clone(), answered.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    if let Some(reply) = answer(&buf[..n], &known) {
                        if sock.send_to(&reply, from).is_ok() {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        };
        TestResolver {
            addr,
            stop,
            answered,
            thread: Some(thread),
        }
    }

    /// Where it answers.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many queries it answered so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }
}

impl Drop for TestResolver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A query for `name` of record type `t` with message id `id`, as a stub resolver sends it.
pub fn query(id: u16, name: &str, t: TYPE) -> Vec<u8> {
    let mut p = Packet::new_query(id);
    p.set_flags(simple_dns::PacketFlag::RECURSION_DESIRED);
    p.questions.push(simple_dns::Question::new(
        simple_dns::Name::new_unchecked(name),
        QTYPE::TYPE(t),
        simple_dns::QCLASS::CLASS(CLASS::IN),
        false,
    ));
    p.build_bytes_vec().expect("a query")
}
