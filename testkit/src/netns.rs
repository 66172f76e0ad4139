//! Partitions at the network layer (issue 16): every node runs in its own network namespace,
//! joined by a veth pair to a bridge in the root namespace, where the test and the control plane
//! run. Addresses are `10.<77+k>.<pid % 250>.<node>/24` (the bridge is `.254`): they exist only
//! inside the namespaces and the bridge a test creates, and [`Net`] removes them on drop, also
//! when the test fails.
//!
//! Faults, all at the network layer:
//! - a whole link down (`ip link set down` on the node's veth: nothing in or out);
//! - one direction dropped: a blackhole route in one namespace, so what it sends to a peer is
//!   dropped while what the peer sends still arrives (TCP then fails both ways, as it does on a
//!   real asymmetric partition: the answers are lost);
//! - a slow link: `tc netem delay` where the kernel has netem, otherwise a `tc tbf` rate limit
//!   whose queue delays every packet (this kernel kind ships without `sch_netem`).
//!

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use aerodb::kernel::config::Member;
use aerodb::pki::{self, InitOptions};

use crate::cluster::{Cluster, Spec};
use crate::pki::{NODE_CERTS, Pki, TD};
use crate::wait::WAIT;

/// The port every node listens on inside its namespace.
pub const NODE_PORT: u16 = 7400;

/// Runs `ip` with `args`; the error names the command and what it printed.
fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The namespaces, veth pairs and bridge of one test; removed on drop.
#[derive(Debug)]
pub struct Net {
    tag: String,
    subnet: String,
    bridge: String,
    namespaces: Vec<String>,
    nodes: usize,
}

