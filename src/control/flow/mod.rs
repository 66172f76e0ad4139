//! The middle layer: an action's life as types, each step consuming the state it acts on.
//!
//! ```text
//! RequestAction  admit ─► Requested ─► lookup(ledgers) ─► Replayed | refused
//!                                    └► explain + mint ─► PendingAction (in the store)
//! ConfirmAction  store.take ─► PendingAction::confirm ─► Confirmed (durable `confirmed`)   [pending]
//!                ─► Confirmed::dispatch: one Kernel.Execute ─► classify ─► Outcome        [dispatch]
//!                ─► durable outcome record
//! DeclineAction  store.decline ─► declined
//! ```
//!
//! The checks run in the documented order (docs/operator-guide.md, DESIGN §4): the store's
//! (exists, unused, unexpired, same caller), then the pending action's own (plan digest, typed
//! target, enhanced acknowledgements). Every step that must be on the record before the next is
//! appended durably first; a refusal is recorded best effort and never leaves a half state. The
//! api handlers only parse the caller and the request, call a step here ([`actions`]), and
//! present its answer or map its error. The outcome of an Execute answer is a pure function
//! ([`dispatch::classify`]) tested over every answer and failure without processes. Each record a step owes is an [`event::AuditEvent`]
//! holding exactly its stage's fields; `AuditEvent::into_draft` is the one place it becomes the
//! stored record.

pub mod actions;
pub mod dispatch;
pub mod event;
pub mod kernel_json;
pub mod pending;
#[cfg(feature = "failpoints")]
pub mod tamper;

use crate::audit::record::{Observed, Who};
use crate::contract::action::Requester;
use crate::contract::intent::{Command, Signature};
use crate::control::explain::{Explanation, Requirements};
use crate::limits::LimitViolation;
use crate::proto::kernel as kpb;

pub use crate::control::explain::ConfirmationKind;
pub use dispatch::Confirmed;
pub use pending::{PendingAction, PendingStore, Refused, required_confirmation};

/// 128 random bits as hex: confirmation ids (unguessable) and correlation ids.
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Without an entropy source no unguessable id can be made; a fixed id would be guessable,
        // so fail the process rather than hand one out.
        tracing::error!("no entropy source for confirmation ids; stopping");
        std::process::abort();
    }
    hex::encode(b)
}

/// Who is calling, as the authorization permit established it (read from the permit at the
/// api edge, `api::convert::caller`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The requester the kernel records.
    pub requester: Requester,
    /// SHA-256 of the caller's certificate: a pending action is bound to it.
    pub fingerprint: String,
    /// The identity as audit records store it.
    pub who: Who,
    /// The caller's socket address (empty when unknown).
    pub peer: String,
}

/// A parsed RequestAction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRequest {
    /// The command.
    pub command: Command,
    /// A configured node.
    pub target: String,
    /// A valid idempotency key.
    pub idempotency_key: String,
}

/// A RequestAction as it arrived, before parsing: what the `requested` record stores (each
/// value bounded there), and whether the request was within its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestReceived {
    /// The command's name (`unspecified` for 0, `unknown` for a number no command has).
    pub command_name: &'static str,
    /// The command's number, as sent.
    pub command_number: i32,
    /// The target, as sent.
    pub target_node: String,
    /// The idempotency key, as sent.
    pub idempotency_key: String,
    /// The first field over its limit, if any.
    pub limits: Result<(), Box<LimitViolation>>,
}

/// A ConfirmAction or DeclineAction as it arrived, before parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmReceived {
    /// The confirmation id, as sent (records keep its first 8 characters).
    pub confirmation_id: String,
    /// The first field over its limit, if any.
    pub limits: Result<(), Box<LimitViolation>>,
}

/// What ConfirmAction supplies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmInput {
    /// The id.
    pub confirmation_id: String,
    /// The plan digest echoed.
    pub plan_digest: String,
    /// The target typed by the operator.
    pub typed_target: String,
    /// Invariant ids acknowledged.
    pub acknowledged_invariants: Vec<String>,
    /// Responsibility accepted.
    pub accept_responsibility: bool,
    /// The caller's signature over the intent, then any approvals: passed to the kernel
    /// untouched (the kernel verifies them).
    pub signatures: Vec<Signature>,
}

/// RequestAction's answer, before it is presented on the wire (`api/convert.rs`).
#[derive(Debug, Clone, PartialEq)]
pub enum RequestAnswer {
    /// An explanation to confirm.
    Pending(Box<PendingAnswer>),
    /// A kernel had decided the key for this request: its record, and nothing was issued.
    Replayed {
        /// The node whose ledger holds the decision.
        node: String,
        /// The decision, verbatim.
        record: Box<kpb::DecidedRecord>,
        /// Joins this request's audit records.
        correlation_id: String,
    },
}

/// A minted pending action as its requester sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingAnswer {
    /// 128-bit random, hex: what ConfirmAction names.
    pub confirmation_id: String,
    /// What the action is.
    pub explanation: Explanation,
    /// Hex SHA-256 of the explanation's wire form.
    pub plan_digest: String,
    /// What the confirmation must contain.
    pub requirements: Requirements,
    /// Seconds until the pending action expires.
    pub expires_after_seconds: u64,
    /// Joins the action's audit records.
    pub correlation_id: String,
    /// The client's idempotency key.
    pub idempotency_key: String,
    /// The intent's canonical bytes, to sign.
    pub intent: Vec<u8>,
    /// Signatures of distinct actors the kernel requires.
    pub signatures_required: u32,
}

