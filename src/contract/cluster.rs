//! The cluster's membership as both sides name it.

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Node id, e.g. `n1`.
    pub id: String,
    /// `host:port` of its listener.
    pub address: String,
}
