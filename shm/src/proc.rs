//! This process as a segment records it: its pid and its PID namespace.
//!
//! A pid is only an identity inside one PID namespace, and containers sharing
//! `/dev/shm` have different ones, so ckpt records both for operators and
//! never judges liveness from them: that is the leases' job (`lease`).

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A process as ckpt records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessStamp {
    /// The pid, in its own namespace.
    pub pid: u32,
    /// The inode of `/proc/self/ns/pid` (0 if /proc is not mounted).
    pub pid_ns: u64,
}

/// This process.
pub fn current() -> ProcessStamp {
    static CACHED_NS: AtomicU64 = AtomicU64::new(0);
    static CACHED_PID: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    // A forked child has another pid: it looks its namespace up again (it
    // may have been forked into a new one by `unshare --fork`).
    if CACHED_PID.load(Ordering::Acquire) == pid as u64 {
        return ProcessStamp {
            pid,
            pid_ns: CACHED_NS.load(Ordering::Relaxed),
        };
    }
    let pid_ns = pid_namespace();
    CACHED_NS.store(pid_ns, Ordering::Relaxed);
    CACHED_PID.store(pid as u64, Ordering::Release);
    ProcessStamp { pid, pid_ns }
}

/// The inode of this process's PID namespace, 0 if unknown.
pub fn pid_namespace() -> u64 {
    std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

/// `CLOCK_MONOTONIC` in nanoseconds: comparable between processes on one host
/// (unlike `std::time::Instant`, which cannot be exchanged).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_pid_and_a_namespace() {
        let me = current();
        assert_eq!(me.pid, std::process::id());
        assert_ne!(me.pid_ns, 0, "/proc is mounted where the tests run");
        assert_eq!(current(), me);
    }
}
