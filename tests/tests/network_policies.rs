//! The shipped TCP policy (`rules/policies/observe-tcp-connections.yaml`) with real
//! connections in a network namespace the test creates (its loopback device carrying
//! 10.203.0.1, or fd00:204::1 for IPv6, so the traffic is not loopback's): a listen, a connect, the accept, data both
//! ways, then the closes. The events carry the 5-tuple, the socket's network namespace and the
//! bytes; a connection on 127.0.0.1 is left out by the policy's in-kernel filter. And Tetragon's
//! connect-only-private-addrs, scoped to this test's binary, kills a process that connects to
//! an address outside the private ranges (TEST-NET-2, inside a namespace of the test's own).
//! The namespaces are made with system calls alone, so the scenario runs in the VM as well.
//! The shipped DNS policy (`observe-dns.yaml`) with a resolver the test starts on 127.0.0.1:53
//! and busybox's nslookup asking it: the queries' names and types and the NXDOMAIN answer.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, TcpListener, TcpStream},
};

use serde_json::Value;
use vigil_tests::{
    dns::{query, TestResolver, TYPE},
    netns::{current_inode, fork_and_wait, raw_connect, NetNs},
    rules_dir, Agent, AgentRun,
};

const POLICY: &str = "observe-tcp-connections";

/// The sock_arg of each event of the policy from `function`, for this process (the argument,
/// or the return value of a hook on the return).
fn socks<'a>(run: &'a AgentRun, function: &str) -> Vec<&'a Value> {
    let pid = std::process::id();
    run.events
        .iter()
        .filter_map(|e| e.get("process_kprobe"))
        .filter(|e| {
            e["policy_name"] == POLICY
                && e["function_name"] == function
                && e["process"]["pid"] == pid
        })
        .map(|e| match e.get("return") {
            Some(r) => &r["sock_arg"],
            None => &e["args"][0]["sock_arg"],
        })
        .collect()
}

/// A connection inside `ns` to a listener on `addr` there: the client sends `up` bytes, the
/// server answers `down`, the client closes first. Returns (the listening port, the client's).
fn exchange(ns: &NetNs, addr: IpAddr, up: usize, down: usize) -> (u16, u16) {
    let listener = ns.run_inside(move || TcpListener::bind((addr, 0)).unwrap());
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; up];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&vec![b'y'; down]).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap(); // until the client's FIN
    });
    let mut client = ns.run_inside(move || TcpStream::connect((addr, port)).unwrap());
    let client_port = client.local_addr().unwrap().port();
    client.write_all(&vec![b'x'; up]).unwrap();
    let mut buf = vec![0u8; down];
    client.read_exact(&mut buf).unwrap();
    drop(client);
    server.join().unwrap();
    (port, client_port)
}

