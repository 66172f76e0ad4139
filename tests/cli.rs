//! Issue 7: aerodbctl end to end against a live cluster, driven through stdin.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::path::Path;
use std::process::{Command, Stdio};

use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use aerodb::tls::identity::Role;
use common::ctl::CtlOut as Out;
use common::{Cluster, Spec, WAIT, aerodbctl_bin, execute_calls, wait_for};

/// Runs aerodbctl with `--profile profile` and `args`, feeding `input` on stdin (then closing it).
fn ctl(profile: &Path, args: &[&str], input: &str) -> Out {
    let mut all = vec![std::ffi::OsStr::new("--profile"), profile.as_os_str()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    common::ctl::run_ctl(&all, &[], input)
}

async fn run(profile: &Path, args: &[&str], input: &str) -> Out {
    let (p, a, i) = (profile.to_path_buf(), args.iter().map(|s| s.to_string()).collect::<Vec<_>>(), input.to_string());
    tokio::task::spawn_blocking(move || ctl(&p, &a.iter().map(|s| s.as_str()).collect::<Vec<_>>(), &i)).await.unwrap()
}

fn key_line(out: &Out) -> String {
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("idempotency key: "), "the idempotency key is printed first: {first:?}");
    first.trim_start_matches("idempotency key: ").split_whitespace().next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_with_the_right_typed_target_executes_once_and_a_wrong_target_or_eof_executes_nothing() {
    let c = Cluster::start(Spec::default()).await;
    let actor = c.pki.profile(Role::Actor, &c.controls[0].addr);
    let before = execute_calls(&c).await;

    // A wrong typed target declines; nothing runs.
    let out = run(&actor, &["demote", "n1"], "n2\n").await;
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    key_line(&out);
    assert!(out.stdout.contains("declined") && out.stdout.contains("nothing was executed"), "{}", out.stdout);
    // End of input declines too.
    let out = run(&actor, &["demote", "n1"], "").await;
    assert_eq!(out.code, 4);
    assert!(out.stdout.contains("declined (end of input)"), "{}", out.stdout);
    assert_eq!(execute_calls(&c).await, before, "no kernel call");
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary));

    // The right target executes, once.
    let out = run(&actor, &["demote", "n1"], "n1\n").await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let k = key_line(&out);
    assert!(
        out.stdout.contains("kernel checks") && out.stdout.contains("cannot be undone"),
        "the explanation is shown"
    );
    assert!(out.stdout.contains("EXECUTED at control_seq"), "{}", out.stdout);
    assert_eq!(common::decided(&c.ledger(0)).iter().filter(|d| d.idempotency_key == k).count(), 1);
    wait_for("n2 has the Fence", WAIT, || async { c.observe(1).await?.promotion?.current_epoch_fenced.then_some(()) })
        .await;
    let out = run(&actor, &["promote", "n2"], "n2\n").await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    c.wait_role(1, kpb::Role::Primary).await;
    // The outcome of a key, from the kernels' ledgers.
    let observer = c.pki.profile(Role::Observer, &c.controls[0].addr);
    let out = run(&observer, &["outcome", &k], "").await;
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("DECIDED") && out.stdout.contains("EXECUTED"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_parses_and_matches_the_rpc_answer() {
    let c = Cluster::start(Spec::default()).await;
    let observer = c.pki.profile(Role::Observer, &c.controls[0].addr);
    let out = run(&observer, &["--json", "status"], "").await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let rpc = c.observer(0).get_cluster_state(cpb::GetClusterStateRequest {}).await.unwrap().into_inner();
    assert_eq!(v["cluster_id"], rpc.cluster_id);
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), rpc.nodes.len());
    for (j, n) in nodes.iter().zip(&rpc.nodes) {
        assert_eq!(j["node_id"], n.node_id);
        let Some(cpb::node_entry::State::Snapshot(s)) = &n.state else { panic!() };
        let role = kpb::Role::try_from(s.authority.as_ref().unwrap().role).unwrap().as_str_name();
        assert_eq!(j["snapshot"]["authority"]["role"], role);
        assert_eq!(j["snapshot"]["replication"]["last_index"], s.replication.as_ref().unwrap().last_index);
    }
    // Every view command emits one JSON document.
    for cmd in [
        &["--json", "replication"][..],
        &["--json", "promotion"],
        &["--json", "wal"],
        &["--json", "snapshots"],
        &["--json", "node", "n2"],
    ] {
        let out = run(&observer, cmd, "").await;
        assert_eq!(out.code, 0, "{cmd:?}: {}", out.stderr);
        serde_json::from_str::<serde_json::Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("{cmd:?}: {e}: {}", out.stdout));
    }
    // A mutation's JSON carries the kernel's record.
    let actor = c.pki.profile(Role::Actor, &c.controls[0].addr);
    let out = run(&actor, &["--json", "diag", "n3"], "n3\n").await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let k = v["idempotency_key"].as_str().unwrap().to_string();
    let d = common::decided(&c.ledger(2)).into_iter().find(|d| d.idempotency_key == k).unwrap();
    let seq = c
        .ledger(2)
        .iter()
        .find(|r| matches!(&r.body, aerodb::kernel::records::LedgerEvent::Decided(x) if x.idempotency_key == k))
        .unwrap()
        .control_seq;
    assert_eq!(v["response"]["record"]["control_seq"], seq);
    assert_eq!(v["response"]["outcome"], "ACTION_OUTCOME_EXECUTED");
    assert_eq!(v["response"]["record"]["action"]["kind"], "ACTION_KIND_DIAGNOSTICS");
    let _ = d;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_step_mode_request_only_then_confirm() {
    let c = Cluster::start(Spec::default()).await;
    let actor = c.pki.profile(Role::Actor, &c.controls[0].addr);
    let out = run(&actor, &["demote", "n1", "--request-only", "--key", "two-step-1"], "").await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["idempotency_key"], "two-step-1");
    let p = &v["pending_action"];
    assert_eq!(p["requirements"]["typed_target"], "n1");
    let confirm = v["confirm_command"].as_str().unwrap();
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary), "nothing executed yet");
    let args: Vec<&str> = confirm.split_whitespace().skip(1).collect();
    let out = run(&actor, &args, "").await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("demoted; Fence at index"), "{}", out.stdout);
    assert_eq!(c.role(0).await, Some(kpb::Role::Demoted));
    // The same confirmation again is refused (exit 3: rejected).
    let out = run(&actor, &args, "").await;
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("PHASE7_CONFIRMATION_REUSED"), "{}", out.stderr);
}

