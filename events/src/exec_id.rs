//! Execution ids: one per exec (or per fork, until the child execs), stable across agent
//! restarts because they derive only from what the kernel reports.

use std::sync::Arc;

use base64::{engine::general_purpose::STANDARD, Engine};
use serde::{Deserialize, Serialize};

/// `base64("<node_name>:<ktime>:<pid>")`, as Tetragon computes it: `ktime` is the boot-time
/// clock in nanoseconds at the exec or clone (for processes found in `/proc`, their start time),
/// so the same process gets the same id from every agent that sees it.
///
/// Shared, not copied: the process cache keys its entries, its live table and its retiring
/// queue by it, and every record a sink takes carries it, so each clone is a count, not an
/// allocation.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExecId(pub Arc<str>);

impl ExecId {
    /// Builds the id of the execution of `pid` that started at `ktime` on `node`.
    pub fn new(node: &str, ktime: u64, pid: u32) -> Self {
        // Buffers of the exact sizes, without format!'s growth: one id is made for every exec
        // and fork.
        let (mut k, mut p) = (itoa::Buffer::new(), itoa::Buffer::new());
        let (ktime, pid) = (k.format(ktime).as_bytes(), p.format(pid).as_bytes());
        let mut raw = Vec::with_capacity(node.len() + ktime.len() + pid.len() + 2);
        for part in [node.as_bytes(), b":", ktime, b":", pid] {
            raw.extend_from_slice(part);
        }
        let mut id = String::with_capacity(base64::encoded_len(raw.len(), true).unwrap_or(0));
        STANDARD.encode_string(&raw, &mut id);
        ExecId(id.into())
    }

    /// Splits an id back into node, ktime and pid; `None` if it is not one of ours.
    pub fn decode(&self) -> Option<(String, u64, u32)> {
        let raw = String::from_utf8(STANDARD.decode(self.0.as_bytes()).ok()?).ok()?;
        let mut parts = raw.rsplitn(3, ':');
        let pid = parts.next()?.parse().ok()?;
        let ktime = parts.next()?.parse().ok()?;
        Some((parts.next()?.to_string(), ktime, pid))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the id is empty (no execution: written nowhere, as protojson leaves out "").
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for ExecId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_tetragon_encoding() {
        // base64 of "node1:1:0", the id Tetragon gives the kernel on node1.
        assert_eq!(ExecId::new("node1", 1, 0).as_str(), "bm9kZTE6MTow");
    }

    #[test]
    fn node_names_with_colons_round_trip() {
        let id = ExecId::new("a:b", 99, 7);
        assert_eq!(id.decode(), Some(("a:b".into(), 99, 7)));
        assert_eq!(ExecId("not base64!".into()).decode(), None);
    }
}
