//! The process cache: every execution the agent knows, by exec id, and the current execution
//! of every live pid, so each event can name its process, its parent and its ancestors.
//!
//! Memory is bounded twice: the entries live in an LRU of fixed capacity (an entry evicted
//! while its process still runs is counted in [`ProcessCache::evictions`]), and an execution
//! that ended — or was replaced by a new exec in the same pid — stays only for a grace period,
//! long enough for its children's events to still find their parent.

use std::{
    collections::{HashMap, VecDeque},
    num::NonZeroUsize,
    sync::Arc,
    time::{Duration, Instant},
};

use lru::LruCache;
use vigil_events::{ExecId, Process};

/// The caches' hash: an exec id is hashed for every event (its own, its parent's), and
/// SipHash cost as much as the lookups it served. foldhash's state is seeded at random, so
/// colliding ids cannot be prepared in advance; and nobody chooses an exec id (the kernel's
/// boot-time nanoseconds and pid) nor a pid's place in the table.
type Hash = foldhash::fast::RandomState;

/// Executions by exec id, plus the current execution of each live pid.
pub struct ProcessCache {
    entries: LruCache<ExecId, Arc<Process>, Hash>,
    live: HashMap<u32, ExecId, Hash>,
    retiring: VecDeque<(Instant, ExecId)>,
    grace: Duration,
    evictions: u64,
    hits: u64,
    misses: u64,
}

