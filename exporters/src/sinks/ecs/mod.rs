//! vigil events as Elastic Common Schema documents, to the letter ([`spec`] lists every field
//! written, with its type and allowed values): `@timestamp`, `ecs.version`, `agent.*`, `host.*`
//! (the operating system and machine id, [`host`]), `data_stream.*`, `event.*` (kind, category,
//! type, action and outcome by what the event is, [`category`]), `process.*` with its parent,
//! its users and groups, `user.*`, `group.*`, `container.id`, `file.*`, `source.*` /
//! `destination.*` / `network.*`, `dns.*`, and for Sigma alerts `rule.*`, `event.severity` and
//! `threat.*` from the rule's ATT&CK tags. Whatever ECS has no field for (the Tetragon event's
//! own arguments, the policy, capabilities, namespaces) stays under `vigil.*`.
//!
//! The actions and fields are the ones Elastic's prebuilt detection rules read, so those rules
//! run on vigil's documents once pointed at vigil's data stream (README: Elasticsearch).

pub mod category;
pub mod host;
pub mod spec;

use serde_json::{json, Map, Value};

pub use host::HostInfo;

/// The ECS version the documents follow.
pub const ECS_VERSION: &str = "9.2.0";

/// What every document of one sink shares.
#[derive(Debug, Clone)]
pub struct EcsContext {
    /// The node.
    pub host: HostInfo,
    /// `event.dataset` (and `data_stream.dataset`): `vigil.events`.
    pub dataset: String,
    /// `data_stream.namespace`, when the sink writes a data stream.
    pub namespace: Option<String>,
}

impl EcsContext {
    /// The context of a sink writing `dataset` (into a data stream of `namespace`, if any).
    pub fn new(host: HostInfo, dataset: &str, namespace: Option<&str>) -> EcsContext {
        EcsContext {
            host,
            dataset: dataset.to_string(),
            namespace: namespace.map(str::to_string),
        }
    }
}

fn string_id(v: &Value) -> Option<Value> {
    v.as_u64().map(|n| Value::from(n.to_string()))
}

/// Inserts `value` under the dotted `path` of `doc`, unless it is null or an empty string.
fn put(doc: &mut Map<String, Value>, path: &str, value: Value) {
    if value.is_null() || value.as_str() == Some("") {
        return;
    }
    let mut at = doc;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            at.insert(part.to_string(), value);
            return;
        }
        let slot = at
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        at = slot.as_object_mut().expect("an object");
    }
}

/// `process.*` (or `process.parent.*` when `parent`) of a Tetragon process object.
fn process(doc: &mut Map<String, Value>, prefix: &str, p: &Value, ctx: &EcsContext, parent: bool) {
    if !p.is_object() {
        return;
    }
    let binary = p["binary"].as_str().unwrap_or("");
    let arguments = p["arguments"].as_str().unwrap_or("");
    let mut args = vec![Value::from(binary)];
    args.extend(
        vigil_events::split_arguments(arguments)
            .into_iter()
            .map(Value::from),
    );
    let command_line = if arguments.is_empty() {
        binary.to_string()
    } else {
        format!("{binary} {arguments}")
    };
    let f = |field: &str| format!("{prefix}.{field}");
    put(doc, &f("pid"), p["pid"].clone());
    put(doc, &f("entity_id"), p["exec_id"].clone());
    put(doc, &f("executable"), Value::from(binary));
    put(
        doc,
        &f("name"),
        Value::from(binary.rsplit('/').next().unwrap_or(binary)),
    );
    put(doc, &f("args_count"), Value::from(args.len()));
    put(doc, &f("args"), Value::Array(args));
    put(doc, &f("command_line"), Value::from(command_line));
    put(doc, &f("working_directory"), p["cwd"].clone());
    put(doc, &f("start"), p["start_time"].clone());
    put(doc, &f("thread.id"), p["tid"].clone());
    let creds = &p["process_credentials"];
    // The effective ids are the process's user and group (Tetragon's `uid` is the effective
    // one); the real and saved ones beside.
    let euid = p["uid"].as_u64().or(creds["euid"].as_u64());
    if let Some(uid) = euid {
        put(doc, &f("user.id"), Value::from(uid.to_string()));
        if !parent {
            if let Some(name) = u32::try_from(uid).ok().and_then(|u| ctx.host.user(u)) {
                put(doc, &f("user.name"), Value::from(name));
            }
        }
    }
    if let Some(gid) = creds["egid"].as_u64() {
        put(doc, &f("group.id"), Value::from(gid.to_string()));
        if !parent {
            if let Some(name) = u32::try_from(gid).ok().and_then(|g| ctx.host.group(g)) {
                put(doc, &f("group.name"), Value::from(name));
            }
        }
    }
    if !parent {
        for (field, key) in [
            ("real_user.id", "uid"),
            ("real_group.id", "gid"),
            ("saved_user.id", "suid"),
            ("saved_group.id", "sgid"),
        ] {
            if let Some(id) = string_id(&creds[key]) {
                put(doc, &f(field), id);
            }
        }
    }
}

