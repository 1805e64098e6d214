//! Crash-atomic sections: the double-buffer commit protocol.
//!
//! Each section slot has two data buffers and a [`CommitWord`] naming the buffer
//! that holds the committed version. The claim holder (the only writer, see
//! [`crate::claim`]) writes a new version into the *other* buffer and then flips
//! the commit word with one Release store. So:
//!
//! - a writer killed at any instruction leaves the committed buffer untouched:
//!   the section is at its last committed version, or, if the flip happened,
//!   at its new one (guarantee 2);
//! - readers never wait. They copy from the committed buffer and then re-check
//!   the commit word, seqlock style: the copy is kept only if no writer began
//!   writing *that* buffer meanwhile (guarantee 1). The `pending` bit, set
//!   before the writer touches a buffer, tells them.
//!
//! The data copy itself is a closure, so the same protocol code runs on mapped
//! memory and on loom's atomics in the model tests.

use crate::layout::{next_version, slot_state, CommitWord, LifeWord, SlotHeader};
use crate::sync::{fence, spin_hint, AtomicU64, Ordering};

/// How many times a reader retries a read that raced with writers before it
/// gives up with "try again".
pub const READ_ATTEMPTS_MAX: u32 = 64;

/// Why a consistent read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFail {
    /// The slot no longer holds the section (deleted, or reused).
    Gone,
    /// Writers changed the section on every attempt.
    Busy,
    /// The committed size is larger than the buffer: the segment is damaged.
    Corrupt,
}

/// A consistent snapshot's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadMeta {
    /// Committed version.
    pub version: u64,
    /// Size of that version in bytes.
    pub size: u64,
    /// `lastUpdate` of that version.
    pub time_ns: i64,
    /// Sequence number of the frame that made that version.
    pub seq: u64,
}

/// True if a copy taken from the buffer of `before` is still that version,
/// given the commit word `after` loaded once the copy was done.
///
/// The buffer of version `v` is rewritten only by the writer of the version
/// after next, which first sets `pending` on a word at the next version
/// ([`next_version`]: versions wrap after `VERSION_MAX`).
#[inline]
pub fn copy_is_consistent(before: CommitWord, after: CommitWord) -> bool {
    after.version == before.version
        || (after.version == next_version(before.version) && !after.pending)
}

/// Reads one consistent version of the section in `slot`, incarnation `gen`.
///
/// `copy(buffer, size)` copies up to `size` bytes out of data buffer `buffer`
/// (`size` is clamped to `size_max`; the copy may observe a concurrent writer's
/// bytes and is then discarded and retried).
#[inline(always)]
pub fn read_consistent(
    slot: &SlotHeader,
    gen: u32,
    size_max: u64,
    mut copy: impl FnMut(u32, u64),
) -> Result<ReadMeta, ReadFail> {
    for _ in 0..READ_ATTEMPTS_MAX {
        // SYNC POINT: Acquire pairs with the Release stores of `life` in
        // `publish_created` and `retire`: a reader that sees LIVE sees the id,
        // the initial data and the first commit word.
        let life = LifeWord::from(slot.life.load(Ordering::Acquire));
        if life.state != slot_state::LIVE || life.gen != gen {
            return Err(ReadFail::Gone);
        }
        // SYNC POINT: Acquire pairs with the Release store in `write_commit`:
        // the committed buffer's bytes and size are visible.
        let before = CommitWord::from(slot.commit.load(Ordering::Acquire));
        let meta = &slot.buffers[before.cur as usize];
        let size = meta.size.load(Ordering::Relaxed);
        let time_ns = meta.time_ns.load(Ordering::Relaxed);
        let seq = meta.seq.load(Ordering::Relaxed);
        copy(before.cur, size.min(size_max));
        // SYNC POINT: this Acquire fence pairs with the Release fence in
        // `write_begin`: if the copy read any byte of a writer that started
        // rewriting this buffer, the loads below see its `pending` (or later).
        fence(Ordering::Acquire);
        let after = CommitWord::from(slot.commit.load(Ordering::Relaxed));
        let life_after = LifeWord::from(slot.life.load(Ordering::Relaxed));
        if life_after != life {
            return Err(ReadFail::Gone);
        }
        if copy_is_consistent(before, after) {
            if size > size_max {
                return Err(ReadFail::Corrupt);
            }
            return Ok(ReadMeta {
                version: before.version,
                size,
                time_ns,
                seq,
            });
        }
        spin_hint();
    }
    Err(ReadFail::Busy)
}

