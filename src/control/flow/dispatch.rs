//! The dispatch of a confirmed action: its one Kernel.Execute ([`Confirmed::dispatch`]) and what
//! the answer means ([`classify`], a pure function of the confirmed action and the answer, or
//! the failure to get one, tested over every case without processes).
//!
//! | answer | outcome | audit stage | wire outcome |
//! |---|---|---|---|
//! | a record, executed, not replayed | Executed | `executed` | EXECUTED |
//! | a record, executed, replayed | Replayed | `replayed` | EXECUTED |
//! | a record, rejected | Rejected (the kernel's code verbatim) | `rejected` | NOT_EXECUTED |
//! | an unrecorded rejection | Rejected (verbatim) | `rejected` | NOT_EXECUTED |
//! | neither (a kernel bug) | Unknown | `failed` | UNKNOWN |
//! | the kernel's own error status (malformed request) | Rejected | `rejected` | NOT_EXECUTED |
//! | no answer (transport, deadline, crash) | Unknown: the ledger decides | `failed` | UNKNOWN |

use serde_json::Value;

use super::kernel_json::execute_json;
use super::{ConfirmAnswer, ConfirmInput, ConfirmationKind, PendingAction};
use crate::audit::log::Receipt;
use crate::audit::record::{Observed, Stage};
use crate::contract::intent::Signature;
use crate::control::adapter::{Adapter, ExecuteError};
use crate::control::error::ControlError;
use crate::failpoint;
use crate::proto::kernel as kpb;
use crate::wire;

/// A pending action that passed every check: what is dispatched, exactly once.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmed {
    /// The action confirmed.
    pub(super) pending: PendingAction,
    /// The confirmation as given.
    pub(super) input: ConfirmInput,
    /// Its kind.
    pub(super) kind: ConfirmationKind,
}

impl Confirmed {
    /// The one Kernel.Execute this confirmation sends: the explanation's sequence and epoch, the
    /// requester, the confirmation the intent names (`PendingAction::confirm`'s checks found the
    /// operator's input to contain it), the intent bytes and the signatures as given, and the
    /// leaf hash of the durable `confirmed` audit record (the kernel stores it in its Decided
    /// record).
    pub fn execute_request(&self, confirmed_audit_leaf: [u8; 32]) -> kpb::ExecuteRequest {
        let p = &self.pending;
        kpb::ExecuteRequest {
            idempotency_key: p.idempotency_key.clone(),
            request_digest: p.request_digest.to_vec(),
            expected_control_seq: p.expected_control_seq,
            action: Some(p.action.to_proto()),
            requester: Some(p.requester.to_proto()),
            confirmation: Some(p.intent.confirmation.to_proto()),
            plan_epoch: p.plan_epoch(),
            intent: p.intent_bytes.clone(),
            signatures: self.input.signatures.iter().map(Signature::to_proto).collect(),
            confirmed_audit_leaf: confirmed_audit_leaf.to_vec(),
        }
    }

    /// Sends this confirmation's one Kernel.Execute to its target and classifies the answer;
    /// returns the pending action it dispatched with the classification. Consumes the
    /// confirmation, so it is dispatched at most once, and takes the receipt of its durable
    /// `confirmed` record, whose leaf hash the kernel stores in its Decided record: the record is
    /// durable before the call. Never retried: an answer that does not arrive is
    /// [`Outcome::Unknown`], and the target's ledger decides.
    pub async fn dispatch(self, adapter: &Adapter, confirmed_record: &Receipt) -> (PendingAction, Classified) {
        failpoint::hit_async("control.before_dispatch").await;
        let request = self.execute_request(confirmed_record.leaf);
        let target = self.pending.target_index;
        #[cfg(feature = "failpoints")]
        let (target, request) = {
            let ids: Vec<String> = adapter.nodes().iter().map(|n| n.id.clone()).collect();
            super::tamper::apply(&ids, target, request)
        };
        let answer = adapter.execute(target, request).await;
        failpoint::hit_async("control.after_dispatch").await;
        let classified = classify(&self, answer);
        failpoint::hit_async("control.after_kernel_answer").await;
        (self.pending, classified)
    }
}

