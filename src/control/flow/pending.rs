//! Pending actions and their store: minted by RequestAction, taken and confirmed by
//! ConfirmAction, or declined. Every check a confirmation is judged by against its pending
//! action is in this file, in order (the request's own size, parse and retry refusals come
//! before, in the api and `actions.rs`; the signatures are the kernel's to verify).
//!
//! In memory only (a restart forgets every one), single use, bound to the certificate that asked
//! for it, expiring after a configured window measured on the injected clock. Expiry only
//! invalidates: nothing runs when a pending action expires. [`PendingStore::take`] makes the
//! checks that need the store, in this fixed order: exists, unused, unexpired, same caller
//! certificate; the rest (plan digest, typed target, enhanced acknowledgements) are
//! [`PendingAction::confirm`]'s, on the action it took, which returns the [`Confirmed`] action
//! that is dispatched.
//!
//! A pending action belongs to its caller: an attempt by another certificate (to confirm or to
//! decline) is refused and changes nothing, so nobody can spend or cancel another operator's
//! confirmation. (Expiry is checked before the caller, in the documented order: any attempt on
//! an expired action finds it expired and buries it, as the next sweep would; it could never
//! run again either way.) The owner's own attempt takes the action out of the store whatever follows, so a
//! failed confirmation discards it: a new attempt needs a new request and a new explanation
//! (requirements §4: "an error never frees a confirmation for reuse").

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use super::{ConfirmInput, ConfirmationKind, Confirmed, random_id};
use crate::clock::SharedClock;
use crate::contract::action::{Action, Confirmation, Requester};
use crate::contract::intent::{Command, Intent};
use crate::control::error::ControlError;
use crate::control::explain::{Explanation, Requirements};

/// A minted pending action: everything ConfirmAction needs, nothing it may change.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingAction {
    /// 128-bit random, hex.
    pub confirmation_id: String,
    /// Joins the audit records of this action.
    pub correlation_id: String,
    /// The client's idempotency key.
    pub idempotency_key: String,
    /// The command.
    pub command: Command,
    /// The kernel action it will dispatch.
    pub action: Action,
    /// Who asked.
    pub requester: Requester,
    /// SHA-256 of the canonical request.
    pub request_digest: [u8; 32],
    /// The explanation shown (it names the plan's epoch).
    pub explanation: Explanation,
    /// Hex SHA-256 of the explanation.
    pub plan_digest: String,
    /// What the confirmation must contain.
    pub requirements: Requirements,
    /// The target's ledger sequence the explanation was built on.
    pub expected_control_seq: u64,
    /// Fingerprint of the certificate that asked.
    pub caller_fingerprint: String,
    /// Monotonic deadline (ms on the injected clock).
    pub expires_at_ms: u64,
    /// The signed intent: what the operator signs and the kernel verifies.
    pub intent: Intent,
    /// Its canonical bytes (exactly what is returned, signed and sent).
    pub intent_bytes: Vec<u8>,
    /// Signatures of distinct actors the target's kernel requires (from its snapshot).
    pub signatures_required: u32,
    /// The target's index among the configured nodes, resolved when the action was minted (the
    /// configuration does not change while the process runs, and a restart forgets every
    /// pending action), so the dispatch needs no lookup that could fail or default.
    pub target_index: usize,
}

impl PendingAction {
    /// The pending action's own checks, in order: plan digest, typed target, enhanced
    /// acknowledgements. It was taken out of the store already, so a failure discards it.
    pub fn confirm(self, input: &ConfirmInput) -> Result<Confirmed, Box<Refused>> {
        let error = if self.plan_digest != input.plan_digest {
            Some(ControlError::PlanMismatch)
        } else if input.typed_target != self.action.target_node {
            Some(ControlError::TargetMismatch {
                typed: input.typed_target.clone(),
                target: self.action.target_node.clone(),
            })
        } else {
            enhanced_missing(&self.requirements, input).map(|missing| ControlError::IncompleteEnhanced { missing })
        };
        match error {
            Some(error) => Err(Box::new(Refused { error, pending: Some(Box::new(self)), discarded: true })),
            None => Ok(Confirmed { kind: self.requirements.kind, pending: self, input: input.clone() }),
        }
    }

    /// The plan's epoch (0 for diagnostics).
    pub fn plan_epoch(&self) -> u64 {
        self.explanation.plan_epoch
    }
}

