//! The three Actor steps end to end, in order, each record durable before the step it precedes.
//!
//! - [`request`]: `requested` (durable) → the ledgers' lookup → one snapshot per node → the
//!   explanation → a pending action → `confirmation_requested` (durable) → the answer. Zero
//!   mutating kernel calls.
//! - [`confirm`]: the store's checks → the pending action's checks → `confirmed` (durable, or
//!   NOT_EXECUTED) → one `Kernel.Execute` → [`outcome::classify`] → the outcome record (durable
//!   before the answer).
//! - [`decline`]: the store's checks → `declined`.
//!
//! A refusal is recorded (`rejected`, best effort) with what the caller sent, bounded, and the
//! pending action it concerned, and changes nothing else.

use super::kernel_json::{decided_json, rejection_json};
use super::outcome::{self, kernel_rejection};
use super::{
    ActionRequest, Caller, ConfirmAnswer, ConfirmInput, ConfirmReceived, DeclineAnswer, Lookup, PendingAction,
    PendingAnswer, RequestAnswer, RequestReceived, lookup, random_id, required_confirmation,
};
use crate::audit::record::{ConfirmationFacts, Draft, ErrorFacts, Stage};
use crate::contract::codes;
use crate::contract::digest::request_digest;
use crate::contract::intent::Intent;
use crate::control::api::convert::node_state;
use crate::control::api::present::plan_digest as digest_of_plan;
use crate::control::api::status::to_wire;
use crate::control::context::Ctx;
use crate::control::error::ControlError;
use crate::control::explain::{self, NodeState};
use crate::failpoint;
use crate::limits::{IDEMPOTENCY_KEY_BYTES_MAX, NODE_ID_BYTES_MAX, bounded};
use crate::proto::kernel as kpb;
use crate::wire::Outcome;

fn draft(caller: &Caller, stage: Stage, correlation_id: &str, command: &str) -> Draft {
    let mut d = Draft::new(stage, correlation_id, command);
    d.identity = Some(caller.who.clone());
    d.peer = caller.peer.clone();
    d
}

