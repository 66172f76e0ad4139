//! Explanations: what an action is, whom it affects, what cannot be undone, which invariants
//! and kernel checks are involved, and the facts read from one snapshot per node.
//!
//! Pure: the same command, target and snapshots give the same explanation, byte for byte (it
//! holds no id, no time, no random value). It states facts and the checks the kernel will make;
//! it never predicts, ranks or recommends: only the kernel decides (P7-A3, P7-E3).

use sha2::{Digest, Sha256};

use crate::contract::action::{Action, ActionKind};
use crate::contract::checks;
use crate::proto::control as pb;
use crate::proto::kernel as kpb;

/// The statement of an invariant id (requirements §1).
pub fn statement(id: &str) -> &'static str {
    match id {
        "P6-A1" => "At most one writer: one primary per epoch.",
        "P6-A1a" => "Force means the operator asserts the old primary is gone; its use is always audited.",
        "P6-A2" => "Authority moves atomically.",
        "P6-A3" => "No implicit claim of authority.",
        "P6-S1" => "No acknowledged write is lost.",
        "P6-S2" => "The WAL prefix is preserved.",
        "P6-F1" => "Fail closed.",
        "P6-D1" => "Deterministic decisions.",
        "P7-A1" => "No implicit authority: a mutation happens only on an explicit request.",
        "P7-A2" => "Explicit human intent: dangerous actions need confirmation; no default acceptance.",
        "P7-A3" => "No delegated decisions: facts, not choices.",
        "P7-E1" => "One command = one kernel action.",
        "P7-E2" => "No partial execution; an unknown outcome is reported as unknown.",
        "P7-E3" => "Kernel validation is final: rejections come back verbatim.",
        "P7-F1" => "Fail closed: no mutating retries, no fallback paths.",
        "P7-F2" => "A control-plane crash never mutates kernel state.",
        "P7-F3" => "No hidden retries; duplicates are detected or rejected.",
        "P7-D1" => "Deterministic presentation.",
        "P7-D2" => "Deterministic decisions.",
        "P7-O1" => "Complete observability.",
        "P7-O2" => "Explainability: every rejection cites the invariant it protects.",
        "P7-O3" => "Auditability: who, when, what, on which state, with what outcome.",
        "P7-S1" => "No background mutation.",
        "P7-S2" => "No interference with the kernel.",
        "P7-S3" => "Nothing beyond the closed command set.",
        _ => "",
    }
}

fn inv(ids: &[&str]) -> Vec<pb::InvariantRef> {
    ids.iter().map(|id| pb::InvariantRef { id: (*id).into(), statement: statement(id).into() }).collect()
}

/// The kernel's checks of an action, cited from the one table the kernel rejects by
/// ([`checks`]): the explanation states them, the kernel decides them.
fn cite(table: &[checks::Check], target: &str, epoch: u64, force: bool) -> Vec<pb::KernelCheck> {
    table
        .iter()
        .map(|c| pb::KernelCheck {
            order: c.order,
            description: c.describe(target, epoch),
            rejection_code: c.code.into(),
            invariants: c.invariants.iter().map(|s| s.to_string()).collect(),
            skipped: force && c.skipped_by_force,
        })
        .collect()
}

/// The kernel action a command dispatches.
pub fn action_for(command: pb::Command, target: &str) -> Option<Action> {
    let (kind, force) = match command {
        pb::Command::RunDiagnostics => (ActionKind::Diagnostics, false),
        pb::Command::RequestPromotion => (ActionKind::Promote, false),
        pb::Command::RequestDemotion => (ActionKind::Demote, false),
        pb::Command::ForcePromotion => (ActionKind::Promote, true),
        pb::Command::Unspecified => return None,
    };
    Some(Action { kind, target_node: target.to_string(), force })
}

/// The stable name of a command (audit records, CLI).
pub fn command_name(command: pb::Command) -> &'static str {
    match command {
        pb::Command::RunDiagnostics => "run_diagnostics",
        pb::Command::RequestPromotion => "request_promotion",
        pb::Command::RequestDemotion => "request_demotion",
        pb::Command::ForcePromotion => "force_promotion",
        pb::Command::Unspecified => "unspecified",
    }
}

