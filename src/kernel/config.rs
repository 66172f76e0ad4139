//! `aerodb node` configuration (TOML), validated on load.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::tls::identity::valid_name;
use crate::tls::limits::ConnectionLimits;
use crate::tls::material::TlsPaths;

pub use crate::contract::cluster::Member;

/// Tunables, each with a default and a range; an out-of-range value is an error, never clamped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    /// A Put not durable on a majority within this is answered UNAVAILABLE (outcome unknown).
    /// Default 5000, range 100..=60000.
    pub write_ack_timeout_ms: u64,
    /// Interval between status polls of peers. Default 150, range 20..=5000.
    pub status_interval_ms: u64,
    /// Bound of one node-to-node call. Default 1000, range 100..=30000.
    pub peer_call_timeout_ms: u64,
    /// Long-poll bound of a Pull. Default 200, range 10..=5000.
    pub pull_wait_ms: u64,
    /// How long a demotion waits for its Fence to reach a majority before answering.
    /// Default 5000, range 0..=60000.
    pub fence_wait_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            write_ack_timeout_ms: 5000,
            status_interval_ms: 150,
            peer_call_timeout_ms: 1000,
            pull_wait_ms: 200,
            fence_wait_ms: 5000,
        }
    }
}

/// Node TLS: the server side (listener) and the client side (calls to peers, role node).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeTls {
    /// Trust domain of identities.
    pub trust_domain: String,
    /// CA bundle.
    pub ca: PathBuf,
    /// CRLs.
    pub crl: Vec<PathBuf>,
    /// Server certificate (serverAuth).
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// Client certificate with role `node` (clientAuth), for replication calls.
    pub node_cert: PathBuf,
    /// Its key.
    pub node_key: PathBuf,
}

impl NodeTls {
    /// The listener's material.
    pub(crate) fn server_paths(&self) -> TlsPaths {
        TlsPaths {
            ca: self.ca.clone(),
            crl: self.crl.clone(),
            cert: self.server_cert.clone(),
            key: self.server_key.clone(),
        }
    }

    /// The peer-client material.
    pub(crate) fn client_paths(&self) -> TlsPaths {
        TlsPaths {
            ca: self.ca.clone(),
            crl: self.crl.clone(),
            cert: self.node_cert.clone(),
            key: self.node_key.clone(),
        }
    }
}

/// `aerodb node run --config F`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The cluster; must match the data dir's Genesis.
    pub cluster_id: String,
    /// This node; must be one of `members` and match the data dir's Genesis.
    pub node_id: String,
    /// Where to listen (`host:port`; port 0 picks one, written to `<data_dir>/ADDRESS`).
    pub listen: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Every member, this node included, in a fixed order (views use it).
    pub members: Vec<Member>,
    /// TLS material.
    pub tls: NodeTls,
    /// Tunables.
    #[serde(default)]
    pub timing: Timing,
    /// Limits of the listener (handshakes, connections per identity, idle timeout, streams).
    #[serde(default)]
    pub connections: ConnectionLimits,
    /// Where to serve Prometheus metrics (`GET /metrics`, plain HTTP), e.g. `127.0.0.1:9701`;
    /// absent: no metrics endpoint. Keep it on loopback or a private network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_address: Option<String>,
    /// How many distinct actors must sign each command's intent (`[approvals]`, each 1..=8,
    /// default 1). Keep it identical on every node: views show a mismatch.
    #[serde(default)]
    pub approvals: crate::contract::intent::Approvals,
    /// Online snapshots, WAL segments and compaction (see `kernel::lifecycle`).
    #[serde(default)]
    pub lifecycle: super::lifecycle::Lifecycle,
}

pub(crate) use crate::config::{ConfigError, range, read_toml};

impl NodeConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let cfg: Self = read_toml(path)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !valid_name(&self.cluster_id) {
            return Err(ConfigError::Invalid { field: "cluster_id".into(), why: "1..=63 of [a-z0-9._-]".into() });
        }
        if !valid_name(&self.node_id) {
            return Err(ConfigError::Invalid { field: "node_id".into(), why: "1..=63 of [a-z0-9._-]".into() });
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.members {
            if !valid_name(&m.id) || !seen.insert(m.id.clone()) {
                return Err(ConfigError::Invalid {
                    field: "members".into(),
                    why: format!("member id {:?} is invalid or repeated", m.id),
                });
            }
            if crate::tls::client::split_host_port(&m.address).is_none() {
                return Err(ConfigError::Invalid {
                    field: format!("members.{}.address", m.id),
                    why: "must be host:port".into(),
                });
            }
        }
        if !seen.contains(&self.node_id) {
            return Err(ConfigError::Invalid {
                field: "members".into(),
                why: format!("{} is not a member", self.node_id),
            });
        }
        if self.members.len() > 9 {
            return Err(ConfigError::Invalid { field: "members".into(), why: "at most 9 members".into() });
        }
        let t = &self.timing;
        range("timing.write_ack_timeout_ms", t.write_ack_timeout_ms, 100, 60_000)?;
        range("timing.status_interval_ms", t.status_interval_ms, 20, 5_000)?;
        range("timing.peer_call_timeout_ms", t.peer_call_timeout_ms, 100, 30_000)?;
        range("timing.pull_wait_ms", t.pull_wait_ms, 10, 5_000)?;
        range("timing.fence_wait_ms", t.fence_wait_ms, 0, 60_000)?;
        self.connections.validate("connections")?;
        if let Some((command, n)) = self.approvals.out_of_range() {
            return Err(ConfigError::Invalid {
                field: format!("approvals.{command}"),
                why: format!(
                    "{n} is out of range 1..={} (signatures of distinct actors the command needs)",
                    crate::contract::intent::SIGNERS_MAX
                ),
            });
        }
        self.lifecycle.validate("lifecycle")?;
        crate::metrics::validate_address(self.metrics_address.as_deref())?;
        Ok(())
    }

    /// The other members.
    pub(crate) fn peers(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(move |m| m.id != self.node_id)
    }

    /// Votes needed for a majority.
    pub(crate) fn quorum(&self) -> usize {
        self.members.len() / 2 + 1
    }
}

impl Timing {
    /// As a duration.
    pub(crate) fn write_ack_timeout(&self) -> Duration {
        Duration::from_millis(self.write_ack_timeout_ms)
    }
    /// As a duration.
    pub(crate) fn status_interval(&self) -> Duration {
        Duration::from_millis(self.status_interval_ms)
    }
    /// As a duration.
    pub(crate) fn peer_call_timeout(&self) -> Duration {
        Duration::from_millis(self.peer_call_timeout_ms)
    }
    /// As a duration.
    pub(crate) fn fence_wait(&self) -> Duration {
        Duration::from_millis(self.fence_wait_ms)
    }
}
