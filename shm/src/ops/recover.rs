//! Crash recovery: finishing or undoing the mutation of a claim holder that
//! died (or panicked) inside the mutation path, and the derived state it
//! recomputes.

use ckpt_core::frame::FrameKind;

use super::read::committed_size;
use super::Stamp;
use crate::index::{hash_id, tag_of};
use crate::layout::{
    bucket_state, intent_op, role, slot_state, BucketWord, CommitWord, IntentWord, LifeWord,
    LIFECYCLE_UNLINKED,
};
use crate::segment::Segment;
use crate::slot;
use crate::sync::Ordering;

impl Segment {
    /// Finishes or undoes the mutation of a dead (or panicked) claim holder,
    /// then recomputes the counters. Runs with the claim held.
    pub(crate) fn recover(&self) {
        let h = self.header();
        // SYNC POINT: Acquire pairs with the Release store in `set_intent`.
        let intent = IntentWord::from(h.intent_op.load(Ordering::Acquire));

        // SYNC POINT (for a group): Acquire pairs with the Release store of
        // `GROUP_COMMITTED`, its commit point, in `write_group`.
        let target = h.intent_target.load(Ordering::Acquire);
        let bucket = h.intent_bucket.load(Ordering::Relaxed);
        let first_seq = h.intent_seq.load(Ordering::Relaxed);
        let log_end = h.intent_log_end.load(Ordering::Relaxed);
        let end_seq = h.intent_end_seq.load(Ordering::Relaxed);
        let log = self.log();
        let tail = log.tail();
        let last_seq = log.seq();
        // The mutation's own frame was written (and not yet published) exactly
        // when the recorded end lies beyond the tail; its number was recorded
        // with it (the writer may have died between storing the published
        // number and moving the tail, so `last_seq` may already be it).
        // A group's frames are all unpublished, its first one next.
        let next = last_seq.wrapping_add(1);
        let group_whole = intent.op == intent_op::GROUP && first_seq == next && end_seq > first_seq;
        let publishable = log_end > tail
            && log_end - tail <= self.geometry().log_bytes
            && (end_seq == next || end_seq == last_seq || group_whole);
        let final_seq = end_seq;
        let in_range = intent.slot < self.geometry().sections_max;
        let committed = match intent.op {
            intent_op::WRITE if in_range => {
                self.slot(intent.slot).commit.load(Ordering::Acquire) == target
            }
            intent_op::CREATE | intent_op::DELETE if in_range => {
                self.slot(intent.slot).life.load(Ordering::Acquire) == target
            }
            // An expiration, active replica or retention that already had the
            // target value counts as committed only with its frame written.
            intent_op::EXPIRE if in_range => {
                publishable
                    && self.slot(intent.slot).expiration_ns.load(Ordering::Acquire) == target as i64
            }
            intent_op::ACTIVE | intent_op::PROMOTE => {
                publishable && h.active_replica.load(Ordering::Acquire) == target
            }
            intent_op::RETAIN => {
                publishable && h.retention_ns.load(Ordering::Acquire) == target as i64
            }
            intent_op::UNLINK => {
                publishable && h.lifecycle.load(Ordering::Acquire) & LIFECYCLE_UNLINKED != 0
            }
            intent_op::GROUP => target == intent_op::GROUP_COMMITTED,
            _ => false,
        };
        if committed {
            match intent.op {
                intent_op::DELETE => self.remove_bucket_of(bucket, intent.slot),
                // SYNC POINT: Release pairs with the Acquire loads in
                // `slot::read_expiration` (committed implies in range).
                intent_op::EXPIRE => self
                    .slot(intent.slot)
                    .expiration_seq
                    .store(final_seq, Ordering::Release),
                intent_op::ACTIVE | intent_op::RETAIN => {
                    h.state_seq.store(final_seq, Ordering::Release)
                }
                intent_op::PROMOTE => {
                    self.set_role(role::PRIMARY);
                    h.state_seq.store(final_seq, Ordering::Release)
                }
                // Past its commit point: every section still pending flips
                // to the version waiting in its spare buffer.
                intent_op::GROUP => self.finish_group(true),
                _ => {}
            }
            if publishable {
                log.publish(log_end, final_seq);
            }
        } else {
            if intent.op == intent_op::GROUP {
                // Before its commit point: every section keeps its version.
                self.finish_group(false);
            } else if in_range {
                let slot = self.slot(intent.slot);
                match intent.op {
                    intent_op::WRITE => slot::write_abandon(slot),
                    intent_op::CREATE => {
                        self.remove_bucket_of(bucket, intent.slot);
                        slot::retire(slot, LifeWord::from(target).gen);
                    }
                    _ => {}
                }
            }
            log.pad_unpublished();
            // Stages of this mutation went out already: tell consumers to drop them.
            if intent.op != intent_op::NONE && first_seq != 0 && last_seq >= first_seq {
                self.log_stage_abort(intent.slot, last_seq + 1);
            }
        }
        // A dead writer's flips are over (finished or undone): readers of
        // several sections go on.
        slot::flips_end(&h.group_seq);
        if self.index().interrupted() {
            self.compact_index();
        }
        self.recount();
        self.clear_intent();
        h.recoveries.fetch_add(1, Ordering::Relaxed);
    }

