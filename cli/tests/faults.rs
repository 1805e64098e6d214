//! Fault tests: two `ckpt daemon`s in two network namespaces joined by a veth
//! pair (root only: they skip with a message otherwise), the primary written
//! by this process, and faults on the path between them: the link cut and
//! restored, random loss (iptables statistic, when iptables is installed), a
//! bandwidth cap (tbf), the replica's daemon killed and restarted, the
//! primary's daemon killed and restarted, a standby open on the replica's
//! node across a cut long enough that the replica is rebuilt from a
//! snapshot (its handles move to the new file), and, for a synchronous checkpoint,
//! the primary's daemon killed under a running writer. After each, a checker
//! waits for the replica to equal the primary byte for byte, and for the
//! synchronous checkpoint checks that every write acknowledged before the
//! failure is on the replica. Each fault prints one line of results (run with
//! `--nocapture` to see them; CI does).

mod common;

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ckpt::{OpenFlags, Time, UpdateMode};
use ckpt_cli::netns::{have, Net};
use common::*;

/// Starts node `node`'s daemon with the other node as its peer.
fn start_peer_daemon(net: &Net, node: &Node) -> Daemon {
    let i = node.id as usize - 1;
    let peer = format!("{}={}:{PORT}", 3 - node.id, net.ip[1 - i]);
    start_daemon(net, node, &["--peer", &peer])
}

/// The shipping link's lag for `name`, as node `a`'s daemon reports it.
fn lag(a: &Node, name: &str) -> Option<u64> {
    a.status()?
        .links
        .iter()
        .find(|l| l.checkpoint == name && l.role == ckpt::node::Role::Shipping)
        .and_then(|l| l.lag)
}

