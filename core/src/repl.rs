//! Replication without I/O: the two ends of one checkpoint's replication
//! link, as state machines.
//!
//! A [`Shipper`] runs on the host of the checkpoint's active replica (the
//! primary), one per replica; a [`Follower`] runs on a replica's host, one per
//! checkpoint it replicates. Each takes events (a message from the other end,
//! the log's progress, the outcome of an action, the clock, a lost link) and
//! returns [`Actions`] for its driver to carry out: send a message, read
//! frames out of the log ring and send them, stream a snapshot, apply frames
//! to the replica segment, release synchronous writers. The machines own no
//! buffer, read no clock and do no I/O, so the node daemon and the seeded
//! simulator (`core/tests/replication_sim.rs`) run the same code.
//!
//! The protocol, per checkpoint and replica:
//!
//! 1. The follower subscribes with what its replica holds: the checkpoint's
//!    incarnation and the sequence number and term of its last frame
//!    ([`Message::Subscribe`]; nothing: incarnation 0).
//! 2. The shipper matches that position against its log: the frame with that
//!    number must be in its history with the same term (log matching, as in
//!    Raft). Then it streams the frames after it ([`Message::Frames`], at most
//!    a window of them unacknowledged). If its ring no longer holds them, or
//!    the replica holds another incarnation or a history that is not the
//!    primary's (a deposed primary's frames that were never replicated), it
//!    sends a snapshot that replaces the replica ([`Message::Snapshot`]),
//!    then the frames after the snapshot's start (the catch-up rule of
//!    [`crate::catchup`] skips those the fuzzy copy already holds).
//! 3. The follower has its driver apply frames in sequence order and
//!    acknowledges what the replica holds ([`Message::Ack`]). Frames past a
//!    gap are dropped and it subscribes again from what it holds (once per
//!    resubscribe interval); frames it holds already are dropped.
//! 4. Acknowledgements release synchronous writers ([`ShipAction::Acked`]).
//! 5. A replica that has seen a newer term than the shipper's log tells the
//!    shipper it is deposed ([`ShipAction::Deposed`]): it must stop acting as
//!    the active replica. A replica refuses frames of an older term (its
//!    driver's apply does), and the follower then closes the link.
//! 6. Either end sends a heartbeat after an idle interval (the follower's is
//!    an acknowledgement again) and closes a link silent for too long; after
//!    a lost link the follower subscribes again. Frames unacknowledged for
//!    too long are sent again.

use core::fmt;

/// Bytes of an authentication challenge or answer.
pub const AUTH_BYTES: usize = 32;

/// Where a replica's history ends: the sequence number and term of the last
/// frame it holds (0, 0: nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// The frame's checkpoint-wide sequence number.
    pub seq: u64,
    /// The frame's term.
    pub term: u32,
}

/// A message between the two ends of a link (one checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// Follower → shipper: the replica holds `incarnation` through `holds`
    /// (incarnation 0: nothing); send what follows.
    Subscribe { incarnation: u64, holds: Position },
    /// Shipper → follower: frames `first..=last`, sealed, follow back to
    /// back; the frame before `first` has term `prev_term` (0 before frame
    /// 1), so that a replica whose history differs there does not apply them.
    /// When they were sent, the primary had logged `behind` more frames past
    /// `last` (at least that many at `u32::MAX`): the replica's lag counts
    /// what the primary logged, not only what reached it.
    Frames {
        first: u64,
        last: u64,
        prev_term: u32,
        behind: u32,
    },
    /// Shipper → follower: a snapshot of `incarnation` begins (on the wire
    /// with the checkpoint's creation frame). It replaces the replica.
    Snapshot { incarnation: u64 },
    /// Shipper → follower: `records` section records of the snapshot.
    SnapshotPart { records: u32 },
    /// Shipper → follower: the snapshot is complete; it held `sections`
    /// sections, every frame through `start` and possibly some later ones,
    /// which the catch-up rule skips (on the wire with the checkpoint-wide
    /// state it copied, [`crate::frame::SnapshotTail`]).
    SnapshotEnd { start: Position, sections: u64 },
    /// Follower → shipper: the replica holds every frame through `holds`
    /// (whose term says which history it is: an acknowledgement from before
    /// a replica was rebuilt does not count), and `openers` processes of
    /// its host have it open (they keep the checkpoint from its retention
    /// running out on the primary's host).
    Ack { holds: Position, openers: u32 },
    /// Either way: the link is alive.
    Heartbeat,
    /// Either way, first on a connection whose ends share a cluster key:
    /// this end's challenge (fresh random bytes).
    Hello { nonce: [u8; AUTH_BYTES] },
    /// Either way, after the hellos: this end's answer to the other's
    /// challenge, a MAC under the cluster key (the key never travels).
    Proof { mac: [u8; AUTH_BYTES] },
    /// Shipper → follower, first on a link: node `node` is the primary of
    /// the checkpoint named on the wire, of `incarnation`, in `term`. If
    /// `placed`, the primary places a replica on the follower's node (a
    /// non-collocated checkpoint its placement puts there): the follower
    /// subscribes at once. If not (a collocated checkpoint, or one placed
    /// elsewhere), the follower subscribes once its node wants a replica (a
    /// process there opens the checkpoint) or already holds one, and parks
    /// the link until then ([`Follower::park`]). Handled by the link's
    /// driver, not the state machines: a later offer breaks the protocol.
    /// `written`: the primary holds more than its creation frame (what
    /// decides, with the term, between two incarnations of one name created
    /// on two nodes at once: see `Segment::yield_to`).
    Offer {
        incarnation: u64,
        term: u32,
        node: u32,
        placed: bool,
        written: bool,
    },
    /// Follower → shipper: a process on the follower's node unlinks the
    /// checkpoint (`saCkptCheckpointUnlink` where no copy of it, or only a
    /// replica, is): the primary unlinks `incarnation` as if called there,
    /// and answers. Handled by the link's driver, not the state machines.
    UnlinkRequest { incarnation: u64 },
    /// Shipper → follower: the answer to an [`Message::UnlinkRequest`]:
    /// the SA error code of the primary's unlink (1, `SA_AIS_OK`: done).
    /// Handled by the link's driver.
    UnlinkAnswer { code: u32 },
    /// Follower → shipper: a process on the follower's node changed its
    /// replica of `incarnation` (a write, overwrite, section creation,
    /// deletion or expiration change): the primary makes the change as if
    /// called there and answers `ask` (the request rides in the message's
    /// body, [`crate::frame::ForwardRequest`]). Handled by the link's
    /// driver, not the state machines.
    Forward { incarnation: u64, ask: u64 },
    /// Shipper → follower: the answer to [`Message::Forward`] `ask`: 0 if
    /// the change was made (through frame `seq`, which the replica then
    /// waits for), else the failed operation's error number plus one, and
    /// the erroneous vector element (a generated section id rides in the
    /// body). Handled by the link's driver.
    ForwardAnswer {
        ask: u64,
        seq: u64,
        result: u32,
        index: u32,
    },
    /// Either way: this end closes the link for `reason`, and says so
    /// before it drops the connection (not when the peer went silent: it
    /// would not read it), so that the peer's operator sees why. The
    /// receiving end's machine closes too, without answering.
    Closing { reason: CloseReason },
}

/// Why an end closes a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Nothing heard for longer than the silence limit.
    Silent,
    /// The other end broke the protocol (an acknowledgement of frames the log
    /// never had, a message that has no place in the current state).
    Protocol,
    /// The shipper sent frames of an older term than the replica's.
    OlderTerm,
    /// Snapshots kept being overtaken by the writer (the ring is too small
    /// for the link).
    SnapshotsOvertaken,
}

