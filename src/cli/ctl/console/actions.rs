//! The console's action endpoints (present only with `--allow-actions` and an actor profile).
//!
//! One action is four POSTs, each carrying what the one before handed out:
//! 1. `prepare` mints an idempotency key and a one-time token; the page shows the key before
//!    anything else, so an operator whose page dies can still run `aerodbctl outcome KEY`.
//! 2. `request {token, command, target}` spends the token and sends RequestAction. A pending
//!    action is kept here under a fresh console-local random id; the page gets that id, the
//!    explanation and a confirm token, never the control plane's confirmation id.
//! 3. `confirm {id, token, typed_target, acknowledged_invariants, acceptance}` spends the token
//!    and the pending action, and sends ConfirmAction with what the operator typed, verbatim:
//!    the control plane checks it (a mistyped target is its rejection, audited, and nothing
//!    runs). The console judges nothing.
//! 4. `decline {id}` (also sent by the page on `pagehide`) sends DeclineAction.
//!
//! Tokens are single use, so a reload or a replayed POST never resubmits; when the console
//! stops it declines every pending action it still holds.
//!
//! # Invariants
//! - A token is spent before the call it authorises is sent, whatever the call's result.
//! - A pending action is removed before ConfirmAction or DeclineAction is sent: at most one of
//!   them is ever sent for it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::api::ApiError;
use super::http::Console;
use crate::cli::ctl::json::to_json;
use crate::cli::ctl::mutate::ACCEPTANCE;
use crate::control::flow::random_id;
use crate::proto::control as pb;

/// Most unspent tokens kept; minting one more forgets the oldest (its page must start again).
pub const TOKENS_MAX: usize = 64;
/// Most pending actions held at once; a request beyond it is refused (429), nothing sent.
pub const PENDING_MAX: usize = 16;

/// What a token authorises.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Grant {
    /// One RequestAction with this idempotency key.
    Request { idempotency_key: String },
    /// One ConfirmAction of this pending action.
    Confirm { id: String },
}

/// A pending action as the console holds it.
#[derive(Debug, Clone)]
struct Pending {
    confirmation_id: String,
    plan_digest: String,
    idempotency_key: String,
    /// The intent the operator's key signs when they confirm.
    intent: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    tokens: HashMap<String, Grant>,
    order: VecDeque<String>,
    pending: HashMap<String, Pending>,
}

/// Tokens and pending actions. One std mutex, never held across an await: every operation is
/// a map insert or removal, and the gRPC call happens after the lock is released.
#[derive(Debug, Default)]
pub struct Actions {
    state: Mutex<State>,
}

fn refuse(status: http::StatusCode, code: &str, message: &str) -> ApiError {
    ApiError::console(status, code, message)
}

fn bad_body(e: serde_json::Error) -> ApiError {
    refuse(http::StatusCode::BAD_REQUEST, "CONSOLE_BAD_REQUEST", &format!("request body: {e}"))
}

fn stale_token() -> ApiError {
    refuse(
        http::StatusCode::CONFLICT,
        "CONSOLE_TOKEN_SPENT",
        "this form's one-time token is unknown or already used: nothing was sent (start the action again)",
    )
}

