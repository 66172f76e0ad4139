//! Cluster-wide authority (issue 13, items 3–6), with real processes: one certificate per node,
//! bound to its id and checked against every id a node claims; servers with their own identities
//! that clients check; CRL freshness; denied requests that keep what was asked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use aerodb::audit::record::Stage;
use aerodb::contract::codes;
use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use aerodb::tls::identity::Role;
use aerodb::tls::server_identity::ExpectedServer;
use common::{Cluster, Spec, WAIT, wait_for, wire};
use tonic::Code;

/// A status's message and every source below it: a refused handshake's reason is in the chain.
fn chain(s: &tonic::Status) -> String {
    let mut out = format!("{s}");
    let mut e: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(inner) = e {
        out.push_str(&format!(" <- {inner}"));
        e = inner.source();
    }
    out
}

fn assert_identity_mismatch(s: &tonic::Status, field: &str) {
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    let w = wire(s);
    assert_eq!(w.code, codes::NODE_IDENTITY_MISMATCH, "{s:?}");
    assert_eq!(w.invariants, vec!["P6-A3".to_string(), "P7-A1".to_string()]);
    assert_eq!(w.outcome, aerodb::wire::Outcome::NotExecuted);
    assert!(s.message().contains(field) && s.message().contains("node/n2"), "{}", s.message());
}

/// P6-A3: a node speaks only for itself. With n2's certificate, a Status claiming to come from n3
/// with epoch 101 (which would halt the primary), a RequestGrant for candidate n3 (which the voter
/// would grant) and a Pull as follower n3 are refused with `AERO_NODE_IDENTITY_MISMATCH`, logged
/// with the caller's identity; the primary keeps its epoch and serves writes, and the voter
/// records no grant. The same grant asked with n3's own certificate is granted (the control).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a3_a_node_certificate_claiming_another_id_is_refused_in_status_grant_and_pull() {
    let c = Cluster::start(Spec { nodes: 4, control_planes: 0, ..Default::default() }).await;
    let primary = c.observe(0).await.unwrap();
    let epoch = primary.observation.clone().unwrap().epoch;

    // Status to the primary, claiming n3 and a far higher epoch.
    let mut as_n2 = kpb::replication_client::ReplicationClient::new(c.pki.node_channel("n2", &c.nodes[0].addr));
    let status = kpb::StatusRequest { cluster_id: "test".into(), from_node: "n3".into(), from_epoch: 101 };
    assert_identity_mismatch(&as_n2.status(status).await.unwrap_err(), "from_node");
    // The primary still holds its epoch and serves writes.
    let mut data = c.data(0);
    data.put(kpb::PutRequest { key: b"after-status".to_vec(), value: b"v".to_vec() }).await.expect("primary serves");
    let after = c.observe(0).await.unwrap();
    assert_eq!(after.authority.clone().unwrap().role, kpb::Role::Primary as i32);
    assert_eq!(after.observation.clone().unwrap().epoch, epoch);
    assert!(after.authority.clone().unwrap().halt_detail.is_empty(), "{after:?}");
    // Speaking for itself, n2 is answered.
    let own = kpb::StatusRequest { cluster_id: "test".into(), from_node: "n2".into(), from_epoch: epoch };
    as_n2.status(own).await.expect("n2 may speak for n2");

    // Pull from the primary as follower n3.
    let pull = kpb::PullRequest {
        cluster_id: "test".into(),
        follower_id: "n3".into(),
        follower_epoch: epoch,
        from_index: 1,
        prev_hash: vec![0; 32],
        ..Default::default()
    };
    assert_identity_mismatch(&as_n2.pull(pull).await.unwrap_err(), "follower_id");

    // RequestGrant to the replica n4 for candidate n3, every other rule satisfied.
    let voter = 3;
    let snapshot = c.observe(voter).await.unwrap();
    let authority = |s: &kpb::NodeSnapshot| {
        let a = s.authority.clone().unwrap();
        (a.role, a.epoch, a.highest_granted_epoch, a.granted_to)
    };
    let before = authority(&snapshot);
    let ledger_before = c.ledger(voter).len();
    let r = snapshot.replication.clone().unwrap();
    let ask = kpb::GrantRequest {
        cluster_id: "test".into(),
        candidate_id: "n3".into(),
        epoch: snapshot.observation.clone().unwrap().epoch + 1,
        last_log_epoch: r.last_epoch,
        last_log_index: r.last_index,
        ..Default::default()
    };
    let mut to_voter = kpb::replication_client::ReplicationClient::new(c.pki.node_channel("n2", &c.nodes[voter].addr));
    assert_identity_mismatch(&to_voter.request_grant(ask.clone()).await.unwrap_err(), "candidate_id");
    assert_eq!(authority(&c.observe(voter).await.unwrap()), before, "the voter granted nothing");
    assert_eq!(c.ledger(voter).len(), ledger_before, "the voter recorded nothing");

    // Each refusal is logged with the caller's identity.
    for (i, field) in [(0, "from_node"), (0, "follower_id"), (voter, "candidate_id")] {
        let log = c.nodes[i].proc.log_text();
        assert!(
            log.lines().any(|l| l.contains("the claimed node id is not the caller's certificate identity")
                && l.contains("node/n2")
                && l.contains(field)),
            "{} logs the {field} refusal with the identity: {log}",
            c.nodes[i].id
        );
    }

    // The control: the same request with n3's own certificate is granted.
    let mut as_n3 = kpb::replication_client::ReplicationClient::new(c.pki.node_channel("n3", &c.nodes[voter].addr));
    let granted = as_n3.request_grant(ask).await.expect("n3 may ask for itself").into_inner();
    assert!(granted.granted, "{granted:?}");
}

