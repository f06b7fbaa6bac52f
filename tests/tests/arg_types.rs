//! Kernel-object argument types, decoded as Tetragon shapes them: a `struct cred *` as
//! `process_credentials_arg`, a `kernel_cap_t *` as the hex set of `cap_effective_arg`. The
//! scenarios run Tetragon's own example policies; their hooks are kprobes, so they run where
//! kprobes exist (the VM matrix) and are recorded as skipped elsewhere.

use serde_json::Value;
use vigil_tests::{
    kernels::{scenario_needs, Hook},
    require_root, tetragon_policies_dir, Agent,
};

/// capget(2)/capset(2)'s header and data, version 3 (two 32-bit words per set).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;
const CAP_NET_RAW: u32 = 13;

/// The calling thread's capability sets (effective, permitted, inheritable), 64 bits each.
fn capget() -> (u64, u64, u64) {
    let mut h = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut d = [CapData::default(); 2];
    // SAFETY: capget writes two CapData into `d`, the size version 3 asks for.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) };
    assert_eq!(rc, 0, "capget: {}", std::io::Error::last_os_error());
    let join = |f: fn(&CapData) -> u32| f(&d[0]) as u64 | (f(&d[1]) as u64) << 32;
    (
        join(|c| c.effective),
        join(|c| c.permitted),
        join(|c| c.inheritable),
    )
}

#[test]
fn a_cred_argument_reports_the_credentials_a_thread_takes_on() {
    if !scenario_needs(
        "a_cred_argument_reports_the_credentials_a_thread_takes_on",
        &[Hook::Kprobe],
    ) {
        return;
    }
    require_root();
    let policy = tetragon_policies_dir().join("tracingpolicy_kprobe_commit_creds.yaml");
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    // setuid(2) made directly changes the calling thread's credentials only (glibc's wrapper
    // would change every thread's): a thread of the test becomes nobody and ends.
    let tid = std::thread::spawn(|| {
        // SAFETY: gettid and setuid have no memory arguments.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid);
            assert_eq!(libc::syscall(libc::SYS_setuid, 65534), 0);
            tid
        }
    })
    .join()
    .unwrap();
    let run = agent.stop();
    let ours: Vec<&Value> = run
        .kprobes("commit_creds")
        .into_iter()
        .filter(|e| e["process"]["pid"] == std::process::id() && e["process"]["tid"] == tid)
        .collect();
    assert_eq!(ours.len(), 1, "{ours:#?}");
    let cred = &ours[0]["args"][0]["process_credentials_arg"];
    for id in ["uid", "euid", "suid", "fsuid"] {
        assert_eq!(cred[id], 65534, "{id}: {cred}");
    }
    assert_eq!(cred["gid"], 0, "{cred}");
    // Leaving uid 0 clears the effective and permitted sets (no keepcaps).
    assert!(cred["caps"].get("effective").is_none(), "{cred}");
    assert!(cred["caps"].get("permitted").is_none(), "{cred}");
    assert_eq!(cred["user_ns"]["level"], 0, "{cred}");
    assert_eq!(cred["user_ns"]["ns"]["is_host"], true, "{cred}");
    assert!(
        cred["user_ns"]["ns"]["inum"].as_u64().unwrap_or(0) > 0,
        "{cred}"
    );
}

