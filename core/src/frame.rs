//! The delta-log frame: the **one** byte format of a checkpoint mutation, and
//! the replication protocol.
//!
//! Every mutation of a checkpoint (its creation, section create, write,
//! overwrite, delete and expiration change, the active replica's change,
//! retention and unlink) is appended to the segment's log ring as frames; the
//! replication engine ships the same bytes to replicas, which decode them with
//! [`decode`] and apply them in `seq` order. The log alone rebuilds a replica.
//! Little-endian, 8-byte aligned, a 64-byte header:
//!
//! ```text
//!  0       4       8               16    17    18     20         24
//!  +-------+-------+---------------+-----+-----+------+----------+
//!  | bytes | crc32c|      seq      |kind |flags|id_len| data_len |
//!  +-------+-------+---------------+-----+-----+------+----------+
//!  24   25      28      32              40          48          56          64
//!  +----+-------+-------+---------------+-----------+-----------+-----------+
//!  |fmt | zero  | term  |  incarnation  |  time_ns  |    arg    |  version  |
//!  +----+-------+-------+---------------+-----------+-----------+-----------+
//!  64: id (id_len bytes), zero padding to a multiple of 8, data (data_len
//!      bytes), zero padding to a multiple of 8 = `bytes`
//! ```
//!
//! - `bytes` is the whole frame, header and padding included. The data starts
//!   8-aligned (a ring writer and a receiver copy it in whole words).
//! - `crc32c` covers bytes `8..bytes` and is valid only when [`FLAG_SEALED`] is
//!   set. The shared-memory ring does not seal (its publication protocol already
//!   guarantees a consumer never sees a partial frame, and a checksum per write
//!   would double the cost of a 4 KiB overwrite). Frames that leave the host
//!   in a `Frames` message travel unsealed, as the ring holds them, under the
//!   message's one checksum (one pass over a batch, not one per frame); a
//!   snapshot's creation frame travels sealed (`decode(.., true)`).
//! - `seq` is the checkpoint-wide sequence number: +1 per frame from 1 (the
//!   [`FrameKind::CheckpointCreated`] frame), independent of the ring's size and
//!   of where the frame sits in it. A receiver that sees `seq` jump knows a
//!   frame is missing.
//! - `fmt` is [`FORMAT_VERSION`]; a frame of another format is refused.
//! - `term` is the active replica's term when the frame was written: it grows
//!   with every [`FrameKind::ActiveReplicaSet`], and a replica refuses frames
//!   of a term older than its own, so a deposed active cannot damage it.
//! - `incarnation` is random at the checkpoint's creation: a checkpoint
//!   re-created under the same name has another one.
//! - `version` is the section's version after the mutation; `time_ns` the
//!   writer's wall clock (`lastUpdate`, or the creation time).
//! - **Groups.** [`FLAG_MORE`] says "the next frame belongs to the same call":
//!   the elements of one vector write, or the chunks of one large mutation. A
//!   call's frames end at the first frame without it; a replica applies them
//!   together and its standbys see the call's boundary.
//! - **Large data.** A mutation whose data does not fit one frame (the ring's
//!   limit, or `u32`) is sent as [`FrameKind::Stage`] frames, each carrying the
//!   next piece of the data and in `arg` where the piece goes in the section's
//!   new contents (for a write at an offset, the offset plus the piece's
//!   position in the data; the pieces are contiguous), followed by
//!   the mutation's own frame with [`FLAG_STAGED`] carrying the last piece: its
//!   data is the staged pieces followed by its own. A writer that dies after
//!   publishing stages and before committing is followed by a
//!   [`FrameKind::StageAbort`] frame: the receiver drops what it staged.
//! - A `Pad` frame fills the ring's tail end and carries nothing; it has no
//!   `seq` of its own (0) and never leaves the host.

use core::fmt;

use crate::attrs::{CreationAttributes, CreationFlags, Time};

/// Bytes in a frame header.
pub const HEADER_BYTES: usize = 64;
/// Frames start and end on this boundary.
pub const FRAME_ALIGN: usize = 8;
/// Largest frame (`bytes` is a `u32`, rounded down to the alignment).
pub const FRAME_BYTES_MAX: usize = (u32::MAX as usize) & !(FRAME_ALIGN - 1);
/// The frame format this build writes and reads.
pub const FORMAT_VERSION: u8 = 2;

/// Flag: `crc32c` is valid.
pub const FLAG_SEALED: u8 = 0x2;
/// Flag: the next frame belongs to the same call (vector write, staged data).
pub const FLAG_MORE: u8 = 0x4;
/// Flag: the frame's data is the preceding `Stage` frames' data followed by
/// its own.
pub const FLAG_STAGED: u8 = 0x8;
const FLAGS_KNOWN: u8 = FLAG_SEALED | FLAG_MORE | FLAG_STAGED;

/// The largest node id (31 bits: the active-replica word keeps a node in 31).
pub const NODE_ID_MAX: u32 = (1 << 31) - 1;

/// Bytes of the [`FrameKind::CheckpointCreated`] payload.
pub const CREATED_PAYLOAD_BYTES: usize = 48;

/// What a frame records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A section was created; `arg` is its expiration, data its initial bytes.
    Create = 1,
    /// A section was written at offset `arg`.
    Write = 2,
    /// A section's data and size were replaced.
    Overwrite = 3,
    /// A section was deleted (explicitly or by expiry).
    Delete = 4,
    /// A section's expiration became `arg`.
    ExpirationSet = 5,
    /// Padding to the end of the ring; consumers skip it.
    Pad = 6,
    /// The checkpoint was created: id is its name, data its creation
    /// attributes and ring bytes ([`encode_created`]), `time_ns` the creation time, `arg`
    /// the node placed as active replica + 1 (0: none yet).
    CheckpointCreated = 7,
    /// The active replica moved to node `arg`; the frame's `term` is the new term.
    ActiveReplicaSet = 8,
    /// The retention duration became `arg` nanoseconds.
    RetentionSet = 9,
    /// The checkpoint's name was unlinked.
    Unlink = 10,
    /// A piece of a large mutation's data, going at byte `arg` of the
    /// section's new contents; the section id names the section.
    Stage = 11,
    /// The staged pieces for section id are dropped (their writer died).
    StageAbort = 12,
}

impl FrameKind {
    const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => FrameKind::Create,
            2 => FrameKind::Write,
            3 => FrameKind::Overwrite,
            4 => FrameKind::Delete,
            5 => FrameKind::ExpirationSet,
            6 => FrameKind::Pad,
            7 => FrameKind::CheckpointCreated,
            8 => FrameKind::ActiveReplicaSet,
            9 => FrameKind::RetentionSet,
            10 => FrameKind::Unlink,
            11 => FrameKind::Stage,
            12 => FrameKind::StageAbort,
            _ => return None,
        })
    }

    /// True for the kinds that carry data bytes.
    pub const fn carries_data(self) -> bool {
        matches!(
            self,
            FrameKind::Create
                | FrameKind::Write
                | FrameKind::Overwrite
                | FrameKind::CheckpointCreated
                | FrameKind::Stage
        )
    }

    /// True for the kinds that may be completed by staged data.
    pub const fn may_be_staged(self) -> bool {
        matches!(
            self,
            FrameKind::Create | FrameKind::Write | FrameKind::Overwrite
        )
    }
}

/// The fixed-size part of a frame, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the frame records.
    pub kind: FrameKind,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// The checkpoint-wide sequence number (0 only for pads).
    pub seq: u64,
    /// The active replica's term.
    pub term: u32,
    /// The checkpoint's incarnation.
    pub incarnation: u64,
    /// Section id (or name) length.
    pub id_len: u16,
    /// Data length in this frame.
    pub data_len: u32,
    /// Writer's wall clock, nanoseconds since the epoch.
    pub time_ns: i64,
    /// Kind-specific: offset (write), expiration (create, expiration change),
    /// node (active replica), retention, position (stage); 0 otherwise.
    pub arg: i64,
    /// Section version after the mutation; 0 for checkpoint-wide kinds.
    pub version: u64,
}

const fn align(n: usize) -> usize {
    (n + FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1)
}

/// Where a frame's data starts: after the header and the id, 8-aligned.
pub const fn data_offset(id_len: usize) -> usize {
    HEADER_BYTES + align(id_len)
}

/// Bytes a frame with these lengths occupies.
pub const fn frame_bytes(id_len: usize, data_len: usize) -> usize {
    align(data_offset(id_len) + data_len)
}

impl FrameHeader {
    /// A header with the given kind and zero everywhere else.
    pub const fn new(kind: FrameKind) -> FrameHeader {
        FrameHeader {
            kind,
            flags: 0,
            seq: 0,
            term: 0,
            incarnation: 0,
            id_len: 0,
            data_len: 0,
            time_ns: 0,
            arg: 0,
            version: 0,
        }
    }

    /// The frame's total size in bytes.
    pub const fn frame_bytes(&self) -> usize {
        frame_bytes(self.id_len as usize, self.data_len as usize)
    }

    /// The header as eight little-endian 64-bit words, with `crc32c` zero: how
    /// the ring writer stores it (eight word stores, no byte shuffling).
    #[inline]
    pub fn to_words(&self) -> [u64; HEADER_BYTES / 8] {
        let FrameHeader {
            kind,
            flags,
            seq,
            term,
            incarnation,
            id_len,
            data_len,
            time_ns,
            arg,
            version,
        } = *self;
        [
            self.frame_bytes() as u64,
            seq,
            kind as u64 | (flags as u64) << 8 | (id_len as u64) << 16 | (data_len as u64) << 32,
            FORMAT_VERSION as u64 | (term as u64) << 32,
            incarnation,
            time_ns as u64,
            arg as u64,
            version,
        ]
    }

    /// The header's bytes, with `crc32c` zero.
    pub fn to_bytes(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        for (chunk, word) in out.chunks_exact_mut(8).zip(self.to_words()) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out
    }

