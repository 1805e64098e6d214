//! Applying a primary's frames to this host's replica segment.
//!
//! A replica is written only here, through the same mutation path as the
//! primary: the frame's version, time, expiration, term and sequence number
//! are taken from the frame, never from the local clock, and the same frame
//! is published into the replica's own ring, so local standbys follow and
//! wait on a replica exactly as on the primary. The replica's last published
//! sequence number is its "applied through": it moves at the mutation's
//! publish, and recovery publishes a mutation whose commit point was passed,
//! so re-applying after a crash is a no-op (`Applied::Already`).

use ckpt_core::catchup::{self, SectionSeqs};
use ckpt_core::frame::{Frame, FrameHeader, FrameKind, Mutation, FLAG_SEALED};
use ckpt_core::Time;

use super::read::committed_size;
use super::section::NewSection;
use super::write::{new_size, Fill, SpareBuffer};
use super::{ClaimFail, Held, Stamp};
use crate::index::hash_id;
use crate::layout::{
    intent_op, next_version, stage_kind, ActiveReplicaWord, CommitWord, LifeWord, StageWord,
};
use crate::log::frame_bytes_max;
use crate::racy;
use crate::segment::Segment;
use crate::slot;
use crate::sync::Ordering;

/// What applying a frame did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The frame's mutation is now in the replica.
    Done,
    /// The replica held it already (a retransmission, or a re-apply after a
    /// crash): nothing changed.
    Already,
}

/// Why a frame was refused. The replica is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyError {
    /// This copy is the primary: only replicas apply frames.
    NotReplica,
    /// The frame belongs to another incarnation of the checkpoint's name.
    Incarnation {
        /// The replica's.
        ours: u64,
        /// The frame's.
        frame: u64,
    },
    /// The frame was written in an older term than the replica's: a deposed
    /// active replica's frame.
    StaleTerm {
        /// The replica's term.
        ours: u32,
        /// The frame's.
        frame: u32,
    },
    /// Frames are missing before this one.
    Gap {
        /// The sequence number the replica needs next.
        expected: u64,
    },
    /// The frame contradicts the replica's state (a section missing or
    /// present, a version that does not follow): the replica must be rebuilt.
    Diverged {
        /// Its sequence number.
        seq: u64,
        /// What did not match.
        why: &'static str,
    },
    /// The claim could not be taken.
    Contended,
    /// The replica's filesystem has no room for the frame's data. The
    /// section is unchanged (a staging begun stays in progress) and the frame
    /// can be applied again later.
    NoResources,
}

impl core::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ApplyError::NotReplica => f.write_str("this copy is the primary, not a replica"),
            ApplyError::Incarnation { ours, frame } => write!(
                f,
                "frame of incarnation {frame:016x}, replica of {ours:016x}"
            ),
            ApplyError::StaleTerm { ours, frame } => {
                write!(
                    f,
                    "frame of term {frame} refused: the replica is in term {ours}"
                )
            }
            ApplyError::Gap { expected } => write!(f, "frames missing: expected seq {expected}"),
            ApplyError::Diverged { seq, why } => write!(f, "replica diverged at seq {seq}: {why}"),
            ApplyError::Contended => f.write_str("another writer holds the replica"),
            ApplyError::NoResources => {
                f.write_str("no room left in the replica's filesystem for the frame's data")
            }
        }
    }
}

impl core::error::Error for ApplyError {}

impl Segment {
    /// Applies one frame of the primary (decoded, and for bytes from the
    /// network, sealed). Frames must come in sequence order; a frame the
    /// replica holds already is `Applied::Already`.
    pub fn apply(&self, frame: &Frame<'_>) -> Result<Applied, ApplyError> {
        let applied = {
            let _held = self.applier()?;
            self.apply_held(frame)
        };
        self.leave_if_unlinked();
        applied
    }

