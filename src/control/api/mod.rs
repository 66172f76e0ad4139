//! The control plane's tonic services: input parsing, audit, error mapping. One file per
//! service; `convert` parses requests into domain values; `status` maps errors to the wire.

pub mod actor;
pub mod auditor;
pub mod convert;
pub mod observer;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::adapter::Adapter;
use super::budget::RecordBudget;
use super::error::ControlError;
use super::flow::Flow;
use super::rounds::Rounds;
use crate::audit::log::AuditLog;
use crate::audit::record::{Draft, ErrorFacts, Observed, Stage, Who};
use crate::clock::SharedClock;
use crate::proto::kernel as kpb;
use crate::tls::authz::Permit;

/// Everything the services share. Owned once, behind an `Arc`; the flow and the audit log keep
/// their own locks.
#[derive(Debug)]
pub struct Ctx {
    /// The cluster.
    pub cluster_id: String,
    /// This instance.
    pub instance_id: String,
    /// The only caller of kernel APIs.
    pub adapter: Adapter,
    /// Whole-cluster observations shared by concurrent reads (never older than the request).
    pub rounds: Rounds,
    /// The audit log.
    pub audit: AuditLog,
    /// The per-identity bound on read records (reads beyond it share aggregate records).
    pub budget: Arc<RecordBudget>,
    /// Pending actions.
    pub flow: Flow,
    /// The clock.
    pub clock: SharedClock,
}

/// Shared context.
pub type SharedCtx = Arc<Ctx>;

/// The gRPC metadata key that marks a retried call.
pub const RETRY_METADATA: &str = "grpc-previous-rpc-attempts";

/// The value of `grpc-previous-rpc-attempts`, if the call carries it.
pub fn retry_attempts<T>(req: &tonic::Request<T>) -> Option<String> {
    req.metadata().get(RETRY_METADATA).map(|v| v.to_str().unwrap_or("?").to_string())
}

impl Ctx {
    /// A draft carrying the caller's identity and address.
    pub fn draft(&self, stage: Stage, correlation_id: &str, command: &str, permit: &Permit) -> Draft {
        let mut d = Draft::new(stage, correlation_id, command);
        d.identity = Some(Who::from(&permit.identity));
        d.peer = permit.peer.map(|p| p.to_string()).unwrap_or_default();
        d
    }

    /// Records a read (best effort: a read goes on when the log cannot be written; the gap is
    /// recorded later), within the caller's record budget (see [`RecordBudget`]).
    pub async fn record_read(
        &self,
        permit: &Permit,
        command: &str,
        parameters: BTreeMap<String, String>,
        observed: Vec<Observed>,
        error: Option<&ControlError>,
    ) {
        let mut d = self.draft(Stage::Read, &super::flow::random_id(), command, permit);
        d.parameters = parameters;
        d.observed = observed;
        d.detail.insert("method".into(), permit.method.clone());
        if let Some(e) = error {
            d.error = Some(ErrorFacts::from(&status::to_wire(e)));
        }
        self.budget.record(d).await;
    }
}

/// Observation points of the snapshots that answered.
pub fn observed_of(snaps: &[Result<kpb::NodeSnapshot, super::adapter::TransportError>]) -> Vec<Observed> {
    snaps.iter().filter_map(|s| s.as_ref().ok()).filter_map(|s| s.observation.as_ref()).map(Observed::from).collect()
}