    /// A pad frame covering `bytes` (a multiple of 8, at least a header).
    pub const fn pad(bytes: usize) -> FrameHeader {
        // A pad's data_len is the filler after the header, so `frame_bytes` is `bytes`.
        let mut h = FrameHeader::new(FrameKind::Pad);
        h.data_len = (bytes - HEADER_BYTES) as u32;
        h
    }
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than a header, or than the header's `bytes`.
    Truncated,
    /// `bytes` is not aligned or disagrees with the lengths.
    BadLength,
    /// Unknown kind.
    BadKind(u8),
    /// Unknown flag bits, or flags the kind cannot have.
    BadFlags(u8),
    /// Another frame format.
    BadFormat(u8),
    /// The frame is not sealed but a seal was required.
    Unsealed,
    /// The checksum does not match.
    BadChecksum,
    /// Padding or unused fields are not zero.
    NonZeroPadding,
    /// Field values contradict the kind (e.g. a negative offset).
    BadField,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("frame is truncated"),
            DecodeError::BadLength => f.write_str("frame length is inconsistent"),
            DecodeError::BadKind(k) => write!(f, "unknown frame kind {k}"),
            DecodeError::BadFlags(x) => {
                write!(f, "frame flags {x:#x} are unknown or wrong for its kind")
            }
            DecodeError::BadFormat(v) => write!(
                f,
                "frame format {v} is not the format {FORMAT_VERSION} this build reads"
            ),
            DecodeError::Unsealed => f.write_str("frame is not sealed"),
            DecodeError::BadChecksum => f.write_str("frame checksum mismatch"),
            DecodeError::NonZeroPadding => f.write_str("frame padding is not zero"),
            DecodeError::BadField => f.write_str("frame field out of range for its kind"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// A decoded frame borrowing its id and data from the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The header.
    pub header: FrameHeader,
    /// The section id (the checkpoint name for `CheckpointCreated`).
    pub id: &'a [u8],
    /// The data.
    pub data: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The mutation this frame records, or `None` for a pad.
    pub fn mutation(&self) -> Option<Mutation<'a>> {
        let h = &self.header;
        let id = self.id;
        let data = self.data;
        Some(match h.kind {
            FrameKind::Create => Mutation::Create {
                id,
                expiration: Time(h.arg),
                data,
            },
            FrameKind::Write => Mutation::Write {
                id,
                offset: h.arg as u64,
                data,
            },
            FrameKind::Overwrite => Mutation::Overwrite { id, data },
            FrameKind::Delete => Mutation::Delete { id },
            FrameKind::ExpirationSet => Mutation::ExpirationSet {
                id,
                expiration: Time(h.arg),
            },
            FrameKind::Pad => return None,
            FrameKind::CheckpointCreated => {
                // Checked by `decode`.
                let (attributes, log_bytes) = decode_created(data)?;
                Mutation::CheckpointCreated {
                    name: id,
                    attributes,
                    log_bytes,
                    active_replica: (h.arg > 0).then(|| (h.arg - 1) as u32),
                }
            }
            FrameKind::ActiveReplicaSet => Mutation::ActiveReplicaSet {
                node: h.arg as u32,
                term: h.term,
            },
            FrameKind::RetentionSet => Mutation::RetentionSet {
                retention: Time(h.arg),
            },
            FrameKind::Unlink => Mutation::Unlink,
            FrameKind::Stage => Mutation::Stage {
                id,
                at: h.arg as u64,
                data,
            },
            FrameKind::StageAbort => Mutation::StageAbort { id },
        })
    }

    /// True if this frame's data is completed by the `Stage` frames before it.
    pub fn is_staged(&self) -> bool {
        self.header.flags & FLAG_STAGED != 0
    }

    /// True if the next frame belongs to the same call.
    pub fn has_more(&self) -> bool {
        self.header.flags & FLAG_MORE != 0
    }
}

/// A checkpoint mutation, as a frame records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation<'a> {
    /// Section created.
    Create {
        /// Section id.
        id: &'a [u8],
        /// Absolute expiration.
        expiration: Time,
        /// Initial data (the last piece, if staged).
        data: &'a [u8],
    },
    /// Bytes written at an offset.
    Write {
        /// Section id.
        id: &'a [u8],
        /// Offset in the section.
        offset: u64,
        /// Bytes written (the last piece, if staged).
        data: &'a [u8],
    },
    /// Data and size replaced.
    Overwrite {
        /// Section id.
        id: &'a [u8],
        /// New contents (the last piece, if staged).
        data: &'a [u8],
    },
    /// Section deleted.
    Delete {
        /// Section id.
        id: &'a [u8],
    },
    /// Expiration changed.
    ExpirationSet {
        /// Section id.
        id: &'a [u8],
        /// New absolute expiration.
        expiration: Time,
    },
    /// The checkpoint was created.
    CheckpointCreated {
        /// Its name.
        name: &'a [u8],
        /// Its creation attributes.
        attributes: CreationAttributes,
        /// Bytes of the primary's delta-log ring.
        log_bytes: u64,
        /// The node placed as active replica at creation (non-collocated
        /// asynchronous checkpoints).
        active_replica: Option<u32>,
    },
    /// The active replica moved.
    ActiveReplicaSet {
        /// Its node.
        node: u32,
        /// The new term.
        term: u32,
    },
    /// The retention duration changed.
    RetentionSet {
        /// The new duration.
        retention: Time,
    },
    /// The name was unlinked.
    Unlink,
    /// A piece of a large mutation's data.
    Stage {
        /// Section id.
        id: &'a [u8],
        /// Where the piece goes in the section's new contents.
        at: u64,
        /// The piece.
        data: &'a [u8],
    },
    /// Staged pieces dropped.
    StageAbort {
        /// Section id.
        id: &'a [u8],
    },
}

/// The [`FrameKind::CheckpointCreated`] payload: every creation attribute,
/// and the bytes of the primary's delta-log ring (a replica takes the same,
/// so that, promoted, it holds what its links may fall behind by).
pub fn encode_created(a: &CreationAttributes, log_bytes: u64) -> [u8; CREATED_PAYLOAD_BYTES] {
    let mut out = [0u8; CREATED_PAYLOAD_BYTES];
    out[0..4].copy_from_slice(&a.flags.bits().to_le_bytes());
    out[4..8].copy_from_slice(&a.sections_max.to_le_bytes());
    out[8..16].copy_from_slice(&a.checkpoint_bytes.to_le_bytes());
    out[16..24].copy_from_slice(&a.retention_ns.to_le_bytes());
    out[24..32].copy_from_slice(&a.section_bytes_max.to_le_bytes());
    out[32..40].copy_from_slice(&a.section_id_bytes_max.to_le_bytes());
    out[40..48].copy_from_slice(&log_bytes.to_le_bytes());
    out
}

/// The attributes and ring bytes of a [`FrameKind::CheckpointCreated`]
/// payload, if the attributes are valid and the ring bytes a power of two.
pub fn decode_created(b: &[u8]) -> Option<(CreationAttributes, u64)> {
    if b.len() != CREATED_PAYLOAD_BYTES {
        return None;
    }
    let attrs = CreationAttributes {
        flags: CreationFlags::from_bits(le_u32(b, 0))?,
        sections_max: le_u32(b, 4),
        checkpoint_bytes: le_u64(b, 8),
        retention_ns: le_u64(b, 16) as i64,
        section_bytes_max: le_u64(b, 24),
        section_id_bytes_max: le_u64(b, 32),
    };
    attrs.validate().ok()?;
    let log_bytes = le_u64(b, 40);
    log_bytes.is_power_of_two().then_some((attrs, log_bytes))
}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is smaller than the frame.
    BufferTooSmall,
    /// The lengths disagree with the header, or exceed [`FRAME_BYTES_MAX`].
    BadLength,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncodeError::BufferTooSmall => "output buffer smaller than the frame",
            EncodeError::BadLength => "frame lengths disagree with the header",
        })
    }
}

impl core::error::Error for EncodeError {}

/// Encodes a whole frame (unsealed) into `out`; returns its size.
///
/// ```
/// use ckpt_core::frame::{decode, encode, FrameHeader, FrameKind, Mutation};
/// let mut header = FrameHeader::new(FrameKind::Overwrite);
/// (header.seq, header.term, header.id_len, header.data_len, header.version) = (9, 1, 3, 4, 2);
/// let mut buf = [0u8; 80];
/// let n = encode(&header, b"seq", &7u32.to_be_bytes(), &mut buf).unwrap();
/// let frame = decode(&buf[..n], false).unwrap();
/// assert_eq!(frame.mutation(), Some(Mutation::Overwrite { id: b"seq", data: &[0, 0, 0, 7] }));
/// ```
pub fn encode(
    header: &FrameHeader,
    id: &[u8],
    data: &[u8],
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let pad = header.kind == FrameKind::Pad;
    if id.len() != header.id_len as usize || (!pad && data.len() != header.data_len as usize) {
        return Err(EncodeError::BadLength);
    }
    let bytes = header.frame_bytes();
    if bytes > FRAME_BYTES_MAX {
        return Err(EncodeError::BadLength);
    }
    let out = out.get_mut(..bytes).ok_or(EncodeError::BufferTooSmall)?;
    out.fill(0);
    out[..HEADER_BYTES].copy_from_slice(&header.to_bytes());
    out[HEADER_BYTES..HEADER_BYTES + id.len()].copy_from_slice(id);
    if !pad {
        let at = data_offset(id.len());
        out[at..at + data.len()].copy_from_slice(data);
    }
    Ok(bytes)
}

/// Sets `SEALED` and writes the checksum of a whole encoded frame. Bytes that
/// are not a whole frame are left as they are.
pub fn seal(frame: &mut [u8]) {
    if frame.len() < HEADER_BYTES {
        return;
    }
    frame[17] |= FLAG_SEALED;
    let crc = crc32c::crc32c(&frame[8..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Decodes only the header (without checking the body), e.g. to learn a
/// frame's size before copying it out of a ring.
pub fn decode_header(buf: &[u8]) -> Result<FrameHeader, DecodeError> {
    let b = buf.get(..HEADER_BYTES).ok_or(DecodeError::Truncated)?;
    let kind = FrameKind::from_u8(b[16]).ok_or(DecodeError::BadKind(b[16]))?;
    let flags = b[17];
    if flags & !FLAGS_KNOWN != 0 {
        return Err(DecodeError::BadFlags(flags));
    }
    if b[24] != FORMAT_VERSION {
        return Err(DecodeError::BadFormat(b[24]));
    }
    if b[25..28] != [0, 0, 0] {
        return Err(DecodeError::NonZeroPadding);
    }
    let header = header_fields(b, kind);
    let declared = le_u32(b, 0) as usize;
    if declared % FRAME_ALIGN != 0 || declared != header.frame_bytes() {
        return Err(DecodeError::BadLength);
    }
    Ok(header)
}

/// The fields of the header `b` (at least [`HEADER_BYTES`]) of a frame of
/// `kind`, unchecked: where each field lies.
fn header_fields(b: &[u8], kind: FrameKind) -> FrameHeader {
    FrameHeader {
        kind,
        flags: b[17],
        seq: le_u64(b, 8),
        id_len: u16::from_le_bytes([b[18], b[19]]),
        data_len: le_u32(b, 20),
        term: le_u32(b, 28),
        incarnation: le_u64(b, 32),
        time_ns: le_u64(b, 40) as i64,
        arg: le_u64(b, 48) as i64,
        version: le_u64(b, 56),
    }
}

/// The id and the data of `frame` (its whole bytes) under `header`, or
/// `None` if they do not lie inside it; a pad has no data.
fn frame_parts<'b>(frame: &'b [u8], header: &FrameHeader) -> Option<(&'b [u8], &'b [u8])> {
    let id_end = HEADER_BYTES + header.id_len as usize;
    let data_start = data_offset(header.id_len as usize);
    let data_len = if header.kind == FrameKind::Pad {
        0
    } else {
        header.data_len as usize
    };
    Some((
        frame.get(HEADER_BYTES..id_end)?,
        frame.get(data_start..data_start + data_len)?,
    ))
}

/// Checks the header's fields against its kind.
fn check_fields(h: &FrameHeader) -> Result<(), DecodeError> {
    use FrameKind as K;
    let staged = h.flags & FLAG_STAGED != 0;
    let more = h.flags & FLAG_MORE != 0;
    if (staged && !h.kind.may_be_staged()) || (h.kind == K::Stage && !more) {
        return Err(DecodeError::BadFlags(h.flags));
    }
    if h.kind == K::Pad {
        let nonzero = h.flags != 0
            || h.seq != 0
            || h.term != 0
            || h.incarnation != 0
            || h.id_len != 0
            || h.time_ns != 0
            || h.arg != 0
            || h.version != 0;
        return if nonzero {
            Err(DecodeError::BadField)
        } else {
            Ok(())
        };
    }
    if h.seq == 0 || (!h.kind.carries_data() && h.data_len != 0) {
        return Err(DecodeError::BadField);
    }
    let section = matches!(
        h.kind,
        K::Create | K::Write | K::Overwrite | K::Delete | K::ExpirationSet
    );
    if section && h.version == 0 {
        return Err(DecodeError::BadField);
    }
    let ok = match h.kind {
        K::Create | K::Write | K::ExpirationSet => h.arg >= 0,
        // A piece carries bytes: the pieces of a mutation are never empty.
        K::Stage => h.arg >= 0 && h.data_len > 0,
        K::RetentionSet => h.arg >= 0 && h.version == 0 && h.id_len == 0,
        K::ActiveReplicaSet => {
            (0..=NODE_ID_MAX as i64).contains(&h.arg) && h.version == 0 && h.id_len == 0
        }
        K::CheckpointCreated => {
            h.data_len as usize == CREATED_PAYLOAD_BYTES
                && h.id_len != 0
                && (0..=NODE_ID_MAX as i64 + 1).contains(&h.arg)
                && h.version == 0
                && !more
        }
        K::Unlink => h.id_len == 0 && h.arg == 0 && h.version == 0,
        K::Overwrite | K::Delete => h.arg == 0,
        K::StageAbort => h.arg == 0 && h.version == 0,
        K::Pad => true,
    };
    if ok {
        Ok(())
    } else {
        Err(DecodeError::BadField)
    }
}

/// Decodes and validates one frame at the start of `buf`.
///
/// With `require_seal`, unsealed frames are refused (bytes from the network);
/// a sealed frame's checksum is always verified.
pub fn decode(buf: &[u8], require_seal: bool) -> Result<Frame<'_>, DecodeError> {
    decode_as(buf, require_seal, true)
}

/// A frame that [`decode_message`] accepted as one of a `Frames`
/// message's, in bytes that have not changed since (the receiver's own
/// buffer): its fields and parts as they lie, checked no further (the
/// message's decoding checked each, as [`decode`] does). `None` where the
/// bytes do not hold a whole frame of a known kind, so bytes never checked
/// give no panic either, but may give a frame `decode` would refuse.
pub fn decode_checked(buf: &[u8]) -> Option<Frame<'_>> {
    let b = buf.get(..HEADER_BYTES)?;
    let header = header_fields(b, FrameKind::from_u8(b[16])?);
    let frame = buf.get(..header.frame_bytes())?;
    let (id, data) = frame_parts(frame, &header)?;
    Some(Frame { header, id, data })
}

