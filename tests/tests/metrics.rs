//! The agent's Prometheus endpoint, scraped over real HTTP while real processes run: the
//! counters agree with the events the agent delivered, the kernel's run counts and times of the
//! agent's programs are there once the agent turned `bpf_stats` on, and the probes answer.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use vigil_tests::{http_get, metric, require_root, try_http_get, Agent};

const EXECS: &str = "vigil_events_total{type=\"process_exec\"}";
const EXITS: &str = "vigil_events_total{type=\"process_exit\"}";

fn scrape(address: &str) -> String {
    let (status, body) = http_get(address, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.ends_with("# EOF\n"),
        "an OpenMetrics text ends so:\n{body}"
    );
    body
}

fn count(text: &str, series: &str) -> u64 {
    metric(text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}")) as u64
}

/// Execs of `/bin/true` with `marker` as argument, from `threads` threads, `each` per thread.
fn exec_storm(marker: &str, threads: usize, each: usize) -> std::thread::JoinHandle<()> {
    let marker = marker.to_string();
    std::thread::spawn(move || {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let marker = marker.clone();
                std::thread::spawn(move || {
                    for _ in 0..each {
                        Command::new("/bin/true").arg(&marker).status().unwrap();
                    }
                })
            })
            .collect();
        workers.into_iter().for_each(|w| w.join().unwrap());
    })
}

fn execs_of(events: &[Value], marker: &str) -> usize {
    events
        .iter()
        .filter(|e| {
            e["process_exec"]["process"]["arguments"]
                .as_str()
                .is_some_and(|a| a == marker)
        })
        .count()
}

