//! The server-certificate verifier of every client of this crate: webpki's checks, then the
//! server's identity.
//!
//! A client knows which server it means to reach: the node `n2` (a node's replication client, the
//! control plane's kernel adapter) or a control plane (aerodbctl). [`ServerIdentityVerifier`]
//! first runs rustls' `WebPkiServerVerifier` (chain to the CA, validity window, serverAuth EKU,
//! the address's host name or IP among the certificate's names, and, when CRLs are configured,
//! revocation with the CRL's nextUpdate enforced), then requires the leaf's single SPIFFE URI SAN
//! to name the expected identity ([`ExpectedServer`]). A server presenting another identity (a
//! different node answering at the address, a node where a control plane was meant) is refused at
//! the handshake, and the client's first call fails with a reason naming both identities.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::identity::{Role, fingerprint, server_identity_from_der, valid_name};
use super::verifier::bounded_reason;

/// The identity a client requires of the server it reaches: a role and, usually, a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExpectedServer {
    /// The server's role (`node` or `controlplane`).
    pub role: Role,
    /// The server's name (a node's id); `None` accepts any name of the role.
    pub name: Option<String>,
}

impl ExpectedServer {
    /// The node `id` (identity `node/<id>`).
    pub fn node(id: &str) -> Self {
        Self { role: Role::Node, name: Some(id.to_string()) }
    }

    /// Any server of `role`.
    pub fn any(role: Role) -> Self {
        Self { role, name: None }
    }

    /// Parses `<role>/<name>` (as aerodbctl profiles write it) or a bare `<role>` (any name).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (role, name) = match text.split_once('/') {
            Some((role, name)) => (role, Some(name)),
            None => (text, None),
        };
        let role: Role = role.parse().map_err(|e| format!("server identity {text:?}: {e}"))?;
        if let Some(name) = name
            && !valid_name(name)
        {
            return Err(format!("server identity {text:?}: the name must be 1..=63 of [a-z0-9._-]"));
        }
        Ok(Self { role, name: name.map(str::to_string) })
    }

    /// Whether `role`/`name` is this identity.
    pub fn matches(&self, role: Role, name: &str) -> bool {
        self.role == role && self.name.as_deref().is_none_or(|n| n == name)
    }
}

impl fmt::Display for ExpectedServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{}/{name}", self.role),
            None => write!(f, "{}/*", self.role),
        }
    }
}

/// A refused server certificate: which one and why. Travels inside the rustls error, so the
/// client's failed call carries it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server certificate {fingerprint} refused: {reason}")]
pub struct ServerRefused {
    /// Hex SHA-256 of the server's leaf.
    pub fingerprint: String,
    /// Why (at most [`super::verifier::HANDSHAKE_REASON_BYTES_MAX`] bytes).
    pub reason: String,
}

/// The precise text of a CRL-expiry refusal, or `None` for any other error.
pub fn expired_crl_reason(err: &rustls::Error) -> Option<String> {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::ExpiredRevocationListContext { next_update, .. }) => {
            Some(format!(
                "the CRL expired at {} (its nextUpdate): revocation cannot be checked, so every handshake is \
                 refused until a fresh CRL is installed (`aerodb certs crl`)",
                super::accept::format_not_after(next_update.as_secs() as i64)
            ))
        }
        rustls::Error::InvalidCertificate(CertificateError::ExpiredRevocationList) => Some(
            "the CRL is past its nextUpdate: revocation cannot be checked, so every handshake is refused until a \
             fresh CRL is installed (`aerodb certs crl`)"
                .to_string(),
        ),
        _ => None,
    }
}

/// WebPki server verification followed by the server's identity. See the module docs.
#[derive(Debug)]
pub struct ServerIdentityVerifier {
    inner: Arc<WebPkiServerVerifier>,
    trust_domain: String,
    expected: ExpectedServer,
}

impl ServerIdentityVerifier {
    /// Wraps a webpki verifier; the server must present `expected` in `trust_domain`.
    pub fn new(inner: Arc<WebPkiServerVerifier>, trust_domain: String, expected: ExpectedServer) -> Self {
        Self { inner, trust_domain, expected }
    }

    fn refuse(&self, end_entity: &CertificateDer<'_>, reason: String) -> rustls::Error {
        let fingerprint = fingerprint(end_entity.as_ref());
        let reason = bounded_reason(reason);
        tracing::warn!(
            server.expected = %self.expected,
            cert.sha256 = %fingerprint,
            reason = %reason,
            "server certificate refused"
        );
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(ServerRefused {
            fingerprint,
            reason,
        }))))
    }
}

impl ServerCertVerifier for ServerIdentityVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Err(e) = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            let reason = expired_crl_reason(&e).unwrap_or_else(|| e.to_string());
            return Err(self.refuse(end_entity, format!("expected {}: {reason}", self.expected)));
        }
        let identity = server_identity_from_der(end_entity.as_ref(), &self.trust_domain).map_err(|e| {
            self.refuse(
                end_entity,
                format!("expected {}: the server's certificate carries no identity: {e}", self.expected),
            )
        })?;
        if !self.expected.matches(identity.role, &identity.name) {
            return Err(self.refuse(
                end_entity,
                format!(
                    "expected {} at {}, but the server presented {}",
                    self.expected,
                    server_name.to_str(),
                    identity.principal()
                ),
            ));
        }
        Ok(ServerCertVerified::assertion())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_identities_parse_and_match_exactly() {
        let n2 = ExpectedServer::parse("node/n2").expect("parse");
        assert_eq!(n2, ExpectedServer::node("n2"));
        assert!(n2.matches(Role::Node, "n2"));
        assert!(!n2.matches(Role::Node, "n1"));
        assert!(!n2.matches(Role::ControlPlane, "n2"));
        let any_cp = ExpectedServer::parse("controlplane").expect("parse");
        assert!(any_cp.matches(Role::ControlPlane, "cp1"));
        assert!(!any_cp.matches(Role::Node, "cp1"));
        assert_eq!(any_cp.to_string(), "controlplane/*");
        for bad in ["root/x", "node/N1", "node/"] {
            assert!(ExpectedServer::parse(bad).is_err(), "{bad}");
        }
    }
}
