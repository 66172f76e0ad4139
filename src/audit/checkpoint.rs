//! Signed checkpoints of the audit chain, and the instance's Ed25519 key.
//!
//! A checkpoint `{seq, head_hash, instance_id, time}` is signed over the canonical bytes
//! `aerodb.audit.checkpoint.v1\n<instance_id>\n<seq>\n<head_hash hex>\n<time_unix_ms>\n`.
//! Checkpoints are appended (framed) to `checkpoints.log` every N records and at clean shutdown.
//! Anyone holding an exported checkpoint can detect a cut or rewritten tail: the log must still
//! reach its `seq` with the same `head_hash`, and later checkpoints must verify with its key.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};

use crate::frame;

/// Magic of `checkpoints.log`.
pub const MAGIC: &[u8; 8] = b"AEROCKP1";
/// The private key file (hex seed, 0600).
pub const KEY_FILE: &str = "instance.key";
/// The public key file (hex).
pub const PUB_FILE: &str = "instance.pub";
/// The checkpoints file.
pub const CHECKPOINTS_FILE: &str = "checkpoints.log";

/// A signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// The last record covered.
    pub seq: u64,
    /// Its hash (hex).
    pub head_hash: String,
    /// The instance whose log it is.
    pub instance_id: String,
    /// When it was signed.
    pub time_unix_ms: u64,
    /// Hex Ed25519 public key.
    pub public_key: String,
    /// Hex Ed25519 signature over [`Checkpoint::signing_bytes`].
    pub signature: String,
}

impl Checkpoint {
    /// The canonical signed bytes.
    pub fn signing_bytes(&self) -> Vec<u8> {
        format!(
            "aerodb.audit.checkpoint.v1\n{}\n{}\n{}\n{}\n",
            self.instance_id, self.seq, self.head_hash, self.time_unix_ms
        )
        .into_bytes()
    }

    /// Verifies the signature, with `trusted` (hex public key) if given, else the embedded key.
    pub fn verify(&self, trusted: Option<&str>) -> Result<(), String> {
        let key_hex = trusted.unwrap_or(&self.public_key);
        if trusted.is_some_and(|t| t != self.public_key) {
            return Err(format!(
                "checkpoint at seq {} names key {}… but the trusted key is {}…",
                self.seq,
                self.public_key.get(..16).unwrap_or(""),
                key_hex.get(..16).unwrap_or("")
            ));
        }
        let key: [u8; 32] = hex::decode(key_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "public key is not 32 hex bytes".to_string())?;
        let key = VerifyingKey::from_bytes(&key).map_err(|e| format!("public key: {e}"))?;
        let sig: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "signature is not 64 hex bytes".to_string())?;
        key.verify(&self.signing_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| format!("checkpoint at seq {}: signature does not verify", self.seq))
    }

    /// The proto form.
    pub fn to_proto(&self) -> crate::proto::control::SignedCheckpoint {
        crate::proto::control::SignedCheckpoint {
            seq: self.seq,
            head_hash: self.head_hash.clone(),
            instance_id: self.instance_id.clone(),
            time_unix_ms: self.time_unix_ms,
            public_key: self.public_key.clone(),
            signature: self.signature.clone(),
        }
    }

    /// From the proto form.
    pub fn from_proto(c: &crate::proto::control::SignedCheckpoint) -> Self {
        Self {
            seq: c.seq,
            head_hash: c.head_hash.clone(),
            instance_id: c.instance_id.clone(),
            time_unix_ms: c.time_unix_ms,
            public_key: c.public_key.clone(),
            signature: c.signature.clone(),
        }
    }

    /// Reads an exported checkpoint (JSON).
    pub fn read_export(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Why the key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
    /// Bad permissions or content.
    #[error("{path}: {what}")]
    Bad {
        /// File.
        path: PathBuf,
        /// What.
        what: String,
    },
}

/// The instance's signing key.
pub struct CheckpointSigner {
    key: SigningKey,
    instance_id: String,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner").field("instance_id", &self.instance_id).finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// Loads `<dir>/instance.key`, or creates it with `instance.pub` on first start (both
    /// [`crate::fsutil::FILE_MODE`]).
    pub fn load_or_create(dir: &Path, instance_id: &str) -> Result<Self, KeyError> {
        let path = dir.join(KEY_FILE);
        let io = |source| KeyError::Io { path: path.clone(), source };
        if path.exists() {
            crate::tls::material::check_key_permissions(&path)
                .map_err(|e| KeyError::Bad { path: path.clone(), what: e.to_string() })?;
            let text = std::fs::read_to_string(&path).map_err(io)?;
            let seed: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| KeyError::Bad { path: path.clone(), what: "not a 32-byte hex seed".into() })?;
            return Ok(Self { key: SigningKey::from_bytes(&seed), instance_id: instance_id.to_string() });
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| KeyError::Bad { path: path.clone(), what: format!("no entropy: {e}") })?;
        let key = SigningKey::from_bytes(&seed);
        crate::fsutil::write_atomic(&path, hex::encode(seed).as_bytes(), crate::fsutil::FILE_MODE).map_err(io)?;
        let pub_path = dir.join(PUB_FILE);
        crate::fsutil::write_atomic(
            &pub_path,
            hex::encode(key.verifying_key().to_bytes()).as_bytes(),
            crate::fsutil::FILE_MODE,
        )
        .map_err(|source| KeyError::Io { path: pub_path.clone(), source })?;
        Ok(Self { key, instance_id: instance_id.to_string() })
    }

    /// Hex public key.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// Signs a checkpoint.
    pub fn sign(&self, seq: u64, head_hash: &[u8; 32], time_unix_ms: u64) -> Checkpoint {
        let mut cp = Checkpoint {
            seq,
            head_hash: hex::encode(head_hash),
            instance_id: self.instance_id.clone(),
            time_unix_ms,
            public_key: self.public_key_hex(),
            signature: String::new(),
        };
        cp.signature = hex::encode(self.key.sign(&cp.signing_bytes()).to_bytes());
        cp
    }
}

/// Opens `checkpoints.log` for appending (creating it, [`crate::fsutil::FILE_MODE`], with its header).
pub fn open_for_append(dir: &Path) -> std::io::Result<File> {
    let path = dir.join(CHECKPOINTS_FILE);
    if !path.exists() {
        let mut f = crate::fsutil::open_private(OpenOptions::new().create_new(true).append(true), &path)?;
        f.write_all(&frame::header(MAGIC, 0))?;
        f.sync_all()?;
        crate::fsutil::fsync_dir(dir)?;
        return Ok(f);
    }
    OpenOptions::new().append(true).open(&path)
}

/// Appends one checkpoint and fsyncs it.
pub fn append(file: &mut File, cp: &Checkpoint) -> std::io::Result<()> {
    let json = serde_json::to_vec(cp).map_err(std::io::Error::other)?;
    file.write_all(&frame::encode(&json))?;
    file.sync_data()
}

/// Every checkpoint in `<dir>/checkpoints.log` with its byte offset. A torn last frame (a crash
/// mid-append) is ignored; anything else unreadable is an error naming file and offset.
pub fn read_all(dir: &Path) -> Result<Vec<(u64, Checkpoint)>, String> {
    let path = dir.join(CHECKPOINTS_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut r = frame::Reader::open(&path, MAGIC, 1 << 16, true).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some((offset, payload)) = r.next_frame().map_err(|e| e.to_string())? {
        let cp: Checkpoint =
            serde_json::from_slice(&payload).map_err(|e| format!("{}: byte offset {offset}: {e}", path.display()))?;
        out.push((offset, cp));
    }
    Ok(out)
}
