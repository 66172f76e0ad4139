//! Archiving sealed segments: `aerodbctl audit archive --audit DIR --to DEST` moves the segments
//! wholly below the newest signed checkpoint to `DEST`, and notes the archive point durably in
//! `DIR/archive.log`, so start and verification know that the records below it are archived,
//! not missing or cut. Nothing is deleted: a segment leaves `DIR` only after its copy in `DEST`
//! is durable and reads back with the same SHA-256.
//!
//! ```text
//! archive.log: frame file header (magic "AEROARC1", base 0), then one frame per archive run;
//! its payload is the JSON of an [`ArchivePoint`] (at most ENTRY_BYTES_MAX bytes).
//! ```
//!
//! # Invariants
//! - Only sealed segments move, and only those whose every record is below the newest signed
//!   checkpoint's size `n`: the segment holding record `n` (where start begins) and the active
//!   segment always stay, so start never needs an archived record.
//! - Order of durability: copy → fsync copy and `DEST` → append the archive point → fsync
//!   `archive.log` and `DIR` → remove the originals → fsync `DIR`. A crash at any step leaves every
//!   record in `DIR`, in `DEST`, or both; a run again finishes the move (an identical copy in
//!   `DEST` is reused, a different one refused).
//! - The archive point only moves forward (`first_kept_seq` grows).
//! - It refuses a directory whose lock ([`LOCK_FILE`]) a running control plane holds: the audit
//!   log takes the lock for as long as its writer runs, so archiving never races start, a
//!   verification or a read of the running control plane.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::checkpoint::{self, Checkpoint};
use super::verify;
use super::{chain, merkle};
use crate::frame;

/// The file noting every archive point, in the audit directory.
pub const ARCHIVE_FILE: &str = "archive.log";
/// Its magic.
pub const MAGIC: &[u8; 8] = b"AEROARC1";
/// Upper bound of one archive point's JSON.
pub const ENTRY_BYTES_MAX: u32 = 1 << 20;
/// The audit directory's lock file: held by the running control plane's audit writer.
pub const LOCK_FILE: &str = "LOCK";

/// One archived segment, as it was when it left the audit directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedSegment {
    /// Its file name (`audit-<first seq>.log`).
    pub name: String,
    /// The seq of its first record.
    pub first_seq: u64,
    /// The seq of its last record.
    pub last_seq: u64,
    /// Its length in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
}

/// One archive run, noted in `archive.log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivePoint {
    /// The first seq still in the audit directory: records `1..first_kept_seq` are archived.
    pub first_kept_seq: u64,
    /// Hash of record `first_kept_seq − 1` (hex): the `prev_hash` the first kept record must
    /// carry.
    pub last_archived_hash: String,
    /// Leaf hash of record `first_kept_seq − 1` (hex): `tree.hashes` must hold it.
    pub last_archived_leaf: String,
    /// The size of the newest signed checkpoint when the segments were archived.
    pub checkpoint_size: u64,
    /// Where the segments went (as given, made absolute).
    pub destination: String,
    /// When (milliseconds since the Unix epoch).
    pub time_unix_ms: u64,
    /// The segments this run moved.
    pub segments: Vec<ArchivedSegment>,
}

/// Why archiving (or reading the archive points) failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// I/O on a file or directory.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A running control plane holds the directory (operator: stop it first).
    #[error(
        "{0} is held by a running control plane (its audit lock {LOCK_FILE} is taken): stop that control plane \
         before archiving"
    )]
    Held(PathBuf),
    /// Nothing is signed yet, so nothing is below a checkpoint.
    #[error("{0} has no signed checkpoint: nothing can be archived before the first checkpoint")]
    NoCheckpoint(PathBuf),
    /// The checkpoints or the instance key cannot be read or do not verify.
    #[error("{path}: {what}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A segment to archive does not read as a whole, continuous run of records.
    #[error("{path}: byte offset {offset}: {what} (run `aerodbctl audit verify` on the directory; nothing was moved)")]
    BadSegment {
        /// The segment.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The destination already holds a different file of that name, or an interrupted run
    /// archived these segments to another destination (named).
    #[error(
        "{0} exists and differs from the segment to archive, or an interrupted run archived these segments there: nothing was moved"
    )]
    DestinationDiffers(PathBuf),
    /// The copy read back with another SHA-256 than the original.
    #[error("{0}: the copy reads back with another SHA-256 than the original: nothing was moved")]
    CopyMismatch(PathBuf),
    /// `archive.log` is damaged.
    #[error("{path}: byte offset {offset}: {what}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What is wrong.
        what: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io { path: path.to_path_buf(), source }
}

