//! A FUSE filesystem that loses what was not synced (LazyFS's idea, in the test harness).
//!
//! Each mount is one machine's disk. It keeps, per file, the **page-cache content** (what
//! processes read and write) apart from the **durable content** (the page-cache content as of the
//! file's last `fsync`/`fdatasync`), and, per directory, the **live entries** apart from the
//! **durable entries** (the live entries as of the directory's last `fsync`). A power cut
//! ([`LazyFs::power_cut`]) unmounts the disk, throws away every live state and mounts again what
//! was durable: files reachable through durable entries, each with its durable content.
//!
//! # The rules (strict POSIX; stricter than ext4)
//! - `write`, `truncate` (setattr size) change the page-cache content only.
//! - `fsync` and `fdatasync` of a file make its content and size durable (both: fdatasync must
//!   persist the size needed to read the data back). They do **not** make the file's directory
//!   entry durable: a new file survives a cut only once its parent directory was fsync'd after
//!   the create (ext4 would usually persist it with the file's fsync; POSIX does not promise it,
//!   and only the strict rule lets a test notice a missing directory fsync).
//! - `create`, `mkdir`, `unlink`, `rmdir`, `rename` change live entries only; an `fsync` of a
//!   directory makes all its live entries durable (a rename between two directories is durable
//!   in each once each is synced).
//! - Modes and ownership are kept as they are (metadata durability is not modelled).
//! - A cut may **tear** the last unsynced write: of the file written last, if its page-cache
//!   content extends its durable content (an append), a prefix of the unsynced bytes is kept
//!   (`Tear::KeepPermille`), as a disk that wrote part of a request before losing power.
//!
//! Mounting needs `/dev/fuse` and the right to mount (root): [`LazyFs::mount`] says why it
//! cannot, so a test can skip with the reason.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, MountOption,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, WriteFlags,
};

/// How a cut treats the last unsynced write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tear {
    /// Drop every unsynced byte.
    None,
    /// Keep this many thousandths (0..=999) of the unsynced bytes appended to the file written
    /// last.
    KeepPermille(u32),
}

/// What one cut threw away.
#[derive(Debug, Default, Clone)]
pub struct CutReport {
    /// Files whose page-cache content differed from their durable content.
    pub files_reset: usize,
    /// Bytes of page-cache content that were not durable (by file length difference and
    /// changed durable-length prefix).
    pub bytes_dropped: u64,
    /// Live directory entries that were not durable (created, or renamed to, and not synced).
    pub entries_dropped: usize,
    /// Durable entries brought back (unlinked, or renamed from, and not synced).
    pub entries_restored: usize,
    /// The torn file: its inode, the bytes of the torn write kept, of how many unsynced.
    pub torn: Option<(u64, u64, u64)>,
}

#[derive(Debug, Clone)]
enum Kind {
    File { live: Vec<u8>, durable: Vec<u8> },
    Dir { live: BTreeMap<OsString, u64>, durable: BTreeMap<OsString, u64> },
}

impl Kind {
    fn empty_file() -> Self {
        Kind::File { live: Vec::new(), durable: Vec::new() }
    }

    fn empty_dir() -> Self {
        Kind::Dir { live: BTreeMap::new(), durable: BTreeMap::new() }
    }

