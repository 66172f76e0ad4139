//! Real processes for the benchmarks: aerodb nodes and control planes from the binaries next to
//! `aerodb-bench`, and etcd (from PATH) with TLS client authentication.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tonic::transport::Channel;

use crate::kernel::config::{Member, NodeConfig, Timing};
use crate::proto::control as cpb;
use crate::proto::kernel as kpb;
use crate::tls::client::{ChannelOptions, channel, fixed};
use crate::tls::identity::Role;
use crate::tls::material::{TlsPaths, client_config};

/// A child process killed on drop.
#[derive(Debug)]
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The directory of the running benchmark binary (where `aerodb` also is).
pub fn bin_dir() -> PathBuf {
    std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default()
}

/// A free loopback port.
pub fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// Certificates for a benchmark in `dir`: `certs init` for nodes n1..n9, plus a plain loopback
/// server certificate `server.pem` for the baselines (etcd, the bare TLS runs), which check no
/// SPIFFE identity.
pub fn certs(dir: &Path) -> anyhow::Result<()> {
    let now = time::OffsetDateTime::now_utc();
    let opts = crate::pki::InitOptions {
        trust_domain: "aerodb.local".into(),
        control_endpoint: "127.0.0.1:1".into(),
        data_endpoint: "127.0.0.1:1".into(),
        extra_server_names: vec![],
        leaf_days: 2,
        nodes: (1..=9).map(|i| format!("n{i}")).collect(),
    };
    crate::pki::init(dir, &opts, now)?;
    let ca = crate::pki::Ca::load(dir)?;
    ca.sign(&crate::pki::LeafSpec::loopback_server(&[], now, 2)?)?.write(dir, "server")?;
    Ok(())
}

/// An mTLS channel with `role`'s certificate.
pub fn chan(certs: &Path, role: Role, addr: &str) -> anyhow::Result<Channel> {
    chan_as(certs, &role.to_string(), addr)
}

/// An mTLS channel with the certificate `<stem>.pem` (`node-n3` for node n3's).
pub fn chan_as(certs: &Path, stem: &str, addr: &str) -> anyhow::Result<Channel> {
    let paths = TlsPaths {
        ca: certs.join("ca.pem"),
        crl: vec![],
        cert: certs.join(format!("{stem}.pem")),
        key: certs.join(format!("{stem}.key")),
    };
    Ok(channel(addr, fixed(client_config(&paths)?), ChannelOptions::default())?)
}

/// `n` independent mTLS channels (one connection each) with `role`'s certificate: one per
/// simulated client, as `n` separate client processes would have.
pub fn chans(certs: &Path, role: Role, addr: &str, n: usize) -> anyhow::Result<Vec<Channel>> {
    (0..n).map(|_| chan(certs, role, addr)).collect()
}

