//! Rebuilding a replica from a primary's snapshot.
//!
//! A replica too far behind the primary's ring, or of another incarnation or
//! history, is replaced by a copy: [`Installer`] builds a new segment under a
//! temporary name from the checkpoint's creation frame, places each section
//! record it is given (id, data, version, `lastUpdate`, expiration and the
//! sequence numbers the copy reflects), and at the end sets the log to
//! continue after the snapshot's start and sets the checkpoint-wide state
//! ([`Installer::finish`]). The copy then catches up under its temporary
//! name ([`Staged`]): its sections are of different moments until it holds
//! the snapshot's catch-up horizon, and only then is it renamed over the
//! replica's name, in one step ([`Staged::publish`]). Until then the old
//! replica is untouched; a copy given up is removed.
//!
//! The new replica's ring starts empty at the snapshot's start. Frames up to
//! the copy's `end_seq` (its catch-up horizon, kept in the segment's header
//! so that it outlives the process) may hold changes the copy has already:
//! [`Segment::apply`] checks them against the sections' numbers
//! ([`ckpt_core::catchup`]) and republishes those it skips, so the ring's
//! numbers stay dense.

use ckpt_core::catchup::SectionSeqs;
use ckpt_core::error::OpenError;
use ckpt_core::frame::{Frame, Mutation, SectionRecord, SnapshotTail};
use ckpt_core::repl::Position;
use ckpt_core::{CheckpointName, OpenFlags, Time};

use crate::dir::{self, SegmentDir};
use crate::index::{hash_id, tag_of, InsertError};
use crate::layout::{bucket_state, ActiveReplicaWord, BucketWord, VERSION_MAX};
use crate::racy;
use crate::segment::{build_new, Config, Mapped, Origin, Segment};
use crate::slot::{self, FirstVersion};
use crate::sync::Ordering;

/// Why a snapshot could not be installed. The replica is unchanged, but for
/// an `Open` error after the rename (the copy then holds the name: reopen
/// it).
#[derive(Debug)]
pub enum InstallError {
    /// The new segment could not be made, renamed or opened.
    Open(OpenError),
    /// The records contradict the checkpoint's attributes or each other (an
    /// id or section too large, more sections than it takes, a piece out of
    /// order, fewer sections than the snapshot's end counts).
    Invalid(&'static str),
    /// The filesystem has no room for a section's data.
    NoResources,
}

impl core::fmt::Display for InstallError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InstallError::Open(e) => write!(f, "making the new replica: {e}"),
            InstallError::Invalid(why) => write!(f, "the snapshot is invalid: {why}"),
            InstallError::NoResources => {
                f.write_str("no room left in the replica's filesystem for the snapshot")
            }
        }
    }
}

impl std::error::Error for InstallError {}

/// What a section placed directly into a segment that nobody else maps yet
/// (a new segment's default section, a snapshot's section) is.
pub(crate) struct Placed<'a> {
    pub slot: u32,
    pub id: &'a [u8],
    pub size: u64,
    pub version: u64,
    pub last_update: Time,
    pub expiration: Time,
    pub seqs: SectionSeqs,
}

impl Mapped {
    /// Makes `p` a live section at generation 1 in slot `p.slot` of a segment
    /// nobody else maps, indexed at bucket `position`; its data (if any) is
    /// written separately into buffer 0.
    pub(crate) fn place_section(&self, p: &Placed<'_>, position: u64) {
        let slot = self.slot(p.slot);
        // SAFETY: the segment is new and nobody else maps it (its name is a
        // leased temporary); the id fits the slot's id area (checked by
        // callers against the attributes).
        unsafe { racy::store(self.slot_id_ptr(p.slot), p.id) };
        slot::init_first_version(
            slot,
            FirstVersion {
                id_len: p.id.len() as u32,
                expiration_ns: p.expiration.0,
                size: p.size,
                time_ns: p.last_update.0,
                version: p.version,
            },
        );
        let h = hash_id(p.id);
        self.index().store(
            position,
            BucketWord {
                state: bucket_state::LIVE,
                tag: tag_of(h),
                gen: 1,
                slot: p.slot,
            },
        );
        slot::publish_created(slot, 1, p.seqs.data_seq);
        slot::set_expiration(slot, p.expiration.0, p.seqs.expiration_seq);
        let header = self.header();
        header.sections_live.fetch_add(1, Ordering::Relaxed);
        header.memory_used.fetch_add(p.size, Ordering::Relaxed);
    }
}

