//! Limits on every request field of both servers, checked at the edge.
//!
//! Every string, bytes and repeated field of every request that the control plane or a node
//! accepts has a named maximum here. A handler checks its request with [`RequestLimits`] before
//! it audits, logs or forwards anything of it; a request over a limit is refused
//! INVALID_ARGUMENT / OPERATOR_INPUT / NOT_EXECUTED with a `google.rpc.BadRequest` naming the
//! field and its limit, and changes nothing. What is recorded of a refused value is
//! [`bounded`]: a short prefix, its length and its SHA-256, never the value itself. The whole
//! table is in docs/errors.md ("Limits").
//!
//! Whole messages are bounded before they are decoded (see [`crate::edge`]): a request body over
//! [`request_bytes_max`] of its method is refused without being read further.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::proto::control as cpb;
use crate::proto::kernel as kpb;

/// Bytes of a node id (the naming rule: 1..=63 of `[a-z0-9._-]`).
pub const NODE_ID_BYTES_MAX: usize = 63;
/// Bytes of a cluster id (the naming rule, as node ids).
pub const CLUSTER_ID_BYTES_MAX: usize = 63;
/// Bytes of an idempotency key (1..=128 of `[A-Za-z0-9._:-]`).
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;
/// Bytes of a confirmation id (128 random bits as 32 hex digits).
pub const CONFIRMATION_ID_BYTES_MAX: usize = 32;
/// Bytes of a plan digest (SHA-256 as 64 hex digits).
pub const PLAN_DIGEST_BYTES_MAX: usize = 64;
/// Bytes of the typed target of a confirmation (a node id).
pub const TYPED_TARGET_BYTES_MAX: usize = NODE_ID_BYTES_MAX;
/// Signatures one confirmation (and one Execute request) may carry: the requester's and
/// approvals ([`crate::contract::intent::SIGNERS_MAX`], 8).
pub const SIGNATURES_MAX: usize = crate::contract::intent::SIGNERS_MAX;
/// Bytes of one signer certificate (DER): 8 KiB, several times an ECDSA or RSA-4096 leaf.
pub const SIGNATURE_CERTIFICATE_BYTES_MAX: usize = 8 * 1024;
/// Bytes of one signature: 1 KiB (an RSA-8192 signature is 1024 bytes; ECDSA and Ed25519 are
/// under 150).
pub const SIGNATURE_BYTES_MAX: usize = 1024;
/// Bytes of a signed intent ([`crate::contract::intent::INTENT_BYTES_MAX`], 4096).
pub const INTENT_BYTES_MAX: usize = crate::contract::intent::INTENT_BYTES_MAX;
/// Acknowledged invariants one confirmation may carry.
pub const ACKNOWLEDGEMENTS_MAX: usize = 16;
/// Bytes of one acknowledged invariant id (ids are like `P6-A1a`).
pub const ACKNOWLEDGEMENT_BYTES_MAX: usize = 32;
/// Bytes of one audit query filter (correlation id, identity, command, stage) or reconstruction
/// key.
pub const AUDIT_FILTER_BYTES_MAX: usize = 256;
/// Records one ReadAudit call may ask for (0 means the default of 100).
pub const AUDIT_READ_LIMIT_MAX: u32 = 1000;
/// Bytes of a request digest (SHA-256).
pub const REQUEST_DIGEST_BYTES_MAX: usize = 32;
/// Bytes of a WAL entry hash carried in a request (SHA-256).
pub const HASH_BYTES_MAX: usize = 32;
/// Bytes of the `confirmed` audit record's leaf hash an Execute request carries (SHA-256).
pub const AUDIT_LEAF_BYTES_MAX: usize = 32;
/// Bytes of a requester's role name.
pub const ROLE_BYTES_MAX: usize = 16;
/// Bytes of a requester's identity name (the naming rule).
pub const IDENTITY_NAME_BYTES_MAX: usize = 63;
/// Bytes of a certificate fingerprint (SHA-256 as 64 hex digits).
pub const FINGERPRINT_BYTES_MAX: usize = 64;
/// Bytes of a Data key (the kernel's own rule, `kernel::kv` reads it from here).
pub const DATA_KEY_BYTES_MAX: usize = 1024;
/// Bytes of a Data value (the kernel's own rule, `kernel::kv` reads it from here).
pub const DATA_VALUE_BYTES_MAX: usize = 64 * 1024;
/// Pairs one Scan may ask for (0 means the kernel's default; `kernel::kv` reads it from here).
pub const DATA_SCAN_LIMIT_MAX: u32 = 1000;

