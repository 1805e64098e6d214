//! Checkpoint-wide mutations: the active replica (a new term), the retention
//! duration, the unlink and a replica's promotion, each a logged mutation
//! under the claim, so that a replica rebuilt from the log alone has them too.

use ckpt_core::frame::{FrameKind, NODE_ID_MAX};
use core::time::Duration;

use ckpt_core::Time;

use super::{ClaimFail, FrameSpec, Intent, Stamp};
use crate::layout::{
    intent_op, role, ActiveReplicaWord, RoleWord, LIFECYCLE_DOOMED, LIFECYCLE_UNLINKED,
};
use crate::segment::Segment;
use crate::sync::Ordering;

/// Why the active replica could not be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveFail {
    /// The claim could not be taken (or this copy is a replica).
    Claim(ClaimFail),
    /// The node id is beyond [`NODE_ID_MAX`].
    InvalidNode,
}

/// How long after the last message from its primary a replica's link
/// counts as live (the links' default silence limit).
pub const FEED_LIVE: Duration = Duration::from_secs(1);

/// Why a promotion did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromoteFail {
    /// The claim, or the node id.
    Active(ActiveFail),
    /// The primary is still heard from and this replica still lacked
    /// `frames` of what it had logged when the wait ran out.
    Behind { frames: u64 },
}

impl From<ClaimFail> for ActiveFail {
    fn from(f: ClaimFail) -> Self {
        ActiveFail::Claim(f)
    }
}

/// Why the name could not be unlinked through an open segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlinkFail {
    /// Already unlinked, or being deleted by a retention sweep.
    Gone,
    /// The claim could not be taken (or this copy is a replica).
    Claim(ClaimFail),
}

impl Segment {
    /// Makes `node` the active replica, in a new term (the current one + 1),
    /// and returns the term. The active-replica word is the commit point.
    pub fn set_active_replica(&self, node: u32) -> Result<u32, ActiveFail> {
        if node > NODE_ID_MAX {
            return Err(ActiveFail::InvalidNode);
        }
        let _held = self.claim_local()?;
        let term = self.term().wrapping_add(1).max(1);
        self.set_active_replica_held(node, term, intent_op::ACTIVE, Stamp::now());
        Ok(term)
    }

    /// Promotes this replica to primary with `node` as the active replica, in
    /// a new term; from then on local writers write it and frames of older
    /// terms are refused. Returns the term.
    pub fn promote(&self, node: u32) -> Result<u32, ActiveFail> {
        self.promote_lifting(node, None)
    }

    /// [`Segment::promote`] of a fenced replica the node daemon's quorate
    /// partition elected (a non-collocated checkpoint whose primary left the
    /// membership, [`ckpt_core::cluster::Settle::Promote`]) while it held
    /// frames of `term`: the fence is lifted under the same claim, so that
    /// no other step comes between. Refused (`Contended`) if the copy is no
    /// replica, or holds another term now (a newer primary's frames came
    /// since the election was decided).
    pub fn promote_elected(&self, node: u32, term: u32) -> Result<u32, ActiveFail> {
        self.promote_lifting(node, Some(term))
    }

