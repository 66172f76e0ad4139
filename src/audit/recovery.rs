//! What start does with the records, the tree file and the newest signed checkpoint: a decision
//! table over every tail case, so start cost does not grow with the history.
//!
//! The newest checkpoint (size `n`, root `r`) is verified with the instance key. The stored tree's
//! root at `n` is recomputed from at most `log2 n` stored subtrees and compared with `r`; then the
//! records from seq `n` on are read (framing, CRC, sequence, chain), record `n`'s leaf is compared
//! with the stored leaf `n − 1`, and the leaves after it are appended to the tree again. Older
//! records are not read: `aerodbctl audit verify` (or `Auditor.VerifyAudit`) checks them on demand.
//!
//! # Invariants
//! - Nothing is synthesized: the tree is derived from the records, never the other way round;
//!   a rebuild recomputes it from the records and keeps the old file in `quarantine/`.
//! - A log shorter than its newest checkpoint, or whose records do not produce the signed root,
//!   refuses to start ([`Verdict::FailClosed`]): nothing is written after a break.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use super::checkpoint::{self, Checkpoint};
use super::merkle;
use super::tree::{self, TreeReader, TreeWriter};
use super::verify::{self, Problem};

/// What is known at start about records, tree and checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// A signed checkpoint exists (and verifies with the instance key).
    pub has_checkpoint: bool,
    /// The tree was just rebuilt from every record (the second pass).
    pub rebuilt: bool,
    /// The tree holds at least the checkpoint's size.
    pub tree_covers: bool,
    /// The tree's root at the checkpoint's size is the signed root.
    pub tree_root_ok: bool,
    /// The records reach the checkpoint's size.
    pub records_reach: bool,
    /// Record `n`'s leaf hash is the tree's leaf `n − 1` (the records continue the signed tree).
    pub leaf_ok: bool,
}

/// What start does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Continue from the checkpoint: the records after it extend the signed tree.
    Accept,
    /// Verify every record and rebuild the tree from them, then decide again.
    Rebuild,
    /// Refuse to start: the log was cut or rewritten below a signed checkpoint.
    FailClosed(&'static str),
}

/// The decision table (rows listed in the tests as data, each input matching exactly one).
pub fn decide(f: Facts) -> Verdict {
    if !f.has_checkpoint {
        return if f.rebuilt { Verdict::Accept } else { Verdict::Rebuild };
    }
    if !f.tree_covers {
        return if f.rebuilt {
            Verdict::FailClosed("the records end before the newest signed checkpoint: records were cut")
        } else {
            Verdict::Rebuild
        };
    }
    if !f.tree_root_ok {
        return if f.rebuilt {
            Verdict::FailClosed(
                "the records do not produce the root of the newest signed checkpoint: the log was rewritten",
            )
        } else {
            Verdict::Rebuild
        };
    }
    if !f.records_reach {
        return Verdict::FailClosed("the records end before the newest signed checkpoint: records were cut");
    }
    if !f.leaf_ok {
        return Verdict::FailClosed(
            "the record at the newest signed checkpoint is not the one the tree signs: rewritten",
        );
    }
    Verdict::Accept
}

/// Why start refuses the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The first problem, with file, offset and seq when known.
    pub problem: String,
}

/// What recovery hands the writer.
#[derive(Debug)]
pub struct Recovered {
    /// The last record's seq (0: empty).
    pub head_seq: u64,
    /// The last record's hash (the chain continues from it).
    pub head_hash: [u8; 32],
    /// Where the last record starts (segment first seq, byte offset).
    pub head_position: checkpoint::Position,
    /// The tree, holding exactly `head_seq` leaves.
    pub tree: TreeWriter,
    /// The newest signed checkpoint.
    pub latest: Option<Checkpoint>,
    /// A torn tail to cut off (file, offset, bytes): a crash mid-append.
    pub torn: Option<(PathBuf, u64, u64)>,
    /// Records read at start.
    pub records_read: u64,
    /// Whether the tree was rebuilt from every record.
    pub rebuilt: bool,
}

fn refuse(what: impl Into<String>) -> Refusal {
    Refusal { problem: what.into() }
}

