//! The kernel ledger `control.log`: append-only, framed, fsync'd.
//!
//! # Invariants
//! - `control_seq` starts at 1 and grows by exactly one per record; it is never reset (asserted
//!   on open and before every append).
//! - A record is acknowledged (its effect applied, an answer given) only after `fdatasync`.
//! - A torn tail (a crash mid-append) is truncated on open with a copy kept; corruption before
//!   the tail refuses to start, naming the file and offset.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::records::{LedgerEvent, Record};
use crate::frame::{self, End, FrameError};

/// Magic of the ledger file (part of its on-disk format, docs/kernel.md; offline readers such as
/// the audit cross-check's tests frame the file with it).
pub const MAGIC: &[u8; 8] = b"AEROLED1";
/// Magic of `claims.log`, the same format holding only `KeyClaimed` records (see
/// `kernel::claims`).
pub const CLAIMS_MAGIC: &[u8; 8] = b"AEROCLM1";
/// Upper bound of one framed record.
pub(crate) const RECORD_BYTES_MAX: u32 = 1 << 20;

/// Why the ledger failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Framing error on open.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Good frames that do not form a valid ledger.
    #[error("{path}: corrupt ledger record at byte offset {offset}: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Offset.
        offset: u64,
        /// What.
        what: String,
    },
}

/// The open ledger.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    file: File,
    control_seq: u64,
    bytes: u64,
    records: u64,
}

impl Ledger {
    /// Creates a new, empty ledger at `path` (fails if it exists), mode [`crate::fsutil::FILE_MODE`].
    pub(crate) fn create(path: &Path) -> Result<Self, LedgerError> {
        Self::create_with(path, MAGIC)
    }

    /// [`Ledger::create`] for a file of this format with another magic.
    pub(crate) fn create_with(path: &Path, magic: &'static [u8; 8]) -> Result<Self, LedgerError> {
        let io = |source| LedgerError::Io { path: path.to_path_buf(), source };
        let mut f = crate::fsutil::open_private(OpenOptions::new().create_new(true).append(true).read(true), path)
            .map_err(io)?;
        f.write_all(&frame::header(magic, 0)).map_err(io)?;
        f.sync_all().map_err(io)?;
        if let Some(dir) = path.parent() {
            crate::fsutil::fsync_dir(dir).map_err(io)?;
        }
        Ok(Self { path: path.to_path_buf(), file: f, control_seq: 0, bytes: frame::HEADER_LEN, records: 0 })
    }

    /// Opens an existing ledger and returns every record, recovering a torn tail.
    pub fn open(path: &Path, quarantine: &Path) -> Result<(Self, Vec<Record>), LedgerError> {
        Self::open_with(path, quarantine, MAGIC)
    }

    /// [`Ledger::open`] for a file of this format with another magic.
    pub fn open_with(
        path: &Path,
        quarantine: &Path,
        magic: &'static [u8; 8],
    ) -> Result<(Self, Vec<Record>), LedgerError> {
        let io = |source| LedgerError::Io { path: path.to_path_buf(), source };
        let mut reader = frame::Reader::open(path, magic, RECORD_BYTES_MAX, true)?;
        let mut records = Vec::new();
        let mut seq = 0u64;
        while let Some((offset, payload)) = reader.next_frame()? {
            let record = decode(path, offset, &payload)?;
            if record.control_seq != seq + 1 {
                return Err(LedgerError::Corrupt {
                    path: path.to_path_buf(),
                    offset,
                    what: format!("control_seq {} follows {seq}", record.control_seq),
                });
            }
            seq = record.control_seq;
            records.push(record);
        }
        if let Some(End::Torn { offset, bytes }) = reader.end().cloned() {
            if offset < frame::HEADER_LEN {
                return Err(LedgerError::Corrupt { path: path.to_path_buf(), offset: 0, what: "header torn".into() });
            }
            let copy = frame::truncate_keeping_copy(path, offset, quarantine).map_err(io)?;
            tracing::warn!(file = %path.display(), offset, bytes, copy = %copy.display(), "truncated a torn ledger tail");
        }
        let bytes = reader.good_len();
        let file = OpenOptions::new().append(true).open(path).map_err(io)?;
        let n = records.len() as u64;
        Ok((Self { path: path.to_path_buf(), file, control_seq: seq, bytes, records: n }, records))
    }

    /// Reads every record without changing the file (a torn tail is left in place and ignored).
    /// For tools and tests that inspect a ledger another process may own.
    pub fn read_all(path: &Path) -> Result<Vec<Record>, LedgerError> {
        let mut reader = frame::Reader::open(path, MAGIC, RECORD_BYTES_MAX, true)?;
        let mut records = Vec::new();
        while let Some((offset, payload)) = reader.next_frame()? {
            let record = decode(path, offset, &payload)?;
            records.push(record);
        }
        Ok(records)
    }

    /// Appends `body` as the next record and fsyncs it; returns the durable record.
    pub(crate) fn append(&mut self, body: LedgerEvent) -> Result<Record, LedgerError> {
        let record = Record { control_seq: self.control_seq + 1, body };
        assert!(record.control_seq > self.control_seq, "control_seq must only grow");
        let payload = serde_json::to_vec(&record).map_err(|e| LedgerError::Corrupt {
            path: self.path.clone(),
            offset: self.bytes,
            what: format!("cannot encode record: {e}"),
        })?;
        let framed = frame::encode(&payload);
        let io = |source| LedgerError::Io { path: self.path.clone(), source };
        if crate::failpoint::armed("ledger.torn_write") {
            let _ = self.file.write_all(&framed[..framed.len() / 2]);
            let _ = self.file.sync_data();
            std::process::abort();
        }
        self.file.write_all(&framed).map_err(io)?;
        crate::failpoint::hit("ledger.before_fsync");
        self.file.sync_data().map_err(io)?;
        crate::failpoint::hit("ledger.after_fsync");
        self.control_seq = record.control_seq;
        self.bytes += framed.len() as u64;
        self.records += 1;
        Ok(record)
    }

    /// The sequence of the last durable record (0 when empty).
    pub fn control_seq(&self) -> u64 {
        self.control_seq
    }

    /// Bytes of the file.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Number of records.
    pub(crate) fn records(&self) -> u64 {
        self.records
    }
}

/// Decodes the record framed at `offset` of `path`; a record that does not decode is corruption
/// naming the file and offset.
fn decode(path: &Path, offset: u64, payload: &[u8]) -> Result<Record, LedgerError> {
    serde_json::from_slice(payload).map_err(|e| LedgerError::Corrupt {
        path: path.to_path_buf(),
        offset,
        what: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_seq_is_gap_free_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("control.log");
        let mut l = Ledger::create(&p).expect("create");
        let g = l
            .append(LedgerEvent::Genesis { cluster_id: "c".into(), node_id: "n1".into(), primary: true })
            .expect("append");
        assert_eq!(g.control_seq, 1);
        let r =
            l.append(LedgerEvent::EpochGranted { epoch: 2, candidate: "n2".into(), forced: false }).expect("append");
        assert_eq!(r.control_seq, 2);
        drop(l);
        let (l, records) = Ledger::open(&p, &dir.path().join("q")).expect("open");
        assert_eq!(l.control_seq(), 2);
        assert_eq!(records.iter().map(|r| r.control_seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(records[1].body, LedgerEvent::EpochGranted { epoch: 2, candidate: "n2".into(), forced: false });
    }
}
