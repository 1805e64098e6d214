//! The delta-log ring: every mutation, in commit order, as `ckpt_core::frame`s.
//!
//! Positions are byte counts since the log began (`u64`, never wrap); a frame
//! at position `p` lives at ring offset `p % capacity`. A frame never straddles
//! the ring's end: the writer pads to the end first. Positions are this ring's
//! own business: frames carry the checkpoint-wide sequence number instead
//! (`seq`, +1 per frame), which the log publishes with the tail and which a
//! consumer checks for density (a jump means the ring is damaged).
//!
//! **Appending** (claim holder only): announce the end of the bytes about to be
//! written in `reserve`, write the frame, pass the operation's commit point,
//! then **publish** by storing the new `tail` (Release). Consumers read only
//! below `tail`, so they never see a frame being written; a writer killed
//! before publishing leaves the tail where it was and its successor either
//! publishes the finished frame (commit point passed) or forgets it.
//!
//! **Consuming**: each consumer keeps its own cursor. Writers never wait for
//! consumers (the active process must not be slowed by a standby), so a
//! consumer more than `capacity` bytes behind has lost frames: it gets
//! [`LogError::Lagged`] with the oldest position still intact, and must
//! resynchronize from the sections themselves (they are the authority; the log
//! is only their history): it notes the tail *before* reading them, then
//! continues from there and skips every frame its copy already contains (see
//! the catch-up rule in `ops::consume`). Overrun is detected, seqlock style, by
//! re-reading `reserve` after copying frames out: once per walk of the ring
//! ([`Log::scan`]), which consumers that keep up take frame runs by.

use ckpt_core::frame::{self, Frame, FrameHeader, HEADER_BYTES};

use crate::sync::{fence, AtomicU32, AtomicU64, Ordering};

/// Byte access to the ring's memory (mapped memory, or atomics in loom models).
pub trait RingBytes {
    /// Copies `src` to ring offset `at` (`at + src.len()` ≤ capacity).
    fn write(&self, at: usize, src: &[u8]);
    /// Stores little-endian words at ring offset `at` (8-aligned).
    fn write_words(&self, at: usize, words: &[u64]) {
        for (i, w) in words.iter().enumerate() {
            self.write(at + 8 * i, &w.to_le_bytes());
        }
    }
    /// Copies `src` to ring offset `at` (8-aligned) followed by zero bytes up
    /// to the next multiple of 8.
    fn write_padded(&self, at: usize, src: &[u8]) {
        self.write(at, src);
        let pad = src.len().next_multiple_of(8) - src.len();
        self.write(at + src.len(), &[0u8; 8][..pad]);
    }
    /// Writes a whole frame at ring offset `at` (8-aligned, the frame inside
    /// the ring): the header's words, then the id and the data, each padded
    /// with zeros to a whole word.
    fn write_frame(&self, at: usize, header: &[u64; HEADER_BYTES / 8], id: &[u8], data: &[u8]) {
        self.write_words(at, header);
        self.write_padded(at + HEADER_BYTES, id);
        self.write_padded(at + frame::data_offset(id.len()), data);
    }
    /// Copies ring bytes at `at` into `dst` (may observe concurrent writes).
    fn read(&self, at: usize, dst: &mut [u8]);
    /// Appends `len` ring bytes at `at` to `out` (may observe concurrent
    /// writes), without first zeroing the room they take.
    fn append(&self, at: usize, len: usize, out: &mut Vec<u8>) {
        let from = out.len();
        out.resize(from + len, 0);
        self.read(at, &mut out[from..]);
    }
    /// Ring capacity in bytes (a power of two).
    fn capacity(&self) -> usize;
}

/// The largest frame a ring of `capacity` bytes takes; larger mutations are
/// split into `Stage` frames.
pub const fn frame_bytes_max(capacity: usize) -> usize {
    capacity / 4
}

/// The log's shared words and bytes.
pub struct Log<'a, B: RingBytes> {
    tail: &'a AtomicU64,
    reserve: &'a AtomicU64,
    seq: &'a AtomicU64,
    bytes: B,
}

/// A frame written but not yet published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// The frame's ring position.
    pub position: u64,
    /// The tail to publish.
    pub end: u64,
    /// The frame's sequence number.
    pub seq: u64,
}

/// Why a consumer could not read the next frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogError {
    /// The consumer fell more than the ring's capacity behind; frames before
    /// `oldest` are gone. Resynchronize from the sections, then resume.
    Lagged {
        /// The oldest position still in the ring.
        oldest: u64,
    },
    /// Bytes below the tail are not a valid frame: the segment is damaged.
    Corrupt {
        /// Where.
        at: u64,
    },
}

