//! `make bench`, encryption awareness: what the flow programs (`flow.bpf.c`, on every packet a
//! device of the node's namespace sends) cost the node's network path, in one run.
//!
//! Two streams of 64-byte UDP datagrams, one packet each: over loopback, and over a veth into
//! a namespace this benchmark makes (10.218.0.0/24). Each is measured without an agent, with an
//! agent that tracks no range (the feature off: nothing attached), with one whose ranges do not
//! hold the destination (the packet costs the program, its header read and one LPM lookup),
//! and with one whose range holds it (the flow is tracked: one more hash lookup to find its
//! verdict unchanged). Rounds alternate; the table shows medians, every round, and the
//! nanoseconds added per packet against the agent with the feature off.

use std::{net::UdpSocket, time::Instant};

use vigil_tests::{
    links::{NamedNs, Veth},
    measure::median,
    Agent,
};

const PACKETS: usize = 300_000;
const ROUNDS: usize = 3;

/// Datagrams sent per second to `to`, `PACKETS` of them.
fn send_rate(to: &str) -> f64 {
    let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
    sock.connect(to).expect("connect");
    let payload = [0u8; 64];
    let start = Instant::now();
    for _ in 0..PACKETS {
        // A full receive queue drops the datagram after it was sent: the send still counts.
        let _ = sock.send(&payload);
    }
    PACKETS as f64 / start.elapsed().as_secs_f64()
}

struct Stream {
    what: &'static str,
    to: String,
    /// By configuration: none, off, untracked, tracked.
    rates: [Vec<f64>; 4],
}

fn main() {
    vigil_tests::require_root();
    let peer = NamedNs::new("vigil-bench-flows");
    let _veth = Veth::new(
        "vbflow-h",
        None,
        "10.218.0.1/24",
        "vbflow-p",
        Some(&peer),
        "10.218.0.2/24",
    );
    // Receivers that keep the streams' datagrams from answering with ICMP errors.
    let lo_sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let lo_to = lo_sink.local_addr().unwrap().to_string();
    let veth_sink = peer.run_inside(|| UdpSocket::bind("10.218.0.2:0").unwrap());
    let veth_to = veth_sink.local_addr().unwrap().to_string();
    let mut streams = [
        Stream {
            what: "64-byte UDP datagrams over loopback",
            to: lo_to,
            rates: Default::default(),
        },
        Stream {
            what: "64-byte UDP datagrams over a veth into another namespace",
            to: veth_to,
            rates: Default::default(),
        },
    ];
    let configs: [&[&str]; 4] = [
        &[],
        &[],
        &["--encryption-range", "10.219.0.0/16"],
        &[
            "--encryption-range",
            "10.218.0.0/24",
            "--encryption-range",
            "127.0.0.0/8",
        ],
    ];
    for s in &mut streams {
        send_rate(&s.to);
    }
    for round in 0..=ROUNDS {
        for s in &mut streams {
            s.rates[0].push(send_rate(&s.to));
        }
        if round == ROUNDS {
            break;
        }
        for (i, args) in configs.iter().enumerate().skip(1) {
            let agent = Agent::start(args);
            for s in &mut streams {
                s.rates[i].push(send_rate(&s.to));
            }
            agent.stop();
        }
    }
    println!("| stream, {PACKETS} datagrams (median of rounds) | no agent | agent, no range (feature off) | agent, destination outside the ranges | agent, destination in a range (tracked) | ns per packet: outside / tracked, against the feature off |");
    println!("|---|---|---|---|---|---|");
    for s in &streams {
        let m: Vec<f64> = s.rates.iter().map(|r| median(r.clone())).collect();
        let list = |r: &[f64]| {
            r.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ns = |with: f64| 1e9 / with - 1e9 / m[1];
        println!(
            "| {} | {:.0}/s ({}) | {:.0}/s ({}) | {:.0}/s ({}) | {:.0}/s ({}) | {:.0} / {:.0} |",
            s.what,
            m[0],
            list(&s.rates[0]),
            m[1],
            list(&s.rates[1]),
            m[2],
            list(&s.rates[2]),
            m[3],
            list(&s.rates[3]),
            ns(m[2]),
            ns(m[3]),
        );
    }
}
