//! Waiting for replicas: the acknowledged-sequence words of the segment, the
//! acknowledgement a shipper records, and the wait of a synchronous writer.

use std::time::{Duration, Instant};

use crate::ack::{self, Need, SlotsFull};
use crate::notify;
use crate::segment::Mapped;

/// How long a waiting writer spins before it sleeps.
const ACK_SPIN: Duration = Duration::from_micros(20);

impl Mapped {
    /// Registers `node` as a replica that holds every frame up to `from`:
    /// from now on, synchronous writers wait for it.
    pub fn register_replica(&self, node: u32, from: u64) -> Result<(), SlotsFull> {
        ack::register(&self.header().acks, node, from)
    }

    /// `node` left: writers stop waiting for it (and are woken to re-check).
    pub fn unregister_replica(&self, node: u32) {
        let h = self.header();
        if ack::unregister(&h.acks, &h.ack_epoch, node) && ack::must_wake(&h.ack_waiters) {
            notify::wake_all32(&h.ack_epoch);
        }
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
