//! Read-only JSON views: one control-plane call each, answered as the canonical proto JSON of
//! `aerodbctl --json`, stamped with the console's clock reading when the answer arrived
//! (`observed_at_unix_ms`). Nothing is cached, merged, ranked or filled in: a node the control
//! plane could not observe stays an `unreachable` entry carrying its transport error.

use serde_json::{Value, json};
use tonic::Status;

use super::http::Console;
use crate::cli::ctl::json::to_json;
use crate::proto::control as pb;
use crate::wire::WireError;

/// Most audit records one timeline request returns (the Auditor service bounds it to 1000 too).
pub const AUDIT_RECORDS_MAX: u32 = 1000;
/// Audit records a timeline request returns when it names no limit.
pub const AUDIT_RECORDS_DEFAULT: u32 = 200;

/// A failed view or action: the HTTP status and the JSON document to answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: http::StatusCode,
    /// `{"error": {...}}`.
    pub body: Value,
}

impl ApiError {
    /// A console-side refusal (nothing was sent to the control plane).
    pub fn console(status: http::StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({"error": {
                "code": code,
                "domain": "CONSOLE",
                "outcome": "NOT_EXECUTED",
                "invariants": [],
                "message": message.into(),
                "source": "console",
            }}),
        }
    }

    /// A control-plane (or transport) failure, as aerodbctl `--json` reports it. `dispatched`:
    /// the call may have reached a kernel as a mutation, so a transport failure means UNKNOWN.
    pub fn grpc(status: &Status, dispatched: bool) -> Self {
        let wire = WireError::from_status(status);
        let http_status = match status.code() {
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => http::StatusCode::BAD_REQUEST,
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => http::StatusCode::FORBIDDEN,
            tonic::Code::NotFound => http::StatusCode::NOT_FOUND,
            tonic::Code::FailedPrecondition | tonic::Code::Aborted | tonic::Code::AlreadyExists => {
                http::StatusCode::CONFLICT
            }
            tonic::Code::ResourceExhausted => http::StatusCode::TOO_MANY_REQUESTS,
            _ => http::StatusCode::BAD_GATEWAY,
        };
        let error = match wire {
            Some(w) => json!({
                "code": w.code,
                "domain": w.error_domain.as_str(),
                "outcome": w.outcome.as_str(),
                "invariants": w.invariants,
                "message": w.message,
                "fields": w.field_errors.iter().map(|f| json!({"field": f.field, "description": f.description})).collect::<Vec<_>>(),
                "metadata": w.extra.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                "source": "control plane",
            }),
            None => json!({
                "code": "TRANSPORT",
                "domain": "TRANSPORT",
                "outcome": if dispatched { "UNKNOWN" } else { "NOT_EXECUTED" },
                "invariants": [],
                "message": format!("{}: {}", status.code(), status.message()),
                "source": "transport",
            }),
        };
        Self { status: http_status, body: json!({ "error": error }) }
    }
}

/// The answer to a view: the proto JSON plus when the console received it.
fn stamped(console: &Console, name: &str, view: Value) -> Value {
    json!({ "view": name, "observed_at_unix_ms": console.clock.now_unix_ms(), "data": view })
}

/// Percent-decodes one query component (`+` is a space).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded value of query parameter `name` (empty when absent).
pub fn param(query: Option<&str>, name: &str) -> String {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| decode(v))
        .unwrap_or_default()
}

/// `GET /api/session`: who the console acts as and whether actions exist. Never key material.
pub fn session(console: &Console) -> Value {
    json!({
        "endpoint": console.endpoint,
        "identity": console.identity,
        "role": console.role.as_str(),
        "actions": console.actions.is_some(),
        "audit": console.role == crate::tls::identity::Role::Auditor,
    })
}

/// `GET /api/<view>` for the observer views; `None` when `view` names none.
pub async fn view(console: &Console, view: &str, query: Option<&str>) -> Option<Result<Value, ApiError>> {
    let mut o = pb::observer_client::ObserverClient::new(console.channel.clone());
    macro_rules! call {
        ($fut:expr, $name:literal) => {
            match $fut.await {
                Ok(r) => Ok(stamped(console, view, to_json(&r.into_inner(), $name))),
                Err(s) => Err(ApiError::grpc(&s, false)),
            }
        };
    }
    let node_id = param(query, "node");
    Some(match view {
        "cluster" => call!(o.get_cluster_state(pb::GetClusterStateRequest {}), "aerodb.control.v1.ClusterState"),
        "node" => call!(o.get_node(pb::GetNodeRequest { node_id }), "aerodb.control.v1.NodeView"),
        "replication" => {
            call!(o.get_replication_status(pb::GetReplicationStatusRequest {}), "aerodb.control.v1.ReplicationStatus")
        }
        "promotion" => {
            call!(o.get_promotion_state(pb::GetPromotionStateRequest {}), "aerodb.control.v1.PromotionState")
        }
        "wal" => call!(o.inspect_wal(pb::InspectWalRequest { node_id }), "aerodb.control.v1.WalInspection"),
        "snapshots" => {
            call!(o.inspect_snapshots(pb::InspectSnapshotsRequest { node_id }), "aerodb.control.v1.SnapshotInspection")
        }
        "outcome" => call!(
            o.get_outcome(pb::GetOutcomeRequest { idempotency_key: param(query, "key") }),
            "aerodb.control.v1.OutcomeView"
        ),
        _ => return None,
    })
}

