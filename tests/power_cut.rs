//! Issue 16: power cuts. Every node and control plane runs on its own lazy disk
//! (`common::lazyfs`, a FUSE filesystem that keeps what was fsync'd apart from what was only
//! written, and directory entries apart until the directory is fsync'd). A cut SIGKILLs every
//! process of the machines named and throws away everything they did not make durable, sometimes
//! keeping a torn prefix of the last unsynced append. Cuts land under concurrent acknowledged
//! writes, confirmed actions (diagnostics, a demotion and a promotion) and audited Observer reads,
//! on one node, a majority, every node, and the control plane. After each restart the checker
//! asserts:
//! - every acknowledged write is served by the primary (P6-S1);
//! - every action answered EXECUTED has its `Decided` record in exactly one ledger, and no key is
//!   decided twice anywhere; re-asking for it with the same key is answered REPLAYED (P7-F3);
//! - every epoch a promotion answered EXECUTED created is granted in a majority of ledgers (P6-A1);
//! - every answered action has its durable `confirmed` and `executed` audit records, every
//!   answered Observer read is covered by a durable `read` record, every checkpoint
//!   Auditor.GetCheckpoint handed out is still in `checkpoints.log`, and the chain verifies (P7-O3);
//! - no epoch had two primaries;
//! - recovery follows the decision table: a torn tail is truncated and the process starts, a
//!   byte flipped before the tail makes the node refuse to start naming the file and offset.
//!
//! Two more cut points: right after `init` and right after each process's first start (what
//! they wrote must be durable when they return or listen), and right after a demoted node
//! discarded its unreplicated suffix (it must stay discarded). WAL and audit segments are small
//! here (test-only limits), so cuts also land on segment rolls.
//!
//! `scripts/fsync-removals` removes each fsync, fdatasync and directory fsync of the WAL,
//! ledger (and claims log) and audit writers in turn and runs this file; each removal makes a test
//! here fail except three that no guarantee needs (docs/traceability.md, "Power loss", says why).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aerodb::audit::record::Stage;
use aerodb::kernel::records::{Decision, LedgerEvent};
use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use aerodb::tls::identity::Role;
use common::lazyfs::{self, Tear};
use common::{Cluster, Load, Rng, Spec, WAIT, assert_all_present, check_single_writer_per_epoch, key, wait_for};

/// The identity whose reads the checker counts.
const READER: &str = "power-reader";

/// An action the control plane answered EXECUTED.
#[derive(Debug, Clone)]
struct Acted {
    key: String,
    correlation_id: String,
    command: cpb::Command,
    target: String,
}

/// What the clients were told, and what was checked.
#[derive(Default)]
struct Facts {
    writes: BTreeMap<Vec<u8>, Vec<u8>>,
    actions: Vec<Acted>,
    /// Epochs created by promotions answered EXECUTED.
    epochs: Vec<u64>,
    reads_answered: u64,
    /// Signed checkpoints Auditor.GetCheckpoint handed out (tree size, signed note).
    checkpoints: Vec<(u64, String)>,
    cuts: u32,
    torn: u32,
    torn_truncated_on_restart: u32,
    audit_records_checked: u64,
}

/// A 3-node cluster and one control plane on lazy disks; `None` (reason printed) without FUSE.
async fn lazy_cluster(test: &str) -> Option<Cluster> {
    let scratch = tempfile::tempdir().unwrap();
    if let Err(why) = lazyfs::available(scratch.path()) {
        eprintln!("SKIPPED {test}: {why}");
        return None;
    }
    Some(Cluster::start(lazy_spec()).await)
}

/// Lazy disks, and segments small enough (test-only limits) that WAL and audit segments roll
/// every few records, so cuts land on and after rolls too.
fn lazy_spec() -> Spec {
    Spec {
        lazy_disks: true,
        env: vec![
            ("AERODB_TEST_WAL_SEGMENT_BYTES".into(), "2048".into()),
            ("AERODB_TEST_AUDIT_SEGMENT_BYTES".into(), "8192".into()),
        ],
        ..Default::default()
    }
}

