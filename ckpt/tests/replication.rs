//! Replication links over loopback TCP between two directories (two "hosts"):
//! a new replica is created from the primary's creation frame and follows
//! its writes byte for byte; a synchronous writer returns only once the
//! replica holds its write; a replica that reconnects goes on from what it
//! holds; a replica behind the primary's ring, or of another incarnation, is
//! rebuilt from a snapshot while the writer goes on.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use ckpt::replication::{follow, ship, Ended, LinkEvent, LinkOptions};
use ckpt::{
    CheckpointName, Config, CreationAttributes, CreationFlags, OpenFlags, Service, Time, UpdateMode,
};
use ckpt_transport::{Auto, Backend, Listener};

/// io_uring where the kernel allows it, else plain sockets.
fn backend() -> Auto {
    // CKPT_TRANSPORT picks another (CI runs these once more with
    // io_uring_multishot).
    Auto::from_env_noted()
}

const WAIT: Duration = Duration::from_secs(10);
const REPLICA_NODE: u32 = 2;

fn attrs(mode: UpdateMode) -> CreationAttributes {
    CreationAttributes {
        flags: CreationFlags::new(mode, mode.is_asynchronous()),
        // A 512 KiB ring: a few hundred 4 KiB writes lap it.
        ..CreationAttributes::new(16, 4096)
    }
}

/// Creates checkpoint `name` in `dir` in `mode`, this host its active
/// replica (asynchronous modes).
fn open_primary(dir: &std::path::Path, name: &str, mode: UpdateMode) -> ckpt::Checkpoint {
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let c = Service::with_config(Config::with_dir(dir))
        .open(name, rwc, Some(&attrs(mode)))
        .unwrap();
    if mode.is_asynchronous() {
        c.set_active_replica().unwrap();
    }
    c
}

/// The sections of the checkpoint `name` in `dir`, read through the API.
fn sections(dir: &std::path::Path, name: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let service = Service::with_config(Config::with_dir(dir));
    let c = service
        .open(name, OpenFlags::READ, None)
        .expect("open to read");
    let mut out: Vec<_> = c
        .sections(ckpt::SectionsChosen::Any)
        .expect("iterate")
        .map(|d| {
            let id = d.id.as_bytes().to_vec();
            let data = c.read_section(&id).expect("read");
            (id, data)
        })
        .collect();
    out.sort();
    out
}

/// A listener on a free loopback port for messages of `opts`' limit, and
/// its address.
fn listen(opts: &LinkOptions) -> (<Auto as Backend>::Listener, SocketAddr) {
    let listener = backend()
        .listen("127.0.0.1:0".parse().unwrap(), opts.max_message)
        .unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Ships `primary` to the replica on [`REPLICA_NODE`] that connects to
/// `listener` (placed there), until the link ends or `stop` is set.
fn ship_accepted(
    listener: &<Auto as Backend>::Listener,
    primary: &ckpt::Checkpoint,
    opts: &LinkOptions,
    stop: &AtomicBool,
) -> Result<Ended, ckpt::replication::ReplicationError> {
    let (mut conn, _) = listener
        .accept(WAIT)
        .unwrap()
        .expect("the replica connects");
    ship(primary.segment(), REPLICA_NODE, true, &mut conn, opts, stop)
}

/// Runs `body` while a shipper (primary side) and a follower (replica side)
/// run a link between the two directories; returns how each ended.
fn with_link(
    primary: &ckpt::Checkpoint,
    replica_dir: &std::path::Path,
    name: &str,
    body: impl FnOnce(),
) -> (Ended, Ended, u64) {
    with_link_opts(LinkOptions::default(), primary, replica_dir, name, body)
}

/// [`with_link`] with these link options.
fn with_link_opts(
    opts: LinkOptions,
    primary: &ckpt::Checkpoint,
    replica_dir: &std::path::Path,
    name: &str,
    body: impl FnOnce(),
) -> (Ended, Ended, u64) {
    let stop = AtomicBool::new(false);
    let (listener, addr) = listen(&opts);
    let name = CheckpointName::new(name).unwrap();
    let replica_config = Config::with_dir(replica_dir);
    std::thread::scope(|s| {
        let shipper = s.spawn(|| ship_accepted(&listener, primary, &opts, &stop));
        let follower = s.spawn(|| {
            let mut conn = backend().connect(addr, WAIT, opts.max_message).unwrap();
            follow(&replica_config, &name, &mut conn, &opts, &stop)
        });
        // Whatever happens below, the link threads stop (a failed assertion
        // would otherwise wait for them forever).
        struct StopOnDrop<'a>(&'a AtomicBool);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let _stop = StopOnDrop(&stop);
        body();
        // Until the replica holds everything the primary logged.
        let want = (
            primary.segment().incarnation(),
            primary.segment().last_seq(),
        );
        let deadline = Instant::now() + WAIT;
        let service = Service::with_config(Config::with_dir(replica_dir));
        loop {
            let (incarnation, held) = service
                .open(name.as_bytes(), OpenFlags::READ, None)
                .map(|c| (c.segment().incarnation(), c.segment().last_seq()))
                .unwrap_or((0, 0));
            if (incarnation, held) == want {
                break;
            }
            if Instant::now() > deadline || shipper.is_finished() || follower.is_finished() {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let s = shipper.join().unwrap();
                let f = follower.join().unwrap().map(|(e, _)| e);
                panic!(
                    "replica holds {held} of incarnation {incarnation:x}, want {want:x?}; \
                     shipper: {s:?}; follower: {f:?}"
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let shipped = shipper.join().unwrap().expect("the shipper ends cleanly");
        let (followed, replica) = follower.join().unwrap().expect("the follower ends cleanly");
        let replica = replica.expect("a replica was created");
        assert!(replica.is_replica());
        (shipped, followed, replica.last_seq())
    })
}

#[test]
fn a_new_replica_follows_the_primary_byte_for_byte() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_async";
    let primary = open_primary(a.path(), name, UpdateMode::ActiveReplica);
    let (shipped, followed, held) = with_link(&primary, b.path(), name, || {
        for i in 0..8u32 {
            primary
                .create_section(format!("s{i}").as_bytes(), Time::END, &i.to_le_bytes())
                .unwrap();
        }
        for n in 0..1000u32 {
            let id = format!("s{}", n % 8);
            let data = vec![(n % 251) as u8; (n % 200) as usize + 1];
            primary.overwrite(id.as_bytes(), &data).unwrap();
        }
        primary.delete_section(b"s7").unwrap();
        primary
            .write(&[ckpt::WriteVec {
                id: b"s1",
                offset: 2,
                data: b"xyz",
            }])
            .unwrap();
    });
    // Each end stopped, or saw the other close first.
    for end in [shipped, followed] {
        assert!(matches!(end, Ended::Stopped | Ended::PeerClosed), "{end:?}");
    }
    assert_eq!(held, primary.segment().last_seq());
    assert_eq!(sections(b.path(), name), sections(a.path(), name));
    assert_eq!(sections(b.path(), name).len(), 7);
}

#[test]
fn a_synchronous_write_returns_once_the_replica_holds_it() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_sync";
    let primary = open_primary(a.path(), name, UpdateMode::AllReplicas);
    primary
        .create_section(b"seq", Time::END, &0u64.to_le_bytes())
        .unwrap();
    let replica_service = Service::with_config(Config::with_dir(b.path()));
    with_link(&primary, b.path(), name, || {
        // Until the link is up and the replica registered: it caught up.
        let deadline = Instant::now() + WAIT;
        while replica_service.open(name, OpenFlags::READ, None).is_err() {
            assert!(Instant::now() < deadline, "no replica");
            std::thread::sleep(Duration::from_millis(2));
        }
        let replica = replica_service.open(name, OpenFlags::READ, None).unwrap();
        for n in 1..=300u64 {
            primary.overwrite(b"seq", &n.to_le_bytes()).unwrap();
            // Returned: the replica holds it (WR_ALL_REPLICAS).
            assert!(
                replica.segment().last_seq() >= primary.segment().last_seq(),
                "write {n}"
            );
            assert_eq!(replica.read_section(b"seq").unwrap(), n.to_le_bytes());
        }
    });
}

#[test]
fn a_replica_that_reconnects_goes_on_from_what_it_holds() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_again";
    let primary = open_primary(a.path(), name, UpdateMode::ActiveReplica);
    primary.create_section(b"k", Time::END, b"first").unwrap();
    let (_, _, first) = with_link(&primary, b.path(), name, || {});
    // Written while no link runs.
    for n in 0..100u32 {
        primary.overwrite(b"k", &n.to_le_bytes()).unwrap();
    }
    let (_, _, second) = with_link(&primary, b.path(), name, || {});
    assert_eq!(second, first + 100);
    assert_eq!(sections(b.path(), name), sections(a.path(), name));
}