    fn promote_lifting(&self, node: u32, elected_in: Option<u32>) -> Result<u32, ActiveFail> {
        if node > NODE_ID_MAX {
            return Err(ActiveFail::InvalidNode);
        }
        let _held = self.claim()?;
        let lift_fence = elected_in.is_some();
        if self.is_fenced() && !lift_fence {
            return Err(ActiveFail::Claim(ClaimFail::NoQuorum));
        }
        if elected_in.is_some_and(|t| !self.is_replica() || self.term() != t) {
            // An election is for the replica as it was: a primary here, or
            // a copy that moved on, was not elected.
            return Err(ActiveFail::Claim(ClaimFail::Contended));
        }
        if self.is_superseded() {
            // Another file holds the name now: promoting this one would make
            // a primary nobody ships (TRY_AGAIN: the handle moves to the
            // file under the name when next used).
            return Err(ActiveFail::Claim(ClaimFail::Contended));
        }
        if self.is_diverged() && !self.is_yielded() {
            // A deposed primary's copy waiting for its snapshot: what it
            // holds may differ from the cluster's under the same numbers and
            // terms, and a promotion would clear the mark (TRY_AGAIN: the
            // snapshot is on its way). A yielded one holds only its
            // creation, its own incarnation's: promoted, it is that
            // checkpoint's primary again (the other's node may be gone).
            return Err(ActiveFail::Claim(ClaimFail::Contended));
        }
        self.clear_yield_held();
        self.abort_staging();
        // A group the old primary's death cut off stays as applied; readers
        // of several sections stop waiting for its end.
        crate::slot::flips_end(&self.header().group_seq);
        if lift_fence {
            self.set_fence_held(false);
        }
        let term = self.term().wrapping_add(1).max(1);
        self.set_active_replica_held(node, term, intent_op::PROMOTE, Stamp::now());
        // The retention clock starts over: a close recorded while this was a
        // replica (which expires nothing) must not delete the new primary at
        // the next sweep. Nobody has it open: closed now; else still open.
        let now = crate::segment::now();
        let closed = if self.reap_openers(now) == 0 {
            now.0.max(1)
        } else {
            0
        };
        // SYNC POINT: SeqCst, as every store of the retention clock.
        self.header().last_close_ns.store(closed, Ordering::SeqCst);
        Ok(term)
    }

    /// Records, on a replica, what its link just heard from the primary:
    /// that the primary is alive, and (with `Some`) the last frame it had
    /// logged when it sent the frames just received. Two stores; a
    /// promotion reads them.
    pub fn heard_primary(&self, primary_seq: Option<u64>) {
        let h = self.header();
        if let Some(seq) = primary_seq {
            // SYNC POINT: none needed: the two words are read as hints, each
            // on its own (a promotion re-reads them while it waits).
            h.feed_seq.store(seq, Ordering::Relaxed);
        }
        h.feed_heard_ns
            .store(crate::proc::monotonic_ns().max(1), Ordering::Relaxed);
    }

    /// The frames this replica lacks of what its link heard the primary
    /// had logged, if the link heard from the primary within `live` (0
    /// otherwise: caught up, or the primary went quiet).
    pub fn behind_live_primary(&self, live: Duration) -> u64 {
        let h = self.header();
        let heard = h.feed_heard_ns.load(Ordering::Relaxed);
        let now = crate::proc::monotonic_ns();
        if heard == 0 || now.saturating_sub(heard) > live.as_nanos() as u64 {
            return 0;
        }
        h.feed_seq
            .load(Ordering::Relaxed)
            .saturating_sub(self.last_seq())
    }

