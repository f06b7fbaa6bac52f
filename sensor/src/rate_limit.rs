//! `rateLimit` on Post: a selector's report at most once per period for the same process,
//! selector and arguments, as Tetragon's. The kernel still sends each match; the agent holds
//! back the repeats, so a repeated match costs its record but no event downstream.
//!
//! The table is bounded: when it is full of periods still running, a new key is not limited
//! (reported, not remembered). A flood of distinct arguments then costs events, never the
//! first report of a key: rate limiting never hides something new.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
};

use vigil_events::{Event, EventBody};

/// Keys remembered at most.
const CAPACITY: usize = 65_536;

/// The last report of each (hook, selector, process, arguments), by boot-clock time.
#[derive(Default)]
pub struct PostRateLimit {
    last: HashMap<u64, u64>,
    /// When the full table was last swept: at most once a second, so a flood of new keys
    /// costs one sweep, not one per event.
    swept_ns: u64,
    /// Reports held back.
    pub held_back: u64,
}

impl PostRateLimit {
    /// Whether `event`, a report of `selector` of hook `hook_id` at `ktime_ns`, repeats one
    /// made less than `period_secs` ago (and is held back); remembers it otherwise.
    pub fn holds_back(
        &mut self,
        event: &Event,
        hook_id: u32,
        selector: u32,
        period_secs: u64,
        ktime_ns: u64,
    ) -> bool {
        let (EventBody::ProcessKprobe(p)
        | EventBody::ProcessLsm(p)
        | EventBody::ProcessUprobe(p)
        | EventBody::ProcessTracepoint(p)
        | EventBody::ProcessLoader(p)) = &event.body
        else {
            return false;
        };
        // Only a report: a kill or a denial is always said.
        if p.outcome != "posted" {
            return false;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (hook_id, selector, &p.process.exec_id.0).hash(&mut h);
        serde_json::to_string(&p.args)
            .unwrap_or_default()
            .hash(&mut h);
        let key = h.finish();
        let period = period_secs.saturating_mul(1_000_000_000);
        if let Some(&at) = self.last.get(&key) {
            if ktime_ns.saturating_sub(at) < period {
                self.held_back += 1;
                return true;
            }
        }
        if self.last.len() >= CAPACITY && !self.last.contains_key(&key) {
            if ktime_ns.saturating_sub(self.swept_ns) < 1_000_000_000 {
                return false;
            }
            self.swept_ns = ktime_ns;
            self.last
                .retain(|_, at| ktime_ns.saturating_sub(*at) < period);
            if self.last.len() >= CAPACITY {
                return false;
            }
        }
        self.last.insert(key, ktime_ns);
        false
    }
}
