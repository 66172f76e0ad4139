//! `aerodb`: see `aerodb --help`.
use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    aerodb::cli::aerodb::init_tracing();
    let cli = aerodb::cli::aerodb::Cli::parse();
    match aerodb::cli::aerodb::main(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
