//! The durable Merkle tree of the audit log: `tree.hashes`, every complete subtree hash in
//! post-order, beside the segments.
//!
//! ```text
//! offset 0   8 bytes   magic "AEROTRE1"
//! offset 8   u64 LE    0
//! offset 16  32-byte hashes: for leaf i (0-based, seq i+1) its leaf hash, then the hash of every
//!            subtree that leaf completes, smallest first. A tree of n leaves stores exactly
//!            2n − popcount(n) hashes; subtree (level, index) is at position
//!            merkle::position(level, index).
//! ```
//!
//! # Invariants
//! - The file is derived data: every hash in it is a function of the records. It is appended
//!   after the records it covers are durable (never before), so it never holds a leaf the
//!   segments do not.
//! - It is fdatasync'd before every signed checkpoint that covers it: a durable checkpoint of
//!   size n implies a durable tree of at least n leaves. Past the newest checkpoint it may be
//!   short (a crash drops unsynced writes) or ragged (a torn write); recovery cuts it back to the
//!   checkpoint and appends the newer leaves again from the records (audit::recovery).
//! - Appending costs one leaf hash plus, on average, one node hash: O(1) amortized, O(log n)
//!   worst case, one `write` per batch.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::merkle::{self, Frontier, Hash, Nodes};
use crate::frame;

/// The file name.
pub const TREE_FILE: &str = "tree.hashes";
/// Its magic.
pub const MAGIC: &[u8; 8] = b"AEROTRE1";

/// Why the tree file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
    /// Not a tree file.
    #[error("{path}: not an audit tree file (bad magic)")]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// A node past the stored tree was asked for (a bug in the caller).
    #[error("{path}: node at position {position} is past the stored tree of {stored} nodes")]
    Missing {
        /// The file.
        path: PathBuf,
        /// Position asked.
        position: u64,
        /// Nodes stored.
        stored: u64,
    },
}

/// The leaves a file of `bytes` bytes holds whole (the largest `n` whose stored nodes fit).
pub fn leaves_in(bytes: u64) -> u64 {
    let nodes = bytes.saturating_sub(frame::HEADER_LEN) / 32;
    // stored_nodes is increasing; search the largest n with stored_nodes(n) <= nodes.
    let (mut lo, mut hi) = (0u64, nodes);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if merkle::stored_nodes(mid) <= nodes { lo = mid } else { hi = mid - 1 }
    }
    lo
}

/// The byte length of a file holding a tree of `leaves` leaves.
pub fn file_len(leaves: u64) -> u64 {
    frame::HEADER_LEN + 32 * merkle::stored_nodes(leaves)
}

/// The stored hashes in post-order, streamed from the start (full verification compares them
/// with the recomputed tree). `None` once the file ends.
#[derive(Debug)]
pub struct TreeStream(std::io::BufReader<File>);

impl TreeStream {
    /// Opens `<dir>/tree.hashes` for streaming; `None` when it is absent or not a tree file.
    pub fn open(dir: &Path) -> Option<Self> {
        let mut f = std::io::BufReader::with_capacity(1 << 16, File::open(dir.join(TREE_FILE)).ok()?);
        let mut header = [0u8; 16];
        std::io::Read::read_exact(&mut f, &mut header).ok()?;
        (&header[..8] == MAGIC).then_some(Self(f))
    }

    /// Skips `hashes` stored hashes (e.g. `merkle::stored_nodes(n)` to continue after leaf n).
    pub fn skip(&mut self, hashes: u64) -> Option<()> {
        let by = i64::try_from(hashes.checked_mul(32)?).ok()?;
        std::io::Seek::seek_relative(&mut self.0, by).ok()
    }

    /// The next stored hash.
    pub fn next_hash(&mut self) -> Option<Hash> {
        let mut h = [0u8; 32];
        std::io::Read::read_exact(&mut self.0, &mut h).ok()?;
        Some(h)
    }
}

/// Read access to a stored tree (any number of readers, beside the one writer).
#[derive(Debug)]
pub struct TreeReader {
    file: File,
    path: PathBuf,
    stored: u64,
}

