//! Every way a control-plane request can fail, by who caused it. The one exhaustive mapping to
//! the wire is in `api::status`: a new variant cannot compile without a decision about its
//! code, status, failure domain, outcome and invariants.

use crate::wire::Outcome;

/// A control-plane error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    // ----- the operator's input (never reaches a kernel) -----
    /// A required field is empty.
    #[error("{field} is required")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// A field breaks its rule.
    #[error("{field}: {why}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// The rule.
        why: String,
    },
    /// A field over its documented maximum (see `crate::limits`).
    #[error("{0}")]
    TooLarge(Box<crate::limits::LimitViolation>),
    /// Not one of the closed command set.
    #[error("command {0:?} is not in the closed command set")]
    UnknownCommand(String),
    /// Not a configured node.
    #[error("{field}: {node:?} is not a configured node")]
    UnknownNode {
        /// The field.
        field: &'static str,
        /// What was given.
        node: String,
    },

    // ----- Phase 7 validation (never reaches a kernel) -----
    /// No pending action has this id.
    #[error("no pending action has this confirmation id")]
    ConfirmationUnknown,
    /// The pending action was already used (confirmed, declined, or discarded by a failure).
    #[error("this confirmation was already used; a new attempt needs a new request")]
    ConfirmationReused,
    /// The pending action expired.
    #[error("this pending action expired; request the action again")]
    ConfirmationExpired,
    /// Another certificate asked for the pending action.
    #[error("this pending action belongs to another caller certificate")]
    ConfirmationWrongCaller,
    /// The plan digest does not match.
    #[error("plan_digest does not match the explanation that was shown")]
    PlanMismatch,
    /// The typed target does not match.
    #[error("typed target {typed:?} is not the target {target:?}")]
    TargetMismatch {
        /// What was typed.
        typed: String,
        /// The target.
        target: String,
    },
    /// An enhanced confirmation lacks an acknowledgement or the acceptance.
    #[error("enhanced confirmation incomplete: {missing}")]
    IncompleteEnhanced {
        /// What is missing.
        missing: String,
    },
    /// The call carries gRPC retry metadata.
    #[error("this call carries grpc-previous-rpc-attempts={0}: Actor calls are never retried; issue a new request")]
    RetryRejected(String),
    /// Too many pending actions.
    #[error("{0} pending actions are waiting; confirm or decline some first")]
    TooManyPending(usize),
    /// The audit record that must precede the next step could not be made durable.
    #[error("the audit log cannot record this step ({0}); nothing was executed")]
    AuditUnavailable(String),

    // ----- the kernel said no -----
    /// A kernel rejection, verbatim.
    #[error("{node}: {code}: {message}")]
    Kernel {
        /// The node.
        node: String,
        /// Its stable code.
        code: String,
        /// Its message.
        message: String,
        /// Its invariants.
        invariants: Vec<String>,
        /// For stale sequences.
        current_control_seq: u64,
        /// For a stale plan epoch: the epoch the kernel found.
        current_epoch: u64,
    },

    // ----- transport -----
    /// A read could not reach a node.
    #[error("{node} could not be observed: {error}")]
    NodeUnreachable {
        /// The node.
        node: String,
        /// The transport error.
        error: String,
    },
    /// The target of an action could not be observed, so nothing can be explained or dispatched.
    #[error("{node} could not be observed: {error}; nothing was dispatched")]
    TargetUnreachable {
        /// The node.
        node: String,
        /// The transport error.
        error: String,
    },
    /// Dispatched, but no answer: the kernel's ledger decides.
    #[error(
        "no answer from {node} after dispatch ({error}); the outcome is unknown and is not assumed: run \
         `aerodbctl outcome {key}` (Observer.GetOutcome) to read the kernel's ledger"
    )]
    OutcomeUnknown {
        /// The node.
        node: String,
        /// The key to look up.
        key: String,
        /// The transport error.
        error: String,
    },

    // ----- the audit trail itself -----
    /// The audit trail could not be read (a damaged record, an I/O error).
    #[error("the audit trail cannot be read: {0}")]
    AuditUnreadable(String),
    /// No checkpoint exists yet and none could be written (an empty or unwritable log).
    #[error("no checkpoint can be written: the audit log is empty or unwritable")]
    NoCheckpoint,

    // ----- a bug -----
    /// Something that cannot happen did (a check that should have refused earlier did not, a
    /// task died): nothing was dispatched. The message says what; please report it.
    #[error("internal error (a bug; nothing was dispatched): {0}")]
    Internal(String),

    // ----- after execution -----
    /// The action's outcome is known but its audit record could not be written.
    #[error("the action's outcome ({outcome:?}) could not be recorded in the audit log: {why}")]
    OutcomeUnrecorded {
        /// What happened.
        outcome: Outcome,
        /// Why it is not recorded.
        why: String,
    },
}
