//! The on-shm layout: every byte of a segment is defined in this file.
//!
//! One segment (a file in the segment directory, mapped `MAP_SHARED`) holds one
//! checkpoint. Regions are page aligned:
//!
//! ```text
//!  0      ┌──────────────────────────────┐
//!         │ SegmentHeader (2640 B)       │ immutable: magic, layout version (published
//!         │   immutable + CRC            │   last), attributes, geometry, incarnation, name;
//!         │   replicated state           │ replicated: last seq, active replica + term,
//!         │   host-local state           │   retention, counters, role; host-local: claim,
//!         │                              │   intent, log tail, sleepers, lifecycle, acks,
//!         │                              │   the replicas' remote openers
//!  4096   ├──────────────────────────────┤
//!         │ OpenerEntry × openers_max    │ who has the checkpoint open (pid, PID ns, lease)
//!         ├──────────────────────────────┤
//!         │ index: u64 bucket × 2^k      │ open-addressing hash table: BucketWord
//!         ├──────────────────────────────┤
//!         │ SlotHeader × sections_max    │ 96 B fixed part + the id bytes, each slot:
//!         │   (stride slot_header_stride)│   life, commit, expiration (+ seq), buffer metas
//!         ├──────────────────────────────┤
//!         │ data: 2 buffers per slot     │ section bytes, double buffered
//!         │   (stride 2 × buffer_stride) │
//!         ├──────────────────────────────┤
//!         │ log ring (log_bytes, 2^k)    │ delta-log frames (ckpt_core::frame)
//!         └──────────────────────────────┘ segment_bytes (rounded to the fs block)
//! ```
//!
//! Packed atomic words are read and written only through the decoder structs
//! below ([`CommitWord`], [`LifeWord`], [`BucketWord`], [`ClaimWord`],
//! [`OpenerWord`], [`ActiveReplicaWord`], [`RoleWord`], [`StageWord`]), each with a test proving its fields do not overlap.

use ckpt_core::CreationAttributes;

use crate::sync::{AtomicI64, AtomicU32, AtomicU64};

/// First bytes of every segment.
pub const MAGIC: [u8; 8] = *b"CKPTSEG\0";
/// The layout version this build reads and writes. 0 means "not published".
pub const LAYOUT_VERSION: u32 = 9;
/// Bytes reserved for the header region.
pub const HEADER_REGION_BYTES: u64 = 4096;
/// Bytes in a checkpoint name field (`CHECKPOINT_NAME_BYTES_MAX`).
pub const NAME_BYTES: usize = ckpt_core::name::CHECKPOINT_NAME_BYTES_MAX;
/// Entries in the openers table.
pub const OPENERS_MAX: u32 = 128;
/// Alignment of regions.
pub const REGION_ALIGN: u64 = 4096;
/// Alignment of each section buffer (a cache line).
pub const BUFFER_ALIGN: u64 = 64;
/// Smallest log ring.
pub const LOG_BYTES_MIN: u64 = 64 * 1024;
/// Largest log ring.
pub const LOG_BYTES_MAX: u64 = 1 << 30;
/// Default log ring when the opener does not choose.
pub const LOG_BYTES_DEFAULT_MAX: u64 = 16 << 20;
/// The largest ring a replica takes from its primary's creation frame
/// (a host that sets its own size, the daemon's `log_bytes`, may go to
/// [`LOG_BYTES_MAX`]): a peer cannot make this host reserve more per
/// checkpoint.
pub const LOG_BYTES_FROM_PRIMARY_MAX: u64 = 64 << 20;

