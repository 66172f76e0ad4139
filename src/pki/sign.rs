//! Signing an intent with the key of an actor certificate, and approvals as files.
//!
//! The operator's own tools sign: aerodbctl (interactive and two-step), `aerodbctl approve`, and
//! the console (a process of the operator's, holding their profile). The control plane never
//! holds an actor key, so it cannot sign. The signature is made by rustls' ring provider over
//! the intent's exact bytes, with the first scheme the key supports among ECDSA P-256/SHA-256,
//! ECDSA P-384/SHA-384, Ed25519 and RSA-PSS/SHA-256; the kernel verifies it with webpki.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::sign::SigningKey;

use crate::contract::intent::{Intent, IntentError};
use crate::proto::kernel as kpb;
use crate::tls::material::{TlsError, load_certs, load_key, provider};

/// The schemes an intent may be signed with, in order of preference.
const SCHEMES: [SignatureScheme; 4] = [
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA256,
];

/// The webpki algorithm of a TLS SignatureScheme code accepted for intents (`None`: not accepted).
pub fn algorithm(scheme: u16) -> Option<&'static dyn rustls_pki_types::SignatureVerificationAlgorithm> {
    use webpki::ring as alg;
    Some(match scheme {
        0x0403 => alg::ECDSA_P256_SHA256,
        0x0503 => alg::ECDSA_P384_SHA384,
        0x0807 => alg::ED25519,
        0x0804 => alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        0x0805 => alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        0x0806 => alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
        _ => return None,
    })
}

/// Whether `signature` (by the leaf certificate `certificate`, DER, with `scheme`) verifies over
/// `message`. Checks the signature only: chain, validity and revocation are the caller's.
pub fn signature_verifies(certificate: &[u8], scheme: u16, signature: &[u8], message: &[u8]) -> Result<(), String> {
    let alg = algorithm(scheme).ok_or_else(|| format!("uses scheme {scheme:#06x}, which is not accepted"))?;
    let cert = rustls_pki_types::CertificateDer::from(certificate);
    let end_entity =
        webpki::EndEntityCert::try_from(&cert).map_err(|_| "has a certificate webpki cannot read".to_string())?;
    end_entity
        .verify_signature(alg, message, signature)
        .map_err(|_| "does not verify over the intent bytes".to_string())
}

/// The `format` of an approval file.
pub const APPROVAL_FORMAT: &str = "aerodb-approval/1";

/// Why an intent could not be signed or an approval read.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The certificate or key could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The certificate file holds no certificate.
    #[error("{0}: no certificate in the file")]
    NoCertificate(PathBuf),
    /// The key cannot sign with any accepted scheme.
    #[error("the key in {0} cannot sign with ECDSA P-256/P-384, Ed25519 or RSA-PSS")]
    UnsupportedKey(PathBuf),
    /// The signing operation failed.
    #[error("signing failed: {0}")]
    Sign(String),
    /// An approval file is not one.
    #[error("{path}: {why}")]
    Approval {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The intent bytes are not an intent.
    #[error("the intent does not decode: {0}")]
    Intent(#[from] IntentError),
}

/// An actor's certificate and key, ready to sign intents.
pub struct IntentSigner {
    certificate: Vec<u8>,
    key: Arc<dyn SigningKey>,
    key_path: PathBuf,
}

impl std::fmt::Debug for IntentSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntentSigner").field("key_path", &self.key_path).finish_non_exhaustive()
    }
}

impl IntentSigner {
    /// Loads the leaf certificate of `cert` and the key of `key` (which must not be readable by
    /// group or others).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, SignError> {
        let certificate =
            load_certs(cert)?.into_iter().next().ok_or_else(|| SignError::NoCertificate(cert.to_path_buf()))?;
        let der = load_key(key)?;
        let key_path = key.to_path_buf();
        let key = provider().key_provider.load_private_key(der).map_err(|e| SignError::Sign(e.to_string()))?;
        Ok(Self { certificate: certificate.as_ref().to_vec(), key, key_path })
    }

    /// Hex SHA-256 of the signing certificate.
    pub fn fingerprint(&self) -> String {
        crate::tls::identity::fingerprint(&self.certificate)
    }

    /// A signature over `intent` (its exact bytes).
    pub fn sign(&self, intent: &[u8]) -> Result<kpb::IntentSignature, SignError> {
        let signer =
            self.key.choose_scheme(&SCHEMES).ok_or_else(|| SignError::UnsupportedKey(self.key_path.clone()))?;
        let signature = signer.sign(intent).map_err(|e| SignError::Sign(e.to_string()))?;
        Ok(kpb::IntentSignature {
            certificate: self.certificate.clone(),
            scheme: u32::from(u16::from(signer.scheme())),
            signature,
        })
    }
}

