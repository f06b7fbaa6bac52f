//! The `vigil` binary: `vigil agent` captures and streams events; `vigil probe` says what the
//! running kernel allows.

use std::{num::NonZeroUsize, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

mod agent;
mod brief;
mod cache;
mod config;
mod enrich;
mod identity;
mod loader;
mod output;
mod policies;
mod policy_cmd;
mod policy_watch;
mod probe;
mod proc_seed;
mod sigma_alerts;
mod system;

/// Runtime security and syscall enforcement with eBPF.
#[derive(Parser)]
#[command(name = "vigil", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Kernel BTF file (for kernels that keep it elsewhere).
    #[arg(long, global = true, default_value = system::KERNEL_BTF)]
    btf: String,
}

#[derive(Subcommand)]
enum Command {
    /// Capture process activity and stream events.
    Agent {
        /// Write events to this file instead of stdout: appended, created 0600 in a directory
        /// only root can write, rotated at 100 MiB into 5 gzipped backups (a file sink named
        /// `export-file`, with the same redaction as every sink).
        #[arg(long)]
        export_file: Option<PathBuf>,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "json")]
        format: output::Format,
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
        /// The configuration file (YAML): the exporters' sinks (see vigil.example.yaml).
        #[arg(long)]
        config: Option<PathBuf>,
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
    /// Report which eBPF program kinds and helpers this kernel allows.
    Probe {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
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
        /// Policy files (YAML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Replay recorded events (JSON lines) through a policy's hooks, with the kernel's
    /// semantics, and print what it would have matched.
    Test {
        /// A policy file (YAML).
        policy: PathBuf,
        /// Recorded events: the `process_lsm` / `process_kprobe` events of the policy's hooks.
        #[arg(long)]
        events: PathBuf,
        /// One JSON object per match instead of a line of text.
        #[arg(long)]
        json: bool,
    },
    /// Show how each hook of a policy would attach on this kernel, and what that guarantees.
    Explain {
        /// A policy file (YAML).
        file: PathBuf,
        /// One JSON array of the hooks' plans, each `attach` worded as the agent logs it.
        #[arg(long)]
        json: bool,
    },
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Probe { json } => probe_command(&cli.btf, json),
        Command::Policy {
            command: PolicyCommand::Lint { files },
        } => policy_cmd::lint(&cli.btf, &files),
        Command::Policy {
            command: PolicyCommand::Explain { file, json },
        } => policy_cmd::explain(&cli.btf, &file, json),
        Command::Policy {
            command:
                PolicyCommand::Test {
                    policy,
                    events,
                    json,
                },
        } => policy_cmd::test(&policy, &events, json),
        Command::Sigma {
            command:
                SigmaCommand::Test {
                    rules,
                    events,
                    json,
                },
        } => sigma_test(&rules, &events, json),
        Command::Agent {
            export_file,
            format,
            node_name,
            process_cache_size,
            exit_grace_secs,
            ancestors,
            ringbuf_size,
            policies,
            policy_dir,
            sigma,
            config,
        } => {
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
                btf: cli.btf,
                export_file,
                format,
                node_name,
                cache_capacity: process_cache_size,
                exit_grace: Duration::from_secs(exit_grace_secs),
                ancestors,
                ringbuf_bytes: ringbuf_size,
                policies,
                policy_dir,
                sigma,
                config,
            };
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(agent::run(opts)))
        }
    };
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
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// `vigil sigma test`: the agent's detection, offline.
fn sigma_test(rules: &std::path::Path, events: &std::path::Path, json: bool) -> anyhow::Result<()> {
    use vigil_policy_engine::sigma::SigmaEngine;
    let (engine, errors) = SigmaEngine::load(&[rules.to_path_buf()]);
    for e in &errors {
        agent::log(format!("sigma rule refused: {e}"));
    }
    let input = std::fs::read_to_string(events)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", events.display()))?;
    let (mut read, mut alerts) = (0usize, 0usize);
    for (n, line) in input.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event: vigil_events::Event = serde_json::from_str(line).map_err(|e| {
            anyhow::anyhow!("{}:{}: not a vigil event: {e}", events.display(), n + 1)
        })?;
        read += 1;
        for m in engine.evaluate(&event) {
            alerts += 1;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&sigma_alerts::alert(&event, m))?
                );
            } else {
                println!(
                    "{} {} [{}] {} ({}) {}",
                    event.time,
                    event.process().binary,
                    m.rule.level,
                    m.rule.rule.title,
                    m.rule.id,
                    m.rule.file.display()
                );
            }
        }
    }
    if !json {
        println!(
            "{read} events, {} rules ({} refused), {alerts} alerts",
            engine.rules().len(),
            errors.len()
        );
    }
    if !errors.is_empty() {
        anyhow::bail!("{} rule files did not load", errors.len());
    }
    Ok(())
}
