//! Issue 13: authority changes are optimistic at the cluster level. A plan names the epoch it
//! creates or ends; the kernel executes for exactly that epoch or rejects, so two confirmed
//! authority changes built on one state can never both be reported EXECUTED.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::time::Duration;

use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use aerodb::tls::identity::Role;
use aerodb::wire::{ErrorDomain, Outcome};
use common::{Cluster, Spec, WAIT, check_single_writer_per_epoch, confirm_pending, extra_identity, key, request, wire};

/// The index of the node every reachable node agrees is primary, once they do.
async fn the_primary(c: &Cluster) -> usize {
    common::wait_for("exactly one primary", WAIT, || async {
        let mut primaries = Vec::new();
        for i in 0..c.nodes.len() {
            match c.role(i).await {
                Some(kpb::Role::Primary) => primaries.push(i),
                Some(kpb::Role::Halted) => panic!("{} halted", c.nodes[i].id),
                _ => {}
            }
        }
        (primaries.len() == 1).then(|| primaries[0])
    })
    .await
}

/// Every node holds the same last entry (so a Fence reached them all).
async fn settled(c: &Cluster) {
    common::wait_for("every node holds the same last entry", WAIT, || async {
        let mut tails = Vec::new();
        for i in 0..c.nodes.len() {
            let r = c.observe(i).await?.replication?;
            tails.push((r.last_index, r.last_epoch));
        }
        tails.windows(2).all(|w| w[0] == w[1]).then_some(())
    })
    .await
}

