//! Actor: RequestAction → (explanation, pending action) → ConfirmAction → exactly one
//! Kernel.Execute, or DeclineAction. DESIGN §4.
//!
//! Each handler is three lines of intent: the caller from the authorization permit, the request
//! parsed ([`convert`]), one step of [`crate::control::flow::actions`], its error mapped to the
//! wire (`impl From<ControlError> for Status`, [`crate::control::error::to_wire`]). Everything the steps record, and in which order, is the flow's.
//!
//! Every answer, success or error, carries the signed audit checkpoint that covers the record
//! it reports (`with_checkpoint`): in the response's `audit_checkpoint` field, or on an error
//! in the `aerodb-audit-checkpoint-bin` metadata (the note's bytes).

use tonic::{Request, Response, Status};

use super::SharedCtx;
use super::convert;
use super::convert::retry_attempts;
use crate::control::error::ControlError;
use crate::control::flow::actions;
use crate::proto::control as pb;
use crate::tls::authz::permit_of;
use crate::wire::CONTROL_DOMAIN;

/// The Actor service.
#[derive(Debug, Clone)]
pub struct ActorService {
    /// Shared context.
    pub ctx: SharedCtx,
}

#[tonic::async_trait]
impl pb::actor_server::Actor for ActorService {
    async fn request_action(
        &self,
        req: Request<pb::RequestActionRequest>,
    ) -> Result<Response<pb::RequestActionResponse>, Status> {
        let caller = convert::caller(&permit_of(&req, CONTROL_DOMAIN)?);
        let nodes: Vec<&str> = self.ctx.adapter.nodes().iter().map(|n| n.id.as_str()).collect();
        let parsed = convert::action_request(req.get_ref(), &nodes);
        let received = convert::request_received(req.get_ref());
        let answer = actions::request(&self.ctx, &caller, received, retry_attempts(&req), parsed)
            .await
            .map(convert::request_answer);
        with_checkpoint(&self.ctx, answer, |r, note| r.audit_checkpoint = note)
    }

    async fn confirm_action(
        &self,
        req: Request<pb::ConfirmActionRequest>,
    ) -> Result<Response<pb::ConfirmActionResponse>, Status> {
        let caller = convert::caller(&permit_of(&req, CONTROL_DOMAIN)?);
        let retry = retry_attempts(&req);
        let input = convert::confirm_input(req.get_ref());
        let received = convert::confirm_received(req.get_ref());
        // Run to the end even if the client goes away: the audit trail must not stop between
        // `confirmed` and the outcome because a connection dropped.
        let ctx = self.ctx.clone();
        let id: String = received.confirmation_id.chars().take(8).collect();
        let answer = tokio::spawn(async move { actions::confirm(&ctx, &caller, received, retry, input).await })
            .await
            .map(|answer| answer.map(convert::confirm_answer))
            .unwrap_or_else(|e| {
                // A bug (the task died): it may have died after dispatch, so nothing is assumed.
                Err(ControlError::OutcomeUnknown {
                    node: "unknown".into(),
                    key: format!("(the key of confirmation {id}…, in its audit records)"),
                    error: format!("the confirmation task failed: {e}"),
                })
            });
        with_checkpoint(&self.ctx, answer, |r, note| r.audit_checkpoint = note)
    }

    async fn decline_action(
        &self,
        req: Request<pb::DeclineActionRequest>,
    ) -> Result<Response<pb::DeclineActionResponse>, Status> {
        let caller = convert::caller(&permit_of(&req, CONTROL_DOMAIN)?);
        let received = convert::decline_received(req.get_ref());
        let answer =
            actions::decline(&self.ctx, &caller, received, retry_attempts(&req)).await.map(convert::decline_answer);
        with_checkpoint(&self.ctx, answer, |r, note| r.audit_checkpoint = note)
    }
}

/// The metadata key of the checkpoint on an error answer.
pub const CHECKPOINT_METADATA: &str = "aerodb-audit-checkpoint-bin";

/// The answer with the latest signed checkpoint attached. The flow step returned only after the
/// record it reports was durable, and the audit writer signs a checkpoint covering such a record
/// before it replies (audit::log invariants), so the latest checkpoint covers it.
fn with_checkpoint<T>(
    ctx: &SharedCtx,
    answer: Result<T, ControlError>,
    set: impl FnOnce(&mut T, String),
) -> Result<Response<T>, Status> {
    let note = ctx.audit.latest_checkpoint().map(|c| c.note);
    match answer {
        Ok(mut r) => {
            if let Some(note) = note {
                set(&mut r, note);
            }
            Ok(Response::new(r))
        }
        Err(e) => {
            let mut status = Status::from(e);
            if let Some(note) = note {
                status
                    .metadata_mut()
                    .insert_bin(CHECKPOINT_METADATA, tonic::metadata::MetadataValue::from_bytes(note.as_bytes()));
            }
            Err(status)
        }
    }
}
