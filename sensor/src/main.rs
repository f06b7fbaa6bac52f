//! The `vigil` binary: `vigil agent` captures and streams events; `vigil probe` says what the
//! running kernel allows.

use std::{num::NonZeroUsize, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use stdout::outln;

#[global_allocator]
static ALLOCATOR: vigil_allocator::Mimalloc = vigil_allocator::Mimalloc;

mod agent;
mod api;
mod brief;
mod build_id;
mod cache;
mod client;
mod config;
mod enrich;
mod flows;
mod forks;
mod identity;
mod k8s;
mod loader;
mod metrics;
mod output;
mod policies;
mod policy_cmd;
mod policy_watch;
mod probe;
mod proc_seed;
mod rate_limit;
mod sigma_alerts;
mod sigma_cmd;
mod stdout;
mod system;

/// Runtime security and syscall enforcement with eBPF.
#[derive(Parser)]
#[command(name = "vigil", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--btf`, on the commands that read this kernel's types (the agent, the probe, and lint and
/// explain, which plan for this kernel).
#[derive(clap::Args)]
struct Btf {
    /// Kernel BTF file (for kernels that keep it elsewhere).
    #[arg(long = "btf", value_name = "FILE", default_value = system::KERNEL_BTF)]
    path: String,
}

/// How the agent finds its Kubernetes cluster and names pods.
#[derive(clap::Args)]
struct KubeArgs {
    /// A kubeconfig, to name pods when the agent runs outside a pod (in a pod, its service
    /// account is used; with neither, events carry no pod).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Milliseconds an event of a process in a pod the agent does not know yet waits for the
    /// pod watcher to name it; it then goes on without its pod, counted in the stats.
    #[arg(long, default_value = "2000", value_name = "MS")]
    pod_wait_ms: u64,
    /// Put the pods' annotations on events (off: annotations can hold anything, secrets too).
    #[arg(long)]
    pod_annotations: bool,
    /// Where the host's cgroup hierarchy (v2, or v1's memory hierarchy) is mounted, to find the
    /// pods' cgroups for scoped policies (in a pod: the host's /sys/fs/cgroup mounted in;
    /// default: where this process sees it).
    #[arg(long, value_name = "DIR")]
    cgroup_root: Option<PathBuf>,
    /// Write to stdout and the export file only the events of pods in this namespace
    /// (repeatable; "" for processes in no pod).
    #[arg(long = "namespace", value_name = "NAMESPACE")]
    namespaces: Vec<String>,
    /// ... and of pods whose name matches this regular expression (repeatable).
    #[arg(long = "pod-regex", value_name = "REGEX")]
    pod_regex: Vec<String>,
    /// ... and of pods whose labels this selector selects, as `app=web,tier in (a, b)`
    /// (repeatable: any one).
    #[arg(long = "label", value_name = "SELECTOR")]
    labels: Vec<String>,
}

/// Whether the agent's enforcement outlives it.
#[derive(clap::Args)]
struct PersistArgs {
    /// The directory in bpffs where the agent pins its programs' links and maps, so that
    /// enforcement stays attached across a crash, a restart or an upgrade; a starting agent
    /// attaches its own before it removes what an earlier one left there.
    #[arg(long, value_name = "DIR", default_value = loader::pins::DEFAULT_DIR)]
    bpf_dir: PathBuf,
    /// Pin nothing: enforcement ends with the agent.
    #[arg(long)]
    no_persist: bool,
    /// Remove everything pinned in --bpf-dir (detaching what an earlier agent left attached)
    /// and exit.
    #[arg(long)]
    cleanup: bool,
}

// Parsed once per run: the agent's many options cost nothing worth boxing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Capture process activity and stream events.
    Agent {
        /// Write events to this file (JSON lines, or -o's format): appended, created 0600 in a
        /// directory only root can write, rotated at 100 MiB into 5 gzipped backups (a file sink
        /// named `export-file`, with the same redaction as every sink). stdout then carries no
        /// events unless -o asks for them.
        #[arg(long)]
        export_file: Option<PathBuf>,
        /// Write events to stdout in this format, beside --export-file and the --config sinks
        /// (also the export file's format). Without -o, stdout carries JSON lines only when
        /// neither --export-file nor a --config sink takes the events.
        #[arg(short = 'o', long = "output", value_enum)]
        format: Option<output::LineChoice>,
        /// Node name in events and exec ids (default: $NODE_NAME, else the host name).
        #[arg(long)]
        node_name: Option<String>,
        /// Most executions the process cache holds.
        #[arg(long, default_value = "65536")]
        process_cache_size: NonZeroUsize,
        /// Seconds an ended execution stays in the cache for its children's events.
        #[arg(long, default_value = "30")]
        exit_grace_secs: u64,
        /// Ancestors to list in each event above the parent (0: none).
        #[arg(long, default_value = "0")]
        ancestors: usize,
        /// Write each process's capability sets (`cap`) and credentials
        /// (`process_credentials`) in its events, as Tetragon's flag of the name. Off by
        /// default, as Tetragon's: they are read from the kernel either way (for selectors and
        /// Sigma's auditd records), and a root process's capability names are over half of an
        /// exec event.
        #[arg(long)]
        enable_process_cred: bool,
        /// Write each process's namespaces (`ns`) in its events, as Tetragon's flag of the
        /// name. Off by default, as Tetragon's.
        #[arg(long)]
        enable_process_ns: bool,
        /// A TracingPolicy file to enforce (repeatable).
        #[arg(long = "policy")]
        policies: Vec<PathBuf>,
        /// A directory of TracingPolicy files (*.yaml, *.yml) to enforce; changes are applied
        /// within a second.
        #[arg(long)]
        policy_dir: Option<PathBuf>,
        /// Ring buffer size in MiB (a power of two).
        #[arg(long, default_value = "16", value_parser = parse_ringbuf_mib)]
        ringbuf_size: u32,
        /// A Sigma rule file or directory to run on every event (repeatable); changes are
        /// applied within a second.
        #[arg(long = "sigma-dir")]
        sigma: Vec<PathBuf>,
        /// Write the Sigma alerts (`process_alert`) into the agent's own JSON output too. Off by
        /// default: Tetragon's API has no such event type and `tetra getevents` stops at one.
        /// Without it (and without a sink that takes alerts) each alert is logged on stderr.
        #[arg(long)]
        alerts_in_stream: bool,
        /// The configuration file (YAML): the exporters' sinks (see vigil.example.yaml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where the policies added through the API, and the modes and disabled states set
        /// through it, are kept (root's, 0700), so that they hold after a restart.
        #[arg(long, value_name = "DIR", default_value = policy_watch::state::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// The API's unix socket (only root can connect; its directory must be root's).
        #[arg(long, value_name = "PATH", default_value = vigil_api::DEFAULT_SOCKET)]
        api_socket: PathBuf,
        /// Serve no API on a unix socket (a TCP listener of the configuration still serves).
        #[arg(long)]
        no_api_socket: bool,
        /// Keep no events in the forensic store (`<state-dir>/store`); `vigil search` then has
        /// only what exporters sent elsewhere.
        #[arg(long)]
        no_store: bool,
        /// Where the Prometheus endpoint listens: `/metrics`, `/healthz` (the agent's loop
        /// turns) and `/readyz` (its start is done). Port 0 lets the kernel choose; the start's
        /// log says where it is served.
        #[arg(long, value_name = "ADDR", default_value = metrics::DEFAULT_ADDRESS)]
        metrics_address: std::net::SocketAddr,
        /// Serve no Prometheus endpoint.
        #[arg(long)]
        no_metrics: bool,
        /// Turn the kernel's BPF run-time statistics on while the agent runs, for the metrics'
        /// run count and run time of each of its programs. Off by default: they cost every BPF
        /// program on the machine two clock reads per run.
        #[arg(long)]
        bpf_stats: bool,
        /// A remote range (a CIDR: another node's pods, a peer site) whose flows must leave
        /// this node encrypted: each flow into it gets a `flow_encryption` event saying whether
        /// it left through WireGuard, IPsec or in clear (repeatable; beside the configuration
        /// file's `encryption.remote_ranges`).
        #[arg(long = "encryption-range", value_name = "CIDR")]
        encryption_ranges: Vec<ipnet::IpNet>,
        #[command(flatten)]
        kube: KubeArgs,
        #[command(flatten)]
        persist: PersistArgs,
        #[command(flatten)]
        btf: Btf,
    },
    /// Stream the running agent's events through its API.
    Events(client::EventsArgs),
    /// Search the events the node's store kept (or an Elasticsearch cluster's): by time, type,
    /// binary, arguments, file, destination, DNS name, pod, process, policy, Sigma rule.
    Search(client::SearchArgs),
    /// Draw a process's ancestors and descendants with their events, from the node's store.
    Tree(client::TreeArgs),
    /// List everything a process and its descendants did, in time order.
    Timeline(client::TimelineArgs),
    /// Ask the running agent how it is: sensors, ring buffer and drops, exporters, streams.
    Status {
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: client::Listing,
        /// Show what each of the agent's BPF programs costs instead: runs per second and
        /// nanoseconds per run over `--interval` (needs an agent started with `--bpf-stats`).
        #[arg(long)]
        overhead: bool,
        /// The interval `--overhead` measures over, in seconds.
        #[arg(long, value_name = "SECS", default_value = "1", requires = "overhead")]
        interval: f64,
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// Print this binary's version and the running agent's.
    Version {
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// Work with Sigma rules.
    Sigma {
        #[command(subcommand)]
        command: SigmaCommand,
    },
    /// Work with TracingPolicy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Print the CustomResourceDefinitions of vigil's policies (`TracingPolicy`,
    /// `TracingPolicyNamespaced`, group vigil.dev), as the chart installs them.
    Crd,
    /// Report which eBPF program kinds and helpers this kernel allows.
    Probe {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        btf: Btf,
    },
}

#[derive(Subcommand)]
enum SigmaCommand {
    /// Run Sigma rules over recorded events (JSON lines) and print the alerts they raise.
    Test {
        /// A rule file or a directory of rules.
        rules: PathBuf,
        /// Recorded vigil events, one JSON object per line.
        #[arg(long)]
        events: PathBuf,
        /// One `process_alert` event per line instead of a line of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Check policy files as the agent loads them (validated, compiled and planned for this
    /// kernel): every problem with its file:line:column, field, reason and fix.
    Lint {
        /// Policy files (YAML), or directories whose *.yaml and *.yml files are read as
        /// --policy-dir reads them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        btf: Btf,
    },
    /// Replay recorded events (JSON lines) through a policy's hooks, every kind of hook (file
    /// opens, kprobes, system calls, LSM hooks), with the kernel's semantics, and print what
    /// each would have matched and done.
    Test {
        /// A policy file (YAML).
        policy: PathBuf,
        /// Recorded events: the `process_lsm` / `process_kprobe` events of the policy's hooks,
        /// such as `vigil agent --policy FILE --export-file FILE` writes with the policy in
        /// `policy-mode: monitor` (other events are skipped).
        #[arg(long)]
        events: PathBuf,
        /// One JSON object per match instead of a line of text: `path` is the file a file open
        /// opened, else the call's arguments, comma-separated.
        #[arg(long)]
        json: bool,
    },
    /// Show how each hook of the policies would attach on this kernel, and what that
    /// guarantees.
    Explain {
        /// Policy files (YAML), or directories whose *.yaml and *.yml files are read as
        /// --policy-dir reads them.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// One JSON array of every file's hooks, each with its `file` and `policy`, its
        /// `attach` worded as the agent logs it.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        btf: Btf,
    },
    #[command(flatten)]
    Agent(client::PolicyClientCommand),
}

fn parse_ringbuf_mib(s: &str) -> Result<u32, String> {
    let mib: u32 = s
        .parse()
        .map_err(|_| format!("{s} is not a number of MiB"))?;
    if !mib.is_power_of_two() || mib > 1024 {
        return Err(format!(
            "{mib} MiB: the ring buffer size must be a power of two, at most 1024"
        ));
    }
    Ok(mib << 20)
}

fn main() -> ExitCode {
    vigil_allocator::purge_freed_after(10);
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Events(args) => return client::run(args.run()),
        Command::Search(args) => return client::run(args.run()),
        Command::Tree(args) => return client::run(args.run()),
        Command::Timeline(args) => return client::run(args.run()),
        Command::Status {
            output,
            overhead: false,
            server,
            ..
        } => return client::run(client::status(server, output)),
        Command::Status {
            output,
            interval,
            server,
            ..
        } => return client::run(client::overhead(server, output, interval)),
        Command::Version { server } => return client::run(client::version(server)),
        Command::Policy {
            command: PolicyCommand::Agent(c),
        } => return client::run(c.run()),
        Command::Probe { btf, json } => probe_command(&btf.path, json),
        Command::Policy {
            command: PolicyCommand::Lint { btf, paths },
        } => policy_cmd::lint(&btf.path, &paths),
        Command::Policy {
            command: PolicyCommand::Explain { btf, paths, json },
        } => policy_cmd::explain(&btf.path, &paths, json),
        Command::Policy {
            command:
                PolicyCommand::Test {
                    policy,
                    events,
                    json,
                },
        } => policy_cmd::test(&policy, &events, json),
        Command::Crd => stdout::write(format_args!(
            "{}",
            vigil_policy_engine::crd::custom_resource_definitions_yaml()
        ))
        .map_err(anyhow::Error::from),
        Command::Sigma {
            command:
                SigmaCommand::Test {
                    rules,
                    events,
                    json,
                },
        } => sigma_cmd::test(&rules, &events, json),
        Command::Agent {
            btf,
            export_file,
            format,
            node_name,
            process_cache_size,
            exit_grace_secs,
            ancestors,
            enable_process_cred,
            enable_process_ns,
            ringbuf_size,
            policies,
            policy_dir,
            sigma,
            alerts_in_stream,
            config,
            kube,
            persist,
            state_dir,
            api_socket,
            no_api_socket,
            no_store,
            metrics_address,
            no_metrics,
            bpf_stats,
            encryption_ranges,
        } => {
            if persist.cleanup {
                return exit_code(agent::cleanup(&persist.bpf_dir));
            }
            let config = match config.as_deref().map(config::AgentConfig::load).transpose() {
                Ok(c) => c,
                Err(e) => {
                    agent::log(format!("error: {e}"));
                    return ExitCode::FAILURE;
                }
            };
            if let Some(dir) = &policy_dir {
                if let Err(e) = policy_watch::policy_files(dir) {
                    agent::log(format!(
                        "error: cannot read --policy-dir {}: {e}",
                        dir.display()
                    ));
                    return ExitCode::FAILURE;
                }
            }
            let opts = agent::AgentOptions {
                btf: btf.path,
                export_file,
                format,
                node_name,
                cache_capacity: process_cache_size,
                exit_grace: Duration::from_secs(exit_grace_secs),
                ancestors,
                process_details: identity::ProcessDetails {
                    credentials: enable_process_cred,
                    namespaces: enable_process_ns,
                },
                ringbuf_bytes: ringbuf_size,
                policies,
                policy_dir,
                sigma,
                alerts_in_stream,
                config,
                kube: k8s::KubeOptions {
                    kubeconfig: kube.kubeconfig,
                    pod_wait: Duration::from_millis(kube.pod_wait_ms),
                    annotations: kube.pod_annotations,
                    cgroup_root: kube.cgroup_root,
                },
                own_filter: vigil_exporters::filter::FilterSpec {
                    namespace: kube.namespaces,
                    pod_regex: kube.pod_regex,
                    labels: kube.labels,
                    ..Default::default()
                },
                bpf_dir: persist.bpf_dir,
                persist: !persist.no_persist,
                state_dir,
                api_socket: (!no_api_socket).then_some(api_socket),
                no_store,
                metrics: (!no_metrics).then_some(metrics_address),
                bpf_stats,
                encryption_ranges,
            };
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(agent::run(opts)))
        }
    };
    exit_code(result)
}

fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            agent::log(format!("error: {}", brief::brief(e.as_ref())));
            if std::env::var_os("VIGIL_DEBUG").is_some() {
                eprintln!("{e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn probe_command(btf: &str, json: bool) -> anyhow::Result<()> {
    system::check_privileges()?;
    for line in system::mount_pseudo_filesystems()? {
        agent::log(line);
    }
    let report = probe::run(btf);
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        stdout::write(format_args!("{}", report.table()))?;
    }
    Ok(())
}
