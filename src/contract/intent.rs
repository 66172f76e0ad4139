//! The signed intent: the exact, canonical bytes of one confirmed action, which the operator
//! signs with the key of their actor certificate and the kernel verifies before it decides.
//!
//! The control plane builds an [`Intent`] when it explains an action and returns its bytes in
//! the pending action; clients render what they show the operator from those bytes (so what is
//! read is what is signed), sign them, and send the signatures back with ConfirmAction; the
//! kernel decodes the same bytes, checks every field against the Execute request it came with,
//! and stores bytes and signatures in its `Decided` record. docs/security-model.md describes the
//! format byte by byte; this module is its one encoder and decoder.
//!
//! # Format
//!
//! `MAGIC` (16 bytes), then [`FIELD_COUNT`] fields in tag order 1, 2, …, each
//! `tag: u8 ‖ length: u16 big-endian ‖ value`. Integers are 8-byte big-endian, flags one byte
//! (0 or 1), digests 32 raw bytes, text UTF-8. Nothing may follow the last field.
//!
//! # Invariants
//!
//! - Canonical: [`Intent::decode`] accepts exactly the outputs of [`Intent::encode`]
//!   (`encode(decode(b)) == b` for every accepted `b`), so two different byte strings never
//!   name the same intent and a signature covers one reading only.
//! - Bounded: an encoding is at most [`INTENT_BYTES_MAX`] bytes; the decoder checks every length
//!   against the bytes left before reading.

use super::action::{Action, ActionKind, Confirmation, Requester};

/// The first 16 bytes of every intent: names the format and its version.
pub const MAGIC: &[u8; 16] = b"AERODB-INTENT/1\n";

/// Number of fields after the magic.
pub const FIELD_COUNT: u8 = 15;

/// Longest intent encoding accepted, in bytes: 4096. The largest valid intent (63-byte ids, a
/// 128-byte key, every known invariant acknowledged) is under 1 KiB.
pub const INTENT_BYTES_MAX: usize = 4096;

/// The closed set of commands an intent can name (Phase 7's mutating and diagnostic commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// `run_diagnostics`.
    RunDiagnostics,
    /// `request_promotion`.
    RequestPromotion,
    /// `request_demotion`.
    RequestDemotion,
    /// `force_promotion`.
    ForcePromotion,
}

impl Command {
    /// Every command, in a fixed order.
    pub const ALL: [Command; 4] =
        [Command::RunDiagnostics, Command::RequestPromotion, Command::RequestDemotion, Command::ForcePromotion];

    /// The command's name (the one the audit records and docs use).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunDiagnostics => "run_diagnostics",
            Self::RequestPromotion => "request_promotion",
            Self::RequestDemotion => "request_demotion",
            Self::ForcePromotion => "force_promotion",
        }
    }

    /// The command of a name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The command an action is (a forced promotion is `force_promotion`; `force` on anything
    /// else names no command).
    pub fn of(action: &Action) -> Option<Self> {
        match (action.kind, action.force) {
            (ActionKind::Promote, true) => Some(Self::ForcePromotion),
            (ActionKind::Promote, false) => Some(Self::RequestPromotion),
            (ActionKind::Demote, false) => Some(Self::RequestDemotion),
            (ActionKind::Diagnostics, false) => Some(Self::RunDiagnostics),
            (_, true) => None,
        }
    }

    /// The kind of action the command executes, and whether it is forced.
    pub fn action_kind(self) -> (ActionKind, bool) {
        match self {
            Self::RunDiagnostics => (ActionKind::Diagnostics, false),
            Self::RequestPromotion => (ActionKind::Promote, false),
            Self::RequestDemotion => (ActionKind::Demote, false),
            Self::ForcePromotion => (ActionKind::Promote, true),
        }
    }
}

/// One confirmed action, as the operator signs it. See the module docs for the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// The cluster the action belongs to (the kernel's `cluster_id`).
    pub cluster_id: String,
    /// The command.
    pub command: Command,
    /// The node that executes it.
    pub target_node: String,
    /// The epoch the plan creates (promotion) or ends (demotion); 0 for diagnostics.
    pub plan_epoch: u64,
    /// The target's control sequence the explanation was built on.
    pub expected_control_seq: u64,
    /// SHA-256 of the explanation the operator was shown.
    pub plan_digest: [u8; 32],
    /// The client's idempotency key.
    pub idempotency_key: String,
    /// The confirmation the command requires: kind, acknowledged invariant ids (in the order the
    /// requirements list them), acceptance of responsibility.
    pub confirmation: Confirmation,
    /// Who requested the action (from their actor certificate).
    pub requester: Requester,
    /// The intent is void after this time (Unix milliseconds, on the kernel's clock).
    pub not_after_unix_ms: u64,
}

