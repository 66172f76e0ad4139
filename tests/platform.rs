//! Issue 18: fitting the platform. Prometheus metrics scraped from a node and the control plane
//! after traffic, JSON log lines that name their node, `grpc.health.v1` per service (the Actor
//! NOT_SERVING while the audit cannot be written), and `aerodb node|control check`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::time::Duration;

use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use aerodb::tls::identity::Role;
use common::{Cluster, Spec, WAIT, key, request, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// `GET /metrics` over plain HTTP/1.1; the body.
async fn scrape(addr: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect to the metrics endpoint");
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out)).await.expect("scrape answered").unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// The value of one series (`name{labels}` exactly as exposed), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.trim().parse().unwrap()))
}

/// The sum of every series of a metric (all label sets).
fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum()
}

fn metrics_address(c: &Cluster, node: Option<usize>) -> String {
    match node {
        Some(i) => c.nodes[i].cfg.metrics_address.clone(),
        None => c.controls[0].cfg.metrics_address.clone(),
    }
    .expect("the test cluster serves metrics")
}

const NODE_METRICS: &[&str] = &[
    "aerodb_grpc_server_handled_total",
    "aerodb_grpc_server_handling_seconds_bucket",
    "aerodb_connections_open",
    "aerodb_tls_handshakes_refused_total",
    "aerodb_node_role",
    "aerodb_node_epoch",
    "aerodb_node_commit_index",
    "aerodb_node_durable_index",
    "aerodb_node_applied_index",
    "aerodb_node_replication_lag_entries",
    "aerodb_node_wal_bytes",
    "aerodb_node_ledger_bytes",
    "aerodb_wal_fsync_duration_seconds_bucket",
    "aerodb_wal_batch_entries_bucket",
    "aerodb_wal_written_bytes_total",
];

const CONTROL_METRICS: &[&str] = &[
    "aerodb_grpc_server_handled_total",
    "aerodb_grpc_server_handling_seconds_bucket",
    "aerodb_connections_open",
    "aerodb_audit_records_total",
    "aerodb_audit_fsyncs_total",
    "aerodb_audit_written_bytes_total",
    "aerodb_audit_batch_records_bucket",
    "aerodb_audit_fsync_duration_seconds_bucket",
    "aerodb_audit_unavailable",
    "aerodb_control_confirmations_total",
];

fn assert_names(text: &str, names: &[&str], what: &str) {
    for n in names {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{n}{{")) || l.starts_with(&format!("{n} "))),
            "{what} exposes {n}:\n{text}"
        );
    }
    for l in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        assert!(l.starts_with("aerodb_"), "{what}: every series has the aerodb_ prefix: {l}");
    }
}