/// The segment header, in three parts:
///
/// - **immutable** (`magic` .. `header_crc32c`): written before the layout
///   version is published and never again, covered by the CRC;
/// - **replicated** (`log_seq` .. `role`): the checkpoint-wide state a replica
///   mirrors, each word changed only by a logged mutation under the claim (a
///   replica's apply writes the same values), plus the counters derived from
///   the sections (recomputed by recovery);
/// - **host-local** (`claim` ..): this host's writer claim and intent record,
///   its log ring positions, sleepers, openers' retention clock, lifecycle
///   flags and acknowledgements. A replica has its own.
#[repr(C)]
pub struct SegmentHeader {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`LAYOUT_VERSION`], stored last with Release when the segment is ready.
    pub layout_version: AtomicU32,
    /// `size_of::<SegmentHeader>()` of the writer.
    pub header_bytes: u32,
    /// Size of the whole segment file.
    pub segment_bytes: u64,
    /// `SaCkptCheckpointCreationFlagsT`.
    pub creation_flags: u32,
    /// `maxSectionIdSize`.
    pub section_id_bytes_max: u32,
    /// `checkpointSize`.
    pub checkpoint_bytes: u64,
    /// `retentionDuration` at creation.
    pub retention_ns_created: i64,
    /// `maxSections`.
    pub sections_max: u32,
    /// Entries in the openers table.
    pub openers_max: u32,
    /// `maxSectionSize`.
    pub section_bytes_max: u64,
    /// Buckets in the index (a power of two).
    pub index_buckets: u64,
    /// Bytes in the log ring (a power of two).
    pub log_bytes: u64,
    /// Creation time, ns since the epoch.
    pub created_ns: i64,
    /// Pid of the creator.
    pub creator_pid: u32,
    /// Bytes of `name` in use.
    pub name_len: u32,
    /// Random at creation: tells a re-created checkpoint of the same name from
    /// the old one; in every frame.
    pub incarnation: u64,
    /// The checkpoint's name.
    pub name: [u8; NAME_BYTES],
    /// CRC32C of bytes `0..CHECKSUMMED_BYTES` with `layout_version` read as 0:
    /// every immutable field, so an altered attribute is refused, not trusted.
    pub header_crc32c: u32,
    _pad0: [u8; 20],

    // ---- replicated state ----
    /// Sequence number of the last published frame (a replica: the last
    /// applied one).
    pub log_seq: AtomicU64,
    /// [`ActiveReplicaWord`]: the active replica and the term.
    pub active_replica: AtomicU64,
    /// Current retention duration.
    pub retention_ns: AtomicI64,
    /// Sequence number of the last checkpoint-wide frame (active replica,
    /// retention); stored after the value it describes.
    pub state_seq: AtomicU64,
    /// Live sections (derived from the slots).
    pub sections_live: AtomicU64,
    /// Sum of live sections' sizes (derived from the slots).
    pub memory_used: AtomicU64,
    /// Counter for generated section ids.
    pub next_generated_id: AtomicU64,
    /// [`RoleWord`]: primary or replica (and this host's fence).
    pub role: AtomicU64,

    // ---- host-local state ----
    /// The writer claim: [`ClaimWord`].
    pub claim: AtomicU64,
    /// The claim holder's intent: [`IntentWord`].
    pub intent_op: AtomicU64,
    /// The value the intent's commit-point store writes.
    pub intent_target: AtomicU64,
    /// The bucket an index intent touches (for an expiration change: unused).
    pub intent_bucket: AtomicU64,
    /// The log position to publish once the commit point is passed.
    pub intent_log_end: AtomicU64,
    /// The sequence number the intent's frames start at (stages come first).
    pub intent_seq: AtomicU64,
    /// How many claims were recovered from dead writers.
    pub recoveries: AtomicU64,
    /// Odd while the claim holder compacts the index (lookups that miss retry).
    pub index_seq: AtomicU64,

    /// Log position up to which frames are published.
    pub log_tail: AtomicU64,
    /// Log position up to which a writer may be writing bytes.
    pub log_reserve: AtomicU64,
    /// Nonzero while a process may sleep on `log_tail` (futex): a
    /// `log::Doorbell`.
    pub waiters: AtomicU32,
    /// Writers sleeping on acknowledgements (futex on `ack_epoch`).
    pub ack_waiters: AtomicU32,
    /// When the last opener closed (ns since the epoch), 0 while open.
    pub last_close_ns: AtomicI64,
    /// [`LIFECYCLE_UNLINKED`] | [`LIFECYCLE_DOOMED`].
    pub lifecycle: AtomicU64,
    /// Pid of the process that last set the active replica (for operators).
    pub active_pid: AtomicU64,
    /// Bumped (and futex-woken) whenever an acknowledgement advances.
    pub ack_epoch: AtomicU32,
    /// Writers sleeping on the claim (futex on its low half).
    pub claim_waiters: AtomicU32,
    /// The sequence number of the intent's own (last) frame, recorded with
    /// `intent_log_end`.
    pub intent_end_seq: AtomicU64,
    /// The log position where the intent's frames begin (its stages, if any,
    /// are published from there before its commit point): a snapshot resumes
    /// no later than this while the mutation is in flight.
    pub intent_log_start: AtomicU64,
    /// A replica's staging of a large mutation, which spans several applies
    /// (and outlives a dead applier): [`StageWord`]; 0 when none.
    pub stage: AtomicU64,
    /// Where the staged data starts in the section.
    pub stage_base: AtomicU64,
    /// Where the next piece goes.
    pub stage_next: AtomicU64,
    /// The sequence number of the last piece placed (its frame may not be
    /// published yet: it is then accepted again).
    pub stage_seq: AtomicU64,
    /// The log position of the staging's first frame (a snapshot resumes no
    /// later while the staging lasts).
    pub stage_log_start: AtomicU64,
    /// Per replica: the highest sequence number it has acknowledged.
    pub acks: [AckSlot; ACK_SLOTS],
    /// How many times a writer found the words derived from the slots (the
    /// counters, the index) damaged, and rebuilt them (`audit_held`).
    pub repairs: AtomicU64,
    /// A replica rebuilt from a snapshot: frames numbered up to this (the
    /// copy's catch-up horizon) are checked against the copy as they are
    /// applied; 0: none.
    pub catchup_end: AtomicU64,
    /// A replica: the primary's last frame as this host's link last heard
    /// of it (0: none known). With `feed_heard_ns`, what a promotion waits
    /// for (`Segment::promote_caught_up`).
    pub feed_seq: AtomicU64,
    /// A replica: when its link last heard from the primary (this host's
    /// `CLOCK_MONOTONIC`, ns; 0: never).
    pub feed_heard_ns: AtomicU64,
    /// Per replica (the same index as `acks`): how many processes of its
    /// host have it open, as its link last said. They keep the checkpoint
    /// from its retention running out here.
    pub remote_openers: [AtomicU64; ACK_SLOTS],
    /// Odd while a vector write's sections flip (`slot::flips_begin`), +1
    /// at its start and end: a reader of several sections that finds it
    /// even and unchanged around its copies saw each vector write whole
    /// (`Segment::read_isolated`).
    pub group_seq: AtomicU64,
}

