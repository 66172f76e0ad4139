//! Issue 12, item 7: data at rest is private. Every file a node or a control plane creates for
//! its data is 0600 and every directory 0700 whatever the umask, and a start on a data or audit
//! directory that group or others can access is refused, naming the directory and the fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use aerodb::fsutil::{DIR_MODE, FILE_MODE};
use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use common::{Cluster, Spec, key, request_and_confirm};

fn one_node() -> Spec {
    Spec { nodes: 1, control_planes: 1, ..Default::default() }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every entry under `root` (itself included) whose mode is not exactly 0700 (directories) or
/// 0600 (files), as `(path, octal mode)`; and the files seen, relative to `root`.
fn modes_off(root: &Path) -> (Vec<(PathBuf, String)>, Vec<String>) {
    let mut wrong = Vec::new();
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let m = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            if m != DIR_MODE {
                wrong.push((p.clone(), format!("{m:04o}")));
            }
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else {
            if m != FILE_MODE {
                wrong.push((p.clone(), format!("{m:04o}")));
            }
            files.push(p.strip_prefix(root).unwrap().display().to_string());
        }
    }
    files.sort();
    (wrong, files)
}

/// Appends bytes too short to be a frame header: a torn tail, which the next start truncates
/// keeping a copy in `quarantine/`.
fn tear(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(&[0xAB, 0xCD, 0xEF]).unwrap();
    f.sync_all().unwrap();
}

/// The last `error:` line of a log (a log file collects every start of its process).
fn last_error(log: &str) -> &str {
    log.lines().rev().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("an error line: {log}"))
}

fn only_file_in(dir: &Path, prefix: &str) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    v.sort();
    v.pop().unwrap_or_else(|| panic!("no {prefix}* in {}", dir.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_at_rest_is_private_regardless_of_umask() {
    // The umask is process-wide: from here on this test process (which runs `node init`) and
    // every process it spawns (which inherit it) create with umask 000.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let mut c = Cluster::start(one_node()).await;
    let probe = c.root.path().join("umask-probe");
    std::fs::write(&probe, b"").unwrap();
    assert_eq!(mode(&probe), 0o666, "the test really runs with umask 000");

    // A write, an action, audited reads.
    let mut data = c.data(0);
    for i in 0..5u8 {
        data.put(kpb::PutRequest { key: vec![b'k', i], value: vec![i] }).await.unwrap();
    }
    let mut actor = c.actor(0);
    request_and_confirm(&mut actor, cpb::Command::RunDiagnostics, "n1", &key("diag")).await.unwrap();
    c.observer(0).get_cluster_state(cpb::GetClusterStateRequest {}).await.unwrap();

    // Torn tails in the WAL, the ledger and the audit log: the restarts keep copies in
    // quarantine directories, which must be private too.
    c.nodes[0].proc.kill();
    c.controls[0].proc.kill();
    let dd = c.nodes[0].cfg.data_dir.clone();
    let audit = c.controls[0].cfg.audit_dir.clone();
    tear(&only_file_in(&dd.join("wal"), "seg-"));
    tear(&dd.join("control.log"));
    tear(&only_file_in(&audit, "audit-"));
    c.restart_node(0, &[]).await;
    c.restart_control(0, &[]).await;
    c.observer(0).get_cluster_state(cpb::GetClusterStateRequest {}).await.unwrap();

    // Stop cleanly (the control plane seals the log with a checkpoint), then an offline
    // snapshot (a process of its own, umask 000 too).
    assert!(c.controls[0].proc.stop().unwrap().success(), "{}", c.logs());
    assert!(c.nodes[0].proc.stop().unwrap().success(), "{}", c.logs());
    let out = std::process::Command::new(common::aerodb_bin())
        .args(["node", "snapshot", "--data-dir", dd.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    nix::sys::stat::umask(old);

    let (wrong, files) = modes_off(&dd);
    assert_eq!(wrong, vec![], "every entry of the node's data dir is 0600/0700; files: {files:?}");
    for expected in ["ADDRESS", "LOCK", "control.log"] {
        assert!(files.iter().any(|f| f == expected), "{expected} in {files:?}");
    }
    for prefix in ["wal/seg-", "snapshots/snap-", "quarantine/control.log.torn-", "quarantine/seg-"] {
        assert!(files.iter().any(|f| f.starts_with(prefix)), "{prefix}* in {files:?}");
    }

    // The control plane's directory: ADDRESS beside the audit directory, and all of it.
    let control_dir = audit.parent().unwrap();
    let (wrong, files) = modes_off(control_dir);
    assert_eq!(wrong, vec![], "every entry of the control plane's dir is 0600/0700; files: {files:?}");
    for expected in ["ADDRESS", "audit/checkpoints.log", "audit/instance.key", "audit/instance.pub"] {
        assert!(files.iter().any(|f| f == expected), "{expected} in {files:?}");
    }
    for prefix in ["audit/audit-", "audit/quarantine/audit-"] {
        assert!(files.iter().any(|f| f.starts_with(prefix)), "{prefix}* in {files:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_refuses_to_start_on_a_data_dir_readable_by_others() {
    let mut c = Cluster::build(one_node()).await;
    let dd = c.nodes[0].cfg.data_dir.clone();
    assert_eq!(mode(&dd), DIR_MODE, "node init creates it private");
    for (dir, bad) in [(dd.clone(), 0o755), (dd.clone(), 0o701), (dd.join("wal"), 0o750)] {
        chmod(&dir, bad);
        let log = c.nodes[0].proc.start_expecting_refusal().await;
        let line = last_error(&log);
        assert!(line.contains(&format!("data directory {} has mode {bad:04o}", dir.display())), "{line}");
        assert!(line.contains(&format!("chmod 700 {}", dir.display())), "{line}");
        assert!(!dd.join("ADDRESS").exists(), "it never listened");
        chmod(&dir, 0o700);
    }
    // The same data dir, private again, starts.
    c.nodes[0].proc.start();
    c.wait_node_ready(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_refuses_to_start_on_an_audit_dir_readable_by_others() {
    let mut c = Cluster::build(one_node()).await;
    let audit = c.controls[0].cfg.audit_dir.clone();
    std::fs::create_dir_all(&audit).unwrap();
    chmod(&audit, 0o755);
    let log = c.controls[0].proc.start_expecting_refusal().await;
    let line = last_error(&log);
    assert!(line.contains(&format!("data directory {} has mode 0755", audit.display())), "{line}");
    assert!(line.contains(&format!("chmod 700 {}", audit.display())), "{line}");
    assert_eq!(std::fs::read_dir(&audit).unwrap().count(), 0, "nothing was written in it");
    assert!(!audit.parent().unwrap().join("ADDRESS").exists(), "it never listened");

    // Private again, it starts and records the trail there.
    chmod(&audit, 0o700);
    c.nodes[0].proc.start();
    c.controls[0].proc.start();
    c.wait_node_ready(0).await;
    c.wait_control_ready(0).await;
    assert!(std::fs::read_dir(&audit).unwrap().count() > 0);
}
