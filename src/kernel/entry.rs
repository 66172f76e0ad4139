//! WAL entries: their encoding, their hash chain and the payloads of each kind.
//!
//! An entry's bytes are `index u64 LE ‖ epoch u64 LE ‖ prev_hash [32] ‖ kind u8 ‖ payload`. Its
//! hash is SHA-256 of those bytes; the next entry's `prev_hash` is that hash (32 zero bytes before
//! index 1), so two logs that agree on the hash at an index agree on everything before it.

use sha2::{Digest, Sha256};

use crate::proto::kernel as pb;

/// A 32-byte SHA-256 value.
pub type Hash = [u8; 32];

/// The hash before the first entry.
pub(crate) const ZERO_HASH: Hash = [0u8; 32];

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// A key-value write.
    Put = 1,
    /// A key deletion.
    Delete = 2,
    /// The primary of this entry's epoch stepped down.
    Fence = 3,
    /// The first entry of a new epoch; payload is the primary's node id.
    EpochStart = 4,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Kind::Put,
            2 => Kind::Delete,
            3 => Kind::Fence,
            4 => Kind::EpochStart,
            _ => return None,
        })
    }

    /// The proto enum.
    pub fn to_proto(self) -> pb::EntryKind {
        match self {
            Kind::Put => pb::EntryKind::Put,
            Kind::Delete => pb::EntryKind::Delete,
            Kind::Fence => pb::EntryKind::Fence,
            Kind::EpochStart => pb::EntryKind::EpochStart,
        }
    }

    /// From the proto enum.
    pub fn from_proto(k: i32) -> Option<Self> {
        match pb::EntryKind::try_from(k).ok()? {
            pb::EntryKind::Put => Some(Kind::Put),
            pb::EntryKind::Delete => Some(Kind::Delete),
            pb::EntryKind::Fence => Some(Kind::Fence),
            pb::EntryKind::EpochStart => Some(Kind::EpochStart),
            pb::EntryKind::Unspecified => None,
        }
    }
}

/// One WAL entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log, from 1, without gaps.
    pub index: u64,
    /// The epoch of the primary that wrote it.
    pub epoch: u64,
    /// Hash of the previous entry.
    pub prev_hash: Hash,
    /// What it records.
    pub kind: Kind,
    /// Kind-specific bytes.
    pub payload: Vec<u8>,
}

/// Fixed bytes before the payload.
pub(crate) const ENTRY_HEADER_LEN: usize = 8 + 8 + 32 + 1;

/// The fixed fields of an entry's canonical bytes, read without copying the payload. Bytes that
/// [`Header::read`] accepts are exactly those [`Entry::decode`] accepts, and they are the entry's
/// canonical bytes (`decode(b)?.encode() == b`), so their SHA-256 is the entry's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Position in the log.
    pub(crate) index: u64,
    /// The epoch of the primary that wrote it.
    pub(crate) epoch: u64,
    /// Hash of the previous entry.
    pub(crate) prev_hash: Hash,
    /// What it records.
    pub(crate) kind: Kind,
}

