//! Catch-up: a copy of the checkpoint plus the log replayed from the copy's
//! resume point, skipping the frames the copy already contains, must be the
//! checkpoint exactly.
//!
//! The input runs a sequence of mutations on a real segment (create, write,
//! overwrite, `write_many`, delete, expiration changes far in the future,
//! retention and active-replica changes), interleaved with catch-ups:
//!
//! - **quiescent snapshots** (`Mapped::snapshot`), each checked against the
//!   segment at once (sections, versions, expirations, active replica,
//!   retention, and the sequence numbers it records against the log);
//! - **fuzzy snapshots**, emulating what `snapshot` does while a writer goes
//!   on: the resume point (and, early or late, the checkpoint-wide state) is
//!   noted at one operation, and the slots are copied a few at a time at later
//!   ones, exactly as its slot scan reads them; then sorted and de-duplicated
//!   as `snapshot` does. This is one legal interleaving of `snapshot` with a
//!   writer (the copier descheduled between its steps), built with the public
//!   API only;
//! - a **standby** `Consumer` that calls `resync()` and then follows
//!   `next_frame()` (resynchronizing again when it lags, as users do).
//!
//! Each snapshot is replayed from its `resume` onto a model made from its
//! sections, skipping what `Snapshot::contains` says the copy holds (a
//! `Stage` frame is dropped with the frame it belongs to) and, as the rule in
//! `ckpt_core::catchup` prescribes, treating a write, overwrite, expiration
//! change or delete of a section the model lacks as a no-op while the frame
//! is within the snapshot (`seq <= end_seq`). Otherwise a replica refuses
//! what it could not apply (a write past the end, a version that does not
//! follow, a section created twice or missing). At the end every replica, and
//! a reference replica fed by the whole log from its `CheckpointCreated`
//! frame, must equal the segment: ids, data, versions, expirations, the
//! counters (sections, memory used), the active replica (set, node, term) and
//! the retention. A replay whose resume point the ring lapped is dropped (as
//! `Lagged` demands), not failed.
//!
//! The input is a hand-decodable byte code (see [`Op`]), so that regression
//! inputs can be written by hand: byte 0 picks the shape, the ring and the
//! creation flags; then each operation is an opcode byte and its arguments.
//! Missing bytes read as 0.
//!
//! Environment: `CKPT_FUZZ_SEED_DIR` writes seed inputs there at start-up;
//! `CKPT_FUZZ_TRACE=1` prints the operations and every replay decision;
//! `CKPT_FUZZ_CATCHUP_RULE=evolving` decides containment against the replica
//! as the replay changes it (the copy "filled" by the frames replayed) instead
//! of the copy as taken, which is what `Snapshot::contains` and the
//! consumer's resync filter do (a diagnostic: both must give the state);
//! `CKPT_FUZZ_CATCHUP_RULE=none` skips nothing, and the regression inputs
//! must then fail (the property has teeth).

#![no_main]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use ckpt_core::catchup::{self, SectionSeqs};
use ckpt_core::frame::{FrameHeader, FrameKind, Mutation, FLAG_MORE, FLAG_STAGED};
use ckpt_core::{
    CheckpointName, CreationAttributes, CreationFlags, OpenFlags, SectionsChosen, Time, UpdateMode,
};
use ckpt_fuzz::primary::{Bytes, Common, Driver};
use ckpt_fuzz::{scratch_dir, trace};
use ckpt_shm::layout::{ActiveReplicaWord, LOG_BYTES_MIN};
use ckpt_shm::log::LogError;
use ckpt_shm::{Config, Consumer, SectionRef, Segment, Snapshot, SnapshotSection};
use libfuzzer_sys::fuzz_target;

/// Checkpoint shapes: `(sections_max, section_bytes_max, section_id_bytes_max,
/// checkpoint_bytes)`.
const SHAPES: [(u32, u64, u64, u64); 5] = [
    // Small sections: offsets up to 256, a few slots to move between.
    (4, 256, 4, 512),
    // Larger than a quarter of the smallest ring: staged, and the ring laps.
    (3, 20_000, 4, 48_000),
    // Only the default section.
    (1, 64, 4, 64),
    // Tiny: 1-byte ids, full quickly.
    (3, 8, 1, 16),
    // Medium: laps the smallest ring after a few dozen writes.
    (6, 2_000, 4, 8_000),
];

/// Operations per input.
const OPS_MAX: usize = 200;
/// Snapshot replays alive at once (each follows the log after every operation).
const REPLAYS_MAX: usize = 4;

