//! Observation rounds: concurrent reads of the whole cluster share one fan-out, and never an old
//! one.
//!
//! A caller joins the *next* round, which starts only after the caller has joined (when the
//! round in flight, if any, has finished). Every answer therefore comes from kernel snapshots
//! taken after the request arrived, exactly as if the caller had fanned out alone: sharing saves
//! kernel calls, it never serves an older view. Nothing is kept between rounds; the driver task
//! only observes (it never acts) and stops when no caller is waiting.
//!
//! What every caller of a round derives alike from its snapshots is derived once per round, by
//! its first caller, and shared with the others ([`Round::view`], [`Round::observed`]): a read
//! of a round costs one copy of its answer, not a rebuild of it from the snapshots. The memo
//! lives and dies with its round, so it is never older than the round's snapshots.

use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::watch;

use super::adapter::snapshot::observed_of;
use super::adapter::{Adapter, TransportError};
use crate::audit::record::Observed;
use crate::proto::control as cpb;
use crate::proto::kernel as pb;

/// One Observe result per configured node, in configuration order.
pub type Snapshots = Vec<Result<pb::NodeSnapshot, TransportError>>;

/// One observation round: its snapshots and what its callers derive from them, derived once.
#[derive(Debug)]
pub struct Round {
    snaps: Snapshots,
    observed: Vec<Observed>,
    cluster_state: OnceLock<cpb::ClusterState>,
    replication_status: OnceLock<cpb::ReplicationStatus>,
    promotion_state: OnceLock<cpb::PromotionState>,
}

/// The whole-cluster views a round memoizes, one slot each (see [`Round::view`]).
pub trait RoundView: Clone + Sized {
    /// This view's slot in `round`.
    fn slot(round: &Round) -> &OnceLock<Self>;
}

impl RoundView for cpb::ClusterState {
    fn slot(round: &Round) -> &OnceLock<Self> {
        &round.cluster_state
    }
}

impl RoundView for cpb::ReplicationStatus {
    fn slot(round: &Round) -> &OnceLock<Self> {
        &round.replication_status
    }
}

impl RoundView for cpb::PromotionState {
    fn slot(round: &Round) -> &OnceLock<Self> {
        &round.promotion_state
    }
}

impl Round {
    /// A round of `snaps` (its observation points are read out once, here).
    pub fn new(snaps: Snapshots) -> Self {
        let observed = observed_of(&snaps);
        Self {
            snaps,
            observed,
            cluster_state: OnceLock::new(),
            replication_status: OnceLock::new(),
            promotion_state: OnceLock::new(),
        }
    }

    /// The snapshots, one per configured node in configuration order.
    pub fn snaps(&self) -> &Snapshots {
        &self.snaps
    }

    /// The observation points of the nodes observed (what a read's audit record cites), in
    /// configuration order; equal to `observed_of(self.snaps())`.
    pub fn observed(&self) -> &[Observed] {
        &self.observed
    }

    /// The view `V` of this round: built by `build` from the snapshots on the round's first
    /// request for it, and a copy of that for every later one. `build` must be a function of
    /// the snapshots alone (and of configuration fixed for the process's life), so every caller
    /// of the round gets the answer it would have built itself.
    pub fn view<V: RoundView>(&self, build: impl FnOnce(&Snapshots) -> V) -> V {
        V::slot(self).get_or_init(|| build(&self.snaps)).clone()
    }
}

type Slot = watch::Sender<Option<Arc<Round>>>;

#[derive(Debug, Default)]
struct State {
    /// Whether a driver task is running rounds.
    running: bool,
    /// The round callers are joining; it starts when the driver next takes it.
    next: Option<Slot>,
}

/// Shares whole-cluster observations among concurrent callers (see the module docs).
#[derive(Debug, Clone)]
pub struct Rounds {
    adapter: Adapter,
    state: Arc<Mutex<State>>,
}

