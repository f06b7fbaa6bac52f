use super::*;
use crate::query::parse_dst;

fn filters(q: Query) -> Vec<Value> {
    let body = search_body(&q).unwrap();
    body["query"]["bool"]["filter"]
        .as_array()
        .unwrap_or_else(|| panic!("no filter: {body}"))
        .clone()
}

fn only(q: Query) -> Value {
    let f = filters(q);
    assert_eq!(f.len(), 1, "{f:#?}");
    f[0].clone()
}

fn regexp(field: &'static str, r: &str) -> Result<String, QueryError> {
    unanchored(field, r)
}

#[test]
fn no_criterion_matches_all_newest_first_and_the_limit_is_the_size() {
    let body = search_body(&Query::default()).unwrap();
    assert_eq!(
        body,
        json!({"query": {"match_all": {}}, "size": 1000, "sort": [{"@timestamp": {"order": "desc"}}]})
    );
    let q = Query {
        limit: Some(5),
        ..Default::default()
    };
    assert_eq!(search_body(&q).unwrap()["size"], 5);
    assert_eq!(count_body(&q).unwrap(), json!({"query": {"match_all": {}}}));
}

#[test]
fn more_hits_than_elasticsearch_returns_are_refused_by_the_limit() {
    let q = Query {
        limit: Some(MAX_RESULT_WINDOW + 1),
        ..Default::default()
    };
    let e = search_body(&q).unwrap_err();
    assert_eq!(e.field, "limit");
    assert!(e.reason.contains("--count"), "{e}");
    assert!(count_body(&q).is_ok(), "a count has no size");
}

#[test]
fn the_time_range_keeps_its_nanoseconds_from_inclusive_to_exclusive() {
    let q = Query {
        from_ns: Some(1_795_600_800_123_456_789),
        to_ns: Some(1_795_600_801_000_000_001),
        ..Default::default()
    };
    assert_eq!(
        only(q),
        json!({"range": {"@timestamp": {
            "gte": "2026-11-25T10:00:00.123456789Z",
            "lt": "2026-11-25T10:00:01.000000001Z",
            "format": "strict_date_optional_time_nanos"
        }}})
    );
    let q = Query {
        to_ns: Some(0),
        ..Default::default()
    };
    assert_eq!(
        only(q)["range"]["@timestamp"],
        json!({"lt": "1970-01-01T00:00:00.000000000Z", "format": "strict_date_optional_time_nanos"})
    );
}

#[test]
fn event_types_are_told_apart_by_the_ecs_categorization() {
    let q = |kinds: &[&str]| Query {
        kinds: kinds.iter().map(|k| k.to_string()).collect(),
        ..Default::default()
    };
    assert_eq!(
        only(q(&["process_exec"])),
        json!({"bool": {"filter": [
            {"term": {"event.kind": "event"}},
            {"term": {"event.action": "exec"}},
            {"term": {"event.type": "start"}}
        ]}})
    );
    assert_eq!(
        only(q(&["process_alert"])),
        json!({"term": {"event.kind": "alert"}})
    );
    assert_eq!(
        only(q(&["process_exit", "process_kprobe", "process_lsm"])),
        json!({"bool": {"should": [
            {"bool": {"filter": [
                {"term": {"event.kind": "event"}},
                {"term": {"event.action": "end"}},
                {"term": {"event.type": "end"}}
            ]}},
            {"bool": {"filter": [
                {"term": {"event.kind": "event"}},
                {"exists": {"field": "vigil.policy"}}
            ], "must_not": [{"exists": {"field": "vigil.policy.symbol"}}]}}
        ], "minimum_should_match": 1}})
    );
    // A uprobe's event names its symbol.
    assert_eq!(
        only(q(&["process_uprobe"])),
        json!({"bool": {"filter": [
            {"term": {"event.kind": "event"}},
            {"exists": {"field": "vigil.policy.symbol"}}
        ]}})
    );
    for alone in ["process_kprobe", "process_lsm"] {
        let e = search_body(&q(&[alone])).unwrap_err();
        assert_eq!(e.field, "type");
        assert!(e
            .reason
            .contains("--type process_kprobe --type process_lsm"));
    }
}

#[test]
fn a_binary_is_a_path_or_a_name() {
    let q = |b: &str| Query {
        binary: Some(b.into()),
        ..Default::default()
    };
    assert_eq!(
        only(q("/usr/bin/curl")),
        json!({"term": {"process.executable": "/usr/bin/curl"}})
    );
    assert_eq!(only(q("curl")), json!({"term": {"process.name": "curl"}}));
}