/// Opcodes (the first byte of an operation, modulo their number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// An operation both primary drivers run alike (its arguments are
    /// documented on [`Common`]).
    Common(Common),
    /// A quiescent `snapshot()`, checked now and replayed from then on.
    Snapshot,
    /// `late`: start a fuzzy snapshot (its resume point now; the
    /// checkpoint-wide state now, or at its first scan if bit 0).
    FuzzyBegin,
    /// `slots`: the fuzzy snapshot copies its next `1 + slots % sections_max` slots.
    FuzzyScan,
    /// The standby resynchronizes.
    Resync,
    /// The standby follows the log up to now.
    Follow,
    /// `id, len: u16, times`: overwrite `1 + times % 16` times (laps the ring).
    Churn,
}

const OPS: [Op; 14] = [
    Op::Common(Common::Create),
    Op::Common(Common::Write),
    Op::Common(Common::Overwrite {
        choose_zero_copy: true,
    }),
    Op::Common(Common::WriteMany {
        elements_max: 4,
        half_ring: false,
    }),
    Op::Common(Common::Delete),
    Op::Common(Common::SetExpiration),
    Op::Common(Common::SetRetention),
    Op::Common(Common::SetActiveReplica),
    Op::Snapshot,
    Op::FuzzyBegin,
    Op::FuzzyScan,
    Op::Resync,
    Op::Follow,
    Op::Churn,
];

/// How a replay decides what its snapshot contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// `Snapshot::contains`: the copy as taken (what users and the consumer do).
    Api,
    /// `catchup::contains` against the replica as the replay changes it.
    Evolving,
    /// Nothing is contained: shows the property has teeth (the regression
    /// inputs must fail with it).
    None,
}

fn rule() -> Rule {
    static RULE: OnceLock<Rule> = OnceLock::new();
    *RULE.get_or_init(
        || match std::env::var("CKPT_FUZZ_CATCHUP_RULE").as_deref() {
            Ok("evolving") => Rule::Evolving,
            Ok("none") => Rule::None,
            _ => Rule::Api,
        },
    )
}

/// One section of a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sec {
    data: Vec<u8>,
    version: u64,
    expiration: Time,
    /// The frames that made its data and expiration.
    seqs: SectionSeqs,
}

/// A checkpoint as frames (and perhaps a copy) tell it.
#[derive(Debug, Clone)]
struct Replica {
    sections: BTreeMap<Vec<u8>, Sec>,
    active_set: bool,
    active_node: u32,
    term: u32,
    retention: i64,
    state_seq: u64,
    /// The last frame seen (applied or skipped).
    last_seq: u64,
    /// Staged pieces: the section id, the data so far, the last stage's seq,
    /// and where the first piece goes in the section.
    staged: Option<(Vec<u8>, Vec<u8>, u64, i64)>,
    /// A replay from a snapshot: its `end_seq`, up to which a frame for a
    /// section the replica lacks is a no-op (0: every frame must apply).
    within: u64,
    /// A replay from a snapshot may re-apply the active-replica change in
    /// flight when the copy was taken (same term); the whole log may not.
    same_term_ok: bool,
}

impl Replica {
    /// An empty replica, before the log's first frame.
    fn empty() -> Self {
        Replica {
            sections: BTreeMap::new(),
            active_set: false,
            active_node: 0,
            term: 0,
            retention: 0,
            state_seq: 0,
            last_seq: 0,
            staged: None,
            within: 0,
            same_term_ok: false,
        }
    }

    /// A replica made from a snapshot's copy.
    fn from_snapshot(s: &Snapshot) -> Self {
        Replica {
            sections: s
                .sections
                .iter()
                .map(|c| {
                    let sec = Sec {
                        data: c.data.clone(),
                        version: c.version,
                        expiration: c.expiration,
                        seqs: c.seqs,
                    };
                    (c.id.clone(), sec)
                })
                .collect(),
            active_set: s.active_replica.set,
            active_node: s.active_replica.node,
            term: s.active_replica.term,
            retention: s.retention.0,
            state_seq: s.state_seq,
            last_seq: s.start_seq,
            staged: None,
            within: s.end_seq,
            same_term_ok: true,
        }
    }

