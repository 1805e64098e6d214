//! The segment directory: file names, listing, unlink and retention sweeps.
//!
//! Each checkpoint is the file `<encoded name>.ckpt`. Names are byte strings:
//! letters, digits and `_-=,.+@` stay as they are and every other byte becomes
//! `%XX`; a name whose encoding would pass 200 bytes becomes `~<128-bit hash>`
//! (the full name is in the header and is checked on open). Segments being
//! created are `.new.<pid>.<n>` until published.
//!
//! There is no daemon on one host, so deletion is cooperative: the last close
//! of a checkpoint without retention deletes it, and any ckpt call that looks at
//! a checkpoint (open, list, the CLI) deletes it once nobody has it open and its
//! retention has run out. Deleting is a claim on the segment's lifecycle word
//! (`DOOMED`), so exactly one process unlinks the file, and an opener that
//! raced it backs off.

use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
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

/// A fresh temporary path for a segment being created.
pub(crate) fn temp_path(dir: &Path) -> PathBuf {
    static COUNTER: StdAtomicU64 = StdAtomicU64::new(0);
    let n = COUNTER.fetch_add(1, StdOrdering::Relaxed);
    // Pids repeat across PID namespaces (every container has a pid 1): a
    // random part keeps two creators' temporaries apart.
    let nonce = crate::segment::new_incarnation();
    dir.join(format!(".new.{}.{n}.{nonce:016x}", std::process::id()))
}

/// The byte of a temporary segment file its creator leases until the file is
/// linked under its name (see `lease`).
pub(crate) const TEMP_LEASE_BYTE: u64 = 0;

/// A temporary nobody leases is abandoned once it is this old (its creator
/// may not have taken the lease yet in the instant after creating it).
const TEMP_ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// Creates the segment directory if it does not exist.
pub(crate) fn ensure_dir(config: &Config) -> io::Result<()> {
    if config.dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(if config.group_access { 0o770 } else { 0o700 })
        .create(&config.dir)
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
        // Filesystems without fallocate (some hugetlbfs setups): stay sparse.
        libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Removes `path` if it is still the file of `mapped` (same inode).
fn remove_if_same(mapped: &Mapped, path: &Path) {
    if std::fs::metadata(path).is_ok_and(|m| m.ino() == mapped.inode) {
        let _ = std::fs::remove_file(path);
    }
}

/// Deletes the checkpoint if nobody has it open: claims `DOOMED`, re-checks the
/// openers (an opener registers before it checks `DOOMED`), then unlinks.
/// Returns true if it was removed.
pub fn doom_and_remove(mapped: &Mapped, path: &Path) -> bool {
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
    remove_if_same(mapped, path);
    true
}

/// Unlinks checkpoint `name`: the name is free at once; processes that have it
/// open keep using it until they close it, and then it is gone.
pub fn unlink(config: &Config, name: &CheckpointName) -> Result<(), UnlinkError> {
    let path = segment_path(&config.dir, name);
    let file = match File::options().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(UnlinkError::NotExist),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(UnlinkError::Permission)
        }
        Err(_) => return Err(UnlinkError::Io),
    };
    let mapped = match segment::map_validated(file, config) {
        Ok(m) => m,
        Err(SegmentFault::Permission) => return Err(UnlinkError::Permission),
        // A damaged or foreign file under a checkpoint's name: free the name.
        Err(SegmentFault::Corrupt | SegmentFault::Incompatible) => {
            return std::fs::remove_file(&path).map_err(|_| UnlinkError::Io);
        }
    };
    if mapped.name() != name {
        return Err(UnlinkError::NotExist);
    }
    // A checkpoint whose retention ran out no longer exists, swept or not.
    if mapped.retention_expired(segment::now()) {
        doom_and_remove(&mapped, &path);
        return Err(UnlinkError::NotExist);
    }
    // The unlink is a logged mutation (replicas and standbys see it): take
    // the claim as a registered, non-opening participant.
    let segment = match Segment::attach(mapped, &path, config) {
        Ok(Some(segment)) => segment,
        Ok(None) => return Err(UnlinkError::NotExist),
        Err(OpenError::NoResources) => return Err(UnlinkError::NoResources),
        Err(_) => return Err(UnlinkError::TryAgain),
    };
    match segment.log_unlink() {
        Ok(()) => {}
        Err(UnlinkFail::Gone) => return Err(UnlinkError::NotExist),
        Err(UnlinkFail::Claim(ClaimFail::Contended)) => return Err(UnlinkError::TryAgain),
        Err(UnlinkFail::Claim(ClaimFail::Replica)) => return Err(UnlinkError::Replica),
    }
    remove_if_same(&segment, &path);
    Ok(())
}

/// One entry of the segment directory.
pub struct Listed {
    /// The file.
    pub path: PathBuf,
    /// The validated segment, or why it was refused.
    pub segment: Result<Mapped, OpenError>,
}

/// Lists the segment directory (after deleting what retention allows).
pub fn list(config: &Config) -> io::Result<Vec<Listed>> {
    let entries = match std::fs::read_dir(&config.dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let now = segment::now();
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if file_name.starts_with(".new.") {
            remove_stale_temp(&entry.path());
            continue;
        }
        if !file_name.ends_with(SEGMENT_SUFFIX) {
            continue;
        }
        let path = entry.path();
        let segment = segment::inspect(config, &path);
        if let Ok(mapped) = &segment {
            if mapped.lifecycle() & LIFECYCLE_DOOMED == 0
                && mapped.retention_expired(now)
                && doom_and_remove(mapped, &path)
            {
                continue;
            }
        }
        out.push(Listed { path, segment });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Removes a `.new.*` temporary whose creator died before publishing it: no
/// description holds its lease, and it is older than a creator needs to take
/// the lease. Never a live creator's, whatever its PID namespace.
fn remove_stale_temp(path: &Path) {
    let Ok(file) = File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    else {
        return;
    };
    let old_enough = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= TEMP_ABANDONED_AFTER);
    if old_enough && !lease::held_by_other(&file, TEMP_LEASE_BYTE) {
        let _ = std::fs::remove_file(path);
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
