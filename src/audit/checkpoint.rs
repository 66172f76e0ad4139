//! Signed checkpoints of the audit tree in the C2SP signed-note / tlog-checkpoint format, and the
//! instance's Ed25519 key.
//!
//! A checkpoint is a signed note (c2sp.org/signed-note) whose text is a tlog checkpoint
//! (c2sp.org/tlog-checkpoint):
//!
//! ```text
//! aerodb.audit/<instance_id>          origin = the key name
//! <tree size>                          decimal, no leading zero: records 1..=size
//! <base64 root hash>                   RFC 6962 root of those records (audit::merkle)
//!                                      (blank line)
//! — aerodb.audit/<instance_id> <base64(key id [4] ‖ Ed25519 signature [64])>
//! ```
//!
//! The key id is the first 4 bytes of `SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key)`; the
//! signature covers the note text, final newline included, blank line excluded.
//! `checkpoints.log` holds every checkpoint the instance signed, one frame each (magic
//! `AEROCKP2`), each fdatasync'd after the tree it covers (audit::tree invariants). A frame's
//! payload is `segment first seq u64 LE ‖ byte offset u64 LE ‖ note`: where the checkpoint's last
//! record starts, an unsigned hint that lets start read from there (it is checked: a wrong
//! hint only costs a scan of that segment).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;
use crate::frame;

/// Magic of `checkpoints.log`.
pub const MAGIC: &[u8; 8] = b"AEROCKP2";
/// The private key file (hex seed, 0600).
pub const KEY_FILE: &str = "instance.key";
/// The public key file (hex).
pub const PUB_FILE: &str = "instance.pub";
/// The checkpoints file.
pub const CHECKPOINTS_FILE: &str = "checkpoints.log";
/// Bytes of one stored or exchanged note at most (a checkpoint is about 200 bytes).
pub const NOTE_BYTES_MAX: usize = 4096;
/// The signed-note signature type of Ed25519.
const ED25519_TYPE: u8 = 0x01;
/// Prefix of a signature line: U+2014 EM DASH, space.
pub const SIG_PREFIX: &str = "\u{2014} ";

/// The origin line (and key name) of an instance's log.
pub fn origin_of(instance_id: &str) -> String {
    format!("aerodb.audit/{instance_id}")
}

/// The signed-note key id of an Ed25519 key under `name`.
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519_TYPE]);
    h.update(key.to_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// Why a note is not a valid checkpoint of the trusted key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Not the format.
    #[error("not a signed checkpoint note: {0}")]
    Malformed(String),
    /// No signature line of the trusted key.
    #[error("no signature of key {name} (key id {key_id}) on the checkpoint")]
    NotSignedBy {
        /// Key name.
        name: String,
        /// Hex key id.
        key_id: String,
    },
    /// The trusted key's signature does not verify.
    #[error("the signature of {name} on the checkpoint of size {size} does not verify")]
    BadSignature {
        /// Key name.
        name: String,
        /// Tree size claimed.
        size: u64,
    },
}

/// A checkpoint whose note was parsed (and, through [`Checkpoint::verify`], checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The origin line.
    pub origin: String,
    /// Records covered: seqs `1..=size`.
    pub size: u64,
    /// The RFC 6962 root of those records.
    pub root: Hash,
    /// The whole signed note, verbatim.
    pub note: String,
}

