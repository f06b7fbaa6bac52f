//! vigil events as Elastic Common Schema documents: `@timestamp`, `event.*` (kind, category,
//! type, action, outcome), `process.*` with `process.parent.*`, `user.id`, `host.name`,
//! `file.path`, `source.*` / `destination.*` / `network.transport`, and `rule.*` for Sigma
//! alerts. Fields ECS has no name for stay under `vigil.*`.

use serde_json::{json, Map, Value};

fn process(p: &Value) -> Value {
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
    json!({
        "pid": p["pid"],
        "entity_id": p["exec_id"],
        "executable": binary,
        "name": binary.rsplit('/').next().unwrap_or(binary),
        "args": args,
        "command_line": command_line,
        "working_directory": p["cwd"],
        "start": p["start_time"],
    })
}

/// The ECS document of a vigil event (as its JSON).
pub fn to_ecs(event: &Value) -> Value {
    let (kind, body) = event
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.starts_with("process_")))
        .map(|(k, v)| (k.as_str(), v))
        .unwrap_or(("unknown", &Value::Null));
    let mut doc = Map::new();
    doc.insert("@timestamp".into(), event["time"].clone());
    doc.insert("host".into(), json!({ "name": event["node_name"] }));
    let mut proc = process(&body["process"]);
    if body["parent"].is_object() {
        proc["parent"] = process(&body["parent"]);
    }
    let mut ev =
        json!({ "kind": "event", "action": kind, "module": "vigil", "dataset": "vigil.events" });
    match kind {
        "process_exec" => {
            ev["category"] = json!(["process"]);
            ev["type"] = json!(["start"]);
        }
        "process_exit" => {
            ev["category"] = json!(["process"]);
            ev["type"] = json!(["end"]);
            proc["exit_code"] = body["status"].clone();
        }
        "process_kprobe" | "process_lsm" => {
            let args = body["args"].as_array().cloned().unwrap_or_default();
            ev["action"] = body["function_name"].clone();
            let outcome = body["outcome"].as_str().unwrap_or("");
            ev["outcome"] = json!(match outcome {
                "denied" | "killed" => "failure",
                "posted" => "success",
                _ => "unknown",
            });
            ev["category"] = json!(["process"]);
            for a in &args {
                if let Some(path) = a["file_arg"]["path"]
                    .as_str()
                    .or(a["path_arg"]["path"].as_str())
                {
                    doc.insert("file".into(), json!({ "path": path }));
                    ev["category"] = json!(["file"]);
                }
                if a["sock_arg"].is_object() {
                    let s = &a["sock_arg"];
                    doc.insert(
                        "source".into(),
                        json!({ "ip": s["saddr"], "port": s["sport"] }),
                    );
                    doc.insert(
                        "destination".into(),
                        json!({ "ip": s["daddr"], "port": s["dport"] }),
                    );
                    let transport = s["protocol"]
                        .as_str()
                        .unwrap_or("")
                        .trim_start_matches("IPPROTO_")
                        .to_lowercase();
                    doc.insert("network".into(), json!({ "transport": transport }));
                    ev["category"] = json!(["network"]);
                }
            }
            doc.insert(
                "vigil".into(),
                json!({ "policy_name": body["policy_name"], "action": body["action"], "outcome": body["outcome"], "args": args }),
            );
        }
        "process_alert" => {
            ev["kind"] = json!("alert");
            ev["category"] = json!(["intrusion_detection"]);
            ev["severity_name"] = body["level"].clone();
            doc.insert(
                "rule".into(),
                json!({ "id": body["rule_id"], "name": body["title"], "ruleset": "sigma", "reference": body["rule_file"], "category": body["category"] }),
            );
            doc.insert("tags".into(), body["tags"].clone());
        }
        _ => {}
    }
    doc.insert(
        "user".into(),
        json!({ "id": body["process"]["uid"].to_string() }),
    );
    doc.insert("process".into(), proc);
    doc.insert("event".into(), ev);
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_and_alert_events_map_to_ecs() {
        let exec = json!({"process_exec": {"process": {"pid": 7, "exec_id": "aWQ=", "binary": "/usr/bin/curl", "arguments": "-s \"a b\"", "cwd": "/", "uid": 1000, "start_time": "t"}, "parent": {"pid": 1, "binary": "/bin/sh", "arguments": "", "exec_id": "cA=="}}, "node_name": "n1", "time": "2026-11-25T10:00:00Z"});
        let d = to_ecs(&exec);
        assert_eq!(d["@timestamp"], "2026-11-25T10:00:00Z");
        assert_eq!(d["event"]["category"], json!(["process"]));
        assert_eq!(d["process"]["args"], json!(["/usr/bin/curl", "-s", "a b"]));
        assert_eq!(d["process"]["parent"]["entity_id"], "cA==");
        assert_eq!(d["user"]["id"], "1000");
        assert_eq!(d["host"]["name"], "n1");
        let alert = json!({"process_alert": {"process": {"pid": 7, "binary": "/x"}, "rule_id": "r1", "title": "T", "level": "high", "tags": ["attack.t1"], "rule_file": "f.yml", "category": "process_creation", "event": exec}, "node_name": "n1", "time": "t"});
        let d = to_ecs(&alert);
        assert_eq!(d["event"]["kind"], "alert");
        assert_eq!(d["rule"]["id"], "r1");
        assert_eq!(d["rule"]["ruleset"], "sigma");
    }
}
