//! `make bench`: what the agent costs, measured in one run as ratios against the same machine
//! without it.
//!
//! Rows:
//! - `/bin/true` exec rate, sequential (one fork+exec+wait at a time, the latency a shell
//!   script feels): without the agent, with it, and the ratio;
//! - exec storm (4 parallel spawners): rate without and with the agent, and the agent's own CPU
//!   per exec and its record throughput per CPU-second.
//!
//! Each "without" figure is the mean of a run before and a run after the agent's run, so drift
//! of the machine during the benchmark shows up as a spread rather than as agent cost.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use vigil_tests::Agent;

const SEQUENTIAL: usize = 2000;
const STORM: usize = 8000;
const STORM_WORKERS: usize = 4;

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

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("agent stat");
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[11] + f[12]) as f64 / tck
}

struct WithAgent {
    seq_rate: f64,
    storm_rate: f64,
    storm_cpu: f64,
    storm_records: u64,
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
        storm_records: run.stats["records"].as_u64().unwrap_or(0),
        drops: run.stats["ringbuf_drops"]["total"].as_u64().unwrap_or(0),
    }
}

fn main() {
    vigil_tests::require_root();
    // Warm the page cache and the spawn path before measuring.
    exec_rate(200, 1);

    let seq_before = exec_rate(SEQUENTIAL, 1);
    let storm_before = exec_rate(STORM, STORM_WORKERS);
    let w = with_agent();
    let seq_after = exec_rate(SEQUENTIAL, 1);
    let storm_after = exec_rate(STORM, STORM_WORKERS);

    let seq_base = (seq_before + seq_after) / 2.0;
    let storm_base = (storm_before + storm_after) / 2.0;
    let cpu_us_per_exec = w.storm_cpu * 1e6 / STORM as f64;
    // Each exec'd child produces a fork, an exec and an exit record.
    let storm_records = (STORM * 3) as f64;

    println!("| benchmark | without agent | with agent | ratio (with/without) |");
    println!("|---|---|---|---|");
    println!(
        "| `/bin/true` exec rate, sequential, {SEQUENTIAL} execs | {seq_base:.0}/s (runs {seq_before:.0}, {seq_after:.0}) | {:.0}/s | {:.3} |",
        w.seq_rate,
        w.seq_rate / seq_base
    );
    println!(
        "| exec storm, {STORM} execs on {STORM_WORKERS} threads | {storm_base:.0}/s (runs {storm_before:.0}, {storm_after:.0}) | {:.0}/s | {:.3} |",
        w.storm_rate,
        w.storm_rate / storm_base
    );
    println!();
    println!("| agent during the storm | value |");
    println!("|---|---|");
    println!("| agent CPU for {STORM} execs | {:.3} s |", w.storm_cpu);
    println!("| agent CPU per exec (fork + exec + exit records, JSON to file) | {cpu_us_per_exec:.1} µs |");
    if w.storm_cpu > 0.0 {
        println!(
            "| agent throughput | {:.0} records per CPU-second |",
            storm_records / w.storm_cpu
        );
    }
    println!(
        "| records read in the whole run / ring-buffer drops | {} / {} |",
        w.storm_records, w.drops
    );
}