/// ConfirmAction's answer when the kernel executed the action (now or before).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfirmAnswer {
    /// The key had been executed before: its record, nothing ran again.
    pub replayed: bool,
    /// The kernel's decision, verbatim.
    pub record: Box<kpb::DecidedRecord>,
    /// The target's ledger sequence after the decision.
    pub control_seq_after: u64,
    /// Joins the action's audit records.
    pub correlation_id: String,
    /// The client's idempotency key.
    pub idempotency_key: String,
    /// The node that executed it.
    pub target_node: String,
}

/// DeclineAction's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclineAnswer {
    /// Joins the action's audit records.
    pub correlation_id: String,
    /// Always NOT_EXECUTED: a declined action runs nothing.
    pub outcome: crate::wire::Outcome,
}

/// What the kernels' ledgers say of a key before anything is explained.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// No reachable ledger knows the key: explain and mint.
    Fresh,
    /// A node is executing the key now.
    InFlight {
        /// The node.
        node: String,
    },
    /// A node decided the key for another request.
    Reused {
        /// The node.
        node: String,
        /// Its rejection, verbatim.
        rejection: kpb::Rejection,
    },
    /// A node decided the key for this request: answer its record, run nothing.
    Replayed {
        /// The node.
        node: String,
        /// Its decision.
        record: Box<kpb::DecidedRecord>,
        /// Its observation point.
        observation: Option<Observed>,
    },
}

/// Reads the first node (in configuration order) whose answer settles the key. Unreachable
/// nodes are skipped: the kernels decide a key once per cluster, so this lookup answers early
/// and is never the guarantee.
pub fn lookup<'a>(answers: impl IntoIterator<Item = (&'a str, Option<&'a kpb::GetOutcomeResponse>)>) -> Lookup {
    for (node, answer) in answers {
        let Some(a) = answer else { continue };
        if a.in_flight {
            return Lookup::InFlight { node: node.to_string() };
        }
        if !a.found {
            continue;
        }
        if a.r#match == kpb::OutcomeMatch::KeyReused as i32 {
            return Lookup::Reused { node: node.to_string(), rejection: a.key_reused.clone().unwrap_or_default() };
        }
        return Lookup::Replayed {
            node: node.to_string(),
            record: Box::new(a.record.clone().unwrap_or_default()),
            observation: a.observation.as_ref().map(crate::control::adapter::snapshot::observed),
        };
    }
    Lookup::Fresh
}

/// A pending action's intent for unit tests (values only; nothing signs it).
#[cfg(test)]
pub(crate) fn test_intent(target: &str) -> crate::contract::intent::Intent {
    crate::contract::intent::Intent {
        cluster_id: "c".into(),
        command: Command::RequestPromotion,
        target_node: target.into(),
        plan_epoch: 2,
        expected_control_seq: 3,
        plan_digest: [0; 32],
        idempotency_key: "k".into(),
        confirmation: crate::contract::action::Confirmation { kind: "standard".into(), ..Default::default() },
        requester: Requester { role: "actor".into(), name: "a".into(), cert_sha256: hex::encode([0xfa; 32]) },
        not_after_unix_ms: 1,
    }
}

/// An explanation for unit tests: a promotion of `n2` naming `plan_epoch`, nothing observed.
#[cfg(test)]
pub(crate) fn test_explanation(plan_epoch: u64) -> Explanation {
    let action = crate::control::explain::action_for(Command::RequestPromotion, "n2");
    Explanation {
        command: Command::RequestPromotion,
        action,
        summary: String::new(),
        affected_nodes: Vec::new(),
        irreversible: Vec::new(),
        invariants: Vec::new(),
        kernel_checks: Vec::new(),
        facts: Vec::new(),
        declared_cost_bytes: 0,
        expected_control_seq: 0,
        observed: Vec::new(),
        unreachable_nodes: Vec::new(),
        plan_epoch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(found: bool, in_flight: bool, reused: bool) -> kpb::GetOutcomeResponse {
        kpb::GetOutcomeResponse {
            found,
            in_flight,
            r#match: if reused { kpb::OutcomeMatch::KeyReused } else { kpb::OutcomeMatch::SameRequest } as i32,
            record: found.then(kpb::DecidedRecord::default),
            key_reused: reused.then(kpb::Rejection::default),
            ..Default::default()
        }
    }

    #[test]
    fn p7_f3_lookup_settles_a_key_from_the_first_ledger_that_knows_it() {
        let none = answer(false, false, false);
        let flying = answer(false, true, false);
        let same = answer(true, false, false);
        let reused = answer(true, false, true);
        assert_eq!(lookup([("n1", None), ("n2", Some(&none))]), Lookup::Fresh);
        assert_eq!(lookup([("n1", Some(&none)), ("n2", Some(&flying))]), Lookup::InFlight { node: "n2".into() });
        assert!(matches!(lookup([("n1", None), ("n2", Some(&reused))]), Lookup::Reused { node, .. } if node == "n2"));
        assert!(
            matches!(lookup([("n1", Some(&same)), ("n2", Some(&reused))]), Lookup::Replayed { node, .. } if node == "n1")
        );
    }
}
