//! `vigil search` against Elasticsearch: the store's [`Query`] translated to the query DSL
//! (`vigil_store::elastic`) finds in vigil's ECS documents the events the node's store finds.
//!
//! Without an agent: real vigil events (Tetragon's JSON: execs, a read of `/etc/shadow`, a
//! connection, a DNS lookup, an accepted connection, a rename, two Sigma alerts and an exit, of
//! three processes, one in a pod) go through the real Elasticsearch sink to the exporters' test
//! server, which maps them with the template the sink installs, checks every query as a strict
//! cluster does and evaluates it with Elasticsearch's semantics. Each criterion is then asked
//! over HTTP and must find exactly the events the store's columns hold for it
//! (`store/src/row.rs`): the arguments without the binary, the first path argument, the
//! socket's peer, policy facts of policy events only. No root needed.

#[path = "../../exporters/tests/support/elastic.rs"]
#[allow(dead_code)]
mod elastic;
#[path = "../../exporters/tests/support/http.rs"]
#[allow(dead_code)]
mod http;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
};

use serde_json::{json, Value};
use vigil_events::Event;
use vigil_exporters::{
    record::Record,
    sinks::{
        ecs::{to_ecs, EcsContext, HostInfo},
        elastic::{ElasticConfig, ElasticSink},
        Delivery,
    },
};
use vigil_store::{
    elastic::{count_body, search_body, severity},
    query::{parse_dst, Query, TextMatch, LEVELS},
};
use vigil_tests::TempDir;

const KEY: &str = "k3y";
const STREAM: &str = "logs-vigil.events-default";

fn process(exec_id: &str, pid: u32, binary: &str, arguments: &str, pod: Option<Value>) -> Value {
    let mut p = json!({
        "exec_id": exec_id, "pid": pid, "tid": pid, "uid": 1000, "auid": 1000, "cwd": "/tmp",
        "binary": binary, "arguments": arguments, "flags": "execve",
        "start_time": "2026-11-25T09:59:00.000000001Z", "parent_exec_id": "sh-id",
        "process_credentials": {"uid": 1000, "gid": 1000, "euid": 1000, "egid": 1000, "suid": 1000, "sgid": 1000}
    });
    if let Some(pod) = pod {
        p["pod"] = pod;
    }
    p
}

fn curl() -> Value {
    process(
        "curl-id",
        100,
        "/usr/bin/curl",
        "-s -u admin@corp http://10.200.0.2:8080/#top",
        Some(json!({"namespace": "shop", "name": "web-0", "uid": "4a1c",
            "container": {"id": "containerd://9f2e", "name": "web"}, "workload_kind": "Deployment"})),
    )
}

fn cat() -> Value {
    process("cat-id", 200, "/bin/cat", "/etc/shadow", None)
}

fn nginx() -> Value {
    process(
        "nginx-id",
        300,
        "/usr/sbin/nginx",
        "-g daemon off; -c /etc/nginx/nginx.conf",
        None,
    )
}

fn shell() -> Value {
    process("sh-id", 1, "/bin/sh", "-c x", None)
}

fn at(second: u32) -> String {
    format!("2026-11-25T10:00:{second:02}.000000000Z")
}

fn event(kind: &str, second: u32, body: Value) -> Value {
    json!({ kind: body, "node_name": "node-a", "time": at(second) })
}

fn policy(
    kind: &str,
    second: u32,
    process: Value,
    function: &str,
    args: Value,
    ret: Option<Value>,
    name: &str,
) -> Value {
    let mut body = json!({"process": process, "parent": shell(), "function_name": function,
        "args": args, "action": "KPROBE_ACTION_POST", "policy_name": name, "outcome": "posted"});
    if let Some(r) = ret {
        body["return"] = r;
    }
    event(kind, second, body)
}