    /// The sections of a vector write's group interrupted by its writer's
    /// death: the live sections whose commit word is pending (only the claim
    /// holder sets the bit, and every other mutation clears it before it
    /// ends). `committed`: each flips to the new version its spare buffer
    /// holds (its metadata was stored before the commit point); else each
    /// keeps its version.
    fn finish_group(&self, committed: bool) {
        for s in 0..self.geometry().sections_max {
            let slot = self.slot(s);
            if LifeWord::from(slot.life.load(Ordering::Acquire)).state != slot_state::LIVE {
                continue;
            }
            let word = CommitWord::from(slot.commit.load(Ordering::Acquire));
            if !word.pending {
                continue;
            }
            if committed {
                slot::write_flip(slot, word);
            } else {
                slot::write_abandon(slot);
            }
        }
    }

    /// Logs and publishes a `StageAbort` for the section in `slot` (whose id
    /// the aborted mutation had written).
    pub(crate) fn log_stage_abort(&self, slot: u32, seq: u64) {
        let id: &[u8] = if slot < self.geometry().sections_max {
            self.id_slice(slot)
        } else {
            &[]
        };
        let spec = self.frame(FrameKind::StageAbort, id, &[], 0, 0, Stamp::now());
        let log = self.log();
        let p = self.log_frames(&log, &spec, seq, log.written_end());
        log.publish(p.end, p.seq);
    }

    fn remove_bucket_of(&self, bucket: u64, slot: u32) {
        let index = self.index();
        if bucket < self.geometry().index_buckets {
            let word = index.get(bucket);
            if word.state == bucket_state::LIVE && word.slot == slot {
                index.remove(bucket);
            }
        }
    }

    pub(crate) fn compact_index(&self) {
        self.index().compact(|w| {
            (w.slot < self.geometry().sections_max).then_some(())?;
            let life = LifeWord::from(self.slot(w.slot).life.load(Ordering::Acquire));
            (life.state == slot_state::LIVE && life.gen as u16 == w.gen)
                .then(|| hash_id(self.id_slice(w.slot)))
        });
    }

