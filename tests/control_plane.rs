//! Issue 5: the control plane against real processes: the confirmation rules one by one,
//! exactly-once across instances, determinism, and the audit trail of a scripted session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::time::Duration;

use aerodb::audit::record::Stage;
use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use aerodb::tls::identity::Role;
use aerodb::wire::{ErrorDomain, Outcome};
use common::{
    Cluster, Spec, WAIT, confirm_pending, control_seq, execute_calls, extra_identity, key, request,
    request_and_confirm, wait_for, wire,
};
use prost::Message;
use tonic::Code;

fn confirm_req(p: &cpb::PendingAction) -> cpb::ConfirmActionRequest {
    common::sign::confirm_request(p, vec![common::sign::requester_signature(p)])
}

fn assert_refused(s: &tonic::Status, code: &str) {
    let w = wire(s);
    assert_eq!(w.code, code, "{s:?}");
    assert_eq!(w.outcome, Outcome::NotExecuted);
}

fn decided_keys(c: &Cluster, node: usize, key: &str) -> usize {
    common::decided(&c.ledger(node)).iter().filter(|d| d.idempotency_key == key).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_a2_confirmation_rules_one_by_one_never_execute_without_a_valid_confirmation() {
    let c = Cluster::start(Spec::default()).await;
    let mut actor = c.actor(0);
    let baseline = execute_calls(&c).await;
    let seq = control_seq(&c, 0).await;

    // No confirmation: nothing reaches a kernel.
    let p = request(&mut actor, cpb::Command::RequestDemotion, "n1", &key("none")).await.unwrap();
    assert_eq!(execute_calls(&c).await, baseline);
    assert_eq!(control_seq(&c, 0).await, seq);
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary));

    // Plan digest mismatch, then the pending action is gone.
    let mut bad = confirm_req(&p);
    bad.plan_digest = "0".repeat(64);
    assert_refused(&actor.confirm_action(bad).await.unwrap_err(), "PHASE7_CONFIRMATION_PLAN_MISMATCH");
    assert_refused(&actor.confirm_action(confirm_req(&p)).await.unwrap_err(), "PHASE7_CONFIRMATION_REUSED");

    // Typed target mismatch.
    let p = request(&mut actor, cpb::Command::RequestDemotion, "n1", &key("target")).await.unwrap();
    let mut bad = confirm_req(&p);
    bad.typed_target = "n2".into();
    let s = actor.confirm_action(bad).await.unwrap_err();
    assert_refused(&s, "PHASE7_CONFIRMATION_TARGET_MISMATCH");
    assert_eq!(wire(&s).error_domain, ErrorDomain::Validation);

    // Another caller's confirmation.
    let mut bob = cpb::actor_client::ActorClient::new(extra_identity(&c, Role::Actor, "bob", &c.controls[0].addr));
    let p = request(&mut actor, cpb::Command::RequestDemotion, "n1", &key("caller")).await.unwrap();
    assert_refused(&bob.confirm_action(confirm_req(&p)).await.unwrap_err(), "PHASE7_CONFIRMATION_WRONG_CALLER");
    // Another caller's attempt changed nothing: the owner's decline still finds the action.
    actor.decline_action(cpb::DeclineActionRequest { confirmation_id: p.confirmation_id.clone() }).await.unwrap();
    assert_refused(&actor.confirm_action(confirm_req(&p)).await.unwrap_err(), "PHASE7_CONFIRMATION_REUSED");

    // Unknown id.
    let mut unknown = confirm_req(&p);
    unknown.confirmation_id = "ffffffffffffffffffffffffffffffff".into();
    assert_refused(&actor.confirm_action(unknown).await.unwrap_err(), "PHASE7_CONFIRMATION_UNKNOWN");

    // Decline.
    let p = request(&mut actor, cpb::Command::RequestDemotion, "n1", &key("decline")).await.unwrap();
    let d = actor
        .decline_action(cpb::DeclineActionRequest { confirmation_id: p.confirmation_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.outcome, "NOT_EXECUTED");
    assert_refused(&actor.confirm_action(confirm_req(&p)).await.unwrap_err(), "PHASE7_CONFIRMATION_REUSED");

    // A retried call (gRPC retry metadata) is rejected and executes nothing.
    let p = request(&mut actor, cpb::Command::RequestDemotion, "n1", &key("retry")).await.unwrap();
    let mut req = tonic::Request::new(confirm_req(&p));
    req.metadata_mut().insert("grpc-previous-rpc-attempts", "1".parse().unwrap());
    assert_refused(&actor.confirm_action(req).await.unwrap_err(), "PHASE7_RETRY_REJECTED");

    // Through all of it: not one kernel call, nothing changed.
    assert_eq!(execute_calls(&c).await, baseline, "no call reached any kernel");
    assert_eq!(control_seq(&c, 0).await, seq);
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary));

    // And a valid confirmation executes exactly once; using it again is refused.
    let k = key("valid");
    let p = request(&mut actor, cpb::Command::RequestDemotion, "n1", &k).await.unwrap();
    let r = actor.confirm_action(confirm_req(&p)).await.unwrap().into_inner();
    assert_eq!(r.outcome, cpb::ActionOutcome::Executed as i32);
    assert_refused(&actor.confirm_action(confirm_req(&p)).await.unwrap_err(), "PHASE7_CONFIRMATION_REUSED");
    assert_eq!(decided_keys(&c, 0, &k), 1);
    let calls = execute_calls(&c).await;
    assert_eq!(calls[0], baseline[0] + 1, "exactly one Execute reached n1");
}

