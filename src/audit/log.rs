//! The durable audit log: gap-free sequence, hash chain, Merkle tree, group commit, signed
//! checkpoints, fault handling.
//!
//! # Invariants
//! - `seq` starts at 1 and grows by one per record; a record's `prev_hash` is the previous
//!   record's hash. A failed batch assigns no sequence (it is cut back off the file), so a write
//!   failure never leaves a gap or a half record in the chain.
//! - An append is answered only after its record is fdatasync'd. One writer thread drains every
//!   queued record, writes them with one `write`, one `fdatasync`, then answers all of them.
//! - While the log cannot be written, callers learn it at once: mutations are refused before any
//!   kernel call; reads go on and are counted. The first batch that succeeds afterwards starts
//!   with an `audit_gap` record stating the window and the counts, so the gap is on the record.
//! - Each durable batch's leaves are appended to the tree (audit::tree) before any caller hears
//!   of it. A batch holding a record that an Actor answer reports (`confirmation_requested`,
//!   `declined`, `executed`, `replayed`, `rejected`, `failed`) is followed, before the replies, by
//!   a signed checkpoint covering it, stored (tree fdatasync'd first) right after the replies; so
//!   is every `checkpoint_every` records and every `checkpoint_interval_ms` while unsigned
//!   records exist.
//! - Opening recovers by the decision table of audit::recovery (from the newest checkpoint, not
//!   the whole history) and refuses a log cut or rewritten below a signed checkpoint, saying how
//!   to verify and move it aside: nothing is ever written after a break the control plane cannot
//!   explain. Nothing is synthesized at open.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::chain;
use super::checkpoint::{self, Checkpoint, CheckpointSigner};
use super::record::{Body, Draft, Stage};
use super::recovery;
use super::tree::TreeWriter;
use super::verify::{self, MAGIC};
use crate::clock::SharedClock;
use crate::frame;

/// A segment is closed and a new one begun past this many bytes.
pub const SEGMENT_BYTES_MAX: u64 = 64 << 20;
/// Records sharing one fsync at most.
pub const BATCH_MAX: usize = 8192;
/// Bound of the append queue.
pub const QUEUE_MAX: usize = 16384;
/// How often the writer is probed (see [`spawn_probe`]).
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Benchmarks only (cargo feature `bench`, never in the product): a log opened while it is set
/// skips the tree and every checkpoint, so `aerodb-bench tlog` measures what the tree costs an
/// append in one run.
#[cfg(feature = "bench")]
pub static DANGER_BENCH_WITHOUT_TREE: AtomicBool = AtomicBool::new(false);

/// Options of an audit log.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The directory (one per control-plane instance).
    pub dir: PathBuf,
    /// This instance's id, written in every record.
    pub instance_id: String,
    /// A signed checkpoint every this many records.
    pub checkpoint_every: u64,
    /// A signed checkpoint at least this often (milliseconds) while unsigned records exist.
    pub checkpoint_interval_ms: u64,
    /// A new segment is begun past this many bytes ([`SEGMENT_BYTES_MAX`] in production; tests
    /// use small segments to have many).
    pub segment_bytes_max: u64,
    /// The clock that stamps records.
    pub clock: SharedClock,
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
    /// The instance key.
    #[error(transparent)]
    Key(#[from] checkpoint::KeyError),
    /// The directory's lock is held by another process (operator: one control plane per
    /// directory; wait for an archive run to finish).
    #[error("audit directory {dir} cannot be locked: {why}")]
    Locked {
        /// The directory.
        dir: String,
        /// Why.
        why: String,
    },
    /// Corruption or a cut tail.
    #[error(
        "audit log in {dir} cannot be trusted: {problem}. The control plane never writes after a break it cannot \
         explain. Inspect it with `aerodbctl audit verify {dir}`, then move the directory aside (keep it as \
         evidence) and start again with an empty one."
    )]
    Broken {
        /// The directory.
        dir: String,
        /// The first problem.
        problem: String,
    },
}

/// Why an append failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The record could not be made durable.
    #[error("the audit log cannot be written: {0}")]
    Unavailable(String),
    /// The log is closed.
    #[error("the audit log is closed")]
    Closed,
    /// The record would not fit the format (a bug: every caller bounds what it records); it was
    /// not written, so the log stays readable, and the request that needed it is refused.
    #[error("the audit record cannot be written: {0}")]
    Unrecordable(String),
}

/// Counters of the writer (for benchmarks and diagnostics).
#[derive(Debug, Default)]
pub struct Stats {
    /// Records made durable.
    pub records: std::sync::atomic::AtomicU64,
    /// `fdatasync` calls that made records durable (one per batch).
    pub fsyncs: std::sync::atomic::AtomicU64,
}

/// Where a durable record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// Its sequence.
    pub seq: u64,
    /// Its hash.
    pub hash: [u8; 32],
    /// Its RFC 6962 leaf hash (what a `confirmed` record's Execute carries to the kernel).
    pub leaf: [u8; 32],
}

enum Req {
    Append { draft: Box<Draft>, required: bool, reply: oneshot::Sender<Result<Receipt, AppendError>> },
    Probe,
    Checkpoint { reply: oneshot::Sender<Option<Checkpoint>> },
}

