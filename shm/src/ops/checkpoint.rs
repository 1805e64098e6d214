//! Checkpoint-wide mutations: the active replica (a new term), the retention
//! duration and the unlink, each a logged mutation under the claim, so that a
//! replica rebuilt from the log alone has them too.

use ckpt_core::frame::FrameKind;
use ckpt_core::Time;

use super::{coarse_now, ClaimFail, FrameSpec, Intent};
use crate::layout::{intent_op, ActiveReplicaWord, LIFECYCLE_DOOMED, LIFECYCLE_UNLINKED};
use crate::segment::Segment;
use crate::sync::Ordering;

/// Why the name could not be unlinked through an open segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlinkFail {
    /// Already unlinked, or being deleted by a retention sweep.
    Gone,
    /// The claim could not be taken.
    Contended,
}

impl Segment {
    /// Makes `node` the active replica, in a new term (the current one + 1),
    /// and returns the term. The active-replica word is the commit point.
    pub fn set_active_replica(&self, node: u32) -> Result<u32, ClaimFail> {
        let _held = self.claim()?;
        let h = self.header();
        let current = ActiveReplicaWord::from(h.active_replica.load(Ordering::Relaxed));
        let next = ActiveReplicaWord {
            set: true,
            node,
            term: current.term.wrapping_add(1).max(1),
        };
        let intent = Intent {
            op: intent_op::ACTIVE,
            slot: 0,
            target: next.value(),
            bucket: 0,
        };
        let spec = FrameSpec {
            term: next.term,
            ..self.frame(
                FrameKind::ActiveReplicaSet,
                &[],
                &[],
                node as i64,
                0,
                coarse_now(),
            )
        };
        self.mutate(
            intent,
            || (spec, ()),
            |(), seq| {
                // SYNC POINT: Release pairs with the Acquire load in `active_replica`.
                h.active_replica.store(next.value(), Ordering::Release);
                h.state_seq.store(seq, Ordering::Release);
                h.active_pid
                    .store(crate::proc::current().pid as u64, Ordering::Relaxed);
            },
        );
        Ok(next.term)
    }

    /// Sets the retention duration (validated by the caller: not negative).
    pub fn set_retention(&self, retention: Time) -> Result<(), ClaimFail> {
        let _held = self.claim()?;
        let h = self.header();
        let intent = Intent {
            op: intent_op::RETAIN,
            slot: 0,
            target: retention.0 as u64,
            bucket: 0,
        };
        let spec = self.frame(
            FrameKind::RetentionSet,
            &[],
            &[],
            retention.0,
            0,
            coarse_now(),
        );
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
        Ok(())
    }

    /// Marks the checkpoint's name unlinked, logging it (the caller removes the
    /// file). The `UNLINKED` bit is the commit point.
    pub fn log_unlink(&self) -> Result<(), UnlinkFail> {
        let _held = self.claim().map_err(|_| UnlinkFail::Contended)?;
        let h = self.header();
        if h.lifecycle.load(Ordering::SeqCst) & (LIFECYCLE_DOOMED | LIFECYCLE_UNLINKED) != 0 {
            return Err(UnlinkFail::Gone);
        }
        let intent = Intent {
            op: intent_op::UNLINK,
            slot: 0,
            target: 0,
            bucket: 0,
        };
        let spec = self.frame(FrameKind::Unlink, &[], &[], 0, 0, coarse_now());
        self.mutate(
            intent,
            || (spec, ()),
            |(), _seq| {
                // SYNC POINT: SeqCst, with the sweeper's SeqCst CAS of DOOMED
                // (which fails once UNLINKED is set).
                h.lifecycle.fetch_or(LIFECYCLE_UNLINKED, Ordering::SeqCst);
            },
        );
        Ok(())
    }
}
