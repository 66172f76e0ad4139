//! One AeroDB node: recovery, the state under its lock, commit tracking, apply, observation.
//!
//! # Shared state
//! Authority, ledger, key-value map, commit and peer positions live in one `Core` behind one
//! `std::sync::Mutex`: every authority decision and every ledger append happens under it, so an
//! observation taken under it is one consistent snapshot, and the sequence check of `Execute` is
//! made under the same lock that records the decision. Critical sections are short; the only
//! blocking work under the lock is a ledger fsync (rare: grants, decisions, halts). WAL writes
//! happen on the WAL's own thread, and `claims.log` appends under its own lock
//! (`Node::claims_log`), never under this one.
//!
//! # Lock order
//! `exec` → `snapshot_gate` → `append_gate` → `core`: a lock is only ever taken while holding
//! locks to its left (diagnostics, run under `exec`, take `snapshot_gate`; installing a snapshot
//! takes `append_gate` under `snapshot_gate`). The three gates are async and `core` is a
//! `std::sync::Mutex` never held across an `.await`. `claims_log` is taken with no other lock
//! held, and nothing is taken while it is held (see `kernel::claims`).
//!
//! # Invariants
//! - The commit index only grows, never passes this node's durable index, and (on a primary) only
//!   moves once the current epoch's EpochStart is on a majority.
//! - The applied index never passes the commit index except after recovery from a snapshot.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tonic::transport::Channel;

use super::authority::{Authority, FoldError, Role};
use super::config::NodeConfig;
use super::entry::Kind;
use super::kv::Kv;
use super::ledger::{Ledger, LedgerError};
use super::records::{HaltReason, LedgerEvent};
use super::snapshot;
use super::wal::{Wal, WalError};
use crate::proto::kernel as pb;
use crate::proto::kernel::replication_client::ReplicationClient;
use crate::tls::client::{ChannelOptions, channel_to};
use crate::tls::material::ClientTls;
use crate::tls::server_identity::ExpectedServer;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// I/O on the data dir.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The data dir (or a directory in it) is accessible by group or others.
    #[error(transparent)]
    NotPrivate(#[from] crate::fsutil::PrivateDirError),
    /// Another process owns the data dir.
    #[error("data dir {0} is locked by another process (only one process may own a data dir)")]
    Locked(PathBuf),
    /// The data dir was never initialised.
    #[error("data dir {0} is not initialised: run `aerodb node init` first")]
    NotInitialised(PathBuf),
    /// The data dir was already initialised.
    #[error("data dir {0} is already initialised")]
    AlreadyInitialised(PathBuf),
    /// Ledger failure.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// WAL failure.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The ledger does not fold.
    #[error("ledger: {0}")]
    Fold(#[from] FoldError),
    /// The data dir belongs to another cluster or node.
    #[error(
        "data dir belongs to cluster {found_cluster:?} node {found_node:?}, configuration says {cluster:?} {node:?}"
    )]
    WrongIdentity {
        /// Data dir's cluster.
        found_cluster: String,
        /// Data dir's node.
        found_node: String,
        /// Configured cluster.
        cluster: String,
        /// Configured node.
        node: String,
    },
    /// Ledger and WAL disagree in a way no crash can produce.
    #[error("ledger and WAL disagree: {0}")]
    Inconsistent(String),
    /// Snapshot failure.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// TLS or channel set-up.
    #[error("peer channel: {0}")]
    Channel(String),
}

pub(crate) use super::datadir::DataDir;
pub use super::datadir::init;

/// What this node knows about one peer.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerState {
    /// The last status call succeeded.
    pub(crate) connected: bool,
    /// Its last reported status.
    pub(crate) status: Option<pb::StatusResponse>,
    /// The highest index it reported durable by pulling from this node, and the epoch this node
    /// served at the time (positions from another epoch do not count toward commit).
    pub(crate) durable: u64,
    /// The epoch `durable` was reported under.
    pub(crate) durable_epoch: u64,
    /// It pulled from this node recently.
    pub(crate) pulling: bool,
}

