//! Checkpoint operations on a segment: the write → log path, reads, iteration,
//! crash recovery and log consumption.
//!
//! Every mutation follows one shape, under the writer claim:
//!
//! 1. record the **intent** (operation, slot, the value the commit point will
//!    store, and later the log end to publish);
//! 2. prepare invisible state (the other buffer, a reserved slot), and write the
//!    log frame into the ring without publishing it;
//! 3. the **commit point**: one Release store that makes the change visible
//!    (commit word, life word or expiration);
//! 4. publish the log tail, wake sleepers, update counters, clear the intent.
//!
//! A successor that steals the claim from a dead writer compares the commit
//! point's word with the intent: reached → it publishes the finished frame
//! (the new version stands); not reached → it undoes step 2 (the old version
//! stands). Counters are recomputed from the slots. Nothing is allocated and no
//! syscall is made on the write path unless a standby sleeps or a writer must
//! wait for another.

use std::time::{Duration, Instant};

use ckpt_core::error::{ExpirationSetError, SectionCreateError, SectionDeleteError, WriteError};
use ckpt_core::frame::{Frame, FrameHeader, FrameKind, FLAG_DATA_ELIDED};
use ckpt_core::{SectionId, SectionsChosen, Time};

use crate::claim::{self, Acquired};
use crate::index::{hash_id, tag_of, Index, InsertError};
use crate::layout::{
    bucket_state, intent_op, slot_state, BucketWord, ClaimWord, CommitWord, IntentWord, LifeWord,
    OpenerWord, SlotHeader,
};
use crate::log::{elide_threshold, Log, LogError, RingBytes};
use crate::segment::{now, Mapped, Segment};
use crate::slot::{self, ReadFail, ReadMeta};
use crate::sync::Ordering;
use crate::{notify, proc};

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
}

impl From<ClaimFail> for WriteError {
    fn from(_: ClaimFail) -> Self {
        WriteError::TryAgain
    }
}
impl From<ClaimFail> for SectionCreateError {
    fn from(_: ClaimFail) -> Self {
        SectionCreateError::TryAgain
    }
}
impl From<ClaimFail> for SectionDeleteError {
    fn from(_: ClaimFail) -> Self {
        SectionDeleteError::TryAgain
    }
}
impl From<ClaimFail> for ExpirationSetError {
    fn from(_: ClaimFail) -> Self {
        ExpirationSetError::TryAgain
    }
}

/// The wall clock at kernel-tick resolution (a few ns to read): the
/// `lastUpdate` and frame times of writes.
#[inline]
pub fn coarse_now() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// The ring's bytes in the mapping.
pub struct ShmRing {
    base: *mut u8,
    capacity: usize,
}

impl RingBytes for ShmRing {
    #[inline]
    fn write(&self, at: usize, src: &[u8]) {
        assert!(at + src.len() <= self.capacity);
        // SAFETY: in bounds (asserted); the ring lies inside the mapping; only
        // the claim holder writes ring bytes, and readers validate what they copy.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.add(at), src.len()) };
    }
    #[inline]
    fn write_words(&self, at: usize, words: &[u64]) {
        assert!(at + 8 * words.len() <= self.capacity);
        for (i, w) in words.iter().enumerate() {
            // SAFETY: in bounds (asserted); claim holder only. Unaligned-safe:
            // `at` is 8-aligned unless another process damaged the log tail.
            unsafe { (self.base.add(at + 8 * i) as *mut u64).write_unaligned(w.to_le()) };
        }
    }
    #[inline]
    fn read(&self, at: usize, dst: &mut [u8]) {
        assert!(at + dst.len() <= self.capacity);
        // SAFETY: in bounds (asserted); the copy may race with the claim holder,
        // which `Log::read_next` detects through `reserve` and discards.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(at), dst.as_mut_ptr(), dst.len()) };
    }
    #[inline]
    fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Releases the claim on drop (also when an operation returns early), then
/// wakes sleeping standbys if the operation published frames. Waking after
/// the release matters: a woken standby that writes back finds the claim free.
struct Held<'a> {
    segment: &'a Segment,
    word: ClaimWord,
    tail_at_claim: u64,
}

impl Drop for Held<'_> {
    #[inline]
    fn drop(&mut self) {
        let h = self.segment.header();
        claim::release(&h.claim, self.word);
        // SYNC POINT: SeqCst load, after the SeqCst swap in `Log::publish`:
        // Dekker with `Sleeper::register` (SeqCst RMW, then a SeqCst load of
        // the tail). Either we see the sleeper, or it sees the new tail.
        if h.log_tail.load(Ordering::Relaxed) != self.tail_at_claim
            && h.waiters.load(Ordering::SeqCst) != 0
        {
            notify::wake_all(&h.log_tail);
        }
    }
}

