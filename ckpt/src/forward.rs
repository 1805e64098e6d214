//! Changes made on a node that holds only a replica, forwarded to the
//! primary (SA: writes go to the active replica wherever it is, §3.1.6).
//!
//! A [`Checkpoint`] whose copy here is a replica cannot write it (only its
//! primary's frames change it). Its mutating calls (write, overwrite,
//! section creation, deletion, expiration and retention changes, and
//! synchronize; a section handle's writes too) instead encode the change
//! as a [`ForwardRequest`] and ask the node daemon (`forward` on the control
//! socket, [`crate::control::ask_forward`]); the daemon hands it to the link
//! that follows the checkpoint ([`crate::node::NodeHandle::forward`]), which
//! sends it to the primary in a `Forward` message. There the shipping link
//! makes the change through a [`Checkpoint`] of the primary, as a call on
//! that host would ([`execute`]: the same checks, the same errors, the same
//! wait for replicas in a synchronous mode), and answers with the result
//! and the frame that carries the change; the daemon here waits until this
//! host's replica holds that frame before it answers, so the caller reads
//! its own change once the call returns.
//!
//! Not idempotent: a request is sent once. If its link ends before the
//! answer, the caller gets `TIMEOUT` (the change may or may not have been
//! made, as SA says of a timeout); a request not sent yet goes on the next
//! link.

use std::time::Duration;

use ckpt_core::error::{
    ExpirationSetError, RetentionSetError, SectionCreateError, SectionDeleteError,
    SynchronizeError, WriteError,
};
use ckpt_core::frame::{ForwardElement, ForwardOp, ForwardRequest, FORWARD_ELEMENTS_MAX};
use ckpt_core::Time;

use crate::{Checkpoint, WriteVec};

/// How long a forwarded change waits for the primary's answer (and for
/// this host's replica to hold it).
pub const FORWARD_WAIT: Duration = Duration::from_secs(10);
/// The largest forwarded request (the control socket and the link both
/// take it whole).
pub use ckpt_core::control::FORWARD_BYTES_MAX;
/// Forwarded requests a link holds at once (queued or waiting for their
/// answers); more are answered busy (`TRY_AGAIN`).
pub const FORWARDS_QUEUED_MAX: usize = 64;

/// A result of a change the primary did not try: it is not the primary of
/// that incarnation (any more), or the checkpoint is gone there.
pub const RESULT_REFUSED: u32 = u32::MAX;
/// A result of a change the primary did not try: too many wait already
/// (or the daemon here is busy).
pub const RESULT_BUSY: u32 = u32::MAX - 1;
/// A result of a change the primary did not try: its copy is a replica now
/// (a failover is under way); retry.
pub const RESULT_NOT_PRIMARY: u32 = u32::MAX - 2;
/// A result of a change not sent: larger than a link takes.
pub const RESULT_TOO_LARGE: u32 = u32::MAX - 3;

/// A reply the primary did not make: `result` is one of the `RESULT_`
/// constants above.
pub fn untried(result: u32) -> Reply {
    Reply {
        result,
        index: 0,
        seq: 0,
        id: Vec::new(),
    }
}

/// The primary's answer to a forwarded change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// 0 if the change was made; one of the `RESULT_` constants above if
    /// it was not tried; else the operation's error number
    /// ([`WriteError::number`] and the like) plus one.
    pub result: u32,
    /// The erroneous element of a vector write.
    pub index: u32,
    /// The frame that carries the change (0 if not made).
    pub seq: u64,
    /// A generated section id.
    pub id: Vec<u8>,
}

/// How a forwarded change ended, for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forwarded {
    /// The primary answered (and, if the change was made, this host's
    /// replica holds it).
    Answered(Reply),
    /// No link follows the checkpoint here: no primary to ask.
    Unknown,
    /// No answer in time (or the link ended after the request went).
    TimedOut,
}

