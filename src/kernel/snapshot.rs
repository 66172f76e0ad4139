//! Snapshots of the key-value state: their format, writing them, and choosing one at recovery.
//!
//! `snapshots/snap-<last_index>/` holds `manifest` (one CRC frame of JSON: last index, its epoch,
//! hash and kind, the EpochStarts up to it, pair count, data size and CRC32C) and `data` (one CRC
//! frame per key-value pair). A snapshot is written into a temporary directory, fsync'd, renamed
//! into place and the parent fsync'd, so a crash leaves either no snapshot or a whole one.
//!
//! # Invariants
//! - A snapshot holds the state after applying exactly the entries up to its last index, and
//!   that index is committed (snapshots are taken at the applied index, which never passes the
//!   commit index, or installed from a primary's snapshot of the same kind).
//! - Recovery uses the newest snapshot whose CRCs verify and that the WAL continues (the first
//!   held entry chains to its last entry, or the WAL holds its last entry with the same hash and
//!   epoch), then the WAL after it. A snapshot past the WAL's end is one a catch-up installed
//!   before its WAL reset: the WAL is reset to continue it. A WAL that starts after index 1 with
//!   no usable snapshot covering the gap refuses to start, naming both.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::entry::{Hash, Kind};
use super::kv::Kv;
use super::wal::{Base, EpochMark, Wal};
use crate::frame;
use crate::proto::kernel as pb;

/// Magic of a manifest file.
pub(crate) const MANIFEST_MAGIC: &[u8; 8] = b"AEROMAN1";
/// Magic of a data file.
pub(crate) const DATA_MAGIC: &[u8; 8] = b"AEROSNP1";
/// Bytes a manifest may have (the EpochStart list included).
pub(crate) const MANIFEST_BYTES_MAX: u32 = 1 << 20;
/// Snapshots kept; older ones are removed after a new one is written or installed.
pub(crate) const KEEP: usize = 3;
/// The manifest version written.
pub(crate) const VERSION: u32 = 2;

/// A restored map and the index it reflects.
pub(crate) type Restored = (BTreeMap<Vec<u8>, Vec<u8>>, u64);

/// A snapshot's manifest (JSON inside one CRC frame).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// 1 (no kind, no EpochStarts: written before compaction existed) or 2.
    pub version: u32,
    /// The last entry the state reflects.
    pub last_index: u64,
    /// Its epoch.
    pub last_epoch: u64,
    /// Its hash (hex).
    pub last_hash: String,
    /// Its kind (version 2).
    #[serde(default)]
    pub last_kind: Option<Kind>,
    /// Every EpochStart at or before `last_index` (version 2).
    #[serde(default)]
    pub epoch_starts: Vec<EpochMark>,
    /// Key-value pairs in `data`.
    pub entries: u64,
    /// Size of `data`.
    pub data_bytes: u64,
    /// CRC32C of `data`.
    pub data_crc32c: u32,
}

impl Manifest {
    /// The WAL base this snapshot ends at; `None` when the hash is not 32 hex bytes.
    pub(crate) fn base(&self) -> Option<Base> {
        let hash: Hash = hex::decode(&self.last_hash).ok()?.try_into().ok()?;
        Some(Base { index: self.last_index, epoch: self.last_epoch, hash, kind: self.last_kind })
    }
}

/// The directory name of the snapshot at `last_index`.
pub(crate) fn name(last_index: u64) -> String {
    format!("snap-{last_index:020}")
}

/// Reads and checks a snapshot directory's manifest.
pub fn read_manifest(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join("manifest");
    let mut r = frame::Reader::open(&path, MANIFEST_MAGIC, MANIFEST_BYTES_MAX, false).map_err(|e| e.to_string())?;
    let (_, payload) = r.next_frame().map_err(|e| e.to_string())?.ok_or("manifest is empty")?;
    let m: Manifest = serde_json::from_slice(&payload).map_err(|e| format!("{}: {e}", path.display()))?;
    if m.base().is_none() {
        return Err(format!("{}: last_hash is not 32 hex bytes", path.display()));
    }
    if r.base != m.last_index {
        return Err(format!("{}: header index {} is not last_index {}", path.display(), r.base, m.last_index));
    }
    Ok(m)
}

