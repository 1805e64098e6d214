//! The node daemon's engine, one per host (`ckpt daemon` runs it).
//!
//! It offers every checkpoint this host holds as a primary to every peer
//! (configured, or the members of its corosync group), and follows the
//! checkpoints its peers offer into local replicas, which local standbys
//! read and wait on as on a primary, where SA placement puts them: a
//! non-collocated checkpoint on the nodes its [`Placement`] rules name (no
//! rule: every peer), and any checkpoint on a node where a process opens it
//! ([`NodeHandle::want`]); elsewhere the link is parked. The
//! links are [`crate::replication`]'s: a link begins with the shipper's
//! offer, so the shipping node connects and one listening socket takes every
//! incoming link.
//!
//! Threads:
//! - the acceptor takes incoming connections; each runs on its own thread:
//!   authentication, the offer (from a peer only), then
//!   [`follow_offered`] into this host's replica;
//! - the scanner looks at the segment directory every [`NodeConfig::scan`]
//!   (and every few milliseconds for a second after a want answered
//!   `Unknown`: the asker may be creating a checkpoint):
//!   a new primary (or a new incarnation of one) gets a shipping link per
//!   peer; the links of an unlinked checkpoint end once the replica holds the
//!   unlink ([`Ended::Unlinked`]); for one deleted when its retention ran out
//!   the daemon logs the unlink itself (`Segment::log_expired`), so the
//!   replicas follow; links whose replica never acknowledges it end after
//!   [`LINGER`]; it sweeps the primaries'
//!   expired sections (logged deletes, which reach the replicas) and, through
//!   the listing, deletes checkpoints whose retention ran out;
//! - each shipping link runs on its own thread and reconnects after a
//!   failure with a backoff (50 ms doubling to [`NodeConfig::retry_max`]);
//!   the scanner starts links to peers that come and stops those of peers
//!   that go;
//! - with a cluster engine (corosync, [`crate::membership`]), the membership
//!   thread: members joining and leaving (a leaving member's links end at
//!   once), the members' hellos (where each listens: the peers) and
//!   reports, and quorum: a node whose partition has no quorum fences
//!   every copy it holds (no local writer, no promotion; new checkpoints
//!   are born fenced), and lifts the fences once quorate again with every
//!   member's report in (a primary that a member knows a newer term of is
//!   demoted first; a replica that the members elect, for a checkpoint
//!   whose active replica the service chooses and whose primary is not
//!   among them, is promoted). A daemon stopping in this mode leaves its copies
//!   fenced: without it the node cannot know it has quorum.
//!
//! Static membership: the configured peers; a link's liveness is its
//! heartbeats ([`ckpt_core::repl::LinkConfig::silence_ns`]). The daemon's
//! registrations on segments are links, not opens
//! ([`ckpt_shm::Segment::open_for_link`]): it never keeps a checkpoint from
//! its retention running out, and it keeps shipping what an application
//! committed after that application died.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ckpt_core::ais::SA_AIS_OK;
use ckpt_core::{CheckpointName, OpenFlags};
use ckpt_shm::{dir, Config, Segment};
use ckpt_transport::{Backend, Listener};

use crate::membership::{reachable, Action, Engine, Event, Membership, Tracker};
use crate::replication::{
    accept_offer, follow_offered, ship, Ended, LinkEvent, LinkOptions, LinkStats, ReplicationError,
};

/// How long the links of a checkpoint that is gone from this host (unlinked,
/// or deleted when its retention ran out) go on at most, for replicas that
/// have not acknowledged its unlink yet (a peer down for longer misses it).
pub const LINGER: Duration = Duration::from_secs(3600);
/// What a want waits for a first offer beyond two scans (a link's connect,
/// authentication and offer): [`Shared::first_offer_wait`].
const FIRST_OFFER_MARGIN: Duration = Duration::from_millis(500);
/// How often [`Node::want`] looks for the replica it waits for.
const WANT_POLL: Duration = Duration::from_millis(5);
/// Placement rules at most.
pub const PLACEMENT_RULES_MAX: usize = 256;
/// Checkpoints wanted at once at most ([`Node::want`]).
const WANTS_MAX: usize = 4096;
/// The first wait before a shipping link connects again.
const RETRY_MIN: Duration = Duration::from_millis(50);
/// How long the acceptor waits for a connection before it looks at the stop
/// flag again.
const ACCEPT_WAIT: Duration = Duration::from_millis(100);
/// How long a sleeping thread waits before it looks at its stop flag again.
const NAP: Duration = Duration::from_millis(20);
/// How long after a want answered `Unknown` the scanner looks often
/// ([`Shared::expect_created`]).
const SCAN_SOON: Duration = Duration::from_secs(1);
/// How often it looks then.
const SCAN_SOON_EVERY: Duration = Duration::from_millis(5);

/// A node this one replicates with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its node id (as its daemon and applications are configured).
    pub node: u32,
    /// Its name, for people.
    pub name: String,
    /// Where its daemon listens.
    pub address: SocketAddr,
}

/// Where the replicas of non-collocated checkpoints go: those whose name
/// begins with `prefix` get one on each node in `nodes` (and on any node
/// where a process opens them). The first rule that matches a name counts;
/// a name no rule matches gets a replica on every peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The names the rule is for (the empty prefix: every name).
    pub prefix: Vec<u8>,
    /// The nodes that hold a replica (this node's own id, if listed, is the
    /// primary's host and means nothing).
    pub nodes: Vec<u32>,
}

/// What a node daemon does.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id (the applications of this host must use the same).
    pub node: u32,
    /// This node's name, for people.
    pub name: String,
    /// Where this daemon listens for its peers' links.
    pub listen: SocketAddr,
    /// The other nodes.
    pub peers: Vec<Peer>,
    /// This host's segment directory (its `node_id` is set to `node`).
    pub segments: Config,
    /// How every link behaves (its `stats` is the daemon's own, per link).
    pub link: LinkOptions,
    /// How often the segment directory is looked at.
    pub scan: Duration,
    /// How long a connection to a peer may take.
    pub connect_timeout: Duration,
    /// The longest wait before a failed shipping link connects again.
    pub retry_max: Duration,
    /// Incoming links at most (each holds a thread and up to two message
    /// buffers of `link.max_message` bytes); more are refused.
    pub incoming_max: usize,
    /// Who the peers are: the configured ones (static), or the daemons in a
    /// corosync group, with quorum ([`crate::membership`]).
    pub membership: Membership,
    /// Where non-collocated checkpoints get replicas (no rule: on every
    /// peer). A collocated checkpoint gets a replica only where a process
    /// opens it (SA Forum placement; [`Node::want`]).
    pub placement: Vec<Placement>,
}

impl NodeConfig {
    /// A node with no peers and the default timings.
    pub fn new(node: u32, name: &str, listen: SocketAddr, segments: Config) -> NodeConfig {
        NodeConfig {
            node,
            name: name.to_string(),
            listen,
            peers: Vec::new(),
            segments,
            link: LinkOptions::default(),
            scan: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(2),
            retry_max: Duration::from_secs(2),
            incoming_max: 256,
            membership: Membership::Static,
            placement: Vec::new(),
        }
    }

    /// True if this node's primary of checkpoint `name` places a replica on
    /// `peer` without being asked: a non-collocated checkpoint, on the
    /// nodes of the first placement rule its name matches (no rule: every
    /// peer). Every other peer gets one once a process there opens it.
    pub fn places(&self, name: &CheckpointName, collocated: bool, peer: u32) -> bool {
        if collocated {
            return false;
        }
        self.placement
            .iter()
            .find(|r| name.as_bytes().starts_with(&r.prefix))
            .is_none_or(|r| r.nodes.contains(&peer))
    }

    /// Checks the configuration: a valid node id, peers with distinct ids
    /// other than this node's, non-zero timings.
    pub fn check(&self) -> Result<(), NodeError> {
        let bad = |why: String| Err(NodeError::Config(why));
        let max = ckpt_core::frame::NODE_ID_MAX;
        if self.node > max {
            return bad(format!("node id {} is above {max}", self.node));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.peers {
            if p.node > max {
                return bad(format!("peer {}: node id above {max}", p.name));
            }
            if p.node == self.node {
                return bad(format!("peer {} has this node's id ({})", p.name, p.node));
            }
            if !seen.insert(p.node) {
                return bad(format!("two peers have node id {}", p.node));
            }
        }
        if self.scan.is_zero() || self.connect_timeout.is_zero() || self.retry_max.is_zero() {
            return bad("the scan interval, connect timeout and retry limit must not be 0".into());
        }
        if self.incoming_max == 0 {
            return bad("incoming_max must be at least 1".into());
        }
        if self.placement.len() > PLACEMENT_RULES_MAX {
            return bad(format!(
                "{} placement rules: at most {PLACEMENT_RULES_MAX}",
                self.placement.len()
            ));
        }
        for r in &self.placement {
            let shown = String::from_utf8_lossy(&r.prefix);
            if r.prefix.len() > ckpt_core::name::CHECKPOINT_NAME_BYTES_MAX {
                return bad(format!("placement prefix {shown:?} is longer than a name"));
            }
            if let Some(n) = r.nodes.iter().find(|&&n| n > max) {
                return bad(format!("placement {shown:?}: node id {n} is above {max}"));
            }
        }
        if !self.membership.available() {
            return bad(format!(
                "membership {:?}: this build has no corosync support (build with the `corosync` feature)",
                self.membership.as_str()
            ));
        }
        if let Membership::Corosync { group } = &self.membership {
            if group.is_empty() || group.len() > 127 {
                return bad(format!("corosync group {group:?}: 1 to 127 bytes"));
            }
        }
        Ok(())
    }
}

/// Whether peers offer a checkpoint to this node ([`Shared::may_offer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offer {
    /// A link for it is up, or was moments ago.
    Seen,
    /// None yet, but the daemon just started: one may come.
    Starting,
    /// None.
    None,
}

/// What [`Node::want`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// This host holds a copy already (its primary, or a replica).
    Here,
    /// A peer offered it and its replica is here now.
    Arrived,
    /// No peer has offered a checkpoint of that name to this node (none
    /// exists on a connected peer, as far as this node knows).
    Unknown,
    /// A peer offered it, and its replica did not arrive in time.
    TimedOut,
}

