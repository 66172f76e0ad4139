//! Presenting domain values on the wire: the one place explanations, requirements and the
//! Actor's answers become prost messages (the reverse of [`super::convert`]).
//!
//! Every conversion destructures its domain value completely (no `..`), so a field added to a
//! domain type is a compile error here until it is presented or deliberately dropped; and every
//! proto message is built with all its fields named, so a field added to the proto is a compile
//! error too.

use sha2::{Digest, Sha256};

use crate::audit::record::Observed;
use crate::contract::intent::Command;
use crate::control::explain::{ConfirmationKind, Explanation, Fact, InvariantRef, KernelCheck, Requirements};
use crate::control::flow::{ConfirmAnswer, DeclineAnswer, PendingAnswer, RequestAnswer};
use crate::proto::control as pb;
use crate::proto::kernel as kpb;

/// The wire form of a command.
pub fn command(c: Command) -> pb::Command {
    match c {
        Command::RunDiagnostics => pb::Command::RunDiagnostics,
        Command::RequestPromotion => pb::Command::RequestPromotion,
        Command::RequestDemotion => pb::Command::RequestDemotion,
        Command::ForcePromotion => pb::Command::ForcePromotion,
    }
}

/// The wire form of an observation point.
pub fn observation(o: &Observed) -> kpb::ObservationPoint {
    let Observed { node_id, control_seq, epoch, commit_index } = o;
    kpb::ObservationPoint {
        node_id: node_id.clone(),
        control_seq: *control_seq,
        epoch: *epoch,
        commit_index: *commit_index,
    }
}

fn invariant(i: &InvariantRef) -> pb::InvariantRef {
    let InvariantRef { id, statement } = i;
    pb::InvariantRef { id: id.clone(), statement: statement.clone() }
}

fn kernel_check(c: &KernelCheck) -> pb::KernelCheck {
    let KernelCheck { order, description, rejection_code, invariants, skipped } = c;
    pb::KernelCheck {
        order: *order,
        description: description.clone(),
        rejection_code: rejection_code.clone(),
        invariants: invariants.clone(),
        skipped: *skipped,
    }
}

fn fact(f: &Fact) -> pb::Fact {
    let Fact { node_id, name, value } = f;
    pb::Fact { node_id: node_id.clone(), name: name.clone(), value: value.clone() }
}

/// The wire form of an explanation: what the operator is shown and the plan digest covers.
pub fn explanation(e: &Explanation) -> pb::Explanation {
    let Explanation {
        command: c,
        action,
        summary,
        affected_nodes,
        irreversible,
        invariants,
        kernel_checks,
        facts,
        declared_cost_bytes,
        expected_control_seq,
        observed,
        unreachable_nodes,
        plan_epoch,
    } = e;
    pb::Explanation {
        command: command(*c) as i32,
        action: Some(action.to_proto()),
        summary: summary.clone(),
        affected_nodes: affected_nodes.clone(),
        irreversible: irreversible.clone(),
        invariants: invariants.iter().map(invariant).collect(),
        kernel_checks: kernel_checks.iter().map(kernel_check).collect(),
        facts: facts.iter().map(fact).collect(),
        declared_cost_bytes: *declared_cost_bytes,
        expected_control_seq: *expected_control_seq,
        observed: observed.iter().map(observation).collect(),
        unreachable_nodes: unreachable_nodes.clone(),
        plan_epoch: *plan_epoch,
    }
}

/// The wire form of a confirmation kind.
pub fn confirmation_type(k: ConfirmationKind) -> pb::ConfirmationType {
    match k {
        ConfirmationKind::Standard => pb::ConfirmationType::Standard,
        ConfirmationKind::Enhanced => pb::ConfirmationType::Enhanced,
    }
}

/// The wire form of a confirmation's requirements.
pub fn requirements(r: &Requirements) -> pb::ConfirmationRequirements {
    let Requirements {
        kind,
        typed_target,
        required_acknowledgements,
        responsibility_required,
        responsibility_statement,
    } = r;
    pb::ConfirmationRequirements {
        r#type: confirmation_type(*kind) as i32,
        typed_target: typed_target.clone(),
        required_acknowledgements: required_acknowledgements.clone(),
        responsibility_required: *responsibility_required,
        responsibility_statement: responsibility_statement.clone(),
    }
}

/// Hex SHA-256 of an explanation's wire bytes: what clients recompute from the explanation
/// they were shown. The message has no map fields, so its encoding is deterministic.
pub fn digest_of(e: &pb::Explanation) -> String {
    use prost::Message;
    hex::encode(Sha256::digest(e.encode_to_vec()))
}

/// The plan digest of an explanation: the digest of its wire form ([`digest_of`]).
pub fn plan_digest(e: &Explanation) -> String {
    digest_of(&explanation(e))
}

/// The wire form of RequestAction's answer (its checkpoint is attached by the handler).
pub fn request_answer(a: RequestAnswer) -> pb::RequestActionResponse {
    let response = match a {
        RequestAnswer::Pending(p) => {
            let PendingAnswer {
                confirmation_id,
                explanation: e,
                plan_digest,
                requirements: r,
                expires_after_seconds,
                correlation_id,
                idempotency_key,
                intent,
                signatures_required,
            } = *p;
            pb::request_action_response::Response::Pending(pb::PendingAction {
                confirmation_id,
                explanation: Some(explanation(&e)),
                plan_digest,
                requirements: Some(requirements(&r)),
                expires_after_seconds,
                correlation_id,
                idempotency_key,
                intent,
                signatures_required,
            })
        }
        RequestAnswer::Replayed { node, record, correlation_id } => {
            pb::request_action_response::Response::Replayed(pb::ReplayedOutcome {
                node_id: node,
                record: Some(*record),
                correlation_id,
            })
        }
    };
    pb::RequestActionResponse { response: Some(response), audit_checkpoint: String::new() }
}