#[test]
fn a_replica_behind_the_ring_is_rebuilt_from_a_snapshot_while_the_writer_goes_on() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_behind";
    // A 4 MiB ring: the writer below cannot lap it while the copy is taken
    // and sent (a ring the writer laps faster than a copy travels closes
    // the link: "the log ring is too small for this link").
    let config = Config {
        log_bytes: Some(4 << 20),
        ..Config::with_dir(a.path())
    };
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let primary = Service::with_config(config)
        .open(name, rwc, Some(&attrs(UpdateMode::ActiveReplica)))
        .unwrap();
    primary.set_active_replica().unwrap();
    for k in 0..12u8 {
        primary
            .create_section(&[b'k', k], Time::END, &[k; 100])
            .unwrap();
    }
    primary.delete_section(b"k\x03").unwrap();
    primary
        .set_expiration(b"k\x04", Time(i64::MAX - 1))
        .unwrap();
    // Twice the ring: frame 1 is gone from it.
    for n in 0..2048u32 {
        primary.overwrite(b"k\x00", &[n as u8; 4096]).unwrap();
    }
    // The writer goes on while the copy is taken and sent: overwrites,
    // writes at offsets, creates and deletes. Both ends report the snapshot.
    static EVENTS: std::sync::Mutex<Vec<LinkEvent>> = std::sync::Mutex::new(Vec::new());
    let opts = LinkOptions {
        on_event: Some(|e| EVENTS.lock().unwrap().push(*e)),
        ..LinkOptions::default()
    };
    let (shipped, followed, held) = with_link_opts(opts, &primary, b.path(), name, || {
        for n in 0..3000u32 {
            if n % 16 == 0 {
                // Slow enough that the copy is taken and sent meanwhile.
                std::thread::sleep(Duration::from_micros(100));
            }
            let k = [b'k', (n % 12) as u8];
            match n % 7 {
                0 => {
                    let _ = primary.delete_section(&[b'n', (n % 5) as u8]);
                }
                1 => {
                    let _ =
                        primary.create_section(&[b'n', (n % 5) as u8], Time::END, &n.to_le_bytes());
                }
                2 => {
                    let at = ckpt::WriteVec {
                        id: &k,
                        offset: 2,
                        data: &n.to_be_bytes(),
                    };
                    let _ = primary.write(&[at]);
                }
                _ => {
                    let _ = primary.overwrite(&k, &[n as u8; 300]);
                }
            }
        }
    });
    // (Either end may stop first and close the connection under the
    // other: a close, or a reset, which is read as the same.)
    assert!(
        matches!(shipped, Ended::Stopped | Ended::PeerClosed),
        "{shipped:?}"
    );
    assert!(
        matches!(followed, Ended::Stopped | Ended::PeerClosed),
        "{followed:?}"
    );
    assert_eq!(held, primary.segment().last_seq());
    assert_eq!(sections(b.path(), name), sections(a.path(), name));
    let events = std::mem::take(&mut *EVENTS.lock().unwrap());
    let sent = events.iter().find_map(|e| match *e {
        LinkEvent::SnapshotSent { start, sections } => Some((start, sections)),
        _ => None,
    });
    let installed = events.iter().find_map(|e| match *e {
        LinkEvent::SnapshotInstalled { start, sections } => Some((start, sections)),
        _ => None,
    });
    assert!(sent.is_some() && sent == installed, "{events:?}");
    // The replica goes on from what it holds after the install (no second
    // snapshot: a reader that has it open sees the new writes).
    let reader = Service::with_config(Config::with_dir(b.path()))
        .open(name, OpenFlags::READ, None)
        .unwrap();
    for n in 0..50u32 {
        primary.overwrite(b"k\x01", &n.to_le_bytes()).unwrap();
    }
    let (_, _, again) = with_link(&primary, b.path(), name, || {});
    assert_eq!(again, held + 50);
    assert_eq!(reader.read_section(b"k\x01").unwrap(), 49u32.to_le_bytes());
    assert_eq!(sections(b.path(), name), sections(a.path(), name));
}

/// Two directories (the primary's host, the replica's), then two handles:
/// (the primary, the standby) or as the function says.
type TwoHosts = (
    tempfile::TempDir,
    tempfile::TempDir,
    ckpt::Checkpoint,
    ckpt::Checkpoint,
);

/// A primary of `name` (asynchronous, active here) in a new directory,
/// with sections `lap` (empty, for [`lap`]) and `k` (`k`), replicated into
/// another directory, where a standby opened it (`flags`).
fn standby_on_a_replica(name: &str, k: &[u8], flags: OpenFlags) -> TwoHosts {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = open_primary(a.path(), name, UpdateMode::ActiveReplica);
    primary.create_section(b"lap", Time::END, b"").unwrap();
    primary.create_section(b"k", Time::END, k).unwrap();
    with_link(&primary, b.path(), name, || {});
    let standby = Service::with_config(Config::with_dir(b.path()))
        .open(name, flags, None)
        .unwrap();
    (a, b, primary, standby)
}

#[test]
fn handles_open_on_a_replica_move_with_it_when_a_snapshot_rebuilds_it() {
    let name = "safCkpt=repl_moved";
    let rw = OpenFlags::READ | OpenFlags::WRITE;
    let (_a, b, primary, standby) = standby_on_a_replica(name, b"before", rw);
    primary.create_section(b"gone", Time::END, b"soon").unwrap();
    with_link(&primary, b.path(), name, || {});
    // A standby on the replica's host: a checkpoint handle, a section
    // handle, a watcher, an iteration begun, and the file as it is now.
    let k = standby.section(b"k").unwrap();
    let gone = standby.section(b"gone").unwrap();
    let mut watcher = standby.watch();
    let mut cursor = standby.section_cursor(ckpt::SectionsChosen::Any).unwrap();
    let first = standby.next_section(&mut cursor).unwrap();
    let old_file = ckpt_shm::Segment::open(
        &Config::with_dir(b.path()),
        &CheckpointName::new(name).unwrap(),
        OpenFlags::READ,
        None,
    )
    .unwrap();
    assert_eq!(k.read_to_vec(), b"before");
    // While no link runs, the primary laps its ring: the replica is rebuilt
    // from a snapshot, into a new file.
    lap(&primary);
    primary.overwrite(b"k", b"after").unwrap();
    primary.delete_section(b"gone").unwrap();
    with_link(&primary, b.path(), name, || {});
    assert!(old_file.is_superseded());
    // Every handle moved with it.
    assert!(!standby.segment().is_superseded());
    assert_eq!(standby.read_section(b"k").unwrap(), b"after");
    assert_eq!(k.read_to_vec(), b"after");
    assert_eq!(
        k.version().unwrap(),
        primary.section(b"k").unwrap().version().unwrap()
    );
    assert_eq!(gone.version(), Err(ckpt::ReadError::NotExist));
    assert!(watcher.wait(Duration::ZERO, Duration::ZERO));
    assert!(matches!(
        watcher.next_change(),
        Err(ckpt::WatchError::Lagged { .. })
    ));
    let snapshot = watcher.resync().unwrap();
    let k_now = snapshot.sections.iter().find(|s| s.id == b"k").unwrap();
    assert_eq!(k_now.data, b"after");
    // The iteration goes on where it began: each section once.
    let rest: Vec<_> = std::iter::from_fn(|| standby.next_section(&mut cursor)).collect();
    assert_eq!(rest.len() + 1, 3, "{first:?} then {rest:?}");
    // Later changes reach the watcher and the reads.
    with_link(&primary, b.path(), name, || {
        primary.overwrite(b"k", b"later").unwrap();
    });
    let change = watcher.next_change().unwrap().expect("the overwrite");
    assert_eq!(
        change.mutation,
        ckpt::Mutation::Overwrite {
            id: b"k",
            data: b"later"
        }
    );
    assert_eq!(k.read_to_vec(), b"later");
    // The primary's host dies: the standby takes over on the new file, and
    // writes it.
    drop(primary);
    standby.set_active_replica().unwrap();
    assert!(!standby.segment().is_replica());
    k.overwrite(b"mine").unwrap();
    assert_eq!(standby.read_section(b"k").unwrap(), b"mine");
    assert!(old_file.is_replica());
}

