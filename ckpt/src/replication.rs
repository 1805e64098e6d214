//! Replication links over a transport: the drivers of `ckpt_core::repl`'s
//! state machines on real segments.
//!
//! A link begins with the shipper's offer, which names the checkpoint (after
//! the two ends proved they hold the cluster key, where they have one): so
//! either end may be the one that connected, and a node's daemon learns from
//! one listening socket which checkpoint an incoming link carries
//! ([`accept_offer`]).
//!
//! [`ship`] runs on the primary's host, one per replica and checkpoint: it
//! indexes the primary's log ring (sequence number → ring position and
//! term), answers the replica's subscription, copies frames out of the ring
//! and sends them in batches (under one checksum each), and records the replica's
//! acknowledgements in the segment (which releases synchronous writers).
//! [`follow`] runs on the replica's host: it subscribes with what its replica
//! segment holds, creates the replica from the primary's creation frame, and
//! applies the frames it receives, acknowledging them. A replica behind the
//! primary's ring, or of another incarnation or history, is rebuilt from a
//! fuzzy snapshot the shipper streams while the writer goes on
//! (`ckpt_shm::ops::install`).
//!
//! The node daemon ([`crate::node`]) runs these per checkpoint and peer.
//! Not yet: an event-driven wait at the follower (it polls its socket with a
//! short timeout, [`LinkOptions::poll`], when it had nothing to do the last
//! time).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ckpt_core::ais::SA_AIS_OK;
use ckpt_core::error::UnlinkError;
use ckpt_core::frame::{
    self, decode_message, encode_message, Frame, SnapshotTail, WireError, WireMessage, FLAG_MORE,
    MESSAGE_HEADER_BYTES,
};
use ckpt_core::repl::{
    Actions, CloseReason, FollowAction, Follower, LinkConfig, LogView, Message, Position, Refusal,
    ShipAction, Shipper, AUTH_BYTES,
};
use ckpt_core::CheckpointName;
use ckpt_shm::ack::Need;
use ckpt_shm::log::LogError;
use ckpt_shm::ops::install::{InstallError, Installer, PublishFail, Staged};
use ckpt_shm::ops::{ApplyError, Consumer};
use ckpt_shm::slot::ReadFail;
use ckpt_shm::{Config, Segment};
use ckpt_transport::Connection;
use hmac::{Hmac, Mac};

use crate::seal::{SessionKeys, Wire};
use sha2::Sha256;

/// The link id a follower uses on its connection (one checkpoint per
/// connection for now).
pub const LINK: u32 = 1;

/// How a link behaves.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    /// The protocol's windows and timers.
    pub link: LinkConfig,
    /// How long one wait for a message lasts before the log is looked at.
    pub poll: Duration,
    /// For a synchronous checkpoint (`WR_ALL_REPLICAS`), how long the
    /// shipper spins for the next frame before it sleeps on the log: its
    /// writer writes again as soon as this replica's acknowledgement is in,
    /// and a wake-up from sleep costs about as much as the round trip.
    /// Asynchronous checkpoints never spin. Zero: never.
    pub sync_spin: Duration,
    /// The largest message accepted from the peer.
    pub max_message: usize,
    /// Bytes of frames per message (a batch is cut once it reaches this; a
    /// snapshot part once its records do, so a part may hold one more
    /// record of up to this size: keep `max_message` at least twice this).
    pub batch_bytes: usize,
    /// The cluster key both ends must prove they hold before anything else
    /// (challenge-response: HMAC-SHA256 over both ends' random challenges);
    /// `None`: links are not authenticated, and a peer that asks for it is
    /// refused.
    pub key: Option<ClusterKey>,
    /// Seal every message after authentication (ChaCha20-Poly1305 under
    /// session keys derived from the cluster key and both challenges:
    /// [`crate::seal`]); needs `key`, and both ends must agree.
    pub encrypt: bool,
    /// Called (on the link's thread) with each [`LinkEvent`]; `None`: they
    /// are not reported.
    pub on_event: Option<fn(&LinkEvent)>,
    /// Where the link counts what it does, for an operator; `None`: it does
    /// not. Give each link its own.
    pub stats: Option<Arc<LinkStats>>,
}

impl LinkOptions {
    fn report(&self, event: LinkEvent) {
        if let Some(f) = self.on_event {
            f(&event);
        }
    }

    /// Runs `f` on the link's counters, if it has them.
    fn count(&self, f: impl FnOnce(&LinkStats)) {
        if let Some(stats) = &self.stats {
            f(stats);
        }
    }
}

/// Sets a link's flag to `value`, storing only if it differs (a flag noted
/// per message stays in the readers' caches).
fn note(flag: &AtomicBool, value: bool) {
    if flag.load(Ordering::Relaxed) != value {
        flag.store(value, Ordering::Relaxed);
    }
}

/// What a link has done, as counters and gauges an operator reads while it
/// runs (each word on its own: a reader may see one updated before another,
/// and every store is `Relaxed`, as are the readers' loads: they order
/// nothing else).
#[derive(Debug, Default)]
pub struct LinkStats {
    /// The replica holds every frame through this one: as it acknowledged
    /// (at the shipper) or as applied (at the follower).
    pub held: AtomicU64,
    /// The primary's last frame, as this end last saw it.
    pub primary: AtomicU64,
    /// The term of the last frame the replica holds (at the follower), or
    /// the primary's term (at the shipper).
    pub term: AtomicU32,
    /// Frames shipped (at the shipper) or applied (at the follower).
    pub frames: AtomicU64,
    /// Snapshots sent or installed.
    pub snapshots: AtomicU64,
    /// The link is parked: the follower holds no replica and wants none
    /// yet (placement); nothing is shipped, and it lags by nothing.
    pub parked: AtomicBool,
    /// A snapshot is being installed (at the follower): its copy is being
    /// filled, or catches up under its temporary name (the replica under
    /// the checkpoint's name is the old one meanwhile), or is in place and
    /// the primary has not said since how far it got (its next frames or
    /// heartbeat do). The replica's lag is shown as unknown.
    pub installing: AtomicBool,
    /// The peer has sent something on the current connection (at the
    /// shipper): a connection the peer's kernel accepted for a process
    /// that is stopped, or gone, is not a link yet.
    pub heard: AtomicBool,
    /// Unlinks this end's node asked of the primary (at a follower):
    /// [`LinkStats::ask_unlink`].
    unlinks_asked: AtomicU64,
    /// The primary's last answer: the number of asks it answers (high
    /// half) and the SA error code of its unlink (low half); 0: none yet.
    unlink_answer: AtomicU64,
    /// Changes this end's node forwards to the primary (at a follower), and
    /// their answers: [`LinkStats::forward`].
    forwards: Mutex<Forwards>,
    /// Notified when an answer comes.
    forward_answered: std::sync::Condvar,
    /// Changes queued and not sent yet (kept with the queue, under its
    /// lock): the follower's loop looks at this word, not at the lock, on
    /// each pass.
    forwards_queued: AtomicUsize,
}

/// A follower's forwarded changes: queued (not sent yet), sent (waiting for
/// their answers), answered.
#[derive(Debug, Default)]
struct Forwards {
    /// The last ask's number.
    asked: u64,
    queued: VecDeque<(u64, Vec<u8>)>,
    sent: BTreeSet<u64>,
    answers: BTreeMap<u64, crate::forward::Reply>,
}

/// Where a forwarded change stands ([`LinkStats::forwarded`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardState {
    /// Not sent yet: the link may still send it (or a later one, if it is
    /// taken back with [`LinkStats::take_back`]).
    Queued,
    /// Sent: the answer is awaited.
    Sent,
    /// The primary's answer.
    Answered(crate::forward::Reply),
    /// Not known to this link (forgotten).
    Unknown,
}

impl LinkStats {
    fn raise(word: &AtomicU64, to: u64) {
        word.fetch_max(to, Ordering::Relaxed);
    }

    /// The primary logged frames through `seq` (a shipping link's status
    /// notes its own log's progress, whatever the link is doing, so the lag
    /// shows it).
    pub(crate) fn primary_reached(&self, seq: u64) {
        Self::raise(&self.primary, seq);
    }

    /// The replica holds every frame through `holds` (applied, installed,
    /// or found at the link's start).
    fn hold(&self, holds: Position) {
        self.held.store(holds.seq, Ordering::Relaxed);
        self.term.store(holds.term, Ordering::Relaxed);
    }

