//! The kernel executes only what operators signed: verification of an Execute request's signed
//! intent and its approvals, before any of Execute's ordered checks that can lead to execution.
//!
//! Checks, in this fixed order, the first failure deciding the rejection (each a stable code,
//! recorded in the ledger under the key like every other rejection):
//!
//! 1. The request carries an intent and at least one signature: `AERO_INTENT_MISSING`.
//! 2. Each signature, in the order sent: its certificate chains to the CA this node's listener
//!    trusts now (`AERO_INTENT_SIGNER_UNTRUSTED`), is unrevoked under the current CRL
//!    (`AERO_INTENT_SIGNER_REVOKED`), is within its validity window on the kernel's clock
//!    (`AERO_INTENT_SIGNER_EXPIRED`), names role `actor` (`AERO_INTENT_SIGNER_NOT_ACTOR`), and its
//!    signature verifies over the intent bytes with that certificate's key
//!    (`AERO_INTENT_SIGNATURE_INVALID`).
//! 3. One signature is by the requester's own certificate (the fingerprint the intent names),
//!    and that certificate names the requester the intent names: `AERO_INTENT_MISSING`.
//! 4. Every field of the request equals the intent's (cluster, command, target, plan epoch,
//!    expected sequence, idempotency key, confirmation, requester): `AERO_INTENT_FIELD_MISMATCH`
//!    naming the first field that differs.
//! 5. The intent's not-after time has not passed on the kernel's clock: `AERO_INTENT_EXPIRED`.
//! 6. The number of distinct signers reaches the approval policy's count for the command:
//!    `AERO_INTENT_APPROVALS_MISSING`, saying how many more are needed. Signers are distinct
//!    when they share neither identity (role and name) nor public key: signatures linked by
//!    either count once (connected components), so a re-issued certificate or a shared key never
//!    counts twice, whatever order they come in.
//!
//! # Invariants
//!
//! - No key but an actor's own makes the kernel execute: a request executes only if a valid,
//!   current actor certificate's key signed exactly its fields.
//! - Verification reads only the request, the node's configuration, the current trust material
//!   and the clock; it changes nothing (the caller records its rejection).

use std::sync::Arc;

use rustls::CertificateError;
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::sync::watch;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::codes;
use super::records::Rejection;
use crate::clock::SharedClock;
use crate::contract::action::{Action, Confirmation, Requester};
use crate::contract::intent::{Approvals, Command, Intent, Signature};
use crate::tls::identity::{Role, identity_from_der};
use crate::tls::material::ServerTls;

/// What a request says, to be compared with its intent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asked<'a> {
    /// The kernel's cluster.
    pub(crate) cluster_id: &'a str,
    /// The action.
    pub(crate) action: &'a Action,
    /// The plan epoch.
    pub(crate) plan_epoch: u64,
    /// The expected control sequence.
    pub(crate) expected_control_seq: u64,
    /// The idempotency key.
    pub(crate) idempotency_key: &'a str,
    /// The confirmation.
    pub(crate) confirmation: &'a Confirmation,
    /// The requester.
    pub(crate) requester: &'a Requester,
}

/// Who signed, once verified: the principals, in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signers {
    /// `role/name` of each valid signature.
    pub(crate) principals: Vec<String>,
    /// Distinct signers counted (see the module docs).
    pub(crate) distinct: usize,
}

/// Verifies signed intents against the trust material a node's listener uses now (it follows
/// reloads of the CA bundle and the CRL) and the kernel's clock.
#[derive(Clone)]
pub struct IntentVerifier {
    tls: watch::Receiver<Arc<ServerTls>>,
    trust_domain: String,
    clock: SharedClock,
}

impl std::fmt::Debug for IntentVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntentVerifier").field("trust_domain", &self.trust_domain).finish_non_exhaustive()
    }
}

fn reject(code: &str, invariants: &[&str], message: String) -> Rejection {
    Rejection::new(code, invariants, message)
}

