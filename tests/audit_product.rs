//! Issue 6: the audit trail as a product: tamper evidence, completeness, crash behaviour,
//! reconstruction, faults, handshake records, the Auditor service and offline verification.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::path::{Path, PathBuf};

#[cfg(feature = "failpoints")]
use aerodb::audit::record::Stage;
use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use aerodb::tls::identity::Role;
use common::{Cluster, Spec, execute_calls, extra_identity, key, request, request_and_confirm, wire};
#[cfg(feature = "failpoints")]
use common::{WAIT, wait_for};

/// A real audit log: a control plane that served reads, actions and a denial, stopped cleanly
/// (sealed by a checkpoint), plus a checkpoint exported through aerodbctl while it ran.
async fn real_log() -> (Cluster, PathBuf) {
    let mut c = Cluster::start(Spec::default()).await;
    let mut actor = c.actor(0);
    let mut observer = c.observer(0);
    for _ in 0..15 {
        observer.get_cluster_state(cpb::GetClusterStateRequest {}).await.unwrap();
    }
    request_and_confirm(&mut actor, cpb::Command::RunDiagnostics, "n2", &key("diag")).await.unwrap();
    request_and_confirm(&mut actor, cpb::Command::RequestPromotion, "n3", &key("rej")).await.unwrap_err();
    let exported = c.root.path().join("exported-checkpoint.note");
    let profile = c.pki.profile(Role::Auditor, &c.controls[0].addr);
    let out = std::process::Command::new(common::aerodbctl_bin())
        .args([
            "--profile",
            profile.to_str().unwrap(),
            "audit",
            "checkpoint",
            "export",
            "--out",
            exported.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for _ in 0..5 {
        observer.get_cluster_state(cpb::GetClusterStateRequest {}).await.unwrap();
    }
    c.controls[0].proc.stop();
    (c, exported)
}

/// Frames of the first audit segment: (offset, length with header, seq).
fn frames(seg: &Path) -> Vec<(u64, u64, u64)> {
    let mut r = aerodb::frame::Reader::open(seg, aerodb::audit::verify::MAGIC, 1 << 20, true).unwrap();
    let mut out = Vec::new();
    while let Some((off, payload)) = r.next_frame().unwrap() {
        let (_, seq, _) = aerodb::audit::chain::split(&payload).unwrap();
        out.push((off, payload.len() as u64 + 8, seq));
    }
    out
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

/// Runs `aerodbctl audit verify` offline; returns (exit code, stdout).
fn verify_cli(dir: &Path, checkpoint: Option<&Path>) -> (i32, String) {
    let mut cmd = std::process::Command::new(common::aerodbctl_bin());
    cmd.args(["audit", "verify", dir.to_str().unwrap()]);
    if let Some(cp) = checkpoint {
        cmd.args(["--checkpoint", cp.to_str().unwrap()]);
    }
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_o3_tamper_matrix_every_edit_is_detected_and_the_first_bad_record_named() {
    let (c, exported) = real_log().await;
    let audit = c.controls[0].cfg.audit_dir.clone();
    let (code, out) = verify_cli(&audit, Some(&exported));
    assert_eq!(code, 0, "the untouched log verifies: {out}");
    let seg_name = "audit-00000000000000000001.log";
    let fr = frames(&audit.join(seg_name));
    assert!(fr.len() > 20);
    let work = c.root.path().join("tamper");
    let case = |name: &str| {
        let d = work.join(name);
        copy_dir(&audit, &d);
        (d.join(seg_name), d)
    };
    let expect_fail = |dir: &Path, cp: Option<&Path>, seq: u64, offset: Option<u64>, needle: &str| {
        let (code, out) = verify_cli(dir, cp);
        assert_eq!(code, 7, "{needle}: verification fails: {out}");
        assert!(out.contains(&format!("seq {seq}")), "{needle}: names seq {seq}: {out}");
        if let Some(o) = offset {
            assert!(out.contains(&format!("byte offset {o}")), "{needle}: names offset {o}: {out}");
        }
        assert!(out.contains(needle), "{needle}: {out}");
    };

    // 1. One flipped byte in a record.
    let (seg, d) = case("flip");
    let (off, len, seq) = fr[10];
    let mut b = std::fs::read(&seg).unwrap();
    b[(off + len / 2) as usize] ^= 0x20;
    std::fs::write(&seg, b).unwrap();
    expect_fail(&d, None, seq, Some(off), "CRC32C mismatch");

    // 2. A deleted record.
    let (seg, d) = case("delete");
    let (off, len, _) = fr[10];
    let mut b = std::fs::read(&seg).unwrap();
    b.drain(off as usize..(off + len) as usize);
    std::fs::write(&seg, b).unwrap();
    expect_fail(&d, None, fr[11].2, Some(off), "where seq");

    // 3. Two records reordered.
    let (seg, d) = case("reorder");
    let b = std::fs::read(&seg).unwrap();
    let (o1, l1, _) = fr[10];
    let (o2, l2, _) = fr[11];
    let mut r = b[..o1 as usize].to_vec();
    r.extend_from_slice(&b[o2 as usize..(o2 + l2) as usize]);
    r.extend_from_slice(&b[o1 as usize..(o1 + l1) as usize]);
    r.extend_from_slice(&b[(o2 + l2) as usize..]);
    std::fs::write(&seg, r).unwrap();
    expect_fail(&d, None, fr[11].2, Some(o1), "where seq");

    // 4. The tail truncated at a record boundary, and the later checkpoints removed with it:
    //    only a checkpoint held elsewhere can tell.
    let (seg, d) = case("truncate");
    let exported_cp = aerodb::audit::checkpoint::Checkpoint::read_file(&exported).unwrap();
    let cut = fr.iter().position(|f| f.2 == exported_cp.size - 2).unwrap();
    std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(fr[cut].0).unwrap();
    let cps = d.join("checkpoints.log");
    let kept = aerodb::frame::header(aerodb::audit::checkpoint::MAGIC, 0);
    std::fs::write(&cps, kept).unwrap();
    let (code, out) = verify_cli(&d, None);
    assert_eq!(code, 0, "without a checkpoint a clean cut is invisible: {out}");
    expect_fail(&d, Some(&exported), fr[cut].2, None, "were cut");

    // 5. A record spliced in from another instance's log (same position, its own valid frame).
    let other = Cluster::start(Spec { nodes: 1, ..Default::default() }).await;
    let mut o = other.observer(0);
    for _ in 0..12 {
        o.get_cluster_state(cpb::GetClusterStateRequest {}).await.unwrap();
    }
    let other_seg = other.controls[0].cfg.audit_dir.join(seg_name);
    let ofr = frames(&other_seg);
    let (seg, d) = case("splice");
    let ob = std::fs::read(&other_seg).unwrap();
    let b = std::fs::read(&seg).unwrap();
    let (off, len, seq) = fr[10];
    let (ooff, olen, oseq) = *ofr.iter().find(|f| f.2 == seq).expect("same sequence in the other log");
    assert_eq!(oseq, seq);
    let mut r = b[..off as usize].to_vec();
    r.extend_from_slice(&ob[ooff as usize..(ooff + olen) as usize]);
    r.extend_from_slice(&b[(off + len) as usize..]);
    std::fs::write(&seg, r).unwrap();
    expect_fail(&d, None, seq, Some(off), "chain is broken");

    // 6. A checkpoint forged with another key.
    let (_, d) = case("forge");
    let forger_dir = work.join("forger");
    std::fs::create_dir_all(&forger_dir).unwrap();
    let forger = aerodb::audit::checkpoint::CheckpointSigner::load_or_create(&forger_dir, "cp1").unwrap();
    let forged = forger.sign(exported_cp.size, &[7u8; 32]);
    let mut f = aerodb::audit::checkpoint::open_for_append(&d).unwrap();
    aerodb::audit::checkpoint::append(&mut f, &forged, (0, 0)).unwrap();
    expect_fail(&d, None, exported_cp.size, None, "no signature of key aerodb.audit/cp1");

    // 7. The tail rewritten with a recomputed, internally valid chain: the checkpoints catch it.
    let (seg, d) = case("rewrite");
    let b = std::fs::read(&seg).unwrap();
    let (off, _, seq) = fr[fr.len() - 3];
    let mut r = b[..off as usize].to_vec();
    let mut prev = {
        let mut rd = aerodb::frame::Reader::open(&seg, aerodb::audit::verify::MAGIC, 1 << 20, true).unwrap();
        let mut h = [0u8; 32];
        while let Some((o, p)) = rd.next_frame().unwrap() {
            if o == off {
                break;
            }
            h = aerodb::audit::chain::hash(&p);
        }
        h
    };
    for s in seq..seq + 3 {
        let body = format!(
            "{{\"time_unix_ms\":1,\"clock_source\":\"x\",\"instance_id\":\"cp1\",\"correlation_id\":\"\",\"stage\":\"read\",\"command\":\"forged {s}\"}}"
        );
        let p = aerodb::audit::chain::payload(&prev, s, body.as_bytes());
        prev = aerodb::audit::chain::hash(&p);
        r.extend_from_slice(&aerodb::frame::encode(&p));
    }
    std::fs::write(&seg, r).unwrap();
    let (code, out) = verify_cli(&d, None);
    assert_eq!(code, 7, "the shutdown checkpoint in the directory catches a rewritten tail: {out}");
    assert!(out.contains("rewritten"), "{out}");
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_o3_completeness_a_fixed_script_yields_exactly_the_expected_records() {
    let mut c = Cluster::start(Spec::default()).await;
    let offset = c.root.path().join("clock");
    std::fs::write(&offset, "0").unwrap();
    c.restart_control(0, &[("AERODB_TEST_CLOCK_OFFSET_FILE", offset.to_str().unwrap())]).await;
    let skip = c.audit_records(0).len();
    let mut observer = c.observer(0);
    let mut actor = c.actor(0);
    let mut actor_on_auditor = cpb::auditor_client::AuditorClient::new(c.pki.channel(Role::Actor, &c.controls[0].addr));
    // observer read
    observer.get_cluster_state(cpb::GetClusterStateRequest {}).await.unwrap();
    // actor denial on the Auditor service
    actor_on_auditor.verify_audit(cpb::VerifyAuditRequest::default()).await.unwrap_err();
    // request + decline
    let p = request(&mut actor, cpb::Command::RequestDemotion, "n1", "c-decline").await.unwrap();
    actor.decline_action(cpb::DeclineActionRequest { confirmation_id: p.confirmation_id }).await.unwrap();
    // request + confirm + execute
    request_and_confirm(&mut actor, cpb::Command::RunDiagnostics, "n2", "c-exec").await.unwrap();
    // kernel rejection
    request_and_confirm(&mut actor, cpb::Command::RequestPromotion, "n3", "c-reject").await.unwrap_err();
    // expired confirmation
    let p = request(&mut actor, cpb::Command::RunDiagnostics, "n3", "c-expire").await.unwrap();
    std::fs::write(&offset, ((p.expires_after_seconds + 1) * 1000).to_string()).unwrap();
    common::confirm_pending(&mut actor, &p).await.unwrap_err();
    std::fs::write(&offset, "0").unwrap();
    // replayed key
    let r = actor
        .request_action(cpb::RequestActionRequest {
            command: 1,
            target_node: "n2".into(),
            idempotency_key: "c-exec".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(r.response, Some(cpb::request_action_response::Response::Replayed(_))));

    let got: Vec<(String, String, String, String, String)> = c
        .audit_records(0)
        .into_iter()
        .skip(skip)
        .map(|b| {
            (
                b.draft.stage.as_str().to_string(),
                b.draft.identity.map(|i| format!("{}/{}", i.role, i.name)).unwrap_or_default(),
                b.draft.command,
                b.draft.outcome,
                b.draft.error.map(|e| e.code).unwrap_or_default(),
            )
        })
        .collect();
    let r = |s: &str, w: &str, c: &str, o: &str, e: &str| {
        (s.to_string(), w.to_string(), c.to_string(), o.to_string(), e.to_string())
    };
    let (ob, ac) = ("observer/dev-observer", "actor/dev-actor");
    let expected = vec![
        r("read", ob, "inspect_cluster_state", "", ""),
        r("denied", ac, "/aerodb.control.v1.Auditor/VerifyAudit", "NOT_EXECUTED", "PHASE7_INSUFFICIENT_AUTHORITY"),
        r("requested", ac, "request_demotion", "", ""),
        r("confirmation_requested", ac, "request_demotion", "", ""),
        r("declined", ac, "request_demotion", "NOT_EXECUTED", ""),
        r("requested", ac, "run_diagnostics", "", ""),
        r("confirmation_requested", ac, "run_diagnostics", "", ""),
        r("confirmed", ac, "run_diagnostics", "", ""),
        r("executed", ac, "run_diagnostics", "EXECUTED", ""),
        r("requested", ac, "request_promotion", "", ""),
        r("confirmation_requested", ac, "request_promotion", "", ""),
        r("confirmed", ac, "request_promotion", "", ""),
        r("rejected", ac, "request_promotion", "NOT_EXECUTED", "AERO_PROMOTION_PRIMARY_ACTIVE"),
        r("requested", ac, "run_diagnostics", "", ""),
        r("confirmation_requested", ac, "run_diagnostics", "", ""),
        r("rejected", ac, "run_diagnostics", "NOT_EXECUTED", "PHASE7_CONFIRMATION_EXPIRED"),
        r("requested", ac, "run_diagnostics", "", ""),
        r("replayed", ac, "run_diagnostics", "EXECUTED", ""),
    ];
    assert_eq!(got, expected);
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_f2_sigkill_at_each_point_around_dispatch_keeps_the_trail_and_reconstruction_names_what_is_missing() {
    let mut c = Cluster::start(Spec::default()).await;
    // (point, executed by the kernel, outcome recorded)
    let points = [
        ("control.before_confirmed_record", false, false),
        ("control.after_confirmed_record", false, false),
        ("control.before_dispatch", false, false),
        ("control.after_dispatch", true, false),
        ("control.after_kernel_answer", true, false),
        ("control.before_outcome_record", true, false),
        ("control.before_response", true, true),
    ];
    for (point, executed, recorded) in points {
        c.restart_control(0, &[("AERODB_FAILPOINTS", &format!("{point}=abort"))]).await;
        let k = key("crash");
        let mut actor = c.actor(0);
        let p = request(&mut actor, cpb::Command::RunDiagnostics, "n2", &k).await.unwrap();
        let before: Vec<_> = c.audit_records(0);
        let r = common::confirm_pending(&mut actor, &p).await;
        assert!(r.is_err(), "{point}: the control plane died");
        c.controls[0].proc.wait_exit("the control plane died").await;
        let at_kill = c.audit_records(0);
        assert_eq!(
            &at_kill[..before.len()],
            &before[..],
            "{point}: records acknowledged before the kill are unchanged"
        );
        c.restart_control(0, &[]).await;
        let after_restart = c.audit_records(0);
        assert_eq!(&after_restart[..at_kill.len()], &at_kill[..], "{point}");
        // The only records after the restart are the harness's own readiness reads: the
        // control plane synthesized nothing.
        for b in &after_restart[at_kill.len()..] {
            assert_eq!(b.draft.stage, Stage::Read, "{point}: nothing is synthesized at restart: {b:?}");
            assert_eq!(b.draft.command, "inspect_cluster_state", "{point}");
        }
        assert!(
            aerodb::audit::verify::verify_dir(&c.controls[0].cfg.audit_dir, None).ok,
            "{point}: the chain verifies"
        );
        let decided = common::decided(&c.ledger(1)).iter().filter(|d| d.idempotency_key == k).count();
        assert_eq!(decided, usize::from(executed), "{point}: executed once or not at all");
        let rec = reconstruct(&c, cpb::reconstruct_action_request::Key::IdempotencyKey(k.clone())).await;
        let stages: Vec<&str> = rec.stages.iter().map(|s| s.stage.as_str()).collect();
        let confirmed = point != "control.before_confirmed_record";
        assert_eq!(stages.contains(&"confirmed"), confirmed, "{point}: {stages:?}");
        if confirmed && !recorded {
            assert_eq!(rec.missing_stages, vec!["outcome".to_string()], "{point}");
            assert!(rec.summary.contains("outcome not recorded"), "{point}: {}", rec.summary);
        } else {
            assert!(rec.missing_stages.is_empty(), "{point}: {:?}", rec.missing_stages);
        }
        if executed {
            assert!(rec.kernel_ledger.starts_with("executed at control_seq"), "{point}: {}", rec.kernel_ledger);
        } else {
            assert!(rec.kernel_ledger.starts_with("no decision for this key"), "{point}: {}", rec.kernel_ledger);
        }
        assert!(rec.summary.ends_with(&format!("kernel ledger: {}", rec.kernel_ledger)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_audit_log_at_start_refuses_to_start_and_says_how_to_verify_and_move_it_aside() {
    // Start reads the records from the newest checkpoint on (issue 19): the log was sealed by a
    // checkpoint of its last record, so damage there is what start finds. (Damage below the
    // newest checkpoint is the full verification's to find: see the tamper matrix.)
    let (mut c, _) = real_log().await;
    let seg = c.controls[0].cfg.audit_dir.join("audit-00000000000000000001.log");
    let fr = frames(&seg);
    let (off, len, _) = *fr.last().unwrap();
    let mut b = std::fs::read(&seg).unwrap();
    b[(off + len / 2) as usize] ^= 1;
    // A byte after it, so the damaged record is not the torn tail of a crash.
    b.extend_from_slice(&aerodb::frame::encode(b"not a record"));
    std::fs::write(&seg, b).unwrap();
    let log = c.controls[0].proc.start_expecting_refusal().await;
    assert!(log.contains("aerodbctl audit verify") && log.contains("move the directory aside"), "{log}");
    assert!(log.contains(&format!("byte offset {off}")), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_audit_directory_at_start_refuses_to_start_so_no_mutation_can_execute() {
    let mut c = Cluster::build(Spec::default()).await;
    let mount = c.root.path().join("rofs");
    let Some(fs) = common::Tmpfs::mount(&mount, "1m") else { return };
    fs.remount("ro");
    c.controls[0].cfg.audit_dir = mount.join("audit");
    std::fs::write(&c.controls[0].config_path, toml::to_string(&c.controls[0].cfg).unwrap()).unwrap();
    let log = c.controls[0].proc.start_expecting_refusal().await;
    assert!(log.contains("Read-only file system"), "{log}");
}

#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_handshakes_are_recorded_rate_limited_per_peer_with_the_suppressed_count() {
    let mut spec = Spec::default();
    spec.audit.handshake_records_per_minute = 5;
    let mut c = Cluster::start(spec).await;
    let offset = c.root.path().join("clock");
    std::fs::write(&offset, "0").unwrap();
    c.restart_control(0, &[("AERODB_TEST_CLOCK_OFFSET_FILE", offset.to_str().unwrap())]).await;
    // A flood of handshakes with no client certificate.
    let attempt = || async {
        let mut r = rustls::RootCertStore::empty();
        for cert in aerodb::tls::material::load_certs(&c.pki.dir.join("ca.pem")).unwrap() {
            r.add(cert).unwrap();
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(aerodb::tls::material::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(r)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let ch = aerodb::tls::client::channel(&c.controls[0].addr, aerodb::tls::client::fixed(cfg), Default::default())
            .unwrap();
        let mut o = cpb::observer_client::ObserverClient::new(ch);
        o.get_cluster_state(cpb::GetClusterStateRequest {}).await.unwrap_err();
    };
    let refused_in_log = |c: &Cluster| c.controls[0].proc.log_text().matches("TLS handshake refused").count();
    let before = refused_in_log(&c);
    for _ in 0..40 {
        attempt().await;
    }
    // A client learns of the refusal before the server has finished counting it: wait until the
    // control plane has counted all 40 (it logs each once counted) before its clock moves on.
    wait_for("all 40 refusals counted", WAIT, || async { (refused_in_log(&c) >= before + 40).then_some(()) }).await;
    let count = |c: &Cluster| {
        c.audit_records(0).into_iter().filter(|b| b.draft.stage == Stage::HandshakeRejected).collect::<Vec<_>>()
    };
    wait_for("5 refusals recorded", WAIT, || async { (count(&c).len() >= 5).then_some(()) }).await;
    assert_eq!(count(&c).len(), 5, "at most 5 records per peer per minute");
    assert!(count(&c)[0].draft.detail["reason"].contains("certificate"), "{:?}", count(&c)[0].draft.detail);
    // A minute later (on the control plane's clock), the next refusal records how many were
    // suppressed.
    std::fs::write(&offset, "61000").unwrap();
    attempt().await;
    let summary = wait_for("the suppressed count is recorded", WAIT, || async {
        count(&c).into_iter().find(|b| b.draft.detail.contains_key("suppressed_count"))
    })
    .await;
    assert_eq!(summary.draft.detail["suppressed_count"], "35");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditor_reads_filters_verifies_and_exports_and_never_writes_to_a_kernel() {
    let c = Cluster::start(Spec::default()).await;
    let mut actor = c.actor(0);
    let k = key("aud");
    let done = request_and_confirm(&mut actor, cpb::Command::RunDiagnostics, "n2", &k).await.unwrap();
    let calls = execute_calls(&c).await;
    let mut auditor = c.auditor(0);
    // Filter by correlation id.
    let mut s = auditor
        .read_audit(cpb::ReadAuditRequest { correlation_id: done.correlation_id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let mut stages = Vec::new();
    while let Some(r) = s.message().await.unwrap() {
        stages.push(r.stage);
    }
    assert_eq!(stages, vec!["requested", "confirmation_requested", "confirmed", "executed"]);
    // Bounded pages.
    let mut s =
        auditor.read_audit(cpb::ReadAuditRequest { limit: 3, ..Default::default() }).await.unwrap().into_inner();
    let mut n = 0;
    while s.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    let mut s =
        auditor.read_audit(cpb::ReadAuditRequest { limit: 1000, ..Default::default() }).await.unwrap().into_inner();
    let mut n = 0;
    while s.message().await.unwrap().is_some() {
        n += 1;
    }
    assert!(n <= 1000, "page size is bounded");
    // A page over the bound is the caller's error, never silently clamped.
    let over = auditor.read_audit(cpb::ReadAuditRequest { limit: 1001, ..Default::default() }).await.unwrap_err();
    assert_eq!(over.code(), tonic::Code::InvalidArgument);
    let w = aerodb::wire::WireError::from_status(&over).expect("error info");
    assert_eq!(w.code, "PHASE7_FIELD_TOO_LARGE");
    assert_eq!(w.field_errors[0].field, "limit");
    assert_eq!(w.field_errors[0].description, "at most 1000 (got 1001)");
    // Filter by stage and identity.
    let mut s = auditor
        .read_audit(cpb::ReadAuditRequest {
            stage: "executed".into(),
            identity: "actor/dev-actor".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.message().await.unwrap().unwrap().correlation_id, done.correlation_id);
    // Verify over the wire.
    let v = auditor.verify_audit(cpb::VerifyAuditRequest::default()).await.unwrap().into_inner();
    assert!(v.ok, "{}", v.first_problem);
    // A checkpoint, then offline verification against it.
    let cp = auditor.get_checkpoint(cpb::GetCheckpointRequest {}).await.unwrap().into_inner();
    let file = c.root.path().join("cp.note");
    std::fs::write(&file, &cp.note).unwrap();
    let (code, out) = verify_cli(&c.controls[0].cfg.audit_dir, Some(&file));
    assert_eq!(code, 0, "{out}");
    // Reconstruction by correlation id.
    let rec = reconstruct(&c, cpb::reconstruct_action_request::Key::CorrelationId(done.correlation_id.clone())).await;
    assert_eq!(rec.idempotency_key, k);
    assert_eq!(rec.requested_by, "actor/dev-actor");
    assert!(rec.missing_stages.is_empty());
    assert!(rec.kernel_ledger.starts_with("executed at control_seq"), "{}", rec.kernel_ledger);
    // The Auditor reached no kernel with a mutation.
    assert_eq!(execute_calls(&c).await, calls);
    // Only auditors may use it.
    let mut as_observer = cpb::auditor_client::AuditorClient::new(c.pki.channel(Role::Observer, &c.controls[0].addr));
    let e = as_observer.verify_audit(cpb::VerifyAuditRequest::default()).await.unwrap_err();
    assert_eq!(wire(&e).code, "PHASE7_INSUFFICIENT_AUTHORITY");
    let _ = kpb::Role::Primary;
}

/// P7-O3: reconstruction compares the kernel's decision under a key with the request the trail
/// records, so a later request by someone else under the same key is not credited to this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_o3_reconstruction_never_credits_another_requests_decision_under_the_same_key() {
    let c = Cluster::start(Spec::default()).await;
    let mut actor = c.actor(0);
    let k = key("shared");
    // dev-actor asks for diagnostics on n2 under k, then declines: nothing runs.
    let p = request(&mut actor, cpb::Command::RunDiagnostics, "n2", &k).await.unwrap();
    actor.decline_action(cpb::DeclineActionRequest { confirmation_id: p.confirmation_id.clone() }).await.unwrap();
    // bob then runs the same command under the same key; it executes on n2.
    let mut bob = cpb::actor_client::ActorClient::new(extra_identity(&c, Role::Actor, "bob", &c.controls[0].addr));
    let done = request_and_confirm(&mut bob, cpb::Command::RunDiagnostics, "n2", &k).await.unwrap();
    use cpb::reconstruct_action_request::Key;
    let declined = reconstruct(&c, Key::CorrelationId(p.correlation_id.clone())).await;
    assert_eq!(declined.requested_by, "actor/dev-actor");
    assert!(
        declined.kernel_ledger.contains("for another request") && declined.kernel_ledger.contains("never executed"),
        "{}",
        declined.kernel_ledger
    );
    let executed = reconstruct(&c, Key::CorrelationId(done.correlation_id.clone())).await;
    assert_eq!(executed.requested_by, "actor/bob");
    assert!(executed.kernel_ledger.starts_with("executed at control_seq"), "{}", executed.kernel_ledger);
    // By the key, which gathers both requests: the one that was confirmed and dispatched is the
    // one compared with the ledger.
    let by_key = reconstruct(&c, Key::IdempotencyKey(k.clone())).await;
    assert!(by_key.kernel_ledger.starts_with("executed at control_seq"), "{}", by_key.kernel_ledger);
    let mut auditor = c.auditor(0);
    auditor.verify_audit(cpb::VerifyAuditRequest::default()).await.unwrap();
}

/// Auditor.ReconstructAction by `key`.
async fn reconstruct(c: &Cluster, key: cpb::reconstruct_action_request::Key) -> cpb::Reconstruction {
    c.auditor(0).reconstruct_action(cpb::ReconstructActionRequest { key: Some(key) }).await.unwrap().into_inner()
}
