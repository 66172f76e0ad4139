//! The frame reader over arbitrary file bytes: every frame it returns is whole and its CRC
//! matches, it never reads past the file, and it ends in exactly one known way.
#![no_main]

use aerodb::frame::{self, End, Reader};
use libfuzzer_sys::fuzz_target;

mod scratch;

const MAX_LEN: u32 = 1 << 16;

fn read(path: &std::path::Path, magic: &[u8; 8], last_file: bool, size: u64) {
    let Ok(mut r) = Reader::open(path, magic, MAX_LEN, last_file) else { return };
    let mut end_of_good = frame::HEADER_LEN;
    loop {
        match r.next_frame() {
            Ok(Some((offset, payload))) => {
                assert_eq!(offset, end_of_good, "frames are contiguous");
                assert!(!payload.is_empty() && payload.len() as u32 <= MAX_LEN);
                end_of_good = offset + frame::FRAME_HEADER_LEN + payload.len() as u64;
                assert!(end_of_good <= size, "a frame past the end of the file");
            }
            Ok(None) | Err(_) => break,
        }
    }
    assert!(r.good_len() <= size);
    if let Some(End::Torn { offset, .. }) = r.end() {
        assert!(last_file, "only the last file may end torn");
        assert!(*offset <= size);
    }
}

fuzz_target!(|data: &[u8]| {
    scratch::with_empty("f", |dir| run(&dir.join("f"), data));
});

fn run(path: &std::path::Path, data: &[u8]) {
    let path = path.to_path_buf();
    std::fs::write(&path, data).expect("write");
    // The file's own magic (so real files' frames are reached) and a fixed one.
    let mut magic = *b"AEROWAL1";
    if data.len() >= 8 {
        magic.copy_from_slice(&data[..8]);
    }
    for last_file in [true, false] {
        read(&path, &magic, last_file, data.len() as u64);
    }
    read(&path, b"AEROLED1", true, data.len() as u64);
}
