//! The 24 functions of SAI-AIS-CKPT B.02.02.
//!
//! Each checks its pointers and values, then its handle, then calls the
//! `ckpt` crate; each error maps to its `SaAisErrorT` through the error's
//! `.ais()`. Bodies run under [`guard`], so a panic is `SA_AIS_ERR_LIBRARY`.
//!
//! # Safety (every function)
//! Pointer arguments are NULL or valid for the access the SA Forum API
//! describes for them (the library cannot check more than NULL).

use core::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ckpt::{
    AisError, CreationAttributes, CreationFlags, OpenFlags, ReadError, ReadVec, SectionState,
    SectionsChosen, Time, WriteVec,
};

use crate::library::{self, Callback, Iteration, IterationState, Library, Open};
use crate::library::{CHECKPOINTS, ITERATIONS, LIBRARIES};
use crate::names::{name_bytes, NameFault};
use crate::profile::Profile;
use crate::types::*;

type Result<T> = std::result::Result<T, AisError>;

/// Runs an API body: its error as the C code, a panic as `SA_AIS_ERR_LIBRARY`.
fn guard(body: impl FnOnce() -> Result<()>) -> SaAisErrorT {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => SA_AIS_OK,
        Ok(Err(e)) => e as SaAisErrorT,
        Err(_) => AisError::Library as SaAisErrorT,
    }
}

/// `Err(InvalidParam)` if `ptr` is NULL.
fn non_null<T>(ptr: *const T) -> Result<()> {
    if ptr.is_null() {
        Err(AisError::InvalidParam)
    } else {
        Ok(())
    }
}

fn library(handle: SaCkptHandleT) -> Result<Arc<Library>> {
    LIBRARIES.get(handle).ok_or(AisError::BadHandle)
}

fn checkpoint(handle: SaCkptCheckpointHandleT) -> Result<Arc<Open>> {
    CHECKPOINTS.get(handle).ok_or(AisError::BadHandle)
}

/// Runs `f` on the open checkpoint `handle` names (without a new reference:
/// the hot paths' lookup is one pin).
#[inline]
fn with_checkpoint<R>(
    handle: SaCkptCheckpointHandleT,
    f: impl FnOnce(&Open) -> Result<R>,
) -> Result<R> {
    CHECKPOINTS
        .with(handle, |open| f(open))
        .unwrap_or(Err(AisError::BadHandle))
}

/// The profile of library instance `handle` (strict if it is not one), for
/// the value checks that come before the handle's.
fn profile_of(handle: SaCkptHandleT) -> Profile {
    LIBRARIES.get(handle).map(|l| l.profile).unwrap_or_default()
}

/// The bytes of a section id: `{0, NULL}` is the default section's (empty)
/// id; a length without bytes or bytes without a length are refused.
///
/// # Safety
/// `id` is NULL or points to a readable `SaCkptSectionIdT` whose `id` points to
/// `idLen` readable bytes that outlive `'a`.
pub(crate) unsafe fn section_id<'a>(id: *const SaCkptSectionIdT) -> Result<&'a [u8]> {
    non_null(id)?;
    // SAFETY: non-NULL, readable (caller's contract).
    let id = unsafe { *id };
    match (id.id_len, id.id.is_null()) {
        (0, true) => Ok(&[]),
        (0, false) | (_, true) => Err(AisError::InvalidParam),
        // SAFETY: idLen readable bytes at id (caller's contract).
        (n, false) => Ok(unsafe { std::slice::from_raw_parts(id.id, n as usize) }),
    }
}

/// `len` bytes at `data` (NULL allowed only for 0 bytes).
///
/// # Safety
/// `data` is NULL or points to `len` readable bytes that outlive `'a`.
unsafe fn bytes<'a>(data: *const c_void, len: SaSizeT) -> Result<&'a [u8]> {
    let len = span(data, len)?;
    match (data.is_null(), len) {
        (true, 0) => Ok(&[]),
        (true, _) => Err(AisError::InvalidParam),
        // SAFETY: len readable bytes at data (caller's contract).
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(data as *const u8, len) }),
    }
}

/// `len` as a buffer length at `at`: a length no object can have (past
/// `isize::MAX`, or running past the end of the address space) is refused
/// before any slice is made of it.
fn span(at: *const c_void, len: SaSizeT) -> Result<usize> {
    let len = usize::try_from(len).map_err(|_| AisError::InvalidParam)?;
    if len > isize::MAX as usize || (at as usize).checked_add(len).is_none() {
        return Err(AisError::InvalidParam);
    }
    Ok(len)
}

/// A `malloc`'d copy of `bytes` (at least one byte allocated), so that C
/// callers may `free()` it.
fn malloc_copy(bytes: &[u8]) -> Result<*mut u8> {
    // SAFETY: plain allocation; checked below.
    let p = unsafe { libc::malloc(bytes.len().max(1)) } as *mut u8;
    if p.is_null() {
        return Err(AisError::NoMemory);
    }
    // SAFETY: p holds at least bytes.len() bytes and does not overlap `bytes`.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
    Ok(p)
}

