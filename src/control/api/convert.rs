//! Parsing requests into domain values (each error names its field).

use crate::contract::digest::valid_idempotency_key;
use crate::contract::intent::Signature;
use crate::control::error::ControlError;
use crate::control::flow::ConfirmInput;
use crate::proto::control as pb;

/// A parsed RequestAction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRequest {
    /// The command.
    pub command: pb::Command,
    /// A configured node.
    pub target: String,
    /// A valid idempotency key.
    pub idempotency_key: String,
}

/// Parses RequestAction against the configured node ids.
pub fn action_request(r: &pb::RequestActionRequest, nodes: &[&str]) -> Result<ActionRequest, ControlError> {
    let command = match pb::Command::try_from(r.command) {
        Ok(pb::Command::Unspecified) => return Err(ControlError::MissingField { field: "command" }),
        Ok(c) => c,
        Err(_) => return Err(ControlError::UnknownCommand(r.command.to_string())),
    };
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
                command: pb::Command::RequestPromotion,
                target: "n2".into(),
                idempotency_key: "op-1".into()
            })
        );
    }
}