/// The SHA-256 of a certificate's subjectPublicKeyInfo (how a shared key is recognised).
fn spki_sha256(der: &[u8]) -> Option<[u8; 32]> {
    use sha2::Digest;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(sha2::Sha256::digest(cert.public_key().raw).into())
}

impl IntentVerifier {
    /// A verifier over `tls` (the node listener's material), for identities of `trust_domain`,
    /// reading time from `clock`.
    pub fn new(tls: watch::Receiver<Arc<ServerTls>>, trust_domain: String, clock: SharedClock) -> Self {
        Self { tls, trust_domain, clock }
    }

    /// Checks one signature (step 2 of the module docs); returns the signer's principal, the
    /// SHA-256 of its public key and its certificate's fingerprint.
    fn check_signature(&self, n: usize, intent: &[u8], s: &Signature) -> Result<(String, [u8; 32], String), Rejection> {
        let untrusted =
            |why: String| reject(codes::INTENT_SIGNER_UNTRUSTED, &["P7-A2", "P7-A1"], format!("signature {n}: {why}"));
        let der = hex::decode(&s.certificate).map_err(|_| untrusted("the certificate is not hex".into()))?;
        let signature = hex::decode(&s.signature)
            .map_err(|_| reject(codes::INTENT_SIGNATURE_INVALID, &["P7-A2"], format!("signature {n} is not hex")))?;
        let cert = CertificateDer::from(der.as_slice());
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_millis(self.clock.now_unix_ms()));
        let chain = self.tls.borrow().chain.clone();
        if let Err(e) = chain.verify_client_cert(&cert, &[], now) {
            let fp = crate::tls::identity::fingerprint(&der);
            return Err(match e {
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired
                    | CertificateError::ExpiredContext { .. }
                    | CertificateError::NotValidYet
                    | CertificateError::NotValidYetContext { .. },
                ) => reject(
                    codes::INTENT_SIGNER_EXPIRED,
                    &["P7-A2", "P7-A1"],
                    format!("signature {n}: certificate {fp} is outside its validity window now: {e}"),
                ),
                rustls::Error::InvalidCertificate(
                    CertificateError::Revoked
                    | CertificateError::UnknownRevocationStatus
                    | CertificateError::ExpiredRevocationList
                    | CertificateError::ExpiredRevocationListContext { .. },
                ) => reject(
                    codes::INTENT_SIGNER_REVOKED,
                    &["P7-A2", "P7-A1"],
                    format!("signature {n}: certificate {fp} is revoked (or its revocation status is unknown): {e}"),
                ),
                other => untrusted(format!("certificate {fp} is not trusted: {other}")),
            });
        }
        let identity = identity_from_der(&der, &self.trust_domain)
            .map_err(|e| untrusted(format!("the certificate names no identity: {e}")))?;
        if identity.role != Role::Actor {
            return Err(reject(
                codes::INTENT_SIGNER_NOT_ACTOR,
                &["P7-A2", "P7-A1"],
                format!(
                    "signature {n} is by {}, not an actor: only an actor's key can sign an intent",
                    identity.principal()
                ),
            ));
        }
        let invalid = |why: &str| {
            reject(
                codes::INTENT_SIGNATURE_INVALID,
                &["P7-A2"],
                format!("signature {n} (by {}) {why}", identity.principal()),
            )
        };
        crate::pki::sign::signature_verifies(&der, s.scheme, &signature, intent).map_err(|why| invalid(&why))?;
        let key = spki_sha256(&der).ok_or_else(|| invalid("has a certificate without a readable public key"))?;
        Ok((identity.principal(), key, identity.cert_sha256))
    }

    /// Verifies `intent` (decoded from `bytes`) and `signatures` against what the request
    /// claims, under `approvals`. See the module docs for the order.
    pub(crate) fn verify(
        &self,
        asked: Asked<'_>,
        intent: Option<(&Intent, &[u8])>,
        signatures: &[Signature],
        approvals: &Approvals,
    ) -> Result<Signers, Rejection> {
        let Some((intent, bytes)) = intent.filter(|_| !signatures.is_empty()) else {
            return Err(reject(
                codes::INTENT_MISSING,
                &["P7-A2", "P7-A1"],
                "the request carries no signed intent: the kernel executes only what an operator signed".into(),
            ));
        };
        let mut signed = Vec::with_capacity(signatures.len());
        for (n, s) in signatures.iter().enumerate() {
            signed.push(self.check_signature(n, bytes, s)?);
        }
        // The requester's own certificate signed, and it names the requester the intent names
        // (so one actor cannot sign an intent that attributes the request to another).
        let requester = format!("{}/{}", intent.requester.role, intent.requester.name);
        if !signed.iter().any(|(principal, _, fp)| *fp == intent.requester.cert_sha256 && *principal == requester) {
            return Err(reject(
                codes::INTENT_MISSING,
                &["P7-A2", "P7-A1"],
                format!(
                    "no signature is by the requester's certificate naming the requester ({}/{}, {}): the operator \
                     who asked must sign",
                    intent.requester.role,
                    intent.requester.name,
                    &intent.requester.cert_sha256.get(..16).unwrap_or_default()
                ),
            ));
        }
        check_fields(&asked, intent)?;
        let now = self.clock.now_unix_ms();
        if now > intent.not_after_unix_ms {
            return Err(reject(
                codes::INTENT_EXPIRED,
                &["P7-A2"],
                format!(
                    "the intent was valid until {} ms after the Unix epoch; the kernel's clock reads {now}: a new \
                     request and a new signature are needed",
                    intent.not_after_unix_ms
                ),
            ));
        }
        let command = intent.command;
        let required = approvals.required(command) as usize;
        let distinct = distinct_signers(&signed.iter().map(|(p, k, _)| (p.as_str(), *k)).collect::<Vec<_>>());
        if distinct < required {
            return Err(reject(
                codes::INTENT_APPROVALS_MISSING,
                &["P7-A2"],
                format!(
                    "{} needs signatures of {required} distinct actors; {distinct} signed ({}): {} more needed",
                    command.as_str(),
                    signed.iter().map(|(p, _, _)| p.as_str()).collect::<Vec<_>>().join(", "),
                    required - distinct
                ),
            ));
        }
        Ok(Signers { principals: signed.into_iter().map(|(p, _, _)| p).collect(), distinct })
    }
}

