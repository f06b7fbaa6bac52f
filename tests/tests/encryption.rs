//! Encryption awareness: whether a flow into a remote range left the node encrypted, judged
//! by the agent's flow programs (`bpf-kprobes/src/bpf/flow.bpf.c`) on real links between
//! namespaces the test makes.
//!
//! On every kernel: a plaintext flow over a veth into a configured range is `none` and raises
//! the shipped alert naming the process and the destination; a loopback connect is `local`; a
//! tun device named like Cilium's WireGuard device is a tun device, `unknown`, never
//! `wireguard`; a flow to an address outside the ranges gets no verdict. The real tunnels
//! (WireGuard, ESP in tunnel and transport mode) are in the VM's scenario below, where the
//! Debian kernel has the modules; the host kernel has neither.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use serde_json::Value;
use vigil_tests::{
    links::{load_modules, NamedNs, Tun, Veth},
    require_root, rules_dir, Agent, AgentRun, TempDir,
};

/// A policy reporting every TCP connect and close with its socket.
const CONNECTS: &str = r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: enc-connects
spec:
  kprobes:
  - call: tcp_connect
    syscall: false
    args:
    - index: 0
      type: sock
  - call: tcp_close
    syscall: false
    args:
    - index: 0
      type: sock
"#;

/// The flow_encryption events to `daddr`.
fn verdicts<'a>(run: &'a AgentRun, daddr: &str) -> Vec<&'a Value> {
    run.events
        .iter()
        .filter_map(|e| e.get("flow_encryption"))
        .filter(|f| f["flow"]["daddr"] == daddr)
        .collect()
}

/// The alerts of the shipped plaintext rule.
fn plaintext_alerts(run: &AgentRun) -> Vec<&Value> {
    run.events
        .iter()
        .filter_map(|e| e.get("process_alert"))
        .filter(|a| {
            a["rule_file"]
                .as_str()
                .is_some_and(|f| f.ends_with("net_plaintext_to_remote_range.yml"))
        })
        .collect()
}

/// The `sock_arg` of the connect events to `daddr`.
fn connects<'a>(run: &'a AgentRun, daddr: &str) -> Vec<&'a Value> {
    run.kprobes("tcp_connect")
        .into_iter()
        .map(|e| &e["args"][0]["sock_arg"])
        .filter(|s| s["daddr"] == daddr)
        .collect()
}

