//! The API's listeners: the unix socket (in a directory only root may write, created 0700 when
//! missing, the socket itself 0600) and the TCP listener, whose connections are TLS handshakes
//! run off the accept loop (a client that never finishes its handshake holds only its own
//! task, for [`HANDSHAKE_TIMEOUT`]). Each connection carries its [`Peer`] to the services.

use std::{
    io,
    net::SocketAddr,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use anyhow::{anyhow, Context as _, Result};
use futures::{Stream, StreamExt};
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    RootCertStore, ServerConfig,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, UnixListener},
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::transport::server::Connected;
use vigil_safe_fs::TrustedDir;

use super::{auth::DeferredClientAuth, auth::Peer, config::TlsFiles};
use crate::agent::log;

/// How long a TCP client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server.
const READY_CONNECTIONS: usize = 64;
/// TCP connections open at once, handshaking or served: past it, new ones are closed at once
/// (a client that opens connections and sends nothing cannot take the agent's descriptors).
pub const MAX_TCP_CONNECTIONS: usize = 256;

/// A connection and who is at its other end.
pub struct PeerStream<S> {
    io: S,
    peer: Peer,
    /// Its place among the TCP connections open at once, given back when it closes.
    _slot: Option<OwnedSemaphorePermit>,
}

impl<S> Connected for PeerStream<S> {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PeerStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PeerStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The unix socket this agent bound, removed when the agent stops unless another agent has
/// bound the path since (an upgrade's overlap).
pub struct BoundSocket {
    path: PathBuf,
    listener: Option<UnixListener>,
    ino: (u64, u64),
}

impl BoundSocket {
    /// Binds `path`, replacing what is there (a stale socket of an earlier agent). Its
    /// directory must be root's and not writable by others (created 0700 when missing).
    pub fn bind(path: &Path) -> Result<BoundSocket> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str()))
        else {
            return Err(anyhow!("--api-socket {}: not a file path", path.display()));
        };
        let dir = TrustedDir::create(parent)
            .with_context(|| format!("--api-socket {}", path.display()))?;
        dir.remove(name)
            .with_context(|| format!("--api-socket {}", path.display()))?;
        let listener = UnixListener::bind(path)
            .with_context(|| format!("--api-socket {}: cannot bind", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("--api-socket {}: cannot make it 0600", path.display()))?;
        let meta = std::fs::symlink_metadata(path)?;
        Ok(BoundSocket {
            path: path.to_path_buf(),
            listener: Some(listener),
            ino: (meta.dev(), meta.ino()),
        })
    }

    /// Its connections, each with the caller's credentials (once: the server takes the
    /// listener).
    pub fn incoming(
        &mut self,
    ) -> Result<impl Stream<Item = io::Result<PeerStream<tokio::net::UnixStream>>>> {
        let listener = self
            .listener
            .take()
            .ok_or_else(|| anyhow!("the socket's listener was taken"))?;
        Ok(UnixListenerStream::new(listener).map(|s| {
            s.map(|io| {
                let cred = io.peer_cred().ok();
                PeerStream {
                    peer: Peer::Unix {
                        uid: cred.map(|c| c.uid()),
                        pid: cred.and_then(|c| c.pid()),
                    },
                    io,
                    _slot: None,
                }
            })
        }))
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.ino);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The TLS server configuration of `files`, and the client CA's roots.
pub fn tls_acceptor(files: &TlsFiles) -> Result<(TlsAcceptor, Arc<RootCertStore>)> {
    let read_certs = |p: &Path, what: &str| -> Result<Vec<CertificateDer<'static>>> {
        let certs = CertificateDer::pem_file_iter(p)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| anyhow!("api.tls.{what}: {}: {e}", p.display()))?;
        if certs.is_empty() {
            return Err(anyhow!(
                "api.tls.{what}: {} holds no PEM certificate",
                p.display()
            ));
        }
        Ok(certs)
    };
    let chain = read_certs(&files.cert, "cert")?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| anyhow!("api.tls.key: {}: {e}", files.key.display()))?;
    let mut roots = RootCertStore::empty();
    for c in read_certs(&files.client_ca, "client_ca")? {
        roots
            .add(c)
            .map_err(|e| anyhow!("api.tls.client_ca: {}: {e}", files.client_ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("api.tls: {e}"))?
        .with_client_cert_verifier(Arc::new(DeferredClientAuth::new(&roots)))
        .with_single_cert(chain, key)
        .map_err(|e| anyhow!("api.tls.cert and api.tls.key: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), Arc::new(roots)))
}

/// Listens on `addr`; each connection's handshake runs in its own task.
pub async fn tls_incoming(
    addr: SocketAddr,
    acceptor: TlsAcceptor,
) -> Result<
    impl Stream<Item = io::Result<PeerStream<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>>,
> {
    let listener = TcpListener::bind(addr).await?;
    let (tx, rx) = mpsc::channel(READY_CONNECTIONS);
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    let mut turned_away = 0u64;
    tokio::spawn(async move {
        loop {
            if tx.is_closed() {
                break;
            }
            let (tcp, from) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    log(format!("api: accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                turned_away += 1;
                if turned_away.is_power_of_two() {
                    log(format!("api: {MAX_TCP_CONNECTIONS} TCP connections are open: {turned_away} connections closed at once so far (the last from {from})"));
                }
                continue;
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let chain = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                            .unwrap_or_default();
                        let peer = Peer::Tls {
                            addr: from,
                            chain: Arc::new(chain),
                        };
                        let _ = tx
                            .send(Ok(PeerStream {
                                io: tls,
                                peer,
                                _slot: Some(slot),
                            }))
                            .await;
                    }
                    Ok(Err(e)) => super::auth::log_refusal(format_args!(
                        "api: TLS handshake with {from} failed: {e}"
                    )),
                    Err(_) => super::auth::log_refusal(format_args!(
                        "api: {from} did not finish its TLS handshake within {} s",
                        HANDSHAKE_TIMEOUT.as_secs()
                    )),
                }
            });
        }
    });
    Ok(ReceiverStream::new(rx))
}
