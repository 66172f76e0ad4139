//! Issue 8: the seed document `phase7-failure-model.txt`, clause by clause, against real
//! processes. Each test asserts: the action executed exactly once or not at all as the clause
//! says; the kernel ledger and the audit trail agree; no call reached a kernel that the clause
//! forbids (counted at the kernel boundary); the client was told the truth.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::time::Duration;

use aerodb::audit::record::Stage;
use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use aerodb::tls::identity::Role;
use aerodb::wire::{ErrorDomain, Outcome, WireError};
#[cfg(feature = "failpoints")]
use common::control_seq;
use common::proxy::{Cut, Proxy};
use common::{Cluster, Spec, WAIT, confirm_pending, execute_calls, key, request, wait_for, wire};

fn decided(c: &Cluster, node: usize, key: &str) -> Vec<aerodb::kernel::records::Decided> {
    common::decided(&c.ledger(node)).into_iter().filter(|d| d.idempotency_key == key).collect()
}

fn stages_for(c: &Cluster, cp: usize, key: &str) -> Vec<Stage> {
    c.audit_records(cp).into_iter().filter(|b| b.draft.idempotency_key == key).map(|b| b.draft.stage).collect()
}

async fn outcome(c: &Cluster, key: &str) -> cpb::OutcomeView {
    c.observer(0).get_outcome(cpb::GetOutcomeRequest { idempotency_key: key.into() }).await.unwrap().into_inner()
}

fn is_executed(v: &cpb::OutcomeView) -> bool {
    v.status == cpb::KeyStatus::Decided as i32 && v.record.as_ref().unwrap().decision == kpb::Decision::Executed as i32
}

/// aerodbctl with fail points armed (the client side of the failure model).
#[cfg(feature = "failpoints")]
fn ctl_with_failpoint(profile: &std::path::Path, point: &str, args: &[&str], input: &str) -> (Option<i32>, String) {
    let mut all = vec![std::ffi::OsStr::new("--profile"), profile.as_os_str()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    let fp = format!("{point}=abort");
    let out = common::ctl::run_ctl(&all, &[("AERODB_FAILPOINTS", &fp)], input);
    (Some(out.code).filter(|c| *c >= 0), out.stdout)
}

#[cfg(feature = "failpoints")]
fn printed_key(stdout: &str) -> String {
    stdout
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("idempotency key: ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// §4.1 Crash or termination before request submission: no request reaches the kernel, no state
/// change, no audit record of execution.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_4_1_client_crash_before_submission_reaches_nothing() {
    let c = Cluster::start(Spec::default()).await;
    let profile = c.pki.profile(Role::Actor, &c.controls[0].addr);
    let before = (execute_calls(&c).await, control_seq(&c, 0).await);
    let (code, out) = tokio::task::spawn_blocking(move || {
        ctl_with_failpoint(&profile, "ctl.before_submit", &["demote", "n1"], "n1\n")
    })
    .await
    .unwrap();
    assert_eq!(code, None, "the client died (abort)");
    let k = printed_key(&out);
    assert_eq!((execute_calls(&c).await, control_seq(&c, 0).await), before);
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary));
    assert!(stages_for(&c, 0, &k).is_empty(), "no request arrived, nothing recorded for it");
    assert_eq!(outcome(&c, &k).await.status, cpb::KeyStatus::UnknownToAll as i32);
}

/// §4.2 Crash after request submission, before confirmation: not executed, no kernel action.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_4_2_client_crash_after_request_before_confirmation_executes_nothing() {
    let mut c = Cluster::start(Spec::default()).await;
    let profile = c.pki.profile(Role::Actor, &c.controls[0].addr);
    let before = (execute_calls(&c).await, control_seq(&c, 0).await);
    let (code, out) = tokio::task::spawn_blocking(move || {
        ctl_with_failpoint(&profile, "ctl.after_request", &["demote", "n1"], "n1\n")
    })
    .await
    .unwrap();
    assert_eq!(code, None);
    let k = printed_key(&out);
    assert_eq!(stages_for(&c, 0, &k), vec![Stage::Requested, Stage::ConfirmationRequested]);
    // The action is discarded: a restart forgets the pending action; nothing ever runs it.
    c.restart_control(0, &[]).await;
    assert_eq!((execute_calls(&c).await, control_seq(&c, 0).await), before);
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary));
    assert_eq!(outcome(&c, &k).await.status, cpb::KeyStatus::UnknownToAll as i32);
}