/// The primary's side: makes the change `request` through `c`, a
/// [`Checkpoint`] of the primary opened for writing, and says how it went.
pub fn execute(c: &Checkpoint, request: &ForwardRequest<'_>) -> Reply {
    let failed = |result: u32, index: usize| Reply {
        result: result + 1,
        index: index as u32,
        seq: 0,
        id: Vec::new(),
    };
    let none = ForwardElement::new(&[], 0, &[]);
    let one = request.elements.first().copied().unwrap_or(none);
    let time = Time(request.time);
    let mut id = Vec::new();
    let outcome: Result<(), (u32, usize)> = match request.op {
        ForwardOp::Write => {
            let vecs: Vec<WriteVec<'_>> = request
                .elements
                .iter()
                .map(|e| WriteVec {
                    id: e.id,
                    offset: e.offset,
                    data: e.data,
                })
                .collect();
            c.write(&vecs).map_err(|(i, e)| (e.number(), i))
        }
        ForwardOp::Overwrite => c.overwrite(one.id, one.data).map_err(|e| (e.number(), 0)),
        ForwardOp::Create => c
            .create_section(one.id, time, one.data)
            .map(drop)
            .map_err(|e| (e.number(), 0)),
        ForwardOp::CreateGenerated => c
            .create_section_generated(time, one.data)
            .map(|(generated, _)| id = generated.as_bytes().to_vec())
            .map_err(|e| (e.number(), 0)),
        ForwardOp::Delete => c.delete_section(one.id).map_err(|e| (e.number(), 0)),
        ForwardOp::SetExpiration => c.set_expiration(one.id, time).map_err(|e| (e.number(), 0)),
        ForwardOp::SetRetention => c.set_retention(time).map_err(|e| (e.number(), 0)),
        ForwardOp::Synchronize => c.synchronize(time).map_err(|e| (e.number(), 0)),
    };
    match outcome {
        Ok(()) => Reply {
            result: 0,
            index: 0,
            seq: c.segment().last_seq(),
            id,
        },
        Err((number, index)) => failed(number, index),
    }
}

/// What a forwarded call returns to its caller, from how the forward went:
/// the operation's error for a failed change (its number from the
/// primary), `TryAgain` where no daemon or link can ask the primary, it is
/// busy, or no primary any more (a failover), `Timeout` when the answer did
/// not come, `NoActiveReplica` where the primary refused (it holds another
/// incarnation, or the checkpoint was unlinked), the operation's
/// `NO_RESOURCES` error for a change larger than a link takes.
pub trait ForwardedError: Sized + Copy {
    /// The variant numbered `n` ([`WriteError::from_number`] and the like).
    fn from_number(n: u32) -> Option<Self>;
    /// Retry: no daemon, no link, or the primary is busy.
    const TRY_AGAIN: Self;
    /// The answer did not come in time.
    const TIMEOUT: Self;
    /// The primary refused: it holds another incarnation, or none.
    const REFUSED: Self;
    /// A section id longer than `maxSectionIdSize`.
    const ID_TOO_LONG: Self;
    /// The change is larger than [`FORWARD_BYTES_MAX`] (`NO_RESOURCES`).
    const TOO_LARGE: Self;
}

macro_rules! forwarded_error {
    ($($t:ident => ($refused:ident, $id:ident, $large:ident)),+ $(,)?) => {$(
        impl ForwardedError for $t {
            fn from_number(n: u32) -> Option<Self> {
                $t::from_number(n)
            }
            const TRY_AGAIN: Self = $t::TryAgain;
            const TIMEOUT: Self = $t::Timeout;
            const REFUSED: Self = $t::$refused;
            const ID_TOO_LONG: Self = $t::$id;
            const TOO_LARGE: Self = $t::$large;
        }
    )+};
}

// (refused, id too long, too large). A delete, an expiration change, a
// retention change and a synchronize carry no data: never too large; the
// last two name no section; a refused retention change's checkpoint was
// unlinked (or another has its name).
forwarded_error!(
    WriteError => (NoActiveReplica, IdTooLong, NoMemory),
    SectionCreateError => (NoActiveReplica, IdTooLong, NoMemory),
    SectionDeleteError => (NoActiveReplica, IdTooLong, TryAgain),
    ExpirationSetError => (NoActiveReplica, IdTooLong, TryAgain),
    RetentionSetError => (Unlinked, TryAgain, TryAgain),
    SynchronizeError => (NoActiveReplica, TryAgain, TryAgain),
);

/// [`send`] of a change of one element (every operation but a vector
/// write): the error alone, the reply on success.
pub(crate) fn send_one<E: ForwardedError>(
    c: &Checkpoint,
    op: ForwardOp,
    time: i64,
    element: ForwardElement<'_>,
) -> Result<Reply, E> {
    send_within(c, op, time, vec![element], FORWARD_WAIT).map_err(|(_, e)| e)
}

/// The replica's side: sends the change (`op`, `time`, `elements`) to
/// checkpoint `c`'s primary through this host's node daemon and waits for
/// it ([`FORWARD_WAIT`]).
pub(crate) fn send<E: ForwardedError>(
    c: &Checkpoint,
    op: ForwardOp,
    time: i64,
    elements: Vec<ForwardElement<'_>>,
) -> Result<Reply, (usize, E)> {
    send_within(c, op, time, elements, FORWARD_WAIT)
}

