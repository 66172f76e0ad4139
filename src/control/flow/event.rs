//! The audit events the Actor's steps owe, one variant per stage, each holding exactly that
//! stage's fields; [`AuditEvent::into_draft`] is the one place they become the stored record.
//!
//! The stored form is `Draft`'s fields in declaration order, with the `parameters` and `detail`
//! keys below (docs/audit.md), so records written before and after this module existed read and
//! verify the same. The tests build each stage's record the way the flow built it before (a
//! draft cloned from the previous stage and patched) and require the same JSON, byte for byte,
//! with one deliberate addition: a record about a declined pending action (`declined`, or a
//! refused decline that names one) now carries its `force` parameter, as every other record
//! naming a pending action does, so a declined forced promotion reads as forced.
//!
//! | event | stage | parameters | detail |
//! |---|---|---|---|
//! | `Requested` | requested | command | |
//! | `ConfirmationRequested` | confirmation_requested | command, force | plan_digest, expected_control_seq, plan_epoch (if > 0), confirmation_type, summary, intent_sha256, signatures_required, unreachable_nodes (if any) |
//! | `Replayed` | replayed | command, force | node |
//! | `Confirmed` | confirmed | confirmation_id_prefix, force | expected_control_seq, plan_epoch (if > 0) |
//! | `Dispatched` | executed, replayed, rejected or failed | confirmation_id_prefix, force | expected_control_seq, plan_epoch (if > 0), kernel_control_seq, kernel_record_hash, confirmed_leaf (if the kernel recorded a decision) |
//! | `Declined` | declined | force | |
//! | `Rejected` | rejected | as the step refused | pending_action_discarded (confirm, decline), kernel_rejection (if the kernel refused) |

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Caller, ConfirmationKind, PendingAction};
use crate::audit::record::{ConfirmationFacts, Draft, ErrorFacts, Observed, Stage, Who};
use crate::limits::{IDEMPOTENCY_KEY_BYTES_MAX, NODE_ID_BYTES_MAX, bounded};
use crate::wire::Outcome;

/// What every event of a call names: the action's correlation id, the command (or the method
/// when no action is known), and the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// Joins the records of one action.
    pub correlation_id: String,
    /// The command's name, or `confirm_action` / `decline_action` when no pending action is known.
    pub command: String,
    /// The caller's identity.
    pub identity: Who,
    /// The caller's socket address (empty when unknown).
    pub peer: String,
}

impl Base {
    /// The base of a call by `caller`.
    pub fn new(caller: &Caller, correlation_id: &str, command: &str) -> Self {
        Self {
            correlation_id: correlation_id.into(),
            command: command.into(),
            identity: caller.who.clone(),
            peer: caller.peer.clone(),
        }
    }
}

/// What a RequestAction sent, bounded for the record (a value over its limit keeps a prefix,
/// its length and its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The target, bounded.
    pub target: String,
    /// The idempotency key, bounded.
    pub idempotency_key: String,
    /// The command's number, as sent.
    pub command_number: i32,
}

impl Sent {
    /// Bounds what was sent.
    pub fn new(target: &str, idempotency_key: &str, command_number: i32) -> Self {
        Self {
            target: bounded(target, NODE_ID_BYTES_MAX),
            idempotency_key: bounded(idempotency_key, IDEMPOTENCY_KEY_BYTES_MAX),
            command_number,
        }
    }
}

/// A ConfirmAction attempt: which confirmation (8 characters of its id) and, once the pending
/// action is known, its target, key and force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The first 8 characters of the confirmation id sent.
    pub confirmation_id_prefix: String,
    /// The pending action it concerned, if known.
    pub action: Option<ActionRef>,
}

impl Attempt {
    /// The attempt to confirm `raw_id`, concerning `pending` if known.
    pub fn new(raw_id: &str, pending: Option<&PendingAction>) -> Self {
        Self { confirmation_id_prefix: raw_id.chars().take(8).collect(), action: pending.map(ActionRef::of) }
    }
}

/// The pending action a record concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRef {
    /// Its target.
    pub target: String,
    /// Its idempotency key.
    pub idempotency_key: String,
    /// Whether it is forced.
    pub force: bool,
}

impl ActionRef {
    /// Of a pending action.
    pub fn of(p: &PendingAction) -> Self {
        Self { target: p.action.target_node.clone(), idempotency_key: p.idempotency_key.clone(), force: p.action.force }
    }
}

