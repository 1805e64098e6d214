//! The catch-up rule: which frames a fuzzy copy of a checkpoint already
//! contains.
//!
//! A consumer that fell behind (a standby past the ring, a new replica) copies
//! the checkpoint's sections while the writer goes on, then replays the log
//! from a position it noted *before* copying. Replaying a frame whose effect
//! the copy already holds is not harmless (an older write at an offset over
//! newer bytes creates a state that never existed, or fails), so every frame
//! is checked against the copy first.
//!
//! The copy records, per section, the sequence number of the frame that made
//! the data it copied (`data_seq`, read under the section's seqlock with the
//! data) and of the frame that set its expiration (`expiration_seq`); and for
//! the checkpoint, the frame that set the active replica or retention it
//! copied (`state_seq`). Every mutation of one section aspect has a larger
//! sequence number than the ones before it, so a frame is contained exactly
//! when its number is at most the copy's number for what it changes. Section
//! versions cannot serve: they restart at 1 when a section is re-created.

use crate::frame::{FrameHeader, FrameKind};

/// What a copy knows about one section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SectionSeqs {
    /// Sequence number of the frame that made the copied data (the create, a
    /// write or an overwrite).
    pub data_seq: u64,
    /// Sequence number of the frame that set the copied expiration.
    pub expiration_seq: u64,
}

impl SectionSeqs {
    /// The newest frame of this incarnation the copy holds.
    pub const fn newest(&self) -> u64 {
        if self.data_seq > self.expiration_seq {
            self.data_seq
        } else {
            self.expiration_seq
        }
    }
}

/// True if a copy already holds the effect of the frame `header`, so that
/// replaying it must skip it. `section` is the copy's entry for the frame's
/// section id (`None`: the copy has no such section); `state_seq` the copy's
/// number for checkpoint-wide state.
///
/// A frame for a section the copy lacks is never contained: the section was
/// created after the copy looked (its create is replayed first), or it was
/// deleted before the copy looked, and then the frames of that incarnation
/// find no section in the replica. A replica applying a replay therefore
/// treats a write, expiration change or delete of a section it does not have
/// (and a `Stage` piece at a non-zero offset of one: a large write's, since a
/// create's pieces start at 0) as a no-op while the frame's number is within
/// the snapshot (at most its `end_seq`); after that, it is a divergence.
///
/// A `Stage` piece is contained exactly when the mutation it belongs to is:
/// no other mutation commits between a mutation's first piece and its own
/// frame (the claim is held throughout), so the copy's data number is either
/// below the piece's or at least the own frame's. A consumer that skips a
/// mutation skips its pieces too.
pub fn contains(header: &FrameHeader, section: Option<SectionSeqs>, state_seq: u64) -> bool {
    let seq = header.seq;
    match (header.kind, section) {
        // The copy holds this incarnation (or a later one): every frame of it
        // up to the copy's numbers, and every frame of older incarnations.
        (FrameKind::Create | FrameKind::Delete, Some(s)) => seq <= s.newest(),
        (FrameKind::Write | FrameKind::Overwrite | FrameKind::Stage, Some(s)) => seq <= s.data_seq,
        (FrameKind::ExpirationSet, Some(s)) => seq <= s.expiration_seq,
        (FrameKind::ActiveReplicaSet | FrameKind::RetentionSet, _) => seq <= state_seq,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(kind: FrameKind, seq: u64) -> FrameHeader {
        let mut h = FrameHeader::new(kind);
        h.seq = seq;
        h
    }

    #[test]
    fn older_writes_are_contained_newer_ones_are_not() {
        let s = Some(SectionSeqs {
            data_seq: 10,
            expiration_seq: 4,
        });
        assert!(contains(&h(FrameKind::Write, 9), s, 0));
        assert!(contains(&h(FrameKind::Overwrite, 10), s, 0));
        assert!(!contains(&h(FrameKind::Write, 11), s, 0));
        // The expiration aspect has its own number.
        assert!(!contains(&h(FrameKind::ExpirationSet, 5), s, 0));
        assert!(contains(&h(FrameKind::ExpirationSet, 4), s, 0));
    }

    #[test]
    fn incarnations_are_told_apart_by_seq_not_version() {
        // The copy holds a re-created section whose create was seq 13.
        let later = Some(SectionSeqs {
            data_seq: 13,
            expiration_seq: 13,
        });
        assert!(
            contains(&h(FrameKind::Delete, 12), later, 0),
            "old incarnation's delete"
        );
        assert!(contains(&h(FrameKind::Create, 13), later, 0));
        // The copy holds the old incarnation: its delete and the new create apply.
        let older = Some(SectionSeqs {
            data_seq: 10,
            expiration_seq: 3,
        });
        assert!(!contains(&h(FrameKind::Delete, 12), older, 0));
        assert!(!contains(&h(FrameKind::Create, 13), older, 0));
        // Absent from the copy: nothing is contained (a create made after the
        // copy looked is replayed, and then that incarnation's writes too).
        assert!(!contains(&h(FrameKind::Create, 20), None, 0));
        assert!(!contains(&h(FrameKind::Write, 21), None, 0));
        assert!(!contains(&h(FrameKind::Delete, 22), None, 0));
    }

    #[test]
    fn checkpoint_state_uses_its_own_number() {
        assert!(contains(&h(FrameKind::RetentionSet, 7), None, 7));
        assert!(!contains(&h(FrameKind::ActiveReplicaSet, 8), None, 7));
        assert!(!contains(&h(FrameKind::Stage, 1), None, 7));
        // A piece goes with its mutation: contained when the copy's data is
        // the mutation's (seq 12, pieces 10 and 11) or later.
        let s = Some(SectionSeqs {
            data_seq: 12,
            expiration_seq: 3,
        });
        assert!(contains(&h(FrameKind::Stage, 10), s, 0));
        assert!(!contains(&h(FrameKind::Stage, 13), s, 0));
    }
}
