//! Two node daemons in one process, each with its own segment directory
//! (two "hosts") on loopback: a checkpoint created on one appears on the
//! other byte for byte and follows its writes; the status shows the links;
//! an unlink reaches the replica; a peer that is not configured, or has
//! the wrong key, is refused and counted; stopping a node ends its links.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ckpt::node::{LinkState, Node, NodeConfig, Peer, Placement, Role, Wanted};
use ckpt::replication::ClusterKey;
use ckpt::{Config, CreationAttributes, CreationFlags, OpenFlags, Service, Time, UpdateMode};
use ckpt_transport::Auto;

const WAIT: Duration = Duration::from_secs(10);

fn backend() -> Auto {
    // CKPT_TRANSPORT picks another (CI runs these once more with
    // io_uring_multishot).
    Auto::from_env_noted()
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A free loopback port (bound, then released).
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind(any_port())
        .unwrap()
        .local_addr()
        .unwrap()
}

fn node(
    id: u32,
    dir: &std::path::Path,
    listen: SocketAddr,
    peers: &[(u32, SocketAddr)],
) -> NodeConfig {
    let mut c = NodeConfig::new(id, &format!("n{id}"), listen, Config::with_dir(dir));
    c.peers = peers
        .iter()
        .map(|&(node, address)| Peer {
            node,
            name: format!("n{node}"),
            address,
        })
        .collect();
    c.scan = Duration::from_millis(20);
    c
}

/// Two nodes that know each other: (node 1, node 2).
fn pair(a: &std::path::Path, b: &std::path::Path, key: Option<&[u8]>) -> (Node, Node) {
    let (pa, pb) = (free_port(), free_port());
    let mut ca = node(1, a, pa, &[(2, pb)]);
    let mut cb = node(2, b, pb, &[(1, pa)]);
    // Keyed pairs also encrypt their links.
    ca.link.key = key.map(|k| ClusterKey::new(k).unwrap());
    ca.link.encrypt = key.is_some();
    cb.link.key = ca.link.key.clone();
    cb.link.encrypt = ca.link.encrypt;
    (
        Node::start(ca, backend()).unwrap(),
        Node::start(cb, backend()).unwrap(),
    )
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn service(dir: &std::path::Path, node: u32) -> Service {
    Service::with_config(Config {
        node_id: node,
        ..Config::with_dir(dir)
    })
}

fn create(s: &Service, name: &str) -> ckpt::Checkpoint {
    let attrs = CreationAttributes {
        flags: CreationFlags::new(UpdateMode::ActiveReplica, true),
        ..CreationAttributes::new(16, 4096)
    };
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let c = s.open(name, rwc, Some(&attrs)).unwrap();
    c.set_active_replica().unwrap();
    c
}

/// A process on `node`'s host opens collocated checkpoint `name`, which a
/// peer ships: its replica comes there (what `Service::open` asks a
/// daemon's control socket for; these daemons have none).
fn opened_on(node: &Node, name: &str) {
    let name = ckpt::CheckpointName::new(name).unwrap();
    let mut w = Wanted::Unknown;
    until("the checkpoint to be offered", || {
        w = node.want(&name, WAIT);
        w != Wanted::Unknown
    });
    assert!(matches!(w, Wanted::Arrived | Wanted::Here), "{w:?}");
}

fn read(s: &Service, name: &str, id: &[u8]) -> Option<Vec<u8>> {
    s.open(name, OpenFlags::READ, None)
        .ok()?
        .read_section(id)
        .ok()
}

#[test]
fn a_checkpoint_created_on_one_node_is_replicated_to_the_other_and_unlinked_there_too() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (na, nb) = pair(
        a.path(),
        b.path(),
        Some(b"a cluster key of 32 bytes, or so"),
    );
    let (sa, sb) = (service(a.path(), 1), service(b.path(), 2));
    let name = "safCkpt=node_pair";
    let primary = create(&sa, name);
    primary.create_section(b"k", Time::END, b"first").unwrap();
    opened_on(&nb, name);
    until("the replica", || {
        read(&sb, name, b"k").as_deref() == Some(b"first")
    });
    for i in 0..100u32 {
        primary.overwrite(b"k", &i.to_le_bytes()).unwrap();
    }
    until("the last write", || {
        read(&sb, name, b"k").as_deref() == Some(&99u32.to_le_bytes()[..])
    });
    // Both ends show the link, with nothing left to ship.
    let last = primary.segment().last_seq();
    until("the acknowledgement", || {
        na.status().links.iter().any(|l| {
            l.role == Role::Shipping
                && l.state == LinkState::Linked
                && l.held == last
                && l.lag == Some(0)
        })
    });
    let sb_status = nb.status();
    let follow = &sb_status.links[0];
    assert_eq!(
        (follow.role, follow.peer, follow.state, follow.held),
        (Role::Following, 1, LinkState::Linked, last)
    );
    assert_eq!(sb_status.peers[0].linked, 1);
    assert_eq!(na.status().auth_failures, 0);
    // A standby on the replica's host has it open: it survives the unlink
    // there, and the name is gone on both hosts.
    let standby = sb.open(name, OpenFlags::READ, None).unwrap();
    sa.unlink(name).unwrap();
    until("the unlink on the replica's host", || {
        sb.open(name, OpenFlags::READ, None).is_err()
    });
    assert_eq!(standby.read_section(b"k").unwrap(), 99u32.to_le_bytes());
    until("the links to end", || {
        na.status().links.is_empty() && nb.status().links.is_empty()
    });
    drop(primary);
    na.stop();
    nb.stop();
}

