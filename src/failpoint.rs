//! Named fail points, compiled in only with the cargo feature `failpoints`.
//!
//! `AERODB_FAILPOINTS="name=action,..."` arms points in a process. Actions: `abort` (the process
//! dies at once, as under SIGKILL: no destructor, no flush), `exit` (exit code 86), `panic`,
//! `sleep(MS)`. `name=abort@N` fires on the N-th hit only. Without the feature, [`hit`] compiles
//! to nothing, and [`size_limit`] is its default.

/// Passes through the named point, doing what `AERODB_FAILPOINTS` says for it.
#[inline]
pub fn hit(name: &'static str) {
    #[cfg(feature = "failpoints")]
    imp::hit(name);
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Like [`hit`], for async code: a `sleep(MS)` action sleeps on the runtime's timer instead of
/// blocking a worker thread (which would stall every task queued behind it).
pub async fn hit_async(name: &'static str) {
    #[cfg(feature = "failpoints")]
    match imp::sleep_ms(name) {
        // A sleep point: counted once here, whether or not this hit fires.
        Some(Some(ms)) => {
            eprintln!("failpoint {name}: Sleep({ms}) (async)");
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        Some(None) => {}
        None => hit(name),
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// A size limit, or (only with the `failpoints` feature) the number in the environment variable
/// `var` when it is set to one: tests shrink WAL and audit segments this way so that a bounded
/// test rolls segments (and a power cut can land on a roll). Release builds always use `default`.
pub fn size_limit(var: &'static str, default: u64) -> u64 {
    #[cfg(feature = "failpoints")]
    {
        // The environment is read once per variable; the default is the caller's each time
        // (several logs with different configured sizes may live in one process).
        type Seen = Vec<(&'static str, Option<u64>)>;
        static CACHE: std::sync::OnceLock<std::sync::Mutex<Seen>> = std::sync::OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, v)) = cache.iter().find(|(k, _)| *k == var) {
            return v.unwrap_or(default);
        }
        let v = std::env::var(var).ok().and_then(|s| s.parse().ok()).filter(|v| *v > 0);
        cache.push((var, v));
        v.unwrap_or(default)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = var;
        default
    }
}

/// Whether a point is armed (for points that act rather than stop, e.g. a torn write).
#[inline]
pub fn armed(name: &'static str) -> bool {
    #[cfg(feature = "failpoints")]
    return imp::armed(name);
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        false
    }
}

#[cfg(feature = "failpoints")]
mod imp {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock};

    #[derive(Debug, Clone)]
    enum Action {
        Abort,
        Exit,
        Panic,
        Sleep(u64),
    }

    #[derive(Debug)]
    struct Point {
        action: Action,
        on_hit: Option<u64>,
        hits: AtomicU64,
    }

    fn points() -> &'static Mutex<HashMap<String, std::sync::Arc<Point>>> {
        static POINTS: OnceLock<Mutex<HashMap<String, std::sync::Arc<Point>>>> = OnceLock::new();
        POINTS.get_or_init(|| {
            let mut map = HashMap::new();
            let spec = std::env::var("AERODB_FAILPOINTS").unwrap_or_default();
            for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let Some((name, action)) = item.split_once('=') else { continue };
                let (action, on_hit) = match action.split_once('@') {
                    Some((a, n)) => (a, n.parse::<u64>().ok()),
                    None => (action, None),
                };
                let action = match action {
                    "abort" => Action::Abort,
                    "exit" => Action::Exit,
                    "panic" => Action::Panic,
                    other => match other.strip_prefix("sleep(").and_then(|s| s.strip_suffix(')')) {
                        Some(ms) => Action::Sleep(ms.parse().unwrap_or(0)),
                        None => continue,
                    },
                };
                map.insert(name.to_string(), std::sync::Arc::new(Point { action, on_hit, hits: AtomicU64::new(0) }));
            }
            Mutex::new(map)
        })
    }

    fn lookup(name: &str) -> Option<std::sync::Arc<Point>> {
        points().lock().ok()?.get(name).cloned()
    }

    pub fn armed(name: &'static str) -> bool {
        lookup(name).is_some_and(|p| {
            let n = p.hits.fetch_add(1, Ordering::SeqCst) + 1;
            p.on_hit.is_none_or(|want| want == n)
        })
    }

    /// For a point armed with `sleep(MS)`: counts the hit and says whether it fires now
    /// (`Some(Some(MS))`) or not (`Some(None)`). `None` for any other point, uncounted.
    pub fn sleep_ms(name: &'static str) -> Option<Option<u64>> {
        let p = lookup(name)?;
        let Action::Sleep(ms) = p.action else { return None };
        let n = p.hits.fetch_add(1, Ordering::SeqCst) + 1;
        Some(p.on_hit.is_none_or(|want| want == n).then_some(ms))
    }

    pub fn hit(name: &'static str) {
        let Some(p) = lookup(name) else { return };
        let n = p.hits.fetch_add(1, Ordering::SeqCst) + 1;
        if p.on_hit.is_some_and(|want| want != n) {
            return;
        }
        eprintln!("failpoint {name}: {:?}", p.action);
        match p.action {
            Action::Abort => std::process::abort(),
            Action::Exit => std::process::exit(86),
            Action::Panic => panic!("failpoint {name}"),
            Action::Sleep(ms) => std::thread::sleep(std::time::Duration::from_millis(ms)),
        }
    }
}
