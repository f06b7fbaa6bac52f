//! Who calls, and what they may do. A caller on the unix socket is identified by the kernel
//! (`SO_PEERCRED`): root is `admin`, nobody else gets in (the socket is 0600 besides). A caller
//! over TCP has completed a TLS handshake in which it proved it holds the key of the
//! certificate it sent; [`AuthLayer`] then checks that certificate against the configured
//! client CA and its validity dates, and maps its identities (`CN=...`, `DNS:...`, `URI:...`,
//! `EMAIL:...`) to a role. The check is made here rather than in the handshake so that a
//! refused client gets `UNAUTHENTICATED` with the reason (expired, another CA, none sent) and
//! the agent logs it with the identity, instead of a bare handshake failure.
//!
//! `viewer` may stream events and read status; `admin` may also change policies.

use std::{
    collections::BTreeMap,
    sync::Arc,
    task::{Context, Poll},
};

use rustls::{
    client::danger::HandshakeSignatureValid,
    pki_types::{CertificateDer, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
    server::WebPkiClientVerifier,
    DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use serde::Deserialize;
use tonic::Status;

use crate::agent::log;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Events and status.
    Viewer,
    /// Policies too.
    Admin,
}

/// How a connection reached the agent.
#[derive(Debug, Clone)]
pub enum Peer {
    /// The unix socket, with the caller's credentials as the kernel gives them.
    Unix {
        /// The caller's user id.
        uid: Option<u32>,
        /// Its process id.
        pid: Option<i32>,
    },
    /// TCP with TLS, with the certificate chain the client sent (if any).
    Tls {
        /// The client's address.
        addr: std::net::SocketAddr,
        /// End entity first.
        chain: Arc<Vec<CertificateDer<'static>>>,
    },
}

/// The calls that change what the agent enforces.
const ADMIN_METHODS: [&str; 5] = [
    "AddPolicy",
    "DeletePolicy",
    "EnablePolicy",
    "DisablePolicy",
    "SetPolicyMode",
];

/// The role a method needs.
pub fn needed(path: &str) -> Role {
    match path.strip_prefix("/vigil.v1.Vigil/") {
        Some(m) if ADMIN_METHODS.contains(&m) => Role::Admin,
        _ => Role::Viewer,
    }
}

/// The identities of certificates given each role (`roles:` in the configuration).
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    roles: BTreeMap<String, Role>,
    /// The client CA's verifier (TCP only).
    verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl Authorizer {
    /// `roles` by role; `ca` verifies client certificates.
    pub fn new(
        roles: &BTreeMap<Role, Vec<String>>,
        ca: Option<Arc<RootCertStore>>,
    ) -> Result<Authorizer, rustls::Error> {
        let mut by_identity = BTreeMap::new();
        for (role, ids) in roles {
            for id in ids {
                let r = by_identity.entry(id.clone()).or_insert(*role);
                *r = (*r).max(*role);
            }
        }
        let verifier = match ca {
            Some(roots) => Some(
                WebPkiClientVerifier::builder_with_provider(
                    roots,
                    Arc::new(rustls::crypto::ring::default_provider()),
                )
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?,
            ),
            None => None,
        };
        Ok(Authorizer {
            roles: by_identity,
            verifier,
        })
    }

    /// Who `peer` is and whether it may call `path`: the caller's name, or the status to
    /// answer with.
    pub fn check(&self, peer: Option<&Peer>, path: &str) -> Result<String, (String, Status)> {
        let need = needed(path);
        match peer {
            Some(Peer::Unix { uid: Some(0), pid }) => Ok(format!(
                "uid 0 (pid {}) on the unix socket",
                pid.map_or("?".into(), |p| p.to_string())
            )),
            Some(Peer::Unix { uid, .. }) => {
                let who = format!(
                    "uid {} on the unix socket",
                    uid.map_or("?".into(), |u| u.to_string())
                );
                Err((
                    who,
                    Status::permission_denied("only root may use the agent's unix socket"),
                ))
            }
            Some(Peer::Tls { addr, chain }) => self.check_certificate(*addr, chain, need),
            None => Err((
                "an unknown peer".into(),
                Status::unauthenticated("the connection carries no peer information"),
            )),
        }
    }

    fn check_certificate(
        &self,
        addr: std::net::SocketAddr,
        chain: &[CertificateDer<'static>],
        need: Role,
    ) -> Result<String, (String, Status)> {
        let Some((end, intermediates)) = chain.split_first() else {
            return Err((
                addr.to_string(),
                Status::unauthenticated(
                    "no client certificate: the agent's TCP listener requires mutual TLS",
                ),
            ));
        };
        let Some(verifier) = &self.verifier else {
            return Err((
                addr.to_string(),
                Status::unauthenticated("no client CA is configured"),
            ));
        };
        // Nothing of a certificate the CA did not sign is written to the log.
        if let Err(e) = verifier.verify_client_cert(end, intermediates, UnixTime::now()) {
            return Err((
                format!("an unverified certificate from {addr}"),
                Status::unauthenticated(format!("client certificate refused: {}", cert_reason(&e))),
            ));
        }
        let ids = identities(end);
        // Escaped: a name is the certificate holder's text, and goes into the log.
        let who = vigil_events::compact::escape(&format!(
            "{} from {addr}",
            ids.first().map_or("?", String::as_str)
        ))
        .into_owned();
        // One subject, one name: with two common names, which one the CA checked is not known.
        if ids.iter().filter(|i| i.starts_with("CN=")).count() > 1 {
            return Err((
                who,
                Status::unauthenticated(
                    "the client certificate's subject has more than one common name (CN)",
                ),
            ));
        }
        let role = ids.iter().filter_map(|i| self.roles.get(i)).max().copied();
        match role {
            Some(r) if r >= need => Ok(who),
            Some(r) => Err((
                who.clone(),
                Status::permission_denied(format!(
                    "{who} has the role {r:?}; this call needs {need:?}"
                )),
            )),
            None => Err((
                who.clone(),
                Status::permission_denied(format!(
                    "{who} has no role: list one of its identities ({}) under api.roles in the configuration",
                    ids.join(", ")
                )),
            )),
        }
    }
}

/// A certificate's names as `api.roles` lists them: `CN=` of the subject, then its subject
/// alternative names as `DNS:`, `URI:`, `EMAIL:`.
pub fn identities(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::*;
    let Ok((_, c)) = X509Certificate::from_der(cert.as_ref()) else {
        return Vec::new();
    };
    let mut out: Vec<String> = c
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(|cn| format!("CN={cn}"))
        .collect();
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => out.push(format!("DNS:{d}")),
                GeneralName::URI(u) => out.push(format!("URI:{u}")),
                GeneralName::RFC822Name(e) => out.push(format!("EMAIL:{e}")),
                _ => {}
            }
        }
    }
    out
}

