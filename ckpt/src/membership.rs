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

use ckpt_core::cluster::{Answering, CopyState, Hello, Report, COPIES_MAX};

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

/// What the cluster engine reports, and the node's clock.
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
    /// order) says where it listens, maybe requesting reports.
    Hello(Hello),
    /// A part of a member's report, answering some node's request.
    Report(Report),
    /// A message from this member was dropped before it was read (too many
    /// queued): its answer to the current request cannot be trusted whole.
    Dropped(u32),
    /// The connection to the cluster engine is lost: no members, no quorum.
    Lost,
    /// About a second passed: a request that got no whole answers is made
    /// again (a message may have been dropped).
    Tick,
}

/// What the node must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Multicast this node's hello number `seq`; with `request`, every other
    /// member answers with its report.
    Hello {
        /// The hello's number.
        seq: u64,
        /// Reports are requested.
        request: bool,
    },
    /// Multicast this node's report, answering a member's request.
    Answer(Answering),
    /// These members left: end their links now.
    Left(BTreeSet<u32>),
    /// Fence every copy this node holds (and new ones: the marker).
    Fence,
    /// Fenced copies may be settled now against [`Tracker::reports`].
    Settle,
}

/// One member's answer to this node's current request, as received.
#[derive(Debug, Clone, Default)]
struct Received {
    next_part: u16,
    whole: bool,
    damaged: bool,
    copies: Vec<CopyState>,
}

