//! The diagnostics action: read-only scans of this node's WAL and ledger.
//!
//! Reads every byte that was durable when the scan started (the cost declared in the
//! explanation beforehand), checks every CRC, the index sequence and the hash chain of the WAL
//! (its replication continuity: what a follower checks entry by entry) and the ledger's sequence,
//! and reports what it read and the first problem. It writes nothing.

use super::entry::{Header, hash_of_bytes};
use super::ledger;
use super::node::Node;
use super::records::ActionResult;
use super::wal;
use crate::frame::Reader;

/// What the scan checks of a ledger record beyond its CRC: that it carries the next
/// `control_seq`. (The record's meaning was checked when it was folded into the authority at
/// startup or append, and a matching CRC32C means the bytes are the ones the ledger's serializer
/// wrote; the scan checks checksums and continuity, as DESIGN §3 says.)
#[derive(serde::Deserialize)]
struct SequenceOnly {
    control_seq: u64,
}

/// The `control_seq` of a ledger record. The ledger writes `{"control_seq":N,...}` (the field
/// order of `Record`), so the number is read from that prefix without parsing the body; a record
/// in any other shape is decoded as JSON instead.
fn control_seq_of(payload: &[u8]) -> Result<u64, String> {
    const PREFIX: &[u8] = b"{\"control_seq\":";
    if let Some(rest) = payload.strip_prefix(PREFIX) {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if (1..=20).contains(&digits) && matches!(rest.get(digits), Some(b',') | Some(b'}')) {
            let text = std::str::from_utf8(&rest[..digits]).map_err(|e| e.to_string())?;
            return text.parse::<u64>().map_err(|e| e.to_string());
        }
    }
    serde_json::from_slice::<SequenceOnly>(payload).map(|r| r.control_seq).map_err(|e| e.to_string())
}

/// Scans; `declared` is the cost announced before the run.
pub(crate) fn scan(node: &Node, declared: u64) -> ActionResult {
    let mut problem: Option<String> = None;
    let mut wal_bytes = 0u64;
    let mut wal_records = 0u64;
    // No compaction removes a segment while it is read (this runs on a blocking thread).
    let _gate = node.snapshot_gate.blocking_lock();
    let (segments, base) = node.wal.segment_files_and_base();
    let last = segments.len().saturating_sub(1);
    // A compacted log starts after the snapshot's last entry (its base), not at index 1.
    let (mut prev_hash, mut expected, mut prev_epoch) = (base.hash, base.index + 1, base.epoch);
    'segments: for (i, (path, bytes)) in segments.iter().enumerate() {
        let mut r = match Reader::open_limited(path, wal::MAGIC, wal::ENTRY_BYTES_MAX, i == last, *bytes) {
            Ok(r) => r,
            Err(e) => {
                problem = Some(e.to_string());
                break;
            }
        };
        loop {
            match r.next_frame() {
                Ok(Some((offset, payload))) => {
                    wal_records += 1;
                    // The fixed fields only, and the hash of the frame's bytes (an entry's
                    // canonical bytes hash to its hash): no copy of the entry.
                    let what = match Header::read(&payload) {
                        Err(e) => Some(e.to_string()),
                        Ok(e) if e.index != expected => {
                            Some(format!("index {} where {expected} was expected", e.index))
                        }
                        Ok(e) if e.prev_hash != prev_hash => Some(format!("entry {} breaks the hash chain", e.index)),
                        Ok(e) if e.epoch < prev_epoch => Some(format!("epoch {} after {prev_epoch}", e.epoch)),
                        Ok(e) => {
                            prev_hash = hash_of_bytes(&payload);
                            prev_epoch = e.epoch;
                            expected += 1;
                            None
                        }
                    };
                    if let Some(what) = what {
                        problem = Some(format!("{}: byte offset {offset}: {what}", path.display()));
                        break 'segments;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    problem = Some(e.to_string());
                    break 'segments;
                }
            }
        }
        wal_bytes += r.good_len();
        if r.good_len() < *bytes && problem.is_none() {
            problem = Some(format!("{}: {} bytes after the last good record", path.display(), bytes - r.good_len()));
        }
    }
    let wal_ok = problem.is_none();

    let ledger_limit = node.lock().ledger.bytes();
    let mut ledger_bytes = 0u64;
    let mut ledger_records = 0u64;
    let mut ledger_problem: Option<String> = None;
    let path = node.dir.ledger();
    match Reader::open_limited(&path, ledger::MAGIC, ledger::RECORD_BYTES_MAX, true, ledger_limit) {
        Err(e) => ledger_problem = Some(e.to_string()),
        Ok(mut r) => {
            let mut seq = 0u64;
            loop {
                match r.next_frame() {
                    Ok(Some((offset, payload))) => {
                        ledger_records += 1;
                        match control_seq_of(&payload) {
                            Ok(next) if next == seq + 1 => seq = next,
                            Ok(next) => {
                                ledger_problem = Some(format!(
                                    "{}: byte offset {offset}: control_seq {next} after {seq}",
                                    path.display()
                                ));
                                break;
                            }
                            Err(e) => {
                                ledger_problem = Some(format!("{}: byte offset {offset}: {e}", path.display()));
                                break;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        ledger_problem = Some(e.to_string());
                        break;
                    }
                }
            }
            ledger_bytes = r.good_len();
        }
    }
    let ledger_ok = ledger_problem.is_none();
    ActionResult::Diagnostics {
        wal_bytes_read: wal_bytes,
        ledger_bytes_read: ledger_bytes,
        wal_records_checked: wal_records,
        ledger_records_checked: ledger_records,
        wal_ok,
        ledger_ok,
        first_problem: problem.or(ledger_problem).unwrap_or_default(),
        declared_cost_bytes: declared,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::records::{LedgerEvent, Record};

    #[test]
    fn control_seq_is_read_from_the_prefix_the_ledger_writes_and_anything_else_is_decoded() {
        let rec = Record {
            control_seq: 42,
            body: LedgerEvent::EpochGranted { epoch: 3, candidate: "n2".into(), forced: false },
        };
        let bytes = serde_json::to_vec(&rec).expect("json");
        assert!(bytes.starts_with(b"{\"control_seq\":42,"), "the ledger's field order is what the scan reads");
        assert_eq!(control_seq_of(&bytes), Ok(42));
        assert_eq!(control_seq_of(br#"{"body":{},"control_seq":7}"#), Ok(7));
        assert_eq!(control_seq_of(br#"{"control_seq":18446744073709551615}"#), Ok(u64::MAX));
        assert!(control_seq_of(br#"{"control_seq":99999999999999999999}"#).is_err());
        assert!(control_seq_of(b"not json").is_err());
    }
}