impl ProcessCache {
    /// A cache of at most `capacity` executions that keeps ended ones for `grace`.
    pub fn new(capacity: NonZeroUsize, grace: Duration) -> Self {
        ProcessCache {
            entries: LruCache::with_hasher(capacity, Hash::default()),
            live: HashMap::default(),
            retiring: VecDeque::new(),
            grace,
            evictions: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// Records `p` as the current execution of its pid; the execution it replaces (an exec
    /// in the same pid) starts its grace period.
    pub fn insert(&mut self, p: Process, now: Instant) -> Arc<Process> {
        let pid = p.pid;
        let id = p.exec_id.clone();
        let entry = Arc::new(p);
        if let Some(old) = self.live.insert(pid, id.clone()) {
            if old != id {
                self.retiring.push_back((now, old));
            }
        }
        if let Some((evicted, old)) = self.entries.push(id.clone(), entry.clone()) {
            if evicted != id && self.live.get(&old.pid) == Some(&evicted) {
                self.evictions += 1;
                self.live.remove(&old.pid);
            }
        }
        entry
    }

    /// The current execution of `pid`.
    pub fn by_pid(&mut self, pid: u32) -> Option<Arc<Process>> {
        let found = self
            .live
            .get(&pid)
            .and_then(|id| self.entries.get(id).cloned());
        self.count(found)
    }

    /// An execution by id (live or within its grace period).
    pub fn get(&mut self, id: &ExecId) -> Option<Arc<Process>> {
        let found = self.entries.get(id).cloned();
        self.count(found)
    }

    /// Counts a lookup by pid answered outside the cache: by a fork kept until its child was
    /// asked for (`crate::forks`).
    pub fn count_hit(&mut self) {
        self.hits += 1;
    }

    fn count(&mut self, found: Option<Arc<Process>>) -> Option<Arc<Process>> {
        match found {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        found
    }

    /// Ends the current execution of `pid` and returns it, no longer referenced as running
    /// (`refcnt` 0); it stays readable for the grace period.
    pub fn exit(&mut self, pid: u32, now: Instant) -> Option<Arc<Process>> {
        let id = self.live.remove(&pid)?;
        let entry = self.entries.get_mut(&id).map(|e| {
            // In place unless an event still to be written holds the running process.
            vigil_events::end_process(e);
            e.clone()
        });
        self.retiring.push_back((now, id));
        entry
    }

    /// Names the pod of a cached execution that had none (it became known after the process
    /// was cached); nothing else of the entry changes, its liveness included.
    pub fn set_pod(&mut self, id: &ExecId, pod: &vigil_events::Pod) {
        if let Some(e) = self.entries.peek_mut(id) {
            if e.pod.is_none() {
                let mut named = Process::clone(e);
                named.pod = Some(Box::new(pod.clone()));
                *e = Arc::new(named);
            }
        }
    }

    /// Drops the executions whose grace period is over.
    pub fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.retiring.front() {
            if now.duration_since(*at) < self.grace {
                break;
            }
            let (_, id) = self.retiring.pop_front().expect("front exists");
            let pid = self.entries.peek(&id).map(|e| e.pid);
            if pid.is_some_and(|pid| self.live.get(&pid) != Some(&id)) {
                self.entries.pop(&id);
            }
        }
    }

    /// The ancestors of `p` above its parent, nearest first, up to `max`.
    pub fn ancestors(&mut self, p: &Process, max: usize) -> Vec<Arc<Process>> {
        let mut out = Vec::new();
        // Not counted as lookups: a walk ends at the first execution the cache never had (the
        // oldest ancestor's parent), which is no miss.
        let mut next = self
            .entries
            .get(&p.parent_exec_id)
            .map(|parent| parent.parent_exec_id.clone());
        while let Some(id) = next.take() {
            if out.len() >= max {
                break;
            }
            let Some(a) = self.entries.get(&id).cloned() else {
                break;
            };
            next = Some(a.parent_exec_id.clone()).filter(|n| *n != id);
            out.push(a);
        }
        out
    }

    /// Executions held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Live executions pushed out by the capacity bound since start.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Lookups by pid or exec id that found the execution, and those that did not.
    pub fn lookups(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, id: &str, parent: &str) -> Process {
        Process {
            pid,
            exec_id: ExecId(id.into()),
            parent_exec_id: ExecId(parent.into()),
            refcnt: 1,
            ..Default::default()
        }
    }

    #[test]
    fn exec_in_the_same_pid_replaces_after_grace() {
        let t0 = Instant::now();
        let mut c = ProcessCache::new(NonZeroUsize::new(8).unwrap(), Duration::from_secs(5));
        c.insert(proc(10, "sh", "init"), t0);
        c.insert(proc(10, "echo", "init"), t0);
        assert_eq!(c.by_pid(10).unwrap().exec_id.as_str(), "echo");
        assert!(
            c.get(&ExecId("sh".into())).is_some(),
            "kept during the grace period"
        );
        c.expire(t0 + Duration::from_secs(6));
        assert!(c.get(&ExecId("sh".into())).is_none());
        assert!(
            c.get(&ExecId("echo".into())).is_some(),
            "the live one stays"
        );
    }

    #[test]
    fn exited_processes_expire_and_capacity_evictions_are_counted() {
        let t0 = Instant::now();
        let mut c = ProcessCache::new(NonZeroUsize::new(2).unwrap(), Duration::from_secs(1));
        c.insert(proc(1, "a", ""), t0);
        c.insert(proc(2, "b", "a"), t0);
        let running = c.by_pid(2).unwrap();
        let ended = c.exit(2, t0).unwrap();
        assert_eq!(ended.exec_id.as_str(), "b");
        assert_eq!((running.refcnt, ended.refcnt), (1, 0));
        assert_eq!(
            c.get(&ExecId("b".into())).unwrap().refcnt,
            0,
            "kept as ended"
        );
        assert!(c.by_pid(2).is_none());
        c.expire(t0 + Duration::from_secs(2));
        assert_eq!(c.len(), 1);
        c.insert(proc(3, "c", "a"), t0);
        c.insert(proc(4, "d", "c"), t0);
        assert_eq!(c.evictions(), 1);
        assert!(
            c.by_pid(1).is_none(),
            "the evicted live entry is gone from the pid index too"
        );
    }

    #[test]
    fn ancestors_walk_parent_ids_nearest_first() {
        let t0 = Instant::now();
        let mut c = ProcessCache::new(NonZeroUsize::new(8).unwrap(), Duration::from_secs(1));
        c.insert(proc(1, "init", "kernel"), t0);
        c.insert(proc(2, "sshd", "init"), t0);
        c.insert(proc(3, "bash", "sshd"), t0);
        let leaf = proc(4, "cat", "bash");
        let names: Vec<_> = c
            .ancestors(&leaf, 10)
            .into_iter()
            .map(|p| p.exec_id.as_str().to_string())
            .collect();
        assert_eq!(names, ["sshd", "init"]);
        assert_eq!(c.ancestors(&leaf, 1).len(), 1);
    }
}
