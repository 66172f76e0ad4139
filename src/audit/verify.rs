//! Reading and verifying an audit directory: framing, CRC, sequence gaps, the hash chain,
//! checkpoint signatures, and (with an exported checkpoint) a cut or rewritten tail.
//!
//! Everything streams one frame at a time: memory stays flat however large the log. The first
//! problem is named by file, byte offset and sequence.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::chain;
use super::checkpoint::{self, Checkpoint};
use super::record::Stored;
use crate::frame::{self, End};

/// Magic of audit segment files.
pub const MAGIC: &[u8; 8] = b"AEROAUD1";
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
}

/// Scans the whole chain, calling `on_record` for each good record in order. Stops at the first
/// problem. A damaged last frame of the last segment is reported as `torn`, not as a problem.
pub fn scan(
    dir: &Path,
    mut on_record: impl FnMut(&Path, u64, &Stored) -> Result<(), String>,
) -> Result<Summary, Problem> {
    let segs = segments(dir).map_err(|e| Problem { file: dir.into(), offset: 0, seq: 0, what: e.to_string() })?;
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
        let mut r = frame::Reader::open(path, MAGIC, RECORD_BYTES_MAX, last_file).map_err(|e| Problem {
            file: path.clone(),
            offset: 0,
            seq: next,
            what: e.to_string(),
        })?;
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
            let hash = chain::hash(&payload);
            let stored = Stored { seq, prev_hash: prev, hash, body_json: body.to_vec() };
            on_record(path, offset, &stored).map_err(|what| Problem { file: path.clone(), offset, seq, what })?;
            if s.records == 0 {
                s.first_seq = seq;
            }
            s.records += 1;
            s.last_seq = seq;
            s.head_hash = hash;
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
    /// Checkpoints whose signature and head were checked.
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

/// Verifies an audit directory. With `exported` (a checkpoint kept elsewhere), its key is the
/// trusted key and its `(seq, head_hash)` must still be in the log.
pub fn verify_dir(dir: &Path, exported: Option<&Checkpoint>) -> Report {
    let mut report = Report::default();
    let fail = |mut report: Report, p: Problem| {
        report.ok = false;
        report.problem = Some(p);
        report
    };
    let cps_path = dir.join(checkpoint::CHECKPOINTS_FILE);
    let checkpoints = match checkpoint::read_all(dir) {
        Ok(c) => c,
        Err(what) => return fail(report, Problem { file: cps_path, offset: 0, seq: 0, what }),
    };
    let pub_file = std::fs::read_to_string(dir.join(checkpoint::PUB_FILE)).ok().map(|s| s.trim().to_string());
    let trusted: Option<String> = match (exported, &pub_file) {
        (Some(e), Some(p)) if &e.public_key != p => {
            return fail(
                report,
                Problem {
                    file: dir.join(checkpoint::PUB_FILE),
                    offset: 0,
                    seq: e.seq,
                    what: "the instance key in the directory is not the key of the exported checkpoint".into(),
                },
            );
        }
        (Some(e), _) => Some(e.public_key.clone()),
        (None, Some(p)) => Some(p.clone()),
        (None, None) => {
            report.notes.push("no instance.pub: checkpoints checked against their own embedded keys".into());
            None
        }
    };
    let mut expected_heads: BTreeMap<u64, (String, String)> = BTreeMap::new();
    for (offset, cp) in &checkpoints {
        if let Err(what) = cp.verify(trusted.as_deref()) {
            return fail(report, Problem { file: cps_path.clone(), offset: *offset, seq: cp.seq, what });
        }
        expected_heads.insert(cp.seq, (cp.head_hash.clone(), format!("checkpoint at byte offset {offset}")));
        report.checkpoints_checked += 1;
    }
    if let Some(e) = exported {
        if let Err(what) = e.verify(None) {
            return fail(report, Problem { file: PathBuf::from("<exported checkpoint>"), offset: 0, seq: e.seq, what });
        }
        expected_heads.insert(e.seq, (e.head_hash.clone(), "the exported checkpoint".into()));
        report.checkpoints_checked += 1;
    }
    let scanned = scan(dir, |_, _, stored| {
        if let Some((hash, which)) = expected_heads.get(&stored.seq) {
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
        Ok(())
    });
    let summary = match scanned {
        Ok(s) => s,
        Err(p) => return fail(report, p),
    };
    report.summary = summary.clone();
    report.records = summary.records;
    report.first_seq = summary.first_seq;
    report.last_seq = summary.last_seq;
    report.head_hash = hex::encode(summary.head_hash);
    report.bytes = summary.bytes;
    if let Some((&seq, (_, which))) = expected_heads.range(summary.last_seq + 1..).next() {
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
                    "the log ends at seq {} but {which} covers seq {seq}: records {}..={seq} were cut",
                    summary.last_seq,
                    summary.last_seq + 1
                ),
            },
        );
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
        let mut r = frame::Reader::open(path, MAGIC, RECORD_BYTES_MAX, i + 1 == count).map_err(|e| Problem {
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
            let stored = Stored { seq, prev_hash: prev, hash: chain::hash(&payload), body_json: body.to_vec() };
            if !f(&stored) {
                return Ok(());
            }
        }
    }
    Ok(())
}
