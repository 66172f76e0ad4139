//! Checks over durable state and reported facts: one primary per epoch across ledgers, WALs and
//! snapshot manifests; the decided records of a ledger; which candidate's log is most up to date
//! once no log can grow.

use aerodb::proto::kernel as kpb;

use crate::cluster::Cluster;
use crate::wait::{WAIT, wait_for};

/// The checker run over every replication scenario: for each epoch at most one node ever acted
/// as primary (by the ledgers' promotions and the EpochStart entries of the WALs and of the
/// snapshots' manifests), and the logs agree on who started each epoch.
pub fn check_single_writer_per_epoch(c: &Cluster) {
    use aerodb::kernel::records::{ActionResult, Decision, LedgerEvent};
    let mut leaders: std::collections::BTreeMap<u64, std::collections::BTreeSet<String>> = Default::default();
    for (i, n) in c.nodes.iter().enumerate() {
        for r in c.ledger(i) {
            match &r.body {
                LedgerEvent::Genesis { primary: true, .. } => {
                    leaders.entry(1).or_default().insert(n.id.clone());
                }
                LedgerEvent::Decided(d) => {
                    if let Decision::Executed { result: ActionResult::Promotion { epoch, .. } } = &d.decision {
                        leaders.entry(*epoch).or_default().insert(n.id.clone());
                    }
                }
                _ => {}
            }
        }
        for e in aerodb::kernel::wal::read_dir(&n.cfg.data_dir.join("wal")).expect("wal readable") {
            if e.kind == aerodb::kernel::entry::Kind::EpochStart {
                leaders.entry(e.epoch).or_default().insert(String::from_utf8_lossy(&e.payload).into_owned());
            }
        }
        // EpochStarts compacted out of the WAL live on in the snapshots' manifests.
        for d in aerodb::kernel::snapshot::list(&n.cfg.data_dir.join("snapshots")) {
            if let Ok(m) = aerodb::kernel::snapshot::read_manifest(&d) {
                for mark in m.epoch_starts {
                    leaders.entry(mark.epoch).or_default().insert(mark.primary);
                }
            }
        }
    }
    for (epoch, nodes) in &leaders {
        assert!(nodes.len() <= 1, "epoch {epoch} had more than one primary: {nodes:?}");
    }
}

/// Executed, decided records of a ledger.
pub fn decided(records: &[aerodb::kernel::records::Record]) -> Vec<aerodb::kernel::records::Decided> {
    records
        .iter()
        .filter_map(|r| match &r.body {
            aerodb::kernel::records::LedgerEvent::Decided(d) => Some((**d).clone()),
            _ => None,
        })
        .collect()
}

/// Of `candidates`, the node whose log is most up to date (last epoch, then last index), once
/// their logs can no longer grow: what an operator reads off the facts before forcing a
/// promotion. A node appends only what it pulls from the node it follows
/// (`ReplicationView.following`); a candidate's log is final when it follows nobody, or follows
/// a node that is not a primary (a demoted or halted node appends nothing) and holds all of that
/// node's log. The signal is that state, not time.
pub async fn most_up_to_date(c: &Cluster, candidates: &[usize]) -> usize {
    wait_for("every candidate's log is final (it follows no node that can still grow)", WAIT, || async {
        for &i in candidates {
            let r = c.observe(i).await?.replication?;
            if r.following.is_empty() {
                continue;
            }
            let source = c.nodes.iter().position(|n| n.id == r.following)?;
            let s = c.observe(source).await?;
            let final_source = s.authority?.role != kpb::Role::Primary as i32;
            let sr = s.replication?;
            if !final_source || (sr.last_epoch, sr.last_index) != (r.last_epoch, r.last_index) {
                return None;
            }
        }
        Some(())
    })
    .await;
    let mut best = candidates[0];
    let mut best_pos = (0, 0);
    for &i in candidates {
        let r = c.observe(i).await.and_then(|s| s.replication).expect("observable");
        if (r.last_epoch, r.last_index) > best_pos {
            best_pos = (r.last_epoch, r.last_index);
            best = i;
        }
    }
    best
}
