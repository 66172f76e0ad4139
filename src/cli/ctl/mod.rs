//! `aerodbctl`: the operator and observer CLI (DESIGN §6).
//!
//! Exit codes (docs/operator-guide.md): 0 success; 1 internal error; 2 usage error; 3 rejected
//! (a rule or the kernel refused: nothing executed); 4 not executed (declined, abandoned);
//! 5 outcome unknown (the kernel's ledger decides: `aerodbctl outcome KEY`); 6 unavailable (the
//! control plane or a node could not be reached: nothing executed); 7 audit verification failed;
//! 8 not found (`kv get` of a missing key, `audit show` matching no record); 9 certificate
//! refused in the TLS handshake (revoked, expired, unknown CA: said in words); 130 interrupted
//! (Ctrl-C; at a confirmation prompt the pending action is declined first). A closed stdout
//! (`aerodbctl --json status | head -1`) ends the process quietly with 0.

pub mod audit;
pub mod conn;
pub mod console;
pub mod json;
pub mod kv;
pub mod mutate;
pub mod probe;
pub mod render;
pub mod seen;
pub mod watch;

use clap::{Parser, Subcommand};
use serde_json::json;
use tonic::Status;

use crate::proto::control as pb;
use crate::wire::{ErrorDomain, Outcome, WireError};
use conn::ConnArgs;

/// Process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Success = 0,
    /// A bug or an unexpected local failure.
    Internal = 1,
    /// Bad flags or arguments.
    Usage = 2,
    /// Refused by a rule or by the kernel; nothing executed.
    Rejected = 3,
    /// Declined or abandoned; nothing executed.
    NotExecuted = 4,
    /// The outcome is unknown; the kernel's ledger decides.
    Unknown = 5,
    /// Could not reach the control plane or a node; nothing executed.
    Unavailable = 6,
    /// `audit verify` found a problem.
    VerifyFailed = 7,
    /// What was asked for does not exist (`kv get` of a missing key, `audit show` matching no
    /// record).
    NotFound = 8,
    /// A certificate was refused during the TLS handshake (this client's by the server:
    /// revoked, expired, unknown CA, unacceptable; or the server's by this client); nothing
    /// executed.
    CertificateRefused = 9,
    /// Interrupted (Ctrl-C); a pending action was declined first.
    Interrupted = 130,
}

/// Why a TLS handshake refused a certificate, in words, when the error chain of a failed call
/// (or aerodbctl's own repeat of the handshake, [`probe::diagnose`]) says so: a specific TLS
/// alert from the server (revoked, expired, unknown CA), this client's own verdict on the
/// server's certificate, or, for a server's unspecific refusal, what aerodbctl establishes
/// about its own certificate ([`probe::local_reason`]). None for every other failure.
pub fn certificate_refusal(status: &Status) -> Option<String> {
    let mut text = status.message().to_string();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(status);
    while let Some(e) = source {
        text.push_str(&format!(" | {e} | {e:?}"));
        source = e.source();
    }
    if let Some(found) = probe::found() {
        text.push_str(" | ");
        text.push_str(found);
    }
    const SPECIFIC: &[(&str, &str)] = &[
        ("CertificateRevoked", "the server refused this client certificate: it is revoked (listed in the CA's CRL)"),
        (
            "CertificateExpired",
            "the server refused this client certificate: it has expired or is not yet valid (see `aerodbctl whoami`)",
        ),
        ("UnknownCA", "the server refused this client certificate: it was not issued by a CA the server trusts"),
        ("CertificateRequired", "the server refused the connection: it requires a client certificate"),
        ("UnknownIssuer", "the server's certificate was not issued by the CA this profile trusts (--ca)"),
        ("NotValidForName", "the server's certificate is not valid for the address connected to (--endpoint)"),
        ("invalid peer certificate: Revoked", "the server's certificate is revoked"),
        ("invalid peer certificate: Expired", "the server's certificate has expired"),
    ];
    if let Some((_, words)) = SPECIFIC.iter().find(|(needle, _)| text.contains(needle)) {
        return Some((*words).to_string());
    }
    const UNSPECIFIC: &[&str] = &["CertificateUnknown", "BadCertificate", "UnsupportedCertificate", "AccessDenied"];
    let alert = UNSPECIFIC.iter().find(|needle| text.contains(**needle))?;
    Some(match probe::local_reason() {
        Some(reason) => format!("the server refused this client certificate ({alert} alert): {reason}"),
        None => format!(
            "the server refused this client certificate ({alert} alert); its log and audit trail name the reason"
        ),
    })
}

