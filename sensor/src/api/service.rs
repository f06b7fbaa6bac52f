//! The `vigil.v1.Vigil` service. Calls that read or change the agent's state (policies,
//! health) are requests to the agent's loop, which owns the policies and the programs and
//! answers between two ring-buffer reads; event streams are served from the [`EventHub`]
//! without the loop; version and kernel facts are answered here.

use std::{collections::BTreeMap, sync::Arc};

use tokio::sync::{mpsc, oneshot, OnceCell};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use vigil_api::v1::{self, vigil_server::Vigil};
use vigil_events::{Event, EventBody};
use vigil_policy_engine::{plan::Guarantee, Mode};

use super::events::EventHub;
use crate::policy_watch::api_ops::{PolicyOpError, PolicyView};

/// The answer to a policy request.
pub type Reply<T> = oneshot::Sender<Result<T, PolicyOpError>>;

/// What the API asks of the agent's loop.
pub enum ApiRequest {
    /// Every policy.
    ListPolicies(oneshot::Sender<Vec<v1::Policy>>),
    /// Add (or replace) a policy from YAML.
    AddPolicy(String, Reply<v1::Policy>),
    /// Delete a policy added through the API.
    DeletePolicy(String, Reply<()>),
    /// Enable (true) or disable a policy.
    SetEnabled(String, bool, Reply<v1::Policy>),
    /// Set a policy's mode.
    SetMode(String, Mode, Reply<v1::Policy>),
    /// The agent's health.
    Health(oneshot::Sender<v1::GetHealthResponse>),
}

/// How many times each selector of each policy's hooks acted, by action and outcome, counted
/// from the events published.
#[derive(Default)]
pub struct ActionCounts {
    counts: BTreeMap<ActionKey, u64>,
    /// The key counted last: a storm of one policy's events is counted without making its key
    /// again (four strings allocated and freed per event, 7 % of a policy event's cost in the
    /// loop).
    last: Option<ActionKey>,
}

/// Policy, hook, selector, action, outcome.
pub type ActionKey = (String, String, Option<u32>, String, String);

/// Most (policy, hook, action, outcome) counters kept: a policy churned through the API cannot
/// grow the agent's memory without bound.
const MAX_COUNTERS: usize = 65_536;

impl ActionCounts {
    /// Counts a policy event.
    pub fn record(&mut self, e: &Event) {
        let (EventBody::ProcessKprobe(p)
        | EventBody::ProcessLsm(p)
        | EventBody::ProcessUprobe(p)
        | EventBody::ProcessTracepoint(p)
        | EventBody::ProcessLoader(p)) = &e.body
        else {
            return;
        };
        if let Some(last) = &self.last {
            let (policy, hook, selector, action, outcome) = last;
            if (policy, hook, selector, action, outcome)
                == (
                    &p.policy_name,
                    &p.function_name,
                    &p.selector,
                    &p.action,
                    &p.outcome,
                )
            {
                if let Some(n) = self.counts.get_mut(last) {
                    *n += 1;
                }
                return;
            }
        }
        let key = (
            p.policy_name.clone(),
            p.function_name.clone(),
            p.selector,
            p.action.clone(),
            p.outcome.clone(),
        );
        if let Some(n) = self.counts.get_mut(&key) {
            *n += 1;
        } else if self.counts.len() < MAX_COUNTERS {
            self.counts.insert(key.clone(), 1);
        } else {
            // Not counted: neither is the next event with its key.
            self.last = None;
            return;
        }
        self.last = Some(key);
    }

    /// Every counter: (policy, hook, selector, action, outcome) and its count.
    pub fn series(&self) -> impl Iterator<Item = (&ActionKey, u64)> {
        self.counts.iter().map(|(k, n)| (k, *n))
    }

    fn of(&self, policy: &str) -> Vec<v1::ActionCounter> {
        self.counts
            .iter()
            .filter(|((p, ..), _)| p == policy)
            .map(
                |((_, hook, selector, action, outcome), n)| v1::ActionCounter {
                    hook: hook.clone(),
                    selector: *selector,
                    action: action.clone(),
                    outcome: outcome.clone(),
                    count: *n,
                },
            )
            .collect()
    }
}

/// A policy as the API returns it.
pub fn policy_message(v: PolicyView, counts: &ActionCounts) -> v1::Policy {
    v1::Policy {
        counters: counts.of(&v.name),
        name: v.name,
        source: v.source,
        state: v.state.to_string(),
        mode: match v.mode {
            Some(Mode::Enforce) => "enforce".into(),
            Some(Mode::Monitor) => "monitor".into(),
            None => String::new(),
        },
        hooks: v
            .hooks
            .into_iter()
            .map(|h| v1::HookAttach {
                path: h.path,
                hook: h.hook,
                attach: h.attach,
                guarantee: h.guarantee,
            })
            .collect(),
        kernel_memory_bytes: v.kernel_bytes,
        error: v.error.unwrap_or_default(),
        namespace: v.namespace.unwrap_or_default(),
    }
}

