//! The three Actor steps end to end, in order, each record durable before the step it precedes.
//!
//! - [`request`]: `requested` (durable) → the ledgers' lookup → one snapshot per node → the
//!   explanation → a pending action → `confirmation_requested` (durable) → the answer. Zero
//!   mutating kernel calls.
//! - [`confirm`]: the store's checks → the pending action's checks (both in [`super::pending`])
//!   → `confirmed` (durable, or NOT_EXECUTED) → [`super::Confirmed::dispatch`]: one
//!   `Kernel.Execute` and its outcome → the outcome record (durable before the answer).
//! - [`decline`]: the store's checks → `declined`.
//!
//! A refusal is recorded (`rejected`, best effort) with what the caller sent, bounded, and the
//! pending action it concerned, and changes nothing else. Every record is an
//! [`AuditEvent`] holding exactly its stage's fields ([`super::event`]).

use super::dispatch::kernel_rejection;
use super::event::{ActionRef, Attempt, AuditEvent, Base, Decided, Dispatch, PlanFacts, Refused, Sent};
use super::kernel_json::{decided_json, rejection_json};
use super::{
    ActionRequest, Caller, ConfirmAnswer, ConfirmInput, ConfirmReceived, DeclineAnswer, Lookup, PendingAction,
    PendingAnswer, RequestAnswer, RequestReceived, lookup, random_id, required_confirmation,
};
use crate::audit::record::{ConfirmationFacts, ErrorFacts};
use crate::contract::codes;
use crate::contract::digest::request_digest;
use crate::contract::intent::Intent;
use crate::control::adapter::snapshot::{NodeState, node_state, observed_of};
use crate::control::context::Ctx;
use crate::control::digest;
use crate::control::error::{ControlError, to_wire};
use crate::control::explain;
use crate::failpoint;
use crate::proto::kernel as kpb;
use crate::wire::Outcome;

/// Records a refusal of what `refused` describes (best effort: the refusal stands whether or
/// not it could be recorded) and returns it.
async fn refuse(ctx: &Ctx, base: Base, refused: Refused, e: ControlError) -> ControlError {
    let event = AuditEvent::Rejected {
        base,
        refused,
        error: ErrorFacts::from(&to_wire(&e)),
        kernel_rejection: matches!(e, ControlError::Kernel { .. }),
    };
    ctx.audit.append_best_effort(event.into_draft()).await;
    e
}

fn unavailable(e: impl std::fmt::Display) -> ControlError {
    ControlError::AuditUnavailable(e.to_string())
}

/// The configured index of `node`; a node that passed parsing but is not configured is a bug.
fn index_of(ctx: &Ctx, node: &str) -> Result<usize, ControlError> {
    ctx.adapter.index_of(node).ok_or_else(|| ControlError::Internal(format!("target {node} is not a configured node")))
}