/// aerodbctl: see, and steer through explicit confirmation, an AeroDB cluster.
#[derive(Debug, Parser)]
#[command(name = "aerodbctl", version, about)]
pub struct Cli {
    /// Connection.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Emit one JSON document on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every node: role, epoch, positions (inspect_cluster_state).
    Status {
        /// Refresh the view until Ctrl-C (passive: reads only), each refresh headed by the time
        /// it was observed.
        #[arg(long)]
        watch: bool,
        /// Seconds between refreshes with --watch (at least 0.2).
        #[arg(long, default_value_t = 2.0, requires = "watch")]
        interval: f64,
        /// Stop after this many refreshes (default: until Ctrl-C).
        #[arg(long, requires = "watch")]
        count: Option<u64>,
    },
    /// One node's whole snapshot (inspect_node).
    Node {
        /// Node id.
        node: String,
    },
    /// Replication positions and lag per node (inspect_replication_status).
    Replication,
    /// Promotion-relevant facts per node (inspect_promotion_state).
    Promotion,
    /// WAL and ledger metadata (inspect_wal).
    Wal {
        /// Only this node.
        node: Option<String>,
    },
    /// Snapshots (inspect_snapshots).
    Snapshots {
        /// Only this node.
        node: Option<String>,
    },
    /// What the kernels' ledgers recorded for an idempotency key.
    Outcome {
        /// The key.
        key: String,
    },
    /// Run read-only diagnostics on a node (declares its cost first; standard confirmation).
    Diag(mutate::MutationArgs),
    /// Promote a replica (standard confirmation).
    Promote(mutate::MutationArgs),
    /// Demote the primary (standard confirmation).
    Demote(mutate::MutationArgs),
    /// Promote skipping the fence check (enhanced confirmation).
    ForcePromote(mutate::MutationArgs),
    /// Complete a pending action printed by `--request-only`.
    Confirm(mutate::ConfirmArgs),
    /// Approve another operator's pending action: show its intent, sign it with this profile's
    /// actor key, print the approval (JSON) for `confirm --approval`. Calls no server.
    Approve(mutate::ApproveArgs),
    /// Decline a pending action.
    Decline {
        /// The confirmation id.
        confirmation_id: String,
    },
    /// The audit trail.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// A loopback web console (read-only unless --allow-actions with an actor profile).
    Console(console::ConsoleArgs),
    /// The data plane (client profile).
    Kv {
        /// What to do.
        #[command(subcommand)]
        command: kv::KvCommand,
    },
    /// A shell completion script on stdout (`source <(aerodbctl completion bash)`).
    Completion {
        /// The shell.
        shell: watch::Shell,
    },
    /// This program's version.
    Version,
    /// The identity this connection's certificate carries: what every server derives from it
    /// (role, name, fingerprint, serial, issuer, expiry). Reads the certificate; calls no server.
    Whoami,
}

/// Prints a JSON document.
pub fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into()));
}

/// How a failed call ends the process. `dispatched` is true when the call may have reached a
/// kernel as a mutation (a ConfirmAction): a transport failure then means the outcome is unknown.
pub fn classify(status: &Status, dispatched: bool) -> Exit {
    if !dispatched && WireError::from_status(status).is_none() && certificate_refusal(status).is_some() {
        // The handshake failed: nothing was executed (a mutation that may have been dispatched
        // keeps its unknown outcome).
        return Exit::CertificateRefused;
    }
    match WireError::from_status(status) {
        Some(w) => match (w.outcome, w.error_domain) {
            (Outcome::Unknown, _) => Exit::Unknown,
            (Outcome::Executed, _) => Exit::Internal,
            (Outcome::NotExecuted, ErrorDomain::Transport) => Exit::Unavailable,
            (Outcome::NotExecuted, _) => Exit::Rejected,
        },
        None if dispatched => Exit::Unknown,
        None => Exit::Unavailable,
    }
}

/// Reports a failed call (stderr, or JSON on stdout) and returns its exit code. An unknown
/// outcome names `aerodbctl outcome KEY` (the idempotency key) as the way to learn it.
pub fn report_error(status: &Status, json_out: bool, dispatched: bool, key: Option<&str>) -> Exit {
    let advice = match key {
        Some(k) => format!("the kernel's ledger decides; run: aerodbctl outcome {k}"),
        None => "the kernel's ledger decides; run: aerodbctl outcome <idempotency key>".to_string(),
    };
    let mut extra = serde_json::Map::new();
    extra.insert("idempotency_key".into(), json!(key));
    report_error_with(status, json_out, dispatched, extra, &advice)
}