    /// Takes one frame. `skip`: the copy already holds it. With `gaps`, the
    /// frames come from a consumer that skips frames itself (after a resync),
    /// so sequence numbers may jump; otherwise they must be dense.
    fn take(&mut self, frame: &Owned, skip: &dyn Fn(&Replica) -> bool, gaps: bool, what: &str) {
        let h = &frame.header;
        if gaps {
            assert!(
                h.seq > self.last_seq,
                "{what}: seq {} after {}",
                h.seq,
                self.last_seq
            );
        } else {
            assert_eq!(
                h.seq,
                self.last_seq + 1,
                "{what}: sequence numbers are dense"
            );
        }
        // Stages are completed by the very next frame: after a gap (a frame
        // the consumer skipped), they belonged to it and are dropped with it.
        if self.staged.as_ref().is_some_and(|s| s.2 + 1 != h.seq) {
            trace!(
                "  {what}: drop stages before skipped seq {}",
                self.staged.as_ref().unwrap().2 + 1
            );
            self.staged = None;
        }
        self.last_seq = h.seq;
        match h.kind {
            FrameKind::Stage => {
                assert!(
                    h.flags & FLAG_MORE != 0,
                    "{what}: a stage without FLAG_MORE"
                );
                let (id, data, last, base) = self
                    .staged
                    .get_or_insert_with(|| (frame.id.clone(), Vec::new(), 0, h.arg));
                assert_eq!(*id, frame.id, "{what}: stages of two sections interleave");
                assert_eq!(
                    h.arg,
                    *base + data.len() as i64,
                    "{what}: a stage out of place"
                );
                data.extend_from_slice(&frame.data);
                *last = h.seq;
                return;
            }
            FrameKind::StageAbort => {
                self.staged = None;
                return;
            }
            _ => {}
        }
        let data = if h.flags & FLAG_STAGED != 0 {
            let (id, mut data, _, base) = self
                .staged
                .take()
                .unwrap_or_else(|| panic!("{what}: a staged frame without its stages: {h:?}"));
            assert_eq!(id, frame.id, "{what}: stages of another section");
            let offset = if h.kind == FrameKind::Write { h.arg } else { 0 };
            assert_eq!(base, offset, "{what}: stages placed for another offset");
            data.extend_from_slice(&frame.data);
            data
        } else {
            assert!(self.staged.is_none(), "{what}: stages nobody completed");
            frame.data.clone()
        };
        if skip(self) {
            trace!("  {what}: skip {:?} seq {} {:?}", h.kind, h.seq, frame.id);
            return;
        }
        trace!(
            "  {what}: apply {:?} seq {} {:?} arg {} v{}",
            h.kind,
            h.seq,
            frame.id,
            h.arg,
            h.version
        );
        self.apply(h, &frame.id, data, what);
    }