/// RequestAction. `parsed` is the api's parse of `raw` (judged after the `requested` record).
pub async fn request(
    ctx: &Ctx,
    caller: &Caller,
    raw: RequestReceived,
    retry: Option<String>,
    parsed: Result<ActionRequest, ControlError>,
) -> Result<RequestAnswer, ControlError> {
    let correlation = random_id();
    let base = Base::new(caller, &correlation, raw.command_name);
    // Bounded: a value over its limit is recorded as a prefix, its length and its hash.
    let sent = Sent::new(&raw.target_node, &raw.idempotency_key, raw.command_number);
    // What a refusal at each point records: what was sent, then what the step learned.
    let refused = |force: Option<bool>, observed: Vec<_>, kernel_response| Refused::Request {
        sent: sent.clone(),
        force,
        observed,
        kernel_response,
    };
    if let Err(v) = raw.limits {
        return Err(refuse(ctx, base, refused(None, vec![], None), ControlError::TooLarge(v)).await);
    }
    let requested = AuditEvent::Requested { base: base.clone(), sent: sent.clone() };
    ctx.audit.append(requested.into_draft()).await.map_err(unavailable)?;
    if let Some(n) = retry {
        return Err(refuse(ctx, base, refused(None, vec![], None), ControlError::RetryRejected(n)).await);
    }
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => return Err(refuse(ctx, base, refused(None, vec![], None), e).await),
    };
    let action = explain::action_for(parsed.command, &parsed.target);
    let force = Some(action.force);
    let digest = request_digest(&action, &caller.requester);

    // A key any reachable kernel ledger already decided is answered from that ledger.
    let probe = kpb::GetOutcomeRequest {
        idempotency_key: parsed.idempotency_key.clone(),
        request_digest: digest.to_vec(),
        requester: Some(caller.requester.to_proto()),
    };
    let answers = ctx.adapter.get_outcome_all(&probe).await;
    let seen = ctx.adapter.nodes().iter().zip(&answers).map(|(n, a)| (n.id.as_str(), a.as_ref().ok()));
    match lookup(seen) {
        Lookup::Fresh => {}
        Lookup::InFlight { node } => {
            let rejection = kpb::Rejection {
                code: codes::IDEMPOTENCY_IN_FLIGHT.into(),
                message: format!("{node} reports idempotency key {:?} executing now", parsed.idempotency_key),
                invariants: vec!["P7-F3".into()],
                ..Default::default()
            };
            return Err(refuse(ctx, base, refused(force, vec![], None), kernel_rejection(&node, &rejection)).await);
        }
        Lookup::Reused { node, rejection } => {
            let what = refused(force, vec![], Some(rejection_json(&rejection)));
            return Err(refuse(ctx, base, what, kernel_rejection(&node, &rejection)).await);
        }
        Lookup::Replayed { node, record, observation } => {
            let replayed = AuditEvent::Replayed {
                base,
                sent,
                force: action.force,
                node: node.clone(),
                record: decided_json(&record),
                executed: record.decision == kpb::Decision::Executed as i32,
                observed: observation.into_iter().collect(),
            };
            ctx.audit.append(replayed.into_draft()).await.map_err(unavailable)?;
            return Ok(RequestAnswer::Replayed { node, record, correlation_id: correlation });
        }
    }

    // One snapshot per node, then the explanation.
    let snaps = ctx.adapter.observe_all().await;
    let nodes: Vec<(String, Option<NodeState>)> =
        ctx.adapter.nodes().iter().zip(&snaps).map(|(n, s)| (n.id.clone(), s.as_ref().ok().map(node_state))).collect();
    let observed = observed_of(&snaps);
    let target = index_of(ctx, &parsed.target)?;
    if let Some(Err(e)) = snaps.get(target) {
        let err = ControlError::TargetUnreachable { node: parsed.target.clone(), error: e.to_string() };
        return Err(refuse(ctx, base, refused(force, observed, None), err).await);
    }
    let Some(explanation) = explain::explain(parsed.command, &parsed.target, &nodes) else {
        let err = ControlError::TargetUnreachable { node: parsed.target.clone(), error: "no snapshot".into() };
        return Err(refuse(ctx, base, refused(force, observed, None), err).await);
    };
    let plan_digest = digest::plan_digest(&explanation);
    let requirements = explain::requirements(parsed.command, &parsed.target, &caller.requester.name);
    let command = parsed.command;
    // The target's kernel decides how many actors must sign; its snapshot says so.
    let signatures_required =
        nodes.get(target).and_then(|(_, s)| s.as_ref()?.approvals.as_ref()).map(|a| a.required(command)).unwrap_or(1);
    let mut digest_bytes = [0u8; 32];
    if hex::decode_to_slice(&plan_digest, &mut digest_bytes).is_err() {
        let err = ControlError::Internal("plan digest is not 32 bytes of hex".into());
        return Err(refuse(ctx, base, refused(force, observed, None), err).await);
    }
    let intent = Intent {
        cluster_id: ctx.cluster_id.clone(),
        command,
        target_node: parsed.target.clone(),
        plan_epoch: explanation.plan_epoch,
        expected_control_seq: explanation.expected_control_seq,
        plan_digest: digest_bytes,
        idempotency_key: parsed.idempotency_key.clone(),
        confirmation: required_confirmation(&requirements),
        requester: caller.requester.clone(),
        not_after_unix_ms: ctx.clock.now_unix_ms().saturating_add(ctx.pending.ttl_ms()),
    };
    #[cfg(feature = "failpoints")]
    let intent = super::tamper::pending_intent(intent);
    let intent_bytes = intent.encode();
    let minted = ctx.pending.mint(|confirmation_id, expires_at_ms| PendingAction {
        intent: intent.clone(),
        intent_bytes: intent_bytes.clone(),
        signatures_required,
        target_index: target,
        confirmation_id,
        correlation_id: correlation.clone(),
        idempotency_key: parsed.idempotency_key.clone(),
        command: parsed.command,
        action: action.clone(),
        requester: caller.requester.clone(),
        request_digest: digest,
        explanation: explanation.clone(),
        plan_digest: plan_digest.clone(),
        requirements: requirements.clone(),
        expected_control_seq: explanation.expected_control_seq,
        caller_fingerprint: caller.fingerprint.clone(),
        expires_at_ms,
    });
    let pending = match minted {
        Ok(p) => p,
        Err(e) => return Err(refuse(ctx, base, refused(force, observed, None), e).await),
    };
    let shown = AuditEvent::ConfirmationRequested {
        base,
        sent,
        force: action.force,
        observed,
        plan: Box::new(PlanFacts {
            plan_digest: plan_digest.clone(),
            expected_control_seq: explanation.expected_control_seq,
            plan_epoch: explanation.plan_epoch,
            confirmation: requirements.kind,
            summary: explanation.summary.clone(),
            intent_sha256: Intent::sha256_hex(&intent_bytes),
            signatures_required,
            unreachable_nodes: explanation.unreachable_nodes.clone(),
        }),
    };
    if let Err(e) = ctx.audit.append(shown.into_draft()).await {
        ctx.pending.discard(&pending.confirmation_id);
        return Err(unavailable(e));
    }
    Ok(RequestAnswer::Pending(Box::new(PendingAnswer {
        confirmation_id: pending.confirmation_id,
        explanation,
        plan_digest,
        requirements,
        expires_after_seconds: ctx.pending.ttl_seconds(),
        correlation_id: correlation,
        idempotency_key: parsed.idempotency_key,
        intent: intent_bytes,
        signatures_required,
    })))
}