fn record_json(r: &pb::AuditRecord) -> Value {
    json!({
        "seq": r.seq,
        "stage": r.stage,
        "correlation_id": r.correlation_id,
        "command": r.command,
        "outcome": r.outcome,
        "hash": r.hash,
        "prev_hash": r.prev_hash,
        "body": serde_json::from_str::<Value>(&r.body_json).unwrap_or(Value::Null),
    })
}

/// `GET /api/audit/<what>` (auditor profile): the timeline, verification, reconstruction and
/// the latest checkpoint. `None` when `what` names none.
pub async fn audit(console: &Console, what: &str, query: Option<&str>) -> Option<Result<Value, ApiError>> {
    let mut a = pb::auditor_client::AuditorClient::new(console.channel.clone());
    let number = |name: &str| param(query, name).parse::<u64>().unwrap_or(0);
    Some(match what {
        "records" => {
            let limit = match param(query, "limit").parse::<u32>() {
                Ok(0) | Err(_) => AUDIT_RECORDS_DEFAULT,
                Ok(n) => n.min(AUDIT_RECORDS_MAX),
            };
            let req = pb::ReadAuditRequest {
                from_seq: number("from_seq"),
                limit,
                correlation_id: param(query, "correlation_id"),
                identity: param(query, "identity"),
                command: param(query, "command"),
                stage: param(query, "stage"),
                time_from_unix_ms: number("time_from_unix_ms"),
                time_to_unix_ms: number("time_to_unix_ms"),
                tail: param(query, "from_seq").is_empty(),
            };
            match a.read_audit(req).await {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    let mut records = Vec::new();
                    loop {
                        match stream.message().await {
                            Ok(Some(r)) => records.push(record_json(&r)),
                            Ok(None) => break,
                            Err(s) => return Some(Err(ApiError::grpc(&s, false))),
                        }
                    }
                    Ok(stamped(console, "audit", json!({ "records": records })))
                }
                Err(s) => Err(ApiError::grpc(&s, false)),
            }
        }
        "verify" => match a.verify_audit(pb::VerifyAuditRequest { from_seq: 0, to_seq: 0 }).await {
            Ok(r) => Ok(stamped(console, "verify", to_json(&r.into_inner(), "aerodb.control.v1.VerifyAuditResponse"))),
            Err(s) => Err(ApiError::grpc(&s, false)),
        },
        "checkpoint" => match a.get_checkpoint(pb::GetCheckpointRequest {}).await {
            Ok(r) => Ok(stamped(console, "checkpoint", to_json(&r.into_inner(), "aerodb.control.v1.SignedCheckpoint"))),
            Err(s) => Err(ApiError::grpc(&s, false)),
        },
        "reconstruct" => {
            let correlation = param(query, "correlation_id");
            let key = if correlation.is_empty() {
                pb::reconstruct_action_request::Key::IdempotencyKey(param(query, "idempotency_key"))
            } else {
                pb::reconstruct_action_request::Key::CorrelationId(correlation)
            };
            match a.reconstruct_action(pb::ReconstructActionRequest { key: Some(key) }).await {
                Ok(r) => {
                    let r = r.into_inner();
                    let mut v = to_json(&r, "aerodb.control.v1.Reconstruction");
                    v["records"] = Value::Array(r.records.iter().map(record_json).collect());
                    Ok(stamped(console, "reconstruct", v))
                }
                Err(s) => Err(ApiError::grpc(&s, false)),
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_query_parameters_are_percent_decoded() {
        assert_eq!(param(Some("a=1&key=web%2Dx%3A1+2&b"), "key"), "web-x:1 2");
        assert_eq!(param(Some("key=%zz%4"), "key"), "%zz%4");
        assert_eq!(param(None, "key"), "");
        assert_eq!(param(Some("keys=1"), "key"), "");
    }
}