    /// [`Segment::promote`] once this replica holds what its link heard the
    /// primary had logged, waiting up to `wait` while the primary is still heard
    /// from (within [`FEED_LIVE`]): a replica that is behind a live primary
    /// does not become active with less than it could have. One whose
    /// primary went quiet (its host died) is promoted with what it holds.
    pub fn promote_caught_up(&self, node: u32, wait: Duration) -> Result<u32, PromoteFail> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let behind = self.behind_live_primary(FEED_LIVE);
            if behind == 0 {
                return self.promote(node).map_err(PromoteFail::Active);
            }
            if std::time::Instant::now() >= deadline {
                return Err(PromoteFail::Behind { frames: behind });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Makes this primary a replica: a primary of a newer term elsewhere
    /// deposed it. Local writers are refused from then on, and what it holds
    /// is what the new primary's frames build on (or its snapshot replaces,
    /// where the two histories differ). Not logged: the new primary's
    /// history decides what this copy becomes. (One of the same term deposes
    /// through [`Segment::depose`], which marks the copy diverged.)
    pub fn demote(&self) -> Result<(), ClaimFail> {
        let _held = self.claim()?;
        self.demote_held(false);
        Ok(())
    }

    /// The primary on `node` in `term` offers this checkpoint: if it deposes
    /// this primary (a newer term, or the same term on a node with a higher
    /// id), demotes it, as diverged at the same term (counted as holding
    /// nothing, [`crate::segment::Mapped::is_diverged`], until a snapshot
    /// replaces it: its frames may differ from the new primary's under the
    /// same numbers and terms); returns whether it did. Decided and done under the claim, so that no promotion here
    /// comes in between.
    ///
    /// A replica is followed by that primary (true), unless it follows
    /// another node's history of the same term (two sides of a partition
    /// promoted at once, and this replica followed one of them): the higher
    /// node's wins, as between the primaries. Offered by the higher node,
    /// the replica is marked diverged (a snapshot replaces it); by the lower
    /// one, it is not followed (false).
    pub fn depose(&self, term: u32, node: u32) -> Result<bool, ClaimFail> {
        let _held = self.claim()?;
        if self.is_replica() {
            // Written only under the claim, which we hold.
            let word = self.header().active_replica.load(Ordering::Relaxed);
            let active = ActiveReplicaWord::from(word);
            if active.set && active.term == term && active.node != node {
                if node < active.node {
                    return Ok(false);
                }
                self.demote_held(true);
            }
            return Ok(true);
        }
        let mine = self.term();
        let deposed = term > mine || term == mine && node > self.config().node_id;
        if deposed {
            self.demote_held(term == mine);
        }
        Ok(deposed)
    }

    /// This primary and the primary of another incarnation of its name
    /// (`incarnation`, in `term`, `written` or not: see
    /// [`crate::segment::Mapped::is_written`]) have met: the same name created on two nodes
    /// before either knew of the other. SA has one checkpoint of a name:
    /// this one yields (returns true) if it holds nothing but its creation
    /// (nothing is lost) and the other outranks it: a written one outranks
    /// an unwritten one, then a newer term an older one, then the lower
    /// incarnation. Two written ones both stay (the link is refused, as
    /// between the two sides of a partition: an operator decides).
    /// Decided under the claim, against this copy as it is then. Yielded,
    /// it is a replica marked diverged (a snapshot of the other replaces
    /// it) and `yielded` (handles on it move to that one; until the
    /// snapshot comes, it may still be promoted, as it was). The rank only
    /// grows, and a yielded copy is offered no more: of two that meet, at
    /// most one yields.
    pub fn yield_to(&self, written: bool, term: u32, incarnation: u64) -> Result<bool, ClaimFail> {
        let _held = self.claim()?;
        if self.is_replica() || self.is_written() {
            return Ok(false);
        }
        let mine = (false, self.term(), std::cmp::Reverse(self.incarnation()));
        let theirs = (written, term, std::cmp::Reverse(incarnation));
        if theirs <= mine {
            return Ok(false);
        }
        self.change_role(|was| RoleWord {
            role: role::REPLICA,
            diverged: true,
            yielded: true,
            ..was
        });
        Ok(true)
    }

    /// Clears a yield's marks (claim held): a yielded copy promoted is its
    /// own incarnation's primary again (the promotion sets the role).
    fn clear_yield_held(&self) {
        self.change_role(|was| RoleWord {
            diverged: was.diverged && !was.yielded,
            yielded: false,
            ..was
        });
    }

    /// The role and the mark, in one store (claim held).
    fn demote_held(&self, diverged: bool) {
        self.change_role(|was| RoleWord {
            role: role::REPLICA,
            diverged: was.diverged || diverged,
            ..was
        });
    }

    /// Stores what `change` makes of the role word (claim held: only the
    /// claim holder stores it, so the Relaxed load reads its own last
    /// store), in one store: a reader sees the role and every mark together.
    fn change_role(&self, change: impl FnOnce(RoleWord) -> RoleWord) {
        let word = &self.header().role;
        let next = change(RoleWord::from(word.load(Ordering::Relaxed)));
        // SYNC POINT: Release pairs with the Acquire loads of the word:
        // `claim_local`, `is_replica`, `is_fenced`, `is_diverged`,
        // `is_superseded`, `is_yielded`.
        word.store(next.value(), Ordering::Release);
    }

    /// Drops a replica's staging in progress, logging a `StageAbort` so that
    /// its standbys drop the pieces too (claim held).
    fn abort_staging(&self) {
        if let Some(st) = self.staging() {
            self.end_staging(st, false);
            self.log_stage_abort(st.slot, self.log().seq() + 1);
        }
    }

    /// The active replica becomes `node` in `term` (claim held). `op` is
    /// `ACTIVE`, or `PROMOTE`, which also makes this copy the primary.
    pub(crate) fn set_active_replica_held(&self, node: u32, term: u32, op: u8, stamp: Stamp) {
        let h = self.header();
        let next = ActiveReplicaWord {
            set: true,
            node,
            term,
        };
        let intent = Intent {
            op,
            slot: 0,
            target: next.value(),
            bucket: 0,
        };
        let spec = FrameSpec {
            term,
            ..self.frame(FrameKind::ActiveReplicaSet, &[], &[], node as i64, 0, stamp)
        };
        self.mutate(
            intent,
            || (spec, ()),
            |(), seq| {
                // SYNC POINT: Release pairs with the Acquire load in `active_replica`.
                h.active_replica.store(next.value(), Ordering::Release);
                if op == intent_op::PROMOTE {
                    self.set_role(role::PRIMARY);
                }
                h.state_seq.store(seq, Ordering::Release);
                h.active_pid
                    .store(crate::proc::current().pid as u64, Ordering::Relaxed);
            },
        );
    }

    /// Sets the role, keeping the fence (claim held: `fence` changes the
    /// word under the claim too); a primary is never marked diverged (its
    /// history is the one that counts).
    pub(crate) fn set_role(&self, r: u8) {
        self.change_role(|was| RoleWord {
            role: r,
            diverged: was.diverged && r != role::PRIMARY,
            ..was
        });
    }

    /// Fences this copy (`on`) or lifts the fence: the node daemon's answer
    /// to its partition losing or regaining quorum. While fenced, local
    /// writers are refused (`ClaimFail::NoQuorum`, `TRY_AGAIN` to them) and
    /// no promotion makes it the primary; a replica still applies its
    /// primary's frames. Taken under the claim: once this returns, no local
    /// write is in flight or can begin.
    pub fn fence(&self, on: bool) -> Result<(), ClaimFail> {
        let _held = self.claim()?;
        self.set_fence_held(on);
        Ok(())
    }

    /// [`Segment::fence`]'s store, the claim held.
    fn set_fence_held(&self, on: bool) {
        self.change_role(|was| RoleWord { fenced: on, ..was });
    }

    /// Marks this replica file superseded: a snapshot rebuilt the replica
    /// into a new file, now under the checkpoint's name. It is never
    /// promoted from then on, so a standby still on it (its handle moves
    /// to the new file when next used) cannot make a file no daemon ships
    /// the primary. Taken under the claim, as every change of the role
    /// word.
    pub fn supersede(&self) -> Result<(), ClaimFail> {
        let _held = self.claim()?;
        self.supersede_held();
        Ok(())
    }

    /// [`Segment::supersede`], the claim held.
    pub(crate) fn supersede_held(&self) {
        self.change_role(|was| RoleWord {
            superseded: true,
            ..was
        });
        // Consumers asleep on the log (`Consumer::wait`) wake and see the
        // mark. The tail keeps its value, so one between its check of the
        // mark and its futex sleep misses this wake and wakes at its own
        // timeout instead (a late wake, never a lost change: no frame comes
        // to this file again).
        crate::notify::wake_all(&self.header().log_tail);
    }

    /// Fences this copy if the fence marker is in its directory now. A new
    /// copy's fence bit is decided when its file is built, from the marker
    /// as it was then; the marker may have come since, before the file was
    /// published (and before the daemon listed the directory to fence it):
    /// checked again once published. Best effort (a busy claim leaves it
    /// to the daemon's next pass).
    pub fn fence_if_marked(&self) {
        if !self.is_fenced() && crate::dir::fence_marked(self.config()) {
            let _ = self.fence(true);
        }
    }

    /// Records, on a replica, that its primary is gone (the membership says
    /// its node left): a promotion no longer waits to catch up with what
    /// that primary was last heard to ship.
    pub fn primary_lost(&self) {
        // SYNC POINT: none needed, as in `heard_primary`: a hint.
        self.header().feed_heard_ns.store(0, Ordering::Relaxed);
    }

    /// Sets the retention duration (validated by the caller: not negative).
    pub fn set_retention(&self, retention: Time) -> Result<(), ClaimFail> {
        let _held = self.claim_local()?;
        self.set_retention_held(retention, Stamp::now());
        Ok(())
    }

    pub(crate) fn set_retention_held(&self, retention: Time, stamp: Stamp) {
        let h = self.header();
        let intent = Intent {
            op: intent_op::RETAIN,
            slot: 0,
            target: retention.0 as u64,
            bucket: 0,
        };
        let spec = self.frame(FrameKind::RetentionSet, &[], &[], retention.0, 0, stamp);
        self.mutate(
            intent,
            || (spec, ()),
            |(), seq| {
                // SYNC POINT: SeqCst, as every access to the retention clock
                // (the sweepers' checks in `retention_expired`).
                h.retention_ns.store(retention.0, Ordering::SeqCst);
                h.state_seq.store(seq, Ordering::Release);
            },
        );
    }

    /// Marks the checkpoint's name unlinked, logging it (the caller removes the
    /// file). The `UNLINKED` bit is the commit point.
    pub fn log_unlink(&self) -> Result<(), UnlinkFail> {
        let _held = self.claim_local().map_err(UnlinkFail::Claim)?;
        let lifecycle = self.header().lifecycle.load(Ordering::SeqCst);
        if lifecycle & (LIFECYCLE_DOOMED | LIFECYCLE_UNLINKED) != 0 {
            return Err(UnlinkFail::Gone);
        }
        self.unlink_held(Stamp::now());
        Ok(())
    }

    /// Logs the unlink of a checkpoint that a retention sweep deleted
    /// (`DOOMED`: nobody had it open, its retention ran out, its name is
    /// gone), so that its replicas, which expire nothing on their own, follow.
    /// A replication link's registration calls it (it does not count as an
    /// open, so it outlives the sweep). `Gone` if the checkpoint is not doomed,
    /// or its unlink is logged already.
    pub fn log_expired(&self) -> Result<(), UnlinkFail> {
        let _held = self.claim_local().map_err(UnlinkFail::Claim)?;
        let lifecycle = self.header().lifecycle.load(Ordering::SeqCst);
        if lifecycle & LIFECYCLE_DOOMED == 0 || lifecycle & LIFECYCLE_UNLINKED != 0 {
            return Err(UnlinkFail::Gone);
        }
        self.unlink_held(Stamp::now());
        Ok(())
    }

    /// Logs the unlink and sets `UNLINKED` (claim held).
    pub(crate) fn unlink_held(&self, stamp: Stamp) {
        let h = self.header();
        let intent = Intent {
            op: intent_op::UNLINK,
            slot: 0,
            target: 0,
            bucket: 0,
        };
        let spec = self.frame(FrameKind::Unlink, &[], &[], 0, 0, stamp);
        self.mutate(
            intent,
            || (spec, ()),
            |(), _seq| {
                // SYNC POINT: SeqCst, with the sweeper's SeqCst CAS of DOOMED
                // (which fails once UNLINKED is set).
                h.lifecycle.fetch_or(LIFECYCLE_UNLINKED, Ordering::SeqCst);
            },
        );
        // No daemon adopts a checkpoint whose name is gone (its scan lists
        // names): the handles left on it do not wait for one.
        self.adopted();
    }
}