/// Step 4 of the module docs: the first field of the request that differs from the intent.
fn check_fields(c: &Asked<'_>, i: &Intent) -> Result<(), Rejection> {
    let command = Command::of(c.action).map(Command::as_str).unwrap_or("none");
    let differs: Option<(&str, String, String)> = if c.cluster_id != i.cluster_id {
        Some(("cluster_id", c.cluster_id.to_string(), i.cluster_id.clone()))
    } else if command != i.command.as_str() {
        Some(("command", command.to_string(), i.command.as_str().to_string()))
    } else if c.action.target_node != i.target_node {
        Some(("target_node", c.action.target_node.clone(), i.target_node.clone()))
    } else if c.plan_epoch != i.plan_epoch {
        Some(("plan_epoch", c.plan_epoch.to_string(), i.plan_epoch.to_string()))
    } else if c.expected_control_seq != i.expected_control_seq {
        Some(("expected_control_seq", c.expected_control_seq.to_string(), i.expected_control_seq.to_string()))
    } else if c.idempotency_key != i.idempotency_key {
        Some(("idempotency_key", format!("{:?}", c.idempotency_key), format!("{:?}", i.idempotency_key)))
    } else if c.confirmation != &i.confirmation {
        Some(("confirmation", format!("{:?}", c.confirmation), format!("{:?}", i.confirmation)))
    } else if c.requester != &i.requester {
        Some((
            "requester",
            format!("{}/{} ({})", c.requester.role, c.requester.name, c.requester.cert_sha256),
            format!("{}/{} ({})", i.requester.role, i.requester.name, i.requester.cert_sha256),
        ))
    } else {
        None
    };
    match differs {
        None => Ok(()),
        Some((field, request, intent)) => Err(reject(
            codes::INTENT_FIELD_MISMATCH,
            &["P7-A2", "P7-E3"],
            format!("{field} of the request ({request}) differs from the signed intent's ({intent})"),
        )),
    }
}

