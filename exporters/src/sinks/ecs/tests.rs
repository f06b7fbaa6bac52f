use serde_json::{json, Value};

use super::{spec::violations, to_ecs, EcsContext, HostInfo};

fn ctx() -> EcsContext {
    let host = HostInfo::from_files(
        "ID=debian\nVERSION_ID=\"12\"\nNAME=\"Debian GNU/Linux\"\n",
        "0123456789abcdef",
        "6.1.0-26-cloud-amd64",
        "node-a",
        "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
        "root:x:0:\nnogroup:x:65534:\n",
    );
    EcsContext::new(host, "vigil.events", Some("default"))
}

fn process(pid: u64, binary: &str, arguments: &str) -> Value {
    json!({"exec_id": format!("id-{pid}"), "pid": pid, "tid": pid, "uid": 65534, "cwd": "/tmp",
        "binary": binary, "arguments": arguments, "start_time": "2026-11-25T10:00:00.000000001Z",
        "process_credentials": {"uid": 65534, "gid": 65534, "euid": 65534, "egid": 65534, "suid": 0, "sgid": 0},
        "docker": "6b742e38ee3a212239e6d48b2954435", "flags": "execve clone"})
}

fn event(kind: &str, body: Value) -> Value {
    json!({ kind: body, "node_name": "node-a", "time": "2026-11-25T10:00:01Z" })
}

/// The document of `e`, which must follow ECS.
fn doc(e: &Value) -> Value {
    let d = to_ecs(e, &ctx());
    assert_eq!(violations(&d), Vec::<String>::new(), "{d:#}");
    d
}

fn policy(function: &str, args: Value, ret: Option<Value>, outcome: &str) -> Value {
    let mut body = json!({"process": process(7, "/usr/bin/curl", "-s \"a b\""),
        "parent": process(1, "/bin/sh", ""), "function_name": function, "args": args,
        "action": "KPROBE_ACTION_POST", "policy_name": "p", "outcome": outcome});
    if let Some(r) = ret {
        body["return"] = r;
    }
    event("process_kprobe", body)
}

#[test]
fn an_exec_carries_the_fields_process_rules_read() {
    let d = doc(&event(
        "process_exec",
        json!({"process": process(7, "/usr/bin/curl", "-s \"a b\""), "parent": process(1, "/bin/sh", "-c x")}),
    ));
    assert_eq!(d["event"]["category"], json!(["process"]));
    assert_eq!(d["event"]["type"], json!(["start"]));
    assert_eq!(d["event"]["action"], "exec");
    assert_eq!(d["host"]["os"]["type"], "linux");
    assert_eq!(d["host"]["id"], "0123456789abcdef");
    assert_eq!(d["host"]["name"], "node-a");
    assert_eq!(d["process"]["name"], "curl");
    assert_eq!(d["process"]["args"], json!(["/usr/bin/curl", "-s", "a b"]));
    assert_eq!(d["process"]["args_count"], 3);
    assert_eq!(d["process"]["parent"]["name"], "sh");
    assert_eq!(d["process"]["parent"]["args_count"], 3);
    assert_eq!(d["process"]["thread"]["id"], 7);
    assert_eq!(d["process"]["saved_user"]["id"], "0");
    assert_eq!(d["user"]["name"], "nobody");
    assert_eq!(d["group"]["name"], "nogroup");
    assert_eq!(d["container"]["id"], "6b742e38ee3a212239e6d48b2954435");
    assert_eq!(d["data_stream"]["dataset"], d["event"]["dataset"]);
    assert_eq!(d["ecs"]["version"], super::ECS_VERSION);
}

#[test]
fn an_exit_by_a_signal_has_no_exit_code_and_names_the_signal() {
    let killed = doc(&event(
        "process_exit",
        json!({"process": process(7, "/bin/sleep", "30"), "signal": "SIGKILL"}),
    ));
    assert!(killed["process"].get("exit_code").is_none(), "{killed:#}");
    assert_eq!(killed["vigil"]["signal"], "SIGKILL");
    let failed = doc(&event(
        "process_exit",
        json!({"process": process(7, "/bin/false", ""), "status": 1}),
    ));
    assert_eq!(failed["process"]["exit_code"], 1);
    let ok = doc(&event(
        "process_exit",
        json!({"process": process(7, "/bin/true", "")}),
    ));
    assert_eq!(ok["process"]["exit_code"], 0);
    assert_eq!(ok["event"]["type"], json!(["end"]));
}

