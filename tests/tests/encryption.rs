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
    require_root, rules_dir,
    tunnels::TwoNodes,
    Agent, AgentRun, TempDir,
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

/// The flow_encryption events to `daddr`:`dport`.
fn verdicts_to<'a>(run: &'a AgentRun, daddr: &str, dport: u16) -> Vec<&'a Value> {
    verdicts(run, daddr)
        .into_iter()
        .filter(|f| f["flow"]["dport"] == dport)
        .collect()
}

/// A datagram shaped like a WireGuard data message (type 4, three zero bytes, 32 bytes).
const WIREGUARD_SHAPED: [u8; 32] = {
    let mut m = [0x41u8; 32];
    m[0] = 4;
    m[1] = 0;
    m[2] = 0;
    m[3] = 0;
    m
};

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
    // Plaintext that looks like a tunnel's: to VXLAN's port with no packet inside, and shaped
    // like a WireGuard message, from a program's own socket.
    udp.send_to(b"not a VXLAN packet at all", "10.213.0.2:8472")
        .unwrap();
    udp.send_to(&WIREGUARD_SHAPED, "10.213.0.2:51871").unwrap();
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
    let plain = verdicts_to(&run, "10.213.0.2", 8080);
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
    // The datagrams that look like a tunnel's are judged as what they are.
    for port in [8472, 51871] {
        let v = verdicts_to(&run, "10.213.0.2", port);
        assert_eq!(v.len(), 1, "port {port}: {v:#?}");
        assert_eq!(v[0]["flow"]["encryption"]["mode"], "none");
        assert!(v[0]["flow"]["encryption"].get("vxlan").is_none());
    }
    // And the shipped rule raised its alert for each, naming the process and the destination.
    let alerts: Vec<&Value> = plaintext_alerts(&run)
        .into_iter()
        .filter(|a| a["event"]["flow_encryption"]["flow"]["dport"] == 8080)
        .collect();
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