/// The largest sequence number a snapshot may start at (far beyond any real
/// log; keeps `seq + 1` from overflowing).
const SEQ_MAX: u64 = 1 << 62;
/// The most frames a snapshot's catch-up horizon may span past its start.
const HORIZON_MAX: u64 = 1 << 32;

/// The section being filled: records of one section come in order.
#[derive(Debug, Clone, Copy)]
struct Filling {
    slot: u32,
    size: u64,
    /// Bytes placed so far.
    filled: u64,
    /// An older copy of an id already placed: its pieces are dropped.
    skip: bool,
}

/// A replica being rebuilt from a snapshot (see the module docs). Dropping
/// it before [`Installer::finish`], or the [`Staged`] copy before it is
/// published, removes the copy.
pub struct Installer {
    mapped: Option<Mapped>,
    dir: SegmentDir,
    tmp: String,
    config: Config,
    name: CheckpointName,
    next_slot: u32,
    filling: Option<Filling>,
    /// Sections begun (records at offset 0), duplicates included: what the
    /// shipper counted.
    sections: u64,
}

impl Segment {
    /// Begins rebuilding this host's replica of the checkpoint whose
    /// creation frame (seq 1) is `created`.
    pub fn install_begin(config: &Config, created: &Frame<'_>) -> Result<Installer, OpenError> {
        let Some(Mutation::CheckpointCreated {
            name,
            attributes,
            log_bytes,
            ..
        }) = created.mutation()
        else {
            return Err(OpenError::InvalidAttributes);
        };
        let config = &crate::segment::replica_config(config, log_bytes);
        if created.header.seq != 1 || attributes.validate().is_err() {
            return Err(OpenError::InvalidAttributes);
        }
        let name = CheckpointName::new(name).map_err(|_| OpenError::InvalidName)?;
        let dir = SegmentDir::open(config, true)?;
        let origin = Origin::Install {
            incarnation: created.header.incarnation,
            created_ns: created.header.time_ns,
        };
        let (mapped, tmp) = build_new(config, &dir, &name, &attributes, origin)?;
        Ok(Installer {
            mapped: Some(mapped),
            dir,
            tmp,
            config: config.clone(),
            name,
            next_slot: 0,
            filling: None,
            sections: 0,
        })
    }
}

impl Installer {
    fn mapped(&self) -> &Mapped {
        self.mapped
            .as_ref()
            .expect("an installer's segment until it finishes")
    }

    /// The checkpoint being installed.
    pub fn name(&self) -> &CheckpointName {
        &self.name
    }

    /// Places one section record (a whole section, or its next piece).
    pub fn record(&mut self, r: &SectionRecord<'_>) -> Result<(), InstallError> {
        let invalid = |why| Err(InstallError::Invalid(why));
        if r.offset
            .checked_add(r.piece.len() as u64)
            .is_none_or(|end| end > r.size)
        {
            return invalid("a piece past its section's size");
        }
        if r.offset > 0 {
            let Some(f) = self.filling.as_mut() else {
                return invalid("a piece of a section that was not begun");
            };
            if r.offset != f.filled || r.size != f.size {
                return invalid("a piece out of order");
            }
            f.filled += r.piece.len() as u64;
            let f = *f;
            if !f.skip {
                self.copy_piece(f.slot, r.offset, r.piece);
            }
            return Ok(());
        }
        if self.filling.is_some_and(|f| f.filled != f.size) {
            return invalid("a section ended before its last piece");
        }
        let mapped = self.mapped.as_ref().expect("an installer's segment");
        let attrs = *mapped.attributes();
        if r.id.len() as u64 > attrs.section_id_bytes_max || r.size > attrs.section_bytes_max {
            return invalid("a section beyond the checkpoint's attributes");
        }
        if r.version == 0 || r.version > VERSION_MAX {
            return invalid("a section version out of range");
        }
        self.sections += 1;
        let seqs = SectionSeqs {
            data_seq: r.data_seq,
            expiration_seq: r.expiration_seq,
        };
        let placed = |slot| Placed {
            slot,
            id: r.id,
            size: r.size,
            version: r.version,
            last_update: Time(r.last_update),
            expiration: Time(r.expiration),
            seqs,
        };
        let h = hash_id(r.id);
        let mut existing = None;
        let position = mapped.index().insert_position(h, |w| {
            let same = mapped.confirm(w, r.id);
            if let Some(s) = same {
                existing = Some((w, s.slot));
            }
            same.is_some()
        });
        let slot = match (position, existing) {
            (Ok(position), _) => {
                if self.next_slot >= mapped.geometry().sections_max {
                    return invalid("more sections than the checkpoint takes");
                }
                let slot = self.next_slot;
                mapped
                    .back_buffers(slot, r.size)
                    .map_err(|_| InstallError::NoResources)?;
                mapped.place_section(&placed(slot), position);
                self.next_slot += 1;
                Some(slot)
            }
            (Err(InsertError::Exist), Some((word, slot))) => {
                // The scan met the id twice (deleted from one slot and
                // re-created in another meanwhile): the newer copy is the
                // state.
                let s = mapped.slot(slot);
                let had = SectionSeqs {
                    data_seq: s.buffers[0].seq.load(Ordering::Relaxed),
                    expiration_seq: s.expiration_seq.load(Ordering::Relaxed),
                };
                if seqs.newest() > had.newest() {
                    mapped
                        .back_buffers(slot, r.size)
                        .map_err(|_| InstallError::NoResources)?;
                    let h = mapped.header();
                    h.sections_live.fetch_sub(1, Ordering::Relaxed);
                    let old = s.buffers[0].size.load(Ordering::Relaxed);
                    h.memory_used.fetch_sub(old, Ordering::Relaxed);
                    let position = mapped
                        .index()
                        .position_of(hash_id(r.id), word)
                        .expect("the bucket just found");
                    mapped.place_section(&placed(slot), position);
                    Some(slot)
                } else {
                    None
                }
            }
            _ => return invalid("no index room for a section"),
        };
        self.filling = Some(Filling {
            slot: slot.unwrap_or(0),
            size: r.size,
            filled: r.piece.len() as u64,
            skip: slot.is_none(),
        });
        if let Some(slot) = slot {
            self.copy_piece(slot, 0, r.piece);
        }
        Ok(())
    }

