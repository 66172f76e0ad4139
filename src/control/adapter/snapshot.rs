//! Reading a kernel's snapshot into the control plane's domain values, at the kernel edge: the
//! [`NodeState`] an explanation reads (defined here, so the edge imports nothing above it) and
//! the observation points records cite. Every field read is named; unknown enum values read as
//! unknown, never as a neighbour's value.

use super::TransportError;
use crate::audit::record::Observed;
use crate::contract::intent::Approvals;
use crate::proto::kernel as kpb;

/// A node's role, as its snapshot reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Unspecified, or a value this build does not know.
    #[default]
    Unknown,
    /// Primary of its epoch.
    Primary,
    /// Follows a primary.
    Replica,
    /// Fenced, read-only.
    Demoted,
    /// Stopped for a reason.
    Halted,
}

impl Role {
    /// The name facts use.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Demoted => "demoted",
            Role::Halted => "halted",
            Role::Unknown => "unknown",
        }
    }
}

/// A node's authority, as its snapshot reports it (the parts an explanation uses).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Authority {
    /// Its role.
    pub role: Role,
    /// Why it halted, by the wire name of the reason (`HALT_REASON_*`; meaningful when halted).
    pub halt_reason: String,
    /// Its epoch.
    pub epoch: u64,
    /// The highest epoch it granted.
    pub highest_granted_epoch: u64,
    /// The epoch it leads (a demotion ends it).
    pub led_epoch: u64,
}

/// One node's snapshot, as far as an explanation reads it. Absent parts of the kernel's answer
/// stay absent (`observation`, `authority`) or read as zero (replication, promotion), as they
/// always did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeState {
    /// Its observation point, if the snapshot carried one.
    pub observation: Option<Observed>,
    /// Its authority, if the snapshot carried it.
    pub authority: Option<Authority>,
    /// Its last log index.
    pub last_index: u64,
    /// The epoch of its last entry.
    pub last_epoch: u64,
    /// Its commit index.
    pub commit_index: u64,
    /// Whether its current epoch is fenced.
    pub current_epoch_fenced: bool,
    /// The fence's index.
    pub fence_index: u64,
    /// The commit index of the primary it knows.
    pub known_primary_commit_index: u64,
    /// Bytes a diagnostics run would read.
    pub diagnostics_cost_bytes: u64,
    /// The node's approval policy (signatures each command needs), if it reported one. Not part
    /// of the explanation: the pending action states it.
    pub approvals: Option<Approvals>,
}

/// An observation point as the domain holds it.
pub fn observed(o: &kpb::ObservationPoint) -> Observed {
    let kpb::ObservationPoint { node_id, control_seq, epoch, commit_index } = o;
    Observed { node_id: node_id.clone(), control_seq: *control_seq, epoch: *epoch, commit_index: *commit_index }
}

fn role(r: i32) -> Role {
    match kpb::Role::try_from(r) {
        Ok(kpb::Role::Primary) => Role::Primary,
        Ok(kpb::Role::Replica) => Role::Replica,
        Ok(kpb::Role::Demoted) => Role::Demoted,
        Ok(kpb::Role::Halted) => Role::Halted,
        Ok(kpb::Role::Unspecified) | Err(_) => Role::Unknown,
    }
}