/// The checkpoint name at `name`, as the engine takes it.
///
/// # Safety
/// As [`name_bytes`].
unsafe fn checkpoint_name<'a>(name: *const SaNameT) -> Result<&'a [u8]> {
    non_null(name)?;
    // SAFETY: forwarded.
    match unsafe { name_bytes(name) } {
        Ok(b) => Ok(b),
        Err(NameFault::Invalid) => Err(AisError::InvalidParam),
        Err(NameFault::TooBig) => Err(AisError::TooBig),
    }
}

// ---------------------------------------------------------------------------
// Library life cycle

/// The release and version this library implements (B.02.03: B.02.02 and the
/// track extensions).
const VERSION: SaVersionT = SaVersionT {
    release_code: b'B',
    major_version: 2,
    minor_version: 3,
};

/// `saCkptInitialize` and `saCkptInitialize_2`: release 'B' with major 1 or
/// 2; returns B.02.03.
///
/// # Safety
/// `handle` and `version` are NULL or writable.
unsafe fn initialize(
    handle: *mut SaCkptHandleT,
    callbacks: Option<SaCkptCallbacksT_2>,
    version: *mut SaVersionT,
) -> Result<()> {
    non_null(handle)?;
    non_null(version)?;
    // SAFETY: non-NULL, read-write (caller's contract).
    let v = unsafe { &mut *version };
    let asked = *v;
    if asked.release_code != b'B' || !(1..=2).contains(&asked.major_version) {
        *v = VERSION;
        return Err(AisError::Version);
    }
    let c = callbacks.unwrap_or(SaCkptCallbacksT_2 {
        open: None,
        synchronize: None,
        track: None,
    });
    let profile = Profile::from_env()?;
    let callbacks = SaCkptCallbacksT {
        open: c.open,
        synchronize: c.synchronize,
    };
    let lib = Library::new(callbacks, c.track, asked, profile).ok_or(AisError::NoResources)?;
    let h = LIBRARIES
        .insert(Arc::new(lib))
        .map_err(|_| AisError::NoResources)?;
    *v = VERSION;
    // SAFETY: non-NULL, writable (caller's contract).
    unsafe { *handle = h };
    Ok(())
}

/// `saCkptInitialize`.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptInitialize(
    handle: *mut SaCkptHandleT,
    callbacks: *const SaCkptCallbacksT,
    version: *mut SaVersionT,
) -> SaAisErrorT {
    guard(|| {
        // SAFETY: NULL or readable (caller's contract).
        let c = unsafe { callbacks.as_ref() }.map(|c| SaCkptCallbacksT_2 {
            open: c.open,
            synchronize: c.synchronize,
            track: None,
        });
        // SAFETY: forwarded.
        unsafe { initialize(handle, c, version) }
    })
}

/// `saCkptInitialize_2` (B.02.03): also registers a track callback.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptInitialize_2(
    handle: *mut SaCkptHandleT,
    callbacks: *const SaCkptCallbacksT_2,
    version: *mut SaVersionT,
) -> SaAisErrorT {
    guard(|| {
        // SAFETY: NULL or readable (caller's contract); forwarded.
        unsafe { initialize(handle, callbacks.as_ref().copied(), version) }
    })
}

/// `saCkptSelectionObjectGet`: an eventfd, readable while callbacks are queued.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptSelectionObjectGet(
    handle: SaCkptHandleT,
    selection_object: *mut SaSelectionObjectT,
) -> SaAisErrorT {
    guard(|| {
        non_null(selection_object)?;
        let lib = library(handle)?;
        // SAFETY: non-NULL, writable (caller's contract).
        unsafe { *selection_object = lib.selection_object() as SaSelectionObjectT };
        Ok(())
    })
}

/// `saCkptDispatch`: runs queued callbacks in this thread (one, all, or all
/// until the handle is finalized).
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptDispatch(
    handle: SaCkptHandleT,
    flags: SaDispatchFlagsT,
) -> SaAisErrorT {
    guard(|| {
        if !(SA_DISPATCH_ONE..=SA_DISPATCH_BLOCKING).contains(&flags) {
            return Err(AisError::InvalidParam);
        }
        let lib = library(handle)?;
        match flags {
            SA_DISPATCH_ONE => {
                if let Some(c) = lib.next_callback() {
                    lib.run(c);
                }
            }
            SA_DISPATCH_ALL => {
                while let Some(c) = lib.next_callback() {
                    lib.run(c);
                }
            }
            _ => loop {
                if lib.is_finalized() {
                    break;
                }
                if let Some(c) = lib.next_callback() {
                    lib.run(c);
                    continue;
                }
                lib.wait(-1);
            },
        }
        Ok(())
    })
}

