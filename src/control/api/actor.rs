//! Actor: RequestAction → (explanation, pending action) → ConfirmAction → exactly one
//! Kernel.Execute, or DeclineAction. DESIGN §4.
//!
//! Every step leaves an audit record. `requested`, `confirmation_requested` and `confirmed` must
//! be durable before the step that follows them; if one cannot be written the request is refused
//! NOT_EXECUTED before any kernel call. The outcome record (`executed`, `replayed`, `rejected`,
//! `failed`) is durable before the answer.

use tonic::{Request, Response, Status};

use super::convert::{self, decided_json, execute_json, rejection_json};
use super::{SharedCtx, retry_attempts};
use crate::audit::record::{ConfirmationFacts, Draft, ErrorFacts, Observed, Stage};
use crate::control::error::ControlError;
use crate::control::explain::{self, command_name};
use crate::control::flow::{PendingAction, random_id};
use crate::failpoint;
use crate::kernel::codes;
use crate::kernel::digest::request_digest;
use crate::kernel::records::Requester;
use crate::limits::{IDEMPOTENCY_KEY_BYTES_MAX, NODE_ID_BYTES_MAX, RequestLimits, bounded};
use crate::proto::control as pb;
use crate::proto::kernel as kpb;
use crate::tls::authz::{Permit, permit_of};
use crate::wire::{CONTROL_DOMAIN, Outcome};

/// The Actor service.
#[derive(Debug, Clone)]
pub struct ActorService {
    /// Shared context.
    pub ctx: SharedCtx,
}

fn requester_of(permit: &Permit) -> Requester {
    Requester {
        role: permit.identity.role.to_string(),
        name: permit.identity.name.clone(),
        cert_sha256: permit.identity.cert_sha256.clone(),
    }
}

fn kernel_rejection(node: &str, r: &kpb::Rejection) -> ControlError {
    ControlError::Kernel {
        node: node.to_string(),
        code: r.code.clone(),
        message: r.message.clone(),
        invariants: r.invariants.clone(),
        current_control_seq: r.current_control_seq,
        current_epoch: r.current_epoch,
    }
}

impl ActorService {
    /// Records a refusal (best effort: the refusal stands whether or not it could be recorded)
    /// and returns it.
    async fn refuse(&self, mut draft: Draft, e: ControlError) -> Status {
        draft.stage = Stage::Rejected;
        draft.outcome = Outcome::NotExecuted.as_str().into();
        draft.error = Some(ErrorFacts::from(&super::status::to_wire(&e)));
        if let ControlError::Kernel { .. } = &e {
            draft.detail.insert("kernel_rejection".into(), "true".into());
        }
        self.ctx.audit.append_best_effort(draft).await;
        e.into()
    }