/// The plan a `confirmation_requested` record names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanFacts {
    /// Hex SHA-256 of the explanation shown.
    pub plan_digest: String,
    /// The target's sequence the explanation was built on.
    pub expected_control_seq: u64,
    /// The epoch the plan names (0: none, not recorded).
    pub plan_epoch: u64,
    /// The confirmation it needs.
    pub confirmation: ConfirmationKind,
    /// The explanation's summary.
    pub summary: String,
    /// Hex SHA-256 of the intent's bytes.
    pub intent_sha256: String,
    /// Signatures of distinct actors the kernel requires.
    pub signatures_required: u32,
    /// Nodes that could not be observed (not recorded when none).
    pub unreachable_nodes: Vec<String>,
}

/// What the kernel's answer to the one Execute left on the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    /// `executed`, `replayed`, `rejected` or `failed`.
    pub stage: Stage,
    /// What is known about execution.
    pub outcome: Outcome,
    /// The kernel's answer verbatim, when one came.
    pub kernel_response: Option<Value>,
    /// The answer's observation point (when an answer came), else the explanation's.
    pub observed: Vec<Observed>,
    /// The error answered, if any.
    pub error: Option<ErrorFacts>,
    /// Where the kernel recorded its decision, with the `confirmed` record's leaf.
    pub decided: Option<Decided>,
}

/// Where the kernel recorded a decision, so trail and ledger can be checked against each other
/// (`aerodbctl audit crosscheck`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The Decided record's control sequence.
    pub control_seq: u64,
    /// Its record hash.
    pub record_hash: Vec<u8>,
    /// The leaf hash of the `confirmed` audit record the kernel stored.
    pub confirmed_leaf: [u8; 32],
}

/// What a refusal concerned, as far as the step had got.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// A RequestAction: what it sent, and what the step had learned before refusing.
    Request {
        /// As sent, bounded.
        sent: Sent,
        /// The action's force, once the command was parsed.
        force: Option<bool>,
        /// The snapshots observed, once observed.
        observed: Vec<Observed>,
        /// The kernel's answer verbatim, when a ledger's answer is the refusal.
        kernel_response: Option<Value>,
    },
    /// A ConfirmAction.
    Confirm {
        /// The attempt.
        attempt: Attempt,
        /// Whether the pending action was discarded (when the store or its checks refused).
        discarded: Option<bool>,
    },
    /// A DeclineAction.
    Decline {
        /// The pending action, if known.
        action: Option<ActionRef>,
        /// Whether the pending action was discarded (when the store refused).
        discarded: Option<bool>,
    },
}

/// One audit event of the Actor's flow: a stage and exactly its fields.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditEvent {
    /// RequestAction received (durable before anything else happens).
    Requested {
        /// Caller and correlation.
        base: Base,
        /// As sent.
        sent: Sent,
    },
    /// An explanation shown and a pending action minted.
    ConfirmationRequested {
        /// Caller and correlation.
        base: Base,
        /// As sent.
        sent: Sent,
        /// The action's force.
        force: bool,
        /// One snapshot per observed node.
        observed: Vec<Observed>,
        /// The plan.
        plan: Box<PlanFacts>,
    },
    /// A kernel ledger had decided the key for this request: its record, nothing issued.
    Replayed {
        /// Caller and correlation.
        base: Base,
        /// As sent.
        sent: Sent,
        /// The action's force.
        force: bool,
        /// The node whose ledger answered.
        node: String,
        /// Its decision, verbatim (JSON).
        record: Value,
        /// Whether that decision executed the action.
        executed: bool,
        /// That node's observation point.
        observed: Vec<Observed>,
    },
    /// ConfirmAction passed every check; durable before dispatch.
    Confirmed {
        /// Caller and correlation.
        base: Base,
        /// The attempt (its pending action known).
        attempt: Attempt,
        /// The confirmation given.
        confirmation: ConfirmationFacts,
        /// The explanation's observation points.
        observed: Vec<Observed>,
        /// The sequence dispatched with.
        expected_control_seq: u64,
        /// The plan's epoch (0: none, not recorded).
        plan_epoch: u64,
    },
    /// The outcome of the one Execute; durable before the answer.
    Dispatched {
        /// Caller and correlation.
        base: Base,
        /// The attempt (its pending action known).
        attempt: Attempt,
        /// The sequence dispatched with.
        expected_control_seq: u64,
        /// The plan's epoch (0: none, not recorded).
        plan_epoch: u64,
        /// What the answer left.
        dispatch: Box<Dispatch>,
    },
    /// The operator declined a pending action.
    Declined {
        /// Caller and correlation.
        base: Base,
        /// The pending action.
        action: ActionRef,
    },
    /// A step refused: nothing else changed.
    Rejected {
        /// Caller and correlation.
        base: Base,
        /// What was refused.
        refused: Refused,
        /// The error answered.
        error: ErrorFacts,
        /// Whether the kernel refused (its code passed on verbatim).
        kernel_rejection: bool,
    },
}

