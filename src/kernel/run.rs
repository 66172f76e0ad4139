//! `aerodb node run`: open the node, start its loops, serve until a shutdown signal.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tracing::Instrument;

use super::config::NodeConfig;
use super::node::Node;
use super::service::{DataService, KernelService, ReplicationService};
use crate::proto::kernel as pb;
use crate::serve::{Listener, Telemetry, serve};
use crate::tls::accept::LogHandshakes;
use crate::tls::authz::LogDenials;
use crate::tls::identity::{Role, Usage, identity_for};
use crate::tls::material::{TlsError, client_tls, load_certs, server_tls, watched_files};
use crate::tls::reload::{DEFAULT_POLL_INTERVAL, reloadable};

/// Bytes a replication message may have (a Pull carries up to ~4 MiB of entries).
pub(crate) const REPLICATION_MESSAGE_BYTES_MAX: usize = 16 << 20;

/// Why a node refuses to start with its certificates: each must name this node.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OwnIdentityError {
    /// A certificate could not be read.
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// A certificate names no identity usable for its purpose.
    #[error("node {node_id} refuses to start: its {purpose} certificate {path} carries no node identity: {why}")]
    NoIdentity {
        /// The configured node id.
        node_id: String,
        /// `server` or `peer-client`.
        purpose: &'static str,
        /// The certificate file.
        path: std::path::PathBuf,
        /// The identity rule it breaks.
        why: String,
    },
    /// A certificate names another identity than `node/<node_id>`.
    #[error(
        "node {node_id} refuses to start: its {purpose} certificate {path} names {found}, not node/{node_id}; each \
         node runs with its own certificate (spiffe://<trust-domain>/role/node/id/<node_id>, `aerodb certs init \
         --nodes` or `aerodb certs issue --role node --name <node_id>`)"
    )]
    Mismatch {
        /// The configured node id.
        node_id: String,
        /// `server` or `peer-client`.
        purpose: &'static str,
        /// The certificate file.
        path: std::path::PathBuf,
        /// The identity the certificate names (`role/name`).
        found: String,
    },
}

/// Checks that the node's server certificate and its peer-client certificate both name
/// `node/<node_id>` (serverAuth and clientAuth respectively): a node serving or calling under
/// another node's identity would be refused by its peers (or worse, believed).
pub(crate) fn check_own_identity(cfg: &NodeConfig) -> Result<(), OwnIdentityError> {
    for (purpose, path, usage) in
        [("server", &cfg.tls.server_cert, Usage::Server), ("peer-client", &cfg.tls.node_cert, Usage::Client)]
    {
        let certs = load_certs(path)?;
        let leaf = certs.first().map(|c| c.as_ref()).unwrap_or_default();
        let identity = identity_for(leaf, &cfg.tls.trust_domain, usage).map_err(|e| OwnIdentityError::NoIdentity {
            node_id: cfg.node_id.clone(),
            purpose,
            path: path.clone(),
            why: e.to_string(),
        })?;
        if identity.role != Role::Node || identity.name != cfg.node_id {
            return Err(OwnIdentityError::Mismatch {
                node_id: cfg.node_id.clone(),
                purpose,
                path: path.clone(),
                found: identity.principal(),
            });
        }
    }
    Ok(())
}

/// Runs a node until `shutdown` becomes true. Writes the bound address to
/// `<data_dir>/ADDRESS` once listening. Refuses to start when its certificates do not name
/// `node/<node_id>` ([`check_own_identity`]). Every log line it causes is inside a span `node`
/// with the field `node.id`. With `metrics_address`, serves Prometheus metrics there.
pub(crate) async fn run(cfg: NodeConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let span = tracing::info_span!("node", node.id = %cfg.node_id);
    run_node(cfg, shutdown).instrument(span).await
}