#[test]
fn tcp_connect_listen_accept_and_close_are_reported_with_namespaces_and_bytes() {
    let ns = NetNs::create(Ipv4Addr::new(10, 203, 0, 1));
    let addr = ns.addr;
    let policy = rules_dir().join(format!("{POLICY}.yaml"));
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);

    let (port, client_port) = exchange(&ns, addr.into(), 1000, 300);

    // On 127.0.0.1, in the test's own namespace: filtered in the kernel.
    let local = TcpListener::bind("127.0.0.1:0").unwrap();
    let local_port = local.local_addr().unwrap().port();
    drop(TcpStream::connect(("127.0.0.1", local_port)).unwrap());
    drop(local.accept().unwrap());
    let run = agent.stop();

    let here = addr.to_string();
    assert_ne!(current_inode(), ns.inode);
    let connects = socks(&run, "tcp_connect");
    assert_eq!(
        connects.len(),
        1,
        "one connect, the loopback one filtered: {connects:#?}"
    );
    let c = connects[0];
    assert_eq!(c["family"], "AF_INET");
    assert_eq!(c["protocol"], "IPPROTO_TCP");
    assert_eq!(c["saddr"], here.as_str());
    assert_eq!(c["sport"], client_port);
    assert_eq!(c["daddr"], here.as_str());
    assert_eq!(c["dport"], port);
    assert_eq!(c["netns"], ns.inode);

    let listens = socks(&run, "inet_csk_listen_start");
    let ours: Vec<_> = listens.iter().filter(|s| s["sport"] == port).collect();
    assert_eq!(ours.len(), 1, "{listens:#?}");
    assert_eq!(ours[0]["saddr"], here.as_str());
    assert_eq!(ours[0]["netns"], ns.inode, "the listener's namespace");
    assert!(
        listens.iter().any(|s| s["sport"] == local_port),
        "listen is reported on loopback too: {listens:#?}"
    );

    let accepts = socks(&run, "inet_csk_accept");
    assert_eq!(
        accepts.len(),
        1,
        "one accept, the loopback one filtered: {accepts:#?}"
    );
    assert_eq!(accepts[0]["sport"], port);
    assert_eq!(accepts[0]["daddr"], here.as_str());
    assert_eq!(accepts[0]["dport"], client_port);
    assert_eq!(accepts[0]["netns"], ns.inode);

    let closes = socks(&run, "tcp_close");
    let client_close = closes
        .iter()
        .find(|s| s["sport"] == client_port)
        .unwrap_or_else(|| panic!("the client's close: {closes:#?}"));
    assert_eq!(client_close["bytes_sent"], 1000);
    assert_eq!(client_close["bytes_received"], 300);
    assert_eq!(client_close["netns"], ns.inode);
    let server_close = closes
        .iter()
        .find(|s| s["sport"] == port)
        .unwrap_or_else(|| panic!("the server's close: {closes:#?}"));
    assert_eq!(server_close["bytes_sent"], 300);
    assert_eq!(server_close["bytes_received"], 1000, "the FIN is no data");
    assert!(
        closes.iter().all(|s| s["daddr"] != "127.0.0.1"),
        "loopback closes are filtered: {closes:#?}"
    );

    // Tetragon's socket cookie pairs the events of one socket: the client's connect and close
    // share one, the accepted socket's accept and close another, the listener its own.
    let cookie = |s: &Value| -> String {
        let c = s["cookie"]
            .as_str()
            .unwrap_or_else(|| panic!("a cookie, as a protojson uint64 string: {s}"));
        assert!(c.parse::<u64>().is_ok_and(|n| n != 0), "{s}");
        c.to_string()
    };
    assert_eq!(cookie(c), cookie(client_close), "connect and its close");
    assert_eq!(
        cookie(accepts[0]),
        cookie(server_close),
        "accept and its close"
    );
    assert_ne!(cookie(c), cookie(accepts[0]), "two sockets, two cookies");
    assert_ne!(
        cookie(ours[0]),
        cookie(accepts[0]),
        "the listener is a third socket"
    );
    // Hooks on the return say what was done then; the process running is referenced once.
    for e in run.events.iter().filter_map(|e| e.get("process_kprobe")) {
        if e["policy_name"] != POLICY || e["process"]["pid"] != std::process::id() {
            continue;
        }
        let on_return = e["function_name"] == "inet_csk_accept";
        assert_eq!(
            e.get("return_action").and_then(Value::as_str),
            on_return.then_some("KPROBE_ACTION_POST"),
            "{e:#}"
        );
        assert_eq!(e["process"]["refcnt"], 1, "{e:#}");
    }
}

#[test]
fn tcp_over_ipv6_is_reported_with_its_addresses_and_bytes() {
    let ns = NetNs::create(Ipv4Addr::new(10, 204, 0, 1));
    let v6: std::net::Ipv6Addr = "fd00:204::1".parse().unwrap();
    ns.add_ipv6(v6);
    let policy = rules_dir().join(format!("{POLICY}.yaml"));
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let (port, client_port) = exchange(&ns, v6.into(), 100, 50);
    let run = agent.stop();

    let here = v6.to_string();
    let connects = socks(&run, "tcp_connect");
    assert_eq!(connects.len(), 1, "{connects:#?}");
    let c = connects[0];
    assert_eq!(c["family"], "AF_INET6");
    assert_eq!(c["saddr"], here.as_str());
    assert_eq!(c["sport"], client_port);
    assert_eq!(c["daddr"], here.as_str());
    assert_eq!(c["dport"], port);
    assert_eq!(c["netns"], ns.inode);
    let accepts = socks(&run, "inet_csk_accept");
    assert_eq!(accepts.len(), 1, "{accepts:#?}");
    assert_eq!(accepts[0]["family"], "AF_INET6");
    assert_eq!(accepts[0]["dport"], client_port);
    let closes = socks(&run, "tcp_close");
    let client_close = closes
        .iter()
        .find(|s| s["sport"] == client_port)
        .unwrap_or_else(|| panic!("the client's close: {closes:#?}"));
    assert_eq!(client_close["family"], "AF_INET6");
    assert_eq!(client_close["bytes_sent"], 100);
    assert_eq!(client_close["bytes_received"], 50);
}

