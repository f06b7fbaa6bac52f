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
    /// Builds the id of the execution of `pid` that started at `ktime` on `node` (the agent
    /// keeps its node's [`ExecIdPrefix`] instead, for one id after another).
    pub fn new(node: &str, ktime: u64, pid: u32) -> Self {
        ExecIdPrefix::new(node).id(ktime, pid)
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

/// A node's exec ids, its name encoded once: an id is made for every exec and fork, and of
/// its text the node's part is the same each time (`ip-10-0-1-23.eu-west-1.compute.internal`
/// is 56 of an id's 88 characters). Base64 encodes each three bytes alone, so the node's
/// `<node>:` up to its last whole three bytes is encoded here, and each id encodes the one or
/// two bytes left with its own `<ktime>:<pid>`.
#[derive(Debug, Clone)]
pub struct ExecIdPrefix {
    /// Base64 of the whole three-byte groups of `<node>:`.
    encoded: String,
    /// The bytes of `<node>:` after them (at most two).
    rest: Vec<u8>,
}

/// The most bytes an id encodes beside its node's groups: two of the node's, a `u64`'s
/// twenty digits, a colon and a `u32`'s ten.
const TAIL_BYTES: usize = 2 + 20 + 1 + 10;

thread_local! {
    /// A thread's buffer for an id's text, copied once into the id's own memory.
    static ID_TEXT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl ExecIdPrefix {
    /// The ids of `node`.
    pub fn new(node: &str) -> Self {
        let mut raw = Vec::with_capacity(node.len() + 1);
        raw.extend_from_slice(node.as_bytes());
        raw.push(b':');
        let whole = raw.len() / 3 * 3;
        ExecIdPrefix {
            encoded: STANDARD.encode(&raw[..whole]),
            rest: raw[whole..].to_vec(),
        }
    }

    /// The id of the execution of `pid` that started at `ktime`.
    pub fn id(&self, ktime: u64, pid: u32) -> ExecId {
        let (mut k, mut p) = (itoa::Buffer::new(), itoa::Buffer::new());
        let mut tail = [0u8; TAIL_BYTES];
        let mut at = 0;
        for part in [
            &self.rest[..],
            k.format(ktime).as_bytes(),
            b":",
            p.format(pid).as_bytes(),
        ] {
            tail[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        let mut encoded = [0u8; TAIL_BYTES.div_ceil(3) * 4];
        let written = STANDARD
            .encode_slice(&tail[..at], &mut encoded)
            .unwrap_or(0);
        // Base64 is ASCII.
        let encoded = crate::text::utf8(&encoded[..written]).unwrap_or_default();
        let write = |text: &mut String| {
            text.reserve(self.encoded.len() + encoded.len());
            text.push_str(&self.encoded);
            text.push_str(encoded);
        };
        ID_TEXT.with(|text| match text.try_borrow_mut() {
            Ok(mut text) => {
                text.clear();
                write(&mut text);
                ExecId(Arc::from(text.as_str()))
            }
            Err(_) => {
                let mut text = String::new();
                write(&mut text);
                ExecId(text.into())
            }
        })
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
    fn ids_from_a_prefix_are_the_whole_names_encoding() {
        // Every remainder of `<node>:` by three, and the widest numbers.
        for node in [
            "",
            "a",
            "ab",
            "abc",
            "node-1",
            "é",
            "ip-10-0-1-23.compute.internal",
        ] {
            let ids = ExecIdPrefix::new(node);
            for (ktime, pid) in [
                (0, 0),
                (1, 7),
                (123_456_789, 4_194_304),
                (u64::MAX, u32::MAX),
            ] {
                let whole = STANDARD.encode(format!("{node}:{ktime}:{pid}"));
                assert_eq!(ids.id(ktime, pid).as_str(), whole, "{node} {ktime} {pid}");
            }
        }
    }

    #[test]
    fn long_node_names_are_encoded_whole() {
        // Short names, and names longer than any host name.
        for len in [0, 1, 199, 200, 201, 202, 230, 231, 300, 4000] {
            let node = "n".repeat(len);
            let id = ExecId::new(&node, u64::MAX, u32::MAX);
            let raw = format!("{node}:{}:{}", u64::MAX, u32::MAX);
            assert_eq!(id.as_str(), STANDARD.encode(raw.as_bytes()), "{len}");
            assert_eq!(id.decode(), Some((node, u64::MAX, u32::MAX)));
        }
    }
}