/// The base of a confirm attempt's records: the pending action's correlation and command when
/// it is known, else a fresh correlation and `confirm_action`.
fn confirm_base(caller: &Caller, p: Option<&PendingAction>) -> Base {
    match p {
        Some(p) => Base::new(caller, &p.correlation_id, p.command.as_str()),
        None => Base::new(caller, &random_id(), "confirm_action"),
    }
}

/// ConfirmAction. `input` is the api's parse of `raw`.
pub async fn confirm(
    ctx: &Ctx,
    caller: &Caller,
    raw: ConfirmReceived,
    retry: Option<String>,
    input: Result<ConfirmInput, ControlError>,
) -> Result<ConfirmAnswer, ControlError> {
    let raw_id = raw.confirmation_id.as_str();
    let refused = |p: Option<&PendingAction>, discarded: Option<bool>| Refused::Confirm {
        attempt: Attempt::new(raw_id, p),
        discarded,
    };
    if let Some(n) = retry {
        return Err(refuse(ctx, confirm_base(caller, None), refused(None, None), ControlError::RetryRejected(n)).await);
    }
    if let Err(v) = raw.limits {
        return Err(refuse(ctx, confirm_base(caller, None), refused(None, None), ControlError::TooLarge(v)).await);
    }
    let input = match input {
        Ok(i) => i,
        Err(e) => return Err(refuse(ctx, confirm_base(caller, None), refused(None, None), e).await),
    };
    let checked =
        ctx.pending.take(&input.confirmation_id, &caller.fingerprint).and_then(|pending| pending.confirm(&input));
    let confirmed = match checked {
        Ok(c) => c,
        Err(refused) => {
            let refused = *refused;
            let p = refused.pending.as_deref();
            let what = self::Refused::Confirm { attempt: Attempt::new(raw_id, p), discarded: Some(refused.discarded) };
            return Err(refuse(ctx, confirm_base(caller, p), what, refused.error).await);
        }
    };
    let pending = &confirmed.pending;
    let base = confirm_base(caller, Some(pending));
    let record = AuditEvent::Confirmed {
        base: base.clone(),
        attempt: Attempt::new(raw_id, Some(pending)),
        confirmation: ConfirmationFacts {
            kind: confirmed.kind.as_str().into(),
            acknowledged_invariants: input.acknowledged_invariants.clone(),
            accept_responsibility: input.accept_responsibility,
            plan_digest: pending.plan_digest.clone(),
            intent: hex::encode(&pending.intent_bytes),
            signatures: input.signatures.clone(),
        },
        observed: pending.explanation.observed.clone(),
        expected_control_seq: pending.expected_control_seq,
        plan_epoch: pending.plan_epoch(),
    };
    failpoint::hit_async("control.before_confirmed_record").await;
    let receipt = ctx.audit.append(record.into_draft()).await.map_err(unavailable)?;
    failpoint::hit_async("control.after_confirmed_record").await;

    let (pending, classified) = confirmed.dispatch(&ctx.adapter, &receipt).await;

    // The answer's observation point; without an answer the record keeps the explanation's.
    let observed =
        if classified.kernel_response.is_some() { classified.observed } else { pending.explanation.observed.clone() };
    let out = AuditEvent::Dispatched {
        base,
        attempt: Attempt::new(raw_id, Some(&pending)),
        expected_control_seq: pending.expected_control_seq,
        plan_epoch: pending.plan_epoch(),
        dispatch: Box::new(Dispatch {
            stage: classified.outcome.stage(),
            outcome: classified.outcome.wire_outcome(),
            kernel_response: classified.kernel_response,
            observed,
            error: classified.outcome.error().map(|e| ErrorFacts::from(&to_wire(e))),
            decided: classified.decided.map(|(control_seq, record_hash)| Decided {
                control_seq,
                record_hash,
                confirmed_leaf: receipt.leaf,
            }),
        }),
    };
    failpoint::hit_async("control.before_outcome_record").await;
    if let Err(e) = ctx.audit.append(out.into_draft()).await {
        let outcome = classified.outcome.wire_outcome();
        return Err(ControlError::OutcomeUnrecorded { outcome, why: e.to_string() });
    }
    failpoint::hit_async("control.before_response").await;
    classified.outcome.into_result()
}

