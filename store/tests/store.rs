//! The store written by its real writer thread and read back by the real searcher, on a
//! SQLite database in a temporary directory.

use std::{sync::Arc, time::Duration};

use serde_json::{json, Value};
use vigil_events::Event;
use vigil_store::{
    query::{parse_dst, Query, TextMatch},
    EventStore, Searcher, StoreConfig,
};

/// An hour ago, to the second: inside the default retention.
fn t0() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (now - 3600) * 1_000_000_000
}

/// Two years before [`t0`]: past the default retention.
const OLD: u64 = 2 * 365 * 86_400 * 1_000_000_000;

thread_local! {
    static BASE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn time(offset_s: u64) -> String {
    let base = BASE.with(|b| b.get());
    let base = if base == 0 { t0() } else { base };
    vigil_events::time::rfc3339((base + offset_s * 1_000_000_000) as i128)
}

fn process(exec_id: &str, parent: &str, pid: u32, binary: &str, args: &str) -> Value {
    json!({"exec_id": exec_id, "parent_exec_id": parent, "pid": pid, "uid": 0, "binary": binary,
           "arguments": args, "start_time": time(0)})
}

fn event(v: Value) -> Arc<Event> {
    Arc::new(serde_json::from_value(v).expect("a valid event"))
}

/// A shell (`sh1`) whose child `curl` connects out and reads a file, and whose child `rm`
/// deletes a history; an unrelated `cat` reads the same file; an alert on the shell.
fn incident() -> Vec<Arc<Event>> {
    let init = process("init", "", 1, "/sbin/init", "");
    let sh = process("sh1", "init", 100, "/bin/sh", "-c 'curl; rm'");
    let curl = process(
        "curl1",
        "sh1",
        101,
        "/usr/bin/curl",
        "http://10.200.0.2:8080/x",
    );
    let rm = process("rm1", "sh1", 102, "/bin/rm", "/root/.bash_history");
    let cat = process("cat1", "init", 200, "/bin/cat", "/etc/shadow");
    vec![
        event(json!({"process_exec": {"process": sh, "parent": init}, "time": time(1)})),
        event(json!({"process_exec": {"process": curl, "parent": sh}, "time": time(2)})),
        event(
            json!({"process_kprobe": {"process": curl, "parent": sh, "function_name": "tcp_connect",
            "args": [{"sock_arg": {"family": "AF_INET", "daddr": "10.200.0.2", "dport": 8080, "saddr": "10.200.0.1", "sport": 40000}}],
            "action": "KPROBE_ACTION_POST", "outcome": "observed", "policy_name": "connects"}, "time": time(3)}),
        ),
        event(
            json!({"process_kprobe": {"process": curl, "parent": sh, "function_name": "security_file_open",
            "args": [{"file_arg": {"path": "/etc/shadow"}}], "action": "KPROBE_ACTION_POST", "outcome": "observed", "policy_name": "credentials"}, "time": time(4)}),
        ),
        event(
            json!({"process_kprobe": {"process": curl, "parent": sh, "function_name": "udp_sendmsg",
            "args": [{"dns_arg": {"id": 7, "query": "Evil.Example.", "type": "A"}}], "action": "KPROBE_ACTION_POST", "outcome": "observed", "policy_name": "dns"}, "time": time(5)}),
        ),
        event(json!({"process_exec": {"process": rm, "parent": sh}, "time": time(6)})),
        event(
            json!({"process_kprobe": {"process": rm, "parent": sh, "function_name": "security_path_unlink",
            "args": [{"path_arg": {"path": "/root/.bash_history"}}], "action": "KPROBE_ACTION_POST", "outcome": "observed", "policy_name": "history"}, "time": time(7)}),
        ),
        event(json!({"process_exec": {"process": cat, "parent": init}, "time": time(8)})),
        event(
            json!({"process_kprobe": {"process": cat, "parent": init, "function_name": "security_file_open",
            "args": [{"file_arg": {"path": "/etc/shadow"}}], "action": "KPROBE_ACTION_POST", "outcome": "observed", "policy_name": "credentials"}, "time": time(9)}),
        ),
        event(
            json!({"process_alert": {"process": sh, "rule_id": "r-1", "title": "Shell history deleted", "level": "high",
            "rule_file": "x.yml", "category": "file_event", "event": {"process_exec": {"process": sh}, "time": time(6)}}, "time": time(10)}),
        ),
    ]
}

fn store_with(events: &[Arc<Event>]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let mut store = EventStore::open(&store_dir, &StoreConfig::default()).unwrap();
    for e in events {
        store.offer(e);
    }
    let stats = store.close();
    assert_eq!(stats.committed, events.len() as u64, "{stats:?}");
    (dir, store_dir.join(vigil_store::DB_FILE))
}

fn kinds_and_pids(db: &std::path::Path, q: &Query) -> Vec<(String, u64)> {
    let mut s = Searcher::open(db).unwrap();
    let mut out = Vec::new();
    s.search(q, |e| {
        let v: Value = serde_json::from_str(&e.json).unwrap();
        let (kind, body) = v
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.starts_with("process_"))
            .unwrap();
        out.push((kind.clone(), body["process"]["pid"].as_u64().unwrap()));
        true
    })
    .unwrap();
    out
}

