//! Test harness: real `aerodb node` and `aerodb control` processes with real certificates and
//! data dirs on loopback. Crashes are SIGKILL. Every wait is a condition with a bounded deadline.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod ctl;
pub mod lazyfs;
pub mod proxy;
pub mod sign;

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use aerodb::control::config::{AuditConfig, ControlConfig, ControlTls, FlowConfig, KernelCalls};
use aerodb::kernel::config::{Member, NodeConfig, NodeTls, Timing};
use aerodb::pki::{self, InitOptions};
use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use aerodb::tls::client::{ChannelOptions, channel, channel_to, fixed};
use aerodb::tls::identity::Role;
use aerodb::tls::material::{TlsPaths, client_config, client_tls};
use aerodb::tls::server_identity::ExpectedServer;
use tonic::transport::Channel;

/// The aerodb binary under test.
pub const AERODB: &str = env!("CARGO_BIN_EXE_aerodb");
/// The aerodbctl binary under test.
pub const AERODBCTL: &str = env!("CARGO_BIN_EXE_aerodbctl");
/// The trust domain of test certificates.
pub const TD: &str = "aerodb.local";
/// Node certificates the test PKI issues: n1..n5 (a cluster of up to five nodes).
pub const NODE_CERTS: usize = 5;
/// Default bound of a wait.
pub const WAIT: Duration = Duration::from_secs(30);

/// Waits until `f` returns `Some`, polling every 20 ms, for at most `timeout`; panics naming
/// `what` when the deadline passes. The condition is the signal; the poll interval is not.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port on loopback that was free a moment ago, from a range the kernel does not hand out as
/// ephemeral ports (so a concurrent outgoing connection cannot take it).
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 600) as u16 * 20;
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = base + (n % 12_000);
        let port = if port >= 32_000 { 20_000 + (port % 12_000) } else { port };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Test certificates: `aerodb certs init` output plus helpers.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Self {
        let opts = InitOptions {
            trust_domain: TD.into(),
            control_endpoint: "127.0.0.1:1".into(),
            data_endpoint: "127.0.0.1:1".into(),
            extra_server_names: vec![],
            leaf_days: 30,
            nodes: (1..=NODE_CERTS).map(|i| format!("n{i}")).collect(),
        };
        pki::init(dir, &opts, time::OffsetDateTime::now_utc()).expect("certs init");
        Self::existing(dir)
    }

    /// The certificates `certs init` wrote in `dir`, their role certificates registered as intent
    /// signers (`sign::register`).
    pub fn existing(dir: &Path) -> Self {
        for role in ["actor", "observer", "auditor", "controlplane", "client"] {
            let (cert, key) = (dir.join(format!("{role}.pem")), dir.join(format!("{role}.key")));
            if cert.exists() {
                sign::register(&cert, &key);
            }
        }
        Self { dir: dir.to_path_buf() }
    }

    /// The material of `role`; for `Role::Node`, node n1's (each node has its own certificate:
    /// see [`Pki::node_paths`]).
    pub fn paths(&self, role: Role) -> TlsPaths {
        if role == Role::Node {
            return self.node_paths("n1");
        }
        TlsPaths {
            ca: self.dir.join("ca.pem"),
            crl: vec![self.dir.join("crl.pem")],
            cert: self.dir.join(format!("{role}.pem")),
            key: self.dir.join(format!("{role}.key")),
        }
    }

    /// Node `id`'s own certificate (identity `node/<id>`, serverAuth and clientAuth).
    pub fn node_paths(&self, id: &str) -> TlsPaths {
        let stem = pki::node_stem(id);
        TlsPaths {
            ca: self.dir.join("ca.pem"),
            crl: vec![self.dir.join("crl.pem")],
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        }
    }

    /// A channel presenting node `id`'s certificate.
    pub fn node_channel(&self, id: &str, addr: &str) -> Channel {
        self.channel_with(&self.node_paths(id), addr)
    }

    /// A channel as the product's clients make them: presenting `paths`, accepting only a server
    /// that presents `expected` (unrevoked under a fresh CRL).
    pub fn checked_channel(&self, paths: &TlsPaths, expected: ExpectedServer, addr: &str) -> Channel {
        let tls = client_tls(paths, TD).expect("client tls");
        channel_to(addr, fixed(tls), expected, ChannelOptions { connect_timeout: Duration::from_secs(5) })
            .expect("channel")
    }

    pub fn channel(&self, role: Role, addr: &str) -> Channel {
        self.channel_with(&self.paths(role), addr)
    }

    pub fn channel_with(&self, paths: &TlsPaths, addr: &str) -> Channel {
        let cfg = client_config(paths).expect("client tls");
        channel(addr, fixed(cfg), ChannelOptions { connect_timeout: Duration::from_secs(5) }).expect("channel")
    }

    /// Node `id`'s TLS: its own certificate serves and calls its peers.
    pub fn node_tls(&self, id: &str) -> NodeTls {
        let p = self.node_paths(id);
        NodeTls {
            trust_domain: TD.into(),
            ca: p.ca,
            crl: p.crl,
            server_cert: p.cert.clone(),
            server_key: p.key.clone(),
            node_cert: p.cert,
            node_key: p.key,
        }
    }

    pub fn control_tls(&self) -> ControlTls {
        ControlTls {
            trust_domain: TD.into(),
            ca: self.dir.join("ca.pem"),
            crl: vec![self.dir.join("crl.pem")],
            server_cert: self.dir.join("controlplane.pem"),
            server_key: self.dir.join("controlplane.key"),
            kernel_cert: self.dir.join("controlplane.pem"),
            kernel_key: self.dir.join("controlplane.key"),
        }
    }

    /// Writes a profile for `role` pointing at `endpoint`; returns its path.
    pub fn profile(&self, role: Role, endpoint: &str) -> PathBuf {
        let p = aerodb::pki::profile::Profile {
            endpoint: endpoint.into(),
            trust_domain: TD.into(),
            ca: self.dir.join("ca.pem"),
            cert: self.paths(role).cert,
            key: self.paths(role).key,
            server: None,
        };
        let path = self.dir.join(format!("{role}-{}.profile.toml", endpoint.replace([':', '.'], "_")));
        p.write(&path).expect("profile");
        path
    }
}

