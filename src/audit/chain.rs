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

/// The record hash: SHA-256 of the whole payload, i.e. SHA-256(prev_hash ‖ record).
pub fn hash(payload: &[u8]) -> [u8; 32] {
    Sha256::digest(payload).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips_and_hash_covers_prev_seq_and_body() {
        let p = payload(&[1; 32], 7, b"{}");
        assert_eq!(split(&p), Some(([1; 32], 7, &b"{}"[..])));
        let h = hash(&p);
        assert_ne!(h, hash(&payload(&[2; 32], 7, b"{}")));
        assert_ne!(h, hash(&payload(&[1; 32], 8, b"{}")));
        assert_ne!(h, hash(&payload(&[1; 32], 7, b"{ }")));
        assert_eq!(split(&[0; 39]), None);
    }
}
