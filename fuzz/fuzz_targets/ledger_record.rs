//! The kernel ledger (`control.log`) and the claims log over arbitrary bytes: reading and
//! opening never panic; open either fails closed or returns gap-free records and leaves a file
//! that opens again to the same records (a torn tail truncated once, a copy kept).
#![no_main]

use aerodb::kernel::ledger::{self, Ledger};
use libfuzzer_sys::fuzz_target;

mod scratch;

fuzz_target!(|data: &[u8]| scratch::with_empty("ledger", |dir| run(dir, data)));

fn run(dir: &std::path::Path, data: &[u8]) {
    let path = dir.join("control.log");
    let quarantine = dir.join("quarantine");
    std::fs::write(&path, data).expect("write");
    let _ = Ledger::read_all(&path);
    if let Ok((l, records)) = Ledger::open(&path, &quarantine) {
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.control_seq, i as u64 + 1, "records are gap-free from 1");
        }
        assert_eq!(l.control_seq(), records.len() as u64);
        drop(l);
        let (_, again) = Ledger::open(&path, &quarantine).expect("an opened ledger opens again");
        assert_eq!(again, records);
    }
    let claims = dir.join("claims.log");
    std::fs::write(&claims, data).expect("write");
    let _ = Ledger::open_with(&claims, &quarantine, ledger::CLAIMS_MAGIC);
}
