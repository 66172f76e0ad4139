//! Every way a control-plane request can fail, by who caused it, and its one wire form.
//!
//! [`to_wire`] is the one exhaustive map (no `_` arm on the variant): a new variant cannot
//! compile without a decision about its code, status, failure domain, outcome and invariants.
//! It lives here, below the api, because the flow records the same wire form in its audit
//! records ([`crate::audit::record::ErrorFacts`]) that the api answers with.

use tonic::Code;

use crate::contract::codes::{PLAN_EPOCH_STALE, STALE_SEQUENCE};
use crate::wire::{CONTROL_DOMAIN, ErrorDomain, Outcome, WireError};

/// A control-plane error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    // ----- the operator's input (never reaches a kernel) -----
    /// A required field is empty.
    #[error("{field} is required")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// A field breaks its rule.
    #[error("{field}: {why}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// The rule.
        why: String,
    },
    /// A field over its documented maximum (see `crate::limits`).
    #[error("{0}")]
    TooLarge(Box<crate::limits::LimitViolation>),
    /// Not one of the closed command set.
    #[error("command {0:?} is not in the closed command set")]
    UnknownCommand(String),
    /// Not a configured node.
    #[error("{field}: {node:?} is not a configured node")]
    UnknownNode {
        /// The field.
        field: &'static str,
        /// What was given.
        node: String,
    },

    // ----- Phase 7 validation (never reaches a kernel) -----
    /// No pending action has this id.
    #[error("no pending action has this confirmation id")]
    ConfirmationUnknown,
    /// The pending action was already used (confirmed, declined, or discarded by a failure).
    #[error("this confirmation was already used; a new attempt needs a new request")]
    ConfirmationReused,
    /// The pending action expired.
    #[error("this pending action expired; request the action again")]
    ConfirmationExpired,
    /// Another certificate asked for the pending action.
    #[error("this pending action belongs to another caller certificate")]
    ConfirmationWrongCaller,
    /// The plan digest does not match.
    #[error("plan_digest does not match the explanation that was shown")]
    PlanMismatch,
    /// The typed target does not match.
    #[error("typed target {typed:?} is not the target {target:?}")]
    TargetMismatch {
        /// What was typed.
        typed: String,
        /// The target.
        target: String,
    },
    /// An enhanced confirmation lacks an acknowledgement or the acceptance.
    #[error("enhanced confirmation incomplete: {missing}")]
    IncompleteEnhanced {
        /// What is missing.
        missing: String,
    },
    /// The call carries gRPC retry metadata.
    #[error("this call carries grpc-previous-rpc-attempts={0}: Actor calls are never retried; issue a new request")]
    RetryRejected(String),
    /// Too many pending actions.
    #[error("{0} pending actions are waiting; confirm or decline some first")]
    TooManyPending(usize),
    /// The audit record that must precede the next step could not be made durable.
    #[error("the audit log cannot record this step ({0}); nothing was executed")]
    AuditUnavailable(String),

    // ----- the kernel said no -----
    /// A kernel rejection, verbatim.
    #[error("{node}: {code}: {message}")]
    Kernel {
        /// The node.
        node: String,
        /// Its stable code.
        code: String,
        /// Its message.
        message: String,
        /// Its invariants.
        invariants: Vec<String>,
        /// For stale sequences.
        current_control_seq: u64,
        /// For a stale plan epoch: the epoch the kernel found.
        current_epoch: u64,
    },

    // ----- transport -----
    /// A read could not reach a node.
    #[error("{node} could not be observed: {error}")]
    NodeUnreachable {
        /// The node.
        node: String,
        /// The transport error.
        error: String,
    },
    /// The target of an action could not be observed, so nothing can be explained or dispatched.
    #[error("{node} could not be observed: {error}; nothing was dispatched")]
    TargetUnreachable {
        /// The node.
        node: String,
        /// The transport error.
        error: String,
    },
    /// Dispatched, but no answer: the kernel's ledger decides.
    #[error(
        "no answer from {node} after dispatch ({error}); the outcome is unknown and is not assumed: run \
         `aerodbctl outcome {key}` (Observer.GetOutcome) to read the kernel's ledger"
    )]
    OutcomeUnknown {
        /// The node.
        node: String,
        /// The key to look up.
        key: String,
        /// The transport error.
        error: String,
    },

    // ----- the audit trail itself -----
    /// The audit trail could not be read (a damaged record, an I/O error).
    #[error("the audit trail cannot be read: {0}")]
    AuditUnreadable(String),
    /// No checkpoint exists yet and none could be written (an empty or unwritable log).
    #[error("no checkpoint can be written: the audit log is empty or unwritable")]
    NoCheckpoint,

    // ----- a bug -----
    /// Something that cannot happen did (a check that should have refused earlier did not, a
    /// task died): nothing was dispatched. The message says what; please report it.
    #[error("internal error (a bug; nothing was dispatched): {0}")]
    Internal(String),

    // ----- after execution -----
    /// The action's outcome is known but its audit record could not be written.
    #[error("the action's outcome ({outcome:?}) could not be recorded in the audit log: {why}")]
    OutcomeUnrecorded {
        /// What happened.
        outcome: Outcome,
        /// Why it is not recorded.
        why: String,
    },
}

