//! # ckpt-benches: fixtures for the criterion benchmarks
//!
//! Each bench in `benches/benches/` measures one stage of ckpt's data flow
//! (write, read, iterate, delta log) **beside its raw baseline in the same
//! criterion group**, so the report shows both under the same noise:
//!
//! - the baseline memory is a `MAP_SHARED` mapping of a file in the same tmpfs
//!   directory as the segments ([`SharedRegion`]), never a heap `Vec` (a heap
//!   page and a shared tmpfs page are not the same thing to the MMU);
//! - every run gets its own directory under `/dev/shm` ([`Scratch`]), removed
//!   when the fixture drops.
//!
//! Run them with `cargo bench -p ckpt-benches` (about a minute and a half on
//! the 2-vCPU project machine); one stage with `cargo bench -p ckpt-benches
//! --bench write`.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use ckpt_core::{CheckpointName, CreationAttributes, OpenFlags};
use ckpt_shm::{Config, Segment};
use memmap2::MmapMut;

/// Where scratch directories go when `/dev/shm` is missing.
const FALLBACK_PARENT: &str = "/tmp";

/// A unique directory under `/dev/shm` for one bench run, removed on drop.
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Creates `/dev/shm/ckpt-bench-<tag>-<pid>-<ns>` (or under `/tmp` if
    /// there is no `/dev/shm`).
    pub fn new(tag: &str) -> Scratch {
        let parent = if Path::new("/dev/shm").is_dir() {
            Path::new("/dev/shm")
        } else {
            Path::new(FALLBACK_PARENT)
        };
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let dir = parent.join(format!("ckpt-bench-{tag}-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        Scratch { dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A segment configuration for this directory with a log ring of
    /// `log_bytes` (a power of two), or the default ring.
    pub fn config(&self, log_bytes: Option<u64>) -> Config {
        Config {
            log_bytes,
            ..Config::with_dir(&self.dir)
        }
    }

    /// Creates checkpoint `name` with `sections_max` sections of at most
    /// `section_bytes_max` bytes and 16-byte ids, opened read-write.
    pub fn segment(
        &self,
        name: &str,
        sections_max: u32,
        section_bytes_max: u64,
        log_bytes: Option<u64>,
    ) -> Segment {
        let attrs = attributes(sections_max, section_bytes_max);
        let name = CheckpointName::new(name).expect("a valid checkpoint name");
        let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
        Segment::open(&self.config(log_bytes), &name, flags, Some(&attrs))
            .expect("create the bench segment")
    }

    /// A `MAP_SHARED` mapping of a new `bytes`-long file in this directory:
    /// the baseline's memory, the same kind as a segment's.
    pub fn region(&self, name: &str, bytes: usize) -> SharedRegion {
        SharedRegion::new(&self.dir.join(name), bytes)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The attributes of bench checkpoints: no retention, 16-byte ids.
pub fn attributes(sections_max: u32, section_bytes_max: u64) -> CreationAttributes {
    CreationAttributes {
        retention_ns: 0,
        section_id_bytes_max: 16,
        ..CreationAttributes::new(sections_max, section_bytes_max)
    }
}

/// A `MAP_SHARED`, read-write mapping of a tmpfs file: raw shared memory for
/// the baselines, faulted in at creation.
pub struct SharedRegion {
    map: MmapMut,
    _file: File,
}

impl SharedRegion {
    fn new(path: &Path, bytes: usize) -> SharedRegion {
        let bytes = bytes.max(64);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .expect("create the baseline file");
        file.set_len(bytes as u64).expect("size the baseline file");
        // SAFETY: the file is new and private to this process (create_new in a
        // directory only this run uses), so no other mapping or writer can
        // change it behind the `&mut [u8]` that MmapMut hands out; it is not
        // truncated while mapped (we hold the only handle).
        let mut map = unsafe { MmapMut::map_mut(&file) }.expect("map the baseline file");
        // Fault every page in now, as a segment's pages are after its creation.
        map.fill(0);
        SharedRegion { map, _file: file }
    }

    /// The whole region.
    pub fn bytes(&mut self) -> &mut [u8] {
        &mut self.map
    }

    /// The first 8 bytes as an atomic: the "sequence counter" baseline.
    pub fn counter(&self) -> &AtomicU64 {
        let ptr = self.map.as_ptr() as *mut u64;
        // SAFETY: the mapping is page aligned and at least 64 bytes long, so the
        // pointer is aligned and valid for 8 bytes for as long as `&self` lives;
        // the only non-atomic access to these bytes goes through `bytes(&mut
        // self)`, which cannot coexist with the returned shared borrow.
        unsafe { AtomicU64::from_ptr(ptr) }
    }
}
