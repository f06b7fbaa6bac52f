//! The agent's counters, printed as its last line and read by `GetHealth`.

use super::*;

/// Counters printed as the agent's last line.
#[derive(Debug, Default, Serialize)]
pub struct AgentStats {
    /// Records read from the ring buffer.
    pub records: u64,
    /// Events built (and handed to the outputs).
    pub events: u64,
    /// Records that did not decode.
    pub decode_errors: u64,
    /// Sigma alerts raised.
    pub alerts: u64,
    /// Events the Sigma rules were evaluated on.
    #[serde(skip)]
    pub sigma_evaluations: u64,
    /// Events published, by kind (in the order of `Event::KINDS`), for the metrics.
    #[serde(skip)]
    pub events_by_kind: [u64; vigil_events::Event::KINDS.len()],
    /// The loop's time in each stage of a record's way, for the metrics.
    #[serde(skip)]
    pub stages: StageTimes,
    /// Sigma alerts by rule title and level, for the metrics; at most [`MAX_ALERT_SERIES`].
    #[serde(skip)]
    pub alerts_by_rule: std::collections::BTreeMap<(String, String), u64>,
    /// Per output and sink (stdout or the export file first): delivered, retried, spooled,
    /// dead-lettered, rate-limited, filtered, dropped, spool errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exporters: Option<serde_json::Value>,
    /// The forensic store's counters, once closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<vigil_store::StoreStats>,
    /// Records the kernel could not queue, by kind.
    pub ringbuf_drops: DropStats,
    /// Processes found in /proc at start.
    pub procfs_seeded: usize,
    /// Executions in the cache at exit.
    pub cache_size: usize,
    /// Live executions evicted by the cache capacity.
    pub cache_evictions: u64,
    /// Calls whose hooks did not run because a runner was missing from its array.
    pub hooks_not_run: u64,
    /// Reports held back by a selector's `rateLimit`.
    pub rate_limited: u64,
    /// Pods named on events, on a Kubernetes node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubeStats>,
    /// The enforcement earlier agents left pinned, which this one replaced at its start, with
    /// what their programs wrote while no agent read it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub previous_agents: Vec<Retired>,
}

/// The loop's time per stage of a record's way from the ring buffer to the outputs: where a
/// busy node's agent spends its CPU, read off the metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct StageTimes {
    /// Reading the kernel's record off the ring buffer and parsing it, in nanoseconds.
    pub decode: u64,
    /// Turning it into an event: the process cache, the policy's names, identity.
    pub enrich: u64,
    /// Handing the event on: the pod wait, Sigma's queue, the JSON, the sinks' queues.
    pub deliver: u64,
}

impl StageTimes {
    /// The stages by name, as the metrics label them.
    pub fn named(&self) -> [(&'static str, Duration); 3] {
        [
            ("decode", Duration::from_nanos(self.decode)),
            ("enrich", Duration::from_nanos(self.enrich)),
            ("deliver", Duration::from_nanos(self.deliver)),
        ]
    }
}

/// The monotonic clock in nanoseconds, for the stage times. The loop reads the clock three
/// times per record: `Instant`'s arithmetic (checked and normalised at every step) cost more
/// than the reads themselves, and more than all of a record's time stamps.
pub(super) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given and nothing else.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        // Refused (a seccomp filter, no vDSO): the same clock through std, whose arithmetic
        // costs more, rather than a clock stuck at 0 that no turn's time limit would see.
        static START: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
        return START.elapsed().as_nanos() as u64;
    }
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// Most (rule, level) pairs counted: rules come and go with their files, and a directory of
/// rules changed in a loop cannot grow the agent's memory without bound.
pub const MAX_ALERT_SERIES: usize = 4096;

impl AgentStats {
    /// Counts an alert by its rule and level.
    pub fn count_alert(&mut self, alert: &vigil_events::Event) {
        let vigil_events::EventBody::ProcessAlert(a) = &alert.body else {
            return;
        };
        self.events_by_kind[alert.kind_index()] += 1;
        let key = (a.title.clone(), a.level.clone());
        if let Some(n) = self.alerts_by_rule.get_mut(&key) {
            *n += 1;
        } else if self.alerts_by_rule.len() < MAX_ALERT_SERIES {
            self.alerts_by_rule.insert(key, 1);
        }
    }
}

/// Ring buffer drops by event kind.
#[derive(Debug, Default, Serialize, PartialEq, Eq, Clone, Copy)]
pub struct DropStats {
    /// Exec records.
    pub exec: u64,
    /// Fork records.
    pub fork: u64,
    /// Exit records.
    pub exit: u64,
    /// All of them.
    pub total: u64,
}

impl DropStats {
    pub(super) fn from_slots(s: [u64; abi::DROP_SLOTS]) -> Self {
        DropStats {
            exec: s[abi::EVENT_EXEC as usize],
            fork: s[abi::EVENT_FORK as usize],
            exit: s[abi::EVENT_EXIT as usize],
            total: s.iter().sum(),
        }
    }
}