impl Checkpoint {
    /// Parses a note's text and signature lines without checking any signature.
    pub fn parse(note: &str) -> Result<Self, NoteError> {
        let bad = |w: &str| NoteError::Malformed(w.to_string());
        if note.len() > NOTE_BYTES_MAX {
            return Err(bad(&format!("{} bytes, over the limit of {NOTE_BYTES_MAX}", note.len())));
        }
        if note.bytes().any(|b| b < 0x20 && b != b'\n') {
            return Err(bad("a control character other than newline"));
        }
        let (text, sigs) = note.rsplit_once("\n\n").ok_or_else(|| bad("no blank line before the signatures"))?;
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(bad("no signature line, or the last line does not end in a newline"));
        }
        let mut lines = text.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or_else(|| bad("empty origin line"))?;
        let size_text = lines.next().ok_or_else(|| bad("no tree size line"))?;
        if size_text.is_empty()
            || !size_text.bytes().all(|b| b.is_ascii_digit())
            || (size_text.len() > 1 && size_text.starts_with('0'))
        {
            return Err(bad("the tree size is not a decimal number without leading zeros"));
        }
        let size: u64 = size_text.parse().map_err(|_| bad("the tree size does not fit 64 bits"))?;
        let root_text = lines.next().ok_or_else(|| bad("no root hash line"))?;
        let root: Hash = B64
            .decode(root_text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("the root hash is not base64 of 32 bytes"))?;
        if lines.any(str::is_empty) {
            return Err(bad("an empty extension line"));
        }
        Ok(Self { origin: origin.to_string(), size, root, note: note.to_string() })
    }

    /// Parses `note` and checks the signature of `key` under the origin's name (the key id
    /// must match; lines of other keys, e.g. witnesses, are ignored).
    pub fn verify(note: &str, key: &VerifyingKey) -> Result<Self, NoteError> {
        let origin = Self::parse(note)?.origin;
        Self::verify_by(note, &origin, key)
    }

    /// Parses `note` and checks the signature line of `key` under the key name `name` (a
    /// witness's cosignature: `aerodb.witness/<name>`; the origin for the instance's own).
    pub fn verify_by(note: &str, name: &str, key: &VerifyingKey) -> Result<Self, NoteError> {
        let cp = Self::parse(note)?;
        let (text, sigs) = note.rsplit_once("\n\n").ok_or_else(|| NoteError::Malformed("no blank line".into()))?;
        let signed = format!("{text}\n");
        let want_id = key_id(name, key);
        for line in sigs.lines() {
            let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(|| {
                NoteError::Malformed(format!("signature line {line:?} does not start with an em dash"))
            })?;
            let (line_name, b64) = rest
                .rsplit_once(' ')
                .ok_or_else(|| NoteError::Malformed("a signature line without a key name".into()))?;
            let raw = B64.decode(b64).map_err(|_| NoteError::Malformed("a signature is not base64".into()))?;
            if line_name != name || raw.len() < 4 || raw[..4] != want_id {
                continue;
            }
            let sig: [u8; 64] = raw[4..]
                .try_into()
                .map_err(|_| NoteError::Malformed("an Ed25519 signature that is not 64 bytes".into()))?;
            return key
                .verify(signed.as_bytes(), &Signature::from_bytes(&sig))
                .map(|()| cp.clone())
                .map_err(|_| NoteError::BadSignature { name: name.to_string(), size: cp.size });
        }
        Err(NoteError::NotSignedBy { name: name.to_string(), key_id: hex::encode(want_id) })
    }

    /// The proto form.
    pub fn to_proto(&self, public_key: &VerifyingKey) -> crate::proto::control::SignedCheckpoint {
        crate::proto::control::SignedCheckpoint {
            note: self.note.clone(),
            tree_size: self.size,
            root_hash: hex::encode(self.root),
            origin: self.origin.clone(),
            public_key: hex::encode(public_key.to_bytes()),
        }
    }

    /// Reads a checkpoint note from a file (unverified: the caller checks it with a key).
    pub fn read_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Parses a hex Ed25519 public key.
pub fn public_key_from_hex(text: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "the public key is not 32 hex bytes".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("the public key: {e}"))
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
    origin: String,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner").field("origin", &self.origin).finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// Loads `<dir>/instance.key`, or creates it with `instance.pub` on first start (both
    /// [`crate::fsutil::FILE_MODE`]).
    pub fn load_or_create(dir: &Path, instance_id: &str) -> Result<Self, KeyError> {
        let path = dir.join(KEY_FILE);
        let io = |source| KeyError::Io { path: path.clone(), source };
        let origin = origin_of(instance_id);
        if path.exists() {
            crate::tls::material::check_key_permissions(&path)
                .map_err(|e| KeyError::Bad { path: path.clone(), what: e.to_string() })?;
            let text = std::fs::read_to_string(&path).map_err(io)?;
            let seed: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| KeyError::Bad { path: path.clone(), what: "not a 32-byte hex seed".into() })?;
            return Ok(Self { key: SigningKey::from_bytes(&seed), origin });
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
        Ok(Self { key, origin })
    }

    /// The public key.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The origin line (and key name).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Signs the checkpoint of a tree of `size` records with root `root`.
    pub fn sign(&self, size: u64, root: &Hash) -> Checkpoint {
        let text = format!("{}\n{size}\n{}\n", self.origin, B64.encode(root));
        let sig = self.key.sign(text.as_bytes()).to_bytes();
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&key_id(&self.origin, &self.key.verifying_key()));
        raw.extend_from_slice(&sig);
        let note = format!("{text}\n{SIG_PREFIX}{} {}\n", self.origin, B64.encode(raw));
        Checkpoint { origin: self.origin.clone(), size, root: *root, note }
    }
}

