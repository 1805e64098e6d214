//! The checkpoint operations of a real segment against an in-memory model.
//!
//! The input decodes (with `arbitrary`) into a checkpoint shape and a sequence
//! of operations. Each operation runs on the segment and on the model, and both
//! must agree on success or the exact error, on the data read, on lookups, on
//! iteration and on usage. Every successful mutation must append the frames
//! describing it to the delta log (format 2): sequence numbers dense from the
//! `CheckpointCreated` frame (seq 1, with the checkpoint's attributes), the
//! elements of a `write_many` grouped with `FLAG_MORE`, and data too large for
//! one frame sent ahead as `Stage` pieces completed by the mutation's own frame
//! (`FLAG_STAGED`). A replica fed only by the log (reassembling staged data)
//! must end up equal to the model. A call whose frames outgrow the whole ring
//! (a `write_many` of large sections) laps even a consumer that keeps up: only
//! then may the replica resynchronize from a snapshot, which must equal the
//! model. Finally the segment's own snapshot and a second opener must see the
//! same sections.
//!
//! Expirations are "never" or far in the future: a section whose expiration
//! passes vanishes on a timer the model does not have.
//!
//! With `CKPT_FUZZ_SEED_DIR` set, start-up writes seed inputs there (encoded
//! the way `arbitrary` decodes them, and checked by decoding them back): the
//! large shape with staged creates, writes and overwrites, and a vector write
//! larger than the ring, which only a resynchronization can follow.
//! `CKPT_FUZZ_TRACE=1` prints each operation and the frames it logged.

#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use ckpt_core::error::{ExpirationSetError, SectionCreateError, SectionDeleteError, WriteError};
use ckpt_core::frame::{FrameHeader, FrameKind, Mutation, FLAG_MORE, FLAG_STAGED};
use ckpt_core::{CheckpointName, CreationAttributes, OpenFlags, SectionsChosen, Time};
use ckpt_fuzz::scratch_dir;
use ckpt_shm::layout::LOG_BYTES_MIN;
use ckpt_shm::log::{frame_bytes_max, LogError};
use ckpt_shm::slot::ReadFail;
use ckpt_shm::{Config, Consumer, SectionRef, Segment, Snapshot, WriteElement};
use libfuzzer_sys::fuzz_target;

/// Checkpoint shapes: `(sections_max, section_bytes_max, section_id_bytes_max,
/// checkpoint_bytes)`.
const SHAPES: [(u32, u64, u64, u64); 6] = [
    // Every limit reachable with a few operations.
    (4, 32, 4, 128),
    // checkpointSize binds long before maxSections.
    (4, 32, 4, 48),
    // maxSections 1: only the default section (empty id).
    (1, 32, 4, 32),
    // Generated ids are truncated to 2 bytes.
    (3, 16, 2, 48),
    // 1-byte ids: generated ones wrap around and meet the explicit ones.
    (3, 8, 1, 16),
    // Sections larger than a quarter of the (smallest) log ring: their data
    // goes as Stage frames, and the ring wraps after a few writes.
    (2, 20_000, 4, 40_000),
];

/// Operations per input, so that one execution stays fast.
const OPS_MAX: usize = 200;
/// Elements per `write_many`.
const WRITE_ELEMENTS_MAX: usize = 4;

/// 2100-01-01: far enough that no section expires while the fuzzer runs.
const FAR_FUTURE: Time = Time::from_secs(4_102_444_800);

#[derive(Arbitrary, Debug)]
struct Input {
    shape: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Create {
        /// `None`: let the segment generate the id.
        id: Option<Id>,
        expiration: Expiry,
        data: Data,
    },
    Write {
        target: Target,
        offset: u16,
        data: Data,
    },
    Overwrite {
        target: Target,
        data: Data,
        /// Through `overwrite_with` rather than `write(.., None, ..)`.
        zero_copy: bool,
    },
    /// Many overwrites in one step, so that short inputs lap the log ring.
    Churn {
        target: Target,
        len: u16,
        times: u8,
    },
    /// `write_many`: `None` offsets overwrite.
    WriteMany {
        elements: Vec<(Target, Option<u16>, Data)>,
    },
    Delete {
        target: Target,
    },
    SetExpiration {
        target: Target,
        expiration: Expiry,
    },
    Read {
        target: Target,
        offset: u16,
        len: u16,
    },
    /// `read_to_vec`.
    ReadAll {
        target: Target,
    },
    Lookup {
        id: Id,
    },
    Iterate {
        chosen: Chosen,
    },
    Sweep,
}

/// Ids from a small alphabet, so that operations meet the same sections often.
#[derive(Arbitrary, Debug)]
enum Id {
    /// Up to 6 letters of `abc` (longer than some shapes allow).
    Text(Vec<u8>),
    /// What the segment generates: `n` big-endian, truncated like its ids.
    Number(u8),
    /// The empty id: the default section's (`SA_CKPT_DEFAULT_SECTION_ID`).
    Empty,
}

/// How an operation names its section.
#[derive(Arbitrary, Debug)]
enum Target {
    /// Looked up first; operations on absent ids are lookups only.
    Id(Id),
    /// Any reference ever handed out, perhaps deleted since.
    Handle(u8),
    /// A reference the segment never handed out.
    Forged { slot: u8, gen: u32 },
}

