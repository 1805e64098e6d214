//! Checkpoint operations on a segment, and the **one mutation path** they all
//! take.
//!
//! Every mutation (section create, write, overwrite, delete, expiration
//! change, active-replica change, retention change) runs `Segment::mutate`
//! under the writer claim, supplying only its preparation and its commit point:
//!
//! 1. **intent**: record `{op, slot}`, the value the commit point will store,
//!    the bucket it touches, and the sequence number its frames start at;
//! 2. **prepare** (the operation's): invisible state: the other buffer, a
//!    reserved slot;
//! 3. **log**: write the frame into the ring without publishing it; data too
//!    large for one frame goes first as `Stage` frames, published as they fill
//!    (a consumer must be able to drain them), and the last piece rides in the
//!    mutation's own frame (`FLAG_STAGED`); record the end to publish;
//! 4. **commit** (the operation's): one Release store that makes the change
//!    visible (commit word, life word, expiration, active-replica word,
//!    retention), with the frame's sequence number stored where a snapshot
//!    reads it; then the derived counters;
//! 5. **publish** the frame (sequence number, then the tail) and clear the
//!    intent. Releasing the claim wakes sleeping standbys.
//!
//! A vector write is one such mutation over several sections
//! (`Segment::mutate_logging`, `write::write_group`): it prepares every
//! section, logs a frame per section, and its commit point is one store
//! into the intent, before the sections flip.
//!
//! A successor that steals the claim from a dead writer (or the writer itself,
//! if the operation panicked) runs `recover`: it compares the commit point's
//! word with the intent. Reached: it publishes the finished frame (and flips
//! a group's remaining sections). Not reached: it undoes step 2, forgets the
//! unpublished frame, and if stages were already published, logs a
//! `StageAbort` so consumers drop them.
//! Nothing is allocated and no syscall is made on the write path unless a
//! standby or a writer sleeps (a wake-up), a writer must wait for another,
//! or a section of a segment over 1 GiB grows into data pages not yet
//! allocated (`fallocate`, once per growth).
//!
//! The operations live by concern: [`read`] (lookups, consistent reads,
//! iteration, snapshots), [`write`](mod@write) (writes and overwrites), [`section`]
//! (create, delete, expiration), [`checkpoint`] (active replica, retention),
//! `recover` (crash recovery) and [`consume`] (following the log, catch-up).

use std::cell::Cell;
use std::time::Instant;

use ckpt_core::error::{ExpirationSetError, SectionCreateError, SectionDeleteError, WriteError};
use ckpt_core::frame::{
    data_offset as frame_data_offset, frame_bytes, FrameHeader, FrameKind, FLAG_MORE, FLAG_STAGED,
    FRAME_ALIGN, HEADER_BYTES,
};

use crate::claim::{self, Acquired};
use crate::index::Index;
use crate::layout::{
    intent_op, role, ActiveReplicaWord, ClaimWord, IntentWord, OpenerWord, RoleWord,
};
use crate::log::{frame_bytes_max, Log, Pending, RingBytes};
use crate::segment::{Mapped, Segment};
use crate::sync::{AtomicU64, Ordering};
use crate::{notify, racy};

mod acks;
pub mod apply;
pub mod checkpoint;
pub mod consume;
pub mod install;
pub mod read;
mod recover;
pub mod section;
pub mod write;

pub use apply::{Applied, ApplyError};
pub use consume::{Consumer, SectionCopy, Snapshot, SnapshotHead, SnapshotSection};
pub use read::SectionView;
pub use write::{SpareBuffer, WriteElement};

/// A section found in the index: its slot and incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SectionRef {
    /// The slot.
    pub slot: u32,
    /// The slot's generation when found; a delete or reuse invalidates the ref.
    pub gen: u32,
}

/// Why a mutation could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimFail {
    /// Another live writer held the claim past the timeout.
    Contended,
    /// This copy is a replica: only the primary's frames change it.
    Replica,
    /// This host's node daemon fenced the copy: its partition of the cluster
    /// has no quorum, so nothing here may change it or make it the primary
    /// (transient: `TRY_AGAIN`, as OpenSAF answers while it has no
    /// controller).
    NoQuorum,
}

