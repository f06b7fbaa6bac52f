//! `make bench`: what the agent costs, measured in one run as ratios against the same machine
//! without it.
//!
//! Rows:
//! - `/bin/true` exec rate, sequential (one fork+exec+wait at a time, the latency a shell
//!   script feels): without the agent, with it, and the ratio;
//! - exec storm (4 parallel spawners): rate without and with the agent, and the agent's own CPU
//!   per exec and its record throughput per CPU-second;
//! - the file, write, getppid, read, TCP and DNS paths with the shipped policies loaded, each
//!   also at the floor: programs that do nothing, attached where the agent's programs are;
//! - start-up (to the "agent ready" line) and stop (SIGTERM to exit), with no policy and with
//!   the shipped library and Sigma rules (alone: `vigil-bench --start-stop`; the hot paths
//!   alone: `vigil-bench --hot-paths`).
//!
//! Rounds without and with the agent alternate (4 without, 3 with) and the table shows medians
//! and every round, so drift of the machine shows up as spread rather than as agent cost.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use vigil_tests::{
    measure::{cpu_seconds, median},
    Agent,
};

const SEQUENTIAL: usize = 2000;
const STORM: usize = 8000;
const STORM_WORKERS: usize = 4;
const ROUNDS: usize = 3;

fn spawn_true() {
    let status = Command::new("/bin/true").status().expect("spawn /bin/true");
    assert!(status.success());
}

/// Execs per second for `n` execs on `workers` threads.
fn exec_rate(n: usize, workers: usize) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| (0..n / workers).for_each(|_| spawn_true()));
        }
    });
    n as f64 / start.elapsed().as_secs_f64()
}

const OPENS: usize = 200_000;
/// write()s per measurement.
const WRITES: usize = 200_000;

/// Operations per second of the child loop `mode` on `path`, measured in a child process
/// started now (so that, with the agent running, it is a process the agent saw exec, as nearly
/// all are).
fn child_rate(mode: &str, path: &str) -> f64 {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .args([mode, path])
        .output()
        .expect("spawn open loop");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a rate")
}

/// The child side of the open benchmark: open()+close() of `path`.
fn open_loop(path: &str) {
    let start = Instant::now();
    for _ in 0..OPENS {
        drop(std::fs::File::open(path).expect("open"));
    }
    println!("{}", OPENS as f64 / start.elapsed().as_secs_f64());
}

/// The child side of the write benchmark: 64-byte write()s to one descriptor.
fn write_loop(path: &str) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create");
    let block = [b'x'; 64];
    let start = Instant::now();
    for i in 0..WRITES {
        // A file is kept small; /dev/null cannot be truncated.
        if i % 4096 == 0 && path != "/dev/null" {
            f.set_len(0).expect("truncate");
        }
        f.write_all(&block).expect("write");
    }
    println!("{}", WRITES as f64 / start.elapsed().as_secs_f64());
}

/// The child side of the read benchmark: 64-byte read()s from one descriptor.
fn read_loop(path: &str) {
    use std::io::{Read, Seek};
    std::fs::write(path, [b'x'; 64 * 4096]).expect("write");
    let mut f = std::fs::File::open(path).expect("open");
    let mut block = [0u8; 64];
    let start = Instant::now();
    for i in 0..WRITES {
        if i % 4096 == 0 {
            f.rewind().expect("rewind");
        }
        f.read_exact(&mut block).expect("read");
    }
    println!("{}", WRITES as f64 / start.elapsed().as_secs_f64());
}

/// TCP connections opened and closed per measurement.
const CONNECTS: usize = 5_000;

/// The child side of the TCP benchmark: connect to a local listener and close, again and again.
/// The server closes first (its side keeps the TIME_WAIT), so the client's ports are free for
/// the next round at once.
fn tcp_loop(addr: &str) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind(addr).expect("bind");
    let target = listener.local_addr().expect("local address");
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let start = Instant::now();
    let mut sink = Vec::new();
    for _ in 0..CONNECTS {
        let mut c = std::net::TcpStream::connect(target).expect("connect");
        let _ = c.read_to_end(&mut sink);
    }
    println!("{}", CONNECTS as f64 / start.elapsed().as_secs_f64());
}

