//! Authorization: a pure check from (identity, gRPC method) to a [`Permit`], and one tower layer
//! that applies it in front of every service.
//!
//! The table lists every method of every service exactly (DESIGN §2). Anything not listed,
//! including an unknown method of a known service, is denied: PERMISSION_DENIED with ErrorInfo
//! `PHASE7_INSUFFICIENT_AUTHORITY`, invariant P7-A1, outcome NOT_EXECUTED. A denial is reported
//! to a [`DenialSink`] (the control plane audits it; a node logs it) before the answer is sent.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::Code;
use tower::{Layer, Service};

use super::accept::{ConnInfo, format_not_after};
use super::identity::{Identity, Role};
use crate::clock::{SharedClock, SystemClock};
use crate::wire::{ErrorDomain, Outcome, WireError};

/// The stable code of every authorization denial.
pub const INSUFFICIENT_AUTHORITY: &str = "PHASE7_INSUFFICIENT_AUTHORITY";

const VIEWERS: &[Role] = &[Role::Observer, Role::Actor, Role::Auditor];
const EVERY_ROLE: &[Role] = &Role::ALL;

/// One service's methods and the roles allowed to call them.
#[derive(Debug)]
pub struct ServiceRule {
    /// Fully qualified service name, e.g. `aerodb.control.v1.Observer`.
    pub service: &'static str,
    /// Every method of the service.
    pub methods: &'static [&'static str],
    /// Roles allowed to call any of them.
    pub roles: &'static [Role],
}

/// The authorization table (DESIGN §2). A unit test checks it lists exactly the methods of the
/// compiled proto contract, so a new RPC cannot be added without a decision here.
pub const TABLE: &[ServiceRule] = &[
    ServiceRule {
        service: "aerodb.control.v1.Observer",
        methods: &[
            "GetClusterState",
            "GetNode",
            "GetReplicationStatus",
            "GetPromotionState",
            "InspectWal",
            "InspectSnapshots",
            "GetOutcome",
        ],
        roles: VIEWERS,
    },
    ServiceRule {
        service: "aerodb.control.v1.Actor",
        methods: &["RequestAction", "ConfirmAction", "DeclineAction"],
        roles: &[Role::Actor],
    },
    ServiceRule {
        service: "aerodb.control.v1.Auditor",
        methods: &[
            "ReadAudit",
            "VerifyAudit",
            "ReconstructAction",
            "GetCheckpoint",
            "GetInclusionProof",
            "GetConsistencyProof",
        ],
        roles: &[Role::Auditor],
    },
    ServiceRule {
        service: "aerodb.kernel.v1.Kernel",
        methods: &["Observe", "GetOutcome", "Execute"],
        roles: &[Role::ControlPlane],
    },
    ServiceRule {
        service: "aerodb.kernel.v1.Replication",
        methods: &["Status", "Pull", "HashAt", "RequestGrant", "ClaimKey", "FetchSnapshot"],
        roles: &[Role::Node],
    },
    ServiceRule {
        service: "aerodb.kernel.v1.Data",
        methods: &["Put", "Get", "Delete", "Scan"],
        roles: &[Role::Client],
    },
    ServiceRule { service: "grpc.health.v1.Health", methods: &["Check", "Watch"], roles: EVERY_ROLE },
    ServiceRule {
        service: "grpc.reflection.v1.ServerReflection",
        methods: &["ServerReflectionInfo"],
        roles: EVERY_ROLE,
    },
    ServiceRule {
        service: "grpc.reflection.v1alpha.ServerReflection",
        methods: &["ServerReflectionInfo"],
        roles: EVERY_ROLE,
    },
];

/// Proof that a call was authorized: handlers that act take one, so they cannot run without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    /// The authorized caller.
    pub identity: Identity,
    /// The full gRPC path, e.g. `/aerodb.control.v1.Actor/ConfirmAction`.
    pub method: String,
    /// The caller's socket address.
    pub peer: Option<SocketAddr>,
}

