//! Record framing shared by the WAL, the kernel ledger and the audit log.
//!
//! A framed file is a 16-byte header (8-byte magic, u64 little-endian `base`) followed by frames:
//!
//! ```text
//! u32 LE  len        payload length, 1..=max_len
//! u32 LE  crc        CRC32C over (len as 4 LE bytes ‖ payload)
//! [len]   payload
//! ```
//!
//! Recovery is a decision table ([`classify`]): a frame that is whole and whose CRC matches is
//! accepted; a damaged frame is a torn write (truncated, a copy kept) only when it is the last
//! thing in the last file, with no whole frame whose CRC matches anywhere after it; anything else
//! is corruption and the caller fails closed, naming the file and the byte offset. (A bit flip in
//! a length field mid-file makes that frame seem to run past the end of the file, like a torn
//! write; the good frames after it are what tell the two apart, so acknowledged records behind a
//! damaged length are never truncated away.) The reader streams: memory stays flat however large
//! the file, except that the bytes after a damaged frame of the last file are read into memory
//! once to look for a good frame among them.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Bytes of the file header.
pub const HEADER_LEN: u64 = 16;
/// Bytes of a frame header.
pub const FRAME_HEADER_LEN: u64 = 8;

/// Encodes one frame around `payload`.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc(len, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The CRC32C of a frame.
pub fn crc(len: u32, payload: &[u8]) -> u32 {
    let c = crc32c::crc32c(&len.to_le_bytes());
    crc32c::crc32c_append(c, payload)
}

/// The 16-byte file header.
pub fn header(magic: &[u8; 8], base: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(magic);
    h[8..].copy_from_slice(&base.to_le_bytes());
    h
}

/// What is known about a frame at the position recovery stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameFacts {
    /// The 8-byte frame header is within the file.
    pub header_complete: bool,
    /// The length field is within 1..=max_len.
    pub len_ok: bool,
    /// The whole frame, as long as its length field says, is within the file.
    pub complete: bool,
    /// The CRC matches.
    pub crc_ok: bool,
    /// The frame ends exactly at end of file (nothing follows it).
    pub ends_at_eof: bool,
    /// Every byte from the frame's start to end of file is zero.
    pub rest_all_zero: bool,
    /// This is the last file of the log (only its tail may be torn).
    pub last_file: bool,
    /// A whole frame whose CRC matches starts somewhere after this frame's first byte: records
    /// were written after the damage, so the damage is not a torn final append.
    pub good_frame_follows: bool,
}

/// What recovery does with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A good frame.
    Accept,
    /// A torn write at the tail: keep a copy, truncate, carry on.
    TruncateTail,
    /// Corruption before the tail: refuse to start.
    FailClosed,
}

/// The recovery decision table. See the module docs.
pub fn classify(f: FrameFacts) -> Verdict {
    let good = f.header_complete && f.len_ok && f.complete && f.crc_ok;
    if good {
        return Verdict::Accept;
    }
    if !f.last_file || f.good_frame_follows {
        return Verdict::FailClosed;
    }
    if !f.header_complete || f.rest_all_zero || !f.complete {
        // The append that made this frame never finished: it extends past the end of the file
        // (whatever its length field says), or the tail is zero-filled.
        return Verdict::TruncateTail;
    }
    if !f.len_ok {
        // A length this log never writes, with bytes after it inside the file.
        return Verdict::FailClosed;
    }
    if f.ends_at_eof {
        // The last frame, whole in length but with a bad CRC: its write did not complete.
        return Verdict::TruncateTail;
    }
    Verdict::FailClosed
}

/// Why a framed file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file header is wrong.
    #[error("{path}: bad header: {what}")]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Corruption before the tail.
    #[error("{path}: corrupt record at byte offset {offset}: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the bad frame.
        offset: u64,
        /// What is wrong.
        what: String,
    },
}

/// How a scan of one file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every byte belonged to a good frame.
    Clean,
    /// A torn tail starts at this offset (the caller truncates it, keeping a copy).
    Torn {
        /// Offset of the first torn byte.
        offset: u64,
        /// Bytes from `offset` to end of file.
        bytes: u64,
    },
}

