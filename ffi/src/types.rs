//! The C types of `saAis.h` and `saCkpt.h`, as `repr(C)` Rust types with the
//! same layout (x86_64 LP64 and every LP64 target: the tests check sizes and
//! offsets against the reference's table).

use core::ffi::c_void;

pub type SaAisErrorT = u32;
pub type SaTimeT = i64;
pub type SaSizeT = u64;
pub type SaOffsetT = u64;
pub type SaInvocationT = u64;
pub type SaSelectionObjectT = u64;
pub type SaCkptHandleT = u64;
pub type SaCkptCheckpointHandleT = u64;
pub type SaCkptSectionIterationHandleT = u64;
pub type SaDispatchFlagsT = u32;

pub const SA_AIS_OK: SaAisErrorT = 1;

pub const SA_DISPATCH_ONE: SaDispatchFlagsT = 1;
pub const SA_DISPATCH_ALL: SaDispatchFlagsT = 2;
pub const SA_DISPATCH_BLOCKING: SaDispatchFlagsT = 3;

pub const SA_CKPT_SECTION_VALID: u32 = 1;
pub const SA_CKPT_SECTION_CORRUPTED: u32 = 2;

/// `SA_MAX_NAME_LENGTH`: the classic `SaNameT`'s value bytes.
pub const SA_MAX_NAME_LENGTH: usize = 256;

/// `SaVersionT`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaVersionT {
    pub release_code: u8,
    pub major_version: u8,
    pub minor_version: u8,
}

/// `SaNameT` in the classic layout (the extended one is the same 258 bytes).
#[repr(C)]
pub struct SaNameT {
    pub length: u16,
    pub value: [u8; SA_MAX_NAME_LENGTH],
}

impl SaNameT {
    /// A classic name holding `bytes`; `None` if longer than
    /// [`SA_MAX_NAME_LENGTH`].
    pub fn new(bytes: &[u8]) -> Option<SaNameT> {
        let mut name = SaNameT {
            length: bytes.len() as u16,
            value: [0; SA_MAX_NAME_LENGTH],
        };
        name.value.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(name)
    }
}

/// `SaCkptCheckpointOpenCallbackT`.
pub type SaCkptCheckpointOpenCallbackT =
    Option<unsafe extern "C" fn(SaInvocationT, SaCkptCheckpointHandleT, SaAisErrorT)>;
/// `SaCkptCheckpointSynchronizeCallbackT`.
pub type SaCkptCheckpointSynchronizeCallbackT =
    Option<unsafe extern "C" fn(SaInvocationT, SaAisErrorT)>;

/// `SaCkptCheckpointTrackCallbackT` (B.02.03), also the shape of OpenSAF's
/// `ncsCkptCkptArrivalCallbackT`.
pub type SaCkptCheckpointTrackCallbackT =
    Option<unsafe extern "C" fn(SaCkptCheckpointHandleT, *mut SaCkptIOVectorElementT, u32)>;

/// `SaCkptCallbacksT_2` (B.02.03).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SaCkptCallbacksT_2 {
    pub open: SaCkptCheckpointOpenCallbackT,
    pub synchronize: SaCkptCheckpointSynchronizeCallbackT,
    pub track: SaCkptCheckpointTrackCallbackT,
}

/// `SaCkptCallbacksT`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SaCkptCallbacksT {
    pub open: SaCkptCheckpointOpenCallbackT,
    pub synchronize: SaCkptCheckpointSynchronizeCallbackT,
}

/// `SaCkptCheckpointCreationAttributesT`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SaCkptCheckpointCreationAttributesT {
    pub creation_flags: u32,
    pub checkpoint_size: SaSizeT,
    pub retention_duration: SaTimeT,
    pub max_sections: u32,
    pub max_section_size: SaSizeT,
    pub max_section_id_size: SaSizeT,
}

/// `SaCkptSectionIdT`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SaCkptSectionIdT {
    pub id_len: u16,
    pub id: *mut u8,
}

/// `SaCkptSectionCreationAttributesT`.
#[repr(C)]
pub struct SaCkptSectionCreationAttributesT {
    pub section_id: *mut SaCkptSectionIdT,
    pub expiration_time: SaTimeT,
}

/// `SaCkptSectionDescriptorT`.
#[repr(C)]
pub struct SaCkptSectionDescriptorT {
    pub section_id: SaCkptSectionIdT,
    pub expiration_time: SaTimeT,
    pub section_size: SaSizeT,
    pub section_state: u32,
    pub last_update: SaTimeT,
}

