//! The kernel ledger's record types and their proto forms.
//!
//! These are persisted (as canonical JSON inside CRC frames) and returned verbatim by `Execute`
//! and `GetOutcome`: a decision read back from the ledger is byte for byte the decision that was
//! recorded.

use crate::proto::kernel as pb;

/// Why a node halted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HaltReason {
    /// A hole in the WAL.
    WalGap,
    /// This node's log and the primary's disagree.
    HistoryDivergence,
    /// This node was primary and learned of a higher epoch.
    AuthorityAmbiguity,
    /// A checksum failed on accepted data.
    WalCorruption,
}

impl HaltReason {
    /// The proto enum.
    pub(crate) fn to_proto(self) -> pb::HaltReason {
        match self {
            HaltReason::WalGap => pb::HaltReason::WalGap,
            HaltReason::HistoryDivergence => pb::HaltReason::HistoryDivergence,
            HaltReason::AuthorityAmbiguity => pb::HaltReason::AuthorityAmbiguity,
            HaltReason::WalCorruption => pb::HaltReason::WalCorruption,
        }
    }
}

pub use crate::contract::action::{Action, ActionKind, Confirmation, Requester};

/// A kernel rejection: stable code, message, invariants.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rejection {
    /// Stable `AERO_*` code.
    pub code: String,
    /// The message.
    pub message: String,
    /// Invariant ids.
    pub invariants: Vec<String>,
    /// For stale sequences: the current sequence.
    pub current_control_seq: u64,
    /// For a stale plan epoch: the epoch the kernel found (absent from the record when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub current_epoch: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Rejection {
    /// A rejection with no sequence.
    pub(crate) fn new(code: &str, invariants: &[&str], message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            invariants: invariants.iter().map(|s| s.to_string()).collect(),
            current_control_seq: 0,
            current_epoch: 0,
        }
    }

    /// The rejection of `check` (its code and invariants, from the one table in
    /// [`crate::contract::checks`]).
    pub(crate) fn of(check: &crate::contract::checks::Check, message: impl Into<String>) -> Self {
        Self::new(check.code, check.invariants, message)
    }

    /// The proto form.
    pub(crate) fn to_proto(&self) -> pb::Rejection {
        pb::Rejection {
            code: self.code.clone(),
            message: self.message.clone(),
            invariants: self.invariants.clone(),
            current_control_seq: self.current_control_seq,
            current_epoch: self.current_epoch,
        }
    }
}

/// What an executed action did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActionResult {
    /// Became primary.
    Promotion {
        /// The new epoch.
        epoch: u64,
        /// Fence check skipped.
        forced: bool,
        /// Who granted it.
        granted_by: Vec<String>,
    },
    /// Stepped down.
    Demotion {
        /// Index of the Fence (0 when demoted from a halt).
        fence_index: u64,
        /// The epoch led until then.
        epoch: u64,
        /// Demoted from a halted state (no Fence written).
        from_halt: bool,
    },
    /// Scanned.
    Diagnostics {
        /// WAL bytes read.
        wal_bytes_read: u64,
        /// Ledger bytes read.
        ledger_bytes_read: u64,
        /// WAL records checked.
        wal_records_checked: u64,
        /// Ledger records checked.
        ledger_records_checked: u64,
        /// WAL consistent.
        wal_ok: bool,
        /// Ledger consistent.
        ledger_ok: bool,
        /// First problem, if any.
        first_problem: String,
        /// Declared cost.
        declared_cost_bytes: u64,
    },
}

impl ActionResult {
    /// The proto form.
    pub(crate) fn to_proto(&self) -> pb::ActionResult {
        use pb::action_result::Result as R;
        let result = match self {
            ActionResult::Promotion { epoch, forced, granted_by } => {
                R::Promotion(pb::PromotionResult { epoch: *epoch, forced: *forced, granted_by: granted_by.clone() })
            }
            ActionResult::Demotion { fence_index, epoch, from_halt } => {
                R::Demotion(pb::DemotionResult { fence_index: *fence_index, epoch: *epoch, from_halt: *from_halt })
            }
            ActionResult::Diagnostics {
                wal_bytes_read,
                ledger_bytes_read,
                wal_records_checked,
                ledger_records_checked,
                wal_ok,
                ledger_ok,
                first_problem,
                declared_cost_bytes,
            } => R::Diagnostics(pb::DiagnosticsResult {
                wal_bytes_read: *wal_bytes_read,
                ledger_bytes_read: *ledger_bytes_read,
                wal_records_checked: *wal_records_checked,
                ledger_records_checked: *ledger_records_checked,
                wal_ok: *wal_ok,
                ledger_ok: *ledger_ok,
                first_problem: first_problem.clone(),
                declared_cost_bytes: *declared_cost_bytes,
            }),
        };
        pb::ActionResult { result: Some(result) }
    }
}