/// [`send`], waiting up to `wait` for the answer.
pub(crate) fn send_within<E: ForwardedError>(
    c: &Checkpoint,
    op: ForwardOp,
    time: i64,
    elements: Vec<ForwardElement<'_>>,
    wait: Duration,
) -> Result<Reply, (usize, E)> {
    let segment = c.segment();
    if segment.is_unlinked() {
        // Its primary was unlinked: it takes no more changes from other
        // nodes (its links ended), and it never will.
        return Err((0, E::REFUSED));
    }
    if segment.is_yielded() {
        // It yielded to another incarnation of its name, whose snapshot is
        // on its way (the handle then moves to it): its primary is that
        // one's, which refuses this incarnation's changes.
        return Err((0, E::TRY_AGAIN));
    }
    let id_max = c.attributes().section_id_bytes_max;
    if let Some(i) = elements.iter().position(|e| e.id.len() as u64 > id_max) {
        return Err((i, E::ID_TOO_LONG));
    }
    if elements.len() > FORWARD_ELEMENTS_MAX {
        return Err((0, E::TOO_LARGE));
    }
    let mut bytes = Vec::new();
    let incarnation = segment.incarnation();
    ForwardRequest {
        op,
        time,
        incarnation,
        elements,
    }
    .encode(&mut bytes);
    if bytes.len() > FORWARD_BYTES_MAX {
        return Err((0, E::TOO_LARGE));
    }
    let how = crate::control::ask_forward(&segment.config().dir, segment.name(), &bytes, wait);
    let reply = outcome(how)?;
    see(c, reply.seq);
    Ok(reply)
}

/// How long a caller whose forwarded change was made waits until its own
/// handle shows it ([`see`]).
const SEE_WAIT: Duration = Duration::from_millis(200);

/// Waits (at most [`SEE_WAIT`]) until checkpoint `c`'s file holds frame
/// `seq`. The daemon answers once the replica under the checkpoint's name
/// holds the change; if a snapshot rebuilt that replica just now, the
/// handle's file may be the old one, marked superseded a moment after the
/// new one took the name, and the handle moves to the new one then.
fn see(c: &Checkpoint, seq: u64) {
    let deadline = std::time::Instant::now() + SEE_WAIT;
    while c.segment().last_seq() < seq && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// The caller's result of a forward that ended as `how` (`None`: no daemon
/// answered): `Ok(reply)` if the change was made, else the error and the
/// erroneous element.
pub fn outcome<E: ForwardedError>(how: Option<Forwarded>) -> Result<Reply, (usize, E)> {
    match how {
        None | Some(Forwarded::Unknown) => Err((0, E::TRY_AGAIN)),
        Some(Forwarded::TimedOut) => Err((0, E::TIMEOUT)),
        Some(Forwarded::Answered(r)) => match r.result {
            0 => Ok(r),
            RESULT_BUSY | RESULT_NOT_PRIMARY => Err((0, E::TRY_AGAIN)),
            RESULT_REFUSED => Err((0, E::REFUSED)),
            RESULT_TOO_LARGE => Err((0, E::TOO_LARGE)),
            n => {
                // A number this build does not know (a newer primary): the
                // change was not made, and retrying may do.
                let e = E::from_number(n - 1).unwrap_or(E::TRY_AGAIN);
                Err((r.index as usize, e))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(result: u32, index: u32) -> Option<Forwarded> {
        Some(Forwarded::Answered(Reply {
            result,
            index,
            seq: 7,
            id: Vec::new(),
        }))
    }

    #[test]
    fn every_way_a_forward_ends_is_one_clear_error() {
        assert_eq!(outcome::<WriteError>(answered(0, 0)).unwrap().seq, 7);
        let not_exist = WriteError::NotExist.number() + 1;
        assert_eq!(
            outcome::<WriteError>(answered(not_exist, 2)),
            Err((2, WriteError::NotExist))
        );
        assert_eq!(
            outcome::<SectionCreateError>(answered(SectionCreateError::Exist.number() + 1, 0)),
            Err((0, SectionCreateError::Exist))
        );
        assert_eq!(outcome::<WriteError>(None), Err((0, WriteError::TryAgain)));
        assert_eq!(
            outcome::<WriteError>(Some(Forwarded::Unknown)),
            Err((0, WriteError::TryAgain))
        );
        assert_eq!(
            outcome::<SectionDeleteError>(Some(Forwarded::TimedOut)),
            Err((0, SectionDeleteError::Timeout))
        );
        assert_eq!(
            outcome::<ExpirationSetError>(answered(RESULT_BUSY, 0)),
            Err((0, ExpirationSetError::TryAgain))
        );
        assert_eq!(
            outcome::<WriteError>(answered(RESULT_REFUSED, 0)),
            Err((0, WriteError::NoActiveReplica))
        );
        assert_eq!(
            outcome::<WriteError>(answered(1000, 0)),
            Err((0, WriteError::TryAgain))
        );
    }
}