    /// Applies one mutation, refusing what a replica could not apply.
    fn apply(&mut self, h: &FrameHeader, id: &[u8], data: Vec<u8>, what: &str) {
        fn live<'r>(r: &'r mut Replica, h: &FrameHeader, id: &[u8], what: &str) -> &'r mut Sec {
            r.sections.get_mut(id).unwrap_or_else(|| {
                panic!(
                    "{what}: {:?} seq {} of absent section {id:?}",
                    h.kind, h.seq
                )
            })
        }
        let seq = h.seq;
        let section_kind = matches!(
            h.kind,
            FrameKind::Write | FrameKind::Overwrite | FrameKind::Delete | FrameKind::ExpirationSet
        );
        if section_kind && seq <= self.within && !self.sections.contains_key(id) {
            // An incarnation deleted before the copy looked.
            trace!("  {what}: no-op {:?} seq {seq} of absent {id:?}", h.kind);
            return;
        }
        match h.kind {
            FrameKind::CheckpointCreated => {
                let frame = ckpt_core::frame::Frame {
                    header: *h,
                    id,
                    data: &data,
                };
                let Some(Mutation::CheckpointCreated {
                    attributes,
                    active_replica,
                    ..
                }) = frame.mutation()
                else {
                    panic!("{what}: a creation frame without attributes");
                };
                assert_eq!(seq, 1, "{what}: the creation is not the first frame");
                if attributes.has_default_section() {
                    let sec = Sec {
                        data: Vec::new(),
                        version: 1,
                        expiration: Time::END,
                        seqs: SectionSeqs {
                            data_seq: seq,
                            expiration_seq: seq,
                        },
                    };
                    self.sections.insert(Vec::new(), sec);
                }
                let mode = attributes.flags.mode();
                let placed = mode.is_asynchronous() && !attributes.flags.is_collocated();
                assert_eq!(
                    placed,
                    active_replica.is_some(),
                    "{what}: placement at creation"
                );
                self.active_set = placed;
                self.active_node = active_replica.unwrap_or(0);
                self.term = h.term;
                self.retention = attributes.retention_ns;
            }
            FrameKind::Create => {
                assert_eq!(h.version, 1, "{what}: a create's version");
                let sec = Sec {
                    data,
                    version: 1,
                    expiration: Time(h.arg),
                    seqs: SectionSeqs {
                        data_seq: seq,
                        expiration_seq: seq,
                    },
                };
                let old = self.sections.insert(id.to_vec(), sec);
                assert!(old.is_none(), "{what}: {id:?} created twice (seq {seq})");
            }
            FrameKind::Write | FrameKind::Overwrite => {
                let s = live(self, h, id, what);
                assert_eq!(
                    h.version,
                    s.version + 1,
                    "{what}: {:?} seq {seq} of {id:?} does not follow its version",
                    h.kind
                );
                if h.kind == FrameKind::Write {
                    // Past the end: the section grows over zeros.
                    let at = h.arg as usize;
                    s.data.resize(s.data.len().max(at + data.len()), 0);
                    s.data[at..at + data.len()].copy_from_slice(&data);
                } else {
                    s.data = data;
                }
                s.version = h.version;
                s.seqs.data_seq = seq;
            }
            FrameKind::Delete => {
                let s = live(self, h, id, what);
                assert_eq!(
                    h.version, s.version,
                    "{what}: delete seq {seq} of another version"
                );
                self.sections.remove(id);
            }
            FrameKind::ExpirationSet => {
                let s = live(self, h, id, what);
                assert_eq!(
                    h.version, s.version,
                    "{what}: expiration seq {seq} of another version"
                );
                s.expiration = Time(h.arg);
                s.seqs.expiration_seq = seq;
            }
            FrameKind::ActiveReplicaSet => {
                if self.same_term_ok {
                    assert!(
                        h.term >= self.term,
                        "{what}: term {} after {}",
                        h.term,
                        self.term
                    );
                } else {
                    assert_eq!(h.term, self.term + 1, "{what}: a new term");
                }
                self.active_set = true;
                self.active_node = h.arg as u32;
                self.term = h.term;
                self.state_seq = seq;
            }
            FrameKind::RetentionSet => {
                self.retention = h.arg;
                self.state_seq = seq;
            }
            other => panic!("{what}: unexpected {other:?} frame"),
        }
    }
}

/// A frame copied out of a consumer.
struct Owned {
    header: FrameHeader,
    id: Vec<u8>,
    data: Vec<u8>,
}

fn next_owned(consumer: &mut Consumer<'_>) -> Result<Option<Owned>, LogError> {
    Ok(consumer.next_frame()?.map(|f| Owned {
        header: f.header,
        id: f.id.to_vec(),
        data: f.data.to_vec(),
    }))
}

/// A replica following the log from a snapshot's resume point (or, with no
/// snapshot, from the log's start).
struct Replay<'a> {
    what: String,
    consumer: Consumer<'a>,
    replica: Replica,
    snapshot: Option<Snapshot>,
    incarnation: u64,
}

impl Replay<'_> {
    /// Follows the log up to its tail. `Err` if the ring lapped the replay.
    fn drain(&mut self) -> Result<(), LogError> {
        while let Some(frame) = next_owned(&mut self.consumer)? {
            let h = frame.header;
            assert_eq!(
                h.incarnation, self.incarnation,
                "{}: incarnation",
                self.what
            );
            let skip = |replica: &Replica| match (&self.snapshot, rule()) {
                (None, _) | (Some(_), Rule::None) => false,
                (Some(s), Rule::Evolving) => {
                    h.seq <= s.end_seq
                        && catchup::contains(
                            &h,
                            replica.sections.get(&frame.id).map(|s| s.seqs),
                            replica.state_seq,
                        )
                }
                (Some(s), Rule::Api) => s.contains(&h, &frame.id),
            };
            if self.snapshot.is_none() && h.kind != FrameKind::ActiveReplicaSet && h.seq > 1 {
                assert_eq!(
                    h.term, self.replica.term,
                    "{}: the term of seq {}",
                    self.what, h.seq
                );
            }
            self.replica.take(&frame, &skip, false, &self.what);
        }
        Ok(())
    }
}

/// The segment's state, through its public API.
#[derive(Debug, PartialEq, Eq)]
struct State {
    sections: BTreeMap<Vec<u8>, (Vec<u8>, u64, Time)>,
    active: ActiveReplicaWord,
    retention: i64,
}

