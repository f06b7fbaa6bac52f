//! The OpenMetrics text of one scrape, from what the agent's loop counted: names follow
//! Prometheus' conventions (`vigil_<what>_total` for counters, base units), and every label's
//! values come from a bounded set (event kinds, sinks, loaded policies and rules, the agent's
//! own programs), so no input from the node can grow the series without bound.

use std::time::Duration;

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};

/// Label pairs of one series.
type Labels = Vec<(String, String)>;

/// A sink's counters (`vigil_exporter_<key>_total`) and what each counts.
const SINK_COUNTERS: [(&str, &str); 9] = [
    ("delivered", "Records each sink's destination took"),
    ("retries", "Deliveries that failed and were tried again, per sink"),
    ("spooled", "Records written to each sink's disk spool"),
    (
        "dead_lettered",
        "Records refused for good, and spool lines that were no records, in each sink's dead-letter file",
    ),
    ("rate_limited", "Records dropped by each sink's rate limit"),
    ("filtered", "Events each sink's filters did not pass"),
    (
        "dropped",
        "Records lost per sink: the spool was full or could not be written, or the output closed",
    ),
    ("spool_errors", "Spool writes that failed (a full disk, an I/O error), per sink"),
    (
        "dead_letter_dropped",
        "Dead letters not written: the file reached its cap or could not be written, per sink",
    ),
];

/// What waits at each sink: its key, the gauge's name and what it measures.
const SINK_GAUGES: [(&str, &str, &str); 3] = [
    (
        "queued",
        "vigil_exporter_queue_records",
        "Records in each sink's queue",
    ),
    (
        "spool_pending",
        "vigil_exporter_spool_records",
        "Records waiting in each sink's disk spool",
    ),
    (
        "spool_bytes",
        "vigil_exporter_spool_bytes",
        "Bytes of each sink's disk spool",
    ),
];

/// One of the agent's BPF programs, as the kernel counts it (`bpf_stats`).
#[derive(Debug, Clone)]
pub struct ProgramRuns {
    /// Its name in the agent's object.
    pub program: String,
    /// Runs counted while statistics were on.
    pub runs: u64,
    /// Time spent in it.
    pub run_time: Duration,
}

