//! Change notification: standbys sleep on the log tail with a futex.
//!
//! The futex word is the low half of the `log_tail` `u64` (ckpt is
//! little-endian only). Writers pay one SeqCst fence and one load per mutation
//! to learn whether anyone sleeps; the `FUTEX_WAKE` syscall happens only then.

use std::time::Duration;

use crate::sync::{AtomicU32, AtomicU64};

#[cfg(not(target_endian = "little"))]
compile_error!("ckpt's futex word is the low half of a u64: little-endian targets only");

fn futex_word(tail: &AtomicU64) -> *const u32 {
    (tail as *const AtomicU64).cast::<u32>()
}

/// Sleeps while the low 32 bits of `tail` equal `seen as u32`, at most `timeout`.
/// Returns early on a wake, a signal, or a changed value (callers re-check).
pub fn wait(tail: &AtomicU64, seen: u64, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: the futex word is the first 4 bytes of a live, 8-aligned AtomicU64
    // in a MAP_SHARED mapping that outlives this call; FUTEX_WAIT (not PRIVATE)
    // only reads it, and `ts` lives on this stack frame.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            futex_word(tail),
            libc::FUTEX_WAIT,
            seen as u32,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes every process sleeping on `tail`.
pub fn wake_all(tail: &AtomicU64) {
    // SAFETY: as in `wait`; FUTEX_WAKE reads no user memory beyond the address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            futex_word(tail),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Counts a sleeper for the duration of a wait.
pub struct Sleeper<'a> {
    waiters: &'a AtomicU32,
}

impl<'a> Sleeper<'a> {
    /// Registers a sleeper. SeqCst: pairs with the writer's SeqCst fence in
    /// `Segment::publish` (Dekker: either the writer sees the sleeper and wakes
    /// it, or the sleeper's re-check sees the new tail and does not sleep).
    pub fn register(waiters: &'a AtomicU32) -> Self {
        waiters.fetch_add(1, crate::sync::Ordering::SeqCst);
        Self { waiters }
    }
}

impl Drop for Sleeper<'_> {
    fn drop(&mut self) {
        self.waiters.fetch_sub(1, crate::sync::Ordering::SeqCst);
    }
}