impl core::fmt::Display for LogError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LogError::Lagged { oldest } => write!(
                f,
                "consumer fell behind the log ring; frames before position {oldest} are gone (resynchronize from the sections)"
            ),
            LogError::Corrupt { at } => write!(f, "log ring is corrupt at position {at}"),
        }
    }
}

impl core::error::Error for LogError {}

impl<'a, B: RingBytes> Log<'a, B> {
    /// A view of a log: its published tail, reserve, last published sequence
    /// number and ring bytes.
    pub fn new(tail: &'a AtomicU64, reserve: &'a AtomicU64, seq: &'a AtomicU64, bytes: B) -> Self {
        debug_assert!(bytes.capacity().is_power_of_two());
        Self {
            tail,
            reserve,
            seq,
            bytes,
        }
    }

    /// Ring capacity in bytes.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// The sequence number of the last published frame.
    pub fn seq(&self) -> u64 {
        // SYNC POINT: Acquire pairs with the Release half of the tail swap in
        // `publish`, which follows the seq store.
        self.seq.load(Ordering::Acquire)
    }

    /// The published tail.
    pub fn tail(&self) -> u64 {
        // SYNC POINT: Acquire pairs with the Release store in `publish`.
        self.tail.load(Ordering::Acquire)
    }

    /// The published tail and the sequence number of the frame that ends
    /// there, read as one pair: `None` while a frame is being written (ask
    /// again), the pair otherwise.
    ///
    /// `publish` stores the number before the tail, so the number alone may
    /// be a frame ahead of the tail read with it; that frame's reservation
    /// is then visible (see below), and the pair is refused.
    pub fn published(&self) -> Option<(u64, u64)> {
        let tail = self.tail();
        let seq = self.seq();
        // SYNC POINT: the Acquire load of `seq` above pairs with the Release
        // fence in `write`, which precedes the number's store: a number of a
        // frame not yet published comes with that frame's reservation.
        let reserve = self.reserve.load(Ordering::Relaxed);
        (reserve <= tail && self.tail() == tail).then_some((tail, seq))
    }

    /// Writes one frame (and any padding before it) after position `after`
    /// (the tail, or the end of the frames written since) without publishing
    /// it. The caller sets `header.seq` and keeps the frame within
    /// [`frame_bytes_max`]. Claim holder only.
    #[inline(always)]
    pub fn write(&self, after: u64, header: FrameHeader, id: &[u8], data: &[u8]) -> Pending {
        let capacity = self.bytes.capacity() as u64;
        let bytes = header.frame_bytes() as u64;
        assert!(bytes <= frame_bytes_max(capacity as usize) as u64);
        let mask = capacity - 1;
        let tail = after;
        let offset = tail & mask;
        // A frame never straddles the end; a gap too short for a pad header is
        // skipped by consumers without one.
        let pad = if offset + bytes > capacity {
            capacity - offset
        } else {
            0
        };
        // Positions never get near 2^64 (validated at open); wrapping keeps a
        // damaged tail from panicking: consumers then report the log corrupt.
        let lsn = tail.wrapping_add(pad);
        let end = lsn.wrapping_add(bytes);
        self.reserve.store(end, Ordering::Relaxed);
        // SYNC POINT: Release fence pairs with the Acquire fence in `scan`:
        // a consumer that copied any byte written below sees this reserve.
        fence(Ordering::Release);
        if pad >= HEADER_BYTES as u64 {
            let pad_header = FrameHeader::pad(pad as usize);
            self.bytes
                .write_words(offset as usize, &pad_header.to_words());
        }
        let at = (lsn & mask) as usize;
        self.bytes.write_frame(at, &header.to_words(), id, data);
        Pending {
            position: lsn,
            end,
            seq: header.seq,
        }
    }

    /// The end of the frames written so far: the tail, or (after writes not
    /// yet published) `reserve`. Claim holder only.
    pub fn written_end(&self) -> u64 {
        // Only the claim holder moves either, so Relaxed reads our own values.
        self.reserve
            .load(Ordering::Relaxed)
            .max(self.tail.load(Ordering::Relaxed))
    }

