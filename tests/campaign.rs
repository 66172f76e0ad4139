//! Issue 8: a bounded, seeded crash campaign (the seed is printed) of concurrent observers,
//! actors and writers, with SIGKILLs of control planes and nodes and proxy cuts at random
//! points, followed by a checker:
//! - every idempotency key executed at most once (and on at most one node);
//! - every kernel execution has a durable `confirmed` audit record naming the same target;
//! - every acknowledged write survives;
//! - every audit chain verifies;
//! - no epoch has two primaries.
//!
//! Issue 16 adds racing operators: two actors, one on each control plane, confirming at the same
//! time on the same target or on different ones (two demotions of one primary, promotions of one
//! or two replicas for the same new epoch, forced promotions of both survivors of a killed
//! primary), with a control plane SIGKILLed mid-race and connections cut. The checker adds: at
//! most one executed promotion creates each epoch and at most one executed demotion ends it, and
//! an executed promotion creates exactly the epoch its plan named.
//!
//! Issue 20 runs it with a snapshot every 64 KiB of WAL and no retention, so online snapshots,
//! compaction and catch-up by snapshot happen between the crashes.
//!
//! Issue 16 also runs it at the network layer (`campaign_netns_short`): every node in its own
//! network namespace (testkit's `netns`), and the proxy's connection cuts replaced by real
//! partitions: a node cut off from its peers both ways or one direction between two nodes
//! dropped (for a whole race, or while one action runs and writes go on), or a node's whole link
//! down, the control planes losing it too (for 0.3-2 s while an action runs on it); each healed.
//!
//! `campaign_short` and `campaign_netns_short` run in the test command, one after the other
//! (AERODB_CAMPAIGN_SECONDS, default 20 each); `campaign_long` is `--ignored` and runs for as
//! long as AERODB_CAMPAIGN_SECONDS says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aerodb::audit::record::Stage;
use aerodb::kernel::records::ActionResult;
use aerodb::kernel::records::{Decision, LedgerEvent};
use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use common::netns::{self, Net};
use common::proxy::Cut;
use common::{Cluster, Load, Rng, Spec, WAIT, check_single_writer_per_epoch, key};
use tokio::sync::Mutex;

/// The campaigns of this file run one at a time: two at once on two cores would measure the
/// machine, not the system.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

