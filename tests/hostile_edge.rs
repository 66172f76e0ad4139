//! Issue 12: a caller holding a valid certificate cannot stop the control plane, corrupt its
//! audit, or change anything with oversized, malformed or misdirected input. Every test asserts
//! the refusal **and** that the audit verifies, the control plane restarts, and kernel state is
//! unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::time::Duration;

use aerodb::audit::record::{Body, Stage};
use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use aerodb::tls::identity::Role;
use aerodb::wire::{ErrorDomain, Outcome, WireError};
use common::{Cluster, Spec, extra_identity, key, request, wire};
use tonic::Code;
use tower::ServiceExt;

/// Bytes a record may take when it stores an oversized value: the value's prefix, length and
/// hash, never the value.
const RECORD_BYTES_BOUND: usize = 16 * 1024;

/// The refusal of an oversized field: INVALID_ARGUMENT, OPERATOR_INPUT, NOT_EXECUTED, a
/// BadRequest naming `field`, and a message that echoes at most a bounded prefix.
fn assert_too_large(s: &tonic::Status, code: &str, field: &str) {
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    let w = wire(s);
    assert_eq!(w.code, code, "{s:?}");
    assert_eq!(w.error_domain, ErrorDomain::OperatorInput);
    assert_eq!(w.outcome, Outcome::NotExecuted);
    assert_eq!(w.field_errors.len(), 1, "{s:?}");
    assert_eq!(w.field_errors[0].field, field, "{s:?}");
    assert!(w.field_errors[0].description.starts_with("at most "), "{:?}", w.field_errors[0]);
    assert!(s.message().len() < 512, "the message echoes the input: {} bytes", s.message().len());
    assert!(s.details().len() < 1024, "the details echo the input: {} bytes", s.details().len());
}

fn big(n: usize) -> String {
    "x".repeat(n)
}

/// Control sequence and last WAL index of every node.
async fn kernel_state(c: &Cluster) -> Vec<(u64, u64)> {
    let mut v = Vec::new();
    for i in 0..c.nodes.len() {
        let s = c.observe(i).await.expect("observe");
        let o = s.observation.unwrap();
        v.push((o.control_seq, s.replication.map(|r| r.last_index).unwrap_or_default()));
    }
    v
}

