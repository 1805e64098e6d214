//! Segments: creating, validating, mapping and tracking who has them open.
//!
//! A segment is created under a temporary name, fully initialized, its layout
//! version published last, and only then `link(2)`ed under its real name, so no
//! opener can ever find a half-built segment. An opener checks the file (regular,
//! ours, no looser mode than configured), the magic, the layout version and that
//! the geometry recomputed from the attributes agrees with the file, before it
//! touches anything else; every offset read from the segment later is bounds
//! checked again at its use. A foreign or damaged file is refused with an error.

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ckpt_core::attrs::limits;
use ckpt_core::error::OpenError;
use ckpt_core::{CheckpointName, CreationAttributes, CreationFlags, OpenFlags, Time};
use memmap2::MmapRaw;

use crate::claim::Owner;
use crate::dir::{FileFault, SegmentDir};
use crate::layout::{
    self, default_log_bytes, role, ActiveReplicaWord, Geometry, OpenerEntry, OpenerWord, RoleWord,
    SegmentHeader, SlotHeader, LAYOUT_VERSION, LIFECYCLE_DOOMED, LIFECYCLE_UNLINKED, MAGIC,
    NAME_BYTES, OPENERS_MAX, OPENER_LINK,
};
use crate::sync::{AtomicU64, Ordering};
use crate::{dir, lease, proc};
use ckpt_core::frame::{self, Frame, FrameHeader, FrameKind, Mutation};

/// Environment variable naming the segment directory.
pub const ENV_DIR: &str = "CKPT_DIR";
/// Environment variable: `1` creates segments group read-write (0660).
pub const ENV_GROUP_ACCESS: &str = "CKPT_GROUP_ACCESS";
/// Environment variable: this host's node id (as its node daemon's
/// configuration says; default 0).
pub const ENV_NODE_ID: &str = "CKPT_NODE_ID";
/// Environment variable: the log ring size of checkpoints this process
/// creates, in bytes (a power of two from 64 KiB to 1 GiB; default: sized
/// from the attributes, up to 64 MiB). A larger ring lets an asynchronous
/// writer run further ahead of a replica before it needs a snapshot.
pub const ENV_LOG_BYTES: &str = "CKPT_LOG_BYTES";
/// The default segment directory.
pub const DEFAULT_DIR: &str = "/dev/shm/ckpt";
/// Segments up to this size are fully allocated at creation (no SIGBUS later
/// if the filesystem fills); larger ones allocate everything but their data
/// buffers at creation, and each buffer's pages before they are first written.
pub const PREALLOCATE_BYTES_MAX: u64 = 1 << 30;
/// Log positions beyond this are refused as damage (2^62 bytes: centuries of
/// logging at memory bandwidth).
const LOG_POSITION_MAX: u64 = 1 << 62;
/// How far ahead of this host's clock a recorded time may plausibly be (hosts
/// sharing a segment share a clock; this is room for its adjustments).
const CLOCK_SLACK_NS: i64 = 60_000_000_000;
/// Bounded retries of the open loop (creation races, sweeps in progress).
const OPEN_ATTEMPTS_MAX: u32 = 200;

/// Where segments live and how they are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The segment directory (tmpfs or hugetlbfs).
    pub dir: PathBuf,
    /// Create segments 0660 instead of 0600, and accept group-accessible ones.
    pub group_access: bool,
    /// Log ring size for new checkpoints; `None` picks [`default_log_bytes`].
    pub log_bytes: Option<u64>,
    /// This host's node id (recorded as the active replica's node).
    pub node_id: u32,
    /// How long a writer waits for another live writer before `TRY_AGAIN`.
    pub claim_timeout: Duration,
    /// How long a writer of a synchronous checkpoint waits for its replicas'
    /// acknowledgements before `TIMEOUT`.
    pub ack_timeout: Duration,
    /// A node daemon serves this directory and ships what is created here
    /// (it answered the creator): a synchronous checkpoint is born waiting
    /// for it (`ack::ADOPTION`), so that its first writes wait for the
    /// replicas the daemon places, not only for those whose links happen to
    /// be up already.
    pub daemon_adopts: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(DEFAULT_DIR),
            group_access: false,
            log_bytes: None,
            node_id: 0,
            claim_timeout: Duration::from_secs(2),
            ack_timeout: Duration::from_secs(2),
            daemon_adopts: false,
        }
    }
}

impl Config {
    /// The defaults, overridden by `CKPT_DIR`, `CKPT_GROUP_ACCESS=1`,
    /// `CKPT_NODE_ID` and `CKPT_LOG_BYTES`; `CKPT_DIR` or `CKPT_LOG_BYTES`
    /// set to nothing (or only blanks) counts as unset, as a shell's `VAR=`
    /// means. A node id that is not a number up to
    /// [`ckpt_core::frame::NODE_ID_MAX`], an empty one included, makes every
    /// open fail with `InvalidNode` (never a silent 0); a ring size that is
    /// not a power of two from 64 KiB to 1 GiB makes every creation fail
    /// with `NoResources` (never a silent default).
    pub fn from_env() -> Self {
        Config::from_vars(|name| std::env::var_os(name))
    }

    /// [`Config::from_env`] with the variables `var` gives.
    pub fn from_vars(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Self {
        let number = |v: std::ffi::OsString| -> Option<u64> { v.to_str()?.trim().parse().ok() };
        let blank = |v: &std::ffi::OsString| v.to_str().is_some_and(|s| s.trim().is_empty());
        let set = |name: &str| var(name).filter(|v| !blank(v));
        let mut config = Config::default();
        if let Some(dir) = set(ENV_DIR) {
            config.dir = PathBuf::from(dir);
        }
        config.group_access = var(ENV_GROUP_ACCESS).is_some_and(|v| v == "1");
        if let Some(id) = var(ENV_NODE_ID) {
            config.node_id = number(id)
                .filter(|&n| n <= u64::from(ckpt_core::frame::NODE_ID_MAX))
                .map_or(u32::MAX, |n| n as u32);
        }
        if let Some(bytes) = set(ENV_LOG_BYTES) {
            // 0 is no ring size: creations fail (see above).
            config.log_bytes = Some(number(bytes).unwrap_or(0));
        }
        config
    }

    /// The defaults with another directory.
    pub fn with_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            ..Config::default()
        }
    }

    /// File mode of new segments.
    pub fn file_mode(&self) -> u32 {
        if self.group_access {
            0o660
        } else {
            0o600
        }
    }
}

/// Why a file is not an acceptable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentFault {
    /// Another owner, not a regular file, or a looser mode than allowed.
    Permission,
    /// Wrong magic, unpublished, inconsistent geometry or damaged header.
    Corrupt,
    /// Another layout version.
    Incompatible,
}

impl From<SegmentFault> for OpenError {
    fn from(f: SegmentFault) -> OpenError {
        match f {
            SegmentFault::Permission => OpenError::Permission,
            SegmentFault::Corrupt => OpenError::Corrupt,
            SegmentFault::Incompatible => OpenError::Incompatible,
        }
    }
}