/// §4.3 Client crash after confirmation, before the response: the outcome is determined from
/// kernel state; the control plane does not guess.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_4_3_client_lost_after_confirmation_the_kernel_state_decides() {
    let c = Cluster::start(Spec::default()).await;
    let proxy = Proxy::start(c.controls[0].addr.clone()).await;
    let mut actor = cpb::actor_client::ActorClient::new(c.pki.channel(Role::Actor, &proxy.addr));
    for cut in [Cut::AfterRequestBeforeAnswer, Cut::MidAnswer] {
        let k = key("client-lost");
        let p = request(&mut actor, cpb::Command::RunDiagnostics, "n2", &k).await.unwrap();
        let calls = execute_calls(&c).await;
        proxy.arm(cut);
        let r = confirm_pending(&mut actor, &p).await;
        let s = r.expect_err("the answer never arrived");
        assert!(WireError::from_status(&s).is_none(), "{cut:?}: a transport failure, not an answer: {s:?}");
        // The truth is the kernel's: executed once, and the trail agrees.
        let view = outcome(&c, &k).await;
        assert!(is_executed(&view), "{cut:?}: {view:?}");
        assert_eq!(decided(&c, 1, &k).len(), 1);
        assert_eq!(execute_calls(&c).await[1], calls[1] + 1, "{cut:?}: one call, no retry");
        wait_for("the outcome is recorded", WAIT, || async {
            stages_for(&c, 0, &k).contains(&Stage::Executed).then_some(())
        })
        .await;
        // Re-issuing the same key is answered from the ledger, never executed again.
        let again = actor
            .request_action(cpb::RequestActionRequest {
                command: 1,
                target_node: "n2".into(),
                idempotency_key: k.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(matches!(again.response, Some(cpb::request_action_response::Response::Replayed(_))));
        assert_eq!(decided(&c, 1, &k).len(), 1);
    }
}

/// §5.1 Control-plane crash before dispatch: no kernel request, no state change.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_5_1_control_plane_crash_before_dispatch_executes_nothing() {
    let mut c = Cluster::start(Spec::default()).await;
    for point in ["control.after_confirmed_record", "control.before_dispatch"] {
        c.restart_control(0, &[("AERODB_FAILPOINTS", &format!("{point}=abort"))]).await;
        let mut actor = c.actor(0);
        let k = key("cp-before");
        let p = request(&mut actor, cpb::Command::RequestDemotion, "n1", &k).await.unwrap();
        let before = (execute_calls(&c).await, control_seq(&c, 0).await);
        let s = confirm_pending(&mut actor, &p).await.unwrap_err();
        assert!(
            WireError::from_status(&s).is_none(),
            "{point}: the client is told nothing it could mistake for an answer"
        );
        c.restart_control(0, &[]).await;
        assert_eq!((execute_calls(&c).await, control_seq(&c, 0).await), before, "{point}: no kernel request");
        assert_eq!(c.role(0).await, Some(kpb::Role::Primary));
        assert_eq!(outcome(&c, &k).await.status, cpb::KeyStatus::UnknownToAll as i32);
        assert_eq!(stages_for(&c, 0, &k), vec![Stage::Requested, Stage::ConfirmationRequested, Stage::Confirmed]);
    }
}

