//! Two node daemons in one process, each with its own segment directory
//! (two "hosts") on loopback: a checkpoint created on one appears on the
//! other byte for byte and follows its writes; the status shows the links;
//! an unlink reaches the replica; a peer that is not configured, or has
//! the wrong key, is refused and counted; stopping a node ends its links.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ckpt::node::{LinkState, Node, NodeConfig, Peer, Role};
use ckpt::replication::ClusterKey;
use ckpt::{Config, CreationAttributes, CreationFlags, OpenFlags, Service, Time, UpdateMode};
use ckpt_transport::{Auto, Choice};

const WAIT: Duration = Duration::from_secs(10);

fn backend() -> Auto {
    Auto::select(Choice::Auto).expect("a backend").0
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
    ca.link.key = key.map(|k| ClusterKey::new(k).unwrap());
    cb.link.key = ca.link.key.clone();
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
            l.role == Role::Shipping && l.state == LinkState::Linked && l.held == last && l.lag == 0
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
