//! Signed intents in tests: every certificate the test PKI issues is registered by fingerprint,
//! so a pending action's intent (which names its requester's certificate) is signed with that
//! requester's own key, as aerodbctl signs with the operator's profile.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aerodb::contract::action::{Action, Confirmation, Requester};
use aerodb::contract::intent::{Command, Intent};
use aerodb::pki::sign::IntentSigner;
use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use aerodb::tls::identity::Role;

use crate::cluster::Cluster;
use crate::pki::{Pki, TD};

/// Certificate and key files by the certificate's hex SHA-256.
static SIGNERS: Mutex<Option<HashMap<String, (PathBuf, PathBuf)>>> = Mutex::new(None);

/// Serialises issuing test signers (two tasks may ask for the same name at once).
static ISSUE: Mutex<()> = Mutex::new(());

/// Hex SHA-256 of the first certificate in a PEM file.
pub fn fingerprint_of(cert: &Path) -> String {
    let certs = aerodb::tls::material::load_certs(cert).expect("certificate");
    aerodb::tls::identity::fingerprint(certs[0].as_ref())
}

/// Registers a certificate and its key as a signer.
pub fn register(cert: &Path, key: &Path) {
    let fp = fingerprint_of(cert);
    let mut signers = SIGNERS.lock().unwrap_or_else(|p| p.into_inner());
    signers.get_or_insert_with(HashMap::new).insert(fp, (cert.to_path_buf(), key.to_path_buf()));
}

/// The signer of the certificate with this fingerprint (panics if the test PKI did not issue it).
pub fn signer(fingerprint: &str) -> IntentSigner {
    let found = SIGNERS.lock().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|m| m.get(fingerprint).cloned());
    let (cert, key) = found.unwrap_or_else(|| panic!("no test signer for certificate {fingerprint}"));
    IntentSigner::load(&cert, &key).expect("signer")
}

/// The requester's signature over a pending action's intent.
pub fn requester_signature(p: &cpb::PendingAction) -> kpb::IntentSignature {
    let intent = Intent::decode(&p.intent).expect("the pending action carries an intent");
    signer(&intent.requester.cert_sha256).sign(&p.intent).expect("sign")
}

/// Files of actor `name` in `pki` (issued on first use; `name` must not be a role file's).
pub fn actor_files(pki: &Pki, name: &str) -> (PathBuf, PathBuf) {
    let _guard = ISSUE.lock().unwrap_or_else(|p| p.into_inner());
    let (cert, key) = (pki.dir.join(format!("{name}.pem")), pki.dir.join(format!("{name}.key")));
    if !cert.exists() {
        aerodb::pki::issue(&pki.dir, TD, Role::Actor, name, None, &[], 30, time::OffsetDateTime::now_utc())
            .expect("issue actor");
    }
    register(&cert, &key);
    (cert, key)
}

/// The intent a Kernel.Execute request names, for `cluster_id`, valid for ten minutes.
pub fn intent_of(cluster_id: &str, req: &kpb::ExecuteRequest) -> Intent {
    let action = req.action.as_ref().and_then(Action::from_proto).expect("action");
    Intent {
        cluster_id: cluster_id.into(),
        command: Command::of(&action).expect("a command"),
        target_node: action.target_node.clone(),
        plan_epoch: req.plan_epoch,
        expected_control_seq: req.expected_control_seq,
        plan_digest: [0x5a; 32],
        idempotency_key: req.idempotency_key.clone(),
        confirmation: Confirmation::from_proto(req.confirmation.as_ref()),
        requester: Requester::from_proto(req.requester.as_ref().expect("requester")),
        not_after_unix_ms: now_unix_ms() + 600_000,
    }
}

/// Now, in Unix milliseconds (test code: the wall clock is what the kernel reads).
pub fn now_unix_ms() -> u64 {
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Signs a direct Kernel.Execute request as its requester would: the requester becomes the
/// actor certificate named like it (issued on first use), the digest follows, the intent names
/// every field, and the requester's key signs it.
pub fn sign_exec(c: &Cluster, req: kpb::ExecuteRequest) -> kpb::ExecuteRequest {
    sign_exec_with(&c.pki, "test", req)
}

/// [`sign_exec`] for a node of cluster `cluster_id` whose certificates are in `pki`.
pub fn sign_exec_with(pki: &Pki, cluster_id: &str, mut req: kpb::ExecuteRequest) -> kpb::ExecuteRequest {
    let name = req.requester.as_ref().map(|r| r.name.clone()).expect("requester");
    let (cert, _) = actor_files(pki, &name);
    let fp = fingerprint_of(&cert);
    if let Some(r) = req.requester.as_mut() {
        r.cert_sha256 = fp.clone();
    }
    let action = req.action.as_ref().and_then(Action::from_proto).expect("action");
    let requester = Requester::from_proto(req.requester.as_ref().expect("requester"));
    req.request_digest = aerodb::contract::digest::request_digest(&action, &requester).to_vec();
    let intent = intent_of(cluster_id, &req).encode();
    req.signatures = vec![signer(&fp).sign(&intent).expect("sign")];
    req.intent = intent;
    req
}

/// The ConfirmAction of a pending action with exactly what its requirements ask (typed target,
/// acknowledgements, acceptance) and `signatures`.
pub fn confirm_request(p: &cpb::PendingAction, signatures: Vec<kpb::IntentSignature>) -> cpb::ConfirmActionRequest {
    let r = p.requirements.clone().unwrap_or_default();
    cpb::ConfirmActionRequest {
        confirmation_id: p.confirmation_id.clone(),
        plan_digest: p.plan_digest.clone(),
        typed_target: r.typed_target,
        acknowledged_invariants: r.required_acknowledgements,
        accept_responsibility: r.responsibility_required,
        signatures,
    }
}
