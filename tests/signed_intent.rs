//! Issue 15: the kernel executes only what an operator signed, and counts approvals itself.
//!
//! Real processes and real certificates: a control plane that tampers with the Execute request
//! after the operator signed it (`AERODB_TAMPER`, compiled only with the `failpoints` feature),
//! direct Kernel.Execute calls with the controlplane certificate, signers of every other role,
//! revoked and expired actors, and an N-of-M approval policy. Each refusal is checked in the
//! kernel's ledger (the rejection is recorded under the key; nothing executed) and in the
//! authority the nodes report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::time::Duration;

use aerodb::contract::intent::{Approvals, Intent};
use aerodb::kernel::records::{ActionKind, Decided, Decision};
use aerodb::pki::sign::IntentSigner;
use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use aerodb::tls::identity::Role;
use common::sign::{requester_signature, sign_exec};
use common::{Cluster, Spec, extra_identity, key, request, wire};

/// The decision a node's ledger recorded under `key`.
fn decided_on(c: &Cluster, node: usize, key: &str) -> Option<Decided> {
    common::decided(&c.ledger(node)).into_iter().find(|d| d.idempotency_key == key)
}

fn rejection_code(d: &Decided) -> Option<&str> {
    match &d.decision {
        Decision::Rejected { rejection } => Some(rejection.code.as_str()),
        Decision::Executed { .. } => None,
    }
}

fn rejection_message(d: &Decided) -> String {
    match &d.decision {
        Decision::Rejected { rejection } => rejection.message.clone(),
        Decision::Executed { .. } => String::new(),
    }
}

/// (role, epoch) of every node.
async fn authorities(c: &Cluster) -> Vec<(i32, u64)> {
    let mut v = Vec::new();
    for i in 0..c.nodes.len() {
        let a = c.observe(i).await.unwrap().authority.unwrap();
        v.push((a.role, a.epoch));
    }
    v
}

/// The confirm of a pending action with exactly what it requires and `signatures`.
fn confirm_with(p: &cpb::PendingAction, signatures: Vec<kpb::IntentSignature>) -> cpb::ConfirmActionRequest {
    common::sign::confirm_request(p, signatures)
}

/// A direct Kernel.Execute of diagnostics on n1 by requester `who`, signed (then changed by
/// `change`, which may break the signature).
async fn direct(
    c: &Cluster,
    who: &str,
    change: impl FnOnce(&mut kpb::ExecuteRequest),
) -> (String, kpb::ExecuteResponse) {
    let k = key("direct");
    let seq = common::control_seq(c, 0).await;
    let mut req = sign_exec(c, common::exec_req(&k, ActionKind::Diagnostics, "n1", false, seq, who));
    change(&mut req);
    let r = tokio::time::timeout(Duration::from_secs(20), c.kernel(0).execute(req)).await.unwrap().unwrap();
    (k, r.into_inner())
}