fn decode_as(buf: &[u8], require_seal: bool, check_seal: bool) -> Result<Frame<'_>, DecodeError> {
    let header = decode_header(buf)?;
    let bytes = header.frame_bytes();
    let frame = buf.get(..bytes).ok_or(DecodeError::Truncated)?;
    if header.flags & FLAG_SEALED != 0 {
        let crc = le_u32(frame, 4);
        if check_seal && crc32c::crc32c(&frame[8..]) != crc {
            return Err(DecodeError::BadChecksum);
        }
    } else if require_seal {
        return Err(DecodeError::Unsealed);
    } else if le_u32(frame, 4) != 0 {
        return Err(DecodeError::NonZeroPadding);
    }
    check_fields(&header)?;
    // `decode_header` checked the declared size against the parts'.
    let (id, data) = frame_parts(frame, &header).ok_or(DecodeError::BadLength)?;
    if header.kind != FrameKind::Pad {
        let id_end = HEADER_BYTES + id.len();
        let data_start = data_offset(id.len());
        let data_end = data_start + data.len();
        if frame[id_end..data_start].iter().any(|&b| b != 0)
            || frame[data_end..].iter().any(|&b| b != 0)
        {
            return Err(DecodeError::NonZeroPadding);
        }
    }
    if header.kind == FrameKind::CheckpointCreated && decode_created(data).is_none() {
        return Err(DecodeError::BadField);
    }
    Ok(Frame { header, id, data })
}

// ---------------------------------------------------------------------------
// Messages between hosts

/// Bytes in a message header.
pub const MESSAGE_HEADER_BYTES: usize = 40;
/// The message format this build writes and reads, and the meaning of its
/// frames (10: a `Write` past the section's end grows it over zeros, where 9
/// refused it, so a 9 replica would take a 10 primary's frame as diverged;
/// 11: `Frames` says how far the primary's log was ahead of them, and an
/// end that closes a link says why, `Closing`).
pub const WIRE_VERSION: u8 = 11;
/// Bytes of a checkpoint name in a subscription, at most (the longest
/// extended SA name).
pub const WIRE_NAME_BYTES_MAX: usize = 2048;
/// Bytes of a section record's header in a snapshot part.
pub const RECORD_HEADER_BYTES: usize = 64;
/// Bytes of a section id in a section record, at most (the largest
/// `maxSectionIdSize` a checkpoint may have).
pub const RECORD_ID_BYTES_MAX: usize = crate::attrs::limits::SECTION_ID_BYTES_MAX as usize;
/// Bytes of a snapshot end's body.
pub const SNAPSHOT_TAIL_BYTES: usize = 32;

/// What a message between two nodes' daemons is (the replication links'
/// [`crate::repl::Message`], on the wire).
///
/// ```text
///  0       4       8     9     10    12      16              24              32      36      40
///  +-------+-------+-----+-----+-----+-------+---------------+---------------+-------+-------+
///  | bytes | crc32c| kind| fmt | zero|  link |       a       |       b       |   c   |   d   |
///  +-------+-------+-----+-----+-----+-------+---------------+---------------+-------+-------+
///  40: the kind's body, zero padding to a multiple of 8 = `bytes`
/// ```
///
/// `crc32c` covers bytes `8..40` and the body (for a `Frames` message, its
/// frames, which travel unsealed: one checksum per batch). `link` names the
/// replication link (one checkpoint) on the connection; the follower picks it
/// when it subscribes.
///
/// | kind | a | b | c | d | body |
/// |---|---|---|---|---|---|
/// | 1 `Subscribe` | incarnation | holds.seq | holds.term | name bytes | the checkpoint's name |
/// | 2 `Frames` | first | last | prev_term | 0 | frames `first..=last`, unsealed, back to back |
/// | 3 `Snapshot` | incarnation | 0 | 0 | 0 | the checkpoint's creation frame (seq 1), sealed |
/// | 4 `Ack` | holds.seq | 0 | holds.term | openers | none |
/// | 5 `Heartbeat` | 0 | 0 | 0 | 0 | none |
/// | 6 `SnapshotPart` | 0 | 0 | records | 0 | section records ([`SectionRecord`]) back to back |
/// | 7 `SnapshotEnd` | start.seq | sections | start.term | 0 | [`SnapshotTail`] |
/// | 8 `Hello` | 0 | 0 | 0 | 0 | a 32-byte challenge |
/// | 9 `Proof` | 0 | 0 | 0 | 0 | a 32-byte answer |
/// | 10 `Offer` | incarnation | term, `1 << 32` if placed, `1 << 33` if written (more than its creation frame) | node | name bytes | the checkpoint's name |
/// | 11 sealed | counter | 0 | 0 | 0 | another message, encrypted, then a 16-byte tag ([`seal_header`]) |
/// | 12 `UnlinkRequest` | incarnation | 0 | 0 | 0 | none |
/// | 13 `UnlinkAnswer` | 0 | 0 | code | 0 | none |
/// | 14 `Forward` | incarnation | ask | 0 | 0 | the change ([`ForwardRequest`]) |
/// | 15 `ForwardAnswer` | seq | ask | result | index | none, or a generated section id ([`encode_forward_id`]) |
///
/// A link begins (after `Hello` and `Proof` where the ends share a cluster
/// key) with the shipper's `Offer`, which names the checkpoint, and the
/// follower's `Subscribe`.
/// A snapshot is a `Snapshot`, any number of `SnapshotPart`s and a
/// `SnapshotEnd` that counts the sections sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireMessage<'a> {
    /// The replication link it belongs to.
    pub link: u32,
    /// The message.
    pub message: crate::repl::Message,
    /// A subscription's or an offer's checkpoint name (empty otherwise).
    pub name: &'a [u8],
    /// A `Frames` message's frames, unsealed, back to back, or a `Snapshot`'s
    /// creation frame (empty otherwise): checked by [`decode_message`],
    /// decode each with [`decode`].
    pub frames: &'a [u8],
    /// A `SnapshotPart`'s section records (empty otherwise): checked by
    /// [`decode_message`], read them with [`records`].
    pub records: &'a [u8],
    /// A `SnapshotEnd`'s tail.
    pub tail: Option<SnapshotTail>,
    /// A `Forward`'s change, checked by [`decode_message`] (read it with
    /// [`ForwardRequest::decode`]), or a `ForwardAnswer`'s generated
    /// section id (empty otherwise).
    pub forward: &'a [u8],
}

/// One section of a snapshot, or a piece of one: a section larger than a
/// message is sent as records of consecutive pieces (`offset` 0 first), each
/// repeating the section's id and metadata.
///
/// ```text
///  0        4          8      16       24       32           40          48         56         64
///  +--------+----------+------+--------+--------+------------+-----------+----------+----------+
///  | id_len | piece_len| size | offset | version| last_update| expiration| data_seq | exp_seq  |
///  +--------+----------+------+--------+--------+------------+-----------+----------+----------+
///  64: id, zero padding to a multiple of 8, the piece, zero padding to a multiple of 8
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionRecord<'a> {
    /// The section id.
    pub id: &'a [u8],
    /// The bytes at `offset` of the section's data.
    pub piece: &'a [u8],
    /// The section's size.
    pub size: u64,
    /// Where `piece` goes.
    pub offset: u64,
    /// The section's version.
    pub version: u64,
    /// Its `lastUpdate` (ns since the epoch).
    pub last_update: i64,
    /// Its absolute expiration (ns since the epoch).
    pub expiration: i64,
    /// The sequence number of the frame that made the data.
    pub data_seq: u64,
    /// The sequence number of the frame that set the expiration.
    pub expiration_seq: u64,
}

impl SectionRecord<'_> {
    /// Bytes the record takes.
    pub const fn bytes(&self) -> usize {
        record_bytes(self.id.len(), self.piece.len())
    }
}

/// Bytes of a record for an id of `id_len` and a piece of `piece_len` bytes.
pub const fn record_bytes(id_len: usize, piece_len: usize) -> usize {
    RECORD_HEADER_BYTES + id_len.next_multiple_of(8) + piece_len.next_multiple_of(8)
}

