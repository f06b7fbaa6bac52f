//! OpenTelemetry's semantic conventions for what an event is about, as log record attributes:
//! `process.*` (pid, parent pid, executable, arguments, owner, working
//! directory), `file.*`, `network.*` with `source.*`/`destination.*`, `dns.question.name`,
//! `container.id`, and the resource's `host.*`/`os.*`. A collector's processors and a backend's
//! views keyed on these names read vigil's records as they read any other source's; the whole
//! Tetragon event stays in the body.

use serde_json::{json, Value};

use super::ecs::HostInfo;

/// `(key, value)` pairs: strings, integers and arrays of strings.
pub type Attributes = Vec<(&'static str, Value)>;

fn push(out: &mut Attributes, key: &'static str, v: &Value) {
    let keep = match v {
        Value::String(s) => !s.is_empty(),
        Value::Number(_) | Value::Array(_) => true,
        _ => false,
    };
    if keep {
        out.push((key, v.clone()));
    }
}

/// The attributes of one event (the Tetragon JSON).
pub fn event_attributes(event: &Value, host: &HostInfo) -> Attributes {
    let mut out = Attributes::new();
    let Some((kind, body)) = event.as_object().and_then(|o| {
        o.iter()
            .find(|(k, _)| k.starts_with("process_") || *k == "flow_encryption")
    }) else {
        return out;
    };
    let p = &body["process"];
    let binary = p["binary"].as_str().unwrap_or("");
    push(&mut out, "process.pid", &p["pid"]);
    push(&mut out, "process.parent_pid", &body["parent"]["pid"]);
    push(&mut out, "process.executable.path", &p["binary"]);
    push(
        &mut out,
        "process.executable.name",
        &json!(binary.rsplit('/').next().unwrap_or(binary)),
    );
    let arguments = p["arguments"].as_str().unwrap_or("");
    if !binary.is_empty() {
        let mut args = vec![Value::from(binary)];
        args.extend(
            vigil_events::split_arguments(arguments)
                .into_iter()
                .map(Value::from),
        );
        // The arguments as a list; the conventions advise against a joined line beside it.
        out.push(("process.command_args", Value::Array(args)));
    }
    push(&mut out, "process.working_directory", &p["cwd"]);
    if let Some(uid) = p["uid"].as_u64() {
        out.push(("process.user.id", Value::from(uid)));
        if let Some(name) = u32::try_from(uid).ok().and_then(|u| host.user(u)) {
            out.push(("process.owner", Value::from(name)));
        }
    }
    push(&mut out, "process.exit.code", &body["status"]);
    push(&mut out, "container.id", &p["docker"]);
    let pod = &p["pod"];
    if pod.is_object() {
        push(&mut out, "k8s.namespace.name", &pod["namespace"]);
        push(&mut out, "k8s.pod.name", &pod["name"]);
        push(&mut out, "k8s.pod.uid", &pod["uid"]);
        let c = &pod["container"];
        push(&mut out, "k8s.container.name", &c["name"]);
        if let Some((runtime, id)) = c["id"].as_str().and_then(|i| i.split_once("://")) {
            out.retain(|(k, _)| *k != "container.id");
            out.push(("container.id", Value::from(id)));
            out.push(("container.runtime", Value::from(runtime)));
        }
        push(&mut out, "container.image.name", &c["image"]["name"]);
        // The workload by its kind's own attribute: `k8s.deployment.name`, ...
        let workload_key = match pod["workload_kind"].as_str() {
            Some("Deployment") => Some("k8s.deployment.name"),
            Some("DaemonSet") => Some("k8s.daemonset.name"),
            Some("StatefulSet") => Some("k8s.statefulset.name"),
            Some("ReplicaSet") => Some("k8s.replicaset.name"),
            Some("Job") => Some("k8s.job.name"),
            Some("CronJob") => Some("k8s.cronjob.name"),
            _ => None,
        };
        if let Some(key) = workload_key {
            push(&mut out, key, &pod["workload"]);
        }
    }
    let body = if kind == "process_alert" {
        body["event"]
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.starts_with("process_")))
            .map_or(&Value::Null, |(_, v)| v)
    } else {
        body
    };
    let args: Vec<&Value> = body["args"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(body.get("return"))
        .collect();
    let files: Vec<&Value> = args
        .iter()
        .filter_map(|a| a.get("file_arg").or(a.get("path_arg")))
        .collect();
    // A rename's file is its new name, its second path.
    let renamed = matches!(
        super::ecs::category::call_name(body["function_name"].as_str().unwrap_or("")),
        "rename" | "renameat" | "renameat2"
    ) && files.len() >= 2;
    if let Some(f) = files.get(usize::from(renamed)) {
        let path = f["path"].as_str().unwrap_or("");
        push(&mut out, "file.path", &f["path"]);
        if let Some((dir, name)) = path.rsplit_once('/') {
            push(
                &mut out,
                "file.directory",
                &json!(if dir.is_empty() { "/" } else { dir }),
            );
            push(&mut out, "file.name", &json!(name));
            if let Some((stem, ext)) = name.rsplit_once('.') {
                if !stem.is_empty() {
                    push(&mut out, "file.extension", &json!(ext));
                }
            }
        }
    }
    // A flow's verdict (`flow_encryption`) is about its flow as a socket argument is.
    let sock = args
        .iter()
        .find_map(|a| a.get("sock_arg"))
        .or(body.get("flow"));
    if let Some(s) = sock {
        let transport = match s["protocol"].as_str() {
            Some("IPPROTO_TCP") => "tcp",
            Some("IPPROTO_UDP") => "udp",
            _ => "",
        };
        push(&mut out, "network.transport", &json!(transport));
        let family = match s["family"].as_str() {
            Some("AF_INET") => "ipv4",
            Some("AF_INET6") => "ipv6",
            _ => "",
        };
        push(&mut out, "network.type", &json!(family));
        // An accepted connection or a received datagram: the peer is the source.
        let call = super::ecs::category::call_name(body["function_name"].as_str().unwrap_or(""));
        let ingress = matches!(
            call,
            "inet_csk_accept"
                | "accept"
                | "accept4"
                | "udp_recvmsg"
                | "recvfrom"
                | "recvmsg"
                | "recvmmsg"
        );
        let (src, dst) = if ingress {
            (("daddr", "dport"), ("saddr", "sport"))
        } else {
            (("saddr", "sport"), ("daddr", "dport"))
        };
        push(&mut out, "source.address", &s[src.0]);
        push(&mut out, "source.port", &s[src.1]);
        push(&mut out, "destination.address", &s[dst.0]);
        push(&mut out, "destination.port", &s[dst.1]);
        // How the flow leaves the node (encryption awareness): semconv has the device's name;
        // the verdict is vigil's own.
        if let Some(e) = s.get("encryption") {
            push(&mut out, "network.interface.name", &e["interface"]);
            push(&mut out, "vigil.encryption.mode", &e["mode"]);
            push(&mut out, "vigil.encryption.evidence", &e["evidence"]);
            push(
                &mut out,
                "vigil.encryption.remote_range",
                &e["remote_range"],
            );
            push(&mut out, "vigil.encryption.ipsec.mode", &e["ipsec_mode"]);
            push(&mut out, "vigil.encryption.ipsec.spi", &e["spi"]);
        }
    }
    if let Some(d) = args.iter().find_map(|a| a.get("dns_arg")) {
        push(&mut out, "dns.question.name", &d["query"]);
    }
    out
}

