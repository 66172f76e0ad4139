//! `aerodb`: node, control, certs, dev. Parsing only; each subcommand calls the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::clock::{Clock, SystemClock};
use crate::pki;
use crate::tls::identity::Role;

/// AeroDB: the kernel node, the control plane, certificate tooling, and an embedded dev cluster.
#[derive(Debug, Parser)]
#[command(name = "aerodb", version, about)]
pub struct Cli {
    /// Log line format on stderr: `text` (for people) or `json` (one JSON object per line, with
    /// the spans, e.g. a node's `node.id`, under `spans`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "AERODB_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info`, `debug`, `warn,aerodb=debug` (`RUST_LOG` syntax). Without it,
    /// `RUST_LOG`, else `info`.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// A kernel node.
    Node {
        /// What to do with it.
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// The control plane (Observer, Actor, Auditor over mutual TLS): `aerodb control --config F`
    /// runs it; `aerodb control check --config F` only checks its configuration.
    Control {
        /// Check instead of running.
        #[command(subcommand)]
        command: Option<ControlCommand>,
        /// Configuration file (TOML).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Certificate tooling.
    Certs {
        /// What to do.
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// A 3-node cluster and a control plane in one process, on loopback, with dev certificates.
    Dev {
        /// Where node data and the audit log live.
        #[arg(long, default_value = "data/dev")]
        data_dir: PathBuf,
        /// Where dev certificates live (created if absent).
        #[arg(long, default_value = "certs/dev")]
        certs_dir: PathBuf,
        /// First port: the control plane listens on it, nodes on the next three.
        #[arg(long, default_value_t = 7700)]
        base_port: u16,
    },
}

/// `aerodb control …`.
#[derive(Debug, Subcommand)]
pub enum ControlCommand {
    /// Validates a configuration and the files it names (certificates, keys, CA, CRL, the audit
    /// directory) without starting; exits non-zero naming the first problem.
    Check {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
}

/// `aerodb node …`.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Creates a data dir with its Genesis record.
    Init {
        /// The data dir.
        #[arg(long)]
        data_dir: PathBuf,
        /// The cluster id.
        #[arg(long)]
        cluster_id: String,
        /// This node's id.
        #[arg(long)]
        node_id: String,
        /// This node is the genesis primary of epoch 1.
        #[arg(long)]
        primary: bool,
    },
    /// Runs a node.
    Run {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Validates a configuration and the files it names (certificates, keys, CA, CRL, the data
    /// dir) without starting; exits non-zero naming the first problem.
    Check {
        /// Configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Writes a snapshot of a stopped node's data dir.
    Snapshot {
        /// The data dir.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

/// `aerodb certs …`.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// A CA, one certificate per node (`node-<id>`), the control plane's, one per operator role
    /// and the data client, an empty CRL, profiles.
    Init {
        /// Output directory.
        #[arg(long, default_value = "certs/dev")]
        dir: PathBuf,
        /// Trust domain of the identities.
        #[arg(long, default_value = "aerodb.local")]
        trust_domain: String,
        /// Control plane address written into the observer/actor/auditor profiles.
        #[arg(long, default_value = "127.0.0.1:7700")]
        control_endpoint: String,
        /// Node address written into the client profile.
        #[arg(long, default_value = "127.0.0.1:7701")]
        data_endpoint: String,
        /// Extra server names (DNS or IP) for the nodes' and the control plane's certificates.
        #[arg(long = "server-name")]
        server_names: Vec<String>,
        /// Validity of leaf certificates, days.
        #[arg(long, default_value_t = pki::LEAF_VALIDITY_DAYS)]
        days: i64,
        /// The node ids, comma-separated: one certificate `node-<id>` each, naming the id.
        #[arg(long, value_delimiter = ',', default_values_t = pki::DEFAULT_NODES.map(String::from))]
        nodes: Vec<String>,
    },
    /// A certificate for a role and name (and a profile for aerodbctl roles).
    Issue {
        /// The CA directory.
        #[arg(long, default_value = "certs/dev")]
        dir: PathBuf,
        /// observer, actor, auditor, controlplane, node or client.
        #[arg(long)]
        role: Role,
        /// The identity name.
        #[arg(long)]
        name: String,
        /// Trust domain.
        #[arg(long, default_value = "aerodb.local")]
        trust_domain: String,
        /// Endpoint for the profile (defaults by role: control plane or node 1).
        #[arg(long)]
        endpoint: Option<String>,
        /// Extra server names (DNS or IP) of a node's or a control plane's certificate.
        #[arg(long = "server-name")]
        server_names: Vec<String>,
        /// Validity, days.
        #[arg(long, default_value_t = pki::LEAF_VALIDITY_DAYS)]
        days: i64,
    },
    /// Revokes a certificate: its serial is added to the CRL, which every server reloads.
    Revoke {
        /// The CA directory.
        #[arg(long, default_value = "certs/dev")]
        dir: PathBuf,
        /// The certificate (PEM) to revoke.
        cert: PathBuf,
    },
    /// Re-issues the CRL with a new nextUpdate, revoking nothing. Run it well before the CRL's
    /// nextUpdate (servers refuse every handshake once it has passed); servers reload it.
    Crl {
        /// The CA directory.
        #[arg(long, default_value = "certs/dev")]
        dir: PathBuf,
        /// Days until the new CRL's nextUpdate (1..=366).
        #[arg(long, default_value_t = pki::CRL_VALIDITY_DAYS)]
        days: i64,
    },
}

fn now() -> time::OffsetDateTime {
    let ms = SystemClock::new().now_unix_ms();
    time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// The control plane's clock: the system clock; in test builds (`failpoints`), the system clock
/// plus the offset in the file named by `AERODB_TEST_CLOCK_OFFSET_FILE`, so process-level tests
/// can expire confirmations without sleeping.
fn control_clock() -> crate::clock::SharedClock {
    #[cfg(feature = "failpoints")]
    if let Ok(path) = std::env::var("AERODB_TEST_CLOCK_OFFSET_FILE") {
        return std::sync::Arc::new(crate::clock::OffsetFileClock::new(path.into()));
    }
    crate::clock::SystemClock::shared()
}

/// Runs the parsed command.
pub async fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Node { command } => match command {
            NodeCommand::Init { data_dir, cluster_id, node_id, primary } => {
                crate::kernel::node::init(&data_dir, &cluster_id, &node_id, primary).await?;
                println!(
                    "initialised {} as node {node_id} of cluster {cluster_id}{}",
                    data_dir.display(),
                    if primary { " (genesis primary, epoch 1)" } else { "" }
                );
            }
            NodeCommand::Run { config } => {
                let cfg = crate::kernel::config::NodeConfig::load(&config)?;
                // The signal lines name the node too (the node's own span is made by `run`).
                let shutdown = {
                    let _node = tracing::info_span!("node", node.id = %cfg.node_id).entered();
                    crate::shutdown::on_signals()?
                };
                crate::kernel::run::run(cfg, shutdown).await?;
            }
            NodeCommand::Check { config } => {
                for line in crate::cli::check::node(&config)? {
                    println!("ok: {line}");
                }
            }
            NodeCommand::Snapshot { data_dir } => {
                let dir = crate::kernel::snapshot::take_offline(&data_dir).await.map_err(|e| anyhow::anyhow!(e))?;
                println!("snapshot written: {}", dir.display());
            }
        },
        Command::Control { command: Some(ControlCommand::Check { config }), .. } => {
            for line in crate::cli::check::control(&config)? {
                println!("ok: {line}");
            }
        }
        Command::Control { command: None, config } => {
            let Some(config) = config else {
                anyhow::bail!("aerodb control needs --config FILE (or: aerodb control check --config FILE)");
            };
            let cfg = crate::control::config::ControlConfig::load(&config)?;
            let shutdown = {
                let _control = tracing::info_span!("control", control.instance = %cfg.instance_id).entered();
                crate::shutdown::on_signals()?
            };
            crate::control::run::run(cfg, control_clock(), shutdown).await?;
        }
        Command::Certs { command } => match command {
            CertsCommand::Init { dir, trust_domain, control_endpoint, data_endpoint, server_names, days, nodes } => {
                let opts = pki::InitOptions {
                    trust_domain,
                    control_endpoint,
                    data_endpoint,
                    extra_server_names: server_names,
                    leaf_days: days,
                    nodes,
                };
                let files = pki::init(&dir, &opts, now())?;
                println!("wrote {} files to {}:", files.len(), dir.display());
                for f in files {
                    println!("  {}", f.display());
                }
            }
            CertsCommand::Issue { dir, role, name, trust_domain, endpoint, server_names, days } => {
                let endpoint = endpoint.or_else(|| match role {
                    Role::Observer | Role::Actor | Role::Auditor => Some("127.0.0.1:7700".to_string()),
                    Role::Client => Some("127.0.0.1:7701".to_string()),
                    Role::ControlPlane | Role::Node => None,
                });
                let files =
                    pki::issue(&dir, &trust_domain, role, &name, endpoint.as_deref(), &server_names, days, now())?;
                for f in files {
                    println!("wrote {}", f.display());
                }
            }
            CertsCommand::Revoke { dir, cert } => {
                let serial = pki::revoke(&dir, &cert, now())?;
                println!(
                    "revoked serial {serial}; {} rewritten (servers reload it within seconds, or on SIGHUP)",
                    dir.join("crl.pem").display()
                );
            }
            CertsCommand::Crl { dir, days } => {
                let number = pki::refresh_crl(&dir, days, now())?;
                println!(
                    "re-issued {} (CRL number {number}, nextUpdate in {days} days, nothing revoked); servers reload \
                     it within seconds, or on SIGHUP",
                    dir.join("crl.pem").display()
                );
            }
        },
        Command::Dev { data_dir, certs_dir, base_port } => {
            crate::dev::run(&data_dir, &certs_dir, base_port).await?;
        }
    }
    Ok(())
}

/// Sets up `tracing` to stderr in `format`, filtered by `level` (`RUST_LOG` syntax), else by
/// `RUST_LOG`, else `info`. A filter that does not parse is an error naming it.
pub fn init_tracing(format: LogFormat, level: Option<&str>) -> anyhow::Result<()> {
    let filter = match level {
        Some(l) => tracing_subscriber::EnvFilter::try_new(l).map_err(|e| anyhow::anyhow!("--log-level {l:?}: {e}"))?,
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,h2=warn,tower=warn,hyper=warn")),
    };
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).try_init(),
    };
    Ok(())
}