/// A mapped, validated segment. Not yet registered as an opener.
pub struct Mapped {
    map: MmapRaw,
    pub(crate) geometry: Geometry,
    pub(crate) attrs: CreationAttributes,
    pub(crate) name: CheckpointName,
    pub(crate) inode: u64,
    /// The slot headers and the data buffers, computed once from the geometry
    /// (the hot paths index them instead of recomputing offsets).
    slots: *mut u8,
    data: *mut u8,
    /// The open file description the segment was mapped from: it holds a
    /// registered opener's lease, and asks about the others' (see `lease`).
    file: File,
    /// True if the whole file was allocated at creation; otherwise data
    /// buffers are allocated as they are first written (`back_buffers`).
    data_backed: bool,
    /// The segment directory (reopened and checked again when the checkpoint
    /// is removed: a mapping holds no descriptor of it) and the file's name
    /// in it (what removing the checkpoint unlinks, if it is still this file).
    dir_config: Config,
    file_name: String,
    /// Opener-table index + 1 of this mapping's own registration (0: none).
    /// Its lease is held by `file` itself, which `F_OFD_GETLK` never reports,
    /// so liveness checks take it from here.
    pub(crate) own_entry: u16,
    /// The section a replica's apply found last (see `lookup_hinted`).
    pub(crate) apply_hint: std::sync::atomic::AtomicU64,
}

/// The data region could not be allocated in the segment's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom;

