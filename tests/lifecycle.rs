//! Issue 20: the kernel's lifecycle across real node processes. Online snapshots while writes
//! and replication run, WAL compaction below them, catch-up by snapshot of a follower whose
//! entries were compacted, a damaged transfer refused and retried from scratch, and SIGKILL at
//! every new fail point. The checkers: every acknowledged write on the primary, every node's
//! state on disk (newest snapshot + WAL after it) identical, one primary per epoch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aerodb::kernel::entry::{Kind, decode_put};
use aerodb::kernel::lifecycle::Lifecycle;
use aerodb::kernel::records::ActionKind;
use aerodb::proto::kernel as kpb;
use common::{
    Cluster, Load, Spec, WAIT, assert_all_present, check_single_writer_per_epoch, kernel_execute, verdict, wait_for,
};

/// Snapshot every 256 KiB of WAL, 64 KiB segments, nothing kept for lagging peers.
fn small() -> Lifecycle {
    Lifecycle { snapshot_wal_bytes: 256 << 10, wal_segment_bytes: 64 << 10, retention_wal_bytes: 0 }
}

fn spec() -> Spec {
    Spec { control_planes: 0, lifecycle: small(), ..Default::default() }
}

/// Values of 2 KiB: a few hundred writes pass several snapshot thresholds.
const VALUE_BYTES: usize = 2048;

/// `count` puts of 2 KiB values to node `i` by `writers` concurrent writers; the acknowledged ones.
async fn put_big(c: &Cluster, i: usize, prefix: &str, count: u32, writers: u32) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let mut d = c.data(i);
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut acked = BTreeMap::new();
            for n in (w..count).step_by(writers as usize) {
                let key = format!("{prefix}-{n:06}").into_bytes();
                let mut value = vec![b'a' + (n % 26) as u8; VALUE_BYTES];
                value[..4].copy_from_slice(&n.to_le_bytes());
                let r = tokio::time::timeout(
                    Duration::from_secs(8),
                    d.put(kpb::PutRequest { key: key.clone(), value: value.clone() }),
                )
                .await;
                if let Ok(Ok(_)) = r {
                    acked.insert(key, value);
                }
            }
            acked
        }));
    }
    let mut all = BTreeMap::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// A stopped node's state as recovery would rebuild it: the newest snapshot that verifies, then
/// every WAL entry after it. Also its last index.
fn state_on_disk(dir: &Path) -> (BTreeMap<Vec<u8>, Vec<u8>>, u64) {
    use aerodb::kernel::snapshot;
    let (mut map, mut applied) = (BTreeMap::new(), 0u64);
    for d in snapshot::list(&dir.join("snapshots")) {
        let Ok(m) = snapshot::read_manifest(&d) else { continue };
        let Ok(data) = snapshot::read_data(&d, &m) else { continue };
        (map, applied) = (data, m.last_index);
        break;
    }
    let mut last = applied;
    for e in aerodb::kernel::wal::read_dir(&dir.join("wal")).unwrap() {
        last = last.max(e.index);
        if e.index <= applied {
            continue;
        }
        assert_eq!(e.index, applied + 1, "{}: the WAL continues the snapshot", dir.display());
        match e.kind {
            Kind::Put => {
                let (k, v) = decode_put(&e.payload).unwrap();
                map.insert(k.to_vec(), v.to_vec());
            }
            Kind::Delete => {
                map.remove(&e.payload);
            }
            Kind::Fence | Kind::EpochStart => {}
        }
        applied = e.index;
    }
    (map, last)
}

/// Stops every node cleanly and asserts their states on disk are identical; returns it.
fn stop_and_compare(c: &mut Cluster) -> BTreeMap<Vec<u8>, Vec<u8>> {
    for n in &mut c.nodes {
        n.proc.stop();
    }
    let states: Vec<_> = c.nodes.iter().map(|n| state_on_disk(&n.cfg.data_dir)).collect();
    for (i, s) in states.iter().enumerate().skip(1) {
        assert_eq!(s.1, states[0].1, "{} ends at the same index as n1", c.nodes[i].id);
        assert!(
            s.0 == states[0].0,
            "{} holds the same state as n1 ({} vs {} keys)",
            c.nodes[i].id,
            s.0.len(),
            states[0].0.len()
        );
    }
    states.into_iter().next().unwrap().0
}

async fn wal_view(c: &Cluster, i: usize) -> Option<kpb::WalView> {
    c.observe(i).await?.wal
}

