//! The one map from [`ControlError`] to the wire. Exhaustive by construction: no `_` arm.

use tonic::Code;

use crate::contract::codes::{PLAN_EPOCH_STALE, STALE_SEQUENCE};
use crate::control::error::ControlError;
use crate::wire::{CONTROL_DOMAIN, ErrorDomain, Outcome, WireError};

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
