//! Auditor: read, verify and reconstruct the audit trail; signed checkpoints, inclusion and
//! consistency proofs. Nothing here writes to a kernel and
//! nothing replays an action; the one kernel call is a GetOutcome (a read) in reconstruction.

use std::collections::BTreeMap;
use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::SharedCtx;
use crate::audit::checkpoint::Checkpoint;
use crate::audit::record::{Body, Stage, Stored};
use crate::audit::tree::TreeReader;
use crate::audit::{chain, merkle, verify};
use crate::control::error::ControlError;
use crate::limits::{AUDIT_FILTER_BYTES_MAX, IDEMPOTENCY_KEY_BYTES_MAX, RequestLimits, bounded};
use crate::proto::control as pb;
use crate::proto::kernel as kpb;
use crate::tls::authz::permit_of;
use crate::wire::CONTROL_DOMAIN;

/// Records one ReadAudit returns at most.
pub const READ_LIMIT_MAX: u32 = crate::limits::AUDIT_READ_LIMIT_MAX;
/// Records one ReadAudit returns by default.
pub const READ_LIMIT_DEFAULT: u32 = 100;

/// The Auditor service.
#[derive(Debug, Clone)]
pub struct AuditorService {
    /// Shared context.
    pub ctx: SharedCtx,
}

/// The proto form of a stored record.
pub fn to_proto(s: &Stored, body: &Body) -> pb::AuditRecord {
    pb::AuditRecord {
        seq: s.seq,
        stage: body.draft.stage.as_str().into(),
        correlation_id: body.draft.correlation_id.clone(),
        command: body.draft.command.clone(),
        outcome: body.draft.outcome.clone(),
        body_json: String::from_utf8_lossy(&s.body_json).into_owned(),
        hash: hex::encode(s.hash),
        prev_hash: hex::encode(s.prev_hash),
    }
}

fn matches(f: &pb::ReadAuditRequest, b: &Body) -> bool {
    let d = &b.draft;
    (f.correlation_id.is_empty() || d.correlation_id == f.correlation_id)
        && (f.command.is_empty() || d.command == f.command)
        && (f.stage.is_empty() || d.stage.as_str() == f.stage)
        && (f.identity.is_empty()
            || d.identity
                .as_ref()
                .is_some_and(|i| i.name == f.identity || format!("{}/{}", i.role, i.name) == f.identity))
        && (f.time_from_unix_ms == 0 || b.time_unix_ms >= f.time_from_unix_ms)
        && (f.time_to_unix_ms == 0 || b.time_unix_ms <= f.time_to_unix_ms)
}

pub use crate::audit::reconstruct::missing_stages;

impl AuditorService {
    async fn read_records(&self, f: pb::ReadAuditRequest) -> Result<Vec<pb::AuditRecord>, verify::Problem> {
        let dir = self.ctx.audit.dir().to_path_buf();
        let limit = match f.limit {
            0 => READ_LIMIT_DEFAULT,
            n => n.min(READ_LIMIT_MAX),
        } as usize;
        tokio::task::spawn_blocking(move || {
            let mut out = std::collections::VecDeque::new();
            verify::read_from(&dir, f.from_seq, |s| {
                if let Ok(body) = s.body()
                    && matches(&f, &body)
                {
                    out.push_back(to_proto(s, &body));
                    if f.tail && out.len() > limit {
                        out.pop_front();
                    }
                }
                f.tail || out.len() < limit
            })?;
            Ok(out.into_iter().collect())
        })
        .await
        .map_err(|e| verify::Problem { file: Default::default(), offset: 0, seq: 0, what: e.to_string() })?
    }
}

type RecordStream = Pin<Box<dyn Stream<Item = Result<pb::AuditRecord, Status>> + Send>>;

#[tonic::async_trait]
impl pb::auditor_server::Auditor for AuditorService {
    type ReadAuditStream = RecordStream;