/// Waits until node `i` has written a snapshot past `index` and compacted its WAL past it.
async fn wait_compacted_past(c: &Cluster, i: usize, index: u64) -> kpb::WalView {
    wait_for(&format!("{} compacts its WAL past index {index}", c.nodes[i].id), WAIT, || async {
        let w = wal_view(c, i).await?;
        (w.first_index > index + 1).then_some(w)
    })
    .await
}

fn assert_subset(acked: &BTreeMap<Vec<u8>, Vec<u8>>, state: &BTreeMap<Vec<u8>, Vec<u8>>, what: &str) {
    let missing: Vec<_> = acked.iter().filter(|(k, v)| state.get(*k) != Some(*v)).take(3).collect();
    assert!(missing.is_empty(), "{what}: {} acknowledged writes missing", missing.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_s1_online_snapshots_under_writes_and_replication_lose_nothing_and_followers_match() {
    let mut c = Cluster::start(spec()).await;
    let load = Load::start(&c, 0, 2, 100_000);
    load.wait_acks(20).await;
    let mut acked = put_big(&c, 0, "big", 800, 4).await;
    assert!(acked.len() >= 780, "only {} of 800 writes acknowledged", acked.len());
    acked.extend(load.stop().await);
    c.wait_replicated(WAIT).await;
    // Every node snapshotted on its own rule and compacted below it, while it kept replicating.
    for i in 0..3 {
        let s = c.observe(i).await.unwrap();
        let snaps = s.snapshots.unwrap().snapshots;
        assert!(!snaps.is_empty() && snaps[0].valid && snaps[0].last_index > 0, "{}: {snaps:?}", c.nodes[i].id);
        wait_compacted_past(&c, i, 1).await;
    }
    // Disk stays bounded: at most two thresholds of WAL once every peer holds everything
    // (retention 0 here).
    let bound = 2 * small().snapshot_wal_bytes;
    for i in 0..3 {
        let w = wait_for(&format!("{} WAL within two thresholds", c.nodes[i].id), WAIT, || async {
            let w = wal_view(&c, i).await?;
            (w.total_bytes <= bound).then_some(w)
        })
        .await;
        assert!(w.first_index > 1, "{w:?}");
    }
    assert_all_present(&c, 0, &acked, "after online snapshots and compaction").await;
    check_single_writer_per_epoch(&c);
    let state = stop_and_compare(&mut c);
    assert_subset(&acked, &state, "state on disk");
    // Restart replays at most one snapshot interval of WAL (plus the segment the snapshot is in).
    for i in 0..3 {
        c.restart_node(i, &[]).await;
        let w = wal_view(&c, i).await.unwrap();
        assert!(w.total_bytes <= bound, "{w:?}");
    }
    c.wait_replicated(WAIT).await;
    assert_all_present(&c, 0, &acked, "after a restart from snapshot + WAL tail").await;
}

/// Kills node `i`, writes until the primary compacted past it, and returns what was acknowledged
/// (with the killed node's last index).
async fn write_past_stopped_follower(c: &mut Cluster, i: usize, count: u32) -> (BTreeMap<Vec<u8>, Vec<u8>>, u64) {
    c.wait_replicated(WAIT).await;
    let behind = c.observe(i).await.unwrap().replication.unwrap().last_index;
    c.nodes[i].proc.kill();
    let acked = put_big(c, 0, "while-down", count, 4).await;
    assert!(acked.len() as u32 >= count - 10, "{} of {count} acknowledged", acked.len());
    wait_compacted_past(c, 0, behind).await;
    (acked, behind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_s1_follower_down_while_the_primary_compacts_past_it_catches_up_by_snapshot_and_can_lead() {
    let mut c = Cluster::start(spec()).await;
    let (acked, behind) = write_past_stopped_follower(&mut c, 2, 500).await;
    c.restart_node(2, &[]).await;
    c.wait_replicated(WAIT).await;
    let log = c.nodes[2].proc.log_text();
    assert!(log.contains("installed a snapshot"), "n3 caught up by snapshot:\n{log}");
    let s = c.observe(2).await.unwrap();
    let w = s.wal.unwrap();
    assert!(w.first_index > behind + 1, "n3's WAL starts after the snapshot: {w:?}");
    // n3 can lead: switchover to it, then every acknowledged write is served by it.
    assert_eq!(verdict(&kernel_execute(&c, 0, ActionKind::Demote, false).await), Ok(()));
    wait_for("n3 applied the Fence", WAIT, || async {
        c.observe(2).await?.promotion?.current_epoch_fenced.then_some(())
    })
    .await;
    let r = kernel_execute(&c, 2, ActionKind::Promote, false).await;
    assert_eq!(verdict(&r), Ok(()), "{r:?}");
    c.wait_role(2, kpb::Role::Primary).await;
    let more = put_big(&c, 2, "after", 20, 2).await;
    assert_eq!(more.len(), 20);
    c.wait_replicated(WAIT).await;
    assert_all_present(&c, 2, &acked, "n3, caught up by snapshot, serves every acknowledged write").await;
    assert_all_present(&c, 2, &more, "writes to n3").await;
    check_single_writer_per_epoch(&c);
    let state = stop_and_compare(&mut c);
    assert_subset(&acked, &state, "state on disk");
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_cut_snapshot_in_transfer_is_refused_nothing_applied_and_retried_from_scratch() {
    let mut c = Cluster::start(spec()).await;
    // The primary damages its first transfer (a flipped byte whose chunk CRC is recomputed: only
    // the whole-file check can see it) and cuts its second (half a chunk, then the end).
    c.restart_node(0, &[("AERODB_FAILPOINTS", "snapshot.serve.flip_byte=abort@1,snapshot.serve.cut=abort@2")]).await;
    c.wait_role(0, kpb::Role::Primary).await;
    let (acked, _) = write_past_stopped_follower(&mut c, 2, 500).await;
    c.restart_node(2, &[]).await;
    c.wait_replicated(WAIT).await;
    let log = c.nodes[2].proc.log_text();
    let refused: Vec<&str> = log.lines().filter(|l| l.contains("snapshot transfer refused")).collect();
    assert!(refused.len() >= 2, "two refused transfers:\n{log}");
    assert!(refused[0].contains("CRC32C does not match the manifest"), "{}", refused[0]);
    assert!(refused[1].contains("stream ended after"), "{}", refused[1]);
    let installed = log.find("installed a snapshot").expect("installed after the retries");
    let last_refusal = log.rfind("snapshot transfer refused").unwrap();
    assert!(last_refusal < installed, "nothing was installed before a whole snapshot verified");
    assert_eq!(log.matches("installed a snapshot").count(), 1, "one install");
    assert!(!c.nodes[2].cfg.data_dir.join("snapshots").join("incoming.tmp").exists());
    assert_all_present(&c, 0, &acked, "primary").await;
    check_single_writer_per_epoch(&c);
    let state = stop_and_compare(&mut c);
    assert_subset(&acked, &state, "state on disk");
}

/// SIGKILL (abort) of the primary at a fail point of snapshot writing or compaction, under
/// writes; after a restart nothing acknowledged is lost and every node holds the same state.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_s1_sigkill_at_each_snapshot_and_compaction_fail_point_loses_no_acknowledged_write() {
    for point in [
        "snapshot.write.after_data",
        "snapshot.write.before_rename",
        "lifecycle.before_compaction",
        "wal.compact.between_removals",
    ] {
        let mut c = Cluster::start(spec()).await;
        c.restart_node(0, &[("AERODB_FAILPOINTS", &format!("{point}=abort"))]).await;
        c.wait_role(0, kpb::Role::Primary).await;
        let acked = put_big(&c, 0, "crash", 400, 4).await;
        c.nodes[0].proc.wait_exit(&format!("n1 stops at {point}")).await;
        assert!(c.nodes[0].proc.log_text().contains(&format!("failpoint {point}")), "{point}");
        let unfinished: Vec<_> = std::fs::read_dir(c.nodes[0].cfg.data_dir.join("snapshots"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "tmp"))
            .collect();
        if point.starts_with("snapshot.write") {
            assert_eq!(unfinished.len(), 1, "{point}: the crash left its snapshot unfinished");
        }
        c.restart_node(0, &[]).await;
        c.wait_role(0, kpb::Role::Primary).await;
        let more = put_big(&c, 0, "after", 20, 2).await;
        assert_eq!(more.len(), 20, "{point}: writes go on after the restart");
        c.wait_replicated(WAIT).await;
        assert_all_present(&c, 0, &acked, point).await;
        check_single_writer_per_epoch(&c);
        let still: Vec<_> = unfinished.iter().filter(|p| p.exists()).collect();
        assert!(still.is_empty(), "{point}: an unfinished snapshot is removed at recovery: {still:?}");
        let state = stop_and_compare(&mut c);
        assert_subset(&acked, &state, point);
    }
}

/// SIGKILL (abort) of a follower at each fail point of a transfer and its installation; after a
/// restart it catches up and holds exactly the primary's state.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_s1_sigkill_at_each_transfer_fail_point_then_catch_up_completes_with_identical_state() {
    for point in ["snapshot.fetch.after_chunk", "snapshot.install.before_wal_reset", "wal.reset.before_new_segment"] {
        let mut c = Cluster::start(spec()).await;
        let (acked, _) = write_past_stopped_follower(&mut c, 2, 500).await;
        c.nodes[2].proc.env = vec![("AERODB_FAILPOINTS".into(), format!("{point}=abort"))];
        c.nodes[2].proc.start();
        c.nodes[2].proc.wait_exit(&format!("n3 stops at {point}")).await;
        assert!(c.nodes[2].proc.log_text().contains(&format!("failpoint {point}")), "{point}");
        c.restart_node(2, &[]).await;
        c.wait_replicated(WAIT).await;
        assert_all_present(&c, 0, &acked, point).await;
        check_single_writer_per_epoch(&c);
        let state = stop_and_compare(&mut c);
        assert_subset(&acked, &state, point);
    }
}

/// P6-A1a with compaction: the old primary, killed holding entries no majority has, is forced
/// out; the new primary compacts past the fork. The old primary restarts halted; the operator's
/// demotion lets it find the fork against a log whose older entries are only in a snapshot
/// (compared by index and epoch), discard its own suffix (with a copy) and catch up.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a1a_old_primary_finds_its_fork_against_a_compacted_primary_discards_and_catches_up() {
    let mut c = Cluster::start(spec()).await;
    let acked_by_n1 = put_big(&c, 0, "epoch1", 60, 2).await;
    c.wait_replicated(WAIT).await;
    // n2 and n3 restart held back (they pull nothing); n1 appends writes no one else receives
    // (never acknowledged).
    c.restart_node(1, &[("AERODB_FAILPOINTS", "follower.hold=sleep(0)")]).await;
    c.restart_node(2, &[("AERODB_FAILPOINTS", "follower.hold=sleep(0)")]).await;
    let held = c.observe(1).await.unwrap().replication.unwrap().last_index;
    assert_eq!(held, c.observe(2).await.unwrap().replication.unwrap().last_index);
    let mut d0 = c.data(0);
    let stray = tokio::spawn(async move {
        for i in 0..3u8 {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                d0.put(kpb::PutRequest { key: vec![b's', i], value: vec![i] }),
            )
            .await;
        }
    });
    wait_for("n1 holds entries no other node has", WAIT, || async {
        let last = c.observe(0).await?.replication?.last_index;
        (last > held).then_some(())
    })
    .await;
    c.nodes[0].proc.kill();
    let _ = stray.await;
    c.restart_node(1, &[]).await;
    c.restart_node(2, &[]).await;
    let p = common::most_up_to_date(&c, &[1, 2]).await;
    let r = kernel_execute(&c, p, ActionKind::Promote, true).await;
    assert_eq!(verdict(&r), Ok(()), "{r:?}");
    c.wait_role(p, kpb::Role::Primary).await;
    let acked_by_new = put_big(&c, p, "epoch2", 400, 4).await;
    wait_compacted_past(&c, p, held + 1).await;
    c.restart_node(0, &[]).await;
    c.wait_role(0, kpb::Role::Halted).await;
    let r = kernel_execute(&c, 0, ActionKind::Demote, false).await;
    assert_eq!(verdict(&r), Ok(()), "{r:?}");
    c.wait_replicated(WAIT).await;
    let log = c.nodes[0].proc.log_text();
    let discarded = log.find("discarded an unreplicated WAL suffix").expect("n1 discarded its stray entries");
    let installed = log.find("installed a snapshot").expect("then caught up by snapshot");
    assert!(discarded < installed, "{log}");
    assert_all_present(&c, p, &acked_by_n1, "n1's acknowledged writes").await;
    assert_all_present(&c, p, &acked_by_new, "the new primary's acknowledged writes").await;
    check_single_writer_per_epoch(&c);
    let state = stop_and_compare(&mut c);
    assert!(!state.contains_key(&vec![b's', 0]), "a write no majority held is nowhere");
}

/// P6-F1: a compacted WAL without a snapshot that covers its start refuses to start, naming the
/// gap and why each snapshot could not be used; with the snapshot back it starts and serves
/// every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_f1_a_compacted_wal_without_its_snapshot_refuses_to_start_naming_the_gap() {
    let mut c = Cluster::start(Spec { nodes: 1, ..spec() }).await;
    let acked = put_big(&c, 0, "k", 300, 4).await;
    assert_eq!(acked.len(), 300);
    wait_compacted_past(&c, 0, 1).await;
    c.nodes[0].proc.stop();
    // The first index the WAL files hold now that the node is stopped.
    let first = aerodb::kernel::wal::read_dir(&c.nodes[0].cfg.data_dir.join("wal")).unwrap()[0].index;
    let snaps = c.nodes[0].cfg.data_dir.join("snapshots");
    let aside = c.root.path().join("snapshots-aside");
    std::fs::rename(&snaps, &aside).unwrap();
    let log = c.nodes[0].proc.start_expecting_refusal().await;
    let want = format!("the WAL starts at index {first} (compacted) and no usable snapshot covers index {}", first - 1);
    assert!(log.contains(&want), "{log}");
    std::fs::rename(&aside, &snaps).unwrap();
    c.restart_node(0, &[]).await;
    c.wait_role(0, kpb::Role::Primary).await;
    assert_all_present(&c, 0, &acked, "after the snapshot is back").await;
}