/// P7-A2: two-step mode never hands out a prepared enhanced confirmation: the printed command
/// lacks the typed target, every acknowledgement and the acceptance, and says what to type; the
/// command as printed is refused and executes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_a2_two_step_force_promotion_prints_no_prepared_acknowledgements() {
    let mut c = Cluster::start(Spec::default()).await;
    c.nodes[0].proc.kill();
    let actor = c.pki.profile(Role::Actor, &c.controls[0].addr);
    let out = run(&actor, &["force-promote", "n2", "--request-only", "--key", "two-step-force"], "").await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let confirm = v["confirm_command"].as_str().unwrap();
    for part in ["--ack", "--accept-responsibility", "--typed-target"] {
        assert!(!confirm.contains(part), "{part} prepared in {confirm}");
    }
    let must_add = v["confirm_must_add"].as_str().unwrap();
    for part in ["--typed-target", "--ack P6-A1a", "--accept-responsibility"] {
        assert!(must_add.contains(part), "{part} missing from {must_add}");
    }
    let args: Vec<&str> = confirm.split_whitespace().skip(1).collect();
    let out = run(&actor, &args, "").await;
    assert_ne!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(c.role(1).await, Some(kpb::Role::Replica), "nothing executed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_promote_walks_through_the_enhanced_confirmation() {
    let mut c = Cluster::start(Spec::default()).await;
    c.nodes[0].proc.kill();
    let actor = c.pki.profile(Role::Actor, &c.controls[0].addr);
    // Missing the acceptance sentence: declined.
    let out = run(&actor, &["force-promote", "n2"], "n2\nP6-A1\nP6-A1a\nyes\n").await;
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("responsibility not accepted"));
    assert_eq!(c.role(1).await, Some(kpb::Role::Replica));
    let out = run(&actor, &["force-promote", "n2"], "n2\nP6-A1\nP6-A1a\nI accept responsibility\n").await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("(forced)"), "{}", out.stdout);
    assert!(out.stderr.contains("I, dev-actor, assert that the previous primary is gone"), "{}", out.stderr);
    c.wait_role(1, kpb::Role::Primary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_profile_gets_a_clear_insufficient_authority_message_and_exit_code_3() {
    let c = Cluster::start(Spec::default()).await;
    let observer = c.pki.profile(Role::Observer, &c.controls[0].addr);
    let out = run(&observer, &["demote", "n1"], "n1\n").await;
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("insufficient authority"), "{}", out.stderr);
    assert!(out.stderr.contains("PHASE7_INSUFFICIENT_AUTHORITY") && out.stderr.contains("P7-A1"), "{}", out.stderr);
    let out = run(&observer, &["--json", "demote", "n1"], "n1\n").await;
    assert_eq!(out.code, 3);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "PHASE7_INSUFFICIENT_AUTHORITY");
    assert_eq!(v["exit_code"], 3);
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_from_environment_errors_show_code_domain_outcome_invariants_and_usage_errors_exit_2() {
    let c = Cluster::start(Spec::default()).await;
    let p = |role: Role| c.pki.dir.join(format!("{role}.pem"));
    let out = tokio::task::spawn_blocking({
        let (ca, cert, key, ep) =
            (c.pki.dir.join("ca.pem"), p(Role::Observer), c.pki.dir.join("observer.key"), c.controls[0].addr.clone());
        move || {
            Command::new(aerodbctl_bin())
                .args(["node", "n9"])
                .env("AERODB_ENDPOINT", ep)
                .env("AERODB_CA", ca)
                .env("AERODB_CERT", cert)
                .env("AERODB_KEY", key)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    for needle in
        ["PHASE7_UNKNOWN_NODE", "domain:     OPERATOR_INPUT", "outcome:    NOT_EXECUTED", "field:      node_id"]
    {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    // No connection settings at all: a usage error.
    let out = Command::new(aerodbctl_bin())
        .arg("status")
        .env_remove("AERODB_PROFILE")
        .env_remove("AERODB_ENDPOINT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // There is no --yes.
    let out = Command::new(aerodbctl_bin()).args(["demote", "n1", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_and_audit_subcommands_work_with_their_profiles() {
    let c = Cluster::start(Spec::default()).await;
    let client = c.pki.profile(Role::Client, &c.nodes[0].addr);
    assert_eq!(run(&client, &["kv", "put", "greeting", "hello"], "").await.code, 0);
    let out = run(&client, &["kv", "get", "greeting"], "").await;
    assert_eq!(out.stdout.trim(), "hello");
    let auditor = c.pki.profile(Role::Auditor, &c.controls[0].addr);
    let out = run(&auditor, &["audit", "tail", "--limit", "5"], "").await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.lines().count() <= 5);
    let out = run(&auditor, &["audit", "verify"], "").await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(out.stdout.starts_with("OK:"));
}

/// Issue 18, aerodbctl's rough edges: a closed stdout ends the process with 0 and no message;
/// `kv get` of a missing key and `audit show` matching nothing exit 8 (not found); `--json`
/// audit records carry their body as a JSON object; `version` and `whoami` answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_stdout_is_quiet_missing_things_exit_8_and_json_audit_records_are_structured() {
    let c = Cluster::start(Spec::default()).await;
    let observer = c.pki.profile(Role::Observer, &c.controls[0].addr);
    // stdout is a pipe whose reader is already gone: the first write fails with EPIPE.
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(aerodbctl_bin())
            .arg("--profile")
            .arg(&observer)
            .args(["--json", "status"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(write))
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "quietly");

    let client = c.pki.profile(Role::Client, &c.nodes[0].addr);
    let out = run(&client, &["kv", "get", "no-such-key"], "").await;
    assert_eq!(out.code, 8, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("(not found)"));
    assert_eq!(run(&client, &["kv", "put", "k", "v"], "").await.code, 0);
    assert_eq!(run(&client, &["kv", "get", "k"], "").await.code, 0);

    let auditor = c.pki.profile(Role::Auditor, &c.controls[0].addr);
    let out = run(&auditor, &["audit", "show", "--key", "never-used"], "").await;
    assert_eq!(out.code, 8, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("no audit record matches key never-used"), "{}", out.stderr);
    let out = run(&auditor, &["--json", "audit", "tail", "--limit", "3"], "").await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let records = doc["records"].as_array().unwrap();
    assert!(!records.is_empty());
    for r in records {
        assert!(r["body"].is_object(), "the body is structured: {r}");
        assert!(r["body"]["draft"].is_object() || r["body"]["stage"].is_string(), "{r}");
        assert!(r.get("body_json").is_none(), "{r}");
    }

    let out = run(&auditor, &["version"], "").await;
    assert_eq!((out.code, out.stdout.trim()), (0, format!("aerodbctl {}", env!("CARGO_PKG_VERSION")).as_str()));
    let out = run(&auditor, &["--json", "whoami"], "").await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let me: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(me["role"], "auditor");
    assert_eq!(me["principal"], format!("auditor/{}", me["name"].as_str().unwrap()));
    assert_eq!(me["cert_sha256"].as_str().unwrap().len(), 64);
}

/// Issue 18: Ctrl-C at a confirmation prompt declines the pending action (a `declined` audit
/// record for its key), sends nothing to a kernel, and ends with 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_at_the_confirmation_prompt_declines_the_action_and_exits_130() {
    let c = Cluster::start(Spec::default()).await;
    let actor = c.pki.profile(Role::Actor, &c.controls[0].addr);
    let before = execute_calls(&c).await;
    let out_path = c.root.path().join("ctl.out");
    let err_path = c.root.path().join("ctl.err");
    let mut child = Command::new(aerodbctl_bin())
        .arg("--profile")
        .arg(&actor)
        .args(["demote", "n1", "--key", "interrupted-1"])
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let _stdin = child.stdin.take();
    wait_for("the prompt is shown", WAIT, || {
        let err = std::fs::read_to_string(&err_path).unwrap_or_default();
        async move { err.contains("Type the target node id").then_some(()) }
    })
    .await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    assert_eq!(status.code(), Some(130), "{stdout}{}", std::fs::read_to_string(&err_path).unwrap());
    assert!(stdout.contains("declined (interrupted): nothing was executed"), "{stdout}");
    let declined = c
        .audit_records(0)
        .into_iter()
        .filter(|b| {
            b.draft.stage == aerodb::audit::record::Stage::Declined && b.draft.idempotency_key == "interrupted-1"
        })
        .count();
    assert_eq!(declined, 1, "the decline is on the record");
    assert_eq!(execute_calls(&c).await, before, "no kernel call");
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary));
}

/// A profile for a certificate signed by `ca` (or written as given) with role observer.
fn observer_profile_for(dir: &Path, stem: &str, issued: &aerodb::pki::Issued, endpoint: &str) -> std::path::PathBuf {
    let (cert, key) = issued.write(dir, stem).unwrap();
    let p = aerodb::pki::profile::Profile {
        endpoint: endpoint.into(),
        trust_domain: "aerodb.local".into(),
        ca: dir.join("ca.pem"),
        cert,
        key,
        server: None,
    };
    let path = dir.join(format!("{stem}.profile.toml"));
    p.write(&path).unwrap();
    path
}

fn observer_leaf(name: &str, days_from: i64, days_to: i64) -> aerodb::pki::LeafSpec {
    let now = time::OffsetDateTime::now_utc();
    aerodb::pki::LeafSpec {
        common_name: name.into(),
        sans: vec![rcgen::SanType::URI(format!("spiffe://aerodb.local/role/observer/id/{name}").try_into().unwrap())],
        ekus: vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth],
        is_ca: false,
        not_before: now + time::Duration::days(days_from),
        not_after: now + time::Duration::days(days_to),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_certificate_is_named_revoked_expired_or_unknown_ca_and_exits_9() {
    let c = Cluster::start(Spec { nodes: 1, control_planes: 1, ..Default::default() }).await;
    let dir = &c.pki.dir;
    let addr = &c.controls[0].addr;
    let ca = aerodb::pki::Ca::load(dir).unwrap();
    let other_ca = aerodb::pki::Ca::create("aerodb.local", time::OffsetDateTime::now_utc(), 10).unwrap();

    let expired = observer_profile_for(dir, "expired-ctl", &ca.sign(&observer_leaf("expired", -10, -1)).unwrap(), addr);
    let foreign =
        observer_profile_for(dir, "foreign-ctl", &other_ca.sign(&observer_leaf("foreign", -1, 1)).unwrap(), addr);
    let revoked_issued = ca.sign(&observer_leaf("revoked", -1, 1)).unwrap();
    let revoked = observer_profile_for(dir, "revoked-ctl", &revoked_issued, addr);
    aerodb::pki::revoke(dir, &dir.join("revoked-ctl.pem"), time::OffsetDateTime::now_utc()).unwrap();
    let pid = c.controls[0].proc.child.as_ref().unwrap().id() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP).unwrap();

    let out = run(&expired, &["status"], "").await;
    assert_eq!(out.code, 9, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("the server refused this client certificate"), "{}", out.stderr);
    assert!(out.stderr.contains("expired or not yet valid"), "{}", out.stderr);
    assert!(out.stderr.contains("NOT_EXECUTED"), "{}", out.stderr);

    let out = run(&foreign, &["status"], "").await;
    assert_eq!(out.code, 9, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("the server refused this client certificate"), "{}", out.stderr);
    assert!(out.stderr.contains("it was not issued by the CA in"), "{}", out.stderr);

    // The reloaded CRL is in service once a fresh handshake with the revoked certificate fails.
    let out = wait_for("the revoked certificate refused", WAIT, || {
        let revoked = revoked.clone();
        async move {
            let out = run(&revoked, &["--json", "status"], "").await;
            (out.code != 0).then_some(out)
        }
    })
    .await;
    assert_eq!(out.code, 9, "{}{}", out.stdout, out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(v["error"]["code"], "CERTIFICATE_REFUSED");
    assert!(v["error"]["message"].as_str().unwrap().contains("it is revoked"), "{v}");
    assert_eq!(v["exit_code"], 9);

    // A good certificate is not affected.
    let good = c.pki.profile(Role::Observer, addr);
    assert_eq!(run(&good, &["status"], "").await.code, 0);
}

/// Runs aerodbctl with `args` (no `--profile` added) in the working directory `cwd`.
async fn ctl_in(cwd: &Path, args: &[&str]) -> Out {
    let (cwd, args) = (cwd.to_path_buf(), args.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    tokio::task::spawn_blocking(move || {
        let out = Command::new(aerodbctl_bin()).args(&args).current_dir(cwd).stdin(Stdio::null()).output().unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_relative_paths_resolve_against_the_profile_folder_not_the_working_directory() {
    let c = Cluster::start(Spec { nodes: 1, control_planes: 1, ..Default::default() }).await;
    let paths = c.pki.paths(Role::Observer);
    let name = |p: &Path| p.file_name().unwrap().to_str().unwrap().to_string();
    let profile = c.pki.dir.join("relative.profile.toml");
    std::fs::write(
        &profile,
        format!(
            "endpoint = \"{}\"\ntrust_domain = \"aerodb.local\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            c.controls[0].addr,
            name(&paths.ca),
            name(&paths.cert),
            name(&paths.key)
        ),
    )
    .unwrap();
    assert_eq!(paths.cert.parent().unwrap(), c.pki.dir, "the certificate sits beside the profile");
    // Run from a folder holding none of the files: only the profile's folder has them.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = ctl_in(elsewhere.path(), &["--profile", profile.to_str().unwrap(), "status"]).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("cluster test"), "{}", out.stdout);
    // A relative profile path given on the command line is itself relative to the working dir.
    let out = ctl_in(&c.pki.dir, &["--profile", "relative.profile.toml", "whoami"]).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("observer/"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_key_flag_is_client_key_and_key_stays_the_idempotency_key() {
    let c = Cluster::start(Spec { nodes: 1, control_planes: 1, ..Default::default() }).await;
    let p = c.pki.paths(Role::Observer);
    let args = [
        "--endpoint",
        c.controls[0].addr.as_str(),
        "--ca",
        p.ca.to_str().unwrap(),
        "--cert",
        p.cert.to_str().unwrap(),
        "--client-key",
        p.key.to_str().unwrap(),
        "status",
    ];
    let out = ctl_in(&c.pki.dir, &args).await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // `--key` is not a connection flag: given before a command that has no idempotency key it
    // is a usage error, never taken as the TLS key.
    let mut bad = args.to_vec();
    bad[6] = "--key";
    let out = ctl_in(&c.pki.dir, &bad).await;
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    let help = ctl_in(&c.pki.dir, &["demote", "--help"]).await;
    assert!(help.stdout.contains("--key <KEY>") && help.stdout.contains("idempotency key"), "{}", help.stdout);
    assert!(help.stdout.contains("--client-key <CLIENT_KEY>"), "{}", help.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_refreshes_with_the_observation_time_until_count_or_ctrl_c() {
    let c = Cluster::start(Spec::default()).await;
    let observer = c.pki.profile(Role::Observer, &c.controls[0].addr);

    let out = run(&observer, &["--json", "status", "--watch", "--interval", "0.2", "--count", "3"], "").await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let lines: Vec<serde_json::Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "one JSON line per refresh, bounded by --count: {}", out.stdout);
    let mut times = Vec::new();
    for l in &lines {
        let at = l["observed_at"].as_str().unwrap();
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
        times.push(at.to_string());
        assert_eq!(l["cluster_state"]["nodes"].as_array().unwrap().len(), 3, "{l}");
    }
    assert!(times.windows(2).all(|w| w[0] < w[1]), "each refresh observes anew: {times:?}");

    // Without --count it runs until Ctrl-C (SIGINT), then ends with 0.
    let mut child = Command::new(aerodbctl_bin())
        .arg("--profile")
        .arg(&observer)
        .args(["status", "--watch", "--interval", "0.2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(child.stdout.take().unwrap());
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut headers = 0;
    let mut seen = Vec::new();
    while headers < 2 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("two refreshes within {WAIT:?}: {seen:?}"));
        if line.starts_with("observed at ") && line.contains("Ctrl-C stops") {
            headers += 1;
        }
        seen.push(line);
    }
    assert!(seen.iter().any(|l| l.starts_with("n1    primary")), "{seen:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert_eq!(status.code(), Some(0), "Ctrl-C ends a watch with 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_scripts_for_bash_zsh_and_fish_name_the_commands_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = ctl_in(dir.path(), &["completion", shell]).await;
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        for word in ["aerodbctl", "status", "force-promote", "watch", "client-key", "profile", "completion"] {
            assert!(out.stdout.contains(word), "{shell} completion lacks {word}");
        }
    }
    let out = ctl_in(dir.path(), &["completion", "bash"]).await;
    let script = dir.path().join("aerodbctl.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    if let Ok(check) = Command::new("bash").arg("-n").arg(&script).output() {
        assert!(check.status.success(), "bash -n: {}", String::from_utf8_lossy(&check.stderr));
    }
    assert_eq!(ctl_in(dir.path(), &["completion", "tcsh"]).await.code, 2, "an unknown shell is a usage error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_writes_and_reads_follow_not_primary_to_the_new_primary_after_a_switchover() {
    let c = Cluster::start(Spec::default()).await;
    let client = c.pki.profile(Role::Client, &c.nodes[0].addr);
    assert_eq!(run(&client, &["kv", "put", "before", "1"], "").await.code, 0);
    let mut actor = c.actor(0);
    common::request_and_confirm(&mut actor, cpb::Command::RequestDemotion, "n1", &common::key("d")).await.unwrap();
    // The Fence reached a majority, not necessarily n2.
    wait_for("n2 has the Fence", WAIT, || async { c.observe(1).await?.promotion?.current_epoch_fenced.then_some(()) })
        .await;
    common::request_and_confirm(&mut actor, cpb::Command::RequestPromotion, "n2", &common::key("p")).await.unwrap();
    c.wait_role(1, kpb::Role::Primary).await;

    // n1 names the primary and its address in the refusal (once it has learned of n2).
    let err = wait_for("n1 names n2 as the primary", WAIT, || {
        let mut data = c.data(0);
        async move {
            let err = data
                .put(kpb::PutRequest { key: b"direct".to_vec(), value: b"x".to_vec() })
                .await
                .expect_err("n1 is demoted");
            common::wire(&err).extra.iter().any(|(k, v)| k == "primary" && v == "n2").then_some(err)
        }
    })
    .await;
    let w = common::wire(&err);
    assert_eq!(w.code, "AERO_NOT_PRIMARY");
    let extra: std::collections::BTreeMap<_, _> = w.extra.iter().cloned().collect();
    assert_eq!(extra.get("primary").map(String::as_str), Some("n2"), "{extra:?}");
    assert_eq!(extra.get("primary_address"), Some(&c.nodes[1].addr), "{extra:?}");

    // With only n1 configured, the write follows the address n1 names.
    let out = run(&client, &["kv", "put", "after", "2"], "").await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains(&format!("trying {}", c.nodes[1].addr)), "{}", out.stderr);
    // With the whole list (n1 first), a read finds the primary too.
    let all = c.nodes.iter().map(|n| n.addr.clone()).collect::<Vec<_>>().join(",");
    let out = run(&client, &["--endpoints", &all, "kv", "get", "after"], "").await;
    assert_eq!((out.code, out.stdout.trim()), (0, "2"), "{}", out.stderr);
    // A node that is not the primary and names none (n3 after n2 is demoted): the list is tried
    // in order, each node once, and the refusal is reported when no node takes the write.
    common::request_and_confirm(&mut actor, cpb::Command::RequestDemotion, "n2", &common::key("d2")).await.unwrap();
    c.wait_role(1, kpb::Role::Demoted).await;
    let out = run(&client, &["--endpoints", &all, "kv", "put", "nowhere", "3"], "").await;
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("AERO_NOT_PRIMARY"), "{}", out.stderr);
    assert!(out.stderr.matches("trying").count() <= 2, "each node at most once: {}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_put_with_an_unknown_outcome_prints_the_key_and_kv_get_not_an_outcome_command() {
    let mut spec = Spec::default();
    spec.timing.write_ack_timeout_ms = 300;
    let c = Cluster::start(spec).await;
    let client = c.pki.profile(Role::Client, &c.nodes[0].addr);
    // No majority: the write cannot be acknowledged in time.
    c.nodes[1].proc.pause();
    c.nodes[2].proc.pause();
    let out = run(&client, &["kv", "put", "maybe", "v"], "").await;
    c.nodes[1].proc.resume();
    c.nodes[2].proc.resume();
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("outcome:    UNKNOWN"), "{}", out.stderr);
    assert!(out.stderr.contains("aerodbctl kv get maybe"), "{}", out.stderr);
    assert!(!out.stderr.contains("aerodbctl outcome"), "no idempotency-key advice for a kv write: {}", out.stderr);
}

/// Eight consecutive free loopback ports (taken from the harness's allocator, so no other test
/// of this process is handed them): a base port for `aerodb dev`.
fn dev_base_port() -> u16 {
    loop {
        let ports: Vec<u16> = (0..8).map(|_| common::free_port()).collect();
        if ports.windows(2).all(|w| w[1] == w[0] + 1) {
            return ports[0];
        }
    }
}

/// `aerodb dev` started on `base`, with the lines it printed up to its `roles now:` line.
fn start_dev(data: &Path, certs: &Path, base: u16) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(common::aerodb_bin())
        .args(["dev", "--data-dir", data.to_str().unwrap(), "--certs-dir", certs.to_str().unwrap()])
        .args(["--base-port", &base.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = lines_of(child.stdout.take().unwrap());
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("aerodb dev printed no roles: {lines:?}");
        };
        let done = line.starts_with("roles now: ");
        lines.push(line);
        if done {
            return (child, lines);
        }
    }
}

fn stop_dev(mut child: std::process::Child) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "aerodb dev did not stop on SIGINT");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_rewrites_profiles_when_the_base_port_changes_and_prints_the_roles_it_observes() {
    let root = tempfile::tempdir().unwrap();
    let (data, certs) = (root.path().join("data"), root.path().join("certs"));
    let first = dev_base_port();
    let (d, c2) = (data.clone(), certs.clone());
    let (child, lines) = tokio::task::spawn_blocking(move || start_dev(&d, &c2, first)).await.unwrap();
    assert!(lines.contains(&"roles now: n1 (primary), n2 (replica), n3 (replica)".to_string()), "{lines:?}");
    // Demote n1: no primary remains, and the next start must say so rather than "n1 (primary)".
    let actor = certs.join("actor.profile.toml");
    let out = run(&actor, &["demote", "n1"], "n1\n").await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    tokio::task::spawn_blocking(move || stop_dev(child)).await.unwrap();

    let second = dev_base_port();
    let (d, c2) = (data.clone(), certs.clone());
    let (child, lines) = tokio::task::spawn_blocking(move || start_dev(&d, &c2, second)).await.unwrap();
    let roles = lines.iter().find(|l| l.starts_with("roles now: ")).unwrap().clone();
    assert_eq!(roles, "roles now: n1 (demoted), n2 (replica), n3 (replica)", "{lines:?}");
    for role in ["observer", "actor", "auditor", "client"] {
        let path = certs.join(format!("{role}.profile.toml"));
        assert!(lines.iter().any(|l| l.starts_with("updated ") && l.contains(path.to_str().unwrap())), "{lines:?}");
        let (p, endpoints) = aerodb::pki::profile::Profile::read_with_endpoints(&path).unwrap();
        if role == "client" {
            assert_eq!(p.endpoint, format!("127.0.0.1:{}", second + 1));
            let want: Vec<String> = (1..=3).map(|i| format!("127.0.0.1:{}", second + i)).collect();
            assert_eq!(endpoints, want);
        } else {
            assert_eq!(p.endpoint, format!("127.0.0.1:{second}"), "{role}");
        }
    }
    // The rewritten observer profile reaches the running cluster.
    let out = run(&certs.join("observer.profile.toml"), &["status"], "").await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("n1    demoted"), "{}", out.stdout);
    tokio::task::spawn_blocking(move || stop_dev(child)).await.unwrap();
}

/// The lines a child prints, one by one, as they come (read on a thread of their own).
fn lines_of(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
