//! Issue 19: what the transparency log costs, as ratios measured in one run: appends with the
//! Merkle tree against the same writer without it, the audit log's start with a large log
//! against an empty one (and the one-time rebuild of a log without a tree), inclusion proof
//! latency in a large tree.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Row, load, stopwatch};
use crate::audit::log::{AuditLog, AuditOptions, DANGER_BENCH_WITHOUT_TREE, SEGMENT_BYTES_MAX};
use crate::audit::record::{Draft, Stage};
use crate::audit::{merkle, tree};

fn open(dir: &Path) -> anyhow::Result<AuditLog> {
    Ok(AuditLog::open(AuditOptions {
        dir: dir.to_path_buf(),
        instance_id: "bench".into(),
        checkpoint_every: 1000,
        checkpoint_interval_ms: 10_000,
        segment_bytes_max: SEGMENT_BYTES_MAX,
        clock: crate::clock::SystemClock::shared(),
    })?)
}

async fn append_rate(dir: &Path, secs: Duration) -> anyhow::Result<(f64, f64)> {
    let log = open(dir)?;
    let l = log.clone();
    let s = load(64, secs, move |c, i| {
        let l = l.clone();
        async move {
            let mut d = Draft::new(Stage::Read, format!("c{c}-{i}"), "inspect_cluster_state");
            d.peer = "127.0.0.1:40000".into();
            l.append(d).await.is_ok()
        }
    })
    .await;
    Ok((s.throughput(), s.pct_ms(99.0)))
}

/// Time to open the audit log of `dir` (the part of the control plane's start that reads the
/// trail), and the records it read.
async fn open_once(dir: &Path) -> anyhow::Result<(f64, u64)> {
    let t = stopwatch();
    let log = open(dir)?;
    let secs = t.elapsed().as_secs_f64();
    let read = log.records_read_at_open();
    // One answered record so the log is sealed by a checkpoint of its whole tree.
    log.append(Draft::new(Stage::Executed, "bench", "run_diagnostics")).await?;
    log.checkpoint().await;
    Ok((secs, read))
}

/// The median of five opens of `dir`, and the records the last one read.
async fn open_time(dir: &Path) -> anyhow::Result<(f64, u64)> {
    let mut times = Vec::new();
    let mut read = 0;
    for _ in 0..5 {
        let (t, r) = open_once(dir).await?;
        times.push(t);
        read = r;
    }
    times.sort_by(f64::total_cmp);
    Ok((times[2], read))
}

/// The rows.
pub async fn tlog(root: &Path, secs: Duration, size_mb: u64, proof_leaves: u64) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();

    // Appends: the same writer without the tree and with it, alternated three times each (the
    // machine's load drifts); the median of each.
    let (mut without_runs, mut with_runs) = (Vec::new(), Vec::new());
    for round in 0..3 {
        DANGER_BENCH_WITHOUT_TREE.store(true, Ordering::Relaxed);
        let without = append_rate(&root.join(format!("tlog-append-without-{round}")), secs).await;
        DANGER_BENCH_WITHOUT_TREE.store(false, Ordering::Relaxed);
        without_runs.push(without?);
        with_runs.push(append_rate(&root.join(format!("tlog-append-with-{round}")), secs).await?);
    }
    let median = |v: &mut Vec<(f64, f64)>| {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v[v.len() / 2]
    };
    let (without, without_p99) = median(&mut without_runs);
    let (with, with_p99) = median(&mut with_runs);
    rows.push(Row {
        name: "audit append with the Merkle tree, 64 concurrent writers".into(),
        ours: format!("{with:.0} records/s (p99 {with_p99:.2} ms; median of 3 runs)"),
        reference: format!("the same writer without the tree: {without:.0} records/s (p99 {without_p99:.2} ms)"),
        ratio: with / without,
        target: ">= 0.9".into(),
        met: with / without >= 0.9,
    });

    // Start: an empty log (its second start: the first creates the key and the files), then logs
    // of size_mb / 8 and size_mb.
    let _ = open_once(&root.join("tlog-start-empty")).await?;
    let (empty, _) = open_time(&root.join("tlog-start-empty")).await?;
    for mb in [size_mb / 8, size_mb] {
        let dir = root.join(format!("tlog-start-{mb}"));
        let bytes = super::runs::write_log(&dir, mb * 1024 * 1024)?;
        // First start: no tree yet (as after an upgrade), every record read once.
        let (rebuild, read_rebuild) = open_once(&dir).await?;
        // Every later start: from the newest checkpoint (median of five).
        let (start, read_start) = open_time(&dir).await?;
        let ratio = start / empty;
        rows.push(Row {
            name: format!("audit log start with {} MiB of records vs an empty log", bytes >> 20),
            ours: format!(
                "{:.1} ms ({read_start} records read; the one-time rebuild read {read_rebuild} in {:.0} ms)",
                start * 1000.0,
                rebuild * 1000.0
            ),
            reference: format!("empty log: {:.1} ms", empty * 1000.0),
            ratio,
            target: "<= 1.5".into(),
            met: ratio <= 1.5,
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    // Inclusion proofs in a tree of proof_leaves leaves.
    let dir = root.join("tlog-proofs");
    std::fs::create_dir_all(&dir)?;
    let t = stopwatch();
    let mut w = tree::TreeWriter::open_at(&dir, 0)?;
    let mut leaves_kept = Vec::new();
    for i in 0..proof_leaves {
        let l = merkle::leaf_hash(&i.to_le_bytes());
        if i % 4999 == 0 {
            leaves_kept.push((i, l));
        }
        w.push(l);
        if i % (1 << 20) == 0 {
            w.flush()?;
        }
    }
    w.sync()?;
    let build = t.elapsed().as_secs_f64();
    let root_hash = w.root();
    let reader = tree::TreeReader::open(&dir)?;
    let mut lat = Vec::new();
    let mut verify_lat = Vec::new();
    for (i, leaf) in leaves_kept.iter().take(2000) {
        let t = stopwatch();
        let p = merkle::inclusion_proof(&reader, *i, proof_leaves)?;
        lat.push(t.elapsed());
        let t = stopwatch();
        merkle::verify_inclusion(*i, proof_leaves, leaf, &p, &root_hash)
            .map_err(|e| anyhow::anyhow!("a proof of the bench tree does not verify: {e}"))?;
        verify_lat.push(t.elapsed());
    }
    lat.sort();
    verify_lat.sort();
    let pct = |v: &[Duration], p: f64| v[((p / 100.0) * (v.len() - 1) as f64).round() as usize].as_secs_f64() * 1e6;
    let p50 = pct(&lat, 50.0);
    rows.push(Row {
        name: format!("inclusion proof in a tree of {proof_leaves} records ({} proofs)", lat.len()),
        ours: format!("p50 {p50:.1} µs, p99 {:.1} µs (from tree.hashes, page cache warm)", pct(&lat, 99.0)),
        reference: format!(
            "verifying it: p50 {:.1} µs; building the tree file: {:.0} s ({:.0} leaves/s)",
            pct(&verify_lat, 50.0),
            build,
            proof_leaves as f64 / build
        ),
        ratio: p50 / 1000.0,
        target: "p50 <= 1 ms".into(),
        met: p50 <= 1000.0,
    });
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rows)
}
