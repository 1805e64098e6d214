//! Following the delta log, and catching up when a consumer fell behind.
//!
//! A [`Consumer`] reads frames in sequence order and checks that the numbers
//! are dense (a jump means the ring is damaged). Writers never wait for it: a
//! consumer more than the ring behind gets `Lagged` and catches up with
//! [`Consumer::resync`], which takes a **fuzzy snapshot** while the writer goes
//! on: it notes the log position first, copies every section with the
//! sequence numbers its copy reflects, and then resumes from the noted position,
//! skipping every frame the copy already contains ([`ckpt_core::catchup`]).

use std::time::{Duration, Instant};

use ckpt_core::catchup::{self, SectionSeqs};
use ckpt_core::frame::{self, Frame, FrameHeader, SectionRecord, SnapshotTail, HEADER_BYTES};
use ckpt_core::Time;

use super::SectionRef;
use crate::layout::{
    intent_op, slot_state, stage_kind, ActiveReplicaWord, IntentWord, LifeWord, StageWord,
};
use crate::log::LogError;
use crate::notify;
use crate::racy;
use crate::segment::{Mapped, Segment};
use crate::slot::{self, ReadFail};
use crate::sync::Ordering;

/// Snapshots retried when writers keep a section busy.
const SNAPSHOT_ATTEMPTS_MAX: u32 = 16;

/// One section as a snapshot copied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSection {
    /// Its id.
    pub id: Vec<u8>,
    /// Its data.
    pub data: Vec<u8>,
    /// Its version.
    pub version: u64,
    /// `lastUpdate`.
    pub last_update: Time,
    /// Absolute expiration (the section may have expired and not been swept).
    pub expiration: Time,
    /// The sequence numbers the copy reflects.
    pub seqs: SectionSeqs,
}

/// A fuzzy copy of a checkpoint, taken while writers go on, and where to
/// resume following its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The log position noted before anything was copied.
    pub resume: u64,
    /// The sequence number of the frame at `resume`: the copy holds every
    /// frame before it.
    pub resume_seq: u64,
    /// The last sequence number published when the copy began.
    pub start_seq: u64,
    /// The last sequence number published when the copy ended, + 1 (the frame
    /// then in flight may be committed): no later frame is contained in it.
    pub end_seq: u64,
    /// The sections, sorted by id.
    pub sections: Vec<SnapshotSection>,
    /// The active replica word copied (node, term).
    pub active_replica: ActiveReplicaWord,
    /// The retention duration copied.
    pub retention: Time,
    /// Sequence number of the checkpoint-wide frame the copy reflects.
    pub state_seq: u64,
    /// The checkpoint was unlinked before the copy began.
    pub unlinked: bool,
}

impl Snapshot {
    /// The copied section `id`.
    pub fn section(&self, id: &[u8]) -> Option<&SnapshotSection> {
        self.sections
            .binary_search_by(|s| s.id.as_slice().cmp(id))
            .ok()
            .map(|i| &self.sections[i])
    }

    /// True if the copy already holds the effect of this frame (replay skips it).
    pub fn contains(&self, header: &FrameHeader, id: &[u8]) -> bool {
        self.head()
            .contains(header, self.section(id).map(|s| s.seqs))
    }

    /// Everything but the sections.
    pub fn head(&self) -> SnapshotHead {
        SnapshotHead {
            resume: self.resume,
            resume_seq: self.resume_seq,
            start_seq: self.start_seq,
            end_seq: self.end_seq,
            active_replica: self.active_replica,
            retention: self.retention,
            state_seq: self.state_seq,
            unlinked: self.unlinked,
        }
    }

    fn filter(&self) -> Filter {
        Filter {
            head: self.head(),
            sections: self
                .sections
                .iter()
                .map(|s| (s.id.clone(), s.seqs))
                .collect(),
        }
    }
}

/// What a consumer that resynchronized skips: the frames its copy holds.
struct Filter {
    head: SnapshotHead,
    sections: Vec<(Vec<u8>, SectionSeqs)>,
}

