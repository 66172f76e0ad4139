//! Offline reconstruction across the audit directories of several control-plane instances of one
//! cluster (`aerodbctl audit reconstruct --audit DIR … [--ledger FILE …] --key K | --correlation C`).
//!
//! An action's records can lie in several directories: a request retried on another instance
//! under the same key (`replayed` there), a confirmation lost with its instance and the action
//! asked again elsewhere. The records are joined by idempotency key and correlation id: by key,
//! every record of that key in every directory; by correlation id, the records of that id and
//! then every record of each key they name. Each stage found is named with the instance that
//! recorded it (the record's `instance_id`) and its directory and seq. Each directory is verified
//! (the full verification of `audit verify`): a reconstruction from a trail that does not verify
//! says so, and uses its records up to the first unreadable one. With the nodes' ledgers, the kernel's Decided record of each key is named too,
//! with the `confirmed` record (instance and seq) whose leaf it carries.
//!
//! Reads files only; changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::record::{Body, Stage};
use super::verify;
use crate::kernel::records::{Decision, LedgerEvent, Record};

/// The stages an action's trail holds, and what a complete trail would add.
pub fn missing_stages(stages: &[Stage]) -> Vec<String> {
    let has = |s: Stage| stages.contains(&s);
    let outcome = has(Stage::Executed) || has(Stage::Replayed) || has(Stage::Failed);
    let mut missing = Vec::new();
    if !has(Stage::Requested) && (has(Stage::ConfirmationRequested) || has(Stage::Confirmed)) {
        missing.push("requested".to_string());
    }
    if has(Stage::Confirmed) && !has(Stage::ConfirmationRequested) {
        missing.push("confirmation_requested".to_string());
    }
    if has(Stage::Confirmed)
        && !outcome
        && !stages.iter().skip_while(|s| **s != Stage::Confirmed).any(|s| *s == Stage::Rejected)
    {
        missing.push("outcome".to_string());
    }
    missing
}

/// What to reconstruct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Every record of this idempotency key.
    Key(String),
    /// The records of this correlation id, and every record of the keys they name.
    Correlation(String),
}

/// One stage found, and who recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Found {
    /// The instance that recorded it (the record's `instance_id`).
    pub instance: String,
    /// Its audit directory.
    pub dir: PathBuf,
    /// Its seq there.
    pub seq: u64,
    /// The stage.
    pub stage: String,
    /// When (milliseconds since the Unix epoch, the instance's clock).
    pub time_unix_ms: u64,
    /// Its correlation id.
    pub correlation_id: String,
    /// Its idempotency key.
    pub idempotency_key: String,
    /// The command.
    pub command: String,
    /// The target node.
    pub target: String,
    /// Its outcome (`EXECUTED`, …, or empty).
    pub outcome: String,
    /// The error code answered, if any.
    pub error_code: String,
    /// Its leaf hash, hex.
    pub leaf: String,
}

/// One correlation id's trail: the instance(s) that recorded it, its stages, what is missing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Trail {
    /// The correlation id.
    pub correlation_id: String,
    /// The instances that recorded its stages.
    pub instances: Vec<String>,
    /// Its stages in record order.
    pub stages: Vec<String>,
    /// What a complete trail would add.
    pub missing_stages: Vec<String>,
}

/// A kernel's Decided record of a key, and the `confirmed` record whose leaf it carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Decided {
    /// The ledger file.
    pub ledger: PathBuf,
    /// The node (its Genesis record's id).
    pub node: String,
    /// The key.
    pub idempotency_key: String,
    /// Its control_seq.
    pub control_seq: u64,
    /// `executed` or `rejected (CODE)`.
    pub decision: String,
    /// `<instance> seq N` of the `confirmed` record whose leaf the Decided record carries;
    /// `none carried` or `not in the given trails` otherwise.
    pub confirmed_by: String,
}

/// One directory's verification.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    /// The directory.
    pub dir: PathBuf,
    /// The instance whose records it holds (from its first record; empty when it has none).
    pub instance: String,
    /// Records checked.
    pub records: u64,
    /// The first problem, or empty.
    pub problem: String,
}

/// The reconstruction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reconstruction {
    /// Every directory, verified.
    pub verified: Vec<Verified>,
    /// Every stage found, ordered by time, then instance and seq.
    pub found: Vec<Found>,
    /// Per correlation id.
    pub trails: Vec<Trail>,
    /// The keys joined.
    pub keys: Vec<String>,
    /// The kernels' decisions of those keys.
    pub decided: Vec<Decided>,
}

impl Reconstruction {
    /// Every directory verified without a problem.
    pub fn verified_ok(&self) -> bool {
        self.verified.iter().all(|v| v.problem.is_empty())
    }
}