impl CloseReason {
    /// Its number on the wire ([`Message::Closing`]).
    pub fn code(self) -> u32 {
        match self {
            CloseReason::Silent => 1,
            CloseReason::Protocol => 2,
            CloseReason::OlderTerm => 3,
            CloseReason::SnapshotsOvertaken => 4,
        }
    }

    /// The reason numbered `code` on the wire.
    pub fn from_code(code: u32) -> Option<CloseReason> {
        Some(match code {
            1 => CloseReason::Silent,
            2 => CloseReason::Protocol,
            3 => CloseReason::OlderTerm,
            4 => CloseReason::SnapshotsOvertaken,
            _ => return None,
        })
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::Silent => "nothing heard from the peer for too long",
            CloseReason::Protocol => "the peer broke the replication protocol",
            CloseReason::OlderTerm => "the peer ships frames of an older term",
            CloseReason::SnapshotsOvertaken => {
                "snapshots keep being overtaken by the writer: the log ring is too small for this link"
            }
        })
    }
}

/// What a shipper needs to know of the primary's log.
pub trait LogView {
    /// The checkpoint's incarnation.
    fn incarnation(&self) -> u64;
    /// The term of the newest frame.
    fn term(&self) -> u32;
    /// The sequence number of the newest published frame.
    fn tail(&self) -> u64;
    /// The sequence number of the oldest frame the ring still holds
    /// (`tail() + 1` if none).
    fn oldest(&self) -> u64;
    /// The term of frame `seq`, if the ring still holds it.
    fn term_at(&self, seq: u64) -> Option<u32>;
    /// True if frame `seq` is one of a call's frames with more after it
    /// ([`crate::frame::FLAG_MORE`]: a vector write's group): a batch that
    /// ended there would split the call (false if the ring lost it).
    fn continues(&self, seq: u64) -> bool;
}

/// At most three actions, in order (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actions<A: Copy> {
    items: [Option<A>; 3],
}

impl<A: Copy> Actions<A> {
    const fn none() -> Self {
        Actions { items: [None; 3] }
    }

    fn one(a: A) -> Self {
        let mut s = Self::none();
        s.push(a);
        s
    }

    fn push(&mut self, a: A) {
        let free = self.items.iter_mut().find(|i| i.is_none());
        *free.expect("at most three actions per event") = Some(a);
    }

    fn extend(&mut self, other: Actions<A>) {
        for a in other {
            self.push(a);
        }
    }

    /// True if there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.items[0].is_none()
    }
}

impl<A: Copy> IntoIterator for Actions<A> {
    type Item = A;
    type IntoIter = core::iter::Flatten<core::array::IntoIter<Option<A>, 3>>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter().flatten()
    }
}

/// Timing and flow limits of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    /// Frames shipped and not yet acknowledged, at most.
    pub window: u64,
    /// Frames per [`ShipAction::Ship`], at most.
    pub batch: u64,
    /// A heartbeat goes out after this long without sending anything.
    pub heartbeat_ns: u64,
    /// A link silent this long is closed.
    pub silence_ns: u64,
    /// A follower whose subscription went unanswered subscribes again after
    /// this long.
    pub resubscribe_ns: u64,
    /// Snapshots in a row overtaken by the writer before the link is closed.
    pub snapshot_tries: u32,
    /// Frames in flight with no acknowledgement progress for this long are
    /// sent again (from the acknowledged one on). Over a stream transport
    /// nothing is lost inside a link, so this only fires for a replica that
    /// stopped applying; over a lossy one it is the retransmission timer.
    pub retransmit_ns: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            window: 4096,
            batch: 256,
            heartbeat_ns: 100_000_000,
            silence_ns: 1_000_000_000,
            resubscribe_ns: 50_000_000,
            snapshot_tries: 3,
            retransmit_ns: 500_000_000,
        }
    }
}