/// A streaming reader of the frames of one file.
pub struct Reader {
    path: PathBuf,
    file: BufReader<File>,
    file_len: u64,
    offset: u64,
    max_len: u32,
    last_file: bool,
    /// The `base` value of the header.
    pub base: u64,
    end: Option<End>,
}

impl Reader {
    /// Opens `path`, checks the header's magic, positions at the first frame. An empty or
    /// header-torn last file reads as zero frames ending in a torn tail at offset 0.
    pub fn open(path: &Path, magic: &[u8; 8], max_len: u32, last_file: bool) -> Result<Self, FrameError> {
        Self::open_limited(path, magic, max_len, last_file, u64::MAX)
    }

    /// Like [`Reader::open`], reading at most the first `limit` bytes (a file being appended to
    /// is read up to a length known to be durable).
    pub fn open_limited(
        path: &Path,
        magic: &[u8; 8],
        max_len: u32,
        last_file: bool,
        limit: u64,
    ) -> Result<Self, FrameError> {
        let io_err = |source| FrameError::Io { path: path.to_path_buf(), source };
        let mut file = File::open(path).map_err(io_err)?;
        let file_len = file.metadata().map_err(io_err)?.len().min(limit);
        let mut reader = Self {
            path: path.to_path_buf(),
            file: BufReader::with_capacity(1 << 20, file.try_clone().map_err(io_err)?),
            file_len,
            offset: HEADER_LEN,
            max_len,
            last_file,
            base: 0,
            end: None,
        };
        if file_len < HEADER_LEN {
            if last_file {
                reader.end = Some(End::Torn { offset: 0, bytes: file_len });
                return Ok(reader);
            }
            return Err(FrameError::BadHeader { path: path.to_path_buf(), what: format!("file is {file_len} bytes") });
        }
        let mut h = [0u8; 16];
        file.read_exact(&mut h).map_err(io_err)?;
        if &h[..8] != magic {
            return Err(FrameError::BadHeader {
                path: path.to_path_buf(),
                what: format!(
                    "magic {:?} is not {:?}",
                    String::from_utf8_lossy(&h[..8]),
                    String::from_utf8_lossy(magic)
                ),
            });
        }
        reader.base = u64::from_le_bytes(h[8..].try_into().unwrap_or([0; 8]));
        reader.file.seek(SeekFrom::Start(HEADER_LEN)).map_err(io_err)?;
        Ok(reader)
    }

