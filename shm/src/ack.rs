//! Acknowledgements: how a synchronous writer learns that replicas hold its
//! frames.
//!
//! Each replica that a checkpoint's frames are shipped to has an [`AckSlot`]
//! in the segment's host-local header: its node id and the highest sequence
//! number it has acknowledged (it holds every frame up to it). The shipper
//! (the node daemon; a test consumer here) calls [`acknowledge`]; a writer in a
//! synchronous mode waits until the replicas it needs have acknowledged its
//! frame's number: a bounded spin, then a futex sleep on the `ack_epoch` word
//! with a timeout. Asynchronous writers never wait.
//!
//! The wake-up is a Dekker pair, each side with a SeqCst fence between its
//! store and its load: the acknowledger raises the slot's number, bumps the
//! epoch, fences and reads the sleeper count ([`must_wake`]); the waiter
//! registers, fences and reads the epoch ([`epoch_to_sleep_on`]) before it
//! checks the numbers and sleeps on the epoch it read. Either the
//! acknowledger sees the sleeper and wakes it, or the sleeper sees the new
//! epoch (the futex refuses to sleep on a changed word). Fences rather than
//! SeqCst accesses, because loom checks fences exactly (it models SeqCst
//! accesses as AcqRel, and then reports this very pattern as a lost wake-up).

use crate::layout::AckSlot;
use crate::sync::{fence, AtomicU32, Ordering};

/// Which replicas a writer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Every registered replica (`SA_CKPT_WR_ALL_REPLICAS`).
    All,
    /// The replica on this node (`SA_CKPT_WR_ACTIVE_REPLICA` when the active
    /// replica is elsewhere).
    Node(u32),
}

/// The node a synchronous checkpoint created on a host with a node daemon
/// is registered as, from its creation until the daemon adopts it (and has
/// registered the replicas it places, `Mapped::adopted`): no real node
/// (ids are at most `NODE_ID_MAX`, 2^31 - 1), it never acknowledges, so
/// writers wait for the daemon, at most their acknowledgement timeout.
pub const ADOPTION: u32 = ckpt_core::frame::NODE_ID_MAX + 1;

/// Why a replica could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotsFull;

/// Registers `node` as a replica (idempotent); its acknowledged number starts
/// at `from` (what it already holds).
pub fn register(slots: &[AckSlot], node: u32, from: u64) -> Result<(), SlotsFull> {
    if slot_of(slots, node).is_some() {
        return Ok(());
    }
    let tag = node as u64 + 1;
    for slot in slots {
        // Take the slot first (only then is its number ours to set), then set
        // the number, then name the node: a waiter sees the node only with
        // its starting number.
        if slot
            .node
            .compare_exchange(0, CLAIMING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            slot.seq.store(from, Ordering::Relaxed);
            // SYNC POINT: Release pairs with the Acquire loads of `node` in
            // `acked` and `acknowledge`: who sees the node sees the number.
            slot.node.store(tag, Ordering::Release);
            return Ok(());
        }
    }
    Err(SlotsFull)
}

/// The index of `node`'s slot, if registered.
pub fn slot_of(slots: &[AckSlot], node: u32) -> Option<usize> {
    let tag = node as u64 + 1;
    // SYNC POINT: Acquire pairs with the Release store of the node in
    // `register`.
    slots
        .iter()
        .position(|s| s.node.load(Ordering::Acquire) == tag)
}

/// A slot's node word while its registrant sets it up (no node id is this:
/// ids are at most 2^31 - 1, so their tags at most 2^31).
const CLAIMING: u64 = u64::MAX;

/// Removes `node` (it left the cluster): writers stop waiting for it.
pub fn unregister(slots: &[AckSlot], epoch: &AtomicU32, node: u32) -> bool {
    let tag = node as u64 + 1;
    for slot in slots {
        if slot
            .node
            .compare_exchange(tag, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // SYNC POINT: SeqCst bump, as in `acknowledge`: waiters re-check.
            epoch.fetch_add(1, Ordering::SeqCst);
            return true;
        }
    }
    false
}

/// Records that `node` holds every frame up to `seq`. Returns whether the
/// node is registered. The caller wakes sleepers if [`must_wake`] says so.
pub fn acknowledge(slots: &[AckSlot], epoch: &AtomicU32, node: u32, seq: u64) -> bool {
    let Some(slot) = slot_of(slots, node).map(|i| &slots[i]) else {
        return false;
    };
    // SYNC POINT: Release pairs with the Acquire loads in `acked`.
    slot.seq.fetch_max(seq, Ordering::Release);
    // SYNC POINT: the RMW's Release half pairs with the Acquire load in
    // `epoch_to_sleep_on`: a waiter that sees the new epoch sees the number.
    epoch.fetch_add(1, Ordering::SeqCst);
    true
}

/// After [`acknowledge`]: true if a writer sleeps and must be woken.
pub fn must_wake(waiters: &AtomicU32) -> bool {
    // SYNC POINT: SeqCst fence between the epoch bump and this load, paired
    // with the fence in `epoch_to_sleep_on` (Dekker).
    fence(Ordering::SeqCst);
    waiters.load(Ordering::Relaxed) != 0
}

