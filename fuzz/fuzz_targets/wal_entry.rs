//! WAL entry decoding: whatever decodes re-encodes to the same bytes (the canonical form is
//! what is hashed), and a Put entry's payload always splits into key and value.
#![no_main]

use aerodb::kernel::entry::{self, Entry, Kind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Entry::decode(data) {
        assert_eq!(e.encode(), data, "decode then encode is the identity");
        assert_eq!(Entry::decode(&e.encode()).ok(), Some(e.clone()));
        if e.kind == Kind::Put {
            let (k, v) = entry::decode_put(&e.payload).expect("a decoded Put has a key and a value");
            assert_eq!(entry::encode_put(k, v), e.payload);
        }
        let proto = e.to_proto();
        assert_eq!(Entry::from_proto(&proto), Some(e));
    }
    if let Some((k, v)) = entry::decode_put(data) {
        assert_eq!(entry::encode_put(k, v), data);
    }
});