/// Everything under the node's lock. See the module docs.
pub(crate) struct Core {
    /// Folded authority.
    pub(crate) authority: Authority,
    /// The ledger file.
    pub(crate) ledger: Ledger,
    /// The state machine.
    pub(crate) kv: Kv,
    /// Highest index known durable on a majority.
    pub(crate) commit_index: u64,
    /// Index of the last EpochStart this node wrote or holds (0 if none). It is the commit floor
    /// of the epoch this node serves only when the entry there belongs to that epoch (see
    /// [`Node::update_commit`]).
    pub(crate) epoch_start_index: u64,
    /// Reads are served only once both the commit index and the applied index have reached
    /// this: the EpochStart of a fresh promotion, or the whole WAL a primary held when it opened
    /// (which may hold writes it acknowledged before a restart, and entries a snapshot applied
    /// before they were known to be committed).
    pub(crate) read_floor: u64,
    /// Peers in configuration order.
    pub(crate) peers: BTreeMap<String, PeerState>,
    /// The peer this node pulls from, and that peer's epoch.
    pub(crate) following: Option<(String, u64)>,
    /// The highest commit index a primary of the current epoch announced to this node.
    pub(crate) primary_commit_hint: u64,
    /// Keys executing now.
    pub(crate) in_flight: HashSet<String>,
    /// Keys this node promised to another node (`claims.log`).
    pub(crate) claims: super::claims::Claims,
    /// A promotion of this node is running: it grants no epoch and appends nothing.
    pub(crate) candidacy: super::promotion::Candidacy,
    /// The snapshots recovered, written or installed, newest first (for observation).
    pub(crate) snapshots: Vec<pb::SnapshotInfo>,
}

/// A node. Shared behind an `Arc` by services and background tasks.
pub struct Node {
    /// Configuration.
    pub(crate) cfg: NodeConfig,
    /// Data dir paths.
    pub(crate) dir: DataDir,
    core: Mutex<Core>,
    /// `claims.log`: promises are appended and fsync'd under this lock, never under `core`'s.
    claims_log: Mutex<Ledger>,
    /// The WAL.
    pub(crate) wal: Wal,
    /// Serialises `Execute`: one action at a time per node.
    pub(crate) exec: tokio::sync::Mutex<()>,
    /// Held by a follower from its follow-floor check until the entries it checked are appended,
    /// and by a voter while it decides a grant: a grant never lands between the two, so a node
    /// never appends entries of an epoch below one it has just granted.
    pub(crate) append_gate: tokio::sync::Mutex<()>,
    commit_tx: watch::Sender<u64>,
    applied_tx: watch::Sender<u64>,
    authority_tx: watch::Sender<u64>,
    /// Replication clients of the peers, in configuration order.
    pub(crate) peers: Vec<(String, ReplicationClient<Channel>)>,
    /// Verifies the signed intent of every Execute request (`kernel::signed`).
    pub(crate) intents: super::signed::IntentVerifier,
    /// Held while a snapshot is written, the WAL compacted, or a snapshot installed: one at a
    /// time (see `kernel::lifecycle`).
    pub(crate) snapshot_gate: tokio::sync::Mutex<()>,
    /// Execute calls received since start (see `NodeSnapshot.execute_calls_received`).
    pub(crate) execute_calls: std::sync::atomic::AtomicU64,
    _lock: std::fs::File,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.cfg.node_id).finish_non_exhaustive()
    }
}

