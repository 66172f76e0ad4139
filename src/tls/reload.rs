//! Reload of TLS material without restart, on SIGHUP and on file change.
//!
//! A reloader owns the `watch::Sender` of one configuration. When a watched file's modification
//! time or size changes, or the process receives SIGHUP, it builds a new configuration from the
//! files; only a configuration that builds completely replaces the old one. A bad file keeps the
//! old set in service and says so in the log. New connections use the new set; established ones
//! keep their session, and the accept loop checks their certificates again with the new set
//! (see [`super::accept`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use super::material::TlsError;

/// How often watched files are checked for changes.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);

fn stamp(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files.iter().map(|f| std::fs::metadata(f).ok().and_then(|m| Some((m.modified().ok()?, m.len())))).collect()
}

/// Builds a configuration now and returns a receiver of it, plus a task that rebuilds it on
/// change. Fails (and starts nothing) when the first build fails.
pub fn reloadable<T, F>(
    what: &'static str,
    files: Vec<PathBuf>,
    build: F,
    poll: Duration,
) -> Result<watch::Receiver<Arc<T>>, TlsError>
where
    T: Send + Sync + 'static,
    F: Fn() -> Result<T, TlsError> + Send + 'static,
{
    let initial = build()?;
    let (tx, rx) = watch::channel(Arc::new(initial));
    let mut seen = stamp(&files);
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| TlsError::Rustls(format!("cannot watch SIGHUP: {e}")))?;
    // Reload lines belong to the span that set the material up (a node's names the node).
    tokio::spawn(tracing::Instrument::in_current_span(async move {
        loop {
            let forced = tokio::select! {
                _ = tx.closed() => return,
                _ = hangup.recv() => true,
                _ = tokio::time::sleep(poll) => false,
            };
            let now = stamp(&files);
            if !forced && now == seen {
                continue;
            }
            seen = now;
            match build() {
                Ok(config) => {
                    tx.send_replace(Arc::new(config));
                    tracing::info!(
                        tls.set = what,
                        trigger = if forced { "SIGHUP" } else { "file change" },
                        "TLS material reloaded"
                    );
                }
                Err(e) => {
                    tracing::error!(tls.set = what, error = %e, "TLS reload refused; the previous set stays in service");
                }
            }
        }
    }));
    Ok(rx)
}