/// Laps the primary's ring so that the next link rebuilds the replica.
fn lap(primary: &ckpt::Checkpoint) {
    let ring = primary.segment().geometry().log_bytes;
    for n in 0..(ring / 4096) * 2 {
        primary.overwrite(b"lap", &[n as u8; 4096]).unwrap();
    }
}

/// A handle left on a superseded file of an earlier incarnation (it never
/// moves) has a watcher whose `wait` should still sleep when nothing comes.
#[test]
fn a_watcher_left_on_an_earlier_incarnation_sleeps_through_its_waits() {
    let name = "safCkpt=repl_stale_watch";
    let (_a, _b, standby, _second) = standby_left_on_an_earlier_incarnation(name);
    let mut watcher = standby.watch();
    // A tracker's loop (ffi/src/library.rs follow()): wait, then drain.
    let (start, mut spurious) = (Instant::now(), 0u64);
    while start.elapsed() < Duration::from_millis(300) {
        if watcher.wait(Duration::from_millis(100), Duration::ZERO) {
            if let Ok(None) = watcher.next_change() {
                spurious += 1;
            }
        }
    }
    assert!(
        spurious < 10,
        "wait returned true {spurious} times with no change"
    );
}

/// `watch_from` a position taken before the handle moved (as the C
/// library's `track` does before its thread starts) must not miss changes.
#[test]
fn a_watcher_from_a_position_taken_before_a_rebuild_misses_nothing() {
    let name = "safCkpt=repl_watch_from";
    let (_a, b, primary, standby) = standby_on_a_replica(name, b"before", OpenFlags::READ);
    let from = standby.watch().position();
    lap(&primary);
    with_link(&primary, b.path(), name, || {});
    let mut watcher = standby.watch_from(from);
    with_link(&primary, b.path(), name, || {
        primary.overwrite(b"k", b"later").unwrap();
    });
    assert_eq!(standby.read_section(b"k").unwrap(), b"later");
    let got = watcher.next_change().map(|c| c.map(|c| c.seq));
    assert!(
        !matches!(got, Ok(None)),
        "the watcher made after the move from {from:?} sees no change: {got:?}"
    );
}

/// A section handle whose section was deleted (and one of the same id made
/// again) finds no section, whether or not a rebuild came in between.
#[test]
fn a_section_handle_never_takes_a_namesake_for_its_section_through_a_rebuild() {
    let name = "safCkpt=repl_namesake";
    let (_a, b, primary, standby) = standby_on_a_replica(name, b"first", OpenFlags::READ);
    let k = standby.section(b"k").unwrap();
    // Without a rebuild: deleted and made again, the handle finds nothing.
    with_link(&primary, b.path(), name, || {
        primary.delete_section(b"k").unwrap();
        primary.create_section(b"k", Time::END, b"second").unwrap();
    });
    assert_eq!(k.version(), Err(ckpt::ReadError::NotExist));
    // The same through a rebuild.
    let k2 = standby.section(b"k").unwrap();
    primary.delete_section(b"k").unwrap();
    primary.create_section(b"k", Time::END, b"third").unwrap();
    lap(&primary);
    with_link(&primary, b.path(), name, || {});
    assert!(!standby.segment().is_superseded());
    assert_eq!(
        k2.version(),
        Err(ckpt::ReadError::NotExist),
        "k2 resurrected"
    );
}

/// A handle left on an earlier incarnation's superseded file does not keep
/// the new incarnation from expiring (it looks at the new file without
/// registering as its opener, once).
#[test]
fn a_handle_left_on_an_earlier_incarnation_does_not_hold_off_the_new_ones_retention() {
    retention_with_stale_handle(true);
    // The same with the old handle left unused: the control.
    retention_with_stale_handle(false);
}

fn retention_with_stale_handle(used: bool) {
    let name = if used {
        "safCkpt=repl_stale_used"
    } else {
        "safCkpt=repl_stale_unused"
    };
    let (_a, b, standby, second) = standby_left_on_an_earlier_incarnation(name);
    drop(second);
    // The new incarnation's standby takes over, sets a short retention and
    // closes: nothing has it open.
    let service = Service::with_config(Config::with_dir(b.path()));
    let rebuilt = service
        .open(name, OpenFlags::READ | OpenFlags::WRITE, None)
        .unwrap();
    rebuilt.set_active_replica().unwrap();
    rebuilt.set_retention(Time(300_000_000)).unwrap();
    drop(rebuilt);
    // The old incarnation's handle is used now and then.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1200) {
        if used {
            let _ = standby.read_section(b"k");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        service.open(name, OpenFlags::READ, None).is_err(),
        "retention of 300 ms has not run out after 1.2 s with no opener"
    );
}

#[test]
fn a_name_created_on_two_nodes_at_once_becomes_one_checkpoint() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_twice";
    // As csa103's processes do, each node's opens with CREATE before
    // either daemon knows of the other's: two incarnations. Node 1's is the
    // active's (its active replica set, and written).
    let active = open_primary(a.path(), name, UpdateMode::ActiveReplica);
    active.create_section(b"state", Time::END, b"1").unwrap();
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let standby = Service::with_config(Config::with_dir(b.path()))
        .open(name, rwc, Some(&attrs(UpdateMode::ActiveReplica)))
        .unwrap();
    let unset = standby.create_section(b"other", Time::END, b"");
    assert!(unset.is_err(), "no active replica on the standby's copy");
    assert_ne!(
        standby.segment().incarnation(),
        active.segment().incarnation()
    );
    let mut watcher = standby.watch();
    // Offered to node 1, the standby's copy (unwritten) is outranked:
    // refused.
    let (_, followed) = one_link(&standby, a.path(), name);
    let refused = followed.err().expect("refused");
    assert!(
        matches!(refused, LinkError::HeldAsPrimary { .. }),
        "{refused}"
    );
    assert!(!active.segment().is_replica());
    // Offered to node 2, the active's copy outranks the standby's, which
    // yields and is rebuilt from it; the standby's handles move to it.
    with_link(&active, b.path(), name, || {});
    assert_eq!(
        standby.segment().incarnation(),
        active.segment().incarnation()
    );
    assert_eq!(standby.read_section(b"state").unwrap(), b"1");
    assert!(matches!(
        watcher.next_change(),
        Err(ckpt::WatchError::Lagged { .. })
    ));
    watcher.resync().unwrap();
    with_link(&active, b.path(), name, || {
        active.overwrite(b"state", b"2").unwrap();
    });
    assert_eq!(standby.read_section(b"state").unwrap(), b"2");
    let change = watcher.next_change().unwrap().expect("the overwrite");
    assert_eq!(change.seq, active.segment().last_seq());
    // The active's node dies: the standby takes over with its state.
    drop(active);
    standby.set_active_replica().unwrap();
    standby.overwrite(b"state", b"3").unwrap();
    assert_eq!(standby.read_section(b"state").unwrap(), b"3");
}

