//! What the targets that drive a primary segment from fuzz input share
//! (`apply`, `catchup`): the input reader, how an input byte names a section
//! and its data, and the operations both run the same way. Each target keeps
//! its own operation list and maps its common operations onto [`Common`], so
//! the bytes an input spends on them are the same in both.

use std::sync::OnceLock;

use ckpt_core::{CreationAttributes, Time};
use ckpt_shm::{SectionRef, Segment, WriteElement};

/// Fuzz input read front to back; past its end every read is 0.
pub struct Bytes<'a>(pub &'a [u8]);

impl Bytes<'_> {
    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
}

/// True with `CKPT_FUZZ_TRACE=1`: the targets print every step.
pub fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("CKPT_FUZZ_TRACE").is_some_and(|v| v == "1"))
}

/// `eprintln!` when [`trace`] is on.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::primary::trace() {
            eprintln!($($arg)*);
        }
    };
}

/// 2100-01-01: no section expires while the fuzzer runs.
pub const FAR_FUTURE: Time = Time::from_secs(4_102_444_800);

/// Ids the operations name (index 6 is the default section's empty id, 7 a
/// generated one).
pub const NAMED: [&[u8]; 6] = [b"a", b"b", b"c", b"ab", b"abc", b"abcd"];

/// The section id byte `b` names: one of [`NAMED`], the empty id (6), or a
/// generated-style id (7) of at most `id_bytes_max` (and 4) bytes.
pub fn section_id(b: u8, id_bytes_max: u64) -> Vec<u8> {
    match b % 8 {
        6 => Vec::new(),
        7 => {
            let width = (id_bytes_max as usize).min(4);
            ((b >> 3) as u32 + 1).to_be_bytes()[4 - width..].to_vec()
        }
        k => NAMED[k as usize].to_vec(),
    }
}

/// An expiration: never (0), or that many seconds after [`FAR_FUTURE`].
pub fn expiry(b: u8) -> Time {
    match b {
        0 => Time::END,
        s => Time(FAR_FUTURE.0 + s as i64 * Time::SECOND.0),
    }
}

/// The operations both drivers decode and run alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Common {
    /// `id, expiry, data`: create (id 7: a generated id).
    Create,
    /// `id, offset: u16, data`: write at an offset.
    Write,
    /// `id, data` (`, zero_copy` if `choose_zero_copy`): overwrite, through
    /// `overwrite_with` if that byte's bit 0 is set.
    Overwrite { choose_zero_copy: bool },
    /// `count, count × (id, offset: u16 (bit 15: overwrite), data)`: up to
    /// `elements_max` elements; with `half_ring`, at most half the ring of
    /// data in all (elements beyond it are dropped).
    WriteMany { elements_max: u8, half_ring: bool },
    /// `id`.
    Delete,
    /// `id, expiry`.
    SetExpiration,
    /// `seconds: u16`.
    SetRetention,
    /// `node`.
    SetActiveReplica,
}

/// A primary segment the input mutates.
#[derive(Clone, Copy)]
pub struct Driver<'a> {
    /// The segment.
    pub segment: &'a Segment,
    /// Its attributes.
    pub attrs: CreationAttributes,
}

impl Driver<'_> {
    /// The section id byte `b` names.
    pub fn id(&self, b: u8) -> Vec<u8> {
        section_id(b, self.attrs.section_id_bytes_max)
    }

    /// The live section byte `b` names, if any.
    pub fn target(&self, b: u8) -> Option<SectionRef> {
        self.segment
            .lookup(&self.id(b))
            .expect("no concurrent compaction")
    }

    /// `len: u16, fill`: up to `maxSectionSize` position-dependent bytes (so
    /// that misplaced pieces show).
    pub fn data(&self, input: &mut Bytes<'_>) -> Vec<u8> {
        let len = input.u16() as u64 % (self.attrs.section_bytes_max + 1);
        let fill = input.u8();
        (0..len as usize)
            .map(|i| fill.wrapping_add((i % 251) as u8))
            .collect()
    }

    /// An offset within `maxSectionSize`.
    pub fn offset(&self, raw: u16) -> u64 {
        raw as u64 % (self.attrs.section_bytes_max + 1)
    }

    /// Decodes `op`'s arguments from `input` and runs it on the segment.
    pub fn run(&self, op: Common, input: &mut Bytes<'_>) {
        let s = self.segment;
        match op {
            Common::Create => {
                let b = input.u8();
                let id = (b % 8 != 7).then(|| self.id(b));
                let expiration = expiry(input.u8());
                let data = self.data(input);
                let got = s.create_section(id.as_deref(), expiration, &data);
                trace!(
                    "create {id:?} {} bytes: {:?}",
                    data.len(),
                    got.as_ref().map(|g| &g.1)
                );
            }
            Common::Write => {
                let target = self.target(input.u8());
                let offset = self.offset(input.u16());
                let data = self.data(input);
                if let Some(t) = target {
                    let got = s.write(t, Some(offset), &data);
                    trace!("write {t:?} at {offset} {} bytes: {got:?}", data.len());
                }
            }
            Common::Overwrite { choose_zero_copy } => {
                let target = self.target(input.u8());
                let data = self.data(input);
                let zero_copy = choose_zero_copy && input.u8() & 1 != 0;
                if let Some(t) = target {
                    let got = if zero_copy {
                        s.overwrite_with(t, data.len(), |d| d.copy_from_slice(&data))
                    } else {
                        s.write(t, None, &data)
                    };
                    trace!("overwrite {t:?} {} bytes: {got:?}", data.len());
                }
            }
            Common::WriteMany {
                elements_max,
                half_ring,
            } => {
                let n = 1 + input.u8() % elements_max;
                let budget = match half_ring {
                    true => s.geometry().log_bytes as usize / 2,
                    false => usize::MAX,
                };
                let mut total = 0;
                let mut elements = Vec::new();
                for _ in 0..n {
                    let target = self.target(input.u8());
                    let raw = input.u16();
                    let offset = (raw & 0x8000 == 0).then(|| self.offset(raw));
                    let data = self.data(input);
                    if let Some(t) = target {
                        if total + data.len() <= budget {
                            total += data.len();
                            elements.push((t, offset, data));
                        }
                    }
                }
                let batch: Vec<_> = elements
                    .iter()
                    .map(|(section, offset, data)| WriteElement {
                        section: *section,
                        offset: *offset,
                        data,
                    })
                    .collect();
                let got = s.write_many(&batch);
                trace!("write_many {} elements: {got:?}", batch.len());
            }
            Common::Delete => {
                if let Some(t) = self.target(input.u8()) {
                    let got = s.delete_section(t);
                    trace!("delete {t:?}: {got:?}");
                }
            }
            Common::SetExpiration => {
                let target = self.target(input.u8());
                let expiration = expiry(input.u8());
                if let Some(t) = target {
                    let got = s.set_expiration(t, expiration);
                    trace!("set_expiration {t:?} {expiration:?}: {got:?}");
                }
            }
            Common::SetRetention => {
                let retention = Time(input.u16() as i64 * Time::SECOND.0);
                let got = s.set_retention(retention);
                trace!("set_retention {retention:?}: {got:?}");
                got.expect("no other writer");
            }
            Common::SetActiveReplica => {
                let node = input.u8() as u32;
                let got = s.set_active_replica(node);
                trace!("set_active_replica {node}: {got:?}");
                got.expect("no other writer");
            }
        }
    }
}