/// DNS lookups per measurement.
const LOOKUPS: usize = 5_000;

/// The child side of the DNS benchmark: a stub resolver's lookups (one query sent and its
/// answer received on a connected UDP socket) against the resolver at `addr`, again and again.
fn dns_loop(addr: &str) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.connect(addr).expect("connect");
    let mut buf = [0u8; 512];
    let start = Instant::now();
    for i in 0..LOOKUPS {
        let q = vigil_tests::dns::query(
            i as u16,
            "unknown-galaxy.svc.cluster.local",
            vigil_tests::dns::TYPE::A,
        );
        sock.send(&q).expect("send");
        sock.recv(&mut buf).expect("an answer");
    }
    println!("{}", LOOKUPS as f64 / start.elapsed().as_secs_f64());
}

/// getppid()s per measurement: a system call no policy names, which still takes the kernel's
/// traced path once any system call tracepoint is on.
const GETPPIDS: usize = 1_000_000;

/// The child side of the getppid benchmark.
fn getppid_loop() {
    let start = Instant::now();
    for _ in 0..GETPPIDS {
        // SAFETY: getppid has no preconditions.
        std::hint::black_box(unsafe { libc::getppid() });
    }
    println!("{}", GETPPIDS as f64 / start.elapsed().as_secs_f64());
}

/// One hot path: what the row says, and the child loop that measures it.
struct HotPath {
    what: String,
    mode: &'static str,
    arg: String,
    base: Vec<f64>,
    floor: Vec<f64>,
    with: Vec<f64>,
}

impl HotPath {
    fn new(what: String, mode: &'static str, arg: &str) -> HotPath {
        HotPath {
            what,
            mode,
            arg: arg.to_string(),
            base: vec![],
            floor: vec![],
            with: vec![],
        }
    }

    fn rate(&self) -> f64 {
        child_rate(self.mode, &self.arg)
    }
}

/// The hot paths with the shipped policies loaded: without the agent, at the floor (programs
/// that do nothing, attached where the agent's are: `vigil_tests::floor`) and with the agent,
/// rounds alternating.
fn open_rows() {
    let scratch = vigil_tests::TempDir::new("bench-open");
    let plain = scratch.path().join("plain.txt");
    std::fs::write(&plain, b"x").unwrap();
    let plain = plain.to_str().unwrap().to_string();
    let written = scratch.path().join("written.txt");
    let written = written.to_str().unwrap().to_string();
    let resolver = vigil_tests::dns::TestResolver::start("127.0.0.1:53", &[]);
    let resolver_addr = resolver.addr().to_string();
    let mut paths = [
        HotPath::new(format!("open()+close() of a file no policy matches, {OPENS} times"), "--open-loop", &plain),
        HotPath::new(format!("open()+close() of `/etc/passwd` by a binary the deny policy does not name, {OPENS} times"), "--open-loop", "/etc/passwd"),
        HotPath::new(format!("64-byte write() to a file outside the watched directories, {WRITES} times"), "--write-loop", &written),
        HotPath::new(format!("64-byte write() to `/dev/null`, {WRITES} times"), "--write-loop", "/dev/null"),
        HotPath::new(format!("getppid(), {GETPPIDS} times"), "--getppid-loop", ""),
        HotPath::new(format!("64-byte read() from a file, {WRITES} times (socket receives are watched for DNS answers)"), "--read-loop", &written),
        HotPath::new(format!("TCP connect + close on loopback (the shipped TCP policy's hooks run, its in-kernel filter drops them), {CONNECTS} times"), "--tcp-loop", "127.0.0.1:0"),
        HotPath::new(format!("DNS lookup (query sent, NXDOMAIN received) on a connected UDP socket to a resolver on 127.0.0.1:53, {LOOKUPS} times: observe-dns reports both"), "--dns-loop", &resolver_addr),
    ];
    let dir = vigil_tests::rules_dir();
    let library = ["--policy-dir", dir.to_str().unwrap()];
    let points = {
        let agent = Agent::start(&library);
        let points = vigil_tests::floor::attach_points(agent.pid());
        agent.stop();
        points
    };
    for round in 0..=ROUNDS {
        paths.iter_mut().for_each(|p| p.base.push(p.rate()));
        if round < ROUNDS {
            let floor = vigil_tests::floor::Floor::attach(&points);
            paths.iter_mut().for_each(|p| p.floor.push(p.rate()));
            drop(floor);
            let agent = Agent::start(&library);
            paths.iter_mut().for_each(|p| p.with.push(p.rate()));
            agent.stop();
        }
    }
    drop(resolver);
    println!();
    println!(
        "| hot path, shipped policies (median of rounds) | without agent | floor: no-op programs at the agent's {} attach points | with agent | floor / without | with / without | with / floor |",
        points.len()
    );
    println!("|---|---|---|---|---|---|---|");
    for p in &paths {
        let (b, f, w) = (
            median(p.base.clone()),
            median(p.floor.clone()),
            median(p.with.clone()),
        );
        println!(
            "| {} | {b:.0}/s ({}) | {f:.0}/s ({}) | {w:.0}/s ({}) | {:.3} | {:.3} | {:.3} |",
            p.what,
            list(&p.base),
            list(&p.floor),
            list(&p.with),
            f / b,
            w / b,
            w / f
        );
    }
}

