//! The newest audit checkpoint aerodbctl has seen per control-plane instance, kept as certificate
//! transparency clients keep signed tree heads: a later checkpoint is accepted only with a
//! consistency proof from the stored one, and the first key seen for an origin is pinned.
//!
//! One file per origin, `<state dir>/audit-checkpoints/<origin, '/' as '_'>.json`:
//! `{"origin", "public_key" (hex), "note"}`, written atomically, mode 0600. The state dir is
//! `--state-dir` (env AERODB_STATE_DIR), else `state/` beside the profile file.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use crate::audit::checkpoint::{self, Checkpoint};
use crate::audit::merkle;
use crate::proto::control as pb;

/// What was stored for an origin.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    /// The origin line.
    pub origin: String,
    /// Hex Ed25519 key pinned for it.
    pub public_key: String,
    /// The newest signed note.
    pub note: String,
}

/// Why a checkpoint was refused.
#[derive(Debug, thiserror::Error)]
pub enum SeenError {
    /// The file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// The checkpoint is not signed by the pinned key, or is malformed.
    #[error("the checkpoint is refused: {0}")]
    Signature(String),
    /// Not consistent with the stored one: the log was cut, rewritten or forked.
    #[error(
        "REFUSED: the control plane's checkpoint (tree size {new_size}) is NOT consistent with the checkpoint \
         aerodbctl stored in {file} (tree size {old_size}): {why}. The audit log was cut, rewritten or forked; keep \
         both checkpoints as evidence"
    )]
    Inconsistent {
        /// The store file.
        file: String,
        /// Stored size.
        old_size: u64,
        /// Offered size.
        new_size: u64,
        /// What failed.
        why: String,
    },
}

/// The file of `origin` under `state_dir`.
pub fn file_of(state_dir: &Path, origin: &str) -> PathBuf {
    state_dir.join("audit-checkpoints").join(format!("{}.json", origin.replace('/', "_")))
}

/// The stored checkpoint of `origin`, if any.
pub fn load(state_dir: &Path, origin: &str) -> Result<Option<Seen>, SeenError> {
    let f = file_of(state_dir, origin);
    match std::fs::read_to_string(&f) {
        Ok(t) => serde_json::from_str(&t).map(Some).map_err(|e| SeenError::Io(format!("{}: {e}", f.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SeenError::Io(format!("{}: {e}", f.display()))),
    }
}

fn hash_of(hex_text: &str) -> Result<merkle::Hash, String> {
    hex::decode(hex_text).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| format!("{hex_text:?} is not a hash"))
}

/// Checks `offered` (verified with the pinned key, or pinned now on first use) against the stored
/// checkpoint with `proof` (a consistency proof from the stored size to the offered size), and
/// stores it when it is newer. Returns the checked checkpoint and whether it was stored.
pub fn accept(
    state_dir: &Path,
    offered: &pb::SignedCheckpoint,
    proof: Option<&pb::ConsistencyProof>,
) -> Result<(Checkpoint, Option<Seen>), SeenError> {
    let file = file_of(state_dir, &offered.origin);
    let stored = load(state_dir, &offered.origin)?;
    let key_hex = stored.as_ref().map(|s| s.public_key.clone()).unwrap_or_else(|| offered.public_key.clone());
    let key: VerifyingKey = checkpoint::public_key_from_hex(&key_hex).map_err(SeenError::Signature)?;
    let cp = Checkpoint::verify(&offered.note, &key).map_err(|e| SeenError::Signature(e.to_string()))?;
    if let Some(old) = &stored {
        let old_cp = Checkpoint::verify(&old.note, &key).map_err(|e| SeenError::Signature(e.to_string()))?;
        let inconsistent = |why: String| SeenError::Inconsistent {
            file: file.display().to_string(),
            old_size: old_cp.size,
            new_size: cp.size,
            why,
        };
        if cp.size < old_cp.size {
            return Err(inconsistent("it is smaller than the stored one".into()));
        }
        if cp.size == old_cp.size {
            if cp.root != old_cp.root {
                return Err(inconsistent("two different roots for one tree size (a fork)".into()));
            }
        } else {
            let p = proof.ok_or_else(|| inconsistent("no consistency proof was given".into()))?;
            let hashes = p.hashes.iter().map(|h| hash_of(h)).collect::<Result<Vec<_>, _>>().map_err(inconsistent)?;
            if p.first_size != old_cp.size || p.second_size != cp.size {
                return Err(inconsistent("the proof is for other sizes".into()));
            }
            merkle::verify_consistency(old_cp.size, cp.size, &old_cp.root, &cp.root, &hashes)
                .map_err(|e| inconsistent(e.to_string()))?;
        }
        if cp.size == old_cp.size {
            return Ok((cp, stored));
        }
    }
    let seen = Seen { origin: cp.origin.clone(), public_key: key_hex, note: cp.note.clone() };
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    crate::fsutil::create_dir_durable(&dir).map_err(|e| SeenError::Io(format!("{}: {e}", dir.display())))?;
    let text = serde_json::to_vec_pretty(&seen).map_err(|e| SeenError::Io(e.to_string()))?;
    crate::fsutil::write_atomic(&file, &text, crate::fsutil::FILE_MODE)
        .map_err(|e| SeenError::Io(format!("{}: {e}", file.display())))?;
    Ok((cp, Some(seen)))
}