    /// At a follower: asks the link to have the primary unlink the
    /// checkpoint (a process of this node unlinks it). Returns the ask's
    /// number, for [`LinkStats::unlink_answered`]. Asks made before the link
    /// sends one go together and get its answer.
    pub fn ask_unlink(&self) -> u64 {
        self.unlinks_asked.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The SA error code the primary answered ask `asked` with (1,
    /// `SA_AIS_OK`: unlinked), once it has.
    pub fn unlink_answered(&self, asked: u64) -> Option<u32> {
        let a = self.unlink_answer.load(Ordering::Acquire);
        // Asks are counted in 32 bits on this side of the answer word.
        (a != 0 && (a >> 32) >= (asked & 0xFFFF_FFFF)).then_some(a as u32)
    }

    /// At a follower: queues the forwarded change `request` (a
    /// [`ckpt_core::frame::ForwardRequest`]'s bytes) for the link to send
    /// to the primary. Returns its ask number, for
    /// [`LinkStats::forwarded`]; `None` if
    /// [`crate::forward::FORWARDS_QUEUED_MAX`] are queued or waiting.
    pub fn forward(&self, request: Vec<u8>) -> Option<u64> {
        let mut f = self.forwards.lock().unwrap_or_else(|p| p.into_inner());
        if f.queued.len() + f.sent.len() >= crate::forward::FORWARDS_QUEUED_MAX {
            return None;
        }
        f.asked += 1;
        let ask = f.asked;
        f.queued.push_back((ask, request));
        self.forwards_queued
            .store(f.queued.len(), Ordering::Relaxed);
        Some(ask)
    }

    /// Where ask `ask` stands, once answered or after `wait` at most; an
    /// answer is handed out once (and forgotten).
    pub fn forwarded(&self, ask: u64, wait: Duration) -> ForwardState {
        let mut f = self.forwards.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = Instant::now() + wait;
        // Queued or sent, the asker sleeps until the answer (or `wait`):
        // one that returned at once while its change is queued would spin
        // until the link sends it.
        let waiting = |f: &Forwards| {
            !f.answers.contains_key(&ask)
                && (f.sent.contains(&ask) || f.queued.iter().any(|(a, _)| *a == ask))
        };
        while waiting(&f) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            f = self
                .forward_answered
                .wait_timeout(f, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if let Some(reply) = f.answers.remove(&ask) {
            return ForwardState::Answered(reply);
        }
        if f.sent.contains(&ask) {
            ForwardState::Sent
        } else if f.queued.iter().any(|(a, _)| *a == ask) {
            ForwardState::Queued
        } else {
            ForwardState::Unknown
        }
    }

    /// Takes ask `ask` back if it was not sent yet (its bytes, for another
    /// link), and forgets it either way (the asker stopped waiting).
    pub fn take_back(&self, ask: u64) -> Option<Vec<u8>> {
        let mut f = self.forwards.lock().unwrap_or_else(|p| p.into_inner());
        f.sent.remove(&ask);
        f.answers.remove(&ask);
        let at = f.queued.iter().position(|(a, _)| *a == ask)?;
        let taken = f.queued.remove(at).map(|(_, bytes)| bytes);
        self.forwards_queued
            .store(f.queued.len(), Ordering::Relaxed);
        taken
    }

    /// The next queued change to send, now counted as sent. Takes the lock
    /// only when [`LinkStats::forwards_queued`] says one is queued (one
    /// queued just now is found at the next pass).
    fn next_forward(&self) -> Option<(u64, Vec<u8>)> {
        // SYNC POINT: none needed: the count is a hint (stored under the
        // queue's lock, which orders the queue itself); a stale 0 only
        // leaves the change to the next pass.
        if self.forwards_queued.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut f = self.forwards.lock().unwrap_or_else(|p| p.into_inner());
        let (ask, bytes) = f.queued.pop_front()?;
        self.forwards_queued
            .store(f.queued.len(), Ordering::Relaxed);
        f.sent.insert(ask);
        Some((ask, bytes))
    }

    /// The primary answered ask `ask` (dropped unless this link sent it and
    /// its asker still waits).
    fn answered(&self, ask: u64, reply: crate::forward::Reply) {
        let mut f = self.forwards.lock().unwrap_or_else(|p| p.into_inner());
        if f.sent.remove(&ask) {
            f.answers.insert(ask, reply);
            self.forward_answered.notify_all();
        }
    }

    /// Frames the replica lacks (as this end knows; 0 while parked: there
    /// is no replica).
    pub fn lag(&self) -> u64 {
        if self.parked.load(Ordering::Relaxed) {
            return 0;
        }
        let primary = self.primary.load(Ordering::Relaxed);
        primary.saturating_sub(self.held.load(Ordering::Relaxed))
    }
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            link: LinkConfig::default(),
            poll: Duration::from_micros(200),
            sync_spin: Duration::from_micros(50),
            max_message: 64 << 20,
            batch_bytes: 1 << 20,
            key: None,
            encrypt: false,
            on_event: None,
            stats: None,
        }
    }
}

/// Something an operator wants to know happened on a link (given to
/// [`LinkOptions::on_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// The peer proved it holds the cluster key.
    Authenticated,
    /// The shipper sent a snapshot of `sections` sections; the replica then
    /// holds every frame through `start`.
    SnapshotSent { start: u64, sections: u64 },
    /// The replica was rebuilt from a snapshot of `sections` sections: it
    /// holds every frame through `start`.
    SnapshotInstalled { start: u64, sections: u64 },
    /// A snapshot was refused (the replica stays as it was; another is asked
    /// for): why.
    SnapshotRefused(&'static str),
    /// This host's copy was a primary of an older term: the primary that
    /// offered the link, in `term`, deposed it, and it is a replica now.
    Demoted { term: u32 },
    /// This host's copy was a primary of another incarnation of the name,
    /// created here before the offered one was known, and outranked by it
    /// (`term`, `incarnation`): it yielded, and a snapshot of the offered
    /// one replaces it.
    Yielded { term: u32, incarnation: u64 },
}

impl fmt::Display for LinkEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkEvent::Authenticated => f.write_str("the peer holds the cluster key"),
            LinkEvent::SnapshotSent { start, sections } => write!(
                f,
                "sent a snapshot (sections: {sections}; the replica then holds frame {start})"
            ),
            LinkEvent::SnapshotInstalled { start, sections } => write!(
                f,
                "rebuilt the replica from a snapshot (sections: {sections}; it holds frame {start})"
            ),
            LinkEvent::SnapshotRefused(why) => write!(f, "refused a snapshot: {why}"),
            LinkEvent::Demoted { term } => write!(
                f,
                "this host's copy was a primary of an older term: a replica of the primary in term {term} now"
            ),
            LinkEvent::Yielded { term, incarnation } => write!(
                f,
                "this host's copy was another incarnation of the name, created before the peer's was known: it yields to incarnation {incarnation:x} (term {term}), whose snapshot replaces it"
            ),
        }
    }
}

/// A pre-shared cluster key (at least [`ClusterKey::BYTES_MIN`] bytes).
#[derive(Clone)]
pub struct ClusterKey(std::sync::Arc<[u8]>);

impl ClusterKey {
    /// The shortest key accepted.
    pub const BYTES_MIN: usize = 16;

    /// The key `bytes`; `None` if it is shorter than [`Self::BYTES_MIN`].
    pub fn new(bytes: &[u8]) -> Option<ClusterKey> {
        (bytes.len() >= Self::BYTES_MIN).then(|| ClusterKey(bytes.into()))
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the bytes.
        write!(f, "ClusterKey({} bytes)", self.0.len())
    }
}

/// How a link ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// `stop` was set.
    Stopped,
    /// The protocol closed it.
    Closed(CloseReason),
    /// A replica follows a newer term: this host is not the active replica.
    Deposed { term: u32 },
    /// The peer closed the connection.
    PeerClosed,
    /// The peer closed the link for this reason (its protocol's; it said so
    /// before it dropped the connection).
    ClosedByPeer(CloseReason),
    /// The checkpoint was unlinked and the replica holds the unlink: the
    /// link has nothing left to carry.
    Unlinked,
}

/// Why a link failed.
#[derive(Debug)]
pub enum ReplicationError {
    /// The connection failed.
    Io(io::Error),
    /// The peer sent bytes that are not a message.
    Wire(WireError),
    /// The peer sent a message for another link.
    WrongLink(u32),
    /// The primary's log could not be read (it is damaged).
    Log(LogError),
    /// The replica segment could not be opened or created.
    Open(ckpt_core::error::OpenError),
    /// A frame could not be applied for a reason the protocol does not cover.
    Apply(ApplyError),
    /// A snapshot could not be installed for a reason the protocol does not
    /// cover (no room, the new segment could not be made).
    Install(InstallError),
    /// The peer asked for, or sent, another checkpoint than this link's.
    WrongCheckpoint(String),
    /// The peer did not prove it holds the cluster key (or this end has
    /// none and the peer asked for it): the connection is refused.
    Unauthenticated(&'static str),
    /// The peer did not begin the link with an offer of a checkpoint (in
    /// time, or one this end can take): why.
    NoOffer(&'static str),
    /// The offered checkpoint is a primary on this host (in `term`), not a
    /// replica: it is not followed.
    HeldAsPrimary { term: u32 },
    /// This host's replica follows node `node`'s history of `term`, and a
    /// lower node offers another of the same term (the loser of a
    /// partition whose two sides promoted at once): it is not followed.
    OtherHistory { term: u32, node: u32 },
}

impl fmt::Display for ReplicationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicationError::Io(e) => write!(f, "connection: {e}"),
            ReplicationError::Wire(e) => write!(f, "bad message from the peer: {e}"),
            ReplicationError::WrongLink(l) => write!(f, "message for unknown link {l}"),
            ReplicationError::Log(e) => write!(f, "reading the log: {e}"),
            ReplicationError::Open(e) => write!(f, "opening the replica: {e}"),
            ReplicationError::Apply(e) => write!(f, "applying a frame: {e}"),
            ReplicationError::Install(e) => write!(f, "installing a snapshot: {e}"),
            ReplicationError::WrongCheckpoint(n) => {
                write!(f, "the peer's link is for another checkpoint ({n})")
            }
            ReplicationError::Unauthenticated(why) => write!(f, "peer refused: {why}"),
            ReplicationError::NoOffer(why) => write!(f, "no checkpoint offered: {why}"),
            ReplicationError::HeldAsPrimary { term } => write!(
                f,
                "this host holds the checkpoint as a primary (term {term}), not as a replica"
            ),
            ReplicationError::OtherHistory { term, node } => write!(
                f,
                "this host's replica follows node {node}'s history of term {term}; a lower \
                 node's history of the same term is not followed"
            ),
        }
    }
}

impl std::error::Error for ReplicationError {}

impl From<io::Error> for ReplicationError {
    fn from(e: io::Error) -> Self {
        ReplicationError::Io(e)
    }
}

impl From<WireError> for ReplicationError {
    fn from(e: WireError) -> Self {
        ReplicationError::Wire(e)
    }
}

/// Nanoseconds since the link started (the state machines' clock).
struct Clock(Instant);

impl Clock {
    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// The next message, `Ok(None)` after `poll`, or the peer's close (`Err(None)`:
/// the end of the stream, or a reset, which is how a peer's close looks when
/// it had not read all this end sent, as a link stopping between two
/// acknowledgements).
fn recv<C: Connection>(
    conn: &mut C,
    poll: Duration,
) -> Result<Option<&[u8]>, Option<ReplicationError>> {
    match conn.recv(poll) {
        Ok(m) => Ok(m),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            ) =>
        {
            Err(None)
        }
        Err(e) => Err(Some(e.into())),
    }
}

/// Decodes a message of a running link: a malformed one, one for another
/// link, or an authentication message (those come only first) is an error.
fn link_message<'b>(
    bytes: &'b [u8],
    opts: &LinkOptions,
) -> Result<WireMessage<'b>, ReplicationError> {
    let m = decode(bytes, opts)?;
    if matches!(m.message, Message::Hello { .. } | Message::Proof { .. }) {
        return Err(stray_auth(opts));
    }
    if m.link != LINK {
        return Err(ReplicationError::WrongLink(m.link));
    }
    Ok(m)
}

/// Decodes a message (untrusted bytes); a sealed one on a plain link says
/// what is wrong.
fn decode<'b>(bytes: &'b [u8], opts: &LinkOptions) -> Result<WireMessage<'b>, ReplicationError> {
    if bytes.get(8) == Some(&frame::SEALED_KIND) {
        return Err(ReplicationError::Unauthenticated(
            "the peer encrypts its links and this end does not (encryption must be on at both ends)",
        ));
    }
    Ok(decode_message(bytes, opts.max_message)?.0)
}

