//! The log's snapshot boundary: which snapshot a compacted log continues (anchor), replacing the
//! log by one that continues an installed snapshot (reset), and removing whole segments below
//! the newest snapshot (compaction). See the `# Invariants` of the WAL module.

use super::writer::Writer;
#[allow(clippy::wildcard_imports)]
use super::*;

impl Wal {
    /// The last index the newest durable snapshot covers (0: none); entries at or below it may be
    /// compacted and are never truncated.
    pub(crate) fn snapshot_index(&self) -> u64 {
        read_lock(&self.index).snapshot_index
    }

    /// Records that a durable snapshot covers everything up to `index` (never lowers it).
    pub(crate) fn set_snapshot_index(&self, index: u64) {
        let mut idx = write_lock(&self.index);
        idx.snapshot_index = idx.snapshot_index.max(index);
    }

    /// Whether a segment other than the active one lies wholly at or below the newest snapshot
    /// (what [`Wal::compact`] may remove, peers and retention permitting).
    pub(crate) fn compactable(&self) -> bool {
        let idx = read_lock(&self.index);
        idx.segments.len() > 1 && idx.segment_last(0) <= idx.snapshot_index
    }

    /// WAL bytes (frames and segment headers) holding entries after `index`: what a restart
    /// would replay on top of a snapshot at `index`.
    pub(crate) fn bytes_after(&self, index: u64) -> u64 {
        let idx = read_lock(&self.index);
        let Some(m) = idx.meta(index + 1).copied() else {
            return if index < idx.first { idx.segments.iter().map(|s| s.bytes).sum() } else { 0 };
        };
        let at = m.segment - idx.removed_segments;
        let seg = &idx.segments[at];
        let mut bytes = seg.bytes.saturating_sub(m.offset - frame::FRAME_HEADER_LEN);
        bytes += idx.segments[at + 1..].iter().map(|s| s.bytes).sum::<u64>();
        bytes
    }

    /// Anchors a log to the snapshot whose last entry is `base`, with the EpochStarts the
    /// snapshot records: checks that the held entries continue it (the first held entry chains
    /// to `base`, or the held entry at `base.index` is `base`), then learns the base (when it is
    /// the entry just before the first held one) and every EpochStart the files no longer hold.
    /// Refuses a snapshot the log does not continue, and one past the tail (that needs
    /// [`Wal::reset`]).
    pub(crate) async fn anchor(&self, base: Base, marks: Vec<EpochMark>) -> Result<(), WalError> {
        self.call(|reply| Req::Anchor { base, marks, reply }).await.map(|_| ())
    }

    /// Replaces the whole log by an empty one that continues `base` (the last entry of an
    /// installed snapshot): every segment file is removed and one empty segment starting at
    /// `base.index + 1` is created (directory fsync'd). Refused while writable. For catch-up by
    /// snapshot only: the caller has checked that the snapshot's history extends this log.
    pub(crate) async fn reset(&self, base: Base, marks: Vec<EpochMark>) -> Result<u64, WalError> {
        self.call(|reply| Req::Reset { base, marks, reply }).await
    }

    /// Removes whole segments below the newest durable snapshot, oldest first, never the active
    /// one: a segment goes when its last entry is at or below `keep_for_peers` (every peer holds
    /// it), or when the segments still kept below the snapshot would otherwise exceed
    /// `retention_bytes` (a peer that far behind is served the snapshot). Returns the segment files
    /// removed (the files are unlinked and the directory fsync'd before it returns).
    pub(crate) fn compact(&self, keep_for_peers: u64, retention_bytes: u64) -> Result<Vec<PathBuf>, WalError> {
        let removed: Vec<Segment> = {
            let mut idx = write_lock(&self.index);
            let snapshot = idx.snapshot_index;
            // Segments wholly at or below the snapshot (the active one excluded).
            let below: Vec<(u64, u64)> = (0..idx.segments.len().saturating_sub(1))
                .map(|i| (idx.segment_last(i), idx.segments[i].bytes))
                .take_while(|(last, _)| *last <= snapshot && *last >= idx.segments[0].first_index)
                .collect();
            let mut kept_bytes: u64 = below.iter().map(|(_, b)| b).sum();
            let mut count = 0usize;
            for (last, bytes) in &below {
                if *last <= keep_for_peers || kept_bytes > retention_bytes {
                    kept_bytes -= bytes;
                    count += 1;
                } else {
                    break;
                }
            }
            if count == 0 {
                return Ok(Vec::new());
            }
            let new_first = idx.segments[count].first_index;
            let base = {
                let m = idx.meta(new_first - 1).copied();
                match m {
                    Some(m) => Base { index: new_first - 1, epoch: m.epoch, hash: m.hash, kind: Some(m.kind) },
                    None => return Ok(Vec::new()),
                }
            };
            let drop_metas = usize::try_from(new_first - idx.first).unwrap_or(0);
            idx.metas.drain(..drop_metas);
            idx.first = new_first;
            idx.base = Some(base);
            idx.removed_segments += count;
            idx.segments.drain(..count).collect()
        };
        let mut paths = Vec::new();
        for (n, seg) in removed.into_iter().enumerate() {
            if n == 1 {
                // A crash between two removals leaves a contiguous suffix of the log.
                crate::failpoint::hit("wal.compact.between_removals");
            }
            std::fs::remove_file(&seg.path).map_err(io(&seg.path))?;
            paths.push(seg.path);
        }
        crate::fsutil::fsync_dir(&self.dir).map_err(io(&self.dir))?;
        tracing::info!(
            segments = paths.len(),
            first_index = self.first_index(),
            "compacted the WAL below the newest snapshot"
        );
        Ok(paths)
    }
}

