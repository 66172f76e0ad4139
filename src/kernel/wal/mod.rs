//! The write-ahead log: segments of framed entries, a hash chain, group commit.
//!
//! # Invariants
//! - Indexes have no gaps; each entry's `prev_hash` is the hash of the entry before it. Checked
//!   on open, on every append and on every replicated entry. The log starts at index 1, or, once
//!   compacted (issue 20), just after its [`Base`]: the last entry a snapshot covers, whose index,
//!   epoch and hash the snapshot's manifest keeps, so the chain is checked across the cut.
//! - Only whole segments are removed, only segments whose every entry is at or below the newest
//!   durable snapshot, oldest first, never the active segment: the files left are always one
//!   contiguous run of the log.
//! - Epochs never decrease along the log.
//! - Nothing is visible to readers (or shipped to followers, or acknowledged) before it is
//!   fdatasync'd: the in-memory index holds only durable entries.
//! - Only the primary of the writable epoch appends new entries, and nothing follows a Fence of
//!   that epoch: the writer thread is the single point where this is enforced.
//!
//! One writer thread owns the active segment. Requests queue on a bounded channel; the thread
//! drains up to `BATCH_MAX` of them, writes them with one `write` and one `fdatasync`, then
//! answers all of them: concurrent writers share one fsync.
//!
//! On open, a torn tail of the last segment is truncated (a copy kept in `quarantine/`) and
//! logged; corruption anywhere else refuses to start, naming the file and byte offset.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, oneshot, watch};

use super::entry::{Entry, Hash, Kind, ZERO_HASH};
use crate::frame::{self, End, FrameError};
use crate::proto::kernel as pb;

mod compaction;
mod writer;
use writer::{Writer, create_segment};

/// Magic of WAL segment files.
pub(crate) const MAGIC: &[u8; 8] = b"AEROWAL1";
/// A segment is closed and a new one started beyond this many bytes, unless the node's
/// configuration says otherwise (`[lifecycle] wal_segment_bytes`).
pub(crate) const SEGMENT_BYTES_MAX: u64 = 64 << 20;
/// Upper bound of one framed entry (key and value limits are far below it).
pub(crate) const ENTRY_BYTES_MAX: u32 = 1 << 20;
/// At most this many requests share one fsync.
pub(crate) const BATCH_MAX: usize = 4096;
/// Bound of the request queue.
pub(crate) const QUEUE_MAX: usize = 8192;

/// Why the WAL refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A framing error while opening.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Corruption of content (good frames that do not form a valid log).
    #[error("{path}: corrupt WAL at byte offset {offset}: {what}")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Byte offset of the frame.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The node is not the writable primary of this epoch (or the epoch is fenced).
    #[error("the WAL does not accept writes for epoch {epoch} (writable epoch: {writable:?})")]
    NotWritable {
        /// The epoch asked for.
        epoch: u64,
        /// The writable epoch, if any.
        writable: Option<u64>,
    },
    /// A replicated entry does not continue this log.
    #[error("entry {index} does not continue the log: {what}")]
    Discontinuous {
        /// The entry's index.
        index: u64,
        /// What does not match.
        what: String,
    },
    /// A control request out of place (a Fence not at the expected index, for instance).
    #[error("WAL request refused: {0}")]
    Refused(String),
    /// The writer thread is gone (the process is shutting down or failed).
    #[error("the WAL writer has stopped")]
    Closed,
}

/// Where an entry is and what it is, kept in memory for every durable entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryMeta {
    /// The entry's epoch.
    pub(crate) epoch: u64,
    /// The entry's kind.
    pub(crate) kind: Kind,
    /// Segment number: its position in the list of every segment this process has known, removed
    /// ones included (a compaction does not renumber the segments that stay).
    pub(crate) segment: usize,
    /// Byte offset of the entry bytes (after the frame header).
    pub(crate) offset: u64,
    /// Length of the entry bytes.
    pub(crate) len: u32,
    /// The entry's hash.
    pub(crate) hash: Hash,
}

#[derive(Debug)]
struct Segment {
    first_index: u64,
    path: PathBuf,
    file: Arc<File>,
    bytes: u64,
}