/// One child process with its log file.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    pub child: Option<Child>,
    pub starts: u32,
    /// Environment of every start (from `Spec::env`), before `env`.
    pub base_env: Vec<(String, String)>,
}

impl Proc {
    pub fn new(name: &str, args: Vec<String>, log: PathBuf) -> Self {
        Self { name: name.into(), args, env: Vec::new(), log, child: None, starts: 0, base_env: Vec::new() }
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log");
        let mut cmd = Command::new(AERODB);
        cmd.args(&self.args).stdout(Stdio::from(log.try_clone().expect("log"))).stderr(Stdio::from(log));
        cmd.env("RUST_LOG", std::env::var("AERODB_TEST_LOG").unwrap_or_else(|_| "info,h2=warn,tower=warn".into()));
        cmd.env_remove("AERODB_FAILPOINTS");
        for (k, v) in self.base_env.iter().chain(&self.env) {
            cmd.env(k, v);
        }
        self.starts += 1;
        self.child = Some(cmd.spawn().expect("spawn aerodb"));
    }

    /// SIGKILL: no cleanup, no flush, like a power cut for the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit (bounded).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..500 {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    /// Whether the process has exited (and its status).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten();
        if status.is_some() {
            self.child = None;
        }
        status
    }

    pub fn pause(&self) {
        if let Some(c) = &self.child {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGSTOP);
        }
    }

    pub fn resume(&self) {
        if let Some(c) = &self.child {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGCONT);
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until the process has exited; its exit status.
    pub async fn wait_exit(&mut self, what: &str) -> std::process::ExitStatus {
        wait_for(what, WAIT, || {
            let s = self.exited();
            async move { s }
        })
        .await
    }

    /// Starts the process and waits (bounded) for it to refuse to start: asserts it exits with a
    /// failure and returns its log.
    pub async fn start_expecting_refusal(&mut self) -> String {
        self.start();
        let what = format!("{} refuses to start", self.name);
        let status = self.wait_exit(&what).await;
        assert!(!status.success(), "{what}: it exited with {status}");
        self.log_text()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

/// Options of a test cluster.
#[derive(Debug, Clone)]
pub struct Spec {
    pub nodes: usize,
    pub control_planes: usize,
    pub timing: Timing,
    pub flow: FlowConfig,
    pub kernel_calls: KernelCalls,
    pub audit: AuditConfig,
    /// Route every node-to-node connection through a fault proxy in front of each node.
    pub proxied: bool,
    /// Route every control-plane-to-node connection through a fault proxy per node.
    pub control_proxied: bool,
    /// Every node's approval policy (`[approvals]`).
    pub approvals: aerodb::contract::intent::Approvals,
    /// Online snapshots and compaction of every node.
    pub lifecycle: aerodb::kernel::lifecycle::Lifecycle,
    /// Give every node and control plane its own lazy disk ([`lazyfs::LazyFs`], one FUSE mount
    /// per machine) for its data dir or audit dir, so [`Cluster::power_cut`] can drop what was
    /// not synced. Check [`lazyfs::available`] first (it says why a machine cannot).
    pub lazy_disks: bool,
    /// Environment every process starts with (e.g. the test-only `AERODB_TEST_*` size limits).
    pub env: Vec<(String, String)>,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            nodes: 3,
            control_planes: 1,
            timing: Timing {
                write_ack_timeout_ms: 5000,
                status_interval_ms: 50,
                peer_call_timeout_ms: 800,
                pull_wait_ms: 100,
                fence_wait_ms: 5000,
            },
            flow: FlowConfig::default(),
            kernel_calls: KernelCalls { read_timeout_ms: 2000, execute_timeout_ms: 15000 },
            audit: AuditConfig::default(),
            proxied: false,
            control_proxied: false,
            approvals: Default::default(),
            lifecycle: Default::default(),
            lazy_disks: false,
            env: Vec::new(),
        }
    }
}

/// A node process.
#[derive(Debug)]
pub struct NodeProc {
    pub id: String,
    pub addr: String,
    pub cfg: NodeConfig,
    pub config_path: PathBuf,
    pub proc: Proc,
}