/// The real tunnels, in the VM: a "pod" namespace behind this node (the VM's own namespace,
/// where the agent runs), and a remote "node" namespace reached over an underlay veth
/// (198.18.0.1 – 198.18.0.2), which hosts four remote pod ranges: 10.20/16 through
/// WireGuard, 10.30/16 through an ESP tunnel-mode SA, 10.40/16 through nothing, 10.50/16
/// through VXLAN in clear (`tests/src/tunnels.rs`). A process of
/// this node reaches the remote node itself through an ESP transport-mode SA on port 7001
/// (198.18.0.2/32 is a remote range too), and through nothing at 198.18.1.2, an address
/// outside every range.
#[test]
fn wireguard_and_ipsec_tunnels_are_reported_with_their_details_and_plaintext_alerts() {
    if !vigil_tests::kernels::scenario_needs(
        "wireguard_and_ipsec_tunnels_are_reported_with_their_details_and_plaintext_alerts",
        &[vigil_tests::kernels::Hook::Kprobe],
    ) {
        return;
    }
    require_root();
    load_modules(&vigil_tests::vm::GUEST_MODULES[1..]);
    let dir = TempDir::new("tunnels");
    let policy = dir.path().join("connects.yaml");
    std::fs::write(&policy, CONNECTS).unwrap();
    let sigma = rules_dir().parent().unwrap().join("sigma");
    let nodes = TwoNodes::build(dir.path());
    let (pod, remote) = (&nodes.pod, &nodes.remote);

    // The remote node's servers: an echo on ports 80, 7001 and 7002.
    let servers: Vec<TcpListener> = remote.run_inside(|| {
        [80, 7001, 7002]
            .iter()
            .map(|p| TcpListener::bind(("0.0.0.0", *p)).unwrap())
            .collect()
    });
    for s in servers {
        std::thread::spawn(move || {
            for conn in s.incoming() {
                let Ok(mut c) = conn else { return };
                let mut buf = [0u8; 16];
                let n = c.read(&mut buf).unwrap_or(0);
                let _ = c.write_all(&buf[..n]);
            }
        });
    }

    let agent = Agent::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--sigma-dir",
        sigma.to_str().unwrap(),
        "--encryption-range",
        "10.20.0.0/16",
        "--encryption-range",
        "10.30.0.0/16",
        "--encryption-range",
        "10.40.0.0/16",
        "--encryption-range",
        "10.50.0.0/16",
        "--encryption-range",
        "198.18.0.2/32",
    ]);
    assert!(
        agent
            .log_lines()
            .iter()
            .any(|l| l.contains("(xfrm_output): yes")),
        "{:#?}",
        agent.log_lines()
    );
    let echo = |addr: &'static str| {
        let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        s.read_exact(&mut back)
            .unwrap_or_else(|e| panic!("{addr}: no echo: {e}"));
    };
    for addr in ["10.20.0.5:80", "10.30.0.5:80", "10.40.0.5:80"] {
        pod.run_inside(move || echo(addr));
    }
    echo("198.18.0.2:7001");
    echo("198.18.1.2:7002");
    pod.run_inside(move || echo("10.50.0.5:80"));
    // Plaintext that looks like a tunnel's, into the range outside every tunnel: a pod's
    // datagram shaped like a WireGuard message (forwarded: no socket on it in the node), and
    // a raw ESP packet of no SA.
    pod.run_inside(|| {
        let udp = UdpSocket::bind("0.0.0.0:0").unwrap();
        udp.send_to(&WIREGUARD_SHAPED, "10.40.0.5:51871").unwrap();
    });
    // SAFETY: a raw socket of our own and a sockaddr_in we fill.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, 50);
        assert!(
            fd >= 0,
            "raw ESP socket: {}",
            std::io::Error::last_os_error()
        );
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::new(10, 40, 0, 5)).to_be();
        let payload = *b"\xde\xad\xbe\xef\x00\x00\x00\x01plaintext under protocol 50";
        let n = libc::sendto(
            fd,
            payload.as_ptr().cast(),
            payload.len(),
            0,
            &sin as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert!(n > 0, "raw ESP send: {}", std::io::Error::last_os_error());
        libc::close(fd);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let run = agent.stop();
    let me = std::process::id();

    let wg = verdicts(&run, "10.20.0.5");
    assert_eq!(wg.len(), 1, "{wg:#?}");
    let e = &wg[0]["flow"]["encryption"];
    assert_eq!(
        (
            &e["mode"],
            &e["evidence"],
            &e["interface"],
            &e["interface_kind"]
        ),
        (
            &"wireguard".into(),
            &"device".into(),
            &"wg0".into(),
            &"wireguard".into()
        ),
        "{e}"
    );
    assert_eq!(e["remote_range"], "10.20.0.0/16");
    assert_eq!(wg[0]["process"]["pid"], me, "the pod's process opened it");
    // The pod's own connect could not tell: its route ends at its veth, inside the node.
    let c = connects(&run, "10.20.0.5");
    assert_eq!(c.len(), 1, "{c:#?}");
    assert_eq!(c[0]["encryption"]["mode"], "unknown");

    let esp = verdicts(&run, "10.30.0.5");
    assert_eq!(esp.len(), 1, "{esp:#?}");
    let e = &esp[0]["flow"]["encryption"];
    assert_eq!(
        (&e["mode"], &e["evidence"]),
        (&"ipsec".into(), &"xfrm".into()),
        "{e}"
    );
    assert_eq!(
        (&e["spi"], &e["ipsec_mode"], &e["reqid"]),
        (&3.into(), &"tunnel".into(), &1.into())
    );
    assert_eq!(e["outer_destination"], "198.18.0.2");

    // To the remote node itself (198.18.0.2/32 is a range): WireGuard's and ESP's own packets
    // are not flows. VXLAN's datagrams are, when they carry no tracked flow (its ARP): they
    // leave in clear.
    let to_node = verdicts(&run, "198.18.0.2");
    assert!(
        to_node
            .iter()
            .all(|f| f["flow"]["dport"] == 7001 || f["flow"]["dport"] == 8472),
        "{to_node:#?}"
    );
    assert!(to_node
        .iter()
        .filter(|f| f["flow"]["dport"] == 8472)
        .all(|f| f["flow"]["encryption"]["mode"] == "none"));
    let transport: Vec<&Value> = to_node
        .into_iter()
        .filter(|f| f["flow"]["dport"] == 7001)
        .collect();
    assert_eq!(transport.len(), 1, "{transport:#?}");
    let e = &transport[0]["flow"]["encryption"];
    assert_eq!(
        (&e["mode"], &e["ipsec_mode"], &e["spi"]),
        (&"ipsec".into(), &"transport".into(), &5.into()),
        "{e}"
    );
    let c = connects(&run, "198.18.0.2");
    assert_eq!(c.len(), 1, "{c:#?}");
    let route = &c[0]["encryption"];
    assert_eq!(
        (&route["mode"], &route["evidence"], &route["spi"]),
        (&"ipsec".into(), &"route".into(), &5.into()),
        "{route}"
    );

    let plain = verdicts_to(&run, "10.40.0.5", 80);
    assert_eq!(plain.len(), 1, "{plain:#?}");
    let e = &plain[0]["flow"]["encryption"];
    assert_eq!(
        (&e["mode"], &e["interface"]),
        (&"none".into(), &"vnode".into()),
        "{e}"
    );
    let shaped = verdicts_to(&run, "10.40.0.5", 51871);
    assert_eq!(shaped.len(), 1, "{shaped:#?}");
    assert_eq!(shaped[0]["flow"]["encryption"]["mode"], "none");
    let esp: Vec<&Value> = verdicts(&run, "10.40.0.5")
        .into_iter()
        .filter(|f| f["flow"]["protocol"] == "IPPROTO_50")
        .collect();
    assert_eq!(esp.len(), 1, "an ESP packet of no SA is judged: {esp:#?}");
    assert_eq!(esp[0]["flow"]["encryption"]["mode"], "none");
    // Every plaintext flow alerts, and only they: the tunnelled ones do not.
    // Through VXLAN in clear: the pod's flow, read inside the encapsulated packet on the
    // underlay.
    let vxlan = verdicts_to(&run, "10.50.0.5", 80);
    assert_eq!(vxlan.len(), 1, "{vxlan:#?}");
    let e = &vxlan[0]["flow"]["encryption"];
    assert_eq!(
        (&e["mode"], &e["interface"], &e["vxlan"]),
        (&"none".into(), &"vnode".into(), &true.into()),
        "{e}"
    );
    assert_eq!(vxlan[0]["process"]["pid"], me);
    // No tunnelled flow alerts: only the plaintext ones (to 10.40/16, through VXLAN, and
    // VXLAN's own datagrams to the remote node).
    let all = plaintext_alerts(&run);
    let flow_of = |a: &Value| {
        let f = &a["event"]["flow_encryption"]["flow"];
        (
            f["daddr"].as_str().unwrap_or("").to_string(),
            f["dport"].as_u64().unwrap_or(0),
        )
    };
    assert!(
        all.iter().all(|a| {
            let (daddr, dport) = flow_of(a);
            daddr == "10.40.0.5" || daddr == "10.50.0.5" || (daddr == "198.18.0.2" && dport == 8472)
        }),
        "{all:#?}"
    );
    let alerts: Vec<&Value> = all
        .into_iter()
        .filter(|a| flow_of(a).0 == "10.40.0.5")
        .collect();
    assert_eq!(alerts.len(), 3, "{alerts:#?}");
    let tcp: Vec<&&Value> = alerts
        .iter()
        .filter(|a| a["event"]["flow_encryption"]["flow"]["dport"] == 80)
        .collect();
    assert_eq!(tcp.len(), 1, "{alerts:#?}");
    assert_eq!(tcp[0]["process"]["pid"], me);

    // A node address outside every range: no verdict, no alert.
    assert!(verdicts(&run, "198.18.1.2").is_empty());
}