impl Wanted {
    /// Its name in the control protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Wanted::Here => "here",
            Wanted::Arrived => "arrived",
            Wanted::Unknown => "unknown",
            Wanted::TimedOut => "timeout",
        }
    }

    /// The answer named `s` ([`Wanted::as_str`]).
    pub fn parse(s: &str) -> Option<Wanted> {
        [
            Wanted::Here,
            Wanted::Arrived,
            Wanted::Unknown,
            Wanted::TimedOut,
        ]
        .into_iter()
        .find(|w| w.as_str() == s)
    }
}

/// What [`NodeHandle::unlink`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlinked {
    /// The primary's node answered with this SA error code (1, `SA_AIS_OK`:
    /// unlinked there, and this host's replica, if any, is gone too).
    Answered(u32),
    /// No peer offers a checkpoint of that name to this node (nor did
    /// lately).
    Unknown,
    /// A peer offers it, and no answer came in time.
    TimedOut,
}

impl Unlinked {
    /// Its form in the control protocol: the code, `unknown` or `timeout`.
    pub fn to_text(self) -> String {
        match self {
            Unlinked::Answered(code) => code.to_string(),
            Unlinked::Unknown => "unknown".into(),
            Unlinked::TimedOut => "timeout".into(),
        }
    }

    /// The answer written `s` ([`Unlinked::to_text`]).
    pub fn parse(s: &str) -> Option<Unlinked> {
        match s {
            "unknown" => Some(Unlinked::Unknown),
            "timeout" => Some(Unlinked::TimedOut),
            code => code.parse().ok().map(Unlinked::Answered),
        }
    }
}

/// Why a node daemon could not start.
#[derive(Debug)]
pub enum NodeError {
    /// The configuration is wrong: why.
    Config(String),
    /// The listening socket could not be made.
    Listen(io::Error),
    /// The cluster engine could not be joined: why.
    Membership(String),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Config(why) => write!(f, "configuration: {why}"),
            NodeError::Listen(e) => write!(f, "listen: {e}"),
            NodeError::Membership(why) => write!(f, "membership: {why}"),
        }
    }
}

impl std::error::Error for NodeError {}

/// Which end of a link this node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Role {
    /// This node holds the primary and ships it.
    Shipping,
    /// This node holds a replica and applies what the peer ships.
    Following,
}

impl Role {
    /// Its name in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Shipping => "shipping",
            Role::Following => "following",
        }
    }
}

/// Where a link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum LinkState {
    /// Connecting (or authenticating).
    Connecting,
    /// Connected: frames flow.
    Linked,
    /// Connected, but this node holds no replica and wants none yet (the
    /// checkpoint is collocated, or placed on other nodes, and nobody here
    /// has opened it): heartbeats only, until a process here opens it.
    Parked,
    /// The last connection ended; another follows after a backoff (a
    /// shipping link) or when the peer connects again (a following one).
    Down,
    /// The link is over (its checkpoint was unlinked, or the daemon stops).
    Ended,
    /// Connected, and installing a snapshot of the primary (a following
    /// link; how far behind it is, is known at the snapshot's end). Shown,
    /// never stored: a linked link's stats say it.
    Installing,
}

impl LinkState {
    /// In declaration order (a state is stored as its index).
    const ALL: [LinkState; 6] = [
        LinkState::Connecting,
        LinkState::Linked,
        LinkState::Parked,
        LinkState::Down,
        LinkState::Ended,
        LinkState::Installing,
    ];

    /// True while a connection is up (linked or parked).
    pub fn is_connected(self) -> bool {
        matches!(
            self,
            LinkState::Linked | LinkState::Parked | LinkState::Installing
        )
    }

    /// Its name in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::Linked => "linked",
            LinkState::Parked => "parked",
            LinkState::Down => "down",
            LinkState::Ended => "ended",
            LinkState::Installing => "installing",
        }
    }
}

/// One link as the daemon tracks it.
struct LinkEntry {
    checkpoint: CheckpointName,
    role: Role,
    peer: u32,
    address: Mutex<Option<SocketAddr>>,
    state: AtomicU8,
    stats: Arc<LinkStats>,
    stop: AtomicBool,
    /// Stopped because its peer left the membership: the scan replaces it
    /// if the peer comes back.
    dropped: AtomicBool,
    connects: AtomicU64,
    /// How the last connection ended (or why it could not be made).
    last: Mutex<Option<String>>,
    /// A shipping link's primary: its status reads the log's last frame
    /// there, whatever the link is doing (a shipper blocked in a send to a
    /// peer that stopped reading does not note it).
    primary: Option<Arc<Segment>>,
}

impl LinkEntry {
    fn new(checkpoint: CheckpointName, role: Role, peer: u32) -> LinkEntry {
        LinkEntry {
            checkpoint,
            role,
            peer,
            address: Mutex::new(None),
            state: AtomicU8::new(LinkState::Connecting as u8),
            stats: Arc::new(LinkStats::default()),
            stop: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            last: Mutex::new(None),
            primary: None,
        }
    }

    fn set(&self, state: LinkState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    fn state(&self) -> LinkState {
        LinkState::ALL
            [usize::from(self.state.load(Ordering::Relaxed)).min(LinkState::ALL.len() - 1)]
    }

    /// Records how a connection ended and logs it, as a warning if `bad`;
    /// the same outcome again is logged at debug level only (a peer that
    /// stays down does not fill the log).
    fn outcome(&self, what: String, bad: bool) {
        let mut last = lock(&self.last);
        let repeated = last.as_deref() == Some(what.as_str());
        match (repeated, bad) {
            (true, _) => tracing::debug!("{what}"),
            (false, true) => tracing::warn!("{what}"),
            (false, false) => tracing::info!("{what}"),
        }
        *last = Some(what);
    }

    fn status(&self) -> LinkStatus {
        let s = &self.stats;
        let installing = self.role == Role::Following && s.installing.load(Ordering::Relaxed);
        if let Some(primary) = &self.primary {
            s.primary_reached(primary.last_seq());
        }
        LinkStatus {
            checkpoint: self.checkpoint.to_string(),
            role: self.role,
            peer: self.peer,
            address: *lock(&self.address),
            // A connected link whose follower parked it (either end), or
            // that installs a snapshot (the following end).
            state: match self.state() {
                LinkState::Linked if s.parked.load(Ordering::Relaxed) => LinkState::Parked,
                LinkState::Linked if installing => LinkState::Installing,
                // Connected, and nothing heard yet: the peer's kernel took
                // the connection, its daemon may be stopped.
                LinkState::Linked
                    if self.role == Role::Shipping && !s.heard.load(Ordering::Relaxed) =>
                {
                    LinkState::Connecting
                }
                other => other,
            },
            held: s.held.load(Ordering::Relaxed),
            primary: s.primary.load(Ordering::Relaxed),
            // Unknown at a following end that is not connected, or that
            // installs a snapshot (the primary's position comes at its end).
            lag: (self.role == Role::Shipping || self.state().is_connected() && !installing)
                .then(|| s.lag()),
            term: s.term.load(Ordering::Relaxed),
            frames: s.frames.load(Ordering::Relaxed),
            snapshots: s.snapshots.load(Ordering::Relaxed),
            connects: self.connects.load(Ordering::Relaxed),
            last: lock(&self.last).clone(),
        }
    }
}

/// A link's key in the table: one link per role, checkpoint and peer.
type LinkKey = (Role, CheckpointName, u32);

/// The node's state, shared by its threads.
struct Shared {
    config: NodeConfig,
    backend: &'static str,
    stop: AtomicBool,
    links: Mutex<BTreeMap<LinkKey, Arc<LinkEntry>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    incoming: AtomicU64,
    auth_failures: AtomicU64,
    refused: AtomicU64,
    started: Instant,
    /// The membership (an engine's); `None` in static mode.
    tracker: Mutex<Option<Tracker>>,
    /// Each copy as this node last reported it to a member (by name and
    /// incarnation): an election here counts this node's copy as the
    /// others saw it.
    reported: Mutex<BTreeMap<(Vec<u8>, u64), ckpt_core::cluster::CopyState>>,
    /// The membership's name in status output.
    mode: &'static str,
    /// Checkpoints a process of this host opened that the host held no copy
    /// of, until when they are wanted: their parked links subscribe
    /// ([`Node::want`]).
    wants: Mutex<BTreeMap<CheckpointName, Instant>>,
    /// Checkpoints peers offered, and when (their link came up, or ended):
    /// a want waits for a link that drops to come back ([`Shared::may_offer`]).
    offered: Mutex<BTreeMap<CheckpointName, Instant>>,
    /// Until when the scanner looks every [`SCAN_SOON_EVERY`]: a want was
    /// answered `Unknown`, so a process of this host may be creating a
    /// checkpoint, whose links should start at once (a host that dies in
    /// its first scan interval took every change with it).
    scan_soon: Mutex<Option<Instant>>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The peers links go to now: the configured ones (static), or the
    /// members that said where they listen (corosync; a configured peer's
    /// address serves for a member that has not said yet).
    fn live_peers(&self) -> Vec<Peer> {
        let tracker = lock(&self.tracker);
        let Some(t) = tracker.as_ref() else {
            return self.config.peers.clone();
        };
        t.members()
            .iter()
            .filter(|&&n| n != self.config.node)
            .filter_map(|&node| {
                let configured = self.config.peers.iter().find(|p| p.node == node);
                Some(Peer {
                    node,
                    name: configured.map_or_else(|| format!("node{node}"), |p| p.name.clone()),
                    address: t.address(node).or(configured.map(|p| p.address))?,
                })
            })
            .collect()
    }

    /// True if `node` is a peer now: configured (static), or a member of the
    /// group (corosync).
    fn is_member(&self, node: u32) -> bool {
        match lock(&self.tracker).as_ref() {
            None => self.config.peers.iter().any(|p| p.node == node),
            Some(t) => node != self.config.node && t.members().contains(&node),
        }
    }