/// Why a call was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// The connection carries no identity (defence in depth: the handshake already refuses this).
    NoIdentity(String),
    /// The path is not a method in the table.
    UnknownMethod,
    /// The certificate the connection was made with is refused by TLS material reloaded since
    /// (revoked, or its CA no longer trusted).
    NoLongerAccepted(String),
    /// The certificate the connection was made with has expired: past its notAfter it carries
    /// no authority, even on a connection opened before (the server closes such a connection;
    /// this denies a call that raced the close).
    CertificateExpired {
        /// The certificate's notAfter, seconds since the Unix epoch.
        not_after_unix_s: i64,
    },
    /// The caller's role may not call this service.
    RoleNotAllowed {
        /// The caller's role.
        role: Role,
        /// The roles that may.
        allowed: Vec<Role>,
    },
}

/// A refused call: who, what, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The caller, when one could be established.
    pub identity: Option<Identity>,
    /// The gRPC path asked for.
    pub method: String,
    /// The caller's socket address.
    pub peer: Option<SocketAddr>,
    /// Why.
    pub reason: DenyReason,
    /// The request message (protobuf, without the gRPC prefix), when the sink asked for it
    /// ([`DenialSink::wants_request`]) and the caller sent exactly one well-formed message of at
    /// most [`crate::limits::request_bytes_max`] bytes within [`DENIED_REQUEST_WAIT`].
    pub request: Option<bytes::Bytes>,
}

