//! Segment-level behaviour: create, publish, validate, operate, consume.

use ckpt_core::frame::Mutation;
use ckpt_core::{CheckpointName, CreationAttributes, OpenFlags, SectionsChosen, Time};
use ckpt_shm::{Config, Segment};

fn config() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::with_dir(dir.path());
    (dir, config)
}

fn rw() -> OpenFlags {
    OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE
}

#[test]
fn create_write_read_delete_and_follow_the_log() {
    let (_dir, config) = config();
    let name = CheckpointName::new("t").unwrap();
    let attrs = CreationAttributes::new(8, 64);
    let seg = Segment::open(&config, &name, rw(), Some(&attrs)).unwrap();
    let mut consumer = seg.consumer(Some(0));
    let (a, _) = seg.create_section(Some(b"a"), Time::END, b"hello").unwrap();
    seg.write(a, None, b"world!").unwrap();
    seg.write(a, Some(5), b"??").unwrap();
    let mut buf = [0u8; 64];
    let (n, meta) = seg.read(a, 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"world??");
    assert_eq!(meta.version, 3);
    assert_eq!(seg.lookup(b"a").unwrap(), Some(a));
    assert_eq!(seg.usage(), (1, 7));
    seg.delete_section(a).unwrap();
    assert_eq!(seg.lookup(b"a").unwrap(), None);
    assert_eq!(seg.usage(), (0, 0));
    let mut kinds = Vec::new();
    while let Some(frame) = consumer.next_frame().unwrap() {
        kinds.push(match frame.mutation().unwrap() {
            Mutation::Create { data, .. } => format!("create {}", String::from_utf8_lossy(data)),
            Mutation::Overwrite { data, .. } => {
                format!("overwrite {}", String::from_utf8_lossy(data))
            }
            Mutation::Write { offset, data, .. } => {
                format!("write {offset} {}", String::from_utf8_lossy(data))
            }
            Mutation::Delete { id } => format!("delete {}", String::from_utf8_lossy(id)),
            Mutation::ExpirationSet { .. } => "expire".into(),
            Mutation::CheckpointCreated { name, .. } => {
                format!("created {}", String::from_utf8_lossy(name))
            }
            other => format!("{other:?}"),
        });
    }
    // The log starts with the checkpoint's creation, so it alone rebuilds a replica.
    assert_eq!(
        kinds,
        [
            "created t",
            "create hello",
            "overwrite world!",
            "write 5 ??",
            "delete a"
        ]
    );
}

#[test]
fn a_second_opener_sees_the_same_sections_and_attributes_must_match() {
    let (_dir, config) = config();
    let name = CheckpointName::new("shared").unwrap();
    let attrs = CreationAttributes::new(4, 16);
    let one = Segment::open(&config, &name, rw(), Some(&attrs)).unwrap();
    let (s, _) = one.create_section(Some(b"k"), Time::END, b"v1").unwrap();
    let two = Segment::open(&config, &name, OpenFlags::READ, None).unwrap();
    let found = two.lookup(b"k").unwrap().unwrap();
    one.write(s, None, b"v2").unwrap();
    let mut buf = [0u8; 16];
    let (n, _) = two.read(found, 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"v2");
    let other = CreationAttributes::new(5, 16);
    assert_eq!(
        Segment::open(&config, &name, rw(), Some(&other)).err(),
        Some(ckpt_core::error::OpenError::AttributesDiffer)
    );
    let mut seen = Vec::new();
    two.for_each_section(SectionsChosen::Any, |v| seen.push(v.id.to_vec()));
    assert_eq!(seen, [b"k".to_vec()]);
}

#[test]
fn churn_keeps_the_index_consistent() {
    let (_dir, config) = config();
    let name = CheckpointName::new("churn").unwrap();
    let seg = Segment::open(&config, &name, rw(), Some(&CreationAttributes::new(16, 8))).unwrap();
    let mut live: Vec<(u32, ckpt_shm::SectionRef)> = Vec::new();
    for i in 0u32..5000 {
        if live.len() == 16 {
            let (id, r) = live.remove((i as usize * 7) % 16);
            seg.delete_section(r).unwrap();
            assert_eq!(seg.lookup(&id.to_be_bytes()).unwrap(), None);
        }
        let (r, _) = seg
            .create_section(Some(&i.to_be_bytes()), Time::END, &i.to_le_bytes())
            .unwrap();
        live.push((i, r));
        for (id, r) in &live {
            assert_eq!(
                seg.lookup(&id.to_be_bytes()).unwrap(),
                Some(*r),
                "lost {id} at {i}"
            );
        }
    }
}