fn alert(second: u32, process: Value, id: &str, title: &str, level: &str, about: Value) -> Value {
    event(
        "process_alert",
        second,
        json!({"process": process, "parent": shell(), "rule_id": id, "title": title,
            "level": level, "tags": ["attack.credential_access", "attack.t1003.008"],
            "rule_file": "rules/custom.yml", "category": "file_event", "event": about}),
    )
}

/// The events, each with the label the assertions name it by.
fn events() -> Vec<(&'static str, Value)> {
    let read = policy(
        "process_kprobe",
        3,
        cat(),
        "security_file_open",
        json!([{"file_arg": {"path": "/etc/shadow", "permission": "-rw-r-----"}}, {"int_arg": 0}]),
        None,
        "credential-files",
    );
    let connect = policy(
        "process_kprobe",
        4,
        curl(),
        "tcp_connect",
        json!([{"sock_arg": {"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP",
            "saddr": "10.0.0.5", "daddr": "10.200.0.2", "sport": 40000, "dport": 8080}}]),
        None,
        "egress",
    );
    vec![
        (
            "exec curl",
            event(
                "process_exec",
                1,
                json!({"process": curl(), "parent": shell()}),
            ),
        ),
        (
            "exec cat",
            event(
                "process_exec",
                2,
                json!({"process": cat(), "parent": shell()}),
            ),
        ),
        ("read shadow", read.clone()),
        ("connect", connect.clone()),
        (
            "dns",
            policy(
                "process_kprobe",
                5,
                curl(),
                "udp_sendmsg",
                json!([{"sock_arg": {"family": "AF_INET", "type": "SOCK_DGRAM", "protocol": "IPPROTO_UDP",
                    "saddr": "10.0.0.5", "daddr": "10.96.0.10", "sport": 5353, "dport": 53}},
                    {"dns_arg": {"id": 4660, "response": false, "query": "Example.TEST", "type": "A"}}]),
                None,
                "dns",
            ),
        ),
        (
            // The peer connected in: the store's destination is ECS's source.
            "accept",
            policy(
                "process_lsm",
                6,
                nginx(),
                "inet_csk_accept",
                json!([]),
                Some(
                    json!({"sock_arg": {"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP",
                    "saddr": "10.0.0.5", "daddr": "10.200.0.9", "sport": 8443, "dport": 51000}}),
                ),
                "ingress",
            ),
        ),
        (
            "rename",
            policy(
                "process_kprobe",
                7,
                cat(),
                "__x64_sys_renameat2",
                json!([{"path_arg": {"path": "/tmp/staged"}}, {"path_arg": {"path": "/etc/cron.d/job"}}]),
                None,
                "persistence",
            ),
        ),
        (
            "alert high",
            alert(
                8,
                cat(),
                "5b4d1a0e-shadow",
                "Read of the shadow file",
                "high",
                read,
            ),
        ),
        (
            "alert low",
            alert(
                9,
                curl(),
                "curl-outbound",
                "Curl to an address",
                "low",
                connect,
            ),
        ),
        (
            "exit cat",
            event(
                "process_exit",
                10,
                json!({"process": cat(), "parent": shell()}),
            ),
        ),
    ]
}

/// The test server holding every event's document, and the events' labels by time.
struct Fixture {
    server: elastic::ElasticServer,
    labels: Vec<(String, &'static str)>,
}

fn fixture() -> Fixture {
    let server = elastic::ElasticServer::start(KEY);
    let dir = TempDir::new("elastic-search");
    let key = dir.path().join("key");
    std::fs::write(&key, KEY).unwrap();
    let cfg: ElasticConfig = serde_yaml::from_str(&format!(
        "endpoint: {}\napi_key: !file {}\nallow_plaintext: true\n",
        server.endpoint(),
        key.display()
    ))
    .unwrap();
    let mut sink = ElasticSink::new(cfg).unwrap();
    let mut labels = Vec::new();
    let mut records = Vec::new();
    for (label, json) in events() {
        let e: Event =
            serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{label}: {e}"));
        labels.push((e.time.clone(), label));
        records.push(Record::encode(&e));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match runtime.block_on(sink.deliver(&records)) {
        Delivery::Delivered => {}
        other => panic!("{other:?}: {:#?}", server.violations()),
    }
    assert_eq!(server.docs().len(), records.len());
    Fixture { server, labels }
}

/// `POST path` with `body` to the server: the status and the JSON answered.
fn post(server: &elastic::ElasticServer, path: &str, body: &Value) -> (u16, Value) {
    let mut s = TcpStream::connect(server.endpoint().trim_start_matches("http://")).unwrap();
    let body = body.to_string();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ApiKey {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // The server keeps the connection open: read the answer by its length.
    let mut r = BufReader::new(s);
    let mut status_line = String::new();
    r.read_line(&mut status_line).unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap();
            }
        }
    }
    let mut out = vec![0; len];
    r.read_exact(&mut out).unwrap();
    (status, serde_json::from_slice(&out).unwrap())
}