/// One table row: the median rate without and with the agent, every round's, and the ratio.
fn rate_row(what: &str, base: &[f64], with: &[f64]) {
    let (b, w) = (median(base.to_vec()), median(with.to_vec()));
    println!(
        "| {what} | {b:.0}/s ({}) | {w:.0}/s ({}) | {:.3} |",
        list(base),
        list(with),
        w / b
    );
}

/// One round with the agent running.
struct WithAgent {
    seq_rate: f64,
    storm_rate: f64,
    storm_cpu: f64,
    records: u64,
    drops: u64,
}

fn with_agent() -> WithAgent {
    let agent = Agent::start(&[]);
    std::thread::sleep(Duration::from_millis(300));
    let seq_rate = exec_rate(SEQUENTIAL, 1);
    let cpu0 = cpu_seconds(agent.pid());
    let storm_rate = exec_rate(STORM, STORM_WORKERS);
    // Let the agent finish reading what the storm queued before reading its CPU.
    std::thread::sleep(Duration::from_millis(500));
    let storm_cpu = cpu_seconds(agent.pid()) - cpu0;
    let run = agent.stop();
    WithAgent {
        seq_rate,
        storm_rate,
        storm_cpu,
        records: run.stats["records"].as_u64().unwrap_or(0),
        drops: run.stats["ringbuf_drops"]["total"].as_u64().unwrap_or(0),
    }
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--open-loop" {
        return open_loop(&args[2]);
    }
    if args.len() == 3 && args[1] == "--write-loop" {
        return write_loop(&args[2]);
    }
    if args.len() == 3 && args[1] == "--tcp-loop" {
        return tcp_loop(&args[2]);
    }
    if args.len() == 3 && args[1] == "--read-loop" {
        return read_loop(&args[2]);
    }
    if args.len() == 3 && args[1] == "--getppid-loop" {
        return getppid_loop();
    }
    if args.len() == 3 && args[1] == "--dns-loop" {
        return dns_loop(&args[2]);
    }
    vigil_tests::require_root();
    if args.len() == 2 && args[1] == "--start-stop" {
        return start_stop_rows();
    }
    if args.len() == 2 && args[1] == "--hot-paths" {
        return open_rows();
    }
    // Warm the page cache and the spawn path before measuring.
    exec_rate(200, 1);

    // Baseline and agent rounds alternate, so drift of the machine during the run shows up as
    // spread in both columns instead of as agent cost.
    let (mut seq_base, mut storm_base, mut rounds) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=ROUNDS {
        seq_base.push(exec_rate(SEQUENTIAL, 1));
        storm_base.push(exec_rate(STORM, STORM_WORKERS));
        if round < ROUNDS {
            rounds.push(with_agent());
        }
    }
    let seq_with: Vec<f64> = rounds.iter().map(|r| r.seq_rate).collect();
    let storm_with: Vec<f64> = rounds.iter().map(|r| r.storm_rate).collect();
    let cpu: f64 = rounds.iter().map(|r| r.storm_cpu).sum();
    let storm_execs = (STORM * ROUNDS) as f64;
    let (records, drops): (u64, u64) = (
        rounds.iter().map(|r| r.records).sum(),
        rounds.iter().map(|r| r.drops).sum(),
    );

    println!(
        "| benchmark (median of rounds) | without agent | with agent | ratio (with/without) |"
    );
    println!("|---|---|---|---|");
    rate_row(
        &format!("`/bin/true` exec rate, sequential, {SEQUENTIAL} execs"),
        &seq_base,
        &seq_with,
    );
    rate_row(
        &format!("exec storm, {STORM} execs on {STORM_WORKERS} threads"),
        &storm_base,
        &storm_with,
    );
    open_rows();
    println!();
    println!("| agent during the storms ({ROUNDS} × {STORM} execs) | value |");
    println!("|---|---|");
    println!("| agent CPU, all storms | {cpu:.3} s |");
    println!(
        "| agent CPU per exec (fork + exec + exit records; 2 JSON events to a file) | {:.1} µs |",
        cpu * 1e6 / storm_execs
    );
    if cpu > 0.0 {
        println!(
            "| agent throughput | {:.0} records per CPU-second |",
            storm_execs * 3.0 / cpu
        );
    }
    println!("| records read / ring-buffer drops, all rounds | {records} / {drops} |");
    start_stop_rows();
}

