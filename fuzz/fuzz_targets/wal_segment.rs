//! A WAL directory holding one segment of arbitrary bytes: reading it never panics, and every
//! entry it returns decodes canonically.
#![no_main]

use aerodb::kernel::entry::Entry;
use aerodb::kernel::wal;
use libfuzzer_sys::fuzz_target;

mod scratch;

fuzz_target!(|data: &[u8]| {
    scratch::with_empty("wal", |dir| {
        std::fs::write(dir.join("seg-00000000000000000001.wal"), data).expect("write");
        if let Ok(entries) = wal::read_dir(dir) {
            for e in entries {
                assert_eq!(Entry::decode(&e.encode()).ok(), Some(e));
            }
        }
    });
});