/// A section handle's whole data, read through it.
trait ReadToVec {
    fn read_to_vec(&self) -> Vec<u8>;
}

impl ReadToVec for ckpt::Section<'_> {
    fn read_to_vec(&self) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let n = self.read(0, &mut buf).unwrap();
        buf[..n].to_vec()
    }
}

#[test]
fn a_section_larger_than_a_message_travels_in_pieces() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_pieces";
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let big = CreationAttributes {
        flags: CreationFlags::new(UpdateMode::ActiveReplica, true),
        ..CreationAttributes::new(4, 1 << 20)
    };
    let primary = Service::with_config(Config::with_dir(a.path()))
        .open(name, rwc, Some(&big))
        .unwrap();
    primary.set_active_replica().unwrap();
    let data: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    primary.create_section(b"big", Time::END, &data).unwrap();
    primary.create_section(b"small", Time::END, b"s").unwrap();
    // Lap the ring so that the replica needs a snapshot.
    let ring = primary.segment().geometry().log_bytes;
    for n in 0..(ring / 4096) * 2 {
        primary.overwrite(b"small", &[n as u8; 4096]).unwrap();
    }
    let opts = LinkOptions {
        batch_bytes: 64 << 10,
        ..LinkOptions::default()
    };
    with_link_opts(opts, &primary, b.path(), name, || {});
    assert_eq!(sections(b.path(), name), sections(a.path(), name));
}

type LinkError = ckpt::replication::ReplicationError;
/// How a follower ended, and its replica.
type Followed = Result<(Ended, Option<ckpt_shm::Segment>), LinkError>;

/// Runs one link between `primary` and the replica directory until the
/// shipper ends (or `WAIT` passes: a shipper that never ends is stopped, and
/// its test fails); returns how each end finished.
fn one_link(
    primary: &ckpt::Checkpoint,
    replica_dir: &std::path::Path,
    name: &str,
) -> (Result<Ended, LinkError>, Followed) {
    let opts = LinkOptions::default();
    one_link_opts(primary, replica_dir, name, (&opts, &opts))
}

/// [`one_link`] with these options for the shipper and the follower.
fn one_link_opts(
    primary: &ckpt::Checkpoint,
    replica_dir: &std::path::Path,
    name: &str,
    (opts, follow_opts): (&LinkOptions, &LinkOptions),
) -> (Result<Ended, LinkError>, Followed) {
    let stop = AtomicBool::new(false);
    let (listener, addr) = listen(opts);
    let name = CheckpointName::new(name).unwrap();
    let config = Config::with_dir(replica_dir);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let follower = s.spawn(|| {
            let mut conn = backend().connect(addr, WAIT, opts.max_message).unwrap();
            follow(&config, &name, &mut conn, follow_opts, &stop)
        });
        let done = &done;
        s.spawn(|| {
            let start = Instant::now();
            while !done.load(std::sync::atomic::Ordering::Relaxed) && start.elapsed() < WAIT {
                std::thread::sleep(Duration::from_millis(10));
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        // Its connection is closed once it returns: the follower ends.
        let shipped = ship_accepted(&listener, primary, opts, &stop);
        let followed = follower.join().unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (shipped, followed)
    })
}

/// A primary of `name` in `dir` (asynchronous, active here) for up to 2,100
/// sections of up to 4 KiB, with a ring of `log_bytes`.
fn wide_primary(dir: &std::path::Path, name: &str, log_bytes: u64) -> ckpt::Checkpoint {
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let attrs = CreationAttributes {
        flags: CreationFlags::new(UpdateMode::ActiveReplica, true),
        ..CreationAttributes::new(2100, 4096)
    };
    let primary = Service::with_config(Config {
        log_bytes: Some(log_bytes),
        ..Config::with_dir(dir)
    })
    .open(name, rwc, Some(&attrs))
    .unwrap();
    primary.set_active_replica().unwrap();
    primary
}

/// Creates sections `f0`..`f{count - 1}` of 4 KiB of `byte` each.
fn fill(primary: &ckpt::Checkpoint, count: u32, byte: u8) {
    for n in 0..count {
        let id = format!("f{n}");
        primary
            .create_section(id.as_bytes(), Time::END, &[byte; 4096])
            .unwrap();
    }
}

/// A shipper whose snapshots the writer keeps overtaking (a ring far too
/// small for the link) closes the link, and says why: the replica's end
/// ends with the same reason, which its operator sees, not a bare "the
/// peer closed the connection".
#[test]
fn a_link_closed_for_overtaken_snapshots_tells_the_replica_why() {
    use ckpt_core::repl::CloseReason;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_overtaken";
    // The smallest ring (64 KiB): sixteen 4 KiB writes lap it, and a copy
    // of 2 MiB of sections takes far longer.
    let primary = wide_primary(a.path(), name, 64 << 10);
    fill(&primary, 512, 0);
    let writing = AtomicBool::new(true);
    let (shipped, followed) = std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = 0u8;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                n = n.wrapping_add(1);
                primary.overwrite(b"f0", &[n; 4096]).unwrap();
            }
        });
        let ended = one_link(&primary, b.path(), name);
        writing.store(false, std::sync::atomic::Ordering::Relaxed);
        ended
    });
    let overtaken = CloseReason::SnapshotsOvertaken;
    assert!(
        matches!(shipped, Ok(Ended::Closed(r)) if r == overtaken),
        "{shipped:?}"
    );
    let followed = followed.map(|(e, _)| e);
    assert!(
        matches!(followed, Ok(Ended::ClosedByPeer(r)) if r == overtaken),
        "{followed:?}"
    );
    let said = ckpt::node::describe(followed.unwrap());
    assert!(said.contains("the log ring is too small"), "{said}");
}

#[test]
fn a_link_for_another_checkpoint_is_refused_at_once() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = open_primary(a.path(), "safCkpt=repl_this", UpdateMode::ActiveReplica);
    let (shipped, followed) = one_link(&primary, b.path(), "safCkpt=repl_that");
    let followed = followed.map(|(e, _)| e);
    let err = followed.expect_err("the replica's end refuses the offer");
    assert!(
        err.to_string()
            .contains("another checkpoint (safCkpt=repl_this)"),
        "{err}"
    );
    assert!(matches!(shipped, Ok(Ended::PeerClosed)), "{shipped:?}");
    // Nothing was created under either name on the replica's side.
    let replica = Service::with_config(Config::with_dir(b.path()));
    assert!(replica
        .open("safCkpt=repl_that", OpenFlags::READ, None)
        .is_err());
    assert!(replica
        .open("safCkpt=repl_this", OpenFlags::READ, None)
        .is_err());
}

/// A standby (read-write) open on the replica of `name`'s first
/// incarnation (section `k` = "old"), which the primary's host then unlinks
/// and creates again (`k` = "new"; returned after the standby): same
/// frame numbers and terms, another incarnation, so the replica is rebuilt
/// from a snapshot and the standby's file superseded.
fn standby_left_on_an_earlier_incarnation(name: &str) -> TwoHosts {
    let rw = OpenFlags::READ | OpenFlags::WRITE;
    let (a, b, first, standby) = standby_on_a_replica(name, b"old", rw);
    Service::with_config(Config::with_dir(a.path()))
        .unlink(name)
        .unwrap();
    drop(first);
    let second = open_primary(a.path(), name, UpdateMode::ActiveReplica);
    second.create_section(b"k", Time::END, b"new").unwrap();
    with_link(&second, b.path(), name, || {});
    assert!(standby.segment().is_superseded());
    (a, b, standby, second)
}

#[test]
fn a_replica_of_an_earlier_incarnation_is_rebuilt_for_the_new_one() {
    let name = "safCkpt=repl_again_born";
    let (_a, b, standby, second) = standby_left_on_an_earlier_incarnation(name);
    let replica = Service::with_config(Config::with_dir(b.path()));
    let rebuilt = replica.open(name, OpenFlags::READ, None).unwrap();
    assert_eq!(rebuilt.read_section(b"k").unwrap(), b"new");
    assert_eq!(
        rebuilt.segment().incarnation(),
        second.segment().incarnation()
    );
    // The standby is still on the old file, marked superseded: it cannot
    // promote it (a primary no daemon ships).
    assert!(standby.segment().is_superseded());
    assert!(!rebuilt.segment().is_superseded());
    assert!(standby.segment().promote(2).is_err());
}

