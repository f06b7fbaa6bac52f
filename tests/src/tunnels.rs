//! The two nodes of the encryption scenario in the VM (tests/tests/encryption.rs), with real
//! tunnels between them: this namespace is the node, `vigil-pod` a pod behind it (10.10.1.2,
//! routed through the node), `vigil-remote` another node over an underlay veth
//! (198.18.0.1 – 198.18.0.2, and 198.18.1.1 – 198.18.1.2 outside every range). The remote
//! node hosts three pod ranges: 10.20/16 through WireGuard (`wg0` on both, port 51871),
//! 10.30/16 through an ESP tunnel-mode SA pair (SPIs 3 and 4, reqid 1), 10.40/16 through
//! nothing, 10.50.0.0/24 through VXLAN in clear (`vxl0`, VNI 42, port 8472); TCP port 7001 between the nodes goes through an ESP transport-mode SA pair (SPIs 5
//! and 6, reqid 2). Built with iproute2's `ip` and wireguard-tools' `wg`; the modules must be
//! loaded first ([`crate::links::load_modules`]). The node's WireGuard device and SAs go when
//! the handle drops (the namespaces with their own handles).

use std::{io::Write, path::Path};

use crate::links::{ip, NamedNs, Veth};

/// The topology, alive while this handle is.
pub struct TwoNodes {
    /// The pod behind this node.
    pub pod: NamedNs,
    /// The remote node.
    pub remote: NamedNs,
    _links: [Veth; 2],
}