/// `rounds` rounds: demote the primary, then two actors (on `controls[a]` and `controls[b]`)
/// each plan the promotion of a different replica on the same state and confirm at once.
async fn race(c: &Cluster, rounds: usize, a: usize, b: usize) {
    let mut alice = c.actor(a);
    let mut bob = cpb::actor_client::ActorClient::new(extra_identity(c, Role::Actor, "bob", &c.controls[b].addr));
    let mut winners = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..rounds {
        let p = the_primary(c).await;
        let demoted =
            common::request_and_confirm(&mut alice, cpb::Command::RequestDemotion, &c.nodes[p].id, &key("demote"))
                .await
                .unwrap_or_else(|e| panic!("round {round}: demotion: {e:?}"));
        assert_eq!(demoted.outcome, cpb::ActionOutcome::Executed as i32);
        settled(c).await;
        let others: Vec<usize> = (0..c.nodes.len()).filter(|i| *i != p).collect();
        let (ta, tb) = if round % 2 == 0 { (others[0], others[1]) } else { (others[1], others[0]) };
        let pa = request(&mut alice, cpb::Command::RequestPromotion, &c.nodes[ta].id, &key("race-a")).await.unwrap();
        let pb = request(&mut bob, cpb::Command::RequestPromotion, &c.nodes[tb].id, &key("race-b")).await.unwrap();
        let ea = pa.explanation.as_ref().unwrap().plan_epoch;
        let eb = pb.explanation.as_ref().unwrap().plan_epoch;
        assert_eq!(ea, eb, "round {round}: both plans were built on one state and name one epoch");
        let (ra, rb) = tokio::join!(confirm_pending(&mut alice, &pa), confirm_pending(&mut bob, &pb));
        let (winner, loser, target) = match (&ra, &rb) {
            (Ok(w), Err(l)) => (w, l, ta),
            (Err(l), Ok(w)) => (w, l, tb),
            _ => panic!("round {round}: exactly one must execute: {ra:?} / {rb:?}"),
        };
        assert_eq!(winner.outcome, cpb::ActionOutcome::Executed as i32, "round {round}");
        let w = wire(loser);
        assert_eq!(w.error_domain, ErrorDomain::KernelRejection, "round {round}: a verbatim kernel rejection: {w:?}");
        assert_eq!(w.outcome, Outcome::NotExecuted, "round {round}");
        *winners.entry(w.code.clone()).or_default() += 1;
        let promoted = match winner.record.as_ref().and_then(|r| r.result.as_ref()).and_then(|r| r.result.as_ref()) {
            Some(kpb::action_result::Result::Promotion(pr)) => pr.epoch,
            other => panic!("round {round}: a promotion result, got {other:?}"),
        };
        assert_eq!(promoted, ea, "round {round}: the kernel executed for exactly the planned epoch");
        assert_eq!(the_primary(c).await, target, "round {round}: the winner is the one primary; no node halted");
    }
    eprintln!("loser rejection codes over {rounds} rounds: {winners:?}");
    check_single_writer_per_epoch(c);
    // Writes go on through the last winner.
    let p = the_primary(c).await;
    c.data(p).put(kpb::PutRequest { key: b"after-race".to_vec(), value: b"1".to_vec() }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a1_two_actors_confirming_promotions_of_different_replicas_at_once_exactly_one_executes_50_rounds() {
    let c = Cluster::start(Spec::default()).await;
    race(&c, 50, 0, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a1_two_control_planes_confirming_promotions_of_different_replicas_at_once_exactly_one_executes_50_rounds() {
    let c = Cluster::start(Spec { control_planes: 2, ..Spec::default() }).await;
    race(&c, 50, 0, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_d2_an_explanation_whose_epoch_moved_is_rejected_with_the_found_epoch_and_nothing_runs() {
    let mut c = Cluster::start(Spec::default()).await;
    let mut alice = c.actor(0);
    let mut bob = cpb::actor_client::ActorClient::new(extra_identity(&c, Role::Actor, "bob", &c.controls[0].addr));
    common::request_and_confirm(&mut alice, cpb::Command::RequestDemotion, "n1", &key("d1")).await.unwrap();
    settled(&c).await;
    // Alice's plan: n2 to primary of epoch 2.
    let stale = request(&mut alice, cpb::Command::RequestPromotion, "n2", &key("stale")).await.unwrap();
    assert_eq!(stale.explanation.as_ref().unwrap().plan_epoch, 2);
    // While n2 is down (its ledger does not move), bob promotes n3 to epoch 2 and demotes it.
    c.nodes[1].proc.kill();
    let p = request(&mut bob, cpb::Command::RequestPromotion, "n3", &key("n3")).await.unwrap();
    assert_eq!(p.explanation.as_ref().unwrap().unreachable_nodes, vec!["n2".to_string()]);
    confirm_pending(&mut bob, &p).await.unwrap();
    common::request_and_confirm(&mut bob, cpb::Command::RequestDemotion, "n3", &key("d3")).await.unwrap();
    c.nodes[1].proc.start();
    c.wait_node_ready(1).await;
    settled(&c).await;
    let n2_ledger = c.ledger(1).len();
    // Alice confirms the plan built before epoch 2 existed.
    let e = confirm_pending(&mut alice, &stale).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Aborted, "{e:?}");
    let w = wire(&e);
    assert_eq!(w.code, "AERO_PLAN_EPOCH_STALE", "{w:?}");
    assert_eq!(w.outcome, Outcome::NotExecuted);
    assert_eq!(w.extra_value("current_epoch"), Some("2"), "{w:?}");
    assert!(w.message.contains("names epoch 2"), "{w:?}");
    // Nothing ran: n2 is a replica, it asked nobody for a grant, its ledger holds only the
    // recorded rejection (with the epoch the plan named).
    assert_eq!(c.role(1).await, Some(kpb::Role::Replica));
    let ledger = c.ledger(1);
    assert_eq!(ledger.len(), n2_ledger + 1);
    let d = common::decided(&ledger).into_iter().last().unwrap();
    assert_eq!(d.plan_epoch, 2);
    assert!(matches!(d.decision, aerodb::kernel::records::Decision::Rejected { .. }), "{d:?}");
    for i in [0, 2] {
        assert_eq!(c.observe(i).await.unwrap().authority.unwrap().highest_granted_epoch, 2, "no grant of epoch 3");
    }
    check_single_writer_per_epoch(&c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a2_a_demotion_naming_another_epoch_is_rejected_before_the_primary_stops_writing() {
    let c = Cluster::start(Spec::default()).await;
    let seq = common::control_seq(&c, 0).await;
    let mut req = common::exec_req(&key("d"), aerodb::kernel::records::ActionKind::Demote, "n1", false, seq, "op");
    req.plan_epoch = 7;
    let r = c.kernel(0).execute(common::sign::sign_exec(&c, req)).await.unwrap().into_inner();
    let rej = r.record.unwrap().rejection.unwrap();
    assert_eq!(rej.code, "AERO_PLAN_EPOCH_STALE");
    assert_eq!(rej.current_epoch, 1);
    // Still the primary, still writing.
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary));
    tokio::time::timeout(
        Duration::from_secs(10),
        c.data(0).put(kpb::PutRequest { key: b"k".to_vec(), value: b"v".to_vec() }),
    )
    .await
    .expect("a write is answered")
    .unwrap();
    // A plan that names no epoch is malformed.
    let seq = common::control_seq(&c, 0).await;
    let req = common::exec_req(&key("none"), aerodb::kernel::records::ActionKind::Demote, "n1", false, seq, "op");
    let e = c.kernel(0).execute(req).await.unwrap_err();
    assert_eq!(wire(&e).field_errors[0].field, "plan_epoch");
}

/// Decisions under `key` in every node's ledger.
fn decisions(c: &Cluster, key: &str) -> usize {
    (0..c.nodes.len()).map(|i| common::decided(&c.ledger(i)).iter().filter(|d| d.idempotency_key == key).count()).sum()
}

fn diagnostics(key: &str, node: &str, who: &str) -> kpb::ExecuteRequest {
    common::exec_req(key, aerodb::kernel::records::ActionKind::Diagnostics, node, false, 0, who)
}

async fn execute_on(c: &Cluster, i: usize, mut req: kpb::ExecuteRequest) -> kpb::ExecuteResponse {
    req.expected_control_seq = common::control_seq(c, i).await;
    c.kernel(i).execute(common::sign::sign_exec(c, req)).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_f3_a_key_decided_on_one_node_is_never_decided_again_on_another_even_bypassing_the_control_plane() {
    let c = Cluster::start(Spec::default()).await;
    let k = key("cluster-once");
    let first = execute_on(&c, 1, diagnostics(&k, "n2", "alice")).await;
    assert_eq!(common::verdict(&first), Ok(()));
    // Another action on another node under the same key, with a made-up requester.
    let seq_n3 = common::control_seq(&c, 2).await;
    let other = execute_on(&c, 2, diagnostics(&k, "n3", "mallory")).await;
    let rej = other.unrecorded_rejection.expect("refused");
    assert_eq!(rej.code, "AERO_IDEMPOTENCY_KEY_REUSED");
    assert!(rej.message.contains("decided on n2"), "{}", rej.message);
    assert_eq!(common::control_seq(&c, 2).await, seq_n3, "n3 recorded nothing");
    // The same requester with another action under the key is refused too: a peer's decision
    // is replayed only for the same request (digest) from the same principal, never for
    // either alone.
    let same_requester = execute_on(&c, 2, diagnostics(&k, "n3", "alice")).await;
    assert!(!same_requester.replayed, "another action is never answered with the peer's decision");
    let rej = same_requester.unrecorded_rejection.expect("refused");
    assert_eq!(rej.code, "AERO_IDEMPOTENCY_KEY_REUSED");
    assert!(rej.message.contains("decided on n2"), "{}", rej.message);
    assert_eq!(common::control_seq(&c, 2).await, seq_n3, "n3 recorded nothing");
    // The same request again on its node is replayed.
    let again = execute_on(&c, 1, diagnostics(&k, "n2", "alice")).await;
    assert!(again.replayed);
    assert_eq!(decisions(&c, &k), 1);
    // GetOutcome names the node each peer promised the key to, and the control plane's view
    // reports the one decision.
    let mut promised = 0;
    for i in [0, 2] {
        let a = c
            .kernel(i)
            .get_outcome(kpb::GetOutcomeRequest { idempotency_key: k.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert!(!a.found);
        assert!(a.claimed_by.is_empty() || a.claimed_by == "n2", "{a:?}");
        promised += usize::from(a.claimed_by == "n2");
    }
    assert!(promised >= 1, "a majority (n2 and at least one peer) holds the claim");
    let view = c.observer(0).get_outcome(cpb::GetOutcomeRequest { idempotency_key: k.clone() }).await.unwrap();
    assert_eq!(view.into_inner().decided_on, "n2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_f3_one_key_sent_to_two_nodes_at_once_is_decided_at_most_once_30_rounds() {
    let c = Cluster::start(Spec::default()).await;
    let mut executed = 0;
    for round in 0..30 {
        let k = key("twice");
        let (a, b) = tokio::join!(
            execute_on(&c, 1, diagnostics(&k, "n2", "alice")),
            execute_on(&c, 2, diagnostics(&k, "n3", "bob"))
        );
        let ok = [&a, &b].iter().filter(|r| common::verdict(r).is_ok() && !r.replayed).count();
        assert!(ok <= 1, "round {round}: both executed: {a:?} / {b:?}");
        assert!(decisions(&c, &k) <= 1, "round {round}: two decisions under one key");
        executed += ok;
    }
    assert!(executed > 0, "the claim protocol must not refuse every contested key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a3_a_node_cannot_claim_a_key_on_another_nodes_behalf() {
    let c = Cluster::start(Spec::default()).await;
    let k = key("impersonated");
    let mut as_n2 = kpb::replication_client::ReplicationClient::new(c.pki.node_channel("n2", &c.nodes[0].addr));
    let claim = |claimant: &str| kpb::ClaimKeyRequest {
        cluster_id: c.nodes[0].cfg.cluster_id.clone(),
        claimant: claimant.into(),
        idempotency_key: k.clone(),
        request_digest: vec![0; 32],
    };
    let e = as_n2.claim_key(claim("n3")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert_eq!(wire(&e).code, "AERO_NODE_IDENTITY_MISMATCH");
    // Nor may a node claim from itself: its own share is its in-flight execution, never a grant.
    let mut as_n1 = kpb::replication_client::ReplicationClient::new(c.pki.node_channel("n1", &c.nodes[0].addr));
    let e = as_n1.claim_key(claim("n1")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("is not a peer of n1"), "{}", e.message());
    // Nor a node of the cluster's CA that is not a member.
    aerodb::pki::issue(&c.pki.dir, common::TD, Role::Node, "n9", None, &[], 30, time::OffsetDateTime::now_utc())
        .expect("issue a node certificate for n9");
    let mut as_n9 = kpb::replication_client::ReplicationClient::new(c.pki.node_channel("n9", &c.nodes[0].addr));
    let e = as_n9.claim_key(claim("n9")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("claimant \"n9\" is not a peer of n1"), "{}", e.message());
    let outcome = || kpb::GetOutcomeRequest { idempotency_key: k.clone(), ..Default::default() };
    assert_eq!(c.kernel(0).get_outcome(outcome()).await.unwrap().into_inner().claimed_by, "", "nothing promised");
    // For itself, n2 may claim; the promise is durable and then names n2.
    let granted = as_n2.claim_key(claim("n2")).await.unwrap().into_inner();
    assert_eq!(granted.answer, Some(kpb::claim_key_response::Answer::Granted(true)));
    assert_eq!(c.kernel(0).get_outcome(outcome()).await.unwrap().into_inner().claimed_by, "n2");
    // n1 promised the key to n2, so n1 does not count itself: it decides the key only because n2
    // (which is not deciding it) and n3 grant it a majority, and then n2 can never decide it.
    let r = execute_on(&c, 0, diagnostics(&k, "n1", "alice")).await;
    assert_eq!(common::verdict(&r), Ok(()), "{r:?}");
    let again = execute_on(&c, 1, diagnostics(&k, "n2", "bob")).await;
    let rej = again.unrecorded_rejection.expect("refused");
    assert_eq!(rej.code, "AERO_IDEMPOTENCY_KEY_REUSED");
    assert!(rej.message.contains("decided on n1"), "{}", rej.message);
    assert_eq!(decisions(&c, &k), 1);
}

/// A claim's grant is reserved under the node's lock, made durable without it, and answered only
/// once durable (`kernel::claims`, "Granting without the node's lock held"): while n2 sits between
/// reserving a key for n3 and writing the promise, n2 still answers Observe, refuses the key to
/// n1 (it is reserved for n3), reports no durable promise, and answers n3's second claim only
/// after the first is durable; the promise then survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a3_a_grant_is_durable_before_it_is_answered_and_never_holds_the_node_lock() {
    let point = "kernel.claims.grant.before_sync";
    let mut c = Cluster::start(Spec::default()).await;
    let failpoints = format!("{point}=sleep(5000)");
    c.restart_node(1, &[("AERODB_FAILPOINTS", failpoints.as_str())]).await;
    common::wait_for("n2 answers Observe", WAIT, || async { c.observe(1).await }).await;
    let k = key("reserved");
    let claim = |claimant: &str| kpb::ClaimKeyRequest {
        cluster_id: c.nodes[1].cfg.cluster_id.clone(),
        claimant: claimant.into(),
        idempotency_key: k.clone(),
        request_digest: vec![0; 32],
    };
    let as_n3 = kpb::replication_client::ReplicationClient::new(c.pki.node_channel("n3", &c.nodes[1].addr));
    let first = tokio::spawn({
        let (mut client, req) = (as_n3.clone(), claim("n3"));
        async move { client.claim_key(req).await }
    });
    let reached = format!("failpoint {point}");
    common::wait_for("n2 reserved the key and sits before writing the promise", WAIT, || async {
        c.nodes[1].proc.log_text().contains(&reached).then_some(())
    })
    .await;
    let second = tokio::spawn({
        let (mut client, req) = (as_n3.clone(), claim("n3"));
        async move { client.claim_key(req).await }
    });

    // The reservation holds no lock: Observe answers, and another claimant is refused at once.
    assert!(c.observe(1).await.is_some(), "n2 answers Observe while a grant is being made durable");
    let mut as_n1 = kpb::replication_client::ReplicationClient::new(c.pki.node_channel("n1", &c.nodes[1].addr));
    let other = as_n1.claim_key(claim("n1")).await.unwrap().into_inner();
    assert_eq!(other.answer, Some(kpb::claim_key_response::Answer::ClaimedBy("n3".into())), "reserved for n3");
    let outcome = || kpb::GetOutcomeRequest { idempotency_key: k.clone(), ..Default::default() };
    assert_eq!(c.kernel(1).get_outcome(outcome()).await.unwrap().into_inner().claimed_by, "", "not durable yet");
    assert!(!first.is_finished(), "the grant is answered only once durable");
    assert!(!second.is_finished(), "a repeated claim waits for the durable promise");

    let granted = Some(kpb::claim_key_response::Answer::Granted(true));
    assert_eq!(first.await.unwrap().unwrap().into_inner().answer, granted);
    assert_eq!(second.await.unwrap().unwrap().into_inner().answer, granted);
    assert_eq!(c.kernel(1).get_outcome(outcome()).await.unwrap().into_inner().claimed_by, "n3");
    assert_eq!(
        c.nodes[1].proc.log_text().matches(&reached).count(),
        1,
        "one promise written for two claims of one claimant"
    );
    c.restart_node(1, &[]).await;
    let durable = common::wait_for("n2 answers GetOutcome after restart", WAIT, || async {
        c.kernel(1).get_outcome(outcome()).await.ok()
    })
    .await;
    assert_eq!(durable.into_inner().claimed_by, "n3", "the promise survives a restart");
}

/// A claim call dropped while its grant is reserved but not yet written (the claimant gave up
/// waiting) releases the reservation: nothing was written or acknowledged, so the key is free
/// again and another claimant is granted it, durably.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a3_a_claim_dropped_before_its_promise_is_written_leaves_the_key_free() {
    let point = "kernel.claims.grant.before_sync";
    let mut c = Cluster::start(Spec::default()).await;
    // Only the first grant sits before its write, for longer than the claimant waits.
    let failpoints = format!("{point}=sleep(20000)@1");
    c.restart_node(1, &[("AERODB_FAILPOINTS", failpoints.as_str())]).await;
    common::wait_for("n2 answers Observe", WAIT, || async { c.observe(1).await }).await;
    let k = key("dropped");
    let claim = |claimant: &str| kpb::ClaimKeyRequest {
        cluster_id: c.nodes[1].cfg.cluster_id.clone(),
        claimant: claimant.into(),
        idempotency_key: k.clone(),
        request_digest: vec![0; 32],
    };
    let mut as_n3 = kpb::replication_client::ReplicationClient::new(c.pki.node_channel("n3", &c.nodes[1].addr));
    let reached = format!("failpoint {point}");
    let gave_up = tokio::time::timeout(Duration::from_millis(500), as_n3.claim_key(claim("n3"))).await;
    assert!(gave_up.is_err(), "the first grant sits at the fail point: {gave_up:?}");
    assert!(c.nodes[1].proc.log_text().contains(&reached), "n2 reserved the key for n3");
    // The server drops the cancelled call and with it the reservation; until it does, n1 hears
    // that the key is reserved for n3.
    let as_n1 = kpb::replication_client::ReplicationClient::new(c.pki.node_channel("n1", &c.nodes[1].addr));
    let granted = Some(kpb::claim_key_response::Answer::Granted(true));
    common::wait_for("n2 grants the released key to n1", WAIT, || async {
        let answer = as_n1.clone().claim_key(claim("n1")).await.ok()?.into_inner().answer;
        assert!(
            answer == granted || answer == Some(kpb::claim_key_response::Answer::ClaimedBy("n3".into())),
            "{answer:?}"
        );
        (answer == granted).then_some(())
    })
    .await;
    let outcome = || kpb::GetOutcomeRequest { idempotency_key: k.clone(), ..Default::default() };
    assert_eq!(c.kernel(1).get_outcome(outcome()).await.unwrap().into_inner().claimed_by, "n1");
    c.restart_node(1, &[]).await;
    let durable = common::wait_for("n2 answers GetOutcome after restart", WAIT, || async {
        c.kernel(1).get_outcome(outcome()).await.ok()
    })
    .await;
    assert_eq!(durable.into_inner().claimed_by, "n1", "only n1's promise was written");
}

/// While a node runs its own promotion (its candidacy) it grants no epoch to another candidate:
/// had it granted a higher epoch and then won its own lower one, it would write entries of an
/// epoch below one it promised to refuse (`kernel::promotion`, `Replication.RequestGrant`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a1_a_candidate_grants_no_epoch_while_its_own_promotion_runs() {
    let point = "kernel.promotion.candidacy_begun";
    let mut c = Cluster::start(Spec::default()).await;
    let failpoints = format!("{point}=sleep(5000)@1");
    c.restart_node(1, &[("AERODB_FAILPOINTS", failpoints.as_str())]).await;
    common::wait_for("n2 answers Observe", WAIT, || async { c.observe(1).await }).await;
    // n2's forced promotion sits just after its candidacy began.
    let exec = common::exec_req(
        &key("candidacy"),
        aerodb::kernel::records::ActionKind::Promote,
        "n2",
        true,
        common::control_seq(&c, 1).await,
        "alice",
    );
    let req = common::with_plan_epoch(&c, exec).await;
    let promotion = tokio::spawn({
        let mut kernel = c.kernel(1);
        async move { kernel.execute(req).await }
    });
    let reached = format!("failpoint {point}");
    common::wait_for("n2's candidacy began", WAIT, || async {
        c.nodes[1].proc.log_text().contains(&reached).then_some(())
    })
    .await;
    // n3 asks n2 for an epoch above every epoch known, with a log as long as n2's.
    let s = c.observe(1).await.expect("n2 observed");
    let (a, r) = (s.authority.clone().unwrap_or_default(), s.replication.clone().unwrap_or_default());
    let ask = kpb::GrantRequest {
        cluster_id: c.nodes[1].cfg.cluster_id.clone(),
        candidate_id: "n3".into(),
        epoch: a.epoch.max(a.highest_granted_epoch) + 10,
        last_log_epoch: r.last_epoch,
        last_log_index: r.last_index,
        ..Default::default()
    };
    let mut as_n3 = kpb::replication_client::ReplicationClient::new(c.pki.node_channel("n3", &c.nodes[1].addr));
    let answer = as_n3.request_grant(ask.clone()).await.unwrap().into_inner();
    assert!(!answer.granted, "a candidate granted an epoch during its own promotion: {answer:?}");
    assert!(answer.reason.contains("is executing its own promotion"), "{}", answer.reason);
    assert!(!promotion.is_finished(), "the answer came while the candidacy ran");
    let done = promotion.await.unwrap().unwrap().into_inner();
    assert_eq!(common::verdict(&done), Ok(()), "{done:?}");
}