/// Starts a new version: marks the commit word pending and returns the buffer
/// to write. `current` is the commit word as it is (only the claim holder
/// stores it, so the caller read its own value). Claim holder only.
#[inline]
pub fn write_begin(slot: &SlotHeader, current: CommitWord) -> u32 {
    debug_assert_eq!(
        CommitWord::from(slot.commit.load(Ordering::Relaxed)),
        current
    );
    let pending = CommitWord {
        pending: true,
        ..current
    };
    // SYNC POINT: Release pairs with the Acquire load in `read_consistent`:
    // a reader that finds the pending word (the version it names is still
    // the committed one) finds what came before it, that version's flip
    // among them, as if it had read the flip itself (a Relaxed store here
    // would not extend the flip's release sequence: loom found a reader of
    // two sections that took this word for the flip and missed the
    // vector's flip counter).
    slot.commit.store(pending.value(), Ordering::Release);
    // SYNC POINT: Release fence pairs with the Acquire fence in
    // `read_consistent`: the pending store is ordered before every store into
    // the buffer that follows.
    fence(Ordering::Release);
    current.cur ^ 1
}

/// Commits the version written into `buffer`: the flip is the commit point.
/// Returns the new commit word. Claim holder only.
#[inline]
pub fn write_commit(
    slot: &SlotHeader,
    current: CommitWord,
    buffer: u32,
    size: u64,
    time_ns: i64,
    seq: u64,
) -> CommitWord {
    write_meta(slot, buffer, size, time_ns, seq);
    write_flip(slot, current)
}

/// Records the metadata of the version being written into `buffer` (after
/// `write_begin`: readers of that buffer's older version discard what they
/// read, the pending bit being set). Claim holder only.
#[inline]
pub fn write_meta(slot: &SlotHeader, buffer: u32, size: u64, time_ns: i64, seq: u64) {
    let meta = &slot.buffers[buffer as usize];
    meta.size.store(size, Ordering::Relaxed);
    meta.time_ns.store(time_ns, Ordering::Relaxed);
    meta.seq.store(seq, Ordering::Relaxed);
}

/// The commit point of a version written after `write_begin` (and
/// `write_meta`): the flip to the other buffer, the next version. `current`
/// is the commit word `write_begin` saw, or the word as it is since (its
/// pending bit is cleared either way). Returns the new commit word. Claim
/// holder only (and recovery finishing a committed group).
#[inline]
pub fn write_flip(slot: &SlotHeader, current: CommitWord) -> CommitWord {
    let next = CommitWord {
        pending: false,
        cur: current.cur ^ 1,
        version: next_version(current.version),
    };
    // SYNC POINT: Release pairs with the Acquire load in `read_consistent`.
    slot.commit.store(next.value(), Ordering::Release);
    next
}

/// Before a vector write's flips (`SegmentHeader::group_seq`): makes the
/// counter odd. Claim holder only (and recovery finishing a group).
#[inline]
pub fn flips_begin(groups: &AtomicU64) {
    let g = groups.load(Ordering::Relaxed);
    if g & 1 == 0 {
        // Relaxed: the flips that follow are Release stores, so a reader
        // whose Acquire load finds any of them flipped finds this too.
        groups.store(g + 1, Ordering::Relaxed);
    }
}

/// After a vector write's flips: makes the counter even again. Claim holder
/// only (and recovery, which ends a dead writer's flips).
#[inline]
pub fn flips_end(groups: &AtomicU64) {
    let g = groups.load(Ordering::Relaxed);
    if g & 1 == 1 {
        // SYNC POINT: Release pairs with the Acquire load in `flips_settled`:
        // a reader that finds the new value finds every flip before it.
        groups.store(g + 1, Ordering::Release);
    }
}

/// For a reader of several sections, before its copies: the counter, if no
/// vector write's flips are under way (`None`: they are; look again).
#[inline]
pub fn flips_settled(groups: &AtomicU64) -> Option<u64> {
    // SYNC POINT: Acquire pairs with the Release store in `flips_end`.
    let g = groups.load(Ordering::Acquire);
    (g & 1 == 0).then_some(g)
}

/// For a reader of several sections, after its copies: true if no vector
/// write flipped a section since `flips_settled` returned `before`. A copy
/// that found a flipped commit word (an Acquire load, paired with
/// `write_flip`'s Release store) finds the counter odd or moved on here.
#[inline]
pub fn flips_unchanged(groups: &AtomicU64, before: u64) -> bool {
    groups.load(Ordering::Acquire) == before
}

/// Undoes a `write_begin` whose commit never happened (recovery of a dead
/// writer, or a write abandoned before its commit point).
pub fn write_abandon(slot: &SlotHeader) {
    let word = CommitWord::from(slot.commit.load(Ordering::Relaxed));
    if word.pending {
        let clean = CommitWord {
            pending: false,
            ..word
        };
        // SYNC POINT: Release pairs with the Acquire load in `read_consistent`.
        slot.commit.store(clean.value(), Ordering::Release);
    }
}