fn spawn(args: &[&str], log: &Path) -> anyhow::Result<Proc> {
    let f = std::fs::File::create(log)?;
    let child = Command::new(bin_dir().join("aerodb"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::from(f.try_clone()?))
        .stderr(Stdio::from(f))
        .spawn()?;
    Ok(Proc(child))
}

/// A cluster of `n` node processes and optionally one control plane.
#[derive(Debug)]
pub struct Cluster {
    /// Certificates directory.
    pub certs: PathBuf,
    /// Node addresses.
    pub nodes: Vec<String>,
    /// The control plane's address, if started.
    pub control: Option<String>,
    /// The control plane's audit directory.
    pub audit_dir: PathBuf,
    /// Each node's configuration file and log (for restarts).
    node_files: Vec<(PathBuf, PathBuf)>,
    /// Node processes (`None` while killed), then the control plane's.
    node_procs: Vec<Option<Proc>>,
    procs: Vec<Proc>,
}

impl Cluster {
    /// Starts `n` nodes (n1 primary) and, with `control`, a control plane; waits until they
    /// answer and replicate.
    pub async fn start(root: &Path, n: usize, control: bool) -> anyhow::Result<Self> {
        Self::start_with(root, n, control, crate::kernel::lifecycle::Lifecycle::default()).await
    }

    /// As [`Cluster::start`], with the nodes' `[lifecycle]` settings.
    pub async fn start_with(
        root: &Path,
        n: usize,
        control: bool,
        lifecycle: crate::kernel::lifecycle::Lifecycle,
    ) -> anyhow::Result<Self> {
        let certs = root.join("certs");
        self::certs(&certs)?;
        let members: Vec<Member> =
            (1..=n).map(|i| Member { id: format!("n{i}"), address: format!("127.0.0.1:{}", port()) }).collect();
        let mut procs = Vec::new();
        let (mut node_procs, mut node_files) = (Vec::new(), Vec::new());
        for (i, m) in members.iter().enumerate() {
            let cfg = NodeConfig {
                cluster_id: "bench".into(),
                node_id: m.id.clone(),
                listen: m.address.clone(),
                data_dir: root.join(&m.id),
                members: members.clone(),
                tls: crate::dev::node_tls(&certs, &m.id),
                timing: Timing::default(),
                connections: Default::default(),
                metrics_address: None,
                approvals: Default::default(),
                lifecycle: lifecycle.clone(),
            };
            crate::kernel::node::init(&cfg.data_dir, "bench", &m.id, i == 0).await?;
            let path = root.join(format!("{}.toml", m.id));
            std::fs::write(&path, toml::to_string(&cfg)?)?;
            let log = root.join(format!("{}.log", m.id));
            node_procs.push(Some(spawn(&["node", "run", "--config", path.to_str().unwrap_or_default()], &log)?));
            node_files.push((path, log));
        }
        let mut control_addr = None;
        let audit_dir = root.join("control").join("audit");
        if control {
            let addr = format!("127.0.0.1:{}", port());
            let cfg = crate::control::config::ControlConfig {
                instance_id: "bench".into(),
                cluster_id: "bench".into(),
                listen: addr.clone(),
                audit_dir: audit_dir.clone(),
                nodes: members.clone(),
                tls: crate::dev::control_tls(&certs),
                flow: Default::default(),
                kernel: Default::default(),
                // Every read keeps its own record, as before per-identity aggregation, so the
                // benchmark measures the same work (all its callers share one certificate).
                audit: crate::control::config::AuditConfig {
                    records_per_identity_per_second: 1_000_000,
                    ..Default::default()
                },
                // Up to 64 simulated clients, one connection each, one certificate.
                connections: crate::tls::limits::ConnectionLimits {
                    max_connections_per_identity: 256,
                    ..Default::default()
                },
                metrics_address: None,
            };
            let path = root.join("control.toml");
            std::fs::write(&path, toml::to_string(&cfg)?)?;
            procs.push(spawn(&["control", "--config", path.to_str().unwrap_or_default()], &root.join("control.log"))?);
            control_addr = Some(addr);
        }
        let c = Self {
            certs,
            nodes: members.iter().map(|m| m.address.clone()).collect(),
            control: control_addr,
            audit_dir,
            node_files,
            node_procs,
            procs,
        };
        c.wait_ready().await?;
        Ok(c)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut ok = true;
            for addr in &self.nodes {
                let mut k = kpb::kernel_client::KernelClient::new(chan(&self.certs, Role::ControlPlane, addr)?);
                match k.observe(kpb::ObserveRequest {}).await {
                    Ok(s) => {
                        let r = s.into_inner().replication.unwrap_or_default();
                        ok &= r.last_index >= 1 && r.commit_index == r.last_index;
                    }
                    Err(_) => ok = false,
                }
            }
            if let Some(addr) = &self.control {
                let mut o = cpb::observer_client::ObserverClient::new(chan(&self.certs, Role::Observer, addr)?);
                ok &= o.get_cluster_state(cpb::GetClusterStateRequest {}).await.is_ok();
            }
            if ok {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("cluster did not become ready within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Keeps the processes alive as long as the cluster lives.
    pub fn procs(&self) -> usize {
        self.procs.len() + self.node_procs.iter().flatten().count()
    }

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: usize) {
        self.node_procs[i] = None;
    }

    /// Starts node `i` again (after [`Cluster::kill`]), appending to its log.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let (config, log) = &self.node_files[i];
        let f = std::fs::OpenOptions::new().append(true).open(log)?;
        let child = Command::new(bin_dir().join("aerodb"))
            .args(["node", "run", "--config", config.to_str().unwrap_or_default()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(f.try_clone()?))
            .stderr(Stdio::from(f))
            .spawn()?;
        self.node_procs[i] = Some(Proc(child));
        Ok(())
    }

    /// One Observe of node `i`, `None` when it does not answer.
    pub async fn observe(&self, i: usize) -> Option<kpb::NodeSnapshot> {
        let ch = chan(&self.certs, Role::ControlPlane, &self.nodes[i]).ok()?;
        let mut k = kpb::kernel_client::KernelClient::new(ch);
        k.observe(kpb::ObserveRequest {}).await.ok().map(|r| r.into_inner())
    }
}

/// An etcd cluster of `n` members with mTLS for clients (peers on plain loopback HTTP).
#[derive(Debug)]
pub struct Etcd {
    /// Client URLs' host:port.
    pub clients: Vec<String>,
    procs: Vec<Proc>,
}

impl Etcd {
    /// Whether an `etcd` binary is on PATH.
    pub fn available() -> bool {
        Command::new("etcd").arg("--version").output().is_ok_and(|o| o.status.success())
    }

    /// Starts `n` etcd members under `root`, using the benchmark's CA and server certificate.
    pub async fn start(root: &Path, certs: &Path, n: usize) -> anyhow::Result<Self> {
        let members: Vec<(String, u16, u16)> = (1..=n).map(|i| (format!("e{i}"), port(), port())).collect();
        let initial = members
            .iter()
            .map(|(name, _, peer)| format!("{name}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut procs = Vec::new();
        for (name, client, peer) in &members {
            let log = std::fs::File::create(root.join(format!("{name}.log")))?;
            let child = Command::new("etcd")
                .args(["--name", name, "--data-dir"])
                .arg(root.join(name))
                .args([
                    "--listen-client-urls",
                    &format!("https://127.0.0.1:{client}"),
                    "--advertise-client-urls",
                    &format!("https://127.0.0.1:{client}"),
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                    "--initial-cluster",
                    &initial,
                    "--initial-cluster-state",
                    "new",
                    "--client-cert-auth",
                    "--log-level",
                    "error",
                ])
                .arg("--cert-file")
                .arg(certs.join("server.pem"))
                .arg("--key-file")
                .arg(certs.join("server.key"))
                .arg("--trusted-ca-file")
                .arg(certs.join("ca.pem"))
                .env("ETCD_UNSUPPORTED_ARCH", "arm64")
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log))
                .spawn()?;
            procs.push(Proc(child));
        }
        let e = Self { clients: members.iter().map(|(_, c, _)| format!("127.0.0.1:{c}")).collect(), procs };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut kv = crate::etcd_proto::kv_client::KvClient::new(chan(certs, Role::Client, &e.clients[0])?);
            if kv
                .put(crate::etcd_proto::PutRequest {
                    key: b"ready".to_vec(),
                    value: b"1".to_vec(),
                    ..Default::default()
                })
                .await
                .is_ok()
            {
                return Ok(e);
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("etcd did not become ready within 30 s (see {}/e1.log)", root.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Number of processes.
    pub fn procs(&self) -> usize {
        self.procs.len()
    }
}
