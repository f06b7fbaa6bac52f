//! vigil's gRPC API, `vigil.v1`: the types, server trait and client generated from
//! `proto/vigil/v1/vigil.proto`, the file descriptor set the agent's reflection service
//! serves, and how a client reaches an agent ([`ServerAddr`], [`connect`]).
//!
//! The agent serves the API on a unix socket only root can open and, when configured, on TCP
//! with mutual TLS; the `vigil` CLI and any gRPC client in another language (the `.proto` is
//! the contract) speak to either.
//!
//! ```
//! use vigil_api::ServerAddr;
//! assert_eq!(
//!     "unix:///run/vigil/vigil.sock".parse::<ServerAddr>().unwrap(),
//!     ServerAddr::Unix("/run/vigil/vigil.sock".into())
//! );
//! assert!("http://10.0.0.1:50051".parse::<ServerAddr>().is_err());
//! ```

use std::{path::PathBuf, str::FromStr};

use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The generated `vigil.v1` types, `vigil_server` and `vigil_client`.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("vigil.v1");
}

/// The encoded descriptors of `vigil.v1`, for the reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("vigil_v1_descriptor");

/// Where the agent serves the API when nothing else is configured, and where the CLI looks.
pub const DEFAULT_SOCKET: &str = "/run/vigil/vigil.sock";

/// Where a client finds the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddr {
    /// `unix:///path`: the agent's socket on this machine.
    Unix(PathBuf),
    /// `https://host:port`: an agent's TCP listener, with mutual TLS.
    Https(String),
}

/// Why a server address is not one.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a server address: use unix:///path/to/vigil.sock or https://host:port (TCP is served with mutual TLS only)")]
pub struct BadAddr(String);

impl FromStr for ServerAddr {
    type Err = BadAddr;

    fn from_str(s: &str) -> Result<Self, BadAddr> {
        if let Some(path) = s.strip_prefix("unix://") {
            if path.starts_with('/') {
                return Ok(ServerAddr::Unix(PathBuf::from(path)));
            }
        } else if let Some(rest) = s.strip_prefix("https://") {
            if !rest.is_empty() && rest.parse::<tonic::codegen::http::Uri>().is_ok() {
                return Ok(ServerAddr::Https(s.to_string()));
            }
        } else if s.starts_with('/') {
            return Ok(ServerAddr::Unix(PathBuf::from(s)));
        }
        Err(BadAddr(s.to_string()))
    }
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerAddr::Unix(p) => write!(f, "unix://{}", p.display()),
            ServerAddr::Https(u) => f.write_str(u),
        }
    }
}

/// A client's certificate, key and the CA that signed the server's certificate (PEM).
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The client's certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA the server's certificate must chain to.
    pub ca: PathBuf,
    /// The name the server's certificate must carry (default: the address's host).
    pub server_name: Option<String>,
}

/// Why a client could not reach the agent.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A TLS file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An https address without the TLS files.
    #[error(
        "{0} needs --tls-cert, --tls-key and --tls-ca: the agent serves TCP with mutual TLS only"
    )]
    NoTls(String),
    /// The connection failed.
    #[error("cannot reach the agent at {addr}: {reason}")]
    Transport {
        /// Where.
        addr: String,
        /// Why.
        reason: String,
    },
}

/// Connects to the agent at `addr`.
pub async fn connect(
    addr: &ServerAddr,
    tls: Option<&ClientTls>,
) -> Result<v1::vigil_client::VigilClient<Channel>, ConnectError> {
    channel(addr, tls)
        .await
        .map(v1::vigil_client::VigilClient::new)
}

/// A channel to the agent at `addr`, for this crate's client or the standard services'.
pub async fn channel(addr: &ServerAddr, tls: Option<&ClientTls>) -> Result<Channel, ConnectError> {
    let failed = |e: tonic::transport::Error| ConnectError::Transport {
        addr: addr.to_string(),
        reason: source_chain(&e),
    };
    match addr {
        ServerAddr::Unix(path) => {
            let path = path.clone();
            // The URI is not used: every connection goes to the socket.
            Endpoint::from_static("http://vigil.sock")
                .connect_with_connector(tower::service_fn(move |_| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }))
                .await
                .map_err(failed)
        }
        ServerAddr::Https(uri) => {
            let tls = tls.ok_or_else(|| ConnectError::NoTls(uri.clone()))?;
            let read = |p: &PathBuf| {
                std::fs::read(p).map_err(|source| ConnectError::Read {
                    path: p.clone(),
                    source,
                })
            };
            let mut config = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read(&tls.ca)?))
                .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
            if let Some(name) = &tls.server_name {
                config = config.domain_name(name.clone());
            }
            Channel::from_shared(uri.clone())
                .map_err(|e| ConnectError::Transport {
                    addr: uri.clone(),
                    reason: e.to_string(),
                })?
                .tls_config(config)
                .map_err(failed)?
                .connect()
                .await
                .map_err(failed)
        }
    }
}

/// An error and its causes in one line (a transport error's own text is only "transport
/// error").
fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}
