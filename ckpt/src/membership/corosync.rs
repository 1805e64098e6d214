//! The corosync binding: CPG group membership, rings and messages, and
//! the quorum service's decisions (votequorum's, the provider corosync must
//! be configured with), through `rust-corosync` (the corosync project's own
//! bindings).
//!
//! The bindings call plain function pointers from inside `dispatch`, on the
//! thread that dispatches; those functions queue [`Event`]s in a
//! thread-local list that `Corosync::poll` drains, so no state is shared
//! through globals. Dispatching with `DispatchFlags::All` does not block
//! (it takes what is there), so the node's membership thread polls both
//! libraries on a short period and also looks at its stop flag. The first
//! events (the group's view with this node in it, the ring, the current
//! quorum: tracking starts with a notification of the current state) come
//! at the first polls.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::net::{IpAddr, ToSocketAddrs};

use ckpt_core::cluster::{self, ClusterMessage};
use rust_corosync::cmap;
use rust_corosync::cpg;
use rust_corosync::quorum;
use rust_corosync::{DispatchFlags, NodeId, TrackFlags};

use super::{Engine, Event};

thread_local! {
    /// Events queued by the callbacks during a dispatch on this thread.
    static EVENTS: RefCell<Vec<Event>> = const { RefCell::new(Vec::new()) };
}

/// The most events queued between two polls (a flood from the engine is
/// cut: membership, ring and quorum events are never dropped; a member's
/// message that is becomes `Event::Dropped`, which keeps its report of the
/// round from counting).
const QUEUED_MAX: usize = 4096;

fn queue(e: Event) {
    EVENTS.with(|q| {
        let mut q = q.borrow_mut();
        let from = match &e {
            Event::Hello(h) => Some(h.node),
            Event::Report(r) => Some(r.node),
            _ => None,
        };
        match from {
            Some(node) if q.len() >= QUEUED_MAX => {
                if !q.contains(&Event::Dropped(node)) {
                    q.push(Event::Dropped(node));
                }
            }
            _ => q.push(e),
        }
    });
}

fn deliver(_: &cpg::Handle, _group: String, from: NodeId, _pid: u32, msg: &[u8], _len: usize) {
    let from = u32::from(from);
    match cluster::decode(msg) {
        // A member speaks only for itself.
        Ok(ClusterMessage::Hello(h)) if h.node == from => queue(Event::Hello(h)),
        Ok(ClusterMessage::Report(r)) if r.node == from => queue(Event::Report(r)),
        Ok(_) => {
            tracing::warn!("node {from} sent a cluster message in another node's name: ignored")
        }
        Err(e) => tracing::warn!("node {from} sent a malformed cluster message ({e:?}): ignored"),
    }
}

fn confchg(
    _: &cpg::Handle,
    _group: &str,
    members: Vec<cpg::Address>,
    _left: Vec<cpg::Address>,
    _joined: Vec<cpg::Address>,
) {
    let members: BTreeSet<u32> = members.iter().map(|a| u32::from(a.nodeid)).collect();
    queue(Event::Members(members));
}

fn quorum_changed(_: &quorum::Handle, quorate: bool, ring: quorum::RingId, _nodes: Vec<NodeId>) {
    queue(Event::Quorum {
        quorate,
        ring: ring.seq,
    });
}

/// One connection to the local corosync: joined to the daemons' group,
/// tracking quorum.
struct Connection {
    cpg: cpg::Handle,
    quorum: quorum::Handle,
    group: String,
    local: u32,
}

/// The local corosync as the node's membership [`Engine`]: connected at
/// start, connected again (every second) if the connection is lost.
pub struct Corosync {
    conn: Option<Connection>,
    group: String,
    local: u32,
    lost_at: std::time::Instant,
}

/// How long a lost connection waits before it is made again.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

impl Corosync {
    /// Connects to the local corosync and joins `group`.
    pub fn connect(group: &str) -> Result<Corosync, String> {
        let conn = Connection::connect(group)?;
        Ok(Corosync {
            local: conn.local,
            conn: Some(conn),
            group: group.to_string(),
            lost_at: std::time::Instant::now(),
        })
    }
}

impl Engine for Corosync {
    fn name(&self) -> &'static str {
        "corosync"
    }

    fn local(&self) -> u32 {
        self.local
    }

    fn poll(&mut self, out: &mut Vec<Event>) -> Result<(), String> {
        let Some(conn) = self.conn.as_mut() else {
            if self.lost_at.elapsed() >= RETRY {
                self.lost_at = std::time::Instant::now();
                match Connection::connect(&self.group) {
                    Ok(c) if c.local == self.local => {
                        tracing::info!("connected to corosync again");
                        self.conn = Some(c);
                    }
                    Ok(c) => {
                        tracing::error!(
                            "corosync now says this is node {}, not {}: not rejoining",
                            c.local,
                            self.local
                        )
                    }
                    Err(why) => tracing::debug!("{why}"),
                }
            }
            return Ok(());
        };
        if let Err(why) = conn.poll(out) {
            self.conn = None;
            self.lost_at = std::time::Instant::now();
            return Err(why);
        }
        Ok(())
    }

    fn send(&mut self, message: &[u8]) -> Result<(), String> {
        match self.conn.as_ref() {
            Some(c) => c.send(message),
            None => Err("not connected to corosync".into()),
        }
    }

    fn address(&self) -> Result<IpAddr, String> {
        match self.conn.as_ref() {
            Some(c) => c.ring0_address(),
            None => Err("not connected to corosync".into()),
        }
    }
}