/// P6-A3 for the new RPC: FetchSnapshot is for role `node` only, and only for the caller's own
/// node id; a node asking for a snapshot that is not the newest is told to pull again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_a3_fetch_snapshot_serves_only_a_node_asking_for_itself_the_newest_snapshot() {
    use tokio_stream::StreamExt;
    let c = Cluster::start(spec()).await;
    put_big(&c, 0, "k", 300, 4).await;
    let newest = wait_for("n1 has a snapshot", WAIT, || async {
        let s = c.observe(0).await?.snapshots?.snapshots;
        s.first().map(|s| s.last_index)
    })
    .await;
    let ask = |follower: &str, last_index: u64| kpb::FetchSnapshotRequest {
        cluster_id: "test".into(),
        follower_id: follower.into(),
        last_index,
    };
    let addr = &c.nodes[0].addr;
    // A client certificate is not a node: the authorization layer refuses it.
    let mut as_client =
        kpb::replication_client::ReplicationClient::new(c.pki.channel(aerodb::tls::identity::Role::Client, addr));
    let e = as_client.fetch_snapshot(ask("n2", newest)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // n2 speaking for n3.
    let mut as_n2 = kpb::replication_client::ReplicationClient::new(c.pki.node_channel("n2", addr));
    let e = as_n2.fetch_snapshot(ask("n3", newest)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert_eq!(common::wire(&e).code, "AERO_NODE_IDENTITY_MISMATCH");
    // Another index than the newest snapshot.
    let e = as_n2.fetch_snapshot(ask("n2", u64::MAX)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    // Itself, the newest: the manifest, then chunks in order with their CRC32C, adding up to the
    // manifest's size. (A snapshot taken between the look and the call is refused; look again.)
    let c = &c;
    let (newest, first, offset) = wait_for("a fetch of the newest snapshot", WAIT, || {
        let mut as_n2 = as_n2.clone();
        async move {
            let newest = c.observe(0).await?.snapshots?.snapshots.first()?.last_index;
            let mut stream = match as_n2.fetch_snapshot(ask("n2", newest)).await {
                Ok(r) => r.into_inner(),
                Err(e) if e.code() == tonic::Code::FailedPrecondition => return None,
                Err(e) => panic!("{e:?}"),
            };
            let first = stream.next().await.unwrap().unwrap();
            assert!(!first.manifest.is_empty() && first.data.is_empty());
            let mut offset = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.unwrap();
                assert_eq!(chunk.offset, offset);
                assert!(!chunk.data.is_empty() && chunk.data.len() <= aerodb::kernel::transfer::CHUNK_BYTES_MAX);
                assert_eq!(crc32c::crc32c(&chunk.data), chunk.crc32c);
                offset += chunk.data.len() as u64;
            }
            Some((newest, first, offset))
        }
    })
    .await;
    let dir = c.root.path().join("fetched");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("manifest"), &first.manifest).unwrap();
    let m = aerodb::kernel::snapshot::read_manifest(&dir).unwrap();
    assert_eq!((m.last_index, m.data_bytes), (newest, offset));
}