/// Appends `r` to `out`. The caller keeps `id` within
/// [`RECORD_ID_BYTES_MAX`] and `offset + piece` within `size`.
pub fn encode_record(r: &SectionRecord<'_>, out: &mut Vec<u8>) {
    debug_assert!(r.id.len() <= RECORD_ID_BYTES_MAX);
    debug_assert!(r.offset + r.piece.len() as u64 <= r.size);
    let at = out.len();
    out.extend_from_slice(&(r.id.len() as u32).to_le_bytes());
    out.extend_from_slice(&(r.piece.len() as u32).to_le_bytes());
    for x in [r.size, r.offset, r.version] {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.extend_from_slice(&r.last_update.to_le_bytes());
    out.extend_from_slice(&r.expiration.to_le_bytes());
    out.extend_from_slice(&r.data_seq.to_le_bytes());
    out.extend_from_slice(&r.expiration_seq.to_le_bytes());
    out.extend_from_slice(r.id);
    out.resize(at + RECORD_HEADER_BYTES + r.id.len().next_multiple_of(8), 0);
    out.extend_from_slice(r.piece);
    out.resize(at + r.bytes(), 0);
}

/// Decodes the record at the start of `buf`; returns it and its length.
fn decode_record(buf: &[u8]) -> Result<(SectionRecord<'_>, usize), WireError> {
    let h = buf.get(..RECORD_HEADER_BYTES).ok_or(WireError::BadLength)?;
    let (id_len, piece_len) = (le_u32(h, 0) as usize, le_u32(h, 4) as usize);
    if id_len > RECORD_ID_BYTES_MAX {
        return Err(WireError::BadField);
    }
    let bytes = record_bytes(id_len, piece_len);
    let r = buf.get(..bytes).ok_or(WireError::BadLength)?;
    let id_end = RECORD_HEADER_BYTES + id_len;
    let piece_at = RECORD_HEADER_BYTES + id_len.next_multiple_of(8);
    let zero = |x: &[u8]| x.iter().all(|&v| v == 0);
    if !zero(&r[id_end..piece_at]) || !zero(&r[piece_at + piece_len..]) {
        return Err(WireError::NonZeroPadding);
    }
    let record = SectionRecord {
        id: &r[RECORD_HEADER_BYTES..id_end],
        piece: &r[piece_at..piece_at + piece_len],
        size: le_u64(h, 8),
        offset: le_u64(h, 16),
        version: le_u64(h, 24),
        last_update: le_u64(h, 32) as i64,
        expiration: le_u64(h, 40) as i64,
        data_seq: le_u64(h, 48),
        expiration_seq: le_u64(h, 56),
    };
    let end = record.offset.checked_add(piece_len as u64);
    if end.is_none_or(|e| e > record.size) || record.version == 0 {
        return Err(WireError::BadField);
    }
    Ok((record, bytes))
}

/// The records of a `SnapshotPart` ([`WireMessage::records`], which
/// [`decode_message`] checked), in order.
pub fn records(body: &[u8]) -> impl Iterator<Item = SectionRecord<'_>> {
    let mut at = 0;
    core::iter::from_fn(move || {
        let (r, n) = decode_record(body.get(at..)?).ok()?;
        at += n;
        Some(r)
    })
}

/// What a snapshot end says besides where the replica then stands: the
/// checkpoint-wide state the copy holds and how far its catch-up reaches.
///
/// ```text
///  0          8            16          20     24           32
///  +----------+------------+-----------+------+------------+
///  | end_seq  | state_seq  | active+1  | term | retention  |
///                                                (bit 63: unlinked)
///  +----------+------------+-----------+------+------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotTail {
    /// No frame numbered above this is contained in the copy: frames up to
    /// it are checked against the copy ([`crate::catchup`]), later ones
    /// applied as they come.
    pub end_seq: u64,
    /// The number of the checkpoint-wide frame (active replica, retention)
    /// the copy reflects.
    pub state_seq: u64,
    /// The active replica's node, if one is set.
    pub active: Option<u32>,
    /// The active replica's term.
    pub term: u32,
    /// The retention duration (ns).
    pub retention_ns: i64,
    /// The checkpoint was unlinked before the copy began (its unlink frame
    /// is among those the copy holds, so it is not shipped after it).
    pub unlinked: bool,
}

impl SnapshotTail {
    /// Its bytes.
    pub fn to_bytes(&self) -> [u8; SNAPSHOT_TAIL_BYTES] {
        let mut b = [0u8; SNAPSHOT_TAIL_BYTES];
        b[0..8].copy_from_slice(&self.end_seq.to_le_bytes());
        b[8..16].copy_from_slice(&self.state_seq.to_le_bytes());
        let active = self.active.map_or(0, |n| n + 1);
        b[16..20].copy_from_slice(&active.to_le_bytes());
        b[20..24].copy_from_slice(&self.term.to_le_bytes());
        // A retention is never negative: its word's top bit is free.
        let retention = self.retention_ns as u64 | (u64::from(self.unlinked) << 63);
        b[24..32].copy_from_slice(&retention.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Result<SnapshotTail, WireError> {
        if b.len() != SNAPSHOT_TAIL_BYTES {
            return Err(WireError::BadLength);
        }
        let retention = le_u64(b, 24);
        let tail = SnapshotTail {
            end_seq: le_u64(b, 0),
            state_seq: le_u64(b, 8),
            active: le_u32(b, 16).checked_sub(1),
            term: le_u32(b, 20),
            retention_ns: (retention & !(1 << 63)) as i64,
            unlinked: retention >> 63 == 1,
        };
        if tail.active.is_some_and(|n| n > NODE_ID_MAX) || tail.term == 0 {
            return Err(WireError::BadField);
        }
        Ok(tail)
    }
}

/// The most elements a forwarded vector write carries.
pub const FORWARD_ELEMENTS_MAX: usize = 1 << 16;

/// What a forwarded change does (a [`ForwardRequest`]'s operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardOp {
    /// `saCkptCheckpointWrite`: every element, all or nothing.
    Write = 1,
    /// `saCkptSectionOverwrite`: one element, its offset 0.
    Overwrite = 2,
    /// `saCkptSectionCreate` with an id: one element (its initial data),
    /// `time` its expiration.
    Create = 3,
    /// `saCkptSectionCreate` with a generated id: one element with an empty
    /// id, `time` its expiration.
    CreateGenerated = 4,
    /// `saCkptSectionDelete`: one element with no data.
    Delete = 5,
    /// `saCkptSectionExpirationTimeSet`: one element with no data, `time`
    /// the expiration.
    SetExpiration = 6,
    /// `saCkptCheckpointRetentionDurationSet`: one element with no id and
    /// no data, `time` the duration.
    SetRetention = 7,
    /// `saCkptCheckpointSynchronize`: one element with no id and no data,
    /// `time` the timeout.
    Synchronize = 8,
}

impl ForwardOp {
    fn from_byte(b: u8) -> Option<ForwardOp> {
        use ForwardOp as O;
        [
            O::Write,
            O::Overwrite,
            O::Create,
            O::CreateGenerated,
            O::Delete,
            O::SetExpiration,
            O::SetRetention,
            O::Synchronize,
        ]
        .into_iter()
        .find(|o| *o as u8 == b)
    }
}

/// One element of a forwarded change: a section id, an offset (writes
/// only) and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardElement<'a> {
    /// The section's id (empty: the default section, or a generated id).
    pub id: &'a [u8],
    /// Where the data goes (a vector write's element; 0 otherwise).
    pub offset: u64,
    /// The data (empty for a delete or an expiration change).
    pub data: &'a [u8],
}

/// A change a node that holds only a replica forwards to the primary, the
/// body of a `Forward` message (and of the node daemon's `forward` control
/// request, which carries the same bytes), little-endian, 8-aligned:
///
/// ```text
///  0    1       4       8               16              24
///  +----+-------+-------+---------------+---------------+
///  | op | zero  | count |     time      |  incarnation  |  then `count`
///  +----+-------+-------+---------------+---------------+  elements:
///  0       2               8              16             24
///  +-------+---------------+---------------+--------------+
///  |id_len |     zero      |    offset     |   data_len   |  id, data (each
///  +-------+---------------+---------------+--------------+  padded to 8)
/// ```
///
/// `op` is a [`ForwardOp`]; `time` an expiration in ns (creation and
/// expiration change), a retention duration (retention change) or a
/// timeout (synchronize); 0 otherwise; `incarnation` the checkpoint's the change is for (the
/// primary refuses it if it holds another). A write has 1 to
/// [`FORWARD_ELEMENTS_MAX`] elements, every other operation one; only a
/// write has offsets, only a write, an overwrite or a creation has data, and
/// a generated id's element has no id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRequest<'a> {
    /// The operation.
    pub op: ForwardOp,
    /// The expiration, for a creation or an expiration change; the
    /// duration, for a retention change.
    pub time: i64,
    /// The incarnation of the checkpoint the change is for.
    pub incarnation: u64,
    /// The elements, in order.
    pub elements: Vec<ForwardElement<'a>>,
}

impl<'a> ForwardElement<'a> {
    /// An element: section `id`, `offset` (a write's; 0 otherwise), `data`.
    pub const fn new(id: &'a [u8], offset: u64, data: &'a [u8]) -> Self {
        ForwardElement { id, offset, data }
    }
}

const FORWARD_HEAD_BYTES: usize = 24;
const FORWARD_ELEMENT_BYTES: usize = 24;

impl<'a> ForwardRequest<'a> {
    /// Appends the request's bytes to `out` (padded to 8). Only the rules
    /// [`ForwardRequest::decode`] checks make a request a peer accepts.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.op as u8);
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&(self.elements.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.time.to_le_bytes());
        out.extend_from_slice(&self.incarnation.to_le_bytes());
        for e in &self.elements {
            out.extend_from_slice(&(e.id.len() as u16).to_le_bytes());
            out.extend_from_slice(&[0; 6]);
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&(e.data.len() as u64).to_le_bytes());
            for part in [e.id, e.data] {
                push_padded(out, part);
            }
        }
    }

    /// The request in `bytes` (untrusted: every length is checked against
    /// what is there, padding must be zero, and the operation's rules hold).
    pub fn decode(bytes: &'a [u8]) -> Result<ForwardRequest<'a>, WireError> {
        let head = bytes
            .get(..FORWARD_HEAD_BYTES)
            .ok_or(WireError::Truncated)?;
        let op = ForwardOp::from_byte(head[0]).ok_or(WireError::BadField)?;
        if head[1..4] != [0; 3] {
            return Err(WireError::NonZeroPadding);
        }
        let count = le_u32(head, 4) as usize;
        let time = le_u64(head, 8) as i64;
        let incarnation = le_u64(head, 16);
        let single = op != ForwardOp::Write;
        if count == 0 || count > FORWARD_ELEMENTS_MAX || (single && count != 1) {
            return Err(WireError::BadField);
        }
        let timed = matches!(
            op,
            ForwardOp::Create
                | ForwardOp::CreateGenerated
                | ForwardOp::SetExpiration
                | ForwardOp::SetRetention
                | ForwardOp::Synchronize
        );
        if !timed && time != 0 {
            return Err(WireError::NonZeroPadding);
        }
        // Each element takes at least its fixed part: the count cannot ask
        // for more elements than the bytes hold.
        if count > (bytes.len() - FORWARD_HEAD_BYTES) / FORWARD_ELEMENT_BYTES {
            return Err(WireError::Truncated);
        }
        let mut elements = Vec::with_capacity(count);
        let mut at = FORWARD_HEAD_BYTES;
        for _ in 0..count {
            let fixed = bytes
                .get(at..at + FORWARD_ELEMENT_BYTES)
                .ok_or(WireError::Truncated)?;
            let id_len = usize::from(u16::from_le_bytes([fixed[0], fixed[1]]));
            if fixed[2..8] != [0; 6] {
                return Err(WireError::NonZeroPadding);
            }
            let offset = le_u64(fixed, 8);
            let data_len = usize::try_from(le_u64(fixed, 16)).map_err(|_| WireError::BadLength)?;
            at += FORWARD_ELEMENT_BYTES;
            let mut take = |n: usize| -> Result<&'a [u8], WireError> {
                let padded = n.checked_next_multiple_of(8).ok_or(WireError::BadLength)?;
                let end = at.checked_add(padded).ok_or(WireError::BadLength)?;
                let field = unpad(bytes.get(at..end).ok_or(WireError::Truncated)?, n)?;
                at = end;
                Ok(field)
            };
            let id = take(id_len)?;
            let data = take(data_len)?;
            let rules = match op {
                ForwardOp::Write => true,
                ForwardOp::Overwrite | ForwardOp::Create => offset == 0,
                ForwardOp::CreateGenerated => offset == 0 && id.is_empty(),
                ForwardOp::Delete | ForwardOp::SetExpiration => offset == 0 && data.is_empty(),
                ForwardOp::SetRetention | ForwardOp::Synchronize => {
                    offset == 0 && id.is_empty() && data.is_empty()
                }
            };
            if !rules {
                return Err(WireError::BadField);
            }
            elements.push(ForwardElement { id, offset, data });
        }
        if at != bytes.len() {
            return Err(WireError::BadLength);
        }
        Ok(ForwardRequest {
            op,
            time,
            incarnation,
            elements,
        })
    }
}