    async fn read_audit(&self, req: Request<pb::ReadAuditRequest>) -> Result<Response<RecordStream>, Status> {
        let permit = permit_of(&req, CONTROL_DOMAIN)?;
        let f = req.into_inner();
        let mut params = BTreeMap::new();
        params.insert("from_seq".to_string(), f.from_seq.to_string());
        params.insert("limit".to_string(), f.limit.to_string());
        for (k, v) in [
            ("correlation_id", &f.correlation_id),
            ("identity", &f.identity),
            ("command", &f.command),
            ("stage", &f.stage),
        ] {
            if !v.is_empty() {
                params.insert(k.to_string(), bounded(v, AUDIT_FILTER_BYTES_MAX));
            }
        }
        if let Err(v) = f.check_limits() {
            let e = ControlError::TooLarge(Box::new(v));
            self.ctx.record_read(&permit, "audit_read", params, Vec::new(), Some(&e)).await;
            return Err(e.into());
        }
        let records =
            self.read_records(f).await.map_err(|p| Status::from(ControlError::AuditUnreadable(p.to_string())))?;
        self.ctx.record_read(&permit, "audit_read", params, Vec::new(), None).await;
        Ok(Response::new(Box::pin(tokio_stream::iter(records.into_iter().map(Ok)))))
    }

    async fn verify_audit(
        &self,
        req: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        let permit = permit_of(&req, CONTROL_DOMAIN)?;
        let r = req.into_inner();
        let dir = self.ctx.audit.dir().to_path_buf();
        let report = tokio::task::spawn_blocking(move || verify::verify_dir(&dir, None))
            .await
            .map_err(|e| Status::from(ControlError::Internal(format!("the verification task failed: {e}"))))?;
        let in_range = |s: u64| (r.from_seq == 0 || s >= r.from_seq) && (r.to_seq == 0 || s <= r.to_seq);
        let checked = if r.from_seq == 0 && r.to_seq == 0 {
            report.records
        } else {
            (report.first_seq..=report.last_seq).filter(|s| in_range(*s)).count() as u64
        };
        let mut params = BTreeMap::new();
        params.insert("from_seq".into(), r.from_seq.to_string());
        params.insert("to_seq".into(), r.to_seq.to_string());
        self.ctx.record_read(&permit, "audit_verify", params, Vec::new(), None).await;
        Ok(Response::new(pb::VerifyAuditResponse {
            ok: report.ok,
            records_checked: checked,
            first_seq: report.first_seq,
            last_seq: report.last_seq,
            head_hash: report.head_hash,
            checkpoints_checked: report.checkpoints_checked,
            first_problem: report.problem.map(|p| p.to_string()).unwrap_or_default(),
            bytes_read: report.bytes,
        }))
    }