/// A control-plane process.
#[derive(Debug)]
pub struct ControlProc {
    pub addr: String,
    pub cfg: ControlConfig,
    pub config_path: PathBuf,
    pub proc: Proc,
}

/// A cluster of real processes in a temporary directory.
pub struct Cluster {
    pub root: tempfile::TempDir,
    pub pki: Pki,
    pub nodes: Vec<NodeProc>,
    pub controls: Vec<ControlProc>,
    pub spec: Spec,
    /// With `Spec::proxied`: the proxy in front of each node (peers reach it only through it).
    pub proxies: Vec<proxy::Proxy>,
    /// With `Spec::control_proxied`: the proxy the control planes use to reach each node.
    pub control_proxies: Vec<proxy::Proxy>,
    /// With `Spec::lazy_disks`: each machine's disk by process name (`n1`, `cp1`).
    pub disks: std::collections::BTreeMap<String, lazyfs::LazyFs>,
}

impl Cluster {
    /// Creates certificates, data dirs (n1 genesis primary) and configs; starts nothing.
    pub async fn build(spec: Spec) -> Self {
        let root = tempfile::Builder::new().prefix("aerodb-test-").tempdir().expect("tempdir");
        let pki = Pki::new(&root.path().join("certs"));
        let listens: Vec<String> = (1..=spec.nodes).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let mut proxies = Vec::new();
        if spec.proxied {
            for l in &listens {
                proxies.push(proxy::Proxy::start(l.clone()).await);
            }
        }
        let members: Vec<Member> = (1..=spec.nodes)
            .map(|i| Member {
                id: format!("n{i}"),
                address: if spec.proxied { proxies[i - 1].addr.clone() } else { listens[i - 1].clone() },
            })
            .collect();
        let mut nodes = Vec::new();
        let mut disks = std::collections::BTreeMap::new();
        let mut disk_root = |name: &str| -> PathBuf {
            if !spec.lazy_disks {
                return root.path().to_path_buf();
            }
            let fs = lazyfs::LazyFs::mount(&root.path().join(format!("disk-{name}"))).expect("lazy disk");
            let path = fs.path().to_path_buf();
            disks.insert(name.to_string(), fs);
            path
        };
        for (i, m) in members.iter().enumerate() {
            let data_dir = disk_root(&m.id).join(&m.id);
            aerodb::kernel::node::init(&data_dir, "test", &m.id, i == 0).await.expect("node init");
            let cfg = NodeConfig {
                cluster_id: "test".into(),
                node_id: m.id.clone(),
                listen: listens[i].clone(),
                data_dir: data_dir.clone(),
                members: members.clone(),
                tls: pki.node_tls(&m.id),
                timing: spec.timing.clone(),
                connections: Default::default(),
                metrics_address: Some(format!("127.0.0.1:{}", free_port())),
                approvals: spec.approvals,
                lifecycle: spec.lifecycle.clone(),
            };
            let config_path = root.path().join(format!("{}.toml", m.id));
            std::fs::write(&config_path, toml::to_string(&cfg).expect("toml")).expect("write config");
            let mut proc = Proc::new(
                &m.id,
                vec!["node".into(), "run".into(), "--config".into(), config_path.display().to_string()],
                root.path().join(format!("{}.log", m.id)),
            );
            proc.base_env = spec.env.clone();
            nodes.push(NodeProc { id: m.id.clone(), addr: listens[i].clone(), cfg, config_path, proc });
        }
        let mut control_proxies = Vec::new();
        let mut control_members = members.clone();
        if spec.control_proxied {
            for (i, l) in listens.iter().enumerate() {
                let p = proxy::Proxy::start(l.clone()).await;
                control_members[i].address = p.addr.clone();
                control_proxies.push(p);
            }
        }
        let mut controls = Vec::new();
        for c in 1..=spec.control_planes {
            let addr = format!("127.0.0.1:{}", free_port());
            let cfg = ControlConfig {
                instance_id: format!("cp{c}"),
                cluster_id: "test".into(),
                listen: addr.clone(),
                audit_dir: disk_root(&format!("cp{c}")).join(format!("cp{c}")).join("audit"),
                nodes: control_members.clone(),
                tls: pki.control_tls(),
                flow: spec.flow.clone(),
                kernel: spec.kernel_calls.clone(),
                audit: spec.audit.clone(),
                connections: Default::default(),
                metrics_address: Some(format!("127.0.0.1:{}", free_port())),
            };
            let config_path = root.path().join(format!("cp{c}.toml"));
            std::fs::write(&config_path, toml::to_string(&cfg).expect("toml")).expect("write config");
            let mut proc = Proc::new(
                &format!("cp{c}"),
                vec!["control".into(), "--config".into(), config_path.display().to_string()],
                root.path().join(format!("cp{c}.log")),
            );
            proc.base_env = spec.env.clone();
            controls.push(ControlProc { addr, cfg, config_path, proc });
        }
        Self { root, pki, nodes, controls, spec, proxies, control_proxies, disks }
    }

