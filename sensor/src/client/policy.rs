//! `vigil policy add|list|delete|enable|disable|mode`: the agent's policies through its API.

use std::path::PathBuf;

use serde_json::json;
use vigil_api::v1;

use super::{colour, failed, paint, print_json, Exit, Listing, ServerArgs};
use crate::{agent::log, stdout::outln};

/// The policy subcommands that ask the agent.
#[derive(clap::Subcommand, Debug)]
pub enum PolicyClientCommand {
    /// Enforce a policy file in the running agent, and keep it across restarts (a policy of
    /// the same name added before is replaced, the new version running before the old goes).
    Add {
        /// The TracingPolicy (YAML); `-` reads it from stdin.
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List the agent's policies: state, mode, how each hook attached, what they did.
    List {
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Listing,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove a policy added with `vigil policy add`.
    Delete {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Enforce a disabled policy again.
    Enable {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop enforcing a policy, keeping it (it stays disabled across restarts).
    Disable {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Enforce a policy's actions, or only report what they would have done.
    Mode {
        name: String,
        #[arg(value_enum)]
        mode: ModeArg,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// A policy mode on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeArg {
    /// Actions are carried out.
    Enforce,
    /// Actions are reported as what would have happened.
    Monitor,
}

impl PolicyClientCommand {
    /// Runs it.
    pub async fn run(self) -> Exit {
        match self {
            PolicyClientCommand::Add { file, server } => {
                let yaml = match read_policy(&file) {
                    Ok(y) => y,
                    Err(e) => {
                        log(format!("error: {}: {e}", file.display()));
                        return Exit::Refused;
                    }
                };
                let mut c = match server.connect().await {
                    Ok(c) => c,
                    Err(e) => return e,
                };
                match c.add_policy(v1::AddPolicyRequest { yaml }).await {
                    Ok(r) => said("added", r.into_inner().policy),
                    Err(s) => failed("AddPolicy", &s),
                }
            }
            PolicyClientCommand::List { output, server } => {
                let mut c = match server.connect().await {
                    Ok(c) => c,
                    Err(e) => return e,
                };
                match c.list_policies(v1::ListPoliciesRequest {}).await {
                    Ok(r) => list(&r.into_inner().policies, output),
                    Err(s) => failed("ListPolicies", &s),
                }
            }
            PolicyClientCommand::Delete { name, server } => {
                let mut c = match server.connect().await {
                    Ok(c) => c,
                    Err(e) => return e,
                };
                match c
                    .delete_policy(v1::DeletePolicyRequest { name: name.clone() })
                    .await
                {
                    Ok(_) => done(format_args!("policy {name} deleted")),
                    Err(s) => failed("DeletePolicy", &s),
                }
            }
            PolicyClientCommand::Enable { name, server } => {
                let mut c = match server.connect().await {
                    Ok(c) => c,
                    Err(e) => return e,
                };
                match c.enable_policy(v1::EnablePolicyRequest { name }).await {
                    Ok(r) => said("enabled", r.into_inner().policy),
                    Err(s) => failed("EnablePolicy", &s),
                }
            }
            PolicyClientCommand::Disable { name, server } => {
                let mut c = match server.connect().await {
                    Ok(c) => c,
                    Err(e) => return e,
                };
                match c.disable_policy(v1::DisablePolicyRequest { name }).await {
                    Ok(r) => said("disabled", r.into_inner().policy),
                    Err(s) => failed("DisablePolicy", &s),
                }
            }
            PolicyClientCommand::Mode { name, mode, server } => {
                let mut c = match server.connect().await {
                    Ok(c) => c,
                    Err(e) => return e,
                };
                let mode = match mode {
                    ModeArg::Enforce => v1::PolicyMode::Enforce,
                    ModeArg::Monitor => v1::PolicyMode::Monitor,
                };
                let req = v1::SetPolicyModeRequest {
                    name,
                    mode: mode as i32,
                };
                match c.set_policy_mode(req).await {
                    Ok(r) => said("set", r.into_inner().policy),
                    Err(s) => failed("SetPolicyMode", &s),
                }
            }
        }
    }
}

fn read_policy(file: &PathBuf) -> std::io::Result<String> {
    if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    }
}

fn done(text: std::fmt::Arguments<'_>) -> Exit {
    match outln!("{text}") {
        Ok(()) => Exit::Ok,
        Err(e) => {
            log(format!("error: {e}"));
            Exit::Refused
        }
    }
}

/// Prints what became of a policy after a change.
fn said(verb: &str, p: Option<v1::Policy>) -> Exit {
    let Some(p) = p else {
        return done(format_args!("policy {verb}"));
    };
    let mode = if p.mode.is_empty() {
        String::new()
    } else {
        format!(", {}", p.mode)
    };
    let hooks: String = p
        .hooks
        .iter()
        .map(|h| format!("\n  {} {}: {} ({})", h.path, h.hook, h.attach, h.guarantee))
        .collect();
    done(format_args!(
        "policy {} {verb}: {}{mode}{hooks}",
        p.name, p.state
    ))
}

fn to_json(p: &v1::Policy) -> serde_json::Value {
    json!({
        "name": p.name,
        "namespace": p.namespace,
        "source": p.source,
        "state": p.state,
        "mode": p.mode,
        "hooks": p.hooks.iter().map(|h| json!({
            "path": h.path, "hook": h.hook, "attach": h.attach, "guarantee": h.guarantee,
        })).collect::<Vec<_>>(),
        "counters": p.counters.iter().map(|c| json!({
            "hook": c.hook, "selector": c.selector, "action": c.action, "outcome": c.outcome,
            "count": c.count,
        })).collect::<Vec<_>>(),
        "kernel_memory_bytes": p.kernel_memory_bytes,
        "error": p.error,
    })
}

fn list(policies: &[v1::Policy], output: Listing) -> Exit {
    if output == Listing::Json {
        let all: Vec<_> = policies.iter().map(to_json).collect();
        return match print_json(&all) {
            Ok(()) => Exit::Ok,
            Err(e) => e,
        };
    }
    let colour = colour();
    let width = policies
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut text = format!(
        "{:width$}  {:12}  {:8}  {:>7}  {:>9}  SOURCE\n",
        "NAME", "STATE", "MODE", "ACTIONS", "KERNEL"
    );
    for p in policies {
        let state = match p.state.as_str() {
            "enabled" => paint(colour, "32", &format!("{:12}", p.state)),
            "refused" => paint(colour, "31", &format!("{:12}", p.state)),
            _ => paint(colour, "33", &format!("{:12}", p.state)),
        };
        let actions: u64 = p.counters.iter().map(|c| c.count).sum();
        text.push_str(&format!(
            "{:width$}  {state}  {:8}  {actions:>7}  {:>8}B  {}\n",
            p.name, p.mode, p.kernel_memory_bytes, p.source
        ));
        for h in &p.hooks {
            text.push_str(&format!("  {} {}: {}\n", h.path, h.hook, h.attach));
        }
        if !p.error.is_empty() {
            let first = p.error.lines().next().unwrap_or_default();
            text.push_str(&format!("  {first}\n"));
        }
    }
    done(format_args!("{}", text.trim_end()))
}
