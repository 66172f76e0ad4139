//! Promotion of this node: checks 1–5 in order (DESIGN §3, `contract::checks::PROMOTION`), the
//! grant round, and the candidacy that keeps this node from granting or appending while it runs.
//!
//! # Invariants
//! - A candidacy begins only while the execution holds the node's `exec` lock, and ends (however
//!   the execution ends) before that lock is released: one candidacy at a time, and no execution
//!   ends another's.
//! - While a candidacy runs the node grants no epoch (it could otherwise win a lower epoch than
//!   one it granted) and its follower loop appends nothing (`kernel::replication`).
//! - The epoch asked for is exactly the plan's, checked against every epoch this node and its
//!   reachable peers know before any grant is asked for or counted.

use super::entry::Kind;
use super::execute::{After, Prepared, Request, plan_epoch_stale};
use super::node::Node;
use super::records::{ActionResult, LedgerEvent, Rejection};
use crate::contract::checks;
use crate::proto::kernel as pb;

/// Whether a promotion of this node is running. Owned by [`Node`]'s core (under its lock);
/// begun by `Node::prepare_promotion`, ended by a [`CandidacyGuard`].
#[derive(Debug, Default)]
pub(crate) struct Candidacy {
    running: bool,
}

impl Candidacy {
    /// A promotion of this node is running now.
    pub(crate) fn is_running(&self) -> bool {
        self.running
    }

    fn begin(&mut self) {
        assert!(!self.running, "one candidacy at a time: the exec lock serialises executions");
        self.running = true;
    }
}

/// Ends any candidacy of the execution that holds it when dropped. Created only once the
/// execution holds the `exec` lock and declared after that lock's guard, so it runs before the
/// lock is released: an execution never ends the next one's candidacy.
pub(crate) struct CandidacyGuard<'a>(&'a Node);

impl<'a> CandidacyGuard<'a> {
    /// The guard of the execution now holding `node`'s exec lock.
    pub(crate) fn new(node: &'a Node) -> Self {
        Self(node)
    }
}

impl Drop for CandidacyGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().candidacy.running = false;
    }
}