    /// Checks the words derived from the slots against them and repairs what
    /// they disagree on (claim held): the section count and memory used are
    /// recounted; index entries that name no live slot of their generation are
    /// dropped; a live section the index cannot find by its id is indexed
    /// again. Returns true if anything was repaired. One pass over the slots
    /// and one over the buckets; nothing is logged (these words are derived
    /// state, the same on every copy that holds the same slots).
    pub(crate) fn audit_held(&self) -> bool {
        let h = self.header();
        let counters = |h: &crate::layout::SegmentHeader| {
            (
                h.sections_live.load(Ordering::Relaxed),
                h.memory_used.load(Ordering::Relaxed),
            )
        };
        let before = counters(h);
        self.recount();
        let mut repaired = counters(h) != before;
        let index = self.index();
        let mut stale = false;
        for i in 0..self.geometry().index_buckets {
            let w = index.get(i);
            if w.state != bucket_state::LIVE {
                continue;
            }
            let id = self.bucket_id(w);
            if self.confirm(w, id).is_none() || w.tag != tag_of(hash_id(id)) {
                // A tombstone: lookups probe past it; compaction clears it.
                let dead = BucketWord {
                    state: bucket_state::TOMBSTONE,
                    ..w
                };
                index.store(i, dead);
                stale = true;
            }
        }
        if stale || index.interrupted() {
            self.compact_index();
            repaired = true;
        }
        for s in 0..self.geometry().sections_max {
            let slot = self.slot(s);
            let life = LifeWord::from(slot.life.load(Ordering::Acquire));
            if life.state != slot_state::LIVE {
                continue;
            }
            let id = self.id_slice(s);
            if self.lookup(id).ok().flatten().map(|r| r.slot) == Some(s) {
                continue;
            }
            let h_id = hash_id(id);
            // Another live slot with the same id (damage too): leave it be.
            if let Ok(position) = index.insert_position(h_id, |w| self.confirm(w, id).is_some()) {
                index.store(
                    position,
                    BucketWord {
                        state: bucket_state::LIVE,
                        tag: tag_of(h_id),
                        gen: life.gen as u16,
                        slot: s,
                    },
                );
                repaired = true;
            }
        }
        if repaired {
            h.repairs.fetch_add(1, Ordering::Relaxed);
        }
        repaired
    }

    /// True if a counter is beyond what the attributes allow.
    pub(crate) fn counters_implausible(&self) -> bool {
        let h = self.header();
        let a = self.attributes();
        h.sections_live.load(Ordering::Relaxed) > a.sections_max as u64
            || h.memory_used.load(Ordering::Relaxed) > a.checkpoint_bytes
    }

    /// True if no other opener has the checkpoint open (their leases).
    pub(crate) fn only_opener(&self) -> bool {
        let mine = self.owner.entry as usize;
        self.openers().iter().enumerate().all(|(i, e)| {
            i + 1 == mine
                || !self.opener_alive(
                    i,
                    crate::layout::OpenerWord::from(e.word.load(Ordering::SeqCst)),
                )
        })
    }

    /// [`Self::audit_held`] on a failure path (a create or write refused for
    /// lack of room): at most once a second per process. Claim held.
    pub(crate) fn audit_on_failure(&self) -> bool {
        let now = crate::segment::now().0;
        let last = self.last_audit_ns.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 1_000_000_000 && last != 0 {
            return false;
        }
        self.last_audit_ns.store(now, Ordering::Relaxed);
        self.audit_held()
    }

    /// The id of the slot a live bucket names, or an empty id if it names no
    /// slot (then `confirm` refuses it).
    fn bucket_id(&self, w: BucketWord) -> &[u8] {
        if w.slot < self.geometry().sections_max {
            self.id_slice(w.slot)
        } else {
            &[]
        }
    }

    /// Recomputes the section count and memory used from the slots.
    fn recount(&self) {
        let (mut live, mut bytes) = (0u64, 0u64);
        for s in 0..self.geometry().sections_max {
            let slot = self.slot(s);
            if LifeWord::from(slot.life.load(Ordering::Acquire)).state == slot_state::LIVE {
                live += 1;
                bytes += committed_size(slot).min(self.attributes().section_bytes_max);
            }
        }
        let h = self.header();
        h.sections_live.store(live, Ordering::Relaxed);
        h.memory_used.store(bytes, Ordering::Relaxed);
    }
}
