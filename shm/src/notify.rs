//! Futex waits on segment words: standbys sleep on the log tail, writers on
//! the claim.
//!
//! The futex word is the low half of a `u64` (ckpt is little-endian only), or
//! for the claim its high half (the epoch). Writers pay a load per kind of
//! sleeper per mutation to learn whether anyone sleeps; the `FUTEX_WAKE`
//! syscall happens only then.

use std::time::Duration;

use crate::sync::{AtomicU32, AtomicU64};

#[cfg(not(target_endian = "little"))]
compile_error!("ckpt's futex word is the low half of a u64: little-endian targets only");

fn futex_word(word: &AtomicU64) -> *const u32 {
    (word as *const AtomicU64).cast::<u32>()
}

/// Sleeps while the 32-bit word at `word` equals `seen`, at most `timeout`.
///
/// # Safety
/// `word` points to a live, 4-aligned `u32` that other processes change only
/// atomically, in memory that outlives the call.
unsafe fn futex_wait(word: *const u32, seen: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: the caller vouches for `word`; FUTEX_WAIT (not PRIVATE: the
    // word is in a MAP_SHARED mapping) only reads it; `ts` lives on this frame.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAIT,
            seen,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes every process sleeping on the 32-bit word at `word`.
fn futex_wake_all(word: *const u32) {
    // SAFETY: FUTEX_WAKE reads no user memory: the address only names the queue.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Sleeps while the low 32 bits of `word` equal `seen as u32`, at most
/// `timeout`. Returns early on a wake, a signal, or a changed value (callers
/// re-check).
pub fn wait(word: &AtomicU64, seen: u64, timeout: Duration) {
    // SAFETY: the futex word is the first 4 bytes of a live, 8-aligned
    // AtomicU64 in a mapping that outlives this call (borrowed here).
    unsafe { futex_wait(futex_word(word), seen as u32, timeout) }
}

/// Wakes every process sleeping on `word`.
pub fn wake_all(word: &AtomicU64) {
    futex_wake_all(futex_word(word))
}

fn futex_word_high(word: &AtomicU64) -> *const u32 {
    // The high half of a little-endian u64: its second 4 bytes.
    futex_word(word).wrapping_add(1)
}

/// Sleeps while the high 32 bits of `word` equal `(seen >> 32) as u32`, at
/// most `timeout` (the claim's epoch, which every release and steal bumps).
pub fn wait_high(word: &AtomicU64, seen: u64, timeout: Duration) {
    // SAFETY: bytes 4..8 of a live, 8-aligned AtomicU64 (4-aligned) in a
    // mapping that outlives this call (borrowed here).
    unsafe { futex_wait(futex_word_high(word), (seen >> 32) as u32, timeout) }
}

/// Wakes every process sleeping on the high half of `word`.
pub fn wake_all_high(word: &AtomicU64) {
    futex_wake_all(futex_word_high(word))
}

/// Sleeps while `word` equals `seen`, at most `timeout` (same contract as
/// [`wait`]).
pub fn wait32(word: &AtomicU32, seen: u32, timeout: Duration) {
    // SAFETY: a live AtomicU32, borrowed for the call.
    unsafe { futex_wait(word.as_ptr(), seen, timeout) }
}

/// Wakes every process sleeping on `word`.
pub fn wake_all32(word: &AtomicU32) {
    futex_wake_all(word.as_ptr())
}

/// Counts a sleeper for the duration of a wait.
pub struct Sleeper<'a> {
    waiters: &'a AtomicU32,
}

impl<'a> Sleeper<'a> {
    /// Registers a sleeper. SeqCst: pairs with the waker's SeqCst load of the
    /// count after its change (Dekker: either the waker sees the sleeper and
    /// wakes it, or the sleeper's re-check sees the change and does not
    /// sleep). Claim sleepers rely on a bounded sleep instead (see
    /// `claim_sleep`).
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