/// A section as iteration reports it, borrowing its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionView<'a> {
    /// The section.
    pub section: SectionRef,
    /// Its id.
    pub id: &'a [u8],
    /// Absolute expiration.
    pub expiration: Time,
    /// Committed size.
    pub size_bytes: u64,
    /// `lastUpdate`.
    pub last_update: Time,
}

/// Reading needs no registration as an opener: these work on any validated
/// mapping (the CLI inspects segments this way without touching retention).
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
            ShmRing {
                base,
                capacity: g.log_bytes as usize,
            },
        )
    }

    /// The id bytes of a slot whose id the caller knows is stable (claim held,
    /// or validated afterwards through the life word).
    fn id_slice(&self, slot: u32) -> &[u8] {
        let len = (self.slot(slot).id_len.load(Ordering::Acquire) as u64)
            .min(self.attributes().section_id_bytes_max) as usize;
        // SAFETY: len is clamped to the slot's id area, which is in the mapping.
        unsafe { std::slice::from_raw_parts(self.slot_id_ptr(slot), len) }
    }

    #[inline]
    fn confirm(&self, word: BucketWord, id: &[u8]) -> Option<SectionRef> {
        if word.slot >= self.geometry().sections_max {
            return None;
        }
        let slot = self.slot(word.slot);
        // SYNC POINT: Acquire pairs with the Release store in `publish_created`.
        let life = LifeWord::from(slot.life.load(Ordering::Acquire));
        if life.state != slot_state::LIVE || life.gen as u16 != word.gen {
            return None;
        }
        if !self.slot_id_is(word.slot, id) {
            return None;
        }
        (LifeWord::from(slot.life.load(Ordering::Acquire)) == life).then_some(SectionRef {
            slot: word.slot,
            gen: life.gen,
        })
    }

    /// Finds section `id`. Expired sections are still found: check
    /// [`Mapped::is_expired`]. `Err` if compactions kept racing the lookup.
    #[inline]
    pub fn lookup(&self, id: &[u8]) -> Result<Option<SectionRef>, ReadFail> {
        if id.len() as u64 > self.attributes().section_id_bytes_max {
            return Ok(None);
        }
        self.index()
            .lookup(hash_id(id), |w| self.confirm(w, id))
            .map_err(|_| ReadFail::Busy)
    }

    /// True if the section's expiration time has passed (or the reference
    /// names no slot at all).
    #[inline]
    pub fn is_expired(&self, section: SectionRef) -> bool {
        if section.slot >= self.geometry().sections_max {
            return true;
        }
        let expiration = self
            .slot(section.slot)
            .expiration_ns
            .load(Ordering::Acquire);
        expiration != Time::END.0 && now().0 >= expiration
    }

    /// True if `section` still names a live section.
    #[inline]
    pub fn is_live(&self, section: SectionRef) -> bool {
        section.slot < self.geometry().sections_max
            && LifeWord::from(self.slot(section.slot).life.load(Ordering::Acquire))
                == LifeWord {
                    state: slot_state::LIVE,
                    gen: section.gen,
                }
    }

    /// Copies a consistent version of the section, from byte `offset`, into
    /// `dst`. Returns the bytes copied and the version's metadata.
    #[inline]
    pub fn read(
        &self,
        section: SectionRef,
        offset: u64,
        dst: &mut [u8],
    ) -> Result<(usize, ReadMeta), ReadFail> {
        if section.slot >= self.geometry().sections_max {
            return Err(ReadFail::Gone);
        }
        let slot = self.slot(section.slot);
        let max = self.attributes().section_bytes_max;
        let mut copied = 0;
        let meta = slot::read_consistent(slot, section.gen, max, |buffer, size| {
            let n = size.saturating_sub(offset).min(dst.len() as u64) as usize;
            if n > 0 {
                let src = self.buffer_ptr(section.slot, buffer);
                // SAFETY: offset + n <= size <= section_bytes_max <= buffer_stride,
                // so the source is inside the buffer; `dst` has n bytes. The
                // source may be rewritten concurrently: the protocol discards
                // such a copy and retries.
                unsafe {
                    std::ptr::copy_nonoverlapping(src.add(offset as usize), dst.as_mut_ptr(), n)
                };
            }
            copied = n;
        })?;
        Ok((copied, meta))
    }

    /// Reads a whole section into a new vector.
    pub fn read_to_vec(&self, section: SectionRef) -> Result<(Vec<u8>, ReadMeta), ReadFail> {
        if section.slot >= self.geometry().sections_max {
            return Err(ReadFail::Gone);
        }
        let mut out = Vec::new();
        let max = self.attributes().section_bytes_max;
        let slot = self.slot(section.slot);
        let meta = slot::read_consistent(slot, section.gen, max, |buffer, size| {
            out.resize(size as usize, 0);
            let src = self.buffer_ptr(section.slot, buffer);
            // SAFETY: size <= section_bytes_max (clamped by read_consistent),
            // inside the buffer; `out` has exactly size bytes.
            unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), size as usize) };
        })?;
        Ok((out, meta))
    }

    /// Sections and memory used, from the counters.
    pub fn usage(&self) -> (u32, u64) {
        let h = self.header();
        (
            h.sections_live.load(Ordering::Relaxed).min(u32::MAX as u64) as u32,
            h.memory_used.load(Ordering::Relaxed),
        )
    }

    /// The log position where the next frame will be published.
    pub fn log_tail(&self) -> u64 {
        self.log().tail()
    }

    /// A consumer of the delta log starting at `from` (default: the tail now).
    pub fn consumer(&self, from: Option<u64>) -> Consumer<'_> {
        Consumer {
            mapped: self,
            cursor: from.unwrap_or_else(|| self.log_tail()),
            buf: Vec::new(),
        }
    }
}

