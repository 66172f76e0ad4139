//! The shutdown signal: SIGINT or SIGTERM flips a watch to `true` once.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// A watch that becomes `true` on the first SIGINT or SIGTERM.
pub fn on_signals() -> std::io::Result<watch::Receiver<bool>> {
    let (tx, rx) = watch::channel(false);
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        let _ = tx.send(true);
    }));
    Ok(rx)
}

/// A future that completes when `rx` becomes true (or its sender is gone).
pub async fn wait(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}
