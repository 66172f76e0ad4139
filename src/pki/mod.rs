//! Certificate tooling (`aerodb certs`), built on rcgen.
//!
//! `init` creates a CA, one certificate per node (`node-<id>`, naming the node id, serving and
//! calling with the same identity), the control plane's certificate (`controlplane`, likewise a
//! server and a client certificate), one client certificate per operator role, an empty CRL and an
//! aerodbctl profile per client role. `issue` adds a role certificate, `revoke` rewrites the CRL
//! with one more serial, `crl` re-issues the CRL (a new nextUpdate) without revoking anything. Every certificate has a real validity window and an
//! authority key identifier; every private key is written 0600 and never exists with wider
//! permissions. Certificates carry their authority in one SPIFFE URI SAN
//! (`spiffe://<trust-domain>/role/<role>/id/<name>`).

pub mod profile;
pub mod sign;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType,
    SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;

use crate::fsutil::{create_dir_durable, write_atomic};
use crate::tls::identity::{Role, valid_name, valid_trust_domain};

/// Default validity of the CA certificate.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// Default validity of leaf certificates.
pub const LEAF_VALIDITY_DAYS: i64 = 397;
/// Default interval between CRL issues (its nextUpdate).
pub const CRL_VALIDITY_DAYS: i64 = 30;
/// Backdating of notBefore, so that small clock differences between machines do not refuse a
/// fresh certificate.
pub const BACKDATE: Duration = Duration::minutes(5);

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// rcgen refused the parameters or the key.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A certificate or CRL could not be parsed.
    #[error("{path}: cannot parse: {what}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What failed.
        what: String,
    },
    /// The directory already holds a CA; `init` never overwrites one.
    #[error("{0} already holds a CA (ca.pem); refusing to overwrite it")]
    AlreadyInitialised(PathBuf),
    /// A name, role or trust domain breaks its rule.
    #[error("invalid {field}: {why}")]
    Invalid {
        /// Which argument.
        field: &'static str,
        /// Which rule.
        why: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io { path: path.to_path_buf(), source }
}

/// A random positive 128-bit serial number.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // getrandom failing means the OS has no entropy source; no certificate can be made safely.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = [0x5a; 16];
    }
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

/// What a leaf certificate contains. Tests use it to make every kind of bad certificate.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// The subject CN (never a source of authority).
    pub common_name: String,
    /// Subject alternative names.
    pub sans: Vec<SanType>,
    /// Extended key usages.
    pub ekus: Vec<ExtendedKeyUsagePurpose>,
    /// basicConstraints CA:true (only tests want this on a leaf).
    pub is_ca: bool,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    /// A client certificate for `role`/`name` in `trust_domain`, valid `days` from `now`.
    pub fn client(
        trust_domain: &str,
        role: Role,
        name: &str,
        now: OffsetDateTime,
        days: i64,
    ) -> Result<Self, PkiError> {
        Ok(Self {
            common_name: format!("{role}/{name}"),
            sans: vec![SanType::URI(spiffe_id(trust_domain, role, name).try_into()?)],
            ekus: vec![ExtendedKeyUsagePurpose::ClientAuth],
            is_ca: false,
            not_before: now - BACKDATE,
            not_after: now + Duration::days(days),
        })
    }

    /// A certificate for a process that both serves and calls under one identity (a node, whose
    /// name is its node id, or a control plane): the SPIFFE id of `role`/`name`, EKU serverAuth
    /// and clientAuth, and the loopback names (`localhost`, 127.0.0.1, ::1) plus `extra_names` so
    /// that host-name checks pass.
    pub fn server_and_client(
        trust_domain: &str,
        role: Role,
        name: &str,
        extra_names: &[String],
        now: OffsetDateTime,
        days: i64,
    ) -> Result<Self, PkiError> {
        let mut spec = Self::loopback_server(extra_names, now, days)?;
        spec.common_name = format!("{role}/{name}");
        spec.sans.push(SanType::URI(spiffe_id(trust_domain, role, name).try_into()?));
        spec.ekus = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        Ok(spec)
    }

    /// A server certificate for loopback (`localhost`, 127.0.0.1, ::1) plus `extra_names`.
    pub fn loopback_server(extra_names: &[String], now: OffsetDateTime, days: i64) -> Result<Self, PkiError> {
        let mut sans = vec![
            SanType::DnsName("localhost".try_into()?),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ];
        for name in extra_names {
            sans.push(match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.clone().try_into()?),
            });
        }
        Ok(Self {
            common_name: "aerodb server".into(),
            sans,
            ekus: vec![ExtendedKeyUsagePurpose::ServerAuth],
            is_ca: false,
            not_before: now - BACKDATE,
            not_after: now + Duration::days(days),
        })
    }
}

