//! `aerodbctl audit …`: tail, show (reconstruct), verify (offline or remote), prove (inclusion
//! against a checkpoint consistent with the one stored), checkpoint export.

use std::path::PathBuf;

use serde_json::json;

use super::seen;
use super::{Cli, Exit, json::to_json, print_json, report_error};
use crate::audit::checkpoint::{self, Checkpoint};
use crate::audit::{merkle, verify};
use crate::proto::control as pb;

/// Audit subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// The last records (auditor profile).
    Tail {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only this correlation id.
        #[arg(long)]
        correlation: Option<String>,
        /// Only this identity (`name` or `role/name`).
        #[arg(long)]
        identity: Option<String>,
        /// Only this command.
        #[arg(long)]
        command: Option<String>,
        /// Only this stage.
        #[arg(long)]
        stage: Option<String>,
    },
    /// Every stage of one action and the kernel ledger's answer (auditor profile).
    Show {
        /// By correlation id.
        #[arg(long, conflicts_with = "key")]
        correlation: Option<String>,
        /// By idempotency key.
        #[arg(long)]
        key: Option<String>,
    },
    /// Verify framing, CRC, chain, gaps, the Merkle tree and every checkpoint: offline on DIR
    /// (no server), or through the control plane when DIR is omitted.
    Verify {
        /// An audit directory to verify offline.
        dir: Option<PathBuf>,
        /// A checkpoint held elsewhere (a signed note: an Actor answer's `audit_checkpoint`, an
        /// export): its tree must be a prefix of the directory's.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The hex Ed25519 key the held checkpoint must verify with (default: DIR/instance.pub).
        #[arg(long, requires = "checkpoint")]
        key: Option<String>,
        /// A directory holding segments archived from DIR (`audit archive --to`); repeat for
        /// each. Without it, records below the archive point are taken from DIR's tree.hashes.
        #[arg(long = "archive", requires = "dir")]
        archives: Vec<PathBuf>,
    },
    /// Offline, with the control plane of DIR stopped (refused while it runs): move the sealed
    /// segments wholly below the newest signed checkpoint to DEST, noting the archive point in
    /// DIR/archive.log. Nothing is deleted: each original is removed only after its copy in DEST
    /// is durable and reads back identical.
    Archive {
        /// The audit directory.
        #[arg(long = "audit")]
        dir: PathBuf,
        /// Where the segments go (created 0700 if absent; keep it as you keep backups).
        #[arg(long)]
        to: PathBuf,
    },
    /// Prove that record SEQ is in the log (auditor profile): fetch a fresh checkpoint, check it
    /// against the newest one stored for this instance (consistency proof; an inconsistent one is
    /// refused, exit 7), store it, then check the record's inclusion proof against it.
    Prove {
        /// The record's seq.
        #[arg(long)]
        seq: u64,
        /// Where checkpoints seen are kept (env AERODB_STATE_DIR; default: `state/` beside the
        /// profile).
        #[arg(long, env = "AERODB_STATE_DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Offline: check every action the given kernel ledgers executed against the `confirmed`
    /// records of the given audit directories (same intent, same signatures, each verifying).
    /// Names every executed action the trail does not explain. Calls no server.
    Crosscheck {
        /// An audit directory (repeat for each control-plane instance).
        #[arg(long = "audit", required = true)]
        audits: Vec<PathBuf>,
        /// A node's ledger, `<data_dir>/control.log` (repeat for each node).
        #[arg(long = "ledger", required = true)]
        ledgers: Vec<PathBuf>,
    },
    /// Offline: one action across the audit directories of several control-plane instances of
    /// one cluster, joined by idempotency key and correlation id, naming which instance recorded
    /// which stage; each directory is verified first, and with the nodes' ledgers the kernel's
    /// decision is named with the confirmed record whose leaf it carries. Calls no server.
    Reconstruct {
        /// An audit directory (repeat for each control-plane instance).
        #[arg(long = "audit", required = true)]
        audits: Vec<PathBuf>,
        /// A node's ledger, `<data_dir>/control.log` (repeat for each node).
        #[arg(long = "ledger")]
        ledgers: Vec<PathBuf>,
        /// By idempotency key.
        #[arg(long, conflicts_with = "correlation", required_unless_present = "correlation")]
        key: Option<String>,
        /// By correlation id (and every key its records name).
        #[arg(long)]
        correlation: Option<String>,
    },
    /// A witness that cosigns only checkpoints consistent with the last one it cosigned.
    Witness {
        /// What to do.
        #[command(subcommand)]
        command: WitnessCommand,
    },
    /// Signed checkpoints.
    Checkpoint {
        /// What to do.
        #[command(subcommand)]
        command: CheckpointCommand,
    },
}

