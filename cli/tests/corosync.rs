//! Membership from real corosync: two and three corosync instances, each in
//! its own network namespace (knet over veth to a bridge) and mount
//! namespace (a private /run and /var/lib/corosync), and a `ckpt daemon
//! --membership corosync` beside each. No peer is configured: the daemons
//! learn each other from the CPG group.
//!
//! - Two nodes, corosync's traffic encrypted with an authkey that the
//!   daemons use as their cluster key: the daemons find each other and
//!   replicate, authenticated; when one daemon is killed, the other sees
//!   it leave at once and its synchronous writer stops waiting for that
//!   replica. (A killed daemon's connections close too, which also ends
//!   the link: this shows the writer released, not that the membership
//!   alone released it.)
//! - Three nodes, a partition: the primary's node is cut off. Its partition
//!   has no quorum: its daemon fences the copy and local writes get
//!   TRY_AGAIN. The majority side promotes a replica and goes on writing.
//!   When the partition heals, the old primary learns the newer term from
//!   the members' reports, demotes its copy, and converges to the new
//!   primary byte for byte. Once fenced, the old primary acknowledges
//!   nothing; what it accepted before corosync told it of the cut (the
//!   asynchronous mode's window, printed) is replaced by the new primary's
//!   history.
//!
//! Root only, and corosync installed (`.ci/run` installs it): otherwise they
//! skip with a message. Run with `--nocapture` to see the results (CI does).
//!
//! Without the `corosync` feature, one test says they were skipped.

#[cfg(feature = "corosync")]
mod common;

#[cfg(feature = "corosync")]
#[path = "corosync/cases.rs"]
mod cases;

#[cfg(not(feature = "corosync"))]
#[test]
fn corosync_membership_needs_the_corosync_feature() {
    eprintln!(
        "SKIPPED: the corosync tests need `--features corosync` (and corosync installed): \
         cargo test --release -p ckpt-cli --features corosync --test corosync"
    );
}
