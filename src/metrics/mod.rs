//! Prometheus metrics: what each process counts, and the plain-HTTP `/metrics` endpoint that
//! serves them (the node's and the control plane's `metrics_address`).
//!
//! Every metric is a handle of the `prometheus-client` crate: an atomic counter, a gauge, or a
//! histogram behind a short in-memory lock. Recording one never does I/O, never waits on
//! anything but that lock, and cannot fail, so a metric never blocks or fails a request (P7-O1).
//! A handle made before it is registered counts all the same (a [`Registry`] registers clones),
//! so the audit writer and the WAL own theirs and the process registers them once it runs.
//!
//! Node state (role, epoch, indexes, lag, bytes) is read at scrape time from the node's one
//! consistent snapshot (`crate::kernel::node::Node::observe`): the hot paths do not change.
//!
//! Names follow Prometheus conventions: `aerodb_` prefix, base units (seconds, bytes), counters
//! ending in `_total`. The list is in docs/operator-guide.md ("Metrics").
//!
//! Label values are bounded: RPC labels name only methods of the authorization table and the
//! standard services (anything else is `unknown`), handshake refusals a fixed set of reasons,
//! audit commands the commands of the Actor service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::audit::record::Stage;

pub mod layer;
pub mod node;

/// Buckets of latencies, seconds: 100 µs to about 26 s.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

/// Buckets of batch sizes (records or entries): 1 to 8192.
fn batch_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 14))
}

/// A start time for a latency metric.
///
/// Metrics measure elapsed wall time; no decision is ever made from it, so this is the one
/// place outside [`crate::clock`] that reads the monotonic clock directly (STYLE §12 is about
/// decisions).
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(tokio::time::Instant);

impl Stopwatch {
    /// Starts now.
    pub fn start() -> Self {
        Self(tokio::time::Instant::now())
    }

    /// Seconds since the start.
    pub fn seconds(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// One RPC's labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    service: &'static str,
    method: &'static str,
    code: &'static str,
}

/// One method's labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    service: &'static str,
    method: &'static str,
}

/// The standard services' methods every server mounts.
const STANDARD_METHODS: &[(&str, &str)] = &[
    ("grpc.health.v1.Health", "Check"),
    ("grpc.health.v1.Health", "Watch"),
    ("grpc.reflection.v1.ServerReflection", "ServerReflectionInfo"),
    ("grpc.reflection.v1alpha.ServerReflection", "ServerReflectionInfo"),
];

/// `(service, method)` of a gRPC path when it names a method of the authorization table or a
/// standard service; `("unknown", "unknown")` otherwise, so no caller can grow the label set.
pub fn rpc_labels(path: &str) -> (&'static str, &'static str) {
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return ("unknown", "unknown");
    };
    for rule in crate::tls::authz::TABLE {
        if rule.service == service
            && let Some(m) = rule.methods.iter().find(|m| **m == method)
        {
            return (rule.service, m);
        }
    }
    STANDARD_METHODS.iter().find(|(s, m)| *s == service && *m == method).copied().unwrap_or(("unknown", "unknown"))
}

/// The gRPC status code names, by number (`grpc-status`).
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The name of a `grpc-status` value (`UNKNOWN` for anything unparseable).
pub fn code_name(grpc_status: &[u8]) -> &'static str {
    std::str::from_utf8(grpc_status)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .and_then(|n| CODES.get(n).copied())
        .unwrap_or("UNKNOWN")
}

/// The RPC metrics of one server: calls by service, method and code, and their latency.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    handled: Family<RpcLabels, Counter>,
    latency: Family<MethodLabels, Histogram, fn() -> Histogram>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        Self { handled: Family::default(), latency: Family::new_with_constructor(latency_buckets) }
    }
}

impl RpcMetrics {
    /// Counts one finished call of `path` with status `code` after `seconds`.
    pub fn finished(&self, path: &str, code: &'static str, seconds: f64) {
        let (service, method) = rpc_labels(path);
        self.handled.get_or_create(&RpcLabels { service, method, code }).inc();
        self.latency.get_or_create(&MethodLabels { service, method }).observe(seconds);
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "aerodb_grpc_server_handled",
            "gRPC calls completed, by service, method and status code",
            self.handled.clone(),
        );
        r.register(
            "aerodb_grpc_server_handling_seconds",
            "Time from a call's request headers to its status, by service and method",
            self.latency.clone(),
        );
    }
}

/// A role label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabel {
    role: &'static str,
}

/// A reason label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The connection metrics of one listener: open connections per role, refused handshakes by
/// reason.
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    open: Family<RoleLabel, Gauge>,
    refused: Family<ReasonLabel, Counter>,
}

