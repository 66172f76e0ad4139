//! `Kernel.Execute`: decide and execute one action exactly once, in DESIGN §3's fixed order.
//!
//! 1. A decided key with the same digest and requester: the recorded decision again, marked
//!    `replayed`; nothing runs. Another digest or requester: `AERO_IDEMPOTENCY_KEY_REUSED`.
//! 2. A key executing now: `AERO_IDEMPOTENCY_IN_FLIGHT`. Then the key's claim from a majority
//!    of the cluster (`kernel::claims`): a peer's decision under the key answers instead, and a
//!    key that cannot be claimed is refused unrecorded. Then the signed intent and its approvals
//!    (`kernel::signed`): only what operators signed, field for field, goes further.
//! 3. `expected_control_seq` ≠ the ledger's: `AERO_STALE_SEQUENCE` carrying the current one.
//! 4. Validation of the action (its checks, in their own fixed order: `contract::checks`;
//!    promotion in `kernel::promotion`, demotion and diagnostics here).
//! 5. Execution; the fsync'd `Decided` record is the commit point; then the answer.
//!
//! Rejections at 3 and 4 are recorded like executions, so the same request sent again is
//! answered by step 1 with the same rejection, byte for byte. Rejections at 1 and 2 (and a
//! request naming another node) are not recorded: the key belongs to another request.
//!
//! Effects a decision implies on the WAL (EpochStart after a promotion, Fence after a
//! demotion) are written after the commit point; recovery completes them if a crash comes
//! between (see `Node::open`).
//!
//! Domain values in and out: [`parse`] and [`parse_outcome`] turn the wire requests into a
//! [`Request`] and an [`OutcomeQuery`] (or a [`RequestError`] naming the field), and
//! [`Node::execute`] and `Node::get_outcome` answer with an [`Answer`] and an
//! [`OutcomeAnswer`]; `kernel/service.rs`, the tonic edge, presents them and maps the error.

use std::sync::Arc;
use std::time::Duration;

use super::claims::Claimed;
use super::codes;
use super::digest::{request_digest, valid_idempotency_key};
use super::node::{Core, Node};
use super::observe::Observation;
use super::records::{
    Action, ActionKind, ActionResult, Confirmation, Decided, Decision, HaltReason, LedgerEvent, Rejection, Requester,
};
use super::signed::Asked;
use crate::contract::checks;
use crate::contract::intent::{Intent, SIGNERS_MAX, Signature};
use crate::failpoint;
use crate::proto::kernel as pb;

/// A parsed, valid Execute request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The client's key.
    pub(crate) key: String,
    /// Hex digest (verified against action and requester).
    pub(crate) digest_hex: String,
    /// The sequence the explanation was built on.
    pub(crate) expected_control_seq: u64,
    /// The action.
    pub(crate) action: Action,
    /// Who.
    pub(crate) requester: Requester,
    /// How it was confirmed.
    pub(crate) confirmation: Confirmation,
    /// The epoch the plan names (created by a promotion, ended by a demotion; 0 otherwise).
    pub(crate) plan_epoch: u64,
    /// The signed intent and its bytes (absent: rejected by `kernel::signed` as missing).
    pub(crate) intent: Option<(Intent, Vec<u8>)>,
    /// The signatures, as sent (at most [`SIGNERS_MAX`]).
    pub(crate) signatures: Vec<Signature>,
    /// The `confirmed` audit record's leaf hash, hex, as sent (empty or 64 hex digits): stored in
    /// the Decided record, never checked against anything (the kernel cannot see the trail).
    pub(crate) confirmed_audit_leaf: String,
}

/// Why a request was not parsed. Nothing of it ran and nothing was recorded; on the wire it is
/// INVALID_ARGUMENT `AERO_INVALID_ARGUMENT` naming the field (`kernel/service.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A field breaks its rule.
    #[error("{field}: {why}")]
    Invalid {
        /// The field, as the proto names it (`action.kind`, `signatures.scheme` for a part).
        field: &'static str,
        /// The rule it breaks.
        why: String,
    },
}

fn invalid(field: &'static str, why: &str) -> RequestError {
    RequestError::Invalid { field, why: why.to_string() }
}

/// A parsed GetOutcome request: the key, and the request to compare its decision with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeQuery {
    /// The idempotency key (valid by construction).
    pub(crate) key: String,
    /// The request digest (hex) and requester to compare with, when the query carried both (a
    /// 32-byte digest and a requester); otherwise the decision is not compared.
    pub(crate) compare: Option<(String, Requester)>,
}