/// Distinct signers: signatures linked by a shared principal or a shared key are one signer
/// (connected components, so the count does not depend on the order of the signatures).
pub(crate) fn distinct_signers(signed: &[(&str, [u8; 32])]) -> usize {
    let n = signed.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for a in 0..n {
        for b in a + 1..n {
            if signed[a].0 == signed[b].0 || signed[a].1 == signed[b].1 {
                let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
                parent[ra] = rb;
            }
        }
    }
    (0..n).filter(|&i| root(&mut parent, i) == i).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::clock::{Clock, ManualClock};
    use crate::contract::action::ActionKind;
    use crate::pki::sign::IntentSigner;

    /// The instant the test PKI is issued at, and the kernel's clock reads at first.
    const ISSUED_UNIX_S: i64 = 1_790_000_000;

    /// A verifier over a fresh PKI (a node's listener material), its manual clock, the PKI's
    /// directory and the default actor's signer.
    struct Fixture {
        dir: tempfile::TempDir,
        verifier: IntentVerifier,
        clock: Arc<ManualClock>,
        actor: IntentSigner,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let issued = time::OffsetDateTime::from_unix_timestamp(ISSUED_UNIX_S).expect("time");
        let opts = crate::pki::InitOptions {
            trust_domain: "aerodb.local".into(),
            control_endpoint: "127.0.0.1:1".into(),
            data_endpoint: "127.0.0.1:1".into(),
            extra_server_names: vec![],
            leaf_days: 30,
            nodes: vec!["n1".into()],
        };
        crate::pki::init(dir.path(), &opts, issued).expect("pki");
        let paths = crate::tls::material::TlsPaths {
            ca: dir.path().join("ca.pem"),
            crl: vec![dir.path().join("crl.pem")],
            cert: dir.path().join("node-n1.pem"),
            key: dir.path().join("node-n1.key"),
        };
        let tls = crate::tls::material::server_tls(&paths, "aerodb.local").expect("node tls");
        let clock = Arc::new(ManualClock::new(ISSUED_UNIX_S as u64 * 1000));
        let verifier = IntentVerifier::new(crate::tls::client::fixed(tls), "aerodb.local".into(), clock.clone());
        let actor = IntentSigner::load(&dir.path().join("actor.pem"), &dir.path().join("actor.key")).expect("actor");
        Fixture { dir, verifier, clock, actor }
    }

    /// A diagnostics intent on n1 by `requester`, void after `not_after_unix_ms`.
    fn diagnostics(requester: Requester, not_after_unix_ms: u64) -> Intent {
        Intent {
            cluster_id: "c1".into(),
            command: Command::RunDiagnostics,
            target_node: "n1".into(),
            plan_epoch: 0,
            expected_control_seq: 3,
            plan_digest: [0; 32],
            idempotency_key: "k1".into(),
            confirmation: Confirmation { kind: "standard".into(), ..Default::default() },
            requester,
            not_after_unix_ms,
        }
    }

    /// Verifies `intent` signed by `signers`, asked with exactly the intent's fields.
    fn verify_signed(f: &Fixture, intent: &Intent, signers: &[&IntentSigner]) -> Result<Signers, Rejection> {
        let bytes = intent.encode();
        let signatures: Vec<Signature> =
            signers.iter().map(|s| Signature::from_proto(&s.sign(&bytes).expect("sign")).expect("scheme")).collect();
        let action = Action { kind: ActionKind::Diagnostics, target_node: intent.target_node.clone(), force: false };
        let asked = Asked {
            cluster_id: &intent.cluster_id,
            action: &action,
            plan_epoch: intent.plan_epoch,
            expected_control_seq: intent.expected_control_seq,
            idempotency_key: &intent.idempotency_key,
            confirmation: &intent.confirmation,
            requester: &intent.requester,
        };
        f.verifier.verify(asked, Some((intent, &bytes)), &signatures, &Approvals::default())
    }

    fn actor_requester(f: &Fixture) -> Requester {
        Requester {
            role: "actor".into(),
            name: crate::pki::default_name(Role::Actor),
            cert_sha256: f.actor.fingerprint(),
        }
    }

    /// What a verification of an intent signed by the default actor alone returns.
    fn accepted_from_the_actor() -> Result<Signers, Rejection> {
        Ok(Signers { principals: vec![format!("actor/{}", crate::pki::default_name(Role::Actor))], distinct: 1 })
    }

    #[test]
    fn p15_an_intent_is_valid_through_its_not_after_millisecond_and_expired_after_it() {
        let f = fixture();
        let now = f.clock.now_unix_ms();
        let intent = diagnostics(actor_requester(&f), now);
        assert_eq!(
            verify_signed(&f, &intent, &[&f.actor]),
            accepted_from_the_actor(),
            "at its not-after millisecond the intent is still valid"
        );
        f.clock.advance(std::time::Duration::from_millis(1));
        let refused = verify_signed(&f, &intent, &[&f.actor]).expect_err("one millisecond later");
        assert_eq!(refused.code, codes::INTENT_EXPIRED, "{}", refused.message);
        // A certificate still valid: only the intent's time decides.
        let later = diagnostics(actor_requester(&f), now + 1);
        assert_eq!(verify_signed(&f, &later, &[&f.actor]), accepted_from_the_actor(), "a new intent is accepted");
    }

    #[test]
    fn p15_the_requesters_own_certificate_must_sign_and_name_the_requester() {
        let f = fixture();
        let not_after = f.clock.now_unix_ms() + 60_000;
        // Signed with the requester's certificate, but the intent attributes it to another name.
        let renamed = Requester { name: "mallory".into(), ..actor_requester(&f) };
        let refused = verify_signed(&f, &diagnostics(renamed, not_after), &[&f.actor]).expect_err("renamed");
        assert_eq!(refused.code, codes::INTENT_MISSING, "{}", refused.message);
        // Names the signer, but another certificate (a second actor's) as the requester's.
        crate::pki::issue(
            f.dir.path(),
            "aerodb.local",
            Role::Actor,
            "alice",
            None,
            &[],
            30,
            time::OffsetDateTime::from_unix_timestamp(ISSUED_UNIX_S).expect("time"),
        )
        .expect("issue alice");
        let alice =
            IntentSigner::load(&f.dir.path().join("alice.pem"), &f.dir.path().join("alice.key")).expect("alice");
        let other_cert = Requester { cert_sha256: alice.fingerprint(), ..actor_requester(&f) };
        let refused = verify_signed(&f, &diagnostics(other_cert, not_after), &[&f.actor]).expect_err("other cert");
        assert_eq!(refused.code, codes::INTENT_MISSING, "{}", refused.message);
        // The requester's own certificate naming the requester: accepted.
        assert_eq!(
            verify_signed(&f, &diagnostics(actor_requester(&f), not_after), &[&f.actor]),
            accepted_from_the_actor()
        );
    }

    #[test]
    fn p15_signers_sharing_an_identity_or_a_key_count_once_in_any_order() {
        let (k1, k2, k3) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        assert_eq!(distinct_signers(&[]), 0);
        assert_eq!(distinct_signers(&[("actor/a", k1), ("actor/b", k2)]), 2);
        // The same identity with two keys (a re-issued certificate): once.
        assert_eq!(distinct_signers(&[("actor/a", k1), ("actor/a", k2)]), 1);
        // Two identities sharing one key: once.
        assert_eq!(distinct_signers(&[("actor/a", k1), ("actor/b", k1)]), 1);
        // A chain a–k1–b–k2–c… is one signer whichever order the links come in.
        let chain = [("actor/a", k1), ("actor/b", k1), ("actor/b", k2), ("actor/c", k2), ("actor/d", k3)];
        assert_eq!(distinct_signers(&chain), 2);
        let mut reversed = chain;
        reversed.reverse();
        assert_eq!(distinct_signers(&reversed), 2);
    }
}
