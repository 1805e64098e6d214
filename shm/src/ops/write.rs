//! Writes: overwrite, write at an offset, vector writes and the zero-copy
//! overwrite. Each element is one new version of its section, made by
//! `Segment::write_version` through the mutation path.

use std::cell::Cell;
use std::marker::PhantomData;

use ckpt_core::error::WriteError;
use ckpt_core::frame::{frame_bytes, FrameKind};

use super::read::committed_size;
use super::{FrameSpec, Intent, SectionRef, Stamp};
use crate::layout::{intent_op, next_version, CommitWord};
use crate::log::frame_bytes_max;
use crate::racy;
use crate::segment::{now, Segment};
use crate::slot;
use crate::sync::Ordering;

/// The spare buffer of a section being overwritten in place: what
/// [`Segment::overwrite_with`] hands its closure. It is `len` bytes of shared
/// memory that readers of an older version may still be copying (they discard
/// what they copied, seeing the version change), so it is not a `&mut [u8]`:
/// every access goes through atomic copies (`racy`), which makes filling it
/// sound whatever those readers do, at the speed of a plain copy. It starts
/// with stale bytes (an older version's); write every byte you care about.
pub struct SpareBuffer<'a> {
    ptr: *mut u8,
    len: usize,
    _buffer: PhantomData<&'a mut [u8]>,
}

impl<'a> SpareBuffer<'a> {
    /// A spare buffer over private `bytes` (nobody else sees them): what a
    /// change filled in place is filled into where it cannot be (a
    /// replica's, sent to its primary instead).
    pub fn private(bytes: &'a mut [u8]) -> SpareBuffer<'a> {
        SpareBuffer {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            _buffer: PhantomData,
        }
    }
}

impl SpareBuffer<'_> {
    /// Its length: the section's new size.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length overwrite.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, offset: usize, len: usize) {
        let end = offset.checked_add(len);
        assert!(
            end.is_some_and(|end| end <= self.len),
            "bytes {offset}..{offset}+{len} are outside the {}-byte spare buffer",
            self.len
        );
    }

    /// Copies `src` into the whole buffer (as `<[u8]>::copy_from_slice`).
    /// Panics if the lengths differ: the section keeps its old version.
    pub fn copy_from_slice(&mut self, src: &[u8]) {
        assert_eq!(
            src.len(),
            self.len,
            "source and spare buffer lengths differ"
        );
        self.write_at(0, src);
    }

    /// Copies `src` to byte `offset`. Panics if it does not fit: the section
    /// keeps its old version.
    pub fn write_at(&mut self, offset: usize, src: &[u8]) {
        self.check(offset, src.len());
        // SAFETY: in bounds (checked) of the buffer `ptr` points to, which the
        // claim holder alone writes (or which is private: `private`); readers
        // copy it atomically.
        unsafe { racy::store(self.ptr.add(offset), src) };
    }

    /// Sets byte `offset` (the `buf[offset] = byte` of a slice).
    pub fn set(&mut self, offset: usize, byte: u8) {
        self.write_at(offset, &[byte]);
    }

    /// Sets every byte to `byte`.
    pub fn fill(&mut self, byte: u8) {
        let chunk = [byte; 256];
        let mut at = 0;
        while at < self.len {
            let n = (self.len - at).min(chunk.len());
            self.write_at(at, &chunk[..n]);
            at += n;
        }
    }

    /// Copies bytes from `offset` into `dst` (what this closure, or an older
    /// version, left there). Panics if out of bounds.
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) {
        self.check(offset, dst.len());
        // SAFETY: in bounds (checked); atomic copy of memory others only read.
        unsafe { racy::load(dst, self.ptr.add(offset)) };
    }
}

/// How many times a reader looks again for a group's flips to end before it
/// takes the claim ([`Segment::read_isolated`]); the flips take nanoseconds.
const SETTLE_SPINS: u32 = 1000;

/// How many times [`Segment::read_isolated`] runs a read that groups' flips
/// interrupted before it runs it under the claim.
pub const ISOLATED_TRIES: u32 = 8;

