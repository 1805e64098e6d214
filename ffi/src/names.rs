//! `SaNameT`: the classic `{length, value[256]}` layout, and the extended-name
//! encoding (`saAisNameLend` / `saAisNameBorrow`) that holds a borrowed
//! pointer to a longer string, enabled by `SA_ENABLE_EXTENDED_NAMES=1`.
//!
//! The extended encoding: a name shorter than 256 bytes is stored classically
//! (its NUL included, when it fits); a longer one stores the magic `0xcd2b` in
//! the first 16-bit word and the string's address, unaligned, at byte 8.

use core::ffi::{c_char, CStr};
use std::sync::OnceLock;

use crate::types::{SaNameT, SA_MAX_NAME_LENGTH};

/// The first word of an `SaNameT` that holds a borrowed long name.
pub const EXTENDED_NAME_MAGIC: u16 = 0xcd2b;
/// The longest name the extended encoding carries (a DN's limit).
pub const EXTENDED_NAME_BYTES_MAX: usize = 2048;

/// True if the process enabled extended names (`SA_ENABLE_EXTENDED_NAMES`
/// exactly "1" when first asked).
pub fn extended_names() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("SA_ENABLE_EXTENDED_NAMES").is_some_and(|v| v == "1"))
}

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameFault {
    /// Empty, or a classic length beyond 256.
    Invalid,
    /// An extended name longer than [`EXTENDED_NAME_BYTES_MAX`].
    TooBig,
}

/// The bytes of the name at `name`.
///
/// # Safety
/// `name` points to a readable `SaNameT`; if it holds an extended name, that
/// name's pointer is a readable NUL-terminated string that outlives `'a`.
pub unsafe fn name_bytes<'a>(name: *const SaNameT) -> Result<&'a [u8], NameFault> {
    // SAFETY: the caller vouches for the SaNameT; SaNameT is 2-aligned.
    let n = unsafe { &*name };
    if extended_names() && n.length == EXTENDED_NAME_MAGIC {
        let mut ptr = [0u8; 8];
        ptr.copy_from_slice(&n.value[6..14]);
        let ptr = usize::from_ne_bytes(ptr) as *const c_char;
        if ptr.is_null() {
            return Err(NameFault::Invalid);
        }
        // SAFETY: an extended name's pointer is a NUL-terminated string
        // (caller's contract).
        let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
        return match bytes.len() {
            0 => Err(NameFault::Invalid),
            n if n > EXTENDED_NAME_BYTES_MAX => Err(NameFault::TooBig),
            _ => Ok(bytes),
        };
    }
    let len = n.length as usize;
    if len == 0 || len > SA_MAX_NAME_LENGTH {
        return Err(NameFault::Invalid);
    }
    Ok(&n.value[..len])
}

/// `saAisNameLend`: stores `value` into `name`, by copy when shorter than 256
/// bytes, else by reference (the extended encoding).
///
/// # Safety
/// `value` is NULL or a NUL-terminated string; `name` is NULL or points to a
/// writable `SaNameT`. A long `value` must outlive every use of `name`.
#[no_mangle]
pub unsafe extern "C" fn saAisNameLend(value: *const c_char, name: *mut SaNameT) {
    if value.is_null() || name.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: non-NULL, and NUL-terminated per the caller's contract.
        let bytes = unsafe { CStr::from_ptr(value) }.to_bytes();
        // SAFETY: non-NULL, writable per the caller's contract.
        let n = unsafe { &mut *name };
        if bytes.len() < SA_MAX_NAME_LENGTH {
            n.length = bytes.len() as u16;
            n.value[..bytes.len()].copy_from_slice(bytes);
            n.value[bytes.len()] = 0;
        } else {
            n.length = EXTENDED_NAME_MAGIC;
            n.value[6..14].copy_from_slice(&(value as usize).to_ne_bytes());
        }
    });
}

/// `saAisNameBorrow`: the string `name` holds. A classic name is returned in
/// place when a NUL follows its bytes (as `saAisNameLend` leaves it), else
/// NULL: the library does not write to a `const SaNameT`.
///
/// # Safety
/// `name` is NULL or points to a readable `SaNameT`.
#[no_mangle]
pub unsafe extern "C" fn saAisNameBorrow(name: *const SaNameT) -> *const c_char {
    if name.is_null() {
        return core::ptr::null();
    }
    // SAFETY: non-NULL, readable per the caller's contract.
    let n = unsafe { &*name };
    if n.length == EXTENDED_NAME_MAGIC {
        let mut ptr = [0u8; 8];
        ptr.copy_from_slice(&n.value[6..14]);
        return usize::from_ne_bytes(ptr) as *const c_char;
    }
    let len = n.length as usize;
    if len < SA_MAX_NAME_LENGTH && n.value[len] == 0 && !n.value[..len].contains(&0) {
        return n.value.as_ptr() as *const c_char;
    }
    core::ptr::null()
}
