//! What operators see: checkpoints and sections as the CLI lists them.
//!
//! Inspection maps segments without registering as an opener, so looking at a
//! checkpoint never restarts its retention timer.

use std::path::PathBuf;

use ckpt_core::error::OpenError;
use ckpt_core::{CheckpointName, CreationAttributes, SectionsChosen, Time};
use ckpt_shm::dir;
use ckpt_shm::segment::{self, OpenerInfo};
use ckpt_shm::{Config, Mapped};
use serde::Serialize;

/// One checkpoint, for `ckpt list`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointInfo {
    /// Its name (lossy UTF-8).
    pub name: String,
    /// The segment file.
    pub path: PathBuf,
    /// Creation flags, e.g. `WR_ACTIVE_REPLICA|COLLOCATED`.
    pub flags: String,
    /// `checkpointSize`.
    pub checkpoint_bytes: u64,
    /// `maxSections`.
    pub sections_max: u32,
    /// `maxSectionSize`.
    pub section_bytes_max: u64,
    /// `maxSectionIdSize`.
    pub section_id_bytes_max: u64,
    /// Live sections.
    pub sections: u32,
    /// Sum of section sizes.
    pub memory_used_bytes: u64,
    /// Size of the segment file.
    pub segment_bytes: u64,
    /// Processes that have it open.
    pub openers: Vec<Opener>,
    /// Current retention duration.
    pub retention_ns: i64,
    /// When the last opener closed (ns since the epoch), if nobody has it open.
    pub last_close_ns: Option<i64>,
    /// The active replica, if set: node and the pid that set it.
    pub active_replica: Option<ActiveReplica>,
    /// The delta log's published tail (bytes ever logged in this host's ring).
    pub log_tail: u64,
    /// The sequence number of the last frame logged (on a replica: applied).
    pub last_seq: u64,
    /// `primary` (written by its own processes) or `replica` (written only
    /// by applying a primary's frames).
    pub role: &'static str,
    /// Fenced by this host's node daemon (its partition has no quorum): no
    /// local writes, no promotion.
    pub fenced: bool,
    /// The checkpoint's incarnation (random at creation), in hex.
    pub incarnation: String,
    /// Writer crashes recovered so far.
    pub recoveries: u64,
}

/// An opener, for `ckpt list`.
#[derive(Debug, Clone, Serialize)]
pub struct Opener {
    /// Its pid, in its own PID namespace.
    pub pid: u32,
    /// That namespace (inode of its `/proc/self/ns/pid`, 0 if unknown).
    pub pid_ns: u64,
    /// True if that is not this process's namespace (a container): the pid
    /// then names another process, or none, here.
    pub other_namespace: bool,
    /// `R`, `W`, `C` letters of its open flags, and `link` for a
    /// replication link's registration (a node daemon), which is not an open.
    pub mode: String,
}

/// The active replica, for `ckpt list`.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveReplica {
    /// Node id.
    pub node: u32,
    /// The term it was set in.
    pub term: u32,
    /// Pid of the process that set it last.
    pub pid: u32,
}

/// A segment that could not be inspected.
#[derive(Debug, Clone, Serialize)]
pub struct Refused {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub error: String,
}

fn opener(o: &OpenerInfo) -> Opener {
    let mut mode = String::new();
    for (bit, c) in [(1, 'R'), (2, 'W'), (4, 'C')] {
        if o.flags & bit != 0 {
            mode.push(c);
        }
    }
    if o.flags & ckpt_shm::layout::OPENER_LINK != 0 {
        mode.push_str(" link");
    }
    Opener {
        pid: o.pid,
        pid_ns: o.pid_ns,
        other_namespace: o.pid_ns != ckpt_shm::proc::current().pid_ns,
        mode,
    }
}