/// One replica's acknowledgement.
#[repr(C)]
pub struct AckSlot {
    /// The replica's node id + 1; 0 while the slot is free.
    pub node: AtomicU64,
    /// The highest sequence number it has acknowledged (it holds every frame
    /// up to it).
    pub seq: AtomicU64,
}

/// Acknowledgement slots (replicas one checkpoint can track).
pub const ACK_SLOTS: usize = 8;

/// Bytes of the header covered by `header_crc32c` (everything before it).
pub const CHECKSUMMED_BYTES: usize = 2152;

/// The checksum of a header's immutable bytes (`layout_version` counted as 0,
/// since it is published after the checksum is written).
pub fn header_checksum(bytes: &[u8; CHECKSUMMED_BYTES]) -> u32 {
    let mut copy = *bytes;
    copy[8..12].fill(0);
    crc32c::crc32c(&copy)
}

/// Lifecycle flag: the name has been unlinked.
pub const LIFECYCLE_UNLINKED: u64 = 1;
/// Lifecycle flag: a sweeper is deleting the checkpoint (retention ran out).
pub const LIFECYCLE_DOOMED: u64 = 2;

/// One entry of the openers table.
#[repr(C)]
pub struct OpenerEntry {
    /// [`OpenerWord`].
    pub word: AtomicU64,
    /// The opener's PID namespace (the inode of its `/proc/self/ns/pid`), for
    /// operators reading `pid`: a pid means a process only in that
    /// namespace. Liveness never depends on it (see `lease`).
    pub pid_ns: AtomicU64,
    /// When it opened, ns since the epoch.
    pub opened_ns: AtomicI64,
    /// When it was last known alive (ns since the epoch): its process
    /// stamps it every 100 ms (`alive`), so that a reaper dates its death.
    pub alive_ns: AtomicI64,
    _pad: [u8; 32],
}

/// Size, time and sequence number of the version one of a slot's two
/// buffers holds.
#[repr(C)]
pub struct BufferMeta {
    /// Bytes of data in the buffer.
    pub size: AtomicU64,
    /// `lastUpdate` of the version in the buffer.
    pub time_ns: AtomicI64,
    /// Sequence number of the frame that made this version: read under the
    /// slot's seqlock with the data, so a snapshot knows exactly which frames
    /// its copy already contains.
    pub seq: AtomicU64,
}