fn keyed(key: &[u8]) -> LinkOptions {
    LinkOptions {
        key: Some(ckpt::replication::ClusterKey::new(key).unwrap()),
        ..LinkOptions::default()
    }
}

#[test]
fn peers_with_the_same_cluster_key_replicate() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_keyed";
    let primary = open_primary(a.path(), name, UpdateMode::ActiveReplica);
    primary.create_section(b"k", Time::END, b"secret").unwrap();
    let opts = keyed(b"sixteen-byte-key and some more");
    with_link_opts(opts, &primary, b.path(), name, || {
        primary.overwrite(b"k", b"still secret").unwrap();
    });
    assert_eq!(sections(b.path(), name), sections(a.path(), name));
    assert!(ckpt::replication::ClusterKey::new(b"too short").is_none());
}

#[test]
fn a_peer_without_the_cluster_key_is_refused_and_nothing_is_replicated() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_refused";
    let primary = open_primary(a.path(), name, UpdateMode::ActiveReplica);
    primary.create_section(b"k", Time::END, b"secret").unwrap();
    let right = keyed(b"the right cluster key, 32 bytes.");
    let wrong = keyed(b"the wrong cluster key, 32 bytes.");
    let none = LinkOptions::default();
    let refused = |e: &LinkError, why: &str| {
        let text = e.to_string();
        assert!(text.contains(why), "{text:?} does not say {why:?}");
    };
    // The wrong key: each end sees the other's answer fail.
    let (shipped, followed) = one_link_opts(&primary, b.path(), name, (&right, &wrong));
    refused(&shipped.expect_err("wrong key"), "wrong cluster key");
    refused(&followed.err().expect("wrong key"), "wrong cluster key");
    // A key on the primary's side only.
    let (shipped, followed) = one_link_opts(&primary, b.path(), name, (&right, &none));
    refused(&shipped.expect_err("no key"), "did not authenticate");
    refused(
        &followed.err().expect("no key"),
        "requires a cluster key and this end has none",
    );
    // A key on the replica's side only.
    let (shipped, followed) = one_link_opts(&primary, b.path(), name, (&none, &right));
    refused(
        &shipped.expect_err("no key"),
        "requires a cluster key and this end has none",
    );
    assert!(followed.is_err(), "the replica's end fails too");
    // Nothing reached the replica's host.
    let replica = Service::with_config(Config::with_dir(b.path()));
    assert!(replica.open(name, OpenFlags::READ, None).is_err());
}

#[test]
fn links_never_keep_a_checkpoint_open_and_a_replica_outlives_its_closes() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_retention_0";
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let no_retention = CreationAttributes {
        retention_ns: 0,
        ..attrs(UpdateMode::ActiveReplica)
    };
    let primary = Service::with_config(Config::with_dir(a.path()))
        .open(name, rwc, Some(&no_retention))
        .unwrap();
    primary.set_active_replica().unwrap();
    primary.create_section(b"k", Time::END, b"v").unwrap();
    with_link(&primary, b.path(), name, || {});
    // A standby opens the replica and closes it: with retention 0 a
    // primary would be gone; a replica stays (its primary decides).
    assert_eq!(sections(b.path(), name), sections(a.path(), name));
    assert_eq!(sections(b.path(), name).len(), 1);
    // A link's registration on the primary does not keep it open: the
    // application's last close deletes it (retention 0).
    let linked = ckpt_shm::Segment::open_for_link(
        &Config::with_dir(a.path()),
        &CheckpointName::new(name).unwrap(),
        OpenFlags::READ,
    )
    .unwrap();
    drop(primary);
    let gone = Service::with_config(Config::with_dir(a.path())).open(name, OpenFlags::READ, None);
    assert!(gone.is_err(), "the primary outlived its last open");
    drop(linked);
    // The replica is unlinked through its primary: with no node daemon here
    // to reach it, not at all (TRY_AGAIN), and the replica stays.
    let sb = Service::with_config(Config::with_dir(b.path()));
    assert_eq!(sb.unlink(name), Err(ckpt::UnlinkError::Replica));
    assert_eq!(ckpt::UnlinkError::Replica.ais(), ckpt::AisError::TryAgain);
    assert_eq!(sections(b.path(), name).len(), 1);
    // An operator drops it by hand (`ckpt unlink --replica`): the name is
    // free.
    let rw = OpenFlags::READ | OpenFlags::WRITE;
    let cname = CheckpointName::new(name).unwrap();
    let replica =
        ckpt_shm::Segment::open_for_link(&Config::with_dir(b.path()), &cname, rw).unwrap();
    assert!(replica.drop_replica());
    assert!(sb.open(name, OpenFlags::READ, None).is_err());
    assert_eq!(sb.unlink(name), Err(ckpt::UnlinkError::NotExist));
}

/// One link that both ends end as `Unlinked` (the replica holds the unlink).
fn unlinked_link(primary: &ckpt::Checkpoint, replica_dir: &std::path::Path, name: &str) {
    let (shipped, followed) = one_link(primary, replica_dir, name);
    assert!(matches!(shipped, Ok(Ended::Unlinked)), "{shipped:?}");
    assert!(
        matches!(followed, Ok((Ended::Unlinked, _))),
        "{:?}",
        followed.map(|f| f.0)
    );
}

#[test]
fn an_unlink_reaches_the_replica_frees_its_name_and_ends_the_link() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_unlinked";
    let primary = open_primary(a.path(), name, UpdateMode::ActiveReplica);
    primary.create_section(b"k", Time::END, b"v").unwrap();
    with_link(&primary, b.path(), name, || {});
    let replica_host = Service::with_config(Config::with_dir(b.path()));
    let standby = replica_host.open(name, OpenFlags::READ, None).unwrap();
    Service::with_config(Config::with_dir(a.path()))
        .unlink(name)
        .unwrap();
    unlinked_link(&primary, b.path(), name);
    // The name is free on the replica's host too; the standby that has it
    // open keeps reading what it held.
    assert!(replica_host.open(name, OpenFlags::READ, None).is_err());
    assert_eq!(standby.read_section(b"k").unwrap(), b"v");
}

#[test]
fn a_replica_behind_the_ring_of_an_unlinked_primary_is_unlinked_by_its_snapshot() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_unlinked_behind";
    let primary = open_primary(a.path(), name, UpdateMode::ActiveReplica);
    primary.create_section(b"k", Time::END, b"v").unwrap();
    with_link(&primary, b.path(), name, || {});
    // Without the link: the writer laps the ring (512 KiB), then unlinks.
    let big = vec![7u8; 4096];
    for _ in 0..400 {
        primary.overwrite(b"k", &big).unwrap();
    }
    Service::with_config(Config::with_dir(a.path()))
        .unlink(name)
        .unwrap();
    // The unlink frame is older than anything the ring still holds: the
    // replica is rebuilt by a snapshot, which carries the unlink.
    unlinked_link(&primary, b.path(), name);
    let replica_host = Service::with_config(Config::with_dir(b.path()));
    assert!(replica_host.open(name, OpenFlags::READ, None).is_err());
}

