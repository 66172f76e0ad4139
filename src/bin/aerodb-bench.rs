//! `aerodb-bench`: benchmarks that print ratios measured in one run. See `scripts/bench`.
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    All,
    GroupCommit,
    ReplicatedPut,
    Control,
    Audit,
    Tlog,
    Handshakes,
    /// Issue 20: WAL on disk, restart time, catch-up by snapshot.
    Lifecycle,
}

/// aerodb-bench: measured ratios (not timed tests).
#[derive(Debug, Parser)]
struct Cli {
    /// Which benchmark.
    #[arg(value_enum, default_value = "all")]
    which: Which,
    /// Seconds per measured load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Size of the audit log verified, MiB.
    #[arg(long, default_value_t = 1024)]
    audit_mb: u64,
    /// History of the large node in the restart benchmark, MiB (the small one has 1/25 of it).
    #[arg(long, default_value_t = 512)]
    history_mb: u64,
    /// Bytes written while the follower is down in the catch-up benchmark, MiB.
    #[arg(long, default_value_t = 256)]
    behind_mb: u64,
    /// Leaves of the tree inclusion proofs are measured in.
    #[arg(long, default_value_t = 10_000_000)]
    proof_leaves: u64,
    /// Work directory (default: a temporary one, removed at the end).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt().with_env_filter("error").with_writer(std::io::stderr).try_init();
    let cli = Cli::parse();
    let tmp = tempfile::Builder::new().prefix("aerodb-bench-").tempdir()?;
    let root = cli.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&root)?;
    let secs = std::time::Duration::from_secs(cli.seconds);
    let mut rows = Vec::new();
    let w = cli.which;
    if matches!(w, Which::All | Which::GroupCommit) {
        eprintln!("group commit …");
        rows.extend(aerodb::bench::runs::group_commit(&root, secs).await?);
    }
    if matches!(w, Which::All | Which::ReplicatedPut) {
        eprintln!("replicated put …");
        rows.extend(aerodb::bench::runs::replicated_put(&root, secs).await?);
    }
    if matches!(w, Which::All | Which::Control) {
        eprintln!("control plane …");
        rows.extend(aerodb::bench::runs::control(&root, secs).await?);
        rows.extend(aerodb::bench::runs::intent_costs(&root, 2000)?);
    }
    if matches!(w, Which::All | Which::Audit) {
        eprintln!("audit …");
        rows.extend(aerodb::bench::runs::audit(&root, secs, cli.audit_mb).await?);
    }
    if matches!(w, Which::All | Which::Tlog) {
        eprintln!("transparency log …");
        rows.extend(aerodb::bench::tlog::tlog(&root, secs, cli.audit_mb, cli.proof_leaves).await?);
    }
    if matches!(w, Which::All | Which::Handshakes) {
        eprintln!("handshakes …");
        rows.extend(aerodb::bench::runs::handshakes(&root, 500).await?);
    }
    if matches!(w, Which::All | Which::Lifecycle) {
        eprintln!("lifecycle …");
        rows.extend(aerodb::bench::lifecycle::disk(&root).await?);
        let mib = 1u64 << 20;
        rows.extend(aerodb::bench::lifecycle::restart(&root, cli.history_mb * mib, cli.history_mb * mib / 25).await?);
        rows.extend(aerodb::bench::lifecycle::catch_up(&root, cli.behind_mb * mib).await?);
    }
    aerodb::bench::print(&rows);
    Ok(())
}
