//! An idempotency key is decided at most once in the cluster.
//!
//! Before a node decides a key (executes or records a rejection under it), it **claims** the key
//! from every peer; a majority of the membership (itself included) must grant the claim.
//!
//! - A node grants a key's claim to one claimant only, durably (`claims.log`, fsync'd before it
//!   answers), and only if it has not decided the key itself and is not deciding it now.
//! - Two nodes cannot both collect a majority for one key: two majorities intersect, and the node
//!   in both granted only one of them. So at most one node's ledger ever holds a decision for a
//!   key, whichever node a caller sends it to, with or without the control plane.
//! - A node asked for a claim on a key it decided answers with its decision: the claimant then
//!   answers from that decision (`replayed` if it is the same request and requester,
//!   `AERO_IDEMPOTENCY_KEY_REUSED` otherwise) and records nothing.
//! - A claimant's own share is its in-flight execution (in memory): a crash ends the execution
//!   and the share together, so a node never counts itself for two claimants.
//!
//! Claims live in their own file, not the ledger, so that promising a key to a peer never moves
//! this node's `control_seq` (which an operator's explanation was built on).
//!
//! # Failure cases
//! - Fewer than a majority reachable: the key cannot be claimed and nothing is decided
//!   (`AERO_IDEMPOTENCY_NO_QUORUM`, not recorded; the same request may be sent again).
//! - A peer promised the key to another node that cannot be reached now: the key's decision, if
//!   any, is there (`AERO_IDEMPOTENCY_KEY_CLAIMED`, not recorded).
//! - Two nodes claiming one key at once may each collect less than a majority: neither decides, and
//!   the key stays claimed by the ones that granted it (fail closed; use a new key).

use std::collections::HashMap;
use std::path::Path;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tonic::Status;

use super::codes;
use super::digest::valid_idempotency_key;
use super::ledger::{CLAIMS_MAGIC, Ledger, LedgerError};
use super::node::Node;
use super::records::{LedgerEvent, Rejection};
use crate::proto::kernel as pb;

/// The durable promises this node made: key → the node that may decide it.
#[derive(Debug)]
pub(crate) struct Claims {
    log: Ledger,
    by_key: HashMap<String, String>,
}

impl Claims {
    /// Opens `claims.log` (creating it empty when absent: a data dir from before claims existed
    /// has made none), recovering a torn tail like the ledger.
    pub(crate) fn open(path: &Path, quarantine: &Path) -> Result<Self, LedgerError> {
        if !path.exists() {
            return Ok(Self { log: Ledger::create_with(path, CLAIMS_MAGIC)?, by_key: HashMap::new() });
        }
        let (log, records) = Ledger::open_with(path, quarantine, CLAIMS_MAGIC)?;
        let mut by_key = HashMap::new();
        for r in records {
            let LedgerEvent::KeyClaimed { idempotency_key, claimant, .. } = r.body else {
                return Err(LedgerError::Corrupt {
                    path: path.to_path_buf(),
                    offset: 0,
                    what: format!("record {} is not a key claim", r.control_seq),
                });
            };
            if by_key.get(&idempotency_key).is_some_and(|c| *c != claimant) {
                return Err(LedgerError::Corrupt {
                    path: path.to_path_buf(),
                    offset: 0,
                    what: format!("record {} claims a key already claimed by another node", r.control_seq),
                });
            }
            by_key.insert(idempotency_key, claimant);
        }
        Ok(Self { log, by_key })
    }

    /// The node `key` was promised to, if any.
    pub(crate) fn claimant(&self, key: &str) -> Option<&str> {
        self.by_key.get(key).map(String::as_str)
    }

    /// Records the promise of `key` to `claimant` durably. A write failure stops the process, as
    /// a ledger write failure does (the file could end in a partial record).
    fn grant(&mut self, key: &str, claimant: &str, request_digest: &str) {
        debug_assert!(self.claimant(key).is_none(), "a key is promised to one node only");
        let body = LedgerEvent::KeyClaimed {
            idempotency_key: key.to_string(),
            claimant: claimant.to_string(),
            request_digest: request_digest.to_string(),
        };
        if let Err(e) = self.log.append(body) {
            tracing::error!(error = %e, "claims.log append failed; stopping the node");
            std::process::abort();
        }
        self.by_key.insert(key.to_string(), claimant.to_string());
    }
}

/// What a claim round decided.
pub(crate) enum Claimed {
    /// A majority granted the claim: this node may decide the key.
    Granted,
    /// The key's decision is another node's (replayed or reused, as the caller decides).
    DecidedElsewhere { node: String, record: Box<pb::DecidedRecord> },
    /// Not claimable now; nothing is recorded.
    Refused(Rejection),
}