/// How a queried key's decision compares with the request the query named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeMatch {
    /// Not compared: the key is undecided, or the query named no full request.
    NotCompared,
    /// Decided for the same digest and requester.
    SameRequest,
    /// Decided for another request: the rejection an Execute of the query's request would get.
    KeyReused(Rejection),
}

/// Kernel.GetOutcome's answer, read under one lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeAnswer {
    /// Where the node stood.
    pub(crate) observation: Observation,
    /// The key's Decided record and its `control_seq`, if this node decided it.
    pub(crate) decided: Option<(u64, Decided)>,
    /// The key is executing now.
    pub(crate) in_flight: bool,
    /// The comparison with the query's request.
    pub(crate) outcome_match: OutcomeMatch,
    /// The node this node promised the key's claim to (empty: none).
    pub(crate) claimed_by: String,
}

/// The Decided record an Execute answers with.
#[derive(Debug, Clone, PartialEq)]
pub enum AnsweredRecord {
    /// Decided in this node's ledger, at `control_seq`.
    Local {
        /// The record's own sequence.
        control_seq: u64,
        /// The record.
        decided: Box<Decided>,
    },
    /// Decided on a peer under the same key and found by the claim round (`kernel::claims`):
    /// passed on as the peer sent it, byte for byte, never re-derived.
    Peer(Box<pb::DecidedRecord>),
}

/// Kernel.Execute's answer. Exactly one of `record` and `unrecorded_rejection` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The decision (replayed or new).
    pub record: Option<AnsweredRecord>,
    /// The key was already decided for this request: `record` is that decision and nothing ran.
    pub replayed: bool,
    /// A refusal that is not recorded (the key belongs to another request, is in flight, the
    /// action targets another node, or the key could not be claimed).
    pub unrecorded_rejection: Option<Rejection>,
    /// The ledger's sequence when the answer was made.
    pub(crate) control_seq_after: u64,
    /// Where the node stood when the answer was made (same lock as `control_seq_after`).
    pub(crate) observation_after: Observation,
}

/// Parses an Execute request; every field error names its field.
pub fn parse(req: &pb::ExecuteRequest) -> Result<Request, RequestError> {
    if !valid_idempotency_key(&req.idempotency_key) {
        return Err(invalid("idempotency_key", "must be 1..=128 characters of [A-Za-z0-9._:-]"));
    }
    let action = req
        .action
        .as_ref()
        .and_then(Action::from_proto)
        .ok_or_else(|| invalid("action.kind", "must be PROMOTE, DEMOTE or DIAGNOSTICS"))?;
    let requester = req
        .requester
        .as_ref()
        .map(Requester::from_proto)
        .filter(|r| !r.role.is_empty() && !r.name.is_empty())
        .ok_or_else(|| invalid("requester", "role and name are required"))?;
    let digest: [u8; 32] = req
        .request_digest
        .as_slice()
        .try_into()
        .map_err(|_| invalid("request_digest", "must be 32 bytes (SHA-256)"))?;
    if digest != request_digest(&action, &requester) {
        return Err(invalid("request_digest", "does not match the action and requester it came with"));
    }
    match action.kind {
        ActionKind::Promote | ActionKind::Demote if req.plan_epoch == 0 => {
            return Err(invalid(
                "plan_epoch",
                "is required for a promotion (the epoch it creates) and a demotion (the epoch it ends)",
            ));
        }
        ActionKind::Diagnostics if req.plan_epoch != 0 => {
            return Err(invalid("plan_epoch", "must be 0 for diagnostics, which create or end no epoch"));
        }
        _ => {}
    }
    let intent = if req.intent.is_empty() {
        None
    } else {
        let decoded = Intent::decode(&req.intent).map_err(|e| invalid("intent", &e.to_string()))?;
        Some((decoded, req.intent.clone()))
    };
    if req.signatures.len() > SIGNERS_MAX {
        return Err(invalid("signatures", &format!("at most {SIGNERS_MAX} signatures (requester and approvals)")));
    }
    let signatures = req
        .signatures
        .iter()
        .map(Signature::from_proto)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| invalid("signatures.scheme", "must be a TLS SignatureScheme code (16 bits)"))?;
    if !(req.confirmed_audit_leaf.is_empty() || req.confirmed_audit_leaf.len() == 32) {
        return Err(invalid("confirmed_audit_leaf", "must be empty or 32 bytes (an RFC 6962 leaf hash)"));
    }
    Ok(Request {
        confirmed_audit_leaf: hex::encode(&req.confirmed_audit_leaf),
        intent,
        signatures,
        key: req.idempotency_key.clone(),
        digest_hex: hex::encode(digest),
        expected_control_seq: req.expected_control_seq,
        action,
        requester,
        confirmation: Confirmation::from_proto(req.confirmation.as_ref()),
        plan_epoch: req.plan_epoch,
    })
}