fn plan_epoch_detail(detail: &mut BTreeMap<String, String>, plan_epoch: u64) {
    if plan_epoch > 0 {
        detail.insert("plan_epoch".into(), plan_epoch.to_string());
    }
}

fn sent_into(d: &mut Draft, sent: Sent, force: Option<bool>) {
    let Sent { target, idempotency_key, command_number } = sent;
    d.target = target;
    d.idempotency_key = idempotency_key;
    d.parameters.insert("command".into(), command_number.to_string());
    if let Some(force) = force {
        d.parameters.insert("force".into(), force.to_string());
    }
}

fn attempt_into(d: &mut Draft, attempt: Attempt) {
    let Attempt { confirmation_id_prefix, action } = attempt;
    d.parameters.insert("confirmation_id_prefix".into(), confirmation_id_prefix);
    if let Some(action) = action {
        action_into(d, action);
    }
}

/// The pending action a record concerns: its target, key and force.
fn action_into(d: &mut Draft, action: ActionRef) {
    let ActionRef { target, idempotency_key, force } = action;
    d.target = target;
    d.idempotency_key = idempotency_key;
    d.parameters.insert("force".into(), force.to_string());
}

fn discarded_into(d: &mut Draft, discarded: Option<bool>) {
    if let Some(discarded) = discarded {
        d.detail.insert("pending_action_discarded".into(), discarded.to_string());
    }
}

impl AuditEvent {
    /// The stage the event records.
    pub fn stage(&self) -> Stage {
        match self {
            Self::Requested { .. } => Stage::Requested,
            Self::ConfirmationRequested { .. } => Stage::ConfirmationRequested,
            Self::Replayed { .. } => Stage::Replayed,
            Self::Confirmed { .. } => Stage::Confirmed,
            Self::Dispatched { dispatch, .. } => dispatch.stage,
            Self::Declined { .. } => Stage::Declined,
            Self::Rejected { .. } => Stage::Rejected,
        }
    }