/// The command [`command_name`] names, if any.
pub fn command_from_name(name: &str) -> Option<pb::Command> {
    [
        pb::Command::RunDiagnostics,
        pb::Command::RequestPromotion,
        pb::Command::RequestDemotion,
        pb::Command::ForcePromotion,
    ]
    .into_iter()
    .find(|c| command_name(*c) == name)
}

fn role_name(r: i32) -> &'static str {
    match kpb::Role::try_from(r).unwrap_or(kpb::Role::Unspecified) {
        kpb::Role::Primary => "primary",
        kpb::Role::Replica => "replica",
        kpb::Role::Demoted => "demoted",
        kpb::Role::Halted => "halted",
        kpb::Role::Unspecified => "unknown",
    }
}

/// Facts of one snapshot, in a fixed order. Only kernel state: nothing that depends on timing.
fn facts(s: &kpb::NodeSnapshot) -> Vec<pb::Fact> {
    let node = s.observation.as_ref().map(|o| o.node_id.clone()).unwrap_or_default();
    let a = s.authority.clone().unwrap_or_default();
    let r = s.replication.clone().unwrap_or_default();
    let p = s.promotion.unwrap_or_default();
    let mut out = vec![
        ("role", role_name(a.role).to_string()),
        ("epoch", a.epoch.to_string()),
        ("highest_granted_epoch", a.highest_granted_epoch.to_string()),
        ("last_index", r.last_index.to_string()),
        ("last_epoch", r.last_epoch.to_string()),
        ("commit_index", r.commit_index.to_string()),
        ("current_epoch_fenced", p.current_epoch_fenced.to_string()),
        ("fence_index", p.fence_index.to_string()),
        ("known_primary_commit_index", p.known_primary_commit_index.to_string()),
        ("control_seq", s.observation.as_ref().map(|o| o.control_seq).unwrap_or(0).to_string()),
    ];
    if a.role == kpb::Role::Halted as i32 {
        let reason =
            kpb::HaltReason::try_from(a.halt_reason).map(|h| h.as_str_name()).unwrap_or("HALT_REASON_UNSPECIFIED");
        out.push(("halt_reason", reason.to_string()));
    }
    out.into_iter().map(|(name, value)| pb::Fact { node_id: node.clone(), name: name.into(), value }).collect()
}

