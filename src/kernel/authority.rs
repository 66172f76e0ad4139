//! The node's authority as the fold of its ledger: role, epoch, grants, decided keys.
//!
//! Nothing else is persisted for authority. `Authority::fold` replays every record;
//! `Authority::apply` applies one more. The fold is pure and total over valid ledgers, so the
//! same ledger always gives the same authority (a property test checks it against a model).
//!
//! # Invariants
//! - The first record is `Genesis`; `control_seq` grows by one per record.
//! - `highest_granted` only grows: an epoch is granted at most once.
//! - A role changes only through a record: Genesis (primary of epoch 1), an executed promotion
//!   (primary), an executed demotion (demoted), a halt (halted), and only as the transition
//!   functions of [`Role`] allow (each consumes the old role and returns the next or refuses):
//!   a replica or demoted node is promoted to an epoch above every epoch it led; the primary of
//!   epoch E is demoted from E behind a Fence; a node halted for authority ambiguity or history
//!   divergence is demoted from the epoch it led; any role but halted halts. A node checks a
//!   record against them before writing it, and a ledger breaking them does not fold.

use std::collections::HashMap;

use super::records::{ActionResult, Decided, Decision, HaltReason, LedgerEvent, Record};

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

impl Role {
    /// The role after an executed promotion to `epoch`: only a replica or a demoted node is
    /// promoted (promotion check 1 refuses a primary and a halted node), and only to an epoch
    /// above every epoch it led (epochs only move forward). Otherwise the old role, unchanged.
    pub(crate) fn promoted(self, epoch: u64, led_epoch: u64) -> Result<Role, Role> {
        match self {
            Role::Replica | Role::Demoted { .. } if epoch > led_epoch => Ok(Role::Primary { epoch }),
            other => Err(other),
        }
    }

    /// The role after an executed demotion: the primary of `epoch` steps down behind its Fence,
    /// or (`from_halt`) a node halted for authority ambiguity or history divergence, having led
    /// `epoch`, steps down and may then discard its unreplicated suffix once. Otherwise the old
    /// role, unchanged.
    pub(crate) fn demoted(self, epoch: u64, fence_index: u64, from_halt: bool) -> Result<Role, Role> {
        let legal = match (&self, from_halt) {
            (Role::Primary { epoch: led }, false) => *led == epoch && fence_index > 0,
            (
                Role::Halted {
                    reason: HaltReason::AuthorityAmbiguity | HaltReason::HistoryDivergence, led_epoch, ..
                },
                true,
            ) => *led_epoch == epoch,
            _ => false,
        };
        if legal { Ok(Role::Demoted { epoch, fence_index, may_discard: from_halt }) } else { Err(self) }
    }

    /// The role after a halt: any role but halted (a halted node records no second halt); a
    /// primary keeps the epoch it led for the demotion that ends the halt.
    pub(crate) fn halted(self, reason: HaltReason, detail: String) -> Result<Role, Role> {
        let led_epoch = match self {
            Role::Primary { epoch } => epoch,
            Role::Halted { .. } => return Err(self),
            Role::Replica | Role::Demoted { .. } => 0,
        };
        Ok(Role::Halted { reason, detail, led_epoch })
    }

    /// The role after a discarded suffix: a demoted node's one permission to discard is spent;
    /// any other role is unchanged.
    pub(crate) fn after_discard(self) -> Role {
        match self {
            Role::Demoted { epoch, fence_index, .. } => Role::Demoted { epoch, fence_index, may_discard: false },
            other => other,
        }
    }

