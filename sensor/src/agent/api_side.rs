//! The agent loop's side of the API: it answers the requests the API's services queue, between
//! two reads of the ring buffer, with the policies and programs it owns.

use std::time::Instant;

use vigil_api::v1;

use super::{AgentStats, DropStats, Sinks};
use crate::{
    api::{policy_message, Api, ApiRequest},
    cache::ProcessCache,
    loader::LoadedObject,
    policy_watch::{api_ops::PolicyOpError, PolicyManager},
};

/// The next request of the API; never, without one.
pub(super) async fn next_request(api: &mut Option<Api>) -> ApiRequest {
    match api.as_mut() {
        Some(a) => match a.requests.recv().await {
            Some(r) => r,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// What a request may read and change.
pub(super) struct Loop<'a> {
    pub policies: Option<&'a mut PolicyManager>,
    pub sensor: &'a mut LoadedObject,
    pub sinks: &'a Sinks,
    pub stats: &'a AgentStats,
    pub cache: &'a ProcessCache,
    pub since: Instant,
    pub ring_bytes: u32,
    /// The bytes written into the ring buffer and not read yet, when they can be read.
    pub ring_used: Option<u64>,
    /// Reports a `rateLimit` held back so far.
    pub rate_limited: u64,
    /// Whether the agent holds the kernel's BPF statistics on.
    pub bpf_stats: bool,
}

impl Loop<'_> {
    /// Each sink's counters by name, as the exporters report them (numbers only), for the
    /// health answer and for the metrics page.
    pub(super) fn sink_counters(
        &self,
    ) -> impl Iterator<Item = (String, impl Iterator<Item = (String, u64)>)> {
        let stats = self.sinks.exporters.as_ref().map(|e| e.stats());
        let sinks = match stats {
            Some(serde_json::Value::Object(m)) => m,
            _ => Default::default(),
        };
        sinks.into_iter().map(|(sink, counters)| {
            let counters = match counters {
                serde_json::Value::Object(m) => m,
                _ => Default::default(),
            };
            let numbers = counters
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.as_u64()?)));
            (sink, numbers)
        })
    }
}

fn no_policies() -> PolicyOpError {
    PolicyOpError::State("the agent runs without its policy table".into())
}