    /// Publishes every frame below `end`, the last of which has sequence
    /// number `seq`. Claim holder only (and recovery).
    ///
    /// A SeqCst swap, not a plain store: besides the Release that pairs with
    /// the Acquire load in `tail`/`scan`, it orders the publication before
    /// the writer's later SeqCst load of the doorbell (Dekker with
    /// [`Doorbell::arm`]).
    #[inline]
    pub fn publish(&self, end: u64, seq: u64) {
        self.seq.store(seq, Ordering::Relaxed);
        // SYNC POINT: SeqCst swap: Release half pairs with the Acquire loads of
        // the tail (and of `seq`, stored just before); SeqCst half pairs with
        // the sleeper's SeqCst RMW (`Doorbell::arm`) + load.
        self.tail.swap(end, Ordering::SeqCst);
    }

    /// Covers the frames written past the tail and not published (their
    /// operation never reached its commit point) with padding, and
    /// publishes it: consumers skip it, and `reserve` never moves back, so a
    /// consumer that copied ring bytes those frames overwrote still sees the
    /// overrun (`scan`'s check against `reserve`; moving `reserve` back to
    /// the tail hid it). Claim holder only (recovery).
    pub fn pad_unpublished(&self) {
        let tail = self.tail.load(Ordering::Relaxed);
        let reserve = self.reserve.load(Ordering::Relaxed);
        let capacity = self.bytes.capacity() as u64;
        let mut at = tail;
        while at < reserve {
            // Frames never straddle the ring's end: one pad a lap.
            let offset = at & (capacity - 1);
            let len = (reserve - at).min(capacity - offset);
            // Shorter than a header only at a lap's end, a gap consumers
            // skip without one.
            if len >= HEADER_BYTES as u64 {
                let pad = FrameHeader::pad(len as usize);
                self.bytes.write_words(offset as usize, &pad.to_words());
            }
            at += len;
        }
        if reserve > tail {
            self.publish(reserve, self.seq.load(Ordering::Relaxed));
        }
    }

    /// Appends the ring's bytes of each span `(position, bytes)` (whole
    /// frames, published: an earlier walk found them) to `out`, in order,
    /// then checks that the writer overran none of them: `Lagged` if it did,
    /// `Corrupt` for a span that is not below the tail or crosses the ring's
    /// end. On an error, what was appended must be discarded.
    pub fn copy_spans(
        &self,
        spans: impl IntoIterator<Item = (u64, usize)>,
        out: &mut Vec<u8>,
    ) -> Result<(), LogError> {
        let capacity = self.bytes.capacity();
        let tail = self.tail();
        let mut oldest = None;
        for (position, bytes) in spans {
            let at = (position & (capacity as u64 - 1)) as usize;
            let ends_past = position
                .checked_add(bytes as u64)
                .is_none_or(|end| end > tail);
            if at + bytes > capacity || ends_past {
                return Err(LogError::Corrupt { at: position });
            }
            oldest.get_or_insert(position);
            self.bytes.append(at, bytes, out);
        }
        // SYNC POINT: Acquire fence pairs with the Release fence in `write`:
        // if any byte copied above was being rewritten, `reserve` shows it
        // (the oldest span is the first to be overrun), as in `scan`.
        fence(Ordering::Acquire);
        let reserve = self.reserve.load(Ordering::Relaxed);
        match oldest {
            Some(start) if reserve > start + capacity as u64 => Err(LogError::Lagged {
                oldest: reserve - capacity as u64,
            }),
            _ => Ok(()),
        }
    }

