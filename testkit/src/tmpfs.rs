//! Small real filesystems a test can fill: a tmpfs mounted by the test (root only) and a filler
//! that takes its last byte.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted by the test (root only); unmounted on drop. `None` (with the reason printed)
/// where the machine cannot mount.
pub struct Tmpfs {
    /// The mount point.
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `1m`) at `path`; `None`, the reason printed, where it cannot.
    pub fn mount(path: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(path).ok()?;
        let out =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(path).output();
        match out {
            Ok(o) if o.status.success() => Some(Self { path: path.to_path_buf() }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs here ({}); run as root (CI does)",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount ({e}); run as root (CI does)");
                None
            }
        }
    }

    /// Remounts with `mode` (`ro` or `rw`); panics if that fails.
    pub fn remount(&self, mode: &str) {
        let ok =
            Command::new("mount").args(["-o", &format!("remount,{mode}")]).arg(&self.path).status().expect("mount");
        assert!(ok.success(), "remount {mode}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills a filesystem to the last byte with one file; returns its path (remove it to free).
pub fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut small = vec![0u8; 512];
    while !small.is_empty() {
        if f.write_all(&small).is_err() {
            small.truncate(small.len() / 2);
        }
    }
    let _ = f.sync_all();
    path
}