    /// Starts a thread; false (logged) if the system has none to give.
    fn spawn(&self, name: &str, f: impl FnOnce() + Send + 'static) -> bool {
        match std::thread::Builder::new().name(name.into()).spawn(f) {
            Ok(handle) => {
                lock(&self.threads).push(handle);
                true
            }
            Err(e) => {
                tracing::error!("cannot start a thread for {name}: {e}");
                false
            }
        }
    }

    /// Naps between two scans: [`NodeConfig::scan`], or
    /// [`SCAN_SOON_EVERY`] while a checkpoint may be being created here
    /// ([`Shared::scan_soon`]).
    fn nap_between_scans(&self) {
        let until = Instant::now() + self.config.scan;
        loop {
            let now = Instant::now();
            if now >= until || self.stopping() {
                return;
            }
            let soon = lock(&self.scan_soon).is_some_and(|t| now < t);
            let step = if soon { SCAN_SOON_EVERY } else { NAP };
            std::thread::sleep(step.min(until - now));
            if soon {
                return;
            }
        }
    }

    /// A want was answered `Unknown`: the asker may create the checkpoint
    /// here now, so the scanner looks often for a while
    /// ([`Shared::scan_soon`]).
    fn expect_created(&self) {
        *lock(&self.scan_soon) = Some(Instant::now() + SCAN_SOON);
    }

    /// Sleeps `wait`, or less if the node or `link` stops.
    fn nap(&self, wait: Duration, link: &AtomicBool) {
        let until = Instant::now() + wait;
        while Instant::now() < until && !self.stopping() && !link.load(Ordering::Relaxed) {
            std::thread::sleep(NAP.min(until.saturating_duration_since(Instant::now())));
        }
    }

    /// The options of one link: the node's, counting into `entry`, events
    /// logged in the link's span.
    fn link_options(&self, entry: &LinkEntry) -> LinkOptions {
        LinkOptions {
            stats: Some(entry.stats.clone()),
            on_event: Some(log_event),
            ..self.config.link.clone()
        }
    }

    /// True if this host holds a copy of `name` (a published file: a
    /// snapshot being installed is not one yet).
    fn here(&self, name: &CheckpointName) -> bool {
        dir::is_present(&self.config.segments, name)
    }

    /// How long a peer's offer is remembered after its link ended (and how
    /// long after the start a peer may take to offer): a link that drops
    /// comes back within its retry backoff and a scan.
    fn offer_memory(&self) -> Duration {
        self.config.retry_max + self.config.scan + Duration::from_secs(1)
    }

    /// The link that follows `name` on this node, if one is in a state
    /// `state` accepts (each connection has an entry of its own).
    fn following(
        &self,
        name: &CheckpointName,
        state: impl Fn(LinkState) -> bool,
    ) -> Option<Arc<LinkEntry>> {
        lock(&self.links)
            .iter()
            .find(|((role, n, _), e)| *role == Role::Following && n == name && state(e.state()))
            .map(|(_, e)| e.clone())
    }

    /// How long a want waits for a first offer when none was seen: a
    /// peer's scan finds a checkpoint created there within
    /// [`NodeConfig::scan`], and its link needs a moment to connect and
    /// offer.
    fn first_offer_wait(&self) -> Duration {
        2 * self.config.scan + FIRST_OFFER_MARGIN
    }

    /// Whether a peer offers `name` to this node now (its link is up) or
    /// did within [`Shared::offer_memory`] (`Offer::Seen`), may yet (the
    /// daemon started less than that ago: `Offer::Starting`), or not.
    fn may_offer(&self, name: &CheckpointName) -> Offer {
        let memory = self.offer_memory();
        let linked = self.following(name, LinkState::is_connected).is_some();
        let remembered = || {
            lock(&self.offered)
                .get(name)
                .is_some_and(|at| at.elapsed() < memory)
        };
        if linked || remembered() {
            Offer::Seen
        } else if self.started.elapsed() < memory {
            Offer::Starting
        } else {
            Offer::None
        }
    }

    /// A peer offers `name`, or its link for it ended: remembered for
    /// [`Shared::offer_memory`] from now (`false`: forgotten, as after an
    /// unlink the replica applied).
    fn offer_seen(&self, name: &CheckpointName, remember: bool) {
        let mut offered = lock(&self.offered);
        if !remember {
            offered.remove(name);
            return;
        }
        if offered.len() >= WANTS_MAX && !offered.contains_key(name) {
            let memory = self.offer_memory();
            offered.retain(|_, at| at.elapsed() < memory);
            if offered.len() >= WANTS_MAX {
                // Still full: the oldest goes.
                if let Some(k) = offered
                    .iter()
                    .min_by_key(|(_, a)| **a)
                    .map(|(k, _)| k.clone())
                {
                    offered.remove(&k);
                }
            }
        }
        offered.insert(name.clone(), Instant::now());
    }

    /// True if a process of this host wants a replica of `name` now.
    fn wanted(&self, name: &CheckpointName) -> bool {
        lock(&self.wants)
            .get(name)
            .is_some_and(|until| Instant::now() < *until)
    }