impl Header {
    /// Reads and checks an entry's canonical bytes (every check [`Entry::decode`] makes).
    pub(crate) fn read(bytes: &[u8]) -> Result<Self, EntryError> {
        if bytes.len() < ENTRY_HEADER_LEN {
            return Err(EntryError::Short(bytes.len()));
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut prev_hash = [0u8; 32];
        prev_hash.copy_from_slice(&bytes[16..48]);
        let kind = Kind::from_u8(bytes[48]).ok_or(EntryError::Kind(bytes[48]))?;
        if kind == Kind::Put {
            decode_put(&bytes[ENTRY_HEADER_LEN..]).ok_or(EntryError::Payload(kind))?;
        }
        Ok(Header { index: u64_at(0), epoch: u64_at(8), prev_hash, kind })
    }
}

/// SHA-256 of an entry's canonical bytes: its hash ([`Entry::hash`]) without decoding it.
pub(crate) fn hash_of_bytes(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// Why bytes are not an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Too short to hold the fixed fields.
    #[error("entry of {0} bytes is shorter than its {ENTRY_HEADER_LEN}-byte header")]
    Short(usize),
    /// Unknown kind byte.
    #[error("unknown entry kind {0}")]
    Kind(u8),
    /// A payload that does not parse for its kind.
    #[error("malformed {0:?} payload")]
    Payload(Kind),
}

impl Entry {
    /// The canonical bytes (what is framed on disk and hashed).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENTRY_HEADER_LEN + self.payload.len());
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.prev_hash);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.payload);
        out
    }

    /// Parses canonical bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        let h = Header::read(bytes)?;
        Ok(Entry {
            index: h.index,
            epoch: h.epoch,
            prev_hash: h.prev_hash,
            kind: h.kind,
            payload: bytes[ENTRY_HEADER_LEN..].to_vec(),
        })
    }

    /// SHA-256 of the canonical bytes.
    pub fn hash(&self) -> Hash {
        hash_of_bytes(&self.encode())
    }

    /// The proto form shipped between nodes.
    pub fn to_proto(&self) -> pb::WalEntry {
        pb::WalEntry {
            index: self.index,
            epoch: self.epoch,
            prev_hash: self.prev_hash.to_vec(),
            kind: self.kind.to_proto() as i32,
            payload: self.payload.clone(),
        }
    }

    /// From the proto form; `None` when a field is malformed.
    pub fn from_proto(e: &pb::WalEntry) -> Option<Self> {
        let prev_hash: Hash = e.prev_hash.as_slice().try_into().ok()?;
        let kind = Kind::from_proto(e.kind)?;
        if kind == Kind::Put {
            decode_put(&e.payload)?;
        }
        Some(Entry { index: e.index, epoch: e.epoch, prev_hash, kind, payload: e.payload.clone() })
    }
}

/// Put payload: `key_len u32 LE ‖ key ‖ value`.
pub fn encode_put(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.len() + value.len());
    out.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

/// Splits a Put payload into key and value.
pub fn decode_put(payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    let key = payload.get(4..4 + len)?;
    Some((key, &payload[4 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trips_and_hash_covers_every_field() {
        let e = Entry { index: 7, epoch: 2, prev_hash: [9; 32], kind: Kind::Put, payload: encode_put(b"k", b"v") };
        assert_eq!(Entry::decode(&e.encode()), Ok(e.clone()));
        assert_eq!(Entry::from_proto(&e.to_proto()), Some(e.clone()));
        let h = e.hash();
        for changed in [
            Entry { index: 8, ..e.clone() },
            Entry { epoch: 3, ..e.clone() },
            Entry { prev_hash: [8; 32], ..e.clone() },
            Entry { kind: Kind::Delete, payload: b"k".to_vec(), ..e.clone() },
            Entry { payload: encode_put(b"k", b"w"), ..e.clone() },
        ] {
            assert_ne!(changed.hash(), h);
        }
        assert_eq!(decode_put(&encode_put(b"key", b"value")), Some((&b"key"[..], &b"value"[..])));
        assert_eq!(decode_put(&[5, 0, 0, 0, 1]), None);
        assert_eq!(Entry::decode(&[0; 10]), Err(EntryError::Short(10)));
    }

    #[test]
    fn the_header_accepts_exactly_what_decode_accepts_and_the_bytes_hash_to_the_entry_hash() {
        let put = Entry { index: 7, epoch: 2, prev_hash: [9; 32], kind: Kind::Put, payload: encode_put(b"k", b"v") };
        let fence = Entry { index: 8, epoch: 3, prev_hash: [1; 32], kind: Kind::Fence, payload: vec![] };
        let mut cases: Vec<Vec<u8>> = vec![put.encode(), fence.encode(), vec![0; 10], vec![0; ENTRY_HEADER_LEN]];
        let mut bad_kind = put.encode();
        bad_kind[48] = 0xEE;
        let mut bad_put = put.encode();
        bad_put.truncate(ENTRY_HEADER_LEN + 2);
        let mut long_key = put.encode();
        long_key[ENTRY_HEADER_LEN] = 200;
        cases.extend([bad_kind, bad_put, long_key]);
        for bytes in cases {
            match (Header::read(&bytes), Entry::decode(&bytes)) {
                (Ok(h), Ok(e)) => {
                    assert_eq!((h.index, h.epoch, h.prev_hash, h.kind), (e.index, e.epoch, e.prev_hash, e.kind));
                    assert_eq!(e.encode(), bytes, "accepted bytes are canonical");
                    assert_eq!(hash_of_bytes(&bytes), e.hash());
                }
                (Err(a), Err(b)) => assert_eq!(a, b),
                (h, e) => panic!("header {h:?} but decode {e:?} for {bytes:?}"),
            }
        }
    }
}
