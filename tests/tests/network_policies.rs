//! The shipped TCP policy (`rules/policies/observe-tcp-connections.yaml`) with real
//! connections: a server listening inside a network namespace the test creates (a veth pair,
//! 10.203.x.0/30) and accepting, a client connecting to it from the host's namespace, data both
//! ways, then the close. The events carry the 5-tuple, each socket's network namespace and the bytes; a
//! connection on loopback is left out by the policy's in-kernel filter. And Tetragon's
//! connect-only-private-addrs, scoped to bash, kills a bash that connects to an address outside
//! the private ranges (TEST-NET-2, on a veth the test creates), on every kernel.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::Command,
};

use serde_json::Value;
use vigil_tests::{rules_dir, Agent, AgentRun};

const POLICY: &str = "observe-tcp-connections";

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip (iproute2, installed by make test-deps): {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace joined to the host's by a veth pair: the host side is `.1`, the
/// namespace side `.2`. Removed when dropped.
struct NetNs {
    name: String,
    host_if: String,
    host_addr: String,
    ns_addr: String,
}

impl NetNs {
    /// `tag` tells this test's namespace from another's; `net` is the first three octets of
    /// the /30 it uses.
    fn create(tag: &str, net: &str) -> NetNs {
        let id = std::process::id() % 1000;
        let name = format!("vigil-{tag}{id}");
        let (host_if, ns_if) = (format!("vh{tag}{id}"), format!("vn{tag}{id}"));
        let (host_addr, ns_addr) = (format!("{net}.1"), format!("{net}.2"));
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        ip(&["netns", "add", &name]);
        let ns = NetNs {
            name,
            host_if,
            host_addr,
            ns_addr,
        };
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &ns.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_addr),
            "dev",
            &ns.host_if,
        ]);
        ip(&["link", "set", &ns.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{}/30", ns.ns_addr), "dev", &ns_if]);
        inside(&["link", "set", &ns_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `f` on a thread that has joined the namespace (a thread's network namespace is its
    /// own: the rest of the test stays in the host's).
    fn run_inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap();
            // SAFETY: setns on a descriptor we own, for this thread only.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn netns_inode(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

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

#[test]
fn tcp_connect_listen_and_close_are_reported_with_namespaces_and_bytes() {
    let ns = NetNs::create("t", &format!("10.203.{}", std::process::id() % 250));
    let policy = rules_dir().join(format!("{POLICY}.yaml"));
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);

    // The server listens inside the namespace; its socket stays there once created.
    let addr = ns.ns_addr.clone();
    let (listener, ns_inode) = ns.run_inside(move || {
        let l = TcpListener::bind((addr.as_str(), 0)).unwrap();
        (l, netns_inode("/proc/thread-self/ns/net"))
    });
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1000];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&[b'y'; 300]).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap(); // until the client's FIN
    });
    let mut client = TcpStream::connect((ns.ns_addr.as_str(), port)).unwrap();
    let client_port = client.local_addr().unwrap().port();
    client.write_all(&[b'x'; 1000]).unwrap();
    let mut buf = [0u8; 300];
    client.read_exact(&mut buf).unwrap();
    drop(client);
    server.join().unwrap();

    // On loopback: filtered in the kernel.
    let local = TcpListener::bind("127.0.0.1:0").unwrap();
    let local_port = local.local_addr().unwrap().port();
    drop(TcpStream::connect(("127.0.0.1", local_port)).unwrap());
    drop(local.accept().unwrap());
    let run = agent.stop();

    let host_inode = netns_inode("/proc/self/ns/net");
    assert_ne!(host_inode, ns_inode);
    let connects = socks(&run, "tcp_connect");
    assert_eq!(
        connects.len(),
        1,
        "one connect, the loopback one filtered: {connects:#?}"
    );
    let c = connects[0];
    assert_eq!(c["family"], "AF_INET");
    assert_eq!(c["protocol"], "IPPROTO_TCP");
    assert_eq!(c["saddr"], ns.host_addr.as_str());
    assert_eq!(c["sport"], client_port);
    assert_eq!(c["daddr"], ns.ns_addr.as_str());
    assert_eq!(c["dport"], port);
    assert_eq!(c["netns"], host_inode);

    let listens = socks(&run, "inet_csk_listen_start");
    let ours: Vec<_> = listens.iter().filter(|s| s["sport"] == port).collect();
    assert_eq!(ours.len(), 1, "{listens:#?}");
    assert_eq!(ours[0]["saddr"], ns.ns_addr.as_str());
    assert_eq!(ours[0]["netns"], ns_inode, "the listener's namespace");
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
    assert_eq!(accepts[0]["saddr"], ns.ns_addr.as_str());
    assert_eq!(accepts[0]["sport"], port);
    assert_eq!(accepts[0]["daddr"], ns.host_addr.as_str());
    assert_eq!(accepts[0]["dport"], client_port);
    assert_eq!(
        accepts[0]["netns"], ns_inode,
        "the accepted socket's namespace"
    );

    let closes = socks(&run, "tcp_close");
    let client_close = closes
        .iter()
        .find(|s| s["sport"] == client_port)
        .unwrap_or_else(|| panic!("the client's close: {closes:#?}"));
    assert_eq!(client_close["bytes_sent"], 1000);
    assert_eq!(client_close["bytes_received"], 300);
    assert_eq!(client_close["netns"], host_inode);
    let server_close = closes
        .iter()
        .find(|s| s["sport"] == port)
        .unwrap_or_else(|| panic!("the server's close: {closes:#?}"));
    assert_eq!(server_close["bytes_sent"], 300);
    assert_eq!(server_close["bytes_received"], 1000, "the FIN is no data");
    assert_eq!(server_close["netns"], ns_inode);
    assert!(
        closes.iter().all(|s| s["daddr"] != "127.0.0.1"),
        "loopback closes are filtered: {closes:#?}"
    );
}

