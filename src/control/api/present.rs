//! Presenting domain values on the wire: the one place requirements and the Actor's answers
//! become prost messages (the reverse of [`super::convert`]). An explanation's wire form is
//! [`crate::control::digest::explanation`], since the plan digest is defined over it.
//!
//! Every conversion destructures its domain value completely (no `..`), so a field added to a
//! domain type is a compile error here until it is presented or deliberately dropped; and every
//! proto message is built with all its fields named, so a field added to the proto is a compile
//! error too.

use crate::control::digest::explanation;
use crate::control::explain::{ConfirmationKind, Requirements};
use crate::control::flow::{ConfirmAnswer, DeclineAnswer, PendingAnswer, RequestAnswer};
use crate::proto::control as pb;

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

    #[test]
    fn confirmation_type_names_are_the_protos_own() {
        for k in [ConfirmationKind::Standard, ConfirmationKind::Enhanced] {
            assert_eq!(k.type_name(), confirmation_type(k).as_str_name(), "{k:?}");
        }
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
