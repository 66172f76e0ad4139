//! tonic implementations of Kernel, Replication and Data: thin, every call goes to [`Node`].
//! Each handler takes the authorization permit first, so none runs unauthorised. A Replication
//! call that claims a node id (Status `from_node`, Pull and FetchSnapshot `follower_id`,
//! RequestGrant `candidate_id`, ClaimKey `claimant`) must claim the caller's own: the id in its
//! certificate (`claims_own_node_id`).

use std::sync::Arc;

use tonic::{Code, Request, Response, Status};

use super::codes;
use super::data::DataError;
use super::execute::{self, Answer, AnsweredRecord, OutcomeAnswer, OutcomeMatch, RequestError};
use super::node::Node;
use crate::limits::RequestLimits;
use crate::proto::kernel as pb;
use crate::tls::authz::{Permit, permit_of};
use crate::tls::identity::Role;
use crate::wire::{ErrorDomain, KERNEL_DOMAIN, Outcome, WireError};

/// Kernel (role controlplane).
#[derive(Debug, Clone)]
pub(crate) struct KernelService {
    /// The node.
    pub(crate) node: Arc<Node>,
}

/// Replication (role node).
#[derive(Debug, Clone)]
pub(crate) struct ReplicationService {
    /// The node.
    pub(crate) node: Arc<Node>,
}

/// Data (role client).
#[derive(Debug, Clone)]
pub(crate) struct DataService {
    /// The node.
    pub(crate) node: Arc<Node>,
}

/// Refuses a request with a field over its documented maximum (see [`crate::limits`]), before
/// anything of it is logged or acted on.
fn within_limits<T: RequestLimits>(req: &Request<T>) -> Result<(), Status> {
    let Err(v) = req.get_ref().check_limits() else { return Ok(()) };
    let permit = req.extensions().get::<crate::tls::authz::Permit>();
    tracing::warn!(
        peer.principal = permit.map(|p| p.identity.principal()).unwrap_or_default(),
        peer.cert_sha256 = permit.map(|p| p.identity.short_fingerprint().to_string()).unwrap_or_default(),
        field = %v.field,
        rule = %v.rule(),
        "request refused: a field is over its limit"
    );
    Err(WireError::new(
        Code::InvalidArgument,
        KERNEL_DOMAIN,
        codes::FIELD_TOO_LARGE,
        ErrorDomain::OperatorInput,
        Outcome::NotExecuted,
        &[],
        v.to_string(),
    )
    .with_field(&v.field, v.rule())
    .with_extra("limit", v.limit.to_string())
    .into_status())
}

/// Refuses a Replication call whose claimed node id (`field`) is not the node id in the caller's
/// certificate: PERMISSION_DENIED, `AERO_NODE_IDENTITY_MISMATCH`, VALIDATION, NOT_EXECUTED
/// (P6-A3, P7-A1), logged with the caller's identity, fingerprint and address. Without it any
/// holder of a node certificate could speak for another node: report its positions, halt a
/// primary with a claimed epoch, or ask for grants on its behalf. Called after
/// [`within_limits`], so the claimed value is bounded.
fn claims_own_node_id(permit: &Permit, field: &str, claimed: &str) -> Result<(), Status> {
    let caller = &permit.identity;
    if caller.role == Role::Node && caller.name == claimed {
        return Ok(());
    }
    tracing::warn!(
        peer.principal = %caller.principal(),
        peer.cert_sha256 = %caller.cert_sha256,
        peer.addr = %permit.peer.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
        rpc.method = %permit.method,
        field,
        claimed = %claimed,
        "replication call refused: the claimed node id is not the caller's certificate identity"
    );
    Err(WireError::new(
        Code::PermissionDenied,
        KERNEL_DOMAIN,
        codes::NODE_IDENTITY_MISMATCH,
        ErrorDomain::Validation,
        Outcome::NotExecuted,
        &["P6-A3", "P7-A1"],
        format!(
            "{field} {claimed:?} is not the caller: its certificate names {}; a node speaks only for itself",
            caller.principal()
        ),
    )
    .with_field(field, "must equal the node id in the caller's certificate")
    .into_status())
}

