//! Issue 3: a durable node and exactly-once Kernel.Execute, proved against real processes with
//! SIGKILL and fail points.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::time::Duration;

use aerodb::kernel::records::{ActionKind, LedgerEvent};
use aerodb::proto::kernel as kpb;
use common::{Cluster, Spec, WAIT, control_seq, exec_req, kernel_execute, key, verdict, wait_for};
use prost::Message;
use tonic::Code;

fn one_node() -> Spec {
    Spec { nodes: 1, control_planes: 0, ..Default::default() }
}

async fn execute(c: &Cluster, req: kpb::ExecuteRequest) -> Result<kpb::ExecuteResponse, tonic::Status> {
    let req = common::with_plan_epoch(c, req).await;
    let mut k = c.kernel(0);
    tokio::time::timeout(Duration::from_secs(20), k.execute(req))
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer"))?
        .map(|r| r.into_inner())
}

fn decided_for(c: &Cluster, key: &str) -> Vec<(u64, aerodb::kernel::records::Decided)> {
    c.ledger(0)
        .into_iter()
        .filter_map(|r| match r.body {
            LedgerEvent::Decided(d) if d.idempotency_key == key => Some((r.control_seq, *d)),
            _ => None,
        })
        .collect()
}

/// Brings the single node to `role` (Primary or Demoted) with an ordinary execution.
#[cfg(feature = "failpoints")]
async fn ensure_role(c: &Cluster, role: kpb::Role) {
    if c.role(0).await == Some(role) {
        return;
    }
    let seq = control_seq(c, 0).await;
    let kind = if role == kpb::Role::Primary { ActionKind::Promote } else { ActionKind::Demote };
    let r = execute(c, exec_req(&key("prep"), kind, "n1", false, seq, "prep")).await.unwrap();
    assert_eq!(r.record.unwrap().decision, kpb::Decision::Executed as i32);
    c.wait_role(0, role).await;
}

