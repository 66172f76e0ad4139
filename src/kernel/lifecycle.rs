//! The kernel's own checkpointing: online snapshots by a size rule, then WAL compaction.
//!
//! Not a command: no control-plane request starts it, and the closed command set does not grow
//! (P7-S3). The rule is internal and deterministic: when the WAL holds more than
//! `snapshot_wal_bytes` of entries after the newest snapshot, and the applied index has moved past
//! it, the node snapshots its applied state. The only work under the node's lock is cloning the
//! map (a pause proportional to the number of keys, measured in docs/performance.md); encoding,
//! writing, fsync and rename run on a blocking thread while writes go on. Then segments wholly
//! below the snapshot and below every peer's known position are removed, up to
//! `retention_wal_bytes` kept for lagging peers (a peer further behind is sent the snapshot).
//!
//! # Invariants
//! - A snapshot is durable (files, rename, directory fsync) before any segment it covers is
//!   removed, and the WAL's snapshot index moves only after that.
//! - A snapshot covers exactly the applied index it was cloned at (same lock).
//! - Snapshot writing, compaction and snapshot installation never run at once (one gate).

use std::sync::Arc;

use super::node::Node;
use super::wal::Base;
use crate::config::{ConfigError, range};

/// `[lifecycle]` of a node's configuration; each field has a default and a range, and an
/// out-of-range value is refused at load, never clamped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Lifecycle {
    /// A snapshot is taken once the WAL holds more than this many bytes after the newest
    /// snapshot. Default 67108864 (64 MiB), range 65536..=68719476736 (64 KiB..=64 GiB).
    pub snapshot_wal_bytes: u64,
    /// A WAL segment is closed beyond this many bytes (compaction removes whole segments).
    /// Default 16777216 (16 MiB), range 65536..=1073741824, and at most `snapshot_wal_bytes`.
    pub wal_segment_bytes: u64,
    /// WAL bytes below the newest snapshot kept for peers that have not pulled them yet; a peer
    /// further behind catches up from the snapshot. Default 268435456 (256 MiB), range
    /// 0..=1099511627776 (1 TiB).
    pub retention_wal_bytes: u64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self { snapshot_wal_bytes: 64 << 20, wal_segment_bytes: 16 << 20, retention_wal_bytes: 256 << 20 }
    }
}

impl Lifecycle {
    /// Checks every range (fields named `<prefix>.<field>`).
    pub(crate) fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        range(&format!("{prefix}.snapshot_wal_bytes"), self.snapshot_wal_bytes, 64 << 10, 64 << 30)?;
        range(&format!("{prefix}.wal_segment_bytes"), self.wal_segment_bytes, 64 << 10, 1 << 30)?;
        range(&format!("{prefix}.retention_wal_bytes"), self.retention_wal_bytes, 0, 1 << 40)?;
        if self.wal_segment_bytes > self.snapshot_wal_bytes {
            return Err(ConfigError::Invalid {
                field: format!("{prefix}.wal_segment_bytes"),
                why: format!(
                    "{} is above snapshot_wal_bytes {}: a segment must close before a snapshot is due, or \
                     compaction could not remove it",
                    self.wal_segment_bytes, self.snapshot_wal_bytes
                ),
            });
        }
        Ok(())
    }
}