fn err(what: &str, e: rust_corosync::CsError) -> String {
    format!("corosync {what}: {e}")
}

impl Connection {
    /// Connects to the local corosync, starts tracking quorum and joins
    /// `group`. Refused if corosync has no quorum provider (every partition
    /// would count as quorate).
    fn connect(group: &str) -> Result<Connection, String> {
        let model = cpg::ModelData::ModelV1(cpg::Model1Data {
            flags: cpg::Model1Flags::None,
            deliver_fn: Some(deliver),
            confchg_fn: Some(confchg),
            totem_confchg_fn: None,
        });
        let cpg = cpg::initialize(&model, 0).map_err(|e| err("cpg initialize", e))?;
        let local = u32::from(cpg::local_get(&cpg).map_err(|e| err("cpg local node", e))?);
        let model = quorum::ModelData::ModelV1(quorum::Model1Data {
            flags: quorum::Model1Flags::None,
            quorum_notification_fn: Some(quorum_changed),
            nodelist_notification_fn: None,
        });
        let (quorum, kind) =
            quorum::initialize(&model, 0).map_err(|e| err("quorum initialize", e))?;
        if matches!(kind, quorum::QuorumType::Free) {
            return Err("corosync has no quorum provider: configure `quorum { provider: corosync_votequorum }` (without one, every partition would count as quorate)".into());
        }
        quorum::trackstart(&quorum, TrackFlags::Changes).map_err(|e| err("quorum track", e))?;
        cpg::join(&cpg, group).map_err(|e| err(&format!("cpg join {group:?}"), e))?;
        Ok(Connection {
            cpg,
            quorum,
            group: group.to_string(),
            local,
        })
    }

    /// This node's address on corosync's first link (its nodelist entry's
    /// `ring0_addr`, resolved): what a daemon listening on every address
    /// tells its peers.
    fn ring0_address(&self) -> Result<IpAddr, String> {
        let map = cmap::initialize(cmap::Map::Icmap).map_err(|e| err("cmap", e))?;
        let pos = match cmap::get(&map, "nodelist.local_node_pos") {
            Ok(cmap::Data::UInt32(p)) => p,
            Ok(_) => return Err("corosync: nodelist.local_node_pos is not a number".into()),
            Err(e) => return Err(err("nodelist.local_node_pos", e)),
        };
        let key = format!("nodelist.node.{pos}.ring0_addr");
        let text = match cmap::get(&map, &key) {
            Ok(cmap::Data::String(s)) => s,
            Ok(_) => return Err(format!("corosync: {key} is not a string")),
            Err(e) => return Err(err(&key, e)),
        };
        (text.as_str(), 0)
            .to_socket_addrs()
            .map_err(|e| format!("corosync: {key} {text:?}: {e}"))?
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| format!("corosync: {key} {text:?}: no address"))
    }

    /// Takes what the engine has for us (never blocks); an error means the
    /// connection is lost.
    fn poll(&mut self, out: &mut Vec<Event>) -> Result<(), String> {
        // The group first, then the quorum, and never the other way round:
        // corosync sends a new ring's quorum decision before it delivers any
        // message of that ring, so by the time this node's own hello of the
        // ring has been read here, that decision is waiting on the quorum
        // socket and lands in the same batch of events (the tracker is
        // looked at after the whole batch). The reverse order could settle
        // on the old ring's quorum.
        let cpg = cpg::dispatch(&self.cpg, DispatchFlags::All);
        let quorum = quorum::dispatch(&self.quorum, DispatchFlags::All);
        EVENTS.with(|q| out.append(&mut q.borrow_mut()));
        cpg.map_err(|e| err("cpg dispatch", e))?;
        quorum.map_err(|e| err("quorum dispatch", e))
    }

    /// Multicasts `message` to the group, in agreed order. Corosync's flow
    /// control answers TRY_AGAIN when its queue is full: the caller sends
    /// again later.
    fn send(&self, message: &[u8]) -> Result<(), String> {
        cpg::mcast_joined(&self.cpg, cpg::Guarantee::TypeAgreed, message)
            .map_err(|e| err("cpg send", e))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = cpg::leave(&self.cpg, &self.group);
        let _ = quorum::trackstop(&self.quorum);
        // The handles finalize themselves when dropped.
    }
}
