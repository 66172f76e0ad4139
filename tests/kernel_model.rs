//! Issue 3: the ledger fold equals a model over random request sequences with crashes (torn
//! tails included) between them. In its own test binary: nothing here spawns processes, so no
//! forked child can hold a data dir's lock while a node reopens it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::collections::HashMap;
use std::sync::Arc;

use aerodb::kernel::authority::Role;
use aerodb::kernel::config::{Member, NodeConfig, Timing};
use aerodb::kernel::execute::{self, AnsweredRecord};
use aerodb::kernel::node::Node;
use aerodb::kernel::records::{ActionKind, ActionResult, Decision};
use aerodb::tls::identity::Role as CertRole;
use common::exec_req;
use proptest::prelude::*;

/// What the model expects of one Execute.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Replay,
    Unrecorded(&'static str),
    Executed,
    Rejected(&'static str),
}

#[derive(Debug, Clone)]
enum Op {
    Exec { kind: u8, key: u8, stale: bool, who: u8 },
    Crash { torn: Vec<u8> },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, 0u8..6, proptest::bool::weighted(0.2), 0u8..2).prop_map(|(kind, key, stale, who)| Op::Exec { kind, key, stale, who }),
        1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(|torn| Op::Crash { torn }),
    ]
}

#[derive(Debug, Clone, Default)]
struct Model {
    decided: HashMap<String, (u8, u8, &'static str)>,
    primary: bool,
    seq: u64,
}

impl Model {
    fn apply(&mut self, kind: u8, key: &str, stale: bool, who: u8) -> Expect {
        if let Some((k, w, _)) = self.decided.get(key) {
            return if *k == kind && *w == who {
                Expect::Replay
            } else {
                Expect::Unrecorded("AERO_IDEMPOTENCY_KEY_REUSED")
            };
        }
        let outcome = if stale {
            Expect::Rejected("AERO_STALE_SEQUENCE")
        } else {
            match (kind, self.primary) {
                (0, true) => Expect::Rejected("AERO_PROMOTION_ALREADY_PRIMARY"),
                (0, false) => Expect::Executed,
                (1, true) => Expect::Executed,
                (1, false) => Expect::Rejected("AERO_DEMOTION_NOT_PRIMARY"),
                _ => Expect::Executed,
            }
        };
        // A promotion records its own grant before its decision.
        if kind == 0 && outcome == Expect::Executed {
            self.seq += 1;
        }
        self.seq += 1;
        let code = match &outcome {
            Expect::Rejected(c) => c,
            _ => "EXECUTED",
        };
        if outcome == Expect::Executed {
            match kind {
                0 => self.primary = true,
                1 => self.primary = false,
                _ => {}
            }
        }
        self.decided.insert(key.to_string(), (kind, who, code));
        outcome
    }
}

fn node_config(dir: &std::path::Path, certs: &std::path::Path) -> NodeConfig {
    let pki = common::Pki { dir: certs.to_path_buf() };
    NodeConfig {
        cluster_id: "model".into(),
        node_id: "n1".into(),
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        members: vec![Member { id: "n1".into(), address: "127.0.0.1:1".into() }],
        tls: pki.node_tls("n1"),
        timing: Timing::default(),
        connections: Default::default(),
        metrics_address: None,
        approvals: Default::default(),
        lifecycle: Default::default(),
    }
}

async fn open(cfg: &NodeConfig, certs: &std::path::Path) -> Arc<Node> {
    let pki = common::Pki { dir: certs.to_path_buf() };
    let client = aerodb::tls::material::client_tls(&pki.paths(CertRole::Node), common::TD).unwrap();
    let server = aerodb::tls::material::server_tls(&pki.paths(CertRole::Node), common::TD).unwrap();
    let intents = aerodb::kernel::signed::IntentVerifier::new(
        aerodb::tls::client::fixed(server),
        common::TD.into(),
        aerodb::clock::SystemClock::shared(),
    );
    Node::open(cfg.clone(), aerodb::tls::client::fixed(client), intents).await.expect("node opens")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, .. ProptestConfig::default() })]

    /// The ledger's folded state equals a model's over random requests with crashes (including
    /// torn tails) between them; control_seq has no gap and never repeats.
    #[test]
    fn p6_d1_ledger_fold_equals_model_and_control_seq_is_gap_free(ops in proptest::collection::vec(op(), 1..30)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let root = tempfile::tempdir().unwrap();
            let certs = root.path().join("certs");
            common::Pki::new(&certs);
            let dir = root.path().join("n1");
            aerodb::kernel::node::init(&dir, "model", "n1", true).await.unwrap();
            let cfg = node_config(&dir, &certs);
            let mut node = open(&cfg, &certs).await;
            let mut model = Model { primary: true, seq: 1, ..Default::default() };
            for op in ops {
                match op {
                    Op::Crash { torn } => {
                        drop(node);
                        if !torn.is_empty() {
                            use std::io::Write;
                            let mut f = std::fs::OpenOptions::new().append(true).open(dir.join("control.log")).unwrap();
                            f.write_all(&torn).unwrap();
                        }
                        node = open(&cfg, &certs).await;
                    }
                    Op::Exec { kind, key, stale, who } => {
                        let k = format!("k{key}");
                        let current = node.control_seq();
                        let expected = if stale { current + 3 } else { current };
                        let action = match kind { 0 => ActionKind::Promote, 1 => ActionKind::Demote, _ => ActionKind::Diagnostics };
                        let mut req = exec_req(&k, action, "n1", false, expected, if who == 0 { "alice" } else { "bob" });
                        // The epoch the plan names, as an explanation of this one node reads it.
                        req.plan_epoch = match action {
                            ActionKind::Promote => node.highest_known_epoch() + 1,
                            ActionKind::Demote => node.authority().led_epoch,
                            ActionKind::Diagnostics => 0,
                        };
                        let want = model.apply(kind, &k, stale, who);
                        let req = common::sign::sign_exec_with(&common::Pki { dir: certs.clone() }, "model", req);
                        // Parsed as `kernel/service.rs` parses it: every request here is well formed.
                        let r = node.execute(execute::parse(&req).unwrap()).await;
                        let got = match (&r.unrecorded_rejection, &r.record) {
                            (Some(rej), _) => Expect::Unrecorded(Box::leak(rej.code.clone().into_boxed_str())),
                            (None, Some(_)) if r.replayed => Expect::Replay,
                            (None, Some(AnsweredRecord::Local { decided, .. })) => match &decided.decision {
                                Decision::Executed { .. } => Expect::Executed,
                                Decision::Rejected { rejection } => Expect::Rejected(Box::leak(rejection.code.clone().into_boxed_str())),
                            },
                            (None, Some(AnsweredRecord::Peer(_))) => panic!("one node has no peer to answer for it"),
                            (None, None) => panic!("no answer"),
                        };
                        assert_eq!(got, want, "op on {k}");
                    }
                }
                let a = node.authority();
                assert_eq!(a.control_seq, model.seq, "control_seq");
                assert_eq!(matches!(a.role, Role::Primary { .. }), model.primary, "role");
                assert_eq!(a.decided.len(), model.decided.len(), "decided keys");
                for (k, (_, _, code)) in &model.decided {
                    let (_, d) = a.decided.get(k).expect("decided in the fold");
                    let got = match &d.decision {
                        Decision::Executed { .. } => "EXECUTED".to_string(),
                        Decision::Rejected { rejection } => rejection.code.clone(),
                    };
                    assert_eq!(&got, code, "decision of {k}");
                }
            }
            drop(node);
            let records = aerodb::kernel::ledger::Ledger::read_all(&dir.join("control.log")).unwrap();
            let seqs: Vec<u64> = records.iter().map(|r| r.control_seq).collect();
            assert_eq!(seqs, (1..=model.seq).collect::<Vec<_>>(), "gap-free, never repeated");
        });
    }
}