/// Bytes of a slot's fixed part; its id bytes follow.
pub const SLOT_FIXED_BYTES: u64 = 96;

/// The fixed part of a section slot; the id bytes follow it.
#[repr(C)]
pub struct SlotHeader {
    /// [`LifeWord`].
    pub life: AtomicU64,
    /// [`CommitWord`].
    pub commit: AtomicU64,
    /// Absolute expiration, `i64::MAX` for never.
    pub expiration_ns: AtomicI64,
    /// Sequence number of the frame that set `expiration_ns` (the create, or
    /// the last expiration change); stored after it.
    pub expiration_seq: AtomicU64,
    /// Bytes of id, written while the slot is reserved.
    pub id_len: AtomicU32,
    _pad: [u8; 4],
    /// Host-local: how many bytes of each of the slot's two buffers are known
    /// to be allocated in the file (segments whose data region is created
    /// sparse allocate it as it is first written; see `Mapped::back_buffers`).
    pub backed: AtomicU64,
    /// The two buffers' metadata.
    pub buffers: [BufferMeta; 2],
}

impl SlotHeader {
    /// A zeroed header (free, never written), for models and tests off the mapping.
    pub fn new() -> Self {
        let meta = || BufferMeta {
            size: AtomicU64::new(0),
            time_ns: AtomicI64::new(0),
            seq: AtomicU64::new(0),
        };
        SlotHeader {
            life: AtomicU64::new(0),
            commit: AtomicU64::new(0),
            expiration_ns: AtomicI64::new(i64::MAX),
            expiration_seq: AtomicU64::new(0),
            id_len: AtomicU32::new(0),
            _pad: [0; 4],
            backed: AtomicU64::new(0),
            buffers: [meta(), meta()],
        }
    }
}

impl Default for SlotHeader {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(not(loom))]
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<SegmentHeader>() == 2648);
    assert!(align_of::<SegmentHeader>() == 8);
    assert!(offset_of!(SegmentHeader, layout_version) == 8);
    assert!(offset_of!(SegmentHeader, segment_bytes) == 16);
    assert!(offset_of!(SegmentHeader, section_bytes_max) == 56);
    assert!(offset_of!(SegmentHeader, incarnation) == 96);
    assert!(offset_of!(SegmentHeader, name) == 104);
    assert!(offset_of!(SegmentHeader, header_crc32c) == CHECKSUMMED_BYTES);
    // Replicated state: one cache line.
    assert!(offset_of!(SegmentHeader, log_seq) == 2176);
    assert!(offset_of!(SegmentHeader, role) == 2232);
    // Host-local state.
    assert!(offset_of!(SegmentHeader, claim) == 2240);
    assert!(offset_of!(SegmentHeader, log_tail) == 2304);
    assert!(offset_of!(SegmentHeader, acks) == 2416);
    assert!(offset_of!(SegmentHeader, repairs) == 2544);
    assert!(offset_of!(SegmentHeader, catchup_end) == 2552);
    assert!(offset_of!(SegmentHeader, feed_heard_ns) == 2568);
    assert!(offset_of!(SegmentHeader, remote_openers) == 2576);
    assert!(offset_of!(SegmentHeader, group_seq) == 2640);
    assert!(size_of::<SegmentHeader>() as u64 <= HEADER_REGION_BYTES);
    assert!(size_of::<OpenerEntry>() == 64);
    assert!(size_of::<SlotHeader>() as u64 == SLOT_FIXED_BYTES);
    assert!(offset_of!(SlotHeader, commit) == 8);
    assert!(offset_of!(SlotHeader, buffers) == 48);
    assert!(size_of::<BufferMeta>() == 24);
};

