//! Issue 20: what online snapshots and compaction buy, each measured against its reference in
//! one run. Disk: WAL bytes after writing 20 snapshot thresholds. Restart: a node with a long
//! history against one with a short history and the same state. Catch-up: a follower far
//! behind, by snapshot against by replaying the same WAL.
//!
//! Every load writes values of [`VALUE_BYTES`] over a bounded key space ([`KEYS`] keys), so the
//! state stays the same size however long the history: what a node running for months looks like.

use std::path::Path;
use std::time::Duration;

use super::cluster::{Cluster, chans};
use super::{Row, stopwatch};
use crate::kernel::lifecycle::Lifecycle;
use crate::proto::kernel as kpb;
use crate::tls::identity::Role;

/// Bytes of each value written.
pub const VALUE_BYTES: usize = 16 << 10;
/// Keys written over and over (state: `KEYS × VALUE_BYTES` = 4 MiB).
pub const KEYS: u64 = 256;
/// Concurrent writers.
const WRITERS: usize = 16;
/// Bound of every wait.
const WAIT: Duration = Duration::from_secs(600);

const MIB: u64 = 1 << 20;

/// The settings measured: a snapshot every 8 MiB of WAL, 2 MiB segments.
fn lifecycle(retention_wal_bytes: u64) -> Lifecycle {
    Lifecycle { snapshot_wal_bytes: 8 * MIB, wal_segment_bytes: 2 * MIB, retention_wal_bytes }
}

