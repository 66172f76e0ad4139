//! A node's state as metrics, read at scrape time from its one consistent snapshot
//! (`Node::observe`): role, epoch, indexes, replication lag per peer, WAL and ledger bytes.
//! Nothing on the node's paths changes; a scrape takes the node's lock once, briefly, as
//! `Kernel.Observe` does.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::kernel::node::Node;
use crate::proto::kernel as pb;

/// The roles a node reports (`aerodb_node_role{role}`: 1 for its role, 0 for the others).
const ROLES: [(pb::Role, &str); 4] = [
    (pb::Role::Primary, "primary"),
    (pb::Role::Replica, "replica"),
    (pb::Role::Demoted, "demoted"),
    (pb::Role::Halted, "halted"),
];

/// Reads a node's snapshot at every scrape.
#[derive(Debug)]
pub struct NodeCollector(pub Arc<Node>);

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.observe();
        let authority = s.authority.unwrap_or_default();
        let replication = s.replication.unwrap_or_default();
        let role = pb::Role::try_from(authority.role).unwrap_or(pb::Role::Unspecified);
        {
            let mut m = encoder.encode_descriptor(
                "aerodb_node_role",
                "1 for the node's current role, 0 for the others",
                None,
                MetricType::Gauge,
            )?;
            for (r, name) in ROLES {
                let labels = [("role", name)];
                ConstGauge::new(i64::from(r == role)).encode(m.encode_family(&labels)?)?;
            }
        }
        gauge(&mut encoder, "aerodb_node_epoch", "The epoch the node knows", authority.epoch)?;
        gauge(
            &mut encoder,
            "aerodb_node_highest_granted_epoch",
            "The highest epoch the node granted",
            authority.highest_granted_epoch,
        )?;
        gauge(&mut encoder, "aerodb_node_last_index", "Index of the last WAL entry", replication.last_index)?;
        gauge(
            &mut encoder,
            "aerodb_node_durable_index",
            "Index of the last fsynced WAL entry",
            replication.durable_index,
        )?;
        gauge(
            &mut encoder,
            "aerodb_node_commit_index",
            "Highest index known durable on a majority",
            replication.commit_index,
        )?;
        gauge(
            &mut encoder,
            "aerodb_node_applied_index",
            "Highest index applied to the state machine",
            replication.applied_index,
        )?;
        gauge(
            &mut encoder,
            "aerodb_node_control_seq",
            "The kernel ledger's control sequence",
            s.ledger.as_ref().map(|l| l.control_seq).unwrap_or(0),
        )?;
        {
            let mut m = encoder.encode_descriptor(
                "aerodb_node_replication_lag_entries",
                "Entries between this node's last index and each peer's known durable position",
                None,
                MetricType::Gauge,
            )?;
            for p in &replication.peers {
                let labels = [("peer", p.node_id.as_str())];
                ConstGauge::new(i64::try_from(p.lag_entries).unwrap_or(i64::MAX)).encode(m.encode_family(&labels)?)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "aerodb_node_peer_connected",
                "1 while the last status call to the peer succeeded",
                None,
                MetricType::Gauge,
            )?;
            for p in &replication.peers {
                let labels = [("peer", p.node_id.as_str())];
                ConstGauge::new(i64::from(p.connected)).encode(m.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut encoder,
            "aerodb_node_wal_bytes",
            "Bytes of all WAL segments",
            s.wal.map(|w| w.total_bytes).unwrap_or(0),
        )?;
        gauge(
            &mut encoder,
            "aerodb_node_ledger_bytes",
            "Bytes of the kernel ledger",
            s.ledger.as_ref().map(|l| l.bytes).unwrap_or(0),
        )?;
        ConstCounter::new(s.execute_calls_received).encode(encoder.encode_descriptor(
            "aerodb_node_execute_calls_received",
            "Kernel.Execute calls received since start",
            None,
            MetricType::Counter,
        )?)?;
        Ok(())
    }
}