fn seconds(default: u64) -> Duration {
    Duration::from_secs(std::env::var("AERODB_CAMPAIGN_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_short() {
    let _one = ONE_AT_A_TIME.lock().await;
    campaign(seconds(20), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_netns_short() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(net) = Net::create(3) else { return };
    campaign(seconds(20), Some(net)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long campaign: AERODB_CAMPAIGN_SECONDS=600 cargo test --features failpoints --test campaign -- --ignored"]
async fn campaign_long() {
    let _one = ONE_AT_A_TIME.lock().await;
    campaign(seconds(600), None).await;
}

/// A fault at the network layer, applied while one action runs and healed after it.
#[derive(Debug, Clone, Copy)]
enum Partition {
    /// Node `.0` cut off from its peers both ways (the control planes still reach it).
    FromPeers(usize),
    /// What node `.0` sends to node `.1` is dropped; the other direction is delivered.
    OneWay(usize, usize),
    /// Node `.0`'s link down: nothing in or out, the control planes included.
    LinkDown(usize),
}

impl Partition {
    /// Any of the three; `link_down` false leaves out the one that cuts the control planes off.
    fn random(rng: &mut Rng, link_down: bool) -> Self {
        let n = rng.below(3) as usize;
        match rng.below(if link_down { 3 } else { 2 }) {
            0 => Self::FromPeers(n),
            1 => Self::OneWay(n, (n + 1 + rng.below(2) as usize) % 3),
            _ => Self::LinkDown(n),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::FromPeers(_) => "partition: a node from its peers",
            Self::OneWay(..) => "partition: one direction dropped",
            Self::LinkDown(_) => "partition: a node's link down",
        }
    }

    /// The node the fault is about (the action runs on it).
    fn node(self) -> usize {
        match self {
            Self::FromPeers(n) | Self::OneWay(n, _) | Self::LinkDown(n) => n,
        }
    }

    fn set(self, net: &Net, on: bool) {
        match self {
            Self::FromPeers(n) => net.isolate_from_peers(n, on),
            Self::OneWay(a, b) => net.set_direction(a, b, on),
            Self::LinkDown(n) => net.set_link(n, !on),
        }
    }
}

/// The node that reports itself primary, if exactly one does.
async fn primary(c: &Cluster) -> Option<usize> {
    let mut found = Vec::new();
    for i in 0..c.nodes.len() {
        if c.nodes[i].proc.child.is_some() && c.role(i).await == Some(kpb::Role::Primary) {
            found.push(i);
        }
    }
    (found.len() == 1).then(|| found[0])
}

/// The nodes that report themselves halted.
async fn halted(c: &Cluster) -> Vec<usize> {
    let mut found = Vec::new();
    for i in 0..c.nodes.len() {
        if c.role(i).await == Some(kpb::Role::Halted) {
            found.push(i);
        }
    }
    found
}

/// One operator action through control plane `cp`; errors are part of the campaign.
/// Requests and confirms `command` on `target` through control plane `cp`; returns how the last
/// attempt ended, for the heal's diagnostics (the checker judges the outcome, not this).
async fn act(
    c: &Cluster,
    cp: usize,
    command: cpb::Command,
    target: usize,
    rng: &mut Rng,
    keys: &Mutex<Vec<String>>,
) -> String {
    let mut actor = c.actor(cp);
    let k = key("cmp");
    keys.lock().await.push(k.clone());
    let target = c.nodes[target].id.clone();
    let r =
        tokio::time::timeout(Duration::from_secs(20), common::request_and_confirm(&mut actor, command, &target, &k))
            .await;
    // An unknown outcome is re-issued by the "operator" with the same key half of the time:
    // the kernel answers it from its ledger, it never runs twice.
    if let Ok(Err(s)) = &r
        && aerodb::wire::WireError::from_status(s).is_none_or(|w| w.outcome == aerodb::wire::Outcome::Unknown)
        && rng.below(2) == 0
    {
        let again = tokio::time::timeout(
            Duration::from_secs(20),
            common::request_and_confirm(&mut actor, command, &target, &k),
        )
        .await;
        return format!("{command:?} on {target} through cp{}: {}", cp + 1, ended(&again));
    }
    format!("{command:?} on {target} through cp{}: {}", cp + 1, ended(&r))
}

/// How one attempt of [`act`] ended, in a line.
fn ended<T, E: std::fmt::Debug>(r: &Result<Result<T, E>, tokio::time::error::Elapsed>) -> String {
    match r {
        Ok(Ok(_)) => "answered".into(),
        Ok(Err(e)) => format!("{e:?}").chars().take(300).collect(),
        Err(_) => "no answer within 20 s".into(),
    }
}

/// Brings back a primary the way an operator would.
async fn repair(c: &Cluster, cp: usize, rng: &mut Rng, keys: &Mutex<Vec<String>>) -> Vec<String> {
    let mut done = Vec::new();
    for i in halted(c).await {
        done.push(act(c, cp, cpb::Command::RequestDemotion, i, rng, keys).await);
    }
    if primary(c).await.is_some() {
        return done;
    }
    let up: Vec<usize> = (0..3).filter(|i| c.nodes[*i].proc.child.is_some()).collect();
    let best = common::most_up_to_date(c, &up).await;
    let fenced = c.observe(best).await.and_then(|s| s.promotion).is_some_and(|p| p.current_epoch_fenced);
    let command = if fenced { cpb::Command::RequestPromotion } else { cpb::Command::ForcePromotion };
    done.push(act(c, cp, command, best, rng, keys).await);
    done
}

/// Chaos around one race: a control plane SIGKILLed after a delay.
#[derive(Debug, Clone, Copy)]
struct Chaos {
    kill: Option<(usize, Duration)>,
}

/// Two operators, one on each control plane, confirming at the same time (`a` through cp0, `b`
/// through cp1), with `chaos` applied while they run.
async fn both(
    cl: &Cluster,
    a: (cpb::Command, usize),
    b: (cpb::Command, usize),
    chaos: Chaos,
    rng: &mut Rng,
    keys: &Mutex<Vec<String>>,
) {
    let (mut ra, mut rb) = (Rng(rng.next_u64()), Rng(rng.next_u64()));
    let kill = async {
        if let Some((cp, after)) = chaos.kill {
            // The delay places the kill at a random point of the race; it is fault injection,
            // not a correctness signal.
            tokio::time::sleep(after).await;
            if let Some(child) = &cl.controls[cp].proc.child {
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    };
    tokio::join!(act(cl, 0, a.0, a.1, &mut ra, keys), act(cl, 1, b.0, b.1, &mut rb, keys), kill);
}

/// Waits (at most 5 s) until one of `nodes` holds the Fence of the current epoch.
async fn wait_fenced(cl: &Cluster, nodes: &[usize]) -> bool {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            for &t in nodes {
                if cl.observe(t).await.and_then(|s| s.promotion).is_some_and(|p| p.current_epoch_fenced) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok()
}

/// One race of two operators; returns its name for the event counts.
async fn race(
    cl: &mut Cluster,
    net: Option<&Net>,
    rng: &mut Rng,
    keys: &Mutex<Vec<String>>,
    events: &mut BTreeMap<&'static str, u32>,
) -> &'static str {
    let Some(p) = primary(cl).await else { return "race skipped (no primary)" };
    let others = [(p + 1) % 3, (p + 2) % 3];
    let chaos =
        Chaos { kill: (rng.below(3) == 0).then(|| (rng.below(2) as usize, Duration::from_millis(rng.below(300)))) };
    let cut = (rng.below(3) == 0).then(|| match net {
        // A partition between the nodes for the whole race (its routes refuse at once, so
        // connections recover as soon as it heals); links go down only in the timed event below.
        Some(net) => {
            let p = Partition::random(rng, false);
            p.set(net, true);
            Err(p)
        }
        None => {
            let n = rng.below(3) as usize;
            let how = [Cut::BeforeRequest, Cut::MidRequest, Cut::AfterRequestBeforeAnswer, Cut::MidAnswer]
                [rng.below(4) as usize];
            cl.control_proxies[n].arm(how);
            Ok(n)
        }
    });
    let name = match rng.below(3) {
        // Both demote the primary; then both promote, the same replica or one each.
        0 => {
            both(cl, (cpb::Command::RequestDemotion, p), (cpb::Command::RequestDemotion, p), chaos, rng, keys).await;
            let first = rng.below(2) as usize;
            let (t1, t2) = (others[first], if rng.below(2) == 0 { others[first] } else { others[1 - first] });
            if wait_fenced(cl, &[t1, t2]).await {
                let calm = Chaos { kill: None };
                both(cl, (cpb::Command::RequestPromotion, t1), (cpb::Command::RequestPromotion, t2), calm, rng, keys)
                    .await;
            }
            if t1 == t2 {
                "race: demote twice, promote one replica twice"
            } else {
                "race: demote twice, promote both replicas"
            }
        }
        // The primary dies; both operators force a different survivor into the same new epoch.
        1 => {
            cl.nodes[p].proc.kill();
            let force = cpb::Command::ForcePromotion;
            both(cl, (force, others[0]), (force, others[1]), chaos, rng, keys).await;
            cl.restart_node(p, &[]).await;
            if tokio::time::timeout(Duration::from_secs(5), async {
                while cl.role(p).await != Some(kpb::Role::Halted) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .is_ok()
            {
                act(cl, 0, cpb::Command::RequestDemotion, p, rng, keys).await;
            }
            "race: force both survivors"
        }
        // One demotes the primary while the other runs diagnostics on a replica.
        _ => {
            let diag = cpb::Command::RunDiagnostics;
            both(cl, (diag, others[0]), (cpb::Command::RequestDemotion, p), chaos, rng, keys).await;
            "race: demotion beside diagnostics"
        }
    };
    match (cut, net) {
        (Some(Ok(n)), _) => {
            cl.control_proxies[n].arm(Cut::None);
            *events.entry("race chaos: connection cut").or_default() += 1;
        }
        (Some(Err(p)), Some(net)) => {
            p.set(net, false);
            *events.entry("race chaos: partition").or_default() += 1;
        }
        _ => {}
    }
    if chaos.kill.is_some() {
        *events.entry("race chaos: control plane killed").or_default() += 1;
    }
    for cp in 0..2 {
        if cl.controls[cp].proc.exited().is_some() || cl.controls[cp].proc.child.is_none() {
            cl.restart_control(cp, &[]).await;
        }
    }
    name
}

/// The campaign, through the proxies, or (with `net`) with every node in its own namespace of
/// `net` and network partitions in place of the proxy's cuts.
async fn campaign(budget: Duration, net: Option<Net>) {
    let mut rng = Rng::from_env("campaign");
    let spec = Spec {
        control_planes: 2,
        control_proxied: net.is_none(),
        // Issue 20: snapshots, compaction past restarted nodes and catch-up by snapshot happen
        // throughout the campaign (a snapshot every 64 KiB of WAL, nothing kept for a lagging
        // peer).
        lifecycle: aerodb::kernel::lifecycle::Lifecycle {
            snapshot_wal_bytes: 64 << 10,
            wal_segment_bytes: 64 << 10,
            retention_wal_bytes: 0,
        },
        ..Default::default()
    };
    let cluster = match &net {
        Some(net) => netns::cluster_with(net, spec).await,
        None => Cluster::start(spec).await,
    };
    let c = Arc::new(Mutex::new(cluster));
    let keys: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<std::sync::Mutex<BTreeMap<Vec<u8>, Vec<u8>>>> = Arc::default();
    let reads = Arc::new(AtomicU64::new(0));

    // Writers: always aimed at the node that is primary right now.
    let writer = {
        let (c, stop, acked) = (c.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let (client, target) = {
                    let c = c.lock().await;
                    match primary(&c).await {
                        Some(p) => (c.data(p), p),
                        None => {
                            drop(c);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    }
                };
                let _ = target;
                for _ in 0..20 {
                    let k = format!("cmp-{n:07}").into_bytes();
                    n += 1;
                    // 1 KiB values: the WAL passes the snapshot threshold every ~60 writes.
                    let mut v = k.clone();
                    v.resize(1024, b'.');
                    let mut d = client.clone();
                    if let Ok(Ok(_)) = tokio::time::timeout(
                        Duration::from_secs(6),
                        d.put(kpb::PutRequest { key: k.clone(), value: v.clone() }),
                    )
                    .await
                    {
                        acked.lock().unwrap().insert(k, v);
                    }
                }
            }
        })
    };
    // Observers, through both control planes.
    let observers: Vec<_> = (0..2)
        .map(|cp| {
            let (c, stop, reads) = (c.clone(), stop.clone(), reads.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let mut o = c.lock().await.observer(cp);
                    if o.get_cluster_state(cpb::GetClusterStateRequest {}).await.is_ok() {
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            })
        })
        .collect();

    let deadline = tokio::time::Instant::now() + budget;
    let mut events = BTreeMap::<&str, u32>::new();
    let mut round = 0u64;
    while tokio::time::Instant::now() < deadline {
        round += 1;
        let choice = rng.below(100);
        let mut cl = c.lock().await;
        let cp = rng.below(2) as usize;
        // An operator does not leave a cluster without a primary: demote halted nodes, then
        // promote the most up-to-date node (forced only when it holds no Fence).
        if primary(&cl).await.is_none() {
            let _ = repair(&cl, cp, &mut rng, &keys).await;
            *events.entry("repair").or_default() += 1;
            continue;
        }
        // Every third round races two operators (so even the short campaign has several races).
        if round % 3 == 1 {
            let name = race(&mut cl, net.as_ref(), &mut rng, &keys, &mut events).await;
            *events.entry(name).or_default() += 1;
            continue;
        }
        match choice {
            // Operators: diagnostics anywhere.
            0..=29 => {
                let t = rng.below(3) as usize;
                act(&cl, cp, cpb::Command::RunDiagnostics, t, &mut rng, &keys).await;
                *events.entry("diagnostics").or_default() += 1;
            }
            // Operators: a switchover (demote the primary, promote a caught-up replica).
            30..=44 => {
                if let Some(p) = primary(&cl).await {
                    act(&cl, cp, cpb::Command::RequestDemotion, p, &mut rng, &keys).await;
                    let t = (p + 1 + rng.below(2) as usize) % 3;
                    let fenced = tokio::time::timeout(Duration::from_secs(5), async {
                        loop {
                            if cl.observe(t).await.and_then(|s| s.promotion).is_some_and(|p| p.current_epoch_fenced) {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    })
                    .await;
                    if fenced.is_ok() {
                        act(&cl, cp, cpb::Command::RequestPromotion, t, &mut rng, &keys).await;
                    }
                    *events.entry("switchover").or_default() += 1;
                }
            }
            // SIGKILL a control plane, restart it.
            45..=59 => {
                cl.controls[cp].proc.kill();
                cl.restart_control(cp, &[]).await;
                *events.entry("kill control plane").or_default() += 1;
            }
            // SIGKILL a replica, restart it.
            60..=69 => {
                let p = primary(&cl).await;
                let r = (0..3).find(|i| Some(*i) != p && rng.below(2) == 0).unwrap_or((p.unwrap_or(0) + 1) % 3);
                cl.nodes[r].proc.kill();
                cl.restart_node(r, &[]).await;
                *events.entry("kill replica").or_default() += 1;
            }
            // SIGKILL the primary: the operator forces the most up-to-date survivor, restarts the
            // old primary and demotes it out of its halt.
            70..=79 => {
                if let Some(p) = primary(&cl).await {
                    cl.nodes[p].proc.kill();
                    let others: Vec<usize> = (0..3).filter(|i| *i != p).collect();
                    let best = common::most_up_to_date(&cl, &others).await;
                    act(&cl, cp, cpb::Command::ForcePromotion, best, &mut rng, &keys).await;
                    cl.restart_node(p, &[]).await;
                    if tokio::time::timeout(Duration::from_secs(5), async {
                        while cl.role(p).await != Some(kpb::Role::Halted) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    })
                    .await
                    .is_ok()
                    {
                        act(&cl, cp, cpb::Command::RequestDemotion, p, &mut rng, &keys).await;
                    }
                    *events.entry("kill primary").or_default() += 1;
                }
            }
            // At the network layer: a partition while an action runs on the node it concerns,
            // and writes go on, then healed.
            _ if net.is_some() => {
                let net = net.as_ref().expect("checked");
                let p = Partition::random(&mut rng, true);
                // Healed after 0.3-2 s whether or not the action has finished: a link silently
                // down for longer leaves TCP backing off its retransmissions for as long again,
                // which tests/netns_partitions.rs covers. The delay places the heal; it is fault
                // injection, not a correctness signal.
                let heal_after = Duration::from_millis(300 + rng.below(1700));
                p.set(net, true);
                tokio::join!(act(&cl, cp, cpb::Command::RunDiagnostics, p.node(), &mut rng, &keys), async {
                    tokio::time::sleep(heal_after).await;
                    p.set(net, false);
                });
                // The operator acts on a whole view again: a node whose link just came back may
                // not answer at once, and taking its silence for "no primary" would start a
                // repair while that primary still leads.
                common::wait_for("every running node answers Observe after the partition healed", WAIT, || async {
                    for i in 0..cl.nodes.len() {
                        if cl.nodes[i].proc.child.is_some() && cl.observe(i).await.is_none() {
                            return None;
                        }
                    }
                    Some(())
                })
                .await;
                *events.entry(p.name()).or_default() += 1;
            }
            // Cut a control plane's connection to a node at a random point.
            _ => {
                let cut = [Cut::BeforeRequest, Cut::MidRequest, Cut::AfterRequestBeforeAnswer, Cut::MidAnswer]
                    [rng.below(4) as usize];
                let n = rng.below(3) as usize;
                cl.control_proxies[n].arm(cut);
                let t = n;
                act(&cl, cp, cpb::Command::RunDiagnostics, t, &mut rng, &keys).await;
                cl.control_proxies[n].arm(Cut::None);
                *events.entry("proxy cut").or_default() += 1;
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    let _ = writer.await;
    for o in observers {
        let _ = o.await;
    }

    // Heal: every process up, a primary in place, every log caught up.
    let mut cl = c.lock().await;
    for i in 0..3 {
        if cl.nodes[i].proc.child.is_none() {
            cl.restart_node(i, &[]).await;
        }
    }
    for cp in 0..2 {
        if cl.controls[cp].proc.child.is_none() {
            cl.restart_control(cp, &[]).await;
        }
    }
    // A node can be left halted (AuthorityAmbiguity after a forced promotion in a late round),
    // or halt only once it is back and learns of the newer epoch, while another node is primary:
    // the operator demotes it, or it never catches up. So the heal repairs until one primary
    // leads, no node is halted and every log is caught up, within a bounded deadline.
    // No proxy cut may outlive the rounds (each is disarmed where it was armed; this says so),
    // and the repairs alternate between the control planes, as two operators would, so one
    // control plane still reconnecting to a node (after a cut mid-call, HTTP/2 keep-alive takes
    // up to 25 s to give a dead connection up) does not stall the heal. Each repair's outcome is
    // printed: a failed heal then says what the operator saw.
    for proxy in &cl.control_proxies {
        proxy.arm(Cut::None);
    }
    let mut heal = Rng(rng.next_u64());
    let mut repairs = 0usize;
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    let p = loop {
        let p = primary(&cl).await;
        if let Some(p) = p
            && halted(&cl).await.is_empty()
            && cl.is_replicated().await
        {
            break p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {:?} healing: one primary ({p:?}), no node halted ({:?}), every log caught up",
            3 * WAIT,
            halted(&cl).await
        );
        if p.is_none() || !halted(&cl).await.is_empty() {
            for line in repair(&cl, repairs % 2, &mut heal, &keys).await {
                eprintln!("campaign: heal: {line}");
            }
            repairs += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };

    // The checker.
    let acked = acked.lock().unwrap().clone();
    common::assert_all_present(&cl, p, &acked, "campaign: every acknowledged write survives").await;
    let mut executed_on: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut decided_on: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for i in 0..3 {
        for r in cl.ledger(i) {
            if let LedgerEvent::Decided(d) = &r.body {
                decided_on.entry(d.idempotency_key.clone()).or_default().insert(cl.nodes[i].id.clone());
                if matches!(d.decision, Decision::Executed { .. }) {
                    executed_on.entry(d.idempotency_key.clone()).or_default().push(cl.nodes[i].id.clone());
                }
            }
        }
    }
    for (k, nodes) in &executed_on {
        assert_eq!(nodes.len(), 1, "key {k} executed more than once: {nodes:?}");
    }
    for (k, nodes) in &decided_on {
        assert_eq!(nodes.len(), 1, "key {k} decided on more than one node: {nodes:?}");
    }
    let mut confirmed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for cp in 0..2 {
        let report = aerodb::audit::verify::verify_dir(&cl.controls[cp].cfg.audit_dir, None);
        assert!(report.ok, "cp{cp} audit chain: {:?}", report.problem);
        for b in cl.audit_records(cp) {
            if b.draft.stage == Stage::Confirmed {
                confirmed.entry(b.draft.idempotency_key.clone()).or_default().insert(b.draft.target.clone());
            }
        }
    }
    // Racing operators: every executed authority change is confirmed for its own target, and
    // each epoch is created by at most one executed promotion and ended by at most one
    // executed demotion, whichever control plane and operator asked.
    let mut created: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let mut ended: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for i in 0..3 {
        for r in cl.ledger(i) {
            let LedgerEvent::Decided(d) = &r.body else { continue };
            let Decision::Executed { result } = &d.decision else { continue };
            let targets = confirmed.get(&d.idempotency_key);
            assert!(
                targets.is_some_and(|t| t.contains(&d.action.target_node)),
                "kernel execution of {} on {} has no durable confirmed record for that target (confirmed: {targets:?})",
                d.idempotency_key,
                d.action.target_node
            );
            match result {
                ActionResult::Promotion { epoch, .. } => {
                    assert_eq!(
                        *epoch, d.plan_epoch,
                        "promotion {} created another epoch than its plan named",
                        d.idempotency_key
                    );
                    created.entry(d.plan_epoch).or_default().insert(d.idempotency_key.clone());
                }
                ActionResult::Demotion { .. } => {
                    assert_ne!(d.plan_epoch, 0, "demotion {} names no epoch", d.idempotency_key);
                    ended.entry(d.plan_epoch).or_default().insert(d.idempotency_key.clone());
                }
                ActionResult::Diagnostics { .. } => {}
            }
        }
    }
    for (epoch, keys) in &created {
        assert_eq!(keys.len(), 1, "epoch {epoch} created by more than one executed promotion: {keys:?}");
    }
    for (epoch, keys) in &ended {
        assert_eq!(keys.len(), 1, "epoch {epoch} ended by more than one executed demotion: {keys:?}");
    }
    check_single_writer_per_epoch(&cl);
    let races: u32 = events.iter().filter(|(k, _)| k.starts_with("race:")).map(|(_, n)| n).sum();
    let logs: Vec<String> = cl.nodes.iter().map(|n| n.proc.log_text()).collect();
    let snapshots_written: usize = logs.iter().map(|l| l.matches("online snapshot written").count()).sum();
    let installs: usize = logs.iter().map(|l| l.matches("installed a snapshot").count()).sum();
    eprintln!("campaign: {snapshots_written} online snapshots written, {installs} catch-ups by snapshot");
    eprintln!(
        "campaign: {:?}; {} keys, {} executed, {} promotions and {} demotions executed over {} races, \
         {} acknowledged writes checked, {} reads",
        events,
        keys.lock().await.len(),
        executed_on.len(),
        created.len(),
        ended.len(),
        races,
        acked.len(),
        reads.load(Ordering::Relaxed)
    );
    assert!(!executed_on.is_empty() && !acked.is_empty(), "the campaign did something");
    assert!(races > 0, "the campaign raced operators");
    let _ = Load::start;
}