macro_rules! claim_fail_is_try_again {
    ($($error:ty),*) => {$(
        impl From<ClaimFail> for $error {
            fn from(f: ClaimFail) -> Self {
                match f {
                    ClaimFail::Contended | ClaimFail::NoQuorum => <$error>::TryAgain,
                    ClaimFail::Replica => <$error>::NoActiveReplica,
                }
            }
        }
    )*};
}
/// Why local writers may not write a copy whose role word is `word` (not 0).
#[cold]
fn role_refusal(word: RoleWord) -> ClaimFail {
    if word.role != role::PRIMARY {
        ClaimFail::Replica
    } else {
        ClaimFail::NoQuorum
    }
}

claim_fail_is_try_again!(
    WriteError,
    SectionCreateError,
    SectionDeleteError,
    ExpirationSetError
);

thread_local! {
    /// The first and last sequence numbers of the frames this thread's
    /// mutations logged since [`thread_frames_reset`] (0, 0: none).
    static THREAD_FRAMES: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Forgets the frames this thread logged so far (see [`thread_frames`]).
#[inline]
pub fn thread_frames_reset() {
    THREAD_FRAMES.with(|f| f.set((0, 0)));
}

/// The sequence numbers of the frames this thread's mutations logged since
/// [`thread_frames_reset`], first to last; `None` if none. A caller that
/// must tell its own changes from others' in the log (a tracker skipping the
/// writes of its own handle) asks this right after its call: other writers'
/// frames cannot fall inside the range of one call, which held the claim.
#[inline]
pub fn thread_frames() -> Option<std::ops::RangeInclusive<u64>> {
    let (first, last) = THREAD_FRAMES.with(|f| f.get());
    (last != 0).then_some(first..=last)
}

/// The wall clock at 1 ms resolution (about a nanosecond to read): the
/// `lastUpdate` and frame times of writes. See [`crate::clock`].
#[inline]
pub fn coarse_now() -> i64 {
    crate::clock::now()
}

/// The ring's bytes in the mapping.
pub struct ShmRing {
    base: *mut u8,
    capacity: usize,
}

impl RingBytes for ShmRing {
    #[inline(always)]
    fn write(&self, at: usize, src: &[u8]) {
        assert!(at + src.len() <= self.capacity);
        // SAFETY: in bounds (asserted); the ring lies inside the mapping; only
        // the claim holder writes ring bytes, and readers (copying atomically)
        // validate what they copy.
        unsafe { racy::store(self.base.add(at), src) };
    }
    #[inline(always)]
    fn write_padded(&self, at: usize, src: &[u8]) {
        let end = at + src.len().next_multiple_of(8);
        assert!(end <= self.capacity);
        if at % 8 != 0 {
            // Only if another process damaged the log tail: still no UB (and
            // consumers then report the ring corrupt).
            self.write(at, src);
            self.write(at + src.len(), &[0u8; 8][..end - at - src.len()]);
            return;
        }
        // SAFETY: [at, end) is in bounds (asserted) and 8-aligned (the ring is
        // page aligned); claim holder only; readers copy atomically.
        unsafe { racy::store_padded(self.base.add(at) as *mut u64, src) };
    }
    #[inline(always)]
    fn write_words(&self, at: usize, words: &[u64]) {
        assert!(at + 8 * words.len() <= self.capacity);
        if at % 8 != 0 {
            // Only if another process damaged the log tail: still no UB.
            for (i, w) in words.iter().enumerate() {
                self.write(at + 8 * i, &w.to_le_bytes());
            }
            return;
        }
        // SAFETY: in bounds (asserted) and 8-aligned (the ring is page
        // aligned, `at` a multiple of 8); claim holder only; readers load
        // these words atomically.
        let base = unsafe { self.base.add(at) } as *mut u64;
        for (i, w) in words.iter().enumerate() {
            // SAFETY: as above, word i of the asserted range.
            unsafe { AtomicU64::from_ptr(base.add(i)) }.store(w.to_le(), Ordering::Relaxed);
        }
    }
    #[inline(always)]
    fn write_frame(&self, at: usize, header: &[u64; HEADER_BYTES / 8], id: &[u8], data: &[u8]) {
        let data_at = at + frame_data_offset(id.len());
        let end = data_at + data.len().next_multiple_of(8);
        if at % 8 != 0 || end > self.capacity {
            // Only if another process damaged the log tail: the checked,
            // piecewise path (consumers then report the ring corrupt).
            self.write_words(at, header);
            self.write_padded(at + HEADER_BYTES, id);
            self.write_padded(data_at, data);
            return;
        }
        // SAFETY: [at, end) is inside the ring (checked) and 8-aligned (the
        // ring is page aligned, `at` and the data offset multiples of 8); only
        // the claim holder writes ring bytes; readers load them atomically.
        unsafe {
            let frame = self.base.add(at) as *mut u64;
            for (i, w) in header.iter().enumerate() {
                AtomicU64::from_ptr(frame.add(i)).store(w.to_le(), Ordering::Relaxed);
            }
            racy::store_padded(frame.add(HEADER_BYTES / 8), id);
            racy::store_padded(self.base.add(data_at) as *mut u64, data);
        }
    }
    #[inline]
    fn read(&self, at: usize, dst: &mut [u8]) {
        assert!(at + dst.len() <= self.capacity);
        // SAFETY: in bounds (asserted); the copy may race with the claim holder
        // (atomic on both sides), which `Log::read_next` detects through
        // `reserve` and discards.
        unsafe { racy::load(dst, self.base.add(at)) };
    }
    #[inline]
    fn append(&self, at: usize, len: usize, out: &mut Vec<u8>) {
        assert!(at + len <= self.capacity);
        out.reserve(len);
        let from = out.len();
        // SAFETY: the source is in bounds (asserted) and may race with the
        // claim holder (atomic on both sides; `Log::scan`'s callers discard
        // what `reserve` shows overrun); the destination is `len` bytes of
        // `out`'s spare capacity (reserved above), ours alone, all of which
        // the copy initializes before the length covers them.
        unsafe {
            racy::load_raw(out.as_mut_ptr().add(from), self.base.add(at), len);
            out.set_len(from + len);
        }
    }
    #[inline]
    fn capacity(&self) -> usize {
        self.capacity
    }
}

/// The longest a writer waiting for the claim sleeps before it checks again
/// whether the holder is alive (and whether its own deadline has passed).
pub const CLAIM_SLEEP_MAX: std::time::Duration = std::time::Duration::from_millis(1);

/// Holds the claim; on drop (also when an operation returns early or panics)
/// finishes or undoes an interrupted mutation, releases the claim, then wakes
/// sleeping standbys. Waking after the release matters: a woken standby that
/// writes back finds the claim free. (A claim that published nothing wakes a
/// sleeper for nothing; it re-checks the tail and sleeps again.)
pub(crate) struct Held<'a> {
    segment: &'a Segment,
    /// The claim word as we took it (a `ClaimWord`, kept encoded: one register).
    word: u64,
}

