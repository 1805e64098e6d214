//! The replication protocol ([`ckpt_core::repl`]) under a seeded simulator.
//!
//! Three nodes: a primary that writes and two replicas, each holding a model
//! of its checkpoint (state, last frame, a small ring of recent frames). The
//! network delays, reorders, drops and duplicates messages and cuts links
//! for a while; replica daemons crash and restart (their replica, in shared
//! memory, survives); the primary's node dies and the most advanced replica
//! is promoted in a new term, and the old primary comes back later as a
//! replica with whatever it wrote that nobody received; or it was only cut
//! off, goes on writing in its old term as a "zombie" until a replica
//! subscribing to it with the newer term deposes it, and then follows. The same state
//! machines as the node daemon's run here; only the driver is a model.
//!
//! Checked throughout: a replica applies frames only in sequence order and
//! never one of an older term; after every apply and every snapshot its state
//! is the one the primary had at that frame (prefix consistency); a frame
//! acknowledged by every replica survives a failover; a subscription of a
//! newer term deposes a primary, and nothing else does. Checked at the end,
//! after the faults stop: every replica converges to the primary's state.
//!
//! A failure prints its seed. `CKPT_SIM_SEED=n` replays one seed;
//! `CKPT_SIM_SEEDS=n` runs n seeds (default 300).

use std::collections::{BTreeMap, HashMap, VecDeque};

use ckpt_core::repl::{
    Actions, FollowAction, Follower, LinkConfig, LogView, Message, Position, Refusal, ShipAction,
    Shipper,
};

/// splitmix64: a seeded, portable generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// One frame: `key := val` (key 255: the active replica changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct F {
    seq: u64,
    term: u32,
    key: u8,
    val: u64,
}

const MARKER: u8 = 255;
/// Frames a ring holds: small, so that links get lapped.
const RING: usize = 48;

/// A snapshot: the whole state, through frame `start`.
#[derive(Debug, Clone)]
struct Snap {
    incarnation: u64,
    start: Position,
    state: BTreeMap<u8, u64>,
}

/// A node's copy of the checkpoint (the primary's segment, or a replica).
#[derive(Debug, Clone)]
struct Store {
    incarnation: u64,
    state: BTreeMap<u8, u64>,
    holds: Position,
    /// The newest term seen.
    term: u32,
    ring: VecDeque<F>,
}

impl Store {
    fn empty() -> Store {
        Store {
            incarnation: 0,
            state: BTreeMap::new(),
            holds: Position::default(),
            term: 0,
            ring: VecDeque::new(),
        }
    }

    /// What `Segment::apply` does, as far as the protocol sees it.
    fn apply(&mut self, f: F) -> Result<(), Refusal> {
        if f.term < self.term {
            return Err(Refusal::OlderTerm);
        }
        if f.seq != self.holds.seq + 1 {
            return Err(Refusal::Gap);
        }
        if f.key != MARKER {
            self.state.insert(f.key, f.val);
        }
        self.holds = Position {
            seq: f.seq,
            term: f.term,
        };
        self.term = f.term;
        self.ring.push_back(f);
        if self.ring.len() > RING {
            self.ring.pop_front();
        }
        Ok(())
    }

    fn install(&mut self, s: &Snap) {
        self.incarnation = s.incarnation;
        self.state = s.state.clone();
        self.holds = s.start;
        self.term = self.term.max(s.start.term);
        self.ring.clear();
    }

    fn snapshot(&self) -> Snap {
        Snap {
            incarnation: self.incarnation,
            start: self.holds,
            state: self.state.clone(),
        }
    }

    fn hash(&self) -> u64 {
        self.state.iter().fold(self.holds.seq, |h, (k, v)| {
            (h ^ (*k as u64)).wrapping_mul(0x100_0000_01B3) ^ v
        })
    }
}

impl LogView for Store {
    fn incarnation(&self) -> u64 {
        self.incarnation
    }
    fn term(&self) -> u32 {
        self.term
    }
    fn tail(&self) -> u64 {
        self.holds.seq
    }
    fn oldest(&self) -> u64 {
        self.ring.front().map_or(self.holds.seq + 1, |f| f.seq)
    }
    fn term_at(&self, seq: u64) -> Option<u32> {
        let first = self.ring.front()?.seq;
        let i = seq.checked_sub(first)? as usize;
        self.ring.get(i).map(|f| f.term)
    }
    fn continues(&self, _seq: u64) -> bool {
        false // The simulation's writes are one frame each.
    }
}