/// Builds the explanation of `command` on `target` from one snapshot per node (configuration
/// order; `None` for a node that could not be observed). The target must have been observed.
pub fn explain(
    command: pb::Command,
    target: &str,
    nodes: &[(String, Option<kpb::NodeSnapshot>)],
) -> Option<pb::Explanation> {
    let action = action_for(command, target)?;
    let target_snap = nodes.iter().find(|(id, _)| id == target).and_then(|(_, s)| s.as_ref())?;
    let all: Vec<String> = nodes.iter().map(|(id, _)| id.clone()).collect();
    let mut e = pb::Explanation {
        command: command as i32,
        action: Some(action.to_proto()),
        // A target snapshot without its observation point explains nothing (no sequence to check).
        expected_control_seq: target_snap.observation.as_ref()?.control_seq,
        observed: nodes.iter().filter_map(|(_, s)| s.as_ref().and_then(|s| s.observation.clone())).collect(),
        unreachable_nodes: nodes.iter().filter(|(_, s)| s.is_none()).map(|(id, _)| id.clone()).collect(),
        facts: nodes.iter().filter_map(|(_, s)| s.as_ref()).flat_map(facts).collect(),
        ..Default::default()
    };
    match command {
        pb::Command::RequestPromotion | pb::Command::ForcePromotion => {
            let force = command == pb::Command::ForcePromotion;
            e.plan_epoch = promotion_epoch(nodes);
            e.summary = if force {
                format!(
                    "Force the promotion of {target} to primary of epoch {}, skipping the fence check.",
                    e.plan_epoch
                )
            } else {
                format!("Promote {target} to primary of epoch {}.", e.plan_epoch)
            };
            e.affected_nodes = all;
            e.irreversible = vec![
                format!(
                    "The new epoch {target} asks for is granted durably by every node that grants it and is never \
                     granted again, whether or not the promotion succeeds."
                ),
                format!(
                    "If it succeeds, {target} writes EpochStart of the new epoch: no node of an older epoch can write \
                     again without being demoted and following it."
                ),
            ];
            if force {
                e.irreversible.push(
                    "The fence check is skipped on your assertion that the previous primary is gone (P6-A1a). If it \
                     is still running it halts (AuthorityAmbiguity) when it learns of the new epoch, and writes it \
                     accepted that no majority holds are discarded (a copy is kept) when it is later demoted."
                        .into(),
                );
                e.invariants = inv(&["P6-A1", "P6-A1a", "P6-A2", "P6-S1", "P6-S2", "P7-A2", "P7-E1", "P7-E3"]);
            } else {
                e.invariants = inv(&["P6-A1", "P6-A2", "P6-S1", "P6-S2", "P7-E1", "P7-E3"]);
            }
            e.kernel_checks = cite(checks::PROMOTION, target, e.plan_epoch, force);
        }
        pb::Command::RequestDemotion => {
            e.plan_epoch = target_snap.authority.as_ref()?.led_epoch;
            e.summary = format!(
                "Demote {target}: end epoch {}: stop its writes, append a Fence, replicate it, step down.",
                e.plan_epoch
            );
            e.affected_nodes = all;
            e.irreversible = vec![format!(
                "{target} never accepts another write in its epoch; writes resume only after a node is promoted to a \
                 new epoch."
            )];
            e.invariants = inv(&["P6-A2", "P6-S1", "P7-E1", "P7-E3"]);
            e.kernel_checks = cite(checks::DEMOTION, target, e.plan_epoch, false);
        }
        pb::Command::RunDiagnostics => {
            e.summary = format!(
                "Run read-only diagnostics on {target}: read its WAL and ledger and check every checksum, the index \
                 sequence and the hash chain."
            );
            e.affected_nodes = vec![target.to_string()];
            e.irreversible = vec![];
            e.invariants = inv(&["P7-E1", "P7-S1"]);
            e.declared_cost_bytes = target_snap.diagnostics_cost_bytes;
        }
        pb::Command::Unspecified => return None,
    }
    Some(e)
}

/// The epoch a promotion planned on `nodes` creates: one above the highest epoch any observed
/// node knows (its epoch or the highest it granted), the same quantity the kernel compares with.
/// A node that could not be observed contributes nothing; if it knows a higher epoch, the kernel
/// (which asks every peer) refuses the plan as stale rather than superseding that epoch.
pub fn promotion_epoch(nodes: &[(String, Option<kpb::NodeSnapshot>)]) -> u64 {
    nodes
        .iter()
        .filter_map(|(_, s)| s.as_ref()?.authority.as_ref())
        .map(|a| a.epoch.max(a.highest_granted_epoch))
        .max()
        .unwrap_or(0)
        + 1
}

/// Hex SHA-256 of the explanation's canonical (protobuf) bytes. The explanation has no map
/// fields, so its encoding is deterministic.
pub fn plan_digest(e: &pb::Explanation) -> String {
    use prost::Message;
    hex::encode(Sha256::digest(e.encode_to_vec()))
}