/// P7-O1, V-12: both processes serve Prometheus metrics; after traffic (writes, reads, a denied
/// call, a declined action, a refused handshake) the counters for exactly that traffic moved, and
/// the node's state (role, indexes, lag) is there. Recording them changed no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_o1_node_and_control_plane_metrics_name_the_traffic_and_its_counters_move() {
    let c = Cluster::start(Spec::default()).await;
    let node = metrics_address(&c, Some(0));
    let control = metrics_address(&c, None);
    let node_before = scrape(&node).await;
    let control_before = scrape(&control).await;

    let mut data = c.data(0);
    for i in 0..5u8 {
        data.put(kpb::PutRequest { key: vec![b'k', i], value: vec![i] }).await.expect("put");
    }
    let mut observer = c.observer(0);
    observer.get_cluster_state(cpb::GetClusterStateRequest {}).await.expect("read");
    // An observer may not act: PERMISSION_DENIED, counted under the Actor's method.
    let denied = cpb::actor_client::ActorClient::new(c.pki.channel(Role::Observer, &c.controls[0].addr))
        .request_action(cpb::RequestActionRequest {
            command: cpb::Command::RequestDemotion as i32,
            target_node: "n1".into(),
            idempotency_key: key("denied"),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let mut actor = c.actor(0);
    let pending = request(&mut actor, cpb::Command::RequestDemotion, "n1", &key("metrics")).await.unwrap();
    actor
        .decline_action(cpb::DeclineActionRequest { confirmation_id: pending.confirmation_id.clone() })
        .await
        .expect("decline");
    // A connection that is not TLS at all: a refused handshake.
    {
        let mut s = tokio::net::TcpStream::connect(&c.nodes[0].addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut sink)).await;
    }

    // A call is counted when its answer's trailers pass, and the refusal in its own task: wait
    // (bounded) until both show.
    let node_after = wait_for("the node counts the refused handshake", WAIT, || {
        let node = node.clone();
        async move {
            let t = scrape(&node).await;
            (sum(&t, "aerodb_tls_handshakes_refused_total") >= 1.0).then_some(t)
        }
    })
    .await;
    let control_after = wait_for("the control plane counts the decline", WAIT, || {
        let control = control.clone();
        async move {
            let t = scrape(&control).await;
            value(
                &t,
                "aerodb_grpc_server_handled_total{service=\"aerodb.control.v1.Actor\",method=\"DeclineAction\",code=\"OK\"}",
            )
            .is_some()
            .then_some(t)
        }
    })
    .await;
    assert_names(&node_after, NODE_METRICS, "the node");
    assert_names(&control_after, CONTROL_METRICS, "the control plane");

    let puts = "aerodb_grpc_server_handled_total{service=\"aerodb.kernel.v1.Data\",method=\"Put\",code=\"OK\"}";
    assert_eq!(value(&node_before, puts).unwrap_or(0.0), 0.0);
    assert_eq!(value(&node_after, puts), Some(5.0), "five puts");
    assert_eq!(
        value(
            &node_after,
            "aerodb_grpc_server_handling_seconds_count{service=\"aerodb.kernel.v1.Data\",method=\"Put\"}"
        ),
        Some(5.0)
    );
    assert_eq!(value(&node_after, "aerodb_node_role{role=\"primary\"}"), Some(1.0));
    assert_eq!(value(&node_after, "aerodb_node_role{role=\"replica\"}"), Some(0.0));
    assert!(value(&node_after, "aerodb_node_commit_index").unwrap() >= 6.0, "genesis entries and five puts");
    assert!(value(&node_after, "aerodb_node_epoch").unwrap() >= 1.0);
    assert!(value(&node_after, "aerodb_node_replication_lag_entries{peer=\"n2\"}").is_some());
    assert!(value(&node_after, "aerodb_node_replication_lag_entries{peer=\"n3\"}").is_some());
    assert!(
        value(&node_after, "aerodb_wal_fsync_duration_seconds_count").unwrap()
            > value(&node_before, "aerodb_wal_fsync_duration_seconds_count").unwrap_or(0.0),
        "WAL fsyncs counted"
    );
    assert!(
        value(&node_after, "aerodb_wal_written_bytes_total").unwrap()
            > value(&node_before, "aerodb_wal_written_bytes_total").unwrap_or(0.0)
    );
    assert!(value(&node_after, "aerodb_connections_open{role=\"node\"}").unwrap() >= 1.0, "peers pull from n1");

    let read = "aerodb_grpc_server_handled_total{service=\"aerodb.control.v1.Observer\",method=\"GetClusterState\",\
                code=\"OK\"}";
    assert!(value(&control_after, read).unwrap() > value(&control_before, read).unwrap_or(0.0));
    assert_eq!(
        value(
            &control_after,
            "aerodb_grpc_server_handled_total{service=\"aerodb.control.v1.Actor\",method=\"RequestAction\",\
             code=\"PERMISSION_DENIED\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &control_after,
            "aerodb_control_confirmations_total{command=\"request_demotion\",stage=\"confirmation_requested\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&control_after, "aerodb_control_confirmations_total{command=\"request_demotion\",stage=\"declined\"}"),
        Some(1.0)
    );
    assert!(
        value(&control_after, "aerodb_audit_fsyncs_total").unwrap()
            > value(&control_before, "aerodb_audit_fsyncs_total").unwrap_or(0.0)
    );
    assert!(value(&control_after, "aerodb_audit_records_total{stage=\"denied\"}").unwrap() >= 1.0);
    assert_eq!(value(&control_after, "aerodb_audit_unavailable"), Some(0.0));
    assert!(value(&control_after, "aerodb_connections_open{role=\"actor\"}").is_some());
    // The kernel is untouched by the declined action, and the node still answers.
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary));
}