impl Fixture {
    fn label(&self, hit: &Value) -> &'static str {
        let t = hit["_source"]["@timestamp"].as_str().unwrap();
        self.labels
            .iter()
            .find(|(time, _)| time == t)
            .map(|(_, l)| *l)
            .unwrap()
    }

    /// The events `q` finds, oldest first (as the store returns them), checked against the
    /// count and the bodies the server received.
    fn search_at(&self, target: &str, q: &Query) -> Vec<&'static str> {
        let body = search_body(q).unwrap_or_else(|e| panic!("{q:?}: {e}"));
        let path = format!("/{target}/_search");
        let (status, answer) = post(&self.server, &path, &body);
        assert_eq!(status, 200, "{body}: {answer}");
        let hits = answer["hits"]["hits"].as_array().unwrap();
        let mut found: Vec<&'static str> = hits.iter().map(|h| self.label(h)).collect();
        // Newest first from the cluster; the caller turns them round.
        found.reverse();

        let count = count_body(q).unwrap();
        let count_path = format!("/{target}/_count");
        let (status, counted) = post(&self.server, &count_path, &count);
        assert_eq!(status, 200, "{count}: {counted}");
        assert_eq!(counted["count"], answer["hits"]["total"]["value"], "{body}");

        let searches = self.server.searches();
        assert_eq!(
            searches[searches.len() - 2..],
            [(path, body), (count_path, count)],
            "the server received the DSL as translated"
        );
        found
    }

    fn search(&self, q: &Query) -> Vec<&'static str> {
        self.search_at(STREAM, q)
    }
}

fn q() -> Query {
    Query::default()
}

const CAT: [&str; 5] = [
    "exec cat",
    "read shadow",
    "rename",
    "alert high",
    "exit cat",
];
const CURL: [&str; 4] = ["exec curl", "connect", "dns", "alert low"];

#[test]
fn a_search_without_criteria_finds_every_event_and_counts_them() {
    let f = fixture();
    let all: Vec<&str> = f.labels.iter().map(|(_, l)| *l).collect();
    assert_eq!(f.search(&q()), all);
    assert_eq!(f.server.searches()[0].1["query"], json!({"match_all": {}}));
}

#[test]
fn a_search_returns_the_newest_events_up_to_its_limit_and_a_pattern_finds_the_data_stream() {
    let f = fixture();
    let newest = Query {
        limit: Some(3),
        ..q()
    };
    assert_eq!(f.search(&newest), ["alert high", "alert low", "exit cat"]);
    assert_eq!(
        f.search_at("logs-vigil.events-*", &newest),
        ["alert high", "alert low", "exit cat"]
    );
    assert_eq!(f.search_at("vigil-*", &q()), Vec::<&str>::new());
}

#[test]
fn a_time_range_finds_the_events_from_its_start_up_to_but_not_including_its_end() {
    let f = fixture();
    let ns = |second: u32| vigil_events::time::parse_rfc3339_ns(&at(second)).unwrap();
    let range = Query {
        from_ns: Some(ns(3)),
        to_ns: Some(ns(6)),
        ..q()
    };
    assert_eq!(f.search(&range), ["read shadow", "connect", "dns"]);
    let since = Query {
        from_ns: Some(ns(9)),
        ..q()
    };
    assert_eq!(f.search(&since), ["alert low", "exit cat"]);
}

