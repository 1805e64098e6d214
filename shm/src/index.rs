//! The section index: a lock-free open-addressing hash table of [`BucketWord`]s.
//!
//! Lookups run concurrently with everything and never block: a bucket is one
//! atomic word naming a slot and the slot's generation, and a lookup confirms a
//! candidate against the slot's own life word and id bytes, then re-reads the
//! bucket (generation counters rule out ABA). A hit is therefore always right;
//! a *miss* is validated against the index sequence word (below) and retried,
//! a bounded number of times, if the table was being compacted meanwhile.
//!
//! Inserts and removals are made by the claim holder only (the single mutator,
//! which is what gives the delta log its total order), with single-word stores:
//!
//! - insert takes the first tombstone of the probe sequence, else its first
//!   empty bucket, after checking the whole sequence for a duplicate;
//! - remove writes a tombstone, and trims the run of tombstones that ends at an
//!   empty bucket (no probe sequence leads past an empty bucket);
//! - when tombstones pass an eighth of the table, the mutator **compacts**: with
//!   the sequence word odd, it moves each entry back into the first tombstone of
//!   its own probe range (copy, then tombstone the old bucket) and then empties
//!   every tombstone, which after that pass no probe sequence needs. A compaction
//!   cut short by a crash leaves duplicates and an odd sequence word; recovery
//!   compacts again, dropping duplicates and entries whose slot is not live.
//!
//! The table has at least twice as many buckets as `maxSections`; every loop
//! here is bounded by the bucket count.

use crate::layout::{bucket_state, BucketWord};
use crate::sync::{fence, spin_hint, AtomicU64, Ordering};

/// Misses retried while a compaction runs, before a lookup gives up.
pub const LOOKUP_ATTEMPTS_MAX: u32 = 1 << 16;

/// 64-bit FNV-1a with a final avalanche (MurmurHash3's fmix64): stable across
/// processes and builds, which an on-shm table needs.
#[inline]
pub fn hash_id(id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The tag stored in a bucket for hash `h` (14 high bits).
pub const fn tag_of(h: u64) -> u16 {
    (h >> 50) as u16
}

/// Why an insert position could not be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// A live entry with the same id exists.
    Exist,
    /// No empty or tombstone bucket on the whole probe sequence.
    Full,
}

/// A lookup kept missing while compactions ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsettled;

/// A view of the bucket array and its sequence word.
pub struct Index<'a> {
    buckets: &'a [AtomicU64],
    seq: &'a AtomicU64,
}

impl<'a> Index<'a> {
    /// Wraps a bucket array whose length is a power of two.
    pub fn new(buckets: &'a [AtomicU64], seq: &'a AtomicU64) -> Self {
        assert!(
            buckets.len().is_power_of_two(),
            "bucket count must be a power of two"
        );
        Self { buckets, seq }
    }

    fn mask(&self) -> u64 {
        self.buckets.len() as u64 - 1
    }

    /// Finds the live entry for hash `h` that `confirm` accepts.
    ///
    /// `confirm(word)` is called for live buckets with the right tag; it checks
    /// the slot (life word, generation, id bytes) and returns its answer. The
    /// bucket is re-read afterwards, so a confirmation raced by a delete and
    /// reuse is discarded and probing goes on.
    #[inline]
    pub fn lookup<T>(
        &self,
        h: u64,
        mut confirm: impl FnMut(BucketWord) -> Option<T>,
    ) -> Result<Option<T>, Unsettled> {
        for _ in 0..LOOKUP_ATTEMPTS_MAX {
            // SYNC POINT: Acquire pairs with the Release store that ends a
            // compaction in `compact`.
            let seq = self.seq.load(Ordering::Acquire);
            if seq % 2 == 1 {
                spin_hint();
                continue;
            }
            if let Some(found) = self.probe(h, &mut confirm) {
                return Ok(Some(found));
            }
            // SYNC POINT: Acquire fence pairs with the Release fence after the
            // odd store in `compact`: a probe that saw any compaction store
            // sees the sequence word move.
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == seq {
                return Ok(None);
            }
        }
        Err(Unsettled)
    }

    #[inline]
    fn probe<T>(&self, h: u64, confirm: &mut impl FnMut(BucketWord) -> Option<T>) -> Option<T> {
        let tag = tag_of(h);
        let mut i = h & self.mask();
        for _ in 0..self.buckets.len() {
            let bucket = &self.buckets[i as usize];
            // SYNC POINT: Acquire pairs with the Release store in `store`: the
            // slot's reservation (id bytes) is visible.
            let raw = bucket.load(Ordering::Acquire);
            let word = BucketWord::from(raw);
            match word.state {
                bucket_state::EMPTY => return None,
                bucket_state::LIVE if word.tag == tag => {
                    if let Some(found) = confirm(word) {
                        // SYNC POINT: Acquire pairs with the Release stores in
                        // `store`/`remove`, re-validating the candidate.
                        if bucket.load(Ordering::Acquire) == raw {
                            return Some(found);
                        }
                    }
                }
                _ => {}
            }
            i = (i + 1) & self.mask();
        }
        None
    }