#[derive(Arbitrary, Debug)]
enum Expiry {
    Never,
    Far(u16),
    Negative,
}

#[derive(Arbitrary, Debug)]
enum Data {
    Bytes(Vec<u8>),
    /// Long data from a few input bytes (lengths wrap a little past the limit).
    Fill {
        byte: u8,
        len: u16,
    },
}

#[derive(Arbitrary, Debug)]
enum Chosen {
    Forever,
    AtOrBefore(Expiry),
    AtOrAfter(Expiry),
    Corrupted,
    Any,
}

impl Expiry {
    fn time(&self) -> Time {
        match self {
            Expiry::Never => Time::END,
            Expiry::Far(s) => Time(FAR_FUTURE.0 + *s as i64 * Time::SECOND.0),
            Expiry::Negative => Time(-1),
        }
    }
}

impl Chosen {
    fn get(&self) -> SectionsChosen {
        match self {
            Chosen::Forever => SectionsChosen::Forever,
            Chosen::AtOrBefore(e) => SectionsChosen::ExpiringAtOrBefore(e.time()),
            Chosen::AtOrAfter(e) => SectionsChosen::ExpiringAtOrAfter(e.time()),
            Chosen::Corrupted => SectionsChosen::Corrupted,
            Chosen::Any => SectionsChosen::Any,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Section {
    data: Vec<u8>,
    expiration: Time,
    version: u64,
}

/// The frame a successful mutation must log.
#[derive(Debug, Clone)]
struct Expected {
    kind: FrameKind,
    id: Vec<u8>,
    arg: i64,
    data: Vec<u8>,
    version: u64,
}

/// The model: live sections by id, with the reference the segment gave.
type Sections = BTreeMap<Vec<u8>, (SectionRef, Section)>;

fn used(model: &Sections) -> u64 {
    model.values().map(|(_, s)| s.data.len() as u64).sum()
}

/// The live section `handle` refers to.
fn id_of(model: &Sections, handle: SectionRef) -> Option<Vec<u8>> {
    model
        .iter()
        .find(|(_, (h, _))| *h == handle)
        .map(|(id, _)| id.clone())
}

struct Harness<'a> {
    segment: &'a Segment,
    attrs: CreationAttributes,
    model: Sections,
    /// Every reference ever handed out.
    handles: Vec<SectionRef>,
    /// The model of the segment's id generator.
    generated: u32,
    consumer: Consumer<'a>,
    /// Sections as the delta log tells them.
    replica: BTreeMap<Vec<u8>, Section>,
    /// The sequence number of the last frame followed.
    last_seq: u64,
    /// The checkpoint's incarnation, in every frame.
    incarnation: u64,
}

/// A frame copied out of the consumer.
struct Logged {
    header: FrameHeader,
    id: Vec<u8>,
    data: Vec<u8>,
}

impl<'a> Harness<'a> {
    fn new(segment: &'a Segment, name: &CheckpointName, attrs: &CreationAttributes) -> Self {
        let incarnation = segment.header().incarnation;
        assert_ne!(incarnation, 0, "incarnations are never 0");
        let mut h = Harness {
            segment,
            attrs: *segment.attributes(),
            model: BTreeMap::new(),
            handles: Vec::new(),
            generated: 0,
            consumer: segment.consumer(Some(0)),
            replica: BTreeMap::new(),
            last_seq: 0,
            incarnation,
        };
        assert_eq!(h.attrs, *attrs, "the segment's attributes");
        // The log begins with the checkpoint's creation: every attribute, so
        // that a replica can be made from the log alone.
        let created = h
            .next_logged()
            .expect("log readable")
            .expect("a new checkpoint's log holds its creation");
        let c = created.header;
        assert_eq!(
            (c.kind, c.seq, c.term, c.flags, c.arg, c.version),
            (FrameKind::CheckpointCreated, 1, 1, 0, 0, 0),
            "the first frame"
        );
        h.check_frame(&c);
        let frame = ckpt_core::frame::Frame {
            header: c,
            id: &created.id,
            data: &created.data,
        };
        match frame.mutation() {
            Some(Mutation::CheckpointCreated {
                name: logged,
                attributes,
                active_replica,
                ..
            }) => {
                assert_eq!(logged, name.as_bytes(), "the logged name");
                assert_eq!(attributes, *attrs, "the logged attributes");
                // Collocated: no active replica is placed at creation.
                assert_eq!(active_replica, None, "the logged active replica");
            }
            other => panic!("the first frame records {other:?}"),
        }
        if h.attrs.has_default_section() {
            // Made by the creation frame: a replica makes it from that frame.
            h.replica.insert(
                Vec::new(),
                Section {
                    data: Vec::new(),
                    expiration: Time::END,
                    version: 1,
                },
            );
            let handle = segment.lookup(b"").unwrap().expect("default section");
            let section = Section {
                data: Vec::new(),
                expiration: Time::END,
                version: 1,
            };
            h.model.insert(Vec::new(), (handle, section));
            h.handles.push(handle);
        }
        assert_eq!(segment.last_seq(), 1);
        h
    }

    /// The next frame, copied out of the consumer.
    fn next_logged(&mut self) -> Result<Option<Logged>, LogError> {
        Ok(self.consumer.next_frame()?.map(|f| Logged {
            header: f.header,
            id: f.id.to_vec(),
            data: f.data.to_vec(),
        }))
    }

    /// What every frame must have: the next sequence number, the checkpoint's
    /// incarnation, the current term, a size the ring takes.
    fn check_frame(&mut self, h: &FrameHeader) {
        assert_eq!(h.seq, self.last_seq + 1, "sequence numbers are dense");
        self.last_seq = h.seq;
        assert_eq!(h.incarnation, self.incarnation, "incarnation of {h:?}");
        // No active replica changes here: the term stays 1.
        assert_eq!(h.term, 1, "term of {h:?}");
        assert!(h.time_ns > 0, "time of {h:?}");
        let max = frame_bytes_max(self.segment.geometry().log_bytes as usize);
        assert!(
            h.frame_bytes() <= max,
            "{h:?} is larger than the ring takes"
        );
    }

    fn id_width(&self) -> usize {
        (self.attrs.section_id_bytes_max as usize).min(4)
    }

    fn id(&self, id: &Id) -> Vec<u8> {
        match id {
            Id::Text(t) => t.iter().take(6).map(|b| b'a' + b % 3).collect(),
            Id::Number(n) => (*n as u32).to_be_bytes()[4 - self.id_width()..].to_vec(),
            Id::Empty => Vec::new(),
        }
    }

    fn data(&self, data: &Data) -> Vec<u8> {
        match data {
            Data::Bytes(b) => b.clone(),
            Data::Fill { byte, len } => {
                vec![*byte; (*len as u64 % (self.attrs.section_bytes_max + 3)) as usize]
            }
        }
    }

    /// An offset from the input: up to a little past the largest section.
    fn offset(&self, raw: u16) -> u64 {
        raw as u64 % (self.attrs.section_bytes_max + 3)
    }

    /// The section reference an operation uses, if there is one to use.
    fn resolve(&self, target: &Target) -> Option<SectionRef> {
        match target {
            Target::Id(id) => self.lookup(&self.id(id)),
            Target::Handle(i) => {
                (!self.handles.is_empty()).then(|| self.handles[*i as usize % self.handles.len()])
            }
            Target::Forged { slot, gen } => Some(SectionRef {
                slot: *slot as u32 % (self.attrs.sections_max + 2),
                gen: *gen,
            }),
        }
    }

    fn lookup(&self, id: &[u8]) -> Option<SectionRef> {
        let found = self.segment.lookup(id).expect("no concurrent compaction");
        let expected = self.model.get(id).map(|(h, _)| *h);
        assert_eq!(found, expected, "lookup {id:?}");
        found
    }

    /// The default section can be neither deleted nor re-expired; the ckpt API
    /// refuses both (SA_AIS_ERR_INVALID_PARAM) before calling ckpt-shm, which
    /// does not check, so the model leaves them out.
    fn is_default_section(&self, handle: SectionRef) -> bool {
        self.attrs.has_default_section()
            && id_of(&self.model, handle).is_some_and(|id| id.is_empty())
    }

    fn run(&mut self, op: &Op) {
        if trace() {
            eprintln!("{op:?}");
        }
        match op {
            Op::Create {
                id,
                expiration,
                data,
            } => {
                let id = id.as_ref().map(|i| self.id(i));
                let data = self.data(data);
                self.create(id.as_deref(), expiration.time(), data);
            }
            Op::Write {
                target,
                offset,
                data,
            } => {
                let Some(handle) = self.resolve(target) else {
                    return;
                };
                let element = (handle, Some(self.offset(*offset)), self.data(data));
                let got = self.segment.write(handle, element.1, &element.2);
                self.check_writes(&[element], got.map_err(|e| (0, e)));
            }
            Op::Overwrite {
                target,
                data,
                zero_copy,
            } => {
                let Some(handle) = self.resolve(target) else {
                    return;
                };
                let data = self.data(data);
                let got = if *zero_copy {
                    self.segment
                        .overwrite_with(handle, data.len(), |d| d.copy_from_slice(&data))
                } else {
                    self.segment.write(handle, None, &data)
                };
                self.check_writes(&[(handle, None, data)], got.map_err(|e| (0, e)));
            }
            Op::Churn { target, len, times } => {
                let Some(handle) = self.resolve(target) else {
                    return;
                };
                for i in 0..=*times % 16 {
                    let data = self.data(&Data::Fill { byte: i, len: *len });
                    let got = self.segment.write(handle, None, &data);
                    self.check_writes(&[(handle, None, data)], got.map_err(|e| (0, e)));
                }
            }
            Op::WriteMany { elements } => {
                let Some(elements) = elements
                    .iter()
                    .take(WRITE_ELEMENTS_MAX)
                    .map(|(target, offset, data)| {
                        let offset = offset.map(|o| self.offset(o));
                        Some((self.resolve(target)?, offset, self.data(data)))
                    })
                    .collect::<Option<Vec<_>>>()
                else {
                    return;
                };
                let batch: Vec<_> = elements
                    .iter()
                    .map(|(section, offset, data)| WriteElement {
                        section: *section,
                        offset: *offset,
                        data,
                    })
                    .collect();
                let got = self.segment.write_many(&batch);
                self.check_writes(&elements, got);
            }
            Op::Delete { target } => {
                let Some(handle) = self.resolve(target) else {
                    return;
                };
                if self.is_default_section(handle) {
                    return;
                }
                let got = self.segment.delete_section(handle);
                match id_of(&self.model, handle) {
                    Some(id) => {
                        assert_eq!(got, Ok(()), "delete {id:?}");
                        let (_, s) = self.model.remove(&id).unwrap();
                        self.follow_call(vec![Expected {
                            kind: FrameKind::Delete,
                            id,
                            arg: 0,
                            data: Vec::new(),
                            version: s.version,
                        }]);
                    }
                    None => assert_eq!(got, Err(SectionDeleteError::NotExist), "{handle:?}"),
                }
            }
            Op::SetExpiration { target, expiration } => {
                let Some(handle) = self.resolve(target) else {
                    return;
                };
                if self.is_default_section(handle) {
                    return;
                }
                let expiration = expiration.time();
                let got = self.segment.set_expiration(handle, expiration);
                let id = id_of(&self.model, handle);
                match (expiration.0 < 0, id) {
                    (true, _) => assert_eq!(got, Err(ExpirationSetError::InvalidExpiration)),
                    (false, None) => assert_eq!(got, Err(ExpirationSetError::NotExist)),
                    (false, Some(id)) => {
                        assert_eq!(got, Ok(()), "set expiration of {id:?}");
                        let (_, s) = self.model.get_mut(&id).unwrap();
                        s.expiration = expiration;
                        let version = s.version;
                        self.follow_call(vec![Expected {
                            kind: FrameKind::ExpirationSet,
                            id,
                            arg: expiration.0,
                            data: Vec::new(),
                            version,
                        }]);
                    }
                }
            }
            Op::Read {
                target,
                offset,
                len,
            } => {
                let Some(handle) = self.resolve(target) else {
                    return;
                };
                let offset = self.offset(*offset);
                let mut buf =
                    vec![0u8; *len as usize % (self.attrs.section_bytes_max as usize + 3)];
                let got = self.segment.read(handle, offset, &mut buf);
                match id_of(&self.model, handle) {
                    None => assert_eq!(got, Err(ReadFail::Gone), "read of {handle:?}"),
                    Some(id) => {
                        let s = &self.model[&id].1;
                        let (n, meta) = got.unwrap_or_else(|e| panic!("read {id:?}: {e:?}"));
                        let from = (offset as usize).min(s.data.len());
                        let want = &s.data[from..(from + buf.len()).min(s.data.len())];
                        assert_eq!(&buf[..n], want, "read {id:?} at {offset}");
                        assert_eq!((meta.version, meta.size), (s.version, s.data.len() as u64));
                    }
                }
            }
            Op::ReadAll { target } => {
                let Some(handle) = self.resolve(target) else {
                    return;
                };
                let got = self.segment.read_to_vec(handle);
                match id_of(&self.model, handle) {
                    None => assert_eq!(got, Err(ReadFail::Gone), "read of {handle:?}"),
                    Some(id) => {
                        let s = &self.model[&id].1;
                        let (data, meta) = got.unwrap_or_else(|e| panic!("read {id:?}: {e:?}"));
                        assert_eq!((data, meta.version), (s.data.clone(), s.version), "{id:?}");
                    }
                }
            }
            Op::Lookup { id } => {
                self.lookup(&self.id(id));
            }
            Op::Iterate { chosen } => self.check_iteration(chosen.get()),
            Op::Sweep => assert_eq!(self.segment.sweep_expired(), Ok(0)),
        }
        assert_eq!(
            self.segment.usage(),
            (self.model.len() as u32, used(&self.model)),
            "usage after {op:?}"
        );
        assert!(
            self.consumer.next_frame().expect("log readable").is_none(),
            "{op:?} logged a frame the model did not expect"
        );
        assert_eq!(self.segment.last_seq(), self.last_seq, "after {op:?}");
    }

    fn create(&mut self, id: Option<&[u8]>, expiration: Time, data: Vec<u8>) {
        let expected = self.model_create(id, expiration, data.len() as u64);
        let got = self.segment.create_section(id, expiration, &data);
        match (got, expected) {
            (Ok((handle, got_id)), Ok(id)) => {
                assert_eq!(got_id.0, id, "generated id");
                assert!(
                    !self.handles.contains(&handle),
                    "{handle:?} was handed out before"
                );
                self.handles.push(handle);
                let section = Section {
                    data: data.clone(),
                    expiration,
                    version: 1,
                };
                self.model.insert(id.clone(), (handle, section));
                self.follow_call(vec![Expected {
                    kind: FrameKind::Create,
                    id,
                    arg: expiration.0,
                    data,
                    version: 1,
                }]);
            }
            (Err(got), Err(expected)) => assert_eq!(got, expected, "create {id:?}"),
            (got, expected) => panic!("create {id:?}: got {got:?}, model expects {expected:?}"),
        }
    }

    /// The id a create must succeed with, or its error, in ckpt-shm's order of checks.
    fn model_create(
        &mut self,
        id: Option<&[u8]>,
        expiration: Time,
        len: u64,
    ) -> Result<Vec<u8>, SectionCreateError> {
        let a = self.attrs;
        if a.has_default_section() {
            return Err(SectionCreateError::Exist);
        }
        if id.is_some_and(|i| i.len() as u64 > a.section_id_bytes_max) {
            return Err(SectionCreateError::IdTooLong);
        }
        if id.is_some_and(|i| i.is_empty()) {
            return Err(SectionCreateError::EmptyId);
        }
        if len > a.section_bytes_max {
            return Err(SectionCreateError::DataTooLarge);
        }
        if expiration.0 < 0 {
            return Err(SectionCreateError::InvalidExpiration);
        }
        if self.model.len() as u64 >= a.sections_max as u64 {
            return Err(SectionCreateError::NoSpace);
        }
        if used(&self.model) + len > a.checkpoint_bytes {
            return Err(SectionCreateError::CheckpointFull);
        }
        if let Some(id) = id {
            return if self.model.contains_key(id) {
                Err(SectionCreateError::Exist)
            } else {
                Ok(id.to_vec())
            };
        }
        // The generator tries maxSections + 1 counter values for a free id.
        let width = self.id_width();
        for _ in 0..=a.sections_max {
            self.generated += 1;
            let candidate = &self.generated.to_be_bytes()[4 - width..];
            if !self.model.contains_key(candidate) {
                return Ok(candidate.to_vec());
            }
        }
        Err(SectionCreateError::NoSpace)
    }

    /// Checks writes (`offset: Some`) and overwrites (`None`), applied in
    /// order under one claim, that returned `got`.
    fn check_writes(
        &mut self,
        elements: &[(SectionRef, Option<u64>, Vec<u8>)],
        got: Result<(), (usize, WriteError)>,
    ) {
        match (got, self.model_writes(elements)) {
            (Ok(()), Ok((model, frames))) => {
                self.model = model;
                self.follow_call(frames);
            }
            (Err(got), Err(expected)) => assert_eq!(got, expected, "writes {elements:?}"),
            (got, expected) => panic!(
                "writes {elements:?}: got {got:?}, model expects {:?}",
                expected.map(|_| ())
            ),
        }
    }

    /// The model after `elements`, each applied to the result of the ones
    /// before it, and the frames they log; or the first element that fails,
    /// which leaves the model as it was (the ckpt API's contract for
    /// `saCkptCheckpointWrite`: in order, all or nothing).
    fn model_writes(
        &self,
        elements: &[(SectionRef, Option<u64>, Vec<u8>)],
    ) -> Result<(Sections, Vec<Expected>), (usize, WriteError)> {
        let mut model = self.model.clone();
        let mut frames = Vec::new();
        for (i, (handle, offset, data)) in elements.iter().enumerate() {
            let len = data.len() as u64;
            if offset.unwrap_or(0) + len > self.attrs.section_bytes_max {
                return Err((i, WriteError::TooLarge));
            }
            let id = id_of(&model, *handle).ok_or((i, WriteError::NotExist))?;
            let old = model[&id].1.data.len() as u64;
            let new = match offset {
                // Past the end: the section grows over zeros.
                Some(o) => old.max(o + len),
                None => len,
            };
            if used(&model) - old + new > self.attrs.checkpoint_bytes {
                return Err((i, WriteError::CheckpointFull));
            }
            let s = &mut model.get_mut(&id).unwrap().1;
            let at = offset.unwrap_or(0) as usize;
            s.data.resize(new as usize, 0);
            s.data[at..at + data.len()].copy_from_slice(data);
            s.version += 1;
            frames.push(Expected {
                kind: match offset {
                    Some(_) => FrameKind::Write,
                    None => FrameKind::Overwrite,
                },
                id,
                arg: at as i64,
                data: data.clone(),
                version: s.version,
            });
        }
        if frames.len() > 1 {
            if let Some(group) = self.model_group(&model, &frames) {
                // Committed together: one new version per section.
                for e in &group {
                    let before = self.model[&e.id].1.version;
                    model.get_mut(&e.id).unwrap().1.version = before + 1;
                }
                return Ok((model, group));
            }
        }
        Ok((model, frames))
    }

    /// The frames of a vector write committed as one group
    /// (`Segment::write_group`), given its elements' frames one by one:
    /// one per section, in the order of its first element, that element's
    /// own frame if it is the section's only one, else an `Overwrite` of
    /// the section's final data (`model`), each at the section's next
    /// version. `None` where the group's frames could not all wait
    /// unpublished in the ring (then the elements commit one by one).
    fn model_group(&self, model: &Sections, elements: &[Expected]) -> Option<Vec<Expected>> {
        let capacity = self.segment.geometry().log_bytes as usize;
        let max = frame_bytes_max(capacity);
        let mut group: Vec<(Expected, usize)> = Vec::new();
        for e in elements {
            match group.iter_mut().find(|(g, _)| g.id == e.id) {
                Some((g, n)) => {
                    *n += 1;
                    *g = Expected {
                        kind: FrameKind::Overwrite,
                        arg: 0,
                        data: model[&e.id].1.data.clone(),
                        ..g.clone()
                    };
                }
                None => group.push((
                    Expected {
                        version: self.model[&e.id].1.version + 1,
                        ..e.clone()
                    },
                    1,
                )),
            }
        }
        let mut total = 0usize;
        for (g, _) in &group {
            let bytes = ckpt_core::frame::frame_bytes(g.id.len(), g.data.len());
            total += bytes;
            if bytes > max || total > capacity / 2 {
                return None;
            }
        }
        Some(group.into_iter().map(|(g, _)| g).collect())
    }

    /// Takes the frames one successful call logged (`expected`: one per
    /// mutation, in order), checks them and replays them onto the replica.
    fn follow_call(&mut self, expected: Vec<Expected>) {
        let n = expected.len();
        let max = frame_bytes_max(self.segment.geometry().log_bytes as usize);
        for (i, e) in expected.into_iter().enumerate() {
            // Data staged ahead of the mutation's own frame.
            let mut staged = Vec::new();
            let mut stages = 0;
            let own = loop {
                let f = match self.next_logged() {
                    Ok(Some(f)) => f,
                    Ok(None) => panic!("a successful mutation logs a frame: {e:?}"),
                    Err(LogError::Lagged { oldest }) => return self.resync_after_lag(oldest),
                    Err(err) => panic!("log unreadable: {err}"),
                };
                self.check_frame(&f.header);
                if f.header.kind != FrameKind::Stage {
                    break f;
                }
                let h = f.header;
                // A piece goes at `arg` in the section: a write's offset plus
                // its position in the data.
                let base = if e.kind == FrameKind::Write { e.arg } else { 0 };
                assert_eq!(
                    (&f.id, h.flags, h.arg, h.version),
                    (&e.id, FLAG_MORE, base + staged.len() as i64, e.version),
                    "a stage of {e:?}"
                );
                assert!(!f.data.is_empty(), "an empty stage");
                staged.extend_from_slice(&f.data);
                stages += 1;
            };
            let h = own.header;
            let more = if i + 1 < n { FLAG_MORE } else { 0 };
            let is_staged = if staged.is_empty() { 0 } else { FLAG_STAGED };
            assert_eq!(
                (h.kind, &own.id[..], h.arg, h.version, h.flags),
                (e.kind, &e.id[..], e.arg, e.version, more | is_staged),
                "logged frame for {e:?}"
            );
            // Staged exactly when the data does not fit one frame.
            let whole = ckpt_core::frame::frame_bytes(e.id.len(), e.data.len());
            assert_eq!(
                !staged.is_empty(),
                whole > max,
                "staging of {} bytes",
                e.data.len()
            );
            if trace() {
                eprintln!(
                    "  {:?} {:?} seq {} v{} {} bytes, {stages} stage(s) first",
                    h.kind,
                    own.id,
                    h.seq,
                    h.version,
                    e.data.len()
                );
            }
            staged.extend_from_slice(&own.data);
            assert!(
                staged == e.data,
                "the logged data of {:?} {:?} differs",
                e.kind,
                e.id
            );
            replay(&mut self.replica, &h, &own.id, staged);
        }
    }

    /// The consumer lost frames though it kept up: only a call whose frames
    /// are more than the whole ring may do that. Resynchronizes the replica
    /// from a snapshot, which (nothing running concurrently) must be the model.
    fn resync_after_lag(&mut self, oldest: u64) {
        let log_bytes = self.segment.geometry().log_bytes;
        let from = self.consumer.position();
        let tail = self.segment.log_tail();
        assert!(
            tail - from > log_bytes,
            "lagged (oldest {oldest}) behind a call of {} bytes, in a ring of {log_bytes}",
            tail - from
        );
        let snapshot = self.consumer.resync().expect("snapshot");
        self.check_snapshot(&snapshot);
        self.replica = snapshot
            .sections
            .into_iter()
            .map(|s| {
                let section = Section {
                    data: s.data,
                    expiration: s.expiration,
                    version: s.version,
                };
                (s.id, section)
            })
            .collect();
        self.last_seq = snapshot.end_seq - 1;
        if trace() {
            eprintln!(
                "  lagged behind a call of {} bytes: resynchronized",
                tail - from
            );
        }
    }

    /// A snapshot taken with nothing running concurrently is the model.
    fn check_snapshot(&self, snapshot: &Snapshot) {
        let last = self.segment.last_seq();
        assert_eq!(
            (snapshot.resume, snapshot.start_seq, snapshot.end_seq),
            (self.segment.log_tail(), last, last + 1),
            "a quiescent snapshot's positions"
        );
        let copied: Vec<_> = snapshot
            .sections
            .iter()
            .map(|s| (&s.id, &s.data, s.version, s.expiration))
            .collect();
        let model: Vec<_> = self
            .model
            .iter()
            .map(|(id, (_, s))| (id, &s.data, s.version, s.expiration))
            .collect();
        assert!(copied == model, "the snapshot differs from the model");
        for s in &snapshot.sections {
            assert!(
                s.seqs.data_seq >= 1 && s.seqs.expiration_seq >= 1 && s.seqs.newest() <= last,
                "{:?}: seqs {:?} (last {last})",
                s.id,
                s.seqs
            );
        }
    }

    fn check_iteration(&self, chosen: SectionsChosen) {
        let mut seen = Vec::new();
        self.segment.for_each_section(chosen, |v| {
            seen.push((v.id.to_vec(), v.section, v.expiration, v.size_bytes));
        });
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        let expected: Vec<_> = self
            .model
            .iter()
            .filter(|(_, (_, s))| chosen.selects(s.expiration))
            .map(|(id, (h, s))| (id.clone(), *h, s.expiration, s.data.len() as u64))
            .collect();
        assert_eq!(seen, expected, "iteration of {chosen:?}");
    }

    /// The end state: the segment, the log's replica and a second opener all
    /// agree with the model.
    fn finish(&self, config: &Config, name: &CheckpointName) {
        self.check_iteration(SectionsChosen::Any);
        let sections: BTreeMap<_, _> = self
            .model
            .iter()
            .map(|(id, (_, s))| (id.clone(), s.clone()))
            .collect();
        assert_eq!(self.replica, sections, "the log's replica differs");
        self.check_snapshot(&self.segment.snapshot().expect("snapshot"));
        let other = Segment::open(config, name, OpenFlags::READ, None).expect("second opener");
        for (id, s) in &sections {
            let section = other
                .lookup(id)
                .unwrap()
                .expect("second opener finds the section");
            let (data, meta) = other.read_to_vec(section).unwrap();
            assert_eq!((&data, meta.version), (&s.data, s.version), "{id:?}");
        }
        let mut count = 0;
        other.for_each_section(SectionsChosen::Any, |_| count += 1);
        assert_eq!(count, sections.len());
    }
}

/// Applies one logged mutation (with its whole data, staged pieces included)
/// to a replica, refusing what a replica could not apply.
fn replay(replica: &mut BTreeMap<Vec<u8>, Section>, h: &FrameHeader, id: &[u8], data: Vec<u8>) {
    fn live<'r>(
        replica: &'r mut BTreeMap<Vec<u8>, Section>,
        h: &FrameHeader,
        id: &[u8],
    ) -> &'r mut Section {
        replica
            .get_mut(id)
            .unwrap_or_else(|| panic!("{:?} frame for {id:?}, which the log never created", h.kind))
    }
    let version = h.version;
    match h.kind {
        FrameKind::Create => {
            let section = Section {
                data,
                expiration: Time(h.arg),
                version,
            };
            assert!(
                replica.insert(id.to_vec(), section).is_none(),
                "created twice"
            );
        }
        FrameKind::Write => {
            let s = live(replica, h, id);
            let at = h.arg as usize;
            s.data.resize(s.data.len().max(at + data.len()), 0);
            s.data[at..at + data.len()].copy_from_slice(&data);
            s.version = version;
        }
        FrameKind::Overwrite => {
            let s = live(replica, h, id);
            s.data = data;
            s.version = version;
        }
        FrameKind::Delete => {
            assert!(replica.remove(id).is_some(), "deleted twice");
        }
        FrameKind::ExpirationSet => {
            let s = live(replica, h, id);
            assert_eq!(
                s.version, version,
                "an expiration change changed the version"
            );
            s.expiration = Time(h.arg);
        }
        other => panic!("a section mutation logged a {other:?} frame"),
    }
}

fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("CKPT_FUZZ_TRACE").is_some_and(|v| v == "1"))
}

/// Encodes inputs the way `arbitrary` (1.x, derived) decodes them: integers
/// little-endian, `bool` and `Option` as a byte (bit 0), an enum variant `k` of
/// `n` as a `u32` `x` with `x * n >> 32 == k`, a `Vec` as elements each
/// preceded by a "keep going" byte (and, except the input's last field, a 0
/// byte after them).
trait Encode {
    fn encode(&self, out: &mut Vec<u8>);
}

fn variant(out: &mut Vec<u8>, k: u64, n: u64) {
    let x = (k << 32).div_ceil(n);
    out.extend_from_slice(&(x as u32).to_le_bytes());
}

impl Encode for u8 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}

impl Encode for u16 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Encode for u32 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self as u8);
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.is_some().encode(out);
        if let Some(t) = self {
            t.encode(out);
        }
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        for t in self {
            out.push(1);
            t.encode(out);
        }
        out.push(0);
    }
}

impl<A: Encode, B: Encode, C: Encode> Encode for (A, B, C) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
        self.2.encode(out);
    }
}

impl Encode for Input {
    fn encode(&self, out: &mut Vec<u8>) {
        self.shape.encode(out);
        for op in &self.ops {
            out.push(1);
            op.encode(out);
        }
    }
}

