//! The kernel's answers as JSON for the audit trail: every field, verbatim.

use serde_json::{Value, json};

use crate::proto::kernel as kpb;

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