/// A `ForwardAnswer`'s body: nothing, or a generated section id as its
/// length (`u32`), 4 zero bytes and the id, padded to 8.
pub fn encode_forward_id(id: &[u8], out: &mut Vec<u8>) {
    if id.is_empty() {
        return;
    }
    out.extend_from_slice(&(id.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    push_padded(out, id);
}

/// Appends `bytes` to `out`, then zeros up to a multiple of 8 (a field
/// [`unpad`] reads back).
fn push_padded(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    out.resize(out.len().next_multiple_of(8), 0);
}

/// The `n` bytes of `field`, which holds them padded with zeros to a
/// multiple of 8 and nothing else (untrusted; `n` bounded by the caller).
fn unpad(field: &[u8], n: usize) -> Result<&[u8], WireError> {
    if field.len() != n.next_multiple_of(8) {
        return Err(WireError::BadLength);
    }
    if field[n..].iter().any(|&b| b != 0) {
        return Err(WireError::NonZeroPadding);
    }
    Ok(&field[..n])
}

/// The generated section id in a `ForwardAnswer`'s body (untrusted).
fn decode_forward_id(body: &[u8]) -> Result<&[u8], WireError> {
    if body.is_empty() {
        return Ok(body);
    }
    let head = body.get(..8).ok_or(WireError::Truncated)?;
    if head[4..8] != [0; 4] {
        return Err(WireError::NonZeroPadding);
    }
    let n = le_u32(head, 0) as usize;
    if n == 0 || n > WIRE_NAME_BYTES_MAX {
        return Err(WireError::BadField);
    }
    unpad(&body[8..], n)
}

/// Why bytes are not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the header, or than its `bytes`.
    Truncated,
    /// `bytes` is not aligned, disagrees with the body, or passes the limit.
    BadLength,
    /// Unknown kind.
    BadKind(u8),
    /// Another message format.
    BadFormat(u8),
    /// The checksum does not match.
    BadChecksum,
    /// Padding or unused fields are not zero.
    NonZeroPadding,
    /// Field values contradict the kind (a name too long, `first > last`).
    BadField,
    /// A carried frame does not decode, is not sealed, or is not the next one.
    BadFrame(DecodeError),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("message truncated"),
            WireError::BadLength => f.write_str("message length invalid or over the limit"),
            WireError::BadKind(k) => write!(f, "unknown message kind {k}"),
            WireError::BadFormat(v) => write!(f, "message format {v}, expected {WIRE_VERSION}"),
            WireError::BadChecksum => f.write_str("message checksum mismatch"),
            WireError::NonZeroPadding => f.write_str("message padding not zero"),
            WireError::BadField => f.write_str("message field out of range"),
            WireError::BadFrame(e) => write!(f, "carried frame: {e}"),
        }
    }
}

impl core::error::Error for WireError {}

/// The bytes of the message starting at `buf` once its first four bytes are
/// there (to know how much to read), or `None`.
pub fn message_bytes(buf: &[u8]) -> Option<usize> {
    Some(le_u32(buf.get(..4)?, 0) as usize)
}

/// The kind of a sealed message: on an encrypted link every message travels
/// inside one (ChaCha20-Poly1305 under the direction's session key, the
/// nonce being `counter`, which counts the direction's messages from 0; the
/// associated data is the header's bytes `8..40`). Its checksum covers only
/// the header: the tag authenticates the rest.
pub const SEALED_KIND: u8 = 11;
/// Bytes of a sealed message's tag.
pub const SEAL_TAG_BYTES: usize = 16;

/// The header of a sealed message numbered `counter` on `link` whose inner
/// message (a whole message, so a multiple of 8 bytes) is `inner_bytes`
/// long: the ciphertext and its tag follow it.
pub fn seal_header(
    link: u32,
    counter: u64,
    inner_bytes: usize,
) -> Result<[u8; MESSAGE_HEADER_BYTES], WireError> {
    if inner_bytes % 8 != 0 {
        return Err(WireError::BadLength);
    }
    let bytes = u32::try_from(MESSAGE_HEADER_BYTES + inner_bytes + SEAL_TAG_BYTES)
        .map_err(|_| WireError::BadLength)?;
    let mut h = [0u8; MESSAGE_HEADER_BYTES];
    h[0..4].copy_from_slice(&bytes.to_le_bytes());
    h[8] = SEALED_KIND;
    h[9] = WIRE_VERSION;
    h[12..16].copy_from_slice(&link.to_le_bytes());
    h[16..24].copy_from_slice(&counter.to_le_bytes());
    let crc = crc32c::crc32c(&h[8..40]);
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(h)
}

/// A sealed message (untrusted bytes): its counter, the associated data
/// (header bytes `8..40`), the ciphertext and the tag. Checks the header,
/// not the contents (the caller decrypts).
pub fn open_sealed(buf: &[u8], max_bytes: usize) -> Result<SealedParts<'_>, WireError> {
    let h = buf
        .get(..MESSAGE_HEADER_BYTES)
        .ok_or(WireError::Truncated)?;
    let bytes = le_u32(h, 0) as usize;
    if bytes % 8 != 0 || bytes < MESSAGE_HEADER_BYTES + SEAL_TAG_BYTES + 8 || bytes > max_bytes {
        return Err(WireError::BadLength);
    }
    let m = buf.get(..bytes).ok_or(WireError::Truncated)?;
    if h[8] != SEALED_KIND {
        return Err(WireError::BadKind(h[8]));
    }
    if h[9] != WIRE_VERSION {
        return Err(WireError::BadFormat(h[9]));
    }
    if h[10..12] != [0, 0] || h[24..40].iter().any(|&b| b != 0) {
        return Err(WireError::NonZeroPadding);
    }
    if crc32c::crc32c(&h[8..40]) != le_u32(h, 4) {
        return Err(WireError::BadChecksum);
    }
    let (ciphertext, tag) =
        m[MESSAGE_HEADER_BYTES..].split_at(bytes - MESSAGE_HEADER_BYTES - SEAL_TAG_BYTES);
    Ok(SealedParts {
        counter: le_u64(h, 16),
        aad: &h[8..40],
        ciphertext,
        tag,
    })
}

/// The parts of a sealed message ([`open_sealed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedParts<'a> {
    /// The direction's message number (the nonce).
    pub counter: u64,
    /// The associated data: the header's bytes `8..40`.
    pub aad: &'a [u8],
    /// The inner message, encrypted.
    pub ciphertext: &'a [u8],
    /// The tag.
    pub tag: &'a [u8],
}

/// Encodes the header of `message` on `link` at the start of `out`, with a
/// subscription's name after it (padded); returns how many bytes that took
/// ([`MESSAGE_HEADER_BYTES`], plus the padded name). `body` is what the
/// caller sends right after those bytes, 8-aligned: the frames, creation
/// frame, records or tail the kind carries (see [`WireMessage`]); it counts
/// in the length and, but for frames, in the checksum.
pub fn encode_message(
    link: u32,
    message: &crate::repl::Message,
    name: &[u8],
    body: &[u8],
    out: &mut [u8],
) -> Result<usize, WireError> {
    use crate::repl::Message as M;
    let (kind, a, b, c, d, inline): (u8, u64, u64, u32, u32, &[u8]) = match *message {
        M::Subscribe { incarnation, holds } => {
            if name.len() > WIRE_NAME_BYTES_MAX {
                return Err(WireError::BadField);
            }
            (
                1,
                incarnation,
                holds.seq,
                holds.term,
                name.len() as u32,
                name,
            )
        }
        M::Frames {
            first,
            last,
            prev_term,
            behind,
        } => (2, first, last, prev_term, behind, &[]),
        M::Snapshot { incarnation } => (3, incarnation, 0, 0, 0, &[]),
        M::Ack { holds, openers } => (4, holds.seq, 0, holds.term, openers, &[]),
        M::Heartbeat => (5, 0, 0, 0, 0, &[]),
        M::SnapshotPart { records } => (6, 0, 0, records, 0, &[]),
        M::SnapshotEnd { start, sections } => (7, start.seq, sections, start.term, 0, &[]),
        M::UnlinkRequest { incarnation } => (12, incarnation, 0, 0, 0, &[]),
        M::UnlinkAnswer { code } => (13, 0, 0, code, 0, &[]),
        M::Forward { incarnation, ask } => (14, incarnation, ask, 0, 0, &[]),
        M::ForwardAnswer {
            ask,
            seq,
            result,
            index,
        } => (15, seq, ask, result, index, &[]),
        M::Closing { reason } => (16, 0, 0, reason.code(), 0, &[]),
        M::Hello { ref nonce } => (8, 0, 0, 0, 0, &nonce[..]),
        M::Proof { ref mac } => (9, 0, 0, 0, 0, &mac[..]),
        M::Offer {
            incarnation,
            term,
            node,
            placed,
            written,
        } => {
            if name.len() > WIRE_NAME_BYTES_MAX {
                return Err(WireError::BadField);
            }
            (
                10,
                incarnation,
                u64::from(term) | u64::from(placed) << 32 | u64::from(written) << 33,
                node,
                name.len() as u32,
                name,
            )
        }
    };
    let carries = matches!(kind, 2 | 3 | 6 | 7 | 14 | 15);
    if body.len() % FRAME_ALIGN != 0 || (!carries && !body.is_empty()) {
        return Err(WireError::BadLength);
    }
    let own = MESSAGE_HEADER_BYTES + inline.len().next_multiple_of(8);
    let bytes = u32::try_from(own + body.len()).map_err(|_| WireError::BadLength)?;
    let buf = out.get_mut(..own).ok_or(WireError::BadLength)?;
    buf.fill(0);
    buf[0..4].copy_from_slice(&bytes.to_le_bytes());
    buf[8] = kind;
    buf[9] = WIRE_VERSION;
    buf[12..16].copy_from_slice(&link.to_le_bytes());
    buf[16..24].copy_from_slice(&a.to_le_bytes());
    buf[24..32].copy_from_slice(&b.to_le_bytes());
    buf[32..36].copy_from_slice(&c.to_le_bytes());
    buf[36..40].copy_from_slice(&d.to_le_bytes());
    buf[40..40 + inline.len()].copy_from_slice(inline);
    let checksummed = match kind {
        1 | 8 | 9 | 10 => inline,
        _ => body,
    };
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[8..40]), checksummed);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(own)
}