    /// Builds and starts everything, waiting until every process answers.
    pub async fn start(spec: Spec) -> Self {
        let mut c = Self::build(spec).await;
        c.start_all().await;
        c
    }

    /// Starts every process of a built cluster, waiting until each answers and the nodes have
    /// replicated.
    pub async fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.nodes[i].proc.start();
        }
        for i in 0..self.controls.len() {
            self.controls[i].proc.start();
        }
        for i in 0..self.nodes.len() {
            self.wait_node_ready(i).await;
        }
        for i in 0..self.controls.len() {
            self.wait_control_ready(i).await;
        }
        self.wait_replicated(WAIT).await;
    }

    /// A default cluster whose control plane keeps its audit log on a tmpfs of `size` that the
    /// test can fill; `None` (with the reason printed) where the machine cannot mount one.
    pub async fn start_with_audit_on_tmpfs(size: &str) -> Option<(Self, Tmpfs)> {
        let mut c = Self::build(Spec::default()).await;
        let mount = c.root.path().join("auditfs");
        let fs = Tmpfs::mount(&mount, size)?;
        c.controls[0].cfg.audit_dir = mount.join("audit");
        std::fs::write(&c.controls[0].config_path, toml::to_string(&c.controls[0].cfg).expect("toml")).expect("config");
        for i in 0..c.nodes.len() {
            c.nodes[i].proc.start();
        }
        c.controls[0].proc.start();
        for i in 0..c.nodes.len() {
            c.wait_node_ready(i).await;
        }
        c.wait_control_ready(0).await;
        Some((c, fs))
    }

    pub fn kernel(&self, i: usize) -> kpb::kernel_client::KernelClient<Channel> {
        kpb::kernel_client::KernelClient::new(self.pki.channel(Role::ControlPlane, &self.nodes[i].addr))
    }

    pub fn data(&self, i: usize) -> kpb::data_client::DataClient<Channel> {
        kpb::data_client::DataClient::new(self.pki.channel(Role::Client, &self.nodes[i].addr))
    }

    pub fn observer(&self, c: usize) -> cpb::observer_client::ObserverClient<Channel> {
        cpb::observer_client::ObserverClient::new(self.pki.channel(Role::Observer, &self.controls[c].addr))
    }

    pub fn actor(&self, c: usize) -> cpb::actor_client::ActorClient<Channel> {
        cpb::actor_client::ActorClient::new(self.pki.channel(Role::Actor, &self.controls[c].addr))
    }

    pub fn auditor(&self, c: usize) -> cpb::auditor_client::AuditorClient<Channel> {
        cpb::auditor_client::AuditorClient::new(self.pki.channel(Role::Auditor, &self.controls[c].addr))
    }

    /// One Observe of node `i` (None when it does not answer).
    pub async fn observe(&self, i: usize) -> Option<kpb::NodeSnapshot> {
        let mut k = self.kernel(i);
        match tokio::time::timeout(Duration::from_secs(2), k.observe(kpb::ObserveRequest {})).await {
            Ok(Ok(r)) => Some(r.into_inner()),
            _ => None,
        }
    }

    pub async fn wait_node_ready(&mut self, i: usize) {
        let name = self.nodes[i].id.clone();
        let what = format!("node {name} answers Observe");
        let this = &*self;
        let ok = tokio::time::timeout(WAIT, async {
            loop {
                if this.observe(i).await.is_some() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if ok.is_err() {
            panic!("timed out waiting for {what}; log:\n{}", self.nodes[i].proc.log_text());
        }
    }

    pub async fn wait_control_ready(&mut self, c: usize) {
        let this = &*self;
        let ok = tokio::time::timeout(WAIT, async {
            loop {
                let mut o = this.observer(c);
                if let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_secs(2), o.get_cluster_state(cpb::GetClusterStateRequest {}))
                        .await
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if ok.is_err() {
            panic!("timed out waiting for control plane {c}; log:\n{}", self.controls[c].proc.log_text());
        }
    }

    /// Waits until every running node reports the same last index and commit index.
    pub async fn wait_replicated(&self, timeout: Duration) {
        wait_for("every node holds and has committed the same log", timeout, || async {
            let mut lasts = Vec::new();
            for i in 0..self.nodes.len() {
                if self.nodes[i].proc.child.is_none() {
                    continue;
                }
                let s = self.observe(i).await?;
                let r = s.replication?;
                lasts.push((r.last_index, r.commit_index, r.applied_index));
            }
            let first = *lasts.first()?;
            (lasts.iter().all(|l| *l == first && l.0 == l.1 && l.1 == l.2)).then_some(())
        })
        .await
    }

    /// The role of node `i` as it reports it.
    pub async fn role(&self, i: usize) -> Option<kpb::Role> {
        let s = self.observe(i).await?;
        kpb::Role::try_from(s.authority?.role).ok()
    }

    pub async fn wait_role(&self, i: usize, role: kpb::Role) -> kpb::NodeSnapshot {
        wait_for(&format!("{} becomes {role:?}", self.nodes[i].id), WAIT, || async {
            let s = self.observe(i).await?;
            (s.authority.as_ref()?.role == role as i32).then_some(s)
        })
        .await
    }

    /// Restarts node `i` (after a kill) with optional extra environment, waiting until ready.
    pub async fn restart_node(&mut self, i: usize, env: &[(&str, &str)]) {
        self.nodes[i].proc.kill();
        self.nodes[i].proc.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.nodes[i].proc.start();
        self.wait_node_ready(i).await;
    }

    pub async fn restart_control(&mut self, c: usize, env: &[(&str, &str)]) {
        self.controls[c].proc.kill();
        self.controls[c].proc.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.controls[c].proc.start();
        self.wait_control_ready(c).await;
    }

    /// A power cut of the machines named (nodes and control planes by index; needs
    /// `Spec::lazy_disks`): every one of their processes is SIGKILLed first (all of them before
    /// any disk changes, as one power supply), then each disk loses what was not durable, the last
    /// unsynced append torn as `tear` says for that machine. Restart them with `restart_node` /
    /// `restart_control`.
    pub fn power_cut(
        &mut self,
        nodes: &[usize],
        controls: &[usize],
        mut tear: impl FnMut(&str) -> lazyfs::Tear,
    ) -> Vec<(String, lazyfs::CutReport)> {
        for &i in nodes {
            self.nodes[i].proc.resume();
            self.nodes[i].proc.kill();
        }
        for &c in controls {
            self.controls[c].proc.resume();
            self.controls[c].proc.kill();
        }
        let names: Vec<String> = nodes
            .iter()
            .map(|&i| self.nodes[i].id.clone())
            .chain(controls.iter().map(|&c| self.controls[c].proc.name.clone()))
            .collect();
        names
            .into_iter()
            .map(|name| {
                let t = tear(&name);
                let disk = self.disks.get_mut(&name).expect("power_cut needs Spec::lazy_disks");
                let report = disk.power_cut(t);
                (name, report)
            })
            .collect()
    }

    /// Every log, for failure reports.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!("===== {} =====\n{}\n", n.id, n.proc.log_text()));
        }
        for c in &self.controls {
            out.push_str(&format!("===== {} =====\n{}\n", c.proc.name, c.proc.log_text()));
        }
        out
    }

    /// Reads the kernel ledger of node `i` from disk (any process state).
    pub fn ledger(&self, i: usize) -> Vec<aerodb::kernel::records::Record> {
        aerodb::kernel::ledger::Ledger::read_all(&self.nodes[i].cfg.data_dir.join("control.log"))
            .expect("ledger readable")
    }

    /// Every audit record of control plane `c`, parsed, from disk.
    pub fn audit_records(&self, c: usize) -> Vec<aerodb::audit::record::Body> {
        let mut out = Vec::new();
        aerodb::audit::verify::read_from(&self.controls[c].cfg.audit_dir, 1, |s| {
            out.push(s.body().expect("audit body parses"));
            true
        })
        .expect("audit readable");
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.disks.is_empty() {
            // Processes first, so nothing holds a file on a disk that is being unmounted.
            for n in &mut self.nodes {
                n.proc.resume();
                n.proc.kill();
            }
            for c in &mut self.controls {
                c.proc.resume();
                c.proc.kill();
            }
        }
        if std::thread::panicking() {
            let keep = std::env::var("AERODB_KEEP_TEST_DIRS").is_ok();
            eprintln!("---- test failed; process logs follow (dir {}) ----", self.root.path().display());
            eprintln!("{}", self.logs());
            if keep {
                let _ = std::mem::replace(&mut self.root, tempfile::tempdir().expect("tempdir")).keep();
            }
        }
        self.disks.clear();
    }
}

/// A fresh idempotency key.
pub fn key(prefix: &str) -> String {
    format!("{prefix}-{}", &aerodb::control::flow::random_id()[..12])
}

/// RequestAction then ConfirmAction with the right typed target (and a complete enhanced
/// confirmation for a forced promotion). Returns the confirm answer.
pub async fn request_and_confirm(
    actor: &mut cpb::actor_client::ActorClient<Channel>,
    command: cpb::Command,
    target: &str,
    key: &str,
) -> Result<cpb::ConfirmActionResponse, tonic::Status> {
    let pending = request(actor, command, target, key).await?;
    confirm_pending(actor, &pending).await
}

/// RequestAction expecting a pending action.
pub async fn request(
    actor: &mut cpb::actor_client::ActorClient<Channel>,
    command: cpb::Command,
    target: &str,
    key: &str,
) -> Result<cpb::PendingAction, tonic::Status> {
    let r = actor
        .request_action(cpb::RequestActionRequest {
            command: command as i32,
            target_node: target.into(),
            idempotency_key: key.into(),
        })
        .await?
        .into_inner();
    match r.response {
        Some(cpb::request_action_response::Response::Pending(p)) => Ok(p),
        other => panic!("expected a pending action, got {other:?}"),
    }
}

/// ConfirmAction with exactly what the requirements ask.
pub async fn confirm_pending(
    actor: &mut cpb::actor_client::ActorClient<Channel>,
    p: &cpb::PendingAction,
) -> Result<cpb::ConfirmActionResponse, tonic::Status> {
    actor.confirm_action(sign::confirm_request(p, vec![sign::requester_signature(p)])).await.map(|r| r.into_inner())
}

/// The wire error of a status (panics if it has none).
pub fn wire(s: &tonic::Status) -> aerodb::wire::WireError {
    aerodb::wire::WireError::from_status(s).unwrap_or_else(|| panic!("status without ErrorInfo: {s:?}"))
}

/// Executed, decided records of a ledger.
pub fn decided(records: &[aerodb::kernel::records::Record]) -> Vec<aerodb::kernel::records::Decided> {
    records
        .iter()
        .filter_map(|r| match &r.body {
            aerodb::kernel::records::Body::Decided(d) => Some((**d).clone()),
            _ => None,
        })
        .collect()
}

/// Shared PKI for tests that only need certificates.
pub fn shared_dir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().expect("tempdir"))
}