/// The service.
pub struct VigilService {
    pub(super) requests: mpsc::Sender<ApiRequest>,
    pub(super) hub: EventHub,
    pub(super) btf: String,
    pub(super) node: String,
    pub(super) info: Arc<OnceCell<v1::GetInfoResponse>>,
    pub(super) store: super::search::StoreReader,
}

fn op_status(e: PolicyOpError) -> Status {
    match e {
        PolicyOpError::Invalid(m) => Status::invalid_argument(m),
        PolicyOpError::NotFound(_) => Status::not_found(e.to_string()),
        PolicyOpError::Elsewhere(m) | PolicyOpError::Refused(m) => Status::failed_precondition(m),
        PolicyOpError::State(m) => Status::internal(m),
    }
}

impl VigilService {
    /// Sends a request to the agent's loop and waits for its answer.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> ApiRequest,
    ) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(make(tx))
            .await
            .map_err(|_| Status::unavailable("the agent is stopping"))?;
        rx.await
            .map_err(|_| Status::unavailable("the agent is stopping"))
    }

    async fn policy_op(
        &self,
        make: impl FnOnce(Reply<v1::Policy>) -> ApiRequest,
    ) -> Result<Option<v1::Policy>, Status> {
        self.ask(make).await?.map(Some).map_err(op_status)
    }
}

#[tonic::async_trait]
impl Vigil for VigilService {
    type GetEventsStream = ReceiverStream<Result<v1::GetEventsResponse, Status>>;

