//! Guarantee 2 for replicas: an applier SIGKILLed at any instruction, also
//! in the middle of a large (staged) mutation, leaves the replica so that the
//! next applier continues from its last applied frame and it ends equal to
//! the primary; a snapshot of the primary, replayed, equals it too; and the
//! replica can be promoted and written.
//!
//! The test re-executes itself as an applier process (`crash_applier_child`)
//! that follows the primary's log from a position and applies every frame to
//! the replica; the parent writes a round of mutations (small ones and large
//! ones that go as Stage frames), starts the applier, kills it at a random
//! moment, finishes the round's applies itself and compares. Seed:
//! `CKPT_CRASH_SEED`.

mod common;

use std::time::Duration;

use common::Rng;

use ckpt_core::frame::FrameKind;
use ckpt_core::{CheckpointName, CreationAttributes, OpenFlags, SectionsChosen, Time};
use ckpt_shm::ops::{Applied, ApplyError};
use ckpt_shm::{Config, Consumer, Segment};

const ROUNDS: u32 = 60;
const ENV_PRIMARY: &str = "CKPT_CRASH_PRIMARY_DIR";
const ENV_REPLICA: &str = "CKPT_CRASH_REPLICA_DIR";
const ENV_FROM: &str = "CKPT_CRASH_FROM";
const NAME: &str = "safCkpt=crash-replica";
/// Frames of at most 64 KiB: a 150 KB write goes as 2 stages and its frame.
const RING: u64 = 256 * 1024;
const BIG: usize = 150_000;

fn config(dir: &str) -> Config {
    Config {
        log_bytes: Some(RING),
        ..Config::with_dir(dir)
    }
}

fn name() -> CheckpointName {
    CheckpointName::new(NAME).unwrap()
}
/// Applies every frame from `consumer` that `replica` does not hold yet.
fn apply_all(consumer: &mut Consumer<'_>, replica: &Segment) -> Result<u64, String> {
    let mut applied = 0;
    while let Some(frame) = consumer.next_frame().map_err(|e| e.to_string())? {
        match replica.apply(&frame) {
            Ok(Applied::Done) => applied += 1,
            Ok(Applied::Already) => {}
            Err(ApplyError::Contended) => return Err("contended".into()),
            Err(e) => return Err(format!("seq {}: {e}", frame.header.seq)),
        }
    }
    Ok(applied)
}

/// The applier process: applies from the given position until told to stop
/// (it is killed first, or finishes and exits).
#[test]
fn crash_applier_child() {
    let (Ok(primary_dir), Ok(replica_dir), Ok(from)) = (
        std::env::var(ENV_PRIMARY),
        std::env::var(ENV_REPLICA),
        std::env::var(ENV_FROM),
    ) else {
        return; // Only meaningful when the crash test starts it.
    };
    let primary = Segment::open(&config(&primary_dir), &name(), OpenFlags::READ, None).unwrap();
    let rw = OpenFlags::READ | OpenFlags::WRITE;
    let replica = Segment::open(&config(&replica_dir), &name(), rw, None).unwrap();
    let mut consumer = primary.consumer(Some(from.parse().unwrap()));
    println!("ready");
    apply_all(&mut consumer, &replica).unwrap();
}

/// Every section as (id, data, version, expiration), sorted.
fn state(seg: &Segment) -> Vec<(Vec<u8>, Vec<u8>, u64, Time)> {
    let mut views = Vec::new();
    seg.for_each_section(SectionsChosen::Any, |v| {
        views.push((v.section, v.id.to_vec(), v.expiration))
    });
    let mut out: Vec<_> = views
        .into_iter()
        .map(|(s, id, exp)| {
            let (data, meta) = seg.read_to_vec(s).unwrap();
            (id, data, meta.version, exp)
        })
        .collect();
    out.sort();
    out
}