/// A Python interpreter with the client requirements installed: `$AERODB_PYTHON`, or a venv at
/// `target/python-venv` created on first use (serialised by a file lock). `.ci/run` creates it
/// ahead of time; the first run elsewhere installs the pinned requirements from PyPI.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("AERODB_PYTHON") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target").join("python-venv");
    let py = venv.join("bin").join("python");
    std::fs::create_dir_all(root.join("target")).expect("target dir");
    let lock = std::fs::File::create(root.join("target").join("python-venv.lock")).expect("lock file");
    lock.lock().expect("lock");
    let ready = venv.join(".ready");
    if !ready.exists() {
        let ok =
            Command::new("python3").args(["-m", "venv", venv.to_str().unwrap()]).status().expect("python3 -m venv");
        assert!(ok.success(), "python3 -m venv failed");
        let ok = Command::new(&py)
            .args(["-m", "pip", "install", "-q", "-r"])
            .arg(root.join("clients/python/requirements.txt"))
            .status()
            .expect("pip install");
        assert!(ok.success(), "pip install -r clients/python/requirements.txt failed");
        std::fs::write(&ready, b"").expect("ready marker");
    }
    py
}

/// A Kernel.Execute request with a correct digest for `action` asked by actor `who`.
pub fn exec_req(
    key: &str,
    kind: aerodb::kernel::records::ActionKind,
    target: &str,
    force: bool,
    expected: u64,
    who: &str,
) -> kpb::ExecuteRequest {
    use aerodb::kernel::records::{Action, Requester};
    let action = Action { kind, target_node: target.into(), force };
    let requester = Requester { role: "actor".into(), name: who.into(), cert_sha256: "ab".into() };
    let digest = aerodb::kernel::digest::request_digest(&action, &requester);
    kpb::ExecuteRequest {
        idempotency_key: key.into(),
        request_digest: digest.to_vec(),
        expected_control_seq: expected,
        action: Some(action.to_proto()),
        requester: Some(requester.to_proto()),
        confirmation: Some(if force {
            kpb::Confirmation {
                kind: kpb::ConfirmationKind::Enhanced as i32,
                acknowledged_invariants: vec!["P6-A1".into(), "P6-A1a".into()],
                accept_responsibility: true,
            }
        } else {
            kpb::Confirmation { kind: kpb::ConfirmationKind::Standard as i32, ..Default::default() }
        }),
        // Promotions and demotions need the epoch their plan names, and every request its
        // signed intent: see `with_plan_epoch` (and `sign::sign_exec`).
        plan_epoch: 0,
        intent: vec![],
        signatures: vec![],
        confirmed_audit_leaf: vec![],
    }
}