/// Holds one open connection in [`ConnectionMetrics`]; dropping it (the connection closes) takes
/// it out.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The fixed classes of handshake refusal reasons (the metric label; the log and the audit record
/// keep the full reason).
pub fn refusal_class(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    let classes: &[(&str, &str)] = &[
        ("revoked", "revoked"),
        ("crl", "crl"),
        ("expired", "expired"),
        ("not yet valid", "not_yet_valid"),
        ("unknown issuer", "unknown_ca"),
        ("unknownissuer", "unknown_ca"),
        ("unknown ca", "unknown_ca"),
        ("handshakes already in flight", "limit"),
        ("limit", "limit"),
        ("not completed within", "timeout"),
        ("no client certificate", "no_certificate"),
        ("peer sent no certificates", "no_certificate"),
        ("san", "identity"),
        ("identity", "identity"),
        ("trust domain", "identity"),
    ];
    classes.iter().find(|(needle, _)| r.contains(needle)).map(|(_, class)| *class).unwrap_or("other")
}

impl ConnectionMetrics {
    /// Counts an established connection of `role` until the returned guard is dropped.
    pub fn opened(&self, role: &'static str) -> OpenConnection {
        let g = self.open.get_or_create_owned(&RoleLabel { role });
        g.inc();
        OpenConnection(g)
    }

    /// Counts a refused handshake or connection.
    pub fn refused(&self, reason: &str) {
        self.refused.get_or_create(&ReasonLabel { reason: refusal_class(reason) }).inc();
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "aerodb_connections_open",
            "Established (authenticated) connections, by peer role",
            self.open.clone(),
        );
        r.register(
            "aerodb_tls_handshakes_refused",
            "Connections refused at or right after the TLS handshake, by reason class",
            self.refused.clone(),
        );
    }
}

/// A stage label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

/// An action's labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    command: String,
    stage: &'static str,
    outcome: String,
}

/// A confirmation's labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConfirmationLabels {
    command: String,
    stage: &'static str,
}

/// Commands of the Actor service (the command label of action metrics; anything else is
/// `other`, so the label set stays bounded).
const ACTION_COMMANDS: &[&str] = &[
    "run_diagnostics",
    "request_promotion",
    "request_demotion",
    "force_promotion",
    "confirm_action",
    "decline_action",
];

/// The audit writer's metrics. Made by [`crate::audit::log::AuditLog::open`], registered by the
/// control plane.
#[derive(Debug, Clone)]
pub struct AuditMetrics {
    records: Family<StageLabel, Counter>,
    actions: Family<ActionLabels, Counter>,
    confirmations: Family<ConfirmationLabels, Counter>,
    fsyncs: Counter,
    bytes: Counter,
    failed_batches: Counter,
    batch_records: Histogram,
    fsync_seconds: Histogram,
    unavailable: Gauge,
}

impl Default for AuditMetrics {
    fn default() -> Self {
        Self {
            records: Family::default(),
            actions: Family::default(),
            confirmations: Family::default(),
            fsyncs: Counter::default(),
            bytes: Counter::default(),
            failed_batches: Counter::default(),
            batch_records: batch_buckets(),
            fsync_seconds: latency_buckets(),
            unavailable: Gauge::default(),
        }
    }
}

impl AuditMetrics {
    /// A batch of records made durable: `records` of them (stage, command, outcome), `bytes`
    /// written, its fsync taking `fsync_seconds`. Confirmations and actions are counted from the
    /// records, by command and outcome.
    pub fn durable(&self, records: &[(Stage, String, String)], bytes: u64, fsync_seconds: f64) {
        self.fsyncs.inc();
        self.bytes.inc_by(bytes);
        self.batch_records.observe(records.len() as f64);
        self.fsync_seconds.observe(fsync_seconds);
        self.unavailable.set(0);
        for (stage, command, outcome) in records {
            self.records.get_or_create(&StageLabel { stage: stage.as_str() }).inc();
            let command = if ACTION_COMMANDS.contains(&command.as_str()) { command.clone() } else { "other".into() };
            match stage {
                Stage::ConfirmationRequested | Stage::Confirmed | Stage::Declined => {
                    self.confirmations.get_or_create(&ConfirmationLabels { command, stage: stage.as_str() }).inc();
                }
                Stage::Executed | Stage::Replayed | Stage::Rejected | Stage::Failed => {
                    let outcome = match outcome.as_str() {
                        "EXECUTED" | "NOT_EXECUTED" | "UNKNOWN" => outcome.clone(),
                        _ => "other".into(),
                    };
                    self.actions.get_or_create(&ActionLabels { command, stage: stage.as_str(), outcome }).inc();
                }
                Stage::Read | Stage::Requested | Stage::Denied | Stage::HandshakeRejected | Stage::AuditGap => {}
            }
        }
    }

