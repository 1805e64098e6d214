//! Waiting for replicas: the acknowledged-sequence words of the segment, the
//! acknowledgement a shipper records, and the wait of a synchronous writer.

use std::time::{Duration, Instant};

use crate::ack::{self, Need, SlotsFull};
use crate::notify;
use crate::segment::{Mapped, Segment};
use crate::sync::Ordering;

/// How long a waiting writer spins before it sleeps.
const ACK_SPIN: Duration = Duration::from_micros(20);

impl Segment {
    /// A shipping link of this handle for the replica on `node` begins:
    /// registers it ([`Mapped::register_replica`], from 0) and counts the
    /// link. Links to one node may overlap (a daemon starts a new one while
    /// the old one winds down); they share the node's slot, which
    /// [`Segment::unlink_replica`] unregisters when the last of them ends.
    pub fn link_replica(&self, node: u32) -> Result<(), SlotsFull> {
        let mut links = self.replica_links.lock().unwrap_or_else(|p| p.into_inner());
        self.register_replica(node, 0)?;
        match links.iter_mut().find(|(n, _)| *n == node) {
            Some((_, count)) => *count += 1,
            None => links.push((node, 1)),
        }
        Ok(())
    }

    /// A shipping link counted by [`Segment::link_replica`] ends; the last
    /// of a node's unregisters it.
    pub fn unlink_replica(&self, node: u32) {
        let mut links = self.replica_links.lock().unwrap_or_else(|p| p.into_inner());
        let Some(i) = links.iter().position(|(n, _)| *n == node) else {
            return;
        };
        links[i].1 -= 1;
        if links[i].1 == 0 {
            links.swap_remove(i);
            self.unregister_replica(node);
        }
    }
}

impl Mapped {
    /// Registers `node` as a replica that holds every frame up to `from`:
    /// from now on, synchronous writers wait for it. Its host has nobody
    /// with it open until its link says so ([`Mapped::set_remote_openers`]);
    /// a count left in its slot (a daemon that died) is dropped as a close.
    pub fn register_replica(&self, node: u32, from: u64) -> Result<(), SlotsFull> {
        ack::register(&self.header().acks, node, from)?;
        self.set_remote_openers(node, 0);
        Ok(())
    }

    /// `node` left: writers stop waiting for it (and are woken to re-check),
    /// and its host's openers no longer keep the checkpoint (the retention
    /// clock starts now if nobody else has it open).
    pub fn unregister_replica(&self, node: u32) {
        self.set_remote_openers(node, 0);
        let h = self.header();
        if ack::unregister(&h.acks, &h.ack_epoch, node) && ack::must_wake(&h.ack_waiters) {
            notify::wake_all32(&h.ack_epoch);
        }
    }

    /// The node daemon took this checkpoint in hand: it registered the
    /// replicas it places (their links come up and catch up from frame 1),
    /// so writers stop waiting for the daemon itself ([`ack::ADOPTION`]).
    /// Idempotent.
    pub fn adopted(&self) {
        let h = self.header();
        if ack::unregister(&h.acks, &h.ack_epoch, ack::ADOPTION) && ack::must_wake(&h.ack_waiters) {
            notify::wake_all32(&h.ack_epoch);
        }
    }

    /// Drops every replica's count of openers (as closes): what a daemon
    /// starting to ship this checkpoint does, since counts left by an
    /// earlier daemon are not its links' (theirs come within their first
    /// acknowledgements).
    pub fn forget_remote_openers(&self) {
        for i in 0..self.header().remote_openers.len() {
            self.set_remote_count(i, 0);
        }
    }

    /// The replica on `node` says `openers` processes of its host have it
    /// open. When the last of them, cluster-wide, closes, the retention
    /// clock starts (a replica's host counts as an opener of the primary:
    /// SA's retention runs once the checkpoint is closed everywhere).
    pub fn set_remote_openers(&self, node: u32, openers: u32) {
        if let Some(i) = ack::slot_of(&self.header().acks, node) {
            self.set_remote_count(i, openers);
        }
    }

    fn set_remote_count(&self, i: usize, openers: u32) {
        let h = self.header();
        let count = &h.remote_openers[i];
        // SYNC POINT: SeqCst, as the retention clock's words. A count about
        // to drop to 0 moves the clock first (if it runs: nobody has it open
        // here), then the count; `retention_expired` reads the counts, then
        // the clock: one that sees the count at 0 sees the clock moved.
        // Every acknowledgement repeats the count: an unchanged one stores
        // nothing (no shared-line write per acknowledgement).
        let before = count.load(Ordering::SeqCst);
        if before == u64::from(openers) {
            return;
        }
        if openers == 0 {
            let now = crate::segment::now().0.max(1);
            let mut closed = h.last_close_ns.load(Ordering::SeqCst);
            while closed != 0 && closed < now {
                match h.last_close_ns.compare_exchange(
                    closed,
                    now,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(_) => break,
                    Err(seen) => closed = seen,
                }
            }
        }
        count.store(u64::from(openers), Ordering::SeqCst);
    }

    /// True if a replica's host has the checkpoint open.
    pub fn remote_open(&self) -> bool {
        self.header()
            .remote_openers
            .iter()
            .any(|o| o.load(Ordering::SeqCst) > 0)
    }

    /// Records that `node` holds every frame up to `seq`, waking writers that
    /// wait for it. False if `node` is not registered.
    pub fn acknowledge(&self, node: u32, seq: u64) -> bool {
        let h = self.header();
        let known = ack::acknowledge(&h.acks, &h.ack_epoch, node, seq);
        if known && ack::must_wake(&h.ack_waiters) {
            notify::wake_all32(&h.ack_epoch);
        }
        known
    }

    /// True if the replicas `need` names hold every frame up to `seq`.
    pub fn acknowledged(&self, need: Need, seq: u64) -> bool {
        ack::acked(&self.header().acks, need, seq)
    }

    /// Waits until the replicas `need` names hold every frame up to `seq`: a
    /// short spin, then futex sleeps, at most `timeout` in all. Returns
    /// whether they do.
    pub fn wait_acknowledged(&self, need: Need, seq: u64, timeout: Duration) -> bool {
        let h = self.header();
        if ack::acked(&h.acks, need, seq) {
            return true;
        }
        let start = Instant::now();
        while start.elapsed() < ACK_SPIN.min(timeout) {
            std::hint::spin_loop();
            if ack::acked(&h.acks, need, seq) {
                return true;
            }
        }
        let _sleeper = notify::Sleeper::register(&h.ack_waiters);
        loop {
            // The waiter's half of the Dekker pair with `ack::must_wake`.
            let epoch = ack::epoch_to_sleep_on(&h.ack_epoch);
            if ack::acked(&h.acks, need, seq) {
                return true;
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return false;
            }
            notify::wait32(&h.ack_epoch, epoch, left);
        }
    }
}
