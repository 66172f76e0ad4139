//! `aerodb control`: open the audit log, connect to the kernels, serve until a shutdown signal,
//! then seal the audit log with a signed checkpoint.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tracing::Instrument;

use super::access::{AuditDenials, AuditHandshakes};
use super::adapter::Adapter;
use super::api::actor::ActorService;
use super::api::auditor::AuditorService;
use super::api::observer::ObserverService;
use super::budget::RecordBudget;
use super::config::ControlConfig;
use super::context::Ctx;
use super::flow::PendingStore;
use super::rounds::Rounds;
use crate::audit::log::{AuditLog, AuditOptions};
use crate::clock::SharedClock;
use crate::proto::control as pb;
use crate::serve::{Listener, Telemetry, serve};
use crate::tls::identity::{Role, server_identity_from_der};
use crate::tls::material::{client_tls, load_certs, server_tls, watched_files};
use crate::tls::reload::{DEFAULT_POLL_INTERVAL, reloadable};

/// Runs a control plane until `shutdown` becomes true. Writes the bound address to
/// `ADDRESS` beside the audit directory once listening. Refuses to start when the audit
/// directory (or its `quarantine/`) is accessible by group or others, and when its server
/// certificate does not name a control plane (`spiffe://<td>/role/controlplane/id/<name>`, the
/// identity aerodbctl checks). Every log line it causes is inside a span `control` with the
/// field `control.instance`. With `metrics_address`, serves Prometheus metrics there.
pub async fn run(cfg: ControlConfig, clock: SharedClock, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let span = tracing::info_span!("control", control.instance = %cfg.instance_id);
    run_control(cfg, clock, shutdown).instrument(span).await
}

/// Checks that the control plane's server certificate names a control plane; returns the
/// identity (`controlplane/<name>`).
pub fn check_server_identity(cfg: &ControlConfig) -> anyhow::Result<String> {
    let sp = cfg.tls.server_paths();
    let leaf = load_certs(&sp.cert)?;
    match server_identity_from_der(leaf.first().map(|c| c.as_ref()).unwrap_or_default(), &cfg.tls.trust_domain) {
        Ok(id) if id.role == Role::ControlPlane => Ok(id.principal()),
        Ok(id) => anyhow::bail!(
            "the control plane's server certificate {} names {}, not a control plane (role controlplane): clients \
             would refuse it",
            sp.cert.display(),
            id.principal()
        ),
        Err(e) => anyhow::bail!(
            "the control plane's server certificate {} carries no server identity: {e}",
            sp.cert.display()
        ),
    }
}