/// The audit log handle. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    stats: Arc<Stats>,
    tx: mpsc::Sender<Req>,
    healthy: Arc<AtomicBool>,
    health: watch::Receiver<bool>,
    metrics: crate::metrics::AuditMetrics,
    latest_checkpoint: Arc<Mutex<Option<Checkpoint>>>,
    public_key: ed25519_dalek::VerifyingKey,
    records_read_at_open: u64,
    dir: PathBuf,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (or creates) the log, recovering it from its newest signed checkpoint
    /// (audit::recovery), truncating a torn tail (a copy kept in `quarantine/`), and starts the
    /// writer thread.
    pub fn open(opts: AuditOptions) -> Result<Self, OpenError> {
        let (log, writer, rx) = Self::open_unstarted(opts)?;
        writer.start(rx).map_err(|source| OpenError::Io { path: log.dir.clone(), source })?;
        // Probe once a second: while unhealthy, so the gap record follows as soon as the log is
        // writable again even if nothing else is being recorded; and so a timed checkpoint
        // signs records that no later batch would.
        spawn_probe(log.tx.downgrade(), PROBE_EVERY);
        Ok(log)
    }

    /// Everything [`AuditLog::open`] does but start the writer and its probe: the log's handle,
    /// its writer and the writer's queue. Requests sent before [`Writer::start`] wait in the
    /// queue, which is how the unit tests below hold the writer (a full queue, a batch bound).
    fn open_unstarted(opts: AuditOptions) -> Result<(Self, Writer, mpsc::Receiver<Req>), OpenError> {
        let dir = opts.dir.clone();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { path: path.clone(), source }
        };
        crate::fsutil::create_dir_durable(&dir).map_err(io(&dir))?;
        let lock = lock_dir(&dir)?;
        let signer = CheckpointSigner::load_or_create(&dir, &opts.instance_id)?;
        let checkpoints_file = checkpoint::open_for_append(&dir).map_err(io(&dir))?;
        let recovered = recovery::recover(&dir, &signer.public_key())
            .map_err(|r| OpenError::Broken { dir: dir.display().to_string(), problem: r.problem })?;
        tracing::info!(
            records_read = recovered.records_read,
            head_seq = recovered.head_seq,
            checkpoint_size = recovered.latest.as_ref().map(|c| c.size).unwrap_or(0),
            rebuilt = recovered.rebuilt,
            "audit log recovered"
        );
        if let Some((path, offset, bytes)) = &recovered.torn {
            let q = dir.join("quarantine");
            let copy = frame::truncate_keeping_copy(path, *offset, &q).map_err(io(path))?;
            tracing::warn!(file = %path.display(), offset, bytes, copy = %copy.display(), "truncated a torn audit tail");
            if *offset == 0 {
                std::fs::remove_file(path).map_err(io(path))?;
            }
        }
        let mut segs = verify::segments(&dir).map_err(io(&dir))?;
        if segs.is_empty() {
            let first = recovered.head_seq + 1;
            create_segment(&dir, first).map_err(io(&dir))?;
            segs = verify::segments(&dir).map_err(io(&dir))?;
        }
        let (mut active_path, mut active_first) = segs.last().cloned().map(|(f, p)| (p, f)).unwrap_or_default();
        // A segment of the previous format is never appended to (its records hash differently):
        // an empty one is rewritten with the current header, otherwise a new segment starts.
        if segment_is_v1(&active_path).map_err(io(&active_path))? {
            if std::fs::metadata(&active_path).map_err(io(&active_path))?.len() <= frame::HEADER_LEN {
                crate::fsutil::write_atomic(
                    &active_path,
                    &frame::header(MAGIC, active_first),
                    crate::fsutil::FILE_MODE,
                )
                .map_err(io(&active_path))?;
            } else {
                active_first = recovered.head_seq + 1;
                active_path = create_segment(&dir, active_first).map_err(io(&dir))?.0;
            }
            tracing::info!(segment = %active_path.display(), "audit segments are written in the current format from here on");
        }
        let active = OpenOptions::new().append(true).open(&active_path).map_err(io(&active_path))?;
        let active_bytes = active.metadata().map_err(io(&active_path))?.len();
        let latest = recovered.latest.clone();
        let records_read_at_open = recovered.records_read;
        let public_key = signer.public_key();
        let healthy = Arc::new(AtomicBool::new(true));
        let latest_checkpoint = Arc::new(Mutex::new(latest.clone()));
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        let stats = Arc::new(Stats::default());
        let (health_tx, health) = watch::channel(true);
        let metrics = crate::metrics::AuditMetrics::default();
        let writer = Writer {
            health: health_tx,
            metrics: metrics.clone(),
            stats: stats.clone(),
            dir: dir.clone(),
            active,
            active_bytes,
            segment_bytes_max: opts.segment_bytes_max.max(1),
            head_seq: recovered.head_seq,
            head_hash: recovered.head_hash,
            head_position: recovered.head_position,
            active_first,
            tree: recovered.tree,
            gap: None,
            checkpoints_file,
            checkpoint_every: opts.checkpoint_every.max(1),
            checkpoint_interval_ms: opts.checkpoint_interval_ms.max(1),
            last_checkpoint_size: latest.map(|c| c.size).unwrap_or(0),
            last_checkpoint_ms: opts.clock.now_unix_ms(),
            instance_id: opts.instance_id.clone(),
            clock: opts.clock.clone(),
            healthy: healthy.clone(),
            latest_checkpoint: latest_checkpoint.clone(),
            signer,
            #[cfg(feature = "bench")]
            bench_without_tree: DANGER_BENCH_WITHOUT_TREE.load(Ordering::Relaxed),
            broken: None,
            _lock: lock,
        };
        let log =
            Self { stats, tx, healthy, health, metrics, latest_checkpoint, public_key, records_read_at_open, dir };
        Ok((log, writer, rx))
    }

    /// Appends a record that must be durable before the caller proceeds (mutations, outcomes).
    pub async fn append(&self, draft: Draft) -> Result<Receipt, AppendError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Req::Append { draft: Box::new(draft), required: true, reply })
            .await
            .map_err(|_| AppendError::Closed)?;
        rx.await.map_err(|_| AppendError::Closed)?
    }

    /// Appends a record of a read or a denial: waits for it to be durable, but a failure only
    /// counts it into the next `audit_gap` record and lets the caller go on.
    pub async fn append_best_effort(&self, draft: Draft) -> Option<Receipt> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Req::Append { draft: Box::new(draft), required: false, reply }).await.is_err() {
            return None;
        }
        rx.await.ok().and_then(|r| r.ok())
    }

    /// Writes a signed checkpoint of the current tree now (clean shutdown does this); the latest
    /// one when nothing was recorded since.
    pub async fn checkpoint(&self) -> Option<Checkpoint> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Req::Checkpoint { reply }).await.ok()?;
        rx.await.ok().flatten()
    }

    /// The last records could be written.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// [`Self::healthy`] as a watch: it changes to `false` when a batch cannot be written, and
    /// back to `true` once a batch (starting with its `audit_gap` record) is durable again.
    pub fn health_watch(&self) -> watch::Receiver<bool> {
        self.health.clone()
    }

    /// The writer's Prometheus metrics, for registration.
    pub fn metrics(&self) -> &crate::metrics::AuditMetrics {
        &self.metrics
    }

    /// The latest signed checkpoint. Once an append of a record that an Actor answer reports has
    /// returned, it covers that record (unless writing the checkpoint failed, which is logged).
    pub fn latest_checkpoint(&self) -> Option<Checkpoint> {
        self.latest_checkpoint.lock().ok().and_then(|g| g.clone())
    }

    /// Records opening read (from the newest checkpoint on; every record only when it rebuilt the
    /// tree).
    pub fn records_read_at_open(&self) -> u64 {
        self.records_read_at_open
    }

    /// The instance's public key (the checkpoints' signer).
    pub fn public_key(&self) -> &ed25519_dalek::VerifyingKey {
        &self.public_key
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The writer's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

/// Takes the audit directory's lock, asking again for up to 2 s: what the wait absorbs is a lock
/// about to be released (a writer thread of a log just dropped in this process, a process that
/// just exited); a running control plane or an archive run on the directory is still refused.
fn lock_dir(dir: &Path) -> Result<File, OpenError> {
    /// Tries of a busy lock, 10 ms apart.
    const LOCK_WAIT_TRIES: u32 = 200;
    for _ in 0..LOCK_WAIT_TRIES {
        match super::archive::try_lock(dir) {
            Ok(f) => return Ok(f),
            Err(super::archive::ArchiveError::Held(_)) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(OpenError::Locked { dir: dir.display().to_string(), why: e.to_string() }),
        }
    }
    Err(OpenError::Locked {
        dir: dir.display().to_string(),
        why: "another control plane (or `aerodbctl audit archive`) holds it".into(),
    })
}

/// Whether the segment at `path` has the previous format's magic (`verify::MAGIC_V1`).
fn segment_is_v1(path: &Path) -> std::io::Result<bool> {
    let mut magic = [0u8; 8];
    let n = std::io::Read::read(&mut File::open(path)?, &mut magic)?;
    Ok(n == magic.len() && &magic == verify::MAGIC_V1)
}

fn create_segment(dir: &Path, first_seq: u64) -> std::io::Result<(PathBuf, File)> {
    let path = dir.join(verify::segment_name(first_seq));
    let mut f = crate::fsutil::open_private(OpenOptions::new().create_new(true).append(true), &path)?;
    f.write_all(&frame::header(MAGIC, first_seq))?;
    f.sync_all()?;
    crate::fsutil::fsync_dir(dir)?;
    Ok((path, f))
}

struct Gap {
    since_ms: u64,
    counts: BTreeMap<String, u64>,
    last_error: String,
}

struct Writer {
    health: watch::Sender<bool>,
    metrics: crate::metrics::AuditMetrics,
    stats: Arc<Stats>,
    dir: PathBuf,
    active: File,
    active_bytes: u64,
    segment_bytes_max: u64,
    head_seq: u64,
    head_hash: [u8; 32],
    /// Where the last durable record starts: (its segment's first seq, byte offset).
    head_position: checkpoint::Position,
    /// The first seq of the active segment.
    active_first: u64,
    tree: TreeWriter,
    gap: Option<Gap>,
    signer: CheckpointSigner,
    checkpoints_file: File,
    checkpoint_every: u64,
    checkpoint_interval_ms: u64,
    last_checkpoint_size: u64,
    last_checkpoint_ms: u64,
    instance_id: String,
    clock: SharedClock,
    healthy: Arc<AtomicBool>,
    latest_checkpoint: Arc<Mutex<Option<Checkpoint>>>,
    /// [`DANGER_BENCH_WITHOUT_TREE`] as it was at open.
    #[cfg(feature = "bench")]
    bench_without_tree: bool,
    /// Set when a failed batch could not be cut back off the file: the file may end in a partial
    /// frame, and anything appended after it would be unreadable (or, behind a damaged length,
    /// taken for a torn tail). Every later append is refused until a restart recovers the file.
    broken: Option<String>,
    /// The directory's lock (audit::archive::LOCK_FILE), held for as long as the writer runs:
    /// `aerodbctl audit archive` refuses a directory a running control plane holds.
    _lock: File,
}

type Reply = oneshot::Sender<Result<Receipt, AppendError>>;

/// Sends the writer a probe every `every`, until the writer is gone. It holds a weak sender, so
/// it never keeps the writer alive after the last handle; a full queue only skips that probe
/// (the writer is busy, and will look again at the next one).
fn spawn_probe(probe_tx: mpsc::WeakSender<Req>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(tx) = probe_tx.upgrade() else { return };
            if tx.try_send(Req::Probe).is_err() && tx.is_closed() {
                return;
            }
        }
    })
}

