//! `aerodb`: see `aerodb --help`.
use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = aerodb::cli::aerodb::Cli::parse();
    if let Err(e) = aerodb::cli::aerodb::init_tracing(cli.log_format, cli.log_level.as_deref()) {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::from(2);
    }
    match aerodb::cli::aerodb::main(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
