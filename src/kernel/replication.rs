//! Replication: discovery, pulling, serving pulls, fork resolution, epoch grants.
//!
//! Followers pull from the node serving the highest epoch they know (never a lower one than
//! they have granted), check continuity (index and `prev_hash`), fsync, and report their
//! durable position in the next pull; the serving node counts positions toward its commit index.
//! Every node polls its peers' status; a primary that sees a higher epoch (or a grant of one)
//! halts with AuthorityAmbiguity.
//!
//! # Grants
//! A node grants epoch E to a candidate at most once (a durable `EpochGranted` record before the
//! answer), only if E is above every epoch it has granted or known, only if the candidate's log is
//! at least as up to date as its own (last entry's epoch, then index), never while it is an
//! active primary (a primary that granted could still be writing, and a write it acknowledged
//! after granting could be missing from the new primary's log), and never while its own
//! promotion runs (it could otherwise win a lower epoch than one it granted).
//!
//! # Halting and following
//! A primary halts (AuthorityAmbiguity) when it learns that a higher epoch has *started*: a peer
//! serves it, or a log holds its entries. A grant alone does not count: it may belong to a
//! candidacy that failed. A node follows only epochs at or above every started epoch it knows and
//! every epoch it granted to another candidate.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Code, Status};

use super::authority::Role;
use super::entry::Entry;
use super::node::Node;
use super::records::{HaltReason, LedgerEvent};
use crate::proto::kernel as pb;

/// Entries shipped in one pull at most.
pub(crate) const PULL_ENTRIES_MAX: u32 = 1024;
/// Bytes shipped in one pull, about.
pub(crate) const PULL_BYTES_MAX: usize = 4 << 20;
/// Upper bound of a long poll, whatever the follower asks.
pub(crate) const PULL_WAIT_MAX_MS: u32 = 2_000;

impl Node {
    fn check_cluster(&self, cluster_id: &str) -> Result<(), Status> {
        if cluster_id != self.cfg.cluster_id {
            return Err(Status::new(
                Code::FailedPrecondition,
                format!("cluster id {cluster_id:?} is not this node's cluster {:?}", self.cfg.cluster_id),
            ));
        }
        Ok(())
    }

    /// Replication.Status. A primary asked by a peer that knows a higher *started* epoch halts.
    pub(crate) async fn handle_status(&self, req: pb::StatusRequest) -> Result<pb::StatusResponse, Status> {
        self.check_cluster(&req.cluster_id)?;
        // `from_epoch` is the asker's highest started epoch (see `status_loop`).
        let stale = {
            let core = self.lock();
            core.authority.primary_epoch().filter(|e| req.from_epoch > *e)
        };
        if let Some(epoch) = stale {
            self.halt(
                HaltReason::AuthorityAmbiguity,
                format!("primary of epoch {epoch}; peer {} knows epoch {}", req.from_node, req.from_epoch),
            )
            .await;
        }
        Ok(self.status())
    }

    /// Replication.HashAt.
    pub(crate) fn handle_hash_at(&self, req: pb::HashAtRequest) -> Result<pb::HashAtResponse, Status> {
        self.check_cluster(&req.cluster_id)?;
        Ok(match self.wal.hash_at(req.index) {
            Some((epoch, hash)) => pb::HashAtResponse { present: true, epoch, hash: hash.to_vec(), compacted: false },
            None if req.index < self.wal.first_index() => pb::HashAtResponse {
                present: false,
                epoch: self.wal.epoch_at(req.index).unwrap_or(0),
                hash: Vec::new(),
                compacted: true,
            },
            None => pb::HashAtResponse { present: false, epoch: 0, hash: Vec::new(), compacted: false },
        })
    }

