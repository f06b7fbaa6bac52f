//! `vigil agent`: load, seed, then read the ring buffer until told to stop.
//!
//! Order matters for losing nothing: the programs are attached *before* `/proc` is scanned, so
//! a process born during the scan is either in the scan or in the ring buffer (or both, which
//! the cache resolves). On SIGINT/SIGTERM the ring buffer is drained before the final counts
//! are printed.

use std::{
    num::NonZeroUsize,
    os::fd::AsFd,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use aya::maps::{MapData, RingBuf};
use serde::Serialize;
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, SignalKind},
};
use vigil_bpf_kprobes::abi::{self, Record};
use vigil_events::time::BootClock;

use vigil_exporters::Exporters;

mod api_side;
mod cluster;
mod metrics_side;
mod pinned;
mod ring_fill;
mod sinks;
mod start;
mod stats;
mod store;

use cluster::apply_policy_objects;
pub use pinned::cleanup;
use pinned::retire_previous;
use sinks::Sinks;
use start::{serve_metrics, start, RetireWhen, StartClock, Started, RETIRE_WAIT};
use stats::monotonic_ns;
pub use stats::{AgentStats, DropStats};

use crate::{
    api::{ActionCounts, Api, ApiOptions, EventHub},
    cache::ProcessCache,
    enrich::{EnrichOptions, EventEnricher},
    identity::Identity,
    k8s::{KubeOptions, KubeStats, Kubernetes},
    loader::{
        cgroup_subsys_for_host,
        pins::{self, PinDir, Retired},
        Handover, LoadError, LoadOptions, LoadedObject, ProgramNeed,
    },
    metrics::MetricsEndpoint,
    output::{self, Format},
    policies::scopes::ScopeSource,
    policies::PolicyTable,
    policy_watch::{state::PolicyState, PolicyManager, StartingPolicies},
    probe, proc_seed,
    sigma_alerts::SigmaDetector,
    system,
};

/// Options of `vigil agent`.
pub struct AgentOptions {
    /// Kernel BTF file.
    pub btf: String,
    /// Export file (a rotated file sink), or stdout.
    pub export_file: Option<PathBuf>,
    /// Line format.
    pub format: Format,
    /// Node name override.
    pub node_name: Option<String>,
    /// Process cache capacity.
    pub cache_capacity: NonZeroUsize,
    /// How long ended executions stay in the cache.
    pub exit_grace: Duration,
    /// Ancestors per event.
    pub ancestors: usize,
    /// Which of a process's optional objects events carry.
    pub process_details: crate::identity::ProcessDetails,
    /// Ring buffer bytes.
    pub ringbuf_bytes: u32,
    /// TracingPolicy files to enforce.
    pub policies: Vec<PathBuf>,
    /// A directory of policies, watched for changes.
    pub policy_dir: Option<PathBuf>,
    /// Sigma rule files and directories, watched for changes.
    pub sigma: Vec<PathBuf>,
    /// The agent's own JSON output carries the alerts too.
    pub alerts_in_stream: bool,
    /// The configuration file's settings.
    pub config: Option<crate::config::AgentConfig>,
    /// The Kubernetes cluster, if any.
    pub kube: KubeOptions,
    /// What the agent's own outputs (stdout, the export file) carry of pods' events.
    pub own_filter: vigil_exporters::filter::FilterSpec,
    /// Where links and maps are pinned.
    pub bpf_dir: PathBuf,
    /// Whether this agent pins its own, so that its enforcement outlives it.
    pub persist: bool,
    /// Where the policies added through the API and the API's overrides are kept.
    pub state_dir: PathBuf,
    /// The API's unix socket (none: the API is not served on one).
    pub api_socket: Option<PathBuf>,
    /// Keep no events (`--no-store`), whatever the configuration says.
    pub no_store: bool,
    /// Where the Prometheus endpoint listens (none: no endpoint).
    pub metrics: Option<std::net::SocketAddr>,
    /// Turn the kernel's BPF run-time statistics on while the agent runs.
    pub bpf_stats: bool,
    /// Remote ranges whose flows' encryption is tracked (`--encryption-range`), beside the
    /// configuration file's.
    pub encryption_ranges: Vec<ipnet::IpNet>,
}

/// How long the start waits for the first list of this node's pods.
const POD_LIST_WAIT: Duration = Duration::from_secs(5);

/// How often the ring buffer is read when the kernel has not woken us.
const DRAIN_INTERVAL: Duration = Duration::from_millis(50);
/// Drain ticks between cache expiry and drop-counter checks (one second).
const HOUSEKEEPING_EVERY: u32 = 20;