    /// Counts and logs a link's failure.
    fn failed(&self, entry: &LinkEntry, e: &ReplicationError) {
        if matches!(e, ReplicationError::Unauthenticated(_)) {
            self.auth_failures.fetch_add(1, Ordering::Relaxed);
        }
        entry.outcome(format!("link failed: {e}"), true);
    }
}

fn log_event(e: &LinkEvent) {
    tracing::info!("{e}");
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A handle on a running node daemon: it asks for replicas
/// ([`Node::handle`]). Once the node stops, a want finds nothing offered.
#[derive(Clone)]
pub struct NodeHandle {
    shared: Arc<Shared>,
}

impl NodeHandle {
    /// What a want of `name` finds without waiting: `Some(Here)` if this
    /// host holds a copy, `Some(Unknown)` if no peer offers it, nor did
    /// lately, and the daemon is not just starting (a peer's link comes up
    /// within its retry limit and a scan, plus a second); `None` if a want
    /// would wait for a replica.
    pub fn offered(&self, name: &CheckpointName) -> Option<Wanted> {
        let sh = &self.shared;
        if sh.here(name) {
            return Some(Wanted::Here);
        }
        (sh.may_offer(name) == Offer::None).then_some(Wanted::Unknown)
    }

    /// A process of this host opens checkpoint `name`, which this host may
    /// hold no copy of: if a peer offers it (its link to this node is
    /// parked, or running; or was, moments ago), this node wants a replica
    /// and waits up to `wait` for it to be here, installed by a snapshot
    /// taken after the want (so it holds every change made before). A
    /// collocated checkpoint, or one placed on other nodes, gets a replica
    /// on this node this way (SA Forum placement: "where the checkpoint is
    /// opened"). The want lasts `wait` (at least a second): a link that
    /// reconnects meanwhile subscribes too. `cancelled` is asked at every
    /// look (the asker went away: the wait ends, as `TimedOut`).
    ///
    /// With `existing` (an open without `CREATE`), a checkpoint no peer has
    /// offered is waited for up to two scans and a moment more
    /// (`Shared::first_offer_wait`, within `wait`): a peer may have created
    /// it just now. Otherwise the answer is `Unknown` at once, and the
    /// opener creates it here.
    pub fn want(
        &self,
        name: &CheckpointName,
        wait: Duration,
        existing: bool,
        cancelled: &dyn Fn() -> bool,
    ) -> Wanted {
        let wanted = self.want_of(name, wait, existing, cancelled);
        if wanted == Wanted::Unknown {
            // The asker goes on here, and may create it.
            self.shared.expect_created();
        }
        wanted
    }

    /// [`Node::want`], but for what its answer sets off.
    fn want_of(
        &self,
        name: &CheckpointName,
        wait: Duration,
        existing: bool,
        cancelled: &dyn Fn() -> bool,
    ) -> Wanted {
        let sh = &self.shared;
        match self.offered(name) {
            Some(Wanted::Unknown) if existing => {}
            Some(quick) => return quick,
            None => {}
        }
        let started = Instant::now();
        {
            let mut wants = lock(&sh.wants);
            wants.retain(|_, until| started < *until);
            if wants.len() >= WANTS_MAX && !wants.contains_key(name) {
                // The one wanted longest is dropped (it has waited longest).
                if let Some(k) = wants
                    .iter()
                    .min_by_key(|(_, u)| **u)
                    .map(|(k, _)| k.clone())
                {
                    wants.remove(&k);
                }
            }
            let until = started + wait.max(Duration::from_secs(1));
            let e = wants.entry(name.clone()).or_insert(until);
            *e = (*e).max(until);
        }
        tracing::info!(checkpoint = %name, "opened here: a replica is wanted on this node");
        loop {
            if sh.here(name) {
                return Wanted::Arrived;
            }
            let offer = match sh.may_offer(name) {
                // Opened without CREATE: a peer may have created it a moment
                // ago (its scan finds a new checkpoint within a scan and its
                // link comes up soon after), so a first offer is waited for
                // that long.
                Offer::None if existing && started.elapsed() < sh.first_offer_wait() => {
                    Offer::Starting
                }
                offer => offer,
            };
            if offer == Offer::None {
                // Nothing offers it (the offer is gone: its link ended, as
                // for an unlink, and did not come back; or none came).
                return Wanted::Unknown;
            }
            if started.elapsed() >= wait || sh.stopping() || cancelled() {
                // Nothing was ever offered, only the start (or the first
                // offer's wait) left time for it: the asker's time is up,
                // and as far as this node knows no peer holds it (an open
                // with a short timeout goes on here rather than fail).
                if offer == Offer::Starting {
                    return Wanted::Unknown;
                }
                return Wanted::TimedOut;
            }
            std::thread::sleep(WANT_POLL);
        }
    }

    /// A process of this host unlinks checkpoint `name`, of which this host
    /// holds no copy or only a replica: this node asks the primary's node,
    /// over the link that offers it here (parked or following), to unlink
    /// it, and waits up to `wait` for the answer, and after a successful
    /// one for this host's replica to apply the unlink. A link that
    /// reconnects meanwhile sends the request again. `cancelled` is asked at
    /// every look (the asker went away).
    pub fn unlink(
        &self,
        name: &CheckpointName,
        wait: Duration,
        cancelled: &dyn Fn() -> bool,
    ) -> Unlinked {
        let sh = &self.shared;
        let started = Instant::now();
        let mut asked: Option<(Arc<LinkEntry>, u64)> = None;
        loop {
            match asked
                .as_ref()
                .and_then(|(e, n)| e.stats.unlink_answered(*n))
            {
                // The replica here leaves the name once it applies the
                // unlink's frame.
                Some(SA_AIS_OK) if sh.here(name) => {}
                Some(code) => return Unlinked::Answered(code),
                None => {
                    match sh.following(name, LinkState::is_connected) {
                        // Each connection has an entry of its own: a link
                        // that reconnected before answering is asked again.
                        Some(e) if !asked.as_ref().is_some_and(|(a, _)| Arc::ptr_eq(a, &e)) => {
                            tracing::info!(checkpoint = %name, primary = e.peer, "unlinked here: the primary's node is asked to unlink it");
                            let n = e.stats.ask_unlink();
                            asked = Some((e, n));
                        }
                        None if asked.is_none() && sh.may_offer(name) == Offer::None => {
                            return Unlinked::Unknown
                        }
                        _ => {}
                    }
                }
            }
            if started.elapsed() >= wait || sh.stopping() || cancelled() {
                // Never offered, only the start left time for it: as far
                // as this node knows, no peer holds it.
                if asked.is_none() && sh.may_offer(name) == Offer::Starting {
                    return Unlinked::Unknown;
                }
                return Unlinked::TimedOut;
            }
            std::thread::sleep(WANT_POLL);
        }
    }
}

impl NodeHandle {
    /// A process of this host changed checkpoint `name`, of which this host
    /// holds a replica: this node sends the change (`request`, a
    /// [`ckpt_core::frame::ForwardRequest`]'s bytes) to the primary over the
    /// link that follows it here, waits up to `wait` for the answer and,
    /// if the change was made, for this host's replica to hold it (see
    /// [`crate::forward`]). A request the link had not sent when it ended
    /// goes on the next one; one it had sent is `TimedOut` (made or not).
    /// `cancelled` is asked at every look (the asker went away).
    pub fn forward(
        &self,
        name: &CheckpointName,
        request: Vec<u8>,
        wait: Duration,
        cancelled: &dyn Fn() -> bool,
    ) -> crate::forward::Forwarded {
        use crate::forward::{untried, Forwarded, RESULT_BUSY, RESULT_TOO_LARGE};
        use crate::replication::ForwardState;
        let sh = &self.shared;
        let started = Instant::now();
        // A message the link's ends take (with an encrypted link's tag).
        let room = ckpt_core::frame::MESSAGE_HEADER_BYTES + 64;
        if request.len() + room > sh.config.link.max_message {
            return Forwarded::Answered(untried(RESULT_TOO_LARGE));
        }
        let mut request = Some(request);
        let mut asked: Option<(Arc<LinkEntry>, u64)> = None;
        loop {
            let over = started.elapsed() >= wait || sh.stopping() || cancelled();
            match asked.take() {
                Some((e, ask)) => {
                    let look = FORWARD_LOOK.min(wait.saturating_sub(started.elapsed()));
                    match e.stats.forwarded(ask, look) {
                        ForwardState::Answered(reply) => {
                            return self.forwarded_here(name, &e, reply, started + wait);
                        }
                        ForwardState::Queued if over || !e.state().is_connected() => {
                            // Never sent: another link may send it.
                            request = e.stats.take_back(ask);
                        }
                        ForwardState::Sent if over || !e.state().is_connected() => {
                            e.stats.take_back(ask);
                            return Forwarded::TimedOut;
                        }
                        ForwardState::Unknown => return Forwarded::TimedOut,
                        _ => asked = Some((e, ask)),
                    }
                }
                None => {
                    let link = sh.following(name, |state| state == LinkState::Linked);
                    match (link, request.take()) {
                        (Some(e), Some(bytes)) => match e.stats.forward(bytes) {
                            Some(ask) => asked = Some((e, ask)),
                            None => return Forwarded::Answered(untried(RESULT_BUSY)),
                        },
                        (None, Some(bytes)) => {
                            if sh.may_offer(name) == Offer::None {
                                return Forwarded::Unknown;
                            }
                            request = Some(bytes);
                        }
                        (_, None) => return Forwarded::TimedOut,
                    }
                }
            }
            if asked.is_none() {
                if over {
                    return Forwarded::TimedOut;
                }
                std::thread::sleep(FORWARD_LOOK.min(WANT_POLL));
            }
        }
    }

    /// The primary answered `reply` on link `e`: if the change was made,
    /// waits until this host's replica of `name` holds its frame, as the
    /// link applied it or (should the link end meanwhile) as the replica's
    /// file says; `TimedOut` at `deadline`.
    fn forwarded_here(
        &self,
        name: &CheckpointName,
        e: &LinkEntry,
        reply: crate::forward::Reply,
        deadline: Instant,
    ) -> crate::forward::Forwarded {
        use crate::forward::Forwarded;
        if reply.result != 0 {
            return Forwarded::Answered(reply);
        }
        let sh = &self.shared;
        let on_file = || {
            Segment::open_for_link(&sh.config.segments, name, OpenFlags::READ)
                .is_ok_and(|r| r.last_seq() >= reply.seq)
        };
        let mut looks = 0u32;
        while e.stats.held.load(Ordering::Relaxed) < reply.seq {
            looks += 1;
            if looks % FILE_LOOK_EVERY == 0 && on_file() {
                break;
            }
            if Instant::now() >= deadline || sh.stopping() {
                return Forwarded::TimedOut;
            }
            std::thread::sleep(HELD_POLL);
        }
        Forwarded::Answered(reply)
    }
}

/// How long [`NodeHandle::forward`] waits for an answer before it looks at
/// the link's state again.
const FORWARD_LOOK: Duration = Duration::from_millis(50);
/// How often [`NodeHandle::forward`] looks whether the replica holds a
/// forwarded change's frame.
const HELD_POLL: Duration = Duration::from_micros(100);
/// Every this many looks, the replica's file is opened and looked at too.
const FILE_LOOK_EVERY: u32 = 50;

/// A running node daemon. Dropping it stops it.
pub struct Node {
    shared: Arc<Shared>,
    local: SocketAddr,
    main: Vec<JoinHandle<()>>,
}

impl Node {
    /// Checks `config`, listens, and starts the daemon's threads on
    /// `backend`.
    pub fn start<B>(config: NodeConfig, backend: B) -> Result<Node, NodeError>
    where
        B: Backend + 'static,
        B::Listener: 'static,
        B::Conn: 'static,
    {
        config.check()?;
        let engine = membership_engine(&config)?;
        Node::launch(config, backend, engine)
    }

    /// Starts the daemon with `engine` as its membership (its members, its
    /// quorum, its messages), whatever `config.membership` says: how tests
    /// run partitions without a cluster engine.
    pub fn start_with_engine<B>(
        config: NodeConfig,
        backend: B,
        engine: Box<dyn Engine>,
    ) -> Result<Node, NodeError>
    where
        B: Backend + 'static,
        B::Listener: 'static,
        B::Conn: 'static,
    {
        Node::launch(config, backend, Some(engine))
    }

    fn launch<B>(
        mut config: NodeConfig,
        backend: B,
        engine: Option<Box<dyn Engine>>,
    ) -> Result<Node, NodeError>
    where
        B: Backend + 'static,
        B::Listener: 'static,
        B::Conn: 'static,
    {
        config.check()?;
        config.segments.node_id = config.node;
        if let Some(e) = &engine {
            if e.local() != config.node {
                return Err(NodeError::Membership(format!(
                    "{} says this is node {}, the configuration says node {}: they must be the same",
                    e.name(),
                    e.local(),
                    config.node
                )));
            }
        }
        let listener = backend
            .listen(config.listen, config.link.max_message)
            .map_err(NodeError::Listen)?;
        let local = listener.local_addr().map_err(NodeError::Listen)?;
        tracing::info!(
            node = config.node,
            name = %config.name,
            listen = %local,
            backend = backend.name(),
            peers = config.peers.len(),
            membership = engine.as_ref().map_or("static", |e| e.name()),
            dir = %config.segments.dir.display(),
            "node started"
        );
        if config.link.key.is_none() {
            tracing::warn!(
                "links are not authenticated (no cluster key): use a trusted network only"
            );
        } else if config.link.encrypt {
            tracing::info!("links are authenticated and encrypted");
        } else {
            tracing::info!("links are authenticated, not encrypted");
        }
        let shared = Arc::new(Shared {
            backend: backend.name(),
            config,
            stop: AtomicBool::new(false),
            links: Mutex::new(BTreeMap::new()),
            threads: Mutex::new(Vec::new()),
            incoming: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            started: Instant::now(),
            tracker: Mutex::new(None),
            reported: Mutex::new(BTreeMap::new()),
            mode: engine.as_ref().map_or("static", |e| e.name()),
            wants: Mutex::new(BTreeMap::new()),
            offered: Mutex::new(BTreeMap::new()),
            scan_soon: Mutex::new(None),
        });
        let backend = Arc::new(backend);
        let mut main = Vec::new();
        match engine {
            None => lift_stale_fences(&shared),
            Some(engine) => {
                *lock(&shared.tracker) = Some(Tracker::new(shared.config.node));
                // Until the engine says this partition is quorate and the
                // members' reports are in, nothing here may act.
                fence_all(&shared);
                let s = shared.clone();
                main.push(
                    std::thread::Builder::new()
                        .name("ckpt-members".into())
                        .spawn(move || membership_loop(&s, local, engine))
                        .map_err(NodeError::Listen)?,
                );
            }
        }
        let s = shared.clone();
        main.push(
            std::thread::Builder::new()
                .name("ckpt-accept".into())
                .spawn(move || accept_loop(&s, listener))
                .map_err(NodeError::Listen)?,
        );
        let s = shared.clone();
        main.push(
            std::thread::Builder::new()
                .name("ckpt-scan".into())
                .spawn(move || scan_loop(&s, &backend))
                .map_err(NodeError::Listen)?,
        );
        Ok(Node {
            shared,
            local,
            main,
        })
    }

    /// A process of this host opens checkpoint `name` without `CREATE`:
    /// see [`NodeHandle::want`].
    pub fn want(&self, name: &CheckpointName, wait: Duration) -> Wanted {
        self.handle().want(name, wait, true, &|| false)
    }

    /// A handle that makes a replica come here ([`NodeHandle::want`]), for
    /// another thread (the control socket's).
    pub fn handle(&self) -> NodeHandle {
        NodeHandle {
            shared: self.shared.clone(),
        }
    }

    /// Where the daemon listens (with the port the system picked for 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The daemon and its links as they are now.
    pub fn status(&self) -> NodeStatus {
        let sh = &self.shared;
        let links: Vec<LinkStatus> = lock(&sh.links).values().map(|e| e.status()).collect();
        let membership = match lock(&sh.tracker).as_ref() {
            None => MembershipStatus {
                mode: sh.mode.into(),
                members: Vec::new(),
                quorate: true,
                fenced: false,
            },
            Some(t) => MembershipStatus {
                mode: sh.mode.into(),
                members: t.members().iter().copied().collect(),
                quorate: t.quorate(),
                fenced: t.fenced(),
            },
        };
        let peers = sh
            .live_peers()
            .iter()
            .map(|p| {
                let mine = links.iter().filter(|l| l.peer == p.node);
                PeerStatus {
                    node: p.node,
                    name: p.name.clone(),
                    address: p.address,
                    links: mine.clone().count(),
                    linked: mine.filter(|l| l.state.is_connected()).count(),
                }
            })
            .collect();
        NodeStatus {
            node: sh.config.node,
            name: sh.config.name.clone(),
            listen: self.local,
            backend: sh.backend.to_string(),
            uptime: sh.started.elapsed(),
            offers_settled: sh.started.elapsed() >= sh.offer_memory(),
            membership,
            peers,
            links,
            auth_failures: sh.auth_failures.load(Ordering::Relaxed),
            refused: sh.refused.load(Ordering::Relaxed),
        }
    }

    /// Stops every link and thread and waits for them (each sees the stop
    /// within its poll interval, a connection attempt within its timeout).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let sh = &self.shared;
        // First the fence, while this node is still a member: without its
        // daemon it cannot know it has quorum, and the others, once they see
        // it leave, may promote elsewhere. The closed tracker never lifts it.
        let closed = lock(&sh.tracker).as_mut().map(Tracker::close).is_some();
        if closed {
            tracing::info!(
                "fencing this node's copies: without its daemon it cannot know it has quorum"
            );
            if !(0..5).any(|_| fence_all(sh)) {
                tracing::error!("a copy could not be fenced (its claim stayed busy)");
            }
        }
        sh.stop.store(true, Ordering::Relaxed);
        for e in lock(&sh.links).values() {
            e.stop.store(true, Ordering::Relaxed);
        }
        for t in self.main.drain(..) {
            let _ = t.join();
        }
        // The main threads are done: nothing adds link threads any more.
        let threads = std::mem::take(&mut *lock(&sh.threads));
        for t in threads {
            let _ = t.join();
        }
        tracing::info!("node stopped");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if !self.main.is_empty() {
            self.halt();
        }
    }
}

/// A node daemon's state, for `ckpt peers` and the metrics.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NodeStatus {
    /// This node's id.
    pub node: u32,
    /// This node's name.
    pub name: String,
    /// Where it listens.
    pub listen: SocketAddr,
    /// The transport in use.
    pub backend: String,
    /// Since the daemon started.
    pub uptime: Duration,
    /// The daemon has been up long enough for its peers' links to offer it
    /// what they hold (their retry limit and a scan, plus a second): until
    /// then, an application's open of a checkpoint not on this host waits
    /// for a peer's offer (up to its timeout) rather than create it here.
    #[cfg_attr(feature = "serde", serde(default))]
    pub offers_settled: bool,
    /// Who is in the cluster, and whether this node may act.
    pub membership: MembershipStatus,
    /// The peers links go to: the configured ones (static membership), or
    /// the members that said where they listen (corosync).
    pub peers: Vec<PeerStatus>,
    /// Every link, by role, checkpoint and peer.
    pub links: Vec<LinkStatus>,
    /// Connections refused because the peer did not prove it holds the
    /// cluster key (or this node has none and the peer asked for it).
    pub auth_failures: u64,
    /// Incoming links refused for another reason (not a configured peer, a
    /// checkpoint this node holds as a primary, too many links).
    pub refused: u64,
}