enum Role {
    Primary { shippers: Vec<Option<Shipper>> },
    Replica { follower: Follower, primary: usize },
}

struct Node {
    store: Store,
    role: Role,
    /// Down (its node died, or its daemon crashed) until then.
    down_until: u64,
    /// The node died: it comes back only as a replica.
    dead: bool,
    /// The copy a snapshot's beginning brought, installed at its end.
    copy: Option<Snap>,
}

#[derive(Debug, Clone)]
enum Payload {
    None,
    Frames(Vec<F>),
    Snap(Snap),
}

struct Packet {
    at: u64,
    from: usize,
    to: usize,
    /// The link's generation when sent: a new link never gets an old one's.
    gen: u64,
    msg: Message,
    payload: Payload,
}

/// A replica's link to its primary.
#[derive(Clone, Copy)]
struct Link {
    gen: u64,
    up: bool,
    /// Cut until then.
    cut_until: u64,
}

const NODES: usize = 3;
const MS: u64 = 1_000_000;

struct Sim {
    rng: Rng,
    now: u64,
    nodes: Vec<Node>,
    links: [Link; NODES],
    net: Vec<Packet>,
    cfg: LinkConfig,
    /// (seq, term) -> the state's hash after that frame, as its writer had it.
    history: HashMap<(u64, u32), u64>,
    /// Per replica: the newest frame its shipper saw acknowledged, this term.
    acked: [u64; NODES],
    faults: bool,
    failovers: u32,
    /// The active replica.
    leader: usize,
    /// A deposed primary that does not know it yet (cut off at the
    /// failover): it goes on writing frames of its old term.
    zombie: Option<usize>,
    stats: Stats,
}