#[test]
fn faults_between_two_nodes_in_network_namespaces() {
    if !root_or_skip("the fault tests") {
        return;
    }
    let net = match Net::new() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("SKIPPED: cannot make network namespaces here: {e}");
            return;
        }
    };
    let root = tempfile::tempdir_in("/dev/shm").unwrap();
    let a = Node::new(root.path(), 1);
    let b = Node::new(root.path(), 2);
    let mut da = start_peer_daemon(&net, &a);
    let mut db = start_peer_daemon(&net, &b);
    let name = "safCkpt=faults_async";
    let primary = create(&a, name, UpdateMode::ActiveReplica);
    let mut next = 0u64;
    write(&primary, &mut next, 100);
    let t = converge(&a, &b, name);
    println!("fault test: baseline: 100 updates replicated, converged in {t:?}");

    // 1. The link cut, then restored.
    net.link(false).unwrap();
    write(&primary, &mut next, 2000);
    std::thread::sleep(Duration::from_millis(1500));
    let behind = sections(&b, name).map_or(0, |s| s.0);
    let ahead = primary.segment().last_seq();
    assert!(behind < ahead, "the replica kept up through a cut link");
    net.link(true).unwrap();
    let t = converge(&a, &b, name);
    println!(
        "fault test: link cut: 2000 updates while cut, the replica {} frames behind; converged {t:?} after the restore",
        ahead - behind
    );

    // 2. Random loss, both ways.
    if have("iptables") {
        let rule = |op: &str, chain: &str| {
            net.in_ns(
                0,
                &[
                    "iptables",
                    op,
                    chain,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    "0.1",
                    "-j",
                    "DROP",
                ],
            )
        };
        rule("-A", "OUTPUT").unwrap();
        rule("-A", "INPUT").unwrap();
        write(&primary, &mut next, 3000);
        let t = converge(&a, &b, name);
        rule("-D", "OUTPUT").unwrap();
        rule("-D", "INPUT").unwrap();
        println!("fault test: 10% random loss both ways: 3000 updates, converged {t:?} after the last write");
    } else {
        println!("fault test: random loss SKIPPED: iptables is not installed");
    }

    // 3. A bandwidth cap: the asynchronous writer is not slowed; the lag shows.
    net.in_ns(
        0,
        &[
            "tc",
            "qdisc",
            "add",
            "dev",
            &net.dev[0],
            "root",
            "tbf",
            "rate",
            "4mbit",
            "burst",
            "32kb",
            "latency",
            "400ms",
        ],
    )
    .unwrap();
    let t = Instant::now();
    write(&primary, &mut next, 1000);
    let wrote = t.elapsed();
    let mut seen_lag = 0;
    until("the lag to show", || {
        seen_lag = lag(&a, name).unwrap_or(0);
        seen_lag > 0 || sections(&b, name) == sections(&a, name)
    });
    net.in_ns(0, &["tc", "qdisc", "del", "dev", &net.dev[0], "root"])
        .unwrap();
    let t = converge(&a, &b, name);
    println!(
        "fault test: 4 Mbit/s cap: 1000 × 4 KiB written in {wrote:?} (the cap needs about 8 s for them); lag seen {seen_lag} frames; converged {t:?} after the cap was lifted"
    );

    // 4. The replica's daemon killed, writes go on, then it starts again.
    drop(db);
    write(&primary, &mut next, 2000);
    db = start_peer_daemon(&net, &b);
    let t = converge(&a, &b, name);
    println!("fault test: replica daemon killed: 2000 updates meanwhile; converged {t:?} after its restart");

    // 5. The primary's daemon killed, writes go on, then it starts again.
    drop(da);
    write(&primary, &mut next, 2000);
    da = start_peer_daemon(&net, &a);
    let t = converge(&a, &b, name);
    println!("fault test: primary daemon killed: 2000 updates meanwhile; converged {t:?} after its restart");

    // 6. A standby open on the replica's node while the link is cut for
    // longer than the primary's ring holds: the replica is rebuilt from a
    // snapshot into a new file, and the standby's handles move to it.
    let standby = b
        .service()
        .open(name, OpenFlags::READ | OpenFlags::WRITE, None)
        .unwrap();
    let s0 = standby.section(b"s0").unwrap();
    let mut watcher = standby.watch();
    let file = || std::fs::metadata(standby.segment().path()).unwrap().ino();
    let before = file();
    net.link(false).unwrap();
    let ring = primary.segment().geometry().log_bytes;
    let lapped = 2 * ring / 4096;
    write(&primary, &mut next, lapped);
    net.link(true).unwrap();
    let t = converge(&a, &b, name);
    let after = file();
    assert_ne!(before, after, "the replica was not rebuilt into a new file");
    assert!(
        !standby.segment().is_superseded(),
        "the standby stayed on the old file"
    );
    let want = primary.read_section(b"s0").unwrap();
    assert_eq!(standby.read_section(b"s0").unwrap(), want);
    let mut buf = vec![0u8; 4096];
    let n = s0.read(0, &mut buf).unwrap();
    assert_eq!(buf[..n], want[..], "the section handle reads the old file");
    let drained = std::iter::from_fn(|| match watcher.next_change() {
        Ok(Some(_)) => Some(true),
        Ok(None) => Some(false),
        Err(_) => None,
    })
    .take_while(|more| *more)
    .count();
    assert!(
        matches!(watcher.next_change(), Err(ckpt::WatchError::Lagged { .. })),
        "the watcher did not report the move"
    );
    let snapshot = watcher.resync().unwrap();
    assert_eq!(snapshot.sections.len(), 16);
    println!(
        "fault test: standby open across a rebuild: {lapped} updates while cut (twice the {ring}-byte ring); converged {t:?} after the restore, by a snapshot into a new file; the standby's checkpoint and section handles read the new file, its watcher drained {drained} changes of the old one, then resynchronized"
    );
    drop((s0, watcher));
    drop(standby);

    // 7. Synchronous: the primary's daemon killed under a running writer.
    // Every write that returned before the failure is on the replica.
    let sync_name = "safCkpt=faults_sync";
    let sync = Arc::new(create(&a, sync_name, UpdateMode::AllReplicas));
    sync.create_section(b"seq", Time::END, &0u64.to_le_bytes())
        .unwrap();
    until("the synchronous replica", || {
        sections(&b, sync_name).is_some()
    });
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (sync, acked, stop) = (sync.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 1u64;
            let mut failures = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match sync.overwrite(b"seq", &n.to_le_bytes()) {
                    Ok(()) => {
                        acked.store(n, Ordering::SeqCst);
                        n += 1;
                    }
                    // The replica's acknowledgement did not come in time.
                    Err(_) => failures += 1,
                }
            }
            failures
        })
    };
    until("synchronous writes", || acked.load(Ordering::SeqCst) > 500);
    drop(da);
    let acked_at_failure = acked.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let timeouts = writer.join().unwrap();
    let held = sections(&b, sync_name)
        .and_then(|(_, s)| s.into_iter().find(|(id, _)| id == b"seq"))
        .map(|(_, v)| u64::from_le_bytes(v.try_into().unwrap()))
        .unwrap();
    assert!(
        held >= acked_at_failure,
        "a synchronous write acknowledged before the failure is lost: acknowledged {acked_at_failure}, the replica holds {held}"
    );
    let da = start_peer_daemon(&net, &a);
    let t = converge(&a, &b, sync_name);
    println!(
        "fault test: synchronous, primary daemon killed under the writer: acknowledged through {acked_at_failure} at the failure, the replica held {held} (nothing acknowledged lost); {timeouts} writes timed out while it was down; converged {t:?} after its restart"
    );
    let t = converge(&a, &b, name);
    println!("fault test: both checkpoints equal on both nodes at the end ({t:?})");
    println!("fault test: a partition under corosync: see the corosync tests (cli/tests/corosync.rs, feature corosync)");
    drop(sync);
    drop(primary);
    drop(da);
    drop(db);
    assert!(!panicked(&b));
}
