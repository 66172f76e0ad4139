//! The error model on the wire, shared by every server and client in the crate.
//!
//! Every error is a gRPC status carrying `google.rpc.ErrorInfo` (reason = a stable code, a
//! domain, and metadata `error_domain`, `outcome`, `invariants`), plus `google.rpc.BadRequest`
//! when a field is at fault. [`WireError`] is the typed form; [`WireError::into_status`] and
//! [`WireError::from_status`] are the two directions, so clients and tests read exactly what
//! servers wrote.

use std::collections::HashMap;
use std::fmt;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// The ErrorInfo domain of errors raised by the control plane.
pub const CONTROL_DOMAIN: &str = "aerodb.control.v1";
/// The ErrorInfo domain of errors raised by a kernel node.
pub const KERNEL_DOMAIN: &str = "aerodb.kernel.v1";

/// Which of the four failure domains an error belongs to (requirements §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorDomain {
    /// The operator's input is malformed: never reaches the kernel.
    OperatorInput,
    /// A Phase 7 rule refused the request (authority, confirmation): never reaches the kernel.
    Validation,
    /// The kernel received the request and said no.
    KernelRejection,
    /// The kernel could not be reached or did not answer in time: the outcome is not known.
    Transport,
}

impl ErrorDomain {
    /// The stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorDomain::OperatorInput => "OPERATOR_INPUT",
            ErrorDomain::Validation => "VALIDATION",
            ErrorDomain::KernelRejection => "KERNEL_REJECTION",
            ErrorDomain::Transport => "TRANSPORT",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "OPERATOR_INPUT" => ErrorDomain::OperatorInput,
            "VALIDATION" => ErrorDomain::Validation,
            "KERNEL_REJECTION" => ErrorDomain::KernelRejection,
            "TRANSPORT" => ErrorDomain::Transport,
            _ => return None,
        })
    }
}

/// What is known about execution when an error is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// Nothing was executed; the system is as it was.
    NotExecuted,
    /// The action executed (the error concerns something after it, e.g. recording).
    Executed,
    /// Not known: kernel state decides; never assume either way.
    Unknown,
}

impl Outcome {
    /// The stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::NotExecuted => "NOT_EXECUTED",
            Outcome::Executed => "EXECUTED",
            Outcome::Unknown => "UNKNOWN",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "NOT_EXECUTED" => Outcome::NotExecuted,
            "EXECUTED" => Outcome::Executed,
            "UNKNOWN" => Outcome::Unknown,
            _ => return None,
        })
    }
}

/// One field at fault, for `google.rpc.BadRequest`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// The request field, e.g. `idempotency_key`.
    pub field: String,
    /// Which rule it broke, in words.
    pub description: String,
}

/// A typed error as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WireError {
    /// The gRPC status code.
    #[serde(skip)]
    pub status: Code,
    /// The ErrorInfo domain (which server raised it).
    pub domain: String,
    /// The stable code (ErrorInfo reason), e.g. `PHASE7_CONFIRMATION_EXPIRED`.
    pub code: String,
    /// The failure domain.
    pub error_domain: ErrorDomain,
    /// What is known about execution.
    pub outcome: Outcome,
    /// Invariant ids this error protects or cites.
    pub invariants: Vec<String>,
    /// The human message; for kernel rejections, the kernel's message verbatim.
    pub message: String,
    /// Fields at fault (input errors).
    pub field_errors: Vec<FieldError>,
    /// Further machine-readable facts (e.g. `current_control_seq`), sorted by key on the wire.
    pub extra: Vec<(String, String)>,
}

