//! The audit trail checked against the kernels' ledgers, offline (`aerodbctl audit crosscheck`),
//! in both directions.
//!
//! - Ledger → trail: every action a kernel executed must be explained by the trail: a
//!   `confirmed` record (of any of the control-plane instances whose directories are given) under
//!   the same idempotency key that holds the very intent and signatures the kernel recorded in
//!   its `Decided` record, each signature verifying over the intent's bytes, and whose leaf hash
//!   is the `confirmed_audit_leaf` the Decided record carries (when it carries one). An executed
//!   action without one was sent around the control plane (by someone holding actor keys), or
//!   its trail was cut or rewritten; the check names it.
//! - Trail → ledger: every outcome record that names a kernel decision (`detail.kernel_control_seq`
//!   and `kernel_record_hash`) must find, in the given ledger of its target node, the Decided
//!   record of its key at that control_seq, hashing to that hash and carrying the leaf of the
//!   trail's own `confirmed` record (`detail.confirmed_leaf`, which must be the leaf of the
//!   `confirmed` record of the same correlation id in that directory).
//!
//! Reads files only; changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::record::{Body, Stage};
use crate::contract::intent::{Intent, Signature};
use crate::kernel::records::{Decision, LedgerEvent, Record};

/// What the trail says of one key: the intent and signatures of its `confirmed` record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Confirmed {
    dir: PathBuf,
    seq: u64,
    intent: String,
    signatures: Vec<Signature>,
    /// Its leaf hash, hex.
    leaf: String,
    correlation_id: String,
}

/// An outcome record that names the kernel's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Named {
    dir: PathBuf,
    seq: u64,
    stage: Stage,
    correlation_id: String,
    idempotency_key: String,
    node: String,
    control_seq: u64,
    record_hash: String,
    confirmed_leaf: String,
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
    /// `matched` when a confirmed record holds the same intent and signatures, each signature
    /// verifies, and its leaf is the one the Decided record carries; otherwise what is wrong.
    pub verdict: String,
    /// The matching `confirmed` record: `<audit dir> seq N` (empty when none matched).
    pub confirmed: String,
}

/// One outcome record that names a kernel decision, checked against that kernel's ledger.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutcomeFinding {
    /// The audit directory.
    pub audit: PathBuf,
    /// The outcome record's seq there.
    pub seq: u64,
    /// Its stage (`executed`, `replayed`, `rejected`).
    pub stage: String,
    /// Its key.
    pub idempotency_key: String,
    /// The node whose ledger it names.
    pub node: String,
    /// The control_seq it names.
    pub control_seq: u64,
    /// `matched`; `not checked: …` when no ledger of that node was given; otherwise what is
    /// wrong.
    pub verdict: String,
}

impl OutcomeFinding {
    /// Whether the ledger holds exactly the decision the record names.
    pub fn matched(&self) -> bool {
        self.verdict == "matched"
    }
    /// Whether it was checked (a ledger of its node was given).
    pub fn checked(&self) -> bool {
        !self.verdict.starts_with("not checked")
    }
}

/// Both directions of the check.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Every executed action of the ledgers, judged against the trails.
    pub actions: Vec<Finding>,
    /// Every outcome record of the trails that names a kernel decision, judged against the
    /// ledgers.
    pub outcomes: Vec<OutcomeFinding>,
}

impl Report {
    /// Executed actions the trails do not explain, plus outcome records the ledgers contradict.
    pub fn failures(&self) -> usize {
        self.actions.iter().filter(|f| !f.matched()).count()
            + self.outcomes.iter().filter(|o| o.checked() && !o.matched()).count()
    }
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

/// What the trails hold: `confirmed` records by key, and outcome records naming a decision.
type Trails = (BTreeMap<String, Vec<Confirmed>>, Vec<Named>);

fn read_trails(dirs: &[PathBuf]) -> Result<Trails, CrosscheckError> {
    let mut by_key: BTreeMap<String, Vec<Confirmed>> = BTreeMap::new();
    let mut named = Vec::new();
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
                        leaf: hex::encode(stored.leaf_hash),
                        correlation_id: body.draft.correlation_id.clone(),
                    });
                }
                Ok(body) => named.extend(named_decision(dir, stored.seq, &body)),
                Err(e) => bad = Some(format!("record {} does not parse: {e}", stored.seq)),
            }
            bad.is_none()
        })
        .map_err(|p| CrosscheckError::Audit { dir: dir.clone(), why: p.what })?;
        if let Some(why) = bad {
            return Err(CrosscheckError::Audit { dir: dir.clone(), why });
        }
    }
    Ok((by_key, named))
}

