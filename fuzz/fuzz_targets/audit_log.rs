//! Audit decoding over arbitrary bytes: the record payload split, the record body, a signed
//! checkpoint note, and an audit directory whose one segment (or whose checkpoints file, or whose
//! tree file) is the input. Verification never panics, and a chain it calls good reads back record
//! by record.
#![no_main]

use aerodb::audit::{chain, checkpoint, merkle, record::Stored, tree, verify};
use libfuzzer_sys::fuzz_target;

mod scratch;

fuzz_target!(|data: &[u8]| {
    if let Some((prev, seq, body)) = chain::split(data) {
        assert_eq!(chain::payload(&prev, seq, body), data);
        let stored = Stored {
            seq,
            prev_hash: prev,
            hash: chain::hash(data),
            leaf_hash: merkle::leaf_hash(data),
            body_json: body.to_vec(),
        };
        let _ = stored.body();
    }
    scratch::with_empty("segment", |dir| {
        std::fs::write(dir.join(verify::segment_name(1)), data).expect("write");
        let report = verify::verify_dir(dir, None);
        if report.ok {
            let mut n = 0u64;
            verify::read_from(dir, 1, |_| {
                n += 1;
                true
            })
            .expect("a verified log reads back");
            assert_eq!(n, report.summary.records, "every verified record reads back");
        }
    });
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = checkpoint::Checkpoint::parse(text);
    }
    scratch::with_empty("checkpoints", |dir| {
        std::fs::write(dir.join(checkpoint::CHECKPOINTS_FILE), data).expect("write");
        let _ = checkpoint::read_all(dir);
        let _ = verify::verify_dir(dir, None);
    });
    scratch::with_empty("tree", |dir| {
        std::fs::write(dir.join(tree::TREE_FILE), data).expect("write");
        if let Ok(r) = tree::TreeReader::open(dir) {
            let n = r.leaves();
            let _ = merkle::root(&r, n);
            if n > 0 {
                let _ = merkle::inclusion_proof(&r, n - 1, n);
                let _ = merkle::consistency_proof(&r, n / 2, n);
            }
        }
        let _ = verify::verify_dir(dir, None);
    });
});