/// Encodes `m` and sends it (with `frames` after it, for a `Frames` message).
fn send<C: Connection>(
    conn: &mut C,
    m: &Message,
    name: &[u8],
    frames: &[u8],
) -> Result<(), ReplicationError> {
    send_within(conn, m, name, frames, ckpt_transport::SEND_TIMEOUT)
}

/// [`send`], giving up once the peer has taken no bytes for `limit`.
fn send_within<C: Connection>(
    conn: &mut C,
    m: &Message,
    name: &[u8],
    frames: &[u8],
    limit: Duration,
) -> Result<(), ReplicationError> {
    let mut head = [0u8; MESSAGE_HEADER_BYTES + frame::WIRE_NAME_BYTES_MAX];
    let n = encode_message(LINK, m, name, frames, &mut head)?;
    conn.send_within(&[&head[..n], frames], limit, None)?;
    Ok(())
}

/// Tells the peer this end closes the link for `reason` before the link
/// ends ([`Message::Closing`]), unless the peer went silent (it would not
/// read it). Best effort: the link ends either way ([`linger`] follows); a
/// peer that takes no bytes for [`CLOSING_LINGER`] (it stopped reading, and
/// this end's socket buffer is full) does not hold the close longer.
fn say_closing<C: Connection>(conn: &mut C, reason: CloseReason) {
    if reason != CloseReason::Silent {
        let closing = Message::Closing { reason };
        let _ = send_within(conn, &closing, &[], &[], CLOSING_LINGER);
    }
}

/// How long an end that said why it closes a link waits for the peer to
/// close its own end.
const CLOSING_LINGER: Duration = Duration::from_millis(200);

/// After [`say_closing`]: reads and drops what the peer still sends until
/// it closes its end (it does once it reads the reason), at most
/// [`CLOSING_LINGER`]. A socket closed with bytes unread sends a reset,
/// which may discard the reason before the peer has read it.
fn linger<C: Connection>(conn: &mut C, reason: CloseReason) {
    if reason == CloseReason::Silent {
        return;
    }
    let until = Instant::now() + CLOSING_LINGER;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || conn.recv(left).is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// Authentication

/// Which end of a link: part of what each end's proof covers, so that one
/// end's answer is never valid as the other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Shipper,
    Follower,
}

impl Side {
    fn byte(self) -> u8 {
        match self {
            Side::Shipper => b'S',
            Side::Follower => b'F',
        }
    }

    fn other(self) -> Side {
        match self {
            Side::Shipper => Side::Follower,
            Side::Follower => Side::Shipper,
        }
    }
}

/// How long the two ends may take to authenticate each other, and then the
/// shipper to offer its checkpoint.
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest message a link accepts before its start is over (a hello,
/// a proof, an offer or a subscription with the longest name).
const HANDSHAKE_BYTES_MAX: usize = 4096;

/// What `side` answers to the challenge `challenge` after sending its own,
/// `own`: HMAC-SHA256 under the key of a label, the side, and both
/// challenges (so that an answer cannot be replayed on another connection,
/// nor reflected back).
fn proof(key: &ClusterKey, side: Side, challenge: &[u8], own: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes any key length");
    mac.update(b"ckpt replication link v1");
    mac.update(&[side.byte()]);
    mac.update(challenge);
    mac.update(own);
    mac
}

/// The next whole message within `deadline`; `late` if none came.
fn recv_by<'c, C: Connection>(
    conn: &'c mut C,
    deadline: Instant,
    opts: &LinkOptions,
    late: ReplicationError,
) -> Result<WireMessage<'c>, ReplicationError> {
    let wait = deadline.saturating_duration_since(Instant::now());
    match conn.recv(wait) {
        Ok(Some(bytes)) => decode(bytes, opts),
        Ok(None) => Err(late),
        Err(e) => Err(e.into()),
    }
}

/// Both ends prove they hold the cluster key without sending it: each sends
/// a fresh random challenge, answers the other's with a MAC under the key
/// (`proof`), and checks the other's answer (in constant time). Runs first
/// on a connection whose ends have a key.
fn authenticate<C: Connection>(
    conn: &mut C,
    key: &ClusterKey,
    side: Side,
    opts: &LinkOptions,
    deadline: Instant,
) -> Result<SessionKeys, ReplicationError> {
    let mut own = [0u8; AUTH_BYTES];
    getrandom::fill(&mut own).map_err(|e| ReplicationError::Io(io::Error::other(e.to_string())))?;
    send(conn, &Message::Hello { nonce: own }, &[], &[])?;
    let late = || ReplicationError::Unauthenticated("no answer to the challenge in time");
    let first = match recv_by(conn, deadline, opts, late()) {
        Err(ReplicationError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(ReplicationError::Unauthenticated(
                "the peer did not authenticate: it closed the connection (it has no cluster key?)",
            ))
        }
        first => first?,
    };
    let challenge = match first.message {
        Message::Hello { nonce } => nonce,
        _ => {
            return Err(ReplicationError::Unauthenticated(
                "the peer did not authenticate (it has no cluster key?)",
            ))
        }
    };
    if challenge == own {
        return Err(ReplicationError::Unauthenticated(
            "the peer sent this end's challenge back",
        ));
    }
    let answer = proof(key, side, &challenge, &own).finalize().into_bytes();
    send(conn, &Message::Proof { mac: answer.into() }, &[], &[])?;
    let theirs = match recv_by(conn, deadline, opts, late())?.message {
        Message::Proof { mac } => mac,
        _ => return Err(ReplicationError::Unauthenticated("the peer sent no answer")),
    };
    proof(key, side.other(), &own, &challenge)
        .verify_slice(&theirs)
        .map_err(|_| ReplicationError::Unauthenticated("wrong cluster key"))?;
    opts.report(LinkEvent::Authenticated);
    // The session keys, one per direction, from the key and both
    // challenges (the shipper's first), bound to this connection.
    let (shipper, follower) = match side {
        Side::Shipper => (&own, &challenge),
        Side::Follower => (&challenge, &own),
    };
    let direction = |from: Side| -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes any key length");
        mac.update(b"ckpt link session key v1");
        mac.update(&[from.byte()]);
        mac.update(shipper);
        mac.update(follower);
        mac.finalize().into_bytes().into()
    };
    Ok(SessionKeys {
        send: direction(side),
        receive: direction(side.other()),
    })
}

/// The connection a link runs on, from its first message: a second handle
/// on `conn` (which is not read from again), authenticated if this end has
/// a key, and sealed with the session keys if `opts.encrypt`.
fn authenticate_if_keyed<'s, C: Connection>(
    conn: &mut C,
    side: Side,
    opts: &LinkOptions,
    deadline: Instant,
) -> Result<Wire<'s, C>, ReplicationError> {
    let mut wire = Wire::plain(conn.try_clone()?, opts.max_message);
    // Until the link's start is over (authentication, the offer), messages
    // are small: an unauthenticated peer cannot make this end hold more.
    wire.set_max_message(HANDSHAKE_BYTES_MAX);
    let keys = match &opts.key {
        Some(key) => Some(authenticate(&mut wire, key, side, opts, deadline)?),
        None => None,
    };
    if opts.encrypt {
        let keys = keys.ok_or(ReplicationError::Unauthenticated(
            "encryption needs a cluster key",
        ))?;
        wire.seal(keys);
    }
    Ok(wire)
}

/// The error for an authentication message once the link runs.
fn stray_auth(opts: &LinkOptions) -> ReplicationError {
    ReplicationError::Unauthenticated(match opts.key {
        None => "the peer requires a cluster key and this end has none",
        Some(_) => "the peer authenticated again on a running link",
    })
}

// ---------------------------------------------------------------------------
// The primary's end

/// One indexed frame of the ring.
#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    position: u64,
    term: u32,
    /// The frame's size in the ring (at most a quarter of the ring).
    bytes: u32,
    /// `FLAG_MORE`: the next frame is of the same call.
    more: bool,
}

/// The primary's log as the shipper sees it: the frames still in the ring,
/// by sequence number.
struct RingIndex<'a> {
    segment: &'a Segment,
    consumer: Consumer<'a>,
    entries: VecDeque<Entry>,
}

impl<'a> RingIndex<'a> {
    fn new(segment: &'a Segment) -> RingIndex<'a> {
        // From the start of the ring's current lap: a frame never straddles
        // the ring's end (padding fills it), so every lap begins with a
        // frame, and the current lap's start is still in the ring. (Before
        // the first wrap: the ring's first frame, at position 0: the
        // creation frame, or for a replica rebuilt from a snapshot the
        // first frame after it.)
        let capacity = segment.geometry().log_bytes;
        let lap = segment.log_tail() / capacity * capacity;
        let consumer = segment.consumer(Some(lap));
        RingIndex {
            segment,
            consumer,
            entries: VecDeque::new(),
        }
    }

    /// Indexes the frames published since, and forgets those the ring lost.
    fn refresh(&mut self) -> Result<(), ReplicationError> {
        let entries = &mut self.entries;
        let known = entries.len();
        match self.consumer.skim(|position, h| {
            entries.push_back(Entry {
                seq: h.seq,
                position,
                term: h.term,
                bytes: h.frame_bytes() as u32,
                more: h.flags & FLAG_MORE != 0,
            })
        }) {
            Ok(()) => {}
            Err(LogError::Lagged { .. }) => {
                // The writer overtook the index: start over from now.
                self.entries.clear();
                self.consumer = self.segment.consumer(None);
            }
            Err(e) => {
                self.entries.truncate(known);
                return Err(ReplicationError::Log(e));
            }
        }
        let tail = self.segment.log_tail();
        let capacity = self.segment.geometry().log_bytes;
        while self
            .entries
            .front()
            .is_some_and(|e| e.position + capacity <= tail)
        {
            self.entries.pop_front();
        }
        Ok(())
    }

    fn entry(&self, seq: u64) -> Option<Entry> {
        let first = self.entries.front()?.seq;
        self.entries.get(seq.checked_sub(first)? as usize).copied()
    }
}

impl LogView for RingIndex<'_> {
    fn incarnation(&self) -> u64 {
        self.segment.incarnation()
    }
    fn term(&self) -> u32 {
        self.segment.current_term()
    }
    fn tail(&self) -> u64 {
        // Nothing indexed (the ring wrapped before the link began): the log
        // ends where the segment says, and none of it can be shipped.
        self.entries
            .back()
            .map_or_else(|| self.segment.last_seq(), |e| e.seq)
    }
    fn oldest(&self) -> u64 {
        self.entries.front().map_or(self.tail() + 1, |e| e.seq)
    }
    fn term_at(&self, seq: u64) -> Option<u32> {
        self.entry(seq).map(|e| e.term)
    }
    fn continues(&self, seq: u64) -> bool {
        self.entry(seq).is_some_and(|e| e.more)
    }
}