#[test]
fn capset_reports_the_new_effective_set_and_the_old_credentials() {
    if !scenario_needs(
        "capset_reports_the_new_effective_set_and_the_old_credentials",
        &[Hook::Kprobe],
    ) {
        return;
    }
    require_root();
    let policy = tetragon_policies_dir().join("policylibrary_privileges-raise.yaml");
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let (before, after, tid) = std::thread::spawn(|| {
        let (eff, perm, inh) = capget();
        let dropped = eff & !(1u64 << CAP_NET_RAW);
        let mut h = CapHeader {
            version: CAP_V3,
            pid: 0,
        };
        let split = |v: u64| [v as u32, (v >> 32) as u32];
        let (e, p, i) = (split(dropped), split(perm), split(inh));
        let d = [
            CapData {
                effective: e[0],
                permitted: p[0],
                inheritable: i[0],
            },
            CapData {
                effective: e[1],
                permitted: p[1],
                inheritable: i[1],
            },
        ];
        // SAFETY: capset reads the header and two CapData; it changes this thread alone.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) };
        assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
        // SAFETY: gettid has no arguments.
        (eff, dropped, unsafe { libc::syscall(libc::SYS_gettid) })
    })
    .join()
    .unwrap();
    let run = agent.stop();
    let ours: Vec<&Value> = run
        .kprobes("security_capset")
        .into_iter()
        .filter(|e| e["process"]["tid"] == tid)
        .collect();
    assert_eq!(ours.len(), 1, "{ours:#?}");
    let args = ours[0]["args"].as_array().unwrap();
    // `nop` (index 0) is left out: the old credentials, then the three sets.
    assert_eq!(args.len(), 4, "{args:#?}");
    let old = &args[0]["process_credentials_arg"];
    assert_eq!(old["uid"], 0, "{old}");
    assert!(
        old["caps"]["effective"]
            .as_array()
            .is_some_and(|c| c.iter().any(|n| n == "CAP_NET_RAW")),
        "the old set still held CAP_NET_RAW ({before:#x}): {old}"
    );
    assert_eq!(
        args[1]["cap_effective_arg"],
        format!("{after:016x}"),
        "{args:#?}"
    );
    assert!(args[2].get("cap_inheritable_arg").is_some(), "{args:#?}");
    assert!(args[3].get("cap_permitted_arg").is_some(), "{args:#?}");
    assert_eq!(
        ours[0]["message"],
        "Process changed its capabilities using capset system call"
    );
}

/// Runs `script` in bash and waits for it: its exit status (None: killed by a signal) and the
/// signal that killed it.
fn bash(script: &str) -> (Option<i32>, Option<i32>, u32) {
    use std::os::unix::process::ExitStatusExt;
    let mut child = std::process::Command::new("/usr/bin/bash")
        .args(["-c", script])
        .spawn()
        .expect("run bash");
    let pid = child.id();
    let status = child.wait().unwrap();
    (status.code(), status.signal(), pid)
}

#[test]
fn an_skb_argument_is_matched_on_its_headers_and_the_sender_killed() {
    if !scenario_needs(
        "an_skb_argument_is_matched_on_its_headers_and_the_sender_killed",
        &[Hook::Kprobe],
    ) {
        return;
    }
    require_root();
    // Tetragon's example: DNS (port 53) to any server but 127.0.0.53 kills the sender.
    let policy = tetragon_policies_dir().join("tracingpolicy_dns-only-specified-servers.yaml");
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let send = |to: &str| {
        bash(&format!(
            "exec 3>/dev/udp/{to}/53; printf 'vigil-query' >&3; sleep 0.5; exit 7"
        ))
    };
    let (allowed, _, _) = send("127.0.0.53");
    let (code, signal, killed_pid) = send("127.0.0.1");
    let run = agent.stop();
    assert_eq!(allowed, Some(7), "a query to 127.0.0.53 is allowed");
    assert_eq!(
        (code, signal),
        (None, Some(libc::SIGKILL)),
        "a query to 127.0.0.1 is killed"
    );
    let ours: Vec<&Value> = run
        .kprobes("ip_output")
        .into_iter()
        .filter(|e| e["process"]["pid"] == killed_pid)
        .collect();
    assert_eq!(ours.len(), 1, "{ours:#?}");
    let skb = &ours[0]["args"][0]["skb_arg"];
    assert_eq!(skb["daddr"], "127.0.0.1", "{skb}");
    assert_eq!(skb["saddr"], "127.0.0.1", "{skb}");
    assert_eq!(skb["dport"], 53, "{skb}");
    assert!(skb["sport"].as_u64().unwrap_or(0) > 0, "{skb}");
    assert_eq!(skb["protocol"], "IPPROTO_UDP", "{skb}");
    assert_eq!(skb["proto"], 17, "{skb}");
    assert_eq!(skb["family"], "AF_INET", "{skb}");
    // IP header, UDP header and the 11 bytes sent.
    assert_eq!(skb["len"], 20 + 8 + 11, "{skb}");
    assert_eq!(ours[0]["action"], "KPROBE_ACTION_SIGKILL", "{:#?}", ours[0]);
}