#[test]
fn each_criterion_finds_the_events_it_names_and_no_other() {
    let (_dir, db) = store_with(&incident());
    let q = |f: &dyn Fn(&mut Query)| {
        let mut q = Query::default();
        f(&mut q);
        q
    };
    let k = |s: &str, p: u64| (s.to_string(), p);
    assert_eq!(
        kinds_and_pids(
            &db,
            &q(&|q| q.path = Some(TextMatch::Exact("/etc/shadow".into())))
        ),
        vec![k("process_kprobe", 101), k("process_kprobe", 200)]
    );
    assert_eq!(
        kinds_and_pids(
            &db,
            &q(&|q| q.path = Some(TextMatch::Prefix("/root/".into())))
        ),
        vec![k("process_kprobe", 102)]
    );
    assert_eq!(
        kinds_and_pids(
            &db,
            &q(&|q| q.path = Some(TextMatch::Substring("bash_hist".into())))
        ),
        vec![k("process_kprobe", 102)]
    );
    assert_eq!(
        kinds_and_pids(
            &db,
            &q(&|q| q.path = Some(TextMatch::Regex("sha[d]ow$".into())))
        )
        .len(),
        2
    );
    assert_eq!(
        kinds_and_pids(
            &db,
            &q(&|q| q.dst = Some(parse_dst("10.200.0.2/32").unwrap()))
        ),
        vec![k("process_kprobe", 101)]
    );
    assert_eq!(
        kinds_and_pids(&db, &q(&|q| q.dst = Some(parse_dst("10.0.0.0/8").unwrap()))).len(),
        1
    );
    assert!(kinds_and_pids(
        &db,
        &q(&|q| q.dst = Some(parse_dst("10.200.0.3/32").unwrap()))
    )
    .is_empty());
    assert_eq!(kinds_and_pids(&db, &q(&|q| q.dport = Some(8080))).len(), 1);
    assert_eq!(
        kinds_and_pids(&db, &q(&|q| q.dns = Some("evil.example".into()))),
        vec![k("process_kprobe", 101)]
    );
    assert_eq!(
        kinds_and_pids(&db, &q(&|q| q.binary = Some("cat".into()))),
        vec![k("process_exec", 200), k("process_kprobe", 200)]
    );
    assert_eq!(
        kinds_and_pids(&db, &q(&|q| q.binary = Some("/usr/bin/curl".into()))).len(),
        4
    );
    assert_eq!(
        kinds_and_pids(
            &db,
            &q(&|q| q.args = Some(TextMatch::Substring("10.200.0.2".into())))
        )
        .len(),
        4
    );
    assert_eq!(
        kinds_and_pids(
            &db,
            &q(&|q| q.args = Some(TextMatch::Substring("-c".into())))
        )
        .len(),
        2,
        "a substring shorter than a trigram still matches"
    );
    assert_eq!(
        kinds_and_pids(&db, &q(&|q| q.kinds = vec!["process_exec".into()])).len(),
        4
    );
    assert_eq!(
        kinds_and_pids(&db, &q(&|q| q.policy = Some("credentials".into()))).len(),
        2
    );
    assert_eq!(
        kinds_and_pids(&db, &q(&|q| q.rule = Some("Shell history deleted".into()))).len(),
        1
    );
    assert_eq!(
        kinds_and_pids(&db, &q(&|q| q.level = Some("medium".into()))).len(),
        1
    );
    assert!(kinds_and_pids(&db, &q(&|q| q.level = Some("critical".into()))).is_empty());
    assert_eq!(
        kinds_and_pids(&db, &q(&|q| q.exec_id = Some("rm1".into()))).len(),
        2
    );
    assert_eq!(
        kinds_and_pids(&db, &q(&|q| q.subtree = Some("sh1".into()))).len(),
        8,
        "the shell's exec and alert, curl's four events, rm's two"
    );
    let window = q(&|q| {
        q.from_ns = Some(t0() + 3_000_000_000);
        q.to_ns = Some(t0() + 5_000_000_000);
    });
    assert_eq!(
        kinds_and_pids(&db, &window).len(),
        2,
        "from is inclusive, to exclusive"
    );
    let newest = q(&|q| q.limit = Some(2));
    let got = kinds_and_pids(&db, &newest);
    assert_eq!(
        got,
        vec![k("process_kprobe", 200), k("process_alert", 100)],
        "the newest, oldest first"
    );
    let mut s = Searcher::open(&db).unwrap();
    assert_eq!(s.count(&Query::default()).unwrap(), 10);
    assert_eq!(
        s.count(&q(
            &|q| q.path = Some(TextMatch::Exact("/etc/shadow".into()))
        ))
        .unwrap(),
        2
    );
}