/// The membership as this node knows it, and where its fence stands.
///
/// A fenced node settles its copies with fresh knowledge only: once it is
/// quorate, it multicasts a hello that *requests* reports, and every other
/// member answers with a report naming that request. The group delivers
/// messages in one order for all, after the membership changes of the ring
/// they were sent in; so once the node's own requesting hello comes back,
/// its view of the members is current, and every answer was made after
/// the member received the request (after whatever made this node ask).
/// Fenced copies are settled only with every other member's whole answer
/// to the node's latest request, while quorate. Any change of the members
/// or the quorum asks again; a member leaving fences the node first (a
/// replica whose primary left must not be promoted before the quorum of
/// the new membership is known).
#[derive(Debug, Clone)]
pub struct Tracker {
    local: u32,
    members: BTreeSet<u32>,
    addresses: BTreeMap<u32, SocketAddr>,
    /// The engine's last quorum decision: quorate, for which ring.
    quorum: Option<(bool, u64)>,
    /// This node's last hello's number (it only grows).
    seq: u64,
    /// That hello came back.
    echoed: bool,
    /// That hello requested reports.
    requested: bool,
    /// An echo or an answer's part came since the last tick.
    progress: bool,
    fenced: bool,
    /// The daemon stops: it never acts again.
    closed: bool,
    answers: BTreeMap<u32, Received>,
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
            requested: false,
            progress: false,
            fenced: true,
            closed: false,
            answers: BTreeMap::new(),
        }
    }

    /// Multicasts a new hello; with `request`, earlier answers no longer
    /// count.
    fn hello(&mut self, request: bool, out: &mut Vec<Action>) {
        self.seq += 1;
        self.echoed = false;
        self.requested = request;
        self.answers.clear();
        out.push(Action::Hello {
            seq: self.seq,
            request,
        });
    }

    fn fence(&mut self, out: &mut Vec<Action>) {
        self.fenced = true;
        out.push(Action::Fence);
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
                    if !left.is_empty() {
                        out.push(Action::Left(left));
                        self.fence(&mut out);
                    }
                    self.hello(self.fenced, &mut out);
                }
            }
            Event::Quorum { quorate, ring } => {
                if self.quorum != Some((quorate, ring)) {
                    self.quorum = Some((quorate, ring));
                    if !quorate {
                        self.fence(&mut out);
                    }
                    self.hello(self.fenced, &mut out);
                } else if !quorate {
                    // Lost again (a settle may have been half done).
                    self.fence(&mut out);
                }
            }
            Event::Hello(h) => {
                if h.node == self.local {
                    if h.seq == self.seq {
                        self.echoed = true;
                        self.progress = true;
                    }
                } else if self.members.contains(&h.node) {
                    if reachable(h.listen) {
                        self.addresses.insert(h.node, h.listen);
                    }
                    if h.request {
                        out.push(Action::Answer(Answering {
                            to: h.node,
                            to_seq: h.seq,
                        }));
                    }
                }
            }
            Event::Report(r) => self.received(r),
            Event::Dropped(node) => {
                if let Some(a) = self.answers.get_mut(&node) {
                    a.damaged = true;
                }
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
                self.answers.clear();
                self.quorum = None;
                self.echoed = false;
                self.requested = false;
                if !left.is_empty() {
                    out.push(Action::Left(left));
                }
                self.fence(&mut out);
            }
            Event::Tick => {
                // Asked again only if nothing came for a whole tick (large
                // answers take long).
                let waiting = self.fenced || self.requested;
                let stuck = !std::mem::take(&mut self.progress);
                if waiting && stuck && self.quorate() && !self.may_settle() && !self.closed {
                    self.hello(true, &mut out);
                }
            }
        }
        if !self.quorate() && !self.fenced {
            self.fence(&mut out);
        }
        if self.fenced && self.may_settle() {
            out.push(Action::Settle);
        }
        out
    }

    /// A part of a member's answer: kept if it answers this node's current
    /// request and is the next part expected (part 0 starts it over).
    fn received(&mut self, r: Report) {
        if r.node == self.local
            || !self.members.contains(&r.node)
            || !self.requested
            || (r.to, r.to_seq) != (self.local, self.seq)
        {
            return;
        }
        self.progress = true;
        let got = self.answers.entry(r.node).or_default();
        if r.part == 0 {
            *got = Received::default();
        } else if r.part != got.next_part || got.whole {
            got.damaged = true;
            return;
        }
        got.damaged |= r.cut || got.copies.len() + r.copies.len() > COPIES_MAX;
        if !got.damaged {
            got.copies.extend(r.copies);
        }
        got.next_part = r.part.wrapping_add(1);
        got.whole = r.last;
    }

    /// Asks the members for reports (the node found a fenced copy to settle
    /// while it acts), unless a request is already out. Returns what to do.
    pub fn request(&mut self) -> Vec<Action> {
        if self.requested {
            return Vec::new();
        }
        self.ask_again()
    }

    /// Asks the members for reports again, even with a request answered
    /// (the answers in hand are stale: a copy here changed since they were
    /// made). Returns what to do.
    pub fn ask_again(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.closed {
            self.hello(true, &mut out);
        }
        out
    }

    /// Quorate, this node's latest hello a request that came back, and
    /// every other member's whole answer to it in: fenced copies may be
    /// settled.
    pub fn may_settle(&self) -> bool {
        !self.closed
            && self.quorate()
            && self.requested
            && self.echoed
            && self.members.contains(&self.local)
            && self.members.iter().all(|n| {
                *n == self.local || self.answers.get(n).is_some_and(|a| a.whole && !a.damaged)
            })
    }

    /// The node settled every fenced copy against the answers: it acts
    /// again (until a member leaves or quorum goes), and the answers are
    /// spent (a copy found fenced later asks again).
    pub fn settled(&mut self) {
        if self.may_settle() {
            self.fenced = false;
            self.requested = false;
            self.answers.clear();
        }
    }

    /// The daemon stops: fenced from now on, for good.
    pub fn close(&mut self) {
        self.closed = true;
        self.fenced = true;
    }

    /// Every other member's reported copies, with its node id.
    pub fn reports(&self) -> impl Iterator<Item = (u32, &CopyState)> {
        self.answers
            .iter()
            .flat_map(|(n, a)| a.copies.iter().map(move |c| (*n, c)))
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

    /// Part `part` of member `node`'s answer to `t`'s current request.
    fn part(t: &Tracker, node: u32, part: u16, last: bool) -> Event {
        Event::Report(Report {
            node,
            to: t.local,
            to_seq: t.seq,
            part,
            last,
            cut: false,
            copies: vec![CopyState {
                name: b"a".to_vec(),
                incarnation: 1,
                term: node,
                primary: false,
                seq: 7,
                diverged: false,
            }],
        })
    }

    /// Member `node`'s whole answer to `t`'s current request.
    fn answer(t: &mut Tracker, node: u32) -> Vec<Action> {
        let e = part(t, node, 0, true);
        t.on(e)
    }

    fn hello(node: u32, seq: u64, request: bool) -> Event {
        Event::Hello(Hello {
            node,
            seq,
            request,
            listen: format!("10.0.0.{node}:7400").parse().unwrap(),
        })
    }

    fn quorum(quorate: bool, ring: u64) -> Event {
        Event::Quorum { quorate, ring }
    }

    fn asks(seq: u64) -> Action {
        Action::Hello { seq, request: true }
    }

    /// This node's own latest hello comes back.
    fn echo(t: &mut Tracker) -> Vec<Action> {
        let (seq, request) = (t.seq, t.requested);
        t.on(hello(t.local, seq, request))
    }

    /// A tracker of node 1, members 1 and 2, quorate, its requesting hello
    /// back: node 2's answer is awaited.
    fn asking_node_2() -> Tracker {
        let mut t = Tracker::new(1);
        t.on(Event::Members(set(&[1, 2])));
        t.on(quorum(true, 10));
        echo(&mut t);
        t
    }

    /// A tracker of node 1 that acts with members 1, 2, 3.
    fn acting() -> Tracker {
        let mut t = Tracker::new(1);
        t.on(Event::Members(set(&[1, 2, 3])));
        t.on(quorum(true, 10));
        echo(&mut t);
        answer(&mut t, 2);
        assert_eq!(answer(&mut t, 3), vec![Action::Settle]);
        t.settled();
        assert!(!t.fenced());
        t
    }

    #[test]
    fn a_node_acts_only_with_every_members_whole_answer_to_its_latest_request() {
        let mut t = Tracker::new(1);
        assert!(t.fenced(), "fenced until it learns it may act");
        assert_eq!(t.on(Event::Members(set(&[1, 2, 3]))), vec![asks(1)]);
        assert_eq!(t.on(quorum(true, 10)), vec![asks(2)]);
        // An answer to the earlier request does not count.
        let stale = Event::Report(Report {
            to_seq: 1,
            ..match part(&t, 2, 0, true) {
                Event::Report(r) => r,
                _ => unreachable!(),
            }
        });
        assert_eq!(t.on(stale), vec![]);
        assert_eq!(answer(&mut t, 2), vec![]);
        assert_eq!(t.on(part(&t, 3, 0, false)), vec![], "not whole yet");
        assert_eq!(
            t.on(part(&t, 3, 1, true)),
            vec![],
            "its own hello has not come back"
        );
        assert_eq!(t.on(hello(1, 1, true)), vec![], "an earlier hello");
        assert_eq!(echo(&mut t), vec![Action::Settle]);
        assert_eq!(t.reports().count(), 3);
        t.settled();
        assert!(!t.fenced());
        assert_eq!(t.reports().count(), 0, "the answers are spent");
    }

    #[test]
    fn answers_made_stale_are_asked_for_again() {
        let mut t = asking_node_2();
        assert_eq!(answer(&mut t, 2), vec![Action::Settle]);
        // A copy changed since the answers were made: they no longer count,
        // and a new request goes out.
        let seq = t.seq;
        assert_eq!(t.ask_again(), vec![asks(seq + 1)]);
        assert!(!t.may_settle() && t.fenced());
        assert_eq!(t.reports().count(), 0);
        echo(&mut t);
        assert_eq!(answer(&mut t, 2), vec![Action::Settle]);
    }

    #[test]
    fn a_members_request_is_answered_and_its_address_taken() {
        let mut t = acting();
        assert_eq!(
            t.on(hello(2, 7, true)),
            vec![Action::Answer(Answering { to: 2, to_seq: 7 })]
        );
        assert!(t.address(2).is_some());
        // An address no peer can reach is not taken; a stranger is not
        // answered.
        t.on(Event::Hello(Hello {
            node: 3,
            seq: 1,
            request: false,
            listen: "0.0.0.0:7400".parse().unwrap(),
        }));
        assert!(t.address(3).is_none());
        assert_eq!(t.on(hello(9, 1, true)), vec![]);
    }

    #[test]
    fn a_quorum_flip_within_one_ring_needs_fresh_answers() {
        // The second review's case: the node alone loses and regains quorum
        // in the same ring; answers from before do not count.
        let mut t = acting();
        assert_eq!(t.on(quorum(false, 10)), vec![Action::Fence, asks(3)]);
        assert_eq!(t.on(quorum(true, 10)), vec![asks(4)]);
        echo(&mut t);
        t.settled();
        assert!(t.fenced(), "no answers to the new request yet");
        answer(&mut t, 2);
        assert_eq!(answer(&mut t, 3), vec![Action::Settle]);
    }

    #[test]
    fn a_member_leaving_fences_until_the_new_membership_has_answered() {
        let mut t = acting();
        assert_eq!(
            t.on(Event::Members(set(&[1, 3]))),
            vec![Action::Left(set(&[2])), Action::Fence, asks(3)]
        );
        assert!(t.fenced(), "no promotion before the new quorum is known");
        assert_eq!(t.on(quorum(true, 11)), vec![asks(4)]);
        echo(&mut t);
        assert_eq!(answer(&mut t, 3), vec![Action::Settle]);
        t.settled();
        assert!(!t.fenced());
    }

    #[test]
    fn quorum_before_the_groups_view_of_the_ring_does_not_settle_on_stale_members() {
        // The first review's case: cut off (members {1}), then quorum comes
        // back before the group's view of the new ring does.
        let mut t = acting();
        t.on(Event::Members(set(&[1])));
        t.on(quorum(false, 11));
        assert_eq!(t.on(quorum(true, 12)), vec![asks(5)]);
        t.settled();
        assert!(t.fenced(), "no echo yet");
        // The group's view of ring 12 comes before this node's own hello,
        // which was sent after ring 12 formed.
        assert_eq!(t.on(Event::Members(set(&[1, 2, 3]))), vec![asks(6)]);
        assert_eq!(t.on(hello(1, 5, true)), vec![], "an earlier hello");
        assert_eq!(echo(&mut t), vec![], "members 2 and 3 have not answered");
        answer(&mut t, 2);
        assert_eq!(answer(&mut t, 3), vec![Action::Settle]);
    }

    #[test]
    fn a_lost_part_or_a_dropped_message_is_asked_for_again_at_the_next_tick() {
        let mut t = asking_node_2();
        t.on(part(&t, 2, 0, false));
        assert_eq!(t.on(part(&t, 2, 2, true)), vec![], "part 1 is missing");
        assert_eq!(t.on(Event::Tick), vec![], "parts came in this tick");
        assert_eq!(t.on(Event::Tick), vec![asks(3)]);
        echo(&mut t);
        t.on(part(&t, 2, 0, false));
        t.on(Event::Dropped(2));
        assert_eq!(t.on(part(&t, 2, 1, true)), vec![]);
        t.on(Event::Tick);
        assert_eq!(t.on(Event::Tick), vec![asks(4)]);
        echo(&mut t);
        assert_eq!(answer(&mut t, 2), vec![Action::Settle]);
        t.settled();
        assert_eq!(t.on(Event::Tick), vec![], "nothing to ask while acting");
        // A copy found fenced while acting: one request, answered.
        assert_eq!(t.request(), vec![asks(5)]);
        assert_eq!(t.request(), vec![], "one request at a time");
        echo(&mut t);
        answer(&mut t, 2);
        assert!(t.may_settle() && !t.fenced());
    }

    #[test]
    fn losing_the_engine_or_stopping_fences_for_good() {
        let mut t = acting();
        assert_eq!(
            t.on(Event::Lost),
            vec![Action::Left(set(&[2, 3])), Action::Fence]
        );
        assert!(t.members().is_empty() && !t.quorate());
        let mut t = acting();
        t.close();
        assert!(t.fenced());
        assert_eq!(t.on(Event::Tick), vec![]);
        assert_eq!(t.request(), vec![]);
        assert!(!t.may_settle());
    }
}
