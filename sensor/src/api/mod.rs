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
pub mod search;
pub mod service;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use tokio::sync::{mpsc, oneshot};
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
    /// The event store's database (none: the store is off).
    pub store_db: Option<PathBuf>,
}

/// The running API: what the agent's loop reads and publishes to. The servers run on a thread
/// of their own, with their own runtime: encoding events for streams, TLS and HTTP/2 never
/// take the agent's thread, which reads the ring buffer; they stop when this is dropped.
pub struct Api {
    /// Requests for the loop.
    pub requests: mpsc::Receiver<ApiRequest>,
    /// Where the loop publishes events.
    pub hub: EventHub,
    /// Where it listens, for the log.
    pub serving: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Api {
    /// Serves the API as `opts` says, once its listeners are bound (an error binding them is
    /// the start's).
    pub async fn start(opts: ApiOptions) -> Result<Api> {
        let (tx, requests) = mpsc::channel(QUEUED_REQUESTS);
        let hub = EventHub::new(opts.config.stream_buffer);
        let service = Arc::new(VigilService {
            requests: tx,
            hub: hub.clone(),
            btf: opts.btf.clone(),
            node: opts.node.clone(),
            info: Arc::default(),
            store: search::StoreReader::new(opts.store_db.clone()),
        });
        let (bound_tx, bound_rx) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("vigil-api".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = bound_tx.send(Err(anyhow::anyhow!("api: no runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    match serve(&opts, &service).await {
                        Ok((socket, serving)) => {
                            let _ = bound_tx.send(Ok(serving));
                            // Until the agent stops; the socket is removed then.
                            let _ = stopped.await;
                            drop(socket);
                        }
                        Err(e) => {
                            let _ = bound_tx.send(Err(e));
                        }
                    }
                });
            })
            .context("api: cannot start its thread")?;
        let serving = bound_rx
            .await
            .map_err(|_| anyhow::anyhow!("api: its thread ended"))??;
        Ok(Api {
            requests,
            hub,
            serving,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// Binds the listeners and spawns their servers; returns the unix socket (removed when
/// dropped) and where the API listens.
async fn serve(
    opts: &ApiOptions,
    service: &Arc<VigilService>,
) -> Result<(Option<peer::BoundSocket>, String)> {
    let mut at = Vec::new();
    let mut socket = None;
    if let Some(path) = &opts.socket {
        let mut bound = peer::BoundSocket::bind(path)?;
        let incoming = bound.incoming()?;
        let router = router(service, Authorizer::default()).await?;
        tokio::spawn(async move {
            if let Err(e) = router.serve_with_incoming(incoming).await {
                crate::agent::log(format!("api: the unix socket's server stopped: {e}"));
            }
        });
        at.push(format!("unix://{}", path.display()));
        socket = Some(bound);
    }
    if let (Some(addr), Some(tls)) = (opts.config.listen, &opts.config.tls) {
        let (acceptor, roots) = peer::tls_acceptor(tls)?;
        let authorizer =
            Authorizer::new(&opts.config.roles, Some(roots)).context("api.tls.client_ca")?;
        let incoming = peer::tls_incoming(addr, acceptor)
            .await
            .with_context(|| format!("api.listen: cannot listen on {addr}"))?;
        let router = router(service, authorizer).await?;
        tokio::spawn(async move {
            if let Err(e) = router.serve_with_incoming(incoming).await {
                crate::agent::log(format!("api: the TCP server stopped: {e}"));
            }
        });
        at.push(format!("https://{addr} (mutual TLS)"));
    }
    Ok((socket, at.join(" and ")))
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
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
        // A peer that went away is noticed, and one connection holds a bounded number of calls.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .max_concurrent_streams(Some(events::MAX_STREAMS as u32))
        .layer(AuthLayer(Arc::new(auth)))
        .add_service(health)
        .add_service(v1)
        .add_service(v1alpha)
        .add_service(
            // A policy may be as large as the policy gate lets a file be, and no request more.
            VigilServer::from_arc(service.clone()).max_decoding_message_size(
                vigil_policy_engine::Limits::POLICY.bytes as usize + 4096,
            ),
        ))
}