/// A fresh one-node cluster's node n1 (primary of epoch 1), in `root`.
async fn fresh_node(root: &std::path::Path) -> (Arc<Node>, common::Pki) {
    let certs = root.join("certs");
    common::Pki::new(&certs);
    let dir = root.join("n1");
    aerodb::kernel::node::init(&dir, "model", "n1", true).await.unwrap();
    let node = open(&node_config(&dir, &certs), &certs).await;
    (node, common::Pki { dir: certs })
}

/// Executes `req` on `node` in process, as `kernel/service.rs` parses it; the local decision.
async fn decide(node: &Arc<Node>, req: &aerodb::proto::kernel::ExecuteRequest) -> Decision {
    let r = node.execute(execute::parse(req).unwrap()).await;
    match r.record {
        Some(AnsweredRecord::Local { decided, .. }) if !r.replayed => decided.decision,
        other => panic!("no new local decision: {other:?}, unrecorded {:?}", r.unrecorded_rejection),
    }
}

fn rejection_code(d: &Decision) -> &str {
    match d {
        Decision::Rejected { rejection } => &rejection.code,
        Decision::Executed { .. } => "EXECUTED",
    }
}

/// The kernel's own check of a forced promotion (`Node::validate`, check 4, before any state is
/// read): an enhanced confirmation that acknowledges P6-A1a and accepts responsibility, each
/// condition on its own; a complete one passes on to the promotion's own checks (here: the node
/// is already primary). Each refusal is recorded and nothing runs.
#[test]
fn p6_a1a_the_kernel_refuses_a_forced_promotion_missing_any_one_enhanced_condition() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let root = tempfile::tempdir().unwrap();
        let (node, pki) = fresh_node(root.path()).await;
        type Edit = fn(&mut aerodb::proto::kernel::Confirmation);
        let cases: [(&str, Edit, &str); 4] = [
            ("complete", |_| {}, "AERO_PROMOTION_ALREADY_PRIMARY"),
            (
                "standard confirmation",
                |c| c.kind = aerodb::proto::kernel::ConfirmationKind::Standard as i32,
                "AERO_FORCE_REQUIRES_ENHANCED_CONFIRMATION",
            ),
            (
                "P6-A1a not acknowledged",
                |c| c.acknowledged_invariants = vec!["P6-A1".into()],
                "AERO_FORCE_REQUIRES_ENHANCED_CONFIRMATION",
            ),
            (
                "responsibility not accepted",
                |c| c.accept_responsibility = false,
                "AERO_FORCE_REQUIRES_ENHANCED_CONFIRMATION",
            ),
        ];
        for (i, (case, edit, code)) in cases.into_iter().enumerate() {
            let seq = node.control_seq();
            let mut req = exec_req(&format!("force{i}"), ActionKind::Promote, "n1", true, seq, "alice");
            req.plan_epoch = node.highest_known_epoch() + 1;
            edit(req.confirmation.as_mut().unwrap());
            let req = common::sign::sign_exec_with(&pki, "model", req);
            assert_eq!(rejection_code(&decide(&node, &req).await), code, "{case}");
            assert_eq!(node.control_seq(), seq + 1, "{case}: the refusal is recorded");
            assert!(matches!(node.authority().role, Role::Primary { .. }), "{case}: nothing ran");
        }
    });
}