#[test]
fn a_connect_outside_the_private_ranges_is_killed() {
    // TEST-NET-2 is no private range; here it exists only inside the test's namespace.
    let public = NetNs::create(Ipv4Addr::new(198, 51, 100, 1));
    let private = NetNs::create(Ipv4Addr::new(10, 204, 0, 1));
    let me = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    let tetragon = vigil_tests::tetragon_policies_dir()
        .join("tracingpolicy_tcp-connect-only-private-addrs.yaml");
    let text = std::fs::read_to_string(&tetragon).unwrap();
    // Scoped to this test's binary, so nothing else on the machine is at risk meanwhile.
    let scoped = text.replace(
        "    - matchArgs:",
        &format!(
            "    - matchBinaries:\n      - operator: In\n        values: [\"{}\"]\n      matchArgs:",
            me.display()
        ),
    );
    assert_ne!(scoped, text, "the policy's selector moved");
    let dir = vigil_tests::TempDir::new("private-addrs");
    let policy = dir.path().join("connect-only-private-addrs.yaml");
    std::fs::write(&policy, scoped).unwrap();
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);

    // A child forked inside each namespace connects there.
    let mut outcomes = Vec::new();
    for ns in [&public, &private] {
        let addr = ns.addr;
        let listener = ns.run_inside(move || TcpListener::bind((addr, 0)).unwrap());
        let port = listener.local_addr().unwrap().port();
        outcomes.push(ns.run_inside(move || fork_and_wait(|| raw_connect(addr, port))));
        drop(listener);
    }
    let run = agent.stop();
    let ((killed_pid, killed), (_, allowed)) = (outcomes[0], outcomes[1]);
    assert!(
        libc::WIFSIGNALED(killed) && libc::WTERMSIG(killed) == 9,
        "killed on connecting to {}: status {killed:#x}",
        public.addr
    );
    assert!(
        libc::WIFEXITED(allowed) && libc::WEXITSTATUS(allowed) == 0,
        "a private address is allowed: status {allowed:#x}"
    );

    let kills: Vec<&Value> = run
        .events
        .iter()
        .filter_map(|e| e.get("process_kprobe"))
        .filter(|e| e["policy_name"] == "connect-only-private-addrs")
        .collect();
    assert_eq!(kills.len(), 1, "{kills:#?}");
    assert_eq!(kills[0]["process"]["pid"], killed_pid);
    assert_eq!(kills[0]["function_name"], "tcp_connect");
    assert_eq!(kills[0]["action"], "KPROBE_ACTION_SIGKILL");
    assert_eq!(kills[0]["outcome"], "killed");
    assert_eq!(
        kills[0]["args"][0]["sock_arg"]["daddr"],
        public.addr.to_string()
    );
}

#[test]
fn udp_sends_are_reported_with_their_destination_and_length() {
    let ns = NetNs::create(Ipv4Addr::new(10, 205, 0, 1));
    let addr = ns.addr;
    let policy = rules_dir().join("observe-udp-sends.yaml");
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let (receiver, unconnected, connected) = ns.run_inside(move || {
        let receiver = std::net::UdpSocket::bind((addr, 0)).unwrap();
        let to = receiver.local_addr().unwrap();
        // An unconnected socket names the destination in the call; a connected one does not.
        let unconnected = std::net::UdpSocket::bind((addr, 0)).unwrap();
        unconnected.send_to(&[b'q'; 33], to).unwrap();
        let connected = std::net::UdpSocket::bind((addr, 0)).unwrap();
        connected.connect(to).unwrap();
        connected.send(&[b'r'; 44]).unwrap();
        // The kernel reads a descriptor's low 32 bits: a register with higher bits set names
        // the same socket, to write() and to sendto() alike.
        use std::os::fd::AsRawFd;
        let high = (1i64 << 32) | connected.as_raw_fd() as i64;
        for (call, len) in [(libc::SYS_write, 66), (libc::SYS_sendto, 77)] {
            let buf = [b's'; 77];
            // SAFETY: the buffer outlives the call; sendto's address is null (connected).
            let sent = unsafe { libc::syscall(call, high, buf.as_ptr(), len, 0, 0, 0) };
            assert_eq!(sent, len as i64, "{}", std::io::Error::last_os_error());
        }
        (receiver, unconnected, connected)
    });
    let port = receiver.local_addr().unwrap().port();
    // To loopback, in the test's own namespace: filtered in the kernel.
    let local = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    local
        .send_to(b"local", local.local_addr().unwrap())
        .unwrap();
    let run = agent.stop();

    let pid = std::process::id();
    let sends: Vec<&Value> = run
        .events
        .iter()
        .filter_map(|e| e.get("process_kprobe"))
        .filter(|e| {
            e["policy_name"] == "observe-udp-sends"
                && e["function_name"] == "udp_sendmsg"
                && e["process"]["pid"] == pid
        })
        .collect();
    assert_eq!(sends.len(), 4, "loopback filtered: {sends:#?}");
    let connected_port = connected.local_addr().unwrap().port();
    for (e, from, len) in [
        (sends[0], unconnected.local_addr().unwrap().port(), 33),
        (sends[1], connected_port, 44),
        (sends[2], connected_port, 66),
        (sends[3], connected_port, 77),
    ] {
        let s = &e["args"][0]["sock_arg"];
        assert_eq!(s["protocol"], "IPPROTO_UDP");
        assert_eq!(s["sport"], from);
        assert_eq!(s["daddr"], addr.to_string());
        assert_eq!(s["dport"], port);
        assert_eq!(s["netns"], ns.inode);
        assert_eq!(e["args"][1]["int_arg"], len);
    }
}