#[test]
fn a_tree_holds_the_ancestors_the_process_and_its_descendants_with_their_events() {
    let (_dir, db) = store_with(&incident());
    let mut s = Searcher::open(&db).unwrap();
    let tree = s.tree("sh1", true).unwrap().unwrap();
    let shape: Vec<(String, i32, usize)> = tree
        .iter()
        .map(|n| (n.process.exec_id.clone(), n.depth, n.events.len()))
        .collect();
    assert_eq!(
        shape,
        vec![
            ("init".to_string(), -1, 0),
            ("sh1".to_string(), 0, 2),
            ("curl1".to_string(), 1, 4),
            ("rm1".to_string(), 1, 2),
        ]
    );
    assert!(s.tree("nobody", true).unwrap().is_none());
}

#[test]
fn events_are_compressed_with_a_dictionary_once_enough_were_seen_and_read_back_whole() {
    let events: Vec<Arc<Event>> = (0..5000u32)
        .map(|i| {
            let parent = process(&format!("p{}", i / 10), "init", 1000 + i / 10, "/bin/sh", "-c x");
            let p = process(&format!("c{i}"), &format!("p{}", i / 10), 5000 + i, &format!("/usr/bin/tool{}", i % 50), &format!("--run {i} --fast"));
            event(json!({"process_kprobe": {"process": p, "parent": parent, "function_name": "security_file_open",
                "args": [{"file_arg": {"path": format!("/var/lib/app/{}/data-{i}.db", i % 7)}}],
                "action": "KPROBE_ACTION_POST", "outcome": "observed", "policy_name": "files"}, "time": time(u64::from(i % 600))}))
        })
        .collect();
    // The dictionary is trained once 4,000 events were seen, when the writer is next idle:
    // the rest come after.
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let db = store_dir.join(vigil_store::DB_FILE);
    let mut store = EventStore::open(&store_dir, &StoreConfig::default()).unwrap();
    for e in &events[..4000] {
        store.offer(e);
    }
    let trained = (0..200).any(|_| {
        store.hand_off();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.query_row("SELECT count(*) FROM dicts", [], |r| r.get::<_, i64>(0))
            .is_ok_and(|n| n > 0)
    });
    assert!(trained, "no dictionary 10 s after 4,000 events");
    for e in &events[4000..] {
        store.offer(e);
    }
    assert_eq!(store.close().committed, 5000);
    // Returned by time, then in the order stored.
    let mut events = events;
    events.sort_by_key(|e| e.time.clone());
    let mut s = Searcher::open(&db).unwrap();
    let mut n = 0;
    s.search(
        &Query {
            limit: Some(10_000),
            ..Default::default()
        },
        |e| {
            let back: Event = serde_json::from_str(&e.json).unwrap();
            assert_eq!(back, *events[n]);
            n += 1;
            true
        },
    )
    .unwrap();
    assert_eq!(n, 5000);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let with_dict: i64 = conn
        .query_row("SELECT count(*) FROM events WHERE dict > 0", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(
        with_dict > 0,
        "no event was compressed with the trained dictionary"
    );
}

#[test]
fn a_clean_close_loses_nothing_and_a_ledger_left_open_reports_what_was_never_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let mut store = EventStore::open(&store_dir, &StoreConfig::default()).unwrap();
    for e in incident() {
        store.offer(&e);
    }
    store.close();
    let mut store = EventStore::open(&store_dir, &StoreConfig::default()).unwrap();
    assert!(store.recovery.clean);
    assert_eq!((store.recovery.offered, store.recovery.lost), (10, 0));
    for e in incident() {
        store.offer(&e);
    }
    // A crash, as the ledger shows it: the run never marked it closed, and three more events
    // were counted as taken that no commit holds.
    std::thread::sleep(Duration::from_millis(600));
    let ledger = store_dir.join(vigil_store::LEDGER_FILE);
    store.close();
    let mut raw = std::fs::read(&ledger).unwrap();
    let offered = u64::from_le_bytes(raw[16..24].try_into().unwrap());
    assert_eq!(offered, 10);
    raw[16..24].copy_from_slice(&(offered + 3).to_le_bytes());
    raw[32..40].copy_from_slice(&0u64.to_le_bytes());
    std::fs::write(&ledger, raw).unwrap();
    let store = EventStore::open(&store_dir, &StoreConfig::default()).unwrap();
    assert!(!store.recovery.clean);
    assert_eq!((store.recovery.committed, store.recovery.lost), (10, 3));
}