    /// Copies the frame at `cursor` into `buf` and decodes it, skipping padding.
    /// Returns `Ok(None)` at the tail. On success, `cursor` moves past the frame.
    pub fn read_next<'b>(
        &self,
        cursor: &mut u64,
        buf: &'b mut Vec<u8>,
    ) -> Result<Option<Frame<'b>>, LogError> {
        let Some((position, _)) = self.next_frame_at(cursor, Some(buf))? else {
            return Ok(None);
        };
        frame::decode(buf, false)
            .map(Some)
            .map_err(|_| LogError::Corrupt { at: position })
    }

    /// The header and position of the frame at `cursor`, skipping padding,
    /// without copying its body (for an index of the ring). Returns
    /// `Ok(None)` at the tail. On success, `cursor` moves past the frame.
    pub fn read_next_header(
        &self,
        cursor: &mut u64,
    ) -> Result<Option<(u64, FrameHeader)>, LogError> {
        self.next_frame_at(cursor, None)
    }

    /// The next frame's position and header; with `body`, the whole frame is
    /// copied into it too. Both copies are checked against `reserve` after
    /// they are made.
    fn next_frame_at(
        &self,
        cursor: &mut u64,
        mut body: Option<&mut Vec<u8>>,
    ) -> Result<Option<(u64, FrameHeader)>, LogError> {
        let mut found = None;
        self.scan(cursor, |frame| {
            if let Some(buf) = body.as_deref_mut() {
                buf.clear();
                frame.copy_to(buf);
            }
            found = Some((frame.position, frame.header));
            false
        })?;
        Ok(found)
    }

    /// Walks the frames published from `cursor` on (padding skipped),
    /// handing each to `visit` until it returns false or the tail, as the
    /// tail was at the call, is reached; `cursor` then moves past the last
    /// frame visited.
    ///
    /// The tail and `reserve` are read once per walk, not per frame: a
    /// consumer that keeps up reads the writer's words (and so takes their
    /// cache line from the writer's core) once per batch.
    ///
    /// What `visit` sees (the header, and the bytes [`Visited::copy_to`]
    /// copies) is validated only when the walk ends: on an error, whatever
    /// `visit` did with it must be discarded, and `cursor` stays where it
    /// was. `Lagged` if the writer overran any of the walked frames.
    pub fn scan(
        &self,
        cursor: &mut u64,
        mut visit: impl FnMut(Visited<'_, B>) -> bool,
    ) -> Result<(), LogError> {
        let capacity = self.bytes.capacity() as u64;
        let start = *cursor;
        let tail = self.tail();
        if start >= tail {
            return Ok(());
        }
        if tail - start > capacity {
            return Err(LogError::Lagged {
                oldest: tail.saturating_sub(capacity),
            });
        }
        let mut at_pos = start;
        let mut malformed = false;
        while at_pos < tail {
            let at = (at_pos & (capacity - 1)) as usize;
            if at + HEADER_BYTES > capacity as usize {
                // Too short for a pad frame: the writer went on at the next lap.
                at_pos += capacity - at as u64;
                continue;
            }
            let mut head = [0u8; HEADER_BYTES];
            self.bytes.read(at, &mut head);
            let header = match frame::decode_header(&head) {
                Ok(h)
                    if h.frame_bytes() >= HEADER_BYTES
                        && at + h.frame_bytes() <= capacity as usize
                        && at_pos + h.frame_bytes() as u64 <= tail =>
                {
                    h
                }
                _ => {
                    malformed = true;
                    break;
                }
            };
            let position = at_pos;
            at_pos += header.frame_bytes() as u64;
            if header.kind == frame::FrameKind::Pad {
                continue;
            }
            let go_on = visit(Visited {
                position,
                header,
                at,
                bytes: &self.bytes,
            });
            if !go_on {
                break;
            }
        }
        // SYNC POINT: Acquire fence pairs with the Release fence in `write`:
        // if any byte copied above was being rewritten, `reserve` shows it.
        // The walk's first frame is its oldest: if it is intact, all are.
        fence(Ordering::Acquire);
        let reserve = self.reserve.load(Ordering::Relaxed);
        if reserve > start + capacity {
            return Err(LogError::Lagged {
                oldest: reserve - capacity,
            });
        }
        if malformed {
            return Err(LogError::Corrupt { at: at_pos });
        }
        *cursor = at_pos;
        Ok(())
    }
}

/// A frame met by [`Log::scan`] (not validated until the walk ends).
pub struct Visited<'r, B: RingBytes> {
    /// Its log position.
    pub position: u64,
    /// Its header.
    pub header: FrameHeader,
    at: usize,
    bytes: &'r B,
}

impl<B: RingBytes> Visited<'_, B> {
    /// Appends the whole frame, as the ring holds it, to `out`.
    pub fn copy_to(&self, out: &mut Vec<u8>) {
        self.bytes.append(self.at, self.header.frame_bytes(), out);
    }
}

/// A doorbell for sleepers on the log tail: a word that says "someone may
/// sleep", armed by each sleeper before its last look at the tail and
/// disarmed by the first writer that sees it, which then wakes everyone.
///
/// A count of sleepers (as [`crate::notify::Sleeper`]) would make every write while a
/// sleeper is being woken (it takes microseconds to run again) pay a wake
/// syscall of its own; the doorbell costs one wake per sleep. A doorbell
/// left armed by a process killed in its sleep costs the next writer one
/// wake, not every writer one each.
///
/// The pair has no loom model: loom treats SeqCst accesses as AcqRel (the
/// limitations in its README), under which this Dekker pair, like any made
/// of SeqCst accesses rather than fences, shows a lost wake-up that the
/// memory model rules out (all SeqCst operations take one total order: if
/// the sleeper's load of the tail comes before the writer's swap, its arm
/// came before the writer's load of the doorbell). A fence would cost every
/// write an `mfence`. `wait_wakes_on_every_publish` in `shm/tests/segment.rs`
/// drives the pair with real threads.
pub struct Doorbell<'a>(&'a AtomicU32);

