//! The writers' wall clock: `lastUpdate` and frame times at 1 ms resolution,
//! read in about a nanosecond.
//!
//! Reading `CLOCK_REALTIME_COARSE` through the vDSO costs about 10 ns on the
//! development VM, half of a 64-byte write's budget, for a value that only
//! changes every kernel tick (4 ms at HZ=250). So the first writer of a process
//! starts a ticker thread that stores the coarse clock into a process-wide
//! word every millisecond; writers load that word. The ticker exits after a
//! second in which no writer read it, and the next read restarts it. Until the
//! ticker has published a value (and after a `fork`, in the child, which has
//! no ticker), a read falls back to `clock_gettime`.

use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};
use std::sync::Once;
use std::time::Duration;

/// The last time the ticker stored (ns since the epoch); 0 before the first.
static NOW: AtomicI64 = AtomicI64::new(0);
/// Set by readers, cleared by the ticker: someone is still using the clock.
static USED: AtomicBool = AtomicBool::new(false);
/// [`STOPPED`], [`STARTING`] or [`RUNNING`].
static STATE: AtomicU8 = AtomicU8::new(STOPPED);

const STOPPED: u8 = 0;
const STARTING: u8 = 1;
const RUNNING: u8 = 2;

/// How often the ticker stores the time.
const TICK: Duration = Duration::from_millis(1);
/// Ticks without a reader before the ticker exits.
const IDLE_TICKS_MAX: u32 = 1000;

/// `CLOCK_REALTIME_COARSE` from the kernel (a vDSO call).
#[inline]
pub fn coarse_from_kernel() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// The wall clock at 1 ms resolution (ns since the epoch), for writers.
#[inline]
pub fn now() -> i64 {
    // Read-mostly: store only when the ticker cleared it, so that writers on
    // several threads do not bounce the line.
    if !USED.load(Ordering::Relaxed) {
        USED.store(true, Ordering::Relaxed);
    }
    if STATE.load(Ordering::Acquire) == RUNNING {
        let now = NOW.load(Ordering::Relaxed);
        if now != 0 {
            return now;
        }
    }
    start_ticker();
    coarse_from_kernel()
}

#[cold]
fn start_ticker() {
    static AT_FORK: Once = Once::new();
    AT_FORK.call_once(|| {
        // SAFETY: registers a plain function with no preconditions; the child
        // handler only stores to atomics (async-signal-safe).
        unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
    });
    if STATE
        .compare_exchange(STOPPED, STARTING, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    NOW.store(coarse_from_kernel(), Ordering::Relaxed);
    let spawned = std::thread::Builder::new()
        .name("ckpt-clock".into())
        .spawn(tick);
    match spawned {
        // SYNC POINT: Release pairs with the Acquire load in `now`: NOW is set.
        Ok(_) => STATE.store(RUNNING, Ordering::Release),
        // No thread (resource limits): readers keep asking the kernel.
        Err(_) => STATE.store(STOPPED, Ordering::Release),
    }
}

fn tick() {
    let mut idle = 0;
    loop {
        std::thread::sleep(TICK);
        NOW.store(coarse_from_kernel(), Ordering::Relaxed);
        if USED.swap(false, Ordering::Relaxed) {
            idle = 0;
        } else {
            idle += 1;
            if idle >= IDLE_TICKS_MAX {
                STATE.store(STOPPED, Ordering::Release);
                // A reader that raced the stop restarts a ticker; a second
                // one for a moment is harmless.
                return;
            }
        }
    }
}

extern "C" fn forked_child() {
    // The child has no ticker thread: fall back to the kernel until a new
    // one starts.
    STATE.store(STOPPED, Ordering::Relaxed);
    NOW.store(0, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticked_clock_follows_the_kernel_within_a_few_ticks() {
        for _ in 0..50 {
            let ours = now();
            let kernel = coarse_from_kernel();
            // The kernel's coarse clock moves every tick (up to 10 ms at HZ=100);
            // ours lags it by at most a few of our 1 ms ticks.
            assert!((kernel - ours).abs() < 50_000_000, "{ours} vs {kernel}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