/// The rejection for a key another node decided for another request.
fn key_reused_on(key: &str, node: &str, seq: u64) -> Rejection {
    Rejection::new(
        codes::IDEMPOTENCY_KEY_REUSED,
        &["P7-F3", "P6-D1"],
        format!(
            "idempotency key {key:?} was decided on {node} at control_seq {seq} for a different request (another \
             action, target or requester); a key is decided once per cluster; a new request needs a new key"
        ),
    )
}

/// The rejection of a plan whose epoch is not the one the kernel finds (`check` is the
/// promotion's or the demotion's epoch check).
pub(crate) fn plan_epoch_stale(check: &checks::Check, message: String, found: u64) -> Rejection {
    let mut r = Rejection::of(check, message);
    r.current_epoch = found;
    r
}

/// The rejection for a key decided for another request.
pub(crate) fn key_reused(key: &str, seq: u64) -> Rejection {
    Rejection::new(
        codes::IDEMPOTENCY_KEY_REUSED,
        &["P7-F3", "P6-D1"],
        format!(
            "idempotency key {key:?} was decided at control_seq {seq} for a different request (another action, \
             target or requester); a new request needs a new key"
        ),
    )
}

/// What a validated action will do once its decision is durable.
pub(crate) enum After {
    Nothing,
    StartEpoch { epoch: u64 },
    Fence { epoch: u64, index: u64 },
}

pub(crate) struct Prepared {
    pub(crate) result: ActionResult,
    pub(crate) after: After,
}

/// Removes the key from the in-flight set however the execution ends.
struct InFlight<'a> {
    node: &'a Node,
    key: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.node.lock().in_flight.remove(&self.key);
    }
}

/// Parses a GetOutcome request: the key must be valid; the digest and requester are compared
/// only when both are given (a 32-byte digest).
pub fn parse_outcome(req: &pb::GetOutcomeRequest) -> Result<OutcomeQuery, RequestError> {
    let pb::GetOutcomeRequest { idempotency_key, request_digest, requester } = req;
    if !valid_idempotency_key(idempotency_key) {
        return Err(invalid("idempotency_key", "must be 1..=128 characters of [A-Za-z0-9._:-]"));
    }
    let compare = match requester {
        Some(r) if request_digest.len() == 32 => Some((hex::encode(request_digest), Requester::from_proto(r))),
        _ => None,
    };
    Ok(OutcomeQuery { key: idempotency_key.clone(), compare })
}

impl Node {
    fn respond(
        &self,
        core: &Core,
        record: Option<AnsweredRecord>,
        replayed: bool,
        unrecorded: Option<Rejection>,
    ) -> Answer {
        Answer {
            record,
            replayed,
            unrecorded_rejection: unrecorded,
            control_seq_after: core.ledger.control_seq(),
            observation_after: self.observation(core),
        }
    }

    fn decide(&self, core: &mut Core, req: &Request, decision: Decision) -> AnsweredRecord {
        let decided = Decided {
            idempotency_key: req.key.clone(),
            request_digest: req.digest_hex.clone(),
            requester: req.requester.clone(),
            action: req.action.clone(),
            confirmation: req.confirmation.clone(),
            decision,
            plan_epoch: req.plan_epoch,
            intent: req.intent.as_ref().map(|(_, b)| hex::encode(b)).unwrap_or_default(),
            signatures: req.signatures.clone(),
            confirmed_audit_leaf: req.confirmed_audit_leaf.clone(),
        };
        failpoint::hit("kernel.before_commit");
        let record = self.record(core, LedgerEvent::Decided(Box::new(decided.clone())));
        failpoint::hit("kernel.after_commit");
        tracing::info!(
            kernel.control_seq = record.control_seq,
            action = ?req.action.kind,
            executed = matches!(decided.decision, Decision::Executed { .. }),
            "decided"
        );
        AnsweredRecord::Local { control_seq: record.control_seq, decided: Box::new(decided) }
    }

