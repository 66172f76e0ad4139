//! Issue 4: replication, promotion, demotion and forced promotion across three real node
//! processes on loopback, with SIGKILL for crashes and a TCP proxy for partitions. A checker
//! runs over every scenario: one primary per epoch, and every acknowledged write is on every
//! later primary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::time::Duration;

use aerodb::kernel::records::ActionKind;
use aerodb::proto::kernel as kpb;
use common::{
    Cluster, Load, Rng, Spec, WAIT, assert_all_present, check_single_writer_per_epoch, kernel_execute, verdict,
    wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a2_switchover_demote_n1_promote_n2_writes_go_on_and_nothing_acknowledged_is_lost() {
    let c = Cluster::start(Spec::default()).await;
    let load = Load::start(&c, 0, 4, 5_000);
    load.wait_acks(100).await;
    assert_eq!(verdict(&kernel_execute(&c, 0, ActionKind::Demote, false).await), Ok(()));
    let s = c.wait_role(0, kpb::Role::Demoted).await;
    let fence = s.promotion.unwrap().fence_index;
    assert!(fence > 1);
    // The Fence reaches n2 (it pulls from the demoted primary until a new one exists).
    wait_for("n2 applied the Fence", WAIT, || async {
        c.observe(1).await?.promotion?.current_epoch_fenced.then_some(())
    })
    .await;
    let r = kernel_execute(&c, 1, ActionKind::Promote, false).await;
    assert_eq!(verdict(&r), Ok(()), "{r:?}");
    c.wait_role(1, kpb::Role::Primary).await;
    *load.target.lock().unwrap() = 1;
    let before = load.count();
    load.wait_acks(before + 100).await;
    c.wait_following(0, "n2").await;
    c.wait_following(2, "n2").await;
    let acked = load.stop().await;
    c.wait_replicated(WAIT).await;
    assert_all_present(&c, 1, &acked, "after switchover").await;
    // n1 and n3 hold exactly n2's log.
    let lasts: Vec<u64> = futures_lasts(&c).await;
    assert!(lasts.windows(2).all(|w| w[0] == w[1]), "{lasts:?}");
    check_single_writer_per_epoch(&c);
}

async fn futures_lasts(c: &Cluster) -> Vec<u64> {
    let mut v = Vec::new();
    for i in 0..c.nodes.len() {
        v.push(c.observe(i).await.unwrap().replication.unwrap().last_index);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a1_promotion_while_the_primary_is_active_is_primary_active() {
    let c = Cluster::start(Spec::default()).await;
    let r = kernel_execute(&c, 1, ActionKind::Promote, false).await;
    let rec = r.record.unwrap();
    let rej = rec.rejection.unwrap();
    assert_eq!(rej.code, "AERO_PROMOTION_PRIMARY_ACTIVE");
    assert_eq!(rej.invariants, vec!["P6-A1".to_string()]);
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary));
    assert_eq!(c.role(1).await, Some(kpb::Role::Replica));
    // No grant was asked for: no epoch was used up.
    for i in 0..3 {
        assert_eq!(c.observe(i).await.unwrap().authority.unwrap().highest_granted_epoch, 0);
    }
    check_single_writer_per_epoch(&c);
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_s1_p6_s2_promotion_of_a_replica_that_is_behind_is_replica_behind() {
    let mut c = Cluster::start(Spec::default()).await;
    // n3 stops; writes commit on n1 + n2; n1 is demoted (its Fence on n1 and n2).
    c.nodes[2].proc.kill();
    let load = Load::start(&c, 0, 2, 100);
    load.wait_acks(50).await;
    let acked = load.stop().await;
    assert_eq!(verdict(&kernel_execute(&c, 0, ActionKind::Demote, false).await), Ok(()));
    // n3 comes back but is held back (it does not pull): it lacks committed entries.
    c.restart_node(2, &[("AERODB_FAILPOINTS", "follower.hold=sleep(0)")]).await;
    // Without force: check 2 comes first (n3 has not applied the Fence).
    let r = kernel_execute(&c, 2, ActionKind::Promote, false).await;
    assert_eq!(verdict(&r), Err("AERO_PROMOTION_PRIMARY_ACTIVE".into()));
    // Forced: check 2 is skipped and check 3 refuses.
    let r = kernel_execute(&c, 2, ActionKind::Promote, true).await;
    let rej = r.record.unwrap().rejection.unwrap();
    assert_eq!(rej.code, "AERO_PROMOTION_REPLICA_BEHIND", "{rej:?}");
    assert_eq!(rej.invariants, vec!["P6-S1".to_string(), "P6-S2".to_string()]);
    assert_eq!(c.role(2).await, Some(kpb::Role::Replica));
    // n2, which holds everything, can be promoted.
    assert_eq!(verdict(&kernel_execute(&c, 1, ActionKind::Promote, false).await), Ok(()));
    c.wait_role(1, kpb::Role::Primary).await;
    assert_all_present(&c, 1, &acked, "n2 holds every acknowledged write").await;
    check_single_writer_per_epoch(&c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a1a_sigkill_primary_force_promote_then_old_primary_halts_and_follows_after_demotion() {
    let mut c = Cluster::start(Spec::default()).await;
    // n3 is stopped during the load, so n1 and n2 form every majority and n2 holds every
    // acknowledged write (replicas do not copy from each other: a promotion needs the most
    // up-to-date log, and the kernel refuses anything less).
    c.nodes[2].proc.pause();
    let load = Load::start(&c, 0, 4, 20_000);
    load.wait_acks(200).await;
    c.nodes[0].proc.kill();
    let acked_by_n1 = load.stop().await;
    c.nodes[2].proc.resume();
    let r = kernel_execute(&c, 1, ActionKind::Promote, true).await;
    assert_eq!(verdict(&r), Ok(()), "{r:?}");
    let rec = r.record.unwrap();
    let Some(kpb::action_result::Result::Promotion(p)) = rec.result.unwrap().result else { panic!("promotion result") };
    assert!(p.forced);
    assert_eq!(p.granted_by, vec!["n2".to_string(), "n3".to_string()]);
    c.wait_role(1, kpb::Role::Primary).await;
    assert_all_present(&c, 1, &acked_by_n1, "every write n1 acknowledged is on n2").await;
    // The old primary restarts believing it leads epoch 1: it takes no write and halts.
    c.restart_node(0, &[]).await;
    let s = c.wait_role(0, kpb::Role::Halted).await;
    assert_eq!(s.authority.unwrap().halt_reason, kpb::HaltReason::AuthorityAmbiguity as i32);
    let mut d0 = c.data(0);
    let e = d0.put(kpb::PutRequest { key: b"stale".to_vec(), value: b"x".to_vec() }).await.unwrap_err();
    assert_eq!(common::wire(&e).code, "AERO_NODE_HALTED");
    // Nor can it be promoted, even forced (force skips the fence check, so check 1 is what stands
    // between a halted node and authority): the kernel records the rejection.
    let r = kernel_execute(&c, 0, ActionKind::Promote, true).await;
    let rejection = r.record.as_ref().and_then(|d| d.rejection.as_ref()).map(|j| j.code.as_str());
    assert_eq!(rejection, Some("AERO_PROMOTION_NODE_HALTED"), "{r:?}");
    assert_eq!(c.role(0).await, Some(kpb::Role::Halted), "still halted");
    // Writes go on at n2.
    let load = Load::start(&c, 1, 2, 50);
    let acked_by_n2 = load.stop().await;
    // A demotion of the halted node naming another epoch than the one it led (1) is refused as
    // a stale plan, and the node stays halted: its Fence would end an epoch it never led.
    let seq = common::control_seq(&c, 0).await;
    let mut stale = common::exec_req(&common::key("stale-demote"), ActionKind::Demote, "n1", false, seq, "op");
    stale.plan_epoch = 2;
    let r = c.kernel(0).execute(common::with_plan_epoch(&c, stale).await).await.unwrap().into_inner();
    assert_eq!(verdict(&r), Err("AERO_PLAN_EPOCH_STALE".to_string()), "{r:?}");
    assert_eq!(c.role(0).await, Some(kpb::Role::Halted), "still halted");
    // Demoting the halted node lets it follow n2 (discarding, with a copy, anything of epoch 1
    // that no majority held).
    let r = kernel_execute(&c, 0, ActionKind::Demote, false).await;
    assert_eq!(verdict(&r), Ok(()), "{r:?}");
    c.wait_following(0, "n2").await;
    c.wait_replicated(WAIT).await;
    assert_all_present(&c, 1, &acked_by_n1, "n1's acknowledged writes").await;
    assert_all_present(&c, 1, &acked_by_n2, "n2's acknowledged writes").await;
    let hashes: Vec<_> = (0..3)
        .map(|i| {
            let es = aerodb::kernel::wal::read_dir(&c.nodes[i].cfg.data_dir.join("wal")).unwrap();
            es.last().map(|e| e.hash())
        })
        .collect();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "every node holds the same log");
    check_single_writer_per_epoch(&c);
}

/// P6-A2: a demotion is answered once its Fence is committed on a majority (the wait is bounded
/// by `fence_wait`, which only a lost majority reaches). Both replicas hold every entry they
/// receive for 800 ms before appending it, so an answer that did not wait would find its Fence
/// not yet committed.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a2_a_demotion_is_answered_once_its_fence_is_committed_on_a_majority() {
    let mut c = Cluster::start(Spec::default()).await;
    for i in [1, 2] {
        c.restart_node(i, &[("AERODB_FAILPOINTS", "kernel.follower.before_append=sleep(800)")]).await;
    }
    let r = kernel_execute(&c, 0, ActionKind::Demote, false).await;
    assert_eq!(verdict(&r), Ok(()), "{r:?}");
    let s = c.observe(0).await.expect("n1 observable");
    let promotion = s.promotion.expect("promotion view");
    assert!(promotion.current_epoch_fenced, "n1's log ends with its Fence: {promotion:?}");
    let commit = s.replication.expect("replication view").commit_index;
    assert!(
        commit >= promotion.fence_index,
        "the demotion was answered with its Fence ({}) not yet committed (commit index {commit})",
        promotion.fence_index
    );
}

/// P6-S1: a new primary answers no read before it has applied every write acknowledged under the
/// previous epoch. Its applying is slowed by a fail point, so a read served from its state at the
/// moment of promotion would miss them; the read waits instead, bounded.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_s1_a_new_primary_serves_no_read_before_it_applied_every_acknowledged_write() {
    let mut c = Cluster::start(Spec::default()).await;
    c.restart_node(1, &[("AERODB_FAILPOINTS", "kernel.before_apply=sleep(400)")]).await;
    c.nodes[2].proc.pause();
    let mut d0 = c.data(0);
    for i in 0..10u8 {
        d0.put(kpb::PutRequest { key: vec![b'r', i], value: vec![i] }).await.unwrap();
    }
    c.nodes[0].proc.kill();
    c.nodes[2].proc.resume();
    let r = kernel_execute(&c, 1, ActionKind::Promote, true).await;
    assert_eq!(verdict(&r), Ok(()), "{r:?}");
    let mut d1 = c.data(1);
    for i in 0..10u8 {
        let g = d1.get(kpb::GetRequest { key: vec![b'r', i] }).await.expect("the new primary answers").into_inner();
        assert!(g.found && g.value == vec![i], "acknowledged key r{i} is read back from the new primary");
    }
    check_single_writer_per_epoch(&c);
}

/// P6-S1: a primary that restarts answers no read before its whole log is committed and applied
/// again. Here the only peer up is behind and slow to append (a fail point), so the first majority
/// the restarted primary can count sits below writes it acknowledged before the crash; a read
/// served from that state would miss them.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_s1_a_restarted_primary_serves_no_read_before_its_acknowledged_writes_are_committed_again() {
    let mut c = Cluster::start(Spec::default()).await;
    c.nodes[2].proc.kill();
    let mut d0 = c.data(0);
    for i in 0..10u8 {
        d0.put(kpb::PutRequest { key: vec![b's', i], value: vec![i] }).await.unwrap();
    }
    c.nodes[1].proc.kill();
    c.restart_node(0, &[]).await;
    c.restart_node(2, &[("AERODB_FAILPOINTS", "kernel.follower.before_append=sleep(1500)")]).await;
    let mut d0 = c.data(0);
    for i in 0..10u8 {
        let g = d0.get(kpb::GetRequest { key: vec![b's', i] }).await.expect("the primary answers").into_inner();
        assert!(g.found && g.value == vec![i], "acknowledged key s{i} is read back after the restart");
    }
    check_single_writer_per_epoch(&c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a1_two_forced_promotions_at_the_same_moment_never_give_one_epoch_two_primaries() {
    let mut c = Cluster::start(Spec::default()).await;
    let mut rng = Rng::from_env("concurrent_forced_promotions");
    let mut primary = 0usize;
    let mut acked_all = std::collections::BTreeMap::new();
    for round in 0..30 {
        let load = Load::start(&c, primary, 2, 10);
        let acked = load.stop().await;
        acked_all.extend(acked);
        c.nodes[primary].proc.kill();
        let others: Vec<usize> = (0..3).filter(|i| *i != primary).collect();
        let (a, b) = (others[0], others[1]);
        let (ra, rb) = tokio::join!(
            kernel_execute(&c, a, ActionKind::Promote, true),
            kernel_execute(&c, b, ActionKind::Promote, true)
        );
        let wins: Vec<usize> =
            [(a, &ra), (b, &rb)].into_iter().filter(|(_, r)| verdict(r).is_ok()).map(|(i, _)| i).collect();
        assert!(wins.len() <= 1, "round {round}: both forced promotions won: {ra:?} {rb:?}");
        let next = match wins.first() {
            Some(w) => *w,
            None => {
                // Both failed (each kept its own grant): one more forced promotion, alone, of the
                // most up-to-date survivor (either when they are level).
                let best = common::most_up_to_date(&c, &[a, b]).await;
                let level = c.observe(a).await.unwrap().replication.unwrap().last_index
                    == c.observe(b).await.unwrap().replication.unwrap().last_index;
                let pick = if level && rng.below(2) == 0 { if best == a { b } else { a } } else { best };
                let r = kernel_execute(&c, pick, ActionKind::Promote, true).await;
                assert_eq!(verdict(&r), Ok(()), "round {round}: a lone forced promotion wins: {r:?}");
                pick
            }
        };
        c.wait_role(next, kpb::Role::Primary).await;
        let loser = if next == a { b } else { a };
        c.restart_node(primary, &[]).await;
        // The old primary halts (a newer epoch exists); demote it so it follows.
        c.wait_role(primary, kpb::Role::Halted).await;
        assert_eq!(verdict(&kernel_execute(&c, primary, ActionKind::Demote, false).await), Ok(()));
        c.wait_following(primary, &c.nodes[next].id).await;
        c.wait_following(loser, &c.nodes[next].id).await;
        assert_all_present(&c, next, &acked_all, &format!("round {round}")).await;
        check_single_writer_per_epoch(&c);
        primary = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_s1_a_partition_never_yields_an_acknowledged_write_the_next_primary_lacks() {
    let c = Cluster::start(Spec { proxied: true, ..Default::default() }).await;
    let load = Load::start(&c, 0, 4, 50_000);
    load.wait_acks(100).await;
    // Cut n1 off: nothing reaches it (followers can no longer pull, so it can commit nothing).
    c.proxies[0].arm(common::proxy::Cut::BlackHole);
    c.proxies[0].cut_all();
    // The operator forces the most up-to-date survivor (the kernel refuses anything less).
    let next = common::most_up_to_date(&c, &[1, 2]).await;
    let r = kernel_execute(&c, next, ActionKind::Promote, true).await;
    assert_eq!(verdict(&r), Ok(()), "{r:?}");
    c.wait_role(next, kpb::Role::Primary).await;
    let acked_by_n1 = load.stop().await;
    // n1 learns of the new epoch through its own status calls and halts.
    c.wait_role(0, kpb::Role::Halted).await;
    assert_all_present(&c, next, &acked_by_n1, "every write acknowledged across the partition").await;
    // Heal the partition: n1 stays halted until an operator demotes it.
    c.proxies[0].arm(common::proxy::Cut::None);
    assert_eq!(c.role(0).await, Some(kpb::Role::Halted));
    assert_eq!(verdict(&kernel_execute(&c, 0, ActionKind::Demote, false).await), Ok(()));
    c.wait_following(0, &c.nodes[next].id).await;
    let _ = Duration::ZERO;
    check_single_writer_per_epoch(&c);
}

/// P6-S2 at the voter: a node grants an epoch only to a candidate whose log is at least as up to
/// date as its own (last entry's epoch first, then index). Replication.RequestGrant is called on
/// the replica n2 directly, with every other rule satisfied (a member, a fresh epoch above every
/// one n2 knows, n2 not a primary and not promoting), so only the log rule can refuse. A log one
/// entry behind, and a log with a higher index but an older last epoch, are refused naming the
/// rule, and n2 records nothing; the same request with n2's own position is granted (the control).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_s2_a_voter_never_grants_to_a_candidate_whose_log_is_behind() {
    let c = Cluster::start(Spec::default()).await;
    let voter = 1;
    // The candidate n3 asks with its own certificate (a node speaks only for itself).
    let mut grants = kpb::replication_client::ReplicationClient::new(c.pki.node_channel("n3", &c.nodes[voter].addr));
    let snapshot = c.observe(voter).await.unwrap();
    let authority = |s: &kpb::NodeSnapshot| {
        let a = s.authority.clone().unwrap();
        (a.role, a.epoch, a.highest_granted_epoch, a.granted_to)
    };
    let before = authority(&snapshot);
    assert_eq!(before.0, kpb::Role::Replica as i32);
    assert_eq!(before.2, 0, "n2 has granted nothing yet");
    let ledger_before = c.ledger(voter).len();
    let r = snapshot.replication.clone().unwrap();
    let (tail_epoch, tail_index) = (r.last_epoch, r.last_index);
    assert!(tail_epoch >= 1 && tail_index >= 1, "n2's log holds at least the genesis EpochStart: {r:?}");
    let epoch = snapshot.observation.clone().unwrap().epoch + 1;
    let ask = |last_log_epoch: u64, last_log_index: u64| kpb::GrantRequest {
        cluster_id: "test".into(),
        candidate_id: "n3".into(),
        epoch,
        last_log_epoch,
        last_log_index,
        forced: true,
    };

    let behind = [
        ("one entry behind in the same epoch", tail_epoch, tail_index - 1),
        ("a higher index of an older epoch", tail_epoch - 1, tail_index + 1_000),
    ];
    for (what, last_log_epoch, last_log_index) in behind {
        let g = grants.request_grant(ask(last_log_epoch, last_log_index)).await.unwrap().into_inner();
        assert!(!g.granted, "{what}: granted to a candidate whose log is behind the voter's: {g:?}");
        assert!(g.reason.contains("is behind this node's"), "{what}: the refusal names the log rule: {g:?}");
        assert_eq!((g.voter_last_epoch, g.voter_last_index), (tail_epoch, tail_index), "{what}");
        assert_eq!(g.voter_highest_granted_epoch, 0, "{what}");
        assert_eq!(authority(&c.observe(voter).await.unwrap()), before, "{what}: n2's authority is unchanged");
        assert_eq!(c.ledger(voter).len(), ledger_before, "{what}: n2 recorded no grant");
    }
    assert_eq!(c.role(voter).await, Some(kpb::Role::Replica));

    // The control: the same request with a log exactly as up to date as n2's is granted.
    let g = grants.request_grant(ask(tail_epoch, tail_index)).await.unwrap().into_inner();
    assert!(g.granted, "a candidate whose log equals the voter's is granted: {g:?}");
    assert_eq!(g.voter_highest_granted_epoch, epoch);
    let a = c.observe(voter).await.unwrap().authority.unwrap();
    assert_eq!((a.highest_granted_epoch, a.granted_to.as_str()), (epoch, "n3"));
}
