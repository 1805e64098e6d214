//! The checkpoint operations of a real segment against an in-memory model.
//!
//! The input decodes (with `arbitrary`) into a checkpoint shape and a sequence
//! of operations. Each operation runs on the segment and on the model, and both
//! must agree on success or the exact error, on the data read, on lookups, on
//! iteration and on usage. Every successful mutation must append exactly one
//! frame to the delta log, describing it; a replica fed only by the log (and,
//! for frames too large to carry their data, by reading the section) must end
//! up equal to the model. Finally a second opener must see the same sections.
//!
//! Expirations are "never" or far in the future: a section whose expiration
//! passes vanishes on a timer the model does not have.

#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use ckpt_core::error::{ExpirationSetError, SectionCreateError, SectionDeleteError, WriteError};
use ckpt_core::frame::{FrameKind, Mutation, FLAG_DATA_ELIDED};
use ckpt_core::{CheckpointName, CreationAttributes, OpenFlags, SectionsChosen, Time};
use ckpt_fuzz::scratch_dir;
use ckpt_shm::layout::LOG_BYTES_MIN;
use ckpt_shm::slot::ReadFail;
use ckpt_shm::{Config, Consumer, SectionRef, Segment, WriteElement};
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
    // Sections larger than a quarter of the (smallest) log ring: their frames
    // carry no data, and the ring wraps after a few writes.
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
}

impl<'a> Harness<'a> {
    fn new(segment: &'a Segment) -> Self {
        let mut h = Harness {
            segment,
            attrs: *segment.attributes(),
            model: BTreeMap::new(),
            handles: Vec::new(),
            generated: 0,
            consumer: segment.consumer(Some(0)),
            replica: BTreeMap::new(),
        };
        if h.attrs.has_default_section() {
            // Created with the segment, so it is in no frame.
            let handle = segment.lookup(b"").unwrap().expect("default section");
            let section = Section {
                data: Vec::new(),
                expiration: Time::END,
                version: 1,
            };
            h.replica.insert(Vec::new(), section.clone());
            h.model.insert(Vec::new(), (handle, section));
            h.handles.push(handle);
        }
        h
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
                        self.follow_log(Expected {
                            kind: FrameKind::Delete,
                            id,
                            arg: 0,
                            data: Vec::new(),
                            version: s.version,
                        });
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
                        self.follow_log(Expected {
                            kind: FrameKind::ExpirationSet,
                            id,
                            arg: expiration.0,
                            data: Vec::new(),
                            version,
                        });
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
                self.follow_log(Expected {
                    kind: FrameKind::Create,
                    id,
                    arg: expiration.0,
                    data,
                    version: 1,
                });
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
                for frame in frames {
                    self.follow_log(frame);
                }
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
                Some(o) if *o > old => return Err((i, WriteError::OffsetPastEnd)),
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
        Ok((model, frames))
    }

    /// Takes the one frame the last mutation logged, checks it and replays it.
    fn follow_log(&mut self, expected: Expected) {
        let frame = self
            .consumer
            .next_frame()
            .expect("log readable")
            .expect("a successful mutation logs a frame");
        let h = frame.header;
        let elided = h.flags & FLAG_DATA_ELIDED != 0;
        assert_eq!(
            (h.kind, frame.id, h.arg, h.data_len as usize, h.version),
            (
                expected.kind,
                &expected.id[..],
                expected.arg,
                expected.data.len(),
                expected.version
            ),
            "logged frame"
        );
        assert_eq!(
            frame.data,
            if elided { &[][..] } else { &expected.data[..] }
        );
        // An elided frame's consumer reads the section instead. It is at the
        // frame's version, or a later one if the same `write_many` wrote it
        // again: then the frames still to come lead to that version too.
        let current = elided.then(|| {
            let section = self
                .segment
                .lookup(frame.id)
                .unwrap()
                .expect("live section");
            let (data, meta) = self.segment.read_to_vec(section).expect("readable section");
            assert!(
                meta.version >= h.version,
                "section older than its elided frame"
            );
            data
        });
        let mutation = frame.mutation().expect("not a pad");
        replay(&mut self.replica, mutation, h.version, current);
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

/// Applies one logged mutation to a replica. `current` is the section's data
/// when the frame had to leave it out.
fn replay(
    replica: &mut BTreeMap<Vec<u8>, Section>,
    mutation: Mutation<'_>,
    version: u64,
    current: Option<Vec<u8>>,
) {
    fn section<'r>(
        replica: &'r mut BTreeMap<Vec<u8>, Section>,
        id: &[u8],
        version: u64,
    ) -> &'r mut Section {
        let s = replica
            .get_mut(id)
            .unwrap_or_else(|| panic!("frame for {id:?}, which the log never created"));
        s.version = version;
        s
    }
    match mutation {
        Mutation::Create {
            id,
            expiration,
            data,
        } => {
            let data = current.unwrap_or_else(|| data.to_vec());
            let section = Section {
                data,
                expiration,
                version,
            };
            assert!(
                replica.insert(id.to_vec(), section).is_none(),
                "created twice"
            );
        }
        Mutation::Write { id, offset, data } => {
            let s = section(replica, id, version);
            match current {
                Some(all) => s.data = all,
                None => {
                    let at = offset as usize;
                    s.data.resize(s.data.len().max(at + data.len()), 0);
                    s.data[at..at + data.len()].copy_from_slice(data);
                }
            }
        }
        Mutation::Overwrite { id, data } => {
            section(replica, id, version).data = current.unwrap_or_else(|| data.to_vec());
        }
        Mutation::Delete { id } => {
            assert!(replica.remove(id).is_some(), "deleted twice");
        }
        Mutation::ExpirationSet { id, expiration } => {
            section(replica, id, version).expiration = expiration;
        }
    }
}

fuzz_target!(|input: Input| {
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
    let mut harness = Harness::new(&segment);
    for op in input.ops.iter().take(OPS_MAX) {
        harness.run(op);
    }
    harness.finish(&config, &name);
});