/// A node whose configured id is n2 but whose certificate names n3 refuses to start, naming both;
/// the same node with its own certificate starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_with_another_nodes_certificate_refuses_to_start() {
    let mut c = Cluster::build(Spec { nodes: 3, control_planes: 0, ..Default::default() }).await;
    let own = c.nodes[1].cfg.clone();
    let mut wrong = own.clone();
    wrong.tls = c.pki.node_tls("n3");
    std::fs::write(&c.nodes[1].config_path, toml::to_string(&wrong).unwrap()).unwrap();
    let log = c.nodes[1].proc.start_expecting_refusal().await;
    assert!(log.contains("node n2 refuses to start"), "{log}");
    assert!(log.contains("names node/n3, not node/n2"), "{log}");
    assert!(!c.nodes[1].cfg.data_dir.join("ADDRESS").exists(), "it never listened");

    std::fs::write(&c.nodes[1].config_path, toml::to_string(&own).unwrap()).unwrap();
    c.nodes[1].proc.start();
    c.wait_node_ready(1).await;
}

/// A client that means to reach n1 but finds n2's certificate at the address refuses the
/// connection: the first call fails with a reason naming the identity it expected and the one it
/// got, for the control plane's kernel client and for a node's replication client alike. The
/// same clients reach n2 when they mean n2 (the control).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reaching_the_wrong_node_address_refuses_the_connection() {
    let c = Cluster::start(Spec { nodes: 2, control_planes: 0, ..Default::default() }).await;
    let n2_addr = &c.nodes[1].addr;

    let kernel_paths = c.pki.paths(Role::ControlPlane);
    let wrong = c.pki.checked_channel(&kernel_paths, ExpectedServer::node("n1"), n2_addr);
    let err = kpb::kernel_client::KernelClient::new(wrong).observe(kpb::ObserveRequest {}).await.unwrap_err();
    let text = chain(&err);
    assert_eq!(err.code(), Code::Unavailable, "{text}");
    assert!(text.contains("expected node/n1") && text.contains("presented node/n2"), "{text}");
    let right = c.pki.checked_channel(&kernel_paths, ExpectedServer::node("n2"), n2_addr);
    kpb::kernel_client::KernelClient::new(right).observe(kpb::ObserveRequest {}).await.expect("n2 is n2");

    let node_paths = c.pki.node_paths("n1");
    let wrong = c.pki.checked_channel(&node_paths, ExpectedServer::node("n1"), n2_addr);
    let hash_at = kpb::HashAtRequest { cluster_id: "test".into(), index: 1 };
    let err = kpb::replication_client::ReplicationClient::new(wrong).hash_at(hash_at.clone()).await.unwrap_err();
    let text = chain(&err);
    assert!(text.contains("expected node/n1") && text.contains("presented node/n2"), "{text}");
    let right = c.pki.checked_channel(&node_paths, ExpectedServer::node("n2"), n2_addr);
    kpb::replication_client::ReplicationClient::new(right).hash_at(hash_at).await.expect("n2 is n2");

    // A control plane is not a node: expecting any node at the control plane's address fails too.
    let mut cp = Cluster::start(Spec { nodes: 1, control_planes: 1, ..Default::default() }).await;
    let at_control = c.pki.checked_channel(&node_paths, ExpectedServer::any(Role::Node), &cp.controls[0].addr);
    let err = kpb::replication_client::ReplicationClient::new(at_control)
        .hash_at(kpb::HashAtRequest { cluster_id: "test".into(), index: 1 })
        .await
        .unwrap_err();
    let text = chain(&err);
    assert!(text.contains("expected node/*"), "{text}");
    cp.controls[0].proc.stop();
}