/// §5.2 Control-plane crash while dispatching: treated as not executed unless kernel durability
/// proves otherwise; no assumptions, kernel state is authoritative.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_5_2_control_plane_crash_during_dispatch_kernel_state_is_authoritative() {
    let mut c = Cluster::start(Spec::default()).await;
    // n2 takes a while between receiving Execute and deciding: the control plane dies meanwhile.
    c.restart_node(1, &[("AERODB_FAILPOINTS", "kernel.execute.start=sleep(1500)")]).await;
    let mut actor = c.actor(0);
    let k = key("cp-during");
    let p = request(&mut actor, cpb::Command::RunDiagnostics, "n2", &k).await.unwrap();
    let calls = execute_calls(&c).await;
    let confirm = tokio::spawn({
        let p = p.clone();
        let mut a = actor.clone();
        async move { confirm_pending(&mut a, &p).await }
    });
    wait_for("the Execute reached n2", WAIT, || async { (execute_calls(&c).await[1] > calls[1]).then_some(()) }).await;
    c.controls[0].proc.kill();
    assert!(confirm.await.unwrap().is_err(), "the client got no answer");
    // The kernel finishes on its own; only its ledger says what happened.
    let view = wait_for("n2 decided", WAIT, || async {
        c.kernel(1)
            .get_outcome(kpb::GetOutcomeRequest { idempotency_key: k.clone(), ..Default::default() })
            .await
            .ok()
            .map(|r| r.into_inner())
            .filter(|r| r.found)
    })
    .await;
    assert_eq!(view.record.unwrap().decision, kpb::Decision::Executed as i32);
    c.restart_control(0, &[]).await;
    assert!(is_executed(&outcome(&c, &k).await));
    assert_eq!(execute_calls(&c).await[1], calls[1] + 1, "exactly one call reached n2; nothing after the restart");
    let stages = stages_for(&c, 0, &k);
    assert_eq!(stages, vec![Stage::Requested, Stage::ConfirmationRequested, Stage::Confirmed], "nothing synthesized");
}

/// §5.3 Crash after kernel acknowledgement: the action is executed; recovery relies on kernel
/// state only; no replay.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_5_3_control_plane_crash_after_kernel_ack_is_executed_and_never_replayed() {
    let mut c = Cluster::start(Spec::default()).await;
    c.restart_control(0, &[("AERODB_FAILPOINTS", "control.after_kernel_answer=abort")]).await;
    let mut actor = c.actor(0);
    let k = key("cp-after");
    let p = request(&mut actor, cpb::Command::RequestDemotion, "n1", &k).await.unwrap();
    let calls = execute_calls(&c).await;
    confirm_pending(&mut actor, &p).await.unwrap_err();
    c.restart_control(0, &[]).await;
    assert!(is_executed(&outcome(&c, &k).await));
    assert_eq!(c.role(0).await, Some(kpb::Role::Demoted));
    assert_eq!(execute_calls(&c).await[0], calls[0] + 1, "no replay after the restart");
    assert_eq!(decided(&c, 0, &k).len(), 1);
}

/// §6.1 Request transmission failure: the action must not execute. The control plane cannot
/// know whether the request arrived, so it reports UNKNOWN; the kernel's ledger shows it did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_6_1_request_transmission_failure_never_executes_and_is_reported_unknown() {
    let c = Cluster::start(Spec {
        control_proxied: true,
        kernel_calls: aerodb::control::config::KernelCalls { read_timeout_ms: 2000, execute_timeout_ms: 3000 },
        ..Default::default()
    })
    .await;
    let mut actor = c.actor(0);
    for cut in [Cut::BeforeRequest, Cut::MidRequest, Cut::BlackHole] {
        let k = key("tx");
        let p = request(&mut actor, cpb::Command::RunDiagnostics, "n2", &k).await.unwrap();
        let calls = execute_calls(&c).await;
        c.control_proxies[1].arm(cut);
        let s = confirm_pending(&mut actor, &p).await.unwrap_err();
        c.control_proxies[1].arm(Cut::None);
        c.control_proxies[1].cut_all();
        let w = wire(&s);
        assert_eq!(
            (w.code.as_str(), w.error_domain, w.outcome),
            ("PHASE7_OUTCOME_UNKNOWN", ErrorDomain::Transport, Outcome::Unknown),
            "{cut:?}"
        );
        assert_eq!(w.extra_value("idempotency_key"), Some(k.as_str()));
        assert_eq!(execute_calls(&c).await, calls, "{cut:?}: nothing reached the kernel (and no hidden retry)");
        assert!(decided(&c, 1, &k).is_empty(), "{cut:?}");
        assert_eq!(outcome(&c, &k).await.status, cpb::KeyStatus::UnknownToAll as i32);
        let st = stages_for(&c, 0, &k);
        assert_eq!(st.last(), Some(&Stage::Failed), "{cut:?}: the trail records an unknown outcome");
    }
}

