//! `SaAisErrorT`: the status codes of the SA Forum AIS C API.
//!
//! The numeric values are the ones of `saAis.h` (SAI-AIS-CPROG); the C library
//! returns them unchanged, so they are part of ckpt's ABI.

use core::fmt;

/// `SA_AIS_OK` (1): the call succeeded (an `SaAisErrorT` that is not an
/// error; [`AisError::code`] gives the others).
pub const SA_AIS_OK: u32 = 1;

/// An `SaAisErrorT` value other than `SA_AIS_OK`.
///
/// Every per-operation error enum in [`crate::error`] maps each of its variants
/// to exactly one of these with an exhaustive `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum AisError {
    /// `SA_AIS_ERR_LIBRARY` (2): an unexpected problem, such as a corrupt segment.
    Library = 2,
    /// `SA_AIS_ERR_VERSION` (3).
    Version = 3,
    /// `SA_AIS_ERR_INIT` (4).
    Init = 4,
    /// `SA_AIS_ERR_TIMEOUT` (5).
    Timeout = 5,
    /// `SA_AIS_ERR_TRY_AGAIN` (6): the service cannot be provided now; retry later.
    TryAgain = 6,
    /// `SA_AIS_ERR_INVALID_PARAM` (7).
    InvalidParam = 7,
    /// `SA_AIS_ERR_NO_MEMORY` (8).
    NoMemory = 8,
    /// `SA_AIS_ERR_BAD_HANDLE` (9).
    BadHandle = 9,
    /// `SA_AIS_ERR_BUSY` (10).
    Busy = 10,
    /// `SA_AIS_ERR_ACCESS` (11).
    Access = 11,
    /// `SA_AIS_ERR_NOT_EXIST` (12).
    NotExist = 12,
    /// `SA_AIS_ERR_NAME_TOO_LONG` (13).
    NameTooLong = 13,
    /// `SA_AIS_ERR_EXIST` (14).
    Exist = 14,
    /// `SA_AIS_ERR_NO_SPACE` (15).
    NoSpace = 15,
    /// `SA_AIS_ERR_INTERRUPT` (16).
    Interrupt = 16,
    /// `SA_AIS_ERR_NAME_NOT_FOUND` (17).
    NameNotFound = 17,
    /// `SA_AIS_ERR_NO_RESOURCES` (18).
    NoResources = 18,
    /// `SA_AIS_ERR_NOT_SUPPORTED` (19).
    NotSupported = 19,
    /// `SA_AIS_ERR_BAD_OPERATION` (20).
    BadOperation = 20,
    /// `SA_AIS_ERR_FAILED_OPERATION` (21).
    FailedOperation = 21,
    /// `SA_AIS_ERR_BAD_FLAGS` (25).
    BadFlags = 25,
    /// `SA_AIS_ERR_TOO_BIG` (26).
    TooBig = 26,
    /// `SA_AIS_ERR_NO_SECTIONS` (27): the end of a section iteration.
    NoSections = 27,
}

impl AisError {
    /// The numeric `SaAisErrorT` value.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The C name of the code, for messages.
    pub const fn c_name(self) -> &'static str {
        match self {
            AisError::Library => "SA_AIS_ERR_LIBRARY",
            AisError::Version => "SA_AIS_ERR_VERSION",
            AisError::Init => "SA_AIS_ERR_INIT",
            AisError::Timeout => "SA_AIS_ERR_TIMEOUT",
            AisError::TryAgain => "SA_AIS_ERR_TRY_AGAIN",
            AisError::InvalidParam => "SA_AIS_ERR_INVALID_PARAM",
            AisError::NoMemory => "SA_AIS_ERR_NO_MEMORY",
            AisError::BadHandle => "SA_AIS_ERR_BAD_HANDLE",
            AisError::Busy => "SA_AIS_ERR_BUSY",
            AisError::Access => "SA_AIS_ERR_ACCESS",
            AisError::NotExist => "SA_AIS_ERR_NOT_EXIST",
            AisError::NameTooLong => "SA_AIS_ERR_NAME_TOO_LONG",
            AisError::Exist => "SA_AIS_ERR_EXIST",
            AisError::NoSpace => "SA_AIS_ERR_NO_SPACE",
            AisError::Interrupt => "SA_AIS_ERR_INTERRUPT",
            AisError::NameNotFound => "SA_AIS_ERR_NAME_NOT_FOUND",
            AisError::NoResources => "SA_AIS_ERR_NO_RESOURCES",
            AisError::NotSupported => "SA_AIS_ERR_NOT_SUPPORTED",
            AisError::BadOperation => "SA_AIS_ERR_BAD_OPERATION",
            AisError::FailedOperation => "SA_AIS_ERR_FAILED_OPERATION",
            AisError::BadFlags => "SA_AIS_ERR_BAD_FLAGS",
            AisError::TooBig => "SA_AIS_ERR_TOO_BIG",
            AisError::NoSections => "SA_AIS_ERR_NO_SECTIONS",
        }
    }
}

impl fmt::Display for AisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.c_name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_sa_ais_h() {
        assert_eq!(AisError::Library.code(), 2);
        assert_eq!(AisError::TryAgain.code(), 6);
        assert_eq!(AisError::InvalidParam.code(), 7);
        assert_eq!(AisError::NotExist.code(), 12);
        assert_eq!(AisError::Exist.code(), 14);
        assert_eq!(AisError::NoSpace.code(), 15);
        assert_eq!(AisError::NoResources.code(), 18);
        assert_eq!(AisError::BadOperation.code(), 20);
        assert_eq!(AisError::BadFlags.code(), 25);
        assert_eq!(AisError::NoSections.code(), 27);
    }
}