/// Start-up and stop of the agent, median of `ROUNDS` + 2 runs each: with no policy, and with
/// the shipped policies and Sigma rules (`make run`).
fn start_stop_rows() {
    let rules = vigil_tests::rules_dir();
    let sigma = rules.join("../sigma");
    let library = [
        "--policy-dir",
        rules.to_str().unwrap(),
        "--sigma-dir",
        sigma.to_str().unwrap(),
    ];
    println!();
    println!(
        "| agent start and stop (median of {} runs) | ready after | stop after |",
        ROUNDS + 2
    );
    println!("|---|---|---|");
    for (what, args) in [
        ("no policy", &[][..]),
        ("the shipped policies and Sigma rules", &library[..]),
    ] {
        let (mut ready, mut stop) = (vec![], vec![]);
        for _ in 0..ROUNDS + 2 {
            let (r, s) = start_and_stop(args);
            ready.push(r);
            stop.push(s);
        }
        println!(
            "| {what} | {:.2} s ({}) | {:.2} s ({}) |",
            median(ready.clone()),
            list_secs(&ready),
            median(stop.clone()),
            list_secs(&stop)
        );
    }
}

/// Seconds from spawning the agent to its "agent ready" line, and from SIGTERM to its exit.
fn start_and_stop(args: &[&str]) -> (f64, f64) {
    use std::io::{BufRead, BufReader};
    let start = Instant::now();
    let mut child = Command::new(vigil_tests::vigil_bin())
        .args(["agent", vigil_tests::NO_PERSIST])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn vigil agent");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ready = loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("agent ready") => break start.elapsed().as_secs_f64(),
            Some(_) => continue,
            None => panic!("the agent ended before it was ready"),
        }
    };
    let stopping = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().expect("wait for the agent");
    let stop = stopping.elapsed().as_secs_f64();
    // The next run starts once the kernel has detached this one's programs.
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    vigil_tests::wait_for_detach(&rest);
    (ready, stop)
}

fn list_secs(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}
