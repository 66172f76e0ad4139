//! Issue 2: mutual TLS, identity from certificates, authorization by role, health and
//! reflection, PKI tooling, key-permission and reload behaviour, against real processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::sync::Arc;
use std::time::Duration;

use aerodb::pki::{Ca, LeafSpec, spiffe_id};
use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use aerodb::tls::identity::Role;
use aerodb::tls::material::{load_certs, load_key, provider};
use common::{Cluster, Spec, WAIT, wait_for, wire};
use rcgen::{ExtendedKeyUsagePurpose, SanType};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use tonic::Code;
use tonic::transport::Channel;

fn roots(pki: &common::Pki) -> Arc<RootCertStore> {
    let mut r = RootCertStore::empty();
    for c in load_certs(&pki.dir.join("ca.pem")).unwrap() {
        r.add(c).unwrap();
    }
    Arc::new(r)
}

/// A client configuration trusting the test CA and presenting `cert_pem`/`key_pem` (or nothing),
/// restricted to `versions`.
fn client_cfg(
    pki: &common::Pki,
    identity: Option<(&str, &str)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConfig {
    let b = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots(pki));
    let mut cfg = match identity {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            b.with_client_auth_cert(certs, key).unwrap()
        }
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    cfg
}

fn chan(cfg: ClientConfig, addr: &str) -> Channel {
    common::raw_channel(cfg, addr)
}

