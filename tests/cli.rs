//! Issue 7: aerodbctl end to end against a live cluster, driven through stdin.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use aerodb::tls::identity::Role;
use common::{AERODBCTL, Cluster, Spec, WAIT, execute_calls, wait_for};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs aerodbctl with `args`, feeding `input` on stdin (then closing it).
fn ctl(profile: &Path, args: &[&str], input: &str) -> Out {
    let mut child = Command::new(AERODBCTL)
        .arg("--profile")
        .arg(profile)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
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
        .find(|r| matches!(&r.body, aerodb::kernel::records::Body::Decided(x) if x.idempotency_key == k))
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
            Command::new(AERODBCTL)
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
    let out = Command::new(AERODBCTL)
        .arg("status")
        .env_remove("AERODB_PROFILE")
        .env_remove("AERODB_ENDPOINT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // There is no --yes.
    let out = Command::new(AERODBCTL).args(["demote", "n1", "--yes"]).output().unwrap();
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
        Command::new(AERODBCTL)
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
    let mut child = Command::new(AERODBCTL)
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