impl TwoNodes {
    /// Builds it; the WireGuard keys are written under `dir`.
    pub fn build(dir: &Path) -> TwoNodes {
        let pod = NamedNs::new("vigil-pod");
        let remote = NamedNs::new("vigil-remote");
        let _pod_link = Veth::new(
            "vpod",
            None,
            "10.10.1.1/24",
            "pod0",
            Some(&pod),
            "10.10.1.2/24",
        );
        pod.ip(&["route", "add", "default", "via", "10.10.1.1"]);
        let _underlay = Veth::new(
            "vnode",
            None,
            "198.18.0.1/24",
            "vremote",
            Some(&remote),
            "198.18.0.2/24",
        );
        ip(&["addr", "add", "198.18.1.1/24", "dev", "vnode"]);
        remote.ip(&["addr", "add", "198.18.1.2/24", "dev", "vremote"]);
        for a in ["10.20.0.5/32", "10.30.0.5/32", "10.40.0.5/32"] {
            remote.ip(&["addr", "add", a, "dev", "lo"]);
        }
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("ip_forward");

        // WireGuard between the nodes for 10.20/16 (and the pod range back).
        let key = |name: &str| {
            let private = dir.join(format!("{name}.key"));
            let out = std::process::Command::new("/usr/bin/wg")
                .arg("genkey")
                .output()
                .expect("wg genkey");
            std::fs::write(&private, &out.stdout).unwrap();
            let mut public = std::process::Command::new("/usr/bin/wg")
                .arg("pubkey")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            public.stdin.take().unwrap().write_all(&out.stdout).unwrap();
            let public = public.wait_with_output().unwrap();
            (
                private,
                String::from_utf8(public.stdout).unwrap().trim().to_string(),
            )
        };
        let (node_key, node_pub) = key("node");
        let (remote_key, remote_pub) = key("remote");
        let wg =
            |ns: Option<&NamedNs>, key: &std::path::Path, peer: &str, allowed: &str, end: &str| {
                let mut cmd = std::process::Command::new("/usr/bin/wg");
                let mut args = vec![
                    "set".to_string(),
                    "wg0".into(),
                    "private-key".into(),
                    key.display().to_string(),
                    "listen-port".into(),
                    "51871".into(),
                    "peer".into(),
                    peer.into(),
                    "allowed-ips".into(),
                    allowed.into(),
                    "endpoint".into(),
                    end.into(),
                ];
                if let Some(ns) = ns {
                    cmd = std::process::Command::new(crate::links::IP);
                    let mut with = vec![
                        "netns".to_string(),
                        "exec".into(),
                        ns.name.clone(),
                        "/usr/bin/wg".into(),
                    ];
                    with.append(&mut args);
                    args = with;
                }
                let out = cmd.args(&args).output().unwrap();
                assert!(
                    out.status.success(),
                    "wg {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
        ip(&["link", "add", "wg0", "type", "wireguard"]);
        remote.ip(&["link", "add", "wg0", "type", "wireguard"]);
        wg(
            None,
            &node_key,
            &remote_pub,
            "10.20.0.0/16",
            "198.18.0.2:51871",
        );
        wg(
            Some(&remote),
            &remote_key,
            &node_pub,
            "10.10.1.0/24",
            "198.18.0.1:51871",
        );
        ip(&["link", "set", "wg0", "up"]);
        remote.ip(&["link", "set", "wg0", "up"]);
        ip(&["route", "add", "10.20.0.0/16", "dev", "wg0"]);
        // The remote node answers from 10.20/16 through WireGuard, from the rest over the underlay.
        remote.ip(&["rule", "add", "from", "10.20.0.0/16", "table", "100"]);
        remote.ip(&["route", "add", "10.10.1.0/24", "dev", "wg0", "table", "100"]);

        // ESP: a tunnel-mode SA pair for 10.30/16 <-> the pod range, a transport-mode pair for
        // TCP port 7001 between the nodes.
        const AEAD: &str = "0x0123456789abcdef0123456789abcdef01234567";
        let sa =
            |ns: Option<&NamedNs>, src: &str, dst: &str, spi: &str, reqid: &str, mode: &str| {
                let args = [
                    "xfrm",
                    "state",
                    "add",
                    "src",
                    src,
                    "dst",
                    dst,
                    "proto",
                    "esp",
                    "spi",
                    spi,
                    "reqid",
                    reqid,
                    "mode",
                    mode,
                    "aead",
                    "rfc4106(gcm(aes))",
                    AEAD,
                    "128",
                ];
                match ns {
                    Some(n) => n.ip(&args),
                    None => ip(&args),
                }
            };
        for ns in [None, Some(&remote)] {
            sa(ns, "198.18.0.1", "198.18.0.2", "0x3", "1", "tunnel");
            sa(ns, "198.18.0.2", "198.18.0.1", "0x4", "1", "tunnel");
            sa(ns, "198.18.0.1", "198.18.0.2", "0x5", "2", "transport");
            sa(ns, "198.18.0.2", "198.18.0.1", "0x6", "2", "transport");
        }
        let policy_args = |sel: &[&str], dir: &str, tmpl: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = ["xfrm", "policy", "add"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            v.extend(sel.iter().map(|s| s.to_string()));
            v.extend(["dir".to_string(), dir.to_string(), "tmpl".to_string()]);
            v.extend(tmpl.iter().map(|s| s.to_string()));
            v
        };
        let tunnel_out = [
            "src",
            "198.18.0.1",
            "dst",
            "198.18.0.2",
            "proto",
            "esp",
            "reqid",
            "1",
            "mode",
            "tunnel",
        ];
        let tunnel_back = [
            "src",
            "198.18.0.2",
            "dst",
            "198.18.0.1",
            "proto",
            "esp",
            "reqid",
            "1",
            "mode",
            "tunnel",
        ];
        let transport = ["proto", "esp", "reqid", "2", "mode", "transport"];
        let pods_out = ["src", "10.10.1.0/24", "dst", "10.30.0.0/16"];
        let pods_back = ["src", "10.30.0.0/16", "dst", "10.10.1.0/24"];
        let to_7001 = [
            "src",
            "198.18.0.1",
            "dst",
            "198.18.0.2",
            "proto",
            "6",
            "dport",
            "7001",
        ];
        let from_7001 = [
            "src",
            "198.18.0.2",
            "dst",
            "198.18.0.1",
            "proto",
            "6",
            "sport",
            "7001",
        ];
        let node_policies = [
            policy_args(&pods_out, "out", &tunnel_out),
            policy_args(&pods_back, "in", &tunnel_back),
            policy_args(&pods_back, "fwd", &tunnel_back),
            policy_args(&to_7001, "out", &transport),
            policy_args(&from_7001, "in", &transport),
        ];
        let remote_policies = [
            policy_args(&pods_back, "out", &tunnel_back),
            policy_args(&pods_out, "in", &tunnel_out),
            policy_args(&from_7001, "out", &transport),
            policy_args(&to_7001, "in", &transport),
        ];
        for p in &node_policies {
            ip(&p.iter().map(String::as_str).collect::<Vec<_>>());
        }
        for p in &remote_policies {
            remote.ip(&p.iter().map(String::as_str).collect::<Vec<_>>());
        }
        ip(&["route", "add", "10.30.0.0/16", "via", "198.18.0.2"]);
        ip(&["route", "add", "10.40.0.0/16", "via", "198.18.0.2"]);
        remote.ip(&[
            "route",
            "add",
            "10.10.1.0/24",
            "via",
            "198.18.0.1",
            "metric",
            "10",
        ]);
        // VXLAN (VNI 42, Linux's port 8472, as Cilium's) between the nodes for 10.50/24, in
        // clear: the encapsulated packet leaves the node, the flow inside it is the pod's.
        for (ns, local, peer, addr) in [
            (None, "198.18.0.1", "198.18.0.2", "10.50.0.1/24"),
            (Some(&remote), "198.18.0.2", "198.18.0.1", "10.50.0.5/24"),
        ] {
            let dev = if ns.is_some() { "vremote" } else { "vnode" };
            let vxlan = [
                "link", "add", "vxl0", "type", "vxlan", "id", "42", "local", local, "remote", peer,
                "dstport", "8472", "dev", dev,
            ];
            let rest: [&[&str]; 2] = [
                &["addr", "add", addr, "dev", "vxl0"],
                &["link", "set", "vxl0", "up"],
            ];
            for args in std::iter::once(&vxlan[..]).chain(rest) {
                match ns {
                    Some(n) => n.ip(args),
                    None => ip(args),
                }
            }
        }

        TwoNodes {
            pod,
            remote,
            _links: [_pod_link, _underlay],
        }
    }
}

impl Drop for TwoNodes {
    fn drop(&mut self) {
        for args in [
            &["link", "del", "wg0"][..],
            &["link", "del", "vxl0"],
            &["xfrm", "state", "flush"],
            &["xfrm", "policy", "flush"],
        ] {
            let _ = std::process::Command::new(crate::links::IP)
                .args(args)
                .output();
        }
    }
}
