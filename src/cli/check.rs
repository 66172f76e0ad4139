//! `aerodb node check --config F` and `aerodb control check --config F`: validate a
//! configuration and the files it names (certificates, keys, CA, CRL, directories) the way a
//! start would, without starting anything, binding any port or writing any file.

use std::path::Path;

use crate::control::config::ControlConfig;
use crate::kernel::config::NodeConfig;
use crate::tls::material::{client_tls, server_tls};

/// Checks a node configuration: it parses and validates, both certificates name this node, the
/// server and peer-client TLS material loads (CA, CRL, certificate, key), and the data dir, if it
/// exists, is initialised and private. Returns one line per check passed; the first failure is
/// the error.
pub fn node(path: &Path) -> anyhow::Result<Vec<String>> {
    let cfg = NodeConfig::load(path)?;
    let mut ok =
        vec![format!("configuration {} is valid (node {} of cluster {})", path.display(), cfg.node_id, cfg.cluster_id)];
    crate::kernel::run::check_own_identity(&cfg)?;
    ok.push(format!("server and peer-client certificates name node/{}", cfg.node_id));
    server_tls(&cfg.tls.server_paths(), &cfg.tls.trust_domain)?;
    ok.push("server TLS material loads (certificate, key, CA, CRL)".into());
    client_tls(&cfg.tls.client_paths(), &cfg.tls.trust_domain)?;
    ok.push("peer-client TLS material loads (certificate, key, CA, CRL)".into());
    if cfg.data_dir.exists() {
        crate::fsutil::check_private_dir(&cfg.data_dir)?;
        let dir = crate::kernel::node::DataDir { root: cfg.data_dir.clone() };
        if !dir.ledger().exists() {
            anyhow::bail!("data dir {} is not initialised: run `aerodb node init` first", cfg.data_dir.display());
        }
        ok.push(format!("data dir {} is initialised and private", cfg.data_dir.display()));
    } else {
        anyhow::bail!("data dir {} does not exist: run `aerodb node init` first", cfg.data_dir.display());
    }
    if let Some(a) = &cfg.metrics_address {
        ok.push(format!("metrics at http://{a}/metrics"));
    }
    Ok(ok)
}

/// Checks a control-plane configuration: it parses and validates, its server certificate names a
/// control plane, the server and kernel-client TLS material loads, and the audit directory, if it
/// exists, is private. Returns one line per check passed; the first failure is the error.
pub fn control(path: &Path) -> anyhow::Result<Vec<String>> {
    let cfg = ControlConfig::load(path)?;
    let mut ok = vec![format!(
        "configuration {} is valid (instance {} of cluster {}, {} node(s))",
        path.display(),
        cfg.instance_id,
        cfg.cluster_id,
        cfg.nodes.len()
    )];
    let identity = crate::control::run::check_server_identity(&cfg)?;
    ok.push(format!("server certificate names {identity}"));
    server_tls(&cfg.tls.server_paths(), &cfg.tls.trust_domain)?;
    ok.push("server TLS material loads (certificate, key, CA, CRL)".into());
    client_tls(&cfg.tls.kernel_paths(), &cfg.tls.trust_domain)?;
    ok.push("kernel-client TLS material loads (certificate, key, CA, CRL)".into());
    for dir in [cfg.audit_dir.clone(), cfg.audit_dir.join("quarantine")] {
        crate::fsutil::check_private_dir(&dir)?;
    }
    ok.push(format!(
        "audit dir {} is private{}",
        cfg.audit_dir.display(),
        if cfg.audit_dir.exists() { "" } else { " (absent: created at start)" }
    ));
    if let Some(a) = &cfg.metrics_address {
        ok.push(format!("metrics at http://{a}/metrics"));
    }
    Ok(ok)
}