fn problem(p: Problem) -> Refusal {
    refuse(p.to_string())
}

/// Recovers `dir` against `key` (the instance's public key).
pub fn recover(dir: &Path, key: &VerifyingKey) -> Result<Recovered, Refusal> {
    let cps = checkpoint::read_all(dir).map_err(refuse)?;
    let hint = cps.last().map(|(_, _, at)| *at);
    let latest = match cps.last() {
        Some((offset, cp, _)) => Some(Checkpoint::verify(&cp.note, key).map_err(|e| {
            refuse(format!("{}: byte offset {offset}: {e}", dir.join(checkpoint::CHECKPOINTS_FILE).display()))
        })?),
        None => None,
    };
    let n = latest.as_ref().map(|c| c.size).unwrap_or(0);
    let root = latest.as_ref().map(|c| c.root).unwrap_or_else(merkle::empty_root);

    // First pass: from the checkpoint.
    let reader = TreeReader::open(dir).ok();
    let tree_covers = reader.as_ref().is_some_and(|r| r.leaves() >= n);
    let tree_root_ok = tree_covers && reader.as_ref().and_then(|r| merkle::root(r, n).ok()) == Some(root);
    let mut facts = Facts {
        has_checkpoint: latest.is_some(),
        rebuilt: false,
        tree_covers,
        tree_root_ok,
        records_reach: false,
        leaf_ok: false,
    };
    let mut tail_leaves = Vec::new();
    let mut summary = verify::Summary::default();
    if facts.has_checkpoint && tree_covers && tree_root_ok {
        let mut at_checkpoint = None;
        // Start at the checkpoint's last record when its position hint is right.
        let at = hint.filter(|h| verify::record_at(dir, *h, n));
        summary = verify::scan_from(dir, n.max(1), at, |_, _, s| {
            if s.seq == n {
                at_checkpoint = Some(s.leaf_hash);
            } else {
                tail_leaves.push(s.leaf_hash);
            }
            Ok(())
        })
        .map_err(problem)?;
        facts.records_reach = summary.last_seq >= n;
        facts.leaf_ok =
            n == 0 || (at_checkpoint.is_some() && reader.as_ref().and_then(|r| r.leaf(n - 1).ok()) == at_checkpoint);
    }
    drop(reader);
    match decide(facts) {
        Verdict::Accept => {
            let mut tree = TreeWriter::open_at(dir, n).map_err(|e| refuse(e.to_string()))?;
            for l in tail_leaves {
                tree.push(l);
            }
            tree.sync().map_err(|e| refuse(e.to_string()))?;
            return Ok(Recovered {
                head_seq: summary.last_seq,
                head_hash: summary.head_hash,
                head_position: summary.last_position.unwrap_or_default(),
                tree,
                latest,
                torn: summary.torn,
                records_read: summary.records,
                rebuilt: false,
            });
        }
        Verdict::FailClosed(why) => {
            return Err(refuse(format!(
                "{why} (checkpoint of tree size {n}; the log reaches seq {})",
                summary.last_seq
            )));
        }
        Verdict::Rebuild => {}
    }

    // Second pass: every record, a new tree (the old file kept in quarantine/). Records below an
    // archive point are elsewhere: the tree cannot be rebuilt from this directory alone.
    if let Some(p) = super::archive::latest_point(dir).map_err(|e| refuse(e.to_string()))? {
        return Err(refuse(format!(
            "the tree must be rebuilt from every record, but records 1..={} are archived in {} (archive.log): copy \
             the archived segments back into the directory to rebuild, or restore tree.hashes",
            p.first_kept_seq - 1,
            p.destination
        )));
    }
    let old = dir.join(tree::TREE_FILE);
    if old.exists() {
        let q = dir.join("quarantine");
        crate::fsutil::create_dir_durable(&q).map_err(|e| refuse(format!("{}: {e}", q.display())))?;
        let kept = q.join(format!("{}.replaced", tree::TREE_FILE));
        std::fs::rename(&old, &kept).map_err(|e| refuse(format!("{}: {e}", old.display())))?;
    }
    let mut tree = TreeWriter::create_empty(dir).map_err(|e| refuse(e.to_string()))?;
    let mut root_at_n = if n == 0 { Some(merkle::empty_root()) } else { None };
    let mut flush_error = None;
    let summary = verify::scan(dir, |_, _, s| {
        tree.push(s.leaf_hash);
        if tree.size() == n {
            root_at_n = Some(tree.root());
        }
        if tree.size() % 65536 == 0
            && let Err(e) = tree.flush()
        {
            flush_error.get_or_insert(e.to_string());
        }
        Ok(())
    })
    .map_err(problem)?;
    if let Some(e) = flush_error {
        return Err(refuse(e));
    }
    tree.sync().map_err(|e| refuse(e.to_string()))?;
    facts = Facts {
        has_checkpoint: latest.is_some(),
        rebuilt: true,
        tree_covers: summary.last_seq >= n,
        tree_root_ok: root_at_n == Some(root),
        records_reach: summary.last_seq >= n,
        leaf_ok: true,
    };
    match decide(facts) {
        Verdict::Accept => Ok(Recovered {
            head_seq: summary.last_seq,
            head_hash: summary.head_hash,
            head_position: summary.last_position.unwrap_or_default(),
            tree,
            latest,
            torn: summary.torn,
            records_read: summary.records,
            rebuilt: true,
        }),
        Verdict::FailClosed(why) => {
            Err(refuse(format!("{why} (checkpoint of tree size {n}; the log reaches seq {})", summary.last_seq)))
        }
        Verdict::Rebuild => Err(refuse("BUG: recovery asked to rebuild a tree it just rebuilt")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row of the table: a pattern over the facts (`None` = either) and the verdict.
    struct Case {
        has_checkpoint: Option<bool>,
        rebuilt: Option<bool>,
        tree_covers: Option<bool>,
        tree_root_ok: Option<bool>,
        records_reach: Option<bool>,
        leaf_ok: Option<bool>,
        verdict: Verdict,
        why: &'static str,
    }

    const ANY: Case = Case {
        has_checkpoint: None,
        rebuilt: None,
        tree_covers: None,
        tree_root_ok: None,
        records_reach: None,
        leaf_ok: None,
        verdict: Verdict::Accept,
        why: "",
    };

    const CUT: Verdict = Verdict::FailClosed("the records end before the newest signed checkpoint: records were cut");

    const RECOVERY_CASES: &[Case] = &[
        Case {
            has_checkpoint: Some(false),
            rebuilt: Some(false),
            verdict: Verdict::Rebuild,
            why: "nothing signed (a new or pre-tree log): verify every record and build the tree",
            ..ANY
        },
        Case { has_checkpoint: Some(false), rebuilt: Some(true), why: "nothing signed; every record verified", ..ANY },
        Case {
            has_checkpoint: Some(true),
            rebuilt: Some(false),
            tree_covers: Some(false),
            verdict: Verdict::Rebuild,
            why: "the tree file is shorter than the checkpoint (lost or replaced): rebuild it from the records",
            ..ANY
        },
        Case {
            has_checkpoint: Some(true),
            rebuilt: Some(false),
            tree_covers: Some(true),
            tree_root_ok: Some(false),
            verdict: Verdict::Rebuild,
            why: "the stored tree does not give the signed root: rebuild it from the records and compare again",
            ..ANY
        },
        Case {
            has_checkpoint: Some(true),
            rebuilt: Some(true),
            tree_covers: Some(false),
            verdict: CUT,
            why: "rebuilt from every record, and they end before the checkpoint",
            ..ANY
        },
        Case {
            has_checkpoint: Some(true),
            rebuilt: Some(true),
            tree_covers: Some(true),
            tree_root_ok: Some(false),
            verdict: Verdict::FailClosed(
                "the records do not produce the root of the newest signed checkpoint: the log was rewritten",
            ),
            why: "rebuilt from every record, and they give another root",
            ..ANY
        },
        Case {
            has_checkpoint: Some(true),
            tree_covers: Some(true),
            tree_root_ok: Some(true),
            records_reach: Some(false),
            verdict: CUT,
            why: "the signed tree is intact but the records behind it are gone",
            ..ANY
        },
        Case {
            has_checkpoint: Some(true),
            tree_covers: Some(true),
            tree_root_ok: Some(true),
            records_reach: Some(true),
            leaf_ok: Some(false),
            verdict: Verdict::FailClosed(
                "the record at the newest signed checkpoint is not the one the tree signs: rewritten",
            ),
            why: "the record at the checkpoint was replaced",
            ..ANY
        },
        Case {
            has_checkpoint: Some(true),
            tree_covers: Some(true),
            tree_root_ok: Some(true),
            records_reach: Some(true),
            leaf_ok: Some(true),
            why: "the records continue the signed tree: go on from the checkpoint",
            ..ANY
        },
    ];

    fn matches(c: &Case, f: &Facts) -> bool {
        let m = |p: Option<bool>, v: bool| p.is_none_or(|p| p == v);
        m(c.has_checkpoint, f.has_checkpoint)
            && m(c.rebuilt, f.rebuilt)
            && m(c.tree_covers, f.tree_covers)
            && m(c.tree_root_ok, f.tree_root_ok)
            && m(c.records_reach, f.records_reach)
            && m(c.leaf_ok, f.leaf_ok)
    }

    #[test]
    fn recovery_decision_table_over_every_input() {
        for bits in 0u32..64 {
            let b = |i: u32| bits & (1 << i) != 0;
            let f = Facts {
                has_checkpoint: b(0),
                rebuilt: b(1),
                tree_covers: b(2),
                tree_root_ok: b(3),
                records_reach: b(4),
                leaf_ok: b(5),
            };
            let rows: Vec<&Case> = RECOVERY_CASES.iter().filter(|c| matches(c, &f)).collect();
            assert_eq!(rows.len(), 1, "every input matches exactly one row: {f:?}");
            assert_eq!(decide(f), rows[0].verdict, "{}: {f:?}", rows[0].why);
        }
    }
}

/// Recovery over real directories: every tail case the table names, made by editing files.
#[cfg(test)]
mod files {
    use std::path::Path;
    use std::sync::Arc;

    use crate::audit::log::{AuditLog, AuditOptions, OpenError};
    use crate::audit::record::{Draft, Stage};
    use crate::audit::{chain, checkpoint, tree, verify};
    use crate::clock::ManualClock;
    use crate::frame;

    fn open(dir: &Path) -> Result<AuditLog, OpenError> {
        AuditLog::open(AuditOptions {
            dir: dir.to_path_buf(),
            instance_id: "cp-test".into(),
            checkpoint_every: 1_000_000,
            checkpoint_interval_ms: 3_600_000,
            segment_bytes_max: 4096,
            clock: Arc::new(ManualClock::new(1_000)),
        })
    }

    /// `reads` read records, then one `executed` record (which a checkpoint covers before its
    /// append returns), then closes the log after a last checkpoint.
    async fn fill(dir: &Path, reads: u64) -> u64 {
        let log = open(dir).expect("open");
        for i in 0..reads {
            log.append_best_effort(Draft::new(Stage::Read, format!("c{i}"), "inspect_node")).await.expect("read");
        }
        let r = log.append(Draft::new(Stage::Executed, "x", "request_promotion")).await.expect("executed");
        let cp = log.latest_checkpoint().expect("a checkpoint covers the executed record");
        assert_eq!(cp.size, r.seq, "the checkpoint covers the answered record");
        log.checkpoint().await;
        drop(log);
        // The writer thread ends once every handle is gone; it has nothing left to write.
        r.seq
    }

    fn first_segment(dir: &Path) -> std::path::PathBuf {
        verify::segments(dir).expect("segments")[0].1.clone()
    }

    /// (segment, offset, seq, payload) of every record.
    fn records(dir: &Path) -> Vec<(std::path::PathBuf, u64, u64, Vec<u8>)> {
        let mut out = Vec::new();
        for (_, path) in verify::segments(dir).expect("segments") {
            let mut r = frame::Reader::open(&path, verify::MAGIC, 1 << 20, true).expect("reader");
            while let Some((off, p)) = r.next_frame().expect("frame") {
                let seq = chain::split(&p).expect("split").1;
                out.push((path.clone(), off, seq, p));
            }
        }
        out
    }

    fn drop_last_checkpoint(dir: &Path) {
        let path = dir.join(checkpoint::CHECKPOINTS_FILE);
        let mut r = frame::Reader::open(&path, checkpoint::MAGIC, 1 << 16, true).expect("reader");
        let mut frames = Vec::new();
        while let Some((_, p)) = r.next_frame().expect("frame") {
            frames.push(p);
        }
        frames.pop();
        let mut out = frame::header(checkpoint::MAGIC, 0).to_vec();
        for f in frames {
            out.extend_from_slice(&frame::encode(&f));
        }
        std::fs::write(&path, out).expect("write");
    }

    fn broken(r: Result<AuditLog, OpenError>) -> String {
        match r {
            Err(OpenError::Broken { problem, .. }) => problem,
            Err(e) => panic!("expected a refusal, got {e}"),
            Ok(_) => panic!("expected a refusal, the log opened"),
        }
    }

    #[tokio::test]
    async fn start_reads_from_the_newest_checkpoint_only_and_full_verification_still_reads_everything() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("audit");
        let n = fill(&dir, 3000).await;
        assert!(verify::segments(&dir).expect("segments").len() > 100, "many segments");
        // Damage a record in the oldest segment: start does not read it ...
        let seg = first_segment(&dir);
        let mut b = std::fs::read(&seg).expect("read");
        let mid = b.len() / 2;
        b[mid] ^= 0x40;
        std::fs::write(&seg, b).expect("write");
        let log = open(&dir).expect("start does not read below the checkpoint");
        assert_eq!(log.records_read_at_open(), 1, "only record {n}, the checkpoint's last, was read");
        drop(log);
        // ... and the full verification finds it.
        let report = verify::verify_dir(&dir, None);
        let p = report.problem.expect("full verification reads every segment");
        assert_eq!(p.file, seg, "{p}");
        assert!(p.what.contains("CRC32C mismatch"), "{p}");
    }

    #[tokio::test]
    async fn a_wrong_position_hint_costs_a_scan_of_one_segment_and_nothing_else() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("audit");
        fill(&dir, 30).await;
        let path = dir.join(checkpoint::CHECKPOINTS_FILE);
        let mut r = frame::Reader::open(&path, checkpoint::MAGIC, 1 << 16, true).expect("reader");
        let mut frames = Vec::new();
        while let Some((_, p)) = r.next_frame().expect("frame") {
            frames.push(p);
        }
        let last = frames.last_mut().expect("a checkpoint");
        last[8..16].copy_from_slice(&17u64.to_le_bytes());
        let mut out = frame::header(checkpoint::MAGIC, 0).to_vec();
        for f in frames {
            out.extend_from_slice(&frame::encode(&f));
        }
        std::fs::write(&path, out).expect("write");
        let log = open(&dir).expect("opens without the hint");
        assert_eq!(log.records_read_at_open(), 1);
    }

    #[tokio::test]
    async fn a_lost_or_damaged_tree_file_is_rebuilt_from_the_records_and_the_old_one_kept() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("audit");
        let n = fill(&dir, 50).await;
        std::fs::remove_file(dir.join(tree::TREE_FILE)).expect("remove");
        let log = open(&dir).expect("rebuilt");
        assert_eq!(log.records_read_at_open(), n, "every record read to rebuild the tree");
        assert_eq!(log.append(Draft::new(Stage::Executed, "y", "x")).await.expect("append").seq, n + 1);
        log.checkpoint().await;
        drop(log);
        assert!(verify::verify_dir(&dir, None).ok);
        // A damaged hash inside the signed tree: the peak over the first 32 leaves, one of those
        // start reads to recompute the signed root.
        let t = dir.join(tree::TREE_FILE);
        let mut b = std::fs::read(&t).expect("read");
        b[(16 + 32 * crate::audit::merkle::position(5, 0)) as usize] ^= 1;
        std::fs::write(&t, &b).expect("write");
        let report = verify::verify_dir(&dir, None);
        assert!(report.problem.as_ref().is_some_and(|p| p.what.contains("tree.hashes disagrees")), "{report:?}");
        let log = open(&dir).expect("rebuilt");
        assert_eq!(log.records_read_at_open(), n + 1);
        drop(log);
        assert_eq!(std::fs::read(dir.join("quarantine").join("tree.hashes.replaced")).expect("kept"), b);
        assert!(verify::verify_dir(&dir, None).ok);
    }

    #[tokio::test]
    async fn records_cut_or_rewritten_below_the_checkpoint_refuse_to_start() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("audit");
        let n = fill(&dir, 20).await;
        let recs = records(&dir);
        let (seg, off, seq, payload) = recs.last().cloned().expect("records");
        assert_eq!(seq, n);
        // Cut: the last record gone (tree and checkpoint untouched).
        let cut = tmp.path().join("cut");
        copy(&dir, &cut);
        let seg_cut = cut.join(seg.file_name().expect("name"));
        std::fs::OpenOptions::new().write(true).open(&seg_cut).expect("open").set_len(off).expect("cut");
        let why = broken(open(&cut));
        assert!(why.contains("records were cut"), "{why}");
        // Rewritten: the last record's body changed, its frame and chain recomputed.
        let rw = tmp.path().join("rewritten");
        copy(&dir, &rw);
        let seg_rw = rw.join(seg.file_name().expect("name"));
        let (prev, s, body) = chain::split(&payload).expect("split");
        let forged = String::from_utf8_lossy(body).replace("request_promotion", "request_demotion");
        let mut b = std::fs::read(&seg_rw).expect("read");
        b.truncate(off as usize);
        b.extend_from_slice(&frame::encode(&chain::payload(&prev, s, forged.as_bytes())));
        std::fs::write(&seg_rw, b).expect("write");
        let why = broken(open(&rw));
        assert!(why.contains("rewritten"), "{why}");
        // The untouched original still opens.
        drop(open(&dir).expect("original opens"));
    }

    #[tokio::test]
    async fn a_tree_tail_past_the_checkpoint_short_or_ragged_and_a_torn_record_are_recovered() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("audit");
        let n = fill(&dir, 20).await;
        // Ten more records whose checkpoint never became durable (a crash before it).
        let log = open(&dir).expect("open");
        for i in 0..10 {
            log.append_best_effort(Draft::new(Stage::Read, format!("d{i}"), "inspect_node")).await.expect("read");
        }
        log.checkpoint().await;
        drop(log);
        drop_last_checkpoint(&dir);
        // The tree past the checkpoint: ragged (a torn write of its tail).
        let t = dir.join(tree::TREE_FILE);
        let f = std::fs::OpenOptions::new().write(true).open(&t).expect("open");
        f.set_len(tree::file_len(n + 4) + 7).expect("cut");
        drop(f);
        // And a torn record after the last one.
        let last_seg = verify::segments(&dir).expect("segments").last().cloned().expect("segment").1;
        let mut b = std::fs::read(&last_seg).expect("read");
        b.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
        std::fs::write(&last_seg, &b).expect("write");
        let log = open(&dir).expect("recovered from the checkpoint");
        assert_eq!(log.records_read_at_open(), 11, "record {n} and the ten after it");
        assert_eq!(log.append(Draft::new(Stage::Read, "z", "x")).await.expect("append").seq, n + 11);
        log.checkpoint().await;
        drop(log);
        let report = verify::verify_dir(&dir, None);
        assert!(report.ok, "{:?}", report.problem);
        assert_eq!(report.last_seq, n + 11);
        assert!(std::fs::read_dir(dir.join("quarantine")).expect("quarantine").count() >= 1, "torn tail kept");
    }

    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for e in std::fs::read_dir(from).expect("read_dir") {
            let e = e.expect("entry");
            if e.file_type().expect("type").is_file() {
                std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
            }
        }
        crate::fsutil::check_private_dir(to).ok();
    }
}
