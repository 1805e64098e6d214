//! Random call sequences through libSaCkpt's C ABI, with random arguments.
//!
//! Handles are issued ones, stale ones (finalized, closed) or garbage; ids,
//! sizes, offsets, flags, times and versions are arbitrary; pointers are NULL
//! or valid (a C library cannot survive wild pointers, and the API does not
//! ask it to). Every call must return an `SaAisErrorT` (1..=40) and never
//! panic (libFuzzer turns a panic inside the library into a crash, though the
//! library would catch it); a stale or garbage handle must get `BAD_HANDLE`
//! (or a parameter error the API checks first; SAFplus's two extensions
//! answer with their `ClRcT` codes); reads never report more than
//! was asked; library-allocated memory is freed through the API, and the
//! sanitizer checks every access.

#![no_main]
// This target's subject is the C ABI: every call is an `unsafe extern "C"`
// function given pointers this file owns.
#![allow(unsafe_code)]

use core::ffi::c_void;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use SaCkpt::types::*;
use SaCkpt::*;

const OK: u32 = SA_AIS_OK;
const BAD_HANDLE: u32 = 9;
const INVALID_PARAM: u32 = 7;

/// A handle argument: one issued (live or not), or garbage.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum H {
    Issued(u8),
    Garbage(u64),
}

/// A section id argument.
#[derive(Arbitrary, Debug, Clone)]
enum Id {
    Default,
    Named(u8),
    Long(u16),
    /// A length without bytes, or bytes without a length.
    Bad {
        len: u16,
        null: bool,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Attrs {
    flags: u32,
    checkpoint_size: u16,
    retention: i64,
    max_sections: u8,
    max_section_size: u16,
    max_section_id_size: u8,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Initialize {
        version: (u8, u8, u8),
        callbacks: bool,
        track: bool,
        null_version: bool,
    },
    Finalize(H),
    SelectionObjectGet(H, bool),
    Dispatch(H, u32),
    Open {
        lib: H,
        name: u8,
        attrs: Option<Attrs>,
        flags: u32,
        timeout: i64,
        asynchronous: Option<u64>,
    },
    Close(H),
    Unlink(H, u8),
    RetentionSet(H, i64),
    ActiveReplicaSet(H),
    StatusGet(H, bool),
    SectionCreate {
        ckpt: H,
        id: Option<Id>,
        expiration: i64,
        data: Vec<u8>,
        null_data: bool,
    },
    SectionDelete(H, Id),
    ExpirationSet(H, Id, i64),
    IterationInitialize(H, u32, i64),
    IterationNext(H, bool),
    IterationFinalize(H),
    Write {
        ckpt: H,
        elements: Vec<(Id, u16, Vec<u8>)>,
        null_iov: bool,
    },
    Overwrite {
        ckpt: H,
        id: Id,
        data: Vec<u8>,
        null_data: bool,
    },
    Read {
        ckpt: H,
        elements: Vec<(Id, u16, u16, bool)>,
    },
    Synchronize(H, u8),
    SynchronizeAsync(H, u64),
    Track(H),
    TrackStop(H),
    Arrival(H, bool),
    /// SAFplus's `clCkptImmediateConsumptionRegister` (callback or NULL).
    Immediate(H, bool),
    /// SAFplus's `clCkptSectionCheck` (id or NULL).
    SectionCheck(H, Option<Id>),
}

/// The checkpoint directory: private to this process.
fn setup() {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("ckpt-fuzz-c-api")
            .tempdir()
            .expect("a scratch directory");
        std::env::set_var("CKPT_DIR", dir.path().join("ckpt"));
        dir
    });
}

unsafe extern "C" fn on_open(_: SaInvocationT, _: SaCkptCheckpointHandleT, e: SaAisErrorT) {
    assert!((1..=40).contains(&e));
}
unsafe extern "C" fn on_sync(_: SaInvocationT, e: SaAisErrorT) {
    assert!((1..=40).contains(&e));
}
unsafe extern "C" fn on_track(
    _: SaCkptCheckpointHandleT,
    iov: *mut SaCkptIOVectorElementT,
    n: u32,
) {
    // SAFETY: the library passes n elements.
    let iov = unsafe { std::slice::from_raw_parts(iov, n as usize) };
    for e in iov {
        assert!(e.data_buffer.is_null() && e.read_size == 0);
    }
}