/// V-11: a CRL past its nextUpdate proves nothing about revocation, so new handshakes are refused
/// (fail closed), with the reason in the control plane's log and audit; a fresh CRL restores
/// service without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_crl_refuses_new_handshakes_and_a_fresh_one_restores_service_without_restart() {
    let c = Cluster::start(Spec { nodes: 1, control_planes: 1, ..Default::default() }).await;
    let crl = c.pki.dir.join("crl.pem");
    let (revoked, number) = aerodb::pki::read_crl(&crl).unwrap();
    let ca = aerodb::pki::Ca::load(&c.pki.dir).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let next_update = now + time::Duration::seconds(6);
    std::fs::write(&crl, ca.crl_until(&revoked, number + 1, now, next_update).unwrap()).unwrap();
    // Both servers load it (and warn: it expires within 7 days).
    wait_for("the short-lived CRL is loaded and warned about", WAIT, || async {
        let log = c.controls[0].proc.log_text();
        log.contains("the CRL expires in less than 7 days").then_some(())
    })
    .await;
    observer_call(&c).await.expect("still fresh: served");
    wait_for("the CRL's nextUpdate passes", WAIT, || async {
        (time::OffsetDateTime::now_utc() > next_update + time::Duration::seconds(1)).then_some(())
    })
    .await;

    // A new connection's first call fails; the reason is logged and audited.
    let err = observer_call(&c).await.expect_err("an expired CRL refuses new handshakes");
    // The server closes the handshake: a transport failure, never an answer of a service.
    assert!(wire_less(&err), "no service answered: {}", chain(&err));
    // The server logs the refusal after it closed the handshake, so the client can see the
    // failure before the line is written: wait for it (bounded).
    wait_for("the refused handshake is logged with the reason", WAIT, || async {
        let log = c.controls[0].proc.log_text();
        (log.contains("TLS handshake refused") && log.contains("the CRL expired at")).then_some(())
    })
    .await;
    // The refusal's record is appended beside the refusal, not before it: wait for it.
    wait_for("the refused handshake is audited with the reason", WAIT, || async {
        c.audit_records(0)
            .into_iter()
            .filter(|b| b.draft.stage == Stage::HandshakeRejected)
            .filter_map(|b| b.draft.detail.get("reason").cloned())
            .any(|r| r.contains("the CRL expired at"))
            .then_some(())
    })
    .await;

    // A fresh CRL restores service, without a restart.
    aerodb::pki::refresh_crl(&c.pki.dir, 30, time::OffsetDateTime::now_utc()).unwrap();
    wait_for("a new connection is served again", WAIT, || async { observer_call(&c).await.ok() }).await;
    assert_eq!(c.controls[0].proc.starts, 1, "never restarted");
    assert!(c.controls[0].proc.child.is_some(), "still the same process");
}

/// True when no service produced the status (it carries no ErrorInfo).
fn wire_less(s: &tonic::Status) -> bool {
    aerodb::wire::WireError::from_status(s).is_none()
}

/// One call on a new connection (a new channel connects afresh) as an observer.
async fn observer_call(c: &Cluster) -> Result<(), tonic::Status> {
    let mut o = cpb::observer_client::ObserverClient::new(c.pki.channel(Role::Observer, &c.controls[0].addr));
    o.get_cluster_state(cpb::GetClusterStateRequest {}).await.map(|_| ())
}

/// P7-O3: a denied RequestAction keeps what was asked. An observer's RequestAction is
/// PERMISSION_DENIED, and its `denied` record carries the command, the target and the
/// idempotency key sent; an over-long key is recorded bounded (prefix, length, hash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_o3_a_denied_request_action_records_what_was_asked() {
    let c = Cluster::start(Spec { nodes: 1, control_planes: 1, ..Default::default() }).await;
    let mut actor = cpb::actor_client::ActorClient::new(c.pki.channel(Role::Observer, &c.controls[0].addr));
    let long_key = "k".repeat(4000);
    for (target, key) in [("n1", "denied-key-1".to_string()), ("n7", long_key.clone())] {
        let err = actor
            .request_action(cpb::RequestActionRequest {
                command: cpb::Command::RequestPromotion as i32,
                target_node: target.into(),
                idempotency_key: key,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert_eq!(wire(&err).code, "PHASE7_INSUFFICIENT_AUTHORITY");
    }
    let denied: Vec<_> = c
        .audit_records(0)
        .into_iter()
        .filter(|b| b.draft.stage == Stage::Denied && b.draft.command == "/aerodb.control.v1.Actor/RequestAction")
        .map(|b| b.draft)
        .collect();
    assert_eq!(denied.len(), 2, "{denied:?}");
    let first = &denied[0];
    assert_eq!(first.target, "n1");
    assert_eq!(first.idempotency_key, "denied-key-1");
    assert_eq!(first.detail.get("command").map(String::as_str), Some("request_promotion"));
    assert_eq!(first.parameters.get("command"), Some(&(cpb::Command::RequestPromotion as i32).to_string()));
    assert_eq!(first.identity.as_ref().map(|w| w.name.as_str()), Some("dev-observer"));
    let second = &denied[1];
    assert_eq!(second.target, "n7");
    assert!(second.idempotency_key.starts_with(&"k".repeat(32)), "{}", second.idempotency_key);
    assert!(second.idempotency_key.contains("[4000 bytes, sha256 "), "{}", second.idempotency_key);
    assert!(second.idempotency_key.len() < 200, "bounded: {}", second.idempotency_key.len());
}
