//! The delta-log frame: the **one** byte format of a checkpoint mutation.
//!
//! Every mutation of a checkpoint (section create, write, overwrite, delete and
//! expiration change) is appended to the segment's log ring as one frame; the
//! replication engine ships the same bytes to replicas, which decode them with
//! [`decode`]. Little-endian, 8-byte aligned, a 48-byte header:
//!
//! ```text
//!  0       4       8              16                      24
//!  +-------+-------+---------------+-------+------+--------+
//!  | bytes | crc32c|      lsn      | kind  |flags | id_len | data_len |
//!  +-------+-------+---------------+-------+------+--------+----------+
//!  24                  32                  40                  48
//!  +-------------------+-------------------+-------------------+
//!  |     time_ns       |  arg (offset or   |     version       |
//!  |     (i64)         |  expiration, i64) |     (u64)         |
//!  +-------------------+-------------------+-------------------+
//!  48: section id (id_len bytes), data (data_len bytes unless DATA_ELIDED),
//!      zero padding to a multiple of 8 = `bytes`
//! ```
//!
//! - `bytes` is the whole frame, header and padding included.
//! - `crc32c` covers bytes `8..bytes` and is valid only when the `SEALED` flag is
//!   set. The shared-memory ring does not seal (its publication protocol already
//!   guarantees a consumer never sees a partial frame, and a checksum per write
//!   would double the cost of a 4 KiB overwrite); the replication engine seals
//!   each frame before it leaves the host, and receivers demand the seal.
//! - `lsn` is the frame's position in the log (bytes since the log began).
//! - `version` is the section's version after the mutation; `time_ns` the
//!   writer's wall clock (`lastUpdate`).
//! - `DATA_ELIDED`: the frame was too large for the ring, so it carries only
//!   `data_len`; a consumer reads the section itself (still at `version`, or it
//!   must resynchronize).
//! - A `Pad` frame fills the ring's tail end and carries nothing.

use core::fmt;

use crate::attrs::Time;

/// Bytes in a frame header.
pub const HEADER_BYTES: usize = 48;
/// Frames start and end on this boundary.
pub const FRAME_ALIGN: usize = 8;
/// Largest frame (`bytes` is a `u32`, rounded down to the alignment).
pub const FRAME_BYTES_MAX: usize = (u32::MAX as usize) & !(FRAME_ALIGN - 1);

/// Flag: the data bytes are not in the frame.
pub const FLAG_DATA_ELIDED: u8 = 0x1;
/// Flag: `crc32c` is valid.
pub const FLAG_SEALED: u8 = 0x2;
const FLAGS_KNOWN: u8 = FLAG_DATA_ELIDED | FLAG_SEALED;

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
            _ => return None,
        })
    }
}

/// The fixed-size part of a frame, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the frame records.
    pub kind: FrameKind,
    /// `FLAG_*` bits.
    pub flags: u8,
    /// Position of the frame in the log.
    pub lsn: u64,
    /// Section id length.
    pub id_len: u16,
    /// Data length (also when elided).
    pub data_len: u32,
    /// Writer's wall clock, nanoseconds since the epoch.
    pub time_ns: i64,
    /// Offset (write) or expiration (create, expiration change); 0 otherwise.
    pub arg: i64,
    /// Section version after the mutation.
    pub version: u64,
}

/// Bytes a frame with these lengths occupies.
pub const fn frame_bytes(id_len: usize, data_len: usize, elided: bool) -> usize {
    let body = HEADER_BYTES + id_len + if elided { 0 } else { data_len };
    (body + FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1)
}

impl FrameHeader {
    /// The frame's total size in bytes.
    pub const fn frame_bytes(&self) -> usize {
        frame_bytes(
            self.id_len as usize,
            self.data_len as usize,
            self.flags & FLAG_DATA_ELIDED != 0,
        )
    }

