//! What every configuration file shares: one TOML reader and one range check, so a bad value is
//! an error naming its field, never silently clamped (STYLE §14).

use std::path::{Path, PathBuf};

/// Why a configuration is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not valid TOML for this schema.
    #[error("{path}: {what}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What.
        what: String,
    },
    /// A value breaks a rule.
    #[error("invalid configuration: {field}: {why}")]
    Invalid {
        /// The field.
        field: String,
        /// The rule.
        why: String,
    },
}

/// Checks that `v` lies in `lo..=hi`, naming `field` when it does not.
pub fn range(field: &str, v: u64, lo: u64, hi: u64) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::Invalid { field: field.into(), why: format!("{v} is outside {lo}..={hi}") });
    }
    Ok(())
}

/// Reads a TOML file into `T`; unreadable and unparsable files are errors naming the file.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.into(), source })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), what: e.to_string() })
}
