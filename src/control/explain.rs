//! Explanations: what an action is, whom it affects, what cannot be undone, which invariants
//! and kernel checks are involved, and the facts read from one snapshot per node.
//!
//! Pure: the same command, target and snapshots give the same explanation, byte for byte (it
//! holds no id, no time, no random value). It states facts and the checks the kernel will make;
//! it never predicts, ranks or recommends: only the kernel decides (P7-A3, P7-E3).
//!
//! Domain values only: the snapshots come in as [`NodeState`] (read from the kernel's answer at
//! the kernel edge, `adapter/snapshot.rs`), the explanation goes out as [`Explanation`] and
//! [`Requirements`] (its wire form and plan digest in `control/digest.rs`, the requirements
//! presented in `api/convert.rs`).

use crate::audit::record::Observed;
use crate::contract::action::Action;
use crate::contract::checks;
use crate::contract::intent::Command;
use crate::control::adapter::snapshot::{NodeState, Role};
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

/// An invariant an explanation cites, with its statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvariantRef {
    /// The id (`P6-A1`, …).
    pub id: String,
    /// Its statement ([`statement`]).
    pub statement: String,
}

/// One of the kernel's checks of the action, as cited from [`checks`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelCheck {
    /// Its place in the kernel's fixed order (1-based).
    pub order: u32,
    /// What it checks, for this target and epoch.
    pub description: String,
    /// The code the kernel rejects with when it fails.
    pub rejection_code: String,
    /// The invariants it protects.
    pub invariants: Vec<String>,
    /// Skipped by this command (force skips the fence check only).
    pub skipped: bool,
}

/// One fact read from one node's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    /// The node (empty when its snapshot carried no observation point).
    pub node_id: String,
    /// The fact's name (`role`, `epoch`, …).
    pub name: String,
    /// Its value, as text.
    pub value: String,
}

/// What an action is, built from one snapshot per node: the value an operator confirms (its
/// digest is the plan digest). Every field is a fact or a check; none is a recommendation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The command explained.
    pub command: Command,
    /// The exact kernel action ConfirmAction will send.
    pub action: Action,
    /// One sentence naming the action and the target.
    pub summary: String,
    /// The nodes the action affects.
    pub affected_nodes: Vec<String>,
    /// What no later action can undo.
    pub irreversible: Vec<String>,
    /// The invariants involved.
    pub invariants: Vec<InvariantRef>,
    /// The kernel's checks, in its order.
    pub kernel_checks: Vec<KernelCheck>,
    /// Facts of every observed node, in configuration order.
    pub facts: Vec<Fact>,
    /// Diagnostics only: the bytes the run reads, as the target declared them.
    pub declared_cost_bytes: u64,
    /// The target's ledger sequence the action is bound to.
    pub expected_control_seq: u64,
    /// The observation points the facts come from, in configuration order.
    pub observed: Vec<Observed>,
    /// Nodes that could not be observed, in configuration order.
    pub unreachable_nodes: Vec<String>,
    /// The epoch the plan creates (promotion) or ends (demotion); 0 for diagnostics.
    pub plan_epoch: u64,
}

/// The confirmation kind a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmationKind {
    /// The typed target.
    Standard,
    /// The typed target, each overridden invariant acknowledged, responsibility accepted.
    Enhanced,
}

impl ConfirmationKind {
    /// The name audit records and the kernel's ledger use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Enhanced => "enhanced",
        }
    }

    /// The name of the wire enum value (`CONFIRMATION_TYPE_*`), as `confirmation_requested`
    /// records store it; `api/convert.rs` tests that it is the proto's own name.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::Standard => "CONFIRMATION_TYPE_STANDARD",
            Self::Enhanced => "CONFIRMATION_TYPE_ENHANCED",
        }
    }
}

/// What ConfirmAction must contain for a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirements {
    /// Standard or enhanced.
    pub kind: ConfirmationKind,
    /// The value the typed target must equal.
    pub typed_target: String,
    /// Every invariant id that must be acknowledged (enhanced only).
    pub required_acknowledgements: Vec<String>,
    /// Whether responsibility must be accepted (enhanced only).
    pub responsibility_required: bool,
    /// The statement accepted (enhanced only; empty otherwise).
    pub responsibility_statement: String,
}