/// The membership as a node daemon knows it.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct MembershipStatus {
    /// `static` or `corosync`.
    pub mode: String,
    /// The members of the daemons' group, this node included (corosync;
    /// empty in static mode).
    pub members: Vec<u32>,
    /// True if this node's partition is quorate (static mode: always).
    pub quorate: bool,
    /// True if this node holds its copies fenced: no local writer, no
    /// promotion (corosync, while not quorate or not yet settled).
    pub fenced: bool,
}

/// A peer and its links.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PeerStatus {
    /// Its node id.
    pub node: u32,
    /// Its name.
    pub name: String,
    /// Where its daemon listens.
    pub address: SocketAddr,
    /// Links with it.
    pub links: usize,
    /// Of those, the connected ones (linked or parked).
    pub linked: usize,
}

/// One link: a checkpoint shipped to a peer, or followed from one.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LinkStatus {
    /// The checkpoint's name.
    pub checkpoint: String,
    /// This node's end.
    pub role: Role,
    /// The peer's node id.
    pub peer: u32,
    /// The peer's address on the last connection.
    pub address: Option<SocketAddr>,
    /// Where it stands.
    pub state: LinkState,
    /// The replica holds every frame through this one.
    pub held: u64,
    /// The primary's last frame, as this end last saw it.
    pub primary: u64,
    /// Frames the replica lacks; `None` where this end cannot know: a
    /// following link that is not connected has not heard how far the
    /// primary got since (a shipping end always knows, from its own log).
    pub lag: Option<u64>,
    /// The term of the primary (shipping) or of what the replica holds.
    pub term: u32,
    /// Frames shipped or applied.
    pub frames: u64,
    /// Snapshots sent or installed.
    pub snapshots: u64,
    /// Connections made.
    pub connects: u64,
    /// How the last connection ended, or why none could be made.
    pub last: Option<String>,
}

// ---------------------------------------------------------------------------
// Incoming links

fn accept_loop<L: Listener>(sh: &Arc<Shared>, listener: L)
where
    L::Conn: 'static,
{
    while !sh.stopping() {
        let (conn, from) = match listener.accept(ACCEPT_WAIT) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!("accept: {e}");
                std::thread::sleep(ACCEPT_WAIT);
                continue;
            }
        };
        // Each incoming link holds a thread and its buffers: at most
        // `incoming_max` at once.
        if sh.incoming.load(Ordering::Relaxed) >= sh.config.incoming_max as u64 {
            sh.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(peer = %from, "refused a link: {} incoming links already", sh.config.incoming_max);
            continue;
        }
        sh.incoming.fetch_add(1, Ordering::Relaxed);
        let s = sh.clone();
        let started = sh.spawn("ckpt-follow", move || {
            incoming(&s, conn, from);
            s.incoming.fetch_sub(1, Ordering::Relaxed);
        });
        if !started {
            sh.incoming.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// An incoming link: the offer, then the replica follows it.
fn incoming<C: ckpt_transport::Connection>(sh: &Shared, mut conn: C, from: SocketAddr) {
    let span = tracing::info_span!("link", peer = %from);
    let _in = span.enter();
    let opts = LinkOptions {
        on_event: Some(log_event),
        ..sh.config.link.clone()
    };
    let (offered, mut conn) = match accept_offer(&mut conn, &opts) {
        Ok(o) => o,
        Err(e) => {
            match e {
                ReplicationError::Unauthenticated(_) => {
                    sh.auth_failures.fetch_add(1, Ordering::Relaxed)
                }
                _ => sh.refused.fetch_add(1, Ordering::Relaxed),
            };
            tracing::warn!("refused an incoming link: {e}");
            return;
        }
    };
    if !sh.is_member(offered.node) {
        sh.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            checkpoint = %offered.name,
            "refused a link from node {}, which is not a peer ({} membership)",
            offered.node,
            sh.config.membership.as_str()
        );
        return;
    }
    let span = tracing::info_span!("follow", checkpoint = %offered.name, peer = offered.node);
    let _follow = span.enter();
    let key = (Role::Following, offered.name.clone(), offered.node);
    let entry = {
        let mut links = lock(&sh.links);
        // Again under the table's lock, which `drop_links` takes: a peer
        // that left since is not followed.
        if !sh.is_member(offered.node) {
            drop(links);
            sh.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("refused a link from node {}, which just left", offered.node);
            return;
        }
        if links.get(&key).is_some_and(|e| e.state().is_connected()) {
            drop(links);
            sh.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("refused a second link for the same checkpoint from the same peer");
            return;
        }
        // A fresh entry per connection: its counters start over (the
        // checkpoint may be another incarnation now). The stop flag is read
        // under the table's lock, which `Node::halt` takes to stop links.
        let entry = Arc::new(LinkEntry::new(
            offered.name.clone(),
            Role::Following,
            offered.node,
        ));
        entry.stop.store(sh.stopping(), Ordering::Relaxed);
        entry.set(LinkState::Linked);
        links.insert(key.clone(), entry.clone());
        entry
    };
    *lock(&entry.address) = Some(from);
    sh.offer_seen(&offered.name, true);
    entry.connects.fetch_add(1, Ordering::Relaxed);
    tracing::info!("following (incarnation {:x})", offered.incarnation);
    let opts = sh.link_options(&entry);
    let wanted = || sh.wanted(&offered.name);
    // Stopping the link cancels a send blocked on a primary that takes no
    // bytes (as a shipper's own stop does).
    conn.cancel_sends_on(&entry.stop);
    let outcome = follow_offered(
        &sh.config.segments,
        &offered,
        &mut conn,
        &opts,
        &entry.stop,
        &wanted,
    );
    // Remembered from the link's end (forgotten if it ended as unlinked).
    let unlinked = matches!(outcome, Ok((Ended::Unlinked, _)));
    sh.offer_seen(&offered.name, !unlinked);
    match outcome {
        Ok((Ended::Unlinked, _)) => {
            entry.outcome(
                "the checkpoint was unlinked: its replica is gone".into(),
                false,
            );
            // Nothing is left to show for it (ended and removed under the
            // lock: a new link for the name takes a new entry).
            let mut links = lock(&sh.links);
            entry.set(LinkState::Ended);
            if links.get(&key).is_some_and(|e| Arc::ptr_eq(e, &entry)) {
                links.remove(&key);
            }
            return;
        }
        Ok((ended, replica)) => {
            if let Some(r) = &replica {
                if !sh.is_member(offered.node) {
                    // Its node left: a promotion here need not wait for it.
                    r.primary_lost();
                }
            }
            let held = replica.map_or(0, |r| r.last_seq());
            entry.outcome(
                format!(
                    "link ended: {} (the replica holds frame {held})",
                    describe(ended)
                ),
                false,
            );
        }
        Err(e) => {
            if matches!(e, ReplicationError::HeldAsPrimary { .. }) {
                sh.refused.fetch_add(1, Ordering::Relaxed);
            }
            sh.failed(&entry, &e);
        }
    }
    entry.set(if sh.stopping() {
        LinkState::Ended
    } else {
        LinkState::Down
    });
}

