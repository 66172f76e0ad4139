//! Snapshot loading over arbitrary bytes, once as the `manifest` and once as the `data` file
//! (with a manifest whose size and CRC32C match it, so the pair decoder is reached): recovery
//! never panics, and a restored map is exactly as large as its manifest says.
#![no_main]

use aerodb::frame;
use aerodb::kernel::entry::{Entry, Kind, ZERO_HASH};
use aerodb::kernel::snapshot;
use aerodb::kernel::wal::{self, Wal};
use libfuzzer_sys::fuzz_target;

mod scratch;

/// A WAL holding one entry (index 1, epoch 1) for the snapshots to match; opened once.
struct Fixture {
    _dir: tempfile::TempDir,
    wal: Wal,
    last_hash: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal_dir = dir.path().join("wal");
    std::fs::create_dir(&wal_dir).expect("mkdir");
    let e = Entry { index: 1, epoch: 1, prev_hash: ZERO_HASH, kind: Kind::EpochStart, payload: b"n1".to_vec() };
    let mut seg = frame::header(wal::MAGIC, 1).to_vec();
    seg.extend_from_slice(&frame::encode(&e.encode()));
    std::fs::write(wal_dir.join("seg-00000000000000000001.wal"), seg).expect("write");
    let wal = Wal::open(&wal_dir, &dir.path().join("quarantine")).expect("open the fixture WAL");
    Fixture { _dir: dir, wal, last_hash: hex::encode(e.hash()) }
}

thread_local! {
    static FIXTURE: Fixture = fixture();
}

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

fn recover(f: &Fixture, manifest: &[u8], data: &[u8]) -> Option<usize> {
    let (infos, restored) = scratch::with_empty("snapshots", |dir| {
        let snap = dir.join("snap-00000000000000000001");
        std::fs::create_dir(&snap).expect("mkdir");
        std::fs::write(snap.join("manifest"), manifest).expect("write");
        std::fs::write(snap.join("data"), data).expect("write");
        snapshot::recover(dir, &f.wal)
    });
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].used_at_recovery, restored.is_some());
    restored.map(|(map, index)| {
        assert_eq!(index, 1);
        map.len()
    })
}

fuzz_target!(|data: &[u8]| {
    FIXTURE.with(|f| {
        // The input as the data file, under a manifest that matches it.
        let entries = frames(data);
        if let Some(n) = recover(f, &manifest(&f.last_hash, entries, data), data) {
            assert_eq!(n as u64, entries, "a restored map has the manifest's entry count");
        }
        // The input as the manifest, over an empty data file.
        let empty = frame::header(b"AEROSNP1", 1);
        if let Some(n) = recover(f, data, &empty) {
            assert_eq!(n, 0);
        }
    });
});