impl Drop for Held<'_> {
    #[inline]
    fn drop(&mut self) {
        let h = self.segment.header();
        // Only a mutation that did not finish (a panic in the caller's fill
        // closure, or in the path itself) leaves its intent set: recover it
        // exactly as a successor would, instead of releasing a half-made change.
        if IntentWord::from(h.intent_op.load(Ordering::Relaxed)).op != intent_op::NONE {
            self.segment.recover();
        }
        claim::release(&h.claim, ClaimWord::from(self.word));
        // SYNC POINT: SeqCst load in `take`, after the SeqCst swap in
        // `Log::publish`: Dekker with `Doorbell::arm` (SeqCst RMW, then a
        // SeqCst load of the tail). Either we see it armed, or the sleeper
        // sees the new tail.
        if crate::log::Doorbell::new(&h.waiters).take() {
            notify::wake_all(&h.log_tail);
        }
        // SYNC POINT: pairs with the registration in `claim_sleep` (which
        // bounds its sleep: the release above is not SeqCst, see there).
        if h.claim_waiters.load(Ordering::SeqCst) != 0 {
            notify::wake_all_high(&h.claim);
        }
    }
}

impl Mapped {
    pub(crate) fn index(&self) -> Index<'_> {
        Index::new(self.buckets(), &self.header().index_seq)
    }

    pub(crate) fn log(&self) -> Log<'_, ShmRing> {
        let g = self.geometry();
        let h = self.header();
        // SAFETY: [log_offset, log_offset + log_bytes) lies inside the mapping.
        let base = unsafe { self.base().add(g.log_offset as usize) };
        Log::new(
            &h.log_tail,
            &h.log_reserve,
            &h.log_seq,
            ShmRing {
                base,
                capacity: g.log_bytes as usize,
            },
        )
    }
}