/// A synchronous checkpoint created on a host with a daemon waits for the
/// replicas the daemon places from its first write: each write returns once
/// the peer holds it, even the ones made before the daemon's scan found the
/// checkpoint (they were acknowledged with no replica anywhere, and an
/// adversarial test lost them with their node). A peer that is down is not
/// waited for past its link's first attempt.
#[test]
fn a_new_synchronous_checkpoints_first_writes_wait_for_the_placed_replica() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pa, pb) = (free_port(), free_port());
    let mut ca = node(1, a.path(), pa, &[(2, pb)]);
    // A slow scan: the first writes come long before the daemon looks.
    ca.scan = Duration::from_millis(300);
    let na = Node::start(ca, backend()).unwrap();
    let nb = Node::start(node(2, b.path(), pb, &[(1, pa)]), backend()).unwrap();
    // What `Service::open` sets where a daemon answers its `want`.
    let sa = Service::with_config(Config {
        node_id: 1,
        daemon_adopts: true,
        ..Config::with_dir(a.path())
    });
    let sb = service(b.path(), 2);
    let attrs = CreationAttributes {
        flags: CreationFlags::new(UpdateMode::AllReplicas, false),
        ..CreationAttributes::new(4, 64)
    };
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let name = "safCkpt=sync_first_writes";
    let c = sa.open(name, rwc, Some(&attrs)).unwrap();
    c.create_section(b"k", Time::END, b"first").unwrap();
    // Acknowledged: the peer holds it, now.
    assert_eq!(read(&sb, name, b"k").as_deref(), Some(&b"first"[..]));
    for i in 0..20u32 {
        c.overwrite(b"k", &i.to_le_bytes()).unwrap();
        assert_eq!(read(&sb, name, b"k"), Some(i.to_le_bytes().to_vec()));
    }
    // With the peer's daemon gone, a new synchronous checkpoint's writes
    // return once the link's first attempt failed (no replica is live).
    nb.stop();
    let other = "safCkpt=sync_peer_down";
    let d = sa.open(other, rwc, Some(&attrs)).unwrap();
    d.create_section(b"k", Time::END, b"alone").unwrap();
    d.overwrite(b"k", b"still alone").unwrap();
    drop((c, d));
    na.stop();
}

/// A synchronous checkpoint born waiting for its daemon (`ack::ADOPTION`)
/// that nobody adopts times out its writes, and stops waiting once it is
/// unlinked: no daemon adopts a name that is gone, and a handle kept on it
/// (a scratch checkpoint, as SA allows) must not time out for ever.
#[test]
fn an_unlinked_checkpoint_never_waits_for_its_daemon() {
    let d = tempfile::tempdir().unwrap();
    let s = Service::with_config(Config {
        daemon_adopts: true,
        ack_timeout: Duration::from_millis(200),
        ..Config::with_dir(d.path())
    });
    let attrs = CreationAttributes {
        flags: CreationFlags::new(UpdateMode::AllReplicas, false),
        ..CreationAttributes::new(4, 64)
    };
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let name = "safCkpt=scratch";
    let c = s.open(name, rwc, Some(&attrs)).unwrap();
    // No daemon here to adopt it: the write is made, and not confirmed.
    assert_eq!(
        c.create_section(b"k", Time::END, b"v").err(),
        Some(ckpt::SectionCreateError::Timeout)
    );
    s.unlink(name).unwrap();
    c.overwrite(b"k", b"after the unlink").unwrap();
    assert_eq!(c.read_section(b"k").unwrap(), b"after the unlink");
}