fn state_of(segment: &Segment) -> State {
    let mut views = Vec::new();
    segment.for_each_section(SectionsChosen::Any, |v| {
        views.push((v.id.to_vec(), v.section, v.expiration, v.size_bytes));
    });
    let mut sections = BTreeMap::new();
    let mut used = 0;
    for (id, section, expiration, size) in views {
        let (data, meta) = segment.read_to_vec(section).expect("readable section");
        assert_eq!(data.len() as u64, size, "{id:?}: size");
        used += size;
        let old = sections.insert(id.clone(), (data, meta.version, expiration));
        assert!(old.is_none(), "{id:?} listed twice");
    }
    assert_eq!(
        segment.usage(),
        (sections.len() as u32, used),
        "counters (sections, memory used)"
    );
    let h = segment.header();
    State {
        sections,
        active: ActiveReplicaWord::from(h.active_replica.load(Ordering::Acquire)),
        retention: h.retention_ns.load(Ordering::SeqCst),
    }
}

/// Checks a replica against the segment's state.
fn check_replica(replica: &Replica, state: &State, what: &str) {
    assert!(replica.staged.is_none(), "{what}: stages left over");
    let sections: BTreeMap<_, _> = replica
        .sections
        .iter()
        .map(|(id, s)| (id.clone(), (s.data.clone(), s.version, s.expiration)))
        .collect();
    if sections != state.sections {
        let ids = |m: &BTreeMap<Vec<u8>, (Vec<u8>, u64, Time)>| -> Vec<_> {
            m.iter()
                .map(|(id, (d, v, e))| (String::from_utf8_lossy(id).into_owned(), d.len(), *v, e.0))
                .collect()
        };
        panic!(
            "{what}: the replica's sections differ from the segment's\n  replica: {:?}\n  segment: {:?}",
            ids(&sections),
            ids(&state.sections)
        );
    }
    assert_eq!(
        (replica.active_set, replica.active_node, replica.term),
        (state.active.set, state.active.node, state.active.term),
        "{what}: active replica (set, node, term)"
    );
    assert_eq!(replica.retention, state.retention, "{what}: retention");
}

/// A fuzzy snapshot being taken.
struct Fuzzy {
    resume: u64,
    start_seq: u64,
    /// The checkpoint-wide state `(active, retention, state_seq)`, once read.
    state: Option<(ActiveReplicaWord, Time, u64)>,
    /// The next slot to copy.
    next_slot: u32,
    sections: Vec<SnapshotSection>,
}

struct Harness<'a> {
    segment: &'a Segment,
    attrs: CreationAttributes,
    /// The whole log from seq 1; `None` once a call outgrew the ring.
    reference: Option<Replay<'a>>,
    replays: Vec<Replay<'a>>,
    fuzzy: Option<Fuzzy>,
    standby: Option<Replay<'a>>,
    incarnation: u64,
    snapshots: u32,
    dropped: u32,
}

impl<'a> Harness<'a> {
    fn new(segment: &'a Segment, name: &CheckpointName) -> Self {
        let incarnation = segment.header().incarnation;
        let mut reference = Replay {
            what: "reference".into(),
            consumer: segment.consumer(Some(0)),
            replica: Replica::empty(),
            snapshot: None,
            incarnation,
        };
        let first = next_owned(&mut reference.consumer)
            .expect("log readable")
            .expect("the creation frame");
        let h = first.header;
        assert_eq!(
            (h.kind, h.seq, h.term, h.flags, h.version, &first.id[..]),
            (FrameKind::CheckpointCreated, 1, 1, 0, 0, name.as_bytes()),
            "the first frame"
        );
        assert_eq!(
            first.data,
            ckpt_core::frame::encode_created(segment.attributes(), segment.geometry().log_bytes),
            "the creation frame's attributes"
        );
        reference
            .replica
            .take(&first, &|_| false, false, "reference");
        Harness {
            segment,
            attrs: *segment.attributes(),
            reference: Some(reference),
            replays: Vec::new(),
            fuzzy: None,
            standby: None,
            incarnation,
            snapshots: 0,
            dropped: 0,
        }
    }