impl Node {
    /// Opens and recovers a node: ledger fold, WAL recovery, snapshot, and completion of the
    /// WAL markers a decided action implies (an EpochStart after a promotion, a Fence after a
    /// demotion) when a crash came between the decision and the marker.
    /// Each peer is reached through a channel that accepts only that peer's identity
    /// (`node/<peer id>`), checked against the CRL.
    /// `intents` verifies the signed intents of Execute requests (the listener's trust material).
    pub async fn open(
        cfg: NodeConfig,
        client_tls: watch::Receiver<Arc<ClientTls>>,
        intents: super::signed::IntentVerifier,
    ) -> Result<Arc<Self>, NodeError> {
        let dir = DataDir { root: cfg.data_dir.clone() };
        if !dir.ledger().exists() {
            return Err(NodeError::NotInitialised(dir.root.clone()));
        }
        // Data at rest is private: refuse to serve from a directory others can read.
        dir.check_private()?;
        let lock = dir.acquire()?;
        let (ledger, records) = Ledger::open(&dir.ledger(), &dir.quarantine())?;
        let authority = Authority::fold(&records)?;
        let (claims, claims_log) = super::claims::Claims::open(&dir.claims(), &dir.quarantine())?;
        if authority.cluster_id != cfg.cluster_id || authority.node_id != cfg.node_id {
            return Err(NodeError::WrongIdentity {
                found_cluster: authority.cluster_id.clone(),
                found_node: authority.node_id.clone(),
                cluster: cfg.cluster_id.clone(),
                node: cfg.node_id.clone(),
            });
        }
        let wal = Wal::open_with(&dir.wal(), &dir.quarantine(), cfg.lifecycle.wal_segment_bytes)?;
        let recovered = snapshot::recover(&dir.snapshots(), &wal).await.map_err(NodeError::Snapshot)?;
        let snapshots = recovered.infos;
        let kv = match recovered.restored {
            Some((map, applied)) => Kv::from_parts(map, applied),
            None => Kv::default(),
        };
        match authority.role.clone() {
            Role::Primary { epoch } => {
                let tail = wal.tail();
                if tail.epoch < epoch {
                    tracing::warn!(epoch, "completing EpochStart after a promotion decided before a crash");
                    wal.start_epoch(epoch, &cfg.node_id).await?;
                } else if tail.epoch > epoch || tail.kind == Some(Kind::Fence) {
                    return Err(NodeError::Inconsistent(format!(
                        "ledger says primary of epoch {epoch}, WAL ends at epoch {} with {:?}",
                        tail.epoch, tail.kind
                    )));
                } else {
                    wal.set_writable(Some(epoch)).await?;
                }
            }
            Role::Demoted { epoch, fence_index, .. } if fence_index > 0 => {
                let tail = wal.tail();
                if tail.index + 1 == fence_index {
                    tracing::warn!(fence_index, "completing the Fence of a demotion decided before a crash");
                    wal.fence(epoch, fence_index).await?;
                } else if fence_index >= wal.first_index() && wal.kind_at(fence_index) != Some(Kind::Fence) {
                    // (A Fence below the first held index was compacted: a snapshot covers it.)
                    return Err(NodeError::Inconsistent(format!(
                        "ledger says demoted with Fence at {fence_index}, WAL has no Fence there (last index {})",
                        tail.index
                    )));
                }
            }
            _ => {}
        }
        let epoch_start_index = wal.last_epoch_start();
        let read_floor = match authority.role {
            Role::Primary { .. } => wal.tail().index,
            _ => 0,
        };
        let mut peers = Vec::new();
        let mut peer_states = BTreeMap::new();
        for m in cfg.peers() {
            let ch = channel_to(
                &m.address,
                client_tls.clone(),
                ExpectedServer::node(&m.id),
                ChannelOptions { connect_timeout: cfg.timing.peer_call_timeout() },
            )
            .map_err(|e| NodeError::Channel(e.to_string()))?;
            peers.push((m.id.clone(), ReplicationClient::new(ch)));
            peer_states.insert(m.id.clone(), PeerState::default());
        }
        let applied = kv.applied();
        let core = Core {
            authority,
            ledger,
            kv,
            commit_index: 0,
            epoch_start_index,
            read_floor,
            peers: peer_states,
            following: None,
            primary_commit_hint: 0,
            in_flight: HashSet::new(),
            claims,
            candidacy: Default::default(),
            snapshots,
        };
        let node = Arc::new(Self {
            cfg,
            dir,
            core: Mutex::new(core),
            claims_log: Mutex::new(claims_log),
            wal,
            exec: tokio::sync::Mutex::new(()),
            append_gate: tokio::sync::Mutex::new(()),
            commit_tx: watch::channel(0).0,
            applied_tx: watch::channel(applied).0,
            authority_tx: watch::channel(0).0,
            peers,
            intents,
            snapshot_gate: tokio::sync::Mutex::new(()),
            execute_calls: std::sync::atomic::AtomicU64::new(0),
            _lock: lock,
        });
        {
            let mut core = node.lock();
            node.update_commit(&mut core);
        }
        Ok(node)
    }

