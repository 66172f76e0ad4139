//! The plan digest: an explanation's wire form (the protobuf message an operator is shown) and
//! the hex SHA-256 of its bytes, which clients recompute from what they were shown. Also the
//! wire form of a command both ways and its stable name, which the explanation's wire form
//! uses and the audit records, the access log and the CLI share.
//!
//! The wire form lives here, below the api, because the digest is defined over it: the flow
//! computes the digest when it mints a pending action, and the api presents the same message.
//! Every conversion destructures its domain value completely (no `..`) and builds its proto
//! message with every field named, so a field added on either side is a compile error here
//! until it is presented (and digested) or deliberately dropped.

use sha2::{Digest, Sha256};

use crate::audit::record::Observed;
use crate::contract::intent::Command;
use crate::control::explain::{Explanation, Fact, InvariantRef, KernelCheck};
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

/// The contract's command of a wire command (`None` for the unspecified zero value).
pub fn contract_command(c: pb::Command) -> Option<Command> {
    match c {
        pb::Command::Unspecified => None,
        pb::Command::RunDiagnostics => Some(Command::RunDiagnostics),
        pb::Command::RequestPromotion => Some(Command::RequestPromotion),
        pb::Command::RequestDemotion => Some(Command::RequestDemotion),
        pb::Command::ForcePromotion => Some(Command::ForcePromotion),
    }
}

/// The stable name of a wire command (audit records, CLI): the contract command's name, or
/// `unspecified` for the zero value.
pub fn command_name(c: pb::Command) -> &'static str {
    contract_command(c).map_or("unspecified", Command::as_str)
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

/// The wire form of an explanation: what the operator is shown and [`plan_digest`] covers.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::action::{Action, ActionKind};

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
            crate::control::adapter::snapshot::observed(&expected.observed[0]),
            e.observed[0],
            "observation points round-trip"
        );
    }
}