    async fn reconstruct_action(
        &self,
        req: Request<pb::ReconstructActionRequest>,
    ) -> Result<Response<pb::Reconstruction>, Status> {
        let permit = permit_of(&req, CONTROL_DOMAIN)?;
        if let Err(v) = req.get_ref().check_limits() {
            let mut params = BTreeMap::new();
            match &req.get_ref().key {
                Some(pb::reconstruct_action_request::Key::CorrelationId(c)) => {
                    params.insert("correlation_id".to_string(), bounded(c, AUDIT_FILTER_BYTES_MAX))
                }
                Some(pb::reconstruct_action_request::Key::IdempotencyKey(k)) => {
                    params.insert("idempotency_key".to_string(), bounded(k, IDEMPOTENCY_KEY_BYTES_MAX))
                }
                None => None,
            };
            let e = ControlError::TooLarge(Box::new(v));
            self.ctx.record_read(&permit, "audit_reconstruct", params, Vec::new(), Some(&e)).await;
            return Err(e.into());
        }
        let (by_correlation, value) = match req.into_inner().key {
            Some(pb::reconstruct_action_request::Key::CorrelationId(c)) if !c.is_empty() => (true, c),
            Some(pb::reconstruct_action_request::Key::IdempotencyKey(k)) if !k.is_empty() => (false, k),
            _ => return Err(ControlError::MissingField { field: "correlation_id or idempotency_key" }.into()),
        };
        let dir = self.ctx.audit.dir().to_path_buf();
        let v = value.clone();
        let found: Vec<(Stored, Body)> = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let r = verify::read_from(&dir, 1, |s| {
                if let Ok(b) = s.body() {
                    let hit = if by_correlation { b.draft.correlation_id == v } else { b.draft.idempotency_key == v };
                    if hit && b.draft.stage != Stage::Read {
                        out.push((s.clone(), b));
                    }
                }
                true
            });
            r.map(|()| out)
        })
        .await
        .map_err(|e| Status::from(ControlError::Internal(format!("the reconstruction task failed: {e}"))))?
        .map_err(|p| Status::from(ControlError::AuditUnreadable(p.to_string())))?;

        let mut rec = pb::Reconstruction::default();
        if by_correlation {
            rec.correlation_id = value.clone();
        } else {
            rec.idempotency_key = value.clone();
        }
        for (s, b) in &found {
            let d = &b.draft;
            if rec.command.is_empty() && !d.command.is_empty() {
                rec.command = d.command.clone();
            }
            if rec.target_node.is_empty() && !d.target.is_empty() {
                rec.target_node = d.target.clone();
            }
            if rec.idempotency_key.is_empty() && !d.idempotency_key.is_empty() {
                rec.idempotency_key = d.idempotency_key.clone();
            }
            if rec.correlation_id.is_empty() {
                rec.correlation_id = d.correlation_id.clone();
            }
            if rec.requested_by.is_empty()
                && let Some(i) = &d.identity
            {
                rec.requested_by = format!("{}/{}", i.role, i.name);
            }
            rec.stages.push(pb::StageFound {
                stage: d.stage.as_str().into(),
                seq: s.seq,
                time_unix_ms: b.time_unix_ms,
                outcome: d.outcome.clone(),
                error_code: d.error.as_ref().map(|e| e.code.clone()).unwrap_or_default(),
            });
            rec.records.push(to_proto(s, b));
        }
        let stages: Vec<Stage> = found.iter().map(|(_, b)| b.draft.stage).collect();
        rec.missing_stages = missing_stages(&stages);
        // The kernel ledger's answer: one GetOutcome to the target, compared with the request the
        // trail records (so a decision under the same key for another request is not credited to
        // this one).
        let (digest, requester) = trail_request(&found, &rec.target_node);
        rec.kernel_ledger = match (self.ctx.adapter.index_of(&rec.target_node), rec.idempotency_key.is_empty()) {
            (Some(i), false) => {
                let lookup = kpb::GetOutcomeRequest {
                    idempotency_key: rec.idempotency_key.clone(),
                    request_digest: digest,
                    requester,
                };
                match self.ctx.adapter.get_outcome(i, lookup).await {
                    Ok(a) if a.found && a.r#match == kpb::OutcomeMatch::KeyReused as i32 => {
                        let r = a.record.unwrap_or_default();
                        format!(
                            "the key was decided at control_seq {} on {} for another request: this request never \
                             executed there",
                            r.control_seq, rec.target_node
                        )
                    }
                    Ok(a) if a.found => {
                        let r = a.record.unwrap_or_default();
                        if r.decision == kpb::Decision::Executed as i32 {
                            format!("executed at control_seq {} on {}", r.control_seq, rec.target_node)
                        } else {
                            let code = r.rejection.map(|x| x.code).unwrap_or_default();
                            format!("rejected ({code}) at control_seq {} on {}", r.control_seq, rec.target_node)
                        }
                    }
                    Ok(a) if a.in_flight => format!("executing now on {}", rec.target_node),
                    Ok(_) => format!("no decision for this key on {}: it never executed there", rec.target_node),
                    Err(e) => format!("unknown: {e}"),
                }
            }
            _ => "not asked: no target node and idempotency key in the trail".into(),
        };
        let found_text = if stages.is_empty() {
            "no records".to_string()
        } else {
            stages.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        };
        let missing_text = if rec.missing_stages.is_empty() {
            String::new()
        } else {
            format!("; {} not recorded", rec.missing_stages.join(", "))
        };
        rec.summary = format!("{found_text}{missing_text}; kernel ledger: {}", rec.kernel_ledger);
        let mut params = BTreeMap::new();
        params.insert(if by_correlation { "correlation_id" } else { "idempotency_key" }.to_string(), value);
        self.ctx.record_read(&permit, "audit_reconstruct", params, Vec::new(), None).await;
        Ok(Response::new(rec))
    }

    async fn get_checkpoint(
        &self,
        req: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::SignedCheckpoint>, Status> {
        let permit = permit_of(&req, CONTROL_DOMAIN)?;
        self.ctx.record_read(&permit, "audit_checkpoint", BTreeMap::new(), Vec::new(), None).await;
        // A fresh checkpoint of the current head (which includes the read just recorded).
        let cp = match self.ctx.audit.checkpoint().await {
            Some(cp) => cp,
            None => self.ctx.audit.latest_checkpoint().ok_or_else(|| Status::from(ControlError::NoCheckpoint))?,
        };
        Ok(Response::new(cp.to_proto(self.ctx.audit.public_key())))
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let permit = permit_of(&req, CONTROL_DOMAIN)?;
        let r = req.into_inner();
        let mut params = BTreeMap::new();
        params.insert("seq".to_string(), r.seq.to_string());
        params.insert("tree_size".to_string(), r.tree_size.to_string());
        let answer = self.inclusion(r).await;
        self.ctx.record_read(&permit, "audit_prove_inclusion", params, Vec::new(), answer.as_ref().err()).await;
        answer.map(Response::new).map_err(Status::from)
    }

    async fn get_consistency_proof(
        &self,
        req: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let permit = permit_of(&req, CONTROL_DOMAIN)?;
        let r = req.into_inner();
        let mut params = BTreeMap::new();
        params.insert("first_size".to_string(), r.first_size.to_string());
        params.insert("second_size".to_string(), r.second_size.to_string());
        let answer = self.consistency(r).await;
        self.ctx.record_read(&permit, "audit_prove_consistency", params, Vec::new(), answer.as_ref().err()).await;
        answer.map(Response::new).map_err(Status::from)
    }
}