    /// Replication.Pull: serve durable entries to a follower whose log matches ours up to
    /// `from_index - 1`, and count its durable position toward commit.
    pub(crate) async fn handle_pull(&self, req: pb::PullRequest) -> Result<pb::PullResponse, Status> {
        self.check_cluster(&req.cluster_id)?;
        if !self.cfg.peers().any(|m| m.id == req.follower_id) {
            return Err(Status::invalid_argument(format!("follower {:?} is not a member", req.follower_id)));
        }
        if req.from_index == 0 {
            return Err(Status::invalid_argument("from_index starts at 1"));
        }
        let (serving, role, known) = {
            let core = self.lock();
            (self.serving_epoch(&core), core.authority.role.clone(), self.known_epoch(&core))
        };
        let not_primary = |role: &Role, epoch: u64| pb::PullResponse {
            primary_id: String::new(),
            epoch,
            commit_index: 0,
            result: Some(pb::pull_response::Result::NotPrimary(pb::NotPrimary {
                role: match role {
                    Role::Primary { .. } => pb::Role::Primary,
                    Role::Replica => pb::Role::Replica,
                    Role::Demoted { .. } => pb::Role::Demoted,
                    Role::Halted { .. } => pb::Role::Halted,
                } as i32,
                epoch,
            })),
        };
        let Some(epoch) = serving else { return Ok(not_primary(&role, known)) };
        if req.follower_epoch > epoch {
            // The follower granted (or saw) a newer epoch: it must not take this epoch's entries.
            // That alone does not prove the newer epoch started, so this node does not halt here;
            // it halts when it sees that epoch serving or in a log (`status_loop`).
            return Ok(not_primary(&role, epoch));
        }
        let prev_index = req.from_index - 1;
        if let Some(needed) = self.snapshot_needed(&req) {
            return Ok(pb::PullResponse {
                primary_id: self.cfg.node_id.clone(),
                epoch,
                commit_index: self.lock().commit_index,
                result: Some(pb::pull_response::Result::SnapshotNeeded(needed)),
            });
        }
        match self.wal.hash_at(prev_index) {
            Some((_, h)) if h.as_slice() == req.prev_hash.as_slice() => {}
            other => {
                return Ok(pb::PullResponse {
                    primary_id: self.cfg.node_id.clone(),
                    epoch,
                    commit_index: self.lock().commit_index,
                    result: Some(pb::pull_response::Result::Mismatch(pb::PullMismatch {
                        index: prev_index,
                        primary_has_index: other.is_some(),
                    })),
                });
            }
        }
        {
            let mut core = self.lock();
            if let Some(p) = core.peers.get_mut(&req.follower_id) {
                p.durable = req.durable_index.min(prev_index);
                p.durable_epoch = epoch;
                p.pulling = true;
            }
            self.update_commit(&mut core);
        }
        let max = req.max_entries.clamp(1, PULL_ENTRIES_MAX) as usize;
        let read = |node: &Node| node.wal.entries(req.from_index, max, PULL_BYTES_MAX);
        let mut entries = read(self).map_err(|e| Status::internal(e.to_string()))?;
        if entries.is_empty() && req.wait_ms > 0 {
            let wait = Duration::from_millis(u64::from(req.wait_ms.min(PULL_WAIT_MAX_MS)));
            let mut durable = self.wal.durable_watch();
            let mut commit = self.commit_watch();
            let known_commit = req.known_commit_index;
            let _ = tokio::time::timeout(wait, async {
                loop {
                    if *durable.borrow_and_update() >= req.from_index || *commit.borrow_and_update() > known_commit {
                        return;
                    }
                    tokio::select! {
                        r = durable.changed() => if r.is_err() { return },
                        r = commit.changed() => if r.is_err() { return },
                    }
                }
            })
            .await;
            entries = read(self).map_err(|e| Status::internal(e.to_string()))?;
        }
        let commit_index = self.lock().commit_index;
        Ok(pb::PullResponse {
            primary_id: self.cfg.node_id.clone(),
            epoch,
            commit_index,
            result: Some(pb::pull_response::Result::Entries(pb::WalEntries {
                entries: entries.iter().map(Entry::to_proto).collect(),
            })),
        })
    }