/// Takes the audit directory's lock without waiting: `Ok(file)` holds it until dropped,
/// [`ArchiveError::Held`] when another process (or another open in this one) holds it.
pub fn try_lock(dir: &Path) -> Result<File, ArchiveError> {
    let path = dir.join(LOCK_FILE);
    let f = crate::fsutil::open_private(OpenOptions::new().create(true).truncate(false).write(true), &path)
        .map_err(io(&path))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(ArchiveError::Held(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(source)) => Err(ArchiveError::Io { path, source }),
    }
}

/// Every archive point of `dir`, oldest first (empty when nothing was archived). A torn last
/// frame (a crash mid-append, before the originals were removed) is ignored.
pub fn read_points(dir: &Path) -> Result<Vec<ArchivePoint>, ArchiveError> {
    let path = dir.join(ARCHIVE_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bad = |offset, what: String| ArchiveError::Unreadable { path: path.clone(), offset, what };
    let mut r = frame::Reader::open(&path, MAGIC, ENTRY_BYTES_MAX, true).map_err(|e| bad(0, e.to_string()))?;
    let mut out: Vec<ArchivePoint> = Vec::new();
    while let Some((offset, payload)) = r.next_frame().map_err(|e| bad(0, e.to_string()))? {
        let p: ArchivePoint = serde_json::from_slice(&payload).map_err(|e| bad(offset, e.to_string()))?;
        if out.last().is_some_and(|l| l.first_kept_seq >= p.first_kept_seq) {
            return Err(bad(offset, format!("the archive point moves back to seq {}", p.first_kept_seq)));
        }
        out.push(p);
    }
    Ok(out)
}

/// The newest archive point of `dir`, if any.
pub fn latest_point(dir: &Path) -> Result<Option<ArchivePoint>, ArchiveError> {
    Ok(read_points(dir)?.pop())
}

/// What an archive run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The archive point noted (`None`: nothing was old enough to move).
    pub point: Option<ArchivePoint>,
    /// The newest signed checkpoint's size.
    pub checkpoint_size: u64,
}