/// `file.*` of a path.
fn file(doc: &mut Map<String, Value>, path: &str, permission: Option<&str>) {
    put(doc, "file.path", Value::from(path));
    let (dir, name) = match path.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((dir, name)) => (dir, name),
        None => ("", path),
    };
    put(doc, "file.directory", Value::from(dir));
    put(doc, "file.name", Value::from(name));
    if let Some((stem, ext)) = name.rsplit_once('.') {
        if !stem.is_empty() && !ext.is_empty() {
            put(doc, "file.extension", Value::from(ext));
        }
    }
    if let Some(p) = permission.filter(|p| p.len() == 10 && p.is_ascii()) {
        let kind = match &p[..1] {
            "-" => "file",
            "d" => "dir",
            "l" => "symlink",
            _ => "",
        };
        put(doc, "file.type", Value::from(kind));
        put(doc, "file.mode", Value::from(octal_mode(&p[1..])));
    }
}

/// `rwxr-x---` (with s/S/t/T) as ECS's octal `file.mode` string (`0750`).
fn octal_mode(rwx: &str) -> String {
    let b = rwx.as_bytes();
    let mut mode = 0u32;
    let mut special = 0u32;
    for (i, c) in b.iter().enumerate().take(9) {
        let bit = 1 << (8 - i);
        match c {
            b'r' | b'w' | b'x' => mode |= bit,
            b's' | b't' => {
                mode |= bit;
                special |= 4 >> (i / 3);
            }
            b'S' | b'T' => special |= 4 >> (i / 3),
            _ => {}
        }
    }
    format!("0{:o}", (special << 9) | mode)
}

/// `source.*`, `destination.*` and `network.*` of a socket; `ingress` when the peer opened it
/// (an accepted socket), so the peer is the source.
fn socket(doc: &mut Map<String, Value>, s: &Value, ingress: bool, closing: bool) {
    let (local, peer) = (
        ("saddr", "sport", "bytes_sent"),
        ("daddr", "dport", "bytes_received"),
    );
    let (src, dst) = if ingress {
        (peer, local)
    } else {
        (local, peer)
    };
    for (side, (addr, port, bytes)) in [("source", src), ("destination", dst)] {
        if let Some(ip) = s[addr]
            .as_str()
            .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
        {
            put(doc, &format!("{side}.ip"), Value::from(ip));
        }
        put(doc, &format!("{side}.port"), s[port].clone());
        if closing {
            put(doc, &format!("{side}.bytes"), s[bytes].clone());
        }
    }
    let family = s["family"].as_str().unwrap_or("");
    put(
        doc,
        "network.type",
        Value::from(match family {
            "AF_INET" => "ipv4",
            "AF_INET6" => "ipv6",
            _ => "",
        }),
    );
    let (transport, iana) = match s["protocol"].as_str().unwrap_or("") {
        "IPPROTO_TCP" => ("tcp", "6"),
        "IPPROTO_UDP" => ("udp", "17"),
        "IPPROTO_ICMP" => ("icmp", "1"),
        "IPPROTO_ICMPV6" => ("ipv6-icmp", "58"),
        _ => ("", ""),
    };
    put(doc, "network.transport", Value::from(transport));
    put(doc, "network.iana_number", Value::from(iana));
    put(
        doc,
        "network.direction",
        Value::from(if ingress { "ingress" } else { "egress" }),
    );
}

/// `dns.*` of a decoded DNS message.
fn dns(doc: &mut Map<String, Value>, d: &Value) {
    let answer = d["response"].as_bool().unwrap_or(false);
    put(doc, "network.protocol", Value::from("dns"));
    put(
        doc,
        "dns.type",
        Value::from(if answer { "answer" } else { "query" }),
    );
    if let Some(id) = d["id"].as_u64() {
        put(doc, "dns.id", Value::from(id.to_string()));
    }
    put(doc, "dns.question.name", d["query"].clone());
    put(doc, "dns.question.type", d["type"].clone());
    put(doc, "dns.response_code", d["rcode"].clone());
    let answers: Vec<&str> = d["answers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !answers.is_empty() {
        put(
            doc,
            "dns.answers",
            Value::Array(answers.iter().map(|a| json!({ "data": a })).collect()),
        );
        let ips: Vec<Value> = answers
            .iter()
            .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
            .map(|a| Value::from(*a))
            .collect();
        if !ips.is_empty() {
            put(doc, "dns.resolved_ip", Value::Array(ips));
        }
    }
}

