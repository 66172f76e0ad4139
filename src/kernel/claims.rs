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
//! # Granting without the node's lock held
//! A grant is decided under the node's lock and made durable outside it, so a claim's fsync never
//! stalls that node's Observe, replication or writes:
//! 1. under the lock, the key is checked (decided here? executing here? promised?) and, when free,
//!    **reserved** for the claimant: from then on this node treats it as promised (it does not
//!    count itself for the key, and answers every other claimant with the reservation's holder);
//! 2. without the lock, the promise is appended to `claims.log` and fsync'd (under the file's own
//!    lock, [`Node::claims_log`](super::node::Node));
//! 3. under the lock again, the reservation becomes a promise, and only then is the claimant
//!    answered `granted`. A second claim from the same claimant while the key is reserved waits
//!    for step 3 and then answers from the durable promise.
//!
//! A crash between 1 and 3 loses an unanswered reservation only (nothing was acknowledged).
//! GetOutcome's `claimed_by` names durable promises only.
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
use tokio::sync::watch;
use tonic::Status;

use super::codes;
use super::digest::valid_idempotency_key;
use super::ledger::{CLAIMS_MAGIC, Ledger, LedgerError};
use super::node::Node;
use super::records::{LedgerEvent, Rejection};
use crate::failpoint;
use crate::proto::kernel as pb;

/// The promises this node made (key → the node that may decide it): the durable ones and the
/// reservations being made durable. Lives under the node's lock; the file is
/// `Node::claims_log`.
#[derive(Debug)]
pub(crate) struct Claims {
    by_key: HashMap<String, String>,
    /// Reserved, not yet durable: the claimant, and a channel that turns `true` when the
    /// reservation became a durable promise.
    reserved: HashMap<String, (String, watch::Sender<bool>)>,
}

/// Where a key stands in this node's promises.
enum Promise {
    /// Promised to nobody.
    Free,
    /// Durably promised to this node.
    Promised(String),
    /// Reserved for this node, not yet durable; the receiver turns `true` when it is.
    Reserved(String, watch::Receiver<bool>),
}

impl Claims {
    /// Opens `claims.log` (creating it empty when absent: a data dir from before claims existed
    /// has made none), recovering a torn tail like the ledger. Returns the promises and the file.
    pub(crate) fn open(path: &Path, quarantine: &Path) -> Result<(Self, Ledger), LedgerError> {
        if !path.exists() {
            return Ok((Self::empty(), Ledger::create_with(path, CLAIMS_MAGIC)?));
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
        Ok((Self { by_key, reserved: HashMap::new() }, log))
    }

    fn empty() -> Self {
        Self { by_key: HashMap::new(), reserved: HashMap::new() }
    }

    /// The node `key` was promised or is being promised to, if any: this node counts itself for
    /// `key` only when this is `None`.
    pub(crate) fn claimant(&self, key: &str) -> Option<&str> {
        self.by_key.get(key).or_else(|| self.reserved.get(key).map(|(c, _)| c)).map(String::as_str)
    }

    /// The node `key` was durably promised to, if any (what GetOutcome reports).
    pub(crate) fn promised(&self, key: &str) -> Option<&str> {
        self.by_key.get(key).map(String::as_str)
    }

    fn promise(&self, key: &str) -> Promise {
        if let Some(c) = self.by_key.get(key) {
            return Promise::Promised(c.clone());
        }
        match self.reserved.get(key) {
            Some((c, done)) => Promise::Reserved(c.clone(), done.subscribe()),
            None => Promise::Free,
        }
    }

    /// Reserves the free `key` for `claimant` (step 1 of the module docs).
    fn reserve(&mut self, key: &str, claimant: &str) {
        debug_assert!(self.claimant(key).is_none(), "a key is promised to one node only");
        self.reserved.insert(key.to_string(), (claimant.to_string(), watch::channel(false).0));
    }

    /// Drops the unsettled reservation of `key` (its waiters wake and look again).
    fn release(&mut self, key: &str) {
        self.reserved.remove(key);
    }

    /// Turns the reservation of `key` into a durable promise (step 3) and wakes the claims that
    /// wait on it.
    fn settle(&mut self, key: &str) {
        if let Some((claimant, done)) = self.reserved.remove(key) {
            self.by_key.insert(key.to_string(), claimant);
            done.send_replace(true);
        }
    }
}

/// A reservation being made durable (steps 2 and 3 of the module docs). Dropped unsettled, it
/// releases the key: nothing was written or acknowledged for it.
struct Reservation<'a> {
    node: &'a Node,
    key: &'a str,
    settled: bool,
}