impl Node {
    /// Promotion, checks 1–4 in order (DESIGN §3). Force skips check 2 only.
    pub(crate) async fn prepare_promotion(&self, req: &Request) -> Result<Prepared, Rejection> {
        let me = self.cfg.node_id.clone();
        let force = req.action.force;
        {
            let mut core = self.lock();
            match &core.authority.role {
                super::authority::Role::Primary { epoch } => {
                    return Err(Rejection::of(
                        &checks::PROMOTION_NOT_PRIMARY,
                        format!("{me} is already the primary of epoch {epoch}"),
                    ));
                }
                super::authority::Role::Halted { reason, detail, .. } => {
                    return Err(Rejection::of(
                        &checks::PROMOTION_NOT_HALTED,
                        format!("{me} is halted ({reason:?}: {detail}); a halted node cannot be promoted"),
                    ));
                }
                _ => {}
            }
            core.candidacy.begin();
        }
        crate::failpoint::hit_async("kernel.promotion.candidacy_begun").await;
        // One status round of every peer, read before check 2: a peer that reports itself an
        // active primary is not fenced, whatever this node's own log says (its log may not yet
        // hold that primary's EpochStart).
        let statuses = self.peer_statuses().await;
        let tail = self.wal.tail();
        if !force {
            let active = statuses.iter().find_map(|(id, s)| {
                s.as_ref().filter(|s| s.role == pb::Role::Primary as i32).map(|s| (id.clone(), s.epoch))
            });
            if let Some((peer, epoch)) = active {
                return Err(Rejection::of(
                    &checks::PROMOTION_FENCED,
                    format!(
                        "{peer} reports that it is the active primary of epoch {epoch}: it must be demoted (fenced) \
                         first, or the promotion forced"
                    ),
                ));
            }
            if tail.kind != Some(Kind::Fence) {
                let what = match tail.kind {
                    Some(k) => format!("its last entry ({}) is {k:?}", tail.index),
                    None => "its WAL is empty".to_string(),
                };
                return Err(Rejection::of(
                    &checks::PROMOTION_FENCED,
                    format!(
                        "{me} has not applied a Fence from the primary of epoch {}: {what}. The previous primary must \
                         be demoted (fenced) first, or the promotion forced",
                        tail.epoch
                    ),
                ));
            }
        }
        let (hint, own_commit) = {
            let core = self.lock();
            (core.primary_commit_hint, core.commit_index)
        };
        let mut required = (hint.max(own_commit), me.clone());
        for (id, s) in &statuses {
            if let Some(s) = s
                && s.known_primary_commit_index > required.0
            {
                required = (s.known_primary_commit_index, id.clone());
            }
        }
        if tail.index < required.0 {
            return Err(Rejection::of(
                &checks::PROMOTION_NOT_BEHIND,
                format!(
                    "{me} holds entries up to {} but {} reports entries up to {} committed: promoting {me} would lose \
                     acknowledged writes",
                    tail.index, required.1, required.0
                ),
            ));
        }
        // The plan names the epoch; it must be above every epoch this node or a reachable peer
        // knows (started or granted). Checked before any grant is asked for or counted, so two
        // plans naming one epoch cannot both collect a majority (a node grants an epoch once),
        // and a plan built before another epoch was granted is refused here, not superseded.
        let found = {
            let core = self.lock();
            let mut e = self.known_epoch(&core);
            for s in statuses.iter().filter_map(|(_, s)| s.as_ref()) {
                e = e.max(s.epoch).max(s.highest_granted_epoch);
            }
            e
        };
        let epoch = req.plan_epoch;
        if epoch <= found {
            return Err(plan_epoch_stale(
                &checks::PROMOTION_EPOCH_CURRENT,
                format!(
                    "the plan names epoch {epoch} but epoch {found} is already known (started or granted) to {me} or \
                     its peers: the state explained to the operator has changed; request the action again"
                ),
                found,
            ));
        }
        {
            let mut core = self.lock();
            if epoch <= core.authority.highest_granted {
                return Err(Rejection::of(
                    &checks::PROMOTION_QUORUM,
                    format!(
                        "{me} already granted epoch {} and cannot grant itself {epoch}",
                        core.authority.highest_granted
                    ),
                ));
            }
            self.record(&mut core, LedgerEvent::EpochGranted { epoch, candidate: me.clone(), forced: force });
        }
        let tail = self.wal.tail();
        let timeout = self.cfg.timing.peer_call_timeout();
        let calls = self.peers.iter().map(|(id, client)| {
            let mut client = client.clone();
            let greq = pb::GrantRequest {
                cluster_id: self.cfg.cluster_id.clone(),
                candidate_id: me.clone(),
                epoch,
                last_log_epoch: tail.epoch,
                last_log_index: tail.index,
                forced: force,
            };
            async move {
                let r = tokio::time::timeout(timeout, client.request_grant(greq)).await;
                let answer = match r {
                    Ok(Ok(resp)) => {
                        let resp = resp.into_inner();
                        if resp.granted { Ok(()) } else { Err(resp.reason) }
                    }
                    Ok(Err(status)) => Err(format!("unreachable: {}", status.message())),
                    Err(_) => Err(format!("unreachable: no answer within {} ms", timeout.as_millis())),
                };
                (id.clone(), answer)
            }
        });
        let answers = futures::future::join_all(calls).await;
        let mut granted_by = Vec::new();
        let mut refusals = Vec::new();
        for m in &self.cfg.members {
            if m.id == me {
                granted_by.push(me.clone());
            } else if let Some((_, a)) = answers.iter().find(|(id, _)| *id == m.id) {
                match a {
                    Ok(()) => granted_by.push(m.id.clone()),
                    Err(reason) => refusals.push(format!("{}: {reason}", m.id)),
                }
            }
        }
        if granted_by.len() < self.cfg.quorum() {
            return Err(Rejection::of(
                &checks::PROMOTION_QUORUM,
                format!(
                    "epoch {epoch} granted by {} of {} members ({}), {} needed; refused by {}",
                    granted_by.len(),
                    self.cfg.members.len(),
                    granted_by.join(", "),
                    self.cfg.quorum(),
                    refusals.join("; ")
                ),
            ));
        }
        Ok(Prepared {
            result: ActionResult::Promotion { epoch, forced: force, granted_by },
            after: After::StartEpoch { epoch },
        })
    }
}