/// `saCkptFinalize`: closes the checkpoints opened through the handle, drops
/// its queued callbacks, and makes a blocking dispatch return.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptFinalize(handle: SaCkptHandleT) -> SaAisErrorT {
    guard(|| {
        let lib = LIBRARIES.remove(handle).ok_or(AisError::BadHandle)?;
        for c in lib.finalize() {
            close(c);
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Checkpoints

/// Closes checkpoint handle `handle`: its iterations end, its queued
/// callbacks are dropped. False if it was not open.
fn close(handle: SaCkptCheckpointHandleT) -> bool {
    let Some(open) = CHECKPOINTS.remove(handle) else {
        return false;
    };
    for it in open.iterations().drain(..) {
        ITERATIONS.remove(it);
    }
    if let Some(lib) = LIBRARIES.get(open.library) {
        lib.cancel(handle);
        lib.state().checkpoints.retain(|&c| c != handle);
    }
    // The tracker sees the handle gone and ends; then the checkpoint closes
    // here (calls that pinned the handle finished before `remove` returned).
    open.join_tracker();
    true
}

/// What an open asks for, checked.
#[derive(Clone)]
struct OpenArguments {
    flags: OpenFlags,
    attrs: Option<CreationAttributes>,
    /// The creation flags as the caller passed them (the profile may drop
    /// SAFplus's extensions from `attrs`).
    creation_flags: Option<u32>,
}

/// The checks of an open that come before the engine: flags, attributes.
///
/// # Safety
/// `attrs` is NULL or readable.
unsafe fn open_arguments(
    profile: Profile,
    attrs: *const SaCkptCheckpointCreationAttributesT,
    flags: u32,
) -> Result<OpenArguments> {
    let flags = OpenFlags::from_bits(flags).ok_or(AisError::BadFlags)?;
    // SAFETY: non-NULL, readable (caller's contract).
    let creation_flags = (!attrs.is_null()).then(|| unsafe { (*attrs).creation_flags });
    let attrs = if attrs.is_null() {
        None
    } else {
        // SAFETY: non-NULL, readable (caller's contract).
        let a = unsafe { *attrs };
        Some(CreationAttributes {
            flags: CreationFlags::from_bits(profile.creation_flags(a.creation_flags))
                .ok_or(AisError::InvalidParam)?,
            checkpoint_bytes: a.checkpoint_size,
            retention_ns: a.retention_duration,
            sections_max: a.max_sections,
            section_bytes_max: a.max_section_size,
            section_id_bytes_max: a.max_section_id_size,
        })
    };
    match (flags.contains(OpenFlags::CREATE), &attrs) {
        (true, None) | (false, Some(_)) => return Err(AisError::InvalidParam),
        _ => {}
    }
    if let Some(a) = &attrs {
        a.validate().map_err(|e| ckpt::OpenError::from(e).ais())?;
    }
    Ok(OpenArguments {
        flags,
        attrs,
        creation_flags,
    })
}

/// Opens `name` through `lib`; returns the new checkpoint handle.
fn open(
    lib: &Arc<Library>,
    lib_handle: SaCkptHandleT,
    name: &[u8],
    args: &OpenArguments,
    wait: std::time::Duration,
) -> Result<SaCkptCheckpointHandleT> {
    let attrs = args.attrs.as_ref();
    let checkpoint = lib
        .service
        .open_within(name, args.flags, attrs, wait)
        .map_err(|e| e.ais())?;
    // The engine accepts another retention duration, as OpenSAF does; the
    // spec counts it among the attributes that must match.
    let retention_differs =
        attrs.is_some_and(|a| a.retention_ns != checkpoint.attributes().retention_ns);
    if retention_differs && !lib.profile.retention_may_differ() {
        return Err(AisError::Exist);
    }
    let open = Arc::new(Open::new(
        checkpoint,
        lib_handle,
        lib.profile,
        args.creation_flags,
    ));
    let h = CHECKPOINTS
        .insert(open.clone())
        .map_err(|_| AisError::NoResources)?;
    let mut s = lib.state();
    if s.finalized {
        drop(s);
        close(h);
        return Err(AisError::BadHandle);
    }
    s.checkpoints.push(h);
    drop(s);
    library::track(lib, h, &open);
    Ok(h)
}

/// `saCkptCheckpointOpen`.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptCheckpointOpen(
    handle: SaCkptHandleT,
    name: *const SaNameT,
    attrs: *const SaCkptCheckpointCreationAttributesT,
    flags: u32,
    timeout: SaTimeT,
    checkpoint_handle: *mut SaCkptCheckpointHandleT,
) -> SaAisErrorT {
    guard(|| {
        non_null(checkpoint_handle)?;
        // SAFETY: forwarded.
        let name = unsafe { checkpoint_name(name) }?;
        if timeout < 0 {
            return Err(AisError::InvalidParam);
        }
        let profile = profile_of(handle);
        let name = profile.name(name)?;
        // SAFETY: forwarded.
        let args = unsafe { open_arguments(profile, attrs, flags) }?;
        let lib = library(handle)?;
        // How long a replica from another node may take to come here.
        let wait = std::time::Duration::from_nanos(timeout as u64);
        let h = open(&lib, handle, name, &args, wait)?;
        // SAFETY: non-NULL, writable (caller's contract).
        unsafe { *checkpoint_handle = h };
        Ok(())
    })
}

/// `saCkptCheckpointOpenAsync`: argument errors now, the open's outcome in
/// the open callback.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptCheckpointOpenAsync(
    handle: SaCkptHandleT,
    invocation: SaInvocationT,
    name: *const SaNameT,
    attrs: *const SaCkptCheckpointCreationAttributesT,
    flags: u32,
) -> SaAisErrorT {
    guard(|| {
        // SAFETY: forwarded.
        let name = unsafe { checkpoint_name(name) }?;
        let profile = profile_of(handle);
        let name = profile.name(name)?;
        // SAFETY: forwarded.
        let args = unsafe { open_arguments(profile, attrs, flags) }?;
        let lib = library(handle)?;
        if lib.callbacks.open.is_none() {
            return Err(AisError::Init);
        }
        // A checkpoint this host holds, or any where no node daemon runs,
        // opens at once, here. One the node daemon may have to bring from
        // another node (up to `OPEN_WAIT`) opens on a thread of its own: the
        // call returns now, as SA says, and the callback comes when the open
        // is done.
        if !lib.service.holds(name) && lib.service.has_daemon() {
            let (lib2, name2, args2) = (lib.clone(), name.to_vec(), args.clone());
            let spawned = std::thread::Builder::new()
                .name("saCkptOpenAsync".into())
                .spawn(move || {
                    // No panic leaves the thread (it would take the
                    // callback with it): a failed open is reported.
                    let opened = std::panic::catch_unwind(|| {
                        open(&lib2, handle, &name2, &args2, ckpt::OPEN_WAIT)
                    })
                    .unwrap_or(Err(AisError::Library));
                    open_done(&lib2, invocation, opened);
                });
            if spawned.is_ok() {
                return Ok(());
            }
        }
        if open_done(
            &lib,
            invocation,
            open(&lib, handle, name, &args, ckpt::OPEN_WAIT),
        ) {
            Ok(())
        } else {
            Err(AisError::TryAgain)
        }
    })
}

/// Queues the open callback of `invocation` with the open's outcome; false
/// (the checkpoint closed again) if the library takes no more callbacks
/// (finalized, or its queue full).
fn open_done(
    lib: &Library,
    invocation: SaInvocationT,
    opened: Result<SaCkptCheckpointHandleT>,
) -> bool {
    let (checkpoint, error) = match opened {
        Ok(h) => (h, SA_AIS_OK),
        Err(e) => (0, e as SaAisErrorT),
    };
    let queued = lib.queue(Callback::Open {
        invocation,
        checkpoint,
        error,
    });
    if !queued {
        close(checkpoint);
    }
    queued
}

/// `saCkptCheckpointClose`.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptCheckpointClose(handle: SaCkptCheckpointHandleT) -> SaAisErrorT {
    guard(|| close(handle).then_some(()).ok_or(AisError::BadHandle))
}