impl Reservation<'_> {
    /// The promise is durable: it becomes the key's promise, and waiting claims wake.
    fn settle(mut self) {
        self.node.lock().claims.settle(self.key);
        self.settled = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.node.lock().claims.release(self.key);
        }
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
        loop {
            // Step 1 (module docs): decide under the lock.
            let waiting = {
                let mut core = self.lock();
                if let Some((seq, d)) = core.authority.decided.get(&req.idempotency_key) {
                    return Ok(pb::ClaimKeyResponse { answer: Some(Answer::Decided(d.to_proto(*seq))) });
                }
                if core.in_flight.contains(&req.idempotency_key) {
                    return Ok(pb::ClaimKeyResponse { answer: Some(Answer::ClaimedBy(me.clone())) });
                }
                match core.claims.promise(&req.idempotency_key) {
                    Promise::Free => {
                        core.claims.reserve(&req.idempotency_key, &req.claimant);
                        None
                    }
                    Promise::Promised(c) => {
                        let answer = if c == req.claimant { Answer::Granted(true) } else { Answer::ClaimedBy(c) };
                        return Ok(pb::ClaimKeyResponse { answer: Some(answer) });
                    }
                    Promise::Reserved(c, done) if c == req.claimant => Some(done),
                    Promise::Reserved(c, _) => {
                        return Ok(pb::ClaimKeyResponse { answer: Some(Answer::ClaimedBy(c)) });
                    }
                }
            };
            // The same claimant asked again while its reservation is being made durable: answer
            // from the durable promise once it is (a crash in between ends this call too).
            // (A reservation dropped unsettled, by a cancelled call, ends the wait as well: the
            // key is then looked at again.)
            if let Some(mut done) = waiting {
                let _ = done.wait_for(|durable| *durable).await;
                continue;
            }
            // Step 2: durable, without the node's lock. Should this call be dropped before the
            // append (a cancelled request), the guard releases the reservation.
            let reservation = Reservation { node: self, key: &req.idempotency_key, settled: false };
            failpoint::hit_async("kernel.claims.grant.before_sync").await;
            let body = LedgerEvent::KeyClaimed {
                idempotency_key: req.idempotency_key.clone(),
                claimant: req.claimant.clone(),
                request_digest: hex::encode(&req.request_digest),
            };
            if let Err(e) = self.claims_log().append(body) {
                // The file could end in a partial record: stop, as a ledger write failure does.
                tracing::error!(error = %e, "claims.log append failed; stopping the node");
                std::process::abort();
            }
            // Step 3: the promise, then the answer (no await from the append to here).
            reservation.settle();
            tracing::info!(key.prefix = %req.idempotency_key.get(..8).unwrap_or(&req.idempotency_key),
                claimant = %req.claimant, "idempotency key claimed");
            return Ok(pb::ClaimKeyResponse { answer: Some(Answer::Granted(true)) });
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_counts_as_a_promise_but_is_reported_only_once_settled() {
        let mut c = Claims::empty();
        assert!(matches!(c.promise("k"), Promise::Free));
        c.reserve("k", "n3");
        assert_eq!(c.claimant("k"), Some("n3"), "a reserved key is not this node's to count");
        assert_eq!(c.promised("k"), None, "not durable, not reported");
        let Promise::Reserved(holder, mut done) = c.promise("k") else { panic!("reserved") };
        assert_eq!(holder, "n3");
        c.settle("k");
        assert_eq!(c.promised("k"), Some("n3"));
        assert!(matches!(c.promise("k"), Promise::Promised(h) if h == "n3"));
        let woke = futures::executor::block_on(done.wait_for(|d| *d)).map(|d| *d).ok();
        assert_eq!(woke, Some(true), "a waiting claim wakes once the promise is durable");
    }

    fn claim(key: &str, claimant: &str) -> LedgerEvent {
        LedgerEvent::KeyClaimed {
            idempotency_key: key.into(),
            claimant: claimant.into(),
            request_digest: String::new(),
        }
    }

    #[test]
    fn open_reads_every_durable_promise_and_refuses_a_key_promised_to_two_nodes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, quarantine) = (dir.path().join("claims.log"), dir.path().join("quarantine"));
        let (empty, _) = Claims::open(&path, &quarantine).expect("created when absent");
        assert_eq!(empty.claimant("a"), None);
        {
            let mut log = Ledger::open_with(&path, &quarantine, CLAIMS_MAGIC).expect("open").0;
            log.append(claim("a", "n2")).expect("append");
            log.append(claim("b", "n3")).expect("append");
            // The same key recorded twice for the same node is one promise (only two different
            // nodes for one key are refused).
            log.append(claim("a", "n2")).expect("append");
        }
        let (claims, _) = Claims::open(&path, &quarantine).expect("a consistent log opens");
        assert_eq!((claims.promised("a"), claims.promised("b"), claims.promised("c")), (Some("n2"), Some("n3"), None));
        Ledger::open_with(&path, &quarantine, CLAIMS_MAGIC).expect("open").0.append(claim("b", "n2")).expect("append");
        match Claims::open(&path, &quarantine) {
            Err(LedgerError::Corrupt { what, .. }) => {
                assert!(what.contains("already claimed by another node"), "{what}");
            }
            other => panic!("a key promised to two nodes must be refused: {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_released_reservation_frees_the_key_and_wakes_its_waiters() {
        let mut c = Claims::empty();
        c.reserve("k", "n3");
        let Promise::Reserved(_, mut done) = c.promise("k") else { panic!("reserved") };
        c.release("k");
        assert!(matches!(c.promise("k"), Promise::Free));
        assert_eq!(c.claimant("k"), None);
        assert!(futures::executor::block_on(done.wait_for(|d| *d)).is_err(), "the waiter wakes and looks again");
    }
}