    /// When a follower asks for entries this node compacted, the snapshot it must install
    /// instead; only when its log is a prefix of this node's history: its entry `from_index - 1`
    /// has the epoch this node's history has there (one writer per epoch and the hash chain make
    /// an (index, epoch) pair name one entry and everything before it). Otherwise `None` (a
    /// follower whose log differs gets the mismatch answer and the divergence rules).
    fn snapshot_needed(&self, req: &pb::PullRequest) -> Option<pb::SnapshotNeeded> {
        let first = self.wal.first_index();
        if req.from_index >= first {
            return None;
        }
        let prev_index = req.from_index - 1;
        let snapshot = self.wal.snapshot_index();
        let prefix = self.wal.epoch_at(prev_index) == Some(req.prev_epoch);
        (prefix && snapshot + 1 >= first && snapshot > prev_index).then(|| pb::SnapshotNeeded {
            last_index: snapshot,
            last_epoch: self.wal.epoch_at(snapshot).unwrap_or(0),
            first_index: first,
        })
    }

    /// Replication.RequestGrant. See the module docs for the rules.
    pub(crate) async fn handle_grant(&self, req: pb::GrantRequest) -> Result<pb::GrantResponse, Status> {
        self.check_cluster(&req.cluster_id)?;
        let _gate = self.append_gate.lock().await;
        let mut core = self.lock();
        let tail = self.wal.tail();
        let answer = |granted: bool, reason: String, highest: u64| pb::GrantResponse {
            voter_id: self.cfg.node_id.clone(),
            granted,
            reason,
            voter_highest_granted_epoch: highest,
            voter_last_epoch: tail.epoch,
            voter_last_index: tail.index,
        };
        let highest = core.authority.highest_granted;
        let refusal = if !self.cfg.members.iter().any(|m| m.id == req.candidate_id) {
            Some(format!("{} is not a member", req.candidate_id))
        } else if let Some(epoch) = core.authority.primary_epoch() {
            Some(format!("{} is the active primary of epoch {epoch} and grants no epoch", self.cfg.node_id))
        } else if core.candidacy.is_running() {
            // A candidate grants nothing while its own promotion runs: had it granted a higher
            // epoch and then won its own lower one, it would write entries of an epoch below one
            // it promised to refuse.
            Some(format!("{} is executing its own promotion and grants no epoch", self.cfg.node_id))
        } else if req.epoch <= highest {
            Some(format!(
                "epoch {} is not above epoch {highest} already granted to {}",
                req.epoch, core.authority.granted_to
            ))
        } else if req.epoch <= self.known_epoch(&core) {
            Some(format!("epoch {} is not above this node's epoch {}", req.epoch, self.known_epoch(&core)))
        } else if (req.last_log_epoch, req.last_log_index) < (tail.epoch, tail.index) {
            Some(format!(
                "candidate's log (epoch {}, index {}) is behind this node's (epoch {}, index {})",
                req.last_log_epoch, req.last_log_index, tail.epoch, tail.index
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            return Ok(answer(false, reason, highest));
        }
        self.record(
            &mut core,
            LedgerEvent::EpochGranted { epoch: req.epoch, candidate: req.candidate_id.clone(), forced: req.forced },
        );
        tracing::info!(epoch = req.epoch, candidate = %req.candidate_id, forced = req.forced, "epoch granted");
        Ok(answer(true, String::new(), req.epoch))
    }

    /// Polls every peer's status forever; halts a primary that sees a higher epoch.
    pub(crate) async fn status_loop(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let interval = self.cfg.timing.status_interval();
        loop {
            let results = self.peer_statuses().await;
            let mut halt = None;
            {
                let mut core = self.lock();
                let primary = core.authority.primary_epoch();
                for (id, status) in results {
                    if let (Some(e), Some(s)) = (primary, status.as_ref()) {
                        // A higher epoch has started: a peer serves it, or holds its entries. (A
                        // grant alone may belong to a candidacy that failed; it does not count.)
                        let started = if s.serving { s.epoch.max(s.last_epoch) } else { s.last_epoch };
                        if started > e && halt.is_none() {
                            halt = Some(format!("primary of epoch {e}; peer {id} has started epoch {started}"));
                        }
                    }
                    if let Some(p) = core.peers.get_mut(&id) {
                        p.connected = status.is_some();
                        if status.is_some() {
                            p.status = status;
                        }
                    }
                }
            }
            if let Some(detail) = halt {
                self.halt(HaltReason::AuthorityAmbiguity, detail).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// The peer to follow: the one serving the highest epoch, not below what this node knows.
    fn choose_target(&self) -> Option<usize> {
        // Test builds can hold a follower back (it stays behind, as a stopped replica would).
        if crate::failpoint::armed("follower.hold") {
            return None;
        }
        let core = self.lock();
        if matches!(core.authority.role, Role::Primary { .. } | Role::Halted { .. }) || core.candidacy.is_running() {
            return None;
        }
        let known = self.follow_floor(&core);
        let own_serving = self.serving_epoch(&core);
        let mut best: Option<(u64, usize)> = None;
        for (i, (id, _)) in self.peers.iter().enumerate() {
            let Some(p) = core.peers.get(id) else { continue };
            let Some(s) = p.status.as_ref().filter(|s| s.serving && p.connected) else { continue };
            if s.epoch < known || own_serving.is_some_and(|e| s.epoch <= e) {
                continue;
            }
            if best.is_none_or(|(e, _)| s.epoch > e) {
                best = Some((s.epoch, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// Follows the serving peer forever.
    pub(crate) async fn follower_loop(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let idle = self.cfg.timing.status_interval();
        let mut authority = self.authority_watch();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let Some(i) = self.choose_target() else {
                {
                    let mut core = self.lock();
                    if !matches!(core.authority.role, Role::Primary { .. }) {
                        core.following = None;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(idle) => {}
                    _ = authority.changed() => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            };
            let ok = tokio::select! {
                ok = self.pull_once(i) => ok,
                _ = shutdown.changed() => return,
            };
            if !ok {
                tokio::select! {
                    _ = tokio::time::sleep(idle) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }

    /// One pull from peer `i`; false when the follower should back off.
    async fn pull_once(&self, i: usize) -> bool {
        let (peer, client) = &self.peers[i];
        let mut client = client.clone();
        let tail = self.wal.tail();
        let (follower_epoch, known_commit) = {
            let core = self.lock();
            (self.follow_floor(&core), core.commit_index)
        };
        let req = pb::PullRequest {
            cluster_id: self.cfg.cluster_id.clone(),
            follower_id: self.cfg.node_id.clone(),
            follower_epoch,
            from_index: tail.index + 1,
            prev_hash: tail.hash.to_vec(),
            durable_index: tail.index,
            max_entries: PULL_ENTRIES_MAX,
            wait_ms: self.cfg.timing.pull_wait_ms as u32,
            known_commit_index: known_commit,
            prev_epoch: tail.epoch,
        };
        let timeout = self.cfg.timing.peer_call_timeout() + Duration::from_millis(self.cfg.timing.pull_wait_ms);
        let resp = match tokio::time::timeout(timeout, client.pull(req)).await {
            Ok(Ok(r)) => r.into_inner(),
            _ => {
                if let Some(p) = self.lock().peers.get_mut(peer) {
                    p.connected = false;
                }
                return false;
            }
        };
        match resp.result {
            Some(pb::pull_response::Result::Entries(batch)) => {
                // From the floor check to the end of the append: no grant in between.
                let _gate = self.append_gate.lock().await;
                {
                    let mut core = self.lock();
                    if resp.epoch < self.follow_floor(&core) || core.candidacy.is_running() {
                        return false;
                    }
                    core.following = Some((peer.clone(), resp.epoch));
                }
                if !batch.entries.is_empty() {
                    let Some(entries) = batch.entries.iter().map(Entry::from_proto).collect::<Option<Vec<_>>>() else {
                        tracing::warn!(peer = %peer, "malformed entries from primary");
                        return false;
                    };
                    crate::failpoint::hit_async("kernel.follower.before_append").await;
                    if let Err(e) = self.wal.replicate(entries).await {
                        tracing::warn!(peer = %peer, error = %e, "replicated entries refused");
                        return false;
                    }
                }
                let mut core = self.lock();
                self.learn_commit(&mut core, resp.commit_index);
                true
            }
            Some(pb::pull_response::Result::SnapshotNeeded(needed)) => {
                {
                    let core = self.lock();
                    if resp.epoch < self.follow_floor(&core) || core.candidacy.is_running() {
                        return false;
                    }
                }
                self.catch_up_by_snapshot(i, needed, resp.epoch).await
            }
            Some(pb::pull_response::Result::Mismatch(_)) => {
                self.resolve_divergence(i, resp.epoch).await;
                false
            }
            _ => {
                if let Some(p) = self.lock().peers.get_mut(peer)
                    && let Some(s) = p.status.as_mut()
                {
                    s.serving = false;
                }
                false
            }
        }
    }

    /// Finds where this log forks from peer `i`'s and either discards this node's unreplicated
    /// suffix (only when an operator's demotion out of a halt authorised it, only entries of
    /// older epochs, never committed ones) or halts with HistoryDivergence.
    async fn resolve_divergence(&self, i: usize, primary_epoch: u64) {
        let (peer, client) = &self.peers[i];
        let tail = self.wal.tail();
        let timeout = self.cfg.timing.peer_call_timeout();
        // Entries this node's snapshot covers are committed, so both logs hold them.
        let (mut lo, mut hi) = (self.wal.snapshot_index().min(tail.index), tail.index);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let mut c = client.clone();
            let req = pb::HashAtRequest { cluster_id: self.cfg.cluster_id.clone(), index: mid };
            let theirs = match tokio::time::timeout(timeout, c.hash_at(req)).await {
                Ok(Ok(r)) => r.into_inner(),
                _ => return,
            };
            let ours = self.wal.hash_at(mid).map(|(_, h)| h.to_vec());
            // An entry the peer compacted is compared by (index, epoch): log matching.
            let same_compacted = theirs.compacted && self.wal.epoch_at(mid) == Some(theirs.epoch);
            if (theirs.present && ours.as_deref() == Some(theirs.hash.as_slice())) || same_compacted {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let fork = lo;
        if fork >= tail.index {
            return;
        }
        let suffix_epoch = self.wal.tail().epoch;
        let (allowed, commit) = {
            let core = self.lock();
            let may = matches!(core.authority.role, Role::Demoted { may_discard: true, .. });
            // Entries a snapshot covers are committed: never discarded.
            let floor = core.commit_index.max(self.wal.snapshot_index());
            (may && suffix_epoch < primary_epoch && fork >= floor, core.commit_index)
        };
        if !allowed {
            self.halt(
                HaltReason::HistoryDivergence,
                format!(
                    "log diverges from {peer} (epoch {primary_epoch}) after index {fork}: entries {}..={} (epoch up to \
                     {suffix_epoch}, commit index {commit}) are not in its log",
                    fork + 1,
                    tail.index
                ),
            )
            .await;
            return;
        }
        match self.wal.truncate_after(fork).await {
            Ok(removed) => {
                let mut core = self.lock();
                let copy = self
                    .dir
                    .quarantine()
                    .join(format!("discarded-{:020}-{:020}.wal", fork + 1, tail.index))
                    .display()
                    .to_string();
                self.record(
                    &mut core,
                    LedgerEvent::SuffixDiscarded {
                        from_index: fork + 1,
                        to_index: fork + removed.len() as u64,
                        following_epoch: primary_epoch,
                        copy,
                    },
                );
                if let Err(e) = self.after_truncation(&mut core, fork) {
                    tracing::error!(error = %e, "cannot rebuild state after discarding a suffix");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot discard the divergent suffix"),
        }
    }

    /// Reads every peer's status once, in configuration order (None when it did not answer), each
    /// call bounded by the peer call timeout.
    pub(crate) async fn peer_statuses(&self) -> Vec<(String, Option<pb::StatusResponse>)> {
        let from_epoch = {
            let core = self.lock();
            self.started_epoch(&core)
        };
        let timeout = self.cfg.timing.peer_call_timeout();
        let calls = self.peers.iter().map(|(id, client)| {
            let mut client = client.clone();
            let req = pb::StatusRequest {
                cluster_id: self.cfg.cluster_id.clone(),
                from_node: self.cfg.node_id.clone(),
                from_epoch,
            };
            async move {
                let r = tokio::time::timeout(timeout, client.status(req)).await;
                (id.clone(), r.ok().and_then(|r| r.ok()).map(|r| r.into_inner()))
            }
        });
        futures::future::join_all(calls).await
    }
}