impl Mapped {
    /// Calls `f` for every live, unexpired section that `chosen` selects, in
    /// slot order, without allocating. Each section existing throughout is
    /// visited exactly once.
    pub fn for_each_section(&self, chosen: SectionsChosen, mut f: impl FnMut(SectionView<'_>)) {
        let now = now();
        for s in 0..self.geometry().sections_max {
            if let Some(view) = self.section_view(s, chosen, now) {
                f(view);
            }
        }
    }

    /// The section in slot `slot`, if it is live, unexpired at `now` and chosen.
    #[inline]
    pub fn section_view(
        &self,
        slot: u32,
        chosen: SectionsChosen,
        now: Time,
    ) -> Option<SectionView<'_>> {
        if slot >= self.geometry().sections_max {
            return None;
        }
        let header = self.slot(slot);
        // SYNC POINT: Acquire pairs with the Release store in `publish_created`.
        let life = LifeWord::from(header.life.load(Ordering::Acquire));
        if life.state != slot_state::LIVE {
            return None;
        }
        let expiration = Time(header.expiration_ns.load(Ordering::Acquire));
        if (expiration != Time::END && now >= expiration) || !chosen.selects(expiration) {
            return None;
        }
        if header.id_len.load(Ordering::Relaxed) as u64 > self.attributes().section_id_bytes_max {
            return None;
        }
        let commit = CommitWord::from(header.commit.load(Ordering::Acquire));
        let meta = &header.buffers[commit.cur as usize];
        Some(SectionView {
            section: SectionRef {
                slot,
                gen: life.gen,
            },
            id: self.id_slice(slot),
            expiration,
            size_bytes: meta.size.load(Ordering::Relaxed),
            last_update: Time(meta.time_ns.load(Ordering::Relaxed)),
        })
    }
}

impl Segment {
    fn holder_alive(&self, held: ClaimWord) -> bool {
        let Some(entry) = (held.owner as usize)
            .checked_sub(1)
            .and_then(|i| self.openers().get(i))
        else {
            return false;
        };
        let word = OpenerWord::from(entry.word.load(Ordering::SeqCst));
        word.pid != 0
            && word.gen == held.owner_gen
            && proc::is_alive(word.pid, entry.start_ticks.load(Ordering::Acquire))
    }