    /// Where an entry for hash `h` should go. `is_same(word)` says whether a
    /// live bucket holds the same id (a live slot). Mutator only.
    pub fn insert_position(
        &self,
        h: u64,
        mut is_same: impl FnMut(BucketWord) -> bool,
    ) -> Result<u64, InsertError> {
        let tag = tag_of(h);
        let mut i = h & self.mask();
        let mut first_tombstone = None;
        for _ in 0..self.buckets.len() {
            let word = self.get(i);
            match word.state {
                bucket_state::EMPTY => return Ok(first_tombstone.unwrap_or(i)),
                bucket_state::LIVE => {
                    if word.tag == tag && is_same(word) {
                        return Err(InsertError::Exist);
                    }
                }
                _ => {
                    first_tombstone.get_or_insert(i);
                }
            }
            i = (i + 1) & self.mask();
        }
        first_tombstone.ok_or(InsertError::Full)
    }

    /// Finds the bucket holding `word` exactly (mutator's bookkeeping).
    pub fn position_of(&self, h: u64, word: BucketWord) -> Option<u64> {
        let mut i = h & self.mask();
        for _ in 0..self.buckets.len() {
            let at = self.get(i);
            if at == word {
                return Some(i);
            }
            if at.state == bucket_state::EMPTY {
                return None;
            }
            i = (i + 1) & self.mask();
        }
        None
    }

    /// Reads bucket `i`.
    pub fn get(&self, i: u64) -> BucketWord {
        // SYNC POINT: Acquire pairs with the Release store in `store`.
        BucketWord::from(self.buckets[i as usize].load(Ordering::Acquire))
    }

    /// Stores `word` into bucket `i`. Mutator only.
    pub fn store(&self, i: u64, word: BucketWord) {
        // SYNC POINT: Release pairs with the Acquire loads in `probe`/`get`.
        self.buckets[i as usize].store(word.value(), Ordering::Release);
    }

    /// Turns bucket `i` into a tombstone and trims the run of tombstones that
    /// ends at an empty bucket. Mutator only.
    pub fn remove(&self, i: u64) {
        let word = self.get(i);
        self.store(
            i,
            BucketWord {
                state: bucket_state::TOMBSTONE,
                ..word
            },
        );
        let mask = self.mask();
        if self.get((i + 1) & mask).state != bucket_state::EMPTY {
            return;
        }
        let mut j = i;
        for _ in 0..self.buckets.len() {
            if self.get(j).state != bucket_state::TOMBSTONE {
                break;
            }
            self.store(j, BucketWord::default());
            j = j.wrapping_sub(1) & mask;
        }
    }

    /// Tombstones in the table.
    pub fn tombstones(&self) -> usize {
        (0..self.buckets.len() as u64)
            .filter(|&i| self.get(i).state == bucket_state::TOMBSTONE)
            .count()
    }

    /// True when tombstones are numerous enough to compact.
    pub fn wants_compaction(&self) -> bool {
        self.tombstones() > self.buckets.len() / 8
    }

    /// True if a compaction was cut short (the sequence word is odd).
    pub fn interrupted(&self) -> bool {
        self.seq.load(Ordering::Acquire) % 2 == 1
    }

