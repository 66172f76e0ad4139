//! The HTTP/2 edge's message framing over arbitrary bodies split into arbitrary DATA frames:
//! it accepts exactly one uncompressed message no larger than the limit, as the bytes sent.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // byte 0: the limit (x 4 bytes); byte 1: the DATA frame size; the rest: the body.
    let [limit, chunk, body @ ..] = data else { return };
    let max = usize::from(*limit) * 4;
    let chunk = usize::from(*chunk).max(1);
    let chunks: Vec<Vec<u8>> = body.chunks(chunk).map(<[u8]>::to_vec).collect();
    match aerodb::fuzzing::one_message(chunks, "/aerodb.control.v1.Observer/GetNode", max) {
        Ok(m) => {
            assert_eq!(&m[..], body, "the message is the body");
            assert!(body.len() >= 5 && body[0] == 0);
            let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
            assert_eq!(len + 5, body.len());
            assert!(len <= max);
        }
        Err(_) => {}
    }
});