/// §6.1 (answer lost on the way back) and §7.2: the kernel executed; the control plane said
/// UNKNOWN, never EXECUTED or NOT_EXECUTED; the ledger tells.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_6_1_answer_lost_between_kernel_and_control_plane_is_unknown_and_the_ledger_decides() {
    let c = Cluster::start(Spec { control_proxied: true, ..Default::default() }).await;
    let mut actor = c.actor(0);
    for cut in [Cut::AfterRequestBeforeAnswer, Cut::MidAnswer] {
        let k = key("rx");
        let p = request(&mut actor, cpb::Command::RunDiagnostics, "n2", &k).await.unwrap();
        let calls = execute_calls(&c).await;
        c.control_proxies[1].arm(cut);
        let s = confirm_pending(&mut actor, &p).await.unwrap_err();
        let w = wire(&s);
        assert_eq!((w.code.as_str(), w.outcome), ("PHASE7_OUTCOME_UNKNOWN", Outcome::Unknown), "{cut:?}");
        assert_eq!(execute_calls(&c).await[1], calls[1] + 1, "{cut:?}: one call, no retry");
        assert!(is_executed(&outcome(&c, &k).await), "{cut:?}");
        assert_eq!(stages_for(&c, 0, &k).last(), Some(&Stage::Failed));
    }
}

/// §6.2 Duplicate requests: detected where possible, otherwise rejected deterministically by the
/// kernel; never silently executed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_6_2_duplicates_are_detected_or_rejected_never_executed_twice() {
    let c = Cluster::start(Spec { control_planes: 2, ..Default::default() }).await;
    let (mut a0, mut a1) = (c.actor(0), c.actor(1));
    let k = key("dup");
    // Detected by the control plane: the same key again is answered from the ledger.
    common::request_and_confirm(&mut a0, cpb::Command::RunDiagnostics, "n2", &k).await.unwrap();
    for a in [&mut a0, &mut a1] {
        let r = a
            .request_action(cpb::RequestActionRequest {
                command: 1,
                target_node: "n2".into(),
                idempotency_key: k.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(matches!(r.response, Some(cpb::request_action_response::Response::Replayed(_))));
    }
    // Rejected by the kernel: two instances hold pending actions for one key; the second
    // dispatch finds the key decided.
    let k2 = key("dup2");
    let p0 = request(&mut a0, cpb::Command::RunDiagnostics, "n3", &k2).await.unwrap();
    let p1 = request(&mut a1, cpb::Command::RunDiagnostics, "n3", &k2).await.unwrap();
    let r0 = confirm_pending(&mut a0, &p0).await.unwrap();
    assert_eq!(r0.outcome, cpb::ActionOutcome::Executed as i32);
    let r1 = confirm_pending(&mut a1, &p1).await.unwrap();
    assert_eq!(r1.outcome, cpb::ActionOutcome::Replayed as i32, "the kernel answers the duplicate from its ledger");
    assert_eq!(decided(&c, 2, &k2).len(), 1);
    // A retried Actor call is refused outright.
    let p = request(&mut a0, cpb::Command::RunDiagnostics, "n3", &key("r")).await.unwrap();
    let mut req = tonic::Request::new(cpb::ConfirmActionRequest {
        confirmation_id: p.confirmation_id,
        plan_digest: p.plan_digest,
        typed_target: "n3".into(),
        ..Default::default()
    });
    req.metadata_mut().insert("grpc-previous-rpc-attempts", "2".parse().unwrap());
    assert_eq!(wire(&a0.confirm_action(req).await.unwrap_err()).code, "PHASE7_RETRY_REJECTED");
}

/// §7.1 Kernel rejection: surfaced verbatim; not reinterpreted; not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_7_1_kernel_rejection_is_surfaced_verbatim_and_never_retried() {
    let c = Cluster::start(Spec::default()).await;
    let mut actor = c.actor(0);
    let k = key("rej");
    let p = request(&mut actor, cpb::Command::RequestPromotion, "n2", &k).await.unwrap();
    let calls = execute_calls(&c).await;
    let s = confirm_pending(&mut actor, &p).await.unwrap_err();
    let w = wire(&s);
    let d = &decided(&c, 1, &k)[0];
    let aerodb::kernel::records::Decision::Rejected { rejection } = &d.decision else { panic!() };
    assert_eq!(w.code, rejection.code);
    assert_eq!(w.message, rejection.message, "verbatim");
    for i in &rejection.invariants {
        assert!(w.invariants.contains(i), "the kernel's invariants are cited");
    }
    assert_eq!((w.error_domain, w.outcome), (ErrorDomain::KernelRejection, Outcome::NotExecuted));
    assert_eq!(execute_calls(&c).await[1], calls[1] + 1, "exactly one call: never retried");
    let audit = c.audit_records(0).into_iter().rev().find(|b| b.draft.idempotency_key == k).unwrap();
    assert_eq!(audit.draft.stage, Stage::Rejected);
    assert_eq!(audit.draft.error.unwrap().message, rejection.message);
}