#[test]
fn the_store_keeps_its_own_copy_of_each_events_json_not_the_exporters_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let mut store = EventStore::open(&store_dir, &StoreConfig::default()).unwrap();
    let events = incident();
    // The exporters' encodings: reused or freed by them as soon as the store was offered them.
    let mut json: Vec<Vec<u8>> = events
        .iter()
        .map(|e| serde_json::to_vec(&**e).unwrap())
        .collect();
    for (e, j) in events.iter().zip(&json) {
        let time_ns = vigil_events::time::parse_rfc3339_ns(&e.time).unwrap();
        store.offer_encoded(e, time_ns, j);
    }
    for j in &mut json {
        j.fill(b'x');
    }
    assert_eq!(store.close().committed, events.len() as u64);
    let mut events = events;
    events.sort_by_key(|e| e.time.clone());
    let mut back = Vec::new();
    Searcher::open(&store_dir.join(vigil_store::DB_FILE))
        .unwrap()
        .search(&Query::default(), |e| {
            back.push(serde_json::from_str::<Event>(&e.json).unwrap());
            true
        })
        .unwrap();
    assert_eq!(back.len(), events.len());
    for (b, e) in back.iter().zip(&events) {
        assert_eq!(b, &**e);
    }
}

#[test]
fn retention_removes_events_past_their_age_and_the_rows_only_they_named() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let mut store = EventStore::open(&store_dir, &StoreConfig::default()).unwrap();
    // The incident is two years old: past a week's retention, removed when a writer starts.
    BASE.with(|b| b.set(t0() - OLD));
    for e in incident() {
        store.offer(&e);
    }
    assert_eq!(store.close().committed, 10);
    let store = EventStore::open(&store_dir, &StoreConfig::default()).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let stats = store.close();
    assert_eq!(stats.expired, 10, "{stats:?}");
    let db = store_dir.join(vigil_store::DB_FILE);
    let mut s = Searcher::open(&db).unwrap();
    assert_eq!(s.count(&Query::default()).unwrap(), 0);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM processes) + (SELECT count(*) FROM paths)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 0);
}

#[test]
fn a_second_writer_waits_for_the_first_instead_of_sharing_its_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let first = EventStore::open(&store_dir, &StoreConfig::default()).unwrap();
    let err = EventStore::open(&store_dir, &StoreConfig::default())
        .err()
        .unwrap();
    assert!(matches!(err, vigil_store::StoreError::Busy { .. }), "{err}");
    first.close();
    assert!(EventStore::open(&store_dir, &StoreConfig::default()).is_ok());
}