impl<'a> Doorbell<'a> {
    /// The doorbell on `word`.
    pub fn new(word: &'a AtomicU32) -> Self {
        Doorbell(word)
    }

    /// Arms it; the sleeper then re-reads the tail (SeqCst) and sleeps only
    /// if it is unchanged. SYNC POINT: SeqCst RMW: pairs with the writer's
    /// SeqCst tail swap and its SeqCst load in [`Doorbell::take`] (Dekker:
    /// either the writer sees the doorbell armed, or the sleeper sees the
    /// new tail). Re-armed on every look: a writer may have disarmed it for
    /// another sleeper.
    pub fn arm(&self) {
        self.0.swap(1, Ordering::SeqCst);
    }

    /// The writer's side, after publishing: true (and disarmed) if it was
    /// armed, and the caller wakes every sleeper. A plain load first: a
    /// doorbell nobody armed stays a shared cache line.
    pub fn take(&self) -> bool {
        // SYNC POINT: SeqCst load and swap, the writer's half of the pair
        // described at `arm`.
        self.0.load(Ordering::SeqCst) != 0 && self.0.swap(0, Ordering::SeqCst) != 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use ckpt_core::frame::{FrameKind, Mutation};
    use std::cell::RefCell;

    struct VecRing(RefCell<Vec<u8>>);

    impl RingBytes for VecRing {
        fn write(&self, at: usize, src: &[u8]) {
            self.0.borrow_mut()[at..at + src.len()].copy_from_slice(src);
        }
        fn read(&self, at: usize, dst: &mut [u8]) {
            dst.copy_from_slice(&self.0.borrow()[at..at + dst.len()]);
        }
        fn capacity(&self) -> usize {
            self.0.borrow().len()
        }
    }

    fn overwrite(id: &[u8], data: &[u8], version: u64) -> FrameHeader {
        let mut h = FrameHeader::new(FrameKind::Overwrite);
        (h.id_len, h.data_len, h.version, h.seq) =
            (id.len() as u16, data.len() as u32, version, version);
        h
    }

    /// A log's tail, reserve and sequence words, for a 1 KiB test ring.
    #[derive(Default)]
    struct Words(AtomicU64, AtomicU64, AtomicU64);

    impl Words {
        /// A log over these words and a fresh 1 KiB ring filled with `fill`.
        fn log(&self, fill: u8) -> Log<'_, VecRing> {
            Log::new(
                &self.0,
                &self.1,
                &self.2,
                VecRing(RefCell::new(vec![fill; 1024])),
            )
        }
    }

    /// Writes one frame after the tail and publishes it.
    fn append(log: &Log<'_, VecRing>, h: FrameHeader, id: &[u8], data: &[u8]) -> Pending {
        let p = log.write(log.written_end(), h, id, data);
        log.publish(p.end, p.seq);
        p
    }

