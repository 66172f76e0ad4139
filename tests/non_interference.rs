//! P7-S2: the same kernel workload gives the same kernel state and ledgers with the control
//! plane absent, idle, and under continuous inspection load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aerodb::kernel::records::ActionKind;
use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use common::{Cluster, Spec, WAIT, control_seq, exec_req, scan_all, wait_for};

/// What the kernel holds at the end: per node, every WAL entry's hash chain head, the ledger
/// bodies, and the key-value map of the primary.
#[derive(Debug, PartialEq, Eq)]
struct KernelState {
    wal_heads: Vec<(u64, [u8; 32])>,
    ledgers: Vec<Vec<aerodb::kernel::records::LedgerEvent>>,
    kv: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A ledger body without what differs between runs by design: each run's cluster has its own
/// PKI (certificate fingerprints), an intent names its own expiry time, and ECDSA signatures are
/// randomized. Everything the kernel decided stays compared.
fn without_signatures(body: aerodb::kernel::records::LedgerEvent) -> aerodb::kernel::records::LedgerEvent {
    match body {
        aerodb::kernel::records::LedgerEvent::Decided(mut d) => {
            d.intent.clear();
            d.signatures.clear();
            d.requester.cert_sha256.clear();
            d.request_digest.clear();
            aerodb::kernel::records::LedgerEvent::Decided(d)
        }
        other => other,
    }
}

async fn execute(c: &Cluster, i: usize, kind: ActionKind, key: &str) {
    let seq = control_seq(c, i).await;
    let r = c
        .kernel(i)
        .execute(common::with_plan_epoch(c, exec_req(key, kind, &c.nodes[i].id, false, seq, "workload")).await)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(common::verdict(&r), Ok(()), "{r:?}");
}

/// The fixed workload: sequential writes, a switchover n1 → n2, more writes.
async fn workload(c: &Cluster) -> KernelState {
    let mut d = c.data(0);
    for i in 0..60u32 {
        d.put(kpb::PutRequest { key: format!("a{i:03}").into_bytes(), value: vec![i as u8; 32] }).await.unwrap();
    }
    d.delete(kpb::DeleteRequest { key: b"a007".to_vec() }).await.unwrap();
    c.wait_replicated(WAIT).await;
    execute(c, 0, ActionKind::Demote, "ni-demote").await;
    wait_for("n2 has the Fence", WAIT, || async { c.observe(1).await?.promotion?.current_epoch_fenced.then_some(()) })
        .await;
    wait_for("n3 has the Fence", WAIT, || async { c.observe(2).await?.promotion?.current_epoch_fenced.then_some(()) })
        .await;
    execute(c, 1, ActionKind::Promote, "ni-promote").await;
    c.wait_role(1, kpb::Role::Primary).await;
    let mut d = c.data(1);
    for i in 0..40u32 {
        d.put(kpb::PutRequest { key: format!("b{i:03}").into_bytes(), value: vec![i as u8; 16] }).await.unwrap();
    }
    c.wait_replicated(WAIT).await;
    let mut wal_heads = Vec::new();
    let mut ledgers = Vec::new();
    for i in 0..3 {
        let entries = aerodb::kernel::wal::read_dir(&c.nodes[i].cfg.data_dir.join("wal")).unwrap();
        let last = entries.last().unwrap();
        wal_heads.push((last.index, last.hash()));
        ledgers.push(c.ledger(i).into_iter().map(|r| without_signatures(r.body)).collect());
    }
    KernelState { wal_heads, ledgers, kv: scan_all(c, 1).await }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_s2_kernel_state_is_identical_with_the_control_plane_absent_idle_and_under_inspection_load() {
    let absent = workload(&Cluster::start(Spec { control_planes: 0, ..Default::default() }).await).await;
    let idle = {
        let c = Cluster::start(Spec::default()).await;
        let s = workload(&c).await;
        assert_eq!(common::execute_calls(&c).await, vec![1, 1, 0], "the idle control plane called nothing");
        s
    };
    let loaded = {
        let c = Cluster::start(Spec::default()).await;
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for t in 0..4 {
            let (mut o, stop, reads) = (c.observer(0), stop.clone(), reads.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let ok = match t % 4 {
                        0 => o.get_cluster_state(cpb::GetClusterStateRequest {}).await.is_ok(),
                        1 => o.get_replication_status(cpb::GetReplicationStatusRequest {}).await.is_ok(),
                        2 => o.inspect_wal(cpb::InspectWalRequest::default()).await.is_ok(),
                        _ => o.get_promotion_state(cpb::GetPromotionStateRequest {}).await.is_ok(),
                    };
                    if ok {
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        let s = workload(&c).await;
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.unwrap();
        }
        let n = reads.load(Ordering::Relaxed);
        assert!(n > 50, "the inspection load ran ({n} reads)");
        assert_eq!(common::execute_calls(&c).await, vec![1, 1, 0], "inspections called no Execute");
        s
    };
    assert_eq!(absent, idle, "control plane idle");
    assert_eq!(absent, loaded, "control plane under inspection load");
    assert_eq!(absent.kv.len(), 99);
    let _ = Duration::ZERO;
}
