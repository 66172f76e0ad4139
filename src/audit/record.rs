//! The audit record: what is stored for every request, decision, failure and outcome.
//!
//! On disk a record is a frame whose payload is `prev_hash [32] ‖ seq u64 LE ‖ body`, where
//! `body` is the canonical JSON of [`Body`] (fields in declaration order, maps ordered by key).
//! The record's hash is its RFC 6962 leaf hash, `SHA-256(0x00 ‖ payload)` (segments of the
//! earlier format `AEROAUD1`: `SHA-256(payload)`); the next record's `prev_hash` is it, and the
//! same hash is the record's leaf in the Merkle tree (audit::merkle). See docs/audit.md.

use std::collections::BTreeMap;

/// The stage a record documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// A read-only call (Observer, Auditor, health, reflection).
    Read,
    /// RequestAction received.
    Requested,
    /// An explanation shown and a pending action minted.
    ConfirmationRequested,
    /// ConfirmAction accepted; durable before dispatch.
    Confirmed,
    /// The operator declined.
    Declined,
    /// The kernel executed the action.
    Executed,
    /// The kernel had executed the key before; nothing ran again.
    Replayed,
    /// Refused (input, confirmation, kernel rejection).
    Rejected,
    /// The outcome is unknown (transport failure after dispatch).
    Failed,
    /// Authorization denied a call.
    Denied,
    /// A TLS handshake was refused.
    HandshakeRejected,
    /// Records that could not be written while the log was unwritable.
    AuditGap,
}

impl Stage {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Requested => "requested",
            Stage::ConfirmationRequested => "confirmation_requested",
            Stage::Confirmed => "confirmed",
            Stage::Declined => "declined",
            Stage::Executed => "executed",
            Stage::Replayed => "replayed",
            Stage::Rejected => "rejected",
            Stage::Failed => "failed",
            Stage::Denied => "denied",
            Stage::HandshakeRejected => "handshake_rejected",
            Stage::AuditGap => "audit_gap",
        }
    }
}

/// The caller, as its certificate established it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Who {
    /// Authority level.
    pub role: String,
    /// Name.
    pub name: String,
    /// Hex SHA-256 of the certificate.
    pub cert_sha256: String,
    /// Hex serial.
    pub serial: String,
    /// Issuer DN.
    pub issuer: String,
}

impl From<&crate::tls::identity::Identity> for Who {
    fn from(i: &crate::tls::identity::Identity) -> Self {
        Self {
            role: i.role.to_string(),
            name: i.name.clone(),
            cert_sha256: i.cert_sha256.clone(),
            serial: i.serial.clone(),
            issuer: i.issuer.clone(),
        }
    }
}

/// The confirmation given.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfirmationFacts {
    /// `standard` or `enhanced`.
    pub kind: String,
    /// Invariant ids acknowledged.
    pub acknowledged_invariants: Vec<String>,
    /// Responsibility accepted.
    pub accept_responsibility: bool,
    /// The plan digest confirmed.
    pub plan_digest: String,
    /// The signed intent sent to the kernel, hex (absent from records written before intents
    /// were signed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub intent: String,
    /// The signatures sent with it, as the caller gave them (requester first, then approvals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<crate::contract::intent::Signature>,
}

/// An error, as answered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorFacts {
    /// OPERATOR_INPUT, VALIDATION, KERNEL_REJECTION or TRANSPORT.
    pub domain: String,
    /// Stable code.
    pub code: String,
    /// Invariant ids.
    pub invariants: Vec<String>,
    /// Message.
    pub message: String,
}

impl From<&crate::wire::WireError> for ErrorFacts {
    fn from(e: &crate::wire::WireError) -> Self {
        Self {
            domain: e.error_domain.as_str().into(),
            code: e.code.clone(),
            invariants: e.invariants.clone(),
            message: e.message.clone(),
        }
    }
}

/// A kernel observation point the record relied on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Observed {
    /// Node.
    pub node_id: String,
    /// Its ledger sequence.
    pub control_seq: u64,
    /// Its epoch.
    pub epoch: u64,
    /// Its commit index.
    pub commit_index: u64,
}

/// Everything a caller supplies for a record (the log adds sequence, time, instance, chain).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Draft {
    /// Joins the records of one action (or one call).
    pub correlation_id: String,
    /// Which stage.
    pub stage: Stage,
    /// The command or gRPC method.
    pub command: String,
    /// Target node, if any.
    pub target: String,
    /// Request parameters (force, filters, …).
    pub parameters: BTreeMap<String, String>,
    /// The client's idempotency key, if any.
    pub idempotency_key: String,
    /// Who (absent for refused handshakes without a certificate).
    pub identity: Option<Who>,
    /// The caller's socket address.
    pub peer: String,
    /// The confirmation given (confirmed stage).
    pub confirmation: Option<ConfirmationFacts>,
    /// The kernel's answer, verbatim.
    pub kernel_response: Option<serde_json::Value>,
    /// EXECUTED, NOT_EXECUTED, UNKNOWN, or empty for reads.
    pub outcome: String,
    /// The error answered, if any.
    pub error: Option<ErrorFacts>,
    /// The kernel state the decision or view relied on.
    pub observed: Vec<Observed>,
    /// Stage-specific facts (reason of a handshake refusal, gap window, …).
    pub detail: BTreeMap<String, String>,
}

impl Draft {
    /// An empty draft of `stage`.
    pub fn new(stage: Stage, correlation_id: impl Into<String>, command: impl Into<String>) -> Self {
        Self {
            correlation_id: correlation_id.into(),
            stage,
            command: command.into(),
            target: String::new(),
            parameters: BTreeMap::new(),
            idempotency_key: String::new(),
            identity: None,
            peer: String::new(),
            confirmation: None,
            kernel_response: None,
            outcome: String::new(),
            error: None,
            observed: Vec::new(),
            detail: BTreeMap::new(),
        }
    }
}

/// The JSON body of a stored record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Body {
    /// Milliseconds since the Unix epoch, as `clock_source` read it. Order is by `seq`, never
    /// by time.
    pub time_unix_ms: u64,
    /// The clock that produced `time_unix_ms`.
    pub clock_source: String,
    /// The control-plane instance that wrote the record.
    pub instance_id: String,
    /// The caller-supplied facts.
    #[serde(flatten)]
    pub draft: Draft,
}

/// A record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Gap-free sequence.
    pub seq: u64,
    /// Hash of the previous record.
    pub prev_hash: [u8; 32],
    /// This record's hash.
    pub hash: [u8; 32],
    /// Its Merkle leaf hash, `SHA-256(0x00 ‖ payload)` (audit::merkle).
    pub leaf_hash: [u8; 32],
    /// The exact body bytes.
    pub body_json: Vec<u8>,
}

impl Stored {
    /// Parses the body.
    pub fn body(&self) -> Result<Body, serde_json::Error> {
        serde_json::from_slice(&self.body_json)
    }
}