    /// Copying the spans a walk found, merged into runs of contiguous
    /// bytes, gives what the walk copied frame by frame; a writer that
    /// overran the oldest span makes it `Lagged`, a span past the tail or
    /// across the ring's end `Corrupt`.
    #[test]
    fn spans_a_walk_found_copy_as_the_walk_does() {
        let words = Words::default();
        let log = words.log(0xEE);
        let mut cursor = 0u64;
        let mut v = 0u64;
        let mut last_runs = Vec::new();
        for round in 0..60u64 {
            // Several frames per walk, wrapping the 1 KiB ring now and then.
            for _ in 0..1 + round % 5 {
                v += 1;
                let data = vec![v as u8; (v % 41) as usize];
                append(&log, overwrite(b"s", &data, v), b"s", &data);
            }
            let (mut walked, mut runs) = (Vec::new(), Vec::<(u64, usize)>::new());
            log.scan(&mut cursor, |f| {
                f.copy_to(&mut walked);
                let bytes = f.header.frame_bytes();
                // A frame at the ring's start begins a run: a run never
                // crosses the ring's end.
                match runs.last_mut() {
                    Some((p, n)) if *p + *n as u64 == f.position && f.at != 0 => *n += bytes,
                    _ => runs.push((f.position, bytes)),
                }
                true
            })
            .unwrap();
            let mut copied = Vec::new();
            log.copy_spans(runs.iter().copied(), &mut copied).unwrap();
            assert_eq!(copied, walked, "round {round}");
            last_runs = runs;
        }
        // The writer laps the last walk's oldest frame: the copy is refused.
        let oldest = last_runs[0];
        for _ in 0..20 {
            v += 1;
            append(&log, overwrite(b"s", &[1; 40], v), b"s", &[1; 40]);
        }
        let mut out = Vec::new();
        assert!(matches!(
            log.copy_spans([oldest], &mut out),
            Err(LogError::Lagged { .. })
        ));
        let tail = log.tail();
        assert_eq!(
            log.copy_spans([(tail - 8, 16)], &mut Vec::new()),
            Err(LogError::Corrupt { at: tail - 8 })
        );
        // 16 bytes from 8 before a lap's start, below the tail.
        let lap = tail / 1024 * 1024;
        let across = if tail >= lap + 8 { lap - 8 } else { lap - 1032 };
        assert_eq!(
            log.copy_spans([(across, 16)], &mut Vec::new()),
            Err(LogError::Corrupt { at: across })
        );
    }

    #[test]
    fn headers_alone_come_out_where_whole_frames_do() {
        let words = Words::default();
        let log = words.log(0xEE);
        let (mut whole, mut skim) = (0u64, 0u64);
        let mut buf = Vec::new();
        for v in 1..=120u64 {
            let data = vec![v as u8; (v % 53) as usize];
            append(&log, overwrite(b"s", &data, v), b"s", &data);
            let before = whole;
            let frame = log.read_next(&mut whole, &mut buf).unwrap().unwrap();
            let (at, header) = log.read_next_header(&mut skim).unwrap().unwrap();
            // The same frame, past the same padding, ending at the same place.
            assert_eq!((header, skim), (frame.header, whole));
            assert!(at >= before && at + header.frame_bytes() as u64 == whole);
        }
        assert!(log.read_next_header(&mut skim).unwrap().is_none());
    }

    #[test]
    fn one_scan_copies_what_frame_by_frame_reads_do() {
        let words = Words::default();
        let log = words.log(0xEE);
        let (mut scanned, mut single) = (0u64, 0u64);
        let mut buf = Vec::new();
        let mut v = 0u64;
        for round in 0..60u64 {
            // Several frames per walk, wrapping the 1 KiB ring now and then.
            for _ in 0..1 + round % 5 {
                v += 1;
                let data = vec![v as u8; (v % 41) as usize];
                append(&log, overwrite(b"s", &data, v), b"s", &data);
            }
            let (mut out, mut visited) = (Vec::new(), 0);
            log.scan(&mut scanned, |f| {
                f.copy_to(&mut out);
                visited += 1;
                true
            })
            .unwrap();
            let mut at = 0;
            for _ in 0..visited {
                let bytes = log.read_next(&mut single, &mut buf).unwrap().unwrap();
                let bytes = bytes.header.frame_bytes();
                assert_eq!(&out[at..][..bytes], &buf[..]);
                at += bytes;
            }
            assert_eq!((at, scanned), (out.len(), single));
            assert!(log.read_next(&mut single, &mut buf).unwrap().is_none());
        }
        // A walk stops where its visitor says, the cursor past that frame.
        let mut cursor = 0u64;
        let words = Words::default();
        let log = words.log(0);
        for v in 1..=3 {
            append(&log, overwrite(b"s", b"abc", v), b"s", b"abc");
        }
        let mut seen = Vec::new();
        log.scan(&mut cursor, |f| {
            seen.push(f.header.seq);
            seen.len() < 2
        })
        .unwrap();
        assert_eq!(seen, [1, 2]);
        assert_eq!(
            log.read_next(&mut cursor, &mut buf)
                .unwrap()
                .unwrap()
                .header
                .seq,
            3
        );
    }