    /// Continues reading at `offset` (a frame boundary known from elsewhere, e.g. a checkpoint's
    /// position hint); the frame there is checked like any other.
    pub fn seek_to(&mut self, offset: u64) -> Result<(), FrameError> {
        if offset < HEADER_LEN || offset > self.file_len || self.end.is_some() {
            return Err(FrameError::Corrupt {
                path: self.path.clone(),
                offset,
                what: format!("offset {offset} is not inside the file's frames"),
            });
        }
        self.file.seek(SeekFrom::Start(offset)).map_err(|source| FrameError::Io { path: self.path.clone(), source })?;
        self.offset = offset;
        Ok(())
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next good frame as (offset, payload); `None` at the end (see [`Reader::end`]).
    pub fn next_frame(&mut self) -> Result<Option<(u64, Vec<u8>)>, FrameError> {
        if self.end.is_some() {
            return Ok(None);
        }
        let io_err = |source| FrameError::Io { path: self.path.clone(), source };
        let at = self.offset;
        let remaining = self.file_len - at;
        if remaining == 0 {
            self.end = Some(End::Clean);
            return Ok(None);
        }
        let mut facts = FrameFacts {
            header_complete: remaining >= FRAME_HEADER_LEN,
            len_ok: false,
            complete: false,
            crc_ok: false,
            ends_at_eof: false,
            rest_all_zero: false,
            last_file: self.last_file,
            good_frame_follows: false,
        };
        let mut payload = Vec::new();
        // The frame's length field, when its header is complete (for the refusal's message).
        let mut len_field = None;
        if facts.header_complete {
            let mut h = [0u8; 8];
            self.file.read_exact(&mut h).map_err(io_err)?;
            let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            let want = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            let end = at + FRAME_HEADER_LEN + u64::from(len);
            facts.len_ok = len >= 1 && len <= self.max_len;
            facts.complete = end <= self.file_len;
            facts.ends_at_eof = end >= self.file_len;
            len_field = Some(len);
            if facts.len_ok && facts.complete {
                payload.resize(len as usize, 0);
                self.file.read_exact(&mut payload).map_err(io_err)?;
                facts.crc_ok = crc(len, &payload) == want;
            }
        }
        if classify(facts) == Verdict::Accept {
            self.offset = at + FRAME_HEADER_LEN + payload.len() as u64;
            return Ok(Some((at, payload)));
        }
        // Only a frame that is not accepted is described (every good frame of every log passes
        // here; building the message for it would cost an allocation per record).
        let mut what = match len_field {
            None => String::from("frame header incomplete"),
            Some(len) if !facts.complete => {
                format!("frame of {len} bytes extends past end of file ({} bytes)", self.file_len)
            }
            Some(len) if !facts.len_ok => format!("length {len} outside 1..={}", self.max_len),
            Some(_) => String::from("CRC32C mismatch"),
        };
        if self.last_file {
            // Only the last file can have a torn tail; read the rest of it once to tell.
            let rest = self.read_rest(at)?;
            facts.rest_all_zero = rest.iter().all(|b| *b == 0);
            match find_good_frame(&rest, 1, self.max_len) {
                Search::Found(o) => {
                    facts.good_frame_follows = true;
                    what = format!(
                        "{what}, and a whole frame with a matching CRC follows at byte offset {}: records were \
                         written after this damage, so it is corruption, not a torn write",
                        at + o as u64
                    );
                }
                Search::None => {}
                Search::BudgetExhausted => {
                    facts.good_frame_follows = true;
                    what = format!(
                        "{what}; the search for good frames after it exceeded its budget, so a torn write cannot \
                         be told from corruption"
                    );
                }
            }
        }
        // Not accepted above, and the facts added since cannot turn a damaged frame into a good one.
        if classify(facts) == Verdict::TruncateTail {
            self.end = Some(End::Torn { offset: at, bytes: self.file_len - at });
            Ok(None)
        } else {
            Err(FrameError::Corrupt { path: self.path.clone(), offset: at, what })
        }
    }

    /// The bytes from `from` to the end of the (limited) file.
    fn read_rest(&mut self, from: u64) -> Result<Vec<u8>, FrameError> {
        let io_err = |source| FrameError::Io { path: self.path.clone(), source };
        self.file.seek(SeekFrom::Start(from)).map_err(io_err)?;
        let len = usize::try_from(self.file_len - from).unwrap_or(usize::MAX);
        let mut rest = vec![0u8; len];
        self.file.read_exact(&mut rest).map_err(io_err)?;
        Ok(rest)
    }

    /// How the scan ended; `None` until [`Reader::next_frame`] has returned `None`.
    pub fn end(&self) -> Option<&End> {
        self.end.as_ref()
    }

    /// The offset just past the last good frame.
    pub fn good_len(&self) -> u64 {
        match &self.end {
            Some(End::Torn { offset, .. }) => *offset,
            _ => self.offset,
        }
    }
}

/// The result of looking for a good frame in a damaged tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Search {
    /// A whole frame with a matching CRC starts at this offset of the searched bytes.
    Found(usize),
    /// None starts anywhere in the searched bytes.
    None,
    /// The search stopped at its CRC budget without an answer.
    BudgetExhausted,
}

/// Bytes of CRC the search after a damaged frame may compute (a tail of random bytes would offer
/// a plausible length at about one offset in 4,096 with 1 MiB records; real tails cost far less).
const SEARCH_CRC_BUDGET: usize = 8 << 30;