/// The rejection code a direct call got, checking it is the recorded decision.
fn recorded_code(c: &Cluster, k: &str, r: &kpb::ExecuteResponse) -> String {
    let rec = r.record.as_ref().unwrap_or_else(|| panic!("a recorded decision, got {r:?}"));
    assert_eq!(rec.decision, kpb::Decision::Rejected as i32, "{rec:?}");
    let d = decided_on(c, 0, k).expect("the rejection is in n1's ledger");
    let code = rejection_code(&d).unwrap().to_string();
    assert_eq!(rec.rejection.as_ref().unwrap().code, code);
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p15_a_direct_execute_with_the_controlplane_certificate_and_no_signature_is_rejected_and_recorded() {
    let c = Cluster::start(Spec::default()).await;
    let before = authorities(&c).await;
    // A demotion of the primary with a made-up requester and no signed intent: what a stolen
    // controlplane key could send before this issue.
    let k = key("no-intent");
    let seq = common::control_seq(&c, 0).await;
    let mut req = common::exec_req(&k, ActionKind::Demote, "n1", false, seq, "nobody");
    req.plan_epoch = 1;
    let r = c.kernel(0).execute(req).await.unwrap().into_inner();
    assert_eq!(r.record.as_ref().unwrap().rejection.as_ref().unwrap().code, "AERO_INTENT_MISSING", "{r:?}");
    let d = decided_on(&c, 0, &k).expect("recorded");
    assert_eq!(rejection_code(&d), Some("AERO_INTENT_MISSING"));
    assert_eq!(authorities(&c).await, before, "nothing executed");
    // The same request again is answered by the recorded rejection, byte for byte.
    let mut again = common::exec_req(&k, ActionKind::Demote, "n1", false, seq, "nobody");
    again.plan_epoch = 1;
    let r2 = c.kernel(0).execute(again).await.unwrap().into_inner();
    assert!(r2.replayed);
    assert_eq!(r2.record, r.record);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p15_only_a_valid_current_actor_signature_over_the_exact_intent_is_accepted() {
    let c = Cluster::start(Spec::default()).await;
    // The control: a correctly signed request executes.
    let (_, ok) = direct(&c, "op", |_| {}).await;
    assert_eq!(common::verdict(&ok), Ok(()));
    // Signers of every other role: observer, auditor, client, controlplane, node.
    for (role, file) in [
        ("observer", "observer"),
        ("auditor", "auditor"),
        ("client", "client"),
        ("controlplane", "controlplane"),
        ("node", &*aerodb::pki::node_stem("n2")),
    ] {
        let signer =
            IntentSigner::load(&c.pki.dir.join(format!("{file}.pem")), &c.pki.dir.join(format!("{file}.key"))).unwrap();
        let (k, r) = direct(&c, "op", |req| req.signatures = vec![signer.sign(&req.intent).unwrap()]).await;
        assert_eq!(recorded_code(&c, &k, &r), "AERO_INTENT_SIGNER_NOT_ACTOR", "a {role} certificate signed");
    }
    // A signature that does not verify: one byte of it changed.
    let (k, r) = direct(&c, "op", |req| {
        let last = req.signatures[0].signature.len() - 1;
        req.signatures[0].signature[last] ^= 1;
    })
    .await;
    assert_eq!(recorded_code(&c, &k, &r), "AERO_INTENT_SIGNATURE_INVALID");
    // A signature over other bytes: the intent changed after signing (its not-after moved).
    let (k, r) = direct(&c, "op", |req| {
        let mut i = Intent::decode(&req.intent).unwrap();
        i.not_after_unix_ms += 1;
        req.intent = i.encode();
    })
    .await;
    assert_eq!(recorded_code(&c, &k, &r), "AERO_INTENT_SIGNATURE_INVALID");
    // An intent whose time has passed, properly signed.
    let (k, r) = direct(&c, "op", |req| {
        let mut i = Intent::decode(&req.intent).unwrap();
        i.not_after_unix_ms = common::sign::now_unix_ms() - 1;
        req.intent = i.encode();
        let fp = i.requester.cert_sha256.clone();
        req.signatures = vec![common::sign::signer(&fp).sign(&req.intent).unwrap()];
    })
    .await;
    assert_eq!(recorded_code(&c, &k, &r), "AERO_INTENT_EXPIRED");
    // An actor signing an intent that names another requester (its own certificate's
    // fingerprint, another name): the requester did not sign.
    let (k, r) = direct(&c, "op", |req| {
        let mut i = Intent::decode(&req.intent).unwrap();
        i.requester.name = "alice".into();
        req.requester.as_mut().unwrap().name = "alice".into();
        let action = aerodb::contract::action::Action::from_proto(req.action.as_ref().unwrap()).unwrap();
        req.request_digest = aerodb::contract::digest::request_digest(&action, &i.requester).to_vec();
        req.intent = i.encode();
        req.signatures = vec![common::sign::signer(&i.requester.cert_sha256).sign(&req.intent).unwrap()];
    })
    .await;
    assert_eq!(recorded_code(&c, &k, &r), "AERO_INTENT_MISSING");
    assert!(rejection_message(&decided_on(&c, 0, &k).unwrap()).contains("naming the requester"));
    // A request the requester did not sign: signed by another actor only.
    let (bob_cert, bob_key) = common::sign::actor_files(&c.pki, "bob");
    let bob = IntentSigner::load(&bob_cert, &bob_key).unwrap();
    let (k, r) = direct(&c, "op", |req| req.signatures = vec![bob.sign(&req.intent).unwrap()]).await;
    assert_eq!(recorded_code(&c, &k, &r), "AERO_INTENT_MISSING");
    // An actor certificate from another CA (same trust domain, same name): not trusted.
    let foreign = tempfile::tempdir().unwrap();
    let foreign_pki = common::Pki::new(foreign.path());
    let eve = IntentSigner::load(&foreign_pki.dir.join("actor.pem"), &foreign_pki.dir.join("actor.key")).unwrap();
    let (k, r) = direct(&c, "op", |req| req.signatures.push(eve.sign(&req.intent).unwrap())).await;
    assert_eq!(recorded_code(&c, &k, &r), "AERO_INTENT_SIGNER_UNTRUSTED");
    // An expired actor certificate (issued 40 days ago for 30 days).
    let old = time::OffsetDateTime::now_utc() - time::Duration::days(40);
    aerodb::pki::issue(&c.pki.dir, common::TD, Role::Actor, "expired-op", None, &[], 30, old).unwrap();
    common::sign::register(&c.pki.dir.join("expired-op.pem"), &c.pki.dir.join("expired-op.key"));
    let (k, r) = direct(&c, "expired-op", |_| {}).await;
    assert_eq!(recorded_code(&c, &k, &r), "AERO_INTENT_SIGNER_EXPIRED");
    // No decision above executed anything but the first diagnostics.
    let executed =
        common::decided(&c.ledger(0)).iter().filter(|d| matches!(d.decision, Decision::Executed { .. })).count();
    assert_eq!(executed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p15_a_revoked_actor_cannot_sign() {
    let mut c = Cluster::build(Spec::default()).await;
    // Revoked before the nodes start, so every node's CRL names it from the first request.
    aerodb::pki::issue(
        &c.pki.dir,
        common::TD,
        Role::Actor,
        "revoked-op",
        None,
        &[],
        30,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    aerodb::pki::revoke(&c.pki.dir, &c.pki.dir.join("revoked-op.pem"), time::OffsetDateTime::now_utc()).unwrap();
    common::sign::register(&c.pki.dir.join("revoked-op.pem"), &c.pki.dir.join("revoked-op.key"));
    c.start_all().await;
    let (k, r) = direct(&c, "revoked-op", |_| {}).await;
    assert_eq!(recorded_code(&c, &k, &r), "AERO_INTENT_SIGNER_REVOKED");
    assert!(rejection_message(&decided_on(&c, 0, &k).unwrap()).contains("revoked"));
}

/// Each way a compromised control plane could change a signed action after the operator signed
/// it: the kernel rejects it with its code and records the rejection; nothing executes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p15_a_tampering_control_plane_cannot_make_the_kernel_execute_anything_unsigned() {
    let mut c = Cluster::start(Spec::default()).await;
    let before = authorities(&c).await;
    let own = format!(
        "sign:{}:{}",
        c.pki.dir.join("controlplane.pem").display(),
        c.pki.dir.join("controlplane.key").display()
    );
    let foreign = tempfile::tempdir().unwrap();
    let foreign_pki = common::Pki::new(foreign.path());
    let forged = format!(
        "approve:{}:{}",
        foreign_pki.dir.join("actor.pem").display(),
        foreign_pki.dir.join("actor.key").display()
    );
    // (mode, command, target, node whose ledger decides, code, field named)
    let cases: Vec<(String, cpb::Command, &str, usize, &str, &str)> = vec![
        ("target".into(), cpb::Command::RequestDemotion, "n1", 1, "AERO_INTENT_FIELD_MISMATCH", "target_node"),
        ("epoch".into(), cpb::Command::RequestDemotion, "n1", 0, "AERO_INTENT_FIELD_MISMATCH", "plan_epoch"),
        (
            "sequence".into(),
            cpb::Command::RequestDemotion,
            "n1",
            0,
            "AERO_INTENT_FIELD_MISMATCH",
            "expected_control_seq",
        ),
        // A plain promotion of n2 (which n1, still active, would block) turned into a forced one.
        ("force".into(), cpb::Command::RequestPromotion, "n2", 1, "AERO_INTENT_FIELD_MISMATCH", "command"),
        (
            "acknowledgements".into(),
            cpb::Command::RequestDemotion,
            "n1",
            0,
            "AERO_INTENT_FIELD_MISMATCH",
            "confirmation",
        ),
        ("requester".into(), cpb::Command::RequestDemotion, "n1", 0, "AERO_INTENT_FIELD_MISMATCH", "requester"),
        ("key".into(), cpb::Command::RequestDemotion, "n1", 0, "AERO_INTENT_FIELD_MISMATCH", "idempotency_key"),
        ("drop_signature".into(), cpb::Command::RequestDemotion, "n1", 0, "AERO_INTENT_MISSING", ""),
        (own, cpb::Command::RequestDemotion, "n1", 0, "AERO_INTENT_SIGNER_NOT_ACTOR", "controlplane"),
        (forged, cpb::Command::RequestDemotion, "n1", 0, "AERO_INTENT_SIGNER_UNTRUSTED", "not trusted"),
    ];
    for (mode, command, target, decider, code, names) in cases {
        c.restart_control(0, &[("AERODB_TAMPER", &mode)]).await;
        let mut actor = c.actor(0);
        let k = key("tamper");
        let p = request(&mut actor, command, target, &k).await.unwrap();
        let e = actor.confirm_action(confirm_with(&p, vec![requester_signature(&p)])).await.unwrap_err();
        assert_eq!(wire(&e).code, code, "{mode}: {e:?}");
        let recorded_key = if mode == "key" { format!("{k}-other") } else { k.clone() };
        let d = decided_on(&c, decider, &recorded_key).unwrap_or_else(|| panic!("{mode}: recorded on the decider"));
        assert_eq!(rejection_code(&d), Some(code), "{mode}");
        assert!(rejection_message(&d).contains(names), "{mode}: {}", rejection_message(&d));
        assert_eq!(authorities(&c).await, before, "{mode}: nothing executed");
        // The audit's confirmed record holds what the operator signed (not what was sent).
        let records = c.audit_records(0);
        let confirmed = records
            .iter()
            .find(|r| r.draft.stage == aerodb::audit::record::Stage::Confirmed && r.draft.idempotency_key == k)
            .unwrap_or_else(|| panic!("{mode}: a confirmed record"));
        let facts = confirmed.draft.confirmation.as_ref().unwrap();
        assert_eq!(facts.intent, hex::encode(&p.intent), "{mode}");
        assert_eq!(facts.signatures.len(), 1, "{mode}");
    }
    // Replay of a signature from an earlier action: the first action passes, the next carries
    // the first one's signature.
    c.restart_control(0, &[("AERODB_TAMPER", "replay_signature")]).await;
    let mut actor = c.actor(0);
    let first = common::request_and_confirm(&mut actor, cpb::Command::RunDiagnostics, "n1", &key("first")).await;
    assert_eq!(first.unwrap().outcome, cpb::ActionOutcome::Executed as i32);
    let k = key("replayed-sig");
    let p = request(&mut actor, cpb::Command::RequestDemotion, "n1", &k).await.unwrap();
    let e = actor.confirm_action(confirm_with(&p, vec![requester_signature(&p)])).await.unwrap_err();
    assert_eq!(wire(&e).code, "AERO_INTENT_SIGNATURE_INVALID", "{e:?}");
    assert_eq!(rejection_code(&decided_on(&c, 0, &k).unwrap()), Some("AERO_INTENT_SIGNATURE_INVALID"));
    assert_eq!(authorities(&c).await, before, "replay: nothing executed");
    // Without tampering the same flow executes (the control).
    c.restart_control(0, &[]).await;
    let mut actor = c.actor(0);
    let done = common::request_and_confirm(&mut actor, cpb::Command::RequestDemotion, "n1", &key("honest")).await;
    assert_eq!(done.unwrap().outcome, cpb::ActionOutcome::Executed as i32);
}

/// 2-of-N for force_promotion, counted by the kernel: one signature is refused naming one more;
/// the same identity twice counts once; two distinct actors execute exactly once, and the
/// Decided record stores the intent and both signatures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p15_two_of_n_force_promotion_is_counted_by_the_kernel() {
    let spec = Spec { approvals: Approvals { force_promotion: 2, ..Approvals::default() }, ..Spec::default() };
    let mut c = Cluster::start(spec).await;
    let mut actor = c.actor(0);
    let _bob_channel = extra_identity(&c, Role::Actor, "bob", &c.controls[0].addr);
    let bob = IntentSigner::load(&c.pki.dir.join("bob.pem"), &c.pki.dir.join("bob.key")).unwrap();
    // The policy shows in the view of every node, and in the pending action.
    for i in 0..3 {
        assert_eq!(c.observe(i).await.unwrap().approvals.unwrap().force_promotion, 2);
    }
    c.nodes[0].proc.kill();
    let attempt = |signatures: fn(&cpb::PendingAction, &IntentSigner) -> Vec<kpb::IntentSignature>| {
        let mut actor = c.actor(0);
        let bob = &bob;
        async move {
            let k = key("force2");
            let p = request(&mut actor, cpb::Command::ForcePromotion, "n2", &k).await.unwrap();
            assert_eq!(p.signatures_required, 2);
            let r = actor.confirm_action(confirm_with(&p, signatures(&p, bob))).await;
            (k, r)
        }
    };
    // The requester alone.
    let (k, r) = attempt(|p, _| vec![requester_signature(p)]).await;
    let e = r.unwrap_err();
    assert_eq!(wire(&e).code, "AERO_INTENT_APPROVALS_MISSING");
    assert!(e.message().contains("1 more needed"), "{e:?}");
    assert_eq!(rejection_code(&decided_on(&c, 1, &k).unwrap()), Some("AERO_INTENT_APPROVALS_MISSING"));
    // The requester twice: one signer.
    let (_, r) = attempt(|p, _| vec![requester_signature(p), requester_signature(p)]).await;
    assert_eq!(wire(&r.unwrap_err()).code, "AERO_INTENT_APPROVALS_MISSING");
    // An approval by bob over another intent (an earlier request's) does not verify.
    let stale = request(&mut actor, cpb::Command::ForcePromotion, "n2", &key("stale")).await.unwrap();
    let stale_sig = bob.sign(&stale.intent).unwrap();
    let (k, r) = {
        let k = key("force2");
        let p = request(&mut actor, cpb::Command::ForcePromotion, "n2", &k).await.unwrap();
        let mut sig = stale_sig.clone();
        sig.certificate = bob.sign(&p.intent).unwrap().certificate;
        (k, actor.confirm_action(confirm_with(&p, vec![requester_signature(&p), sig])).await)
    };
    assert_eq!(wire(&r.unwrap_err()).code, "AERO_INTENT_SIGNATURE_INVALID");
    assert!(decided_on(&c, 1, &k).is_some());
    assert_eq!(c.observe(1).await.unwrap().authority.unwrap().role, kpb::Role::Replica as i32);
    // The requester and bob: executes, once.
    let (k, r) = attempt(|p, bob| vec![requester_signature(p), bob.sign(&p.intent).unwrap()]).await;
    assert_eq!(r.unwrap().into_inner().outcome, cpb::ActionOutcome::Executed as i32);
    c.wait_role(1, kpb::Role::Primary).await;
    let d = decided_on(&c, 1, &k).unwrap();
    assert!(matches!(d.decision, Decision::Executed { .. }));
    assert_eq!(d.signatures.len(), 2);
    let intent = Intent::decode(&hex::decode(&d.intent).unwrap()).unwrap();
    assert_eq!(intent.idempotency_key, k);
    assert_eq!(intent.target_node, "n2");
    let executed = (1..3)
        .flat_map(|i| common::decided(&c.ledger(i)))
        .filter(|d| matches!(d.decision, Decision::Executed { .. }))
        .count();
    assert_eq!(executed, 1, "exactly one forced promotion executed");
}

/// aerodbctl with `args` (stdin: `input`): (exit code, stdout, stderr).
async fn ctl(args: Vec<String>, input: &str) -> (i32, String, String) {
    let out = common::ctl::run_ctl_async(args, vec![], input).await;
    (out.code, out.stdout, out.stderr)
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A profile for the test PKI's certificate `stem` (e.g. an extra actor).
fn profile_of(c: &Cluster, stem: &str) -> std::path::PathBuf {
    let p = aerodb::pki::profile::Profile {
        endpoint: c.controls[0].addr.clone(),
        trust_domain: common::TD.into(),
        ca: c.pki.dir.join("ca.pem"),
        cert: c.pki.dir.join(format!("{stem}.pem")),
        key: c.pki.dir.join(format!("{stem}.key")),
        server: None,
    };
    let path = c.pki.dir.join(format!("{stem}.profile.toml"));
    p.write(&path).unwrap();
    path
}

/// The two-step flow of aerodbctl with an approval: request-only by one actor, `approve` by
/// another (typing the target), `confirm --approval` by the first. A mistyped approval signs
/// nothing; the confirmed forced promotion executes once with both signatures recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p15_aerodbctl_request_approve_confirm_executes_a_two_of_n_forced_promotion() {
    let spec = Spec { approvals: Approvals { force_promotion: 2, ..Approvals::default() }, ..Spec::default() };
    let mut c = Cluster::start(spec).await;
    let _ = extra_identity(&c, Role::Actor, "bob", &c.controls[0].addr);
    let alice = c.pki.profile(Role::Actor, &c.controls[0].addr);
    let bob = profile_of(&c, "bob");
    c.nodes[0].proc.kill();
    let k = key("ctl-force2");
    let alice_s = alice.display().to_string();
    let (code, out, err) =
        ctl(args(&["--profile", &alice_s, "force-promote", "n2", "--request-only", "--key", &k]), "").await;
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["signatures_required"], 2);
    let pending = c.root.path().join("pending.json");
    std::fs::write(&pending, &out).unwrap();
    let bob_s = bob.display().to_string();
    let pending_s = pending.display().to_string();
    // Bob mistypes the target: nothing is signed.
    let (code, out, err) = ctl(args(&["--profile", &bob_s, "approve", &pending_s]), "n3\n").await;
    assert_eq!(code, 4, "{out}{err}");
    assert!(out.is_empty(), "no approval printed: {out}");
    assert!(err.contains("force_promotion") && err.contains("n2"), "the intent is shown before signing: {err}");
    // Bob approves.
    let (code, approval, err) = ctl(args(&["--profile", &bob_s, "approve", &pending_s]), "n2\n").await;
    assert_eq!(code, 0, "{approval}{err}");
    let approval_path = c.root.path().join("approval-bob.json");
    std::fs::write(&approval_path, &approval).unwrap();
    // Alice confirms with bob's approval, typing target, acknowledgements and acceptance.
    let confirm = doc["confirm_command"].as_str().unwrap().replace(" --approval FILE", "");
    let mut confirm: Vec<String> = confirm.split_whitespace().skip(1).map(str::to_string).collect();
    confirm.splice(0..0, args(&["--profile", &alice_s]));
    confirm.extend(args(&["--typed-target", "n2", "--ack", "P6-A1", "--ack", "P6-A1a", "--accept-responsibility"]));
    confirm.extend(args(&["--approval", &approval_path.display().to_string()]));
    let (code, out, err) = ctl(confirm, "").await;
    assert_eq!(code, 0, "{out}{err}");
    c.wait_role(1, kpb::Role::Primary).await;
    let d = decided_on(&c, 1, &k).unwrap();
    assert!(matches!(d.decision, Decision::Executed { .. }));
    assert_eq!(d.signatures.len(), 2, "requester and approver");
}

/// `aerodbctl audit crosscheck` explains every executed action by a confirmed record holding the
/// same signed intent, and names one sent around the control plane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p15_audit_crosscheck_names_an_executed_action_the_trail_does_not_explain() {
    let c = Cluster::start(Spec::default()).await;
    let mut actor = c.actor(0);
    for k in ["x1", "x2"] {
        let r = common::request_and_confirm(&mut actor, cpb::Command::RunDiagnostics, "n1", &key(k)).await.unwrap();
        assert_eq!(r.outcome, cpb::ActionOutcome::Executed as i32);
    }
    let mut cmd = args(&["audit", "crosscheck", "--audit", &c.controls[0].cfg.audit_dir.display().to_string()]);
    for n in &c.nodes {
        cmd.extend(args(&["--ledger", &n.cfg.data_dir.join("control.log").display().to_string()]));
    }
    let (code, out, err) = ctl(cmd.clone(), "").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 executed action(s), 0 not explained"), "{out}");
    // An actor key and the controlplane key together, around the control plane.
    let (k, r) = direct(&c, "op", |_| {}).await;
    assert_eq!(common::verdict(&r), Ok(()));
    let (code, out, err) = ctl(cmd, "").await;
    assert_eq!(code, 7, "{out}{err}");
    assert!(out.contains("3 executed action(s), 1 not explained"), "{out}");
    let line = out.lines().find(|l| l.contains(&k)).unwrap_or_else(|| panic!("{k} named: {out}"));
    assert!(line.contains("no confirmed audit record"), "{line}");
}

/// A control plane that offers for signature another intent than the one it explains (a forced
/// promotion where a demotion was asked): aerodbctl names the difference, signs nothing,
/// declines, and no Execute reaches a kernel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p15_aerodbctl_refuses_to_sign_an_intent_that_differs_from_the_action_asked_and_explained() {
    let mut c = Cluster::start(Spec::default()).await;
    c.restart_control(0, &[("AERODB_TAMPER", "pending_command")]).await;
    let before = common::execute_calls(&c).await;
    let actor = c.pki.profile(Role::Actor, &c.controls[0].addr).display().to_string();
    let (code, out, err) = ctl(args(&["--profile", &actor, "demote", "n1"]), "n1\n").await;
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("its command differs; nothing was signed"), "{err}");
    assert_eq!(common::execute_calls(&c).await, before, "no Execute reached a kernel");
    let declined = c.audit_records(0).iter().any(|r| r.draft.stage == aerodb::audit::record::Stage::Declined);
    assert!(declined, "the pending action was declined");
}