/// §7.2 Kernel failure during handling: treated as not executed unless kernel durability proves
/// otherwise; the operator investigates kernel state explicitly.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_7_2_kernel_crash_during_handling_is_unknown_until_its_ledger_says() {
    let mut c = Cluster::start(Spec::default()).await;
    for (point, executed) in [("kernel.before_commit", false), ("kernel.after_commit", true)] {
        c.restart_node(1, &[("AERODB_FAILPOINTS", &format!("{point}=abort"))]).await;
        let mut actor = c.actor(0);
        let k = key("kcrash");
        let p = request(&mut actor, cpb::Command::RunDiagnostics, "n2", &k).await.unwrap();
        let s = confirm_pending(&mut actor, &p).await.unwrap_err();
        let w = wire(&s);
        assert_eq!((w.code.as_str(), w.outcome), ("PHASE7_OUTCOME_UNKNOWN", Outcome::Unknown), "{point}");
        c.restart_node(1, &[]).await;
        assert_eq!(execute_calls(&c).await[1], 0, "{point}: the control plane sent nothing to the restarted kernel");
        let view = outcome(&c, &k).await;
        assert_eq!(is_executed(&view), executed, "{point}: {view:?}");
        assert_eq!(decided(&c, 1, &k).len(), usize::from(executed));
    }
}

/// §8.1 Invalid requests: rejected with an explanation; no auto-correction; no kernel call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_8_1_invalid_requests_are_rejected_with_the_field_named_and_reach_no_kernel() {
    let c = Cluster::start(Spec::default()).await;
    let mut actor = c.actor(0);
    let calls = execute_calls(&c).await;
    let cases = [
        (cpb::RequestActionRequest { command: 0, target_node: "n1".into(), idempotency_key: "k1".into() }, "command"),
        (cpb::RequestActionRequest { command: 42, target_node: "n1".into(), idempotency_key: "k1".into() }, "command"),
        (
            cpb::RequestActionRequest { command: 3, target_node: "N1".into(), idempotency_key: "k1".into() },
            "target_node",
        ),
        (
            cpb::RequestActionRequest { command: 3, target_node: "n1".into(), idempotency_key: "".into() },
            "idempotency_key",
        ),
        (
            cpb::RequestActionRequest { command: 3, target_node: "n1".into(), idempotency_key: "no spaces".into() },
            "idempotency_key",
        ),
    ];
    for (req, field) in cases {
        let s = actor.request_action(req).await.unwrap_err();
        let w = wire(&s);
        assert_eq!(
            (w.status, w.error_domain, w.outcome),
            (tonic::Code::InvalidArgument, ErrorDomain::OperatorInput, Outcome::NotExecuted)
        );
        assert_eq!(w.field_errors[0].field, field);
        assert!(!w.message.is_empty());
    }
    assert_eq!(execute_calls(&c).await, calls);
    let rejected = c.audit_records(0).into_iter().filter(|b| b.draft.stage == Stage::Rejected).count();
    assert_eq!(rejected, 5, "each rejection is on the record");
}