fn no_pending() -> ApiError {
    refuse(
        http::StatusCode::NOT_FOUND,
        "CONSOLE_NO_PENDING_ACTION",
        "no pending action with this id (already confirmed, declined, or the console restarted): nothing was sent",
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    token: String,
    command: String,
    target: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmBody {
    id: String,
    token: String,
    typed_target: String,
    #[serde(default)]
    acknowledged_invariants: Vec<String>,
    #[serde(default)]
    acceptance: String,
}

#[derive(Debug, Deserialize)]
struct DeclineBody {
    id: String,
}

/// The command a page names, as aerodbctl's subcommand names it.
fn command(name: &str) -> Option<pb::Command> {
    Some(match name {
        "diag" => pb::Command::RunDiagnostics,
        "promote" => pb::Command::RequestPromotion,
        "demote" => pb::Command::RequestDemotion,
        "force-promote" => pb::Command::ForcePromotion,
        _ => return None,
    })
}

impl Actions {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves only maps of ids behind; reading them on is safe.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn mint(&self, grant: Grant) -> String {
        let token = random_id();
        let mut st = self.lock();
        while st.order.len() >= TOKENS_MAX {
            if let Some(old) = st.order.pop_front() {
                st.tokens.remove(&old);
            }
        }
        st.tokens.insert(token.clone(), grant);
        st.order.push_back(token.clone());
        token
    }

    fn spend(&self, token: &str) -> Option<Grant> {
        let mut st = self.lock();
        let grant = st.tokens.remove(token)?;
        st.order.retain(|t| t != token);
        Some(grant)
    }

    /// `POST /api/actions/prepare`: a fresh idempotency key and the token for one request.
    pub fn prepare(&self) -> Value {
        let idempotency_key = format!("web-{}", &random_id()[..16]);
        let token = self.mint(Grant::Request { idempotency_key: idempotency_key.clone() });
        json!({
            "idempotency_key": idempotency_key,
            "token": token,
            "lookup": format!("aerodbctl outcome {idempotency_key}"),
        })
    }

    /// `POST /api/actions/request`.
    pub async fn request(&self, console: &Console, body: &[u8]) -> Result<Value, ApiError> {
        let b: RequestBody = serde_json::from_slice(body).map_err(bad_body)?;
        let Some(cmd) = command(&b.command) else {
            return Err(refuse(
                http::StatusCode::BAD_REQUEST,
                "CONSOLE_BAD_REQUEST",
                "command must be one of diag, promote, demote, force-promote",
            ));
        };
        let Some(Grant::Request { idempotency_key: key }) = self.spend(&b.token) else {
            return Err(stale_token());
        };
        if self.lock().pending.len() >= PENDING_MAX {
            return Err(refuse(
                http::StatusCode::TOO_MANY_REQUESTS,
                "CONSOLE_TOO_MANY_PENDING",
                "too many pending actions in this console: confirm or decline one first; nothing was sent",
            ));
        }
        // Like aerodbctl: the key is on the operator's terminal before the request leaves.
        println!("idempotency key: {key}  ({} {}; if the page is lost: aerodbctl outcome {key})", b.command, b.target);
        tracing::info!(action.key = %key, action.command = %b.command, action.target = %b.target, "console: RequestAction");
        let mut actor = pb::actor_client::ActorClient::new(console.channel.clone());
        let resp = actor
            .request_action(pb::RequestActionRequest {
                command: cmd as i32,
                target_node: b.target.clone(),
                idempotency_key: key.clone(),
            })
            .await
            .map_err(|s| ApiError::grpc(&s, false))?
            .into_inner();
        match resp.response {
            Some(pb::request_action_response::Response::Replayed(r)) => Ok(json!({
                "idempotency_key": key,
                "replayed": to_json(&r, "aerodb.control.v1.ReplayedOutcome"),
            })),
            Some(pb::request_action_response::Response::Pending(p)) => {
                // What the operator will sign must name what they asked for and are shown.
                let own = console.signer.as_ref().map(|s| s.fingerprint()).unwrap_or_default();
                if let Err(why) = super::super::mutate::checked_intent(&p, cmd, &own) {
                    let _ = actor
                        .decline_action(pb::DeclineActionRequest { confirmation_id: p.confirmation_id.clone() })
                        .await;
                    return Err(refuse(http::StatusCode::BAD_GATEWAY, "CONSOLE_INTENT_MISMATCH", &why));
                }
                let id = random_id();
                let mut pending = to_json(&p, "aerodb.control.v1.PendingAction");
                if let Some(obj) = pending.as_object_mut() {
                    // The control plane's confirmation id stays in this process.
                    obj.remove("confirmation_id");
                }
                let statements: Vec<Value> = p
                    .requirements
                    .as_ref()
                    .map(|r| r.required_acknowledgements.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .map(|i| json!({"id": i, "statement": crate::control::explain::statement(i)}))
                    .collect();
                self.lock().pending.insert(
                    id.clone(),
                    Pending {
                        confirmation_id: p.confirmation_id.clone(),
                        plan_digest: p.plan_digest.clone(),
                        idempotency_key: key.clone(),
                        intent: p.intent.clone(),
                    },
                );
                let token = self.mint(Grant::Confirm { id: id.clone() });
                Ok(json!({
                    "id": id,
                    "token": token,
                    "idempotency_key": key,
                    "pending": pending,
                    "acknowledgement_statements": statements,
                    "acceptance": ACCEPTANCE,
                }))
            }
            None => {
                Err(refuse(http::StatusCode::BAD_GATEWAY, "CONSOLE_EMPTY_ANSWER", "the control plane answered nothing"))
            }
        }
    }

    /// `POST /api/actions/confirm`.
    pub async fn confirm(&self, console: &Console, body: &[u8]) -> Result<Value, ApiError> {
        let b: ConfirmBody = serde_json::from_slice(body).map_err(bad_body)?;
        match self.spend(&b.token) {
            Some(Grant::Confirm { id }) if id == b.id => {}
            _ => return Err(stale_token()),
        }
        let Some(p) = self.lock().pending.remove(&b.id) else {
            return Err(no_pending());
        };
        tracing::info!(action.key = %p.idempotency_key, "console: ConfirmAction");
        let mut actor = pb::actor_client::ActorClient::new(console.channel.clone());
        // The operator's own key (the console is their process, holding their profile) signs the
        // intent of the action they confirm; the kernel verifies it.
        let signature = match console.signer.as_ref().map(|k| k.sign(&p.intent)) {
            Some(Ok(sig)) => sig,
            Some(Err(e)) => {
                return Err(refuse(http::StatusCode::INTERNAL_SERVER_ERROR, "CONSOLE_SIGNING_FAILED", &e.to_string()));
            }
            None => {
                return Err(refuse(http::StatusCode::FORBIDDEN, "CONSOLE_READ_ONLY", "this console cannot sign"));
            }
        };
        let req = pb::ConfirmActionRequest {
            confirmation_id: p.confirmation_id,
            plan_digest: p.plan_digest,
            typed_target: b.typed_target,
            acknowledged_invariants: b.acknowledged_invariants,
            accept_responsibility: b.acceptance == ACCEPTANCE,
            signatures: vec![signature],
        };
        match actor.confirm_action(req).await {
            Ok(r) => Ok(json!({
                "idempotency_key": p.idempotency_key,
                "response": to_json(&r.into_inner(), "aerodb.control.v1.ConfirmActionResponse"),
            })),
            Err(s) => {
                let mut e = ApiError::grpc(&s, true);
                e.body["idempotency_key"] = json!(p.idempotency_key);
                Err(e)
            }
        }
    }

    /// `POST /api/actions/decline` (also the page's `pagehide` beacon).
    pub async fn decline(&self, console: &Console, body: &[u8]) -> Result<Value, ApiError> {
        let b: DeclineBody = serde_json::from_slice(body).map_err(bad_body)?;
        let p = {
            let mut st = self.lock();
            let p = st.pending.remove(&b.id);
            st.tokens.retain(|_, g| *g != Grant::Confirm { id: b.id.clone() });
            p
        };
        let Some(p) = p else {
            return Err(no_pending());
        };
        let mut actor = pb::actor_client::ActorClient::new(console.channel.clone());
        match actor.decline_action(pb::DeclineActionRequest { confirmation_id: p.confirmation_id }).await {
            Ok(r) => {
                let r = r.into_inner();
                Ok(json!({
                    "idempotency_key": p.idempotency_key,
                    "correlation_id": r.correlation_id,
                    "outcome": r.outcome,
                }))
            }
            Err(s) => Err(ApiError::grpc(&s, false)),
        }
    }

    /// Declines every pending action still held (the console is stopping); how many.
    pub async fn decline_all(&self, channel: &Channel) -> usize {
        let pending: Vec<Pending> = {
            let mut st = self.lock();
            st.tokens.clear();
            st.order.clear();
            st.pending.drain().map(|(_, p)| p).collect()
        };
        let mut actor = pb::actor_client::ActorClient::new(channel.clone());
        let mut n = 0;
        for p in pending {
            match actor.decline_action(pb::DeclineActionRequest { confirmation_id: p.confirmation_id }).await {
                Ok(_) => n += 1,
                // Not declined is still not executed: it expires unconfirmed on the control plane.
                Err(s) => {
                    tracing::warn!(action.key = %p.idempotency_key, error = %s, "console stopping: decline failed")
                }
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_tokens_are_single_use_and_bounded() {
        let a = Actions::default();
        let t = a.mint(Grant::Confirm { id: "x".into() });
        assert_eq!(a.spend(&t), Some(Grant::Confirm { id: "x".into() }));
        assert_eq!(a.spend(&t), None);
        let first = a.mint(Grant::Confirm { id: "first".into() });
        for _ in 0..TOKENS_MAX {
            a.mint(Grant::Confirm { id: "y".into() });
        }
        assert_eq!(a.spend(&first), None, "the oldest token is forgotten past the bound");
        assert_eq!(a.lock().tokens.len(), TOKENS_MAX);
    }

    #[test]
    fn console_commands_are_the_closed_set_of_aerodbctl_subcommands() {
        assert_eq!(command("promote"), Some(pb::Command::RequestPromotion));
        assert_eq!(command("demote"), Some(pb::Command::RequestDemotion));
        assert_eq!(command("force-promote"), Some(pb::Command::ForcePromotion));
        assert_eq!(command("diag"), Some(pb::Command::RunDiagnostics));
        assert_eq!(command("COMMAND_REQUEST_PROMOTION"), None);
    }
}
