//! Signed-intent decoding over arbitrary bytes (what a kernel reads from every Execute and
//! aerodbctl from every pending action): never panics, and whatever it accepts re-encodes to
//! exactly the input (one byte string, one reading); the approval-file reader never panics.
#![no_main]

use aerodb::contract::intent::Intent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(intent) = Intent::decode(data) {
        assert_eq!(intent.encode(), data, "an accepted intent re-encodes to its input");
        let _ = intent.action();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = serde_json::from_str::<aerodb::pki::sign::Approval>(text);
    }
});