#[test]
fn a_tracked_socket_names_its_owner_where_the_kernel_runs_for_another_process() {
    if !scenario_needs(
        "a_tracked_socket_names_its_owner_where_the_kernel_runs_for_another_process",
        &[Hook::Kprobe],
    ) {
        return;
    }
    require_root();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dir = vigil_tests::TempDir::new("tracksock");
    let policy = dir.path().join("tracksock.yaml");
    // Tetragon's tcp-accept example's tracking, and a hook on the wake-up of a socket's
    // reader, which runs where the packet is processed: on loopback, in the sender.
    std::fs::write(
        &policy,
        format!(
            "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: tracksock\nspec:\n  kprobes:\n  - call: sk_alloc\n    return: true\n    args:\n    - index: 1\n      type: int\n    returnArg:\n      index: 0\n      type: sock\n    returnArgAction: TrackSock\n    selectors:\n    - matchArgs:\n      - index: 1\n        operator: Equal\n        values: [\"2\"]\n      matchActions:\n      - action: NoPost\n  - call: tcp_create_openreq_child\n    return: true\n    args:\n    - index: 0\n      type: sock\n    returnArg:\n      index: 0\n      type: sock\n    returnArgAction: TrackSock\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: SPort\n        values: [\"{port}\"]\n  - call: __sk_free\n    args:\n    - index: 0\n      type: sock\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: SPort\n        values: [\"{port}\"]\n      matchActions:\n      - action: UntrackSock\n        argSock: 0\n      - action: NoPost\n  - call: sock_def_readable\n    args:\n    - index: 0\n      type: sock\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: SPort\n        values: [\"{port}\"]\n      - index: 0\n        operator: State\n        values: [TCP_ESTABLISHED]\n"
        ),
    )
    .unwrap();
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    // The listener is made after the agent started, so its sk_alloc is tracked.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let server = std::thread::spawn(move || {
        use std::io::Read;
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        conn.read_to_end(&mut buf).unwrap();
        buf
    });
    let (code, _, sender) = bash(&format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'vigil-data' >&3; exit 0"
    ));
    assert_eq!(code, Some(0));
    assert_eq!(server.join().unwrap(), b"vigil-data");
    let run = agent.stop();
    let readable = run.kprobes("sock_def_readable");
    assert!(!readable.is_empty(), "no wake-up of the accepted socket");
    for e in &readable {
        assert_eq!(
            e["process"]["pid"],
            std::process::id(),
            "the accepted socket is the test's, though bash ({sender}) sent the data: {e:#}"
        );
        assert_eq!(
            e["args"][0]["sock_arg"]["state"], "TCP_ESTABLISHED",
            "{e:#}"
        );
    }
    // The accept itself (in the kernel's handling of the client's packet) names the owner of
    // the listening socket.
    let accepted = run.kprobes("tcp_create_openreq_child");
    assert!(
        accepted
            .iter()
            .any(|e| e["process"]["pid"] == std::process::id()),
        "{accepted:#?}"
    );
}