/// The entry just before the first entry the WAL files hold: index 0 (the empty prefix) for a log
/// that was never compacted, else the last entry of the snapshot the log continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    /// Its index.
    pub index: u64,
    /// Its epoch (0 for the empty prefix).
    pub epoch: u64,
    /// Its hash (the next entry's `prev_hash`).
    pub hash: Hash,
    /// Its kind (`None` for the empty prefix).
    pub kind: Option<Kind>,
}

impl Base {
    /// The empty prefix (before index 1).
    pub(crate) const EMPTY: Base = Base { index: 0, epoch: 0, hash: ZERO_HASH, kind: None };
}

/// An `EpochStart` of the log's history: kept for every epoch, compacted or not, because the
/// epoch of any entry is the epoch of the last EpochStart at or before it (one writer per epoch,
/// and a primary's entries follow its own EpochStart), which is what catch-up by snapshot checks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EpochMark {
    /// The EpochStart's index.
    pub index: u64,
    /// Its epoch.
    pub epoch: u64,
    /// The primary it names.
    pub primary: String,
}

#[derive(Debug)]
struct Index {
    /// `metas[0]` is the entry `base.index + 1`.
    metas: Vec<EntryMeta>,
    segments: Vec<Segment>,
    /// Segments removed by compaction or reset since open: `segments[i]` is segment number
    /// `removed_segments + i`.
    removed_segments: usize,
    /// What the first held entry follows. `None` until a snapshot anchors a log whose files start
    /// after index 1 (see [`Wal::anchor`]).
    base: Option<Base>,
    /// The index of the first entry the files hold (`base.index + 1`).
    first: u64,
    /// Every EpochStart known, in index order.
    marks: Vec<EpochMark>,
    /// The last index the newest durable snapshot covers (0: none).
    snapshot_index: u64,
}

impl Index {
    fn last_index(&self) -> u64 {
        self.first - 1 + self.metas.len() as u64
    }

    fn meta(&self, index: u64) -> Option<&EntryMeta> {
        if index < self.first {
            return None;
        }
        self.metas.get(usize::try_from(index - self.first).ok()?)
    }

    fn segment(&self, number: usize) -> &Segment {
        &self.segments[number - self.removed_segments]
    }

    /// The number of the active (last) segment.
    fn active_number(&self) -> usize {
        self.removed_segments + self.segments.len() - 1
    }

    /// The last index segment `i` (a position in `segments`) holds.
    fn segment_last(&self, i: usize) -> u64 {
        self.segments.get(i + 1).map(|n| n.first_index).unwrap_or(self.last_index() + 1) - 1
    }
}

/// What opening the WAL found.
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenReport {
    /// Bytes of torn tail truncated (0 if none).
    pub(crate) truncated_tail_bytes: u64,
    /// Where the truncated bytes were copied.
    pub(crate) torn_copy: Option<PathBuf>,
}

/// A read-only summary of the log's tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tail {
    /// Last durable index (0 when empty).
    pub(crate) index: u64,
    /// Its epoch (0 when empty).
    pub(crate) epoch: u64,
    /// Its hash (zero when empty).
    pub(crate) hash: Hash,
    /// Its kind, if any.
    pub(crate) kind: Option<Kind>,
}

enum Req {
    Propose { epoch: u64, kind: Kind, payload: Vec<u8>, reply: oneshot::Sender<Result<u64, WalError>> },
    StartEpoch { epoch: u64, primary: String, reply: oneshot::Sender<Result<u64, WalError>> },
    SetWritable { epoch: Option<u64>, reply: oneshot::Sender<Result<u64, WalError>> },
    Fence { epoch: u64, index: u64, reply: oneshot::Sender<Result<u64, WalError>> },
    Replicate { entries: Vec<Entry>, reply: oneshot::Sender<Result<u64, WalError>> },
    TruncateAfter { index: u64, reply: oneshot::Sender<Result<Vec<Entry>, WalError>> },
    Reset { base: Base, marks: Vec<EpochMark>, reply: oneshot::Sender<Result<u64, WalError>> },
    Anchor { base: Base, marks: Vec<EpochMark>, reply: oneshot::Sender<Result<u64, WalError>> },
}

