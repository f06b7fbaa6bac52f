//! `vigil status --overhead`: what each of the agent's BPF programs costs, from the kernel's run
//! counts and run times read twice, an interval apart (the agent must hold `bpf_stats` on).

use std::time::{Duration, Instant};

use serde_json::json;
use vigil_api::v1;

use super::{failed, print_json, Exit, Listing, ServerArgs};
use crate::{agent::log, stdout::outln};

/// One program over the interval.
struct Cost {
    program: String,
    runs_per_second: f64,
    ns_per_run: Option<f64>,
    /// Of one CPU: the time it ran per second of the interval.
    cpu_percent: f64,
}

/// Each program's cost between two readings `elapsed` apart, costliest first.
fn costs(before: &[v1::ProgramRuns], after: &[v1::ProgramRuns], elapsed: Duration) -> Vec<Cost> {
    let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    let mut out: Vec<Cost> = after
        .iter()
        .map(|a| {
            let b = before.iter().find(|b| b.name == a.name);
            let runs = a.runs.saturating_sub(b.map_or(0, |b| b.runs));
            let ns = a.run_time_ns.saturating_sub(b.map_or(0, |b| b.run_time_ns));
            Cost {
                program: a.name.clone(),
                runs_per_second: runs as f64 / secs,
                ns_per_run: (runs > 0).then(|| ns as f64 / runs as f64),
                cpu_percent: ns as f64 / secs / 1e7,
            }
        })
        .collect();
    out.sort_by(|x, y| {
        y.cpu_percent
            .total_cmp(&x.cpu_percent)
            .then_with(|| x.program.cmp(&y.program))
    });
    out
}

/// `vigil status --overhead`.
pub async fn overhead(server: ServerArgs, output: Listing, interval: f64) -> Exit {
    if !(interval.is_finite() && interval > 0.0 && interval <= 3600.0) {
        log("error: --interval: a number of seconds above 0 and at most 3600");
        return Exit::Refused;
    }
    let mut c = match server.connect().await {
        Ok(c) => c,
        Err(e) => return e,
    };
    let mut read = async || c.get_health(v1::GetHealthRequest {}).await;
    let before = match read().await {
        Ok(r) => r.into_inner(),
        Err(s) => return failed("GetHealth", &s),
    };
    if !before.bpf_stats {
        log("error: the agent does not count its programs' runs: start it with --bpf-stats");
        return Exit::Refused;
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(interval)).await;
    let after = match read().await {
        Ok(r) => r.into_inner(),
        Err(s) => return failed("GetHealth", &s),
    };
    let costs = costs(&before.programs, &after.programs, start.elapsed());
    if output == Listing::Json {
        let rows: Vec<_> = costs
            .iter()
            .map(|c| {
                json!({
                    "program": c.program,
                    "runs_per_second": c.runs_per_second,
                    "ns_per_run": c.ns_per_run,
                    "cpu_percent": c.cpu_percent,
                })
            })
            .collect();
        return match print_json(&json!({ "interval_seconds": interval, "programs": rows })) {
            Ok(()) => Exit::Ok,
            Err(e) => e,
        };
    }
    let width = costs
        .iter()
        .map(|c| c.program.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut text = format!(
        "{:<width$}  {:>12}  {:>10}  {:>7}\n",
        "PROGRAM", "RUNS/S", "NS/RUN", "CPU %"
    );
    for c in &costs {
        let ns = c
            .ns_per_run
            .map(|n| format!("{n:.0}"))
            .unwrap_or_else(|| "-".into());
        text.push_str(&format!(
            "{:<width$}  {:>12.1}  {:>10}  {:>7.3}\n",
            c.program, c.runs_per_second, ns, c.cpu_percent
        ));
    }
    match outln!("{}", text.trim_end()) {
        Ok(()) => Exit::Ok,
        Err(e) => {
            log(format!("error: {e}"));
            Exit::Refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(name: &str, runs: u64, ns: u64) -> v1::ProgramRuns {
        v1::ProgramRuns {
            name: name.into(),
            runs,
            run_time_ns: ns,
        }
    }

    #[test]
    fn costs_are_the_differences_per_second_costliest_first() {
        let before = [
            runs("vigil_exec", 100, 100_000),
            runs("vigil_exit", 10, 1_000),
        ];
        let after = [
            runs("vigil_exec", 300, 500_000),
            runs("vigil_exit", 10, 1_000),
            runs("vigil_new", 5, 50_000),
        ];
        let c = costs(&before, &after, Duration::from_secs(2));
        let names: Vec<&str> = c.iter().map(|c| c.program.as_str()).collect();
        assert_eq!(names, ["vigil_exec", "vigil_new", "vigil_exit"]);
        assert_eq!(c[0].runs_per_second, 100.0);
        assert_eq!(c[0].ns_per_run, Some(2000.0));
        assert_eq!(c[0].cpu_percent, 0.02);
        assert_eq!(c[2].ns_per_run, None, "no runs: no cost per run");
    }
}