/// Witness subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WitnessCommand {
    /// Offline: create a witness (a new Ed25519 key and its name) in DIR.
    Init {
        /// The witness's directory (created 0700; keep it off the control-plane host).
        #[arg(long)]
        dir: PathBuf,
        /// Its name: the key name is `aerodb.witness/<name>`.
        #[arg(long)]
        name: String,
    },
    /// Fetch a fresh checkpoint (auditor profile), check it against the last one this witness
    /// cosigned for the instance (a consistency proof; an inconsistent one is refused, exit 7,
    /// and nothing is signed), cosign it and write the cosigned note to OUT.
    Cosign {
        /// The witness's directory.
        #[arg(long)]
        dir: PathBuf,
        /// Where the cosigned note goes.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Checkpoint subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CheckpointCommand {
    /// Write a fresh signed checkpoint (a C2SP note) to a file for safekeeping elsewhere, after
    /// checking it against the one stored for this instance.
    Export {
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// Where checkpoints seen are kept (env AERODB_STATE_DIR; default: `state/` beside the
        /// profile).
        #[arg(long, env = "AERODB_STATE_DIR")]
        state_dir: Option<PathBuf>,
    },
}

/// `audit crosscheck`: prints each executed action and each outcome record naming a kernel
/// decision, with its verdict; exit 7 when any executed action is not explained by the trail or
/// any outcome record is contradicted by its node's ledger.
fn crosscheck(audits: &[PathBuf], ledgers: &[PathBuf], json_out: bool) -> Exit {
    let report = match crate::audit::crosscheck::crosscheck(audits, ledgers) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let unexplained = report.actions.iter().filter(|f| !f.matched()).count();
    let checked = report.outcomes.iter().filter(|o| o.checked()).count();
    let contradicted = report.outcomes.iter().filter(|o| o.checked() && !o.matched()).count();
    if json_out {
        print_json(&json!({
            "executed": report.actions.len(),
            "unexplained": unexplained,
            "actions": report.actions,
            "outcome_records": report.outcomes.len(),
            "outcome_records_checked": checked,
            "outcome_records_contradicted": contradicted,
            "outcomes": report.outcomes,
        }));
    } else {
        for f in &report.actions {
            println!(
                "{} control_seq {} key {} {}: {}{}",
                f.ledger.display(),
                f.control_seq,
                f.idempotency_key,
                if f.command.is_empty() { "?" } else { &f.command },
                f.verdict,
                if f.confirmed.is_empty() { String::new() } else { format!(" (confirmed: {})", f.confirmed) }
            );
        }
        for o in &report.outcomes {
            println!(
                "{} seq {} {} key {} -> {} control_seq {}: {}",
                o.audit.display(),
                o.seq,
                o.stage,
                o.idempotency_key,
                o.node,
                o.control_seq,
                o.verdict
            );
        }
        println!("{} executed action(s), {unexplained} not explained by the audit trail", report.actions.len());
        println!(
            "{} outcome record(s) naming a kernel decision, {checked} checked against a ledger, {contradicted} \
             contradicted by it",
            report.outcomes.len()
        );
    }
    if report.failures() == 0 { Exit::Success } else { Exit::VerifyFailed }
}

/// The state dir: given, or `state/` beside the profile.
fn state_dir(cli: &Cli, given: &Option<PathBuf>) -> Option<PathBuf> {
    given
        .clone()
        .or_else(|| cli.conn.profile.as_ref().map(|p| p.parent().unwrap_or(std::path::Path::new(".")).join("state")))
}

/// The state directory a command that keeps checkpoints needs; without one, says so (usage).
fn required_state_dir(cli: &Cli, given: &Option<PathBuf>) -> Result<PathBuf, Exit> {
    state_dir(cli, given).ok_or_else(|| {
        eprintln!("error: give --state-dir (or use --profile)");
        Exit::Usage
    })
}