/// Reads a snapshot directory's data, checking size and CRC32C against the manifest, every
/// frame, every pair, and the pair count.
pub fn read_data(dir: &Path, m: &Manifest) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let path = dir.join("data");
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 != m.data_bytes || crc32c::crc32c(&bytes) != m.data_crc32c {
        return Err(format!("{}: size or CRC32C does not match the manifest", path.display()));
    }
    let mut r = frame::Reader::open(&path, DATA_MAGIC, 1 << 20, false).map_err(|e| e.to_string())?;
    let mut map = BTreeMap::new();
    while let Some((offset, payload)) = r.next_frame().map_err(|e| e.to_string())? {
        let (k, v) = super::entry::decode_put(&payload)
            .ok_or_else(|| format!("{}: malformed pair at byte offset {offset}", path.display()))?;
        map.insert(k.to_vec(), v.to_vec());
    }
    if map.len() as u64 != m.entries {
        return Err(format!("{}: {} pairs, manifest says {}", path.display(), map.len(), m.entries));
    }
    Ok(map)
}

/// Snapshot directories, newest first (temporary ones excluded).
pub fn list(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("snap-")))
            .filter(|p| p.extension().is_none())
            .collect(),
        Err(_) => Vec::new(),
    };
    dirs.sort();
    dirs.reverse();
    dirs
}

fn dir_bytes(d: &Path) -> u64 {
    std::fs::read_dir(d)
        .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

/// What recovery found.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// Every snapshot directory, newest first, with its verdict.
    pub(crate) infos: Vec<pb::SnapshotInfo>,
    /// The state of the snapshot used, and its last index.
    pub(crate) restored: Option<Restored>,
}