/// The wire form of ConfirmAction's answer (its checkpoint is attached by the handler).
pub fn confirm_answer(a: ConfirmAnswer) -> pb::ConfirmActionResponse {
    let ConfirmAnswer { replayed, record, control_seq_after, correlation_id, idempotency_key, target_node } = a;
    pb::ConfirmActionResponse {
        outcome: if replayed { pb::ActionOutcome::Replayed } else { pb::ActionOutcome::Executed } as i32,
        record: Some(*record),
        control_seq_after,
        correlation_id,
        idempotency_key,
        target_node,
        audit_checkpoint: String::new(),
    }
}

/// The wire form of DeclineAction's answer (its checkpoint is attached by the handler).
pub fn decline_answer(a: DeclineAnswer) -> pb::DeclineActionResponse {
    let DeclineAnswer { correlation_id, outcome } = a;
    pb::DeclineActionResponse { correlation_id, outcome: outcome.as_str().into(), audit_checkpoint: String::new() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::action::{Action, ActionKind};

    #[test]
    fn confirmation_type_names_are_the_protos_own() {
        for k in [ConfirmationKind::Standard, ConfirmationKind::Enhanced] {
            assert_eq!(k.type_name(), confirmation_type(k).as_str_name(), "{k:?}");
        }
    }

    #[test]
    fn commands_present_as_the_wire_command_of_the_same_name() {
        for c in Command::ALL {
            assert_eq!(super::super::convert::command_name(command(c)), c.as_str());
            assert_eq!(super::super::convert::command(command(c) as i32), Ok(c));
        }
    }

    /// Every field of an explanation reaches the wire, and the digest is that of the wire bytes.
    #[test]
    fn an_explanation_presents_every_field() {
        let e = Explanation {
            command: Command::ForcePromotion,
            action: Action { kind: ActionKind::Promote, target_node: "n2".into(), force: true },
            summary: "s".into(),
            affected_nodes: vec!["n1".into(), "n2".into()],
            irreversible: vec!["i".into()],
            invariants: vec![InvariantRef { id: "P6-A1".into(), statement: "st".into() }],
            kernel_checks: vec![KernelCheck {
                order: 2,
                description: "d".into(),
                rejection_code: "AERO_PROMOTION_NO_QUORUM".into(),
                invariants: vec!["P6-A1".into()],
                skipped: true,
            }],
            facts: vec![Fact { node_id: "n1".into(), name: "role".into(), value: "primary".into() }],
            declared_cost_bytes: 7,
            expected_control_seq: 9,
            observed: vec![Observed { node_id: "n1".into(), control_seq: 9, epoch: 3, commit_index: 4 }],
            unreachable_nodes: vec!["n3".into()],
            plan_epoch: 4,
        };
        let wire = explanation(&e);
        let expected = pb::Explanation {
            command: pb::Command::ForcePromotion as i32,
            action: Some(kpb::Action { kind: kpb::ActionKind::Promote as i32, target_node: "n2".into(), force: true }),
            summary: "s".into(),
            affected_nodes: vec!["n1".into(), "n2".into()],
            irreversible: vec!["i".into()],
            invariants: vec![pb::InvariantRef { id: "P6-A1".into(), statement: "st".into() }],
            kernel_checks: vec![pb::KernelCheck {
                order: 2,
                description: "d".into(),
                rejection_code: "AERO_PROMOTION_NO_QUORUM".into(),
                invariants: vec!["P6-A1".into()],
                skipped: true,
            }],
            facts: vec![pb::Fact { node_id: "n1".into(), name: "role".into(), value: "primary".into() }],
            declared_cost_bytes: 7,
            expected_control_seq: 9,
            observed: vec![kpb::ObservationPoint { node_id: "n1".into(), control_seq: 9, epoch: 3, commit_index: 4 }],
            unreachable_nodes: vec!["n3".into()],
            plan_epoch: 4,
        };
        assert_eq!(wire, expected);
        assert_eq!(plan_digest(&e), digest_of(&expected));
        assert_eq!(
            super::super::convert::observed(&expected.observed[0]),
            e.observed[0],
            "observation points round-trip"
        );
    }

    #[test]
    fn requirements_present_every_field() {
        let r = Requirements {
            kind: ConfirmationKind::Enhanced,
            typed_target: "n2".into(),
            required_acknowledgements: vec!["P6-A1".into(), "P6-A1a".into()],
            responsibility_required: true,
            responsibility_statement: "I".into(),
        };
        assert_eq!(
            requirements(&r),
            pb::ConfirmationRequirements {
                r#type: pb::ConfirmationType::Enhanced as i32,
                typed_target: "n2".into(),
                required_acknowledgements: vec!["P6-A1".into(), "P6-A1a".into()],
                responsibility_required: true,
                responsibility_statement: "I".into(),
            }
        );
    }
}
