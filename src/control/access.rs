//! What the control plane records about access it did not grant: denied calls and refused
//! handshakes (rate-limited per peer, with the count of suppressed records itself recorded).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use futures::future::BoxFuture;

use crate::audit::log::AuditLog;
use crate::audit::record::{Draft, ErrorFacts, Stage, Who};
use crate::clock::SharedClock;
use crate::control::flow::random_id;
use crate::tls::authz::{Denial, DenialSink, Permit, log_denial};
use crate::tls::server::HandshakeObserver;
use crate::tls::verifier::HandshakeFailure;
use crate::wire::CONTROL_DOMAIN;

/// Peers tracked for rate limiting; beyond it, peers share one bucket.
pub const TRACKED_PEERS_MAX: usize = 4096;
/// The rate-limit window.
pub const WINDOW_MS: u64 = 60_000;

/// Audits every denial (best effort: a denial stands whether or not it could be recorded).
#[derive(Debug, Clone)]
pub struct AuditDenials {
    /// The log.
    pub audit: AuditLog,
}

impl DenialSink for AuditDenials {
    fn denied(&self, denial: Denial) -> BoxFuture<'static, ()> {
        log_denial(&denial);
        let audit = self.audit.clone();
        Box::pin(async move {
            let mut d = Draft::new(Stage::Denied, random_id(), denial.method.clone());
            d.identity = denial.identity.as_ref().map(Who::from);
            d.peer = denial.peer.map(|p| p.to_string()).unwrap_or_default();
            d.outcome = "NOT_EXECUTED".into();
            d.error = Some(ErrorFacts::from(&denial.to_wire(CONTROL_DOMAIN)));
            d.detail.insert("method".into(), denial.method.clone());
            audit.append_best_effort(d).await;
        })
    }

    fn passthrough(&self, permit: &Permit) -> Option<BoxFuture<'static, ()>> {
        let audit = self.audit.clone();
        let mut d = Draft::new(Stage::Read, random_id(), permit.method.clone());
        d.identity = Some(Who::from(&permit.identity));
        d.peer = permit.peer.map(|p| p.to_string()).unwrap_or_default();
        d.detail.insert("method".into(), permit.method.clone());
        Some(Box::pin(async move {
            audit.append_best_effort(d).await;
        }))
    }
}

#[derive(Debug, Default, Clone)]
struct Bucket {
    window_start_ms: u64,
    recorded: u32,
    suppressed: u64,
}

/// Audits refused handshakes, at most `per_minute` records per peer address per minute.
pub struct AuditHandshakes {
    audit: AuditLog,
    clock: SharedClock,
    per_minute: u32,
    buckets: Mutex<HashMap<Option<IpAddr>, Bucket>>,
}

impl std::fmt::Debug for AuditHandshakes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditHandshakes").field("per_minute", &self.per_minute).finish_non_exhaustive()
    }
}

impl AuditHandshakes {
    /// A rate-limited recorder.
    pub fn new(audit: AuditLog, clock: SharedClock, per_minute: u32) -> Self {
        Self { audit, clock, per_minute, buckets: Mutex::new(HashMap::new()) }
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

    /// Records the suppression counts of windows that have ended (called periodically, so a
    /// flood that stops is still accounted for).
    pub fn flush(&self) {
        let now = self.clock.now_unix_ms();
        let mut drafts = Vec::new();
        if let Ok(mut buckets) = self.buckets.lock() {
            buckets.retain(|peer, b| {
                if now.saturating_sub(b.window_start_ms) < WINDOW_MS {
                    return true;
                }
                if b.suppressed > 0 {
                    let p = peer.map(|p| p.to_string()).unwrap_or_else(|| "other".into());
                    drafts.push(Self::suppressed_record(&p, b, now));
                }
                false
            });
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
        let mut drafts = Vec::new();
        {
            let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            let key = if buckets.len() >= TRACKED_PEERS_MAX && !buckets.contains_key(&Some(peer.ip())) {
                None
            } else {
                Some(peer.ip())
            };
            let b = buckets.entry(key).or_insert_with(|| Bucket { window_start_ms: now, ..Default::default() });
            if now.saturating_sub(b.window_start_ms) >= WINDOW_MS {
                if b.suppressed > 0 {
                    drafts.push(Self::suppressed_record(&peer.ip().to_string(), b, now));
                }
                *b = Bucket { window_start_ms: now, ..Default::default() };
            }
            if b.recorded < self.per_minute {
                b.recorded += 1;
                let mut d = Draft::new(Stage::HandshakeRejected, random_id(), "tls_handshake");
                d.peer = peer.to_string();
                d.outcome = "NOT_EXECUTED".into();
                d.detail.insert("reason".into(), failure.reason.clone());
                if let Some(fp) = &failure.fingerprint {
                    d.detail.insert("cert_sha256".into(), fp.clone());
                }
                drafts.push(d);
            } else {
                b.suppressed += 1;
            }
        }
        // Logged once the refusal is counted, so a log line means the count includes it.
        tracing::warn!(
            peer.addr = %peer,
            cert.sha256 = failure.fingerprint.as_deref().unwrap_or("-"),
            reason = %failure.reason,
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