    /// The common operations' view of the primary.
    fn driver(&self) -> Driver<'_> {
        Driver {
            segment: self.segment,
            attrs: self.attrs,
        }
    }

    fn target(&self, b: u8) -> Option<SectionRef> {
        self.driver().target(b)
    }

    fn run(&mut self, op: Op, input: &mut Bytes<'_>) {
        let s = self.segment;
        match op {
            Op::Common(common) => self.driver().run(common, input),
            Op::Snapshot => self.snapshot(),
            Op::FuzzyBegin => {
                let late = input.u8() & 1 != 0;
                if self.fuzzy.is_none() {
                    let state = (!late).then(|| self.state_now());
                    trace!(
                        "fuzzy begin at tail {} seq {} (state {})",
                        s.log_tail(),
                        s.last_seq(),
                        if late { "late" } else { "now" }
                    );
                    self.fuzzy = Some(Fuzzy {
                        resume: s.log_tail(),
                        start_seq: s.last_seq(),
                        state,
                        next_slot: 0,
                        sections: Vec::new(),
                    });
                }
            }
            Op::FuzzyScan => {
                let slots = 1 + input.u8() as u32 % self.attrs.sections_max;
                self.fuzzy_scan(slots);
            }
            Op::Resync => self.resync(),
            Op::Follow => self.follow_standby(),
            Op::Churn => {
                let target = self.target(input.u8());
                let len = input.u16();
                let times = 1 + input.u8() % 16;
                if let Some(t) = target {
                    for i in 0..times {
                        let len = (len as u64 % (self.attrs.section_bytes_max + 1)) as usize;
                        let data = vec![i; len];
                        let got = s.write(t, None, &data);
                        trace!("churn {t:?} {len} bytes: {got:?}");
                        self.follow();
                    }
                }
            }
        }
        self.follow();
    }

    /// The checkpoint-wide state, as `snapshot` reads it.
    fn state_now(&self) -> (ActiveReplicaWord, Time, u64) {
        let s = self.segment.snapshot().expect("snapshot");
        (s.active_replica, s.retention, s.state_seq)
    }

    /// The reference and the snapshot replays follow the log up to now.
    fn follow(&mut self) {
        if let Some(reference) = &mut self.reference {
            if reference.drain().is_err() {
                trace!("reference lapped: a call outgrew the ring");
                self.reference = None;
            }
        }
        let before = self.replays.len();
        self.replays.retain_mut(|r| match r.drain() {
            Ok(()) => true,
            Err(e) => {
                trace!("{} dropped: {e}", r.what);
                false
            }
        });
        self.dropped += (before - self.replays.len()) as u32;
    }

    fn add_replay(&mut self, snapshot: Snapshot, what: String) {
        if self.replays.len() >= REPLAYS_MAX {
            return;
        }
        let mut replay = Replay {
            what,
            consumer: self.segment.consumer(Some(snapshot.resume)),
            replica: Replica::from_snapshot(&snapshot),
            snapshot: Some(snapshot),
            incarnation: self.incarnation,
        };
        match replay.drain() {
            Ok(()) => self.replays.push(replay),
            Err(e) => {
                trace!("{} dropped at once: {e}", replay.what);
                self.dropped += 1;
            }
        }
    }

    /// A quiescent snapshot: the segment as it is, with the sequence numbers
    /// the reference saw.
    fn snapshot(&mut self) {
        let s = self.segment;
        let snap = s.snapshot().expect("snapshot");
        let last = s.last_seq();
        assert_eq!(
            (snap.resume, snap.start_seq, snap.end_seq),
            (s.log_tail(), last, last + 1),
            "a quiescent snapshot's positions"
        );
        let state = state_of(s);
        let copied: BTreeMap<_, _> = snap
            .sections
            .iter()
            .map(|c| (c.id.clone(), (c.data.clone(), c.version, c.expiration)))
            .collect();
        assert!(
            copied == state.sections,
            "a quiescent snapshot differs from the segment"
        );
        assert_eq!(
            (snap.active_replica, snap.retention.0),
            (state.active, state.retention),
            "a quiescent snapshot's checkpoint-wide state"
        );
        if let Some(reference) = &self.reference {
            let r = &reference.replica;
            for c in &snap.sections {
                assert_eq!(
                    Some(c.seqs),
                    r.sections.get(&c.id).map(|s| s.seqs),
                    "{:?}: the seqs a snapshot records are not those of its frames",
                    c.id
                );
            }
            assert_eq!(snap.state_seq, r.state_seq, "the snapshot's state_seq");
        }
        self.snapshots += 1;
        let what = format!(
            "snapshot {} (resume {}, seq {last})",
            self.snapshots, snap.resume
        );
        trace!("{what}");
        self.add_replay(snap, what);
    }

    /// The fuzzy snapshot copies its next `slots` slots, as `snapshot`'s scan
    /// reads them; once it has all, it is complete and replayed.
    fn fuzzy_scan(&mut self, slots: u32) {
        let Some(fuzzy) = &mut self.fuzzy else { return };
        let s = self.segment;
        if fuzzy.state.is_none() {
            let snap = s.snapshot().expect("snapshot");
            fuzzy.state = Some((snap.active_replica, snap.retention, snap.state_seq));
        }
        // What each slot holds now.
        let now = s.snapshot().expect("snapshot");
        let mut by_slot = BTreeMap::new();
        for c in now.sections {
            let section = s.lookup(&c.id).unwrap().expect("a copied section is live");
            by_slot.insert(section.slot, c);
        }
        let end = (fuzzy.next_slot + slots).min(self.attrs.sections_max);
        for slot in fuzzy.next_slot..end {
            if let Some(c) = by_slot.remove(&slot) {
                trace!(
                    "fuzzy scan slot {slot}: {:?} v{} {:?}",
                    c.id,
                    c.version,
                    c.seqs
                );
                fuzzy.sections.push(c);
            }
        }
        fuzzy.next_slot = end;
        if end < self.attrs.sections_max {
            return;
        }
        let fuzzy = self.fuzzy.take().expect("in progress");
        let mut sections = fuzzy.sections;
        // As `snapshot` does: of two copies of one id, the newer incarnation.
        sections.sort_by(|a, b| a.id.cmp(&b.id).then(b.seqs.newest().cmp(&a.seqs.newest())));
        sections.dedup_by(|later, first| later.id == first.id);
        let (active_replica, retention, state_seq) = fuzzy.state.expect("read");
        let end_seq = s.last_seq() + 1;
        if s.log_tail() - fuzzy.resume > s.geometry().log_bytes {
            // `snapshot` would retry: its resume point is gone.
            trace!("fuzzy snapshot lapped");
            self.dropped += 1;
            return;
        }
        let Ok(resume_seq) = s.seq_at(fuzzy.resume) else {
            trace!("fuzzy snapshot: no frame number at its resume point");
            self.dropped += 1;
            return;
        };
        let snap = Snapshot {
            resume: fuzzy.resume,
            resume_seq,
            start_seq: fuzzy.start_seq,
            end_seq,
            sections,
            active_replica,
            retention,
            state_seq,
            // (Not used by the replay this target checks.)
            unlinked: false,
        };
        self.snapshots += 1;
        let what = format!(
            "fuzzy snapshot {} (resume {}, seqs {}..{end_seq})",
            self.snapshots, snap.resume, snap.start_seq
        );
        trace!("{what}");
        self.add_replay(snap, what);
    }

    /// The standby resynchronizes through its consumer.
    fn resync(&mut self) {
        let mut consumer = self
            .standby
            .take()
            .map(|s| s.consumer)
            .unwrap_or_else(|| self.segment.consumer(None));
        let snap = consumer.resync().expect("resync");
        trace!("standby resync at {}", snap.resume);
        self.standby = Some(Replay {
            what: "standby".into(),
            consumer,
            replica: Replica::from_snapshot(&snap),
            snapshot: None,
            incarnation: self.incarnation,
        });
    }

    /// The standby follows its consumer up to now; it resynchronizes when it
    /// lags, as a user does.
    fn follow_standby(&mut self) {
        let Some(standby) = &mut self.standby else {
            return;
        };
        loop {
            let frame = match next_owned(&mut standby.consumer) {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(LogError::Lagged { .. }) => {
                    trace!("standby lagged");
                    return self.resync();
                }
                Err(e) => panic!("standby: {e}"),
            };
            assert_eq!(frame.header.incarnation, self.incarnation);
            // The consumer itself skips what its snapshot holds.
            standby.replica.take(&frame, &|_| false, true, "standby");
        }
    }

    /// Completes what is in progress and checks every replica.
    fn finish(mut self) {
        if self.fuzzy.is_some() {
            self.fuzzy_scan(self.attrs.sections_max);
        }
        self.follow();
        self.follow_standby();
        let state = state_of(self.segment);
        if let Some(reference) = &self.reference {
            check_replica(&reference.replica, &state, "reference");
            assert_eq!(reference.replica.last_seq, self.segment.last_seq());
        }
        for replay in &self.replays {
            check_replica(&replay.replica, &state, &replay.what);
        }
        if let Some(standby) = &self.standby {
            check_replica(&standby.replica, &state, "standby");
        }
        trace!(
            "done: {} snapshots, {} replays checked, {} dropped (lapped)",
            self.snapshots,
            self.replays.len(),
            self.dropped
        );
    }
}