fn data_status(e: DataError) -> Status {
    use ErrorDomain::{KernelRejection, OperatorInput, Transport};
    use Outcome::{NotExecuted, Unknown};
    let (code, domain, outcome, invariants): (Code, ErrorDomain, Outcome, &[&str]) = match &e {
        DataError::Invalid { .. } => (Code::InvalidArgument, OperatorInput, NotExecuted, &[]),
        DataError::NotPrimary { .. } => (Code::FailedPrecondition, KernelRejection, NotExecuted, &["P6-A1"]),
        DataError::Halted { .. } => (Code::FailedPrecondition, KernelRejection, NotExecuted, &["P6-F1"]),
        DataError::NotAcknowledged { .. } => (Code::Unavailable, Transport, Unknown, &["P6-S1"]),
        DataError::NotReady { .. } => (Code::Unavailable, KernelRejection, NotExecuted, &["P6-S1"]),
        DataError::Discarded { .. } => (Code::Aborted, KernelRejection, NotExecuted, &["P6-S1"]),
    };
    let err = WireError::new(code, KERNEL_DOMAIN, e.code(), domain, outcome, invariants, e.to_string());
    let err = match &e {
        DataError::Invalid { field, why } => err.with_field(field, why.clone()),
        DataError::NotPrimary { primary, primary_address, .. } if !primary_address.is_empty() => {
            err.with_extra("primary", primary.clone()).with_extra("primary_address", primary_address.clone())
        }
        DataError::NotPrimary { primary, .. } => err.with_extra("primary", primary.clone()),
        _ => err,
    };
    err.into_status()
}

/// A request that did not parse: INVALID_ARGUMENT, `AERO_INVALID_ARGUMENT`, naming the field.
fn request_status(e: RequestError) -> Status {
    match e {
        RequestError::Invalid { field, why } => WireError::new(
            Code::InvalidArgument,
            KERNEL_DOMAIN,
            codes::INVALID_ARGUMENT,
            ErrorDomain::OperatorInput,
            Outcome::NotExecuted,
            &["P7-E3"],
            format!("{field}: {why}"),
        )
        .with_field(field, why)
        .into_status(),
    }
}

/// The wire form of an Execute answer: a local record with its hash, a peer's as it came.
fn execute_response(a: Answer) -> pb::ExecuteResponse {
    let Answer { record, replayed, unrecorded_rejection, control_seq_after, observation_after } = a;
    pb::ExecuteResponse {
        record: record.map(|r| match r {
            AnsweredRecord::Local { control_seq, decided } => decided.to_proto(control_seq),
            AnsweredRecord::Peer(record) => *record,
        }),
        replayed,
        unrecorded_rejection: unrecorded_rejection.map(|r| r.to_proto()),
        control_seq_after,
        observation_after: Some(observation_after.to_proto()),
    }
}

/// The wire form of a GetOutcome answer.
fn outcome_response(a: OutcomeAnswer) -> pb::GetOutcomeResponse {
    let OutcomeAnswer { observation, decided, in_flight, outcome_match, claimed_by } = a;
    let (outcome_match, key_reused) = match outcome_match {
        OutcomeMatch::NotCompared => (pb::OutcomeMatch::NotCompared, None),
        OutcomeMatch::SameRequest => (pb::OutcomeMatch::SameRequest, None),
        OutcomeMatch::KeyReused(rejection) => (pb::OutcomeMatch::KeyReused, Some(rejection.to_proto())),
    };
    pb::GetOutcomeResponse {
        observation: Some(observation.to_proto()),
        found: decided.is_some(),
        record: decided.map(|(seq, d)| d.to_proto(seq)),
        in_flight,
        r#match: outcome_match as i32,
        key_reused,
        claimed_by,
    }
}

#[tonic::async_trait]
impl pb::kernel_server::Kernel for KernelService {
    async fn observe(&self, req: Request<pb::ObserveRequest>) -> Result<Response<pb::NodeSnapshot>, Status> {
        permit_of(&req, KERNEL_DOMAIN)?;
        within_limits(&req)?;
        Ok(Response::new(self.node.observe()))
    }

    async fn get_outcome(
        &self,
        req: Request<pb::GetOutcomeRequest>,
    ) -> Result<Response<pb::GetOutcomeResponse>, Status> {
        permit_of(&req, KERNEL_DOMAIN)?;
        within_limits(&req)?;
        let query = execute::parse_outcome(req.get_ref()).map_err(request_status)?;
        Ok(Response::new(outcome_response(self.node.get_outcome(&query))))
    }

    async fn execute(&self, req: Request<pb::ExecuteRequest>) -> Result<Response<pb::ExecuteResponse>, Status> {
        let permit = permit_of(&req, KERNEL_DOMAIN)?;
        within_limits(&req)?;
        self.node.execute_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        crate::failpoint::hit_async("kernel.execute.received").await;
        tracing::info!(peer.name = %permit.identity.name, "Execute");
        // Run to completion even if the caller goes away: the decision must not be cut in half
        // by a dropped connection (the caller learns the outcome through GetOutcome).
        let parsed = execute::parse(req.get_ref()).map_err(request_status)?;
        let node = self.node.clone();
        let answer = tokio::spawn(tracing::Instrument::in_current_span(async move { node.execute(parsed).await }))
            .await
            .map_err(|e| {
                WireError::new(
                    Code::Internal,
                    KERNEL_DOMAIN,
                    codes::INTERNAL,
                    ErrorDomain::Transport,
                    Outcome::Unknown,
                    &["P7-E2"],
                    format!("the execution task failed (a bug): {e}; GetOutcome says whether the key was decided"),
                )
                .into_status()
            })?;
        Ok(Response::new(execute_response(answer)))
    }
}