/// Reports a failed call like [`report_error`], with `extra` fields in the JSON document and
/// `unknown_advice` printed (stderr) when the outcome is unknown.
pub fn report_error_with(
    status: &Status,
    json_out: bool,
    dispatched: bool,
    extra: serde_json::Map<String, serde_json::Value>,
    unknown_advice: &str,
) -> Exit {
    let exit = classify(status, dispatched);
    let wire = WireError::from_status(status);
    if json_out {
        let error = match &wire {
            Some(w) => json!({
                "code": w.code,
                "domain": w.error_domain.as_str(),
                "outcome": w.outcome.as_str(),
                "invariants": w.invariants,
                "message": w.message,
                "fields": w.field_errors.iter().map(|f| json!({"field": f.field, "description": f.description})).collect::<Vec<_>>(),
                "metadata": w.extra.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            }),
            None => match certificate_refusal(status).filter(|_| !dispatched) {
                Some(words) => json!({
                    "code": "CERTIFICATE_REFUSED",
                    "domain": "TRANSPORT",
                    "outcome": "NOT_EXECUTED",
                    "invariants": [],
                    "message": words.as_str(),
                }),
                None => json!({
                    "code": "TRANSPORT",
                    "domain": "TRANSPORT",
                    "outcome": if dispatched { "UNKNOWN" } else { "NOT_EXECUTED" },
                    "invariants": [],
                    "message": format!("{}: {}", status.code(), status.message()),
                }),
            },
        };
        let mut doc = serde_json::Map::new();
        doc.insert("error".into(), error);
        doc.insert("exit_code".into(), json!(exit as i32));
        doc.extend(extra);
        print_json(&serde_json::Value::Object(doc));
        return exit;
    }
    match &wire {
        Some(w) => {
            let headline = if w.code == crate::tls::authz::INSUFFICIENT_AUTHORITY {
                " (insufficient authority: this certificate's role may not do this)"
            } else {
                ""
            };
            eprintln!("error: {}{headline}", w.code);
            eprintln!("  domain:     {}", w.error_domain.as_str());
            eprintln!("  outcome:    {}", w.outcome.as_str());
            eprintln!("  invariants: {}", if w.invariants.is_empty() { "-".into() } else { w.invariants.join(", ") });
            eprintln!("  message:    {}", w.message);
            for f in &w.field_errors {
                eprintln!("  field:      {}: {}", f.field, f.description);
            }
            for (k, v) in &w.extra {
                eprintln!("  {k}: {v}");
            }
        }
        None => match certificate_refusal(status).filter(|_| !dispatched) {
            Some(words) => {
                eprintln!("error: {words}");
                eprintln!("  outcome:    NOT_EXECUTED (the TLS handshake failed; no request was sent)");
            }
            None => {
                eprintln!("error: could not complete the call: {}: {}", status.code(), status.message());
                eprintln!("  outcome:    {}", if dispatched { "UNKNOWN" } else { "NOT_EXECUTED" });
            }
        },
    }
    if exit == Exit::Unknown {
        eprintln!("  {unknown_advice}");
    }
    exit
}

