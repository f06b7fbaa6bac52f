//! The agent's gRPC API: `vigil.v1.Vigil` ([`service`]), the standard `grpc.health.v1`
//! service and server reflection, served on a unix socket only root can open
//! (`--api-socket`, `/run/vigil/vigil.sock` by default) and, when `api.listen` is configured,
//! on TCP with mutual TLS. Every call passes [`auth::AuthLayer`] first: who the caller is (the
//! kernel's peer credentials, or a client certificate checked against the configured CA) and
//! whether its role allows the call.
//!
//! The servers run as tasks beside the agent's loop; they never touch the policies or the
//! programs themselves, but ask the loop ([`ApiRequest`]), which answers between two reads of
//! the ring buffer. Events reach streams through the [`EventHub`].

pub mod auth;
pub mod config;
mod events;
mod peer;
pub mod service;

use std::{path::PathBuf, sync::Arc};

use anyhow::{Context, Result};
use tokio::{sync::mpsc, task::JoinHandle};
use tonic::transport::Server;
use vigil_api::v1::vigil_server::VigilServer;

pub use events::EventHub;
pub use service::{policy_message, ActionCounts, ApiRequest};

use auth::{AuthLayer, Authorizer};
use config::ApiConfig;
use service::VigilService;

/// Requests the loop may have waiting before a caller waits for room.
const QUEUED_REQUESTS: usize = 64;

/// What the API needs to start.
pub struct ApiOptions {
    /// The unix socket (none: no socket).
    pub socket: Option<PathBuf>,
    /// `api:` of the configuration file.
    pub config: ApiConfig,
    /// Kernel BTF, for `GetInfo`'s probe.
    pub btf: String,
    /// This node's name.
    pub node: String,
}

/// The running API: what the agent's loop reads and publishes to.
pub struct Api {
    /// Requests for the loop.
    pub requests: mpsc::Receiver<ApiRequest>,
    /// Where the loop publishes events.
    pub hub: EventHub,
    servers: Vec<JoinHandle<()>>,
    socket: Option<peer::BoundSocket>,
}

impl Api {
    /// Serves the API as `opts` says.
    pub async fn start(opts: ApiOptions) -> Result<Api> {
        let (tx, requests) = mpsc::channel(QUEUED_REQUESTS);
        let hub = EventHub::new(opts.config.stream_buffer);
        let service = Arc::new(VigilService {
            requests: tx,
            hub: hub.clone(),
            btf: opts.btf,
            node: opts.node,
            info: Arc::default(),
        });
        let mut servers = Vec::new();
        let mut socket = None;
        if let Some(path) = &opts.socket {
            let mut bound = peer::BoundSocket::bind(path)?;
            let incoming = bound.incoming()?;
            let router = router(&service, Authorizer::default()).await?;
            servers.push(tokio::spawn(async move {
                if let Err(e) = router.serve_with_incoming(incoming).await {
                    crate::agent::log(format!("api: the unix socket's server stopped: {e}"));
                }
            }));
            socket = Some(bound);
        }
        if let (Some(addr), Some(tls)) = (opts.config.listen, &opts.config.tls) {
            let (acceptor, roots) = peer::tls_acceptor(tls)?;
            let authorizer =
                Authorizer::new(&opts.config.roles, Some(roots)).context("api.tls.client_ca")?;
            let incoming = peer::tls_incoming(addr, acceptor)
                .await
                .with_context(|| format!("api.listen: cannot listen on {addr}"))?;
            let router = router(&service, authorizer).await?;
            servers.push(tokio::spawn(async move {
                if let Err(e) = router.serve_with_incoming(incoming).await {
                    crate::agent::log(format!("api: the TCP server stopped: {e}"));
                }
            }));
        }
        Ok(Api {
            requests,
            hub,
            servers,
            socket,
        })
    }

    /// Where the API listens, for the log.
    pub fn describe(&self, config: &ApiConfig) -> String {
        let mut at: Vec<String> = self
            .socket
            .iter()
            .map(|s| format!("unix://{}", s.path().display()))
            .collect();
        if let Some(a) = config.listen {
            at.push(format!("https://{a} (mutual TLS)"));
        }
        at.join(" and ")
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        for s in &self.servers {
            s.abort();
        }
    }
}

/// The three services behind the authorization layer.
async fn router(
    service: &Arc<VigilService>,
    auth: Authorizer,
) -> Result<
    tonic::transport::server::Router<
        tower::layer::util::Stack<AuthLayer, tower::layer::util::Identity>,
    >,
> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<VigilServer<VigilService>>().await;
    // grpcurl and grpcio's reflection client ask v1alpha, newer clients v1.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(vigil_api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = reflection().build_v1()?;
    let v1alpha = reflection().build_v1alpha()?;
    Ok(Server::builder()
        .layer(AuthLayer(Arc::new(auth)))
        .add_service(health)
        .add_service(v1)
        .add_service(v1alpha)
        .add_service(VigilServer::from_arc(service.clone())))
}