/// Chooses the newest usable snapshot (see the module invariants), anchors the WAL to it (or
/// resets the WAL to continue it, when it lies past the WAL's end) and returns its state. A bad
/// snapshot is reported in the list (and the log) and skipped; a WAL that nothing anchors is an
/// error naming the gap.
pub(crate) async fn recover(dir: &Path, wal: &Wal) -> Result<Recovered, String> {
    // A snapshot being written or received when the process stopped is never used: remove it.
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.filter_map(|e| e.ok()) {
            if e.path().extension().is_some_and(|x| x == "tmp") {
                tracing::info!(dir = %e.path().display(), "removed an unfinished snapshot");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let mut out = Recovered::default();
    for d in list(dir) {
        let label = d.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let mut info = pb::SnapshotInfo { name: label.clone(), bytes: dir_bytes(&d), ..Default::default() };
        let manifest = read_manifest(&d);
        if let Ok(m) = &manifest {
            info.last_index = m.last_index;
            info.last_epoch = m.last_epoch;
        }
        if out.restored.is_some() {
            // Older than the one used: its manifest verified, its data not read.
            match manifest {
                Ok(_) => info.valid = true,
                Err(e) => info.error = e,
            }
            out.infos.push(info);
            continue;
        }
        let chosen = async {
            let m = manifest?;
            let base = m.base().ok_or("last_hash is not 32 hex bytes")?;
            let map = read_data(&d, &m)?;
            if m.last_index > wal.tail().index {
                wal.reset(base, m.epoch_starts.clone()).await.map_err(|e| e.to_string())?;
                tracing::warn!(snapshot = %label, "the WAL ends before an installed snapshot: reset to continue it");
            } else {
                wal.anchor(base, m.epoch_starts.clone()).await.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>((map, m.last_index))
        }
        .await;
        match chosen {
            Ok(restored) => {
                info.valid = true;
                info.used_at_recovery = true;
                out.restored = Some(restored);
            }
            Err(e) => {
                tracing::warn!(snapshot = %label, error = %e, "skipped an unusable snapshot");
                info.error = e;
            }
        }
        out.infos.push(info);
    }
    if !wal.is_anchored() {
        let first = wal.first_index();
        return Err(format!(
            "the WAL starts at index {first} (compacted) and no usable snapshot covers index {}: {}",
            first - 1,
            out.infos.iter().map(|i| format!("{}: {}", i.name, i.error)).collect::<Vec<_>>().join("; ")
        ));
    }
    Ok(out)
}

/// Why a snapshot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
    /// Reading the WAL failed.
    #[error(transparent)]
    Wal(#[from] super::wal::WalError),
    /// Nothing to snapshot.
    #[error("the WAL is empty; nothing to snapshot")]
    Empty,
    /// Recovery found no usable starting point.
    #[error("{0}")]
    Recovery(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io { path: path.to_path_buf(), source }
}

/// Writes a snapshot of `map` (which must reflect exactly the entries up to `base.index`) with
/// the EpochStarts `marks`; its directory is [`crate::fsutil::DIR_MODE`] and its files
/// [`crate::fsutil::FILE_MODE`]. Keeps the newest `KEEP` snapshots. Blocking: call it off the
/// async runtime.
pub fn write(
    dir: &Path,
    map: &BTreeMap<Vec<u8>, Vec<u8>>,
    base: Base,
    marks: Vec<EpochMark>,
) -> Result<PathBuf, SnapshotError> {
    crate::fsutil::create_dir_durable(dir).map_err(io_err(dir))?;
    let last_index = base.index;
    let tmp = dir.join(format!("{}.tmp", name(last_index)));
    let _ = std::fs::remove_dir_all(&tmp);
    crate::fsutil::create_dir_private(&tmp).map_err(io_err(&tmp))?;
    let mut data = frame::header(DATA_MAGIC, last_index).to_vec();
    for (k, v) in map {
        data.extend_from_slice(&frame::encode(&super::entry::encode_put(k, v)));
    }
    let manifest = Manifest {
        version: VERSION,
        last_index,
        last_epoch: base.epoch,
        last_hash: hex::encode(base.hash),
        last_kind: base.kind,
        epoch_starts: marks,
        entries: map.len() as u64,
        data_bytes: data.len() as u64,
        data_crc32c: crc32c::crc32c(&data),
    };
    write_file(&tmp.join("data"), &data)?;
    crate::failpoint::hit("snapshot.write.after_data");
    let mut mbytes = frame::header(MANIFEST_MAGIC, last_index).to_vec();
    mbytes.extend_from_slice(&frame::encode(&serde_json::to_vec(&manifest).unwrap_or_default()));
    write_file(&tmp.join("manifest"), &mbytes)?;
    crate::fsutil::fsync_dir(&tmp).map_err(io_err(&tmp))?;
    crate::failpoint::hit("snapshot.write.before_rename");
    publish(dir, &tmp, last_index)
}

/// Writes and fsyncs one private file.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let mut f = crate::fsutil::open_private(OpenOptions::new().write(true).create(true).truncate(true), path)
        .map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Renames a complete, fsync'd temporary snapshot directory into place, fsyncs the parent, and
/// removes all but the newest `KEEP`.
pub(crate) fn publish(dir: &Path, tmp: &Path, last_index: u64) -> Result<PathBuf, SnapshotError> {
    let final_dir = dir.join(name(last_index));
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io_err(&final_dir))?;
    }
    std::fs::rename(tmp, &final_dir).map_err(io_err(&final_dir))?;
    crate::fsutil::fsync_dir(dir).map_err(io_err(dir))?;
    for old in list(dir).into_iter().skip(KEEP) {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(final_dir)
}

/// `aerodb node snapshot --data-dir D`: with the node stopped (the data dir lock is taken),
/// replays the newest usable snapshot plus the WAL and writes a snapshot at the WAL's last entry.
pub(crate) async fn take_offline(root: &Path) -> Result<PathBuf, Box<dyn std::error::Error + Send + Sync>> {
    let dd = super::node::DataDir { root: root.to_path_buf() };
    if !dd.ledger().exists() {
        return Err(Box::new(super::node::NodeError::NotInitialised(root.into())));
    }
    dd.check_private()?;
    let _lock = dd.acquire()?;
    let wal = Wal::open(&dd.wal(), &dd.quarantine())?;
    let recovered = recover(&dd.snapshots(), &wal).await.map_err(SnapshotError::Recovery)?;
    let mut kv = match recovered.restored {
        Some((map, applied)) => Kv::from_parts(map, applied),
        None => Kv::default(),
    };
    let tail = wal.tail();
    if tail.index == 0 {
        return Err(Box::new(SnapshotError::Empty));
    }
    for i in kv.applied() + 1..=tail.index {
        if let Some(e) = wal.entry(i)? {
            kv.apply(&e);
        }
    }
    let base = Base { index: tail.index, epoch: tail.epoch, hash: tail.hash, kind: tail.kind };
    let marks = wal.marks_upto(tail.index);
    Ok(tokio::task::spawn_blocking({
        let dir = dd.snapshots();
        move || write(&dir, kv.map(), base, marks)
    })
    .await
    .map_err(|e| Box::new(std::io::Error::other(e.to_string())))??)
}
