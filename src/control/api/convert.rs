//! The Actor's wire edge, both ways: parsing requests into domain values (each error names its
//! field; sizes checked against [`crate::limits`]), and presenting the flow's domain answers as
//! prost messages. Kernel snapshots are read at the kernel edge
//! ([`crate::control::adapter::snapshot`]); an explanation's wire form is
//! [`crate::control::digest::explanation`], since the plan digest is defined over it.
//!
//! Every presentation destructures its domain value completely (no `..`), so a field added to a
//! domain type is a compile error here until it is presented or deliberately dropped; and every
//! proto message is built with all its fields named, so a field added to the proto is a compile
//! error too. Every parse destructures the prost request for the same reason.

use crate::audit::record::Who;
use crate::contract::action::Requester;
use crate::contract::digest::valid_idempotency_key;
use crate::contract::intent::{Command, Signature};
use crate::control::digest::{command_name, contract_command, explanation};
use crate::control::error::ControlError;
use crate::control::explain::{ConfirmationKind, Requirements};
use crate::control::flow::{Caller, ConfirmAnswer, DeclineAnswer, PendingAnswer, RequestAnswer};
use crate::control::flow::{ConfirmInput, ConfirmReceived, RequestReceived};
use crate::limits::RequestLimits;
use crate::proto::control as pb;
use crate::tls::authz::Permit;

pub use crate::control::flow::ActionRequest;

/// The gRPC metadata key that marks a retried call.
pub const RETRY_METADATA: &str = "grpc-previous-rpc-attempts";

/// The value of `grpc-previous-rpc-attempts`, if the call carries it (the flow refuses a
/// retried mutating call, recording it).
pub fn retry_attempts<T>(req: &tonic::Request<T>) -> Option<String> {
    req.metadata().get(RETRY_METADATA).map(|v| v.to_str().unwrap_or("?").to_string())
}

/// The caller, as the authorization layer's permit established it: the requester the kernel
/// records, the certificate fingerprint a pending action is bound to, the identity audit
/// records store, and the peer address.
pub fn caller(p: &Permit) -> Caller {
    let Permit { identity, peer, .. } = p;
    Caller {
        requester: Requester {
            role: identity.role.to_string(),
            name: identity.name.clone(),
            cert_sha256: identity.cert_sha256.clone(),
        },
        fingerprint: identity.cert_sha256.clone(),
        who: Who::from(identity),
        peer: peer.map(|a| a.to_string()).unwrap_or_default(),
    }
}

/// Parses a wire command number: unspecified is a missing field, an unknown number is named.
pub fn command(number: i32) -> Result<Command, ControlError> {
    match pb::Command::try_from(number) {
        Ok(c) => contract_command(c).ok_or(ControlError::MissingField { field: "command" }),
        Err(_) => Err(ControlError::UnknownCommand(number.to_string())),
    }
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
    let pb::ConfirmActionRequest {
        confirmation_id,
        plan_digest: _,
        typed_target: _,
        acknowledged_invariants: _,
        accept_responsibility: _,
        signatures: _,
    } = r;
    ConfirmReceived { confirmation_id: confirmation_id.clone(), limits: r.check_limits().map_err(Box::new) }
}

/// A DeclineAction as received: its id as sent and its size check.
pub fn decline_received(r: &pb::DeclineActionRequest) -> ConfirmReceived {
    let pb::DeclineActionRequest { confirmation_id } = r;
    ConfirmReceived { confirmation_id: confirmation_id.clone(), limits: r.check_limits().map_err(Box::new) }
}

/// Parses RequestAction against the configured node ids.
pub fn action_request(r: &pb::RequestActionRequest, nodes: &[&str]) -> Result<ActionRequest, ControlError> {
    let pb::RequestActionRequest { command: number, target_node, idempotency_key } = r;
    let command = command(*number)?;
    if target_node.is_empty() {
        return Err(ControlError::MissingField { field: "target_node" });
    }
    if !nodes.contains(&target_node.as_str()) {
        return Err(ControlError::UnknownNode { field: "target_node", node: target_node.clone() });
    }
    if idempotency_key.is_empty() {
        return Err(ControlError::MissingField { field: "idempotency_key" });
    }
    if !valid_idempotency_key(idempotency_key) {
        return Err(ControlError::InvalidField {
            field: "idempotency_key",
            why: "must be 1..=128 characters of [A-Za-z0-9._:-]".into(),
        });
    }
    Ok(ActionRequest { command, target: target_node.clone(), idempotency_key: idempotency_key.clone() })
}

/// Parses ConfirmAction. Only the id is required here; every other field is judged by the
/// confirmation checks, in their fixed order.
pub fn confirm_input(r: &pb::ConfirmActionRequest) -> Result<ConfirmInput, ControlError> {
    let pb::ConfirmActionRequest {
        confirmation_id,
        plan_digest,
        typed_target,
        acknowledged_invariants,
        accept_responsibility,
        signatures,
    } = r;
    if confirmation_id.is_empty() {
        return Err(ControlError::MissingField { field: "confirmation_id" });
    }
    Ok(ConfirmInput {
        confirmation_id: confirmation_id.clone(),
        plan_digest: plan_digest.clone(),
        typed_target: typed_target.clone(),
        acknowledged_invariants: acknowledged_invariants.clone(),
        accept_responsibility: *accept_responsibility,
        signatures: signatures.iter().map(Signature::from_proto).collect::<Option<Vec<_>>>().ok_or_else(|| {
            ControlError::InvalidField {
                field: "signatures.scheme",
                why: "must be a 16-bit TLS SignatureScheme code".into(),
            }
        })?,
    })
}

// ---- Presenting: domain answers as wire messages. ----

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

    #[test]
    fn commands_parse_and_name_every_wire_value() {
        assert_eq!(command(0), Err(ControlError::MissingField { field: "command" }));
        assert_eq!(command(99), Err(ControlError::UnknownCommand("99".into())));
        assert_eq!(command_name(pb::Command::Unspecified), "unspecified");
        for c in Command::ALL {
            let wire = crate::control::digest::command(c);
            assert_eq!(command_name(wire), c.as_str());
            assert_eq!((command(wire as i32), contract_command(wire)), (Ok(c), Some(c)));
        }
        assert_eq!(contract_command(pb::Command::Unspecified), None);
    }
}