    async fn get_events(
        &self,
        req: Request<v1::GetEventsRequest>,
    ) -> Result<Response<Self::GetEventsStream>, Status> {
        let rx = self.hub.subscribe(req.into_inner())?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type SearchStream = ReceiverStream<Result<v1::SearchResponse, Status>>;

    async fn search(
        &self,
        req: Request<v1::SearchRequest>,
    ) -> Result<Response<Self::SearchStream>, Status> {
        let rx = self.store.search(req.into_inner())?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type ProcessTreeStream = ReceiverStream<Result<v1::ProcessTreeResponse, Status>>;

    async fn process_tree(
        &self,
        req: Request<v1::ProcessTreeRequest>,
    ) -> Result<Response<Self::ProcessTreeStream>, Status> {
        let rx = self.store.tree(req.into_inner())?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_policies(
        &self,
        _: Request<v1::ListPoliciesRequest>,
    ) -> Result<Response<v1::ListPoliciesResponse>, Status> {
        let policies = self.ask(ApiRequest::ListPolicies).await?;
        Ok(Response::new(v1::ListPoliciesResponse { policies }))
    }

    async fn add_policy(
        &self,
        req: Request<v1::AddPolicyRequest>,
    ) -> Result<Response<v1::AddPolicyResponse>, Status> {
        let yaml = req.into_inner().yaml;
        let policy = self.policy_op(|r| ApiRequest::AddPolicy(yaml, r)).await?;
        Ok(Response::new(v1::AddPolicyResponse { policy }))
    }

    async fn delete_policy(
        &self,
        req: Request<v1::DeletePolicyRequest>,
    ) -> Result<Response<v1::DeletePolicyResponse>, Status> {
        let name = req.into_inner().name;
        self.ask(|r| ApiRequest::DeletePolicy(name, r))
            .await?
            .map_err(op_status)?;
        Ok(Response::new(v1::DeletePolicyResponse {}))
    }

    async fn enable_policy(
        &self,
        req: Request<v1::EnablePolicyRequest>,
    ) -> Result<Response<v1::EnablePolicyResponse>, Status> {
        let name = req.into_inner().name;
        let policy = self
            .policy_op(|r| ApiRequest::SetEnabled(name, true, r))
            .await?;
        Ok(Response::new(v1::EnablePolicyResponse { policy }))
    }

    async fn disable_policy(
        &self,
        req: Request<v1::DisablePolicyRequest>,
    ) -> Result<Response<v1::DisablePolicyResponse>, Status> {
        let name = req.into_inner().name;
        let policy = self
            .policy_op(|r| ApiRequest::SetEnabled(name, false, r))
            .await?;
        Ok(Response::new(v1::DisablePolicyResponse { policy }))
    }

    async fn set_policy_mode(
        &self,
        req: Request<v1::SetPolicyModeRequest>,
    ) -> Result<Response<v1::SetPolicyModeResponse>, Status> {
        let req = req.into_inner();
        let mode = match v1::PolicyMode::try_from(req.mode) {
            Ok(v1::PolicyMode::Enforce) => Mode::Enforce,
            Ok(v1::PolicyMode::Monitor) => Mode::Monitor,
            _ => {
                return Err(Status::invalid_argument(
                    "mode: POLICY_MODE_ENFORCE or POLICY_MODE_MONITOR",
                ))
            }
        };
        let name = req.name;
        let policy = self
            .policy_op(|r| ApiRequest::SetMode(name, mode, r))
            .await?;
        Ok(Response::new(v1::SetPolicyModeResponse { policy }))
    }

    async fn get_health(
        &self,
        _: Request<v1::GetHealthRequest>,
    ) -> Result<Response<v1::GetHealthResponse>, Status> {
        let mut health = self.ask(ApiRequest::Health).await?;
        let c = self.hub.counters();
        health.api_streams = c.streams.load(std::sync::atomic::Ordering::Relaxed) as u32;
        health.api_events_missed = c.missed.load(std::sync::atomic::Ordering::Relaxed);
        Ok(Response::new(health))
    }

    async fn get_version(
        &self,
        _: Request<v1::GetVersionRequest>,
    ) -> Result<Response<v1::GetVersionResponse>, Status> {
        Ok(Response::new(v1::GetVersionResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            abi: crate::loader::pins::abi_version(),
        }))
    }

    async fn get_info(
        &self,
        _: Request<v1::GetInfoRequest>,
    ) -> Result<Response<v1::GetInfoResponse>, Status> {
        let (btf, node) = (self.btf.clone(), self.node.clone());
        let info = self
            .info
            .get_or_try_init(|| async move {
                // The probe loads and runs a program of each kind: seconds, off the loop.
                tokio::task::spawn_blocking(move || info(&btf, node))
                    .await
                    .map_err(|e| Status::internal(format!("the probe failed: {e}")))
            })
            .await?;
        Ok(Response::new(info.clone()))
    }
}

/// `vigil probe`'s report and the file-open ladder on this kernel.
fn info(btf: &str, node: String) -> v1::GetInfoResponse {
    let report = crate::probe::run(btf);
    let caps = report.caps();
    let rung = |mechanism: &str, available: bool, g: Guarantee| v1::AttachRung {
        mechanism: mechanism.to_string(),
        available,
        guarantee: g.describe().to_string(),
    };
    v1::GetInfoResponse {
        attach_ladder: vec![
            rung(
                "BPF LSM on file_open",
                caps.lsm,
                Guarantee::DeniedBeforeEffect,
            ),
            rung(
                "fmod_ret on security_file_open",
                caps.fmod_ret,
                Guarantee::DeniedBeforeEffect,
            ),
            rung(
                "kprobe on security_file_open with SIGKILL",
                caps.kprobe && caps.send_signal,
                Guarantee::KilledBeforeReturn,
            ),
            rung(
                "the open system calls' tracepoints with SIGKILL",
                caps.tracepoint && caps.send_signal,
                Guarantee::KilledBeforeReturn,
            ),
        ],
        kernel: report.kernel.clone(),
        node_name: node,
        btf: report.btf,
        lsms: report.lsms.clone(),
        lockdown: report.lockdown.clone().unwrap_or_default(),
        program_kinds: report
            .program_kinds
            .iter()
            .map(|k| v1::ProgramKind {
                kind: k.kind.to_string(),
                hook: k.hook.to_string(),
                loads: k.loads,
                attaches: k.attaches,
                fires: k.fires,
                available: k.available,
                error: k.error.clone().unwrap_or_default(),
            })
            .collect(),
        helpers: report
            .helpers
            .iter()
            .map(|h| v1::Helper {
                helper: h.helper.to_string(),
                from: h.from.to_string(),
                available: h.available,
                error: h.error.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_events::ProcessPolicy;

    fn event(policy: &str, selector: Option<u32>, action: &str) -> Event {
        Event {
            body: EventBody::ProcessLsm(Box::new(ProcessPolicy {
                policy_name: policy.into(),
                function_name: "security_file_open".into(),
                selector,
                action: action.into(),
                outcome: "posted".into(),
                ..Default::default()
            })),
            node_name: "n".into(),
            node_labels: Default::default(),
            time: String::new(),
        }
    }

    /// Runs of one key, keys interleaved, a key that differs only in its selector: each counted
    /// under its own key, however the last key counted was kept.
    #[test]
    fn every_event_is_counted_under_its_own_key() {
        let mut counts = ActionCounts::default();
        let (a, b, c) = (
            event("a", Some(0), "KPROBE_ACTION_POST"),
            event("b", Some(0), "KPROBE_ACTION_POST"),
            event("a", Some(1), "KPROBE_ACTION_POST"),
        );
        for e in [&a, &a, &a, &b, &a, &c, &c, &b] {
            counts.record(e);
        }
        let series: Vec<_> = counts
            .series()
            .map(|((policy, _, selector, ..), n)| (policy.as_str(), *selector, n))
            .collect();
        assert_eq!(
            series,
            [("a", Some(0), 4), ("a", Some(1), 2), ("b", Some(0), 2)]
        );
    }
}