/// Where everything lives in a segment, derived from the attributes alone so
/// that an opener can recompute it and refuse a header that disagrees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Offset of the openers table.
    pub openers_offset: u64,
    /// Offset of the index buckets.
    pub index_offset: u64,
    /// Buckets (power of two, at least twice `sections_max`).
    pub index_buckets: u64,
    /// Offset of the slot headers.
    pub slots_offset: u64,
    /// Bytes from one slot header to the next.
    pub slot_header_stride: u64,
    /// Offset of the data buffers.
    pub data_offset: u64,
    /// Bytes of one buffer (`maxSectionSize` rounded to [`BUFFER_ALIGN`]).
    pub buffer_stride: u64,
    /// Offset of the log ring.
    pub log_offset: u64,
    /// Bytes in the log ring.
    pub log_bytes: u64,
    /// End of the log ring: the segment's minimal size.
    pub end: u64,
    /// `maxSections`.
    pub sections_max: u32,
}

const fn align_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

/// The default log ring for these attributes: room for at least 64 frames of a
/// full section (up to [`LOG_BYTES_DEFAULT_MAX`]).
pub fn default_log_bytes(attrs: &CreationAttributes) -> u64 {
    let frame = 48 + attrs.section_id_bytes_max + attrs.section_bytes_max;
    frame
        .saturating_mul(64)
        .clamp(LOG_BYTES_MIN, LOG_BYTES_DEFAULT_MAX)
        .next_power_of_two()
}

impl Geometry {
    /// The geometry for `attrs` with a log of `log_bytes` (a power of two within
    /// [`LOG_BYTES_MIN`]..=[`LOG_BYTES_MAX`]); `None` if it would not fit in `u64`.
    pub fn new(attrs: &CreationAttributes, log_bytes: u64) -> Option<Geometry> {
        if !log_bytes.is_power_of_two() || !(LOG_BYTES_MIN..=LOG_BYTES_MAX).contains(&log_bytes) {
            return None;
        }
        let sections = attrs.sections_max as u64;
        let openers_offset = HEADER_REGION_BYTES;
        let index_offset = align_up(openers_offset + OPENERS_MAX as u64 * 64, REGION_ALIGN);
        let index_buckets = (sections * 2).max(8).next_power_of_two();
        let slots_offset = align_up(index_offset + index_buckets * 8, REGION_ALIGN);
        let slot_header_stride = align_up(SLOT_FIXED_BYTES + attrs.section_id_bytes_max, 64);
        let data_offset = align_up(
            slots_offset.checked_add(sections.checked_mul(slot_header_stride)?)?,
            REGION_ALIGN,
        );
        let buffer_stride = align_up(attrs.section_bytes_max.max(1), BUFFER_ALIGN);
        let data_bytes = sections.checked_mul(2)?.checked_mul(buffer_stride)?;
        let log_offset = align_up(data_offset.checked_add(data_bytes)?, REGION_ALIGN);
        let end = log_offset.checked_add(log_bytes)?;
        Some(Geometry {
            openers_offset,
            index_offset,
            index_buckets,
            slots_offset,
            slot_header_stride,
            data_offset,
            buffer_stride,
            log_offset,
            log_bytes,
            end,
            sections_max: attrs.sections_max,
        })
    }

    /// Offset of slot `slot`'s id bytes.
    pub const fn slot_id(&self, slot: u32) -> u64 {
        self.slot_header(slot) + SLOT_FIXED_BYTES
    }

    /// Offset of slot `slot`'s header.
    pub const fn slot_header(&self, slot: u32) -> u64 {
        self.slots_offset + slot as u64 * self.slot_header_stride
    }

    /// Offset of buffer `buffer` (0 or 1) of slot `slot`.
    pub const fn buffer(&self, slot: u32, buffer: u32) -> u64 {
        self.data_offset + (slot as u64 * 2 + buffer as u64) * self.buffer_stride
    }
}

/// Field types a packed word can hold.
pub trait FieldBits: Copy {
    /// From the field's bits (already masked).
    fn from_bits(bits: u64) -> Self;
    /// To bits (masked by the caller).
    fn to_bits(self) -> u64;
}

macro_rules! field_bits_int {
    ($($t:ty),*) => {$(
        impl FieldBits for $t {
            #[inline]
            fn from_bits(bits: u64) -> Self { bits as $t }
            #[inline]
            fn to_bits(self) -> u64 { self as u64 }
        }
    )*};
}
field_bits_int!(u8, u16, u32, u64);

impl FieldBits for bool {
    #[inline]
    fn from_bits(bits: u64) -> Self {
        bits != 0
    }
    #[inline]
    fn to_bits(self) -> u64 {
        self as u64
    }
}