// ---------------------------------------------------------------------------
// Shipping

/// A primary this node ships, with its links.
struct Shipped {
    segment: Arc<Segment>,
    /// Its links, by peer.
    links: BTreeMap<u32, Arc<LinkEntry>>,
    /// Since when the directory no longer lists it (unlinked, or deleted
    /// when its retention ran out).
    gone: Option<Instant>,
}

fn scan_loop<B: Backend + 'static>(sh: &Arc<Shared>, backend: &Arc<B>)
where
    B::Conn: 'static,
{
    let mut shipped: BTreeMap<CheckpointName, Shipped> = BTreeMap::new();
    let mut listing_failed = false;
    let mut peers = sh.live_peers();
    // Files refused once (logged once each), up to a bound.
    let mut refused = std::collections::BTreeSet::new();
    while !sh.stopping() {
        let listed = match dir::list(&sh.config.segments) {
            Ok(l) => {
                listing_failed = false;
                l
            }
            Err(e) => {
                if !listing_failed {
                    tracing::warn!(dir = %sh.config.segments.dir.display(), "cannot list the segment directory: {e}");
                }
                listing_failed = true;
                // Nothing is known to be gone: the links go on as they are.
                sh.nap_between_scans();
                continue;
            }
        };
        let mut present = std::collections::BTreeSet::new();
        let mut local = std::collections::BTreeSet::new();
        let now_peers = sh.live_peers();
        if now_peers != peers {
            tracing::info!(
                "peers now: {:?}",
                now_peers
                    .iter()
                    .map(|p| format!("{}={}", p.node, p.address))
                    .collect::<Vec<_>>()
            );
            peers = now_peers;
        }
        for entry in listed {
            let mapped = match entry.segment {
                Ok(m) => m,
                Err(e) => {
                    // Once per file: a segment of another user (the daemon
                    // runs as the applications' user, or their group with
                    // CKPT_GROUP_ACCESS=1), or a damaged one.
                    if refused.insert(entry.path.clone()) {
                        tracing::warn!(path = %entry.path.display(), "not shipped: {e}");
                    }
                    continue;
                }
            };
            local.insert(mapped.name().clone());
            if entry.removed {
                tracing::info!(checkpoint = %mapped.name(), "deleted: its retention ran out with nobody having it open");
                continue;
            }
            if mapped.is_replica() {
                continue;
            }
            let name = mapped.name().clone();
            present.insert((name.clone(), mapped.incarnation()));
            if shipped
                .get(&name)
                .is_some_and(|s| s.segment.incarnation() == mapped.incarnation())
            {
                continue;
            }
            if let Some(old) = shipped.remove(&name) {
                // Re-created: the old incarnation's links end on their own
                // once their replicas hold its unlink.
                retire(sh, old);
            }
            if let Some(s) = start_shipping(&sh.config, &name) {
                shipped.insert(name, s);
            }
        }
        // Links to the peers there are now: new ones for peers that came,
        // those of peers that went (or moved) stopped.
        for s in shipped.values_mut().filter(|s| s.gone.is_none()) {
            reconcile(sh, backend, s, &peers);
            // Its placed replicas are registered (`reconcile`): a
            // synchronous checkpoint's writers wait for them now, not for
            // this daemon.
            s.segment.adopted();
        }
        // Checkpoints no longer listed: their links end once their replicas
        // hold the unlink, or after LINGER if it never comes.
        shipped.retain(|name, s| {
            if present.contains(&(name.clone(), s.segment.incarnation())) {
                s.gone = None;
                return true;
            }
            // Deleted by a retention sweep: the replicas learn it from the
            // unlink logged now, which the links ship (a writer holding the
            // claim: again at the next scan).
            if !s.segment.is_unlinked() && s.segment.log_expired().is_ok() {
                tracing::info!(checkpoint = %name, "its retention ran out: unlinked on the replicas too");
            }
            let since = *s.gone.get_or_insert_with(Instant::now);
            let done = s.links.values().all(|l| l.state() == LinkState::Ended);
            if done || since.elapsed() >= LINGER {
                for l in s.links.values() {
                    l.stop.store(true, Ordering::Relaxed);
                }
                forget(sh, s);
                return false;
            }
            true
        });
        // Following links that are down for a checkpoint this host no longer
        // has (its replica unlinked, or never made): nothing left to show.
        lock(&sh.links).retain(|(role, name, _), e| {
            *role == Role::Shipping || e.state().is_connected() || local.contains(name)
        });
        if refused.len() > 4096 {
            refused.clear();
        }
        // Expired sections, deleted by a logged mutation the replicas apply
        // (a writer holding the claim: the next scan).
        for (name, s) in &shipped {
            if s.gone.is_none() {
                if let Ok(n @ 1..) = s.segment.sweep_expired() {
                    tracing::debug!(checkpoint = %name, "swept {n} expired sections");
                }
            }
        }
        reap_threads(sh);
        sh.nap_between_scans();
    }
}

/// Ends the links of a primary that was re-created (they end on their own
/// once their replicas hold the old one's unlink; at the latest after
/// LINGER, by a thread of their own).
fn retire(sh: &Arc<Shared>, old: Shipped) {
    let links = old.links.clone();
    let s = sh.clone();
    sh.spawn("ckpt-retire", move || {
        let since = Instant::now();
        while since.elapsed() < LINGER
            && !s.stopping()
            && !links.values().all(|l| l.state() == LinkState::Ended)
        {
            std::thread::sleep(NAP);
        }
        for l in links.values() {
            l.stop.store(true, Ordering::Relaxed);
        }
        forget(&s, &old);
    });
}

/// Removes a shipped checkpoint's links from the table (those still theirs).
fn forget(sh: &Shared, s: &Shipped) {
    let mut links = lock(&sh.links);
    for l in s.links.values() {
        let key = (Role::Shipping, l.checkpoint.clone(), l.peer);
        if links.get(&key).is_some_and(|e| Arc::ptr_eq(e, l)) {
            links.remove(&key);
        }
    }
}

/// Opens primary `name` for shipping (its links come from [`reconcile`]).
fn start_shipping(config: &NodeConfig, name: &CheckpointName) -> Option<Shipped> {
    let segment = match Segment::open_for_link(&config.segments, name, OpenFlags::READ) {
        Ok(s) if !s.is_replica() => Arc::new(s),
        Ok(_) => return None,
        Err(e) => {
            tracing::debug!(checkpoint = %name, "cannot open to ship it: {e}");
            return None;
        }
    };
    tracing::info!(
        checkpoint = %name,
        incarnation = format_args!("{:x}", segment.incarnation()),
        "shipping"
    );
    // Counts of remote openers left by an earlier daemon are not this one's
    // links': they come again with the links' first acknowledgements.
    segment.forget_remote_openers();
    Some(Shipped {
        segment,
        links: BTreeMap::new(),
        gone: None,
    })
}

/// Gives a shipped checkpoint one link per peer in `peers`: links to peers
/// no longer there (or at another address, or dropped when their node left
/// the membership) are stopped, and peers without a link get one. A link
/// that ended on its own (its replica holds the unlink, or follows a newer
/// term) is not started again.
fn reconcile<B: Backend + 'static>(
    sh: &Arc<Shared>,
    backend: &Arc<B>,
    shipped: &mut Shipped,
    peers: &[Peer],
) where
    B::Conn: 'static,
{
    shipped.links.retain(|node, e| {
        let keep = !e.dropped.load(Ordering::Relaxed)
            && peers
                .iter()
                .any(|p| p.node == *node && *lock(&e.address) == Some(p.address));
        if !keep {
            e.stop.store(true, Ordering::Relaxed);
            let mut links = lock(&sh.links);
            let key = (Role::Shipping, e.checkpoint.clone(), *node);
            if links.get(&key).is_some_and(|l| Arc::ptr_eq(l, e)) {
                links.remove(&key);
            }
        }
        keep
    });
    for peer in peers {
        if shipped.links.contains_key(&peer.node) {
            continue;
        }
        let name = shipped.segment.name().clone();
        let entry = Arc::new(LinkEntry {
            primary: Some(shipped.segment.clone()),
            ..LinkEntry::new(name.clone(), Role::Shipping, peer.node)
        });
        *lock(&entry.address) = Some(peer.address);
        lock(&sh.links).insert((Role::Shipping, name, peer.node), entry.clone());
        let collocated = shipped.segment.attributes().flags.is_collocated();
        let early = sh
            .config
            .places(shipped.segment.name(), collocated, peer.node)
            .then(|| Early::new(&shipped.segment, peer.node))
            .flatten();
        let (s, b, seg, p, e) = (
            sh.clone(),
            backend.clone(),
            shipped.segment.clone(),
            peer.clone(),
            entry.clone(),
        );
        if sh.spawn("ckpt-ship", move || shipping(&s, &*b, &seg, &p, &e, early)) {
            shipped.links.insert(peer.node, entry);
        }
    }
}