async fn health(ch: Channel) -> Result<(), tonic::Status> {
    common::health_check(ch).await
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn spec(common_name: &str, sans: Vec<SanType>, ekus: Vec<ExtendedKeyUsagePurpose>) -> LeafSpec {
    LeafSpec {
        common_name: common_name.into(),
        sans,
        ekus,
        is_ca: false,
        not_before: now() - time::Duration::hours(1),
        not_after: now() + time::Duration::days(1),
    }
}

fn uri(role: &str, td: &str, name: &str) -> SanType {
    SanType::URI(format!("spiffe://{td}/role/{role}/id/{name}").try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_a1_certificate_matrix_every_bad_certificate_is_refused_at_first_rpc() {
    let c = Cluster::start(Spec { nodes: 1, control_planes: 1, ..Default::default() }).await;
    let pki = &c.pki;
    let ca = Ca::load(&pki.dir).unwrap();
    let other_ca = Ca::create("aerodb.local", now(), 10).unwrap();
    let good_uri = || uri("observer", "aerodb.local", "matrix");
    let client = || vec![ExtendedKeyUsagePurpose::ClientAuth];

    let mut expired = spec("expired", vec![good_uri()], client());
    expired.not_before = now() - time::Duration::days(10);
    expired.not_after = now() - time::Duration::days(1);
    let mut not_yet = spec("future", vec![good_uri()], client());
    not_yet.not_before = now() + time::Duration::days(1);
    not_yet.not_after = now() + time::Duration::days(2);
    let mut ca_leaf = spec("ca-leaf", vec![good_uri()], client());
    ca_leaf.is_ca = true;

    let revoked = ca.sign(&spec("revoked", vec![good_uri()], client())).unwrap();
    let revoked_cert = pki.dir.join("revoked-matrix.pem");
    std::fs::write(&revoked_cert, &revoked.cert_pem).unwrap();
    aerodb::pki::revoke(&pki.dir, &revoked_cert, now()).unwrap();

    let mut cases: Vec<(&str, Option<aerodb::pki::Issued>, Option<&Ca>)> = vec![
        ("no certificate", None, None),
        ("another CA", Some(other_ca.sign(&spec("other", vec![good_uri()], client())).unwrap()), None),
        ("expired", Some(ca.sign(&expired).unwrap()), None),
        ("not yet valid", Some(ca.sign(&not_yet).unwrap()), None),
        (
            "serverAuth-only EKU",
            Some(ca.sign(&spec("srv", vec![good_uri()], vec![ExtendedKeyUsagePurpose::ServerAuth])).unwrap()),
            None,
        ),
        ("CA:true leaf", Some(ca.sign(&ca_leaf).unwrap()), None),
        ("CN only", Some(ca.sign(&spec("observer", vec![], client())).unwrap()), None),
        (
            "two URI SANs",
            Some(ca.sign(&spec("two", vec![good_uri(), uri("actor", "aerodb.local", "x")], client())).unwrap()),
            None,
        ),
        ("unknown role", Some(ca.sign(&spec("root", vec![uri("root", "aerodb.local", "x")], client())).unwrap()), None),
        (
            "foreign trust domain",
            Some(ca.sign(&spec("evil", vec![uri("observer", "evil.example", "x")], client())).unwrap()),
            None,
        ),
        ("revoked (listed in the CRL)", Some(revoked.clone()), None),
    ];
    // The servers reload the CRL on SIGHUP (and on file change); make them do it now.
    for n in &c.nodes {
        n.proc.child.as_ref().map(|ch| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(ch.id() as i32), nix::sys::signal::Signal::SIGHUP)
        });
    }
    for k in &c.controls {
        k.proc.child.as_ref().map(|ch| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(ch.id() as i32), nix::sys::signal::Signal::SIGHUP)
        });
    }
    let servers = [c.controls[0].addr.clone(), c.nodes[0].addr.clone()];
    // The revoked certificate is refused once the reloaded CRL is in service (bounded wait on
    // the condition; every attempt is a fresh handshake).
    for addr in &servers {
        let cfg = client_cfg(pki, Some((&revoked.cert_pem, &revoked.key_pem)), &[&rustls::version::TLS13]);
        wait_for("the revoked certificate is refused", WAIT, || {
            let cfg = cfg.clone();
            async move { health(chan(cfg, addr)).await.is_err().then_some(()) }
        })
        .await;
    }
    cases.retain(|c| c.2.is_none());
    for addr in &servers {
        for (name, issued, _) in &cases {
            let cfg = match issued {
                None => client_cfg(pki, None, &[&rustls::version::TLS13]),
                Some(i) => client_cfg(pki, Some((&i.cert_pem, &i.key_pem)), &[&rustls::version::TLS13]),
            };
            let r = health(chan(cfg, addr)).await;
            assert!(r.is_err(), "{name}: refused at {addr}, got {r:?}");
            assert_ne!(r.unwrap_err().code(), Code::Ok, "{name}");
        }
        // A TLS 1.2-only client, with a valid certificate.
        let good = aerodb::pki::Issued {
            cert_pem: std::fs::read_to_string(pki.dir.join("observer.pem")).unwrap(),
            key_pem: std::fs::read_to_string(pki.dir.join("observer.key")).unwrap(),
            serial_hex: String::new(),
        };
        let tls12 = client_cfg(pki, Some((&good.cert_pem, &good.key_pem)), &[&rustls::version::TLS12]);
        assert!(health(chan(tls12, addr)).await.is_err(), "a TLS 1.2-only client is refused at {addr}");
        // The same valid certificate over TLS 1.3 is accepted: the matrix can fail.
        let tls13 = client_cfg(pki, Some((&good.cert_pem, &good.key_pem)), &[&rustls::version::TLS13]);
        health(chan(tls13, addr)).await.expect("a valid observer certificate is accepted");
    }

    // The control plane audited the refused handshakes, with the presented fingerprint.
    let records = wait_for("handshake refusals are audited", WAIT, || async {
        let r = c.audit_records(0);
        let n = r.iter().filter(|b| b.draft.stage == aerodb::audit::record::Stage::HandshakeRejected).count();
        (n >= cases.len()).then_some(r)
    })
    .await;
    // Each refusal names its reason: the matrix proves each certificate is refused for the
    // rule it breaks, not merely refused.
    let expected: &[(&str, &str)] = &[
        ("another CA", "BadSignature"),
        ("expired", "certificate expired"),
        ("not yet valid", "not valid yet"),
        ("serverAuth-only EKU", "does not allow extended key usage for client authentication"),
        ("CA:true leaf", "CaUsedAsEndEntity"),
        ("CN only", "has no URI SAN"),
        ("two URI SANs", "2 URI SANs"),
        ("unknown role", "unknown role"),
        ("foreign trust domain", "trust domain \"evil.example\" is not the configured"),
        ("revoked (listed in the CRL)", "Revoked"),
    ];
    let mut wrong = Vec::new();
    for (name, issued, _) in &cases {
        let Some(i) = issued else { continue };
        let der = rustls_pki_types::CertificateDer::from_pem_slice(i.cert_pem.as_bytes()).unwrap();
        let fp = aerodb::tls::identity::fingerprint(der.as_ref());
        let reasons: Vec<String> = records
            .iter()
            .filter(|b| b.draft.detail.get("cert_sha256") == Some(&fp))
            .filter_map(|b| b.draft.detail.get("reason").cloned())
            .collect();
        let want = expected.iter().find(|(n, _)| n == name).map(|(_, w)| *w).unwrap();
        if reasons.is_empty() || !reasons.iter().all(|r| r.to_lowercase().contains(&want.to_lowercase())) {
            wrong.push(format!("{name}: refused for its rule ({want}), got {reasons:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    let der =
        rustls_pki_types::CertificateDer::from_pem_slice(cases[2].1.as_ref().unwrap().cert_pem.as_bytes()).unwrap();
    let expired_fp = aerodb::tls::identity::fingerprint(der.as_ref());
    assert!(
        records.iter().any(|b| b.draft.detail.get("cert_sha256") == Some(&expired_fp)
            && b.draft.detail.get("reason").is_some_and(|r| r.to_lowercase().contains("expired"))),
        "the expired certificate's refusal names its fingerprint and the reason"
    );
}

/// Calls one harmless method of `service` with `role`'s certificate; returns the status code
/// (Ok when it answered).
async fn call(c: &Cluster, role: Role, service: &str) -> Result<(), tonic::Status> {
    let control = c.pki.channel(role, &c.controls[0].addr);
    let node = c.pki.channel(role, &c.nodes[0].addr);
    let to = Duration::from_secs(10);
    let r: Result<(), tonic::Status> = match service {
        "Observer" => cpb::observer_client::ObserverClient::new(control)
            .get_cluster_state(cpb::GetClusterStateRequest {})
            .await
            .map(|_| ()),
        "Actor" => cpb::actor_client::ActorClient::new(control)
            .decline_action(cpb::DeclineActionRequest { confirmation_id: "none".into() })
            .await
            .map(|_| ()),
        "Auditor" => cpb::auditor_client::AuditorClient::new(control)
            .verify_audit(cpb::VerifyAuditRequest::default())
            .await
            .map(|_| ()),
        "Kernel" => kpb::kernel_client::KernelClient::new(node).observe(kpb::ObserveRequest {}).await.map(|_| ()),
        "Replication" => kpb::replication_client::ReplicationClient::new(node)
            .hash_at(kpb::HashAtRequest { cluster_id: "test".into(), index: 1 })
            .await
            .map(|_| ()),
        "Data" => kpb::data_client::DataClient::new(node).get(kpb::GetRequest { key: b"x".to_vec() }).await.map(|_| ()),
        other => panic!("{other}"),
    };
    let _ = to;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_a1_every_role_times_every_service_matches_the_design_table() {
    let c = Cluster::start(Spec { nodes: 1, control_planes: 1, ..Default::default() }).await;
    let allowed = |service: &str, role: Role| match service {
        "Observer" => matches!(role, Role::Observer | Role::Actor | Role::Auditor),
        "Actor" => role == Role::Actor,
        "Auditor" => role == Role::Auditor,
        "Kernel" => role == Role::ControlPlane,
        "Replication" => role == Role::Node,
        "Data" => role == Role::Client,
        _ => false,
    };
    for service in ["Observer", "Actor", "Auditor", "Kernel", "Replication", "Data"] {
        for role in Role::ALL {
            let r = call(&c, role, service).await;
            if allowed(service, role) {
                if let Err(s) = &r {
                    assert_ne!(s.code(), Code::PermissionDenied, "{role} may call {service}: {s:?}");
                }
            } else {
                let s = r.expect_err(&format!("{role} must be denied {service}"));
                assert_eq!(s.code(), Code::PermissionDenied, "{role} {service}");
                let w = wire(&s);
                assert_eq!(w.code, "PHASE7_INSUFFICIENT_AUTHORITY");
                assert_eq!(w.invariants, vec!["P7-A1".to_string()]);
                assert_eq!(w.outcome, aerodb::wire::Outcome::NotExecuted);
            }
        }
    }
    // Denials at the control plane are audited with identity and method.
    let denied =
        c.audit_records(0).into_iter().filter(|b| b.draft.stage == aerodb::audit::record::Stage::Denied).count();
    assert_eq!(denied, 3 + 5 + 5, "Observer denies 3 roles, Actor and Auditor 5 each");
}

/// A raw unary call to any path, with an empty message.
async fn raw(ch: Channel, path: &'static str) -> Result<(), tonic::Status> {
    let mut g = tonic::client::Grpc::new(ch);
    g.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<kpb::ObserveRequest, kpb::ObserveRequest>::default();
    g.unary(tonic::Request::new(kpb::ObserveRequest {}), http::uri::PathAndQuery::from_static(path), codec)
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_a1_unknown_methods_are_permission_denied_not_unimplemented() {
    let c = Cluster::start(Spec { nodes: 1, control_planes: 1, ..Default::default() }).await;
    for (role, addr) in [(Role::Observer, &c.controls[0].addr), (Role::ControlPlane, &c.nodes[0].addr)] {
        for path in [
            "/aerodb.control.v1.Observer/Nope",
            "/aerodb.kernel.v1.Kernel/Reset",
            "/foo.Bar/Baz",
            // A real method of a service the other server mounts: unknown here.
            if role == Role::Observer {
                "/aerodb.kernel.v1.Kernel/Observe"
            } else {
                "/aerodb.control.v1.Observer/GetClusterState"
            },
        ] {
            let s = raw(c.pki.channel(role, addr), path).await.expect_err("denied");
            assert_eq!(s.code(), Code::PermissionDenied, "{path}");
            assert_eq!(wire(&s).code, "PHASE7_INSUFFICIENT_AUTHORITY");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_v1_and_v1alpha_answer_every_authenticated_role() {
    let c = Cluster::start(Spec { nodes: 1, control_planes: 1, ..Default::default() }).await;
    for addr in [&c.controls[0].addr, &c.nodes[0].addr] {
        for role in Role::ALL {
            health(c.pki.channel(role, addr)).await.unwrap_or_else(|e| panic!("{role} health at {addr}: {e:?}"));
            // Reflection v1: list services.
            let mut v1 = tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
                c.pki.channel(role, addr),
            );
            let req = tonic_reflection::pb::v1::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(String::new()),
                ),
            };
            let mut stream =
                v1.server_reflection_info(tokio_stream::iter(vec![req])).await.expect("reflection v1").into_inner();
            let resp = stream.message().await.expect("v1 answer").expect("one message");
            let listed = format!("{resp:?}");
            let (mine, other) = if addr == &c.controls[0].addr {
                ("aerodb.control.v1", "aerodb.kernel.v1")
            } else {
                ("aerodb.kernel.v1", "aerodb.control.v1")
            };
            assert!(
                listed.contains(mine) && !listed.contains(other),
                "{role}: reflection lists exactly this server's services: {listed}"
            );
            // Reflection v1alpha (grpcurl needs it).
            let mut va = tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient::new(
                c.pki.channel(role, addr),
            );
            let req = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest::ListServices(
                        String::new(),
                    ),
                ),
            };
            let mut stream = va
                .server_reflection_info(tokio_stream::iter(vec![req]))
                .await
                .expect("reflection v1alpha")
                .into_inner();
            assert!(stream.message().await.expect("v1alpha answer").is_some());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_readable_by_others_makes_every_server_refuse_to_start_naming_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let mut c = Cluster::build(Spec { nodes: 1, control_planes: 1, ..Default::default() }).await;
    // Each server has its own key: node n1's and the control plane's.
    let node_key = c.pki.node_paths("n1").key;
    let control_key = c.pki.dir.join("controlplane.key");
    for key in [&node_key, &control_key] {
        std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    c.nodes[0].proc.start();
    c.controls[0].proc.start();
    for (p, key) in [(&mut c.nodes[0].proc, &node_key), (&mut c.controls[0].proc, &control_key)] {
        let status = wait_for("the server exits", WAIT, || {
            let s = p.exited();
            async move { s }
        })
        .await;
        assert!(!status.success(), "{} refused to start", p.name);
        let log = p.log_text();
        assert!(log.contains(&key.display().to_string()), "{} names the key file: {log}", p.name);
        assert!(log.contains("must not be readable by group or others"), "{log}");
    }
}

/// Every refused handshake a listener reports, with the peer and the reason.
#[derive(Default)]
struct Refusals(std::sync::Mutex<Vec<(std::net::SocketAddr, String)>>);

impl aerodb::tls::accept::HandshakeObserver for Refusals {
    fn rejected(&self, peer: std::net::SocketAddr, failure: aerodb::tls::verifier::HandshakeFailure) {
        self.0.lock().unwrap().push((peer, failure.reason));
    }
}

impl Refusals {
    fn count(&self, ip: &str, reason: &str) -> usize {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        self.0.lock().unwrap().iter().filter(|(p, why)| p.ip() == ip && why.contains(reason)).count()
    }
}

/// A TLS client handshake with the observer certificate from `from` to `addr`, and the server's
/// side of it from `incoming`.
async fn handshake_from(
    pki: &common::Pki,
    from: &str,
    addr: std::net::SocketAddr,
    incoming: &mut tokio_stream::wrappers::ReceiverStream<
        Result<aerodb::tls::accept::AuthenticatedStream, std::io::Error>,
    >,
) -> Arc<aerodb::tls::accept::ConnInfo> {
    use tokio_stream::StreamExt;
    use tonic::transport::server::Connected;
    let client = aerodb::tls::material::client_config(&pki.paths(Role::Observer)).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let (client, server) =
        tokio::time::timeout(WAIT, async { tokio::join!(connector.connect(name, tcp), incoming.next()) })
            .await
            .expect("the handshake completes in time");
    client.expect("the client completes its handshake");
    server.expect("the listener yields the connection").expect("an authenticated stream").connect_info()
}

/// Issue 2 §3: a handshake is bounded in time, and an address that opens connections and never
/// completes them holds only its share of the listener's slots: a client from another address
/// still gets in, and the stalled ones are dropped and reported when their time is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_time_out_and_one_address_cannot_take_every_slot() {
    use aerodb::tls::accept::{ServerLimits, tls_incoming};
    let dir = tempfile::tempdir().unwrap();
    let pki = common::Pki::new(dir.path());
    let server_paths = aerodb::tls::material::TlsPaths {
        ca: pki.dir.join("ca.pem"),
        crl: vec![pki.dir.join("crl.pem")],
        cert: pki.node_paths("n1").cert,
        key: pki.node_paths("n1").key,
    };
    let tls = aerodb::tls::material::server_tls(&server_paths, "aerodb.local").unwrap();
    let (_keep, config) = tokio::sync::watch::channel(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let refusals = Arc::new(Refusals::default());
    let limits = ServerLimits {
        handshake_timeout: Duration::from_millis(500),
        max_connections: 8,
        max_handshakes_per_peer: 2,
        ..ServerLimits::default()
    };
    let mut incoming = tls_incoming(listener, config, "aerodb.local".into(), limits, refusals.clone());

    // 127.0.0.2 opens three connections and never speaks: the third is refused at once.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        stalled.push(socket.connect(addr).await.unwrap());
    }
    wait_for("the third stalled connection is refused", WAIT, || {
        let r = refusals.clone();
        async move { (r.count("127.0.0.2", "2 handshakes already in flight from 127.0.0.2") == 1).then_some(()) }
    })
    .await;
    // Meanwhile a client from another address completes its handshake and has its identity.
    let info = handshake_from(&pki, "127.0.0.1", addr, &mut incoming).await;
    assert_eq!(info.identity.as_ref().map(|i| i.role).ok(), Some(Role::Observer));
    // The two stalled handshakes are dropped when their time is up, and reported.
    wait_for("both stalled handshakes time out", WAIT, || {
        let r = refusals.clone();
        async move { (r.count("127.0.0.2", "handshake not completed within 500 ms") == 2).then_some(()) }
    })
    .await;
    // Their places are free again: the same address completes a handshake.
    let info = handshake_from(&pki, "127.0.0.2", addr, &mut incoming).await;
    assert!(info.identity.is_ok());
    drop(stalled);
}

/// P7-A1: revoking a certificate takes its authority away on connections already open with it,
/// not only at the next handshake: the servers close those connections when they reload. A
/// client still holding the revoked certificate is then refused at its next handshake; a client
/// that has rotated to a new certificate reconnects with it and goes on (the node-to-node and
/// control-plane-to-kernel channels work this way when their material is renewed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p7_a1_a_certificate_revoked_while_connected_loses_authority_on_its_open_connection() {
    let c = Cluster::start(Spec { nodes: 1, control_planes: 1, ..Default::default() }).await;
    let ca = Ca::load(&c.pki.dir).unwrap();
    let observer_spec =
        |name: &str| spec(name, vec![uri("observer", "aerodb.local", name)], vec![ExtendedKeyUsagePurpose::ClientAuth]);
    let old = ca.sign(&observer_spec("late")).unwrap();
    let renewed = ca.sign(&observer_spec("late-renewed")).unwrap();
    let cert = c.pki.dir.join("late-revoked.pem");
    std::fs::write(&cert, &old.cert_pem).unwrap();
    let tls13: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let servers = [c.controls[0].addr.clone(), c.nodes[0].addr.clone()];
    // Per server: a channel that keeps the old certificate, and one whose material is rotated.
    let mut kept = Vec::new();
    let mut rotated = Vec::new();
    for addr in &servers {
        kept.push(chan(client_cfg(&c.pki, Some((&old.cert_pem, &old.key_pem)), tls13), addr));
        let (tx, rx) =
            tokio::sync::watch::channel(Arc::new(client_cfg(&c.pki, Some((&old.cert_pem, &old.key_pem)), tls13)));
        let ch = aerodb::tls::client::channel(addr, rx, Default::default()).unwrap();
        rotated.push((tx, ch));
    }
    let mut observer = cpb::observer_client::ObserverClient::new(kept[0].clone());
    observer.get_cluster_state(cpb::GetClusterStateRequest {}).await.expect("answered before the revocation");
    for ch in kept.iter().chain(rotated.iter().map(|(_, ch)| ch)) {
        health(ch.clone()).await.expect("answered before the revocation");
    }
    let unrevoked = c.pki.channel(Role::Observer, &c.controls[0].addr);
    health(unrevoked.clone()).await.expect("another observer answers before the revocation");

    aerodb::pki::revoke(&c.pki.dir, &cert, now()).unwrap();
    for p in c.nodes.iter().map(|n| &n.proc).chain(c.controls.iter().map(|k| &k.proc)) {
        let pid = p.child.as_ref().unwrap().id() as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP).unwrap();
    }
    // Every channel made with the old certificate stops being answered.
    for ch in kept.iter().chain(rotated.iter().map(|(_, ch)| ch)) {
        wait_for("the open connection loses its authority", WAIT, || {
            let ch = ch.clone();
            async move { health(ch).await.err().map(|_| ()) }
        })
        .await;
    }
    // The rotated channels reconnect with their new certificate and are answered again: the
    // server closed the refused connection rather than leaving it open and denied.
    for (tx, _) in &rotated {
        tx.send_replace(Arc::new(client_cfg(&c.pki, Some((&renewed.cert_pem, &renewed.key_pem)), tls13)));
    }
    for (_, ch) in &rotated {
        wait_for("a rotated client is answered again", WAIT, || {
            let ch = ch.clone();
            async move { health(ch).await.ok() }
        })
        .await;
    }
    // The ones that kept the revoked certificate are refused at their next handshake, for good.
    for ch in &kept {
        assert!(health(ch.clone()).await.is_err(), "a revoked certificate is never answered again");
    }
    assert!(observer.get_cluster_state(cpb::GetClusterStateRequest {}).await.is_err());
    // The control plane recorded the refused reconnection with the revoked certificate.
    let der = rustls_pki_types::CertificateDer::from_pem_slice(old.cert_pem.as_bytes()).unwrap();
    let fp = aerodb::tls::identity::fingerprint(der.as_ref());
    wait_for("the refused reconnection is audited", WAIT, || async {
        c.audit_records(0).iter().any(|b| b.draft.detail.get("cert_sha256") == Some(&fp)).then_some(())
    })
    .await;
    // Only the revoked certificate lost its authority.
    health(unrevoked).await.expect("an unrevoked observer keeps its open connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_crl_on_reload_keeps_the_old_set_in_service_and_says_so() {
    let c = Cluster::start(Spec { nodes: 1, control_planes: 1, ..Default::default() }).await;
    let crl = c.pki.dir.join("crl.pem");
    let good = std::fs::read(&crl).unwrap();
    std::fs::write(&crl, b"-----BEGIN X509 CRL-----\nnot base64 at all\n-----END X509 CRL-----\n").unwrap();
    let pid = c.controls[0].proc.child.as_ref().unwrap().id() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_for("the refused reload is logged", WAIT, || async {
        c.controls[0].proc.log_text().contains("TLS reload refused").then_some(())
    })
    .await;
    health(c.pki.channel(Role::Observer, &c.controls[0].addr)).await.expect("the old set still serves");
    std::fs::write(&crl, good).unwrap();
}

#[test]
fn certs_init_issue_and_revoke_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("certs");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(common::aerodb_bin()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["certs", "init", "--dir", d.to_str().unwrap(), "--trust-domain", "aerodb.local"]);
    run(&["certs", "issue", "--dir", d.to_str().unwrap(), "--role", "actor", "--name", "alice"]);
    let der = load_certs(&d.join("alice.pem")).unwrap();
    let id = aerodb::tls::identity::identity_from_der(der[0].as_ref(), "aerodb.local").unwrap();
    assert_eq!((id.role, id.name.as_str()), (Role::Actor, "alice"));
    assert!(d.join("alice.profile.toml").exists());
    load_key(&d.join("alice.key")).expect("0600 key loads");
    let out = run(&["certs", "revoke", "--dir", d.to_str().unwrap(), d.join("alice.pem").to_str().unwrap()]);
    assert!(out.contains(&id.serial), "{out}");
    let (revoked, _) = aerodb::pki::read_crl(&d.join("crl.pem")).unwrap();
    assert_eq!(hex::encode(&revoked[0].0), id.serial);
    assert_eq!(spiffe_id("aerodb.local", Role::Actor, "alice"), "spiffe://aerodb.local/role/actor/id/alice");
    // Initialising twice never overwrites a CA.
    let again = std::process::Command::new(common::aerodb_bin())
        .args(["certs", "init", "--dir", d.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!again.status.success());
}