impl Loop<'_> {
    /// Answers `request`; a caller that went away is not an error.
    pub fn answer(&mut self, request: ApiRequest) {
        let counts = &self.sinks.actions;
        match request {
            ApiRequest::ListPolicies(reply) => {
                let list = self
                    .policies
                    .as_ref()
                    .map(|p| p.list())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| policy_message(v, counts))
                    .collect();
                let _ = reply.send(list);
            }
            ApiRequest::AddPolicy(yaml, reply) => {
                let r = match self.policies.as_mut() {
                    Some(p) => p.add(self.sensor, &yaml),
                    None => Err(no_policies()),
                };
                let _ = reply.send(r.map(|v| policy_message(v, counts)));
            }
            ApiRequest::DeletePolicy(name, reply) => {
                let r = match self.policies.as_mut() {
                    Some(p) => p.delete(self.sensor, &name),
                    None => Err(no_policies()),
                };
                let _ = reply.send(r);
            }
            ApiRequest::SetEnabled(name, enabled, reply) => {
                let r = match self.policies.as_mut() {
                    Some(p) => p.set_enabled(self.sensor, &name, enabled),
                    None => Err(no_policies()),
                };
                let _ = reply.send(r.map(|v| policy_message(v, counts)));
            }
            ApiRequest::SetMode(name, mode, reply) => {
                let r = match self.policies.as_mut() {
                    Some(p) => p.set_mode(self.sensor, &name, mode),
                    None => Err(no_policies()),
                };
                let _ = reply.send(r.map(|v| policy_message(v, counts)));
            }
            ApiRequest::Health(reply) => {
                let _ = reply.send(self.health());
            }
        }
    }

    fn health(&self) -> v1::GetHealthResponse {
        let drops = DropStats::from_slots(self.sensor.drops());
        let not_run = self.sensor.runner_misses();
        let mut problems = Vec::new();
        if drops.total > 0 {
            problems.push(format!(
                "the ring buffer was full: {} records dropped (raise --ringbuf-size)",
                drops.total
            ));
        }
        if not_run > 0 {
            problems.push(format!(
                "{not_run} calls ran no policy hook: a hook runner is missing from its array; restart the agent"
            ));
        }
        if self.stats.decode_errors > 0 {
            problems.push(format!(
                "{} records did not decode",
                self.stats.decode_errors
            ));
        }
        let exporters = self
            .sink_counters()
            .map(|(name, counters)| v1::Exporter {
                name,
                counters: counters.collect(),
            })
            .collect();
        let file_open = match &self.policies {
            Some(p) if p.file_open_attached() => "attached",
            _ => "not attached (no file-open policy)",
        };
        let mut sensors = vec![
            sensor("process lifecycle", "running"),
            sensor("file open", file_open),
        ];
        if self.sinks.kube.is_some() {
            sensors.push(sensor("kubernetes pods", "watching this node's pods"));
        }
        if self.sinks.detector.is_some() {
            sensors.push(sensor("sigma", "running"));
        }
        let store = self.sinks.store.store.as_ref().map(|s| s.stats());
        if let Some(why) = &self.sinks.store.waiting_reason {
            problems.push(format!("the event store is not open: {why}"));
        }
        if let Some(s) = &store {
            sensors.push(sensor("event store", "keeping events"));
            if s.shed > 0 {
                problems.push(format!(
                    "the event store fell behind: {} events not kept (a slow disk, or raise store.queue)",
                    s.shed
                ));
            }
            if let Some(e) = &s.last_error {
                problems.push(format!("the event store: {e}"));
            }
            if s.evicted > 0 {
                problems.push(format!(
                    "the event store reached its size: {} events were removed before their age; the oldest kept is from {} (raise store.max_size_mib)",
                    s.evicted,
                    vigil_events::time::rfc3339(i128::from(s.oldest_kept_ns))
                ));
            }
        }
        v1::GetHealthResponse {
            status: if problems.is_empty() {
                "ok"
            } else {
                "degraded"
            }
            .into(),
            problems,
            sensors,
            ring_buffer: Some(v1::RingBuffer {
                size_bytes: self.ring_bytes.into(),
                used_bytes: self.ring_used,
                dropped_exec: drops.exec,
                dropped_fork: drops.fork,
                dropped_exit: drops.exit,
                dropped_total: drops.total,
            }),
            records: self.stats.records,
            events: self.stats.events,
            decode_errors: self.stats.decode_errors,
            alerts: self.stats.alerts,
            hooks_not_run: not_run,
            process_cache_size: self.cache.len() as u64,
            process_cache_evictions: self.cache.evictions(),
            exporters,
            api_streams: 0,
            api_events_missed: 0,
            uptime_seconds: self.since.elapsed().as_secs(),
            bpf_stats: self.bpf_stats,
            programs: self
                .sensor
                .program_runs()
                .into_iter()
                .map(|(name, runs, time)| v1::ProgramRuns {
                    name,
                    runs,
                    run_time_ns: u64::try_from(time.as_nanos()).unwrap_or(u64::MAX),
                })
                .collect(),
            store: Some(match store {
                Some(s) => v1::EventStore {
                    enabled: true,
                    offered: s.offered,
                    shed: s.shed,
                    committed: s.committed,
                    failed: s.failed,
                    expired: s.expired,
                    evicted: s.evicted,
                    previous_run_lost: s.recovery.lost,
                    last_error: s.last_error.unwrap_or_default(),
                },
                None => v1::EventStore::default(),
            }),
        }
    }
}

fn sensor(name: &str, state: &str) -> v1::Sensor {
    v1::Sensor {
        name: name.into(),
        state: state.into(),
    }
}