/// P7-F3 (no hidden retries): a RequestAction or DeclineAction that carries gRPC retry metadata
/// is refused PHASE7_RETRY_REJECTED, NOT_EXECUTED, before it changes anything: the retried
/// request mints no pending action, the retried decline leaves the pending action it names
/// confirmable, and no call reaches a kernel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_f3_a_retried_request_or_decline_is_refused_and_changes_nothing() {
    let c = Cluster::start(Spec::default()).await;
    let mut actor = c.actor(0);
    let baseline = execute_calls(&c).await;
    let seq = control_seq(&c, 0).await;
    let stages_for = |key: &str| -> Vec<Stage> {
        c.audit_records(0).into_iter().filter(|b| b.draft.idempotency_key == key).map(|b| b.draft.stage).collect()
    };

    // A retried RequestAction: refused, and no pending action is minted for it.
    let retried_key = key("retried-request");
    let mut req = tonic::Request::new(cpb::RequestActionRequest {
        command: cpb::Command::RequestDemotion as i32,
        target_node: "n1".into(),
        idempotency_key: retried_key.clone(),
    });
    req.metadata_mut().insert("grpc-previous-rpc-attempts", "1".parse().unwrap());
    let answer = actor.request_action(req).await;
    let s = answer.expect_err("a RequestAction carrying grpc-previous-rpc-attempts must be refused");
    assert_refused(&s, "PHASE7_RETRY_REJECTED");
    assert_eq!(wire(&s).invariants, vec!["P7-F3".to_string(), "P7-F1".to_string()]);
    assert_eq!(
        stages_for(&retried_key),
        vec![Stage::Requested, Stage::Rejected],
        "the retried request is recorded and refused; no confirmation_requested (no pending action)"
    );

    // A retried DeclineAction: refused, and the pending action it names is not declined.
    let declined_key = key("retried-decline");
    let p = request(&mut actor, cpb::Command::RequestDemotion, "n1", &declined_key).await.unwrap();
    let mut req = tonic::Request::new(cpb::DeclineActionRequest { confirmation_id: p.confirmation_id.clone() });
    req.metadata_mut().insert("grpc-previous-rpc-attempts", "1".parse().unwrap());
    let answer = actor.decline_action(req).await;
    let s = answer.expect_err("a DeclineAction carrying grpc-previous-rpc-attempts must be refused");
    assert_refused(&s, "PHASE7_RETRY_REJECTED");
    assert_eq!(wire(&s).invariants, vec!["P7-F3".to_string(), "P7-F1".to_string()]);
    assert!(
        !stages_for(&declined_key).contains(&Stage::Declined),
        "the retried decline declined the pending action: {:?}",
        stages_for(&declined_key)
    );

    // Through both: not one kernel call, nothing changed.
    assert_eq!(execute_calls(&c).await, baseline, "no call reached any kernel");
    assert_eq!(control_seq(&c, 0).await, seq);
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary));

    // The pending action the retried decline named is still there: confirming it executes it,
    // exactly once.
    let r = actor.confirm_action(confirm_req(&p)).await.expect("the pending action is still confirmable");
    assert_eq!(r.into_inner().outcome, cpb::ActionOutcome::Executed as i32);
    assert_eq!(decided_keys(&c, 0, &declined_key), 1);
    assert_eq!(decided_keys(&c, 0, &retried_key), 0, "the retried request decided nothing");
    let calls = execute_calls(&c).await;
    assert_eq!(calls[0], baseline[0] + 1, "exactly one Execute reached n1");
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_a2_an_expired_confirmation_never_executes() {
    let mut c = Cluster::start(Spec::default()).await;
    let offset = c.root.path().join("clock-offset");
    std::fs::write(&offset, "0").unwrap();
    c.restart_control(0, &[("AERODB_TEST_CLOCK_OFFSET_FILE", offset.to_str().unwrap())]).await;
    let mut actor = c.actor(0);
    let baseline = execute_calls(&c).await;
    let p = request(&mut actor, cpb::Command::RequestDemotion, "n1", &key("expire")).await.unwrap();
    // Move the control plane's injected clock past the window (no sleeping).
    std::fs::write(&offset, ((p.expires_after_seconds + 1) * 1000).to_string()).unwrap();
    assert_refused(&actor.confirm_action(confirm_req(&p)).await.unwrap_err(), "PHASE7_CONFIRMATION_EXPIRED");
    assert_refused(&actor.confirm_action(confirm_req(&p)).await.unwrap_err(), "PHASE7_CONFIRMATION_EXPIRED");
    assert_eq!(execute_calls(&c).await, baseline);
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary));
    // A fresh request inside the window works.
    std::fs::write(&offset, "0").unwrap();
    request_and_confirm(&mut actor, cpb::Command::RequestDemotion, "n1", &key("fresh")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a1a_enhanced_confirmation_incomplete_is_rejected_complete_sends_one_forced_call() {
    let mut c = Cluster::start(Spec::default()).await;
    c.nodes[0].proc.kill();
    let mut actor = c.actor(0);
    let baseline = execute_calls(&c).await;
    let p = request(&mut actor, cpb::Command::ForcePromotion, "n2", &key("force")).await.unwrap();
    let req = p.requirements.clone().unwrap();
    assert_eq!(req.r#type, cpb::ConfirmationType::Enhanced as i32);
    assert_eq!(req.required_acknowledgements, vec!["P6-A1".to_string(), "P6-A1a".to_string()]);
    assert!(
        p.explanation.as_ref().unwrap().unreachable_nodes.contains(&"n1".to_string()),
        "the dead primary is shown, not hidden"
    );
    // A standard confirmation (typed target only) never authorizes a forced promotion.
    let mut standard = confirm_req(&p);
    standard.acknowledged_invariants.clear();
    standard.accept_responsibility = false;
    let s = actor.confirm_action(standard).await.unwrap_err();
    assert_refused(&s, "PHASE7_INCOMPLETE_ENHANCED_CONFIRMATION");
    // Acknowledging only one invariant is not enough either.
    let p = request(&mut actor, cpb::Command::ForcePromotion, "n2", &key("force")).await.unwrap();
    let mut partial = confirm_req(&p);
    partial.acknowledged_invariants = vec!["P6-A1a".into()];
    assert_refused(&actor.confirm_action(partial).await.unwrap_err(), "PHASE7_INCOMPLETE_ENHANCED_CONFIRMATION");
    assert_eq!(execute_calls(&c).await, baseline);
    // Complete: exactly one kernel call, carrying force and the enhanced confirmation.
    let k = key("force-ok");
    let p = request(&mut actor, cpb::Command::ForcePromotion, "n2", &k).await.unwrap();
    let r = confirm_pending(&mut actor, &p).await.unwrap();
    assert_eq!(r.outcome, cpb::ActionOutcome::Executed as i32);
    let calls = execute_calls(&c).await;
    assert_eq!((calls[1], calls[2]), (baseline[1] + 1, baseline[2]));
    let d = common::decided(&c.ledger(1)).into_iter().find(|d| d.idempotency_key == k).unwrap();
    assert!(d.action.force);
    assert_eq!(d.confirmation.kind, "enhanced");
    assert_eq!(d.confirmation.acknowledged_invariants, vec!["P6-A1".to_string(), "P6-A1a".to_string()]);
    assert!(d.confirmation.accept_responsibility);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a1a_the_kernel_refuses_force_without_an_enhanced_confirmation() {
    let c = Cluster::start(Spec::default()).await;
    let seq = control_seq(&c, 1).await;
    let mut req = common::exec_req(&key("k"), aerodb::kernel::records::ActionKind::Promote, "n2", true, seq, "op");
    req.confirmation = Some(kpb::Confirmation { kind: kpb::ConfirmationKind::Standard as i32, ..Default::default() });
    let r = c.kernel(1).execute(common::with_plan_epoch(&c, req).await).await.unwrap().into_inner();
    assert_eq!(r.record.unwrap().rejection.unwrap().code, "AERO_FORCE_REQUIRES_ENHANCED_CONFIRMATION");
    assert_eq!(c.role(1).await, Some(kpb::Role::Replica));
}

/// P6-A1a at the kernel boundary: each of the three conditions of a forced promotion (an
/// enhanced confirmation, that acknowledges P6-A1a, that accepts responsibility) is required on
/// its own. With exactly one missing, Kernel.Execute records the rejection
/// AERO_FORCE_REQUIRES_ENHANCED_CONFIRMATION and nothing else: no promotion, no epoch, no grant
/// asked of a peer. The complete confirmation, sent last, does promote (the control).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a1a_the_kernel_refuses_force_when_any_one_enhanced_condition_is_missing() {
    use aerodb::kernel::records::{ActionKind, Decision};
    let mut c = Cluster::start(Spec::default()).await;
    // The primary is gone, as an operator forcing a promotion asserts.
    c.nodes[0].proc.kill();
    let complete = || kpb::Confirmation {
        kind: kpb::ConfirmationKind::Enhanced as i32,
        acknowledged_invariants: vec!["P6-A1".into(), "P6-A1a".into()],
        accept_responsibility: true,
    };
    let cases = [
        ("kind standard", kpb::Confirmation { kind: kpb::ConfirmationKind::Standard as i32, ..complete() }),
        ("P6-A1a not acknowledged", kpb::Confirmation { acknowledged_invariants: vec!["P6-A1".into()], ..complete() }),
        ("responsibility not accepted", kpb::Confirmation { accept_responsibility: false, ..complete() }),
    ];
    let authority = |s: kpb::NodeSnapshot| {
        let a = s.authority.unwrap();
        (a.role, a.epoch, a.highest_granted_epoch)
    };
    let ledgers_before = [c.ledger(1).len(), c.ledger(2).len()];
    let n2_before = authority(c.observe(1).await.unwrap());
    let n3_before = authority(c.observe(2).await.unwrap());
    assert_eq!(n2_before.0, kpb::Role::Replica as i32);
    for (n, (what, confirmation)) in cases.into_iter().enumerate() {
        let seq = control_seq(&c, 1).await;
        let k = key("force-missing");
        let mut req = common::exec_req(&k, ActionKind::Promote, "n2", true, seq, "op");
        req.confirmation = Some(confirmation);
        let r = c.kernel(1).execute(common::with_plan_epoch(&c, req).await).await.unwrap().into_inner();
        let rec = r.record.clone().unwrap_or_else(|| panic!("{what}: a recorded decision, got {r:?}"));
        assert_eq!(rec.decision, kpb::Decision::Rejected as i32, "{what}: must not execute: {rec:?}");
        let rej = rec.rejection.unwrap();
        assert_eq!(rej.code, "AERO_FORCE_REQUIRES_ENHANCED_CONFIRMATION", "{what}: {rej:?}");
        assert_eq!(rej.invariants, vec!["P6-A1a".to_string(), "P7-A2".to_string()], "{what}");
        // The only change is the recorded rejection: one ledger record, one sequence step.
        assert_eq!(r.control_seq_after, seq + 1, "{what}");
        let d = common::decided(&c.ledger(1)).into_iter().find(|d| d.idempotency_key == k).unwrap();
        assert!(matches!(d.decision, Decision::Rejected { .. }), "{what}: {d:?}");
        assert_eq!(c.ledger(1).len(), ledgers_before[0] + n + 1, "{what}: n2's ledger gained only the rejection");
        assert_eq!(c.ledger(2).len(), ledgers_before[1], "{what}: n3's ledger is untouched (no grant was asked)");
        assert_eq!(authority(c.observe(1).await.unwrap()), n2_before, "{what}: n2's authority is unchanged");
        assert_eq!(authority(c.observe(2).await.unwrap()), n3_before, "{what}: n3's authority is unchanged");
    }
    // The control: the complete enhanced confirmation promotes n2.
    let seq = control_seq(&c, 1).await;
    let mut req = common::exec_req(&key("force-complete"), ActionKind::Promote, "n2", true, seq, "op");
    req.confirmation = Some(complete());
    let r = c.kernel(1).execute(common::with_plan_epoch(&c, req).await).await.unwrap().into_inner();
    assert_eq!(common::verdict(&r), Ok(()), "{r:?}");
    c.wait_role(1, kpb::Role::Primary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_f2_a_control_plane_restart_invalidates_every_pending_action() {
    let mut c = Cluster::start(Spec::default()).await;
    let mut actor = c.actor(0);
    let p1 = request(&mut actor, cpb::Command::RequestDemotion, "n1", &key("a")).await.unwrap();
    let p2 = request(&mut actor, cpb::Command::RunDiagnostics, "n2", &key("b")).await.unwrap();
    let baseline = execute_calls(&c).await;
    c.restart_control(0, &[]).await;
    let mut actor = c.actor(0);
    for p in [&p1, &p2] {
        assert_refused(&actor.confirm_action(confirm_req(p)).await.unwrap_err(), "PHASE7_CONFIRMATION_UNKNOWN");
    }
    assert_eq!(execute_calls(&c).await, baseline);
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_f3_same_key_again_after_success_is_replayed_and_the_kernel_executed_once() {
    let c = Cluster::start(Spec::default()).await;
    let mut actor = c.actor(0);
    let k = key("replay");
    let r = request_and_confirm(&mut actor, cpb::Command::RequestDemotion, "n1", &k).await.unwrap();
    assert_eq!(r.outcome, cpb::ActionOutcome::Executed as i32);
    let again = actor
        .request_action(cpb::RequestActionRequest {
            command: cpb::Command::RequestDemotion as i32,
            target_node: "n1".into(),
            idempotency_key: k.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    match again.response {
        Some(cpb::request_action_response::Response::Replayed(rp)) => {
            assert_eq!(rp.node_id, "n1");
            assert_eq!(rp.record.unwrap().encode_to_vec(), r.record.unwrap().encode_to_vec(), "the recorded outcome");
        }
        other => panic!("expected replayed, got {other:?}"),
    }
    assert_eq!(decided_keys(&c, 0, &k), 1);
    // Same key, other target: rejected with the kernel's code, verbatim.
    let s = actor
        .request_action(cpb::RequestActionRequest {
            command: cpb::Command::RunDiagnostics as i32,
            target_node: "n2".into(),
            idempotency_key: k.clone(),
        })
        .await
        .unwrap_err();
    let w = wire(&s);
    assert_eq!(w.code, "AERO_IDEMPOTENCY_KEY_REUSED");
    assert_eq!(w.error_domain, ErrorDomain::KernelRejection);
    assert_eq!(w.status, Code::FailedPrecondition);
    assert_eq!(decided_keys(&c, 1, &k), 0, "nothing ran on n2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_d2_a_kernel_change_between_explain_and_confirm_is_stale_sequence_verbatim() {
    let c = Cluster::start(Spec::default()).await;
    let mut actor = c.actor(0);
    let p = request(&mut actor, cpb::Command::RunDiagnostics, "n2", &key("stale")).await.unwrap();
    // Something else changes n2's ledger in between.
    request_and_confirm(&mut actor, cpb::Command::RunDiagnostics, "n2", &key("other")).await.unwrap();
    let s = actor.confirm_action(confirm_req(&p)).await.unwrap_err();
    let w = wire(&s);
    assert_eq!(w.code, "AERO_STALE_SEQUENCE");
    assert_eq!(w.status, Code::Aborted);
    assert_eq!(w.outcome, Outcome::NotExecuted);
    assert_eq!(w.error_domain, ErrorDomain::KernelRejection);
    let current = control_seq(&c, 1).await - 1;
    assert_eq!(w.extra_value("current_control_seq"), Some(current.to_string().as_str()));
    // The message is the kernel's, word for word.
    let d = common::decided(&c.ledger(1)).into_iter().find(|d| d.idempotency_key == p.idempotency_key).unwrap();
    let aerodb::kernel::records::Decision::Rejected { rejection } = d.decision else { panic!() };
    assert_eq!(w.message, rejection.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_f3_two_control_planes_confirming_one_key_concurrently_execute_it_once_50_rounds() {
    let c = Cluster::start(Spec { control_planes: 2, ..Default::default() }).await;
    let mut a0 = c.actor(0);
    let mut a1 = c.actor(1);
    for round in 0..50 {
        let k = key(&format!("dup{round}"));
        let p0 = request(&mut a0, cpb::Command::RunDiagnostics, "n2", &k).await.unwrap();
        let p1 = request(&mut a1, cpb::Command::RunDiagnostics, "n2", &k).await.unwrap();
        let (r0, r1) = tokio::join!(confirm_pending(&mut a0, &p0), confirm_pending(&mut a1, &p1));
        let executed = [&r0, &r1]
            .iter()
            .filter(|r| matches!(r, Ok(x) if x.outcome == cpb::ActionOutcome::Executed as i32))
            .count();
        assert_eq!(executed, 1, "round {round}: {r0:?} {r1:?}");
        for r in [&r0, &r1] {
            match r {
                Ok(x) => assert!(
                    x.outcome == cpb::ActionOutcome::Executed as i32
                        || x.outcome == cpb::ActionOutcome::Replayed as i32
                ),
                Err(s) => {
                    let code = wire(s).code;
                    assert!(
                        code == "AERO_IDEMPOTENCY_IN_FLIGHT" || code == "AERO_STALE_SEQUENCE",
                        "round {round}: {code}"
                    );
                }
            }
        }
        assert_eq!(decided_keys(&c, 1, &k), 1, "round {round}: one decision for the key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_d1_p7_d2_same_request_and_state_give_byte_identical_explanations_and_errors() {
    let c = Cluster::start(Spec::default()).await;
    let mut actor = c.actor(0);
    let a = request(&mut actor, cpb::Command::RequestPromotion, "n3", &key("x")).await.unwrap();
    let b = request(&mut actor, cpb::Command::RequestPromotion, "n3", &key("y")).await.unwrap();
    assert_eq!(a.explanation.as_ref().unwrap().encode_to_vec(), b.explanation.as_ref().unwrap().encode_to_vec());
    assert_eq!(a.plan_digest, b.plan_digest);
    assert_ne!(a.confirmation_id, b.confirmation_id, "ids are correlation fields, outside the explanation");
    let bad = || cpb::RequestActionRequest { command: 2, target_node: "n9".into(), idempotency_key: "k".into() };
    let e1 = actor.request_action(bad()).await.unwrap_err();
    let e2 = actor.request_action(bad()).await.unwrap_err();
    assert_eq!((e1.code(), e1.message(), e1.details()), (e2.code(), e2.message(), e2.details()));
    assert_eq!(wire(&e1).field_errors[0].field, "target_node");
    // Same kernel rejection twice: identical.
    let r1 = request_and_confirm(&mut actor, cpb::Command::RequestPromotion, "n3", &key("r1")).await.unwrap_err();
    let r2 = request_and_confirm(&mut actor, cpb::Command::RequestPromotion, "n3", &key("r2")).await.unwrap_err();
    assert_eq!(wire(&r1).code, "AERO_PROMOTION_PRIMARY_ACTIVE");
    assert_eq!((r1.message(), wire(&r1).invariants), (r2.message(), wire(&r2).invariants));
}

/// The audit trail of a scripted session, compared as a whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_o3_a_scripted_session_leaves_exactly_the_expected_audit_records_and_the_chain_verifies() {
    let c = Cluster::start(Spec::default()).await;
    let skip = c.audit_records(0).len();
    let mut observer_as_actor = cpb::actor_client::ActorClient::new(c.pki.channel(Role::Observer, &c.controls[0].addr));
    let mut actor = c.actor(0);
    // 1. A denial.
    observer_as_actor
        .request_action(cpb::RequestActionRequest { command: 3, target_node: "n1".into(), idempotency_key: "d".into() })
        .await
        .unwrap_err();
    // 2. A declined action.
    let p = request(&mut actor, cpb::Command::RequestDemotion, "n1", "k-declined").await.unwrap();
    actor.decline_action(cpb::DeclineActionRequest { confirmation_id: p.confirmation_id }).await.unwrap();
    // 3. An executed demotion and promotion.
    request_and_confirm(&mut actor, cpb::Command::RequestDemotion, "n1", "k-demote").await.unwrap();
    wait_for("n2 has the Fence", WAIT, || async { c.observe(1).await?.promotion?.current_epoch_fenced.then_some(()) })
        .await;
    request_and_confirm(&mut actor, cpb::Command::RequestPromotion, "n2", "k-promote").await.unwrap();
    // 4. A kernel rejection.
    c.wait_role(1, kpb::Role::Primary).await;
    request_and_confirm(&mut actor, cpb::Command::RequestPromotion, "n3", "k-rejected").await.unwrap_err();

    let got: Vec<(String, String, String, String, String)> = c
        .audit_records(0)
        .into_iter()
        .skip(skip)
        .filter(|b| b.draft.stage != Stage::Read)
        .map(|b| {
            let who = b.draft.identity.map(|i| format!("{}/{}", i.role, i.name)).unwrap_or_default();
            (
                b.draft.stage.as_str().to_string(),
                b.draft.command,
                who,
                b.draft.outcome,
                b.draft.error.map(|e| e.code).unwrap_or_default(),
            )
        })
        .collect();
    let row = |s: &str, c: &str, w: &str, o: &str, e: &str| {
        (s.to_string(), c.to_string(), w.to_string(), o.to_string(), e.to_string())
    };
    let actor_id = "actor/dev-actor";
    let expected = vec![
        row(
            "denied",
            "/aerodb.control.v1.Actor/RequestAction",
            "observer/dev-observer",
            "NOT_EXECUTED",
            "PHASE7_INSUFFICIENT_AUTHORITY",
        ),
        row("requested", "request_demotion", actor_id, "", ""),
        row("confirmation_requested", "request_demotion", actor_id, "", ""),
        row("declined", "request_demotion", actor_id, "NOT_EXECUTED", ""),
        row("requested", "request_demotion", actor_id, "", ""),
        row("confirmation_requested", "request_demotion", actor_id, "", ""),
        row("confirmed", "request_demotion", actor_id, "", ""),
        row("executed", "request_demotion", actor_id, "EXECUTED", ""),
        row("requested", "request_promotion", actor_id, "", ""),
        row("confirmation_requested", "request_promotion", actor_id, "", ""),
        row("confirmed", "request_promotion", actor_id, "", ""),
        row("executed", "request_promotion", actor_id, "EXECUTED", ""),
        row("requested", "request_promotion", actor_id, "", ""),
        row("confirmation_requested", "request_promotion", actor_id, "", ""),
        row("confirmed", "request_promotion", actor_id, "", ""),
        row("rejected", "request_promotion", actor_id, "NOT_EXECUTED", "AERO_PROMOTION_PRIMARY_ACTIVE"),
    ];
    assert_eq!(got, expected);
    let report = aerodb::audit::verify::verify_dir(&c.controls[0].cfg.audit_dir, None);
    assert!(report.ok, "{:?}", report.problem);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_o3_with_the_audit_disk_full_mutations_are_refused_and_inspections_go_on() {
    let Some((c, fs)) = Cluster::start_with_audit_on_tmpfs("2m").await else { return };
    let baseline = execute_calls(&c).await;
    let mut actor = c.actor(0);
    let pending = request(&mut actor, cpb::Command::RequestDemotion, "n1", &key("before")).await.unwrap();
    let filler = common::fill(&fs.path);
    // "Full" still leaves the tail of the audit file's last page: reads (recorded best effort)
    // use it up until the writer itself reports that it cannot write.
    let mut observer = c.observer(0);
    wait_for("the audit writer reports the full disk", WAIT, || {
        let mut o = observer.clone();
        let log = c.controls[0].proc.log_text();
        async move {
            if log.contains("audit log cannot be written") {
                return Some(());
            }
            o.get_cluster_state(cpb::GetClusterStateRequest {}).await.expect("reads go on");
            None
        }
    })
    .await;
    // A confirmation whose `confirmed` record cannot be made durable is refused before dispatch.
    let s = actor.confirm_action(confirm_req(&pending)).await.unwrap_err();
    assert_refused(&s, "PHASE7_AUDIT_UNAVAILABLE");
    // A new request cannot even start.
    let s = request(&mut actor, cpb::Command::RequestDemotion, "n1", &key("during")).await.unwrap_err();
    assert_refused(&s, "PHASE7_AUDIT_UNAVAILABLE");
    assert_eq!(execute_calls(&c).await, baseline, "no kernel call");
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary), "the kernel is unchanged");
    // Inspections still answer.
    for _ in 0..3 {
        observer.get_cluster_state(cpb::GetClusterStateRequest {}).await.expect("reads go on");
    }
    // Writable again: an audit_gap record states the window and what went unrecorded.
    std::fs::remove_file(&filler).unwrap();
    let gap = wait_for("an audit_gap record is written", WAIT, || async {
        c.audit_records(0).into_iter().find(|b| b.draft.stage == Stage::AuditGap)
    })
    .await;
    assert!(
        gap.draft.detail.get("unrecorded_read").is_some_and(|n| n.parse::<u64>().unwrap() >= 3),
        "{:?}",
        gap.draft.detail
    );
    assert!(
        gap.draft.detail.contains_key("window_start_unix_ms") && gap.draft.detail.contains_key("window_end_unix_ms")
    );
    assert!(aerodb::audit::verify::verify_dir(&c.controls[0].cfg.audit_dir, None).ok);
    request_and_confirm(&mut actor, cpb::Command::RequestDemotion, "n1", &key("after")).await.unwrap();
    let _ = Duration::ZERO;
}

/// Requirements §5 ("references to kernel state, read fresh"): whole-cluster reads share
/// observation rounds under load, yet a view never predates its request. After each
/// acknowledged write, a GetClusterState issued among 16 concurrent readers shows the primary's
/// WAL at or past that write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v9_shared_observation_rounds_never_serve_a_view_older_than_the_request() {
    let c = Cluster::start(Spec::default()).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..16)
        .map(|_| {
            let mut o = c.observer(0);
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 100_000 {
                    let _ = o.get_cluster_state(cpb::GetClusterStateRequest {}).await;
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut data = c.data(0);
    let mut observer = c.observer(0);
    for i in 0..60u32 {
        let put = data
            .put(kpb::PutRequest { key: format!("fresh-{i}").into_bytes(), value: vec![1] })
            .await
            .unwrap()
            .into_inner();
        let state = observer.get_cluster_state(cpb::GetClusterStateRequest {}).await.unwrap().into_inner();
        let Some(cpb::node_entry::State::Snapshot(s)) = &state.nodes[0].state else { panic!("n1 unobserved") };
        let seen = s.replication.as_ref().unwrap().last_index;
        assert!(
            seen >= put.index,
            "round {i}: the view shows WAL index {seen}, older than the acknowledged write {}",
            put.index
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: u32 = futures::future::join_all(readers).await.into_iter().map(Result::unwrap).sum();
    assert!(reads > 60, "the readers ran concurrently ({reads} reads)");
}
