//! The one place time is read.
//!
//! Every decision that depends on time (confirmation expiry, audit timestamps, checkpoint times)
//! takes a [`Clock`]; production code uses [`SystemClock`], tests use [`ManualClock`] and move it
//! by hand, so no test sleeps to make time pass. Explanations and decisions never contain a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time (for records) and monotonic time (for expiry).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch, as this clock reads them. Used only to stamp records.
    fn now_unix_ms(&self) -> u64;
    /// A monotonic reading in milliseconds from an arbitrary origin. Used for expiry windows.
    fn monotonic_ms(&self) -> u64;
    /// The name recorded beside every timestamp this clock produced (audit `clock_source`).
    fn source(&self) -> &'static str;
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clocks: `SystemTime` for records, `Instant` for expiry.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A system clock whose monotonic origin is now.
    #[allow(clippy::disallowed_methods)] // The one sanctioned reader of Instant::now.
    pub fn new() -> Self {
        Self { origin: Instant::now() }
    }

    /// A shared system clock.
    pub fn shared() -> SharedClock {
        Arc::new(Self::new())
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // The one sanctioned reader of SystemTime::now.
    fn now_unix_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    fn monotonic_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn source(&self) -> &'static str {
        "system"
    }
}

/// A clock that only moves when told to. Both readings advance together.
#[derive(Debug)]
pub struct ManualClock {
    unix_ms: AtomicU64,
    monotonic_ms: AtomicU64,
}

impl ManualClock {
    /// A manual clock reading `unix_ms` (and monotonic 0).
    pub fn new(unix_ms: u64) -> Self {
        Self { unix_ms: AtomicU64::new(unix_ms), monotonic_ms: AtomicU64::new(0) }
    }

    /// Moves both readings forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.unix_ms.fetch_add(ms, Ordering::SeqCst);
        self.monotonic_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix_ms(&self) -> u64 {
        self.unix_ms.load(Ordering::SeqCst)
    }

    fn monotonic_ms(&self) -> u64 {
        self.monotonic_ms.load(Ordering::SeqCst)
    }

    fn source(&self) -> &'static str {
        "manual"
    }
}

/// A clock whose offset can be moved by a test from outside the process, through a file holding
/// a number of milliseconds to add to the system clock. Compiled only with the `failpoints`
/// feature; it lets process-level tests expire confirmations without sleeping.
#[cfg(feature = "failpoints")]
#[derive(Debug)]
pub struct OffsetFileClock {
    inner: SystemClock,
    path: std::path::PathBuf,
}

#[cfg(feature = "failpoints")]
impl OffsetFileClock {
    /// A system clock plus the offset read from `path` at every reading (0 if absent).
    pub fn new(path: std::path::PathBuf) -> Self {
        Self { inner: SystemClock::new(), path }
    }

    fn offset_ms(&self) -> u64 {
        std::fs::read_to_string(&self.path).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0)
    }
}

#[cfg(feature = "failpoints")]
impl Clock for OffsetFileClock {
    fn now_unix_ms(&self) -> u64 {
        self.inner.now_unix_ms().saturating_add(self.offset_ms())
    }

    fn monotonic_ms(&self) -> u64 {
        self.inner.monotonic_ms().saturating_add(self.offset_ms())
    }

    fn source(&self) -> &'static str {
        "system+test-offset"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_unix_ms(), 1_000);
        assert_eq!(clock.monotonic_ms(), 0);
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.now_unix_ms(), 3_000);
        assert_eq!(clock.monotonic_ms(), 2_000);
        assert_eq!(clock.source(), "manual");
    }
}
