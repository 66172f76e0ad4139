//! The TLS accept loop shared by `aerodb control` and `aerodb node`: from a TCP connection to an
//! authenticated stream that carries its caller's identity.
//!
//! TCP connections are accepted here, each handshake runs under a bounded timeout with the
//! server configuration current at that moment (configurations reload without restart, see
//! [`super::reload`]), and every completed connection carries its caller's [`Identity`] in a
//! [`ConnInfo`] that tonic places in each request's extensions. A failed handshake is reported to
//! a [`HandshakeObserver`] (the control plane audits it; a node logs it) and never reaches a
//! service. What one address may hold before authentication, and one identity after it, is
//! bounded (see [`super::limits`]): a connection over a bound is closed and reported, and a
//! fresh client always finds a place.
//!
//! An established connection keeps its identity only while the current material would still
//! accept its certificate: each connection checks its peer's chain again, with the verifier of
//! every configuration that replaces the one it was made with, and a connection whose
//! certificate is refused then (revoked since, or its CA no longer trusted) is marked in its
//! [`ConnInfo`] and closed: its client reconnects with the material it holds now (a rotated
//! certificate) or is refused at that handshake, and any call that raced the close is denied by
//! authorization. The same happens when the certificate's notAfter passes (servers never resume
//! a TLS session, so the reconnection is a full handshake that refuses the expired certificate),
//! and a connection that has received nothing for the idle timeout is closed.

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
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use super::identity::{Identity, IdentityError, fingerprint, identity_from_der, not_after_unix_s};
use super::limits::{ConnectionSlot, Established, InFlightByPeer, PeerHandshake};
pub use super::limits::{
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HANDSHAKES_PER_PEER, ServerLimits,
};
use super::material::ServerTls;
use super::verifier::{HandshakeFailure, refusal_reason};
use crate::clock::{SharedClock, SystemClock};

/// Receives every handshake the listener refused.
pub trait HandshakeObserver: Send + Sync {
    /// Called once per refused connection, from the connection's own task.
    fn rejected(&self, peer: SocketAddr, failure: HandshakeFailure);

    /// Called once per admitted (authenticated, within limits) connection; whatever it returns
    /// is dropped when the connection closes (a metric's hold on an open connection). Nothing by
    /// default.
    fn admitted(&self, _identity: Option<&Identity>) -> Option<Box<dyn std::any::Any + Send + Sync>> {
        None
    }
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
    /// The leaf certificate's notAfter, in seconds since the Unix epoch (`None` when no
    /// certificate parsed). Past it the connection is closed and every call on it is denied.
    pub not_after_unix_s: Option<i64>,
    /// Set (once) when reloaded TLS material refuses the certificate this connection was made
    /// with, or the certificate has expired: why it is no longer accepted. From then on the
    /// identity carries no authority, and the connection is closed (its client reconnects with
    /// the material it holds now).
    pub no_longer_accepted: std::sync::OnceLock<String>,
    /// Set (once) when the connection is closed for a reason other than its authority (it was
    /// idle for the idle timeout).
    closing: std::sync::OnceLock<String>,
    /// Wakes the connection's I/O so that a refusal closes it even while it is idle.
    closer: futures::task::AtomicWaker,
    /// Origin of `last_read_ms` (tokio's monotonic clock, the one every transport timer here
    /// uses).
    origin: tokio::time::Instant,
    /// Milliseconds after `origin` at which the connection last received bytes.
    last_read_ms: AtomicU64,
}

impl ConnInfo {
    /// Facts of a new connection whose leaf certificate expires after `not_after_unix_s`.
    pub fn new(
        remote: Option<SocketAddr>,
        identity: Result<Identity, IdentityError>,
        not_after_unix_s: Option<i64>,
    ) -> Self {
        Self {
            remote,
            identity,
            not_after_unix_s,
            no_longer_accepted: Default::default(),
            closing: Default::default(),
            closer: Default::default(),
            origin: tokio::time::Instant::now(),
            last_read_ms: AtomicU64::new(0),
        }
    }

    /// The certificate's notAfter when it has expired at `now_unix_ms` (a certificate is valid
    /// through its notAfter second, as webpki judges it at the handshake), else `None`.
    pub fn expired_at(&self, now_unix_ms: u64) -> Option<i64> {
        let not_after = self.not_after_unix_s?;
        let now_s = i64::try_from(now_unix_ms / 1000).unwrap_or(i64::MAX);
        (now_s > not_after).then_some(not_after)
    }

    /// Records why the connection's certificate is no longer accepted and closes the connection.
    fn refuse(&self, reason: String) {
        let _ = self.no_longer_accepted.set(reason);
        self.closer.wake();
    }

    /// Closes the connection for a reason other than its authority.
    fn close(&self, reason: String) {
        let _ = self.closing.set(reason);
        self.closer.wake();
    }

