//! The segment directory: file names, listing, unlink and retention sweeps.
//!
//! Each checkpoint is the file `<encoded name>.ckpt`. Names are byte strings:
//! letters, digits and `_-=,.+@` stay as they are and every other byte becomes
//! `%XX`; a name whose encoding would pass 200 bytes becomes `~<128-bit hash>`
//! (the full name is in the header and is checked on open). Segments being
//! created are `.new.<pid>.<n>.<random>` until published.
//!
//! There is no daemon on one host, so deletion is cooperative: the last close
//! of a checkpoint without retention deletes it, and any ckpt call that looks at
//! a checkpoint (open, list, the CLI) deletes it once nobody has it open and its
//! retention has run out. Deleting is a claim on the segment's lifecycle word
//! (`DOOMED`), so exactly one process unlinks the file, and an opener that
//! raced it backs off.

use std::ffi::{CStr, CString, OsString};
use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64 as StdAtomicU64, Ordering as StdOrdering};

use ckpt_core::error::{OpenError, UnlinkError};
use ckpt_core::CheckpointName;

use crate::layout::LIFECYCLE_DOOMED;
use crate::lease;
use crate::ops::checkpoint::UnlinkFail;
use crate::ops::ClaimFail;
use crate::segment::{self, Config, Mapped, Segment, SegmentFault};
use crate::sync::Ordering;

/// Extension of segment files.
pub const SEGMENT_SUFFIX: &str = ".ckpt";

/// The fence marker's name in the segment directory: present while this
/// host's node daemon says its partition of the cluster has no quorum (or
/// it has not learnt yet that it has). A checkpoint created while it is
/// there starts fenced (`Segment::fence`), so no primary is born writable
/// on the side of a partition that must not write.
pub const FENCE_MARKER: &str = ".ckpt-fenced";

/// True if the fence marker is in `config`'s directory.
pub fn fence_marked(config: &Config) -> bool {
    config.dir.join(FENCE_MARKER).symlink_metadata().is_ok()
}