#[test]
fn a_flood_of_long_arguments_past_the_size_removes_only_what_it_must_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let small = StoreConfig {
        max_size_mib: 16,
        ..Default::default()
    };
    let mut store = EventStore::open(&store_dir, &small).unwrap();
    for e in incident() {
        store.offer(&e);
    }
    assert_eq!(store.close().committed, 10);
    // Processes with 4 KiB of distinct arguments each: their rows and trigrams weigh, not
    // their events.
    let mut store = EventStore::open(&store_dir, &small).unwrap();
    let mut offered = 0;
    for i in 0..2000u32 {
        let noise: String = (0..4000u32)
            .map(|j| {
                char::from(b'a' + ((i.wrapping_mul(7919) ^ j.wrapping_mul(104_729)) % 26) as u8)
            })
            .collect();
        let p = process(&format!("f{i}"), "init", 9000 + i, "/bin/true", &noise);
        store.offer(&event(
            json!({"process_exec": {"process": p}, "time": time(20)}),
        ));
        offered += 1;
        if offered % 500 == 0 {
            // As the agent's timer does.
            store.hand_off();
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let flooded = store.close();
    // The next start cuts the store to its size (if the flood's run did not already), and
    // only as much as needed.
    let store = EventStore::open(&store_dir, &small).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let after = store.close();
    let db = store_dir.join(vigil_store::DB_FILE);
    let kept = Searcher::open(&db)
        .unwrap()
        .count(&Query::default())
        .unwrap();
    assert!(flooded.evicted + after.evicted > 0, "{flooded:?} {after:?}");
    assert!(
        kept > 200,
        "only {kept} events kept: retention removed more than the size asks"
    );
    assert!(flooded.oldest_kept_ns.max(after.oldest_kept_ns) > 0);
    let size = std::fs::metadata(&db).unwrap().len();
    assert!(
        size < 24 << 20,
        "the database is {size} bytes, {kept} events kept: {flooded:?} {after:?}"
    );
}

#[test]
fn a_planted_link_in_place_of_the_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    std::fs::create_dir(&store_dir).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", store_dir.join("events.db")).unwrap();
    let err = EventStore::open(&store_dir, &StoreConfig::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("events.db"), "{err}");
}

#[test]
fn a_search_by_binary_returns_its_newest_events_whether_they_are_recent_or_old() {
    // 25,000 events, one a second: `busy` runs throughout, `mixed` 30 times in the newest
    // 20,000 events and 100 times before, `rare` only in the first 1000. The newest events are
    // looked through first (a frequent binary's answer is there); what they do not hold whole
    // comes from every process of the name.
    let binary = |i: u32| match i {
        _ if i.is_multiple_of(2) => "busy",
        _ if i < 1000 && i % 7 == 1 => "rare",
        _ if (i < 5000 && i % 25 == 3) || (i >= 5000 && i % 333 == 3) => "mixed",
        _ => "other",
    };
    let events: Vec<Arc<Event>> = (0..25_000u32)
        .map(|i| {
            let b = binary(i);
            let p = process(
                &format!("{b}{}", i / 10),
                "init",
                i,
                &format!("/usr/bin/{b}"),
                "",
            );
            event(
                json!({"process_kprobe": {"process": p, "function_name": "security_file_open",
                "args": [{"file_arg": {"path": "/etc/hosts"}}], "action": "KPROBE_ACTION_POST",
                "outcome": "observed", "policy_name": "files"}, "time": time(u64::from(i))}),
            )
        })
        .collect();
    let (_dir, db) = store_with(&events);
    for (name, limit, recent) in [
        ("busy", 100, 100),
        ("mixed", 100, 30),
        ("rare", 100, 0),
        ("mixed", 1000, 30),
    ] {
        let mut expected: Vec<u64> = (0..25_000u32)
            .filter(|&i| binary(i) == name)
            .map(u64::from)
            .collect();
        let in_recent = expected.iter().filter(|&&i| i >= 5000).count();
        assert_eq!(
            in_recent.min(limit),
            recent,
            "{name}: the test's own layout"
        );
        expected = expected[expected.len().saturating_sub(limit)..].to_vec();
        let q = Query {
            binary: Some(name.into()),
            limit: Some(limit as u64),
            ..Default::default()
        };
        let pids: Vec<u64> = kinds_and_pids(&db, &q)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        assert_eq!(pids, expected, "{name}, limit {limit}");
    }
}

