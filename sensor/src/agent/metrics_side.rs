//! The agent loop's side of the metrics endpoint: a scrape is answered between two reads of the
//! ring buffer, from the counters the loop owns (see `crate::metrics`).

use vigil_bpf_kprobes::abi;

use super::api_side::Loop;
use crate::metrics::{label, render, MetricsView, ProgramRuns};

/// The drop counter slots by name (`abi::EVENT_*`); the others are counted as `other`.
fn drop_kind(slot: usize) -> &'static str {
    match slot as u32 {
        abi::EVENT_EXEC => "exec",
        abi::EVENT_FORK => "fork",
        abi::EVENT_EXIT => "exit",
        abi::EVENT_POLICY => "file_policy",
        abi::EVENT_HOOK => "policy_hook",
        _ => "other",
    }
}

impl Loop<'_> {
    /// The text of a scrape.
    pub fn metrics(&self) -> String {
        let online = aya::util::online_cpus().unwrap_or_default();
        let mut drops = Vec::new();
        for (cpu, slots) in self.sensor.drops_by_cpu().iter().enumerate() {
            for (slot, n) in slots.iter().enumerate() {
                // Every online CPU's exec, fork and exit series exist from the start, so a rate
                // over them is defined before the first drop; other kinds (and CPUs) appear
                // when they drop.
                let lifecycle = matches!(
                    slot as u32,
                    abi::EVENT_EXEC | abi::EVENT_FORK | abi::EVENT_EXIT
                );
                if *n > 0 || (lifecycle && online.contains(&(cpu as u32))) {
                    drops.push((
                        vec![
                            label("kind", drop_kind(slot)),
                            label("cpu", &cpu.to_string()),
                        ],
                        *n,
                    ));
                }
            }
        }
        let actions = self
            .sinks
            .actions
            .series()
            .map(|((policy, hook, selector, action, outcome), n)| {
                let selector = selector.map(|s| s.to_string()).unwrap_or_default();
                (
                    vec![
                        label("policy", policy),
                        label("hook", hook),
                        label("selector", &selector),
                        label("action", action),
                        label("outcome", outcome),
                    ],
                    n,
                )
            })
            .collect();
        let alerts = self
            .stats
            .alerts_by_rule
            .iter()
            .map(|((rule, level), n)| (vec![label("rule", rule), label("level", level)], *n))
            .collect();
        let sinks = self
            .sink_counters()
            .map(|(sink, counters)| (sink, counters.collect()))
            .collect();
        let mut policies: Vec<(String, u64)> = Vec::new();
        // By name, over the policies that run (a name may come from a file and the API both).
        let mut bytes: std::collections::BTreeMap<String, u64> = Default::default();
        for p in self.policies.as_ref().map(|p| p.list()).unwrap_or_default() {
            match policies.iter_mut().find(|(s, _)| s == p.state) {
                Some((_, n)) => *n += 1,
                None => policies.push((p.state.to_string(), 1)),
            }
            if p.state == "enabled" && !p.name.is_empty() {
                *bytes.entry(p.name).or_default() += p.kernel_bytes;
            }
        }
        let policy_bytes = bytes
            .into_iter()
            .map(|(name, n)| (vec![label("policy", &name)], n))
            .collect();
        let programs = self
            .sensor
            .program_runs()
            .into_iter()
            .map(|(program, runs, run_time)| ProgramRuns {
                program,
                runs,
                run_time,
            })
            .collect();
        render(&MetricsView {
            records: self.stats.records,
            events: vigil_events::Event::KINDS
                .iter()
                .copied()
                .zip(self.stats.events_by_kind)
                .collect(),
            decode_errors: self.stats.decode_errors,
            drops,
            ring_bytes: self.ring_bytes.into(),
            ring_used: self.ring_used,
            hooks_not_run: self.sensor.runner_misses(),
            rate_limited: self.rate_limited,
            cache_size: self.cache.len() as u64,
            cache_evictions: self.cache.evictions(),
            cache_hits: self.cache.lookups().0,
            cache_misses: self.cache.lookups().1,
            sigma_evaluations: self.stats.sigma_evaluations,
            actions,
            sigma_rules: self
                .sinks
                .detector
                .as_ref()
                .map(|d| d.engine().rules().len() as u64),
            alerts,
            sinks,
            policies,
            policy_bytes,
            policy_load_errors: self.policies.as_ref().map_or(0, |p| p.load_errors),
            programs,
            uptime: self.since.elapsed(),
            stages: self.stats.stages.named().to_vec(),
        })
    }
}