// SAFETY: the mapping is shared memory accessed only through atomics and
// validated byte copies; the raw pointer inside MmapRaw is never handed out as
// a reference to non-atomic data, so sharing across threads adds no data race.
unsafe impl Send for Mapped {}
// SAFETY: as above.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// A validated mapping: `geometry` fits inside `map`.
    #[allow(clippy::too_many_arguments)]
    fn new(
        map: MmapRaw,
        file: File,
        (dir_config, file_name): (Config, String),
        geometry: Geometry,
        attrs: CreationAttributes,
        name: CheckpointName,
        inode: u64,
    ) -> Mapped {
        debug_assert!(map.len() as u64 >= geometry.end);
        let data_backed = map.len() as u64 <= PREALLOCATE_BYTES_MAX;
        let base = map.as_mut_ptr();
        // SAFETY: both offsets lie inside the mapping (the geometry was
        // validated against its length); the mapping outlives these pointers
        // (they live in the same struct, and MmapRaw never moves its pages).
        let (slots, data) = unsafe {
            (
                base.add(geometry.slots_offset as usize),
                base.add(geometry.data_offset as usize),
            )
        };
        Mapped {
            map,
            geometry,
            attrs,
            name,
            inode,
            slots,
            data,
            file,
            data_backed,
            dir_config,
            file_name,
            own_entry: 0,
            apply_hint: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Removes the checkpoint's name if it is still this file (same inode).
    pub(crate) fn remove_name_if_same(&self) {
        let Ok(dir) = SegmentDir::open(&self.dir_config, false) else {
            return;
        };
        if dir.inode(&self.file_name) == Some(self.inode) {
            let _ = dir.remove(&self.file_name);
        }
    }

    /// Makes sure the first `bytes` bytes of both of slot `slot`'s buffers
    /// are allocated in the file before they are written, so that a write to
    /// a segment whose filesystem is full fails with an error instead of a
    /// SIGBUS. A load and a branch unless the slot's buffers grow (claim held).
    #[inline]
    pub(crate) fn back_buffers(&self, slot: u32, bytes: u64) -> Result<(), NoRoom> {
        if self.data_backed || bytes <= self.slot(slot).backed.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.back_buffers_cold(slot, bytes)
    }

    #[cold]
    #[inline(never)]
    fn back_buffers_cold(&self, slot: u32, bytes: u64) -> Result<(), NoRoom> {
        let g = &self.geometry;
        // Whole pages (at most the buffer), so small growths do not each cost
        // a system call.
        let want = bytes.next_multiple_of(4096).min(g.buffer_stride);
        for buffer in 0..2 {
            dir::preallocate_range(&self.file, g.buffer(slot, buffer), want).map_err(|_| NoRoom)?;
        }
        self.slot(slot).backed.store(want, Ordering::Relaxed);
        Ok(())
    }

    /// The byte of the segment file whose lease says opener entry `index`
    /// is alive: the entry's first byte.
    fn lease_byte(&self, index: usize) -> u64 {
        self.geometry.openers_offset + index as u64 * size_of::<OpenerEntry>() as u64
    }

    /// True if the opener of entry `index`, registered as `word`, still has
    /// the segment open: its lease is held (whatever its PID namespace).
    pub(crate) fn opener_alive(&self, index: usize, word: OpenerWord) -> bool {
        if index + 1 == self.own_entry as usize {
            // Ours: alive while registered.
            return word.pid != 0;
        }
        word.pid != 0 && lease::held_by_other(&self.file, self.lease_byte(index))
    }

    /// True if entry `index` is a live open (a live entry that is not a
    /// replication link's, [`crate::layout::OPENER_LINK`]).
    pub(crate) fn opener_opens(&self, index: usize, word: OpenerWord) -> bool {
        word.flags & crate::layout::OPENER_LINK == 0 && self.opener_alive(index, word)
    }

    /// Writes `bytes` at byte `at` of the segment's file with `pwrite`, for
    /// a segment nobody else maps yet (a replica being installed): the
    /// kernel stores into the page cache this mapping shows. `Err` where the
    /// filesystem refuses `write` (hugetlbfs); the caller stores through the
    /// mapping then.
    pub(crate) fn store_through_file(&self, at: u64, bytes: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        debug_assert!(at + bytes.len() as u64 <= self.map.len() as u64);
        self.file.write_all_at(bytes, at)
    }

    #[inline]
    pub(crate) fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The header.
    #[inline]
    pub fn header(&self) -> &SegmentHeader {
        // SAFETY: the mapping is at least HEADER_REGION_BYTES long and page
        // aligned (checked in `map_validated`/`create`); SegmentHeader is
        // repr(C), made of integers and atomics valid for any bit pattern; its
        // plain fields are written only before publication.
        unsafe { &*(self.base() as *const SegmentHeader) }
    }

    /// Slot `slot`'s header. Panics on an out-of-range slot (callers check).
    #[inline]
    pub(crate) fn slot(&self, slot: u32) -> &SlotHeader {
        assert!(
            slot < self.geometry.sections_max,
            "slot {slot} out of range"
        );
        let offset = slot as usize * self.geometry.slot_header_stride as usize;
        // SAFETY: slot < sections_max, so [offset, offset + stride) lies in the
        // slots region, which `Geometry` places inside the validated mapping;
        // strides are multiples of 64, so the header is aligned; SlotHeader is
        // atomics and integers, valid for any bit pattern.
        unsafe { &*(self.slots.add(offset) as *const SlotHeader) }
    }

    /// Pointer to slot `slot`'s id bytes (`section_id_bytes_max` of them).
    #[inline]
    pub(crate) fn slot_id_ptr(&self, slot: u32) -> *mut u8 {
        let header = self.slot(slot) as *const SlotHeader as *mut u8;
        // SAFETY: the id area follows the slot's fixed part, within its stride.
        unsafe { header.add(layout::SLOT_FIXED_BYTES as usize) }
    }

    /// Pointer to buffer `buffer` of slot `slot` (`buffer_stride` bytes).
    #[inline]
    pub(crate) fn buffer_ptr(&self, slot: u32, buffer: u32) -> *mut u8 {
        assert!(slot < self.geometry.sections_max && buffer < 2);
        let index = slot as usize * 2 + buffer as usize;
        // SAFETY: in bounds: the data region holds 2 * sections_max buffers.
        unsafe { self.data.add(index * self.geometry.buffer_stride as usize) }
    }

    /// The index buckets.
    pub(crate) fn buckets(&self) -> &[AtomicU64] {
        let g = &self.geometry;
        // SAFETY: [index_offset, index_offset + 8 * buckets) lies in the mapping;
        // the offset is page aligned; AtomicU64 is valid for any bit pattern.
        unsafe {
            std::slice::from_raw_parts(
                self.base().add(g.index_offset as usize) as *const AtomicU64,
                g.index_buckets as usize,
            )
        }
    }

    /// The openers table.
    pub(crate) fn openers(&self) -> &[OpenerEntry] {
        // SAFETY: the table (OPENERS_MAX * 64 bytes) lies in the mapping at a
        // page-aligned offset; entries are atomics.
        unsafe {
            std::slice::from_raw_parts(
                self.base().add(self.geometry.openers_offset as usize) as *const OpenerEntry,
                OPENERS_MAX as usize,
            )
        }
    }

    /// Compares slot `slot`'s id with `id` without allocating.
    #[inline(always)]
    pub(crate) fn slot_id_is(&self, slot: u32, id: &[u8]) -> bool {
        let len = self.slot(slot).id_len.load(Ordering::Acquire) as usize;
        if len != id.len() || len as u64 > self.attrs.section_id_bytes_max {
            return false;
        }
        // The bytes may change concurrently only if the slot is deleted and
        // reused, which callers detect with the slot's life word afterwards;
        // they are compared with atomic word loads.
        // SAFETY: the id area is 8-aligned (slot headers are 64-aligned, the
        // fixed part a multiple of 8) and holds section_id_bytes_max >= len
        // bytes rounded up to a word (the slot stride is a multiple of 64);
        // writers store ids atomically (`racy`).
        unsafe { crate::racy::equals(self.slot_id_ptr(slot) as *const u64, id) }
    }

    /// Lifecycle flags.
    pub fn lifecycle(&self) -> u64 {
        self.header().lifecycle.load(Ordering::SeqCst)
    }

    /// Live openers (entries whose process still runs).
    pub fn live_openers(&self) -> Vec<OpenerInfo> {
        self.openers()
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let word = OpenerWord::from(e.word.load(Ordering::SeqCst));
                self.opener_alive(i, word).then(|| OpenerInfo {
                    pid: word.pid,
                    pid_ns: e.pid_ns.load(Ordering::Relaxed),
                    flags: word.flags,
                    opened: Time(e.opened_ns.load(Ordering::Relaxed)),
                })
            })
            .collect()
    }

    /// Frees entries of dead openers; returns how many live ones have it
    /// open (replication links' entries are kept while alive and not counted:
    /// they do not keep a checkpoint open). If that leaves nobody, the
    /// retention clock starts at the last of the deaths, as their processes'
    /// heartbeats date them (`alive::died_by`; the reaping itself for an
    /// entry never stamped).
    pub fn reap_openers(&self, now: Time) -> usize {
        let mut live = 0;
        let mut reaped = false;
        // The latest death of an opener reaped here (0: none).
        let mut died = 0i64;
        for (i, entry) in self.openers().iter().enumerate() {
            let raw = entry.word.load(Ordering::SeqCst);
            let word = OpenerWord::from(raw);
            if word.pid == 0 {
                continue;
            }
            if self.opener_alive(i, word) {
                live += usize::from(self.opener_opens(i, word));
                continue;
            }
            let free = OpenerWord {
                pid: 0,
                flags: 0,
                ..word
            };
            // Read before the entry is freed (a new opener restamps it).
            let alive = entry.alive_ns.load(Ordering::Relaxed);
            if entry
                .word
                .compare_exchange(raw, free.value(), Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                reaped = true;
                if word.flags & crate::layout::OPENER_LINK == 0 {
                    died = died.max(crate::alive::died_by(alive, now.0));
                }
            }
        }
        if reaped && live == 0 {
            let closed = if died > 0 { died } else { now.0 };
            let _ = self.header().last_close_ns.compare_exchange(
                0,
                closed.max(1),
                Ordering::SeqCst,
                Ordering::Relaxed,
            );
        }
        live
    }

    /// The retention duration as last set (at creation, or by
    /// `saCkptCheckpointRetentionDurationSet`).
    pub fn retention(&self) -> Time {
        // SYNC POINT: Acquire pairs with the Release store of a retention
        // change (its frame is logged under the claim).
        Time(self.header().retention_ns.load(Ordering::Acquire))
    }

    /// True if nobody has the checkpoint open and its retention has run out.
    /// Implausible words never delete a checkpoint: a negative retention, or
    /// a last close before the checkpoint was created or in the future.
    pub fn retention_expired(&self, now: Time) -> bool {
        if self.is_replica() || self.is_fenced() || self.remote_open() {
            // A replica expires nothing on its own: its primary's unlink
            // reaches it as a frame. A fenced copy's host has no quorum: it
            // deletes nothing it could not log the unlink of. One open on a
            // replica's host is open. (The remote openers are looked at
            // before the clock: a count that dropped to 0 moved the clock
            // first, `Mapped::set_remote_openers`.)
            return false;
        }
        let h = self.header();
        let mut closed = h.last_close_ns.load(Ordering::SeqCst);
        if closed == 0 {
            // Still open, or its last openers died without closing: reaping
            // them starts the retention clock.
            self.reap_openers(now);
            closed = h.last_close_ns.load(Ordering::SeqCst);
        }
        let retention = h.retention_ns.load(Ordering::SeqCst);
        let plausible = retention >= 0
            && closed >= h.created_ns
            && closed <= now.0.saturating_add(CLOCK_SLACK_NS);
        closed != 0
            && plausible
            && self.reap_openers(now) == 0
            && now.0.saturating_sub(closed) >= retention
    }

    /// True if this copy is a replica (written only by applying frames).
    #[inline]
    pub fn is_replica(&self) -> bool {
        // SYNC POINT: Acquire pairs with the Release store in
        // `Segment::change_role` (`set_role`).
        RoleWord::from(self.header().role.load(Ordering::Acquire)).role == role::REPLICA
    }

    /// True if this host's node daemon fenced this copy (its partition has
    /// no quorum): see `Segment::fence`.
    pub fn is_fenced(&self) -> bool {
        // SYNC POINT: Acquire pairs with the Release store in
        // `Segment::change_role` (`fence`).
        RoleWord::from(self.header().role.load(Ordering::Acquire)).fenced
    }

    /// True if this replica was a primary deposed by one of the same term:
    /// its frames may differ from its primary's under the same numbers and
    /// terms, so it counts as holding nothing until a snapshot replaces it
    /// (see `Segment::depose`).
    pub fn is_diverged(&self) -> bool {
        // SYNC POINT: Acquire pairs with the Release store in
        // `Segment::change_role` (`depose`, `yield_to`).
        RoleWord::from(self.header().role.load(Ordering::Acquire)).diverged
    }

    /// True if this replica file was superseded: a snapshot rebuilt the
    /// replica into a new file under the checkpoint's name (see
    /// `Segment::supersede`). A handle on it sees no change again.
    #[inline]
    pub fn is_superseded(&self) -> bool {
        // SYNC POINT: Acquire pairs with the Release store in
        // `Segment::change_role` (`supersede`).
        RoleWord::from(self.header().role.load(Ordering::Acquire)).superseded
    }

    /// True if this copy holds more than its creation frame: an active
    /// replica set, a section made, a write, any change (what a copy of a
    /// name created on two nodes at once keeps: `Segment::yield_to`).
    pub fn is_written(&self) -> bool {
        self.last_seq() > 1
    }

    /// True if this copy yielded to another incarnation of its name
    /// created elsewhere at the same time (see `Segment::yield_to`).
    pub fn is_yielded(&self) -> bool {
        // SYNC POINT: Acquire pairs with the Release store in
        // `Segment::change_role` (`yield_to`).
        RoleWord::from(self.header().role.load(Ordering::Acquire)).yielded
    }

    /// The checkpoint's incarnation (random at creation; a replica has its
    /// primary's).
    pub fn incarnation(&self) -> u64 {
        self.header().incarnation
    }

    /// The term of the newest frame: the active replica word's, set or not.
    pub fn current_term(&self) -> u32 {
        // SYNC POINT: Acquire pairs with the Release store of an
        // active-replica change.
        ActiveReplicaWord::from(self.header().active_replica.load(Ordering::Acquire)).term
    }

    /// The active replica, if set.
    #[inline]
    pub fn active_replica(&self) -> Option<ActiveReplicaWord> {
        let word = ActiveReplicaWord::from(self.header().active_replica.load(Ordering::Acquire));
        word.set.then_some(word)
    }

    /// The creation attributes.
    pub fn attributes(&self) -> &CreationAttributes {
        &self.attrs
    }

    /// The checkpoint's name.
    pub fn name(&self) -> &CheckpointName {
        &self.name
    }

    /// The geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }
}