/// Only what operators signed runs: a demotion sent with no signed intent is rejected before
/// any other check, the rejection is recorded, and the primary stays primary.
#[test]
fn p7_a2_a_request_without_its_signed_intent_is_rejected_recorded_and_runs_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let root = tempfile::tempdir().unwrap();
        let (node, _pki) = fresh_node(root.path()).await;
        let seq = node.control_seq();
        let mut req = exec_req("unsigned", ActionKind::Demote, "n1", false, seq, "alice");
        req.plan_epoch = node.authority().led_epoch;
        assert_eq!(rejection_code(&decide(&node, &req).await), "AERO_INTENT_MISSING");
        assert_eq!(node.control_seq(), seq + 1, "the rejection is recorded");
        assert!(matches!(node.authority().role, Role::Primary { .. }), "nothing ran");
    });
}

/// A diagnostics run declares its cost before it reads (P7-S1, as in
/// `snapshots_diagnostics`, here in process): the declared bytes are exactly the WAL and
/// ledger bytes it then reads, when nothing is written in between.
#[test]
fn p7_s1_diagnostics_declare_exactly_the_bytes_they_then_read() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let root = tempfile::tempdir().unwrap();
        let (node, pki) = fresh_node(root.path()).await;
        let req = exec_req("diag", ActionKind::Diagnostics, "n1", false, node.control_seq(), "alice");
        let req = common::sign::sign_exec_with(&pki, "model", req);
        let Decision::Executed { result } = decide(&node, &req).await else { panic!("diagnostics rejected") };
        let ActionResult::Diagnostics {
            wal_bytes_read, ledger_bytes_read, declared_cost_bytes, wal_ok, ledger_ok, ..
        } = result
        else {
            panic!("not a diagnostics result: {result:?}")
        };
        assert!(wal_ok && ledger_ok);
        assert!(wal_bytes_read > 0 && ledger_bytes_read > 0, "{wal_bytes_read} {ledger_bytes_read}");
        assert_eq!(declared_cost_bytes, wal_bytes_read + ledger_bytes_read);
    });
}