/// Ships the checkpoint `primary` (a segment of this host) to the replica
/// on `node` at the other end of `conn`, until the link ends or `stop` is
/// set: offers it (as this host's node, `primary.config().node_id`; as
/// `placed` on that node: see [`Message::Offer`]), then answers the
/// replica's subscription. From the connection on (placed) or its
/// subscription on (not placed), the replica is registered on the primary
/// and its acknowledgements are recorded for synchronous writers (a
/// follower that parks the link holds no replica: writers do not wait for
/// it, and the link ends as soon as the checkpoint is unlinked). One thread waits on the log (the futex
/// standbys wait on) and ships new frames at once; another waits on the
/// connection and handles what the replica sends.
pub fn ship<C: Connection>(
    primary: &Segment,
    node: u32,
    placed: bool,
    conn: &mut C,
    opts: &LinkOptions,
    stop: &AtomicBool,
) -> Result<Ended, ReplicationError> {
    let mut wire = authenticate_if_keyed(conn, Side::Shipper, opts, Instant::now() + AUTH_TIMEOUT)?;
    // Authenticated (the subscription, acknowledgements and heartbeats that
    // come are small, but a peer's are now trusted to the full limit).
    wire.set_max_message(opts.max_message);
    // A send blocked on a peer that takes no bytes (while its heartbeats
    // still come) would hold a stop for the send's 10 s: stopping cancels it.
    wire.cancel_sends_on(stop);
    let conn = &mut wire;
    // The term first, then the role: a copy demoted since (a replica of a
    // newer primary now) shows that primary's term once it applies its
    // frames, and its role says replica before that (the Acquire load of the
    // term pairs with the applying writer's Release store, which follows its
    // demotion). Only a primary offers, with its own term: a replica that
    // offered its primary's term as its own would depose that primary where
    // the terms tie.
    let term = primary.current_term();
    if primary.is_replica() {
        return Ok(Ended::Deposed { term });
    }
    let offer = Message::Offer {
        incarnation: primary.incarnation(),
        term,
        node: primary.config().node_id,
        placed,
        written: primary.is_written(),
    };
    send(conn, &offer, primary.name().as_bytes(), &[])?;
    // Two threads: this one wakes on the log (a new frame is shipped at
    // once), the other on the socket (an acknowledgement releases writers
    // at once). They share the link's state under a lock. The handle that
    // received the handshake goes on receiving (a receive it left in flight,
    // as a multishot one, stays its own); a second one sends.
    let mut tx = conn.try_clone()?;
    let rx = conn;
    let clock = Clock(Instant::now());
    let link = Mutex::new(ShipLink {
        shipper: Shipper::new(opts.link, clock.now()),
        index: RingIndex::new(primary),
        frames: Vec::new(),
        conn: &mut tx,
    });
    let ended: Mutex<Option<Result<Ended, ReplicationError>>> = Mutex::new(None);
    let done = AtomicBool::new(false);
    let finish = |r: Result<Ended, ReplicationError>| {
        let r = stopped_if_failed(r, stop);
        let mut e = ended.lock().unwrap_or_else(|p| p.into_inner());
        e.get_or_insert(r);
        done.store(true, Ordering::Release);
    };
    // Registered at the connection if the replica is placed there, else at
    // its first subscription; unregistered however
    // the link ends, a panic of one of its threads included: a slot left
    // behind would keep writers waiting and the checkpoint open on the
    // replica's behalf.
    let registered: OnceLock<Option<Registered>> = OnceLock::new();
    // The follower parked the link (its first message was a heartbeat, not
    // a subscription): it holds no replica.
    let parked = AtomicBool::new(false);
    opts.count(|c| c.parked.store(false, Ordering::Relaxed));
    let register = || Registered::new(primary, node);
    if placed {
        // A replica placed there subscribes at once: synchronous writers
        // wait for it from the connection on, as they would for a link
        // that never dropped.
        registered.get_or_init(register);
    }
    // The checkpoint is unlinked and the replica acknowledged the unlink (or
    // the link is parked: there is no replica to unlink).
    let unlinked = || {
        primary.is_unlinked()
            && (parked.load(Ordering::Relaxed) && registered.get().is_none()
                || primary.acknowledged(Need::Node(node), primary.last_seq()))
    };
    // A synchronous writer waits for this replica's acknowledgement and
    // then writes again: the shipper spins for the next frame before it
    // sleeps (a futex wake-up costs as much as the round trip).
    let spin = if primary.attributes().flags.mode().is_asynchronous() {
        Duration::ZERO
    } else {
        opts.sync_spin
    };
    // The receiving thread logs in the caller's span (the link's).
    let span = tracing::Span::current();
    // Bytes of forwarded changes queued for the forwarder thread (bounded
    // with their count: more are answered busy).
    let queued = AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            let _in = span.enter();
            // Changes the follower's node forwards are made on a thread of
            // their own, started at the first: a synchronous one waits for
            // the replicas' acknowledgements, which this thread receives.
            let mut forwarder: Option<SyncSender<(u64, u64, Vec<u8>)>> = None;
            // The silence limit, kept here too: the sending thread, which
            // applies it (`Shipper::poll`), cannot while a send waits for a
            // peer that stopped taking bytes (a stopped process, a cut
            // link); the send's own limit is 10 s (`SEND_TIMEOUT`). Ending
            // the connection makes that send return.
            let silence = Duration::from_nanos(opts.link.silence_ns);
            let mut heard = Instant::now();
            while !done.load(Ordering::Acquire) && !stop.load(Ordering::Relaxed) {
                let bytes = match recv(rx, RECV_WAIT) {
                    Ok(Some(b)) => {
                        heard = Instant::now();
                        opts.count(|c| note(&c.heard, true));
                        b
                    }
                    Ok(None) if heard.elapsed() > silence => {
                        // The link's end first: the send that the shutdown
                        // fails must not be taken for the reason.
                        finish(Ok(Ended::Closed(CloseReason::Silent)));
                        // (An error: the sending thread's ends the link too.)
                        let _ = rx.shutdown();
                        return;
                    }
                    Ok(None) => continue,
                    Err(None) if unlinked() => return finish(Ok(Ended::Unlinked)),
                    Err(None) => return finish(Ok(Ended::PeerClosed)),
                    Err(Some(e)) => return finish(Err(e)),
                };
                let m = match link_message(bytes, opts) {
                    Ok(m) => m,
                    Err(e) => return finish(Err(e)),
                };
                if let Message::Closing { reason } = m.message {
                    return finish(Ok(Ended::ClosedByPeer(reason)));
                }
                if let Message::Ack { openers, .. } = m.message {
                    // The replica's host's openers keep the checkpoint
                    // from its retention running out here.
                    primary.set_remote_openers(node, openers);
                }
                if let Message::UnlinkRequest { incarnation } = m.message {
                    let code = unlink_asked(primary, incarnation);
                    let mut guard = link.lock().unwrap_or_else(|p| p.into_inner());
                    let answer = Message::UnlinkAnswer { code };
                    if let Err(e) = send(guard.conn, &answer, &[], &[]) {
                        return finish(Err(e));
                    }
                    continue;
                }
                if let Message::Forward { incarnation, ask } = m.message {
                    let queued = &queued;
                    let to = forwarder.get_or_insert_with(|| {
                        let (tx, rx) = sync_channel(crate::forward::FORWARDS_QUEUED_MAX);
                        let (link, span) = (&link, span.clone());
                        let over = || done.load(Ordering::Acquire) || stop.load(Ordering::Relaxed);
                        s.spawn(move || {
                            let _in = span.enter();
                            if let Err(e) = forward_worker(primary, link, rx, queued, &over) {
                                finish(Err(e));
                            }
                        });
                        tx
                    });
                    let n = m.forward.len();
                    let room = queued.load(Ordering::Relaxed) + n <= FORWARD_QUEUED_BYTES_MAX;
                    let sent = room && to.try_send((incarnation, ask, m.forward.to_vec())).is_ok();
                    if sent {
                        queued.fetch_add(n, Ordering::Relaxed);
                    } else {
                        let reply = crate::forward::untried(crate::forward::RESULT_BUSY);
                        let mut guard = link.lock().unwrap_or_else(|p| p.into_inner());
                        if let Err(e) = send_reply(guard.conn, ask, &reply) {
                            return finish(Err(e));
                        }
                    }
                    continue;
                }
                if m.message == Message::Heartbeat && registered.get().is_none() {
                    parked.store(true, Ordering::Relaxed);
                    opts.count(|c| c.parked.store(true, Ordering::Relaxed));
                }
                if matches!(m.message, Message::Subscribe { .. }) {
                    opts.count(|c| c.parked.store(false, Ordering::Relaxed));
                    if m.name != primary.name().as_bytes() {
                        let asked = String::from_utf8_lossy(m.name).into_owned();
                        return finish(Err(ReplicationError::WrongCheckpoint(asked)));
                    }
                    registered.get_or_init(register);
                }
                let mut guard = link.lock().unwrap_or_else(|p| p.into_inner());
                let l = &mut *guard;
                // The index as the log is now (a subscription may come before
                // the other thread first looked).
                if let Err(e) = l.index.refresh() {
                    return finish(Err(e));
                }
                let out = l.shipper.received(m.message, &l.index, clock.now());
                if let Some(r) = l.run(out, primary, (node, stop), opts, &clock) {
                    return finish(r);
                }
            }
        });
        while !done.load(Ordering::Acquire) {
            if unlinked() {
                return finish(Ok(Ended::Unlinked));
            }
            if primary.is_replica() {
                // Demoted here: a primary of a newer term is elsewhere.
                let term = primary.current_term();
                return finish(Ok(Ended::Deposed { term }));
            }
            if stop.load(Ordering::Relaxed) {
                return finish(Ok(Ended::Stopped));
            }
            let indexed = {
                let mut guard = link.lock().unwrap_or_else(|p| p.into_inner());
                let l = &mut *guard;
                if let Err(e) = l.index.refresh() {
                    return finish(Err(e));
                }
                opts.count(|c| {
                    LinkStats::raise(&c.primary, l.index.tail());
                    c.term.store(primary.current_term(), Ordering::Relaxed);
                });
                let out = l.shipper.poll(&l.index, clock.now());
                if let Some(r) = l.run(out, primary, (node, stop), opts, &clock) {
                    return finish(r);
                }
                l.index.consumer.position()
            };
            // Until a frame is published after those indexed (or the timers
            // are due).
            primary.consumer(Some(indexed)).wait(opts.poll, spin);
        }
    });
    let result = ended.into_inner().unwrap_or_else(|p| p.into_inner());
    let result = result.unwrap_or(Ok(Ended::Stopped));
    if let Ok(Ended::Closed(reason)) = result {
        linger(rx, reason);
    }
    result
}

