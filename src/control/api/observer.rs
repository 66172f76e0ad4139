//! Observer: read-only views, each from one kernel snapshot per node, each audited as a read.
//!
//! A node that cannot be observed is an explicit `unreachable` entry carrying the transport
//! error: never left out, never filled from an older snapshot (nothing is kept between rounds),
//! never mixed with another snapshot. A single-node view of such a node fails UNAVAILABLE.
//! Whole-cluster views share observation rounds with concurrent reads (`control::rounds`): a
//! round always starts after the request arrived, so sharing never serves an older view. The
//! ClusterState, ReplicationStatus and PromotionState views are built once per round, by its
//! first caller, and copied to the others ([`crate::control::rounds::Round::view`]).

use std::collections::BTreeMap;

use tonic::{Request, Response, Status};

use super::SharedCtx;
use crate::audit::record::Observed;
use crate::control::adapter::TransportError;
use crate::control::adapter::snapshot::observed_of;
use crate::control::error::ControlError;
use crate::control::rounds::Snapshots;
use crate::limits::{IDEMPOTENCY_KEY_BYTES_MAX, NODE_ID_BYTES_MAX, RequestLimits, bounded};
use crate::proto::control as pb;
use crate::proto::kernel as kpb;
use crate::tls::authz::{Permit, permit_of};
use crate::wire::CONTROL_DOMAIN;

/// The Observer service.
#[derive(Debug, Clone)]
pub struct ObserverService {
    /// Shared context.
    pub ctx: SharedCtx,
}

fn unreachable(e: &TransportError) -> pb::Unreachable {
    pb::Unreachable { error: e.message.clone(), status: e.status.clone() }
}

impl ObserverService {
    fn node_ids(&self) -> Vec<String> {
        self.ctx.adapter.nodes().iter().map(|n| n.id.clone()).collect()
    }

    /// Resolves an optional node filter: `None` for every node, `Some(i)` for one.
    fn filter(&self, node_id: &str) -> Result<Option<usize>, ControlError> {
        if node_id.is_empty() {
            return Ok(None);
        }
        self.ctx
            .adapter
            .index_of(node_id)
            .map(Some)
            .ok_or_else(|| ControlError::UnknownNode { field: "node_id", node: node_id.to_string() })
    }

    /// Observes every node, or one (then an unreachable node is an error).
    async fn observe(&self, only: Option<usize>) -> Result<Snapshots, ControlError> {
        match only {
            None => Ok(self.ctx.rounds.observe_all().await.snaps().clone()),
            Some(i) => match self.ctx.adapter.observe(i).await {
                Ok(s) => Ok(vec![Ok(s)]),
                Err(e) => Err(ControlError::NodeUnreachable { node: e.node.clone(), error: e.to_string() }),
            },
        }
    }

    /// The ClusterState view of one round's snapshots.
    fn cluster_state(&self, snaps: &Snapshots) -> pb::ClusterState {
        let mut state = pb::ClusterState { cluster_id: self.ctx.cluster_id.clone(), ..Default::default() };
        for (node, snap) in self.ctx.adapter.nodes().iter().zip(snaps) {
            let entry = match snap {
                Ok(s) => {
                    if let Some(o) = &s.observation {
                        state.observed.push(o.clone());
                    }
                    let a = s.authority.clone().unwrap_or_default();
                    if a.role == kpb::Role::Primary as i32 {
                        state.primary_claims.push(pb::PrimaryClaim { node_id: node.id.clone(), epoch: a.epoch });
                    }
                    pb::node_entry::State::Snapshot(s.clone())
                }
                Err(e) => pb::node_entry::State::Unreachable(unreachable(e)),
            };
            state.nodes.push(pb::NodeEntry {
                node_id: node.id.clone(),
                address: node.address.clone(),
                state: Some(entry),
            });
        }
        let mut policies = snaps.iter().filter_map(|s| s.as_ref().ok().map(|s| s.approvals));
        if let Some(first) = policies.next() {
            state.approval_policies_differ = policies.any(|p| p != first);
        }
        state
    }

    /// The ReplicationStatus view of one round's snapshots.
    fn replication_status(&self, snaps: &Snapshots) -> pb::ReplicationStatus {
        let mut view = pb::ReplicationStatus::default();
        for (id, snap) in self.node_ids().into_iter().zip(snaps) {
            let state = match snap {
                Ok(s) => {
                    view.observed.extend(s.observation.clone());
                    pb::node_replication::State::Facts(pb::ReplicationFacts {
                        observation: s.observation.clone(),
                        authority: s.authority.clone(),
                        replication: s.replication.clone(),
                    })
                }
                Err(e) => pb::node_replication::State::Unreachable(unreachable(e)),
            };
            view.nodes.push(pb::NodeReplication { node_id: id, state: Some(state) });
        }
        view
    }