/// What a shipper asks its driver to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShipAction {
    /// Send this message.
    Send(Message),
    /// Read frames `first..=last` from the ring, seal them and send them
    /// after `Message::Frames { first, last, prev_term }`. If the ring no
    /// longer holds `first`, call [`Shipper::lapped`] instead.
    Ship {
        first: u64,
        last: u64,
        prev_term: u32,
    },
    /// Take a fuzzy snapshot and send it (`Message::Snapshot`, its
    /// sections in `Message::SnapshotPart`s, `Message::SnapshotEnd`), then
    /// call [`Shipper::snapshot_sent`] with its start.
    Snapshot,
    /// The replica holds every frame through `seq`: record it (synchronous
    /// writers wait for it).
    Acked { seq: u64 },
    /// A replica has seen `term`, newer than this log's: this host is not the
    /// active replica any more. The link stays up.
    Deposed { term: u32 },
    /// Close the link.
    Close(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShipState {
    /// Waiting for a subscription.
    Waiting,
    /// Streaming frames after `shipped`.
    Streaming,
    /// A snapshot is being sent.
    Snapshotting,
    /// Closed: every event is ignored.
    Closed,
}

/// The primary's end of one replica's link.
#[derive(Debug, Clone)]
pub struct Shipper {
    cfg: LinkConfig,
    state: ShipState,
    /// The newest frame sent (or held by the replica at its subscription).
    shipped: u64,
    /// The newest frame the replica holds, as far as this stream knows.
    acked: u64,
    /// The newest frame reported as [`ShipAction::Acked`]: never goes back.
    released: u64,
    /// The start of the last snapshot sent: the window counts from it until
    /// the replica acknowledges more.
    floor: Position,
    /// The catch-up horizon of the last snapshot sent (0: none): the
    /// replica puts its copy in place only once it holds that frame, so its
    /// acknowledgements below it make room in the window but release no
    /// synchronous writer (the copy they count is dropped if the link ends
    /// first).
    settles: u64,
    /// Snapshots in a row overtaken by the writer.
    overtaken: u32,
    /// When the acknowledgements last moved (or shipping last started with
    /// nothing in flight).
    progress_ns: u64,
    heard_ns: u64,
    sent_ns: u64,
}

impl Shipper {
    /// A new link, opened at `now_ns`: it waits for a subscription.
    pub fn new(cfg: LinkConfig, now_ns: u64) -> Shipper {
        Shipper {
            cfg,
            state: ShipState::Waiting,
            shipped: 0,
            acked: 0,
            released: 0,
            floor: Position::default(),
            settles: 0,
            overtaken: 0,
            progress_ns: now_ns,
            heard_ns: now_ns,
            sent_ns: now_ns,
        }
    }

    /// The newest frame reported as acknowledged (the replica may have lost
    /// frames since, if its host restarted: then it is behind this).
    pub fn released(&self) -> u64 {
        self.released
    }

    /// Frames sent and not yet acknowledged (the replica's lag as seen here).
    pub fn in_flight(&self) -> u64 {
        self.shipped.saturating_sub(self.acked)
    }

    /// True once the link is closed.
    pub fn is_closed(&self) -> bool {
        self.state == ShipState::Closed
    }

    /// A message from the follower.
    pub fn received(
        &mut self,
        msg: Message,
        log: &impl LogView,
        now_ns: u64,
    ) -> Actions<ShipAction> {
        if self.state == ShipState::Closed {
            return Actions::none();
        }
        self.heard_ns = now_ns;
        match msg {
            Message::Subscribe { incarnation, holds } => {
                self.subscribed(incarnation, holds, log, now_ns)
            }
            Message::Ack { holds, .. } => {
                let seq = holds.seq;
                if holds.term > log.term() {
                    // The replica follows a newer active replica.
                    self.state = ShipState::Waiting;
                    return Actions::one(ShipAction::Deposed { term: holds.term });
                }
                if seq > log.tail() && holds.term == log.term() {
                    return self.close(CloseReason::Protocol);
                }
                // It counts if the frame is in our history: the same term
                // where the ring still holds it, else one this stream shipped
                // (not before the snapshot it was sent, until the replica
                // says it holds the snapshot). Beyond what this stream
                // shipped is possible: frames of an earlier stream on the
                // link, after a resubscription.
                let ours = match log.term_at(seq) {
                    Some(term) => term == holds.term,
                    None => {
                        let after_snapshot = self.acked >= self.floor.seq || seq >= self.floor.seq;
                        seq <= self.shipped && seq <= log.tail() && after_snapshot
                    }
                };
                if self.state != ShipState::Streaming || !ours || seq <= self.acked {
                    return Actions::none();
                }
                self.shipped = self.shipped.max(seq);
                self.acked = seq;
                self.progress_ns = now_ns;
                let mut out = self.release();
                out.extend(self.poll(log, now_ns));
                out
            }
            // The driver's: it unlinks the primary, or makes the change,
            // and answers.
            Message::Heartbeat | Message::UnlinkRequest { .. } | Message::Forward { .. } => {
                Actions::none()
            }
            Message::Closing { .. } => {
                self.state = ShipState::Closed;
                Actions::none()
            }
            Message::Frames { .. }
            | Message::Snapshot { .. }
            | Message::SnapshotPart { .. }
            | Message::SnapshotEnd { .. }
            | Message::Hello { .. }
            | Message::Proof { .. }
            | Message::Offer { .. }
            | Message::UnlinkAnswer { .. }
            | Message::ForwardAnswer { .. } => self.close(CloseReason::Protocol),
        }
    }

    fn subscribed(
        &mut self,
        incarnation: u64,
        holds: Position,
        log: &impl LogView,
        now_ns: u64,
    ) -> Actions<ShipAction> {
        let mut out = Actions::none();
        // (A replica of an older incarnation may have seen higher terms: a
        // re-created checkpoint starts again at term 1.)
        if incarnation == log.incarnation() && holds.term > log.term() {
            // The replica has followed a newer active replica.
            out.push(ShipAction::Deposed { term: holds.term });
            self.state = ShipState::Waiting;
            return out;
        }
        let same = incarnation == log.incarnation() && holds.seq > 0;
        // The replica's history is a prefix of ours if its last frame is
        // ours (same number, same term).
        let matches = same && holds.seq <= log.tail() && log.term_at(holds.seq) == Some(holds.term);
        // A replica that holds nothing starts from frame 1 if the ring
        // still has it; one that holds another incarnation must be rebuilt
        // (its frames may even carry the same numbers and terms).
        // (A replica that holds an incarnation but no position asks to be
        // rebuilt: its frames contradicted the primary's.)
        let fresh_from_start = incarnation == 0 && log.oldest() <= 1;
        if matches || fresh_from_start {
            let from = if matches { holds.seq } else { 0 };
            self.state = ShipState::Streaming;
            self.shipped = from;
            self.acked = from;
            self.floor = Position::default();
            self.progress_ns = now_ns;
            out.extend(self.release());
            out.extend(self.poll(log, now_ns));
            return out;
        }
        // Another incarnation, a history that is not ours, or frames the
        // ring no longer holds: a snapshot replaces the replica.
        self.start_snapshot(now_ns)
    }

    /// `Acked` for what the replica holds beyond what was reported.
    fn release(&mut self) -> Actions<ShipAction> {
        if self.acked <= self.released || self.acked < self.settles {
            return Actions::none();
        }
        self.released = self.acked;
        Actions::one(ShipAction::Acked { seq: self.acked })
    }

    fn start_snapshot(&mut self, now_ns: u64) -> Actions<ShipAction> {
        self.state = ShipState::Snapshotting;
        self.sent_ns = now_ns;
        Actions::one(ShipAction::Snapshot)
    }

    /// The snapshot went out; it holds every frame through `start`, and no
    /// frame after `settles` (its catch-up horizon, at least `start.seq`).
    /// The frames after `start` follow.
    pub fn snapshot_sent(
        &mut self,
        start: Position,
        settles: u64,
        log: &impl LogView,
        now_ns: u64,
    ) -> Actions<ShipAction> {
        if self.state != ShipState::Snapshotting {
            return Actions::none();
        }
        self.state = ShipState::Streaming;
        self.shipped = start.seq;
        self.floor = start;
        self.settles = settles.max(start.seq);
        // The follower was busy receiving it, and its messages wait behind
        // it: the time the snapshot took to go out does not count as
        // silence (its silence before does: a follower that stopped
        // answering is closed as silent, not sent snapshot after snapshot).
        let began = self.sent_ns;
        self.sent_ns = now_ns;
        let took = now_ns.saturating_sub(began);
        self.heard_ns = self.heard_ns.saturating_add(took).min(now_ns);
        // The retransmission clock starts now: a snapshot that took longer
        // than `retransmit_ns` to send is not sent again at once.
        self.progress_ns = now_ns;
        self.poll(log, now_ns)
    }

    /// The driver sent only frames through `seq` of the last
    /// [`ShipAction::Ship`] (it cut the batch at its byte limit): the rest
    /// goes in the next one.
    pub fn shipped_through(&mut self, seq: u64) {
        if self.state == ShipState::Streaming && seq < self.shipped {
            self.shipped = seq.max(self.acked);
        }
    }

    /// The ring no longer held the frames of a [`ShipAction::Ship`] (the
    /// writer overtook the link): a snapshot follows, up to
    /// [`LinkConfig::snapshot_tries`] in a row.
    pub fn lapped(&mut self, now_ns: u64) -> Actions<ShipAction> {
        if self.state == ShipState::Closed {
            return Actions::none();
        }
        self.overtaken += 1;
        if self.overtaken > self.cfg.snapshot_tries {
            return self.close(CloseReason::SnapshotsOvertaken);
        }
        self.start_snapshot(now_ns)
    }

    /// The log moved, or time passed: ship what the window allows, send a
    /// heartbeat when idle, close a silent link.
    pub fn poll(&mut self, log: &impl LogView, now_ns: u64) -> Actions<ShipAction> {
        let mut out = Actions::none();
        if self.state == ShipState::Closed {
            return out;
        }
        if now_ns.saturating_sub(self.heard_ns) > self.cfg.silence_ns {
            return self.close(CloseReason::Silent);
        }
        if self.state == ShipState::Streaming {
            if self.shipped > self.acked
                && now_ns.saturating_sub(self.progress_ns) > self.cfg.retransmit_ns
            {
                // No acknowledgement progress: send again what is
                // unacknowledged, the snapshot first if it is.
                self.progress_ns = now_ns;
                if self.acked < self.floor.seq {
                    return self.start_snapshot(now_ns);
                }
                self.shipped = self.acked;
            }
            let base = self.acked.max(self.floor.seq);
            let room = (base + self.cfg.window).saturating_sub(self.shipped);
            let mut last = log.tail().min(self.shipped + room.min(self.cfg.batch));
            if last < log.tail() && log.continues(last) {
                // A batch ends with a whole call: the replica applies a
                // batch under one claim, so its standbys see the call whole
                // (`Segment::apply_held`). The rest comes in the next batch,
                // the call with it; a call longer than a batch is split.
                // (A call whose last frame is not published yet, at the
                // tail, is shipped as it is: its writer may have died.)
                let mut end = last;
                while end > self.shipped && log.continues(end) {
                    end -= 1;
                }
                if end > self.shipped {
                    last = end;
                } else if room < self.cfg.batch && self.shipped > base {
                    // The window's room, not the batch, cut it: wait for
                    // the acknowledgements of what is in flight, which make
                    // room for the call.
                    last = self.shipped;
                }
            }
            if last > self.shipped && self.shipped + 1 < log.oldest() {
                // The frames after what was shipped are gone from the ring
                // (looked at only with room to ship them: a follower that
                // acknowledges nothing is closed as silent, not lapped).
                return self.lapped(now_ns);
            }
            if last > self.shipped {
                // The term of the frame before: the replica checks it.
                let prev_term = if self.shipped == 0 {
                    0
                } else if self.shipped == self.floor.seq {
                    self.floor.term
                } else {
                    match log.term_at(self.shipped) {
                        Some(t) => t,
                        None => return self.lapped(now_ns),
                    }
                };
                if self.shipped <= base {
                    self.progress_ns = now_ns;
                }
                out.push(ShipAction::Ship {
                    first: self.shipped + 1,
                    last,
                    prev_term,
                });
                if self.acked >= self.shipped {
                    // A snapshot, and the frames since, got through.
                    self.overtaken = 0;
                }
                self.shipped = last;
                self.sent_ns = now_ns;
                return out;
            }
        }
        if now_ns.saturating_sub(self.sent_ns) > self.cfg.heartbeat_ns {
            self.sent_ns = now_ns;
            out.push(ShipAction::Send(Message::Heartbeat));
        }
        out
    }

    /// The link was lost: wait for the follower to subscribe again (on a new
    /// link). Acknowledgements are kept.
    pub fn lost(&mut self, now_ns: u64) {
        if self.state != ShipState::Closed {
            self.state = ShipState::Waiting;
            self.heard_ns = now_ns;
            self.sent_ns = now_ns;
        }
    }

    fn close(&mut self, reason: CloseReason) -> Actions<ShipAction> {
        self.state = ShipState::Closed;
        Actions::one(ShipAction::Close(reason))
    }
}

/// What a follower asks its driver to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowAction {
    /// Send this message.
    Send(Message),
    /// Apply frames `first..=last` of the batch just received (skipping the
    /// ones before `first`), in order, then call [`Follower::applied`] with
    /// what the replica holds (or [`Follower::refused`]). If the batch
    /// holds frame `after.seq` (it began before `first`), its term must be
    /// `after.term`, or nothing is applied: refuse with [`Refusal::Gap`].
    Apply {
        first: u64,
        last: u64,
        after: Position,
    },
    /// A snapshot of `incarnation` begins: start a new copy of the
    /// checkpoint (from the creation frame that came with it), dropping any
    /// copy begun; the replica stays as it is until the copy is complete.
    InstallBegin { incarnation: u64 },
    /// Add the section records just received to the copy.
    InstallPart,
    /// The snapshot is complete: if the copy holds `sections` sections,
    /// replace the replica with it (it holds every frame through `start`),
    /// then call [`Follower::installed`]; otherwise drop it and call
    /// [`Follower::install_failed`].
    InstallEnd { start: Position, sections: u64 },
    /// Drop the copy begun: the replica stays as it is.
    InstallDrop,
    /// Close the link.
    Close(CloseReason),
}

