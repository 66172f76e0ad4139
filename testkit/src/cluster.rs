//! A cluster of real processes: nodes and control planes with their certificates, data dirs and
//! configs in one temporary directory, optionally behind fault proxies or on lazy disks; clients
//! of every service, waits on their state, restarts and power cuts.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use aerodb::control::config::{AuditConfig, ControlConfig, FlowConfig, KernelCalls};
use aerodb::kernel::config::{Member, NodeConfig, Timing};
use aerodb::proto::control as cpb;
use aerodb::proto::kernel as kpb;
use aerodb::tls::identity::Role;
use tonic::transport::Channel;

use crate::pki::Pki;
use crate::process::Proc;
use crate::tmpfs::Tmpfs;
use crate::wait::{WAIT, wait_for};
use crate::{lazyfs, proxy};

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

/// Options of a test cluster.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Node processes (n1..nN; n1 is the genesis primary).
    pub nodes: usize,
    /// Control-plane processes (cp1..cpN), each configured with every node.
    pub control_planes: usize,
    /// Every node's replication and promotion timing (short, for tests).
    pub timing: Timing,
    /// Every control plane's flow limits (pending actions, confirmation window).
    pub flow: FlowConfig,
    /// Every control plane's kernel call deadlines.
    pub kernel_calls: KernelCalls,
    /// Every control plane's audit log settings.
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
    /// The node's id (`n1`, ...).
    pub id: String,
    /// Where it listens; tests connect here (with `Spec::proxied` its peers use the proxy).
    pub addr: String,
    /// Its configuration, as written to `config_path` (rewrite the file after changing it).
    pub cfg: NodeConfig,
    /// Its configuration file.
    pub config_path: PathBuf,
    /// The process (started or not).
    pub proc: Proc,
}

/// A control-plane process.
#[derive(Debug)]
pub struct ControlProc {
    /// Where it listens for clients.
    pub addr: String,
    /// Its configuration, as written to `config_path` (rewrite the file after changing it).
    pub cfg: ControlConfig,
    /// Its configuration file.
    pub config_path: PathBuf,
    /// The process (started or not).
    pub proc: Proc,
}

/// A cluster of real processes in a temporary directory.
pub struct Cluster {
    /// The directory holding certificates, data dirs, configs and logs (removed on drop).
    pub root: tempfile::TempDir,
    /// The cluster's certificates.
    pub pki: Pki,
    /// The nodes, by index (node `i` is `n{i+1}`).
    pub nodes: Vec<NodeProc>,
    /// The control planes, by index (`c` is `cp{c+1}`).
    pub controls: Vec<ControlProc>,
    /// What it was built from.
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

    /// A Kernel client of node `i`, as the control plane (role `controlplane`).
    pub fn kernel(&self, i: usize) -> kpb::kernel_client::KernelClient<Channel> {
        kpb::kernel_client::KernelClient::new(self.pki.channel(Role::ControlPlane, &self.nodes[i].addr))
    }

    /// A Data client of node `i` (role `client`).
    pub fn data(&self, i: usize) -> kpb::data_client::DataClient<Channel> {
        kpb::data_client::DataClient::new(self.pki.channel(Role::Client, &self.nodes[i].addr))
    }

    /// An Observer client of control plane `c` (role `observer`).
    pub fn observer(&self, c: usize) -> cpb::observer_client::ObserverClient<Channel> {
        cpb::observer_client::ObserverClient::new(self.pki.channel(Role::Observer, &self.controls[c].addr))
    }

    /// An Actor client of control plane `c` (role `actor`).
    pub fn actor(&self, c: usize) -> cpb::actor_client::ActorClient<Channel> {
        cpb::actor_client::ActorClient::new(self.pki.channel(Role::Actor, &self.controls[c].addr))
    }

    /// An Auditor client of control plane `c` (role `auditor`).
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

    /// Waits (bounded) until node `i` answers Observe; panics with its log otherwise.
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

    /// Waits (bounded) until control plane `c` answers GetClusterState; panics with its log otherwise.
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
            self.is_replicated().await.then_some(())
        })
        .await
    }

    /// Whether every running node reports the same last, commit and applied index, each equal
    /// (one poll; [`Cluster::wait_replicated`] waits on it).
    pub async fn is_replicated(&self) -> bool {
        let mut lasts = Vec::new();
        for i in 0..self.nodes.len() {
            if self.nodes[i].proc.child.is_none() {
                continue;
            }
            let Some(r) = self.observe(i).await.and_then(|s| s.replication) else {
                return false;
            };
            lasts.push((r.last_index, r.commit_index, r.applied_index));
        }
        let Some(first) = lasts.first().copied() else {
            return false;
        };
        lasts.iter().all(|l| *l == first && l.0 == l.1 && l.1 == l.2)
    }

    /// The role of node `i` as it reports it.
    pub async fn role(&self, i: usize) -> Option<kpb::Role> {
        let s = self.observe(i).await?;
        kpb::Role::try_from(s.authority?.role).ok()
    }

    /// Waits (bounded) until node `i` reports `role`; its snapshot then.
    pub async fn wait_role(&self, i: usize, role: kpb::Role) -> kpb::NodeSnapshot {
        wait_for(&format!("{} becomes {role:?}", self.nodes[i].id), WAIT, || async {
            let s = self.observe(i).await?;
            (s.authority.as_ref()?.role == role as i32).then_some(s)
        })
        .await
    }

    /// Waits until node `i` reports that it follows (pulls from) the node named `primary`.
    pub async fn wait_following(&self, i: usize, primary: &str) {
        wait_for(&format!("{} follows {primary}", self.nodes[i].id), WAIT, || async {
            let s = self.observe(i).await?;
            (s.replication?.following == primary).then_some(())
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

    /// Restarts control plane `c` (after a kill) with optional extra environment, waiting until ready.
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