#[derive(Default, Debug)]
struct Stats {
    frames_written: u64,
    frames_applied: u64,
    snapshots: u64,
    resubscribes: u64,
    closes: u64,
    failovers: u64,
    deposed: u64,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let cfg = LinkConfig {
            window: 4 + rng.below(40),
            batch: 1 + rng.below(12),
            heartbeat_ns: 5 * MS,
            silence_ns: 40 * MS,
            resubscribe_ns: 8 * MS,
            snapshot_tries: 5,
            retransmit_ns: 15 * MS,
        };
        let incarnation = rng.next() | 1;
        let mut primary = Store::empty();
        primary.incarnation = incarnation;
        primary.term = 1;
        let mut history = HashMap::new();
        let creation = F {
            seq: 1,
            term: 1,
            key: MARKER,
            val: 0,
        };
        primary.apply(creation).unwrap();
        history.insert((1, 1), primary.hash());
        let mut nodes = vec![Node {
            store: primary,
            role: Role::Primary {
                shippers: (0..NODES).map(|_| None).collect(),
            },
            down_until: 0,
            dead: false,
            copy: None,
        }];
        for _ in 1..NODES {
            nodes.push(Node {
                store: Store::empty(),
                role: Role::Replica {
                    follower: Follower::new(cfg, 0, Position::default()),
                    primary: 0,
                },
                down_until: 0,
                dead: false,
                copy: None,
            });
        }
        Sim {
            rng,
            now: 0,
            nodes,
            links: [Link {
                gen: 0,
                up: false,
                cut_until: 0,
            }; NODES],
            net: Vec::new(),
            cfg,
            history,
            acked: [0; NODES],
            faults: true,
            failovers: 0,
            leader: 0,
            zombie: None,
            stats: Stats::default(),
        }
    }

    fn primary(&self) -> usize {
        self.leader
    }

    fn alive(&self, i: usize) -> bool {
        !self.nodes[i].dead && self.nodes[i].down_until <= self.now
    }

    fn send(&mut self, from: usize, to: usize, gen: u64, msg: Message, payload: Payload) {
        let mut delay = self.rng.below(3 * MS);
        if self.faults {
            if self.rng.chance(8) {
                return; // dropped
            }
            if self.rng.chance(8) {
                let again = self.rng.below(6 * MS);
                self.net.push(Packet {
                    at: self.now + again,
                    from,
                    to,
                    gen,
                    msg,
                    payload: payload.clone(),
                });
            }
            if self.rng.chance(20) {
                delay += self.rng.below(10 * MS); // overtaken by later ones
            }
        }
        self.net.push(Packet {
            at: self.now + delay,
            from,
            to,
            gen,
            msg,
            payload,
        });
    }

    /// Closes replica `r`'s link; both ends learn it.
    fn drop_link(&mut self, r: usize) {
        let l = &mut self.links[r];
        if !l.up {
            return;
        }
        l.up = false;
        l.gen += 1;
        let now = self.now;
        if let Role::Replica { follower, primary } = &mut self.nodes[r].role {
            follower.lost();
            let p = *primary;
            if let Role::Primary { shippers } = &mut self.nodes[p].role {
                if let Some(s) = shippers[r].as_mut() {
                    s.lost(now);
                }
            }
        }
    }

    /// Replica `r` connects to its primary if both run and the link is whole.
    fn connect(&mut self, r: usize) {
        let Role::Replica { primary, .. } = self.nodes[r].role else {
            return;
        };
        let l = self.links[r];
        if l.up || l.cut_until > self.now || !self.alive(r) || !self.alive(primary) {
            return;
        }
        self.links[r].up = true;
        self.links[r].gen += 1;
        let now = self.now;
        if let Role::Primary { shippers } = &mut self.nodes[primary].role {
            shippers[r] = Some(Shipper::new(self.cfg, now));
        }
        let Role::Replica { follower, .. } = &mut self.nodes[r].role else {
            unreachable!()
        };
        // A replica that holds nothing may be one its node does not want
        // yet (placement): the link parks until it is wanted.
        let out = if follower.incarnation() == 0 && self.rng.chance(300) {
            follower.park(now)
        } else {
            follower.connected(now)
        };
        self.follow_actions(r, out, &Payload::None);
    }

    fn ship_actions(&mut self, p: usize, r: usize, mut out: Actions<ShipAction>) {
        let gen = self.links[r].gen;
        loop {
            let mut next = None;
            for a in out {
                match a {
                    ShipAction::Send(m) => self.send(p, r, gen, m, Payload::None),
                    ShipAction::Ship {
                        first,
                        last,
                        prev_term,
                    } => {
                        let store = &self.nodes[p].store;
                        if first < store.oldest() {
                            let now = self.now;
                            next = Some(self.shipper(p, r).lapped(now));
                            continue;
                        }
                        let frames: Vec<F> = store
                            .ring
                            .iter()
                            .filter(|f| (first..=last).contains(&f.seq))
                            .copied()
                            .collect();
                        assert_eq!(
                            frames.len() as u64,
                            last - first + 1,
                            "ship {first}..={last}"
                        );
                        let msg = Message::Frames {
                            first,
                            last,
                            prev_term,
                            behind: 0,
                        };
                        self.send(p, r, gen, msg, Payload::Frames(frames));
                    }
                    ShipAction::Snapshot => {
                        let snap = self.nodes[p].store.snapshot();
                        self.stats.snapshots += 1;
                        // The copy travels with the beginning (no parts);
                        // the end says where it stands.
                        let begin = Message::Snapshot {
                            incarnation: snap.incarnation,
                        };
                        let start = snap.start;
                        self.send(p, r, gen, begin, Payload::Snap(snap));
                        let end = Message::SnapshotEnd { start, sections: 0 };
                        self.send(p, r, gen, end, Payload::None);
                        let now = self.now;
                        let store = self.nodes[p].store.clone();
                        next = Some(
                            self.shipper(p, r)
                                .snapshot_sent(start, start.seq, &store, now),
                        );
                    }
                    ShipAction::Acked { seq } => {
                        // An acknowledgement is the replica's word: it held
                        // the frame when it said so.
                        self.acked[r] = self.acked[r].max(seq);
                    }
                    ShipAction::Deposed { term } => {
                        // Only the zombie's shippers may be told; it has none
                        // connected, and the leader holds the newest term.
                        panic!(
                            "leader {p} (term {}) deposed by term {term}",
                            self.nodes[p].store.term
                        );
                    }
                    ShipAction::Close(_) => {
                        self.stats.closes += 1;
                        self.drop_link(r);
                    }
                }
            }
            match next {
                Some(n) => out = n,
                None => return,
            }
        }
    }

    fn shipper(&mut self, p: usize, r: usize) -> &mut Shipper {
        match &mut self.nodes[p].role {
            Role::Primary { shippers } => shippers[r].as_mut().expect("a shipper"),
            Role::Replica { .. } => panic!("not a primary"),
        }
    }

    fn follow_actions(&mut self, r: usize, mut out: Actions<FollowAction>, payload: &Payload) {
        loop {
            let mut next = None;
            for a in out {
                let Role::Replica { primary, .. } = self.nodes[r].role else {
                    return;
                };
                let gen = self.links[r].gen;
                match a {
                    FollowAction::Send(m) => {
                        if matches!(m, Message::Subscribe { .. }) {
                            self.stats.resubscribes += 1;
                        }
                        self.send(r, primary, gen, m, Payload::None)
                    }
                    FollowAction::Apply { first, last, after } => {
                        let Payload::Frames(frames) = payload else {
                            panic!("apply without frames")
                        };
                        let mut refused = None;
                        // The frame before `first`, if the batch has it, must
                        // be the one the replica holds.
                        if frames
                            .iter()
                            .any(|f| f.seq == after.seq && f.term != after.term)
                        {
                            refused = Some(Refusal::Gap);
                        }
                        let todo = frames.iter().filter(|f| (first..=last).contains(&f.seq));
                        for f in todo.take_while(|_| refused.is_none()) {
                            let store = &mut self.nodes[r].store;
                            match store.apply(*f) {
                                Ok(()) => {
                                    self.stats.frames_applied += 1;
                                    let want = self.history.get(&(f.seq, f.term));
                                    assert_eq!(
                                        Some(&store.hash()),
                                        want,
                                        "replica {r} after frame {f:?}: not the primary's state"
                                    );
                                }
                                Err(e) => {
                                    refused = Some(e);
                                    break;
                                }
                            }
                        }
                        let now = self.now;
                        let holds = self.nodes[r].store.holds;
                        let Role::Replica { follower, .. } = &mut self.nodes[r].role else {
                            unreachable!()
                        };
                        let mut n = follower.applied(holds, now);
                        if let Some(e) = refused {
                            n = follower.refused(e, now);
                        }
                        next = Some(n);
                    }
                    FollowAction::InstallBegin { incarnation } => {
                        let Payload::Snap(snap) = payload else {
                            panic!("a snapshot's beginning without its copy")
                        };
                        assert_eq!(snap.incarnation, incarnation);
                        self.nodes[r].copy = Some(snap.clone());
                    }
                    FollowAction::InstallPart => panic!("the simulator sends no parts"),
                    FollowAction::InstallDrop => self.nodes[r].copy = None,
                    FollowAction::InstallEnd { start, .. } => {
                        let now = self.now;
                        // Messages overtake each other here: the end may
                        // belong to another snapshot than the copy begun.
                        let copy = self.nodes[r].copy.take();
                        let Some(snap) = copy.filter(|s| s.start == start) else {
                            let Role::Replica { follower, .. } = &mut self.nodes[r].role else {
                                unreachable!()
                            };
                            next = Some(follower.install_failed(now));
                            continue;
                        };
                        let (start, term) = (start.seq, start.term);
                        self.trace(format_args!(
                            "replica {r} installs {:?} over {:?}",
                            snap.start, self.nodes[r].store.holds
                        ));
                        let store = &mut self.nodes[r].store;
                        store.install(&snap);
                        let want = self.history.get(&(start, term));
                        assert_eq!(
                            Some(&store.hash()),
                            want,
                            "replica {r}: snapshot at {start}"
                        );
                        let holds = store.holds;
                        let Role::Replica { follower, .. } = &mut self.nodes[r].role else {
                            unreachable!()
                        };
                        next = Some(follower.installed(holds, now));
                    }
                    FollowAction::Close(_) => {
                        self.stats.closes += 1;
                        self.drop_link(r);
                    }
                }
            }
            match next {
                Some(n) => out = n,
                None => return,
            }
        }
    }

    /// The primary's application writes one value.
    fn write(&mut self) {
        let p = match self.zombie {
            // The zombie's application writes too (asynchronous mode).
            Some(z) if self.rng.chance(300) => z,
            _ => self.primary(),
        };
        if !self.alive(p) {
            return;
        }
        let store = &mut self.nodes[p].store;
        let f = F {
            seq: store.holds.seq + 1,
            term: store.term,
            key: self.rng.below(16) as u8,
            val: self.rng.next(),
        };
        store.apply(f).unwrap();
        let h = store.hash();
        // A deposed primary may write a frame number another wrote in a
        // newer term: (seq, term) still names one frame.
        assert!(self.history.insert((f.seq, f.term), h).is_none());
        self.stats.frames_written += 1;
    }

    /// Node `p` (the zombie) is no longer a primary: it follows the leader.
    fn step_down(&mut self, p: usize) {
        assert_eq!(self.zombie, Some(p), "only a deposed primary steps down");
        self.zombie = None;
        let primary = self.leader;
        let store = &self.nodes[p].store;
        self.nodes[p].role = Role::Replica {
            follower: Follower::new(self.cfg, store.incarnation, store.holds),
            primary,
        };
        for r in 0..NODES {
            if matches!(self.nodes[r].role, Role::Replica { primary: q, .. } if q == p) {
                self.drop_link(r);
            }
        }
    }

    /// The primary's node dies; the most advanced live replica is promoted.
    fn fail_over(&mut self) {
        let old = self.primary();
        let replicas: Vec<usize> = (0..NODES).filter(|&i| i != old && self.alive(i)).collect();
        let Some(&new) = replicas
            .iter()
            .max_by_key(|&&i| self.nodes[i].store.holds.seq)
        else {
            return;
        };
        // Every frame all replicas acknowledged in this term survives.
        let durable = (0..NODES)
            .filter(|&i| i != old)
            .map(|i| self.acked[i])
            .min()
            .unwrap();
        assert!(
            self.nodes[new].store.holds.seq >= durable,
            "promoted replica {new} lacks acknowledged frame {durable}"
        );
        for r in 0..NODES {
            self.drop_link(r);
        }
        // Its node died, or it was cut off and goes on as a primary.
        let zombie = self.rng.chance(500);
        if !zombie {
            self.nodes[old].dead = true;
            self.nodes[old].down_until = self.now + (20 + self.rng.below(200)) * MS;
        }
        // The new term's first frame: the active replica changed.
        let term = self.nodes.iter().map(|n| n.store.term).max().unwrap() + 1;
        let store = &mut self.nodes[new].store;
        store.term = term;
        let f = F {
            seq: store.holds.seq + 1,
            term,
            key: MARKER,
            val: new as u64,
        };
        store.apply(f).unwrap();
        assert!(self.history.insert((f.seq, f.term), store.hash()).is_none());
        self.nodes[new].role = Role::Primary {
            shippers: (0..NODES).map(|_| None).collect(),
        };
        self.leader = new;
        for r in 0..NODES {
            if let Role::Replica { primary, .. } = &mut self.nodes[r].role {
                *primary = new;
            }
        }
        self.trace(format_args!(
            "failover: {old} -> {new} (term {term}, from {:?}), zombie: {zombie}",
            self.nodes[new].store.holds
        ));
        if zombie {
            self.zombie = Some(old);
        } else {
            // The old primary, when it comes back, is a replica of the new one.
            let store = &self.nodes[old].store;
            self.nodes[old].role = Role::Replica {
                follower: Follower::new(self.cfg, store.incarnation, store.holds),
                primary: new,
            };
        }
        self.acked = [0; NODES];
        self.failovers += 1;
        self.stats.failovers += 1;
    }

    fn faults(&mut self) {
        let p = self.primary();
        // A link cut for a while.
        if self.rng.chance(4) {
            let r = self.rng.below(NODES as u64) as usize;
            if r != p {
                self.drop_link(r);
                self.links[r].cut_until = self.now + (1 + self.rng.below(60)) * MS;
            }
        }
        // A replica daemon crashes: its follower and links are gone, its
        // replica (shared memory) stays.
        if self.rng.chance(2) {
            let r = self.rng.below(NODES as u64) as usize;
            if r != p && self.alive(r) {
                self.drop_link(r);
                self.nodes[r].down_until = self.now + (1 + self.rng.below(40)) * MS;
                let store = &self.nodes[r].store;
                let fresh = Follower::new(self.cfg, store.incarnation, store.holds);
                if let Role::Replica { follower, .. } = &mut self.nodes[r].role {
                    *follower = fresh;
                }
            }
        }
        // The primary's daemon crashes: its shippers are gone; the
        // application goes on writing (the ring may lap the links).
        if self.rng.chance(2) {
            for r in 0..NODES {
                self.drop_link(r);
                self.links[r].cut_until = self.now + (1 + self.rng.below(30)) * MS;
            }
        }
        // The primary's node dies, or is cut off (at most twice a run).
        if self.failovers < 2 && self.zombie.is_none() && self.rng.chance(1) {
            self.fail_over();
        }
        // A replica that still has the zombie configured subscribes to it,
        // telling it the newer term it follows.
        if let Some(z) = self.zombie {
            if self.rng.chance(10) {
                self.visit_zombie(z);
            }
        }
    }

    /// A replica subscribes to the zombie: if it has seen the newer term,
    /// the zombie learns it is deposed and steps down.
    fn visit_zombie(&mut self, z: usize) {
        let Some(r) = (0..NODES).find(|&i| i != z && i != self.leader) else {
            return;
        };
        let holds = self.nodes[r].store.holds;
        let msg = Message::Subscribe {
            incarnation: self.nodes[r].store.incarnation,
            holds,
        };
        let mut s = Shipper::new(self.cfg, self.now);
        let out = s.received(msg, &self.nodes[z].store, self.now);
        let deposed = out
            .into_iter()
            .any(|a| matches!(a, ShipAction::Deposed { .. }));
        let same = self.nodes[r].store.incarnation == self.nodes[z].store.incarnation;
        assert_eq!(
            deposed,
            same && holds.term > self.nodes[z].store.term,
            "a subscription of a newer term deposes, and only that"
        );
        if deposed {
            self.trace(format_args!(
                "zombie {z} deposed at {:?}",
                self.nodes[z].store.holds
            ));
            self.stats.deposed += 1;
            self.step_down(z);
        }
    }

    fn trace(&self, what: std::fmt::Arguments<'_>) {
        if std::env::var_os("CKPT_SIM_TRACE").is_some() {
            eprintln!("{:>8.3} ms: {what}", self.now as f64 / MS as f64);
        }
    }

    fn step(&mut self) {
        self.now += MS / 4;
        for n in &mut self.nodes {
            if n.dead && n.down_until <= self.now {
                n.dead = false;
            }
        }
        if self.faults {
            self.faults();
        }
        // Writes stop with the faults: then the replicas must catch up.
        if self.faults && self.rng.chance(600) {
            for _ in 0..=self.rng.below(3) {
                self.write();
            }
        }
        for r in 0..NODES {
            self.connect(r);
        }
        // Deliver what is due, in time order.
        self.net.sort_by_key(|p| p.at);
        let due = self.net.iter().take_while(|p| p.at <= self.now).count();
        let packets: Vec<Packet> = self.net.drain(..due).collect();
        for pkt in packets {
            self.deliver(pkt);
        }
        // Time passes for every end.
        let now = self.now;
        let p = self.primary();
        if self.alive(p) {
            for r in 0..NODES {
                if r == p || !self.links[r].up {
                    continue;
                }
                let store = self.nodes[p].store.clone();
                let Some(s) = self.shipper_opt(p, r) else {
                    continue;
                };
                let out = s.poll(&store, now);
                self.ship_actions(p, r, out);
            }
        }
        for r in 0..NODES {
            if !self.alive(r) {
                continue;
            }
            let want = self.rng.chance(20);
            if let Role::Replica { follower, .. } = &mut self.nodes[r].role {
                let out = if want && follower.is_parked() {
                    // A process on the node opens the checkpoint.
                    follower.want(now)
                } else {
                    follower.tick(now)
                };
                self.follow_actions(r, out, &Payload::None);
            }
        }
    }

    fn shipper_opt(&mut self, p: usize, r: usize) -> Option<&mut Shipper> {
        match &mut self.nodes[p].role {
            Role::Primary { shippers } => shippers[r].as_mut().filter(|s| !s.is_closed()),
            Role::Replica { .. } => None,
        }
    }

    fn deliver(&mut self, pkt: Packet) {
        if !self.alive(pkt.to) {
            return;
        }
        let now = self.now;
        match self.nodes[pkt.to].role {
            Role::Primary { .. } => {
                let r = pkt.from;
                if !self.links[r].up || self.links[r].gen != pkt.gen {
                    return;
                }
                let store = self.nodes[pkt.to].store.clone();
                let Some(s) = self.shipper_opt(pkt.to, r) else {
                    return;
                };
                let out = s.received(pkt.msg, &store, now);
                self.ship_actions(pkt.to, r, out);
            }
            Role::Replica { primary, .. } => {
                let r = pkt.to;
                if primary != pkt.from || !self.links[r].up || self.links[r].gen != pkt.gen {
                    return;
                }
                let Role::Replica { follower, .. } = &mut self.nodes[r].role else {
                    unreachable!()
                };
                let out = follower.received(pkt.msg, now);
                self.follow_actions(r, out, &pkt.payload);
            }
        }
    }

    /// Runs with faults, then without until every replica holds the
    /// primary's state.
    fn run(&mut self, steps: u64) {
        for _ in 0..steps {
            self.step();
        }
        self.faults = false;
        // Membership tells a zombie it is deposed at the latest now.
        if let Some(z) = self.zombie {
            self.step_down(z);
        }
        for n in &mut self.nodes {
            n.dead = false;
            n.down_until = 0;
        }
        for l in &mut self.links {
            l.cut_until = 0;
        }
        for _ in 0..40_000 {
            self.step();
            if self.converged() {
                return;
            }
        }
        let p = self.primary();
        let report: Vec<String> = (0..NODES)
            .map(|i| {
                let end = match &self.nodes[i].role {
                    Role::Primary { shippers } => format!("{shippers:?}"),
                    Role::Replica { follower, primary } => {
                        format!("follows {primary}: {follower:?}")
                    }
                };
                format!(
                    "node {i}: holds {:?} term {} incarnation {} up {}\n  {end}",
                    self.nodes[i].store.holds,
                    self.nodes[i].store.term,
                    self.nodes[i].store.incarnation,
                    self.links[i].up
                )
            })
            .collect();
        panic!(
            "no convergence on primary {p} after the faults stopped:\n{}\n{:?}",
            report.join("\n"),
            self.stats
        );
    }

    fn converged(&self) -> bool {
        let p = self.primary();
        let want = &self.nodes[p].store;
        (0..NODES).filter(|&i| i != p).all(|i| {
            let s = &self.nodes[i].store;
            s.incarnation == want.incarnation && s.holds == want.holds && s.state == want.state
        })
    }
}