    /// A walk whose first frame a writer is overwriting (its reservation
    /// reaches that frame's bytes) is refused as a whole, however many of its
    /// frames were intact, and its cursor stays put.
    #[test]
    fn a_walk_overrun_by_a_writer_is_refused_whole() {
        let words = Words::default();
        let log = words.log(0);
        let mut p = append(&log, overwrite(b"s", b"0123", 1), b"s", b"0123");
        let first = p.position;
        for v in 2..=6 {
            p = append(&log, overwrite(b"s", b"0123", v), b"s", b"0123");
        }
        // A writer a lap ahead has reserved the bytes of the first frame.
        words.1.store(first + 1024 + 8, Ordering::Relaxed);
        let mut cursor = first;
        let mut visited = 0;
        let got = log.scan(&mut cursor, |_| {
            visited += 1;
            true
        });
        assert!(matches!(got, Err(LogError::Lagged { .. })), "{got:?}");
        assert!(visited > 1);
        assert_eq!(cursor, first);
        assert!(p.end > first);
    }

    #[test]
    fn frames_come_out_in_order_across_wraps() {
        let words = Words::default();
        let log = words.log(0xEE);
        let mut cursor = 0;
        let mut buf = Vec::new();
        for v in 1..=200u64 {
            let data = vec![v as u8; (v % 37) as usize];
            let pending = log.write(log.written_end(), overwrite(b"s", &data, v), b"s", &data);
            assert!(
                log.tail() < pending.end,
                "written frames are not published yet"
            );
            log.publish(pending.end, pending.seq);
            assert_eq!(log.seq(), v);
            let frame = log.read_next(&mut cursor, &mut buf).unwrap().unwrap();
            assert_eq!(frame.header.version, v);
            assert_eq!(
                frame.mutation(),
                Some(Mutation::Overwrite {
                    id: b"s",
                    data: &data
                })
            );
            assert!(log.read_next(&mut cursor, &mut buf).unwrap().is_none());
        }
    }

    #[test]
    fn unpublished_frames_are_invisible() {
        let words = Words::default();
        let log = words.log(0);
        log.write(log.written_end(), overwrite(b"s", b"x", 1), b"s", b"x");
        let mut cursor = 0;
        assert!(log
            .read_next(&mut cursor, &mut Vec::new())
            .unwrap()
            .is_none());
        log.pad_unpublished();
        assert_eq!(log.tail(), log.written_end(), "published as padding");
        append(&log, overwrite(b"s", b"y", 1), b"s", b"y");
        let mut buf = Vec::new();
        let f = log.read_next(&mut cursor, &mut buf).unwrap().unwrap();
        assert_eq!(f.data, b"y");
    }

    /// A consumer that copied ring bytes a dead writer's unpublished frame
    /// overwrote is told it lagged, also after recovery has dropped that
    /// frame (before, recovery moved `reserve` back to the tail, and the
    /// walk's check passed the torn bytes as a frame).
    #[test]
    fn a_walk_overrun_by_a_frame_recovery_drops_is_told_it_lagged() {
        let words = Words::default();
        let log = words.log(0);
        let positions: Vec<u64> = (1..=12)
            .map(|v| {
                append(
                    &log,
                    overwrite(b"s", &[v as u8; 40], v),
                    b"s",
                    &[v as u8; 40],
                )
                .position
            })
            .collect();
        // A walk from a frame the 1 KiB ring still holds and that the next
        // two frames, 496 bytes at the tail, overwrite.
        let tail = log.tail();
        let mut cursor = *positions
            .iter()
            .find(|&&p| p + 1024 > tail && p + 1024 < tail + 496)
            .expect("a frame near the ring's oldest");
        let start = cursor;
        let mut copied = Vec::new();
        let walked = log.scan(&mut cursor, |f| {
            if f.position == start {
                // While the walk copies: a writer overwrites the frames it
                // is walking, dies, and recovery drops its frame.
                let big = [0xEE; 176];
                for v in [13, 14] {
                    log.write(log.written_end(), overwrite(b"s", &big, v), b"s", &big);
                }
                log.pad_unpublished();
            }
            f.copy_to(&mut copied);
            true
        });
        assert!(
            matches!(walked, Err(LogError::Lagged { .. })),
            "the torn walk passed: {walked:?}"
        );
    }

    #[test]
    fn a_lagging_consumer_is_told_not_fed_garbage() {
        let words = Words::default();
        let log = words.log(0);
        for v in 1..=100 {
            append(&log, overwrite(b"s", b"0123456789", v), b"s", b"0123456789");
        }
        let mut cursor = 0;
        match log.read_next(&mut cursor, &mut Vec::new()) {
            Err(LogError::Lagged { oldest }) => assert!(oldest > 0),
            other => panic!("expected Lagged, got {other:?}"),
        }
    }