/// `saCkptCheckpointUnlink`.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptCheckpointUnlink(
    handle: SaCkptHandleT,
    name: *const SaNameT,
) -> SaAisErrorT {
    guard(|| {
        // SAFETY: forwarded.
        let name = unsafe { checkpoint_name(name) }?;
        let name = profile_of(handle).name(name)?;
        let lib = library(handle)?;
        lib.service.unlink(name).map_err(|e| e.ais())
    })
}

/// `saCkptCheckpointRetentionDurationSet`.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptCheckpointRetentionDurationSet(
    handle: SaCkptCheckpointHandleT,
    retention: SaTimeT,
) -> SaAisErrorT {
    guard(|| {
        let open = checkpoint(handle)?;
        open.checkpoint
            .set_retention(Time(retention))
            .map_err(|e| e.ais())
    })
}

/// `saCkptActiveReplicaSet`.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptActiveReplicaSet(handle: SaCkptCheckpointHandleT) -> SaAisErrorT {
    guard(|| {
        let open = checkpoint(handle)?;
        open.checkpoint.set_active_replica().map_err(|e| e.ais())
    })
}

/// `saCkptCheckpointStatusGet`.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptCheckpointStatusGet(
    handle: SaCkptCheckpointHandleT,
    status: *mut SaCkptCheckpointDescriptorT,
) -> SaAisErrorT {
    guard(|| {
        non_null(status)?;
        let open = checkpoint(handle)?;
        let s = open.checkpoint.status().map_err(|e| e.ais())?;
        let a = s.attributes;
        let out = SaCkptCheckpointDescriptorT {
            creation_attributes: SaCkptCheckpointCreationAttributesT {
                creation_flags: a.flags.bits(),
                checkpoint_size: a.checkpoint_bytes,
                retention_duration: a.retention_ns,
                max_sections: a.sections_max,
                max_section_size: a.section_bytes_max,
                max_section_id_size: a.section_id_bytes_max,
            },
            number_of_sections: s.sections,
            memory_used: s.memory_used_bytes,
        };
        // SAFETY: non-NULL, writable (caller's contract).
        unsafe { status.write(out) };
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Sections

/// `saCkptSectionCreate`. An id of `{0, NULL}` in a checkpoint of more than
/// one section asks for a generated id: it is written back, `malloc`'d.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptSectionCreate(
    handle: SaCkptCheckpointHandleT,
    attrs: *mut SaCkptSectionCreationAttributesT,
    initial_data: *const c_void,
    initial_data_size: SaSizeT,
) -> SaAisErrorT {
    guard(|| {
        non_null(attrs)?;
        // SAFETY: non-NULL, read-write (caller's contract).
        let attrs = unsafe { &mut *attrs };
        // SAFETY: forwarded.
        let id = unsafe { section_id(attrs.section_id) }?;
        // SAFETY: forwarded.
        let data = unsafe { bytes(initial_data, initial_data_size) }?;
        let expiration = Time(attrs.expiration_time);
        let open = checkpoint(handle)?;
        open.profile.section_id(id)?;
        open.profile.call_bytes(data.len() as u64)?;
        let c = &open.checkpoint;
        if id.is_empty() && c.attributes().sections_max > 1 {
            let (id, _) = open
                .through(|| c.create_section_generated(expiration, data))
                .map_err(|e| e.ais())?;
            let copy = match malloc_copy(id.as_bytes()) {
                Ok(p) => p,
                Err(e) => {
                    let _ = c.delete_section(id.as_bytes());
                    return Err(e);
                }
            };
            // SAFETY: section_id is non-NULL (checked by section_id) and
            // writable (an in/out field).
            unsafe {
                (*attrs.section_id).id_len = id.as_bytes().len() as u16;
                (*attrs.section_id).id = copy;
            }
            return Ok(());
        }
        open.through(|| c.create_section(id, expiration, data).map(drop))
            .map_err(|e| e.ais())
    })
}

/// `saCkptSectionDelete`.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptSectionDelete(
    handle: SaCkptCheckpointHandleT,
    id: *const SaCkptSectionIdT,
) -> SaAisErrorT {
    guard(|| {
        // SAFETY: forwarded.
        let id = unsafe { section_id(id) }?;
        let open = checkpoint(handle)?;
        open.profile.section_id(id)?;
        open.checkpoint.delete_section(id).map_err(|e| e.ais())
    })
}

/// `saCkptSectionIdFree`: frees a generated id (plain `free()` works too).
///
/// # Safety
/// See the module docs; `id` was returned by `saCkptSectionCreate` and is
/// freed once.
#[no_mangle]
pub unsafe extern "C" fn saCkptSectionIdFree(
    handle: SaCkptCheckpointHandleT,
    id: *mut u8,
) -> SaAisErrorT {
    guard(|| {
        non_null(id)?;
        checkpoint(handle)?;
        // SAFETY: id came from our malloc (caller's contract).
        unsafe { libc::free(id.cast()) };
        Ok(())
    })
}

/// `saCkptSectionExpirationTimeSet`.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptSectionExpirationTimeSet(
    handle: SaCkptCheckpointHandleT,
    id: *const SaCkptSectionIdT,
    expiration: SaTimeT,
) -> SaAisErrorT {
    guard(|| {
        // SAFETY: forwarded.
        let id = unsafe { section_id(id) }?;
        let open = checkpoint(handle)?;
        open.profile.section_id(id)?;
        open.checkpoint
            .set_expiration(id, Time(expiration))
            .map_err(|e| e.ais())
    })
}