/// Why bytes are not an intent. Each variant names the field or rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntentError {
    /// Longer than [`INTENT_BYTES_MAX`].
    #[error("intent is {0} bytes; at most {INTENT_BYTES_MAX} are allowed")]
    TooLong(usize),
    /// The magic is missing or names another version.
    #[error("intent does not start with {:?}", String::from_utf8_lossy(MAGIC))]
    BadMagic,
    /// A field's tag, length or value breaks the format.
    #[error("intent field {field} (tag {tag}): {why}")]
    Field {
        /// The field's name.
        field: &'static str,
        /// Its tag.
        tag: u8,
        /// The rule broken.
        why: String,
    },
    /// Bytes follow the last field.
    #[error("intent has {0} bytes after its last field")]
    Trailing(usize),
}

/// The field names, by tag (index = tag − 1).
const FIELDS: [&str; FIELD_COUNT as usize] = [
    "cluster_id",
    "command",
    "target_node",
    "plan_epoch",
    "expected_control_seq",
    "plan_digest",
    "idempotency_key",
    "force",
    "confirmation_kind",
    "acknowledged_invariants",
    "accept_responsibility",
    "requester_role",
    "requester_name",
    "requester_cert_sha256",
    "not_after_unix_ms",
];

impl Intent {
    /// The canonical bytes (the module docs' format). Text fields longer than `u16::MAX` bytes
    /// cannot occur for a valid intent (every field has a smaller limit at the edge); they are
    /// cut to that length here, and such an intent then fails [`Intent::decode`]'s rules.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(MAGIC);
        let cert = hex::decode(&self.requester.cert_sha256).unwrap_or_default();
        let acknowledged = self.confirmation.acknowledged_invariants.join(",");
        let force = self.command == Command::ForcePromotion;
        let values: [&[u8]; FIELD_COUNT as usize] = [
            self.cluster_id.as_bytes(),
            self.command.as_str().as_bytes(),
            self.target_node.as_bytes(),
            &self.plan_epoch.to_be_bytes(),
            &self.expected_control_seq.to_be_bytes(),
            &self.plan_digest,
            self.idempotency_key.as_bytes(),
            &[u8::from(force)],
            self.confirmation.kind.as_bytes(),
            acknowledged.as_bytes(),
            &[u8::from(self.confirmation.accept_responsibility)],
            self.requester.role.as_bytes(),
            self.requester.name.as_bytes(),
            &cert,
            &self.not_after_unix_ms.to_be_bytes(),
        ];
        for (i, v) in values.iter().enumerate() {
            let len = v.len().min(usize::from(u16::MAX));
            out.push(i as u8 + 1);
            out.extend_from_slice(&(len as u16).to_be_bytes());
            out.extend_from_slice(&v[..len]);
        }
        out
    }

    /// Decodes canonical bytes; anything else is an [`IntentError`] naming the field and rule.
    pub fn decode(bytes: &[u8]) -> Result<Self, IntentError> {
        if bytes.len() > INTENT_BYTES_MAX {
            return Err(IntentError::TooLong(bytes.len()));
        }
        let mut rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or(IntentError::BadMagic)?;
        let mut values: Vec<&[u8]> = Vec::with_capacity(FIELD_COUNT as usize);
        for tag in 1..=FIELD_COUNT {
            let field = FIELDS[usize::from(tag - 1)];
            let bad = |why: String| IntentError::Field { field, tag, why };
            let Some((&[t, hi, lo], after)) = rest.split_first_chunk::<3>() else {
                return Err(bad("missing (the intent ends before it)".into()));
            };
            if t != tag {
                return Err(bad(format!("found tag {t} where tag {tag} must be")));
            }
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            if len > after.len() {
                return Err(bad(format!("length {len} is more than the {} bytes left", after.len())));
            }
            let (value, after) = after.split_at(len);
            values.push(value);
            rest = after;
        }
        if !rest.is_empty() {
            return Err(IntentError::Trailing(rest.len()));
        }
        let field = |tag: u8| (FIELDS[usize::from(tag - 1)], tag, values[usize::from(tag - 1)]);
        let text = |tag: u8| {
            let (name, tag, v) = field(tag);
            std::str::from_utf8(v).map(str::to_string).map_err(|_| IntentError::Field {
                field: name,
                tag,
                why: "is not UTF-8".into(),
            })
        };
        let fixed = |tag: u8, n: usize| {
            let (name, tag, v) = field(tag);
            if v.len() == n {
                Ok(v)
            } else {
                Err(IntentError::Field { field: name, tag, why: format!("must be {n} bytes, is {}", v.len()) })
            }
        };
        let u64_at = |tag: u8| -> Result<u64, IntentError> {
            let v = fixed(tag, 8)?;
            let mut b = [0u8; 8];
            b.copy_from_slice(v);
            Ok(u64::from_be_bytes(b))
        };
        let flag = |tag: u8| -> Result<bool, IntentError> {
            match fixed(tag, 1)? {
                [0] => Ok(false),
                [1] => Ok(true),
                _ => {
                    let (name, tag, _) = field(tag);
                    Err(IntentError::Field { field: name, tag, why: "must be 0 or 1".into() })
                }
            }
        };
        let command_name = text(2)?;
        let command = Command::parse(&command_name).ok_or_else(|| IntentError::Field {
            field: "command",
            tag: 2,
            why: format!("{command_name:?} is not a command"),
        })?;
        let force = flag(8)?;
        if force != (command == Command::ForcePromotion) {
            return Err(IntentError::Field {
                field: "force",
                tag: 8,
                why: "must be 1 exactly for force_promotion".into(),
            });
        }
        let kind = text(9)?;
        if kind != "standard" && kind != "enhanced" {
            return Err(IntentError::Field {
                field: "confirmation_kind",
                tag: 9,
                why: "must be standard or enhanced".into(),
            });
        }
        let acknowledged = text(10)?;
        let acknowledged_invariants: Vec<String> =
            if acknowledged.is_empty() { Vec::new() } else { acknowledged.split(',').map(str::to_string).collect() };
        if acknowledged_invariants.iter().any(|i| i.is_empty()) {
            return Err(IntentError::Field {
                field: "acknowledged_invariants",
                tag: 10,
                why: "an empty id (ids are joined by single commas)".into(),
            });
        }
        let mut plan_digest = [0u8; 32];
        plan_digest.copy_from_slice(fixed(6, 32)?);
        let intent = Self {
            cluster_id: text(1)?,
            command,
            target_node: text(3)?,
            plan_epoch: u64_at(4)?,
            expected_control_seq: u64_at(5)?,
            plan_digest,
            idempotency_key: text(7)?,
            confirmation: Confirmation { kind, acknowledged_invariants, accept_responsibility: flag(11)? },
            requester: Requester { role: text(12)?, name: text(13)?, cert_sha256: hex::encode(fixed(14, 32)?) },
            not_after_unix_ms: u64_at(15)?,
        };
        // Canonical: one reading per byte string (e.g. no field a valid encoder would not write).
        if intent.encode() != bytes {
            return Err(IntentError::Field { field: "encoding", tag: 0, why: "is not canonical".into() });
        }
        Ok(intent)
    }

    /// The action the intent names.
    pub fn action(&self) -> Action {
        let (kind, force) = self.command.action_kind();
        Action { kind, target_node: self.target_node.clone(), force }
    }

    /// Hex SHA-256 of the encoding: how records and messages name an intent briefly.
    pub fn sha256_hex(bytes: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    }
}