/// Opens `checkpoints.log` for appending (creating it, [`crate::fsutil::FILE_MODE`], with its
/// header). A v1 file (magic `AEROCKP1`, written before the tree) is first renamed to
/// `checkpoints-v1.log`, which full verification still checks.
pub fn open_for_append(dir: &Path) -> std::io::Result<File> {
    let path = dir.join(CHECKPOINTS_FILE);
    if path.exists() {
        let mut magic = [0u8; 8];
        let n = std::io::Read::read(&mut File::open(&path)?, &mut magic)?;
        if n == 8 && &magic == super::checkpoint_v1::MAGIC {
            std::fs::rename(&path, dir.join(super::checkpoint_v1::CHECKPOINTS_FILE))?;
            crate::fsutil::fsync_dir(dir)?;
        }
    }
    if !path.exists() {
        let mut f = crate::fsutil::open_private(OpenOptions::new().create_new(true).append(true), &path)?;
        f.write_all(&frame::header(MAGIC, 0))?;
        f.sync_all()?;
        crate::fsutil::fsync_dir(dir)?;
        return Ok(f);
    }
    // A torn last frame (a crash or power cut mid-append) is cut off before anything is appended
    // after it (a copy kept in `quarantine/`): appended behind torn bytes, a new checkpoint would
    // turn a torn tail into corruption before the tail, which the next start refuses.
    let good = frame::Reader::open(&path, MAGIC, NOTE_BYTES_MAX as u32 + 16, true).and_then(|mut r| {
        while r.next_frame()?.is_some() {}
        Ok(r.good_len())
    });
    if let Ok(good) = good
        && std::fs::metadata(&path)?.len() > good
    {
        let copy = frame::truncate_keeping_copy(&path, good, &dir.join("quarantine"))?;
        tracing::warn!(file = %path.display(), offset = good, copy = %copy.display(), "truncated a torn checkpoint tail");
    }
    OpenOptions::new().append(true).open(&path)
}

/// Where a checkpoint's last record starts: its segment's first seq and its byte offset (0, 0
/// when unknown).
pub type Position = (u64, u64);

/// Appends one checkpoint (with the position of its last record) and fsyncs it.
pub fn append(file: &mut File, cp: &Checkpoint, at: Position) -> std::io::Result<()> {
    crate::failpoint::hit("audit.checkpoint_before_write");
    let mut payload = Vec::with_capacity(16 + cp.note.len());
    payload.extend_from_slice(&at.0.to_le_bytes());
    payload.extend_from_slice(&at.1.to_le_bytes());
    payload.extend_from_slice(cp.note.as_bytes());
    file.write_all(&frame::encode(&payload))?;
    crate::failpoint::hit("audit.checkpoint_before_fsync");
    file.sync_data()
}