    /// The node's lock. Poisoning means a thread panicked while holding it; the state is then
    /// suspect, so the process stops rather than carry on from it.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        match self.core.lock() {
            Ok(g) => g,
            Err(_) => {
                tracing::error!("node state lock poisoned; stopping");
                std::process::abort();
            }
        }
    }

    /// The `claims.log` file's lock (poisoning stops the process, as for [`Node::lock`]). Taken
    /// with no other lock held.
    pub(crate) fn claims_log(&self) -> MutexGuard<'_, Ledger> {
        match self.claims_log.lock() {
            Ok(g) => g,
            Err(_) => {
                tracing::error!("claims.log lock poisoned; stopping");
                std::process::abort();
            }
        }
    }

    /// The ledger's current control sequence (its last record's), read under the state lock.
    /// Public for in-process tests of the kernel (`tests/kernel_model.rs`).
    pub fn control_seq(&self) -> u64 {
        self.lock().ledger.control_seq()
    }

    /// The node's authority (role, epochs, decided keys) as folded from its ledger: a copy taken
    /// under the state lock, consistent with [`Node::control_seq`] read in the same instant.
    /// Public for in-process tests of the kernel.
    pub fn authority(&self) -> Authority {
        self.lock().authority.clone()
    }

    /// The highest epoch this node knows (led, granted, or seen in its WAL): a promotion's plan
    /// names the one above it. Public for in-process tests of the kernel.
    pub fn highest_known_epoch(&self) -> u64 {
        let core = self.lock();
        self.known_epoch(&core)
    }

    /// The highest epoch this node knows: led, granted, or seen in its WAL.
    pub(crate) fn known_epoch(&self, core: &Core) -> u64 {
        self.follow_floor(core).max(core.authority.highest_granted)
    }

    /// The highest epoch known to have started: led by this node or present in its WAL.
    pub(crate) fn started_epoch(&self, core: &Core) -> u64 {
        core.authority.led_epoch.max(self.wal.tail().epoch)
    }

    /// The lowest epoch this node may follow: every started epoch it knows and every epoch it
    /// granted to another candidate (it promised that candidate to refuse older entries).
    pub(crate) fn follow_floor(&self, core: &Core) -> u64 {
        self.started_epoch(core).max(core.authority.highest_granted_to_other)
    }

    /// The epoch this node serves its log for: primary of it, or its demoted primary whose Fence
    /// is still its last entry.
    pub(crate) fn serving_epoch(&self, core: &Core) -> Option<u64> {
        match core.authority.role {
            Role::Primary { epoch } => Some(epoch),
            Role::Demoted { epoch, fence_index, .. } if fence_index > 0 => {
                let tail = self.wal.tail();
                (tail.index == fence_index && tail.epoch == epoch).then_some(epoch)
            }
            _ => None,
        }
    }

    /// Appends a record under the lock and applies it to the fold. A ledger write failure stops
    /// the process: the ledger is the kernel's authority and its state after a failed fsync is
    /// unknown; recovery decides from disk.
    pub(crate) fn record(&self, core: &mut Core, body: LedgerEvent) -> super::records::Record {
        // A record that would change the role in a way no decision can is a bug: stop before it
        // is written, so the ledger never holds it (a ledger that did would not fold on restart).
        if let Err(e) = core.authority.next_role(core.authority.control_seq + 1, &body) {
            tracing::error!(error = %e, "refusing to record an illegal role change; stopping the node");
            std::process::abort();
        }
        let record = match core.ledger.append(body) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "ledger append failed; stopping the node");
                std::process::abort();
            }
        };
        if let Err(e) = core.authority.apply(&record) {
            tracing::error!(error = %e, "ledger record does not fold; stopping the node");
            std::process::abort();
        }
        self.authority_tx.send_modify(|v| *v += 1);
        record
    }

    /// Halts the node: seals the WAL first (no write can follow), then records the halt.
    pub(crate) async fn halt(&self, reason: HaltReason, detail: String) {
        if self.lock().authority.is_halted() {
            return;
        }
        if let Err(e) = self.wal.set_writable(None).await {
            tracing::error!(error = %e, "cannot seal the WAL while halting");
        }
        let mut core = self.lock();
        if core.authority.is_halted() {
            return;
        }
        tracing::error!(?reason, %detail, "node halted");
        self.record(&mut core, LedgerEvent::Halted { reason, detail });
    }

    /// The index of `epoch`'s EpochStart, when the last EpochStart this node holds is that one
    /// (`None` while a promotion to `epoch` is decided but its EpochStart not yet written).
    pub(crate) fn own_epoch_start(&self, core: &Core, epoch: u64) -> Option<u64> {
        let start = core.epoch_start_index;
        (start > 0 && self.wal.epoch_at(start) == Some(epoch)).then_some(start)
    }

    /// Recomputes the commit index (see the invariants) and publishes it.
    pub(crate) fn update_commit(&self, core: &mut Core) {
        let durable = self.wal.tail().index;
        let new = match self.serving_epoch(core) {
            Some(epoch) => {
                let mut positions: Vec<u64> = vec![durable];
                positions.extend(core.peers.values().filter(|p| p.durable_epoch == epoch).map(|p| p.durable));
                positions.sort_unstable_by(|a, b| b.cmp(a));
                let majority = positions.get(self.cfg.quorum() - 1).copied().unwrap_or(0);
                // Entries are committed by counting only once this epoch's own EpochStart is on a
                // majority (entries of older epochs commit with it, never by being counted on
                // their own). Until the EpochStart of the serving epoch is written (a promotion
                // just decided), nothing is committed by counting.
                match self.own_epoch_start(core, epoch) {
                    Some(start) if majority >= start => majority,
                    _ => core.commit_index,
                }
            }
            None => core.commit_index.min(durable),
        };
        if new > core.commit_index {
            core.commit_index = new;
            self.commit_tx.send_replace(new);
        }
    }

    /// Sets the commit index a follower learned from its primary (bounded by what it holds).
    pub(crate) fn learn_commit(&self, core: &mut Core, primary_commit: u64) {
        let durable = self.wal.tail().index;
        core.primary_commit_hint = core.primary_commit_hint.max(primary_commit);
        let new = primary_commit.min(durable);
        if new > core.commit_index {
            core.commit_index = new;
            self.commit_tx.send_replace(new);
        }
    }

    /// Lowers the commit and applied indexes after a discarded suffix, rebuilding the state
    /// machine from the WAL when applied entries were discarded.
    pub(crate) fn after_truncation(&self, core: &mut Core, keep: u64) -> Result<(), WalError> {
        if core.commit_index > keep {
            core.commit_index = keep;
        }
        if core.kv.applied() > keep {
            let mut kv = Kv::default();
            for i in 1..=keep {
                if let Some(e) = self.wal.entry(i)? {
                    kv.apply(&e);
                }
            }
            core.kv = kv;
            self.applied_tx.send_replace(keep);
        }
        Ok(())
    }

    /// Replaces the state machine by an installed snapshot's (catch-up): the applied index
    /// becomes the snapshot's, and the commit index reaches it (a snapshot holds only committed
    /// entries). Both are published.
    pub(crate) fn replace_state(&self, core: &mut Core, kv: Kv) {
        let applied = kv.applied();
        assert!(applied >= core.kv.applied(), "an installed snapshot never moves the applied index back");
        core.kv = kv;
        core.epoch_start_index = self.wal.last_epoch_start();
        if applied > core.commit_index {
            core.commit_index = applied;
            self.commit_tx.send_replace(applied);
        }
        self.applied_tx.send_replace(applied);
    }

    /// A watch of the commit index.
    pub(crate) fn commit_watch(&self) -> watch::Receiver<u64> {
        self.commit_tx.subscribe()
    }

    /// A watch of the applied index.
    pub(crate) fn applied_watch(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    /// A watch that changes whenever the ledger gains a record.
    pub(crate) fn authority_watch(&self) -> watch::Receiver<u64> {
        self.authority_tx.subscribe()
    }

    /// Applies committed entries to the state machine, forever (until the watches close).
    pub(crate) async fn apply_loop(self: Arc<Self>) {
        let mut commit = self.commit_watch();
        loop {
            let target = *commit.borrow_and_update();
            let applied = self.lock().kv.applied();
            if target > applied {
                // Read outside the lock, apply under it, in bounded batches.
                let upto = target.min(applied + 4096);
                let mut entries = Vec::new();
                for i in applied + 1..=upto {
                    match self.wal.entry(i) {
                        Ok(Some(e)) => entries.push(e),
                        Ok(None) => break,
                        Err(e) => {
                            tracing::error!(error = %e, index = i, "cannot read a committed entry");
                            self.halt(HaltReason::WalCorruption, e.to_string()).await;
                            return;
                        }
                    }
                }
                crate::failpoint::hit_async("kernel.before_apply").await;
                let mut core = self.lock();
                for e in &entries {
                    if e.index == core.kv.applied() + 1 {
                        core.kv.apply(e);
                    }
                }
                let now = core.kv.applied();
                drop(core);
                self.applied_tx.send_replace(now);
                continue;
            }
            if commit.changed().await.is_err() {
                return;
            }
        }
    }

    /// Recomputes commit whenever the local WAL becomes durable further (a one-node cluster
    /// commits on its own fsync).
    pub(crate) async fn durable_loop(self: Arc<Self>) {
        let mut durable = self.wal.durable_watch();
        loop {
            {
                let mut core = self.lock();
                self.update_commit(&mut core);
            }
            if durable.changed().await.is_err() {
                return;
            }
        }
    }
}
