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
        // One id is made for every exec and fork: built on the stack (a node name of up to
        // 200 bytes), with the id's own allocation the only one.
        let (mut k, mut p) = (itoa::Buffer::new(), itoa::Buffer::new());
        let (ktime, pid) = (k.format(ktime).as_bytes(), p.format(pid).as_bytes());
        let (mut raw_stack, mut raw_heap) = ([0u8; 232], Vec::new());
        let raw = fitted(
            &mut raw_stack,
            &mut raw_heap,
            node.len() + ktime.len() + pid.len() + 2,
        );
        let mut at = 0;
        for part in [node.as_bytes(), b":", ktime, b":", pid] {
            raw[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        let (mut id_stack, mut id_heap) = ([0u8; 312], Vec::new());
        let id = fitted(
            &mut id_stack,
            &mut id_heap,
            base64::encoded_len(raw.len(), true).unwrap_or(0),
        );
        let written = STANDARD.encode_slice(&*raw, id).unwrap_or(0);
        // Base64 is ASCII: never empty for an id that was written.
        ExecId(
            std::str::from_utf8(&id[..written])
                .unwrap_or_default()
                .into(),
        )
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

/// The first `len` bytes of `stack`, or of `heap` grown to `len` when `stack` is shorter.
fn fitted<'a>(stack: &'a mut [u8], heap: &'a mut Vec<u8>, len: usize) -> &'a mut [u8] {
    if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        heap
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

    #[test]
    fn long_node_names_are_encoded_whole() {
        // Around the stack buffers' sizes and past them.
        for len in [0, 1, 199, 200, 201, 202, 230, 231, 300, 4000] {
            let node = "n".repeat(len);
            let id = ExecId::new(&node, u64::MAX, u32::MAX);
            let raw = format!("{node}:{}:{}", u64::MAX, u32::MAX);
            assert_eq!(id.as_str(), STANDARD.encode(raw.as_bytes()), "{len}");
            assert_eq!(id.decode(), Some((node, u64::MAX, u32::MAX)));
        }
    }
}
