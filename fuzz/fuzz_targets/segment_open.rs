//! `Segment::open` (and the CLI's `segment::inspect`) on a damaged or foreign
//! segment file: it returns `Ok` or `Err`, never panics; and if it accepts the
//! file, reading it (lookups, iteration, section reads, the log from position
//! 0, usage, a snapshot replayed from its resume point, a consumer's resync)
//! and, on request, mutating it does not panic either.
//!
//! The first input byte picks the mode:
//! - bit 0 clear: the rest of the input *is* the file (the seed corpus holds
//!   real segments, see `.ci/fuzz.sh`);
//! - bit 0 set: the rest is a list of 4-byte patches applied to a real segment
//!   built at start-up (bits 1 and 3 pick which), keeping its length, so that
//!   most inputs pass the magic, version and geometry checks and reach the
//!   code behind them. Patches aim at offsets of the layout (version 2, a
//!   704-byte header; `shm/src/layout.rs`), and so do the regression inputs,
//!   which must be re-aimed when the layout changes: all patch base 0's
//!   header, `next_generated_id` (offset 432) filled with `0xFF`, `log_tail`
//!   (512) filled with `0xFF`, and `log_tail` + 1;
//! - bit 2 set: after reading, also create, write, overwrite, re-expire and
//!   delete sections, sweep, change the active replica and the retention and
//!   log an unlink (under the writer claim, with recovery if the file names a
//!   dead claim holder).
//!
//! With `CKPT_FUZZ_SEED_DIR` set, start-up also writes the real segments as
//! seed inputs into that directory.

#![no_main]

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use ckpt_core::{CheckpointName, CreationAttributes, OpenFlags, SectionsChosen, Time};
use ckpt_fuzz::scratch_dir;
use ckpt_shm::layout::{Geometry, SegmentHeader, LOG_BYTES_MIN, OPENERS_MAX};
use ckpt_shm::segment::inspect;
use ckpt_shm::{Config, Mapped, Segment};
use libfuzzer_sys::fuzz_target;

/// The checkpoint every input is opened as; its file is `x.ckpt`.
const NAME: &str = "x";
const FILE: &str = "x.ckpt";

/// A real segment to patch, and its geometry (to aim patches at regions).
struct Base {
    bytes: Vec<u8>,
    geometry: Geometry,
}

fn config(dir: &Path) -> Config {
    Config {
        log_bytes: Some(LOG_BYTES_MIN),
        // A file may name this very process as the claim holder; waiting the
        // default 2 s for ourselves would only slow the fuzzer down.
        claim_timeout: Duration::from_millis(1),
        ..Config::with_dir(dir)
    }
}

fn name() -> CheckpointName {
    CheckpointName::new(NAME).expect("valid name")
}

/// Retention "forever", so a copy never counts as expired however long the
/// fuzzer runs.
const FOREVER: Time = Time(i64::MAX);

/// Builds a segment of `sections_max` sections (`section_bytes` bytes, 8-byte
/// ids), runs `fill` on it, closes it and returns its bytes.
fn build(sections_max: u32, section_bytes: u64, fill: impl FnOnce(&Segment)) -> Base {
    let dir = scratch_dir();
    let attrs = CreationAttributes {
        retention_ns: FOREVER.0,
        section_id_bytes_max: 8,
        ..CreationAttributes::new(sections_max, section_bytes)
    };
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let segment =
        Segment::open(&config(dir.path()), &name(), flags, Some(&attrs)).expect("create segment");
    let geometry = *segment.geometry();
    fill(&segment);
    drop(segment);
    let bytes = std::fs::read(dir.path().join(FILE)).expect("read segment");
    Base { bytes, geometry }
}

/// Bytes of the large sections: more than a quarter of the smallest ring, so
/// their frames are staged.
const LARGE: usize = 20_000;