/// Why the driver could not apply a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The frame's term is older than the replica's.
    OlderTerm,
    /// The frames do not follow the replica's last one (a gap, or another
    /// frame before them).
    Gap,
    /// The frame contradicts the replica (another incarnation, a section
    /// that should exist does not): the replica must be rebuilt.
    Diverged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FollowState {
    /// No link.
    Down,
    /// Linked, not subscribed: this node wants no replica yet
    /// ([`Follower::park`]); heartbeats keep the link.
    Parked,
    /// Subscribed at `asked_ns`; waiting for frames or a snapshot.
    Subscribed,
    /// Receiving frames.
    Following,
    /// A snapshot is being installed (its last part came at `asked_ns`).
    Installing,
    /// Closed: every event but [`Follower::connected`] is ignored.
    Closed,
}

/// A replica's end of its link to the primary, for one checkpoint.
#[derive(Debug, Clone)]
pub struct Follower {
    cfg: LinkConfig,
    state: FollowState,
    incarnation: u64,
    holds: Position,
    /// The incarnation of the snapshot being installed.
    installing: u64,
    asked_ns: u64,
    heard_ns: u64,
    sent_ns: u64,
    /// Processes of this host that have the replica open, as last told.
    openers: u32,
}

impl Follower {
    /// A follower for a replica that holds `incarnation` through `holds`
    /// (0 and the default position: nothing).
    pub fn new(cfg: LinkConfig, incarnation: u64, holds: Position) -> Follower {
        Follower {
            cfg,
            state: FollowState::Down,
            incarnation,
            holds,
            installing: 0,
            asked_ns: 0,
            heard_ns: 0,
            sent_ns: 0,
            openers: 0,
        }
    }

    /// `openers` processes of this host have the replica open now: told to
    /// the shipper at once if that changed (then with every
    /// acknowledgement).
    pub fn openers(&mut self, openers: u32, now_ns: u64) -> Actions<FollowAction> {
        if openers == self.openers {
            return Actions::none();
        }
        self.openers = openers;
        if self.state != FollowState::Following {
            return Actions::none();
        }
        self.ack(now_ns)
    }

    /// What the replica holds, as this end knows it.
    pub fn holds(&self) -> Position {
        self.holds
    }

    /// The incarnation the replica holds (0: none).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// True while the link is up and following.
    pub fn is_following(&self) -> bool {
        self.state == FollowState::Following
    }

    /// True while the link is parked ([`Follower::park`]).
    pub fn is_parked(&self) -> bool {
        self.state == FollowState::Parked
    }

    /// A link to the primary is up, but this node wants no replica yet (the
    /// primary does not place one here, and nobody here has opened the
    /// checkpoint): nothing is subscribed; heartbeats keep the link until
    /// [`Follower::want`]. The first goes at once: a heartbeat before any
    /// subscription tells the shipper the link is parked (it holds no
    /// replica, so an unlink ends it at once).
    pub fn park(&mut self, now_ns: u64) -> Actions<FollowAction> {
        self.heard_ns = now_ns;
        self.sent_ns = now_ns;
        self.state = FollowState::Parked;
        Actions::one(FollowAction::Send(Message::Heartbeat))
    }

    /// This node wants a replica now: a parked link subscribes (any other
    /// state: nothing to do).
    pub fn want(&mut self, now_ns: u64) -> Actions<FollowAction> {
        if self.state != FollowState::Parked {
            return Actions::none();
        }
        self.subscribe(now_ns)
    }

    /// A link to the primary is up: subscribe.
    pub fn connected(&mut self, now_ns: u64) -> Actions<FollowAction> {
        self.heard_ns = now_ns;
        self.subscribe(now_ns)
    }

    fn subscribe(&mut self, now_ns: u64) -> Actions<FollowAction> {
        self.state = FollowState::Subscribed;
        self.asked_ns = now_ns;
        self.sent_ns = now_ns;
        Actions::one(FollowAction::Send(Message::Subscribe {
            incarnation: self.incarnation,
            holds: self.holds,
        }))
    }

