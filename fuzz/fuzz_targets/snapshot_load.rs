//! Snapshot loading over arbitrary bytes, once as the `manifest` and once as the `data` file
//! (with a manifest whose size and CRC32C match it, so the pair decoder is reached): the loader
//! that recovery and catch-up by snapshot share never panics, and a restored map is exactly as
//! large as its manifest says.
#![no_main]

use aerodb::frame;
use aerodb::kernel::snapshot;
use libfuzzer_sys::fuzz_target;

mod scratch;

/// The hash the manifests name (any 32 bytes: loading does not consult a WAL).
const LAST_HASH: &str = "0101010101010101010101010101010101010101010101010101010101010101";

fn frames(bytes: &[u8]) -> u64 {
    scratch::with_empty("count", |dir| {
        let p = dir.join("d");
        std::fs::write(&p, bytes).expect("write");
        let Ok(mut r) = frame::Reader::open(&p, b"AEROSNP1", 1 << 20, false) else { return 0 };
        let mut n = 0;
        while let Ok(Some(_)) = r.next_frame() {
            n += 1;
        }
        n
    })
}

fn manifest(last_hash: &str, entries: u64, data: &[u8]) -> Vec<u8> {
    let m = serde_json::json!({
        "version": 1, "last_index": 1, "last_epoch": 1, "last_hash": last_hash, "entries": entries,
        "data_bytes": data.len(), "data_crc32c": crc32c::crc32c(data),
    });
    let mut out = frame::header(b"AEROMAN1", 1).to_vec();
    out.extend_from_slice(&frame::encode(&serde_json::to_vec(&m).expect("json")));
    out
}

/// Loads a snapshot directory as recovery and catch-up by snapshot both do (manifest, then the
/// data checked against it); the number of pairs restored.
fn load(manifest: &[u8], data: &[u8]) -> Option<usize> {
    scratch::with_empty("snapshots", |dir| {
        let snap = dir.join("snap-00000000000000000001");
        std::fs::create_dir(&snap).expect("mkdir");
        std::fs::write(snap.join("manifest"), manifest).expect("write");
        std::fs::write(snap.join("data"), data).expect("write");
        let m = snapshot::read_manifest(&snap).ok()?;
        let map = snapshot::read_data(&snap, &m).ok()?;
        assert_eq!(map.len() as u64, m.entries, "a restored map has the manifest's entry count");
        assert_eq!(m.last_index, 1);
        Some(map.len())
    })
}

fuzz_target!(|data: &[u8]| {
    // The input as the data file, under a manifest that matches it.
    let entries = frames(data);
    if let Some(n) = load(&manifest(LAST_HASH, entries, data), data) {
        assert_eq!(n as u64, entries, "a restored map has the manifest's entry count");
    }
    // The input as the manifest, over an empty data file.
    let empty = frame::header(b"AEROSNP1", 1);
    if let Some(n) = load(data, &empty) {
        assert_eq!(n, 0);
    }
});
