//! A per-identity bound on the audit records of reads, denials and edge refusals.
//!
//! Every answered call keeps a durable record, and no identity can make the audit log grow
//! faster than a fixed number of records per second:
//!
//! - each identity (certificate fingerprint) has `per_second` individual records per second,
//!   measured on the injected clock;
//! - beyond that, its calls of one stage join one **aggregate record** (stage as the calls',
//!   command `aggregate`, `detail.aggregated_count` and a count per command), written
//!   [`AGGREGATE_FLUSH_MS`] after the first call it covers;
//! - a call covered by an aggregate is answered only once the aggregate is durable (or, when the
//!   log cannot be written, counted into the next `audit_gap` record like any read), so nothing is
//!   dropped silently and the identity is slowed to the flush interval.
//!
//! An identity therefore writes at most `per_second` + 1000 / [`AGGREGATE_FLUSH_MS`] records of
//! each stage per one-second window, however fast it calls (windows are fixed, so a second that
//! straddles two may hold up to twice the individual records).
//!
//! # Invariants
//! - A call is answered after the record that covers it (its own or an aggregate) was handed to
//!   the log and answered by it; an aggregate is written once and covers exactly the calls that
//!   joined it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::audit::log::AuditLog;
use crate::audit::record::{Draft, Stage};
use crate::clock::SharedClock;
use crate::control::flow::random_id;
use crate::limits::bounded;

/// Default individual records per identity per second.
pub const DEFAULT_RECORDS_PER_IDENTITY_PER_SECOND: u32 = 100;
/// Delay between the first call an aggregate covers and its write.
pub const AGGREGATE_FLUSH_MS: u64 = 250;
/// Identities tracked at once; beyond it, untracked identities share one budget.
pub const TRACKED_IDENTITIES_MAX: usize = 4096;
/// Distinct commands counted by name in one aggregate; the rest are counted as `other`.
pub const AGGREGATE_COMMANDS_MAX: usize = 64;
/// The budget window.
const WINDOW_MS: u64 = 1000;

struct Aggregate {
    stage: Stage,
    template: Draft,
    first_unix_ms: u64,
    counts: BTreeMap<String, u64>,
    done: watch::Sender<bool>,
}

#[derive(Default)]
struct Slot {
    window_start_ms: u64,
    recorded: u32,
    aggregates: HashMap<Stage, Arc<Mutex<Aggregate>>>,
}

/// The per-identity record budget of one control plane. Cheap to share behind an `Arc`.
pub struct RecordBudget {
    audit: AuditLog,
    clock: SharedClock,
    per_second: u32,
    /// One lock: admission (individual or aggregate) and the hand-over of an aggregate to its
    /// writer are atomic, so every call is covered by exactly one record.
    slots: Mutex<HashMap<String, Slot>>,
}

impl std::fmt::Debug for RecordBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBudget").field("per_second", &self.per_second).finish_non_exhaustive()
    }
}

impl RecordBudget {
    /// A budget of `per_second` individual records per identity per second.
    pub fn new(audit: AuditLog, clock: SharedClock, per_second: u32) -> Arc<Self> {
        Arc::new(Self { audit, clock, per_second, slots: Mutex::new(HashMap::new()) })
    }

    /// The audit log records go to.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Records `draft` (best effort, as reads are: see the module docs) and returns once the
    /// record covering it was answered by the log.
    pub async fn record(self: &Arc<Self>, draft: Draft) {
        let key = draft.identity.as_ref().map(|w| w.cert_sha256.clone()).unwrap_or_default();
        let joined = {
            let now = self.clock.monotonic_ms();
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            if slots.len() >= TRACKED_IDENTITIES_MAX && !slots.contains_key(&key) {
                slots.retain(|_, s| !s.aggregates.is_empty() || now.saturating_sub(s.window_start_ms) < WINDOW_MS);
            }
            let key = if slots.len() >= TRACKED_IDENTITIES_MAX && !slots.contains_key(&key) {
                "untracked".to_string()
            } else {
                key
            };
            let slot = slots.entry(key.clone()).or_default();
            if now.saturating_sub(slot.window_start_ms) >= WINDOW_MS {
                slot.window_start_ms = now;
                slot.recorded = 0;
            }
            if slot.recorded < self.per_second {
                slot.recorded += 1;
                None
            } else {
                Some(self.join(slot, key, draft.clone()))
            }
        };
        match joined {
            None => {
                self.audit.append_best_effort(draft).await;
            }
            Some(mut done) => {
                let _ = done.wait_for(|written| *written).await;
            }
        }
    }

    /// Adds one call to the slot's aggregate of its stage, creating it (and its writer) first.
    fn join(self: &Arc<Self>, slot: &mut Slot, key: String, draft: Draft) -> watch::Receiver<bool> {
        let stage = draft.stage;
        let command = bounded(&draft.command, 128);
        let aggregate = slot
            .aggregates
            .entry(stage)
            .or_insert_with(|| {
                let (done, _) = watch::channel(false);
                let agg = Arc::new(Mutex::new(Aggregate {
                    stage,
                    template: draft,
                    first_unix_ms: self.clock.now_unix_ms(),
                    counts: BTreeMap::new(),
                    done,
                }));
                let this = self.clone();
                let writer = agg.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(AGGREGATE_FLUSH_MS)).await;
                    this.flush(&key, stage, writer).await;
                });
                agg
            })
            .clone();
        let mut a = aggregate.lock().unwrap_or_else(|p| p.into_inner());
        let name = if a.counts.len() >= AGGREGATE_COMMANDS_MAX && !a.counts.contains_key(&command) {
            "other".to_string()
        } else {
            command
        };
        *a.counts.entry(name).or_insert(0) += 1;
        a.done.subscribe()
    }

    /// Takes the aggregate out of its slot (later calls start a new one), writes it, and answers
    /// every call it covers.
    async fn flush(&self, key: &str, stage: Stage, aggregate: Arc<Mutex<Aggregate>>) {
        {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(slot) = slots.get_mut(key)
                && slot.aggregates.get(&stage).is_some_and(|a| Arc::ptr_eq(a, &aggregate))
            {
                slot.aggregates.remove(&stage);
            }
        }
        let (draft, done) = {
            let a = aggregate.lock().unwrap_or_else(|p| p.into_inner());
            let mut d = Draft::new(a.stage, random_id(), "aggregate");
            d.identity = a.template.identity.clone();
            d.peer = a.template.peer.clone();
            d.outcome = a.template.outcome.clone();
            let total: u64 = a.counts.values().sum();
            d.detail.insert("aggregated_count".into(), total.to_string());
            for (command, n) in &a.counts {
                d.detail.insert(format!("count.{command}"), n.to_string());
            }
            d.detail.insert("window_start_unix_ms".into(), a.first_unix_ms.to_string());
            d.detail.insert("window_end_unix_ms".into(), self.clock.now_unix_ms().to_string());
            d.detail.insert("reason".into(), format!("over {} records per second for this identity", self.per_second));
            (d, a.done.clone())
        };
        self.audit.append_best_effort(draft).await;
        let _ = done.send(true);
    }
}