/// `orchestrator.*` and `container.*` of Tetragon's `pod` object.
fn pod(doc: &mut Map<String, Value>, pod: &Value) {
    if !pod.is_object() {
        return;
    }
    put(doc, "orchestrator.type", Value::from("kubernetes"));
    put(doc, "orchestrator.namespace", pod["namespace"].clone());
    put(doc, "orchestrator.resource.type", Value::from("pod"));
    put(doc, "orchestrator.resource.name", pod["name"].clone());
    put(doc, "orchestrator.resource.id", pod["uid"].clone());
    put(
        doc,
        "orchestrator.resource.parent.type",
        pod["workload_kind"].clone(),
    );
    for (field, key) in [
        ("orchestrator.resource.label", "pod_labels"),
        ("orchestrator.resource.annotation", "pod_annotations"),
    ] {
        // ECS writes a label as `key/value`.
        let pairs: Vec<Value> = pod[key]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some(Value::from(format!("{k}/{}", v.as_str()?))))
            .collect();
        if !pairs.is_empty() {
            put(doc, field, Value::Array(pairs));
        }
    }
    let c = &pod["container"];
    if let Some(full) = c["id"].as_str() {
        // `containerd://<id>`: the runtime, and the id ECS keeps alone.
        let (runtime, id) = full.split_once("://").unwrap_or(("", full));
        put(doc, "container.id", Value::from(id));
        put(doc, "container.runtime", Value::from(runtime));
    }
    put(doc, "container.name", c["name"].clone());
    put(doc, "container.image.name", c["image"]["name"].clone());
    if let Some(digest) = c["image"]["id"].as_str().and_then(|i| i.rsplit_once('@')) {
        put(doc, "container.image.hash.all", json!([digest.1]));
    }
    if let Some(p) = c["security_context"]["privileged"].as_bool() {
        put(doc, "container.security_context.privileged", Value::from(p));
    }
}

/// The ATT&CK tactics' names by the slugs Sigma tags use (`attack.execution`).
const TACTICS: &[(&str, &str)] = &[
    ("reconnaissance", "Reconnaissance"),
    ("resource_development", "Resource Development"),
    ("initial_access", "Initial Access"),
    ("execution", "Execution"),
    ("persistence", "Persistence"),
    ("privilege_escalation", "Privilege Escalation"),
    ("defense_evasion", "Defense Evasion"),
    ("credential_access", "Credential Access"),
    ("discovery", "Discovery"),
    ("lateral_movement", "Lateral Movement"),
    ("collection", "Collection"),
    ("command_and_control", "Command and Control"),
    ("exfiltration", "Exfiltration"),
    ("impact", "Impact"),
];

/// `threat.*` from Sigma's `attack.*` tags: `attack.t1059.004` is technique T1059 and
/// sub-technique T1059.004, `attack.execution` the tactic.
fn threat(doc: &mut Map<String, Value>, tags: &[Value]) {
    let (mut techniques, mut subs, mut tactics) = (Vec::new(), Vec::new(), Vec::new());
    for t in tags.iter().filter_map(Value::as_str) {
        let Some(rest) = t.strip_prefix("attack.") else {
            continue;
        };
        let id = rest.to_ascii_uppercase();
        if id.starts_with('T')
            && id[1..]
                .split('.')
                .next()
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        {
            let technique = id.split('.').next().unwrap_or(&id).to_string();
            if id.contains('.') && !subs.contains(&Value::from(id.clone())) {
                subs.push(Value::from(id.clone()));
            }
            if !techniques.contains(&Value::from(technique.clone())) {
                techniques.push(Value::from(technique));
            }
        } else if let Some((_, name)) = TACTICS
            .iter()
            .find(|(slug, _)| *slug == rest.replace('-', "_"))
        {
            tactics.push(Value::from(*name));
        }
    }
    if techniques.is_empty() && tactics.is_empty() {
        return;
    }
    put(doc, "threat.framework", Value::from("MITRE ATT&CK"));
    for (field, values) in [
        ("threat.technique.id", techniques),
        ("threat.technique.subtechnique.id", subs),
        ("threat.tactic.name", tactics),
    ] {
        if !values.is_empty() {
            put(doc, field, Value::Array(values));
        }
    }
}

