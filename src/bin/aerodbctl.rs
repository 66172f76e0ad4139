//! `aerodbctl`: see `aerodbctl --help`.
use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AERODBCTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let cli = aerodb::cli::ctl::Cli::parse();
    let code = aerodb::cli::ctl::main(cli).await;
    std::process::ExitCode::from(code as u8)
}