/// How a link ended, `r`, unless it was being stopped and failed: then
/// `Stopped`, whatever failed on the way (its stop cancels a send that waits
/// for the peer, `Wire::cancel_sends_on`, and gives up a snapshot half way).
fn stopped_if_failed(
    r: Result<Ended, ReplicationError>,
    stop: &AtomicBool,
) -> Result<Ended, ReplicationError> {
    match r {
        Err(_) if stop.load(Ordering::Relaxed) => Ok(Ended::Stopped),
        r => r,
    }
}

/// At a follower: every unlink asked through ask `through` is answered
/// with SA error `code`.
fn answer_unlinks(opts: &LinkOptions, through: u64, code: u32) {
    opts.count(|c| {
        let word = (through & 0xFFFF_FFFF) << 32 | u64::from(code);
        // SYNC POINT: Release pairs with the Acquire load in
        // `unlink_answered`.
        c.unlink_answer.store(word, Ordering::Release);
    });
}

/// Bytes of forwarded changes a shipping link holds for its forwarder at
/// most (besides their count, [`crate::forward::FORWARDS_QUEUED_MAX`]).
const FORWARD_QUEUED_BYTES_MAX: usize = 64 << 20;

/// The primary's side of the follower's [`Message::Forward`]s, on a thread
/// of its own: each change made ([`crate::forward::execute`]) through a
/// [`crate::Checkpoint`] of the primary, opened at the first, and answered
/// in order. Ends when the link's receiving thread drops `requests`.
fn forward_worker<C: Connection>(
    primary: &Segment,
    link: &Mutex<ShipLink<'_, '_, C>>,
    requests: Receiver<(u64, u64, Vec<u8>)>,
    queued: &AtomicUsize,
    over: &dyn Fn() -> bool,
) -> Result<(), ReplicationError> {
    let mut checkpoint: Option<crate::Checkpoint> = None;
    for (incarnation, ask, bytes) in requests {
        queued.fetch_sub(bytes.len(), Ordering::Relaxed);
        if over() {
            // The link ended: its follower counts what it sent as timed
            // out, and nothing more is made for it (a synchronous change
            // would wait for a replica that is gone).
            continue;
        }
        let reply = forward_asked(primary, &mut checkpoint, incarnation, &bytes);
        let mut guard = link.lock().unwrap_or_else(|p| p.into_inner());
        send_reply(guard.conn, ask, &reply)?;
    }
    Ok(())
}

/// Makes one forwarded change on `primary` if it is still the primary of
/// `incarnation` (refused otherwise).
fn forward_asked(
    primary: &Segment,
    checkpoint: &mut Option<crate::Checkpoint>,
    incarnation: u64,
    bytes: &[u8],
) -> crate::forward::Reply {
    use crate::forward::{untried, RESULT_NOT_PRIMARY, RESULT_REFUSED};
    let refused = untried(RESULT_REFUSED);
    // Checked when the message was decoded.
    let Ok(request) = ckpt_core::frame::ForwardRequest::decode(bytes) else {
        return refused;
    };
    let theirs = primary.incarnation();
    if incarnation != theirs || request.incarnation != theirs || primary.is_unlinked() {
        return refused;
    }
    if primary.is_replica() {
        return untried(RESULT_NOT_PRIMARY);
    }
    if checkpoint.is_none() {
        let rw = ckpt_core::OpenFlags::READ | ckpt_core::OpenFlags::WRITE;
        // By name: the file may be another incarnation's by now.
        match Segment::open_for_link(primary.config(), primary.name(), rw) {
            Ok(s) if s.incarnation() == incarnation => {
                *checkpoint = Some(crate::Checkpoint::forwarded_to(s));
            }
            _ => return refused,
        }
    }
    // The same file as `primary` (the same incarnation), whose role and
    // unlink were looked at above; the change's own checks come next.
    let c = checkpoint.as_ref().expect("opened above");
    crate::forward::execute(c, &request)
}

/// Sends the answer to forwarded change `ask`.
fn send_reply<C: Connection>(
    conn: &mut C,
    ask: u64,
    reply: &crate::forward::Reply,
) -> Result<(), ReplicationError> {
    let mut body = Vec::new();
    ckpt_core::frame::encode_forward_id(&reply.id, &mut body);
    let m = Message::ForwardAnswer {
        ask,
        seq: reply.seq,
        result: reply.result,
        index: reply.index,
    };
    send(conn, &m, &[], &body)
}

/// The primary's side of a follower's [`Message::UnlinkRequest`]: unlinks
/// `primary` as `saCkptCheckpointUnlink` on its host would (a logged
/// mutation the replicas apply), if it is still of `incarnation`. Returns
/// the SA error code.
fn unlink_asked(primary: &Segment, incarnation: u64) -> u32 {
    let result = if incarnation != primary.incarnation() || primary.is_unlinked() {
        Err(UnlinkError::NotExist)
    } else {
        ckpt_shm::dir::unlink(primary.config(), primary.name())
    };
    tracing::info!(checkpoint = %primary.name(), ?result, "unlinked as a peer asked");
    result.map_or_else(|e| e.ais().code(), |()| SA_AIS_OK)
}

/// A replica registered on its primary for the life of a shipping link
/// ([`Segment::link_replica`]: counted, so that overlapping links to one
/// node share its slot until the last ends).
struct Registered<'a> {
    primary: &'a Segment,
    node: u32,
}

