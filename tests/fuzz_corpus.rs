//! Seed corpora for the `cargo fuzz` targets in `fuzz/`, written from real files: a cluster of
//! real processes takes writes, a switchover and diagnostics, then its WAL segments, ledgers,
//! claims logs, audit segments and checkpoints, a snapshot of its state and the test PKI's
//! certificates are copied into `fuzz/corpus/<target>/seed-*`. `#[ignore]`d: run it when a
//! format changes (`cargo test --features failpoints --test fuzz_corpus -- --ignored`), then
//! commit the seeds (the whole corpus stays under 1 MB).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::path::{Path, PathBuf};

use aerodb::audit::chain;
use aerodb::kernel::entry::encode_put;
use aerodb::kernel::kv::Kv;
use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use common::{Cluster, Spec, WAIT, key, request_and_confirm};
use prost::Message;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Largest seed kept: bigger real files are cut here (the targets see torn tails anyway).
const SEED_BYTES_MAX: usize = 48 << 10;

struct Corpus {
    root: PathBuf,
    total: usize,
}

impl Corpus {
    fn new() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus");
        Self { root, total: 0 }
    }

    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        let bytes = &bytes[..bytes.len().min(SEED_BYTES_MAX)];
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        self.total += bytes.len();
    }

    fn put_file(&mut self, target: &str, name: &str, path: &Path) {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.put(target, name, &bytes);
    }
}