/// One signature over an intent, as sent and as recorded (hex in the ledger's JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signature {
    /// The signer's certificate, DER, hex.
    pub certificate: String,
    /// The TLS SignatureScheme code.
    pub scheme: u16,
    /// The signature, hex.
    pub signature: String,
}

impl Signature {
    /// From the proto form; `None` when the scheme does not fit a TLS SignatureScheme code.
    pub fn from_proto(s: &crate::proto::kernel::IntentSignature) -> Option<Self> {
        Some(Self {
            certificate: hex::encode(&s.certificate),
            scheme: u16::try_from(s.scheme).ok()?,
            signature: hex::encode(&s.signature),
        })
    }

    /// The proto form.
    pub fn to_proto(&self) -> crate::proto::kernel::IntentSignature {
        crate::proto::kernel::IntentSignature {
            certificate: hex::decode(&self.certificate).unwrap_or_default(),
            scheme: u32::from(self.scheme),
            signature: hex::decode(&self.signature).unwrap_or_default(),
        }
    }
}

/// How many distinct actors must sign an intent before the kernel executes it, per command.
/// Kernel configuration (`[approvals]`), identical on every node; each value 1..=[`SIGNERS_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Approvals {
    /// `run_diagnostics`. Default 1.
    pub run_diagnostics: u32,
    /// `request_promotion`. Default 1.
    pub request_promotion: u32,
    /// `request_demotion`. Default 1.
    pub request_demotion: u32,
    /// `force_promotion`. Default 1 (the operator guide suggests 2).
    pub force_promotion: u32,
}

/// Most signatures one intent can carry (requester and approvals): 8.
pub const SIGNERS_MAX: usize = 8;

impl Default for Approvals {
    fn default() -> Self {
        Self { run_diagnostics: 1, request_promotion: 1, request_demotion: 1, force_promotion: 1 }
    }
}

