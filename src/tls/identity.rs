//! Identity: a certificate's single SPIFFE URI SAN → [`Identity`].
//!
//! `spiffe://<trust-domain>/role/<role>/id/<name>` is the only form of authority. A certificate
//! with no URI SAN, two of them, an unknown role, a foreign trust domain, only a CN, no clientAuth
//! EKU, no keyUsage digitalSignature, or CA:true carries no authority ([`IdentityError`] says
//! which rule it broke).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The authority levels written into certificates (DESIGN §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads views; never mutates.
    Observer,
    /// Requests and confirms mutations.
    Actor,
    /// Reads and verifies the audit trail.
    Auditor,
    /// The control plane calling a kernel.
    #[serde(rename = "controlplane")]
    ControlPlane,
    /// A kernel node calling another node.
    Node,
    /// A data-plane client.
    Client,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 6] =
        [Role::Observer, Role::Actor, Role::Auditor, Role::ControlPlane, Role::Node, Role::Client];

    /// The name written in certificates.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Observer => "observer",
            Role::Actor => "actor",
            Role::Auditor => "auditor",
            Role::ControlPlane => "controlplane",
            Role::Node => "node",
            Role::Client => "client",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| IdentityError::UnknownRole(s.to_string()))
    }
}

/// A verified caller: who it is and which certificate said so.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// The authority level.
    pub role: Role,
    /// The name after `/id/`.
    pub name: String,
    /// Hex SHA-256 of the leaf certificate (DER).
    pub cert_sha256: String,
    /// Hex serial number of the leaf certificate.
    pub serial: String,
    /// The issuer's distinguished name as text.
    pub issuer: String,
}

impl Identity {
    /// `role/name`, the form used in logs and audit filters.
    pub fn principal(&self) -> String {
        format!("{}/{}", self.role, self.name)
    }

    /// The first 16 hex characters of the fingerprint, for logs.
    pub fn short_fingerprint(&self) -> &str {
        self.cert_sha256.get(..16).unwrap_or(&self.cert_sha256)
    }
}

/// Why a certificate carries no authority.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The certificate could not be parsed.
    #[error("certificate could not be parsed: {0}")]
    Unparseable(String),
    /// No URI SAN (for example a CN-only certificate).
    #[error("certificate has no URI SAN; a SPIFFE id spiffe://<trust-domain>/role/<role>/id/<name> is required")]
    NoUriSan,
    /// More than one URI SAN: authority would be ambiguous.
    #[error("certificate has {0} URI SANs; exactly one is allowed (ambiguous authority is no authority)")]
    MultipleUriSans(usize),
    /// The URI SAN is not of the SPIFFE form this project uses.
    #[error("URI SAN {0:?} is not of the form spiffe://<trust-domain>/role/<role>/id/<name>")]
    MalformedUri(String),
    /// The trust domain is not the configured one.
    #[error("trust domain {found:?} is not the configured trust domain {expected:?}")]
    ForeignTrustDomain {
        /// The configured trust domain.
        expected: String,
        /// The one in the certificate.
        found: String,
    },
    /// The role is not one of the six known roles.
    #[error("unknown role {0:?}; roles are observer, actor, auditor, controlplane, node, client")]
    UnknownRole(String),
    /// The name after `/id/` breaks the naming rule.
    #[error("identity name {0:?} must be 1..=63 characters of [a-z0-9._-] starting with a letter or digit")]
    InvalidName(String),
    /// No extendedKeyUsage clientAuth.
    #[error("certificate lacks the clientAuth extended key usage")]
    MissingClientAuth,
    /// No extendedKeyUsage serverAuth on a server's certificate.
    #[error("certificate lacks the serverAuth extended key usage")]
    MissingServerAuth,
    /// No keyUsage extension, or one without digitalSignature: the key may not sign the TLS 1.3
    /// CertificateVerify that proves the caller holds it (RFC 5280 §4.2.1.3).
    #[error("certificate lacks keyUsage digitalSignature")]
    MissingDigitalSignature,
    /// basicConstraints CA:true on a leaf.
    #[error("certificate is a CA certificate (basicConstraints CA:true) and cannot identify a caller")]
    CaCertificate,
}

/// The naming rule for identity names and node ids: 1..=63 characters of `[a-z0-9._-]`, starting
/// with a letter or digit.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
}

/// The trust-domain rule: 1..=253 characters of `[a-z0-9.-]`.
pub fn valid_trust_domain(td: &str) -> bool {
    !td.is_empty()
        && td.len() <= 253
        && td.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
}

