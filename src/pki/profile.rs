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

    /// Reads a profile. Relative `ca`, `cert` and `key` paths are resolved against the folder
    /// of the profile file, never the working directory. An `endpoints` list is accepted and
    /// ignored here (see [`Profile::read_with_endpoints`]).
    pub fn read(path: &Path) -> Result<Self, PkiError> {
        Ok(Self::read_with_endpoints(path)?.0)
    }

    /// Reads a profile and its optional `endpoints`: every node's `host:port`, for data-plane
    /// commands that must find the primary across a switchover (empty when absent). Relative
    /// `ca`, `cert` and `key` paths are resolved against the folder of the profile file.
    pub fn read_with_endpoints(path: &Path) -> Result<(Self, Vec<String>), PkiError> {
        let parse = |what: String| PkiError::Parse { path: path.to_path_buf(), what };
        let text = std::fs::read_to_string(path).map_err(|source| PkiError::Io { path: path.to_path_buf(), source })?;
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| parse(e.to_string()))?;
        let endpoints: Vec<String> = match table.remove("endpoints") {
            None => Vec::new(),
            Some(v) => v.try_into().map_err(|e| parse(format!("endpoints: {e}")))?,
        };
        let mut profile: Profile = toml::Value::Table(table).try_into().map_err(|e| parse(e.to_string()))?;
        let base = path.parent().unwrap_or_else(|| Path::new(""));
        for file in [&mut profile.ca, &mut profile.cert, &mut profile.key] {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        Ok((profile, endpoints))
    }

    /// Writes the profile with an `endpoints` list (every node's `host:port`; omitted when
    /// empty), 0644 like [`Profile::write`].
    pub fn write_with_endpoints(&self, path: &Path, endpoints: &[String]) -> Result<(), PkiError> {
        let parse = |what: String| PkiError::Parse { path: path.to_path_buf(), what };
        let mut value = toml::Value::try_from(self).map_err(|e| parse(e.to_string()))?;
        if let (false, Some(table)) = (endpoints.is_empty(), value.as_table_mut()) {
            table.insert(
                "endpoints".into(),
                toml::Value::Array(endpoints.iter().cloned().map(toml::Value::String).collect()),
            );
        }
        let text = toml::to_string(&value).map_err(|e| parse(e.to_string()))?;
        let text = format!("# aerodbctl profile (aerodbctl --profile {})\n{text}", path.display());
        write_atomic(path, text.as_bytes(), 0o644).map_err(|source| PkiError::Io { path: path.to_path_buf(), source })
    }
}