/// Logs: a node started with `--log-format json` writes one JSON object per line, and every
/// line names the node (`node.id` in its spans), including the lines of its connections and
/// its shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_log_line_of_a_node_is_json_and_names_the_node() {
    let mut c = Cluster::build(Spec::default()).await;
    for n in &mut c.nodes {
        n.proc.args.insert(0, "json".into());
        n.proc.args.insert(0, "--log-format".into());
    }
    for i in 0..3 {
        c.nodes[i].proc.start();
    }
    c.controls[0].proc.start();
    for i in 0..3 {
        c.wait_node_ready(i).await;
    }
    c.wait_control_ready(0).await;
    c.data(0).put(kpb::PutRequest { key: b"k".to_vec(), value: b"v".to_vec() }).await.expect("put");
    // A refused handshake logs a warning from the accept path's own task.
    {
        let mut s = tokio::net::TcpStream::connect(&c.nodes[1].addr).await.unwrap();
        s.write_all(b"not tls\r\n\r\n").await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut sink)).await;
    }
    wait_for("n2 logs the refused handshake", WAIT, || {
        let log = c.nodes[1].proc.log_text();
        async move { log.contains("TLS handshake refused").then_some(()) }
    })
    .await;
    for i in 0..3 {
        assert!(c.nodes[i].proc.stop().is_some_and(|s| s.success()), "node {i} stops cleanly");
    }
    for (i, n) in c.nodes.iter().enumerate() {
        let id = format!("n{}", i + 1);
        let log = n.proc.log_text();
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(lines.len() >= 3, "{id} logged: {log}");
        for l in &lines {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{id}: not JSON ({e}): {l}"));
            assert!(v["level"].is_string() && v["fields"]["message"].is_string(), "{id}: {l}");
            let spans = v["spans"].as_array().unwrap_or_else(|| panic!("{id}: a line without spans: {l}"));
            assert!(spans.iter().any(|s| s["node.id"] == id.as_str()), "{id}: a line that does not name the node: {l}");
        }
        assert!(log.contains("node listening") && log.contains("node stopped"), "{id}: {log}");
    }
    assert!(c.nodes[1].proc.log_text().contains("TLS handshake refused"));
}

fn health(c: &Cluster, addr: &str) -> HealthClient<tonic::transport::Channel> {
    HealthClient::new(c.pki.channel(Role::Observer, addr))
}

async fn check(h: &mut HealthClient<tonic::transport::Channel>, service: &str) -> Result<ServingStatus, tonic::Code> {
    h.check(HealthCheckRequest { service: service.into() })
        .await
        .map(|r| ServingStatus::try_from(r.into_inner().status).unwrap())
        .map_err(|s| s.code())
}

