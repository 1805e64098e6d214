//! Creation attributes, open flags, update modes, times and descriptors.
//!
//! These mirror `saCkpt.h` (B.02.02) field by field; the names carry units.

use core::fmt;

use crate::name::{SectionId, SECTION_ID_BYTES_MAX};

/// An SA time or duration in nanoseconds (`SaTimeT`).
///
/// Absolute times count from the Unix epoch; [`Time::END`] means "never".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub i64);

impl Time {
    /// `SA_TIME_END`: the end of time, "never expires".
    pub const END: Time = Time(i64::MAX);
    /// `SA_TIME_BEGIN`.
    pub const BEGIN: Time = Time(0);
    /// One second.
    pub const SECOND: Time = Time(1_000_000_000);

    /// The time in nanoseconds.
    pub const fn as_ns(self) -> i64 {
        self.0
    }

    /// A duration or absolute time from nanoseconds.
    pub const fn from_ns(ns: i64) -> Time {
        Time(ns)
    }

    /// A duration of whole seconds.
    pub const fn from_secs(secs: i64) -> Time {
        Time(secs.saturating_mul(1_000_000_000))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Time::END {
            f.write_str("never")
        } else {
            write!(
                f,
                "{}.{:09}s",
                self.0 / 1_000_000_000,
                self.0 % 1_000_000_000
            )
        }
    }
}

/// How writes reach the replicas (the `SA_CKPT_WR_*` creation flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateMode {
    /// `SA_CKPT_WR_ALL_REPLICAS`: a write returns once every replica holds it.
    AllReplicas,
    /// `SA_CKPT_WR_ACTIVE_REPLICA`: a write returns once the active replica holds it.
    ActiveReplica,
    /// `SA_CKPT_WR_ACTIVE_REPLICA_WEAK`: like `ActiveReplica`, without atomicity
    /// on failure. ckpt's writes are atomic in every mode, so no section is ever
    /// left `CORRUPTED`.
    ActiveReplicaWeak,
}

impl UpdateMode {
    /// True for the asynchronous modes, which have an active replica.
    pub const fn is_asynchronous(self) -> bool {
        !matches!(self, UpdateMode::AllReplicas)
    }
}

/// Checkpoint creation flags (`SaCkptCheckpointCreationFlagsT`), validated.
///
/// Exactly one update mode, optionally `COLLOCATED`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CreationFlags(u32);

impl CreationFlags {
    /// `SA_CKPT_WR_ALL_REPLICAS`.
    pub const WR_ALL_REPLICAS: u32 = 0x1;
    /// `SA_CKPT_WR_ACTIVE_REPLICA`.
    pub const WR_ACTIVE_REPLICA: u32 = 0x2;
    /// `SA_CKPT_WR_ACTIVE_REPLICA_WEAK`.
    pub const WR_ACTIVE_REPLICA_WEAK: u32 = 0x4;
    /// `SA_CKPT_CHECKPOINT_COLLOCATED`.
    pub const COLLOCATED: u32 = 0x8;

    /// Validates raw flag bits: exactly one `WR_*` flag, optionally `COLLOCATED`,
    /// nothing else. Returns `None` otherwise (`SA_AIS_ERR_INVALID_PARAM`).
    pub const fn from_bits(bits: u32) -> Option<Self> {
        let mode = bits & 0x7;
        let known = Self::WR_ALL_REPLICAS
            | Self::WR_ACTIVE_REPLICA
            | Self::WR_ACTIVE_REPLICA_WEAK
            | Self::COLLOCATED;
        if bits & !known != 0 || !mode.is_power_of_two() {
            return None;
        }
        Some(Self(bits))
    }

    /// Flags for `mode`, collocated or not.
    pub const fn new(mode: UpdateMode, collocated: bool) -> Self {
        let mode_bits = match mode {
            UpdateMode::AllReplicas => Self::WR_ALL_REPLICAS,
            UpdateMode::ActiveReplica => Self::WR_ACTIVE_REPLICA,
            UpdateMode::ActiveReplicaWeak => Self::WR_ACTIVE_REPLICA_WEAK,
        };
        Self(mode_bits | if collocated { Self::COLLOCATED } else { 0 })
    }

    /// The raw bits, as `saCkpt.h` defines them.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// The update mode.
    pub const fn mode(self) -> UpdateMode {
        match self.0 & 0x7 {
            Self::WR_ALL_REPLICAS => UpdateMode::AllReplicas,
            Self::WR_ACTIVE_REPLICA => UpdateMode::ActiveReplica,
            _ => UpdateMode::ActiveReplicaWeak,
        }
    }