/// The stable code of each error (kernel codes pass through).
pub fn code(e: &ControlError) -> String {
    match e {
        ControlError::MissingField { .. } => "PHASE7_MISSING_FIELD".into(),
        ControlError::InvalidField { .. } => "PHASE7_INVALID_FIELD".into(),
        ControlError::TooLarge(_) => "PHASE7_FIELD_TOO_LARGE".into(),
        ControlError::UnknownCommand(_) => "PHASE7_UNKNOWN_COMMAND".into(),
        ControlError::UnknownNode { .. } => "PHASE7_UNKNOWN_NODE".into(),
        ControlError::ConfirmationUnknown => "PHASE7_CONFIRMATION_UNKNOWN".into(),
        ControlError::ConfirmationReused => "PHASE7_CONFIRMATION_REUSED".into(),
        ControlError::ConfirmationExpired => "PHASE7_CONFIRMATION_EXPIRED".into(),
        ControlError::ConfirmationWrongCaller => "PHASE7_CONFIRMATION_WRONG_CALLER".into(),
        ControlError::PlanMismatch => "PHASE7_CONFIRMATION_PLAN_MISMATCH".into(),
        ControlError::TargetMismatch { .. } => "PHASE7_CONFIRMATION_TARGET_MISMATCH".into(),
        ControlError::IncompleteEnhanced { .. } => "PHASE7_INCOMPLETE_ENHANCED_CONFIRMATION".into(),
        ControlError::RetryRejected(_) => "PHASE7_RETRY_REJECTED".into(),
        ControlError::TooManyPending(_) => "PHASE7_TOO_MANY_PENDING".into(),
        ControlError::AuditUnavailable(_) => "PHASE7_AUDIT_UNAVAILABLE".into(),
        ControlError::Kernel { code, .. } => code.clone(),
        ControlError::NodeUnreachable { .. } => "PHASE7_NODE_UNREACHABLE".into(),
        ControlError::TargetUnreachable { .. } => "PHASE7_TARGET_UNREACHABLE".into(),
        ControlError::OutcomeUnknown { .. } => "PHASE7_OUTCOME_UNKNOWN".into(),
        ControlError::OutcomeUnrecorded { .. } => "PHASE7_AUDIT_OUTCOME_UNRECORDED".into(),
        ControlError::Internal(_) => "PHASE7_INTERNAL".into(),
        ControlError::AuditUnreadable(_) => "PHASE7_AUDIT_UNREADABLE".into(),
        ControlError::NoCheckpoint => "PHASE7_NO_CHECKPOINT".into(),
    }
}

