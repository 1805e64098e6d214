//! Guarantee 2 for large (staged) writes: a writer SIGKILLed while it
//! publishes the Stage frames of a large overwrite leaves the section at its
//! old or its new version, and its successor logs a StageAbort, so a follower
//! of the log never assembles a version that was not committed.
//!
//! The test re-executes itself as a writer process (`crash_staged_writer_child`)
//! that overwrites one 600 KB section with version-coded contents, pausing
//! between writes; a follower thread of the parent reassembles every staged
//! frame from its pieces and checks it, and the parent kills the writer at a
//! random moment, recovers its claim and checks the section. Seed:
//! `CKPT_CRASH_SEED`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ckpt_core::frame::FrameKind;
use ckpt_core::{CheckpointName, CreationAttributes, OpenFlags, Time};
use ckpt_shm::{Config, Segment};

const ROUNDS: u32 = 40;
const ENV_DIR: &str = "CKPT_CRASH_STAGED_DIR";
/// Frames of at most 256 KiB: a 600 KB overwrite goes as 2 stages + its frame.
const RING: u64 = 1 << 20;
const SIZE: usize = 600_000;

fn config(dir: &str) -> Config {
    Config {
        log_bytes: Some(RING),
        ..Config::with_dir(dir)
    }
}

fn name() -> CheckpointName {
    CheckpointName::new("staged-crash").unwrap()
}

/// Version `v`'s contents: `v` big-endian, then bytes that depend on `v` and
/// their position.
fn content(v: u64) -> Vec<u8> {
    let mut out = v.to_be_bytes().to_vec();
    out.extend((8..SIZE).map(|i| (v as usize * 7 + i / 4096) as u8));
    out
}

/// The writer: overwrites the section with its next version, 1 ms apart.
#[test]
fn crash_staged_writer_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return; // Only meaningful when the crash test starts it.
    };
    let rw = OpenFlags::READ | OpenFlags::WRITE;
    let seg = Segment::open(&config(&dir), &name(), rw, None).unwrap();
    let section = seg.lookup(b"big").unwrap().unwrap();
    println!("ready");
    loop {
        let (data, _) = seg.read_to_vec(section).unwrap();
        let v = u64::from_be_bytes(data[..8].try_into().unwrap());
        seg.write(section, None, &content(v + 1)).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn writers_killed_inside_staged_writes_leave_whole_versions_and_aborted_stages() {
    let seed = common::seed("staged crash test");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap().to_string();
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let attrs = CreationAttributes::new(2, SIZE as u64);
    let seg = Segment::open(&config(&dir), &name(), rwc, Some(&attrs)).unwrap();
    let (section, _) = seg
        .create_section(Some(b"big"), Time::END, &content(1))
        .unwrap();
    let stop = AtomicBool::new(false);
    let mut rng = common::Rng(seed | 1);
    let (mut aborts, mut committed) = (0u64, 0u64);
    std::thread::scope(|scope| {
        // The follower: reassembles staged overwrites and checks each one.
        let follower = scope.spawn(|| {
            let mut consumer = seg.consumer(None);
            let (mut pieces, mut last, mut aborts, mut committed) = (Vec::new(), None, 0, 0);
            // After falling behind the ring (this thread starved on a busy
            // machine), frames up to the next first stage are skipped: a
            // staging seen from its middle cannot be assembled.
            let mut skipping = false;
            while !stop.load(Ordering::Relaxed) || consumer.has_next() {
                consumer.wait(Duration::from_millis(20), Duration::ZERO);
                loop {
                    let f = match consumer.next_frame() {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(ckpt_shm::log::LogError::Lagged { .. }) => {
                            consumer.resync().expect("resync after falling behind");
                            (skipping, pieces) = (true, Vec::new());
                            continue;
                        }
                        Err(e) => panic!("the log is corrupt: {e}"),
                    };
                    if skipping && !(f.header.kind == FrameKind::Stage && f.header.arg == 0) {
                        continue;
                    }
                    skipping = false;
                    match f.header.kind {
                        FrameKind::Stage => {
                            assert_eq!(f.header.arg as usize, pieces.len(), "stage in place");
                            pieces.extend_from_slice(f.data);
                        }
                        FrameKind::StageAbort => {
                            pieces.clear();
                            aborts += 1;
                        }
                        FrameKind::Overwrite => {
                            assert!(f.is_staged());
                            pieces.extend_from_slice(f.data);
                            let v = u64::from_be_bytes(pieces[..8].try_into().unwrap());
                            assert_eq!(v, f.header.version, "data of another version");
                            assert!(pieces == content(v), "v{v} reassembled wrong");
                            last = Some(v);
                            pieces.clear();
                            committed += 1;
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            (last, aborts, committed)
        });
        for round in 0..ROUNDS {
            common::kill_after(
                "crash_staged_writer_child",
                &[(ENV_DIR, dir.clone())],
                Duration::from_micros(rng.next() % 4000),
                &format!("round {round}: the writer could not open the checkpoint"),
            );
            // Taking the claim recovers the dead writer's mutation.
            seg.sweep_expired().unwrap();
            let (data, meta) = seg.read_to_vec(section).unwrap();
            let v = u64::from_be_bytes(data[..8].try_into().unwrap());
            assert_eq!(v, meta.version, "round {round}: version");
            assert!(
                data == content(v),
                "round {round}: v{v} is not whole (seed {seed})"
            );
        }
        stop.store(true, Ordering::Relaxed);
        let (last, a, c) = follower.join().unwrap();
        let (data, _) = seg.read_to_vec(section).unwrap();
        let v = u64::from_be_bytes(data[..8].try_into().unwrap());
        assert_eq!(last, Some(v), "the follower ends at the section's version");
        (aborts, committed) = (a, c);
    });
    println!(
        "{ROUNDS} writers killed: {committed} staged overwrites followed, {aborts} aborted \
         mid-stages by a successor"
    );
    assert!(committed > 0);
}