/// An opener as the CLI shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenerInfo {
    /// Its pid, in its own PID namespace.
    pub pid: u32,
    /// That namespace (the inode of its `/proc/self/ns/pid`; 0 if unknown).
    pub pid_ns: u64,
    /// Its open flags.
    pub flags: u16,
    /// When it opened.
    pub opened: Time,
}

/// A random incarnation id (never 0); also the random part of temporary names.
pub(crate) fn new_incarnation() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer we own.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    let mut id = u64::from_le_bytes(bytes);
    if n != bytes.len() as isize {
        // No entropy source: the clock and pid still tell incarnations apart.
        id = (now().0 as u64) ^ ((std::process::id() as u64) << 40);
    }
    id.max(1)
}

/// The wall clock, nanoseconds since the epoch.
pub fn now() -> Time {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Time(d.as_nanos().min(i64::MAX as u128) as i64)
}

/// The header as bytes (it is repr(C) integers and atomics with no padding).
fn header_bytes(h: &SegmentHeader) -> &[u8] {
    // SAFETY: SegmentHeader is repr(C) with const-asserted size and offsets and
    // no implicit padding (explicit `_pad` fields), so all its bytes are
    // initialized; the slice borrows `h` and lives no longer.
    unsafe {
        std::slice::from_raw_parts(
            h as *const SegmentHeader as *const u8,
            size_of::<SegmentHeader>(),
        )
    }
}

fn attributes_from_header(h: &SegmentHeader) -> Option<CreationAttributes> {
    let attrs = CreationAttributes {
        flags: CreationFlags::from_bits(h.creation_flags)?,
        checkpoint_bytes: h.checkpoint_bytes,
        retention_ns: h.retention_ns_created,
        sections_max: h.sections_max,
        section_bytes_max: h.section_bytes_max,
        section_id_bytes_max: h.section_id_bytes_max as u64,
    };
    attrs.validate().ok()?;
    Some(attrs)
}

/// Checks the file's owner, type and mode.
pub(crate) fn check_file(file: &File, config: &Config) -> Result<std::fs::Metadata, SegmentFault> {
    let meta = file.metadata().map_err(|_| SegmentFault::Corrupt)?;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    // With group access, a segment of another member of a group we are in
    // (made 0660 in the shared directory) is ours to share.
    let owner_ok = meta.uid() == euid || (config.group_access && dir::in_group(meta.gid()));
    if !meta.is_file() || !owner_ok {
        return Err(SegmentFault::Permission);
    }
    let allowed = config.file_mode();
    if meta.permissions().mode() & 0o777 & !allowed != 0 {
        return Err(SegmentFault::Permission);
    }
    Ok(meta)
}