/// What recovery needs to finish or undo a mutation: the operation, its slot,
/// the value its commit-point store writes, and the index bucket it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Intent {
    pub op: u8,
    pub slot: u32,
    pub target: u64,
    pub bucket: u64,
}

/// The frames a mutation logs, one after the other, unpublished (the
/// mutation path publishes them all after the commit point).
pub(crate) struct Frames<'l, 'a> {
    segment: &'a Segment,
    log: &'l Log<'a, ShmRing>,
    /// The next frame's sequence number.
    seq: u64,
    /// Where the next frame goes (after the previous one).
    after: u64,
    /// The last frame logged.
    last: Option<Pending>,
}

impl Frames<'_, '_> {
    /// Logs `spec`'s frame (data too large for one frame first as `Stage`
    /// frames, published at once: only a mutation's only frame may be that
    /// large). Returns its sequence number.
    #[inline]
    pub fn log(&mut self, spec: &FrameSpec<'_>) -> u64 {
        let pending = self
            .segment
            .log_frames(self.log, spec, self.seq, self.after);
        (self.seq, self.after) = (pending.seq.wrapping_add(1), pending.end);
        self.last = Some(pending);
        pending.seq
    }
}

/// When and how a mutation is stamped: now, by a local writer, or as the
/// primary stamped it, when a replica applies its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// `lastUpdate` (and the frame's time).
    pub time_ns: i64,
    /// More frames of the same call follow (vector writes).
    pub more: bool,
}

impl Stamp {
    /// A local mutation, now, on its own.
    #[inline]
    pub fn now() -> Stamp {
        Stamp {
            time_ns: coarse_now(),
            more: false,
        }
    }
}

/// The frame a mutation logs; `mutate` fills in the sequence number and the
/// incarnation, and splits data too large for one frame into stages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameSpec<'a> {
    pub kind: FrameKind,
    /// More frames of the same call follow (vector writes).
    pub more: bool,
    pub id: &'a [u8],
    pub data: &'a [u8],
    pub arg: i64,
    pub version: u64,
    pub time_ns: i64,
    /// The active replica's term (for `ActiveReplicaSet`: the new one).
    pub term: u32,
    /// The data's first part went ahead as `Stage` frames already (a
    /// replica completing a staged mutation): set `FLAG_STAGED`.
    pub prestaged: bool,
}

impl Segment {
    /// True if the claim holder named in `held` still has the segment open:
    /// its opener entry is the one it claimed with and its lease is held. Our
    /// own entry is alive (another thread of ours holds the claim).
    fn holder_alive(&self, held: ClaimWord) -> bool {
        if (held.owner, held.owner_gen) == (self.owner.entry, self.owner.gen) {
            return true;
        }
        let Some((index, entry)) = (held.owner as usize)
            .checked_sub(1)
            .and_then(|i| Some((i, self.openers().get(i)?)))
        else {
            return false;
        };
        let word = OpenerWord::from(entry.word.load(Ordering::SeqCst));
        word.gen == held.owner_gen && self.opener_alive(index, word)
    }

    /// Sleeps until the claim changes from `held` (woken by its release) or
    /// [`CLAIM_SLEEP_MAX`] passes.
    fn claim_sleep(&self, held: ClaimWord) {
        let h = self.header();
        let _sleeper = notify::Sleeper::register(&h.claim_waiters);
        // SYNC POINT: SeqCst load after the SeqCst registration, against
        // `Held::drop` (release, then a SeqCst load of `claim_waiters`). The
        // release is a Release store, not SeqCst (that would put a locked
        // instruction on every write), so the two may cross and the wake be
        // missed: the sleep is bounded by CLAIM_SLEEP_MAX, so that costs at
        // most that much latency, never progress.
        if h.claim.load(Ordering::SeqCst) == held.value() {
            // On the epoch: every release and steal changes it, even when the
            // same opener takes the claim again at once.
            notify::wait_high(&h.claim, held.value(), CLAIM_SLEEP_MAX);
        }
    }