    /// The record the audit log stores for this event: the one mapping from events to records.
    pub fn into_draft(self) -> Draft {
        let stage = self.stage();
        let draft = |base: Base| {
            let Base { correlation_id, command, identity, peer } = base;
            let mut d = Draft::new(stage, correlation_id, command);
            d.identity = Some(identity);
            d.peer = peer;
            d
        };
        match self {
            Self::Requested { base, sent } => {
                let mut d = draft(base);
                sent_into(&mut d, sent, None);
                d
            }
            Self::ConfirmationRequested { base, sent, force, observed, plan } => {
                let mut d = draft(base);
                sent_into(&mut d, sent, Some(force));
                d.observed = observed;
                let PlanFacts {
                    plan_digest,
                    expected_control_seq,
                    plan_epoch,
                    confirmation,
                    summary,
                    intent_sha256,
                    signatures_required,
                    unreachable_nodes,
                } = *plan;
                d.detail.insert("plan_digest".into(), plan_digest);
                d.detail.insert("expected_control_seq".into(), expected_control_seq.to_string());
                plan_epoch_detail(&mut d.detail, plan_epoch);
                d.detail.insert("confirmation_type".into(), confirmation.type_name().into());
                d.detail.insert("summary".into(), summary);
                d.detail.insert("intent_sha256".into(), intent_sha256);
                d.detail.insert("signatures_required".into(), signatures_required.to_string());
                if !unreachable_nodes.is_empty() {
                    d.detail.insert("unreachable_nodes".into(), unreachable_nodes.join(","));
                }
                d
            }
            Self::Replayed { base, sent, force, node, record, executed, observed } => {
                let mut d = draft(base);
                sent_into(&mut d, sent, Some(force));
                d.kernel_response = Some(record);
                d.outcome = if executed { Outcome::Executed } else { Outcome::NotExecuted }.as_str().into();
                d.observed = observed;
                d.detail.insert("node".into(), node);
                d
            }
            Self::Confirmed { base, attempt, confirmation, observed, expected_control_seq, plan_epoch } => {
                let mut d = draft(base);
                attempt_into(&mut d, attempt);
                d.confirmation = Some(confirmation);
                d.observed = observed;
                d.detail.insert("expected_control_seq".into(), expected_control_seq.to_string());
                plan_epoch_detail(&mut d.detail, plan_epoch);
                d
            }
            Self::Dispatched { base, attempt, expected_control_seq, plan_epoch, dispatch } => {
                let mut d = draft(base);
                attempt_into(&mut d, attempt);
                d.detail.insert("expected_control_seq".into(), expected_control_seq.to_string());
                plan_epoch_detail(&mut d.detail, plan_epoch);
                let Dispatch { stage: _, outcome, kernel_response, observed, error, decided } = *dispatch;
                d.outcome = outcome.as_str().into();
                d.kernel_response = kernel_response;
                d.observed = observed;
                d.error = error;
                if let Some(Decided { control_seq, record_hash, confirmed_leaf }) = decided {
                    d.detail.insert("kernel_control_seq".into(), control_seq.to_string());
                    d.detail.insert("kernel_record_hash".into(), hex::encode(record_hash));
                    d.detail.insert("confirmed_leaf".into(), hex::encode(confirmed_leaf));
                }
                d
            }
            Self::Declined { base, action } => {
                let mut d = draft(base);
                action_into(&mut d, action);
                d.outcome = Outcome::NotExecuted.as_str().into();
                d
            }
            Self::Rejected { base, refused, error, kernel_rejection } => {
                let mut d = draft(base);
                match refused {
                    Refused::Request { sent, force, observed, kernel_response } => {
                        sent_into(&mut d, sent, force);
                        d.observed = observed;
                        d.kernel_response = kernel_response;
                    }
                    Refused::Confirm { attempt, discarded } => {
                        attempt_into(&mut d, attempt);
                        discarded_into(&mut d, discarded);
                    }
                    Refused::Decline { action, discarded } => {
                        if let Some(action) = action {
                            action_into(&mut d, action);
                        }
                        discarded_into(&mut d, discarded);
                    }
                }
                d.outcome = Outcome::NotExecuted.as_str().into();
                d.error = Some(error);
                if kernel_rejection {
                    d.detail.insert("kernel_rejection".into(), "true".into());
                }
                d
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each stage's record built twice: the way the flow built it before this module (a draft
    //! cloned from the previous stage and patched, copied here from the earlier `actions.rs`)
    //! and from its event. The two must serialize to the same bytes.

    use super::*;
    use serde_json::json;

    fn who() -> Who {
        Who {
            role: "actor".into(),
            name: "alice".into(),
            cert_sha256: "fa".repeat(32),
            serial: "01".into(),
            issuer: "CN=ca".into(),
        }
    }

    fn base(command: &str) -> Base {
        Base { correlation_id: "corr".into(), command: command.into(), identity: who(), peer: "127.0.0.1:9".into() }
    }

    /// The earlier `draft(caller, stage, correlation, command)`.
    fn old_draft(stage: Stage, command: &str) -> Draft {
        let mut d = Draft::new(stage, "corr", command);
        d.identity = Some(who());
        d.peer = "127.0.0.1:9".into();
        d
    }

    /// The earlier `refuse`'s patch of a draft.
    fn old_refuse(mut d: Draft, error: &ErrorFacts, kernel: bool) -> Draft {
        d.stage = Stage::Rejected;
        d.outcome = Outcome::NotExecuted.as_str().into();
        d.error = Some(error.clone());
        if kernel {
            d.detail.insert("kernel_rejection".into(), "true".into());
        }
        d
    }

    fn same(old: Draft, event: AuditEvent, what: &str) {
        let stage = event.stage();
        let new = event.into_draft();
        assert_eq!(new.stage, stage, "{what}");
        assert_eq!(
            serde_json::to_string(&old).expect("serializes"),
            serde_json::to_string(&new).expect("serializes"),
            "{what}"
        );
    }

    fn observed() -> Vec<Observed> {
        vec![Observed { node_id: "n1".into(), control_seq: 4, epoch: 2, commit_index: 9 }]
    }

    fn error() -> ErrorFacts {
        ErrorFacts {
            domain: "KERNEL_REJECTION".into(),
            code: "AERO_PROMOTION_NO_QUORUM".into(),
            invariants: vec!["P6-A1".into()],
            message: "no".into(),
        }
    }

    /// The earlier `requested` draft, before and after the command parsed.
    fn old_requested(force: Option<bool>) -> Draft {
        let mut d = old_draft(Stage::Requested, "request_promotion");
        d.target = bounded("n2", NODE_ID_BYTES_MAX);
        d.idempotency_key = bounded("op-1", IDEMPOTENCY_KEY_BYTES_MAX);
        d.parameters.insert("command".into(), "2".into());
        if let Some(f) = force {
            d.parameters.insert("force".into(), f.to_string());
        }
        d
    }

    fn sent() -> Sent {
        Sent::new("n2", "op-1", 2)
    }

    fn attempt(with_action: bool) -> Attempt {
        Attempt {
            confirmation_id_prefix: "0123abcd".into(),
            action: with_action.then(|| ActionRef { target: "n2".into(), idempotency_key: "op-1".into(), force: true }),
        }
    }

    /// The earlier `confirm_draft`.
    fn old_confirm_draft(with_action: bool) -> Draft {
        let command = if with_action { "force_promotion" } else { "confirm_action" };
        let mut d = old_draft(Stage::Rejected, command);
        d.parameters.insert("confirmation_id_prefix".into(), "0123abcd".into());
        if with_action {
            d.target = "n2".into();
            d.idempotency_key = "op-1".into();
            d.parameters.insert("force".into(), "true".into());
        }
        d
    }

    fn confirmation() -> ConfirmationFacts {
        ConfirmationFacts {
            kind: "enhanced".into(),
            acknowledged_invariants: vec!["P6-A1".into(), "P6-A1a".into()],
            accept_responsibility: true,
            plan_digest: "ab".repeat(32),
            intent: "00ff".into(),
            signatures: vec![],
        }
    }

    /// The earlier `confirmed` draft.
    fn old_confirmed(plan_epoch: u64) -> Draft {
        let mut d = old_confirm_draft(true);
        d.stage = Stage::Confirmed;
        d.confirmation = Some(confirmation());
        d.observed = observed();
        d.detail.insert("expected_control_seq".into(), "4".into());
        if plan_epoch > 0 {
            d.detail.insert("plan_epoch".into(), plan_epoch.to_string());
        }
        d
    }

    fn confirmed_event(plan_epoch: u64) -> AuditEvent {
        AuditEvent::Confirmed {
            base: base("force_promotion"),
            attempt: attempt(true),
            confirmation: confirmation(),
            observed: observed(),
            expected_control_seq: 4,
            plan_epoch,
        }
    }

    #[test]
    fn p7_o3_requested_and_confirmation_requested_records_are_unchanged() {
        same(old_requested(None), AuditEvent::Requested { base: base("request_promotion"), sent: sent() }, "requested");
        for (plan_epoch, unreachable) in [(0, vec![]), (3, vec!["n3".to_string(), "n4".to_string()])] {
            let mut r = old_requested(Some(false));
            r.observed = observed();
            r.stage = Stage::ConfirmationRequested;
            r.detail.insert("plan_digest".into(), "pd".into());
            r.detail.insert("expected_control_seq".into(), "4".into());
            if plan_epoch > 0 {
                r.detail.insert("plan_epoch".into(), plan_epoch.to_string());
            }
            r.detail.insert("confirmation_type".into(), "CONFIRMATION_TYPE_STANDARD".into());
            r.detail.insert("summary".into(), "Promote n2.".into());
            r.detail.insert("intent_sha256".into(), "ee".into());
            r.detail.insert("signatures_required".into(), "1".into());
            if !unreachable.is_empty() {
                r.detail.insert("unreachable_nodes".into(), unreachable.join(","));
            }
            let event = AuditEvent::ConfirmationRequested {
                base: base("request_promotion"),
                sent: sent(),
                force: false,
                observed: observed(),
                plan: Box::new(PlanFacts {
                    plan_digest: "pd".into(),
                    expected_control_seq: 4,
                    plan_epoch,
                    confirmation: ConfirmationKind::Standard,
                    summary: "Promote n2.".into(),
                    intent_sha256: "ee".into(),
                    signatures_required: 1,
                    unreachable_nodes: unreachable,
                }),
            };
            same(r, event, "confirmation_requested");
        }
    }

    #[test]
    fn p7_o3_replayed_records_are_unchanged() {
        for executed in [true, false] {
            let mut r = old_requested(Some(false));
            r.stage = Stage::Replayed;
            r.kernel_response = Some(json!({"decision": "DECISION_EXECUTED"}));
            r.outcome = if executed { "EXECUTED" } else { "NOT_EXECUTED" }.into();
            r.observed = observed();
            r.detail.insert("node".into(), "n1".into());
            let event = AuditEvent::Replayed {
                base: base("request_promotion"),
                sent: sent(),
                force: false,
                node: "n1".into(),
                record: json!({"decision": "DECISION_EXECUTED"}),
                executed,
                observed: observed(),
            };
            same(r, event, "replayed");
        }
    }

    #[test]
    fn p7_o3_confirmed_records_are_unchanged_and_pinned() {
        same(old_confirmed(0), confirmed_event(0), "confirmed, no epoch");
        same(old_confirmed(3), confirmed_event(3), "confirmed");
        // The stored form, field by field, in its order (docs/audit.md).
        let expected = concat!(
            r#"{"correlation_id":"corr","stage":"confirmed","command":"force_promotion","target":"n2","#,
            r#""parameters":{"confirmation_id_prefix":"0123abcd","force":"true"},"idempotency_key":"op-1","#,
            r#""identity":{"role":"actor","name":"alice","cert_sha256":"FA","serial":"01","issuer":"CN=ca"},"#,
            r#""peer":"127.0.0.1:9","confirmation":{"kind":"enhanced","acknowledged_invariants":["P6-A1","P6-A1a"],"#,
            r#""accept_responsibility":true,"plan_digest":"AB","intent":"00ff"},"kernel_response":null,"#,
            r#""outcome":"","error":null,"observed":[{"node_id":"n1","control_seq":4,"epoch":2,"commit_index":9}],"#,
            r#""detail":{"expected_control_seq":"4","plan_epoch":"3"}}"#
        )
        .replace("FA", &"fa".repeat(32))
        .replace("AB", &"ab".repeat(32));
        assert_eq!(serde_json::to_string(&confirmed_event(3).into_draft()).expect("serializes"), expected);
    }

    #[test]
    fn p7_o3_outcome_records_are_unchanged() {
        let answered = |stage, outcome: Outcome, error: Option<ErrorFacts>, decided: bool| Dispatch {
            stage,
            outcome,
            kernel_response: Some(json!({"replayed": false})),
            observed: vec![Observed { node_id: "n2".into(), control_seq: 5, epoch: 3, commit_index: 9 }],
            error,
            decided: decided.then(|| Decided { control_seq: 5, record_hash: vec![7; 32], confirmed_leaf: [9; 32] }),
        };
        let cases = vec![
            answered(Stage::Executed, Outcome::Executed, None, true),
            answered(Stage::Replayed, Outcome::Executed, None, true),
            answered(Stage::Rejected, Outcome::NotExecuted, Some(error()), true),
            answered(Stage::Rejected, Outcome::NotExecuted, Some(error()), false),
            Dispatch {
                stage: Stage::Failed,
                outcome: Outcome::Unknown,
                kernel_response: None,
                observed: observed(),
                error: Some(error()),
                decided: None,
            },
        ];
        for dispatch in cases {
            // The earlier outcome record: the `confirmed` draft, patched.
            let mut out = old_confirmed(3);
            out.confirmation = None;
            out.stage = dispatch.stage;
            out.outcome = dispatch.outcome.as_str().into();
            if dispatch.kernel_response.is_some() {
                out.kernel_response = dispatch.kernel_response.clone();
                out.observed = dispatch.observed.clone();
            }
            out.error = dispatch.error.clone();
            if let Some(d) = &dispatch.decided {
                out.detail.insert("kernel_control_seq".into(), d.control_seq.to_string());
                out.detail.insert("kernel_record_hash".into(), hex::encode(&d.record_hash));
                out.detail.insert("confirmed_leaf".into(), hex::encode(d.confirmed_leaf));
            }
            let what = format!("{:?}", dispatch.stage);
            let event = AuditEvent::Dispatched {
                base: base("force_promotion"),
                attempt: attempt(true),
                expected_control_seq: 4,
                plan_epoch: 3,
                dispatch: Box::new(dispatch),
            };
            same(out, event, &what);
        }
    }

    #[test]
    fn p7_o3_declined_and_rejected_records_are_unchanged_but_a_declined_action_names_its_force() {
        // The earlier decline `record(correlation, p)`, plus the action's force (the one
        // deliberate addition: a declined forced promotion reads as forced).
        let old_decline = |with: bool| {
            let mut d = old_draft(Stage::Declined, if with { "force_promotion" } else { "decline_action" });
            if with {
                d.target = "n2".into();
                d.idempotency_key = "op-1".into();
                d.parameters.insert("force".into(), "true".into());
            }
            d
        };
        let action = || ActionRef { target: "n2".into(), idempotency_key: "op-1".into(), force: true };
        let mut declined = old_decline(true);
        declined.outcome = Outcome::NotExecuted.as_str().into();
        same(declined, AuditEvent::Declined { base: base("force_promotion"), action: action() }, "declined");
        // An action that is not forced says so too.
        let mut plain = old_decline(true);
        plain.command = "request_promotion".into();
        plain.parameters.insert("force".into(), "false".into());
        plain.outcome = Outcome::NotExecuted.as_str().into();
        let unforced = ActionRef { force: false, ..action() };
        same(plain, AuditEvent::Declined { base: base("request_promotion"), action: unforced }, "declined, not forced");

        let rejected = |command: &str, refused: Refused, kernel: bool| AuditEvent::Rejected {
            base: base(command),
            refused,
            error: error(),
            kernel_rejection: kernel,
        };
        // Refused requests: before and after the command parsed, after observing, with a ledger's answer.
        same(
            old_refuse(old_requested(None), &error(), false),
            rejected(
                "request_promotion",
                Refused::Request { sent: sent(), force: None, observed: vec![], kernel_response: None },
                false,
            ),
            "request refused before parsing",
        );
        let mut d = old_requested(Some(true));
        d.kernel_response = Some(json!({"code": "AERO_IDEMPOTENCY_KEY_REUSED"}));
        same(
            old_refuse(d, &error(), true),
            rejected(
                "request_promotion",
                Refused::Request {
                    sent: sent(),
                    force: Some(true),
                    observed: vec![],
                    kernel_response: Some(json!({"code": "AERO_IDEMPOTENCY_KEY_REUSED"})),
                },
                true,
            ),
            "request refused by a ledger",
        );
        let mut d = old_requested(Some(false));
        d.observed = observed();
        same(
            old_refuse(d, &error(), false),
            rejected(
                "request_promotion",
                Refused::Request { sent: sent(), force: Some(false), observed: observed(), kernel_response: None },
                false,
            ),
            "request refused after observing",
        );
        // Refused confirmations: unknown id, checks failed (discarded or not), target not configured.
        same(
            old_refuse(old_confirm_draft(false), &error(), false),
            rejected("confirm_action", Refused::Confirm { attempt: attempt(false), discarded: None }, false),
            "confirm refused before the store",
        );
        for discarded in [true, false] {
            for with in [true, false] {
                let mut d = old_confirm_draft(with);
                d.detail.insert("pending_action_discarded".into(), discarded.to_string());
                let command = if with { "force_promotion" } else { "confirm_action" };
                same(
                    old_refuse(d, &error(), false),
                    rejected(command, Refused::Confirm { attempt: attempt(with), discarded: Some(discarded) }, false),
                    "confirm refused by its checks",
                );
            }
        }
        same(
            old_refuse(old_confirm_draft(true), &error(), false),
            rejected("force_promotion", Refused::Confirm { attempt: attempt(true), discarded: None }, false),
            "confirm of an unconfigured target",
        );
        // Refused declines.
        same(
            old_refuse(old_decline(false), &error(), false),
            rejected("decline_action", Refused::Decline { action: None, discarded: None }, false),
            "decline refused before the store",
        );
        let mut d = old_decline(true);
        d.detail.insert("pending_action_discarded".into(), "false".into());
        same(
            old_refuse(d, &error(), false),
            rejected("force_promotion", Refused::Decline { action: Some(action()), discarded: Some(false) }, false),
            "decline refused by the store",
        );
    }
}
