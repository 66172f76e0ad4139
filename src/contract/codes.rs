//! Stable kernel rejection codes and the invariants each protects. These strings are part of
//! the public contract: they pass through the control plane verbatim (docs/errors.md).

/// The key was decided for another request (other digest or requester).
pub const IDEMPOTENCY_KEY_REUSED: &str = "AERO_IDEMPOTENCY_KEY_REUSED";
/// The key is executing now.
pub const IDEMPOTENCY_IN_FLIGHT: &str = "AERO_IDEMPOTENCY_IN_FLIGHT";
/// The ledger moved since the explanation was built.
pub const STALE_SEQUENCE: &str = "AERO_STALE_SEQUENCE";
/// The action names another node.
pub const WRONG_NODE: &str = "AERO_WRONG_NODE";
/// `force` on an action other than promotion.
pub const INVALID_ACTION: &str = "AERO_INVALID_ACTION";
/// A forced promotion without an enhanced confirmation acknowledging P6-A1a.
pub const FORCE_REQUIRES_ENHANCED: &str = "AERO_FORCE_REQUIRES_ENHANCED_CONFIRMATION";
/// Promotion check 1: already primary.
pub const PROMOTION_ALREADY_PRIMARY: &str = "AERO_PROMOTION_ALREADY_PRIMARY";
/// Promotion check 1: halted.
pub const PROMOTION_NODE_HALTED: &str = "AERO_PROMOTION_NODE_HALTED";
/// Promotion check 2: the previous primary is not fenced.
pub const PROMOTION_PRIMARY_ACTIVE: &str = "AERO_PROMOTION_PRIMARY_ACTIVE";
/// Promotion check 3: the candidate lacks committed entries.
pub const PROMOTION_REPLICA_BEHIND: &str = "AERO_PROMOTION_REPLICA_BEHIND";
/// Promotion check 4: no majority granted the epoch.
pub const PROMOTION_NO_QUORUM: &str = "AERO_PROMOTION_NO_QUORUM";
/// Demotion of a node that is not primary.
pub const DEMOTION_NOT_PRIMARY: &str = "AERO_DEMOTION_NOT_PRIMARY";
/// Demotion of a node halted for a reason demotion does not resolve.
pub const DEMOTION_NODE_HALTED: &str = "AERO_DEMOTION_NODE_HALTED";
/// A write to a node that is not the primary.
pub const NOT_PRIMARY: &str = "AERO_NOT_PRIMARY";
/// A write or read on a halted node.
pub const NODE_HALTED: &str = "AERO_NODE_HALTED";
/// A write not durable on a majority within its deadline.
pub const WRITE_NOT_ACKNOWLEDGED: &str = "AERO_WRITE_NOT_ACKNOWLEDGED";
/// A read on a primary that has not yet applied every entry committed before its epoch.
pub const PRIMARY_NOT_READY: &str = "AERO_PRIMARY_NOT_READY";
/// A malformed request field.
pub const INVALID_ARGUMENT: &str = "AERO_INVALID_ARGUMENT";
/// A request field over its documented maximum (see `crate::limits`).
pub const FIELD_TOO_LARGE: &str = "AERO_FIELD_TOO_LARGE";
/// A request that could not be framed or decoded.
pub const MALFORMED_REQUEST: &str = "AERO_MALFORMED_REQUEST";
/// The epoch the plan names is not the one the kernel would create (a promotion: another epoch
/// was granted or started since the explanation) or end (a demotion: the node leads another).
pub const PLAN_EPOCH_STALE: &str = "AERO_PLAN_EPOCH_STALE";
/// A Replication call claiming a node id (`from_node`, `follower_id`, `candidate_id`) other than
/// the one in the caller's certificate (P6-A3, P7-A1).
pub const NODE_IDENTITY_MISMATCH: &str = "AERO_NODE_IDENTITY_MISMATCH";
/// Another node holds the claim on the key (it decides it, or nobody does) and could not be asked
/// for its decision.
pub const IDEMPOTENCY_KEY_CLAIMED: &str = "AERO_IDEMPOTENCY_KEY_CLAIMED";
/// Fewer than a majority granted the key's claim: nothing was decided.
pub const IDEMPOTENCY_NO_QUORUM: &str = "AERO_IDEMPOTENCY_NO_QUORUM";
/// The execution task died (a bug): whether the action was decided is for GetOutcome to say.
pub const INTERNAL: &str = "AERO_INTERNAL";
/// The Execute request carries no intent, no signature, or no signature by the requester the
/// intent names: nothing an operator signed asks for this action (P7-A2).
pub const INTENT_MISSING: &str = "AERO_INTENT_MISSING";
/// A signature does not verify over the intent bytes with its certificate's key (or names a
/// signature scheme the kernel does not accept).
pub const INTENT_SIGNATURE_INVALID: &str = "AERO_INTENT_SIGNATURE_INVALID";
/// A signing certificate does not name role `actor` in this trust domain.
pub const INTENT_SIGNER_NOT_ACTOR: &str = "AERO_INTENT_SIGNER_NOT_ACTOR";
/// A signing certificate does not chain to the kernel's CA (or is not a usable client
/// certificate: wrong key usage, a CA, unparsable).
pub const INTENT_SIGNER_UNTRUSTED: &str = "AERO_INTENT_SIGNER_UNTRUSTED";
/// A signing certificate is revoked by the kernel's CRL (or its revocation status is unknown).
pub const INTENT_SIGNER_REVOKED: &str = "AERO_INTENT_SIGNER_REVOKED";
/// A signing certificate is outside its validity window on the kernel's clock.
pub const INTENT_SIGNER_EXPIRED: &str = "AERO_INTENT_SIGNER_EXPIRED";
/// A field of the Execute request differs from the signed intent's (the message names it).
pub const INTENT_FIELD_MISMATCH: &str = "AERO_INTENT_FIELD_MISMATCH";
/// The intent's not-after time has passed on the kernel's clock.
pub const INTENT_EXPIRED: &str = "AERO_INTENT_EXPIRED";
/// Fewer distinct actors signed than the kernel's approval policy requires for the command (the
/// message says how many more).
pub const INTENT_APPROVALS_MISSING: &str = "AERO_INTENT_APPROVALS_MISSING";