/// Maps `file` and validates everything an opener relies on.
pub(crate) fn map_validated(
    file: File,
    file_name: String,
    config: &Config,
) -> Result<Mapped, SegmentFault> {
    let meta = check_file(&file, config)?;
    let size = meta.len();
    if !(layout::HEADER_REGION_BYTES..=limits::SEGMENT_BYTES_MAX * 2).contains(&size) {
        return Err(SegmentFault::Corrupt);
    }
    let map = MmapRaw::map_raw(&file).map_err(|_| SegmentFault::Corrupt)?;
    // SAFETY: the mapping is at least HEADER_REGION_BYTES long (checked above)
    // and page aligned; SegmentHeader is integers and atomics, valid for any
    // bit pattern. The reference is not used after `map` moves below.
    let h = unsafe { &*(map.as_mut_ptr() as *const SegmentHeader) };
    if h.magic != MAGIC {
        return Err(SegmentFault::Corrupt);
    }
    let mut immutable = [0u8; layout::CHECKSUMMED_BYTES];
    // SAFETY: the mapping holds at least HEADER_REGION_BYTES > CHECKSUMMED_BYTES
    // bytes; `immutable` is a distinct stack buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(map.as_mut_ptr(), immutable.as_mut_ptr(), immutable.len())
    };
    // SYNC POINT: Acquire pairs with the Release store publishing the segment
    // in `create_new`: every field written before it is visible.
    match h.layout_version.load(Ordering::Acquire) {
        LAYOUT_VERSION => {}
        0 => return Err(SegmentFault::Corrupt),
        _ => return Err(SegmentFault::Incompatible),
    }
    if layout::header_checksum(&immutable) != h.header_crc32c {
        return Err(SegmentFault::Corrupt);
    }
    if h.header_bytes as usize != size_of::<SegmentHeader>()
        || h.segment_bytes != size
        || h.openers_max != OPENERS_MAX
        || h.name_len == 0
        || h.name_len as usize > NAME_BYTES
    {
        return Err(SegmentFault::Corrupt);
    }
    let attrs = attributes_from_header(h).ok_or(SegmentFault::Corrupt)?;
    let geometry = Geometry::new(&attrs, h.log_bytes).ok_or(SegmentFault::Corrupt)?;
    if geometry.index_buckets != h.index_buckets || geometry.end > size {
        return Err(SegmentFault::Corrupt);
    }
    // The log positions are mutable, so the checksum does not cover them:
    // check they are aligned, ordered and far from overflow.
    let tail = h.log_tail.load(Ordering::Acquire);
    let reserve = h.log_reserve.load(Ordering::Acquire);
    if tail % 8 != 0
        || tail > LOG_POSITION_MAX
        || reserve < tail
        || reserve - tail > geometry.log_bytes
    {
        return Err(SegmentFault::Corrupt);
    }
    // Sequence numbers are +1 per frame: like positions, far from overflow.
    if h.log_seq.load(Ordering::Acquire) > LOG_POSITION_MAX
        || h.state_seq.load(Ordering::Acquire) > LOG_POSITION_MAX
    {
        return Err(SegmentFault::Corrupt);
    }
    // A retention duration is never negative (the API refuses one): a damaged
    // word, and nothing to recompute it from.
    if h.retention_ns.load(Ordering::Acquire) < 0 {
        return Err(SegmentFault::Corrupt);
    }
    let name =
        CheckpointName::new(&h.name[..h.name_len as usize]).map_err(|_| SegmentFault::Corrupt)?;
    Ok(Mapped::new(
        map,
        file,
        (config.clone(), file_name),
        geometry,
        attrs,
        name,
        meta.ino(),
    ))
}

pub(crate) fn io_to_open_error(e: &io::Error) -> OpenError {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::ENOMEM) | Some(libc::EDQUOT) | Some(libc::EMFILE)
        | Some(libc::ENFILE) | Some(libc::EFBIG) => OpenError::NoResources,
        Some(libc::EACCES) | Some(libc::EPERM) => OpenError::Permission,
        _ => OpenError::Io,
    }
}

/// Creates, initializes and publishes a new segment at `path`. Returns
/// `Ok(())` also when another process published one there first (the caller
/// then opens that one).
/// Where a new segment comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Created here: the primary, a new incarnation, placed on this node if
    /// the checkpoint is non-collocated asynchronous.
    Primary,
    /// A replica of a primary's checkpoint, from its creation frame (whose
    /// ring size, `log_bytes`, it logs as it is, whatever its own ring's).
    Replica {
        incarnation: u64,
        created_ns: i64,
        active_replica: Option<u32>,
        log_bytes: u64,
    },
    /// A replica being rebuilt from a snapshot: its ring starts empty (no
    /// creation frame, no default section: the snapshot brings its
    /// sections, and its log continues at the snapshot's start).
    Install { incarnation: u64, created_ns: i64 },
}

/// Creates the segment `file_name` from `origin`, unless one exists.
fn create_new(
    config: &Config,
    dir: &SegmentDir,
    file_name: &str,
    name: &CheckpointName,
    attrs: &CreationAttributes,
    origin: Origin,
) -> Result<(), OpenError> {
    let (mapped, tmp) = build_new(config, dir, name, attrs, origin)?;
    let published = match dir.link(&tmp, file_name) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_to_open_error(&e)),
    };
    let _ = dir.remove(&tmp);
    // Closing the description drops the temporary's lease.
    drop(mapped);
    published
}