/// Health per service: every mounted service is SERVING by name, an unknown one NOT_FOUND; with
/// the audit disk full the Actor service turns NOT_SERVING (Watch sees it; the Observer stays
/// SERVING, and the metrics say the audit is unavailable), and SERVING again once the
/// `audit_gap` record is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_o3_health_watch_shows_the_actor_not_serving_while_the_audit_cannot_be_written() {
    let Some((c, fs)) = Cluster::start_with_audit_on_tmpfs("2m").await else { return };

    let mut node_health = health(&c, &c.nodes[0].addr);
    for s in ["aerodb.kernel.v1.Kernel", "aerodb.kernel.v1.Replication", "aerodb.kernel.v1.Data", ""] {
        assert_eq!(check(&mut node_health, s).await, Ok(ServingStatus::Serving), "node service {s:?}");
    }
    assert_eq!(check(&mut node_health, "aerodb.control.v1.Actor").await, Err(tonic::Code::NotFound));
    let mut h = health(&c, &c.controls[0].addr);
    for s in ["aerodb.control.v1.Observer", "aerodb.control.v1.Actor", "aerodb.control.v1.Auditor", ""] {
        assert_eq!(check(&mut h, s).await, Ok(ServingStatus::Serving), "control service {s:?}");
    }
    assert_eq!(check(&mut h, "no.such.Service").await, Err(tonic::Code::NotFound));

    let mut watch =
        h.watch(HealthCheckRequest { service: "aerodb.control.v1.Actor".into() }).await.expect("watch").into_inner();
    let first = watch.message().await.unwrap().expect("the current status first");
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let filler = common::fill(&fs.path);
    // Reads are recorded best effort: they use up the last page until the writer fails.
    let mut observer = c.observer(0);
    let not_serving = tokio::time::timeout(WAIT, async {
        loop {
            tokio::select! {
                m = watch.message() => return m.unwrap().expect("watch open").status,
                r = observer.get_cluster_state(cpb::GetClusterStateRequest {}) => { r.expect("reads go on"); }
            }
        }
    })
    .await
    .expect("the Actor turns NOT_SERVING");
    assert_eq!(not_serving, ServingStatus::NotServing as i32);
    assert_eq!(check(&mut h, "aerodb.control.v1.Actor").await, Ok(ServingStatus::NotServing));
    assert_eq!(check(&mut h, "aerodb.control.v1.Observer").await, Ok(ServingStatus::Serving));
    assert_eq!(value(&scrape(&metrics_address(&c, None)).await, "aerodb_audit_unavailable"), Some(1.0));
    let mut actor = c.actor(0);
    let refused = actor
        .request_action(cpb::RequestActionRequest {
            command: cpb::Command::RequestDemotion as i32,
            target_node: "n1".into(),
            idempotency_key: key("during"),
        })
        .await
        .unwrap_err();
    assert_eq!(common::wire(&refused).code, "PHASE7_AUDIT_UNAVAILABLE", "NOT_SERVING is what it says");

    std::fs::remove_file(&filler).unwrap();
    let back = tokio::time::timeout(WAIT, watch.message()).await.expect("SERVING again").unwrap().unwrap();
    assert_eq!(back.status, ServingStatus::Serving as i32);
    assert!(
        c.audit_records(0).iter().any(|b| b.draft.stage == aerodb::audit::record::Stage::AuditGap),
        "SERVING again only after the audit_gap record"
    );
    assert_eq!(value(&scrape(&metrics_address(&c, None)).await, "aerodb_audit_unavailable"), Some(0.0));
    request(&mut actor, cpb::Command::RequestDemotion, "n1", &key("after")).await.expect("actions again");
    let _ = Duration::ZERO;
}

/// `aerodb node check` and `aerodb control check` accept the test cluster's configurations
/// without starting anything, and refuse one whose certificate names another node, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_validates_configuration_and_certificates_without_starting() {
    let c = Cluster::build(Spec::default()).await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(common::aerodb_bin()).args(args).output().expect("run aerodb");
        (out.status, String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let node_cfg = c.nodes[0].config_path.display().to_string();
    let (status, out, err) = run(&["node", "check", "--config", &node_cfg]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("ok: server and peer-client certificates name node/n1"), "{out}");
    let control_cfg = c.controls[0].config_path.display().to_string();
    let (status, out, err) = run(&["control", "check", "--config", &control_cfg]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("ok: server certificate names controlplane/"), "{out}");
    // Nothing was started: no ADDRESS file, nothing listening.
    assert!(!c.nodes[0].cfg.data_dir.join("ADDRESS").exists());
    assert!(tokio::net::TcpStream::connect(&c.nodes[0].addr).await.is_err());

    // n1's configuration with n2's certificate: refused, naming both.
    let mut wrong = c.nodes[0].cfg.clone();
    wrong.tls = c.pki.node_tls("n2");
    let path = c.root.path().join("wrong.toml");
    std::fs::write(&path, toml::to_string(&wrong).unwrap()).unwrap();
    let (status, _, err) = run(&["node", "check", "--config", &path.display().to_string()]);
    assert!(!status.success());
    assert!(err.contains("names node/n2, not node/n1"), "{err}");
    // A bad metrics address is a configuration error naming the field.
    let mut bad = c.controls[0].cfg.clone();
    bad.metrics_address = Some("localhost:x".into());
    let path = c.root.path().join("bad.toml");
    std::fs::write(&path, toml::to_string(&bad).unwrap()).unwrap();
    let (status, _, err) = run(&["control", "check", "--config", &path.display().to_string()]);
    assert!(!status.success());
    assert!(err.contains("metrics_address"), "{err}");
}

