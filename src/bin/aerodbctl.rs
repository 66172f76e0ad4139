//! `aerodbctl`: see `aerodbctl --help`.
use clap::Parser;

#[tokio::main]
async fn main() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AERODBCTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    quiet_on_closed_stdout();
    let cli = aerodb::cli::ctl::Cli::parse();
    let code = aerodb::cli::ctl::main(cli).await;
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // Exit here rather than return: an interrupted prompt leaves a thread blocked on the
    // terminal, which the runtime would otherwise wait for.
    std::process::exit(code as i32)
}

/// A reader that stops reading (`aerodbctl --json status | head -1`) is not an error: printing
/// to a closed stdout ends the process with 0 and no message. Any other panic is reported as
/// usual.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