#[test]
fn arguments_are_what_follows_the_binary_in_the_command_line() {
    let q = |m: TextMatch| Query {
        args: Some(m),
        ..Default::default()
    };
    let value = |m: TextMatch| {
        let c = only(q(m));
        c["regexp"]["process.command_line"]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("{c}"))
            .to_string()
    };
    assert_eq!(
        value(TextMatch::Exact("-s a.b@c".into())),
        "[^ ]* \\-s a\\.b\\@c"
    );
    assert_eq!(
        value(TextMatch::Prefix("-c \"x\"".into())),
        "[^ ]* \\-c \\\"x\\\".*"
    );
    assert_eq!(
        value(TextMatch::Substring("10.0.0.1 <&~#>".into())),
        "[^ ]* .*10\\.0\\.0\\.1 \\<\\&\\~\\#\\>.*"
    );
    assert_eq!(
        value(TextMatch::Regex("^-c .*curl$".into())),
        "[^ ]* (\\-c [^\n]*curl)"
    );
}

#[test]
fn a_path_is_the_first_path_argument_also_of_a_rename() {
    let q = |m: TextMatch| Query {
        path: Some(m),
        ..Default::default()
    };
    let f = filters(q(TextMatch::Exact("/etc/shadow".into())));
    assert_eq!(
        f,
        vec![
            json!({"term": {"event.kind": "event"}}),
            json!({"bool": {"should": [
                {"term": {"vigil.file.original_path": "/etc/shadow"}},
                {"bool": {
                    "filter": [{"term": {"file.path": "/etc/shadow"}}],
                    "must_not": [{"exists": {"field": "vigil.file.original_path"}}]
                }}
            ], "minimum_should_match": 1}}),
        ]
    );
    let on_path = |m: TextMatch| filters(q(m))[1]["bool"]["should"][1]["bool"]["filter"][0].clone();
    assert_eq!(
        on_path(TextMatch::Prefix("/etc/".into())),
        json!({"prefix": {"file.path": {"value": "/etc/"}}})
    );
    assert_eq!(
        on_path(TextMatch::Substring("a*b?c\\d".into())),
        json!({"wildcard": {"file.path": {"value": "*a\\*b\\?c\\\\d*"}}})
    );
    assert_eq!(
        on_path(TextMatch::Regex("shadow|passwd".into())),
        json!({"regexp": {"file.path": {"value": ".*(shadow|passwd).*"}}})
    );
}

#[test]
fn a_destination_is_the_sockets_peer_whichever_way_it_was_opened() {
    let q = Query {
        dst: Some(parse_dst("10.200.0.0/16").unwrap()),
        dport: Some(8080),
        ..Default::default()
    };
    assert_eq!(
        filters(q),
        vec![
            json!({"term": {"event.kind": "event"}}),
            json!({"bool": {"should": [
                {"bool": {
                    "filter": [
                        {"term": {"destination.ip": "10.200.0.0/16"}},
                        {"term": {"destination.port": 8080}}
                    ],
                    "must_not": [{"term": {"network.direction": "ingress"}}]
                }},
                {"bool": {"filter": [
                    {"term": {"source.ip": "10.200.0.0/16"}},
                    {"term": {"source.port": 8080}},
                    {"term": {"network.direction": "ingress"}}
                ]}}
            ], "minimum_should_match": 1}}),
        ]
    );
    let q = Query {
        dst: Some(parse_dst("fd00::1").unwrap()),
        ..Default::default()
    };
    assert_eq!(
        filters(q)[1]["bool"]["should"][0]["bool"]["filter"],
        json!([{"term": {"destination.ip": "fd00::1/128"}}])
    );
}

#[test]
fn a_dns_name_ignores_case_and_the_trailing_dot() {
    let q = Query {
        dns: Some("Example.TEST.".into()),
        ..Default::default()
    };
    assert_eq!(
        filters(q),
        vec![
            json!({"term": {"event.kind": "event"}}),
            json!({"term": {"dns.question.name": {"value": "example.test", "case_insensitive": true}}}),
        ]
    );
}

#[test]
fn pod_namespace_and_exec_id_are_terms_on_the_process() {
    let q = Query {
        pod: Some("web-0".into()),
        namespace: Some("shop".into()),
        exec_id: Some("id-7".into()),
        ..Default::default()
    };
    assert_eq!(
        filters(q),
        vec![
            json!({"term": {"orchestrator.resource.type": "pod"}}),
            json!({"term": {"orchestrator.resource.name": "web-0"}}),
            json!({"term": {"orchestrator.namespace": "shop"}}),
            json!({"term": {"process.entity_id": "id-7"}}),
        ]
    );
}

#[test]
fn a_subtree_is_the_node_stores_alone() {
    let q = Query {
        subtree: Some("id-7".into()),
        ..Default::default()
    };
    let e = search_body(&q).unwrap_err();
    assert_eq!(e.field, "subtree");
    assert!(e.reason.contains("vigil tree"), "{e}");
    assert_eq!(count_body(&q).unwrap_err().field, "subtree");
}

