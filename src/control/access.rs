//! What the control plane records about access it did not grant: denied calls and refused
//! handshakes (rate-limited per peer, with the count of suppressed records itself recorded).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use futures::future::BoxFuture;

use std::sync::Arc;

use crate::audit::log::AuditLog;
use crate::audit::record::{Draft, ErrorFacts, Stage, Who};
use crate::clock::SharedClock;
use crate::control::budget::RecordBudget;
use crate::control::flow::random_id;
use crate::limits::{IDEMPOTENCY_KEY_BYTES_MAX, NODE_ID_BYTES_MAX, bounded};
use crate::tls::accept::HandshakeObserver;
use crate::tls::authz::{Denial, DenialSink, Permit, log_denial};
use crate::tls::verifier::HandshakeFailure;
use crate::wire::{CONTROL_DOMAIN, WireError};

/// Peers tracked for rate limiting; beyond it, peers share one bucket.
pub const TRACKED_PEERS_MAX: usize = 4096;
/// The rate-limit window.
pub const WINDOW_MS: u64 = 60_000;

/// Audits every denial and every request the edge refused, within the caller's record budget
/// (best effort: a refusal stands whether or not it could be recorded).
#[derive(Debug, Clone)]
pub struct AuditDenials {
    /// The per-identity record budget (and through it the log).
    pub budget: Arc<RecordBudget>,
}

/// Bytes of a caller-supplied method path kept in a record.
pub const METHOD_BYTES_MAX: usize = 128;

/// The one method whose denials record what was asked (command, target, idempotency key): a
/// request for an action is the denial an investigation most needs to read in full.
pub const REQUEST_ACTION_METHOD: &str = "/aerodb.control.v1.Actor/RequestAction";

/// Writes what a denied RequestAction asked for into `d`, each value bounded as the Actor's own
/// records bound it (a value over its limit keeps a prefix, its length and its hash). A message
/// that does not decode records that instead.
fn record_requested_action(d: &mut Draft, message: &[u8]) {
    use prost::Message;
    match crate::proto::control::RequestActionRequest::decode(message) {
        Ok(r) => {
            let command = crate::proto::control::Command::try_from(r.command)
                .map(crate::control::digest::command_name)
                .unwrap_or("unknown");
            d.target = bounded(&r.target_node, NODE_ID_BYTES_MAX);
            d.idempotency_key = bounded(&r.idempotency_key, IDEMPOTENCY_KEY_BYTES_MAX);
            d.parameters.insert("command".into(), r.command.to_string());
            d.detail.insert("command".into(), command.into());
        }
        Err(e) => {
            d.detail.insert("request".into(), bounded(&format!("undecodable: {e}"), 128));
        }
    }
}

impl DenialSink for AuditDenials {
    fn wants_request(&self, method: &str) -> bool {
        method == REQUEST_ACTION_METHOD
    }

    fn denied(&self, denial: Denial) -> BoxFuture<'static, ()> {
        log_denial(&denial);
        let budget = self.budget.clone();
        Box::pin(async move {
            let method = bounded(&denial.method, METHOD_BYTES_MAX);
            let mut d = Draft::new(Stage::Denied, random_id(), method.clone());
            d.identity = denial.identity.as_ref().map(Who::from);
            d.peer = denial.peer.map(|p| p.to_string()).unwrap_or_default();
            d.outcome = "NOT_EXECUTED".into();
            let mut error = ErrorFacts::from(&denial.to_wire(CONTROL_DOMAIN));
            error.message = bounded(&error.message, 512);
            d.error = Some(error);
            d.detail.insert("method".into(), method);
            if let Some(message) = &denial.request {
                record_requested_action(&mut d, message);
            }
            budget.record(d).await;
        })
    }

    fn passthrough(&self, permit: &Permit) -> Option<BoxFuture<'static, ()>> {
        let budget = self.budget.clone();
        let mut d = Draft::new(Stage::Read, random_id(), permit.method.clone());
        d.identity = Some(Who::from(&permit.identity));
        d.peer = permit.peer.map(|p| p.to_string()).unwrap_or_default();
        d.detail.insert("method".into(), permit.method.clone());
        Some(Box::pin(async move {
            budget.record(d).await;
        }))
    }

    fn refused_at_edge(&self, permit: Option<Permit>, method: String, error: WireError) -> BoxFuture<'static, ()> {
        // Logging happens when the future is made, not when it is polled.
        drop(crate::edge::EdgeSink::refused(&crate::edge::LogRefusals, permit.clone(), method.clone(), error.clone()));
        let budget = self.budget.clone();
        Box::pin(async move {
            let method = bounded(&method, METHOD_BYTES_MAX);
            let mut d = Draft::new(Stage::Rejected, random_id(), method.clone());
            d.identity = permit.as_ref().map(|p| Who::from(&p.identity));
            d.peer = permit.as_ref().and_then(|p| p.peer).map(|p| p.to_string()).unwrap_or_default();
            d.outcome = "NOT_EXECUTED".into();
            d.error = Some(ErrorFacts::from(&error));
            d.detail.insert("method".into(), method);
            d.detail.insert("refused_at".into(), "edge".into());
            budget.record(d).await;
        })
    }
}