#[test]
fn a_type_search_tells_execs_exits_policy_events_and_alerts_apart() {
    let f = fixture();
    let kinds = |k: &[&str]| Query {
        kinds: k.iter().map(|k| k.to_string()).collect(),
        ..q()
    };
    assert_eq!(
        f.search(&kinds(&["process_exec"])),
        ["exec curl", "exec cat"]
    );
    assert_eq!(f.search(&kinds(&["process_exit"])), ["exit cat"]);
    assert_eq!(
        f.search(&kinds(&["process_alert"])),
        ["alert high", "alert low"]
    );
    assert_eq!(
        f.search(&kinds(&["process_kprobe", "process_lsm"])),
        ["read shadow", "connect", "dns", "accept", "rename"]
    );
    assert_eq!(
        f.search(&kinds(&["process_exec", "process_exit", "process_alert"])),
        [
            "exec curl",
            "exec cat",
            "alert high",
            "alert low",
            "exit cat"
        ]
    );
    // The documents do not say which of the two a policy event is: refused, not guessed.
    let e = search_body(&kinds(&["process_kprobe"])).unwrap_err();
    assert_eq!(e.field, "type");
}

#[test]
fn a_binary_search_by_path_or_by_name_finds_that_programs_events() {
    let f = fixture();
    let binary = |b: &str| Query {
        binary: Some(b.into()),
        ..q()
    };
    assert_eq!(f.search(&binary("/bin/cat")), CAT);
    assert_eq!(f.search(&binary("curl")), CURL);
    assert_eq!(f.search(&binary("/usr/bin/cat")), Vec::<&str>::new());
}

#[test]
fn an_arguments_search_matches_the_arguments_without_the_binary() {
    let f = fixture();
    let args = |m: TextMatch| Query {
        args: Some(m),
        ..q()
    };
    assert_eq!(
        f.search(&args(TextMatch::Exact(
            "-s -u admin@corp http://10.200.0.2:8080/#top".into()
        ))),
        CURL
    );
    assert_eq!(f.search(&args(TextMatch::Exact("/etc/shadow".into()))), CAT);
    assert_eq!(
        f.search(&args(TextMatch::Exact("-s".into()))),
        Vec::<&str>::new()
    );
    assert_eq!(f.search(&args(TextMatch::Prefix("-s -u".into()))), CURL);
    // The binaries' paths hold `bin` and `cat`; the store's arguments do not.
    assert_eq!(
        f.search(&args(TextMatch::Substring("bin".into()))),
        Vec::<&str>::new()
    );
    assert_eq!(
        f.search(&args(TextMatch::Prefix("/bin".into()))),
        Vec::<&str>::new()
    );
    assert_eq!(
        f.search(&args(TextMatch::Substring("admin@corp".into()))),
        CURL
    );
    assert_eq!(
        f.search(&args(TextMatch::Substring("daemon off;".into()))),
        ["accept"]
    );
    assert_eq!(
        f.search(&args(TextMatch::Regex(
            "admin@[a-z]+ http://10\\.200\\.".into()
        ))),
        CURL
    );
    assert_eq!(f.search(&args(TextMatch::Regex("shadow$".into()))), CAT);
    assert_eq!(
        f.search(&args(TextMatch::Regex("^/etc".into()))),
        CAT,
        "anchored at the arguments' start, not the command line's"
    );
    assert_eq!(
        f.search(&args(TextMatch::Regex("^cat".into()))),
        Vec::<&str>::new()
    );
}