impl Filter {
    fn contains(&self, header: &FrameHeader, id: &[u8]) -> bool {
        let section = self
            .sections
            .binary_search_by(|(s, _)| s.as_slice().cmp(id))
            .ok()
            .map(|i| self.sections[i].1);
        self.head.contains(header, section)
    }
}

impl Mapped {
    /// The log position where the next frame will be published.
    pub fn log_tail(&self) -> u64 {
        self.log().tail()
    }

    /// The sequence number of the last published frame.
    pub fn last_seq(&self) -> u64 {
        self.log().seq()
    }

    /// Appends the log ring's bytes of frames an earlier walk found
    /// (`spans` of `(position, bytes)`, ascending) to `out` as the ring holds
    /// them (unsealed): `Lagged` if the writer overran any of them meanwhile
    /// (then what was appended must be discarded).
    pub fn copy_log_spans(
        &self,
        spans: impl IntoIterator<Item = (u64, usize)>,
        out: &mut Vec<u8>,
    ) -> Result<(), LogError> {
        self.log().copy_spans(spans, out)
    }

    /// A consumer of the delta log starting at position `from` (default: the
    /// tail now).
    pub fn consumer(&self, from: Option<u64>) -> Consumer<'_> {
        Consumer {
            mapped: self,
            cursor: from.unwrap_or_else(|| self.log_tail()),
            buf: Vec::new(),
            batch: Vec::new(),
            next: 0,
            current: (0, 0..0),
            next_seq: 0,
            filter: None,
        }
    }

    /// Takes a fuzzy snapshot: notes where the log is, then copies every live
    /// section (each consistent with the sequence numbers it records) while
    /// writers go on. Replaying the log from `resume` while skipping what
    /// [`Snapshot::contains`] gives exactly the checkpoint's state.
    pub fn snapshot(&self) -> Result<Snapshot, ReadFail> {
        let mut last = ReadFail::Busy;
        for _ in 0..SNAPSHOT_ATTEMPTS_MAX {
            match self.snapshot_once() {
                Ok(s) => return Ok(s),
                Err(ReadFail::Corrupt) => return Err(ReadFail::Corrupt),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn snapshot_once(&self) -> Result<Snapshot, ReadFail> {
        let mut sections: Vec<SnapshotSection> = Vec::new();
        let head = self.snapshot_with(|c| {
            sections.push(SnapshotSection {
                id: c.id.to_vec(),
                data: c.data.to_vec(),
                version: c.version,
                last_update: c.last_update,
                expiration: c.expiration,
                seqs: c.seqs,
            })
        })?;
        // Copies of one id from two slots (deleted from one and re-created in
        // another while the scan ran): the newer incarnation is the state.
        sections.sort_by(|a, b| a.id.cmp(&b.id).then(b.seqs.newest().cmp(&a.seqs.newest())));
        sections.dedup_by(|later, first| later.id == first.id);
        Ok(Snapshot {
            resume: head.resume,
            resume_seq: head.resume_seq,
            start_seq: head.start_seq,
            end_seq: head.end_seq,
            sections,
            active_replica: head.active_replica,
            retention: head.retention,
            state_seq: head.state_seq,
            unlinked: head.unlinked,
        })
    }

    /// The last frame of a vector write's group in flight past its commit
    /// point (its sections flipping, or left so by a writer that died), if
    /// there is one. SYNC POINT: Acquire pairs with the Release stores of
    /// the intent (`set_intent_on`, `clear_intent`) and of `GROUP_COMMITTED`
    /// (`write_group`); the op is read again after the target and the end,
    /// so all three belong to one group.
    pub(crate) fn committed_group(&self) -> Option<u64> {
        let h = self.header();
        let group = |word: u64| IntentWord::from(word).op == intent_op::GROUP;
        let committed = group(h.intent_op.load(Ordering::Acquire))
            && h.intent_target.load(Ordering::Acquire) == intent_op::GROUP_COMMITTED;
        let end = h.intent_end_seq.load(Ordering::Relaxed);
        (committed && group(h.intent_op.load(Ordering::Acquire))).then_some(end)
    }

    /// The last frame whose change a copy of the sections made until now may
    /// hold: the last published + 1 (the claim holder's one frame in flight,
    /// committed and not yet published), or, for a vector write's group past
    /// its commit point, its last frame (all its sections may be copied
    /// flipped). The intent is read first: a group whose intent is gone has
    /// published its frames, which `log.seq()` then shows. An overestimate
    /// is harmless (the catch-up rule looks at each section's own numbers);
    /// one too low made a replica refuse the group's second frame as
    /// diverged.
    pub(crate) fn copied_through(&self) -> u64 {
        let group_end = self.committed_group().unwrap_or(0);
        self.log().seq().saturating_add(1).max(group_end)
    }

    /// The streaming form of [`Mapped::snapshot`], for copies too large to
    /// hold (shipping a checkpoint to a new replica): each live section is
    /// copied into one reused buffer and handed to `each` in slot order. Two
    /// copies of one id can come (deleted from one slot and re-created in
    /// another during the scan): the one with the larger `seqs.newest()` is
    /// the state. `Err(Busy)` if the writer lapped the ring meanwhile: the
    /// receiver drops what it got and starts again.
    pub fn snapshot_with(
        &self,
        mut each: impl FnMut(SectionCopy<'_>),
    ) -> Result<SnapshotHead, ReadFail> {
        let log = self.log();
        let h = self.header();
        // Unlinked before the resume point is noted: its unlink frame comes
        // before it, and the copy says so. (One unlinked later has its frame
        // at or after the resume point: replayed.) SYNC POINT: SeqCst, with
        // the SeqCst fetch_or of `UNLINKED` at the unlink's commit point.
        let unlinked = h.lifecycle.load(Ordering::SeqCst) & crate::layout::LIFECYCLE_UNLINKED != 0;
        // The resume point first: every frame published from here on is
        // either replayed or contained in what is copied below. A mutation in
        // flight may have published stages already: resume at its first
        // frame, or its own frame would be replayed without them. (Read after
        // the tail: a mutation whose intent is gone by then has committed,
        // and its frames are contained in the copy.)
        let tail = log.tail();
        let start_seq = log.seq();
        // SYNC POINT: Acquire pairs with the Release stores of the intent
        // (`set_intent`, `clear_intent`).
        let in_flight = IntentWord::from(h.intent_op.load(Ordering::Acquire)).op != intent_op::NONE;
        let start = h.intent_log_start.load(Ordering::Relaxed);
        let usable = |p: u64| p <= tail && tail - p <= self.geometry().log_bytes;
        let mut resume = if in_flight && usable(start) {
            start
        } else {
            tail
        };
        // A replica staging a large mutation across applies: resume at its
        // first piece. SYNC POINT: Acquire pairs with the Release store of the
        // stage word in `begin_staging`.
        if StageWord::from(h.stage.load(Ordering::Acquire)).kind != stage_kind::NONE {
            let stage_start = h.stage_log_start.load(Ordering::Relaxed);
            if usable(stage_start) {
                resume = resume.min(stage_start);
            }
        }
        // Checkpoint-wide state: its number is stored after the values, so
        // it may lag them by the frame in flight. Re-applying that frame is
        // a no-op for a retention change; a replica treats an active-replica
        // change it already holds (same node and term) as held.
        let state_seq = h.state_seq.load(Ordering::Acquire);
        let active_replica = ActiveReplicaWord::from(h.active_replica.load(Ordering::Acquire));
        let retention = Time(h.retention_ns.load(Ordering::SeqCst));
        let mut data = Vec::new();
        let mut id = Vec::new();
        for s in 0..self.geometry().sections_max {
            let header = self.slot(s);
            let life = LifeWord::from(header.life.load(Ordering::Acquire));
            if life.state != slot_state::LIVE {
                continue;
            }
            let section = SectionRef {
                slot: s,
                gen: life.gen,
            };
            let meta = match self.read_whole(section, &mut data) {
                Ok(meta) => meta,
                // Deleted (or re-created) meanwhile: its frames come after `resume`.
                Err(ReadFail::Gone) => continue,
                Err(e) => return Err(e),
            };
            let (expiration, expiration_seq) =
                slot::read_expiration(header).ok_or(ReadFail::Busy)?;
            let id_len = (header.id_len.load(Ordering::Relaxed) as u64)
                .min(self.attributes().section_id_bytes_max) as usize;
            id.resize(id_len, 0);
            // SAFETY: id_len <= maxSectionIdSize bytes of the slot's id area;
            // writers store ids atomically (`racy`); a reused slot shows in
            // the life word checked below.
            unsafe { racy::load(&mut id, self.slot_id_ptr(s)) };
            // SYNC POINT: Acquire fence: the copies above are ordered before
            // the life word's reload (paired with its Release store on reuse).
            crate::sync::fence(Ordering::Acquire);
            if LifeWord::from(header.life.load(Ordering::Relaxed)) != life {
                continue;
            }
            each(SectionCopy {
                id: &id,
                data: &data,
                version: meta.version,
                last_update: Time(meta.time_ns),
                expiration: Time(expiration),
                seqs: SectionSeqs {
                    data_seq: meta.seq,
                    expiration_seq,
                },
            });
        }
        let end_seq = self.copied_through();
        let resume_seq = self.seq_at(resume)?;
        if log.tail().wrapping_sub(resume) > self.geometry().log_bytes {
            // The writer lapped the ring while we copied: the resume point
            // (and what was read there) is gone.
            return Err(ReadFail::Busy);
        }
        Ok(SnapshotHead {
            resume,
            resume_seq,
            start_seq,
            end_seq,
            active_replica,
            retention,
            state_seq,
            unlinked,
        })
    }
}

/// Looks for the frame at a snapshot's resume point this many times (a
/// mutation in flight there publishes within microseconds).
const RESUME_LOOKS_MAX: u32 = 10_000;

impl Mapped {
    /// The sequence number of the frame at ring position `at` (a frame
    /// boundary at most the tail): of the frame published there, or, if
    /// `at` is the tail, of the next frame to be published. `Busy` if a
    /// writer keeps a frame in flight there, or the ring lost `at`.
    pub fn seq_at(&self, at: u64) -> Result<u64, ReadFail> {
        let log = self.log();
        for _ in 0..RESUME_LOOKS_MAX {
            if log.tail() > at {
                let mut cursor = at;
                return match log.read_next_header(&mut cursor) {
                    Ok(Some((_, header))) => Ok(header.seq),
                    _ => Err(ReadFail::Busy),
                };
            }
            // Nothing published there yet: the tail's own number, once no
            // frame is in flight.
            if let Some((tail, seq)) = log.published() {
                if tail == at {
                    return Ok(seq + 1);
                }
            }
            std::thread::yield_now();
        }
        Err(ReadFail::Busy)
    }
}

/// One section as [`Mapped::snapshot_with`] copied it (borrowed until the
/// next one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionCopy<'a> {
    /// Its id.
    pub id: &'a [u8],
    /// Its data.
    pub data: &'a [u8],
    /// Its version.
    pub version: u64,
    /// `lastUpdate`.
    pub last_update: Time,
    /// Absolute expiration.
    pub expiration: Time,
    /// The sequence numbers the copy reflects.
    pub seqs: SectionSeqs,
}

impl<'a> SectionCopy<'a> {
    /// The section as wire records: pieces of at most `room` bytes (at
    /// least one record, for an empty section), in order.
    pub fn records(&self, room: usize) -> impl Iterator<Item = SectionRecord<'a>> + use<'a> {
        let c = *self;
        let room = room.max(1);
        let pieces = c.data.len().div_ceil(room).max(1);
        (0..pieces).map(move |i| {
            let offset = i * room;
            SectionRecord {
                id: c.id,
                piece: &c.data[offset..c.data.len().min(offset + room)],
                size: c.data.len() as u64,
                offset: offset as u64,
                version: c.version,
                last_update: c.last_update.0,
                expiration: c.expiration.0,
                data_seq: c.seqs.data_seq,
                expiration_seq: c.seqs.expiration_seq,
            }
        })
    }
}

/// What a streamed snapshot says besides its sections: where to resume and
/// what the copy reflects (the fields of [`Snapshot`] but the sections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHead {
    /// The log position noted before anything was copied.
    pub resume: u64,
    /// The sequence number of the frame at `resume` (published then, or
    /// the next to be): the copy holds every frame before it.
    pub resume_seq: u64,
    /// The last sequence number published when the copy began.
    pub start_seq: u64,
    /// The last sequence number published when the copy ended, + 1.
    pub end_seq: u64,
    /// The active replica word copied (node, term).
    pub active_replica: ActiveReplicaWord,
    /// The retention duration copied.
    pub retention: Time,
    /// Sequence number of the checkpoint-wide frame the copy reflects.
    pub state_seq: u64,
    /// The checkpoint was unlinked before the copy began.
    pub unlinked: bool,
}

impl SnapshotHead {
    /// What a replica installing this copy needs besides its sections (on
    /// the wire at a snapshot's end).
    pub fn tail(&self) -> SnapshotTail {
        let active = self.active_replica;
        SnapshotTail {
            end_seq: self.end_seq,
            state_seq: self.state_seq,
            active: active.set.then_some(active.node),
            term: active.term,
            retention_ns: self.retention.0,
            unlinked: self.unlinked,
        }
    }

    /// True if the copy already holds the effect of this frame (replay skips
    /// it); `section` is the copy's entry for the frame's section id.
    pub fn contains(&self, header: &FrameHeader, section: Option<SectionSeqs>) -> bool {
        header.seq <= self.end_seq && catchup::contains(header, section, self.state_seq)
    }
}

/// The density check of a walk of the ring: the next number expected (0:
/// not known yet) and where the first jump was.
struct Dense(u64, Option<u64>);

impl Dense {
    /// Notes `header`'s number; false (and the walk should stop) on a jump.
    fn check(&mut self, position: u64, header: &FrameHeader) -> bool {
        if (self.0 != 0 && header.seq != self.0) || header.seq == u64::MAX {
            self.1 = Some(position);
            return false;
        }
        self.0 = header.seq + 1;
        true
    }

    /// After a validated walk: the next number expected, or `Corrupt` at
    /// the jump (the consumer's cursor back on it).
    fn settle(self, cursor: &mut u64) -> Result<u64, LogError> {
        match self.1 {
            Some(at) => {
                *cursor = at;
                Err(LogError::Corrupt { at })
            }
            None => Ok(self.0),
        }
    }
}

/// Follows the delta log: every mutation in commit order.
///
/// [`Consumer::advance`] reads the ring in walks ([`crate::log::Log::scan`]):
/// the frames published so far (up to [`CONSUMER_BATCH_BYTES`]) are copied
/// out and validated together, then handed out one by one. A consumer that
/// keeps up with a busy writer reads the writer's words (the tail and
/// `reserve`, whose cache line the writer then has to take back) once per
/// walk, not twice per frame.
pub struct Consumer<'a> {
    mapped: &'a Mapped,
    /// The position after the last frame copied out of the ring.
    cursor: u64,
    /// The frames of the last walk, back to back.
    buf: Vec<u8>,
    /// Each frame of `buf`: its log position and where it starts in `buf`.
    batch: Vec<(u64, usize)>,
    /// The next frame of `batch` to hand out.
    next: usize,
    /// The frame [`Consumer::advance`] moved to: its position and bytes.
    current: (u64, core::ops::Range<usize>),
    /// The sequence number the next frame must have (0: not known yet).
    next_seq: u64,
    /// After a resync: the frames the snapshot holds.
    filter: Option<Filter>,
}