    /// True if `SA_CKPT_CHECKPOINT_COLLOCATED` is set.
    pub const fn is_collocated(self) -> bool {
        self.0 & Self::COLLOCATED != 0
    }
}

impl fmt::Debug for CreationFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for CreationFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.mode() {
            UpdateMode::AllReplicas => "WR_ALL_REPLICAS",
            UpdateMode::ActiveReplica => "WR_ACTIVE_REPLICA",
            UpdateMode::ActiveReplicaWeak => "WR_ACTIVE_REPLICA_WEAK",
        })?;
        if self.is_collocated() {
            f.write_str("|COLLOCATED")?;
        }
        Ok(())
    }
}

/// ckpt's own capacity limits, beyond the spec's. A checkpoint asking for more is
/// refused with `SA_AIS_ERR_NO_RESOURCES`.
pub mod limits {
    /// Most sections one checkpoint may declare.
    pub const SECTIONS_MAX: u32 = 1 << 22;
    /// Largest `maxSectionSize` (1 TiB).
    pub const SECTION_BYTES_MAX: u64 = 1 << 40;
    /// Largest section id ckpt stores; ids are kept inline in each section slot.
    pub const SECTION_ID_BYTES_MAX: u64 = 4096;
    /// Largest segment (header, index, log and every section's two buffers), 4 TiB.
    pub const SEGMENT_BYTES_MAX: u64 = 1 << 42;
}

/// The attributes a checkpoint is created with (`SaCkptCheckpointCreationAttributesT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CreationAttributes {
    /// Update mode and collocation.
    pub flags: CreationFlags,
    /// Net bytes of application data one replica may hold (sum of section sizes).
    pub checkpoint_bytes: u64,
    /// How long the checkpoint outlives its last close, in nanoseconds.
    pub retention_ns: i64,
    /// Most sections at once. `1` gives the checkpoint its default section.
    pub sections_max: u32,
    /// Largest section, in bytes.
    pub section_bytes_max: u64,
    /// Longest section id, in bytes.
    pub section_id_bytes_max: u64,
}

/// Why creation attributes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributesError {
    /// `maxSections` is zero.
    NoSections,
    /// `checkpointSize > maxSections * maxSectionSize` (spec §3.5.1).
    CheckpointLargerThanSections,
    /// `retentionDuration` is negative.
    NegativeRetention,
    /// `maxSectionIdSize` exceeds what `SaCkptSectionIdT` can carry.
    SectionIdTooLong,
    /// `maxSectionIdSize` is 0 but there is more than one section: no section
    /// could ever be named.
    NoRoomForIds,
    /// Beyond ckpt's capacity limits ([`limits`]).
    BeyondCapacity,
}

impl fmt::Display for AttributesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttributesError::NoSections => "maxSections must be at least 1",
            AttributesError::CheckpointLargerThanSections => {
                "checkpointSize exceeds maxSections * maxSectionSize"
            }
            AttributesError::NegativeRetention => "retentionDuration is negative",
            AttributesError::SectionIdTooLong => "maxSectionIdSize exceeds 65535",
            AttributesError::NoRoomForIds => "maxSectionIdSize is 0 with more than one section",
            AttributesError::BeyondCapacity => {
                "attributes exceed ckpt's capacity limits (sections, section or id size, segment size)"
            }
        })
    }
}

impl core::error::Error for AttributesError {}

impl CreationAttributes {
    /// Attributes for a checkpoint of `sections_max` sections of at most
    /// `section_bytes_max` bytes, asynchronous and collocated (the csa103 shape),
    /// retained for 60 s after the last close, with 64-byte section ids.
    ///
    /// ```
    /// use ckpt_core::{CreationAttributes, UpdateMode};
    /// let attrs = CreationAttributes::new(2, 4);
    /// assert_eq!(attrs.flags.mode(), UpdateMode::ActiveReplica);
    /// assert!(attrs.validate().is_ok());
    /// ```
    pub const fn new(sections_max: u32, section_bytes_max: u64) -> Self {
        Self {
            flags: CreationFlags::new(UpdateMode::ActiveReplica, true),
            checkpoint_bytes: sections_max as u64 * section_bytes_max,
            retention_ns: 60 * 1_000_000_000,
            sections_max,
            section_bytes_max,
            section_id_bytes_max: 64,
        }
    }