#[test]
fn file_events_name_the_file_and_a_rename_both_paths() {
    let create = doc(&policy(
        "__x64_sys_openat",
        json!([{"path_arg": {"path": "/etc/cron.d/job.conf", "permission": "-rw-r-----"}}, {"int_arg": 0o101}]),
        None,
        "posted",
    ));
    assert_eq!(create["event"]["category"], json!(["file"]));
    assert_eq!(create["event"]["type"], json!(["creation"]));
    assert_eq!(create["event"]["action"], "creation");
    assert_eq!(
        create["event"]["outcome"], "unknown",
        "read at the call's entry"
    );
    assert_eq!(create["file"]["name"], "job.conf");
    assert_eq!(create["file"]["directory"], "/etc/cron.d");
    assert_eq!(create["file"]["extension"], "conf");
    assert_eq!(create["file"]["mode"], "0640");
    assert_eq!(create["file"]["type"], "file");
    let rename = doc(&policy(
        "__x64_sys_renameat2",
        json!([{"path_arg": {"path": "/tmp/x"}}, {"path_arg": {"path": "/etc/doas.conf"}}]),
        None,
        "posted",
    ));
    assert_eq!(rename["event"]["action"], "rename");
    assert_eq!(rename["file"]["path"], "/etc/doas.conf");
    assert_eq!(rename["vigil"]["file"]["original_path"], "/tmp/x");
    let denied = doc(&policy(
        "security_file_open",
        json!([{"file_arg": {"path": "/etc/shadow", "permission": "-rwsr-S--T"}}]),
        None,
        "denied",
    ));
    assert_eq!(denied["event"]["outcome"], "failure");
    assert_eq!(denied["event"]["type"], json!(["access", "denied"]));
    assert_eq!(denied["file"]["mode"], "07740");
}

#[test]
fn connections_have_their_direction_addresses_and_bytes() {
    let sock = json!({"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP",
        "saddr": "10.0.0.1", "daddr": "10.0.0.2", "sport": 40000, "dport": 443,
        "bytes_sent": "1000", "bytes_received": "300"});
    let connect = doc(&policy(
        "tcp_connect",
        json!([{"sock_arg": sock.clone()}]),
        None,
        "posted",
    ));
    assert_eq!(connect["event"]["action"], "connection_attempted");
    assert_eq!(connect["event"]["type"], json!(["start", "connection"]));
    assert_eq!(connect["network"]["direction"], "egress");
    assert_eq!(connect["network"]["type"], "ipv4");
    assert_eq!(connect["network"]["transport"], "tcp");
    assert_eq!(connect["destination"]["port"], 443);
    let accept = doc(&policy(
        "inet_csk_accept",
        json!([]),
        Some(json!({"sock_arg": sock.clone()})),
        "posted",
    ));
    assert_eq!(accept["event"]["action"], "connection_accepted");
    assert_eq!(accept["event"]["category"], json!(["network"]));
    assert_eq!(accept["network"]["direction"], "ingress");
    assert_eq!(accept["source"]["ip"], "10.0.0.2", "the peer opened it");
    assert_eq!(accept["destination"]["port"], 40000);
    let mut closing = sock.clone();
    closing["bytes_sent"] = json!(1000);
    closing["bytes_received"] = json!(300);
    let close = doc(&policy(
        "tcp_close",
        json!([{"sock_arg": closing}]),
        None,
        "posted",
    ));
    assert_eq!(close["event"]["type"], json!(["end", "connection"]));
    assert_eq!(close["source"]["bytes"], 1000);
    assert_eq!(close["destination"]["bytes"], 300);
}

#[test]
fn dns_messages_fill_the_dns_fields() {
    let q = doc(&policy(
        "udp_sendmsg",
        json!([{"sock_arg": {"family": "AF_INET", "protocol": "IPPROTO_UDP", "saddr": "127.0.0.1", "daddr": "127.0.0.53", "sport": 5000, "dport": 53}},
               {"dns_arg": {"id": 7, "response": false, "query": "evil.xyz", "type": "A"}}]),
        None,
        "posted",
    ));
    assert_eq!(q["event"]["action"], "lookup_requested");
    assert_eq!(q["dns"]["question"]["name"], "evil.xyz");
    assert_eq!(q["dns"]["type"], "query");
    assert_eq!(q["network"]["protocol"], "dns");
    let a = doc(&policy(
        "udp_recvmsg",
        json!([{"dns_arg": {"id": 7, "response": true, "query": "evil.xyz", "type": "A", "rcode": "NOERROR", "answers": ["10.1.2.3", "cdn.evil.xyz"]}}]),
        None,
        "posted",
    ));
    assert_eq!(a["dns"]["response_code"], "NOERROR");
    assert_eq!(
        a["dns"]["answers"],
        json!([{"data": "10.1.2.3"}, {"data": "cdn.evil.xyz"}])
    );
    assert_eq!(a["dns"]["resolved_ip"], json!(["10.1.2.3"]));
}