/// The outcome of a dispatched action.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The kernel executed it now.
    Executed(ConfirmAnswer),
    /// The kernel had executed the key before: its recorded result, nothing ran again.
    Replayed(ConfirmAnswer),
    /// The kernel said no (verbatim), or refused the request as malformed: nothing ran.
    Rejected(ControlError),
    /// No decision could be read: the kernel's ledger decides (GetOutcome).
    Unknown(ControlError),
}

impl Outcome {
    /// The audit stage of the outcome record.
    pub fn stage(&self) -> Stage {
        match self {
            Outcome::Executed(_) => Stage::Executed,
            Outcome::Replayed(_) => Stage::Replayed,
            Outcome::Rejected(_) => Stage::Rejected,
            Outcome::Unknown(_) => Stage::Failed,
        }
    }

    /// What is known about execution.
    pub fn wire_outcome(&self) -> wire::Outcome {
        match self {
            Outcome::Executed(_) | Outcome::Replayed(_) => wire::Outcome::Executed,
            Outcome::Rejected(_) => wire::Outcome::NotExecuted,
            Outcome::Unknown(_) => wire::Outcome::Unknown,
        }
    }

    /// The error answered, if any.
    pub fn error(&self) -> Option<&ControlError> {
        match self {
            Outcome::Executed(_) | Outcome::Replayed(_) => None,
            Outcome::Rejected(e) | Outcome::Unknown(e) => Some(e),
        }
    }

    /// The answer to ConfirmAction.
    pub fn into_result(self) -> Result<ConfirmAnswer, ControlError> {
        match self {
            Outcome::Executed(r) | Outcome::Replayed(r) => Ok(r),
            Outcome::Rejected(e) | Outcome::Unknown(e) => Err(e),
        }
    }
}

/// An outcome with what its audit record carries of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    /// The outcome.
    pub outcome: Outcome,
    /// The kernel's answer verbatim (absent when none came).
    pub kernel_response: Option<Value>,
    /// The observation point the answer carried.
    pub observed: Vec<Observed>,
    /// The Decided record the answer carried: its control_seq and record hash (absent when the
    /// answer held no record).
    pub decided: Option<(u64, Vec<u8>)>,
}

/// A kernel rejection as the control plane passes it on: verbatim.
pub fn kernel_rejection(node: &str, r: &kpb::Rejection) -> ControlError {
    ControlError::Kernel {
        node: node.to_string(),
        code: r.code.clone(),
        message: r.message.clone(),
        invariants: r.invariants.clone(),
        current_control_seq: r.current_control_seq,
        current_epoch: r.current_epoch,
    }
}

