//! Polyglot automation: a Python grpcio client (stubs generated from proto/ at test time) with
//! an observer certificate, against a live cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use aerodb::tls::identity::Role;
use common::{Cluster, Spec, python};

fn run_py(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(python()).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_a1_python_observer_is_denied_actor_rpcs_and_reads_cluster_state_and_health() {
    let c = Cluster::start(Spec::default()).await;
    let profile = c.pki.profile(Role::Observer, &c.controls[0].addr);
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        run_py(&["tests/python/check_observer.py", "--profile", profile.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert!(ok, "python failed: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["health"], 1, "health answers SERVING");
    assert_eq!(v["actor"]["code"], "PERMISSION_DENIED");
    assert_eq!(v["actor"]["error_info"]["reason"], "PHASE7_INSUFFICIENT_AUTHORITY");
    assert_eq!(v["actor"]["error_info"]["domain"], "aerodb.control.v1");
    assert_eq!(v["actor"]["error_info"]["metadata"]["invariants"], "P7-A1");
    assert_eq!(v["actor"]["error_info"]["metadata"]["outcome"], "NOT_EXECUTED");
    assert_eq!(v["cluster_id"], "test");
    let roles: Vec<(&str, &str)> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node_id"].as_str().unwrap(), n["role"].as_str().unwrap()))
        .collect();
    assert_eq!(roles, vec![("n1", "ROLE_PRIMARY"), ("n2", "ROLE_REPLICA"), ("n3", "ROLE_REPLICA")]);
    assert_eq!(v["observed"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_example_polls_cluster_state_and_prints_lag_per_replica() {
    let c = Cluster::start(Spec::default()).await;
    let profile = c.pki.profile(Role::Observer, &c.controls[0].addr);
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        run_py(&[
            "clients/python/examples/poll_lag.py",
            "--profile",
            profile.to_str().unwrap(),
            "--count",
            "2",
            "--interval",
            "0.1",
            "--json",
        ])
    })
    .await
    .unwrap();
    assert!(ok, "example failed: {err}");
    let polls: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(polls.len(), 2);
    for p in &polls {
        assert_eq!(p["nodes"], serde_json::json!(["n1", "n2", "n3"]));
        assert_eq!(p["unreachable"], serde_json::json!([]));
        let lag = p["lag"].as_array().unwrap();
        let replicas: Vec<&str> = lag.iter().map(|l| l["replica"].as_str().unwrap()).collect();
        assert_eq!(replicas, vec!["n2", "n3"], "one lag line per replica, as seen by the primary");
        assert!(lag.iter().all(|l| l["seen_by"] == "n1" && l["lag_entries"] == 0), "{lag:?}");
    }
}