#[test]
fn a_path_search_finds_the_read_of_the_credential_file_in_elasticsearch() {
    let f = fixture();
    let path = |m: TextMatch| Query {
        path: Some(m),
        ..q()
    };
    // Not the alert about the read (the store keeps paths of policy events only).
    assert_eq!(
        f.search(&path(TextMatch::Exact("/etc/shadow".into()))),
        ["read shadow"]
    );
    assert_eq!(
        f.search(&path(TextMatch::Substring("shad".into()))),
        ["read shadow"]
    );
    assert_eq!(
        f.search(&path(TextMatch::Regex("sha[a-z]ow|passwd".into()))),
        ["read shadow"]
    );
    // A rename is found by its first path argument, the old name, as the store keeps it.
    assert_eq!(
        f.search(&path(TextMatch::Prefix("/tmp/".into()))),
        ["rename"]
    );
    assert_eq!(
        f.search(&path(TextMatch::Prefix("/etc/".into()))),
        ["read shadow"]
    );
    assert_eq!(
        f.search(&path(TextMatch::Exact("/etc/cron.d/job".into()))),
        Vec::<&str>::new()
    );
}

#[test]
fn a_destination_search_finds_the_connection_by_address_range_and_port() {
    let f = fixture();
    let dst = |d: Option<&str>, port: Option<u16>| Query {
        dst: d.map(|d| parse_dst(d).unwrap()),
        dport: port,
        ..q()
    };
    assert_eq!(f.search(&dst(Some("10.200.0.2"), None)), ["connect"]);
    assert_eq!(f.search(&dst(None, Some(8080))), ["connect"]);
    assert_eq!(
        f.search(&dst(Some("10.200.0.0/16"), None)),
        ["connect", "accept"]
    );
    assert_eq!(f.search(&dst(Some("10.200.0.9"), Some(51000))), ["accept"]);
    assert_eq!(f.search(&dst(None, Some(53))), ["dns"]);
    // The node's own address is a source in every event, ECS's destination of the accept.
    assert_eq!(f.search(&dst(Some("10.0.0.5"), None)), Vec::<&str>::new());
    assert_eq!(
        f.search(&dst(Some("10.200.0.2"), Some(53))),
        Vec::<&str>::new()
    );
}

#[test]
fn a_dns_search_finds_the_lookup_whatever_the_case_of_the_name() {
    let f = fixture();
    let dns = |d: &str| Query {
        dns: Some(d.into()),
        ..q()
    };
    assert_eq!(f.search(&dns("example.test")), ["dns"]);
    assert_eq!(f.search(&dns("EXAMPLE.test.")), ["dns"]);
    assert_eq!(f.search(&dns("other.test")), Vec::<&str>::new());
}

#[test]
fn a_pod_and_namespace_search_finds_the_pods_processes_only() {
    let f = fixture();
    let pod = Query {
        pod: Some("web-0".into()),
        ..q()
    };
    assert_eq!(f.search(&pod), CURL);
    let ns = Query {
        namespace: Some("shop".into()),
        ..q()
    };
    assert_eq!(f.search(&ns), CURL);
    let other = Query {
        pod: Some("web-1".into()),
        namespace: Some("shop".into()),
        ..q()
    };
    assert_eq!(f.search(&other), Vec::<&str>::new());
}

#[test]
fn an_exec_id_search_finds_that_processes_events() {
    let f = fixture();
    let id = Query {
        exec_id: Some("cat-id".into()),
        ..q()
    };
    assert_eq!(f.search(&id), CAT);
    // A process's descendants are the node's store's to find.
    let subtree = Query {
        subtree: Some("sh-id".into()),
        ..q()
    };
    assert_eq!(search_body(&subtree).unwrap_err().field, "subtree");
}

#[test]
fn a_policy_search_finds_that_policys_events_but_not_alerts_about_them() {
    let f = fixture();
    let p = |name: &str| Query {
        policy: Some(name.into()),
        ..q()
    };
    assert_eq!(f.search(&p("credential-files")), ["read shadow"]);
    assert_eq!(f.search(&p("ingress")), ["accept"]);
    assert_eq!(f.search(&p("none")), Vec::<&str>::new());
}

