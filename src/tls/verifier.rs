//! The client-certificate verifier of every server: webpki's checks, then identity.
//!
//! [`IdentityVerifier`] runs rustls' `WebPkiClientVerifier` (chain to the CA, validity window,
//! clientAuth EKU, not a CA, CRL) and then requires the leaf to name exactly one identity
//! ([`super::identity`]). A certificate that fails either check is refused at the handshake: a
//! caller whose authority cannot be established never reaches a service. The refusal carries the
//! presented certificate's fingerprint and the precise reason for the server's log and audit; the
//! client learns only that its certificate was refused.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::identity::{fingerprint, identity_from_der};

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
}

impl IdentityVerifier {
    /// Wraps a webpki verifier; identities must belong to `trust_domain`.
    pub fn new(inner: Arc<dyn ClientCertVerifier>, trust_domain: String) -> Self {
        Self { inner, trust_domain }
    }

    fn refuse(end_entity: &CertificateDer<'_>, reason: String) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(CertificateRefused {
            fingerprint: fingerprint(end_entity.as_ref()),
            reason,
        }))))
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
        if let Err(e) = self.inner.verify_client_cert(end_entity, intermediates, now) {
            return Err(Self::refuse(end_entity, e.to_string()));
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
/// own text.
pub fn refusal_reason(err: &rustls::Error) -> String {
    refused(err).map(|r| r.reason.clone()).unwrap_or_else(|| err.to_string())
}

/// What the server knows about a failed handshake: the reason and, when a certificate was
/// presented, its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeFailure {
    /// Why the handshake failed.
    pub reason: String,
    /// Hex SHA-256 of the presented certificate, if one was presented.
    pub fingerprint: Option<String>,
}

impl HandshakeFailure {
    /// Extracts the reason (and a refused certificate's fingerprint) from a failed accept.
    pub fn from_io_error(err: &std::io::Error) -> Self {
        match err.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).and_then(refused) {
            Some(r) => Self { reason: r.reason.clone(), fingerprint: Some(r.fingerprint.clone()) },
            None => Self { reason: err.to_string(), fingerprint: None },
        }
    }
}