/// Vectors of more elements than this find their sections by slot in a map
/// ([`Segment::write_many`]); shorter ones scan the sections found so far.
const PLAN_SCAN_MAX: usize = 16;

/// A section a vector write writes ([`Segment::write_group`]).
#[derive(Debug, Clone, Default)]
struct GroupSection {
    slot: u32,
    /// Its first element.
    first: usize,
    /// How many elements write it.
    elements: usize,
    /// Its size before the vector, and after the elements planned so far.
    old_size: u64,
    new_size: u64,
    /// While `write_group` builds it: the size its elements so far leave in
    /// the spare buffer (where the next element's hole, if any, starts).
    built: Cell<u64>,
}

/// The sections a vector write writes, in the order of their first elements:
/// what `plan_writes` finds, and `write_group` commits. Up to
/// [`PLAN_SCAN_MAX`] elements they are kept inline and found by a scan (no
/// allocation); a longer vector keeps them on the heap and finds them by
/// slot in a map (a scan per element would be quadratic: a vector of 65,536
/// elements took half a minute).
struct Groups {
    inline: [GroupSection; PLAN_SCAN_MAX],
    count: usize,
    heap: Vec<GroupSection>,
    by_slot: Option<std::collections::HashMap<u32, usize>>,
}

impl Groups {
    fn for_elements(elements: usize) -> Groups {
        Groups {
            inline: std::array::from_fn(|_| GroupSection::default()),
            count: 0,
            heap: Vec::new(),
            by_slot: (elements > PLAN_SCAN_MAX).then(std::collections::HashMap::new),
        }
    }

    fn as_slice(&self) -> &[GroupSection] {
        match self.by_slot {
            Some(_) => &self.heap,
            None => &self.inline[..self.count],
        }
    }

    /// The index of `slot`'s section, if an earlier element writes it.
    fn find(&self, slot: u32) -> Option<usize> {
        match &self.by_slot {
            Some(map) => map.get(&slot).copied(),
            None => self.as_slice().iter().position(|g| g.slot == slot),
        }
    }

    /// The section of `slot`, added (from `first`, at `size`) if new.
    fn entry(&mut self, slot: u32, first: usize, size: u64) -> &mut GroupSection {
        let j = self.find(slot).unwrap_or_else(|| {
            let g = GroupSection {
                slot,
                first,
                elements: 0,
                old_size: size,
                new_size: size,
                built: Cell::new(size),
            };
            match &mut self.by_slot {
                Some(map) => {
                    map.insert(slot, self.heap.len());
                    self.heap.push(g);
                    self.heap.len() - 1
                }
                None => {
                    // At most one per element, and at most PLAN_SCAN_MAX here.
                    self.inline[self.count] = g;
                    self.count += 1;
                    self.count - 1
                }
            }
        });
        match &mut self.by_slot {
            Some(_) => &mut self.heap[j],
            None => &mut self.inline[j],
        }
    }
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

/// The size a section of `old_size` bytes will have after `len` bytes are
/// written at `offset` (`None`: overwritten). A write that starts past the
/// end grows the section over a hole of zero bytes, as OpenSAF and openais
/// do (the spec: "some sections might grow"). The caller has bounded
/// `offset + len` by `maxSectionSize`.
#[inline]
pub(crate) fn new_size(offset: Option<u64>, len: usize, old_size: u64) -> u64 {
    match offset {
        None => len as u64,
        Some(o) => (o + len as u64).max(old_size),
    }
}

/// How a new version's buffer is filled.
pub(crate) enum Fill<'d, F> {
    /// `data` at `offset`, over a copy of the old version (`None`: from 0,
    /// nothing kept).
    Copy { offset: Option<u64>, data: &'d [u8] },
    /// `len` bytes that the caller's closure writes in place, into the
    /// spare buffer.
    InPlace { len: usize, fill: F },
    /// A replica's staged write: the first `staged` bytes of the data are in
    /// the spare buffer already, at `offset` (0 for an overwrite); `last`
    /// follows them. The old contents around them are copied in.
    Staged {
        offset: Option<u64>,
        staged: u64,
        last: &'d [u8],
    },
}

impl Segment {
    /// Replaces a section's data: `offset == None` overwrites (data and size),
    /// `Some(o)` writes `data` at `o` (the section may grow). The hot path.
    #[inline]
    pub fn write(
        &self,
        section: SectionRef,
        offset: Option<u64>,
        data: &[u8],
    ) -> Result<(), WriteError> {
        let max = self.attributes().section_bytes_max;
        let end = offset.unwrap_or(0).checked_add(data.len() as u64);
        if end.is_none_or(|end| end > max) {
            return Err(WriteError::TooLarge);
        }
        let _held = self.claim_local()?;
        let (old_size, new_size) = self.check_write(section, offset, data.len())?;
        self.write_version::<fn(&mut SpareBuffer<'_>)>(
            section,
            old_size,
            new_size,
            Fill::Copy { offset, data },
            Stamp::now(),
        );
        Ok(())
    }

