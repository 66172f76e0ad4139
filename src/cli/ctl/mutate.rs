//! Mutations: print the idempotency key first, then the explanation, then ask the operator to
//! type the target (and, for a forced promotion, each overridden invariant id and the acceptance
//! sentence). Anything else typed, or end of input, declines. There is no `--yes`.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use serde_json::json;
use tonic::transport::Channel;

use super::{Exit, json::to_json, print_json, render, report_error};
use crate::contract::intent::Intent;
use crate::failpoint;
use crate::pki::sign::{Approval, IntentSigner, describe};
use crate::proto::control as pb;
use crate::proto::kernel as kpb;
use crate::tls::material::TlsPaths;

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
    /// The pending action's intent (hex, `intent_hex` of `--request-only`'s output): this
    /// profile's actor key signs it.
    #[arg(long)]
    pub intent: String,
    /// An approval file from `aerodbctl approve` (repeat for each approver).
    #[arg(long = "approval")]
    pub approvals: Vec<PathBuf>,
}

/// Arguments of approve.
#[derive(Debug, Clone, clap::Args)]
pub struct ApproveArgs {
    /// The pending action to approve: `--request-only`'s JSON output (its `intent_hex`), or a
    /// file holding the intent's hex alone.
    pub pending: PathBuf,
    /// The target node id, typed (without it, asked for on the terminal).
    #[arg(long)]
    pub typed_target: Option<String>,
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

/// The intent of a pending action, decoded, after checking it names exactly what the operator
/// asked for and was shown: the command asked, the target explained, the digest of the
/// explanation shown (recomputed here), the key, and the operator's own certificate as
/// requester. A control plane that returns another intent than it explains gets nothing signed.
pub(crate) fn checked_intent(
    p: &pb::PendingAction,
    command: pb::Command,
    own_fingerprint: &str,
) -> Result<Intent, String> {
    let intent = Intent::decode(&p.intent).map_err(|e| format!("the pending action's intent does not decode: {e}"))?;
    let target = p.requirements.as_ref().map(|r| r.typed_target.as_str()).unwrap_or_default();
    let shown = p.explanation.as_ref().map(crate::control::digest::digest_of).unwrap_or_default();
    let differs = if crate::control::digest::contract_command(command) != Some(intent.command) {
        Some("command")
    } else if intent.target_node != target {
        Some("target")
    } else if shown != p.plan_digest || hex::encode(intent.plan_digest) != p.plan_digest {
        Some("plan digest (of the explanation shown)")
    } else if intent.idempotency_key != p.idempotency_key {
        Some("idempotency key")
    } else if intent.requester.cert_sha256 != own_fingerprint {
        Some("requester (not this profile's certificate)")
    } else {
        None
    };
    match differs {
        Some(what) => Err(format!(
            "the intent to sign does not name the action asked for and explained: its {what} differs; nothing was signed"
        )),
        None => Ok(intent),
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
        signatures: Vec::new(),
    })
}

