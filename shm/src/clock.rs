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
//!
//! At process exit (`atexit`) the ticker is stopped and joined, so that a
//! C program checked with `valgrind --leak-check=full` (whose default counts
//! a running thread's memory as "possibly lost") exits clean.

use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU8, Ordering};
use std::sync::{Mutex, Once};
use std::thread::JoinHandle;
use std::time::Duration;

/// The last time the ticker stored (ns since the epoch); 0 before the first.
static NOW: AtomicI64 = AtomicI64::new(0);
/// Set by readers, cleared by the ticker: someone is still using the clock.
static USED: AtomicBool = AtomicBool::new(false);
/// [`STOPPED`], [`STARTING`] or [`RUNNING`].
static STATE: AtomicU8 = AtomicU8::new(STOPPED);
/// Set at process exit: the ticker stops at its next tick, and none starts.
static EXITING: AtomicBool = AtomicBool::new(false);
/// The running ticker, to join at exit, and the process that started it (a
/// `fork`ed child has no such thread and must not join it).
static TICKER: Mutex<Option<JoinHandle<()>>> = Mutex::new(None);
static TICKER_PID: AtomicU32 = AtomicU32::new(0);

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
        // SAFETY: registers plain functions with no preconditions; the child
        // handler only stores to atomics (async-signal-safe); the exit
        // handler runs once, in `exit`.
        unsafe {
            libc::pthread_atfork(None, None, Some(forked_child));
            libc::atexit(stop_at_exit);
        }
    });
    if EXITING.load(Ordering::Relaxed)
        || STATE
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
        Ok(handle) => {
            if let Ok(mut ticker) = TICKER.lock() {
                let ours = TICKER_PID.swap(std::process::id(), Ordering::Relaxed);
                if let Some(old) = ticker.replace(handle) {
                    if ours == std::process::id() {
                        // A ticker of ours that stopped for idleness: over.
                        let _ = old.join();
                    } else {
                        // A `fork`ed child holds its parent's handle, of a
                        // thread that does not exist here: never joined.
                        std::mem::forget(old);
                    }
                }
            }
            // SYNC POINT: Release pairs with the Acquire load in `now`: NOW is set.
            STATE.store(RUNNING, Ordering::Release);
        }
        // No thread (resource limits): readers keep asking the kernel.
        Err(_) => STATE.store(STOPPED, Ordering::Release),
    }
}

/// At process exit: stops the ticker and joins it (in the process that
/// started it; a lock held by another thread that `exit` interrupted is
/// not waited for).
extern "C" fn stop_at_exit() {
    EXITING.store(true, Ordering::Relaxed);
    if TICKER_PID.load(Ordering::Relaxed) != std::process::id() {
        return;
    }
    let Ok(mut ticker) = TICKER.try_lock() else {
        return;
    };
    if let Some(handle) = ticker.take() {
        let _ = handle.join();
    }
}

fn tick() {
    let mut idle = 0;
    loop {
        std::thread::sleep(TICK);
        if EXITING.load(Ordering::Relaxed) {
            STATE.store(STOPPED, Ordering::Release);
            return;
        }
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