/// The Buf CLI (`buf-bin` on PyPI, installed by scripts/test into the test venv), or why not.
fn buf() -> Result<std::path::PathBuf, String> {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/python-venv/bin/buf");
    let candidates = [std::env::var("AERODB_BUF").ok().map(Into::into), Some(venv), Some("buf".into())];
    for c in candidates.into_iter().flatten() {
        if std::process::Command::new(&c).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return Ok(c);
        }
    }
    Err("no buf CLI: pip install buf-bin (scripts/test does), or set AERODB_BUF".into())
}

/// V-12, errors any tool can decode: `buf curl` (gRPC over mutual TLS, schema by server
/// reflection) lists the control plane's services and methods and calls GetClusterState; on a
/// denied Actor call it names the detail `google.rpc.ErrorInfo` and its bytes are that ErrorInfo
/// (buf prints details decoded only for types compiled into it); and reflection serves the
/// `google.rpc` detail types with their imports, so reflection-driven tools (grpcurl) resolve
/// and print them decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v12_buf_curl_lists_and_calls_and_reflection_serves_the_error_detail_types() {
    let buf = match buf() {
        Ok(b) => b,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let c = Cluster::start(Spec::default()).await;
    let p = c.pki.paths(Role::Observer);
    let base = format!("https://{}", c.controls[0].addr);
    let curl = |extra: Vec<String>| {
        let (buf, p) = (buf.clone(), p.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let out = std::process::Command::new(&buf)
                    .args(["curl", "--protocol", "grpc", "--cacert"])
                    .arg(&p.ca)
                    .arg("--cert")
                    .arg(&p.cert)
                    .arg("--key")
                    .arg(&p.key)
                    .args(extra)
                    .output()
                    .expect("run buf");
                (
                    out.status.code(),
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            })
            .await
            .unwrap()
        }
    };
    let (code, out, err) = curl(vec!["--list-services".into(), base.clone()]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    for s in
        ["aerodb.control.v1.Observer", "aerodb.control.v1.Actor", "aerodb.control.v1.Auditor", "grpc.health.v1.Health"]
    {
        assert!(out.lines().any(|l| l.trim() == s), "lists {s}: {out}");
    }
    let (code, out, err) = curl(vec!["--list-methods".into(), base.clone()]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("aerodb.control.v1.Observer/GetClusterState"), "{out}");

    let (code, out, err) =
        curl(vec!["-d".into(), "{}".into(), format!("{base}/aerodb.control.v1.Observer/GetClusterState")]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    let state: serde_json::Value = serde_json::from_str(&out).expect("JSON answer");
    assert_eq!(state["nodes"].as_array().map(Vec::len), Some(3), "{out}");

    // An observer may not act: the error's details come out decoded.
    let (code, out, err) = curl(vec![
        "-d".into(),
        r#"{"command":"COMMAND_REQUEST_DEMOTION","targetNode":"n1","idempotencyKey":"buf-denied"}"#.into(),
        format!("{base}/aerodb.control.v1.Actor/RequestAction"),
    ])
    .await;
    assert_ne!(code, Some(0), "denied");
    let text = format!("{out}{err}");
    let start = text.find('{').unwrap_or_else(|| panic!("a JSON error: {text}"));
    let error: serde_json::Value = serde_json::Deserializer::from_str(&text[start..])
        .into_iter::<serde_json::Value>()
        .next()
        .unwrap()
        .unwrap_or_else(|e| panic!("a JSON error ({e}): {text}"));
    assert_eq!(error["code"], "permission_denied", "{text}");
    let info = error["details"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["type"] == "google.rpc.ErrorInfo"))
        .unwrap_or_else(|| panic!("an ErrorInfo detail: {text}"));
    let bytes = base64_decode(info["value"].as_str().unwrap());
    let decoded = <tonic_types::pb::ErrorInfo as prost::Message>::decode(bytes.as_slice()).expect("an ErrorInfo");
    assert_eq!(decoded.reason, "PHASE7_INSUFFICIENT_AUTHORITY");
    assert_eq!(decoded.metadata.get("outcome").map(String::as_str), Some("NOT_EXECUTED"));

    // Reflection: the detail types are served, with the well-known types they import.
    use tonic_reflection::pb::v1 as refl;
    let mut r =
        refl::server_reflection_client::ServerReflectionClient::new(c.pki.channel(Role::Observer, &c.controls[0].addr));
    let ask = |symbol: &str| refl::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(refl::server_reflection_request::MessageRequest::FileContainingSymbol(symbol.into())),
    };
    let mut answers = r
        .server_reflection_info(futures::stream::iter([ask("google.rpc.ErrorInfo"), ask("google.protobuf.Duration")]))
        .await
        .expect("reflection")
        .into_inner();
    let mut files = Vec::new();
    while let Some(a) = answers.message().await.unwrap() {
        match a.message_response {
            Some(refl::server_reflection_response::MessageResponse::FileDescriptorResponse(f)) => {
                for raw in f.file_descriptor_proto {
                    files.push(<prost_types::FileDescriptorProto as prost::Message>::decode(raw.as_slice()).unwrap());
                }
            }
            other => panic!("a file descriptor: {other:?}"),
        }
    }
    let details = files.iter().find(|f| f.name() == "google/rpc/error_details.proto").expect("served");
    assert!(
        details.message_type.iter().any(|m| m.name() == "ErrorInfo")
            && details.message_type.iter().any(|m| m.name() == "BadRequest")
    );
    assert!(details.dependency.iter().any(|d| d == "google/protobuf/duration.proto"), "{:?}", details.dependency);
    assert!(files.iter().any(|f| f.name() == "google/protobuf/duration.proto"), "its import is served too");
}

