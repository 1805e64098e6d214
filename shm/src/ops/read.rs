//! Reading never waits and needs no registration as an opener: lookups,
//! consistent reads, iteration. These work on any validated mapping (the CLI
//! inspects segments this way without touching retention).

use ckpt_core::attrs::limits;
use ckpt_core::{SectionsChosen, Time};

use super::SectionRef;
use crate::index::hash_id;
use crate::layout::{slot_state, BucketWord, CommitWord, LifeWord, SlotHeader, SLOT_FIXED_BYTES};
use crate::racy;
use crate::segment::{now, Mapped};
use crate::slot::{self, ReadFail, ReadMeta};
use crate::sync::{fence, Ordering};

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
    /// The id bytes of a slot whose id the caller knows is stable (claim held,
    /// or validated afterwards through the life word).
    #[inline]
    pub(crate) fn id_slice(&self, slot: u32) -> &[u8] {
        self.id_of(self.slot(slot))
    }

    /// [`Self::id_slice`] of a slot header of this mapping.
    #[inline]
    pub(crate) fn id_of<'s>(&'s self, slot: &'s SlotHeader) -> &'s [u8] {
        let len = (slot.id_len.load(Ordering::Acquire) as u64)
            .min(self.attributes().section_id_bytes_max) as usize;
        let id = (slot as *const SlotHeader as *const u8).wrapping_add(SLOT_FIXED_BYTES as usize);
        // SAFETY: `slot` is a slot header of this mapping (callers get it from
        // `slot()`); its id area follows the fixed part, and len is clamped to
        // the area's size.
        unsafe { std::slice::from_raw_parts(id, len) }
    }

    /// The slot of `section` if it still names a live, unexpired section:
    /// one bounds check, one slot lookup.
    #[inline]
    pub(crate) fn live_slot(&self, section: SectionRef) -> Option<&SlotHeader> {
        if section.slot >= self.geometry().sections_max {
            return None;
        }
        let slot = self.slot(section.slot);
        // SYNC POINT: Acquire pairs with the Release store in `publish_created`.
        let life = LifeWord::from(slot.life.load(Ordering::Acquire));
        let live = LifeWord {
            state: slot_state::LIVE,
            gen: section.gen,
        };
        // SYNC POINT: Acquire pairs with the Release store in `set_expiration`.
        let expiration = slot.expiration_ns.load(Ordering::Acquire);
        (life == live && (expiration == Time::END.0 || now().0 < expiration)).then_some(slot)
    }

    #[inline]
    pub(crate) fn confirm(&self, word: BucketWord, id: &[u8]) -> Option<SectionRef> {
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

    /// [`Mapped::lookup`] that first checks `hint`, the section the previous
    /// call found (packed `slot << 32 | generation`), and remembers its
    /// answer there: repeated calls for one id skip the index. Expired
    /// sections are found only with `expired_too` (a replica's apply: it
    /// deletes only when the primary's delete arrives).
    #[inline]
    pub fn lookup_hinted(
        &self,
        id: &[u8],
        hint: &std::sync::atomic::AtomicU64,
        expired_too: bool,
    ) -> Result<Option<SectionRef>, ReadFail> {
        // A process-local memo (not shared memory): what it names is checked.
        let packed = hint.load(std::sync::atomic::Ordering::Relaxed);
        let last = SectionRef {
            slot: (packed >> 32) as u32,
            gen: packed as u32,
        };
        let live = if expired_too {
            self.is_live(last)
        } else {
            self.live_slot(last).is_some()
        };
        // The id is compared between two checks of the life word: a slot
        // deleted and reused meanwhile changes its generation.
        if live && self.slot_id_is(last.slot, id) && self.is_live(last) {
            return Ok(Some(last));
        }
        self.lookup_remembered(id, hint, expired_too)
    }

    /// The index search of [`Mapped::lookup_hinted`], out of line: the
    /// remembered answer is the common case.
    #[inline(never)]
    fn lookup_remembered(
        &self,
        id: &[u8],
        hint: &std::sync::atomic::AtomicU64,
        expired_too: bool,
    ) -> Result<Option<SectionRef>, ReadFail> {
        let found = self
            .lookup(id)?
            .filter(|&s| expired_too || !self.is_expired(s));
        if let Some(s) = found {
            let packed = (s.slot as u64) << 32 | s.gen as u64;
            hint.store(packed, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(found)
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

    /// The sequence number of the frame that set the section's expiration:
    /// its creation, unless its expiration was changed since. Every copy of
    /// a checkpoint (a replica, one rebuilt from a snapshot) holds the same
    /// number for the same section, and a section deleted and created again
    /// has a newer one: what tells a section from a namesake in another
    /// copy. `None` if the section is gone (or writers kept changing it).
    pub fn section_origin(&self, section: SectionRef) -> Option<u64> {
        if !self.is_live(section) {
            return None;
        }
        let (_, seq) = slot::read_expiration(self.slot(section.slot))?;
        // SYNC POINT: Acquire fence: the life word is read again after the
        // number (`is_live`'s Acquire load orders the first read before it).
        fence(Ordering::Acquire);
        self.is_live(section).then_some(seq)
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
                // source may be rewritten concurrently (atomically, by `racy`):
                // the protocol discards such a copy and retries.
                unsafe { racy::load(&mut dst[..n], src.add(offset as usize)) };
            }
            copied = n;
        })?;
        Ok((copied, meta))
    }

    /// Reads a whole section into a new vector.
    pub fn read_to_vec(&self, section: SectionRef) -> Result<(Vec<u8>, ReadMeta), ReadFail> {
        let mut out = Vec::new();
        let meta = self.read_whole(section, &mut out)?;
        Ok((out, meta))
    }

    /// Reads a whole section into `out` (resized to it; its allocation reused).
    pub fn read_whole(&self, section: SectionRef, out: &mut Vec<u8>) -> Result<ReadMeta, ReadFail> {
        if section.slot >= self.geometry().sections_max {
            return Err(ReadFail::Gone);
        }
        let max = self.attributes().section_bytes_max;
        let slot = self.slot(section.slot);
        slot::read_consistent(slot, section.gen, max, |buffer, size| {
            out.resize(size as usize, 0);
            let src = self.buffer_ptr(section.slot, buffer);
            // SAFETY: size <= section_bytes_max (clamped by read_consistent),
            // inside the buffer; `out` has exactly size bytes; a racing writer's
            // bytes are discarded by the protocol.
            unsafe { racy::load(out, src) };
        })
    }

    /// Sections and memory used, from the counters (expired sections count
    /// until a writer sweeps them; see [`Mapped::visible_usage`]).
    pub fn usage(&self) -> (u32, u64) {
        let h = self.header();
        (
            h.sections_live.load(Ordering::Relaxed).min(u32::MAX as u64) as u32,
            h.memory_used.load(Ordering::Relaxed),
        )
    }
}