/// A link that is down shows the lag as it is, not as it was when the link
/// fell: the shipping end counts the frames its writers log meanwhile; the
/// following end, which cannot know how far the primary got, says so
/// (`None`, `?` in `ckpt peers`).
#[test]
fn a_down_link_shows_the_lag_as_it_is_not_as_it_was() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (na, nb) = pair(a.path(), b.path(), None);
    let (sa, sb) = (service(a.path(), 1), service(b.path(), 2));
    let name = "safCkpt=down_lag";
    let primary = create(&sa, name);
    primary.create_section(b"k", Time::END, b"0").unwrap();
    opened_on(&nb, name);
    until("the replica", || read(&sb, name, b"k").is_some());
    let link = |n: &Node, role: Role| {
        n.status()
            .links
            .into_iter()
            .find(|l| l.checkpoint == name && l.role == role)
    };
    until("no lag", || {
        link(&na, Role::Shipping).is_some_and(|l| l.lag == Some(0))
    });
    // The replica's node stops: 50 writes later, the shipping end lags by 50.
    let (pa, pb) = (na.status().listen, nb.status().listen);
    nb.stop();
    until("the shipping link to fall", || {
        link(&na, Role::Shipping).is_some_and(|l| !l.state.is_connected())
    });
    for i in 0..50u32 {
        primary.overwrite(b"k", &i.to_le_bytes()).unwrap();
    }
    until("the lag of 50 frames", || {
        link(&na, Role::Shipping).is_some_and(|l| l.lag == Some(50))
    });
    // The replica's node is back and catches up; then the primary's node
    // stops: the following end does not claim to be caught up.
    let nb = Node::start(node(2, b.path(), pb, &[(1, pa)]), backend()).unwrap();
    opened_on(&nb, name);
    until("the catch-up", || {
        link(&nb, Role::Following)
            .is_some_and(|l| l.lag == Some(0) && l.held == primary.segment().last_seq())
    });
    na.stop();
    until("the following link to fall", || {
        link(&nb, Role::Following).is_some_and(|l| !l.state.is_connected())
    });
    assert_eq!(link(&nb, Role::Following).unwrap().lag, None);
    drop(primary);
    nb.stop();
}

/// `saCkptCheckpointUnlink` is cluster-wide: on a node that holds no copy
/// (its link parked) or only a replica, the daemon has the primary's node
/// unlink the checkpoint (what `Service::unlink` asks a daemon's control
/// socket for; these daemons have none).
#[test]
fn an_unlink_where_no_copy_or_only_a_replica_is_done_by_the_primarys_node() {
    use ckpt::node::Unlinked;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (na, nb) = pair(a.path(), b.path(), None);
    let (sa, sb) = (service(a.path(), 1), service(b.path(), 2));
    let never = || false;
    // No copy on node 2: the link that offers it is parked.
    let (parked, replicated) = ("safCkpt=unlink_parked", "safCkpt=unlink_replica");
    let p1 = create(&sa, parked);
    p1.create_section(b"k", Time::END, b"kept").unwrap();
    until("the parked link", || {
        nb.status()
            .links
            .iter()
            .any(|l| l.checkpoint == parked && l.state == LinkState::Parked)
    });
    let name = ckpt::CheckpointName::new(parked).unwrap();
    assert_eq!(
        nb.handle().unlink(&name, WAIT, &never),
        Unlinked::Answered(1)
    );
    assert_eq!(
        sa.open(parked, OpenFlags::READ, None).err(),
        Some(ckpt::OpenError::NotExist)
    );
    // The opener on node 1 keeps its access, as after a local unlink.
    assert_eq!(p1.read_section(b"k").unwrap(), b"kept");
    // A replica on node 2: it applies the unlink before the answer is given.
    let p2 = create(&sa, replicated);
    p2.create_section(b"k", Time::END, b"v").unwrap();
    opened_on(&nb, replicated);
    let standby = sb.open(replicated, OpenFlags::READ, None).unwrap();
    let name = ckpt::CheckpointName::new(replicated).unwrap();
    assert_eq!(
        nb.handle().unlink(&name, WAIT, &never),
        Unlinked::Answered(1)
    );
    assert!(sb.open(replicated, OpenFlags::READ, None).is_err());
    assert!(sa.open(replicated, OpenFlags::READ, None).is_err());
    assert_eq!(standby.read_section(b"k").unwrap(), b"v");
    // Both links end.
    until("the links to end", || nb.status().links.is_empty());
    drop((p1, p2));
    na.stop();
    nb.stop();
}

#[test]
fn peers_without_the_key_or_not_configured_are_refused_and_counted() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (pa, pb) = (free_port(), free_port());
    // Node 1 ships to node 2 with a key node 2 does not share.
    let mut ca = node(1, a.path(), pa, &[(2, pb)]);
    ca.link.key = ClusterKey::new(b"the right key, sixteen bytes+")
        .map(Some)
        .unwrap();
    let mut cb = node(2, b.path(), pb, &[(1, pa)]);
    cb.link.key = ClusterKey::new(b"the wrong key, sixteen bytes+")
        .map(Some)
        .unwrap();
    let (na, nb) = (
        Node::start(ca, backend()).unwrap(),
        Node::start(cb, backend()).unwrap(),
    );
    let primary = create(&service(a.path(), 1), "safCkpt=node_refused");
    primary.create_section(b"k", Time::END, b"secret").unwrap();
    until("refusals on both ends", || {
        na.status().auth_failures > 0 && nb.status().auth_failures > 0
    });
    assert!(read(&service(b.path(), 2), "safCkpt=node_refused", b"k").is_none());
    let shipping = &na.status().links[0];
    assert_eq!(shipping.role, Role::Shipping);
    assert!(
        shipping
            .last
            .as_deref()
            .unwrap_or("")
            .contains("wrong cluster key"),
        "{shipping:?}"
    );
    nb.stop();
    // Node 3 is not node 2's peer: node 2 refuses what it offers.
    let pb = free_port();
    let nb = Node::start(node(2, b.path(), pb, &[(1, pa)]), backend()).unwrap();
    let n3 = Node::start(node(3, c.path(), any_port(), &[(2, pb)]), backend()).unwrap();
    let _p3 = create(&service(c.path(), 3), "safCkpt=node_stranger");
    until("the refusal", || nb.status().refused > 0);
    assert!(nb.status().links.is_empty());
    assert!(read(&service(b.path(), 2), "safCkpt=node_stranger", b"k").is_none());
    n3.stop();
    nb.stop();
    na.stop();
}