impl Encode for Op {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u64 = 12;
        match self {
            Op::Create {
                id,
                expiration,
                data,
            } => {
                variant(out, 0, N);
                (id, expiration, data).encode(out);
            }
            Op::Write {
                target,
                offset,
                data,
            } => {
                variant(out, 1, N);
                (target, offset, data).encode(out);
            }
            Op::Overwrite {
                target,
                data,
                zero_copy,
            } => {
                variant(out, 2, N);
                (target, data, zero_copy).encode(out);
            }
            Op::Churn { target, len, times } => {
                variant(out, 3, N);
                (target, len, times).encode(out);
            }
            Op::WriteMany { elements } => {
                variant(out, 4, N);
                elements.encode(out);
            }
            Op::Delete { target } => {
                variant(out, 5, N);
                target.encode(out);
            }
            Op::SetExpiration { target, expiration } => {
                variant(out, 6, N);
                target.encode(out);
                expiration.encode(out);
            }
            Op::Read {
                target,
                offset,
                len,
            } => {
                variant(out, 7, N);
                (target, offset, len).encode(out);
            }
            Op::ReadAll { target } => {
                variant(out, 8, N);
                target.encode(out);
            }
            Op::Lookup { id } => {
                variant(out, 9, N);
                id.encode(out);
            }
            Op::Iterate { chosen } => {
                variant(out, 10, N);
                chosen.encode(out);
            }
            Op::Sweep => variant(out, 11, N),
        }
    }
}