#[test]
fn a_sigma_alert_is_an_alert_with_its_rule_severity_and_techniques() {
    let exec = event(
        "process_exec",
        json!({"process": process(7, "/usr/bin/base64", "-d"), "parent": process(1, "/bin/sh", "")}),
    );
    let alert = event(
        "process_alert",
        json!({"process": process(7, "/usr/bin/base64", "-d"), "rule_id": "r1", "title": "Decode",
            "level": "high", "tags": ["attack.defense-evasion", "attack.t1027", "attack.t1059.004"],
            "rule_file": "/etc/vigil/sigma/r.yml", "category": "process_creation", "event": exec}),
    );
    let d = doc(&alert);
    assert_eq!(d["event"]["kind"], "alert");
    assert_eq!(
        d["event"]["category"],
        json!(["process", "intrusion_detection"])
    );
    assert_eq!(d["event"]["severity"], 73);
    assert_eq!(d["rule"]["name"], "Decode");
    assert!(
        d["rule"].get("reference").is_none(),
        "a local file is no reference"
    );
    assert_eq!(d["threat"]["technique"]["id"], json!(["T1027", "T1059"]));
    assert_eq!(
        d["threat"]["technique"]["subtechnique"]["id"],
        json!(["T1059.004"])
    );
    assert_eq!(d["threat"]["tactic"]["name"], json!(["Defense Evasion"]));
    assert!(d["event"].get("severity_name").is_none());
}

#[test]
fn a_process_in_a_pod_names_the_orchestrator_and_the_container() {
    let mut p = process(7, "/usr/bin/curl", "-s");
    p["pod"] = json!({"namespace": "default", "name": "web-7d9f", "uid": "0c5d3a4e-7f1b-4c2d-9e8f-1a2b3c4d5e6f",
        "container": {"id": "containerd://4f1e2b9c0d3a5e6f", "name": "web",
            "image": {"id": "docker.io/library/nginx@sha256:ab12", "name": "docker.io/library/nginx:1.27"},
            "pid": 1, "security_context": {"privileged": true}},
        "pod_labels": {"app": "web"}, "workload": "web", "workload_kind": "Deployment"});
    let d = doc(&event("process_exec", json!({"process": p})));
    assert_eq!(d["orchestrator"]["type"], "kubernetes");
    assert_eq!(d["orchestrator"]["namespace"], "default");
    assert_eq!(d["orchestrator"]["resource"]["name"], "web-7d9f");
    assert_eq!(d["orchestrator"]["resource"]["label"], json!(["app/web"]));
    assert_eq!(
        d["orchestrator"]["resource"]["parent"]["type"],
        "Deployment"
    );
    assert_eq!(d["container"]["id"], "4f1e2b9c0d3a5e6f");
    assert_eq!(d["container"]["runtime"], "containerd");
    assert_eq!(
        d["container"]["image"]["hash"]["all"],
        json!(["sha256:ab12"])
    );
    assert_eq!(d["container"]["security_context"]["privileged"], true);
}

#[test]
fn lost_events_are_a_metric_with_their_count() {
    let d = doc(&event(
        "rate_limit_info",
        json!({"number_of_dropped_process_events": "42"}),
    ));
    assert_eq!(d["event"]["kind"], "metric");
    assert_eq!(d["event"]["action"], "events_lost");
    assert_eq!(d["vigil"]["events_lost"], 42);
    assert!(d.get("process").is_none(), "{d:#}");
}

#[test]
fn a_flow_s_encryption_verdict_is_a_network_event_with_its_egress_device() {
    let flow = json!({"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP",
        "saddr": "10.10.1.2", "daddr": "10.30.0.5", "sport": 40000, "dport": 80,
        "encryption": {"mode": "ipsec", "evidence": "xfrm", "interface": "eth0", "spi": 3,
            "ipsec_mode": "tunnel", "reqid": 1, "outer_destination": "198.18.0.2",
            "remote_range": "10.30.0.0/16"}});
    let d = doc(&event(
        "flow_encryption",
        json!({"process": process(7, "/usr/bin/curl", "http://10.30.0.5/"), "flow": flow}),
    ));
    assert_eq!(d["event"]["category"], json!(["network"]));
    assert_eq!(d["event"]["type"], json!(["info"]));
    assert_eq!(d["event"]["action"], "flow_encryption");
    assert_eq!(d["destination"]["ip"], "10.30.0.5");
    assert_eq!(d["network"]["direction"], "egress");
    assert_eq!(d["observer"]["egress"]["interface"]["name"], "eth0");
    assert_eq!(d["vigil"]["encryption"]["mode"], "ipsec");
    assert_eq!(d["vigil"]["encryption"]["spi"], 3);
    assert_eq!(d["process"]["name"], "curl");
    // A verdict on a flow vigil saw only on the wire: no process, still a document.
    let wire = doc(&event(
        "flow_encryption",
        json!({"flow": {"family": "AF_INET", "protocol": "IPPROTO_UDP", "saddr": "10.10.1.2",
            "daddr": "10.40.0.5", "sport": 5000, "dport": 53,
            "encryption": {"mode": "none", "evidence": "device", "interface": "eth0"}}}),
    ));
    assert_eq!(wire["vigil"]["encryption"]["mode"], "none");
    assert!(
        wire.get("process").is_none() || wire["process"]["pid"].is_null(),
        "{wire:#}"
    );
}
