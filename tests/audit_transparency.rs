//! Issue 19: the audit trail as a transparency log. Every Actor answer carries a signed
//! checkpoint covering its own record; whoever holds one detects a cut, a rewrite or a fork,
//! with the first bad leaf named; proofs from a live control plane verify in an independent
//! Python RFC 6962 checker; a crash at any point of append, tree update or checkpoint recovers
//! by the decision table with nothing lost and nothing synthesized.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::path::Path;

use aerodb::audit::checkpoint::{self, Checkpoint};
use aerodb::audit::record::{Draft, Stage};
use aerodb::audit::{chain, merkle, tree, verify};
use aerodb::proto::control as cpb;
use aerodb::tls::identity::Role;
use common::{Cluster, Spec, key, python};
use ed25519_dalek::VerifyingKey;

fn public_key(dir: &Path) -> VerifyingKey {
    checkpoint::public_key_from_hex(&std::fs::read_to_string(dir.join(checkpoint::PUB_FILE)).unwrap()).unwrap()
}

/// The seq of the record of `stage` for `correlation`.
fn seq_of(dir: &Path, correlation: &str, stage: Stage) -> u64 {
    let mut found = None;
    verify::read_from(dir, 1, |s| {
        let b = s.body().unwrap();
        if b.draft.correlation_id == correlation && b.draft.stage == stage {
            found = Some(s.seq);
        }
        true
    })
    .unwrap();
    found.unwrap_or_else(|| panic!("no {stage:?} record for {correlation}"))
}

/// The note verifies with the instance key, covers `seq`, and its root is the root of the
/// directory's records at its size (recomputed from the records, not from the tree file).
fn assert_covers(dir: &Path, note: &str, seq: u64, what: &str) -> Checkpoint {
    let cp = Checkpoint::verify(note, &public_key(dir)).unwrap_or_else(|e| panic!("{what}: {e}: {note}"));
    assert!(cp.size >= seq, "{what}: the checkpoint (size {}) covers its record (seq {seq})", cp.size);
    let mut f = merkle::Frontier::new();
    verify::read_from(dir, 1, |s| {
        f.push(s.leaf_hash, |_| {});
        f.size() < cp.size
    })
    .unwrap();
    assert_eq!(f.size(), cp.size);
    assert_eq!(f.root(), cp.root, "{what}: the signed root is the records' root");
    cp
}

