//! The client-certificate verifier of every server: webpki's checks, then identity.
//!
//! [`IdentityVerifier`] first enforces the configured CAs' basicConstraints pathLenConstraint on
//! the presented chain (webpki checks the constraint of every intermediate, but not the one of a
//! trust anchor: its `TrustAnchor` keeps only subject, key and name constraints, so a chain
//! through an intermediate CA under our `pathlen:0` CA would otherwise pass), then runs rustls'
//! `WebPkiClientVerifier` (chain to the CA, validity window, clientAuth EKU, not a CA, CRL) and
//! then requires the leaf to name exactly one identity and to carry keyUsage digitalSignature
//! ([`super::identity`]). A certificate that fails any check is refused at the handshake: a
//! caller whose authority cannot be established never reaches a service. The refusal carries the
//! presented certificate's fingerprint and the precise reason, at most
//! [`HANDSHAKE_REASON_BYTES_MAX`] bytes of it, for the server's log and audit; the client learns
//! only that its certificate was refused.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use x509_parser::prelude::{FromDer, X509Certificate};

use super::identity::{fingerprint, identity_from_der};

/// Longest refusal reason a [`HandshakeFailure`] (and a [`CertificateRefused`]) carries, in bytes:
/// 512. A longer reason keeps a prefix (cut at a character boundary) and says how long it was,
/// so a hostile certificate (a 60 KB SAN quoted in the reason) cannot make every log line and
/// audit record of its refusals that large.
pub const HANDSHAKE_REASON_BYTES_MAX: usize = 512;

/// `reason`, or when longer than [`HANDSHAKE_REASON_BYTES_MAX`] its longest prefix ending at a
/// character boundary followed by `… (N bytes)`, at most [`HANDSHAKE_REASON_BYTES_MAX`] in all.
pub fn bounded_reason(reason: String) -> String {
    if reason.len() <= HANDSHAKE_REASON_BYTES_MAX {
        return reason;
    }
    let suffix = format!("… ({} bytes)", reason.len());
    let mut end = HANDSHAKE_REASON_BYTES_MAX.saturating_sub(suffix.len());
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &reason[..end])
}

/// A configured CA whose basicConstraints carry a pathLenConstraint.
#[derive(Debug, Clone)]
struct AnchorPathLength {
    /// The CA's subject, DER (compared with issuers byte for byte, as webpki does).
    subject: Vec<u8>,
    /// The subject as text, for the refusal reason.
    name: String,
    /// At most this many intermediate CA certificates may follow it in a path.
    max_intermediates: u32,
}

/// Bound on the paths [`IdentityVerifier`] walks through a presented chain (each step is one
/// comparison of names); a chain needing more is refused as too complex.
const PATH_WALK_STEPS_MAX: usize = 256;

/// A refused client certificate: which one and why. Travels inside the rustls error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("certificate {fingerprint} refused: {reason}")]
pub struct CertificateRefused {
    /// Hex SHA-256 of the presented leaf.
    pub fingerprint: String,
    /// The precise reason (webpki's or the identity rule broken).
    pub reason: String,
}

/// WebPki verification followed by identity derivation. See the module docs.
#[derive(Debug)]
pub struct IdentityVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
    anchors: Vec<AnchorPathLength>,
    /// The configured CA certificates (DER): a client that sends one of them in its chain has
    /// not added an intermediate.
    cas: Vec<Vec<u8>>,
}

impl IdentityVerifier {
    /// Wraps a webpki verifier; identities must belong to `trust_domain`; `cas` are the
    /// configured CA certificates (the trust anchors of `inner`), whose pathLenConstraint this
    /// verifier enforces. A CA certificate that does not parse carries no constraint here (the
    /// root store has already accepted it).
    pub fn new(inner: Arc<dyn ClientCertVerifier>, trust_domain: String, cas: &[CertificateDer<'_>]) -> Self {
        let anchors = cas
            .iter()
            .filter_map(|der| {
                let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
                let constraint = cert.basic_constraints().ok().flatten()?.value.path_len_constraint?;
                Some(AnchorPathLength {
                    subject: cert.subject().as_raw().to_vec(),
                    name: cert.subject().to_string(),
                    max_intermediates: constraint,
                })
            })
            .collect();
        Self { inner, trust_domain, anchors, cas: cas.iter().map(|c| c.as_ref().to_vec()).collect() }
    }

    fn refuse(end_entity: &CertificateDer<'_>, reason: String) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(CertificateRefused {
            fingerprint: fingerprint(end_entity.as_ref()),
            reason: bounded_reason(reason),
        }))))
    }

    /// Refuses a chain in which some path from the leaf, through the presented intermediates
    /// (matched by name, as a path builder would), reaches a configured CA with more intermediate
    /// certificates than that CA's pathLenConstraint allows. Conservative: any such path refuses,
    /// whichever one webpki would have chosen.
    fn check_path_length(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), String> {
        if self.anchors.is_empty() {
            return Ok(());
        }
        let Ok((_, leaf)) = X509Certificate::from_der(end_entity.as_ref()) else {
            return Ok(()); // webpki refuses what does not parse, with its own reason.
        };
        // (subject, issuer) of every presented intermediate that parses.
        let presented: Vec<(Vec<u8>, Vec<u8>)> = intermediates
            .iter()
            .filter(|der| !self.cas.iter().any(|ca| ca.as_slice() == der.as_ref()))
            .filter_map(|der| X509Certificate::from_der(der.as_ref()).ok())
            .map(|(_, c)| (c.subject().as_raw().to_vec(), c.issuer().as_raw().to_vec()))
            .collect();
        // Depth-first over (issuer name to find, intermediates used so far).
        let mut stack: Vec<(Vec<u8>, Vec<usize>)> = vec![(leaf.issuer().as_raw().to_vec(), Vec::new())];
        let mut steps = 0usize;
        while let Some((issuer, used)) = stack.pop() {
            steps += 1;
            if steps > PATH_WALK_STEPS_MAX {
                return Err(format!(
                    "certificate chain too complex to check path length (more than {PATH_WALK_STEPS_MAX} steps)"
                ));
            }
            for anchor in self.anchors.iter().filter(|a| a.subject == issuer) {
                if used.len() > anchor.max_intermediates as usize {
                    return Err(format!(
                        "certificate chain has {} intermediate CA certificate(s) below {}, whose \
                         basicConstraints pathLenConstraint is {}",
                        used.len(),
                        anchor.name,
                        anchor.max_intermediates
                    ));
                }
            }
            for (i, (subject, next_issuer)) in presented.iter().enumerate() {
                if *subject == issuer && !used.contains(&i) {
                    let mut path = used.clone();
                    path.push(i);
                    stack.push((next_issuer.clone(), path));
                }
            }
        }
        Ok(())
    }
}