    /// Checks the spec's rules and ckpt's capacity limits.
    pub fn validate(&self) -> Result<(), AttributesError> {
        if self.sections_max == 0 {
            return Err(AttributesError::NoSections);
        }
        if self.retention_ns < 0 {
            return Err(AttributesError::NegativeRetention);
        }
        if self.section_id_bytes_max > SECTION_ID_BYTES_MAX as u64 {
            return Err(AttributesError::SectionIdTooLong);
        }
        if self.section_id_bytes_max == 0 && self.sections_max > 1 {
            return Err(AttributesError::NoRoomForIds);
        }
        let all_sections = (self.sections_max as u128) * (self.section_bytes_max as u128);
        if self.checkpoint_bytes as u128 > all_sections {
            return Err(AttributesError::CheckpointLargerThanSections);
        }
        if self.sections_max > limits::SECTIONS_MAX
            || self.section_bytes_max > limits::SECTION_BYTES_MAX
            || self.section_id_bytes_max > limits::SECTION_ID_BYTES_MAX
            || 2 * all_sections > limits::SEGMENT_BYTES_MAX as u128
        {
            return Err(AttributesError::BeyondCapacity);
        }
        Ok(())
    }

    /// True when the checkpoint has the automatic default section (`maxSections == 1`).
    pub const fn has_default_section(&self) -> bool {
        self.sections_max == 1
    }

    /// True if two openers agree. Like OpenSAF, a reopen that differs only in
    /// `retentionDuration` is accepted (the creator's value stays).
    pub fn compatible_with(&self, other: &CreationAttributes) -> bool {
        CreationAttributes {
            retention_ns: 0,
            ..*self
        } == CreationAttributes {
            retention_ns: 0,
            ..*other
        }
    }
}

/// Checkpoint open flags (`SaCkptCheckpointOpenFlagsT`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpenFlags(u32);

impl OpenFlags {
    /// `SA_CKPT_CHECKPOINT_READ`.
    pub const READ: OpenFlags = OpenFlags(0x1);
    /// `SA_CKPT_CHECKPOINT_WRITE`.
    pub const WRITE: OpenFlags = OpenFlags(0x2);
    /// `SA_CKPT_CHECKPOINT_CREATE`.
    pub const CREATE: OpenFlags = OpenFlags(0x4);

