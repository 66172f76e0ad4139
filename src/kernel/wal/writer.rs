//! The WAL's writer thread: group commit (one write and one fdatasync per batch), segment
//! rollover, and truncation. The only code that writes WAL files.

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn create_segment(dir: &Path, first_index: u64) -> Result<Segment, WalError> {
    let path = dir.join(segment_name(first_index));
    let mut f = crate::fsutil::open_private(OpenOptions::new().create_new(true).read(true).append(true), &path)
        .map_err(io(&path))?;
    f.write_all(&frame::header(MAGIC, first_index)).map_err(io(&path))?;
    f.sync_all().map_err(io(&path))?;
    crate::fsutil::fsync_dir(dir).map_err(io(dir))?;
    let file = OpenOptions::new().read(true).open(&path).map_err(io(&path))?;
    Ok(Segment { first_index, path, file: Arc::new(file), bytes: frame::HEADER_LEN })
}

/// The writer thread's state. Only it mutates the log.
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) quarantine: PathBuf,
    pub(super) index: Arc<RwLock<Index>>,
    pub(super) active: File,
    pub(super) next_index: u64,
    pub(super) last_hash: Hash,
    pub(super) last_epoch: u64,
    pub(super) writable: Option<u64>,
    pub(super) durable: watch::Sender<u64>,
    pub(super) metrics: crate::metrics::WalMetrics,
    /// A new segment is started beyond this many bytes.
    pub(super) segment_bytes: u64,
}

/// An entry encoded into the current batch, waiting for the batch's fsync.
pub(super) struct Staged {
    pub(super) meta: EntryMeta,
    pub(super) index: u64,
    /// The primary an EpochStart names (empty for other kinds).
    pub(super) primary: String,
}

type Reply = oneshot::Sender<Result<u64, WalError>>;

pub(super) struct Batch {
    pub(super) buf: Vec<u8>,
    pub(super) staged: Vec<Staged>,
    pub(super) replies: Vec<(Reply, u64)>,
}

