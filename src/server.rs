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

use crate::edge::{EdgeLayer, EdgeSink};
use crate::tls::authz::{AuthzLayer, DenialSink, Permit};
use crate::tls::material::ServerTls;
use crate::tls::server::{HandshakeObserver, ServerLimits, tls_incoming};

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
}

/// Adds health (reporting SERVING) and reflection v1 and v1alpha to `routes`. Reflection lists
/// exactly the services this server mounts (`served`, health, reflection).
pub fn with_standard_services(routes: Routes, served: &[&str]) -> Result<Routes, ServeError> {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let builder = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
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
    let routes = with_standard_services(routes, served)?;
    let limits = listener.limits;
    let incoming = tls_incoming(listener.listener, listener.tls, listener.trust_domain, limits, handshakes);
    let codes =
        if domain == crate::wire::CONTROL_DOMAIN { crate::edge::CONTROL_CODES } else { crate::edge::KERNEL_CODES };
    let edge = EdgeLayer::new(Arc::new(EdgeToDenials(denials.clone())), domain, codes);
    Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_max_header_list_size(limits.max_header_list_size_bytes)
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
