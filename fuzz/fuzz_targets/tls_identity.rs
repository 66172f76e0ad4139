//! Certificate identity parsing over arbitrary DER: never panics, and an accepted identity has
//! a valid name and a fingerprint of the certificate.
#![no_main]

use aerodb::tls::identity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for usage in [identity::Usage::Client, identity::Usage::Server] {
        if let Ok(id) = identity::identity_for(data, "aerodb.local", usage) {
            assert!(identity::valid_name(&id.name), "accepted an invalid name {:?}", id.name);
        }
    }
    let _ = identity::identity_from_der(data, "aerodb.local");
    let _ = identity::not_after_unix_s(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = identity::parse_spiffe(s, "aerodb.local");
    }
});