/// Writes about `bytes` of values to node `i` (the primary) from [`WRITERS`] connections.
async fn fill(c: &Cluster, i: usize, bytes: u64) -> anyhow::Result<()> {
    let puts = bytes / VALUE_BYTES as u64;
    let mut tasks = Vec::new();
    for (w, ch) in chans(&c.certs, Role::Client, &c.nodes[i], WRITERS)?.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut d = kpb::data_client::DataClient::new(ch);
            let mut n = w as u64;
            while n < puts {
                let key = format!("k{:04}", n % KEYS).into_bytes();
                let value = vec![(n % 251) as u8; VALUE_BYTES];
                d.put(kpb::PutRequest { key, value }).await.map_err(|e| anyhow::anyhow!("put: {e}"))?;
                n += WRITERS as u64;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Polls `f` every 20 ms until it gives a value, for at most [`WAIT`].
async fn until<T, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

/// Disk: WAL bytes on a node after writing 20× the snapshot threshold (retention 0, one node).
pub async fn disk(root: &Path) -> anyhow::Result<Vec<Row>> {
    let l = lifecycle(0);
    let c = Cluster::start_with(&root.join("lc-disk"), 1, false, l.clone()).await?;
    let written = 20 * l.snapshot_wal_bytes;
    fill(&c, 0, written).await?;
    // The node snapshots after the last write on its own; the figure is what it settles at
    // (unchanged for 2 s).
    let wal = settled_wal_bytes(&c, 0).await?;
    let ratio = wal as f64 / l.snapshot_wal_bytes as f64;
    Ok(vec![Row {
        name: format!(
            "WAL on disk after writing 20 thresholds ({} written, threshold {}, segment {}, retention 0)",
            mib(written),
            mib(l.snapshot_wal_bytes),
            mib(l.wal_segment_bytes)
        ),
        ours: mib(wal),
        reference: format!("threshold {}", mib(l.snapshot_wal_bytes)),
        ratio,
        target: "<= 2.0".into(),
        met: ratio <= 2.0,
    }])
}

/// WAL bytes of node `i` once unchanged for 2 s (bounded by [`WAIT`]).
async fn settled_wal_bytes(c: &Cluster, i: usize) -> anyhow::Result<u64> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let (mut last, mut same) = (u64::MAX, 0);
    loop {
        let now = c.observe(i).await.and_then(|s| s.wal).map(|w| w.total_bytes).unwrap_or(u64::MAX);
        same = if now == last { same + 1 } else { 0 };
        last = now;
        if same >= 20 {
            return Ok(now);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("the WAL of node {i} did not settle");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills node `i` of `c` (alone in its cluster), starts it again and times until it serves a
/// read: WAL recovery, snapshot load, and the replay up to its read floor.
async fn restart_seconds(c: &mut Cluster, i: usize) -> anyhow::Result<f64> {
    c.kill(i);
    let t = stopwatch();
    c.restart(i)?;
    let ch = chans(&c.certs, Role::Client, &c.nodes[i], 1)?.remove(0);
    until("the restarted node to serve a read", || {
        let mut d = kpb::data_client::DataClient::new(ch.clone());
        async move { d.get(kpb::GetRequest { key: b"k0000".to_vec() }).await.ok().map(|_| ()) }
    })
    .await?;
    Ok(t.elapsed().as_secs_f64())
}

/// Restart: a node with `large` bytes of history against one with `small`, the same state, each
/// restarted by SIGKILL (one node each, so the restart includes the replay to the read floor).
pub async fn restart(root: &Path, large: u64, small: u64) -> anyhow::Result<Vec<Row>> {
    let l = lifecycle(0);
    // The reference for what snapshots buy: the large history with no snapshot ever due.
    let never = Lifecycle { snapshot_wal_bytes: 64 << 30, wal_segment_bytes: 64 * MIB, retention_wal_bytes: 0 };
    let mut figures = Vec::new();
    for (name, bytes, l) in [("large", large, &l), ("small", small, &l), ("unsnapshotted", large, &never)] {
        let mut c = Cluster::start_with(&root.join(format!("lc-restart-{name}")), 1, false, l.clone()).await?;
        fill(&c, 0, bytes).await?;
        settled_wal_bytes(&c, 0).await?;
        let wal = c.observe(0).await.and_then(|s| s.wal).map(|w| w.total_bytes).unwrap_or(0);
        // The median of three restarts.
        let mut runs = vec![restart_seconds(&mut c, 0).await?, restart_seconds(&mut c, 0).await?];
        runs.push(restart_seconds(&mut c, 0).await?);
        runs.sort_by(f64::total_cmp);
        figures.push((runs[1], wal));
    }
    let ((t_large, wal_large), (t_small, wal_small), (t_never, wal_never)) = (figures[0], figures[1], figures[2]);
    let ratio = t_large / t_small;
    let gain = t_never / t_large;
    Ok(vec![
        Row {
            name: format!(
                "restart to first read, {} of history vs {} (same 4 MiB state, threshold {})",
                mib(large),
                mib(small),
                mib(l.snapshot_wal_bytes)
            ),
            ours: format!("{:.0} ms (WAL kept {})", t_large * 1000.0, mib(wal_large)),
            reference: format!("{:.0} ms (WAL kept {})", t_small * 1000.0, mib(wal_small)),
            ratio,
            target: "<= 2.0".into(),
            met: ratio <= 2.0,
        },
        Row {
            name: format!("restart to first read, {} of history: no snapshot vs snapshots", mib(large)),
            ours: format!("{:.0} ms (WAL kept {})", t_large * 1000.0, mib(wal_large)),
            reference: format!("no snapshot: {:.0} ms (WAL kept {})", t_never * 1000.0, mib(wal_never)),
            ratio: gain,
            target: "> 1.0 (no snapshot / snapshots)".into(),
            met: gain > 1.0,
        },
    ])
}

/// Times a follower of a 3-node cluster catching up after `behind` bytes written while it was
/// down; with `retention_wal_bytes` 0 the primary compacts past it (catch-up by snapshot), with a
/// large one it keeps the WAL (catch-up by replay).
async fn catch_up_seconds(root: &Path, behind: u64, retention_wal_bytes: u64) -> anyhow::Result<(f64, u64)> {
    let mut c = Cluster::start_with(root, 3, false, lifecycle(retention_wal_bytes)).await?;
    c.kill(2);
    fill(&c, 0, behind).await?;
    let target = c.observe(0).await.and_then(|s| s.replication).map(|r| r.last_index).unwrap_or(0);
    let first = c.observe(0).await.and_then(|s| s.wal).map(|w| w.first_index).unwrap_or(0);
    let t = stopwatch();
    c.restart(2)?;
    until("the follower to catch up", || {
        let c = &c;
        async move {
            let r = c.observe(2).await?.replication?;
            (r.last_index >= target && r.applied_index >= target).then_some(())
        }
    })
    .await?;
    Ok((t.elapsed().as_secs_f64(), first))
}

/// Catch-up: a follower `behind` bytes behind, by snapshot against by replaying the same WAL.
pub async fn catch_up(root: &Path, behind: u64) -> anyhow::Result<Vec<Row>> {
    let (snapshot, first_compacted) = catch_up_seconds(&root.join("lc-catchup-snapshot"), behind, 0).await?;
    let (replay, first_kept) = catch_up_seconds(&root.join("lc-catchup-replay"), behind, 1 << 40).await?;
    let ratio = replay / snapshot;
    Ok(vec![Row {
        name: format!("follower catch-up after {} written while it was down (4 MiB state)", mib(behind)),
        ours: format!("by snapshot: {:.0} ms (primary's WAL from index {first_compacted})", snapshot * 1000.0),
        reference: format!("by WAL replay: {:.0} ms (WAL from index {first_kept})", replay * 1000.0),
        ratio,
        target: "> 1.0 (replay / snapshot)".into(),
        met: ratio > 1.0,
    }])
}