/// Sigma's levels as ECS's `event.severity` (Elastic's scale: low 21, medium 47, high 73,
/// critical 99).
fn severity(level: &str) -> Option<u64> {
    Some(match level {
        "informational" => 1,
        "low" => 21,
        "medium" => 47,
        "high" => 73,
        "critical" => 99,
        _ => return None,
    })
}

/// The event kind key and its body.
fn body_of(event: &Value) -> (&str, &Value) {
    event
        .as_object()
        .and_then(|o| {
            o.iter().find(|(k, _)| {
                k.starts_with("process_") || *k == "rate_limit_info" || *k == "flow_encryption"
            })
        })
        .map(|(k, v)| (k.as_str(), v))
        .unwrap_or(("unknown", &Value::Null))
}

/// The event fields and the event-specific fields of `kind`'s `body`.
fn describe(doc: &mut Map<String, Value>, kind: &str, body: &Value) {
    let (category, types, action, outcome): (Vec<&str>, Vec<&str>, String, Option<&str>) =
        match kind {
            "process_exec" => (
                vec!["process"],
                vec!["start"],
                "exec".into(),
                Some("success"),
            ),
            // Events the kernel could not hand over: how many, as a number.
            "rate_limit_info" => {
                let lost = &body["number_of_dropped_process_events"];
                let lost = lost
                    .as_u64()
                    .or_else(|| lost.as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(0);
                put(doc, "vigil.events_lost", Value::from(lost));
                (vec!["process"], vec!["info"], "events_lost".into(), None)
            }
            "process_exit" => {
                match body["signal"].as_str() {
                    // Killed by a signal: no exit code, the signal's name beside.
                    Some(sig) => put(doc, "vigil.signal", Value::from(sig)),
                    None => put(
                        doc,
                        "process.exit_code",
                        Value::from(body["status"].as_i64().unwrap_or(0)),
                    ),
                }
                (vec!["process"], vec!["end"], "end".into(), None)
            }
            "process_kprobe" | "process_lsm" | "process_uprobe" => {
                let c = category::policy_event(body);
                let args = body["args"].as_array().cloned().unwrap_or_default();
                let ret = body.get("return");
                let paths: Vec<(&str, Option<&str>)> = args
                    .iter()
                    .chain(ret)
                    .filter_map(|a| a.get("file_arg").or(a.get("path_arg")))
                    .filter_map(|f| Some((f["path"].as_str()?, f["permission"].as_str())))
                    .collect();
                if c.action == "rename" && paths.len() >= 2 {
                    // The new name is the file's; the old one stays beside it.
                    put(doc, "vigil.file.original_path", Value::from(paths[0].0));
                    file(doc, paths[1].0, paths[1].1);
                } else if let Some((p, perm)) = paths.first() {
                    file(doc, p, *perm);
                }
                if let Some(s) = args.iter().chain(ret).find_map(|a| a.get("sock_arg")) {
                    // What the peer opened or sent is ingress: its side is the source.
                    let ingress = matches!(
                        c.action.as_str(),
                        "connection_accepted" | "udp_receive" | "lookup_result"
                    );
                    socket(doc, s, ingress, c.action == "disconnect_received");
                } else if let Some(s) = args.iter().find_map(|a| a.get("sockaddr_arg")) {
                    if let Some(ip) = s["addr"]
                        .as_str()
                        .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
                    {
                        put(doc, "destination.ip", Value::from(ip));
                        put(doc, "destination.port", s["port"].clone());
                    }
                }
                if let Some(d) = args.iter().chain(ret).find_map(category::dns_message) {
                    dns(doc, d);
                }
                let mut vigil = json!({
                    "policy_name": body["policy_name"],
                    "function_name": body["function_name"],
                    "action": body["action"],
                    "outcome": body["outcome"],
                    "args": args,
                });
                if let Some(r) = ret {
                    vigil["return"] = r.clone();
                }
                // A uprobe's function is a symbol of a binary, not a kernel function.
                for key in ["path", "symbol"] {
                    if let Some(v) = body.get(key) {
                        vigil[key] = v.clone();
                    }
                }
                put(doc, "vigil.policy", vigil);
                (c.category, c.types, c.action, c.outcome)
            }
            // A flow's encryption verdict: the flow as any connection, the device it left
            // through as the observer's egress interface (the node observes its own egress),
            // and the verdict in vigil's namespace (ECS has no field for a tunnel's kind).
            "flow_encryption" => {
                let flow = &body["flow"];
                socket(doc, flow, false, false);
                let e = &flow["encryption"];
                put(
                    doc,
                    "observer.egress.interface.name",
                    e["interface"].clone(),
                );
                put(doc, "vigil.encryption", e.clone());
                (
                    vec!["network"],
                    vec!["info"],
                    "flow_encryption".into(),
                    None,
                )
            }
            _ => (vec!["process"], vec!["info"], kind.to_string(), None),
        };
    put(doc, "event.category", json!(category));
    put(doc, "event.type", json!(types));
    put(doc, "event.action", Value::from(action));
    if let Some(o) = outcome {
        put(doc, "event.outcome", Value::from(o));
    }
}

/// The ECS document of a vigil event (as its JSON).
pub fn to_ecs(event: &Value, ctx: &EcsContext) -> Value {
    let (kind, body) = body_of(event);
    let mut doc = Map::new();
    put(&mut doc, "@timestamp", event["time"].clone());
    put(&mut doc, "ecs.version", Value::from(ECS_VERSION));
    put(&mut doc, "agent.type", Value::from("vigil"));
    put(
        &mut doc,
        "agent.version",
        Value::from(env!("CARGO_PKG_VERSION")),
    );
    put(&mut doc, "agent.name", event["node_name"].clone());
    let mut host = ctx.host.host.clone();
    if let Some(name) = event["node_name"].as_str() {
        host.insert("name".into(), Value::from(name));
    }
    doc.insert("host".into(), Value::Object(host));
    put(&mut doc, "event.kind", Value::from("event"));
    put(&mut doc, "event.module", Value::from("vigil"));
    put(&mut doc, "event.dataset", Value::from(ctx.dataset.as_str()));
    if let Some(ns) = &ctx.namespace {
        put(&mut doc, "data_stream.type", Value::from("logs"));
        put(
            &mut doc,
            "data_stream.dataset",
            Value::from(ctx.dataset.as_str()),
        );
        put(&mut doc, "data_stream.namespace", Value::from(ns.as_str()));
    }

    // An alert describes the event that matched, then says what matched it.
    let (described_kind, described) = if kind == "process_alert" {
        body_of(&body["event"])
    } else {
        (kind, body)
    };
    process(&mut doc, "process", &body["process"], ctx, false);
    process(&mut doc, "process.parent", &body["parent"], ctx, true);
    describe(&mut doc, described_kind, described);
    // The user and group the event is about are the process's effective ones.
    for field in ["user", "group"] {
        if let Some(v) = doc.get("process").and_then(|p| p.get(field)).cloned() {
            doc.insert(field.into(), v);
        }
    }
    let p = &body["process"];
    put(&mut doc, "container.id", p["docker"].clone());
    pod(&mut doc, &p["pod"]);
    for field in ["cap", "ns", "cgroup", "flags", "auid"] {
        put(
            &mut doc,
            &format!("vigil.process.{field}"),
            p[field].clone(),
        );
    }

    if kind == "rate_limit_info" {
        // A count over a time, not something that happened: ECS's metric.
        put(&mut doc, "event.kind", Value::from("metric"));
    }
    if kind == "process_alert" {
        let ev = doc["event"].as_object_mut().expect("event");
        ev.insert("kind".into(), Value::from("alert"));
        let mut categories: Vec<Value> = ev["category"].as_array().cloned().unwrap_or_default();
        let mut types: Vec<Value> = ev["type"].as_array().cloned().unwrap_or_default();
        if !categories.contains(&Value::from("intrusion_detection")) {
            categories.push(Value::from("intrusion_detection"));
            types.push(Value::from("info"));
        }
        ev.insert("category".into(), Value::Array(categories));
        ev.insert("type".into(), Value::Array(types));
        if let Some(s) = body["level"].as_str().and_then(severity) {
            ev.insert("severity".into(), Value::from(s));
        }
        put(&mut doc, "rule.id", body["rule_id"].clone());
        put(&mut doc, "rule.name", body["title"].clone());
        put(&mut doc, "rule.ruleset", Value::from("sigma"));
        put(&mut doc, "rule.category", body["category"].clone());
        put(
            &mut doc,
            "vigil.alert",
            json!({ "level": body["level"], "rule_file": body["rule_file"] }),
        );
        let tags = body["tags"].as_array().cloned().unwrap_or_default();
        threat(&mut doc, &tags);
        if !tags.is_empty() {
            put(&mut doc, "tags", Value::Array(tags));
        }
    }
    Value::Object(doc)
}

#[cfg(test)]
mod tests;