    /// Kernel.Execute of a parsed request, in the module docs' order: always an answer (a
    /// decision, recorded or replayed, or an unrecorded refusal); malformed requests were
    /// refused by [`parse`].
    pub async fn execute(self: &Arc<Self>, req: Request) -> Answer {
        {
            let mut core = self.lock();
            if let Some((seq, d)) = core.authority.decided.get(&req.key) {
                if d.request_digest == req.digest_hex && d.requester.same_principal(&req.requester) {
                    let record = AnsweredRecord::Local { control_seq: *seq, decided: Box::new(d.clone()) };
                    return self.respond(&core, Some(record), true, None);
                }
                let rejection = key_reused(&req.key, *seq);
                return self.respond(&core, None, false, Some(rejection));
            }
            if core.in_flight.contains(&req.key) {
                let rejection = Rejection::new(
                    codes::IDEMPOTENCY_IN_FLIGHT,
                    &["P7-F3"],
                    format!("idempotency key {:?} is executing now; its outcome is not decided yet", req.key),
                );
                return self.respond(&core, None, false, Some(rejection));
            }
            if req.action.target_node != self.cfg.node_id {
                let rejection = Rejection::new(
                    codes::WRONG_NODE,
                    &["P7-E1"],
                    format!(
                        "the action targets {} but was sent to {}; each node executes only its own actions",
                        req.action.target_node, self.cfg.node_id
                    ),
                );
                return self.respond(&core, None, false, Some(rejection));
            }
            core.in_flight.insert(req.key.clone());
        }
        let _in_flight = InFlight { node: self, key: req.key.clone() };
        // The key is decided at most once in the cluster: a majority must grant this node its
        // claim first (see `kernel::claims`); a peer's decision under the key answers instead.
        match self.claim_round(&req.key, &req.digest_hex).await {
            Claimed::Granted => {}
            Claimed::DecidedElsewhere { node, record } => {
                let same_request = hex::encode(&record.request_digest) == req.digest_hex
                    && record
                        .requester
                        .as_ref()
                        .is_some_and(|r| Requester::from_proto(r).same_principal(&req.requester));
                let core = self.lock();
                if same_request {
                    return self.respond(&core, Some(AnsweredRecord::Peer(record)), true, None);
                }
                let rejection = key_reused_on(&req.key, &node, record.control_seq);
                return self.respond(&core, None, false, Some(rejection));
            }
            Claimed::Refused(rejection) => {
                let core = self.lock();
                return self.respond(&core, None, false, Some(rejection));
            }
        }
        let _serial = self.exec.lock().await;
        // Ends a candidacy this execution begins, however it ends, before the exec lock is released.
        let _candidacy = super::promotion::CandidacyGuard::new(self);
        failpoint::hit_async("kernel.execute.start").await;
        // Only what operators signed runs: before any check that can lead to execution.
        if let Err(rejection) = self.verify_intent(&req) {
            let mut core = self.lock();
            let record = self.decide(&mut core, &req, Decision::Rejected { rejection });
            return self.respond(&core, Some(record), false, None);
        }
        {
            let mut core = self.lock();
            let current = core.ledger.control_seq();
            if req.expected_control_seq != current {
                let mut rejection = Rejection::new(
                    codes::STALE_SEQUENCE,
                    &["P7-A2", "P7-D2", "P6-D1"],
                    format!(
                        "the confirmation was given on control_seq {} but {}'s ledger is at {current}: the state \
                         explained to the operator has changed; request the action again",
                        req.expected_control_seq, self.cfg.node_id
                    ),
                );
                rejection.current_control_seq = current;
                let record = self.decide(&mut core, &req, Decision::Rejected { rejection });
                return self.respond(&core, Some(record), false, None);
            }
        }
        let prepared = match self.validate(&req) {
            Err(rejection) => Err(rejection),
            Ok(()) => match req.action.kind {
                ActionKind::Promote => self.prepare_promotion(&req).await,
                ActionKind::Demote => self.prepare_demotion(req.plan_epoch).await,
                ActionKind::Diagnostics => Ok(self.prepare_diagnostics().await),
            },
        };
        let prepared = match prepared {
            Err(rejection) => {
                let mut core = self.lock();
                let record = self.decide(&mut core, &req, Decision::Rejected { rejection });
                return self.respond(&core, Some(record), false, None);
            }
            Ok(prepared) => prepared,
        };
        let record = {
            let mut core = self.lock();
            // A halt recorded while the action was being prepared (the apply loop finding a corrupt
            // entry, a pull finding divergence) stands: a halted node is never promoted.
            if req.action.kind == ActionKind::Promote && core.authority.is_halted() {
                let rejection = Rejection::of(
                    &checks::PROMOTION_NOT_HALTED,
                    format!("{} halted while its promotion was being prepared; it is not promoted", self.cfg.node_id),
                );
                let record = self.decide(&mut core, &req, Decision::Rejected { rejection });
                return self.respond(&core, Some(record), false, None);
            }
            self.decide(&mut core, &req, Decision::Executed { result: prepared.result.clone() })
        };
        self.after_commit(prepared.after).await;
        failpoint::hit_async("kernel.before_answer").await;
        let core = self.lock();
        self.respond(&core, Some(record), false, None)
    }