/// Seeds: the counterexample of the catch-up issue, and a few operation mixes.
fn write_seeds(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create seed directory");
    for (name, bytes) in seeds() {
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
    }
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        // Section "a" of 200 bytes (v1); a fuzzy snapshot notes its resume
        // point; write 10 bytes at offset 100 (v2); overwrite with 5 bytes
        // (v3); the copy is taken now, at v3. Replaying v2 onto the copy would
        // make a state that never existed (its version does not follow v3):
        // catch-up must skip it (and v3).
        (
            "write-then-overwrite",
            vec![
                0x00, // shape 0, default ring, default flags
                0, 0, 0, 200, 0, 0x10, // create "a", never expires, 200 bytes
                9, 0, // fuzzy begin
                1, 0, 100, 0, 10, 0, 0x20, // write "a" at 100, 10 bytes
                2, 0, 5, 0, 0x30, 0, // overwrite "a", 5 bytes
                10, 3, // fuzzy scan: all 4 slots
                8, // and a quiescent snapshot
            ],
        ),
        // Large sections on the smallest ring: staged frames, a standby.
        (
            "staged",
            vec![
                0x09, // shape 1, smallest ring
                11,   // standby resync
                0, 0, 0, 0x20, 0x4e, 1, // create "a", 20 000 bytes
                9, 0, // fuzzy begin
                1, 0, 10, 0, 0x10, 0x27, 2, // write "a" at 10, 10 000 bytes
                0, 1, 0, 0x30, 0x75, 3,  // create "b", 30 000 % 20 001 bytes
                12, // standby follows
                10, 0, 10, 0, 10, 0, // fuzzy scan, a slot at a time
            ],
        ),
        // Active replica and retention changes around a fuzzy snapshot.
        (
            "checkpoint-state",
            vec![
                0x10, // shape 0, asynchronous, not collocated
                7, 4, // active replica 4
                9, 1, // fuzzy begin, state read late
                6, 30, 0, // retention 30 s
                7, 5, // active replica 5
                0, 2, 0, 8, 0, 1, // create "c"
                10, 3,  // fuzzy scan: all 4 slots
                8,  // a quiescent snapshot
                11, // standby resync
                7, 6,  // active replica 6
                12, // standby follows
            ],
        ),
    ]
}

