//! What a node shows of itself: its observation point, the one-lock snapshot `Kernel.Observe`
//! answers with, and the status its peers read. Read-only: nothing here changes the node.

use super::authority::Role;
use super::entry::Kind;
use super::node::{Core, Node};
use crate::proto::kernel as pb;

/// Where a node stood when it answered: its ledger's sequence, the highest epoch it knows and
/// its commit index, read under one lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observation {
    /// The node.
    pub(crate) node_id: String,
    /// Its ledger's `control_seq`.
    pub(crate) control_seq: u64,
    /// The highest epoch it knows.
    pub(crate) epoch: u64,
    /// Its commit index.
    pub(crate) commit_index: u64,
}

impl Observation {
    /// The wire form, every field named.
    pub(crate) fn to_proto(&self) -> pb::ObservationPoint {
        let Observation { node_id, control_seq, epoch, commit_index } = self;
        pb::ObservationPoint {
            node_id: node_id.clone(),
            control_seq: *control_seq,
            epoch: *epoch,
            commit_index: *commit_index,
        }
    }
}

impl Node {
    /// The observation point under the lock.
    pub(crate) fn observation(&self, core: &Core) -> Observation {
        Observation {
            node_id: self.cfg.node_id.clone(),
            control_seq: core.ledger.control_seq(),
            epoch: self.known_epoch(core),
            commit_index: core.commit_index,
        }
    }

    /// One consistent snapshot of this node (Kernel.Observe).
    pub(crate) fn observe(&self) -> pb::NodeSnapshot {
        let core = self.lock();
        let tail = self.wal.tail();
        let a = &core.authority;
        let (role, halt_reason, halt_detail) = match &a.role {
            Role::Primary { .. } => (pb::Role::Primary, pb::HaltReason::Unspecified, String::new()),
            Role::Replica => (pb::Role::Replica, pb::HaltReason::Unspecified, String::new()),
            Role::Demoted { .. } => (pb::Role::Demoted, pb::HaltReason::Unspecified, String::new()),
            Role::Halted { reason, detail, .. } => (pb::Role::Halted, reason.to_proto(), detail.clone()),
        };
        let (known_primary, known_primary_epoch) = match (&a.role, &core.following) {
            (Role::Primary { epoch }, _) => (self.cfg.node_id.clone(), *epoch),
            (_, Some((peer, epoch))) => (peer.clone(), *epoch),
            _ => (String::new(), 0),
        };
        let fence = self.current_fence(&core);
        let serving = self.serving_epoch(&core);
        let peers = self
            .cfg
            .peers()
            .map(|m| {
                let p = core.peers.get(&m.id).cloned().unwrap_or_default();
                let (prole, pepoch, plast) = p.status.as_ref().map(|s| (s.role, s.epoch, s.last_index)).unwrap_or((
                    pb::Role::Unspecified as i32,
                    0,
                    0,
                ));
                // Positions reported by pulls count only while this node serves that epoch.
                let position = if p.pulling && serving == Some(p.durable_epoch) { p.durable } else { plast };
                pb::PeerReplication {
                    node_id: m.id.clone(),
                    connected: p.connected,
                    durable_index: position,
                    lag_entries: tail.index.saturating_sub(position),
                    role: prole,
                    epoch: pepoch,
                }
            })
            .collect();
        let wal_view = self.wal.view();
        let ledger_bytes = core.ledger.bytes();
        pb::NodeSnapshot {
            observation: Some(self.observation(&core).to_proto()),
            cluster_id: self.cfg.cluster_id.clone(),
            authority: Some(pb::AuthorityView {
                role: role as i32,
                halt_reason: halt_reason as i32,
                halt_detail,
                epoch: self.known_epoch(&core),
                highest_granted_epoch: a.highest_granted,
                granted_to: a.granted_to.clone(),
                known_primary,
                known_primary_epoch,
                led_epoch: a.led_epoch,
            }),
            replication: Some(pb::ReplicationView {
                commit_index: core.commit_index,
                applied_index: core.kv.applied(),
                last_index: tail.index,
                last_epoch: tail.epoch,
                durable_index: tail.index,
                following: core.following.as_ref().map(|(p, _)| p.clone()).unwrap_or_default(),
                peers,
            }),
            promotion: Some(pb::PromotionView {
                current_epoch_fenced: fence.is_some(),
                fence_index: fence.unwrap_or(0),
                known_primary_commit_index: match a.role {
                    Role::Primary { .. } => core.commit_index,
                    _ => core.primary_commit_hint,
                },
                last_promoted_epoch: a.last_promotion.map(|p| p.0).unwrap_or(0),
                last_promotion_forced: a.last_promotion.map(|p| p.1).unwrap_or(false),
                action_in_flight: !core.in_flight.is_empty(),
            }),
            diagnostics_cost_bytes: wal_view.total_bytes + ledger_bytes,
            execute_calls_received: self.execute_calls.load(std::sync::atomic::Ordering::SeqCst),
            approvals: Some(self.cfg.approvals.to_proto()),
            wal: Some(wal_view),
            snapshots: Some(pb::SnapshotsView { snapshots: core.snapshots.clone() }),
            ledger: Some(pb::LedgerView {
                control_seq: core.ledger.control_seq(),
                records: core.ledger.records(),
                bytes: ledger_bytes,
                decided_keys: a.decided.len() as u64,
            }),
        }
    }

    /// The index of the Fence that ends this node's current epoch, if its log ends with one.
    pub(crate) fn current_fence(&self, _core: &Core) -> Option<u64> {
        let tail = self.wal.tail();
        (tail.kind == Some(Kind::Fence)).then_some(tail.index)
    }

    /// This node's status as peers see it (Replication.Status).
    pub(crate) fn status(&self) -> pb::StatusResponse {
        let core = self.lock();
        let tail = self.wal.tail();
        let role = match core.authority.role {
            Role::Primary { .. } => pb::Role::Primary,
            Role::Replica => pb::Role::Replica,
            Role::Demoted { .. } => pb::Role::Demoted,
            Role::Halted { .. } => pb::Role::Halted,
        };
        let serving = self.serving_epoch(&core);
        pb::StatusResponse {
            node_id: self.cfg.node_id.clone(),
            cluster_id: self.cfg.cluster_id.clone(),
            role: role as i32,
            epoch: serving.unwrap_or_else(|| self.started_epoch(&core)),
            highest_granted_epoch: core.authority.highest_granted,
            last_index: tail.index,
            last_epoch: tail.epoch,
            commit_index: core.commit_index,
            known_primary_commit_index: if serving.is_some() { core.commit_index } else { core.primary_commit_hint },
            current_epoch_fenced: self.current_fence(&core).is_some(),
            serving: serving.is_some(),
        }
    }
}
