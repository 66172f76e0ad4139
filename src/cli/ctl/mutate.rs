//! Mutations: print the idempotency key first, then the explanation, then ask the operator to
//! type the target (and, for a forced promotion, each overridden invariant id and the acceptance
//! sentence). Anything else typed, or end of input, declines. There is no `--yes`.

use std::io::{BufRead, Write};

use serde_json::json;
use tonic::transport::Channel;

use super::{Exit, json::to_json, print_json, render, report_error};
use crate::failpoint;
use crate::proto::control as pb;
use crate::proto::kernel as kpb;

/// The sentence an operator types to accept responsibility for a forced promotion.
pub const ACCEPTANCE: &str = "I accept responsibility";

/// Arguments of promote, demote, force-promote, diag.
#[derive(Debug, Clone, clap::Args)]
pub struct MutationArgs {
    /// The target node id.
    pub target: String,
    /// The idempotency key (default: a new random one, printed first).
    #[arg(long)]
    pub key: Option<String>,
    /// Script mode: print the pending action as JSON and stop (complete it with `confirm`).
    #[arg(long)]
    pub request_only: bool,
}

/// Arguments of confirm.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfirmArgs {
    /// The confirmation id from `--request-only`.
    pub confirmation_id: String,
    /// The plan digest from `--request-only` (proves which explanation is being confirmed).
    #[arg(long)]
    pub plan_digest: String,
    /// The target node id, typed.
    #[arg(long)]
    pub typed_target: String,
    /// An acknowledged invariant id (enhanced confirmation; repeat for each).
    #[arg(long = "ack")]
    pub acks: Vec<String>,
    /// Accept responsibility (enhanced confirmation).
    #[arg(long)]
    pub accept_responsibility: bool,
    /// The idempotency key, only to print the right `outcome` command if the answer is lost.
    #[arg(long)]
    pub key: Option<String>,
}

fn say(json_out: bool, text: &str) {
    if json_out {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
}

/// Reads one line; `None` at end of input.
fn ask(prompt: &str) -> Option<String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    // Piped input is not echoed: end the prompt's line so a transcript stays readable.
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!();
    }
    match read {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_string()),
    }
}

/// Walks the operator through the confirmation; `Err(reason)` declines.
fn prompt(p: &pb::PendingAction) -> Result<pb::ConfirmActionRequest, String> {
    let req = p.requirements.clone().unwrap_or_default();
    let typed = ask(&format!("Type the target node id ({}) to confirm; anything else declines: ", req.typed_target))
        .ok_or("end of input")?;
    if typed != req.typed_target {
        return Err(format!("typed {typed:?}, not {:?}", req.typed_target));
    }
    let mut acks = Vec::new();
    if req.r#type == pb::ConfirmationType::Enhanced as i32 {
        eprintln!("This is an override. Acknowledge each overridden invariant by typing its id:");
        for id in &req.required_acknowledgements {
            let stmt = crate::control::explain::statement(id);
            let got = ask(&format!("  {id}: {stmt}\n  > ")).ok_or("end of input")?;
            if &got != id {
                return Err(format!("typed {got:?}, not {id:?}"));
            }
            acks.push(id.clone());
        }
        eprintln!("{}", req.responsibility_statement);
        let got = ask(&format!("Type \"{ACCEPTANCE}\" to accept it: ")).ok_or("end of input")?;
        if got != ACCEPTANCE {
            return Err("responsibility not accepted".into());
        }
    }
    Ok(pb::ConfirmActionRequest {
        confirmation_id: p.confirmation_id.clone(),
        plan_digest: p.plan_digest.clone(),
        typed_target: typed,
        acknowledged_invariants: acks,
        accept_responsibility: req.r#type == pb::ConfirmationType::Enhanced as i32,
    })
}

/// The command that completes a pending action in two-step mode. For an enhanced confirmation it
/// stops short of the acknowledgements and the acceptance of responsibility: P7-A2 wants each one
/// typed by the operator who read the explanation, not pasted from a prepared line; what to add
/// is in [`confirm_must_add`].
fn confirm_command(p: &pb::PendingAction) -> String {
    let req = p.requirements.clone().unwrap_or_default();
    let enhanced = req.r#type == pb::ConfirmationType::Enhanced as i32;
    let mut cmd =
        format!("aerodbctl confirm {} --plan-digest {} --key {}", p.confirmation_id, p.plan_digest, p.idempotency_key);
    if !enhanced {
        cmd.push_str(&format!(" --typed-target {}", req.typed_target));
    }
    cmd
}

/// What the operator must type onto [`confirm_command`] for an enhanced confirmation (empty for a
/// standard one).
fn confirm_must_add(p: &pb::PendingAction) -> String {
    let req = p.requirements.clone().unwrap_or_default();
    if req.r#type != pb::ConfirmationType::Enhanced as i32 {
        return String::new();
    }
    let mut parts = vec!["--typed-target followed by the target node id".to_string()];
    parts.extend(req.required_acknowledgements.iter().map(|id| format!("--ack {id}")));
    if req.responsibility_required {
        parts.push("--accept-responsibility".into());
    }
    format!("type yourself, after reading the explanation: {}", parts.join(", "))
}

fn finish(resp: &pb::ConfirmActionResponse, json_out: bool, key: &str) -> Exit {
    if json_out {
        print_json(&json!({
            "idempotency_key": key,
            "response": to_json(resp, "aerodb.control.v1.ConfirmActionResponse"),
        }));
    } else {
        let tag = if resp.outcome == pb::ActionOutcome::Replayed as i32 {
            "REPLAYED (already executed; nothing ran again): "
        } else {
            ""
        };
        println!("{tag}{}", resp.record.as_ref().map(render::decided).unwrap_or_default());
    }
    Exit::Success
}