/// A replica placed on a peer, registered on its primary from the moment
/// its link is made until the link's first connection ends (or fails to be
/// made): a synchronous writer waits for the replica from the start, not
/// only once the link is up (its first writes were acknowledged with no
/// replica anywhere, and lost with the node). The link's own registration
/// takes over while it is connected ([`Segment::link_replica`] counts both).
struct Early {
    segment: Arc<Segment>,
    node: u32,
}

impl Early {
    fn new(segment: &Arc<Segment>, node: u32) -> Option<Early> {
        // The slots full: the daemon's own placeholder (`ack::ADOPTION`) goes
        // first, as it would at the end of this scan.
        segment
            .link_replica(node)
            .or_else(|_| {
                segment.adopted();
                segment.link_replica(node)
            })
            .ok()?;
        Some(Early {
            segment: segment.clone(),
            node,
        })
    }
}

impl Drop for Early {
    fn drop(&mut self) {
        self.segment.unlink_replica(self.node);
    }
}

/// A shipping link: connects to `peer`, ships, and again after a backoff,
/// until the replica holds the checkpoint's unlink or the link is stopped.
fn shipping<B: Backend>(
    sh: &Shared,
    backend: &B,
    segment: &Segment,
    peer: &Peer,
    entry: &LinkEntry,
    mut early: Option<Early>,
) {
    let span = tracing::info_span!("ship", checkpoint = %entry.checkpoint, peer = peer.node);
    let _in = span.enter();
    let opts = sh.link_options(entry);
    let collocated = segment.attributes().flags.is_collocated();
    let placed = sh.config.places(segment.name(), collocated, peer.node);
    let mut retry = RETRY_MIN;
    while !sh.stopping() && !entry.stop.load(Ordering::Relaxed) {
        entry.set(LinkState::Connecting);
        let started = Instant::now();
        match backend.connect(peer.address, sh.config.connect_timeout, opts.max_message) {
            Ok(mut conn) => {
                entry.connects.fetch_add(1, Ordering::Relaxed);
                entry.stats.heard.store(false, Ordering::Relaxed);
                entry.set(LinkState::Linked);
                match ship(segment, peer.node, placed, &mut conn, &opts, &entry.stop) {
                    Ok(Ended::Unlinked) => {
                        entry.outcome("the replica holds the unlink: link done".into(), false);
                        break;
                    }
                    Ok(Ended::Deposed { term }) => {
                        entry.outcome(
                            format!(
                                "the replica follows a newer term ({term}): this node is not the active replica; shipping stops"
                            ),
                            true,
                        );
                        break;
                    }
                    Ok(ended) => entry.outcome(format!("link ended: {}", describe(ended)), false),
                    Err(e) => sh.failed(entry, &e),
                }
            }
            Err(e) => entry.outcome(format!("cannot connect to {}: {e}", peer.address), true),
        }
        // The first connection is over (or was never made): from now on the
        // replica is waited for while its link is up, as for any link.
        drop(early.take());
        entry.set(LinkState::Down);
        // A link that lasted starts the backoff over; quick failures double it.
        retry = if started.elapsed() > sh.config.retry_max {
            RETRY_MIN
        } else {
            (retry * 2).min(sh.config.retry_max)
        };
        sh.nap(retry, &entry.stop);
    }
    entry.set(LinkState::Ended);
}

/// Joins the link threads that ended.
fn reap_threads(sh: &Shared) {
    let mut threads = lock(&sh.threads);
    let mut i = 0;
    while i < threads.len() {
        if threads[i].is_finished() {
            let _ = threads.swap_remove(i).join();
        } else {
            i += 1;
        }
    }
}

// ---------------------------------------------------------------------------
// Membership

/// Connects to the cluster engine the configuration names (none in static
/// mode).
fn membership_engine(config: &NodeConfig) -> Result<Option<Box<dyn Engine>>, NodeError> {
    match &config.membership {
        Membership::Static => Ok(None),
        #[cfg(feature = "corosync")]
        Membership::Corosync { group } => {
            let engine = crate::membership::corosync::Corosync::connect(group)
                .map_err(NodeError::Membership)?;
            Ok(Some(Box::new(engine)))
        }
        #[cfg(not(feature = "corosync"))]
        Membership::Corosync { .. } => Err(NodeError::Config(
            "membership \"corosync\": this build has no corosync support".into(),
        )),
    }
}

/// Every copy this host holds, as the listing maps it (not registered).
fn local_copies(sh: &Shared) -> Vec<ckpt_shm::Mapped> {
    let Ok(listed) = dir::list(&sh.config.segments) else {
        return Vec::new();
    };
    listed
        .into_iter()
        .filter(|e| !e.removed)
        .filter_map(|e| e.segment.ok())
        .collect()
}

/// Copy `m`, opened as a link (not an open) to act on it.
fn open_copy(sh: &Shared, m: &ckpt_shm::Mapped) -> Option<Segment> {
    Segment::open_for_link(&sh.config.segments, m.name(), OpenFlags::READ).ok()
}

/// What a copy is, for the members' reports.
fn copy_state(m: &ckpt_shm::Mapped) -> ckpt_core::cluster::CopyState {
    ckpt_core::cluster::CopyState {
        name: m.name().as_bytes().to_vec(),
        incarnation: m.incarnation(),
        term: m.current_term(),
        primary: !m.is_replica(),
        seq: m.last_seq(),
        diverged: m.is_diverged(),
    }
}

/// Fences every copy this host holds, and those made from now on (the
/// marker). False if a copy could not be fenced yet (its claim is held
/// past the timeout): the caller tries again.
fn fence_all(sh: &Shared) -> bool {
    if let Err(e) = dir::set_fence_marker(&sh.config.segments, true) {
        tracing::error!("cannot put the fence marker in the segment directory: {e}");
    }
    let mut done = true;
    for m in local_copies(sh).iter().filter(|m| !m.is_fenced()) {
        done &= open_copy(sh, m).is_some_and(|s| s.fence(true).is_ok());
    }
    done
}

/// Static membership has no quorum: fences left by an earlier run in
/// corosync mode are lifted.
fn lift_stale_fences(sh: &Shared) {
    if !dir::fence_marked(&sh.config.segments) {
        return;
    }
    tracing::warn!("lifting the fence an earlier daemon in corosync mode left: static membership has no quorum");
    let _ = dir::set_fence_marker(&sh.config.segments, false);
    for m in local_copies(sh).iter().filter(|m| m.is_fenced()) {
        if open_copy(sh, m).is_none_or(|s| s.fence(false).is_err()) {
            tracing::warn!(checkpoint = %m.name(), "its fence could not be lifted: its claim is held");
        }
    }
}