/// How long a denial waits for the request message its sink asked for (a caller that does not
/// send it is denied without it).
pub const DENIED_REQUEST_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Denial {
    /// The human message of the denial.
    pub fn message(&self) -> String {
        match &self.reason {
            DenyReason::NoIdentity(why) => {
                format!("{} denied: the caller has no identity ({why})", self.method)
            }
            DenyReason::NoLongerAccepted(why) => format!(
                "{} denied: the certificate this connection was made with is no longer accepted ({why}); \
                 the connection has no authority",
                self.method
            ),
            DenyReason::CertificateExpired { not_after_unix_s } => format!(
                "{} denied: the certificate this connection was made with expired at {} (notAfter); \
                 the connection has no authority",
                self.method,
                format_not_after(*not_after_unix_s)
            ),
            DenyReason::UnknownMethod => format!("{} denied: not a method of this server's contract", self.method),
            DenyReason::RoleNotAllowed { role, allowed } => format!(
                "{} denied: role {role} may not call it (allowed: {})",
                self.method,
                allowed.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// The wire error for this denial, in the given ErrorInfo domain.
    pub fn to_wire(&self, domain: &str) -> WireError {
        WireError::new(
            Code::PermissionDenied,
            domain,
            INSUFFICIENT_AUTHORITY,
            ErrorDomain::Validation,
            Outcome::NotExecuted,
            &["P7-A1"],
            self.message(),
        )
    }
}

/// The services of `aerodb control`.
pub const CONTROL_SERVICES: &[&str] =
    &["aerodb.control.v1.Observer", "aerodb.control.v1.Actor", "aerodb.control.v1.Auditor"];
/// The services of `aerodb node`.
pub const NODE_SERVICES: &[&str] =
    &["aerodb.kernel.v1.Kernel", "aerodb.kernel.v1.Replication", "aerodb.kernel.v1.Data"];

/// The check of one server: a path of one of our services that this server does not mount is as
/// unknown as any other path (denied, not UNIMPLEMENTED); then [`check`].
pub fn check_served(identity: &Identity, path: &str, served: &[&str]) -> Result<(), DenyReason> {
    let service = path.strip_prefix('/').and_then(|p| p.split_once('/')).map(|(s, _)| s).unwrap_or("");
    if service.starts_with("aerodb.") && !served.contains(&service) {
        return Err(DenyReason::UnknownMethod);
    }
    check(identity, path)
}

/// The pure check: may this identity call this path?
pub fn check(identity: &Identity, path: &str) -> Result<(), DenyReason> {
    let rule = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .and_then(|(service, method)| TABLE.iter().find(|r| r.service == service && r.methods.contains(&method)))
        .ok_or(DenyReason::UnknownMethod)?;
    if rule.roles.contains(&identity.role) {
        Ok(())
    } else {
        Err(DenyReason::RoleNotAllowed { role: identity.role, allowed: rule.roles.to_vec() })
    }
}

/// Receives every denial before the caller is answered.
pub trait DenialSink: Send + Sync {
    /// Records or logs a denial; the answer waits for the returned future.
    fn denied(&self, denial: Denial) -> BoxFuture<'static, ()>;

    /// Whether a denial of `method` should carry the request message (so the record can say what
    /// was asked). The layer then reads it, bounded by size and [`DENIED_REQUEST_WAIT`]. No by
    /// default.
    fn wants_request(&self, _method: &str) -> bool {
        false
    }

    /// Called for permitted calls to the standard services (health, reflection), which have no
    /// handler of ours to record them; the call proceeds after the returned future.
    fn passthrough(&self, _permit: &Permit) -> Option<BoxFuture<'static, ()>> {
        None
    }

    /// Called for a permitted call that the edge refused before decoding it (see
    /// [`crate::edge`]); the answer waits for the returned future. Logs by default.
    fn refused_at_edge(
        &self,
        permit: Option<Permit>,
        method: String,
        error: crate::wire::WireError,
    ) -> BoxFuture<'static, ()> {
        crate::edge::EdgeSink::refused(&crate::edge::LogRefusals, permit, method, error)
    }
}

/// Whether a path belongs to the standard services every server mounts.
pub fn is_standard_service(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

/// A [`DenialSink`] that logs with `tracing`.
#[derive(Debug, Default)]
pub struct LogDenials;

impl DenialSink for LogDenials {
    fn denied(&self, denial: Denial) -> BoxFuture<'static, ()> {
        log_denial(&denial);
        Box::pin(async {})
    }
}

/// Logs a denial with identity, fingerprint, method and peer.
pub fn log_denial(denial: &Denial) {
    tracing::warn!(
        peer.role = denial.identity.as_ref().map(|i| i.role.as_str()).unwrap_or("-"),
        peer.name = denial.identity.as_ref().map(|i| i.name.as_str()).unwrap_or("-"),
        cert.sha256 = denial.identity.as_ref().map(|i| i.cert_sha256.as_str()).unwrap_or("-"),
        rpc.method = %crate::limits::bounded(&denial.method, 128),
        peer.addr = %denial.peer.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
        reason = %denial.message(),
        "call denied"
    );
}

/// The tower layer applying [`check`] to every request.
#[derive(Clone)]
pub struct AuthzLayer {
    sink: Arc<dyn DenialSink>,
    domain: &'static str,
    served: &'static [&'static str],
    clock: SharedClock,
}

impl AuthzLayer {
    /// Denials go to `sink`; their ErrorInfo carries `domain`; `served` are the services this
    /// server mounts (every other `aerodb.*` path is unknown here). Certificate expiry is judged
    /// by the system's wall clock, the clock webpki judged the certificate by at the handshake.
    pub fn new(sink: Arc<dyn DenialSink>, domain: &'static str, served: &'static [&'static str]) -> Self {
        Self { sink, domain, served, clock: SystemClock::shared() }
    }

    /// The same layer judging certificate expiry by `clock` (tests).
    pub fn with_clock(self, clock: SharedClock) -> Self {
        Self { clock, ..self }
    }
}

impl<S> Layer<S> for AuthzLayer {
    type Service = Authz<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authz { inner, sink: self.sink.clone(), domain: self.domain, served: self.served, clock: self.clock.clone() }
    }
}

/// The service produced by [`AuthzLayer`].
#[derive(Clone)]
pub struct Authz<S> {
    inner: S,
    sink: Arc<dyn DenialSink>,
    domain: &'static str,
    served: &'static [&'static str],
    clock: SharedClock,
}