/// A fresh checkpoint from the control plane, checked against (and stored over) the one seen
/// before. Prints the refusal and returns the exit code when it is not consistent.
async fn fresh_checkpoint(
    auditor: &mut pb::auditor_client::AuditorClient<tonic::transport::Channel>,
    cli: &Cli,
    state: &std::path::Path,
) -> Result<(pb::SignedCheckpoint, Checkpoint), Exit> {
    let offered = match auditor.get_checkpoint(pb::GetCheckpointRequest {}).await {
        Ok(r) => r.into_inner(),
        Err(s) => return Err(report_error(&s, cli.json, false, None)),
    };
    let stored = match seen::load(state, &offered.origin) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(Exit::Internal);
        }
    };
    let stored_size = stored.as_ref().and_then(|s| Checkpoint::parse(&s.note).ok()).map(|c| c.size);
    let proof = match stored_size {
        Some(first) if first < offered.tree_size => {
            let req = pb::GetConsistencyProofRequest { first_size: first, second_size: offered.tree_size };
            match auditor.get_consistency_proof(req).await {
                Ok(p) => Some(p.into_inner()),
                Err(s) => return Err(report_error(&s, cli.json, false, None)),
            }
        }
        _ => None,
    };
    match seen::accept(state, &offered, proof.as_ref()) {
        Ok((cp, _)) => Ok((offered, cp)),
        Err(e) => {
            eprintln!("{e}");
            Err(Exit::VerifyFailed)
        }
    }
}

/// `audit reconstruct`: exit 0 when stages were found and every directory verifies, 7 when one
/// does not verify, 8 when nothing matches.
fn reconstruct(
    audits: &[PathBuf],
    ledgers: &[PathBuf],
    query: &crate::audit::reconstruct::Query,
    json_out: bool,
) -> Exit {
    let r = match crate::audit::reconstruct::reconstruct(audits, ledgers, query) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    if json_out {
        print_json(&json!(r));
    } else {
        for v in &r.verified {
            let who = if v.instance.is_empty() { "no records".to_string() } else { format!("instance {}", v.instance) };
            if v.problem.is_empty() {
                println!("verified {} ({who}): OK, {} records", v.dir.display(), v.records);
            } else {
                println!("verified {} ({who}): FAILED: {}", v.dir.display(), v.problem);
            }
        }
        for f in &r.found {
            println!(
                "{} seq {} {} {} {} key {} correlation {} at {}{}{}",
                f.instance,
                f.seq,
                f.stage,
                f.command,
                if f.target.is_empty() { "-" } else { &f.target },
                if f.idempotency_key.is_empty() { "-" } else { &f.idempotency_key },
                f.correlation_id,
                f.time_unix_ms,
                if f.outcome.is_empty() { String::new() } else { format!(" {}", f.outcome) },
                if f.error_code.is_empty() { String::new() } else { format!(" {}", f.error_code) },
            );
        }
        for t in &r.trails {
            let missing = if t.missing_stages.is_empty() {
                String::new()
            } else {
                format!("; {} not recorded", t.missing_stages.join(", "))
            };
            println!("correlation {} ({}): {}{missing}", t.correlation_id, t.instances.join(", "), t.stages.join(", "));
        }
        for d in &r.decided {
            println!(
                "kernel ledger {}: key {} {} at control_seq {} on {} (confirmed record: {})",
                d.ledger.display(),
                d.idempotency_key,
                d.decision,
                d.control_seq,
                d.node,
                d.confirmed_by
            );
        }
    }
    if !r.verified_ok() {
        Exit::VerifyFailed
    } else if r.found.is_empty() {
        Exit::NotFound
    } else {
        Exit::Success
    }
}

/// `audit archive`: moves the sealed segments below the newest checkpoint; exit 2 when refused.
fn archive(dir: &std::path::Path, to: &std::path::Path, json_out: bool) -> Exit {
    let now = crate::clock::Clock::now_unix_ms(&crate::clock::SystemClock::new());
    match crate::audit::archive::archive(dir, to, now) {
        Ok(o) if json_out => {
            print_json(&json!({ "checkpoint_size": o.checkpoint_size, "archive_point": o.point }));
            Exit::Success
        }
        Ok(o) => {
            match &o.point {
                Some(p) => println!(
                    "OK: archived {} segment(s), records 1..={} (through seq {}), to {}; {} notes the archive point \
                     (newest checkpoint: tree size {})",
                    p.segments.len(),
                    p.first_kept_seq - 1,
                    p.first_kept_seq - 1,
                    p.destination,
                    dir.join(crate::audit::archive::ARCHIVE_FILE).display(),
                    o.checkpoint_size
                ),
                None => println!(
                    "OK: nothing to archive: no sealed segment lies wholly below the newest checkpoint (tree size {})",
                    o.checkpoint_size
                ),
            }
            Exit::Success
        }
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Usage
        }
    }
}