/// What an explanation reads of a kernel snapshot. Parts the kernel left out stay absent
/// (observation point, authority) or read as zero (replication, promotion); the rest of the
/// snapshot (WAL, snapshots, ledger, approvals, counters) is not an explanation's business.
pub fn node_state(s: &kpb::NodeSnapshot) -> NodeState {
    let r = s.replication.clone().unwrap_or_default();
    let p = s.promotion.unwrap_or_default();
    NodeState {
        observation: s.observation.as_ref().map(observed),
        authority: s.authority.as_ref().map(|a| Authority {
            role: role(a.role),
            halt_reason: kpb::HaltReason::try_from(a.halt_reason)
                .map(|h| h.as_str_name())
                .unwrap_or("HALT_REASON_UNSPECIFIED")
                .to_string(),
            epoch: a.epoch,
            highest_granted_epoch: a.highest_granted_epoch,
            led_epoch: a.led_epoch,
        }),
        last_index: r.last_index,
        last_epoch: r.last_epoch,
        commit_index: r.commit_index,
        current_epoch_fenced: p.current_epoch_fenced,
        fence_index: p.fence_index,
        known_primary_commit_index: p.known_primary_commit_index,
        diagnostics_cost_bytes: s.diagnostics_cost_bytes,
        approvals: s.approvals.as_ref().map(Approvals::from_proto),
    }
}

/// [`node_state`] of each node's snapshot, keeping the node ids and the unobserved (`None`).
pub fn node_states(nodes: &[(String, Option<kpb::NodeSnapshot>)]) -> Vec<(String, Option<NodeState>)> {
    nodes.iter().map(|(id, s)| (id.clone(), s.as_ref().map(node_state))).collect()
}

/// Observation points of the snapshots that answered.
pub fn observed_of(snaps: &[Result<kpb::NodeSnapshot, TransportError>]) -> Vec<Observed> {
    snaps.iter().filter_map(|s| s.as_ref().ok()).filter_map(|s| s.observation.as_ref()).map(observed).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field an explanation reads reaches the domain; parts the kernel left out stay
    /// absent or zero, unknown enum values read as unknown.
    #[test]
    fn node_state_maps_every_field_an_explanation_reads() {
        let snap = kpb::NodeSnapshot {
            observation: Some(kpb::ObservationPoint {
                node_id: "n2".into(),
                control_seq: 4,
                epoch: 3,
                commit_index: 9,
            }),
            authority: Some(kpb::AuthorityView {
                role: kpb::Role::Halted as i32,
                halt_reason: kpb::HaltReason::WalGap as i32,
                epoch: 3,
                highest_granted_epoch: 5,
                led_epoch: 2,
                ..Default::default()
            }),
            replication: Some(kpb::ReplicationView {
                last_index: 11,
                last_epoch: 3,
                commit_index: 9,
                ..Default::default()
            }),
            promotion: Some(kpb::PromotionView {
                current_epoch_fenced: true,
                fence_index: 8,
                known_primary_commit_index: 7,
                ..Default::default()
            }),
            diagnostics_cost_bytes: 4096,
            approvals: Some(kpb::ApprovalPolicy::default()),
            ..Default::default()
        };
        assert_eq!(
            node_state(&snap),
            NodeState {
                observation: Some(Observed { node_id: "n2".into(), control_seq: 4, epoch: 3, commit_index: 9 }),
                authority: Some(Authority {
                    role: Role::Halted,
                    halt_reason: "HALT_REASON_WAL_GAP".into(),
                    epoch: 3,
                    highest_granted_epoch: 5,
                    led_epoch: 2,
                }),
                last_index: 11,
                last_epoch: 3,
                commit_index: 9,
                current_epoch_fenced: true,
                fence_index: 8,
                known_primary_commit_index: 7,
                diagnostics_cost_bytes: 4096,
                approvals: Some(Approvals::from_proto(&kpb::ApprovalPolicy::default())),
            }
        );
        let bare = kpb::NodeSnapshot {
            authority: Some(kpb::AuthorityView { role: 99, halt_reason: 99, ..Default::default() }),
            ..Default::default()
        };
        let state = node_state(&bare);
        assert_eq!(state.observation, None);
        assert_eq!(state.approvals, None);
        let a = state.authority.expect("authority kept");
        assert_eq!((a.role, a.halt_reason.as_str()), (Role::Unknown, "HALT_REASON_UNSPECIFIED"));
        assert_eq!(node_state(&kpb::NodeSnapshot::default()), NodeState::default());
    }
}
