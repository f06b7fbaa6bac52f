//! Kubernetes identity: which pod and container a process belongs to. The cgroup path names
//! them ([`cgroup`]) before the API server has told the agent anything; the pod watcher fills in
//! names, labels and images from this node's pods.

// The pod watcher that reads these is the next part of the Kubernetes work; until it lands the
// parser is reached from its tests only.
#[allow(dead_code)]
pub mod cgroup;
#[allow(dead_code)]
pub mod pods;
#[allow(dead_code)]
pub mod watch;
