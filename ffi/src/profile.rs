//! Compatibility profiles: where OpenSAF, openais and SAFplus applications
//! expect behaviour that differs from the spec's, chosen per process by
//! `CKPT_SA_PROFILE` (read at each `saCkptInitialize`):
//!
//! | profile | differences from `strict` (the default, the spec) |
//! |---|---|
//! | `opensaf` | names must start with `safCkpt=`; a read element whose offset plus size passes `maxSectionSize` is `INVALID_PARAM` (the spec: it reads less); opening an existing checkpoint with creation attributes that differ only in the retention duration succeeds (the spec: `EXIST`); section ids of 50 bytes or more are refused; a write element past `maxSectionSize` by its offset is `NO_RESOURCES` (by its size alone, `INVALID_PARAM`); one call carrying more than 40,000,000 bytes is `NO_RESOURCES` |
//! | `openais` (also `safplus`) | a name's length may count a trailing NUL; SAFplus's extension creation flags (`0x10` and up) are accepted and ignored; `COLLOCATED` without an update mode (SAFplus's hot-standby example) is `COLLOCATED \| WR_ACTIVE_REPLICA` |

use ckpt::AisError;

/// The environment variable that picks the profile.
pub const PROFILE_VAR: &str = "CKPT_SA_PROFILE";

/// OpenSAF's `MAX_SEC_ID_LEN`: ids must be shorter.
pub const OPENSAF_SECTION_ID_BYTES: usize = 50;
/// OpenSAF's `CPSV_MAX_DATA_SIZE`: the most bytes one call carries.
pub const OPENSAF_CALL_BYTES_MAX: u64 = 40_000_000;
/// The creation flags the spec defines; SAFplus adds bits above them.
const SPEC_CREATION_FLAGS: u32 = 0xF;
const COLLOCATED: u32 = 0x8;
const WR_ACTIVE_REPLICA: u32 = 0x2;

/// A compatibility profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// The spec.
    #[default]
    Strict,
    /// OpenSAF's extra checks.
    OpenSaf,
    /// openais and SAFplus leniency.
    OpenAis,
}

impl Profile {
    /// The profile `CKPT_SA_PROFILE` names (unset or empty: strict); an
    /// unknown name is reported on stderr and refused.
    pub fn from_env() -> Result<Profile, AisError> {
        let value = std::env::var(PROFILE_VAR).unwrap_or_default();
        Profile::parse(&value).ok_or_else(|| {
            eprintln!(
                "libSaCkpt: {PROFILE_VAR}={value:?} is not a profile: use strict, opensaf, openais or safplus"
            );
            AisError::InvalidParam
        })
    }

    /// The profile named `name`.
    pub fn parse(name: &str) -> Option<Profile> {
        match name {
            "" | "strict" => Some(Profile::Strict),
            "opensaf" => Some(Profile::OpenSaf),
            "openais" | "safplus" => Some(Profile::OpenAis),
            _ => None,
        }
    }

    /// The checkpoint name as the engine takes it.
    pub fn name(self, name: &[u8]) -> Result<&[u8], AisError> {
        match self {
            Profile::OpenSaf if !name.starts_with(b"safCkpt=") => Err(AisError::InvalidParam),
            Profile::OpenAis => Ok(name.strip_suffix(b"\0").unwrap_or(name)),
            _ => Ok(name),
        }
    }

    /// The creation flags as the engine takes them.
    pub fn creation_flags(self, flags: u32) -> u32 {
        match self {
            Profile::OpenAis => {
                let spec = flags & SPEC_CREATION_FLAGS;
                // SAFplus's hot-standby example creates with COLLOCATED |
                // CL_CKPT_DISTRIBUTED, no update mode, then sets the active
                // replica: the asynchronous active-replica mode.
                if spec == COLLOCATED {
                    spec | WR_ACTIVE_REPLICA
                } else {
                    spec
                }
            }
            _ => flags,
        }
    }

    /// True if an open may name an existing checkpoint with another retention
    /// duration (OpenSAF's `CKPT_OPEN_SUCCESS_EXIST2_T`).
    pub fn retention_may_differ(self) -> bool {
        self == Profile::OpenSaf
    }

    /// Checks a section id's length.
    pub fn section_id(self, id: &[u8]) -> Result<(), AisError> {
        if self == Profile::OpenSaf && id.len() >= OPENSAF_SECTION_ID_BYTES {
            return Err(AisError::InvalidParam);
        }
        Ok(())
    }

    /// Checks one write element against `maxSectionSize` (`max`).
    pub fn write_element(self, offset: u64, size: u64, max: u64) -> Result<(), AisError> {
        if self != Profile::OpenSaf {
            return Ok(());
        }
        if size > max {
            return Err(AisError::InvalidParam);
        }
        if offset.saturating_add(size) > max {
            return Err(AisError::NoResources);
        }
        Ok(())
    }

    /// Checks one read element against `maxSectionSize` (`max`).
    pub fn read_element(self, offset: u64, size: u64, max: u64) -> Result<(), AisError> {
        if self == Profile::OpenSaf && offset.saturating_add(size) > max {
            return Err(AisError::InvalidParam);
        }
        Ok(())
    }

    /// Checks the bytes one call carries.
    pub fn call_bytes(self, bytes: u64) -> Result<(), AisError> {
        if self == Profile::OpenSaf && bytes > OPENSAF_CALL_BYTES_MAX {
            return Err(AisError::NoResources);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_differ_only_where_documented() {
        assert_eq!(Profile::parse("nonsense"), None);
        let s = Profile::Strict;
        let o = Profile::OpenSaf;
        let a = Profile::OpenAis;
        assert_eq!(s.name(b"free form"), Ok(&b"free form"[..]));
        assert_eq!(o.name(b"free form"), Err(AisError::InvalidParam));
        assert_eq!(o.name(b"safCkpt=x"), Ok(&b"safCkpt=x"[..]));
        assert_eq!(a.name(b"with nul\0"), Ok(&b"with nul"[..]));
        assert_eq!(s.name(b"with nul\0"), Ok(&b"with nul\0"[..]));
        assert_eq!(a.creation_flags(0x12), 0x2);
        assert_eq!(s.creation_flags(0x12), 0x12);
        assert_eq!(a.creation_flags(0x18), 0xA);
        assert_eq!(a.creation_flags(0x10), 0x0);
        assert_eq!(s.creation_flags(0x8), 0x8);
        assert_eq!(o.section_id(&[1; 50]), Err(AisError::InvalidParam));
        assert_eq!(o.section_id(&[1; 49]), Ok(()));
        assert_eq!(s.section_id(&[1; 50]), Ok(()));
        assert_eq!(o.write_element(0, 11, 10), Err(AisError::InvalidParam));
        assert_eq!(o.write_element(5, 6, 10), Err(AisError::NoResources));
        assert_eq!(o.write_element(4, 6, 10), Ok(()));
        assert_eq!(s.write_element(5, 6, 10), Ok(()));
        assert_eq!(o.call_bytes(40_000_001), Err(AisError::NoResources));
        assert_eq!(o.read_element(60, 8, 64), Err(AisError::InvalidParam));
        assert_eq!(s.read_element(60, 8, 64), Ok(()));
    }
}
