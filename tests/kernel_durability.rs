//! Issue 3: no acknowledged write is lost across SIGKILLs under concurrent load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aerodb::proto::kernel as kpb;
use common::{Cluster, Rng, Spec, WAIT, scan_all, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_s1_no_acknowledged_put_is_lost_across_50_sigkills_under_concurrent_writes() {
    let mut c = Cluster::start(Spec { nodes: 1, control_planes: 0, ..Default::default() }).await;
    let mut rng = Rng::from_env("sigkill_50");
    let acked: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>> = Arc::new(Mutex::new(BTreeMap::new()));
    for round in 0..50u32 {
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..8u32 {
            let mut data = c.data(0);
            let acked = acked.clone();
            let stop = stop.clone();
            writers.push(tokio::spawn(async move {
                let mut i = 0u32;
                while !stop.load(Ordering::SeqCst) && i < 10_000 {
                    let key = format!("r{round:02}-w{w}-{i:05}").into_bytes();
                    let value = format!("v{round}.{w}.{i}").into_bytes();
                    match data.put(kpb::PutRequest { key: key.clone(), value: value.clone() }).await {
                        Ok(_) => {
                            acked.lock().unwrap().insert(key, value);
                        }
                        Err(_) => return,
                    }
                    i += 1;
                }
            }));
        }
        let before = acked.lock().unwrap().len();
        let want = before + 5 + rng.below(60) as usize;
        wait_for("writers get acknowledgements", WAIT, || {
            let n = acked.lock().unwrap().len();
            async move { (n >= want).then_some(()) }
        })
        .await;
        // SIGKILL while writes are in flight.
        c.nodes[0].proc.kill();
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            let _ = w.await;
        }
        c.restart_node(0, &[]).await;
        c.wait_replicated(WAIT).await;
        let present = scan_all(&c, 0).await;
        let acked_now = acked.lock().unwrap().clone();
        for (k, v) in &acked_now {
            assert_eq!(present.get(k), Some(v), "round {round}: acknowledged key {} lost", String::from_utf8_lossy(k));
        }
    }
    let total = acked.lock().unwrap().len();
    assert!(total >= 50 * 5, "{total} acknowledged writes checked");
}
