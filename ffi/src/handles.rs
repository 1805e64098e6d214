//! Handle tables: what a C handle (`SaCkptHandleT`,
//! `SaCkptCheckpointHandleT`, `SaCkptSectionIterationHandleT`) names.
//!
//! A handle is `generation << 32 | kind << 24 | index`. The generation of an
//! entry changes whenever it is freed, so a stale handle (finalized, closed)
//! never names the entry's next occupant, and the kind byte makes a handle of
//! one type passed as another fail the lookup: both give `BAD_HANDLE`, as does
//! any garbage value. Handle 0 is never issued.
//!
//! Each table holds at most [`HANDLES_MAX`] entries (then `NO_RESOURCES`),
//! allocated zeroed at the first insert (untouched pages cost nothing).
//!
//! **Lookups take no lock.** A call *pins* the entry (one atomic add), checks
//! that the entry's word still says "live, generation g", uses the object, and
//! unpins. Removal marks the word dead (a new generation), then waits until
//! no call has the entry pinned before it takes the object out; the calls
//! that pinned it before the mark finish with it, and those after it see the
//! dead word and answer `BAD_HANDLE`. The pin and the word form a Dekker pair
//! (both sides SeqCst: a pin then a load of the word; a store of the word then
//! a load of the pins), so a call never uses an object that removal took. The
//! loom model below checks it. Loom models SeqCst accesses as AcqRel, which
//! is too weak for a Dekker pair, so under loom each side also has a SeqCst
//! fence between its two accesses: that is what the accesses' single total
//! order gives (C++20 [atomics.order]) and what x86's locked add and `xchg`
//! do; production code needs no extra fence. Inserts and removals are serialized by a mutex
//! that also holds the free list; lookups never take it.
//!
//! **Handles belong to the process that got them.** A fork handler counts
//! the forks this process is the child of; each entry records the count
//! when it was filled, and a lookup or removal whose count differs fails:
//! a forked child's copies of its parent's handles are `BAD_HANDLE` (its
//! checkpoints and selection object are the parent's; a child that wrote
//! through them would hold the parent's writer claim under the parent's
//! lease, where nobody could recover it if the child died).

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::sync::{spin_hint, AtomicU32, AtomicU64, Ordering, UnsafeCell};

/// Entries per table.
pub const HANDLES_MAX: usize = 1 << 16;

/// What a handle names (its kind byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// `SaCkptHandleT`.
    Library = 0x51,
    /// `SaCkptCheckpointHandleT`.
    Checkpoint = 0x52,
    /// `SaCkptSectionIterationHandleT`.
    Iteration = 0x53,
}

/// The entry word: `generation << 1 | live`.
const LIVE: u64 = 1;

struct Entry<T> {
    word: AtomicU64,
    pins: AtomicU32,
    /// The process's fork count when the entry was filled.
    forks: AtomicU64,
    value: UnsafeCell<Option<Arc<T>>>,
}

// SAFETY: `value` is written only by the inserter and the remover (serialized
// by the table's mutex) while no call can read it (the word is dead and, for
// removal, no pins remain), and read by calls only while their pin and the
// live word keep removal out; `T` crosses threads inside an `Arc`.
unsafe impl<T: Send + Sync> Sync for Entry<T> {}

impl<T> Entry<T> {
    /// True if the entry was filled in this process (not inherited by fork).
    /// Read after the live word, which published it.
    fn ours(&self) -> bool {
        // `insert` registered the fork handler before filling the entry.
        self.forks.load(Ordering::Relaxed) == FORKS.load(core::sync::atomic::Ordering::Relaxed)
    }
}

/// Forks this process has been the child of (see the module docs).
static FORKS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

#[cfg(not(loom))]
extern "C" fn forked_child() {
    FORKS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
}

/// This process's fork count, registering the fork handler on first use.
fn forks() -> u64 {
    #[cfg(not(loom))]
    {
        static REGISTERED: std::sync::Once = std::sync::Once::new();
        REGISTERED.call_once(|| {
            // SAFETY: registers a plain function with no preconditions; the
            // child handler only increments an atomic (async-signal-safe).
            unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
        });
    }
    FORKS.load(core::sync::atomic::Ordering::Relaxed)
}

struct FreeList {
    /// Entries never used yet start here.
    next: usize,
    freed: Vec<u32>,
}

/// One kind's handles.
pub struct Table<T> {
    kind: Kind,
    capacity: usize,
    entries: OnceLock<Box<[Entry<T>]>>,
    free: Mutex<FreeList>,
}