    fn claim(&self) -> Result<Held<'_>, ClaimFail> {
        let h = self.header();
        if let Ok(word) = claim::try_acquire(&h.claim, self.owner) {
            return Ok(Held {
                segment: self,
                word,
                tail_at_claim: h.log_tail.load(Ordering::Relaxed),
            });
        }
        let deadline = Instant::now() + self.config().claim_timeout;
        let acquired = claim::acquire(
            &h.claim,
            self.owner,
            |held| self.holder_alive(held),
            || Instant::now() > deadline,
        )
        .map_err(|_| ClaimFail::Contended)?;
        let held = Held {
            segment: self,
            word: acquired.word(),
            tail_at_claim: h.log_tail.load(Ordering::Relaxed),
        };
        if let Acquired::Stolen(_) = acquired {
            self.recover();
        }
        Ok(held)
    }

    fn set_intent(&self, op: u8, slot: u32, target: u64, bucket: u64) {
        let h = self.header();
        h.intent_target.store(target, Ordering::Relaxed);
        h.intent_bucket.store(bucket, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the Acquire load in `recover` (after
        // the stealer's AcqRel CAS): target and bucket are visible with the op.
        h.intent_op
            .store(IntentWord { op, slot }.value(), Ordering::Release);
    }

    fn clear_intent(&self) {
        self.header()
            .intent_op
            .store(IntentWord::default().value(), Ordering::Release);
    }

    /// Publishes the log up to `end`; sleepers are woken when the claim is
    /// released (see `Held`).
    #[inline]
    fn publish(&self, end: u64) {
        self.log().publish(end);
    }

    /// Finishes or undoes the mutation of a dead claim holder, then recomputes
    /// the counters. Runs with the claim held.
    fn recover(&self) {
        let h = self.header();
        // SYNC POINT: Acquire pairs with the Release store in `set_intent`.
        let intent = IntentWord::from(h.intent_op.load(Ordering::Acquire));
        let target = h.intent_target.load(Ordering::Relaxed);
        let bucket = h.intent_bucket.load(Ordering::Relaxed);
        let log_end = h.intent_log_end.load(Ordering::Relaxed);
        let log = self.log();
        let tail = log.tail();
        let publishable = log_end > tail && log_end - tail <= self.geometry().log_bytes;
        let in_range = intent.slot < self.geometry().sections_max;
        let index = self.index();
        let committed = in_range && {
            let slot = self.slot(intent.slot);
            match intent.op {
                intent_op::WRITE => slot.commit.load(Ordering::Acquire) == target,
                intent_op::CREATE | intent_op::DELETE => {
                    slot.life.load(Ordering::Acquire) == target
                }
                intent_op::EXPIRE => slot.expiration_ns.load(Ordering::Acquire) == target as i64,
                _ => false,
            }
        };
        if committed {
            if intent.op == intent_op::DELETE {
                self.remove_bucket_of(bucket, intent.slot);
            }
            if publishable {
                self.publish(log_end);
            }
        } else {
            if in_range {
                let slot = self.slot(intent.slot);
                match intent.op {
                    intent_op::WRITE => slot::write_abandon(slot),
                    intent_op::CREATE => {
                        self.remove_bucket_of(bucket, intent.slot);
                        slot::retire(slot, LifeWord::from(target).gen);
                    }
                    _ => {}
                }
            }
            log.forget_unpublished();
        }
        if index.interrupted() {
            self.compact_index();
        }
        self.recount();
        self.clear_intent();
        h.recoveries.fetch_add(1, Ordering::Relaxed);
    }

    fn remove_bucket_of(&self, bucket: u64, slot: u32) {
        let index = self.index();
        if bucket < self.geometry().index_buckets {
            let word = index.get(bucket);
            if word.state == bucket_state::LIVE && word.slot == slot {
                index.remove(bucket);
            }
        }
    }

    fn compact_index(&self) {
        self.index().compact(|w| {
            (w.slot < self.geometry().sections_max).then_some(())?;
            let life = LifeWord::from(self.slot(w.slot).life.load(Ordering::Acquire));
            (life.state == slot_state::LIVE && life.gen as u16 == w.gen)
                .then(|| hash_id(self.id_slice(w.slot)))
        });
    }

    /// Recomputes the section count and memory used from the slots.
    fn recount(&self) {
        let (mut live, mut bytes) = (0u64, 0u64);
        for s in 0..self.geometry().sections_max {
            let slot = self.slot(s);
            if LifeWord::from(slot.life.load(Ordering::Acquire)).state == slot_state::LIVE {
                live += 1;
                bytes += committed_size(slot).min(self.attributes().section_bytes_max);
            }
        }
        let h = self.header();
        h.sections_live.store(live, Ordering::Relaxed);
        h.memory_used.store(bytes, Ordering::Relaxed);
    }

    fn frame_header(
        &self,
        kind: FrameKind,
        id_len: usize,
        data_len: usize,
        arg: i64,
        version: u64,
        time_ns: i64,
    ) -> FrameHeader {
        let mut header = FrameHeader {
            kind,
            flags: 0,
            lsn: 0,
            id_len: id_len as u16,
            data_len: data_len as u32,
            time_ns,
            arg,
            version,
        };
        if header.frame_bytes() > elide_threshold(self.geometry().log_bytes as usize) {
            header.flags = FLAG_DATA_ELIDED;
        }
        header
    }

    /// Replaces a section's data: `offset == None` overwrites (data and size),
    /// `Some(o)` writes `data` at `o` (the section may grow). The hot path.
    #[inline]
    pub fn write(
        &self,
        section: SectionRef,
        offset: Option<u64>,
        data: &[u8],
    ) -> Result<(), WriteError> {
        let e = WriteElement {
            section,
            offset,
            data,
        };
        let max = self.attributes().section_bytes_max;
        let end = offset.unwrap_or(0).checked_add(data.len() as u64);
        if end.is_none_or(|end| end > max) {
            return Err(WriteError::TooLarge);
        }
        let _held = self.claim()?;
        if !self.is_live(section) || self.is_expired(section) {
            return Err(WriteError::NotExist);
        }
        let old_size = committed_size(self.slot(section.slot));
        if old_size > max {
            return Err(WriteError::Corrupt);
        }
        let new_size = new_size(&e, old_size)?;
        if !self.has_room(old_size, new_size) {
            return Err(WriteError::CheckpointFull);
        }
        self.write_held(&e, old_size, new_size);
        Ok(())
    }

    /// Applies several writes under one claim, in order: every element is
    /// validated first, so an error (with the failing element's index) leaves
    /// everything unwritten. A writer killed halfway leaves each section at its
    /// old or new version, the earlier elements committed first.
    pub fn write_many(&self, elements: &[WriteElement<'_>]) -> Result<(), (usize, WriteError)> {
        let _held = self.claim().map_err(|e| (0, e.into()))?;
        match self.plan_writes(elements) {
            // Expired sections still count until swept: sweep, then re-plan.
            Err((_, WriteError::CheckpointFull)) if self.sweep_expired_held(now()) > 0 => {
                self.plan_writes(elements)?
            }
            other => other?,
        }
        for (i, e) in elements.iter().enumerate() {
            let old_size = committed_size(self.slot(e.section.slot));
            // The plan checked this with the same sizes; a failure here would
            // mean the segment changed under the claim.
            let new_size = new_size(e, old_size).map_err(|_| (i, WriteError::Corrupt))?;
            self.write_held(e, old_size, new_size);
        }
        Ok(())
    }

    /// Validates the elements in the order they will apply: each one sees the
    /// sizes the earlier ones leave, and `checkpointSize` counts each section's
    /// final size once.
    #[inline]
    fn plan_writes(&self, elements: &[WriteElement<'_>]) -> Result<(), (usize, WriteError)> {
        let max = self.attributes().section_bytes_max;
        let mut used = self.header().memory_used.load(Ordering::Relaxed);
        for (i, e) in elements.iter().enumerate() {
            let end = e.offset.unwrap_or(0).checked_add(e.data.len() as u64);
            if end.is_none_or(|end| end > max) {
                return Err((i, WriteError::TooLarge));
            }
            if !self.is_live(e.section) || self.is_expired(e.section) {
                return Err((i, WriteError::NotExist));
            }
            let mut before = committed_size(self.slot(e.section.slot));
            if before > max {
                return Err((i, WriteError::Corrupt));
            }
            for earlier in elements[..i].iter().filter(|p| p.section == e.section) {
                before = new_size(earlier, before).map_err(|err| (i, err))?;
            }
            let after = new_size(e, before).map_err(|err| (i, err))?;
            used = used.saturating_sub(before).saturating_add(after);
            if used > self.attributes().checkpoint_bytes {
                return Err((i, WriteError::CheckpointFull));
            }
        }
        Ok(())
    }

    /// True if a section growing from `old_size` to `new_size` bytes keeps the
    /// sections within `checkpointSize`. Expired sections still count until
    /// swept, so when short of room this sweeps them and checks again. Claim held.
    #[inline]
    fn has_room(&self, old_size: u64, new_size: u64) -> bool {
        let fits = |s: &Self| {
            let used = s.header().memory_used.load(Ordering::Relaxed);
            used.saturating_sub(old_size).saturating_add(new_size)
                <= s.attributes().checkpoint_bytes
        };
        fits(self) || (self.sweep_expired_held(now()) > 0 && fits(self))
    }

    /// One planned write, with the claim held.
    #[inline]
    fn write_held(&self, e: &WriteElement<'_>, old_size: u64, new_size: u64) {
        let next = self.begin_version(e.section);
        let at = match e.offset {
            Some(o) => {
                let src = self.buffer_ptr(e.section.slot, next.current.cur);
                // SAFETY: both buffers are buffer_stride >= section_bytes_max
                // bytes long and in the mapping; old_size <= max (validated).
                // The claim makes us the only writer of `dst`; `src` is
                // committed and stable while we hold it.
                unsafe { std::ptr::copy_nonoverlapping(src, next.dst, old_size as usize) };
                o
            }
            None => 0,
        };
        // SAFETY: at + len <= section_bytes_max <= buffer_stride (validated).
        unsafe {
            std::ptr::copy_nonoverlapping(e.data.as_ptr(), next.dst.add(at as usize), e.data.len())
        };
        let kind = if e.offset.is_some() {
            FrameKind::Write
        } else {
            FrameKind::Overwrite
        };
        self.finish_version(next, kind, at, e.data, old_size, new_size);
    }

    /// Starts a new version of a section: pending bit, intent. Claim held.
    #[inline]
    fn begin_version(&self, section: SectionRef) -> NextVersion {
        let (current, buffer) = slot::write_begin(self.slot(section.slot));
        let target = CommitWord {
            pending: false,
            cur: buffer,
            version: current.version + 1,
        };
        self.set_intent(intent_op::WRITE, section.slot, target.value(), 0);
        NextVersion {
            section,
            current,
            buffer,
            dst: self.buffer_ptr(section.slot, buffer),
        }
    }

    /// Logs and commits a version whose buffer is filled, then publishes it.
    #[inline]
    fn finish_version(
        &self,
        next: NextVersion,
        kind: FrameKind,
        at: u64,
        data: &[u8],
        old_size: u64,
        new_size: u64,
    ) {
        let h = self.header();
        let time = coarse_now();
        let id = self.id_slice(next.section.slot);
        let version = next.current.version + 1;
        let header = self.frame_header(kind, id.len(), data.len(), at as i64, version, time);
        let pending = self.log().write(header, id, data);
        h.intent_log_end.store(pending.end, Ordering::Relaxed);
        slot::write_commit(
            self.slot(next.section.slot),
            next.current,
            next.buffer,
            new_size,
            time,
        );
        self.publish(pending.end);
        let used = h.memory_used.load(Ordering::Relaxed);
        h.memory_used
            .store(used.saturating_sub(old_size) + new_size, Ordering::Relaxed);
        self.clear_intent();
    }

    /// Overwrites a section with `len` bytes that `fill` writes straight into the
    /// segment (zero-copy: no intermediate buffer).
    pub fn overwrite_with(
        &self,
        section: SectionRef,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), WriteError> {
        let max = self.attributes().section_bytes_max;
        if len as u64 > max {
            return Err(WriteError::TooLarge);
        }
        let _held = self.claim()?;
        if !self.is_live(section) || self.is_expired(section) {
            return Err(WriteError::NotExist);
        }
        let old_size = committed_size(self.slot(section.slot)).min(max);
        if !self.has_room(old_size, len as u64) {
            return Err(WriteError::CheckpointFull);
        }
        let next = self.begin_version(section);
        // SAFETY: the uncommitted buffer is written only by the claim holder (us)
        // until we release; `len <= max <= buffer_stride`. Readers of an older
        // version may still be copying from it: they only read, and discard
        // their copy (pending bit), so handing out `&mut` to our process is sound.
        let dst = unsafe { std::slice::from_raw_parts_mut(next.dst, len) };
        fill(dst);
        self.finish_version(next, FrameKind::Overwrite, 0, dst, old_size, len as u64);
        Ok(())
    }

    /// Creates a section. `id == None` generates one (4-byte big-endian counter,
    /// truncated to `maxSectionIdSize`), returned with the reference.
    pub fn create_section(
        &self,
        id: Option<&[u8]>,
        expiration: Time,
        data: &[u8],
    ) -> Result<(SectionRef, SectionId), SectionCreateError> {
        let attrs = *self.attributes();
        if attrs.has_default_section() {
            return Err(SectionCreateError::Exist);
        }
        if id.is_some_and(|i| i.len() as u64 > attrs.section_id_bytes_max) {
            return Err(SectionCreateError::IdTooLong);
        }
        if id.is_some_and(|i| i.is_empty()) {
            return Err(SectionCreateError::EmptyId);
        }
        if data.len() as u64 > attrs.section_bytes_max {
            return Err(SectionCreateError::DataTooLarge);
        }
        if expiration.0 < 0 {
            return Err(SectionCreateError::InvalidExpiration);
        }
        let _held = self.claim()?;
        let h = self.header();
        if h.sections_live.load(Ordering::Relaxed) >= attrs.sections_max as u64 {
            self.sweep_expired_held(now());
            if h.sections_live.load(Ordering::Relaxed) >= attrs.sections_max as u64 {
                return Err(SectionCreateError::NoSpace);
            }
        }
        if !self.has_room(0, data.len() as u64) {
            return Err(SectionCreateError::CheckpointFull);
        }
        // An expired section's id is free again: delete it first.
        if let Some(existing) = id.and_then(|id| self.lookup(id).ok().flatten()) {
            if self.is_expired(existing) {
                self.delete_held(existing);
            }
        }
        let used = h.memory_used.load(Ordering::Relaxed);
        let index = self.index();
        let mut generated = [0u8; 4];
        let (id, h_id, position) = match id {
            Some(id) => {
                let h_id = hash_id(id);
                let pos = index
                    .insert_position(h_id, |w| self.confirm(w, id).is_some())
                    .map_err(|e| match e {
                        InsertError::Exist => SectionCreateError::Exist,
                        InsertError::Full => SectionCreateError::NoSpace,
                    })?;
                (id, h_id, pos)
            }
            None => {
                let width = (attrs.section_id_bytes_max as usize).min(4);
                let mut found = None;
                for _ in 0..=attrs.sections_max {
                    let n = (h.next_generated_id.fetch_add(1, Ordering::Relaxed) as u32)
                        .wrapping_add(1);
                    generated = n.to_be_bytes();
                    let candidate = &generated[4 - width..];
                    let h_id = hash_id(candidate);
                    match index.insert_position(h_id, |w| self.confirm(w, candidate).is_some()) {
                        Ok(pos) => {
                            found = Some((h_id, pos));
                            break;
                        }
                        Err(InsertError::Exist) => continue,
                        Err(InsertError::Full) => return Err(SectionCreateError::NoSpace),
                    }
                }
                let (h_id, pos) = found.ok_or(SectionCreateError::NoSpace)?;
                (&generated[4 - width..], h_id, pos)
            }
        };
        let slot_index = self.free_slot().ok_or(SectionCreateError::NoSpace)?;
        let slot = self.slot(slot_index);
        let old = LifeWord::from(slot.life.load(Ordering::Relaxed));
        let gen = match old.gen.wrapping_add(1) {
            0 => 1,
            g => g,
        };
        let live = LifeWord {
            state: slot_state::LIVE,
            gen,
        };
        self.set_intent(intent_op::CREATE, slot_index, live.value(), position);
        slot.life.store(
            LifeWord {
                state: slot_state::RESERVED,
                gen,
            }
            .value(),
            Ordering::Release,
        );
        let time = coarse_now();
        // SAFETY: the slot is reserved by us (claim held), so nobody reads its id
        // area or buffer 0 until `publish_created`; lengths are within the
        // slot's id area and buffer (checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(id.as_ptr(), self.slot_id_ptr(slot_index), id.len());
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.buffer_ptr(slot_index, 0),
                data.len(),
            );
        }
        slot::init_first_version(slot, id.len() as u32, expiration.0, data.len() as u64, time);
        index.store(
            position,
            BucketWord {
                state: bucket_state::LIVE,
                tag: tag_of(h_id),
                gen: gen as u16,
                slot: slot_index,
            },
        );
        let header = self.frame_header(
            FrameKind::Create,
            id.len(),
            data.len(),
            expiration.0,
            1,
            time,
        );
        let pending = self.log().write(header, id, data);
        h.intent_log_end.store(pending.end, Ordering::Relaxed);
        slot::publish_created(slot, gen);
        self.publish(pending.end);
        h.sections_live.fetch_add(1, Ordering::Relaxed);
        h.memory_used
            .store(used + data.len() as u64, Ordering::Relaxed);
        self.clear_intent();
        Ok((
            SectionRef {
                slot: slot_index,
                gen,
            },
            SectionId(id.to_vec()),
        ))
    }

    fn free_slot(&self) -> Option<u32> {
        let n = self.geometry().sections_max;
        let start = self.free_hint.load(std::sync::atomic::Ordering::Relaxed) % n;
        (0..n).map(|k| (start + k) % n).find(|&s| {
            let free =
                LifeWord::from(self.slot(s).life.load(Ordering::Acquire)).state == slot_state::FREE;
            if free {
                self.free_hint
                    .store(s + 1, std::sync::atomic::Ordering::Relaxed);
            }
            free
        })
    }

    /// Deletes a section.
    pub fn delete_section(&self, section: SectionRef) -> Result<(), SectionDeleteError> {
        let _held = self.claim()?;
        if !self.is_live(section) || self.is_expired(section) {
            return Err(SectionDeleteError::NotExist);
        }
        self.delete_held(section).ok_or(SectionDeleteError::Corrupt)
    }

    /// Deletes with the claim held; `None` if the index does not hold the section.
    fn delete_held(&self, section: SectionRef) -> Option<()> {
        let h = self.header();
        let slot = self.slot(section.slot);
        let id = self.id_slice(section.slot);
        let h_id = hash_id(id);
        let word = BucketWord {
            state: bucket_state::LIVE,
            tag: tag_of(h_id),
            gen: section.gen as u16,
            slot: section.slot,
        };
        let position = self.index().position_of(h_id, word)?;
        let free = LifeWord {
            state: slot_state::FREE,
            gen: section.gen,
        };
        self.set_intent(intent_op::DELETE, section.slot, free.value(), position);
        let version = CommitWord::from(slot.commit.load(Ordering::Relaxed)).version;
        let size = committed_size(slot).min(self.attributes().section_bytes_max);
        let header = self.frame_header(FrameKind::Delete, id.len(), 0, 0, version, coarse_now());
        let pending = self.log().write(header, id, &[]);
        h.intent_log_end.store(pending.end, Ordering::Relaxed);
        slot::retire(slot, section.gen);
        let index = self.index();
        index.remove(position);
        if index.wants_compaction() {
            self.compact_index();
        }
        self.publish(pending.end);
        h.sections_live.fetch_sub(1, Ordering::Relaxed);
        let used = h.memory_used.load(Ordering::Relaxed);
        h.memory_used
            .store(used.saturating_sub(size), Ordering::Relaxed);
        self.clear_intent();
        Some(())
    }

    /// Sets a section's absolute expiration.
    pub fn set_expiration(
        &self,
        section: SectionRef,
        expiration: Time,
    ) -> Result<(), ExpirationSetError> {
        if expiration.0 < 0 {
            return Err(ExpirationSetError::InvalidExpiration);
        }
        let _held = self.claim()?;
        if !self.is_live(section) || self.is_expired(section) {
            return Err(ExpirationSetError::NotExist);
        }
        let h = self.header();
        let slot = self.slot(section.slot);
        self.set_intent(intent_op::EXPIRE, section.slot, expiration.0 as u64, 0);
        let id = self.id_slice(section.slot);
        let version = CommitWord::from(slot.commit.load(Ordering::Relaxed)).version;
        let header = self.frame_header(
            FrameKind::ExpirationSet,
            id.len(),
            0,
            expiration.0,
            version,
            coarse_now(),
        );
        let pending = self.log().write(header, id, &[]);
        h.intent_log_end.store(pending.end, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the Acquire load in `is_expired`.
        slot.expiration_ns.store(expiration.0, Ordering::Release);
        self.publish(pending.end);
        self.clear_intent();
        Ok(())
    }

    /// Deletes every expired section (logging each delete). Returns how many.
    pub fn sweep_expired(&self) -> Result<u32, ClaimFail> {
        let _held = self.claim()?;
        Ok(self.sweep_expired_held(now()))
    }

    fn sweep_expired_held(&self, now: Time) -> u32 {
        let mut swept = 0;
        for s in 0..self.geometry().sections_max {
            let slot = self.slot(s);
            let life = LifeWord::from(slot.life.load(Ordering::Acquire));
            let expiration = slot.expiration_ns.load(Ordering::Acquire);
            if life.state == slot_state::LIVE && expiration != Time::END.0 && now.0 >= expiration {
                let section = SectionRef {
                    slot: s,
                    gen: life.gen,
                };
                if self.delete_held(section).is_some() {
                    swept += 1;
                }
            }
        }
        swept
    }
}

/// A version being written (claim held).
struct NextVersion {
    section: SectionRef,
    current: CommitWord,
    buffer: u32,
    dst: *mut u8,
}

/// One element of [`Segment::write_many`].
#[derive(Debug, Clone, Copy)]
pub struct WriteElement<'a> {
    /// The section.
    pub section: SectionRef,
    /// `None` to overwrite (replace data and size), `Some(offset)` to write there.
    pub offset: Option<u64>,
    /// The bytes.
    pub data: &'a [u8],
}

/// The size a section will have after `e`.
fn new_size(e: &WriteElement<'_>, old_size: u64) -> Result<u64, WriteError> {
    match e.offset {
        None => Ok(e.data.len() as u64),
        Some(o) if o > old_size => Err(WriteError::OffsetPastEnd),
        Some(o) => Ok((o + e.data.len() as u64).max(old_size)),
    }
}

/// The committed size of a slot (unvalidated: callers clamp or check).
fn committed_size(slot: &SlotHeader) -> u64 {
    let commit = CommitWord::from(slot.commit.load(Ordering::Acquire));
    slot.buffers[commit.cur as usize]
        .size
        .load(Ordering::Relaxed)
}

/// Follows the delta log: every mutation in commit order.
pub struct Consumer<'a> {
    mapped: &'a Mapped,
    cursor: u64,
    buf: Vec<u8>,
}