    /// What `fsync` promises: the live content (or entries) becomes the durable one.
    fn make_durable(&mut self) {
        match self {
            Kind::File { live, durable } => *durable = live.clone(),
            Kind::Dir { live, durable } => *durable = live.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct Inode {
    kind: Kind,
    mode: u16,
    uid: u32,
    gid: u32,
}

/// The disk's whole state: one lock, held by the FUSE thread for each request and by the test
/// for a cut (the FUSE session is single-threaded; the lock only orders it against the test).
#[derive(Debug)]
struct State {
    inodes: BTreeMap<u64, Inode>,
    next_ino: u64,
    /// The inode of the last write or truncate (the candidate for a torn write).
    last_written: Option<u64>,
}

const ROOT: u64 = 1;
/// Attributes and entries are never cached by the kernel: every lookup sees the current state.
const TTL: Duration = Duration::ZERO;

impl State {
    fn new() -> Self {
        let root = Inode { kind: Kind::empty_dir(), mode: 0o755, uid: 0, gid: 0 };
        Self { inodes: BTreeMap::from([(ROOT, root)]), next_ino: ROOT + 1, last_written: None }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let n = self.inodes.get(&ino)?;
        let (kind, size, nlink) = match &n.kind {
            Kind::File { live, .. } => (FileType::RegularFile, live.len() as u64, 1),
            Kind::Dir { .. } => (FileType::Directory, 0, 2),
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind,
            perm: n.mode,
            nlink,
            uid: n.uid,
            gid: n.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn dir(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match self.inodes.get_mut(&ino).map(|n| &mut n.kind) {
            Some(Kind::Dir { live, .. }) => Ok(live),
            Some(Kind::File { .. }) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn file(&mut self, ino: u64) -> Result<&mut Vec<u8>, Errno> {
        match self.inodes.get_mut(&ino).map(|n| &mut n.kind) {
            Some(Kind::File { live, .. }) => Ok(live),
            Some(Kind::Dir { .. }) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    /// The inode of entry `name` in directory `parent`.
    fn child(&mut self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.dir(parent)?.get(name).copied().ok_or(Errno::ENOENT)
    }

    /// `fsync` of `ino` (a file or a directory).
    fn sync(&mut self, ino: u64) -> Result<(), Errno> {
        self.inodes.get_mut(&ino).ok_or(Errno::ENOENT)?.kind.make_durable();
        Ok(())
    }

    /// Creates entry `name` in `parent` owned by `(uid, gid)` (live only, like every create).
    fn make(&mut self, parent: u64, name: &OsStr, kind: Kind, mode: u32, owner: (u32, u32)) -> Result<FileAttr, Errno> {
        if self.dir(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, Inode { kind, mode: (mode & 0o7777) as u16, uid: owner.0, gid: owner.1 });
        self.dir(parent)?.insert(name.to_os_string(), ino);
        Ok(self.attr(ino).expect("just made"))
    }

    /// The durable state: everything reachable from the root through durable entries, each file
    /// with its durable content (and the torn write's kept prefix), each directory with its
    /// durable entries as its live ones.
    fn cut(&mut self, tear: Tear) -> CutReport {
        let mut report = CutReport::default();
        let mut kept: BTreeMap<u64, Inode> = BTreeMap::new();
        let mut todo = vec![ROOT];
        while let Some(ino) = todo.pop() {
            if kept.contains_key(&ino) {
                continue;
            }
            let Some(n) = self.inodes.get(&ino) else { continue };
            let mut n = n.clone();
            match &mut n.kind {
                Kind::File { live, durable } => {
                    if live != durable {
                        report.files_reset += 1;
                        let common = live.iter().zip(durable.iter()).take_while(|(a, b)| a == b).count();
                        report.bytes_dropped += (live.len() - common) as u64;
                    }
                    *live = durable.clone();
                }
                Kind::Dir { live, durable } => {
                    report.entries_dropped += live.iter().filter(|(k, v)| durable.get(*k) != Some(*v)).count();
                    report.entries_restored += durable.iter().filter(|(k, v)| live.get(*k) != Some(*v)).count();
                    *live = durable.clone();
                    todo.extend(durable.values().copied());
                }
            }
            kept.insert(ino, n);
        }
        if let (Tear::KeepPermille(permille), Some(ino)) = (tear, self.last_written)
            && let (Some(old), Some(new)) = (self.inodes.get(&ino), kept.get_mut(&ino))
            && let (Kind::File { live: page, durable }, Kind::File { live: after, durable: after_durable }) =
                (&old.kind, &mut new.kind)
            && page.len() > durable.len()
            && page.starts_with(durable)
        {
            let unsynced = (page.len() - durable.len()) as u64;
            let keep = unsynced * u64::from(permille.min(999)) / 1000;
            let end = durable.len() + keep as usize;
            *after = page[..end].to_vec();
            *after_durable = after.clone();
            report.torn = Some((ino, keep, unsynced));
        }
        self.inodes = kept;
        self.last_written = None;
        report
    }

    /// Makes everything durable (a clean shutdown of the machine: `sync`).
    fn sync_everything(&mut self) {
        for n in self.inodes.values_mut() {
            n.kind.make_durable();
        }
    }
}

/// The FUSE side: every request takes the state's lock.
struct Fs(Arc<Mutex<State>>);

impl Fs {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Answers a request that made (or looked up) an entry.
fn reply_entry(reply: ReplyEntry, made: Result<FileAttr, Errno>) {
    match made {
        Ok(a) => reply.entry(&TTL, &a, Generation(0)),
        Err(e) => reply.error(e),
    }
}

/// Answers a request that only succeeds or fails.
fn reply_empty(reply: ReplyEmpty, done: Result<(), Errno>) {
    match done {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut s = self.state();
        let found = s.child(parent.0, name).map(|ino| s.attr(ino).expect("entry's inode"));
        reply_entry(reply, found);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().attr(ino.0) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = self.state();
        if let Some(size) = size {
            match s.file(ino.0) {
                Ok(f) => f.resize(size as usize, 0),
                Err(e) => return reply.error(e),
            }
            s.last_written = Some(ino.0);
        }
        let Some(n) = s.inodes.get_mut(&ino.0) else { return reply.error(Errno::ENOENT) };
        if let Some(m) = mode {
            n.mode = (m & 0o7777) as u16;
        }
        if let Some(u) = uid {
            n.uid = u;
        }
        if let Some(g) = gid {
            n.gid = g;
        }
        reply.attr(&TTL, &s.attr(ino.0).expect("exists"));
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & S_IFMT != S_IFREG {
            return reply.error(Errno::ENOSYS);
        }
        reply_entry(
            reply,
            self.state().make(parent.0, name, Kind::empty_file(), mode & !umask, (req.uid(), req.gid())),
        );
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        reply_entry(reply, self.state().make(parent.0, name, Kind::empty_dir(), mode & !umask, (req.uid(), req.gid())));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.state();
        let unlinked = s.child(parent.0, name).and_then(|ino| {
            if matches!(s.inodes.get(&ino).map(|n| &n.kind), Some(Kind::Dir { .. })) {
                return Err(Errno::EISDIR);
            }
            s.dir(parent.0)?.remove(name);
            Ok(())
        });
        reply_empty(reply, unlinked);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.state();
        let removed = s.child(parent.0, name).and_then(|ino| {
            if !s.dir(ino)?.is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
            s.dir(parent.0)?.remove(name);
            Ok(())
        });
        reply_empty(reply, removed);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) || flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let mut s = self.state();
        let renamed = s.child(parent.0, name).and_then(|ino| {
            match s.child(newparent.0, newname) {
                Ok(_) if flags.contains(RenameFlags::RENAME_NOREPLACE) => return Err(Errno::EEXIST),
                Ok(old) if matches!(s.dir(old), Ok(d) if !d.is_empty()) => return Err(Errno::ENOTEMPTY),
                Ok(_) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
            s.dir(parent.0)?.remove(name);
            s.dir(newparent.0)?.insert(newname.to_os_string(), ino);
            Ok(())
        });
        reply_empty(reply, renamed);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.state().inodes.get(&ino.0) {
            Some(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut s = self.state();
        match s.file(ino.0) {
            Ok(f) => {
                let start = (offset as usize).min(f.len());
                let end = start.saturating_add(size as usize).min(f.len());
                reply.data(&f[start..end]);
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut s = self.state();
        match s.file(ino.0) {
            Ok(f) => {
                let start = offset as usize;
                if f.len() < start + data.len() {
                    f.resize(start + data.len(), 0);
                }
                f[start..start + data.len()].copy_from_slice(data);
                s.last_written = Some(ino.0);
                reply.written(data.len() as u32);
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply_empty(reply, self.state().sync(ino.0));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.state().dir(ino.0) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let mut s = self.state();
        let entries: Vec<(OsString, u64)> = match s.dir(ino.0) {
            Ok(d) => d.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            Err(e) => return reply.error(e),
        };
        let mut all: Vec<(u64, FileType, OsString)> =
            vec![(ino.0, FileType::Directory, ".".into()), (ino.0, FileType::Directory, "..".into())];
        for (name, child) in entries {
            let kind = match s.inodes.get(&child).map(|n| &n.kind) {
                Some(Kind::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            all.push((child, kind, name));
        }
        for (i, (child, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let mut s = self.state();
        let synced = s.dir(ino.0).map(drop).and_then(|()| s.sync(ino.0));
        reply_empty(reply, synced);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.state().make(parent.0, name, Kind::empty_file(), mode & !umask, (req.uid(), req.gid())) {
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }
}

/// The file-type bits of a mode, and a regular file's (`<sys/stat.h>`).
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;

/// One mounted lazy disk. Unmounted on drop (lazily, so a process still holding a file cannot
/// block the test's end).
pub struct LazyFs {
    mountpoint: PathBuf,
    state: Arc<Mutex<State>>,
    session: Option<fuser::BackgroundSession>,
    /// Cuts made, for the test's figures.
    pub cuts: u32,
}

impl std::fmt::Debug for LazyFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyFs").field("mountpoint", &self.mountpoint).field("cuts", &self.cuts).finish()
    }
}

fn mount_session(path: &Path, state: &Arc<Mutex<State>>) -> std::io::Result<fuser::BackgroundSession> {
    let mut config = Config::default();
    config.mount_options = vec![MountOption::FSName("aerodb-lazyfs".into()), MountOption::RW];
    fuser::spawn_mount(Fs(state.clone()), path, &config)
}

impl LazyFs {
    /// Mounts an empty lazy disk at `path` (created if absent), or says why it cannot.
    pub fn mount(path: &Path) -> Result<Self, String> {
        if !Path::new("/dev/fuse").exists() {
            return Err("/dev/fuse does not exist (no FUSE on this machine)".into());
        }
        std::fs::create_dir_all(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let state = Arc::new(Mutex::new(State::new()));
        let session = mount_session(path, &state)
            .map_err(|e| format!("cannot mount FUSE at {} ({e}); run as root (CI does)", path.display()))?;
        Ok(Self { mountpoint: path.to_path_buf(), state, session: Some(session), cuts: 0 })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Makes everything durable, as `sync` before a clean shutdown.
    pub fn sync_everything(&self) {
        self.state.lock().unwrap().sync_everything();
    }

    /// The power cut. Every process with a file open on this disk must already be dead (SIGKILL
    /// and reaped): the disk is unmounted, everything not durable is thrown away (the last
    /// unsynced append torn as `tear` says), and the durable state is mounted again.
    pub fn power_cut(&mut self, tear: Tear) -> CutReport {
        if let Some(session) = self.session.take() {
            // A killed process's last close can reach the kernel a moment after it is reaped:
            // EBUSY is retried for a bounded time, then the mount is detached.
            let mut unmounted = false;
            for _ in 0..250 {
                let out = std::process::Command::new("umount").arg(&self.mountpoint).output().expect("run umount");
                if out.status.success() {
                    unmounted = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if !unmounted {
                let _ = std::process::Command::new("umount").arg("-l").arg(&self.mountpoint).status();
            }
            let _ = session.join();
        }
        let report = self.state.lock().unwrap().cut(tear);
        self.session = Some(mount_session(&self.mountpoint, &self.state).expect("mount again after a cut"));
        self.cuts += 1;
        report
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.mountpoint).status();
            // The session thread ends once the kernel has released the connection; not waited
            // for, so a straggling process cannot hang the test.
            drop(session.guard);
        }
    }
}

/// Whether a lazy disk can be mounted here: `Err(reason)` to print when skipping.
pub fn available(scratch: &Path) -> Result<(), String> {
    let probe = scratch.join("lazyfs-probe");
    let fs = LazyFs::mount(&probe)?;
    let file = probe.join("probe");
    std::fs::write(&file, b"x").map_err(|e| format!("write through FUSE failed: {e}"))?;
    drop(fs);
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The cut's rules over the disk's state alone (no FUSE mount needed).
    use super::*;

    fn file(s: &mut State, parent: u64, name: &str) -> u64 {
        s.make(parent, OsStr::new(name), Kind::empty_file(), 0o644, (0, 0)).unwrap().ino.0
    }

    fn write(s: &mut State, ino: u64, bytes: &[u8]) {
        s.file(ino).unwrap().extend_from_slice(bytes);
        s.last_written = Some(ino);
    }

    fn content(s: &mut State, name: &str) -> Option<Vec<u8>> {
        let ino = s.child(ROOT, OsStr::new(name)).ok()?;
        Some(s.file(ino).unwrap().clone())
    }

    #[test]
    fn a_file_survives_a_cut_only_once_its_content_and_its_directory_entry_were_synced() {
        let mut s = State::new();
        let ino = file(&mut s, ROOT, "a");
        write(&mut s, ino, b"hello");
        s.sync(ino).unwrap();
        let report = s.cut(Tear::None);
        assert_eq!(content(&mut s, "a"), None, "the entry was never synced");
        assert_eq!((report.entries_dropped, report.files_reset), (1, 0));

        let ino = file(&mut s, ROOT, "a");
        write(&mut s, ino, b"hello");
        s.sync(ROOT).unwrap();
        let report = s.cut(Tear::None);
        assert_eq!(content(&mut s, "a"), Some(Vec::new()), "the entry was synced, the content was not");
        assert_eq!((report.entries_dropped, report.files_reset, report.bytes_dropped), (0, 1, 5));

        let ino = s.child(ROOT, OsStr::new("a")).unwrap();
        write(&mut s, ino, b"hello");
        s.sync(ino).unwrap();
        write(&mut s, ino, b" world");
        s.cut(Tear::None);
        assert_eq!(content(&mut s, "a"), Some(b"hello".to_vec()), "only the synced prefix stays");
    }

    #[test]
    fn a_torn_cut_keeps_a_prefix_of_the_last_unsynced_append_only() {
        let mut s = State::new();
        let ino = file(&mut s, ROOT, "log");
        s.sync(ROOT).unwrap();
        write(&mut s, ino, b"0123");
        s.sync(ino).unwrap();
        write(&mut s, ino, b"4567890123");
        let report = s.cut(Tear::KeepPermille(500));
        assert_eq!(content(&mut s, "log"), Some(b"0123456789"[..9].to_vec()));
        assert_eq!(report.torn, Some((ino, 5, 10)));
        // What the tear kept is durable: a second cut keeps it.
        let report = s.cut(Tear::KeepPermille(500));
        assert_eq!(content(&mut s, "log"), Some(b"012345678".to_vec()));
        assert_eq!(report.torn, None, "nothing was written since");
    }

    #[test]
    fn an_unsynced_unlink_comes_back_and_a_synced_one_does_not() {
        let mut s = State::new();
        let ino = file(&mut s, ROOT, "a");
        s.sync(ROOT).unwrap();
        s.dir(ROOT).unwrap().remove(OsStr::new("a"));
        let report = s.cut(Tear::None);
        assert_eq!(s.child(ROOT, OsStr::new("a")), Ok(ino));
        assert_eq!(report.entries_restored, 1);
        s.dir(ROOT).unwrap().remove(OsStr::new("a"));
        s.sync(ROOT).unwrap();
        s.cut(Tear::None);
        assert_eq!(s.child(ROOT, OsStr::new("a")), Err(Errno::ENOENT));
    }
}