/// For each fail point: the action ran exactly once or not at all, as the point's position
/// relative to the commit point (the fsync'd Decided record) says; GetOutcome and a replayed
/// Execute agree with the ledger; a decided promotion or demotion has the WAL marker it implies.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_e2_crash_at_each_fail_point_then_restart_executes_once_or_not_at_all() {
    let mut c = Cluster::start(one_node()).await;
    // (fail point, whether the decision survives the crash, kinds it is exercised with). The
    // ledger points fire on the first ledger append of the request, which for a demotion is its
    // Decided record (a promotion first records its own grant, so it is exercised through the
    // kernel.* points, which bracket the Decided record itself).
    let points = [
        ("kernel.execute.start", false, &[ActionKind::Demote, ActionKind::Promote][..]),
        ("kernel.before_commit", false, &[ActionKind::Demote, ActionKind::Promote][..]),
        ("ledger.torn_write", false, &[ActionKind::Demote][..]),
        // Written before the process died: the page cache keeps it across a process crash.
        ("ledger.before_fsync", true, &[ActionKind::Demote][..]),
        ("ledger.after_fsync", true, &[ActionKind::Demote][..]),
        ("kernel.after_commit", true, &[ActionKind::Demote, ActionKind::Promote][..]),
        ("kernel.before_answer", true, &[ActionKind::Demote, ActionKind::Promote][..]),
    ];
    for (point, survives, kinds) in points {
        for &kind in kinds {
            let from = if kind == ActionKind::Demote { kpb::Role::Primary } else { kpb::Role::Demoted };
            ensure_role(&c, from).await;
            let epoch_before = c.observe(0).await.unwrap().authority.unwrap().epoch;
            let seq = control_seq(&c, 0).await;
            let k = key(point);
            let req = exec_req(&k, kind, "n1", false, seq, "crash");
            c.restart_node(0, &[("AERODB_FAILPOINTS", &format!("{point}=abort"))]).await;
            let r = execute(&c, req.clone()).await;
            assert!(r.is_err(), "{point} {kind:?}: the process died before answering, got {r:?}");
            let exited = c.nodes[0].proc.wait_exit("the node process has died").await;
            assert!(!exited.success(), "{point}: aborted");
            c.restart_node(0, &[]).await;
            let decided = decided_for(&c, &k);
            assert_eq!(decided.len(), usize::from(survives), "{point} {kind:?}: decided {} times", decided.len());
            let mut kc = c.kernel(0);
            let outcome = kc
                .get_outcome(kpb::GetOutcomeRequest { idempotency_key: k.clone(), ..Default::default() })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(outcome.found, survives, "{point}: GetOutcome agrees with the ledger");
            let role_after_crash = c.role(0).await.unwrap();
            let expected_role = if survives {
                if kind == ActionKind::Demote { kpb::Role::Demoted } else { kpb::Role::Primary }
            } else {
                from
            };
            assert_eq!(role_after_crash, expected_role, "{point} {kind:?}: the role is the fold of the ledger");
            let s = c.observe(0).await.unwrap();
            if survives && kind == ActionKind::Demote {
                assert!(
                    s.promotion.unwrap().current_epoch_fenced,
                    "{point}: a decided demotion has its Fence in the WAL"
                );
            }
            if survives && kind == ActionKind::Promote {
                let r = s.replication.unwrap();
                assert_eq!(
                    r.last_epoch,
                    epoch_before + 1,
                    "{point}: a decided promotion has its EpochStart in the WAL"
                );
            }
            let again = execute(&c, req.clone()).await.expect("answered after restart");
            let record = again.record.clone().expect("a decision");
            if survives {
                assert!(again.replayed, "{point}: the same key replays, it does not run again");
                assert_eq!(record.control_seq, decided[0].0);
                assert_eq!(
                    record.encode_to_vec(),
                    outcome.record.unwrap().encode_to_vec(),
                    "{point}: replay == GetOutcome"
                );
                assert_eq!(c.role(0).await.unwrap(), expected_role, "{point}: the replay changed nothing");
            } else {
                assert!(!again.replayed, "{point}: not decided before, so decided now");
            }
            assert_eq!(decided_for(&c, &k).len(), 1, "{point}: exactly one decision for the key");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_f3_same_key_with_another_digest_is_key_reused_and_nothing_runs() {
    let c = Cluster::start(one_node()).await;
    let seq = control_seq(&c, 0).await;
    let k = key("reuse");
    let first = execute(&c, exec_req(&k, ActionKind::Diagnostics, "n1", false, seq, "alice")).await.unwrap();
    assert_eq!(first.record.unwrap().decision, kpb::Decision::Executed as i32);
    let seq2 = control_seq(&c, 0).await;
    // Another action under the same key.
    let r = execute(&c, exec_req(&k, ActionKind::Demote, "n1", false, seq2, "alice")).await.unwrap();
    assert!(r.record.is_none());
    assert_eq!(r.unrecorded_rejection.as_ref().unwrap().code, "AERO_IDEMPOTENCY_KEY_REUSED");
    // Another requester under the same key.
    let r = execute(&c, exec_req(&k, ActionKind::Diagnostics, "n1", false, seq2, "mallory")).await.unwrap();
    assert_eq!(r.unrecorded_rejection.unwrap().code, "AERO_IDEMPOTENCY_KEY_REUSED");
    assert_eq!(control_seq(&c, 0).await, seq2, "key reuse is not recorded and changes nothing");
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary));
    assert_eq!(decided_for(&c, &k).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_d2_stale_sequence_is_rejected_carrying_the_current_one_and_the_same_rejection_is_byte_identical() {
    let c = Cluster::start(one_node()).await;
    let seq = control_seq(&c, 0).await;
    let k = key("stale");
    let req = exec_req(&k, ActionKind::Demote, "n1", false, seq + 5, "alice");
    let r = execute(&c, req.clone()).await.unwrap();
    let rec = r.record.clone().unwrap();
    assert_eq!(rec.decision, kpb::Decision::Rejected as i32);
    let rej = rec.rejection.clone().unwrap();
    assert_eq!(rej.code, "AERO_STALE_SEQUENCE");
    assert_eq!(rej.current_control_seq, seq);
    assert!(rej.invariants.contains(&"P7-A2".to_string()));
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary), "nothing ran");
    // The same rejected request again: the recorded rejection, byte for byte.
    let again = execute(&c, req).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.record.unwrap().encode_to_vec(), rec.encode_to_vec());
    // A rejection from check 4 (validation) is recorded the same way.
    let seq = control_seq(&c, 0).await;
    let k2 = key("promote-primary");
    let req = exec_req(&k2, ActionKind::Promote, "n1", false, seq, "alice");
    let a = execute(&c, req.clone()).await.unwrap().record.unwrap();
    assert_eq!(a.rejection.as_ref().unwrap().code, "AERO_PROMOTION_ALREADY_PRIMARY");
    let b = execute(&c, req).await.unwrap().record.unwrap();
    assert_eq!(a.encode_to_vec(), b.encode_to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_demotion_and_promotion_of_the_demoted_node_are_real_actions() {
    let c = Cluster::start(one_node()).await;
    let mut data = c.data(0);
    data.put(kpb::PutRequest { key: b"a".to_vec(), value: b"1".to_vec() }).await.unwrap();
    let seq = control_seq(&c, 0).await;
    let r = execute(&c, exec_req(&key("d"), ActionKind::Demote, "n1", false, seq, "alice")).await.unwrap();
    assert_eq!(r.record.unwrap().decision, kpb::Decision::Executed as i32);
    assert_eq!(c.role(0).await, Some(kpb::Role::Demoted));
    let e = data.put(kpb::PutRequest { key: b"b".to_vec(), value: b"2".to_vec() }).await.unwrap_err();
    assert_eq!(common::wire(&e).code, "AERO_NOT_PRIMARY");
    let seq = control_seq(&c, 0).await;
    let r = execute(&c, exec_req(&key("p"), ActionKind::Promote, "n1", false, seq, "alice")).await.unwrap();
    let rec = r.record.unwrap();
    assert_eq!(rec.decision, kpb::Decision::Executed as i32, "{rec:?}");
    let s = c.wait_role(0, kpb::Role::Primary).await;
    assert_eq!(s.authority.unwrap().epoch, 2);
    data.put(kpb::PutRequest { key: b"b".to_vec(), value: b"2".to_vec() }).await.unwrap();
    let got = data.get(kpb::GetRequest { key: b"a".to_vec() }).await.unwrap().into_inner();
    assert_eq!(got.value, b"1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_service_bad_input_is_invalid_argument_naming_the_field() {
    let c = Cluster::start(one_node()).await;
    let mut data = c.data(0);
    let cases: Vec<(&str, Result<(), tonic::Status>)> = vec![
        ("key", data.put(kpb::PutRequest { key: vec![], value: b"v".to_vec() }).await.map(|_| ())),
        ("key", data.put(kpb::PutRequest { key: vec![b'k'; 1025], value: b"v".to_vec() }).await.map(|_| ())),
        ("value", data.put(kpb::PutRequest { key: b"k".to_vec(), value: vec![0; 64 * 1024 + 1] }).await.map(|_| ())),
        ("key", data.get(kpb::GetRequest { key: vec![] }).await.map(|_| ())),
        ("key", data.delete(kpb::DeleteRequest { key: vec![] }).await.map(|_| ())),
        ("limit", data.scan(kpb::ScanRequest { start_key: vec![], end_key: vec![], limit: 0 }).await.map(|_| ())),
        ("limit", data.scan(kpb::ScanRequest { start_key: vec![], end_key: vec![], limit: 1001 }).await.map(|_| ())),
    ];
    for (field, r) in cases {
        let s = r.expect_err(field);
        assert_eq!(s.code(), Code::InvalidArgument);
        let w = common::wire(&s);
        assert_eq!(w.field_errors[0].field, field, "{w:?}");
    }
    // Nothing was written.
    assert_eq!(c.observe(0).await.unwrap().replication.unwrap().last_index, 1);
    // Limits at their edges are accepted.
    data.put(kpb::PutRequest { key: vec![b'k'; 1024], value: vec![0; 64 * 1024] }).await.unwrap();
    let scan =
        data.scan(kpb::ScanRequest { start_key: vec![], end_key: vec![], limit: 1000 }).await.unwrap().into_inner();
    assert_eq!(scan.entries.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_is_owned_by_one_process() {
    let mut c = Cluster::start(one_node()).await;
    let mut second = common::Proc::new("second", c.nodes[0].proc.args.clone(), c.root.path().join("second.log"));
    second.start();
    let status = wait_for("the second process exits", WAIT, || {
        let s = second.exited();
        async move { s }
    })
    .await;
    assert!(!status.success());
    assert!(second.log_text().contains("is locked by another process"), "{}", second.log_text());
    assert!(c.observe(0).await.is_some(), "the owner is unaffected");
    c.nodes[0].proc.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_mid_wal_refuses_to_start_naming_file_and_offset() {
    let mut c = Cluster::start(one_node()).await;
    let mut data = c.data(0);
    for i in 0..20u8 {
        data.put(kpb::PutRequest { key: vec![b'k', i], value: vec![i; 100] }).await.unwrap();
    }
    c.nodes[0].proc.stop();
    let seg = c.nodes[0].cfg.data_dir.join("wal").join("seg-00000000000000000001.wal");
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();
    let log = c.nodes[0].proc.start_expecting_refusal().await;
    assert!(log.contains("seg-00000000000000000001.wal") && log.contains("byte offset"), "{log}");
}

/// A flipped length bit in a ledger record before the last one makes that record seem to run past
/// end of file, as a torn final write would; the good records after it show it is corruption, so
/// the node refuses to start and truncates nothing (truncating would forget decided keys and
/// reuse their control_seq values).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_length_mid_ledger_refuses_to_start_and_truncates_nothing() {
    let mut c = Cluster::start(one_node()).await;
    for _ in 0..3 {
        let r = kernel_execute(&c, 0, ActionKind::Diagnostics, false).await;
        verdict(&r).expect("diagnostics executed");
    }
    c.nodes[0].proc.stop();
    let path = c.nodes[0].cfg.data_dir.join("control.log");
    let mut bytes = std::fs::read(&path).unwrap();
    // The second record's offset: past the 16-byte header and the first frame.
    let first_len = u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
    let second = 16 + 8 + first_len;
    assert!(second + 8 < bytes.len(), "the ledger holds records after the second");
    bytes[second + 2] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let log = c.nodes[0].proc.start_expecting_refusal().await;
    assert!(log.contains("control.log") && log.contains(&format!("byte offset {second}")), "{log}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was truncated");
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_s1_a_torn_wal_tail_starts_and_drops_only_the_unacknowledged_record() {
    let mut c = Cluster::start(one_node()).await;
    let mut data = c.data(0);
    for i in 0..10u8 {
        data.put(kpb::PutRequest { key: vec![b'a', i], value: vec![i] }).await.unwrap();
    }
    c.restart_node(0, &[("AERODB_FAILPOINTS", "wal.torn_write=abort")]).await;
    let mut data = c.data(0);
    let r = data.put(kpb::PutRequest { key: b"torn".to_vec(), value: b"x".to_vec() }).await;
    assert!(r.is_err(), "the torn write was never acknowledged");
    c.restart_node(0, &[]).await;
    let log = c.nodes[0].proc.log_text();
    assert!(log.contains("truncated a torn WAL tail"), "{log}");
    let mut data = c.data(0);
    wait_for("the primary applies its log", WAIT, || {
        let mut d = data.clone();
        async move { d.get(kpb::GetRequest { key: vec![b'a', 9] }).await.ok().filter(|r| r.get_ref().found).map(|_| ()) }
    })
    .await;
    for i in 0..10u8 {
        let g = data.get(kpb::GetRequest { key: vec![b'a', i] }).await.unwrap().into_inner();
        assert!(g.found && g.value == vec![i], "acknowledged key a{i} survives");
    }
    assert!(!data.get(kpb::GetRequest { key: b"torn".to_vec() }).await.unwrap().into_inner().found);
    let quarantine = c.nodes[0].cfg.data_dir.join("quarantine");
    assert!(std::fs::read_dir(&quarantine).unwrap().count() >= 1, "a copy of the torn bytes is kept");
}

/// GetOutcome after an execution: the key is decided and no longer in flight, and its decision
/// is compared with the query's request only when the query names one (a digest and a
/// requester): the same request is SAME_REQUEST, another requester's is KEY_REUSED carrying the
/// rejection Execute would give it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_f3_get_outcome_of_an_ended_execution_is_decided_not_in_flight_and_compares_only_a_named_request() {
    let c = Cluster::start(one_node()).await;
    let seq = control_seq(&c, 0).await;
    let k = key("outcome");
    let req = common::with_plan_epoch(&c, exec_req(&k, ActionKind::Diagnostics, "n1", false, seq, "alice")).await;
    let r = c.kernel(0).execute(req.clone()).await.unwrap().into_inner();
    assert_eq!(r.record.unwrap().decision, kpb::Decision::Executed as i32);
    let ask = |request_digest: Vec<u8>, requester: Option<kpb::Requester>| kpb::GetOutcomeRequest {
        idempotency_key: k.clone(),
        request_digest,
        requester,
    };
    let mut kernel = c.kernel(0);
    let bare = kernel.get_outcome(ask(vec![], None)).await.unwrap().into_inner();
    assert!(bare.found);
    assert!(!bare.in_flight, "an ended execution leaves its key out of the in-flight set");
    assert_eq!(bare.r#match, kpb::OutcomeMatch::NotCompared as i32);
    let same = kernel.get_outcome(ask(req.request_digest.clone(), req.requester.clone())).await.unwrap().into_inner();
    assert_eq!(same.r#match, kpb::OutcomeMatch::SameRequest as i32);
    let other = common::with_plan_epoch(&c, exec_req(&k, ActionKind::Diagnostics, "n1", false, seq, "mallory")).await;
    let reused = kernel.get_outcome(ask(other.request_digest, other.requester)).await.unwrap().into_inner();
    assert_eq!(reused.r#match, kpb::OutcomeMatch::KeyReused as i32);
    assert_eq!(reused.key_reused.unwrap().code, "AERO_IDEMPOTENCY_KEY_REUSED");
}