/// The decision an outcome record names, if it names one.
fn named_decision(dir: &Path, seq: u64, body: &Body) -> Option<Named> {
    let d = &body.draft;
    let control_seq = d.detail.get("kernel_control_seq")?.parse().ok()?;
    Some(Named {
        dir: dir.to_path_buf(),
        seq,
        stage: d.stage,
        correlation_id: d.correlation_id.clone(),
        idempotency_key: d.idempotency_key.clone(),
        node: d.target.clone(),
        control_seq,
        record_hash: d.detail.get("kernel_record_hash").cloned().unwrap_or_default(),
        confirmed_leaf: d.detail.get("confirmed_leaf").cloned().unwrap_or_default(),
    })
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

fn short(h: &str) -> &str {
    h.get(..16).unwrap_or(h)
}

fn judge(record: &Record, ledger: &Path, trail: &BTreeMap<String, Vec<Confirmed>>) -> Option<Finding> {
    let LedgerEvent::Decided(d) = &record.body else { return None };
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
    let mut confirmed = String::new();
    let verdict = if d.intent.is_empty() {
        "executed without a signed intent (decided before intents were signed)".to_string()
    } else if let Some(why) = bad_signature(&intent_bytes, &d.signatures) {
        format!("the ledger's {why}")
    } else {
        let leaf_ok = |c: &Confirmed| d.confirmed_audit_leaf.is_empty() || c.leaf == d.confirmed_audit_leaf;
        match trail.get(&d.idempotency_key) {
            None => "executed, but no confirmed audit record has this key: sent around the control plane, or the \
                     trail was cut"
                .to_string(),
            Some(list) => match list.iter().find(|c| c.intent == d.intent && leaf_ok(c)) {
                None if list.iter().any(|c| c.intent == d.intent) => format!(
                    "the Decided record carries confirmed audit leaf {}…, which is not the leaf of the confirmed \
                     record(s) of this key ({}): the trail was rewritten, or the request did not come from it",
                    short(&d.confirmed_audit_leaf),
                    list.iter()
                        .map(|c| format!("{} seq {} leaf {}…", c.dir.display(), c.seq, short(&c.leaf)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => format!(
                    "confirmed record(s) of this key ({}) hold another intent than the one executed",
                    list.iter().map(|c| format!("{} seq {}", c.dir.display(), c.seq)).collect::<Vec<_>>().join(", ")
                ),
                Some(c) if c.signatures != d.signatures => format!(
                    "the confirmed record ({} seq {}) holds other signatures than the ones the kernel verified",
                    c.dir.display(),
                    c.seq
                ),
                Some(c) => {
                    confirmed = format!("{} seq {}", c.dir.display(), c.seq);
                    "matched".to_string()
                }
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
        confirmed,
    })
}

/// One node's ledger: its file and its records by control_seq.
struct NodeLedger {
    path: PathBuf,
    records: BTreeMap<u64, Record>,
}

fn judge_outcome(
    n: &Named,
    ledgers: &BTreeMap<String, NodeLedger>,
    trail: &BTreeMap<String, Vec<Confirmed>>,
) -> String {
    // The trail's own consistency first: the leaf the outcome names is its confirmed record's.
    let own = trail
        .get(&n.idempotency_key)
        .and_then(|l| l.iter().find(|c| c.dir == n.dir && c.correlation_id == n.correlation_id));
    match own {
        Some(c) if c.leaf != n.confirmed_leaf => {
            return format!(
                "names confirmed leaf {}…, but the confirmed record of its correlation id (seq {}) has leaf {}…: the \
                 trail was rewritten",
                short(&n.confirmed_leaf),
                c.seq,
                short(&c.leaf)
            );
        }
        None => return "names a decision, but its directory has no confirmed record of its correlation id".into(),
        Some(_) => {}
    }
    let Some(l) = ledgers.get(&n.node) else { return format!("not checked: no ledger of node {} given", n.node) };
    let Some(r) = l.records.get(&n.control_seq) else {
        return format!(
            "the ledger {} has no record at control_seq {} (it ends at {}): the ledger was cut",
            l.path.display(),
            n.control_seq,
            l.records.keys().next_back().copied().unwrap_or(0)
        );
    };
    let LedgerEvent::Decided(d) = &r.body else {
        return format!("the ledger's record at control_seq {} is not a Decided record", n.control_seq);
    };
    if d.idempotency_key != n.idempotency_key {
        return format!(
            "the ledger's Decided record at control_seq {} is of key {:?}, not of this one",
            n.control_seq, d.idempotency_key
        );
    }
    let actual = hex::encode(r.hash());
    if actual != n.record_hash {
        return format!(
            "the ledger's Decided record at control_seq {} hashes to {}…, not to the {}… the outcome record holds: the \
             ledger or the trail was rewritten",
            n.control_seq,
            short(&actual),
            short(&n.record_hash)
        );
    }
    if n.stage == Stage::Replayed {
        // Nothing ran for this confirmation: the Decided record carries the leaf of the
        // confirmation that did run, which must be one of this key's confirmed records.
        let known = trail.get(&n.idempotency_key).is_some_and(|l| l.iter().any(|c| c.leaf == d.confirmed_audit_leaf));
        if !d.confirmed_audit_leaf.is_empty() && !known {
            return format!(
                "the ledger's Decided record carries confirmed audit leaf {}…, the leaf of no confirmed record of this \
                 key in the given trails",
                short(&d.confirmed_audit_leaf)
            );
        }
        return "matched".into();
    }
    if d.confirmed_audit_leaf != n.confirmed_leaf {
        return format!(
            "the ledger's Decided record carries confirmed audit leaf {}…, not the trail's {}…",
            short(&d.confirmed_audit_leaf),
            short(&n.confirmed_leaf)
        );
    }
    "matched".into()
}

/// Every executed action of `ledgers`, judged against the `confirmed` records of `audit_dirs`,
/// and every outcome record of `audit_dirs` that names a kernel decision, judged against the
/// ledger of its node (found by the node id of the ledger's Genesis record).
pub fn crosscheck(audit_dirs: &[PathBuf], ledgers: &[PathBuf]) -> Result<Report, CrosscheckError> {
    let (trail, named) = read_trails(audit_dirs)?;
    let mut actions = Vec::new();
    let mut by_node: BTreeMap<String, NodeLedger> = BTreeMap::new();
    for path in ledgers {
        let records = crate::kernel::ledger::Ledger::read_all(path)
            .map_err(|e| CrosscheckError::Ledger { path: path.clone(), why: e.to_string() })?;
        actions.extend(records.iter().filter_map(|r| judge(r, path, &trail)));
        let node = records.iter().find_map(|r| match &r.body {
            LedgerEvent::Genesis { node_id, .. } => Some(node_id.clone()),
            _ => None,
        });
        if let Some(node) = node {
            by_node.insert(
                node,
                NodeLedger { path: path.clone(), records: records.into_iter().map(|r| (r.control_seq, r)).collect() },
            );
        }
    }
    let outcomes = named
        .iter()
        .map(|n| OutcomeFinding {
            audit: n.dir.clone(),
            seq: n.seq,
            stage: n.stage.as_str().to_string(),
            idempotency_key: n.idempotency_key.clone(),
            node: n.node.clone(),
            control_seq: n.control_seq,
            verdict: judge_outcome(n, &by_node, &trail),
        })
        .collect();
    Ok(Report { actions, outcomes })
}
