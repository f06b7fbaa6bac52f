//! Events whose pod is not known yet. A process can exec in a pod's cgroup before the pod
//! watcher has heard of the pod (a pod starts, the agent restarts and relists). Its events wait
//! here, in order, until the pod store learns the pod or the wait runs out; then they go on,
//! without their pod, and are counted. The events of one pod leave in the order they came;
//! events of processes in no pod never wait.
//!
//! A pod the API server never names (a static pod it has no mirror of, or a cgroup a user with
//! rights on the hierarchy dressed as a pod's) costs one wait: its later events go on at once,
//! until the store learns it.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use serde::Serialize;
use vigil_events::Event;

use super::identity::{Naming, PodIdentity};
use crate::cache::ProcessCache;

/// Events held at most; past it the oldest leaves without its pod (and is counted), so a flood
/// of events from unknown pods cannot grow the agent's memory.
const HELD_MAX: usize = 65_536;
/// How long a pod that never became known goes on without waiting.
const GIVEN_UP_FOR: Duration = Duration::from_secs(600);

/// What the pod stage did, for the agent's `stats` line.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct PodStats {
    /// Events whose process was named with its pod.
    pub events_with_pod: u64,
    /// Events that waited for their pod and got it.
    pub waited: u64,
    /// Events of a process in a pod's cgroup that went on without the pod: its wait ran out,
    /// or the queue was full.
    pub without_pod: u64,
    /// Events waiting now.
    pub held: usize,
}

struct Held {
    until: Instant,
    uid: String,
    event: Event,
}

/// The events waiting for their pod.
pub struct PodWait {
    held: VecDeque<Held>,
    /// Pods whose wait ran out, and when.
    given_up: HashMap<String, Instant>,
    max_wait: Duration,
    /// The store's generation when the held events were last looked at.
    seen: u64,
    stats: PodStats,
}

impl PodWait {
    /// Events wait at most `max_wait` for their pod.
    pub fn new(max_wait: Duration) -> PodWait {
        PodWait {
            held: VecDeque::new(),
            given_up: HashMap::new(),
            max_wait,
            seen: 0,
            stats: PodStats::default(),
        }
    }

    /// What it did so far.
    pub fn stats(&self) -> PodStats {
        PodStats {
            held: self.held.len(),
            ..self.stats.clone()
        }
    }

    /// Takes one event: names its processes' pods and puts it in `out`, or holds it while its
    /// pod is unknown. Held events whose pod became known leave first.
    pub fn admit(
        &mut self,
        mut event: Event,
        pods: &mut PodIdentity,
        cache: &mut ProcessCache,
        now: Instant,
        out: &mut Vec<Event>,
    ) {
        self.release(pods, cache, now, out);
        event.node_labels = pods.node_labels();
        let settled = |uid: &str| {
            self.given_up
                .get(uid)
                .is_some_and(|at| now.duration_since(*at) < GIVEN_UP_FOR)
        };
        match name_all(&mut event, pods, cache, &settled) {
            Naming::NotInPod => {
                // Named already (at its exec, or by an earlier event).
                if event.process().pod.is_some() {
                    self.stats.events_with_pod += 1;
                }
                out.push(event)
            }
            Naming::Named => {
                self.stats.events_with_pod += 1;
                out.push(event);
            }
            Naming::Unknown(uid) => {
                if settled(&uid) {
                    self.stats.without_pod += 1;
                    out.push(event);
                    return;
                }
                if self.held.len() >= HELD_MAX {
                    // The newcomer goes on without its pod: in a flood it is most likely the
                    // flood's own, and the held events of other pods keep their chance.
                    self.stats.without_pod += 1;
                    out.push(event);
                    return;
                }
                self.held.push_back(Held {
                    until: now + self.max_wait,
                    uid,
                    event,
                });
            }
        }
    }

    /// Puts in `out` the held events whose pod is known now and those whose wait ran out
    /// (without their pod), in the order they came.
    pub fn release(
        &mut self,
        pods: &mut PodIdentity,
        cache: &mut ProcessCache,
        now: Instant,
        out: &mut Vec<Event>,
    ) {
        if self.held.is_empty() {
            return;
        }
        let generation = pods.generation();
        let moved = generation != self.seen;
        self.seen = generation;
        let expired = self.held.front().is_some_and(|h| h.until <= now);
        if !moved && !expired {
            return;
        }
        // Once one event of a pod has waited out its time, every held event of that pod goes
        // now, in order, before the pod's next events (which no longer wait).
        let expired: std::collections::HashSet<String> = self
            .held
            .iter()
            .filter(|h| h.until <= now)
            .map(|h| h.uid.clone())
            .collect();
        let mut still = VecDeque::with_capacity(self.held.len());
        for mut h in self.held.drain(..) {
            let settle = expired.contains(&h.uid);
            let named = (moved || settle)
                && name_all(&mut h.event, pods, cache, &|_: &str| settle) == Naming::Named;
            if named {
                self.stats.waited += 1;
                self.stats.events_with_pod += 1;
                out.push(h.event);
            } else if settle {
                self.stats.without_pod += 1;
                self.given_up.insert(h.uid, now);
                out.push(h.event);
            } else {
                still.push_back(h);
            }
        }
        self.held = still;
        if self.given_up.len() > HELD_MAX {
            self.given_up
                .retain(|_, at| now.duration_since(*at) < GIVEN_UP_FOR);
        }
    }

    /// Lets every held event go (the agent stops).
    pub fn flush(&mut self, out: &mut Vec<Event>) {
        self.stats.without_pod += self.held.len() as u64;
        out.extend(self.held.drain(..).map(|h| h.event));
    }
}

/// Names the pods of every process of `event`; says what became of the one it is about.
/// `settled` says of a pod UID whether its events wait no more (a pod known without its
/// container is then named as it is); the parent and ancestors never wait.
fn name_all(
    event: &mut Event,
    pods: &mut PodIdentity,
    cache: &mut ProcessCache,
    settled: &dyn Fn(&str) -> bool,
) -> Naming {
    let mut processes = event.processes_mut();
    let first = match processes.next() {
        Some(p) => match pods.name(p, cache, false) {
            Naming::Unknown(uid) if settled(&uid) => pods.name(p, cache, true),
            n => n,
        },
        None => Naming::NotInPod,
    };
    for p in processes {
        pods.name(p, cache, true);
    }
    first
}

#[cfg(test)]
mod tests;