/// What an enhanced confirmation lacks, if anything.
fn enhanced_missing(req: &Requirements, input: &ConfirmInput) -> Option<String> {
    if req.kind != ConfirmationKind::Enhanced {
        return None;
    }
    let mut missing: Vec<String> = req
        .required_acknowledgements
        .iter()
        .filter(|id| !input.acknowledged_invariants.contains(id))
        .map(|id| format!("acknowledgement of {id}"))
        .collect();
    if req.responsibility_required && !input.accept_responsibility {
        missing.push("acceptance of responsibility".into());
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// The confirmation a pending action's requirements ask for, as the intent names it.
pub fn required_confirmation(requirements: &Requirements) -> Confirmation {
    Confirmation {
        kind: requirements.kind.as_str().into(),
        acknowledged_invariants: requirements.required_acknowledgements.clone(),
        accept_responsibility: requirements.responsibility_required,
    }
}

/// Used or expired ids remembered to tell "reused" and "expired" from "unknown".
pub const TOMBSTONES_MAX: usize = 65_536;

/// A refused confirmation or decline: why, and the pending action it concerned (if one existed).
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// Which check failed.
    pub error: ControlError,
    /// The pending action the attempt named.
    pub pending: Option<Box<PendingAction>>,
    /// Whether the attempt discarded it (never for another caller's attempt).
    pub discarded: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tomb {
    Used,
    Expired,
}

#[derive(Default)]
struct State {
    pending: HashMap<String, PendingAction>,
    tombs: HashMap<String, Tomb>,
    order: VecDeque<String>,
}

impl State {
    fn bury(&mut self, id: &str, tomb: Tomb) {
        self.pending.remove(id);
        if self.tombs.insert(id.to_string(), tomb).is_none() {
            self.order.push_back(id.to_string());
        }
        while self.order.len() > TOMBSTONES_MAX {
            if let Some(old) = self.order.pop_front() {
                self.tombs.remove(&old);
            }
        }
    }

    fn sweep(&mut self, now_ms: u64) {
        let expired: Vec<String> =
            self.pending.values().filter(|p| now_ms >= p.expires_at_ms).map(|p| p.confirmation_id.clone()).collect();
        for id in expired {
            self.bury(&id, Tomb::Expired);
        }
    }
}

/// The pending-action store. One lock: every check and the removal happen atomically, so one
/// pending action can be consumed at most once even under concurrent confirmations.
pub struct PendingStore {
    clock: SharedClock,
    ttl_ms: u64,
    max_pending: usize,
    state: Mutex<State>,
}

impl std::fmt::Debug for PendingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingStore").field("ttl_ms", &self.ttl_ms).finish_non_exhaustive()
    }
}