/// Builds a new segment under a temporary name in `dir`, leased (a sweep
/// leaves it alone) until the returned mapping is dropped: its layout is
/// published, nobody else knows it. Returns the mapping and the name.
pub(crate) fn build_new(
    config: &Config,
    dir: &SegmentDir,
    name: &CheckpointName,
    attrs: &CreationAttributes,
    origin: Origin,
) -> Result<(Mapped, String), OpenError> {
    let log_bytes = match config.log_bytes {
        Some(b) => b,
        None => default_log_bytes(attrs),
    };
    let geometry = Geometry::new(attrs, log_bytes).ok_or(OpenError::NoResources)?;
    let tmp = dir::temp_name();
    let file = dir
        .create_file(&tmp, config.file_mode())
        .map_err(|e| io_to_open_error(&e))?;
    let cleanup = |e: OpenError| {
        let _ = dir.remove(&tmp);
        e
    };
    // Leased until linked: a directory sweep removes only abandoned
    // temporaries (`dir::remove_stale_temp`), whatever the creator's PID
    // namespace. The file is new (O_EXCL): nobody else can hold it.
    lease::try_take(&file, dir::TEMP_LEASE_BYTE).map_err(|e| cleanup(io_to_open_error(&e)))?;
    // The umask may have narrowed the mode; set it exactly.
    file.set_permissions(std::fs::Permissions::from_mode(config.file_mode()))
        .map_err(|e| cleanup(io_to_open_error(&e)))?;
    let block = dir::fs_block_bytes(&file).unwrap_or(4096).max(4096);
    let size = geometry.end.div_ceil(block) * block;
    file.set_len(size)
        .map_err(|e| cleanup(io_to_open_error(&e)))?;
    // Allocate now what every call touches (or fail with NO_RESOURCES): the
    // whole file up to 1 GiB; above, everything but the data buffers, which
    // are allocated as they are first written (`Mapped::back_buffers`).
    let allocate = |at: u64, len: u64| {
        dir::preallocate_range(&file, at, len).map_err(|e| cleanup(io_to_open_error(&e)))
    };
    if size <= PREALLOCATE_BYTES_MAX {
        allocate(0, size)?;
    } else {
        allocate(0, geometry.data_offset)?;
        allocate(geometry.log_offset, size - geometry.log_offset)?;
    }
    let map = MmapRaw::map_raw(&file).map_err(|e| cleanup(io_to_open_error(&e)))?;
    let base = map.as_mut_ptr();
    let me = proc::current();
    // Non-collocated asynchronous checkpoints have an active replica from the
    // start (the service places it: here, this node; a replica copies it).
    let placed = attrs.flags.mode().is_asynchronous() && !attrs.flags.is_collocated();
    let (incarnation, now, active, copy_role) = match origin {
        Origin::Primary => (
            new_incarnation(),
            now(),
            placed.then_some(config.node_id),
            role::PRIMARY,
        ),
        Origin::Replica {
            incarnation,
            created_ns,
            active_replica,
            ..
        } => (incarnation, Time(created_ns), active_replica, role::REPLICA),
        Origin::Install {
            incarnation,
            created_ns,
        } => (incarnation, Time(created_ns), None, role::REPLICA),
    };
    {
        // SAFETY: the file is new, exclusively ours (O_EXCL, not yet linked
        // under its name), at least HEADER_REGION_BYTES long and page aligned;
        // nobody else can map it, so writing the plain header fields is sound.
        let h = unsafe { &mut *(base as *mut SegmentHeader) };
        h.magic = MAGIC;
        h.header_bytes = size_of::<SegmentHeader>() as u32;
        h.segment_bytes = size;
        h.creation_flags = attrs.flags.bits();
        h.section_id_bytes_max = attrs.section_id_bytes_max as u32;
        h.checkpoint_bytes = attrs.checkpoint_bytes;
        h.retention_ns_created = attrs.retention_ns;
        h.sections_max = attrs.sections_max;
        h.openers_max = OPENERS_MAX;
        h.section_bytes_max = attrs.section_bytes_max;
        h.index_buckets = geometry.index_buckets;
        h.log_bytes = geometry.log_bytes;
        h.created_ns = now.0;
        h.creator_pid = me.pid;
        h.name_len = name.as_bytes().len() as u32;
        h.incarnation = incarnation;
        h.name[..name.as_bytes().len()].copy_from_slice(name.as_bytes());
        let mut immutable = [0u8; layout::CHECKSUMMED_BYTES];
        immutable.copy_from_slice(&header_bytes(h)[..layout::CHECKSUMMED_BYTES]);
        h.header_crc32c = layout::header_checksum(&immutable);
        h.retention_ns.store(attrs.retention_ns, Ordering::Relaxed);
        // Term 1.
        let word = ActiveReplicaWord {
            set: active.is_some(),
            node: active.unwrap_or(0),
            term: 1,
        };
        h.active_replica.store(word.value(), Ordering::Relaxed);
        h.active_pid.store(me.pid as u64, Ordering::Relaxed);
        // Fenced from the start while this host's daemon says its partition
        // has no quorum (the marker in the directory).
        let fenced = crate::dir::fence_marked(config);
        h.role.store(
            RoleWord {
                role: copy_role,
                fenced,
                diverged: false,
                superseded: false,
                yielded: false,
            }
            .value(),
            Ordering::Relaxed,
        );
    }
    // Inode 0: this mapping is never removed by inode (an applied unlink's
    // `remove_name_if_same` leaves a copy being installed to its installer).
    let at = (config.clone(), tmp.clone());
    let mapped = Mapped::new(map, file, at, geometry, *attrs, name.clone(), 0);
    if matches!(origin, Origin::Install { .. }) {
        publish_layout(&mapped);
        return Ok((mapped, tmp));
    }
    // The log begins with the checkpoint's creation (seq 1): every attribute,
    // so the log alone can rebuild a replica. A replica's is its primary's
    // frame, byte for byte (the primary's ring size included).
    let created_ring = match origin {
        Origin::Replica { log_bytes, .. } => log_bytes,
        _ => geometry.log_bytes,
    };
    let created = {
        let log = mapped.log();
        let (header, payload) = mapped.creation_frame_of(active, created_ring);
        let p = log.write(0, header, name.as_bytes(), &payload);
        log.publish(p.end, p.seq);
        p.seq
    };
    if attrs.has_default_section() {
        // The default section: slot 0, empty id, version 1, no data, made by
        // the creation frame.
        let h = crate::index::hash_id(&[]);
        let position = mapped
            .index()
            .insert_position(h, |_| false)
            .expect("an empty table has room");
        let default = crate::ops::install::Placed {
            slot: 0,
            id: &[],
            size: 0,
            version: 1,
            last_update: now,
            expiration: Time::END,
            seqs: ckpt_core::catchup::SectionSeqs {
                data_seq: created,
                expiration_seq: created,
            },
        };
        mapped.place_section(&default, position);
    }
    if matches!(origin, Origin::Primary)
        && config.daemon_adopts
        && attrs.flags.mode() == ckpt_core::UpdateMode::AllReplicas
    {
        // Writers wait for the daemon until it adopts the checkpoint
        // (`Mapped::adopted`): nobody sees the segment before this.
        let _ = crate::ack::register(&mapped.header().acks, crate::ack::ADOPTION, 0);
    }
    publish_layout(&mapped);
    Ok((mapped, tmp))
}

/// Publishes a new segment's layout version: the last store of its build.
fn publish_layout(mapped: &Mapped) {
    // SYNC POINT: Release pairs with the Acquire load in `map_validated`:
    // publish the layout version last.
    mapped
        .header()
        .layout_version
        .store(LAYOUT_VERSION, Ordering::Release);
}

/// The configuration a replica is made with: the primary's ring size
/// (`log_bytes`, from its creation frame) up to
/// [`layout::LOG_BYTES_FROM_PRIMARY_MAX`], or `config`'s (the daemon's
/// `log_bytes`) if that is larger. Never smaller than the primary's: a
/// replica republishes the primary's frames as they are, and its ring must
/// take the largest (a quarter of the primary's ring). With a smaller one it
/// refused them and never converged (a daemon run with `--log-bytes 65536`
/// and 1 MiB sections).
pub(crate) fn replica_config(config: &Config, log_bytes: u64) -> Config {
    let primary = log_bytes.clamp(layout::LOG_BYTES_MIN, layout::LOG_BYTES_FROM_PRIMARY_MAX);
    Config {
        log_bytes: Some(config.log_bytes.map_or(primary, |own| own.max(primary))),
        ..config.clone()
    }
}

impl Mapped {
    /// The checkpoint's creation frame (seq 1, term 1): every creation
    /// attribute, this copy's ring size, the name, and `active` (the active
    /// replica it was created with). Header and payload; the name is the id.
    /// (A replica's log begins with its primary's frame, which carries the
    /// primary's ring size.)
    pub fn creation_frame(
        &self,
        active: Option<u32>,
    ) -> (FrameHeader, [u8; frame::CREATED_PAYLOAD_BYTES]) {
        self.creation_frame_of(active, self.header().log_bytes)
    }

    /// [`Mapped::creation_frame`] with ring size `log_bytes`.
    fn creation_frame_of(
        &self,
        active: Option<u32>,
        log_bytes: u64,
    ) -> (FrameHeader, [u8; frame::CREATED_PAYLOAD_BYTES]) {
        let h = self.header();
        let header = FrameHeader {
            seq: 1,
            term: 1,
            incarnation: h.incarnation,
            id_len: self.name.as_bytes().len() as u16,
            data_len: frame::CREATED_PAYLOAD_BYTES as u32,
            time_ns: h.created_ns,
            arg: active.map_or(0, |node| node as i64 + 1),
            ..FrameHeader::new(FrameKind::CheckpointCreated)
        };
        (header, frame::encode_created(&self.attrs, log_bytes))
    }
}