#[test]
fn a_bad_configuration_is_refused_with_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let mut c = node(1, d.path(), any_port(), &[(1, any_port())]);
    let e = Node::start(c.clone(), backend()).err().unwrap();
    assert!(e.to_string().contains("this node's id"), "{e}");
    c.peers = vec![];
    c.node = u32::MAX;
    let e = Node::start(c, backend()).err().unwrap();
    assert!(e.to_string().contains("node id"), "{e}");
}

/// The sections of checkpoint `name` as `s` reads them, sorted.
fn sections(s: &Service, name: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let c = s.open(name, OpenFlags::READ, None).unwrap();
    let mut out: Vec<_> = c
        .sections(ckpt::SectionsChosen::Any)
        .unwrap()
        .map(|d| {
            let id = d.id.as_bytes().to_vec();
            (id.clone(), c.read_section(&id).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_standby_on_the_replica_host_takes_over_and_the_deposed_primary_becomes_its_replica() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pa, pb) = (free_port(), free_port());
    let na = Node::start(node(1, a.path(), pa, &[(2, pb)]), backend()).unwrap();
    let nb = Node::start(node(2, b.path(), pb, &[(1, pa)]), backend()).unwrap();
    let (sa, sb) = (service(a.path(), 1), service(b.path(), 2));
    let name = "safCkpt=node_failover";
    let primary = create(&sa, name);
    primary
        .create_section(b"seq", Time::END, &0u64.to_le_bytes())
        .unwrap();
    opened_on(&nb, name);
    for n in 1..=100u64 {
        primary.overwrite(b"seq", &n.to_le_bytes()).unwrap();
    }
    let seq =
        |s: &Service| read(s, name, b"seq").map(|v| u64::from_le_bytes(v.try_into().unwrap()));
    until("the replica", || seq(&sb) == Some(100));
    // Node 1 is cut off (its daemon stops); its application writes on,
    // unseen by node 2: a history node 2 will never have.
    na.stop();
    for n in 101..=120u64 {
        primary.overwrite(b"seq", &n.to_le_bytes()).unwrap();
    }
    primary
        .create_section(b"only-on-1", Time::END, b"x")
        .unwrap();
    // The standby on node 2 takes over: its replica is promoted, in a new term.
    let standby = sb
        .open(name, OpenFlags::READ | OpenFlags::WRITE, None)
        .unwrap();
    let old_term = standby.segment().current_term();
    standby.set_active_replica().unwrap();
    assert!(!standby.segment().is_replica());
    assert_eq!(standby.segment().current_term(), old_term + 1);
    standby.overwrite(b"seq", &1000u64.to_le_bytes()).unwrap();
    // Node 1 comes back: node 2 ships to it; its copy, a primary of the
    // older term, becomes a replica of node 2's, byte for byte (its own
    // writes since the cut are gone), and its application can no longer
    // write.
    let na = Node::start(node(1, a.path(), pa, &[(2, pb)]), backend()).unwrap();
    until("node 1 to follow node 2", || seq(&sa) == Some(1000));
    let copy = sa.open(name, OpenFlags::READ, None).unwrap();
    assert!(copy.segment().is_replica());
    assert_eq!(sections(&sa, name), sections(&sb, name));
    assert!(primary.overwrite(b"seq", &7u64.to_le_bytes()).is_err());
    // Writes on node 2 reach node 1.
    standby.overwrite(b"seq", &1001u64.to_le_bytes()).unwrap();
    until("the next write on node 1", || seq(&sa) == Some(1001));
    assert!(nb
        .status()
        .links
        .iter()
        .any(|l| l.role == Role::Shipping && l.state == LinkState::Linked));
    na.stop();
    nb.stop();
}

/// Checkpoint `name` on node 1 (`sa`), retention 100 ms, active there, one
/// section, once node 2 (`sb`) holds it.
fn retained(sa: &Service, sb: &Service, nb: &Node, name: &str) -> ckpt::Checkpoint {
    let attrs = CreationAttributes {
        flags: CreationFlags::new(UpdateMode::ActiveReplica, true),
        retention_ns: 100_000_000,
        ..CreationAttributes::new(4, 64)
    };
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let c = sa.open(name, rwc, Some(&attrs)).unwrap();
    c.set_active_replica().unwrap();
    c.create_section(b"k", Time::END, b"v").unwrap();
    opened_on(nb, name);
    until("the replica", || read(sb, name, b"k").is_some());
    c
}

#[test]
fn a_standby_with_the_replica_open_on_another_host_keeps_the_checkpoint_alive() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (na, nb) = pair(a.path(), b.path(), None);
    let (sa, sb) = (service(a.path(), 1), service(b.path(), 2));
    let name = "safCkpt=node_remote_open";
    let c = retained(&sa, &sb, &nb, name);
    // The standby on node 2 opens the replica; its daemon tells node 1.
    let standby = sb.open(name, OpenFlags::READ, None).unwrap();
    until("node 1 to know the standby", || c.segment().remote_open());
    // The active process goes: nobody on node 1 has it open, but node 2's
    // standby does, so its retention does not run out.
    drop(c);
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        sa.open(name, OpenFlags::READ, None).is_ok(),
        "the primary was deleted while a standby on another host had it open"
    );
    // The standby closes: the retention runs out, everywhere.
    drop(standby);
    until("the replica to go", || {
        sb.open(name, OpenFlags::READ, None).is_err()
    });
    assert!(sa.open(name, OpenFlags::READ, None).is_err());
    na.stop();
    nb.stop();
}