impl<T: Encode + ?Sized> Encode for &T {
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out);
    }
}

impl Encode for Id {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Id::Text(t) => {
                variant(out, 0, 3);
                t.encode(out);
            }
            Id::Number(n) => {
                variant(out, 1, 3);
                n.encode(out);
            }
            Id::Empty => variant(out, 2, 3),
        }
    }
}

impl Encode for Target {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Target::Id(id) => {
                variant(out, 0, 3);
                id.encode(out);
            }
            Target::Handle(i) => {
                variant(out, 1, 3);
                i.encode(out);
            }
            Target::Forged { slot, gen } => {
                variant(out, 2, 3);
                slot.encode(out);
                gen.encode(out);
            }
        }
    }
}

impl Encode for Expiry {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Expiry::Never => variant(out, 0, 3),
            Expiry::Far(s) => {
                variant(out, 1, 3);
                s.encode(out);
            }
            Expiry::Negative => variant(out, 2, 3),
        }
    }
}

impl Encode for Data {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Data::Bytes(b) => {
                variant(out, 0, 2);
                b.encode(out);
            }
            Data::Fill { byte, len } => {
                variant(out, 1, 2);
                byte.encode(out);
                len.encode(out);
            }
        }
    }
}

impl Encode for Chosen {
    fn encode(&self, out: &mut Vec<u8>) {
        let expiry = |k, e: &Expiry, out: &mut Vec<u8>| {
            variant(out, k, 5);
            e.encode(out);
        };
        match self {
            Chosen::Forever => variant(out, 0, 5),
            Chosen::AtOrBefore(e) => expiry(1, e, out),
            Chosen::AtOrAfter(e) => expiry(2, e, out),
            Chosen::Corrupted => variant(out, 3, 5),
            Chosen::Any => variant(out, 4, 5),
        }
    }
}