/// Why an online snapshot was not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LifecycleError {
    /// Writing the snapshot failed (nothing was compacted).
    #[error(transparent)]
    Snapshot(#[from] super::snapshot::SnapshotError),
    /// Compaction failed.
    #[error(transparent)]
    Wal(#[from] super::wal::WalError),
    /// The entry at the applied index is not held (a bug: it is never compacted before a
    /// snapshot covers it).
    #[error("entry {0} (the applied index) is not in the WAL")]
    Missing(u64),
    /// A blocking task (snapshot writer, compaction) failed.
    #[error("lifecycle task: {0}")]
    Task(String),
}

impl Node {
    /// Takes snapshots and compacts the WAL by the rule in the module docs, until shutdown.
    pub(crate) async fn lifecycle_loop(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut applied = self.applied_watch();
        let idle = self.cfg.timing.status_interval();
        // Compaction is tried after each snapshot and once per status interval (a peer's position
        // may have moved), never per write: the check on each applied batch is the size rule only.
        let mut compact = true;
        loop {
            match self.snapshot_if_due().await {
                Ok(Some(_)) => compact = true,
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "online snapshot failed; the WAL is kept whole and it is tried again")
                }
            }
            if compact
                && self.wal.compactable()
                && let Err(e) = self.compact_wal().await
            {
                tracing::error!(error = %e, "WAL compaction failed");
            }
            compact = false;
            tokio::select! {
                r = applied.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(idle) => compact = true,
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Whether the size rule asks for a snapshot now.
    pub(crate) fn snapshot_due(&self) -> bool {
        let last = self.wal.snapshot_index();
        let applied = self.lock().kv.applied();
        applied > last && self.wal.bytes_after(last) > self.cfg.lifecycle.snapshot_wal_bytes
    }

    /// Writes a snapshot of the applied state when [`Node::snapshot_due`]; returns its index.
    pub(crate) async fn snapshot_if_due(&self) -> Result<Option<u64>, LifecycleError> {
        if !self.snapshot_due() {
            return Ok(None);
        }
        let _gate = self.snapshot_gate.lock().await;
        if !self.snapshot_due() {
            return Ok(None);
        }
        let since = crate::metrics::Stopwatch::start();
        // The pause: one clone of the map under the lock that applies entries.
        let (map, applied) = {
            let core = self.lock();
            (core.kv.map().clone(), core.kv.applied())
        };
        let pause_seconds = since.seconds();
        let (epoch, hash) = self.wal.hash_at(applied).ok_or(LifecycleError::Missing(applied))?;
        let base = Base { index: applied, epoch, hash, kind: self.wal.kind_at(applied) };
        let marks = self.wal.marks_upto(applied);
        let dir = self.dir.snapshots();
        let path = tokio::task::spawn_blocking(move || super::snapshot::write(&dir, &map, base, marks))
            .await
            .map_err(|e| LifecycleError::Task(e.to_string()))??;
        self.wal.set_snapshot_index(applied);
        self.note_snapshot(&path, applied, epoch);
        tracing::info!(
            snapshot = %path.display(), last_index = applied, pause_ms = pause_seconds * 1000.0,
            seconds = since.seconds(), "online snapshot written"
        );
        Ok(Some(applied))
    }

    /// Removes WAL segments by the rule in the module docs (file removal and the directory
    /// fsync on a blocking thread); returns how many.
    pub(crate) async fn compact_wal(self: &Arc<Self>) -> Result<usize, LifecycleError> {
        let _gate = self.snapshot_gate.lock().await;
        let keep_for_peers = {
            let core = self.lock();
            core.peers
                .values()
                .map(|p| p.durable.max(p.status.as_ref().map(|s| s.last_index).unwrap_or(0)))
                .min()
                .unwrap_or(u64::MAX)
        };
        let node = self.clone();
        let removed = tokio::task::spawn_blocking(move || {
            crate::failpoint::hit("lifecycle.before_compaction");
            node.wal.compact(keep_for_peers, node.cfg.lifecycle.retention_wal_bytes)
        })
        .await
        .map_err(|e| LifecycleError::Task(e.to_string()))??;
        Ok(removed.len())
    }

    /// Records a new durable snapshot in the observed list (newest first, [`super::snapshot::KEEP`]).
    pub(crate) fn note_snapshot(&self, path: &std::path::Path, last_index: u64, last_epoch: u64) {
        let info = crate::proto::kernel::SnapshotInfo {
            name: path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
            last_index,
            last_epoch,
            bytes: std::fs::read_dir(path)
                .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
                .unwrap_or(0),
            valid: true,
            error: String::new(),
            used_at_recovery: false,
        };
        let mut core = self.lock();
        core.snapshots.retain(|s| s.name != info.name);
        core.snapshots.insert(0, info);
        core.snapshots.truncate(super::snapshot::KEEP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_ranges_are_refused_never_clamped() {
        assert!(Lifecycle::default().validate("lifecycle").is_ok());
        for (bad, field) in [
            (Lifecycle { snapshot_wal_bytes: 1000, ..Default::default() }, "lifecycle.snapshot_wal_bytes"),
            (Lifecycle { wal_segment_bytes: 1000, ..Default::default() }, "lifecycle.wal_segment_bytes"),
            (Lifecycle { retention_wal_bytes: (1 << 40) + 1, ..Default::default() }, "lifecycle.retention_wal_bytes"),
            (
                Lifecycle { snapshot_wal_bytes: 1 << 20, wal_segment_bytes: 2 << 20, ..Default::default() },
                "lifecycle.wal_segment_bytes",
            ),
        ] {
            match bad.validate("lifecycle") {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