impl Approvals {
    /// The proto form (views).
    pub fn to_proto(&self) -> crate::proto::kernel::ApprovalPolicy {
        crate::proto::kernel::ApprovalPolicy {
            run_diagnostics: self.run_diagnostics,
            request_promotion: self.request_promotion,
            request_demotion: self.request_demotion,
            force_promotion: self.force_promotion,
        }
    }

    /// From the proto form (a view of a node).
    pub fn from_proto(p: &crate::proto::kernel::ApprovalPolicy) -> Self {
        Self {
            run_diagnostics: p.run_diagnostics,
            request_promotion: p.request_promotion,
            request_demotion: p.request_demotion,
            force_promotion: p.force_promotion,
        }
    }

    /// Signatures of distinct actors `command` needs.
    pub fn required(&self, command: Command) -> u32 {
        match command {
            Command::RunDiagnostics => self.run_diagnostics,
            Command::RequestPromotion => self.request_promotion,
            Command::RequestDemotion => self.request_demotion,
            Command::ForcePromotion => self.force_promotion,
        }
    }

    /// The first value out of 1..=[`SIGNERS_MAX`], as (field, value).
    pub fn out_of_range(&self) -> Option<(&'static str, u32)> {
        Command::ALL
            .into_iter()
            .map(|c| (c.as_str(), self.required(c)))
            .find(|(_, n)| *n == 0 || *n as usize > SIGNERS_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Intent {
        Intent {
            cluster_id: "c1".into(),
            command: Command::ForcePromotion,
            target_node: "n2".into(),
            plan_epoch: 7,
            expected_control_seq: 42,
            plan_digest: [9; 32],
            idempotency_key: "key-1".into(),
            confirmation: Confirmation {
                kind: "enhanced".into(),
                acknowledged_invariants: vec!["P6-A1".into(), "P6-A1a".into()],
                accept_responsibility: true,
            },
            requester: Requester { role: "actor".into(), name: "alice".into(), cert_sha256: hex::encode([7u8; 32]) },
            not_after_unix_ms: 1_800_000_000_000,
        }
    }

    #[test]
    fn p15_intent_round_trips_and_is_canonical() {
        let i = sample();
        let b = i.encode();
        assert_eq!(&b[..16], MAGIC);
        assert_eq!(Intent::decode(&b), Ok(i.clone()));
        // Every single-byte change is either refused or decodes to another intent.
        for pos in 0..b.len() {
            let mut t = b.clone();
            t[pos] ^= 0x01;
            if let Ok(other) = Intent::decode(&t) {
                assert_ne!(other, i, "byte {pos} changed but the intent read the same");
            }
        }
    }

    #[test]
    fn p15_intent_decoder_names_the_broken_field() {
        let b = sample().encode();
        assert_eq!(Intent::decode(&b[..10]), Err(IntentError::BadMagic));
        assert!(matches!(
            Intent::decode(&b[..b.len() - 1]),
            Err(IntentError::Field { field: "not_after_unix_ms", .. })
        ));
        let mut long = b.clone();
        long.push(0);
        assert_eq!(Intent::decode(&long), Err(IntentError::Trailing(1)));
        assert_eq!(Intent::decode(&vec![0; INTENT_BYTES_MAX + 1]), Err(IntentError::TooLong(INTENT_BYTES_MAX + 1)));
        let mut forced = sample();
        forced.command = Command::RequestPromotion;
        let mut bytes = forced.encode();
        // Set the force flag (tag 8's single value byte) on a non-forced command.
        let at = find_tag(&bytes, 8) + 3;
        bytes[at] = 1;
        assert!(matches!(Intent::decode(&bytes), Err(IntentError::Field { field: "force", .. })));
    }

    fn find_tag(b: &[u8], tag: u8) -> usize {
        let mut at = MAGIC.len();
        loop {
            if b[at] == tag {
                return at;
            }
            at += 3 + usize::from(u16::from_be_bytes([b[at + 1], b[at + 2]]));
        }
    }

    #[test]
    fn p15_approvals_default_to_one_and_reject_out_of_range() {
        let a = Approvals::default();
        assert!(Command::ALL.iter().all(|c| a.required(*c) == 1));
        assert_eq!(a.out_of_range(), None);
        assert_eq!(Approvals { force_promotion: 0, ..a }.out_of_range(), Some(("force_promotion", 0)));
        assert_eq!(Approvals { run_diagnostics: 9, ..a }.out_of_range(), Some(("run_diagnostics", 9)));
    }

    proptest::proptest! {
        #[test]
        fn p15_intent_decoder_never_panics_and_accepts_only_canonical(bytes in proptest::collection::vec(0u8..=255, 0..600)) {
            if let Ok(i) = Intent::decode(&bytes) {
                proptest::prop_assert_eq!(i.encode(), bytes);
            }
        }
    }
}