/// §8.2 Abandoned operations: no partial execution, no cleanup action triggered.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_8_2_abandoned_operations_execute_nothing_and_trigger_no_cleanup() {
    let mut c = Cluster::start(Spec::default()).await;
    let offset = c.root.path().join("clock");
    std::fs::write(&offset, "0").unwrap();
    c.restart_control(0, &[("AERODB_TEST_CLOCK_OFFSET_FILE", offset.to_str().unwrap())]).await;
    let mut actor = c.actor(0);
    let k = key("abandon");
    let p = request(&mut actor, cpb::Command::RequestDemotion, "n1", &k).await.unwrap();
    let seqs: Vec<u64> = futures::future::join_all((0..3).map(|i| control_seq(&c, i))).await;
    let calls = execute_calls(&c).await;
    let records = c.audit_records(0).len();
    // The operator walks away; time passes well beyond the window.
    std::fs::write(&offset, ((p.expires_after_seconds + 600) * 1000).to_string()).unwrap();
    // Observations go on; nothing acts.
    let mut observer = c.observer(0);
    for _ in 0..10 {
        observer.get_cluster_state(cpb::GetClusterStateRequest {}).await.unwrap();
    }
    assert_eq!(futures::future::join_all((0..3).map(|i| control_seq(&c, i))).await, seqs, "no ledger changed");
    assert_eq!(execute_calls(&c).await, calls, "no cleanup or follow-up call");
    let new: Vec<Stage> = c.audit_records(0).into_iter().skip(records).map(|b| b.draft.stage).collect();
    assert!(new.iter().all(|s| *s == Stage::Read), "only the reads were recorded: {new:?}");
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary));
}

/// §9 Failure visibility and audit: every failure is observable, logged and explainable, with
/// failure type, time, affected request and outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_9_every_failure_is_recorded_with_type_time_request_and_outcome() {
    let c = Cluster::start(Spec { control_proxied: true, ..Default::default() }).await;
    let mut actor = c.actor(0);
    // A transport failure, a kernel rejection, a validation failure.
    let k1 = key("t");
    let p = request(&mut actor, cpb::Command::RunDiagnostics, "n2", &k1).await.unwrap();
    c.control_proxies[1].arm(Cut::AfterRequestBeforeAnswer);
    confirm_pending(&mut actor, &p).await.unwrap_err();
    let k2 = key("k");
    common::request_and_confirm(&mut actor, cpb::Command::RequestPromotion, "n3", &k2).await.unwrap_err();
    let k3 = key("v");
    let p = request(&mut actor, cpb::Command::RequestDemotion, "n1", &k3).await.unwrap();
    let mut bad = cpb::ConfirmActionRequest {
        confirmation_id: p.confirmation_id,
        plan_digest: p.plan_digest,
        typed_target: "n9".into(),
        ..Default::default()
    };
    bad.accept_responsibility = false;
    actor.confirm_action(bad).await.unwrap_err();
    let records = c.audit_records(0);
    for (k, stage, domain, outcome) in [
        (&k1, Stage::Failed, "TRANSPORT", "UNKNOWN"),
        (&k2, Stage::Rejected, "KERNEL_REJECTION", "NOT_EXECUTED"),
        (&k3, Stage::Rejected, "VALIDATION", "NOT_EXECUTED"),
    ] {
        let b = records.iter().rev().find(|b| &b.draft.idempotency_key == k).unwrap();
        assert_eq!(b.draft.stage, stage, "{k}");
        let e = b.draft.error.as_ref().unwrap();
        assert_eq!(e.domain, domain, "failure type");
        assert!(!e.code.is_empty() && !e.message.is_empty() && !e.invariants.is_empty(), "explainable: {e:?}");
        assert_eq!(b.draft.outcome, outcome);
        assert!(b.time_unix_ms > 0 && b.clock_source == "system");
        assert!(b.draft.target.starts_with('n') && b.draft.identity.is_some(), "the affected request");
    }
    // And they are observable through the Auditor.
    let v = c.auditor(0).verify_audit(cpb::VerifyAuditRequest::default()).await.unwrap().into_inner();
    assert!(v.ok);
}