/// The first version of a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstVersion {
    /// Bytes of id (already copied into the slot).
    pub id_len: u32,
    /// Absolute expiration.
    pub expiration_ns: i64,
    /// Bytes of data (already copied into buffer 0).
    pub size: u64,
    /// `lastUpdate`.
    pub time_ns: i64,
    /// The version (1 for a create; a snapshot's section keeps its own).
    pub version: u64,
}

/// Writes the first version of a reserved (not yet visible) slot: its id length,
/// expiration, and buffer 0's metadata. The caller has copied the id and data;
/// `publish_created` makes it visible.
pub fn init_first_version(slot: &SlotHeader, first: FirstVersion) {
    slot.id_len.store(first.id_len, Ordering::Relaxed);
    slot.expiration_ns
        .store(first.expiration_ns, Ordering::Relaxed);
    let meta = &slot.buffers[0];
    meta.size.store(first.size, Ordering::Relaxed);
    meta.time_ns.store(first.time_ns, Ordering::Relaxed);
    let first = CommitWord {
        pending: false,
        cur: 0,
        version: first.version,
    };
    slot.commit.store(first.value(), Ordering::Relaxed);
}

/// The generation a slot's next section will have (never 0).
pub fn next_gen(slot: &SlotHeader) -> u32 {
    match LifeWord::from(slot.life.load(Ordering::Relaxed))
        .gen
        .wrapping_add(1)
    {
        0 => 1,
        g => g,
    }
}

/// Reserves a free slot for a section of generation `gen` being created
/// (claim held): invisible to readers until `publish_created`.
pub fn reserve(slot: &SlotHeader, gen: u32) {
    let reserved = LifeWord {
        state: slot_state::RESERVED,
        gen,
    };
    // SYNC POINT: Release pairs with the Acquire loads of `life`: a reader
    // still copying the slot's previous section sees it gone.
    slot.life.store(reserved.value(), Ordering::Release);
}

/// Makes a reserved slot a live section, made by the frame `seq`: the commit
/// point of a create.
pub fn publish_created(slot: &SlotHeader, gen: u32, seq: u64) {
    slot.buffers[0].seq.store(seq, Ordering::Relaxed);
    slot.expiration_seq.store(seq, Ordering::Relaxed);
    let live = LifeWord {
        state: slot_state::LIVE,
        gen,
    };
    // SYNC POINT: Release pairs with the Acquire loads of `life` in readers,
    // the index lookup and iteration.
    slot.life.store(live.value(), Ordering::Release);
}

/// Sets a live section's expiration, by the frame `seq`: the expiration store
/// is the commit point; its sequence number follows it.
pub fn set_expiration(slot: &SlotHeader, expiration_ns: i64, seq: u64) {
    // SYNC POINT: Release pairs with the Acquire loads of the expiration in
    // lookups, iteration and `read_expiration`.
    slot.expiration_ns.store(expiration_ns, Ordering::Release);
    // SYNC POINT: Release pairs with the Acquire loads in `read_expiration`.
    slot.expiration_seq.store(seq, Ordering::Release);
}

/// A section's expiration and the sequence number of the frame that set it.
///
/// The writer stores the expiration, then its number, so a reader may see a
/// new expiration with the previous number, never an old expiration with a new
/// number: the pair read twice with the same number is either exact, or one
/// frame behind with that frame's value already applied (re-applying it is a
/// no-op: it sets the same value). Bounded retries; `None` if writers kept
/// changing it.
pub fn read_expiration(slot: &SlotHeader) -> Option<(i64, u64)> {
    for _ in 0..READ_ATTEMPTS_MAX {
        // SYNC POINT: Acquire pairs with the Release store of the number in
        // `set_expiration` (and with `publish_created` via the life word).
        let seq = slot.expiration_seq.load(Ordering::Acquire);
        let expiration = slot.expiration_ns.load(Ordering::Acquire);
        // SYNC POINT: Acquire fence: the reload below is ordered after the
        // expiration load.
        fence(Ordering::Acquire);
        if slot.expiration_seq.load(Ordering::Relaxed) == seq {
            return Some((expiration, seq));
        }
        spin_hint();
    }
    None
}

/// Frees a slot: the commit point of a delete (from LIVE) or the undo of a
/// reservation (from RESERVED). The generation is kept; the next reservation
/// bumps it.
pub fn retire(slot: &SlotHeader, gen: u32) {
    let free = LifeWord {
        state: slot_state::FREE,
        gen,
    };
    // SYNC POINT: Release pairs with the Acquire loads of `life`.
    slot.life.store(free.value(), Ordering::Release);
}