impl Mapped {
    /// Sections and the sum of their sizes as a reader sees them now: live and
    /// unexpired (the counters of [`Mapped::usage`] still include expired
    /// sections until a writer sweeps them). One pass over the slots.
    pub fn visible_usage(&self) -> (u32, u64) {
        let (mut sections, mut bytes) = (0u32, 0u64);
        self.for_each_section(SectionsChosen::Any, |v| {
            sections += 1;
            bytes += v.size_bytes;
        });
        (sections, bytes)
    }

    /// Calls `f` for every live, unexpired section that `chosen` selects, in
    /// slot order, without allocating. Each section existing throughout is
    /// visited exactly once.
    pub fn for_each_section(&self, chosen: SectionsChosen, mut f: impl FnMut(SectionView<'_>)) {
        let now = now();
        let mut id = [0u8; limits::SECTION_ID_BYTES_MAX as usize];
        for s in 0..self.geometry().sections_max {
            if let Some(view) = self.section_view(s, chosen, now, &mut id) {
                f(view);
            }
        }
    }

    /// The section in slot `slot`, if it is live, unexpired at `now` and
    /// chosen; its id is copied into `id` (at least `maxSectionIdSize` bytes,
    /// else `None`), so that it stays the id of the incarnation viewed even if
    /// the slot is reused meanwhile.
    #[inline]
    pub fn section_view<'b>(
        &self,
        slot: u32,
        chosen: SectionsChosen,
        now: Time,
        id: &'b mut [u8],
    ) -> Option<SectionView<'b>> {
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
        let id_len = header.id_len.load(Ordering::Relaxed) as usize;
        if id_len as u64 > self.attributes().section_id_bytes_max || id_len > id.len() {
            return None;
        }
        let id = &mut id[..id_len];
        // SAFETY: id_len <= maxSectionIdSize bytes of the slot's id area (in
        // the mapping); writers store ids atomically (`racy`).
        unsafe { racy::load(id, self.slot_id_ptr(slot)) };
        let commit = CommitWord::from(header.commit.load(Ordering::Acquire));
        let meta = &header.buffers[commit.cur as usize];
        let (size_bytes, time_ns) = (
            meta.size.load(Ordering::Relaxed),
            meta.time_ns.load(Ordering::Relaxed),
        );
        // SYNC POINT: Acquire fence pairs with the Release store of the life
        // word when the slot is reserved again: a changed word means the id
        // copied may be another section's.
        fence(Ordering::Acquire);
        if LifeWord::from(header.life.load(Ordering::Relaxed)) != life {
            return None;
        }
        Some(SectionView {
            section: SectionRef {
                slot,
                gen: life.gen,
            },
            id,
            expiration,
            size_bytes,
            last_update: Time(time_ns),
        })
    }
}

/// The committed size of a slot (unvalidated: callers clamp or check).
#[inline]
pub(crate) fn committed_size(slot: &SlotHeader) -> u64 {
    let commit = CommitWord::from(slot.commit.load(Ordering::Acquire));
    slot.buffers[commit.cur as usize]
        .size
        .load(Ordering::Relaxed)
}
