//! Who is in the cluster, and whether this node's partition may act.
//!
//! Two modes ([`Membership`]):
//! - **static** (the default, no dependency): the configured peers are the
//!   cluster; a link's liveness is its heartbeats; there is no quorum, so
//!   every node may act (the two-node case, where a quorum of two cannot
//!   survive the loss of either);
//! - **corosync** (cargo feature `corosync`): the node daemons that joined
//!   one corosync CPG group are the members, and votequorum (through
//!   corosync's quorum service) says whether this node's partition is
//!   quorate. A member leaving is the failure
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

/// True if a peer could reach a daemon listening on `at` (neither
/// unspecified nor loopback): what a hello may announce.
pub(crate) fn reachable(at: SocketAddr) -> bool {
    !at.ip().is_unspecified() && !at.ip().is_loopback()
}

/// What the cluster engine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The members of the daemons' group now (this node included).
    Members(BTreeSet<u32>),
    /// The engine's quorum decision for its ring `ring`.
    Quorum {
        /// This node's partition is quorate.
        quorate: bool,
        /// The ring the decision is for.
        ring: u64,
    },
    /// A member (or this node: its own messages come back in the group's
    /// order) says where it listens.
    Hello(Hello),
    /// A part of a member's report of its copies.
    Report(Report),
    /// A message from this member was dropped before it was read (too many
    /// queued): its report cannot be trusted whole until it announces again.
    Dropped(u32),
    /// The connection to the cluster engine is lost: no members, no quorum.
    Lost,
}

/// What the node must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Multicast this node's hello and its report of its copies, tagged
    /// with the quorum ring it knows and this announcement's number (the
    /// membership or the quorum changed).
    Announce {
        /// The quorum ring (0 while none is known).
        ring: u64,
        /// The announcement's number.
        seq: u64,
    },
    /// These members left: end their links now.
    Left(BTreeSet<u32>),
    /// Fence every copy this node holds (and new ones: the marker).
    Fence,
    /// Quorate, fenced, this node's view current and every member's report
    /// in: settle each fenced copy against [`Tracker::reports`], then call
    /// [`Tracker::settled`].
    Settle,
}

/// The most copies kept from one member's report (a member reporting more
/// is cut there, and its report never counts as whole).
const COPIES_KEPT_MAX: usize = 1 << 16;

/// One member's report as received since the group's view last changed.
#[derive(Debug, Clone, Default)]
struct Received {
    ring: u64,
    seq: u64,
    next_part: u16,
    whole: bool,
    damaged: bool,
    copies: Vec<CopyState>,
}

/// The membership as this node knows it, and where its fence stands.
///
/// Every change of the group's members or of the quorum makes this node
/// announce itself again (its hello and report, tagged with the quorum
/// ring it knows and a growing number). The group delivers messages in one
/// order for all, after the membership changes of the ring they were sent
/// in; so once this node's own latest hello comes back, its view of the
/// members is current, and a report received since the view last changed
/// was sent in that view. A report counts if it was sent knowing the
/// current quorum ring (or a newer one): quorum changes are not ordered
/// with the group's messages, so that is how an old report is told from a
/// fresh one. Fenced copies are settled only once all that holds, with
/// every other member's whole report.
#[derive(Debug, Clone)]
pub struct Tracker {
    local: u32,
    members: BTreeSet<u32>,
    addresses: BTreeMap<u32, SocketAddr>,
    /// The engine's last quorum decision: quorate, for which ring.
    quorum: Option<(bool, u64)>,
    /// This node's last announcement's number (it only grows).
    seq: u64,
    /// This node's hello of announcement `seq` came back.
    echoed: bool,
    fenced: bool,
    reports: BTreeMap<u32, Received>,
}

impl Tracker {
    /// A node `local` that knows nothing yet: no members, no quorum,
    /// fenced (it may not act before it has learnt that it may).
    pub fn new(local: u32) -> Tracker {
        Tracker {
            local,
            members: BTreeSet::new(),
            addresses: BTreeMap::new(),
            quorum: None,
            seq: 0,
            echoed: false,
            fenced: true,
            reports: BTreeMap::new(),
        }
    }

