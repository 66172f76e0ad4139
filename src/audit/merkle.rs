//! The RFC 6962 / RFC 9162 Merkle tree over the audit records (pure): hashing, roots, inclusion
//! and consistency proofs, and their verification.
//!
//! - leaf hash `= SHA-256(0x00 ‖ leaf bytes)`, node hash `= SHA-256(0x01 ‖ left ‖ right)`; the
//!   root of the empty tree is `SHA-256("")`.
//! - Leaf `i` (0-based) is the record with `seq = i + 1`; its bytes are the record's whole payload
//!   (`prev_hash ‖ seq ‖ body`, docs/audit.md), so a tree of size `n` covers seqs `1..=n`.
//! - Proof generation reads only *complete* subtrees (`level`, `index`) from a [`Nodes`] source, as
//!   the durable tree file stores them; the range hash of an incomplete right edge is recomputed
//!   from at most `log2 n` stored subtrees.
//! - Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 and shares no state with generation.

use sha2::{Digest, Sha256};

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 ‖ bytes)`.
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(bytes);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// A source of complete-subtree hashes: `node(level, index)` is the hash of leaves
/// `index·2^level .. (index+1)·2^level`.
pub trait Nodes {
    /// The error of a read.
    type Error;
    /// The stored hash of one complete subtree.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// `MTH(D[begin..end])`, from stored complete subtrees (`begin < end`; `begin` is aligned to the
/// largest power of two not above `end - begin`, as every range of the RFC algorithms is).
pub fn range_hash<N: Nodes>(nodes: &N, begin: u64, end: u64) -> Result<Hash, N::Error> {
    let n = end - begin;
    if n.is_power_of_two() && begin.is_multiple_of(n) {
        return nodes.node(n.trailing_zeros(), begin >> n.trailing_zeros());
    }
    let k = split_point(n);
    Ok(node_hash(&range_hash(nodes, begin, begin + k)?, &range_hash(nodes, begin + k, end)?))
}

/// The root of the tree of the first `size` leaves.
pub fn root<N: Nodes>(nodes: &N, size: u64) -> Result<Hash, N::Error> {
    if size == 0 { Ok(empty_root()) } else { range_hash(nodes, 0, size) }
}

/// The audit path of leaf `index` in the tree of `size` leaves (RFC 6962 §2.1.1, `PATH`),
/// leaf-side first. `index < size`.
pub fn inclusion_proof<N: Nodes>(nodes: &N, index: u64, size: u64) -> Result<Vec<Hash>, N::Error> {
    let mut out = Vec::new();
    path(nodes, index, 0, size, &mut out)?;
    Ok(out)
}

fn path<N: Nodes>(nodes: &N, m: u64, begin: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), N::Error> {
    let n = end - begin;
    if n <= 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m - begin < k {
        path(nodes, m, begin, begin + k, out)?;
        out.push(range_hash(nodes, begin + k, end)?);
    } else {
        path(nodes, m, begin + k, end, out)?;
        out.push(range_hash(nodes, begin, begin + k)?);
    }
    Ok(())
}

/// The consistency proof from the tree of `first` leaves to the tree of `second` leaves
/// (RFC 6962 §2.1.2, `PROOF`). Empty when `first == 0` or `first == second`.
pub fn consistency_proof<N: Nodes>(nodes: &N, first: u64, second: u64) -> Result<Vec<Hash>, N::Error> {
    let mut out = Vec::new();
    if first > 0 && first < second {
        subproof(nodes, first, 0, second, true, &mut out)?;
    }
    Ok(out)
}

fn subproof<N: Nodes>(
    nodes: &N,
    m: u64,
    begin: u64,
    end: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), N::Error> {
    let n = end - begin;
    if m == n {
        if !whole {
            out.push(range_hash(nodes, begin, end)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(nodes, m, begin, begin + k, whole, out)?;
        out.push(range_hash(nodes, begin + k, end)?);
    } else {
        subproof(nodes, m - k, begin + k, end, false, out)?;
        out.push(range_hash(nodes, begin, begin + k)?);
    }
    Ok(())
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not inside a tree of {size} leaves")]
    OutOfRange {
        /// Leaf index.
        index: u64,
        /// Tree size.
        size: u64,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("the proof has the wrong number of hashes ({0}) for these sizes")]
    WrongLength(usize),
    /// The proof does not lead to the root.
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    /// The first size is larger than the second.
    #[error("consistency from size {first} to size {second}: the first size is larger")]
    Shrinks {
        /// First size.
        first: u64,
        /// Second size.
        second: u64,
    },
}

/// Verifies that `leaf` is leaf `index` of the tree of `size` leaves whose root is `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange { index, size });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength(proof.len()));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength(proof.len()));
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `first` leaves with root `first_root` is a prefix of the tree of
/// `second` leaves with root `second_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::Shrinks { first, second });
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength(proof.len()));
        }
        return if first_root == second_root { Ok(()) } else { Err(ProofError::RootMismatch) };
    }
    if first == 0 {
        return if proof.is_empty() { Ok(()) } else { Err(ProofError::WrongLength(proof.len())) };
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((seed, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength(proof.len()));
    };
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongLength(proof.len()));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength(proof.len()));
    }
    if &fr != first_root || &sr != second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Nodes stored for a tree of `leaves` leaves in post-order (every leaf, then every parent as it
/// completes): `2·leaves − popcount(leaves)`.
pub fn stored_nodes(leaves: u64) -> u64 {
    2 * leaves - u64::from(leaves.count_ones())
}

/// The post-order position of complete subtree (`level`, `index`) in the stored sequence.
pub fn position(level: u32, index: u64) -> u64 {
    let last_leaf = ((index + 1) << level) - 1;
    stored_nodes(last_leaf) + u64::from(level)
}

/// The right edge of a growing tree: one hash per set bit of its size (largest subtree first).
/// Appending a leaf yields the nodes to store, in post-order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    peaks: Vec<(u32, Hash)>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree of `size` leaves whose complete subtrees, largest first, are `peaks` (one per set
    /// bit of `size`, as [`Frontier::peak_coordinates`] lists them).
    pub fn from_peaks(size: u64, peaks: Vec<Hash>) -> Option<Self> {
        let coords = Self::peak_coordinates(size);
        if coords.len() != peaks.len() {
            return None;
        }
        Some(Self { size, peaks: coords.iter().map(|(l, _)| *l).zip(peaks).collect() })
    }

    /// The (`level`, `index`) of each complete subtree on the right edge of a tree of `size`
    /// leaves, largest first.
    pub fn peak_coordinates(size: u64) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        let mut covered = 0u64;
        for level in (0..64u32).rev() {
            if size & (1u64 << level) != 0 {
                out.push((level, covered >> level));
                covered += 1u64 << level;
            }
        }
        out
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; calls `store` with every node that becomes complete, leaf first, in
    /// post-order (exactly the stored sequence of [`position`]).
    pub fn push(&mut self, leaf: Hash, mut store: impl FnMut(&Hash)) {
        store(&leaf);
        let mut node = (0u32, leaf);
        while let Some(&(level, left)) = self.peaks.last() {
            if level != node.0 {
                break;
            }
            self.peaks.pop();
            node = (level + 1, node_hash(&left, &node.1));
            store(&node.1);
        }
        self.peaks.push(node);
        self.size += 1;
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut it = self.peaks.iter().rev();
        let Some(&(_, mut r)) = it.next() else { return empty_root() };
        for (_, p) in it {
            r = node_hash(p, &r);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored nodes in memory, filled by a frontier: the reference for proof generation.
    struct Mem(Vec<Hash>);
    impl Nodes for Mem {
        type Error = ();
        fn node(&self, level: u32, index: u64) -> Result<Hash, ()> {
            self.0.get(position(level, index) as usize).copied().ok_or(())
        }
    }

    /// The RFC 6962 definition, straight: MTH over a list of leaf hashes.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn build(n: u64) -> (Mem, Vec<Hash>, Vec<Hash>) {
        let mut f = Frontier::new();
        let mut stored = Vec::new();
        let mut leaves = Vec::new();
        let mut roots = vec![empty_root()];
        for i in 0..n {
            let l = leaf_hash(&i.to_le_bytes());
            leaves.push(l);
            f.push(l, |h| stored.push(*h));
            assert_eq!(stored.len() as u64, stored_nodes(i + 1));
            roots.push(f.root());
        }
        (Mem(stored), leaves, roots)
    }

    #[test]
    fn frontier_and_stored_nodes_give_the_rfc_root_at_every_size() {
        let (mem, leaves, roots) = build(70);
        for n in 0..=70u64 {
            let want = mth(&leaves[..n as usize]);
            assert_eq!(roots[n as usize], want, "frontier root at {n}");
            assert_eq!(root(&mem, n), Ok(want), "stored root at {n}");
            let coords = Frontier::peak_coordinates(n);
            let peaks = coords.iter().map(|(l, i)| mem.node(*l, *i).expect("peak")).collect();
            assert_eq!(Frontier::from_peaks(n, peaks).expect("peaks").root(), want);
        }
    }

    #[test]
    fn every_inclusion_and_consistency_proof_verifies_and_a_wrong_one_does_not() {
        let (mem, leaves, roots) = build(40);
        for n in 1..=40u64 {
            for i in 0..n {
                let p = inclusion_proof(&mem, i, n).expect("proof");
                assert_eq!(verify_inclusion(i, n, &leaves[i as usize], &p, &roots[n as usize]), Ok(()), "{i} in {n}");
                let other = leaf_hash(b"not a leaf");
                assert!(verify_inclusion(i, n, &other, &p, &roots[n as usize]).is_err());
                if n > 1 {
                    assert!(verify_inclusion((i + 1) % n, n, &leaves[i as usize], &p, &roots[n as usize]).is_err());
                }
            }
            for m in 0..=n {
                let p = consistency_proof(&mem, m, n).expect("proof");
                assert_eq!(verify_consistency(m, n, &roots[m as usize], &roots[n as usize], &p), Ok(()), "{m}->{n}");
                if m > 0 && m < n {
                    let forged = leaf_hash(b"fork");
                    assert!(verify_consistency(m, n, &forged, &roots[n as usize], &p).is_err());
                    assert!(verify_consistency(m, n, &roots[m as usize], &forged, &p).is_err());
                }
            }
        }
    }

    #[test]
    fn known_answer_of_rfc_6962_hashing() {
        // SHA-256("") and the leaf hash of the empty string, as in the RFC 6962 test vectors of
        // certificate-transparency-go (merkle/testonly).
        assert_eq!(hex::encode(empty_root()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex::encode(leaf_hash(b"")), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    }
}