    /// A message from the shipper.
    pub fn received(&mut self, msg: Message, now_ns: u64) -> Actions<FollowAction> {
        if matches!(self.state, FollowState::Down | FollowState::Closed) {
            return Actions::none();
        }
        self.heard_ns = now_ns;
        if self.state == FollowState::Parked
            && !matches!(
                msg,
                Message::Heartbeat | Message::UnlinkAnswer { .. } | Message::Closing { .. }
            )
        {
            // Nothing was asked for: a shipper sends only heartbeats (and
            // answers to an unlink request) before a subscription.
            return self.close(CloseReason::Protocol);
        }
        match msg {
            Message::Frames {
                first,
                last,
                prev_term,
                ..
            } => {
                if self.state == FollowState::Installing || first > last {
                    return Actions::none();
                }
                let next = self.holds.seq + 1;
                if last < next {
                    // Held already: say so again (an acknowledgement lost).
                    return self.ack(now_ns);
                }
                if first > next || first == next && prev_term != self.holds.term {
                    // A gap (frames were lost), or a history that differs
                    // just before them: ask again from what we hold (the
                    // shipper matches it against its log), unless a
                    // subscription is still unanswered.
                    if self.state == FollowState::Subscribed
                        && now_ns.saturating_sub(self.asked_ns) < self.cfg.resubscribe_ns
                    {
                        return Actions::none();
                    }
                    return self.subscribe(now_ns);
                }
                self.state = FollowState::Following;
                Actions::one(FollowAction::Apply {
                    first: next,
                    last,
                    after: self.holds,
                })
            }
            Message::Snapshot { incarnation } => {
                // A new snapshot (or the shipper's next try) replaces any
                // begun: the driver starts a fresh copy.
                self.state = FollowState::Installing;
                self.installing = incarnation;
                self.asked_ns = now_ns;
                Actions::one(FollowAction::InstallBegin { incarnation })
            }
            Message::SnapshotPart { .. } if self.state == FollowState::Installing => {
                self.asked_ns = now_ns;
                Actions::one(FollowAction::InstallPart)
            }
            // A part of a snapshot this end is not installing (it gave it up).
            Message::SnapshotPart { .. } => Actions::none(),
            Message::SnapshotEnd { start, sections } if self.state == FollowState::Installing => {
                let same = self.installing == self.incarnation;
                if same && start.term < self.holds.term {
                    // A deposed primary's copy.
                    let mut out = Actions::one(FollowAction::InstallDrop);
                    out.extend(self.close(CloseReason::OlderTerm));
                    return out;
                }
                if same && start.term == self.holds.term && start.seq < self.holds.seq {
                    // A copy older than what the replica holds of the same
                    // history (a stale or repeated one): it would take
                    // acknowledged frames away.
                    self.state = FollowState::Following;
                    let mut out = Actions::one(FollowAction::InstallDrop);
                    out.extend(self.ack(now_ns));
                    return out;
                }
                Actions::one(FollowAction::InstallEnd { start, sections })
            }
            Message::SnapshotEnd { .. } => Actions::none(),
            // The driver's: it hands the answer to who asked.
            Message::Heartbeat | Message::UnlinkAnswer { .. } | Message::ForwardAnswer { .. } => {
                Actions::none()
            }
            Message::Closing { .. } => {
                self.state = FollowState::Closed;
                Actions::none()
            }
            Message::Subscribe { .. }
            | Message::Ack { .. }
            | Message::Hello { .. }
            | Message::Proof { .. }
            | Message::Offer { .. }
            | Message::UnlinkRequest { .. }
            | Message::Forward { .. } => self.close(CloseReason::Protocol),
        }
    }

    /// The driver applied frames: the replica holds through `holds`.
    pub fn applied(&mut self, holds: Position, now_ns: u64) -> Actions<FollowAction> {
        if holds.seq > self.holds.seq {
            self.holds = holds;
        }
        if matches!(
            self.state,
            FollowState::Down | FollowState::Closed | FollowState::Parked
        ) {
            return Actions::none();
        }
        self.ack(now_ns)
    }

    fn ack(&mut self, now_ns: u64) -> Actions<FollowAction> {
        self.sent_ns = now_ns;
        Actions::one(FollowAction::Send(Message::Ack {
            holds: self.holds,
            openers: self.openers,
        }))
    }

    /// The driver refused a frame (after applying the ones before it, which
    /// [`Follower::applied`] reported).
    pub fn refused(&mut self, why: Refusal, now_ns: u64) -> Actions<FollowAction> {
        match why {
            Refusal::OlderTerm => self.close(CloseReason::OlderTerm),
            Refusal::Gap => self.subscribe(now_ns),
            Refusal::Diverged => {
                // Rebuilt from a snapshot: ask as one that holds its
                // incarnation but no position (a replica that holds nothing
                // at all, incarnation 0, is streamed from frame 1 instead).
                self.holds = Position::default();
                self.subscribe(now_ns)
            }
        }
    }

    /// The snapshot is installed: the replica holds through `holds`.
    pub fn installed(&mut self, holds: Position, now_ns: u64) -> Actions<FollowAction> {
        if self.state != FollowState::Installing {
            return Actions::none();
        }
        self.holds = holds;
        self.incarnation = self.installing;
        self.state = FollowState::Following;
        self.ack(now_ns)
    }

    /// The driver dropped a copy it had installed and was catching up
    /// before putting it in place (a new snapshot began): the replica holds
    /// what it held before, `holds` of `incarnation` (0: nothing). What
    /// this end says it holds from now on is that, not the copy's.
    pub fn copy_dropped(&mut self, incarnation: u64, holds: Position) {
        self.incarnation = incarnation;
        self.holds = holds;
    }

    /// The driver could not install the snapshot (it came incomplete or
    /// contradicted the checkpoint's attributes): the replica is as it was;
    /// ask again from what it holds.
    pub fn install_failed(&mut self, now_ns: u64) -> Actions<FollowAction> {
        if self.state != FollowState::Installing {
            return Actions::none();
        }
        self.subscribe(now_ns)
    }

    /// Time passed: heartbeat when idle, subscribe again if unanswered or if
    /// a snapshot stalls (no part for the silence limit), close a silent
    /// link.
    pub fn tick(&mut self, now_ns: u64) -> Actions<FollowAction> {
        if matches!(self.state, FollowState::Down | FollowState::Closed) {
            return Actions::none();
        }
        if now_ns.saturating_sub(self.heard_ns) > self.cfg.silence_ns {
            return self.close(CloseReason::Silent);
        }
        if self.state == FollowState::Parked {
            if now_ns.saturating_sub(self.sent_ns) > self.cfg.heartbeat_ns {
                self.sent_ns = now_ns;
                return Actions::one(FollowAction::Send(Message::Heartbeat));
            }
            return Actions::none();
        }
        let waited = now_ns.saturating_sub(self.asked_ns);
        if self.state == FollowState::Subscribed && waited > self.cfg.resubscribe_ns {
            return self.subscribe(now_ns);
        }
        if self.state == FollowState::Installing && waited > self.cfg.silence_ns {
            // The snapshot stalled (its end or a part was lost): drop the
            // copy and ask again.
            let mut out = Actions::one(FollowAction::InstallDrop);
            out.extend(self.subscribe(now_ns));
            return out;
        }
        if now_ns.saturating_sub(self.sent_ns) > self.cfg.heartbeat_ns {
            // The heartbeat repeats what the replica holds: a lost
            // acknowledgement is made good.
            return self.ack(now_ns);
        }
        Actions::none()
    }

    /// The link was lost: [`Follower::connected`] starts over on a new one.
    pub fn lost(&mut self) {
        self.state = FollowState::Down;
    }

