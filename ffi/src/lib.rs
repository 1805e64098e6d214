//! # libSaCkpt: the SA Forum AIS Checkpoint C API over ckpt
//!
//! This crate builds `libSaCkpt.so.1` (and `libSaCkpt.a`) with the 24
//! functions of SAI-AIS-CKPT B.02.02 and the extended-name helpers, for C
//! programs written against OpenSAF, openais or SAFplus headers; the headers are
//! `ffi/include/saAis.h` and `ffi/include/saCkpt.h`. Every call maps onto the
//! Rust API of the `ckpt` crate; checkpoints live in `$CKPT_DIR` (default
//! `/dev/shm/ckpt`), shared with Rust users of the same directory.
//!
//! At every entry point: pointers and values are checked first (as OpenSAF
//! does: a NULL out-pointer is `INVALID_PARAM` even with a bad handle), then
//! the handle (a stale, foreign or garbage handle is `BAD_HANDLE`, see
//! [`handles`]); no Rust panic crosses into C (it becomes `SA_AIS_ERR_LIBRARY`).
//!
//! Memory the library hands out (generated section ids, read buffers it
//! allocates) comes from `malloc`: `free()` releases it for B.01 callers, and
//! `saCkptSectionIdFree` / `saCkptIOVectorElementDataFree` for B.02 ones.
//!
//! Where OpenSAF, openais or SAFplus applications rely on behaviour the spec
//! does not give, a compatibility profile (`CKPT_SA_PROFILE`, see [`profile`])
//! provides it; the default is the spec's.
//!
//! Callbacks (`saCkptCheckpointOpenAsync`, `saCkptCheckpointSynchronizeAsync`,
//! track callbacks) are queued on the library handle and run by
//! `saCkptDispatch` in the caller's thread; the selection object is an eventfd
//! that is readable while any are queued. SAFplus's immediate-consumption
//! callback (`clCkptImmediateConsumptionRegister` in `clCkptHotStandby.h`) runs
//! on a library thread,
//! as in SAFplus.

// The crate is named for the library it builds (libSaCkpt), and its C entry
// points keep the API's names.
#![allow(non_snake_case)]

pub mod handles;
pub mod sync;

#[cfg(not(loom))]
pub mod names;
#[cfg(not(loom))]
pub mod profile;
#[cfg(not(loom))]
pub mod types;

#[cfg(not(loom))]
mod api;
#[cfg(not(loom))]
mod library;
#[cfg(not(loom))]
mod safplus;

#[cfg(not(loom))]
pub use api::*;
#[cfg(not(loom))]
pub use safplus::*;
