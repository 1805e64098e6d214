//! # ckpt-shm: checkpoints in shared memory
//!
//! Everything in ckpt that touches mapped memory lives here. A checkpoint is one
//! file in the segment directory (default `/dev/shm/ckpt`), mapped `MAP_SHARED`
//! by every process that opens it; the layout is defined once, in [`layout`].
//!
//! - [`slot`]: crash-atomic sections (two buffers, one commit word);
//! - [`index`]: the lock-free section index;
//! - [`log`]: the delta-log ring consumers follow;
//! - [`claim`]: the word that serializes mutations and recovers dead writers;
//! - [`ack`]: replicas' acknowledgements and the synchronous writer's wait;
//! - [`racy`]: byte-wise atomic copies of memory others may be writing;
//! - `segment`: creating, validating and mapping segments; `ops`: every
//!   checkpoint operation on them, on one mutation path (writes, section
//!   lifecycle, checkpoint-wide changes, recovery, log consumption and
//!   snapshots, applying a primary's frames); `dir`: the segment directory
//!   (names, listing, unlink, retention sweeps); `notify`: futex waits;
//!   `lease`: liveness of openers across PID namespaces (file locks); `proc`:
//!   this process's pid and namespace; `clock`: the writers' 1 ms wall clock.
//!
//! Every `unsafe` block names the invariant it relies on in a `// SAFETY:`
//! comment, every Acquire names its Release in a `// SYNC POINT:` comment, and
//! the lock-free protocols have loom models (`RUSTFLAGS="--cfg loom"`).

pub mod ack;
pub mod claim;
pub mod index;
pub mod layout;
pub mod log;
pub mod racy;
pub mod slot;
pub mod sync;

#[cfg(not(loom))]
pub mod alive;
#[cfg(not(loom))]
pub mod clock;
#[cfg(not(loom))]
pub mod dir;
#[cfg(not(loom))]
pub mod lease;
#[cfg(not(loom))]
pub mod notify;
#[cfg(not(loom))]
pub mod ops;
#[cfg(not(loom))]
pub mod proc;
#[cfg(not(loom))]
pub mod segment;

#[cfg(not(loom))]
pub use ops::{
    Consumer, SectionCopy, SectionRef, SectionView, Snapshot, SnapshotHead, SnapshotSection,
    SpareBuffer, WriteElement,
};
#[cfg(not(loom))]
pub use segment::{Config, Mapped, Segment};
