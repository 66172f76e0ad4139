//! Catch-up by snapshot: `Replication.FetchSnapshot` on the serving side, fetch, verification
//! and installation on the follower's.
//!
//! A follower whose next entry the serving node has compacted is told `SnapshotNeeded` by Pull
//! (only when its log is a prefix of the serving node's history: see `handle_pull`). It streams
//! the snapshot into `snapshots/incoming.tmp/`: the manifest first, then data chunks, each
//! checked (offset in order, at most [`CHUNK_BYTES_MAX`], CRC32C) as it arrives; at the end the
//! whole data file is checked against the manifest (size, CRC32C, every frame and pair, the pair
//! count) and fsync'd. Anything wrong discards the directory; the next pull starts from scratch.
//!
//! # Invariants
//! - Nothing is installed before the whole snapshot verified: the node's state and WAL are
//!   untouched by a refused or cut transfer.
//! - Installation is ordered for crashes: the verified snapshot is renamed into `snapshots/` and
//!   the directory fsync'd (from then on recovery uses it), then the WAL is replaced by an empty
//!   one continuing the snapshot (`crate::kernel::wal::Wal::reset`), then the state machine is
//!   swapped under the node's lock. A crash between the first two steps is finished by recovery
//!   (a snapshot past the WAL's end resets the WAL).
//! - A snapshot is installed only by a follower (never a primary, never during its own
//!   promotion), only from a node serving an epoch at or above its follow floor, and only past
//!   its own tail; the append gate is held, so no grant is decided on a log that is changing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::authority::Role;
use super::kv::Kv;
use super::node::Node;
use super::snapshot::{self, MANIFEST_BYTES_MAX, Manifest};
use crate::proto::kernel as pb;

/// Bytes of snapshot data in one chunk at most.
pub const CHUNK_BYTES_MAX: usize = 1 << 20;
/// Chunks buffered between the file reader and the stream.
const CHUNKS_IN_FLIGHT: usize = 4;
/// The directory a transfer is received into.
pub(crate) const INCOMING: &str = "incoming.tmp";

/// Why a transfer was refused (nothing was installed).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransferError {
    /// The serving node refused or the stream broke.
    #[error("stream from {peer}: {status}")]
    Stream {
        /// The serving peer.
        peer: String,
        /// The status.
        status: Status,
    },
    /// No message within the peer call timeout.
    #[error("stream from {peer}: no chunk within {timeout_ms} ms")]
    Timeout {
        /// The serving peer.
        peer: String,
        /// The bound.
        timeout_ms: u64,
    },
    /// The snapshot failed a check.
    #[error("snapshot from {peer} refused: {what}")]
    Invalid {
        /// The serving peer.
        peer: String,
        /// Which check.
        what: String,
    },
    /// Local I/O.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Writing or publishing the snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    /// Resetting the WAL failed.
    #[error(transparent)]
    Wal(#[from] super::wal::WalError),
}

/// A transfer that verified, waiting to be installed.
struct Verified {
    manifest: Manifest,
    map: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    tmp: PathBuf,
}

impl Node {
    /// Replication.FetchSnapshot: streams the newest snapshot if it is the one asked for.
    pub(crate) async fn handle_fetch_snapshot(
        &self,
        req: pb::FetchSnapshotRequest,
    ) -> Result<ReceiverStream<Result<pb::SnapshotChunk, Status>>, Status> {
        if req.cluster_id != self.cfg.cluster_id {
            return Err(Status::failed_precondition(format!(
                "cluster id {:?} is not this node's cluster {:?}",
                req.cluster_id, self.cfg.cluster_id
            )));
        }
        if !self.cfg.peers().any(|m| m.id == req.follower_id) {
            return Err(Status::invalid_argument(format!("follower {:?} is not a member", req.follower_id)));
        }
        let newest = self.wal.snapshot_index();
        if newest == 0 || req.last_index != newest {
            return Err(Status::failed_precondition(format!(
                "this node's newest snapshot is at index {newest}, not {}; pull again",
                req.last_index
            )));
        }
        let dir = self.dir.snapshots().join(snapshot::name(newest));
        // Both files are opened now: a newer snapshot may remove this directory while it streams.
        let open = |name: &str| {
            let path = dir.join(name);
            std::fs::File::open(&path).map_err(|e| Status::new(Code::Unavailable, format!("{}: {e}", path.display())))
        };
        let manifest_file = open("manifest")?;
        let data_file = open("data")?;
        let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
        let follower = req.follower_id.clone();
        tokio::task::spawn_blocking(move || stream_files(manifest_file, data_file, &tx, &follower));
        Ok(ReceiverStream::new(rx))
    }

