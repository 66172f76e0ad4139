//! Loading TLS material from files and building rustls configurations from it.
//!
//! Every config is built with an explicit ring provider (a second provider in the dependency graph
//! would make `builder()` panic), TLS 1.3 only. A server requires a client certificate that chains
//! to the configured CA, is within its validity window, carries clientAuth, is not a CA, is not in
//! the configured CRL (unknown revocation status is a refusal), and names exactly one identity.
//! Servers never resume a TLS session: a resumed session would skip those checks.
//!
//! A CRL is refused past its nextUpdate (`enforce_revocation_expiration`, on servers and on the
//! clients of [`ClientTls`]): a stale CRL cannot prove a certificate unrevoked, so every handshake
//! fails closed, naming the reason, until a fresh CRL is installed (it reloads without restart).
//! Loading material logs an error for a CRL already past its nextUpdate and a warning for one
//! within [`CRL_WARN_BEFORE_S`] of it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use super::server_identity::{ExpectedServer, ServerIdentityVerifier};
use super::verifier::IdentityVerifier;
use crate::clock::Clock;

/// A CRL whose nextUpdate is closer than this (7 days) is warned about at every load and reload
/// of the TLS material, so that an operator re-issues it (`aerodb certs crl`) before it expires.
pub const CRL_WARN_BEFORE_S: i64 = 7 * 86_400;

/// Paths of one process's TLS material.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPaths {
    /// PEM bundle of trusted CA certificates.
    pub ca: PathBuf,
    /// PEM CRLs issued by the CA (at least one; an empty CRL is fine).
    pub crl: Vec<PathBuf>,
    /// PEM certificate chain this process presents.
    pub cert: PathBuf,
    /// PEM private key of `cert`; must not be readable by group or others.
    pub key: PathBuf,
}

/// Why TLS material could not be loaded or used. Each variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM object of the expected kind.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// A private key is readable by group or others.
    #[error("private key {path} has mode {mode:04o}: it must not be readable by group or others (chmod 600 {path})")]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// No CRL was configured: revocation could not be checked.
    #[error("no CRL configured: every server checks revocation (an empty CRL from `aerodb certs init` is fine)")]
    NoCrl,
    /// rustls refused the material.
    #[error("TLS configuration rejected: {0}")]
    Rustls(String),
}

/// The ring provider every config in this crate is built with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Refuses a private key file readable by group or others.
pub fn check_key_permissions(path: &Path) -> Result<(), TlsError> {
    let meta = std::fs::metadata(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyPermissions { path: path.to_path_buf(), mode });
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

/// Loads every certificate in a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { path: path.to_path_buf(), what: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: path.to_path_buf(), what: "no CERTIFICATE in file".into() });
    }
    Ok(certs)
}

/// Loads a private key after checking its permissions.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    check_key_permissions(path)?;
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem { path: path.to_path_buf(), what: e.to_string() })
}

/// Loads every CRL in a PEM file.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { path: path.to_path_buf(), what: e.to_string() })?;
    if crls.is_empty() {
        return Err(TlsError::Pem { path: path.to_path_buf(), what: "no X509 CRL in file".into() });
    }
    Ok(crls)
}

/// The nextUpdate (seconds since the Unix epoch) of every CRL in a PEM file, or `None` when one
/// does not parse. A CRL without nextUpdate counts as expired (webpki refuses it).
pub fn crl_next_updates(pem: &[u8]) -> Option<Vec<i64>> {
    CertificateRevocationListDer::pem_slice_iter(pem)
        .map(|der| {
            let der = der.ok()?;
            let (_, crl) = x509_parser::parse_x509_crl(der.as_ref()).ok()?;
            Some(crl.next_update().map(|t| t.timestamp()).unwrap_or(i64::MIN))
        })
        .collect()
}