#[test]
fn a_connect_outside_the_private_ranges_is_killed() {
    // TEST-NET-2 is no private range; it exists here only on the test's own veth.
    let ns = NetNs::create("k", "198.51.100");
    let private = NetNs::create("p", &format!("10.204.{}", std::process::id() % 250));
    let bash = std::fs::canonicalize("/bin/bash").unwrap();
    let tetragon = vigil_tests::tetragon_policies_dir()
        .join("tracingpolicy_tcp-connect-only-private-addrs.yaml");
    let text = std::fs::read_to_string(&tetragon).unwrap();
    // Scoped to bash, so nothing else on the machine is at risk while the test runs.
    let scoped = text.replace(
        "    - matchArgs:",
        &format!(
            "    - matchBinaries:\n      - operator: In\n        values: [\"{}\"]\n      matchArgs:",
            bash.display()
        ),
    );
    assert_ne!(scoped, text, "the policy's selector moved");
    let dir = vigil_tests::TempDir::new("private-addrs");
    let policy = dir.path().join("connect-only-private-addrs.yaml");
    std::fs::write(&policy, scoped).unwrap();
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);

    let mut results = Vec::new();
    for net in [&ns, &private] {
        let addr = net.ns_addr.clone();
        let listener = net.run_inside(move || TcpListener::bind((addr.as_str(), 0)).unwrap());
        let port = listener.local_addr().unwrap().port();
        let script = format!("exec 3<>/dev/tcp/{}/{port} && echo connected", net.ns_addr);
        let out = Command::new(&bash).args(["-c", &script]).output().unwrap();
        results.push(out);
    }
    let run = agent.stop();
    use std::os::unix::process::ExitStatusExt;
    let (public, private_out) = (&results[0], &results[1]);
    assert_eq!(
        public.status.signal(),
        Some(9),
        "killed on connecting to {}: {public:?}",
        ns.ns_addr
    );
    assert!(public.stdout.is_empty(), "nothing after the connect ran");
    assert!(private_out.status.success(), "{private_out:?}");
    assert_eq!(
        String::from_utf8_lossy(&private_out.stdout).trim(),
        "connected"
    );

    let kills: Vec<&Value> = run
        .events
        .iter()
        .filter_map(|e| e.get("process_kprobe"))
        .filter(|e| e["policy_name"] == "connect-only-private-addrs")
        .collect();
    assert_eq!(kills.len(), 1, "{kills:#?}");
    assert_eq!(kills[0]["function_name"], "tcp_connect");
    assert_eq!(kills[0]["action"], "KPROBE_ACTION_SIGKILL");
    assert_eq!(kills[0]["outcome"], "killed");
    assert_eq!(
        kills[0]["args"][0]["sock_arg"]["daddr"],
        ns.ns_addr.as_str()
    );
}