impl ClientCertVerifier for IdentityVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Before webpki, so that the reason names the broken constraint (webpki would refuse such
        // a chain for another reason at best, the missing CRL of the intermediate).
        if let Err(reason) = self.check_path_length(end_entity, intermediates) {
            return Err(Self::refuse(end_entity, reason));
        }
        if let Err(e) = self.inner.verify_client_cert(end_entity, intermediates, now) {
            let reason = super::server_identity::expired_crl_reason(&e).unwrap_or_else(|| e.to_string());
            return Err(Self::refuse(end_entity, reason));
        }
        match identity_from_der(end_entity.as_ref(), &self.trust_domain) {
            Ok(_) => Ok(ClientCertVerified::assertion()),
            Err(e) => Err(Self::refuse(end_entity, format!("no authority: {e}"))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The [`CertificateRefused`] a verifier's error carries, if it is one of ours.
fn refused(err: &rustls::Error) -> Option<&CertificateRefused> {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => other.0.downcast_ref(),
        _ => None,
    }
}

/// The precise reason inside a verifier's refusal (see [`CertificateRefused`]), or the error's
/// own text; at most [`HANDSHAKE_REASON_BYTES_MAX`] bytes.
pub fn refusal_reason(err: &rustls::Error) -> String {
    bounded_reason(refused(err).map(|r| r.reason.clone()).unwrap_or_else(|| err.to_string()))
}

/// What the server knows about a failed handshake: the reason and, when a certificate was
/// presented, its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeFailure {
    /// Why the handshake failed; at most [`HANDSHAKE_REASON_BYTES_MAX`] bytes when made by
    /// [`HandshakeFailure::new`] or [`HandshakeFailure::from_io_error`].
    pub reason: String,
    /// Hex SHA-256 of the presented certificate, if one was presented.
    pub fingerprint: Option<String>,
}

impl HandshakeFailure {
    /// A failure with its reason bounded to [`HANDSHAKE_REASON_BYTES_MAX`] bytes.
    pub fn new(reason: String, fingerprint: Option<String>) -> Self {
        Self { reason: bounded_reason(reason), fingerprint }
    }

    /// Extracts the reason (and a refused certificate's fingerprint) from a failed accept; the
    /// reason is bounded to [`HANDSHAKE_REASON_BYTES_MAX`] bytes.
    pub fn from_io_error(err: &std::io::Error) -> Self {
        match err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).and_then(refused) {
            Some(r) => Self::new(r.reason.clone(), Some(r.fingerprint.clone())),
            None => Self::new(err.to_string(), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_reason_is_cut_at_a_character_boundary_and_says_its_length() {
        assert_eq!(bounded_reason("short".into()), "short");
        let exact = "x".repeat(HANDSHAKE_REASON_BYTES_MAX);
        assert_eq!(bounded_reason(exact.clone()), exact);
        for long in ["é".repeat(30_000), format!("URI SAN {:?}", "a".repeat(60_000)), "€x".repeat(9_999)] {
            let len = long.len();
            let b = bounded_reason(long.clone());
            assert!(b.len() <= HANDSHAKE_REASON_BYTES_MAX, "{}", b.len());
            assert!(b.ends_with(&format!("… ({len} bytes)")), "{b}");
            let prefix = b.strip_suffix(&format!("… ({len} bytes)")).unwrap();
            assert!(long.starts_with(prefix));
            assert!(prefix.len() > HANDSHAKE_REASON_BYTES_MAX - 32, "{}", prefix.len());
        }
    }

    #[test]
    fn a_refusal_from_an_io_error_is_bounded() {
        let err = std::io::Error::other(rustls::Error::General("y".repeat(70_000)));
        let f = HandshakeFailure::from_io_error(&err);
        assert!(f.reason.len() <= HANDSHAKE_REASON_BYTES_MAX);
        assert!(f.reason.ends_with(" bytes)"), "{}", f.reason);
    }
}
