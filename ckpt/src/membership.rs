//! Who is in the cluster, and whether this node's partition may act.
//!
//! Two modes ([`Membership`]):
//! - **static** (the default, no dependency): the configured peers are the
//!   cluster; a link's liveness is its heartbeats; there is no quorum, so
//!   every node may act (the two-node case, where a quorum of two cannot
//!   survive the loss of either);
//! - **corosync** (cargo feature `corosync`): the node daemons that joined
//!   one corosync CPG group are the members, and votequorum says whether
//!   this node's partition is quorate. A member leaving is the failure
//!   signal (its links end at once, synchronous writers stop waiting for
//!   it, its replicas may be promoted without waiting for it to go quiet),
//!   and a node whose partition has no quorum fences every copy it holds:
//!   no local writer and no promotion until quorum is back and the members'
//!   reports say the fence may be lifted ([`ckpt_core::cluster::settle`]).
//!
//! [`Tracker`] turns the cluster engine's events into what the node must
//! do; it has no I/O, so the partition cases are unit-tested here without
//! corosync. The corosync binding (`corosync` module) delivers the events.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use ckpt_core::cluster::{CopyState, Hello, Report};

#[cfg(feature = "corosync")]
pub mod corosync;

/// How a node learns who is in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Membership {
    /// The configured peers; no quorum (every node may act).
    #[default]
    Static,
    /// The daemons in corosync CPG group `group`; quorum from votequorum.
    Corosync {
        /// The CPG group's name (every daemon of the cluster uses the same).
        group: String,
    },
}

impl Membership {
    /// The default CPG group.
    pub const GROUP: &'static str = "ckpt";

    /// Its name in status output and configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            Membership::Static => "static",
            Membership::Corosync { .. } => "corosync",
        }
    }

    /// True if this build can run it (corosync needs the `corosync` feature).
    pub fn available(&self) -> bool {
        match self {
            Membership::Static => true,
            Membership::Corosync { .. } => cfg!(feature = "corosync"),
        }
    }
}

/// A cluster engine, as the node daemon's membership thread uses it: the
/// corosync binding (`corosync::Corosync`), or a test's stand-in.
pub trait Engine: Send {
    /// Its name in status output.
    fn name(&self) -> &'static str;
    /// This node's id as the engine knows it.
    fn local(&self) -> u32;
    /// Appends what the engine has for this node; never blocks. An error
    /// means the connection is lost (the node fences; the engine connects
    /// again at later polls, and its first events follow).
    fn poll(&mut self, out: &mut Vec<Event>) -> Result<(), String>;
    /// Multicasts `message` ([`ckpt_core::cluster`]) to every member, in
    /// one order for all; an error means not now (flow control, or no
    /// connection): it is sent again later, or replaced by a newer one.
    fn send(&mut self, message: &[u8]) -> Result<(), String>;
    /// Where this node is reachable, for a daemon that listens on every
    /// address.
    fn address(&self) -> Result<IpAddr, String>;
}

/// What the cluster engine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The members of the daemons' group now (this node included).
    Members(BTreeSet<u32>),
    /// A member says where it listens.
    Hello(Hello),
    /// A part of a member's report of its copies.
    Report(Report),
    /// This node's partition is quorate, or not.
    Quorate(bool),
    /// The connection to the cluster engine is lost: no members, no quorum.
    Lost,
}

/// What the node must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Multicast this node's hello and its report of its copies (the
    /// membership changed: the members' reports start over).
    Announce,
    /// These members left: end their links now.
    Left(BTreeSet<u32>),
    /// Fence every copy this node holds (and new ones: the marker).
    Fence,
    /// Quorate, fenced, and every member's report is in: settle each fenced
    /// copy against [`Tracker::reports`], then call [`Tracker::settled`].
    Settle,
}

/// The most copies kept from one member's report (a member reporting more
/// is cut there; it only weakens what a fenced node learns from it).
const COPIES_KEPT_MAX: usize = 1 << 16;

/// The membership as this node knows it, and where its fence stands.
#[derive(Debug, Clone)]
pub struct Tracker {
    local: u32,
    members: BTreeSet<u32>,
    addresses: BTreeMap<u32, SocketAddr>,
    quorate: bool,
    fenced: bool,
    reports: BTreeMap<u32, Vec<CopyState>>,
    complete: BTreeSet<u32>,
}

impl Tracker {
    /// A node `local` that knows nothing yet: no members, no quorum,
    /// fenced (it may not act before it has learnt that it may).
    pub fn new(local: u32) -> Tracker {
        Tracker {
            local,
            members: BTreeSet::new(),
            addresses: BTreeMap::new(),
            quorate: false,
            fenced: true,
            reports: BTreeMap::new(),
            complete: BTreeSet::new(),
        }
    }