/// An Observer client with the [`READER`] identity (issued on first use).
fn reader(c: &Cluster) -> cpb::observer_client::ObserverClient<tonic::transport::Channel> {
    let addr = &c.controls[0].addr;
    let paths = aerodb::tls::material::TlsPaths {
        ca: c.pki.dir.join("ca.pem"),
        crl: vec![],
        cert: c.pki.dir.join(format!("{READER}.pem")),
        key: c.pki.dir.join(format!("{READER}.key")),
    };
    let ch = if paths.cert.exists() {
        c.pki.channel_with(&paths, addr)
    } else {
        common::extra_identity(c, Role::Observer, READER, addr)
    };
    cpb::observer_client::ObserverClient::new(ch)
}

/// Half the cuts drop every unsynced byte; the others keep a random prefix of the last
/// unsynced append (a torn write).
fn tears(rng: &mut Rng) -> impl FnMut(&str) -> Tear + '_ {
    move |_| if rng.below(2) == 0 { Tear::None } else { Tear::KeepPermille(rng.below(1000) as u32) }
}

/// Concurrent confirmed diagnostics and Observer reads through control plane 0, until stopped.
struct Operators {
    stop: Arc<AtomicBool>,
    acted: Arc<std::sync::Mutex<Vec<Acted>>>,
    reads: Arc<AtomicU64>,
    checkpoints: Arc<std::sync::Mutex<Vec<(u64, String)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Operators {
    fn start(c: &Cluster, targets: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acted: Arc<std::sync::Mutex<Vec<Acted>>> = Default::default();
        let reads = Arc::new(AtomicU64::new(0));
        let mut actor = c.actor(0);
        let (s, a) = (stop.clone(), acted.clone());
        let actions = tokio::spawn(async move {
            for i in 0..500usize {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let target = &targets[i % targets.len()];
                let k = key("pc");
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    common::request_and_confirm(&mut actor, cpb::Command::RunDiagnostics, target, &k),
                )
                .await;
                match r {
                    Ok(Ok(r)) => {
                        assert_eq!(r.outcome, cpb::ActionOutcome::Executed as i32, "a fresh key executes");
                        a.lock().unwrap().push(Acted {
                            key: k,
                            correlation_id: r.correlation_id,
                            command: cpb::Command::RunDiagnostics,
                            target: target.clone(),
                        });
                    }
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
        let mut observer = reader(c);
        let mut auditor = c.auditor(0);
        let checkpoints: Arc<std::sync::Mutex<Vec<(u64, String)>>> = Default::default();
        let (s, n, cps) = (stop.clone(), reads.clone(), checkpoints.clone());
        let readers = tokio::spawn(async move {
            for i in 0..5000 {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                if i % 8 == 0
                    && let Ok(Ok(cp)) = tokio::time::timeout(
                        Duration::from_secs(5),
                        auditor.get_checkpoint(cpb::GetCheckpointRequest {}),
                    )
                    .await
                {
                    let cp = cp.into_inner();
                    cps.lock().unwrap().push((cp.tree_size, cp.note));
                }
                let r = tokio::time::timeout(
                    Duration::from_secs(5),
                    observer.get_cluster_state(cpb::GetClusterStateRequest {}),
                )
                .await;
                if let Ok(Ok(_)) = r {
                    n.fetch_add(1, Ordering::SeqCst);
                }
                // Paced below the per-identity record budget (100/s), so each answered read has a
                // record of its own; an aggregate would be counted as well.
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        });
        Self { stop, acted, reads, checkpoints, tasks: vec![actions, readers] }
    }

    fn acted(&self) -> usize {
        self.acted.lock().unwrap().len()
    }

    async fn stop(self, facts: &mut Facts) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        facts.actions.extend(self.acted.lock().unwrap().iter().cloned());
        facts.reads_answered += self.reads.load(Ordering::SeqCst);
        facts.checkpoints.extend(self.checkpoints.lock().unwrap().iter().cloned());
    }
}

/// Waits for load and operators to have made progress since `before` (writes, actions), then a
/// random few more writes: the cut lands while all of them are in flight.
async fn progress(load: &Load, ops: &Operators, writes_before: usize, actions_before: usize, rng: &mut Rng) {
    load.wait_acks(writes_before + 5 + rng.below(30) as usize).await;
    let acted = ops.acted.clone();
    wait_for("an action answered in this round", WAIT, || {
        let n = acted.lock().unwrap().len();
        async move { (n > actions_before).then_some(()) }
    })
    .await;
}

/// Where a cut lands.
#[derive(Debug, Clone, Copy)]
enum When {
    /// After some progress of the workload (acknowledged writes and an answered action).
    Progress,
    /// When the first machine named dies at this fail point (armed `abort@N`, N random): between
    /// a write and its fsync, where the unsynced bytes (and so a torn tail) are.
    At(&'static str),
}

/// Cuts power to the nodes and control planes named, under the workload, and restarts them.
async fn cut_and_restart(
    c: &mut Cluster,
    facts: &mut Facts,
    rng: &mut Rng,
    primary: usize,
    (nodes, controls): (&[usize], &[usize]),
    when: When,
) {
    if let When::At(point) = when {
        let armed = format!("{point}=abort@{}", 3 + rng.below(20));
        match nodes.first() {
            Some(&i) => c.restart_node(i, &[("AERODB_FAILPOINTS", &armed)]).await,
            None => c.restart_control(controls[0], &[("AERODB_FAILPOINTS", &armed)]).await,
        }
    }
    let targets: Vec<String> = c.nodes.iter().map(|n| n.id.clone()).collect();
    let load = Load::start(c, primary, 3, 2000);
    let ops = Operators::start(c, targets);
    let (w, a) = (facts.writes.len(), ops.acted());
    match when {
        When::Progress => progress(&load, &ops, w, a, rng).await,
        When::At(point) => {
            let proc = match nodes.first() {
                Some(&i) => &mut c.nodes[i].proc,
                None => &mut c.controls[controls[0]].proc,
            };
            proc.wait_exit(&format!("{} dies at {point}", proc.name)).await;
        }
    }
    let reports = c.power_cut(nodes, controls, tears(rng));
    facts.cuts += reports.len() as u32;
    facts.torn += reports.iter().filter(|(_, r)| r.torn.is_some_and(|t| t.1 > 0)).count() as u32;
    for (name, r) in &reports {
        eprintln!("power cut {name} ({when:?}): {r:?}");
    }
    ops.stop(facts).await;
    facts.writes.extend(load.stop().await);
    let torn_logged = |c: &Cluster| -> usize {
        let node_logs = nodes.iter().map(|&i| c.nodes[i].proc.log_text());
        let control_logs = controls.iter().map(|&i| c.controls[i].proc.log_text());
        node_logs.chain(control_logs).map(|l| l.matches("truncated a torn").count()).sum()
    };
    let before = torn_logged(c);
    for &i in nodes {
        c.restart_node(i, &[]).await;
    }
    for &cp in controls {
        c.restart_control(cp, &[]).await;
    }
    facts.torn_truncated_on_restart += (torn_logged(c) - before) as u32;
    c.wait_replicated(WAIT).await;
    check(c, facts, primary).await;
}

/// The checker (see the file's docs).
async fn check(c: &mut Cluster, facts: &mut Facts, primary: usize) {
    assert_all_present(c, primary, &facts.writes, "after the power cut").await;

    let ledgers: Vec<_> = (0..c.nodes.len()).map(|i| c.ledger(i)).collect();
    let mut decided: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    for (i, l) in ledgers.iter().enumerate() {
        for d in common::decided(l) {
            let executed = matches!(d.decision, Decision::Executed { .. });
            decided.entry(d.idempotency_key.clone()).or_default().push((c.nodes[i].id.clone(), executed));
        }
    }
    for (k, by) in &decided {
        assert!(by.len() == 1, "key {k} decided more than once: {by:?}");
    }
    for a in &facts.actions {
        let by = decided.get(&a.key).unwrap_or_else(|| panic!("answered EXECUTED but no Decided record: {a:?}"));
        assert!(by[0].1, "answered EXECUTED but the ledger says rejected: {a:?} {by:?}");
        if a.command == cpb::Command::RunDiagnostics {
            assert_eq!(by[0].0, a.target, "decided by its target: {a:?}");
        }
    }
    for &epoch in &facts.epochs {
        let grants = ledgers
            .iter()
            .filter(|l| l.iter().any(|r| matches!(&r.body, LedgerEvent::EpochGranted { epoch: e, .. } if *e == epoch)))
            .count();
        assert!(grants * 2 > c.nodes.len(), "epoch {epoch} is granted in {grants} ledgers, not a majority");
    }

    // The audit directory is read while nothing appends to it: a live control plane writes read
    // records and checkpoints at any moment, and a checkpoint appended after the reader passed
    // the records would name records it did not read. SIGKILL keeps the page cache, so the stop
    // loses nothing; the control plane restarts after the reading.
    c.controls[0].proc.kill();
    let report = aerodb::audit::verify::verify_dir(&c.controls[0].cfg.audit_dir, None);
    assert!(report.ok, "audit chain verifies after the cut: {:?} {:?}", report.problem, report.notes);
    let records = c.audit_records(0);
    c.restart_control(0, &[]).await;
    facts.audit_records_checked = records.len() as u64;
    let mut stages: BTreeMap<&str, HashSet<Stage>> = BTreeMap::new();
    let mut reads_covered = 0u64;
    for r in &records {
        stages.entry(r.draft.correlation_id.as_str()).or_default().insert(r.draft.stage);
        if r.draft.stage == Stage::Read && r.draft.identity.as_ref().is_some_and(|w| w.name == READER) {
            reads_covered += r.draft.detail.get("aggregated_count").and_then(|n| n.parse().ok()).unwrap_or(1);
        }
    }
    for a in &facts.actions {
        let s = stages.get(a.correlation_id.as_str());
        assert!(
            s.is_some_and(|s| s.contains(&Stage::Confirmed) && s.contains(&Stage::Executed)),
            "answered action without its durable confirmed and executed records: {a:?} has {s:?}"
        );
    }
    let kept = aerodb::audit::checkpoint::read_all(&c.controls[0].cfg.audit_dir).expect("checkpoints.log reads");
    for (size, note) in &facts.checkpoints {
        assert!(
            kept.iter().any(|(_, k, _)| k.size == *size && k.note == *note),
            "checkpoint of tree size {size} handed out by GetCheckpoint is not in the instance's checkpoints.log after the cut"
        );
    }
    assert!(
        reads_covered >= facts.reads_answered,
        "{} Observer reads were answered but only {reads_covered} have a durable record",
        facts.reads_answered
    );
    check_single_writer_per_epoch(c);
}

/// Every answered action asked again with its key is answered REPLAYED, and nothing ran twice.
async fn check_replays(c: &mut Cluster, facts: &mut Facts, primary: usize) {
    let mut actor = c.actor(0);
    for a in &facts.actions {
        let r = actor
            .request_action(cpb::RequestActionRequest {
                command: a.command as i32,
                target_node: a.target.clone(),
                idempotency_key: a.key.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            matches!(r.response, Some(cpb::request_action_response::Response::Replayed(_))),
            "{a:?} asked again after the cuts: {r:?}"
        );
    }
    check(c, facts, primary).await;
}

fn figures(test: &str, f: &Facts) {
    eprintln!(
        "{test}: {} cuts ({} torn, {} torn tails truncated on restart); checked {} acknowledged writes, {} \
         executed actions, {} answered reads, {} handed-out checkpoints, {} audit records; violations 0",
        f.cuts,
        f.torn,
        f.torn_truncated_on_restart,
        f.writes.len(),
        f.actions.len(),
        f.reads_answered,
        f.checkpoints.len(),
        f.audit_records_checked
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_s1_power_cut_of_one_node_loses_nothing_acknowledged() {
    let test = "power_cut_one_node";
    let Some(mut c) = lazy_cluster(test).await else { return };
    let mut rng = Rng::from_env(test);
    let mut facts = Facts::default();
    for victim in [1, 0, 2] {
        cut_and_restart(&mut c, &mut facts, &mut rng, 0, (&[victim], &[]), When::Progress).await;
    }
    for (victim, point) in [(1, "wal.before_fsync"), (0, "wal.before_fsync"), (2, "ledger.before_fsync")] {
        cut_and_restart(&mut c, &mut facts, &mut rng, 0, (&[victim], &[]), When::At(point)).await;
    }
    check_replays(&mut c, &mut facts, 0).await;
    figures(test, &facts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_s1_power_cut_of_a_majority_loses_nothing_acknowledged_and_corruption_fails_closed() {
    let test = "power_cut_majority";
    let Some(mut c) = lazy_cluster(test).await else { return };
    let mut rng = Rng::from_env(test);
    let mut facts = Facts::default();
    cut_and_restart(&mut c, &mut facts, &mut rng, 0, (&[0, 1], &[]), When::Progress).await;
    cut_and_restart(&mut c, &mut facts, &mut rng, 0, (&[1, 2], &[]), When::At("wal.before_fsync")).await;
    cut_and_restart(&mut c, &mut facts, &mut rng, 0, (&[0, 2], &[]), When::At("wal.before_fsync")).await;
    check_replays(&mut c, &mut facts, 0).await;

    // The decision table's other row: a byte flipped before the tail of a durable WAL (bit rot,
    // not a torn write) makes the node refuse to start, naming the file and the offset; with the
    // byte restored it starts.
    let seg = std::fs::read_dir(c.nodes[2].cfg.data_dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .min()
        .expect("a WAL segment");
    c.power_cut(&[2], &[], |_| Tear::None);
    let good = std::fs::read(&seg).unwrap();
    let header = aerodb::frame::HEADER_LEN as usize;
    let at = header + (good.len() - header) / 3;
    let mut bad = good.clone();
    bad[at] ^= 0x5a;
    std::fs::write(&seg, &bad).unwrap();
    let seen = c.nodes[2].proc.log_text().len();
    let log = c.nodes[2].proc.start_expecting_refusal().await[seen..].to_string();
    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    assert!(log.contains(&name) && log.contains("offset"), "refusal names the file and offset: {log}");
    std::fs::write(&seg, &good).unwrap();
    c.restart_node(2, &[]).await;
    c.wait_replicated(WAIT).await;
    check(&mut c, &mut facts, 0).await;
    figures(test, &facts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a1_power_cut_of_every_node_keeps_decisions_grants_and_writes() {
    let test = "power_cut_every_node";
    let Some(mut c) = lazy_cluster(test).await else { return };
    let mut rng = Rng::from_env(test);
    let mut facts = Facts::default();
    cut_and_restart(&mut c, &mut facts, &mut rng, 0, (&[0, 1, 2], &[]), When::Progress).await;

    // Authority moves (demote n1, promote n2) under writes; then every node loses power.
    let mut actor = c.actor(0);
    for (command, target) in [(cpb::Command::RequestDemotion, "n1"), (cpb::Command::RequestPromotion, "n2")] {
        if command == cpb::Command::RequestPromotion {
            // The Fence reaches a majority, not necessarily n2: promote once n2 holds it.
            wait_for("n2 holds the Fence of epoch 1", WAIT, || async {
                c.observe(1).await?.promotion?.current_epoch_fenced.then_some(())
            })
            .await;
        }
        let k = key("pc-authority");
        let r = common::request_and_confirm(&mut actor, command, target, &k).await.unwrap();
        assert_eq!(r.outcome, cpb::ActionOutcome::Executed as i32);
        facts.actions.push(Acted { key: k, correlation_id: r.correlation_id, command, target: target.into() });
    }
    let s = c.wait_role(1, kpb::Role::Primary).await;
    facts.epochs.push(s.authority.unwrap().epoch);
    cut_and_restart(&mut c, &mut facts, &mut rng, 1, (&[0, 1, 2], &[]), When::Progress).await;
    c.wait_role(1, kpb::Role::Primary).await;
    cut_and_restart(&mut c, &mut facts, &mut rng, 1, (&[1, 0, 2], &[0]), When::At("ledger.before_fsync")).await;
    cut_and_restart(&mut c, &mut facts, &mut rng, 1, (&[1, 0, 2], &[0]), When::At("wal.before_fsync")).await;
    check_replays(&mut c, &mut facts, 1).await;
    figures(test, &facts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_o3_power_cut_of_the_control_plane_keeps_every_answered_audit_record() {
    let test = "power_cut_control_plane";
    let Some(mut c) = lazy_cluster(test).await else { return };
    let mut rng = Rng::from_env(test);
    let mut facts = Facts::default();

    // A cut of a control plane that has only answered reads (its first segment, no checkpoint
    // yet beyond the start).
    let mut observer = reader(&c);
    for _ in 0..5 {
        observer.get_cluster_state(cpb::GetClusterStateRequest {}).await.unwrap();
        facts.reads_answered += 1;
    }
    let reports = c.power_cut(&[], &[0], tears(&mut rng));
    facts.cuts += reports.len() as u32;
    c.restart_control(0, &[]).await;
    check(&mut c, &mut facts, 0).await;

    for when in [When::Progress, When::At("audit.before_fsync"), When::At("audit.before_fsync")] {
        cut_and_restart(&mut c, &mut facts, &mut rng, 0, (&[], &[0]), when).await;
    }
    check_replays(&mut c, &mut facts, 0).await;
    figures(test, &facts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_s1_power_cut_of_every_machine_right_after_its_first_start_then_each_restarts() {
    let test = "power_cut_at_start";
    let scratch = tempfile::tempdir().unwrap();
    if let Err(why) = lazyfs::available(scratch.path()) {
        eprintln!("SKIPPED {test}: {why}");
        return;
    }
    let mut rng = Rng::from_env(test);
    let mut facts = Facts::default();
    // Every process starts for the first time on its fresh disk (the files it creates at start:
    // claims.log, the first audit segment, checkpoints.log) and loses power as soon as it
    // listens, before anything is asked of it.
    let mut c = Cluster::build(lazy_spec()).await;
    // First the power goes right after `aerodb node init` returned: what init wrote (the data
    // dir, the genesis ledger record, the WAL and its first entry) must already be durable.
    facts.cuts += c.power_cut(&[0, 1, 2], &[], |_| Tear::None).len() as u32;
    for i in 0..c.nodes.len() {
        c.nodes[i].proc.start();
    }
    c.controls[0].proc.start();
    wait_for("every process listens", WAIT, || {
        let up = c.nodes.iter().all(|n| n.proc.log_text().contains("node listening"))
            && c.controls[0].proc.log_text().contains("control plane listening");
        async move { up.then_some(()) }
    })
    .await;
    let reports = c.power_cut(&[0, 1, 2], &[0], |_| Tear::None);
    facts.cuts += reports.len() as u32;
    for i in 0..c.nodes.len() {
        c.restart_node(i, &[]).await;
    }
    c.restart_control(0, &[]).await;
    c.wait_replicated(WAIT).await;
    check(&mut c, &mut facts, 0).await;
    // A checkpoint handed out right after the restart, before an audit segment rolls (a roll
    // fsyncs the audit directory too), survives a cut: checkpoints.log, its directory entry and
    // the checkpoint are durable before GetCheckpoint answers.
    let cp = c.auditor(0).get_checkpoint(cpb::GetCheckpointRequest {}).await.unwrap().into_inner();
    facts.checkpoints.push((cp.tree_size, cp.note));
    facts.cuts += c.power_cut(&[], &[0], |_| Tear::None).len() as u32;
    c.restart_control(0, &[]).await;
    check(&mut c, &mut facts, 0).await;
    // And they work: a round of the workload, cut again, restarted, checked.
    cut_and_restart(&mut c, &mut facts, &mut rng, 0, (&[0, 1, 2], &[0]), When::Progress).await;
    check_replays(&mut c, &mut facts, 0).await;
    figures(test, &facts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_s2_power_cut_after_a_discarded_suffix_keeps_it_discarded_and_the_node_follows() {
    use aerodb::kernel::records::ActionKind;
    let test = "power_cut_discarded_suffix";
    let Some(mut c) = lazy_cluster(test).await else { return };
    let mut facts = Facts::default();
    // n3 stopped: n1 and n2 form every majority.
    c.nodes[2].proc.pause();
    let load = Load::start(&c, 0, 3, 2000);
    load.wait_acks(40).await;
    facts.writes.extend(load.stop().await);
    // n2 stopped too: n1 appends entries no majority holds (its unreplicated suffix, several
    // small segments long), then loses power.
    c.nodes[1].proc.pause();
    let mut d0 = c.data(0);
    let mut unreplicated = 0;
    for i in 0..200u8 {
        let put = d0.put(kpb::PutRequest { key: vec![b'u', i], value: vec![i; 64] });
        let _ = tokio::time::timeout(Duration::from_millis(100), put).await;
        let r = c.observe(0).await.and_then(|s| s.replication).expect("n1 observable");
        unreplicated = r.last_index - r.commit_index;
        if unreplicated > 30 {
            break;
        }
    }
    assert!(unreplicated > 30, "n1 holds {unreplicated} unreplicated entries (more than one 2 KiB segment wanted)");
    c.power_cut(&[0], &[], |_| Tear::None);
    c.nodes[1].proc.resume();
    c.nodes[2].proc.resume();
    let r = common::kernel_execute(&c, 1, ActionKind::Promote, true).await;
    assert_eq!(common::verdict(&r), Ok(()), "{r:?}");
    let s = c.wait_role(1, kpb::Role::Primary).await;
    facts.epochs.push(s.authority.unwrap().epoch);
    // n1 restarts halted; its demotion authorises the discard, and it dies right after (the
    // first append of what it then pulls), with the discard's effects as durable as they are.
    c.restart_node(0, &[("AERODB_FAILPOINTS", "kernel.follower.before_append=abort")]).await;
    c.wait_role(0, kpb::Role::Halted).await;
    let r = common::kernel_execute(&c, 0, ActionKind::Demote, false).await;
    assert_eq!(common::verdict(&r), Ok(()), "{r:?}");
    c.nodes[0].proc.wait_exit("n1 dies after discarding its suffix").await;
    assert!(
        c.ledger(0).iter().any(|r| matches!(r.body, LedgerEvent::SuffixDiscarded { .. })),
        "n1 discarded its suffix before dying"
    );
    let reports = c.power_cut(&[0], &[], |_| Tear::None);
    facts.cuts += 2;
    eprintln!("power cut n1 after the discard: {reports:?}");
    c.restart_node(0, &[]).await;
    c.wait_following(0, "n2").await;
    c.wait_replicated(WAIT).await;
    assert_ne!(c.role(0).await, Some(kpb::Role::Halted), "n1 follows, it does not halt");
    check(&mut c, &mut facts, 1).await;
    figures(test, &facts);
}

/// Online snapshots and WAL compaction on lazy disks: snapshots every 64 KiB of WAL, segments of
/// 2 KiB, no retention, so each node writes snapshots and removes the segments below them while
/// writes go on. Every node loses power after that (and once more right before a snapshot's
/// rename); restarted from snapshot + tail, no acknowledged write is lost, and each node's WAL
/// starts above index 1 (the compaction itself was durable, or its snapshot covers the gap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_s1_power_cut_after_online_snapshots_and_compaction_loses_nothing_acknowledged() {
    let test = "power_cut_snapshots";
    let scratch = tempfile::tempdir().unwrap();
    if let Err(why) = lazyfs::available(scratch.path()) {
        eprintln!("SKIPPED {test}: {why}");
        return;
    }
    let lifecycle = aerodb::kernel::lifecycle::Lifecycle {
        snapshot_wal_bytes: 64 * 1024,
        wal_segment_bytes: 64 * 1024,
        retention_wal_bytes: 0,
    };
    let mut c = Cluster::start(Spec { lifecycle, ..lazy_spec() }).await;
    let mut rng = Rng::from_env(test);
    let mut facts = Facts::default();
    let mut data = c.data(0);
    let mut round = 0u32;
    // Acknowledged 1 KiB writes until every node has snapshotted and compacted (bounded).
    while compacted(&c).await.is_none() {
        assert!(round < 2000, "no snapshot and compaction on every node after {round} writes");
        let (k, v) = (format!("snap-{round:05}").into_bytes(), vec![(round % 251) as u8; 1024]);
        data.put(kpb::PutRequest { key: k.clone(), value: v.clone() }).await.unwrap();
        facts.writes.insert(k, v);
        round += 1;
    }
    eprintln!("{test}: every node snapshotted and compacted after {round} writes");
    cut_and_restart(&mut c, &mut facts, &mut rng, 0, (&[0, 1, 2], &[]), When::Progress).await;
    // More than one threshold more (80 KiB), so every node writes a snapshot past this point and
    // compacts again; then every node loses power once more.
    let mut data = c.data(0);
    let start = c.observe(0).await.and_then(|s| s.replication).map(|r| r.last_index).unwrap_or(0);
    for i in 0..80u32 {
        let (k, v) = (format!("snap2-{i:05}").into_bytes(), vec![(i % 241) as u8; 1024]);
        data.put(kpb::PutRequest { key: k.clone(), value: v.clone() }).await.unwrap();
        facts.writes.insert(k, v);
    }
    wait_for("every node wrote a snapshot past the second batch's start", WAIT, || async {
        for i in 0..c.nodes.len() {
            let newest = c.observe(i).await?.snapshots?.snapshots.iter().map(|x| x.last_index).max()?;
            if newest <= start {
                return None;
            }
        }
        Some(())
    })
    .await;
    cut_and_restart(&mut c, &mut facts, &mut rng, 0, (&[1, 0, 2], &[]), When::Progress).await;
    wait_for("every node snapshotted and compacted after the cuts", WAIT, || compacted(&c)).await;
    check_replays(&mut c, &mut facts, 0).await;
    figures(test, &facts);
}

/// Every node has written a snapshot and its WAL starts above index 1 (compacted below it).
async fn compacted(c: &Cluster) -> Option<()> {
    for i in 0..c.nodes.len() {
        let s = c.observe(i).await?;
        if s.snapshots?.snapshots.is_empty() || s.wal?.first_index <= 1 {
            return None;
        }
    }
    Some(())
}
