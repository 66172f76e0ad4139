//! `aerodb node run`: open the node, start its loops, serve until a shutdown signal.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;

use super::config::NodeConfig;
use super::node::Node;
use super::service::{DataService, KernelService, ReplicationService};
use crate::proto::kernel as pb;
use crate::server::{Listener, serve};
use crate::tls::authz::LogDenials;
use crate::tls::material::{client_config, server_tls, watched_files};
use crate::tls::reload::{DEFAULT_POLL_INTERVAL, reloadable};
use crate::tls::server::LogHandshakes;

/// Bytes a replication message may have (a Pull carries up to ~4 MiB of entries).
pub const REPLICATION_MESSAGE_BYTES_MAX: usize = 16 << 20;

/// Runs a node until `shutdown` becomes true. Writes the bound address to
/// `<data_dir>/ADDRESS` once listening.
pub async fn run(cfg: NodeConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let server_paths = cfg.tls.server_paths();
    let client_paths = cfg.tls.client_paths();
    let td = cfg.tls.trust_domain.clone();
    let sp = server_paths.clone();
    let server_tls =
        reloadable("node server", watched_files(&server_paths), move || server_tls(&sp, &td), DEFAULT_POLL_INTERVAL)?;
    let cp = client_paths.clone();
    let client_tls =
        reloadable("node client", watched_files(&client_paths), move || client_config(&cp), DEFAULT_POLL_INTERVAL)?;
    let node = Node::open(cfg.clone(), client_tls).await?;
    let listener = TcpListener::bind(&cfg.listen).await?;
    let local = listener.local_addr()?;
    crate::fsutil::write_atomic(&cfg.data_dir.join("ADDRESS"), local.to_string().as_bytes(), crate::fsutil::FILE_MODE)?;
    tracing::info!(node = %cfg.node_id, address = %local, "node listening");

    tokio::spawn(node.clone().apply_loop());
    tokio::spawn(node.clone().durable_loop());
    tokio::spawn(node.clone().status_loop(shutdown.clone()));
    tokio::spawn(node.clone().follower_loop(shutdown.clone()));

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
