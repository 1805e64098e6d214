//! Synchronous writers wait for their replicas' acknowledgements; asynchronous
//! ones never do. The acknowledging replica here is a local test consumer
//! (the replication issue wires the same words to the network).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ckpt::{
    Config, CreationAttributes, CreationFlags, OpenFlags, Service, SynchronizeError, Time,
    UpdateMode, WriteError,
};

const REPLICA: u32 = 1;

fn service(ack_timeout: Duration) -> (tempfile::TempDir, Service) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        ack_timeout,
        ..Config::with_dir(dir.path())
    };
    (dir, Service::with_config(config))
}

fn attrs(mode: UpdateMode) -> CreationAttributes {
    CreationAttributes {
        flags: CreationFlags::new(mode, false),
        ..CreationAttributes::new(4, 64)
    }
}

fn rwc() -> OpenFlags {
    OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE
}

#[test]
fn a_synchronous_write_returns_once_every_replica_acknowledged_it() {
    let (_d, s) = service(Duration::from_secs(10));
    let ck = s
        .open("sync", rwc(), Some(&attrs(UpdateMode::AllReplicas)))
        .unwrap();
    let seg = ck.segment();
    seg.register_replica(REPLICA, seg.last_seq()).unwrap();
    let stop = AtomicBool::new(false);
    // The replica follows the log from here.
    let mut consumer = seg.consumer(None);
    std::thread::scope(|scope| {
        // Stops the replica even if an assertion below fails.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(&stop);
        // The replica: acknowledges each frame 2 ms after it sees it.
        let stop = &stop;
        let replica = scope.spawn(move || {
            let mut acked = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if !consumer.wait(Duration::from_millis(20), Duration::ZERO) {
                    continue;
                }
                while let Some(frame) = consumer.next_frame().unwrap() {
                    std::thread::sleep(Duration::from_millis(2));
                    assert!(seg.acknowledge(REPLICA, frame.header.seq));
                    acked += 1;
                }
            }
            acked
        });
        let k = ck.create_section(b"k", Time::END, b"0").unwrap();
        for i in 1..=20u32 {
            let start = Instant::now();
            k.overwrite(&i.to_be_bytes()).unwrap();
            // It returned only once the replica held this very write.
            assert!(seg.acknowledged(ckpt_shm::ack::Need::All, seg.last_seq()));
            assert!(start.elapsed() >= Duration::from_millis(2));
        }
        drop(_stop);
        assert!(replica.join().unwrap() >= 21);
    });
}

#[test]
fn a_synchronous_write_times_out_when_a_replica_stays_silent_and_is_still_made() {
    let (_d, s) = service(Duration::from_millis(50));
    let ck = s
        .open("silent", rwc(), Some(&attrs(UpdateMode::AllReplicas)))
        .unwrap();
    let k = ck.create_section(b"k", Time::END, b"before").unwrap();
    ck.segment()
        .register_replica(REPLICA, ck.segment().last_seq())
        .unwrap();
    let start = Instant::now();
    assert_eq!(k.overwrite(b"after"), Err(WriteError::Timeout));
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(ck.read_section(b"k").unwrap(), b"after");
    // The replica leaves the cluster: writers stop waiting for it.
    ck.segment().unregister_replica(REPLICA);
    assert_eq!(k.overwrite(b"again"), Ok(()));
}

#[test]
fn asynchronous_writers_never_wait_and_synchronize_does() {
    let (_d, s) = service(Duration::from_secs(10));
    let ck = s
        .open("async", rwc(), Some(&attrs(UpdateMode::ActiveReplica)))
        .unwrap();
    let k = ck.create_section(b"k", Time::END, b"").unwrap();
    ck.segment().register_replica(REPLICA, 0).unwrap();
    let start = Instant::now();
    for i in 0..1000u32 {
        k.overwrite(&i.to_be_bytes()).unwrap();
    }
    assert!(start.elapsed() < Duration::from_secs(5), "a write waited");
    // synchronize waits for the replica, up to its timeout.
    assert_eq!(
        ck.synchronize(Time::from_ns(30_000_000)),
        Err(SynchronizeError::Timeout)
    );
    let seg = ck.segment();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            seg.acknowledge(REPLICA, seg.last_seq());
        });
        assert_eq!(ck.synchronize(Time::from_secs(10)), Ok(()));
    });
}