#[test]
fn scrapes_during_an_exec_storm_agree_with_the_events_delivered() {
    require_root();
    let agent = Agent::start(&[]);
    let address = agent.metrics_address();
    assert_eq!(http_get(&address, "/readyz").0, 200);
    assert_eq!(http_get(&address, "/healthz").0, 200);
    let marker = format!("vigil-metrics-storm-{}", std::process::id());
    let (threads, each) = (4, 100);
    let storm = exec_storm(&marker, threads, each);
    // Scraped while the storm runs: counters never go back.
    let mut during = Vec::new();
    while !storm.is_finished() {
        during.push(count(&scrape(&address), EXECS));
        std::thread::sleep(Duration::from_millis(20));
    }
    storm.join().unwrap();
    assert!(
        during.len() >= 2,
        "fewer than two scrapes during the storm: {during:?}"
    );
    assert!(
        during.windows(2).all(|w| w[0] <= w[1]),
        "the exec counter went back: {during:?}"
    );
    // Once the storm's events are all delivered, a scrape counts at least them ...
    let deadline = Instant::now() + Duration::from_secs(30);
    while execs_of(&agent.events_so_far(), &marker) < threads * each {
        assert!(
            Instant::now() < deadline,
            "the storm's {} execs were not all delivered in 30 s",
            threads * each
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = scrape(&address);
    let run = agent.stop();
    let (execs, exits) = (count(&after, EXECS), count(&after, EXITS));
    // ... and no more than the agent delivered in all: what it counted, it delivered.
    let delivered = |kind: &str| run.events.iter().filter(|e| e.get(kind).is_some()).count() as u64;
    assert!(
        (threads * each) as u64 <= execs && execs <= delivered("process_exec"),
        "storm {}, scraped {execs}, delivered {}",
        threads * each,
        delivered("process_exec")
    );
    assert!(
        (threads * each) as u64 <= exits && exits <= delivered("process_exit"),
        "scraped {exits} exits, delivered {}",
        delivered("process_exit")
    );
    assert!(
        count(&after, "vigil_ringbuf_records_total") >= execs + exits,
        "{after}"
    );
    // Each exec's parent and each exit's execution were looked up, and found.
    assert!(
        count(&after, "vigil_process_cache_lookups_total{result=\"hit\"}") >= execs,
        "{after}"
    );
    // The loop's time went to each stage of the storm's records, and in all to less than the
    // agent has been up.
    let stage = |name: &str| {
        metric(
            &after,
            &format!("vigil_pipeline_stage_seconds_total{{stage=\"{name}\"}}"),
        )
        .unwrap_or_else(|| panic!("no {name} stage in:\n{after}"))
    };
    let stages: Vec<f64> = ["decode", "enrich", "deliver"].map(stage).to_vec();
    let uptime = metric(&after, "vigil_uptime_seconds").expect("the uptime");
    assert!(
        stages.iter().all(|s| *s > 0.0) && stages.iter().sum::<f64>() < uptime,
        "stages {stages:?}, up {uptime} s"
    );
    // What waits in the ring buffer is read from its own positions (seen waiting during a
    // burst in `tests/tests/exporters.rs`): whole records, within its size.
    let size = metric(&after, "vigil_ringbuf_size_bytes").expect("the size");
    let used = metric(&after, "vigil_ringbuf_used_bytes").expect("the bytes waiting");
    assert!(
        used <= size && used % 8.0 == 0.0,
        "{used} of {size} bytes waiting"
    );
    // Every CPU's exec drops are a series from the start; none was dropped here.
    assert_eq!(
        metric(&after, "vigil_ringbuf_drops_total{kind=\"exec\",cpu=\"0\"}"),
        Some(0.0),
        "{after}"
    );
    eprintln!(
        "{} scrapes during the storm, the last at {} execs; after it {execs} execs and {exits} exits counted, {} and {} delivered",
        during.len(),
        during.last().copied().unwrap_or(0),
        delivered("process_exec"),
        delivered("process_exit")
    );
}

#[test]
fn the_agent_s_programs_report_their_runs_and_run_time() {
    require_root();
    // Off without the flag: no run counts (unless the machine's own sysctl turned them on).
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_default();
    let without = Agent::start(&[]);
    let text = scrape(&without.metrics_address());
    drop(without.stop());
    if sysctl.trim() == "0" {
        assert_eq!(
            metric(
                &text,
                "vigil_bpf_program_runs_total{program=\"vigil_exec\"}"
            ),
            Some(0.0),
            "bpf_stats are off by default:\n{text}"
        );
    }
    let agent = Agent::start(&["--bpf-stats"]);
    let address = agent.metrics_address();
    let before = scrape(&address);
    let marker = format!("vigil-metrics-runs-{}", std::process::id());
    exec_storm(&marker, 1, 50).join().unwrap();
    let after = scrape(&address);
    drop(agent.stop());
    let runs = |text: &str| count(text, "vigil_bpf_program_runs_total{program=\"vigil_exec\"}");
    let seconds = |text: &str| {
        metric(
            text,
            "vigil_bpf_program_run_seconds_total{program=\"vigil_exec\"}",
        )
        .unwrap_or_else(|| panic!("no run time for vigil_exec:\n{text}"))
    };
    assert!(
        runs(&after) >= runs(&before) + 50,
        "vigil_exec ran {} times before the 50 execs and {} after",
        runs(&before),
        runs(&after)
    );
    assert!(seconds(&after) > seconds(&before), "{after}");
    let ns = (seconds(&after) - seconds(&before)) * 1e9 / (runs(&after) - runs(&before)) as f64;
    eprintln!("vigil_exec: {ns:.0} ns per run over the 50 execs");
}

#[test]
fn without_the_endpoint_nothing_listens_and_a_taken_address_is_served_once_free() {
    require_root();
    let first = Agent::start(&[]);
    let taken = first.metrics_address();
    // A second agent asked for the address the first one holds (an upgrade's overlap) starts
    // all the same, and serves it once the first has gone.
    let second = Agent::start(&["--metrics-address", &taken]);
    assert!(
        second
            .log_lines()
            .iter()
            .any(|l| l.contains(&format!("cannot serve metrics on {taken}"))),
        "{:#?}",
        second.log_lines()
    );
    drop(first.stop());
    second.wait_for_log(&format!("metrics served on http://{taken}/"), 0);
    assert_eq!(http_get(&taken, "/readyz").0, 200);
    drop(second.stop());
    let none = Agent::start(&["--no-metrics"]);
    assert!(
        !none
            .log_lines()
            .iter()
            .any(|l| l.contains("metrics served")),
        "{:#?}",
        none.log_lines()
    );
    drop(none.stop());
}

/// The sum over CPUs of `vigil_ringbuf_drops_total{kind=...}`.
fn drops(text: &str, kind: &str) -> u64 {
    let prefix = format!("vigil_ringbuf_drops_total{{kind=\"{kind}\",");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn a_full_ring_buffer_is_counted_per_kind_and_cpu_and_said() {
    require_root();
    // The smallest ring buffer, and an agent that reads nothing while the storm fills it.
    let agent = Agent::start(&["--ringbuf-size", "1"]);
    let address = agent.metrics_address();
    assert_eq!(drops(&scrape(&address), "exec"), 0);
    let pid = agent.pid() as i32;
    // SAFETY: signals to the agent this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    // Each exec record carries about 4 KiB of arguments: a few hundred fill 1 MiB.
    let long = "x".repeat(4000);
    for _ in 0..600 {
        Command::new("/bin/true").arg(&long).status().unwrap();
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    agent.wait_for_log("ring buffer full", 0);
    let text = scrape(&address);
    assert_eq!(http_get(&address, "/healthz").0, 200);
    let run = agent.stop();
    let scraped = drops(&text, "exec");
    assert!(scraped > 0, "no exec drops counted:\n{text}");
    // The agent's own count at its stop has them all (and any the machine's own execs
    // overflowed the small buffer with after the scrape).
    let last = run.stats["ringbuf_drops"]["exec"].as_u64().unwrap_or(0);
    assert!(
        last >= scraped,
        "scraped {scraped}, at the stop {}",
        run.stats
    );
    // The stream says it too, in place, as Tetragon's does: every loss is in a
    // `rate_limit_info` event, the last one written as the agent stops.
    let said: u64 = run
        .events
        .iter()
        .filter_map(|e| e.get("rate_limit_info"))
        .map(|r| {
            r["number_of_dropped_process_events"]
                .as_str()
                .and_then(|n| n.parse::<u64>().ok())
                .expect("a count, as a decimal string")
        })
        .sum();
    // Every drop counted up to the final drain is said; the stats are read a moment later
    // (the machine's own execs may overflow the small buffer in between).
    let total = run.stats["ringbuf_drops"]["total"].as_u64().unwrap_or(0);
    assert!(
        said >= scraped && said <= total,
        "rate_limit_info events said {said} lost; scraped {scraped}, counted at the stop {total}"
    );
    eprintln!("{scraped} exec records dropped by a full 1 MiB ring buffer, counted and said");
}

/// `vigil status --overhead` against the agent's socket.
fn overhead(agent: &Agent, json: bool) -> std::process::Output {
    let server = format!("unix://{}", agent.socket.display());
    let mut args = vec![
        "status",
        "--overhead",
        "--interval",
        "1",
        "--server",
        &server,
    ];
    if json {
        args.extend(["-o", "json"]);
    }
    Command::new(vigil_tests::vigil_bin())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn status_shows_each_program_s_runs_per_second_and_cost_per_run() {
    require_root();
    let without = Agent::start(&[]);
    let refused = overhead(&without, false);
    drop(without.stop());
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--bpf-stats"),
        "{refused:?}"
    );
    let agent = Agent::start(&["--bpf-stats"]);
    // Execs all along both measurements.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storm = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                Command::new("/bin/true").status().unwrap();
            }
        })
    };
    let table = overhead(&agent, false);
    let json = overhead(&agent, true);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    storm.join().unwrap();
    drop(agent.stop());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "{table:?}");
    assert!(text.starts_with("PROGRAM"), "{text}");
    let v: Value = serde_json::from_slice(&json.stdout).unwrap_or_else(|e| panic!("{e}: {json:?}"));
    let exec = v["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["program"] == "vigil_exec")
        .unwrap_or_else(|| panic!("no vigil_exec in {v}"));
    assert!(exec["runs_per_second"].as_f64().unwrap() > 0.0, "{v}");
    assert!(exec["ns_per_run"].as_f64().unwrap() > 0.0, "{v}");
    eprintln!("{text}");
}

