//! A replication link under a steady load, for profiles:
//!
//! ```text
//! cargo build --release -p ckpt-benches --bin repl_loop
//! target/release/repl_loop 2000000            # prints updates/s
//! target/release/repl_loop 50000 --size 65536  # 64 KiB sections
//! perf record -g target/release/repl_loop 2000000
//! target/release/repl_loop --resync 256        # a 256 MiB full resync
//! ```
//!
//! A primary (asynchronous, one 64 B section, or `--size` bytes) and its replica in two scratch
//! directories, linked by `ckpt::replication::ship`/`follow` over loopback
//! (io_uring where the kernel allows it). The writer writes in bursts the
//! ring can hold and waits for the replica between bursts; it prints the
//! updates per second over the whole run. With `--resync MIB`, the primary
//! holds MIB sections of 1 MiB, whose frames the ring no longer holds, and
//! a new replica is rebuilt by the snapshot; it prints how long until the
//! replica holds the primary's last frame. `ckpt bench` is the measurement
//! with baselines; this is the profiling harness.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use ckpt::replication::{follow, ship, LinkOptions};
use ckpt_core::{CheckpointName, CreationAttributes, CreationFlags, OpenFlags, Time, UpdateMode};
use ckpt_shm::{Config, Segment};
use ckpt_transport::{Auto, Backend, Choice, Listener};

/// Bytes written per burst (16,000 updates of 64 B).
const BURST_BYTES: u64 = 1 << 20;
/// The largest section `--size` takes.
const SIZE_MAX: usize = 1 << 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (resync, total, size) = match args.as_slice() {
        [flag, n] if flag == "--resync" => (true, n.parse().ok(), Some(64)),
        [n] => (false, n.parse().ok(), Some(64)),
        [n, flag, size] if flag == "--size" => (false, n.parse().ok(), size.parse().ok()),
        _ => (false, None, None),
    };
    let (Some(total @ 1..), Some(size @ 1..=SIZE_MAX)) = (total.map(|n: u64| n), size) else {
        eprintln!(
            "usage: repl_loop UPDATES [--size BYTES (at most 1 MiB)] | repl_loop --resync MIB"
        );
        std::process::exit(2);
    };
    let (a, b) = (scratch("primary"), scratch("replica"));
    let config = |dir: &std::path::Path| Config {
        log_bytes: Some(4 << 20),
        ..Config::with_dir(dir)
    };
    let name = CheckpointName::new("repl-loop").expect("a name");
    let attrs = CreationAttributes {
        flags: CreationFlags::new(UpdateMode::ActiveReplica, true),
        ..if resync {
            CreationAttributes {
                section_id_bytes_max: 16,
                ..CreationAttributes::new(total as u32 + 1, 1 << 20)
            }
        } else {
            CreationAttributes::new(4, size as u64)
        }
    };
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let primary = Segment::open(&config(&a), &name, rwc, Some(&attrs)).expect("the primary");
    primary.set_active_replica(0).expect("active");
    let (section, _) = primary
        .create_section(Some(b"s64"), Time::END, &vec![0; size])
        .expect("a section");
    if resync {
        let mut data = vec![0u8; 1 << 20];
        for i in 0..total {
            data.fill(i as u8);
            primary
                .create_section(Some(&i.to_be_bytes()), Time::END, &data)
                .unwrap_or_else(|e| panic!("1 MiB section {i}: {e:?}"));
        }
    }
    let (backend, _) = Auto::select(Choice::Auto).expect("a backend");
    eprintln!("transport: {}", backend.name());
    let opts = LinkOptions::default();
    let stop = AtomicBool::new(false);
    let listener = backend
        .listen("127.0.0.1:0".parse().unwrap(), opts.max_message)
        .expect("listen");
    let addr = listener.local_addr().unwrap();
    let replica_config = config(&b);
    if resync {
        eprintln!("resync starts");
    }
    let linked = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let (mut conn, _) = listener.accept(Duration::from_secs(5)).unwrap().unwrap();
            ship(&primary, 2, true, &mut conn, &opts, &stop).expect("ship");
        });
        s.spawn(|| {
            let mut conn = backend
                .connect(addr, Duration::from_secs(5), opts.max_message)
                .unwrap();
            follow(&replica_config, &name, &mut conn, &opts, &stop).expect("follow");
        });
        let replica = loop {
            if let Ok(r) = Segment::open(&replica_config, &name, OpenFlags::READ, None) {
                break r;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if resync {
            let start = linked;
            while replica.last_seq() < primary.last_seq() {
                std::thread::sleep(Duration::from_micros(200));
            }
            let took = start.elapsed();
            println!(
                "{total} MiB resynced in {:.3} s ({:.2} GB/s)",
                took.as_secs_f64(),
                total as f64 * 1048576.0 / took.as_secs_f64() / 1e9
            );
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let data = vec![0x5Au8; size];
        let burst = (BURST_BYTES / size as u64).clamp(16, 16_000);
        let start = Instant::now();
        let mut written = 0;
        while written < total {
            for _ in 0..burst.min(total - written) {
                primary.write(section, None, &data).expect("write");
                written += 1;
            }
            while replica.last_seq() < primary.last_seq() {
                std::thread::sleep(Duration::from_micros(20));
            }
        }
        let took = start.elapsed();
        println!(
            "{written} updates in {:.3} s: {:.2} M updates/s ({:.0} ns each)",
            took.as_secs_f64(),
            written as f64 / took.as_secs_f64() / 1e6,
            took.as_nanos() as f64 / written as f64
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

/// A fresh directory under /dev/shm for this run.
fn scratch(what: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(format!(
        "/dev/shm/ckpt-repl-loop-{}-{what}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}
