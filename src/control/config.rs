//! `aerodb control` configuration (TOML), validated on load.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{ConfigError, range, read_toml};
use crate::contract::cluster::Member;
use crate::tls::identity::valid_name;
use crate::tls::limits::ConnectionLimits;
use crate::tls::material::TlsPaths;

/// Control-plane TLS: the public listener and the client side towards the kernels.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlTls {
    /// Trust domain of identities.
    pub trust_domain: String,
    /// CA bundle.
    pub ca: PathBuf,
    /// CRLs.
    pub crl: Vec<PathBuf>,
    /// Server certificate.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// Client certificate with role `controlplane`, for kernel calls.
    pub kernel_cert: PathBuf,
    /// Its key.
    pub kernel_key: PathBuf,
}

impl ControlTls {
    /// Listener material.
    pub fn server_paths(&self) -> TlsPaths {
        TlsPaths {
            ca: self.ca.clone(),
            crl: self.crl.clone(),
            cert: self.server_cert.clone(),
            key: self.server_key.clone(),
        }
    }
    /// Kernel-client material.
    pub fn kernel_paths(&self) -> TlsPaths {
        TlsPaths {
            ca: self.ca.clone(),
            crl: self.crl.clone(),
            cert: self.kernel_cert.clone(),
            key: self.kernel_key.clone(),
        }
    }
}

/// Confirmation flow limits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowConfig {
    /// A pending action expires (becomes unconfirmable) after this. Default 120, range 5..=3600.
    pub confirmation_ttl_seconds: u64,
    /// Pending actions held at most. Default 1024, range 1..=100000.
    pub max_pending: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self { confirmation_ttl_seconds: 120, max_pending: 1024 }
    }
}

/// Kernel call deadlines.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KernelCalls {
    /// Deadline of Observe and GetOutcome. Default 2000, range 100..=60000.
    pub read_timeout_ms: u64,
    /// Deadline of Execute; past it the outcome is UNKNOWN. Default 15000, range 1000..=300000.
    pub execute_timeout_ms: u64,
}

impl Default for KernelCalls {
    fn default() -> Self {
        Self { read_timeout_ms: 2000, execute_timeout_ms: 15000 }
    }
}

/// Audit settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// A signed checkpoint every this many records. Default 1000, range 1..=10000000.
    pub checkpoint_every: u64,
    /// A signed checkpoint at least this often while unsigned records exist (besides one after
    /// every batch holding an Actor answer's record). Default 10, range 1..=3600.
    pub checkpoint_interval_seconds: u64,
    /// Refused handshakes recorded per peer address per minute; the rest are counted and the
    /// count recorded. Default 20, range 1..=10000.
    pub handshake_records_per_minute: u32,
    /// Refused handshakes recorded per minute from all addresses together; the rest are counted
    /// and the count recorded once per minute. Default 600, range 1..=100000.
    pub handshake_records_per_minute_total: u32,
    /// Records of reads, denials and edge refusals written one per call for each identity per
    /// second; beyond it an identity's calls share one aggregate record (with their count) per
    /// flush interval, and each waits until that record is durable. Default 100, range
    /// 1..=1000000.
    pub records_per_identity_per_second: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            checkpoint_interval_seconds: 10,
            handshake_records_per_minute: 20,
            handshake_records_per_minute_total: 600,
            records_per_identity_per_second: 100,
        }
    }
}

/// `aerodb control --config F`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// This instance (written in every audit record). Several may front one cluster.
    pub instance_id: String,
    /// The cluster.
    pub cluster_id: String,
    /// Public listener (`host:port`; port 0 picks one, written to `<audit_dir>/../ADDRESS`).
    pub listen: String,
    /// The audit directory of this instance.
    pub audit_dir: PathBuf,
    /// Every kernel node, in a fixed order (views list nodes in it).
    pub nodes: Vec<Member>,
    /// TLS.
    pub tls: ControlTls,
    /// Confirmation flow.
    #[serde(default)]
    pub flow: FlowConfig,
    /// Kernel calls.
    #[serde(default)]
    pub kernel: KernelCalls,
    /// Audit.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Limits of the public listener (handshakes, connections per identity, idle timeout,
    /// streams).
    #[serde(default)]
    pub connections: ConnectionLimits,
    /// Where to serve Prometheus metrics (`GET /metrics`, plain HTTP), e.g. `127.0.0.1:9700`;
    /// absent: no metrics endpoint. Keep it on loopback or a private network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_address: Option<String>,
}

impl ControlConfig {
    /// Reads and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let cfg: Self = read_toml(path)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, v) in [("instance_id", &self.instance_id), ("cluster_id", &self.cluster_id)] {
            if !valid_name(v) {
                return Err(ConfigError::Invalid { field: field.into(), why: "1..=63 of [a-z0-9._-]".into() });
            }
        }
        if self.nodes.is_empty() {
            return Err(ConfigError::Invalid { field: "nodes".into(), why: "at least one node".into() });
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.nodes {
            if !valid_name(&m.id) || !seen.insert(&m.id) {
                return Err(ConfigError::Invalid {
                    field: "nodes".into(),
                    why: format!("node id {:?} invalid or repeated", m.id),
                });
            }
            if crate::tls::client::split_host_port(&m.address).is_none() {
                return Err(ConfigError::Invalid {
                    field: format!("nodes.{}.address", m.id),
                    why: "must be host:port".into(),
                });
            }
        }
        range("flow.confirmation_ttl_seconds", self.flow.confirmation_ttl_seconds, 5, 3600)?;
        range("flow.max_pending", self.flow.max_pending as u64, 1, 100_000)?;
        range("kernel.read_timeout_ms", self.kernel.read_timeout_ms, 100, 60_000)?;
        range("kernel.execute_timeout_ms", self.kernel.execute_timeout_ms, 1000, 300_000)?;
        range("audit.checkpoint_every", self.audit.checkpoint_every, 1, 10_000_000)?;
        range("audit.checkpoint_interval_seconds", self.audit.checkpoint_interval_seconds, 1, 3600)?;
        range("audit.handshake_records_per_minute", u64::from(self.audit.handshake_records_per_minute), 1, 10_000)?;
        range(
            "audit.handshake_records_per_minute_total",
            u64::from(self.audit.handshake_records_per_minute_total),
            1,
            100_000,
        )?;
        range(
            "audit.records_per_identity_per_second",
            u64::from(self.audit.records_per_identity_per_second),
            1,
            1_000_000,
        )?;
        self.connections.validate("connections")?;
        crate::metrics::validate_address(self.metrics_address.as_deref())?;
        Ok(())
    }

    /// As durations.
    pub fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.kernel.read_timeout_ms)
    }
    /// As durations.
    pub fn execute_timeout(&self) -> Duration {
        Duration::from_millis(self.kernel.execute_timeout_ms)
    }
}