    /// Writes `piece` at `offset` of slot `slot`'s buffer 0 (`record`
    /// checked that it ends within the section's size, at most
    /// maxSectionSize).
    ///
    /// Through the file (`pwrite`) where the filesystem takes it: a page
    /// written whole that way is not zeroed first, as one first touched
    /// through the mapping is (on tmpfs that zeroing was about half of a
    /// 1 GiB rebuild's time). Elsewhere (hugetlbfs refuses `write`), through
    /// the mapping.
    fn copy_piece(&self, slot: u32, offset: u64, piece: &[u8]) {
        let mapped = self.mapped();
        let at = mapped.geometry().buffer(slot, 0) + offset;
        if mapped.store_through_file(at, piece).is_ok() {
            return;
        }
        // SAFETY: nobody else maps the segment; offset + piece is within the
        // section's size, at most maxSectionSize: inside the slot's buffer.
        unsafe { racy::store(mapped.buffer_ptr(slot, 0).add(offset as usize), piece) };
    }

    /// Completes the copy: it must hold `sections` sections (as the
    /// snapshot's end counts). The log continues after `start`; the
    /// checkpoint-wide state is `tail`'s. The copy stays under its
    /// temporary name, catching up ([`Staged`]): frames up to
    /// `tail.end_seq` are checked against it as they are applied, and it is
    /// renamed over the replica's name only once it holds them all.
    pub fn finish(
        mut self,
        start: Position,
        sections: u64,
        tail: &SnapshotTail,
    ) -> Result<Staged, InstallError> {
        if self.filling.is_some_and(|f| f.filled != f.size) {
            return Err(InstallError::Invalid("the last section is incomplete"));
        }
        if sections != self.sections {
            return Err(InstallError::Invalid(
                "fewer or more sections than the snapshot counts",
            ));
        }
        if tail.end_seq < start.seq
            || tail.state_seq > tail.end_seq
            || start.seq > SEQ_MAX
            || tail.end_seq - start.seq > HORIZON_MAX
        {
            return Err(InstallError::Invalid(
                "a start or catch-up horizon out of range",
            ));
        }
        let mapped = self.mapped.take().expect("an installer's segment");
        let h = mapped.header();
        // Nobody else maps it: plain stores, published to later openers by
        // the rename.
        h.log_seq.store(start.seq, Ordering::Relaxed);
        h.state_seq.store(tail.state_seq, Ordering::Relaxed);
        h.retention_ns.store(tail.retention_ns, Ordering::Relaxed);
        let word = ActiveReplicaWord {
            set: tail.active.is_some(),
            node: tail.active.unwrap_or(0),
            term: tail.term,
        };
        h.active_replica.store(word.value(), Ordering::Relaxed);
        h.catchup_end.store(tail.end_seq, Ordering::Relaxed);
        // The copy's own registration keeps the temporary's lease (the same
        // file description), so no sweep removes it while it catches up.
        let segment =
            Segment::link_on_built(mapped, &self.config, &self.tmp).map_err(InstallError::Open)?;
        Ok(Staged {
            segment: Some(segment),
            installer: self,
            unlinked: tail.unlinked,
        })
    }
}