    /// The PromotionState view of one round's snapshots.
    fn promotion_state(&self, snaps: &Snapshots) -> pb::PromotionState {
        let mut view = pb::PromotionState::default();
        for (id, snap) in self.node_ids().into_iter().zip(snaps) {
            let state = match snap {
                Ok(s) => {
                    view.observed.extend(s.observation.clone());
                    let r = s.replication.clone().unwrap_or_default();
                    pb::node_promotion::State::Facts(pb::PromotionFacts {
                        observation: s.observation.clone(),
                        authority: s.authority.clone(),
                        promotion: s.promotion,
                        last_index: r.last_index,
                        last_epoch: r.last_epoch,
                    })
                }
                Err(e) => pb::node_promotion::State::Unreachable(unreachable(e)),
            };
            view.nodes.push(pb::NodePromotion { node_id: id, state: Some(state) });
        }
        view
    }

    async fn finish<T>(
        &self,
        permit: &Permit,
        command: &str,
        params: BTreeMap<String, String>,
        result: Result<(T, Vec<Observed>), ControlError>,
    ) -> Result<Response<T>, Status> {
        match result {
            Ok((view, observed)) => {
                self.ctx.record_read(permit, command, params, observed, None).await;
                Ok(Response::new(view))
            }
            Err(e) => {
                self.ctx.record_read(permit, command, params, Vec::new(), Some(&e)).await;
                Err(e.into())
            }
        }
    }
}

fn ids_for(all: &[String], only: Option<usize>) -> Vec<String> {
    match only {
        None => all.to_vec(),
        Some(i) => vec![all[i].clone()],
    }
}

fn params(node_id: &str) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    if !node_id.is_empty() {
        p.insert("node_id".into(), bounded(node_id, NODE_ID_BYTES_MAX));
    }
    p
}

#[tonic::async_trait]
impl pb::observer_server::Observer for ObserverService {
    async fn get_cluster_state(
        &self,
        req: Request<pb::GetClusterStateRequest>,
    ) -> Result<Response<pb::ClusterState>, Status> {
        let permit = permit_of(&req, CONTROL_DOMAIN)?;
        let round = self.ctx.rounds.observe_all().await;
        let state = round.view(|snaps| self.cluster_state(snaps));
        self.finish(&permit, "inspect_cluster_state", BTreeMap::new(), Ok((state, round.observed().to_vec()))).await
    }

    async fn get_node(&self, req: Request<pb::GetNodeRequest>) -> Result<Response<pb::NodeView>, Status> {
        let permit = permit_of(&req, CONTROL_DOMAIN)?;
        let node_id = req.get_ref().node_id.clone();
        let limits = req.get_ref().check_limits();
        let result = async {
            limits.map_err(|v| ControlError::TooLarge(Box::new(v)))?;
            if node_id.is_empty() {
                return Err(ControlError::MissingField { field: "node_id" });
            }
            let Some(i) = self.filter(&node_id)? else {
                return Err(ControlError::MissingField { field: "node_id" });
            };
            let snaps = self.observe(Some(i)).await?;
            let node = &self.ctx.adapter.nodes()[i];
            let snapshot = snaps.first().and_then(|s| s.as_ref().ok()).cloned();
            Ok((
                pb::NodeView { node_id: node.id.clone(), address: node.address.clone(), snapshot },
                observed_of(&snaps),
            ))
        }
        .await;
        self.finish(&permit, "inspect_node", params(&node_id), result).await
    }

    async fn get_replication_status(
        &self,
        req: Request<pb::GetReplicationStatusRequest>,
    ) -> Result<Response<pb::ReplicationStatus>, Status> {
        let permit = permit_of(&req, CONTROL_DOMAIN)?;
        let round = self.ctx.rounds.observe_all().await;
        let view = round.view(|snaps| self.replication_status(snaps));
        self.finish(&permit, "inspect_replication_status", BTreeMap::new(), Ok((view, round.observed().to_vec()))).await
    }

    async fn get_promotion_state(
        &self,
        req: Request<pb::GetPromotionStateRequest>,
    ) -> Result<Response<pb::PromotionState>, Status> {
        let permit = permit_of(&req, CONTROL_DOMAIN)?;
        let round = self.ctx.rounds.observe_all().await;
        let view = round.view(|snaps| self.promotion_state(snaps));
        self.finish(&permit, "inspect_promotion_state", BTreeMap::new(), Ok((view, round.observed().to_vec()))).await
    }