/// Three segments: named sections with every kind of section and checkpoint
/// frame and an index tombstone; a checkpoint with only its default section;
/// and large sections whose data was logged as `Stage` frames.
fn bases() -> &'static [Base; 3] {
    static BASES: OnceLock<[Base; 3]> = OnceLock::new();
    BASES.get_or_init(|| {
        let far = Time::from_secs(4_102_444_800); // 2100-01-01
        let sections = build(4, 64, |s| {
            let (a, _) = s.create_section(Some(b"a"), Time::END, b"hello").unwrap();
            let (gen, _) = s.create_section(None, far, b"generated").unwrap();
            let (gone, _) = s.create_section(Some(b"gone"), Time::END, b"").unwrap();
            s.write(a, Some(5), b", world").unwrap();
            s.write(gen, None, b"replaced").unwrap();
            s.set_expiration(gen, Time::END).unwrap();
            s.delete_section(gone).unwrap();
            assert_eq!(s.set_active_replica(3), Ok(2));
            s.set_retention(FOREVER).unwrap();
        });
        let default = build(1, 64, |s| {
            let section = s.lookup(b"").unwrap().expect("default section");
            s.write(section, None, b"default data").unwrap();
        });
        let large = build(2, LARGE as u64, |s| {
            let data: Vec<u8> = (0..LARGE).map(|i| (i % 251) as u8).collect();
            let (big, _) = s.create_section(Some(b"big"), Time::END, &data).unwrap();
            s.write(big, Some(100), &data[..LARGE - 100]).unwrap();
            s.write(big, None, &data[..LARGE - 3000]).unwrap();
            let (small, _) = s.create_section(Some(b"small"), far, b"s").unwrap();
            s.delete_section(small).unwrap();
        });
        [sections, default, large]
    })
}

/// The base segment a patch input's mode byte picks (bits 1 and 3).
fn base_of(mode: u8) -> &'static Base {
    let bases = bases();
    let i = ((mode >> 1) & 1) | ((mode >> 2) & 2);
    &bases[i as usize % bases.len()]
}

/// Writes seed inputs: each base as a whole file, and unpatched, each with and
/// without the mutation pass.
fn write_seeds(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create seed directory");
    for (i, base) in bases().iter().enumerate() {
        for mutate in [0, 4] {
            let mut raw = vec![mutate];
            raw.extend_from_slice(&base.bytes);
            std::fs::write(dir.join(format!("seed-file-{i}-{mutate}")), raw).expect("write seed");
            let patch = [mutate | (i as u8 & 1) << 1 | (i as u8 & 2) << 2 | 1];
            assert!(
                std::ptr::eq(base_of(patch[0]), base),
                "seed {i} picks its base"
            );
            std::fs::write(dir.join(format!("seed-patch-{i}-{mutate}")), patch)
                .expect("write seed");
        }
    }
}

/// Applies `[how, offset lo, offset hi, value]` patches. The low bits of `how`
/// pick header, openers, index, slots, data or log ring (offsets wrap within
/// the region); its top two bits what is written: the byte `value`, or the
/// aligned 8-byte word around the offset set to `value`, filled with `value`
/// (the extremes of counters and positions), or nudged by `value as i8` (just
/// past a limit). Words matter: the header and slots are mostly `u64`s.
fn patched(base: &Base, patches: &[u8]) -> Vec<u8> {
    let g = &base.geometry;
    // Only the bytes in use, not the alignment padding after them.
    let regions = [
        (0, size_of::<SegmentHeader>() as u64),
        (g.openers_offset, g.openers_offset + OPENERS_MAX as u64 * 64),
        (g.index_offset, g.index_offset + g.index_buckets * 8),
        (g.slots_offset, g.slot_header(g.sections_max)),
        (g.data_offset, g.buffer(g.sections_max, 0)),
        (g.log_offset, g.end),
    ];
    let mut bytes = base.bytes.clone();
    for p in patches.chunks_exact(4) {
        let (how, value) = (p[0], p[3]);
        let (start, end) = regions[(how & 0x3f) as usize % regions.len()];
        let at = (start + u16::from_le_bytes([p[1], p[2]]) as u64 % (end - start)) as usize;
        let w = at & !7;
        let old = u64::from_le_bytes(bytes[w..w + 8].try_into().expect("8 bytes"));
        let new = match how >> 6 {
            0 => {
                bytes[at] = value;
                continue;
            }
            1 => value as u64,
            2 => u64::from_le_bytes([value; 8]),
            _ => old.wrapping_add(value as i8 as u64),
        };
        bytes[w..w + 8].copy_from_slice(&new.to_le_bytes());
    }
    bytes
}