/// On a Kubernetes node the remote ranges are the other nodes' pod ranges: a Node's
/// `spec.podCIDRs` and, where Cilium's cluster-pool IPAM keeps them, a CiliumNode's
/// `spec.ipam.podCIDRs`; this node's own range is not remote.
#[test]
fn the_other_nodes_pod_ranges_come_from_nodes_and_cilium_nodes() {
    require_root();
    load_modules(&["kernel/drivers/net/veth.ko"]);
    let server = vigil_tests::kube_api::KubeApiServer::start();
    for (name, cidr) in [
        (vigil_tests::NODE, "10.215.0.0/24"),
        ("node-b", "10.216.0.0/24"),
    ] {
        server.put_node(serde_json::json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name}, "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}));
    }
    server.install_crd("cilium.io", "v2", "ciliumnodes");
    server.put_object(
        "ciliumnodes",
        serde_json::json!({"apiVersion": "cilium.io/v2", "kind": "CiliumNode",
            "metadata": {"name": "node-c"}, "spec": {"ipam": {"podCIDRs": ["10.217.0.0/24"]}}}),
    );
    let dir = TempDir::new("encryption-k8s");
    let config = server.kubeconfig(dir.path());
    let policy = dir.path().join("connects.yaml");
    std::fs::write(&policy, CONNECTS).unwrap();

    let peer = NamedNs::new("vigil-enc-k8s");
    let _veth = Veth::new(
        "venck-h",
        None,
        "10.215.0.1/24",
        "venck-p",
        Some(&peer),
        "10.215.0.2/24",
    );
    for (host, other) in [
        ("10.216.0.1/24", "10.216.0.2/24"),
        ("10.217.0.1/24", "10.217.0.2/24"),
    ] {
        vigil_tests::links::ip(&["addr", "add", host, "dev", "venck-h"]);
        peer.ip(&["addr", "add", other, "dev", "venck-p"]);
    }
    let server_socket = peer.run_inside(|| TcpListener::bind("0.0.0.0:8080").unwrap());
    std::thread::spawn(move || {
        for conn in server_socket.incoming() {
            let Ok(mut c) = conn else { return };
            let mut buf = [0u8; 16];
            let n = c.read(&mut buf).unwrap_or(0);
            let _ = c.write_all(&buf[..n]);
        }
    });

    let agent = Agent::start(&[
        "--kubeconfig",
        &config,
        "--policy",
        policy.to_str().unwrap(),
    ]);
    agent.wait_for_log(
        "encryption awareness: 2 remote ranges now (2 of other nodes' pods)",
        0,
    );
    for addr in ["10.215.0.2:8080", "10.216.0.2:8080", "10.217.0.2:8080"] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        s.read_exact(&mut back).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1500));
    let run = agent.stop();
    for (daddr, range) in [
        ("10.216.0.2", "10.216.0.0/24"),
        ("10.217.0.2", "10.217.0.0/24"),
    ] {
        let v = verdicts(&run, daddr);
        assert_eq!(v.len(), 1, "{daddr}: {v:#?}");
        assert_eq!(v[0]["flow"]["encryption"]["mode"], "none");
        assert_eq!(v[0]["flow"]["encryption"]["remote_range"], range);
    }
    assert!(
        verdicts(&run, "10.215.0.2").is_empty(),
        "this node's own pod range is not remote"
    );
}