    async fn request(&self, req: Request<pb::RequestActionRequest>) -> Result<pb::RequestActionResponse, Status> {
        let permit = permit_of(&req, CONTROL_DOMAIN)?;
        let retry = retry_attempts(&req);
        let r = req.into_inner();
        let correlation = random_id();
        let command_text = pb::Command::try_from(r.command).map(command_name).unwrap_or("unknown");
        let mut draft = self.ctx.draft(Stage::Requested, &correlation, command_text, &permit);
        // Bounded: a value over its limit is recorded as a prefix, its length and its hash.
        draft.target = bounded(&r.target_node, NODE_ID_BYTES_MAX);
        draft.idempotency_key = bounded(&r.idempotency_key, IDEMPOTENCY_KEY_BYTES_MAX);
        draft.parameters.insert("command".into(), r.command.to_string());
        if let Err(v) = r.check_limits() {
            return Err(self.refuse(draft, ControlError::TooLarge(Box::new(v))).await);
        }
        if let Err(e) = self.ctx.audit.append(draft.clone()).await {
            return Err(ControlError::AuditUnavailable(e.to_string()).into());
        }
        if let Some(n) = retry {
            return Err(self.refuse(draft, ControlError::RetryRejected(n)).await);
        }
        let ids: Vec<&str> = self.ctx.adapter.nodes().iter().map(|n| n.id.as_str()).collect();
        let parsed = match convert::action_request(&r, &ids) {
            Ok(p) => p,
            Err(e) => return Err(self.refuse(draft, e).await),
        };
        let Some(action) = explain::action_for(parsed.command, &parsed.target) else {
            return Err(self.refuse(draft, ControlError::MissingField { field: "command" }).await);
        };
        draft.parameters.insert("force".into(), action.force.to_string());
        let requester = requester_of(&permit);
        let digest = request_digest(&action, &requester);

        // A key any reachable kernel ledger already decided is answered from that ledger.
        let lookup = kpb::GetOutcomeRequest {
            idempotency_key: parsed.idempotency_key.clone(),
            request_digest: digest.to_vec(),
            requester: Some(requester.to_proto()),
        };
        let answers = self.ctx.adapter.get_outcome_all(&lookup).await;
        for (node, answer) in self.ctx.adapter.nodes().iter().zip(&answers) {
            let Ok(a) = answer else { continue };
            if a.in_flight {
                let rejection = kpb::Rejection {
                    code: codes::IDEMPOTENCY_IN_FLIGHT.into(),
                    message: format!("{} reports idempotency key {:?} executing now", node.id, parsed.idempotency_key),
                    invariants: vec!["P7-F3".into()],
                    current_control_seq: 0,
                    current_epoch: 0,
                };
                return Err(self.refuse(draft, kernel_rejection(&node.id, &rejection)).await);
            }
            if !a.found {
                continue;
            }
            if a.r#match == kpb::OutcomeMatch::KeyReused as i32 {
                let rejection = a.key_reused.clone().unwrap_or_default();
                draft.kernel_response = Some(rejection_json(&rejection));
                return Err(self.refuse(draft, kernel_rejection(&node.id, &rejection)).await);
            }
            let record = a.record.clone().unwrap_or_default();
            let mut d = draft.clone();
            d.stage = Stage::Replayed;
            d.kernel_response = Some(decided_json(&record));
            d.outcome =
                if record.decision == kpb::Decision::Executed as i32 { "EXECUTED" } else { "NOT_EXECUTED" }.into();
            d.observed = a.observation.iter().map(Observed::from).collect();
            d.detail.insert("node".into(), node.id.clone());
            if let Err(e) = self.ctx.audit.append(d).await {
                return Err(ControlError::AuditUnavailable(e.to_string()).into());
            }
            return Ok(pb::RequestActionResponse {
                response: Some(pb::request_action_response::Response::Replayed(pb::ReplayedOutcome {
                    node_id: node.id.clone(),
                    record: Some(record),
                    correlation_id: correlation,
                })),
            });
        }