fn sha256_of(path: &Path) -> Result<String, ArchiveError> {
    let mut f = File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Reads one sealed segment: every frame whole, seqs consecutive from `first`, the chain
/// continuous inside it; returns (last seq, last record's hash, last leaf hash).
fn check_segment(path: &Path, first: u64) -> Result<(u64, [u8; 32], merkle::Hash), ArchiveError> {
    let bad = |offset, what: String| ArchiveError::BadSegment { path: path.to_path_buf(), offset, what };
    let (mut r, format) = verify::open_segment(path, false).map_err(|e| bad(0, e.to_string()))?;
    let mut expected = first;
    let mut last: Option<([u8; 32], merkle::Hash)> = None;
    while let Some((offset, payload)) = r.next_frame().map_err(|e| bad(0, e.to_string()))? {
        let (prev, seq, _) =
            chain::split(&payload).ok_or_else(|| bad(offset, "record shorter than its prefix".into()))?;
        if seq != expected {
            return Err(bad(offset, format!("seq {seq} where seq {expected} was expected")));
        }
        if let Some((h, _)) = last
            && h != prev
        {
            return Err(bad(offset, format!("seq {seq}: prev_hash does not match the previous record")));
        }
        last = Some(format.hashes(&payload));
        expected += 1;
    }
    let (hash, leaf) = last.ok_or_else(|| bad(0, "a sealed segment without records".into()))?;
    Ok((expected - 1, hash, leaf))
}

/// Moves every sealed segment of `dir` wholly below its newest signed checkpoint to `dest`
/// (created 0700 if absent), noting the archive point in `dir/archive.log` before any original
/// is removed. Refuses while a control plane holds `dir`. Running it again after a crash
/// finishes the move; running it when nothing is old enough moves nothing.
pub fn archive(dir: &Path, dest: &Path, now_unix_ms: u64) -> Result<Outcome, ArchiveError> {
    let _lock = try_lock(dir)?;
    let pub_path = dir.join(checkpoint::PUB_FILE);
    let key_text = std::fs::read_to_string(&pub_path).map_err(io(&pub_path))?;
    let key = checkpoint::public_key_from_hex(&key_text)
        .map_err(|what| ArchiveError::Checkpoint { path: pub_path.clone(), what })?;
    let cps_path = dir.join(checkpoint::CHECKPOINTS_FILE);
    let cps = checkpoint::read_all(dir).map_err(|what| ArchiveError::Checkpoint { path: cps_path.clone(), what })?;
    let Some((offset, newest, _)) = cps.last() else { return Err(ArchiveError::NoCheckpoint(dir.to_path_buf())) };
    let newest = Checkpoint::verify(&newest.note, &key)
        .map_err(|e| ArchiveError::Checkpoint { path: cps_path.clone(), what: format!("byte offset {offset}: {e}") })?;
    let n = newest.size;
    let segs = verify::segments(dir).map_err(io(dir))?;
    // Sealed (not the last) and wholly below n: the next segment starts at or before n.
    let movable: Vec<(u64, PathBuf)> =
        segs.windows(2).filter(|w| w[1].0 <= n).map(|w| w[0].clone()).collect::<Vec<_>>();
    let Some(next_first) = segs.get(movable.len()).map(|s| s.0) else {
        return Ok(Outcome { point: None, checkpoint_size: n });
    };
    if movable.is_empty() {
        return Ok(Outcome { point: None, checkpoint_size: n });
    }
    let mut expected_first = movable[0].0;
    let mut moved = Vec::new();
    let mut last = None;
    for (first, path) in &movable {
        if *first != expected_first {
            return Err(ArchiveError::BadSegment {
                path: path.clone(),
                offset: 0,
                what: format!("segment starts at seq {first} but seq {expected_first} was expected"),
            });
        }
        let (last_seq, hash, leaf) = check_segment(path, *first)?;
        expected_first = last_seq + 1;
        last = Some((hash, leaf));
        moved.push(ArchivedSegment {
            name: verify::segment_name(*first),
            first_seq: *first,
            last_seq,
            bytes: std::fs::metadata(path).map_err(io(path))?.len(),
            sha256: sha256_of(path)?,
        });
    }
    if expected_first != next_first {
        return Err(ArchiveError::BadSegment {
            path: dir.join(verify::segment_name(next_first)),
            offset: 0,
            what: format!("segment starts at seq {next_first} but seq {expected_first} was expected"),
        });
    }
    let (last_hash, last_leaf) = last.unwrap_or_default();
    // The stored tree must hold the last archived leaf as the records have it: start relies on
    // tree.hashes for the archived prefix.
    let tree_leaf = super::tree::TreeReader::open(dir)
        .and_then(|t| t.leaf(next_first - 2))
        .map_err(|e| ArchiveError::Checkpoint { path: dir.join(super::tree::TREE_FILE), what: e.to_string() })?;
    if tree_leaf != last_leaf {
        return Err(ArchiveError::BadSegment {
            path: movable.last().map(|m| m.1.clone()).unwrap_or_default(),
            offset: 0,
            what: format!("the leaf of seq {} is not the one tree.hashes holds", next_first - 1),
        });
    }

    crate::fsutil::create_dir_durable(dest).map_err(io(dest))?;
    let dest_abs = std::fs::canonicalize(dest).map_err(io(dest))?;
    for (seg, (_, src)) in moved.iter().zip(&movable) {
        let to = dest.join(&seg.name);
        if to.exists() {
            if sha256_of(&to)? != seg.sha256 {
                return Err(ArchiveError::DestinationDiffers(to));
            }
            continue;
        }
        let tmp = dest.join(format!(".{}.tmp", seg.name));
        {
            let mut out = crate::fsutil::open_private(OpenOptions::new().create(true).truncate(true).write(true), &tmp)
                .map_err(io(&tmp))?;
            let mut inp = File::open(src).map_err(io(src))?;
            std::io::copy(&mut inp, &mut out).map_err(io(&tmp))?;
            out.flush().map_err(io(&tmp))?;
            out.sync_all().map_err(io(&tmp))?;
        }
        if sha256_of(&tmp)? != seg.sha256 {
            return Err(ArchiveError::CopyMismatch(tmp));
        }
        std::fs::rename(&tmp, &to).map_err(io(&to))?;
    }
    crate::fsutil::fsync_dir(dest).map_err(io(dest))?;

    // A run that stopped after noting the point and before removing the originals: the point is
    // there already; finish the removal (into the same destination only).
    let noted = latest_point(dir)?.filter(|p| p.first_kept_seq == next_first);
    if let Some(p) = noted {
        if p.destination != dest_abs.display().to_string() {
            return Err(ArchiveError::DestinationDiffers(PathBuf::from(&p.destination)));
        }
        remove_originals(dir, &movable)?;
        return Ok(Outcome { point: Some(p), checkpoint_size: n });
    }
    let point = ArchivePoint {
        first_kept_seq: next_first,
        last_archived_hash: hex::encode(last_hash),
        last_archived_leaf: hex::encode(last_leaf),
        checkpoint_size: n,
        destination: dest_abs.display().to_string(),
        time_unix_ms: now_unix_ms,
        segments: moved,
    };
    append_point(dir, &point)?;
    remove_originals(dir, &movable)?;
    Ok(Outcome { point: Some(point), checkpoint_size: n })
}

/// Removes the originals of segments whose copies and archive point are durable.
fn remove_originals(dir: &Path, movable: &[(u64, PathBuf)]) -> Result<(), ArchiveError> {
    for (_, src) in movable {
        std::fs::remove_file(src).map_err(io(src))?;
    }
    crate::fsutil::fsync_dir(dir).map_err(io(dir))
}

/// Appends one archive point to `dir/archive.log` (created with its header) and makes it durable.
fn append_point(dir: &Path, point: &ArchivePoint) -> Result<(), ArchiveError> {
    let path = dir.join(ARCHIVE_FILE);
    if let Some(prev) = read_points(dir)?.last()
        && prev.first_kept_seq >= point.first_kept_seq
    {
        return Err(ArchiveError::Unreadable {
            path,
            offset: 0,
            what: format!(
                "the archive point would move back from seq {} to {}",
                prev.first_kept_seq, point.first_kept_seq
            ),
        });
    }
    let json = serde_json::to_vec(point).map_err(|e| ArchiveError::Unreadable {
        path: path.clone(),
        offset: 0,
        what: e.to_string(),
    })?;
    let fresh = !path.exists();
    let mut f = crate::fsutil::open_private(OpenOptions::new().create(true).append(true), &path).map_err(io(&path))?;
    if fresh {
        f.write_all(&frame::header(MAGIC, 0)).map_err(io(&path))?;
    } else {
        // A torn last frame (a crash mid-append) is cut off first, as checkpoints.log does.
        let good = frame::Reader::open(&path, MAGIC, ENTRY_BYTES_MAX, true)
            .and_then(|mut r| {
                while r.next_frame()?.is_some() {}
                Ok(r.good_len())
            })
            .map_err(|e| ArchiveError::Unreadable { path: path.clone(), offset: 0, what: e.to_string() })?;
        if f.metadata().map_err(io(&path))?.len() > good {
            frame::truncate_keeping_copy(&path, good, &dir.join("quarantine")).map_err(io(&path))?;
        }
    }
    f.write_all(&frame::encode(&json)).map_err(io(&path))?;
    f.sync_all().map_err(io(&path))?;
    crate::fsutil::fsync_dir(dir).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::audit::log::{AuditLog, AuditOptions};
    use crate::audit::record::{Draft, Stage};
    use crate::clock::ManualClock;

    fn open(dir: &Path) -> AuditLog {
        AuditLog::open(AuditOptions {
            dir: dir.to_path_buf(),
            instance_id: "cp-archive".into(),
            checkpoint_every: 1_000_000,
            checkpoint_interval_ms: 3_600_000,
            segment_bytes_max: 2048,
            clock: Arc::new(ManualClock::new(1_000)),
        })
        .expect("open")
    }

    #[tokio::test]
    async fn archiving_is_refused_while_the_log_is_open_and_an_interrupted_run_finishes_on_the_next() {
        let root = tempfile::tempdir().expect("tempdir");
        let (dir, dest) = (root.path().join("audit"), root.path().join("archive"));
        let log = open(&dir);
        for i in 0..60 {
            log.append_best_effort(Draft::new(Stage::Read, format!("c{i}"), "inspect_node")).await.expect("read");
        }
        log.checkpoint().await.expect("checkpoint");
        // The writer holds the lock: refused, nothing moved.
        let before = verify::segments(&dir).expect("segments");
        assert!(before.len() > 3, "{before:?}");
        assert!(matches!(archive(&dir, &dest, 1), Err(ArchiveError::Held(_))));
        assert_eq!(verify::segments(&dir).expect("segments"), before);
        drop(log);

        // Closed: taken once the writer thread has let go (bounded wait on the condition).
        let mut outcome = None;
        for _ in 0..200 {
            match archive(&dir, &dest, 2) {
                Err(ArchiveError::Held(_)) => std::thread::sleep(std::time::Duration::from_millis(10)),
                other => {
                    outcome = Some(other.expect("archived"));
                    break;
                }
            }
        }
        let point = outcome.expect("the lock is released").point.expect("segments moved");
        assert_eq!(point.segments.len(), before.len() - 1, "every sealed segment below the checkpoint");
        assert_eq!(verify::segments(&dir).expect("segments").len(), 1);
        // An interrupted run (the point noted, the originals not yet removed) finishes.
        for s in &point.segments {
            std::fs::copy(dest.join(&s.name), dir.join(&s.name)).expect("copy back");
        }
        let again = archive(&dir, &dest, 3).expect("finished").point.expect("the noted point");
        assert_eq!(again, point);
        assert_eq!(read_points(&dir).expect("points"), vec![point.clone()], "noted once");
        assert_eq!(verify::segments(&dir).expect("segments").len(), 1);
        // Into another destination it is refused, naming the first.
        for s in &point.segments {
            std::fs::copy(dest.join(&s.name), dir.join(&s.name)).expect("copy back");
        }
        let other = root.path().join("elsewhere");
        assert!(
            matches!(archive(&dir, &other, 4), Err(ArchiveError::DestinationDiffers(p)) if p == dest.canonicalize().expect("abs"))
        );
        // The log opens again from its checkpoint with the archive point noted.
        let log = open(&dir);
        assert_eq!(log.records_read_at_open(), 1);
    }
}