/// Looks for a whole frame whose length is within 1..=`max_len` and whose CRC matches, starting
/// at any offset from `from` on.
fn find_good_frame(bytes: &[u8], from: usize, max_len: u32) -> Search {
    let mut budget = SEARCH_CRC_BUDGET;
    let header = FRAME_HEADER_LEN as usize;
    let mut o = from;
    while o + header <= bytes.len() {
        let len = u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let end = o + header + len as usize;
        if len >= 1 && len <= max_len && end <= bytes.len() {
            if budget < len as usize {
                return Search::BudgetExhausted;
            }
            budget -= len as usize;
            let want = u32::from_le_bytes([bytes[o + 4], bytes[o + 5], bytes[o + 6], bytes[o + 7]]);
            if crc(len, &bytes[o + header..end]) == want {
                return Search::Found(o);
            }
        }
        o += 1;
    }
    Search::None
}

/// Copies bytes `[offset, end)` of `path` into `quarantine/<name>.torn-<offset>` and truncates the
/// file to `offset`, fsyncing both. A truncated tail is never simply thrown away.
pub fn truncate_keeping_copy(path: &Path, offset: u64, quarantine: &Path) -> io::Result<PathBuf> {
    crate::fsutil::create_dir_durable(quarantine)?;
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "file".into());
    let copy = quarantine.join(format!("{name}.torn-{offset}"));
    crate::fsutil::write_atomic(&copy, &tail, crate::fsutil::FILE_MODE)?;
    f.set_len(offset)?;
    f.sync_all()?;
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// One row of the recovery table: a pattern over the facts (`None` = either) and the verdict.
    /// `intact` is the derived fact "header, length, whole frame and CRC all good".
    struct Case {
        intact: Option<bool>,
        last_file: Option<bool>,
        good_frame_follows: Option<bool>,
        header_complete: Option<bool>,
        complete: Option<bool>,
        rest_all_zero: Option<bool>,
        len_ok: Option<bool>,
        ends_at_eof: Option<bool>,
        verdict: Verdict,
        why: &'static str,
    }

    const ANY: Case = Case {
        intact: None,
        last_file: None,
        good_frame_follows: None,
        header_complete: None,
        complete: None,
        rest_all_zero: None,
        len_ok: None,
        ends_at_eof: None,
        verdict: Verdict::FailClosed,
        why: "",
    };

    /// The recovery decision table as data (TigerBeetle's `recovery_cases`): every input must match
    /// exactly one row, and `classify` must give that row's verdict.
    const RECOVERY_CASES: &[Case] = &[
        Case { intact: Some(true), verdict: Verdict::Accept, why: "a good frame", ..ANY },
        Case {
            intact: Some(false),
            last_file: Some(false),
            verdict: Verdict::FailClosed,
            why: "only the last file may end in a torn write",
            ..ANY
        },
        Case {
            intact: Some(false),
            last_file: Some(true),
            good_frame_follows: Some(true),
            verdict: Verdict::FailClosed,
            why: "records were written after the damage: not a torn final append",
            ..ANY
        },
        Case {
            intact: Some(false),
            last_file: Some(true),
            good_frame_follows: Some(false),
            header_complete: Some(false),
            verdict: Verdict::TruncateTail,
            why: "the frame header itself was cut",
            ..ANY
        },
        Case {
            intact: Some(false),
            last_file: Some(true),
            good_frame_follows: Some(false),
            header_complete: Some(true),
            complete: Some(false),
            verdict: Verdict::TruncateTail,
            why: "the frame extends past the end of the file",
            ..ANY
        },
        Case {
            intact: Some(false),
            last_file: Some(true),
            good_frame_follows: Some(false),
            header_complete: Some(true),
            complete: Some(true),
            rest_all_zero: Some(true),
            verdict: Verdict::TruncateTail,
            why: "a zero-filled tail",
            ..ANY
        },
        Case {
            intact: Some(false),
            last_file: Some(true),
            good_frame_follows: Some(false),
            header_complete: Some(true),
            complete: Some(true),
            rest_all_zero: Some(false),
            len_ok: Some(false),
            verdict: Verdict::FailClosed,
            why: "a length this log never writes, with data after it",
            ..ANY
        },
        Case {
            intact: Some(false),
            last_file: Some(true),
            good_frame_follows: Some(false),
            header_complete: Some(true),
            complete: Some(true),
            rest_all_zero: Some(false),
            len_ok: Some(true),
            ends_at_eof: Some(true),
            verdict: Verdict::TruncateTail,
            why: "the last frame, whole in length, bad CRC: its write did not complete",
        },
        Case {
            intact: Some(false),
            last_file: Some(true),
            good_frame_follows: Some(false),
            header_complete: Some(true),
            complete: Some(true),
            rest_all_zero: Some(false),
            len_ok: Some(true),
            ends_at_eof: Some(false),
            verdict: Verdict::FailClosed,
            why: "a bad frame followed by data is corruption",
        },
    ];

    fn matches(c: &Case, f: &FrameFacts) -> bool {
        let intact = f.header_complete && f.len_ok && f.complete && f.crc_ok;
        let m = |p: Option<bool>, v: bool| p.is_none_or(|p| p == v);
        m(c.intact, intact)
            && m(c.last_file, f.last_file)
            && m(c.good_frame_follows, f.good_frame_follows)
            && m(c.header_complete, f.header_complete)
            && m(c.complete, f.complete)
            && m(c.rest_all_zero, f.rest_all_zero)
            && m(c.len_ok, f.len_ok)
            && m(c.ends_at_eof, f.ends_at_eof)
    }

    #[test]
    fn recovery_decision_table_over_every_input() {
        for bits in 0u32..256 {
            let b = |i: u32| bits & (1 << i) != 0;
            let f = FrameFacts {
                header_complete: b(0),
                len_ok: b(1),
                complete: b(2),
                crc_ok: b(3),
                ends_at_eof: b(4),
                rest_all_zero: b(5),
                last_file: b(6),
                good_frame_follows: b(7),
            };
            let rows: Vec<&Case> = RECOVERY_CASES.iter().filter(|c| matches(c, &f)).collect();
            assert_eq!(rows.len(), 1, "every input matches exactly one row: {f:?}");
            assert_eq!(classify(f), rows[0].verdict, "{}: {f:?}", rows[0].why);
        }
    }

    const MAGIC: &[u8; 8] = b"TESTLOG1";

    fn write_log(path: &Path, payloads: &[&[u8]]) -> Vec<u64> {
        let mut f = File::create(path).expect("create");
        f.write_all(&header(MAGIC, 7)).expect("header");
        let mut offsets = Vec::new();
        let mut at = HEADER_LEN;
        for p in payloads {
            offsets.push(at);
            let fr = encode(p);
            at += fr.len() as u64;
            f.write_all(&fr).expect("frame");
        }
        offsets
    }

    fn read_all(path: &Path, last: bool) -> Result<(Vec<Vec<u8>>, End), FrameError> {
        let mut r = Reader::open(path, MAGIC, 1024, last)?;
        let mut out = Vec::new();
        while let Some((_, p)) = r.next_frame()? {
            out.push(p);
        }
        Ok((out, r.end().cloned().expect("end")))
    }

    #[test]
    fn clean_file_reads_every_frame() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("log");
        write_log(&p, &[b"a", b"bb", b"ccc"]);
        let (frames, end) = read_all(&p, true).expect("read");
        assert_eq!(frames, vec![b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]);
        assert_eq!(end, End::Clean);
        assert_eq!(Reader::open(&p, MAGIC, 1024, true).expect("open").base, 7);
    }

    #[test]
    fn torn_tail_is_reported_and_truncation_keeps_a_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("log");
        let offsets = write_log(&p, &[b"first", b"second"]);
        let full = std::fs::metadata(&p).expect("meta").len();
        let f = std::fs::OpenOptions::new().write(true).open(&p).expect("open");
        f.set_len(full - 3).expect("cut");
        let (frames, end) = read_all(&p, true).expect("read");
        assert_eq!(frames, vec![b"first".to_vec()]);
        assert_eq!(end, End::Torn { offset: offsets[1], bytes: full - 3 - offsets[1] });
        let copy = truncate_keeping_copy(&p, offsets[1], &dir.path().join("q")).expect("truncate");
        assert_eq!(std::fs::metadata(&copy).expect("copy").len(), full - 3 - offsets[1]);
        let (frames, end) = read_all(&p, true).expect("read");
        assert_eq!((frames.len(), end), (1, End::Clean));
        // The same cut in a file that is not the last is corruption.
        f.set_len(full - 9).expect("cut");
        drop(f);
        assert!(matches!(read_all(&p, false), Err(FrameError::Corrupt { .. })));
    }

    #[test]
    fn flipped_byte_before_the_tail_fails_closed_with_the_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("log");
        let offsets = write_log(&p, &[b"first", b"second", b"third"]);
        let mut bytes = std::fs::read(&p).expect("read");
        bytes[(offsets[1] + 9) as usize] ^= 0x40;
        std::fs::write(&p, &bytes).expect("write");
        match read_all(&p, true) {
            Err(FrameError::Corrupt { offset, what, .. }) => {
                assert_eq!(offset, offsets[1]);
                assert!(what.starts_with("CRC32C mismatch"), "{what}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn flipped_byte_in_the_last_frame_is_a_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("log");
        let offsets = write_log(&p, &[b"first", b"second"]);
        let mut bytes = std::fs::read(&p).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(&p, &bytes).expect("write");
        let (frames, end) = read_all(&p, true).expect("read");
        assert_eq!(frames.len(), 1);
        assert!(matches!(end, End::Torn { offset, .. } if offset == offsets[1]));
    }

    #[test]
    fn a_length_flipped_past_end_of_file_mid_log_fails_closed_and_keeps_the_records_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("log");
        let offsets = write_log(&p, &[b"first", b"second", b"third", b"fourth"]);
        let mut bytes = std::fs::read(&p).expect("read");
        // A high bit of the second frame's length: that frame now seems to run past end of file,
        // which alone looks like a torn write.
        bytes[(offsets[1] + 1) as usize] ^= 0x80;
        std::fs::write(&p, &bytes).expect("write");
        let before = std::fs::read(&p).expect("read");
        match read_all(&p, true) {
            Err(FrameError::Corrupt { offset, what, .. }) => {
                assert_eq!(offset, offsets[1]);
                assert!(what.contains(&format!("follows at byte offset {}", offsets[2])), "{what}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        assert_eq!(std::fs::read(&p).expect("read"), before, "reading never changes the file");
    }

    #[test]
    fn a_torn_multi_frame_append_with_a_garbage_length_is_still_a_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("log");
        let offsets = write_log(&p, &[b"first", b"second-record", b"third-record"]);
        let mut bytes = std::fs::read(&p).expect("read");
        // The last append (frames two and three, one batch) tore: garbage where frame two's
        // length was, and frame three cut short.
        bytes[offsets[1] as usize..offsets[1] as usize + 4].copy_from_slice(&[0xff, 0xff, 0x7f, 0x00]);
        bytes.truncate(bytes.len() - 2);
        std::fs::write(&p, &bytes).expect("write");
        let (frames, end) = read_all(&p, true).expect("read");
        assert_eq!(frames, vec![b"first".to_vec()]);
        assert!(matches!(end, End::Torn { offset, .. } if offset == offsets[1]));
    }

    #[test]
    fn good_frame_search_finds_a_frame_at_any_offset_and_only_a_whole_one() {
        let mut bytes = vec![0u8; 3];
        bytes.extend_from_slice(&encode(b"payload"));
        assert_eq!(find_good_frame(&bytes, 0, 1024), Search::Found(3));
        assert_eq!(find_good_frame(&bytes, 4, 1024), Search::None);
        bytes.pop();
        assert_eq!(find_good_frame(&bytes, 0, 1024), Search::None);
    }

    #[test]
    fn wrong_magic_is_a_bad_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("log");
        write_log(&p, &[b"x"]);
        assert!(matches!(Reader::open(&p, b"OTHERLOG", 1024, true), Err(FrameError::BadHeader { .. })));
    }
}