        // One snapshot per node, then the explanation.
        let snaps = self.ctx.adapter.observe_all().await;
        let nodes: Vec<(String, Option<kpb::NodeSnapshot>)> = self
            .ctx
            .adapter
            .nodes()
            .iter()
            .zip(&snaps)
            .map(|(n, s)| (n.id.clone(), s.as_ref().ok().cloned()))
            .collect();
        draft.observed = super::observed_of(&snaps);
        let target_i = self.ctx.adapter.index_of(&parsed.target).unwrap_or(0);
        if let Err(e) = &snaps[target_i] {
            let err = ControlError::TargetUnreachable { node: parsed.target.clone(), error: e.to_string() };
            return Err(self.refuse(draft, err).await);
        }
        let Some(explanation) = explain::explain(parsed.command, &parsed.target, &nodes) else {
            let err = ControlError::TargetUnreachable { node: parsed.target.clone(), error: "no snapshot".into() };
            return Err(self.refuse(draft, err).await);
        };
        let plan_digest = explain::plan_digest(&explanation);
        let requirements = explain::requirements(parsed.command, &parsed.target, &permit.identity.name);
        let minted = self.ctx.flow.mint(|confirmation_id, expires_at_ms| PendingAction {
            confirmation_id,
            correlation_id: correlation.clone(),
            idempotency_key: parsed.idempotency_key.clone(),
            command: parsed.command,
            action: action.clone(),
            requester: requester.clone(),
            request_digest: digest,
            explanation: explanation.clone(),
            plan_digest: plan_digest.clone(),
            requirements: requirements.clone(),
            expected_control_seq: explanation.expected_control_seq,
            caller_fingerprint: permit.identity.cert_sha256.clone(),
            expires_at_ms,
        });
        let pending = match minted {
            Ok(p) => p,
            Err(e) => return Err(self.refuse(draft, e).await),
        };
        let mut d = draft.clone();
        d.stage = Stage::ConfirmationRequested;
        d.detail.insert("plan_digest".into(), plan_digest.clone());
        d.detail.insert("expected_control_seq".into(), explanation.expected_control_seq.to_string());
        if explanation.plan_epoch > 0 {
            d.detail.insert("plan_epoch".into(), explanation.plan_epoch.to_string());
        }
        d.detail.insert(
            "confirmation_type".into(),
            pb::ConfirmationType::try_from(requirements.r#type).map(|t| t.as_str_name()).unwrap_or("?").into(),
        );
        d.detail.insert("summary".into(), explanation.summary.clone());
        if !explanation.unreachable_nodes.is_empty() {
            d.detail.insert("unreachable_nodes".into(), explanation.unreachable_nodes.join(","));
        }
        if let Err(e) = self.ctx.audit.append(d).await {
            self.ctx.flow.discard(&pending.confirmation_id);
            return Err(ControlError::AuditUnavailable(e.to_string()).into());
        }
        Ok(pb::RequestActionResponse {
            response: Some(pb::request_action_response::Response::Pending(pb::PendingAction {
                confirmation_id: pending.confirmation_id,
                explanation: Some(explanation),
                plan_digest,
                requirements: Some(requirements),
                expires_after_seconds: self.ctx.flow.ttl_seconds(),
                correlation_id: correlation,
                idempotency_key: parsed.idempotency_key,
            })),
        })
    }