fn verify_offline(
    dir: &std::path::Path,
    archives: &[PathBuf],
    checkpoint: Option<&PathBuf>,
    key: Option<&str>,
    json_out: bool,
) -> Exit {
    let key = match key.map(checkpoint::public_key_from_hex) {
        Some(Err(e)) => {
            eprintln!("error: --key: {e}");
            return Exit::Usage;
        }
        Some(Ok(k)) => Some(k),
        None => None,
    };
    let held = match checkpoint.map(|p| Checkpoint::read_file(p)) {
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
        Some(Ok(c)) => Some(verify::Held { checkpoint: c, key }),
        None => None,
    };
    if !dir.is_dir() {
        eprintln!("error: {} is not a directory", dir.display());
        return Exit::Usage;
    }
    let r = verify::verify_dir_archived(dir, archives, held.as_ref());
    if json_out {
        print_json(&json!({
            "ok": r.ok,
            "records": r.records,
            "first_seq": r.first_seq,
            "last_seq": r.last_seq,
            "head_hash": r.head_hash,
            "root_hash": r.root_hash,
            "checkpoints_checked": r.checkpoints_checked,
            "bytes_read": r.bytes,
            "first_problem": r.problem.as_ref().map(|p| json!({
                "file": p.file.display().to_string(), "offset": p.offset, "seq": p.seq, "what": p.what,
            })),
            "notes": r.notes,
        }));
    } else if r.ok {
        println!(
            "OK: {} records (seq {}..={}), {} bytes, {} checkpoints verified, root {}",
            r.records, r.first_seq, r.last_seq, r.bytes, r.checkpoints_checked, r.root_hash
        );
        for n in &r.notes {
            println!("note: {n}");
        }
    } else if let Some(p) = &r.problem {
        println!(
            "FAILED: first bad record: file {} byte offset {} seq {}: {}",
            p.file.display(),
            p.offset,
            p.seq,
            p.what
        );
    }
    if r.ok { Exit::Success } else { Exit::VerifyFailed }
}

