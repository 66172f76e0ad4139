//! Serving gRPC over mutual TLS: the accept loop shared by `aerodb control` and `aerodb node`.
//!
//! TCP connections are accepted here, each handshake runs under a bounded timeout with the
//! server configuration current at that moment (configurations reload without restart, see
//! [`super::reload`]), and every completed connection carries its caller's [`Identity`] in a
//! [`ConnInfo`] that tonic places in each request's extensions. A failed handshake is reported to
//! a [`HandshakeObserver`] (the control plane audits it; a node logs it) and never reaches a
//! service. Connections beyond the configured limit, or from an address that already has its
//! share of handshakes in flight, are closed before the handshake.
//!
//! An established connection keeps its identity only while the current material would still
//! accept its certificate: each connection checks its peer's chain again, with the verifier of
//! every configuration that replaces the one it was made with, and a connection whose
//! certificate is refused then (revoked since, or its CA no longer trusted) is marked in its
//! [`ConnInfo`] and closed: its client reconnects with the material it holds now (a rotated
//! certificate) or is refused at that handshake, and any call that raced the close is denied by
//! authorization.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use super::identity::{Identity, IdentityError, identity_from_der};
use super::material::ServerTls;
use super::verifier::{HandshakeFailure, refusal_reason};

/// Default bound on one TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on concurrently open connections per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default bound on handshakes in flight from one IP address.
pub const DEFAULT_MAX_HANDSHAKES_PER_PEER: usize = 128;

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A handshake that has not completed within this is dropped and reported.
    pub handshake_timeout: Duration,
    /// Connections beyond this are closed before the handshake and reported.
    pub max_connections: usize,
    /// A connection from an address that already has this many handshakes in flight is closed
    /// before its own and reported: one host that opens connections and never completes them
    /// holds at most this many of the `max_connections` slots, not all of them.
    pub max_handshakes_per_peer: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_handshakes_per_peer: DEFAULT_MAX_HANDSHAKES_PER_PEER,
        }
    }
}

/// Handshakes in flight per IP address.
type InFlightByPeer = Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// One handshake in flight from an address; leaving it (however the handshake ends) frees its
/// place.
struct PeerHandshake {
    table: InFlightByPeer,
    ip: std::net::IpAddr,
}

impl PeerHandshake {
    /// A place for one more handshake from `ip`, or `None` when it has `max` in flight.
    fn enter(table: &InFlightByPeer, ip: std::net::IpAddr, max: usize) -> Option<Self> {
        let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
        let n = t.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Self { table: table.clone(), ip })
    }
}

impl Drop for PeerHandshake {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = t.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.ip);
            }
        }
    }
}

/// Receives every handshake the listener refused.
pub trait HandshakeObserver: Send + Sync {
    /// Called once per refused connection, from the connection's own task.
    fn rejected(&self, peer: SocketAddr, failure: HandshakeFailure);
}

/// A [`HandshakeObserver`] that only logs.
#[derive(Debug, Default)]
pub struct LogHandshakes {
    /// Number of refused handshakes so far.
    pub refused: AtomicU64,
}

impl HandshakeObserver for LogHandshakes {
    fn rejected(&self, peer: SocketAddr, failure: HandshakeFailure) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            peer.addr = %peer,
            cert.sha256 = failure.fingerprint.as_deref().unwrap_or("-"),
            reason = %failure.reason,
            "TLS handshake refused"
        );
    }
}

/// Facts about one authenticated connection, available to every request on it.
#[derive(Debug)]
pub struct ConnInfo {
    /// The peer's socket address.
    pub remote: Option<SocketAddr>,
    /// The caller's identity, derived once from the verified leaf certificate.
    pub identity: Result<Identity, IdentityError>,
    /// Set (once) when reloaded TLS material refuses the certificate this connection was made
    /// with: why it is no longer accepted. From then on the identity carries no authority, and
    /// the connection is closed (its client reconnects with the material it holds now).
    pub no_longer_accepted: std::sync::OnceLock<String>,
    /// Wakes the connection's I/O so that a refusal closes it even while it is idle.
    closer: futures::task::AtomicWaker,
}

impl ConnInfo {
    /// Facts of a new connection.
    pub fn new(remote: Option<SocketAddr>, identity: Result<Identity, IdentityError>) -> Self {
        Self { remote, identity, no_longer_accepted: Default::default(), closer: Default::default() }
    }

    /// Records why the connection's certificate is no longer accepted and closes the connection.
    fn refuse(&self, reason: String) {
        let _ = self.no_longer_accepted.set(reason);
        self.closer.wake();
    }