fn run_seed(seed: u64) -> Stats {
    let mut sim = Sim::new(seed);
    sim.run(4_000);
    sim.stats
}

#[test]
fn replicas_converge_under_faults() {
    let seeds: Vec<u64> = match std::env::var("CKPT_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("CKPT_SIM_SEED is a number")],
        Err(_) => {
            let n = std::env::var("CKPT_SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(300u64);
            (1..=n).collect()
        }
    };
    let mut total = Stats::default();
    for seed in seeds {
        let result = std::panic::catch_unwind(|| run_seed(seed));
        match result {
            Ok(s) => {
                total.frames_written += s.frames_written;
                total.frames_applied += s.frames_applied;
                total.snapshots += s.snapshots;
                total.resubscribes += s.resubscribes;
                total.closes += s.closes;
                total.failovers += s.failovers;
                total.deposed += s.deposed;
            }
            Err(e) => {
                eprintln!(
                    "replication simulation failed with seed {seed}; replay: CKPT_SIM_SEED={seed}"
                );
                std::panic::resume_unwind(e);
            }
        }
    }
    eprintln!("replication simulation: {total:?}");
    // The faults did happen: the run exercised the paths it claims to.
    assert!(total.snapshots > 0 && total.failovers > 0 && total.resubscribes > 0);
    assert!(total.deposed > 0 || total.failovers < 10);
}