#[tonic::async_trait]
impl pb::replication_server::Replication for ReplicationService {
    async fn status(&self, req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let permit = permit_of(&req, KERNEL_DOMAIN)?;
        within_limits(&req)?;
        claims_own_node_id(&permit, "from_node", &req.get_ref().from_node)?;
        Ok(Response::new(self.node.handle_status(req.into_inner()).await?))
    }

    async fn pull(&self, req: Request<pb::PullRequest>) -> Result<Response<pb::PullResponse>, Status> {
        let permit = permit_of(&req, KERNEL_DOMAIN)?;
        within_limits(&req)?;
        claims_own_node_id(&permit, "follower_id", &req.get_ref().follower_id)?;
        Ok(Response::new(self.node.handle_pull(req.into_inner()).await?))
    }

    async fn hash_at(&self, req: Request<pb::HashAtRequest>) -> Result<Response<pb::HashAtResponse>, Status> {
        permit_of(&req, KERNEL_DOMAIN)?;
        within_limits(&req)?;
        Ok(Response::new(self.node.handle_hash_at(req.into_inner())?))
    }

    async fn claim_key(&self, req: Request<pb::ClaimKeyRequest>) -> Result<Response<pb::ClaimKeyResponse>, Status> {
        let permit = permit_of(&req, KERNEL_DOMAIN)?;
        within_limits(&req)?;
        claims_own_node_id(&permit, "claimant", &req.get_ref().claimant)?;
        Ok(Response::new(self.node.handle_claim(req.into_inner()).await?))
    }

    type FetchSnapshotStream = tokio_stream::wrappers::ReceiverStream<Result<pb::SnapshotChunk, Status>>;

    async fn fetch_snapshot(
        &self,
        req: Request<pb::FetchSnapshotRequest>,
    ) -> Result<Response<Self::FetchSnapshotStream>, Status> {
        let permit = permit_of(&req, KERNEL_DOMAIN)?;
        within_limits(&req)?;
        claims_own_node_id(&permit, "follower_id", &req.get_ref().follower_id)?;
        Ok(Response::new(self.node.handle_fetch_snapshot(req.into_inner()).await?))
    }

    async fn request_grant(&self, req: Request<pb::GrantRequest>) -> Result<Response<pb::GrantResponse>, Status> {
        let permit = permit_of(&req, KERNEL_DOMAIN)?;
        within_limits(&req)?;
        claims_own_node_id(&permit, "candidate_id", &req.get_ref().candidate_id)?;
        Ok(Response::new(self.node.handle_grant(req.into_inner()).await?))
    }
}

#[tonic::async_trait]
impl pb::data_server::Data for DataService {
    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        permit_of(&req, KERNEL_DOMAIN)?;
        within_limits(&req)?;
        let r = req.into_inner();
        // Cancellation-safe: a client that goes away drops this future either before the entry
        // is handed to the WAL writer (nothing is written) or after (it is written and
        // replicated exactly as if the client had waited); nothing in between is left half done.
        let (index, epoch) = self.node.put(&r.key, &r.value).await.map_err(data_status)?;
        Ok(Response::new(pb::PutResponse { index, epoch }))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        permit_of(&req, KERNEL_DOMAIN)?;
        within_limits(&req)?;
        let (value, applied_index) = self.node.get(&req.get_ref().key).await.map_err(data_status)?;
        Ok(Response::new(pb::GetResponse { found: value.is_some(), value: value.unwrap_or_default(), applied_index }))
    }

    async fn delete(&self, req: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        permit_of(&req, KERNEL_DOMAIN)?;
        within_limits(&req)?;
        let r = req.into_inner();
        // Cancellation-safe, as Put.
        let (index, epoch) = self.node.delete(&r.key).await.map_err(data_status)?;
        Ok(Response::new(pb::DeleteResponse { index, epoch }))
    }

    async fn scan(&self, req: Request<pb::ScanRequest>) -> Result<Response<pb::ScanResponse>, Status> {
        permit_of(&req, KERNEL_DOMAIN)?;
        within_limits(&req)?;
        let r = req.get_ref();
        let (entries, more, applied_index) =
            self.node.scan(&r.start_key, &r.end_key, r.limit).await.map_err(data_status)?;
        Ok(Response::new(pb::ScanResponse {
            entries: entries.into_iter().map(|(key, value)| pb::KeyValue { key, value }).collect(),
            more,
            applied_index,
        }))
    }
}
