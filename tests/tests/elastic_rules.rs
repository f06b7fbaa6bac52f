//! Elastic Security's prebuilt Linux detection rules (the `elastic/detection-rules` repository,
//! `rules/linux/`) on vigil's documents. For thirty of them, each case below says in our own
//! words what the rule's query looks for: the fields and values a document must carry. The test
//! runs the behaviour each rule describes on this host, through one agent exporting to the
//! Elasticsearch test server (which refuses any document that is not ECS), and looks for a
//! document that carries what the rule needs. The queries are not copied: the rule's file is
//! named so a reader can compare.
//!
//! The behaviours are harmless stand-ins: a program the rule names by its process name is a copy
//! of `true` under that name in a scratch directory (`dmesg -c` clears nothing), and the file
//! changes happen under a tmpfs mounted in a mount namespace of their own (`/etc/doas.conf` is
//! created and `/var/log/wtmp` deleted there, not on the host). Host only: what the documents
//! carry does not depend on the kernel, whose events the VM's archive check covers.

#[path = "../../exporters/tests/support/elastic.rs"]
#[allow(dead_code)]
mod elastic;
#[path = "../../exporters/tests/support/http.rs"]
#[allow(dead_code)]
mod http;

use std::{path::Path, process::Command};

use serde_json::Value;
use vigil_tests::{
    dns::{query, TestResolver, TYPE},
    require_root, rules_dir, Agent, TempDir,
};