/// Every checkpoint in `<dir>/checkpoints.log` with its byte offset and position hint, parsed but
/// not verified. A
/// torn last frame (a crash mid-append) is ignored; anything else unreadable is an error naming
/// file and offset. A v1 file not yet renamed reads as empty (the next start renames it).
pub fn read_all(dir: &Path) -> Result<Vec<(u64, Checkpoint, Position)>, String> {
    let path = dir.join(CHECKPOINTS_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut magic = [0u8; 8];
    let n = File::open(&path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut magic))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if n == 8 && &magic == super::checkpoint_v1::MAGIC {
        return Ok(Vec::new());
    }
    let mut r = frame::Reader::open(&path, MAGIC, NOTE_BYTES_MAX as u32 + 16, true).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some((offset, payload)) = r.next_frame().map_err(|e| e.to_string())? {
        let bad = || format!("{}: byte offset {offset}: a checkpoint frame shorter than its position", path.display());
        let seg: [u8; 8] = payload.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
        let at: [u8; 8] = payload.get(8..16).and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
        let position = (u64::from_le_bytes(seg), u64::from_le_bytes(at));
        let text = String::from_utf8(payload[16..].to_vec())
            .map_err(|_| format!("{}: byte offset {offset}: a checkpoint that is not UTF-8", path.display()))?;
        let cp = Checkpoint::parse(&text).map_err(|e| format!("{}: byte offset {offset}: {e}", path.display()))?;
        out.push((offset, cp, position));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint torn mid-append (a power cut) is cut off when the file is opened for the next
    /// append, so the next checkpoint follows the last whole one and the file reads back whole,
    /// instead of leaving corruption before the tail that the next start refuses.
    #[test]
    fn a_torn_checkpoint_tail_is_truncated_before_the_next_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let signer = CheckpointSigner::load_or_create(dir.path(), "cp1").expect("key");
        let root = super::super::merkle::leaf_hash(b"x");
        let first = signer.sign(1, &root);
        let mut f = open_for_append(dir.path()).expect("open");
        append(&mut f, &first, (1, 8)).expect("append");
        drop(f);
        // Half of a second frame, as a cut leaves it.
        let second = signer.sign(2, &root);
        let mut whole = Vec::new();
        whole.extend_from_slice(&8u64.to_le_bytes());
        whole.extend_from_slice(&16u64.to_le_bytes());
        whole.extend_from_slice(second.note.as_bytes());
        let framed = frame::encode(&whole);
        let path = dir.path().join(CHECKPOINTS_FILE);
        let mut raw = OpenOptions::new().append(true).open(&path).expect("raw");
        raw.write_all(&framed[..framed.len() / 2]).expect("torn");
        drop(raw);
        assert_eq!(read_all(dir.path()).expect("a torn tail reads").len(), 1);
        let mut f = open_for_append(dir.path()).expect("reopen");
        append(&mut f, &second, (1, 16)).expect("append after the cut");
        let all = read_all(dir.path()).expect("whole again");
        assert_eq!(all.iter().map(|(_, c, _)| c.size).collect::<Vec<_>>(), vec![1, 2]);
        assert!(dir.path().join("quarantine").read_dir().expect("quarantine").next().is_some(), "a copy kept");
    }

    #[test]
    fn a_signed_note_has_the_c2sp_shape_and_verifies_only_with_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let signer = CheckpointSigner::load_or_create(dir.path(), "cp1").expect("key");
        let root = super::super::merkle::leaf_hash(b"x");
        let cp = signer.sign(42, &root);
        let lines: Vec<&str> = cp.note.split('\n').collect();
        assert_eq!(lines[0], "aerodb.audit/cp1");
        assert_eq!(lines[1], "42");
        assert_eq!(B64.decode(lines[2]).expect("b64"), root.to_vec());
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with("\u{2014} aerodb.audit/cp1 "), "{}", lines[4]);
        let raw = B64.decode(lines[4].rsplit_once(' ').expect("sig").1).expect("b64");
        assert_eq!(raw.len(), 68);
        assert_eq!(raw[..4], key_id("aerodb.audit/cp1", &signer.public_key()));
        assert_eq!(Checkpoint::verify(&cp.note, &signer.public_key()).expect("verifies"), cp);

        let other = CheckpointSigner::load_or_create(&dir.path().join("o"), "cp1");
        // The other directory does not exist: create it first.
        drop(other);
        std::fs::create_dir(dir.path().join("o")).expect("dir");
        let other = CheckpointSigner::load_or_create(&dir.path().join("o"), "cp1").expect("key");
        assert!(matches!(Checkpoint::verify(&cp.note, &other.public_key()), Err(NoteError::NotSignedBy { .. })));
        let forged = cp.note.replacen("\n42\n", "\n43\n", 1);
        assert!(matches!(Checkpoint::verify(&forged, &signer.public_key()), Err(NoteError::BadSignature { .. })));
        assert!(matches!(Checkpoint::parse("x\n042\nAA==\n\n\u{2014} x AA==\n"), Err(NoteError::Malformed(_))));
    }
}