fn inv(ids: &[&str]) -> Vec<InvariantRef> {
    ids.iter().map(|id| InvariantRef { id: (*id).into(), statement: statement(id).into() }).collect()
}

/// The kernel's checks of an action, cited from the one table the kernel rejects by
/// ([`checks`]): the explanation states them, the kernel decides them.
fn cite(table: &[checks::Check], target: &str, epoch: u64, force: bool) -> Vec<KernelCheck> {
    table
        .iter()
        .map(|c| KernelCheck {
            order: c.order,
            description: c.describe(target, epoch),
            rejection_code: c.code.into(),
            invariants: c.invariants.iter().map(|s| s.to_string()).collect(),
            skipped: force && c.skipped_by_force,
        })
        .collect()
}

/// The kernel action a command dispatches.
pub fn action_for(command: Command, target: &str) -> Action {
    let (kind, force) = command.action_kind();
    Action { kind, target_node: target.to_string(), force }
}

/// Facts of one snapshot, in a fixed order. Only kernel state: nothing that depends on timing.
fn facts(s: &NodeState) -> Vec<Fact> {
    let node = s.observation.as_ref().map(|o| o.node_id.clone()).unwrap_or_default();
    let a = s.authority.clone().unwrap_or_default();
    let mut out = vec![
        ("role", a.role.as_str().to_string()),
        ("epoch", a.epoch.to_string()),
        ("highest_granted_epoch", a.highest_granted_epoch.to_string()),
        ("last_index", s.last_index.to_string()),
        ("last_epoch", s.last_epoch.to_string()),
        ("commit_index", s.commit_index.to_string()),
        ("current_epoch_fenced", s.current_epoch_fenced.to_string()),
        ("fence_index", s.fence_index.to_string()),
        ("known_primary_commit_index", s.known_primary_commit_index.to_string()),
        ("control_seq", s.observation.as_ref().map(|o| o.control_seq).unwrap_or(0).to_string()),
    ];
    if a.role == Role::Halted {
        out.push(("halt_reason", a.halt_reason.clone()));
    }
    out.into_iter().map(|(name, value)| Fact { node_id: node.clone(), name: name.into(), value }).collect()
}