/// Bytes of one encoded request message of the Data service (a key and a value plus framing).
pub const DATA_REQUEST_BYTES_MAX: usize = 128 * 1024;
/// Bytes of one encoded request message of every other service of either server.
pub const REQUEST_BYTES_MAX: usize = 64 * 1024;

/// Bytes of a refused value's prefix kept in records, logs and messages.
pub const ECHO_PREFIX_BYTES_MAX: usize = 32;

/// The largest encoded request message the method at `path` accepts.
pub fn request_bytes_max(path: &str) -> usize {
    if path.starts_with("/aerodb.kernel.v1.Data/") { DATA_REQUEST_BYTES_MAX } else { REQUEST_BYTES_MAX }
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes of a string or bytes field, or of a whole message.
    Bytes,
    /// Elements of a repeated field.
    Items,
    /// The value of a number field.
    Value,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Bytes => "bytes",
            Unit::Items => "items",
            Unit::Value => "",
        }
    }
}

/// A field over its limit: which field, the limit, and how large it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitViolation {
    /// The request field, e.g. `node_id` or `acknowledged_invariants[3]`.
    pub field: String,
    /// Its maximum.
    pub limit: u64,
    /// What the request carried.
    pub actual: u64,
    /// What is counted.
    pub unit: Unit,
}

impl LimitViolation {
    /// The rule, as `google.rpc.BadRequest` states it: `at most 63 bytes (got 600000)`.
    pub fn rule(&self) -> String {
        match self.unit {
            Unit::Value => format!("at most {} (got {})", self.limit, self.actual),
            u => format!("at most {} {} (got {})", self.limit, u.as_str(), self.actual),
        }
    }
}

impl fmt::Display for LimitViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}; the request was not executed", self.field, self.rule())
    }
}

impl std::error::Error for LimitViolation {}

/// A string field within `max` bytes.
pub fn check_str(field: &str, value: &str, max: usize) -> Result<(), LimitViolation> {
    check_len(field, value.len(), max, Unit::Bytes)
}

/// A bytes field within `max` bytes.
pub fn check_bytes(field: &str, value: &[u8], max: usize) -> Result<(), LimitViolation> {
    check_len(field, value.len(), max, Unit::Bytes)
}

/// A repeated string field: at most `items` elements of at most `each` bytes.
pub fn check_list(field: &str, values: &[String], items: usize, each: usize) -> Result<(), LimitViolation> {
    check_len(field, values.len(), items, Unit::Items)?;
    for (i, v) in values.iter().enumerate() {
        check_str(&format!("{field}[{i}]"), v, each)?;
    }
    Ok(())
}

/// A number field at most `max`.
pub fn check_value(field: &str, value: u64, max: u64) -> Result<(), LimitViolation> {
    if value > max {
        return Err(LimitViolation { field: field.to_string(), limit: max, actual: value, unit: Unit::Value });
    }
    Ok(())
}

fn check_len(field: &str, len: usize, max: usize, unit: Unit) -> Result<(), LimitViolation> {
    if len > max {
        return Err(LimitViolation { field: field.to_string(), limit: max as u64, actual: len as u64, unit });
    }
    Ok(())
}

/// `value` if it is within `max` bytes; otherwise its first [`ECHO_PREFIX_BYTES_MAX`] bytes (cut
/// on a character boundary), its length and its SHA-256:
/// `abc…[600000 bytes, sha256 9f86…]`. Everything a server records or echoes of a caller's
/// value goes through this, so no input can make a record, a log line or a message large.
pub fn bounded(value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_string();
    }
    let mut cut = ECHO_PREFIX_BYTES_MAX.min(max);
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…[{} bytes, sha256 {}]", &value[..cut], value.len(), hex::encode(Sha256::digest(value.as_bytes())))
}

/// A request whose every field has a maximum.
pub trait RequestLimits {
    /// The first field over its limit, in declaration order.
    fn check_limits(&self) -> Result<(), LimitViolation>;
}

macro_rules! no_fields {
    ($($t:ty),* $(,)?) => {
        $(impl RequestLimits for $t {
            fn check_limits(&self) -> Result<(), LimitViolation> {
                Ok(())
            }
        })*
    };
}