/// `spiffe://<trust_domain>/role/<role>/id/<name>`.
pub fn spiffe_id(trust_domain: &str, role: Role, name: &str) -> String {
    format!("spiffe://{trust_domain}/role/{role}/id/{name}")
}

/// A certificate and its key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
    /// Hex serial number.
    pub serial_hex: String,
}

impl Issued {
    /// Writes `<dir>/<stem>.pem` (0644) and `<dir>/<stem>.key` (0600); returns both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), PkiError> {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        write_atomic(&key, self.key_pem.as_bytes(), 0o600).map_err(io_err(&key))?;
        write_atomic(&cert, self.cert_pem.as_bytes(), 0o644).map_err(io_err(&cert))?;
        Ok((cert, key))
    }
}

/// A certificate authority: its certificate and signing key.
pub struct Ca {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    key_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// A new self-signed CA named after `trust_domain`, valid `days` from `now`.
    pub fn create(trust_domain: &str, now: OffsetDateTime, days: i64) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "AeroDB");
        dn.push(DnType::CommonName, format!("AeroDB CA {trust_domain}"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = now - BACKDATE;
        params.not_after = now + Duration::days(days);
        params.serial_number = Some(random_serial());
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Self { cert_pem: cert.pem(), issuer: Issuer::new(params, key), key_pem })
    }

    /// Loads `<dir>/ca.pem` and `<dir>/ca.key`.
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
        let key_pem = std::fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
        let key = KeyPair::from_pem(&key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok(Self { cert_pem, issuer, key_pem })
    }

    /// Writes `<dir>/ca.pem` and `<dir>/ca.key` (0600).
    pub fn write(&self, dir: &Path) -> Result<(), PkiError> {
        let key = dir.join("ca.key");
        let cert = dir.join("ca.pem");
        write_atomic(&key, self.key_pem.as_bytes(), 0o600).map_err(io_err(&key))?;
        write_atomic(&cert, self.cert_pem.as_bytes(), 0o644).map_err(io_err(&cert))?;
        Ok(())
    }

    /// Signs a leaf made to `spec` with a fresh key.
    pub fn sign(&self, spec: &LeafSpec) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if !spec.common_name.is_empty() {
            dn.push(DnType::CommonName, spec.common_name.clone());
        }
        params.distinguished_name = dn;
        params.subject_alt_names = spec.sans.clone();
        params.extended_key_usages = spec.ekus.clone();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.is_ca = if spec.is_ca { IsCa::Ca(BasicConstraints::Unconstrained) } else { IsCa::ExplicitNoCa };
        if spec.is_ca {
            params.key_usages.push(KeyUsagePurpose::KeyCertSign);
        }
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        let serial = random_serial();
        let serial_hex = hex::encode(serial.to_bytes());
        params.serial_number = Some(serial);
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem(), serial_hex })
    }

    /// A CRL listing `revoked` (serial bytes, revocation time), numbered `number`, valid
    /// [`CRL_VALIDITY_DAYS`] from `now`.
    pub fn crl(
        &self,
        revoked: &[(Vec<u8>, OffsetDateTime)],
        number: u64,
        now: OffsetDateTime,
    ) -> Result<String, PkiError> {
        self.crl_until(revoked, number, now, now + Duration::days(CRL_VALIDITY_DAYS))
    }

    /// A CRL listing `revoked`, numbered `number`, issued `now` with nextUpdate `next_update`
    /// (past it, every server and client of this project refuses the CRL, and with it every
    /// handshake: see `docs/security-model.md`).
    pub fn crl_until(
        &self,
        revoked: &[(Vec<u8>, OffsetDateTime)],
        number: u64,
        now: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<String, PkiError> {
        let params = CertificateRevocationListParams {
            this_update: now - BACKDATE,
            next_update,
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|(serial, at)| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: *at,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}

/// Options of `aerodb certs init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The trust domain written in every identity.
    pub trust_domain: String,
    /// Control plane address written into the observer/actor/auditor profiles.
    pub control_endpoint: String,
    /// Node address written into the client (data plane) profile.
    pub data_endpoint: String,
    /// Extra DNS names or IPs for the server certificate.
    pub extra_server_names: Vec<String>,
    /// Leaf validity.
    pub leaf_days: i64,
    /// The node ids of the cluster: one certificate `node-<id>` each (default `n1,n2,n3`).
    pub nodes: Vec<String>,
}

/// The node ids `certs init` and `aerodb dev` issue certificates for when none are given.
pub const DEFAULT_NODES: [&str; 3] = ["n1", "n2", "n3"];

/// The file stem of node `id`'s certificate and key (`node-<id>.pem`, `node-<id>.key`).
pub fn node_stem(id: &str) -> String {
    format!("node-{id}")
}

/// The name given to each role's certificate by `init`.
pub fn default_name(role: Role) -> String {
    format!("dev-{role}")
}

/// `aerodb certs init`: everything a loopback cluster needs, in `dir`. Returns the files written.
///
/// Each node of `opts.nodes` gets its own certificate `node-<id>` (identity `node/<id>`, serverAuth
/// and clientAuth, loopback names plus `--server-name`s), used both to serve and to call its
/// peers; the control plane gets `controlplane` (identity `controlplane/dev-controlplane`, the
/// same two usages); each operator role and the data client get a client certificate. No shared
/// server certificate is issued: every server has its own identity, which clients check.
pub fn init(dir: &Path, opts: &InitOptions, now: OffsetDateTime) -> Result<Vec<PathBuf>, PkiError> {
    if !valid_trust_domain(&opts.trust_domain) {
        return Err(PkiError::Invalid { field: "trust-domain", why: "1..=253 characters of [a-z0-9.-]".into() });
    }
    check_node_ids(&opts.nodes)?;
    if dir.join("ca.pem").exists() {
        return Err(PkiError::AlreadyInitialised(dir.to_path_buf()));
    }
    create_dir_durable(dir).map_err(io_err(dir))?;
    let mut written = Vec::new();
    let ca = Ca::create(&opts.trust_domain, now, CA_VALIDITY_DAYS)?;
    ca.write(dir)?;
    written.push(dir.join("ca.pem"));
    written.extend(issue_nodes(&ca, dir, opts, &opts.nodes, now)?);
    for role in Role::ALL {
        let spec = match role {
            // Nodes have one certificate each (above), never a shared role certificate.
            Role::Node => continue,
            Role::ControlPlane => LeafSpec::server_and_client(
                &opts.trust_domain,
                role,
                &default_name(role),
                &opts.extra_server_names,
                now,
                opts.leaf_days,
            )?,
            _ => LeafSpec::client(&opts.trust_domain, role, &default_name(role), now, opts.leaf_days)?,
        };
        let issued = ca.sign(&spec)?;
        let (c, k) = issued.write(dir, role.as_str())?;
        written.push(c.clone());
        if let Some(endpoint) = profile_endpoint(role, opts) {
            let p = profile::Profile {
                endpoint,
                trust_domain: opts.trust_domain.clone(),
                ca: absolute(&dir.join("ca.pem")),
                cert: absolute(&c),
                key: absolute(&k),
                server: profile_server(role),
            };
            let path = dir.join(format!("{role}.profile.toml"));
            p.write(&path)?;
            written.push(path);
        }
    }
    let crl = ca.crl(&[], 1, now)?;
    let crl_path = dir.join("crl.pem");
    write_atomic(&crl_path, crl.as_bytes(), 0o644).map_err(io_err(&crl_path))?;
    written.push(crl_path);
    Ok(written)
}

fn check_node_ids(nodes: &[String]) -> Result<(), PkiError> {
    if nodes.is_empty() {
        return Err(PkiError::Invalid { field: "nodes", why: "at least one node id is needed".into() });
    }
    let mut seen = std::collections::BTreeSet::new();
    for id in nodes {
        if !valid_name(id) || !seen.insert(id) {
            return Err(PkiError::Invalid {
                field: "nodes",
                why: format!("node id {id:?} is invalid (1..=63 of [a-z0-9._-]) or repeated"),
            });
        }
    }
    Ok(())
}

/// Issues `node-<id>.pem/.key` for each of `ids` that has no certificate yet in `dir`; returns
/// the certificates written. Never overwrites one.
fn issue_nodes(
    ca: &Ca,
    dir: &Path,
    opts: &InitOptions,
    ids: &[String],
    now: OffsetDateTime,
) -> Result<Vec<PathBuf>, PkiError> {
    let mut written = Vec::new();
    for id in ids {
        let stem = node_stem(id);
        if dir.join(format!("{stem}.pem")).exists() || dir.join(format!("{stem}.key")).exists() {
            continue;
        }
        let spec = LeafSpec::server_and_client(
            &opts.trust_domain,
            Role::Node,
            id,
            &opts.extra_server_names,
            now,
            opts.leaf_days,
        )?;
        let (c, _) = ca.sign(&spec)?.write(dir, &stem)?;
        written.push(c);
    }
    Ok(written)
}

/// Completes a certificate directory made by an earlier version of `certs init` (one shared
/// `server` and `node` certificate): issues the missing `node-<id>` certificates and, when the
/// control plane's certificate cannot serve (no serverAuth), re-issues `controlplane` as a server
/// and client certificate (the old files are kept as `controlplane.pem.old`/`.key.old`). Returns
/// the files written; an up-to-date directory writes nothing.
pub fn upgrade(dir: &Path, opts: &InitOptions, now: OffsetDateTime) -> Result<Vec<PathBuf>, PkiError> {
    check_node_ids(&opts.nodes)?;
    let ca = Ca::load(dir)?;
    let mut written = issue_nodes(&ca, dir, opts, &opts.nodes, now)?;
    let cp = dir.join("controlplane.pem");
    let serves = std::fs::read(&cp)
        .ok()
        .and_then(|pem| rustls_pki_types::CertificateDer::pem_slice_iter(&pem).next()?.ok())
        .and_then(|der| {
            let (_, x509) = x509_parser::certificate::X509Certificate::from_der(der.as_ref()).ok()?;
            Some(x509.extended_key_usage().ok().flatten()?.value.server_auth)
        })
        .unwrap_or(false);
    if !serves {
        for ext in ["pem", "key"] {
            let from = dir.join(format!("controlplane.{ext}"));
            if from.exists() {
                let to = dir.join(format!("controlplane.{ext}.old"));
                std::fs::rename(&from, &to).map_err(io_err(&from))?;
            }
        }
        let spec = LeafSpec::server_and_client(
            &opts.trust_domain,
            Role::ControlPlane,
            &default_name(Role::ControlPlane),
            &opts.extra_server_names,
            now,
            opts.leaf_days,
        )?;
        let (c, _) = ca.sign(&spec)?.write(dir, "controlplane")?;
        written.push(c);
    }
    Ok(written)
}

fn profile_endpoint(role: Role, opts: &InitOptions) -> Option<String> {
    match role {
        Role::Observer | Role::Actor | Role::Auditor => Some(opts.control_endpoint.clone()),
        Role::Client => Some(opts.data_endpoint.clone()),
        Role::ControlPlane | Role::Node => None,
    }
}

/// The server identity an aerodbctl profile of `role` pins: the control plane's for operator
/// roles; none for the data client, which talks to whichever node is primary (aerodbctl then
/// requires some node's identity).
fn profile_server(role: Role) -> Option<String> {
    match role {
        Role::Observer | Role::Actor | Role::Auditor => {
            Some(format!("{}/{}", Role::ControlPlane, default_name(Role::ControlPlane)))
        }
        Role::Client | Role::ControlPlane | Role::Node => None,
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Names `aerodb certs issue` refuses: the CA, the server certificate and the CRL live in the same
/// directory under these names, and overwriting them would lose the CA key or break every server.
pub const RESERVED_NAMES: &[&str] = &["ca", "server", "crl"];

/// `aerodb certs issue`: a certificate for `role`/`name` in `dir`, named `<name>.pem` (a node's
/// `node-<name>.pem`, its name being its node id), plus a profile when the role uses aerodbctl.
/// A node's or a control plane's certificate also serves (serverAuth, loopback names plus
/// `server_names`). Returns the files written. Never overwrites a file: a
/// reserved name (see [`RESERVED_NAMES`]) or a name whose files exist is refused, naming the rule.
// Each argument is one flag of `aerodb certs issue`; a struct would only restate the command.
#[allow(clippy::too_many_arguments)]
pub fn issue(
    dir: &Path,
    trust_domain: &str,
    role: Role,
    name: &str,
    endpoint: Option<&str>,
    server_names: &[String],
    days: i64,
    now: OffsetDateTime,
) -> Result<Vec<PathBuf>, PkiError> {
    if !valid_name(name) {
        return Err(PkiError::Invalid {
            field: "name",
            why: "1..=63 characters of [a-z0-9._-] starting with a letter or digit".into(),
        });
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(PkiError::Invalid {
            field: "name",
            why: format!("{name:?} is reserved for the files `certs init` writes ({})", RESERVED_NAMES.join(", ")),
        });
    }
    let stem = if role == Role::Node { node_stem(name) } else { name.to_string() };
    for file in [format!("{stem}.pem"), format!("{stem}.key"), format!("{stem}.profile.toml")] {
        if dir.join(&file).exists() {
            return Err(PkiError::Invalid {
                field: "name",
                why: format!(
                    "{} already exists; issuing never overwrites a certificate or key: choose another name, or \
                     move the old files aside first (revoke the old certificate if it must stop working)",
                    dir.join(&file).display()
                ),
            });
        }
    }
    let ca = Ca::load(dir)?;
    let spec = match role {
        Role::Node | Role::ControlPlane => {
            LeafSpec::server_and_client(trust_domain, role, name, server_names, now, days)?
        }
        _ => LeafSpec::client(trust_domain, role, name, now, days)?,
    };
    let issued = ca.sign(&spec)?;
    let (c, k) = issued.write(dir, &stem)?;
    let mut written = vec![c.clone(), k.clone()];
    if let Some(endpoint) = endpoint {
        let p = profile::Profile {
            endpoint: endpoint.to_string(),
            trust_domain: trust_domain.to_string(),
            ca: absolute(&dir.join("ca.pem")),
            cert: absolute(&c),
            key: absolute(&k),
            server: None,
        };
        let path = dir.join(format!("{stem}.profile.toml"));
        p.write(&path)?;
        written.push(path);
    }
    Ok(written)
}

/// `aerodb certs revoke`: adds the serial of `cert` to `<dir>/crl.pem` (a new CRL with the next
/// number, written atomically). Returns the revoked serial in hex. Revoking twice is a no-op
/// apart from the re-issue.
pub fn revoke(dir: &Path, cert: &Path, now: OffsetDateTime) -> Result<String, PkiError> {
    let ca = Ca::load(dir)?;
    let cert_pem = std::fs::read(cert).map_err(io_err(cert))?;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(&cert_pem)
        .next()
        .ok_or_else(|| PkiError::Parse { path: cert.to_path_buf(), what: "no CERTIFICATE".into() })?
        .map_err(|e| PkiError::Parse { path: cert.to_path_buf(), what: e.to_string() })?;
    let (_, x509) = x509_parser::certificate::X509Certificate::from_der(der.as_ref())
        .map_err(|e| PkiError::Parse { path: cert.to_path_buf(), what: e.to_string() })?;
    let serial = x509.raw_serial().to_vec();

    let crl_path = dir.join("crl.pem");
    let (mut revoked, number) = read_crl(&crl_path)?;
    if !revoked.iter().any(|(s, _)| *s == serial) {
        revoked.push((serial.clone(), now));
    }
    let pem = ca.crl(&revoked, number + 1, now)?;
    write_atomic(&crl_path, pem.as_bytes(), 0o644).map_err(io_err(&crl_path))?;
    Ok(hex::encode(serial))
}

/// `aerodb certs crl`: re-issues `<dir>/crl.pem` with the same revoked serials, the next CRL
/// number and a new nextUpdate `days` from `now` (written atomically). Revokes nothing; run it
/// before the CRL's nextUpdate (a CRL past it is refused and every handshake with it fails).
/// Returns the new CRL number.
pub fn refresh_crl(dir: &Path, days: i64, now: OffsetDateTime) -> Result<u64, PkiError> {
    if !(1..=CRL_VALIDITY_DAYS_MAX).contains(&days) {
        return Err(PkiError::Invalid { field: "days", why: format!("{days} is outside 1..={CRL_VALIDITY_DAYS_MAX}") });
    }
    let ca = Ca::load(dir)?;
    let crl_path = dir.join("crl.pem");
    let (revoked, number) = read_crl(&crl_path)?;
    let pem = ca.crl_until(&revoked, number + 1, now, now + Duration::days(days))?;
    write_atomic(&crl_path, pem.as_bytes(), 0o644).map_err(io_err(&crl_path))?;
    Ok(number + 1)
}

/// Longest CRL validity `aerodb certs crl --days` accepts: 366 days.
pub const CRL_VALIDITY_DAYS_MAX: i64 = 366;

use rustls_pki_types::pem::PemObject;

/// A revoked serial and when it was revoked.
pub type Revoked = (Vec<u8>, OffsetDateTime);

/// Reads the revoked serials and the CRL number of a PEM CRL.
pub fn read_crl(path: &Path) -> Result<(Vec<Revoked>, u64), PkiError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let der = rustls_pki_types::CertificateRevocationListDer::from_pem_slice(&bytes)
        .map_err(|e| PkiError::Parse { path: path.to_path_buf(), what: e.to_string() })?;
    let (_, crl) = x509_parser::parse_x509_crl(der.as_ref())
        .map_err(|e| PkiError::Parse { path: path.to_path_buf(), what: e.to_string() })?;
    let revoked =
        crl.iter_revoked_certificates().map(|r| (r.raw_serial().to_vec(), r.revocation_date.to_datetime())).collect();
    let number = crl
        .crl_number()
        .map(|n| n.to_bytes_be().iter().fold(0u64, |acc, b| acc.wrapping_shl(8) | u64::from(*b)))
        .unwrap_or(0);
    Ok((revoked, number))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::identity::identity_from_der;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_790_000_000).expect("time")
    }

    #[test]
    fn init_writes_ca_server_roles_crl_profiles_with_private_keys_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = InitOptions {
            trust_domain: "aerodb.local".into(),
            control_endpoint: "127.0.0.1:7700".into(),
            data_endpoint: "127.0.0.1:7701".into(),
            extra_server_names: vec![],
            leaf_days: LEAF_VALIDITY_DAYS,
            nodes: vec!["n1".into(), "n2".into()],
        };
        init(dir.path(), &opts, now()).expect("init");
        let stems = Role::ALL
            .into_iter()
            .filter(|r| *r != Role::Node)
            .map(|r| (r.as_str().to_string(), r, default_name(r)))
            .chain(["n1", "n2"].map(|id| (node_stem(id), Role::Node, id.to_string())));
        for (stem, role, name) in stems {
            let pem = std::fs::read(dir.path().join(format!("{stem}.pem"))).expect("cert");
            let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).expect("pem");
            let id = identity_from_der(der.as_ref(), "aerodb.local").expect("identity");
            assert_eq!((id.role, id.name.as_str()), (role, name.as_str()));
            if matches!(role, Role::Node | Role::ControlPlane) {
                let server = crate::tls::identity::server_identity_from_der(der.as_ref(), "aerodb.local")
                    .expect("a node and the control plane also serve");
                assert_eq!((server.role, server.name), (role, name));
            }
            let (_, x509) = x509_parser::certificate::X509Certificate::from_der(der.as_ref()).expect("x509");
            let validity = x509.validity();
            let days = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400;
            assert!((397..=398).contains(&days), "validity {days} days");
            assert!(
                x509.extensions().iter().any(|e| matches!(
                    e.parsed_extension(),
                    x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(_)
                )),
                "authority key identifier present"
            );
        }
        use std::os::unix::fs::PermissionsExt;
        for entry in std::fs::read_dir(dir.path()).expect("ls") {
            let entry = entry.expect("entry");
            if entry.path().extension().is_some_and(|e| e == "key") {
                let mode = entry.metadata().expect("meta").permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", entry.path().display());
            }
        }
        for role in ["observer", "actor", "auditor", "client"] {
            assert!(dir.path().join(format!("{role}.profile.toml")).exists(), "{role} profile");
        }
        for role in ["controlplane", "node"] {
            assert!(!dir.path().join(format!("{role}.profile.toml")).exists(), "{role} profile");
        }
        for shared in ["server.pem", "node.pem"] {
            assert!(!dir.path().join(shared).exists(), "no shared {shared}");
        }
        let (revoked, number) = read_crl(&dir.path().join("crl.pem")).expect("crl");
        assert!(revoked.is_empty());
        assert_eq!(number, 1);
        assert!(matches!(init(dir.path(), &opts, now()), Err(PkiError::AlreadyInitialised(_))));
    }

    /// A directory with a CA and an empty CRL, as `issue` and `revoke` expect.
    fn ca_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::create("aerodb.local", now(), 10).expect("ca");
        ca.write(dir.path()).expect("write ca");
        std::fs::write(dir.path().join("crl.pem"), ca.crl(&[], 1, now()).expect("crl")).expect("write crl");
        dir
    }

    #[test]
    fn revoke_adds_the_serial_and_bumps_the_crl_number() {
        let dir = ca_dir();
        let files = issue(dir.path(), "aerodb.local", Role::Actor, "alice", None, &[], 30, now()).expect("issue");
        let serial = revoke(dir.path(), &files[0], now()).expect("revoke");
        let (revoked, number) = read_crl(&dir.path().join("crl.pem")).expect("crl");
        assert_eq!(revoked.iter().map(|(s, _)| hex::encode(s)).collect::<Vec<_>>(), vec![serial.clone()]);
        assert_eq!(number, 2);
        revoke(dir.path(), &files[0], now()).expect("revoke again");
        let (revoked, number) = read_crl(&dir.path().join("crl.pem")).expect("crl");
        assert_eq!(revoked.len(), 1);
        assert_eq!(number, 3);
    }

    #[test]
    fn upgrade_adds_node_certificates_and_a_serving_control_plane_certificate_to_an_old_directory() {
        let dir = ca_dir();
        let ca = Ca::load(dir.path()).expect("ca");
        // The layout of the previous version: a client-only control plane certificate, no node-<id>.
        let old = LeafSpec::client("aerodb.local", Role::ControlPlane, "dev-controlplane", now(), 30).expect("spec");
        ca.sign(&old).expect("sign").write(dir.path(), "controlplane").expect("write");
        let opts = InitOptions {
            trust_domain: "aerodb.local".into(),
            control_endpoint: "127.0.0.1:7700".into(),
            data_endpoint: "127.0.0.1:7701".into(),
            extra_server_names: vec![],
            leaf_days: 30,
            nodes: vec!["n1".into(), "n2".into()],
        };
        let written = upgrade(dir.path(), &opts, now()).expect("upgrade");
        assert_eq!(written.len(), 3, "{written:?}");
        for (stem, role, name) in [
            ("node-n1", Role::Node, "n1"),
            ("node-n2", Role::Node, "n2"),
            ("controlplane", Role::ControlPlane, "dev-controlplane"),
        ] {
            let pem = std::fs::read(dir.path().join(format!("{stem}.pem"))).expect("cert");
            let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).expect("pem");
            let id = crate::tls::identity::server_identity_from_der(der.as_ref(), "aerodb.local").expect("serves");
            assert_eq!((id.role, id.name.as_str()), (role, name));
        }
        assert!(dir.path().join("controlplane.pem.old").exists(), "the old certificate is kept");
        assert!(upgrade(dir.path(), &opts, now()).expect("again").is_empty(), "an up-to-date directory is left alone");
    }

    #[test]
    fn a_refreshed_crl_keeps_its_serials_bumps_its_number_and_moves_next_update() {
        let dir = ca_dir();
        let files = issue(dir.path(), "aerodb.local", Role::Actor, "alice", None, &[], 30, now()).expect("issue");
        let serial = revoke(dir.path(), &files[0], now()).expect("revoke");
        let later = now() + Duration::days(20);
        assert_eq!(refresh_crl(dir.path(), 30, later).expect("refresh"), 3);
        let (revoked, number) = read_crl(&dir.path().join("crl.pem")).expect("crl");
        assert_eq!(revoked.iter().map(|(s, _)| hex::encode(s)).collect::<Vec<_>>(), vec![serial]);
        assert_eq!(number, 3);
        let pem = std::fs::read(dir.path().join("crl.pem")).expect("read");
        let next = crate::tls::material::crl_next_updates(&pem).expect("next update");
        assert_eq!(next, vec![(later + Duration::days(30)).unix_timestamp()]);
        assert!(matches!(refresh_crl(dir.path(), 0, later), Err(PkiError::Invalid { field: "days", .. })));
    }

    #[test]
    fn issue_never_overwrites_the_ca_the_server_the_crl_or_an_issued_certificate() {
        let dir = ca_dir();
        issue(dir.path(), "aerodb.local", Role::Actor, "alice", None, &[], 30, now()).expect("issue");
        let snapshot = || {
            let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir.path())
                .expect("ls")
                .map(|e| e.expect("entry").path())
                .map(|p| (p.clone(), std::fs::read(&p).expect("read")))
                .collect();
            files.sort();
            files
        };
        let before = snapshot();
        for name in ["ca", "server", "crl", "alice"] {
            match issue(dir.path(), "aerodb.local", Role::Actor, name, None, &[], 30, now()) {
                Err(PkiError::Invalid { field: "name", why }) => {
                    assert!(why.contains("reserved") || why.contains("already exists"), "{name}: {why}")
                }
                other => panic!("{name}: expected a refusal, got {other:?}"),
            }
        }
        assert_eq!(snapshot(), before, "a refused issue writes nothing");
    }
}