/// Plaintext over a veth into a remote range, loopback, a tun device named like WireGuard's,
/// and an address outside the ranges, with one agent.
#[test]
fn plaintext_loopback_and_a_fake_wireguard_device_are_told_apart() {
    require_root();
    load_modules(&["kernel/drivers/net/veth.ko", "kernel/drivers/net/tun.ko"]);
    let dir = TempDir::new("encryption");
    let policy = dir.path().join("connects.yaml");
    std::fs::write(&policy, CONNECTS).unwrap();
    let sigma = rules_dir().parent().unwrap().join("sigma");

    // A peer "node" behind a veth: 10.213.0.2 is in the remote range, 10.213.1.2 (the same
    // peer, another address) is not.
    let peer = NamedNs::new("vigil-enc-peer");
    let _veth = Veth::new(
        "venc-h",
        None,
        "10.213.0.1/24",
        "venc-p",
        Some(&peer),
        "10.213.0.2/24",
    );
    peer.ip(&["addr", "add", "10.213.1.2/24", "dev", "venc-p"]);
    vigil_tests::links::ip(&["addr", "add", "10.213.1.1/24", "dev", "venc-h"]);
    let server = peer.run_inside(|| TcpListener::bind("0.0.0.0:8080").unwrap());
    let echo = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = server.accept().unwrap();
            let mut buf = [0u8; 16];
            let n = s.read(&mut buf).unwrap_or(0);
            let _ = s.write_all(&buf[..n]);
        }
    });
    // A tun device named like Cilium's WireGuard device, routed 10.214.0.0/24.
    let tun = Tun::open("cilium_wg0", "10.214.0.1/24");
    let local = TcpListener::bind("127.0.0.1:0").unwrap();

    let agent = Agent::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--sigma-dir",
        sigma.to_str().unwrap(),
        "--encryption-range",
        "10.213.0.0/24",
        "--encryption-range",
        "10.214.0.0/24",
    ]);
    assert!(
        agent
            .log_lines()
            .iter()
            .any(|l| l.contains("encryption awareness: 2 remote ranges")
                && l.contains("net_dev_start_xmit): yes")),
        "the start-up line says which evidence this kernel allows: {:#?}",
        agent.log_lines()
    );
    for addr in ["10.213.0.2:8080", "10.213.1.2:8080"] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        s.read_exact(&mut back).unwrap();
    }
    echo.join().unwrap();
    drop(TcpStream::connect(local.local_addr().unwrap()).unwrap());
    let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
    udp.send_to(b"to the fake tunnel", "10.214.0.9:7777")
        .unwrap();
    // The datagram reached the tun device: the kernel handed it over.
    let mut got = Vec::new();
    for _ in 0..50 {
        got.extend(tun.read());
        if !got.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!got.is_empty(), "the datagram never reached {}", tun.name);
    // The verdicts that waited for their process have gone (they wait at most a second).
    std::thread::sleep(Duration::from_millis(1500));
    let run = agent.stop();
    let me = std::process::id();

    // Plaintext into the range: one verdict, `none`, on the veth, naming this process.
    let plain = verdicts(&run, "10.213.0.2");
    assert_eq!(
        plain.len(),
        1,
        "one verdict, not one per packet: {plain:#?}"
    );
    let enc = &plain[0]["flow"]["encryption"];
    assert_eq!(enc["mode"], "none", "{enc}");
    assert_eq!(enc["evidence"], "device");
    assert_eq!(enc["interface"], "venc-h");
    assert_eq!(enc["remote_range"], "10.213.0.0/24");
    assert_eq!(plain[0]["flow"]["dport"], 8080);
    assert_eq!(plain[0]["process"]["pid"], me, "{:#?}", plain[0]);
    // The connect event says it too.
    let c = connects(&run, "10.213.0.2");
    assert_eq!(c.len(), 1, "{c:#?}");
    assert_eq!(c[0]["encryption"]["mode"], "none");
    // And the shipped rule raised its alert, naming the process and the destination.
    let alerts = plaintext_alerts(&run);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["level"], "high");
    assert_eq!(alerts[0]["process"]["pid"], me);
    assert_eq!(
        alerts[0]["event"]["flow_encryption"]["flow"]["daddr"],
        "10.213.0.2"
    );

    // Outside the ranges: no verdict, no alert; the connect's own route still says `none`.
    assert!(verdicts(&run, "10.213.1.2").is_empty());
    let outside = connects(&run, "10.213.1.2");
    assert_eq!(outside.len(), 1, "{outside:#?}");
    assert_eq!(outside[0]["encryption"]["mode"], "none");
    assert!(outside[0]["encryption"].get("remote_range").is_none());

    // Loopback stays on the machine.
    let lo = connects(&run, "127.0.0.1");
    assert!(!lo.is_empty(), "no loopback connect");
    assert!(
        lo.iter().all(|s| s["encryption"]["mode"] == "local"),
        "{lo:#?}"
    );

    // The tun device is a tun device, whatever its name: not WireGuard, and not an alert.
    let fake = verdicts(&run, "10.214.0.9");
    assert_eq!(fake.len(), 1, "{fake:#?}");
    let enc = &fake[0]["flow"]["encryption"];
    assert_eq!(enc["mode"], "unknown", "{enc}");
    assert_eq!(enc["interface"], "cilium_wg0");
    assert_eq!(enc["interface_kind"], "tun");
    assert!(plaintext_alerts(&run)
        .iter()
        .all(|a| a["event"]["flow_encryption"]["flow"]["daddr"] != "10.214.0.9"));
}