/// No lost wake-up between a consumer that sleeps on the log tail and the
/// writer that publishes (the `Doorbell` pair, which loom cannot check): a
/// sleeper woken late would wait out its 10 s timeout. Every round, the
/// consumer sleeps (no spin) while the writer publishes after a varying
/// delay, some rounds at once, as the consumer arms the doorbell.
#[test]
fn wait_wakes_on_every_publish() {
    let (_dir, config) = config();
    let name = CheckpointName::new("wake").unwrap();
    let seg = Segment::open(&config, &name, rw(), Some(&CreationAttributes::new(4, 64))).unwrap();
    let (s, _) = seg.create_section(Some(b"s"), Time::END, b"0").unwrap();
    let rounds = 300u32;
    let ready = std::sync::Barrier::new(2);
    let late = std::sync::Mutex::new(None);
    let timeout = std::time::Duration::from_secs(10);
    std::thread::scope(|t| {
        t.spawn(|| {
            for round in 0..rounds {
                ready.wait();
                if late.lock().unwrap().is_some() {
                    return;
                }
                for _ in 0..round % 7 * 50 {
                    std::hint::spin_loop();
                }
                seg.write(s, None, &round.to_le_bytes()).unwrap();
            }
        });
        for _ in 0..rounds {
            let consumer = seg.consumer(None);
            ready.wait();
            let start = std::time::Instant::now();
            let woke = consumer.wait(timeout, std::time::Duration::ZERO);
            if !woke || start.elapsed() > timeout / 2 {
                // Released at its next barrier, the writer stops.
                *late.lock().unwrap() = Some(start.elapsed());
                ready.wait();
                return;
            }
        }
    });
    let late = late.into_inner().unwrap();
    assert!(late.is_none(), "a sleeper was left asleep for {late:?}");
}

/// A consumer reads the ring in walks of up to `CONSUMER_BATCH_BYTES` and
/// hands the frames out one by one: across many walks it sees every frame
/// once, in order, each at the position `position()` said was next.
#[test]
fn a_consumer_hands_out_every_frame_of_its_walks_in_order() {
    let (_dir, config) = config();
    // A ring that holds several walks between reads.
    let config = Config {
        log_bytes: Some(1 << 20),
        ..config
    };
    let name = CheckpointName::new("walks").unwrap();
    let seg = Segment::open(&config, &name, rw(), Some(&CreationAttributes::new(4, 64))).unwrap();
    let (s, _) = seg.create_section(Some(b"s"), Time::END, b"0").unwrap();
    let mut consumer = seg.consumer(None);
    let writes = 3 * ckpt_shm::ops::consume::CONSUMER_BATCH_BYTES / 64;
    let mut seen = 0usize;
    let mut last_seq = 0;
    for round in 0..writes {
        seg.write(s, None, &(round as u64).to_le_bytes()).unwrap();
        // Reads come every 1,000 writes of 80-byte frames: more than one
        // walk holds, so each read takes several walks, the first ones cut
        // at `CONSUMER_BATCH_BYTES`.
        if round % 1000 != 999 && round + 1 != writes {
            continue;
        }
        loop {
            let next = consumer.position();
            let Some(frame) = consumer.next_frame().unwrap() else {
                break;
            };
            let (seq, data) = (frame.header.seq, frame.data.to_vec());
            assert_eq!(consumer.current_position(), next);
            assert!(consumer.position() > next);
            assert!(
                last_seq == 0 || seq == last_seq + 1,
                "{seq} after {last_seq}"
            );
            assert_eq!(data, (seen as u64).to_le_bytes());
            last_seq = seq;
            seen += 1;
        }
    }
    assert_eq!(seen, writes);
    assert_eq!(consumer.position(), seg.log_tail());
}

#[test]
fn the_environment_sets_the_ring_size_and_a_bad_one_fails_creations_clearly() {
    use std::ffi::OsString;
    let dir = tempfile::tempdir().unwrap();
    let with = |log_bytes: &str| {
        let dir = dir.path().as_os_str().to_owned();
        let log_bytes = OsString::from(log_bytes);
        Config::from_vars(move |name| match name {
            "CKPT_DIR" => Some(dir.clone()),
            "CKPT_LOG_BYTES" => Some(log_bytes.clone()),
            _ => None,
        })
    };
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let attrs = CreationAttributes::new(2, 64);
    let big = with(" 16777216 ");
    assert_eq!(big.log_bytes, Some(16 << 20));
    let name = CheckpointName::new("ring").unwrap();
    let s = Segment::open(&big, &name, rwc, Some(&attrs)).unwrap();
    assert_eq!(s.geometry().log_bytes, 16 << 20);
    // Not a power of two, too small, or not a number: no checkpoint made.
    for bad in ["100000", "4096", "lots", "0"] {
        let name = CheckpointName::new(format!("ring-{bad}")).unwrap();
        let e = Segment::open(&with(bad), &name, rwc, Some(&attrs)).err();
        assert_eq!(e, Some(ckpt_core::error::OpenError::NoResources), "{bad:?}");
    }
    // Unset, or set to nothing (`CKPT_LOG_BYTES=`): sized from the
    // attributes.
    assert_eq!(Config::from_vars(|_| None).log_bytes, None);
    assert_eq!(with("").log_bytes, None);
    assert_eq!(with("  ").log_bytes, None);
    let name = CheckpointName::new("ring-unset").unwrap();
    assert!(Segment::open(&with(""), &name, rwc, Some(&attrs)).is_ok());
}
