//! Where aerodbctl connects and with which certificate: flags, then `AERODB_*` environment,
//! then a profile file.

use std::path::PathBuf;

use tonic::transport::Channel;

use crate::pki::profile::Profile;
use crate::tls::client::{ChannelOptions, channel_to, fixed};
use crate::tls::identity::Role;
use crate::tls::material::{TlsPaths, client_tls};
use crate::tls::server_identity::ExpectedServer;

/// The trust domain assumed when neither a flag, the environment nor a profile gives one.
pub const DEFAULT_TRUST_DOMAIN: &str = "aerodb.local";

/// Connection flags shared by every command.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConnArgs {
    /// Profile file written by `aerodb certs` (env AERODB_PROFILE).
    #[arg(long, global = true, env = "AERODB_PROFILE")]
    pub profile: Option<PathBuf>,
    /// `host:port` to connect to (env AERODB_ENDPOINT).
    #[arg(long, global = true, env = "AERODB_ENDPOINT")]
    pub endpoint: Option<String>,
    /// CA bundle (env AERODB_CA).
    #[arg(long, global = true, env = "AERODB_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (env AERODB_CERT).
    #[arg(long, global = true, env = "AERODB_CERT")]
    pub cert: Option<PathBuf>,
    /// Client private key for TLS (env AERODB_KEY). Not an idempotency key: those are `--key` of
    /// the action commands.
    #[arg(long = "client-key", global = true, env = "AERODB_KEY")]
    pub client_key: Option<PathBuf>,
    /// Every node's `host:port`, comma-separated (env AERODB_ENDPOINTS; default: the profile's
    /// `endpoints`): `kv` writes look for the primary among them across a switchover.
    #[arg(long, global = true, env = "AERODB_ENDPOINTS", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Trust domain of the server's identity (env AERODB_TRUST_DOMAIN; default: the profile's,
    /// else aerodb.local).
    #[arg(long, global = true, env = "AERODB_TRUST_DOMAIN")]
    pub trust_domain: Option<String>,
    /// Identity the server must present, `<role>/<name>` or `<role>` (env
    /// AERODB_SERVER_IDENTITY; default: the profile's, else any control plane, or any node for `kv`).
    #[arg(long, global = true, env = "AERODB_SERVER_IDENTITY")]
    pub server_identity: Option<String>,
    /// Connect timeout in milliseconds.
    #[arg(long, global = true, default_value_t = 5000)]
    pub connect_timeout_ms: u64,
}

/// A resolved connection.
#[derive(Debug, Clone)]
pub struct Conn {
    /// Where.
    pub endpoint: String,
    /// TLS material.
    pub paths: TlsPaths,
    /// Trust domain of the server's identity.
    pub trust_domain: String,
    /// The identity the server must present, when pinned (`<role>/<name>` or `<role>`).
    pub server: Option<String>,
    /// Every node's `host:port` (flag, environment or profile `endpoints`; possibly empty).
    pub endpoints: Vec<String>,
}

/// Why a connection could not be resolved or set up (a usage error).
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// A required setting is missing everywhere.
    #[error("no {0}: give --{0}, set AERODB_{1}, or use --profile")]
    Missing(&'static str, &'static str),
    /// The profile could not be read.
    #[error("profile: {0}")]
    Profile(String),
    /// TLS material could not be loaded.
    #[error("{0}")]
    Tls(String),
}

impl ConnArgs {
    /// Flags first, then environment (clap folds env into the flags), then the profile; relative
    /// paths in a profile are taken relative to the profile file's folder.
    pub fn resolve(&self) -> Result<Conn, ConnError> {
        let (profile, profile_endpoints) = match &self.profile {
            Some(p) => {
                let (profile, endpoints) =
                    Profile::read_with_endpoints(p).map_err(|e| ConnError::Profile(e.to_string()))?;
                (Some(profile), endpoints)
            }
            None => (None, Vec::new()),
        };
        let endpoints = if self.endpoints.is_empty() { profile_endpoints } else { self.endpoints.clone() };
        let endpoint = self
            .endpoint
            .clone()
            .or_else(|| profile.as_ref().map(|p| p.endpoint.clone()))
            .or_else(|| endpoints.first().cloned())
            .ok_or(ConnError::Missing("endpoint", "ENDPOINT"))?;
        let ca =
            self.ca.clone().or_else(|| profile.as_ref().map(|p| p.ca.clone())).ok_or(ConnError::Missing("ca", "CA"))?;
        let cert = self
            .cert
            .clone()
            .or_else(|| profile.as_ref().map(|p| p.cert.clone()))
            .ok_or(ConnError::Missing("cert", "CERT"))?;
        let key = self
            .client_key
            .clone()
            .or_else(|| profile.as_ref().map(|p| p.key.clone()))
            .ok_or(ConnError::Missing("client-key", "KEY"))?;
        let trust_domain = self
            .trust_domain
            .clone()
            .or_else(|| profile.as_ref().map(|p| p.trust_domain.clone()))
            .unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.to_string());
        let server = self.server_identity.clone().or_else(|| profile.as_ref().and_then(|p| p.server.clone()));
        Ok(Conn { endpoint, paths: TlsPaths { ca, crl: Vec::new(), cert, key }, trust_domain, server, endpoints })
    }

    /// A lazily connecting channel to a server of `role` (the control plane, or a node for
    /// `kv`): the server must present the pinned identity (flag, environment or profile) or,
    /// when none is pinned, some identity of `role`; any other server fails the first call.
    pub fn channel(&self, role: Role) -> Result<(Conn, Channel), ConnError> {
        let conn = self.resolve()?;
        let ch = self.channel_at(&conn, &conn.endpoint, role)?;
        Ok((conn, ch))
    }

    /// A lazily connecting channel to `endpoint` with `conn`'s certificate and server check
    /// (as [`ConnArgs::channel`]).
    pub fn channel_at(&self, conn: &Conn, endpoint: &str, role: Role) -> Result<Channel, ConnError> {
        let expected = match &conn.server {
            Some(text) => ExpectedServer::parse(text).map_err(ConnError::Tls)?,
            None => ExpectedServer::any(role),
        };
        let tls = client_tls(&conn.paths, &conn.trust_domain).map_err(|e| ConnError::Tls(e.to_string()))?;
        channel_to(
            endpoint,
            fixed(tls),
            expected,
            ChannelOptions { connect_timeout: std::time::Duration::from_millis(self.connect_timeout_ms) },
        )
        .map_err(|e| ConnError::Tls(e.to_string()))
    }
}
