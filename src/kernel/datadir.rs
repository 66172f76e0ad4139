//! A node's data directory: its paths, its privacy check, its lock, and `aerodb node init`.

use std::path::{Path, PathBuf};

use super::ledger::Ledger;
use super::node::NodeError;
use super::records::LedgerEvent;
use super::wal::Wal;

/// Paths inside a data dir.
#[derive(Debug, Clone)]
pub(crate) struct DataDir {
    /// The root.
    pub(crate) root: PathBuf,
}

impl DataDir {
    /// The ledger.
    pub(crate) fn ledger(&self) -> PathBuf {
        self.root.join("control.log")
    }
    /// Keys promised to other nodes (see `kernel::claims`).
    pub(crate) fn claims(&self) -> PathBuf {
        self.root.join("claims.log")
    }
    /// WAL segments.
    pub(crate) fn wal(&self) -> PathBuf {
        self.root.join("wal")
    }
    /// Snapshots.
    pub(crate) fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    /// Copies of truncated or discarded bytes.
    pub(crate) fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine")
    }
    /// The lock file.
    pub(crate) fn lock(&self) -> PathBuf {
        self.root.join("LOCK")
    }

    /// Refuses a data dir whose root, `wal/`, `snapshots/` or `quarantine/` group or others can
    /// access, naming the directory and the fix; the ones not created yet pass.
    pub(crate) fn check_private(&self) -> Result<(), NodeError> {
        for dir in [self.root.clone(), self.wal(), self.snapshots(), self.quarantine()] {
            crate::fsutil::check_private_dir(&dir)?;
        }
        Ok(())
    }

    /// Takes the data dir's exclusive lock for the life of the returned file (created
    /// [`crate::fsutil::FILE_MODE`]).
    pub(crate) fn acquire(&self) -> Result<std::fs::File, NodeError> {
        /// Tries of a busy lock, 10 ms apart, before the start is refused (2 s).
        const LOCK_WAIT_TRIES: u32 = 200;
        let path = self.lock();
        let f =
            crate::fsutil::open_private(std::fs::OpenOptions::new().create(true).truncate(false).write(true), &path)
                .map_err(|source| NodeError::Io { path: path.clone(), source })?;
        // A lock that is busy is asked for again for up to LOCK_WAIT_TRIES × 10 ms before the
        // start is refused. Another `aerodb node` on the directory holds it for as long as it
        // runs and is still refused; what the wait absorbs is a lock that is about to be released:
        // a process that forked (to spawn anything) while it held the lock briefly keeps a copy
        // of the descriptor until its child execs, and a process that just exited may not have
        // closed its descriptors yet.
        for _ in 0..LOCK_WAIT_TRIES {
            match f.try_lock() {
                Ok(()) => return Ok(f),
                Err(std::fs::TryLockError::WouldBlock) => std::thread::sleep(std::time::Duration::from_millis(10)),
                Err(std::fs::TryLockError::Error(source)) => return Err(NodeError::Io { path, source }),
            }
        }
        Err(NodeError::Locked(self.root.clone()))
    }
}

/// `aerodb node init`: creates the data dir (private: see [`crate::fsutil`]) with its Genesis
/// record (and, for the genesis primary, `EpochStart(1)` at index 1). Refuses an existing
/// directory that group or others can access.
pub async fn init(root: &Path, cluster_id: &str, node_id: &str, primary: bool) -> Result<(), NodeError> {
    let dd = DataDir { root: root.to_path_buf() };
    crate::fsutil::create_dir_durable(root).map_err(|source| NodeError::Io { path: root.into(), source })?;
    dd.check_private()?;
    let _lock = dd.acquire()?;
    if dd.ledger().exists() {
        return Err(NodeError::AlreadyInitialised(root.into()));
    }
    let wal = Wal::open(&dd.wal(), &dd.quarantine())?;
    if primary {
        wal.start_epoch(1, node_id).await?;
        wal.set_writable(None).await?;
    }
    let mut ledger = Ledger::create(&dd.ledger())?;
    ledger.append(LedgerEvent::Genesis { cluster_id: cluster_id.into(), node_id: node_id.into(), primary })?;
    Ok(())
}
