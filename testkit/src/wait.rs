//! Bounded waits on conditions: every wait in the harness names what it waits for and panics
//! naming it when the deadline passes.

use std::future::Future;
use std::time::Duration;

/// Default bound of a wait.
pub const WAIT: Duration = Duration::from_secs(30);

/// Waits until `f` returns `Some`, polling every 20 ms, for at most `timeout`; panics naming
/// `what` when the deadline passes. The condition is the signal; the poll interval is not.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
