//! `aerodbctl audit …`: tail, show (reconstruct), verify (offline or remote), checkpoint export.

use std::path::PathBuf;

use serde_json::json;

use super::{Cli, Exit, json::to_json, print_json, report_error};
use crate::audit::checkpoint::Checkpoint;
use crate::audit::verify;
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
    /// Verify framing, CRC, chain, gaps and checkpoints: offline on DIR (no server), or through
    /// the control plane when DIR is omitted.
    Verify {
        /// An audit directory to verify offline.
        dir: Option<PathBuf>,
        /// An exported checkpoint: its key is trusted and its head must still be in the log.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
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
    /// Signed checkpoints.
    Checkpoint {
        /// What to do.
        #[command(subcommand)]
        command: CheckpointCommand,
    },
}

/// Checkpoint subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CheckpointCommand {
    /// Write the latest signed checkpoint to a file for safekeeping elsewhere.
    Export {
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `audit crosscheck`: prints each executed action and its verdict; exit 7 when any is not
/// explained by the trail.
fn crosscheck(audits: &[PathBuf], ledgers: &[PathBuf], json_out: bool) -> Exit {
    let findings = match crate::audit::crosscheck::crosscheck(audits, ledgers) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let unexplained = findings.iter().filter(|f| !f.matched()).count();
    if json_out {
        print_json(&json!({ "executed": findings.len(), "unexplained": unexplained, "actions": findings }));
    } else {
        for f in &findings {
            println!(
                "{} control_seq {} key {} {}: {}",
                f.ledger.display(),
                f.control_seq,
                f.idempotency_key,
                if f.command.is_empty() { "?" } else { &f.command },
                f.verdict
            );
        }
        println!("{} executed action(s), {unexplained} not explained by the audit trail", findings.len());
    }
    if unexplained == 0 { Exit::Success } else { Exit::VerifyFailed }
}

fn verify_offline(dir: &std::path::Path, checkpoint: Option<&PathBuf>, json_out: bool) -> Exit {
    let exported = match checkpoint.map(|p| Checkpoint::read_export(p)) {
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
        Some(Ok(c)) => Some(c),
        None => None,
    };
    if !dir.is_dir() {
        eprintln!("error: {} is not a directory", dir.display());
        return Exit::Usage;
    }
    let r = verify::verify_dir(dir, exported.as_ref());
    if json_out {
        print_json(&json!({
            "ok": r.ok,
            "records": r.records,
            "first_seq": r.first_seq,
            "last_seq": r.last_seq,
            "head_hash": r.head_hash,
            "checkpoints_checked": r.checkpoints_checked,
            "bytes_read": r.bytes,
            "first_problem": r.problem.as_ref().map(|p| json!({
                "file": p.file.display().to_string(), "offset": p.offset, "seq": p.seq, "what": p.what,
            })),
            "notes": r.notes,
        }));
    } else if r.ok {
        println!(
            "OK: {} records (seq {}..={}), {} bytes, {} checkpoints verified, head {}",
            r.records, r.first_seq, r.last_seq, r.bytes, r.checkpoints_checked, r.head_hash
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
    if let AuditCommand::Verify { dir: Some(dir), checkpoint } = command {
        return verify_offline(dir, checkpoint.as_ref(), cli.json);
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
        AuditCommand::Verify { dir: Some(_), .. } | AuditCommand::Crosscheck { .. } => Exit::Internal,
        AuditCommand::Checkpoint { command: CheckpointCommand::Export { out } } => {
            match auditor.get_checkpoint(pb::GetCheckpointRequest {}).await {
                Ok(r) => {
                    let cp = Checkpoint::from_proto(&r.into_inner());
                    let text = serde_json::to_string_pretty(&cp).unwrap_or_default();
                    if let Err(e) = crate::fsutil::write_atomic(out, text.as_bytes(), 0o644) {
                        eprintln!("error: {}: {e}", out.display());
                        return Exit::Internal;
                    }
                    if cli.json {
                        print_json(
                            &json!({"exported": out.display().to_string(), "seq": cp.seq, "head_hash": cp.head_hash}),
                        );
                    } else {
                        println!(
                            "checkpoint of seq {} (head {}) written to {}; keep it off this machine",
                            cp.seq,
                            cp.head_hash,
                            out.display()
                        );
                    }
                    Exit::Success
                }
                Err(s) => report_error(&s, cli.json, false, None),
            }
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