    /// Fetches, verifies and installs the snapshot a Pull from peer `i` (serving `epoch`) said
    /// is needed. False when nothing was installed (the follower backs off and pulls again).
    pub(crate) async fn catch_up_by_snapshot(&self, i: usize, needed: pb::SnapshotNeeded, epoch: u64) -> bool {
        let peer = self.peers[i].0.clone();
        if needed.last_index <= self.wal.tail().index {
            tracing::warn!(peer = %peer, snapshot = needed.last_index, "told to fetch a snapshot this log already passes");
            return false;
        }
        tracing::info!(peer = %peer, snapshot = needed.last_index, "catching up by snapshot");
        let verified = match self.fetch_snapshot(i, &needed).await {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_dir_all(self.dir.snapshots().join(INCOMING));
                tracing::warn!(peer = %peer, error = %e, "snapshot transfer refused: nothing installed; it starts again from scratch");
                return false;
            }
        };
        match self.install(verified, epoch).await {
            Ok(installed) => installed,
            Err(e) => {
                // A failure after the WAL was touched leaves the node in a state recovery must
                // decide; stop rather than serve from it.
                tracing::error!(error = %e, "snapshot installation failed; stopping the node (recovery will decide from disk)");
                std::process::abort();
            }
        }
    }

    async fn fetch_snapshot(&self, i: usize, needed: &pb::SnapshotNeeded) -> Result<Verified, TransferError> {
        let (peer, client) = &self.peers[i];
        let invalid = |what: String| TransferError::Invalid { peer: peer.clone(), what };
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TransferError::Io { path, source }
        };
        let snapshots = self.dir.snapshots();
        crate::fsutil::create_dir_durable(&snapshots).map_err(io(&snapshots))?;
        let tmp = snapshots.join(INCOMING);
        let _ = std::fs::remove_dir_all(&tmp);
        crate::fsutil::create_dir_private(&tmp).map_err(io(&tmp))?;
        let timeout = chunk_timeout(self.cfg.timing.peer_call_timeout());
        let timed_out = || TransferError::Timeout { peer: peer.clone(), timeout_ms: timeout.as_millis() as u64 };
        let stream_err = |status| TransferError::Stream { peer: peer.clone(), status };
        let req = pb::FetchSnapshotRequest {
            cluster_id: self.cfg.cluster_id.clone(),
            follower_id: self.cfg.node_id.clone(),
            last_index: needed.last_index,
        };
        let mut client = client.clone();
        let mut stream = tokio::time::timeout(timeout, client.fetch_snapshot(req))
            .await
            .map_err(|_| timed_out())?
            .map_err(stream_err)?
            .into_inner();
        let mut next = async || -> Result<Option<pb::SnapshotChunk>, TransferError> {
            match tokio::time::timeout(timeout, stream.next()).await {
                Err(_) => Err(timed_out()),
                Ok(None) => Ok(None),
                Ok(Some(r)) => r.map(Some).map_err(stream_err),
            }
        };
        let first = next().await?.ok_or_else(|| invalid("the stream ended before the manifest".into()))?;
        if first.manifest.is_empty() || first.manifest.len() > MANIFEST_BYTES_MAX as usize {
            return Err(invalid(format!("manifest of {} bytes (1..={MANIFEST_BYTES_MAX})", first.manifest.len())));
        }
        snapshot::write_file(&tmp.join("manifest"), &first.manifest)?;
        let manifest = snapshot::read_manifest(&tmp).map_err(invalid)?;
        if manifest.last_index != needed.last_index || manifest.last_epoch != needed.last_epoch {
            return Err(invalid(format!(
                "manifest is for index {} epoch {}, Pull announced index {} epoch {}",
                manifest.last_index, manifest.last_epoch, needed.last_index, needed.last_epoch
            )));
        }
        let data_path = tmp.join("data");
        let mut data = crate::fsutil::open_private(
            std::fs::OpenOptions::new().write(true).create(true).truncate(true),
            &data_path,
        )
        .map_err(io(&data_path))?;
        let mut written = 0u64;
        while let Some(chunk) = next().await? {
            if chunk.offset != written {
                return Err(invalid(format!("chunk at offset {} where {written} was expected", chunk.offset)));
            }
            if chunk.data.len() > CHUNK_BYTES_MAX || chunk.data.is_empty() {
                return Err(invalid(format!("chunk of {} bytes (1..={CHUNK_BYTES_MAX})", chunk.data.len())));
            }
            if crc32c::crc32c(&chunk.data) != chunk.crc32c {
                return Err(invalid(format!("chunk at offset {written}: CRC32C does not match")));
            }
            if written + chunk.data.len() as u64 > manifest.data_bytes {
                return Err(invalid(format!("more data than the manifest's {} bytes", manifest.data_bytes)));
            }
            data.write_all(&chunk.data).map_err(io(&data_path))?;
            written += chunk.data.len() as u64;
            crate::failpoint::hit_async("snapshot.fetch.after_chunk").await;
        }
        if written != manifest.data_bytes {
            return Err(invalid(format!("stream ended after {written} of {} data bytes", manifest.data_bytes)));
        }
        data.sync_all().map_err(io(&data_path))?;
        drop(data);
        let (manifest, map, tmp) = tokio::task::spawn_blocking(move || {
            let map = snapshot::read_data(&tmp, &manifest)?;
            crate::fsutil::fsync_dir(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
            Ok::<_, String>((manifest, map, tmp))
        })
        .await
        .map_err(|e| invalid(format!("verification task: {e}")))?
        .map_err(invalid)?;
        Ok(Verified { manifest, map, tmp })
    }

    /// Installs a verified snapshot (see the module invariants). Ok(false) when the node may no
    /// longer install it (it was promoted, or learned a newer epoch, or its log passed it).
    async fn install(&self, v: Verified, epoch: u64) -> Result<bool, TransferError> {
        let _snapshot = self.snapshot_gate.lock().await;
        let _gate = self.append_gate.lock().await;
        let refused = {
            let core = self.lock();
            matches!(core.authority.role, Role::Primary { .. } | Role::Halted { .. })
                || core.candidacy.is_running()
                || epoch < self.follow_floor(&core)
        };
        let last_index = v.manifest.last_index;
        if refused || self.wal.tail().index >= last_index {
            let _ = std::fs::remove_dir_all(&v.tmp);
            return Ok(false);
        }
        let base = v
            .manifest
            .base()
            .ok_or_else(|| TransferError::Invalid { peer: String::new(), what: "manifest hash".into() })?;
        let dir = self.dir.snapshots();
        let tmp = v.tmp.clone();
        let path = tokio::task::spawn_blocking(move || snapshot::publish(&dir, &tmp, last_index))
            .await
            .map_err(|e| TransferError::Io { path: v.tmp.clone(), source: std::io::Error::other(e.to_string()) })??;
        crate::failpoint::hit_async("snapshot.install.before_wal_reset").await;
        self.wal.reset(base, v.manifest.epoch_starts.clone()).await?;
        {
            let mut core = self.lock();
            self.replace_state(&mut core, Kv::from_parts(v.map, last_index));
        }
        self.note_snapshot(&path, last_index, base.epoch);
        tracing::info!(snapshot = %path.display(), last_index, "installed a snapshot; pulling the WAL after it");
        Ok(true)
    }
}

