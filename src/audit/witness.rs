//! A witness: a key kept apart from the control plane that cosigns an instance's checkpoint only
//! when it is consistent with the last one it cosigned (`aerodbctl audit witness`).
//!
//! # Trust model
//! The instance key signs what the instance claims; whoever holds that key (the control-plane
//! host) can sign a second, forked tree and show it to clients that never saw the first. A
//! witness closes that for every client that requires its cosignature: it keeps the newest
//! checkpoint it cosigned per origin (the checkpoint store of `aerodbctl audit prove`, in its own
//! directory), cosigns a newer one only with a verifying RFC 6962 consistency proof from it (one
//! of the same size only with the same root), and never cosigns a smaller one. So two
//! cosigned checkpoints of one origin are always consistent, unless the witness's key or its
//! directory is compromised too. It does not keep the log, and it proves nothing about records
//! it was never shown: a cut below its newest cosigned checkpoint is detected by the instance's
//! start and by `audit verify` against that checkpoint, not by the witness.
//!
//! The cosignature is a signed-note signature line by the witness's Ed25519 key under the key
//! name `aerodb.witness/<name>`, over the same text as the instance's signature (not the
//! timestamped C2SP `cosignature/v1` format). Verifiers of the instance's signature ignore it.
//!
//! ```text
//! <witness dir>/witness.key    Ed25519 seed, hex, 0600
//! <witness dir>/witness.pub    its public key, hex
//! <witness dir>/witness.name   the name (the key name is aerodb.witness/<name>)
//! <witness dir>/audit-checkpoints/<origin>.json   the newest checkpoint cosigned per origin
//! ```

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

use super::checkpoint::{self, Checkpoint, NoteError};

/// The witness's key file.
pub const KEY_FILE: &str = "witness.key";
/// Its public key.
pub const PUB_FILE: &str = "witness.pub";
/// Its name.
pub const NAME_FILE: &str = "witness.name";

/// The key name of witness `name`.
pub fn key_name(name: &str) -> String {
    format!("aerodb.witness/{name}")
}

/// Why the witness could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// I/O on the witness directory.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The directory already holds a witness key (init refuses to replace it).
    #[error("{0} already holds a witness key")]
    Exists(PathBuf),
    /// A file of the witness is malformed or too open.
    #[error("{path}: {what}")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The note to cosign does not parse.
    #[error("the checkpoint to cosign: {0}")]
    Note(#[from] NoteError),
}

/// A witness's signing key and name.
pub struct Witness {
    key: SigningKey,
    name: String,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness").field("name", &self.name).finish_non_exhaustive()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Witness {
    /// Creates a witness in `dir` (0700, created if absent): a new key (0600) and its name (1..=63
    /// of `[A-Za-z0-9._-]`). Refuses a directory that already holds a key.
    pub fn init(dir: &Path, name: &str) -> Result<Self, WitnessError> {
        if !valid_name(name) {
            return Err(WitnessError::Bad {
                path: dir.join(NAME_FILE),
                what: format!("{name:?} is not 1..=63 of [A-Za-z0-9._-]"),
            });
        }
        crate::fsutil::create_dir_durable(dir).map_err(|source| WitnessError::Io { path: dir.into(), source })?;
        let key_path = dir.join(KEY_FILE);
        if key_path.exists() {
            return Err(WitnessError::Exists(dir.into()));
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| WitnessError::Bad { path: key_path.clone(), what: format!("no entropy: {e}") })?;
        let key = SigningKey::from_bytes(&seed);
        let write = |file: &str, text: String| {
            let path = dir.join(file);
            crate::fsutil::write_atomic(&path, text.as_bytes(), crate::fsutil::FILE_MODE)
                .map_err(|source| WitnessError::Io { path, source })
        };
        write(NAME_FILE, name.to_string())?;
        write(PUB_FILE, hex::encode(key.verifying_key().to_bytes()))?;
        write(KEY_FILE, hex::encode(seed))?;
        Ok(Self { key, name: name.to_string() })
    }

    /// Loads the witness of `dir` (its key file must be 0600 or narrower).
    pub fn load(dir: &Path) -> Result<Self, WitnessError> {
        let key_path = dir.join(KEY_FILE);
        crate::tls::material::check_key_permissions(&key_path)
            .map_err(|e| WitnessError::Bad { path: key_path.clone(), what: e.to_string() })?;
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read_to_string(&path).map_err(|source| WitnessError::Io { path, source })
        };
        let seed: [u8; 32] = hex::decode(read(KEY_FILE)?.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| WitnessError::Bad { path: key_path.clone(), what: "not a 32-byte hex seed".into() })?;
        let name = read(NAME_FILE)?.trim().to_string();
        if !valid_name(&name) {
            return Err(WitnessError::Bad {
                path: dir.join(NAME_FILE),
                what: format!("{name:?} is not a witness name"),
            });
        }
        Ok(Self { key: SigningKey::from_bytes(&seed), name })
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its public key.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// `note` with this witness's signature line added (after the instance's). The caller has
    /// checked it consistent with the last one cosigned: this only signs.
    pub fn cosign(&self, note: &str) -> Result<String, WitnessError> {
        Checkpoint::parse(note)?;
        let (text, _) = note.rsplit_once("\n\n").ok_or_else(|| NoteError::Malformed("no blank line".into()))?;
        let signed = format!("{text}\n");
        let name = key_name(&self.name);
        let mut raw = checkpoint::key_id(&name, &self.key.verifying_key()).to_vec();
        raw.extend_from_slice(&self.key.sign(signed.as_bytes()).to_bytes());
        Ok(format!("{note}{}{name} {}\n", checkpoint::SIG_PREFIX, B64.encode(raw)))
    }
}

/// Checks the cosignature of witness `name` (key `key`) on `note`.
pub fn verify_cosignature(note: &str, name: &str, key: &VerifyingKey) -> Result<Checkpoint, NoteError> {
    Checkpoint::verify_by(note, &key_name(name), key)
}