/// `SaCkptIOVectorElementT`.
#[repr(C)]
pub struct SaCkptIOVectorElementT {
    pub section_id: SaCkptSectionIdT,
    pub data_buffer: *mut c_void,
    pub data_size: SaSizeT,
    pub data_offset: SaOffsetT,
    pub read_size: SaSizeT,
}

/// `SaCkptCheckpointDescriptorT`.
#[repr(C)]
pub struct SaCkptCheckpointDescriptorT {
    pub creation_attributes: SaCkptCheckpointCreationAttributesT,
    pub number_of_sections: u32,
    pub memory_used: SaSizeT,
}

// ---------------------------------------------------------------------------
// SAFplus's hot-standby extension (`clCkptHotStandby.h`)

/// SAFplus's return code: `CL_OK` (0), or a component id in the upper 16
/// bits (0x16 for the checkpoint service) and a common error code below.
pub type ClRcT = u32;
pub const CL_OK: ClRcT = 0;
const CL_CID_CKPT: ClRcT = 0x16 << 16;
pub const CL_CKPT_ERR_INVALID_PARAMETER: ClRcT = CL_CID_CKPT | 0x02;
pub const CL_CKPT_ERR_NOT_EXIST: ClRcT = CL_CID_CKPT | 0x04;
pub const CL_CKPT_ERR_INVALID_HANDLE: ClRcT = CL_CID_CKPT | 0x05;
pub const CL_CKPT_ERR_UNSPECIFIED: ClRcT = CL_CID_CKPT | 0x11;
pub const CL_CKPT_ERR_TRY_AGAIN: ClRcT = CL_CID_CKPT | 0x16;
pub const CL_CKPT_ERR_OP_NOT_PERMITTED: ClRcT = CL_CID_CKPT | 0x20;

/// `CL_CKPT_DISTRIBUTED`: the creation flag of SAFplus's hot-standby checkpoints.
pub const CL_CKPT_DISTRIBUTED: u32 = 0x10;

/// `ClCkptNotificationCallbackT(ckptHdl, pName, pIOVector, numSections,
/// pCookie)`. `ClNameT` has `SaNameT`'s classic layout and
/// `ClCkptIOVectorElementT` has `SaCkptIOVectorElementT`'s.
pub type ClCkptNotificationCallbackT = Option<
    unsafe extern "C" fn(
        SaCkptCheckpointHandleT,
        *mut SaNameT,
        *mut SaCkptIOVectorElementT,
        u32,
        *mut c_void,
    ) -> ClRcT,
>;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    /// The reference's table 1.3 (gcc, x86_64 LP64).
    #[test]
    fn layouts_match_the_c_headers() {
        assert_eq!(size_of::<SaVersionT>(), 3);
        assert_eq!(size_of::<SaNameT>(), 258);
        assert_eq!(size_of::<SaCkptCallbacksT>(), 16);
        assert_eq!(size_of::<SaCkptCallbacksT_2>(), 24);
        assert_eq!(size_of::<SaCkptCheckpointCreationAttributesT>(), 48);
        assert_eq!(
            offset_of!(SaCkptCheckpointCreationAttributesT, max_sections),
            24
        );
        assert_eq!(
            offset_of!(SaCkptCheckpointCreationAttributesT, max_section_id_size),
            40
        );
        assert_eq!(size_of::<SaCkptSectionIdT>(), 16);
        assert_eq!(offset_of!(SaCkptSectionIdT, id), 8);
        assert_eq!(size_of::<SaCkptSectionCreationAttributesT>(), 16);
        assert_eq!(size_of::<SaCkptSectionDescriptorT>(), 48);
        assert_eq!(offset_of!(SaCkptSectionDescriptorT, section_state), 32);
        assert_eq!(offset_of!(SaCkptSectionDescriptorT, last_update), 40);
        assert_eq!(size_of::<SaCkptIOVectorElementT>(), 48);
        assert_eq!(offset_of!(SaCkptIOVectorElementT, data_buffer), 16);
        assert_eq!(offset_of!(SaCkptIOVectorElementT, read_size), 40);
        assert_eq!(size_of::<SaCkptCheckpointDescriptorT>(), 64);
        assert_eq!(offset_of!(SaCkptCheckpointDescriptorT, memory_used), 56);
    }
}