impl Writer {
    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Req>) {
        while let Some(first) = rx.blocking_recv() {
            let mut reqs = vec![first];
            while reqs.len() < BATCH_MAX {
                match rx.try_recv() {
                    Ok(r) => reqs.push(r),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.process(reqs) {
                // A failed write or fsync leaves the file in an unknown state (fsync errors are
                // not retryable). Fail closed: stop the process; recovery decides from disk.
                tracing::error!(error = %e, "WAL write failed; stopping the node (recovery will decide from disk)");
                std::process::abort();
            }
        }
    }

    fn process(&mut self, reqs: Vec<Req>) -> Result<(), WalError> {
        let mut batch = Batch { buf: Vec::new(), staged: Vec::new(), replies: Vec::new() };
        for req in reqs {
            match req {
                Req::Propose { epoch, kind, payload, reply } => {
                    if self.writable != Some(epoch) {
                        let _ = reply.send(Err(WalError::NotWritable { epoch, writable: self.writable }));
                        continue;
                    }
                    let index = self.stage(&mut batch, epoch, kind, payload)?;
                    batch.replies.push((reply, index));
                }
                Req::Replicate { entries, reply } => {
                    if let Some(epoch) = self.writable {
                        let _ = reply.send(Err(WalError::Refused(format!(
                            "a primary (writable epoch {epoch}) does not accept replicated entries"
                        ))));
                        continue;
                    }
                    let mut last = self.next_index - 1;
                    let mut refusal = None;
                    let mut staged = Vec::new();
                    let (mut hash, mut epoch, mut next) = (self.last_hash, self.last_epoch, self.next_index);
                    for e in &entries {
                        let what = if e.index != next {
                            Some(format!("index {} where {next} was expected", e.index))
                        } else if e.prev_hash != hash {
                            Some("prev_hash does not match this log".to_string())
                        } else if e.epoch < epoch {
                            Some(format!("epoch {} after epoch {epoch}", e.epoch))
                        } else {
                            None
                        };
                        if let Some(what) = what {
                            refusal = Some(WalError::Discontinuous { index: e.index, what });
                            break;
                        }
                        hash = e.hash();
                        epoch = e.epoch;
                        next += 1;
                        staged.push(e.clone());
                    }
                    if let Some(err) = refusal {
                        let _ = reply.send(Err(err));
                        continue;
                    }
                    for e in staged {
                        last = self.stage(&mut batch, e.epoch, e.kind, e.payload)?;
                    }
                    batch.replies.push((reply, last));
                }
                Req::StartEpoch { epoch, primary, reply } => {
                    self.flush(&mut batch)?;
                    if epoch <= self.last_epoch && self.last_epoch != 0 {
                        let _ = reply.send(Err(WalError::Refused(format!(
                            "epoch {epoch} is not after the log's last epoch {}",
                            self.last_epoch
                        ))));
                        continue;
                    }
                    let index = self.stage(&mut batch, epoch, Kind::EpochStart, primary.into_bytes())?;
                    self.writable = Some(epoch);
                    batch.replies.push((reply, index));
                    self.flush(&mut batch)?;
                }
                Req::SetWritable { epoch, reply } => {
                    self.flush(&mut batch)?;
                    self.writable = epoch;
                    let _ = reply.send(Ok(self.next_index - 1));
                }
                Req::Fence { epoch, index, reply } => {
                    self.flush(&mut batch)?;
                    if self.writable.is_some() || index != self.next_index || epoch < self.last_epoch {
                        let _ = reply.send(Err(WalError::Refused(format!(
                            "Fence for epoch {epoch} at {index}: log is {} (last {}, epoch {})",
                            if self.writable.is_some() { "still writable" } else { "sealed" },
                            self.next_index - 1,
                            self.last_epoch
                        ))));
                        continue;
                    }
                    let index = self.stage(&mut batch, epoch, Kind::Fence, Vec::new())?;
                    batch.replies.push((reply, index));
                    self.flush(&mut batch)?;
                }
                Req::TruncateAfter { index, reply } => {
                    self.flush(&mut batch)?;
                    let result = self.truncate_after(index);
                    let _ = reply.send(result);
                }
                Req::Anchor { base, marks, reply } => {
                    self.flush(&mut batch)?;
                    let _ = reply.send(self.anchor(base, marks));
                }
                Req::Reset { base, marks, reply } => {
                    self.flush(&mut batch)?;
                    if let Some(epoch) = self.writable {
                        let _ = reply.send(Err(WalError::Refused(format!(
                            "a writable log (epoch {epoch}) is never replaced by a snapshot"
                        ))));
                        continue;
                    }
                    let result = self.reset(base, marks);
                    let _ = reply.send(result);
                }
            }
        }
        self.flush(&mut batch)
    }

    /// Encodes one entry into the batch, rolling to a new segment first when the active one is
    /// full. Returns the entry's index.
    fn stage(&mut self, batch: &mut Batch, epoch: u64, kind: Kind, payload: Vec<u8>) -> Result<u64, WalError> {
        let entry = Entry { index: self.next_index, epoch, prev_hash: self.last_hash, kind, payload };
        let bytes = entry.encode();
        let framed_len = bytes.len() as u64 + frame::FRAME_HEADER_LEN;
        let (active_bytes, has_entries) = {
            let idx = read_lock(&self.index);
            let seg_bytes = idx.segments.last().map(|s| s.bytes).unwrap_or(0);
            let pending = batch.buf.len() as u64;
            (seg_bytes + pending, seg_bytes > frame::HEADER_LEN || pending > 0)
        };
        if has_entries
            && active_bytes + framed_len
                > crate::failpoint::size_limit("AERODB_TEST_WAL_SEGMENT_BYTES", self.segment_bytes)
        {
            self.flush(batch)?;
            let seg = create_segment(&self.dir, entry.index)?;
            self.active = OpenOptions::new().append(true).open(&seg.path).map_err(io(&seg.path))?;
            write_lock(&self.index).segments.push(seg);
        }
        let (segment, seg_bytes) = {
            let idx = read_lock(&self.index);
            (idx.active_number(), idx.segments.last().map(|s| s.bytes).unwrap_or(0))
        };
        let offset = seg_bytes + batch.buf.len() as u64 + frame::FRAME_HEADER_LEN;
        let hash = entry.hash();
        batch.buf.extend_from_slice(&frame::encode(&bytes));
        let primary =
            if kind == Kind::EpochStart { String::from_utf8_lossy(&entry.payload).into_owned() } else { String::new() };
        batch.staged.push(Staged {
            meta: EntryMeta { epoch, kind, segment, offset, len: bytes.len() as u32, hash },
            index: entry.index,
            primary,
        });
        self.next_index += 1;
        self.last_hash = hash;
        self.last_epoch = epoch;
        Ok(entry.index)
    }

    /// Writes and fdatasyncs the batch, publishes it to readers, answers its requests.
    fn flush(&mut self, batch: &mut Batch) -> Result<(), WalError> {
        if batch.buf.is_empty() {
            for (reply, index) in batch.replies.drain(..) {
                let _ = reply.send(Ok(index));
            }
            return Ok(());
        }
        let path = read_lock(&self.index).segments.last().map(|s| s.path.clone()).unwrap_or_default();
        if crate::failpoint::armed("wal.torn_write") {
            let half = batch.buf.len() / 2;
            let _ = self.active.write_all(&batch.buf[..half]);
            let _ = self.active.sync_data();
            crate::failpoint::hit("wal.torn_write.abort");
            std::process::abort();
        }
        let since = crate::metrics::Stopwatch::start();
        self.active.write_all(&batch.buf).map_err(io(&path))?;
        crate::failpoint::hit("wal.before_fsync");
        self.active.sync_data().map_err(io(&path))?;
        self.metrics.durable(batch.staged.len(), batch.buf.len() as u64, since.seconds());
        let last = {
            let mut idx = write_lock(&self.index);
            let n = batch.buf.len() as u64;
            if let Some(seg) = idx.segments.last_mut() {
                seg.bytes += n;
            }
            for s in &batch.staged {
                if s.meta.kind == Kind::EpochStart {
                    idx.marks.push(EpochMark { index: s.index, epoch: s.meta.epoch, primary: s.primary.clone() });
                }
            }
            idx.metas.extend(batch.staged.drain(..).map(|s| s.meta));
            idx.last_index()
        };
        batch.buf.clear();
        self.durable.send_replace(last);
        for (reply, index) in batch.replies.drain(..) {
            let _ = reply.send(Ok(index));
        }
        Ok(())
    }

    fn truncate_after(&mut self, keep: u64) -> Result<Vec<Entry>, WalError> {
        if self.writable.is_some() {
            return Err(WalError::Refused("a writable log is never truncated".into()));
        }
        let last = self.next_index - 1;
        if keep >= last {
            return Ok(Vec::new());
        }
        let floor = {
            let idx = read_lock(&self.index);
            (idx.first - 1).max(idx.snapshot_index)
        };
        if keep < floor {
            return Err(WalError::Refused(format!(
                "entries up to {floor} are covered by a snapshot (committed) and are never discarded; asked to keep {keep}"
            )));
        }
        // Read what will be removed, then keep a copy of it before touching the files.
        let mut removed = Vec::new();
        let mut copy = Vec::new();
        for i in keep + 1..=last {
            let (file, path, meta) = {
                let idx = read_lock(&self.index);
                let meta = idx.meta(i).copied().ok_or_else(|| WalError::Refused(format!("entry {i} missing")))?;
                let seg = idx.segment(meta.segment);
                (seg.file.clone(), seg.path.clone(), meta)
            };
            let mut buf = vec![0u8; meta.len as usize];
            file.read_exact_at(&mut buf, meta.offset).map_err(io(&path))?;
            copy.extend_from_slice(&frame::encode(&buf));
            removed.push(Entry::decode(&buf).map_err(|e| WalError::Corrupt {
                path,
                offset: meta.offset,
                what: e.to_string(),
            })?);
        }
        crate::fsutil::create_dir_durable(&self.quarantine).map_err(io(&self.quarantine))?;
        let copy_path = self.quarantine.join(format!("discarded-{:020}-{:020}.wal", keep + 1, last));
        let mut with_header = frame::header(MAGIC, keep + 1).to_vec();
        with_header.extend_from_slice(&copy);
        crate::fsutil::write_atomic(&copy_path, &with_header, crate::fsutil::FILE_MODE).map_err(io(&copy_path))?;

        let mut idx = write_lock(&self.index);
        let (seg_of_first_removed, offset_of_first_removed) = {
            let m = idx.meta(keep + 1).copied().ok_or_else(|| WalError::Refused("entry missing".into()))?;
            (m.segment - idx.removed_segments, m.offset - frame::FRAME_HEADER_LEN)
        };
        // Remove whole segments after the one holding the first removed entry.
        while idx.segments.len() > seg_of_first_removed + 1 {
            if let Some(seg) = idx.segments.pop() {
                std::fs::remove_file(&seg.path).map_err(io(&seg.path))?;
            }
        }
        let seg = idx.segments.last_mut().ok_or_else(|| WalError::Refused("no segment".into()))?;
        let f = OpenOptions::new().write(true).open(&seg.path).map_err(io(&seg.path))?;
        f.set_len(offset_of_first_removed).map_err(io(&seg.path))?;
        f.sync_all().map_err(io(&seg.path))?;
        seg.bytes = offset_of_first_removed;
        let active_path = seg.path.clone();
        crate::fsutil::fsync_dir(&self.dir).map_err(io(&self.dir))?;
        let held = usize::try_from(keep + 1 - idx.first).unwrap_or(0);
        idx.metas.truncate(held);
        idx.marks.retain(|m| m.index <= keep);
        let (hash, epoch) = match (idx.metas.last(), idx.base) {
            (Some(m), _) => (m.hash, m.epoch),
            (None, Some(b)) => (b.hash, b.epoch),
            (None, None) => (ZERO_HASH, 0),
        };
        drop(idx);
        self.active = OpenOptions::new().append(true).open(&active_path).map_err(io(&active_path))?;
        self.next_index = keep + 1;
        self.last_hash = hash;
        self.last_epoch = epoch;
        self.durable.send_replace(keep);
        tracing::warn!(kept = keep, removed = removed.len(), copy = %copy_path.display(), "discarded an unreplicated WAL suffix");
        Ok(removed)
    }
}
