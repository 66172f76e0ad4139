//! Parsing requests into domain values (each error names its field), and the kernel's answers
//! into JSON for the audit trail (every field, verbatim).

use serde_json::{Value, json};

use crate::control::error::ControlError;
use crate::control::flow::ConfirmInput;
use crate::kernel::digest::valid_idempotency_key;
use crate::proto::control as pb;
use crate::proto::kernel as kpb;

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
    })
}

/// A kernel rejection as JSON.
pub fn rejection_json(r: &kpb::Rejection) -> Value {
    json!({
        "code": r.code,
        "message": r.message,
        "invariants": r.invariants,
        "current_control_seq": r.current_control_seq,
        "current_epoch": r.current_epoch,
    })
}

fn result_json(r: &kpb::ActionResult) -> Value {
    use kpb::action_result::Result as R;
    match &r.result {
        Some(R::Promotion(p)) => {
            json!({"promotion": {"epoch": p.epoch, "forced": p.forced, "granted_by": p.granted_by}})
        }
        Some(R::Demotion(d)) => {
            json!({"demotion": {"fence_index": d.fence_index, "epoch": d.epoch, "from_halt": d.from_halt}})
        }
        Some(R::Diagnostics(d)) => json!({"diagnostics": {
            "wal_bytes_read": d.wal_bytes_read,
            "ledger_bytes_read": d.ledger_bytes_read,
            "wal_records_checked": d.wal_records_checked,
            "ledger_records_checked": d.ledger_records_checked,
            "wal_ok": d.wal_ok,
            "ledger_ok": d.ledger_ok,
            "first_problem": d.first_problem,
            "declared_cost_bytes": d.declared_cost_bytes,
        }}),
        None => Value::Null,
    }
}

/// A decided record as JSON, every field.
pub fn decided_json(d: &kpb::DecidedRecord) -> Value {
    let decision = kpb::Decision::try_from(d.decision).map(|x| x.as_str_name()).unwrap_or("DECISION_UNSPECIFIED");
    json!({
        "idempotency_key": d.idempotency_key,
        "request_digest": hex::encode(&d.request_digest),
        "requester": d.requester.as_ref().map(|r| json!({"role": r.role, "name": r.name, "cert_sha256": r.cert_sha256})),
        "action": d.action.as_ref().map(|a| json!({
            "kind": kpb::ActionKind::try_from(a.kind).map(|k| k.as_str_name()).unwrap_or("?"),
            "target_node": a.target_node,
            "force": a.force,
        })),
        "decision": decision,
        "rejection": d.rejection.as_ref().map(rejection_json),
        "result": d.result.as_ref().map(result_json),
        "control_seq": d.control_seq,
        "plan_epoch": d.plan_epoch,
        "confirmation": d.confirmation.as_ref().map(|c| json!({
            "kind": kpb::ConfirmationKind::try_from(c.kind).map(|k| k.as_str_name()).unwrap_or("?"),
            "acknowledged_invariants": c.acknowledged_invariants,
            "accept_responsibility": c.accept_responsibility,
        })),
    })
}

/// A whole Execute answer as JSON.
pub fn execute_json(r: &kpb::ExecuteResponse) -> Value {
    json!({
        "record": r.record.as_ref().map(decided_json),
        "replayed": r.replayed,
        "unrecorded_rejection": r.unrecorded_rejection.as_ref().map(rejection_json),
        "control_seq_after": r.control_seq_after,
        "observation_after": r.observation_after.as_ref().map(|o| json!({
            "node_id": o.node_id, "control_seq": o.control_seq, "epoch": o.epoch, "commit_index": o.commit_index,
        })),
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
