use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod as ApiPod;
use vigil_events::{Cgroup, Event, EventBody, Process, ProcessExec};

use super::*;
use crate::k8s::pods::PodStore;

const UID: &str = "0b2c4e6f-7f1b-4c2d-9e8f-1a2b3c4d5e6f";
const OTHER: &str = "1b2c4e6f-7f1b-4c2d-9e8f-1a2b3c4d5e6f";

fn api_pod(uid: &str, started: bool) -> ApiPod {
    let statuses = if started {
        serde_json::json!([{"name": "web", "image": "nginx", "imageID": "nginx@sha256:00",
            "ready": true, "restartCount": 0, "containerID": format!("containerd://{}", "a".repeat(64))}])
    } else {
        serde_json::json!([])
    };
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web-1", "namespace": "shop", "uid": uid},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
        "status": {"containerStatuses": statuses}
    }))
    .unwrap()
}

fn exec(pid: u32, cgroup: &str) -> Event {
    let process = Process {
        pid,
        exec_id: vigil_events::ExecId(format!("id-{pid}").into()),
        binary: "/bin/true".into(),
        cgroup: Some(Cgroup {
            id: 1,
            path: cgroup.into(),
        }),
        ..Default::default()
    };
    Event {
        body: EventBody::ProcessExec(ProcessExec {
            process: Arc::new(process),
            parent: None,
            ancestors: Vec::new(),
        }),
        node_name: "n".into(),
        node_labels: Default::default(),
        time: String::new(),
    }
}

fn in_pod(uid: &str) -> String {
    format!("/kubepods/burstable/pod{uid}/{}", "a".repeat(64))
}

struct Stage {
    wait: PodWait,
    pods: PodIdentity,
    cache: ProcessCache,
}

impl Stage {
    fn new(max_wait: Duration) -> Stage {
        Stage {
            wait: PodWait::new(max_wait),
            pods: PodIdentity::new(Arc::new(Mutex::new(PodStore::new(
                Duration::from_secs(60),
                false,
            )))),
            cache: ProcessCache::new(NonZeroUsize::new(16).unwrap(), Duration::from_secs(30)),
        }
    }

    fn admit(&mut self, e: Event, now: Instant) -> Vec<Event> {
        let mut out = Vec::new();
        self.wait
            .admit(e, &mut self.pods, &mut self.cache, now, &mut out);
        out
    }

    fn release(&mut self, now: Instant) -> Vec<Event> {
        let mut out = Vec::new();
        self.wait
            .release(&mut self.pods, &mut self.cache, now, &mut out);
        out
    }

    fn learn(&self, uid: &str) {
        self.pods.store.lock().unwrap().apply(&api_pod(uid, true));
    }
}

fn pids(events: &[Event]) -> Vec<u32> {
    events.iter().map(|e| e.process().pid).collect()
}

#[test]
fn an_event_of_an_unknown_pod_waits_and_leaves_with_its_pod_in_order() {
    let mut s = Stage::new(Duration::from_secs(2));
    let t0 = Instant::now();
    assert!(s.admit(exec(1, &in_pod(UID)), t0).is_empty());
    // A process in no pod goes on at once; a second event of the waiting pod queues behind.
    assert_eq!(
        pids(&s.admit(exec(2, "/user.slice/session-1.scope"), t0)),
        [2]
    );
    assert!(s.admit(exec(3, &in_pod(UID)), t0).is_empty());
    assert!(s.release(t0 + Duration::from_millis(10)).is_empty());
    s.learn(UID);
    let out = s.release(t0 + Duration::from_millis(20));
    assert_eq!(pids(&out), [1, 3]);
    assert!(out
        .iter()
        .all(|e| e.process().pod.as_ref().unwrap().name == "web-1"));
    let stats = s.wait.stats();
    assert_eq!(
        (
            stats.waited,
            stats.events_with_pod,
            stats.without_pod,
            stats.held
        ),
        (2, 2, 0, 0)
    );
}