/// What ConfirmAction must contain for `command`.
pub fn requirements(command: pb::Command, target: &str, requester_name: &str) -> pb::ConfirmationRequirements {
    if command == pb::Command::ForcePromotion {
        pb::ConfirmationRequirements {
            r#type: pb::ConfirmationType::Enhanced as i32,
            typed_target: target.into(),
            required_acknowledgements: vec!["P6-A1".into(), "P6-A1a".into()],
            responsibility_required: true,
            responsibility_statement: format!(
                "I, {requester_name}, assert that the previous primary is gone, and I take responsibility for forcing \
                 {target} to primary without the fence check."
            ),
        }
    } else {
        pb::ConfirmationRequirements {
            r#type: pb::ConfirmationType::Standard as i32,
            typed_target: target.into(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, role: kpb::Role, seq: u64) -> kpb::NodeSnapshot {
        kpb::NodeSnapshot {
            observation: Some(kpb::ObservationPoint {
                node_id: id.into(),
                control_seq: seq,
                epoch: 1,
                commit_index: 5,
            }),
            authority: Some(kpb::AuthorityView { role: role as i32, epoch: 1, ..Default::default() }),
            replication: Some(kpb::ReplicationView {
                last_index: 5,
                last_epoch: 1,
                commit_index: 5,
                ..Default::default()
            }),
            promotion: Some(kpb::PromotionView::default()),
            diagnostics_cost_bytes: 4096,
            execute_calls_received: seq * 7,
            ..Default::default()
        }
    }

    fn cluster() -> Vec<(String, Option<kpb::NodeSnapshot>)> {
        vec![
            ("n1".into(), Some(snap("n1", kpb::Role::Primary, 2))),
            ("n2".into(), Some(snap("n2", kpb::Role::Replica, 1))),
            ("n3".into(), None),
        ]
    }

    #[test]
    fn p7_d1_same_request_and_state_give_identical_explanations() {
        let a = explain(pb::Command::RequestPromotion, "n2", &cluster()).expect("explained");
        let b = explain(pb::Command::RequestPromotion, "n2", &cluster()).expect("explained");
        use prost::Message;
        assert_eq!(a.encode_to_vec(), b.encode_to_vec());
        assert_eq!(plan_digest(&a), plan_digest(&b));
        let mut other = cluster();
        other[1].1 = Some(snap("n2", kpb::Role::Replica, 9));
        let c = explain(pb::Command::RequestPromotion, "n2", &other).expect("explained");
        assert_ne!(plan_digest(&a), plan_digest(&c), "a different kernel state is a different plan");
        assert_eq!(c.expected_control_seq, 9);
    }

    #[test]
    fn p7_a3_explanations_state_facts_and_never_recommend() {
        for cmd in [
            pb::Command::RequestPromotion,
            pb::Command::ForcePromotion,
            pb::Command::RequestDemotion,
            pb::Command::RunDiagnostics,
        ] {
            let e = explain(cmd, "n2", &cluster()).expect("explained");
            let text = format!("{e:?}").to_lowercase();
            for word in ["recommend", "should", "suggest", "safe to", "best", "score", "will succeed"] {
                assert!(!text.contains(word), "{cmd:?} explanation contains {word:?}");
            }
            assert_eq!(e.unreachable_nodes, vec!["n3".to_string()]);
            assert!(!e.invariants.is_empty());
        }
    }

    #[test]
    fn force_skips_only_the_fence_check_and_needs_enhanced_confirmation() {
        let e = explain(pb::Command::ForcePromotion, "n2", &cluster()).expect("explained");
        let skipped: Vec<u32> = e.kernel_checks.iter().filter(|c| c.skipped).map(|c| c.order).collect();
        assert_eq!(skipped, vec![2]);
        let r = requirements(pb::Command::ForcePromotion, "n2", "alice");
        assert_eq!(r.r#type, pb::ConfirmationType::Enhanced as i32);
        assert!(r.required_acknowledgements.contains(&"P6-A1a".to_string()));
        let s = requirements(pb::Command::RequestPromotion, "n2", "alice");
        assert_eq!(s.r#type, pb::ConfirmationType::Standard as i32);
    }

    #[test]
    fn diagnostics_declare_their_cost_before_running() {
        let e = explain(pb::Command::RunDiagnostics, "n2", &cluster()).expect("explained");
        assert_eq!(e.declared_cost_bytes, 4096);
        assert_eq!(e.affected_nodes, vec!["n2".to_string()]);
    }
}