/// The command that completes a pending action in two-step mode. For an enhanced confirmation it
/// stops short of the acknowledgements and the acceptance of responsibility: P7-A2 wants each one
/// typed by the operator who read the explanation, not pasted from a prepared line; what to add
/// is in [`confirm_must_add`].
fn confirm_command(p: &pb::PendingAction) -> String {
    let req = p.requirements.clone().unwrap_or_default();
    let enhanced = req.r#type == pb::ConfirmationType::Enhanced as i32;
    let mut cmd = format!(
        "aerodbctl confirm {} --plan-digest {} --key {} --intent {}",
        p.confirmation_id,
        p.plan_digest,
        p.idempotency_key,
        hex::encode(&p.intent)
    );
    if p.signatures_required > 1 {
        cmd.push_str(" --approval FILE");
    }
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

/// The request-only document: the pending action, its intent in hex, and how to complete it.
fn pending_document(key: &str, pending: &pb::PendingAction) -> serde_json::Value {
    let mut doc = json!({
        "idempotency_key": key,
        "pending_action": to_json(pending, "aerodb.control.v1.PendingAction"),
        "intent_hex": hex::encode(&pending.intent),
        "signatures_required": pending.signatures_required,
    });
    doc["confirm_command"] = json!(confirm_command(pending));
    let must_add = confirm_must_add(pending);
    if !must_add.is_empty() {
        doc["confirm_must_add"] = json!(must_add);
    }
    if pending.signatures_required > 1 {
        doc["approvals_needed"] = json!(format!(
            "{} other actor(s) must each run `aerodbctl approve FILE` on this document and hand you the approval \
             file, passed to confirm as --approval FILE",
            pending.signatures_required - 1
        ));
    }
    doc
}

/// promote / demote / force-promote / diag.
pub async fn run(ch: Channel, paths: &TlsPaths, json_out: bool, command: pb::Command, args: &MutationArgs) -> Exit {
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
        print_json(&pending_document(&key, &pending));
        return Exit::Success;
    }
    if pending.signatures_required > 1 {
        // Approvals are signatures over this intent by other actors: they cannot be gathered
        // inside one prompt. Hand over the pending action as --request-only would.
        eprintln!(
            "{} needs signatures of {} distinct actors (the kernel's approval policy); the pending action follows \
             as JSON: have the approvers run `aerodbctl approve FILE` on it, then run its confirm_command",
            crate::control::digest::command_name(command),
            pending.signatures_required
        );
        print_json(&pending_document(&key, &pending));
        return Exit::Success;
    }
    let own = match IntentSigner::load(&paths.cert, &paths.key) {
        Ok(k) => k.fingerprint(),
        Err(e) => {
            let _ = actor
                .decline_action(pb::DeclineActionRequest { confirmation_id: pending.confirmation_id.clone() })
                .await;
            eprintln!("error: cannot sign with this profile: {e}");
            return Exit::Usage;
        }
    };
    let intent = match checked_intent(&pending, command, &own) {
        Ok(i) => i,
        Err(why) => {
            let _ = actor
                .decline_action(pb::DeclineActionRequest { confirmation_id: pending.confirmation_id.clone() })
                .await;
            eprintln!("error: {why}");
            return Exit::Rejected;
        }
    };
    if json_out {
        // Keep stdout for the one JSON document; the explanation goes to the terminal.
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&to_json(&pending, "aerodb.control.v1.PendingAction")).unwrap_or_default()
        );
    } else {
        render::explanation(&pending);
    }
    eprintln!("Confirming signs this intent with your actor key ({}):\n{}", paths.key.display(), describe(&intent));
    // The prompt blocks on the terminal, so it runs on a blocking thread; Ctrl-C meanwhile
    // declines the pending action (audited) before the process ends with 130.
    let asked = pending.clone();
    let answer = tokio::select! {
        a = tokio::task::spawn_blocking(move || prompt(&asked)) => {
            a.map_err(|e| format!("the prompt failed: {e}")).and_then(|r| r).map_err(|r| (r, Exit::NotExecuted))
        }
        _ = tokio::signal::ctrl_c() => Err(("interrupted".to_string(), Exit::Interrupted)),
    };
    let signed = answer.and_then(|mut c| {
        match IntentSigner::load(&paths.cert, &paths.key).and_then(|k| k.sign(&pending.intent)) {
            Ok(sig) => {
                c.signatures = vec![sig];
                Ok(c)
            }
            Err(e) => Err((format!("cannot sign the intent: {e}"), Exit::NotExecuted)),
        }
    });
    let confirm = match signed {
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

/// The signatures `confirm` sends: this profile's over the intent, then each approval (checked
/// to approve this very intent).
fn confirm_signatures(paths: &TlsPaths, args: &ConfirmArgs) -> Result<Vec<kpb::IntentSignature>, String> {
    let intent = hex::decode(args.intent.trim()).map_err(|_| "--intent: must be hex".to_string())?;
    let decoded = Intent::decode(&intent).map_err(|e| format!("--intent: {e}"))?;
    if hex::encode(decoded.plan_digest) != args.plan_digest || decoded.target_node != args.typed_target {
        return Err(format!(
            "--intent names target {} and plan digest {}…, not the --typed-target and --plan-digest given: nothing \
             was signed",
            decoded.target_node,
            &hex::encode(decoded.plan_digest)[..16]
        ));
    }
    let own = IntentSigner::load(&paths.cert, &paths.key).and_then(|k| k.sign(&intent)).map_err(|e| e.to_string())?;
    let mut sigs = vec![own];
    for path in &args.approvals {
        sigs.push(Approval::read_for(path, &intent).map_err(|e| e.to_string())?);
    }
    Ok(sigs)
}

/// `confirm ID --plan-digest D --typed-target T --intent HEX [--ack …] [--accept-responsibility]
/// [--approval FILE …]`.
pub async fn confirm(ch: Channel, paths: &TlsPaths, json_out: bool, args: &ConfirmArgs) -> Exit {
    let signatures = match confirm_signatures(paths, args) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("error: {why}");
            return Exit::Usage;
        }
    };
    let mut actor = pb::actor_client::ActorClient::new(ch);
    let req = pb::ConfirmActionRequest {
        confirmation_id: args.confirmation_id.clone(),
        plan_digest: args.plan_digest.clone(),
        typed_target: args.typed_target.clone(),
        acknowledged_invariants: args.acks.clone(),
        accept_responsibility: args.accept_responsibility,
        signatures,
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

/// The intent hex of an approve input: `--request-only`'s JSON (`intent_hex`) or bare hex.
fn intent_of_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let hex_text = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(doc) => doc
            .get("intent_hex")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("{}: a JSON document without intent_hex", path.display()))?,
        Err(_) => text.trim().to_string(),
    };
    hex::decode(hex_text.trim()).map_err(|_| format!("{}: the intent is not hex", path.display()))
}

/// `approve FILE [--typed-target T]`: shows the intent, asks for the target to be typed, signs,
/// prints the approval.
pub fn approve(paths: &TlsPaths, trust_domain: &str, args: &ApproveArgs) -> Exit {
    let intent_bytes = match intent_of_file(&args.pending) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let intent = match Intent::decode(&intent_bytes) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {}: the intent does not decode: {e}", args.pending.display());
            return Exit::Usage;
        }
    };
    eprintln!("Approving signs this intent with your actor key ({}):\n{}", paths.key.display(), describe(&intent));
    let typed = match &args.typed_target {
        Some(t) => Some(t.clone()),
        None => ask(&format!("Type the target node id ({}) to approve; anything else declines: ", intent.target_node)),
    };
    if typed.as_deref() != Some(intent.target_node.as_str()) {
        eprintln!("not approved: the target typed is not {}; nothing was signed", intent.target_node);
        return Exit::NotExecuted;
    }
    let signer = match IntentSigner::load(&paths.cert, &paths.key) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let who = crate::tls::material::load_certs(&paths.cert)
        .ok()
        .and_then(|c| c.first().map(|c| c.as_ref().to_vec()))
        .and_then(|der| crate::tls::identity::identity_from_der(&der, trust_domain).ok())
        .map(|i| i.principal())
        .unwrap_or_else(|| signer.fingerprint());
    match signer.sign(&intent_bytes) {
        Ok(sig) => {
            let approval = Approval::new(&intent_bytes, who, &sig);
            println!("{}", serde_json::to_string_pretty(&approval).unwrap_or_default());
            Exit::Success
        }
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Internal
        }
    }
}