#[test]
fn a_checkpoint_whose_retention_runs_out_is_unlinked_on_the_replicas_too() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (na, nb) = pair(a.path(), b.path(), None);
    let (sa, sb) = (service(a.path(), 1), service(b.path(), 2));
    let name = "safCkpt=node_retained";
    let c = retained(&sa, &sb, &nb, name);
    // The daemons' links do not keep it open: the last close starts the
    // retention clock; once it runs out the primary is deleted, and the
    // replica goes too.
    drop(c);
    until("the replica to go", || {
        sb.open(name, OpenFlags::READ, None).is_err()
    });
    assert!(sa.open(name, OpenFlags::READ, None).is_err());
    until("the links to end", || {
        na.status().links.is_empty() && nb.status().links.is_empty()
    });
}

/// SA Forum placement across three nodes: a collocated checkpoint gets a
/// replica only where it is opened (its other links park, and synchronous
/// writers wait for no parked peer); a non-collocated one goes where its
/// placement rule says, or everywhere without one; an unlink ends parked
/// links too.
#[test]
fn replicas_go_where_checkpoints_are_opened_or_placed_and_nowhere_else() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<_> = (0..3).map(|_| free_port()).collect();
    let nodes: Vec<Node> = (0..3u32)
        .map(|i| {
            let peers: Vec<_> = (0..3u32)
                .filter(|&j| j != i)
                .map(|j| (j + 1, ports[j as usize]))
                .collect();
            let mut c = node(i + 1, dirs[i as usize].path(), ports[i as usize], &peers);
            c.placement = vec![Placement {
                prefix: b"safCkpt=placed".to_vec(),
                nodes: vec![2],
            }];
            Node::start(c, backend()).unwrap()
        })
        .collect();
    let s: Vec<_> = (0..3u32)
        .map(|i| service(dirs[i as usize].path(), i + 1))
        .collect();
    let here = |i: usize, name: &str| s[i].open(name, OpenFlags::READ, None).is_ok();
    let parked = |i: usize, name: &str| {
        nodes[i].status().links.iter().any(|l| {
            l.checkpoint == name && l.role == Role::Following && l.state == LinkState::Parked
        })
    };
    let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let attrs = |mode: UpdateMode, collocated: bool| CreationAttributes {
        flags: CreationFlags::new(mode, collocated),
        ..CreationAttributes::new(4, 64)
    };

    // Collocated, synchronous: offered to nodes 2 and 3, who park it.
    let coll = "safCkpt=collocated";
    let c = s[0]
        .open(coll, rwc, Some(&attrs(UpdateMode::AllReplicas, true)))
        .unwrap();
    until("both links parked", || parked(1, coll) && parked(2, coll));
    // No replica holds it: a synchronous write waits for nobody.
    c.create_section(b"k", Time::END, b"v1").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !here(1, coll) && !here(2, coll),
        "replicas where nobody opened it"
    );
    // More frames than a batch carries, fewer than the ring holds.
    for i in 0..300u32 {
        c.overwrite(b"k", &(1_000_000 + i).to_le_bytes()).unwrap();
    }
    // A process on node 3 opens it: its replica comes, holding everything
    // written before (a snapshot, not the first batch of frames), and from
    // then on a synchronous write returns once node 3 holds it.
    opened_on(&nodes[2], coll);
    assert_eq!(
        read(&s[2], coll, b"k").as_deref(),
        Some(&1_000_299u32.to_le_bytes()[..]),
        "the replica arrived without what was written before the open"
    );
    let installed = nodes[2]
        .status()
        .links
        .iter()
        .find(|l| l.checkpoint == coll && l.role == Role::Following)
        .map(|l| l.snapshots);
    assert_eq!(installed, Some(1), "a wanted replica is made by a snapshot");
    for i in 0..20u32 {
        c.overwrite(b"k", &i.to_le_bytes()).unwrap();
        assert_eq!(
            read(&s[2], coll, b"k").as_deref(),
            Some(&i.to_le_bytes()[..]),
            "a synchronous write returned before node 3 held it"
        );
    }
    assert!(!here(1, coll) && parked(1, coll), "node 2 never opened it");
    // The shipping end shows it too, lagging by nothing (no replica); the
    // node that has it shows no lag once its last acknowledgement is in.
    let shipping = || -> Vec<_> {
        nodes[0]
            .status()
            .links
            .into_iter()
            .filter(|l| l.checkpoint == coll && l.role == Role::Shipping)
            .map(|l| (l.peer, l.state, l.lag))
            .collect()
    };
    until("the shipping end's view", || {
        let s = shipping();
        s.contains(&(2, LinkState::Parked, Some(0))) && s.contains(&(3, LinkState::Linked, Some(0)))
    });
    assert_eq!(
        nodes[1].want(&ckpt::CheckpointName::new("safCkpt=none").unwrap(), WAIT),
        Wanted::Unknown
    );

    // Non-collocated, placed on node 2 by the rule: there at once; node 3
    // parks it.
    let placed = "safCkpt=placed/1";
    let p = s[0]
        .open(placed, rwc, Some(&attrs(UpdateMode::ActiveReplica, false)))
        .unwrap();
    p.create_section(b"k", Time::END, b"p").unwrap();
    until("the placed replica", || read(&s[1], placed, b"k").is_some());
    until("node 3 parked", || parked(2, placed));
    assert!(!here(2, placed));

    // Non-collocated, no rule: everywhere.
    let all = "safCkpt=everywhere";
    let e = s[0]
        .open(all, rwc, Some(&attrs(UpdateMode::ActiveReplica, false)))
        .unwrap();
    e.create_section(b"k", Time::END, b"e").unwrap();
    until("both replicas", || {
        read(&s[1], all, b"k").is_some() && read(&s[2], all, b"k").is_some()
    });

    // Unlinked: the parked links end as well as the followed ones.
    for name in [coll, placed, all] {
        s[0].unlink(name).unwrap();
    }
    drop((c, p, e));
    until("every link to end", || {
        nodes.iter().all(|n| n.status().links.is_empty())
    });
    assert!((1..3).all(|i| [coll, placed, all].iter().all(|n| !here(i, n))));
    for n in nodes {
        n.stop();
    }
}

