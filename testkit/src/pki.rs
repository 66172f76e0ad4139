//! Certificates and channels: the test PKI (`aerodb certs init` output), channels presenting a
//! role's certificate, extra identities issued by the test CA, and raw TLS channels for tests of
//! what a server accepts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aerodb::control::config::ControlTls;
use aerodb::kernel::config::NodeTls;
use aerodb::pki::{self, InitOptions};
use aerodb::tls::client::{ChannelOptions, channel, channel_to, fixed};
use aerodb::tls::identity::Role;
use aerodb::tls::material::{TlsPaths, client_config, client_tls};
use aerodb::tls::server_identity::ExpectedServer;
use tonic::transport::Channel;

use crate::cluster::Cluster;
use crate::sign;

/// The trust domain of test certificates.
pub const TD: &str = "aerodb.local";

/// Node certificates the test PKI issues: n1..n5 (a cluster of up to five nodes).
pub const NODE_CERTS: usize = 5;

/// Test certificates: `aerodb certs init` output plus helpers.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The directory `certs init` wrote (CA, CRL, role and node certificates and keys).
    pub dir: PathBuf,
}

impl Pki {
    /// `aerodb certs init` in `dir` for the test trust domain and nodes n1..n5 (see [`NODE_CERTS`]).
    pub fn new(dir: &Path) -> Self {
        let opts = InitOptions {
            trust_domain: TD.into(),
            control_endpoint: "127.0.0.1:1".into(),
            data_endpoint: "127.0.0.1:1".into(),
            extra_server_names: vec![],
            leaf_days: 30,
            nodes: (1..=NODE_CERTS).map(|i| format!("n{i}")).collect(),
        };
        pki::init(dir, &opts, time::OffsetDateTime::now_utc()).expect("certs init");
        Self::existing(dir)
    }

    /// The certificates `certs init` wrote in `dir`, their role certificates registered as intent
    /// signers (`sign::register`).
    pub fn existing(dir: &Path) -> Self {
        for role in ["actor", "observer", "auditor", "controlplane", "client"] {
            let (cert, key) = (dir.join(format!("{role}.pem")), dir.join(format!("{role}.key")));
            if cert.exists() {
                sign::register(&cert, &key);
            }
        }
        Self { dir: dir.to_path_buf() }
    }

    /// The material of `role`; for `Role::Node`, node n1's (each node has its own certificate:
    /// see [`Pki::node_paths`]).
    pub fn paths(&self, role: Role) -> TlsPaths {
        if role == Role::Node {
            return self.node_paths("n1");
        }
        TlsPaths {
            ca: self.dir.join("ca.pem"),
            crl: vec![self.dir.join("crl.pem")],
            cert: self.dir.join(format!("{role}.pem")),
            key: self.dir.join(format!("{role}.key")),
        }
    }

    /// Node `id`'s own certificate (identity `node/<id>`, serverAuth and clientAuth).
    pub fn node_paths(&self, id: &str) -> TlsPaths {
        let stem = pki::node_stem(id);
        TlsPaths {
            ca: self.dir.join("ca.pem"),
            crl: vec![self.dir.join("crl.pem")],
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        }
    }

    /// A channel presenting node `id`'s certificate.
    pub fn node_channel(&self, id: &str, addr: &str) -> Channel {
        self.channel_with(&self.node_paths(id), addr)
    }

    /// A channel as the product's clients make them: presenting `paths`, accepting only a server
    /// that presents `expected` (unrevoked under a fresh CRL).
    pub fn checked_channel(&self, paths: &TlsPaths, expected: ExpectedServer, addr: &str) -> Channel {
        let tls = client_tls(paths, TD).expect("client tls");
        channel_to(addr, fixed(tls), expected, ChannelOptions { connect_timeout: Duration::from_secs(5) })
            .expect("channel")
    }

    /// A channel to `addr` presenting `role`'s certificate (server identity not checked).
    pub fn channel(&self, role: Role, addr: &str) -> Channel {
        self.channel_with(&self.paths(role), addr)
    }

    /// A channel to `addr` presenting `paths` (server identity not checked).
    pub fn channel_with(&self, paths: &TlsPaths, addr: &str) -> Channel {
        let cfg = client_config(paths).expect("client tls");
        channel(addr, fixed(cfg), ChannelOptions { connect_timeout: Duration::from_secs(5) }).expect("channel")
    }

    /// Node `id`'s TLS: its own certificate serves and calls its peers.
    pub fn node_tls(&self, id: &str) -> NodeTls {
        let p = self.node_paths(id);
        NodeTls {
            trust_domain: TD.into(),
            ca: p.ca,
            crl: p.crl,
            server_cert: p.cert.clone(),
            server_key: p.key.clone(),
            node_cert: p.cert,
            node_key: p.key,
        }
    }

    /// The control plane's TLS: its certificate serves and calls the nodes.
    pub fn control_tls(&self) -> ControlTls {
        ControlTls {
            trust_domain: TD.into(),
            ca: self.dir.join("ca.pem"),
            crl: vec![self.dir.join("crl.pem")],
            server_cert: self.dir.join("controlplane.pem"),
            server_key: self.dir.join("controlplane.key"),
            kernel_cert: self.dir.join("controlplane.pem"),
            kernel_key: self.dir.join("controlplane.key"),
        }
    }

    /// Writes a profile for `role` pointing at `endpoint`; returns its path.
    pub fn profile(&self, role: Role, endpoint: &str) -> PathBuf {
        let p = aerodb::pki::profile::Profile {
            endpoint: endpoint.into(),
            trust_domain: TD.into(),
            ca: self.dir.join("ca.pem"),
            cert: self.paths(role).cert,
            key: self.paths(role).key,
            server: None,
        };
        let path = self.dir.join(format!("{role}-{}.profile.toml", endpoint.replace([':', '.'], "_")));
        p.write(&path).expect("profile");
        path
    }
}

/// A channel for an extra actor identity issued by the test CA.
pub fn extra_identity(c: &Cluster, role: Role, name: &str, addr: &str) -> Channel {
    aerodb::pki::issue(&c.pki.dir, TD, role, name, None, &[], 30, time::OffsetDateTime::now_utc()).expect("issue");
    sign::register(&c.pki.dir.join(format!("{name}.pem")), &c.pki.dir.join(format!("{name}.key")));
    let paths = TlsPaths {
        ca: c.pki.dir.join("ca.pem"),
        crl: vec![],
        cert: c.pki.dir.join(format!("{name}.pem")),
        key: c.pki.dir.join(format!("{name}.key")),
    };
    c.pki.channel_with(&paths, addr)
}

/// Shared PKI for tests that only need certificates.
pub fn shared_dir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().expect("tempdir"))
}

/// A channel to `addr` over the rustls client configuration `cfg`, checking no server identity:
/// for tests of what a server accepts from a hand-made client.
pub fn raw_channel(cfg: rustls::ClientConfig, addr: &str) -> Channel {
    channel(addr, fixed(cfg), Default::default()).expect("channel")
}

/// One `grpc.health.v1` Check over `ch`, answered within 10 s or reported as DEADLINE_EXCEEDED.
pub async fn health_check(ch: Channel) -> Result<(), tonic::Status> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let mut h = HealthClient::new(ch);
    tokio::time::timeout(Duration::from_secs(10), h.check(HealthCheckRequest { service: String::new() }))
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer within 10 s"))?
        .map(|_| ())
}