/// Hex SHA-256 of DER bytes.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Parses `spiffe://<td>/role/<role>/id/<name>` against the expected trust domain.
pub fn parse_spiffe(uri: &str, trust_domain: &str) -> Result<(Role, String), IdentityError> {
    let malformed = || IdentityError::MalformedUri(uri.to_string());
    let rest = uri.strip_prefix("spiffe://").ok_or_else(malformed)?;
    let mut parts = rest.split('/');
    let td = parts.next().ok_or_else(malformed)?;
    let (Some("role"), Some(role), Some("id"), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    if td != trust_domain {
        return Err(IdentityError::ForeignTrustDomain { expected: trust_domain.to_string(), found: td.to_string() });
    }
    let role = Role::from_str(role)?;
    if !valid_name(name) {
        return Err(IdentityError::InvalidName(name.to_string()));
    }
    Ok((role, name.to_string()))
}

/// Which extended key usage a leaf must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A caller (client side of a connection): clientAuth.
    Client,
    /// A server (the side a client reached): serverAuth.
    Server,
}

/// The end of a certificate's validity (notAfter) in seconds since the Unix epoch, or `None` when
/// the DER does not parse. The certificate is valid through this second and expired after it.
pub fn not_after_unix_s(der: &[u8]) -> Option<i64> {
    X509Certificate::from_der(der).ok().map(|(_, cert)| cert.validity().not_after.timestamp())
}

/// Derives the identity of a caller's leaf certificate. Checks, in order: parse, CA:false,
/// clientAuth EKU, keyUsage digitalSignature, exactly one URI SAN, SPIFFE form, trust domain,
/// role, name.
pub fn identity_from_der(der: &[u8], trust_domain: &str) -> Result<Identity, IdentityError> {
    identity_for(der, trust_domain, Usage::Client)
}

/// Derives the identity of a server's leaf certificate: as [`identity_from_der`], with the
/// serverAuth EKU in place of clientAuth.
pub fn server_identity_from_der(der: &[u8], trust_domain: &str) -> Result<Identity, IdentityError> {
    identity_for(der, trust_domain, Usage::Server)
}

/// The identity of a leaf used as `usage` says (see [`identity_from_der`]).
pub fn identity_for(der: &[u8], trust_domain: &str, usage: Usage) -> Result<Identity, IdentityError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| IdentityError::Unparseable(e.to_string()))?;
    if cert.is_ca() {
        return Err(IdentityError::CaCertificate);
    }
    let mut usage_ok = false;
    let mut digital_signature = false;
    let mut uris: Vec<String> = Vec::new();
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::ExtendedKeyUsage(eku) => {
                usage_ok = eku.any
                    || match usage {
                        Usage::Client => eku.client_auth,
                        Usage::Server => eku.server_auth,
                    }
            }
            ParsedExtension::KeyUsage(ku) => digital_signature = ku.digital_signature(),
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    if let GeneralName::URI(u) = name {
                        uris.push((*u).to_string());
                    }
                }
            }
            _ => {}
        }
    }
    if !usage_ok {
        return Err(match usage {
            Usage::Client => IdentityError::MissingClientAuth,
            Usage::Server => IdentityError::MissingServerAuth,
        });
    }
    if !digital_signature {
        return Err(IdentityError::MissingDigitalSignature);
    }
    let uri = match uris.as_slice() {
        [] => return Err(IdentityError::NoUriSan),
        [one] => one,
        many => return Err(IdentityError::MultipleUriSans(many.len())),
    };
    let (role, name) = parse_spiffe(uri, trust_domain)?;
    Ok(Identity {
        role,
        name,
        cert_sha256: fingerprint(der),
        serial: hex::encode(cert.raw_serial()),
        issuer: cert.issuer().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_uri_parses_only_in_the_exact_form() {
        assert_eq!(
            parse_spiffe("spiffe://aerodb.local/role/actor/id/alice", "aerodb.local"),
            Ok((Role::Actor, "alice".to_string()))
        );
        let bad = [
            (
                "spiffe://aerodb.local/role/actor",
                IdentityError::MalformedUri("spiffe://aerodb.local/role/actor".into()),
            ),
            (
                "spiffe://aerodb.local/role/actor/id/alice/x",
                IdentityError::MalformedUri("spiffe://aerodb.local/role/actor/id/alice/x".into()),
            ),
            (
                "https://aerodb.local/role/actor/id/a",
                IdentityError::MalformedUri("https://aerodb.local/role/actor/id/a".into()),
            ),
            (
                "spiffe://evil.local/role/actor/id/alice",
                IdentityError::ForeignTrustDomain { expected: "aerodb.local".into(), found: "evil.local".into() },
            ),
            ("spiffe://aerodb.local/role/root/id/alice", IdentityError::UnknownRole("root".into())),
            ("spiffe://aerodb.local/role/actor/id/Alice", IdentityError::InvalidName("Alice".into())),
            ("spiffe://aerodb.local/role/actor/id/", IdentityError::InvalidName("".into())),
        ];
        for (uri, err) in bad {
            assert_eq!(parse_spiffe(uri, "aerodb.local"), Err(err), "{uri}");
        }
    }

    #[test]
    fn names_follow_the_naming_rule() {
        for ok in ["n1", "alice", "a.b-c_d", "0x"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", ".a", "A", "a/b", "a b", &"a".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