    /// The header as six little-endian 64-bit words, with `crc32c` zero: how
    /// the ring writer stores it (six word stores, no byte shuffling).
    #[inline]
    pub fn to_words(&self) -> [u64; HEADER_BYTES / 8] {
        let FrameHeader {
            kind,
            flags,
            lsn,
            id_len,
            data_len,
            time_ns,
            arg,
            version,
        } = *self;
        [
            self.frame_bytes() as u64,
            lsn,
            kind as u64 | (flags as u64) << 8 | (id_len as u64) << 16 | (data_len as u64) << 32,
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
    pub const fn pad(lsn: u64, bytes: usize) -> FrameHeader {
        // A pad's data_len is the filler after the header, so `frame_bytes` is `bytes`.
        FrameHeader {
            kind: FrameKind::Pad,
            flags: 0,
            lsn,
            id_len: 0,
            data_len: (bytes - HEADER_BYTES) as u32,
            time_ns: 0,
            arg: 0,
            version: 0,
        }
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
    /// Unknown flag bits.
    BadFlags(u8),
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
            DecodeError::BadFlags(x) => write!(f, "unknown frame flags {x:#x}"),
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
    /// The section id.
    pub id: &'a [u8],
    /// The data (empty when elided).
    pub data: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The mutation this frame records, or `None` for a pad.
    pub fn mutation(&self) -> Option<Mutation<'a>> {
        let h = &self.header;
        let id = self.id;
        Some(match h.kind {
            FrameKind::Create => Mutation::Create {
                id,
                expiration: Time(h.arg),
                data: self.data,
            },
            FrameKind::Write => Mutation::Write {
                id,
                offset: h.arg as u64,
                data: self.data,
            },
            FrameKind::Overwrite => Mutation::Overwrite {
                id,
                data: self.data,
            },
            FrameKind::Delete => Mutation::Delete { id },
            FrameKind::ExpirationSet => Mutation::ExpirationSet {
                id,
                expiration: Time(h.arg),
            },
            FrameKind::Pad => return None,
        })
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
        /// Initial data.
        data: &'a [u8],
    },
    /// Bytes written at an offset.
    Write {
        /// Section id.
        id: &'a [u8],
        /// Offset in the section.
        offset: u64,
        /// Bytes written.
        data: &'a [u8],
    },
    /// Data and size replaced.
    Overwrite {
        /// Section id.
        id: &'a [u8],
        /// New contents.
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
/// let header = FrameHeader {
///     kind: FrameKind::Overwrite, flags: 0, lsn: 0, id_len: 3, data_len: 4,
///     time_ns: 1, arg: 0, version: 2,
/// };
/// let mut buf = [0u8; 64];
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
    let elided = header.flags & FLAG_DATA_ELIDED != 0;
    if id.len() != header.id_len as usize
        || (!elided && data.len() != header.data_len as usize && header.kind != FrameKind::Pad)
    {
        return Err(EncodeError::BadLength);
    }
    let bytes = header.frame_bytes();
    if bytes > FRAME_BYTES_MAX {
        return Err(EncodeError::BadLength);
    }
    let out = out.get_mut(..bytes).ok_or(EncodeError::BufferTooSmall)?;
    out[..HEADER_BYTES].copy_from_slice(&header.to_bytes());
    let mut at = HEADER_BYTES;
    out[at..at + id.len()].copy_from_slice(id);
    at += id.len();
    if !elided && header.kind != FrameKind::Pad {
        out[at..at + data.len()].copy_from_slice(data);
        at += data.len();
    }
    out[at..].fill(0);
    Ok(bytes)
}

/// Sets `SEALED` and writes the checksum of a whole encoded frame.
pub fn seal(frame: &mut [u8]) {
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
    let header = FrameHeader {
        kind,
        flags,
        lsn: le_u64(b, 8),
        id_len: u16::from_le_bytes([b[18], b[19]]),
        data_len: le_u32(b, 20),
        time_ns: le_u64(b, 24) as i64,
        arg: le_u64(b, 32) as i64,
        version: le_u64(b, 40),
    };
    let declared = le_u32(b, 0) as usize;
    if declared % FRAME_ALIGN != 0 || declared != header.frame_bytes() {
        return Err(DecodeError::BadLength);
    }
    Ok(header)
}

/// Decodes and validates one frame at the start of `buf`.
///
/// With `require_seal`, unsealed frames are refused (bytes from the network);
/// a sealed frame's checksum is always verified.
pub fn decode(buf: &[u8], require_seal: bool) -> Result<Frame<'_>, DecodeError> {
    let header = decode_header(buf)?;
    let bytes = header.frame_bytes();
    let frame = buf.get(..bytes).ok_or(DecodeError::Truncated)?;
    if header.flags & FLAG_SEALED != 0 {
        let crc = le_u32(frame, 4);
        if crc32c::crc32c(&frame[8..]) != crc {
            return Err(DecodeError::BadChecksum);
        }
    } else if require_seal {
        return Err(DecodeError::Unsealed);
    } else if le_u32(frame, 4) != 0 {
        return Err(DecodeError::NonZeroPadding);
    }
    let elided = header.flags & FLAG_DATA_ELIDED != 0;
    let id_end = HEADER_BYTES + header.id_len as usize;
    let data_end = if elided || header.kind == FrameKind::Pad {
        id_end
    } else {
        id_end + header.data_len as usize
    };
    match header.kind {
        FrameKind::Pad
            if header.id_len != 0 || elided || header.version != 0 || header.arg != 0 =>
        {
            return Err(DecodeError::BadField)
        }
        FrameKind::Write if header.arg < 0 => return Err(DecodeError::BadField),
        FrameKind::Create | FrameKind::ExpirationSet if header.arg < 0 => {
            return Err(DecodeError::BadField)
        }
        FrameKind::Delete | FrameKind::ExpirationSet if header.data_len != 0 => {
            return Err(DecodeError::BadField)
        }
        _ => {}
    }
    if header.kind != FrameKind::Pad && frame[data_end..].iter().any(|&b| b != 0) {
        return Err(DecodeError::NonZeroPadding);
    }
    Ok(Frame {
        header,
        id: &frame[HEADER_BYTES..id_end],
        data: &frame[id_end..data_end],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: FrameKind, id_len: u16, data_len: u32) -> FrameHeader {
        FrameHeader {
            kind,
            flags: 0,
            lsn: 4096,
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
        assert_eq!(le_u32(&b, 0), 56);
        assert_eq!(le_u32(&b, 4), 0);
        assert_eq!(le_u64(&b, 8), 4096);
        assert_eq!(b[16], 2);
        assert_eq!(u16::from_le_bytes([b[18], b[19]]), 2);
        assert_eq!(le_u32(&b, 20), 3);
        assert_eq!(le_u64(&b, 24), 77);
        assert_eq!(le_u64(&b, 32), 5);
        assert_eq!(le_u64(&b, 40), 9);
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
            let h = header(kind, id.len() as u16, data.len() as u32);
            let mut buf = vec![0xAAu8; 128];
            let n = encode(&h, id, data, &mut buf).unwrap();
            assert_eq!(n % FRAME_ALIGN, 0);
            let f = decode(&buf[..n], false).unwrap();
            assert_eq!((f.header, f.id, f.data), (h, id, data));
            assert_eq!(decode(&buf[..n], true), Err(DecodeError::Unsealed));
            seal(&mut buf[..n]);
            let f = decode(&buf[..n], true).unwrap();
            assert_eq!((f.id, f.data), (id, data));
            buf[n - 1] ^= 1;
            assert_eq!(decode(&buf[..n], true), Err(DecodeError::BadChecksum));
        }
    }

    #[test]
    fn pad_frames_cover_their_span() {
        let h = FrameHeader::pad(8, 200);
        assert_eq!(h.frame_bytes(), 200);
        let mut buf = vec![0u8; 200];
        assert_eq!(encode(&h, b"", b"", &mut buf), Ok(200));
        let f = decode(&buf, false).unwrap();
        assert_eq!(f.mutation(), None);
        assert_eq!(f.header.frame_bytes(), 200);
    }

    #[test]
    fn elided_frames_keep_only_the_length() {
        let mut h = header(FrameKind::Overwrite, 1, 1 << 20);
        h.flags = FLAG_DATA_ELIDED;
        assert_eq!(h.frame_bytes(), 56);
        let mut buf = [0u8; 56];
        encode(&h, b"s", &[], &mut buf).unwrap();
        let f = decode(&buf, false).unwrap();
        assert_eq!(f.header.data_len, 1 << 20);
        assert!(f.data.is_empty());
    }

    #[test]
    fn garbage_is_refused_not_trusted() {
        assert_eq!(decode(&[0u8; 10], false), Err(DecodeError::Truncated));
        let h = header(FrameKind::Write, 1, 1);
        let mut buf = [0u8; 56];
        encode(&h, b"a", b"b", &mut buf).unwrap();
        let mut bad = buf;
        bad[16] = 99;
        assert_eq!(decode(&bad, false), Err(DecodeError::BadKind(99)));
        let mut bad = buf;
        bad[17] = 0x80;
        assert_eq!(decode(&bad, false), Err(DecodeError::BadFlags(0x80)));
        let mut bad = buf;
        bad[0] = 64;
        assert_eq!(decode(&bad, false), Err(DecodeError::BadLength));
        let mut bad = buf;
        bad[55] = 1;
        assert_eq!(decode(&bad, false), Err(DecodeError::NonZeroPadding));
        let mut bad = buf;
        bad[32..40].copy_from_slice(&(-1i64).to_le_bytes());
        assert_eq!(decode(&bad, false), Err(DecodeError::BadField));
        assert_eq!(decode(&buf[..48], false), Err(DecodeError::Truncated));
    }
}