/// Static membership, two nodes cut apart, both sides promote: terms are
/// counted per copy, so both reach the same term with different writes
/// under the same sequence numbers. When they meet again the higher node id
/// wins on both sides; the other is demoted and, since its history cannot
/// be told from the winner's by number and term, rebuilt by a snapshot:
/// byte for byte the winner's (before, each refused the other forever).
/// With the daemons stopped (the nodes cut apart): a standby of `name` on
/// node 2's host (`on_2`) takes over (a new term), and node 1's active,
/// `primary`, sets itself active again (a new term too: the same number).
/// Then the same number of writes on each side (the same sequence numbers,
/// different contents: `k` ends as "one-19" on node 1, "two-19" on node 2)
/// and a section only on each ("only-on-1", "only-on-2"). Returns node 2's
/// new active.
fn split_at_equal_terms(
    primary: &ckpt::Checkpoint,
    on_2: &Service,
    name: &str,
) -> ckpt::Checkpoint {
    let standby = on_2
        .open(name, OpenFlags::READ | OpenFlags::WRITE, None)
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100)); // its primary went quiet
    standby.set_active_replica().unwrap();
    primary.set_active_replica().unwrap();
    assert_eq!(
        primary.segment().current_term(),
        standby.segment().current_term()
    );
    for i in 0..20u32 {
        primary
            .overwrite(b"k", format!("one-{i}").as_bytes())
            .unwrap();
        standby
            .overwrite(b"k", format!("two-{i}").as_bytes())
            .unwrap();
    }
    primary
        .create_section(b"only-on-1", Time::END, b"x")
        .unwrap();
    standby
        .create_section(b"only-on-2", Time::END, b"y")
        .unwrap();
    assert_eq!(primary.segment().last_seq(), standby.segment().last_seq());
    standby
}

#[test]
fn a_split_brain_of_equal_terms_resolves_to_the_higher_node_by_snapshot() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pa, pb) = (free_port(), free_port());
    let na = Node::start(node(1, a.path(), pa, &[(2, pb)]), backend()).unwrap();
    let nb = Node::start(node(2, b.path(), pb, &[(1, pa)]), backend()).unwrap();
    let (sa, sb) = (service(a.path(), 1), service(b.path(), 2));
    let name = "safCkpt=node_equal_terms";
    let primary = create(&sa, name);
    primary.create_section(b"k", Time::END, b"0").unwrap();
    opened_on(&nb, name);
    until("the replica", || {
        read(&sb, name, b"k").as_deref() == Some(b"0")
    });
    // Cut apart. Node 2's standby takes over (a new term); node 1's active
    // sets itself active again (a new term too: the same number).
    na.stop();
    nb.stop();
    let standby = split_at_equal_terms(&primary, &sb, name);
    // They meet again: node 2 (the higher id) wins.
    let na = Node::start(node(1, a.path(), pa, &[(2, pb)]), backend()).unwrap();
    let nb = Node::start(node(2, b.path(), pb, &[(1, pa)]), backend()).unwrap();
    until("node 1 to hold node 2's history", || {
        sa.open(name, OpenFlags::READ, None)
            .is_ok_and(|c| c.segment().is_replica())
            && sections(&sa, name) == sections(&sb, name)
    });
    assert!(!standby.segment().is_replica());
    assert_eq!(read(&sa, name, b"k").as_deref(), Some(&b"two-19"[..]));
    assert!(read(&sa, name, b"only-on-1").is_none());
    assert!(
        primary.overwrite(b"k", b"late").is_err(),
        "the loser still writes"
    );
    // And it follows on.
    standby.overwrite(b"k", b"after").unwrap();
    until("the next write", || {
        read(&sa, name, b"k").as_deref() == Some(b"after")
    });
    na.stop();
    nb.stop();
}