    /// Validates raw bits: at least one of READ, WRITE, CREATE and nothing else
    /// (`SA_AIS_ERR_BAD_FLAGS` otherwise).
    pub const fn from_bits(bits: u32) -> Option<Self> {
        if bits == 0 || bits & !0x7 != 0 {
            None
        } else {
            Some(Self(bits))
        }
    }

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// True if every flag of `other` is set.
    pub const fn contains(self, other: OpenFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for OpenFlags {
    type Output = OpenFlags;
    fn bitor(self, rhs: OpenFlags) -> OpenFlags {
        OpenFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for OpenFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [(0x1, "READ"), (0x2, "WRITE"), (0x4, "CREATE")];
        let mut first = true;
        for (bit, name) in names {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

/// Which sections an iteration visits (`SaCkptSectionsChosenT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionsChosen {
    /// `SA_CKPT_SECTIONS_FOREVER`: sections that never expire.
    Forever,
    /// `SA_CKPT_SECTIONS_LEQ_EXPIRATION_TIME`: expiring at or before the given time.
    ExpiringAtOrBefore(Time),
    /// `SA_CKPT_SECTIONS_GEQ_EXPIRATION_TIME`: expiring at or after the given time.
    ExpiringAtOrAfter(Time),
    /// `SA_CKPT_SECTIONS_CORRUPTED`: corrupted sections (ckpt never leaves any).
    Corrupted,
    /// `SA_CKPT_SECTIONS_ANY`: every section.
    Any,
}

impl SectionsChosen {
    /// From the C enum value (1..=5) and its time argument; `None` if out of range.
    pub const fn from_raw(value: u32, expiration: Time) -> Option<Self> {
        Some(match value {
            1 => SectionsChosen::Forever,
            2 => SectionsChosen::ExpiringAtOrBefore(expiration),
            3 => SectionsChosen::ExpiringAtOrAfter(expiration),
            4 => SectionsChosen::Corrupted,
            5 => SectionsChosen::Any,
            _ => return None,
        })
    }

    /// True if a valid section expiring at `expiration` is chosen.
    pub fn selects(self, expiration: Time) -> bool {
        match self {
            SectionsChosen::Forever => expiration == Time::END,
            SectionsChosen::ExpiringAtOrBefore(t) => expiration <= t,
            SectionsChosen::ExpiringAtOrAfter(t) => expiration >= t,
            SectionsChosen::Corrupted => false,
            SectionsChosen::Any => true,
        }
    }
}

/// `SaCkptSectionStateT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SectionState {
    /// `SA_CKPT_SECTION_VALID`.
    Valid = 1,
    /// `SA_CKPT_SECTION_CORRUPTED`.
    Corrupted = 2,
}

/// One section as iteration reports it (`SaCkptSectionDescriptorT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionDescriptor {
    /// The section's id.
    pub id: SectionId,
    /// Absolute expiration time; [`Time::END`] for never.
    pub expiration: Time,
    /// Current size in bytes.
    pub size_bytes: u64,
    /// Valid or corrupted.
    pub state: SectionState,
    /// When the section was last written (absolute, nanoseconds).
    pub last_update: Time,
}

/// What `saCkptCheckpointStatusGet` reports (`SaCkptCheckpointDescriptorT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointStatus {
    /// The creation attributes, with the retention duration as last set
    /// (`saCkptCheckpointRetentionDurationSet`), as OpenSAF and openais
    /// report it.
    pub attributes: CreationAttributes,
    /// Sections that exist now.
    pub sections: u32,
    /// Sum of the sections' sizes, in bytes.
    pub memory_used_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_flags_take_exactly_one_mode() {
        assert!(CreationFlags::from_bits(0).is_none());
        assert!(CreationFlags::from_bits(CreationFlags::COLLOCATED).is_none());
        assert!(CreationFlags::from_bits(0x3).is_none());
        assert!(CreationFlags::from_bits(0x10 | 0x2).is_none());
        let f = CreationFlags::from_bits(0xA).unwrap();
        assert_eq!(f.mode(), UpdateMode::ActiveReplica);
        assert!(f.is_collocated());
        assert_eq!(f.to_string(), "WR_ACTIVE_REPLICA|COLLOCATED");
        assert_eq!(
            CreationFlags::from_bits(0x4).unwrap().mode(),
            UpdateMode::ActiveReplicaWeak
        );
    }

    #[test]
    fn attributes_follow_the_spec_limits() {
        let ok = CreationAttributes::new(2, 4);
        assert_eq!(ok.validate(), Ok(()));
        let too_big = CreationAttributes {
            checkpoint_bytes: 9,
            ..ok
        };
        assert_eq!(
            too_big.validate(),
            Err(AttributesError::CheckpointLargerThanSections)
        );
        assert_eq!(
            CreationAttributes {
                sections_max: 0,
                ..ok
            }
            .validate(),
            Err(AttributesError::NoSections)
        );
        assert_eq!(
            CreationAttributes {
                retention_ns: -1,
                ..ok
            }
            .validate(),
            Err(AttributesError::NegativeRetention)
        );
        assert_eq!(
            CreationAttributes {
                section_id_bytes_max: 70_000,
                ..ok
            }
            .validate(),
            Err(AttributesError::SectionIdTooLong)
        );
        assert_eq!(
            CreationAttributes {
                section_bytes_max: 1 << 41,
                checkpoint_bytes: 0,
                ..ok
            }
            .validate(),
            Err(AttributesError::BeyondCapacity)
        );
    }

    #[test]
    fn reopen_may_differ_in_retention_only() {
        let a = CreationAttributes::new(2, 4);
        assert!(a.compatible_with(&CreationAttributes {
            retention_ns: 5,
            ..a
        }));
        assert!(!a.compatible_with(&CreationAttributes {
            sections_max: 3,
            ..a
        }));
    }

    #[test]
    fn open_flags_need_one_known_bit() {
        assert!(OpenFlags::from_bits(0).is_none());
        assert!(OpenFlags::from_bits(8).is_none());
        let f = OpenFlags::from_bits(3).unwrap();
        assert!(f.contains(OpenFlags::READ) && f.contains(OpenFlags::WRITE));
        assert!(!f.contains(OpenFlags::CREATE));
        assert_eq!(
            format!("{:?}", OpenFlags::READ | OpenFlags::CREATE),
            "READ|CREATE"
        );
    }

    #[test]
    fn sections_chosen_filters_by_expiration() {
        let t = Time(100);
        assert!(SectionsChosen::Forever.selects(Time::END));
        assert!(!SectionsChosen::Forever.selects(t));
        assert!(SectionsChosen::ExpiringAtOrBefore(t).selects(Time(100)));
        assert!(!SectionsChosen::ExpiringAtOrBefore(t).selects(Time(101)));
        assert!(SectionsChosen::ExpiringAtOrAfter(t).selects(Time::END));
        assert!(!SectionsChosen::Corrupted.selects(t));
        assert!(SectionsChosen::Any.selects(t));
        assert!(SectionsChosen::from_raw(6, t).is_none());
        assert_eq!(SectionsChosen::from_raw(5, t), Some(SectionsChosen::Any));
    }
}