#[test]
fn a_process_that_execs_is_found_by_its_new_binary_and_arguments_not_its_old_ones() {
    // The clone keeps its exec id across execve: what it did before the exec and after are
    // one process row, which the exec brings up to date (arguments' trigrams included).
    let before = process("x1", "init", 300, "/bin/sh", "-c launcher-stage");
    let after = process("x1", "init", 300, "/usr/bin/python3", "steal.py --token");
    let events = vec![
        event(
            json!({"process_kprobe": {"process": before, "function_name": "security_file_open",
            "args": [{"file_arg": {"path": "/etc/hosts"}}], "action": "KPROBE_ACTION_POST",
            "outcome": "observed", "policy_name": "files"}, "time": time(1)}),
        ),
        event(json!({"process_exec": {"process": after}, "time": time(2)})),
        event(
            json!({"process_kprobe": {"process": after, "function_name": "security_file_open",
            "args": [{"file_arg": {"path": "/etc/shadow"}}], "action": "KPROBE_ACTION_POST",
            "outcome": "observed", "policy_name": "files"}, "time": time(3)}),
        ),
    ];
    let (_dir, db) = store_with(&events);
    let all = vec![
        ("process_kprobe".to_string(), 300),
        ("process_exec".to_string(), 300),
        ("process_kprobe".to_string(), 300),
    ];
    let q = |f: &dyn Fn(&mut Query)| {
        let mut q = Query::default();
        f(&mut q);
        q
    };
    assert_eq!(
        kinds_and_pids(&db, &q(&|q| q.binary = Some("python3".into()))),
        all
    );
    assert_eq!(
        kinds_and_pids(
            &db,
            &q(&|q| q.args = Some(TextMatch::Substring("steal.py".into())))
        ),
        all
    );
    assert!(kinds_and_pids(&db, &q(&|q| q.binary = Some("/bin/sh".into()))).is_empty());
    assert!(kinds_and_pids(
        &db,
        &q(&|q| q.args = Some(TextMatch::Substring("launcher".into())))
    )
    .is_empty());
}

#[test]
fn events_sharing_their_processes_are_filed_under_them() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let mut store = EventStore::open(&store_dir, &StoreConfig::default()).unwrap();
    let mut events: Vec<Event> = incident().iter().map(|e| (**e).clone()).collect();
    // As the process cache's events do: curl's kprobes hold the very processes of its exec,
    // and the exec comes again after them (the batch names them by their place in the event
    // before, and the writer refreshes the row from the exec as ever).
    let shared: Vec<_> = events[1].shared_processes().cloned().collect();
    for e in &mut events[2..5] {
        for (p, s) in e.processes_mut().zip(&shared) {
            *p = s.clone();
        }
    }
    let mut again = events[1].clone();
    again.time = events[4].time.clone();
    events.insert(5, again);
    for e in &events {
        store.offer(e);
    }
    assert_eq!(store.close().committed, events.len() as u64);
    let mut s = Searcher::open(&store_dir.join(vigil_store::DB_FILE)).unwrap();
    let tree = s.tree("sh1", true).unwrap().unwrap();
    assert!(tree
        .iter()
        .any(|n| n.process.exec_id == "curl1" && n.events.len() == 5));
    for node in &tree {
        let own = events
            .iter()
            .filter(|e| e.process().exec_id.as_str() == node.process.exec_id)
            .count();
        assert_eq!(node.events.len(), own, "{}", node.process.exec_id);
        for stored in &node.events {
            let back: Event = serde_json::from_str(&stored.json).unwrap();
            assert_eq!(back.process().exec_id.as_str(), node.process.exec_id);
        }
    }
}

/// An event about no process, the stream's note of records the kernel lost, is stored with
/// the events around it (none of which it takes down with it) and found by its kind.
#[test]
fn a_lost_events_note_is_stored_beside_the_events_and_found_by_its_kind() {
    let mut events = incident();
    let n = events.len();
    events.insert(
        n / 2,
        event(
            json!({"rate_limit_info": {"number_of_dropped_process_events": "42"},
            "node_name": "node-a", "time": time(3)}),
        ),
    );
    let (_dir, db) = store_with(&events);
    let mut s = Searcher::open(&db).unwrap();
    let mut found = Vec::new();
    let q = Query {
        kinds: vec!["rate_limit_info".into()],
        ..Default::default()
    };
    s.search(&q, |e| {
        found.push(e.json.clone());
        true
    })
    .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("\"number_of_dropped_process_events\":\"42\""));
    // Every other event is there too.
    let mut all = 0;
    s.search(&Query::default(), |_| {
        all += 1;
        true
    })
    .unwrap();
    assert_eq!(all, events.len());
}