/// What a scrape reports: a view of the loop's state at the moment of the scrape.
#[derive(Debug, Default)]
pub struct MetricsView {
    /// Records read from the ring buffer.
    pub records: u64,
    /// Events published, by kind (`process_exec`, ...).
    pub events: Vec<(&'static str, u64)>,
    /// Records that did not decode.
    pub decode_errors: u64,
    /// Records the kernel could not queue, by kind and CPU.
    pub drops: Vec<(Labels, u64)>,
    /// The ring buffer's size.
    pub ring_bytes: u64,
    /// Its bytes written and not yet read, when the agent can read its positions.
    pub ring_used: Option<u64>,
    /// Calls whose hooks did not run because a runner was missing.
    pub hooks_not_run: u64,
    /// Reports a `rateLimit` held back.
    pub rate_limited: u64,
    /// Process cache: entries, live executions evicted, lookups that found their execution
    /// and those that did not.
    pub cache_size: u64,
    pub cache_evictions: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Per policy, hook, selector, action and outcome: how many times it acted.
    pub actions: Vec<(Labels, u64)>,
    /// Sigma: rules loaded, events evaluated, and alerts by rule and level.
    pub sigma_rules: Option<u64>,
    pub sigma_evaluations: u64,
    pub alerts: Vec<(Labels, u64)>,
    /// Per sink, its counters by name (`delivered`, `retries`, ...).
    pub sinks: Vec<(String, Vec<(String, u64)>)>,
    /// Policies known, by state (`enabled`, `disabled`, `refused`, `not-selected`).
    pub policies: Vec<(String, u64)>,
    /// Per policy, the kernel map entries it holds, in bytes.
    pub policy_bytes: Vec<(Labels, u64)>,
    /// Policies refused since the start.
    pub policy_load_errors: u64,
    /// The kernel's run counts and times of the agent's programs (empty while bpf_stats is off).
    pub programs: Vec<ProgramRuns>,
    /// Seconds since the agent started.
    pub uptime: Duration,
    /// The loop's time in each stage of a record's way (`decode`, `enrich`, `deliver`).
    pub stages: Vec<(&'static str, Duration)>,
}

fn counter_family(
    r: &mut Registry,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, u64)>,
) {
    let family = Family::<Labels, Counter>::default();
    for (labels, v) in series {
        family.get_or_create(&labels).inc_by(v);
    }
    r.register(name, help, family);
}

fn counter(r: &mut Registry, name: &str, help: &str, v: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    r.register(name, help, c);
}

fn gauge(r: &mut Registry, name: &str, help: &str, v: u64) {
    let g = Gauge::<i64>::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    r.register(name, help, g);
}

/// A label pair, its value escaped as the text format wants (`\\`, `\"`, `\n`): the encoder
/// writes values as they are, and a policy name or a rule title with a quote or a line break
/// would otherwise make Prometheus refuse the whole scrape or read lines of its own.
pub fn label(k: &str, v: &str) -> (String, String) {
    let mut escaped = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    (k.to_string(), escaped)
}

/// The text of a scrape.
pub fn render(v: &MetricsView) -> String {
    let mut r = Registry::default();
    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&vec![label("version", env!("CARGO_PKG_VERSION"))])
        .set(1);
    r.register("vigil_build_info", "The agent's version", info);
    let up = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    up.set(v.uptime.as_secs_f64());
    r.register_with_unit(
        "vigil_uptime",
        "Time since the agent started",
        Unit::Seconds,
        up,
    );
    counter(
        &mut r,
        "vigil_ringbuf_records",
        "Records read from the ring buffer",
        v.records,
    );
    counter_family(
        &mut r,
        "vigil_ringbuf_drops",
        "Records the kernel could not queue because the ring buffer was full, by kind and CPU",
        v.drops.iter().cloned(),
    );
    gauge(
        &mut r,
        "vigil_ringbuf_size_bytes",
        "The ring buffer's size",
        v.ring_bytes,
    );
    if let Some(used) = v.ring_used {
        gauge(
            &mut r,
            "vigil_ringbuf_used_bytes",
            "Bytes the kernel wrote into the ring buffer that the agent has not read yet",
            used,
        );
    }
    counter(
        &mut r,
        "vigil_decode_errors",
        "Ring buffer records that did not decode",
        v.decode_errors,
    );
    counter_family(
        &mut r,
        "vigil_events",
        "Events published, by type",
        v.events.iter().map(|(k, n)| (vec![label("type", k)], *n)),
    );
    counter_family(
        &mut r,
        "vigil_policy_actions",
        "Events of each policy hook's selectors, by action and outcome (post, kill, deny, would-have)",
        v.actions.iter().cloned(),
    );
    counter(
        &mut r,
        "vigil_hooks_not_run",
        "Calls whose policy hooks did not run: a hook runner was missing from its array",
        v.hooks_not_run,
    );
    counter(
        &mut r,
        "vigil_rate_limited",
        "Policy reports held back by a selector's rateLimit",
        v.rate_limited,
    );
    let policies = Family::<Labels, Gauge>::default();
    for (state, n) in &v.policies {
        policies
            .get_or_create(&vec![label("state", state)])
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
    r.register(
        "vigil_policies",
        "Policies known to the agent, by state (a refused one is a policy load error)",
        policies,
    );
    counter(
        &mut r,
        "vigil_policy_load_errors",
        "Policies refused since the start: a file, an API request or a cluster object that did not validate, plan or load",
        v.policy_load_errors,
    );
    let bytes = Family::<Labels, Gauge>::default();
    for (labels, n) in &v.policy_bytes {
        bytes
            .get_or_create(labels)
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
    r.register_with_unit(
        "vigil_policy_kernel_memory",
        "Kernel map entries each policy holds",
        Unit::Bytes,
        bytes,
    );
    gauge(
        &mut r,
        "vigil_process_cache_entries",
        "Executions in the process cache (a fork's child is cached once something asks for it, and not when it execs first)",
        v.cache_size,
    );
    counter(
        &mut r,
        "vigil_process_cache_evictions",
        "Live executions evicted by the cache's capacity",
        v.cache_evictions,
    );
    counter_family(
        &mut r,
        "vigil_process_cache_lookups",
        "Process cache lookups by pid or exec id, by result (hit: the execution was there)",
        [
            (vec![label("result", "hit")], v.cache_hits),
            (vec![label("result", "miss")], v.cache_misses),
        ],
    );
    if let Some(n) = v.sigma_rules {
        gauge(&mut r, "vigil_sigma_rules_loaded", "Sigma rules loaded", n);
    }
    counter(
        &mut r,
        "vigil_sigma_evaluations",
        "Events the Sigma rules were evaluated on",
        v.sigma_evaluations,
    );
    counter_family(
        &mut r,
        "vigil_sigma_alerts",
        "Sigma alerts raised, by rule and level",
        v.alerts.iter().cloned(),
    );
    // One family per sink counter (`vigil_exporter_delivered_total{sink="splunk"}`, ...) and per
    // sink gauge of what waits.
    let mut names: Vec<&str> = v
        .sinks
        .iter()
        .flat_map(|(_, c)| c.iter().map(|(k, _)| k.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    for key in names {
        let series = v.sinks.iter().filter_map(|(sink, c)| {
            let n = c.iter().find(|(k, _)| k == key)?.1;
            Some((vec![label("sink", sink)], n))
        });
        match SINK_GAUGES.iter().find(|(k, ..)| *k == key) {
            Some((_, name, help)) => {
                let family = Family::<Labels, Gauge>::default();
                for (labels, n) in series {
                    family
                        .get_or_create(&labels)
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
                r.register(*name, *help, family);
            }
            None => {
                let help = SINK_COUNTERS
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, h)| h.to_string())
                    .unwrap_or_else(|| format!("Per sink: {}", key.replace('_', " ")));
                counter_family(&mut r, &format!("vigil_exporter_{key}"), &help, series);
            }
        }
    }
    let stages = Family::<Labels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
    for (stage, time) in &v.stages {
        stages
            .get_or_create(&vec![label("stage", stage)])
            .inc_by(time.as_secs_f64());
    }
    r.register_with_unit(
        "vigil_pipeline_stage",
        "The event loop's time in each stage of a record's way: decode (the kernel's record \
         parsed), enrich (the event built: process cache, names, identity), deliver (the pod \
         wait, the JSON and the outputs' queues)",
        Unit::Seconds,
        stages,
    );
    let runs = Family::<Labels, Counter>::default();
    let time = Family::<Labels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
    for p in &v.programs {
        let l = vec![label("program", &p.program)];
        runs.get_or_create(&l).inc_by(p.runs);
        time.get_or_create(&l).inc_by(p.run_time.as_secs_f64());
    }
    r.register(
        "vigil_bpf_program_runs",
        "Runs of each of the agent's BPF programs while the kernel's bpf_stats were on",
        runs,
    );
    r.register_with_unit(
        "vigil_bpf_program_run",
        "Time spent in each of the agent's BPF programs while the kernel's bpf_stats were on",
        Unit::Seconds,
        time,
    );
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_cannot_break_the_text() {
        let v = MetricsView {
            alerts: vec![(
                vec![
                    label("rule", "a \"quoted\" \\ title\nvigil_fake_total 1"),
                    label("level", "high"),
                ],
                1,
            )],
            ..Default::default()
        };
        let text = render(&v);
        assert!(
            text.lines().any(|l| l
                == r#"vigil_sigma_alerts_total{rule="a \"quoted\" \\ title\nvigil_fake_total 1",level="high"} 1"#),
            "{text}"
        );
        assert!(
            !text.lines().any(|l| l.starts_with("vigil_fake_total")),
            "{text}"
        );
    }

    #[test]
    fn counters_are_named_by_convention_and_labelled() {
        let v = MetricsView {
            records: 7,
            ring_used: Some(4096),
            events: vec![("process_exec", 3), ("process_exit", 2)],
            sinks: vec![(
                "splunk".into(),
                vec![("delivered".into(), 5), ("retries".into(), 1)],
            )],
            programs: vec![ProgramRuns {
                program: "vigil_exec".into(),
                runs: 10,
                run_time: Duration::from_micros(1500),
            }],
            ..Default::default()
        };
        let text = render(&v);
        for line in [
            "vigil_ringbuf_records_total 7",
            "vigil_ringbuf_used_bytes 4096",
            "vigil_events_total{type=\"process_exec\"} 3",
            "vigil_events_total{type=\"process_exit\"} 2",
            "vigil_exporter_delivered_total{sink=\"splunk\"} 5",
            "vigil_exporter_retries_total{sink=\"splunk\"} 1",
            "vigil_bpf_program_runs_total{program=\"vigil_exec\"} 10",
            "vigil_bpf_program_run_seconds_total{program=\"vigil_exec\"} 0.0015",
            "# TYPE vigil_events counter",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
    }
}