fn note_of_error(s: &tonic::Status) -> String {
    let v = s.metadata().get_bin("aerodb-audit-checkpoint-bin").expect("an error answer carries the checkpoint");
    String::from_utf8(v.to_bytes().unwrap().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_o3_every_actor_answer_carries_a_signed_checkpoint_covering_its_own_record() {
    let c = Cluster::start(Spec::default()).await;
    let dir = c.controls[0].cfg.audit_dir.clone();
    let mut actor = c.actor(0);
    let ask = |k: String| cpb::RequestActionRequest {
        command: cpb::Command::RunDiagnostics as i32,
        target_node: "n2".into(),
        idempotency_key: k,
    };
    // RequestAction: the pending action's `confirmation_requested` record.
    let k = key("cp");
    let r = actor.request_action(ask(k.clone())).await.unwrap().into_inner();
    let Some(cpb::request_action_response::Response::Pending(p)) = r.response.clone() else { panic!("{r:?}") };
    assert_covers(&dir, &r.audit_checkpoint, seq_of(&dir, &p.correlation_id, Stage::ConfirmationRequested), "pending");
    // ConfirmAction: the `executed` record.
    let done = common::confirm_pending(&mut actor, &p).await.unwrap();
    assert_covers(&dir, &done.audit_checkpoint, seq_of(&dir, &p.correlation_id, Stage::Executed), "executed");
    // RequestAction of a decided key: the `replayed` record.
    let r = actor.request_action(ask(k.clone())).await.unwrap().into_inner();
    let Some(cpb::request_action_response::Response::Replayed(rp)) = r.response.clone() else { panic!("{r:?}") };
    assert_covers(&dir, &r.audit_checkpoint, seq_of(&dir, &rp.correlation_id, Stage::Replayed), "replayed");
    // DeclineAction: the `declined` record.
    let r = actor.request_action(ask(key("decline"))).await.unwrap().into_inner();
    let Some(cpb::request_action_response::Response::Pending(p)) = r.response else { panic!() };
    let d = actor
        .decline_action(cpb::DeclineActionRequest { confirmation_id: p.confirmation_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_covers(&dir, &d.audit_checkpoint, seq_of(&dir, &p.correlation_id, Stage::Declined), "declined");
    // A refused confirmation (wrong typed target): the `rejected` record, on the error answer.
    let r = actor.request_action(ask(key("reject"))).await.unwrap().into_inner();
    let Some(cpb::request_action_response::Response::Pending(p)) = r.response else { panic!() };
    let e = actor
        .confirm_action(cpb::ConfirmActionRequest {
            confirmation_id: p.confirmation_id.clone(),
            plan_digest: p.plan_digest.clone(),
            typed_target: "n3".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(common::wire(&e).code, "PHASE7_CONFIRMATION_TARGET_MISMATCH");
    assert_covers(&dir, &note_of_error(&e), seq_of(&dir, &p.correlation_id, Stage::Rejected), "rejected");
}

/// Runs `aerodbctl audit verify DIR --checkpoint NOTE`; returns (exit code, stdout).
fn verify_with(dir: &Path, note: &Path) -> (i32, String) {
    let out = std::process::Command::new(common::aerodbctl_bin())
        .args(["audit", "verify", dir.to_str().unwrap(), "--checkpoint", note.to_str().unwrap()])
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// (offset, seq, payload) of every record of a one-segment log.
fn frames(seg: &Path) -> Vec<(u64, u64, Vec<u8>)> {
    let mut r = aerodb::frame::Reader::open(seg, verify::MAGIC, 1 << 20, true).unwrap();
    let mut out = Vec::new();
    while let Some((off, p)) = r.next_frame().unwrap() {
        out.push((off, chain::split(&p).unwrap().1, p));
    }
    out
}

/// What someone who controls the host does to hide a cut: the segment ends after `keep`
/// records, and the tree file and every checkpoint past it go too.
fn cut_to(dir: &Path, seg: &Path, keep: u64) {
    let fr = frames(seg);
    let at = fr.iter().find(|f| f.1 == keep + 1).map(|f| f.0).unwrap_or_else(|| std::fs::metadata(seg).unwrap().len());
    std::fs::OpenOptions::new().write(true).open(seg).unwrap().set_len(at).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(tree::TREE_FILE))
        .unwrap()
        .set_len(tree::file_len(keep))
        .unwrap();
    keep_checkpoints_below(dir, keep + 1);
}

/// Removes every checkpoint of size `>= size`.
fn keep_checkpoints_below(dir: &Path, size: u64) {
    let kept: Vec<(Checkpoint, checkpoint::Position)> = checkpoint::read_all(dir)
        .unwrap()
        .into_iter()
        .map(|(_, c, at)| (c, at))
        .filter(|(c, _)| c.size < size)
        .collect();
    let path = dir.join(checkpoint::CHECKPOINTS_FILE);
    let mut out = aerodb::frame::header(checkpoint::MAGIC, 0).to_vec();
    for (c, at) in kept {
        let mut payload = at.0.to_le_bytes().to_vec();
        payload.extend_from_slice(&at.1.to_le_bytes());
        payload.extend_from_slice(c.note.as_bytes());
        out.extend_from_slice(&aerodb::frame::encode(&payload));
    }
    std::fs::write(path, out).unwrap();
}

/// Rewrites record `seq` (the newest) with another body and recomputes its chain hash; with
/// `rebuild_tree`, also recomputes the whole tree file from the records.
fn rewrite_newest(dir: &Path, seg: &Path, seq: u64, rebuild_tree: bool) {
    let fr = frames(seg);
    let (off, s, payload) = fr.iter().find(|f| f.1 == seq).cloned().unwrap();
    assert_eq!(s, seq);
    assert_eq!(fr.last().unwrap().1, seq, "the newest record");
    let (prev, _, body) = chain::split(&payload).unwrap();
    let forged = String::from_utf8_lossy(body).replace("\"stage\":\"", "\"stage\":\"x");
    let mut b = std::fs::read(seg).unwrap();
    b.truncate(off as usize);
    b.extend_from_slice(&aerodb::frame::encode(&chain::payload(&prev, seq, forged.as_bytes())));
    std::fs::write(seg, b).unwrap();
    if rebuild_tree {
        std::fs::remove_file(dir.join(tree::TREE_FILE)).unwrap();
        let mut t = tree::TreeWriter::open_at(dir, 0).unwrap();
        verify::read_from(dir, 1, |s| {
            t.push(s.leaf_hash);
            true
        })
        .unwrap();
        t.sync().unwrap();
    }
}

/// Appends `n` read records to control plane 0's log while it is stopped (the same instance and
/// key), so the log is long without a thousand calls.
async fn grow_offline(c: &Cluster, n: u64) {
    let cfg = &c.controls[0].cfg;
    let log = aerodb::audit::log::AuditLog::open(aerodb::audit::log::AuditOptions {
        dir: cfg.audit_dir.clone(),
        instance_id: cfg.instance_id.clone(),
        checkpoint_every: 1_000_000,
        checkpoint_interval_ms: 3_600_000,
        segment_bytes_max: aerodb::audit::log::SEGMENT_BYTES_MAX,
        clock: aerodb::clock::SystemClock::shared(),
    })
    .unwrap();
    for i in 0..n {
        log.append_best_effort(Draft::new(Stage::Read, format!("grow{i}"), "inspect_node")).await.unwrap();
    }
    log.checkpoint().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_o3_a_checkpoint_from_an_actor_answer_detects_every_cut_rewrite_and_fork_naming_the_first_bad_leaf() {
    let mut c = Cluster::start(Spec::default()).await;
    c.controls[0].proc.stop();
    grow_offline(&c, 1200).await;
    c.restart_control(0, &[]).await;
    let dir = c.controls[0].cfg.audit_dir.clone();
    let mut actor = c.actor(0);
    let done = common::request_and_confirm(&mut actor, cpb::Command::RunDiagnostics, "n2", &key("held")).await.unwrap();
    let held = Checkpoint::verify(&done.audit_checkpoint, &public_key(&dir)).unwrap();
    let n = held.size;
    assert!(n > 1200, "the held checkpoint covers the long log: {n}");
    assert_eq!(seq_of(&dir, &done.correlation_id, Stage::Executed), n, "it covers exactly its outcome record");
    let note = c.root.path().join("held.note");
    std::fs::write(&note, &held.note).unwrap();
    // A client that keeps what it was given: the store starts from the answer's checkpoint, and a
    // fresh checkpoint from the untouched log is consistent with it.
    let state = c.root.path().join("client-state");
    let offered = cpb::SignedCheckpoint {
        tree_size: n,
        root_hash: hex::encode(held.root),
        origin: held.origin.clone(),
        public_key: hex::encode(public_key(&dir).to_bytes()),
        note: held.note.clone(),
    };
    aerodb::cli::ctl::seen::accept(&state, &offered, None).unwrap();
    let profile = c.pki.profile(Role::Auditor, &c.controls[0].addr);
    let prove = move |state: std::path::PathBuf| {
        let profile = profile.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(common::aerodbctl_bin())
                .args(["--profile", profile.to_str().unwrap(), "audit", "prove", "--seq", &n.to_string()])
                .args(["--state-dir", state.to_str().unwrap()])
                .output()
                .unwrap()
        })
    };
    let out = prove(state.clone()).await.unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("OK: record seq {n} ")));
    c.controls[0].proc.stop();
    let (code, out) = verify_with(&dir, &note);
    assert_eq!(code, 0, "the untouched log holds the held tree as a prefix: {out}");
    let seg = verify::segments(&dir).unwrap()[0].1.clone();
    assert_eq!(verify::segments(&dir).unwrap().len(), 1);
    let work = c.root.path().join("tamper");

    // Cuts of the last k records of the held tree, tracks covered (tree and checkpoints cut too),
    // through `aerodbctl audit verify --checkpoint` for a few k ...
    for k in [1u64, 2, 3, 10, 100, 999, 1000] {
        let d = work.join(format!("cut-{k}"));
        copy_dir(&dir, &d);
        let s = d.join(seg.file_name().unwrap());
        cut_to(&d, &s, n - k);
        let (code, out) = verify_with(&d, &note);
        assert_eq!(code, 7, "cut {k}: {out}");
        assert!(out.contains("were cut"), "cut {k}: {out}");
        assert!(out.contains(&format!("the first bad leaf is seq {},", n - k + 1)), "cut {k}: {out}");
        std::fs::remove_dir_all(&d).unwrap();
    }
    // ... and for every k in 1..=1000 with the same verifier in this process: one copy of the
    // real log, cut one more record at a time (each cut is the log a host that hides the last k
    // records leaves), checked against the answer's checkpoint.
    // Only printed (what the sweep costs), never a correctness signal.
    #[allow(clippy::disallowed_methods)]
    let sweep = std::time::Instant::now();
    let d = work.join("cut-sweep");
    copy_dir(&dir, &d);
    let s = d.join(seg.file_name().unwrap());
    let held_with_key = verify::Held { checkpoint: held.clone(), key: Some(public_key(&dir)) };
    for k in 1..=1000u64 {
        cut_to(&d, &s, n - k);
        let r = verify::verify_dir_held(&d, Some(&held_with_key));
        let p = r.problem.unwrap_or_else(|| panic!("cut {k} passed"));
        assert_eq!(p.seq, n - k + 1, "cut {k}: {}", p.what);
        assert_eq!(
            p.what,
            format!(
                "the log ends at seq {} but the held checkpoint covers tree size {n}: records {}..={n} were cut (the \
                 first bad leaf is seq {}, leaf index {})",
                n - k,
                n - k + 1,
                n - k + 1,
                n - k
            ),
            "cut {k}"
        );
    }
    eprintln!("every cut k = 1..=1000 of a {n}-record log detected in {:?}", sweep.elapsed());

    // The newest record of the held tree rewritten with its chain hash recomputed (the tree file
    // left alone): the first bad leaf is named exactly.
    let d = work.join("rewrite");
    copy_dir(&dir, &d);
    let s = d.join(seg.file_name().unwrap());
    cut_to(&d, &s, n);
    keep_checkpoints_below(&d, n);
    rewrite_newest(&d, &s, n, false);
    let (code, out) = verify_with(&d, &note);
    assert_eq!(code, 7, "{out}");
    assert!(out.contains("the log was rewritten"), "{out}");
    assert!(out.contains(&format!("the first bad leaf is seq {n} ")), "{out}");

    // The same with every hash recomputed (the tree file rebuilt from the forged records): the
    // held root still refuses it; the bad leaf is bounded by the last size the records still
    // reproduce a signed root for.
    let d = work.join("rewrite-all");
    copy_dir(&dir, &d);
    let s = d.join(seg.file_name().unwrap());
    cut_to(&d, &s, n);
    keep_checkpoints_below(&d, n);
    rewrite_newest(&d, &s, n, true);
    let (code, out) = verify_with(&d, &note);
    assert_eq!(code, 7, "{out}");
    assert!(out.contains("the log was rewritten"), "{out}");
    let last_good = checkpoint::read_all(&d).unwrap().into_iter().map(|(_, c, _)| c.size).max().unwrap();
    assert!(last_good < n);
    assert!(out.contains(&format!("among seqs {}..={n}", last_good + 1)), "{out}");

    // A fork: the control plane runs on the forged log (it starts from the newest checkpoint the
    // forger kept, which its records still extend) and signs a second tree of the same history.
    // The client holding the answer's checkpoint refuses the new one, loudly.
    std::fs::remove_dir_all(&dir).unwrap();
    copy_dir(&d, &dir);
    std::fs::create_dir_all(dir.join("quarantine")).unwrap();
    for p in [dir.clone(), dir.join("quarantine")] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    c.restart_control(0, &[]).await;
    let out = prove(state.clone()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("REFUSED") && stderr.contains("NOT consistent"), "{stderr}");
    let (code, out) = verify_with(&dir, &note);
    assert_eq!(code, 7, "offline too: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_o3_proofs_from_a_live_control_plane_verify_in_an_independent_python_rfc6962_checker() {
    let c = Cluster::start(Spec::default()).await;
    let mut observer = c.observer(0);
    let mut actor = c.actor(0);
    let mut auditor = c.auditor(0);
    let mut notes = Vec::new();
    for i in 0..5 {
        for _ in 0..(3 + i * 7) {
            observer.get_cluster_state(cpb::GetClusterStateRequest {}).await.unwrap();
        }
        common::request_and_confirm(&mut actor, cpb::Command::RunDiagnostics, "n2", &key("py")).await.unwrap();
        notes.push(auditor.get_checkpoint(cpb::GetCheckpointRequest {}).await.unwrap().into_inner());
    }
    let last = notes.last().unwrap().clone();
    let n = last.tree_size;
    let seqs: Vec<u64> = [1, 2, 3, n / 3, n / 2, n - 1, n].into_iter().collect();
    let mut inclusion = Vec::new();
    for seq in &seqs {
        let p = auditor
            .get_inclusion_proof(cpb::GetInclusionProofRequest { seq: *seq, tree_size: n })
            .await
            .unwrap()
            .into_inner();
        inclusion.push(serde_json::json!({"seq": p.seq, "tree_size": p.tree_size,
            "record_payload": p.record_payload, "hashes": p.hashes}));
    }
    let mut consistency = Vec::new();
    for earlier in &notes[..notes.len() - 1] {
        let p = auditor
            .get_consistency_proof(cpb::GetConsistencyProofRequest { first_size: earlier.tree_size, second_size: n })
            .await
            .unwrap()
            .into_inner();
        consistency.push(serde_json::json!({"first_note": earlier.note, "hashes": p.hashes}));
    }
    // The same proofs with one hash changed each: the checker must refuse every one.
    let flip = |v: &serde_json::Value| {
        let mut v = v.clone();
        let h = v["hashes"][0].as_str().unwrap().to_string();
        let flipped = format!("{}{}", if h.starts_with('0') { "1" } else { "0" }, &h[1..]);
        v["hashes"][0] = serde_json::Value::String(flipped);
        v
    };
    let bad_inclusion: Vec<_> =
        inclusion.iter().filter(|v| !v["hashes"].as_array().unwrap().is_empty()).map(flip).collect();
    let bad_consistency: Vec<_> = consistency.iter().map(flip).collect();
    let run = |req: serde_json::Value| {
        let mut child = std::process::Command::new(python())
            .arg("tests/python/rfc6962_verify.py")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(req.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let note = last.note.clone();
    let (good, bad) = tokio::task::spawn_blocking(move || {
        let good = run(serde_json::json!({"note": note, "inclusion": inclusion, "consistency": consistency}));
        let bad = run(serde_json::json!({"note": note, "inclusion": bad_inclusion, "consistency": bad_consistency}));
        (good, bad)
    })
    .await
    .unwrap();
    assert_eq!(good["size"], n);
    assert_eq!(good["root"], last.root_hash, "the note's root, read by Python, is the one the server reports");
    assert_eq!(good["inclusion"], serde_json::json!(vec![true; seqs.len()]), "{good}");
    assert_eq!(good["consistency"], serde_json::json!(vec![true; notes.len() - 1]), "{good}");
    assert!(bad["inclusion"].as_array().unwrap().iter().all(|v| v == false), "{bad}");
    assert!(bad["consistency"].as_array().unwrap().iter().all(|v| v == false), "{bad}");
    assert!(!bad["inclusion"].as_array().unwrap().is_empty());
    // And the Rust signature check of the note the Python read.
    Checkpoint::verify(&last.note, &public_key(&c.controls[0].cfg.audit_dir)).unwrap();
}

/// Crashes at each fail point of the audit writer (needs the `failpoints` feature).
#[cfg(feature = "failpoints")]
mod crash {
    use super::*;

    /// Control plane 0's audit records as (stage, command), from disk.
    fn trail(c: &Cluster) -> Vec<(Stage, String)> {
        c.audit_records(0).into_iter().map(|b| (b.draft.stage, b.draft.command)).collect()
    }

    fn recovered_consistently(c: &Cluster, point: &str) {
        let dir = &c.controls[0].cfg.audit_dir;
        let report = verify::verify_dir(dir, None);
        assert!(report.ok, "{point}: {:?}", report.problem);
        let t = tree::TreeReader::open(dir).unwrap();
        assert_eq!(t.leaves(), report.last_seq, "{point}: the tree holds every record");
        assert_eq!(hex::encode(merkle::root(&t, t.leaves()).unwrap()), report.root_hash, "{point}: the records' root");
        if let Some((_, latest, _)) = checkpoint::read_all(dir).unwrap().last() {
            assert_eq!(merkle::root(&t, latest.size).unwrap(), latest.root, "{point}: the tree gives the signed root");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn p7_f2_crash_at_each_point_of_append_tree_and_checkpoint_recovers_with_nothing_lost_or_synthesized() {
        let mut c = Cluster::start(Spec::default()).await;
        // Points every batch passes: the readiness reads of the restart reach them, so the process
        // dies there, before answering that read.
        for point in ["audit.before_fsync", "audit.after_fsync", "audit.tree_before_write", "audit.tree_after_write"] {
            let before = trail(&c);
            c.controls[0].proc.kill();
            c.controls[0].proc.env = vec![("AERODB_FAILPOINTS".into(), format!("{point}=abort"))];
            c.controls[0].proc.start();
            // Reads until one reaches the point (each read is a batch); bounded in count and time.
            // Until the process listens a read fails at once: the next attempt waits a poll interval
            // (the exit of the process is the condition waited on, not the time).
            let mut died = None;
            for _ in 0..600 {
                died = c.controls[0].proc.exited();
                if died.is_some() {
                    break;
                }
                let mut observer = c.observer(0);
                let read = observer.get_cluster_state(cpb::GetClusterStateRequest {});
                if !matches!(tokio::time::timeout(std::time::Duration::from_secs(2), read).await, Ok(Ok(_))) {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
            let status = match died {
                Some(s) => s,
                None => c.controls[0].proc.wait_exit("the control plane dies at the point").await,
            };
            assert!(!status.success(), "{point}: {status:?}");
            let at_kill = trail(&c);
            assert_eq!(&at_kill[..before.len()], &before[..], "{point}: nothing acknowledged is lost");
            c.restart_control(0, &[]).await;
            let after = trail(&c);
            assert_eq!(&after[..at_kill.len()], &at_kill[..], "{point}: recovery keeps every durable record");
            // Every record after the kill documents a call the harness made: its reads, or one of
            // them refused at the edge because the harness gave up on it while the process died.
            for (stage, command) in &after[before.len()..] {
                assert!(
                    *stage == Stage::Read
                        || (*stage == Stage::Rejected && command == "/aerodb.control.v1.Observer/GetClusterState"),
                    "{point}: nothing but the harness's reads after the kill, nothing synthesized: {stage:?} {command}"
                );
            }
            recovered_consistently(&c, point);
        }
        // Points of storing a checkpoint: a RequestAction's `confirmation_requested` record is
        // durable and its checkpoint signed before the answer; the checkpoint is stored after it, so
        // the process dies there, with the answer sent or not (a race with the dying process). An
        // answer that arrived carries a checkpoint the recovered log still proves.
        for point in [
            "audit.checkpoint_before_tree_sync",
            "audit.checkpoint_after_tree_sync",
            "audit.checkpoint_before_write",
            "audit.checkpoint_before_fsync",
            "audit.checkpoint_after_fsync",
        ] {
            c.restart_control(0, &[("AERODB_FAILPOINTS", &format!("{point}=abort"))]).await;
            let before = trail(&c);
            let mut actor = c.actor(0);
            let asked = cpb::RequestActionRequest {
                command: cpb::Command::RunDiagnostics as i32,
                target_node: "n2".into(),
                idempotency_key: key("crash"),
            };
            let r = actor.request_action(asked).await;
            c.controls[0].proc.wait_exit("the control plane died storing the checkpoint").await;
            let held = r.ok().map(|a| a.into_inner()).map(|a| {
                let Some(cpb::request_action_response::Response::Pending(p)) = a.response else { panic!("{point}") };
                (a.audit_checkpoint, p.correlation_id)
            });
            let at_kill = trail(&c);
            assert_eq!(&at_kill[..before.len()], &before[..], "{point}");
            let new: Vec<Stage> = at_kill[before.len()..].iter().map(|t| t.0).collect();
            assert!(new.ends_with(&[Stage::Requested, Stage::ConfirmationRequested]), "{point}: {new:?}");
            c.restart_control(0, &[]).await;
            let after = trail(&c);
            assert_eq!(&after[..at_kill.len()], &at_kill[..], "{point}: recovery keeps every durable record");
            assert!(after[at_kill.len()..].iter().all(|t| t.0 == Stage::Read), "{point}: nothing synthesized");
            recovered_consistently(&c, point);
            eprintln!("{point}: answered before dying: {}", held.is_some());
            if let Some((note, correlation)) = held {
                let dir = c.controls[0].cfg.audit_dir.clone();
                assert_covers(&dir, &note, seq_of(&dir, &correlation, Stage::ConfirmationRequested), point);
            }
            // The restarted control plane answers with a checkpoint that covers its new records.
            let mut actor = c.actor(0);
            let r = actor
                .request_action(cpb::RequestActionRequest {
                    command: cpb::Command::RunDiagnostics as i32,
                    target_node: "n2".into(),
                    idempotency_key: key("after"),
                })
                .await
                .unwrap()
                .into_inner();
            let Some(cpb::request_action_response::Response::Pending(p)) = r.response else { panic!("{point}") };
            let dir = c.controls[0].cfg.audit_dir.clone();
            assert_covers(
                &dir,
                &r.audit_checkpoint,
                seq_of(&dir, &p.correlation_id, Stage::ConfirmationRequested),
                point,
            );
        }
    }
}

/// Runs `aerodbctl ARGS`; returns (exit code, stdout, stderr).
fn ctl(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(common::aerodbctl_bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Rewrites record `seq` of a sealed segment with another stage and recomputes the chain of
/// every record after it in that segment (what someone who can write the archive does).
fn replace_in_segment(seg: &Path, seq: u64) {
    rewrite_record(seg, seq, |b| b.replace("\"stage\":\"", "\"stage\":\"x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_o3_archived_sealed_segments_keep_start_and_verification_whole_and_a_replaced_one_is_named_by_the_held_checkpoint()
 {
    // Small segments so a short real run seals several.
    let spec = Spec { env: vec![("AERODB_TEST_AUDIT_SEGMENT_BYTES".into(), "16384".into())], ..Spec::default() };
    let mut c = Cluster::start(spec).await;
    let dir = c.controls[0].cfg.audit_dir.clone();
    let mut observer = c.observer(0);
    let mut actor = c.actor(0);
    for i in 0..4 {
        common::request_and_confirm(&mut actor, cpb::Command::RunDiagnostics, "n2", &key(&format!("a{i}")))
            .await
            .unwrap();
        for _ in 0..25 {
            observer.get_cluster_state(cpb::GetClusterStateRequest {}).await.unwrap();
        }
    }
    let done = common::request_and_confirm(&mut actor, cpb::Command::RunDiagnostics, "n2", &key("held")).await.unwrap();
    let held = Checkpoint::verify(&done.audit_checkpoint, &public_key(&dir)).unwrap();
    let note = c.root.path().join("held.note");
    std::fs::write(&note, &held.note).unwrap();
    let segs_before = verify::segments(&dir).unwrap();
    assert!(segs_before.len() >= 4, "several sealed segments: {segs_before:?}");
    let archive = c.root.path().join("archive");
    let (d, a) = (dir.to_str().unwrap(), archive.to_str().unwrap());

    // Refused while the control plane holds the directory; nothing moves.
    let (code, _, err) = ctl(&["audit", "archive", "--audit", d, "--to", a]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("held by a running control plane"), "{err}");
    assert_eq!(verify::segments(&dir).unwrap(), segs_before);

    // Stopped: the sealed segments wholly below the newest checkpoint move; the rest stay.
    c.controls[0].proc.stop();
    let newest = checkpoint::read_all(&dir).unwrap().last().unwrap().1.size;
    let (code, out, err) = ctl(&["audit", "archive", "--audit", d, "--to", a]);
    assert_eq!(code, 0, "{out}{err}");
    let kept = verify::segments(&dir).unwrap();
    let moved = verify::segments(&archive).unwrap();
    assert!(!moved.is_empty() && !kept.is_empty(), "{out}");
    assert_eq!(moved.len() + kept.len(), segs_before.len());
    assert_eq!(moved[0].0, 1);
    assert!(kept[0].0 <= newest, "the segment holding the newest checkpoint's last record stays");
    let point = aerodb::audit::archive::latest_point(&dir).unwrap().unwrap();
    assert_eq!(point.first_kept_seq, kept[0].0);
    assert_eq!(point.segments.len(), moved.len());
    assert!(out.starts_with(&format!("OK: archived {} segment(s), records 1..={}", moved.len(), kept[0].0 - 1)));
    // Nothing was deleted: each archived file is the original's bytes.
    for s in &point.segments {
        let bytes = std::fs::read(archive.join(&s.name)).unwrap();
        assert_eq!(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)), s.sha256);
    }
    // A second run finds nothing more to move.
    let (code, out, _) = ctl(&["audit", "archive", "--audit", d, "--to", a]);
    assert_eq!(code, 0);
    assert!(out.starts_with("OK: nothing to archive"), "{out}");

    // Offline verification: of the directory alone (the archived prefix from tree.hashes, named
    // in a note), and of the directory with the archive (every record), both against the held
    // checkpoint.
    let (code, out, _) = ctl(&["audit", "verify", d, "--checkpoint", note.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("records 1..={} are archived in", point.first_kept_seq - 1)), "{out}");
    let (code, out, _) = ctl(&["audit", "verify", d, "--archive", a, "--checkpoint", note.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK: ") && out.contains("(seq 1..="), "every record from seq 1: {out}");

    // Start still works (from the newest checkpoint and the stored tree), and so does the live
    // verification and the next answer's checkpoint.
    c.restart_control(0, &[]).await;
    let mut actor = c.actor(0);
    let after =
        common::request_and_confirm(&mut actor, cpb::Command::RunDiagnostics, "n2", &key("after")).await.unwrap();
    assert_covers_from_tree(&dir, &after.audit_checkpoint, seq_of(&dir, &after.correlation_id, Stage::Executed));
    let v = c.auditor(0).verify_audit(cpb::VerifyAuditRequest::default()).await.unwrap().into_inner();
    assert!(v.ok, "{v:?}");
    // A proof of an archived record: the control plane no longer holds its bytes, and says so.
    let profile = c.pki.profile(Role::Auditor, &c.controls[0].addr);
    let state = c.root.path().join("prove-state");
    let prove = move || {
        let a = ["--profile", profile.to_str().unwrap(), "audit", "prove", "--seq", "1", "--state-dir"];
        let o = std::process::Command::new(common::aerodbctl_bin()).args(a).arg(&state).output().unwrap();
        (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let (code, out) = tokio::task::spawn_blocking(prove).await.unwrap();
    assert_eq!(code, 7, "{out}");
    assert!(out.contains("its segment was archived"), "{out}");
    c.controls[0].proc.stop();
    let (code, out, _) = ctl(&["audit", "verify", d, "--archive", a, "--checkpoint", note.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");

    // A replaced archived segment (one record rewritten, the chain inside the segment recomputed)
    // is named by the held checkpoint at its first bad leaf.
    let bad = c.root.path().join("archive-bad");
    copy_dir(&archive, &bad);
    let target = &point.segments[point.segments.len() / 2];
    let bad_seq = target.first_seq + (target.last_seq - target.first_seq) / 2;
    replace_in_segment(&bad.join(&target.name), bad_seq);
    let (code, out, _) =
        ctl(&["audit", "verify", d, "--archive", bad.to_str().unwrap(), "--checkpoint", note.to_str().unwrap()]);
    assert_eq!(code, 7, "{out}");
    assert!(out.contains(&format!("the first bad leaf is seq {bad_seq} (leaf index {})", bad_seq - 1)), "{out}");
    // The same with only the held checkpoint to go by (the directory's own checkpoints gone).
    let lone = c.root.path().join("lone");
    copy_dir(&dir, &lone);
    keep_checkpoints_below(&lone, 0);
    let r = verify::verify_dir_archived(
        &lone,
        std::slice::from_ref(&bad),
        Some(&verify::Held { checkpoint: held.clone(), key: Some(public_key(&dir)) }),
    );
    let p = r.problem.expect("detected");
    assert!(p.what.contains(&format!("the first bad leaf is seq {bad_seq} ")), "{}", p.what);
}

/// The note verifies and covers `seq` (its root checked by the verifier, archived prefix included).
fn assert_covers_from_tree(dir: &Path, note: &str, seq: u64) {
    let cp = Checkpoint::verify(note, &public_key(dir)).unwrap();
    assert!(cp.size >= seq);
    let r = verify::verify_dir_held(dir, Some(&verify::Held { checkpoint: cp, key: None }));
    assert!(r.ok, "{:?}", r.problem);
}

/// Rewrites record `seq` of a segment with `edit` applied to its body and recomputes the chain of
/// every record after it in that segment (what someone who can write the directory does).
fn rewrite_record(seg: &Path, seq: u64, edit: impl Fn(&str) -> String) {
    let mut out = std::fs::read(seg).unwrap()[..aerodb::frame::HEADER_LEN as usize].to_vec();
    let mut prev = None;
    for (_, s, payload) in frames(seg) {
        let (p, _, body) = chain::split(&payload).unwrap();
        let body = if s == seq { edit(&String::from_utf8_lossy(body)).into_bytes() } else { body.to_vec() };
        let forged = chain::payload(&prev.unwrap_or(p), s, &body);
        prev = Some(chain::hash(&forged));
        out.extend_from_slice(&aerodb::frame::encode(&forged));
    }
    std::fs::write(seg, out).unwrap();
}

/// The raw payload of every ledger record: (control_seq, bytes).
fn ledger_payloads(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut r = aerodb::frame::Reader::open(path, aerodb::kernel::ledger::MAGIC, 1 << 20, true).unwrap();
    let mut out = Vec::new();
    while let Some((_, p)) = r.next_frame().unwrap() {
        let rec: aerodb::kernel::records::Record = serde_json::from_slice(&p).unwrap();
        out.push((rec.control_seq, p));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_o3_the_decided_record_carries_the_confirmed_leaf_and_the_outcome_record_its_ledger_position_checked_both_ways()
 {
    let c = Cluster::start(Spec::default()).await;
    let dir = c.controls[0].cfg.audit_dir.clone();
    let mut actor = c.actor(0);
    let k = key("cross");
    let done = common::request_and_confirm(&mut actor, cpb::Command::RunDiagnostics, "n2", &k).await.unwrap();
    let rec = done.record.clone().unwrap();
    // The kernel's side: the Decided record holds the confirmed record's leaf verbatim, and the
    // answer's record_hash is SHA-256 of the very bytes the ledger holds.
    let confirmed_seq = seq_of(&dir, &done.correlation_id, Stage::Confirmed);
    let mut leaf = None;
    verify::read_from(&dir, confirmed_seq, |s| {
        leaf = Some(s.leaf_hash);
        false
    })
    .unwrap();
    let leaf = leaf.unwrap();
    assert_eq!(rec.confirmed_audit_leaf, leaf.to_vec());
    let ledger = c.nodes[1].cfg.data_dir.join("control.log");
    let payload = ledger_payloads(&ledger).into_iter().find(|(s, _)| *s == rec.control_seq).unwrap().1;
    assert_eq!(rec.record_hash, <sha2::Sha256 as sha2::Digest>::digest(&payload).to_vec());
    let d = common::decided(&c.ledger(1)).into_iter().find(|d| d.idempotency_key == k).unwrap();
    assert_eq!(d.confirmed_audit_leaf, hex::encode(leaf));
    // The trail's side: the outcome record names the ledger position and the record's hash.
    let executed = c.audit_records(0).into_iter().find(|b| b.draft.stage == Stage::Executed).unwrap();
    assert_eq!(executed.draft.detail["kernel_control_seq"], rec.control_seq.to_string());
    assert_eq!(executed.draft.detail["kernel_record_hash"], hex::encode(&rec.record_hash));
    assert_eq!(executed.draft.detail["confirmed_leaf"], hex::encode(leaf));

    // The kernel takes the leaf as given but only in its shape: 32 bytes or none.
    let mut req =
        common::exec_req(&key("short-leaf"), aerodb::kernel::records::ActionKind::Diagnostics, "n2", false, 0, "alice");
    req.expected_control_seq = common::control_seq(&c, 1).await;
    req.confirmed_audit_leaf = vec![7; 31];
    let e = c.kernel(1).execute(common::sign::sign_exec(&c, req)).await.unwrap_err();
    let w = common::wire(&e);
    assert_eq!((w.code.as_str(), w.field_errors[0].field.as_str()), ("AERO_INVALID_ARGUMENT", "confirmed_audit_leaf"));

    // Both directions agree on the untouched files.
    let ledgers: Vec<String> =
        c.nodes.iter().map(|n| n.cfg.data_dir.join("control.log").display().to_string()).collect();
    let crosscheck = |audit: &Path, ledgers: &[String]| {
        let mut args = vec!["audit".to_string(), "crosscheck".into(), "--audit".into(), audit.display().to_string()];
        for l in ledgers {
            args.extend(["--ledger".to_string(), l.clone()]);
        }
        let out = std::process::Command::new(common::aerodbctl_bin()).args(&args).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, out) = crosscheck(&dir, &ledgers);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 executed action(s), 0 not explained"), "{out}");
    assert!(
        out.contains("1 outcome record(s) naming a kernel decision, 1 checked against a ledger, 0 contradicted"),
        "{out}"
    );

    // Trail rewritten (the confirmed record altered, its chain recomputed): the ledger's Decided
    // record names a leaf the trail no longer has.
    let forged_trail = c.root.path().join("forged-trail");
    copy_dir(&dir, &forged_trail);
    let seg = verify::segments(&forged_trail).unwrap()[0].1.clone();
    rewrite_record(&seg, confirmed_seq, |b| b.replacen("\"clock_source\":\"", "\"clock_source\":\"x", 1));
    let (code, out) = crosscheck(&forged_trail, &ledgers);
    assert_eq!(code, 7, "{out}");
    let line = out.lines().find(|l| l.contains(&k) && l.contains("control_seq")).unwrap();
    assert!(line.contains(&format!("carries confirmed audit leaf {}…", &hex::encode(leaf)[..16])), "{out}");
    assert!(out.contains("the trail was rewritten"), "{out}");

    // Ledger rewritten (the Decided record's result altered, its frame's CRC recomputed): the
    // outcome record's hash names it.
    let forged_ledger = c.root.path().join("forged-control.log");
    let mut bytes = std::fs::read(&ledger).unwrap()[..aerodb::frame::HEADER_LEN as usize].to_vec();
    for (s, p) in ledger_payloads(&ledger) {
        let p = if s == rec.control_seq {
            let forged = String::from_utf8(p.clone()).unwrap().replacen("\"wal_ok\":true", "\"wal_ok\":false", 1);
            assert_ne!(forged.as_bytes(), &p[..], "the forger changed the result");
            forged.into_bytes()
        } else {
            p
        };
        bytes.extend_from_slice(&aerodb::frame::encode(&p));
    }
    std::fs::write(&forged_ledger, bytes).unwrap();
    let mut forged = ledgers.clone();
    forged[1] = forged_ledger.display().to_string();
    let (code, out) = crosscheck(&dir, &forged);
    assert_eq!(code, 7, "{out}");
    assert!(
        out.contains(&format!(
            "n2 control_seq {}: the ledger's Decided record at control_seq {} hashes to",
            rec.control_seq, rec.control_seq
        )),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_o3_an_action_across_two_control_plane_instances_is_reconstructed_offline_naming_the_instance_of_each_stage()
{
    let mut c = Cluster::start(Spec { control_planes: 2, ..Spec::default() }).await;
    let k = key("two-cps");
    // Executed through cp0; asked again through cp1, which finds it decided and replays it.
    let mut actor0 = c.actor(0);
    let done = common::request_and_confirm(&mut actor0, cpb::Command::RunDiagnostics, "n2", &k).await.unwrap();
    let mut actor1 = c.actor(1);
    let again = actor1
        .request_action(cpb::RequestActionRequest {
            command: cpb::Command::RunDiagnostics as i32,
            target_node: "n2".into(),
            idempotency_key: k.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let Some(cpb::request_action_response::Response::Replayed(rp)) = again.response else { panic!("{again:?}") };
    c.controls[0].proc.stop();
    c.controls[1].proc.stop();
    let (d0, d1) = (c.controls[0].cfg.audit_dir.clone(), c.controls[1].cfg.audit_dir.clone());
    let (i0, i1) = (c.controls[0].cfg.instance_id.clone(), c.controls[1].cfg.instance_id.clone());
    let confirmed = seq_of(&d0, &done.correlation_id, Stage::Confirmed);
    let mut args: Vec<String> = vec!["audit".into(), "reconstruct".into()];
    for d in [&d0, &d1] {
        args.extend(["--audit".into(), d.display().to_string()]);
    }
    for n in &c.nodes {
        args.extend(["--ledger".into(), n.cfg.data_dir.join("control.log").display().to_string()]);
    }
    let run = |extra: &[&str]| {
        let mut a = args.clone();
        a.extend(extra.iter().map(|s| s.to_string()));
        let out = std::process::Command::new(common::aerodbctl_bin()).args(&a).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let expect = |out: &str| {
        assert!(out.contains(&format!("verified {} (instance {i0}): OK", d0.display())), "{out}");
        assert!(out.contains(&format!("verified {} (instance {i1}): OK", d1.display())), "{out}");
        assert!(
            out.contains(&format!(
                "correlation {} ({i0}): requested, confirmation_requested, confirmed, executed\n",
                done.correlation_id
            )),
            "{out}"
        );
        assert!(out.contains(&format!("correlation {} ({i1}): requested, replayed\n", rp.correlation_id)), "{out}");
        let ledger = c.nodes[1].cfg.data_dir.join("control.log");
        assert!(
            out.contains(&format!(
                "kernel ledger {}: key {k} executed at control_seq {} on n2 (confirmed record: {i0} seq {confirmed})",
                ledger.display(),
                done.record.as_ref().unwrap().control_seq
            )),
            "{out}"
        );
        // Each stage is named with the instance that recorded it.
        let stages: Vec<(String, String)> = out
            .lines()
            .filter(|l| l.contains(&format!(" key {k} correlation ")))
            .map(|l| {
                let w: Vec<&str> = l.split(' ').collect();
                (w[0].to_string(), w[3].to_string())
            })
            .collect();
        let want: Vec<(String, String)> = [
            (&i0, "requested"),
            (&i0, "confirmation_requested"),
            (&i0, "confirmed"),
            (&i0, "executed"),
            (&i1, "requested"),
            (&i1, "replayed"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(stages, want, "{out}");
    };
    // By key, and by cp0's correlation id (joined to cp1's records through the key).
    let (code, out) = run(&["--key", &k]);
    assert_eq!(code, 0, "{out}");
    expect(&out);
    let (code, out) = run(&["--correlation", &done.correlation_id]);
    assert_eq!(code, 0, "{out}");
    expect(&out);
    // Nothing under an unknown key: exit 8.
    let (code, _) = run(&["--key", "never-used"]);
    assert_eq!(code, 8);
    // A directory that does not verify is named, and the exit says so.
    let bad = c.root.path().join("cp1-damaged");
    copy_dir(&d1, &bad);
    let seg = verify::segments(&bad).unwrap()[0].1.clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&seg, bytes).unwrap();
    let mut a = vec!["audit".to_string(), "reconstruct".into(), "--audit".into(), d0.display().to_string()];
    a.extend(["--audit".into(), bad.display().to_string(), "--key".into(), k.clone()]);
    let out = std::process::Command::new(common::aerodbctl_bin()).args(&a).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{text}");
    assert!(text.contains(&format!("verified {} (instance {i1}): FAILED", bad.display())), "{text}");
    // The same instance's directory twice is refused.
    let a = ["audit", "reconstruct", "--audit", d0.to_str().unwrap(), "--audit", bad.to_str().unwrap(), "--audit"];
    let out =
        std::process::Command::new(common::aerodbctl_bin()).args(a).arg(&d1).args(["--key", &k]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("both hold records of instance {i1}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_o3_a_witness_cosigns_only_checkpoints_consistent_with_the_last_it_cosigned_and_refuses_a_fork() {
    let mut c = Cluster::start(Spec::default()).await;
    let dir = c.controls[0].cfg.audit_dir.clone();
    let w = c.root.path().join("witness");
    let (code, out, err) = ctl(&["audit", "witness", "init", "--dir", w.to_str().unwrap(), "--name", "w1"]);
    assert_eq!(code, 0, "{out}{err}");
    let witness_key =
        checkpoint::public_key_from_hex(&std::fs::read_to_string(w.join("witness.pub")).unwrap()).unwrap();
    let profile = c.pki.profile(Role::Auditor, &c.controls[0].addr);
    let cosign = |out: &Path| {
        let (profile, w, out) = (profile.clone(), w.clone(), out.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let a =
                ["--profile", profile.to_str().unwrap(), "audit", "witness", "cosign", "--dir", w.to_str().unwrap()];
            let o =
                std::process::Command::new(common::aerodbctl_bin()).args(a).arg("--out").arg(&out).output().unwrap();
            (
                o.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
    };
    let mut actor = c.actor(0);
    let mut sizes = Vec::new();
    for i in 0..2 {
        common::request_and_confirm(&mut actor, cpb::Command::RunDiagnostics, "n2", &key(&format!("w{i}")))
            .await
            .unwrap();
        let note_path = c.root.path().join(format!("cosigned-{i}.note"));
        let (code, out, err) = cosign(&note_path).await.unwrap();
        assert_eq!(code, 0, "{out}{err}");
        let note = std::fs::read_to_string(&note_path).unwrap();
        // Both signatures verify: the instance's and the witness's, over the same tree.
        let by_instance = Checkpoint::verify(&note, &public_key(&dir)).unwrap();
        let by_witness = aerodb::audit::witness::verify_cosignature(&note, "w1", &witness_key).unwrap();
        assert_eq!((by_instance.size, by_instance.root), (by_witness.size, by_witness.root));
        assert!(
            out.starts_with(&format!(
                "OK: cosigned aerodb.audit/{} tree size {}",
                c.controls[0].cfg.instance_id, by_instance.size
            )),
            "{out}"
        );
        // Another key under the witness's name does not pass for it.
        let other = aerodb::audit::witness::verify_cosignature(&note, "w1", &public_key(&dir));
        assert!(other.is_err());
        sizes.push(by_instance.size);
    }
    assert!(sizes[1] > sizes[0], "the second cosignature extends the first through a consistency proof");
    let n = sizes[1];

    // A fork: the newest cosigned record rewritten with every hash recomputed, the checkpoints
    // covering it removed, and the control plane serving on from the forged log.
    c.controls[0].proc.stop();
    let forged = c.root.path().join("forged");
    copy_dir(&dir, &forged);
    let seg = forged.join(verify::segments(&dir).unwrap()[0].1.file_name().unwrap());
    cut_to(&forged, &seg, n);
    keep_checkpoints_below(&forged, n);
    rewrite_newest(&forged, &seg, n, true);
    std::fs::remove_dir_all(&dir).unwrap();
    copy_dir(&forged, &dir);
    std::fs::create_dir_all(dir.join("quarantine")).unwrap();
    for p in [dir.clone(), dir.join("quarantine")] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    c.restart_control(0, &[]).await;
    let refused = c.root.path().join("refused.note");
    let (code, out, err) = cosign(&refused).await.unwrap();
    assert_eq!(code, 7, "{out}{err}");
    assert!(err.contains("REFUSED") && err.contains("NOT consistent"), "{err}");
    assert!(!refused.exists(), "nothing was cosigned");
}
