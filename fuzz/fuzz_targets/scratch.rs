//! A scratch directory per fuzzing process, reused by every execution (creating a directory per
//! input costs more than the decoders under test): on tmpfs when `/dev/shm` exists.

use std::path::{Path, PathBuf};

thread_local! {
    static SCRATCH: (tempfile::TempDir, PathBuf) = {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("scratch dir");
        let path = dir.path().to_path_buf();
        (dir, path)
    };
}

/// Runs `f` in an empty scratch directory `sub` (emptied before each use).
pub fn with_empty<R>(sub: &str, f: impl FnOnce(&Path) -> R) -> R {
    SCRATCH.with(|(_, root)| {
        let dir = root.join(sub);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch subdir");
        f(&dir)
    })
}