/// Prints a log line on stderr (events own stdout).
pub fn log(msg: impl std::fmt::Display) {
    eprintln!("vigil: {msg}");
}

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(opts: AgentOptions) -> Result<()> {
    let mut clock = StartClock::new();
    // Before "agent ready": whoever waits for that line may stop the agent at once.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let Started {
        mut retire,
        mut sensor,
        ring,
        mut policies,
        mut enricher,
        mut sinks,
        mut stats,
        mut api,
        ring_bytes,
        mut metrics,
        metrics_address,
        bpf_stats,
    } = start(opts, &mut clock).await?;
    let since = Instant::now();
    // Started: what the start freed is gone; the loop keeps what a storm's turns free for the
    // next (`vigil_allocator`).
    vigil_allocator::purge_freed_after(1000);
    if let Some(m) = &metrics {
        m.set_ready();
    }

    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged until the AsyncFd
    // (which owns the ring buffer) is dropped.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("cannot poll the ring buffer: {}", e))?;
    // Without the fill (a kernel that refuses the mapping), every turn reads a whole budget.
    let fill = match ring_fill::RingFill::new(ring.get_ref().as_fd(), ring_bytes) {
        Ok(fill) => Some(fill),
        Err(e) => {
            log(format!("cannot read the ring buffer's fill ({e}): its turns are not fitted to the outputs' room"));
            None
        }
    };
    // The kernel wakes us only when records pile up (see VIGIL_WAKEUP_BYTES), so a quiet
    // stream is read on this timer; housekeeping runs on every HOUSEKEEPING_EVERY-th tick.
    let mut tick = tokio::time::interval(DRAIN_INTERVAL);
    // A loop busy for longer than a tick (a storm, a stall) must not find the missed ticks all
    // due at once: each would drain a full budget in a row without the sinks having a turn,
    // and their queues would spill to disk.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u32;
    let mut reported_drops = DropStats::default();
    let mut reported_misses = 0;
    // What earlier agents' programs wrote while no agent read it is a gap in the stream too.
    // (An agent still running says its own.)
    let earlier: Vec<u64> = stats
        .previous_agents
        .iter()
        .filter(|r| !r.running)
        .map(Retired::lost)
        .collect();
    for lost in earlier {
        sinks.publish_lost(&enricher, 0, lost, &mut stats);
    }
    // What a scrape and an API request may read and change, borrowed afresh for each (a macro,
    // since the borrows must end before the loop reads the ring buffer again).
    macro_rules! loop_view {
        () => {
            api_side::Loop {
                policies: policies.as_mut(),
                sensor: &mut sensor,
                sinks: &sinks,
                stats: &stats,
                cache: &enricher.cache,
                since,
                ring_bytes,
                ring_used: fill.as_ref().map(ring_fill::RingFill::used),
                rate_limited: enricher.rate_limit.held_back,
                bpf_stats: bpf_stats.is_some(),
            }
        };
    }

    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let more = drain(guard.get_inner_mut(), fill.as_ref(), &mut enricher, &mut sinks, &mut stats, policies.as_ref().map(|p| p.table()), false).await;
                if more {
                    // Still ready: the loop comes back, after the signals, the housekeeping
                    // and the sinks' tasks had their turn.
                    drop(guard);
                    tokio::task::yield_now().await;
                } else {
                    guard.clear_ready();
                }
            }
            _ = tick.tick() => {
                let more = drain(ring.get_mut(), fill.as_ref(), &mut enricher, &mut sinks, &mut stats, policies.as_ref().map(|p| p.table()), false).await;
                if more {
                    // The sinks take what this turn queued before the housekeeping's turn.
                    tokio::task::yield_now().await;
                }
                if let Some(m) = metrics.as_mut() {
                    m.turned();
                    m.answer(|| {
                        loop_view!().metrics()
                    });
                }
                sinks.release(&mut enricher.cache, &mut stats, Instant::now());
                sinks.store.hand_off();
                if let Some(p) = policies.as_mut() {
                    if let Some(k) = sinks.kube.as_mut() {
                        apply_policy_objects(k, p, &mut sensor);
                    }
                    p.sync_scopes();
                }
                if let RetireWhen::PolicyObjectsListed(since) = retire {
                    let listed = sinks.kube.as_ref().is_some_and(|k| {
                        k.listed.len() == crate::k8s::policy_objects::POLICY_RESOURCES.len()
                    });
                    if listed || since.elapsed() >= RETIRE_WAIT {
                        if !listed {
                            log(format!("the cluster's policy objects are not all listed {} s after the start (a CRD missing, or the API server unreachable): what earlier agents pinned is replaced now, and objects listed later are enforced as they come", RETIRE_WAIT.as_secs()));
                        }
                        let retired = retire_previous(&sensor);
                        for r in retired.iter().filter(|r| !r.running) {
                            sinks.publish_lost(&enricher, 0, r.lost(), &mut stats);
                        }
                        stats.previous_agents.extend(retired);
                        retire = RetireWhen::Done;
                    }
                }
                ticks = ticks.wrapping_add(1);
                if !ticks.is_multiple_of(HOUSEKEEPING_EVERY) {
                    continue;
                }
                enricher.cache.expire(Instant::now());
                if metrics.is_none() && metrics_address.is_some() {
                    metrics = serve_metrics(metrics_address, true);
                    if let Some(m) = &metrics {
                        m.set_ready();
                    }
                }
                if let Some(p) = policies.as_mut() {
                    p.rescan(&mut sensor)?;
                    p.refresh_inodes();
                }
                apply_remote_ranges(sinks.kube.as_ref(), &mut enricher, &mut sensor);
                if let Some(d) = sinks.detector.as_mut() {
                    d.rescan();
                }
                sinks.store.retry();
                let drops = DropStats::from_slots(sensor.drops());
                if drops != reported_drops {
                    log(format!(
                        "ring buffer full: {} records dropped so far (exec {}, fork {}, exit {}); raise --ringbuf-size",
                        drops.total, drops.exec, drops.fork, drops.exit
                    ));
                    sinks.publish_lost(&enricher, reported_drops.total, drops.total, &mut stats);
                    reported_drops = drops;
                    if let Err(e) = sensor.set_drops_seen(drops.total) {
                        log(format!("cannot record the drops reported: {e}"));
                    }
                }
                let misses = sensor.runner_misses();
                if misses != reported_misses {
                    log(format!(
                        "{misses} calls ran no policy hook: a hook runner is missing from its array (emptied or replaced by another root process); restart the agent"
                    ));
                    reported_misses = misses;
                }
            }
            request = api_side::next_request(&mut api) => {
                loop_view!().answer(request);
            }

            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }

    let stopping = Instant::now();
    // What the kernel queued before the signal; a flood that goes on after it cannot hold the
    // agent past FINAL_DRAIN. The outputs take each turn's events before the next, as in the
    // loop: a stop in a burst does not spill it to the spools for the next run to deliver.
    let deadline = Instant::now() + FINAL_DRAIN;
    loop {
        let more = drain(
            ring.get_mut(),
            fill.as_ref(),
            &mut enricher,
            &mut sinks,
            &mut stats,
            policies.as_ref().map(|p| p.table()),
            true,
        )
        .await;
        if !more || Instant::now() >= deadline {
            break;
        }
        tokio::task::yield_now().await;
    }
    // What was lost since the last report, said before the stream ends; what is lost after
    // (nobody reads the ring buffer any more) is left for the next agent to say.
    let drops = DropStats::from_slots(sensor.drops());
    sinks.publish_lost(&enricher, reported_drops.total, drops.total, &mut stats);
    reported_drops = drops;
    sinks.flush(&mut stats);
    stats.store = sinks.store.close();
    stats.kubernetes = sinks.kube.as_ref().map(Kubernetes::stats);
    if let Some(e) = sinks.exporters.take() {
        stats.exporters = Some(e.shutdown(EXPORT_GRACE).await);
    }
    stats.ringbuf_drops = DropStats::from_slots(sensor.drops());
    stats.cache_size = enricher.cache.len();
    stats.cache_evictions = enricher.cache.evictions();
    stats.hooks_not_run = sensor.runner_misses();
    stats.rate_limited = enricher.rate_limit.held_back;
    // Seen: what the stream said, not what was counted since (see above).
    if let Err(e) = sensor.set_drops_seen(reported_drops.total) {
        log(format!("cannot record the drops reported: {e}"));
    }
    drop(ring);
    drop(api);
    drop(metrics);
    drop(bpf_stats);
    drop(policies);
    match sensor.pins().own() {
        // Pinned: the programs go on enforcing with the rules as they are, until a next agent
        // has attached its own, or `--cleanup`.
        Some(own) if own.is_dir() => log(format!(
            "enforcement stays attached, pinned in {}: the next agent takes it over; `vigil agent --cleanup` removes it",
            own.display()
        )),
        // Retired by a newer agent (an upgrade that started before this one stopped), or
        // removed by `--cleanup`: this agent's programs detach as it exits.
        Some(_) => log("this agent's pinned enforcement was taken over by a newer agent or removed by --cleanup: its programs detach as it exits"),
        None => {
            if let Err(e) = sensor.stop_policies() {
                log(format!("cannot tell the programs the agent stops: {e}"));
            }
        }
    }
    let handover = Handover::start()
        .map_err(|e| log(format!("detaching here, one tracepoint at a time: {e}")))
        .ok();
    drop(sensor);
    log(format!("stats {}", serde_json::to_string(&stats)?));
    let detaching = handover
        .as_ref()
        .map(|h| format!("; the kernel finishes detaching in process {}", h.pid()))
        .unwrap_or_default();
    log(format!(
        "stopped in {:.2} s{detaching}",
        stopping.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// The other nodes' pod ranges, when the watcher read new ones: written into the flow
/// programs' map with the configured ranges (a write the kernel refuses keeps the ranges it
/// had, and says why).
fn apply_remote_ranges(
    kube: Option<&crate::k8s::Kubernetes>,
    enricher: &mut EventEnricher,
    sensor: &mut LoadedObject,
) {
    let (Some(k), Some(flows)) = (kube, enricher.flows.as_mut()) else {
        return;
    };
    let mut remote = crate::k8s::watch::lock(&k.remote_ranges);
    let Some(discovered) = remote.take_changed() else {
        return;
    };
    let all = flows.ranges_with(&discovered);
    match sensor.set_flow_ranges(&all) {
        Ok(()) => {
            log(format!(
                "encryption awareness: {} remote ranges now ({} of other nodes' pods)",
                all.len(),
                discovered.len()
            ));
            remote.failing = false;
            flows.set_ranges(all);
        }
        Err(e) => {
            if !remote.failing {
                log(format!(
                    "encryption awareness: the other nodes' pod ranges cannot be written ({e}): the ranges before stay, tried again every second"
                ));
            }
            remote.failing = true;
            remote.retry();
        }
    }
}

/// How long the outputs and exporters may take to deliver what is queued when the agent stops;
/// the rest is spooled for the next run.
const EXPORT_GRACE: Duration = Duration::from_secs(5);

/// The most records read per turn of the agent's loop: a local user who floods the kernel with
/// events cannot keep the agent's only thread from its signals, its policy reloads and its
/// sinks. A turn reads fewer where its outputs have less room (`ring_fill::turn_budget`).
const DRAIN_BUDGET: usize = 8 * 1024;
/// The longest one turn of the loop reads records, whatever their number.
const DRAIN_TIME: Duration = Duration::from_millis(100);
/// The longest the agent reads the ring buffer once told to stop.
const FINAL_DRAIN: Duration = Duration::from_secs(2);

/// Reads the records available now, as many as the outputs have room for
/// (`ring_fill::turn_budget`, at most [`DRAIN_BUDGET`]); says whether it stopped at that budget
/// (more may be waiting).
async fn drain(
    ring: &mut RingBuf<MapData>,
    fill: Option<&ring_fill::RingFill>,
    enricher: &mut EventEnricher,
    sinks: &mut Sinks,
    stats: &mut AgentStats,
    policies: Option<&PolicyTable>,
    stopping: bool,
) -> bool {
    let budget = ring_fill::turn_budget(fill, sinks, stopping).await;
    let now = Instant::now();
    // A stopping agent sends every held verdict, without the process it waited for.
    let due = if stopping {
        now + crate::flows::OPENER_WAIT
    } else {
        now
    };
    for event in enricher.released_flows(due) {
        sinks.deliver(event, &mut enricher.cache, stats, now);
    }
    // Where the last stage ended: each stage's time is the clock read at its end less this,
    // one read per stage, and the turn's length is read off it too.
    let started = monotonic_ns();
    let mut mark = started;
    for _ in 0..budget {
        // Records that cost more than they should (a hostile command line before the Sigma
        // rules) end the turn early rather than hold the loop.
        if mark.wrapping_sub(started) >= DRAIN_TIME.as_nanos() as u64 {
            return true;
        }
        let Some(item) = ring.next() else {
            return false;
        };
        stats.records += 1;
        match Record::parse(&item) {
            Ok(record) => {
                let decoded = monotonic_ns();
                stats.stages.decode += decoded.wrapping_sub(mark);
                let event = enricher.apply(record, now, policies);
                mark = monotonic_ns();
                stats.stages.enrich += mark.wrapping_sub(decoded);
                if let Some(event) = event {
                    sinks.deliver(event, &mut enricher.cache, stats, now);
                    // A flow's verdict that waited for this event's process goes after it.
                    for event in enricher.released_flows(now) {
                        sinks.deliver(event, &mut enricher.cache, stats, now);
                    }
                    let delivered = monotonic_ns();
                    stats.stages.deliver += delivered.wrapping_sub(mark);
                    mark = delivered;
                }
            }
            Err(e) => {
                stats.decode_errors += 1;
                if stats.decode_errors <= 10 {
                    log(format!("undecodable record: {e}"));
                }
                let refused = monotonic_ns();
                stats.stages.decode += refused.wrapping_sub(mark);
                mark = refused;
            }
        }
    }
    true
}