/// Loads the configured CRLs and says how fresh each is: an error log for one already past its
/// nextUpdate (every handshake will be refused), a warning for one within [`CRL_WARN_BEFORE_S`].
fn load_crls_checked(what: &str, paths: &[PathBuf]) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let now_s = (crate::clock::SystemClock::new().now_unix_ms() / 1000) as i64;
    let mut crls = Vec::new();
    for p in paths {
        crls.extend(load_crls(p)?);
        for next_update in crl_next_updates(&read(p)?).unwrap_or_default() {
            let at = super::accept::format_not_after(next_update);
            if next_update < now_s {
                tracing::error!(
                    tls.set = what,
                    crl = %p.display(),
                    crl.next_update = %at,
                    "the CRL has expired (past its nextUpdate): every handshake is refused until a fresh CRL is \
                     installed (aerodb certs crl)"
                );
            } else if next_update - now_s < CRL_WARN_BEFORE_S {
                tracing::warn!(
                    tls.set = what,
                    crl = %p.display(),
                    crl.next_update = %at,
                    "the CRL expires in less than 7 days: re-issue it (aerodb certs crl), or every handshake will be \
                     refused once it expires"
                );
            }
        }
    }
    Ok(crls)
}

fn root_store(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    root_store_of(path, load_certs(path)?)
}

fn root_store_of(path: &Path, cas: Vec<CertificateDer<'static>>) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in cas {
        roots.add(cert).map_err(|e| TlsError::Pem { path: path.to_path_buf(), what: e.to_string() })?;
    }
    Ok(Arc::new(roots))
}

/// A server configuration together with the client-certificate verifier inside it, so that
/// certificates of connections made under an older configuration can be checked again when the
/// material reloads (a certificate revoked since stops working on its open connections too).
#[derive(Debug)]
pub struct ServerTls {
    /// The rustls configuration new handshakes use.
    pub config: Arc<ServerConfig>,
    /// The verifier inside `config`.
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// Its webpki part alone (chain to the CA, validity window, clientAuth EKU, not a CA, CRL),
    /// with webpki's typed errors: the kernel checks the certificates of intent signers with it.
    pub chain: Arc<dyn ClientCertVerifier>,
}

/// [`server_config`] with its verifier; see [`ServerTls`].
pub fn server_tls(paths: &TlsPaths, trust_domain: &str) -> Result<ServerTls, TlsError> {
    let (config, verifier, chain) = build_server(paths, trust_domain)?;
    Ok(ServerTls { config: Arc::new(config), verifier, chain })
}

/// The server side: presents `cert`, requires and verifies a client certificate, TLS 1.3 only,
/// ALPN h2, no session resumption (every connection verifies the client certificate afresh), and
/// derives the caller's identity at the handshake (see [`IdentityVerifier`]).
pub fn server_config(paths: &TlsPaths, trust_domain: &str) -> Result<ServerConfig, TlsError> {
    build_server(paths, trust_domain).map(|(config, _, _)| config)
}

/// Builds the server configuration and its verifier.
///
/// TLS session resumption is disabled: no session storage, no tickets (stateful or not), so
/// every connection does a full handshake. A resumed session skips client-certificate
/// verification, so it would keep accepting a certificate after its notAfter or after its
/// revocation (and could be resumed again). Clients keep their connections open, so the cost is
/// one full handshake per connection, not per call.
#[allow(clippy::type_complexity)]
fn build_server(
    paths: &TlsPaths,
    trust_domain: &str,
) -> Result<(ServerConfig, Arc<dyn ClientCertVerifier>, Arc<dyn ClientCertVerifier>), TlsError> {
    let provider = provider();
    let cas = load_certs(&paths.ca)?;
    let roots = root_store_of(&paths.ca, cas.clone())?;
    if paths.crl.is_empty() {
        return Err(TlsError::NoCrl);
    }
    let crls = load_crls_checked("server", &paths.crl)?;
    let webpki = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .with_crls(crls)
        .enforce_revocation_expiration()
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let verifier: Arc<dyn ClientCertVerifier> =
        Arc::new(IdentityVerifier::new(webpki.clone(), trust_domain.to_string(), &cas));
    let certs = load_certs(&paths.cert)?;
    let key = load_key(&paths.key)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    // No resumption (see above): nothing stored, no TLS 1.3 tickets sent, tickets never issued.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.ticketer = Arc::new(NoTickets);
    Ok((config, verifier, webpki))
}