    /// Takes the writer claim for a local writer: refused on a replica or a
    /// fenced copy, including one demoted or fenced while this writer waited
    /// for the claim (the role word is looked at again once it is held;
    /// `demote` and `fence` change it under the claim).
    #[inline]
    pub(crate) fn claim_local(&self) -> Result<Held<'_>, ClaimFail> {
        self.locally_writable()?;
        let held = self.claim()?;
        self.locally_writable()?;
        Ok(held)
    }

    /// Ok if local writers may write this copy: a primary, not fenced (the
    /// whole role word is 0).
    #[inline]
    fn locally_writable(&self) -> Result<(), ClaimFail> {
        // SYNC POINT: Acquire pairs with the Release store in
        // `change_role` (`set_role`, `fence`, the demotions).
        let word = self.header().role.load(Ordering::Acquire);
        if word == 0 {
            return Ok(());
        }
        Err(role_refusal(RoleWord::from(word)))
    }

    /// Checks the words derived from the slots and repairs them if damaged
    /// (see `audit_held`), if the claim is free now; returns true if it
    /// repaired anything. Writable opens run it.
    pub fn audit(&self) -> bool {
        match claim::try_acquire(&self.header().claim, self.owner) {
            Ok(word) => {
                let _held = Held {
                    segment: self,
                    word: word.value(),
                };
                self.audit_held()
            }
            Err(_) => false,
        }
    }

    /// Takes the writer claim (recovering a dead holder's mutation).
    #[inline]
    pub(crate) fn claim(&self) -> Result<Held<'_>, ClaimFail> {
        match claim::try_acquire(&self.header().claim, self.owner) {
            Ok(word) => Ok(Held {
                segment: self,
                word: word.value(),
            }),
            Err(_) => self.claim_contended(),
        }
    }

    /// The claim is held: wait for it, or steal it from a dead holder.
    #[cold]
    #[inline(never)]
    fn claim_contended(&self) -> Result<Held<'_>, ClaimFail> {
        let h = self.header();
        let deadline = Instant::now() + self.config().claim_timeout;
        let acquired = claim::acquire(
            &h.claim,
            self.owner,
            |held| self.holder_alive(held),
            || Instant::now() > deadline,
            |held| self.claim_sleep(held),
        )
        .map_err(|_| ClaimFail::Contended)?;
        let held = Held {
            segment: self,
            word: acquired.word().value(),
        };
        if let Acquired::Stolen(_) = acquired {
            self.recover();
        }
        Ok(held)
    }

    /// The term frames are written in now. Claim held (only the claim holder
    /// changes it).
    #[inline]
    pub(crate) fn term(&self) -> u32 {
        ActiveReplicaWord::from(self.header().active_replica.load(Ordering::Relaxed)).term
    }

    /// A frame of `kind` for section `id`, stamped `stamp`, in the current term.
    #[inline]
    pub(crate) fn frame<'a>(
        &self,
        kind: FrameKind,
        id: &'a [u8],
        data: &'a [u8],
        arg: i64,
        version: u64,
        stamp: Stamp,
    ) -> FrameSpec<'a> {
        FrameSpec {
            kind,
            more: stamp.more,
            id,
            data,
            arg,
            version,
            time_ns: stamp.time_ns,
            term: self.term(),
            prestaged: false,
        }
    }

    /// Records the intent; returns the sequence number and the log position
    /// its frames start at.
    #[inline]
    fn set_intent_on(&self, log: &Log<'_, ShmRing>, intent: Intent) -> (u64, u64) {
        let h = self.header();
        h.intent_target.store(intent.target, Ordering::Relaxed);
        h.intent_bucket.store(intent.bucket, Ordering::Relaxed);
        // Wrapping: a log_seq damaged to u64::MAX after open yields frames of
        // seq 0, which every decoder refuses (never a panic here).
        let first_seq = h.log_seq.load(Ordering::Relaxed).wrapping_add(1);
        let start = log.written_end();
        h.intent_seq.store(first_seq, Ordering::Relaxed);
        h.intent_log_start.store(start, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the Acquire load in `recover` (after
        // the stealer's AcqRel CAS): target, bucket and seq are visible with the op.
        h.intent_op.store(
            IntentWord {
                op: intent.op,
                slot: intent.slot,
            }
            .value(),
            Ordering::Release,
        );
        (first_seq, start)
    }

    #[inline]
    pub(crate) fn clear_intent(&self) {
        self.header()
            .intent_op
            .store(IntentWord::default().value(), Ordering::Release);
    }

    /// **The mutation path** (claim held). `prepare` makes the invisible
    /// changes and says what to log; `commit` passes the commit point (it gets
    /// the frame's sequence number) and updates the counters.
    #[inline]
    pub(crate) fn mutate<'a, P>(
        &'a self,
        intent: Intent,
        prepare: impl FnOnce() -> (FrameSpec<'a>, P),
        commit: impl FnOnce(P, u64),
    ) {
        self.mutate_logging(
            intent,
            |frames| {
                let (spec, prepared) = prepare();
                frames.log(&spec);
                prepared
            },
            commit,
        );
    }

    /// The mutation path for a mutation that logs any number of frames (a
    /// vector write's group): `prepare` logs them through [`Frames`], each
    /// unpublished; `commit` gets the last one's sequence number. At least
    /// one frame is logged.
    #[inline]
    pub(crate) fn mutate_logging<'a, P>(
        &'a self,
        intent: Intent,
        prepare: impl FnOnce(&mut Frames<'_, 'a>) -> P,
        commit: impl FnOnce(P, u64),
    ) {
        let log = self.log();
        let (seq, start) = self.set_intent_on(&log, intent);
        let mut frames = Frames {
            segment: self,
            log: &log,
            seq,
            after: start,
            last: None,
        };
        let prepared = prepare(&mut frames);
        let Some(pending) = frames.last else {
            unreachable!("a mutation logs at least one frame");
        };
        let h = self.header();
        h.intent_end_seq.store(pending.seq, Ordering::Relaxed);
        h.intent_log_end.store(pending.end, Ordering::Relaxed);
        commit(prepared, pending.seq);
        log.publish(pending.end, pending.seq);
        self.clear_intent();
        THREAD_FRAMES.with(|f| {
            let (first, _) = f.get();
            f.set((if first == 0 { seq } else { first }, pending.seq));
        });
    }

    /// Writes `spec`'s frame, unpublished; data too large for one frame goes
    /// first as `Stage` frames, each published at once. Claim held.
    #[inline]
    fn log_frames(
        &self,
        log: &Log<'_, ShmRing>,
        spec: &FrameSpec<'_>,
        mut seq: u64,
        start: u64,
    ) -> Pending {
        let incarnation = self.header().incarnation;
        let header = |kind, flags, seq, data_len: usize, arg| FrameHeader {
            kind,
            flags,
            seq,
            term: spec.term,
            incarnation,
            id_len: spec.id.len() as u16,
            data_len: data_len as u32,
            time_ns: spec.time_ns,
            arg,
            version: spec.version,
        };
        let mut data = spec.data;
        let frame_max = frame_bytes_max(log.capacity());
        let mut staged = false;
        let mut after = start;
        if frame_bytes(spec.id.len(), data.len()) > frame_max {
            // The data one frame carries: the ring's frame limit (at least
            // 16 KiB, ids at most 4 KiB), whole words.
            let room = (frame_max - HEADER_BYTES - spec.id.len()) & !(FRAME_ALIGN - 1);
            // Where each piece goes in the section's new contents.
            let mut at = if spec.kind == FrameKind::Write {
                spec.arg as u64
            } else {
                0
            };
            while data.len() > room {
                let (piece, rest) = data.split_at(room);
                let stage = header(FrameKind::Stage, FLAG_MORE, seq, piece.len(), at as i64);
                let p = log.write(after, stage, spec.id, piece);
                log.publish(p.end, p.seq);
                after = p.end;
                (seq, at, data, staged) =
                    (seq.wrapping_add(1), at + piece.len() as u64, rest, true);
            }
        }
        let staged = staged || spec.prestaged;
        let flags = if spec.more { FLAG_MORE } else { 0 } | if staged { FLAG_STAGED } else { 0 };
        let own = header(spec.kind, flags, seq, data.len(), spec.arg);
        log.write(after, own, spec.id, data)
    }
}