impl Node {
    /// Replication.ClaimKey: see the module docs. The service has checked that `claimant` is the
    /// node id in the caller's certificate.
    pub(crate) async fn handle_claim(&self, req: pb::ClaimKeyRequest) -> Result<pb::ClaimKeyResponse, Status> {
        use pb::claim_key_response::Answer;
        if req.cluster_id != self.cfg.cluster_id {
            return Err(Status::failed_precondition(format!(
                "cluster id {:?} is not this node's cluster {:?}",
                req.cluster_id, self.cfg.cluster_id
            )));
        }
        if !valid_idempotency_key(&req.idempotency_key) {
            return Err(Status::invalid_argument("idempotency_key: must be 1..=128 characters of [A-Za-z0-9._:-]"));
        }
        let me = &self.cfg.node_id;
        if req.claimant == *me || !self.cfg.members.iter().any(|m| m.id == req.claimant) {
            return Err(Status::invalid_argument(format!("claimant {:?} is not a peer of {me}", req.claimant)));
        }
        let mut core = self.lock();
        if let Some((seq, d)) = core.authority.decided.get(&req.idempotency_key) {
            return Ok(pb::ClaimKeyResponse { answer: Some(Answer::Decided(d.to_proto(*seq))) });
        }
        if core.in_flight.contains(&req.idempotency_key) {
            return Ok(pb::ClaimKeyResponse { answer: Some(Answer::ClaimedBy(me.clone())) });
        }
        let answer = match core.claims.claimant(&req.idempotency_key) {
            Some(c) if c == req.claimant => Answer::Granted(true),
            Some(c) => Answer::ClaimedBy(c.to_string()),
            None => {
                core.claims.grant(&req.idempotency_key, &req.claimant, &hex::encode(&req.request_digest));
                tracing::info!(key.prefix = %req.idempotency_key.get(..8).unwrap_or(&req.idempotency_key),
                    claimant = %req.claimant, "idempotency key claimed");
                Answer::Granted(true)
            }
        };
        Ok(pb::ClaimKeyResponse { answer: Some(answer) })
    }

    /// Claims `key` from the peers until a majority (this node's in-flight execution included)
    /// granted it, one of them answered with its decision, or every peer answered or timed out.
    /// The caller holds `key` in flight.
    pub(crate) async fn claim_round(&self, key: &str, request_digest_hex: &str) -> Claimed {
        use pb::claim_key_response::Answer;
        let me = self.cfg.node_id.clone();
        let quorum = self.cfg.quorum();
        // This node counts for itself unless it promised the key to another node.
        let promised = self.lock().claims.claimant(key).map(str::to_string);
        let mut granted = usize::from(promised.is_none());
        if granted >= quorum {
            return Claimed::Granted;
        }
        let digest = hex::decode(request_digest_hex).unwrap_or_default();
        let timeout = self.cfg.timing.peer_call_timeout();
        let mut calls: FuturesUnordered<_> = self
            .peers
            .iter()
            .map(|(id, client)| {
                let mut client = client.clone();
                let req = pb::ClaimKeyRequest {
                    cluster_id: self.cfg.cluster_id.clone(),
                    claimant: me.clone(),
                    idempotency_key: key.to_string(),
                    request_digest: digest.clone(),
                };
                async move {
                    let answer = match tokio::time::timeout(timeout, client.claim_key(req)).await {
                        Ok(Ok(r)) => r.into_inner().answer.ok_or_else(|| "an empty answer".to_string()),
                        Ok(Err(s)) => Err(format!("unreachable: {}", s.message())),
                        Err(_) => Err(format!("unreachable: no answer within {} ms", timeout.as_millis())),
                    };
                    (id.clone(), answer)
                }
            })
            .collect();
        let mut claimed_by: Vec<(String, String)> = promised.iter().map(|c| (me.clone(), c.clone())).collect();
        let mut unreachable = Vec::new();
        while let Some((peer, answer)) = calls.next().await {
            match answer {
                Ok(Answer::Decided(record)) => {
                    return Claimed::DecidedElsewhere { node: peer, record: Box::new(record) };
                }
                Ok(Answer::Granted(_)) => {
                    granted += 1;
                    if granted >= quorum {
                        return Claimed::Granted;
                    }
                }
                Ok(Answer::ClaimedBy(other)) => claimed_by.push((peer, other)),
                Err(why) => unreachable.push(format!("{peer}: {why}")),
            }
        }
        if let Some((by, other)) = claimed_by.first() {
            let others: Vec<String> = claimed_by.iter().map(|(n, c)| format!("{n} promised it to {c}")).collect();
            return Claimed::Refused(Rejection::new(
                codes::IDEMPOTENCY_KEY_CLAIMED,
                &["P7-F3", "P6-D1"],
                format!(
                    "idempotency key {key:?} is claimed by {other} ({by} promised it; {}): only {other} decides it, \
                     and it has not answered with a decision (unreachable, still deciding, or it never will); look \
                     it up with GetOutcome on {other}, or use a new key",
                    others.join("; ")
                ),
            ));
        }
        Claimed::Refused(Rejection::new(
            codes::IDEMPOTENCY_NO_QUORUM,
            &["P7-F3", "P6-F1"],
            format!(
                "idempotency key {key:?} claimed by {granted} of {} members, {quorum} needed (unreachable: {}): \
                 nothing was decided; the same request may be sent again",
                self.cfg.members.len(),
                unreachable.join("; ")
            ),
        ))
    }
}