/// Defines a decoder for a packed `u64` word with named fields.
macro_rules! packed_word {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $shift:literal, $bits:literal; )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )+
        }

        impl $name {
            /// Decodes a raw word.
            #[inline]
            pub fn from(raw: u64) -> Self {
                Self { $( $field: <$ty as FieldBits>::from_bits((raw >> $shift) & ((1u64 << $bits) - 1)), )+ }
            }

            /// Encodes the fields (each truncated to its width).
            #[inline]
            pub fn value(self) -> u64 {
                0 $( | ((FieldBits::to_bits(self.$field) & ((1u64 << $bits) - 1)) << $shift) )+
            }

            /// `(shift, bits)` of every field, for the overlap test.
            #[cfg(test)]
            pub const FIELDS: &'static [(u32, u32)] = &[ $( ($shift, $bits), )+ ];
        }
    };
}

packed_word! {
    /// A slot's commit word: which buffer holds the committed version.
    ///
    /// Written only by the claim holder; readers validate against it (seqlock).
    pub struct CommitWord {
        /// Set while the claim holder writes the other buffer.
        pending: bool = 0, 1;
        /// The buffer (0 or 1) holding version `version`.
        cur: u32 = 1, 1;
        /// Committed version; 0 for a slot never written.
        version: u64 = 16, 48;
    }
}

/// The largest version a [`CommitWord`] holds.
pub const VERSION_MAX: u64 = (1 << 48) - 1;

/// The version after `v`: `v + 1`, and after [`VERSION_MAX`] 1 again (0
/// means "never written"). A section written 2^48 times (about 65 days at
/// 50 M writes a second) wraps instead of overflowing into the word's other
/// fields; a reader's copy spans two versions at most, so the wrap is never
/// ambiguous to it.
pub const fn next_version(v: u64) -> u64 {
    if v >= VERSION_MAX {
        1
    } else {
        v + 1
    }
}

/// Slot states in [`LifeWord::state`].
pub mod slot_state {
    /// Unused.
    pub const FREE: u8 = 0;
    /// Claimed by a create that has not reached its commit point.
    pub const RESERVED: u8 = 1;
    /// A live section.
    pub const LIVE: u8 = 2;
}

packed_word! {
    /// A slot's life word: its state and incarnation.
    pub struct LifeWord {
        /// One of [`slot_state`].
        state: u8 = 0, 8;
        /// Incremented each time the slot is reserved; a section handle
        /// remembers it to detect delete and reuse (ABA).
        gen: u32 = 32, 32;
    }
}

/// Bucket states in [`BucketWord::state`].
pub mod bucket_state {
    /// Never used since the last trim: ends a probe sequence.
    pub const EMPTY: u8 = 0;
    /// Points at a live slot.
    pub const LIVE: u8 = 1;
    /// Deleted: probing continues past it; reused by inserts, trimmed when it
    /// ends a chain.
    pub const TOMBSTONE: u8 = 2;
}

packed_word! {
    /// One index bucket.
    pub struct BucketWord {
        /// One of [`bucket_state`].
        state: u8 = 0, 2;
        /// High hash bits, to skip most id comparisons.
        tag: u16 = 2, 14;
        /// Low 16 bits of the slot's generation when inserted.
        gen: u16 = 16, 16;
        /// The slot.
        slot: u32 = 32, 32;
    }
}

packed_word! {
    /// The writer claim: who may mutate the checkpoint.
    pub struct ClaimWord {
        /// Opener-table index + 1 of the holder; 0 when free.
        owner: u16 = 0, 16;
        /// The holder's opener generation (detects a reused opener entry).
        owner_gen: u16 = 16, 16;
        /// Bumped on every release, so a stale compare-and-swap cannot succeed.
        epoch: u32 = 32, 32;
    }
}