/// Seed inputs: what a fuzzer would take long to assemble.
fn seeds() -> Vec<(&'static str, Input)> {
    let first = || Target::Id(Id::Number(1));
    let second = || Target::Id(Id::Number(2));
    let fill = |byte, len| Data::Fill { byte, len };
    let big = SHAPES.len() as u8 - 1;
    vec![
        (
            // Creates, writes and overwrites of sections larger than a frame.
            "staged",
            Input {
                shape: big,
                ops: vec![
                    Op::Create {
                        id: None,
                        expiration: Expiry::Never,
                        data: fill(7, 20_000),
                    },
                    Op::Write {
                        target: first(),
                        offset: 100,
                        data: fill(8, 19_000),
                    },
                    Op::Overwrite {
                        target: first(),
                        data: fill(9, 17_000),
                        zero_copy: true,
                    },
                    Op::Churn {
                        target: first(),
                        len: 16_500,
                        times: 3,
                    },
                    Op::ReadAll { target: first() },
                ],
            },
        ),
        (
            // A vector write of 4 x 19 000 bytes: more than the whole ring.
            "write-many-laps-the-ring",
            Input {
                shape: big,
                ops: vec![
                    Op::Create {
                        id: None,
                        expiration: Expiry::Never,
                        data: fill(1, 100),
                    },
                    Op::Create {
                        id: None,
                        expiration: Expiry::Far(5),
                        data: fill(2, 100),
                    },
                    Op::WriteMany {
                        elements: vec![
                            (first(), None, fill(3, 19_000)),
                            (second(), Some(0), fill(4, 19_000)),
                            (first(), Some(10), fill(5, 18_990)),
                            (second(), None, fill(6, 19_000)),
                        ],
                    },
                    Op::Write {
                        target: second(),
                        offset: 5,
                        data: Data::Bytes(b"after".to_vec()),
                    },
                ],
            },
        ),
    ]
}

