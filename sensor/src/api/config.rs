//! `api:` in the configuration file: the TCP listener, its TLS files and the roles of client
//! certificates, and the event streams' queues. The unix socket's path is `--api-socket`.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use serde::Deserialize;

use super::auth::Role;

/// The API's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// A TCP address to serve on as well, with mutual TLS (`tls` is then required).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// The server's certificate and key, and the CA that signs client certificates (PEM).
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Client certificate identities by role: `CN=name`, `DNS:name`, `URI:uri`, `EMAIL:addr`.
    #[serde(default)]
    pub roles: BTreeMap<Role, Vec<String>>,
    /// Events each stream may hold for a client that reads slower than they come; past it
    /// the client misses events, and is told how many.
    #[serde(default = "default_stream_buffer")]
    pub stream_buffer: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: None,
            tls: None,
            roles: BTreeMap::new(),
            stream_buffer: default_stream_buffer(),
        }
    }
}

fn default_stream_buffer() -> usize {
    4096
}

/// PEM files of the TCP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The server's certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA client certificates must chain to.
    pub client_ca: PathBuf,
}

impl ApiConfig {
    /// What is wrong with the settings, as `api.<field>: reason`.
    pub fn check(&self) -> Result<(), String> {
        if self.listen.is_some() && self.tls.is_none() {
            return Err("api.listen: TCP is served with mutual TLS only; set api.tls.cert, api.tls.key and api.tls.client_ca".into());
        }
        if self.stream_buffer == 0 || self.stream_buffer > 1 << 20 {
            return Err(format!(
                "api.stream_buffer: {} is not between 1 and 1048576",
                self.stream_buffer
            ));
        }
        Ok(())
    }
}