fn verify_offline(c: &Cluster) {
    let out = std::process::Command::new(common::aerodbctl_bin())
        .args(["audit", "verify", c.controls[0].cfg.audit_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "audit verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The largest record body in the trail, in bytes.
fn largest_record(c: &Cluster) -> usize {
    let mut max = 0;
    aerodb::audit::verify::read_from(&c.controls[0].cfg.audit_dir, 1, |s| {
        max = max.max(s.body_json.len());
        true
    })
    .unwrap();
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_o3_every_rpc_with_maximal_and_over_maximal_fields_leaves_a_verifiable_audit_and_a_restartable_control_plane()
 {
    let mut c = Cluster::start(Spec::default()).await;
    let before = kernel_state(&c).await;
    let mut obs = c.observer(0);
    let mut actor = c.actor(0);
    let mut auditor = c.auditor(0);
    const F: &str = "PHASE7_FIELD_TOO_LARGE";
    const M: usize = 64 * 1024; // over every field limit, under the message limit (64 KiB)

    // Maximal fields are judged by their rules (an unknown node, an unknown key), never refused
    // for their size.
    let at_max = obs.get_node(cpb::GetNodeRequest { node_id: big(63) }).await.unwrap_err();
    assert_eq!(wire(&at_max).code, "PHASE7_UNKNOWN_NODE");
    let at_max = obs.get_outcome(cpb::GetOutcomeRequest { idempotency_key: big(128) }).await.unwrap();
    assert_eq!(at_max.into_inner().status, cpb::KeyStatus::UnknownToAll as i32);

    // Observer.
    for n in [64, M - 100, 600_000] {
        let field = if n > M { "(GetNode message)" } else { "node_id" };
        assert_too_large(&obs.get_node(cpb::GetNodeRequest { node_id: big(n) }).await.unwrap_err(), F, field);
    }
    assert_too_large(&obs.inspect_wal(cpb::InspectWalRequest { node_id: big(64) }).await.unwrap_err(), F, "node_id");
    assert_too_large(
        &obs.inspect_snapshots(cpb::InspectSnapshotsRequest { node_id: big(M - 100) }).await.unwrap_err(),
        F,
        "node_id",
    );
    assert_too_large(
        &obs.get_outcome(cpb::GetOutcomeRequest { idempotency_key: big(129) }).await.unwrap_err(),
        F,
        "idempotency_key",
    );
    // Actor.
    let req = |target: String, key: String| cpb::RequestActionRequest {
        command: cpb::Command::RequestPromotion as i32,
        target_node: target,
        idempotency_key: key,
    };
    assert_too_large(&actor.request_action(req(big(M - 100), "k".into())).await.unwrap_err(), F, "target_node");
    assert_too_large(&actor.request_action(req("n2".into(), big(M - 100))).await.unwrap_err(), F, "idempotency_key");
    assert_too_large(
        &actor.request_action(req("n2".into(), big(1_000_000))).await.unwrap_err(),
        F,
        "(RequestAction message)",
    );
    let confirm = |f: &dyn Fn(&mut cpb::ConfirmActionRequest)| {
        let mut r = cpb::ConfirmActionRequest { confirmation_id: "a".repeat(32), ..Default::default() };
        f(&mut r);
        r
    };
    for (r, field) in [
        (confirm(&|r| r.confirmation_id = big(33)), "confirmation_id"),
        (confirm(&|r| r.plan_digest = big(M - 100)), "plan_digest"),
        (confirm(&|r| r.typed_target = big(64)), "typed_target"),
        (confirm(&|r| r.acknowledged_invariants = vec!["P6-A1".into(); 17]), "acknowledged_invariants"),
        (confirm(&|r| r.acknowledged_invariants = vec![big(33)]), "acknowledged_invariants[0]"),
    ] {
        assert_too_large(&actor.confirm_action(r).await.unwrap_err(), F, field);
    }
    assert_too_large(
        &actor.decline_action(cpb::DeclineActionRequest { confirmation_id: big(M - 100) }).await.unwrap_err(),
        F,
        "confirmation_id",
    );
    // Auditor.
    for (r, field) in [
        (cpb::ReadAuditRequest { correlation_id: big(257), ..Default::default() }, "correlation_id"),
        (cpb::ReadAuditRequest { identity: big(M - 100), ..Default::default() }, "identity"),
        (cpb::ReadAuditRequest { command: big(257), ..Default::default() }, "command"),
        (cpb::ReadAuditRequest { stage: big(257), ..Default::default() }, "stage"),
        (cpb::ReadAuditRequest { limit: 1001, ..Default::default() }, "limit"),
    ] {
        assert_too_large(&auditor.read_audit(r).await.expect_err("refused"), F, field);
    }
    let by_key =
        cpb::ReconstructActionRequest { key: Some(cpb::reconstruct_action_request::Key::IdempotencyKey(big(M - 100))) };
    assert_too_large(&auditor.reconstruct_action(by_key).await.unwrap_err(), F, "idempotency_key");

    // Every refusal is on the record, bounded: a prefix, the length and the hash of the value.
    let records = c.audit_records(0);
    let refused: Vec<&Body> = records
        .iter()
        .filter(|b| b.draft.error.as_ref().is_some_and(|e| e.code == F))
        .filter(|b| !b.draft.detail.contains_key("refused_at"))
        .collect();
    assert_eq!(refused.len(), 19, "one record per refused call (edge-refused ones are counted below)");
    assert!(
        records.iter().any(|b| b.draft.target.ends_with(&format!(
            "[{} bytes, sha256 {}]",
            M - 100,
            sha(&big(M - 100))
        ))),
        "an oversized target is recorded by prefix, length and hash"
    );
    let edge = records.iter().filter(|b| b.draft.detail.get("refused_at").map(String::as_str) == Some("edge")).count();
    assert_eq!(edge, 2, "the two over-size messages are recorded as edge refusals");
    assert!(largest_record(&c) < RECORD_BYTES_BOUND, "largest record {} bytes", largest_record(&c));

    // Nothing changed, the trail verifies, and the control plane restarts on it.
    assert_eq!(kernel_state(&c).await, before);
    verify_offline(&c);
    c.restart_control(0, &[]).await;
    c.observer(0).get_cluster_state(cpb::GetClusterStateRequest {}).await.unwrap();
}

fn sha(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_f1_every_node_rpc_with_over_maximal_fields_is_refused_and_changes_nothing() {
    let c = Cluster::start(Spec::default()).await;
    c.data(0).put(kpb::PutRequest { key: b"k".to_vec(), value: b"v".to_vec() }).await.unwrap();
    c.wait_replicated(Duration::from_secs(30)).await;
    let before = kernel_state(&c).await;
    let ledger_before = c.ledger(0).len();
    const F: &str = "AERO_FIELD_TOO_LARGE";
    let mut kernel = c.kernel(0);
    let exec = kpb::ExecuteRequest {
        idempotency_key: big(60_000),
        request_digest: vec![0; 32],
        expected_control_seq: before[0].0,
        action: Some(kpb::Action { kind: kpb::ActionKind::Diagnostics as i32, target_node: "n1".into(), force: false }),
        requester: Some(kpb::Requester { role: "actor".into(), name: "a".into(), cert_sha256: "f".repeat(64) }),
        confirmation: None,
        plan_epoch: 0,
        intent: vec![],
        signatures: vec![],
        confirmed_audit_leaf: vec![],
    };
    assert_too_large(&kernel.execute(exec.clone()).await.unwrap_err(), F, "idempotency_key");
    let sig = |cert: usize, sig: usize| kpb::IntentSignature {
        certificate: vec![0x30; cert],
        scheme: 0x0403,
        signature: vec![1; sig],
    };
    for (what, change) in [
        ("intent", Box::new(|e: &mut kpb::ExecuteRequest| e.intent = vec![0; 4097]) as Box<dyn Fn(&mut _)>),
        ("confirmed_audit_leaf", Box::new(|e: &mut kpb::ExecuteRequest| e.confirmed_audit_leaf = vec![0; 33])),
        ("signatures", Box::new(|e: &mut kpb::ExecuteRequest| e.signatures = vec![sig(1, 1); 9])),
        ("signatures[0].certificate", Box::new(|e: &mut kpb::ExecuteRequest| e.signatures = vec![sig(8193, 1)])),
        (
            "signatures[1].signature",
            Box::new(|e: &mut kpb::ExecuteRequest| e.signatures = vec![sig(1, 1), sig(1, 1025)]),
        ),
    ] {
        let mut e = exec.clone();
        e.idempotency_key = key("ok");
        change(&mut e);
        assert_too_large(&kernel.execute(e).await.unwrap_err(), F, what);
    }
    let mut e2 = exec.clone();
    e2.idempotency_key = key("ok");
    e2.request_digest = vec![0; 33];
    assert_too_large(&kernel.execute(e2).await.unwrap_err(), F, "request_digest");
    let mut e3 = exec.clone();
    e3.idempotency_key = key("ok");
    e3.requester.as_mut().unwrap().name = big(64);
    assert_too_large(&kernel.execute(e3).await.unwrap_err(), F, "requester.name");
    let mut e4 = exec;
    e4.idempotency_key = key("ok");
    e4.confirmation = Some(kpb::Confirmation { acknowledged_invariants: vec![big(40)], ..Default::default() });
    assert_too_large(&kernel.execute(e4).await.unwrap_err(), F, "confirmation.acknowledged_invariants[0]");
    let outcome = kpb::GetOutcomeRequest { idempotency_key: big(129), ..Default::default() };
    assert_too_large(&kernel.get_outcome(outcome).await.unwrap_err(), F, "idempotency_key");

    let mut repl = kpb::replication_client::ReplicationClient::new(c.pki.channel(Role::Node, &c.nodes[0].addr));
    let status = kpb::StatusRequest { cluster_id: "c".into(), from_node: big(64), from_epoch: 1 };
    assert_too_large(&repl.status(status).await.unwrap_err(), F, "from_node");
    let grant = kpb::GrantRequest { cluster_id: big(64), candidate_id: "n2".into(), ..Default::default() };
    assert_too_large(&repl.request_grant(grant).await.unwrap_err(), F, "cluster_id");
    let pull = kpb::PullRequest { follower_id: big(64), ..Default::default() };
    assert_too_large(&repl.pull(pull).await.unwrap_err(), F, "follower_id");
    let fetch = kpb::FetchSnapshotRequest { follower_id: big(64), ..Default::default() };
    assert_too_large(&repl.fetch_snapshot(fetch).await.unwrap_err(), F, "follower_id");

    let mut data = c.data(0);
    let put = |k: usize, v: usize| kpb::PutRequest { key: vec![b'k'; k], value: vec![b'v'; v] };
    assert_too_large(&data.put(put(1025, 1)).await.unwrap_err(), F, "key");
    assert_too_large(&data.put(put(1, 64 * 1024 + 1)).await.unwrap_err(), F, "value");
    assert_too_large(&data.put(put(1, 1 << 20)).await.unwrap_err(), F, "(Put message)");
    let scan = kpb::ScanRequest { limit: 1001, ..Default::default() };
    assert_too_large(&data.scan(scan).await.unwrap_err(), F, "limit");

    // Nothing ran, nothing was recorded in the ledger, the primary still serves.
    assert_eq!(kernel_state(&c).await, before);
    assert_eq!(c.ledger(0).len(), ledger_before);
    data.put(kpb::PutRequest { key: b"k2".to_vec(), value: b"v".to_vec() }).await.unwrap();
}

/// A raw gRPC call: any content type, any body bytes, through a real mTLS channel.
async fn raw_call(
    channel: tonic::transport::Channel,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (http::StatusCode, tonic::Status) {
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", content_type)
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(bytes::Bytes::from(body))))
        .unwrap();
    let resp = channel.oneshot(req).await.expect("an HTTP answer");
    let code = resp.status();
    if let Some(status) = tonic::Status::from_header_map(resp.headers()) {
        return (code, status);
    }
    use http_body_util::BodyExt;
    let trailers = resp.into_body().collect().await.expect("body").trailers().cloned().expect("trailers");
    (code, tonic::Status::from_header_map(&trailers).expect("a gRPC status in the trailers"))
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn assert_malformed(s: &tonic::Status, code: &str) -> WireError {
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    let w = wire(s);
    assert_eq!(w.code, code, "{s:?}");
    assert_eq!(w.error_domain, ErrorDomain::OperatorInput);
    assert_eq!(w.outcome, Outcome::NotExecuted);
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_f1_malformed_protobuf_two_messages_and_non_grpc_content_are_the_callers_error() {
    let mut c = Cluster::start(Spec::default()).await;
    let before = kernel_state(&c).await;
    let ch = || c.pki.channel(Role::Actor, &c.controls[0].addr);
    const M: &str = "PHASE7_MALFORMED_REQUEST";
    let request = cpb::RequestActionRequest {
        command: cpb::Command::RunDiagnostics as i32,
        target_node: "n2".into(),
        idempotency_key: key("two"),
    };
    let one = framed(&prost::Message::encode_to_vec(&request));
    let path = "/aerodb.control.v1.Actor/RequestAction";
    // Malformed protobuf (a field with an invalid wire type).
    let (_, s) = raw_call(ch(), path, "application/grpc", framed(&[0x0f, 0xff, 0xff])).await;
    let w = assert_malformed(&s, M);
    assert!(w.message.contains("could not be decoded"), "{w:?}");
    // Two messages in a unary call.
    let (_, s) = raw_call(ch(), path, "application/grpc", [one.clone(), one.clone()].concat()).await;
    assert_malformed(&s, M);
    // No message; a truncated one; a compressed flag.
    let (_, s) = raw_call(ch(), path, "application/grpc", vec![]).await;
    assert_malformed(&s, M);
    let (_, s) = raw_call(ch(), path, "application/grpc", one[..one.len() - 1].to_vec()).await;
    assert_malformed(&s, M);
    let mut compressed = one.clone();
    compressed[0] = 1;
    let (_, s) = raw_call(ch(), path, "application/grpc", compressed).await;
    assert_malformed(&s, M);
    // Not gRPC.
    let (http_status, s) = raw_call(ch(), path, "application/json", b"{}".to_vec()).await;
    assert_eq!(http_status, http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_malformed(&s, M);
    // The same on a node.
    let node = c.pki.channel(Role::ControlPlane, &c.nodes[0].addr);
    let (_, s) =
        raw_call(node.clone(), "/aerodb.kernel.v1.Kernel/Execute", "application/grpc", framed(&[0x0a, 0xff])).await;
    assert_malformed(&s, "AERO_MALFORMED_REQUEST");
    let (_, s) = raw_call(node, "/aerodb.kernel.v1.Kernel/Observe", "text/plain", vec![]).await;
    assert_malformed(&s, "AERO_MALFORMED_REQUEST");

    // The well-formed request still works; nothing ran before it; every refusal is on the record.
    let (_, s) = raw_call(ch(), path, "application/grpc", one).await;
    assert_eq!(s.code(), Code::Ok, "{s:?}");
    assert_eq!(kernel_state(&c).await, before);
    let edge: Vec<Body> = c
        .audit_records(0)
        .into_iter()
        .filter(|b| b.draft.detail.get("refused_at").map(String::as_str) == Some("edge"))
        .collect();
    assert_eq!(edge.len(), 6, "{edge:#?}");
    assert!(edge.iter().all(|b| b.draft.stage == Stage::Rejected && b.draft.identity.is_some()));
    verify_offline(&c);
    c.restart_control(0, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_a1_another_callers_confirm_or_decline_changes_nothing_and_is_audited() {
    let c = Cluster::start(Spec::default()).await;
    let mut owner = c.actor(0);
    let mut bob = cpb::actor_client::ActorClient::new(extra_identity(&c, Role::Actor, "bob", &c.controls[0].addr));
    let p = request(&mut owner, cpb::Command::RunDiagnostics, "n2", &key("own")).await.unwrap();
    let good = cpb::ConfirmActionRequest {
        confirmation_id: p.confirmation_id.clone(),
        plan_digest: p.plan_digest.clone(),
        typed_target: "n2".into(),
        signatures: vec![common::sign::requester_signature(&p)],
        ..Default::default()
    };
    // Bob's confirm (right or mistyped target) and decline: refused, nothing consumed.
    for typed in ["n2", "n3"] {
        let r = cpb::ConfirmActionRequest { typed_target: typed.into(), ..good.clone() };
        assert_eq!(wire(&bob.confirm_action(r).await.unwrap_err()).code, "PHASE7_CONFIRMATION_WRONG_CALLER");
    }
    let decline = cpb::DeclineActionRequest { confirmation_id: p.confirmation_id.clone() };
    assert_eq!(wire(&bob.decline_action(decline).await.unwrap_err()).code, "PHASE7_CONFIRMATION_WRONG_CALLER");
    // The owner's confirmation still executes, once.
    let done = owner.confirm_action(good.clone()).await.unwrap().into_inner();
    assert_eq!(done.outcome, cpb::ActionOutcome::Executed as i32);
    // The owner's own mistyped target discards (the documented rule).
    let p = request(&mut owner, cpb::Command::RunDiagnostics, "n2", &key("typo")).await.unwrap();
    let typo = cpb::ConfirmActionRequest {
        confirmation_id: p.confirmation_id.clone(),
        plan_digest: p.plan_digest.clone(),
        typed_target: "n3".into(),
        ..Default::default()
    };
    assert_eq!(
        wire(&owner.confirm_action(typo.clone()).await.unwrap_err()).code,
        "PHASE7_CONFIRMATION_TARGET_MISMATCH"
    );
    let again = cpb::ConfirmActionRequest { typed_target: "n2".into(), ..typo };
    assert_eq!(wire(&owner.confirm_action(again).await.unwrap_err()).code, "PHASE7_CONFIRMATION_REUSED");

    let records = c.audit_records(0);
    let bobs: Vec<&Body> = records
        .iter()
        .filter(|b| b.draft.identity.as_ref().is_some_and(|i| i.name == "bob") && b.draft.error.is_some())
        .collect();
    assert_eq!(bobs.len(), 3, "each of bob's attempts is on the record");
    assert!(bobs.iter().all(|b| b.draft.detail.get("pending_action_discarded").map(String::as_str) == Some("false")));
    let discarded = records
        .iter()
        .filter(|b| b.draft.detail.get("pending_action_discarded").map(String::as_str) == Some("true"))
        .count();
    assert_eq!(discarded, 1, "only the owner's own mistyped target discarded a pending action");
    verify_offline(&c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_o1_one_identity_flooding_reads_is_aggregated_every_read_covered_none_dropped() {
    let mut spec = Spec::default();
    spec.audit.records_per_identity_per_second = 5;
    let c = Cluster::start(spec).await;
    let covered = |records: &[Body], name: &str| -> u64 {
        records
            .iter()
            .filter(|b| b.draft.stage == Stage::Read && b.draft.identity.as_ref().is_some_and(|i| i.name == name))
            .map(|b| b.draft.detail.get("aggregated_count").map_or(1, |n| n.parse::<u64>().unwrap()))
            .sum()
    };
    // Reads made while the cluster started (its readiness probe), all recorded one by one.
    let before = covered(&c.audit_records(0), "dev-observer");
    let flooder = c.pki.channel(Role::Observer, &c.controls[0].addr);
    const N: usize = 60;
    let mut tasks = Vec::new();
    for _ in 0..N {
        let mut o = cpb::observer_client::ObserverClient::new(flooder.clone());
        tasks.push(tokio::spawn(async move { o.get_cluster_state(cpb::GetClusterStateRequest {}).await.is_ok() }));
    }
    for t in tasks {
        assert!(t.await.unwrap(), "every read is answered");
    }
    // Another identity is recorded one record per read, as before.
    let mut other =
        cpb::observer_client::ObserverClient::new(extra_identity(&c, Role::Observer, "calm", &c.controls[0].addr));
    other.get_cluster_state(cpb::GetClusterStateRequest {}).await.unwrap();

    let records = c.audit_records(0);
    let of = |name: &str| -> Vec<&Body> {
        records
            .iter()
            .filter(|b| b.draft.stage == Stage::Read && b.draft.identity.as_ref().is_some_and(|i| i.name == name))
            .collect()
    };
    let flood = of("dev-observer");
    let individual = flood.iter().filter(|b| b.draft.command == "inspect_cluster_state").count();
    let aggregated: u64 = flood
        .iter()
        .filter(|b| b.draft.command == "aggregate")
        .map(|b| b.draft.detail["aggregated_count"].parse::<u64>().unwrap())
        .sum();
    assert!(flood.iter().any(|b| b.draft.command == "aggregate"), "the flood beyond the budget is aggregated");
    assert!(flood.len() < N, "fewer records ({}) than reads ({N})", flood.len());
    assert_eq!(
        individual as u64 + aggregated,
        before + N as u64,
        "every answered read is covered by exactly one record"
    );
    assert_eq!(covered(&records, "dev-observer"), before + N as u64);
    assert_eq!(of("calm").len(), 1);
    verify_offline(&c);
}