    /// A batch could not be made durable: the log is unavailable until a batch succeeds.
    pub fn failed(&self) {
        self.failed_batches.inc();
        self.unavailable.set(1);
    }

    fn register(&self, r: &mut Registry) {
        r.register("aerodb_audit_records", "Audit records made durable, by stage", self.records.clone());
        r.register("aerodb_audit_fsyncs", "fdatasync calls of the audit log (one per batch)", self.fsyncs.clone());
        r.register("aerodb_audit_written_bytes", "Bytes appended to the audit log", self.bytes.clone());
        r.register(
            "aerodb_audit_failed_batches",
            "Audit batches that could not be written (their records are counted in the next audit_gap record)",
            self.failed_batches.clone(),
        );
        r.register(
            "aerodb_audit_batch_records",
            "Records per audit batch (group commit: one write and one fsync per batch)",
            self.batch_records.clone(),
        );
        r.register(
            "aerodb_audit_fsync_duration_seconds",
            "Time of one audit write and fdatasync",
            self.fsync_seconds.clone(),
        );
        r.register(
            "aerodb_audit_unavailable",
            "1 while the audit log cannot be written (mutations are refused), 0 otherwise",
            self.unavailable.clone(),
        );
        r.register(
            "aerodb_control_confirmations",
            "Confirmation stages recorded (confirmation_requested, confirmed, declined), by command",
            self.confirmations.clone(),
        );
        r.register(
            "aerodb_control_actions",
            "Action outcomes recorded (executed, replayed, rejected, failed), by command, stage and outcome",
            self.actions.clone(),
        );
    }
}

/// The WAL writer's metrics. Made by the WAL, registered by the node.
#[derive(Debug, Clone)]
pub struct WalMetrics {
    fsync_seconds: Histogram,
    batch_entries: Histogram,
    bytes: Counter,
}

impl Default for WalMetrics {
    fn default() -> Self {
        Self { fsync_seconds: latency_buckets(), batch_entries: batch_buckets(), bytes: Counter::default() }
    }
}

impl WalMetrics {
    /// A group commit made `entries` entries (`bytes` bytes) durable, its fsync taking
    /// `fsync_seconds`.
    pub fn durable(&self, entries: usize, bytes: u64, fsync_seconds: f64) {
        self.fsync_seconds.observe(fsync_seconds);
        self.batch_entries.observe(entries as f64);
        self.bytes.inc_by(bytes);
    }

    fn register(&self, r: &mut Registry) {
        r.register("aerodb_wal_fsync_duration_seconds", "Time of one WAL fdatasync", self.fsync_seconds.clone());
        r.register(
            "aerodb_wal_batch_entries",
            "Entries per WAL group commit (one write and one fsync per batch)",
            self.batch_entries.clone(),
        );
        r.register("aerodb_wal_written_bytes", "Bytes appended to the WAL", self.bytes.clone());
    }
}

/// The metrics of one process part (a node or a control plane), being assembled.
#[derive(Debug, Default)]
pub struct Metrics {
    registry: Registry,
    /// RPCs of its server.
    pub rpc: RpcMetrics,
    /// Connections of its listener.
    pub connections: ConnectionMetrics,
}

impl Metrics {
    /// Empty, with the RPC and connection metrics registered.
    pub fn new() -> Self {
        let mut m = Self::default();
        m.rpc.register(&mut m.registry);
        m.connections.register(&mut m.registry);
        m
    }

    /// Registers an audit writer's metrics.
    pub fn register_audit(&mut self, audit: &AuditMetrics) {
        audit.register(&mut self.registry);
    }

    /// Registers a WAL's metrics.
    pub fn register_wal(&mut self, wal: &WalMetrics) {
        wal.register(&mut self.registry);
    }

    /// Registers a collector read at every scrape.
    pub fn register_collector(&mut self, c: Box<dyn prometheus_client::collector::Collector>) {
        self.registry.register_collector(c);
    }

