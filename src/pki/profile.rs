//! aerodbctl connection profiles: where to connect and with which certificate.

use std::path::{Path, PathBuf};

use super::PkiError;
use crate::fsutil::write_atomic;

/// One profile file (TOML), written by `aerodb certs init|issue` and read by aerodbctl.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// `host:port` of the control plane (or of a node, for the data-plane client profile).
    pub endpoint: String,
    /// The trust domain of the certificates.
    pub trust_domain: String,
    /// CA bundle used to verify the server.
    pub ca: PathBuf,
    /// This client's certificate.
    pub cert: PathBuf,
    /// This client's private key (0600).
    pub key: PathBuf,
    /// The identity the server must present, `<role>/<name>` (e.g. `controlplane/dev-controlplane`,
    /// `node/n1`); aerodbctl refuses a server with another one. Absent: any control plane (for
    /// control-plane commands) or any node (for `kv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

impl Profile {
    /// Writes the profile (0644; it holds paths, not secrets).
    pub fn write(&self, path: &Path) -> Result<(), PkiError> {
        let text =
            toml::to_string(self).map_err(|e| PkiError::Parse { path: path.to_path_buf(), what: e.to_string() })?;
        let text = format!("# aerodbctl profile (aerodbctl --profile {})\n{text}", path.display());
        write_atomic(path, text.as_bytes(), 0o644).map_err(|source| PkiError::Io { path: path.to_path_buf(), source })
    }

    /// Reads a profile.
    pub fn read(path: &Path) -> Result<Self, PkiError> {
        let text = std::fs::read_to_string(path).map_err(|source| PkiError::Io { path: path.to_path_buf(), source })?;
        toml::from_str(&text).map_err(|e| PkiError::Parse { path: path.to_path_buf(), what: e.to_string() })
    }
}