/// A third node that followed the loser of an equal-term split brain
/// takes the winner's history when the winner offers it (the same term
/// from a higher node): by snapshot, not by appending the winner's frames
/// to the loser's under the same numbers and term.
#[test]
fn a_replica_that_followed_the_loser_of_an_equal_term_split_takes_the_winners_history() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<_> = (0..3).map(|_| free_port()).collect();
    let start = |i: usize| {
        let peers: Vec<_> = (0..3)
            .filter(|&j| j != i)
            .map(|j| (j as u32 + 1, ports[j]))
            .collect();
        Node::start(
            node(i as u32 + 1, dirs[i].path(), ports[i], &peers),
            backend(),
        )
        .unwrap()
    };
    let s: Vec<_> = (0..3)
        .map(|i| service(dirs[i].path(), i as u32 + 1))
        .collect();
    let name = "safCkpt=node_equal_terms_three";
    let (n1, n2, n3) = (start(0), start(1), start(2));
    let primary = create(&s[0], name);
    primary.create_section(b"k", Time::END, b"0").unwrap();
    opened_on(&n2, name);
    opened_on(&n3, name);
    until("both replicas", || {
        (1..3).all(|i| read(&s[i], name, b"k").as_deref() == Some(b"0"))
    });
    // All apart. Node 2's standby takes over, node 1's active sets itself
    // active again: the same term on both.
    for n in [n1, n2, n3] {
        n.stop();
    }
    let standby = split_at_equal_terms(&primary, &s[1], name);
    // Nodes 1 and 3 meet first: node 3 follows node 1's history.
    let (n1, n3) = (start(0), start(2));
    until("node 3 to follow node 1", || {
        read(&s[2], name, b"only-on-1").is_some()
    });
    n3.stop();
    // Node 2 comes: it deposes node 1, and node 3 (restarted, so that node
    // 2's offer may come first) takes node 2's history, not node 1's with
    // node 2's frames after it.
    let n2 = start(1);
    let n3 = start(2);
    until("nodes 1 and 3 to hold node 2's history", || {
        let two = sections(&s[1], name);
        sections(&s[0], name) == two && sections(&s[2], name) == two
    });
    assert!(read(&s[2], name, b"only-on-1").is_none());
    assert_eq!(read(&s[2], name, b"k").as_deref(), Some(&b"two-19"[..]));
    standby.overwrite(b"k", b"after").unwrap();
    until("the next write on both replicas", || {
        [0, 2]
            .iter()
            .all(|&i| read(&s[i], name, b"k").as_deref() == Some(b"after"))
    });
    for n in [n1, n2, n3] {
        n.stop();
    }
}

/// A one-node cluster engine standing in for corosync: this node is the
/// only member, quorate, and its own messages come back in order.
struct Alone {
    events: Vec<ckpt::membership::Event>,
}

impl ckpt::membership::Engine for Alone {
    fn name(&self) -> &'static str {
        "alone"
    }
    fn local(&self) -> u32 {
        1
    }
    fn poll(&mut self, out: &mut Vec<ckpt::membership::Event>) -> Result<(), String> {
        out.append(&mut self.events);
        Ok(())
    }
    fn send(&mut self, message: &[u8]) -> Result<(), String> {
        use ckpt_core::cluster::{decode, ClusterMessage};
        match decode(message).map_err(|e| format!("{e:?}"))? {
            ClusterMessage::Hello(h) => self.events.push(ckpt::membership::Event::Hello(h)),
            ClusterMessage::Report(r) => self.events.push(ckpt::membership::Event::Report(r)),
        }
        Ok(())
    }
    fn address(&self) -> Result<std::net::IpAddr, String> {
        Ok("127.0.0.1".parse().unwrap())
    }
}