/// Runs a command; returns the exit code.
pub async fn main(cli: Cli) -> Exit {
    match &cli.command {
        Command::Audit { command } => return audit::run(&cli, command).await,
        Command::Kv { command } => return kv::run(&cli, command).await,
        Command::Console(a) => return console::run(&cli.conn, a).await,
        Command::Version => {
            let v = env!("CARGO_PKG_VERSION");
            if cli.json {
                print_json(&json!({"client": {"name": "aerodbctl", "version": v}}));
            } else {
                println!("aerodbctl {v}");
            }
            return Exit::Success;
        }
        Command::Whoami => return whoami(&cli),
        Command::Approve(a) => {
            return match cli.conn.resolve() {
                Ok(conn) => mutate::approve(&conn.paths, &conn.trust_domain, a),
                Err(e) => {
                    eprintln!("error: {e}");
                    Exit::Usage
                }
            };
        }
        Command::Completion { shell } => return watch::completion(*shell),
        _ => {}
    }
    let (conn, ch) = match cli.conn.channel(crate::tls::identity::Role::ControlPlane) {
        Ok((conn, ch)) => {
            probe::set_target(&conn, &conn.endpoint, crate::tls::identity::Role::ControlPlane);
            (conn, ch)
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let mut observer = pb::observer_client::ObserverClient::new(ch.clone());
    let j = cli.json;
    macro_rules! view {
        ($call:expr, $name:literal, $render:expr) => {
            match $call.await {
                Ok(r) => {
                    let r = r.into_inner();
                    if j {
                        print_json(&json::to_json(&r, $name));
                    } else {
                        $render(&r);
                    }
                    Exit::Success
                }
                Err(s) => {
                    probe::diagnose(&s).await;
                    report_error(&s, j, false, None)
                }
            }
        };
    }
    match &cli.command {
        Command::Status { watch: true, interval, count } => watch::status(ch, j, *interval, *count).await,
        Command::Status { .. } => view!(
            observer.get_cluster_state(pb::GetClusterStateRequest {}),
            "aerodb.control.v1.ClusterState",
            render::cluster
        ),
        Command::Node { node } => view!(
            observer.get_node(pb::GetNodeRequest { node_id: node.clone() }),
            "aerodb.control.v1.NodeView",
            render::node
        ),
        Command::Replication => view!(
            observer.get_replication_status(pb::GetReplicationStatusRequest {}),
            "aerodb.control.v1.ReplicationStatus",
            render::replication
        ),
        Command::Promotion => view!(
            observer.get_promotion_state(pb::GetPromotionStateRequest {}),
            "aerodb.control.v1.PromotionState",
            render::promotion
        ),
        Command::Wal { node } => view!(
            observer.inspect_wal(pb::InspectWalRequest { node_id: node.clone().unwrap_or_default() }),
            "aerodb.control.v1.WalInspection",
            render::wal
        ),
        Command::Snapshots { node } => view!(
            observer.inspect_snapshots(pb::InspectSnapshotsRequest { node_id: node.clone().unwrap_or_default() }),
            "aerodb.control.v1.SnapshotInspection",
            render::snapshots
        ),
        Command::Outcome { key } => view!(
            observer.get_outcome(pb::GetOutcomeRequest { idempotency_key: key.clone() }),
            "aerodb.control.v1.OutcomeView",
            render::outcome
        ),
        Command::Diag(a) => mutate::run(ch, &conn.paths, j, pb::Command::RunDiagnostics, a).await,
        Command::Promote(a) => mutate::run(ch, &conn.paths, j, pb::Command::RequestPromotion, a).await,
        Command::Demote(a) => mutate::run(ch, &conn.paths, j, pb::Command::RequestDemotion, a).await,
        Command::ForcePromote(a) => mutate::run(ch, &conn.paths, j, pb::Command::ForcePromotion, a).await,
        Command::Confirm(a) => mutate::confirm(ch, &conn.paths, j, a).await,
        Command::Decline { confirmation_id } => mutate::decline(ch, j, confirmation_id).await,
        Command::Audit { .. }
        | Command::Approve(_)
        | Command::Kv { .. }
        | Command::Console(_)
        | Command::Version
        | Command::Whoami
        | Command::Completion { .. } => Exit::Internal,
    }
}

/// `whoami`: the identity of the configured client certificate, derived as servers derive it.
fn whoami(cli: &Cli) -> Exit {
    let conn = match cli.conn.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let certs = match crate::tls::material::load_certs(&conn.paths.cert) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let Some(leaf) = certs.first() else {
        eprintln!("error: {} holds no certificate", conn.paths.cert.display());
        return Exit::Usage;
    };
    let id = match crate::tls::identity::identity_from_der(leaf.as_ref(), &conn.trust_domain) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("error: {} carries no client identity servers accept: {e}", conn.paths.cert.display());
            return Exit::Usage;
        }
    };
    let not_after = crate::tls::identity::not_after_unix_s(leaf.as_ref())
        .map(crate::tls::accept::format_not_after)
        .unwrap_or_default();
    if cli.json {
        print_json(&json!({
            "role": id.role.as_str(),
            "name": id.name,
            "principal": id.principal(),
            "trust_domain": conn.trust_domain,
            "cert_sha256": id.cert_sha256,
            "serial": id.serial,
            "issuer": id.issuer,
            "not_after": not_after,
            "certificate": conn.paths.cert.display().to_string(),
        }));
    } else {
        println!("{}  (spiffe://{}/role/{}/id/{})", id.principal(), conn.trust_domain, id.role.as_str(), id.name);
        println!("  certificate: {}", conn.paths.cert.display());
        println!("  sha256:      {}", id.cert_sha256);
        println!("  serial:      {}", id.serial);
        println!("  issuer:      {}", id.issuer);
        println!("  not after:   {not_after}");
    }
    Exit::Success
}