impl Net {
    /// Creates `nodes` namespaces on a fresh bridge; `None` (the reason printed) where network
    /// namespaces cannot be made (not root, no `ip`, no veth or bridge support).
    pub fn create(nodes: usize) -> Option<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let k = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{:x}{k}", pid % 0xfff);
        let mut net = Net {
            subnet: format!("10.{}.{}", 77 + k % 20, pid % 250),
            bridge: format!("abr{tag}"),
            tag,
            namespaces: Vec::new(),
            nodes,
        };
        match net.setup() {
            Ok(()) => Some(net),
            Err(e) => {
                eprintln!("SKIPPED: network namespaces are unavailable here: {e}");
                None
            }
        }
    }

    fn setup(&mut self) -> Result<(), String> {
        ip(&["link", "add", &self.bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}.254/24", self.subnet), "dev", &self.bridge])?;
        ip(&["link", "set", &self.bridge, "up"])?;
        for i in 0..self.nodes {
            let ns = format!("aero-{}-n{}", self.tag, i + 1);
            ip(&["netns", "add", &ns])?;
            self.namespaces.push(ns.clone());
            let (host, peer) = (self.host_veth(i), self.ns_veth(i));
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer])?;
            ip(&["link", "set", &peer, "netns", &ns])?;
            ip(&["link", "set", &host, "master", &self.bridge, "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", self.addr(i)), "dev", &peer])?;
            ip(&["-n", &ns, "link", "set", &peer, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Node `i`'s address (0-based).
    pub fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }

    /// Node `i`'s namespace.
    pub fn ns(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    fn host_veth(&self, i: usize) -> String {
        format!("va{}{}", self.tag, i + 1)
    }

    fn ns_veth(&self, i: usize) -> String {
        format!("vb{}{}", self.tag, i + 1)
    }

    /// Node `i`'s link up or down (down: nothing reaches it and nothing leaves it).
    pub fn set_link(&self, i: usize, up: bool) {
        ip(&["link", "set", &self.host_veth(i), if up { "up" } else { "down" }]).unwrap();
    }

    /// Drops (or, with `dropped == false`, delivers again) every packet node `from` sends to
    /// node `to`; the other direction is untouched.
    pub fn set_direction(&self, from: usize, to: usize, dropped: bool) {
        let dst = format!("{}/32", self.addr(to));
        let verb = if dropped { "add" } else { "del" };
        ip(&["-n", self.ns(from), "route", verb, "blackhole", &dst]).unwrap();
    }

    /// Cuts node `i` off from every other node in both directions, keeping its link to the root
    /// namespace (so the test and the control plane still observe it).
    pub fn isolate_from_peers(&self, i: usize, isolated: bool) {
        for j in (0..self.nodes).filter(|j| *j != i) {
            self.set_direction(i, j, isolated);
            self.set_direction(j, i, isolated);
        }
    }

    /// Makes node `i`'s link slow in both directions; returns how (netem delay or a tbf rate).
    pub fn slow(&self, i: usize) -> &'static str {
        let host = self.host_veth(i);
        let peer = self.ns_veth(i);
        let netem = run("tc", &["qdisc", "add", "dev", &host, "root", "netem", "delay", "60ms", "20ms"]).is_ok();
        if netem {
            run("tc", &["-n", self.ns(i), "qdisc", "add", "dev", &peer, "root", "netem", "delay", "60ms", "20ms"])
                .unwrap();
            return "netem delay 60 ms ± 20 ms each way";
        }
        for (ns, dev) in [(None, &host), (Some(self.ns(i)), &peer)] {
            let mut args: Vec<&str> = Vec::new();
            if let Some(ns) = ns {
                args.extend(["-n", ns]);
            }
            args.extend([
                "qdisc", "add", "dev", dev, "root", "tbf", "rate", "512kbit", "burst", "2kb", "latency", "1s",
            ]);
            run("tc", &args).unwrap();
        }
        "tbf 512 kbit/s each way (no sch_netem in this kernel)"
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace destroys its veth end and with it the host end.
        for ns in &self.namespaces {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("netns cleanup: {e}");
            }
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// A three-node cluster, each node in its namespace of `net`, the control plane and the test in
/// the root namespace; node certificates carry the namespace addresses as IP SANs (`aerodb certs
/// init --server-name`). Started and replicated.
pub async fn cluster(net: &Net) -> Cluster {
    cluster_with(net, Spec::default()).await
}

/// [`cluster`] built from `spec` (its control planes connect to the nodes directly: a control
/// proxy the spec asks for is not used).
pub async fn cluster_with(net: &Net, spec: Spec) -> Cluster {
    let mut c = Cluster::build(spec).await;
    let n = c.nodes.len();
    let dir = c.root.path().join("certs-netns");
    let opts = InitOptions {
        trust_domain: TD.into(),
        control_endpoint: "127.0.0.1:1".into(),
        data_endpoint: "127.0.0.1:1".into(),
        extra_server_names: (0..n).map(|i| net.addr(i)).collect(),
        leaf_days: 30,
        nodes: (1..=NODE_CERTS).map(|i| format!("n{i}")).collect(),
    };
    pki::init(&dir, &opts, time::OffsetDateTime::now_utc()).expect("certs init");
    c.pki = Pki::existing(&dir);
    let members: Vec<Member> =
        (0..n).map(|i| Member { id: c.nodes[i].id.clone(), address: format!("{}:{NODE_PORT}", net.addr(i)) }).collect();
    for (i, m) in members.iter().enumerate() {
        let node = &mut c.nodes[i];
        node.addr = m.address.clone();
        node.cfg.listen = m.address.clone();
        node.cfg.members = members.clone();
        node.cfg.tls = c.pki.node_tls(&m.id);
        std::fs::write(&node.config_path, toml::to_string(&node.cfg).unwrap()).unwrap();
    }
    for cp in 0..c.controls.len() {
        let control = &mut c.controls[cp];
        control.cfg.nodes = members.clone();
        control.cfg.tls = c.pki.control_tls();
        std::fs::write(&control.config_path, toml::to_string(&control.cfg).unwrap()).unwrap();
    }
    for i in 0..n {
        start_node(&mut c, net, i);
    }
    for cp in 0..c.controls.len() {
        c.controls[cp].proc.start();
    }
    for i in 0..n {
        c.wait_node_ready(i).await;
    }
    for cp in 0..c.controls.len() {
        c.wait_control_ready(cp).await;
    }
    c.wait_replicated(WAIT).await;
    c
}

/// Starts node `i` inside its namespace; every later start of it (`Cluster::restart_node`) runs
/// there too.
pub fn start_node(c: &mut Cluster, net: &Net, i: usize) {
    let p = &mut c.nodes[i].proc;
    p.netns = Some(net.ns(i).to_string());
    p.start();
}