    async fn confirm(&self, req: Request<pb::ConfirmActionRequest>) -> Result<pb::ConfirmActionResponse, Status> {
        let permit = permit_of(&req, CONTROL_DOMAIN)?;
        let retry = retry_attempts(&req);
        let r = req.into_inner();
        let base = |correlation: &str, p: Option<&PendingAction>| {
            let command = p.map(|p| command_name(p.command)).unwrap_or("confirm_action");
            let mut d = self.ctx.draft(Stage::Rejected, correlation, command, &permit);
            d.parameters.insert("confirmation_id_prefix".into(), r.confirmation_id.chars().take(8).collect());
            if let Some(p) = p {
                d.target = p.action.target_node.clone();
                d.idempotency_key = p.idempotency_key.clone();
                d.parameters.insert("force".into(), p.action.force.to_string());
            }
            d
        };
        if let Some(n) = retry {
            return Err(self.refuse(base(&random_id(), None), ControlError::RetryRejected(n)).await);
        }
        if let Err(v) = r.check_limits() {
            return Err(self.refuse(base(&random_id(), None), ControlError::TooLarge(Box::new(v))).await);
        }
        let input = match convert::confirm_input(&r) {
            Ok(i) => i,
            Err(e) => return Err(self.refuse(base(&random_id(), None), e).await),
        };
        let pending = match self.ctx.flow.confirm(&input, &permit.identity.cert_sha256) {
            Ok(p) => p,
            Err(refused) => {
                let refused = *refused;
                let p = refused.pending.as_deref();
                let correlation = p.map(|p| p.correlation_id.clone()).unwrap_or_else(random_id);
                let mut d = base(&correlation, p);
                d.detail.insert("pending_action_discarded".into(), refused.discarded.to_string());
                return Err(self.refuse(d, refused.error).await);
            }
        };
        let enhanced = pending.requirements.r#type == pb::ConfirmationType::Enhanced as i32;
        let mut d = base(&pending.correlation_id, Some(&pending));
        d.stage = Stage::Confirmed;
        d.confirmation = Some(ConfirmationFacts {
            kind: if enhanced { "enhanced" } else { "standard" }.into(),
            acknowledged_invariants: input.acknowledged_invariants.clone(),
            accept_responsibility: input.accept_responsibility,
            plan_digest: pending.plan_digest.clone(),
        });
        d.observed = pending.explanation.observed.iter().map(Observed::from).collect();
        d.detail.insert("expected_control_seq".into(), pending.expected_control_seq.to_string());
        if pending.explanation.plan_epoch > 0 {
            d.detail.insert("plan_epoch".into(), pending.explanation.plan_epoch.to_string());
        }
        failpoint::hit_async("control.before_confirmed_record").await;
        if let Err(e) = self.ctx.audit.append(d.clone()).await {
            return Err(ControlError::AuditUnavailable(e.to_string()).into());
        }
        failpoint::hit_async("control.after_confirmed_record").await;

        let execute = kpb::ExecuteRequest {
            idempotency_key: pending.idempotency_key.clone(),
            request_digest: pending.request_digest.to_vec(),
            expected_control_seq: pending.expected_control_seq,
            action: Some(pending.action.to_proto()),
            requester: Some(pending.requester.to_proto()),
            confirmation: Some(kpb::Confirmation {
                kind: if enhanced { kpb::ConfirmationKind::Enhanced } else { kpb::ConfirmationKind::Standard } as i32,
                acknowledged_invariants: input.acknowledged_invariants.clone(),
                accept_responsibility: input.accept_responsibility,
            }),
            plan_epoch: pending.explanation.plan_epoch,
        };
        let target = pending.action.target_node.clone();
        let i = self.ctx.adapter.index_of(&target).unwrap_or(0);
        failpoint::hit_async("control.before_dispatch").await;
        let answer = self.ctx.adapter.execute(i, execute).await;
        failpoint::hit_async("control.after_dispatch").await;

        let mut out = d.clone();
        out.confirmation = None;
        let result: Result<pb::ConfirmActionResponse, ControlError> = match answer {
            Ok(resp) => {
                out.kernel_response = Some(execute_json(&resp));
                out.observed = resp.observation_after.iter().map(Observed::from).collect();
                match (&resp.unrecorded_rejection, &resp.record) {
                    (Some(rej), _) => Err(kernel_rejection(&target, rej)),
                    (None, Some(rec)) if rec.decision == kpb::Decision::Executed as i32 => {
                        Ok(pb::ConfirmActionResponse {
                            outcome: if resp.replayed {
                                pb::ActionOutcome::Replayed
                            } else {
                                pb::ActionOutcome::Executed
                            } as i32,
                            record: Some(rec.clone()),
                            control_seq_after: resp.control_seq_after,
                            correlation_id: pending.correlation_id.clone(),
                            idempotency_key: pending.idempotency_key.clone(),
                            target_node: target.clone(),
                        })
                    }
                    (None, Some(rec)) => Err(kernel_rejection(&target, &rec.rejection.clone().unwrap_or_default())),
                    (None, None) => Err(ControlError::OutcomeUnknown {
                        node: target.clone(),
                        key: pending.idempotency_key.clone(),
                        error: "the kernel's answer held no decision".into(),
                    }),
                }
            }
            Err(crate::control::adapter::ExecuteError::Kernel(w)) => Err(ControlError::Kernel {
                node: target.clone(),
                code: w.code.clone(),
                message: w.message.clone(),
                invariants: w.invariants.clone(),
                current_control_seq: 0,
                current_epoch: 0,
            }),
            Err(crate::control::adapter::ExecuteError::Transport(t)) => Err(ControlError::OutcomeUnknown {
                node: target.clone(),
                key: pending.idempotency_key.clone(),
                error: t.to_string(),
            }),
        };
        failpoint::hit_async("control.after_kernel_answer").await;
        let (stage, outcome) = match &result {
            Ok(r) if r.outcome == pb::ActionOutcome::Replayed as i32 => (Stage::Replayed, Outcome::Executed),
            Ok(_) => (Stage::Executed, Outcome::Executed),
            Err(ControlError::OutcomeUnknown { .. }) => (Stage::Failed, Outcome::Unknown),
            Err(_) => (Stage::Rejected, Outcome::NotExecuted),
        };
        out.stage = stage;
        out.outcome = outcome.as_str().into();
        if let Err(e) = &result {
            out.error = Some(ErrorFacts::from(&super::status::to_wire(e)));
        }
        failpoint::hit_async("control.before_outcome_record").await;
        if let Err(e) = self.ctx.audit.append(out).await {
            return Err(ControlError::OutcomeUnrecorded { outcome, why: e.to_string() }.into());
        }
        failpoint::hit_async("control.before_response").await;
        result.map_err(Status::from)
    }