impl Writer {
    /// Runs the writer on its own thread, draining `rx` until every handle is gone.
    fn start(self, rx: mpsc::Receiver<Req>) -> std::io::Result<()> {
        // The writer's log lines belong to the span that opened the log (the control plane's).
        let span = tracing::Span::current();
        std::thread::Builder::new().name("audit-writer".into()).spawn(move || span.in_scope(|| self.run(rx)))?;
        Ok(())
    }

    fn run(mut self, mut rx: mpsc::Receiver<Req>) {
        while let Some(first) = rx.blocking_recv() {
            let mut appends: Vec<(Draft, bool, Reply)> = Vec::new();
            let mut checkpoint_replies = Vec::new();
            let mut probed = false;
            let mut push = |req: Req, appends: &mut Vec<(Draft, bool, Reply)>| match req {
                Req::Append { draft, required, reply } => appends.push((*draft, required, reply)),
                Req::Probe => probed = true,
                Req::Checkpoint { reply } => checkpoint_replies.push(reply),
            };
            push(first, &mut appends);
            while appends.len() < BATCH_MAX {
                match rx.try_recv() {
                    Ok(r) => push(r, &mut appends),
                    Err(_) => break,
                }
            }
            self.write_batch(appends);
            if probed && self.checkpoint_due_by_time() {
                self.write_checkpoint();
            }
            for reply in checkpoint_replies {
                let fresh = if self.head_seq > self.last_checkpoint_size { self.write_checkpoint() } else { None };
                let _ = reply.send(fresh.or_else(|| self.latest_checkpoint.lock().ok().and_then(|g| g.clone())));
            }
        }
        // Every handle is gone: a clean shutdown. Seal what was written with a checkpoint.
        if self.head_seq > self.last_checkpoint_size {
            self.write_checkpoint();
        }
    }

    fn checkpoint_due_by_time(&self) -> bool {
        self.head_seq > self.last_checkpoint_size
            && self.clock.now_unix_ms().saturating_sub(self.last_checkpoint_ms) >= self.checkpoint_interval_ms
    }