/// Everything `ckpt list` shows about one mapped segment.
pub fn describe(mapped: &Mapped, path: PathBuf) -> CheckpointInfo {
    let attrs: &CreationAttributes = mapped.attributes();
    let h = mapped.header();
    // As `sections` and `dump` see them: expired sections not yet swept by a
    // writer are gone for readers.
    let (sections, memory_used_bytes) = mapped.visible_usage();
    let last_close = h.last_close_ns.load(std::sync::atomic::Ordering::Relaxed);
    CheckpointInfo {
        name: mapped.name().to_string(),
        path,
        flags: attrs.flags.to_string(),
        checkpoint_bytes: attrs.checkpoint_bytes,
        sections_max: attrs.sections_max,
        section_bytes_max: attrs.section_bytes_max,
        section_id_bytes_max: attrs.section_id_bytes_max,
        sections,
        memory_used_bytes,
        segment_bytes: h.segment_bytes,
        openers: mapped.live_openers().iter().map(opener).collect(),
        retention_ns: h.retention_ns.load(std::sync::atomic::Ordering::Relaxed),
        last_close_ns: (last_close != 0).then_some(last_close),
        active_replica: mapped.active_replica().map(|a| ActiveReplica {
            node: a.node,
            term: a.term,
            pid: h.active_pid.load(std::sync::atomic::Ordering::Relaxed) as u32,
        }),
        log_tail: mapped.log_tail(),
        last_seq: mapped.last_seq(),
        role: if mapped.is_replica() {
            "replica"
        } else {
            "primary"
        },
        fenced: mapped.is_fenced(),
        incarnation: format!("{:016x}", h.incarnation),
        recoveries: h.recoveries.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// A checkpoint the listing deleted: nobody had it open and its retention
/// had run out.
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    /// The checkpoint's name.
    pub removed: String,
    /// The file it was.
    pub path: PathBuf,
    /// Why.
    pub why: &'static str,
}

/// What `ckpt list` found in the segment directory.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// The checkpoints.
    pub checkpoints: Vec<CheckpointInfo>,
    /// Files that are not acceptable segments, and why.
    pub refused: Vec<Refused>,
    /// Checkpoints this listing deleted because their retention ran out.
    pub removed: Vec<Removed>,
}

/// Every checkpoint in the segment directory, the files that were refused,
/// and the checkpoints deleted because their retention ran out.
pub fn list(config: &Config) -> std::io::Result<Listing> {
    let mut listing = Listing::default();
    for entry in dir::list(config)? {
        match entry.segment {
            Ok(mapped) if entry.removed => listing.removed.push(Removed {
                removed: mapped.name().to_string(),
                path: entry.path,
                why: "its retention duration ran out with nobody having it open",
            }),
            Ok(mapped) => listing.checkpoints.push(describe(&mapped, entry.path)),
            Err(e) => listing.refused.push(Refused {
                path: entry.path,
                error: e.to_string(),
            }),
        }
    }
    Ok(listing)
}

/// Maps checkpoint `name` for inspection.
pub fn open(config: &Config, name: &CheckpointName) -> Result<(Mapped, PathBuf), OpenError> {
    let path = dir::segment_path(&config.dir, name);
    let mapped = segment::inspect(config, name)?;
    Ok((mapped, path))
}

/// One section, for `ckpt sections`.
#[derive(Debug, Clone, Serialize)]
pub struct SectionInfo {
    /// The id as text (printable) or hex.
    pub id: String,
    /// The raw id bytes as hex.
    pub id_hex: String,
    /// Committed size.
    pub size_bytes: u64,
    /// Absolute expiration in ns, `None` for never.
    pub expiration_ns: Option<i64>,
    /// `lastUpdate`, ns since the epoch.
    pub last_update_ns: i64,
    /// Committed version.
    pub version: u64,
}

/// The sections of a mapped checkpoint.
pub fn sections(mapped: &Mapped) -> Vec<SectionInfo> {
    let mut out = Vec::new();
    mapped.for_each_section(SectionsChosen::Any, |v| {
        let version = mapped
            .read(v.section, 0, &mut [])
            .map_or(0, |(_, m)| m.version);
        out.push(SectionInfo {
            id: ckpt_core::SectionId(v.id.to_vec()).to_string(),
            id_hex: ckpt_core::control::hex(v.id),
            size_bytes: v.size_bytes,
            expiration_ns: (v.expiration != Time::END).then_some(v.expiration.0),
            last_update_ns: v.last_update.0,
            version,
        });
    });
    out
}

/// Reads section `id` of a mapped checkpoint (ignoring open modes: operators
/// may look at any checkpoint they own).
pub fn read_section(mapped: &Mapped, id: &[u8]) -> Option<(Vec<u8>, u64)> {
    let section = mapped.lookup(id).ok()??;
    if mapped.is_expired(section) {
        return None;
    }
    mapped
        .read_to_vec(section)
        .ok()
        .map(|(data, meta)| (data, meta.version))
}
