//! The Node.js example (`clients/node/poll_lag.js`) against a live cluster, with an observer
//! certificate. Needs `node` and `clients/node/node_modules` (`npm ci` in `.ci/run`); without
//! them the tests skip with a printed reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::path::{Path, PathBuf};

use aerodb::tls::identity::Role;
use common::{Cluster, Spec};

/// The example's folder, or None (with the reason printed) when it cannot run here.
fn node_example() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/node");
    if std::process::Command::new("node").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        eprintln!("SKIP: `node` is not installed; the Node.js client test needs Node 18+");
        return None;
    }
    if !dir.join("node_modules/@grpc/grpc-js").is_dir() {
        eprintln!("SKIP: clients/node/node_modules is missing; run `npm ci` in clients/node (.ci/run does)");
        return None;
    }
    Some(dir)
}

async fn run_node(dir: PathBuf, args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("node").arg("poll_lag.js").args(&args).current_dir(dir).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_example_polls_lag_per_replica_over_an_ip_endpoint_without_an_sni_warning() {
    let Some(dir) = node_example() else { return };
    let c = Cluster::start(Spec::default()).await;
    assert!(c.controls[0].addr.starts_with("127.0.0.1:"), "the endpoint is an IP address: {}", c.controls[0].addr);
    let profile = c.pki.profile(Role::Observer, &c.controls[0].addr);
    let args = ["--profile", profile.to_str().unwrap(), "--count", "2", "--interval", "0.1", "--json"];
    let (code, out, err) = run_node(dir, args.iter().map(|s| s.to_string()).collect()).await;
    assert_eq!(code, 0, "the example failed: {err}");
    // Node prints DEP0123 when an IP address is sent as the TLS server name (RFC 6066).
    assert!(!err.contains("DEP0123") && !err.contains("ServerName"), "Node warned about the SNI: {err}");
    assert!(err.trim().is_empty(), "nothing on stderr: {err}");
    let polls: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(polls.len(), 2, "{out}");
    for p in &polls {
        assert_eq!(p["nodes"], serde_json::json!(["n1", "n2", "n3"]));
        assert_eq!(p["unreachable"], serde_json::json!([]));
        assert_eq!(p["primary_claims"][0]["node_id"], "n1");
        let lag = p["lag"].as_array().unwrap();
        let replicas: Vec<&str> = lag.iter().map(|l| l["replica"].as_str().unwrap()).collect();
        assert_eq!(replicas, vec!["n2", "n3"], "one lag line per replica, as seen by the primary");
        assert!(lag.iter().all(|l| l["seen_by"] == "n1" && l["lag_entries"] == 0), "{lag:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_example_with_an_observer_certificate_is_denied_actor_calls_and_decodes_error_info() {
    let Some(dir) = node_example() else { return };
    let c = Cluster::start(Spec::default()).await;
    let profile = c.pki.profile(Role::Observer, &c.controls[0].addr);
    let args = ["--profile", profile.to_str().unwrap(), "--check-denied"];
    let (code, out, err) = run_node(dir, args.iter().map(|s| s.to_string()).collect()).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("PERMISSION_DENIED: PHASE7_INSUFFICIENT_AUTHORITY"), "{out}");
    assert!(out.contains("  reason:    PHASE7_INSUFFICIENT_AUTHORITY"), "{out}");
    assert!(out.contains("  metadata.outcome: NOT_EXECUTED"), "{out}");
    assert!(out.contains("  metadata.invariants: P7-A1"), "{out}");
}
