//! SAFplus 6's hot-standby extension: `clCkptImmediateConsumptionRegister`
//! hands a standby the full contents of the sections other handles change,
//! and `clCkptSectionCheck` says whether a section exists (SAFplus's
//! hot-standby example uses both on SA checkpoint handles, which SAFplus's
//! own checkpoint handles equal). Declared in `clCkptHotStandby.h`.
//!
//! As in SAFplus, the notification callback runs on a library thread (this
//! library's tracker for the handle), not in `saCkptDispatch`, and the data it
//! is handed lives until it returns. Return codes are SAFplus's `ClRcT`:
//! `CL_OK` (0) or `CL_CKPT_ERR_*` (checkpoint component 0x16 in the upper 16
//! bits).

use core::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ckpt::{AisError, OpenFlags};

use crate::api::section_id;
use crate::library::{self, Immediate, CHECKPOINTS, LIBRARIES};
use crate::types::*;

/// Runs a body: `CL_OK`, its error, or `CL_CKPT_ERR_UNSPECIFIED` for a panic.
fn cl_guard(body: impl FnOnce() -> Result<(), ClRcT>) -> ClRcT {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => CL_OK,
        Ok(Err(rc)) => rc,
        Err(_) => CL_CKPT_ERR_UNSPECIFIED,
    }
}

/// The `CL_CKPT_ERR_*` code standing for an SA error.
fn cl_error(e: AisError) -> ClRcT {
    match e {
        AisError::InvalidParam | AisError::TooBig => CL_CKPT_ERR_INVALID_PARAMETER,
        AisError::NotExist => CL_CKPT_ERR_NOT_EXIST,
        AisError::BadHandle => CL_CKPT_ERR_INVALID_HANDLE,
        AisError::TryAgain => CL_CKPT_ERR_TRY_AGAIN,
        _ => CL_CKPT_ERR_UNSPECIFIED,
    }
}

/// `clCkptImmediateConsumptionRegister(checkpointHandle, callback, pCookie)`:
/// from now on, whenever another handle creates, writes or overwrites
/// sections of this checkpoint, `callback(checkpointHandle, name, iov, n,
/// pCookie)` is called with each changed section's id and its whole contents
/// after the change (`dataOffset` 0, `dataSize` = `readSize` = its size). A
/// NULL callback ends the registration.
///
/// `CL_CKPT_ERR_OP_NOT_PERMITTED` if this handle created the checkpoint
/// without `CL_CKPT_DISTRIBUTED` (0x10, as SAFplus requires; a handle that
/// opened an existing checkpoint may register) or was not opened for reading;
/// `CL_CKPT_ERR_INVALID_PARAMETER` if the checkpoint's name does not fit a
/// `ClNameT`; `CL_CKPT_ERR_INVALID_HANDLE` for anything but an open
/// checkpoint handle.
///
/// # Safety
/// `callback` is NULL or a function with the `ClCkptNotificationCallbackT`
/// signature; `cookie` is only handed back.
#[no_mangle]
pub unsafe extern "C" fn clCkptImmediateConsumptionRegister(
    handle: SaCkptCheckpointHandleT,
    callback: ClCkptNotificationCallbackT,
    cookie: *mut c_void,
) -> ClRcT {
    cl_guard(|| {
        let open = CHECKPOINTS.get(handle).ok_or(CL_CKPT_ERR_INVALID_HANDLE)?;
        let lib = LIBRARIES
            .get(open.library)
            .ok_or(CL_CKPT_ERR_INVALID_HANDLE)?;
        let created_plain = open
            .creation_flags
            .is_some_and(|f| f & CL_CKPT_DISTRIBUTED == 0);
        if created_plain || !open.checkpoint.flags().contains(OpenFlags::READ) {
            return Err(CL_CKPT_ERR_OP_NOT_PERMITTED);
        }
        // A ClNameT holds 256 bytes, NUL-terminated.
        if open.checkpoint.name().as_bytes().len() >= SA_MAX_NAME_LENGTH {
            return Err(CL_CKPT_ERR_INVALID_PARAMETER);
        }
        let registration = callback.map(|callback| Immediate {
            callback,
            cookie: cookie as usize,
        });
        *open.immediate.lock().unwrap_or_else(|p| p.into_inner()) = registration;
        if registration.is_some() {
            library::track(&lib, handle, &open);
        }
        Ok(())
    })
}

/// `clCkptSectionCheck(checkpointHandle, sectionId)`: `CL_OK` if the section
/// exists, `CL_CKPT_ERR_NOT_EXIST` if not (or if an asynchronous checkpoint
/// has no active replica), `CL_CKPT_ERR_INVALID_PARAMETER` for a NULL or
/// malformed id or one longer than `maxSectionIdSize`.
///
/// # Safety
/// `id` is NULL or points to a readable section id whose bytes are readable.
#[no_mangle]
pub unsafe extern "C" fn clCkptSectionCheck(
    handle: SaCkptCheckpointHandleT,
    id: *const SaCkptSectionIdT,
) -> ClRcT {
    cl_guard(|| {
        // SAFETY: forwarded.
        let id = unsafe { section_id(id) }.map_err(cl_error)?;
        let open = CHECKPOINTS.get(handle).ok_or(CL_CKPT_ERR_INVALID_HANDLE)?;
        match open.checkpoint.section(id) {
            Ok(_) => Ok(()),
            Err(e) => Err(cl_error(e.ais())),
        }
    })
}
