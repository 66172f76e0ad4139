//! `aerodb dev`: a 3-node cluster and a control plane in one process, on loopback.
//!
//! Creates dev certificates (if absent) and data dirs (if absent: n1 is the genesis primary),
//! writes the configuration files it uses beside the data (so each part can also be run on its
//! own), starts everything, prints aerodbctl lines to try, and stops cleanly on Ctrl-C (the audit
//! log is sealed with a checkpoint). Restarting reuses certificates and data. Every directory it
//! creates is private ([`crate::fsutil::DIR_MODE`]), so the nodes and the control plane accept them.

use std::path::{Path, PathBuf};

use crate::control::config::{AuditConfig, ControlConfig, ControlTls, FlowConfig, KernelCalls};
use crate::kernel::config::{Member, NodeConfig, NodeTls, Timing};

/// The cluster id of the dev cluster.
pub const CLUSTER_ID: &str = "dev";

fn abs(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// TLS paths of node `node_id` for certificates laid out by `aerodb certs init` in `certs_dir`:
/// its own certificate `node-<id>` both serves and calls its peers.
pub fn node_tls(certs_dir: &Path, node_id: &str) -> NodeTls {
    let c = |f: &str| abs(&certs_dir.join(f));
    let stem = crate::pki::node_stem(node_id);
    NodeTls {
        trust_domain: "aerodb.local".into(),
        ca: c("ca.pem"),
        crl: vec![c("crl.pem")],
        server_cert: c(&format!("{stem}.pem")),
        server_key: c(&format!("{stem}.key")),
        node_cert: c(&format!("{stem}.pem")),
        node_key: c(&format!("{stem}.key")),
    }
}

/// Control-plane TLS paths for certificates laid out by `aerodb certs init` in `certs_dir`: its
/// own certificate `controlplane` both serves (identity `controlplane/dev-controlplane`) and calls
/// the kernels.
pub fn control_tls(certs_dir: &Path) -> ControlTls {
    let c = |f: &str| abs(&certs_dir.join(f));
    ControlTls {
        trust_domain: "aerodb.local".into(),
        ca: c("ca.pem"),
        crl: vec![c("crl.pem")],
        server_cert: c("controlplane.pem"),
        server_key: c("controlplane.key"),
        kernel_cert: c("controlplane.pem"),
        kernel_key: c("controlplane.key"),
    }
}

/// The metrics port of part `i` of a dev cluster (0: the control plane, 1..=3: the nodes): the
/// four ports after the gRPC ones (`base_port + 4 + i`).
pub fn metrics_port(base_port: u16, i: u16) -> u16 {
    base_port.saturating_add(4).saturating_add(i)
}

/// The node and control configurations of a dev cluster rooted at `data_dir`.
pub fn configs(data_dir: &Path, certs_dir: &Path, base_port: u16) -> (Vec<NodeConfig>, ControlConfig) {
    let members: Vec<Member> =
        (1..=3u16).map(|i| Member { id: format!("n{i}"), address: format!("127.0.0.1:{}", base_port + i) }).collect();
    let nodes = (1..=3u16)
        .zip(&members)
        .map(|(i, m)| NodeConfig {
            cluster_id: CLUSTER_ID.into(),
            node_id: m.id.clone(),
            listen: m.address.clone(),
            data_dir: abs(&data_dir.join(&m.id)),
            members: members.clone(),
            tls: node_tls(certs_dir, &m.id),
            timing: Timing::default(),
            connections: Default::default(),
            metrics_address: Some(format!("127.0.0.1:{}", metrics_port(base_port, i))),
            approvals: Default::default(),
            lifecycle: Default::default(),
        })
        .collect();
    let control = ControlConfig {
        instance_id: "cp1".into(),
        cluster_id: CLUSTER_ID.into(),
        listen: format!("127.0.0.1:{base_port}"),
        audit_dir: abs(&data_dir.join("control").join("audit")),
        nodes: members,
        tls: control_tls(certs_dir),
        flow: FlowConfig::default(),
        kernel: KernelCalls::default(),
        audit: AuditConfig::default(),
        connections: Default::default(),
        metrics_address: Some(format!("127.0.0.1:{}", metrics_port(base_port, 0))),
    };
    (nodes, control)
}

/// Points the aerodbctl profiles in `certs_dir` at the cluster on `base_port`: the operator
/// profiles (observer, actor, auditor) at its control plane, the client profile at n1 with every
/// node in `endpoints`. A profile already right is left untouched; a missing one is not
/// created. Returns the profiles rewritten (so a restart with another `--base-port` never leaves
/// stale endpoints behind).
pub fn refresh_profiles(certs_dir: &Path, base_port: u16) -> Result<Vec<PathBuf>, crate::pki::PkiError> {
    let control = format!("127.0.0.1:{base_port}");
    let nodes: Vec<String> = (1..=3u16).map(|i| format!("127.0.0.1:{}", base_port.saturating_add(i))).collect();
    let mut rewritten = Vec::new();
    for (role, endpoint, endpoints) in [
        ("observer", control.clone(), Vec::new()),
        ("actor", control.clone(), Vec::new()),
        ("auditor", control.clone(), Vec::new()),
        ("client", nodes[0].clone(), nodes.clone()),
    ] {
        let path = certs_dir.join(format!("{role}.profile.toml"));
        if !path.exists() {
            continue;
        }
        let (mut profile, old_endpoints) = crate::pki::profile::Profile::read_with_endpoints(&path)?;
        if profile.endpoint == endpoint && old_endpoints == endpoints {
            continue;
        }
        profile.endpoint = endpoint;
        profile.write_with_endpoints(&path, &endpoints)?;
        rewritten.push(path);
    }
    Ok(rewritten)
}

/// The role each node reports (`n1 (primary), n2 (replica), …`), asked over mutual TLS with the
/// control plane's certificate as the control plane asks; a node that does not answer within
/// `deadline` is shown as `unreachable`. Reads only.
pub async fn observed_roles(nodes: &[NodeConfig], certs_dir: &Path, deadline: std::time::Duration) -> String {
    use crate::proto::kernel as kpb;
    let tls = control_tls(certs_dir);
    let paths = crate::tls::material::TlsPaths {
        ca: tls.ca.clone(),
        crl: Vec::new(),
        cert: tls.kernel_cert.clone(),
        key: tls.kernel_key.clone(),
    };
    let until = tokio::time::Instant::now() + deadline;
    let mut out = Vec::new();
    for n in nodes {
        let role = async {
            let client = crate::tls::material::client_tls(&paths, &tls.trust_domain).ok()?;
            let ch = crate::tls::client::channel_to(
                &n.listen,
                crate::tls::client::fixed(client),
                crate::tls::server_identity::ExpectedServer::any(crate::tls::identity::Role::Node),
                crate::tls::client::ChannelOptions { connect_timeout: std::time::Duration::from_secs(1) },
            )
            .ok()?;
            let mut kernel = kpb::kernel_client::KernelClient::new(ch);
            loop {
                if let Ok(r) = kernel.observe(kpb::ObserveRequest {}).await {
                    let role = r.into_inner().authority.map(|a| a.role()).unwrap_or(kpb::Role::Unspecified);
                    return Some(role.as_str_name().trim_start_matches("ROLE_").to_ascii_lowercase());
                }
                if tokio::time::Instant::now() >= until {
                    return None;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        };
        let role = tokio::time::timeout_at(until, role).await.ok().flatten();
        out.push(format!("{} ({})", n.node_id, role.as_deref().unwrap_or("unreachable")));
    }
    out.join(", ")
}

/// Runs the dev cluster until SIGINT/SIGTERM.
pub async fn run(data_dir: &Path, certs_dir: &Path, base_port: u16) -> anyhow::Result<()> {
    let opts = crate::pki::InitOptions {
        trust_domain: "aerodb.local".into(),
        control_endpoint: format!("127.0.0.1:{base_port}"),
        data_endpoint: format!("127.0.0.1:{}", base_port + 1),
        extra_server_names: vec![],
        leaf_days: crate::pki::LEAF_VALIDITY_DAYS,
        nodes: crate::pki::DEFAULT_NODES.map(String::from).to_vec(),
    };
    let now = time::OffsetDateTime::from_unix_timestamp(
        (crate::clock::Clock::now_unix_ms(&crate::clock::SystemClock::new()) / 1000) as i64,
    )?;
    if !certs_dir.join("ca.pem").exists() {
        crate::pki::init(certs_dir, &opts, now)?;
        println!("created dev certificates in {}", certs_dir.display());
    } else {
        // A directory from a version with one shared node and server certificate: add what this
        // version needs (a certificate per node, a control plane certificate that serves) with
        // the same CA, keeping everything else (profiles, CRL, revocations).
        let added = crate::pki::upgrade(certs_dir, &opts, now)?;
        if !added.is_empty() {
            println!("added {} certificate(s) to {}:", added.len(), certs_dir.display());
            for f in added {
                println!("  {}", f.display());
            }
        }
    }
    for path in refresh_profiles(certs_dir, base_port)? {
        println!("updated {} for base port {base_port}", path.display());
    }
    let (nodes, control) = configs(data_dir, certs_dir, base_port);
    crate::fsutil::create_dir_durable(data_dir)?;
    for (i, n) in nodes.iter().enumerate() {
        if !n.data_dir.join("control.log").exists() {
            crate::kernel::node::init(&n.data_dir, CLUSTER_ID, &n.node_id, i == 0).await?;
            println!("initialised {} ({})", n.node_id, if i == 0 { "genesis primary" } else { "replica" });
        }
        let path = data_dir.join(format!("{}.toml", n.node_id));
        crate::fsutil::write_atomic(&path, toml::to_string(n)?.as_bytes(), crate::fsutil::FILE_MODE)?;
    }
    let path = data_dir.join("control.toml");
    crate::fsutil::write_atomic(&path, toml::to_string(&control)?.as_bytes(), crate::fsutil::FILE_MODE)?;

    let shutdown = crate::shutdown::on_signals()?;
    let mut tasks = tokio::task::JoinSet::new();
    for n in nodes.clone() {
        let s = shutdown.clone();
        let id = n.node_id.clone();
        tasks
            .spawn(async move { crate::kernel::run::run(n, s).await.map_err(|e| anyhow::anyhow!("node {id}: {e:#}")) });
    }
    let s = shutdown.clone();
    let clock = crate::clock::SystemClock::shared();
    let ctl = control.clone();
    tasks.spawn(
        async move { crate::control::run::run(ctl, clock, s).await.map_err(|e| anyhow::anyhow!("control: {e:#}")) },
    );

    let p = |role: &str| certs_dir.join(format!("{role}.profile.toml")).display().to_string();
    println!();
    let roles = observed_roles(&nodes, certs_dir, std::time::Duration::from_secs(10)).await;
    println!(
        "AeroDB dev cluster: nodes on 127.0.0.1:{}-{}; control plane on {}",
        base_port + 1,
        base_port + 3,
        control.listen
    );
    println!("roles now: {roles}");
    println!("data in {}, audit log in {}", data_dir.display(), control.audit_dir.display());
    println!(
        "Prometheus metrics (plain HTTP, loopback): control plane http://127.0.0.1:{}/metrics, nodes \
         http://127.0.0.1:{}-{}/metrics",
        metrics_port(base_port, 0),
        metrics_port(base_port, 1),
        metrics_port(base_port, 3)
    );
    println!("try:");
    println!("  aerodbctl --profile {} status", p("observer"));
    println!("  aerodbctl --profile {} kv put greeting hello", p("client"));
    println!("  aerodbctl --profile {} demote n1", p("actor"));
    println!("  aerodbctl --profile {} promote n2", p("actor"));
    println!("  aerodbctl --profile {} audit tail", p("auditor"));
    println!("(cargo run --release --bin aerodbctl -- … if aerodbctl is not on your PATH). Ctrl-C stops everything.");

    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("error: {e}");
                first_error.get_or_insert(e);
                // One part failed: stop the rest rather than run a partial cluster.
                tasks.abort_all();
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                first_error.get_or_insert(anyhow::anyhow!("task failed: {e}"));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => {
            println!("dev cluster stopped");
            Ok(())
        }
    }
}