    /// Records that bytes were received now.
    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_read_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection becomes idle for `idle_timeout` if nothing more arrives.
    fn idle_deadline(&self, idle_timeout: Duration) -> tokio::time::Instant {
        self.origin + Duration::from_millis(self.last_read_ms.load(Ordering::Relaxed)) + idle_timeout
    }

    /// Ready with an error once the connection must close; registers the task to be woken.
    fn poll_closed(&self, cx: &mut Context<'_>) -> Option<io::Error> {
        self.closer.register(cx.waker());
        if let Some(why) = self.no_longer_accepted.get() {
            return Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("certificate no longer accepted: {why}"),
            ));
        }
        self.closing.get().map(|why| io::Error::new(io::ErrorKind::ConnectionAborted, why.clone()))
    }
}

/// A TLS stream whose handshake completed, with the caller's identity attached.
pub struct AuthenticatedStream {
    inner: TlsStream<TcpStream>,
    info: Arc<ConnInfo>,
    /// The connection's place among the listener's established connections.
    _slot: ConnectionSlot,
    /// Dropped with the connection, which ends its watch task.
    _closed: oneshot::Sender<()>,
    /// What the observer holds for this connection ([`HandshakeObserver::admitted`]).
    _observed: Option<Box<dyn std::any::Any + Send + Sync>>,
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
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.info.touch();
        }
        polled
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
/// current in `config`, admits each authenticated connection under `limits` (see
/// [`super::limits`]), and yields authenticated streams for `serve_with_incoming`. The accept
/// task stops when the returned stream is dropped.
///
/// Certificate expiry is judged by the system's wall clock ([`SystemClock`]), the clock webpki
/// judged the certificate by at the handshake; never by an injected test clock.
pub fn tls_incoming(
    listener: TcpListener,
    config: watch::Receiver<Arc<ServerTls>>,
    trust_domain: String,
    limits: ServerLimits,
    observer: Arc<dyn HandshakeObserver>,
) -> ReceiverStream<Result<AuthenticatedStream, io::Error>> {
    // Completed handshakes wait here for tonic; the bound applies back-pressure to accepting.
    let (tx, rx) = mpsc::channel(64);
    let handshakes = Arc::new(Semaphore::new(limits.max_handshakes));
    let in_flight: InFlightByPeer = Default::default();
    let established = Established::default();
    let clock: SharedClock = SystemClock::shared();
    // Refusal lines belong to the span the server runs in (a node's names the node).
    tokio::spawn(tracing::Instrument::in_current_span(async move {
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
            // The address's share first, so that an address over it never holds a global place.
            let Some(per_peer) = PeerHandshake::enter(&in_flight, peer.ip(), limits.max_handshakes_per_peer) else {
                observer.rejected(
                    peer,
                    HandshakeFailure::new(
                        format!("{} handshakes already in flight from {}", limits.max_handshakes_per_peer, peer.ip()),
                        None,
                    ),
                );
                continue;
            };
            let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
                observer.rejected(
                    peer,
                    HandshakeFailure::new(
                        format!("handshake limit reached (max_handshakes = {})", limits.max_handshakes),
                        None,
                    ),
                );
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(config.borrow().config.clone());
            let recheck = config.clone();
            let tx = tx.clone();
            let observer = observer.clone();
            let trust_domain = trust_domain.clone();
            let established = established.clone();
            let clock = clock.clone();
            tokio::spawn(tracing::Instrument::in_current_span(async move {
                let accepted = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await;
                drop(per_peer);
                drop(handshake);
                let tls = match accepted {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        return observer.rejected(peer, HandshakeFailure::from_io_error(&e));
                    }
                    Err(_) => {
                        return observer.rejected(
                            peer,
                            HandshakeFailure::new(
                                format!("handshake not completed within {} ms", limits.handshake_timeout.as_millis()),
                                None,
                            ),
                        );
                    }
                };
                let chain: Vec<CertificateDer<'static>> =
                    tls.get_ref().1.peer_certificates().map(|c| c.to_vec()).unwrap_or_default();
                let identity = match chain.first() {
                    Some(leaf) => identity_from_der(leaf.as_ref(), &trust_domain),
                    None => Err(IdentityError::Unparseable("no client certificate".into())),
                };
                let not_after = chain.first().and_then(|leaf| not_after_unix_s(leaf.as_ref()));
                // The verifier admits only certificates with an identity, so "-" is defence in
                // depth: such a connection is denied every call anyway.
                let key = identity.as_ref().map(|i| i.principal()).unwrap_or_else(|_| "-".into());
                let slot = match established.admit(&key, &limits) {
                    Ok(slot) => slot,
                    Err(reason) => {
                        // Dropping `tls` closes the connection; its client sees its first call fail.
                        let fp = chain.first().map(|leaf| fingerprint(leaf.as_ref()));
                        return observer.rejected(peer, HandshakeFailure::new(reason, fp));
                    }
                };
                let observed = observer.admitted(identity.as_ref().ok());
                let info = Arc::new(ConnInfo::new(Some(peer), identity, not_after));
                let (closed_tx, closed_rx) = oneshot::channel();
                tokio::spawn(tracing::Instrument::in_current_span(watch_connection(
                    recheck,
                    chain,
                    info.clone(),
                    closed_rx,
                    clock,
                    limits.idle_timeout,
                )));
                let stream =
                    AuthenticatedStream { inner: tls, info, _slot: slot, _closed: closed_tx, _observed: observed };
                let _ = tx.send(Ok(stream)).await;
            }));
        }
    }));
    ReceiverStream::new(rx)
}