no_fields!(
    cpb::GetClusterStateRequest,
    cpb::GetReplicationStatusRequest,
    cpb::GetPromotionStateRequest,
    cpb::VerifyAuditRequest,
    cpb::GetCheckpointRequest,
    cpb::GetInclusionProofRequest,
    cpb::GetConsistencyProofRequest,
    kpb::ObserveRequest,
);

impl RequestLimits for cpb::GetNodeRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_str("node_id", &self.node_id, NODE_ID_BYTES_MAX)
    }
}

impl RequestLimits for cpb::InspectWalRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_str("node_id", &self.node_id, NODE_ID_BYTES_MAX)
    }
}

impl RequestLimits for cpb::InspectSnapshotsRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_str("node_id", &self.node_id, NODE_ID_BYTES_MAX)
    }
}

impl RequestLimits for cpb::GetOutcomeRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_str("idempotency_key", &self.idempotency_key, IDEMPOTENCY_KEY_BYTES_MAX)
    }
}

impl RequestLimits for cpb::RequestActionRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_str("target_node", &self.target_node, NODE_ID_BYTES_MAX)?;
        check_str("idempotency_key", &self.idempotency_key, IDEMPOTENCY_KEY_BYTES_MAX)
    }
}

impl RequestLimits for cpb::ConfirmActionRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_str("confirmation_id", &self.confirmation_id, CONFIRMATION_ID_BYTES_MAX)?;
        check_str("plan_digest", &self.plan_digest, PLAN_DIGEST_BYTES_MAX)?;
        check_str("typed_target", &self.typed_target, TYPED_TARGET_BYTES_MAX)?;
        check_list(
            "acknowledged_invariants",
            &self.acknowledged_invariants,
            ACKNOWLEDGEMENTS_MAX,
            ACKNOWLEDGEMENT_BYTES_MAX,
        )?;
        check_signatures("signatures", &self.signatures)
    }
}

impl RequestLimits for cpb::DeclineActionRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_str("confirmation_id", &self.confirmation_id, CONFIRMATION_ID_BYTES_MAX)
    }
}

impl RequestLimits for cpb::ReadAuditRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_value("limit", u64::from(self.limit), u64::from(AUDIT_READ_LIMIT_MAX))?;
        check_str("correlation_id", &self.correlation_id, AUDIT_FILTER_BYTES_MAX)?;
        check_str("identity", &self.identity, AUDIT_FILTER_BYTES_MAX)?;
        check_str("command", &self.command, AUDIT_FILTER_BYTES_MAX)?;
        check_str("stage", &self.stage, AUDIT_FILTER_BYTES_MAX)
    }
}

impl RequestLimits for cpb::ReconstructActionRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        use cpb::reconstruct_action_request::Key;
        match &self.key {
            Some(Key::CorrelationId(c)) => check_str("correlation_id", c, AUDIT_FILTER_BYTES_MAX),
            Some(Key::IdempotencyKey(k)) => check_str("idempotency_key", k, IDEMPOTENCY_KEY_BYTES_MAX),
            None => Ok(()),
        }
    }
}

/// The signatures of a confirmation or an Execute request.
fn check_signatures(field: &str, sigs: &[kpb::IntentSignature]) -> Result<(), LimitViolation> {
    check_len(field, sigs.len(), SIGNATURES_MAX, Unit::Items)?;
    for (i, s) in sigs.iter().enumerate() {
        check_bytes(&format!("{field}[{i}].certificate"), &s.certificate, SIGNATURE_CERTIFICATE_BYTES_MAX)?;
        check_bytes(&format!("{field}[{i}].signature"), &s.signature, SIGNATURE_BYTES_MAX)?;
        check_value(&format!("{field}[{i}].scheme"), u64::from(s.scheme), u64::from(u16::MAX))?;
    }
    Ok(())
}

fn check_requester(field: &str, r: Option<&kpb::Requester>) -> Result<(), LimitViolation> {
    let Some(r) = r else { return Ok(()) };
    check_str(&format!("{field}.role"), &r.role, ROLE_BYTES_MAX)?;
    check_str(&format!("{field}.name"), &r.name, IDENTITY_NAME_BYTES_MAX)?;
    check_str(&format!("{field}.cert_sha256"), &r.cert_sha256, FINGERPRINT_BYTES_MAX)
}

