//! A tampering control plane, for tests only (compiled with the cargo feature `failpoints`).
//!
//! `AERODB_TAMPER=MODE` makes this process change the Execute request of every confirmed action
//! after the operator signed it and after the `confirmed` record is durable, as a compromised
//! control plane would; the kernel must reject each with its own code and execute nothing
//! (tests/signed_intent.rs). Modes: `target` (dispatch to the next configured node, naming it),
//! `epoch`, `sequence`, `force`, `acknowledgements`, `requester`, `key`, `drop_signature`,
//! `replay_signature` (the first action passes; later ones carry its signatures),
//! `sign:CERT:KEY` (replace the signatures with this key's: the control plane signing with its
//! own key) and `approve:CERT:KEY` (add an approval made with this key: a forged approval).
//! `pending_command` changes the intent a pending action returns (a plain promotion or demotion
//! offered for signature as a forced promotion), which clients must refuse to sign
//! ([`pending_intent`]).

use std::path::Path;
use std::sync::Mutex;

use crate::contract::action::{Action, Requester};
use crate::contract::digest::request_digest;
use crate::pki::sign::IntentSigner;
use crate::proto::kernel as kpb;

static FIRST_SIGNATURES: Mutex<Option<Vec<kpb::IntentSignature>>> = Mutex::new(None);

fn redigest(req: &mut kpb::ExecuteRequest) {
    let action = req.action.as_ref().and_then(Action::from_proto);
    let requester = req.requester.as_ref().map(Requester::from_proto);
    if let (Some(a), Some(r)) = (action, requester) {
        req.request_digest = request_digest(&a, &r).to_vec();
    }
}

fn signer(spec: &str) -> Option<IntentSigner> {
    let (cert, key) = spec.split_once(':')?;
    IntentSigner::load(Path::new(cert), Path::new(key)).ok()
}

/// The request (and the index of the node it goes to) as the armed mode changes them; unchanged
/// when `AERODB_TAMPER` is unset. `nodes` are the configured node ids in order.
pub fn apply(nodes: &[String], target: usize, mut req: kpb::ExecuteRequest) -> (usize, kpb::ExecuteRequest) {
    let Ok(mode) = std::env::var("AERODB_TAMPER") else { return (target, req) };
    tracing::warn!(tamper = %mode, "AERODB_TAMPER: changing the Execute request after it was signed");
    let (name, arg) = mode.split_once(':').unwrap_or((mode.as_str(), ""));
    let mut target = target;
    match name {
        "target" => {
            target = (target + 1) % nodes.len().max(1);
            if let (Some(a), Some(id)) = (req.action.as_mut(), nodes.get(target)) {
                a.target_node = id.clone();
            }
            redigest(&mut req);
        }
        "epoch" => req.plan_epoch += 1,
        "sequence" => req.expected_control_seq += 1,
        "force" => {
            if let Some(a) = req.action.as_mut() {
                a.force = true;
            }
            req.confirmation = Some(kpb::Confirmation {
                kind: kpb::ConfirmationKind::Enhanced as i32,
                acknowledged_invariants: vec!["P6-A1a".into()],
                accept_responsibility: true,
            });
            redigest(&mut req);
        }
        "acknowledgements" => {
            if let Some(c) = req.confirmation.as_mut() {
                c.acknowledged_invariants.push("P6-A1a".into());
            }
        }
        "requester" => {
            if let Some(r) = req.requester.as_mut() {
                r.name = format!("{}-impostor", r.name);
            }
            redigest(&mut req);
        }
        "key" => req.idempotency_key.push_str("-other"),
        "drop_signature" => req.signatures.clear(),
        "replay_signature" => {
            let mut first = FIRST_SIGNATURES.lock().unwrap_or_else(|p| p.into_inner());
            match first.as_ref() {
                None => *first = Some(req.signatures.clone()),
                Some(earlier) => req.signatures = earlier.clone(),
            }
        }
        "sign" => {
            if let Some(sig) = signer(arg).and_then(|s| s.sign(&req.intent).ok()) {
                req.signatures = vec![sig];
            }
        }
        "approve" => {
            if let Some(sig) = signer(arg).and_then(|s| s.sign(&req.intent).ok()) {
                req.signatures.push(sig);
            }
        }
        _ => {}
    }
    (target, req)
}

/// The intent a pending action returns, as `AERODB_TAMPER=pending_command` changes it: the
/// command becomes `force_promotion` (with its enhanced confirmation), the explanation unchanged.
pub fn pending_intent(mut intent: crate::contract::intent::Intent) -> crate::contract::intent::Intent {
    if std::env::var("AERODB_TAMPER").as_deref() == Ok("pending_command") {
        tracing::warn!("AERODB_TAMPER=pending_command: offering a forced promotion for signature");
        intent.command = crate::contract::intent::Command::ForcePromotion;
        intent.confirmation = crate::contract::action::Confirmation {
            kind: "enhanced".into(),
            acknowledged_invariants: vec!["P6-A1".into(), "P6-A1a".into()],
            accept_responsibility: true,
        };
    }
    intent
}
