//! The key-value state machine: the replay of committed WAL entries.
//!
//! Applying is deterministic: the same entries in the same order give the same map.

use std::collections::BTreeMap;

use super::entry::{Entry, Kind, decode_put};

/// Bytes a key may have (at least 1): the limits table's, so the edge and the kernel agree.
pub(crate) const KEY_BYTES_MAX: usize = crate::limits::DATA_KEY_BYTES_MAX;
/// Bytes a value may have.
pub(crate) const VALUE_BYTES_MAX: usize = crate::limits::DATA_VALUE_BYTES_MAX;
/// Key-value pairs, in key order.
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Keys one Scan may return.
pub(crate) const SCAN_LIMIT_MAX: u32 = crate::limits::DATA_SCAN_LIMIT_MAX;

/// The replicated map and the index it reflects.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Kv {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    applied: u64,
}

impl Kv {
    /// A map restored from a snapshot taken at `applied`.
    pub fn from_parts(map: BTreeMap<Vec<u8>, Vec<u8>>, applied: u64) -> Self {
        Self { map, applied }
    }

    /// Applies the next entry; entries must arrive in index order without gaps.
    pub(crate) fn apply(&mut self, e: &Entry) {
        assert_eq!(e.index, self.applied + 1, "entries apply in order");
        match e.kind {
            Kind::Put => {
                if let Some((k, v)) = decode_put(&e.payload) {
                    self.map.insert(k.to_vec(), v.to_vec());
                }
            }
            Kind::Delete => {
                self.map.remove(&e.payload);
            }
            Kind::Fence | Kind::EpochStart => {}
        }
        self.applied = e.index;
    }

    /// The index of the last applied entry.
    pub(crate) fn applied(&self) -> u64 {
        self.applied
    }

    /// A value.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.map.get(key)
    }

    /// Keys in `[start, end)` (no upper bound when `end` is empty), at most `limit`, and whether
    /// more follow.
    pub(crate) fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> (Pairs, bool) {
        let mut out = Vec::new();
        for (k, v) in self.map.range(start.to_vec()..) {
            if !end.is_empty() && k.as_slice() >= end {
                return (out, false);
            }
            if out.len() == limit {
                return (out, true);
            }
            out.push((k.clone(), v.clone()));
        }
        (out, false)
    }

    /// The whole map (for snapshots).
    pub fn map(&self) -> &BTreeMap<Vec<u8>, Vec<u8>> {
        &self.map
    }
}