/// The wire form. See docs/errors.md for the table this implements.
pub fn to_wire(e: &ControlError) -> WireError {
    use ErrorDomain::{KernelRejection, OperatorInput, Transport, Validation};
    use Outcome::{NotExecuted, Unknown};
    let (status, domain, outcome, invariants): (Code, ErrorDomain, Outcome, Vec<String>) = match e {
        ControlError::MissingField { .. }
        | ControlError::InvalidField { .. }
        | ControlError::UnknownNode { .. }
        | ControlError::TooLarge(_) => (Code::InvalidArgument, OperatorInput, NotExecuted, vec![]),
        ControlError::UnknownCommand(_) => (Code::InvalidArgument, OperatorInput, NotExecuted, vec!["P7-S3".into()]),
        ControlError::ConfirmationUnknown | ControlError::ConfirmationExpired | ControlError::TargetMismatch { .. } => {
            (Code::FailedPrecondition, Validation, NotExecuted, vec!["P7-A2".into()])
        }
        ControlError::ConfirmationReused => {
            (Code::FailedPrecondition, Validation, NotExecuted, vec!["P7-A2".into(), "P7-F3".into()])
        }
        ControlError::ConfirmationWrongCaller => {
            (Code::FailedPrecondition, Validation, NotExecuted, vec!["P7-A2".into(), "P7-A1".into()])
        }
        ControlError::PlanMismatch => {
            (Code::FailedPrecondition, Validation, NotExecuted, vec!["P7-A2".into(), "P7-D1".into()])
        }
        ControlError::IncompleteEnhanced { .. } => {
            (Code::FailedPrecondition, Validation, NotExecuted, vec!["P7-A2".into(), "P6-A1a".into()])
        }
        ControlError::RetryRejected(_) => {
            (Code::FailedPrecondition, Validation, NotExecuted, vec!["P7-F3".into(), "P7-F1".into()])
        }
        ControlError::TooManyPending(_) => (Code::ResourceExhausted, Validation, NotExecuted, vec!["P7-F1".into()]),
        ControlError::AuditUnavailable(_) => {
            (Code::Unavailable, Validation, NotExecuted, vec!["P7-O3".into(), "P7-F1".into()])
        }
        ControlError::Kernel { code, invariants, .. } => {
            // The two rejections that mean "the state moved since the explanation" are ABORTED:
            // the operator re-reads and asks again; every other kernel rejection is final.
            let status = if code == STALE_SEQUENCE || code == PLAN_EPOCH_STALE {
                Code::Aborted
            } else {
                Code::FailedPrecondition
            };
            let mut inv = invariants.clone();
            inv.push("P7-E3".into());
            (status, KernelRejection, NotExecuted, inv)
        }
        ControlError::NodeUnreachable { .. } => (Code::Unavailable, Transport, NotExecuted, vec!["P7-O1".into()]),
        ControlError::TargetUnreachable { .. } => (Code::Unavailable, Transport, NotExecuted, vec!["P7-E2".into()]),
        ControlError::OutcomeUnknown { .. } => {
            (Code::Unavailable, Transport, Unknown, vec!["P7-E2".into(), "P7-F2".into()])
        }
        ControlError::OutcomeUnrecorded { outcome, .. } => (Code::Internal, Validation, *outcome, vec!["P7-O3".into()]),
        ControlError::Internal(_) => (Code::Internal, Validation, NotExecuted, vec!["P7-F1".into()]),
        ControlError::AuditUnreadable(_) => (Code::DataLoss, Validation, NotExecuted, vec!["P7-O3".into()]),
        ControlError::NoCheckpoint => (Code::FailedPrecondition, Validation, NotExecuted, vec!["P7-O3".into()]),
    };
    let message = match e {
        // Kernel rejections pass through verbatim.
        ControlError::Kernel { message, .. } => message.clone(),
        other => other.to_string(),
    };
    let mut w = WireError {
        status,
        domain: CONTROL_DOMAIN.to_string(),
        code: code(e),
        error_domain: domain,
        outcome,
        invariants,
        message,
        field_errors: Vec::new(),
        extra: Vec::new(),
    };
    match e {
        ControlError::MissingField { field } => w = w.with_field(field, "required"),
        ControlError::InvalidField { field, why } => w = w.with_field(field, why.clone()),
        ControlError::UnknownNode { field, node } => {
            w = w.with_field(field, format!("{node:?} is not a configured node"))
        }
        ControlError::UnknownCommand(_) => w = w.with_field("command", "not in the closed command set"),
        ControlError::TooLarge(v) => {
            w = w.with_field(&v.field, v.rule()).with_extra("limit", v.limit.to_string());
        }
        ControlError::Kernel { node, current_control_seq, current_epoch, .. } => {
            w = w.with_extra("node", node.clone());
            if *current_control_seq > 0 {
                w = w.with_extra("current_control_seq", current_control_seq.to_string());
            }
            if *current_epoch > 0 {
                w = w.with_extra("current_epoch", current_epoch.to_string());
            }
        }
        ControlError::OutcomeUnknown { key, node, .. } => {
            w = w.with_extra("idempotency_key", key.clone()).with_extra("node", node.clone())
        }
        ControlError::NodeUnreachable { node, .. } | ControlError::TargetUnreachable { node, .. } => {
            w = w.with_extra("node", node.clone())
        }
        _ => {}
    }
    w
}

impl From<ControlError> for tonic::Status {
    fn from(e: ControlError) -> Self {
        to_wire(&e).into_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_confirmation_failure_has_a_distinct_stable_code() {
        let errors = [
            ControlError::ConfirmationUnknown,
            ControlError::ConfirmationReused,
            ControlError::ConfirmationExpired,
            ControlError::ConfirmationWrongCaller,
            ControlError::PlanMismatch,
            ControlError::TargetMismatch { typed: "a".into(), target: "b".into() },
            ControlError::IncompleteEnhanced { missing: "x".into() },
        ];
        let codes: std::collections::BTreeSet<String> = errors.iter().map(code).collect();
        assert_eq!(codes.len(), errors.len());
        for e in &errors {
            let w = to_wire(e);
            assert_eq!(
                (w.status, w.error_domain, w.outcome),
                (Code::FailedPrecondition, ErrorDomain::Validation, Outcome::NotExecuted)
            );
            assert!(w.invariants.iter().any(|i| i.starts_with("P7-")), "{e:?} cites a P7 invariant");
        }
    }

    #[test]
    fn kernel_rejections_pass_through_verbatim() {
        let e = ControlError::Kernel {
            node: "n2".into(),
            code: STALE_SEQUENCE.into(),
            message: "exact kernel words".into(),
            invariants: vec!["P7-A2".into()],
            current_control_seq: 9,
            current_epoch: 0,
        };
        let w = to_wire(&e);
        assert_eq!(w.code, STALE_SEQUENCE);
        assert_eq!(w.message, "exact kernel words");
        assert_eq!(w.status, Code::Aborted);
        assert_eq!(w.error_domain, ErrorDomain::KernelRejection);
        assert_eq!(w.extra_value("current_control_seq"), Some("9"));
    }
}
