//! Forks not yet described. A fork's child runs its parent's image until it execs, which most
//! children do at once (a shell running a command): describing each child when it forks (its
//! exec id, start time, flags, its parent's strings copied, a cache entry) cost as much as
//! describing the exec that replaces it a few microseconds later, and no event ever named it.
//! A fork is kept as its record and its parent until something asks for the child: an event
//! of the child, its exit, a child of its own, or [`CAPACITY`]. It is then described exactly as
//! it would have been when it forked (from the record and the parent as they were then) and
//! cached. An exec that finds its own fork here drops it, flagged `clone`.
//!
//! Two differences from describing each fork at once, both bounded: a kept fork is not in the
//! process cache's LRU, so a child that sleeps without exec'ing while more executions than the
//! cache holds pass is still described from its fork record when it acts (where the cache
//! would have evicted it and read it again from `/proc`); and when [`CAPACITY`] forks are kept
//! they are all described and cached together, the same work as one by one.

use std::{collections::HashMap, sync::Arc, time::Instant};

use vigil_bpf_kprobes::abi;
use vigil_events::{ExecId, Process};

use crate::identity::{Identity, Origin, ProcessStrings};

/// Forks kept at most: past this they are all described and cached (the process cache bounds
/// them from there). A busy node has a few dozen children between fork and exec at any time;
/// forks whose child's exit was lost (a full ring buffer) are what reach the bound.
const CAPACITY: usize = 4096;

/// A fork record, with its parent as it was when the child forked.
pub struct PendingFork {
    fork: abi::ForkEvent,
    parent: Option<Arc<Process>>,
    /// When the record was read: the cache's clock for the execution the child replaces.
    seen: Instant,
}

/// The forks not yet described, by the child's pid.
#[derive(Default)]
pub struct PendingForks {
    by_pid: HashMap<u32, PendingFork, foldhash::fast::RandomState>,
}

impl PendingForks {
    /// Keeps a fork; returns the forks to describe now: one of the same pid that was never
    /// asked for (its exit was lost and the pid reused), or all of them when they reach
    /// [`CAPACITY`].
    pub fn insert(
        &mut self,
        fork: abi::ForkEvent,
        parent: Option<Arc<Process>>,
        seen: Instant,
    ) -> Vec<PendingFork> {
        let mut due: Vec<PendingFork> = Vec::new();
        if self.by_pid.len() >= CAPACITY {
            due.extend(self.by_pid.drain().map(|(_, f)| f));
        }
        let pending = PendingFork { fork, parent, seen };
        due.extend(self.by_pid.insert(fork.proc.pid, pending));
        due
    }

    /// The fork of `pid`, if it was not described yet.
    pub fn take(&mut self, pid: u32) -> Option<PendingFork> {
        if self.by_pid.is_empty() {
            return None;
        }
        self.by_pid.remove(&pid)
    }

    /// Every fork not described yet.
    pub fn take_all(&mut self) -> Vec<PendingFork> {
        self.by_pid.drain().map(|(_, f)| f).collect()
    }
}

impl PendingFork {
    /// The child as it was when it forked: its parent's image (binary, arguments, cwd, cgroup)
    /// until it execs.
    pub fn describe(&self, identity: &Identity) -> (Process, Instant) {
        let raw = self.fork.proc;
        let (parent_exec_id, binary, cwd, cgroup) = match &self.parent {
            Some(p) => (
                p.exec_id.clone(),
                p.binary.clone(),
                p.cwd.clone(),
                p.cgroup
                    .as_ref()
                    .map(|c| c.path.clone())
                    .unwrap_or_default(),
            ),
            None => (
                ExecId::default(),
                String::new(),
                String::new(),
                String::new(),
            ),
        };
        let strings = ProcessStrings {
            binary,
            argv: &[],
            cwd,
            cgroup,
        };
        let mut process = identity.process(
            &raw,
            self.fork.hdr.ktime,
            Origin::Clone,
            strings,
            parent_exec_id,
        );
        if let Some(p) = &self.parent {
            process.arguments = p.arguments.clone();
        }
        (process, self.seen)
    }
}