/// Milliseconds from `now_unix_ms` until a certificate valid through `not_after_unix_s` has
/// expired (zero when it already has).
fn until_expiry(now_unix_ms: u64, not_after_unix_s: i64) -> Duration {
    let expires_ms = not_after_unix_s.saturating_add(1).saturating_mul(1000);
    let now_ms = i64::try_from(now_unix_ms).unwrap_or(i64::MAX);
    Duration::from_millis(u64::try_from(expires_ms.saturating_sub(now_ms)).unwrap_or(0))
}

/// `not_after_unix_s` as an RFC 3339 time, for reasons and logs.
pub fn format_not_after(not_after_unix_s: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(not_after_unix_s)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{not_after_unix_s} s after the Unix epoch"))
}

/// Watches one connection until it closes, and closes it when:
///
/// - a configuration that replaces the one it was made with refuses its certificate chain (a
///   clone of the accept loop's receiver sees every change since the listener started, so none
///   is missed): revoked since, or its CA no longer trusted;
/// - its certificate's notAfter has passed (re-checked against the wall clock on waking, since
///   the timer runs on the monotonic clock);
/// - it has received no bytes for `idle_timeout`.
///
/// The first of these is recorded in `info` and ends the task.
async fn watch_connection(
    mut config: watch::Receiver<Arc<ServerTls>>,
    chain: Vec<CertificateDer<'static>>,
    info: Arc<ConnInfo>,
    mut closed: oneshot::Receiver<()>,
    clock: SharedClock,
    idle_timeout: Duration,
) {
    let mut reloads_open = true;
    loop {
        let expiry = info.not_after_unix_s.map(|na| until_expiry(clock.now_unix_ms(), na));
        tokio::select! {
            _ = &mut closed => return,
            changed = config.changed(), if reloads_open => {
                if changed.is_err() {
                    reloads_open = false;
                    continue;
                }
                let verifier = config.borrow_and_update().verifier.clone();
                let Some((leaf, intermediates)) = chain.split_first() else { continue };
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
            _ = tokio::time::sleep(expiry.unwrap_or_default()), if expiry.is_some() => {
                if let Some(not_after) = info.expired_at(clock.now_unix_ms()) {
                    let reason = format!("certificate expired at {} (notAfter)", format_not_after(not_after));
                    tracing::warn!(
                        peer.addr = ?info.remote,
                        peer.principal = info.identity.as_ref().map(|i| i.principal()).unwrap_or_default(),
                        reason = %reason,
                        "an open connection's certificate has expired; closing the connection"
                    );
                    info.refuse(reason);
                    return;
                }
            }
            _ = tokio::time::sleep_until(info.idle_deadline(idle_timeout)) => {
                if tokio::time::Instant::now() >= info.idle_deadline(idle_timeout) {
                    let reason = format!("no bytes received for {} ms (idle timeout)", idle_timeout.as_millis());
                    tracing::info!(
                        peer.addr = ?info.remote,
                        peer.principal = info.identity.as_ref().map(|i| i.principal()).unwrap_or_default(),
                        reason = %reason,
                        "closing an idle connection"
                    );
                    info.close(reason);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_after_the_not_after_second() {
        assert_eq!(until_expiry(9_000, 10), Duration::from_millis(2_000));
        assert_eq!(until_expiry(10_999, 10), Duration::from_millis(1));
        assert_eq!(until_expiry(11_000, 10), Duration::ZERO);
        assert_eq!(until_expiry(50_000, 10), Duration::ZERO);
        let info = ConnInfo::new(None, Err(IdentityError::NoUriSan), Some(10));
        assert_eq!(info.expired_at(10_999), None);
        assert_eq!(info.expired_at(11_000), Some(10));
        assert_eq!(ConnInfo::new(None, Err(IdentityError::NoUriSan), None).expired_at(u64::MAX), None);
    }

    #[test]
    fn not_after_is_written_as_rfc3339() {
        assert_eq!(format_not_after(0), "1970-01-01T00:00:00Z");
    }
}
