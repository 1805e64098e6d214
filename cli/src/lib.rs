//! # ckpt-cli: the `ckpt` command's engines
//!
//! The `ckpt` binary (`src/main.rs`) runs the failover demo ([`demo`]), the
//! operator's inspection of a segment directory ([`inspect`]), the node
//! daemon and its status ([`daemon`]), one checkpoint's replication link by
//! hand ([`replicate`]) and the bench
//! command ([`bench`](mod@bench)). They live in this crate, not in the `ckpt` library,
//! so that a program using only the library does not compile the CLI's
//! dependencies (clap, serde, toml, tracing-subscriber).

// One mapping of a private file for the bench's baselines (`bench.rs`) is
// the only unsafe code here.
#![deny(unsafe_code)]

pub mod bench;
pub mod daemon;
pub mod demo;
pub mod inspect;
pub mod netns;
pub mod replicate;