impl<'a> Registered<'a> {
    /// Registers `node` on `primary`; `None` if its slots are full.
    fn new(primary: &'a Segment, node: u32) -> Option<Registered<'a>> {
        primary.link_replica(node).ok()?;
        Some(Registered { primary, node })
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.primary.unlink_replica(self.node);
    }
}

/// How often an idle follower counts who has its replica open.
const OPENERS_EVERY: Duration = Duration::from_millis(100);

/// How long the receiving thread waits for a message before it looks at
/// `stop` again.
const RECV_WAIT: Duration = Duration::from_millis(20);

/// A shipping link's state, shared by its two threads.
struct ShipLink<'a, 'c, C> {
    shipper: Shipper,
    index: RingIndex<'a>,
    frames: Vec<u8>,
    conn: &'c mut C,
}

impl<C: Connection> ShipLink<'_, '_, C> {
    /// Carries out the shipper's actions; `Some` when the link ends (or
    /// `stop` was set during a snapshot).
    fn run(
        &mut self,
        out: Actions<ShipAction>,
        primary: &Segment,
        (node, stop): (u32, &AtomicBool),
        opts: &LinkOptions,
        clock: &Clock,
    ) -> Option<Result<Ended, ReplicationError>> {
        let mut pending = Some(out);
        while let Some(actions) = pending.take() {
            for a in actions {
                let step = match a {
                    ShipAction::Send(m) => send(self.conn, &m, &[], &[]),
                    ShipAction::Ship {
                        first,
                        last,
                        prev_term,
                    } => match read_frames(
                        &self.index,
                        first,
                        last,
                        opts.batch_bytes,
                        &mut self.frames,
                    ) {
                        Ok(Some(sent)) => {
                            // A batch cut at its byte limit: the rest next.
                            self.shipper.shipped_through(sent);
                            opts.count(|c| {
                                c.frames.fetch_add(sent - first + 1, Ordering::Relaxed);
                            });
                            let behind = primary.last_seq().saturating_sub(sent);
                            let m = Message::Frames {
                                first,
                                last: sent,
                                prev_term,
                                behind: behind.min(u64::from(u32::MAX)) as u32,
                            };
                            send(self.conn, &m, &[], &self.frames)
                        }
                        Ok(None) => {
                            pending = Some(self.shipper.lapped(clock.now()));
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                    ShipAction::Snapshot => match self.send_snapshot(primary, opts, stop) {
                        Ok(Some((start, settles))) => {
                            let now = clock.now();
                            let sent = self.shipper.snapshot_sent(start, settles, &self.index, now);
                            pending = Some(sent);
                            Ok(())
                        }
                        Ok(None) => {
                            pending = Some(self.shipper.lapped(clock.now()));
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                    ShipAction::Acked { seq } => {
                        primary.acknowledge(node, seq);
                        opts.count(|c| LinkStats::raise(&c.held, seq));
                        Ok(())
                    }
                    ShipAction::Deposed { term } => return Some(Ok(Ended::Deposed { term })),
                    ShipAction::Close(r) => {
                        say_closing(self.conn, r);
                        return Some(Ok(Ended::Closed(r)));
                    }
                };
                // (A failure while stopping ends `Stopped`: `finish`.)
                if let Err(e) = step {
                    return Some(Err(e));
                }
            }
        }
        None
    }

    /// Sends a fuzzy snapshot of `primary`: its creation frame, its sections
    /// as records in messages of about `opts.batch_bytes` (a section larger
    /// than that in pieces), and where it stands. Returns the position it
    /// holds through and its catch-up horizon (it holds no later frame), or
    /// `None` if the writer lapped the ring meanwhile (the
    /// replica drops what it got when the next snapshot begins).
    fn send_snapshot(
        &mut self,
        primary: &Segment,
        opts: &LinkOptions,
        stop: &AtomicBool,
    ) -> Result<Option<(Position, u64)>, ReplicationError> {
        let (header, payload) = primary.creation_frame(None);
        let name = primary.name().as_bytes();
        self.frames.clear();
        self.frames.resize(header.frame_bytes(), 0);
        frame::encode(&header, name, &payload, &mut self.frames)
            .map_err(|_| ReplicationError::Log(LogError::Corrupt { at: 0 }))?;
        frame::seal(&mut self.frames);
        let begin = Message::Snapshot {
            incarnation: primary.incarnation(),
        };
        send(self.conn, &begin, &[], &self.frames)?;
        // The sections, streamed: one section's copy at a time.
        let (mut records, mut sections) = (0u32, 0u64);
        let mut failed = None;
        let (conn, out) = (&mut *self.conn, &mut self.frames);
        out.clear();
        let copied = primary.snapshot_with(|c| {
            if failed.is_some() {
                return;
            }

            sections += 1;
            // Room for data in a message after the record's header and id.
            let room = opts
                .batch_bytes
                .saturating_sub(frame::record_bytes(c.id.len(), 0))
                .max(4096);
            for record in c.records(room) {
                // A large snapshot over a slow link takes long: the link's
                // stop is looked at between records (and a message's send
                // is bounded by SEND_TIMEOUT).
                if stop.load(Ordering::Relaxed) {
                    let stopped = io::Error::new(io::ErrorKind::Interrupted, "stopped");
                    failed = Some(ReplicationError::Io(stopped));
                    return;
                }
                frame::encode_record(&record, out);
                records += 1;
                if out.len() >= opts.batch_bytes {
                    let part = Message::SnapshotPart { records };
                    if let Err(e) = send(conn, &part, &[], out) {
                        failed = Some(e);
                        return;
                    }
                    out.clear();
                    records = 0;
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        let head = match copied {
            Ok(head) => head,
            Err(ReadFail::Busy | ReadFail::Gone) => return Ok(None),
            Err(ReadFail::Corrupt) => {
                return Err(ReplicationError::Log(LogError::Corrupt { at: 0 }))
            }
        };
        if records > 0 {
            send(
                self.conn,
                &Message::SnapshotPart { records },
                &[],
                &self.frames,
            )?;
        }
        // The copy holds every frame before the one at its resume point;
        // the term of the last of those, where the index still has it, or
        // the term the copy holds (a term only this stream relies on: both
        // ends check the frames that follow against it).
        self.index.refresh()?;
        let seq = head.resume_seq - 1;
        let term = match self.index.term_at(seq) {
            _ if seq == 0 => 0,
            Some(t) => t,
            None => head.active_replica.term,
        };
        let start = Position { seq, term };
        let end = Message::SnapshotEnd { start, sections };
        let mut tail = head.tail();
        // The horizon the replica's copy waits for before it is put in
        // place: exact, so that an idle writer does not keep it waiting
        // for a frame that is not coming.
        tail.end_seq = primary.settled_end(tail.end_seq).max(start.seq);
        send(self.conn, &end, &[], &tail.to_bytes())?;
        opts.report(LinkEvent::SnapshotSent {
            start: start.seq,
            sections,
        });
        opts.count(|c| {
            c.snapshots.fetch_add(1, Ordering::Relaxed);
        });
        Ok(Some((start, tail.end_seq)))
    }
}

/// Copies frames `first..=last` out of the ring into `out` as they are
/// (no re-encoding, unsealed: the message's checksum covers them), up to
/// `batch_bytes` (at least one frame). Returns the last frame copied, or
/// `None` if the ring no longer holds `first`.
///
/// The index says where each frame lies: the frames are copied as runs of
/// contiguous ring bytes (one run, or two where the ring wraps), not walked
/// frame by frame again; the copy then checks that the writer overran none
/// of them.
fn read_frames(
    index: &RingIndex<'_>,
    first: u64,
    last: u64,
    batch_bytes: usize,
    out: &mut Vec<u8>,
) -> Result<Option<u64>, ReplicationError> {
    out.clear();
    let Some(start) = index.entry(first) else {
        return Ok(None);
    };
    // Through `last`, while under `batch_bytes`.
    let (mut upto, mut taken) = (first, start.bytes as usize);
    while upto < last && taken < batch_bytes {
        let Some(e) = index.entry(upto + 1) else {
            break;
        };
        (upto, taken) = (upto + 1, taken + e.bytes as usize);
    }
    // The frames' runs of contiguous bytes (every entry first..=upto
    // exists); a frame at the ring's start begins a run (frames never
    // straddle the ring's end, runs do not either).
    let capacity = index.segment.geometry().log_bytes;
    let mut next = first;
    let runs = std::iter::from_fn(|| {
        let e = index.entry(next).filter(|_| next <= upto)?;
        let (position, mut bytes) = (e.position, e.bytes as usize);
        next += 1;
        while let Some(f) = index
            .entry(next)
            .filter(|f| next <= upto && f.position == position + bytes as u64)
            .filter(|f| f.position % capacity != 0)
        {
            bytes += f.bytes as usize;
            next += 1;
        }
        Some((position, bytes))
    });
    match index.segment.copy_log_spans(runs, out) {
        Ok(()) if frame::decode_header(out).is_ok_and(|h| h.seq == first) => Ok(Some(upto)),
        Ok(()) => Err(ReplicationError::Log(LogError::Corrupt {
            at: start.position,
        })),
        Err(LogError::Lagged { .. }) => Ok(None),
        Err(e) => Err(ReplicationError::Log(e)),
    }
}

// ---------------------------------------------------------------------------
// The replica's end

/// What a shipper offered at the start of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    /// The checkpoint.
    pub name: CheckpointName,
    /// Its incarnation at the primary.
    pub incarnation: u64,
    /// The primary's term.
    pub term: u32,
    /// The primary's node.
    pub node: u32,
    /// The primary places a replica on this node ([`Message::Offer`]).
    pub placed: bool,
    /// The primary holds more than its creation frame.
    pub written: bool,
}

/// The replica's end of a link's start: authenticates (where this end has a
/// key) and reads the shipper's offer. Returns it with the connection the
/// link runs on (sealed where `opts.encrypt`); [`follow_offered`] follows
/// it there.
pub fn accept_offer<'s, C: Connection>(
    conn: &mut C,
    opts: &LinkOptions,
) -> Result<(Offered, Wire<'s, C>), ReplicationError> {
    // One deadline for the authentication and the offer: a peer that
    // trickles them holds this end's slot for AUTH_TIMEOUT at most.
    let deadline = Instant::now() + AUTH_TIMEOUT;
    let mut wire = authenticate_if_keyed(conn, Side::Follower, opts, deadline)?;
    let late = ReplicationError::NoOffer("none came in time");
    let m = recv_by(&mut wire, deadline, opts, late)?;
    let Message::Offer {
        incarnation,
        term,
        node,
        placed,
        written,
    } = m.message
    else {
        return Err(match m.message {
            Message::Hello { .. } | Message::Proof { .. } => stray_auth(opts),
            _ => ReplicationError::NoOffer("the peer began with another message"),
        });
    };
    if m.link != LINK {
        return Err(ReplicationError::WrongLink(m.link));
    }
    let name = CheckpointName::new(m.name)
        .map_err(|_| ReplicationError::NoOffer("the offered name is not a checkpoint name"))?;
    let offered = Offered {
        name,
        incarnation,
        term,
        node,
        placed,
        written,
    };
    wire.set_max_message(opts.max_message);
    Ok((offered, wire))
}

/// Follows checkpoint `name` from the primary at the other end of `conn`
/// into this host's replica (in `config`'s directory), until the link ends
/// or `stop` is set: [`accept_offer`], the offer must be of `name`, then
/// [`follow_offered`] (wanted at once: the caller asked for this replica).
pub fn follow<C: Connection>(
    config: &Config,
    name: &CheckpointName,
    conn: &mut C,
    opts: &LinkOptions,
    stop: &AtomicBool,
) -> Result<(Ended, Option<Segment>), ReplicationError> {
    let (offered, mut wire) = accept_offer(conn, opts)?;
    if offered.name != *name {
        return Err(ReplicationError::WrongCheckpoint(offered.name.to_string()));
    }
    wire.cancel_sends_on(stop);
    follow_offered(config, &offered, &mut wire, opts, stop, &|| true)
}

/// Follows the checkpoint the shipper at the other end of `conn` offered
/// ([`accept_offer`]) into this host's replica (in `config`'s directory),
/// until the link ends or `stop` is set. Returns the replica's segment with
/// the outcome (if one exists by then). A checkpoint this host holds as a
/// primary of the same incarnation and an older term is demoted to a
/// replica first (the offer's primary deposed it; [`LinkEvent::Demoted`]),
/// and one of another incarnation that the offered one outranks yields to
/// it ([`LinkEvent::Yielded`]); any other primary of that name here is not
/// followed ([`ReplicationError::HeldAsPrimary`]).
///
/// Placement: a checkpoint the offer does not place here
/// ([`Offered::placed`]) and that this host holds no copy of is followed
/// only once `wanted()` says so (a process here opens it); until then the
/// link is parked (heartbeats only; `wanted` is asked at every idle poll).
pub fn follow_offered<C: Connection>(
    config: &Config,
    offered: &Offered,
    conn: &mut C,
    opts: &LinkOptions,
    stop: &AtomicBool,
    wanted: &dyn Fn() -> bool,
) -> Result<(Ended, Option<Segment>), ReplicationError> {
    let name = &offered.name;
    let clock = Clock(Instant::now());
    let mut replica = local_replica(config, offered, opts)?;
    if let Some(r) = &replica {
        let holds = held(r);
        opts.count(|c| c.hold(holds));
    }
    let mut follower = follower_of(replica.as_ref(), offered, opts);
    let parks = replica.is_none() && !offered.placed && !wanted();
    let first = if parks {
        opts.count(|c| c.parked.store(true, Ordering::Relaxed));
        follower.park(clock.now())
    } else {
        follower.connected(clock.now())
    };
    let mut subscribed = false;
    let mut busy = false;
    let result = (|| -> Result<Ended, ReplicationError> {
        // Received on `conn`, sent on a clone: the frames or records of the
        // last message stay in `conn`'s receive buffer (not copied out) until
        // its actions are done, sends included.
        let mut tx = conn.try_clone()?;
        let mut carried: &[u8] = &[];
        let mut tail: Option<SnapshotTail> = None;
        let mut rebuild = Rebuild::default();
        // The primary's unlink reached a staged copy, with no replica here.
        let mut gone = false;
        let mut pending = Some(first);
        let mut counted = Instant::now();
        // Unlink asks sent to the primary, and the requests it has yet to
        // answer (each by the number of asks it answers).
        // Asks made while no link ran are sent by this one.
        let mut unlinks_sent = opts
            .stats
            .as_ref()
            .map_or(0, |c| c.unlink_answer.load(Ordering::Acquire) >> 32);
        let mut unlinks_waiting: VecDeque<u64> = VecDeque::new();
        loop {
            while let Some(actions) = pending.take() {
                for a in actions {
                    match a {
                        FollowAction::Send(m) => {
                            let name = if matches!(m, Message::Subscribe { .. }) {
                                subscribed = true;
                                name.as_bytes()
                            } else {
                                &[]
                            };
                            send(&mut tx, &m, name, &[])?;
                        }
                        FollowAction::Apply { first, last, after } => {
                            let applied = apply(
                                (config, name),
                                &mut replica,
                                rebuild.target(),
                                carried,
                                (first, last, after),
                            );
                            let target = rebuild.target().or(replica.as_ref());
                            let next = match applied {
                                Ok(()) => {
                                    let holds = held(target.expect("frames applied to a replica"));
                                    opts.count(|c| {
                                        c.hold(holds);
                                        c.frames.fetch_add(last - first + 1, Ordering::Relaxed);
                                    });
                                    follower.applied(holds, clock.now())
                                }
                                Err(Refused::Protocol(why)) => {
                                    if let Some(r) = target {
                                        follower.applied(held(r), clock.now());
                                    }
                                    follower.refused(why, clock.now())
                                }
                                Err(Refused::Fatal(e)) => return Err(e),
                            };
                            gone |= rebuild.settle(&mut replica, opts)?;
                            pending = Some(next);
                        }
                        FollowAction::InstallBegin { .. } => {
                            opts.count(|c| note(&c.installing, true));
                            rebuild.drop_staged(replica.as_ref(), &mut follower);
                            rebuild.begin(config, name, carried)?;
                        }
                        FollowAction::InstallPart => rebuild.part(carried, opts)?,
                        FollowAction::InstallEnd { start, sections } => {
                            // (Still `installing` until the primary's next
                            // frames or heartbeat say how far it got.)
                            let now = clock.now();
                            pending = Some(if rebuild.end(start, sections, tail, opts)? {
                                opts.count(|c| c.hold(start));
                                gone |= rebuild.settle(&mut replica, opts)?;
                                follower.installed(start, now)
                            } else {
                                follower.install_failed(now)
                            });
                        }
                        FollowAction::InstallDrop => {
                            opts.count(|c| note(&c.installing, false));
                            rebuild.drop_copy();
                        }
                        FollowAction::Close(r) => {
                            say_closing(&mut tx, r);
                            return Ok(Ended::Closed(r));
                        }
                    }
                }
            }
            if gone || replica.as_ref().is_some_and(|r| r.is_unlinked()) {
                // Applied and acknowledged (the actions above). The
                // primary's unlink frame may come before its answer to an
                // unlink asked here, which is then not read: the frame
                // answers it.
                if let Some(&through) = unlinks_waiting.back() {
                    answer_unlinks(opts, through, SA_AIS_OK);
                }
                return Ok(Ended::Unlinked);
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(Ended::Stopped);
            }
            if let Some(stats) = &opts.stats {
                let asked = stats.unlinks_asked.load(Ordering::Relaxed);
                if asked > unlinks_sent {
                    // The primary answers in order: its answer to this
                    // request answers every ask up to `asked`.
                    unlinks_sent = asked;
                    unlinks_waiting.push_back(asked);
                    let incarnation = offered.incarnation;
                    send(&mut tx, &Message::UnlinkRequest { incarnation }, &[], &[])?;
                }
                // One change a pass: the loop reads what the primary sends
                // between two (a follower that only sent would stall it).
                if replica.is_some() {
                    if let Some((ask, bytes)) = stats.next_forward() {
                        let incarnation = offered.incarnation;
                        let m = Message::Forward { incarnation, ask };
                        send(&mut tx, &m, &[], &bytes)?;
                    }
                }
            }
            let wait = if busy { Duration::ZERO } else { opts.poll };
            // The last message's bytes are done with: `conn` may reuse them.
            carried = &[];
            let received = match recv(conn, wait) {
                Ok(m) => m,
                Err(None) => return Ok(Ended::PeerClosed),
                Err(Some(e)) => return Err(e),
            };
            busy = received.is_some();
            let next = match received {
                Some(bytes) => {
                    let m = link_message(bytes, opts)?;
                    if let Message::Closing { reason } = m.message {
                        return Ok(Ended::ClosedByPeer(reason));
                    }
                    if let Message::UnlinkAnswer { code } = m.message {
                        // An answer to no request (the link's asks were all
                        // answered) is dropped, as the state machine drops
                        // every answer.
                        if let Some(through) = unlinks_waiting.pop_front() {
                            answer_unlinks(opts, through, code);
                        }
                    }
                    if let Message::ForwardAnswer {
                        ask,
                        seq,
                        result,
                        index,
                    } = m.message
                    {
                        let id = m.forward.to_vec();
                        let reply = crate::forward::Reply {
                            result,
                            index,
                            seq,
                            id,
                        };
                        opts.count(|c| c.answered(ask, reply));
                    }
                    // How far the primary had logged when it sent them.
                    let logged = match m.message {
                        Message::Frames { last, behind, .. } => {
                            Some(last.saturating_add(u64::from(behind)))
                        }
                        _ => None,
                    };
                    if let Some(logged) = logged {
                        opts.count(|c| LinkStats::raise(&c.primary, logged));
                    }
                    // Past a snapshot's end, the first frames (or, the
                    // primary idle, a heartbeat) say how far it got: the lag
                    // is known again. (Before, the link showed the snapshot's
                    // position as caught up, lag 0, for 50-100 ms.)
                    if rebuild.idle()
                        && matches!(m.message, Message::Frames { .. } | Message::Heartbeat)
                    {
                        opts.count(|c| note(&c.installing, false));
                    }
                    // The primary is alive (and logged this far): a
                    // promotion here waits until the replica has it.
                    for r in replica.iter().chain(rebuild.target()) {
                        r.heard_primary(logged);
                    }
                    // A message carries frames or records, never both.
                    carried = if m.frames.is_empty() {
                        m.records
                    } else {
                        m.frames
                    };
                    tail = m.tail;
                    follower.received(m.message, clock.now())
                }
                None if follower.is_parked() => {
                    let ticked = follower.tick(clock.now());
                    if !ticked.is_empty() || !wanted() {
                        ticked
                    } else {
                        // Wanted now. The copy as it is now: a primary
                        // created here meanwhile is not followed.
                        opts.count(|c| c.parked.store(false, Ordering::Relaxed));
                        replica = local_replica(config, offered, opts)?;
                        if replica.is_some() {
                            follower = follower_of(replica.as_ref(), offered, opts);
                            follower.connected(clock.now())
                        } else {
                            follower.want(clock.now())
                        }
                    }
                }
                None => {
                    let ticked = follower.tick(clock.now());
                    match &replica {
                        // Idle, at most every OPENERS_EVERY: who has the
                        // replica open here, which keeps the checkpoint
                        // alive on the primary's host.
                        Some(r) if ticked.is_empty() && counted.elapsed() >= OPENERS_EVERY => {
                            counted = Instant::now();
                            let openers = r.reap_openers(ckpt_shm::segment::now());
                            follower.openers(openers as u32, clock.now())
                        }
                        _ => ticked,
                    }
                }
            };
            pending = Some(next);
        }
    })();
    let result = stopped_if_failed(result, stop);
    // A snapshot the link's end cut off is not being installed.
    opts.count(|c| note(&c.installing, false));
    if let Ok(Ended::Closed(reason)) = result {
        linger(conn, reason);
    }
    debug_assert!(subscribed || result.is_err() || parks);
    result.map(|ended| (ended, replica))
}

/// The follower of `offered` into `replica` (this host's copy, if any).
/// Without a copy, a replica placed here streams from frame 1 (its file
/// appears with the first batch); one this host only wants (a process here
/// opens it) asks as holding the incarnation but no position, so the
/// shipper sends a snapshot and the file appears only once it is installed,
/// holding every change the primary made before it answered.
fn follower_of(replica: Option<&Segment>, offered: &Offered, opts: &LinkOptions) -> Follower {
    match replica {
        Some(r) => Follower::new(opts.link, r.incarnation(), held(r)),
        None if offered.placed => Follower::new(opts.link, 0, Position::default()),
        None => Follower::new(opts.link, offered.incarnation, Position::default()),
    }
}

/// This host's copy of the offered checkpoint: its replica, or its primary
/// of the same incarnation and an older term demoted to one (the offer's
/// primary deposed it), or its primary of another incarnation that the
/// offered one outranks, yielded ([`Segment::yield_to`]); `None` if it has
/// none. Any other primary of that name here is refused
/// ([`ReplicationError::HeldAsPrimary`]).
fn local_replica(
    config: &Config,
    offered: &Offered,
    opts: &LinkOptions,
) -> Result<Option<Segment>, ReplicationError> {
    let flags = ckpt_core::OpenFlags::READ | ckpt_core::OpenFlags::WRITE;
    match Segment::open_for_link(config, &offered.name, flags) {
        // A copy of the same incarnation, decided under its claim
        // (`Segment::depose`). A primary is deposed by a newer term, or by
        // the same term on a higher node (two sides of a partition promoted
        // at once, static membership: then marked diverged, since the two
        // histories may hold different frames under the same numbers and
        // terms). A replica that followed another node's history of the
        // offered term is marked diverged if the offering node is the
        // higher (the shipper sends a snapshot), not followed if it is the
        // lower.
        Ok(s) if s.incarnation() == offered.incarnation => {
            let was_replica = s.is_replica();
            match s.depose(offered.term, offered.node) {
                Ok(true) => {
                    if !was_replica {
                        opts.report(LinkEvent::Demoted { term: offered.term });
                    }
                    Ok(Some(s))
                }
                Ok(false) if was_replica => Err(ReplicationError::OtherHistory {
                    term: offered.term,
                    node: s.active_replica().map_or(0, |a| a.node),
                }),
                Ok(false) => Err(ReplicationError::HeldAsPrimary {
                    term: s.current_term(),
                }),
                Err(_) => Err(ReplicationError::Apply(ApplyError::Contended)),
            }
        }
        Ok(s) if s.is_replica() => Ok(Some(s)),
        // A primary of another incarnation: the same name created on two
        // nodes before either knew of the other. The outranking one stays
        // the checkpoint (`Segment::yield_to`); this one, outranked, becomes
        // its replica by a snapshot, or else refuses the link.
        Ok(s) => match s.yield_to(offered.written, offered.term, offered.incarnation) {
            Ok(true) => {
                opts.report(LinkEvent::Yielded {
                    term: offered.term,
                    incarnation: offered.incarnation,
                });
                Ok(Some(s))
            }
            Ok(false) => Err(ReplicationError::HeldAsPrimary {
                term: s.current_term(),
            }),
            Err(_) => Err(ReplicationError::Apply(ApplyError::Contended)),
        },
        Err(ckpt_core::error::OpenError::NotExist) => Ok(None),
        Err(e) => Err(ReplicationError::Open(e)),
    }
}

/// A snapshot being installed into a copy of the replica, and a copy
/// installed and catching up under its temporary name until it holds the
/// snapshot's catch-up horizon (`ckpt_shm::ops::install::Staged`): the
/// replica's standbys see the old replica until then, never the copy's mix
/// of moments.
#[derive(Default)]
struct Rebuild {
    /// The copy being filled (`None`: none, or its records were refused:
    /// the copy is removed and its end fails).
    copy: Option<Installer>,
    /// The copy installed, catching up, with its snapshot's start and
    /// section count (reported once it is in place).
    staged: Option<(Staged, Position, u64)>,
}

impl Rebuild {
    /// A snapshot begins with the checkpoint's creation frame, `created`
    /// (`decode_message` checked it): a fresh copy; one begun is removed
    /// first (the caller drops one staged, [`Rebuild::drop_staged`]).
    fn begin(
        &mut self,
        config: &Config,
        name: &CheckpointName,
        created: &[u8],
    ) -> Result<(), ReplicationError> {
        self.copy = None;
        let created = frame::decode(created, true)
            .map_err(|e| ReplicationError::Wire(WireError::BadFrame(e)))?;
        if created.id != name.as_bytes() {
            let got = String::from_utf8_lossy(created.id).into_owned();
            return Err(ReplicationError::WrongCheckpoint(got));
        }
        let copy = Segment::install_begin(config, &created).map_err(ReplicationError::Open)?;
        self.copy = Some(copy);
        Ok(())
    }

    /// Places a part's records; the first refused drops the copy.
    fn part(&mut self, records: &[u8], opts: &LinkOptions) -> Result<(), ReplicationError> {
        let Some(copy) = self.copy.as_mut() else {
            return Ok(());
        };
        for r in frame::records(records) {
            match copy.record(&r) {
                Ok(()) => {}
                Err(InstallError::Invalid(why)) => {
                    opts.report(LinkEvent::SnapshotRefused(why));
                    self.copy = None;
                    return Ok(());
                }
                Err(e) => return Err(ReplicationError::Install(e)),
            }
        }
        Ok(())
    }

    /// The snapshot's end: true if the copy is installed (it catches up
    /// next, [`Rebuild::settle`]), false if it was refused (the replica is
    /// as it was).
    fn end(
        &mut self,
        start: Position,
        sections: u64,
        tail: Option<SnapshotTail>,
        opts: &LinkOptions,
    ) -> Result<bool, ReplicationError> {
        let (Some(copy), Some(tail)) = (self.copy.take(), tail) else {
            return Ok(false);
        };
        match copy.finish(start, sections, &tail) {
            Ok(staged) => {
                self.staged = Some((staged, start, sections));
                Ok(true)
            }
            Err(InstallError::Invalid(why)) => {
                opts.report(LinkEvent::SnapshotRefused(why));
                Ok(false)
            }
            Err(e) => Err(ReplicationError::Install(e)),
        }
    }

    /// The copy frames are applied to: the staged one while it catches up.
    fn target(&self) -> Option<&Segment> {
        self.staged.as_ref().map(|(s, ..)| s.segment())
    }

    /// Puts the staged copy in the replica's place once it has caught up
    /// (`Staged::publish`: the old replica's file is marked superseded, and
    /// handles on it move). Called before the acknowledgement of what the
    /// copy holds is sent, so that the shipper releases no writer on a copy
    /// not in place. True if the primary's unlink reached the copy first,
    /// with no replica here to unlink. A promotion of the old replica while
    /// the copy caught up ends the link, as an apply to a promoted copy
    /// does (the copy is dropped; the promoted file keeps the name).
    fn settle(
        &mut self,
        replica: &mut Option<Segment>,
        opts: &LinkOptions,
    ) -> Result<bool, ReplicationError> {
        if !self.staged.as_ref().is_some_and(|(s, ..)| s.caught_up()) {
            return Ok(false);
        }
        let (staged, start, sections) = self.staged.take().expect("a staged copy");
        match staged.publish(replica.as_ref()) {
            Ok(Some(segment)) => {
                *replica = Some(segment);
                opts.count(|c| {
                    c.snapshots.fetch_add(1, Ordering::Relaxed);
                });
                opts.report(LinkEvent::SnapshotInstalled {
                    start: start.seq,
                    sections,
                });
                Ok(false)
            }
            // Unlinked while it caught up: so is the replica.
            Ok(None) => match replica {
                Some(old) => {
                    old.mark_unlinked();
                    Ok(false)
                }
                None => Ok(true),
            },
            Err(PublishFail::Promoted) => Err(ReplicationError::Apply(ApplyError::NotReplica)),
            Err(PublishFail::Busy) => Err(ReplicationError::Apply(ApplyError::Contended)),
            Err(PublishFail::Install(e)) => Err(ReplicationError::Install(e)),
        }
    }

    /// Drops the staged copy, if there is one: the replica holds what it
    /// held before, which `follower` is told.
    fn drop_staged(&mut self, replica: Option<&Segment>, follower: &mut Follower) {
        if self.staged.take().is_some() {
            let (incarnation, holds) =
                replica.map_or((0, Position::default()), |r| (r.incarnation(), held(r)));
            follower.copy_dropped(incarnation, holds);
        }
    }

    /// True with no copy begun or staged.
    fn idle(&self) -> bool {
        self.copy.is_none() && self.staged.is_none()
    }

    /// Drops the copy begun.
    fn drop_copy(&mut self) {
        self.copy = None;
    }
}

/// What a replica segment holds: its last frame's number and term.
fn held(r: &Segment) -> Position {
    if r.is_diverged() {
        // A deposed primary of the same term: nothing it holds can be
        // matched by number and term (the shipper sends a snapshot).
        return Position::default();
    }
    Position {
        seq: r.last_seq(),
        term: r.current_term(),
    }
}

/// The frames of a `Frames` message, in order. `decode_message` checked
/// every one (and the message's checksum) in these bytes, which stay
/// unchanged in this end's receive buffer: they are read as they lie
/// (`decode_checked`), not checked again.
fn carried_frames(carried: &[u8]) -> impl Iterator<Item = Frame<'_>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let f = frame::decode_checked(carried.get(at..)?)?;
        at += f.header.frame_bytes();
        Some(f)
    })
}

/// Why a batch was not applied.
enum Refused {
    /// The protocol handles it (subscribe again, rebuild, close).
    Protocol(Refusal),
    /// It does not.
    Fatal(ReplicationError),
}

/// Applies frames `first..=last` of `carried` (checked, with the message's
/// checksum, by `decode_message`) to `staged` (a copy installed from a
/// snapshot, catching up) if there is one, else to the replica of checkpoint
/// `name` (in `config`'s directory), creating it from the creation frame.
/// A replica promoted here while a copy caught up refuses them, as it would
/// refuse them itself.
fn apply(
    (config, name): (&Config, &CheckpointName),
    replica: &mut Option<Segment>,
    staged: Option<&Segment>,
    carried: &[u8],
    (first, last, after): (u64, u64, Position),
) -> Result<(), Refused> {
    if staged.is_some() && replica.as_ref().is_some_and(|r| !r.is_replica()) {
        return Err(Refused::Fatal(ReplicationError::Apply(
            ApplyError::NotReplica,
        )));
    }
    // The frames come in ascending order: only those up to `after.seq` are
    // looked at (usually one, or none past it).
    if after.seq > 0
        && carried_frames(carried)
            .take_while(|f| f.header.seq <= after.seq)
            .any(|f| f.header.seq == after.seq && f.header.term != after.term)
    {
        // The frame before the ones to apply is not the replica's.
        return Err(Refused::Protocol(Refusal::Gap));
    }
    let mut todo = carried_frames(carried).filter(|f| (first..=last).contains(&f.header.seq));
    if staged.is_none() && replica.is_none() {
        // A new replica starts from the primary's creation frame.
        let Some(created) = todo.next().filter(|f| f.header.seq == 1) else {
            return Err(Refused::Protocol(Refusal::Gap));
        };
        if created.id != name.as_bytes() {
            let got = String::from_utf8_lossy(created.id).into_owned();
            return Err(Refused::Fatal(ReplicationError::WrongCheckpoint(got)));
        }
        let segment = Segment::open_replica(config, &created)
            .map_err(|e| Refused::Fatal(ReplicationError::Open(e)))?;
        *replica = Some(segment);
    }
    let r = staged.or(replica.as_ref()).expect("a replica");
    // One claim for the batch.
    match r.apply_all(todo) {
        Ok(_) => Ok(()),
        Err((_, ApplyError::Gap { .. })) => Err(Refused::Protocol(Refusal::Gap)),
        Err((_, ApplyError::StaleTerm { .. })) => Err(Refused::Protocol(Refusal::OlderTerm)),
        Err((_, e @ (ApplyError::Incarnation { .. } | ApplyError::Diverged { .. }))) => {
            tracing::warn!("{name}: {e}; the replica is rebuilt from a snapshot");
            Err(Refused::Protocol(Refusal::Diverged))
        }
        Err((_, e)) => Err(Refused::Fatal(ReplicationError::Apply(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckpt_core::{CreationAttributes, OpenFlags, Time};

    /// `read_frames` copies, for every range of a ring that wrapped many
    /// times (frames that end exactly at the ring's end among them), the
    /// same bytes as reading those frames one by one.
    #[test]
    fn frames_read_by_the_index_are_the_frames_in_the_ring() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            log_bytes: Some(64 << 10),
            ..Config::with_dir(dir.path())
        };
        let name = CheckpointName::new("read_frames").unwrap();
        let rwc = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
        let attrs = CreationAttributes::new(2, 4096);
        let seg = Segment::open(&config, &name, rwc, Some(&attrs)).unwrap();
        let (s, _) = seg.create_section(Some(b"s"), Time::END, b"").unwrap();
        let capacity = seg.geometry().log_bytes;
        let mut flush = 0;
        let mut index = RingIndex::new(&seg);
        let mut out = Vec::new();
        for round in 0..2000u64 {
            let left = capacity - seg.log_tail() % capacity;
            // Once a lap, a frame that ends exactly at the ring's end.
            let len = if (72..=72 + 4096).contains(&left) {
                flush += 1;
                (left - 72) as usize
            } else {
                (round * 37 % 600) as usize
            };
            seg.write(s, None, &vec![round as u8; len]).unwrap();
            index.refresh().unwrap();
            let last = seg.last_seq();
            let first = index.oldest().max(last.saturating_sub(40));
            for (from, batch) in [(first, usize::MAX), (first, 1), (last, 1 << 20)] {
                let Some(upto) = read_frames(&index, from, last, batch, &mut out).unwrap() else {
                    panic!("round {round}: frame {from} is indexed");
                };
                // The same frames one by one.
                let mut one = seg.consumer(Some(index.entry(from).unwrap().position));
                let mut at = 0;
                for seq in from..=upto {
                    let f = one.next_frame().unwrap().expect("a frame");
                    assert_eq!(f.header.seq, seq);
                    let bytes = f.header.frame_bytes();
                    assert_eq!(&out[at..at + bytes], one.current_bytes(), "round {round}");
                    at += bytes;
                }
                assert_eq!(at, out.len(), "round {round}: {from}..={upto}");
            }
        }
        println!("{flush} frames ended at the ring's end");
        assert!(flush > 5, "only {flush} frames ended at the ring's end");
    }
}