/// Runs an audit subcommand.
pub async fn run(cli: &Cli, command: &AuditCommand) -> Exit {
    if let AuditCommand::Crosscheck { audits, ledgers } = command {
        return crosscheck(audits, ledgers, cli.json);
    }
    if let AuditCommand::Verify { dir: Some(dir), checkpoint, key, archives } = command {
        return verify_offline(dir, archives, checkpoint.as_ref(), key.as_deref(), cli.json);
    }
    if let AuditCommand::Reconstruct { audits, ledgers, key, correlation } = command {
        let query = match (key, correlation) {
            (Some(k), _) => crate::audit::reconstruct::Query::Key(k.clone()),
            (None, Some(c)) => crate::audit::reconstruct::Query::Correlation(c.clone()),
            (None, None) => return Exit::Usage,
        };
        return reconstruct(audits, ledgers, &query, cli.json);
    }
    if let AuditCommand::Witness { command: WitnessCommand::Init { dir, name } } = command {
        return match crate::audit::witness::Witness::init(dir, name) {
            Ok(w) => {
                println!(
                    "witness {} created in {}; public key {} (key name {})",
                    w.name(),
                    dir.display(),
                    hex::encode(w.public_key().to_bytes()),
                    crate::audit::witness::key_name(w.name())
                );
                Exit::Success
            }
            Err(e) => {
                eprintln!("error: {e}");
                Exit::Usage
            }
        };
    }
    if let AuditCommand::Archive { dir, to } = command {
        return archive(dir, to, cli.json);
    }
    let (_, ch) = match cli.conn.channel(crate::tls::identity::Role::ControlPlane) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let mut auditor = pb::auditor_client::AuditorClient::new(ch);
    match command {
        AuditCommand::Tail { limit, correlation, identity, command, stage } => {
            let req = pb::ReadAuditRequest {
                from_seq: 0,
                limit: *limit,
                correlation_id: correlation.clone().unwrap_or_default(),
                identity: identity.clone().unwrap_or_default(),
                command: command.clone().unwrap_or_default(),
                stage: stage.clone().unwrap_or_default(),
                tail: true,
                ..Default::default()
            };
            let mut stream = match auditor.read_audit(req).await {
                Ok(s) => s.into_inner(),
                Err(s) => return report_error(&s, cli.json, false, None),
            };
            let mut records = Vec::new();
            loop {
                match stream.message().await {
                    Ok(Some(r)) => records.push(r),
                    Ok(None) => break,
                    Err(s) => return report_error(&s, cli.json, false, None),
                }
            }
            if cli.json {
                let list: Vec<_> = records.iter().map(structured).collect();
                print_json(&json!({ "records": list }));
            } else {
                for r in &records {
                    let body: serde_json::Value = serde_json::from_str(&r.body_json).unwrap_or_default();
                    let who = body["identity"]["name"]
                        .as_str()
                        .map(|n| format!("{}/{n}", body["identity"]["role"].as_str().unwrap_or("?")))
                        .unwrap_or_else(|| "-".into());
                    let code = body["error"]["code"].as_str().unwrap_or("");
                    println!(
                        "{:>6}  {:<22} {:<26} {:<22} {:<6} {:<13} {}",
                        r.seq,
                        r.stage,
                        r.command,
                        who,
                        body["target"].as_str().unwrap_or(""),
                        r.outcome,
                        code
                    );
                }
            }
            Exit::Success
        }
        AuditCommand::Show { correlation, key } => {
            let k = match (correlation, key) {
                (Some(c), _) => pb::reconstruct_action_request::Key::CorrelationId(c.clone()),
                (None, Some(k)) => pb::reconstruct_action_request::Key::IdempotencyKey(k.clone()),
                (None, None) => {
                    eprintln!("error: give --correlation or --key");
                    return Exit::Usage;
                }
            };
            match auditor.reconstruct_action(pb::ReconstructActionRequest { key: Some(k) }).await {
                Ok(r) => {
                    let r = r.into_inner();
                    if r.stages.is_empty() {
                        if cli.json {
                            print_json(
                                &json!({"found": false, "reconstruction": to_json(&r, "aerodb.control.v1.Reconstruction")}),
                            );
                        } else {
                            eprintln!(
                                "no audit record matches {}",
                                match (correlation, key) {
                                    (Some(c), _) => format!("correlation {c}"),
                                    (None, k) => format!("key {}", k.as_deref().unwrap_or_default()),
                                }
                            );
                        }
                        return Exit::NotFound;
                    }
                    if cli.json {
                        print_json(&to_json(&r, "aerodb.control.v1.Reconstruction"));
                    } else {
                        println!(
                            "{} {} (key {}, correlation {}), requested by {}",
                            r.command, r.target_node, r.idempotency_key, r.correlation_id, r.requested_by
                        );
                        for s in &r.stages {
                            println!("  seq {:>6}  {:<22} {:<13} {}", s.seq, s.stage, s.outcome, s.error_code);
                        }
                        if !r.missing_stages.is_empty() {
                            println!("  missing: {}", r.missing_stages.join(", "));
                        }
                        println!("  kernel ledger: {}", r.kernel_ledger);
                        println!("summary: {}", r.summary);
                    }
                    Exit::Success
                }
                Err(s) => report_error(&s, cli.json, false, None),
            }
        }
        AuditCommand::Verify { dir: None, .. } => match auditor.verify_audit(pb::VerifyAuditRequest::default()).await {
            Ok(r) => {
                let r = r.into_inner();
                if cli.json {
                    print_json(&to_json(&r, "aerodb.control.v1.VerifyAuditResponse"));
                } else if r.ok {
                    println!(
                        "OK: {} records (seq {}..={}), {} checkpoints verified, head {}",
                        r.records_checked, r.first_seq, r.last_seq, r.checkpoints_checked, r.head_hash
                    );
                } else {
                    println!("FAILED: {}", r.first_problem);
                }
                if r.ok { Exit::Success } else { Exit::VerifyFailed }
            }
            Err(s) => report_error(&s, cli.json, false, None),
        },
        AuditCommand::Verify { dir: Some(_), .. }
        | AuditCommand::Crosscheck { .. }
        | AuditCommand::Archive { .. }
        | AuditCommand::Reconstruct { .. }
        | AuditCommand::Witness { command: WitnessCommand::Init { .. } } => Exit::Internal,
        AuditCommand::Witness { command: WitnessCommand::Cosign { dir, out } } => {
            let witness = match crate::audit::witness::Witness::load(dir) {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Exit::Usage;
                }
            };
            // The witness's own store: the last checkpoint it cosigned per origin.
            let (_, cp) = match fresh_checkpoint(&mut auditor, cli, dir).await {
                Ok(c) => c,
                Err(exit) => return exit,
            };
            let note = match witness.cosign(&cp.note) {
                Ok(n) => n,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Exit::Internal;
                }
            };
            if let Err(e) = crate::fsutil::write_atomic(out, note.as_bytes(), 0o644) {
                eprintln!("error: {}: {e}", out.display());
                return Exit::Internal;
            }
            println!(
                "OK: cosigned {} tree size {} as {}: {}",
                cp.origin,
                cp.size,
                crate::audit::witness::key_name(witness.name()),
                out.display()
            );
            Exit::Success
        }
        AuditCommand::Checkpoint { command: CheckpointCommand::Export { out, state_dir: given } } => {
            let state = match required_state_dir(cli, given) {
                Ok(s) => s,
                Err(exit) => return exit,
            };
            let (offered, cp) = match fresh_checkpoint(&mut auditor, cli, &state).await {
                Ok(c) => c,
                Err(exit) => return exit,
            };
            if let Err(e) = crate::fsutil::write_atomic(out, cp.note.as_bytes(), 0o644) {
                eprintln!("error: {}: {e}", out.display());
                return Exit::Internal;
            }
            if cli.json {
                print_json(&json!({"exported": out.display().to_string(), "tree_size": cp.size,
                    "root_hash": offered.root_hash, "public_key": offered.public_key}));
            } else {
                println!(
                    "checkpoint of tree size {} (root {}, key {}) written to {}; keep it off this machine",
                    cp.size,
                    offered.root_hash,
                    offered.public_key,
                    out.display()
                );
            }
            Exit::Success
        }
        AuditCommand::Prove { seq, state_dir: given } => {
            let state = match required_state_dir(cli, given) {
                Ok(s) => s,
                Err(exit) => return exit,
            };
            let (offered, cp) = match fresh_checkpoint(&mut auditor, cli, &state).await {
                Ok(c) => c,
                Err(exit) => return exit,
            };
            let req = pb::GetInclusionProofRequest { seq: *seq, tree_size: cp.size };
            let p = match auditor.get_inclusion_proof(req).await {
                Ok(p) => p.into_inner(),
                Err(s) => return report_error(&s, cli.json, false, None),
            };
            // The leaf is recomputed from the record's bytes here, never taken from the server.
            let payload = hex::decode(&p.record_payload).unwrap_or_default();
            let leaf = merkle::leaf_hash(&payload);
            let hashes: Option<Vec<merkle::Hash>> =
                p.hashes.iter().map(|h| hex::decode(h).ok().and_then(|b| b.try_into().ok())).collect();
            let seq_ok = crate::audit::chain::split(&payload).map(|(_, s, _)| s) == Some(*seq);
            let verdict = match hashes {
                Some(h) if seq_ok => {
                    merkle::verify_inclusion(seq - 1, cp.size, &leaf, &h, &cp.root).map_err(|e| e.to_string())
                }
                Some(_) if payload.is_empty() => Err(concat!(
                    "the control plane does not hold the record's bytes (its segment was archived, see ",
                    "archive.log): verify it offline with `audit verify DIR --archive DEST --checkpoint NOTE`"
                )
                .into()),
                Some(_) => Err("the record returned is not the record asked for".into()),
                None => Err("the proof holds a value that is not a hash".into()),
            };
            if cli.json {
                print_json(&json!({"seq": seq, "tree_size": cp.size, "root_hash": offered.root_hash,
                    "leaf_hash": hex::encode(leaf), "proof": p.hashes, "included": verdict.is_ok(),
                    "problem": verdict.as_ref().err()}));
            } else {
                match &verdict {
                    Ok(()) => println!(
                        "OK: record seq {seq} (leaf {}) is in the tree of size {} with root {} (signed by {})",
                        hex::encode(leaf),
                        cp.size,
                        offered.root_hash,
                        cp.origin
                    ),
                    Err(e) => println!("FAILED: record seq {seq} is not proven in the tree of size {}: {e}", cp.size),
                }
            }
            if verdict.is_ok() { Exit::Success } else { Exit::VerifyFailed }
        }
    }
}

/// An audit record as JSON with its body as a JSON object (`body`), not the string the wire
/// carries (`body_json`).
fn structured(r: &pb::AuditRecord) -> serde_json::Value {
    let mut v = to_json(r, "aerodb.control.v1.AuditRecord");
    let body = serde_json::from_str(&r.body_json).unwrap_or(serde_json::Value::String(r.body_json.clone()));
    if let Some(o) = v.as_object_mut() {
        o.remove("body_json");
        o.insert("body".into(), body);
    }
    v
}