impl TreeReader {
    /// Opens `<dir>/tree.hashes` for reading; nodes beyond what the file holds now are refused.
    pub fn open(dir: &Path) -> Result<Self, TreeError> {
        let path = dir.join(TREE_FILE);
        let io = |source| TreeError::Io { path: path.clone(), source };
        let file = File::open(&path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut magic = [0u8; 8];
        file.read_exact_at(&mut magic, 0).map_err(io)?;
        if &magic != MAGIC {
            return Err(TreeError::BadMagic { path });
        }
        let stored = len.saturating_sub(frame::HEADER_LEN) / 32;
        Ok(Self { file, path, stored })
    }

    /// Leaves of the whole tree the file holds.
    pub fn leaves(&self) -> u64 {
        leaves_in(frame::HEADER_LEN + self.stored * 32)
    }

    /// The leaf hash of leaf `index`.
    pub fn leaf(&self, index: u64) -> Result<Hash, TreeError> {
        self.node(0, index)
    }
}

impl Nodes for TreeReader {
    type Error = TreeError;
    fn node(&self, level: u32, index: u64) -> Result<Hash, TreeError> {
        let position = merkle::position(level, index);
        if position >= self.stored {
            return Err(TreeError::Missing { path: self.path.clone(), position, stored: self.stored });
        }
        let mut h = [0u8; 32];
        self.file
            .read_exact_at(&mut h, frame::HEADER_LEN + position * 32)
            .map_err(|source| TreeError::Io { path: self.path.clone(), source })?;
        Ok(h)
    }
}

/// The one writer of the tree file.
#[derive(Debug)]
pub struct TreeWriter {
    file: File,
    path: PathBuf,
    frontier: Frontier,
    buf: Vec<u8>,
}

impl TreeWriter {
    /// Opens (creating it when absent) `<dir>/tree.hashes` and cuts it back to a tree of exactly
    /// `leaves` leaves (recovery decides `leaves`; the file must hold at least that many).
    pub fn open_at(dir: &Path, leaves: u64) -> Result<Self, TreeError> {
        let path = dir.join(TREE_FILE);
        let io = |source| TreeError::Io { path: path.clone(), source };
        if !path.exists() {
            let mut f =
                crate::fsutil::open_private(OpenOptions::new().create_new(true).write(true), &path).map_err(io)?;
            f.write_all(&frame::header(MAGIC, 0)).map_err(io)?;
            f.sync_all().map_err(io)?;
            crate::fsutil::fsync_dir(dir).map_err(io)?;
        }
        let reader = TreeReader::open(dir)?;
        if reader.leaves() < leaves {
            return Err(TreeError::Missing {
                path: path.clone(),
                position: merkle::stored_nodes(leaves),
                stored: reader.stored,
            });
        }
        let peaks = Frontier::peak_coordinates(leaves)
            .into_iter()
            .map(|(l, i)| reader.node(l, i))
            .collect::<Result<Vec<_>, _>>()?;
        let frontier = Frontier::from_peaks(leaves, peaks).ok_or_else(|| TreeError::Missing {
            path: path.clone(),
            position: merkle::stored_nodes(leaves),
            stored: reader.stored,
        })?;
        let file = OpenOptions::new().write(true).open(&path).map_err(io)?;
        let len = file_len(leaves);
        if file.metadata().map_err(io)?.len() != len {
            file.set_len(len).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        Ok(Self { file, path, frontier, buf: Vec::new() })
    }

    /// Creates an empty tree file, replacing any (recovery's rebuild starts from it).
    pub fn create_empty(dir: &Path) -> Result<Self, TreeError> {
        let path = dir.join(TREE_FILE);
        crate::fsutil::write_atomic(&path, &frame::header(MAGIC, 0), crate::fsutil::FILE_MODE)
            .map_err(|source| TreeError::Io { path: path.clone(), source })?;
        Self::open_at(dir, 0)
    }

    /// Stages one leaf (its hash and the subtrees it completes) for the next [`Self::flush`].
    pub fn push(&mut self, leaf: Hash) {
        let buf = &mut self.buf;
        self.frontier.push(leaf, |h| buf.extend_from_slice(h));
    }

    /// Writes what was staged (one `write`, no fsync: see the module invariants).
    pub fn flush(&mut self) -> Result<(), TreeError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let at = file_len(self.frontier.size()) - self.buf.len() as u64;
        let r = self.file.write_all_at(&self.buf, at);
        self.buf.clear();
        r.map_err(|source| TreeError::Io { path: self.path.clone(), source })
    }

    /// Makes what was written durable (before a checkpoint that covers it).
    pub fn sync(&mut self) -> Result<(), TreeError> {
        self.flush()?;
        self.file.sync_data().map_err(|source| TreeError::Io { path: self.path.clone(), source })
    }

    /// Tests only: reopens the file read-only, so that the next [`Self::flush`] of staged leaves
    /// fails with a real I/O error (EBADF), as a failing disk would. `audit::log`'s tests use it
    /// to reach the writer's broken state.
    #[cfg(test)]
    pub(crate) fn fail_writes(&mut self) -> std::io::Result<()> {
        self.file = File::open(&self.path)?;
        Ok(())
    }

    /// Leaves so far (staged included).
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_in_inverts_file_len_and_rounds_down_ragged_files() {
        for n in 0..200u64 {
            assert_eq!(leaves_in(file_len(n)), n);
            if n > 0 {
                assert_eq!(leaves_in(file_len(n) - 1), n - 1, "a ragged last node drops its leaf");
            }
        }
    }

    #[test]
    fn the_file_reopens_at_any_size_and_proofs_read_from_it_verify() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = TreeWriter::open_at(dir.path(), 0).expect("open");
        let leaves: Vec<Hash> = (0..37u64).map(|i| merkle::leaf_hash(&i.to_le_bytes())).collect();
        let mut roots = vec![w.root()];
        for l in &leaves {
            w.push(*l);
            roots.push(w.root());
        }
        w.sync().expect("sync");
        let r = TreeReader::open(dir.path()).expect("reader");
        assert_eq!(r.leaves(), 37);
        for n in 1..=37u64 {
            assert_eq!(merkle::root(&r, n).expect("root"), roots[n as usize]);
            let p = merkle::inclusion_proof(&r, n - 1, 37).expect("proof");
            merkle::verify_inclusion(n - 1, 37, &leaves[n as usize - 1], &p, &roots[37]).expect("verifies");
        }
        // Cut back to 20 leaves and grow again: the same roots.
        let mut w = TreeWriter::open_at(dir.path(), 20).expect("reopen");
        assert_eq!(w.root(), roots[20]);
        for l in &leaves[20..] {
            w.push(*l);
        }
        w.flush().expect("flush");
        assert_eq!(w.root(), roots[37]);
        assert_eq!(std::fs::metadata(dir.path().join(TREE_FILE)).expect("meta").len(), file_len(37));
    }
}