#[test]
fn a_container_the_pod_s_status_does_not_list_yet_is_waited_for_then_named_by_its_id() {
    let mut s = Stage::new(Duration::from_secs(2));
    s.pods.store.lock().unwrap().apply(&api_pod(UID, false));
    let t0 = Instant::now();
    assert!(s.admit(exec(1, &in_pod(UID)), t0).is_empty());
    let out = s.release(t0 + Duration::from_secs(2));
    let pod = out[0].process().pod.clone().unwrap();
    let container = pod.container.unwrap();
    // The cgroupfs driver's bare id does not say which runtime made it.
    assert_eq!(
        (container.id, container.name),
        ("a".repeat(64), String::new())
    );
    // Named without its container's name, the process is not cached so: its next event, once
    // the status lists the container, has the name.
    let e = exec(2, &in_pod(UID));
    s.cache.insert((*e.process()).clone(), t0);
    s.learn(UID);
    let out = s.admit(e, t0 + Duration::from_secs(3));
    let named = out[0].process().pod.clone().unwrap().container.unwrap();
    assert_eq!(named.name, "web");
    assert_eq!(
        s.cache
            .by_pid(2)
            .unwrap()
            .pod
            .as_ref()
            .unwrap()
            .container
            .as_ref()
            .unwrap()
            .name,
        "web"
    );
}

#[test]
fn a_pod_never_named_costs_one_wait_and_is_counted() {
    let mut s = Stage::new(Duration::from_secs(2));
    let t0 = Instant::now();
    assert!(s.admit(exec(1, &in_pod(OTHER)), t0).is_empty());
    let out = s.release(t0 + Duration::from_secs(2));
    assert_eq!(pids(&out), [1]);
    assert!(out[0].process().pod.is_none());
    // Its later events do not wait again.
    assert_eq!(
        pids(&s.admit(exec(2, &in_pod(OTHER)), t0 + Duration::from_secs(3))),
        [2]
    );
    assert_eq!(s.wait.stats().without_pod, 2);
}

#[test]
fn the_cache_keeps_the_pod_so_later_events_have_it_at_once() {
    let mut s = Stage::new(Duration::from_secs(2));
    s.learn(UID);
    let t0 = Instant::now();
    let e = exec(7, &in_pod(UID));
    s.cache.insert((*e.process()).clone(), t0);
    assert_eq!(pids(&s.admit(e, t0)), [7]);
    let cached = s.cache.by_pid(7).unwrap();
    assert_eq!(cached.pod.as_ref().unwrap().namespace, "shop");
}

#[test]
fn a_full_queue_lets_the_newcomer_go_without_its_pod() {
    let mut s = Stage::new(Duration::from_secs(60));
    let t0 = Instant::now();
    for pid in 0..HELD_MAX as u32 {
        assert!(s.admit(exec(pid, &in_pod(UID)), t0).is_empty());
    }
    assert_eq!(
        pids(&s.admit(exec(99_999_999, &in_pod(UID)), t0)),
        [99_999_999]
    );
    let mut rest = Vec::new();
    s.wait.flush(&mut rest);
    assert_eq!(rest.len(), HELD_MAX);
    assert_eq!(s.wait.stats().without_pod, HELD_MAX as u64 + 1);
}

#[test]
fn a_pod_given_up_on_lets_all_its_held_events_go_in_order_before_its_next() {
    let mut s = Stage::new(Duration::from_secs(2));
    let t0 = Instant::now();
    assert!(s.admit(exec(1, &in_pod(OTHER)), t0).is_empty());
    assert!(s
        .admit(exec(2, &in_pod(OTHER)), t0 + Duration::from_secs(1))
        .is_empty());
    // The first one's time is up: both go, then the pod's next event.
    let out = s.admit(exec(3, &in_pod(OTHER)), t0 + Duration::from_secs(2));
    assert_eq!(pids(&out), [1, 2, 3]);
}
