//! Liveness that holds across PID namespaces: open-file-description locks.
//!
//! Containers that share `/dev/shm` (a pod, `--ipc=host`, `--ipc=container:`)
//! do not share pids: a pid read from a segment means another process, or
//! none, in the reader's namespace. So ckpt never decides from a pid whether
//! an opener (or a claim holder) is alive. Instead every opener holds a
//! **lease**: a write lock on one byte of the segment file (its opener entry's
//! first byte), taken with `F_OFD_SETLK` on the file description the opener
//! mapped the segment with. The kernel keeps the lock exactly as long as that
//! description is open, drops it when the process dies however it dies, and
//! sees it from every namespace that sees the file. Another process asks with
//! `F_OFD_GETLK` whether the byte is locked: locked means alive.
//!
//! Open-file-description locks (unlike POSIX `F_SETLK` locks) belong to the
//! description, not the process: two opens in one process hold separate
//! leases that conflict with each other, and closing some other descriptor of
//! the same file does not drop them. Segment files are opened `O_CLOEXEC`, so
//! an `exec`ed child does not inherit a lease; a `fork`ed child shares its
//! parent's descriptions, and so its leases: a `Segment` dropped in such a
//! child neither deregisters nor gives the lease up (the registration is the
//! parent's), and the parent's entry counts as alive while the child keeps
//! the description open. `F_OFD_GETLK` never reports the caller's own lock,
//! so a mapping treats its own entry as alive while it is registered.
//!
//! Temporary files of a checkpoint being created carry a lease on their first
//! byte the same way, so a directory sweep removes only abandoned ones.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

fn flock(kind: libc::c_short, byte: u64) -> libc::flock {
    // SAFETY: `flock` is a plain C struct for which all-zero bytes are a valid
    // value (l_pid must be 0 for OFD locks).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = byte as libc::off_t;
    lock.l_len = 1;
    lock
}

fn fcntl(file: &File, cmd: libc::c_int, lock: &mut libc::flock) -> io::Result<()> {
    loop {
        // SAFETY: `lock` is a valid, exclusively borrowed flock for the call;
        // the descriptor is open (borrowed from `file`).
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), cmd, lock as *mut libc::flock) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Takes the lease on `byte` of `file` for this file description. `Ok(false)`
/// if another description holds it.
pub fn try_take(file: &File, byte: u64) -> io::Result<bool> {
    let mut lock = flock(libc::F_WRLCK as libc::c_short, byte);
    match fcntl(file, libc::F_OFD_SETLK, &mut lock) {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives up the lease on `byte` (held by this description; a no-op if not).
pub fn give_up(file: &File, byte: u64) {
    let mut lock = flock(libc::F_UNLCK as libc::c_short, byte);
    // Unlocking a byte this description does not lock succeeds and changes
    // nothing; EINTR is retried. No other error is possible on an open file.
    let _ = fcntl(file, libc::F_OFD_SETLK, &mut lock);
}

/// True if a file description other than `file`'s holds the lease on `byte`.
/// On an error (none is expected on an open file) the holder counts as alive:
/// the caller then waits instead of stealing from a live process.
pub fn held_by_other(file: &File, byte: u64) -> bool {
    let mut lock = flock(libc::F_WRLCK as libc::c_short, byte);
    match fcntl(file, libc::F_OFD_GETLK, &mut lock) {
        Ok(()) => lock.l_type != libc::F_UNLCK as libc::c_short,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> (std::path::PathBuf, File) {
        let path = std::env::temp_dir().join(format!(
            "ckpt-lease-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        file.set_len(4096).unwrap();
        (path, file)
    }

    #[test]
    fn a_lease_is_seen_from_another_description_until_given_up_or_closed() {
        let (path, a) = scratch();
        let b = File::options().read(true).write(true).open(&path).unwrap();
        assert!(!held_by_other(&b, 64));
        assert!(try_take(&a, 64).unwrap());
        assert!(held_by_other(&b, 64), "b sees a's lease");
        assert!(!held_by_other(&a, 64), "a does not conflict with itself");
        assert!(!try_take(&b, 64).unwrap(), "one holder at a time");
        assert!(try_take(&b, 128).unwrap(), "other bytes are other leases");
        give_up(&a, 64);
        assert!(!held_by_other(&b, 64));
        assert!(try_take(&a, 64).unwrap());
        drop(a);
        assert!(!held_by_other(&b, 64), "closing the description drops it");
        std::fs::remove_file(&path).unwrap();
    }
}