/// Records a refusal (best effort: the refusal stands whether or not it could be recorded) and
/// returns it.
async fn refuse(ctx: &Ctx, mut d: Draft, e: ControlError) -> ControlError {
    d.stage = Stage::Rejected;
    d.outcome = Outcome::NotExecuted.as_str().into();
    d.error = Some(ErrorFacts::from(&to_wire(&e)));
    if let ControlError::Kernel { .. } = &e {
        d.detail.insert("kernel_rejection".into(), "true".into());
    }
    ctx.audit.append_best_effort(d).await;
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
    let mut d = draft(caller, Stage::Requested, &correlation, raw.command_name);
    // Bounded: a value over its limit is recorded as a prefix, its length and its hash.
    d.target = bounded(&raw.target_node, NODE_ID_BYTES_MAX);
    d.idempotency_key = bounded(&raw.idempotency_key, IDEMPOTENCY_KEY_BYTES_MAX);
    d.parameters.insert("command".into(), raw.command_number.to_string());
    if let Err(v) = raw.limits {
        return Err(refuse(ctx, d, ControlError::TooLarge(v)).await);
    }
    ctx.audit.append(d.clone()).await.map_err(unavailable)?;
    if let Some(n) = retry {
        return Err(refuse(ctx, d, ControlError::RetryRejected(n)).await);
    }
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => return Err(refuse(ctx, d, e).await),
    };
    let action = explain::action_for(parsed.command, &parsed.target);
    d.parameters.insert("force".into(), action.force.to_string());
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
            return Err(refuse(ctx, d, kernel_rejection(&node, &rejection)).await);
        }
        Lookup::Reused { node, rejection } => {
            d.kernel_response = Some(rejection_json(&rejection));
            return Err(refuse(ctx, d, kernel_rejection(&node, &rejection)).await);
        }
        Lookup::Replayed { node, record, observation } => {
            let mut r = d;
            r.stage = Stage::Replayed;
            r.kernel_response = Some(decided_json(&record));
            r.outcome =
                if record.decision == kpb::Decision::Executed as i32 { "EXECUTED" } else { "NOT_EXECUTED" }.into();
            r.observed = observation.into_iter().collect();
            r.detail.insert("node".into(), node.clone());
            ctx.audit.append(r).await.map_err(unavailable)?;
            return Ok(RequestAnswer::Replayed { node, record, correlation_id: correlation });
        }
    }

    // One snapshot per node, then the explanation.
    let snaps = ctx.adapter.observe_all().await;
    let nodes: Vec<(String, Option<NodeState>)> =
        ctx.adapter.nodes().iter().zip(&snaps).map(|(n, s)| (n.id.clone(), s.as_ref().ok().map(node_state))).collect();
    d.observed = crate::control::api::observed_of(&snaps);
    let target = index_of(ctx, &parsed.target)?;
    if let Some(Err(e)) = snaps.get(target) {
        let err = ControlError::TargetUnreachable { node: parsed.target.clone(), error: e.to_string() };
        return Err(refuse(ctx, d, err).await);
    }
    let Some(explanation) = explain::explain(parsed.command, &parsed.target, &nodes) else {
        let err = ControlError::TargetUnreachable { node: parsed.target.clone(), error: "no snapshot".into() };
        return Err(refuse(ctx, d, err).await);
    };
    let plan_digest = digest_of_plan(&explanation);
    let requirements = explain::requirements(parsed.command, &parsed.target, &caller.requester.name);
    let command = parsed.command;
    // The target's kernel decides how many actors must sign; its snapshot says so.
    let signatures_required =
        nodes.get(target).and_then(|(_, s)| s.as_ref()?.approvals.as_ref()).map(|a| a.required(command)).unwrap_or(1);
    let mut digest_bytes = [0u8; 32];
    if hex::decode_to_slice(&plan_digest, &mut digest_bytes).is_err() {
        return Err(refuse(ctx, d, ControlError::Internal("plan digest is not 32 bytes of hex".into())).await);
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
        Err(e) => return Err(refuse(ctx, d, e).await),
    };
    let mut r = d;
    r.stage = Stage::ConfirmationRequested;
    r.detail.insert("plan_digest".into(), plan_digest.clone());
    r.detail.insert("expected_control_seq".into(), explanation.expected_control_seq.to_string());
    if explanation.plan_epoch > 0 {
        r.detail.insert("plan_epoch".into(), explanation.plan_epoch.to_string());
    }
    r.detail.insert("confirmation_type".into(), requirements.kind.type_name().into());
    r.detail.insert("summary".into(), explanation.summary.clone());
    r.detail.insert("intent_sha256".into(), Intent::sha256_hex(&intent_bytes));
    r.detail.insert("signatures_required".into(), signatures_required.to_string());
    if !explanation.unreachable_nodes.is_empty() {
        r.detail.insert("unreachable_nodes".into(), explanation.unreachable_nodes.join(","));
    }
    if let Err(e) = ctx.audit.append(r).await {
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

/// The record of a confirm attempt: who, which confirmation (8 characters of its id), and the
/// pending action it concerned.
fn confirm_draft(caller: &Caller, raw_id: &str, correlation: &str, p: Option<&PendingAction>) -> Draft {
    let command = p.map(|p| p.command.as_str()).unwrap_or("confirm_action");
    let mut d = draft(caller, Stage::Rejected, correlation, command);
    d.parameters.insert("confirmation_id_prefix".into(), raw_id.chars().take(8).collect());
    if let Some(p) = p {
        d.target = p.action.target_node.clone();
        d.idempotency_key = p.idempotency_key.clone();
        d.parameters.insert("force".into(), p.action.force.to_string());
    }
    d
}

/// ConfirmAction. `input` is the api's parse of `raw`.
pub async fn confirm(
    ctx: &Ctx,
    caller: &Caller,
    raw: ConfirmReceived,
    retry: Option<String>,
    input: Result<ConfirmInput, ControlError>,
) -> Result<ConfirmAnswer, ControlError> {
    let fresh = || confirm_draft(caller, &raw.confirmation_id, &random_id(), None);
    if let Some(n) = retry {
        return Err(refuse(ctx, fresh(), ControlError::RetryRejected(n)).await);
    }
    if let Err(v) = raw.limits {
        return Err(refuse(ctx, fresh(), ControlError::TooLarge(v)).await);
    }
    let input = match input {
        Ok(i) => i,
        Err(e) => return Err(refuse(ctx, fresh(), e).await),
    };
    let checked =
        ctx.pending.take(&input.confirmation_id, &caller.fingerprint).and_then(|pending| pending.confirm(&input));
    let confirmed = match checked {
        Ok(c) => c,
        Err(refused) => {
            let refused = *refused;
            let p = refused.pending.as_deref();
            let correlation = p.map(|p| p.correlation_id.clone()).unwrap_or_else(random_id);
            let mut d = confirm_draft(caller, &raw.confirmation_id, &correlation, p);
            d.detail.insert("pending_action_discarded".into(), refused.discarded.to_string());
            return Err(refuse(ctx, d, refused.error).await);
        }
    };
    let pending = &confirmed.pending;
    let mut d = confirm_draft(caller, &raw.confirmation_id, &pending.correlation_id, Some(pending));
    d.stage = Stage::Confirmed;
    d.confirmation = Some(ConfirmationFacts {
        kind: confirmed.kind.as_str().into(),
        acknowledged_invariants: input.acknowledged_invariants.clone(),
        accept_responsibility: input.accept_responsibility,
        plan_digest: pending.plan_digest.clone(),
        intent: hex::encode(&pending.intent_bytes),
        signatures: input.signatures.clone(),
    });
    d.observed = pending.explanation.observed.clone();
    d.detail.insert("expected_control_seq".into(), pending.expected_control_seq.to_string());
    if pending.plan_epoch() > 0 {
        d.detail.insert("plan_epoch".into(), pending.plan_epoch().to_string());
    }
    let target = match index_of(ctx, &pending.action.target_node) {
        Ok(i) => i,
        Err(e) => {
            let d = confirm_draft(caller, &raw.confirmation_id, &pending.correlation_id, Some(pending));
            return Err(refuse(ctx, d, e).await);
        }
    };
    failpoint::hit_async("control.before_confirmed_record").await;
    let receipt = ctx.audit.append(d.clone()).await.map_err(unavailable)?;
    failpoint::hit_async("control.after_confirmed_record").await;

    failpoint::hit_async("control.before_dispatch").await;
    let request = confirmed.execute_request(receipt.leaf);
    #[cfg(feature = "failpoints")]
    let (target, request) = {
        let ids: Vec<String> = ctx.adapter.nodes().iter().map(|n| n.id.clone()).collect();
        super::tamper::apply(&ids, target, request)
    };
    let answer = ctx.adapter.execute(target, request).await;
    failpoint::hit_async("control.after_dispatch").await;
    let classified = outcome::classify(&confirmed, answer);
    failpoint::hit_async("control.after_kernel_answer").await;

    let mut out = d;
    out.confirmation = None;
    out.stage = classified.outcome.stage();
    out.outcome = classified.outcome.wire_outcome().as_str().into();
    if classified.kernel_response.is_some() {
        // The answer's observation point; without an answer the record keeps the explanation's.
        out.kernel_response = classified.kernel_response;
        out.observed = classified.observed;
    }
    out.error = classified.outcome.error().map(|e| ErrorFacts::from(&to_wire(e)));
    // Where the kernel recorded its decision, so trail and ledger can be checked against each
    // other (`aerodbctl audit crosscheck`).
    if let Some((control_seq, record_hash)) = &classified.decided {
        out.detail.insert("kernel_control_seq".into(), control_seq.to_string());
        out.detail.insert("kernel_record_hash".into(), hex::encode(record_hash));
        out.detail.insert("confirmed_leaf".into(), hex::encode(receipt.leaf));
    }
    failpoint::hit_async("control.before_outcome_record").await;
    if let Err(e) = ctx.audit.append(out).await {
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
    let record = |correlation: &str, p: Option<&PendingAction>| {
        let command = p.map(|p| p.command.as_str()).unwrap_or("decline_action");
        let mut d = draft(caller, Stage::Declined, correlation, command);
        if let Some(p) = p {
            d.target = p.action.target_node.clone();
            d.idempotency_key = p.idempotency_key.clone();
        }
        d
    };
    if let Some(n) = retry {
        return Err(refuse(ctx, record(&random_id(), None), ControlError::RetryRejected(n)).await);
    }
    if let Err(v) = raw.limits {
        return Err(refuse(ctx, record(&random_id(), None), ControlError::TooLarge(v)).await);
    }
    if raw.confirmation_id.is_empty() {
        let e = ControlError::MissingField { field: "confirmation_id" };
        return Err(refuse(ctx, record(&random_id(), None), e).await);
    }
    match ctx.pending.decline(&raw.confirmation_id, &caller.fingerprint) {
        Ok(p) => {
            let mut d = record(&p.correlation_id, Some(&p));
            d.outcome = Outcome::NotExecuted.as_str().into();
            ctx.audit.append_best_effort(d).await;
            Ok(DeclineAnswer { correlation_id: p.correlation_id, outcome: Outcome::NotExecuted })
        }
        Err(refused) => {
            let refused = *refused;
            let p = refused.pending.as_deref();
            let correlation = p.map(|p| p.correlation_id.clone()).unwrap_or_else(random_id);
            let mut d = record(&correlation, p);
            d.detail.insert("pending_action_discarded".into(), refused.discarded.to_string());
            Err(refuse(ctx, d, refused.error).await)
        }
    }
}