    /// The signed intent and approvals (`kernel::signed`, in its documented order).
    fn verify_intent(&self, req: &Request) -> Result<(), Rejection> {
        let asked = Asked {
            cluster_id: &self.cfg.cluster_id,
            action: &req.action,
            plan_epoch: req.plan_epoch,
            expected_control_seq: req.expected_control_seq,
            idempotency_key: &req.key,
            confirmation: &req.confirmation,
            requester: &req.requester,
        };
        let intent = req.intent.as_ref().map(|(i, b)| (i, b.as_slice()));
        let signers = self.intents.verify(asked, intent, &req.signatures, &self.cfg.approvals)?;
        tracing::info!(signers = %signers.principals.join(","), distinct = signers.distinct, "intent verified");
        Ok(())
    }

    /// Checks that do not depend on the node's state.
    fn validate(&self, req: &Request) -> Result<(), Rejection> {
        if req.action.force && req.action.kind != ActionKind::Promote {
            return Err(Rejection::new(codes::INVALID_ACTION, &["P7-S3"], "force applies only to a promotion"));
        }
        if req.action.force {
            let c = &req.confirmation;
            let acked = c.acknowledged_invariants.iter().any(|i| i == "P6-A1a");
            if c.kind != "enhanced" || !acked || !c.accept_responsibility {
                return Err(Rejection::new(
                    codes::FORCE_REQUIRES_ENHANCED,
                    &["P6-A1a", "P7-A2"],
                    "a forced promotion needs an enhanced confirmation that acknowledges P6-A1a and accepts \
                     responsibility",
                ));
            }
        }
        Ok(())
    }

    async fn after_commit(&self, after: After) {
        match after {
            After::Nothing => {}
            After::StartEpoch { epoch } => {
                let index = match self.wal.start_epoch(epoch, &self.cfg.node_id).await {
                    Ok(i) => i,
                    Err(e) => {
                        // The promotion is decided; recovery writes the EpochStart it implies.
                        tracing::error!(error = %e, "cannot write EpochStart after a decided promotion; stopping");
                        std::process::abort();
                    }
                };
                let mut core = self.lock();
                core.epoch_start_index = index;
                // The floor of this epoch: everything before its EpochStart (a floor left from an
                // earlier restart may name entries discarded since, and must not hold reads back).
                core.read_floor = index;
                core.following = None;
                for p in core.peers.values_mut() {
                    p.durable = 0;
                    p.durable_epoch = 0;
                    p.pulling = false;
                }
                self.update_commit(&mut core);
            }
            After::Fence { epoch, index } => {
                if let Err(e) = self.wal.fence(epoch, index).await {
                    tracing::error!(error = %e, "cannot write the Fence of a decided demotion; stopping");
                    std::process::abort();
                }
                {
                    let mut core = self.lock();
                    self.update_commit(&mut core);
                }
                let mut commit = self.commit_watch();
                let _ = tokio::time::timeout(self.cfg.timing.fence_wait(), commit.wait_for(|c| *c >= index)).await;
            }
        }
    }