/// Decodes the message at the start of `buf` (untrusted bytes): the header,
/// its checksum, the body, for `Frames` every carried frame (sealed,
/// `first..=last` in order), for `Snapshot` its creation frame and for
/// `SnapshotPart` every record. `max_bytes` bounds what a peer may send.
/// Returns the message and its length.
pub fn decode_message(buf: &[u8], max_bytes: usize) -> Result<(WireMessage<'_>, usize), WireError> {
    use crate::repl::{Message as M, Position};
    let h = buf
        .get(..MESSAGE_HEADER_BYTES)
        .ok_or(WireError::Truncated)?;
    let bytes = le_u32(h, 0) as usize;
    if bytes % 8 != 0 || bytes < MESSAGE_HEADER_BYTES || bytes > max_bytes {
        return Err(WireError::BadLength);
    }
    let m = buf.get(..bytes).ok_or(WireError::Truncated)?;
    if h[9] != WIRE_VERSION {
        return Err(WireError::BadFormat(h[9]));
    }
    if h[10..12] != [0, 0] {
        return Err(WireError::NonZeroPadding);
    }
    let link = le_u32(h, 12);
    let (a, b, c, d) = (le_u64(h, 16), le_u64(h, 24), le_u32(h, 32), le_u32(h, 36));
    let body = &m[MESSAGE_HEADER_BYTES..];
    let mut wire = WireMessage {
        link,
        message: M::Heartbeat,
        name: &[],
        frames: &[],
        records: &[],
        tail: None,
        forward: &[],
    };
    // What the checksum covers after the header.
    let mut checksummed = body;
    wire.message = match h[8] {
        1 | 10 => {
            let n = d as usize;
            if n > WIRE_NAME_BYTES_MAX {
                return Err(WireError::BadField);
            }
            wire.name = unpad(body, n)?;
            checksummed = wire.name;
            match h[8] {
                1 => M::Subscribe {
                    incarnation: a,
                    holds: Position { seq: b, term: c },
                },
                _ if b >> 34 != 0 => return Err(WireError::BadField),
                // The term, and above it the placed and written bits:
                // nothing else.
                _ => M::Offer {
                    incarnation: a,
                    term: b as u32,
                    node: c,
                    placed: b >> 32 & 1 == 1,
                    written: b >> 33 & 1 == 1,
                },
            }
        }
        2 => {
            if a == 0 || a > b {
                return Err(WireError::BadField);
            }
            wire.frames = body;
            M::Frames {
                first: a,
                last: b,
                prev_term: c,
                behind: d,
            }
        }
        3 if b == 0 && c == 0 && d == 0 => {
            wire.frames = body;
            M::Snapshot { incarnation: a }
        }
        6 if a == 0 && b == 0 && d == 0 => {
            wire.records = body;
            M::SnapshotPart { records: c }
        }
        7 if d == 0 => {
            wire.tail = Some(SnapshotTail::from_bytes(body)?);
            M::SnapshotEnd {
                start: Position { seq: a, term: c },
                sections: b,
            }
        }
        8 | 9 if a == 0 && b == 0 && c == 0 && d == 0 => {
            let bytes: [u8; crate::repl::AUTH_BYTES] =
                body.try_into().map_err(|_| WireError::BadLength)?;
            if h[8] == 8 {
                M::Hello { nonce: bytes }
            } else {
                M::Proof { mac: bytes }
            }
        }
        14 if c == 0 && d == 0 => {
            ForwardRequest::decode(body)?;
            wire.forward = body;
            M::Forward {
                incarnation: a,
                ask: b,
            }
        }
        15 => {
            wire.forward = decode_forward_id(body)?;
            M::ForwardAnswer {
                ask: b,
                seq: a,
                result: c,
                index: d,
            }
        }
        4 | 5 | 12 | 13 if !body.is_empty() => return Err(WireError::BadLength),
        12 if b == 0 && c == 0 && d == 0 => M::UnlinkRequest { incarnation: a },
        13 if a == 0 && b == 0 && d == 0 => M::UnlinkAnswer { code: c },
        12 | 13 => return Err(WireError::NonZeroPadding),
        4 if b == 0 => M::Ack {
            holds: Position { seq: a, term: c },
            openers: d,
        },
        5 if a == 0 && b == 0 && c == 0 && d == 0 => M::Heartbeat,
        16 if a == 0 && b == 0 && d == 0 => M::Closing {
            reason: crate::repl::CloseReason::from_code(c).ok_or(WireError::BadField)?,
        },
        3..=9 | 14 => return Err(WireError::NonZeroPadding),
        k => return Err(WireError::BadKind(k)),
    };
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[8..40]), checksummed);
    if crc != le_u32(h, 4) {
        return Err(WireError::BadChecksum);
    }
    match wire.message {
        M::Frames { first, last, .. } => {
            // Every carried frame decodes, is unsealed (the message's
            // checksum covers it), and comes in order.
            let (mut at, mut want) = (0, first);
            while at < wire.frames.len() {
                let f = decode(&wire.frames[at..], false).map_err(WireError::BadFrame)?;
                if f.header.flags & FLAG_SEALED != 0 {
                    return Err(WireError::BadFrame(DecodeError::BadFlags(f.header.flags)));
                }
                if f.header.seq != want || f.header.kind == FrameKind::Pad {
                    return Err(WireError::BadFrame(DecodeError::BadField));
                }
                at += f.header.frame_bytes();
                want = want.wrapping_add(1);
            }
            if want != last.wrapping_add(1) {
                return Err(WireError::BadField);
            }
        }
        M::Snapshot { incarnation } => {
            // Exactly the checkpoint's creation frame, of this incarnation.
            let f = decode(wire.frames, true).map_err(WireError::BadFrame)?;
            let h = f.header;
            if h.kind != FrameKind::CheckpointCreated
                || h.seq != 1
                || h.incarnation != incarnation
                || h.frame_bytes() != wire.frames.len()
            {
                return Err(WireError::BadFrame(DecodeError::BadField));
            }
        }
        M::SnapshotPart { records } => {
            let (mut at, mut n) = (0, 0u32);
            while at < wire.records.len() {
                at += decode_record(&wire.records[at..])?.1;
                n = n.checked_add(1).ok_or(WireError::BadField)?;
            }
            if n != records {
                return Err(WireError::BadField);
            }
        }
        _ => {}
    }
    Ok((wire, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: FrameKind, id_len: u16, data_len: u32) -> FrameHeader {
        FrameHeader {
            kind,
            flags: 0,
            seq: 4096,
            term: 3,
            incarnation: 0xABCD,
            id_len,
            data_len,
            time_ns: 77,
            arg: 5,
            version: 9,
        }
    }

    #[test]
    fn header_layout_is_fixed() {
        let h = header(FrameKind::Write, 2, 3);
        let b = h.to_bytes();
        assert_eq!(
            le_u32(&b, 0),
            80,
            "header, id padded to 8, data padded to 8"
        );
        assert_eq!(le_u32(&b, 4), 0);
        assert_eq!(le_u64(&b, 8), 4096);
        assert_eq!(b[16], 2);
        assert_eq!(u16::from_le_bytes([b[18], b[19]]), 2);
        assert_eq!(le_u32(&b, 20), 3);
        assert_eq!(b[24], FORMAT_VERSION);
        assert_eq!(le_u32(&b, 28), 3);
        assert_eq!(le_u64(&b, 32), 0xABCD);
        assert_eq!(le_u64(&b, 40), 77);
        assert_eq!(le_u64(&b, 48), 5);
        assert_eq!(le_u64(&b, 56), 9);
    }

    fn round_trip(h: FrameHeader, id: &[u8], data: &[u8]) {
        let mut buf = vec![0xAAu8; h.frame_bytes() + 16];
        let n = encode(&h, id, data, &mut buf).unwrap();
        assert_eq!(n % FRAME_ALIGN, 0);
        let f = decode(&buf[..n], false).unwrap();
        assert_eq!((f.header, f.id, f.data), (h, id, data));
        assert_eq!(decode_checked(&buf[..n]), Some(f));
        // Cut short, the reading of a checked frame finds no frame.
        for short in [0, HEADER_BYTES - 1, n - 1] {
            assert_eq!(decode_checked(&buf[..short]), None, "{short} of {n}");
        }
        assert_eq!(decode(&buf[..n], true), Err(DecodeError::Unsealed));
        seal(&mut buf[..n]);
        let f = decode(&buf[..n], true).unwrap();
        assert_eq!((f.id, f.data), (id, data));
        buf[n - 1] ^= 1;
        assert_eq!(decode(&buf[..n], true), Err(DecodeError::BadChecksum));
    }

    #[test]
    fn round_trip_every_kind_sealed_and_not() {
        let cases = [
            (FrameKind::Create, &b"abc"[..], &b"hello"[..]),
            (FrameKind::Write, b"x", b"12345678"),
            (FrameKind::Overwrite, b"", b""),
            (FrameKind::Delete, b"id", b""),
            (FrameKind::ExpirationSet, b"id", b""),
        ];
        for (kind, id, data) in cases {
            let mut h = header(kind, id.len() as u16, data.len() as u32);
            if kind == FrameKind::Overwrite || kind == FrameKind::Delete {
                h.arg = 0;
            }
            round_trip(h, id, data);
        }
        let attrs = encode_created(&CreationAttributes::new(4, 100), 1 << 20);
        let mut created = header(FrameKind::CheckpointCreated, 4, attrs.len() as u32);
        (created.arg, created.version) = (0, 0);
        round_trip(created, b"name", &attrs);
        let mut ar = header(FrameKind::ActiveReplicaSet, 0, 0);
        ar.version = 0;
        round_trip(ar, b"", b"");
        let mut stage = header(FrameKind::Stage, 1, 4);
        stage.flags = FLAG_MORE;
        round_trip(stage, b"s", b"abcd");
        let mut staged = header(FrameKind::Write, 1, 2);
        staged.flags = FLAG_STAGED;
        round_trip(staged, b"s", b"ef");
    }

    #[test]
    fn mutations_carry_what_the_kind_means() {
        let attrs = CreationAttributes::new(4, 100);
        let payload = encode_created(&attrs, 1 << 20);
        // A ring size that is not a power of two is refused.
        let mut odd = payload;
        odd[40..48].copy_from_slice(&3000u64.to_le_bytes());
        assert_eq!(decode_created(&odd), None);
        assert_eq!(decode_created(&payload), Some((attrs, 1 << 20)));
        let mut h = header(FrameKind::CheckpointCreated, 1, payload.len() as u32);
        (h.arg, h.version) = (0, 0);
        let mut buf = [0u8; 128];
        let n = encode(&h, b"n", &payload, &mut buf).unwrap();
        assert_eq!(
            decode(&buf[..n], false).unwrap().mutation(),
            Some(Mutation::CheckpointCreated {
                name: b"n",
                attributes: attrs,
                log_bytes: 1 << 20,
                active_replica: None,
            })
        );
        let mut h = header(FrameKind::ActiveReplicaSet, 0, 0);
        (h.arg, h.version, h.term) = (7, 0, 12);
        let n = encode(&h, b"", b"", &mut buf).unwrap();
        assert_eq!(
            decode(&buf[..n], false).unwrap().mutation(),
            Some(Mutation::ActiveReplicaSet { node: 7, term: 12 })
        );
    }

    #[test]
    fn data_starts_aligned_after_a_padded_id() {
        let h = header(FrameKind::Write, 3, 5);
        assert_eq!(h.frame_bytes(), 64 + 8 + 8);
        let mut buf = [0u8; 80];
        encode(&h, b"abc", b"12345", &mut buf).unwrap();
        assert_eq!(&buf[64..72], b"abc\0\0\0\0\0");
        assert_eq!(&buf[72..77], b"12345");
        let f = decode(&buf, false).unwrap();
        assert_eq!((f.id, f.data), (&b"abc"[..], &b"12345"[..]));
        let mut bad = buf;
        bad[68] = 1;
        assert_eq!(decode(&bad, false), Err(DecodeError::NonZeroPadding));
    }

    #[test]
    fn pad_frames_cover_their_span() {
        let h = FrameHeader::pad(200);
        assert_eq!(h.frame_bytes(), 200);
        let mut buf = vec![0u8; 200];
        assert_eq!(encode(&h, b"", b"", &mut buf), Ok(200));
        let f = decode(&buf, false).unwrap();
        assert_eq!(f.mutation(), None);
        assert_eq!(f.header.frame_bytes(), 200);
    }

    #[test]
    fn garbage_is_refused_not_trusted() {
        assert_eq!(decode(&[0u8; 10], false), Err(DecodeError::Truncated));
        let h = header(FrameKind::Write, 1, 1);
        let mut buf = [0u8; 80];
        encode(&h, b"a", b"b", &mut buf).unwrap();
        let mut bad = buf;
        bad[16] = 99;
        assert_eq!(decode(&bad, false), Err(DecodeError::BadKind(99)));
        let mut bad = buf;
        bad[17] = 0x80;
        assert_eq!(decode(&bad, false), Err(DecodeError::BadFlags(0x80)));
        let mut bad = buf;
        bad[24] = 1;
        assert_eq!(decode(&bad, false), Err(DecodeError::BadFormat(1)));
        let mut bad = buf;
        bad[26] = 1;
        assert_eq!(decode(&bad, false), Err(DecodeError::NonZeroPadding));
        let mut bad = buf;
        bad[0] = 88;
        assert_eq!(decode(&bad, false), Err(DecodeError::BadLength));
        let mut bad = buf;
        bad[79] = 1;
        assert_eq!(decode(&bad, false), Err(DecodeError::NonZeroPadding));
        let mut bad = buf;
        bad[48..56].copy_from_slice(&(-1i64).to_le_bytes());
        assert_eq!(decode(&bad, false), Err(DecodeError::BadField));
        let mut bad = buf;
        bad[8..16].fill(0);
        assert_eq!(decode(&bad, false), Err(DecodeError::BadField), "seq 0");
        let mut bad = buf;
        bad[56..64].fill(0);
        assert_eq!(decode(&bad, false), Err(DecodeError::BadField), "version 0");
        let mut bad = buf;
        bad[17] = FLAG_STAGED;
        bad[16] = FrameKind::Delete as u8;
        assert!(decode(&bad, false).is_err());
        assert_eq!(decode(&buf[..64], false), Err(DecodeError::Truncated));
    }

    #[test]
    fn a_stage_without_more_and_bad_attributes_are_refused() {
        let mut h = header(FrameKind::Stage, 1, 1);
        let mut buf = [0u8; 80];
        encode(&h, b"a", b"b", &mut buf).unwrap();
        assert_eq!(decode(&buf, false), Err(DecodeError::BadFlags(0)));
        h.flags = FLAG_MORE;
        encode(&h, b"a", b"b", &mut buf).unwrap();
        assert!(decode(&buf, false).is_ok());
        let mut payload = encode_created(&CreationAttributes::new(4, 100), 1 << 20);
        payload[4..8].fill(0); // zero sections
        let mut h = header(FrameKind::CheckpointCreated, 1, payload.len() as u32);
        (h.arg, h.version) = (0, 0);
        let mut buf = [0u8; 128];
        let n = encode(&h, b"n", &payload, &mut buf).unwrap();
        assert_eq!(decode(&buf[..n], false), Err(DecodeError::BadField));
    }

    fn message(link: u32, m: crate::repl::Message, name: &[u8], frames: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; MESSAGE_HEADER_BYTES + 2048 + 8];
        let n = encode_message(link, &m, name, frames, &mut out).unwrap();
        out.truncate(n);
        out.extend_from_slice(frames);
        out
    }

    /// Two overwrite frames numbered `first`, `first + 1`, as a `Frames`
    /// message carries them (unsealed).
    fn frame_pair(first: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for seq in [first, first + 1] {
            let mut h = header(FrameKind::Overwrite, 1, 3);
            (h.seq, h.arg) = (seq, 0);
            let mut buf = [0u8; 80];
            let n = encode(&h, b"k", b"abc", &mut buf).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    /// A sealed creation frame of `incarnation`.
    fn created(incarnation: u64) -> Vec<u8> {
        let attrs = encode_created(&CreationAttributes::new(4, 100), 1 << 20);
        let mut h = header(FrameKind::CheckpointCreated, 4, attrs.len() as u32);
        (h.seq, h.incarnation, h.arg, h.version) = (1, incarnation, 0, 0);
        let mut buf = vec![0u8; h.frame_bytes()];
        encode(&h, b"name", &attrs, &mut buf).unwrap();
        seal(&mut buf);
        buf
    }

    const RECORD: SectionRecord<'static> = SectionRecord {
        id: b"abc",
        piece: b"hello",
        size: 9,
        offset: 4,
        version: 3,
        last_update: 11,
        expiration: i64::MAX,
        data_seq: 40,
        expiration_seq: 12,
    };

    const TAIL: SnapshotTail = SnapshotTail {
        end_seq: 44,
        state_seq: 7,
        active: Some(2),
        term: 3,
        retention_ns: 5,
        unlinked: false,
    };

    /// Two records: `RECORD` and a whole empty section with an empty id.
    fn two_records() -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(&RECORD, &mut out);
        let empty = SectionRecord {
            id: b"",
            piece: b"",
            size: 0,
            offset: 0,
            ..RECORD
        };
        encode_record(&empty, &mut out);
        out
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let body = two_records();
        assert_eq!(body.len(), record_bytes(3, 5) + record_bytes(0, 0));
        let got: Vec<_> = records(&body).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], RECORD);
        assert_eq!(
            (got[1].id, got[1].piece, got[1].size),
            (&b""[..], &b""[..], 0)
        );
        let part = |body: &[u8], n| {
            decode_message(
                &message(
                    1,
                    crate::repl::Message::SnapshotPart { records: n },
                    &[],
                    body,
                ),
                1 << 20,
            )
            .map(|(m, _)| m.records.len())
        };
        assert_eq!(part(&body, 2), Ok(body.len()));
        assert_eq!(part(&body, 3), Err(WireError::BadField), "count");
        // A piece past the section's size, a version 0, padding, a cut.
        let mut bad = body.clone();
        bad[16] = 5; // offset 5 + 5 > 9
        assert_eq!(part(&bad, 2), Err(WireError::BadField));
        let mut bad = body.clone();
        bad[24] = 0;
        assert_eq!(part(&bad, 2), Err(WireError::BadField));
        let mut bad = body.clone();
        bad[RECORD_HEADER_BYTES + 3] = 1;
        assert_eq!(part(&bad, 2), Err(WireError::NonZeroPadding));
        assert_eq!(part(&body[..body.len() - 8], 2), Err(WireError::BadLength));
        let mut bad = body.clone();
        bad[0..4].copy_from_slice(&(RECORD_ID_BYTES_MAX as u32 + 1).to_le_bytes());
        assert_eq!(part(&bad, 2), Err(WireError::BadField));
        // The checksum covers the records.
        let mut m = message(
            1,
            crate::repl::Message::SnapshotPart { records: 2 },
            &[],
            &body,
        );
        let last = m.len() - 9;
        m[last] ^= 1;
        assert_eq!(decode_message(&m, 1 << 20), Err(WireError::BadChecksum));
        // A snapshot carries exactly its incarnation's creation frame.
        let begin = |inc, body: &[u8]| {
            decode_message(
                &message(
                    1,
                    crate::repl::Message::Snapshot { incarnation: inc },
                    &[],
                    body,
                ),
                1 << 20,
            )
            .map(|_| ())
        };
        assert_eq!(begin(9, &created(9)), Ok(()));
        assert!(begin(8, &created(9)).is_err());
        assert!(begin(9, &[]).is_err());
        assert!(begin(9, &frame_pair(1)).is_err());
        // A tail of term 0 or a node past the limit.
        let end = |t: SnapshotTail| {
            let m = crate::repl::Message::SnapshotEnd {
                start: crate::repl::Position::default(),
                sections: 0,
            };
            decode_message(&message(1, m, &[], &t.to_bytes()), 1 << 20).map(|_| ())
        };
        assert_eq!(end(TAIL), Ok(()));
        assert_eq!(
            end(SnapshotTail { term: 0, ..TAIL }),
            Err(WireError::BadField)
        );
        // The unlinked flag shares the retention word's top bit (a
        // retention is never negative): both survive the round trip.
        let unlinked = SnapshotTail {
            retention_ns: i64::MAX,
            unlinked: true,
            ..TAIL
        };
        assert_eq!(SnapshotTail::from_bytes(&unlinked.to_bytes()), Ok(unlinked));
        assert_eq!(end(unlinked), Ok(()));
        let far = SnapshotTail {
            active: Some(NODE_ID_MAX + 1),
            ..TAIL
        };
        assert_eq!(end(far), Err(WireError::BadField));
    }

    #[test]
    fn messages_round_trip() {
        use crate::repl::{Message as M, Position};
        let at = Position { seq: 41, term: 3 };
        let cases = [
            (
                M::Subscribe {
                    incarnation: 9,
                    holds: at,
                },
                &b"safCkpt=x"[..],
                Vec::new(),
            ),
            (
                M::Frames {
                    first: 10,
                    last: 11,
                    prev_term: 2,
                    behind: 70_000,
                },
                &[][..],
                frame_pair(10),
            ),
            (M::Snapshot { incarnation: 9 }, &[][..], created(9)),
            (
                M::Closing {
                    reason: crate::repl::CloseReason::SnapshotsOvertaken,
                },
                &[][..],
                Vec::new(),
            ),
            (M::SnapshotPart { records: 2 }, &[][..], two_records()),
            (
                M::SnapshotEnd {
                    start: at,
                    sections: 2,
                },
                &[][..],
                TAIL.to_bytes().to_vec(),
            ),
            (
                M::Ack {
                    holds: at,
                    openers: 3,
                },
                &[][..],
                Vec::new(),
            ),
            (M::Heartbeat, &[][..], Vec::new()),
            (M::UnlinkRequest { incarnation: 5 }, &[][..], Vec::new()),
            (M::UnlinkAnswer { code: 12 }, &[][..], Vec::new()),
            (
                M::Forward {
                    incarnation: 5,
                    ask: 3,
                },
                &[][..],
                forward_request(),
            ),
            (
                M::ForwardAnswer {
                    ask: 3,
                    seq: 99,
                    result: 0,
                    index: 0,
                },
                &[][..],
                Vec::new(),
            ),
            (
                M::ForwardAnswer {
                    ask: 4,
                    seq: 100,
                    result: 0,
                    index: 0,
                },
                &[][..],
                {
                    let mut id = Vec::new();
                    encode_forward_id(&[0, 0, 0, 9], &mut id);
                    id
                },
            ),
            (M::Hello { nonce: [7; 32] }, &[][..], Vec::new()),
            (M::Proof { mac: [9; 32] }, &[][..], Vec::new()),
            (
                M::Offer {
                    incarnation: 9,
                    term: 3,
                    node: 4,
                    placed: true,
                    written: true,
                },
                &b"safCkpt=offered"[..],
                Vec::new(),
            ),
        ];
        for (m, name, frames) in cases {
            let bytes = message(7, m, name, &frames);
            assert_eq!(bytes.len() % 8, 0);
            assert_eq!(message_bytes(&bytes), Some(bytes.len()));
            let (got, n) = decode_message(&bytes, 1 << 20).unwrap();
            assert_eq!(n, bytes.len());
            assert_eq!((got.link, got.message, got.name), (7, m, name));
            match m {
                M::SnapshotPart { .. } => assert_eq!(got.records, &frames[..]),
                M::SnapshotEnd { .. } => assert_eq!(got.tail, Some(TAIL)),
                M::Forward { .. } => assert_eq!(got.forward, &frames[..]),
                M::ForwardAnswer { ask: 4, .. } => assert_eq!(got.forward, &[0, 0, 0, 9]),
                M::ForwardAnswer { .. } => assert!(got.forward.is_empty()),
                _ => assert_eq!(got.frames, &frames[..]),
            }
            // Any truncation is seen.
            assert_eq!(
                decode_message(&bytes[..n - 8], 1 << 20),
                Err(WireError::Truncated)
            );
        }
    }

    /// A vector write of two elements (an id with padding, data without).
    fn forward_request() -> Vec<u8> {
        let mut out = Vec::new();
        ForwardRequest {
            op: ForwardOp::Write,
            time: 0,
            incarnation: 0xABCD,
            elements: vec![
                ForwardElement {
                    id: b"abc",
                    offset: 3,
                    data: b"12345678",
                },
                ForwardElement {
                    id: b"",
                    offset: 0,
                    data: b"x",
                },
            ],
        }
        .encode(&mut out);
        out
    }

    #[test]
    fn forwarded_changes_round_trip_and_break_no_rule() {
        let bytes = forward_request();
        assert_eq!(bytes.len(), 24 + 24 + 8 + 8 + 24 + 8);
        let r = ForwardRequest::decode(&bytes).unwrap();
        assert_eq!(
            (r.op, r.time, r.incarnation, r.elements.len()),
            (ForwardOp::Write, 0, 0xABCD, 2)
        );
        assert_eq!(r.elements[0].id, b"abc");
        assert_eq!(
            (r.elements[0].offset, r.elements[0].data),
            (3, &b"12345678"[..])
        );
        assert_eq!(r.elements[1].data, b"x");
        let mut again = Vec::new();
        r.encode(&mut again);
        assert_eq!(again, bytes);
        // Every truncation, and every change of a padding byte, is refused.
        for n in 0..bytes.len() {
            assert!(ForwardRequest::decode(&bytes[..n]).is_err(), "{n} bytes");
        }
        for at in [
            1,
            2,
            3,
            24 + 2,
            24 + 7,
            24 + 24 + 3,
            24 + 24 + 8 + 8 + 24 + 1,
        ] {
            let mut bad = bytes.clone();
            bad[at] = 1;
            assert_eq!(
                ForwardRequest::decode(&bad),
                Err(WireError::NonZeroPadding),
                "byte {at}"
            );
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; 8]);
        assert_eq!(ForwardRequest::decode(&longer), Err(WireError::BadLength));
        // The operations' rules.
        let one = |op, time, id: &'static [u8], offset, data: &'static [u8]| {
            let mut out = Vec::new();
            ForwardRequest {
                op,
                time,
                incarnation: 1,
                elements: vec![ForwardElement { id, offset, data }],
            }
            .encode(&mut out);
            ForwardRequest::decode(&out).map(|r| r.op)
        };
        use ForwardOp as O;
        assert_eq!(one(O::Overwrite, 0, b"a", 0, b"d"), Ok(O::Overwrite));
        assert_eq!(
            one(O::Overwrite, 0, b"a", 1, b"d"),
            Err(WireError::BadField)
        );
        assert_eq!(
            one(O::Overwrite, 5, b"a", 0, b"d"),
            Err(WireError::NonZeroPadding)
        );
        assert_eq!(one(O::Create, 5, b"a", 0, b"d"), Ok(O::Create));
        assert_eq!(
            one(O::CreateGenerated, 5, b"", 0, b"d"),
            Ok(O::CreateGenerated)
        );
        assert_eq!(
            one(O::CreateGenerated, 5, b"a", 0, b"d"),
            Err(WireError::BadField)
        );
        assert_eq!(one(O::Delete, 0, b"a", 0, b""), Ok(O::Delete));
        assert_eq!(one(O::Delete, 0, b"a", 0, b"d"), Err(WireError::BadField));
        assert_eq!(one(O::SetExpiration, 9, b"a", 0, b""), Ok(O::SetExpiration));
        assert_eq!(one(O::SetRetention, 9, b"", 0, b""), Ok(O::SetRetention));
        assert_eq!(one(O::Synchronize, 9, b"", 0, b""), Ok(O::Synchronize));
        assert_eq!(
            one(O::Synchronize, 9, b"", 0, b"d"),
            Err(WireError::BadField)
        );
        assert_eq!(
            one(O::SetRetention, 9, b"a", 0, b""),
            Err(WireError::BadField)
        );
        let mut two = bytes.clone();
        two[0] = O::Overwrite as u8;
        assert_eq!(ForwardRequest::decode(&two), Err(WireError::BadField));
        let mut unknown = bytes.clone();
        unknown[0] = 9;
        assert_eq!(ForwardRequest::decode(&unknown), Err(WireError::BadField));
        // A count no bytes could hold is refused before anything is kept.
        let mut many = bytes[..24].to_vec();
        many[4..8].copy_from_slice(&(FORWARD_ELEMENTS_MAX as u32).to_le_bytes());
        assert_eq!(ForwardRequest::decode(&many), Err(WireError::Truncated));
        // A generated id's body.
        let mut id = Vec::new();
        encode_forward_id(b"0123456789", &mut id);
        assert_eq!(decode_forward_id(&id), Ok(&b"0123456789"[..]));
        assert_eq!(
            decode_forward_id(&id[..id.len() - 8]),
            Err(WireError::BadLength)
        );
        id[4] = 1;
        assert_eq!(decode_forward_id(&id), Err(WireError::NonZeroPadding));
    }

    #[test]
    fn bad_messages_are_refused() {
        use crate::repl::{Message as M, Position};
        let sub = message(
            1,
            M::Subscribe {
                incarnation: 9,
                holds: Position::default(),
            },
            b"abc",
            &[],
        );
        // The limit, the checksum, the format, padding, unknown kinds.
        assert_eq!(decode_message(&sub, 40), Err(WireError::BadLength));
        let mut bad = sub.clone();
        bad[41] ^= 1; // a name byte
        assert_eq!(decode_message(&bad, 1 << 20), Err(WireError::BadChecksum));
        let mut bad = sub.clone();
        bad[9] = WIRE_VERSION + 1;
        assert_eq!(
            decode_message(&bad, 1 << 20),
            Err(WireError::BadFormat(WIRE_VERSION + 1))
        );
        let mut bad = sub.clone();
        bad[45] = 1; // the name's padding
        assert_eq!(
            decode_message(&bad, 1 << 20),
            Err(WireError::NonZeroPadding)
        );
        let mut bad = sub.clone();
        bad[8] = 77;
        assert_eq!(decode_message(&bad, 1 << 20), Err(WireError::BadKind(77)));
        let mut bad = sub.clone();
        bad[36..40].copy_from_slice(&5000u32.to_le_bytes());
        assert_eq!(decode_message(&bad, 1 << 20), Err(WireError::BadField));
        // A name too long is not encoded either.
        let mut out = vec![0u8; 4096];
        let long = [b'x'; WIRE_NAME_BYTES_MAX + 1];
        let m = M::Subscribe {
            incarnation: 1,
            holds: Position::default(),
        };
        assert_eq!(
            encode_message(1, &m, &long, &[], &mut out),
            Err(WireError::BadField)
        );
        // Carried frames: sealed, in order, as many as announced.
        let m = M::Frames {
            first: 10,
            last: 11,
            prev_term: 2,
            behind: 0,
        };
        let ok = message(1, m, &[], &frame_pair(10));
        assert!(decode_message(&ok, 1 << 20).is_ok());
        let wrong_start = message(
            1,
            M::Frames {
                first: 9,
                last: 10,
                prev_term: 2,
                behind: 0,
            },
            &[],
            &frame_pair(10),
        );
        assert!(matches!(
            decode_message(&wrong_start, 1 << 20),
            Err(WireError::BadFrame(_))
        ));
        let too_few = message(
            1,
            M::Frames {
                first: 10,
                last: 12,
                prev_term: 2,
                behind: 0,
            },
            &[],
            &frame_pair(10),
        );
        assert_eq!(decode_message(&too_few, 1 << 20), Err(WireError::BadField));
        // A sealed frame inside is refused (one format on the wire).
        let mut sealed = frame_pair(10);
        let first = frame_bytes(1, 3);
        seal(&mut sealed[..first]);
        assert!(matches!(
            decode_message(&message(1, m, &[], &sealed), 1 << 20),
            Err(WireError::BadFrame(DecodeError::BadFlags(_)))
        ));
        let mut damaged = ok.clone();
        let last = damaged.len() - 8;
        damaged[last] ^= 1;
        // The message's checksum covers its frames.
        assert_eq!(
            decode_message(&damaged, 1 << 20),
            Err(WireError::BadChecksum)
        );
        // Fields a kind does not use are zero.
        let mut bad = message(1, M::Heartbeat, &[], &[]);
        bad[20] = 1;
        assert_eq!(
            decode_message(&bad, 1 << 20),
            Err(WireError::NonZeroPadding)
        );
    }
}