unsafe extern "C" fn on_immediate(
    _: SaCkptCheckpointHandleT,
    name: *mut SaNameT,
    iov: *mut SaCkptIOVectorElementT,
    n: u32,
    _: *mut c_void,
) -> ClRcT {
    // SAFETY: the library passes a name and n elements with their data.
    let (name, iov) = unsafe { (&*name, std::slice::from_raw_parts(iov, n as usize)) };
    assert!(name.value.starts_with(b"safCkpt=fuzz"));
    for e in iov {
        assert!(e.data_offset == 0 && e.data_size == e.read_size);
        // SAFETY: data_size readable bytes (the sanitizer checks).
        let data =
            unsafe { std::slice::from_raw_parts(e.data_buffer as *const u8, e.data_size as usize) };
        std::hint::black_box(data.iter().fold(0u8, |a, b| a ^ b));
    }
    CL_OK
}

/// SAFplus's codes for a handle that is not an open checkpoint: it may be
/// refused only as such, or for an argument checked first.
fn check_cl(e: ClRcT, live: bool, allowed: &[ClRcT]) {
    assert!(
        e == CL_OK || allowed.contains(&e) || e == CL_CKPT_ERR_INVALID_HANDLE,
        "{e:#x}"
    );
    if !live {
        assert!(
            e == CL_CKPT_ERR_INVALID_HANDLE || e == CL_CKPT_ERR_INVALID_PARAMETER,
            "a dead handle got {e:#x}"
        );
    }
}

/// Handles issued so far, live or not.
#[derive(Default)]
struct Pools {
    libs: Vec<u64>,
    ckpts: Vec<u64>,
    iters: Vec<u64>,
    generated: Vec<(u64, *mut u8)>,
}

fn pick(pool: &[u64], h: H) -> u64 {
    match h {
        H::Issued(i) if !pool.is_empty() => pool[i as usize % pool.len()],
        H::Issued(i) => i as u64,
        H::Garbage(g) => g,
    }
}

/// Bytes for an id: kept alive in `keep` while the call runs.
fn id_arg(id: &Id, keep: &mut Vec<Vec<u8>>) -> SaCkptSectionIdT {
    let bytes = match id {
        Id::Default => {
            return SaCkptSectionIdT {
                id_len: 0,
                id: std::ptr::null_mut(),
            }
        }
        Id::Named(n) => vec![b's', b'0' + n % 6],
        Id::Long(n) => vec![b'L'; *n as usize % 300 + 1],
        Id::Bad { len, null } => {
            return if *null || *len == 0 {
                SaCkptSectionIdT {
                    id_len: len.max(&1).to_owned(),
                    id: std::ptr::null_mut(),
                }
            } else {
                keep.push(vec![b'x'; 1]);
                SaCkptSectionIdT {
                    id_len: 0,
                    id: keep.last_mut().unwrap().as_mut_ptr(),
                }
            };
        }
    };
    keep.push(bytes);
    let b = keep.last_mut().unwrap();
    SaCkptSectionIdT {
        id_len: b.len() as u16,
        id: b.as_mut_ptr(),
    }
}

fn name(n: u8) -> SaNameT {
    SaNameT::new(format!("safCkpt=fuzz{}", n % 3).as_bytes()).expect("a short name")
}

fn check(e: u32) -> u32 {
    assert!((1..=40).contains(&e), "not an SaAisErrorT: {e}");
    e
}

/// A handle that was never issued, or is no longer live, gets BAD_HANDLE or
/// an argument error checked before the handle.
fn check_handle(e: u32, live: bool) {
    check(e);
    if !live {
        const BEFORE_HANDLE: [u32; 3] = [INVALID_PARAM, 25, 26]; // + BAD_FLAGS, TOO_BIG
        assert!(
            e == BAD_HANDLE || BEFORE_HANDLE.contains(&e),
            "a dead handle got {e}"
        );
    }
}

/// True if checkpoint handle `h` is open: a negative retention is refused
/// after the handle is checked.
fn open(h: u64) -> bool {
    // SAFETY: no pointers.
    unsafe { saCkptCheckpointRetentionDurationSet(h, -1) != BAD_HANDLE }
}

