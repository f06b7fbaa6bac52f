//! `vigil-bench-uprobes`: what a uprobe costs on a hot function. A function of this binary is
//! called in a loop without the agent, then with the agent hooking it from a policy two ways:
//! a selector that never matches (the breakpoint, the kernel's uprobe handling and the
//! selector walk: the cost every call of a hooked function pays), and no selector (an event
//! per call as well, which the ring buffer cannot all take: what is dropped is counted, not
//! waited for). The floor beside them: the same function with a uprobe of the kernel's own
//! tracing (a tracefs uprobe event, no BPF program), which pays the breakpoint and the
//! single-step and nothing of vigil's. Prints calls per second and the ratios of that one run.

use std::time::Instant;

use vigil_tests::{measure::median, Agent, TempDir};

const ROUNDS: usize = 3;
const CALLS: u64 = 300_000;
const SYMBOL: &str = "vigil_bench_uprobe_target";

/// The hooked function: cheap, not inlined, and found by its symbol in this binary.
#[no_mangle]
#[inline(never)]
pub extern "C" fn vigil_bench_uprobe_target(x: u64) -> u64 {
    std::hint::black_box(x.wrapping_mul(31) ^ 7)
}

fn calls_per_second() -> f64 {
    let start = Instant::now();
    let mut acc = 0u64;
    for i in 0..CALLS {
        acc = acc.wrapping_add(vigil_bench_uprobe_target(std::hint::black_box(i)));
    }
    std::hint::black_box(acc);
    CALLS as f64 / start.elapsed().as_secs_f64()
}

fn policy(exe: &str, selectors: &str) -> String {
    format!(
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: bench-uprobe\nspec:\n  uprobes:\n  - path: {exe}\n    symbols: [{SYMBOL}]\n    args:\n    - index: 0\n      type: uint64\n{selectors}"
    )
}

const TRACEFS: &str = "/sys/kernel/tracing";

/// A tracefs uprobe event on the function, enabled while it lives: the kernel's floor.
struct TracefsUprobe;

impl TracefsUprobe {
    fn new(exe: &str) -> Result<TracefsUprobe, String> {
        let bytes = std::fs::read(exe).map_err(|e| format!("{exe}: {e}"))?;
        let obj = object::File::parse(&*bytes).map_err(|e| e.to_string())?;
        let offset = vigil_policy_engine::uprobes::symbol_offset(&obj, SYMBOL)
            .ok_or_else(|| format!("no {SYMBOL} in {exe}"))?;
        let write = |file: &str, text: &str| {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .append(true)
                .open(format!("{TRACEFS}/{file}"))
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| format!("{TRACEFS}/{file}: {e}"))
        };
        write(
            "uprobe_events",
            &format!("p:vigil_bench/floor {exe}:{offset:#x}\n"),
        )?;
        write("events/vigil_bench/floor/enable", "1")?;
        Ok(TracefsUprobe)
    }
}

impl Drop for TracefsUprobe {
    fn drop(&mut self) {
        let _ = std::fs::write(format!("{TRACEFS}/events/vigil_bench/floor/enable"), "0");
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .open(format!("{TRACEFS}/uprobe_events"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"-:vigil_bench/floor\n"));
    }
}

fn main() {
    let exe = std::fs::canonicalize(std::env::current_exe().expect("own path"))
        .expect("own path")
        .display()
        .to_string();
    let dir = TempDir::new("bench-uprobes");
    let never = dir.path().join("never.yaml");
    std::fs::write(
        &never,
        policy(
            &exe,
            "    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Equal\n        values: [\"18446744073709551615\"]\n",
        ),
    )
    .unwrap();
    let every = dir.path().join("every.yaml");
    std::fs::write(&every, policy(&exe, "")).unwrap();

    let (mut base, mut floor, mut filtered, mut posted) = (vec![], vec![], vec![], vec![]);
    let mut events = 0u64;
    for _ in 0..ROUNDS {
        base.push(calls_per_second());
        {
            let _probe = TracefsUprobe::new(&exe).unwrap_or_else(|e| {
                panic!("the floor needs a tracefs uprobe event (mount tracefs at {TRACEFS}): {e}")
            });
            floor.push(calls_per_second());
        }
        let agent = Agent::start(&["--policy", never.to_str().unwrap()]);
        filtered.push(calls_per_second());
        drop(agent.stop_raw());
        let agent = Agent::start(&["--policy", every.to_str().unwrap()]);
        posted.push(calls_per_second());
        let (_, stats) = agent.stop_raw();
        events += stats["events"].as_u64().unwrap_or(0);
    }
    let (base, floor, filtered, posted) = (
        median(base),
        median(floor),
        median(filtered),
        median(posted),
    );
    println!("uprobe on {SYMBOL} ({CALLS} calls per measurement, median of {ROUNDS}):");
    println!("  no agent:                        {base:>12.0} calls/s");
    println!(
        "  floor (tracefs uprobe, no BPF):  {floor:>12.0} calls/s  ratio {:.3}  ({:.2} µs per call added)",
        floor / base,
        (1.0 / floor - 1.0 / base) * 1e6
    );
    println!(
        "  uprobe, selector never matching: {filtered:>12.0} calls/s  ratio {:.3}  ({:.2} µs per call added; {:.2}× the floor's time per call)",
        filtered / base,
        (1.0 / filtered - 1.0 / base) * 1e6,
        floor / filtered
    );
    println!(
        "  uprobe, an event per call:       {posted:>12.0} calls/s  ratio {:.3}  ({:.2} µs per call added; {events} events delivered in {ROUNDS} rounds)",
        posted / base,
        (1.0 / posted - 1.0 / base) * 1e6
    );
}
