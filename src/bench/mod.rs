//! `aerodb-bench`: benchmarks that print ratios measured in one run (never timed tests).
//!
//! Every figure is measured against its reference in the same run on the same machine: group
//! commit against a single client, replicated writes and observer reads against etcd over mTLS,
//! ConfirmAction against its floor (the fsyncs and round trips it cannot avoid), audit
//! verification against raw SHA-256 over the same bytes, audit appends against their fsync count.
//! Processes are real (`aerodb node`, `aerodb control`, `etcd`) on loopback, with real
//! certificates and data dirs under a temporary directory. Every load loop is bounded in time.

pub mod cluster;
pub mod lifecycle;
pub mod runs;
pub mod tlog;

use std::time::Duration;

/// The benchmarks' stopwatch. Measuring elapsed time is what a benchmark is for; no decision and
/// no explanation ever reads it (the rest of the crate reads time only through `clock::Clock`).
#[allow(clippy::disallowed_methods)]
pub fn stopwatch() -> std::time::Instant {
    std::time::Instant::now()
}

/// Latency samples of one run.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    /// Per-operation latencies.
    pub lat: Vec<Duration>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Failed operations.
    pub errors: u64,
}

impl Samples {
    /// Operations per second.
    pub fn throughput(&self) -> f64 {
        self.lat.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A percentile (0..=100) of latency, in milliseconds.
    pub fn pct_ms(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return f64::NAN;
        }
        let mut v = self.lat.clone();
        v.sort();
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i.min(v.len() - 1)].as_secs_f64() * 1000.0
    }
}

/// Runs `op` from `callers` concurrent tasks for `secs`, collecting latencies.
pub async fn load<F, Fut>(callers: usize, secs: Duration, op: F) -> Samples
where
    F: Fn(usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let start = tokio::time::Instant::now();
    let deadline = start + secs;
    let mut tasks = Vec::new();
    for c in 0..callers {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = Samples::default();
            let mut i = 0u64;
            while tokio::time::Instant::now() < deadline {
                let t = tokio::time::Instant::now();
                if op(c, i).await {
                    s.lat.push(t.elapsed());
                } else {
                    s.errors += 1;
                }
                i += 1;
            }
            s
        }));
    }
    let mut all = Samples::default();
    for t in tasks {
        if let Ok(s) = t.await {
            all.lat.extend(s.lat);
            all.errors += s.errors;
        }
    }
    all.elapsed = start.elapsed();
    all
}

/// One line of the results table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub name: String,
    /// Our figure.
    pub ours: String,
    /// The reference figure.
    pub reference: String,
    /// ours / reference (or reference / ours for latencies), as the target states it.
    pub ratio: f64,
    /// The target, e.g. ">= 8.0".
    pub target: String,
    /// Whether the target is met.
    pub met: bool,
}

/// Prints the table.
pub fn print(rows: &[Row]) {
    println!();
    println!("| benchmark | aerodb | reference | ratio | target | met |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.2} | {} | {} |",
            r.name,
            r.ours,
            r.reference,
            r.ratio,
            r.target,
            if r.met { "yes" } else { "**no**" }
        );
    }
}