/// A ticketer that never issues a ticket (stateless resumption off; see [`server_config`]).
#[derive(Debug)]
struct NoTickets;

impl rustls::server::ProducesTickets for NoTickets {
    fn enabled(&self) -> bool {
        false
    }

    fn lifetime(&self) -> u32 {
        0
    }

    fn encrypt(&self, _plain: &[u8]) -> Option<Vec<u8>> {
        None
    }

    fn decrypt(&self, _cipher: &[u8]) -> Option<Vec<u8>> {
        None
    }
}

/// The client material of one process: its certificate and key, the CA and the CRLs, from which
/// a configuration per server it calls is made ([`ClientTls::config_for`]): each connection
/// requires the identity of the server it means to reach.
#[derive(Debug)]
pub struct ClientTls {
    provider: Arc<CryptoProvider>,
    verifier: Arc<WebPkiServerVerifier>,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    trust_domain: String,
}

/// Loads a [`ClientTls`]: the servers it reaches must chain to `paths.ca`, carry serverAuth and
/// the address's name, be unrevoked in `paths.crl` (when CRLs are given; a CRL past its
/// nextUpdate refuses every server) and name an identity of `trust_domain`.
pub fn client_tls(paths: &TlsPaths, trust_domain: &str) -> Result<ClientTls, TlsError> {
    let provider = provider();
    let roots = root_store(&paths.ca)?;
    let mut builder = WebPkiServerVerifier::builder_with_provider(roots, provider.clone());
    if !paths.crl.is_empty() {
        builder = builder.with_crls(load_crls_checked("client", &paths.crl)?).enforce_revocation_expiration();
    }
    let verifier = builder.build().map_err(|e| TlsError::Rustls(e.to_string()))?;
    let certs = load_certs(&paths.cert)?;
    let key = load_key(&paths.key)?;
    let tls = ClientTls { provider, verifier, certs, key, trust_domain: trust_domain.to_string() };
    // Refuse unusable material now (a key that does not match), not at the first connection.
    tls.config_for(&ExpectedServer::any(super::identity::Role::Node))?;
    Ok(tls)
}

impl ClientTls {
    /// A configuration that presents this process's certificate and accepts only a server
    /// presenting `expected` (see [`ServerIdentityVerifier`]); TLS 1.3 only, ALPN h2.
    pub fn config_for(&self, expected: &ExpectedServer) -> Result<Arc<ClientConfig>, TlsError> {
        let verifier =
            Arc::new(ServerIdentityVerifier::new(self.verifier.clone(), self.trust_domain.clone(), expected.clone()));
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.certs.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }

    /// The identity (role and name) this process's own certificate names, if it names one.
    pub fn own_identity(&self) -> Result<super::identity::Identity, super::identity::IdentityError> {
        match self.certs.first() {
            Some(leaf) => super::identity::identity_from_der(leaf.as_ref(), &self.trust_domain),
            None => Err(super::identity::IdentityError::NoUriSan),
        }
    }
}

/// A client configuration that verifies the server against the CA and the server name only, not
/// its identity nor its revocation: for tests and tools that reach a server of any identity.
/// Every client of the product (the nodes, the control plane, aerodbctl) uses [`ClientTls`].
/// Presents `cert` (its role is the caller's authority), TLS 1.3 only, ALPN h2.
pub fn client_config(paths: &TlsPaths) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let roots = root_store(&paths.ca)?;
    let certs = load_certs(&paths.cert)?;
    let key = load_key(&paths.key)?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Every file a [`TlsPaths`] names, for change detection.
pub fn watched_files(paths: &TlsPaths) -> Vec<PathBuf> {
    let mut files = vec![paths.ca.clone(), paths.cert.clone(), paths.key.clone()];
    files.extend(paths.crl.iter().cloned());
    files
}