impl Writer {
    pub(super) fn anchor(&mut self, base: Base, marks: Vec<EpochMark>) -> Result<u64, WalError> {
        let mut idx = write_lock(&self.index);
        let last = idx.last_index();
        let refuse = |what: String| Err(WalError::Corrupt { path: self.dir.clone(), offset: 0, what });
        if base.index > last {
            return refuse(format!("snapshot at index {} is past the WAL's last index {last}", base.index));
        }
        if base.index + 1 < idx.first {
            return refuse(format!(
                "the WAL starts at index {} but the snapshot covers only up to {} (entries {}..={} are missing)",
                idx.first,
                base.index,
                base.index + 1,
                idx.first - 1
            ));
        }
        if base.index + 1 == idx.first {
            let chains = match idx.metas.first() {
                Some(_) => {
                    // The first held entry's prev_hash was taken as the chain's start on open.
                    idx.base.map(|b| b.hash).unwrap_or(self.first_prev_hash(&idx)?) == base.hash
                }
                None => true,
            };
            if !chains {
                return refuse(format!(
                    "entry {} does not chain to the snapshot's last entry {}",
                    idx.first, base.index
                ));
            }
            idx.base = Some(base);
        } else {
            let held = idx.meta(base.index).copied();
            if !held.is_some_and(|m| m.hash == base.hash && m.epoch == base.epoch) {
                return refuse(format!("entry {} in the WAL does not match the snapshot (hash or epoch)", base.index));
            }
            if idx.base.is_none() {
                let first_prev = self.first_prev_hash(&idx)?;
                let first = idx.first;
                let epoch = marks.iter().rev().find(|m| m.index < first).map(|m| m.epoch).unwrap_or(0);
                idx.base = Some(Base { index: first - 1, epoch, hash: first_prev, kind: None });
            }
        }
        merge_marks(&mut idx.marks, marks);
        idx.snapshot_index = idx.snapshot_index.max(base.index);
        if idx.metas.is_empty() {
            self.last_hash = base.hash;
            self.last_epoch = base.epoch;
        }
        Ok(last)
    }

    /// The prev_hash of the first held entry, read from disk.
    fn first_prev_hash(&self, idx: &Index) -> Result<Hash, WalError> {
        let Some(m) = idx.metas.first().copied() else { return Ok(ZERO_HASH) };
        let seg = idx.segment(m.segment);
        let mut buf = vec![0u8; m.len as usize];
        seg.file.read_exact_at(&mut buf, m.offset).map_err(io(&seg.path))?;
        let e = Entry::decode(&buf).map_err(|e| WalError::Corrupt {
            path: seg.path.clone(),
            offset: m.offset,
            what: e.to_string(),
        })?;
        Ok(e.prev_hash)
    }

    pub(super) fn reset(&mut self, base: Base, marks: Vec<EpochMark>) -> Result<u64, WalError> {
        let old: Vec<PathBuf> = read_lock(&self.index).segments.iter().map(|s| s.path.clone()).collect();
        // Old files first, then the new one: a crash in between leaves no segment (open starts an
        // empty log at 1, and the installed snapshot past it resets it again) or only the new one.
        for path in &old {
            std::fs::remove_file(path).map_err(io(path))?;
        }
        crate::fsutil::fsync_dir(&self.dir).map_err(io(&self.dir))?;
        crate::failpoint::hit("wal.reset.before_new_segment");
        let seg = create_segment(&self.dir, base.index + 1)?;
        self.active = OpenOptions::new().append(true).open(&seg.path).map_err(io(&seg.path))?;
        {
            let mut idx = write_lock(&self.index);
            idx.removed_segments += idx.segments.len();
            idx.segments = vec![seg];
            idx.metas.clear();
            idx.first = base.index + 1;
            idx.base = Some(base);
            idx.marks = marks;
            idx.snapshot_index = idx.snapshot_index.max(base.index);
        }
        self.next_index = base.index + 1;
        self.last_hash = base.hash;
        self.last_epoch = base.epoch;
        self.durable.send_replace(base.index);
        tracing::info!(
            removed_segments = old.len(),
            next_index = base.index + 1,
            "replaced the WAL by an installed snapshot"
        );
        Ok(base.index)
    }
}