/// An approval: another actor's signature over an intent, as a file an operator can pass on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Approval {
    /// [`APPROVAL_FORMAT`].
    pub format: String,
    /// Hex SHA-256 of the intent bytes approved.
    pub intent_sha256: String,
    /// The approver, as their certificate names them (`role/name`), for people reading the file.
    pub signer: String,
    /// The signer's certificate, DER, hex.
    pub certificate: String,
    /// The TLS SignatureScheme code.
    pub scheme: u16,
    /// The signature, hex.
    pub signature: String,
}

impl Approval {
    /// The approval of `intent` by `signature` (made by `signer`).
    pub fn new(intent: &[u8], signer: String, signature: &kpb::IntentSignature) -> Self {
        Self {
            format: APPROVAL_FORMAT.into(),
            intent_sha256: Intent::sha256_hex(intent),
            signer,
            certificate: hex::encode(&signature.certificate),
            scheme: u16::try_from(signature.scheme).unwrap_or(0),
            signature: hex::encode(&signature.signature),
        }
    }

    /// Reads an approval file and checks it approves exactly `intent`.
    pub fn read_for(path: &Path, intent: &[u8]) -> Result<kpb::IntentSignature, SignError> {
        let bad = |why: String| SignError::Approval { path: path.to_path_buf(), why };
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let a: Approval = serde_json::from_str(&text).map_err(|e| bad(format!("not an approval: {e}")))?;
        if a.format != APPROVAL_FORMAT {
            return Err(bad(format!("format {:?}, expected {APPROVAL_FORMAT:?}", a.format)));
        }
        let want = Intent::sha256_hex(intent);
        if a.intent_sha256 != want {
            return Err(bad(format!(
                "approves intent {}…, not this one ({}…): it was signed for another request",
                a.intent_sha256.get(..16).unwrap_or_default(),
                &want[..16]
            )));
        }
        Ok(kpb::IntentSignature {
            certificate: hex::decode(&a.certificate).map_err(|_| bad("certificate is not hex".into()))?,
            scheme: u32::from(a.scheme),
            signature: hex::decode(&a.signature).map_err(|_| bad("signature is not hex".into()))?,
        })
    }
}

/// The lines an operator reads before signing: every field of the intent, decoded from the
/// bytes that will be signed.
pub fn describe(intent: &Intent) -> String {
    let c = &intent.confirmation;
    let mut lines = vec![
        format!("  cluster:              {}", intent.cluster_id),
        format!("  command:              {}", intent.command.as_str()),
        format!("  target node:          {}", intent.target_node),
    ];
    if intent.plan_epoch > 0 {
        lines.push(format!("  plan epoch:           {}", intent.plan_epoch));
    }
    lines.extend([
        format!("  expected control_seq: {}", intent.expected_control_seq),
        format!("  plan digest:          {}", hex::encode(intent.plan_digest)),
        format!("  idempotency key:      {}", intent.idempotency_key),
        format!("  confirmation:         {}", c.kind),
    ]);
    if !c.acknowledged_invariants.is_empty() {
        lines.push(format!("  acknowledges:         {}", c.acknowledged_invariants.join(", ")));
    }
    if c.accept_responsibility {
        lines.push("  accepts responsibility".into());
    }
    lines.push(format!(
        "  requested by:         {}/{} (certificate {}…)",
        intent.requester.role,
        intent.requester.name,
        intent.requester.cert_sha256.get(..16).unwrap_or_default()
    ));
    lines.push(format!("  void after:           {} (Unix ms)", intent.not_after_unix_ms));
    lines.join("\n")
}