#[test]
fn policy_rule_and_level_are_the_policy_events_and_the_alerts() {
    let q = Query {
        policy: Some("credential-files".into()),
        ..Default::default()
    };
    assert_eq!(
        filters(q),
        vec![
            json!({"term": {"event.kind": "event"}}),
            json!({"term": {"vigil.policy.policy_name": "credential-files"}}),
        ]
    );
    let q = Query {
        rule: Some("Shadow read".into()),
        level: Some("high".into()),
        ..Default::default()
    };
    assert_eq!(
        filters(q),
        vec![
            json!({"bool": {"should": [
                {"term": {"rule.id": "Shadow read"}},
                {"term": {"rule.name": "Shadow read"}}
            ], "minimum_should_match": 1}}),
            json!({"range": {"event.severity": {"gte": 73}}}),
        ]
    );
    let ranks: Vec<Option<u64>> = crate::query::LEVELS.iter().map(|l| severity(l)).collect();
    assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{ranks:?}");
    assert_eq!(severity("severe"), None);
}

#[test]
fn a_query_the_store_refuses_is_refused_here_too() {
    let q = Query {
        args: Some(TextMatch::Regex("(".into())),
        ..Default::default()
    };
    assert_eq!(search_body(&q).unwrap_err().field, "args");
}

#[test]
fn regular_expressions_become_lucenes_over_the_whole_value() {
    for (rust, lucene) in [
        ("curl", ".*(curl).*"),
        ("^/usr/", "(\\/usr\\/).*"),
        ("\\.sh$", ".*(\\.sh)"),
        ("^$", "(())"),
        ("a|b", ".*(a|b).*"),
        ("(?:ab)+c{2,}d{3}e{1,4}?", ".*((ab)+c{2,}d{3}e{1,4}).*"),
        ("(?P<n>x)(?<m>y)", ".*((x)(y)).*"),
        ("[^a-z\\]-]", ".*([^a-z\\]\\-]).*"),
        ("[]x]", ".*([\\]x]).*"),
        ("a.b", ".*(a[^\n]b).*"),
        ("\\t\\x41\\u{263A}", ".*(\tA\u{263a}).*"),
        ("x*?", ".*(x*).*"),
        ("a**", ".*((a*)*).*"),
        ("ab*", ".*(ab*).*"),
        ("x|", ".*(x|()).*"),
        ("[a-]@\"#", ".*([a\\-]\\@\\\"\\#).*"),
    ] {
        assert_eq!(regexp("path", rust).as_deref(), Ok(lucene), "{rust}");
    }
}

#[test]
fn constructs_lucene_lacks_are_refused_with_what_to_write() {
    for (rust, says) in [
        ("\\d+", "[0-9]"),
        ("\\w", "[A-Za-z0-9_]"),
        ("\\s", "[ \\t\\n]"),
        ("\\S", "Unicode class"),
        ("\\bcurl\\b", "assertion"),
        ("\\Acurl", "assertion"),
        ("a^b", "no anchors"),
        ("(^a)", "no anchors"),
        ("^a|^b", "two searches"),
        ("x$y", "no anchors"),
        ("(?i)curl", "[Cc]url"),
        ("(?s:.)", "flags"),
        ("\\p{Greek}", "Unicode property"),
        ("\\pL", "Unicode property"),
        ("[[:alpha:]]", "flat classes"),
        ("[a-z&&[^x]]", "class operations"),
        ("[a--b]", "class operations"),
    ] {
        let e = regexp("args", rust).unwrap_err();
        assert_eq!(e.field, "args");
        assert!(e.reason.contains(says), "{rust}: {e}");
    }
    let q = Query {
        path: Some(TextMatch::Regex("\\d".into())),
        ..Default::default()
    };
    assert_eq!(search_body(&q).unwrap_err().field, "path");
}

#[test]
fn the_translation_means_what_rust_means_on_sample_values() {
    // Lucene's reading, by a regular expression over the same language: the translation's
    // escapes and classes spelled back in Rust's syntax.
    fn back(lucene: &str) -> String {
        let mut out = String::from("^(?s:");
        let mut chars = lucene.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let n = chars.next().unwrap();
                    out.push_str(&regex::escape(&n.to_string()));
                }
                '.' => out.push_str("(?s:.)"),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push_str(")$");
        out
    }
    let values = [
        "curl -s http://10.0.0.1/",
        "/usr/bin/x\ny",
        "ab\nc",
        "",
        "a.sh",
        "b]-",
        "@\"#",
    ];
    for rust in [
        "curl", "^/usr/", "\\.sh$", "b.c", "a.*c", "[^a-z]", "[]\\-]", "^$", "@\"#", "x|",
    ] {
        let lucene = regexp("args", rust).unwrap();
        let r = regex::Regex::new(rust).unwrap();
        let l = regex::Regex::new(&back(&lucene)).unwrap();
        for v in values {
            assert_eq!(r.is_match(v), l.is_match(v), "{rust} as {lucene} on {v:?}");
        }
    }
}