/// Why reconstruction could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReconstructError {
    /// A ledger could not be read.
    #[error("ledger {path}: {why}")]
    Ledger {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Two directories hold records of the same instance (a copy, or a misconfiguration).
    #[error("{first} and {second} both hold records of instance {instance}: give each instance's directory once")]
    SameInstance {
        /// The instance.
        instance: String,
        /// One directory.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
}

/// The action records of `dir` that `keep` keeps, up to the first unreadable one (which the
/// directory's verification names), with the instance of its first record. Streams: only the
/// rows kept are held.
fn rows(dir: &Path, keep: impl Fn(&Found) -> bool) -> (Vec<Found>, String) {
    let mut out = Vec::new();
    let mut instance = None;
    // A damaged record ends the reading here; the verification beside reports it.
    let _ = verify::read_from(dir, 1, |s| match s.body() {
        Ok(b) => {
            instance.get_or_insert_with(|| b.instance_id.clone());
            out.extend(row(dir, s.seq, hex::encode(s.leaf_hash), &b).filter(|f| keep(f)));
            true
        }
        Err(_) => false,
    });
    (out, instance.unwrap_or_default())
}

fn row(dir: &Path, seq: u64, leaf: String, b: &Body) -> Option<Found> {
    let d = &b.draft;
    if matches!(d.stage, Stage::Read | Stage::HandshakeRejected | Stage::AuditGap | Stage::Denied) {
        return None;
    }
    Some(Found {
        instance: b.instance_id.clone(),
        dir: dir.to_path_buf(),
        seq,
        stage: d.stage.as_str().to_string(),
        time_unix_ms: b.time_unix_ms,
        correlation_id: d.correlation_id.clone(),
        idempotency_key: d.idempotency_key.clone(),
        command: d.command.clone(),
        target: d.target.clone(),
        outcome: d.outcome.clone(),
        error_code: d.error.as_ref().map(|e| e.code.clone()).unwrap_or_default(),
        leaf,
    })
}

/// Reconstructs `query` across `dirs` (one per instance), naming each ledger's decision of the
/// keys joined.
pub fn reconstruct(dirs: &[PathBuf], ledgers: &[PathBuf], query: &Query) -> Result<Reconstruction, ReconstructError> {
    // Join: by key directly; by correlation id, its records and then every key they name (a
    // first pass finds those keys).
    let keys: BTreeSet<String> = match query {
        Query::Key(k) => [k.clone()].into(),
        Query::Correlation(c) => dirs
            .iter()
            .flat_map(|d| rows(d, |f| &f.correlation_id == c).0)
            .filter(|f| !f.idempotency_key.is_empty())
            .map(|f| f.idempotency_key)
            .collect(),
    };
    let wanted = |f: &Found| {
        keys.contains(&f.idempotency_key) || matches!(query, Query::Correlation(c) if &f.correlation_id == c)
    };
    let mut verified = Vec::new();
    let mut found = Vec::new();
    let mut owner: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let report = verify::verify_dir(dir, None);
        let (kept, instance) = rows(dir, wanted);
        if !instance.is_empty() {
            if let Some(first) = owner.get(&instance) {
                return Err(ReconstructError::SameInstance { instance, first: first.clone(), second: dir.clone() });
            }
            owner.insert(instance.clone(), dir.clone());
        }
        verified.push(Verified {
            dir: dir.clone(),
            instance,
            records: report.records,
            problem: report.problem.map(|p| p.to_string()).unwrap_or_default(),
        });
        found.extend(kept);
    }
    found.sort_by(|a, b| (a.time_unix_ms, &a.instance, a.seq).cmp(&(b.time_unix_ms, &b.instance, b.seq)));
    let mut by_correlation: BTreeMap<String, Vec<&Found>> = BTreeMap::new();
    for f in &found {
        by_correlation.entry(f.correlation_id.clone()).or_default().push(f);
    }
    let trails = by_correlation
        .into_iter()
        .map(|(correlation_id, mut list)| {
            list.sort_by(|a, b| (&a.instance, a.seq).cmp(&(&b.instance, b.seq)));
            let stages: Vec<Stage> = list.iter().filter_map(|f| stage_of(&f.stage)).collect();
            let instances: BTreeSet<String> = list.iter().map(|f| f.instance.clone()).collect();
            Trail {
                correlation_id,
                instances: instances.into_iter().collect(),
                stages: list.iter().map(|f| f.stage.clone()).collect(),
                missing_stages: missing_stages(&stages),
            }
        })
        .collect();
    let mut decided = Vec::new();
    for path in ledgers {
        let records = crate::kernel::ledger::Ledger::read_all(path)
            .map_err(|e| ReconstructError::Ledger { path: path.clone(), why: e.to_string() })?;
        let node = records
            .iter()
            .find_map(|r| match &r.body {
                LedgerEvent::Genesis { node_id, .. } => Some(node_id.clone()),
                _ => None,
            })
            .unwrap_or_default();
        decided.extend(records.iter().filter_map(|r| decided_of(r, path, &node, &keys, &found)));
    }
    Ok(Reconstruction { verified, found, trails, keys: keys.into_iter().collect(), decided })
}

fn stage_of(name: &str) -> Option<Stage> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

fn decided_of(r: &Record, ledger: &Path, node: &str, keys: &BTreeSet<String>, found: &[Found]) -> Option<Decided> {
    let LedgerEvent::Decided(d) = &r.body else { return None };
    if !keys.contains(&d.idempotency_key) {
        return None;
    }
    let decision = match &d.decision {
        Decision::Executed { .. } => "executed".to_string(),
        Decision::Rejected { rejection } => format!("rejected ({})", rejection.code),
    };
    let confirmed_by = if d.confirmed_audit_leaf.is_empty() {
        "none carried".to_string()
    } else {
        found
            .iter()
            .find(|f| f.stage == Stage::Confirmed.as_str() && f.leaf == d.confirmed_audit_leaf)
            .map(|f| format!("{} seq {}", f.instance, f.seq))
            .unwrap_or_else(|| "not in the given trails".to_string())
    };
    Some(Decided {
        ledger: ledger.to_path_buf(),
        node: node.to_string(),
        idempotency_key: d.idempotency_key.clone(),
        control_seq: r.control_seq,
        decision,
        confirmed_by,
    })
}