/// An opened checkpoint segment with this process registered as an opener.
pub struct Segment {
    pub(crate) mapped: Mapped,
    pub(crate) path: PathBuf,
    pub(crate) config: Config,
    pub(crate) flags: OpenFlags,
    pub(crate) owner: Owner,
    /// Where the next free-slot scan starts (a per-process hint).
    pub(crate) free_hint: std::sync::atomic::AtomicU32,
    /// When this process last audited the derived words on a failure path
    /// (ns since the epoch): at most one audit a second there, so a writer
    /// hammering a truly full checkpoint does not scan it on every attempt.
    pub(crate) last_audit_ns: std::sync::atomic::AtomicI64,
    /// False for a registration that must not count as an open (an unlink
    /// logging its frame): its close neither starts the retention clock nor
    /// deletes the checkpoint.
    counts_as_open: bool,
    /// The process that registered: a `fork`ed child that inherits this
    /// handle shares its file description, and so its lease; dropping the
    /// handle there must not free the parent's entry or give its lease up.
    registered_by: u32,
    /// Shipping links of this handle per replica node
    /// ([`Segment::link_replica`]): links to one node may overlap, and the
    /// node's ack slot, which they share, goes with the last of them.
    pub(crate) replica_links: std::sync::Mutex<Vec<(u32, u32)>>,
}

impl std::ops::Deref for Segment {
    type Target = Mapped;
    fn deref(&self) -> &Mapped {
        &self.mapped
    }
}

impl Segment {
    /// Opens (and with `attrs`, creates if absent) the checkpoint `name`.
    ///
    /// `attrs` must already satisfy `CreationAttributes::validate`. A checkpoint
    /// whose retention has run out is deleted here and treated as absent.
    pub fn open(
        config: &Config,
        name: &CheckpointName,
        flags: OpenFlags,
        attrs: Option<&CreationAttributes>,
    ) -> Result<Segment, OpenError> {
        Segment::open_as(config, name, flags, attrs, false)
    }

    /// Opens the existing checkpoint `name` for a replication link (a node
    /// daemon shipping it, or applying frames to its replica): registered
    /// like an open, but not one ([`crate::layout::OPENER_LINK`]), so the
    /// daemon never keeps a checkpoint from its retention running out.
    pub fn open_for_link(
        config: &Config,
        name: &CheckpointName,
        flags: OpenFlags,
    ) -> Result<Segment, OpenError> {
        Segment::open_as(config, name, flags, None, true)
    }