#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use crate::sync::AtomicU8;
    use loom::sync::Arc;

    const WIDTH: usize = 3;

    struct Model {
        slot: SlotHeader,
        data: [[AtomicU8; WIDTH]; 2],
    }

    fn new_model() -> Model {
        let slot = SlotHeader::new();
        slot.life.store(
            LifeWord {
                state: slot_state::LIVE,
                gen: 1,
            }
            .value(),
            Ordering::Relaxed,
        );
        slot.commit.store(
            CommitWord {
                pending: false,
                cur: 0,
                version: 1,
            }
            .value(),
            Ordering::Relaxed,
        );
        for meta in &slot.buffers {
            meta.size.store(WIDTH as u64, Ordering::Relaxed);
        }
        slot.buffers[0].seq.store(1, Ordering::Relaxed);
        Model {
            slot,
            data: [
                core::array::from_fn(|_| AtomicU8::new(1)),
                core::array::from_fn(|_| AtomicU8::new(0)),
            ],
        }
    }

    fn write_version(m: &Model, value: u8) {
        let current = CommitWord::from(m.slot.commit.load(Ordering::Relaxed));
        let buffer = write_begin(&m.slot, current);
        for byte in &m.data[buffer as usize] {
            byte.store(value, Ordering::Relaxed);
        }
        write_commit(&m.slot, current, buffer, WIDTH as u64, 0, value as u64);
    }

    /// A vector write's two sections, read by a reader of both between two
    /// looks at the flip counter (`Segment::read_isolated`): what it keeps
    /// is both sections at one vector's version, never one old and one new.
    /// Loom finds the mix without `flips_begin`, and with `write_begin`'s
    /// pending store Relaxed.
    #[test]
    fn readers_of_several_sections_see_a_vector_write_whole() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let a = Arc::new(new_model());
            let b = Arc::new(new_model());
            let groups = Arc::new(AtomicU64::new(0));
            let writer = {
                let (a, b, groups) = (a.clone(), b.clone(), groups.clone());
                loom::thread::spawn(move || {
                    // As `write_group`: both new versions prepared, then the
                    // flips between the counter's two steps.
                    // (Two vectors: loom explores a lone one's schedules
                    // only partly.)
                    for value in [2, 3] {
                        let prepare = |m: &Model| {
                            let current = CommitWord::from(m.slot.commit.load(Ordering::Relaxed));
                            let buffer = write_begin(&m.slot, current);
                            for byte in &m.data[buffer as usize] {
                                byte.store(value, Ordering::Relaxed);
                            }
                            write_meta(&m.slot, buffer, WIDTH as u64, 0, value as u64);
                            current
                        };
                        let (ca, cb) = (prepare(&a), prepare(&b));
                        flips_begin(&groups);
                        write_flip(&a.slot, ca);
                        write_flip(&b.slot, cb);
                        flips_end(&groups);
                    }
                })
            };
            let read = |m: &Model| {
                read_consistent(&m.slot, 1, WIDTH as u64, |buffer, _| {
                    for b in &m.data[buffer as usize] {
                        b.load(Ordering::Relaxed);
                    }
                })
                .map(|meta| meta.version)
            };
            if let Some(before) = flips_settled(&groups) {
                // The reader takes b first: the order opposite the flips.
                let (vb, va) = (read(&b), read(&a));
                if flips_unchanged(&groups, before) {
                    if let (Ok(va), Ok(vb)) = (va, vb) {
                        assert_eq!(va, vb, "one section old, the other new");
                    }
                }
            }
            writer.join().unwrap();
        });
    }

    /// Guarantee 1: a reader sees a whole version (all bytes equal), never a mix,
    /// and versions it reports are those a writer committed, each with its own
    /// sequence number (what catch-up relies on).
    #[test]
    fn readers_never_see_torn_versions() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let m = Arc::new(new_model());
            let writer = {
                let m = m.clone();
                loom::thread::spawn(move || {
                    write_version(&m, 2);
                    write_version(&m, 3);
                })
            };
            let mut out = [0u8; WIDTH];
            match read_consistent(&m.slot, 1, WIDTH as u64, |buffer, _| {
                for (o, b) in out.iter_mut().zip(&m.data[buffer as usize]) {
                    *o = b.load(Ordering::Relaxed);
                }
            }) {
                Ok(meta) => {
                    assert!(out.iter().all(|&b| b == out[0]), "torn read {out:?}");
                    assert_eq!(out[0] as u64, meta.version);
                    // The sequence number read with the data is that version's.
                    assert_eq!(meta.seq, meta.version, "seq of another version");
                }
                Err(ReadFail::Busy) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
            writer.join().unwrap();
        });
    }
}
