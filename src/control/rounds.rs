//! Observation rounds: concurrent reads of the whole cluster share one fan-out, and never an old
//! one.
//!
//! A caller joins the *next* round, which starts only after the caller has joined (when the
//! round in flight, if any, has finished). Every answer therefore comes from kernel snapshots
//! taken after the request arrived, exactly as if the caller had fanned out alone: sharing saves
//! kernel calls, it never serves an older view. Nothing is kept between rounds; the driver task
//! only observes (it never acts) and stops when no caller is waiting.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::adapter::{Adapter, TransportError};
use crate::proto::kernel as pb;

/// One Observe result per configured node, in configuration order.
pub type Snapshots = Vec<Result<pb::NodeSnapshot, TransportError>>;

type Slot = watch::Sender<Option<Arc<Snapshots>>>;

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

    /// Observes every node, in a round that starts after this call. The result is what
    /// `Adapter::observe_all` would have returned had it been called at the round's start.
    pub async fn observe_all(&self) -> Arc<Snapshots> {
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
                return Arc::new(self.adapter.observe_all().await);
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
        let _ = slot.send(Some(Arc::new(snaps)));
    }
}