fn write_seeds(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create seed directory");
    for (name, input) in seeds() {
        let mut bytes = Vec::new();
        input.encode(&mut bytes);
        let decoded = Input::arbitrary_take_rest(Unstructured::new(&bytes)).expect("decodes");
        assert_eq!(
            format!("{decoded:?}"),
            format!("{input:?}"),
            "seed {name} does not decode as encoded: the encoder lags the types"
        );
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
    }
}

fuzz_target!(
    init: {
        if let Some(dir) = std::env::var_os("CKPT_FUZZ_SEED_DIR") {
            write_seeds(Path::new(&dir));
        }
    },
    |input: Input| {
    let (sections_max, section_bytes_max, section_id_bytes_max, checkpoint_bytes) =
        SHAPES[input.shape as usize % SHAPES.len()];
    let attrs = CreationAttributes {
        checkpoint_bytes,
        section_id_bytes_max,
        ..CreationAttributes::new(sections_max, section_bytes_max)
    };
    let dir = scratch_dir();
    let config = Config {
        log_bytes: Some(LOG_BYTES_MIN),
        ..Config::with_dir(dir.path())
    };
    let name = CheckpointName::new("model").unwrap();
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let segment = Segment::open(&config, &name, flags, Some(&attrs)).expect("create segment");
    let mut harness = Harness::new(&segment, &name, &attrs);
    for op in input.ops.iter().take(OPS_MAX) {
        harness.run(op);
    }
    harness.finish(&config, &name);
});