#[test]
fn encrypted_links_replicate_and_a_mismatch_is_refused_with_the_reason() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_sealed";
    let primary = open_primary(a.path(), name, UpdateMode::ActiveReplica);
    primary.create_section(b"k", Time::END, b"secret").unwrap();
    let sealed = LinkOptions {
        encrypt: true,
        ..keyed(b"a cluster key for sealed links!!")
    };
    with_link_opts(sealed.clone(), &primary, b.path(), name, || {
        for i in 0..200u32 {
            primary.overwrite(b"k", &i.to_le_bytes()).unwrap();
        }
        // A section larger than a message's batch, sealed too.
        primary
            .create_section(b"big", Time::END, &vec![9u8; 3000])
            .unwrap();
    });
    assert_eq!(sections(b.path(), name), sections(a.path(), name));
    // One end encrypts, the other does not: both say why.
    let plain = keyed(b"a cluster key for sealed links!!");
    let refused = |e: &LinkError, why: &str| {
        let text = e.to_string();
        assert!(text.contains(why), "{text:?} does not say {why:?}");
    };
    let (shipped, followed) = one_link_opts(&primary, b.path(), name, (&sealed, &plain));
    refused(
        &followed.err().expect("plain follower"),
        "encrypts its links",
    );
    drop(shipped);
    let (_, followed) = one_link_opts(&primary, b.path(), name, (&plain, &sealed));
    refused(
        &followed.err().expect("sealed follower"),
        "does not encrypt",
    );
    // Encryption without a key is refused before anything is sent.
    let keyless = LinkOptions {
        encrypt: true,
        ..LinkOptions::default()
    };
    let (shipped, _) = one_link_opts(&primary, b.path(), name, (&keyless, &plain));
    refused(
        &shipped.expect_err("no key"),
        "encryption needs a cluster key",
    );
}

#[test]
fn a_peer_sending_a_large_message_before_the_link_starts_is_refused() {
    use ckpt_transport::Connection;
    let opts = LinkOptions::default();
    let (listener, addr) = listen(&opts);
    let mut client = backend().connect(addr, WAIT, opts.max_message).unwrap();
    let (mut conn, _) = listener.accept(WAIT).unwrap().unwrap();
    // Where an offer should come, 64 KiB (well under the link's limit of
    // 64 MiB, far over what a link's start needs).
    let bytes: u32 = 64 << 10;
    let mut big = vec![0u8; bytes as usize];
    big[..4].copy_from_slice(&bytes.to_le_bytes());
    client.send(&[&big]).unwrap();
    let e = ckpt::replication::accept_offer(&mut conn, &opts)
        .err()
        .unwrap();
    assert!(e.to_string().contains("limit"), "{e}");
}

/// Two shipping links to one replica's node overlap, as a daemon's do when
/// it starts a new link while the old one winds down: the one that ends
/// first leaves the replica registered for the other, so synchronous
/// writers go on waiting for it (before, the first to end unregistered the
/// slot both used, and writes returned without the live replica).
#[test]
fn overlapping_links_to_one_node_keep_its_registration_until_the_last_ends() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_overlap";
    let primary = open_primary(a.path(), name, UpdateMode::AllReplicas);
    primary.create_section(b"k", Time::END, b"v").unwrap();
    let acked = |seq: u64| {
        primary
            .segment()
            .acknowledged(ckpt_shm::ack::Need::Node(REPLICA_NODE), seq)
    };
    with_link(&primary, b.path(), name, || {
        let deadline = Instant::now() + WAIT;
        while !acked(primary.segment().last_seq()) {
            assert!(
                Instant::now() < deadline,
                "the first link never acknowledged"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // A second link to the same node, whose peer goes away.
        let opts = LinkOptions::default();
        let (listener, addr) = listen(&opts);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let second = s.spawn(|| ship_accepted(&listener, &primary, &opts, &stop));
            let conn = backend().connect(addr, WAIT, opts.max_message).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            drop(conn);
            // Closed or reset, it ends.
            let _ = second.join().unwrap();
        });
        // The first link's replica still counts.
        primary.overwrite(b"k", b"w").unwrap();
        assert!(
            acked(primary.segment().last_seq()),
            "a synchronous write returned before the replica of the live link held it"
        );
    });
}

/// A copy demoted to a replica offers nothing: its shipping link ends as
/// deposed before the offer. (A replica that offered its primary's term as
/// its own deposed that primary where the terms tie: the two-node demo's
/// third fault found it, the active on node 1 left without an active
/// replica.)
#[test]
fn a_copy_demoted_to_a_replica_offers_nothing() {
    let a = tempfile::tempdir().unwrap();
    let primary = open_primary(a.path(), "safCkpt=repl_demoted", UpdateMode::ActiveReplica);
    primary.create_section(b"k", Time::END, b"v").unwrap();
    primary.segment().demote().unwrap();
    let opts = LinkOptions::default();
    let (listener, addr) = listen(&opts);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let shipper = s.spawn(|| ship_accepted(&listener, &primary, &opts, &stop));
        let mut conn = backend().connect(addr, WAIT, opts.max_message).unwrap();
        let offered = ckpt::replication::accept_offer(&mut conn, &opts);
        assert!(offered.is_err(), "a replica offered itself");
        let shipped = shipper.join().unwrap();
        assert!(matches!(shipped, Ok(Ended::Deposed { .. })), "{shipped:?}");
    });
}

/// How a peer stops taking bytes in [`a_peer_stops_taking_bytes`].
#[derive(Clone, Copy, PartialEq)]
enum Stall {
    /// Nothing moves either way (a stopped process, a link that drops
    /// everything): the follower's heartbeats stop reaching the shipper.
    Both,
    /// The shipper's bytes stop, the follower's heartbeats still come (a
    /// peer that stopped reading, or a one-way fault); after a moment the
    /// shipper is stopped.
    TowardsFollower,
}

/// A link whose peer stops taking bytes while the primary's writer goes on,
/// so the primary's send blocks once the socket buffers fill. Between the
/// two ends runs a proxy that stalls as `stall` says, keeping both
/// connections open. Returns how the shipper ended, and how long after its
/// stop (for [`Stall::TowardsFollower`]).
fn a_peer_stops_taking_bytes(stall: Stall) -> (Result<Ended, LinkError>, Duration) {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::Ordering::Relaxed;

    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_stalled";
    let primary = open_primary(a.path(), name, UpdateMode::ActiveReplica);
    for i in 0..16u8 {
        primary.create_section(&[i], Time::END, b"").unwrap();
    }
    let opts = LinkOptions::default();
    // A follower that keeps its end however long it hears nothing.
    let mut follow_opts = LinkOptions::default();
    follow_opts.link.silence_ns = 60_000_000_000;
    let (listener, shipper_addr) = listen(&opts);
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let (stop, stalled, shipper_done, ship_stop) = (
        AtomicBool::new(false),
        AtomicBool::new(false),
        AtomicBool::new(false),
        AtomicBool::new(false),
    );
    let config = Config::with_dir(b.path());
    let name_ = CheckpointName::new(name).unwrap();
    // Copies bytes from `from` to `to` until stalled (then holds both open,
    // taking nothing) or stopped.
    let pipe = |mut from: TcpStream, mut to: TcpStream, stalls: bool| {
        from.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(Relaxed) {
            if stalls && stalled.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
        }
    };
    let mut stopped_at = None;
    let shipped = std::thread::scope(|s| {
        s.spawn(|| {
            let (inward, _) = proxy.accept().unwrap();
            let outward = TcpStream::connect(shipper_addr).unwrap();
            let (i2, o2) = (inward.try_clone().unwrap(), outward.try_clone().unwrap());
            s.spawn(move || pipe(inward, outward, stall == Stall::Both));
            pipe(o2, i2, true);
        });
        s.spawn(|| {
            let mut conn = backend()
                .connect(proxy_addr, WAIT, follow_opts.max_message)
                .unwrap();
            let _ = follow(&config, &name_, &mut conn, &follow_opts, &stop);
        });
        // The writer: 4 KiB overwrites until the link has ended, about
        // 80 MB/s (faster, it laps the 512 KiB ring under the shipper, which
        // ends the link as overtaken).
        s.spawn(|| {
            let data = [7u8; 4096];
            let mut i = 0u8;
            while !shipper_done.load(Relaxed) && !stop.load(Relaxed) {
                primary.overwrite(&[i % 16], &data).unwrap();
                i = i.wrapping_add(1);
                std::thread::sleep(Duration::from_micros(50));
            }
        });
        let stopper = s.spawn(|| {
            // Linked and streaming first, then the stall.
            let service = Service::with_config(Config::with_dir(b.path()));
            let deadline = Instant::now() + WAIT;
            while service.open(name, OpenFlags::READ, None).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(200));
            stalled.store(true, Relaxed);
            if stall == Stall::TowardsFollower {
                // The buffers fill and the shipper's send blocks: stop it.
                std::thread::sleep(Duration::from_millis(700));
                ship_stop.store(true, Relaxed);
                return Some(Instant::now());
            }
            None
        });
        let shipped = ship_accepted(&listener, &primary, &opts, &ship_stop);
        shipper_done.store(true, Relaxed);
        stop.store(true, Relaxed);
        stopped_at = stopper.join().unwrap();
        shipped
    });
    let after_stop = stopped_at.map_or(Duration::ZERO, |at| at.elapsed());
    (shipped, after_stop)
}

