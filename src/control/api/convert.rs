//! Parsing wire values into domain values: the Actor's requests (each error names its field).
//! The reverse is [`super::present`]; kernel snapshots are read at the kernel edge
//! ([`crate::control::adapter::snapshot`]).

use crate::contract::digest::valid_idempotency_key;
use crate::contract::intent::{Command, Signature};
use crate::control::error::ControlError;
use crate::control::flow::{ConfirmInput, ConfirmReceived, RequestReceived};
use crate::limits::RequestLimits;
use crate::proto::control as pb;

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
