//! Issue 16: partitions at the network layer. Each node runs in its own network namespace behind
//! a veth pair and a bridge (`testkit/src/netns.rs`); links are cut (`ip link set down`), one
//! direction is dropped (a blackhole route on one side), or slowed (`tc`). The scenarios of the
//! proxy-based partition test in `tests/replication.rs`, with real packets lost:
//! - a primary cut off from its peers acknowledges no write;
//! - the majority side is switched over by a forced promotion (a demotion cannot reach the old
//!   primary), and keeps every write the old primary acknowledged;
//! - after healing, the old primary halts, and follows the new one once demoted;
//! - one writer per epoch, no acknowledged write lost, over slow links too.
//!
//! Every test skips with a printed reason where network namespaces cannot be made (not root, no
//! `ip`), and removes its namespaces and bridge even when it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;
use aerodb_testkit::netns;

use std::time::Duration;

use aerodb::kernel::records::ActionKind;
use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use common::{
    Cluster, Load, WAIT, assert_all_present, check_single_writer_per_epoch, kernel_execute, verdict, wait_for,
};
use netns::Net;

/// How the old primary (n1) is cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Packets between n1 and each peer dropped both ways; the root namespace still reaches n1.
    IsolatedFromPeers,
    /// Only what n1 sends to its peers is dropped; what they send still arrives.
    OutboundToPeersDropped,
    /// n1's link down: nothing reaches it, not even the test.
    LinkDown,
}

fn apply(net: &Net, fault: Fault, on: bool) {
    match fault {
        Fault::IsolatedFromPeers => net.isolate_from_peers(0, on),
        Fault::OutboundToPeersDropped => {
            net.set_direction(0, 1, on);
            net.set_direction(0, 2, on);
        }
        Fault::LinkDown => net.set_link(0, !on),
    }
}

async fn follows(c: &Cluster, i: usize, primary: &str) {
    wait_for(&format!("{} follows {primary}", c.nodes[i].id), WAIT, || async {
        let s = c.observe(i).await?;
        (s.replication?.following == primary).then_some(())
    })
    .await
}

/// Puts `key` to node `i`: whether it was acknowledged (bounded: the kernel answers a write it
/// cannot commit within its write-ack timeout of 5 s).
async fn acknowledged(c: &Cluster, i: usize, key: &[u8]) -> bool {
    let mut d = c.data(i);
    let put = d.put(kpb::PutRequest { key: key.to_vec(), value: key.to_vec() });
    matches!(tokio::time::timeout(Duration::from_secs(15), put).await, Ok(Ok(_)))
}

async fn partitioned_primary(fault: Fault) {
    let Some(net) = Net::create(3) else { return };
    let c = netns::cluster(&net).await;
    let load = Load::start(&c, 0, 4, 50_000);
    load.wait_acks(100).await;
    apply(&net, fault, true);
    // A primary that cannot reach a majority acknowledges nothing (with its link down, the
    // write does not even reach it).
    let probe = b"netns-probe-written-during-the-partition";
    assert!(!acknowledged(&c, 0, probe).await, "{fault:?}: the cut-off primary acknowledged a write");
    // The operator forces the most up-to-date node of the majority side (a demotion of n1 is
    // impossible: its peers cannot reach it).
    let next = common::most_up_to_date(&c, &[1, 2]).await;
    let r = kernel_execute(&c, next, ActionKind::Promote, true).await;
    assert_eq!(verdict(&r), Ok(()), "{fault:?}: {r:?}");
    c.wait_role(next, kpb::Role::Primary).await;
    let acked_by_n1 = load.stop().await;
    assert!(!acked_by_n1.is_empty());
    assert_all_present(&c, next, &acked_by_n1, "every write n1 acknowledged before the partition").await;
    // The majority side takes writes while the partition lasts.
    let load = Load::start(&c, next, 2, 40);
    load.wait_acks(80).await;
    let acked_by_next = load.stop().await;
    assert_eq!(acked_by_next.len(), 80, "{fault:?}: the new primary acknowledges every write");
    // Heal: n1 learns of the new epoch and halts; it leads nothing until an operator demotes it.
    apply(&net, fault, false);
    let s = c.wait_role(0, kpb::Role::Halted).await;
    assert_eq!(s.authority.unwrap().halt_reason, kpb::HaltReason::AuthorityAmbiguity as i32);
    assert!(!acknowledged(&c, 0, b"netns-probe-after-healing").await, "{fault:?}: a halted node acknowledged");
    assert_eq!(verdict(&kernel_execute(&c, 0, ActionKind::Demote, false).await), Ok(()));
    follows(&c, 0, &c.nodes[next].id).await;
    c.wait_replicated(WAIT).await;
    assert_all_present(&c, next, &acked_by_n1, "n1's acknowledged writes after healing").await;
    assert_all_present(&c, next, &acked_by_next, "the new primary's acknowledged writes after healing").await;
    let state = common::scan_all(&c, next).await;
    assert!(!state.contains_key(&probe[..]), "{fault:?}: a write no majority held survived");
    check_single_writer_per_epoch(&c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_p6_s1_a_primary_isolated_from_its_peers_acknowledges_nothing_and_healing_keeps_every_acknowledged_write()
{
    partitioned_primary(Fault::IsolatedFromPeers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_p6_s1_a_primary_whose_packets_to_its_peers_are_dropped_one_way_acknowledges_nothing_and_loses_nothing() {
    partitioned_primary(Fault::OutboundToPeersDropped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_p6_a1a_a_primary_whose_link_is_down_is_forced_over_and_after_healing_halts_until_demoted() {
    partitioned_primary(Fault::LinkDown).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_p6_a2_a_switchover_over_slow_links_loses_no_acknowledged_write_and_keeps_one_writer_per_epoch() {
    let Some(net) = Net::create(3) else { return };
    let c = netns::cluster(&net).await;
    let how: Vec<&str> = (0..3).map(|i| net.slow(i)).collect();
    eprintln!("slow links: {how:?}");
    let load = Load::start(&c, 0, 4, 400);
    load.wait_acks(60).await;
    // A switchover through the control plane: demote n1, promote the replica that holds the
    // Fence of epoch 1.
    let mut actor = c.actor(0);
    common::request_and_confirm(&mut actor, cpb::Command::RequestDemotion, "n1", &common::key("netns"))
        .await
        .expect("demotion over slow links");
    let next = wait_for("a replica holds the Fence", WAIT, || async {
        for t in [1, 2] {
            if c.observe(t).await.and_then(|s| s.promotion).is_some_and(|p| p.current_epoch_fenced) {
                return Some(t);
            }
        }
        None
    })
    .await;
    let target = c.nodes[next].id.clone();
    common::request_and_confirm(&mut actor, cpb::Command::RequestPromotion, &target, &common::key("netns"))
        .await
        .expect("promotion over slow links");
    c.wait_role(next, kpb::Role::Primary).await;
    *load.target.lock().unwrap() = next;
    let acked = load.stop().await;
    c.wait_replicated(WAIT).await;
    assert!(acked.len() >= 60);
    assert_all_present(&c, next, &acked, "every write acknowledged over slow links").await;
    check_single_writer_per_epoch(&c);
}
