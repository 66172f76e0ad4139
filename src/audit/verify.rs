//! Reading and verifying an audit directory: framing, CRC, sequence gaps, the hash chain, the
//! Merkle tree (recomputed from the records and compared with `tree.hashes`), every signed
//! checkpoint's root, and (with a checkpoint held elsewhere) a cut, rewritten or forked tail,
//! naming the first bad leaf.
//!
//! Everything streams one frame at a time: memory stays flat however large the log. The first
//! problem is named by file, byte offset and sequence.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use super::archive;
use super::chain;
use super::checkpoint::{self, Checkpoint};
use super::checkpoint_v1;
use super::merkle::{self, Frontier};
use super::record::Stored;
use super::tree;
use crate::frame::{self, End};

/// Magic of audit segment files written by this version: a record's hash is its RFC 6962 leaf
/// hash ([`chain::hash`]).
pub const MAGIC: &[u8; 8] = b"AEROAUD2";
/// Magic of segments written before that: a record's hash is SHA-256 of its payload
/// ([`chain::hash_v1`]). Read (verification, recovery, archiving), never written: the writer
/// starts a new segment rather than append to one.
pub const MAGIC_V1: &[u8; 8] = b"AEROAUD1";

/// How a segment's records are hashed, as its magic says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentFormat {
    /// `AEROAUD1`: record hash SHA-256(payload), leaf hash apart.
    V1,
    /// `AEROAUD2`: the record hash is the leaf hash.
    V2,
}

impl SegmentFormat {
    /// The record hash and the leaf hash of `payload` (one SHA-256 pass for a current segment).
    pub fn hashes(self, payload: &[u8]) -> ([u8; 32], merkle::Hash) {
        let leaf = merkle::leaf_hash(payload);
        match self {
            Self::V2 => (leaf, leaf),
            Self::V1 => (chain::hash_v1(payload), leaf),
        }
    }
}

/// Opens a segment of either format and says which it is. A file whose magic is neither is
/// refused with the reader's error for the current magic.
pub fn open_segment(path: &Path, last_file: bool) -> Result<(frame::Reader, SegmentFormat), frame::FrameError> {
    match frame::Reader::open(path, MAGIC, RECORD_BYTES_MAX, last_file) {
        Ok(r) => Ok((r, SegmentFormat::V2)),
        Err(e @ frame::FrameError::BadHeader { .. }) => {
            frame::Reader::open(path, MAGIC_V1, RECORD_BYTES_MAX, last_file)
                .map(|r| (r, SegmentFormat::V1))
                .map_err(|_| e)
        }
        Err(e) => Err(e),
    }
}
/// Upper bound of one framed record.
pub const RECORD_BYTES_MAX: u32 = 1 << 20;

