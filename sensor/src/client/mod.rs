//! The CLI over the agent's API: `vigil events`, `vigil policy add|list|delete|enable|disable|
//! mode`, `vigil status`, `vigil version`, and the forensic store's `vigil search`, `vigil tree`
//! and `vigil timeline`. Each command connects to `--server` (the agent's
//! unix socket by default), makes its calls and prints the answer, in colour when stdout is a
//! terminal and `NO_COLOR` is not set.
//!
//! Exit codes scripts can rely on ([`Exit`]): 0 done; 1 the agent refused the request (a
//! policy that does not validate, a name that is not there, a kernel refusal), with its
//! reason; 2 the command line is wrong; 3 the agent cannot be reached; 4 the agent does not
//! let this caller do it (no certificate, an unknown or expired one, a viewer asking an
//! admin's call).

mod elastic_search;
mod events;
mod overhead;
mod policy;
mod search;
mod status;
mod tree;

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use tonic::{transport::Channel, Code, Status};
use vigil_api::{v1::vigil_client::VigilClient, ClientTls, ServerAddr};

pub use events::EventsArgs;
pub use overhead::overhead;
pub use policy::PolicyClientCommand;
pub use search::{SearchArgs, TimelineArgs};
pub use status::{status, version};
pub use tree::TreeArgs;

use crate::agent::log;

/// How a client command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// The agent refused the request.
    Refused = 1,
    /// The agent cannot be reached.
    Unreachable = 3,
    /// The caller may not do it.
    Denied = 4,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// Where the agent is, and the client's TLS files for TCP.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// The agent: `unix:///path/to/vigil.sock` or `https://host:port` (mutual TLS).
    #[arg(long, default_value = vigil_api::DEFAULT_SOCKET, value_name = "ADDRESS")]
    server: String,
    /// This client's certificate (PEM), for an https server.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// The CA that signed the agent's certificate (PEM).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// The name the agent's certificate carries, when not the address's host.
    #[arg(long, value_name = "NAME")]
    tls_server_name: Option<String>,
}

impl ServerArgs {
    /// Connects, or says why not (exit 3).
    pub async fn connect(&self) -> Result<VigilClient<Channel>, Exit> {
        let addr: ServerAddr = self.server.parse().map_err(|e| {
            log(format!("error: --server: {e}"));
            Exit::Unreachable
        })?;
        let tls = match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(ClientTls {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
                server_name: self.tls_server_name.clone(),
            }),
            _ => None,
        };
        vigil_api::connect(&addr, tls.as_ref()).await.map_err(|e| {
            let hint = match &addr {
                ServerAddr::Unix(_) => " (is the agent running, and are you root?)",
                ServerAddr::Https(_) => "",
            };
            log(format!("error: {e}{hint}"));
            Exit::Unreachable
        })
    }
}

/// Says what the agent answered, and the exit code it means.
pub fn failed(what: &str, s: &Status) -> Exit {
    let code = match s.code() {
        Code::Unauthenticated | Code::PermissionDenied => Exit::Denied,
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown if is_transport(s) => {
            Exit::Unreachable
        }
        Code::Unavailable => Exit::Unreachable,
        _ => Exit::Refused,
    };
    log(format!("error: {what}: {} ({:?})", s.message(), s.code()));
    code
}

fn is_transport(s: &Status) -> bool {
    s.message().contains("transport")
}

/// Runs a client command on a runtime of its own.
pub fn run<F>(f: F) -> ExitCode
where
    F: std::future::Future<Output = Exit>,
{
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f).into(),
        Err(e) => {
            log(format!("error: cannot start: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Whether to colour stdout.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `text` in an ANSI colour when `on`.
pub fn paint(on: bool, code: &str, text: &str) -> String {
    if on {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Prints `v` as pretty JSON.
pub fn print_json(v: &impl serde::Serialize) -> Result<(), Exit> {
    let text = serde_json::to_string_pretty(v).map_err(|e| {
        log(format!("error: {e}"));
        Exit::Refused
    })?;
    crate::stdout::outln!("{text}").map_err(|e| {
        log(format!("error: {e}"));
        Exit::Refused
    })
}

/// `--output` of the listing commands.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
}
