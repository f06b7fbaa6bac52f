//! `make bench`, policy scale: what a thousand namespaced policies cost a process they do not
//! cover, what the thousandth costs to load, and what each holds in the kernel, in one run.
//!
//! The cluster is `vigil_tests::scale`'s: 100 namespaces with a pod each and ten policies per
//! namespace, 256 of them on openat. The bench itself runs in no pod.
//!
//! - open()+close() of a file, 200,000 times, by a process no policy covers: without the agent,
//!   and with the agent running 0, 10, 100 and 1,000 of the policies (the first N, namespace by
//!   namespace), in alternating rounds; the ratio of each to no agent.
//! - The time each policy took to go into the kernel (map writes and shared links), from the
//!   agent's log as it loaded the 1,000: the first, the thousandth, and the medians of the first
//!   and last hundred.
//! - Kernel memory: the `memlock` the kernel reports for the agent's maps (their real usage)
//!   with 1,000 policies less with none, per policy, once the classes the loads replaced are
//!   gone; and the agent's own account of each policy's entries
//!   (`vigil_policy_kernel_memory_bytes`).

use std::{path::Path, time::Duration};

use vigil_tests::{
    http_get,
    measure::{median, open_loop_child, open_rate},
    scale::{policies, write_policies, ScaleCluster},
    Agent, TempDir,
};

const OPENS: usize = 200_000;
const ROUNDS: usize = 3;
const COUNTS: [usize; 4] = [0, 10, 100, 1000];

/// The bytes the kernel reports (`memlock`, the maps' usage) for every map `pid` holds.
fn map_memory(pid: u32) -> u64 {
    let fdinfo = format!("/proc/{pid}/fdinfo");
    std::fs::read_dir(&fdinfo)
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|text| text.contains("map_type:"))
        .filter_map(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// Starts the agent with the policies of `dir` and waits until the pods' classes are in the
/// kernel (the first policy, if any, kills its trigger in its pod).
fn agent_with(
    cluster: &ScaleCluster,
    dir: &Path,
    first: Option<&vigil_tests::scale::ScalePolicy>,
) -> Agent {
    let agent = Agent::start(&[
        "--kubeconfig",
        cluster.kubeconfig.to_str().unwrap(),
        "--policy-dir",
        dir.to_str().unwrap(),
    ]);
    if let Some(p) = first {
        cluster.wait_until_acting(p, || agent.log_lines().join("\n"));
    }
    agent
}

/// The time each policy took to load, in log order: "... (N rules, in the kernel in X ms)".
fn load_times(log: &[String]) -> Vec<f64> {
    log.iter()
        .filter(|l| l.contains(" loaded from "))
        .filter_map(|l| {
            let ms = l.split("in the kernel in ").nth(1)?.split(" ms").next()?;
            ms.parse().ok()
        })
        .collect()
}

fn main() {
    if open_loop_child() {
        return;
    }
    vigil_tests::require_root();
    let dir = TempDir::new("bench-scale");
    let cluster = ScaleCluster::start(dir.path());
    let all = policies();
    let file = dir.path().join("opened");
    std::fs::write(&file, "x").unwrap();
    let file = file.to_str().unwrap().to_string();
    let dirs: Vec<_> = COUNTS
        .iter()
        .map(|&n| {
            let d = dir.path().join(format!("policies-{n}"));
            write_policies(&d, &all[..n]);
            d
        })
        .collect();

    let mut base = Vec::new();
    let mut with: Vec<Vec<f64>> = vec![Vec::new(); COUNTS.len()];
    let mut loads = Vec::new();
    let (mut memory_none, mut memory_all, mut own_account) = (0u64, 0u64, Vec::new());
    for round in 0..ROUNDS {
        base.push(open_rate(None, &file, OPENS));
        for (i, &n) in COUNTS.iter().enumerate() {
            let agent = agent_with(&cluster, &dirs[i], all[..n].first());
            with[i].push(open_rate(None, &file, OPENS));
            if round == 0 && n == 0 {
                memory_none = map_memory(agent.pid());
            }
            if round == 0 && n == all.len() {
                // The classes each load replaced keep their lists a second (for a call that
                // found one just before): measured once they are gone.
                std::thread::sleep(Duration::from_millis(2500));
                memory_all = map_memory(agent.pid());
                loads = load_times(&agent.log_lines());
                let (_, text) = http_get(&agent.metrics_address(), "/metrics");
                own_account = text
                    .lines()
                    .filter(|l| l.starts_with("vigil_policy_kernel_memory_bytes{"))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .collect();
            }
            agent.stop();
        }
    }
    let rounds = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("rounds (opens/s): no agent {}", rounds(&base));
    for (i, n) in COUNTS.iter().enumerate() {
        println!("rounds (opens/s): {n} policies {}", rounds(&with[i]));
    }
    let b = median(base);
    println!();
    println!("| open()+close() by a process no policy covers, {OPENS} times (median of {ROUNDS}) | rate | ratio to no agent |");
    println!("|---|---|---|");
    println!("| no agent | {b:.0}/s | 1.000 |");
    let ratios: Vec<f64> = with
        .iter()
        .zip(COUNTS)
        .map(|(v, n)| {
            let r = median(v.clone());
            println!(
                "| agent, {n} namespaced policies | {r:.0}/s | {:.3} |",
                r / b
            );
            r / b
        })
        .collect();
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    println!(
        "| spread of the four ratios (highest / lowest) | | {:.3} |",
        hi / lo
    );

    assert_eq!(loads.len(), all.len(), "a load time per policy in the log");
    let med = |v: &[f64]| median(v.to_vec());
    println!();
    println!(
        "| loading {} policies at start, each beside the others | ms |",
        all.len()
    );
    println!("|---|---|");
    println!("| the first | {:.2} |", loads[0]);
    println!("| the thousandth | {:.2} |", loads[loads.len() - 1]);
    println!("| median of the first 100 | {:.2} |", med(&loads[..100]));
    println!(
        "| median of the last 100 | {:.2} |",
        med(&loads[loads.len() - 100..])
    );

    let per_policy = memory_all.saturating_sub(memory_none) as f64 / all.len() as f64;
    let own = if own_account.is_empty() {
        0.0
    } else {
        own_account.iter().sum::<f64>() / own_account.len() as f64
    };
    println!();
    println!("| kernel memory | bytes |");
    println!("|---|---|");
    println!("| the agent's maps, no policy (memlock) | {memory_none} |");
    println!(
        "| the agent's maps, {} policies (memlock) | {memory_all} |",
        all.len()
    );
    println!("| per policy, as the kernel counts it | {per_policy:.0} |");
    println!(
        "| per policy, as the agent accounts for it (vigil_policy_kernel_memory_bytes, mean of {}) | {own:.0} |",
        own_account.len()
    );
}