async fn run_node(cfg: NodeConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    check_own_identity(&cfg)?;
    let server_paths = cfg.tls.server_paths();
    let client_paths = cfg.tls.client_paths();
    let td = cfg.tls.trust_domain.clone();
    let sp = server_paths.clone();
    let server_tls =
        reloadable("node server", watched_files(&server_paths), move || server_tls(&sp, &td), DEFAULT_POLL_INTERVAL)?;
    let cp = client_paths.clone();
    let td = cfg.tls.trust_domain.clone();
    let client_tls =
        reloadable("node client", watched_files(&client_paths), move || client_tls(&cp, &td), DEFAULT_POLL_INTERVAL)?;
    let intents = crate::kernel::signed::IntentVerifier::new(
        server_tls.clone(),
        cfg.tls.trust_domain.clone(),
        crate::clock::SystemClock::shared(),
    );
    let node = Node::open(cfg.clone(), client_tls, intents).await?;
    let listener = TcpListener::bind(&cfg.listen).await?;
    let local = listener.local_addr()?;
    crate::fsutil::write_atomic(&cfg.data_dir.join("ADDRESS"), local.to_string().as_bytes(), crate::fsutil::FILE_MODE)?;
    tracing::info!(node = %cfg.node_id, address = %local, "node listening");

    tokio::spawn(node.clone().apply_loop().in_current_span());
    tokio::spawn(node.clone().durable_loop().in_current_span());
    tokio::spawn(node.clone().status_loop(shutdown.clone()).in_current_span());
    tokio::spawn(node.clone().follower_loop(shutdown.clone()).in_current_span());
    tokio::spawn(node.clone().lifecycle_loop(shutdown.clone()).in_current_span());

    let mut metrics = crate::metrics::Metrics::new();
    metrics.register_wal(node.wal.metrics());
    metrics.register_collector(Box::new(crate::metrics::node::NodeCollector(node.clone())));
    let telemetry = Telemetry::new(&metrics, crate::tls::authz::NODE_SERVICES).await;
    if let Some(address) = &cfg.metrics_address {
        let l = crate::metrics::bind(address).await?;
        tokio::spawn(
            crate::metrics::serve(l, metrics.into_registry(), crate::shutdown::wait(shutdown.clone()))
                .in_current_span(),
        );
    }
    tokio::spawn(report_data_health(node.clone(), telemetry.health.clone(), shutdown.clone()).in_current_span());

    let routes = Routes::new(pb::kernel_server::KernelServer::new(KernelService { node: node.clone() }))
        .add_service(
            pb::replication_server::ReplicationServer::new(ReplicationService { node: node.clone() })
                .max_decoding_message_size(REPLICATION_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(REPLICATION_MESSAGE_BYTES_MAX),
        )
        .add_service(pb::data_server::DataServer::new(DataService { node: node.clone() }));
    serve(
        Listener {
            listener,
            tls: server_tls,
            trust_domain: cfg.tls.trust_domain.clone(),
            limits: cfg.connections.server_limits(),
            telemetry,
        },
        routes,
        crate::tls::authz::NODE_SERVICES,
        crate::wire::KERNEL_DOMAIN,
        Arc::new(LogDenials),
        Arc::new(LogHandshakes::default()),
        crate::shutdown::wait(shutdown),
    )
    .await?;
    tracing::info!(node = %cfg.node_id, "node stopped");
    Ok(())
}

/// The health of the Data service: NOT_SERVING while the node is halted (it takes no reads or
/// writes until an operator demotes it), SERVING otherwise. Re-read whenever the ledger gains a
/// record (a halt is one).
async fn report_data_health(
    node: Arc<Node>,
    health: tonic_health::server::HealthReporter,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut authority = node.authority_watch();
    let mut last = None;
    loop {
        let halted = node.status().role == pb::Role::Halted as i32;
        if last != Some(halted) {
            let status =
                if halted { tonic_health::ServingStatus::NotServing } else { tonic_health::ServingStatus::Serving };
            health.set_service_status("aerodb.kernel.v1.Data", status).await;
            last = Some(halted);
        }
        tokio::select! {
            changed = authority.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}