/// Under a cluster engine, a daemon that stops fences its copies first,
/// while it is still a member (without it, the node cannot know it has
/// quorum): an application's writes get TRY_AGAIN from then on.
#[test]
fn a_daemon_under_a_cluster_engine_fences_its_copies_when_it_stops() {
    use ckpt::membership::Event;
    let a = tempfile::tempdir().unwrap();
    let engine = Alone {
        events: vec![
            Event::Members([1].into_iter().collect()),
            Event::Quorum {
                quorate: true,
                ring: 1,
            },
        ],
    };
    let n = Node::start_with_engine(
        node(1, a.path(), free_port(), &[]),
        backend(),
        Box::new(engine),
    )
    .unwrap();
    // Settled (alone and quorate): writable.
    until("the node to settle", || !n.status().membership.fenced);
    let s = service(a.path(), 1);
    let c = create(&s, "safCkpt=node_halt_fence");
    c.create_section(b"k", Time::END, b"v").unwrap();
    assert!(!c.segment().is_fenced());
    n.stop();
    assert!(
        c.segment().is_fenced(),
        "a stopped daemon left its copy writable"
    );
    assert_eq!(c.overwrite(b"k", b"x"), Err(ckpt::WriteError::TryAgain));
}

/// In a daemon's first seconds, an open of a checkpoint no peer has offered
/// waits for an offer, but only as long as the open may: then it goes on
/// here (`Unknown`), not `TIMEOUT` (an application that starts with its
/// daemon and opens with a short timeout is not failed); the status says
/// when the offers are in.
#[test]
fn an_open_in_a_daemons_first_seconds_waits_only_its_own_timeout() {
    let a = tempfile::tempdir().unwrap();
    let n = Node::start(
        node(1, a.path(), free_port(), &[(2, free_port())]),
        backend(),
    )
    .unwrap();
    assert!(!n.status().offers_settled);
    let name = ckpt::CheckpointName::new("safCkpt=node_first_seconds").unwrap();
    let asked = Instant::now();
    assert_eq!(n.want(&name, Duration::from_millis(100)), Wanted::Unknown);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
    until("the offers to settle", || n.status().offers_settled);
    n.stop();
}

#[test]
fn an_open_just_after_a_peer_created_the_checkpoint_waits_for_its_first_offer() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (na, nb) = pair(a.path(), b.path(), None);
    until("the offers to settle", || {
        na.status().offers_settled && nb.status().offers_settled
    });
    let (sa, sb) = (service(a.path(), 1), service(b.path(), 2));
    let name = "safCkpt=node_first_offer";
    let checkpoint = ckpt::CheckpointName::new(name).unwrap();
    // An opener that would create it is told at once that nobody offers
    // it (it creates it here).
    let asked = Instant::now();
    let quick = nb.handle().want(&checkpoint, WAIT, false, &|| false);
    assert_eq!(quick, Wanted::Unknown);
    assert!(
        asked.elapsed() < Duration::from_millis(100),
        "{:?}",
        asked.elapsed()
    );
    // Created on node 1, opened without CREATE on node 2 at once: before
    // node 1's scan found it, nothing offered it, and the open waits for
    // the first offer rather than say it does not exist.
    let primary = create(&sa, name);
    primary.create_section(b"k", Time::END, b"v").unwrap();
    let asked = Instant::now();
    assert_eq!(nb.want(&checkpoint, WAIT), Wanted::Arrived);
    println!(
        "the replica was there {:?} after the creation",
        asked.elapsed()
    );
    assert_eq!(read(&sb, name, b"k").as_deref(), Some(&b"v"[..]));
    // A name nobody creates: `Unknown` once the first offer's wait is over.
    let none = ckpt::CheckpointName::new("safCkpt=node_first_offer_none").unwrap();
    let asked = Instant::now();
    assert_eq!(nb.want(&none, WAIT), Wanted::Unknown);
    assert!(asked.elapsed() < WAIT / 2, "{:?}", asked.elapsed());
    drop(primary);
    na.stop();
    nb.stop();
}

#[test]
fn a_checkpoint_created_here_is_offered_at_once_not_at_the_next_scan() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pa, pb) = (free_port(), free_port());
    // Scans a minute apart: only the look the creation sets off finds the
    // new checkpoint in time (a host that died before the next scan would
    // have taken every change with it).
    let mut ca = node(1, a.path(), pa, &[(2, pb)]);
    let mut cb = node(2, b.path(), pb, &[(1, pa)]);
    (ca.scan, cb.scan) = (Duration::from_secs(60), Duration::from_secs(60));
    let (na, nb) = (
        Node::start(ca, backend()).unwrap(),
        Node::start(cb, backend()).unwrap(),
    );
    let name = "safCkpt=node_offered_at_once";
    let checkpoint = ckpt::CheckpointName::new(name).unwrap();
    // The opener asks first (as `Service::open` does where a daemon serves
    // the directory), is told nobody offers it, and creates it.
    let short = Duration::from_millis(200);
    let told = na.handle().want(&checkpoint, short, false, &|| false);
    assert_eq!(told, Wanted::Unknown);
    let created = Instant::now();
    let primary = create(&service(a.path(), 1), name);
    until("a shipping link of the new checkpoint", || {
        na.status()
            .links
            .iter()
            .any(|l| l.checkpoint == name && l.role == Role::Shipping)
    });
    assert!(
        created.elapsed() < Duration::from_secs(5),
        "offered {:?} after its creation",
        created.elapsed()
    );
    drop(primary);
    na.stop();
    nb.stop();
}
