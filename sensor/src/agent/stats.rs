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