#[test]
fn a_dentry_argument_reports_the_link_being_followed() {
    if !scenario_needs(
        "a_dentry_argument_reports_the_link_being_followed",
        &[Hook::Kprobe],
    ) {
        return;
    }
    require_root();
    let dir = vigil_tests::TempDir::new("dentry");
    let target = dir.path().join("target");
    std::fs::write(&target, b"x").unwrap();
    let link = dir.path().join("vigil-followed-link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let policy = tetragon_policies_dir().join("tracingpolicy_security_inode_follow_link.yaml");
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    assert_eq!(std::fs::read(&link).unwrap(), b"x");
    let run = agent.stop();
    let ours: Vec<&Value> = run
        .kprobes("security_inode_follow_link")
        .into_iter()
        .filter(|e| e["process"]["pid"] == std::process::id())
        .collect();
    // The dentry's path within its filesystem: the link's own name ends it.
    assert!(
        ours.iter().any(|e| e["args"][0]["path_arg"]["path"]
            .as_str()
            .is_some_and(|p| p.starts_with('/') && p.ends_with("/vigil-followed-link"))),
        "{ours:#?}"
    );
}

#[test]
fn kiocb_and_iov_iter_arguments_report_the_terminal_and_the_bytes_written_to_it() {
    if !scenario_needs(
        "kiocb_and_iov_iter_arguments_report_the_terminal_and_the_bytes_written_to_it",
        &[Hook::Kprobe],
    ) {
        return;
    }
    require_root();
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors into the integers it is given.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: a buffer of PATH_MAX for the slave's name.
    let name = unsafe {
        let mut buf = [0 as libc::c_char; 4096];
        assert_eq!(libc::ttyname_r(slave, buf.as_mut_ptr(), buf.len()), 0);
        std::ffi::CStr::from_ptr(buf.as_ptr())
            .to_string_lossy()
            .into_owned()
    };
    let policy = tetragon_policies_dir().join("tracingpolicy_tty.yaml");
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    let data = b"vigil-typed-on-a-tty";
    // SAFETY: writes `data` to the slave descriptor this test opened.
    let n = unsafe { libc::write(slave, data.as_ptr().cast(), data.len()) };
    assert_eq!(n, data.len() as isize);
    let run = agent.stop();
    // SAFETY: both descriptors are this test's.
    unsafe {
        libc::close(slave);
        libc::close(master);
    }
    let ours: Vec<&Value> = run
        .kprobes("tty_write")
        .into_iter()
        .filter(|e| e["process"]["pid"] == std::process::id())
        .collect();
    use base64::Engine;
    let written = base64::engine::general_purpose::STANDARD.encode(data);
    assert!(
        ours.iter()
            .any(|e| e["args"][0]["file_arg"]["path"] == name.as_str()
                && e["args"][1]["bytes_arg"] == written.as_str()),
        "{name} and {written}: {ours:#?}"
    );
}

#[test]
fn a_namespace_capability_filter_matches_only_outside_the_host_user_namespace() {
    if !scenario_needs(
        "a_namespace_capability_filter_matches_only_outside_the_host_user_namespace",
        &[Hook::Kprobe],
    ) {
        return;
    }
    require_root();
    use std::os::unix::process::CommandExt;
    // Tetragon's example: fd_install by a process holding CAP_CHOWN or CAP_NET_RAW in a user
    // namespace of its own.
    let policy = tetragon_policies_dir().join("tracingpolicy_fd_install_caps.yaml");
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    // The test itself (root in the host's user namespace, CAP_CHOWN held) opens a file.
    drop(std::fs::File::open("/proc/self/status").unwrap());
    let mut child = std::process::Command::new("/bin/true");
    // SAFETY: unshare, open and close are async-signal-safe system calls, made in the child
    // between fork and exec: a new user namespace gives it every capability there, and the
    // open installs a descriptor.
    unsafe {
        child.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::open(c"/proc/self/status".as_ptr(), libc::O_RDONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
    let mut child = child
        .spawn()
        .expect("a child in a user namespace of its own");
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    let run = agent.stop();
    let events = run.kprobes("fd_install");
    assert!(
        events.iter().any(|e| e["process"]["pid"] == pid),
        "the child in its own user namespace: {events:#?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e["process"]["pid"] == std::process::id()),
        "the test, in the host's user namespace, is not selected: {events:#?}"
    );
}

/// bpf(2) as the test calls it: `cmd` with the attribute bytes `attr`.
fn bpf(cmd: i64, attr: &mut [u8]) -> i64 {
    // SAFETY: `attr` is a zeroed bpf_attr prefix of the size passed.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) }
}

fn put(attr: &mut [u8], at: usize, bytes: &[u8]) {
    attr[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Tetragon's BPF library policy: a program loaded (`bpf_attr`), a map created (`bpf_map`) and
/// a perf event opened (`perf_event`) by the test process are reported with what they are.
#[test]
fn bpf_objects_are_reported_as_tetragon_shapes_them() {
    if !scenario_needs(
        "bpf_objects_are_reported_as_tetragon_shapes_them",
        &[Hook::Kprobe],
    ) {
        return;
    }
    require_root();
    let policy = tetragon_policies_dir().join("policylibrary_bpf.yaml");
    let agent = Agent::start(&["--policy", policy.to_str().unwrap()]);
    // BPF_MAP_CREATE: an array map of 4 entries, u32 keys and u64 values, named.
    let mut map = [0u8; 72];
    put(&mut map, 0, &2u32.to_ne_bytes()); // BPF_MAP_TYPE_ARRAY
    put(&mut map, 4, &4u32.to_ne_bytes());
    put(&mut map, 8, &8u32.to_ne_bytes());
    put(&mut map, 12, &4u32.to_ne_bytes());
    put(&mut map, 28, b"vigil_map");
    let map_fd = bpf(0, &mut map);
    // BPF_PROG_LOAD: a socket filter of two instructions (r0 = 0; exit), named.
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = b"GPL\0";
    let mut prog = [0u8; 72];
    put(&mut prog, 0, &1u32.to_ne_bytes()); // BPF_PROG_TYPE_SOCKET_FILTER
    put(&mut prog, 4, &2u32.to_ne_bytes());
    put(&mut prog, 8, &(insns.as_ptr() as u64).to_ne_bytes());
    put(&mut prog, 16, &(license.as_ptr() as u64).to_ne_bytes());
    put(&mut prog, 48, b"vigil_prog");
    let prog_fd = bpf(5, &mut prog);
    // perf_event_open: a software clock on this process.
    let mut attr = [0u8; 128];
    put(&mut attr, 0, &1u32.to_ne_bytes()); // PERF_TYPE_SOFTWARE
    put(&mut attr, 4, &128u32.to_ne_bytes());
    put(&mut attr, 8, &0u64.to_ne_bytes()); // PERF_COUNT_SW_CPU_CLOCK
    put(&mut attr, 40, &(1u64 << 5 | 1u64 << 6).to_ne_bytes()); // exclude_kernel, exclude_hv
                                                                // SAFETY: a perf_event_attr of the size it says, for this process on any CPU.
    let perf_fd = unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 0) };
    let run = agent.stop();
    for fd in [map_fd, prog_fd, perf_fd] {
        assert!(
            fd >= 0,
            "map {map_fd}, program {prog_fd}, perf event {perf_fd}"
        );
        // SAFETY: a descriptor this test opened.
        unsafe { libc::close(fd as i32) };
    }
    let me = std::process::id();
    let ours = |function: &str| -> Vec<Value> {
        run.kprobes(function)
            .into_iter()
            .filter(|e| e["process"]["pid"] == me)
            .cloned()
            .collect()
    };
    let progs = ours("bpf_check");
    let seen: std::collections::BTreeSet<&str> = run
        .events
        .iter()
        .filter_map(|e| e["process_kprobe"]["function_name"].as_str())
        .collect();
    assert!(
        progs.iter().any(|e| e["args"][0]["bpf_attr_arg"]
            == serde_json::json!({"ProgType": "BPF_PROG_TYPE_SOCKET_FILTER", "InsnCnt": 2, "ProgName": "vigil_prog"})),
        "{progs:#?}\nfunctions reported: {seen:?}\nagent:\n{}",
        run.stderr.join("\n")
    );
    let maps: Vec<Value> = ["security_bpf_map_alloc", "security_bpf_map_create"]
        .iter()
        .flat_map(|f| ours(f))
        .collect();
    assert!(
        maps.iter().any(|e| e["args"][0]["bpf_map_arg"]
            == serde_json::json!({"MapType": "BPF_MAP_TYPE_ARRAY", "KeySize": 4, "ValueSize": 8, "MaxEntries": 4, "MapName": "vigil_map"})),
        "{maps:#?}"
    );
    let perf = ours("security_perf_event_alloc");
    assert!(
        perf.iter().any(
            |e| e["args"][0]["perf_event_arg"]["Type"] == "PERF_TYPE_SOFTWARE"
                && e["args"][0]["perf_event_arg"]["Config"] == "0"
        ),
        "{perf:#?}"
    );
}