    async fn decline(&self, req: Request<pb::DeclineActionRequest>) -> Result<pb::DeclineActionResponse, Status> {
        let permit = permit_of(&req, CONTROL_DOMAIN)?;
        let retry = retry_attempts(&req);
        let limits = req.get_ref().check_limits();
        let id = req.into_inner().confirmation_id;
        let draft = |correlation: &str, p: Option<&PendingAction>| {
            let mut d = self.ctx.draft(
                Stage::Declined,
                correlation,
                p.map(|p| command_name(p.command)).unwrap_or("decline_action"),
                &permit,
            );
            if let Some(p) = p {
                d.target = p.action.target_node.clone();
                d.idempotency_key = p.idempotency_key.clone();
            }
            d
        };
        if let Some(n) = retry {
            return Err(self.refuse(draft(&random_id(), None), ControlError::RetryRejected(n)).await);
        }
        if let Err(v) = limits {
            return Err(self.refuse(draft(&random_id(), None), ControlError::TooLarge(Box::new(v))).await);
        }
        if id.is_empty() {
            return Err(self
                .refuse(draft(&random_id(), None), ControlError::MissingField { field: "confirmation_id" })
                .await);
        }
        match self.ctx.flow.decline(&id, &permit.identity.cert_sha256) {
            Ok(p) => {
                let mut d = draft(&p.correlation_id, Some(&p));
                d.outcome = Outcome::NotExecuted.as_str().into();
                self.ctx.audit.append_best_effort(d).await;
                Ok(pb::DeclineActionResponse {
                    correlation_id: p.correlation_id,
                    outcome: Outcome::NotExecuted.as_str().into(),
                })
            }
            Err(refused) => {
                let refused = *refused;
                let p = refused.pending.as_deref();
                let correlation = p.map(|p| p.correlation_id.clone()).unwrap_or_else(random_id);
                let mut d = draft(&correlation, p);
                d.detail.insert("pending_action_discarded".into(), refused.discarded.to_string());
                Err(self.refuse(d, refused.error).await)
            }
        }
    }
}

#[tonic::async_trait]
impl pb::actor_server::Actor for ActorService {
    async fn request_action(
        &self,
        req: Request<pb::RequestActionRequest>,
    ) -> Result<Response<pb::RequestActionResponse>, Status> {
        self.request(req).await.map(Response::new)
    }

    async fn confirm_action(
        &self,
        req: Request<pb::ConfirmActionRequest>,
    ) -> Result<Response<pb::ConfirmActionResponse>, Status> {
        // Run to the end even if the client goes away: the audit trail must not stop between
        // `confirmed` and the outcome because a connection dropped.
        let this = self.clone();
        tokio::spawn(async move { this.confirm(req).await })
            .await
            .map_err(|e| Status::internal(format!("confirmation task failed: {e}")))?
            .map(Response::new)
    }

    async fn decline_action(
        &self,
        req: Request<pb::DeclineActionRequest>,
    ) -> Result<Response<pb::DeclineActionResponse>, Status> {
        self.decline(req).await.map(Response::new)
    }
}