    fn close(&mut self, reason: CloseReason) -> Actions<FollowAction> {
        self.state = FollowState::Closed;
        Actions::one(FollowAction::Close(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log holding frames `oldest..=tail`, all of `term` but those listed.
    struct Log {
        incarnation: u64,
        term: u32,
        oldest: u64,
        tail: u64,
        older: &'static [(u64, u32)],
        /// Frames with more of their call after them.
        continuing: &'static [u64],
    }

    impl LogView for Log {
        fn incarnation(&self) -> u64 {
            self.incarnation
        }
        fn term(&self) -> u32 {
            self.term
        }
        fn tail(&self) -> u64 {
            self.tail
        }
        fn oldest(&self) -> u64 {
            self.oldest
        }
        fn term_at(&self, seq: u64) -> Option<u32> {
            if seq < self.oldest || seq > self.tail {
                return None;
            }
            Some(
                self.older
                    .iter()
                    .find(|(s, _)| *s == seq)
                    .map_or(self.term, |(_, t)| *t),
            )
        }
        fn continues(&self, seq: u64) -> bool {
            self.continuing.contains(&seq)
        }
    }

    fn log(oldest: u64, tail: u64) -> Log {
        Log {
            incarnation: 7,
            term: 2,
            oldest,
            tail,
            older: &[],
            continuing: &[],
        }
    }

    fn cfg() -> LinkConfig {
        LinkConfig {
            window: 10,
            batch: 4,
            retransmit_ns: 10_000_000,
            ..LinkConfig::default()
        }
    }

    fn sub(incarnation: u64, seq: u64, term: u32) -> Message {
        Message::Subscribe {
            incarnation,
            holds: Position { seq, term },
        }
    }

    fn frames(first: u64, last: u64, prev_term: u32) -> Message {
        Message::Frames {
            first,
            last,
            prev_term,
            behind: 0,
        }
    }

    fn ship_(first: u64, last: u64, prev_term: u32) -> ShipAction {
        ShipAction::Ship {
            first,
            last,
            prev_term,
        }
    }

    fn ack(seq: u64, term: u32) -> Message {
        Message::Ack {
            holds: Position { seq, term },
            openers: 0,
        }
    }

    fn all<A: Copy>(a: Actions<A>) -> Vec<A> {
        a.into_iter().collect()
    }

    #[test]
    fn a_matching_subscription_streams_within_the_window() {
        let l = log(1, 30);
        let mut s = Shipper::new(cfg(), 0);
        let out = all(s.received(sub(7, 5, 2), &l, 1));
        assert_eq!(out, [ShipAction::Acked { seq: 5 }, ship_(6, 9, 2)]);
        assert_eq!(all(s.poll(&l, 2)), [ship_(10, 13, 2)]);
        assert_eq!(all(s.poll(&l, 3)), [ship_(14, 15, 2)]);
        // The window (10 past the acknowledgement) is full.
        assert!(s.poll(&l, 4).is_empty());
        let out = all(s.received(ack(9, 2), &l, 5));
        assert_eq!(out, [ShipAction::Acked { seq: 9 }, ship_(16, 19, 2)]);
        // One of another history (a replica since rebuilt) does not count.
        assert!(s.received(ack(12, 1), &l, 6).is_empty());
        // One of frames the log never had closes the link.
        let out = all(s.received(ack(31, 2), &l, 6));
        assert_eq!(out, [ShipAction::Close(CloseReason::Protocol)]);
        assert!(s.is_closed());
    }

    #[test]
    fn a_follower_that_stops_answering_is_closed_as_silent_not_sent_snapshots() {
        let second = 1_000_000_000;
        let mut l = log(1, 30);
        let mut s = Shipper::new(cfg(), 0);
        assert_eq!(
            all(s.received(sub(7, 5, 2), &l, 1)),
            [ShipAction::Acked { seq: 5 }, ship_(6, 9, 2)]
        );
        while !s.poll(&l, 2).is_empty() {}
        // The window is full and no acknowledgement comes; the writer laps
        // the ring meanwhile: with no room to ship, that is not a lap.
        l.oldest = 40;
        l.tail = 60;
        assert!(s
            .poll(&l, 3)
            .into_iter()
            .all(|a| !matches!(a, ShipAction::Snapshot)));
        let out = all(s.poll(&l, 2 * second));
        assert_eq!(out, [ShipAction::Close(CloseReason::Silent)]);
        // A snapshot that takes longer than the silence limit to send does
        // not make the follower silent...
        let l = log(12, 30);
        let mut s = Shipper::new(cfg(), 0);
        assert_eq!(all(s.received(sub(7, 5, 2), &l, 1)), [ShipAction::Snapshot]);
        let out = all(s.snapshot_sent(Position { seq: 20, term: 2 }, 20, &l, 3 * second));
        assert_eq!(out, [ship_(21, 24, 2)]);
        assert!(!s.is_closed());
        // ...but its silence before the snapshot began still counts.
        let mut s = Shipper::new(cfg(), 0);
        assert_eq!(all(s.received(sub(7, 5, 2), &l, 1)), [ShipAction::Snapshot]);
        s.sent_ns = second / 2; // The snapshot began half a second later.
        s.snapshot_sent(Position { seq: 20, term: 2 }, 20, &l, second);
        assert!(s
            .poll(&l, second + second / 2 + 2)
            .into_iter()
            .any(|a| a == ShipAction::Close(CloseReason::Silent)));
    }

    #[test]
    fn acknowledgements_release_writers_only_once_a_snapshot_has_settled() {
        // The copy holds frames through 20 and none after 23: the replica
        // puts it in place once it holds 23, and drops it if the link ends
        // before. What it holds below 23 counts for the window only.
        let l = log(12, 30);
        let mut s = Shipper::new(cfg(), 0);
        assert_eq!(all(s.received(sub(7, 5, 2), &l, 1)), [ShipAction::Snapshot]);
        s.snapshot_sent(Position { seq: 20, term: 2 }, 23, &l, 2);
        for seq in 20..23 {
            let out = all(s.received(ack(seq, 2), &l, 3));
            assert!(
                out.iter().all(|a| !matches!(a, ShipAction::Acked { .. })),
                "{seq}: {out:?}"
            );
        }
        assert_eq!(s.released(), 0);
        let out = all(s.received(ack(23, 2), &l, 4));
        assert!(out.contains(&ShipAction::Acked { seq: 23 }), "{out:?}");
        // A new subscription on the link (the copy, still catching up,
        // asking again after a gap) does not forget the horizon.
        let mut s = Shipper::new(cfg(), 0);
        assert_eq!(all(s.received(sub(7, 5, 2), &l, 1)), [ShipAction::Snapshot]);
        s.snapshot_sent(Position { seq: 20, term: 2 }, 23, &l, 2);
        let out = all(s.received(sub(7, 21, 2), &l, 3));
        assert!(
            out.iter().all(|a| !matches!(a, ShipAction::Acked { .. })),
            "{out:?}"
        );
        let out = all(s.received(ack(24, 2), &l, 4));
        assert!(out.contains(&ShipAction::Acked { seq: 24 }), "{out:?}");
    }

    #[test]
    fn other_histories_incarnations_and_lapped_rings_get_a_snapshot() {
        // The replica's frame 5 is of term 1; ours is of term 2.
        let l = log(1, 30);
        let mut s = Shipper::new(cfg(), 0);
        assert_eq!(all(s.received(sub(7, 5, 1), &l, 1)), [ShipAction::Snapshot]);
        // It holds frames we never had (a deposed primary's).
        let mut s = Shipper::new(cfg(), 0);
        assert_eq!(
            all(s.received(sub(7, 40, 2), &l, 1)),
            [ShipAction::Snapshot]
        );
        // Another incarnation, and the ring lost the creation frame.
        let l = log(12, 30);
        let mut s = Shipper::new(cfg(), 0);
        assert_eq!(all(s.received(sub(3, 5, 2), &l, 1)), [ShipAction::Snapshot]);
        // Our ring no longer holds what follows its position.
        let mut s = Shipper::new(cfg(), 0);
        assert_eq!(all(s.received(sub(7, 5, 2), &l, 1)), [ShipAction::Snapshot]);
        // The snapshot went out: the frames after its start follow.
        let out = all(s.snapshot_sent(Position { seq: 20, term: 2 }, 20, &l, 2));
        assert_eq!(out, [ship_(21, 24, 2)]);
        // A fresh replica of a log that still holds frame 1 streams from it.
        let l = log(1, 3);
        let mut s = Shipper::new(cfg(), 0);
        assert_eq!(all(s.received(sub(0, 0, 0), &l, 1)), [ship_(1, 3, 0)]);
    }

    /// A batch never ends inside a call's frames while the rest of the call
    /// is in the log: it ends before the call, and the next batch carries
    /// it whole. A call longer than a batch, or cut at the tail, goes as it
    /// is.
    #[test]
    fn batches_end_with_whole_calls() {
        // Batches of 4, a window of 10; frames 5..=7 are one call, 9..=15
        // another (longer than a batch).
        let l = Log {
            continuing: &[5, 6, 9, 10, 11, 12, 13, 14],
            ..log(1, 30)
        };
        let mut s = Shipper::new(cfg(), 0);
        let out = all(s.received(sub(7, 2, 2), &l, 1));
        // 3..=6 would split 5..=7: 3..=4, then the call whole.
        assert_eq!(out, [ShipAction::Acked { seq: 2 }, ship_(3, 4, 2)]);
        assert_eq!(all(s.poll(&l, 2)), [ship_(5, 8, 2)]);
        // 9..=12 splits 9..=15, which no batch holds whole: as it is.
        assert_eq!(all(s.poll(&l, 3)), [ship_(9, 12, 2)]);
        let out = all(s.received(ack(12, 2), &l, 4));
        assert_eq!(out, [ShipAction::Acked { seq: 12 }, ship_(13, 16, 2)]);
        // The window, not the batch, leaves room for part of a call: it
        // waits for room. Calls 23..=26 and 27..=30; a window of 10.
        let l = Log {
            continuing: &[23, 24, 25, 27, 28, 29],
            ..log(1, 40)
        };
        let mut s = Shipper::new(cfg(), 0);
        let out = all(s.received(sub(7, 16, 2), &l, 1));
        assert_eq!(out, [ShipAction::Acked { seq: 16 }, ship_(17, 20, 2)]);
        assert_eq!(all(s.poll(&l, 2)), [ship_(21, 22, 2)]);
        assert_eq!(all(s.poll(&l, 3)), [ship_(23, 26, 2)]);
        // Acknowledged through 18: room for 27..=28 only, half a call.
        let out = all(s.received(ack(18, 2), &l, 4));
        assert_eq!(out, [ShipAction::Acked { seq: 18 }]);
        let out = all(s.received(ack(22, 2), &l, 5));
        assert_eq!(out, [ShipAction::Acked { seq: 22 }, ship_(27, 30, 2)]);
        // At the tail: a call whose end is not published goes as it is.
        let cut = Log {
            continuing: &[3, 4],
            ..log(1, 4)
        };
        let mut s = Shipper::new(cfg(), 0);
        let out = all(s.received(sub(7, 2, 2), &cut, 1));
        assert_eq!(out, [ShipAction::Acked { seq: 2 }, ship_(3, 4, 2)]);
    }

    #[test]
    fn a_log_matched_after_a_term_change_streams() {
        let l = Log {
            older: &[(5, 1)],
            ..log(1, 30)
        };
        let mut s = Shipper::new(cfg(), 0);
        let out = all(s.received(sub(7, 5, 1), &l, 1));
        assert_eq!(out, [ShipAction::Acked { seq: 5 }, ship_(6, 9, 1)]);
    }

    #[test]
    fn unacknowledged_frames_and_snapshots_are_sent_again() {
        let c = cfg();
        let l = log(1, 30);
        let mut s = Shipper::new(c, 0);
        s.received(sub(7, 5, 2), &l, 0);
        s.poll(&l, 1);
        // Nothing acknowledged for the retransmission time: from 6 again.
        let late = 2 + c.retransmit_ns;
        assert_eq!(all(s.poll(&l, late)), [ship_(6, 9, 2)]);
        // A snapshot never confirmed is sent again (not its frames alone).
        let l = log(20, 40);
        let mut s = Shipper::new(c, 0);
        assert_eq!(all(s.received(sub(7, 5, 2), &l, 0)), [ShipAction::Snapshot]);
        s.snapshot_sent(Position { seq: 40, term: 2 }, 40, &l, 1);
        let l = log(20, 44);
        assert_eq!(all(s.poll(&l, 2)), [ship_(41, 44, 2)]);
        assert_eq!(all(s.poll(&l, 3 + c.retransmit_ns)), [ShipAction::Snapshot]);
        assert_eq!(s.in_flight(), 44);
    }

    #[test]
    fn a_newer_term_deposes_the_shipper_but_not_another_incarnations() {
        let l = log(1, 30);
        let mut s = Shipper::new(cfg(), 0);
        assert_eq!(
            all(s.received(sub(7, 31, 3), &l, 1)),
            [ShipAction::Deposed { term: 3 }]
        );
        // An acknowledgement of a newer term deposes too.
        let mut s = Shipper::new(cfg(), 0);
        s.received(sub(7, 5, 2), &l, 1);
        assert_eq!(
            all(s.received(ack(31, 3), &l, 2)),
            [ShipAction::Deposed { term: 3 }]
        );
        // A replica of an older incarnation (the checkpoint was re-created,
        // its terms start again) is rebuilt, not told it is deposed.
        let mut s = Shipper::new(cfg(), 0);
        assert_eq!(
            all(s.received(sub(6, 90, 9), &l, 1)),
            [ShipAction::Snapshot]
        );
    }

    #[test]
    fn a_batch_cut_short_goes_on_from_where_it_stopped() {
        let l = log(1, 30);
        let mut s = Shipper::new(cfg(), 0);
        s.received(sub(7, 5, 2), &l, 1);
        // The driver sent 6..=7 of 6..=9.
        s.shipped_through(7);
        assert_eq!(all(s.poll(&l, 2)), [ship_(8, 11, 2)]);
    }

    #[test]
    fn an_old_acknowledgement_does_not_count_before_the_snapshot_is_held() {
        let l = log(20, 40);
        let mut s = Shipper::new(cfg(), 0);
        assert_eq!(all(s.received(sub(7, 5, 2), &l, 0)), [ShipAction::Snapshot]);
        s.snapshot_sent(Position { seq: 40, term: 2 }, 40, &l, 1);
        let l = log(20, 44);
        s.poll(&l, 2);
        // A heartbeat from before the install: frame 12 is not in the ring.
        assert!(s.received(ack(12, 1), &l, 3).is_empty());
        assert_eq!(s.released(), 0);
        // The install's acknowledgement counts.
        assert_eq!(
            all(s.received(ack(40, 2), &l, 4))[0],
            ShipAction::Acked { seq: 40 }
        );
    }

    #[test]
    fn lapped_snapshots_are_bounded() {
        let mut s = Shipper::new(cfg(), 0);
        for _ in 0..3 {
            assert_eq!(all(s.lapped(1)), [ShipAction::Snapshot]);
        }
        assert_eq!(
            all(s.lapped(1)),
            [ShipAction::Close(CloseReason::SnapshotsOvertaken)]
        );
    }

    #[test]
    fn silence_closes_and_idleness_sends_heartbeats() {
        let c = cfg();
        let l = log(1, 0);
        let mut s = Shipper::new(c, 0);
        s.received(sub(7, 0, 0), &l, 0);
        assert_eq!(
            all(s.poll(&l, c.heartbeat_ns + 1)),
            [ShipAction::Send(Message::Heartbeat)]
        );
        assert_eq!(
            all(s.poll(&l, c.silence_ns + 1)),
            [ShipAction::Close(CloseReason::Silent)]
        );
        let mut f = Follower::new(c, 0, Position::default());
        f.connected(0);
        f.received(frames(1, 1, 0), 1);
        assert_eq!(
            all(f.tick(c.heartbeat_ns + 2)),
            [FollowAction::Send(ack(0, 0))]
        );
        assert_eq!(
            all(f.tick(c.silence_ns + 2)),
            [FollowAction::Close(CloseReason::Silent)]
        );
    }

    #[test]
    fn a_follower_applies_in_order_drops_duplicates_and_resubscribes_after_a_gap() {
        let c = cfg();
        let mut f = Follower::new(c, 7, Position { seq: 5, term: 2 });
        assert_eq!(all(f.connected(0)), [FollowAction::Send(sub(7, 5, 2))]);
        // A batch overlapping what it holds: apply from 6.
        assert_eq!(
            all(f.received(frames(3, 8, 1), 1)),
            [FollowAction::Apply {
                first: 6,
                last: 8,
                after: Position { seq: 5, term: 2 }
            }]
        );
        let held = Position { seq: 8, term: 2 };
        assert_eq!(all(f.applied(held, 2)), [FollowAction::Send(ack(8, 2))]);
        // Held already: the acknowledgement again.
        assert_eq!(
            all(f.received(frames(7, 8, 2), 3)),
            [FollowAction::Send(ack(8, 2))]
        );
        // A gap: subscribe again from 8, once per interval.
        assert_eq!(
            all(f.received(frames(11, 12, 2), 4)),
            [FollowAction::Send(sub(7, 8, 2))]
        );
        assert!(f.received(frames(13, 14, 2), 5).is_empty());
        assert_eq!(
            all(f.tick(5 + c.resubscribe_ns)),
            [FollowAction::Send(sub(7, 8, 2))]
        );
        // Frames that follow a frame of another term: subscribe again.
        let mut g = Follower::new(c, 7, Position { seq: 8, term: 2 });
        g.connected(0);
        assert_eq!(
            all(g.received(frames(9, 10, 1), c.resubscribe_ns + 1)),
            [FollowAction::Send(sub(7, 8, 2))]
        );
        // Frames of an older term refused by the apply close the link.
        assert_eq!(
            all(f.refused(Refusal::OlderTerm, 6)),
            [FollowAction::Close(CloseReason::OlderTerm)]
        );
    }

    #[test]
    fn a_snapshot_replaces_and_a_divergence_rebuilds() {
        let c = cfg();
        let mut f = Follower::new(c, 7, Position { seq: 5, term: 2 });
        f.connected(0);
        let begin = Message::Snapshot { incarnation: 9 };
        let at = Position { seq: 40, term: 3 };
        let end = Message::SnapshotEnd {
            start: at,
            sections: 2,
        };
        assert_eq!(
            all(f.received(begin, 1)),
            [FollowAction::InstallBegin { incarnation: 9 }]
        );
        let part = Message::SnapshotPart { records: 2 };
        assert_eq!(all(f.received(part, 1)), [FollowAction::InstallPart]);
        // Frames arriving mid-install are dropped (they come again).
        assert!(f.received(frames(41, 42, 3), 2).is_empty());
        assert_eq!(
            all(f.received(end, 2)),
            [FollowAction::InstallEnd {
                start: at,
                sections: 2
            }]
        );
        assert_eq!(f.incarnation(), 7, "not replaced before it is installed");
        assert_eq!(all(f.installed(at, 3)), [FollowAction::Send(ack(40, 3))]);
        assert_eq!(f.incarnation(), 9);
        // Parts and ends of a snapshot not being installed are ignored.
        assert!(f.received(part, 4).is_empty());
        assert!(f.received(end, 4).is_empty());
        // A repeated snapshot older than what it holds is not installed.
        let mut g = Follower::new(c, 9, Position { seq: 50, term: 3 });
        g.connected(0);
        g.received(begin, 1);
        assert_eq!(
            all(g.received(end, 1)),
            [FollowAction::InstallDrop, FollowAction::Send(ack(50, 3))]
        );
        // One of an older term comes from a deposed primary.
        let mut h = Follower::new(c, 9, Position { seq: 30, term: 4 });
        h.connected(0);
        h.received(begin, 1);
        assert_eq!(
            all(h.received(end, 1)),
            [
                FollowAction::InstallDrop,
                FollowAction::Close(CloseReason::OlderTerm)
            ]
        );
        // A copy that could not be installed: ask again from what it holds.
        let mut k = Follower::new(c, 7, Position { seq: 5, term: 2 });
        k.connected(0);
        k.received(begin, 1);
        assert_eq!(all(k.install_failed(2)), [FollowAction::Send(sub(7, 5, 2))]);
        assert_eq!(
            all(f.refused(Refusal::Diverged, 4)),
            [FollowAction::Send(sub(9, 0, 0))]
        );
        // A snapshot whose parts stop coming is dropped and asked for again.
        let mut m = Follower::new(c, 7, Position { seq: 5, term: 2 });
        m.connected(0);
        m.received(begin, 1);
        m.received(part, 2);
        let beat = 2 + c.silence_ns * 3 / 4;
        m.received(Message::Heartbeat, beat);
        assert!(
            !all(m.tick(beat + 1)).contains(&FollowAction::InstallDrop),
            "not stalled yet"
        );
        assert_eq!(
            all(m.tick(3 + c.silence_ns)),
            [FollowAction::InstallDrop, FollowAction::Send(sub(7, 5, 2))]
        );
    }

    #[test]
    fn a_parked_follower_heartbeats_subscribes_when_wanted_and_refuses_anything_but_heartbeats() {
        let c = cfg();
        let mut f = Follower::new(c, 0, Position::default());
        assert_eq!(
            all(f.park(0)),
            [FollowAction::Send(Message::Heartbeat)],
            "parking says so"
        );
        assert!(f.is_parked() && !f.is_following());
        // Idle: heartbeats, no subscription, no acknowledgement.
        assert!(f.tick(c.heartbeat_ns / 2).is_empty());
        assert_eq!(
            all(f.tick(c.heartbeat_ns + 1)),
            [FollowAction::Send(Message::Heartbeat)]
        );
        // The shipper's heartbeats keep it from being silent.
        f.received(Message::Heartbeat, c.silence_ns);
        assert_eq!(
            all(f.tick(c.silence_ns + 2)),
            [FollowAction::Send(Message::Heartbeat)]
        );
        // Wanted: it subscribes from what it holds; a second want does nothing.
        let now = c.silence_ns + 3;
        assert_eq!(all(f.want(now)), [FollowAction::Send(sub(0, 0, 0))]);
        assert!(!f.is_parked());
        assert!(f.want(now).is_empty());
        // A copy installed and dropped before it was in place: what the
        // follower holds is the replica's again, so an older snapshot of
        // the same history is not refused as stale.
        let mut m = Follower::new(c, 7, Position { seq: 10, term: 2 });
        m.connected(0);
        m.received(Message::Snapshot { incarnation: 7 }, 1);
        let end = |seq| Message::SnapshotEnd {
            start: Position { seq, term: 2 },
            sections: 0,
        };
        m.received(end(50), 2);
        m.installed(Position { seq: 50, term: 2 }, 3);
        m.received(Message::Snapshot { incarnation: 7 }, 4);
        m.copy_dropped(7, Position { seq: 10, term: 2 });
        assert_eq!(
            all(m.received(end(30), 5)),
            [FollowAction::InstallEnd {
                start: Position { seq: 30, term: 2 },
                sections: 0
            }]
        );
        // The shipper closing the link, saying why, closes it here too,
        // with nothing sent back.
        let mut k = Follower::new(c, 0, Position::default());
        k.park(0);
        let reason = CloseReason::SnapshotsOvertaken;
        assert!(k.received(Message::Closing { reason }, 1).is_empty());
        assert!(k.tick(c.heartbeat_ns * 4).is_empty(), "closed");
        // Frames before a subscription break the protocol.
        let mut g = Follower::new(c, 0, Position::default());
        g.park(0);
        assert_eq!(
            all(g.received(frames(1, 2, 1), 1)),
            [FollowAction::Close(CloseReason::Protocol)]
        );
        // A silent shipper closes a parked link too.
        let mut h = Follower::new(c, 0, Position::default());
        h.park(0);
        assert_eq!(
            all(h.tick(c.silence_ns + 1)),
            [FollowAction::Close(CloseReason::Silent)]
        );
        // A follower that is not parked ignores a want.
        let mut k = Follower::new(c, 7, Position { seq: 5, term: 2 });
        k.connected(0);
        assert!(k.want(1).is_empty());
    }
}