/// The most bytes one walk of [`Consumer::advance`] copies out of the ring
/// (at least one frame).
pub const CONSUMER_BATCH_BYTES: usize = 64 << 10;

impl Consumer<'_> {
    /// The next frame, or `None` at the tail. After [`Consumer::resync`],
    /// frames the snapshot already holds are skipped.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, LogError> {
        if self.advance()?.is_none() {
            return Ok(None);
        }
        self.current().map(Some)
    }

    /// Moves to the next frame and returns its header (`None` at the tail);
    /// [`Consumer::current`] then decodes it. Checks that sequence numbers are
    /// dense and, after a resync, skips what the snapshot holds.
    pub fn advance(&mut self) -> Result<Option<FrameHeader>, LogError> {
        loop {
            if self.next == self.batch.len() && !self.walk()? {
                return Ok(None);
            }
            let (position, at) = self.batch[self.next];
            self.next += 1;
            // The walk validated these bytes.
            let header = frame::decode_header(&self.buf[at..])
                .map_err(|_| LogError::Corrupt { at: position })?;
            self.current = (position, at..at + header.frame_bytes());
            if let Err(e) = self.dense(position, &header) {
                // Handed out no further: the next advance reads from here.
                self.batch.clear();
                self.next = 0;
                return Err(e);
            }
            if let Some(filter) = &self.filter {
                if header.seq > filter.head.end_seq {
                    self.filter = None;
                } else {
                    let id = &self.buf[at + HEADER_BYTES..][..header.id_len as usize];
                    if filter.contains(&header, id) {
                        continue;
                    }
                }
            }
            return Ok(Some(header));
        }
    }

    /// Copies the frames published from the cursor on (up to
    /// [`CONSUMER_BATCH_BYTES`], at least one) into `buf`, validated as a
    /// whole. False at the tail. On an error nothing is kept, and the
    /// cursor stays.
    fn walk(&mut self) -> Result<bool, LogError> {
        self.buf.clear();
        self.batch.clear();
        self.next = 0;
        // Room for a whole walk at once, on the first (a frame larger than
        // the rest of it grows the buffer): not a reallocation per walk that
        // comes out larger than the ones before.
        self.buf.reserve(CONSUMER_BATCH_BYTES);
        self.batch
            .reserve(CONSUMER_BATCH_BYTES / ckpt_core::frame::HEADER_BYTES);
        let (buf, batch) = (&mut self.buf, &mut self.batch);
        let walked = self.mapped.log().scan(&mut self.cursor, |frame| {
            batch.push((frame.position, buf.len()));
            frame.copy_to(buf);
            buf.len() < CONSUMER_BATCH_BYTES
        });
        if let Err(e) = walked {
            self.buf.clear();
            self.batch.clear();
            return Err(e);
        }
        Ok(!self.batch.is_empty())
    }

    /// Checks that `header` is the frame after the last one (frames are
    /// dense: a jump means the ring was damaged) and notes its number.
    fn dense(&mut self, position: u64, header: &FrameHeader) -> Result<(), LogError> {
        let mut dense = Dense(self.next_seq, None);
        dense.check(position, header);
        self.next_seq = dense.settle(&mut self.cursor)?;
        Ok(())
    }

    /// Moves past the frames published so far reading only their headers
    /// (to index the ring), handing each one's position and header to
    /// `each`. For consumers that never resync (a resync's filter needs the
    /// ids). On an error, what `each` was given must be discarded.
    pub fn skim(&mut self, mut each: impl FnMut(u64, FrameHeader)) -> Result<(), LogError> {
        debug_assert!(self.filter.is_none(), "skim after a resync");
        debug_assert!(self.next == self.batch.len(), "skim amid advance's frames");
        let mut dense = Dense(self.next_seq, None);
        self.mapped.log().scan(&mut self.cursor, |frame| {
            let dense_so_far = dense.check(frame.position, &frame.header);
            if dense_so_far {
                each(frame.position, frame.header);
            }
            dense_so_far
        })?;
        self.next_seq = dense.settle(&mut self.cursor)?;
        Ok(())
    }

    /// The frame [`Consumer::advance`] moved to.
    pub fn current(&self) -> Result<Frame<'_>, LogError> {
        // The walk validated these bytes; a failure means the ring holds
        // what is not a frame.
        frame::decode(self.current_bytes(), false)
            .map_err(|_| LogError::Corrupt { at: self.current.0 })
    }

    /// The bytes of the frame [`Consumer::advance`] moved to, as the ring
    /// held them (validated, unsealed).
    pub fn current_bytes(&self) -> &[u8] {
        self.buf.get(self.current.1.clone()).unwrap_or(&[])
    }

    /// The position of the next frame to read.
    pub fn position(&self) -> u64 {
        match self.batch.get(self.next) {
            Some(&(position, _)) => position,
            None => self.cursor,
        }
    }

    /// The position of the frame [`Consumer::advance`] moved to.
    pub fn current_position(&self) -> u64 {
        self.current.0
    }

    /// Catches up after `Lagged` (or to start from the current state): takes a
    /// fuzzy snapshot, resumes from the position noted before it, and skips
    /// the frames the snapshot holds. Returns the snapshot.
    pub fn resync(&mut self) -> Result<Snapshot, ReadFail> {
        let snapshot = self.mapped.snapshot()?;
        self.cursor = snapshot.resume;
        self.batch.clear();
        self.next = 0;
        self.next_seq = 0;
        self.filter = Some(snapshot.filter());
        Ok(snapshot)
    }

    /// True if the file it follows was superseded: a snapshot rebuilt the
    /// replica into a new file, and no frame comes to this one again.
    pub fn is_superseded(&self) -> bool {
        self.mapped.is_superseded()
    }

    /// True if frames are waiting.
    pub fn has_next(&self) -> bool {
        self.next < self.batch.len() || self.mapped.log_tail() > self.cursor
    }

    /// Waits until a frame is published or `timeout` passes: spins for up to
    /// `spin` first (a standby on its own core sees a change within about a
    /// microsecond), then sleeps on the futex. Returns true if frames wait,
    /// or if the file was superseded (no frame comes to it again: a
    /// snapshot rebuilt the replica into a new file, which the waiter's
    /// handle moves to).
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
        if self.next < self.batch.len() {
            return true;
        }
        let h = self.mapped.header();
        let doorbell = crate::log::Doorbell::new(&h.waiters);
        loop {
            doorbell.arm();
            // SYNC POINT: SeqCst load, the sleeper's half of the Dekker pair with
            // the writer's SeqCst swap in `Log::publish`.
            let tail = h.log_tail.load(Ordering::SeqCst);
            if tail > self.cursor || self.mapped.is_superseded() {
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

impl Segment {
    /// A copy's catch-up horizon `end_seq` (`Mapped::copied_through`,
    /// taken as the copy ended), made exact for a replica that waits to
    /// hold it: the last number published, once no frame is in flight
    /// (looked at up to `RESUME_LOOKS_MAX` times, then under the claim), if
    /// that is below it.
    /// `copied_through` counts the frame that may be in flight; when none
    /// is, that frame is the next mutation's, which the copy cannot hold,
    /// and on an idle primary it would never come. Every change the copy
    /// shows was committed before this looks, and a committed change's
    /// frame is reserved before its commit point: a ring with nothing
    /// reserved past its tail has published it.
    pub fn settled_end(&self, end_seq: u64) -> u64 {
        let log = self.log();
        let settled = || log.published().map(|(_, seq)| end_seq.min(seq));
        for _ in 0..RESUME_LOOKS_MAX {
            if let Some(end) = settled() {
                return end;
            }
            std::thread::yield_now();
        }
        // A frame stays in flight: its writer died there, or is stopped.
        // Under the claim nothing is in flight (a dead holder's mutation is
        // recovered first: published if it reached its commit point, which a
        // copy could have seen, else rolled back); a live one keeps it past
        // the claim timeout, and the horizon stays as it was.
        let _held = self.claim();
        settled().unwrap_or(end_seq)
    }
}