    fn open_as(
        config: &Config,
        name: &CheckpointName,
        flags: OpenFlags,
        attrs: Option<&CreationAttributes>,
        link: bool,
    ) -> Result<Segment, OpenError> {
        if let Some(a) = attrs {
            a.validate().map_err(|_| OpenError::InvalidAttributes)?;
        }
        if config.node_id > ckpt_core::frame::NODE_ID_MAX {
            return Err(OpenError::InvalidNode);
        }
        let dir = SegmentDir::open(config, attrs.is_some())?;
        let file_name = dir::file_name(name);
        let path = config.dir.join(&file_name);
        let mut created = false;
        for _ in 0..OPEN_ATTEMPTS_MAX {
            let file = match dir.open_file(&file_name) {
                Ok(f) => f,
                Err(FileFault::NotFound) => {
                    let Some(a) = attrs else {
                        return Err(OpenError::NotExist);
                    };
                    create_new(config, &dir, &file_name, name, a, Origin::Primary)?;
                    created = true;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let mut mapped = map_validated(file, file_name.clone(), config)?;
            if mapped.name != *name {
                // Two long names hashing to one file name: refuse, never mix them.
                return Err(OpenError::Corrupt);
            }
            let now = now();
            if mapped.lifecycle() & LIFECYCLE_DOOMED != 0 {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            if mapped.lifecycle() & LIFECYCLE_UNLINKED != 0 {
                // Unlinked, and its name left behind (the unlinker died
                // before freeing it): free it now.
                mapped.remove_name_if_same();
                continue;
            }
            if mapped.retention_expired(now) {
                dir::doom_and_remove(&mapped);
                continue;
            }
            if let Some(a) = attrs {
                if !a.compatible_with(&mapped.attrs) {
                    return Err(OpenError::AttributesDiffer);
                }
            }
            let kind = if link { OPENER_LINK } else { 0 };
            let owner = register_opener(&mapped, flags.bits() as u16 | kind)?;
            mapped.own_entry = owner.entry;
            if mapped.lifecycle() & LIFECYCLE_DOOMED != 0 {
                // A sweeper decided to delete it before seeing us: let it.
                deregister_opener(&mapped, owner, (!link).then_some(now));
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let segment = Segment::registered(mapped, path.clone(), config, flags, owner, !link);
            if created {
                segment.fence_if_marked();
            }
            if link {
                return Ok(segment);
            }
            segment.header().last_close_ns.store(0, Ordering::SeqCst);
            // A writer that finds the checkpoint unused (an application
            // restarting, a checkpoint left by a crash) or a counter beyond
            // its maximum checks the derived words; one joining live
            // openers (a standby taking over) does not pay for it.
            if flags.contains(OpenFlags::WRITE) {
                let alone = segment.only_opener();
                if alone {
                    // Sleeper counts left by processes killed while they
                    // slept would cost every write a wake-up syscall: with
                    // nobody else here, nobody sleeps.
                    let h = segment.header();
                    h.waiters.store(0, Ordering::SeqCst);
                    h.claim_waiters.store(0, Ordering::SeqCst);
                }
                if alone || segment.counters_implausible() {
                    segment.audit();
                }
            }
            return Ok(segment);
        }
        Err(OpenError::TryAgain)
    }

    /// The handle of a registration (`owner`) on `mapped`.
    fn registered(
        mapped: Mapped,
        path: PathBuf,
        config: &Config,
        flags: OpenFlags,
        owner: Owner,
        counts_as_open: bool,
    ) -> Segment {
        Segment {
            mapped,
            path,
            config: config.clone(),
            flags,
            owner,
            free_hint: std::sync::atomic::AtomicU32::new(0),
            last_audit_ns: std::sync::atomic::AtomicI64::new(0),
            counts_as_open,
            registered_by: std::process::id(),
            replica_links: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A link's registration ([`Segment::open_for_link`]) on `mapped`, a
    /// segment this process built under the temporary name `tmp` that
    /// nobody else opens (a replica being installed, which catches up
    /// before it is renamed into place).
    pub(crate) fn link_on_built(
        mut mapped: Mapped,
        config: &Config,
        tmp: &str,
    ) -> Result<Segment, OpenError> {
        let flags = OpenFlags::READ | OpenFlags::WRITE;
        let owner = register_opener(&mapped, flags.bits() as u16 | OPENER_LINK)?;
        mapped.own_entry = owner.entry;
        Ok(Segment::registered(
            mapped,
            config.dir.join(tmp),
            config,
            flags,
            owner,
            false,
        ))
    }

    /// The open flags.
    pub fn flags(&self) -> OpenFlags {
        self.flags
    }

    /// The file backing the segment (it may have been unlinked).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// True once the checkpoint's name has been unlinked.
    pub fn is_unlinked(&self) -> bool {
        self.lifecycle() & LIFECYCLE_UNLINKED != 0
    }
}

impl Segment {
    /// Opens this host's replica of a primary's checkpoint, creating it from
    /// the primary's creation frame (seq 1) if it does not exist. An existing
    /// segment of that name must be a replica of the same incarnation.
    pub fn open_replica(config: &Config, created: &Frame<'_>) -> Result<Segment, OpenError> {
        let Some(Mutation::CheckpointCreated {
            name,
            attributes,
            log_bytes,
            active_replica,
        }) = created.mutation()
        else {
            return Err(OpenError::InvalidAttributes);
        };
        if created.header.seq != 1 {
            return Err(OpenError::InvalidAttributes);
        }
        let config = &replica_config(config, log_bytes);
        let name = CheckpointName::new(name).map_err(|_| OpenError::InvalidName)?;
        let dir = SegmentDir::open(config, true)?;
        let file_name = dir::file_name(&name);
        if dir.inode(&file_name).is_none() {
            let origin = Origin::Replica {
                incarnation: created.header.incarnation,
                created_ns: created.header.time_ns,
                active_replica,
                log_bytes,
            };
            create_new(config, &dir, &file_name, &name, &attributes, origin)?;
        }
        let flags = OpenFlags::READ | OpenFlags::WRITE;
        let segment = Segment::open_for_link(config, &name, flags)?;
        segment.fence_if_marked();
        if segment.header().incarnation != created.header.incarnation
            || !segment.is_replica()
            || segment.attrs != attributes
        {
            // Another checkpoint of that name lives here: never mix them.
            return Err(OpenError::AttributesDiffer);
        }
        Ok(segment)
    }

    /// Registers this process on an already mapped segment for a mutation
    /// that is not an open (logging an unlink): the retention clock is left
    /// alone. `None` if a retention sweep is deleting the checkpoint.
    pub(crate) fn attach(
        mut mapped: Mapped,
        path: &Path,
        config: &Config,
    ) -> Result<Option<Segment>, OpenError> {
        let owner = register_opener(&mapped, OpenFlags::READ.bits() as u16)?;
        mapped.own_entry = owner.entry;
        if mapped.lifecycle() & LIFECYCLE_DOOMED != 0 {
            deregister_opener(&mapped, owner, None);
            return Ok(None);
        }
        Ok(Some(Segment {
            mapped,
            path: path.to_path_buf(),
            config: config.clone(),
            flags: OpenFlags::READ,
            owner,
            free_hint: std::sync::atomic::AtomicU32::new(0),
            last_audit_ns: std::sync::atomic::AtomicI64::new(0),
            counts_as_open: false,
            registered_by: std::process::id(),
            replica_links: std::sync::Mutex::new(Vec::new()),
        }))
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if std::process::id() != self.registered_by {
            // A forked child's copy: the registration is the parent's.
            return;
        }
        let now = now();
        if !self.counts_as_open {
            deregister_opener(&self.mapped, self.owner, None);
            return;
        }
        deregister_opener(&self.mapped, self.owner, Some(now));
        // The last close of a checkpoint with no retention deletes it at once
        // (an unlinked one disappears with its last mapping anyway; a replica
        // goes when its primary's unlink reaches it).
        if self.header().retention_ns.load(Ordering::SeqCst) == 0
            && !self.is_unlinked()
            && !self.is_replica()
            && !self.mapped.remote_open()
            && self.mapped.reap_openers(now) == 0
        {
            dir::doom_and_remove(&self.mapped);
        }
    }
}

/// Registers this process in a free opener entry with `flags` (open flags,
/// and [`OPENER_LINK`] for a registration that is not an open).
fn register_opener(mapped: &Mapped, flags: u16) -> Result<Owner, OpenError> {
    if let Some(owner) = try_register_opener(mapped, flags) {
        return Ok(owner);
    }
    // Dead openers may be holding every entry: reap them and try once more.
    mapped.reap_openers(now());
    try_register_opener(mapped, flags).ok_or(OpenError::NoResources)
}

fn try_register_opener(mapped: &Mapped, flags: u16) -> Option<Owner> {
    let me = proc::current();
    for (i, entry) in mapped.openers().iter().enumerate() {
        if OpenerWord::from(entry.word.load(Ordering::SeqCst)).pid != 0 {
            continue;
        }
        // The lease first: an entry whose word names a process is then always
        // leased while that process lives, so nobody reaps it in between.
        // Another description holding it is registering (or finishing a close).
        let byte = mapped.lease_byte(i);
        if !lease::try_take(&mapped.file, byte).unwrap_or(false) {
            continue;
        }
        let raw = entry.word.load(Ordering::SeqCst);
        let word = OpenerWord::from(raw);
        let mine = OpenerWord {
            pid: me.pid,
            gen: word.gen.wrapping_add(1),
            flags,
        };
        // SYNC POINT: SeqCst, with the SeqCst lifecycle loads around it: Dekker
        // against a sweeper that sets DOOMED and then scans the openers.
        if word.pid == 0
            && entry
                .word
                .compare_exchange(raw, mine.value(), Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        {
            entry.opened_ns.store(now().0, Ordering::Relaxed);
            entry.pid_ns.store(me.pid_ns, Ordering::Relaxed);
            // SAFETY: the entry is in `mapped`, which outlives the
            // registration: `deregister_opener` forgets it first.
            unsafe { crate::alive::keep(&entry.alive_ns) };
            return Some(Owner {
                entry: i as u16 + 1,
                gen: mine.gen,
            });
        }
        lease::give_up(&mapped.file, byte);
    }
    None
}

/// Frees our opener entry; with `closed_at`, the last one out starts the
/// retention clock.
fn deregister_opener(mapped: &Mapped, owner: Owner, closed_at: Option<Time>) {
    let entry = &mapped.openers()[owner.entry as usize - 1];
    crate::alive::forget(&entry.alive_ns);
    let raw = entry.word.load(Ordering::SeqCst);
    let word = OpenerWord::from(raw);
    if word.gen != owner.gen || word.pid == 0 {
        return;
    }
    let free = OpenerWord {
        pid: 0,
        flags: 0,
        ..word
    };
    let _ = entry
        .word
        .compare_exchange(raw, free.value(), Ordering::SeqCst, Ordering::Relaxed);
    // After the entry is free: a lease never lapses under a word that names us.
    lease::give_up(&mapped.file, mapped.lease_byte(owner.entry as usize - 1));
    let Some(now) = closed_at else {
        return;
    };
    // By lease: an entry a dead process left does not keep the clock stopped
    // (nor does a replication link's).
    let any_left = mapped
        .openers()
        .iter()
        .enumerate()
        .any(|(i, e)| mapped.opener_opens(i, OpenerWord::from(e.word.load(Ordering::SeqCst))));
    if !any_left {
        mapped
            .header()
            .last_close_ns
            .store(now.0.max(1), Ordering::SeqCst);
    }
}

/// Opens an existing checkpoint for inspection (CLI) without registering as
/// an opener.
pub fn inspect(config: &Config, name: &CheckpointName) -> Result<Mapped, OpenError> {
    let dir = SegmentDir::open(config, false)?;
    let mapped = dir::inspect_in(&dir, &dir::file_name(name), config)?;
    if mapped.name != *name {
        // Two long names hashing to one file name.
        return Err(OpenError::NotExist);
    }
    Ok(mapped)
}