/// `saCkptSectionIterationInitialize`: the chosen sections are returned one
/// by one (in slot order), each described as it is when returned.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptSectionIterationInitialize(
    handle: SaCkptCheckpointHandleT,
    chosen: u32,
    expiration: SaTimeT,
    iteration: *mut SaCkptSectionIterationHandleT,
) -> SaAisErrorT {
    guard(|| {
        non_null(iteration)?;
        let chosen =
            SectionsChosen::from_raw(chosen, Time(expiration)).ok_or(AisError::InvalidParam)?;
        let open = checkpoint(handle)?;
        let cursor = open
            .checkpoint
            .section_cursor(chosen)
            .map_err(|e| e.ais())?;
        let it = Arc::new(Iteration {
            checkpoint: open.clone(),
            state: Mutex::new(IterationState {
                cursor,
                current: Vec::new(),
            }),
        });
        let h = ITERATIONS.insert(it).map_err(|_| AisError::NoResources)?;
        open.iterations().push(h);
        // The checkpoint may have closed meanwhile: then so did this iteration.
        if CHECKPOINTS.get(handle).is_none() {
            ITERATIONS.remove(h);
            return Err(AisError::BadHandle);
        }
        // SAFETY: non-NULL, writable (caller's contract).
        unsafe { *iteration = h };
        Ok(())
    })
}