    fn name(&self) -> String {
        match self {
            Role::Replica => "a replica".into(),
            Role::Primary { epoch } => format!("the primary of epoch {epoch}"),
            Role::Demoted { epoch, .. } => format!("demoted (led epoch {epoch})"),
            Role::Halted { reason, led_epoch, .. } => format!("halted ({reason:?}, led epoch {led_epoch})"),
        }
    }
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
    /// A record that changes the role in a way no decision can (a bug: the record is refused
    /// before it is written, and a ledger holding one does not start).
    #[error("control_seq {seq}: {from} cannot {what}")]
    IllegalTransition {
        /// The record.
        seq: u64,
        /// The role before it.
        from: String,
        /// The change it records.
        what: String,
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
    pub(crate) cluster_id: String,
    /// This node.
    pub(crate) node_id: String,
    /// The role.
    pub role: Role,
    /// The highest epoch this node led (0 if never primary).
    pub led_epoch: u64,
    /// The highest epoch granted by this node, and to whom.
    pub(crate) highest_granted: u64,
    /// The candidate of `highest_granted`.
    pub(crate) granted_to: String,
    /// The highest epoch granted to another candidate. A node refuses entries of epochs below
    /// it. (Its own self-grant matters only while its own candidacy runs, when it does not
    /// follow anyone; a candidacy that was decided or cut off by a crash never uses that epoch.)
    pub(crate) highest_granted_to_other: u64,
    /// The last promotion executed here: (epoch, forced).
    pub(crate) last_promotion: Option<(u64, bool)>,
    /// Decided idempotency keys → (control_seq, record).
    pub decided: HashMap<String, (u64, Decided)>,
    /// The last record's sequence.
    pub control_seq: u64,
}

impl Authority {
    /// Folds a whole ledger.
    pub(crate) fn fold(records: &[Record]) -> Result<Self, FoldError> {
        let Some(first) = records.first() else { return Err(FoldError::NoGenesis) };
        let LedgerEvent::Genesis { cluster_id, node_id, primary } = &first.body else {
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

    /// The role `body` leaves this node in (`None`: the record changes no role), or why no
    /// decision can record it. Reads only: `Authority::apply` uses it, and the node checks a
    /// record with it before writing it.
    pub(crate) fn next_role(&self, seq: u64, body: &LedgerEvent) -> Result<Option<Role>, FoldError> {
        let illegal = |from: Role, what: String| FoldError::IllegalTransition { seq, from: from.name(), what };
        let next = match body {
            LedgerEvent::Decided(d) => match &d.decision {
                Decision::Executed { result: ActionResult::Promotion { epoch, .. } } => Some(
                    self.role
                        .clone()
                        .promoted(*epoch, self.led_epoch)
                        .map_err(|r| illegal(r, format!("be promoted to epoch {epoch}")))?,
                ),
                Decision::Executed { result: ActionResult::Demotion { fence_index, epoch, from_halt } } => {
                    Some(self.role.clone().demoted(*epoch, *fence_index, *from_halt).map_err(|r| {
                        illegal(
                            r,
                            format!("be demoted from epoch {epoch} (Fence {fence_index}, from halt {from_halt})"),
                        )
                    })?)
                }
                _ => None,
            },
            LedgerEvent::Halted { reason, detail } => {
                Some(self.role.clone().halted(*reason, detail.clone()).map_err(|r| illegal(r, "halt again".into()))?)
            }
            LedgerEvent::SuffixDiscarded { .. } => Some(self.role.clone().after_discard()),
            LedgerEvent::Genesis { .. } | LedgerEvent::EpochGranted { .. } | LedgerEvent::KeyClaimed { .. } => None,
        };
        Ok(next)
    }

    /// Applies one more record.
    pub(crate) fn apply(&mut self, record: &Record) -> Result<(), FoldError> {
        let seq = record.control_seq;
        let next = self.next_role(seq, &record.body)?;
        match &record.body {
            LedgerEvent::Genesis { .. } => return Err(FoldError::SecondGenesis(seq)),
            LedgerEvent::EpochGranted { epoch, candidate, .. } => {
                if *epoch <= self.highest_granted {
                    return Err(FoldError::GrantRegression { seq, epoch: *epoch, highest: self.highest_granted });
                }
                self.highest_granted = *epoch;
                self.granted_to = candidate.clone();
                if *candidate != self.node_id {
                    self.highest_granted_to_other = *epoch;
                }
            }
            LedgerEvent::Decided(d) => {
                if self.decided.contains_key(&d.idempotency_key) {
                    return Err(FoldError::DecidedTwice { seq });
                }
                if let Decision::Executed { result: ActionResult::Promotion { epoch, forced, .. } } = &d.decision {
                    self.led_epoch = *epoch;
                    self.last_promotion = Some((*epoch, *forced));
                }
                self.decided.insert(d.idempotency_key.clone(), (seq, (**d).clone()));
            }
            LedgerEvent::KeyClaimed { .. } => return Err(FoldError::MisplacedClaim { seq }),
            LedgerEvent::Halted { .. } | LedgerEvent::SuffixDiscarded { .. } => {}
        }
        if let Some(role) = next {
            self.role = role;
        }
        self.control_seq = seq;
        Ok(())
    }

    /// The epoch this node is primary of, if it is primary.
    pub(crate) fn primary_epoch(&self) -> Option<u64> {
        match self.role {
            Role::Primary { epoch } => Some(epoch),
            _ => None,
        }
    }

    /// Whether the node is halted.
    pub(crate) fn is_halted(&self) -> bool {
        matches!(self.role, Role::Halted { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::records::{Action, ActionKind, Confirmation, Requester};

    fn rec(seq: u64, body: LedgerEvent) -> Record {
        Record { control_seq: seq, body }
    }

    fn decided(key: &str, result: ActionResult) -> LedgerEvent {
        LedgerEvent::Decided(Box::new(Decided {
            idempotency_key: key.into(),
            request_digest: "00".into(),
            requester: Requester { role: "actor".into(), name: "a".into(), cert_sha256: "f".into() },
            action: Action { kind: ActionKind::Promote, target_node: "n1".into(), force: false },
            confirmation: Confirmation::default(),
            decision: Decision::Executed { result },
            plan_epoch: 0,
            intent: String::new(),
            signatures: vec![],
            confirmed_audit_leaf: String::new(),
        }))
    }

    #[test]
    fn fold_follows_role_records() {
        let records = vec![
            rec(1, LedgerEvent::Genesis { cluster_id: "c".into(), node_id: "n1".into(), primary: true }),
            rec(2, decided("k1", ActionResult::Demotion { fence_index: 9, epoch: 1, from_halt: false })),
            rec(3, LedgerEvent::EpochGranted { epoch: 2, candidate: "n2".into(), forced: false }),
            rec(4, LedgerEvent::EpochGranted { epoch: 3, candidate: "n1".into(), forced: false }),
            rec(5, decided("k2", ActionResult::Promotion { epoch: 3, forced: false, granted_by: vec!["n1".into()] })),
            rec(6, LedgerEvent::Halted { reason: HaltReason::AuthorityAmbiguity, detail: "n2 at 4".into() }),
        ];
        let a = Authority::fold(&records).expect("fold");
        assert_eq!(
            a.role,
            Role::Halted { reason: HaltReason::AuthorityAmbiguity, detail: "n2 at 4".into(), led_epoch: 3 }
        );
        assert_eq!((a.highest_granted, a.granted_to.as_str(), a.control_seq, a.led_epoch), (3, "n1", 6, 3));
        // P6-A1: the node refuses entries below an epoch it granted to another candidate (epoch 2
        // to n2); its grant to itself (epoch 3) does not raise that floor.
        assert_eq!(a.highest_granted_to_other, 2);
        assert_eq!(a.decided.len(), 2);
        let a4 = Authority::fold(&records[..4]).expect("fold");
        assert_eq!(a4.role, Role::Demoted { epoch: 1, fence_index: 9, may_discard: false });
    }

    fn diagnostics() -> ActionResult {
        ActionResult::Diagnostics {
            wal_bytes_read: 0,
            ledger_bytes_read: 0,
            wal_records_checked: 0,
            ledger_records_checked: 0,
            wal_ok: true,
            ledger_ok: true,
            first_problem: String::new(),
            declared_cost_bytes: 0,
        }
    }

    /// Every role × every role-changing record: the transition functions allow exactly the
    /// changes a decision can record (the table), and refuse the rest leaving the role as it was.
    #[test]
    fn p6_a2_role_transitions_are_exactly_the_legal_table() {
        let halted = |reason, led_epoch| Role::Halted { reason, detail: "d".into(), led_epoch };
        let roles = [
            Role::Replica,
            Role::Primary { epoch: 3 },
            Role::Demoted { epoch: 3, fence_index: 9, may_discard: false },
            halted(HaltReason::AuthorityAmbiguity, 3),
            halted(HaltReason::HistoryDivergence, 0),
            halted(HaltReason::WalGap, 0),
        ];
        for role in roles {
            // Promotion to epoch 4 of a node that led epoch 3 at most.
            let legal = matches!(role, Role::Replica | Role::Demoted { .. });
            assert_eq!(role.clone().promoted(4, 3).is_ok(), legal, "promote {role:?}");
            assert_eq!(role.clone().promoted(3, 3), Err(role.clone()), "epochs only move forward: {role:?}");
            // Demotion of the primary of epoch 3 with its Fence.
            let legal = role == Role::Primary { epoch: 3 };
            assert_eq!(role.clone().demoted(3, 10, false).is_ok(), legal, "demote {role:?}");
            assert!(role.clone().demoted(2, 10, false).is_err(), "another epoch: {role:?}");
            assert!(role.clone().demoted(3, 0, false).is_err(), "no Fence written (index 0): {role:?}");
            // Demotion out of a halt that a demotion resolves, for the epoch it led.
            let led = match &role {
                Role::Halted {
                    reason: HaltReason::AuthorityAmbiguity | HaltReason::HistoryDivergence,
                    led_epoch,
                    ..
                } => Some(*led_epoch),
                _ => None,
            };
            assert_eq!(
                role.clone().demoted(led.unwrap_or(3), 0, true).is_ok(),
                led.is_some(),
                "demote from halt {role:?}"
            );
            // A halt from anything but a halt.
            let legal = !matches!(role, Role::Halted { .. });
            assert_eq!(role.clone().halted(HaltReason::WalGap, "x".into()).is_ok(), legal, "halt {role:?}");
        }
        assert_eq!(
            Role::Primary { epoch: 3 }.halted(HaltReason::AuthorityAmbiguity, "x".into()),
            Ok(halted_with(HaltReason::AuthorityAmbiguity, "x", 3))
        );
        assert_eq!(
            Role::Demoted { epoch: 3, fence_index: 0, may_discard: true }.after_discard(),
            Role::Demoted { epoch: 3, fence_index: 0, may_discard: false }
        );
    }

    #[test]
    fn the_primary_epoch_is_named_only_for_a_primary_and_halted_only_for_a_halt() {
        let mut a = Authority::fold(&[rec(
            1,
            LedgerEvent::Genesis { cluster_id: "c".into(), node_id: "n1".into(), primary: true },
        )])
        .expect("fold");
        let cases = [
            (Role::Primary { epoch: 7 }, Some(7), false),
            (Role::Replica, None, false),
            (Role::Demoted { epoch: 7, fence_index: 9, may_discard: false }, None, false),
            (halted_with(HaltReason::WalGap, "x", 7), None, true),
        ];
        for (role, primary_epoch, halted) in cases {
            a.role = role.clone();
            assert_eq!((a.primary_epoch(), a.is_halted()), (primary_epoch, halted), "{role:?}");
        }
    }

    fn halted_with(reason: HaltReason, detail: &str, led_epoch: u64) -> Role {
        Role::Halted { reason, detail: detail.into(), led_epoch }
    }

    #[test]
    fn fold_refuses_a_ledger_recording_an_illegal_role_change() {
        let g = rec(1, LedgerEvent::Genesis { cluster_id: "c".into(), node_id: "n1".into(), primary: false });
        let demote = decided("k", ActionResult::Demotion { fence_index: 1, epoch: 1, from_halt: false });
        assert_eq!(
            Authority::fold(&[g, rec(2, demote)]),
            Err(FoldError::IllegalTransition {
                seq: 2,
                from: "a replica".into(),
                what: "be demoted from epoch 1 (Fence 1, from halt false)".into()
            })
        );
    }

    #[test]
    fn fold_refuses_invalid_ledgers() {
        let g = rec(1, LedgerEvent::Genesis { cluster_id: "c".into(), node_id: "n1".into(), primary: false });
        assert_eq!(Authority::fold(&[]), Err(FoldError::NoGenesis));
        assert_eq!(Authority::fold(&[g.clone(), rec(2, g.body.clone())]), Err(FoldError::SecondGenesis(2)));
        let grant = |s, e| rec(s, LedgerEvent::EpochGranted { epoch: e, candidate: "n2".into(), forced: false });
        assert_eq!(
            Authority::fold(&[g.clone(), grant(2, 3), grant(3, 3)]),
            Err(FoldError::GrantRegression { seq: 3, epoch: 3, highest: 3 })
        );
        let d = decided("k", diagnostics());
        assert_eq!(
            Authority::fold(&[g.clone(), rec(2, d.clone()), rec(3, d)]),
            Err(FoldError::DecidedTwice { seq: 3 })
        );
        let claim =
            LedgerEvent::KeyClaimed { idempotency_key: "k".into(), claimant: "n2".into(), request_digest: "00".into() };
        assert_eq!(Authority::fold(&[g, rec(2, claim)]), Err(FoldError::MisplacedClaim { seq: 2 }));
    }
}
