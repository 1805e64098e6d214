//! The writer claim: one word that serializes a checkpoint's mutations.
//!
//! Mutations must enter the delta log in the order they take effect, and a
//! writer killed halfway must be finished or undone by whoever comes next. ckpt
//! gets both from one [`ClaimWord`]: a writer takes it with one compare-and-swap
//! (uncontended: a few nanoseconds, no syscall), records its intent, mutates,
//! and releases it with one store. Readers never touch it.
//!
//! A waiter spins briefly (a mutation takes tens of nanoseconds), then checks
//! whether the holder is still alive (its lease, see `lease`); if not, it
//! **steals** the claim (bumping the epoch so no stale CAS can succeed) and
//! runs recovery from the intent record. Otherwise it sleeps (a futex on the
//! claim word, woken by the release, at most a millisecond) and checks again,
//! so a holder stopped by a debugger or a frozen cgroup costs the others
//! microseconds of CPU per millisecond, not a spinning core. If a live holder
//! keeps it past the deadline, the waiter gives up with `TRY_AGAIN`. Every
//! loop here is bounded.

use crate::layout::ClaimWord;
use crate::sync::{spin_hint, AtomicU64, Ordering};

/// Spins before a waiter checks the holder's liveness and starts sleeping.
pub const SPINS_BEFORE_SLEEP: u32 = 256;

/// Who is asking: an opener-table entry (index + 1) and its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Opener-table index + 1 (never 0).
    pub entry: u16,
    /// The entry's generation.
    pub gen: u16,
}

/// How a claim was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// From a free claim.
    Free(ClaimWord),
    /// Stolen from a dead holder: the caller must run recovery before mutating.
    Stolen(ClaimWord),
}

impl Acquired {
    /// The word now in the claim.
    pub fn word(self) -> ClaimWord {
        match self {
            Acquired::Free(w) | Acquired::Stolen(w) => w,
        }
    }
}

/// The claim could not be taken before the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contended {
    /// The holder at the deadline.
    pub holder: ClaimWord,
}

/// Tries once to take a free claim.
#[inline]
pub fn try_acquire(claim: &AtomicU64, me: Owner) -> Result<ClaimWord, ClaimWord> {
    // The CAS below validates whatever we read, so Relaxed is enough here.
    let current = ClaimWord::from(claim.load(Ordering::Relaxed));
    if current.owner != 0 {
        return Err(current);
    }
    let mine = ClaimWord {
        owner: me.entry,
        owner_gen: me.gen,
        epoch: current.epoch,
    };
    // SYNC POINT: Acquire pairs with the Release store in `release`: the
    // previous holder's mutations (and its cleared intent) are visible.
    claim
        .compare_exchange(
            current.value(),
            mine.value(),
            Ordering::Acquire,
            Ordering::Relaxed,
        )
        .map(|_| mine)
        .map_err(ClaimWord::from)
}

/// Takes the claim, stealing it from a dead holder.
///
/// `holder_alive(word)` says whether the holder named in `word` still runs;
/// `expired()` says whether the caller's deadline has passed; `wait(word)`
/// sleeps a bounded time or until the claim changes from `word`. All three
/// are called only while the claim is held by someone else, after a short spin.
pub fn acquire(
    claim: &AtomicU64,
    me: Owner,
    mut holder_alive: impl FnMut(ClaimWord) -> bool,
    mut expired: impl FnMut() -> bool,
    mut wait: impl FnMut(ClaimWord),
) -> Result<Acquired, Contended> {
    let mut spins = 0u32;
    loop {
        match try_acquire(claim, me) {
            Ok(word) => return Ok(Acquired::Free(word)),
            Err(held) if held.owner == 0 => continue,
            Err(held) => {
                if spins < SPINS_BEFORE_SLEEP {
                    spins += 1;
                    spin_hint();
                    continue;
                }
                if !holder_alive(held) {
                    let mine = ClaimWord {
                        owner: me.entry,
                        owner_gen: me.gen,
                        epoch: held.epoch.wrapping_add(1),
                    };
                    // SYNC POINT: AcqRel: Acquire pairs with the dead holder's
                    // last Release stores (its intent record); Release publishes
                    // the new epoch to other would-be stealers.
                    if claim
                        .compare_exchange(
                            held.value(),
                            mine.value(),
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        return Ok(Acquired::Stolen(mine));
                    }
                    continue;
                }
                if expired() {
                    return Err(Contended { holder: held });
                }
                wait(held);
            }
        }
    }
}

/// Releases a claim held as `held`.
#[inline]
pub fn release(claim: &AtomicU64, held: ClaimWord) {
    let free = ClaimWord {
        owner: 0,
        owner_gen: 0,
        epoch: held.epoch.wrapping_add(1),
    };
    // SYNC POINT: Release pairs with the Acquire CAS in `try_acquire`/`acquire`.
    claim.store(free.value(), Ordering::Release);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const A: Owner = Owner { entry: 1, gen: 1 };
    const B: Owner = Owner { entry: 2, gen: 5 };

    #[test]
    fn free_claim_is_taken_and_released() {
        let claim = AtomicU64::new(0);
        let w = try_acquire(&claim, A).unwrap();
        assert_eq!(w.owner, 1);
        assert_eq!(try_acquire(&claim, B).unwrap_err().owner, 1);
        release(&claim, w);
        assert_eq!(try_acquire(&claim, B).unwrap().owner, 2);
    }

    #[test]
    fn dead_holders_are_robbed_live_ones_time_out() {
        let claim = AtomicU64::new(0);
        let held = try_acquire(&claim, A).unwrap();
        let mut polls = 0;
        let mut waits = 0;
        let err = acquire(
            &claim,
            B,
            |_| true,
            || {
                polls += 1;
                polls > 3
            },
            |w| {
                assert_eq!(w, held);
                waits += 1;
            },
        )
        .unwrap_err();
        assert_eq!(err.holder, held);
        assert_eq!(waits, 3, "a live holder is waited for between checks");
        match acquire(&claim, B, |w| w.owner != 1, || false, |_| ()).unwrap() {
            Acquired::Stolen(w) => {
                assert_eq!((w.owner, w.owner_gen), (2, 5));
                assert_eq!(w.epoch, held.epoch + 1);
            }
            other => panic!("expected a steal, got {other:?}"),
        }
    }
}

#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use crate::sync::AtomicU64 as Cell;
    use loom::sync::Arc;

    /// Mutual exclusion: two claimants never hold the claim at once, and the
    /// second sees the first's writes.
    #[test]
    fn claim_excludes_and_publishes() {
        loom::model(|| {
            let claim = Arc::new(AtomicU64::new(0));
            let data = Arc::new(Cell::new(0));
            let run = |me: Owner, claim: Arc<AtomicU64>, data: Arc<Cell>| {
                move || {
                    let held = acquire(
                        &claim,
                        me,
                        |_| true,
                        || false,
                        |_| loom::thread::yield_now(),
                    )
                    .unwrap()
                    .word();
                    let v = data.load(Ordering::Relaxed);
                    data.store(v + 1, Ordering::Relaxed);
                    release(&claim, held);
                }
            };
            let t =
                loom::thread::spawn(run(Owner { entry: 1, gen: 0 }, claim.clone(), data.clone()));
            run(Owner { entry: 2, gen: 0 }, claim.clone(), data.clone())();
            t.join().unwrap();
            assert_eq!(data.load(Ordering::Relaxed), 2);
        });
    }
}