/// Operations in [`IntentWord::op`].
pub mod intent_op {
    /// No mutation in flight.
    pub const NONE: u8 = 0;
    /// A section is being created.
    pub const CREATE: u8 = 1;
    /// A section's data is being replaced (write or overwrite).
    pub const WRITE: u8 = 2;
    /// A section is being deleted.
    pub const DELETE: u8 = 3;
    /// A section's expiration is being changed.
    pub const EXPIRE: u8 = 4;
    /// The active replica (and term) is being changed.
    pub const ACTIVE: u8 = 5;
    /// The retention duration is being changed.
    pub const RETAIN: u8 = 6;
    /// The checkpoint's name is being unlinked.
    pub const UNLINK: u8 = 7;
    /// A replica is being promoted: the active replica changes and the copy
    /// becomes the primary.
    pub const PROMOTE: u8 = 8;
    /// The sections of a vector write are being replaced together: each
    /// section's new version waits in its spare buffer (its pending bit set)
    /// until the group's commit point, [`GROUP_COMMITTED`] stored as the
    /// intent's target; the intent's slot is the group's first section's.
    pub const GROUP: u8 = 9;
    /// The target of a [`GROUP`] intent once the group passed its commit
    /// point (0 before).
    pub const GROUP_COMMITTED: u64 = 1;
}

packed_word! {
    /// What the claim holder is doing, so that a successor can finish or undo it.
    pub struct IntentWord {
        /// One of [`intent_op`].
        op: u8 = 0, 8;
        /// The slot concerned.
        slot: u32 = 32, 32;
    }
}

/// In [`OpenerWord::flags`], beside the open flags: the entry is a
/// replication link's (a node daemon shipping or applying the checkpoint),
/// not an open. It keeps the mapping usable like any entry, but does not
/// count as the checkpoint being open: its registration and its close leave
/// the retention clock alone, and a checkpoint with only links registered is
/// closed for the retention sweep.
pub const OPENER_LINK: u16 = 0x100;

packed_word! {
    /// One opener entry's identity word.
    pub struct OpenerWord {
        /// Pid of the opener; 0 when the entry is free.
        pid: u32 = 0, 32;
        /// Incremented on every claim of the entry.
        gen: u16 = 32, 16;
        /// Open flags (READ 1, WRITE 2, CREATE 4), and [`OPENER_LINK`].
        flags: u16 = 48, 16;
    }
}

packed_word! {
    /// The active replica and the term. Changed only by a logged
    /// `ActiveReplicaSet` under the claim (or its apply on a replica): the
    /// store of this word is that mutation's commit point.
    pub struct ActiveReplicaWord {
        /// True once an active replica is set.
        set: bool = 0, 1;
        /// Node id of the active replica.
        node: u32 = 1, 31;
        /// The term: 1 at creation, +1 with every change of active replica.
        term: u32 = 32, 32;
    }
}

/// Kinds of staging in [`StageWord::kind`].
pub mod stage_kind {
    /// None in progress.
    pub const NONE: u8 = 0;
    /// A large write or overwrite of a live section, into its spare buffer
    /// (`pending` set).
    pub const WRITE: u8 = 1;
    /// A large create, into a slot reserved for it (id copied).
    pub const CREATE: u8 = 2;
}

packed_word! {
    /// A replica's staging in progress.
    pub struct StageWord {
        /// One of [`stage_kind`].
        kind: u8 = 0, 8;
        /// The slot the pieces go to.
        slot: u32 = 32, 32;
    }
}

/// Roles in [`RoleWord::role`].
pub mod role {
    /// The checkpoint's primary copy: local writers write it.
    pub const PRIMARY: u8 = 0;
    /// A replica: written only by applying a primary's frames.
    pub const REPLICA: u8 = 1;
}

