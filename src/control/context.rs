//! What every service and the flow share: one context per control-plane instance.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::adapter::Adapter;
use super::budget::RecordBudget;
use super::error::ControlError;
use super::flow::{PendingStore, random_id};
use super::rounds::Rounds;
use crate::audit::log::AuditLog;
use crate::audit::record::{Draft, ErrorFacts, Observed, Stage, Who};
use crate::clock::SharedClock;
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
    pub pending: PendingStore,
    /// The clock.
    pub clock: SharedClock,
}

/// Shared context.
pub type SharedCtx = Arc<Ctx>;

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
        let mut d = self.draft(Stage::Read, &random_id(), command, permit);
        d.parameters = parameters;
        d.observed = observed;
        d.detail.insert("method".into(), permit.method.clone());
        if let Some(e) = error {
            d.error = Some(ErrorFacts::from(&crate::control::error::to_wire(e)));
        }
        self.budget.record(d).await;
    }
}