fuzz_target!(|ops: Vec<Op>| {
    setup();
    let mut p = Pools::default();
    let mut live_libs: Vec<u64> = Vec::new();
    let mut live_ckpts: Vec<u64> = Vec::new();
    for op in ops.into_iter().take(64) {
        let mut keep: Vec<Vec<u8>> = Vec::new();
        // SAFETY (every call below): pointers are NULL or point to locals
        // and `keep` entries that outlive the call.
        unsafe {
            match op {
                Op::Initialize {
                    version,
                    callbacks,
                    track,
                    null_version,
                } => {
                    let mut v = SaVersionT {
                        release_code: version.0,
                        major_version: version.1,
                        minor_version: version.2,
                    };
                    let mut h = 0;
                    let cb = SaCkptCallbacksT_2 {
                        open: callbacks.then_some(on_open as _),
                        synchronize: callbacks.then_some(on_sync as _),
                        track: track.then_some(on_track as _),
                    };
                    let vp = if null_version {
                        std::ptr::null_mut()
                    } else {
                        &mut v
                    };
                    let e = check(if track {
                        saCkptInitialize_2(&mut h, &cb, vp)
                    } else {
                        let c1 = SaCkptCallbacksT {
                            open: cb.open,
                            synchronize: cb.synchronize,
                        };
                        saCkptInitialize(&mut h, if callbacks { &c1 } else { std::ptr::null() }, vp)
                    });
                    if e == OK {
                        p.libs.push(h);
                        live_libs.push(h);
                    }
                }
                Op::Finalize(h) => {
                    let h = pick(&p.libs, h);
                    let live = live_libs.contains(&h);
                    let e = saCkptFinalize(h);
                    check_handle(e, live);
                    assert_eq!(e == OK, live);
                    live_libs.retain(|&l| l != h);
                }
                Op::SelectionObjectGet(h, null) => {
                    let h = pick(&p.libs, h);
                    let mut fd = 0;
                    let out = if null { std::ptr::null_mut() } else { &mut fd };
                    let e = saCkptSelectionObjectGet(h, out);
                    check_handle(e, live_libs.contains(&h));
                }
                Op::Dispatch(h, flags) => {
                    let h = pick(&p.libs, h);
                    // A blocking dispatch on a live handle would wait for a
                    // finalize nobody makes.
                    let flags = if flags == SA_DISPATCH_BLOCKING && live_libs.contains(&h) {
                        SA_DISPATCH_ALL
                    } else {
                        flags
                    };
                    check(saCkptDispatch(h, flags));
                }
                Op::Open {
                    lib,
                    name: n,
                    attrs,
                    flags,
                    timeout,
                    asynchronous,
                } => {
                    let h = pick(&p.libs, lib);
                    let nm = name(n);
                    let a = attrs.map(|a| SaCkptCheckpointCreationAttributesT {
                        creation_flags: a.flags,
                        checkpoint_size: a.checkpoint_size as u64,
                        retention_duration: a.retention,
                        max_sections: a.max_sections as u32,
                        max_section_size: a.max_section_size as u64,
                        max_section_id_size: a.max_section_id_size as u64,
                    });
                    let ap = a.as_ref().map_or(std::ptr::null(), |a| a as *const _);
                    let live = live_libs.contains(&h);
                    if let Some(inv) = asynchronous {
                        let e = saCkptCheckpointOpenAsync(h, inv, &nm, ap, flags);
                        check_handle(e, live);
                    } else {
                        let mut ck = 0;
                        let e = saCkptCheckpointOpen(h, &nm, ap, flags, timeout, &mut ck);
                        check_handle(e, live);
                        if e == OK {
                            p.ckpts.push(ck);
                            live_ckpts.push(ck);
                        }
                    }
                }
                Op::Close(h) => {
                    let h = pick(&p.ckpts, h);
                    let e = saCkptCheckpointClose(h);
                    check_handle(e, live_ckpts.contains(&h));
                    live_ckpts.retain(|&c| c != h);
                }
                Op::Unlink(h, n) => {
                    let h = pick(&p.libs, h);
                    check_handle(saCkptCheckpointUnlink(h, &name(n)), live_libs.contains(&h));
                }
                Op::RetentionSet(h, t) => {
                    let h = pick(&p.ckpts, h);
                    check_handle(
                        saCkptCheckpointRetentionDurationSet(h, t),
                        live_ckpts.contains(&h),
                    );
                }
                Op::ActiveReplicaSet(h) => {
                    let h = pick(&p.ckpts, h);
                    check_handle(saCkptActiveReplicaSet(h), live_ckpts.contains(&h));
                }
                Op::StatusGet(h, null) => {
                    let h = pick(&p.ckpts, h);
                    let mut d = std::mem::MaybeUninit::<SaCkptCheckpointDescriptorT>::uninit();
                    let out = if null {
                        std::ptr::null_mut()
                    } else {
                        d.as_mut_ptr()
                    };
                    check_handle(saCkptCheckpointStatusGet(h, out), live_ckpts.contains(&h));
                }
                Op::SectionCreate {
                    ckpt,
                    id,
                    expiration,
                    data,
                    null_data,
                } => {
                    let h = pick(&p.ckpts, ckpt);
                    let mut sid = match &id {
                        Some(id) => id_arg(id, &mut keep),
                        None => SaCkptSectionIdT {
                            id_len: 0,
                            id: std::ptr::null_mut(),
                        },
                    };
                    let mut ca = SaCkptSectionCreationAttributesT {
                        section_id: &mut sid,
                        expiration_time: expiration,
                    };
                    let dp = if null_data {
                        std::ptr::null()
                    } else {
                        data.as_ptr() as *const c_void
                    };
                    let e = saCkptSectionCreate(h, &mut ca, dp, data.len() as u64);
                    check_handle(e, live_ckpts.contains(&h));
                    if e == OK && id.is_none() && !sid.id.is_null() {
                        p.generated.push((h, sid.id));
                    }
                }
                Op::SectionDelete(h, id) => {
                    let h = pick(&p.ckpts, h);
                    let sid = id_arg(&id, &mut keep);
                    check_handle(saCkptSectionDelete(h, &sid), live_ckpts.contains(&h));
                }
                Op::ExpirationSet(h, id, t) => {
                    let h = pick(&p.ckpts, h);
                    let sid = id_arg(&id, &mut keep);
                    check_handle(
                        saCkptSectionExpirationTimeSet(h, &sid, t),
                        live_ckpts.contains(&h),
                    );
                }
                Op::IterationInitialize(h, chosen, t) => {
                    let h = pick(&p.ckpts, h);
                    let mut it = 0;
                    let e = saCkptSectionIterationInitialize(h, chosen, t, &mut it);
                    check_handle(e, live_ckpts.contains(&h));
                    if e == OK {
                        p.iters.push(it);
                    }
                }
                Op::IterationNext(h, null) => {
                    let h = pick(&p.iters, h);
                    let mut d = std::mem::MaybeUninit::<SaCkptSectionDescriptorT>::uninit();
                    let out = if null {
                        std::ptr::null_mut()
                    } else {
                        d.as_mut_ptr()
                    };
                    let e = saCkptSectionIterationNext(h, out);
                    check(e);
                    if e == OK {
                        let d = d.assume_init();
                        if d.section_id.id_len > 0 {
                            // The id must be readable: the sanitizer checks.
                            let id = std::slice::from_raw_parts(
                                d.section_id.id,
                                d.section_id.id_len as usize,
                            );
                            std::hint::black_box(id.iter().map(|&b| b as u32).sum::<u32>());
                        }
                    }
                }
                Op::IterationFinalize(h) => {
                    let h = pick(&p.iters, h);
                    check(saCkptSectionIterationFinalize(h));
                }
                Op::Write {
                    ckpt,
                    elements,
                    null_iov,
                } => {
                    let h = pick(&p.ckpts, ckpt);
                    let iov: Vec<SaCkptIOVectorElementT> = elements
                        .iter()
                        .take(16)
                        .map(|(id, offset, data)| SaCkptIOVectorElementT {
                            section_id: id_arg(id, &mut keep),
                            data_buffer: data.as_ptr() as *mut c_void,
                            data_size: data.len() as u64,
                            data_offset: *offset as u64,
                            read_size: 0,
                        })
                        .collect();
                    let mut bad = u32::MAX;
                    let ip = if null_iov {
                        std::ptr::null()
                    } else {
                        iov.as_ptr()
                    };
                    let e = saCkptCheckpointWrite(h, ip, iov.len() as u32, &mut bad);
                    check_handle(e, live_ckpts.contains(&h));
                    if e != OK && e != BAD_HANDLE && !null_iov {
                        assert!(bad == u32::MAX || (bad as usize) < iov.len().max(1));
                    }
                }
                Op::Overwrite {
                    ckpt,
                    id,
                    data,
                    null_data,
                } => {
                    let h = pick(&p.ckpts, ckpt);
                    let sid = id_arg(&id, &mut keep);
                    let dp = if null_data {
                        std::ptr::null()
                    } else {
                        data.as_ptr() as *const c_void
                    };
                    let e = saCkptSectionOverwrite(h, &sid, dp, data.len() as u64);
                    check_handle(e, live_ckpts.contains(&h));
                }
                Op::Read { ckpt, elements } => {
                    let h = pick(&p.ckpts, ckpt);
                    let mut bufs: Vec<Vec<u8>> = elements
                        .iter()
                        .map(|e| vec![0u8; e.2 as usize % 5000])
                        .collect();
                    let mut iov: Vec<SaCkptIOVectorElementT> = elements
                        .iter()
                        .zip(bufs.iter_mut())
                        .take(16)
                        .map(|((id, offset, _, alloc), buf)| SaCkptIOVectorElementT {
                            section_id: id_arg(id, &mut keep),
                            data_buffer: if *alloc {
                                std::ptr::null_mut()
                            } else {
                                buf.as_mut_ptr() as *mut c_void
                            },
                            data_size: buf.len() as u64,
                            data_offset: *offset as u64,
                            read_size: 0,
                        })
                        .collect();
                    let allocated: Vec<bool> =
                        iov.iter().map(|e| e.data_buffer.is_null()).collect();
                    let mut bad = 0;
                    let e = saCkptCheckpointRead(h, iov.as_mut_ptr(), iov.len() as u32, &mut bad);
                    check_handle(e, live_ckpts.contains(&h));
                    for (el, was_null) in iov.iter().zip(allocated) {
                        if was_null && !el.data_buffer.is_null() {
                            let data = std::slice::from_raw_parts(
                                el.data_buffer as *const u8,
                                el.read_size as usize,
                            );
                            std::hint::black_box(data.iter().map(|&b| b as u32).sum::<u32>());
                            assert_eq!(saCkptIOVectorElementDataFree(h, el.data_buffer), OK);
                        } else if !was_null && e == OK {
                            assert!(el.read_size <= el.data_size);
                        }
                    }
                }
                Op::Synchronize(h, ms) => {
                    let h = pick(&p.ckpts, h);
                    let t = (ms as i64 % 5) * 1_000_000;
                    check_handle(saCkptCheckpointSynchronize(h, t), live_ckpts.contains(&h));
                }
                Op::SynchronizeAsync(h, inv) => {
                    let h = pick(&p.ckpts, h);
                    check_handle(
                        saCkptCheckpointSynchronizeAsync(h, inv),
                        live_ckpts.contains(&h),
                    );
                }
                Op::Track(h) => {
                    let h = pick(&p.libs, h);
                    check_handle(saCkptTrack(h), live_libs.contains(&h));
                }
                Op::TrackStop(h) => {
                    let h = pick(&p.libs, h);
                    check_handle(saCkptTrackStop(h), live_libs.contains(&h));
                }
                Op::Immediate(h, null) => {
                    let h = pick(&p.ckpts, h);
                    let cb: ClCkptNotificationCallbackT =
                        if null { None } else { Some(on_immediate) };
                    let e = clCkptImmediateConsumptionRegister(h, cb, std::ptr::null_mut());
                    check_cl(e, live_ckpts.contains(&h), &[CL_CKPT_ERR_OP_NOT_PERMITTED]);
                }
                Op::SectionCheck(h, id) => {
                    let h = pick(&p.ckpts, h);
                    let sid = id.map(|id| id_arg(&id, &mut keep));
                    let at = sid.as_ref().map_or(std::ptr::null(), |s| s as *const _);
                    let e = clCkptSectionCheck(h, at);
                    let allowed = [
                        CL_CKPT_ERR_NOT_EXIST,
                        CL_CKPT_ERR_INVALID_PARAMETER,
                        CL_CKPT_ERR_TRY_AGAIN,
                    ];
                    check_cl(e, live_ckpts.contains(&h), &allowed);
                }
                Op::Arrival(h, null) => {
                    let h = pick(&p.libs, h);
                    let cb: SaCkptCheckpointTrackCallbackT =
                        if null { None } else { Some(on_track) };
                    let e = ncsCkptRegisterCkptArrivalCallback(h, cb);
                    check_handle(e, live_libs.contains(&h));
                    if null {
                        assert_eq!(e, INVALID_PARAM);
                    }
                }
            }
        }
        // A finalized library closed its checkpoints.
        live_ckpts.retain(|&c| open(c));
    }
    // Generated ids are the caller's to free (freeing after close is allowed
    // with plain free(), which B.01 callers use).
    for (_, id) in p.generated.drain(..) {
        // SAFETY: each generated id is freed once, with the allocator the
        // library used.
        unsafe { libc_free(id as *mut c_void) };
    }
    for h in live_libs {
        // SAFETY: plain call.
        let e = unsafe { saCkptFinalize(h) };
        assert_eq!(e, OK);
    }
    cleanup();
});

extern "C" {
    #[link_name = "free"]
    fn libc_free(p: *mut c_void);
}

/// Removes the checkpoints this input left (through a fresh instance).
fn cleanup() {
    let mut h = 0;
    let mut v = SaVersionT {
        release_code: b'B',
        major_version: 2,
        minor_version: 2,
    };
    // SAFETY: pointers to locals.
    unsafe {
        assert_eq!(saCkptInitialize(&mut h, std::ptr::null(), &mut v), OK);
        for n in 0..3 {
            let _ = saCkptCheckpointUnlink(h, &name(n));
        }
        assert_eq!(saCkptFinalize(h), OK);
    }
}