    /// The quorum ring this node knows (0: none).
    fn ring(&self) -> u64 {
        self.quorum.map_or(0, |(_, ring)| ring)
    }

    /// Announces this node again; its view is current once this comes back.
    fn announce(&mut self, out: &mut Vec<Action>) {
        self.seq += 1;
        self.echoed = false;
        out.push(Action::Announce {
            ring: self.ring(),
            seq: self.seq,
        });
    }

    /// Takes one event; what the node must do, in order.
    pub fn on(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        let lost = matches!(event, Event::Lost | Event::Quorum { quorate: false, .. });
        match event {
            Event::Members(now) => {
                if now != self.members {
                    let left: BTreeSet<u32> = self.members.difference(&now).copied().collect();
                    for n in &left {
                        self.addresses.remove(n);
                    }
                    self.members = now;
                    // What was received before this view was sent in
                    // another.
                    self.reports.clear();
                    if !left.is_empty() {
                        out.push(Action::Left(left));
                    }
                    self.announce(&mut out);
                }
            }
            Event::Quorum { quorate, ring } => {
                if self.quorum != Some((quorate, ring)) {
                    self.quorum = Some((quorate, ring));
                    self.announce(&mut out);
                }
            }
            Event::Hello(h) => {
                if h.node == self.local {
                    self.echoed |= h.seq == self.seq;
                } else if self.members.contains(&h.node) && reachable(h.listen) {
                    self.addresses.insert(h.node, h.listen);
                }
            }
            Event::Report(r) => self.received(r),
            Event::Dropped(node) => {
                self.reports.entry(node).or_default().damaged = true;
            }
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
                self.quorum = None;
                self.echoed = false;
                if !left.is_empty() {
                    out.push(Action::Left(left));
                }
            }
        }
        // Every loss of quorum fences, whatever the fence was thought to be
        // (a settle may have lifted some copies and not others).
        if !self.quorate() && (lost || !self.fenced) {
            out.push(Action::Fence);
            self.fenced = true;
        }
        if self.fenced && self.may_settle() {
            out.push(Action::Settle);
        }
        out
    }

    /// A part of a member's report: kept if it is the next part expected
    /// (part 0 starts the member's report over).
    fn received(&mut self, r: Report) {
        if r.node == self.local || !self.members.contains(&r.node) {
            return;
        }
        let got = self.reports.entry(r.node).or_default();
        if r.part == 0 {
            *got = Received {
                ring: r.ring,
                seq: r.seq,
                ..Received::default()
            };
        } else if got.seq != r.seq || r.part != got.next_part || got.whole {
            got.damaged = true;
            return;
        }
        let room = COPIES_KEPT_MAX.saturating_sub(got.copies.len());
        if r.copies.len() > room {
            got.damaged = true;
        }
        got.copies.extend(r.copies.into_iter().take(room));
        got.next_part = r.part.wrapping_add(1);
        got.whole = r.last;
    }

    /// Quorate, this node's view current (its latest hello came back), and
    /// every other member's whole report, sent knowing the current quorum
    /// ring, in: fenced copies may be settled.
    pub fn may_settle(&self) -> bool {
        let ring = self.ring();
        self.quorate()
            && self.echoed
            && self.members.contains(&self.local)
            && self.members.iter().all(|n| {
                *n == self.local
                    || self
                        .reports
                        .get(n)
                        .is_some_and(|r| r.whole && !r.damaged && r.ring >= ring)
            })
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
            .flat_map(|(n, r)| r.copies.iter().map(move |c| (*n, c)))
    }

    /// The members (this node included), as the cluster engine last said.
    pub fn members(&self) -> &BTreeSet<u32> {
        &self.members
    }

    /// Where a member said it listens.
    pub fn address(&self, node: u32) -> Option<SocketAddr> {
        self.addresses.get(&node).copied()
    }

    /// True if the engine's last decision says this node's partition is
    /// quorate.
    pub fn quorate(&self) -> bool {
        matches!(self.quorum, Some((true, _)))
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

    fn part(node: u32, ring: u64, seq: u64, part: u16, last: bool) -> Event {
        Event::Report(Report {
            node,
            ring,
            seq,
            part,
            last,
            copies: vec![CopyState {
                name: b"a".to_vec(),
                incarnation: 1,
                term: node,
                primary: false,
            }],
        })
    }

    /// A member's whole report, sent knowing quorum ring `ring`.
    fn whole(node: u32, ring: u64) -> Event {
        part(node, ring, ring, 0, true)
    }

    fn hello(node: u32, seq: u64) -> Event {
        Event::Hello(Hello {
            node,
            ring: 0,
            seq,
            listen: format!("10.0.0.{node}:7400").parse().unwrap(),
        })
    }

    fn quorum(quorate: bool, ring: u64) -> Event {
        Event::Quorum { quorate, ring }
    }

    fn announce(ring: u64, seq: u64) -> Action {
        Action::Announce { ring, seq }
    }

    /// This node's own latest hello comes back.
    fn echo(t: &mut Tracker) -> Vec<Action> {
        let seq = t.seq;
        t.on(hello(t.local, seq))
    }

    /// A tracker of node 1 that acts with members 1, 2, 3 in ring 10.
    fn acting() -> Tracker {
        let mut t = Tracker::new(1);
        t.on(Event::Members(set(&[1, 2, 3])));
        t.on(quorum(true, 10));
        echo(&mut t);
        t.on(whole(2, 10));
        assert_eq!(t.on(whole(3, 10)), vec![Action::Settle]);
        t.settled();
        assert!(!t.fenced());
        t
    }

    #[test]
    fn a_node_acts_only_once_quorate_its_view_current_and_every_report_whole() {
        let mut t = Tracker::new(1);
        assert!(t.fenced(), "fenced until it learns it may act");
        assert_eq!(t.on(Event::Members(set(&[1, 2, 3]))), vec![announce(0, 1)]);
        assert_eq!(t.on(quorum(true, 10)), vec![announce(10, 2)]);
        assert_eq!(
            t.on(whole(2, 9)),
            vec![],
            "sent before the quorum of ring 10"
        );
        assert_eq!(t.on(whole(2, 10)), vec![]);
        assert_eq!(t.on(part(3, 10, 4, 0, false)), vec![], "not whole yet");
        assert_eq!(
            t.on(part(3, 10, 4, 1, true)),
            vec![],
            "its own hello has not come back"
        );
        assert_eq!(t.on(hello(1, 1)), vec![], "an earlier announcement's hello");
        assert_eq!(echo(&mut t), vec![Action::Settle]);
        assert_eq!(t.reports().count(), 3);
        t.settled();
        assert!(!t.fenced());
        // Reports from a node that is not a member, or this node's own, are
        // not kept.
        t.on(whole(9, 10));
        t.on(whole(1, 10));
        assert_eq!(t.reports().count(), 3);
    }

    #[test]
    fn a_report_that_came_before_this_nodes_quorum_event_still_counts() {
        // Quorum notifications are not ordered with the group's messages:
        // node 2's report, sent once it knew ring 10, may come first.
        let mut t = Tracker::new(1);
        t.on(Event::Members(set(&[1, 2])));
        t.on(whole(2, 10));
        assert_eq!(t.on(quorum(true, 10)), vec![announce(10, 2)]);
        assert_eq!(echo(&mut t), vec![Action::Settle]);
    }

    #[test]
    fn a_missing_part_or_a_dropped_message_keeps_a_report_from_counting() {
        let mut t = Tracker::new(1);
        t.on(Event::Members(set(&[1, 2])));
        t.on(quorum(true, 10));
        echo(&mut t);
        t.on(part(2, 10, 1, 0, false));
        assert_eq!(t.on(part(2, 10, 1, 2, true)), vec![], "part 1 is missing");
        t.settled();
        assert!(t.fenced());
        // A new report (part 0) starts over; a dropped message spoils it.
        t.on(part(2, 10, 2, 0, false));
        t.on(Event::Dropped(2));
        assert_eq!(t.on(part(2, 10, 2, 1, true)), vec![]);
        // The member announces again: whole now.
        assert_eq!(t.on(part(2, 10, 3, 0, true)), vec![Action::Settle]);
    }

    #[test]
    fn quorum_before_the_groups_view_of_the_ring_does_not_settle_on_stale_members() {
        // The review's case: cut off (members {1}), then quorum comes back
        // before the group's view of the new ring does.
        let mut t = acting();
        t.on(Event::Members(set(&[1])));
        assert_eq!(
            t.on(quorum(false, 11)),
            vec![announce(11, 4), Action::Fence]
        );
        assert_eq!(t.on(quorum(true, 12)), vec![announce(12, 5)]);
        t.settled();
        assert!(t.fenced(), "no echo yet");
        // The group's view of ring 12 comes before this node's own hello,
        // which was sent after ring 12 formed.
        assert_eq!(t.on(Event::Members(set(&[1, 2, 3]))), vec![announce(12, 6)]);
        assert_eq!(t.on(hello(1, 5)), vec![], "an earlier announcement's hello");
        assert_eq!(echo(&mut t), vec![], "members 2 and 3 have not reported");
        t.on(whole(2, 12));
        assert_eq!(t.on(whole(3, 12)), vec![Action::Settle]);
    }

    #[test]
    fn losing_quorum_fences_and_a_partition_heals_through_fresh_reports() {
        let mut t = acting();
        // Cut off from 2 and 3.
        assert_eq!(
            t.on(Event::Members(set(&[1]))),
            vec![Action::Left(set(&[2, 3])), announce(10, 3)]
        );
        assert_eq!(
            t.on(quorum(false, 11)),
            vec![announce(11, 4), Action::Fence]
        );
        assert!(t.fenced());
        // The same decision again changes nothing but fences again (a
        // settle may have been half done).
        assert_eq!(t.on(quorum(false, 11)), vec![Action::Fence]);
        // The partition heals: the reports from before do not count.
        t.on(Event::Members(set(&[1, 2, 3])));
        assert_eq!(t.on(quorum(true, 12)), vec![announce(12, 6)]);
        echo(&mut t);
        t.settled();
        assert!(t.fenced(), "settled before the reports came");
        t.on(whole(2, 12));
        assert_eq!(t.on(whole(3, 11)), vec![], "sent before it knew ring 12");
        assert_eq!(t.on(whole(3, 12)), vec![Action::Settle]);
        t.settled();
        assert!(!t.fenced());
    }

    #[test]
    fn the_majority_side_goes_on_and_losing_the_engine_fences() {
        let mut t = acting();
        t.on(hello(2, 1));
        assert!(t.address(2).is_some());
        // An address no peer can reach is not taken.
        t.on(Event::Hello(Hello {
            node: 3,
            ring: 10,
            seq: 1,
            listen: "0.0.0.0:7400".parse().unwrap(),
        }));
        assert!(t.address(3).is_none());
        // Node 2 is cut off; 1 and 3 keep quorum: no fence.
        assert_eq!(
            t.on(Event::Members(set(&[1, 3]))),
            vec![Action::Left(set(&[2])), announce(10, 3)]
        );
        assert_eq!(t.on(quorum(true, 11)), vec![announce(11, 4)]);
        assert!(!t.fenced() && t.address(2).is_none());
        assert_eq!(
            t.on(Event::Lost),
            vec![Action::Left(set(&[3])), Action::Fence]
        );
        assert!(t.members().is_empty() && !t.quorate());
    }
}