/// promote / demote / force-promote / diag.
pub async fn run(ch: Channel, json_out: bool, command: pb::Command, args: &MutationArgs) -> Exit {
    let key = args.key.clone().unwrap_or_else(|| format!("ctl-{}", &crate::control::flow::random_id()[..16]));
    say(
        json_out || args.request_only,
        &format!("idempotency key: {key}  (if this session is lost: aerodbctl outcome {key})"),
    );
    let mut actor = pb::actor_client::ActorClient::new(ch);
    failpoint::hit("ctl.before_submit");
    let resp = match actor
        .request_action(pb::RequestActionRequest {
            command: command as i32,
            target_node: args.target.clone(),
            idempotency_key: key.clone(),
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => {
            super::probe::diagnose(&s).await;
            return report_error(&s, json_out, false, Some(&key));
        }
    };
    failpoint::hit("ctl.after_request");
    let pending = match resp.response {
        Some(pb::request_action_response::Response::Replayed(r)) => {
            let executed = r.record.as_ref().is_some_and(|x| x.decision == kpb::Decision::Executed as i32);
            if json_out {
                print_json(&json!({
                    "idempotency_key": key,
                    "replayed": to_json(&r, "aerodb.control.v1.ReplayedOutcome"),
                }));
            } else {
                println!(
                    "already decided in {}'s kernel ledger; nothing was run again: {}",
                    r.node_id,
                    r.record.as_ref().map(render::decided).unwrap_or_default()
                );
            }
            return if executed { Exit::Success } else { Exit::Rejected };
        }
        Some(pb::request_action_response::Response::Pending(p)) => p,
        None => return Exit::Internal,
    };
    if args.request_only {
        let mut doc = json!({
            "idempotency_key": key,
            "pending_action": to_json(&pending, "aerodb.control.v1.PendingAction"),
        });
        doc["confirm_command"] = json!(confirm_command(&pending));
        let must_add = confirm_must_add(&pending);
        if !must_add.is_empty() {
            doc["confirm_must_add"] = json!(must_add);
        }
        print_json(&doc);
        return Exit::Success;
    }
    if json_out {
        // Keep stdout for the one JSON document; the explanation goes to the terminal.
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&to_json(&pending, "aerodb.control.v1.PendingAction")).unwrap_or_default()
        );
    } else {
        render::explanation(&pending);
    }
    // The prompt blocks on the terminal, so it runs on a blocking thread; Ctrl-C meanwhile
    // declines the pending action (audited) before the process ends with 130.
    let asked = pending.clone();
    let answer = tokio::select! {
        a = tokio::task::spawn_blocking(move || prompt(&asked)) => {
            a.map_err(|e| format!("the prompt failed: {e}")).and_then(|r| r).map_err(|r| (r, Exit::NotExecuted))
        }
        _ = tokio::signal::ctrl_c() => Err(("interrupted".to_string(), Exit::Interrupted)),
    };
    let confirm = match answer {
        Ok(c) => c,
        Err((reason, exit)) => {
            if exit == Exit::Interrupted {
                eprintln!();
            }
            let _ = actor
                .decline_action(pb::DeclineActionRequest { confirmation_id: pending.confirmation_id.clone() })
                .await;
            if json_out {
                print_json(&json!({"idempotency_key": key, "declined": reason, "outcome": "NOT_EXECUTED"}));
            } else {
                println!("declined ({reason}): nothing was executed");
            }
            return exit;
        }
    };
    let result = actor.confirm_action(confirm).await;
    failpoint::hit("ctl.after_confirm");
    match result {
        Ok(r) => finish(&r.into_inner(), json_out, &key),
        Err(s) => report_error(&s, json_out, true, Some(&key)),
    }
}

/// `confirm ID --plan-digest D --typed-target T [--ack …] [--accept-responsibility]`.
pub async fn confirm(ch: Channel, json_out: bool, args: &ConfirmArgs) -> Exit {
    let mut actor = pb::actor_client::ActorClient::new(ch);
    let req = pb::ConfirmActionRequest {
        confirmation_id: args.confirmation_id.clone(),
        plan_digest: args.plan_digest.clone(),
        typed_target: args.typed_target.clone(),
        acknowledged_invariants: args.acks.clone(),
        accept_responsibility: args.accept_responsibility,
    };
    let result = actor.confirm_action(req).await;
    failpoint::hit("ctl.after_confirm");
    let key = args.key.clone().unwrap_or_default();
    match result {
        Ok(r) => finish(&r.into_inner(), json_out, &key),
        Err(s) => report_error(&s, json_out, true, args.key.as_deref()),
    }
}

/// `decline ID`.
pub async fn decline(ch: Channel, json_out: bool, id: &str) -> Exit {
    let mut actor = pb::actor_client::ActorClient::new(ch);
    match actor.decline_action(pb::DeclineActionRequest { confirmation_id: id.to_string() }).await {
        Ok(r) => {
            let r = r.into_inner();
            if json_out {
                print_json(&to_json(&r, "aerodb.control.v1.DeclineActionResponse"));
            } else {
                println!("declined: nothing was executed (correlation {})", r.correlation_id);
            }
            Exit::Success
        }
        Err(s) => report_error(&s, json_out, false, None),
    }
}