impl Consumer<'_> {
    /// The next frame, or `None` at the tail.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, LogError> {
        self.mapped.log().read_next(&mut self.cursor, &mut self.buf)
    }

    /// The position of the next frame to read.
    pub fn position(&self) -> u64 {
        self.cursor
    }

    /// Jumps to the tail (after resynchronizing from the sections).
    pub fn skip_to_tail(&mut self) -> u64 {
        self.cursor = self.mapped.log_tail();
        self.cursor
    }

    /// True if frames are waiting.
    pub fn has_next(&self) -> bool {
        self.mapped.log_tail() > self.cursor
    }

    /// Waits until a frame is published or `timeout` passes: spins for up to
    /// `spin` first (a standby on its own core sees a change within about a
    /// microsecond), then sleeps on the futex. Returns true if frames wait.
    pub fn wait(&self, timeout: Duration, spin: Duration) -> bool {
        let start = Instant::now();
        let mut polls = 0u32;
        while start.elapsed() < spin {
            if self.has_next() {
                return true;
            }
            polls += 1;
            if polls % 64 == 0 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        let h = self.mapped.header();
        let _sleeper = notify::Sleeper::register(&h.waiters);
        loop {
            // SYNC POINT: SeqCst load, the sleeper's half of the Dekker pair with
            // the writer's SeqCst fence in `publish`.
            let tail = h.log_tail.load(Ordering::SeqCst);
            if tail > self.cursor {
                return true;
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return false;
            }
            notify::wait(&h.log_tail, tail, left);
        }
    }
}