    async fn inspect_wal(&self, req: Request<pb::InspectWalRequest>) -> Result<Response<pb::WalInspection>, Status> {
        let permit = permit_of(&req, CONTROL_DOMAIN)?;
        let node_id = req.get_ref().node_id.clone();
        let limits = req.get_ref().check_limits();
        let result = async {
            limits.map_err(|v| ControlError::TooLarge(Box::new(v)))?;
            let only = self.filter(&node_id)?;
            let snaps = self.observe(only).await?;
            let mut view = pb::WalInspection::default();
            for (id, snap) in ids_for(&self.node_ids(), only).into_iter().zip(&snaps) {
                let state = match snap {
                    Ok(s) => {
                        view.observed.extend(s.observation.clone());
                        pb::node_wal::State::Facts(pb::WalFacts {
                            observation: s.observation.clone(),
                            wal: s.wal.clone(),
                            ledger: s.ledger,
                        })
                    }
                    Err(e) => pb::node_wal::State::Unreachable(unreachable(e)),
                };
                view.nodes.push(pb::NodeWal { node_id: id, state: Some(state) });
            }
            Ok((view, observed_of(&snaps)))
        }
        .await;
        self.finish(&permit, "inspect_wal", params(&node_id), result).await
    }

    async fn inspect_snapshots(
        &self,
        req: Request<pb::InspectSnapshotsRequest>,
    ) -> Result<Response<pb::SnapshotInspection>, Status> {
        let permit = permit_of(&req, CONTROL_DOMAIN)?;
        let node_id = req.get_ref().node_id.clone();
        let limits = req.get_ref().check_limits();
        let result = async {
            limits.map_err(|v| ControlError::TooLarge(Box::new(v)))?;
            let only = self.filter(&node_id)?;
            let snaps = self.observe(only).await?;
            let mut view = pb::SnapshotInspection::default();
            for (id, snap) in ids_for(&self.node_ids(), only).into_iter().zip(&snaps) {
                let state = match snap {
                    Ok(s) => {
                        view.observed.extend(s.observation.clone());
                        pb::node_snapshots::State::Facts(pb::SnapshotFacts {
                            observation: s.observation.clone(),
                            snapshots: s.snapshots.clone(),
                        })
                    }
                    Err(e) => pb::node_snapshots::State::Unreachable(unreachable(e)),
                };
                view.nodes.push(pb::NodeSnapshots { node_id: id, state: Some(state) });
            }
            Ok((view, observed_of(&snaps)))
        }
        .await;
        self.finish(&permit, "inspect_snapshots", params(&node_id), result).await
    }

    async fn get_outcome(&self, req: Request<pb::GetOutcomeRequest>) -> Result<Response<pb::OutcomeView>, Status> {
        let permit = permit_of(&req, CONTROL_DOMAIN)?;
        let key = req.get_ref().idempotency_key.clone();
        let mut p = BTreeMap::new();
        p.insert("idempotency_key".to_string(), bounded(&key, IDEMPOTENCY_KEY_BYTES_MAX));
        if let Err(v) = req.get_ref().check_limits() {
            let e = ControlError::TooLarge(Box::new(v));
            self.ctx.record_read(&permit, "outcome", p, Vec::new(), Some(&e)).await;
            return Err(e.into());
        }
        if key.is_empty() {
            let e = ControlError::MissingField { field: "idempotency_key" };
            self.ctx.record_read(&permit, "outcome", p, Vec::new(), Some(&e)).await;
            return Err(e.into());
        }
        if !crate::contract::digest::valid_idempotency_key(&key) {
            let e = ControlError::InvalidField {
                field: "idempotency_key",
                why: "must be 1..=128 characters of [A-Za-z0-9._:-]".into(),
            };
            self.ctx.record_read(&permit, "outcome", p, Vec::new(), Some(&e)).await;
            return Err(e.into());
        }
        let answers = self
            .ctx
            .adapter
            .get_outcome_all(&kpb::GetOutcomeRequest { idempotency_key: key.clone(), ..Default::default() })
            .await;
        let mut view = pb::OutcomeView { idempotency_key: key.clone(), ..Default::default() };
        let mut any_unreachable = false;
        let mut in_flight = false;
        let mut observed = Vec::new();
        for (node, answer) in self.ctx.adapter.nodes().iter().zip(answers) {
            let state = match answer {
                Ok(a) => {
                    if let Some(o) = &a.observation {
                        observed.push(crate::control::adapter::snapshot::observed(o));
                    }
                    if a.found && view.decided_on.is_empty() {
                        view.decided_on = node.id.clone();
                        view.record = a.record.clone();
                    }
                    in_flight |= a.in_flight;
                    pb::node_outcome::State::Answer(a)
                }
                Err(e) => {
                    any_unreachable = true;
                    pb::node_outcome::State::Unreachable(unreachable(&e))
                }
            };
            view.nodes.push(pb::NodeOutcome { node_id: node.id.clone(), state: Some(state) });
        }
        view.status = if !view.decided_on.is_empty() {
            pb::KeyStatus::Decided
        } else if in_flight {
            pb::KeyStatus::InFlight
        } else if any_unreachable {
            pb::KeyStatus::Undetermined
        } else {
            pb::KeyStatus::UnknownToAll
        } as i32;
        self.ctx.record_read(&permit, "outcome", p, observed, None).await;
        Ok(Response::new(view))
    }
}