/// The ledger sequence node `i` reports.
pub async fn control_seq(c: &Cluster, i: usize) -> u64 {
    c.observe(i).await.and_then(|s| s.observation).map(|o| o.control_seq).expect("observable")
}

/// A small deterministic generator for seeded randomized tests (the seed is printed).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// From `AERODB_SEED` if set, else from the OS; prints the seed so a failure can be rerun.
    pub fn from_env(test: &str) -> Self {
        let seed = std::env::var("AERODB_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).expect("OS entropy");
            u64::from_le_bytes(b)
        });
        eprintln!("{test}: seed {seed} (rerun with AERODB_SEED={seed})");
        Self(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Every key-value pair node `i` serves (it must be the primary), by paging through Scan.
pub async fn scan_all(c: &Cluster, i: usize) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let mut data = c.data(i);
    let mut out = std::collections::BTreeMap::new();
    let mut start = Vec::new();
    loop {
        let r = data
            .scan(kpb::ScanRequest { start_key: start.clone(), end_key: vec![], limit: 1000 })
            .await
            .expect("scan")
            .into_inner();
        for kv in &r.entries {
            out.insert(kv.key.clone(), kv.value.clone());
        }
        match (r.more, r.entries.last()) {
            (true, Some(last)) => {
                start = last.key.clone();
                start.push(0);
            }
            _ => return out,
        }
    }
}

