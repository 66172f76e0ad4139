//! The hash chain (pure): payload layout and hashing.

use sha2::{Digest, Sha256};

/// Bytes before the JSON body in a record payload.
pub const PREFIX_LEN: usize = 32 + 8;

/// The hash before the first record.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// `prev_hash ‖ seq LE ‖ body`.
pub fn payload(prev_hash: &[u8; 32], seq: u64, body: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(PREFIX_LEN + body.len());
    p.extend_from_slice(prev_hash);
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(body);
    p
}

/// Splits a payload into (prev_hash, seq, body); `None` when too short.
pub fn split(payload: &[u8]) -> Option<([u8; 32], u64, &[u8])> {
    if payload.len() < PREFIX_LEN {
        return None;
    }
    let prev: [u8; 32] = payload[..32].try_into().ok()?;
    let seq = u64::from_le_bytes(payload[32..40].try_into().ok()?);
    Some((prev, seq, &payload[PREFIX_LEN..]))
}

/// The record hash of a record in a current segment (magic `AEROAUD2`): its RFC 6962 leaf hash,
/// SHA-256(0x00 ‖ payload), which covers prev_hash, seq and body. One pass over the payload
/// serves both the chain and the Merkle tree.
pub fn hash(payload: &[u8]) -> [u8; 32] {
    super::merkle::leaf_hash(payload)
}

/// The record hash of a record in a segment written before the leaf hash became the record
/// hash (magic `AEROAUD1`): SHA-256(payload). Read, never written.
pub fn hash_v1(payload: &[u8]) -> [u8; 32] {
    Sha256::digest(payload).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_hash_covers_prev_seq_and_body() {
        let p = payload(&[1; 32], 7, b"{}");
        assert_eq!(split(&p), Some(([1; 32], 7, &b"{}"[..])));
        for hash in [hash, hash_v1] {
            let h = hash(&p);
            assert_ne!(h, hash(&payload(&[2; 32], 7, b"{}")));
            assert_ne!(h, hash(&payload(&[1; 32], 8, b"{}")));
            assert_ne!(h, hash(&payload(&[1; 32], 7, b"{ }")));
        }
        assert_eq!(hash(&p), super::super::merkle::leaf_hash(&p), "the record hash is the leaf hash");
        assert_ne!(hash(&p), hash_v1(&p));
        assert_eq!(split(&[0; 39]), None);
    }
}