    /// Overwrites a section with `len` bytes that `fill` writes straight into
    /// the segment (zero-copy: no intermediate buffer), through a
    /// [`SpareBuffer`]. If `fill` panics, the section keeps its old version.
    pub fn overwrite_with(
        &self,
        section: SectionRef,
        len: usize,
        fill: impl FnOnce(&mut SpareBuffer<'_>),
    ) -> Result<(), WriteError> {
        if len as u64 > self.attributes().section_bytes_max {
            return Err(WriteError::TooLarge);
        }
        let _held = self.claim_local()?;
        let (old_size, _) = self.check_write(section, None, len)?;
        self.write_version(
            section,
            old_size,
            len as u64,
            Fill::InPlace { len, fill },
            Stamp::now(),
        );
        Ok(())
    }

    /// Checks a write of `len` bytes at `offset` against the section as it is
    /// (claim held): it exists and the checkpoint has room. Returns the old
    /// and new sizes.
    #[inline]
    fn check_write(
        &self,
        section: SectionRef,
        offset: Option<u64>,
        len: usize,
    ) -> Result<(u64, u64), WriteError> {
        let Some(slot) = self.live_slot(section) else {
            return Err(WriteError::NotExist);
        };
        let old_size = committed_size(slot);
        if old_size > self.attributes().section_bytes_max {
            return Err(WriteError::Corrupt);
        }
        let new_size = new_size(offset, len, old_size);
        if !self.fits(old_size, new_size) {
            if !self.has_room(old_size, new_size) {
                return Err(WriteError::CheckpointFull);
            }
            // Making room may have swept expired sections, this one among
            // them (it expired since the check above): never write to a
            // freed slot.
            if self.live_slot(section).is_none() {
                return Err(WriteError::NotExist);
            }
        }
        self.back_buffers(section.slot, new_size)
            .map_err(|_| WriteError::NoMemory)?;
        Ok((old_size, new_size))
    }

    /// Applies several writes under one claim, in order, all or nothing:
    /// every element is validated first, so an error (with the failing
    /// element's index) leaves everything unwritten, and the sections' new
    /// versions become visible together, at one commit point
    /// (`Segment::write_group`): a writer killed halfway leaves every
    /// section at its old version, or every one at its new version. Their
    /// frames form one group (`FLAG_MORE` on all but the last).
    ///
    /// One limit: a vector whose frames would not fit half of the log ring
    /// (or with a section's frame too large for one frame of the ring) cannot
    /// wait unpublished for its commit point, and commits element by element
    /// instead, each section at its old or new version and the earlier
    /// elements first (`CKPT_LOG_BYTES` makes the ring larger).
    pub fn write_many(&self, elements: &[WriteElement<'_>]) -> Result<(), (usize, WriteError)> {
        let _held = self.claim_local().map_err(|e| (0, e.into()))?;
        let groups = match self.plan_writes(elements) {
            // Expired sections still count until swept: sweep, then re-plan.
            Err((_, WriteError::CheckpointFull)) if self.sweep_expired_held(now()) > 0 => {
                self.plan_writes(elements)?
            }
            other => other?,
        };
        if elements.len() > 1 && self.write_group(elements, &groups) {
            return Ok(());
        }
        for (i, e) in elements.iter().enumerate() {
            let old_size = committed_size(self.slot(e.section.slot));
            let new_size = new_size(e.offset, e.data.len(), old_size);
            let fill = Fill::Copy {
                offset: e.offset,
                data: e.data,
            };
            let stamp = Stamp {
                more: i + 1 < elements.len(),
                ..Stamp::now()
            };
            self.write_version::<fn(&mut SpareBuffer<'_>)>(
                e.section, old_size, new_size, fill, stamp,
            );
        }
        Ok(())
    }

    /// Runs `read`, a read of several sections, so that it sees every
    /// vector write (`write_many`'s group) whole: all of its sections at
    /// their old versions or all at their new ones (SA §3.7.1's atomic
    /// write, seen from a reader). `read` runs again if a group's sections
    /// flipped while it copied (`SegmentHeader::group_seq`), at most
    /// [`ISOLATED_TRIES`] times; a group whose flips stay under way (its
    /// writer died there, or is stopped, or descheduled) or groups that keep
    /// coming send the last run under the claim, which finishes a dead
    /// writer's group (recovery) or waits for a live one's release (at most
    /// `claim_timeout`; past it, the run goes ahead without), and keeps
    /// every writer out while it runs. On a replica that writer is the
    /// applier, whose batches hold whole groups as the primary publishes
    /// them (`apply_held`). Vectors too large to commit at one point (see
    /// `write_many`) are not isolated.
    pub fn read_isolated<T>(&self, mut read: impl FnMut() -> T) -> T {
        let groups = &self.header().group_seq;
        // The counter once no flips are under way, looked at again for a
        // moment (`None`: they stay under way).
        let settled = || {
            (0..SETTLE_SPINS).find_map(|_| {
                let g = slot::flips_settled(groups);
                if g.is_none() {
                    std::hint::spin_loop();
                }
                g
            })
        };
        for _ in 0..ISOLATED_TRIES {
            let Some(before) = settled() else {
                break;
            };
            let out = read();
            if slot::flips_unchanged(groups, before) {
                return out;
            }
        }
        // Any copy: a reader changes nothing under the claim.
        let _held = self.claim();
        read()
    }

    /// Copies one write into section `slot`'s spare buffer (after
    /// `write_begin`), whose committed version is `current`: `data` at
    /// `offset` over the section's contents of `size` bytes (copied in first
    /// from the committed version, unless `based`: an earlier element of the
    /// same vector wrote the spare buffer already, leaving `size` bytes),
    /// with zeros between `size` and an offset past it; or, for an overwrite
    /// (`None`), `data` alone. Claim held; sizes validated (`size`,
    /// offset + len <= maxSectionSize).
    #[inline]
    fn copy_element(
        &self,
        slot: u32,
        current: CommitWord,
        size: u64,
        offset: Option<u64>,
        data: &[u8],
        based: bool,
    ) {
        let dst = self.buffer_ptr(slot, current.cur ^ 1);
        match offset {
            Some(o) => {
                let src = self.buffer_ptr(slot, current.cur);
                // SAFETY: both buffers are buffer_stride >= maxSectionSize
                // bytes long and in the mapping; size <= max and
                // o + len <= max (validated). The claim makes us the only
                // writer of `dst`; `src` is committed and stable while we
                // hold it. Readers of older versions may still copy from
                // `dst`: every access is atomic (`racy`).
                unsafe {
                    if !based {
                        racy::copy(dst, src, size as usize);
                    }
                    if o > size {
                        racy::zero(dst.add(size as usize), (o - size) as usize);
                    }
                    racy::store(dst.add(o as usize), data);
                }
            }
            // SAFETY: len rounded up to a word <= buffer_stride (validated
            // len <= maxSectionSize; the stride is a multiple of 64), `dst`
            // is 64-aligned; claim held, `dst` is the uncommitted buffer;
            // readers of an older version copy from it atomically. The
            // padding lies past the new size, where nothing reads (a later
            // element of the same vector writing past it zeroes its hole).
            None => unsafe { racy::store_padded(dst as *mut u64, data) },
        }
    }

    /// Commits a vector write's validated elements together, through the
    /// mutation path with one commit point for all their sections
    /// (`intent_op::GROUP`). Each section gets one new version: its
    /// elements, in order, build it in its spare buffer, and it is logged
    /// as one frame, the element's own (`Write` at its offset, or
    /// `Overwrite`) or, for a section written by several elements, an
    /// `Overwrite` of the result; the frames follow the sections' first
    /// elements' order, `FLAG_MORE` on all but the last. Then the commit
    /// point, `GROUP_COMMITTED` stored in the intent, after which recovery
    /// finishes the group instead of undoing it; then each section's flip.
    /// Returns false, having changed nothing, if the group's frames cannot
    /// all wait unpublished in the ring (more than half of it, or a frame
    /// that would need stages). Claim held; elements planned.
    fn write_group(&self, elements: &[WriteElement<'_>], groups: &Groups) -> bool {
        let sections = groups.as_slice();
        // Every frame must wait unpublished until the commit point: they
        // must fit the ring (half of it, whatever padding a wrap costs),
        // each within one frame.
        let capacity = self.geometry().log_bytes as usize;
        let frame_max = frame_bytes_max(capacity);
        let mut total = 0usize;
        for g in sections {
            let data = if g.elements == 1 {
                elements[g.first].data.len()
            } else {
                g.new_size as usize
            };
            let bytes = frame_bytes(self.id_slice(g.slot).len(), data);
            total = total.saturating_add(bytes);
            if bytes > frame_max || total > capacity / 2 {
                return false;
            }
        }
        let intent = Intent {
            op: intent_op::GROUP,
            slot: sections[0].slot,
            target: 0,
            bucket: 0,
        };
        let stamp = Stamp::now();
        self.mutate_logging(
            intent,
            |frames| {
                // The new versions, element by element, in the spare buffers.
                for (i, e) in elements.iter().enumerate() {
                    let Some(g) = groups.find(e.section.slot).map(|j| &sections[j]) else {
                        continue; // (The plan found every element's section.)
                    };
                    let slot = self.slot(g.slot);
                    // Only the claim holder stores the commit word: Relaxed
                    // reads our own (pending from the section's first element
                    // on: its buffer and version are what count).
                    let current = CommitWord::from(slot.commit.load(Ordering::Relaxed));
                    let first = i == g.first;
                    if first {
                        slot::write_begin(slot, current);
                    }
                    let built = g.built.get();
                    self.copy_element(g.slot, current, built, e.offset, e.data, !first);
                    g.built.set(new_size(e.offset, e.data.len(), built));
                }
                // One frame per section, its metadata with its number.
                for (j, g) in sections.iter().enumerate() {
                    let slot = self.slot(g.slot);
                    let current = CommitWord::from(slot.commit.load(Ordering::Relaxed));
                    let buffer = current.cur ^ 1;
                    let e = &elements[g.first];
                    let (kind, at, data): (_, u64, &[u8]) = match (g.elements, e.offset) {
                        (1, Some(o)) => (FrameKind::Write, o, e.data),
                        (1, None) => (FrameKind::Overwrite, 0, e.data),
                        // SAFETY: the spare buffer holds new_size <=
                        // maxSectionSize <= buffer_stride bytes, filled
                        // above; nobody writes them until the claim is
                        // released (we are the only writer and are done), so
                        // a shared slice over them is sound while the frame
                        // copies them (readers only read).
                        _ => (FrameKind::Overwrite, 0, unsafe {
                            std::slice::from_raw_parts(
                                self.buffer_ptr(g.slot, buffer),
                                g.new_size as usize,
                            )
                        }),
                    };
                    let stamp = Stamp {
                        more: j + 1 < sections.len(),
                        ..stamp
                    };
                    let id = self.id_of(slot);
                    let version = next_version(current.version);
                    let seq = frames.log(&self.frame(kind, id, data, at as i64, version, stamp));
                    slot::write_meta(slot, buffer, g.new_size, stamp.time_ns, seq);
                }
            },
            |(), _| {
                let h = self.header();
                // Readers of several sections see the flips all or none
                // (`read_isolated`); a writer dying from here on leaves the
                // counter odd until recovery ends its flips.
                slot::flips_begin(&h.group_seq);
                // The commit point. SYNC POINT: Release pairs with the
                // Acquire load of the target in `recover`: the spare buffers,
                // their metadata and the frames are complete.
                h.intent_target
                    .store(intent_op::GROUP_COMMITTED, Ordering::Release);
                let mut used = h.memory_used.load(Ordering::Relaxed);
                for g in sections {
                    let slot = self.slot(g.slot);
                    slot::write_flip(slot, CommitWord::from(slot.commit.load(Ordering::Relaxed)));
                    used = used.saturating_sub(g.old_size) + g.new_size;
                }
                h.memory_used.store(used, Ordering::Relaxed);
                #[cfg(all(test, not(loom)))]
                tests::AFTER_FLIPS.with(|f| f.get().map(|f| f(self)));
                slot::flips_end(&h.group_seq);
            },
        );
        true
    }

    /// Validates the elements in the order they will apply: each one sees the
    /// sizes the earlier ones leave, and `checkpointSize` counts each section's
    /// final size once. Returns the sections they write.
    #[inline]
    fn plan_writes(&self, elements: &[WriteElement<'_>]) -> Result<Groups, (usize, WriteError)> {
        let max = self.attributes().section_bytes_max;
        let mut used = self.header().memory_used.load(Ordering::Relaxed);
        // Each section's size as the elements so far leave it.
        let mut groups = Groups::for_elements(elements.len());
        for (i, e) in elements.iter().enumerate() {
            let end = e.offset.unwrap_or(0).checked_add(e.data.len() as u64);
            if end.is_none_or(|end| end > max) {
                return Err((i, WriteError::TooLarge));
            }
            if !self.is_live(e.section) || self.is_expired(e.section) {
                return Err((i, WriteError::NotExist));
            }
            let committed = committed_size(self.slot(e.section.slot));
            if committed > max {
                return Err((i, WriteError::Corrupt));
            }
            let g = groups.entry(e.section.slot, i, committed);
            let before = g.new_size;
            let after = new_size(e.offset, e.data.len(), before);
            (g.elements, g.new_size) = (g.elements + 1, after);
            used = used.saturating_sub(before).saturating_add(after);
            if used > self.attributes().checkpoint_bytes {
                return Err((i, WriteError::CheckpointFull));
            }
            self.back_buffers(e.section.slot, after)
                .map_err(|_| (i, WriteError::NoMemory))?;
        }
        Ok(groups)
    }

    /// True if a section growing from `old_size` to `new_size` bytes keeps the
    /// sections within `checkpointSize`. Expired sections still count until
    /// swept, so when short of room this sweeps them and checks again. Claim held.
    #[inline]
    pub(crate) fn has_room(&self, old_size: u64, new_size: u64) -> bool {
        // Short of room: sweep expired sections, then check the counters
        // against the slots (a damaged one must not refuse every write).
        self.fits(old_size, new_size)
            || (self.sweep_expired_held(now()) > 0 && self.fits(old_size, new_size))
            || (self.audit_on_failure() && self.fits(old_size, new_size))
    }

    /// True if the sections stay within `checkpointSize` by the counter, as
    /// it is (no sweep). Claim held.
    #[inline]
    fn fits(&self, old_size: u64, new_size: u64) -> bool {
        let used = self.header().memory_used.load(Ordering::Relaxed);
        used.saturating_sub(old_size).saturating_add(new_size) <= self.attributes().checkpoint_bytes
    }

    /// One new version of a checked section, through the mutation path: the
    /// other buffer is filled, the frame logged, the commit word flipped.
    /// Claim held; sizes validated (`old_size`, `new_size` <= maxSectionSize).
    #[inline]
    pub(crate) fn write_version<F: FnOnce(&mut SpareBuffer<'_>)>(
        &self,
        section: SectionRef,
        old_size: u64,
        new_size: u64,
        fill: Fill<'_, F>,
        stamp: Stamp,
    ) {
        let slot = self.slot(section.slot);
        // Only the claim holder stores the commit word: Relaxed reads our own.
        let current = CommitWord::from(slot.commit.load(Ordering::Relaxed));
        let target = CommitWord {
            pending: false,
            cur: current.cur ^ 1,
            version: next_version(current.version),
        };
        let intent = Intent {
            op: intent_op::WRITE,
            slot: section.slot,
            target: target.value(),
            bucket: 0,
        };
        let time = stamp.time_ns;
        let prestaged = matches!(fill, Fill::Staged { .. });
        self.mutate(
            intent,
            || {
                let buffer = slot::write_begin(slot, current);
                let dst = self.buffer_ptr(section.slot, buffer);
                let (kind, at, data): (_, u64, &[u8]) = match fill {
                    Fill::Copy { offset, data } => {
                        self.copy_element(section.slot, current, old_size, offset, data, false);
                        match offset {
                            Some(o) => (FrameKind::Write, o, data),
                            None => (FrameKind::Overwrite, 0, data),
                        }
                    }
                    Fill::Staged {
                        offset,
                        staged,
                        last,
                    } => {
                        let o = offset.unwrap_or(0);
                        let end = o + staged + last.len() as u64;
                        let src = self.buffer_ptr(section.slot, current.cur);
                        // SAFETY: o + staged + len(last) <= new_size <= max <=
                        // buffer_stride and old_size <= max (checked by the
                        // apply); claim held, `dst` the uncommitted buffer;
                        // readers of older versions copy atomically.
                        unsafe {
                            racy::store(dst.add((o + staged) as usize), last);
                            if offset.is_some() {
                                racy::copy(dst, src, o.min(old_size) as usize);
                                if o > old_size {
                                    racy::zero(dst.add(old_size as usize), (o - old_size) as usize);
                                }
                                if old_size > end {
                                    let tail = (old_size - end) as usize;
                                    racy::copy(dst.add(end as usize), src.add(end as usize), tail);
                                }
                            }
                        }
                        let kind = if offset.is_some() {
                            FrameKind::Write
                        } else {
                            FrameKind::Overwrite
                        };
                        (kind, o, last)
                    }
                    Fill::InPlace { len, fill } => {
                        // `len <= max <= buffer_stride` (validated): the spare
                        // buffer holds it; every access to it is atomic.
                        let mut spare = SpareBuffer {
                            ptr: dst,
                            len,
                            _buffer: PhantomData,
                        };
                        fill(&mut spare);
                        // SAFETY: filled; from here until the claim is released
                        // nobody writes these bytes (we are the only writer and
                        // are done), so a shared slice over them is sound while
                        // the frame copies them (readers only read).
                        let buf = unsafe { std::slice::from_raw_parts(dst, len) };
                        (FrameKind::Overwrite, 0, buf)
                    }
                };
                let id = self.id_of(slot);
                let spec = FrameSpec {
                    prestaged,
                    ..self.frame(kind, id, data, at as i64, target.version, stamp)
                };
                (spec, (current, buffer))
            },
            |(current, buffer), seq| {
                slot::write_commit(slot, current, buffer, new_size, time, seq);
                if new_size != old_size {
                    let h = self.header();
                    let used = h.memory_used.load(Ordering::Relaxed);
                    h.memory_used
                        .store(used.saturating_sub(old_size) + new_size, Ordering::Relaxed);
                }
            },
        );
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::cell::Cell;

    use ckpt_core::{CheckpointName, CreationAttributes, OpenFlags, Time};

    use super::WriteElement;

    thread_local! {
        /// Called by a group's commit after its flips, before its frames
        /// are published: what another thread may see in that moment.
        pub(super) static AFTER_FLIPS: Cell<Option<fn(&Segment)>> = const { Cell::new(None) };
        static SEEN_END: Cell<u64> = const { Cell::new(0) };
    }

    /// A snapshot copied after a group's flips and before its frames are
    /// published (the writer preempted there) holds every section at its
    /// new version, so it must say it holds the group's frames through its
    /// last (`end_seq`, `copied_through`), not only the last published + 1:
    /// a replica
    /// installing it then skipped the first frame and found the second's
    /// version already there (`Diverged`), and a watcher handed the second
    /// change out twice.
    #[test]
    fn a_snapshot_inside_a_groups_commit_holds_through_its_last_frame() {
        let d = tempfile::tempdir().unwrap();
        let config = Config::with_dir(d.path());
        let name = CheckpointName::new("group_snapshot").unwrap();
        let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
        let attrs = CreationAttributes::new(4, 64);
        let seg = Segment::open(&config, &name, rwc, Some(&attrs)).unwrap();
        let (a, _) = seg.create_section(Some(b"a"), Time::END, b"a0").unwrap();
        let (b, _) = seg.create_section(Some(b"b"), Time::END, b"b0").unwrap();
        let before = seg.last_seq();
        AFTER_FLIPS.with(|f| {
            f.set(Some(|s: &Segment| {
                SEEN_END.with(|e| e.set(s.copied_through()));
            }))
        });
        let element = |section, data: &'static [u8]| WriteElement {
            section,
            offset: None,
            data,
        };
        seg.write_many(&[element(a, b"a1"), element(b, b"b1")])
            .unwrap();
        AFTER_FLIPS.with(|f| f.set(None));
        // The group's two frames: before + 1 and before + 2.
        assert_eq!(seg.last_seq(), before + 2);
        assert_eq!(SEEN_END.with(|e| e.get()), before + 2);
    }

    use crate::layout::{CommitWord, VERSION_MAX};
    use crate::segment::{Config, Segment};
    use crate::sync::Ordering;

    /// Sets the committed version of `section`'s slot (nobody else writes).
    fn set_version(seg: &Segment, slot: u32, version: u64) {
        let commit = &seg.slot(slot).commit;
        let c = CommitWord::from(commit.load(Ordering::Relaxed));
        commit.store(CommitWord { version, ..c }.value(), Ordering::Relaxed);
    }

    /// A section written past the largest version a commit word holds goes
    /// on at version 1 (not 0, "never written", nor into the word's other
    /// fields); reads stay consistent, and a replica applying the frames
    /// follows the wrap.
    #[test]
    fn versions_wrap_to_1_on_the_primary_and_on_a_replica() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (config, replica_config) = (Config::with_dir(a.path()), Config::with_dir(b.path()));
        let name = CheckpointName::new("wrap").unwrap();
        let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
        let attrs = CreationAttributes::new(2, 64);
        let primary = Segment::open(&config, &name, rwc, Some(&attrs)).unwrap();
        let (s, _) = primary.create_section(Some(b"k"), Time::END, b"a").unwrap();
        let mut consumer = primary.consumer(Some(0));
        let created = consumer.next_frame().unwrap().unwrap();
        let replica = Segment::open_replica(&replica_config, &created).unwrap();
        let mut feed = |replica: &Segment| {
            while let Some(f) = consumer.next_frame().unwrap() {
                replica.apply(&f).unwrap();
            }
        };
        feed(&replica);
        let rs = replica.lookup(b"k").unwrap().unwrap();
        set_version(&primary, s.slot, VERSION_MAX - 1);
        set_version(&replica, rs.slot, VERSION_MAX - 1);
        for (byte, want) in [(1u8, VERSION_MAX), (2, 1), (3, 2)] {
            primary.write(s, None, &[byte; 8]).unwrap();
            let (data, meta) = primary.read_to_vec(s).unwrap();
            assert_eq!((data, meta.version), (vec![byte; 8], want));
            feed(&replica);
            let (data, meta) = replica.read_to_vec(rs).unwrap();
            assert_eq!((data, meta.version), (vec![byte; 8], want));
        }
    }
}