#[derive(Debug, Default, Clone)]
struct Bucket {
    window_start_ms: u64,
    recorded: u32,
    suppressed: u64,
}

/// Bytes of a refusal reason kept in a record (a hostile certificate can make the reason long).
pub const HANDSHAKE_REASON_BYTES_MAX: usize = 512;

#[derive(Default)]
struct Tally {
    peers: HashMap<Option<IpAddr>, Bucket>,
    all: Bucket,
}

/// Audits refused handshakes: at most `per_minute` records per peer address per minute and
/// `total_per_minute` from all addresses together; the refusals beyond either are counted, and
/// each count is recorded once its window ends (per address, and one record for the total). A
/// record holds the peer, the certificate fingerprint (when one was presented) and the reason cut
/// to [`HANDSHAKE_REASON_BYTES_MAX`], never the certificate: an unauthenticated peer adds at most
/// `total_per_minute` bounded records, plus the counts, per minute.
pub struct AuditHandshakes {
    audit: AuditLog,
    clock: SharedClock,
    per_minute: u32,
    total_per_minute: u32,
    tally: Mutex<Tally>,
}

impl std::fmt::Debug for AuditHandshakes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditHandshakes")
            .field("per_minute", &self.per_minute)
            .field("total_per_minute", &self.total_per_minute)
            .finish_non_exhaustive()
    }
}

impl AuditHandshakes {
    /// A rate-limited recorder.
    pub fn new(audit: AuditLog, clock: SharedClock, per_minute: u32, total_per_minute: u32) -> Self {
        Self { audit, clock, per_minute, total_per_minute, tally: Mutex::new(Tally::default()) }
    }

    fn suppressed_record(peer: &str, bucket: &Bucket, now: u64) -> Draft {
        let mut d = Draft::new(Stage::HandshakeRejected, random_id(), "tls_handshake");
        d.peer = peer.to_string();
        d.outcome = "NOT_EXECUTED".into();
        d.detail.insert("suppressed_count".into(), bucket.suppressed.to_string());
        d.detail.insert("window_start_unix_ms".into(), bucket.window_start_ms.to_string());
        d.detail.insert("window_end_unix_ms".into(), now.to_string());
        d
    }

    /// Ends the total's window if it has passed, recording its suppressed count.
    fn roll_total(tally: &mut Tally, now: u64, drafts: &mut Vec<Draft>) {
        if now.saturating_sub(tally.all.window_start_ms) >= WINDOW_MS {
            if tally.all.suppressed > 0 {
                let mut d = Self::suppressed_record("all", &tally.all, now);
                d.detail.insert("limit".into(), "total_per_minute".into());
                drafts.push(d);
            }
            tally.all = Bucket { window_start_ms: now, ..Default::default() };
        }
    }

    /// Records the suppression counts of windows that have ended (called periodically, so a
    /// flood that stops is still accounted for).
    pub fn flush(&self) {
        let now = self.clock.now_unix_ms();
        let mut drafts = Vec::new();
        {
            let mut tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
            tally.peers.retain(|peer, b| {
                if now.saturating_sub(b.window_start_ms) < WINDOW_MS {
                    return true;
                }
                if b.suppressed > 0 {
                    let p = peer.map(|p| p.to_string()).unwrap_or_else(|| "other".into());
                    drafts.push(Self::suppressed_record(&p, b, now));
                }
                false
            });
            Self::roll_total(&mut tally, now, &mut drafts);
        }
        for d in drafts {
            let audit = self.audit.clone();
            tokio::spawn(async move {
                audit.append_best_effort(d).await;
            });
        }
    }
}