    /// Demotion of the primary (or of a node halted as a stale or diverged primary) of exactly
    /// `plan_epoch`: a node that leads another epoch than the plan names is not sealed.
    async fn prepare_demotion(&self, plan_epoch: u64) -> Result<Prepared, Rejection> {
        let me = self.cfg.node_id.clone();
        let role = self.lock().authority.role.clone();
        let leads = match role {
            super::authority::Role::Primary { epoch } => Some(epoch),
            super::authority::Role::Halted {
                reason: HaltReason::AuthorityAmbiguity | HaltReason::HistoryDivergence,
                led_epoch,
                ..
            } => Some(led_epoch),
            _ => None,
        };
        if let Some(leads) = leads
            && leads != plan_epoch
        {
            return Err(plan_epoch_stale(
                &checks::DEMOTION_EPOCH_CURRENT,
                format!(
                    "the plan ends epoch {plan_epoch} but {me} leads epoch {leads}: the state explained to the \
                     operator has changed; request the action again"
                ),
                leads,
            ));
        }
        match role {
            super::authority::Role::Primary { epoch } => {
                let last = match self.wal.set_writable(None).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot seal the WAL for a demotion; stopping");
                        std::process::abort();
                    }
                };
                Ok(Prepared {
                    result: ActionResult::Demotion { fence_index: last + 1, epoch, from_halt: false },
                    after: After::Fence { epoch, index: last + 1 },
                })
            }
            super::authority::Role::Halted {
                reason: reason @ (HaltReason::AuthorityAmbiguity | HaltReason::HistoryDivergence),
                led_epoch,
                ..
            } => {
                tracing::info!(?reason, "demoting out of a halt");
                Ok(Prepared {
                    result: ActionResult::Demotion { fence_index: 0, epoch: led_epoch, from_halt: true },
                    after: After::Nothing,
                })
            }
            super::authority::Role::Halted { reason, detail, .. } => Err(Rejection::of(
                &checks::DEMOTION_RESOLVES_HALT,
                format!("{me} is halted ({reason:?}: {detail}); demotion does not resolve this halt"),
            )),
            super::authority::Role::Replica | super::authority::Role::Demoted { .. } => Err(Rejection::of(
                &checks::DEMOTION_IS_PRIMARY,
                format!("{me} is not a primary; there is no authority to step down from"),
            )),
        }
    }

    /// The scan reads every durable byte of the WAL and the ledger; it runs on a blocking thread so
    /// that a large log never stalls the runtime serving replication and data (P7-S2).
    async fn prepare_diagnostics(self: &Arc<Self>) -> Prepared {
        let declared = {
            let core = self.lock();
            self.wal.view().total_bytes + core.ledger.bytes()
        };
        let node = self.clone();
        let report = match tokio::task::spawn_blocking(move || super::diagnostics::scan(&node, declared)).await {
            Ok(report) => report,
            // The scan has no panicking path; if one appears, it fails this execution as it would
            // have inline (nothing is decided yet).
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        Prepared { result: report, after: After::Nothing }
    }

    /// Kernel.GetOutcome of a parsed query: what this node's ledger says of the key, read
    /// under one lock. Read-only.
    pub(crate) fn get_outcome(&self, query: &OutcomeQuery) -> OutcomeAnswer {
        let core = self.lock();
        let decided = core.authority.decided.get(&query.key);
        let outcome_match = match (decided, &query.compare) {
            (Some((seq, d)), Some((digest_hex, requester))) => {
                if d.request_digest == *digest_hex && d.requester.same_principal(requester) {
                    OutcomeMatch::SameRequest
                } else {
                    OutcomeMatch::KeyReused(key_reused(&query.key, *seq))
                }
            }
            _ => OutcomeMatch::NotCompared,
        };
        OutcomeAnswer {
            observation: self.observation(&core),
            decided: decided.map(|(seq, d)| (*seq, d.clone())),
            in_flight: core.in_flight.contains(&query.key),
            outcome_match,
            claimed_by: core.claims.promised(&query.key).unwrap_or_default().to_string(),
        }
    }

    /// How long a write waits for a majority.
    pub(crate) fn write_ack_timeout(&self) -> Duration {
        self.cfg.timing.write_ack_timeout()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(kind: ActionKind) -> Action {
        Action { kind, target_node: "n1".into(), force: false }
    }

    fn alice() -> Requester {
        Requester { role: "actor".into(), name: "alice".into(), cert_sha256: "ab".into() }
    }

    /// A well-formed Execute request for `action` by alice (its digest matches).
    fn request(action: &Action, plan_epoch: u64) -> pb::ExecuteRequest {
        pb::ExecuteRequest {
            idempotency_key: "k1".into(),
            request_digest: request_digest(action, &alice()).to_vec(),
            action: Some(action.to_proto()),
            requester: Some(alice().to_proto()),
            plan_epoch,
            ..Default::default()
        }
    }

    /// The field a request is refused for, or `None` when it parses.
    fn refused_field(req: &pb::ExecuteRequest) -> Option<&'static str> {
        match parse(req) {
            Ok(_) => None,
            Err(RequestError::Invalid { field, .. }) => Some(field),
        }
    }

    #[test]
    fn p7_f3_a_request_names_a_requester_with_both_a_role_and_a_name() {
        let diagnostics = action(ActionKind::Diagnostics);
        assert_eq!(refused_field(&request(&diagnostics, 0)), None);
        for (role, name) in [("", "alice"), ("actor", ""), ("", "")] {
            let requester = Requester { role: role.into(), name: name.into(), cert_sha256: "ab".into() };
            let mut req = request(&diagnostics, 0);
            // The digest matches this requester: only the rule on the requester can refuse it.
            req.request_digest = request_digest(&diagnostics, &requester).to_vec();
            req.requester = Some(requester.to_proto());
            assert_eq!(refused_field(&req), Some("requester"), "role {role:?}, name {name:?}");
        }
    }

    #[test]
    fn p7_a2_a_promotion_or_demotion_names_the_epoch_of_its_plan_and_diagnostics_name_none() {
        for kind in [ActionKind::Promote, ActionKind::Demote] {
            assert_eq!(refused_field(&request(&action(kind), 0)), Some("plan_epoch"), "{kind:?} without an epoch");
            assert_eq!(refused_field(&request(&action(kind), 2)), None, "{kind:?} with one");
        }
        let diagnostics = action(ActionKind::Diagnostics);
        assert_eq!(refused_field(&request(&diagnostics, 0)), None);
        assert_eq!(refused_field(&request(&diagnostics, 2)), Some("plan_epoch"), "diagnostics end no epoch");
    }

    #[test]
    fn p15_a_request_carries_at_most_signers_max_signatures() {
        let diagnostics = action(ActionKind::Diagnostics);
        let mut req = request(&diagnostics, 0);
        req.signatures = vec![pb::IntentSignature::default(); SIGNERS_MAX];
        assert_eq!(parse(&req).map(|r| r.signatures.len()), Ok(SIGNERS_MAX));
        req.signatures.push(pb::IntentSignature::default());
        assert_eq!(refused_field(&req), Some("signatures"));
    }

    #[test]
    fn the_confirmed_audit_leaf_is_empty_or_a_32_byte_leaf_hash() {
        let diagnostics = action(ActionKind::Diagnostics);
        let mut req = request(&diagnostics, 0);
        assert_eq!(parse(&req).map(|r| r.confirmed_audit_leaf), Ok(String::new()));
        req.confirmed_audit_leaf = vec![7; 32];
        assert_eq!(parse(&req).map(|r| r.confirmed_audit_leaf), Ok("07".repeat(32)));
        for len in [1, 31, 33] {
            req.confirmed_audit_leaf = vec![7; len];
            assert_eq!(refused_field(&req), Some("confirmed_audit_leaf"), "{len} bytes");
        }
    }

    #[test]
    fn p7_f3_get_outcome_compares_the_decision_only_with_a_full_request() {
        let digest = request_digest(&action(ActionKind::Diagnostics), &alice()).to_vec();
        let query = |request_digest: Vec<u8>, requester: Option<pb::Requester>| pb::GetOutcomeRequest {
            idempotency_key: "k1".into(),
            request_digest,
            requester,
        };
        let full = parse_outcome(&query(digest.clone(), Some(alice().to_proto()))).expect("valid");
        assert_eq!(full.compare, Some((hex::encode(&digest), alice())));
        assert_eq!(
            parse_outcome(&query(digest[..31].to_vec(), Some(alice().to_proto()))).expect("valid").compare,
            None
        );
        assert_eq!(parse_outcome(&query(digest, None)).expect("valid").compare, None);
        assert!(parse_outcome(&pb::GetOutcomeRequest::default()).is_err(), "the key is required");
    }
}
