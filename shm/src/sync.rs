//! The only door to atomics in this crate, so that loom can replace them.
//!
//! With `RUSTFLAGS="--cfg loom"` the protocol modules ([`crate::slot`],
//! [`crate::index`], [`crate::log`], [`crate::claim`]) run on loom's atomics in
//! the model tests; the mapped-memory modules are compiled out.

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};

#[cfg(not(loom))]
pub use core::sync::atomic::{fence, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// A busy-wait hint; under loom, a yield so the model explores other threads.
#[inline]
pub fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}