    /// The record's body, or why it cannot be a record: a body the reader would refuse (over
    /// [`verify::RECORD_BYTES_MAX`] with its prefix) is never written, so no input can make the
    /// log unreadable.
    fn body(&self, draft: Draft) -> Result<Vec<u8>, AppendError> {
        let body = Body {
            time_unix_ms: self.clock.now_unix_ms(),
            clock_source: self.clock.source().to_string(),
            instance_id: self.instance_id.clone(),
            draft,
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| AppendError::Unrecordable(e.to_string()))?;
        let max = verify::RECORD_BYTES_MAX as usize - chain::PREFIX_LEN;
        if bytes.len() > max {
            tracing::error!(
                bytes = bytes.len(),
                max,
                stage = body.draft.stage.as_str(),
                "BUG: an audit record over the format's limit was refused before the write; the request that \
                 needed it is refused"
            );
            return Err(AppendError::Unrecordable(format!(
                "a {} record of {} bytes is over the format's limit of {max} bytes",
                body.draft.stage.as_str(),
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    fn write_batch(&mut self, appends: Vec<(Draft, bool, Reply)>) {
        if appends.is_empty() && self.gap.is_none() {
            return;
        }
        if let Some(why) = &self.broken {
            let why = why.clone();
            return self.fail(appends, why);
        }
        if self.active_bytes >= crate::failpoint::size_limit("AERODB_TEST_AUDIT_SEGMENT_BYTES", self.segment_bytes_max)
        {
            match create_segment(&self.dir, self.head_seq + 1) {
                Ok((_, f)) => {
                    self.active = f;
                    self.active_bytes = frame::HEADER_LEN;
                    self.active_first = self.head_seq + 1;
                }
                Err(e) => return self.fail(appends, format!("cannot start a new segment: {e}")),
            }
        }
        let mut buf = Vec::new();
        let mut last_offset = None;
        let mut leaves = Vec::with_capacity(appends.len() + 1);
        let (mut seq, mut hash) = (self.head_seq, self.head_hash);
        let mut receipts = Vec::with_capacity(appends.len());
        if let Some(gap) = &self.gap {
            let mut d = Draft::new(Stage::AuditGap, "", "audit_gap");
            d.detail.insert("window_start_unix_ms".into(), gap.since_ms.to_string());
            d.detail.insert("window_end_unix_ms".into(), self.clock.now_unix_ms().to_string());
            d.detail.insert("error".into(), gap.last_error.clone());
            for (stage, n) in &gap.counts {
                d.detail.insert(format!("unrecorded_{stage}"), n.to_string());
            }
            d.outcome = "NOT_EXECUTED".into();
            let body = match self.body(d) {
                Ok(b) => b,
                Err(e) => return self.fail(appends, e.to_string()),
            };
            seq += 1;
            let payload = chain::payload(&hash, seq, &body);
            // The record hash is the leaf hash (one pass over the payload).
            hash = chain::hash(&payload);
            leaves.push(hash);
            last_offset = Some(self.active_bytes + buf.len() as u64);
            buf.extend_from_slice(&frame::encode(&payload));
        }
        let mut staged = Vec::with_capacity(appends.len());
        let mut labels = Vec::with_capacity(appends.len());
        for (draft, required, reply) in appends {
            let stage = draft.stage;
            let label = (stage, draft.command.clone(), draft.outcome.clone());
            let body = match self.body(draft) {
                Ok(b) => b,
                Err(e) => {
                    // Not written and not counted as a gap: the log is writable, this record is not.
                    let _ = reply.send(Err(e));
                    continue;
                }
            };
            seq += 1;
            let payload = chain::payload(&hash, seq, &body);
            // The record hash is the leaf hash (one pass over the payload).
            hash = chain::hash(&payload);
            let leaf = hash;
            leaves.push(leaf);
            last_offset = Some(self.active_bytes + buf.len() as u64);
            buf.extend_from_slice(&frame::encode(&payload));
            receipts.push(Receipt { seq, hash, leaf });
            staged.push((stage, required, reply));
            labels.push(label);
        }
        crate::failpoint::hit("audit.before_write");
        let since = crate::metrics::Stopwatch::start();
        let result = self.active.write_all(&buf).and_then(|()| {
            crate::failpoint::hit("audit.before_fsync");
            self.active.sync_data()
        });
        if let Err(e) = result {
            // Cut the batch back off so the file ends at the last durable record.
            if let Err(t) = self.active.set_len(self.active_bytes) {
                tracing::error!(
                    error = %t,
                    "cannot cut a failed audit batch back off the file; refusing every append until a restart"
                );
                self.broken = Some(format!(
                    "a failed write ({e}) could not be cut back off the audit file ({t}); restart the control plane \
                     to recover the file"
                ));
            }
            self.fail_staged(staged, e.to_string());
            return;
        }
        crate::failpoint::hit("audit.after_fsync");
        self.metrics.durable(&labels, buf.len() as u64, since.seconds());
        self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.stats.records.fetch_add(seq - self.head_seq, Ordering::Relaxed);
        if let Some(o) = last_offset {
            self.head_position = (self.active_first, o);
        }
        self.active_bytes += buf.len() as u64;
        self.head_seq = seq;
        self.head_hash = hash;
        if self.gap.take().is_some() {
            tracing::warn!("audit log writable again; audit_gap record written");
        }
        self.healthy.store(true, Ordering::Relaxed);
        self.health.send_if_modified(|h| !std::mem::replace(h, true));
        #[cfg(feature = "bench")]
        if self.bench_without_tree {
            for ((_, _, reply), receipt) in staged.into_iter().zip(receipts) {
                let _ = reply.send(Ok(receipt));
            }
            return;
        }
        // The tree follows the durable records (never precedes them).
        for l in leaves {
            self.tree.push(l);
        }
        crate::failpoint::hit("audit.tree_before_write");
        if let Err(e) = self.tree.flush() {
            // The records are durable; the tree file is not whole. Refuse every later append (a
            // checkpoint must never sign a tree the file does not hold); a restart recovers it.
            tracing::error!(error = %e, "cannot write the audit tree; refusing every append until a restart");
            self.broken = Some(format!("the audit tree could not be written ({e}); restart the control plane"));
        }
        crate::failpoint::hit("audit.tree_after_write");
        let answered = staged.iter().any(|(stage, _, _)| answers_actor(*stage));
        let due = answered
            || self.head_seq - self.last_checkpoint_size >= self.checkpoint_every
            || self.checkpoint_due_by_time();
        // The checkpoint is signed and published before the replies (an Actor answer carries the
        // one covering its record), and made durable after them: it covers only records already
        // durable, so what a caller holds stays provable whatever happens next; a crash before
        // it is stored leaves the instance an older stored checkpoint, consistent with it.
        let signed = if due && self.broken.is_none() { self.sign_checkpoint() } else { None };
        for ((_, _, reply), receipt) in staged.into_iter().zip(receipts) {
            let _ = reply.send(Ok(receipt));
        }
        if let Some(cp) = signed {
            self.store_checkpoint(&cp);
        }
    }

    fn fail(&mut self, appends: Vec<(Draft, bool, Reply)>, error: String) {
        let staged = appends.into_iter().map(|(d, r, reply)| (d.stage, r, reply)).collect();
        self.fail_staged(staged, error);
    }

    fn fail_staged(&mut self, staged: Vec<(Stage, bool, Reply)>, error: String) {
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::error!(error = %error, "audit log cannot be written; mutations are refused until it can");
        }
        self.metrics.failed();
        self.health.send_if_modified(|h| std::mem::replace(h, false));
        let now = self.clock.now_unix_ms();
        let gap =
            self.gap.get_or_insert_with(|| Gap { since_ms: now, counts: BTreeMap::new(), last_error: String::new() });
        gap.last_error = error.clone();
        for (stage, required, reply) in staged {
            let key = if required { format!("{}_refused", stage.as_str()) } else { stage.as_str().to_string() };
            *gap.counts.entry(key).or_insert(0) += 1;
            let _ = reply.send(Err(AppendError::Unavailable(error.clone())));
        }
    }

    /// Signs, publishes and stores a checkpoint of the whole tree now (the explicit and timed
    /// checkpoints, and clean shutdown): durable when it returns `Some`.
    fn write_checkpoint(&mut self) -> Option<Checkpoint> {
        let cp = self.sign_checkpoint()?;
        self.store_checkpoint(&cp).then_some(cp)
    }

    /// Signs a checkpoint of the whole tree (every durable record) and publishes it as the latest
    /// ([`AuditLog::latest_checkpoint`]); `None` when there is nothing to sign or the log is
    /// broken. Storing it is [`Writer::store_checkpoint`].
    fn sign_checkpoint(&mut self) -> Option<Checkpoint> {
        if self.head_seq == 0 || self.broken.is_some() {
            return None;
        }
        #[cfg(feature = "bench")]
        if self.bench_without_tree {
            return None;
        }
        if self.tree.size() != self.head_seq {
            tracing::error!(
                tree = self.tree.size(),
                head = self.head_seq,
                "BUG: the audit tree does not hold every durable record; no checkpoint written"
            );
            return None;
        }
        assert!(self.head_seq >= self.last_checkpoint_size, "checkpoints only move forward");
        let cp = self.signer.sign(self.tree.size(), &self.tree.root());
        // Counted from here: the next one is due `checkpoint_every` records (or the interval)
        // after this one, whether or not storing this one succeeds.
        self.last_checkpoint_size = cp.size;
        self.last_checkpoint_ms = self.clock.now_unix_ms();
        if let Ok(mut g) = self.latest_checkpoint.lock() {
            *g = Some(cp.clone());
        }
        Some(cp)
    }

    /// Stores a signed checkpoint durably in `checkpoints.log`, the tree first (a durable
    /// checkpoint implies a durable tree of its size). A failure is logged: the instance keeps
    /// its older stored checkpoints, and start recovers from the newest of them.
    fn store_checkpoint(&mut self, cp: &Checkpoint) -> bool {
        // Stored before the next batch is written, so the head is the checkpoint's last record.
        debug_assert_eq!(cp.size, self.head_seq, "a checkpoint is stored before the next batch");
        crate::failpoint::hit("audit.checkpoint_before_tree_sync");
        if let Err(e) = self.tree.sync() {
            tracing::error!(error = %e, "cannot sync the audit tree; the checkpoint is not stored");
            return false;
        }
        crate::failpoint::hit("audit.checkpoint_after_tree_sync");
        match checkpoint::append(&mut self.checkpoints_file, cp, self.head_position) {
            Ok(()) => {
                crate::failpoint::hit("audit.checkpoint_after_fsync");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot write an audit checkpoint");
                false
            }
        }
    }
}

/// Stages whose record an Actor answer reports: a checkpoint covering it precedes the reply.
fn answers_actor(stage: Stage) -> bool {
    matches!(
        stage,
        Stage::ConfirmationRequested
            | Stage::Declined
            | Stage::Executed
            | Stage::Replayed
            | Stage::Rejected
            | Stage::Failed
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn open(dir: &Path) -> AuditLog {
        AuditLog::open(AuditOptions {
            dir: dir.to_path_buf(),
            instance_id: "cp-test".into(),
            checkpoint_every: 1000,
            checkpoint_interval_ms: 10_000,
            segment_bytes_max: SEGMENT_BYTES_MAX,
            clock: Arc::new(ManualClock::new(1_000)),
        })
        .expect("open")
    }

    /// Rewrites every segment of `dir` in the earlier format (`AEROAUD1`, record hash
    /// SHA-256(payload)), as an earlier version wrote it, without tree or checkpoints.
    fn rewrite_as_v1(dir: &Path) {
        let mut prev = chain::GENESIS;
        for (first, path) in verify::segments(dir).expect("segments") {
            let mut r = frame::Reader::open(&path, MAGIC, verify::RECORD_BYTES_MAX, true).expect("reader");
            let mut out = frame::header(verify::MAGIC_V1, first).to_vec();
            while let Some((_, p)) = r.next_frame().expect("frame") {
                let (_, seq, body) = chain::split(&p).expect("payload");
                let payload = chain::payload(&prev, seq, body);
                prev = chain::hash_v1(&payload);
                out.extend_from_slice(&frame::encode(&payload));
            }
            std::fs::write(&path, out).expect("write");
        }
        std::fs::remove_file(dir.join(super::super::tree::TREE_FILE)).expect("tree");
        std::fs::remove_file(dir.join(checkpoint::CHECKPOINTS_FILE)).expect("checkpoints");
    }

    fn magics(dir: &Path) -> Vec<[u8; 8]> {
        verify::segments(dir)
            .expect("segments")
            .iter()
            .map(|(_, p)| std::fs::read(p).expect("read")[..8].try_into().expect("magic"))
            .collect()
    }

    #[tokio::test]
    async fn p7_o3_a_log_of_the_earlier_segment_format_is_continued_in_a_new_segment_and_verifies_across() {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit = dir.path().join("audit");
        let log = open(&audit);
        for i in 0..5 {
            log.append(Draft::new(Stage::Read, format!("c{i}"), "inspect_node")).await.expect("append");
        }
        drop(log);
        rewrite_as_v1(&audit);
        let v1_head = verify::verify_dir(&audit, None);
        assert!(v1_head.ok, "{:?}", v1_head.problem);
        let log = open(&audit);
        let next = log.append(Draft::new(Stage::Read, "c5", "inspect_node")).await.expect("append after upgrade");
        assert_eq!(next.seq, 6);
        drop(log);
        assert_eq!(magics(&audit), vec![*verify::MAGIC_V1, *verify::MAGIC], "old segment kept, new one begun");
        let report = verify::verify_dir(&audit, None);
        assert!(report.ok, "{:?}", report.problem);
        assert_eq!((report.records, report.last_seq), (6, 6));
        let mut stored = Vec::new();
        verify::read_from(&audit, 5, |s| {
            stored.push((s.seq, s.prev_hash, s.hash, s.leaf_hash));
            true
        })
        .expect("read");
        let [(5, _, h5, l5), (6, p6, h6, l6)] = stored[..] else { panic!("{stored:?}") };
        assert_eq!(hex::encode(h5), v1_head.head_hash, "a v1 record keeps its v1 hash");
        assert_ne!(h5, l5, "in v1 the record hash is not the leaf");
        assert_eq!(p6, h5, "the first new record names the last v1 record's hash");
        assert_eq!(h6, l6, "from the new segment on, the record hash is the leaf hash");
        // And it opens again, continuing the new segment.
        let log = open(&audit);
        assert_eq!(log.append(Draft::new(Stage::Read, "c6", "x")).await.expect("append").seq, 7);
        drop(log);
        assert_eq!(magics(&audit).len(), 2);
    }

    #[tokio::test]
    async fn an_empty_segment_of_the_earlier_format_is_rewritten_with_the_current_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit = dir.path().join("audit");
        drop(open(&audit));
        let (first, path) = verify::segments(&audit).expect("segments").remove(0);
        std::fs::write(&path, frame::header(verify::MAGIC_V1, first)).expect("write");
        let log = open(&audit);
        assert_eq!(log.append(Draft::new(Stage::Read, "c1", "x")).await.expect("append").seq, 1);
        drop(log);
        assert_eq!(magics(&audit), vec![*verify::MAGIC]);
        assert!(verify::verify_dir(&audit, None).ok);
    }

    #[tokio::test]
    async fn p7_o3_a_record_over_the_format_limit_is_refused_before_the_write_and_the_log_stays_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open(&dir.path().join("audit"));
        log.append(Draft::new(Stage::Read, "c1", "inspect_node")).await.expect("small record");
        let mut huge = Draft::new(Stage::Rejected, "c2", "request_promotion");
        huge.target = "x".repeat(verify::RECORD_BYTES_MAX as usize);
        match log.append(huge.clone()).await {
            Err(AppendError::Unrecordable(why)) => assert!(why.contains("over the format's limit"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(log.append_best_effort(huge).await, None);
        // The log is healthy: the refusal is the record's fault, not the disk's.
        assert!(log.healthy());
        let next = log.append(Draft::new(Stage::Read, "c3", "inspect_node")).await.expect("next record");
        assert_eq!(next.seq, 2, "the refused records took no sequence number");
        drop(log);
        let report = verify::verify_dir(&dir.path().join("audit"), None);
        assert!(report.problem.is_none(), "{:?}", report.problem);
        assert_eq!(report.summary.last_seq, 2);
        // And it opens again.
        let again = open(&dir.path().join("audit"));
        assert_eq!(again.append(Draft::new(Stage::Read, "c4", "x")).await.expect("append").seq, 3);
    }

    /// The records of `dir` from seq 1, as read back.
    fn bodies(dir: &Path) -> Vec<(u64, Body)> {
        let mut out = Vec::new();
        verify::read_from(dir, 1, |s| {
            out.push((s.seq, serde_json::from_slice(&s.body_json).expect("body")));
            true
        })
        .expect("read");
        out
    }

    #[tokio::test]
    async fn p7_o3_a_batch_that_cannot_be_written_turns_the_log_unhealthy_and_the_next_durable_batch_opens_with_the_gap_record()
     {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit = dir.path().join("audit");
        // Segments of one record: every batch after the first begins a new segment.
        let log = AuditLog::open(AuditOptions {
            dir: audit.clone(),
            instance_id: "cp-test".into(),
            checkpoint_every: 1000,
            checkpoint_interval_ms: 10_000,
            segment_bytes_max: frame::HEADER_LEN + 1,
            clock: Arc::new(ManualClock::new(1_000)),
        })
        .expect("open");
        let mut metrics = crate::metrics::Metrics::new();
        metrics.register_audit(log.metrics());
        let mut health = log.health_watch();
        assert!(*health.borrow_and_update());
        assert_eq!(log.append(Draft::new(Stage::Read, "c1", "inspect_node")).await.expect("append").seq, 1);
        assert!(log.healthy());
        // The next segment's file already exists: the writer cannot begin it (a real I/O failure
        // of the roll, `create_new`), so the batch is not written.
        let blocker = audit.join(verify::segment_name(2));
        std::fs::write(&blocker, b"in the way").expect("blocker");
        match log.append(Draft::new(Stage::Read, "c2", "inspect_node")).await {
            Err(AppendError::Unavailable(why)) => assert!(why.contains("cannot start a new segment"), "{why}"),
            other => panic!("expected the log unavailable, got {other:?}"),
        }
        assert!(!log.healthy());
        tokio::time::timeout(Duration::from_secs(10), health.wait_for(|h| !*h)).await.expect("in time").expect("watch");
        assert_eq!(log.append_best_effort(Draft::new(Stage::Denied, "c3", "inspect_node")).await, None);
        assert_eq!(log.stats().records.load(Ordering::Relaxed), 1);
        assert_eq!(log.stats().fsyncs.load(Ordering::Relaxed), 1);
        // Writable again. With nothing else to record, the writer's probe (once a second) writes
        // the gap record by itself and the log is healthy again.
        std::fs::remove_file(&blocker).expect("unblock");
        tokio::time::timeout(Duration::from_secs(10), health.wait_for(|h| *h)).await.expect("in time").expect("watch");
        assert!(log.healthy());
        // Two durable batches: record 1, and the probe's gap record (seq 2).
        assert_eq!(log.stats().records.load(Ordering::Relaxed), 2);
        assert_eq!(log.stats().fsyncs.load(Ordering::Relaxed), 2);
        let text = crate::metrics::Metrics::render(&metrics.into_registry());
        for series in [
            "aerodb_audit_records_total{stage=\"read\"} 1",
            "aerodb_audit_fsyncs_total 2",
            "aerodb_audit_unavailable 0",
        ] {
            assert!(text.lines().any(|l| l == series), "{series} in\n{text}");
        }
        // A checkpoint whose last record is the gap record, at the start of the new segment:
        // opening again starts from there and reads that one record only.
        assert_eq!(log.checkpoint().await.map(|c| c.size), Some(2));
        // It names where that record starts: segment 2, just past the header.
        let stored = checkpoint::read_all(&audit).expect("checkpoints");
        assert_eq!(
            stored.iter().map(|(_, c, at)| (c.size, *at)).collect::<Vec<_>>(),
            vec![(2, (2, frame::HEADER_LEN))]
        );
        drop(log);
        let log = open(&audit);
        assert_eq!(log.records_read_at_open(), 1, "only the checkpoint's last record is read");
        assert_eq!(log.append(Draft::new(Stage::Read, "c4", "inspect_node")).await.expect("append").seq, 3);
        drop(log);
        let records = bodies(&audit);
        assert_eq!(
            records.iter().map(|(s, b)| (*s, b.draft.stage)).collect::<Vec<_>>(),
            vec![(1, Stage::Read), (2, Stage::AuditGap), (3, Stage::Read)]
        );
        let gap = &records[1].1.draft;
        assert_eq!(gap.outcome, "NOT_EXECUTED");
        assert_eq!(gap.detail.get("unrecorded_read_refused").map(String::as_str), Some("1"), "{:?}", gap.detail);
        assert_eq!(gap.detail.get("unrecorded_denied").map(String::as_str), Some("1"), "{:?}", gap.detail);
        assert!(gap.detail.get("error").is_some_and(|e| e.contains("cannot start a new segment")), "{:?}", gap.detail);
        let report = verify::verify_dir(&audit, None);
        assert!(report.problem.is_none(), "{:?}", report.problem);
        assert_eq!(report.summary.last_seq, 3);
    }

    /// The sizes of the checkpoints stored in `dir`'s `checkpoints.log`, in order.
    fn stored_checkpoints(dir: &Path) -> Vec<u64> {
        checkpoint::read_all(dir).expect("checkpoints").iter().map(|(_, c, _)| c.size).collect()
    }

    /// Sends the writer a probe (what the once-a-second task sends) and waits until it was
    /// handled: a checkpoint request queued behind it is answered only after it.
    async fn probe(log: &AuditLog) {
        log.tx.send(Req::Probe).await.expect("probe");
        log.checkpoint().await.expect("a checkpoint exists");
    }

    #[tokio::test]
    async fn p7_o3_a_checkpoint_is_signed_when_asked_due_or_at_shutdown_and_never_twice_for_one_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit = dir.path().join("audit");
        let clock = Arc::new(ManualClock::new(1_000));
        let log = AuditLog::open(AuditOptions {
            dir: audit.clone(),
            instance_id: "cp-test".into(),
            checkpoint_every: 1000,
            checkpoint_interval_ms: 10_000,
            segment_bytes_max: SEGMENT_BYTES_MAX,
            clock: clock.clone(),
        })
        .expect("open");
        // A record no Actor answer reports, before the interval: no checkpoint.
        log.append(Draft::new(Stage::Read, "c1", "inspect_node")).await.expect("append");
        assert_eq!(log.latest_checkpoint().map(|c| c.size), None);
        // Asked for: one, of the whole tree.
        assert_eq!(log.checkpoint().await.map(|c| c.size), Some(1));
        assert_eq!(stored_checkpoints(&audit), vec![1]);
        // It names where its last record starts: segment 1, just past the header.
        let stored = checkpoint::read_all(&audit).expect("checkpoints");
        assert_eq!(stored.iter().map(|(_, _, at)| *at).collect::<Vec<_>>(), vec![(1, frame::HEADER_LEN)]);
        // Asked for again with nothing new: the same one, not a second.
        assert_eq!(log.checkpoint().await.map(|c| c.size), Some(1));
        assert_eq!(stored_checkpoints(&audit), vec![1]);
        // A probe signs nothing when nothing is due, nor once the interval passed with nothing new.
        probe(&log).await;
        assert_eq!(stored_checkpoints(&audit), vec![1]);
        clock.advance(Duration::from_millis(10_000));
        probe(&log).await;
        assert_eq!(stored_checkpoints(&audit), vec![1]);
        // The interval passed and a record is new: the batch that writes it signs one, before its
        // reply.
        log.append(Draft::new(Stage::Read, "c2", "inspect_node")).await.expect("append");
        assert_eq!(log.latest_checkpoint().map(|c| c.size), Some(2));
        probe(&log).await;
        assert_eq!(stored_checkpoints(&audit), vec![1, 2]);
        // A record an Actor answer reports: one covering it is signed before its reply, whatever
        // the count or the time.
        log.append(Draft::new(Stage::Executed, "c3", "run_diagnostics")).await.expect("append");
        assert_eq!(log.latest_checkpoint().map(|c| c.size), Some(3));
        // A clean shutdown seals what was written since.
        log.append(Draft::new(Stage::Read, "c4", "inspect_node")).await.expect("append");
        drop(log);
        // Opening again waits for the old writer to release the directory, so it has finished.
        let again = open(&audit);
        assert_eq!(stored_checkpoints(&audit), vec![1, 2, 3, 4]);
        assert_eq!(again.latest_checkpoint().map(|c| c.size), Some(4));
        assert_eq!(again.records_read_at_open(), 1, "opening starts at the newest checkpoint's last record");
    }

    #[tokio::test]
    async fn p7_o3_a_record_of_exactly_the_format_limit_is_written_and_one_byte_more_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit = dir.path().join("audit");
        let log = open(&audit);
        let max = verify::RECORD_BYTES_MAX as usize - chain::PREFIX_LEN;
        // The body the writer makes of a draft (the test log's clock stands at 1000 ms).
        let body_len = |d: &Draft| {
            let body = Body {
                time_unix_ms: 1_000,
                clock_source: "manual".into(),
                instance_id: "cp-test".into(),
                draft: d.clone(),
            };
            serde_json::to_vec(&body).expect("json").len()
        };
        let mut at_limit = Draft::new(Stage::Read, "c1", "inspect_node");
        at_limit.target = "x".repeat(max - body_len(&at_limit));
        assert_eq!(body_len(&at_limit), max);
        let mut over = at_limit.clone();
        over.target.push('x');
        match log.append(over).await {
            Err(AppendError::Unrecordable(why)) => assert!(why.contains(&format!("limit of {max} bytes")), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(log.append(at_limit).await.expect("at the limit").seq, 1);
        drop(log);
        let report = verify::verify_dir(&audit, None);
        assert!(report.problem.is_none(), "{:?}", report.problem);
        assert_eq!(report.summary.last_seq, 1);
    }

    #[tokio::test]
    async fn p7_o3_a_checkpoint_is_signed_every_checkpoint_every_records_and_not_between() {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit = dir.path().join("audit");
        let log = AuditLog::open(AuditOptions {
            dir: audit.clone(),
            instance_id: "cp-test".into(),
            checkpoint_every: 3,
            checkpoint_interval_ms: 10_000,
            segment_bytes_max: SEGMENT_BYTES_MAX,
            clock: Arc::new(ManualClock::new(1_000)),
        })
        .expect("open");
        let mut signed = Vec::new();
        for i in 1..=7 {
            log.append(Draft::new(Stage::Read, format!("c{i}"), "inspect_node")).await.expect("append");
            signed.push(log.latest_checkpoint().map(|c| c.size));
        }
        assert_eq!(signed, vec![None, None, Some(3), Some(3), Some(3), Some(6), Some(6)]);
        // Stored after the replies: a checkpoint request queued behind them sees them stored.
        assert_eq!(log.checkpoint().await.map(|c| c.size), Some(7));
        assert_eq!(stored_checkpoints(&audit), vec![3, 6, 7]);
    }

    /// A log of `dir` whose writer is not started yet: requests sent now wait in its queue.
    fn unstarted(dir: &Path, clock: SharedClock, checkpoint_every: u64) -> (AuditLog, Writer, mpsc::Receiver<Req>) {
        AuditLog::open_unstarted(AuditOptions {
            dir: dir.to_path_buf(),
            instance_id: "cp-test".into(),
            checkpoint_every,
            checkpoint_interval_ms: 10_000,
            segment_bytes_max: SEGMENT_BYTES_MAX,
            clock,
        })
        .expect("open")
    }

    /// Queues `n` reads (best-effort appends) without waiting; their replies, in order.
    fn queue_reads(log: &AuditLog, n: usize) -> Vec<oneshot::Receiver<Result<Receipt, AppendError>>> {
        (0..n)
            .map(|i| {
                let (reply, rx) = oneshot::channel();
                let draft = Box::new(Draft::new(Stage::Read, format!("c{i}"), "inspect_node"));
                assert!(log.tx.try_send(Req::Append { draft, required: false, reply }).is_ok(), "append {i} queued");
                rx
            })
            .collect()
    }

    /// Awaits every reply; the sequence numbers they carry.
    async fn seqs(replies: Vec<oneshot::Receiver<Result<Receipt, AppendError>>>) -> Vec<u64> {
        let mut out = Vec::with_capacity(replies.len());
        for r in replies {
            out.push(r.await.expect("a reply").expect("durable").seq);
        }
        out
    }

    fn records_and_fsyncs(log: &AuditLog) -> (u64, u64) {
        (log.stats().records.load(Ordering::Relaxed), log.stats().fsyncs.load(Ordering::Relaxed))
    }

    /// Group commit: one batch (one write, one fsync) takes every append queued when the writer
    /// looks, up to `BATCH_MAX` and never more. Kills `appends.len() < BATCH_MAX` as `==` and `>`
    /// (one append per batch) and as `<=` (a batch of `BATCH_MAX + 1`).
    #[tokio::test]
    async fn p7_o3_one_batch_takes_every_queued_append_up_to_batch_max_and_never_more() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock: SharedClock = Arc::new(ManualClock::new(1_000));
        let (log, writer, rx) = unstarted(&dir.path().join("three"), clock.clone(), u64::MAX);
        let replies = queue_reads(&log, 3);
        writer.start(rx).expect("start");
        assert_eq!(seqs(replies).await, vec![1, 2, 3]);
        assert_eq!(records_and_fsyncs(&log), (3, 1), "three queued appends: one batch, one fsync");
        drop(log);

        let (log, writer, rx) = unstarted(&dir.path().join("over"), clock, u64::MAX);
        let n = BATCH_MAX + 1;
        let replies = queue_reads(&log, n);
        writer.start(rx).expect("start");
        assert_eq!(seqs(replies).await, (1..=n as u64).collect::<Vec<_>>());
        assert_eq!(records_and_fsyncs(&log), (n as u64, 2), "BATCH_MAX + 1 queued: a full batch, then one more");
    }

    /// The probe meets a full queue (the writer busy), skips that probe and goes on: once the
    /// writer has drained the queue, the next probe signs the checkpoint the interval made due,
    /// with no other request to carry it. Kills the probe's `try_send(..).is_err() &&
    /// tx.is_closed()` as `||` (the probe would end at the first full queue).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn p7_o3_the_probe_outlives_a_full_queue_and_then_signs_the_checkpoint_the_interval_made_due() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(1_000));
        let (log, writer, rx) = unstarted(&dir.path().join("audit"), clock.clone(), u64::MAX);
        let replies = queue_reads(&log, QUEUE_MAX);
        assert!(log.tx.try_send(Req::Probe).is_err(), "the queue is full");
        let mut probe = spawn_probe(log.tx.downgrade(), Duration::from_millis(1));
        // A probe every millisecond meets the full queue for 200 ms. The probe ends only once the
        // writer is gone, so with the rule kept this wait always runs out; it only gives the
        // probe time to meet the full queue.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), &mut probe).await.is_err(),
            "the probe stopped while the writer lives"
        );
        writer.start(rx).expect("start");
        assert_eq!(seqs(replies).await.len(), QUEUE_MAX);
        assert!(log.latest_checkpoint().is_none(), "no checkpoint is due yet (reads, interval not passed)");
        clock.advance(Duration::from_millis(10_000));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let cp = loop {
            if let Some(cp) = log.latest_checkpoint() {
                break cp;
            }
            assert!(tokio::time::Instant::now() < deadline, "no probe came to sign the due checkpoint");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(cp.size, QUEUE_MAX as u64, "the checkpoint covers every record");
        assert!(!probe.is_finished());
    }

    /// A log whose tree could not be written (its records durable, the tree file not whole) is
    /// broken: it signs no checkpoint, even when asked, since one would cover a tree the file
    /// does not hold; and it refuses every later append. Kills `sign_checkpoint`'s
    /// `head_seq == 0 || broken` as `&&`.
    #[tokio::test]
    async fn p7_o3_a_log_whose_tree_could_not_be_written_signs_no_checkpoint_even_when_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, mut writer, rx) = unstarted(&dir.path().join("audit"), Arc::new(ManualClock::new(1_000)), 1000);
        writer.tree.fail_writes().expect("reopen the tree read-only");
        writer.start(rx).expect("start");
        let r = log.append(Draft::new(Stage::Read, "c1", "inspect_node")).await.expect("the record is durable");
        assert_eq!(r.seq, 1);
        assert!(log.checkpoint().await.is_none(), "a broken log signs no checkpoint when asked");
        assert!(log.latest_checkpoint().is_none(), "nor publishes one");
        match log.append(Draft::new(Stage::Read, "c2", "inspect_node")).await {
            Err(AppendError::Unavailable(why)) => assert!(why.contains("audit tree could not be written"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(!log.healthy());
    }
}