    #[test]
    fn corrupt_bytes_below_the_tail_are_reported() {
        let (tail, reserve, seq) = (AtomicU64::new(64), AtomicU64::new(64), AtomicU64::new(0));
        let log = Log::new(
            &tail,
            &reserve,
            &seq,
            VecRing(RefCell::new(vec![0x5A; 1024])),
        );
        let mut cursor = 0;
        assert_eq!(
            log.read_next(&mut cursor, &mut Vec::new()).unwrap_err(),
            LogError::Corrupt { at: 0 }
        );
    }
}

#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use crate::sync::AtomicU8;
    use ckpt_core::frame::FrameKind;
    use loom::sync::Arc;

    struct AtomicRing(Vec<AtomicU8>);

    impl RingBytes for &AtomicRing {
        fn write(&self, at: usize, src: &[u8]) {
            for (i, b) in src.iter().enumerate() {
                self.0[at + i].store(*b, Ordering::Relaxed);
            }
        }
        fn read(&self, at: usize, dst: &mut [u8]) {
            for (i, d) in dst.iter_mut().enumerate() {
                *d = self.0[at + i].load(Ordering::Relaxed);
            }
        }
        fn capacity(&self) -> usize {
            self.0.len()
        }
    }

    /// A ring, its words, and a thread appending two frames to it (frame `v`:
    /// sequence number and version `v`, data `[v; 8]`).
    struct Racing {
        ring: Arc<AtomicRing>,
        tail: Arc<AtomicU64>,
        reserve: Arc<AtomicU64>,
        seq: Arc<AtomicU64>,
        writer: loom::thread::JoinHandle<()>,
    }

    fn racing_appender() -> Racing {
        let ring = Arc::new(AtomicRing((0..512).map(|_| AtomicU8::new(0)).collect()));
        let tail = Arc::new(AtomicU64::new(0));
        let reserve = Arc::new(AtomicU64::new(0));
        let seq = Arc::new(AtomicU64::new(0));
        let writer = {
            let (ring, tail, reserve, seq) =
                (ring.clone(), tail.clone(), reserve.clone(), seq.clone());
            loom::thread::spawn(move || {
                let log = Log::new(&tail, &reserve, &seq, &*ring);
                for v in 1..=2u64 {
                    let mut h = FrameHeader::new(FrameKind::Overwrite);
                    (h.data_len, h.version, h.seq) = (8, v, v);
                    let p = log.write(log.written_end(), h, b"", &[v as u8; 8]);
                    log.publish(p.end, p.seq);
                }
            })
        };
        Racing {
            ring,
            tail,
            reserve,
            seq,
            writer,
        }
    }

    /// Runs `check` on the log as every interleaving with the appender
    /// (preemptions bounded to 2) leaves it to a reader, then joins it.
    fn with_racing_appender(check: impl Fn(&Log<'_, &AtomicRing>) + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(2);
        builder.check(move || {
            let r = racing_appender();
            check(&Log::new(&r.tail, &r.reserve, &r.seq, &*r.ring));
            r.writer.join().unwrap();
        });
    }

    /// A consumer racing the appender sees frames in order and whole, or stops.
    #[test]
    fn consumer_sees_whole_frames_in_order() {
        with_racing_appender(|log| {
            let mut cursor = 0;
            let mut buf = Vec::new();
            let mut expect = 1;
            for _ in 0..2 {
                match log.read_next(&mut cursor, &mut buf) {
                    Ok(Some(f)) => {
                        assert_eq!(f.header.version, expect);
                        assert!(log.seq() >= expect, "a frame is visible before its seq");
                        assert_eq!(f.data, &[expect as u8; 8]);
                        expect += 1;
                    }
                    Ok(None) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        });
    }

    /// One walk of the ring ([`Log::scan`]) racing the appender copies a
    /// dense run of whole frames, each with its own data: the tail and
    /// `reserve` are read once for the whole walk.
    #[test]
    fn a_scan_copies_whole_frames_in_order() {
        with_racing_appender(|log| {
            let (mut cursor, mut out) = (0, Vec::new());
            log.scan(&mut cursor, |f| {
                f.copy_to(&mut out);
                true
            })
            .unwrap();
            let mut at = 0;
            let mut expect = 1;
            while at < out.len() {
                let f = frame::decode(&out[at..], false).unwrap();
                assert_eq!(f.header.seq, expect);
                assert_eq!(f.data, &[expect as u8; 8]);
                at += f.header.frame_bytes();
                expect += 1;
            }
            assert_eq!(at as u64, cursor);
        });
    }
}