/// The checker run over every replication scenario: for each epoch at most one node ever acted
/// as primary (by the ledgers' promotions and the EpochStart entries of the WALs and of the
/// snapshots' manifests), and the logs agree on who started each epoch.
pub fn check_single_writer_per_epoch(c: &Cluster) {
    use aerodb::kernel::records::{ActionResult, Body, Decision};
    let mut leaders: std::collections::BTreeMap<u64, std::collections::BTreeSet<String>> = Default::default();
    for (i, n) in c.nodes.iter().enumerate() {
        for r in c.ledger(i) {
            match &r.body {
                Body::Genesis { primary: true, .. } => {
                    leaders.entry(1).or_default().insert(n.id.clone());
                }
                Body::Decided(d) => {
                    if let Decision::Executed { result: ActionResult::Promotion { epoch, .. } } = &d.decision {
                        leaders.entry(*epoch).or_default().insert(n.id.clone());
                    }
                }
                _ => {}
            }
        }
        for e in aerodb::kernel::wal::read_dir(&n.cfg.data_dir.join("wal")).expect("wal readable") {
            if e.kind == aerodb::kernel::entry::Kind::EpochStart {
                leaders.entry(e.epoch).or_default().insert(String::from_utf8_lossy(&e.payload).into_owned());
            }
        }
        // EpochStarts compacted out of the WAL live on in the snapshots' manifests.
        for d in aerodb::kernel::snapshot::list(&n.cfg.data_dir.join("snapshots")) {
            if let Ok(m) = aerodb::kernel::snapshot::read_manifest(&d) {
                for mark in m.epoch_starts {
                    leaders.entry(mark.epoch).or_default().insert(mark.primary);
                }
            }
        }
    }
    for (epoch, nodes) in &leaders {
        assert!(nodes.len() <= 1, "epoch {epoch} had more than one primary: {nodes:?}");
    }
}

/// Writers that put unique keys to whatever node `target` names, recording acknowledgements.
pub struct Load {
    pub acked: Arc<std::sync::Mutex<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>>,
    pub target: Arc<std::sync::Mutex<usize>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `writers` concurrent writers against node `target` (changeable), bounded to `max_each`.
    pub fn start(c: &Cluster, target: usize, writers: usize, max_each: u32) -> Self {
        let acked: Arc<std::sync::Mutex<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>> = Default::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let target = Arc::new(std::sync::Mutex::new(target));
        let clients: Vec<_> = (0..c.nodes.len()).map(|i| c.data(i)).collect();
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (acked, stop, target, clients) = (acked.clone(), stop.clone(), target.clone(), clients.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) && i < max_each {
                    let t = *target.lock().unwrap();
                    let mut d = clients[t].clone();
                    let key = format!("load-w{w}-{i:06}").into_bytes();
                    let value = format!("{w}.{i}").into_bytes();
                    let r = tokio::time::timeout(
                        Duration::from_secs(8),
                        d.put(kpb::PutRequest { key: key.clone(), value: value.clone() }),
                    )
                    .await;
                    if let Ok(Ok(_)) = r {
                        acked.lock().unwrap().insert(key, value);
                    } else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    i += 1;
                }
            }));
        }
        Self { acked, target, stop, tasks }
    }

    pub fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    pub async fn wait_acks(&self, n: usize) {
        let acked = self.acked.clone();
        wait_for(&format!("{n} acknowledged writes"), WAIT, || {
            let have = acked.lock().unwrap().len();
            async move { (have >= n).then_some(()) }
        })
        .await
    }

    pub async fn stop(self) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        self.acked.lock().unwrap().clone()
    }
}

/// Asserts every acknowledged write is served by node `i` (the current primary).
pub async fn assert_all_present(
    c: &Cluster,
    i: usize,
    acked: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    what: &str,
) {
    let present = scan_all(c, i).await;
    let missing: Vec<String> = acked
        .iter()
        .filter(|(k, v)| present.get(*k) != Some(*v))
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: {} acknowledged writes missing on {}, e.g. {missing:?}",
        missing.len(),
        c.nodes[i].id
    );
}

/// Executes an action directly on a kernel (no control plane): the current sequence, a fresh
/// key, a standard (or, with force, enhanced) confirmation.
pub async fn kernel_execute(
    c: &Cluster,
    i: usize,
    kind: aerodb::kernel::records::ActionKind,
    force: bool,
) -> kpb::ExecuteResponse {
    let seq = control_seq(c, i).await;
    let req = with_plan_epoch(c, exec_req(&key("k"), kind, &c.nodes[i].id, force, seq, "op")).await;
    let mut k = c.kernel(i);
    tokio::time::timeout(Duration::from_secs(30), k.execute(req))
        .await
        .expect("answer in time")
        .expect("execute")
        .into_inner()
}

/// The executed flag and the rejection code of an Execute answer.
pub fn verdict(r: &kpb::ExecuteResponse) -> Result<(), String> {
    if let Some(u) = &r.unrecorded_rejection {
        return Err(u.code.clone());
    }
    let rec = r.record.as_ref().expect("record");
    if rec.decision == kpb::Decision::Executed as i32 {
        Ok(())
    } else {
        Err(rec.rejection.clone().unwrap_or_default().code)
    }
}