/// DeclineAction.
pub async fn decline(
    ctx: &Ctx,
    caller: &Caller,
    raw: ConfirmReceived,
    retry: Option<String>,
) -> Result<DeclineAnswer, ControlError> {
    let base = |p: Option<&PendingAction>| match p {
        Some(p) => Base::new(caller, &p.correlation_id, p.command.as_str()),
        None => Base::new(caller, &random_id(), "decline_action"),
    };
    let unknown = || Refused::Decline { action: None, discarded: None };
    if let Some(n) = retry {
        return Err(refuse(ctx, base(None), unknown(), ControlError::RetryRejected(n)).await);
    }
    if let Err(v) = raw.limits {
        return Err(refuse(ctx, base(None), unknown(), ControlError::TooLarge(v)).await);
    }
    if raw.confirmation_id.is_empty() {
        let e = ControlError::MissingField { field: "confirmation_id" };
        return Err(refuse(ctx, base(None), unknown(), e).await);
    }
    match ctx.pending.decline(&raw.confirmation_id, &caller.fingerprint) {
        Ok(p) => {
            let declined = AuditEvent::Declined { base: base(Some(&p)), action: ActionRef::of(&p) };
            ctx.audit.append_best_effort(declined.into_draft()).await;
            Ok(DeclineAnswer { correlation_id: p.correlation_id, outcome: Outcome::NotExecuted })
        }
        Err(refused) => {
            let refused = *refused;
            let p = refused.pending.as_deref();
            let what = Refused::Decline { action: p.map(ActionRef::of), discarded: Some(refused.discarded) };
            Err(refuse(ctx, base(p), what, refused.error).await)
        }
    }
}