/// The DNS events of `pid`: (function, sock_arg, dns_arg).
fn dns_events(run: &AgentRun, pid: u32) -> Vec<(&str, &Value, &Value)> {
    run.events
        .iter()
        .filter_map(|e| e.get("process_kprobe"))
        .filter(|e| e["policy_name"] == "observe-dns" && e["process"]["pid"] == pid)
        .map(|e| {
            (
                e["function_name"].as_str().unwrap(),
                &e["args"][0]["sock_arg"],
                &e["args"][1]["dns_arg"],
            )
        })
        .collect()
}

/// A sendmmsg()/recvmmsg() message of one buffer with the peer's address.
fn one_buffer_message(peer: &mut libc::sockaddr_in, buffer: &mut libc::iovec) -> libc::mmsghdr {
    // SAFETY: an all-zero mmsghdr is valid; the pointers are the caller's, used while they live.
    let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
    m.msg_hdr.msg_name = peer as *mut _ as *mut libc::c_void;
    m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
    m.msg_hdr.msg_iov = buffer;
    m.msg_hdr.msg_iovlen = 1;
    m
}

/// Two queries in one sendmmsg() from an unconnected socket, the answers taken with
/// recvmmsg() (which fills in the resolver's address). Returns the answers received.
fn vector_lookup(to: std::net::SocketAddrV4, queries: [&[u8]; 2]) -> usize {
    // SAFETY: buffers, iovecs and headers that outlive the calls that use them.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0);
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        );
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = to.port().to_be();
        sin.sin_addr.s_addr = u32::from(*to.ip()).to_be();
        let mut iov: Vec<libc::iovec> = queries
            .iter()
            .map(|q| libc::iovec {
                iov_base: q.as_ptr() as *mut libc::c_void,
                iov_len: q.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| one_buffer_message(&mut sin, v))
            .collect();
        assert_eq!(libc::sendmmsg(fd, msgs.as_mut_ptr(), 2, 0), 2);
        let mut bufs = [[0u8; 512]; 2];
        let mut from: [libc::sockaddr_in; 2] = std::mem::zeroed();
        let mut got = 0;
        while got < 2 {
            let mut riov: Vec<libc::iovec> = bufs
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr() as *mut libc::c_void,
                    iov_len: b.len(),
                })
                .collect();
            let mut rmsgs: Vec<libc::mmsghdr> = riov
                .iter_mut()
                .zip(from.iter_mut())
                .map(|(v, f)| one_buffer_message(f, v))
                .collect();
            let n = libc::recvmmsg(
                fd,
                rmsgs.as_mut_ptr(),
                (2 - got) as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            );
            if n <= 0 {
                break;
            }
            got += n as usize;
        }
        libc::close(fd);
        got
    }
}

