//! The agent's start: the programs loaded and attached, `/proc` scanned, the policies, the
//! store, the exporters, the API and the metrics endpoint set up, each step timed
//! ([`StartClock`]); [`start`] hands the loop of `super::run` what it reads and writes.

use super::*;

/// The start's steps, each logged with its time as it ends: a start that takes seconds says
/// what it is doing.
pub(super) struct StartClock {
    start: Instant,
    step: Instant,
}

impl StartClock {
    pub(super) fn new() -> Self {
        let now = Instant::now();
        StartClock {
            start: now,
            step: now,
        }
    }

    pub(super) fn step(&mut self, what: impl std::fmt::Display) {
        log(format!(
            "start: {what} in {:.2} s",
            self.step.elapsed().as_secs_f64()
        ));
        self.step = Instant::now();
    }

    pub(super) fn total(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// When the enforcement earlier agents pinned is retired.
#[derive(Clone, Copy)]
pub(super) enum RetireWhen {
    /// It was, at start (no cluster), or there was none to retire.
    Done,
    /// Once every policy resource of the cluster was listed and its objects enforced, or
    /// [`RETIRE_WAIT`] after this start.
    PolicyObjectsListed(Instant),
}

/// How long a restarting agent on a cluster waits for the cluster's policy objects before it
/// retires what earlier agents pinned anyway.
pub(super) const RETIRE_WAIT: Duration = Duration::from_secs(60);

/// Removes this start's pinned generation unless disarmed (`.0 = None`) when the start went
/// through.
struct AbandonOnError(Option<std::path::PathBuf>);

impl Drop for AbandonOnError {
    fn drop(&mut self) {
        if let Some(own) = self.0.take() {
            crate::loader::pins::abandon(&own);
        }
    }
}

/// What the loop needs of a started agent.
pub(super) struct Started {
    pub(super) retire: RetireWhen,
    pub(super) sensor: LoadedObject,
    pub(super) ring: RingBuf<MapData>,
    pub(super) policies: Option<PolicyManager>,
    pub(super) enricher: EventEnricher,
    pub(super) sinks: Sinks,
    pub(super) stats: AgentStats,
    pub(super) api: Option<Api>,
    pub(super) ring_bytes: u32,
    pub(super) metrics: Option<MetricsEndpoint>,
    /// Where the metrics endpoint should be, while it could not be bound.
    pub(super) metrics_address: Option<std::net::SocketAddr>,
    /// Holds the kernel's BPF statistics on (they go off when it closes).
    pub(super) bpf_stats: Option<std::os::fd::OwnedFd>,
}

/// Serves the metrics endpoint on `address`; an address taken (another agent during an
/// upgrade, another exporter) costs the endpoint, never the agent's start, and the loop tries
/// again every second (`quiet`: a failed retry is not logged again).
pub(super) fn serve_metrics(
    address: Option<std::net::SocketAddr>,
    quiet: bool,
) -> Option<MetricsEndpoint> {
    let address = address?;
    match MetricsEndpoint::start(address) {
        Ok(m) => {
            log(format!(
                "metrics served on http://{}/metrics (and /healthz, /readyz)",
                m.address
            ));
            Some(m)
        }
        Err(e) => {
            if !quiet {
                log(format!(
                    "cannot serve metrics on {address}: {e}; the agent runs without its metrics endpoint and tries again every second (--metrics-address to choose another)"
                ));
            }
            None
        }
    }
}

/// Turns the kernel's run-time statistics of BPF programs on, for the metrics' per-program run
/// counts and times. They cost every BPF program on the machine two clock reads per run, so they
/// stay on only while the agent holds the descriptor.
fn enable_bpf_stats(wanted: bool) -> Option<std::os::fd::OwnedFd> {
    if !wanted {
        return None;
    }
    aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|e| {
            log(format!(
                "cannot turn the kernel's BPF statistics on ({e}): the metrics carry no program run times"
            ))
        })
        .ok()
}

/// Checks the host, reads the policies, loads the programs and enforces the policies, seeds
/// the process cache and starts the outputs, logging each step with its time.
pub(super) async fn start(opts: AgentOptions, clock: &mut StartClock) -> Result<Started> {
    system::check_privileges()?;
    system::check_btf(&opts.btf)?;
    let bpf_stats = enable_bpf_stats(opts.bpf_stats);
    for line in system::mount_pseudo_filesystems()? {
        log(line);
    }
    // The policies the API added are enforced before the agent says it is ready.
    let state = PolicyState::open(&opts.state_dir)
        .with_context(|| format!("--state-dir {}", opts.state_dir.display()))?;
    let starting = StartingPolicies::read(
        &opts.btf,
        &opts.policies,
        opts.policy_dir.clone(),
        Some(state),
    )?;
    if !starting.is_empty() {
        clock.step("policies read and planned");
    }
    let starting = Some(starting);
    let detector = if opts.sigma.is_empty() {
        None
    } else {
        Some(SigmaDetector::try_start(opts.sigma.clone())?)
    };
    let needs = starting.as_ref().map(|s| s.needs()).unwrap_or_default();
    let mut sensor = load_programs(&opts, &needs, clock)?;
    // From here a failed start removes what it pinned: nothing of it stays acting.
    let mut abandon = AbandonOnError(sensor.pins().own().map(std::path::Path::to_path_buf));
    let ring = sensor.take_ring()?;
    let node = system::node_name(opts.node_name.as_deref());
    let cgroup_subsys = cgroup_subsys_for_host();
    let kube = Kubernetes::start(&opts.kube, &node, log).await?;
    let scope_source = match &kube {
        Some(k) => {
            // Scoped policies are loaded with the pods they select.
            if k.listed(POD_LIST_WAIT).await {
                clock.step("this node's pods listed");
            } else {
                log(format!("this node's pods are not listed after {} s: scoped policies start with the pods listed later", POD_LIST_WAIT.as_secs()));
            }
            let v2 = cgroup_subsys == abi::CGROUP_V2;
            let root = match &opts.kube.cgroup_root {
                // The host's /sys/fs/cgroup mounted in: cgroup v1 keeps the memory
                // hierarchy in a directory of it.
                Some(r) if !v2 && r.join("memory").is_dir() => Some(r.join("memory")),
                Some(r) => Some(r.clone()),
                None => crate::k8s::hierarchy_root(v2),
            };
            match root {
                Some(root) => Some(ScopeSource {
                    pods: k.pods.store.clone(),
                    root,
                    node_labels: k.pods.node_labels.clone(),
                }),
                None => {
                    log("the cgroup hierarchy is not mounted here: scoped policies act on no process (set --cgroup-root)");
                    None
                }
            }
        }
        None => None,
    };
    let policies = match starting {
        Some(s) => {
            let m = s.start(&mut sensor, &opts.policies, scope_source)?;
            clock.step("policies enforced");
            Some(m)
        }
        None => None,
    };
    // Only now, with this agent's programs attached, does an earlier agent's enforcement go;
    // on a cluster, once the cluster's policy objects are enforced too (`RetireWhen`).
    let retire = if kube.is_some() && sensor.pins().own().is_some() {
        RetireWhen::PolicyObjectsListed(Instant::now())
    } else {
        RetireWhen::Done
    };
    let previous_agents = match retire {
        RetireWhen::Done => retire_previous(&sensor),
        RetireWhen::PolicyObjectsListed(_) => Vec::new(),
    };

    let identity = Identity::new(
        node,
        BootClock::new(system::boot_epoch_ns()),
        opts.process_details,
    );
    let mut cache = ProcessCache::new(opts.cache_capacity, opts.exit_grace);
    let stats = AgentStats {
        procfs_seeded: proc_seed::seed(&mut cache, &identity, system::clk_tck(), cgroup_subsys),
        previous_agents,
        ..Default::default()
    };
    let mut enricher = EventEnricher::new(
        identity,
        cache,
        EnrichOptions {
            ancestors: opts.ancestors,
            clk_tck: system::clk_tck(),
            cgroup_subsys,
        },
    );
    enricher.pods = kube.as_ref().map(|k| k.pods.clone());
    enricher.flows = track_flows(&opts, &mut sensor, kube.is_some())?;
    clock.step(format!("{} processes read from /proc", stats.procfs_seeded));
    // stdout or the export file, and the configuration's sinks: one pipeline.
    let mut export = opts
        .config
        .as_ref()
        .map(|c| c.exporters.clone())
        .unwrap_or_default();
    // The spools are state: an agent given its own state directory keeps them there.
    export
        .spool_dir
        .get_or_insert_with(|| opts.state_dir.join("spool"));
    output::add_outputs(&mut export, opts.export_file.as_deref(), opts.format);
    if opts.alerts_in_stream {
        output::alerts_in_own_outputs(&mut export);
    }
    output::filter_own_outputs(&mut export, &opts.own_filter);
    let mut exporters =
        Exporters::new(&export, &enricher.identity.node).context("cannot start the outputs")?;
    exporters.start();
    if let Some(cfg) = &opts.config {
        log(format!("exporters: {} sinks", cfg.exporters.sinks.len()));
    }
    clock.step("outputs started");
    let store = store::StoreSlot::open(&opts);
    if store.store.is_some() {
        clock.step("event store opened");
    }
    let api_config = opts
        .config
        .as_ref()
        .and_then(|c| c.api.clone())
        .unwrap_or_default();
    let api = if opts.api_socket.is_some() || api_config.listen.is_some() {
        let api = Api::start(ApiOptions {
            socket: opts.api_socket.clone(),
            config: api_config.clone(),
            btf: opts.btf.clone(),
            node: enricher.identity.node.to_string(),
            store_db: store.db.clone(),
        })
        .await?;
        clock.step(format!("api served on {}", api.serving));
        Some(api)
    } else {
        None
    };
    let metrics = serve_metrics(opts.metrics, false);
    log(format!(
        "agent ready in {:.2} s: node {}, {} processes from /proc, cgroup hierarchy {}",
        clock.total(),
        enricher.identity.node,
        stats.procfs_seeded,
        if cgroup_subsys == abi::CGROUP_V2 {
            "v2".to_string()
        } else {
            format!("v1 subsystem {cgroup_subsys}")
        }
    ));
    let log_alerts = detector.is_some() && !exporters.takes_alerts();
    if log_alerts {
        log("no output takes the Sigma alerts (a Tetragon-shaped JSON stream does not, unless --alerts-in-stream): each is logged here");
    }
    abandon.0 = None;
    Ok(Started {
        retire,
        sensor,
        ring,
        policies,
        enricher,
        sinks: Sinks {
            log_alerts,
            detector,
            exporters: Some(exporters),
            kube,
            ready: Vec::new(),
            hub: api.as_ref().map(|a| a.hub.clone()),
            actions: Default::default(),
            store,
        },
        stats,
        api,
        ring_bytes: opts.ringbuf_bytes,
        metrics,
        metrics_address: opts.metrics,
        bpf_stats,
    })
}

/// Encryption awareness, when remote ranges are configured or the agent is on a Kubernetes
/// node (the other nodes' pod ranges, found by the loop as the watcher reads them): the ranges
/// written and the flow programs attached, and what this kernel lets them see said once.
fn track_flows(
    opts: &AgentOptions,
    sensor: &mut LoadedObject,
    cluster: bool,
) -> Result<Option<crate::flows::FlowTracker>> {
    let mut ranges: Vec<ipnet::IpNet> = opts
        .config
        .iter()
        .flat_map(|c| c.encryption.remote_ranges.iter().copied())
        .chain(opts.encryption_ranges.iter().copied())
        .map(|r| r.trunc())
        .collect();
    ranges.sort();
    ranges.dedup();
    if ranges.is_empty() && !cluster {
        return Ok(None);
    }
    let netns = crate::flows::own_netns();
    let evidence = sensor
        .attach_flows(&ranges, netns)
        .context("encryption awareness")?;
    log(format!(
        "encryption awareness: {} remote ranges ({}){}; evidence on this kernel: {evidence}",
        ranges.len(),
        ranges
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if cluster {
            ", and the other nodes' pod ranges as the cluster gives them"
        } else {
            ""
        }
    ));
    Ok(Some(crate::flows::FlowTracker::new(ranges, netns)))
}

/// Loads the agent's object: the lifecycle programs, attached, and every program the
/// policies' plans use, all verified in parallel.
fn load_programs(
    opts: &AgentOptions,
    needs: &[ProgramNeed],
    clock: &mut StartClock,
) -> Result<LoadedObject> {
    let pins = match PinDir::open(&opts.bpf_dir, opts.persist) {
        Ok(p) => p,
        Err(e) => {
            log(format!("enforcement will not outlive this agent, and what an earlier one pinned stays: {e}"));
            PinDir::unused()
        }
    };
    // Before this agent does anything an earlier agent's policies could act on.
    match pins.exempt_in_others() {
        Ok(0) => {}
        Ok(n) => log(format!(
            "{n} earlier agents' pinned programs leave this agent alone until it replaces them"
        )),
        Err(e) => log(format!(
            "cannot tell an earlier agent's pinned programs to leave this agent alone: {e}"
        )),
    }
    // A start that fails here leaves nothing pinned behind it.
    let mut abandon = AbandonOnError(pins.own().map(std::path::Path::to_path_buf));
    let load = LoadOptions {
        btf_path: &opts.btf,
        ringbuf_bytes: opts.ringbuf_bytes,
        cgroup_subsys: cgroup_subsys_for_host(),
        pins,
    };
    match LoadedObject::load(load, needs) {
        Ok((sensor, mut loads)) => {
            abandon.0 = None;
            loads.sort_by_key(|l| std::cmp::Reverse(l.took));
            let slowest: Vec<String> = loads
                .iter()
                .take(3)
                .map(|l| format!("{} {:.2} s", l.name, l.took.as_secs_f64()))
                .collect();
            // A refusal here is said again, with the verifier's reason, by the policy whose
            // attach loads the program again.
            let refused: Vec<&str> = loads
                .iter()
                .filter(|l| l.error.is_some())
                .map(|l| l.name)
                .collect();
            let verified = loads.len() - refused.len();
            let refused = if refused.is_empty() {
                String::new()
            } else {
                format!("; refused by the kernel: {}", refused.join(", "))
            };
            clock.step(format!(
                "{verified} programs verified in parallel (slowest: {}){refused}",
                slowest.join(", ")
            ));
            Ok(sensor)
        }
        Err(e @ LoadError::Program { .. }) => {
            if !probe::run(&opts.btf).any_kind() {
                bail!("this kernel refuses every eBPF program kind vigil can use (tracepoint, raw tracepoint, kprobe, fentry, LSM); run `vigil probe` for details");
            }
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}