    /// Takes one event; what the node must do, in order.
    pub fn on(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Members(now) => {
                if now != self.members {
                    let left: BTreeSet<u32> = self.members.difference(&now).copied().collect();
                    for n in &left {
                        self.addresses.remove(n);
                    }
                    self.members = now;
                    self.reports.clear();
                    self.complete.clear();
                    if !left.is_empty() {
                        out.push(Action::Left(left));
                    }
                    out.push(Action::Announce);
                }
            }
            Event::Hello(h) => {
                if h.node != self.local && self.members.contains(&h.node) {
                    self.addresses.insert(h.node, h.listen);
                }
            }
            Event::Report(r) => {
                if r.node != self.local && self.members.contains(&r.node) {
                    let kept = self.reports.entry(r.node).or_default();
                    let room = COPIES_KEPT_MAX.saturating_sub(kept.len());
                    kept.extend(r.copies.into_iter().take(room));
                    if r.last {
                        self.complete.insert(r.node);
                    }
                }
            }
            Event::Quorate(q) => self.quorate = q,
            Event::Lost => {
                let left: BTreeSet<u32> = self
                    .members
                    .iter()
                    .copied()
                    .filter(|&n| n != self.local)
                    .collect();
                self.members.clear();
                self.addresses.clear();
                self.reports.clear();
                self.complete.clear();
                self.quorate = false;
                if !left.is_empty() {
                    out.push(Action::Left(left));
                }
            }
        }
        if !self.quorate && !self.fenced {
            self.fenced = true;
            out.push(Action::Fence);
        }
        if self.fenced && self.may_settle() {
            out.push(Action::Settle);
        }
        out
    }

    /// Quorate, and every other member's report of the current membership
    /// is complete: fenced copies may be settled.
    pub fn may_settle(&self) -> bool {
        self.quorate
            && self.members.contains(&self.local)
            && self
                .members
                .iter()
                .all(|n| *n == self.local || self.complete.contains(n))
    }

    /// The node settled every fenced copy: it acts again (until quorum goes).
    pub fn settled(&mut self) {
        if self.may_settle() {
            self.fenced = false;
        }
    }

    /// Every other member's reported copies, with its node id.
    pub fn reports(&self) -> impl Iterator<Item = (u32, &CopyState)> {
        self.reports
            .iter()
            .flat_map(|(n, copies)| copies.iter().map(move |c| (*n, c)))
    }

    /// The members (this node included), as the cluster engine last said.
    pub fn members(&self) -> &BTreeSet<u32> {
        &self.members
    }

    /// Where a member said it listens.
    pub fn address(&self, node: u32) -> Option<SocketAddr> {
        self.addresses.get(&node).copied()
    }

    /// True if this node's partition is quorate.
    pub fn quorate(&self) -> bool {
        self.quorate
    }

    /// True if this node holds its copies fenced.
    pub fn fenced(&self) -> bool {
        self.fenced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(nodes: &[u32]) -> BTreeSet<u32> {
        nodes.iter().copied().collect()
    }

    fn report(node: u32, last: bool) -> Event {
        Event::Report(Report {
            node,
            last,
            copies: vec![CopyState {
                name: b"a".to_vec(),
                incarnation: 1,
                term: node,
                primary: false,
            }],
        })
    }

    #[test]
    fn a_node_acts_only_once_quorate_with_every_members_report() {
        let mut t = Tracker::new(1);
        assert!(t.fenced(), "fenced until it learns it may act");
        assert_eq!(
            t.on(Event::Members(set(&[1, 2, 3]))),
            vec![Action::Announce]
        );
        assert_eq!(t.on(Event::Quorate(true)), vec![]);
        assert_eq!(t.on(report(2, true)), vec![]);
        assert_eq!(
            t.on(report(3, false)),
            vec![],
            "node 3's report is not whole"
        );
        assert_eq!(t.on(report(3, true)), vec![Action::Settle]);
        assert_eq!(t.reports().count(), 3);
        t.settled();
        assert!(!t.fenced());
        // Reports from a node that is not a member, or this node's own, are
        // not counted.
        t.on(report(9, true));
        t.on(report(1, true));
        assert_eq!(t.reports().count(), 3);
    }

    #[test]
    fn losing_quorum_fences_and_a_partition_heals_through_fresh_reports() {
        let mut t = Tracker::new(1);
        t.on(Event::Members(set(&[1, 2, 3])));
        t.on(Event::Quorate(true));
        t.on(report(2, true));
        t.on(report(3, true));
        t.settled();
        assert!(!t.fenced());
        // Cut off from 2 and 3.
        assert_eq!(
            t.on(Event::Members(set(&[1]))),
            vec![Action::Left(set(&[2, 3])), Action::Announce]
        );
        assert_eq!(t.on(Event::Quorate(false)), vec![Action::Fence]);
        assert!(t.fenced());
        // The partition heals: the earlier reports do not count.
        assert_eq!(
            t.on(Event::Members(set(&[1, 2, 3]))),
            vec![Action::Announce]
        );
        assert_eq!(t.on(Event::Quorate(true)), vec![]);
        t.settled();
        assert!(t.fenced(), "settled before the reports came");
        t.on(report(2, true));
        assert_eq!(t.on(report(3, true)), vec![Action::Settle]);
        t.settled();
        assert!(!t.fenced());
    }

    #[test]
    fn the_majority_side_goes_on_and_losing_the_engine_fences() {
        let mut t = Tracker::new(2);
        t.on(Event::Members(set(&[1, 2, 3])));
        t.on(Event::Quorate(true));
        t.on(report(1, true));
        t.on(report(3, true));
        t.settled();
        t.on(Event::Hello(Hello {
            node: 1,
            listen: "10.0.0.1:7400".parse().unwrap(),
        }));
        assert!(t.address(1).is_some());
        // Node 1 is cut off; 2 and 3 keep quorum: no fence.
        assert_eq!(
            t.on(Event::Members(set(&[2, 3]))),
            vec![Action::Left(set(&[1])), Action::Announce]
        );
        assert!(!t.fenced() && t.address(1).is_none());
        assert_eq!(
            t.on(Event::Lost),
            vec![Action::Left(set(&[3])), Action::Fence]
        );
        assert!(t.members().is_empty() && !t.quorate());
    }
}