#[test]
fn dns_queries_and_their_answer_codes_are_reported() {
    let known = Ipv4Addr::new(10, 1, 2, 3);
    let resolver = TestResolver::start("127.0.0.1:53", &[("known.vigil.test", known)]);
    let policy = rules_dir().join("observe-dns.yaml");
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let nslookup = |name: &str| {
        let child = std::process::Command::new("busybox")
            .args(["nslookup", name, "127.0.0.1"])
            .output()
            .expect("busybox nslookup");
        String::from_utf8_lossy(&child.stdout).into_owned()
    };
    // busybox asks for A and AAAA on a connected socket (send/recv).
    let missing = std::process::Command::new("busybox")
        .args(["nslookup", "unknown-galaxy.svc.cluster.local", "127.0.0.1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("busybox nslookup");
    let missing_pid = missing.id();
    let out = missing.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("NXDOMAIN"), "{out}");
    let found_out = nslookup("known.vigil.test");
    assert!(found_out.contains("10.1.2.3"), "{found_out}");
    let answered = vector_lookup(
        std::net::SocketAddrV4::new(Ipv4Addr::LOCALHOST, 53),
        [
            &query(0x4141, "vector-a.vigil.test", TYPE::A),
            &query(0x4242, "vector-b.vigil.test", TYPE::TXT),
        ],
    );
    assert_eq!(answered, 2, "the resolver answers both");
    // Not DNS: another port on loopback is not the policy's.
    let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    other
        .send_to(
            &query(7, "not-dns.vigil.test", TYPE::A),
            other.local_addr().unwrap(),
        )
        .unwrap();
    let run = agent.stop();
    assert!(resolver.answered() >= 6, "{}", resolver.answered());

    let busybox = dns_events(&run, missing_pid);
    let sent: Vec<_> = busybox
        .iter()
        .filter(|(f, ..)| *f == "udp_sendmsg")
        .collect();
    let types: Vec<&str> = sent
        .iter()
        .map(|(_, _, d)| d["type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"A") && types.contains(&"AAAA"),
        "{busybox:#?}"
    );
    for (_, sock, dns) in &sent {
        assert_eq!(dns["query"], "unknown-galaxy.svc.cluster.local");
        assert_eq!(dns["response"], false);
        assert_eq!(sock["protocol"], "IPPROTO_UDP");
        assert_eq!(sock["daddr"], "127.0.0.1");
        assert_eq!(sock["dport"], 53);
    }
    let answers: Vec<_> = busybox
        .iter()
        .filter(|(f, ..)| *f == "udp_recvmsg")
        .collect();
    assert!(!answers.is_empty(), "{busybox:#?}");
    for (_, sock, dns) in &answers {
        assert_eq!(dns["query"], "unknown-galaxy.svc.cluster.local");
        assert_eq!(dns["response"], true);
        assert_eq!(dns["rcode"], "NXDOMAIN");
        assert_eq!(sock["dport"], 53, "the answer's source is the resolver");
    }

    let all: Vec<&Value> = run
        .events
        .iter()
        .filter_map(|e| e.get("process_kprobe"))
        .filter(|e| e["policy_name"] == "observe-dns")
        .collect();
    let found = all.iter().find(|e| {
        e["function_name"] == "udp_recvmsg"
            && e["args"][1]["dns_arg"]["query"] == "known.vigil.test"
            && e["args"][1]["dns_arg"]["type"] == "A"
    });
    let found = found.unwrap_or_else(|| panic!("the answer for known.vigil.test: {all:#?}"));
    assert_eq!(found["args"][1]["dns_arg"]["rcode"], "NOERROR");
    assert_eq!(found["args"][1]["dns_arg"]["answers"][0], known.to_string());

    // sendmmsg and recvmmsg: the first message of each call, the answer's source from the
    // address recvmmsg filled in.
    let mine = dns_events(&run, std::process::id());
    let vector_sent: Vec<_> = mine.iter().filter(|(f, ..)| *f == "udp_sendmsg").collect();
    assert_eq!(vector_sent.len(), 1, "{mine:#?}");
    assert_eq!(vector_sent[0].2["query"], "vector-a.vigil.test");
    assert_eq!(vector_sent[0].2["id"], 0x4141);
    let vector_recv: Vec<_> = mine.iter().filter(|(f, ..)| *f == "udp_recvmsg").collect();
    assert!(!vector_recv.is_empty(), "{mine:#?}");
    assert_eq!(vector_recv[0].1["daddr"], "127.0.0.1");
    assert_eq!(vector_recv[0].1["dport"], 53);
    assert_eq!(vector_recv[0].2["rcode"], "NXDOMAIN");
    // The resolver's own traffic (from port 53) and the datagram to another port are not DNS
    // lookups.
    assert!(
        mine.iter()
            .all(|(_, s, d)| s["sport"] != 53 && d["query"] != "not-dns.vigil.test"),
        "{mine:#?}"
    );
}