packed_word! {
    /// What this copy of the checkpoint is, and whether this host may act on
    /// it. Local writers write only while the whole word is 0: a primary,
    /// not fenced (one load and compare on the write path).
    pub struct RoleWord {
        /// One of [`role`].
        role: u8 = 0, 8;
        /// This host's node daemon has fenced it: the host's partition of
        /// the cluster has no quorum (corosync membership), so no local
        /// writer may change it and no promotion may make it the primary.
        /// Host-local, like the claim: a replica's apply never changes it.
        fenced: bool = 8, 1;
        /// A replica whose frames may differ from its primary's under the
        /// same sequence numbers and terms (a primary deposed by one of the
        /// same term, on a partition's other side): it counts as holding
        /// nothing until a snapshot replaces it. Set by `Segment::depose`;
        /// a diverged copy is not promoted, and a snapshot's new file starts
        /// without it.
        diverged: bool = 9, 1;
        /// A replica file another took the name of (a snapshot rebuilt the
        /// replica into a new file, renamed over this one): no frame changes
        /// it again, and it is never promoted (handles on it move to the
        /// file under the name: `ckpt`'s `follow.rs`). Set by
        /// `Segment::supersede`.
        superseded: bool = 10, 1;
        /// A primary that yielded to another incarnation of its name,
        /// created on another node before either knew of the other (SA has
        /// one checkpoint of a name: the outranking one stays, see
        /// `Segment::yield_to`). Set with `diverged`, so that a snapshot of
        /// the other replaces it; handles open on it move to that one, as
        /// if they had opened it.
        yielded: bool = 11, 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_disjoint(fields: &[(u32, u32)]) {
        let mut used = 0u64;
        for &(shift, bits) in fields {
            assert!(shift + bits <= 64, "field past bit 63");
            let mask = ((1u128 << bits) - 1) as u64;
            let m = mask << shift;
            assert_eq!(used & m, 0, "fields overlap at shift {shift}");
            used |= m;
        }
    }

    #[test]
    fn packed_words_have_disjoint_fields() {
        assert_disjoint(CommitWord::FIELDS);
        assert_disjoint(LifeWord::FIELDS);
        assert_disjoint(BucketWord::FIELDS);
        assert_disjoint(ClaimWord::FIELDS);
        assert_disjoint(IntentWord::FIELDS);
        assert_disjoint(OpenerWord::FIELDS);
        assert_disjoint(ActiveReplicaWord::FIELDS);
        assert_disjoint(RoleWord::FIELDS);
        assert_disjoint(StageWord::FIELDS);
    }

    #[test]
    fn versions_wrap_to_1_after_the_largest_a_commit_word_holds() {
        assert_eq!(next_version(1), 2);
        assert_eq!(next_version(VERSION_MAX - 1), VERSION_MAX);
        assert_eq!(next_version(VERSION_MAX), 1);
        let last = CommitWord {
            pending: false,
            cur: 1,
            version: next_version(VERSION_MAX),
        };
        assert_eq!(
            CommitWord::from(last.value()).version,
            1,
            "not truncated to 0"
        );
    }

    #[test]
    fn every_field_round_trips_at_its_maximum() {
        let c = CommitWord {
            pending: true,
            cur: 1,
            version: (1 << 48) - 1,
        };
        assert_eq!(CommitWord::from(c.value()), c);
        let b = BucketWord {
            state: 3,
            tag: (1 << 14) - 1,
            gen: u16::MAX,
            slot: u32::MAX,
        };
        assert_eq!(BucketWord::from(b.value()), b);
        let w = ClaimWord {
            owner: u16::MAX,
            owner_gen: u16::MAX,
            epoch: u32::MAX,
        };
        assert_eq!(ClaimWord::from(w.value()), w);
        let o = OpenerWord {
            pid: u32::MAX,
            gen: u16::MAX,
            flags: u16::MAX,
        };
        assert_eq!(OpenerWord::from(o.value()), o);
        let a = ActiveReplicaWord {
            set: true,
            node: (1 << 31) - 1,
            term: u32::MAX,
        };
        assert_eq!(ActiveReplicaWord::from(a.value()), a);
        assert_eq!(LifeWord::from(LifeWord { state: 2, gen: 7 }.value()).gen, 7);
        assert_eq!(
            IntentWord::from(IntentWord { op: 4, slot: 9 }.value()).slot,
            9
        );
    }

    #[test]
    fn geometry_is_page_aligned_and_ordered() {
        let attrs = CreationAttributes::new(100, 4096);
        let g = Geometry::new(&attrs, default_log_bytes(&attrs)).unwrap();
        for off in [
            g.openers_offset,
            g.index_offset,
            g.slots_offset,
            g.data_offset,
            g.log_offset,
        ] {
            assert_eq!(off % REGION_ALIGN, 0);
        }
        assert!(g.openers_offset < g.index_offset && g.index_offset < g.slots_offset);
        assert!(g.slots_offset + 100 * g.slot_header_stride <= g.data_offset);
        assert_eq!(g.index_buckets, 256);
        assert_eq!(
            g.buffer(99, 1) + g.buffer_stride,
            g.data_offset + 200 * 4096
        );
        assert!(g.log_offset >= g.buffer(99, 1) + g.buffer_stride);
        assert_eq!(g.end, g.log_offset + g.log_bytes);
        assert!(Geometry::new(&attrs, 1000).is_none());
    }
}
