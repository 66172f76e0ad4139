//! The node's authority as the fold of its ledger: role, epoch, grants, decided keys.
//!
//! Nothing else is persisted for authority. [`Authority::fold`] replays every record;
//! [`Authority::apply`] applies one more. The fold is pure and total over valid ledgers, so the
//! same ledger always gives the same authority (a property test checks it against a model).
//!
//! # Invariants
//! - The first record is `Genesis`; `control_seq` grows by one per record.
//! - `highest_granted` only grows: an epoch is granted at most once.
//! - A role changes only through a record: Genesis (primary of epoch 1), an executed promotion
//!   (primary), an executed demotion (demoted), a halt (halted).

use std::collections::HashMap;

use super::records::{ActionResult, Body, Decided, Decision, HaltReason, Record};

/// The role of a node, folded from its ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Follows the primary of the highest epoch it knows.
    Replica,
    /// The single writer of `epoch`.
    Primary {
        /// The epoch it leads.
        epoch: u64,
    },
    /// Was primary of `epoch`; wrote its Fence at `fence_index` (0 when demoted from a halt).
    Demoted {
        /// The epoch it led.
        epoch: u64,
        /// Its Fence (0 if none was written).
        fence_index: u64,
        /// It may discard its own unreplicated suffix of older epochs once, to follow a newer
        /// primary (an operator demoted it out of a halt, which authorises exactly that).
        may_discard: bool,
    },
    /// Stopped; takes no writes until an operator demotes it.
    Halted {
        /// Why.
        reason: HaltReason,
        /// Detail.
        detail: String,
        /// The epoch it led, if it was primary when it halted.
        led_epoch: u64,
    },
}

/// Why a ledger cannot be folded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    /// The ledger does not start with Genesis.
    #[error("the ledger does not start with a Genesis record")]
    NoGenesis,
    /// A second Genesis.
    #[error("a second Genesis record at control_seq {0}")]
    SecondGenesis(u64),
    /// A grant that does not increase the highest granted epoch.
    #[error("control_seq {seq}: grant of epoch {epoch} after epoch {highest} was granted")]
    GrantRegression {
        /// The record.
        seq: u64,
        /// Its epoch.
        epoch: u64,
        /// The highest before it.
        highest: u64,
    },
    /// A key decided twice.
    #[error("control_seq {seq}: idempotency key decided twice")]
    DecidedTwice {
        /// The record.
        seq: u64,
    },
    /// A record that belongs in `claims.log`, not in the ledger.
    #[error("control_seq {seq}: a key claim in the ledger (claims live in claims.log)")]
    MisplacedClaim {
        /// The record.
        seq: u64,
    },
}

/// The folded authority of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// The cluster this data dir belongs to.
    pub cluster_id: String,
    /// This node.
    pub node_id: String,
    /// The role.
    pub role: Role,
    /// The highest epoch this node led (0 if never primary).
    pub led_epoch: u64,
    /// The highest epoch granted by this node, and to whom.
    pub highest_granted: u64,
    /// The candidate of `highest_granted`.
    pub granted_to: String,
    /// The highest epoch granted to another candidate. A node refuses entries of epochs below
    /// it. (Its own self-grant matters only while its own candidacy runs, when it does not
    /// follow anyone; a candidacy that was decided or cut off by a crash never uses that epoch.)
    pub highest_granted_to_other: u64,
    /// The last promotion executed here: (epoch, forced).
    pub last_promotion: Option<(u64, bool)>,
    /// Decided idempotency keys → (control_seq, record).
    pub decided: HashMap<String, (u64, Decided)>,
    /// The last record's sequence.
    pub control_seq: u64,
}

impl Authority {
    /// Folds a whole ledger.
    pub fn fold(records: &[Record]) -> Result<Self, FoldError> {
        let Some(first) = records.first() else { return Err(FoldError::NoGenesis) };
        let Body::Genesis { cluster_id, node_id, primary } = &first.body else {
            return Err(FoldError::NoGenesis);
        };
        let mut a = Authority {
            cluster_id: cluster_id.clone(),
            node_id: node_id.clone(),
            role: if *primary { Role::Primary { epoch: 1 } } else { Role::Replica },
            led_epoch: u64::from(*primary),
            highest_granted: 0,
            granted_to: String::new(),
            highest_granted_to_other: 0,
            last_promotion: None,
            decided: HashMap::new(),
            control_seq: first.control_seq,
        };
        for r in &records[1..] {
            a.apply(r)?;
        }
        Ok(a)
    }