#[test]
fn idle_connections_cost_neither_the_events_nor_the_endpoint_for_long() {
    require_root();
    let agent = Agent::start(&[]);
    let address = agent.metrics_address();
    // More connections than the endpoint serves at once, none of them sending a request.
    let held: Vec<std::net::TcpStream> = (0..64)
        .filter_map(|_| std::net::TcpStream::connect(&address).ok())
        .collect();
    let marker = format!("vigil-metrics-idle-{}", std::process::id());
    Command::new("/bin/true").arg(&marker).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while execs_of(&agent.events_so_far(), &marker) == 0 {
        assert!(
            Instant::now() < deadline,
            "an exec was not delivered while {} idle connections were held",
            held.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The idle ones are closed after the request deadline; a scrape is served again.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if try_http_get(&address, "/metrics").is_ok_and(|(status, _)| status == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no scrape served 20 s after {} idle connections were opened",
            held.len()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(held);
    drop(agent.stop());
}

#[test]
fn a_refused_policy_is_a_load_error_and_the_others_run() {
    require_root();
    let dir = vigil_tests::TempDir::new("metrics-policies");
    std::fs::copy(
        vigil_tests::rules_dir().join("observe-secret-reads.yaml"),
        dir.path().join("observe-secret-reads.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: broken\nspec:\n  kprobes:\n  - call: sys_write\n    syscall: true\n    args:\n    - index: 0\n      type: no-such-type\n",
    )
    .unwrap();
    let agent = Agent::start(&["--policy-dir", dir.path().to_str().unwrap()]);
    let text = scrape(&agent.metrics_address());
    drop(agent.stop());
    assert_eq!(count(&text, "vigil_policy_load_errors_total"), 1, "{text}");
    assert_eq!(
        count(&text, "vigil_policies{state=\"refused\"}"),
        1,
        "{text}"
    );
    assert_eq!(
        count(&text, "vigil_policies{state=\"enabled\"}"),
        1,
        "{text}"
    );
    assert!(
        count(
            &text,
            "vigil_policy_kernel_memory_bytes{policy=\"observe-secret-reads\"}"
        ) > 0,
        "{text}"
    );
}