    /// The text exposition (Prometheus text format 0.0.4) of everything registered.
    pub fn render(registry: &Registry) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug in a collector,
        // and a partial page is better than none.
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
            tracing::error!(error = %e, "BUG: a metric could not be encoded");
        }
        out
    }

    /// Done registering: the registry the endpoint serves.
    pub fn into_registry(self) -> Arc<Registry> {
        Arc::new(self.registry)
    }
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address could not be bound.
    #[error("metrics_address {address}: {source}")]
    Bind {
        /// The configured address.
        address: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Checks a configured `metrics_address`: an IP address and port (`127.0.0.1:9700`,
/// `[::1]:9700`), so that where it listens is never a name lookup away.
pub fn validate_address(address: Option<&str>) -> Result<(), crate::kernel::config::ConfigError> {
    match address {
        Some(a) if a.parse::<SocketAddr>().is_err() => Err(crate::kernel::config::ConfigError::Invalid {
            field: "metrics_address".into(),
            why: format!("{a:?} is not an IP address and port (e.g. 127.0.0.1:9700)"),
        }),
        _ => Ok(()),
    }
}

/// Bound of reading one scrape request's headers.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `address` for the metrics endpoint (plain HTTP; meant for loopback or a private
/// network: it serves counters, never data, keys or identities).
pub async fn bind(address: &str) -> Result<tokio::net::TcpListener, MetricsError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| MetricsError::Bind { address: address.to_string(), source })
}

/// Serves `GET /metrics` (and nothing else: 404) on `listener` until `shutdown` completes.
/// Each connection is its own task; a slow or broken scraper affects only itself.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let local = listener.local_addr().ok();
    tracing::info!(address = ?local, "metrics endpoint listening (plain HTTP, GET /metrics)");
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => a,
        };
        let (tcp, peer): (tokio::net::TcpStream, SocketAddr) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let registry = registry.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&req, &registry)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(REQUEST_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
            if let Err(e) = conn.await {
                tracing::debug!(peer.addr = %peer, error = %e, "metrics connection ended");
            }
        });
    }
}

fn answer<B>(req: &http::Request<B>, registry: &Registry) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&http::Method::GET, "/metrics") => (
            http::StatusCode::OK,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Metrics::render(registry),
        ),
        (&http::Method::GET, _) => (http::StatusCode::NOT_FOUND, "text/plain", "not found: GET /metrics\n".into()),
        _ => (http::StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET /metrics\n".into()),
    };
    let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_labels_name_only_known_methods() {
        assert_eq!(
            rpc_labels("/aerodb.control.v1.Observer/GetClusterState"),
            ("aerodb.control.v1.Observer", "GetClusterState")
        );
        assert_eq!(rpc_labels("/grpc.health.v1.Health/Watch"), ("grpc.health.v1.Health", "Watch"));
        assert_eq!(rpc_labels("/aerodb.control.v1.Observer/Nope"), ("unknown", "unknown"));
        assert_eq!(rpc_labels("/x.Y/Z"), ("unknown", "unknown"));
        assert_eq!(rpc_labels("garbage"), ("unknown", "unknown"));
    }

    #[test]
    fn status_codes_are_named_and_anything_else_is_unknown() {
        assert_eq!(code_name(b"0"), "OK");
        assert_eq!(code_name(b"7"), "PERMISSION_DENIED");
        assert_eq!(code_name(b"16"), "UNAUTHENTICATED");
        assert_eq!(code_name(b"17"), "UNKNOWN");
        assert_eq!(code_name(b"x"), "UNKNOWN");
    }

    #[test]
    fn counters_end_in_total_and_moved_counts_show_in_the_exposition() {
        let mut m = Metrics::new();
        let audit = AuditMetrics::default();
        m.register_audit(&audit);
        m.rpc.finished("/aerodb.control.v1.Observer/GetClusterState", "OK", 0.01);
        audit.durable(&[(Stage::Executed, "request_promotion".into(), "EXECUTED".into())], 100, 0.001);
        let text = Metrics::render(&m.into_registry());
        assert!(
            text.contains(
                "aerodb_grpc_server_handled_total{service=\"aerodb.control.v1.Observer\",method=\"GetClusterState\",\
                 code=\"OK\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "aerodb_control_actions_total{command=\"request_promotion\",stage=\"executed\",outcome=\"EXECUTED\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("aerodb_audit_written_bytes_total 100"), "{text}");
        assert!(text.contains("aerodb_audit_unavailable 0"), "{text}");
    }

    #[test]
    fn refusal_reasons_fall_into_fixed_classes() {
        assert_eq!(refusal_class("16 handshakes already in flight from 127.0.0.1"), "limit");
        assert_eq!(refusal_class("handshake not completed within 5000 ms"), "timeout");
        assert_eq!(refusal_class("certificate revoked (serial 01)"), "revoked");
        assert_eq!(refusal_class("something new"), "other");
    }
}
