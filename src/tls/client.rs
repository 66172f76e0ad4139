//! Client-side mutual TLS for tonic channels: aerodbctl, the control plane's kernel connections,
//! and node-to-node replication.
//!
//! The channel connects lazily; each new TCP connection uses the client configuration current at
//! that moment (so a reloaded certificate is used by the next connection), verifies the server
//! against the CA and the address's host name or IP, and presents this process's certificate.
//! [`channel_to`] (every client of the product) also requires the server to present the identity
//! the caller means to reach and checks it against the CRL ([`super::server_identity`]); a
//! refused server fails the call with the reason, and the refusal is logged.
//! tonic does not retry requests; a broken connection is re-established for the next call only.
//! Every channel sends HTTP/2 keep-alive PINGs ([`KEEP_ALIVE_INTERVAL`]), idle or not, so that a
//! server's idle timeout never closes a connection of ours.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use super::material::ClientTls;
use super::server_identity::ExpectedServer;

/// Why a channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The address is not `host:port`.
    #[error("address {0:?} is not host:port")]
    BadAddress(String),
    /// tonic refused the endpoint.
    #[error("endpoint {address}: {source}")]
    Endpoint {
        /// The address.
        address: String,
        /// tonic's error.
        source: tonic::transport::Error,
    },
}

/// Interval of the HTTP/2 keep-alive PINGs every channel of this crate sends, idle or not: 5 s.
/// Servers close a connection that has received nothing for their idle timeout (at least
/// [`crate::tls::limits::MIN_IDLE_TIMEOUT`], two of these intervals), so the long-lived channels
/// of this crate (the control plane's kernel connections, the nodes' replication connections,
/// aerodbctl) are never cut for being idle: each PING is a received byte for the server.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// A keep-alive PING not answered within this closes the connection (the next call reconnects).
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Options of one channel.
#[derive(Debug, Clone, Copy)]
pub struct ChannelOptions {
    /// Bound on TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self { connect_timeout: Duration::from_secs(3) }
    }
}

/// A lazily connecting mTLS channel to `address` (`host:port`) with a fixed-purpose client
/// configuration (no server identity check beyond what `config` does; see [`channel_to`]).
pub fn channel(
    address: &str,
    config: watch::Receiver<Arc<ClientConfig>>,
    options: ChannelOptions,
) -> Result<Channel, ChannelError> {
    connect_lazily(address, options, move || Ok(config.borrow().clone()))
}

/// A lazily connecting mTLS channel to `address` that accepts only a server presenting
/// `expected` (and, with CRLs in the material, not revoked under a fresh CRL). Each connection
/// uses the material current at that moment.
pub fn channel_to(
    address: &str,
    tls: watch::Receiver<Arc<ClientTls>>,
    expected: ExpectedServer,
    options: ChannelOptions,
) -> Result<Channel, ChannelError> {
    connect_lazily(address, options, move || {
        let material = tls.borrow().clone();
        material.config_for(&expected).map_err(io::Error::other)
    })
}

fn connect_lazily<F>(address: &str, options: ChannelOptions, config: F) -> Result<Channel, ChannelError>
where
    F: Fn() -> io::Result<Arc<ClientConfig>> + Send + Sync + 'static,
{
    let (host, _port) = split_host_port(address).ok_or_else(|| ChannelError::BadAddress(address.to_string()))?;
    let server_name =
        ServerName::try_from(host.to_string()).map_err(|_| ChannelError::BadAddress(address.to_string()))?.to_owned();
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|source| ChannelError::Endpoint { address: address.to_string(), source })?
        .connect_timeout(options.connect_timeout)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let target = address.to_string();
    let connect_timeout = options.connect_timeout;
    let config = Arc::new(config);
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let config = config();
        let target = target.clone();
        let server_name = server_name.clone();
        async move {
            let connect = async {
                let config = config?;
                let tcp = TcpStream::connect(&target).await?;
                tcp.set_nodelay(true)?;
                let tls = TlsConnector::from(config).connect(server_name, tcp).await.map_err(|e| {
                    // The reason (a refused server identity, an expired CRL) travels in the error;
                    // say it here too, since a transport error may reach the caller without it.
                    tracing::warn!(server.address = %target, error = %e, "TLS handshake with a server failed");
                    e
                })?;
                Ok::<_, io::Error>(TokioIo::new(tls))
            };
            tokio::time::timeout(connect_timeout, connect)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect and handshake timed out"))?
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connector))
}

/// A fixed client configuration (or material) as a watch receiver (for callers that never reload).
pub fn fixed<T>(config: T) -> watch::Receiver<Arc<T>> {
    let (tx, rx) = watch::channel(Arc::new(config));
    // The sender is leaked into the receiver's lifetime by keeping it alive in a task-free way:
    // a dropped sender leaves the last value readable, which is all a fixed config needs.
    drop(tx);
    rx
}

/// Splits `host:port`, accepting `[v6]:port`.
pub fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_splits_v4_v6_and_names() {
        assert_eq!(split_host_port("127.0.0.1:7000"), Some(("127.0.0.1", 7000)));
        assert_eq!(split_host_port("[::1]:7000"), Some(("::1", 7000)));
        assert_eq!(split_host_port("localhost:1"), Some(("localhost", 1)));
        assert_eq!(split_host_port("localhost"), None);
        assert_eq!(split_host_port(":80"), None);
        assert_eq!(split_host_port("h:99999"), None);
    }
}