impl AuditorService {
    /// The latest checkpoint and the tree size a proof request names (0 = the checkpoint's). A
    /// proof is only made against a signed size: the tree file holds every node of it.
    fn signed_size(&self, field: &'static str, asked: u64) -> Result<(Checkpoint, u64), ControlError> {
        let cp = self.ctx.audit.latest_checkpoint().ok_or(ControlError::NoCheckpoint)?;
        let size = if asked == 0 { cp.size } else { asked };
        if size > cp.size {
            return Err(ControlError::InvalidField {
                field,
                why: format!("tree size {size} is past the latest signed checkpoint's {}", cp.size),
            });
        }
        Ok((cp, size))
    }

    async fn inclusion(&self, r: pb::GetInclusionProofRequest) -> Result<pb::InclusionProof, ControlError> {
        let (cp, size) = self.signed_size("tree_size", r.tree_size)?;
        if r.seq == 0 || r.seq > size {
            return Err(ControlError::InvalidField {
                field: "seq",
                why: format!("seq {} is not inside the tree of size {size} (1..={size})", r.seq),
            });
        }
        let dir = self.ctx.audit.dir().to_path_buf();
        let seq = r.seq;
        let (leaf, hashes, payload) = tokio::task::spawn_blocking(move || {
            let tree = TreeReader::open(&dir).map_err(|e| ControlError::AuditUnreadable(e.to_string()))?;
            let hashes = merkle::inclusion_proof(&tree, seq - 1, size)
                .map_err(|e| ControlError::AuditUnreadable(e.to_string()))?;
            let leaf = tree.leaf(seq - 1).map_err(|e| ControlError::AuditUnreadable(e.to_string()))?;
            let mut payload = None;
            verify::read_from(&dir, seq, |s| {
                if s.seq == seq {
                    payload = Some(chain::payload(&s.prev_hash, s.seq, &s.body_json));
                }
                false
            })
            .map_err(|p| ControlError::AuditUnreadable(p.to_string()))?;
            Ok::<_, ControlError>((leaf, hashes, payload.unwrap_or_default()))
        })
        .await
        .map_err(|e| ControlError::Internal(format!("the proof task failed: {e}")))??;
        Ok(pb::InclusionProof {
            seq,
            leaf_index: seq - 1,
            tree_size: size,
            leaf_hash: hex::encode(leaf),
            hashes: hashes.iter().map(hex::encode).collect(),
            record_payload: hex::encode(payload),
            checkpoint: Some(cp.to_proto(self.ctx.audit.public_key())),
        })
    }