/// The write-ahead log. Cheap to share behind an `Arc`.
pub(crate) struct Wal {
    dir: PathBuf,
    index: Arc<RwLock<Index>>,
    tx: mpsc::Sender<Req>,
    durable: watch::Receiver<u64>,
    report: OpenReport,
    metrics: crate::metrics::WalMetrics,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn segment_name(first_index: u64) -> String {
    format!("seg-{first_index:020}.wal")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io { path: path.to_path_buf(), source }
}

impl Wal {
    /// Opens (or creates) the WAL in `dir` with segments of at most [`SEGMENT_BYTES_MAX`]; see
    /// [`Wal::open_with`].
    pub(crate) fn open(dir: &Path, quarantine: &Path) -> Result<Self, WalError> {
        Self::open_with(dir, quarantine, SEGMENT_BYTES_MAX)
    }

    /// Opens (or creates) the WAL in `dir`, recovering as the module docs say, and starts the
    /// writer thread; new segments are started beyond `segment_bytes`. The log is not writable
    /// until [`Wal::set_writable`] or [`Wal::start_epoch`]. A log whose files start after index 1
    /// (compacted) must be anchored to the snapshot it continues ([`Wal::anchor`]) before use:
    /// until then [`Wal::is_anchored`] is false and the entry before its first is unknown.
    pub(crate) fn open_with(dir: &Path, quarantine: &Path, segment_bytes: u64) -> Result<Self, WalError> {
        crate::fsutil::create_dir_durable(dir).map_err(io(dir))?;
        let mut names: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(n) = name.strip_prefix("seg-").and_then(|s| s.strip_suffix(".wal")) {
                let first: u64 = n.parse().map_err(|_| WalError::Corrupt {
                    path: entry.path(),
                    offset: 0,
                    what: "segment name is not seg-<first index>.wal".into(),
                })?;
                names.push((first, entry.path()));
            }
        }
        names.sort();
        let mut index = Index {
            metas: Vec::new(),
            segments: Vec::new(),
            removed_segments: 0,
            base: None,
            first: 1,
            marks: Vec::new(),
            snapshot_index: 0,
        };
        let mut report = OpenReport::default();
        let mut prev_hash = ZERO_HASH;
        let mut prev_epoch = 0u64;
        let count = names.len();
        for (i, (first, path)) in names.into_iter().enumerate() {
            let last_file = i + 1 == count;
            let mut reader = frame::Reader::open(&path, MAGIC, ENTRY_BYTES_MAX, last_file)?;
            if matches!(reader.end(), Some(End::Torn { offset: 0, .. })) {
                // A segment whose header never became durable: the crash came while creating it.
                let copy = frame::truncate_keeping_copy(&path, 0, quarantine).map_err(io(&path))?;
                std::fs::remove_file(&path).map_err(io(&path))?;
                tracing::warn!(file = %path.display(), copy = %copy.display(), "removed a WAL segment with a torn header");
                report.torn_copy = Some(copy);
                continue;
            }
            if reader.base != first {
                return Err(WalError::Corrupt {
                    path,
                    offset: 0,
                    what: format!("header says first index {} but the name says {first}", reader.base),
                });
            }
            if index.segments.is_empty() {
                // The first file may start after index 1 (the log was compacted): the entry before
                // it is the snapshot's to vouch for (`anchor`).
                index.first = first;
                if first == 1 {
                    index.base = Some(Base::EMPTY);
                }
            }
            let expected_first = index.last_index() + 1;
            if first != expected_first {
                return Err(WalError::Corrupt {
                    path,
                    offset: 0,
                    what: format!("segment starts at index {first}, expected {expected_first} (a gap)"),
                });
            }
            let segment = index.segments.len();
            while let Some((offset, payload)) = reader.next_frame()? {
                let entry = Entry::decode(&payload).map_err(|e| WalError::Corrupt {
                    path: path.clone(),
                    offset,
                    what: e.to_string(),
                })?;
                let expected = index.last_index() + 1;
                if index.base.is_none() && index.metas.is_empty() {
                    // The first entry of a compacted log: it chains to what the snapshot covers.
                    prev_hash = entry.prev_hash;
                }
                let what = if entry.index != expected {
                    Some(format!("index {} where {expected} was expected", entry.index))
                } else if entry.prev_hash != prev_hash {
                    Some(format!("entry {} does not chain to the hash of entry {}", entry.index, expected - 1))
                } else if entry.epoch < prev_epoch {
                    Some(format!("epoch {} after epoch {prev_epoch}", entry.epoch))
                } else {
                    None
                };
                if let Some(what) = what {
                    return Err(WalError::Corrupt { path: path.clone(), offset, what });
                }
                prev_hash = entry.hash();
                prev_epoch = entry.epoch;
                if entry.kind == Kind::EpochStart {
                    index.marks.push(EpochMark {
                        index: entry.index,
                        epoch: entry.epoch,
                        primary: String::from_utf8_lossy(&entry.payload).into_owned(),
                    });
                }
                index.metas.push(EntryMeta {
                    epoch: entry.epoch,
                    kind: entry.kind,
                    segment,
                    offset: offset + frame::FRAME_HEADER_LEN,
                    len: payload.len() as u32,
                    hash: prev_hash,
                });
            }
            let mut bytes = reader.good_len();
            if let Some(End::Torn { offset, bytes: torn }) = reader.end().cloned() {
                let copy = frame::truncate_keeping_copy(&path, offset, quarantine).map_err(io(&path))?;
                tracing::warn!(
                    file = %path.display(), offset, bytes = torn, copy = %copy.display(),
                    "truncated a torn WAL tail (an append that never completed)"
                );
                report.truncated_tail_bytes = torn;
                report.torn_copy = Some(copy);
                bytes = offset;
            }
            let file = OpenOptions::new().read(true).open(&path).map_err(io(&path))?;
            index.segments.push(Segment { first_index: first, path, file: Arc::new(file), bytes });
        }
        if index.segments.is_empty() {
            let seg = create_segment(dir, 1)?;
            index.segments.push(seg);
            index.base = Some(Base::EMPTY);
        }
        let active_path = index.segments.last().map(|s| s.path.clone()).unwrap_or_default();
        let active = OpenOptions::new().append(true).open(&active_path).map_err(io(&active_path))?;
        let last = index.last_index();
        let (durable_tx, durable) = watch::channel(last);
        let index = Arc::new(RwLock::new(index));
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        let metrics = crate::metrics::WalMetrics::default();
        let writer = Writer {
            dir: dir.to_path_buf(),
            quarantine: quarantine.to_path_buf(),
            index: index.clone(),
            active,
            next_index: last + 1,
            last_hash: prev_hash,
            last_epoch: prev_epoch,
            writable: None,
            durable: durable_tx,
            metrics: metrics.clone(),
            segment_bytes,
        };
        // The writer's log lines belong to the span that opened the WAL (a node's names it).
        let span = tracing::Span::current();
        std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || span.in_scope(|| writer.run(rx)))
            .map_err(io(dir))?;
        Ok(Self { dir: dir.to_path_buf(), index, tx, durable, report, metrics })
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T, WalError>>) -> Req) -> Result<T, WalError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| WalError::Closed)?;
        rx.await.map_err(|_| WalError::Closed)?
    }

    /// Appends a Put or Delete as the primary of `epoch`; returns its index once durable.
    pub(crate) async fn propose(&self, epoch: u64, kind: Kind, payload: Vec<u8>) -> Result<u64, WalError> {
        self.call(|reply| Req::Propose { epoch, kind, payload, reply }).await
    }

    /// Appends `EpochStart(epoch)` and makes `epoch` writable; returns its index once durable.
    pub(crate) async fn start_epoch(&self, epoch: u64, primary: &str) -> Result<u64, WalError> {
        self.call(|reply| Req::StartEpoch { epoch, primary: primary.to_string(), reply }).await
    }

    /// Makes `epoch` writable (or nothing, with `None`) after every queued write; returns the
    /// last durable index at that point. Used at recovery and to seal the log before a Fence.
    pub(crate) async fn set_writable(&self, epoch: Option<u64>) -> Result<u64, WalError> {
        self.call(|reply| Req::SetWritable { epoch, reply }).await
    }

    /// Appends `Fence` for `epoch` at exactly `index` (the log must be sealed and end at
    /// `index - 1`); returns `index` once durable.
    pub(crate) async fn fence(&self, epoch: u64, index: u64) -> Result<u64, WalError> {
        self.call(|reply| Req::Fence { epoch, index, reply }).await
    }

    /// Appends entries received from the primary after checking they continue this log;
    /// returns the new last index once durable.
    pub(crate) async fn replicate(&self, entries: Vec<Entry>) -> Result<u64, WalError> {
        self.call(|reply| Req::Replicate { entries, reply }).await
    }

    /// Removes every entry after `index`, copying them into `quarantine/` first; returns them.
    pub(crate) async fn truncate_after(&self, index: u64) -> Result<Vec<Entry>, WalError> {
        self.call(|reply| Req::TruncateAfter { index, reply }).await
    }

    /// The durable tail (the base, when the files hold no entry after it).
    pub(crate) fn tail(&self) -> Tail {
        let idx = read_lock(&self.index);
        match (idx.metas.last(), idx.base) {
            (Some(m), _) => Tail { index: idx.last_index(), epoch: m.epoch, hash: m.hash, kind: Some(m.kind) },
            (None, Some(b)) => Tail { index: b.index, epoch: b.epoch, hash: b.hash, kind: b.kind },
            (None, None) => Tail { index: idx.first - 1, epoch: 0, hash: ZERO_HASH, kind: None },
        }
    }

    /// The epoch and hash of the entry at `index` (`index` 0 is the empty prefix; the base once
    /// anchored); `None` for an index compacted away or not yet written.
    pub(crate) fn hash_at(&self, index: u64) -> Option<(u64, Hash)> {
        if index == 0 {
            return Some((0, ZERO_HASH));
        }
        let idx = read_lock(&self.index);
        match idx.meta(index) {
            Some(m) => Some((m.epoch, m.hash)),
            None => idx.base.filter(|b| b.index == index).map(|b| (b.epoch, b.hash)),
        }
    }

    /// The epoch of the entry at `index` in this log's history, compacted entries included (the
    /// epoch of the last EpochStart at or before it); `None` past the tail.
    pub(crate) fn epoch_at(&self, index: u64) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        let idx = read_lock(&self.index);
        if let Some(m) = idx.meta(index) {
            return Some(m.epoch);
        }
        if index > idx.last_index() {
            return None;
        }
        if let Some(b) = idx.base.filter(|b| b.index == index) {
            return Some(b.epoch);
        }
        Some(idx.marks.iter().rev().find(|m| m.index <= index).map(|m| m.epoch).unwrap_or(0))
    }

    /// The kind of the entry at `index`, while it is held (or is the anchored base).
    pub(crate) fn kind_at(&self, index: u64) -> Option<Kind> {
        let idx = read_lock(&self.index);
        match idx.meta(index) {
            Some(m) => Some(m.kind),
            None => idx.base.filter(|b| b.index == index).and_then(|b| b.kind),
        }
    }

    /// The index of the last EpochStart (compacted or not), 0 when none.
    pub(crate) fn last_epoch_start(&self) -> u64 {
        read_lock(&self.index).marks.last().map(|m| m.index).unwrap_or(0)
    }

    /// The EpochStarts at or before `upto` (for a snapshot's manifest).
    pub(crate) fn marks_upto(&self, upto: u64) -> Vec<EpochMark> {
        read_lock(&self.index).marks.iter().filter(|m| m.index <= upto).cloned().collect()
    }

    /// The first index the files hold (1 unless compacted).
    pub(crate) fn first_index(&self) -> u64 {
        read_lock(&self.index).first
    }

    /// The base (what the first held entry follows), once known.
    #[cfg(test)]
    pub(crate) fn base(&self) -> Option<Base> {
        read_lock(&self.index).base
    }

    /// Whether the entry before the first held one is known (always, unless the files start
    /// after index 1 and no snapshot anchored them yet).
    pub(crate) fn is_anchored(&self) -> bool {
        read_lock(&self.index).base.is_some()
    }

    /// Reads the durable entry at `index`.
    pub(crate) fn entry(&self, index: u64) -> Result<Option<Entry>, WalError> {
        let (file, path, meta) = {
            let idx = read_lock(&self.index);
            let Some(meta) = idx.meta(index).copied() else { return Ok(None) };
            let seg = idx.segment(meta.segment);
            (seg.file.clone(), seg.path.clone(), meta)
        };
        let mut buf = vec![0u8; meta.len as usize];
        file.read_exact_at(&mut buf, meta.offset).map_err(io(&path))?;
        let entry = Entry::decode(&buf).map_err(|e| WalError::Corrupt {
            path: path.clone(),
            offset: meta.offset,
            what: e.to_string(),
        })?;
        if entry.hash() != meta.hash {
            return Err(WalError::Corrupt {
                path,
                offset: meta.offset,
                what: format!("entry {index} changed on disk after it was written"),
            });
        }
        Ok(Some(entry))
    }

    /// Durable entries from `from`, at most `max_count` and about `max_bytes`.
    pub(crate) fn entries(&self, from: u64, max_count: usize, max_bytes: usize) -> Result<Vec<Entry>, WalError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut i = from.max(1);
        while out.len() < max_count && bytes < max_bytes {
            match self.entry(i)? {
                Some(e) => {
                    bytes += e.payload.len() + 64;
                    out.push(e);
                    i += 1;
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// The last durable index, as a watch (it changes after every fsync and every truncation).
    pub(crate) fn durable_watch(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }

    /// Its writer's metrics (fsync latency, group-commit size, bytes), for registration.
    pub(crate) fn metrics(&self) -> &crate::metrics::WalMetrics {
        &self.metrics
    }

    /// The WAL metadata view.
    pub(crate) fn view(&self) -> pb::WalView {
        let idx = read_lock(&self.index);
        let last = idx.last_index();
        let first = idx.first;
        let segments: Vec<pb::WalSegment> = idx
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let next_first = idx.segments.get(i + 1).map(|n| n.first_index).unwrap_or(last + 1);
                pb::WalSegment {
                    name: s.path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
                    first_index: s.first_index,
                    last_index: next_first.saturating_sub(1),
                    bytes: s.bytes,
                }
            })
            .collect();
        pb::WalView {
            total_bytes: segments.iter().map(|s| s.bytes).sum(),
            segments,
            first_index: if last >= first { first } else { 0 },
            last_index: last,
            durable_index: last,
            checksum_status: if self.report.truncated_tail_bytes > 0 {
                pb::ChecksumStatus::VerifiedTailTruncated as i32
            } else {
                pb::ChecksumStatus::Verified as i32
            },
            truncated_tail_bytes: self.report.truncated_tail_bytes,
        }
    }

    /// The segment files, in order, with their sizes.
    #[cfg(test)]
    pub(crate) fn segment_files(&self) -> Vec<(PathBuf, u64)> {
        read_lock(&self.index).segments.iter().map(|s| (s.path.clone(), s.bytes)).collect()
    }

    /// The segment files with their sizes and the base the first one continues, read together.
    pub(crate) fn segment_files_and_base(&self) -> (Vec<(PathBuf, u64)>, Base) {
        let idx = read_lock(&self.index);
        (idx.segments.iter().map(|s| (s.path.clone(), s.bytes)).collect(), idx.base.unwrap_or(Base::EMPTY))
    }
}