/// For a waiter already counted in the sleeper count: the epoch to check the
/// numbers against and then sleep on.
pub fn epoch_to_sleep_on(epoch: &AtomicU32) -> u32 {
    // SYNC POINT: SeqCst fence between the sleeper registration and this load,
    // paired with the fence in `must_wake` (Dekker); Acquire pairs with the
    // epoch bump in `acknowledge`.
    fence(Ordering::SeqCst);
    epoch.load(Ordering::Acquire)
}

/// True if the replicas `need` names hold every frame up to `seq`.
pub fn acked(slots: &[AckSlot], need: Need, seq: u64) -> bool {
    match need {
        Need::All => slots.iter().all(|s| {
            // SYNC POINT: Acquire pairs with the Release store of the node in
            // `register` and the Release fetch_max in `acknowledge`.
            let node = s.node.load(Ordering::Acquire);
            node == 0 || node == CLAIMING || s.seq.load(Ordering::Acquire) >= seq
        }),
        Need::Node(node) => slots.iter().any(|s| {
            s.node.load(Ordering::Acquire) == node as u64 + 1
                && s.seq.load(Ordering::Acquire) >= seq
        }),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::AtomicU64;

    fn slots() -> Vec<AckSlot> {
        (0..4)
            .map(|_| AckSlot {
                node: AtomicU64::new(0),
                seq: AtomicU64::new(0),
            })
            .collect()
    }

    #[test]
    fn all_means_every_registered_replica_and_none_is_trivially_all() {
        let (s, e) = (slots(), AtomicU32::new(0));
        assert!(acked(&s, Need::All, 10), "no replicas: nothing to wait for");
        register(&s, 1, 0).unwrap();
        register(&s, 2, 5).unwrap();
        register(&s, 2, 5).unwrap();
        assert!(!acked(&s, Need::All, 5));
        assert!(acknowledge(&s, &e, 1, 7));
        assert!(acked(&s, Need::All, 5));
        assert!(!acked(&s, Need::All, 6));
        assert!(acked(&s, Need::Node(1), 7));
        assert!(
            !acked(&s, Need::Node(3), 0),
            "an unknown node never acknowledged"
        );
        // Numbers never go back.
        assert!(acknowledge(&s, &e, 1, 3));
        assert!(acked(&s, Need::Node(1), 7));
        assert!(!acknowledge(&s, &e, 9, 100));
        assert!(unregister(&s, &e, 2));
        assert!(acked(&s, Need::All, 7));
        assert_eq!(e.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn slots_run_out_with_an_error() {
        let s = slots();
        for node in 0..4 {
            register(&s, node, 0).unwrap();
        }
        assert_eq!(register(&s, 4, 0), Err(SlotsFull));
    }
}

#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use crate::sync::AtomicU64;
    use loom::sync::Arc;

    struct Shared {
        slots: [AckSlot; 1],
        epoch: AtomicU32,
        waiters: AtomicU32,
    }

    /// No lost wake-up: a writer that decides to sleep (its frame not yet
    /// acknowledged, on the epoch it read) is either woken by the
    /// acknowledger, or the epoch has moved on so the futex will not sleep.
    #[test]
    fn a_waiting_writer_is_never_left_asleep() {
        loom::model(|| {
            let s = Arc::new(Shared {
                slots: [AckSlot {
                    node: AtomicU64::new(0),
                    seq: AtomicU64::new(0),
                }],
                epoch: AtomicU32::new(0),
                waiters: AtomicU32::new(0),
            });
            register(&s.slots, 1, 0).unwrap();
            let acker = {
                let s = s.clone();
                loom::thread::spawn(move || {
                    acknowledge(&s.slots, &s.epoch, 1, 1);
                    must_wake(&s.waiters)
                })
            };
            s.waiters.fetch_add(1, Ordering::SeqCst);
            let seen = epoch_to_sleep_on(&s.epoch);
            let done = acked(&s.slots, Need::All, 1);
            let woke = acker.join().unwrap();
            // Not acknowledged when checked: the writer sleeps on `seen`. It
            // read the epoch before the bump (after it, it would have seen the
            // number), so the acknowledger must have seen it registered.
            assert!(done || woke, "lost wake-up: slept on epoch {seen}");
        });
    }

    /// Two replicas registering at once each end with their own starting
    /// number (never the other's, as when the number was set before the slot
    /// was taken).
    #[test]
    fn racing_registrations_keep_their_own_numbers() {
        loom::model(|| {
            let slots = Arc::new([0, 1].map(|_| AckSlot {
                node: AtomicU64::new(0),
                seq: AtomicU64::new(0),
            }));
            let other = {
                let slots = slots.clone();
                loom::thread::spawn(move || register(&*slots, 2, 9).unwrap())
            };
            register(&*slots, 1, 5).unwrap();
            other.join().unwrap();
            for s in slots.iter() {
                let node = s.node.load(Ordering::Acquire);
                let want = match node {
                    2 => 5,
                    3 => 9,
                    other => panic!("slot node word {other}"),
                };
                assert_eq!(s.seq.load(Ordering::Relaxed), want, "node tag {node}");
            }
        });
    }
}
