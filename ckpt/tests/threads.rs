//! Many threads at once on one checkpoint: racing creates of one id produce
//! exactly one section, readers never see a torn version while writers and
//! deleters churn, and iteration lists every stable section exactly once.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Barrier;

use ckpt::{
    Config, CreationAttributes, CreationFlags, OpenFlags, SectionsChosen, Service, Time, UpdateMode,
};

fn attrs() -> CreationAttributes {
    CreationAttributes {
        flags: CreationFlags::new(UpdateMode::ActiveReplica, false),
        checkpoint_bytes: 64 * 128,
        retention_ns: 0,
        sections_max: 64,
        section_bytes_max: 128,
        section_id_bytes_max: 16,
    }
}

fn open(dir: &std::path::Path) -> ckpt::Checkpoint {
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    Service::with_config(Config::with_dir(dir))
        .open("threads", flags, Some(&attrs()))
        .unwrap()
}

/// A version's bytes: all equal to the low byte of the version, 8..=128 long.
fn version_bytes(v: u64) -> Vec<u8> {
    vec![v as u8; 8 + (v % 121) as usize]
}

#[test]
fn racing_creates_of_one_id_make_exactly_one_section() {
    let dir = tempfile::tempdir().unwrap();
    let ck = open(dir.path());
    for round in 0..50u32 {
        let id = format!("race{round}");
        let won = AtomicU32::new(0);
        let barrier = Barrier::new(4);
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let (ck, won, barrier, id) = (&ck, &won, &barrier, &id);
                s.spawn(move || {
                    barrier.wait();
                    match ck.create_section(id.as_bytes(), Time::END, &[t]) {
                        Ok(_) => {
                            won.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(ckpt::SectionCreateError::Exist) => {}
                        Err(e) => panic!("unexpected {e}"),
                    }
                });
            }
        });
        assert_eq!(won.load(Ordering::Relaxed), 1, "round {round}");
        let count = ck
            .sections(SectionsChosen::Any)
            .unwrap()
            .filter(|d| d.id.as_bytes() == id.as_bytes())
            .count();
        assert_eq!(count, 1);
        ck.delete_section(id.as_bytes()).unwrap();
    }
}

#[test]
fn readers_see_whole_versions_while_writers_and_deleters_churn() {
    let dir = tempfile::tempdir().unwrap();
    let ck = open(dir.path());
    // Stable sections, overwritten by two writer threads.
    for s in 0..8u64 {
        ck.create_section(
            format!("stable{s}").as_bytes(),
            Time::END,
            &version_bytes(1),
        )
        .unwrap();
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for w in 0..2u64 {
            let (ck, stop) = (&ck, &stop);
            scope.spawn(move || {
                let handles: Vec<_> = (0..8u64)
                    .filter(|s| s % 2 == w)
                    .map(|s| ck.section(format!("stable{s}").as_bytes()).unwrap())
                    .collect();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let h = handles[n % handles.len()];
                    let v = h.version().unwrap();
                    h.overwrite(&version_bytes(v + 1)).unwrap();
                    n += 1;
                }
            });
        }
        // A churner creating and deleting other sections (index and slot reuse).
        {
            let (ck, stop) = (&ck, &stop);
            scope.spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("churn{}", i % 40);
                    if ck.create_section(id.as_bytes(), Time::END, b"x").is_err() {
                        let _ = ck.delete_section(id.as_bytes());
                    }
                    i += 1;
                }
            });
        }
        // Readers check every read is a whole version, and iteration lists each
        // stable section exactly once.
        for _ in 0..2 {
            let ck = &ck;
            scope.spawn(move || {
                let mut buf = [0u8; 128];
                for round in 0..20_000 {
                    let s = round % 8;
                    let h = ck.section(format!("stable{s}").as_bytes()).unwrap();
                    let n = h.read(0, &mut buf).unwrap();
                    let data = &buf[..n];
                    assert!(n >= 8, "short read {n}");
                    assert!(data.iter().all(|&b| b == data[0]), "torn read {data:?}");
                    if round % 1000 == 0 {
                        let stable = ck
                            .sections(SectionsChosen::Any)
                            .unwrap()
                            .filter(|d| d.id.as_bytes().starts_with(b"stable"))
                            .count();
                        assert_eq!(stable, 8, "iteration lost or repeated a stable section");
                    }
                }
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
    });
    let status = ck.status().unwrap();
    let listed = ck.sections(SectionsChosen::Any).unwrap().count();
    assert_eq!(status.sections as usize, listed);
}