impl<S> Service<http::Request<tonic::body::Body>> for Authz<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        let method = req.uri().path().to_string();
        let info = req.extensions().get::<Arc<ConnInfo>>().cloned();
        let peer = info.as_ref().and_then(|i| i.remote);
        let now_unix_ms = self.clock.now_unix_ms();
        let expired = info.as_ref().and_then(|i| i.expired_at(now_unix_ms));
        // Expiry first: past notAfter nothing else about the connection matters.
        let verdict = match (info.as_ref().map(|i| (&i.identity, i.no_longer_accepted.get())), expired) {
            (Some((Ok(identity), _)), Some(not_after_unix_s)) => Err(Denial {
                identity: Some(identity.clone()),
                method,
                peer,
                reason: DenyReason::CertificateExpired { not_after_unix_s },
                request: None,
            }),
            (Some((Ok(identity), Some(why))), None) => Err(Denial {
                identity: Some(identity.clone()),
                method,
                peer,
                reason: DenyReason::NoLongerAccepted(why.clone()),
                request: None,
            }),
            (Some((Ok(identity), None)), None) => match check_served(identity, &method, self.served) {
                Ok(()) => Ok(Permit { identity: identity.clone(), method: method.clone(), peer }),
                Err(reason) => Err(Denial { identity: Some(identity.clone()), method, peer, reason, request: None }),
            },
            (Some((Err(e), _)), _) => Err(Denial {
                identity: None,
                method,
                peer,
                reason: DenyReason::NoIdentity(e.to_string()),
                request: None,
            }),
            (None, _) => Err(Denial {
                identity: None,
                method,
                peer,
                reason: DenyReason::NoIdentity("connection is not mutually authenticated".into()),
                request: None,
            }),
        };
        match verdict {
            Ok(permit) => {
                let recorded = if is_standard_service(&permit.method) { self.sink.passthrough(&permit) } else { None };
                req.extensions_mut().insert(permit);
                // Standard tower pattern: use the clone that was driven to readiness.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                match recorded {
                    None => Box::pin(inner.call(req)),
                    Some(recorded) => Box::pin(async move {
                        recorded.await;
                        inner.call(req).await
                    }),
                }
            }
            Err(mut denial) => {
                let status = denial.to_wire(self.domain).into_status();
                let sink = self.sink.clone();
                Box::pin(async move {
                    if sink.wants_request(&denial.method) {
                        let max = crate::limits::request_bytes_max(&denial.method);
                        let read = crate::edge::one_message(req.into_body(), &denial.method, max);
                        denial.request = match tokio::time::timeout(DENIED_REQUEST_WAIT, read).await {
                            Ok(Ok(framed)) => Some(framed.slice(crate::edge::PREFIX_LEN..)),
                            _ => None,
                        };
                    }
                    sink.denied(denial).await;
                    Ok(status.into_http())
                })
            }
        }
    }
}