/// `saCkptSectionIterationNext`: `SA_AIS_ERR_NO_SECTIONS` at the end. The
/// descriptor's id points into the iteration until its next call.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptSectionIterationNext(
    iteration: SaCkptSectionIterationHandleT,
    descriptor: *mut SaCkptSectionDescriptorT,
) -> SaAisErrorT {
    guard(|| {
        non_null(descriptor)?;
        let it = ITERATIONS.get(iteration).ok_or(AisError::BadHandle)?;
        let mut s = it.state();
        let s = &mut *s;
        let d = it
            .checkpoint
            .checkpoint
            .next_section(&mut s.cursor)
            .ok_or(AisError::NoSections)?;
        s.current = d.id.0;
        let out = SaCkptSectionDescriptorT {
            section_id: SaCkptSectionIdT {
                id_len: s.current.len() as u16,
                id: if s.current.is_empty() {
                    std::ptr::null_mut()
                } else {
                    s.current.as_mut_ptr()
                },
            },
            expiration_time: d.expiration.0,
            section_size: d.size_bytes,
            section_state: match d.state {
                SectionState::Valid => SA_CKPT_SECTION_VALID,
                SectionState::Corrupted => SA_CKPT_SECTION_CORRUPTED,
            },
            last_update: d.last_update.0,
        };
        // SAFETY: non-NULL, writable (caller's contract).
        unsafe { descriptor.write(out) };
        Ok(())
    })
}

/// `saCkptSectionIterationFinalize`.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptSectionIterationFinalize(
    iteration: SaCkptSectionIterationHandleT,
) -> SaAisErrorT {
    guard(|| {
        let it = ITERATIONS.remove(iteration).ok_or(AisError::BadHandle)?;
        it.checkpoint.iterations().retain(|&h| h != iteration);
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Data

/// Stores `index` where the caller asked for the failing element's index.
///
/// # Safety
/// `at` is NULL or writable.
unsafe fn erroneous(at: *mut u32, index: usize) {
    if !at.is_null() {
        // SAFETY: non-NULL, writable (caller's contract).
        unsafe { *at = index as u32 };
    }
}

/// The elements of an I/O vector.
///
/// # Safety
/// `iov` is NULL or points to `n` elements valid for `'a`.
unsafe fn elements<'a>(
    iov: *mut SaCkptIOVectorElementT,
    n: u32,
) -> Result<&'a mut [SaCkptIOVectorElementT]> {
    non_null(iov)?;
    // SAFETY: n elements at iov (caller's contract).
    Ok(unsafe { std::slice::from_raw_parts_mut(iov, n as usize) })
}

/// `saCkptCheckpointWrite`: all elements or none; the first failing element's
/// index goes to `erroneous_index`.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptCheckpointWrite(
    handle: SaCkptCheckpointHandleT,
    iov: *const SaCkptIOVectorElementT,
    n: u32,
    erroneous_index: *mut u32,
) -> SaAisErrorT {
    guard(|| {
        non_null(iov)?;
        // SAFETY: n readable elements at iov (caller's contract); only read.
        let elems = unsafe { std::slice::from_raw_parts(iov, n as usize) };
        let mut vecs = Vec::new();
        let mut inline = [WriteVec {
            id: &[],
            offset: 0,
            data: &[],
        }; 8];
        let parse = |e: &SaCkptIOVectorElementT| -> Result<WriteVec<'_>> {
            Ok(WriteVec {
                // SAFETY: forwarded (the element's fields, caller's contract).
                id: unsafe { section_id(&e.section_id) }?,
                offset: e.data_offset,
                // SAFETY: forwarded.
                data: unsafe { bytes(e.data_buffer, e.data_size) }?,
            })
        };
        // An error and the element it is of (`None`: the whole call's, such
        // as a bad handle or ACCESS, which leaves the index unchanged).
        let result = (|| -> std::result::Result<(), (Option<usize>, AisError)> {
            let vecs: &[WriteVec<'_>] = if elems.len() <= inline.len() {
                for (i, e) in elems.iter().enumerate() {
                    inline[i] = parse(e).map_err(|err| (Some(i), err))?;
                }
                &inline[..elems.len()]
            } else {
                for (i, e) in elems.iter().enumerate() {
                    vecs.push(parse(e).map_err(|err| (Some(i), err))?);
                }
                &vecs
            };
            let open = checkpoint(handle).map_err(|e| (None, e))?;
            let (profile, max) = (open.profile, open.checkpoint.attributes().section_bytes_max);
            let mut carried = 0u64;
            for (i, v) in vecs.iter().enumerate() {
                let len = v.data.len() as u64;
                profile.section_id(v.id).map_err(|e| (Some(i), e))?;
                profile
                    .write_element(v.offset, len, max)
                    .map_err(|e| (Some(i), e))?;
                carried = carried.saturating_add(len);
                profile.call_bytes(carried).map_err(|e| (Some(i), e))?;
            }
            open.through(|| open.checkpoint.write(vecs))
                .map_err(|(i, e)| (e.of_element().then_some(i), e.ais()))
        })();
        result.map_err(|(i, e)| {
            if let Some(i) = i {
                // SAFETY: forwarded.
                unsafe { erroneous(erroneous_index, i) };
            }
            e
        })
    })
}

/// `saCkptSectionOverwrite`.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptSectionOverwrite(
    handle: SaCkptCheckpointHandleT,
    id: *const SaCkptSectionIdT,
    data: *const c_void,
    size: SaSizeT,
) -> SaAisErrorT {
    guard(|| {
        // SAFETY: forwarded.
        let id = unsafe { section_id(id) }?;
        non_null(data)?;
        // SAFETY: forwarded.
        let data = unsafe { bytes(data, size) }?;
        with_checkpoint(handle, |open| {
            open.profile.section_id(id)?;
            open.profile.call_bytes(data.len() as u64)?;
            open.through(|| open.checkpoint.overwrite(id, data))
                .map_err(|e| e.ais())
        })
    })
}