/// A peer that stops taking bytes (a stopped process, a link that drops
/// everything) while the primary's writer goes on: the primary's send
/// blocks once the socket buffers fill, and the link must still end by the
/// silence limit (1 s), not the send's own 10 s limit. Before, the shipper
/// ended only when its blocked send timed out (`Err(TimedOut)`, 10 s after),
/// its state `linked` until then.
#[test]
fn a_link_whose_peer_stops_taking_bytes_ends_at_the_silence_limit() {
    let (shipped, _) = a_peer_stops_taking_bytes(Stall::Both);
    assert!(
        matches!(
            shipped,
            Ok(Ended::Closed(ckpt_core::repl::CloseReason::Silent))
        ),
        "the link ends as silent, not by a send's timeout: {shipped:?}"
    );
}

/// A shipper stopped while its send is blocked on a peer that takes no
/// bytes but still sends heartbeats (so the silence limit never ends the
/// link) ends at once: stopping cancels the send. Before, the stop waited
/// out the send's 10 s.
#[test]
fn a_shipper_stopped_while_its_send_waits_for_a_peer_ends_at_once() {
    let (shipped, after_stop) = a_peer_stops_taking_bytes(Stall::TowardsFollower);
    println!("the shipper ended {after_stop:?} after its stop: {shipped:?}");
    assert!(
        matches!(shipped, Ok(Ended::Stopped)),
        "the link ends stopped: {shipped:?}"
    );
    assert!(
        after_stop < Duration::from_secs(3),
        "the stop took {after_stop:?}"
    );
}

/// A following link's lag counts what the primary logged, not only what
/// reached it: with the shipper's window holding frames back, the replica
/// knows how far behind it is from the first batch on.
#[test]
fn a_followers_lag_counts_what_the_primary_logged_beyond_the_window() {
    use ckpt::replication::LinkStats;
    use std::sync::Arc;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_lag_seen";
    let primary = open_primary(a.path(), name, UpdateMode::ActiveReplica);
    primary.create_section(b"k", Time::END, b"v").unwrap();
    for n in 0..1000u32 {
        primary.overwrite(b"k", &n.to_le_bytes()).unwrap();
    }
    let logged = primary.segment().last_seq();
    // Four frames in flight at most: 250 round trips to catch up.
    let mut ship_opts = LinkOptions::default();
    ship_opts.link.window = 4;
    ship_opts.link.batch = 4;
    let stats = Arc::new(LinkStats::default());
    let follow_opts = LinkOptions {
        stats: Some(stats.clone()),
        ..LinkOptions::default()
    };
    let stop = AtomicBool::new(false);
    let (listener, addr) = listen(&ship_opts);
    let cname = CheckpointName::new(name).unwrap();
    let replica_config = Config::with_dir(b.path());
    let mut most = 0;
    std::thread::scope(|s| {
        s.spawn(|| ship_accepted(&listener, &primary, &ship_opts, &stop));
        s.spawn(|| {
            let mut conn = backend()
                .connect(addr, WAIT, follow_opts.max_message)
                .unwrap();
            follow(&replica_config, &cname, &mut conn, &follow_opts, &stop)
        });
        let deadline = Instant::now() + WAIT;
        while stats.held.load(std::sync::atomic::Ordering::Relaxed) < logged {
            assert!(Instant::now() < deadline, "the replica did not catch up");
            most = most.max(stats.lag());
            std::thread::yield_now();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    // (Counting only what was shipped, it never exceeded the window.)
    assert!(
        most > 500,
        "the largest lag seen was {most} of {logged} frames"
    );
    assert_eq!(stats.lag(), 0);
}

/// The replica promoted here (an operator's `ckpt promote --force`) while a
/// snapshot rebuilds it: the promoted file keeps the checkpoint's name, and
/// the link ends; the copy is dropped, never renamed over the new primary.
#[test]
fn a_replica_promoted_while_a_snapshot_rebuilds_it_keeps_its_name() {
    use ckpt::replication::{LinkStats, ReplicationError};
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_promoted_staged";
    let primary = wide_primary(a.path(), name, 4 << 20);
    fill(&primary, 2000, 1);
    with_link(&primary, b.path(), name, || {});
    // Without the link the ring laps: the next link rebuilds the replica,
    // 8 MiB by snapshot, long enough to promote it meanwhile.
    for n in 0..1200u32 {
        let id = format!("f{n}");
        primary.overwrite(id.as_bytes(), &[2u8; 4096]).unwrap();
    }
    let stats = Arc::new(LinkStats::default());
    let follow_opts = LinkOptions {
        stats: Some(stats.clone()),
        ..LinkOptions::default()
    };
    let cname = CheckpointName::new(name).unwrap();
    let replica_config = Config::with_dir(b.path());
    let rw = OpenFlags::READ | OpenFlags::WRITE;
    let promoted = std::thread::scope(|s| {
        let promoter = s.spawn(|| {
            let deadline = Instant::now() + WAIT;
            while !stats.installing.load(Relaxed) {
                assert!(Instant::now() < deadline, "no snapshot began");
                std::hint::spin_loop();
            }
            let old = ckpt_shm::Segment::open_for_link(&replica_config, &cname, rw).unwrap();
            old.promote(2).map(|_| old.incarnation())
        });
        let ended = one_link_opts(
            &primary,
            b.path(),
            name,
            (&LinkOptions::default(), &follow_opts),
        );
        (promoter.join().unwrap(), ended)
    });
    let (promotion, (_, followed)) = promoted;
    let under_name = ckpt_shm::Segment::open_for_link(&replica_config, &cname, rw).unwrap();
    match promotion {
        Ok(_) => {
            // Promoted before the copy was in place: it stays the name's.
            assert!(
                !under_name.is_replica(),
                "the copy was renamed over the new primary"
            );
            assert!(!under_name.is_superseded());
            assert!(
                matches!(
                    followed,
                    Err(ReplicationError::Apply(
                        ckpt_shm::ops::ApplyError::NotReplica
                    ))
                ),
                "{:?}",
                followed.map(|f| f.0)
            );
        }
        // (The copy was in place first: the old file, superseded, is
        // never promoted.)
        Err(e) => panic!("the promotion came too late to test: {e:?}"),
    }
}

/// Runs `body` while a standby on the replica's host (`service`) opens
/// `name` as soon as it appears and reads the 8-byte sections `ids` in one
/// call, again and again; then checks that it read, and that no read saw
/// two calls (sections that differ).
fn standby_sees_each_call_whole(service: &Service, name: &str, ids: &[&[u8]], body: impl FnOnce()) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    let (done, reads, mixed) = (AtomicBool::new(false), AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        s.spawn(|| {
            let standby = loop {
                if let Ok(c) = service.open(name, OpenFlags::READ, None) {
                    break c;
                }
                if done.load(Relaxed) {
                    return;
                }
                std::thread::yield_now();
            };
            let mut bufs = vec![[0u8; 8]; ids.len()];
            while !done.load(Relaxed) {
                let mut v: Vec<ckpt::ReadVec<'_>> = ids
                    .iter()
                    .zip(bufs.iter_mut())
                    .map(|(id, buf)| ckpt::ReadVec {
                        id,
                        offset: 0,
                        buf,
                        read_bytes: 0,
                    })
                    .collect();
                if standby.read(&mut v).is_err() {
                    continue; // (Sections not there yet.)
                }
                drop(v);
                reads.fetch_add(1, Relaxed);
                if bufs.iter().any(|b| *b != bufs[0]) {
                    mixed.fetch_add(1, Relaxed);
                }
            }
        });
        // The standby stops however `body` ends.
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, Relaxed);
            }
        }
        let _done = Done(&done);
        body();
    });
    assert!(reads.load(Relaxed) > 0, "the standby read nothing");
    assert_eq!(
        mixed.load(Relaxed),
        0,
        "reads that saw two calls, of {}",
        reads.load(Relaxed)
    );
}