    async fn consistency(&self, r: pb::GetConsistencyProofRequest) -> Result<pb::ConsistencyProof, ControlError> {
        let (cp, second) = self.signed_size("second_size", r.second_size)?;
        let first = r.first_size;
        if first > second {
            return Err(ControlError::InvalidField {
                field: "first_size",
                why: format!("first size {first} is larger than the second size {second}"),
            });
        }
        let dir = self.ctx.audit.dir().to_path_buf();
        let (hashes, first_root, second_root) = tokio::task::spawn_blocking(move || {
            let tree = TreeReader::open(&dir).map_err(|e| ControlError::AuditUnreadable(e.to_string()))?;
            let unreadable = |e: crate::audit::tree::TreeError| ControlError::AuditUnreadable(e.to_string());
            let hashes = merkle::consistency_proof(&tree, first, second).map_err(unreadable)?;
            let first_root = merkle::root(&tree, first).map_err(unreadable)?;
            let second_root = merkle::root(&tree, second).map_err(unreadable)?;
            Ok::<_, ControlError>((hashes, first_root, second_root))
        })
        .await
        .map_err(|e| ControlError::Internal(format!("the proof task failed: {e}")))??;
        Ok(pb::ConsistencyProof {
            first_size: first,
            second_size: second,
            hashes: hashes.iter().map(hex::encode).collect(),
            first_root: hex::encode(first_root),
            second_root: hex::encode(second_root),
            checkpoint: Some(cp.to_proto(self.ctx.audit.public_key())),
        })
    }
}

/// The request the trail records for an action (its digest and requester, as the Actor sent them
/// to the kernel): from the `confirmed` record, the one that was dispatched (the latest, if the
/// key was confirmed more than once), else from the latest record naming a command and a caller.
/// Empty when the trail names neither (the kernel then answers without comparing). A query by
/// idempotency key can gather several requests under one key; the one dispatched is the one the
/// kernel's decision can belong to.
fn trail_request(found: &[(Stored, Body)], target: &str) -> (Vec<u8>, Option<kpb::Requester>) {
    use crate::contract::intent::Command;
    use crate::control::explain::action_for;
    let chosen = found
        .iter()
        .rev()
        .find(|(_, b)| b.draft.stage == Stage::Confirmed)
        .or_else(|| found.iter().rev().find(|(_, b)| b.draft.identity.is_some() && !b.draft.command.is_empty()));
    let Some((_, b)) = chosen else { return (Vec::new(), None) };
    let target = if b.draft.target.is_empty() { target } else { b.draft.target.as_str() };
    let action = Command::parse(&b.draft.command).map(|c| action_for(c, target));
    match (action, b.draft.identity.clone()) {
        (Some(action), Some(who)) => {
            let requester =
                crate::contract::action::Requester { role: who.role, name: who.name, cert_sha256: who.cert_sha256 };
            let digest = crate::contract::digest::request_digest(&action, &requester);
            (digest.to_vec(), Some(requester.to_proto()))
        }
        _ => (Vec::new(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_stages_are_named() {
        use Stage::*;
        assert_eq!(missing_stages(&[Requested, ConfirmationRequested, Confirmed]), vec!["outcome".to_string()]);
        assert!(missing_stages(&[Requested, ConfirmationRequested, Confirmed, Executed]).is_empty());
        assert!(missing_stages(&[Requested, ConfirmationRequested, Declined]).is_empty());
        assert!(missing_stages(&[Requested, ConfirmationRequested, Confirmed, Rejected]).is_empty());
        assert_eq!(
            missing_stages(&[Confirmed, Failed]),
            vec!["requested".to_string(), "confirmation_requested".to_string()]
        );
    }
}
