//! Issue 4: offline snapshots used at recovery (a corrupt one skipped and named), and the
//! read-only diagnostics action (cost declared first, corruption found, nothing changed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use aerodb::kernel::records::ActionKind;
use aerodb::proto::kernel as kpb;
use common::{Cluster, Spec, WAIT, kernel_execute, scan_all, verdict, wait_for};

fn snapshot(c: &Cluster, i: usize) -> String {
    let out = std::process::Command::new(common::aerodb_bin())
        .args(["node", "snapshot", "--data-dir", c.nodes[i].cfg.data_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn put_range(c: &Cluster, from: u32, to: u32) {
    let mut d = c.data(0);
    for i in from..to {
        d.put(kpb::PutRequest { key: format!("k{i:04}").into_bytes(), value: format!("v{i}").into_bytes() })
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_uses_the_newest_valid_snapshot_plus_the_wal_tail_and_skips_a_corrupt_one() {
    let mut c = Cluster::start(Spec { nodes: 1, control_planes: 0, ..Default::default() }).await;
    put_range(&c, 0, 50).await;
    // A snapshot needs the node stopped: it takes the data dir lock.
    let refused = std::process::Command::new(common::aerodb_bin())
        .args(["node", "snapshot", "--data-dir", c.nodes[0].cfg.data_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "a running node's data dir is locked");
    c.nodes[0].proc.stop();
    let first = snapshot(&c, 0);
    c.restart_node(0, &[]).await;
    put_range(&c, 50, 80).await;
    c.nodes[0].proc.stop();
    let second = snapshot(&c, 0);
    assert_ne!(first, second);
    // Corrupt the newest snapshot's data.
    let snaps = c.nodes[0].cfg.data_dir.join("snapshots");
    let mut dirs: Vec<_> = std::fs::read_dir(&snaps).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    let newest = dirs.last().unwrap().clone();
    let data = newest.join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    c.restart_node(0, &[]).await;
    put_range(&c, 80, 90).await;
    let log = c.nodes[0].proc.log_text();
    let newest_name = newest.file_name().unwrap().to_string_lossy().to_string();
    assert!(log.contains("skipped an unusable snapshot") && log.contains(&newest_name), "{log}");
    let s = c.observe(0).await.unwrap();
    let infos = s.snapshots.unwrap().snapshots;
    assert_eq!(infos.len(), 2);
    assert!(!infos[0].valid && infos[0].name == newest_name && infos[0].error.contains("CRC"), "{:?}", infos[0]);
    assert!(infos[1].valid && infos[1].used_at_recovery, "{:?}", infos[1]);
    let all = scan_all(&c, 0).await;
    assert_eq!(all.len(), 90, "snapshot + WAL tail + new writes");
    for i in 0..90u32 {
        assert_eq!(all.get(format!("k{i:04}").as_bytes()), Some(&format!("v{i}").into_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_s1_diagnostics_declare_their_cost_read_exactly_it_and_change_nothing_but_their_record() {
    let c = Cluster::start(Spec::default()).await;
    put_range(&c, 0, 40).await;
    c.wait_replicated(WAIT).await;
    let before = c.observe(1).await.unwrap();
    let declared = before.diagnostics_cost_bytes;
    let r = kernel_execute(&c, 1, ActionKind::Diagnostics, false).await;
    assert_eq!(verdict(&r), Ok(()));
    let Some(kpb::action_result::Result::Diagnostics(d)) = r.record.unwrap().result.unwrap().result else { panic!() };
    assert!(d.wal_ok && d.ledger_ok, "{d:?}");
    assert_eq!(d.declared_cost_bytes, declared);
    assert_eq!(d.wal_bytes_read + d.ledger_bytes_read, declared, "it read exactly what it declared");
    assert_eq!(d.wal_records_checked, before.replication.as_ref().unwrap().last_index);
    let after = c.observe(1).await.unwrap();
    assert_eq!(after.replication.unwrap().last_index, before.replication.unwrap().last_index, "the WAL is unchanged");
    assert_eq!(
        after.observation.unwrap().control_seq,
        before.observation.unwrap().control_seq + 1,
        "only its own record"
    );
    assert_eq!(after.authority.unwrap().role, kpb::Role::Replica as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_find_corruption_on_disk_and_name_file_and_offset() {
    let c = Cluster::start(Spec { nodes: 1, control_planes: 0, ..Default::default() }).await;
    put_range(&c, 0, 30).await;
    let seg = c.nodes[0].cfg.data_dir.join("wal").join("seg-00000000000000000001.wal");
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let r = kernel_execute(&c, 0, ActionKind::Diagnostics, false).await;
    let Some(kpb::action_result::Result::Diagnostics(d)) = r.record.unwrap().result.unwrap().result else { panic!() };
    assert!(!d.wal_ok);
    assert!(d.ledger_ok);
    assert!(
        d.first_problem.contains("seg-00000000000000000001.wal") && d.first_problem.contains("byte offset"),
        "{}",
        d.first_problem
    );
    wait_for("the node still answers", WAIT, || async { c.observe(0).await.map(|_| ()) }).await;
}