/// §10, §11: recovery is restart and resume observation only; no in-flight state recovered, no
/// partial execution completed, no retry, no rollback, roll-forward or reconciliation.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fm_10_11_recovery_restarts_and_observes_only() {
    let mut c = Cluster::start(Spec::default()).await;
    c.restart_control(0, &[("AERODB_FAILPOINTS", "control.after_dispatch=abort")]).await;
    let mut actor = c.actor(0);
    let pending_other = request(&mut actor, cpb::Command::RunDiagnostics, "n3", &key("other")).await.unwrap();
    let k = key("mid");
    let p = request(&mut actor, cpb::Command::RunDiagnostics, "n2", &k).await.unwrap();
    confirm_pending(&mut actor, &p).await.unwrap_err();
    let calls = execute_calls(&c).await;
    let seqs: Vec<u64> = futures::future::join_all((0..3).map(|i| control_seq(&c, i))).await;
    let at_crash = c.audit_records(0).len();
    c.restart_control(0, &[]).await;
    let mut actor = c.actor(0);
    // The pending action of another request was not recovered.
    assert_eq!(
        wire(&confirm_pending(&mut actor, &pending_other).await.unwrap_err()).code,
        "PHASE7_CONFIRMATION_UNKNOWN"
    );
    // No kernel call, no ledger change, no outcome record written after the fact.
    assert_eq!(execute_calls(&c).await, calls);
    assert_eq!(futures::future::join_all((0..3).map(|i| control_seq(&c, i))).await, seqs);
    let after: Vec<_> =
        c.audit_records(0).into_iter().skip(at_crash).filter(|b| b.draft.idempotency_key == k).collect();
    assert!(after.is_empty(), "nothing completed or reconciled: {after:?}");
    // Observation resumes and shows the kernel's truth.
    assert!(is_executed(&outcome(&c, &k).await));
}

/// Vision §3: no automatic failover, no automatic promotion, no background evaluators. The
/// primary dies and the system, observed continuously, does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_a1_p7_s1_no_automatic_failover_when_the_primary_dies() {
    let mut c = Cluster::start(Spec::default()).await;
    c.nodes[0].proc.kill();
    let calls = execute_calls(&c).await;
    let mut observer = c.observer(0);
    // 100 consecutive observations (each a full cluster view) see the same kernel state.
    let mut first: Option<Vec<(u64, u64, i32)>> = None;
    for _ in 0..100 {
        let s = observer.get_cluster_state(cpb::GetClusterStateRequest {}).await.unwrap().into_inner();
        assert!(
            matches!(s.nodes[0].state, Some(cpb::node_entry::State::Unreachable(_))),
            "the dead primary is shown, not hidden"
        );
        let now: Vec<(u64, u64, i32)> = s.observed.iter().map(|o| (o.control_seq, o.epoch, 0)).collect();
        assert!(s.primary_claims.is_empty(), "nobody claims the primary role");
        match &first {
            None => first = Some(now),
            Some(f) => assert_eq!(f, &now, "no ledger moved, no epoch started"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(execute_calls(&c).await, calls, "nothing was asked of any kernel");
    for i in 1..3 {
        assert_eq!(c.role(i).await, Some(kpb::Role::Replica));
    }
}
