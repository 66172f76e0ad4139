//! The control plane's tonic services: input parsing, audit, error mapping. One file per
//! service; `convert` parses requests (and kernel snapshots) into domain values; `present` turns
//! the flow's domain answers and explanations into wire messages; `status` maps errors to the
//! wire.

pub mod actor;
pub mod auditor;
pub mod convert;
pub mod observer;
pub mod present;
pub mod status;

use crate::audit::record::Observed;
use crate::proto::kernel as kpb;

pub use crate::control::context::{Ctx, SharedCtx};

/// The gRPC metadata key that marks a retried call.
pub const RETRY_METADATA: &str = "grpc-previous-rpc-attempts";

/// The value of `grpc-previous-rpc-attempts`, if the call carries it.
pub fn retry_attempts<T>(req: &tonic::Request<T>) -> Option<String> {
    req.metadata().get(RETRY_METADATA).map(|v| v.to_str().unwrap_or("?").to_string())
}

/// Observation points of the snapshots that answered.
pub fn observed_of(snaps: &[Result<kpb::NodeSnapshot, super::adapter::TransportError>]) -> Vec<Observed> {
    snaps.iter().filter_map(|s| s.as_ref().ok()).filter_map(|s| s.observation.as_ref()).map(Observed::from).collect()
}