/// The table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl<T: Send + Sync> Table<T> {
    /// An empty table of [`HANDLES_MAX`] entries.
    pub const fn new(kind: Kind) -> Self {
        Self::with_capacity(kind, HANDLES_MAX)
    }

    /// An empty table of `capacity` entries (at most 2^24).
    pub const fn with_capacity(kind: Kind, capacity: usize) -> Self {
        Table {
            kind,
            capacity,
            entries: OnceLock::new(),
            free: Mutex::new(FreeList {
                next: 0,
                freed: Vec::new(),
            }),
        }
    }

    fn entries(&self) -> &[Entry<T>] {
        self.entries.get_or_init(|| {
            (0..self.capacity)
                .map(|_| Entry {
                    word: AtomicU64::new(0),
                    pins: AtomicU32::new(0),
                    forks: AtomicU64::new(0),
                    value: UnsafeCell::new(None),
                })
                .collect()
        })
    }

    fn free_list(&self) -> MutexGuard<'_, FreeList> {
        // Every update of the list is one push, pop or increment: a panic
        // cannot leave it half-done, so a poisoned lock guards valid data.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry and the live word `handle` names, if it is one of ours.
    fn decode(&self, handle: u64) -> Option<(&Entry<T>, u64)> {
        let generation = handle >> 32;
        let kind = (handle >> 24) as u8;
        let index = (handle & 0xff_ffff) as usize;
        if kind != self.kind as u8 || generation == 0 || index >= self.capacity {
            return None;
        }
        Some((self.entries().get(index)?, generation << 1 | LIVE))
    }

    /// Stores `value`; returns its new handle.
    pub fn insert(&self, value: Arc<T>) -> Result<u64, Full> {
        let mut free = self.free_list();
        let index = match free.freed.pop() {
            Some(i) => i as usize,
            None if free.next < self.capacity => {
                free.next += 1;
                free.next - 1
            }
            None => return Err(Full),
        };
        let entry = &self.entries()[index];
        // Only inserts and removals (serialized by `free`) store the word.
        let generation = (entry.word.load(Ordering::Relaxed) >> 1).max(1);
        // SAFETY: the word is dead (never live, or removed: removal waited
        // for the pins to drain), so no call reads `value`; we hold `free`.
        entry.value.with_mut(|v| unsafe { *v = Some(value) });
        // Published with the value by the word's store below.
        entry.forks.store(forks(), Ordering::Relaxed);
        // SYNC POINT: Release (SeqCst) pairs with the SeqCst load in `pin`:
        // a call that sees the live word sees the value.
        entry.word.store(generation << 1 | LIVE, Ordering::SeqCst);
        Ok(generation << 32 | (self.kind as u64) << 24 | index as u64)
    }

    /// Runs `f` on the object `handle` names, if it is live; the object
    /// cannot be removed while `f` runs.
    #[inline]
    pub fn with<R>(&self, handle: u64, f: impl FnOnce(&Arc<T>) -> R) -> Option<R> {
        let (entry, live) = self.decode(handle)?;
        // SYNC POINT: SeqCst add, then SeqCst load of the word: Dekker with
        // `remove` (SeqCst store of the word, then SeqCst loads of the pins).
        entry.pins.fetch_add(1, Ordering::SeqCst);
        #[cfg(loom)]
        crate::sync::fence(Ordering::SeqCst);
        let result = if entry.word.load(Ordering::SeqCst) == live && entry.ours() {
            // SAFETY: the word is live with our generation and we are pinned:
            // removal has not taken the value and will not until we unpin;
            // inserts do not touch a live entry.
            entry.value.with(|v| unsafe { (*v).as_ref() }.map(f))
        } else {
            None
        };
        // SYNC POINT: Release pairs with the loads of the pins in `remove`:
        // our use of the value happens before its removal.
        entry.pins.fetch_sub(1, Ordering::Release);
        result
    }

    /// The object `handle` names, if it is live (a new reference to it).
    pub fn get(&self, handle: u64) -> Option<Arc<T>> {
        self.with(handle, Arc::clone)
    }

    /// Frees `handle`: later lookups fail; waits for the calls using it to
    /// finish. Returns its object.
    pub fn remove(&self, handle: u64) -> Option<Arc<T>> {
        let (entry, live) = self.decode(handle)?;
        let mut free = self.free_list();
        if entry.word.load(Ordering::Relaxed) != live || !entry.ours() {
            return None;
        }
        // A new generation, dead (never 0: handle 0 is never valid).
        let next = match (live >> 1) + 1 {
            g if g >= 1 << 32 => 1,
            g => g,
        };
        // SYNC POINT: SeqCst store, then SeqCst loads of the pins: Dekker
        // with `with`.
        entry.word.store(next << 1, Ordering::SeqCst);
        #[cfg(loom)]
        crate::sync::fence(Ordering::SeqCst);
        while entry.pins.load(Ordering::SeqCst) != 0 {
            spin_hint();
        }
        // SAFETY: the word is dead and no call is pinned (any later pin sees
        // the dead word and does not read); we hold `free`.
        let value = entry.value.with_mut(|v| unsafe { (*v).take() });
        let index = (handle & 0xff_ffff) as u32;
        free.freed.push(index);
        value
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn stale_garbage_and_cross_kind_handles_fail() {
        let a: Table<u8> = Table::new(Kind::Library);
        let b: Table<u8> = Table::new(Kind::Checkpoint);
        let h = a.insert(Arc::new(7)).unwrap();
        assert_eq!(a.get(h).as_deref(), Some(&7));
        assert!(b.get(h).is_none(), "another kind's handle");
        for garbage in [0, 1, 12345, u64::MAX, h ^ (1 << 40), h | 0xff_ffff] {
            assert!(a.get(garbage).is_none(), "{garbage:#x}");
        }
        assert!(a.remove(h).is_some());
        assert!(a.get(h).is_none(), "stale");
        assert!(a.remove(h).is_none(), "freed twice");
        let h2 = a.insert(Arc::new(8)).unwrap();
        assert_ne!(h, h2, "the entry's next occupant has a new generation");
        assert!(a.get(h).is_none());
        assert_eq!(a.with(h2, |v| **v), Some(8));
    }

    #[test]
    fn a_full_table_refuses() {
        let a: Table<()> = Table::with_capacity(Kind::Iteration, 64);
        for _ in 0..64 {
            a.insert(Arc::new(())).unwrap();
        }
        assert_eq!(a.insert(Arc::new(())), Err(Full));
    }

    #[test]
    fn removal_waits_for_calls_in_progress() {
        let t: Arc<Table<AtomicU64>> = Arc::new(Table::with_capacity(Kind::Checkpoint, 4));
        let h = t.insert(Arc::new(AtomicU64::new(0))).unwrap();
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let user = {
            let t = t.clone();
            std::thread::spawn(move || {
                t.with(h, |v| {
                    entered_tx.send(()).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    v.store(1, Ordering::SeqCst);
                })
            })
        };
        entered_rx.recv().unwrap();
        let taken = t.remove(h).expect("removed");
        // The call finished with the object before removal returned it.
        assert_eq!(taken.load(Ordering::SeqCst), 1);
        assert_eq!(user.join().unwrap(), Some(()));
        assert!(t.with(h, |_| ()).is_none());
    }
}

