//! Parsing wire values into domain values: the Actor's requests (each error names its field)
//! and the kernel snapshots explanations are built from. The reverse is [`super::present`].

use crate::audit::record::Observed;
use crate::contract::digest::valid_idempotency_key;
use crate::contract::intent::{Approvals, Command, Signature};
use crate::control::error::ControlError;
use crate::control::explain::{Authority, NodeState, Role};
use crate::control::flow::{ConfirmInput, ConfirmReceived, RequestReceived};
use crate::limits::RequestLimits;
use crate::proto::control as pb;
use crate::proto::kernel as kpb;

pub use crate::control::flow::ActionRequest;

/// The stable name of a wire command (audit records, CLI); `unspecified` for the zero value.
pub fn command_name(command: pb::Command) -> &'static str {
    match command {
        pb::Command::Unspecified => "unspecified",
        pb::Command::RunDiagnostics => Command::RunDiagnostics.as_str(),
        pb::Command::RequestPromotion => Command::RequestPromotion.as_str(),
        pb::Command::RequestDemotion => Command::RequestDemotion.as_str(),
        pb::Command::ForcePromotion => Command::ForcePromotion.as_str(),
    }
}

/// Parses a wire command number: unspecified is a missing field, an unknown number is named.
pub fn command(number: i32) -> Result<Command, ControlError> {
    match pb::Command::try_from(number) {
        Ok(pb::Command::Unspecified) => Err(ControlError::MissingField { field: "command" }),
        Ok(pb::Command::RunDiagnostics) => Ok(Command::RunDiagnostics),
        Ok(pb::Command::RequestPromotion) => Ok(Command::RequestPromotion),
        Ok(pb::Command::RequestDemotion) => Ok(Command::RequestDemotion),
        Ok(pb::Command::ForcePromotion) => Ok(Command::ForcePromotion),
        Err(_) => Err(ControlError::UnknownCommand(number.to_string())),
    }
}

/// The contract's command of a wire command (`None` for an unspecified one).
pub fn contract_command(c: pb::Command) -> Option<Command> {
    command(c as i32).ok()
}

/// A RequestAction as received, before parsing: what its `requested` record stores.
pub fn request_received(r: &pb::RequestActionRequest) -> RequestReceived {
    let pb::RequestActionRequest { command, target_node, idempotency_key } = r;
    RequestReceived {
        command_name: pb::Command::try_from(*command).map(command_name).unwrap_or("unknown"),
        command_number: *command,
        target_node: target_node.clone(),
        idempotency_key: idempotency_key.clone(),
        limits: r.check_limits().map_err(Box::new),
    }
}

/// A ConfirmAction as received, before parsing: its id as sent and its size check.
pub fn confirm_received(r: &pb::ConfirmActionRequest) -> ConfirmReceived {
    ConfirmReceived { confirmation_id: r.confirmation_id.clone(), limits: r.check_limits().map_err(Box::new) }
}

/// A DeclineAction as received: its id as sent and its size check.
pub fn decline_received(r: &pb::DeclineActionRequest) -> ConfirmReceived {
    let pb::DeclineActionRequest { confirmation_id } = r;
    ConfirmReceived { confirmation_id: confirmation_id.clone(), limits: r.check_limits().map_err(Box::new) }
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

/// Parses RequestAction against the configured node ids.
pub fn action_request(r: &pb::RequestActionRequest, nodes: &[&str]) -> Result<ActionRequest, ControlError> {
    let command = command(r.command)?;
    if r.target_node.is_empty() {
        return Err(ControlError::MissingField { field: "target_node" });
    }
    if !nodes.contains(&r.target_node.as_str()) {
        return Err(ControlError::UnknownNode { field: "target_node", node: r.target_node.clone() });
    }
    if r.idempotency_key.is_empty() {
        return Err(ControlError::MissingField { field: "idempotency_key" });
    }
    if !valid_idempotency_key(&r.idempotency_key) {
        return Err(ControlError::InvalidField {
            field: "idempotency_key",
            why: "must be 1..=128 characters of [A-Za-z0-9._:-]".into(),
        });
    }
    Ok(ActionRequest { command, target: r.target_node.clone(), idempotency_key: r.idempotency_key.clone() })
}

/// Parses ConfirmAction. Only the id is required here; every other field is judged by the
/// confirmation checks, in their fixed order.
pub fn confirm_input(r: &pb::ConfirmActionRequest) -> Result<ConfirmInput, ControlError> {
    if r.confirmation_id.is_empty() {
        return Err(ControlError::MissingField { field: "confirmation_id" });
    }
    Ok(ConfirmInput {
        confirmation_id: r.confirmation_id.clone(),
        plan_digest: r.plan_digest.clone(),
        typed_target: r.typed_target.clone(),
        acknowledged_invariants: r.acknowledged_invariants.clone(),
        accept_responsibility: r.accept_responsibility,
        signatures: r.signatures.iter().map(Signature::from_proto).collect::<Option<Vec<_>>>().ok_or_else(|| {
            ControlError::InvalidField {
                field: "signatures.scheme",
                why: "must be a 16-bit TLS SignatureScheme code".into(),
            }
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(command: i32, target: &str, key: &str) -> pb::RequestActionRequest {
        pb::RequestActionRequest { command, target_node: target.into(), idempotency_key: key.into() }
    }

    #[test]
    fn p7_8_1_invalid_requests_name_the_field() {
        let nodes = ["n1", "n2"];
        let promote = pb::Command::RequestPromotion as i32;
        assert_eq!(action_request(&req(0, "n1", "k"), &nodes), Err(ControlError::MissingField { field: "command" }));
        assert_eq!(action_request(&req(99, "n1", "k"), &nodes), Err(ControlError::UnknownCommand("99".into())));
        assert_eq!(
            action_request(&req(promote, "", "k"), &nodes),
            Err(ControlError::MissingField { field: "target_node" })
        );
        assert_eq!(
            action_request(&req(promote, "n9", "k"), &nodes),
            Err(ControlError::UnknownNode { field: "target_node", node: "n9".into() })
        );
        assert_eq!(
            action_request(&req(promote, "n1", ""), &nodes),
            Err(ControlError::MissingField { field: "idempotency_key" })
        );
        assert!(matches!(
            action_request(&req(promote, "n1", "has space"), &nodes),
            Err(ControlError::InvalidField { field: "idempotency_key", .. })
        ));
        assert_eq!(
            action_request(&req(promote, "n2", "op-1"), &nodes),
            Ok(ActionRequest {
                command: Command::RequestPromotion,
                target: "n2".into(),
                idempotency_key: "op-1".into()
            })
        );
    }

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

    #[test]
    fn commands_parse_and_name_every_wire_value() {
        assert_eq!(command(0), Err(ControlError::MissingField { field: "command" }));
        assert_eq!(command(99), Err(ControlError::UnknownCommand("99".into())));
        assert_eq!(command_name(pb::Command::Unspecified), "unspecified");
        for c in Command::ALL {
            let wire = super::super::present::command(c);
            assert_eq!((command(wire as i32), contract_command(wire)), (Ok(c), Some(c)));
        }
        assert_eq!(contract_command(pb::Command::Unspecified), None);
    }
}