/// Classifies the answer to `confirmed`'s one Execute.
pub fn classify(confirmed: &Confirmed, answer: Result<kpb::ExecuteResponse, ExecuteError>) -> Classified {
    let p = &confirmed.pending;
    let target = p.action.target_node.clone();
    let unknown =
        |error: String| ControlError::OutcomeUnknown { node: target.clone(), key: p.idempotency_key.clone(), error };
    match answer {
        Ok(resp) => {
            let kernel_response = Some(execute_json(&resp));
            let observed = resp.observation_after.iter().map(crate::control::adapter::snapshot::observed).collect();
            let decided = resp.record.as_ref().map(|r| (r.control_seq, r.record_hash.clone()));
            let outcome = match (&resp.unrecorded_rejection, &resp.record) {
                (Some(rej), _) => Outcome::Rejected(kernel_rejection(&target, rej)),
                (None, Some(rec)) if rec.decision == kpb::Decision::Executed as i32 => {
                    let answer = ConfirmAnswer {
                        replayed: resp.replayed,
                        record: Box::new(rec.clone()),
                        control_seq_after: resp.control_seq_after,
                        correlation_id: p.correlation_id.clone(),
                        idempotency_key: p.idempotency_key.clone(),
                        target_node: target.clone(),
                    };
                    if resp.replayed { Outcome::Replayed(answer) } else { Outcome::Executed(answer) }
                }
                (None, Some(rec)) => {
                    Outcome::Rejected(kernel_rejection(&target, &rec.rejection.clone().unwrap_or_default()))
                }
                (None, None) => Outcome::Unknown(unknown("the kernel's answer held no decision".into())),
            };
            Classified { outcome, kernel_response, observed, decided }
        }
        Err(ExecuteError::Kernel(w)) => Classified {
            outcome: Outcome::Rejected(ControlError::Kernel {
                node: target.clone(),
                code: w.code.clone(),
                message: w.message.clone(),
                invariants: w.invariants.clone(),
                current_control_seq: 0,
                current_epoch: 0,
            }),
            kernel_response: None,
            observed: Vec::new(),
            decided: None,
        },
        Err(ExecuteError::Transport(t)) => Classified {
            outcome: Outcome::Unknown(unknown(t.to_string())),
            kernel_response: None,
            observed: Vec::new(),
            decided: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::action::{Action, ActionKind, Requester};
    use crate::contract::intent::Command;
    use crate::control::adapter::TransportError;
    use crate::control::flow::{ConfirmInput, ConfirmationKind, PendingAction};
    use crate::wire::{ErrorDomain, KERNEL_DOMAIN, WireError};

    fn confirmed() -> Confirmed {
        let pending = PendingAction {
            confirmation_id: "c".into(),
            correlation_id: "corr".into(),
            idempotency_key: "k".into(),
            command: Command::RequestPromotion,
            action: Action { kind: ActionKind::Promote, target_node: "n2".into(), force: false },
            requester: Requester { role: "actor".into(), name: "a".into(), cert_sha256: "f".into() },
            request_digest: [0; 32],
            explanation: crate::control::flow::test_explanation(2),
            plan_digest: "pd".into(),
            requirements: crate::control::explain::requirements(Command::RequestPromotion, "n2", "a"),
            expected_control_seq: 4,
            caller_fingerprint: "f".into(),
            expires_at_ms: 1,
            intent: crate::control::flow::test_intent("n2"),
            intent_bytes: crate::control::flow::test_intent("n2").encode(),
            signatures_required: 1,
            target_index: 1,
        };
        let input = ConfirmInput {
            confirmation_id: "c".into(),
            plan_digest: "pd".into(),
            typed_target: "n2".into(),
            acknowledged_invariants: vec![],
            accept_responsibility: false,
            signatures: vec![],
        };
        Confirmed { pending, input, kind: ConfirmationKind::Standard }
    }

    fn rejection(code: &str) -> kpb::Rejection {
        kpb::Rejection {
            code: code.into(),
            message: "no".into(),
            invariants: vec!["P6-A1".into()],
            ..Default::default()
        }
    }

    fn record(executed: bool) -> kpb::DecidedRecord {
        kpb::DecidedRecord {
            decision: if executed { kpb::Decision::Executed } else { kpb::Decision::Rejected } as i32,
            rejection: (!executed).then(|| rejection("AERO_PROMOTION_NO_QUORUM")),
            control_seq: 5,
            ..Default::default()
        }
    }

    fn answer(
        record: Option<kpb::DecidedRecord>,
        replayed: bool,
        unrecorded: Option<kpb::Rejection>,
    ) -> kpb::ExecuteResponse {
        kpb::ExecuteResponse {
            record,
            replayed,
            unrecorded_rejection: unrecorded,
            control_seq_after: 5,
            observation_after: Some(kpb::ObservationPoint {
                node_id: "n2".into(),
                control_seq: 5,
                ..Default::default()
            }),
        }
    }

    /// Every kind of answer (and of missing answer) against the one table in the module docs.
    #[test]
    fn p7_e2_every_kernel_answer_and_transport_failure_has_exactly_one_outcome() {
        let c = confirmed();
        let kernel_error = WireError::new(
            tonic::Code::InvalidArgument,
            KERNEL_DOMAIN,
            "AERO_INVALID_ARGUMENT",
            ErrorDomain::OperatorInput,
            wire::Outcome::NotExecuted,
            &["P7-E3"],
            "plan_epoch: is required",
        );
        let transport = TransportError { node: "n2".into(), status: "Unavailable".into(), message: "cut".into() };
        type Case<'a> = (&'a str, Result<kpb::ExecuteResponse, ExecuteError>, Stage, wire::Outcome, Option<&'a str>);
        let cases: Vec<Case> = vec![
            ("executed", Ok(answer(Some(record(true)), false, None)), Stage::Executed, wire::Outcome::Executed, None),
            ("replayed", Ok(answer(Some(record(true)), true, None)), Stage::Replayed, wire::Outcome::Executed, None),
            (
                "recorded rejection",
                Ok(answer(Some(record(false)), false, None)),
                Stage::Rejected,
                wire::Outcome::NotExecuted,
                Some("AERO_PROMOTION_NO_QUORUM"),
            ),
            (
                "replayed rejection",
                Ok(answer(Some(record(false)), true, None)),
                Stage::Rejected,
                wire::Outcome::NotExecuted,
                Some("AERO_PROMOTION_NO_QUORUM"),
            ),
            (
                "unrecorded rejection",
                Ok(answer(None, false, Some(rejection("AERO_IDEMPOTENCY_KEY_REUSED")))),
                Stage::Rejected,
                wire::Outcome::NotExecuted,
                Some("AERO_IDEMPOTENCY_KEY_REUSED"),
            ),
            (
                "no decision",
                Ok(answer(None, false, None)),
                Stage::Failed,
                wire::Outcome::Unknown,
                Some("PHASE7_OUTCOME_UNKNOWN"),
            ),
            (
                "kernel error status",
                Err(ExecuteError::Kernel(kernel_error)),
                Stage::Rejected,
                wire::Outcome::NotExecuted,
                Some("AERO_INVALID_ARGUMENT"),
            ),
            (
                "transport",
                Err(ExecuteError::Transport(transport)),
                Stage::Failed,
                wire::Outcome::Unknown,
                Some("PHASE7_OUTCOME_UNKNOWN"),
            ),
        ];
        for (what, answer, stage, outcome, code) in cases {
            let got = classify(&c, answer);
            assert_eq!(got.outcome.stage(), stage, "{what}");
            assert_eq!(got.outcome.wire_outcome(), outcome, "{what}");
            let err_code = got.outcome.error().map(crate::control::error::code);
            assert_eq!(err_code.as_deref(), code, "{what}");
            if let Some(e) = got.outcome.error() {
                assert_eq!(crate::control::error::to_wire(e).outcome, outcome, "{what}: the wire agrees");
            }
            match got.outcome.into_result() {
                Ok(r) => {
                    assert_eq!((r.idempotency_key.as_str(), r.target_node.as_str()), ("k", "n2"), "{what}");
                    assert_eq!(r.correlation_id, "corr", "{what}");
                }
                Err(ControlError::OutcomeUnknown { key, node, .. }) => {
                    assert_eq!((key.as_str(), node.as_str()), ("k", "n2"))
                }
                Err(ControlError::Kernel { node, .. }) => assert_eq!(node, "n2", "{what}"),
                Err(other) => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_execute_request_carries_the_plan_sequence_epoch_and_confirmation_as_given() {
        let c = confirmed();
        let r = c.execute_request([9; 32]);
        assert_eq!((r.expected_control_seq, r.plan_epoch, r.idempotency_key.as_str()), (4, 2, "k"));
        assert_eq!(r.confirmed_audit_leaf, vec![9; 32], "the confirmed record's leaf, for the Decided record");
        assert_eq!(r.confirmation.map(|c| c.kind), Some(kpb::ConfirmationKind::Standard as i32));
    }
}
