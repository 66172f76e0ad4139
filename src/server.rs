//! Serving a set of gRPC services over mutual TLS: the one function both `aerodb control` and
//! `aerodb node` use.
//!
//! Every server gets the same stack: the TLS accept loop (handshake timeout, connection limit,
//! identity per connection), the authorization layer in front of every route (default deny), and
//! `grpc.health.v1` plus reflection v1 and v1alpha for every authenticated role.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic::transport::Server;

use crate::tls::authz::{AuthzLayer, DenialSink};
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
    /// Handshake and connection limits.
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
    let incoming = tls_incoming(listener.listener, listener.tls, listener.trust_domain, listener.limits, handshakes);
    Server::builder()
        .layer(AuthzLayer::new(denials, domain, served))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