/// Reads every entry of a WAL directory without changing anything (a torn tail is ignored).
/// For tools and tests that inspect a log another process may own.
pub fn read_dir(dir: &Path) -> Result<Vec<Entry>, WalError> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("seg-")))
        .collect();
    names.sort();
    let mut out = Vec::new();
    let count = names.len();
    for (i, path) in names.iter().enumerate() {
        let mut r = frame::Reader::open(path, MAGIC, ENTRY_BYTES_MAX, i + 1 == count)?;
        while let Some((offset, payload)) = r.next_frame()? {
            out.push(Entry::decode(&payload).map_err(|e| WalError::Corrupt {
                path: path.clone(),
                offset,
                what: e.to_string(),
            })?);
        }
    }
    Ok(out)
}

fn read_lock(index: &RwLock<Index>) -> std::sync::RwLockReadGuard<'_, Index> {
    // A poisoned lock means the writer thread panicked mid-update; the process is failing anyway
    // and the data under the lock is only a cache of what is on disk.
    index.read().unwrap_or_else(|p| p.into_inner())
}

fn write_lock(index: &RwLock<Index>) -> std::sync::RwLockWriteGuard<'_, Index> {
    index.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::entry::encode_put;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
    }

    #[test]
    fn wal_appends_chain_and_reopen_recovers_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal_dir = dir.path().join("wal");
        let q = dir.path().join("q");
        rt().block_on(async {
            let wal = Wal::open(&wal_dir, &q).expect("open");
            assert!(matches!(
                wal.propose(1, Kind::Put, encode_put(b"k", b"v")).await,
                Err(WalError::NotWritable { .. })
            ));
            assert_eq!(wal.start_epoch(1, "n1").await.expect("start"), 1);
            let mut handles = Vec::new();
            let wal = Arc::new(wal);
            for i in 0..100u32 {
                let wal = wal.clone();
                handles.push(tokio::spawn(async move {
                    wal.propose(1, Kind::Put, encode_put(format!("k{i}").as_bytes(), b"v")).await
                }));
            }
            let mut indexes = Vec::new();
            for h in handles {
                indexes.push(h.await.expect("join").expect("propose"));
            }
            indexes.sort();
            assert_eq!(indexes, (2..=101).collect::<Vec<_>>());
            assert_eq!(wal.set_writable(None).await.expect("seal"), 101);
            assert!(matches!(
                wal.propose(1, Kind::Put, encode_put(b"x", b"y")).await,
                Err(WalError::NotWritable { .. })
            ));
            assert_eq!(wal.fence(1, 102).await.expect("fence"), 102);
        });
        rt().block_on(async {
            let wal = Wal::open(&wal_dir, &q).expect("reopen");
            let tail = wal.tail();
            assert_eq!((tail.index, tail.epoch, tail.kind), (102, 1, Some(Kind::Fence)));
            let e = wal.entry(50).expect("read").expect("present");
            assert_eq!(e.index, 50);
            assert_eq!(e.prev_hash, wal.hash_at(49).expect("hash").1);
            assert_eq!(wal.last_epoch_start(), 1);
        });
    }

    #[test]
    fn replicate_refuses_entries_that_do_not_continue_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        rt().block_on(async {
            let wal = Wal::open(&dir.path().join("wal"), &dir.path().join("q")).expect("open");
            let e1 =
                Entry { index: 1, epoch: 1, prev_hash: ZERO_HASH, kind: Kind::EpochStart, payload: b"n1".to_vec() };
            let e2 =
                Entry { index: 2, epoch: 1, prev_hash: e1.hash(), kind: Kind::Put, payload: encode_put(b"a", b"b") };
            let bad = Entry { index: 3, epoch: 1, prev_hash: [7; 32], kind: Kind::Delete, payload: b"a".to_vec() };
            assert_eq!(wal.replicate(vec![e1.clone(), e2.clone()]).await.expect("replicate"), 2);
            assert!(matches!(wal.replicate(vec![bad]).await, Err(WalError::Discontinuous { index: 3, .. })));
            let skip = Entry { index: 4, epoch: 1, prev_hash: e2.hash(), kind: Kind::Delete, payload: b"a".to_vec() };
            assert!(matches!(wal.replicate(vec![skip]).await, Err(WalError::Discontinuous { index: 4, .. })));
            let older = Entry { index: 3, epoch: 0, prev_hash: e2.hash(), kind: Kind::Delete, payload: b"a".to_vec() };
            assert!(matches!(wal.replicate(vec![older]).await, Err(WalError::Discontinuous { index: 3, .. })));
            assert_eq!(wal.tail().index, 2);
            let removed = wal.truncate_after(1).await.expect("truncate");
            assert_eq!(removed, vec![e2]);
            assert_eq!(wal.tail().index, 1);
            assert_eq!(std::fs::read_dir(dir.path().join("q")).expect("q").count(), 1);
        });
    }

    #[test]
    fn flipped_byte_mid_wal_refuses_to_open_naming_file_and_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal_dir = dir.path().join("wal");
        rt().block_on(async {
            let wal = Wal::open(&wal_dir, &dir.path().join("q")).expect("open");
            wal.start_epoch(1, "n1").await.expect("start");
            for i in 0..10u8 {
                wal.propose(1, Kind::Put, encode_put(&[i], b"value")).await.expect("put");
            }
        });
        let seg = wal_dir.join(segment_name(1));
        let mut bytes = std::fs::read(&seg).expect("read");
        let at = bytes.len() / 2;
        bytes[at] ^= 0x10;
        std::fs::write(&seg, &bytes).expect("write");
        rt().block_on(async {
            let err = Wal::open(&wal_dir, &dir.path().join("q")).expect_err("must refuse");
            let text = err.to_string();
            assert!(text.contains("seg-00000000000000000001.wal"), "{text}");
            assert!(text.contains("byte offset"), "{text}");
        });
    }
}
