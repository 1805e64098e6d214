//! Heartbeats of this process's opener entries: when a process that had a
//! checkpoint open dies, the next process to look at the checkpoint (an
//! open, a listing, a daemon's scan) reaps its entry, and must date the
//! close that the death was (SA §3.1.1: the service closes a terminated
//! process's checkpoints; §3.3.2.2: the retention starts at the last close).
//! A lease says only *that* the opener died, not when, and dating the close
//! at the reaping kept a checkpoint alive long past its retention, and then
//! the reaping open itself kept it (found by an adversarial C program: a
//! SIGKILLed last opener, retention 200 ms, an open 4 s later got the old
//! data).
//!
//! So while a process has checkpoints open, a thread of its own stores the
//! time into each of its entries every [`HEARTBEAT`] (`alive_ns`); the
//! reaper dates the death at most two heartbeats after the last stamp
//! ([`died_by`]), never later than the reaping. The thread waits on a
//! condition variable, so it stops at once when the last entry goes or the
//! process exits (joined there, as the clock's ticker is: a C program under
//! valgrind's leak check exits clean).

use core::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Condvar, Mutex, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::coarse_from_kernel;

/// How often each entry is stamped.
pub const HEARTBEAT: Duration = Duration::from_millis(100);

/// The latest a dead opener can have died, given the last stamp of its
/// entry (`alive_ns`, 0 if it never had one: a process of an earlier build)
/// and the time of the reaping, `now_ns`: two heartbeats after the stamp
/// (one missed while it still lived, and the slack of a late wake-up).
pub fn died_by(alive_ns: i64, now_ns: i64) -> i64 {
    if alive_ns <= 0 {
        return now_ns;
    }
    let slack = 2 * HEARTBEAT.as_nanos() as i64;
    alive_ns.saturating_add(slack).min(now_ns)
}

/// An entry stamped: the address of its `alive_ns` in a mapping, and the
/// process whose entry it is (a `fork`ed child inherits the list, and its
/// copies of the parent's mappings may go without a `forget`: it stamps
/// only its own).
struct Stamped(*const AtomicI64, u32);

// SAFETY: the pointer is dereferenced only under `REGISTRY`'s lock, while
// the entry is registered: its mapping outlives the registration
// (`forget` comes before the unmapping).
unsafe impl Send for Stamped {}

struct Registry {
    entries: Vec<Stamped>,
    /// The stamping thread, and the process that started it (a `fork`ed
    /// child holds its parent's handle of a thread it does not have).
    thread: Option<(JoinHandle<()>, u32)>,
    /// The thread is in its loop (it clears this, under the lock, as it
    /// leaves: a thread seen leaving is joined and another started).
    running: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    entries: Vec::new(),
    thread: None,
    running: false,
});
/// Woken when the thread should look again (the last entry went, or exit).
static WAKE: Condvar = Condvar::new();
/// Set at process exit: the thread stops, and none starts.
static EXITING: AtomicBool = AtomicBool::new(false);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stamps `alive` now and every [`HEARTBEAT`] until [`forget`].
///
/// # Safety
/// `alive` stays valid (mapped) until `forget(alive)` returns.
pub unsafe fn keep(alive: &AtomicI64) {
    static HANDLERS: Once = Once::new();
    HANDLERS.call_once(|| {
        // SAFETY: registers plain functions: the fork handlers take and
        // release the registry's lock in the forking thread (so a child
        // never inherits it held by a thread it does not have); the exit
        // handler runs once, in `exit`.
        unsafe {
            libc::pthread_atfork(Some(fork_prepare), Some(fork_done), Some(fork_done));
            libc::atexit(stop_at_exit);
        }
    });
    alive.store(coarse_from_kernel(), Ordering::Relaxed);
    let me = std::process::id();
    let mut r = registry();
    r.entries.push(Stamped(alive, me));
    let ours = r.thread.as_ref().is_some_and(|(_, pid)| *pid == me);
    if ours && r.running || EXITING.load(Ordering::Relaxed) {
        return;
    }
    if let Some((old, pid)) = r.thread.take() {
        if pid == me {
            // It left its loop (its entries went): done, or nearly.
            let _ = old.join();
        } else {
            std::mem::forget(old); // Our parent's (`fork`): not here.
        }
    }
    let spawned = std::thread::Builder::new()
        .name("ckpt-alive".into())
        .spawn(stamp);
    match spawned {
        Ok(h) => {
            r.thread = Some((h, me));
            r.running = true;
        }
        // No thread (resource limits): no stamps, so a death is dated at
        // its reaping, as before heartbeats.
        Err(_) => alive.store(0, Ordering::Relaxed),
    }
}

