//! # ckpt-core: the checkpoint model, without I/O
//!
//! A *checkpoint* is a named table of *sections* (section id → bytes) with the
//! SA Forum AIS checkpoint semantics (SAI-AIS-CKPT-B.01.01). This crate holds
//! everything about that model that needs no memory mapping, no clock and no
//! socket, so that it can be tested, fuzzed and simulated in isolation:
//!
//! - [`name`]: checkpoint names and section ids, validated once at the boundary;
//! - [`attrs`]: creation attributes, open flags, update modes, times and the
//!   per-section descriptor, with every limit of the spec;
//! - [`ais`]: the `SaAisErrorT` codes, and [`error`]: one small `Copy` error enum
//!   per operation, each variant mapping 1:1 to an `SaAisErrorT` code;
//! - [`frame`]: the **one** byte format of a delta-log record and the
//!   replication protocol. The shared-memory log ring stores these frames and
//!   the replication engine ships them as-is;
//! - [`catchup`]: the rule that says which frames a fuzzy copy of a checkpoint
//!   already contains;
//! - [`repl`]: the replication protocol's two ends (the primary's shipper and
//!   a replica's follower) as state machines without I/O;
//! - [`cluster`]: what node daemons multicast to each other through the
//!   cluster engine (where each listens, which copies each holds), and the
//!   rule that lifts or resolves a fence once a partition regains quorum;
//! - [`control`]: the requests the node daemon's control socket takes.
//!
//! The crate forbids `unsafe`.
#![forbid(unsafe_code)]

pub mod ais;
pub mod attrs;
pub mod catchup;
pub mod cluster;
pub mod control;
pub mod error;
pub mod frame;
pub mod name;
pub mod repl;

pub use ais::AisError;
pub use attrs::{
    CheckpointStatus, CreationAttributes, CreationFlags, OpenFlags, SectionDescriptor,
    SectionState, SectionsChosen, Time, UpdateMode,
};
pub use name::{CheckpointName, SectionId};
