//! A section's lifecycle: create, delete, expiration change and the sweep of
//! expired sections, each through the mutation path.

use ckpt_core::error::{ExpirationSetError, SectionCreateError, SectionDeleteError};
use ckpt_core::frame::FrameKind;
use ckpt_core::{SectionId, Time};

use super::read::committed_size;
use super::{ClaimFail, FrameSpec, Intent, SectionRef, Stamp};
use crate::index::{hash_id, tag_of, InsertError};
use crate::layout::{bucket_state, intent_op, slot_state, BucketWord, CommitWord, LifeWord};
use crate::racy;
use crate::segment::{now, Segment};
use crate::slot::{self, FirstVersion};
use crate::sync::Ordering;

/// A section to create, checked: its id, hash and index position, a free
/// slot, and its first version.
pub(crate) struct NewSection<'a> {
    pub id: &'a [u8],
    pub h_id: u64,
    pub position: u64,
    pub slot: u32,
    pub expiration: Time,
    pub data: &'a [u8],
    /// Bytes of data already in buffer 0 before `data` (a replica's staged
    /// create: its own frame then carries `FLAG_STAGED`); `None` otherwise.
    pub prestaged: Option<u64>,
}

impl Segment {
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
        let _held = self.claim_local()?;
        let h = self.header();
        let full = |h: &crate::layout::SegmentHeader| {
            h.sections_live.load(Ordering::Relaxed) >= attrs.sections_max as u64
        };
        // Full: sweep expired sections, then check the count against the
        // slots (a damaged counter must not refuse every create).
        if full(h)
            && (self.sweep_expired_held(now()) == 0 || full(h))
            && (!self.audit_on_failure() || full(h))
        {
            return Err(SectionCreateError::NoSpace);
        }
        if !self.has_room(0, data.len() as u64) {
            return Err(SectionCreateError::CheckpointFull);
        }
        // An expired section's id is free again: delete it first.
        if let Some(existing) = id.and_then(|id| self.lookup(id).ok().flatten()) {
            if self.is_expired(existing) {
                self.delete_held(existing, Stamp::now());
            }
        }
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
                let (h_id, pos) = found.ok_or(SectionCreateError::NoIdLeft)?;
                (&generated[4 - width..], h_id, pos)
            }
        };
        let slot_index = self.free_slot().ok_or(SectionCreateError::NoSpace)?;
        self.back_buffers(slot_index, data.len() as u64)
            .map_err(|_| SectionCreateError::NoMemory)?;
        let section = self.create_held(
            NewSection {
                id,
                h_id,
                position,
                slot: slot_index,
                expiration,
                data,
                prestaged: None,
            },
            Stamp::now(),
        );
        Ok((section, SectionId(id.to_vec())))
    }

    /// Creates a checked section (claim held; a free slot and an index
    /// position found) through the mutation path.
    pub(crate) fn create_held(&self, new: NewSection<'_>, stamp: Stamp) -> SectionRef {
        let NewSection {
            id,
            h_id,
            position,
            slot: slot_index,
            expiration,
            data,
            prestaged,
        } = new;
        let before = prestaged.unwrap_or(0);
        let size = before + data.len() as u64;
        let h = self.header();
        let index = self.index();
        let slot = self.slot(slot_index);
        let gen = match LifeWord::from(slot.life.load(Ordering::Relaxed))
            .gen
            .wrapping_add(1)
        {
            0 => 1,
            g => g,
        };
        let live = LifeWord {
            state: slot_state::LIVE,
            gen,
        };
        let intent = Intent {
            op: intent_op::CREATE,
            slot: slot_index,
            target: live.value(),
            bucket: position,
        };
        self.mutate(
            intent,
            || {
                slot::reserve(slot, gen);
                // SAFETY: the slot is reserved by us (claim held); readers that
                // still copy the slot's previous section (and discard it, seeing
                // the new life word) copy atomically; lengths are within the
                // slot's id area and buffer (checked by callers).
                unsafe {
                    racy::store(self.slot_id_ptr(slot_index), id);
                    let at = self.buffer_ptr(slot_index, 0).add(before as usize);
                    racy::store(at, data);
                }
                let first = FirstVersion {
                    id_len: id.len() as u32,
                    expiration_ns: expiration.0,
                    size,
                    time_ns: stamp.time_ns,
                    version: 1,
                };
                slot::init_first_version(slot, first);
                index.store(
                    position,
                    BucketWord {
                        state: bucket_state::LIVE,
                        tag: tag_of(h_id),
                        gen: gen as u16,
                        slot: slot_index,
                    },
                );
                let spec = FrameSpec {
                    prestaged: prestaged.is_some(),
                    ..self.frame(FrameKind::Create, id, data, expiration.0, 1, stamp)
                };
                (spec, ())
            },
            |(), seq| {
                slot::publish_created(slot, gen, seq);
                h.sections_live.fetch_add(1, Ordering::Relaxed);
                let used = h.memory_used.load(Ordering::Relaxed);
                h.memory_used.store(used + size, Ordering::Relaxed);
            },
        );
        SectionRef {
            slot: slot_index,
            gen,
        }
    }

    pub(crate) fn free_slot(&self) -> Option<u32> {
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
        let _held = self.claim_local()?;
        if !self.is_live(section) || self.is_expired(section) {
            return Err(SectionDeleteError::NotExist);
        }
        self.delete_held(section, Stamp::now())
            .ok_or(SectionDeleteError::Corrupt)
    }

    /// Deletes with the claim held; `None` if the index does not hold the section.
    pub(crate) fn delete_held(&self, section: SectionRef, stamp: Stamp) -> Option<()> {
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
        let intent = Intent {
            op: intent_op::DELETE,
            slot: section.slot,
            target: free.value(),
            bucket: position,
        };
        let version = CommitWord::from(slot.commit.load(Ordering::Relaxed)).version;
        let size = committed_size(slot).min(self.attributes().section_bytes_max);
        let spec = self.frame(FrameKind::Delete, id, &[], 0, version, stamp);
        self.mutate(
            intent,
            || (spec, ()),
            |(), _seq| {
                slot::retire(slot, section.gen);
                let index = self.index();
                index.remove(position);
                if index.wants_compaction() {
                    self.compact_index();
                }
                h.sections_live.fetch_sub(1, Ordering::Relaxed);
                let used = h.memory_used.load(Ordering::Relaxed);
                h.memory_used
                    .store(used.saturating_sub(size), Ordering::Relaxed);
            },
        );
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
        let _held = self.claim_local()?;
        if !self.is_live(section) || self.is_expired(section) {
            return Err(ExpirationSetError::NotExist);
        }
        self.set_expiration_held(section, expiration, Stamp::now());
        Ok(())
    }

    /// Sets a live section's expiration (claim held).
    pub(crate) fn set_expiration_held(&self, section: SectionRef, expiration: Time, stamp: Stamp) {
        let slot = self.slot(section.slot);
        let intent = Intent {
            op: intent_op::EXPIRE,
            slot: section.slot,
            target: expiration.0 as u64,
            bucket: 0,
        };
        let id = self.id_slice(section.slot);
        let version = CommitWord::from(slot.commit.load(Ordering::Relaxed)).version;
        let spec = self.frame(
            FrameKind::ExpirationSet,
            id,
            &[],
            expiration.0,
            version,
            stamp,
        );
        self.mutate(
            intent,
            || (spec, ()),
            |(), seq| slot::set_expiration(slot, expiration.0, seq),
        );
    }

    /// Deletes every expired section (logging each delete). Returns how many.
    /// A replica sweeps nothing: expiry reaches it as the primary's deletes.
    pub fn sweep_expired(&self) -> Result<u32, ClaimFail> {
        let _held = self.claim_local()?;
        Ok(self.sweep_expired_held(now()))
    }

    pub(crate) fn sweep_expired_held(&self, now: Time) -> u32 {
        if self.is_replica() {
            return 0;
        }
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
                if self.delete_held(section, Stamp::now()).is_some() {
                    swept += 1;
                }
            }
        }
        swept
    }
}
