//! The control plane's tonic services: input parsing, audit, error mapping. One file per
//! service; `convert` is the Actor's wire edge both ways (requests parsed into domain values,
//! the flow's domain answers presented as wire messages). Errors reach the wire through the one map in
//! [`crate::control::error`]; explanations through [`crate::control::digest`].

pub mod actor;
pub mod auditor;
pub mod convert;
pub mod observer;

pub use crate::control::context::{Ctx, SharedCtx};

/// The gRPC metadata key that marks a retried call.
pub const RETRY_METADATA: &str = "grpc-previous-rpc-attempts";

/// The value of `grpc-previous-rpc-attempts`, if the call carries it.
pub fn retry_attempts<T>(req: &tonic::Request<T>) -> Option<String> {
    req.metadata().get(RETRY_METADATA).map(|v| v.to_str().unwrap_or("?").to_string())
}