/// Base64 as buf prints bytes (standard or URL-safe alphabet, padding optional).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, c)| acc | (val(*c) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// Health: a node's Data service is NOT_SERVING while the node is halted (an old primary that
/// comes back after a forced promotion), and SERVING again once it is demoted out of the halt;
/// its Kernel service stays SERVING throughout (the operator still inspects and demotes it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p6_f1_health_shows_a_halted_nodes_data_service_not_serving_until_it_is_demoted() {
    let mut c = Cluster::start(Spec::default()).await;
    c.nodes[0].proc.kill();
    let mut actor = c.actor(0);
    common::request_and_confirm(&mut actor, cpb::Command::ForcePromotion, "n2", &key("force")).await.expect("forced");
    c.restart_node(0, &[]).await;
    c.wait_role(0, kpb::Role::Halted).await;
    let mut h = health(&c, &c.nodes[0].addr);
    let mut watch =
        h.watch(HealthCheckRequest { service: "aerodb.kernel.v1.Data".into() }).await.expect("watch").into_inner();
    let first = tokio::time::timeout(WAIT, watch.message()).await.expect("a status").unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::NotServing as i32, "halted: no reads or writes");
    assert_eq!(check(&mut h, "aerodb.kernel.v1.Kernel").await, Ok(ServingStatus::Serving));
    assert_eq!(check(&mut h, "aerodb.kernel.v1.Data").await, Ok(ServingStatus::NotServing));
    let mut n2 = health(&c, &c.nodes[1].addr);
    assert_eq!(check(&mut n2, "aerodb.kernel.v1.Data").await, Ok(ServingStatus::Serving), "the new primary serves");

    common::request_and_confirm(&mut actor, cpb::Command::RequestDemotion, "n1", &key("unhalt"))
        .await
        .expect("demoted");
    let back = tokio::time::timeout(WAIT, watch.message()).await.expect("SERVING again").unwrap().unwrap();
    assert_eq!(back.status, ServingStatus::Serving as i32);
    assert_eq!(c.role(0).await, Some(kpb::Role::Demoted));
}