/// `saCkptCheckpointRead`: into the callers' buffers, or (`dataBuffer` NULL)
/// into `malloc`'d ones holding the section from `dataOffset` to its end.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptCheckpointRead(
    handle: SaCkptCheckpointHandleT,
    iov: *mut SaCkptIOVectorElementT,
    n: u32,
    erroneous_index: *mut u32,
) -> SaAisErrorT {
    guard(|| {
        // SAFETY: forwarded.
        let elems = unsafe { elements(iov, n) }?;
        // SAFETY: forwarded.
        with_checkpoint(handle, |open| unsafe {
            read_elements(open, elems, erroneous_index)
        })
    })
}

/// The reads of `saCkptCheckpointRead`, in order, stopping at the first
/// failure (its index to `erroneous_index`).
///
/// # Safety
/// As `saCkptCheckpointRead`'s.
unsafe fn read_elements(
    open: &Open,
    elems: &mut [SaCkptIOVectorElementT],
    erroneous_index: *mut u32,
) -> Result<()> {
    let c = &open.checkpoint;
    // Elements whose buffer this call allocated (no allocation unless one is).
    let mut allocated: Vec<usize> = Vec::new();
    // Frees what `allocated` lists and resets those elements' pointers to
    // NULL: a failed read hands out no memory the caller would not know to
    // free, and a read run again allocates afresh.
    let release = |elems: &mut [SaCkptIOVectorElementT], allocated: &mut Vec<usize>| {
        if allocated.is_empty() {
            return; // (The common case: no drain to make.)
        }
        for j in allocated.drain(..) {
            let done = &mut elems[j];
            // SAFETY: allocated by this call with malloc, not yet handed out.
            unsafe { libc::free(done.data_buffer) };
            done.data_buffer = std::ptr::null_mut();
            done.read_size = 0;
        }
    };
    let several = elems.len() > 1;
    let mut read_all = || -> std::result::Result<(), (Option<usize>, AisError)> {
        release(elems, &mut allocated);
        for (i, e) in elems.iter_mut().enumerate() {
            let was_null = e.data_buffer.is_null();
            // SAFETY: forwarded.
            unsafe { read_element(open, e) }
                .map_err(|(of_element, err)| (of_element.then_some(i), err))?;
            if was_null && !e.data_buffer.is_null() {
                allocated.push(i);
            }
        }
        Ok(())
    };
    let result = if several {
        c.read_isolated(read_all)
    } else {
        read_all()
    };
    result.map_err(|(i, err)| {
        release(elems, &mut allocated);
        if let Some(i) = i {
            // SAFETY: forwarded.
            unsafe { erroneous(erroneous_index, i) };
        }
        err
    })
}

/// One element of `saCkptCheckpointRead`: into its buffer, or (NULL) into
/// one `malloc`'d for the section from `dataOffset` to its end. An error
/// says whether it is the element's (`true`) or the whole call's (ACCESS,
/// no active replica), which leaves `erroneousVectorIndex` unchanged.
///
/// # Safety
/// As `saCkptCheckpointRead`'s, for the element.
#[inline]
unsafe fn read_element(
    open: &Open,
    e: &mut SaCkptIOVectorElementT,
) -> std::result::Result<(), (bool, AisError)> {
    let c = &open.checkpoint;
    let engine = |err: ReadError| (err.of_element(), err.ais());
    let own = |err: AisError| (true, err);
    // SAFETY: forwarded.
    let id = unsafe { section_id(&e.section_id) }.map_err(own)?;
    open.profile.section_id(id).map_err(own)?;
    if e.data_buffer.is_null() {
        let all = c.read_section(id).map_err(engine)?;
        let from = usize::try_from(e.data_offset).unwrap_or(usize::MAX);
        if from > all.len() {
            return Err(engine(ReadError::OffsetPastEnd));
        }
        let p = malloc_copy(&all[from..]).map_err(own)?;
        e.data_buffer = p.cast();
        e.read_size = (all.len() - from) as u64;
        return Ok(());
    }
    // dataSize is at most maxSectionSize (the spec); no slice is made of a
    // larger one.
    let max = c.attributes().section_bytes_max;
    if e.data_size > max {
        return Err(own(AisError::InvalidParam));
    }
    open.profile
        .read_element(e.data_offset, e.data_size, max)
        .map_err(own)?;
    let len = span(e.data_buffer, e.data_size).map_err(own)?;
    // SAFETY: a non-NULL buffer of dataSize writable bytes (caller's
    // contract), a length an object can have.
    let buf = unsafe { std::slice::from_raw_parts_mut(e.data_buffer as *mut u8, len) };
    let mut one = [ReadVec {
        id,
        offset: e.data_offset,
        buf,
        read_bytes: 0,
    }];
    c.read(&mut one).map_err(|(_, err)| engine(err))?;
    e.read_size = one[0].read_bytes as u64;
    Ok(())
}