impl WireError {
    /// A new error with no field errors and no extra metadata.
    pub fn new(
        status: Code,
        domain: &str,
        code: &str,
        error_domain: ErrorDomain,
        outcome: Outcome,
        invariants: &[&str],
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            domain: domain.to_string(),
            code: code.to_string(),
            error_domain,
            outcome,
            invariants: invariants.iter().map(|s| s.to_string()).collect(),
            message: message.into(),
            field_errors: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// Adds a field at fault.
    pub fn with_field(mut self, field: &str, description: impl Into<String>) -> Self {
        self.field_errors.push(FieldError { field: field.to_string(), description: description.into() });
        self
    }

    /// Adds a metadata entry.
    pub fn with_extra(mut self, key: &str, value: impl Into<String>) -> Self {
        self.extra.push((key.to_string(), value.into()));
        self
    }

    /// The gRPC status: code, message, ErrorInfo and (when fields are at fault) BadRequest. The
    /// encoding is deterministic: the same error gives the same bytes.
    pub fn into_status(self) -> Status {
        let mut metadata: HashMap<String, String> = HashMap::new();
        metadata.insert("error_domain".into(), self.error_domain.as_str().into());
        metadata.insert("outcome".into(), self.outcome.as_str().into());
        metadata.insert("invariants".into(), self.invariants.join(","));
        for (k, v) in &self.extra {
            metadata.insert(k.clone(), v.clone());
        }
        let mut details = ErrorDetails::with_error_info(self.code.clone(), self.domain.clone(), metadata);
        if !self.field_errors.is_empty() {
            details.set_bad_request(
                self.field_errors
                    .iter()
                    .map(|f| FieldViolation::new(f.field.clone(), f.description.clone()))
                    .collect::<Vec<_>>(),
            );
        }
        let message = format!("{}: {}", self.code, self.message);
        canonical_status(Status::with_error_details(self.status, message, details))
    }

    /// Reads a status written by [`WireError::into_status`]. `None` when the status carries no
    /// ErrorInfo (a transport-level failure, for example).
    pub fn from_status(status: &Status) -> Option<Self> {
        let details = status.get_error_details();
        let info = details.error_info()?;
        let md = &info.metadata;
        let error_domain = md.get("error_domain").and_then(|s| ErrorDomain::parse(s))?;
        let outcome = md.get("outcome").and_then(|s| Outcome::parse(s))?;
        let invariants = md
            .get("invariants")
            .map(|s| s.split(',').filter(|p| !p.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        let mut extra: Vec<(String, String)> = md
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "error_domain" | "outcome" | "invariants"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        extra.sort();
        let field_errors = details
            .bad_request()
            .map(|br| {
                br.field_violations
                    .iter()
                    .map(|v| FieldError { field: v.field.clone(), description: v.description.clone() })
                    .collect()
            })
            .unwrap_or_default();
        let prefix = format!("{}: ", info.reason);
        let message = status.message().strip_prefix(&prefix).unwrap_or(status.message()).to_string();
        Some(Self {
            status: status.code(),
            domain: info.domain.clone(),
            code: info.reason.clone(),
            error_domain,
            outcome,
            invariants,
            message,
            field_errors,
            extra,
        })
    }

    /// A metadata value by key.
    pub fn extra_value(&self, key: &str) -> Option<&str> {
        self.extra.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] outcome={} invariants={}: {}",
            self.code,
            self.error_domain.as_str(),
            self.outcome.as_str(),
            if self.invariants.is_empty() { "-".to_string() } else { self.invariants.join(",") },
            self.message
        )
    }
}

/// Re-encodes a status so that its details bytes are deterministic. ErrorInfo metadata is a map;
/// prost encodes a `HashMap` in iteration order, which varies between processes. Decoding and
/// re-encoding through a `BTreeMap`-ordered message fixes the order, so the same error is the
/// same bytes in every process (P7-D2).
fn canonical_status(status: Status) -> Status {
    use prost::Message;
    let Ok(mut rpc_status) = RpcStatus::decode(status.details()) else {
        return status;
    };
    for any in &mut rpc_status.details {
        if any.type_url.ends_with("google.rpc.ErrorInfo")
            && let Ok(info) = ErrorInfoOrdered::decode(any.value.as_slice())
        {
            any.value = info.encode_to_vec();
        }
    }
    Status::with_details(status.code(), status.message(), rpc_status.encode_to_vec().into())
}

/// `google.rpc.Status`, for re-encoding details.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// `google.rpc.ErrorInfo` with an ordered metadata map.
#[derive(Clone, PartialEq, prost::Message)]
struct ErrorInfoOrdered {
    #[prost(string, tag = "1")]
    reason: String,
    #[prost(string, tag = "2")]
    domain: String,
    #[prost(btree_map = "string, string", tag = "3")]
    metadata: std::collections::BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> WireError {
        WireError::new(
            Code::FailedPrecondition,
            CONTROL_DOMAIN,
            "PHASE7_CONFIRMATION_EXPIRED",
            ErrorDomain::Validation,
            Outcome::NotExecuted,
            &["P7-A2", "P7-F1"],
            "the pending action expired",
        )
        .with_field("confirmation_id", "expired")
        .with_extra("zeta", "1")
        .with_extra("alpha", "2")
    }

    #[test]
    fn wire_error_round_trips_through_status() {
        let status = sample().into_status();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "PHASE7_CONFIRMATION_EXPIRED: the pending action expired");
        let back = WireError::from_status(&status).expect("error info present");
        let mut expected = sample();
        expected.extra.sort();
        assert_eq!(back, expected);
    }

    #[test]
    fn p7_d2_same_error_encodes_to_identical_bytes() {
        let a = sample().into_status();
        for _ in 0..20 {
            let b = sample().into_status();
            assert_eq!(a.details(), b.details());
            assert_eq!(a.message(), b.message());
        }
    }

    #[test]
    fn status_without_error_info_is_not_a_wire_error() {
        assert_eq!(WireError::from_status(&Status::unavailable("connection refused")), None);
    }
}
