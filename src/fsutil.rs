//! Durable, private file operations used wherever durability is claimed.
//!
//! [`write_atomic`] writes a temporary file, fsyncs it, renames it over the target and fsyncs
//! the directory, so a crash leaves either the old file or the new one, never a mix.
//!
//! # Data at rest is private
//! Every file the node and the control plane create for their data (WAL segments, ledger,
//! snapshots, audit segments, checkpoints, quarantine copies, keys, the lock file) is created
//! [`FILE_MODE`] and every directory [`DIR_MODE`], whatever the umask: the mode is given at
//! creation (so the entry never exists wider, even for an instant) and then set exactly (a umask
//! can only remove bits, and a strict one must not leave a file its owner cannot use). At start,
//! [`check_private_dir`] refuses a data directory that group or others can enter, read or write,
//! as a key readable by others is refused.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Permission bits of every data file: read and write for the owner, nothing for group or others.
pub const FILE_MODE: u32 = 0o600;

/// Permission bits of every data directory: full access for the owner, none for group or others.
pub const DIR_MODE: u32 = 0o700;

/// The bits that give group or others any access.
const GROUP_OR_OTHERS: u32 = 0o077;

/// A data directory that is not private, or that could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    /// The directory gives group or others some access (operator's setup: fix the mode).
    #[error(
        "data directory {dir} has mode {mode:04o}: it must not be accessible by group or others (fix: chmod 700 {dir})"
    )]
    Exposed {
        /// The directory.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Its metadata could not be read.
    #[error("data directory {dir}: {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Fsyncs a directory so that entries created, renamed or removed in it are durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Atomically replaces `path` with `bytes`; the file has exactly permission bits `mode` (e.g.
/// [`FILE_MODE`] for data and keys, which are never readable by others even for an instant),
/// whatever the umask and whatever a stale temporary file left behind.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        // A temporary file left by a crash keeps its old mode through `open`: set it exactly.
        f.set_permissions(Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    fsync_dir(dir)
}

/// Opens `path` with `options`, creating it (when `options` say so) with exactly [`FILE_MODE`]
/// whatever the umask. An existing file opened this way is narrowed to [`FILE_MODE`] too.
/// Durability is the caller's: nothing is fsynced here.
pub fn open_private(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    let file = options.mode(FILE_MODE).open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Creates one directory (its parent must exist) with exactly [`DIR_MODE`] whatever the umask.
/// Fails with `AlreadyExists` if it exists. Durability is the caller's: the parent is not fsynced.
pub fn create_dir_private(dir: &Path) -> io::Result<()> {
    DirBuilder::new().mode(DIR_MODE).create(dir)?;
    std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
}

/// Creates a directory and its missing parents, each exactly [`DIR_MODE`], and fsyncs the
/// parent of every directory it created and the directory's own parent, so each new entry on
/// the path is durable (a power cut cannot take away a parent created here along with the files
/// later made durable inside it). Directories that already exist are left as they are (a start
/// checks them with [`check_private_dir`]).
pub fn create_dir_durable(dir: &Path) -> io::Result<()> {
    // One level at a time rather than `DirBuilder::recursive`: each new directory gets its exact
    // mode before the next is made inside it, so even a umask that removes the owner's write bit
    // cannot stop the creation half way.
    let mut missing = Vec::new();
    let mut cur = Some(dir).filter(|p| !p.as_os_str().is_empty());
    while let Some(p) = cur {
        if p.try_exists()? {
            break;
        }
        missing.push(p);
        cur = p.parent().filter(|p| !p.as_os_str().is_empty());
    }
    for p in missing.iter().rev() {
        match create_dir_private(p) {
            Ok(()) => {}
            // Created meanwhile by someone else: left as it is, like any existing directory.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && p.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    // Deepest first: each fsync makes one new entry durable, and an entry whose own parent is
    // not yet durable is harmless until that parent's turn comes (before this returns).
    let mut parents: Vec<&Path> = missing.iter().filter_map(|p| p.parent()).collect();
    if missing.is_empty() {
        parents.extend(dir.parent());
    }
    for parent in parents.into_iter().filter(|p| !p.as_os_str().is_empty()) {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// Refuses a data directory that group or others can read, write or enter, naming it and the
/// fix (`chmod 700 DIR`). A directory that does not exist yet passes: it will be created
/// [`DIR_MODE`].
pub fn check_private_dir(dir: &Path) -> Result<(), PrivateDirError> {
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(PrivateDirError::Io { dir: dir.to_path_buf(), source }),
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & GROUP_OR_OTHERS != 0 {
        return Err(PrivateDirError::Exposed { dir: dir.to_path_buf(), mode });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("meta").permissions().mode() & 0o7777
    }

    #[test]
    fn atomic_write_replaces_content_with_requested_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("k.key");
        write_atomic(&p, b"one", 0o600).expect("write");
        write_atomic(&p, b"two", 0o600).expect("write");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        assert_eq!(std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn atomic_write_over_a_stale_world_readable_temporary_file_is_still_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = dir.path().join(".ADDRESS.tmp");
        std::fs::write(&stale, b"old").expect("stale");
        std::fs::set_permissions(&stale, Permissions::from_mode(0o666)).expect("chmod");
        let p = dir.path().join("ADDRESS");
        write_atomic(&p, b"new", FILE_MODE).expect("write");
        assert_eq!(mode(&p), FILE_MODE);
        assert_eq!(std::fs::read(&p).expect("read"), b"new");
    }

    #[test]
    fn created_data_directories_and_files_are_exactly_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("a").join("b").join("c");
        create_dir_durable(&deep).expect("create");
        for p in [dir.path().join("a"), dir.path().join("a/b"), deep.clone()] {
            assert_eq!(mode(&p), DIR_MODE, "{}", p.display());
        }
        // Existing directories are not touched (a start checks them instead).
        std::fs::set_permissions(&deep, Permissions::from_mode(0o755)).expect("chmod");
        create_dir_durable(&deep).expect("again");
        assert_eq!(mode(&deep), 0o755);

        let f = deep.join("seg");
        open_private(OpenOptions::new().create_new(true).append(true), &f).expect("create");
        assert_eq!(mode(&f), FILE_MODE);
        // Opening an existing, wider file through the helper narrows it.
        let lock = deep.join("LOCK");
        std::fs::write(&lock, b"").expect("lock");
        std::fs::set_permissions(&lock, Permissions::from_mode(0o644)).expect("chmod");
        open_private(OpenOptions::new().create(true).truncate(false).write(true), &lock).expect("open");
        assert_eq!(mode(&lock), FILE_MODE);

        let single = deep.join("snap.tmp");
        create_dir_private(&single).expect("create");
        assert_eq!(mode(&single), DIR_MODE);
        assert_eq!(create_dir_private(&single).map_err(|e| e.kind()), Err(io::ErrorKind::AlreadyExists));
    }

    #[test]
    fn a_directory_any_group_or_other_bit_opens_is_refused_naming_it_and_the_fix() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("data");
        assert!(check_private_dir(&dir).is_ok(), "a directory not created yet passes");
        create_dir_durable(&dir).expect("create");
        assert!(check_private_dir(&dir).is_ok(), "0700 passes");
        for bad in [0o755, 0o750, 0o710, 0o701, 0o702, 0o720, 0o704, 0o740, 0o777] {
            std::fs::set_permissions(&dir, Permissions::from_mode(bad)).expect("chmod");
            let err = check_private_dir(&dir).expect_err("refused");
            assert!(matches!(&err, PrivateDirError::Exposed { dir: d, mode } if d == &dir && *mode == bad), "{err:?}");
            let text = err.to_string();
            assert!(text.contains(&format!("chmod 700 {}", dir.display())), "{text}");
            assert!(text.contains(&format!("{bad:04o}")), "{text}");
        }
        for ok in [0o700, 0o500, 0o300] {
            std::fs::set_permissions(&dir, Permissions::from_mode(ok)).expect("chmod");
            assert!(check_private_dir(&dir).is_ok(), "{ok:o} is private");
        }
        std::fs::set_permissions(&dir, Permissions::from_mode(0o700)).expect("chmod");
    }

    /// The environment variable that turns [`umask_child`] into the worker of
    /// [`modes_are_exact_under_any_umask`]: the umask it runs under, in octal.
    const CHILD_UMASK: &str = "AERODB_FSUTIL_TEST_CHILD_UMASK";
    /// Where the child creates its files.
    const CHILD_DIR: &str = "AERODB_FSUTIL_TEST_CHILD_DIR";

    /// Does nothing unless run by [`modes_are_exact_under_any_umask`] in its own process: the
    /// umask is process-wide and unit tests share a process, so only a child may change it.
    #[test]
    fn umask_child() {
        let (Ok(umask), Ok(dir)) = (std::env::var(CHILD_UMASK), std::env::var(CHILD_DIR)) else { return };
        let umask = u32::from_str_radix(&umask, 8).expect("octal umask");
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
        let dir = PathBuf::from(dir);
        let deep = dir.join("data").join("wal");
        create_dir_durable(&deep).expect("create dirs");
        create_dir_private(&dir.join("data").join("snap.tmp")).expect("create dir");
        open_private(OpenOptions::new().create_new(true).append(true), &deep.join("seg")).expect("create file");
        write_atomic(&dir.join("data").join("ADDRESS"), b"a", FILE_MODE).expect("write");
    }

    #[test]
    fn modes_are_exact_under_any_umask() {
        for umask in ["000", "022", "077", "277"] {
            let dir = tempfile::tempdir().expect("tempdir");
            let out = std::process::Command::new(std::env::current_exe().expect("exe"))
                .args(["--exact", "fsutil::tests::umask_child", "--test-threads=1"])
                .env(CHILD_UMASK, umask)
                .env(CHILD_DIR, dir.path())
                .output()
                .expect("run child");
            assert!(out.status.success(), "umask {umask}: {}", String::from_utf8_lossy(&out.stdout));
            let data = dir.path().join("data");
            for d in [data.clone(), data.join("wal"), data.join("snap.tmp")] {
                assert_eq!(mode(&d), DIR_MODE, "umask {umask}: {}", d.display());
            }
            for f in [data.join("wal").join("seg"), data.join("ADDRESS")] {
                assert_eq!(mode(&f), FILE_MODE, "umask {umask}: {}", f.display());
            }
        }
    }
}