    /// Applies frames in order under one claim (a replica receives them in
    /// batches): how many were applied (frames held already count), or the
    /// index of the first refused one and why (those before it are applied).
    pub fn apply_all<'f>(
        &self,
        frames: impl IntoIterator<Item = Frame<'f>>,
    ) -> Result<usize, (usize, ApplyError)> {
        let applied = {
            let _held = self.applier().map_err(|e| (0, e))?;
            let mut n = 0;
            frames
                .into_iter()
                .try_for_each(|frame| {
                    self.apply_held(&frame).map_err(|e| (n, e))?;
                    n += 1;
                    Ok(())
                })
                .map(|()| n)
        };
        self.leave_if_unlinked();
        applied
    }

    /// Once the primary's unlink is applied, the replica's name is free, as
    /// the primary's is (the claim released): standbys that have it open
    /// keep their mapping.
    fn leave_if_unlinked(&self) {
        if self.is_unlinked() {
            self.remove_name_if_same();
        }
    }

    /// Drops this host's replica (an operator's call, for one whose primary
    /// is gone for good or was unlinked while this host was unreachable):
    /// marked unlinked, its name freed; standbys that have it open keep
    /// their mapping. Nothing is logged or sent. `false` if it is not a
    /// replica.
    pub fn drop_replica(&self) -> bool {
        if !self.is_replica() {
            return false;
        }
        self.mark_unlinked();
        true
    }

    /// Marks this replica unlinked and frees its name, without a frame: the
    /// primary's unlink reached it another way (a snapshot installed from an
    /// unlinked primary holds it; so does a rebuilt copy given up because
    /// the unlink came while it caught up).
    pub fn mark_unlinked(&self) {
        // SYNC POINT: SeqCst, as the unlink's own commit point.
        self.header()
            .lifecycle
            .fetch_or(crate::layout::LIFECYCLE_UNLINKED, Ordering::SeqCst);
        self.leave_if_unlinked();
    }

    /// The claim, for a replica's applier.
    fn applier(&self) -> Result<Held<'_>, ApplyError> {
        if !self.is_replica() {
            return Err(ApplyError::NotReplica);
        }
        self.claim().map_err(|e| match e {
            ClaimFail::Contended | ClaimFail::Replica | ClaimFail::NoQuorum => {
                ApplyError::Contended
            }
        })
    }

    /// One frame, the claim held. A call's frames (`FLAG_MORE` on all but
    /// the last: a vector write's group) are applied between the two steps
    /// of the flip counter, as the primary's group flips are, so a standby
    /// here reading several sections (`Segment::read_isolated`) sees the
    /// call whole when its frames come in one batch (as a primary publishes
    /// a group: at once). A group split across batches, or cut off by the
    /// primary's death, leaves the counter odd between them: readers then
    /// read as they find it (they cannot take a replica's claim); a
    /// promotion ends it.
    fn apply_held(&self, frame: &Frame<'_>) -> Result<Applied, ApplyError> {
        let groups = &self.header().group_seq;
        if frame.has_more() {
            slot::flips_begin(groups);
        }
        let applied = self.apply_frame_held(frame)?;
        if !frame.has_more() {
            slot::flips_end(groups);
        }
        Ok(applied)
    }

    /// [`Segment::apply_held`] without the flip counter.
    fn apply_frame_held(&self, frame: &Frame<'_>) -> Result<Applied, ApplyError> {
        let h = frame.header;
        let ours = self.header().incarnation;
        if h.incarnation != ours {
            return Err(ApplyError::Incarnation {
                ours,
                frame: h.incarnation,
            });
        }
        let last = self.last_seq();
        if h.seq <= last {
            return Ok(Applied::Already);
        }
        if h.seq != last + 1 {
            return Err(ApplyError::Gap { expected: last + 1 });
        }
        // After an install, frames up to its horizon may hold changes the
        // copy has already: skip those (republished, so the ring's numbers
        // stay dense). Their terms may be older than the copy's (an active
        // replica change it copied): they are the primary's history all the
        // same, sent by the link that sent the copy.
        if h.frame_bytes() > frame_bytes_max(self.geometry().log_bytes as usize) {
            // Republished as is, it would have to be split: other numbers.
            return Err(ApplyError::Diverged {
                seq: h.seq,
                why: "a frame larger than this replica's ring takes",
            });
        }
        // Host-local, written only under the claim (held).
        let catching_up = h.seq <= self.header().catchup_end.load(Ordering::Relaxed);
        if catching_up && self.copy_holds(frame) {
            if let Some(st) = self.staging().filter(|_| frame.is_staged()) {
                // Stages of a change to a section the copy lacks.
                self.end_staging(st, false);
            }
            self.republish(frame);
            return Ok(Applied::Done);
        }
        let term = self.term();
        let diverged = |why| ApplyError::Diverged { seq: h.seq, why };
        if h.term < term && !catching_up {
            return Err(ApplyError::StaleTerm {
                ours: term,
                frame: h.term,
            });
        }
        if h.term > term && h.kind != FrameKind::ActiveReplicaSet {
            return Err(diverged("a newer term without its active-replica frame"));
        }
        let staging = self.staging();
        let stamp = Stamp {
            time_ns: h.time_ns,
            more: frame.has_more(),
        };
        let Some(mutation) = frame.mutation() else {
            return Err(diverged("a pad frame"));
        };
        // A replica applies runs of frames for the same sections: the last
        // one found is checked first. Expired sections count (a replica
        // deletes only when the primary's delete arrives).
        let find = |id: &[u8]| {
            self.lookup_hinted(id, &self.apply_hint, true)
                .ok()
                .flatten()
        };
        if let Some(st) = staging {
            // Only the staged mutation's own pieces, its own frame or an
            // abort may follow its stages.
            let own =
                frame.is_staged() || matches!(h.kind, FrameKind::Stage | FrameKind::StageAbort);
            if !own || self.id_slice(st.slot) != frame.id {
                return Err(diverged("a frame inside another mutation's stages"));
            }
        } else if frame.is_staged() {
            return Err(diverged("a staged frame without its stages"));
        }
        match mutation {
            Mutation::Create {
                id,
                expiration,
                data,
            } => {
                let attrs = self.attributes();
                let prestaged = staging.map(|st| st.next - st.base);
                if id.len() as u64 > attrs.section_id_bytes_max
                    || prestaged.unwrap_or(0) + data.len() as u64 > attrs.section_bytes_max
                    || h.version != 1
                    || staging.is_some_and(|st| st.kind != stage_kind::CREATE || st.base != 0)
                {
                    return Err(diverged("a create beyond the attributes or its stages"));
                }
                if find(id).is_some() {
                    return Err(diverged("a create of a section the replica has"));
                }
                let h_id = hash_id(id);
                let position = self
                    .index()
                    .insert_position(h_id, |w| self.confirm(w, id).is_some())
                    .map_err(|_| diverged("no index position for a create"))?;
                let slot = match staging {
                    Some(st) => st.slot,
                    None => self
                        .free_slot()
                        .ok_or(diverged("no free slot for a create"))?,
                };
                let size = prestaged.unwrap_or(0) + data.len() as u64;
                self.back_buffers(slot, size)
                    .map_err(|_| ApplyError::NoResources)?;
                let new = NewSection {
                    id,
                    h_id,
                    position,
                    slot,
                    expiration,
                    data,
                    prestaged,
                };
                self.create_held(new, stamp);
                if let Some(st) = staging {
                    self.end_staging(st, true);
                }
            }
            Mutation::Write { id, data, .. } | Mutation::Overwrite { id, data } => {
                let section = find(id).ok_or(diverged("a write to a missing section"))?;
                let slot = self.slot(section.slot);
                let current = CommitWord::from(slot.commit.load(Ordering::Relaxed));
                if h.version != next_version(current.version) {
                    return Err(diverged("a write whose version does not follow"));
                }
                let offset = (h.kind == FrameKind::Write).then_some(h.arg as u64);
                let old_size = committed_size(slot);
                let max = self.attributes().section_bytes_max;
                let staged = match staging {
                    Some(st)
                        if st.kind == stage_kind::WRITE
                            && st.slot == section.slot
                            && st.base == offset.unwrap_or(0) =>
                    {
                        st.next - st.base
                    }
                    Some(_) => return Err(diverged("a write that its stages do not match")),
                    None => 0,
                };
                let end = offset
                    .unwrap_or(0)
                    .saturating_add(staged + data.len() as u64);
                if end > max || old_size > max {
                    return Err(diverged("a write past maxSectionSize"));
                }
                let new_size = new_size(offset, staged as usize + data.len(), old_size);
                self.back_buffers(section.slot, new_size)
                    .map_err(|_| ApplyError::NoResources)?;
                if let Some(st) = staging {
                    let fill = Fill::Staged {
                        offset,
                        staged,
                        last: data,
                    };
                    self.write_version::<fn(&mut SpareBuffer<'_>)>(
                        section, old_size, new_size, fill, stamp,
                    );
                    self.end_staging(st, true);
                } else {
                    let fill = Fill::Copy { offset, data };
                    self.write_version::<fn(&mut SpareBuffer<'_>)>(
                        section, old_size, new_size, fill, stamp,
                    );
                }
            }
            Mutation::Stage { id, at, data } => self.stage(staging, id, at, data, frame)?,
            Mutation::StageAbort { .. } => {
                if let Some(st) = staging {
                    self.end_staging(st, false);
                }
                self.republish(frame);
            }
            Mutation::Delete { id } => {
                let section = find(id).ok_or(diverged("a delete of a missing section"))?;
                self.delete_held(section, stamp)
                    .ok_or(diverged("a delete the index does not hold"))?;
            }
            Mutation::ExpirationSet { id, expiration } => {
                let section = find(id).ok_or(diverged("an expiration of a missing section"))?;
                self.set_expiration_held(section, expiration, stamp);
            }
            Mutation::ActiveReplicaSet { node, term: next } => {
                if next <= term {
                    return Err(diverged("an active-replica change without a new term"));
                }
                self.set_active_replica_held(node, next, intent_op::ACTIVE, stamp);
            }
            Mutation::RetentionSet { retention } => {
                self.set_retention_held(Time(retention.0), stamp);
            }
            Mutation::Unlink => self.unlink_held(stamp),
            Mutation::CheckpointCreated { .. } => {
                return Err(diverged("a second creation frame"));
            }
        }
        Ok(Applied::Done)
    }

    /// True if the copy an install placed already holds the change of
    /// `frame` (within the install's horizon), by the catch-up rule: or if
    /// the change is to a section the copy lacks, deleted before the copy
    /// looked, so that the frame is a no-op here. Claim held.
    fn copy_holds(&self, frame: &Frame<'_>) -> bool {
        let h = &frame.header;
        let section = self
            .lookup_hinted(frame.id, &self.apply_hint, true)
            .ok()
            .flatten();
        let seqs = section.map(|s| {
            let slot = self.slot(s.slot);
            // Claim held: Relaxed reads our own words.
            let cur = CommitWord::from(slot.commit.load(Ordering::Relaxed)).cur;
            SectionSeqs {
                data_seq: slot.buffers[cur as usize].seq.load(Ordering::Relaxed),
                expiration_seq: slot.expiration_seq.load(Ordering::Relaxed),
            }
        });
        let state_seq = self.header().state_seq.load(Ordering::Relaxed);
        if h.kind == FrameKind::CheckpointCreated || catchup::contains(h, seqs, state_seq) {
            // (Every copy holds the checkpoint's creation.)
            return true;
        }
        // A change to a section the copy lacks: it was deleted before the
        // copy looked, and the frame is a no-op here.
        let missing = section.is_none();
        match frame.mutation() {
            Some(Mutation::ActiveReplicaSet { node, term }) => {
                // The copy may hold the new active replica with the previous
                // state number (the word is stored before its number).
                let word =
                    ActiveReplicaWord::from(self.header().active_replica.load(Ordering::Relaxed));
                word.set && word.node == node && word.term == term
            }
            Some(
                Mutation::Write { .. }
                | Mutation::Overwrite { .. }
                | Mutation::Delete { .. }
                | Mutation::ExpirationSet { .. },
            ) => missing,
            // A piece of a large write at an offset (a create's pieces start
            // at 0).
            Some(Mutation::Stage { at, .. }) => missing && at > 0 && self.staging().is_none(),
            _ => false,
        }
    }

    /// The replica's staging in progress, if any (claim held).
    ///
    /// A staging's pieces and its own frame (or the abort) have consecutive
    /// numbers; once a frame after its last piece is published, it is over,
    /// even if its applier died before recording that.
    pub(crate) fn staging(&self) -> Option<Staging> {
        let h = self.header();
        let word = StageWord::from(h.stage.load(Ordering::Relaxed));
        if word.kind == stage_kind::NONE || word.slot >= self.geometry().sections_max {
            return None;
        }
        let st = Staging {
            kind: word.kind,
            slot: word.slot,
            base: h.stage_base.load(Ordering::Relaxed),
            next: h.stage_next.load(Ordering::Relaxed),
            seq: h.stage_seq.load(Ordering::Relaxed),
        };
        if self.log().seq() > st.seq {
            h.stage.store(0, Ordering::Release);
            return None;
        }
        Some(st)
    }

    /// Applies one `Stage` piece: begins staging (the spare buffer of a live
    /// section, or a reserved slot for a create) or continues it, copies the
    /// piece to its place, and republishes the frame. Claim held.
    fn stage(
        &self,
        staging: Option<Staging>,
        id: &[u8],
        at: u64,
        data: &[u8],
        frame: &Frame<'_>,
    ) -> Result<(), ApplyError> {
        let seq = frame.header.seq;
        let diverged = |why| ApplyError::Diverged { seq, why };
        let end = at
            .checked_add(data.len() as u64)
            .filter(|&e| e <= self.attributes().section_bytes_max)
            .ok_or(diverged("a stage past maxSectionSize"))?;
        let st = match staging {
            // The next piece, or this one again: its applier died after
            // placing it and before publishing its frame.
            Some(st) if st.next == at || st.seq == seq => st,
            Some(_) => return Err(diverged("a stage out of place")),
            None => self.begin_staging(id, at, seq)?,
        };
        self.back_buffers(st.slot, end)
            .map_err(|_| ApplyError::NoResources)?;
        let buffer = match st.kind {
            stage_kind::WRITE => {
                CommitWord::from(self.slot(st.slot).commit.load(Ordering::Relaxed)).cur ^ 1
            }
            _ => 0,
        };
        let h = self.header();
        h.stage_seq.store(seq, Ordering::Relaxed);
        // SAFETY: at + len <= maxSectionSize <= buffer_stride (checked); the
        // buffer is the spare one (pending set) or a reserved slot's, written
        // only by the claim holder; readers of older versions copy atomically.
        unsafe { racy::store(self.buffer_ptr(st.slot, buffer).add(at as usize), data) };
        h.stage_next.store(end, Ordering::Relaxed);
        self.republish(frame);
        Ok(())
    }

    /// Starts staging a large mutation for section `id` whose data starts at
    /// `base` in the section. Claim held.
    fn begin_staging(&self, id: &[u8], base: u64, seq: u64) -> Result<Staging, ApplyError> {
        let diverged = |why| ApplyError::Diverged { seq, why };
        let (kind, slot) = match self.lookup(id).ok().flatten() {
            Some(section) => {
                let slot = self.slot(section.slot);
                // Claim held: Relaxed reads our own commit word.
                slot::write_begin(slot, CommitWord::from(slot.commit.load(Ordering::Relaxed)));
                (stage_kind::WRITE, section.slot)
            }
            None => {
                if id.len() as u64 > self.attributes().section_id_bytes_max || base != 0 {
                    return Err(diverged("a staged create beyond the attributes"));
                }
                let s = self
                    .free_slot()
                    .ok_or(diverged("no free slot for a create"))?;
                self.reserve_for_staging(s, id);
                (stage_kind::CREATE, s)
            }
        };
        let h = self.header();
        h.stage_base.store(base, Ordering::Relaxed);
        h.stage_next.store(base, Ordering::Relaxed);
        h.stage_seq.store(seq, Ordering::Relaxed);
        h.stage_log_start
            .store(self.log().written_end(), Ordering::Relaxed);
        // SYNC POINT: Release pairs with the Acquire load in `snapshot_with`:
        // a snapshot that sees the staging sees where it started.
        h.stage
            .store(StageWord { kind, slot }.value(), Ordering::Release);
        Ok(Staging {
            kind,
            slot,
            base,
            next: base,
            seq,
        })
    }

    /// Reserves slot `s` for a staged create and copies the id in (claim held).
    fn reserve_for_staging(&self, s: u32, id: &[u8]) {
        let header = self.slot(s);
        slot::reserve(header, slot::next_gen(header));
        // SAFETY: the slot is reserved by us (claim held); its id area holds
        // maxSectionIdSize bytes (checked by the caller).
        unsafe { racy::store(self.slot_id_ptr(s), id) };
        header.id_len.store(id.len() as u32, Ordering::Relaxed);
    }

    /// Ends a staging: its mutation committed (`keep`), or it is dropped (the
    /// primary aborted it, or this replica is promoted). Claim held.
    pub(crate) fn end_staging(&self, st: Staging, keep: bool) {
        if !keep {
            let slot = self.slot(st.slot);
            match st.kind {
                stage_kind::WRITE => slot::write_abandon(slot),
                _ => slot::retire(slot, LifeWord::from(slot.life.load(Ordering::Relaxed)).gen),
            }
        }
        self.header().stage.store(0, Ordering::Release);
    }

    /// Publishes a frame that changes no state here (a stage, an abort) into
    /// the replica's ring, as it is. Claim held.
    fn republish(&self, frame: &Frame<'_>) {
        let log = self.log();
        let header = FrameHeader {
            flags: frame.header.flags & !FLAG_SEALED,
            ..frame.header
        };
        let p = log.write(log.written_end(), header, frame.id, frame.data);
        log.publish(p.end, p.seq);
    }
}

/// A replica's staging in progress, as the header records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Staging {
    kind: u8,
    pub(crate) slot: u32,
    /// Where the data starts in the section.
    base: u64,
    /// Where the next piece goes.
    next: u64,
    /// The last piece placed.
    seq: u64,
}