impl RequestLimits for kpb::ExecuteRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_str("idempotency_key", &self.idempotency_key, IDEMPOTENCY_KEY_BYTES_MAX)?;
        check_bytes("request_digest", &self.request_digest, REQUEST_DIGEST_BYTES_MAX)?;
        if let Some(a) = &self.action {
            check_str("action.target_node", &a.target_node, NODE_ID_BYTES_MAX)?;
        }
        check_requester("requester", self.requester.as_ref())?;
        check_bytes("intent", &self.intent, INTENT_BYTES_MAX)?;
        check_signatures("signatures", &self.signatures)?;
        check_bytes("confirmed_audit_leaf", &self.confirmed_audit_leaf, AUDIT_LEAF_BYTES_MAX)?;
        if let Some(c) = &self.confirmation {
            check_list(
                "confirmation.acknowledged_invariants",
                &c.acknowledged_invariants,
                ACKNOWLEDGEMENTS_MAX,
                ACKNOWLEDGEMENT_BYTES_MAX,
            )?;
        }
        Ok(())
    }
}

impl RequestLimits for kpb::GetOutcomeRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_str("idempotency_key", &self.idempotency_key, IDEMPOTENCY_KEY_BYTES_MAX)?;
        check_bytes("request_digest", &self.request_digest, REQUEST_DIGEST_BYTES_MAX)?;
        check_requester("requester", self.requester.as_ref())
    }
}

impl RequestLimits for kpb::StatusRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_str("cluster_id", &self.cluster_id, CLUSTER_ID_BYTES_MAX)?;
        check_str("from_node", &self.from_node, NODE_ID_BYTES_MAX)
    }
}

impl RequestLimits for kpb::PullRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_str("cluster_id", &self.cluster_id, CLUSTER_ID_BYTES_MAX)?;
        check_str("follower_id", &self.follower_id, NODE_ID_BYTES_MAX)?;
        check_bytes("prev_hash", &self.prev_hash, HASH_BYTES_MAX)
    }
}

impl RequestLimits for kpb::FetchSnapshotRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_str("cluster_id", &self.cluster_id, CLUSTER_ID_BYTES_MAX)?;
        check_str("follower_id", &self.follower_id, NODE_ID_BYTES_MAX)
    }
}

impl RequestLimits for kpb::HashAtRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_str("cluster_id", &self.cluster_id, CLUSTER_ID_BYTES_MAX)
    }
}

impl RequestLimits for kpb::GrantRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_str("cluster_id", &self.cluster_id, CLUSTER_ID_BYTES_MAX)?;
        check_str("candidate_id", &self.candidate_id, NODE_ID_BYTES_MAX)
    }
}

impl RequestLimits for kpb::ClaimKeyRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_str("cluster_id", &self.cluster_id, CLUSTER_ID_BYTES_MAX)?;
        check_str("claimant", &self.claimant, NODE_ID_BYTES_MAX)?;
        check_str("idempotency_key", &self.idempotency_key, IDEMPOTENCY_KEY_BYTES_MAX)?;
        check_bytes("request_digest", &self.request_digest, REQUEST_DIGEST_BYTES_MAX)
    }
}

impl RequestLimits for kpb::PutRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_bytes("key", &self.key, DATA_KEY_BYTES_MAX)?;
        check_bytes("value", &self.value, DATA_VALUE_BYTES_MAX)
    }
}

impl RequestLimits for kpb::GetRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_bytes("key", &self.key, DATA_KEY_BYTES_MAX)
    }
}

impl RequestLimits for kpb::DeleteRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_bytes("key", &self.key, DATA_KEY_BYTES_MAX)
    }
}

