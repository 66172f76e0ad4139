//! The audit trail checked against the kernels' ledgers, offline (`aerodbctl audit crosscheck`).
//!
//! Every action a kernel executed must be explained by the trail: a `confirmed` record (of any of
//! the control-plane instances whose directories are given) under the same idempotency key that
//! holds the very intent and signatures the kernel recorded in its `Decided` record, each
//! signature verifying over the intent's bytes. An executed action without one was sent around
//! the control plane (by someone holding actor keys), or its trail was cut; the check names it.
//! Reads files only; changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::record::Stage;
use crate::contract::intent::{Intent, Signature};
use crate::kernel::records::{Body, Decision, Record};

/// What the trail says of one key: the intent and signatures of its `confirmed` record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Confirmed {
    dir: PathBuf,
    seq: u64,
    intent: String,
    signatures: Vec<Signature>,
}

/// One executed action, as a ledger recorded it, and what the trail says of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The ledger file.
    pub ledger: PathBuf,
    /// The `Decided` record's sequence in it.
    pub control_seq: u64,
    /// Its key.
    pub idempotency_key: String,
    /// The command the intent names (empty when the record has no intent).
    pub command: String,
    /// The signers' certificate fingerprints, in order.
    pub signers: Vec<String>,
    /// `matched` when a confirmed record holds the same intent and signatures and each
    /// signature verifies; otherwise what is wrong.
    pub verdict: String,
}

impl Finding {
    /// Whether the trail explains this action.
    pub fn matched(&self) -> bool {
        self.verdict == "matched"
    }
}

/// Why the check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CrosscheckError {
    /// An audit directory could not be read.
    #[error("audit {dir}: {why}")]
    Audit {
        /// The directory.
        dir: PathBuf,
        /// Why.
        why: String,
    },
    /// A ledger could not be read.
    #[error("ledger {path}: {why}")]
    Ledger {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

fn confirmed_records(dirs: &[PathBuf]) -> Result<BTreeMap<String, Vec<Confirmed>>, CrosscheckError> {
    let mut by_key: BTreeMap<String, Vec<Confirmed>> = BTreeMap::new();
    for dir in dirs {
        let mut bad = None;
        super::verify::read_from(dir, 1, |stored| {
            match stored.body() {
                Ok(body) if body.draft.stage == Stage::Confirmed => {
                    let facts = body.draft.confirmation.clone();
                    by_key.entry(body.draft.idempotency_key.clone()).or_default().push(Confirmed {
                        dir: dir.clone(),
                        seq: stored.seq,
                        intent: facts.as_ref().map(|f| f.intent.clone()).unwrap_or_default(),
                        signatures: facts.map(|f| f.signatures).unwrap_or_default(),
                    });
                }
                Ok(_) => {}
                Err(e) => bad = Some(format!("record {} does not parse: {e}", stored.seq)),
            }
            bad.is_none()
        })
        .map_err(|p| CrosscheckError::Audit { dir: dir.clone(), why: p.what })?;
        if let Some(why) = bad {
            return Err(CrosscheckError::Audit { dir: dir.clone(), why });
        }
    }
    Ok(by_key)
}

/// The first signature of `sigs` that does not verify over `intent`, as a reason.
fn bad_signature(intent: &[u8], sigs: &[Signature]) -> Option<String> {
    sigs.iter().enumerate().find_map(|(n, s)| {
        let (Ok(cert), Ok(sig)) = (hex::decode(&s.certificate), hex::decode(&s.signature)) else {
            return Some(format!("signature {n} is not hex"));
        };
        crate::pki::sign::signature_verifies(&cert, s.scheme, &sig, intent)
            .err()
            .map(|why| format!("signature {n} {why}"))
    })
}

fn judge(record: &Record, ledger: &Path, trail: &BTreeMap<String, Vec<Confirmed>>) -> Option<Finding> {
    let Body::Decided(d) = &record.body else { return None };
    if !matches!(d.decision, Decision::Executed { .. }) {
        return None;
    }
    let intent_bytes = hex::decode(&d.intent).unwrap_or_default();
    let command = Intent::decode(&intent_bytes).map(|i| i.command.as_str().to_string()).unwrap_or_default();
    let signers = d
        .signatures
        .iter()
        .map(|s| hex::decode(&s.certificate).map(|c| crate::tls::identity::fingerprint(&c)).unwrap_or_default())
        .collect();
    let verdict = if d.intent.is_empty() {
        "executed without a signed intent (decided before intents were signed)".to_string()
    } else if let Some(why) = bad_signature(&intent_bytes, &d.signatures) {
        format!("the ledger's {why}")
    } else {
        match trail.get(&d.idempotency_key) {
            None => "executed, but no confirmed audit record has this key: sent around the control plane, or the \
                     trail was cut"
                .to_string(),
            Some(list) => match list.iter().find(|c| c.intent == d.intent) {
                None => format!(
                    "confirmed record(s) of this key ({}) hold another intent than the one executed",
                    list.iter().map(|c| format!("{} seq {}", c.dir.display(), c.seq)).collect::<Vec<_>>().join(", ")
                ),
                Some(c) if c.signatures != d.signatures => format!(
                    "the confirmed record ({} seq {}) holds other signatures than the ones the kernel verified",
                    c.dir.display(),
                    c.seq
                ),
                Some(_) => "matched".to_string(),
            },
        }
    };
    Some(Finding {
        ledger: ledger.to_path_buf(),
        control_seq: record.control_seq,
        idempotency_key: d.idempotency_key.clone(),
        command,
        signers,
        verdict,
    })
}

/// Every executed action of `ledgers`, judged against the `confirmed` records of `audit_dirs`.
pub fn crosscheck(audit_dirs: &[PathBuf], ledgers: &[PathBuf]) -> Result<Vec<Finding>, CrosscheckError> {
    let trail = confirmed_records(audit_dirs)?;
    let mut out = Vec::new();
    for path in ledgers {
        let records = crate::kernel::ledger::Ledger::read_all(path)
            .map_err(|e| CrosscheckError::Ledger { path: path.clone(), why: e.to_string() })?;
        out.extend(records.iter().filter_map(|r| judge(r, path, &trail)));
    }
    Ok(out)
}