impl Rounds {
    /// Rounds over `adapter`'s nodes.
    pub fn new(adapter: Adapter) -> Self {
        Self { adapter, state: Arc::new(Mutex::new(State::default())) }
    }

    /// Observes every node, in a round that starts after this call. Its snapshots are what
    /// `Adapter::observe_all` would have returned had it been called at the round's start.
    pub async fn observe_all(&self) -> Arc<Round> {
        let (mut rx, start) = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let rx = match &st.next {
                Some(slot) => slot.subscribe(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    st.next = Some(tx);
                    rx
                }
            };
            let start = !st.running;
            st.running = true;
            (rx, start)
        };
        if start {
            tokio::spawn(drive(self.adapter.clone(), self.state.clone()));
        }
        loop {
            if let Some(s) = rx.borrow_and_update().as_ref() {
                return s.clone();
            }
            if rx.changed().await.is_err() {
                // The driver cannot drop a slot without answering it (it answers before it
                // takes the next); observe directly rather than fail.
                return Arc::new(Round::new(self.adapter.observe_all().await));
            }
        }
    }
}

/// Runs rounds until no caller waits.
async fn drive(adapter: Adapter, state: Arc<Mutex<State>>) {
    loop {
        let slot = {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            match st.next.take() {
                Some(slot) => slot,
                None => {
                    st.running = false;
                    return;
                }
            }
        };
        let snaps = adapter.observe_all().await;
        // Receivers that went away (cancelled calls) are no reason to stop.
        let _ = slot.send(Some(Arc::new(Round::new(snaps))));
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn snap(node: &str, commit_index: u64) -> pb::NodeSnapshot {
        pb::NodeSnapshot {
            observation: Some(pb::ObservationPoint { node_id: node.into(), control_seq: 2, epoch: 1, commit_index }),
            ..Default::default()
        }
    }

    /// The view of a round is built once, from that round's snapshots, and every later caller
    /// of the round gets an equal copy; a new round builds its own (nothing is kept between
    /// rounds, so no caller is served a view older than its round).
    #[test]
    fn v9_a_rounds_view_is_built_once_from_its_own_snapshots() {
        let unreachable =
            TransportError { node: "n3".into(), status: "Unavailable".into(), message: "connection refused".into() };
        let round = Round::new(vec![Ok(snap("n1", 7)), Ok(snap("n2", 6)), Err(unreachable)]);
        let builds = Cell::new(0);
        let build = |snaps: &Snapshots| {
            builds.set(builds.get() + 1);
            cpb::ClusterState {
                cluster_id: "c".into(),
                observed: snaps.iter().filter_map(|s| s.as_ref().ok()?.observation.clone()).collect(),
                ..Default::default()
            }
        };
        let first = round.view(build);
        let second = round.view(|_: &Snapshots| panic!("a round's view is built by its first caller only"));
        assert_eq!(builds.get(), 1);
        assert_eq!(first, second);
        assert_eq!(first.observed.iter().map(|o| o.commit_index).collect::<Vec<_>>(), vec![7, 6]);
        // The audit citation is the snapshots' own observation points, the unreachable node left out.
        assert_eq!(round.observed(), observed_of(round.snaps()).as_slice());
        assert_eq!(round.observed().iter().map(|o| o.node_id.as_str()).collect::<Vec<_>>(), vec!["n1", "n2"]);
        // Each view has its own slot: another view of the same round is built from the snapshots.
        let status = round.view(|snaps: &Snapshots| cpb::ReplicationStatus {
            observed: snaps.iter().filter_map(|s| s.as_ref().ok()?.observation.clone()).collect(),
            ..Default::default()
        });
        assert_eq!(status.observed.len(), 2);
        // A later round sees its own snapshots, not the memo of the earlier one.
        let later = Round::new(vec![Ok(snap("n1", 9))]);
        let view = later.view(build);
        assert_eq!(builds.get(), 2);
        assert_eq!(view.observed.iter().map(|o| o.commit_index).collect::<Vec<_>>(), vec![9]);
    }
}