/// Adds the EpochStarts a snapshot records to those the files hold (by index, in order).
fn merge_marks(into: &mut Vec<EpochMark>, from: Vec<EpochMark>) {
    for m in from {
        if !into.iter().any(|x| x.index == m.index) {
            into.push(m);
        }
    }
    into.sort_by_key(|m| m.index);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::entry::encode_put;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
    }

    fn base_of(wal: &Wal, index: u64) -> Base {
        let (epoch, hash) = wal.hash_at(index).expect("held");
        Base { index, epoch, hash, kind: wal.kind_at(index) }
    }

    #[test]
    fn compaction_removes_whole_segments_below_the_snapshot_and_reopen_continues_the_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal_dir = dir.path().join("wal");
        let q = dir.path().join("q");
        let (base, marks) = rt().block_on(async {
            let wal = Wal::open_with(&wal_dir, &q, 4096).expect("open");
            wal.start_epoch(1, "n1").await.expect("start");
            for i in 0..400u32 {
                wal.propose(1, Kind::Put, encode_put(format!("k{i}").as_bytes(), &[7u8; 40])).await.expect("put");
            }
            let segments = wal.segment_files().len();
            assert!(segments > 5, "{segments} segments");
            // Nothing goes without a snapshot.
            assert!(wal.compact(u64::MAX, 0).expect("compact").is_empty());
            wal.set_snapshot_index(300);
            // Peers at 100 and a large retention: only segments wholly at or below 100 go.
            let removed = wal.compact(100, u64::MAX).expect("compact");
            assert!(!removed.is_empty());
            let first = wal.first_index();
            assert!(first <= 101 && first > 1, "first {first}");
            // Retention 0: everything wholly below 300 goes whatever the peers hold.
            wal.compact(0, 0).expect("compact");
            let first = wal.first_index();
            assert!(first <= 301 && first > 101, "first {first}");
            assert_eq!(wal.hash_at(first - 1), Some((1, wal.base().expect("base").hash)));
            assert!(wal.entry(first - 1).expect("read").is_none(), "compacted entries are gone");
            assert_eq!(wal.entry(first).expect("read").expect("held").index, first);
            assert_eq!(wal.epoch_at(1), Some(1), "the epoch of a compacted entry is known from its EpochStart");
            assert_eq!(wal.last_epoch_start(), 1);
            // Entries a snapshot covers are never truncated.
            wal.set_writable(None).await.expect("seal");
            assert!(matches!(wal.truncate_after(299).await, Err(WalError::Refused(_))));
            (base_of(&wal, 300), wal.marks_upto(300))
        });
        rt().block_on(async {
            let wal = Wal::open_with(&wal_dir, &q, 4096).expect("reopen");
            assert!(!wal.is_anchored(), "a compacted log needs its snapshot");
            let wrong = Base { hash: [9; 32], ..base };
            assert!(wal.anchor(wrong, marks.clone()).await.is_err(), "a snapshot the log does not continue");
            wal.anchor(base, marks).await.expect("anchor");
            assert!(wal.is_anchored());
            assert_eq!(wal.tail().index, 401);
            assert_eq!(wal.snapshot_index(), 300);
            assert_eq!(wal.epoch_at(5), Some(1));
            assert_eq!(wal.last_epoch_start(), 1);
        });
    }

    #[test]
    fn reset_replaces_the_log_by_one_that_continues_the_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal_dir = dir.path().join("wal");
        let q = dir.path().join("q");
        let snap = Base { index: 500, epoch: 3, hash: [5; 32], kind: Some(Kind::Put) };
        let marks = vec![
            EpochMark { index: 1, epoch: 1, primary: "n1".into() },
            EpochMark { index: 200, epoch: 3, primary: "n2".into() },
        ];
        rt().block_on(async {
            let wal = Wal::open(&wal_dir, &q).expect("open");
            let e1 =
                Entry { index: 1, epoch: 1, prev_hash: ZERO_HASH, kind: Kind::EpochStart, payload: b"n1".to_vec() };
            wal.replicate(vec![e1]).await.expect("replicate");
            assert_eq!(wal.reset(snap, marks.clone()).await.expect("reset"), 500);
            assert_eq!(wal.tail(), Tail { index: 500, epoch: 3, hash: [5; 32], kind: Some(Kind::Put) });
            let next = Entry { index: 501, epoch: 3, prev_hash: [5; 32], kind: Kind::Delete, payload: b"a".to_vec() };
            assert_eq!(wal.replicate(vec![next]).await.expect("continue"), 501);
            assert_eq!(wal.epoch_at(150), Some(1));
            assert_eq!(wal.epoch_at(250), Some(3));
        });
        rt().block_on(async {
            let wal = Wal::open(&wal_dir, &q).expect("reopen");
            wal.anchor(snap, marks).await.expect("the reset log continues the snapshot");
            assert_eq!(wal.tail().index, 501);
            assert_eq!(wal.last_epoch_start(), 200);
        });
    }
}