    /// Moves entries back into tombstones and empties every tombstone.
    ///
    /// `hash_of(word)` returns the hash of the id of the live slot a bucket
    /// names, or `None` if that slot is not live with that generation (such
    /// entries are dropped). Mutator only; safe to rerun after a crash.
    pub fn compact(&self, mut hash_of: impl FnMut(BucketWord) -> Option<u64>) {
        let mask = self.mask();
        let n = self.buckets.len() as u64;
        let seq = self.seq.load(Ordering::Relaxed);
        let odd = seq | 1;
        self.seq.store(odd, Ordering::Relaxed);
        // SYNC POINT: Release fence pairs with the Acquire fence in `lookup`:
        // the odd value is ordered before every bucket store below.
        fence(Ordering::Release);
        // Start right after an empty bucket, at a chain boundary (there is
        // always one: the table is at least half free).
        let start = (0..n).find(|&i| self.get(i).state == bucket_state::EMPTY);
        let start = start.map_or(0, |e| (e + 1) & mask);
        for k in 0..n {
            let j = (start + k) & mask;
            let word = self.get(j);
            if word.state != bucket_state::LIVE {
                continue;
            }
            let Some(h) = hash_of(word) else {
                self.store(
                    j,
                    BucketWord {
                        state: bucket_state::TOMBSTONE,
                        ..word
                    },
                );
                continue;
            };
            let mut i = h & mask;
            while i != j {
                let at = self.get(i);
                if at == word {
                    // A duplicate left by an interrupted compaction.
                    self.store(
                        j,
                        BucketWord {
                            state: bucket_state::TOMBSTONE,
                            ..word
                        },
                    );
                    break;
                }
                if at.state != bucket_state::LIVE {
                    self.store(i, word);
                    self.store(
                        j,
                        BucketWord {
                            state: bucket_state::TOMBSTONE,
                            ..word
                        },
                    );
                    break;
                }
                i = (i + 1) & mask;
            }
        }
        for i in 0..n {
            if self.get(i).state == bucket_state::TOMBSTONE {
                self.store(i, BucketWord::default());
            }
        }
        // SYNC POINT: Release pairs with the Acquire load in `lookup`.
        self.seq.store(odd.wrapping_add(1), Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A model mutator: ids live in a map slot -> id.
    struct Table {
        seq: AtomicU64,
        buckets: Vec<AtomicU64>,
        ids: HashMap<u32, Vec<u8>>,
        next_slot: u32,
    }

    impl Table {
        fn new(n: usize) -> Self {
            Self {
                seq: AtomicU64::new(0),
                buckets: (0..n).map(|_| AtomicU64::new(0)).collect(),
                ids: HashMap::new(),
                next_slot: 0,
            }
        }
        fn find(&self, id: &[u8]) -> Option<(u64, u32)> {
            let index = Index::new(&self.buckets, &self.seq);
            let h = hash_id(id);
            let mut at = h & (self.buckets.len() as u64 - 1);
            // Remember the bucket index for removals by probing once more.
            let slot = index
                .lookup(h, |w| (self.ids.get(&w.slot)? == id).then_some(w.slot))
                .unwrap()?;
            for _ in 0..self.buckets.len() {
                let w = index.get(at);
                if w.state == bucket_state::LIVE && w.slot == slot {
                    return Some((at, slot));
                }
                at = (at + 1) & (self.buckets.len() as u64 - 1);
            }
            unreachable!()
        }
        fn insert(&mut self, id: &[u8]) -> Result<u32, InsertError> {
            let h = hash_id(id);
            let ids = &self.ids;
            let pos = Index::new(&self.buckets, &self.seq)
                .insert_position(h, |w| ids.get(&w.slot).map(|v| &v[..]) == Some(id))?;
            let slot = self.next_slot;
            self.next_slot += 1;
            self.ids.insert(slot, id.to_vec());
            Index::new(&self.buckets, &self.seq).store(
                pos,
                BucketWord {
                    state: bucket_state::LIVE,
                    tag: tag_of(h),
                    gen: 0,
                    slot,
                },
            );
            Ok(slot)
        }
        fn remove(&mut self, id: &[u8]) -> bool {
            match self.find(id) {
                Some((at, slot)) => {
                    let index = Index::new(&self.buckets, &self.seq);
                    index.remove(at);
                    self.ids.remove(&slot);
                    if index.wants_compaction() {
                        let ids = &self.ids;
                        index.compact(|w| ids.get(&w.slot).map(|id| hash_id(id)));
                    }
                    true
                }
                None => false,
            }
        }
    }

    #[test]
    fn insert_find_remove_and_duplicates() {
        let mut t = Table::new(16);
        let a = t.insert(b"a").unwrap();
        assert_eq!(t.insert(b"a"), Err(InsertError::Exist));
        let b = t.insert(b"b").unwrap();
        assert_eq!(t.find(b"a").map(|x| x.1), Some(a));
        assert_eq!(t.find(b"b").map(|x| x.1), Some(b));
        assert!(t.remove(b"a"));
        assert_eq!(t.find(b"a"), None);
        assert_eq!(t.find(b"b").map(|x| x.1), Some(b));
        assert!(!t.remove(b"a"));
    }

    #[test]
    fn churn_never_loses_entries_and_reclaims_tombstones() {
        // Keep 8 live ids in a 16-bucket table while cycling 2000 creates and deletes.
        let mut t = Table::new(16);
        let mut live: Vec<Vec<u8>> = Vec::new();
        for round in 0u32..2000 {
            let id = round.to_be_bytes().to_vec();
            if live.len() == 8 {
                let victim = live.remove((round as usize * 7) % 8);
                assert!(t.remove(&victim));
            }
            t.insert(&id).unwrap();
            live.push(id);
            for l in &live {
                assert!(t.find(l).is_some(), "lost {l:?} at round {round}");
            }
            let index = Index::new(&t.buckets, &t.seq);
            assert!(
                (0..16).any(|i| index.get(i).state == bucket_state::EMPTY),
                "no empty bucket left at round {round}"
            );
        }
    }

    #[test]
    fn an_interrupted_compaction_is_finished_by_the_next_one() {
        let mut t = Table::new(16);
        for i in 0u8..6 {
            t.insert(&[i]).unwrap();
        }
        // Simulate a crash mid-move: duplicate bucket contents and an odd sequence.
        let index = Index::new(&t.buckets, &t.seq);
        let (at, _) = t.find(&[3]).unwrap();
        let empty = (0..16)
            .find(|&i| index.get(i).state == bucket_state::EMPTY)
            .unwrap();
        index.store(empty, index.get(at));
        t.seq.store(7, Ordering::Relaxed);
        assert!(index.interrupted());
        let ids = &t.ids;
        index.compact(|w| ids.get(&w.slot).map(|id| hash_id(id)));
        assert!(!index.interrupted());
        let live = (0..16)
            .filter(|&i| index.get(i).state == bucket_state::LIVE)
            .count();
        assert_eq!(live, 6, "duplicate not dropped");
        for i in 0u8..6 {
            assert!(t.find(&[i]).is_some());
        }
    }

    #[test]
    fn a_full_table_refuses_inserts() {
        let mut t = Table::new(8);
        for i in 0u8..8 {
            t.insert(&[i]).unwrap();
        }
        assert_eq!(t.insert(b"x"), Err(InsertError::Full));
    }
}

#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;

    /// A lookup racing with the mutator's delete-then-reinsert of another id on
    /// the same chain never misses the id that stays.
    #[test]
    fn lookups_never_miss_a_stable_entry() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            // Two entries with the same home bucket 0 (tags differ): A at 0, B at 1.
            let live = |slot, tag| {
                BucketWord {
                    state: bucket_state::LIVE,
                    tag,
                    gen: 0,
                    slot,
                }
                .value()
            };
            let seq = Arc::new(AtomicU64::new(0));
            let buckets: Arc<Vec<AtomicU64>> = Arc::new(vec![
                AtomicU64::new(live(1, 1)),
                AtomicU64::new(live(2, 2)),
                AtomicU64::new(0),
                AtomicU64::new(0),
            ]);
            let mutator = {
                let (buckets, seq) = (buckets.clone(), seq.clone());
                loom::thread::spawn(move || {
                    let index = Index::new(&buckets, &seq);
                    // Delete A (bucket 0 becomes a tombstone: B is behind it).
                    index.remove(0);
                    // Insert C with tag 3: it reuses the tombstone.
                    let pos = index.insert_position(3 << 50, |_| false).unwrap();
                    assert_eq!(pos, 0);
                    index.store(
                        pos,
                        BucketWord {
                            state: bucket_state::LIVE,
                            tag: 3,
                            gen: 0,
                            slot: 3,
                        },
                    );
                })
            };
            let index = Index::new(&buckets, &seq);
            let found = index.lookup(2 << 50, |w| (w.slot == 2).then_some(w.slot));
            assert_eq!(found, Ok(Some(2)), "lookup of B missed it");
            mutator.join().unwrap();
        });
    }

    /// A lookup racing a compaction that moves its entry backwards still finds it.
    #[test]
    fn lookups_survive_compaction() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let seq = Arc::new(AtomicU64::new(0));
            let tomb = BucketWord {
                state: bucket_state::TOMBSTONE,
                tag: 1,
                gen: 0,
                slot: 1,
            }
            .value();
            let b = BucketWord {
                state: bucket_state::LIVE,
                tag: 2,
                gen: 0,
                slot: 2,
            }
            .value();
            let buckets: Arc<Vec<AtomicU64>> = Arc::new(vec![
                AtomicU64::new(tomb),
                AtomicU64::new(b),
                AtomicU64::new(0),
                AtomicU64::new(0),
            ]);
            let mutator = {
                let (buckets, seq) = (buckets.clone(), seq.clone());
                loom::thread::spawn(move || {
                    Index::new(&buckets, &seq).compact(|w| Some((w.tag as u64) << 50));
                })
            };
            let index = Index::new(&buckets, &seq);
            let found = index.lookup(2 << 50, |w| (w.slot == 2).then_some(w.slot));
            assert_eq!(found, Ok(Some(2)));
            mutator.join().unwrap();
        });
    }
}