fn files_with_prefix(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes fuzz/corpus: cargo test --features failpoints --test fuzz_corpus -- --ignored"]
async fn writes_fuzz_seed_corpora_from_real_files() {
    let mut c = Cluster::start(Spec::default()).await;
    let mut data = c.data(0);
    for i in 0..12u32 {
        let k = format!("seed-key-{i:03}").into_bytes();
        data.put(kpb::PutRequest { key: k.clone(), value: vec![b'v'; i as usize * 7] }).await.unwrap();
    }
    data.delete(kpb::DeleteRequest { key: b"seed-key-000".to_vec() }).await.unwrap();
    let mut actor = c.actor(0);
    request_and_confirm(&mut actor, cpb::Command::RunDiagnostics, "n2", &key("seed")).await.unwrap();
    request_and_confirm(&mut actor, cpb::Command::RequestDemotion, "n1", &key("seed")).await.unwrap();
    c.wait_replicated(WAIT).await;
    request_and_confirm(&mut actor, cpb::Command::RequestPromotion, "n2", &key("seed")).await.unwrap();
    c.wait_role(1, kpb::Role::Primary).await;
    c.data(1).put(kpb::PutRequest { key: b"after".to_vec(), value: b"switchover".to_vec() }).await.unwrap();
    c.wait_replicated(WAIT).await;
    let kv = common::scan_all(&c, 1).await;
    for n in &mut c.nodes {
        n.proc.stop();
    }
    for cp in &mut c.controls {
        cp.proc.stop();
    }

    let mut corpus = Corpus::new();
    let n2 = c.nodes[1].cfg.data_dir.clone();
    // WAL: whole segments, and each entry's canonical bytes.
    for (i, seg) in files_with_prefix(&n2.join("wal"), "seg-").iter().enumerate() {
        corpus.put_file("wal_segment", &format!("n2-{i}"), seg);
        corpus.put_file("frame_reader", &format!("wal-{i}"), seg);
    }
    let entries = aerodb::kernel::wal::read_dir(&n2.join("wal")).unwrap();
    for e in &entries {
        corpus.put("wal_entry", &format!("{:?}-{}", e.kind, e.index), &e.encode());
    }
    // Ledgers and claims logs.
    for (i, n) in c.nodes.iter().enumerate() {
        corpus.put_file("ledger_record", &format!("control-n{}", i + 1), &n.cfg.data_dir.join("control.log"));
        let claims = n.cfg.data_dir.join("claims.log");
        if claims.exists() {
            corpus.put_file("ledger_record", &format!("claims-n{}", i + 1), &claims);
        }
    }
    corpus.put_file("frame_reader", "ledger", &n2.join("control.log"));
    // Audit: the segments, the checkpoints, and single record payloads.
    let audit = c.controls[0].cfg.audit_dir.clone();
    for (i, seg) in files_with_prefix(&audit, "audit-").iter().enumerate() {
        corpus.put_file("audit_log", &format!("segment-{i}"), seg);
        corpus.put_file("frame_reader", &format!("audit-{i}"), seg);
    }
    corpus.put_file("audit_log", "checkpoints", &audit.join(aerodb::audit::checkpoint::CHECKPOINTS_FILE));
    let mut prev = chain::GENESIS;
    let mut n = 0;
    aerodb::audit::verify::read_from(&audit, 1, |s| {
        if n < 4 {
            corpus.put("audit_log", &format!("payload-{}", s.seq), &chain::payload(&prev, s.seq, &s.body_json));
        }
        prev = s.hash;
        n += 1;
        true
    })
    .unwrap();
    // Signed intents: the ones n2's ledger recorded (each verified by the kernel when decided).
    for (i, d) in common::decided(&c.ledger(1)).iter().enumerate() {
        if !d.intent.is_empty() {
            corpus.put("signed_intent", &format!("n2-{i}"), &hex::decode(&d.intent).unwrap());
        }
    }
    // A snapshot of the final state: its data and manifest files.
    let last = entries.last().unwrap();
    let snaps = c.root.path().join("seed-snapshots");
    let base =
        aerodb::kernel::wal::Base { index: last.index, epoch: last.epoch, hash: last.hash(), kind: Some(last.kind) };
    let marks = vec![aerodb::kernel::wal::EpochMark { index: 1, epoch: 1, primary: "n1".into() }];
    let snap =
        aerodb::kernel::snapshot::write(&snaps, Kv::from_parts(kv.clone(), last.index).map(), base, marks).unwrap();
    corpus.put_file("snapshot_load", "data", &snap.join("data"));
    corpus.put_file("snapshot_load", "manifest", &snap.join("manifest"));
    corpus.put_file("frame_reader", "snapshot-data", &snap.join("data"));
    // Certificates: every leaf and the CA, as DER.
    for pem in files_with_prefix(&c.pki.dir, "").iter().filter(|p| p.extension().is_some_and(|e| e == "pem")) {
        let name = pem.file_stem().unwrap().to_string_lossy().to_string();
        if let Some(Ok(der)) = CertificateDer::pem_file_iter(pem).unwrap().next() {
            corpus.put("tls_identity", &name, der.as_ref());
        }
    }
    // Requests: byte 0 picks the type (see fuzz_targets/request_limits.rs), then the protobuf.
    let tagged = |tag: u8, m: &dyn Fn() -> Vec<u8>| [vec![tag], m()].concat();
    let requests: Vec<(&str, Vec<u8>)> = vec![
        (
            "request-action",
            tagged(0, &|| {
                cpb::RequestActionRequest {
                    command: cpb::Command::RequestPromotion as i32,
                    target_node: "n2".into(),
                    idempotency_key: "k-1".into(),
                }
                .encode_to_vec()
            }),
        ),
        (
            "confirm-action",
            tagged(1, &|| {
                cpb::ConfirmActionRequest {
                    confirmation_id: "c0ffee".into(),
                    plan_digest: "ab".repeat(32),
                    typed_target: "n2".into(),
                    acknowledged_invariants: vec!["P6-A1".into()],
                    accept_responsibility: true,
                    signatures: vec![kpb::IntentSignature {
                        certificate: vec![0x30; 16],
                        scheme: 0x0403,
                        signature: vec![0x30; 8],
                    }],
                }
                .encode_to_vec()
            }),
        ),
        ("read-audit", tagged(7, &|| cpb::ReadAuditRequest { limit: 10, ..Default::default() }.encode_to_vec())),
        (
            "execute",
            tagged(9, &|| {
                kpb::ExecuteRequest {
                    idempotency_key: "k-1".into(),
                    action: Some(kpb::Action {
                        kind: kpb::ActionKind::Promote as i32,
                        target_node: "n2".into(),
                        force: false,
                    }),
                    plan_epoch: 2,
                    ..Default::default()
                }
                .encode_to_vec()
            }),
        ),
        ("put", tagged(16, &|| kpb::PutRequest { key: b"k".to_vec(), value: b"v".to_vec() }.encode_to_vec())),
        ("wal-entry", tagged(20, &|| entries[1].to_proto().encode_to_vec())),
    ];
    for (name, bytes) in &requests {
        corpus.put("request_limits", name, bytes);
    }
    // Edge bodies: byte 0 the limit / 4, byte 1 the DATA frame size, then a gRPC body.
    for (name, bytes) in &requests {
        let body = &bytes[1..];
        let mut framed = vec![255u8, 7, 0];
        framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
        framed.extend_from_slice(body);
        corpus.put("edge_message", name, &framed);
    }
    corpus.put("wal_entry", "put-payload", &encode_put(b"key", b"value"));
    eprintln!("fuzz corpus: {} bytes under {}", corpus.total, corpus.root.display());
    assert!(corpus.total < 1 << 20, "the committed corpus stays under 1 MB");
}
