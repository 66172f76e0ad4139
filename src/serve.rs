//! Serving a set of gRPC services over mutual TLS: the one function both `aerodb control` and
//! `aerodb node` use.
//!
//! Every server gets the same stack: the TLS accept loop (handshake timeout, handshake and
//! connection limits per address and per identity, idle timeout, identity per connection), HTTP/2
//! limits per connection (concurrent streams, header list size), the authorization layer in front
//! of every route (default deny), and `grpc.health.v1` plus reflection v1 and v1alpha for every
//! authenticated role. The limits are [`ServerLimits`]; see [`crate::tls::limits`].

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic::transport::Server;

use tonic_health::ServingStatus;
use tonic_health::server::{HealthReporter, HealthService};

use crate::edge::{EdgeLayer, EdgeSink};
use crate::metrics::layer::RpcLayer;
use crate::metrics::{ConnectionMetrics, Metrics, RpcMetrics};
use crate::tls::accept::{HandshakeObserver, ServerLimits, tls_incoming};
use crate::tls::authz::{AuthzLayer, DenialSink, Permit};
use crate::tls::identity::Identity;
use crate::tls::material::ServerTls;
use crate::tls::verifier::HandshakeFailure;

/// The encoded descriptor set of `google/rpc/error_details.proto` and its imports (build.rs),
/// served by reflection so that tools can decode our errors' details.
pub const GOOGLE_RPC_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/google_rpc_descriptor.bin"));

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection service could not be built from the descriptor set.
    #[error("reflection: {0}")]
    Reflection(String),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// What a server reports about itself: metrics of its calls and connections, and the health of
/// each service it mounts. Cheap to clone; every clone reports into the same place.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// Calls by service, method and code, with latency.
    pub rpc: RpcMetrics,
    /// Open connections per role, refused handshakes by reason.
    pub connections: ConnectionMetrics,
    /// `grpc.health.v1` status per service name.
    pub health: HealthReporter,
}

impl Telemetry {
    /// Telemetry whose metrics are registered in `metrics`, with every service of `served` (and
    /// the server as a whole, `""`) reported SERVING until someone says otherwise.
    pub async fn new(metrics: &Metrics, served: &[&str]) -> Self {
        let health = HealthReporter::new();
        for s in served.iter().copied().chain([""]) {
            health.set_service_status(s, ServingStatus::Serving).await;
        }
        Self { rpc: metrics.rpc.clone(), connections: metrics.connections.clone(), health }
    }
}

/// A listener and the TLS it serves with.
pub struct Listener {
    /// The bound socket.
    pub listener: TcpListener,
    /// The current server configuration (reloadable).
    pub tls: watch::Receiver<Arc<ServerTls>>,
    /// Identities must belong to this trust domain.
    pub trust_domain: String,
    /// Handshake, connection and HTTP/2 limits.
    pub limits: ServerLimits,
    /// Where its metrics and health go.
    pub telemetry: Telemetry,
}

/// Adds health (answering from `health`) and reflection v1 and v1alpha to `routes`. Reflection
/// lists exactly the services this server mounts (`served`, health, reflection), and resolves the
/// `google.rpc` error detail types ([`GOOGLE_RPC_DESCRIPTOR_SET`]) as well.
pub fn with_standard_services(routes: Routes, served: &[&str], health: &HealthReporter) -> Result<Routes, ServeError> {
    let health =
        tonic_health::pb::health_server::HealthServer::new(HealthService::from_health_reporter(health.clone()));
    let builder = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // The error detail types our errors carry (google.rpc.ErrorInfo, BadRequest, …), with
            // the well-known types they import: reflection-driven tools print them decoded.
            .register_encoded_file_descriptor_set(GOOGLE_RPC_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        for s in served {
            b = b.with_service_name(*s);
        }
        b
    };
    let v1 = builder().build_v1().map_err(|e| ServeError::Reflection(e.to_string()))?;
    let v1alpha = builder().build_v1alpha().map_err(|e| ServeError::Reflection(e.to_string()))?;
    Ok(routes.add_service(health).add_service(v1).add_service(v1alpha))
}

/// Serves `routes` on `listener` until `shutdown` completes. Denials go to `denials` (their
/// ErrorInfo in `domain`), refused handshakes to `handshakes`.
pub async fn serve(
    listener: Listener,
    routes: Routes,
    served: &'static [&'static str],
    domain: &'static str,
    denials: Arc<dyn DenialSink>,
    handshakes: Arc<dyn HandshakeObserver>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let telemetry = listener.telemetry;
    let routes = with_standard_services(routes, served, &telemetry.health)?;
    let limits = listener.limits;
    let handshakes = Arc::new(Counted { inner: handshakes, metrics: telemetry.connections.clone() });
    let incoming = tls_incoming(listener.listener, listener.tls, listener.trust_domain, limits, handshakes);
    // Log lines of the connections and calls belong to the span `serve` runs in (a node's names
    // the node): tonic runs each connection on a task of its own.
    let span = tracing::Span::current();
    let codes =
        if domain == crate::wire::CONTROL_DOMAIN { crate::edge::CONTROL_CODES } else { crate::edge::KERNEL_CODES };
    let edge = EdgeLayer::new(Arc::new(EdgeToDenials(denials.clone())), domain, codes);
    Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_max_header_list_size(limits.max_header_list_size_bytes)
        .trace_fn(move |_| span.clone())
        .layer(RpcLayer::new(telemetry.rpc))
        .layer(AuthzLayer::new(denials, domain, served))
        .layer(edge)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

/// Routes the edge's refusals to the server's denial sink (one sink per server records both).
struct EdgeToDenials(Arc<dyn DenialSink>);

impl EdgeSink for EdgeToDenials {
    fn refused(
        &self,
        permit: Option<Permit>,
        method: String,
        error: crate::wire::WireError,
    ) -> futures::future::BoxFuture<'static, ()> {
        self.0.refused_at_edge(permit, method, error)
    }
}

/// Counts refused handshakes and open connections, then hands each refusal to the server's own
/// observer.
struct Counted {
    inner: Arc<dyn HandshakeObserver>,
    metrics: ConnectionMetrics,
}

impl HandshakeObserver for Counted {
    fn rejected(&self, peer: std::net::SocketAddr, failure: HandshakeFailure) {
        self.metrics.refused(&failure.reason);
        self.inner.rejected(peer, failure);
    }

    fn admitted(&self, identity: Option<&Identity>) -> Option<Box<dyn std::any::Any + Send + Sync>> {
        let role = identity.map(|i| i.role.as_str()).unwrap_or("none");
        Some(Box::new(self.metrics.opened(role)))
    }
}