/// The resource attributes of the node: `host.id`, `host.arch` and `os.*`.
pub fn host_attributes(host: &HostInfo) -> Attributes {
    let h = &host.host;
    let mut out = Attributes::new();
    push(&mut out, "host.id", h.get("id").unwrap_or(&Value::Null));
    // OpenTelemetry names x86_64 `amd64` and aarch64 `arm64`.
    let arch = match h.get("architecture").and_then(Value::as_str) {
        Some("x86_64") => "amd64",
        Some("aarch64") => "arm64",
        Some("x86") => "x86",
        Some("arm") => "arm32",
        Some("powerpc64") => "ppc64",
        Some("s390x") => "s390x",
        Some(other) => other,
        None => "",
    };
    push(&mut out, "host.arch", &json!(arch));
    out.push(("os.type", Value::from("linux")));
    let os = h.get("os").cloned().unwrap_or(Value::Null);
    push(&mut out, "os.name", &os["name"]);
    push(&mut out, "os.version", &os["version"]);
    push(&mut out, "os.description", &os["full"]);
    push(&mut out, "os.build_id", &os["kernel"]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(a: &'a Attributes, key: &str) -> Option<&'a Value> {
        a.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    #[test]
    fn a_connect_names_its_process_and_its_addresses_by_the_conventions() {
        let host = HostInfo::from_files(
            "ID=debian\nPRETTY_NAME=\"Debian 12\"\n",
            "abc",
            "6.1.0",
            "n",
            "root:x:0:0::/:/bin/sh\n",
            "",
        );
        let e = json!({"process_kprobe": {"process": {"pid": 7, "uid": 0, "binary": "/usr/bin/curl", "arguments": "-s \"a b\"", "cwd": "/tmp"},
            "parent": {"pid": 1}, "function_name": "tcp_connect",
            "args": [{"sock_arg": {"family": "AF_INET", "protocol": "IPPROTO_TCP", "saddr": "10.0.0.1", "sport": 40000, "daddr": "10.0.0.2", "dport": 443}}]},
            "node_name": "n", "time": "t"});
        let a = event_attributes(&e, &host);
        assert_eq!(get(&a, "process.pid"), Some(&json!(7)));
        assert_eq!(get(&a, "process.parent_pid"), Some(&json!(1)));
        assert_eq!(get(&a, "process.executable.name"), Some(&json!("curl")));
        assert_eq!(
            get(&a, "process.command_args"),
            Some(&json!(["/usr/bin/curl", "-s", "a b"]))
        );
        assert_eq!(get(&a, "process.owner"), Some(&json!("root")));
        assert_eq!(get(&a, "network.transport"), Some(&json!("tcp")));
        assert_eq!(get(&a, "destination.port"), Some(&json!(443)));
        let mut accept = e.clone();
        accept["process_kprobe"]["function_name"] = json!("inet_csk_accept");
        let a = event_attributes(&accept, &host);
        assert_eq!(
            get(&a, "source.port"),
            Some(&json!(443)),
            "the peer opened it"
        );
        let r = host_attributes(&host);
        assert_eq!(get(&r, "os.type"), Some(&json!("linux")));
        assert_eq!(get(&r, "host.id"), Some(&json!("abc")));
        assert_eq!(get(&r, "os.description"), Some(&json!("Debian 12")));
    }

    #[test]
    fn a_flow_s_verdict_carries_its_addresses_device_and_mode() {
        let host = HostInfo::from_files("ID=debian\n", "abc", "6.1.0", "n", "", "");
        let e = json!({"flow_encryption": {"process": {"pid": 7, "binary": "/usr/bin/curl"},
            "flow": {"family": "AF_INET", "protocol": "IPPROTO_TCP", "saddr": "10.10.1.2", "sport": 40000,
                "daddr": "10.20.0.5", "dport": 80,
                "encryption": {"mode": "wireguard", "evidence": "device", "interface": "wg0",
                    "remote_range": "10.20.0.0/16"}}},
            "node_name": "n", "time": "t"});
        let a = event_attributes(&e, &host);
        assert_eq!(get(&a, "process.pid"), Some(&json!(7)));
        assert_eq!(get(&a, "destination.address"), Some(&json!("10.20.0.5")));
        assert_eq!(get(&a, "network.interface.name"), Some(&json!("wg0")));
        assert_eq!(get(&a, "vigil.encryption.mode"), Some(&json!("wireguard")));
        assert_eq!(
            get(&a, "vigil.encryption.remote_range"),
            Some(&json!("10.20.0.0/16"))
        );
        assert_eq!(get(&a, "vigil.encryption.ipsec.spi"), None);
    }

    #[test]
    fn files_and_dns_names_of_alerts_too() {
        let host = HostInfo::default();
        let inner = json!({"process_kprobe": {"process": {"pid": 7, "binary": "/bin/cat"},
            "args": [{"file_arg": {"path": "/etc/shadow"}}]}});
        let alert =
            json!({"process_alert": {"process": {"pid": 7, "binary": "/bin/cat"}, "event": inner}});
        let a = event_attributes(&alert, &host);
        assert_eq!(get(&a, "file.path"), Some(&json!("/etc/shadow")));
        assert_eq!(get(&a, "file.directory"), Some(&json!("/etc")));
        let pod = json!({"process_exec": {"process": {"pid": 9, "docker": "4f1e2b9c", "pod": {"namespace": "default", "name": "web-1", "workload": "web", "workload_kind": "Deployment",
            "container": {"id": "containerd://4f1e2b9c0d3a", "name": "web", "image": {"name": "nginx:1.27"}}}}}});
        let a = event_attributes(&pod, &host);
        assert_eq!(get(&a, "k8s.pod.name"), Some(&json!("web-1")));
        assert_eq!(get(&a, "k8s.namespace.name"), Some(&json!("default")));
        assert_eq!(get(&a, "k8s.deployment.name"), Some(&json!("web")));
        assert_eq!(
            get(&a, "container.id"),
            Some(&json!("4f1e2b9c0d3a")),
            "the full id, not the prefix"
        );
        assert_eq!(get(&a, "container.image.name"), Some(&json!("nginx:1.27")));
        let q = json!({"process_kprobe": {"process": {"pid": 9}, "args": [{"dns_arg": {"query": "evil.xyz"}}]}});
        assert_eq!(
            get(&event_attributes(&q, &host), "dns.question.name"),
            Some(&json!("evil.xyz"))
        );
    }
}
