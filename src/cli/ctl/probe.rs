//! Why a call could not even start: after a transport failure with no error details, aerodbctl
//! repeats the TLS handshake once on its own and reads the server's first answer, so that a
//! certificate the server refused (a TLS alert: revoked, expired, unknown CA) is said in words.
//! The probe sends the HTTP/2 connection preface and an empty SETTINGS frame only: no request,
//! so nothing is executed or read.

use std::sync::OnceLock;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::Status;

use super::conn::Conn;
use crate::tls::identity::Role;
use crate::tls::server_identity::ExpectedServer;
use crate::wire::WireError;

/// Where the probe connects: set once per process by the command before its first call.
static TARGET: OnceLock<(Conn, String, Role)> = OnceLock::new();
/// What the probe found: the error text of the handshake or of the server's first answer.
static FOUND: OnceLock<String> = OnceLock::new();

/// Remembers where this process connects (`endpoint`, a server of `role`) for [`diagnose`].
/// Only the first call counts.
pub fn set_target(conn: &Conn, endpoint: &str, role: Role) {
    let _ = TARGET.set((conn.clone(), endpoint.to_string(), role));
}

/// What the probe found, if it ran and failed (text that [`super::certificate_refusal`] reads).
pub fn found() -> Option<&'static str> {
    FOUND.get().map(String::as_str)
}

/// After a failed call whose status carries no error details (a transport failure), repeats the
/// handshake once to learn whether a certificate was refused. Bounded (a few seconds); does
/// nothing for a call the server answered, or when no target was set.
pub async fn diagnose(status: &Status) {
    if WireError::from_status(status).is_some() || FOUND.get().is_some() {
        return;
    }
    let Some((conn, endpoint, role)) = TARGET.get() else { return };
    if let Ok(Some(text)) = tokio::time::timeout(Duration::from_secs(5), probe(conn, endpoint, *role)).await {
        let _ = FOUND.set(text);
    }
}

/// One handshake and one read: the error text, or None when the server took the connection.
async fn probe(conn: &Conn, endpoint: &str, role: Role) -> Option<String> {
    let expected = match &conn.server {
        Some(text) => ExpectedServer::parse(text).ok()?,
        None => ExpectedServer::any(role),
    };
    let tls = crate::tls::material::client_tls(&conn.paths, &conn.trust_domain).ok()?;
    let config = tls.config_for(&expected).ok()?;
    let (host, _) = crate::tls::client::split_host_port(endpoint)?;
    let name = ServerName::try_from(host.to_string()).ok()?;
    let tcp = TcpStream::connect(endpoint).await.ok()?;
    let mut stream = match TlsConnector::from(config).connect(name, tcp).await {
        Ok(s) => s,
        Err(e) => return Some(error_text(&e)),
    };
    // The HTTP/2 client preface and an empty SETTINGS frame: a server that accepted the
    // certificate answers with its own SETTINGS; one that refused it sends a TLS alert.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    if let Err(e) = stream.write_all(&hello).await {
        return Some(error_text(&e));
    }
    let mut buf = [0u8; 64];
    match stream.read(&mut buf).await {
        Ok(_) => None,
        Err(e) => Some(error_text(&e)),
    }
}

fn error_text(e: &std::io::Error) -> String {
    let mut text = format!("{e} | {e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(" | {s} | {s:?}"));
        source = s.source();
    }
    text
}

/// What this client can establish by itself about its own certificate after a server refused
/// it without a specific alert: outside its validity period, not issued by the profile's CA, or
/// listed in the CRL that sits beside the profile's CA file (`crl.pem`). None when none holds.
pub fn local_reason() -> Option<String> {
    use rustls_pki_types::pem::PemObject;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (conn, _, _) = TARGET.get()?;
    let certs = crate::tls::material::load_certs(&conn.paths.cert).ok()?;
    let leaf_der = certs.first()?;
    let (_, leaf) = X509Certificate::from_der(leaf_der.as_ref()).ok()?;
    let validity = leaf.validity();
    if !validity.is_valid() {
        return Some(format!(
            "it is outside its validity period (not before {}, not after {}): expired or not yet valid",
            validity.not_before, validity.not_after
        ));
    }
    let cas = crate::tls::material::load_certs(&conn.paths.ca).unwrap_or_default();
    let issued_by_ca = cas.iter().any(|der| {
        X509Certificate::from_der(der.as_ref())
            .map(|(_, ca)| {
                ca.subject().as_raw() == leaf.issuer().as_raw() && leaf.verify_signature(Some(ca.public_key())).is_ok()
            })
            .unwrap_or(false)
    });
    if !issued_by_ca {
        return Some(format!(
            "it was not issued by the CA in {} (an unknown CA to a server that trusts that CA)",
            conn.paths.ca.display()
        ));
    }
    let crl_path = conn.paths.ca.with_file_name("crl.pem");
    let bytes = std::fs::read(&crl_path).ok()?;
    let crl_der = rustls_pki_types::CertificateRevocationListDer::from_pem_slice(&bytes).ok()?;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(crl_der.as_ref()).ok()?;
    let serial = leaf.raw_serial();
    crl.iter_revoked_certificates().any(|r| r.raw_serial() == serial).then(|| {
        format!("it is revoked: its serial {} is listed in {}", leaf.raw_serial_as_string(), crl_path.display())
    })
}