/// Puts the fence marker in `config`'s directory (`on`) or removes it.
pub fn set_fence_marker(config: &Config, on: bool) -> io::Result<()> {
    let path = config.dir.join(FENCE_MARKER);
    if on {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .map(drop)
    } else {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
const ENCODED_BYTES_MAX: usize = 200;

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(seed, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The file name of checkpoint `name`.
///
/// ```
/// use ckpt_core::CheckpointName;
/// use ckpt_shm::dir::file_name;
/// assert_eq!(file_name(&CheckpointName::new("safCkpt=csa103").unwrap()), "safCkpt=csa103.ckpt");
/// assert_eq!(file_name(&CheckpointName::new("a/b c").unwrap()), "a%2Fb%20c.ckpt");
/// ```
pub fn file_name(name: &CheckpointName) -> String {
    let mut encoded = String::new();
    for (i, &b) in name.as_bytes().iter().enumerate() {
        let plain = b.is_ascii_alphanumeric() || (b"_-=,+@".contains(&b)) || (b == b'.' && i > 0);
        if plain {
            encoded.push(b as char);
        } else {
            let _ = write!(encoded, "%{b:02X}");
        }
    }
    if encoded.len() > ENCODED_BYTES_MAX {
        let bytes = name.as_bytes();
        encoded = format!(
            "~{:016x}{:016x}",
            fnv1a(bytes, 0xcbf2_9ce4_8422_2325),
            fnv1a(bytes, 0x6c62_272e_07bb_0142)
        );
    }
    encoded.push_str(SEGMENT_SUFFIX);
    encoded
}

/// The path of checkpoint `name` in `dir`.
pub fn segment_path(dir: &Path, name: &CheckpointName) -> PathBuf {
    dir.join(file_name(name))
}

/// True if `config`'s directory holds a file for checkpoint `name` (one
/// published: a copy being created or installed has a temporary name until
/// it is complete). Whether it opens is the open's to say.
pub fn is_present(config: &Config, name: &CheckpointName) -> bool {
    std::fs::symlink_metadata(segment_path(&config.dir, name)).is_ok()
}

/// A fresh temporary name for a segment being created.
pub(crate) fn temp_name() -> String {
    static COUNTER: StdAtomicU64 = StdAtomicU64::new(0);
    let n = COUNTER.fetch_add(1, StdOrdering::Relaxed);
    // Pids repeat across PID namespaces (every container has a pid 1): a
    // random part keeps two creators' temporaries apart.
    let nonce = crate::segment::new_incarnation();
    format!(".new.{}.{n}.{nonce:016x}", std::process::id())
}

/// The byte of a temporary segment file its creator leases until the file is
/// linked under its name (see `lease`).
pub(crate) const TEMP_LEASE_BYTE: u64 = 0;

/// A temporary nobody leases is abandoned once it is this old (its creator
/// may not have taken the lease yet in the instant after creating it).
const TEMP_ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the segment directory cannot be used.
#[derive(Debug)]
pub enum DirFault {
    /// It is a symlink, or another user owns it, or users ckpt does not trust
    /// can write to it (see [`SegmentDir::open`]).
    Untrusted,
    /// It could not be created or opened.
    Io(io::Error),
}

impl From<DirFault> for OpenError {
    fn from(f: DirFault) -> OpenError {
        match f {
            DirFault::Untrusted => OpenError::UntrustedDir,
            DirFault::Io(e) if e.kind() == io::ErrorKind::NotFound => OpenError::NotExist,
            DirFault::Io(e) => segment::io_to_open_error(&e),
        }
    }
}

/// Why a file in the segment directory cannot be opened as a segment.
#[derive(Debug)]
pub(crate) enum FileFault {
    /// No such file.
    NotFound,
    /// A symlink, a directory, a FIFO, a device: anything but a regular file.
    NotRegular,
    /// Another error.
    Io(io::Error),
}

impl From<FileFault> for OpenError {
    fn from(f: FileFault) -> OpenError {
        match f {
            FileFault::NotFound => OpenError::NotExist,
            FileFault::NotRegular => OpenError::Permission,
            FileFault::Io(e) => segment::io_to_open_error(&e),
        }
    }
}

/// The segment directory, opened and checked once; every file operation on
/// it is relative to that descriptor and never follows a symlink, so renaming
/// or replacing the directory, or planting symlinks in it, cannot redirect a
/// ckpt call to another file.
#[derive(Debug)]
pub struct SegmentDir {
    fd: OwnedFd,
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `fstatat` without following a final symlink.
fn stat_at(dir: &OwnedFd, name: &CStr) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstatat writes a stat into the buffer we own; the descriptor is
    // open and `name` is NUL-terminated.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat returned 0, so it initialized the struct.
    Ok(unsafe { st.assume_init() })
}

fn stat_fd(fd: &impl AsRawFd) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a stat into the buffer we own; the fd is open.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat returned 0, so it initialized the struct.
    Ok(unsafe { st.assume_init() })
}

fn is_regular(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// True if this process is a member of group `gid` (effective or supplementary).
pub(crate) fn in_group(gid: libc::gid_t) -> bool {
    // SAFETY: getegid has no preconditions.
    if unsafe { libc::getegid() } == gid {
        return true;
    }
    // SAFETY: getgroups with size 0 only returns how many groups there are.
    let count = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let mut groups = vec![0 as libc::gid_t; count.max(0) as usize];
    // SAFETY: getgroups writes at most `groups.len()` ids into the buffer.
    let n = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
    n > 0 && groups[..n as usize].contains(&gid)
}

impl SegmentDir {
    /// Opens the configured directory, with `create` creating it (and missing
    /// parents) if absent: mode 0700, or with group access 02770 (group members share it;
    /// the setgid bit gives new segments its group). It is trusted if its last
    /// component is not a symlink, others cannot write to it, the group can
    /// only with group access and if this process is in that group, and it is
    /// owned by this user or by root, or (with group access) its group is one
    /// this process is in.
    pub fn open(config: &Config, create: bool) -> Result<SegmentDir, DirFault> {
        let path = &config.dir;
        let mode = if config.group_access { 0o2770 } else { 0o700 };
        let mut created = false;
        if create && std::fs::symlink_metadata(path).is_err() {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(mode)
                    .create(parent)
                    .map_err(DirFault::Io)?;
            }
            // The last component alone: `created` only if this call made it.
            match std::fs::DirBuilder::new().mode(mode).create(path) {
                Ok(()) => created = true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(DirFault::Io(e)),
            }
        }
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| DirFault::Io(io::Error::from(io::ErrorKind::InvalidInput)))?;
        // SAFETY: open with a NUL-terminated path; the result is checked.
        let raw = unsafe {
            libc::open(
                c_path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                // The last component is a symlink (O_DIRECTORY may report
                // ENOTDIR for one before O_NOFOLLOW reports ELOOP).
                Some(libc::ELOOP) => DirFault::Untrusted,
                Some(libc::ENOTDIR)
                    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink()) =>
                {
                    DirFault::Untrusted
                }
                _ => DirFault::Io(e),
            });
        }
        // SAFETY: `raw` is a descriptor we just opened and own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if created {
            // The umask may have narrowed the mode (and drops setgid on some
            // systems): set it exactly, through the descriptor (a path could
            // have been swapped for a symlink to someone else's directory).
            // SAFETY: fchmod on a descriptor we own.
            if unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) } != 0 {
                return Err(DirFault::Io(io::Error::last_os_error()));
            }
        }
        let st = stat_fd(&fd).map_err(DirFault::Io)?;
        if !Self::trusted(&st, config) {
            return Err(DirFault::Untrusted);
        }
        Ok(SegmentDir { fd })
    }

    fn trusted(st: &libc::stat, config: &Config) -> bool {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        let mode = st.st_mode & 0o7777;
        if mode & 0o002 != 0 {
            return false;
        }
        let group_shared = config.group_access && in_group(st.st_gid);
        if mode & 0o020 != 0 && !group_shared {
            return false;
        }
        st.st_uid == euid || st.st_uid == 0 || group_shared
    }

    /// Opens the existing regular file `name` for reading and writing: a
    /// symlink, a FIFO, a device or a directory there is refused before it is
    /// opened, and one swapped in meanwhile after (the open itself neither
    /// follows a symlink nor blocks on a FIFO). A regular file swapped in
    /// meanwhile (a checkpoint re-created under its name) is simply opened.
    pub(crate) fn open_file(&self, name: &str) -> Result<File, FileFault> {
        let c = c_name(name).map_err(FileFault::Io)?;
        let before = match stat_at(&self.fd, &c) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(FileFault::NotFound),
            Err(e) => return Err(FileFault::Io(e)),
        };
        if !is_regular(&before) {
            return Err(FileFault::NotRegular);
        }
        let flags =
            libc::O_RDWR | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
        // SAFETY: openat on our open directory with a NUL-terminated name.
        let raw = unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags) };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENOENT) => FileFault::NotFound,
                Some(libc::ELOOP) => FileFault::NotRegular,
                _ => FileFault::Io(e),
            });
        }
        // SAFETY: `raw` is a descriptor we just opened and own.
        let file = unsafe { File::from_raw_fd(raw) };
        if !is_regular(&stat_fd(&file).map_err(FileFault::Io)?) {
            return Err(FileFault::NotRegular);
        }
        Ok(file)
    }

    /// Creates the new file `name` (never an existing one, never through a
    /// symlink) with mode `mode`.
    pub(crate) fn create_file(&self, name: &str, mode: u32) -> io::Result<File> {
        let c = c_name(name)?;
        let flags =
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: openat on our open directory with a NUL-terminated name.
        let raw =
            unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags, mode as libc::c_uint) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we just opened and own.
        Ok(unsafe { File::from_raw_fd(raw) })
    }

    /// Links the existing `from` as `to` (failing if `to` exists).
    pub(crate) fn link(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: linkat within our open directory; flags 0: a symlink at
        // `from` is linked itself, never followed.
        if unsafe { libc::linkat(fd, from.as_ptr(), fd, to.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Renames `from` to `to` in one step, replacing `to` if it exists.
    pub(crate) fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: renameat within our open directory, NUL-terminated names.
        if unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Removes the directory entry `name` (a symlink itself, not its target).
    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        let c = c_name(name)?;
        // SAFETY: unlinkat within our open directory, NUL-terminated name.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The inode of the entry `name` (not following a symlink), if any.
    pub(crate) fn inode(&self, name: &str) -> Option<u64> {
        stat_at(&self.fd, &c_name(name).ok()?)
            .ok()
            .map(|st| st.st_ino)
    }

    /// The names in the directory (without `.` and `..`).
    pub(crate) fn names(&self) -> io::Result<Vec<OsString>> {
        // fdopendir takes ownership of its descriptor: give it a duplicate.
        let dup = self.fd.try_clone()?;
        // SAFETY: fdopendir on a directory descriptor we own; on success the
        // DIR owns it (closedir closes it), on failure we still own it.
        let dirp = unsafe { libc::fdopendir(dup.as_raw_fd()) };
        if dirp.is_null() {
            return Err(io::Error::last_os_error());
        }
        std::mem::forget(dup);
        // The directory may have been read before through another duplicate
        // (descriptors share their position): start at the beginning.
        // SAFETY: dirp is a live DIR.
        unsafe { libc::rewinddir(dirp) };
        let mut names = Vec::new();
        let result = loop {
            // readdir returns null at the end and on an error; only an error
            // sets errno.
            // SAFETY: errno is this thread's; writing it is how POSIX says to
            // tell the two apart.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: dirp is a live DIR.
            let entry = unsafe { libc::readdir(dirp) };
            if entry.is_null() {
                let error = io::Error::last_os_error();
                break match error.raw_os_error() {
                    Some(0) | None => Ok(()),
                    Some(_) => Err(error),
                };
            }
            // SAFETY: d_name of a returned entry is NUL-terminated and valid
            // until the next readdir on this DIR; it is copied out at once.
            let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
            let bytes = name.to_bytes();
            if bytes != b"." && bytes != b".." {
                names.push(OsString::from_vec(bytes.to_vec()));
            }
        };
        // SAFETY: dirp is live and closed once.
        unsafe { libc::closedir(dirp) };
        // An error part-way is an error, not a shorter listing.
        result.map(|()| names)
    }
}

/// The filesystem's block size (the huge page size on hugetlbfs).
pub(crate) fn fs_block_bytes(file: &File) -> Option<u64> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: fstatfs writes a statfs into the buffer we own; the fd is open.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: fstatfs returned 0, so it initialized the struct.
    let st = unsafe { st.assume_init() };
    Some(st.f_bsize as u64)
}

/// Allocates bytes `at..at + len` of the file now, so later page faults there
/// cannot hit a full filesystem.
pub(crate) fn preallocate_range(file: &File, at: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: posix_fallocate on an open fd; it validates the range itself.
    let rc =
        unsafe { libc::posix_fallocate(file.as_raw_fd(), at as libc::off_t, len as libc::off_t) };
    match rc {
        0 => Ok(()),
        // Filesystems without fallocate, where glibc's fallback of writing a
        // byte per block is refused too: nothing better can be done (hugetlbfs
        // reserves its pages when the file is mapped).
        libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Deletes the checkpoint if nobody has it open: claims `DOOMED`, re-checks the
/// openers (an opener registers before it checks `DOOMED`), then unlinks.
/// Returns true if it was removed.
pub fn doom_and_remove(mapped: &Mapped) -> bool {
    let h = mapped.header();
    // SYNC POINT: SeqCst, Dekker with `register_opener` (register, then load the
    // lifecycle) against this (doom, then scan the openers).
    if h.lifecycle
        .compare_exchange(0, LIFECYCLE_DOOMED, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return false;
    }
    if mapped.reap_openers(segment::now()) != 0 {
        h.lifecycle.fetch_and(!LIFECYCLE_DOOMED, Ordering::SeqCst);
        return false;
    }
    mapped.remove_name_if_same();
    true
}

/// Maps and validates the segment file `name` of `dir`.
pub(crate) fn inspect_in(
    dir: &SegmentDir,
    name: &str,
    config: &Config,
) -> Result<Mapped, OpenError> {
    let file = dir.open_file(name)?;
    Ok(segment::map_validated(file, name.to_string(), config)?)
}

/// Unlinks checkpoint `name`: the name is free at once; processes that have it
/// open keep using it until they close it, and then it is gone.
pub fn unlink(config: &Config, name: &CheckpointName) -> Result<(), UnlinkError> {
    let dir = match SegmentDir::open(config, false) {
        Ok(dir) => dir,
        Err(DirFault::Untrusted) => return Err(UnlinkError::Permission),
        Err(DirFault::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
            return Err(UnlinkError::NotExist)
        }
        Err(DirFault::Io(_)) => return Err(UnlinkError::Io),
    };
    let file_name = file_name(name);
    let file = match dir.open_file(&file_name) {
        Ok(f) => f,
        Err(FileFault::NotFound) => return Err(UnlinkError::NotExist),
        // A symlink, FIFO or other non-file under a checkpoint's name: free
        // the name (the entry itself goes, never what it points to).
        Err(FileFault::NotRegular) => return free_name(&dir, &file_name),
        Err(FileFault::Io(e)) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(UnlinkError::Permission)
        }
        Err(FileFault::Io(_)) => return Err(UnlinkError::Io),
    };
    let mapped = match segment::map_validated(file, file_name.clone(), config) {
        Ok(m) => m,
        Err(SegmentFault::Permission) => return Err(UnlinkError::Permission),
        // A damaged or foreign file under a checkpoint's name: free the name.
        Err(SegmentFault::Corrupt | SegmentFault::Incompatible) => {
            return free_name(&dir, &file_name);
        }
    };
    if mapped.name() != name {
        return Err(UnlinkError::NotExist);
    }
    // A checkpoint whose retention ran out no longer exists, swept or not.
    if mapped.retention_expired(segment::now()) {
        doom_and_remove(&mapped);
        return Err(UnlinkError::NotExist);
    }
    // The unlink is a logged mutation (replicas and standbys see it): take
    // the claim as a registered, non-opening participant.
    let path = config.dir.join(&file_name);
    let segment = match Segment::attach(mapped, &path, config) {
        Ok(Some(segment)) => segment,
        Ok(None) => return Err(UnlinkError::NotExist),
        Err(OpenError::NoResources) => return Err(UnlinkError::NoResources),
        Err(_) => return Err(UnlinkError::TryAgain),
    };
    match segment.log_unlink() {
        Ok(()) => {}
        Err(UnlinkFail::Gone) => return Err(UnlinkError::NotExist),
        Err(UnlinkFail::Claim(ClaimFail::Contended | ClaimFail::NoQuorum)) => {
            return Err(UnlinkError::TryAgain)
        }
        Err(UnlinkFail::Claim(ClaimFail::Replica)) => return Err(UnlinkError::Replica),
    }
    segment.remove_name_if_same();
    Ok(())
}

/// Removes the entry `name` that is not a checkpoint; someone else removing
/// it first is fine (the name is free either way).
fn free_name(dir: &SegmentDir, name: &str) -> Result<(), UnlinkError> {
    match dir.remove(name) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(UnlinkError::NotExist),
        Err(_) => Err(UnlinkError::Io),
    }
}

/// One entry of the segment directory.
pub struct Listed {
    /// The file.
    pub path: PathBuf,
    /// The validated segment, or why it was refused.
    pub segment: Result<Mapped, OpenError>,
    /// Nobody had it open and its retention had run out: this listing deleted
    /// it (`segment` is the mapping as it was).
    pub removed: bool,
}

/// Lists the segment directory, deleting checkpoints whose retention ran out
/// with nobody having them open (they are listed with `removed`, so callers
/// can say so). An untrusted directory is an error of kind `PermissionDenied`.
pub fn list(config: &Config) -> io::Result<Vec<Listed>> {
    let dir = match SegmentDir::open(config, false) {
        Ok(dir) => dir,
        Err(DirFault::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(DirFault::Io(e)) => return Err(e),
        Err(DirFault::Untrusted) => {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                OpenError::UntrustedDir.to_string(),
            ))
        }
    };
    let now = segment::now();
    let mut out = Vec::new();
    for name in dir.names()? {
        let Some(name) = name.to_str() else {
            continue; // Not a name ckpt makes (they are ASCII).
        };
        if name.starts_with(".new.") {
            remove_stale_temp(&dir, name);
            continue;
        }
        if !name.ends_with(SEGMENT_SUFFIX) {
            continue;
        }
        let segment = inspect_in(&dir, name, config);
        let removed = segment.as_ref().is_ok_and(|mapped| {
            mapped.lifecycle() & LIFECYCLE_DOOMED == 0
                && mapped.retention_expired(now)
                && doom_and_remove(mapped)
        });
        let path = config.dir.join(name);
        out.push(Listed {
            path,
            segment,
            removed,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Removes a `.new.*` temporary whose creator died before publishing it: no
/// description holds its lease, and it is older than a creator needs to take
/// the lease. Never a live creator's, whatever its PID namespace.
fn remove_stale_temp(dir: &SegmentDir, name: &str) {
    let Ok(file) = dir.open_file(name) else {
        return;
    };
    let old_enough = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= TEMP_ABANDONED_AFTER);
    if old_enough && !lease::held_by_other(&file, TEMP_LEASE_BYTE) {
        let _ = dir.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_encode_safely_and_distinctly() {
        let n = |s: &[u8]| file_name(&CheckpointName::new(s).unwrap());
        assert_eq!(n(b"plain"), "plain.ckpt");
        assert_eq!(n(b".hidden"), "%2Ehidden.ckpt");
        assert_eq!(n(b"../x"), "%2E.%2Fx.ckpt");
        assert_eq!(n(b"%41"), "%2541.ckpt");
        assert_ne!(n(b"%41"), n(b"A"));
        let long_a = n(&[b'a'; 256]);
        let long_b = n(&[b'b'; 256]);
        assert!(long_a.starts_with('~') && long_a.len() < 60);
        assert_ne!(long_a, long_b);
        assert!(!n(&[0xff, b'/']).contains('/'));
    }
}