/// Sends the manifest, then the data in chunks, on a blocking thread.
fn stream_files(
    manifest: std::fs::File,
    data: std::fs::File,
    tx: &tokio::sync::mpsc::Sender<Result<pb::SnapshotChunk, Status>>,
    follower: &str,
) {
    use std::io::Read;
    use std::os::unix::fs::FileExt;
    let mut bytes = Vec::new();
    if let Err(e) = manifest.take(u64::from(MANIFEST_BYTES_MAX) + 1).read_to_end(&mut bytes) {
        let _ = tx.blocking_send(Err(Status::unavailable(format!("manifest: {e}"))));
        return;
    }
    if tx.blocking_send(Ok(pb::SnapshotChunk { manifest: bytes, ..Default::default() })).is_err() {
        return;
    }
    // Test builds can damage one transfer: a flipped byte whose chunk CRC is recomputed (only the
    // whole-file check can catch it), or a stream cut after half of its first chunk.
    let flip = crate::failpoint::armed("snapshot.serve.flip_byte");
    let cut = crate::failpoint::armed("snapshot.serve.cut");
    let mut offset = 0u64;
    let mut buf = vec![0u8; CHUNK_BYTES_MAX];
    loop {
        let n = match data.read_at(&mut buf, offset) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                let _ = tx.blocking_send(Err(Status::unavailable(format!("snapshot data: {e}"))));
                return;
            }
        };
        let mut chunk = buf[..if cut { n / 2 } else { n }].to_vec();
        if flip && offset == 0 {
            let at = chunk.len() / 2;
            chunk[at] ^= 0x40;
        }
        let crc32c = crc32c::crc32c(&chunk);
        if tx.blocking_send(Ok(pb::SnapshotChunk { manifest: Vec::new(), offset, data: chunk, crc32c })).is_err() {
            tracing::info!(follower, offset, "snapshot stream closed by the follower");
            return;
        }
        offset += n as u64;
        if cut {
            return;
        }
    }
}

/// How long a follower waits for each message of a transfer: five peer call timeouts (a whole
/// transfer has no fixed bound; it is as long as its chunks keep arriving).
pub(crate) fn chunk_timeout(peer_call_timeout: Duration) -> Duration {
    peer_call_timeout * 5
}
