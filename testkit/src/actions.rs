//! Actions as an operator or a control plane asks for them: RequestAction and ConfirmAction with
//! exactly what the requirements ask, Kernel.Execute requests with a correct digest, plan epoch
//! and signed intent, and what their answers say.

use std::time::Duration;

use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use tonic::transport::Channel;

use crate::cluster::Cluster;
use crate::sign;

/// A fresh idempotency key.
pub fn key(prefix: &str) -> String {
    format!("{prefix}-{}", &aerodb::control::flow::random_id()[..12])
}

/// RequestAction then ConfirmAction with the right typed target (and a complete enhanced
/// confirmation for a forced promotion). Returns the confirm answer.
pub async fn request_and_confirm(
    actor: &mut cpb::actor_client::ActorClient<Channel>,
    command: cpb::Command,
    target: &str,
    key: &str,
) -> Result<cpb::ConfirmActionResponse, tonic::Status> {
    let pending = request(actor, command, target, key).await?;
    confirm_pending(actor, &pending).await
}

/// RequestAction expecting a pending action.
pub async fn request(
    actor: &mut cpb::actor_client::ActorClient<Channel>,
    command: cpb::Command,
    target: &str,
    key: &str,
) -> Result<cpb::PendingAction, tonic::Status> {
    let r = actor
        .request_action(cpb::RequestActionRequest {
            command: command as i32,
            target_node: target.into(),
            idempotency_key: key.into(),
        })
        .await?
        .into_inner();
    match r.response {
        Some(cpb::request_action_response::Response::Pending(p)) => Ok(p),
        other => panic!("expected a pending action, got {other:?}"),
    }
}

/// ConfirmAction with exactly what the requirements ask.
pub async fn confirm_pending(
    actor: &mut cpb::actor_client::ActorClient<Channel>,
    p: &cpb::PendingAction,
) -> Result<cpb::ConfirmActionResponse, tonic::Status> {
    actor.confirm_action(sign::confirm_request(p, vec![sign::requester_signature(p)])).await.map(|r| r.into_inner())
}

/// The wire error of a status (panics if it has none).
pub fn wire(s: &tonic::Status) -> aerodb::wire::WireError {
    aerodb::wire::WireError::from_status(s).unwrap_or_else(|| panic!("status without ErrorInfo: {s:?}"))
}

/// A Kernel.Execute request with a correct digest for `action` asked by actor `who`.
pub fn exec_req(
    key: &str,
    kind: aerodb::kernel::records::ActionKind,
    target: &str,
    force: bool,
    expected: u64,
    who: &str,
) -> kpb::ExecuteRequest {
    use aerodb::kernel::records::{Action, Requester};
    let action = Action { kind, target_node: target.into(), force };
    let requester = Requester { role: "actor".into(), name: who.into(), cert_sha256: "ab".into() };
    let digest = aerodb::contract::digest::request_digest(&action, &requester);
    kpb::ExecuteRequest {
        idempotency_key: key.into(),
        request_digest: digest.to_vec(),
        expected_control_seq: expected,
        action: Some(action.to_proto()),
        requester: Some(requester.to_proto()),
        confirmation: Some(if force {
            kpb::Confirmation {
                kind: kpb::ConfirmationKind::Enhanced as i32,
                acknowledged_invariants: vec!["P6-A1".into(), "P6-A1a".into()],
                accept_responsibility: true,
            }
        } else {
            kpb::Confirmation { kind: kpb::ConfirmationKind::Standard as i32, ..Default::default() }
        }),
        // Promotions and demotions need the epoch their plan names, and every request its
        // signed intent: see `with_plan_epoch` (and `sign::sign_exec`).
        plan_epoch: 0,
        intent: vec![],
        signatures: vec![],
        confirmed_audit_leaf: vec![],
    }
}

/// The epoch a plan for `req` names, read off the cluster as the control plane's explanation
/// reads it: a promotion creates one above the highest epoch any reachable node knows, a demotion
/// ends the epoch its target led (a request that names one keeps it). Then signs it as its
/// requester would (`sign::sign_exec`): the last step before sending, since any later change
/// breaks the signature.
pub async fn with_plan_epoch(c: &Cluster, mut req: kpb::ExecuteRequest) -> kpb::ExecuteRequest {
    if req.plan_epoch != 0 {
        return sign::sign_exec(c, req);
    }
    let action = req.action.clone().unwrap_or_default();
    let mut snaps = Vec::new();
    for i in 0..c.nodes.len() {
        snaps.push((c.nodes[i].id.clone(), c.observe(i).await));
    }
    req.plan_epoch = match kpb::ActionKind::try_from(action.kind) {
        Ok(kpb::ActionKind::Promote) => {
            aerodb::control::explain::promotion_epoch(&aerodb::control::adapter::snapshot::node_states(&snaps))
        }
        Ok(kpb::ActionKind::Demote) => snaps
            .iter()
            .find(|(id, _)| *id == action.target_node)
            .and_then(|(_, s)| s.as_ref()?.authority.as_ref().map(|a| a.led_epoch))
            .unwrap_or(0),
        _ => 0,
    };
    sign::sign_exec(c, req)
}

/// The ledger sequence node `i` reports.
pub async fn control_seq(c: &Cluster, i: usize) -> u64 {
    c.observe(i).await.and_then(|s| s.observation).map(|o| o.control_seq).expect("observable")
}

/// Executes an action directly on a kernel (no control plane): the current sequence, a fresh
/// key, a standard (or, with force, enhanced) confirmation.
pub async fn kernel_execute(
    c: &Cluster,
    i: usize,
    kind: aerodb::kernel::records::ActionKind,
    force: bool,
) -> kpb::ExecuteResponse {
    let seq = control_seq(c, i).await;
    let req = with_plan_epoch(c, exec_req(&key("k"), kind, &c.nodes[i].id, force, seq, "op")).await;
    let mut k = c.kernel(i);
    tokio::time::timeout(Duration::from_secs(30), k.execute(req))
        .await
        .expect("answer in time")
        .expect("execute")
        .into_inner()
}

/// The executed flag and the rejection code of an Execute answer.
pub fn verdict(r: &kpb::ExecuteResponse) -> Result<(), String> {
    if let Some(u) = &r.unrecorded_rejection {
        return Err(u.code.clone());
    }
    let rec = r.record.as_ref().expect("record");
    if rec.decision == kpb::Decision::Executed as i32 {
        Ok(())
    } else {
        Err(rec.rejection.clone().unwrap_or_default().code)
    }
}

/// Execute calls each node has received (the count at the kernel boundary).
pub async fn execute_calls(c: &Cluster) -> Vec<u64> {
    let mut v = Vec::new();
    for i in 0..c.nodes.len() {
        v.push(c.observe(i).await.map(|s| s.execute_calls_received).unwrap_or(u64::MAX));
    }
    v
}