/// The segment files of a directory, ordered by first sequence.
pub fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(n) = name.strip_prefix("audit-").and_then(|s| s.strip_suffix(".log"))
            && let Ok(first) = n.parse::<u64>()
        {
            out.push((first, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The file name of the segment starting at `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("audit-{first_seq:020}.log")
}

/// The first bad thing found, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// Byte offset of the bad frame (0 for whole-file problems).
    pub offset: u64,
    /// The sequence at fault (the expected one when the record is unreadable).
    pub seq: u64,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: byte offset {}: seq {}: {}", self.file.display(), self.offset, self.seq, self.what)
    }
}

/// What a chain scan saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records read.
    pub records: u64,
    /// First sequence (0 if empty).
    pub first_seq: u64,
    /// Last sequence (0 if empty).
    pub last_seq: u64,
    /// Hash of the last record (genesis hash if empty).
    pub head_hash: [u8; 32],
    /// Bytes read.
    pub bytes: u64,
    /// A torn tail: file, offset, bytes.
    pub torn: Option<(PathBuf, u64, u64)>,
    /// Where the last record checked is: its segment's first seq and its byte offset.
    pub last_position: Option<(u64, u64)>,
}

/// Scans the whole chain, calling `on_record` for each good record in order. Stops at the first
/// problem. A damaged last frame of the last segment is reported as `torn`, not as a problem.
pub fn scan(dir: &Path, on_record: impl FnMut(&Path, u64, &Stored) -> Result<(), String>) -> Result<Summary, Problem> {
    scan_from(dir, 1, None, on_record)
}

/// Like [`scan`], from record `from_seq` on: segments before the one holding it are not read,
/// records before it in that segment are only framed (CRC), and the first record checked is
/// `from_seq` itself, whose `prev_hash` is taken as given (the caller checks that record against
/// the tree). The summary counts the records checked; `last_seq` is 0 when the log does not
/// reach `from_seq`. `at` (segment first seq, byte offset) is where record `from_seq` is said to
/// start (a checkpoint's hint): reading begins there instead of at the segment's first record;
/// a wrong hint fails the scan (callers check it with [`record_at`] first).
pub fn scan_from(
    dir: &Path,
    from_seq: u64,
    at: Option<(u64, u64)>,
    on_record: impl FnMut(&Path, u64, &Stored) -> Result<(), String>,
) -> Result<Summary, Problem> {
    let all = segments(dir).map_err(|e| Problem { file: dir.into(), offset: 0, seq: 0, what: e.to_string() })?;
    scan_segments(&all, from_seq, at, on_record)
}

/// The segments of `dirs` together, ordered by first sequence: the audit directory first, then
/// archive locations. A segment found in several places (a copy left by an interrupted archive
/// run) is taken from the first that has it.
pub fn segments_in(dirs: &[PathBuf]) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut by_first: BTreeMap<u64, PathBuf> = BTreeMap::new();
    for d in dirs {
        for (first, path) in segments(d)? {
            by_first.entry(first).or_insert(path);
        }
    }
    Ok(by_first.into_iter().collect())
}

/// [`scan_from`] over a given list of segments (see [`segments_in`]).
pub fn scan_segments(
    all: &[(u64, PathBuf)],
    from_seq: u64,
    at: Option<(u64, u64)>,
    mut on_record: impl FnMut(&Path, u64, &Stored) -> Result<(), String>,
) -> Result<Summary, Problem> {
    let from_seq = from_seq.max(1);
    let start = if from_seq == 1 { 0 } else { all.iter().rposition(|(first, _)| *first <= from_seq).unwrap_or(0) };
    let segs = &all[start..];
    let mut skipping = from_seq > 1;
    let mut s = Summary { head_hash: chain::GENESIS, ..Default::default() };
    let mut expected: Option<u64> = None;
    let count = segs.len();
    for (i, (first, path)) in segs.iter().enumerate() {
        let last_file = i + 1 == count;
        let next = expected.unwrap_or(*first);
        if *first != next {
            return Err(Problem {
                file: path.clone(),
                offset: 0,
                seq: next,
                what: format!("segment starts at seq {first} but seq {next} was expected (records missing)"),
            });
        }
        let (mut r, format) = open_segment(path, last_file).map_err(|e| Problem {
            file: path.clone(),
            offset: 0,
            seq: next,
            what: e.to_string(),
        })?;
        if let Some((seg_first, offset)) = at
            && i == 0
            && seg_first == *first
        {
            r.seek_to(offset).map_err(|e| Problem {
                file: path.clone(),
                offset,
                seq: from_seq,
                what: e.to_string(),
            })?;
        }
        if r.base != *first && !matches!(r.end(), Some(End::Torn { offset: 0, .. })) {
            return Err(Problem {
                file: path.clone(),
                offset: 0,
                seq: next,
                what: format!("header says first seq {} but the name says {first}", r.base),
            });
        }
        loop {
            let want = expected.unwrap_or(*first);
            let item = r.next_frame().map_err(|e| {
                let (offset, what) = match &e {
                    frame::FrameError::Corrupt { offset, what, .. } => (*offset, what.clone()),
                    other => (0, other.to_string()),
                };
                Problem { file: path.clone(), offset, seq: want, what }
            })?;
            let Some((offset, payload)) = item else { break };
            let Some((prev, seq, body)) = chain::split(&payload) else {
                return Err(Problem {
                    file: path.clone(),
                    offset,
                    seq: want,
                    what: "record shorter than its prefix".into(),
                });
            };
            if skipping {
                if seq < from_seq {
                    expected = Some(seq + 1);
                    continue;
                }
                skipping = false;
                if seq != from_seq {
                    return Err(Problem {
                        file: path.clone(),
                        offset,
                        seq,
                        what: format!("seq {seq} where seq {from_seq} was expected (records missing)"),
                    });
                }
                s.head_hash = prev;
                expected = Some(seq);
            }
            let want = expected.unwrap_or(*first);
            if seq != want {
                return Err(Problem {
                    file: path.clone(),
                    offset,
                    seq,
                    what: format!("seq {seq} where seq {want} was expected (records missing, reordered or inserted)"),
                });
            }
            if prev != s.head_hash {
                return Err(Problem {
                    file: path.clone(),
                    offset,
                    seq,
                    what: format!(
                        "prev_hash {}… does not match the hash of the previous record {}… (the chain is broken: a \
                         record was altered, removed or taken from another log)",
                        &hex::encode(prev)[..16],
                        &hex::encode(s.head_hash)[..16]
                    ),
                });
            }
            let (hash, leaf_hash) = format.hashes(&payload);
            let stored = Stored { seq, prev_hash: prev, hash, leaf_hash, body_json: body.to_vec() };
            on_record(path, offset, &stored).map_err(|what| Problem { file: path.clone(), offset, seq, what })?;
            if s.records == 0 {
                s.first_seq = seq;
            }
            s.records += 1;
            s.last_seq = seq;
            s.head_hash = hash;
            s.last_position = Some((*first, offset));
            s.bytes += payload.len() as u64 + frame::FRAME_HEADER_LEN;
            expected = Some(seq + 1);
        }
        if let Some(End::Torn { offset, bytes }) = r.end() {
            s.torn = Some((path.clone(), *offset, *bytes));
        }
        if expected.is_none() {
            expected = Some(*first);
        }
    }
    Ok(s)
}

/// Whether the record at (`segment first seq`, `offset`) is a whole, CRC-valid record of `seq`.
pub fn record_at(dir: &Path, position: (u64, u64), seq: u64) -> bool {
    let path = dir.join(segment_name(position.0));
    let Ok((mut r, _)) = open_segment(&path, true) else { return false };
    if r.seek_to(position.1).is_err() {
        return false;
    }
    matches!(r.next_frame(), Ok(Some((_, p))) if chain::split(&p).map(|(_, s, _)| s) == Some(seq))
}

/// The result of a verification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// No problem found.
    pub ok: bool,
    /// Records checked.
    pub records: u64,
    /// First sequence.
    pub first_seq: u64,
    /// Last sequence.
    pub last_seq: u64,
    /// Hash of the last record, hex.
    pub head_hash: String,
    /// Hex RFC 6962 root of every record checked.
    pub root_hash: String,
    /// Checkpoints whose signature and root (or, v1, head) were checked.
    pub checkpoints_checked: u64,
    /// The first problem.
    pub problem: Option<Problem>,
    /// Bytes read.
    pub bytes: u64,
    /// Things worth knowing that are not problems (a torn tail, no instance key file).
    pub notes: Vec<String>,
    /// The chain scan's summary (head, torn tail).
    pub summary: Summary,
}

/// A checkpoint held outside the directory (an Actor answer's, an export), and the key that
/// signed it.
#[derive(Debug, Clone)]
pub struct Held {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The key it must verify with (`None`: the directory's `instance.pub`).
    pub key: Option<VerifyingKey>,
}

/// A root the records must produce at one tree size.
struct Expected {
    root: merkle::Hash,
    which: String,
}

/// Verifies an audit directory: every record, the tree file, every checkpoint. With `held`, a
/// checkpoint kept elsewhere: its tree must be a prefix of the directory's (a cut, a rewritten
/// record or a fork is reported naming the first bad leaf, when the directory still allows it).
pub fn verify_dir(dir: &Path, held: Option<&Checkpoint>) -> Report {
    verify_dir_held(dir, held.map(|c| Held { checkpoint: c.clone(), key: None }).as_ref())
}

/// [`verify_dir`] with the held checkpoint's key given explicitly.
pub fn verify_dir_held(dir: &Path, held: Option<&Held>) -> Report {
    verify_dir_archived(dir, &[], held)
}

/// [`verify_dir_held`] over the audit directory together with the locations its archived
/// segments were moved to (`aerodbctl audit archive`). Without them (or with an empty list),
/// a directory with an archive point is checked from the archive point on, the archived prefix
/// taken from `tree.hashes` (checkpoints below it checked against the stored tree, and the first
/// kept record's `prev_hash` against the hash `archive.log` notes), and a note says so; with
/// them, every record is checked, and a missing archived segment is named.
pub fn verify_dir_archived(dir: &Path, archives: &[PathBuf], held: Option<&Held>) -> Report {
    let mut report = Report::default();
    let fail = |mut report: Report, p: Problem| {
        report.ok = false;
        report.problem = Some(p);
        report
    };
    let cps_path = dir.join(checkpoint::CHECKPOINTS_FILE);
    let checkpoints = match checkpoint::read_all(dir) {
        Ok(c) => c.into_iter().map(|(o, c, _)| (o, c)).collect::<Vec<_>>(),
        Err(what) => return fail(report, Problem { file: cps_path, offset: 0, seq: 0, what }),
    };
    let v1_path = dir.join(checkpoint_v1::CHECKPOINTS_FILE);
    let v1 = match checkpoint_v1::read_all(dir) {
        Ok(c) => c,
        Err(what) => return fail(report, Problem { file: v1_path, offset: 0, seq: 0, what }),
    };
    let pub_path = dir.join(checkpoint::PUB_FILE);
    let pub_file = match std::fs::read_to_string(&pub_path).ok().map(|t| checkpoint::public_key_from_hex(&t)) {
        Some(Err(what)) => return fail(report, Problem { file: pub_path, offset: 0, seq: 0, what }),
        Some(Ok(k)) => Some(k),
        None => None,
    };
    let held_key = held.and_then(|h| h.key).or(pub_file);
    if let (Some(h), Some(p)) = (held.and_then(|h| h.key), pub_file)
        && h != p
    {
        return fail(
            report,
            Problem {
                file: pub_path,
                offset: 0,
                seq: 0,
                what: "the instance key in the directory is not the key of the held checkpoint".into(),
            },
        );
    }
    let key = match held_key {
        Some(k) => Some(k),
        None if checkpoints.is_empty() && held.is_none() => {
            report.notes.push("no instance.pub: v1 checkpoints checked against their own embedded keys".into());
            None
        }
        None => {
            return fail(
                report,
                Problem {
                    file: pub_path,
                    offset: 0,
                    seq: 0,
                    what: "no instance.pub and no key given: the checkpoints cannot be checked".into(),
                },
            );
        }
    };
    // Roots the records must produce, by tree size; a size signed twice with two roots is a fork.
    let mut expected: BTreeMap<u64, Expected> = BTreeMap::new();
    for (offset, cp) in &checkpoints {
        let Some(key) = &key else { break };
        if let Err(e) = Checkpoint::verify(&cp.note, key) {
            return fail(
                report,
                Problem { file: cps_path.clone(), offset: *offset, seq: cp.size, what: e.to_string() },
            );
        }
        if let Some(prev) = expected.get(&cp.size)
            && prev.root != cp.root
        {
            return fail(
                report,
                Problem {
                    file: cps_path.clone(),
                    offset: *offset,
                    seq: cp.size,
                    what: format!("two checkpoints sign different roots for tree size {} (a fork)", cp.size),
                },
            );
        }
        expected.insert(cp.size, Expected { root: cp.root, which: format!("the checkpoint at byte offset {offset}") });
        report.checkpoints_checked += 1;
    }
    let mut held_size = None;
    if let (Some(h), Some(key)) = (held, &key) {
        let cp = &h.checkpoint;
        if let Err(e) = Checkpoint::verify(&cp.note, key) {
            return fail(
                report,
                Problem { file: PathBuf::from("<held checkpoint>"), offset: 0, seq: cp.size, what: e.to_string() },
            );
        }
        if let Some(prev) = expected.get(&cp.size)
            && prev.root != cp.root
        {
            return fail(
                report,
                Problem {
                    file: cps_path.clone(),
                    offset: 0,
                    seq: cp.size,
                    what: format!(
                        "{} signs another root than the held checkpoint for tree size {} (a fork: two trees of one size)",
                        prev.which, cp.size
                    ),
                },
            );
        }
        expected.insert(cp.size, Expected { root: cp.root, which: "the held checkpoint".into() });
        held_size = Some(cp.size);
        report.checkpoints_checked += 1;
    }
    let mut v1_heads: BTreeMap<u64, (String, String)> = BTreeMap::new();
    let v1_key = key.map(|k| hex::encode(k.to_bytes()));
    for (offset, cp) in &v1 {
        if let Err(what) = cp.verify(v1_key.as_deref()) {
            return fail(report, Problem { file: v1_path.clone(), offset: *offset, seq: cp.seq, what });
        }
        v1_heads.insert(cp.seq, (cp.head_hash.clone(), format!("v1 checkpoint at byte offset {offset}")));
        report.checkpoints_checked += 1;
    }
    // Where the records are: the directory, then the archive locations given.
    let archive_path = dir.join(archive::ARCHIVE_FILE);
    let point = match archive::latest_point(dir) {
        Ok(p) => p,
        Err(e) => return fail(report, Problem { file: archive_path, offset: 0, seq: 0, what: e.to_string() }),
    };
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(archives.iter().cloned());
    let all = match segments_in(&dirs) {
        Ok(a) => a,
        Err(e) => return fail(report, Problem { file: dir.into(), offset: 0, seq: 0, what: e.to_string() }),
    };
    // The stored tree, streamed beside the recomputed one.
    let mut stored_tree = tree::TreeStream::open(dir);
    let mut tree_mismatch: Option<u64> = None;
    let mut frontier = Frontier::new();
    let mut good_sizes: Vec<u64> = Vec::new();
    // Without the archived segments, start at the archive point from the stored tree's prefix.
    let from = match &point {
        Some(p) if all.first().map(|s| s.0) != Some(1) => p.first_kept_seq,
        _ => 1,
    };
    if let Some(p) = point.as_ref().filter(|_| from > 1) {
        let prefix = from - 1;
        let prefix_problem = |what: String| Problem { file: dir.join(tree::TREE_FILE), offset: 0, seq: prefix, what };
        let reader = match tree::TreeReader::open(dir) {
            Ok(r) if r.leaves() >= prefix => r,
            Ok(_) => {
                return fail(
                    report,
                    prefix_problem(format!("tree.hashes does not reach the archive point (seq {prefix})")),
                );
            }
            Err(e) => return fail(report, prefix_problem(e.to_string())),
        };
        let peaks = Frontier::peak_coordinates(prefix)
            .into_iter()
            .map(|(l, i)| merkle::Nodes::node(&reader, l, i))
            .collect::<Result<Vec<_>, _>>();
        match peaks.ok().and_then(|p| Frontier::from_peaks(prefix, p)) {
            Some(f) => frontier = f,
            None => return fail(report, prefix_problem("tree.hashes cannot be read below the archive point".into())),
        }
        if reader.leaf(prefix - 1).ok().map(hex::encode).as_deref() != Some(p.last_archived_leaf.as_str()) {
            return fail(
                report,
                prefix_problem(format!(
                    "tree.hashes does not hold the leaf of seq {prefix} that archive.log notes for the archive point"
                )),
            );
        }
        let below: Vec<(u64, merkle::Hash, String)> =
            expected.range(..from).map(|(size, e)| (*size, e.root, e.which.clone())).collect();
        for (size, root, which) in &below {
            if merkle::root(&reader, *size).ok() != Some(*root) {
                return fail(
                    report,
                    Problem {
                        file: dir.join(tree::TREE_FILE),
                        offset: 0,
                        seq: *size,
                        what: format!(
                            "tree.hashes does not produce the root that {which} signs at tree size {size}, below the \
                             archive point: verify with the archived segments (--archive {}) to name the record",
                            p.destination
                        ),
                    },
                );
            }
            good_sizes.push(*size);
        }
        if let Some(t) = &mut stored_tree
            && t.skip(merkle::stored_nodes(prefix)).is_none()
        {
            stored_tree = None;
        }
        report.notes.push(format!(
            "records 1..={prefix} are archived in {} (archive.log): records checked from seq {from}, the archived \
             prefix taken from tree.hashes ({} checkpoint(s) below it checked against tree.hashes only); pass \
             --archive {} to verify every record",
            p.destination,
            below.len(),
            p.destination
        ));
    }
    let first_kept_prev = point.as_ref().filter(|_| from > 1).map(|p| p.last_archived_hash.clone());
    let scanned = scan_segments(&all, from, None, |_, _, stored| {
        if stored.seq == from
            && let Some(h) = &first_kept_prev
            && &hex::encode(stored.prev_hash) != h
        {
            return Err(format!(
                "prev_hash {}… is not the hash of the last archived record that archive.log notes ({}…): the \
                 records at the archive point were replaced",
                &hex::encode(stored.prev_hash)[..16],
                h.get(..16).unwrap_or("")
            ));
        }
        if let Some((hash, which)) = v1_heads.get(&stored.seq) {
            let actual = hex::encode(stored.hash);
            if &actual != hash {
                return Err(format!(
                    "{which} signs head {}… at seq {} but the record there hashes to {}… (the log was rewritten)",
                    hash.get(..16).unwrap_or(""),
                    stored.seq,
                    &actual[..16]
                ));
            }
        }
        let leaf_index = frontier.size();
        let mut mismatch = false;
        frontier.push(stored.leaf_hash, |h| {
            if let Some(t) = &mut stored_tree
                && t.next_hash().is_some_and(|g| &g != h)
            {
                mismatch = true;
            }
        });
        if mismatch && tree_mismatch.is_none() {
            tree_mismatch = Some(leaf_index);
        }
        if let Some(e) = expected.get(&frontier.size()) {
            if frontier.root() != e.root {
                let first_bad = match tree_mismatch {
                    Some(i) => format!(
                        "the first bad leaf is seq {} (leaf index {i}), where tree.hashes still holds the original hash",
                        i + 1
                    ),
                    None => {
                        let after = good_sizes.last().copied().unwrap_or(0);
                        format!(
                            "the first bad leaf is among seqs {}..={} (after the last tree size whose signed root the records still produce)",
                            after + 1,
                            frontier.size()
                        )
                    }
                };
                return Err(format!(
                    "the records 1..={} do not produce the root {}… that {} signs (the log was rewritten): {first_bad}",
                    frontier.size(),
                    &hex::encode(e.root)[..16],
                    e.which
                ));
            }
            good_sizes.push(frontier.size());
        }
        Ok(())
    });
    if stored_tree.is_none() {
        report.notes.push("no tree.hashes: the tree was recomputed from the records only".into());
    }
    stored_tree.take();
    let summary = match scanned {
        Ok(s) => s,
        Err(mut p) => {
            // A break found by the chain after a leaf already differed from tree.hashes: that
            // leaf is the first bad one.
            if let Some(i) = tree_mismatch
                && i + 1 < p.seq
            {
                p.what = format!(
                    "{} (the first bad leaf is seq {} (leaf index {i}), where tree.hashes holds another hash)",
                    p.what,
                    i + 1
                );
            }
            if let Some(pt) = &point
                && p.seq < pt.first_kept_seq
                && p.what.starts_with("segment starts at")
            {
                p.what = format!(
                    "{}: records below seq {} were archived to {} (archive.log); pass every archive location with \
                     --archive",
                    p.what, pt.first_kept_seq, pt.destination
                );
            }
            return fail(report, p);
        }
    };
    report.summary = summary.clone();
    report.records = summary.records;
    report.first_seq = summary.first_seq;
    report.last_seq = summary.last_seq;
    report.head_hash = hex::encode(summary.head_hash);
    report.root_hash = hex::encode(frontier.root());
    report.bytes = summary.bytes;
    let newest_signed =
        expected.keys().next_back().copied().unwrap_or(0).max(v1_heads.keys().next_back().copied().unwrap_or(0));
    let cut = expected
        .range(summary.last_seq + 1..)
        .next()
        .map(|(size, e)| (*size, e.which.clone()))
        .or_else(|| v1_heads.range(summary.last_seq + 1..).next().map(|(s, (_, w))| (*s, w.clone())));
    if let Some((size, which)) = cut {
        let (file, offset) =
            summary.torn.clone().map(|(f, o, _)| (f, o)).unwrap_or_else(|| {
                (segments(dir).ok().and_then(|s| s.last().map(|l| l.1.clone())).unwrap_or_default(), 0)
            });
        return fail(
            report,
            Problem {
                file,
                offset,
                seq: summary.last_seq + 1,
                what: format!(
                    "the log ends at seq {} but {which} covers tree size {size}: records {}..={size} were cut (the first \
                     bad leaf is seq {}, leaf index {})",
                    summary.last_seq,
                    summary.last_seq + 1,
                    summary.last_seq + 1,
                    summary.last_seq
                ),
            },
        );
    }
    if let Some(i) = tree_mismatch {
        if i < newest_signed {
            return fail(
                report,
                Problem {
                    file: dir.join(tree::TREE_FILE),
                    offset: 0,
                    seq: i + 1,
                    what: format!(
                        "tree.hashes disagrees with the records at seq {} (leaf index {i}), inside signed tree size \
                         {newest_signed}",
                        i + 1
                    ),
                },
            );
        }
        report.notes.push(format!(
            "tree.hashes disagrees with the records from seq {} on, past the newest checkpoint: an unsynced tail \
             that the next start rebuilds",
            i + 1
        ));
    }
    if let Some(size) = held_size {
        report.notes.push(format!("the held checkpoint's tree (size {size}) is a prefix of this log"));
    }
    if let Some((file, offset, bytes)) = &summary.torn {
        report.notes.push(format!(
            "{}: {bytes} bytes of torn tail at byte offset {offset} (a crash during an append; no checkpoint covers \
             them)",
            file.display()
        ));
    }
    report.ok = true;
    report
}

/// Reads records in order from `from_seq`, without chain checks (CRC only), calling `f` until it
/// returns false.
pub fn read_from(dir: &Path, from_seq: u64, mut f: impl FnMut(&Stored) -> bool) -> Result<(), Problem> {
    let segs = segments(dir).map_err(|e| Problem { file: dir.into(), offset: 0, seq: 0, what: e.to_string() })?;
    let start = segs.iter().rposition(|(first, _)| *first <= from_seq.max(1)).unwrap_or(0);
    let count = segs.len();
    for (i, (_, path)) in segs.iter().enumerate().skip(start) {
        let (mut r, format) = open_segment(path, i + 1 == count).map_err(|e| Problem {
            file: path.clone(),
            offset: 0,
            seq: 0,
            what: e.to_string(),
        })?;
        while let Some((offset, payload)) =
            r.next_frame().map_err(|e| Problem { file: path.clone(), offset: 0, seq: 0, what: e.to_string() })?
        {
            let Some((prev, seq, body)) = chain::split(&payload) else {
                return Err(Problem { file: path.clone(), offset, seq: 0, what: "short record".into() });
            };
            if seq < from_seq {
                continue;
            }
            let (hash, leaf_hash) = format.hashes(&payload);
            let stored = Stored { seq, prev_hash: prev, hash, leaf_hash, body_json: body.to_vec() };
            if !f(&stored) {
                return Ok(());
            }
        }
    }
    Ok(())
}