/// A certificate refusal in words.
fn cert_reason(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "it has expired".into()
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "it is not valid yet".into()
        }
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "it is not signed by the configured client CA".into()
        }
        rustls::Error::InvalidCertificate(C::Revoked) => "it was revoked".into(),
        rustls::Error::InvalidCertificate(C::InvalidPurpose | C::InvalidPurposeContext { .. }) => {
            "it is not a client certificate (extended key usage)".into()
        }
        other => other.to_string(),
    }
}

/// The handshake's verifier: asks for a client certificate, checks that the client holds its
/// key, and leaves the decision on the certificate to [`Authorizer`] (so that a refusal is a
/// gRPC status with a reason, not a broken handshake).
#[derive(Debug)]
pub struct DeferredClientAuth {
    hints: Vec<DistinguishedName>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl DeferredClientAuth {
    /// Hints the CA's subjects to clients.
    pub fn new(roots: &RootCertStore) -> Self {
        DeferredClientAuth {
            hints: roots.subjects(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }
}

impl ClientCertVerifier for DeferredClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Refusals logged per second at most; the rest are counted and said in one line.
const REFUSALS_PER_SECOND: u64 = 10;

/// A log of refusals that a flood of refused calls cannot turn into a flood of lines.
struct RefusalLog {
    /// The second of the current window and the lines logged in it, and those left out.
    window: std::sync::Mutex<(u64, u64, u64)>,
}

static REFUSALS: RefusalLog = RefusalLog {
    window: std::sync::Mutex::new((0, 0, 0)),
};

/// Logs a refused call or connection, at most [`REFUSALS_PER_SECOND`] a second.
pub fn log_refusal(line: std::fmt::Arguments<'_>) {
    REFUSALS.log(line);
}

impl RefusalLog {
    fn log(&self, line: std::fmt::Arguments<'_>) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let Ok(mut w) = self.window.lock() else {
            return;
        };
        if w.0 != now {
            if w.2 > 0 {
                log(format!(
                    "api: {} more refusals in the second before not logged",
                    w.2
                ));
            }
            *w = (now, 0, 0);
        }
        if w.1 < REFUSALS_PER_SECOND {
            w.1 += 1;
            log(line);
        } else {
            w.2 += 1;
        }
    }
}

/// Checks every call before it reaches a service (the vigil service, health and reflection
/// alike), and logs each refusal with the caller.
#[derive(Clone)]
pub struct AuthLayer(pub Arc<Authorizer>);

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            auth: self.0.clone(),
        }
    }
}

/// [`AuthLayer`]'s service.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authorizer>,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::Either<
        S::Future,
        futures::future::Ready<Result<Self::Response, Self::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_string();
        match self.auth.check(req.extensions().get::<Peer>(), &path) {
            Ok(_) => futures::future::Either::Left(self.inner.call(req)),
            Err((who, status)) => {
                let path = vigil_events::compact::escape(&path);
                REFUSALS.log(format_args!(
                    "api: refused {path} to {who}: {}",
                    status.message()
                ));
                futures::future::Either::Right(futures::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_changes_need_admin_and_everything_else_viewer() {
        assert_eq!(needed("/vigil.v1.Vigil/AddPolicy"), Role::Admin);
        assert_eq!(needed("/vigil.v1.Vigil/SetPolicyMode"), Role::Admin);
        assert_eq!(needed("/vigil.v1.Vigil/GetEvents"), Role::Viewer);
        assert_eq!(needed("/grpc.health.v1.Health/Check"), Role::Viewer);
    }

    #[test]
    fn only_root_passes_on_the_unix_socket() {
        let a = Authorizer::default();
        let root = Peer::Unix {
            uid: Some(0),
            pid: Some(1),
        };
        assert!(a.check(Some(&root), "/vigil.v1.Vigil/AddPolicy").is_ok());
        let user = Peer::Unix {
            uid: Some(1000),
            pid: Some(1),
        };
        let (_, s) = a
            .check(Some(&user), "/vigil.v1.Vigil/GetEvents")
            .unwrap_err();
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
        let (_, s) = a.check(None, "/vigil.v1.Vigil/GetEvents").unwrap_err();
        assert_eq!(s.code(), tonic::Code::Unauthenticated);
    }
}