#[test]
fn a_rule_search_finds_the_alert_by_its_id_or_its_title() {
    let f = fixture();
    let rule = |r: &str| Query {
        rule: Some(r.into()),
        ..q()
    };
    assert_eq!(f.search(&rule("5b4d1a0e-shadow")), ["alert high"]);
    assert_eq!(f.search(&rule("Curl to an address")), ["alert low"]);
    assert_eq!(f.search(&rule("Read of")), Vec::<&str>::new());
}

#[test]
fn a_level_search_finds_alerts_of_that_level_or_higher() {
    let f = fixture();
    let level = |l: &str| Query {
        level: Some(l.into()),
        ..q()
    };
    assert_eq!(f.search(&level("high")), ["alert high"]);
    assert_eq!(f.search(&level("low")), ["alert high", "alert low"]);
    assert_eq!(
        f.search(&level("informational")),
        ["alert high", "alert low"]
    );
    assert_eq!(f.search(&level("critical")), Vec::<&str>::new());
}

#[test]
fn criteria_together_find_what_each_allows() {
    let f = fixture();
    let both = Query {
        binary: Some("curl".into()),
        kinds: vec!["process_kprobe".into(), "process_lsm".into()],
        dport: Some(53),
        ..q()
    };
    assert_eq!(f.search(&both), ["dns"]);
}

#[test]
fn the_severities_the_search_asks_for_are_the_ones_the_exporter_writes() {
    let ctx = EcsContext::new(HostInfo::read(), "vigil.events", Some("default"));
    for level in LEVELS {
        let about = event("process_exec", 1, json!({"process": cat()}));
        let doc = to_ecs(&alert(2, cat(), "r", "R", level, about), &ctx);
        assert_eq!(
            doc["event"]["severity"].as_u64(),
            severity(level),
            "{level}"
        );
    }
}

#[test]
fn the_server_refuses_a_query_on_an_unmapped_field_and_a_wildcard_on_an_ip_field() {
    let f = fixture();
    let path = format!("/{STREAM}/_search");
    let refused = |body: Value, kind: &str, says: &str| {
        let (status, answer) = post(&f.server, &path, &body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["status"], 400);
        assert_eq!(answer["error"]["type"], kind, "{answer}");
        assert_eq!(answer["error"]["root_cause"][0]["type"], kind, "{answer}");
        let reason = answer["error"]["reason"].as_str().unwrap();
        assert!(reason.contains(says), "{reason}");
    };
    refused(
        json!({"query": {"term": {"process.nmae": "cat"}}}),
        "query_shard_exception",
        "[process.nmae]",
    );
    refused(
        json!({"query": {"wildcard": {"destination.ip": {"value": "10.200.*"}}}}),
        "query_shard_exception",
        "Can only use wildcard queries on keyword, text and wildcard fields - not on [destination.ip] which is of type [ip]",
    );
    refused(
        json!({"query": {"term": {"file.path": "10.0.0.0/8"}}}),
        "query_shard_exception",
        "only an ip field",
    );
    refused(
        json!({"query": {"range": {"@timestamp": {"gte": "yesterday"}}}}),
        "query_shard_exception",
        "failed to parse date field",
    );
    refused(
        json!({"query": {"match": {"process.name": "cat"}}}),
        "parsing_exception",
        "unknown query [match]",
    );
    refused(
        json!({"query": {"match_all": {}}, "aggs": {}}),
        "parsing_exception",
        "[aggs]",
    );
    refused(
        json!({"query": {"regexp": {"process.command_line": "a@b"}}}),
        "query_shard_exception",
        "escaped",
    );
    refused(
        json!({"query": {"match_all": {}}, "size": 10_001}),
        "illegal_argument_exception",
        "index.max_result_window",
    );
    let (status, answer) = post(&f.server, "/vigil-nothing/_search", &json!({}));
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["type"], "index_not_found_exception");
}