impl PendingStore {
    /// A store whose pending actions live `ttl_ms` on `clock`, at most `max_pending` at once.
    pub fn new(clock: SharedClock, ttl_ms: u64, max_pending: usize) -> Self {
        Self { clock, ttl_ms, max_pending, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The configured window, in milliseconds (also the intent's not-after, from its request).
    pub fn ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    /// The configured window, in whole seconds.
    pub fn ttl_seconds(&self) -> u64 {
        self.ttl_ms / 1000
    }

    /// Stores a pending action built by `make` (given its new id and deadline).
    pub fn mint(&self, make: impl FnOnce(String, u64) -> PendingAction) -> Result<PendingAction, ControlError> {
        let now = self.clock.monotonic_ms();
        let mut st = self.state();
        st.sweep(now);
        if st.pending.len() >= self.max_pending {
            return Err(ControlError::TooManyPending(st.pending.len()));
        }
        let pending = make(random_id(), now + self.ttl_ms);
        st.pending.insert(pending.confirmation_id.clone(), pending.clone());
        Ok(pending)
    }

    /// ConfirmAction's store checks, in order: exists, unused, unexpired, same caller. The owner's
    /// attempt takes the pending action out of the store (it is used from now on, whatever the
    /// remaining checks say); another caller's attempt changes nothing.
    pub fn take(&self, confirmation_id: &str, caller_fingerprint: &str) -> Result<PendingAction, Box<Refused>> {
        let now = self.clock.monotonic_ms();
        let mut st = self.state();
        let id = confirmation_id;
        let Some(p) = st.pending.get(id).cloned() else {
            let error = match st.tombs.get(id) {
                Some(Tomb::Used) => ControlError::ConfirmationReused,
                Some(Tomb::Expired) => ControlError::ConfirmationExpired,
                None => ControlError::ConfirmationUnknown,
            };
            return Err(Box::new(Refused { error, pending: None, discarded: false }));
        };
        if now >= p.expires_at_ms {
            st.bury(id, Tomb::Expired);
            return Err(Box::new(Refused {
                error: ControlError::ConfirmationExpired,
                pending: Some(Box::new(p)),
                discarded: true,
            }));
        }
        if p.caller_fingerprint != caller_fingerprint {
            // Another caller's attempt changes nothing: the owner may still confirm or decline.
            return Err(Box::new(Refused {
                error: ControlError::ConfirmationWrongCaller,
                pending: Some(Box::new(p)),
                discarded: false,
            }));
        }
        st.bury(id, Tomb::Used);
        Ok(p)
    }

    /// DeclineAction: exists, unused, same caller; then discarded (an expired one may be
    /// declined: nothing runs either way). Another caller's decline changes nothing.
    pub fn decline(&self, id: &str, caller_fingerprint: &str) -> Result<PendingAction, Box<Refused>> {
        let mut st = self.state();
        let Some(p) = st.pending.get(id).cloned() else {
            let error = match st.tombs.get(id) {
                Some(Tomb::Used) => ControlError::ConfirmationReused,
                Some(Tomb::Expired) => ControlError::ConfirmationExpired,
                None => ControlError::ConfirmationUnknown,
            };
            return Err(Box::new(Refused { error, pending: None, discarded: false }));
        };
        if p.caller_fingerprint != caller_fingerprint {
            return Err(Box::new(Refused {
                error: ControlError::ConfirmationWrongCaller,
                pending: Some(Box::new(p)),
                discarded: false,
            }));
        }
        st.bury(id, Tomb::Used);
        Ok(p)
    }

    /// Discards a pending action (its follow-up could not be recorded).
    pub fn discard(&self, id: &str) {
        self.state().bury(id, Tomb::Used);
    }

    /// Pending actions held now.
    pub fn pending_count(&self) -> usize {
        self.state().pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::contract::action::{Action, ActionKind, Requester};
    use crate::control::flow::ConfirmInput;
    use std::sync::Arc;
    use std::time::Duration;

    fn pending(id: String, expires: u64, enhanced: bool) -> PendingAction {
        PendingAction {
            confirmation_id: id,
            correlation_id: "c".into(),
            idempotency_key: "k".into(),
            command: crate::contract::intent::Command::RequestPromotion,
            action: Action { kind: ActionKind::Promote, target_node: "n2".into(), force: enhanced },
            requester: Requester { role: "actor".into(), name: "a".into(), cert_sha256: "fa".into() },
            request_digest: [0; 32],
            explanation: crate::control::flow::test_explanation(0),
            plan_digest: "pd".into(),
            requirements: crate::control::explain::Requirements {
                kind: if enhanced {
                    crate::control::explain::ConfirmationKind::Enhanced
                } else {
                    crate::control::explain::ConfirmationKind::Standard
                },
                typed_target: "n2".into(),
                required_acknowledgements: if enhanced { vec!["P6-A1".into(), "P6-A1a".into()] } else { vec![] },
                responsibility_required: enhanced,
                responsibility_statement: String::new(),
            },
            expected_control_seq: 3,
            caller_fingerprint: "fa".into(),
            expires_at_ms: expires,
            intent: crate::control::flow::test_intent("n2"),
            intent_bytes: crate::control::flow::test_intent("n2").encode(),
            signatures_required: 1,
            target_index: 0,
        }
    }

    /// ConfirmAction's checks: the store's, then the pending action's own.
    fn confirm(f: &PendingStore, input: &ConfirmInput, caller: &str) -> Result<PendingAction, Box<Refused>> {
        f.take(&input.confirmation_id, caller)?.confirm(input).map(|c| c.pending)
    }

    fn good(id: &str) -> ConfirmInput {
        ConfirmInput {
            confirmation_id: id.into(),
            plan_digest: "pd".into(),
            typed_target: "n2".into(),
            acknowledged_invariants: vec![],
            accept_responsibility: false,
            signatures: vec![],
        }
    }

    fn flow() -> (Arc<ManualClock>, PendingStore) {
        let clock = Arc::new(ManualClock::new(0));
        (clock.clone(), PendingStore::new(clock, 60_000, 8))
    }

    #[test]
    fn p7_a2_confirmation_is_single_use() {
        let (_, f) = flow();
        let p = f.mint(|id, exp| pending(id, exp, false)).expect("mint");
        assert_eq!(confirm(&f, &good(&p.confirmation_id), "fa").expect("confirm").confirmation_id, p.confirmation_id);
        assert_eq!(
            confirm(&f, &good(&p.confirmation_id), "fa").map_err(|r| r.error),
            Err(ControlError::ConfirmationReused)
        );
        assert_eq!(confirm(&f, &good("nope"), "fa").map_err(|r| r.error), Err(ControlError::ConfirmationUnknown));
    }

    #[test]
    fn p7_a2_expiry_only_invalidates() {
        let (clock, f) = flow();
        let p = f.mint(|id, exp| pending(id, exp, false)).expect("mint");
        clock.advance(Duration::from_secs(59));
        let q = f.mint(|id, exp| pending(id, exp, false)).expect("mint");
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            confirm(&f, &good(&p.confirmation_id), "fa").map_err(|r| r.error),
            Err(ControlError::ConfirmationExpired)
        );
        assert_eq!(
            confirm(&f, &good(&p.confirmation_id), "fa").map_err(|r| r.error),
            Err(ControlError::ConfirmationExpired)
        );
        assert!(confirm(&f, &good(&q.confirmation_id), "fa").is_ok());
    }

    #[test]
    fn confirm_checks_run_in_the_fixed_order_and_every_failure_discards() {
        let (clock, f) = flow();
        // Wrong caller beats a wrong digest and a wrong target, and changes nothing.
        let p = f.mint(|id, exp| pending(id, exp, false)).expect("mint");
        let bad = ConfirmInput { plan_digest: "x".into(), typed_target: "n9".into(), ..good(&p.confirmation_id) };
        let refused = confirm(&f, &bad, "other").expect_err("another caller");
        assert_eq!((refused.error, refused.discarded), (ControlError::ConfirmationWrongCaller, false));
        assert_eq!(confirm(&f, &good(&p.confirmation_id), "fa").map(|p| p.confirmation_id), Ok(p.confirmation_id));
        // Digest beats target.
        let p = f.mint(|id, exp| pending(id, exp, false)).expect("mint");
        let bad = ConfirmInput { plan_digest: "x".into(), typed_target: "n9".into(), ..good(&p.confirmation_id) };
        assert_eq!(confirm(&f, &bad, "fa").map_err(|r| r.error), Err(ControlError::PlanMismatch));
        // Target.
        let p = f.mint(|id, exp| pending(id, exp, false)).expect("mint");
        let bad = ConfirmInput { typed_target: "n3".into(), ..good(&p.confirmation_id) };
        assert_eq!(
            confirm(&f, &bad, "fa").map_err(|r| r.error),
            Err(ControlError::TargetMismatch { typed: "n3".into(), target: "n2".into() })
        );
        // Expiry beats everything after existence.
        let p = f.mint(|id, exp| pending(id, exp, false)).expect("mint");
        clock.advance(Duration::from_secs(61));
        let bad = ConfirmInput { plan_digest: "x".into(), ..good(&p.confirmation_id) };
        assert_eq!(confirm(&f, &bad, "other").map_err(|r| r.error), Err(ControlError::ConfirmationExpired));
        assert_eq!(f.pending_count(), 0);
    }

    #[test]
    fn p6_a1a_enhanced_confirmation_needs_every_ack_and_the_acceptance() {
        let (_, f) = flow();
        let p = f.mint(|id, exp| pending(id, exp, true)).expect("mint");
        let partial = ConfirmInput {
            acknowledged_invariants: vec!["P6-A1".into()],
            accept_responsibility: true,
            ..good(&p.confirmation_id)
        };
        assert_eq!(
            confirm(&f, &partial, "fa").map_err(|r| r.error),
            Err(ControlError::IncompleteEnhanced { missing: "acknowledgement of P6-A1a".into() })
        );
        let p = f.mint(|id, exp| pending(id, exp, true)).expect("mint");
        let no_accept = ConfirmInput {
            acknowledged_invariants: vec!["P6-A1".into(), "P6-A1a".into()],
            accept_responsibility: false,
            ..good(&p.confirmation_id)
        };
        assert_eq!(
            confirm(&f, &no_accept, "fa").map_err(|r| r.error),
            Err(ControlError::IncompleteEnhanced { missing: "acceptance of responsibility".into() })
        );
        let p = f.mint(|id, exp| pending(id, exp, true)).expect("mint");
        let full = ConfirmInput {
            acknowledged_invariants: vec!["P6-A1a".into(), "P6-A1".into()],
            accept_responsibility: true,
            ..good(&p.confirmation_id)
        };
        assert!(confirm(&f, &full, "fa").is_ok());
    }

    #[test]
    fn pending_actions_are_bounded() {
        let clock = Arc::new(ManualClock::new(0));
        let f = PendingStore::new(clock, 60_000, 2);
        f.mint(|id, exp| pending(id, exp, false)).expect("mint");
        f.mint(|id, exp| pending(id, exp, false)).expect("mint");
        assert_eq!(f.mint(|id, exp| pending(id, exp, false)).map(|_| ()), Err(ControlError::TooManyPending(2)));
    }

    #[test]
    fn expired_pending_actions_free_their_slots_and_stay_known_as_expired() {
        let clock = Arc::new(ManualClock::new(0));
        let f = PendingStore::new(clock.clone(), 60_000, 2);
        let old = f.mint(|id, exp| pending(id, exp, false)).expect("mint");
        f.mint(|id, exp| pending(id, exp, false)).expect("mint");
        clock.advance(Duration::from_secs(60));
        // The next mint sweeps both expired actions out before it counts.
        f.mint(|id, exp| pending(id, exp, false)).expect("a slot freed by expiry");
        assert_eq!(f.pending_count(), 1);
        assert_eq!(f.decline(&old.confirmation_id, "fa").map_err(|r| r.error), Err(ControlError::ConfirmationExpired));
    }

    #[test]
    fn a_discarded_pending_action_is_gone_and_known_as_used() {
        let (_, f) = flow();
        let p = f.mint(|id, exp| pending(id, exp, false)).expect("mint");
        assert_eq!(f.pending_count(), 1);
        f.discard(&p.confirmation_id);
        assert_eq!(f.pending_count(), 0);
        assert_eq!(
            confirm(&f, &good(&p.confirmation_id), "fa").map_err(|r| r.error),
            Err(ControlError::ConfirmationReused)
        );
    }

    #[test]
    fn the_window_is_reported_as_configured_in_milliseconds_and_whole_seconds() {
        let f = PendingStore::new(Arc::new(ManualClock::new(0)), 61_500, 2);
        assert_eq!((f.ttl_ms(), f.ttl_seconds()), (61_500, 61));
    }

    #[test]
    fn tombstones_are_bounded_and_the_oldest_is_forgotten_first() {
        let mut st = State::default();
        for i in 0..=TOMBSTONES_MAX {
            st.bury(&format!("id-{i}"), Tomb::Used);
        }
        assert_eq!((st.tombs.len(), st.order.len()), (TOMBSTONES_MAX, TOMBSTONES_MAX));
        assert_eq!(st.tombs.get("id-0"), None, "the oldest tombstone goes first");
        assert_eq!(st.tombs.get("id-1"), Some(&Tomb::Used));
        assert_eq!(st.tombs.get(&format!("id-{TOMBSTONES_MAX}")), Some(&Tomb::Used));
    }

    #[test]
    fn p7_a1_decline_discards_and_another_callers_attempt_changes_nothing() {
        let (_, f) = flow();
        let p = f.mint(|id, exp| pending(id, exp, false)).expect("mint");
        assert!(f.decline(&p.confirmation_id, "fa").is_ok());
        assert_eq!(
            confirm(&f, &good(&p.confirmation_id), "fa").map_err(|r| r.error),
            Err(ControlError::ConfirmationReused)
        );
        let p = f.mint(|id, exp| pending(id, exp, false)).expect("mint");
        let refused = f.decline(&p.confirmation_id, "zz").expect_err("another caller");
        assert_eq!((refused.error, refused.discarded), (ControlError::ConfirmationWrongCaller, false));
        // The owner's pending action survived another caller's decline.
        assert_eq!(confirm(&f, &good(&p.confirmation_id), "fa").map(|p| p.confirmation_id), Ok(p.confirmation_id));
    }

    #[test]
    fn p7_a2_the_owners_own_failed_attempt_discards_the_pending_action() {
        let (_, f) = flow();
        let p = f.mint(|id, exp| pending(id, exp, false)).expect("mint");
        let typo = ConfirmInput { typed_target: "n3".into(), ..good(&p.confirmation_id) };
        assert!(confirm(&f, &typo, "fa").expect_err("typo").discarded);
        assert_eq!(
            confirm(&f, &good(&p.confirmation_id), "fa").map_err(|r| r.error),
            Err(ControlError::ConfirmationReused)
        );
    }
}