impl HandshakeObserver for AuditHandshakes {
    fn rejected(&self, peer: SocketAddr, failure: HandshakeFailure) {
        let now = self.clock.now_unix_ms();
        let reason = bounded(&failure.reason, HANDSHAKE_REASON_BYTES_MAX);
        let mut drafts = Vec::new();
        {
            let mut tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
            Self::roll_total(&mut tally, now, &mut drafts);
            let Tally { peers, all } = &mut *tally;
            let key = if peers.len() >= TRACKED_PEERS_MAX && !peers.contains_key(&Some(peer.ip())) {
                None
            } else {
                Some(peer.ip())
            };
            let b = peers.entry(key).or_insert_with(|| Bucket { window_start_ms: now, ..Default::default() });
            if now.saturating_sub(b.window_start_ms) >= WINDOW_MS {
                if b.suppressed > 0 {
                    drafts.push(Self::suppressed_record(&peer.ip().to_string(), b, now));
                }
                *b = Bucket { window_start_ms: now, ..Default::default() };
            }
            if b.recorded >= self.per_minute {
                b.suppressed += 1;
            } else if all.recorded >= self.total_per_minute {
                all.suppressed += 1;
            } else {
                b.recorded += 1;
                all.recorded += 1;
                let mut d = Draft::new(Stage::HandshakeRejected, random_id(), "tls_handshake");
                d.peer = peer.to_string();
                d.outcome = "NOT_EXECUTED".into();
                d.detail.insert("reason".into(), reason.clone());
                if let Some(fp) = &failure.fingerprint {
                    d.detail.insert("cert_sha256".into(), bounded(fp, 64));
                }
                drafts.push(d);
            }
        }
        // Logged once the refusal is counted, so a log line means the count includes it.
        tracing::warn!(
            peer.addr = %peer,
            cert.sha256 = failure.fingerprint.as_deref().map(|f| bounded(f, 64)).unwrap_or_else(|| "-".into()),
            reason = %reason,
            "TLS handshake refused"
        );
        for d in drafts {
            let audit = self.audit.clone();
            tokio::spawn(async move {
                audit.append_best_effort(d).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::log::AuditOptions;
    use crate::audit::record::Body;
    use crate::clock::ManualClock;
    use std::time::Duration;

    fn records(dir: &std::path::Path) -> Vec<(usize, Body)> {
        let mut out = Vec::new();
        let _ = crate::audit::verify::read_from(dir, 1, |s| {
            out.push((s.body_json.len(), s.body().expect("body")));
            true
        });
        out
    }

    async fn wait_records(dir: &std::path::Path, n: usize) -> Vec<(usize, Body)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = records(dir);
            if r.len() >= n || tokio::time::Instant::now() > deadline {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn refused_handshakes_are_bounded_per_address_and_in_total_with_every_refusal_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit_dir = dir.path().join("audit");
        let clock = Arc::new(ManualClock::new(1_000_000));
        let audit = AuditLog::open(AuditOptions {
            dir: audit_dir.clone(),
            instance_id: "cp".into(),
            checkpoint_every: 1000,
            checkpoint_interval_ms: 10_000,
            segment_bytes_max: crate::audit::log::SEGMENT_BYTES_MAX,
            clock: clock.clone(),
        })
        .expect("open");
        // 5 per address, 8 in total; 3 addresses refuse 6 handshakes each, with a 60 KB reason.
        let h = AuditHandshakes::new(audit.clone(), clock.clone(), 5, 8);
        let reason = format!("certificate refused: URI SAN {}", "a".repeat(60_000));
        for ip in 1..=3u8 {
            for port in 0..6u16 {
                let peer = SocketAddr::from(([127, 0, 0, ip], 40_000 + port));
                h.rejected(peer, HandshakeFailure { reason: reason.clone(), fingerprint: Some("ab".repeat(32)) });
            }
        }
        let first = wait_records(&audit_dir, 8).await;
        assert_eq!(first.len(), 8, "5 from the first address, 3 from the second, then the total is reached");
        assert!(first.iter().all(|(bytes, _)| *bytes < 2048), "a refusal record is bounded");
        // A minute later the counts are recorded: per address for those over their own limit
        // (only the first address), and the total for the rest.
        clock.advance(Duration::from_secs(61));
        h.flush();
        let all = wait_records(&audit_dir, 10).await;
        let counts: Vec<(String, u64)> = all[8..]
            .iter()
            .map(|(_, b)| (b.draft.peer.clone(), b.draft.detail["suppressed_count"].parse().expect("count")))
            .collect();
        let suppressed: u64 = counts.iter().map(|(_, n)| n).sum();
        assert_eq!(8 + suppressed, 18, "every refusal is recorded or counted: {counts:?}");
        assert!(counts.contains(&("127.0.0.1".to_string(), 1)), "{counts:?}");
        assert!(counts.contains(&("all".to_string(), 9)), "{counts:?}");
    }
}
