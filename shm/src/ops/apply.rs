//! Applying a primary's frames to this host's replica segment.
//!
//! A replica is written only here, through the same mutation path as the
//! primary: the frame's version, time, expiration, term and sequence number
//! are taken from the frame, never from the local clock, and the same frame
//! is published into the replica's own ring, so local standbys follow and
//! wait on a replica exactly as on the primary. The replica's last published
//! sequence number is its "applied through": it moves at the mutation's
//! publish, and recovery publishes a mutation whose commit point was passed,
//! so re-applying after a crash is a no-op (`Applied::Already`).

use ckpt_core::frame::{Frame, FrameKind, Mutation};
use ckpt_core::Time;

use super::read::committed_size;
use super::section::NewSection;
use super::write::{new_size, Fill};
use super::{ClaimFail, Stamp};
use crate::index::hash_id;
use crate::layout::{intent_op, CommitWord};
use crate::segment::Segment;
use crate::sync::Ordering;

/// What applying a frame did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The frame's mutation is now in the replica.
    Done,
    /// The replica held it already (a retransmission, or a re-apply after a
    /// crash): nothing changed.
    Already,
}

/// Why a frame was refused. The replica is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyError {
    /// This copy is the primary: only replicas apply frames.
    NotReplica,
    /// The frame belongs to another incarnation of the checkpoint's name.
    Incarnation {
        /// The replica's.
        ours: u64,
        /// The frame's.
        frame: u64,
    },
    /// The frame was written in an older term than the replica's: a deposed
    /// active replica's frame.
    StaleTerm {
        /// The replica's term.
        ours: u32,
        /// The frame's.
        frame: u32,
    },
    /// Frames are missing before this one.
    Gap {
        /// The sequence number the replica needs next.
        expected: u64,
    },
    /// The frame contradicts the replica's state (a section missing or
    /// present, a version that does not follow): the replica must be rebuilt.
    Diverged {
        /// Its sequence number.
        seq: u64,
        /// What did not match.
        why: &'static str,
    },
    /// Staged (large) mutations are not applied yet.
    Staged,
    /// The claim could not be taken.
    Contended,
}

impl core::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ApplyError::NotReplica => f.write_str("this copy is the primary, not a replica"),
            ApplyError::Incarnation { ours, frame } => write!(
                f,
                "frame of incarnation {frame:016x}, replica of {ours:016x}"
            ),
            ApplyError::StaleTerm { ours, frame } => {
                write!(
                    f,
                    "frame of term {frame} refused: the replica is in term {ours}"
                )
            }
            ApplyError::Gap { expected } => write!(f, "frames missing: expected seq {expected}"),
            ApplyError::Diverged { seq, why } => write!(f, "replica diverged at seq {seq}: {why}"),
            ApplyError::Staged => f.write_str("staged frames are not applied yet"),
            ApplyError::Contended => f.write_str("another writer holds the replica"),
        }
    }
}

impl core::error::Error for ApplyError {}

impl Segment {
    /// Applies one frame of the primary (decoded, and for bytes from the
    /// network, sealed). Frames must come in sequence order; a frame the
    /// replica holds already is `Applied::Already`.
    pub fn apply(&self, frame: &Frame<'_>) -> Result<Applied, ApplyError> {
        let h = frame.header;
        if !self.is_replica() {
            return Err(ApplyError::NotReplica);
        }
        let ours = self.header().incarnation;
        if h.incarnation != ours {
            return Err(ApplyError::Incarnation {
                ours,
                frame: h.incarnation,
            });
        }
        let _held = self.claim().map_err(|e| match e {
            ClaimFail::Contended | ClaimFail::Replica => ApplyError::Contended,
        })?;
        let last = self.last_seq();
        if h.seq <= last {
            return Ok(Applied::Already);
        }
        if h.seq != last + 1 {
            return Err(ApplyError::Gap { expected: last + 1 });
        }
        let term = self.term();
        let diverged = |why| ApplyError::Diverged { seq: h.seq, why };
        if h.term < term {
            return Err(ApplyError::StaleTerm {
                ours: term,
                frame: h.term,
            });
        }
        if h.term > term && h.kind != FrameKind::ActiveReplicaSet {
            return Err(diverged("a newer term without its active-replica frame"));
        }
        if frame.is_staged() || matches!(h.kind, FrameKind::Stage | FrameKind::StageAbort) {
            return Err(ApplyError::Staged);
        }
        let stamp = Stamp {
            time_ns: h.time_ns,
            more: frame.has_more(),
        };
        let Some(mutation) = frame.mutation() else {
            return Err(diverged("a pad frame"));
        };
        let find = |id: &[u8]| self.lookup(id).ok().flatten();
        match mutation {
            Mutation::Create {
                id,
                expiration,
                data,
            } => {
                let attrs = self.attributes();
                if id.len() as u64 > attrs.section_id_bytes_max
                    || data.len() as u64 > attrs.section_bytes_max
                    || h.version != 1
                {
                    return Err(diverged("a create beyond the attributes"));
                }
                if find(id).is_some() {
                    return Err(diverged("a create of a section the replica has"));
                }
                let h_id = hash_id(id);
                let position = self
                    .index()
                    .insert_position(h_id, |w| self.confirm(w, id).is_some())
                    .map_err(|_| diverged("no index position for a create"))?;
                let slot = self
                    .free_slot()
                    .ok_or(diverged("no free slot for a create"))?;
                let new = NewSection {
                    id,
                    h_id,
                    position,
                    slot,
                    expiration,
                    data,
                };
                self.create_held(new, stamp);
            }
            Mutation::Write { id, data, .. } | Mutation::Overwrite { id, data } => {
                let section = find(id).ok_or(diverged("a write to a missing section"))?;
                let slot = self.slot(section.slot);
                let current = CommitWord::from(slot.commit.load(Ordering::Relaxed));
                if h.version != current.version + 1 {
                    return Err(diverged("a write whose version does not follow"));
                }
                let offset = (h.kind == FrameKind::Write).then_some(h.arg as u64);
                let old_size = committed_size(slot);
                let max = self.attributes().section_bytes_max;
                let new_size = new_size(offset, data.len(), old_size)
                    .ok()
                    .filter(|&n| n <= max && old_size <= max)
                    .ok_or(diverged("a write past the section's end or size"))?;
                let fill = Fill::Copy { offset, data };
                self.write_version::<fn(&mut [u8])>(section, old_size, new_size, fill, stamp);
            }
            Mutation::Delete { id } => {
                let section = find(id).ok_or(diverged("a delete of a missing section"))?;
                self.delete_held(section, stamp)
                    .ok_or(diverged("a delete the index does not hold"))?;
            }
            Mutation::ExpirationSet { id, expiration } => {
                let section = find(id).ok_or(diverged("an expiration of a missing section"))?;
                self.set_expiration_held(section, expiration, stamp);
            }
            Mutation::ActiveReplicaSet { node, term: next } => {
                if next <= term {
                    return Err(diverged("an active-replica change without a new term"));
                }
                self.set_active_replica_held(node, next, intent_op::ACTIVE, stamp);
            }
            Mutation::RetentionSet { retention } => {
                self.set_retention_held(Time(retention.0), stamp);
            }
            Mutation::Unlink => self.unlink_held(stamp),
            Mutation::CheckpointCreated { .. } => {
                return Err(diverged("a second creation frame"));
            }
            Mutation::Stage { .. } | Mutation::StageAbort { .. } => {
                return Err(ApplyError::Staged);
            }
        }
        Ok(Applied::Done)
    }
}