fuzz_target!(
    init: {
        if let Some(dir) = std::env::var_os("CKPT_FUZZ_SEED_DIR") {
            write_seeds(Path::new(&dir));
        }
    },
    |data: &[u8]| {
        let mut input = Bytes(data);
        let config_byte = input.u8();
        let (sections_max, section_bytes_max, section_id_bytes_max, checkpoint_bytes) =
            SHAPES[(config_byte & 7) as usize % SHAPES.len()];
        let small_ring = config_byte & 8 != 0;
        let flags = match (config_byte >> 4) & 3 {
            0 => CreationFlags::new(UpdateMode::ActiveReplica, true),
            1 => CreationFlags::new(UpdateMode::ActiveReplicaWeak, false),
            2 => CreationFlags::new(UpdateMode::AllReplicas, false),
            _ => CreationFlags::new(UpdateMode::ActiveReplica, false),
        };
        let attrs = CreationAttributes {
            flags,
            checkpoint_bytes,
            section_id_bytes_max,
            ..CreationAttributes::new(sections_max, section_bytes_max)
        };
        let dir = scratch_dir();
        let config = Config {
            log_bytes: small_ring.then_some(LOG_BYTES_MIN),
            // Recorded as the active replica's node when the checkpoint places
            // one at creation (the creation frame says which).
            node_id: 7,
            ..Config::with_dir(dir.path())
        };
        let name = CheckpointName::new("catchup").unwrap();
        let open = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
        let segment = Segment::open(&config, &name, open, Some(&attrs)).expect("create segment");
        trace!("--- {attrs:?}, ring {}", segment.geometry().log_bytes);
        let mut harness = Harness::new(&segment, &name);
        let mut ops = 0;
        while !input.0.is_empty() && ops < OPS_MAX {
            let op = OPS[input.u8() as usize % OPS.len()];
            harness.run(op, &mut input);
            ops += 1;
        }
        harness.finish();
    }
);
