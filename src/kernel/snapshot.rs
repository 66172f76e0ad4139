//! Snapshots of the key-value state: written offline, used at recovery.
//!
//! `snapshots/snap-<last_index>/` holds `manifest` (one CRC frame of JSON: last index, its epoch
//! and hash, entry count, data CRC) and `data` (one CRC frame per key-value pair). A snapshot is
//! written into a temporary directory, fsync'd, renamed into place and the parent fsync'd, so a
//! crash leaves either no snapshot or a whole one. Recovery uses the newest snapshot whose CRCs
//! verify and whose last entry hash still matches the WAL, plus the WAL after it; a snapshot that
//! fails either check is skipped and named. The WAL is never shortened by a snapshot.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::entry::Hash;
use super::kv::Kv;
use super::wal::Wal;
use crate::frame;
use crate::proto::kernel as pb;

const MANIFEST_MAGIC: &[u8; 8] = b"AEROMAN1";
const DATA_MAGIC: &[u8; 8] = b"AEROSNP1";
/// Snapshots kept; older ones are removed after a new one is written.
pub const KEEP: usize = 3;

/// A restored map and the index it reflects.
pub type Restored = (BTreeMap<Vec<u8>, Vec<u8>>, u64);

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Manifest {
    version: u32,
    last_index: u64,
    last_epoch: u64,
    last_hash: String,
    entries: u64,
    data_bytes: u64,
    data_crc32c: u32,
}

fn name(last_index: u64) -> String {
    format!("snap-{last_index:020}")
}

fn read_manifest(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join("manifest");
    let mut r = frame::Reader::open(&path, MANIFEST_MAGIC, 1 << 16, false).map_err(|e| e.to_string())?;
    let (_, payload) = r.next_frame().map_err(|e| e.to_string())?.ok_or("manifest is empty")?;
    serde_json::from_slice(&payload).map_err(|e| format!("manifest: {e}"))
}

fn read_data(dir: &Path, m: &Manifest) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
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

/// Lists snapshots newest first, and restores the newest usable one. Never fails: a bad snapshot
/// is reported in the list (and the log) and skipped.
pub fn recover(dir: &Path, wal: &Wal) -> (Vec<pb::SnapshotInfo>, Option<Restored>) {
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("snap-")))
            .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
            .collect(),
        Err(_) => Vec::new(),
    };
    dirs.sort();
    dirs.reverse();
    let mut infos = Vec::new();
    let mut restored = None;
    for d in dirs {
        let label = d.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let bytes = std::fs::read_dir(&d)
            .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0);
        let check = read_manifest(&d).and_then(|m| {
            let matches = wal
                .hash_at(m.last_index)
                .is_some_and(|(epoch, hash)| epoch == m.last_epoch && hex::encode(hash) == m.last_hash);
            if !matches {
                return Err(format!("entry {} in the WAL does not match the snapshot (hash or epoch)", m.last_index));
            }
            Ok(m)
        });
        let mut info = pb::SnapshotInfo { name: label.clone(), bytes, ..Default::default() };
        match check {
            Ok(m) => {
                info.last_index = m.last_index;
                info.last_epoch = m.last_epoch;
                if restored.is_some() {
                    info.valid = true;
                } else {
                    match read_data(&d, &m) {
                        Ok(map) => {
                            info.valid = true;
                            info.used_at_recovery = true;
                            restored = Some((map, m.last_index));
                        }
                        Err(e) => info.error = e,
                    }
                }
            }
            Err(e) => info.error = e,
        }
        if !info.valid {
            tracing::warn!(snapshot = %label, error = %info.error, "skipped an unusable snapshot");
        }
        infos.push(info);
    }
    (infos, restored)
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
}

/// Writes a snapshot of `kv` (which must reflect exactly the entries up to `last_index`); its
/// directory is [`crate::fsutil::DIR_MODE`] and its files [`crate::fsutil::FILE_MODE`].
pub fn write(dir: &Path, kv: &Kv, last_index: u64, last_epoch: u64, last_hash: Hash) -> Result<PathBuf, SnapshotError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotError::Io { path: path.clone(), source }
    };
    crate::fsutil::create_dir_durable(dir).map_err(io(dir))?;
    let final_dir = dir.join(name(last_index));
    let tmp = dir.join(format!("{}.tmp", name(last_index)));
    let _ = std::fs::remove_dir_all(&tmp);
    crate::fsutil::create_dir_private(&tmp).map_err(io(&tmp))?;
    let mut data = frame::header(DATA_MAGIC, last_index).to_vec();
    for (k, v) in kv.map() {
        data.extend_from_slice(&frame::encode(&super::entry::encode_put(k, v)));
    }
    let manifest = Manifest {
        version: 1,
        last_index,
        last_epoch,
        last_hash: hex::encode(last_hash),
        entries: kv.map().len() as u64,
        data_bytes: data.len() as u64,
        data_crc32c: crc32c::crc32c(&data),
    };
    let data_path = tmp.join("data");
    let mut f = crate::fsutil::open_private(OpenOptions::new().write(true).create(true).truncate(true), &data_path)
        .map_err(io(&data_path))?;
    f.write_all(&data).map_err(io(&data_path))?;
    f.sync_all().map_err(io(&data_path))?;
    let manifest_path = tmp.join("manifest");
    let mut mbytes = frame::header(MANIFEST_MAGIC, last_index).to_vec();
    mbytes.extend_from_slice(&frame::encode(&serde_json::to_vec(&manifest).unwrap_or_default()));
    let mut f = crate::fsutil::open_private(OpenOptions::new().write(true).create(true).truncate(true), &manifest_path)
        .map_err(io(&manifest_path))?;
    f.write_all(&mbytes).map_err(io(&manifest_path))?;
    f.sync_all().map_err(io(&manifest_path))?;
    crate::fsutil::fsync_dir(&tmp).map_err(io(&tmp))?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
    crate::fsutil::fsync_dir(dir).map_err(io(dir))?;
    // Keep the newest few.
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("snap-")) && p.extension().is_none())
        .collect();
    all.sort();
    while all.len() > KEEP {
        let old = all.remove(0);
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(final_dir)
}

/// `aerodb node snapshot --data-dir D`: with the node stopped (the data dir lock is taken),
/// replays the newest usable snapshot plus the WAL and writes a snapshot at the WAL's last entry.
pub async fn take_offline(root: &Path) -> Result<PathBuf, Box<dyn std::error::Error + Send + Sync>> {
    let dd = super::node::DataDir { root: root.to_path_buf() };
    if !dd.ledger().exists() {
        return Err(Box::new(super::node::NodeError::NotInitialised(root.into())));
    }
    dd.check_private()?;
    let _lock = dd.acquire()?;
    let wal = Wal::open(&dd.wal(), &dd.quarantine())?;
    let (_, restored) = recover(&dd.snapshots(), &wal);
    let mut kv = match restored {
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
    Ok(write(&dd.snapshots(), &kv, tail.index, tail.epoch, tail.hash)?)
}