async fn run_control(cfg: ControlConfig, clock: SharedClock, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let identity = check_server_identity(&cfg)?;
    tracing::info!(server.identity = %identity, "control plane server identity");
    let sp = cfg.tls.server_paths();
    let kp = cfg.tls.kernel_paths();
    let td = cfg.tls.trust_domain.clone();
    let sp2 = sp.clone();
    let server_tls =
        reloadable("control server", watched_files(&sp), move || server_tls(&sp2, &td), DEFAULT_POLL_INTERVAL)?;
    let kp2 = kp.clone();
    let td = cfg.tls.trust_domain.clone();
    let kernel_tls =
        reloadable("control kernel client", watched_files(&kp), move || client_tls(&kp2, &td), DEFAULT_POLL_INTERVAL)?;
    // Data at rest is private: refuse to record the trail in a directory others can read.
    for dir in [cfg.audit_dir.clone(), cfg.audit_dir.join("quarantine")] {
        crate::fsutil::check_private_dir(&dir)?;
    }
    let audit = AuditLog::open(AuditOptions {
        dir: cfg.audit_dir.clone(),
        instance_id: cfg.instance_id.clone(),
        checkpoint_every: cfg.audit.checkpoint_every,
        checkpoint_interval_ms: cfg.audit.checkpoint_interval_seconds * 1000,
        segment_bytes_max: crate::audit::log::SEGMENT_BYTES_MAX,
        clock: clock.clone(),
    })?;
    let adapter = Adapter::new(&cfg.nodes, kernel_tls, cfg.read_timeout(), cfg.execute_timeout())?;
    let pending = PendingStore::new(clock.clone(), cfg.flow.confirmation_ttl_seconds * 1000, cfg.flow.max_pending);
    let budget = RecordBudget::new(audit.clone(), clock.clone(), cfg.audit.records_per_identity_per_second);
    let ctx = Arc::new(Ctx {
        cluster_id: cfg.cluster_id.clone(),
        instance_id: cfg.instance_id.clone(),
        rounds: Rounds::new(adapter.clone()),
        adapter,
        audit: audit.clone(),
        budget: budget.clone(),
        pending,
        clock: clock.clone(),
    });
    let listener = TcpListener::bind(&cfg.listen).await?;
    let local = listener.local_addr()?;
    if let Some(parent) = cfg.audit_dir.parent() {
        crate::fsutil::write_atomic(&parent.join("ADDRESS"), local.to_string().as_bytes(), crate::fsutil::FILE_MODE)?;
    }
    tracing::info!(instance = %cfg.instance_id, address = %local, "control plane listening");

    let handshakes = Arc::new(AuditHandshakes::new(
        audit.clone(),
        clock.clone(),
        cfg.audit.handshake_records_per_minute,
        cfg.audit.handshake_records_per_minute_total,
    ));
    let flusher = handshakes.clone();
    let mut flush_shutdown = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(10)) => flusher.flush(),
                _ = flush_shutdown.changed() => return,
            }
        }
    });
    let mut metrics = crate::metrics::Metrics::new();
    metrics.register_audit(audit.metrics());
    let telemetry = Telemetry::new(&metrics, crate::tls::authz::CONTROL_SERVICES).await;
    if let Some(address) = &cfg.metrics_address {
        let l = crate::metrics::bind(address).await?;
        tokio::spawn(
            crate::metrics::serve(l, metrics.into_registry(), crate::shutdown::wait(shutdown.clone()))
                .in_current_span(),
        );
    }
    tokio::spawn(report_actor_health(audit.clone(), telemetry.health.clone(), shutdown.clone()).in_current_span());
    let routes = Routes::new(pb::observer_server::ObserverServer::new(ObserverService { ctx: ctx.clone() }))
        .add_service(pb::actor_server::ActorServer::new(ActorService { ctx: ctx.clone() }))
        .add_service(pb::auditor_server::AuditorServer::new(AuditorService { ctx: ctx.clone() }));
    serve(
        Listener {
            listener,
            tls: server_tls,
            trust_domain: cfg.tls.trust_domain.clone(),
            limits: cfg.connections.server_limits(),
            telemetry,
        },
        routes,
        crate::tls::authz::CONTROL_SERVICES,
        crate::wire::CONTROL_DOMAIN,
        Arc::new(AuditDenials { budget }),
        handshakes,
        crate::shutdown::wait(shutdown),
    )
    .await?;
    match audit.checkpoint().await {
        Some(cp) => tracing::info!(tree_size = cp.size, "audit log sealed with a signed checkpoint"),
        None => tracing::warn!("no checkpoint written at shutdown (empty or unwritable audit log)"),
    }
    tracing::info!(instance = %cfg.instance_id, "control plane stopped");
    Ok(())
}

/// The health of the Actor service: NOT_SERVING while the audit log cannot be written (every
/// mutation is refused), SERVING again once its `audit_gap` record is durable.
async fn report_actor_health(
    audit: AuditLog,
    health: tonic_health::server::HealthReporter,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut writable = audit.health_watch();
    loop {
        let status = if *writable.borrow_and_update() {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        health.set_service_status("aerodb.control.v1.Actor", status).await;
        tokio::select! {
            changed = writable.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}