/// The pin protocol under loom: a call racing a removal either uses the
/// object before it is taken or answers "no such handle"; never both, never
/// a use after the take (loom's `UnsafeCell` reports a racing access).
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;

    #[test]
    fn loom_a_call_racing_removal_never_uses_a_taken_object() {
        loom::model(|| {
            let t: Arc<Table<u32>> = Arc::new(Table::with_capacity(Kind::Checkpoint, 1));
            let h = t.insert(Arc::new(5)).unwrap();
            let caller = {
                let t = t.clone();
                loom::thread::spawn(move || t.with(h, |v| **v))
            };
            let taken = t.remove(h);
            assert_eq!(taken.as_deref(), Some(&5));
            let seen = caller.join().unwrap();
            assert!(seen.is_none() || seen == Some(5));
            assert!(t.with(h, |v| **v).is_none());
        });
    }

    #[test]
    fn loom_reuse_after_removal_is_a_new_generation() {
        loom::model(|| {
            let t: Arc<Table<u32>> = Arc::new(Table::with_capacity(Kind::Checkpoint, 1));
            let old = t.insert(Arc::new(1)).unwrap();
            let caller = {
                let t = t.clone();
                loom::thread::spawn(move || t.with(old, |v| **v))
            };
            t.remove(old).unwrap();
            let new = t.insert(Arc::new(2)).unwrap();
            assert_ne!(old, new);
            // A call with the old handle sees the old object or nothing.
            let seen = caller.join().unwrap();
            assert!(seen.is_none() || seen == Some(1));
            assert_eq!(t.with(new, |v| **v), Some(2));
        });
    }
}