/// Stops stamping `alive` (before its mapping goes).
pub fn forget(alive: &AtomicI64) {
    let mut r = registry();
    r.entries.retain(|s| !std::ptr::eq(s.0, alive));
    if r.entries.is_empty() {
        WAKE.notify_all();
    }
}

fn stamp() {
    let mut r = registry();
    loop {
        if EXITING.load(Ordering::Relaxed) || r.entries.is_empty() {
            r.running = false;
            return;
        }
        let (now, me) = (coarse_from_kernel(), std::process::id());
        for s in r.entries.iter().filter(|s| s.1 == me) {
            // SAFETY: registered by this process, so mapped (see `keep`);
            // under the lock.
            unsafe { &*s.0 }.store(now, Ordering::Relaxed);
        }
        r = WAKE
            .wait_timeout(r, HEARTBEAT)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

thread_local! {
    /// The registry's lock, held by the forking thread across `fork`.
    static HELD: std::cell::RefCell<Option<std::sync::MutexGuard<'static, Registry>>> =
        const { std::cell::RefCell::new(None) };
}

extern "C" fn fork_prepare() {
    HELD.with(|h| *h.borrow_mut() = Some(registry()));
}

/// In the parent and in the child after `fork`: releases the lock.
extern "C" fn fork_done() {
    HELD.with(|h| drop(h.borrow_mut().take()));
}

/// At process exit: stops the thread and joins it (in the process that
/// started it; a lock another thread held when `exit` interrupted it is not
/// waited for).
extern "C" fn stop_at_exit() {
    EXITING.store(true, Ordering::Relaxed);
    let Ok(mut r) = REGISTRY.try_lock() else {
        return;
    };
    let thread = r.thread.take();
    drop(r);
    WAKE.notify_all();
    if let Some((h, pid)) = thread {
        if pid == std::process::id() {
            let _ = h.join();
        } else {
            std::mem::forget(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_death_is_dated_two_heartbeats_after_the_last_stamp_at_the_latest() {
        let beat = HEARTBEAT.as_nanos() as i64;
        assert_eq!(died_by(1_000, 1_000 + 10 * beat), 1_000 + 2 * beat);
        // Never after the reaping; no stamp: the reaping.
        assert_eq!(died_by(1_000, 1_000 + beat), 1_000 + beat);
        assert_eq!(died_by(0, 77), 77);
    }

    #[test]
    fn a_kept_entry_is_stamped_until_forgotten() {
        let alive = Box::new(AtomicI64::new(0));
        // SAFETY: `alive` outlives its registration (forgotten below).
        unsafe { keep(&alive) };
        let first = alive.load(Ordering::Relaxed);
        assert!(first > 0);
        std::thread::sleep(HEARTBEAT * 3);
        let later = alive.load(Ordering::Relaxed);
        assert!(later > first, "stamped again: {first} then {later}");
        forget(&alive);
        std::thread::sleep(HEARTBEAT * 2);
        let after = alive.load(Ordering::Relaxed);
        std::thread::sleep(HEARTBEAT * 2);
        assert_eq!(
            alive.load(Ordering::Relaxed),
            after,
            "not stamped once forgotten"
        );
    }
}