    /// Applies one more record.
    pub fn apply(&mut self, record: &Record) -> Result<(), FoldError> {
        let seq = record.control_seq;
        match &record.body {
            Body::Genesis { .. } => return Err(FoldError::SecondGenesis(seq)),
            Body::EpochGranted { epoch, candidate, .. } => {
                if *epoch <= self.highest_granted {
                    return Err(FoldError::GrantRegression { seq, epoch: *epoch, highest: self.highest_granted });
                }
                self.highest_granted = *epoch;
                self.granted_to = candidate.clone();
                if *candidate != self.node_id {
                    self.highest_granted_to_other = *epoch;
                }
            }
            Body::Decided(d) => {
                if self.decided.contains_key(&d.idempotency_key) {
                    return Err(FoldError::DecidedTwice { seq });
                }
                if let Decision::Executed { result } = &d.decision {
                    match result {
                        ActionResult::Promotion { epoch, forced, .. } => {
                            self.role = Role::Primary { epoch: *epoch };
                            self.led_epoch = *epoch;
                            self.last_promotion = Some((*epoch, *forced));
                        }
                        ActionResult::Demotion { fence_index, epoch, from_halt } => {
                            self.role =
                                Role::Demoted { epoch: *epoch, fence_index: *fence_index, may_discard: *from_halt };
                        }
                        ActionResult::Diagnostics { .. } => {}
                    }
                }
                self.decided.insert(d.idempotency_key.clone(), (seq, (**d).clone()));
            }
            Body::KeyClaimed { .. } => return Err(FoldError::MisplacedClaim { seq }),
            Body::Halted { reason, detail } => {
                let led_epoch = match self.role {
                    Role::Primary { epoch } => epoch,
                    _ => 0,
                };
                self.role = Role::Halted { reason: *reason, detail: detail.clone(), led_epoch };
            }
            Body::SuffixDiscarded { .. } => {
                if let Role::Demoted { may_discard, .. } = &mut self.role {
                    *may_discard = false;
                }
            }
        }
        self.control_seq = seq;
        Ok(())
    }

    /// The epoch this node is primary of, if it is primary.
    pub fn primary_epoch(&self) -> Option<u64> {
        match self.role {
            Role::Primary { epoch } => Some(epoch),
            _ => None,
        }
    }

    /// Whether the node is halted.
    pub fn is_halted(&self) -> bool {
        matches!(self.role, Role::Halted { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::records::{Action, ActionKind, Confirmation, Requester};

    fn rec(seq: u64, body: Body) -> Record {
        Record { control_seq: seq, body }
    }

    fn decided(key: &str, result: ActionResult) -> Body {
        Body::Decided(Box::new(Decided {
            idempotency_key: key.into(),
            request_digest: "00".into(),
            requester: Requester { role: "actor".into(), name: "a".into(), cert_sha256: "f".into() },
            action: Action { kind: ActionKind::Promote, target_node: "n1".into(), force: false },
            confirmation: Confirmation::default(),
            decision: Decision::Executed { result },
            plan_epoch: 0,
            intent: String::new(),
            signatures: vec![],
        }))
    }

    #[test]
    fn fold_follows_role_records() {
        let records = vec![
            rec(1, Body::Genesis { cluster_id: "c".into(), node_id: "n1".into(), primary: true }),
            rec(2, decided("k1", ActionResult::Demotion { fence_index: 9, epoch: 1, from_halt: false })),
            rec(3, Body::EpochGranted { epoch: 2, candidate: "n2".into(), forced: false }),
            rec(4, Body::EpochGranted { epoch: 3, candidate: "n1".into(), forced: false }),
            rec(5, decided("k2", ActionResult::Promotion { epoch: 3, forced: false, granted_by: vec!["n1".into()] })),
            rec(6, Body::Halted { reason: HaltReason::AuthorityAmbiguity, detail: "n2 at 4".into() }),
        ];
        let a = Authority::fold(&records).expect("fold");
        assert_eq!(
            a.role,
            Role::Halted { reason: HaltReason::AuthorityAmbiguity, detail: "n2 at 4".into(), led_epoch: 3 }
        );
        assert_eq!((a.highest_granted, a.granted_to.as_str(), a.control_seq, a.led_epoch), (3, "n1", 6, 3));
        assert_eq!(a.decided.len(), 2);
        let a4 = Authority::fold(&records[..4]).expect("fold");
        assert_eq!(a4.role, Role::Demoted { epoch: 1, fence_index: 9, may_discard: false });
    }

    #[test]
    fn fold_refuses_invalid_ledgers() {
        let g = rec(1, Body::Genesis { cluster_id: "c".into(), node_id: "n1".into(), primary: false });
        assert_eq!(Authority::fold(&[]), Err(FoldError::NoGenesis));
        assert_eq!(Authority::fold(&[g.clone(), rec(2, g.body.clone())]), Err(FoldError::SecondGenesis(2)));
        let grant = |s, e| rec(s, Body::EpochGranted { epoch: e, candidate: "n2".into(), forced: false });
        assert_eq!(
            Authority::fold(&[g.clone(), grant(2, 3), grant(3, 3)]),
            Err(FoldError::GrantRegression { seq: 3, epoch: 3, highest: 3 })
        );
        let d = decided("k", ActionResult::Demotion { fence_index: 1, epoch: 1, from_halt: false });
        assert_eq!(
            Authority::fold(&[g.clone(), rec(2, d.clone()), rec(3, d)]),
            Err(FoldError::DecidedTwice { seq: 3 })
        );
        let claim =
            Body::KeyClaimed { idempotency_key: "k".into(), claimant: "n2".into(), request_digest: "00".into() };
        assert_eq!(Authority::fold(&[g, rec(2, claim)]), Err(FoldError::MisplacedClaim { seq: 2 }));
    }
}