/// Ends the links with `nodes` at once (they left the membership): a
/// synchronous writer stops waiting for them, and the scan starts new links
/// if they come back.
fn drop_links(sh: &Shared, nodes: &std::collections::BTreeSet<u32>) {
    for e in lock(&sh.links).values() {
        if nodes.contains(&e.peer) {
            e.dropped.store(true, Ordering::Relaxed);
            e.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// Brings this host's copies in line with the tracker; run after every
/// membership event and every [`ENFORCE_EVERY`] (a copy may appear at any
/// time: a checkpoint created, a replica installed, its fence bit decided
/// when its file was built):
/// - fenced, not settleable: every copy fenced, the marker there;
/// - otherwise the marker gone, and fenced copies settled against the
///   members' answers ([`ckpt_core::cluster::settle`]): lifted, or demoted
///   then lifted, or kept fenced in a conflict (logged once, in
///   `conflicts`; kept until the daemon starts again). A fenced tracker
///   acts again once every fenced copy is settled; an acting one that finds
///   a fenced copy asks the members first (`Tracker::request`), and the
///   actions that returns are the caller's to carry out.
///
/// Returns whether everything is in line (false: a copy's claim was busy,
/// or answers are awaited: run again soon), and actions to carry out.
fn enforce(
    sh: &Shared,
    conflicts: &mut std::collections::BTreeSet<(Vec<u8>, u64)>,
) -> (bool, Vec<Action>) {
    use ckpt_core::cluster::{settle, Settle};
    // The tracker's state and answers, copied: its lock is not held while
    // claims are taken.
    let (fenced, settleable, reports) = {
        let guard = lock(&sh.tracker);
        let Some(t) = guard.as_ref() else {
            return (true, Vec::new());
        };
        let reports: Vec<(u32, ckpt_core::cluster::CopyState)> =
            t.reports().map(|(n, c)| (n, c.clone())).collect();
        (t.fenced(), t.may_settle(), reports)
    };
    if fenced && !settleable {
        return (fence_all(sh), Vec::new());
    }
    if let Err(e) = dir::set_fence_marker(&sh.config.segments, false) {
        tracing::error!("cannot remove the fence marker: {e}");
        return (false, Vec::new());
    }
    let key = |c: &ckpt_core::cluster::CopyState| (c.name.clone(), c.incarnation);
    let waiting: Vec<ckpt_shm::Mapped> = local_copies(sh)
        .into_iter()
        .filter(|m| m.is_fenced() && !conflicts.contains(&key(&copy_state(m))))
        .collect();
    if !settleable {
        // Acting, with copies born fenced: the members are asked first.
        if waiting.is_empty() {
            return (true, Vec::new());
        }
        let asked = lock(&sh.tracker).as_mut().map(|t| t.request());
        return (true, asked.unwrap_or_default());
    }
    let mut done = true;
    let mut ask_again = false;
    for m in &waiting {
        let mine = copy_state(m);
        let Some(s) = open_copy(sh, m) else {
            // Gone since the listing (unlinked): nothing to settle.
            continue;
        };
        // The service chooses the active replica of a non-collocated
        // checkpoint (SA §3.1.7.2), and a synchronous one has none to
        // choose (every replica takes every write): either is promoted
        // here if elected. A collocated asynchronous one waits for its
        // application (`saCkptActiveReplicaSet`, §3.1.7.1).
        let flags = m.attributes().flags;
        let service_chooses = !flags.is_collocated() || !flags.mode().is_asynchronous();
        let elect = service_chooses.then_some(sh.config.node);
        // A replica stands as the members saw it: as this node last reported
        // it (its frames as reported). One whose term or role changed since
        // (it followed a primary promoted after the reports were made) asks
        // the members again: their reports are stale.
        let basis = match lock(&sh.reported).get(&key(&mine)) {
            Some(r) if elect.is_some() && !mine.primary => {
                if r.term != mine.term || r.primary || r.diverged != mine.diverged {
                    ask_again = true;
                    done = false;
                    continue;
                }
                r.clone()
            }
            _ => mine.clone(),
        };
        done &= match settle(&basis, elect, reports.iter().map(|(n, c)| (*n, c))) {
            Settle::Lift => s.fence(false).is_ok(),
            Settle::Promote => match s.promote_elected(sh.config.node, mine.term) {
                Ok(term) => {
                    tracing::warn!(checkpoint = %m.name(), "promoted in term {term}: no member holds its primary, and of the members' replicas this one holds the most (term {}, frame {}); this node's daemon ships it from now on", basis.term, basis.seq);
                    true
                }
                Err(e) => {
                    // Changed since (a newer primary's frames came): the
                    // members are asked again.
                    tracing::warn!(checkpoint = %m.name(), "elected, but not promoted ({e:?}): the members are asked again");
                    ask_again = true;
                    false
                }
            },
            Settle::Demote { term } => {
                let ok = s.demote().is_ok() && s.fence(false).is_ok();
                if ok {
                    tracing::warn!(checkpoint = %m.name(), "demoted: a member holds term {term}, newer than this primary's {}", mine.term);
                }
                ok
            }
            Settle::Conflict { node } => {
                conflicts.insert(key(&mine));
                tracing::error!(checkpoint = %m.name(), "stays fenced: node {node} also holds a primary in term {}, with its own history; keep one (unlink the other there, or drop this one here with ckpt unlink --replica after stopping this daemon), then start this daemon again", mine.term);
                true
            }
        };
    }
    if ask_again {
        let asked = lock(&sh.tracker).as_mut().map(|t| t.ask_again());
        return (false, asked.unwrap_or_default());
    }
    if done {
        if let Some(t) = lock(&sh.tracker).as_mut() {
            t.settled();
            if fenced && !t.fenced() {
                tracing::info!(
                    "quorate, every member's answer in: this node's copies may act again"
                );
            }
        }
    }
    (done, Vec::new())
}

/// How often the membership thread looks at the cluster engine.
const MEMBERSHIP_POLL: Duration = Duration::from_millis(10);
/// How often the membership thread brings the copies in line with the
/// tracker even without an event.
const ENFORCE_EVERY: Duration = Duration::from_millis(200);
/// How often the tracker is told time passed (a request without whole
/// answers is made again).
const TICK_EVERY: Duration = Duration::from_secs(1);
/// Messages waiting for the engine at most (older ones are dropped: a
/// newer hello or a repeated request replaces them).
const OUTBOX_MAX: usize = 4096;

/// The membership thread: events from the engine into the tracker, its
/// actions carried out (messages sent again while the engine pushes back),
/// and the copies kept in line with the tracker ([`enforce`]).
fn membership_loop(sh: &Arc<Shared>, listen: SocketAddr, mut engine: Box<dyn Engine>) {
    use ckpt_core::cluster::encode_report;
    let mut outbox: std::collections::VecDeque<Vec<u8>> = std::collections::VecDeque::new();
    let mut events = Vec::new();
    let mut conflicts = std::collections::BTreeSet::new();
    // At start every copy must be fenced (the first fence may have found a
    // claim busy).
    let mut due = true;
    let (mut enforced, mut ticked) = (Instant::now(), Instant::now());
    while !sh.stopping() {
        if let Err(why) = engine.poll(&mut events) {
            tracing::error!(
                "{why}: the cluster engine is lost; this node's copies are fenced until it is back"
            );
            events.push(Event::Lost);
        }
        if ticked.elapsed() >= TICK_EVERY {
            ticked = Instant::now();
            events.push(Event::Tick);
        }
        let mut actions = Vec::new();
        for event in events.drain(..) {
            log_membership(&event);
            actions.extend(
                lock(&sh.tracker)
                    .as_mut()
                    .map(|t| t.on(event))
                    .unwrap_or_default(),
            );
        }
        for action in actions {
            match action {
                Action::Hello { seq, request } => {
                    outbox.push_back(hello(sh, listen, &*engine, seq, request));
                }
                Action::Answer(to) => {
                    let copies: Vec<_> = local_copies(sh).iter().map(copy_state).collect();
                    outbox.extend(encode_report(sh.config.node, to, &copies));
                    let mut reported = lock(&sh.reported);
                    reported.clear();
                    for c in copies {
                        reported.insert((c.name.clone(), c.incarnation), c);
                    }
                }
                Action::Left(nodes) => {
                    tracing::warn!("node(s) {nodes:?} left the membership: their links end");
                    drop_links(sh, &nodes);
                }
                Action::Fence | Action::Settle => due = true,
            }
        }
        if due || enforced.elapsed() >= ENFORCE_EVERY {
            let (done, asked) = enforce(sh, &mut conflicts);
            due = !done;
            enforced = Instant::now();
            for action in asked {
                if let Action::Hello { seq, request } = action {
                    outbox.push_back(hello(sh, listen, &*engine, seq, request));
                }
            }
        }
        while outbox.len() > OUTBOX_MAX {
            outbox.pop_front();
        }
        while let Some(m) = outbox.front() {
            match engine.send(m) {
                Ok(()) => {
                    outbox.pop_front();
                }
                // Flow control, or no connection: the next round sends it
                // (a request without answers is made again at a tick).
                Err(why) => {
                    tracing::debug!("{why}");
                    break;
                }
            }
        }
        std::thread::sleep(MEMBERSHIP_POLL);
    }
}

/// This node's hello number `seq`. Sent even with an address no peer can
/// use (they ignore it): its own hello coming back is what tells the node
/// its view is current.
fn hello(sh: &Shared, listen: SocketAddr, engine: &dyn Engine, seq: u64, request: bool) -> Vec<u8> {
    let at = announced_address(listen, engine);
    if !reachable(at) {
        tracing::error!("announcing {at}, which no peer can reach: give --listen a routable address, or have corosync's ring0_addr resolve to one");
    }
    ckpt_core::cluster::encode_hello(&ckpt_core::cluster::Hello {
        node: sh.config.node,
        seq,
        request,
        listen: at,
    })
}

/// Where this daemon tells its peers it listens: its listen address, or
/// for one listening on every address, the engine's address for this node.
fn announced_address(listen: SocketAddr, engine: &dyn Engine) -> SocketAddr {
    if !listen.ip().is_unspecified() {
        return listen;
    }
    match engine.address() {
        Ok(ip) => SocketAddr::new(ip, listen.port()),
        Err(why) => {
            tracing::warn!("{why}");
            listen
        }
    }
}

fn log_membership(e: &Event) {
    match e {
        Event::Members(m) => tracing::info!("members of the group: {m:?}"),
        Event::Quorum {
            quorate: true,
            ring,
        } => tracing::info!("quorate (ring {ring})"),
        Event::Quorum {
            quorate: false,
            ring,
        } => tracing::warn!(
            "not quorate (ring {ring}): this node's copies are fenced (no writes, no promotion)"
        ),
        Event::Hello(h) => tracing::debug!(
            "node {} listens on {} (hello {}{})",
            h.node,
            h.listen,
            h.seq,
            if h.request {
                ", requesting reports"
            } else {
                ""
            }
        ),
        Event::Report(r) => {
            tracing::debug!(
                "node {} reports {} copies (part {})",
                r.node,
                r.copies.len(),
                r.part
            )
        }
        Event::Dropped(n) => {
            tracing::warn!("a message from node {n} was dropped: its report is asked for again")
        }
        Event::Lost | Event::Tick => {}
    }
}

/// How a link ended, for people.
pub fn describe(ended: Ended) -> String {
    match ended {
        Ended::Stopped => "stopped".into(),
        Ended::PeerClosed => "the peer closed the connection".into(),
        Ended::Closed(reason) => reason.to_string(),
        Ended::ClosedByPeer(reason) => format!("the peer closed the link: {reason}"),
        Ended::Deposed { term } => {
            format!("a replica follows a newer term ({term}): this host is not the active replica")
        }
        Ended::Unlinked => "the checkpoint was unlinked, and the replica holds the unlink".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A following link that installs a snapshot shows it, with its lag
    /// unknown: before, a restarted replica waiting for its snapshot showed
    /// `linked`, held 0, lag 0 (caught up) until the snapshot's end.
    #[test]
    fn a_following_link_installing_a_snapshot_shows_it_and_no_lag() {
        let name = CheckpointName::new("safCkpt=installing").unwrap();
        let entry = LinkEntry::new(name, Role::Following, 1);
        entry.set(LinkState::Linked);
        entry.stats.installing.store(true, Ordering::Relaxed);
        let s = entry.status();
        assert_eq!((s.state, s.lag), (LinkState::Installing, None));
        assert_eq!(s.state.as_str(), "installing");
        assert!(s.state.is_connected());
        // Installed: linked again, its lag known.
        entry.stats.installing.store(false, Ordering::Relaxed);
        entry.stats.primary_reached(7);
        let s = entry.status();
        assert_eq!((s.state, s.lag), (LinkState::Linked, Some(7)));
        // A shipping end is never shown installing (its lag is its own log's).
        let ship = LinkEntry::new(CheckpointName::new("safCkpt=s").unwrap(), Role::Shipping, 2);
        ship.set(LinkState::Linked);
        ship.stats.heard.store(true, Ordering::Relaxed);
        ship.stats.installing.store(true, Ordering::Relaxed);
        assert_eq!(ship.status().state, LinkState::Linked);
    }

    /// A shipping link is `linked` once its peer has sent something on the
    /// connection: a stopped peer's kernel accepts connections, and its link
    /// showed `linked` (held frozen, lag growing) for a second of every
    /// reconnection while the peer stayed stopped.
    #[test]
    fn a_shipping_link_is_linked_once_its_peer_answers() {
        let ship = LinkEntry::new(CheckpointName::new("safCkpt=s").unwrap(), Role::Shipping, 2);
        ship.set(LinkState::Linked);
        assert_eq!(ship.status().state, LinkState::Connecting);
        ship.stats.heard.store(true, Ordering::Relaxed);
        assert_eq!(ship.status().state, LinkState::Linked);
    }
}