/// Writes `n` into each of the sections `ids` in one call (a vector write).
fn write_call(primary: &ckpt::Checkpoint, ids: &[&[u8]], n: u64) {
    let v = n.to_le_bytes();
    let elements: Vec<ckpt::WriteVec<'_>> = ids
        .iter()
        .map(|id| ckpt::WriteVec {
            id,
            offset: 0,
            data: &v,
        })
        .collect();
    primary.write(&elements).unwrap();
}

/// The primary unlinked while a snapshot makes this host's first replica:
/// the unlink frame reaches the copy as it catches up (in most runs; in
/// others the copy holds the unlink already), and there is nothing to put
/// in place; the follower still acknowledges the unlink before the link
/// ends, so both ends end `Unlinked` (the shipper saw the connection closed
/// under it in 4 runs of 4 before).
#[test]
fn an_unlink_reaching_a_first_replica_while_it_catches_up_ends_both_ends_unlinked() {
    use ckpt::replication::LinkStats;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_unlinked_staged";
    let primary = wide_primary(a.path(), name, 4 << 20);
    fill(&primary, 2000, 1);
    let stats = Arc::new(LinkStats::default());
    let follow_opts = LinkOptions {
        stats: Some(stats.clone()),
        ..LinkOptions::default()
    };
    let (shipped, followed) = std::thread::scope(|s| {
        s.spawn(|| {
            let deadline = Instant::now() + WAIT;
            while !stats.installing.load(Relaxed) {
                assert!(Instant::now() < deadline, "no snapshot began");
                std::hint::spin_loop();
            }
            Service::with_config(Config::with_dir(a.path()))
                .unlink(name)
                .unwrap();
        });
        one_link_opts(
            &primary,
            b.path(),
            name,
            (&LinkOptions::default(), &follow_opts),
        )
    });
    assert!(matches!(shipped, Ok(Ended::Unlinked)), "{shipped:?}");
    assert!(
        matches!(followed, Ok((Ended::Unlinked, _))),
        "{:?}",
        followed.map(|f| f.0)
    );
    let replica_host = Service::with_config(Config::with_dir(b.path()));
    assert!(replica_host.open(name, OpenFlags::READ, None).is_err());
}

/// A replica rebuilt from a fuzzy snapshot while the writer goes on: the
/// copy holds sections of different calls until it has caught up with the
/// snapshot's horizon, and is put in place only then. A standby that opens
/// the replica as soon as it appears, and reads it meanwhile, sees every
/// vector write whole.
#[test]
fn a_standby_never_sees_a_rebuilt_replica_before_it_has_caught_up() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_rebuild_whole";
    let primary = wide_primary(a.path(), name, 4 << 20);
    // `a` first and `b` last, 8 MiB of sections between: a copy takes them
    // far apart, and their creation frames lap the 4 MiB ring, so the new
    // replica is made by a snapshot.
    let zero = 0u64.to_le_bytes();
    primary.create_section(b"a", Time::END, &zero).unwrap();
    fill(&primary, 2000, 1);
    primary.create_section(b"b", Time::END, &zero).unwrap();
    // Batches of one call (two frames): the catch-up after the copy takes
    // many messages, a wide window for the standby.
    let mut opts = LinkOptions::default();
    opts.link.batch = 2;
    let service = Service::with_config(Config::with_dir(b.path()));
    standby_sees_each_call_whole(&service, name, &[b"b", b"a"], || {
        let mut n = 0u64;
        for round in 0..4 {
            if round > 0 {
                // Without the link, the fillers' overwrites lap the ring:
                // the next link rebuilds the replica by a snapshot again.
                for f in 0..1200u32 {
                    let id = format!("f{f}");
                    primary
                        .overwrite(id.as_bytes(), &[round as u8; 4096])
                        .unwrap();
                }
            }
            with_link_opts(opts.clone(), &primary, b.path(), name, || {
                let until = Instant::now() + Duration::from_millis(150);
                while Instant::now() < until {
                    n += 1;
                    write_call(&primary, &[b"a", b"b"], n);
                    // About 20,000 calls a second: the link keeps up.
                    let next = Instant::now() + Duration::from_micros(50);
                    while Instant::now() < next {
                        std::hint::spin_loop();
                    }
                }
            });
        }
    });
}

/// A standby on the replica's host reading three sections in one call while
/// the primary writes all three in each call, over a link whose batches
/// (4 frames) are shorter than two calls (3 frames each): it sees each call
/// whole. A batch ends with a whole call (`Shipper::poll`), and the replica
/// applies a batch between the flip counter's two steps
/// (`Segment::apply_held`). Batches cut at 4 frames split calls, and the
/// standby then saw one section a call ahead.
#[test]
fn a_standby_on_a_replica_sees_each_vector_write_whole_across_batches() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let name = "safCkpt=repl_groups";
    // A ring that holds every call: no snapshot rebuilds the replica (the
    // rebuild has its test:
    // `a_standby_never_sees_a_rebuilt_replica_before_it_has_caught_up`).
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let primary = Service::with_config(Config {
        log_bytes: Some(64 << 20),
        ..Config::with_dir(a.path())
    })
    .open(name, rwc, Some(&attrs(UpdateMode::ActiveReplica)))
    .unwrap();
    primary.set_active_replica().unwrap();
    for id in [b"a", b"b", b"c"] {
        primary
            .create_section(id, Time::END, &0u64.to_le_bytes())
            .unwrap();
    }
    let mut opts = LinkOptions::default();
    opts.link.batch = 4;
    const CALLS: u64 = 20_000;
    let service = Service::with_config(Config::with_dir(b.path()));
    standby_sees_each_call_whole(&service, name, &[b"c", b"b", b"a"], || {
        with_link_opts(opts, &primary, b.path(), name, || {
            for n in 1..=CALLS {
                write_call(&primary, &[b"a", b"b", b"c"], n);
            }
        });
    });
}

/// A read of several sections made of several calls (`read_isolated`, the C
/// library's element by element) that a snapshot rebuild moves to another
/// file between two of its elements runs again on the new file: both
/// elements come from one file. (The second helper of this stop saw a C
/// read whose first element came from the old replica and its second from
/// the new one, a million writes apart.)
#[test]
fn a_read_of_several_sections_spanning_a_rebuild_reads_one_file() {
    let name = "safCkpt=repl_span";
    let (_a, b, primary, standby) = standby_on_a_replica(name, b"1", OpenFlags::READ);
    primary.create_section(b"j", Time::END, b"1").unwrap();
    with_link(&primary, b.path(), name, || {});
    let mut runs = 0;
    let (k, j) = standby.read_isolated(|| {
        runs += 1;
        let k = standby.read_section(b"k").unwrap();
        if runs == 1 {
            // Between the two elements: both sections change, the ring is
            // lapped, and the replica is rebuilt into a new file.
            lap(&primary);
            primary.overwrite(b"k", b"2").unwrap();
            primary.overwrite(b"j", b"2").unwrap();
            with_link(&primary, b.path(), name, || {});
        }
        (k, standby.read_section(b"j").unwrap())
    });
    assert_eq!(runs, 2, "run again on the new file");
    assert_eq!((k.as_slice(), j.as_slice()), (&b"2"[..], &b"2"[..]));
}