/// Of `candidates`, the node whose log is most up to date (last epoch, then last index), once
/// their logs can no longer grow: what an operator reads off the facts before forcing a
/// promotion. A node appends only what it pulls from the node it follows
/// (`ReplicationView.following`); a candidate's log is final when it follows nobody, or follows
/// a node that is not a primary (a demoted or halted node appends nothing) and holds all of that
/// node's log. The signal is that state, not time.
pub async fn most_up_to_date(c: &Cluster, candidates: &[usize]) -> usize {
    wait_for("every candidate's log is final (it follows no node that can still grow)", WAIT, || async {
        for &i in candidates {
            let r = c.observe(i).await?.replication?;
            if r.following.is_empty() {
                continue;
            }
            let source = c.nodes.iter().position(|n| n.id == r.following)?;
            let s = c.observe(source).await?;
            let final_source = s.authority?.role != kpb::Role::Primary as i32;
            let sr = s.replication?;
            if !final_source || (sr.last_epoch, sr.last_index) != (r.last_epoch, r.last_index) {
                return None;
            }
        }
        Some(())
    })
    .await;
    let mut best = candidates[0];
    let mut best_pos = (0, 0);
    for &i in candidates {
        let r = c.observe(i).await.and_then(|s| s.replication).expect("observable");
        if (r.last_epoch, r.last_index) > best_pos {
            best_pos = (r.last_epoch, r.last_index);
            best = i;
        }
    }
    best
}

/// A tmpfs mounted by the test (root only); unmounted on drop. `None` (with the reason printed)
/// where the machine cannot mount.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    pub fn mount(path: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(path).ok()?;
        let out =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(path).output();
        match out {
            Ok(o) if o.status.success() => Some(Self { path: path.to_path_buf() }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs here ({}); run as root (CI does)",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount ({e}); run as root (CI does)");
                None
            }
        }
    }

    pub fn remount(&self, mode: &str) {
        let ok =
            Command::new("mount").args(["-o", &format!("remount,{mode}")]).arg(&self.path).status().expect("mount");
        assert!(ok.success(), "remount {mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A channel for an extra actor identity issued by the test CA.
pub fn extra_identity(c: &Cluster, role: Role, name: &str, addr: &str) -> Channel {
    aerodb::pki::issue(&c.pki.dir, TD, role, name, None, &[], 30, time::OffsetDateTime::now_utc()).expect("issue");
    sign::register(&c.pki.dir.join(format!("{name}.pem")), &c.pki.dir.join(format!("{name}.key")));
    let paths = TlsPaths {
        ca: c.pki.dir.join("ca.pem"),
        crl: vec![],
        cert: c.pki.dir.join(format!("{name}.pem")),
        key: c.pki.dir.join(format!("{name}.key")),
    };
    c.pki.channel_with(&paths, addr)
}

/// Execute calls each node has received (the count at the kernel boundary).
pub async fn execute_calls(c: &Cluster) -> Vec<u64> {
    let mut v = Vec::new();
    for i in 0..c.nodes.len() {
        v.push(c.observe(i).await.map(|s| s.execute_calls_received).unwrap_or(u64::MAX));
    }
    v
}

/// Fills a filesystem to the last byte with one file; returns its path (remove it to free).
pub fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut small = vec![0u8; 512];
    while !small.is_empty() {
        if f.write_all(&small).is_err() {
            small.truncate(small.len() / 2);
        }
    }
    let _ = f.sync_all();
    path
}

/// The epoch a plan for `req` names, read off the cluster as the control plane's explanation
/// reads it: a promotion creates one above the highest epoch any reachable node knows, a demotion
/// ends the epoch its target led (a request that names one keeps it). Then signs it as its
/// requester would (`sign::sign_exec`): the last step before sending, since any later change
/// breaks the signature.
pub async fn with_plan_epoch(c: &Cluster, mut req: kpb::ExecuteRequest) -> kpb::ExecuteRequest {
    if req.plan_epoch != 0 {
        return sign::sign_exec(c, req);
    }
    let action = req.action.clone().unwrap_or_default();
    let mut snaps = Vec::new();
    for i in 0..c.nodes.len() {
        snaps.push((c.nodes[i].id.clone(), c.observe(i).await));
    }
    req.plan_epoch = match kpb::ActionKind::try_from(action.kind) {
        Ok(kpb::ActionKind::Promote) => aerodb::control::explain::promotion_epoch(&snaps),
        Ok(kpb::ActionKind::Demote) => snaps
            .iter()
            .find(|(id, _)| *id == action.target_node)
            .and_then(|(_, s)| s.as_ref()?.authority.as_ref().map(|a| a.led_epoch))
            .unwrap_or(0),
        _ => 0,
    };
    sign::sign_exec(c, req)
}

/// A channel to `addr` over the rustls client configuration `cfg`, checking no server identity:
/// for tests of what a server accepts from a hand-made client.
pub fn raw_channel(cfg: rustls::ClientConfig, addr: &str) -> Channel {
    channel(addr, fixed(cfg), Default::default()).expect("channel")
}

/// One `grpc.health.v1` Check over `ch`, answered within 10 s or reported as DEADLINE_EXCEEDED.
pub async fn health_check(ch: Channel) -> Result<(), tonic::Status> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let mut h = HealthClient::new(ch);
    tokio::time::timeout(Duration::from_secs(10), h.check(HealthCheckRequest { service: String::new() }))
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer within 10 s"))?
        .map(|_| ())
}