/// The decision of a Decided record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Ran.
    Executed {
        /// What it did.
        result: ActionResult,
    },
    /// Refused.
    Rejected {
        /// Why.
        rejection: Rejection,
    },
}

/// A decided idempotency key: the kernel's commit point.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Decided {
    /// The client's key.
    pub idempotency_key: String,
    /// Hex SHA-256 of the canonical request.
    pub request_digest: String,
    /// Who asked.
    pub requester: Requester,
    /// What was asked.
    pub action: Action,
    /// The confirmation given.
    pub confirmation: Confirmation,
    /// The decision.
    pub decision: Decision,
    /// The epoch the request's plan named (absent from the record when 0: diagnostics, or a
    /// record written before plans named epochs).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub plan_epoch: u64,
    /// The signed intent, hex (absent from records decided before intents were signed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub intent: String,
    /// The signatures the request carried, as sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<crate::contract::intent::Signature>,
    /// The leaf hash (hex) of the control plane's `confirmed` audit record that led to this
    /// decision, as the request carried it: stored verbatim, not verifiable by the kernel (absent
    /// when the request carried none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub confirmed_audit_leaf: String,
}

impl Decided {
    /// The proto form, with the record's own sequence.
    pub(crate) fn to_proto(&self, control_seq: u64) -> pb::DecidedRecord {
        let (decision, rejection, result) = match &self.decision {
            Decision::Executed { result } => (pb::Decision::Executed, None, Some(result.to_proto())),
            Decision::Rejected { rejection } => (pb::Decision::Rejected, Some(rejection.to_proto()), None),
        };
        pb::DecidedRecord {
            idempotency_key: self.idempotency_key.clone(),
            request_digest: hex::decode(&self.request_digest).unwrap_or_default(),
            requester: Some(self.requester.to_proto()),
            action: Some(self.action.to_proto()),
            decision: decision as i32,
            rejection,
            result,
            control_seq,
            confirmation: Some(self.confirmation.to_proto()),
            plan_epoch: self.plan_epoch,
            intent: hex::decode(&self.intent).unwrap_or_default(),
            signatures: self.signatures.iter().map(|s| s.to_proto()).collect(),
            confirmed_audit_leaf: hex::decode(&self.confirmed_audit_leaf).unwrap_or_default(),
            record_hash: Record { control_seq, body: LedgerEvent::Decided(Box::new(self.clone())) }.hash().to_vec(),
        }
    }
}

/// What one ledger record says happened: its `type` and fields on disk (named apart from the
/// audit log's record `Body`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LedgerEvent {
    /// Written once by `aerodb node init`: binds the data dir to a cluster and a node id.
    Genesis {
        /// The cluster.
        cluster_id: String,
        /// This node.
        node_id: String,
        /// This node is the genesis primary of epoch 1.
        primary: bool,
    },
    /// This node granted `epoch` to `candidate` (itself included). At most once per epoch.
    EpochGranted {
        /// The epoch granted.
        epoch: u64,
        /// To whom.
        candidate: String,
        /// The candidate's promotion is forced.
        forced: bool,
    },
    /// A decided idempotency key.
    Decided(Box<Decided>),
    /// This node promised `claimant` that no other node decides `idempotency_key` with its
    /// grant. At most one claimant per key.
    KeyClaimed {
        /// The key.
        idempotency_key: String,
        /// The node that may decide it.
        claimant: String,
        /// Hex SHA-256 of the request the claimant asked it for.
        request_digest: String,
    },
    /// The node stopped taking writes for a reason it cannot resolve alone.
    Halted {
        /// Why.
        reason: HaltReason,
        /// Detail (which peer, which epoch).
        detail: String,
    },
    /// A demoted node discarded its unreplicated suffix to follow a newer primary.
    SuffixDiscarded {
        /// First discarded index.
        from_index: u64,
        /// Last discarded index.
        to_index: u64,
        /// The epoch of the primary it now follows.
        following_epoch: u64,
        /// Where the copy of the discarded entries is.
        copy: String,
    },
}

/// One ledger record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// Strictly increasing by one, never reset.
    pub control_seq: u64,
    /// What happened.
    pub body: LedgerEvent,
}

impl Record {
    /// SHA-256 of the record's ledger payload (its JSON, exactly as the ledger writes it; a
    /// record read back hashes to the same value, since the JSON of a record is a function of
    /// its fields).
    pub fn hash(&self) -> [u8; 32] {
        use sha2::Digest;
        // Serializing these plain structs cannot fail (no maps with non-string keys, no
        // fallible Serialize impls); an empty payload's hash would never match a stored one.
        let payload = serde_json::to_vec(self).unwrap_or_default();
        sha2::Sha256::digest(payload).into()
    }
}