/// Builds the explanation of `command` on `target` from one snapshot per node (configuration
/// order; `None` for a node that could not be observed). The target must have been observed,
/// with its observation point (and, for a demotion, its authority).
pub fn explain(command: Command, target: &str, nodes: &[(String, Option<NodeState>)]) -> Option<Explanation> {
    let action = action_for(command, target);
    let target_snap = nodes.iter().find(|(id, _)| id == target).and_then(|(_, s)| s.as_ref())?;
    let all: Vec<String> = nodes.iter().map(|(id, _)| id.clone()).collect();
    let mut e = Explanation {
        command,
        action,
        summary: String::new(),
        affected_nodes: Vec::new(),
        irreversible: Vec::new(),
        invariants: Vec::new(),
        kernel_checks: Vec::new(),
        facts: nodes.iter().filter_map(|(_, s)| s.as_ref()).flat_map(facts).collect(),
        declared_cost_bytes: 0,
        // A target snapshot without its observation point explains nothing (no sequence to check).
        expected_control_seq: target_snap.observation.as_ref()?.control_seq,
        observed: nodes.iter().filter_map(|(_, s)| s.as_ref().and_then(|s| s.observation.clone())).collect(),
        unreachable_nodes: nodes.iter().filter(|(_, s)| s.is_none()).map(|(id, _)| id.clone()).collect(),
        plan_epoch: 0,
    };
    match command {
        Command::RequestPromotion | Command::ForcePromotion => {
            let force = command == Command::ForcePromotion;
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
        Command::RequestDemotion => {
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
        Command::RunDiagnostics => {
            e.summary = format!(
                "Run read-only diagnostics on {target}: read its WAL and ledger and check every checksum, the index \
                 sequence and the hash chain."
            );
            e.affected_nodes = vec![target.to_string()];
            e.irreversible = vec![];
            e.invariants = inv(&["P7-E1", "P7-S1"]);
            e.declared_cost_bytes = target_snap.diagnostics_cost_bytes;
        }
    }
    Some(e)
}

/// The epoch a promotion planned on `nodes` creates: one above the highest epoch any observed
/// node knows (its epoch or the highest it granted), the same quantity the kernel compares with.
/// A node that could not be observed contributes nothing; if it knows a higher epoch, the kernel
/// (which asks every peer) refuses the plan as stale rather than superseding that epoch.
pub fn promotion_epoch(nodes: &[(String, Option<NodeState>)]) -> u64 {
    nodes
        .iter()
        .filter_map(|(_, s)| s.as_ref()?.authority.as_ref())
        .map(|a| a.epoch.max(a.highest_granted_epoch))
        .max()
        .unwrap_or(0)
        + 1
}

/// What ConfirmAction must contain for `command`.
pub fn requirements(command: Command, target: &str, requester_name: &str) -> Requirements {
    if command == Command::ForcePromotion {
        Requirements {
            kind: ConfirmationKind::Enhanced,
            typed_target: target.into(),
            required_acknowledgements: vec!["P6-A1".into(), "P6-A1a".into()],
            responsibility_required: true,
            responsibility_statement: format!(
                "I, {requester_name}, assert that the previous primary is gone, and I take responsibility for forcing \
                 {target} to primary without the fence check."
            ),
        }
    } else {
        Requirements {
            kind: ConfirmationKind::Standard,
            typed_target: target.into(),
            required_acknowledgements: Vec::new(),
            responsibility_required: false,
            responsibility_statement: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::adapter::snapshot::Authority;
    use crate::control::digest::plan_digest;

    fn snap(id: &str, role: Role, seq: u64) -> NodeState {
        NodeState {
            observation: Some(Observed { node_id: id.into(), control_seq: seq, epoch: 1, commit_index: 5 }),
            authority: Some(Authority { role, epoch: 1, ..Default::default() }),
            last_index: 5,
            last_epoch: 1,
            commit_index: 5,
            diagnostics_cost_bytes: 4096,
            ..Default::default()
        }
    }

    fn cluster() -> Vec<(String, Option<NodeState>)> {
        vec![
            ("n1".into(), Some(snap("n1", Role::Primary, 2))),
            ("n2".into(), Some(snap("n2", Role::Replica, 1))),
            ("n3".into(), None),
        ]
    }

    #[test]
    fn p7_d1_same_request_and_state_give_identical_explanations() {
        let a = explain(Command::RequestPromotion, "n2", &cluster()).expect("explained");
        let b = explain(Command::RequestPromotion, "n2", &cluster()).expect("explained");
        use prost::Message;
        let wire = |e: &Explanation| crate::control::digest::explanation(e).encode_to_vec();
        assert_eq!(wire(&a), wire(&b));
        assert_eq!(plan_digest(&a), plan_digest(&b));
        let mut other = cluster();
        other[1].1 = Some(snap("n2", Role::Replica, 9));
        let c = explain(Command::RequestPromotion, "n2", &other).expect("explained");
        assert_ne!(plan_digest(&a), plan_digest(&c), "a different kernel state is a different plan");
        assert_eq!(c.expected_control_seq, 9);
    }

    #[test]
    fn p7_a3_explanations_state_facts_and_never_recommend() {
        for cmd in Command::ALL {
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
        let e = explain(Command::ForcePromotion, "n2", &cluster()).expect("explained");
        let skipped: Vec<u32> = e.kernel_checks.iter().filter(|c| c.skipped).map(|c| c.order).collect();
        assert_eq!(skipped, vec![2]);
        let r = requirements(Command::ForcePromotion, "n2", "alice");
        assert_eq!(r.kind, ConfirmationKind::Enhanced);
        assert!(r.required_acknowledgements.contains(&"P6-A1a".to_string()));
        let s = requirements(Command::RequestPromotion, "n2", "alice");
        assert_eq!(s.kind, ConfirmationKind::Standard);
    }

    #[test]
    fn diagnostics_declare_their_cost_before_running() {
        let e = explain(Command::RunDiagnostics, "n2", &cluster()).expect("explained");
        assert_eq!(e.declared_cost_bytes, 4096);
        assert_eq!(e.affected_nodes, vec!["n2".to_string()]);
    }
}