/// One round of random mutations on the primary: creates, small writes and
/// overwrites, deletes, and one large one (the round's frames fit the ring).
fn write_round(primary: &Segment, rng: &mut Rng, round: u32) {
    let big_at = rng.next() % 12;
    for op in 0..12u32 {
        let id = [b'a' + (rng.next() % 6) as u8];
        let fill = (round * 16 + op) as u8;
        let len = if op as u64 == big_at {
            BIG
        } else {
            (rng.next() % 300) as usize
        };
        match primary.lookup(&id).unwrap() {
            None => {
                let _ = primary.create_section(Some(&id), Time::END, &vec![fill; len]);
            }
            Some(s) => match rng.next() % 8 {
                0 => primary.delete_section(s).unwrap(),
                1 | 2 => {
                    let size = primary.read(s, 0, &mut []).unwrap().1.size;
                    let offset = rng.next() % (size + 1);
                    let len = len.min(200_000 - offset as usize);
                    primary.write(s, Some(offset), &vec![fill; len]).unwrap();
                }
                _ => primary.write(s, None, &vec![fill; len]).unwrap(),
            },
        }
    }
}

#[test]
fn appliers_killed_at_any_moment_leave_a_replica_that_catches_up_exactly() {
    let seed = common::seed("replica crash test");
    let (pd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pdir, rdir) = (
        pd.path().to_str().unwrap().to_string(),
        rd.path().to_str().unwrap().to_string(),
    );
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let attrs = CreationAttributes {
        section_id_bytes_max: 8,
        ..CreationAttributes::new(8, 200_000)
    };
    let primary = Segment::open(&config(&pdir), &name(), rwc, Some(&attrs)).unwrap();
    let mut consumer = primary.consumer(Some(0));
    let created = consumer.next_frame().unwrap().unwrap();
    assert_eq!(created.header.kind, FrameKind::CheckpointCreated);
    let replica = Segment::open_replica(&config(&rdir), &created).unwrap();
    let mut rng = Rng(seed | 1);
    let (mut killed_mid_staging, mut applied_by_children) = (0, 0u64);
    for round in 0..ROUNDS {
        let from = consumer.position();
        let before = replica.last_seq();
        write_round(&primary, &mut rng, round);
        let envs = [
            (ENV_PRIMARY, pdir.clone()),
            (ENV_REPLICA, rdir.clone()),
            (ENV_FROM, from.to_string()),
        ];
        common::kill_after(
            "crash_applier_child",
            &envs,
            Duration::from_micros(rng.next() % 1500),
            &format!("round {round}: the applier could not start (seed {seed})"),
        );
        applied_by_children += replica.last_seq() - before;
        let staging = replica
            .header()
            .stage
            .load(std::sync::atomic::Ordering::Relaxed)
            != 0;
        killed_mid_staging += staging as u32;

        // The next applier (here, this process) continues where it stopped.
        apply_all(&mut consumer, &replica)
            .unwrap_or_else(|e| panic!("round {round}: catching up: {e} (seed {seed})"));
        assert_eq!(replica.last_seq(), primary.last_seq(), "round {round}");
        assert_eq!(
            state(&replica),
            state(&primary),
            "round {round}: the replica differs (seed {seed})"
        );
        assert_eq!(replica.usage(), primary.usage(), "round {round}");

        // A snapshot of the replica, replayed from its resume point over the
        // frames the replica republished, holds exactly the same.
        let snapshot = replica.snapshot().unwrap();
        let copied: Vec<_> = snapshot
            .sections
            .iter()
            .map(|s| (s.id.clone(), s.data.clone(), s.version, s.expiration))
            .collect();
        assert_eq!(copied, state(&replica), "round {round}: snapshot");
    }
    println!(
        "{ROUNDS} appliers killed: {applied_by_children} frames applied by them, \
         {killed_mid_staging} killed inside a staged mutation"
    );
    // Promotion: the replica becomes the primary in a new term and is written.
    let term = replica.promote(1).unwrap();
    let primary_term = ckpt_shm::layout::ActiveReplicaWord::from(
        primary
            .header()
            .active_replica
            .load(std::sync::atomic::Ordering::Relaxed),
    )
    .term;
    assert_eq!(term, primary_term + 1);
    assert_eq!(replica.active_replica().unwrap().node, 1);
    let (s, _) = replica
        .create_section(Some(b"new"), Time::END, b"after")
        .unwrap();
    assert_eq!(replica.read_to_vec(s).unwrap().0, b"after");
    assert!(
        applied_by_children > 0,
        "the appliers never applied anything"
    );
}