impl RequestLimits for kpb::ScanRequest {
    fn check_limits(&self) -> Result<(), LimitViolation> {
        check_bytes("start_key", &self.start_key, DATA_KEY_BYTES_MAX)?;
        check_bytes("end_key", &self.end_key, DATA_KEY_BYTES_MAX)?;
        check_value("limit", u64::from(self.limit), u64::from(DATA_SCAN_LIMIT_MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_keeps_short_values_and_summarises_long_ones() {
        assert_eq!(bounded("n1", 63), "n1");
        let long = "a".repeat(600_000);
        let b = bounded(&long, 63);
        assert!(b.starts_with(&"a".repeat(ECHO_PREFIX_BYTES_MAX)));
        assert!(b.contains("600000 bytes, sha256 "));
        assert!(b.len() < 32 + 100, "{}", b.len());
        // A multi-byte character across the cut is never split.
        let wide = "é".repeat(100);
        assert!(bounded(&wide, 10).starts_with(&"é".repeat(ECHO_PREFIX_BYTES_MAX.min(10) / 2)));
    }

    #[test]
    fn violations_name_the_field_and_the_limit() {
        let r = cpb::ConfirmActionRequest {
            confirmation_id: "c".into(),
            acknowledged_invariants: vec!["P6-A1".into(), "x".repeat(33)],
            ..Default::default()
        };
        let v = r.check_limits().expect_err("over");
        assert_eq!(v.field, "acknowledged_invariants[1]");
        assert_eq!(v.rule(), "at most 32 bytes (got 33)");
        let many = cpb::ConfirmActionRequest { acknowledged_invariants: vec!["a".into(); 17], ..Default::default() };
        assert_eq!(many.check_limits().expect_err("over").rule(), "at most 16 items (got 17)");
        let scan = kpb::ScanRequest { limit: 1001, ..Default::default() };
        assert_eq!(scan.check_limits().expect_err("over").rule(), "at most 1000 (got 1001)");
        assert_eq!(cpb::GetNodeRequest { node_id: "n".repeat(63) }.check_limits(), Ok(()));
    }

    mod props {
        use proptest::prelude::*;

        use super::*;
        use crate::audit::record::{Draft, ErrorFacts, Stage};
        use crate::control::api::convert;
        use crate::control::error::{ControlError, to_wire};

        fn sized() -> impl Strategy<Value = String> {
            (any::<char>(), 0usize..200_000, "[a-z0-9]{0,8}").prop_map(|(c, n, tail)| {
                let mut s = c.to_string().repeat(n / c.len_utf8().max(1));
                s.push_str(&tail);
                s
            })
        }

        /// What the Actor records of a refused RequestAction, serialised as the audit writer
        /// would, must stay far below the format's limit whatever the input.
        fn recorded_bytes(r: &cpb::RequestActionRequest, e: &ControlError) -> usize {
            let mut d = Draft::new(Stage::Rejected, "c", "request_promotion");
            d.target = bounded(&r.target_node, NODE_ID_BYTES_MAX);
            d.idempotency_key = bounded(&r.idempotency_key, IDEMPOTENCY_KEY_BYTES_MAX);
            d.error = Some(ErrorFacts::from(&to_wire(e)));
            serde_json::to_vec(&d).map(|v| v.len()).unwrap_or(usize::MAX)
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            #[test]
            fn p7_o2_any_field_sizes_give_invalid_argument_or_an_answer_never_internal_never_a_large_record(
                target in sized(), key in sized(), command in -2i32..7,
            ) {
                let r = cpb::RequestActionRequest { command, target_node: target, idempotency_key: key };
                let result = r.check_limits().map_err(|v| ControlError::TooLarge(Box::new(v)))
                    .and_then(|()| convert::action_request(&r, &["n1", "n2", "n3"]).map(|_| ()));
                if let Err(e) = result {
                    let w = to_wire(&e);
                    prop_assert_eq!(w.status, tonic::Code::InvalidArgument);
                    prop_assert!(w.message.len() <= 1024, "message of {} bytes", w.message.len());
                    prop_assert!(recorded_bytes(&r, &e) < 4096);
                }
            }

            #[test]
            fn p7_o2_arbitrary_bytes_decode_to_a_request_within_limits_or_a_named_violation(
                bytes in proptest::collection::vec(any::<u8>(), 0..4096),
            ) {
                use prost::Message;
                macro_rules! each {
                    ($($t:ty),*) => {$(
                        if let Ok(m) = <$t>::decode(bytes.as_slice()) {
                            if let Err(v) = m.check_limits() {
                                let w = to_wire(&ControlError::TooLarge(Box::new(v.clone())));
                                prop_assert_eq!(w.status, tonic::Code::InvalidArgument);
                                prop_assert_eq!(&w.field_errors[0].field, &v.field);
                            }
                        }
                    )*};
                }
                each!(
                    cpb::GetNodeRequest, cpb::InspectWalRequest, cpb::InspectSnapshotsRequest,
                    cpb::GetOutcomeRequest, cpb::RequestActionRequest, cpb::ConfirmActionRequest,
                    cpb::DeclineActionRequest, cpb::ReadAuditRequest, cpb::ReconstructActionRequest,
                    kpb::ExecuteRequest, kpb::GetOutcomeRequest, kpb::StatusRequest, kpb::PullRequest,
                    kpb::GrantRequest, kpb::PutRequest, kpb::ScanRequest, kpb::FetchSnapshotRequest
                );
            }
        }
    }
}