fn write_file(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("create segment file");
    file.write_all(bytes).expect("write segment file");
}

/// Everything a reader does; results are ignored, only panics matter.
fn read_all(mapped: &Mapped) {
    for id in [
        &b""[..],
        b"a",
        b"gone",
        &[0, 0, 0, 1],
        b"missing",
        &[b'x'; 9],
    ] {
        if let Ok(Some(section)) = mapped.lookup(id) {
            let _ = mapped.is_expired(section);
            let _ = mapped.read_to_vec(section);
        }
    }
    let mut sections = Vec::new();
    mapped.for_each_section(SectionsChosen::Any, |v| {
        sections.push((v.section, v.size_bytes))
    });
    let mut buf = [0u8; 128];
    for (section, size) in sections {
        let _ = mapped.read(section, 0, &mut buf);
        let _ = mapped.read(section, size.saturating_sub(3), &mut buf);
    }
    mapped.for_each_section(SectionsChosen::Forever, |_| {});
    let mut consumer = mapped.consumer(Some(0));
    while let Ok(Some(frame)) = consumer.next_frame() {
        let _ = frame.mutation();
    }
    let _ = mapped.usage();
    let _ = mapped.log_tail();
    let _ = mapped.last_seq();
    let _ = mapped.active_replica();
    if let Ok(snapshot) = mapped.snapshot() {
        // Replay the log from the snapshot's resume point, as catch-up does.
        let mut consumer = mapped.consumer(Some(snapshot.resume));
        while let Ok(Some(frame)) = consumer.next_frame() {
            let _ = snapshot.contains(&frame.header, frame.id);
        }
    }
    let mut consumer = mapped.consumer(None);
    if consumer.resync().is_ok() {
        while let Ok(Some(frame)) = consumer.next_frame() {
            let _ = frame.mutation();
        }
    }
}

/// One of each mutation; results are ignored, only panics matter.
fn mutate(segment: &Segment) {
    let created = segment
        .create_section(Some(b"fz"), Time::END, b"fuzz")
        .map(|(s, _)| s);
    let _ = segment.create_section(None, Time::END, b"");
    let mut first = None;
    segment.for_each_section(SectionsChosen::Any, |v| {
        first.get_or_insert(v.section);
    });
    // Large enough to be staged in the large base (and refused elsewhere).
    let large = vec![0x5Au8; LARGE];
    for section in first.into_iter().chain(created.ok()) {
        let _ = segment.write(section, Some(0), b"patched");
        let _ = segment.write(section, None, b"over");
        let _ = segment.overwrite_with(section, 3, |d| d.fill(7));
        let _ = segment.write(section, None, &large);
        let _ = segment.set_expiration(section, Time::END);
        let _ = segment.delete_section(section);
    }
    let _ = segment.sweep_expired();
    let _ = segment.set_active_replica(9);
    let _ = segment.set_retention(FOREVER);
    read_all(segment);
    let _ = segment.log_unlink();
    read_all(segment);
}

/// Opens and uses one input as a segment file.
fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        patched(base_of(mode), rest)
    };
    let dir = scratch_dir();
    let path = dir.path().join(FILE);
    write_file(&path, &bytes);
    let config = config(dir.path());
    // The CLI's way in: mapped and validated, but not registered.
    if let Ok(mapped) = inspect(&config, &name()) {
        read_all(&mapped);
    }
    let flags = OpenFlags::READ | OpenFlags::WRITE;
    let Ok(segment) = Segment::open(&config, &name(), flags, None) else {
        return;
    };
    read_all(&segment);
    if mode & 4 != 0 {
        mutate(&segment);
    }
}

fuzz_target!(
    init: {
        if let Some(dir) = std::env::var_os("CKPT_FUZZ_SEED_DIR") {
            write_seeds(Path::new(&dir));
        }
    },
    |data: &[u8]| run(data)
);