/// One thing a rule's query needs of a document.
#[derive(Debug, Clone, Copy)]
enum Need {
    /// The field (or, for an array, one of its values) equals this.
    Is(&'static str, &'static str),
    /// The field (or one of its values) matches this `*` pattern.
    Like(&'static str, &'static str),
    /// The field is a number at least this.
    AtLeast(&'static str, i64),
    /// The field (or one of its values) is one of these.
    OneOf(&'static str, &'static [&'static str]),
    /// The field is present.
    Present(&'static str),
    /// The field, when present, is not this.
    Not(&'static str, &'static str),
}

/// A rule: its name and file in `elastic/detection-rules`, what its query needs, and the
/// behaviour it describes as a shell command (a shell runs it, and is its parent).
struct RuleCase {
    name: &'static str,
    file: &'static str,
    needs: Vec<Need>,
    behaviour: String,
}

/// The values at a dotted path (an array's elements each).
fn values<'a>(doc: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut at = vec![doc];
    for part in path.split('.') {
        at = at
            .into_iter()
            .filter_map(|v| v.get(part))
            .flat_map(|v| match v.as_array() {
                Some(a) => a.iter().collect::<Vec<_>>(),
                None => vec![v],
            })
            .collect();
    }
    at
}

/// `*` matches any run of characters; the rest matches itself.
fn like(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return s == pattern;
    }
    if !s.starts_with(first) || !s[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

fn holds(doc: &Value, need: Need) -> bool {
    let text = |v: &&Value| {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    };
    match need {
        Need::Is(f, want) => values(doc, f).iter().any(|v| text(v) == want),
        Need::Like(f, p) => values(doc, f).iter().any(|v| like(p, &text(v))),
        Need::AtLeast(f, n) => values(doc, f)
            .iter()
            .any(|v| v.as_i64().is_some_and(|x| x >= n)),
        Need::OneOf(f, set) => values(doc, f)
            .iter()
            .any(|v| set.contains(&text(v).as_str())),
        Need::Present(f) => !values(doc, f).is_empty(),
        Need::Not(f, no) => values(doc, f).iter().all(|v| text(v) != no),
    }
}

/// The shells rules name as a parent.
const SHELLS: &[&str] = &[
    "bash", "dash", "ash", "sh", "tcsh", "csh", "zsh", "ksh", "fish",
];

/// What every process rule asks first: a Linux host and a process that started by exec.
fn started(mut more: Vec<Need>) -> Vec<Need> {
    let mut needs = vec![
        Need::Is("host.os.type", "linux"),
        Need::Is("event.category", "process"),
        Need::Is("event.type", "start"),
        Need::Is("event.action", "exec"),
    ];
    needs.append(&mut more);
    needs
}

/// What every file rule asks first.
fn file_event(mut more: Vec<Need>) -> Vec<Need> {
    let mut needs = vec![
        Need::Is("host.os.type", "linux"),
        Need::Is("event.category", "file"),
    ];
    needs.append(&mut more);
    needs
}

/// A command run in a mount namespace of its own, with tmpfs over `dirs`.
fn in_private_mounts(dirs: &[&str], script: &str) -> String {
    let mounts: String = dirs
        .iter()
        .map(|d| format!("mount -t tmpfs vigil-rules {d} && "))
        .collect();
    // Private propagation: the tmpfs mounts stay in this namespace whatever unshare's default.
    format!("unshare --mount --propagation private sh -c '{mounts}{script}'")
}

fn cases(bin: &Path) -> Vec<RuleCase> {
    use Need::*;
    let b = |cmd: &str| format!("{}/{cmd}", bin.display());
    vec![
        RuleCase { name: "Attempt to Clear Kernel Ring Buffer", file: "defense_evasion_clear_kernel_ring_buffer.toml",
            needs: started(vec![Is("process.name", "dmesg"), Is("process.args", "-c")]), behaviour: b("dmesg -c") },
        RuleCase { name: "Base16 or Base32 Encoding/Decoding Activity", file: "defense_evasion_base16_or_base32_encoding_or_decoding_activity.toml",
            needs: started(vec![Is("process.name", "base32"), Not("process.args", "--help")]), behaviour: b("base32 /etc/hostname") },
        RuleCase { name: "Attempt to Clear Logs via Journalctl", file: "defense_evasion_journalctl_clear_logs.toml",
            needs: started(vec![Is("process.name", "journalctl"), Like("process.args", "--vacuum-time=*")]), behaviour: b("journalctl --vacuum-time=1s") },
        RuleCase { name: "Kernel Module Removal", file: "defense_evasion_kernel_module_removal.toml",
            needs: started(vec![Is("process.name", "rmmod"), OneOf("process.parent.name", SHELLS)]), behaviour: b("rmmod vigil_no_such_module") },
        RuleCase { name: "Potential Disabling of SELinux", file: "defense_evasion_disable_selinux_attempt.toml",
            needs: started(vec![Is("process.name", "setenforce"), Is("process.args", "0")]), behaviour: b("setenforce 0") },
        RuleCase { name: "Potential Hidden Process via Mount Hidepid", file: "defense_evasion_mount_execution.toml",
            needs: started(vec![Is("process.name", "mount"), Is("process.args", "/proc"), Is("process.args", "-o"), Like("process.args", "*hidepid=2*")]),
            behaviour: b("mount -o remount,rw,hidepid=2 /proc") },
        RuleCase { name: "BPF Program Tampering via bpftool", file: "defense_evasion_bpf_program_tampering.toml",
            needs: started(vec![Is("process.name", "bpftool"), Is("process.args", "prog"), Is("process.args", "detach")]), behaviour: b("bpftool prog detach id 1 xdp") },
        RuleCase { name: "File made Immutable by Chattr", file: "defense_evasion_chattr_immutable_file.toml",
            needs: started(vec![Is("process.name", "chattr"), Like("process.args", "+*i*"), Present("process.parent.executable")]), behaviour: b("chattr +i /tmp/vigil-rules-x") },
        RuleCase { name: "Directory Creation in /bin directory", file: "defense_evasion_directory_creation_in_bin.toml",
            needs: started(vec![Is("process.name", "mkdir"), Like("process.args", "/usr/bin/*"), Not("process.parent.executable", "/usr/bin/make")]),
            behaviour: b("mkdir /usr/bin/vigil-rules-dir") },
        RuleCase { name: "File Deletion via Shred", file: "defense_evasion_file_deletion_via_shred.toml",
            needs: started(vec![Is("process.name", "shred"), Is("process.args", "-u")]), behaviour: b("shred -u /tmp/vigil-rules-x") },
        RuleCase { name: "Attempt to Disable Auditd Service", file: "defense_evasion_attempt_to_disable_auditd_service.toml",
            needs: started(vec![Is("process.name", "systemctl"), Is("process.args", "stop"), Is("process.args", "auditd")]), behaviour: b("systemctl stop auditd") },
        RuleCase { name: "Attempt to Disable Syslog Service", file: "defense_evasion_attempt_to_disable_syslog_service.toml",
            needs: started(vec![Is("process.name", "service"), Is("process.args", "stop"), Is("process.args", "rsyslog")]), behaviour: b("service rsyslog stop") },
        RuleCase { name: "Potential Linux Credential Dumping via Unshadow", file: "credential_access_credential_dumping.toml",
            needs: started(vec![Is("process.name", "unshadow"), AtLeast("process.args_count", 3)]), behaviour: b("unshadow /etc/passwd /etc/shadow") },
        RuleCase { name: "Linux init (PID 1) Secret Dump via GDB", file: "credential_access_gdb_init_process_hooking.toml",
            needs: started(vec![Is("process.name", "gdb"), Is("process.args", "-p"), Is("process.args", "1")]), behaviour: b("gdb -p 1") },
        RuleCase { name: "Linux Process Hooking via GDB", file: "credential_access_gdb_process_hooking.toml",
            needs: started(vec![Is("process.name", "gdb"), Is("process.args", "--pid"), Not("process.args", "1")]), behaviour: b("gdb --pid 4242") },
        RuleCase { name: "Linux Telegram API Request", file: "command_and_control_telegram_api_request.toml",
            needs: started(vec![Is("process.name", "curl"), Like("process.command_line", "*api.telegram.org*")]), behaviour: b("curl https://api.telegram.org/bot1/getMe") },
        RuleCase { name: "Potential Protocol Tunneling via EarthWorm", file: "command_and_control_tunneling_via_earthworm.toml",
            needs: started(vec![Is("process.args", "-s"), Is("process.args", "-d"), Is("process.args", "rssocks")]), behaviour: b("ew -s rssocks -d 10.9.9.9 -e 8888") },
        RuleCase { name: "Linux SSH X11 Forwarding", file: "command_and_control_linux_ssh_x11_forwarding.toml",
            needs: started(vec![Is("process.name", "ssh"), Is("process.args", "-X"), AtLeast("process.args_count", 3), OneOf("process.parent.name", SHELLS)]),
            behaviour: b("ssh -X user@vigil-rules.invalid") },
        RuleCase { name: "ProxyChains Activity", file: "command_and_control_linux_proxychains_activity.toml",
            needs: started(vec![Is("process.name", "proxychains")]), behaviour: b("proxychains true") },
        RuleCase { name: "Suspicious Utility Launched via ProxyChains", file: "command_and_control_linux_suspicious_proxychains_activity.toml",
            needs: started(vec![Is("process.name", "proxychains"), Is("process.args", "nmap")]), behaviour: b("proxychains nmap 10.9.9.9") },
        RuleCase { name: "Potential Linux Tunneling and/or Port Forwarding via Command Line", file: "command_and_control_potential_tunneling_command_line.toml",
            needs: started(vec![Like("process.command_line", "* 10.1.1.1:8080:10.2.2.2:9090*")]), behaviour: b("socat 10.1.1.1:8080:10.2.2.2:9090") },
        RuleCase { name: "AppArmor Profile Compilation via apparmor_parser", file: "defense_evasion_apparmor_profile_compilation.toml",
            needs: started(vec![Is("process.name", "apparmor_parser"), Like("process.args", "-o*")]), behaviour: b("apparmor_parser -o /tmp/vigil-rules-profile") },
        RuleCase { name: "Executable Masquerading as Kernel Process", file: "defense_evasion_kthreadd_masquerading.toml",
            needs: started(vec![Like("process.name", "kworker*"), Present("process.executable")]), behaviour: b("kworker_vigil") },
        RuleCase { name: "ESXI Timestomping using Touch Command", file: "defense_evasion_esxi_suspicious_timestomp_touch.toml",
            needs: started(vec![Is("process.name", "touch"), Is("process.args", "-r"), Like("process.args", "/etc/vmware/*")]),
            behaviour: b("touch -r /etc/vmware/hostd/ref /tmp/vigil-rules-x") },
        RuleCase { name: "Potential Defense Evasion via Doas", file: "defense_evasion_doas_configuration_creation_or_rename.toml",
            needs: file_event(vec![Not("event.type", "deletion"), Is("file.path", "/etc/doas.conf")]),
            behaviour: in_private_mounts(&["/etc"], "echo permit nopass vigil > /etc/doas.conf") },
        RuleCase { name: "SELinux Configuration Creation or Renaming", file: "defense_evasion_selinux_configuration_creation_or_renaming.toml",
            needs: file_event(vec![Is("event.action", "creation"), Is("file.path", "/etc/selinux/config")]),
            behaviour: in_private_mounts(&["/etc"], "busybox mkdir /etc/selinux && echo SELINUX=disabled > /etc/selinux/config") },
        RuleCase { name: "SSH Authorized Keys File Deletion", file: "defense_evasion_authorized_keys_file_deletion.toml",
            needs: file_event(vec![Is("event.type", "deletion"), Is("file.name", "authorized_keys"), Not("process.executable", "/usr/bin/dockerd")]),
            behaviour: in_private_mounts(&["/root"], "busybox mkdir /root/.ssh && echo key > /root/.ssh/authorized_keys && busybox rm /root/.ssh/authorized_keys") },
        RuleCase { name: "Creation of Hidden Shared Object File", file: "defense_evasion_hidden_shared_object.toml",
            needs: file_event(vec![Is("event.type", "creation"), Is("file.extension", "so"), Like("file.name", ".*.so"), Not("process.name", "dockerd")]),
            behaviour: in_private_mounts(&["/etc"], "echo x > /etc/.vigil-rules.so") },
        RuleCase { name: "System Log File Deletion", file: "defense_evasion_log_files_deleted.toml",
            needs: file_event(vec![Is("event.type", "deletion"), Is("file.path", "/var/log/wtmp"), Not("process.name", "gzip")]),
            behaviour: in_private_mounts(&["/var/log"], "echo x > /var/log/wtmp && busybox rm /var/log/wtmp") },
        RuleCase { name: "DNS Request to Suspicious Top Level Domain", file: "command_and_control_dns_query_to_sus_top_level_domain.toml",
            needs: vec![Is("host.os.type", "linux"), Is("event.category", "network"), Like("dns.question.name", "*.xyz"), Present("process.name")],
            // Asked by the test itself (below), of a resolver it runs on 127.0.0.1.
            behaviour: String::new() },
    ]
}

/// The programs the cases run, as copies of `true` under their names.
const STAND_INS: &[&str] = &[
    "dmesg",
    "base32",
    "journalctl",
    "rmmod",
    "setenforce",
    "mount",
    "bpftool",
    "chattr",
    "mkdir",
    "shred",
    "systemctl",
    "service",
    "unshadow",
    "gdb",
    "curl",
    "ew",
    "ssh",
    "proxychains",
    "socat",
    "apparmor_parser",
    "kworker_vigil",
    "touch",
];

/// A policy for the one place the shipped file-change policy does not watch: log files.
const LOG_DELETIONS: &str = r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: observe-log-deletions
spec:
  kprobes:
  - call: sys_unlinkat
    syscall: true
    args:
    - index: 1
      type: path
    selectors:
    - matchArgs:
      - index: 1
        operator: Prefix
        values: ["/var/log/"]
  - call: sys_unlink
    syscall: true
    args:
    - index: 0
      type: path
    selectors:
    - matchArgs:
      - index: 0
        operator: Prefix
        values: ["/var/log/"]
"#;

#[test]
fn elastic_prebuilt_linux_rules_find_what_they_look_for_in_vigil_s_documents() {
    require_root();
    let dir = TempDir::new("elastic-rules");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let truth = std::fs::canonicalize("/bin/true").unwrap();
    // A multi-call binary (busybox, uutils) acts by its name: its copy named `dmesg` would clear
    // the kernel's ring buffer. Only a `true` of its own can stand in.
    assert_eq!(
        truth.file_name().and_then(|n| n.to_str()),
        Some("true"),
        "/bin/true is {}, a multi-call binary that would act as the programs it stands in for: install coreutils' true",
        truth.display()
    );
    for name in STAND_INS {
        std::fs::copy(&truth, bin.join(name)).unwrap();
    }
    let server = elastic::ElasticServer::start("k3y");
    let key = dir.path().join("key");
    std::fs::write(&key, "k3y").unwrap();
    let logs = dir.path().join("log-deletions.yaml");
    std::fs::write(&logs, LOG_DELETIONS).unwrap();
    let config = dir.path().join("vigil.yaml");
    std::fs::write(
        &config,
        format!(
            "exporters:\n  spool_dir: {spool}\n  sinks:\n  - name: elastic\n    type: elasticsearch\n    endpoint: {endpoint}\n    api_key: {{file: {key}}}\n    allow_plaintext: true\n    linger_ms: 50\n",
            spool = dir.path().join("spool").display(),
            endpoint = server.endpoint(),
            key = key.display(),
        ),
    )
    .unwrap();
    let policy = |name: &str| {
        rules_dir()
            .join(format!("{name}.yaml"))
            .display()
            .to_string()
    };
    let resolver = TestResolver::start(
        "127.0.0.1:53",
        &[("c2.vigil-rules.xyz", std::net::Ipv4Addr::new(10, 9, 9, 9))],
    );
    let agent = Agent::start(&[
        "--config",
        config.to_str().unwrap(),
        "--policy",
        &policy("observe-file-changes"),
        "--policy",
        &policy("observe-dns"),
        "--policy",
        logs.to_str().unwrap(),
    ]);

    let cases = cases(&bin);
    for case in cases.iter().filter(|c| !c.behaviour.is_empty()) {
        // `; exit $?`: the shell forks the command as a user's shell does, rather than exec it
        // in its own place (so its parent is the shell).
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{}; exit $?", case.behaviour))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: `{}`: {}",
            case.name,
            case.behaviour,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    sock.send_to(
        &query(0x7171, "c2.vigil-rules.xyz", TYPE::A),
        resolver.addr(),
    )
    .unwrap();
    let mut answer = [0u8; 512];
    sock.recv_from(&mut answer)
        .expect("the test resolver answers");
    // The sink delivers every 50 ms: wait for the last behaviour's documents, then stop.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let run = agent.stop();
    drop(resolver);

    assert_eq!(server.violations(), vec![], "every document follows ECS");
    let docs: Vec<Value> = server.docs().into_iter().map(|(_, d)| d).collect();
    assert!(
        !docs.is_empty(),
        "no document reached the server:\n{}",
        run.stderr.join("\n")
    );
    let mut fired = Vec::new();
    let mut missed = Vec::new();
    for case in &cases {
        let hit = docs.iter().any(|d| case.needs.iter().all(|n| holds(d, *n)));
        if hit {
            fired.push(case.name);
        } else {
            missed.push(format!(
                "{} ({}): no document with {:?}",
                case.name, case.file, case.needs
            ));
        }
    }
    eprintln!(
        "{} of {} rules find what they look for",
        fired.len(),
        cases.len()
    );
    for m in &missed {
        eprintln!("  missed: {m}");
    }
    assert_eq!(cases.len(), 30);
    // The issue asks for 25 of 30; all 30 fire, and a regression in any one should be seen.
    assert!(
        missed.is_empty(),
        "{} of 30 rules fired:\n{}",
        fired.len(),
        missed.join("\n")
    );
}