    /// Ready with an error once the connection must close; registers the task to be woken.
    fn poll_closed(&self, cx: &mut Context<'_>) -> Option<io::Error> {
        self.closer.register(cx.waker());
        self.no_longer_accepted.get().map(|why| {
            io::Error::new(io::ErrorKind::ConnectionAborted, format!("certificate no longer accepted: {why}"))
        })
    }
}

/// A TLS stream whose handshake completed, with the caller's identity attached.
pub struct AuthenticatedStream {
    inner: TlsStream<TcpStream>,
    info: Arc<ConnInfo>,
    _permit: OwnedSemaphorePermit,
    /// Dropped with the connection, which ends its re-check task.
    _closed: oneshot::Sender<()>,
}

impl Connected for AuthenticatedStream {
    type ConnectInfo = Arc<ConnInfo>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for AuthenticatedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.info.poll_closed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for AuthenticatedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(e) = self.info.poll_closed(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts TCP connections on `listener`, completes mutual-TLS handshakes with the configuration
/// current in `config`, and yields authenticated streams for `serve_with_incoming`. The accept
/// task stops when the returned stream is dropped.
pub fn tls_incoming(
    listener: TcpListener,
    config: watch::Receiver<Arc<ServerTls>>,
    trust_domain: String,
    limits: ServerLimits,
    observer: Arc<dyn HandshakeObserver>,
) -> ReceiverStream<Result<AuthenticatedStream, io::Error>> {
    // Completed handshakes wait here for tonic; the bound applies back-pressure to accepting.
    let (tx, rx) = mpsc::channel(64);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let in_flight: InFlightByPeer = Default::default();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Transient accept errors (EMFILE, ECONNABORTED) must not end the server.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                observer.rejected(
                    peer,
                    HandshakeFailure {
                        reason: format!("connection limit of {} reached", limits.max_connections),
                        fingerprint: None,
                    },
                );
                continue;
            };
            let Some(handshake) = PeerHandshake::enter(&in_flight, peer.ip(), limits.max_handshakes_per_peer) else {
                observer.rejected(
                    peer,
                    HandshakeFailure {
                        reason: format!(
                            "{} handshakes already in flight from {}",
                            limits.max_handshakes_per_peer,
                            peer.ip()
                        ),
                        fingerprint: None,
                    },
                );
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(config.borrow().config.clone());
            let recheck = config.clone();
            let tx = tx.clone();
            let observer = observer.clone();
            let trust_domain = trust_domain.clone();
            tokio::spawn(async move {
                let accepted = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await;
                drop(handshake);
                let tls = match accepted {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        return observer.rejected(peer, HandshakeFailure::from_io_error(&e));
                    }
                    Err(_) => {
                        return observer.rejected(
                            peer,
                            HandshakeFailure {
                                reason: format!(
                                    "handshake not completed within {} ms",
                                    limits.handshake_timeout.as_millis()
                                ),
                                fingerprint: None,
                            },
                        );
                    }
                };
                let chain: Vec<CertificateDer<'static>> =
                    tls.get_ref().1.peer_certificates().map(|c| c.to_vec()).unwrap_or_default();
                let identity = match chain.first() {
                    Some(leaf) => identity_from_der(leaf.as_ref(), &trust_domain),
                    None => Err(IdentityError::Unparseable("no client certificate".into())),
                };
                let info = Arc::new(ConnInfo::new(Some(peer), identity));
                let (closed_tx, closed_rx) = oneshot::channel();
                tokio::spawn(recheck_on_reload(recheck, chain, info.clone(), closed_rx));
                let _ =
                    tx.send(Ok(AuthenticatedStream { inner: tls, info, _permit: permit, _closed: closed_tx })).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Checks the connection's certificate chain again with the verifier of every configuration that
/// replaces the one it was made with (a clone of the accept loop's receiver sees every change
/// since the listener started, so none is missed), until the connection closes. The first refusal
/// is recorded in `info` and ends the task.
async fn recheck_on_reload(
    mut config: watch::Receiver<Arc<ServerTls>>,
    chain: Vec<CertificateDer<'static>>,
    info: Arc<ConnInfo>,
    mut closed: oneshot::Receiver<()>,
) {
    let Some((leaf, intermediates)) = chain.split_first() else { return };
    loop {
        tokio::select! {
            _ = &mut closed => return,
            changed = config.changed() => if changed.is_err() { return },
        }
        let verifier = config.borrow_and_update().verifier.clone();
        if let Err(e) = verifier.verify_client_cert(leaf, intermediates, UnixTime::now()) {
            let reason = refusal_reason(&e);
            tracing::warn!(
                peer.addr = ?info.remote,
                peer.principal = info.identity.as_ref().map(|i| i.principal()).unwrap_or_default(),
                reason = %reason,
                "reloaded TLS material refuses an open connection's certificate; closing the connection"
            );
            info.refuse(reason);
            return;
        }
    }
}