/// The permit of a request authorized by [`AuthzLayer`]. A request without one (a service
/// mounted without the layer) is refused, never served.
pub fn permit_of<T>(req: &tonic::Request<T>, domain: &str) -> Result<Permit, tonic::Status> {
    req.extensions().get::<Permit>().cloned().ok_or_else(|| {
        WireError::new(
            Code::PermissionDenied,
            domain,
            INSUFFICIENT_AUTHORITY,
            ErrorDomain::Validation,
            Outcome::NotExecuted,
            &["P7-A1"],
            "request reached a service without an authorization permit",
        )
        .into_status()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(role: Role) -> Identity {
        Identity { role, name: "t".into(), cert_sha256: "00".into(), serial: "01".into(), issuer: "CN=ca".into() }
    }

    /// The full expected matrix of DESIGN §2: service → roles allowed.
    fn expected(service: &str) -> &'static [Role] {
        match service {
            "aerodb.control.v1.Observer" => &[Role::Observer, Role::Actor, Role::Auditor],
            "aerodb.control.v1.Actor" => &[Role::Actor],
            "aerodb.control.v1.Auditor" => &[Role::Auditor],
            "aerodb.kernel.v1.Kernel" => &[Role::ControlPlane],
            "aerodb.kernel.v1.Replication" => &[Role::Node],
            "aerodb.kernel.v1.Data" => &[Role::Client],
            _ => &Role::ALL,
        }
    }

    #[test]
    fn p7_a1_every_role_times_every_method_matches_design_table() {
        for rule in TABLE {
            for method in rule.methods {
                let path = format!("/{}/{}", rule.service, method);
                for role in Role::ALL {
                    let allowed = expected(rule.service).contains(&role);
                    assert_eq!(check(&identity(role), &path).is_ok(), allowed, "{role} {path}");
                }
            }
        }
    }

    #[test]
    fn p7_a1_unknown_paths_are_denied_for_every_role() {
        for role in Role::ALL {
            for path in [
                "/aerodb.control.v1.Observer/Nope",
                "/aerodb.control.v1.Nope/GetNode",
                "/",
                "",
                "/aerodb.control.v1.Observer",
                "/aerodb.control.v1.Observer/GetNode/extra",
            ] {
                assert_eq!(check(&identity(role), path), Err(DenyReason::UnknownMethod), "{role} {path:?}");
            }
        }
    }

    #[test]
    fn p7_a1_a_service_this_server_does_not_mount_is_unknown_here() {
        let path = "/aerodb.control.v1.Observer/GetClusterState";
        assert_eq!(check_served(&identity(Role::Observer), path, NODE_SERVICES), Err(DenyReason::UnknownMethod));
        assert_eq!(check_served(&identity(Role::Observer), path, CONTROL_SERVICES), Ok(()));
        assert_eq!(check_served(&identity(Role::Client), "/grpc.health.v1.Health/Check", NODE_SERVICES), Ok(()));
    }

    /// P7-A1: past its certificate's notAfter a connection carries no authority, even when a
    /// call races the server closing it.
    #[tokio::test]
    async fn p7_a1_a_call_on_a_connection_whose_certificate_expired_is_denied_naming_not_after() {
        use tower::ServiceExt;
        let clock = Arc::new(crate::clock::ManualClock::new(10_999));
        let layer = AuthzLayer::new(Arc::new(LogDenials), "test", NODE_SERVICES).with_clock(clock.clone());
        let inner = tower::service_fn(|_req: http::Request<tonic::body::Body>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
        });
        let svc = layer.layer(inner);
        let info = Arc::new(ConnInfo::new(None, Ok(identity(Role::Client)), Some(10)));
        let request = || {
            let mut r = http::Request::builder()
                .uri("/aerodb.kernel.v1.Data/Get")
                .body(tonic::body::Body::empty())
                .expect("request");
            r.extensions_mut().insert(info.clone());
            r
        };
        let answered = svc.clone().oneshot(request()).await.expect("infallible");
        assert!(tonic::Status::from_header_map(answered.headers()).is_none(), "valid through its notAfter second");
        clock.advance(std::time::Duration::from_millis(1));
        let denied = svc.clone().oneshot(request()).await.expect("infallible");
        let status = tonic::Status::from_header_map(denied.headers()).expect("a denial");
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(
            status.message(),
            "PHASE7_INSUFFICIENT_AUTHORITY: /aerodb.kernel.v1.Data/Get denied: the certificate this connection \
             was made with expired at 1970-01-01T00:00:10Z (notAfter); the connection has no authority"
        );
    }

    #[test]
    fn table_lists_exactly_the_methods_of_the_compiled_contract() {
        use prost::Message;
        let fds = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
        let mut contract: Vec<String> = Vec::new();
        for file in &fds.file {
            for service in &file.service {
                for method in &service.method {
                    contract.push(format!("{}.{}/{}", file.package(), service.name(), method.name()));
                }
            }
        }
        let mut table: Vec<String> = TABLE
            .iter()
            .filter(|r| r.service.starts_with("aerodb."))
            .flat_map(|r| r.methods.iter().map(move |m| format!("{}/{}", r.service, m)))
            .collect();
        contract.sort();
        table.sort();
        assert_eq!(table, contract);
    }
}