/// A replica rebuilt from a snapshot, under its temporary name, catching up
/// with the frames that follow the snapshot's start ([`Staged::segment`]
/// applies them). The copy holds sections of different moments (the writer
/// went on while they were copied): only once it holds every frame through
/// its catch-up horizon is it a state the primary was in, and only then
/// does [`Staged::publish`] put it in the old replica's place, so that the
/// standbys reading the replica never see the mix. Dropped unpublished, it
/// is removed and the old replica stays as it was.
pub struct Staged {
    /// Dropped before the installer, which then removes the temporary.
    segment: Option<Segment>,
    /// The directory, the temporary's name (cleared once published) and the
    /// checkpoint's (its segment taken).
    installer: Installer,
    /// The primary's unlink is in the copy: no frame follows, and the
    /// replica is unlinked once it is in place, as an applied unlink frame
    /// leaves it.
    unlinked: bool,
}

impl Staged {
    /// The copy, for applying frames to.
    pub fn segment(&self) -> &Segment {
        self.segment
            .as_ref()
            .expect("a staged copy until it is published")
    }

    /// True once the copy holds every frame through its catch-up horizon
    /// (or the primary's unlink, after which none comes): it may be
    /// published.
    pub fn caught_up(&self) -> bool {
        let s = self.segment();
        self.unlinked
            || s.is_unlinked()
            || s.last_seq() >= s.header().catchup_end.load(Ordering::Relaxed)
    }

    /// Renames the copy over the replica's name, in place of `old` (this
    /// host's replica file, if it has one), marks `old` superseded (its
    /// handles move to the copy; it is never promoted), and opens the copy
    /// under the name. `old` is looked at, renamed over and marked under its
    /// claim, so that no promotion of it comes in between: one that came
    /// while the copy caught up ([`PublishFail::Promoted`]) keeps the name,
    /// and the copy is dropped. `Ok(None)` if the primary's unlink reached
    /// the copy while it caught up: there is nothing to put in place (the
    /// copy is removed; `old`, if any, is to be unlinked).
    pub fn publish(mut self, old: Option<&Segment>) -> Result<Option<Segment>, PublishFail> {
        let held = match old.map(|o| o.claim()) {
            Some(Err(_)) => return Err(PublishFail::Busy),
            Some(Ok(held)) => Some(held),
            None => None,
        };
        if old.is_some_and(|o| !o.is_replica() || o.is_superseded()) {
            return Err(PublishFail::Promoted);
        }
        let segment = self.segment.take().expect("a staged copy");
        let i = &mut self.installer;
        if segment.is_unlinked() {
            // An unlink frame applied to the copy (dropping the installer
            // removes its temporary).
            return Ok(None);
        }
        let renamed = i
            .dir
            .rename(&i.tmp, &dir::file_name(&i.name))
            .map_err(|e| InstallError::Open(crate::segment::io_to_open_error(&e)));
        // Closing the description drops the temporary's lease.
        drop(segment);
        renamed.map_err(PublishFail::Install)?;
        i.tmp.clear();
        if let Some(o) = old {
            o.supersede_held();
        }
        drop(held);
        let flags = OpenFlags::READ | OpenFlags::WRITE;
        let segment = Segment::open_for_link(&i.config, &i.name, flags)
            .map_err(|e| PublishFail::Install(InstallError::Open(e)))?;
        segment.fence_if_marked();
        if self.unlinked {
            // Unlinked in the copy: its name is freed, as an applied unlink
            // frees it.
            segment.mark_unlinked();
        }
        Ok(Some(segment))
    }
}

/// Why [`Staged::publish`] did not put the copy in place.
#[derive(Debug)]
pub enum PublishFail {
    /// The old replica's claim stayed held past the claim timeout (by a
    /// live process: a dead one's is taken over): the copy is dropped.
    Busy,
    /// The old replica was promoted (or replaced) while the copy caught up:
    /// it keeps the name, and the copy is dropped.
    Promoted,
    /// The rename, or the open after it, failed (after the rename the copy
    /// holds the name: reopen it).
    Install(InstallError),
}

impl Drop for Installer {
    fn drop(&mut self) {
        if !self.tmp.is_empty() {
            self.mapped = None;
            let _ = self.dir.remove(&self.tmp);
        }
    }
}
