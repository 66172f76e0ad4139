//! Legacy chain checkpoints (format v1), read only to verify directories written before the
//! Merkle tree (docs/audit.md, "Earlier directories").
//!
//! A v1 checkpoint `{seq, head_hash, instance_id, time}` is signed over the canonical bytes
//! `aerodb.audit.checkpoint.v1\n<instance_id>\n<seq>\n<head_hash hex>\n<time_unix_ms>\n`.
//! The first start of this version renames a v1 `checkpoints.log` to `checkpoints-v1.log`; full
//! verification still checks every one of them against the chain.

use std::path::Path;

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};

use crate::frame;

/// Magic of `checkpoints.log`.
pub const MAGIC: &[u8; 8] = b"AEROCKP1";
/// The legacy checkpoints file, as renamed at the first start of this version.
pub const CHECKPOINTS_FILE: &str = "checkpoints-v1.log";

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
}

/// Every checkpoint in `<dir>/checkpoints-v1.log` with its byte offset. A torn last frame (a crash
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