/// `saCkptIOVectorElementDataFree`: frees a buffer a read allocated (plain
/// `free()` works too).
///
/// # Safety
/// See the module docs; `data` came from `saCkptCheckpointRead` and is freed once.
#[no_mangle]
pub unsafe extern "C" fn saCkptIOVectorElementDataFree(
    handle: SaCkptCheckpointHandleT,
    data: *mut c_void,
) -> SaAisErrorT {
    guard(|| {
        non_null(data)?;
        checkpoint(handle)?;
        // SAFETY: data came from our malloc (caller's contract).
        unsafe { libc::free(data) };
        Ok(())
    })
}

/// `saCkptCheckpointSynchronize`.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptCheckpointSynchronize(
    handle: SaCkptCheckpointHandleT,
    timeout: SaTimeT,
) -> SaAisErrorT {
    guard(|| {
        let open = checkpoint(handle)?;
        open.checkpoint
            .synchronize(Time(timeout))
            .map_err(|e| e.ais())
    })
}

/// `saCkptCheckpointSynchronizeAsync`: refusals now, the outcome in the
/// synchronize callback. The wait for replicas runs here, bounded by the
/// configured acknowledgement timeout (with no replicas registered, as on a
/// single host, it does not wait).
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptCheckpointSynchronizeAsync(
    handle: SaCkptCheckpointHandleT,
    invocation: SaInvocationT,
) -> SaAisErrorT {
    guard(|| {
        let open = checkpoint(handle)?;
        let lib = library(open.library)?;
        if lib.callbacks.synchronize.is_none() {
            return Err(AisError::Init);
        }
        let wait: Duration = lib.service.config().ack_timeout;
        let timeout = Time(i64::try_from(wait.as_nanos()).unwrap_or(i64::MAX));
        let error = match open.checkpoint.synchronize(timeout) {
            Ok(()) => SA_AIS_OK,
            Err(e) if e.ais() == AisError::Timeout => AisError::Timeout as SaAisErrorT,
            Err(e) => return Err(e.ais()),
        };
        let queued = lib.queue(Callback::Synchronize {
            invocation,
            checkpoint: handle,
            error,
        });
        queued.then_some(()).ok_or(AisError::TryAgain)
    })
}

// ---------------------------------------------------------------------------
// Tracking (B.02.03 and OpenSAF's arrival callback)

/// Turns tracking on for `lib`: every checkpoint it has open for reading gets
/// a tracker.
fn start_tracking(lib: &Arc<Library>) {
    lib.tracking.store(true, Ordering::Release);
    let handles = lib.state().checkpoints.clone();
    for h in handles {
        if let Some(open) = CHECKPOINTS.get(h) {
            library::track(lib, h, &open);
        }
    }
}

/// The checks `saCkptTrack` and `saCkptTrackStop` share: a B.02.03 instance
/// with a track callback.
fn trackable(handle: SaCkptHandleT) -> Result<Arc<Library>> {
    let lib = library(handle)?;
    let v = lib.version;
    if (v.release_code, v.major_version, v.minor_version) != (b'B', 2, 3) {
        return Err(AisError::Version);
    }
    if lib
        .track
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_none()
    {
        return Err(AisError::Init);
    }
    Ok(lib)
}

/// `saCkptTrack` (B.02.03): track callbacks for every checkpoint this handle
/// has open for reading, when other handles change their sections.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptTrack(handle: SaCkptHandleT) -> SaAisErrorT {
    guard(|| {
        start_tracking(&trackable(handle)?);
        Ok(())
    })
}

/// `saCkptTrackStop` (B.02.03): `NOT_EXIST` if tracking is off.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptTrackStop(handle: SaCkptHandleT) -> SaAisErrorT {
    guard(|| {
        let lib = trackable(handle)?;
        lib.stop_tracking().then_some(()).ok_or(AisError::NotExist)
    })
}

/// `saCkptCheckpointTrack`: per-checkpoint tracking is not supported (as in
/// OpenSAF).
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptCheckpointTrack(_handle: SaCkptCheckpointHandleT) -> SaAisErrorT {
    AisError::NotSupported as SaAisErrorT
}

/// `saCkptCheckpointTrackStop`: not supported (as in OpenSAF).
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn saCkptCheckpointTrackStop(
    _handle: SaCkptCheckpointHandleT,
) -> SaAisErrorT {
    AisError::NotSupported as SaAisErrorT
}

/// `ncsCkptRegisterCkptArrivalCallback` (OpenSAF): registers `callback` as the
/// track callback and turns tracking on.
///
/// # Safety
/// See the module docs.
#[no_mangle]
pub unsafe extern "C" fn ncsCkptRegisterCkptArrivalCallback(
    handle: SaCkptHandleT,
    callback: SaCkptCheckpointTrackCallbackT,
) -> SaAisErrorT {
    guard(|| {
        let callback = callback.ok_or(AisError::InvalidParam)?;
        let lib = library(handle)?;
        *lib.track.lock().unwrap_or_else(|p| p.into_inner()) = Some(callback);
        start_tracking(&lib);
        Ok(())
    })
}
