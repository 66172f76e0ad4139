//! Load and its check: writers that record every acknowledged write, a scan of what a node
//! serves, the check that nothing acknowledged is missing, and the seeded generator of
//! randomized tests.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aerodb::proto::kernel as kpb;

use crate::cluster::Cluster;
use crate::wait::{WAIT, wait_for};

/// Writers that put unique keys to whatever node `target` names, recording acknowledgements.
pub struct Load {
    /// Every acknowledged write, key to value.
    pub acked: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
    /// The node the writers send to (change it to follow a new primary).
    pub target: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `writers` concurrent writers against node `target` (changeable), bounded to `max_each`.
    pub fn start(c: &Cluster, target: usize, writers: usize, max_each: u32) -> Self {
        let acked: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>> = Default::default();
        let stop = Arc::new(AtomicBool::new(false));
        let target = Arc::new(Mutex::new(target));
        let clients: Vec<_> = (0..c.nodes.len()).map(|i| c.data(i)).collect();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (acked, stop, target, clients) = (acked.clone(), stop.clone(), target.clone(), clients.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) && i < max_each {
                    let t = *target.lock().unwrap();
                    let mut d = clients[t].clone();
                    let key = format!("load-w{w}-{i:06}").into_bytes();
                    let value = format!("{w}.{i}").into_bytes();
                    let r = tokio::time::timeout(
                        Duration::from_secs(8),
                        d.put(kpb::PutRequest { key: key.clone(), value: value.clone() }),
                    )
                    .await;
                    if let Ok(Ok(_)) = r {
                        acked.lock().unwrap().insert(key, value);
                    } else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    i += 1;
                }
            }));
        }
        Self { acked, target, stop, tasks }
    }

    /// Writes acknowledged so far.
    pub fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits (bounded) until at least `n` writes were acknowledged.
    pub async fn wait_acks(&self, n: usize) {
        let acked = self.acked.clone();
        wait_for(&format!("{n} acknowledged writes"), WAIT, || {
            let have = acked.lock().unwrap().len();
            async move { (have >= n).then_some(()) }
        })
        .await
    }

    /// Stops the writers, waits for them, and returns every acknowledged write.
    pub async fn stop(self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        self.acked.lock().unwrap().clone()
    }
}

/// Every key-value pair node `i` serves (it must be the primary), by paging through Scan.
pub async fn scan_all(c: &Cluster, i: usize) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut data = c.data(i);
    let mut out = BTreeMap::new();
    let mut start = Vec::new();
    loop {
        let r = data
            .scan(kpb::ScanRequest { start_key: start.clone(), end_key: vec![], limit: 1000 })
            .await
            .expect("scan")
            .into_inner();
        for kv in &r.entries {
            out.insert(kv.key.clone(), kv.value.clone());
        }
        match (r.more, r.entries.last()) {
            (true, Some(last)) => {
                start = last.key.clone();
                start.push(0);
            }
            _ => return out,
        }
    }
}

/// Asserts every acknowledged write is served by node `i` (the current primary).
pub async fn assert_all_present(c: &Cluster, i: usize, acked: &BTreeMap<Vec<u8>, Vec<u8>>, what: &str) {
    let present = scan_all(c, i).await;
    let missing: Vec<String> = acked
        .iter()
        .filter(|(k, v)| present.get(*k) != Some(*v))
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: {} acknowledged writes missing on {}, e.g. {missing:?}",
        missing.len(),
        c.nodes[i].id
    );
}

/// A small deterministic generator for seeded randomized tests (the seed is printed).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// From `AERODB_SEED` if set, else from the OS; prints the seed so a failure can be rerun.
    pub fn from_env(test: &str) -> Self {
        let seed = std::env::var("AERODB_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).expect("OS entropy");
            u64::from_le_bytes(b)
        });
        eprintln!("{test}: seed {seed} (rerun with AERODB_SEED={seed})");
        Self(seed | 1)
    }

    /// The next value of the xorshift64* sequence (the same for the same seed).
    pub fn next_u64(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