/// The approval policy is each node's configuration: every node reports its own in its snapshot,
/// and the cluster view says when they differ (a fact to fix, never resolved by the control
/// plane), while the pending action names the target's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p15_a_node_whose_approval_policy_differs_shows_in_the_cluster_view_and_its_own_count_applies() {
    let mut c = Cluster::build(Spec::default()).await;
    c.nodes[2].cfg.approvals.request_demotion = 3;
    std::fs::write(&c.nodes[2].config_path, toml::to_string(&c.nodes[2].cfg).unwrap()).unwrap();
    c.start_all().await;
    let mut observer = cpb::observer_client::ObserverClient::new(c.pki.channel(Role::Observer, &c.controls[0].addr));
    let state = observer.get_cluster_state(cpb::GetClusterStateRequest {}).await.unwrap().into_inner();
    assert!(state.approval_policies_differ);
    let policy_of = |i: usize| match &state.nodes[i].state {
        Some(cpb::node_entry::State::Snapshot(s)) => s.approvals.unwrap().request_demotion,
        other => panic!("{other:?}"),
    };
    assert_eq!((policy_of(0), policy_of(1), policy_of(2)), (1, 1, 3));
    // The pending action names the target's own count.
    let mut actor = c.actor(0);
    let p = request(&mut actor, cpb::Command::RequestDemotion, "n1", &key("d1")).await.unwrap();
    assert_eq!(p.signatures_required, 1);
    let p3 = request(&mut actor, cpb::Command::RequestDemotion, "n3", &key("d3")).await.unwrap();
    assert_eq!(p3.signatures_required, 3);
    // Made identical again (a restart with the same configuration as the others): no difference.
    c.nodes[2].cfg.approvals.request_demotion = 1;
    std::fs::write(&c.nodes[2].config_path, toml::to_string(&c.nodes[2].cfg).unwrap()).unwrap();
    c.nodes[2].proc.kill();
    c.nodes[2].proc.start();
    c.wait_node_ready(2).await;
    let state = observer.get_cluster_state(cpb::GetClusterStateRequest {}).await.unwrap().into_inner();
    assert!(!state.approval_policies_differ);
}
