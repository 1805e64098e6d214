//! Replicas: a segment rebuilt from a primary's frames alone, through the same
//! mutation path, equals the primary; what a replica refuses.

use ckpt_core::error::WriteError;
use ckpt_core::frame::{FrameHeader, FrameKind};
use ckpt_core::{
    CheckpointName, CreationAttributes, CreationFlags, OpenFlags, SectionsChosen, Time, UpdateMode,
};
use ckpt_shm::ops::checkpoint::{ActiveFail, PromoteFail};
use ckpt_shm::ops::{Applied, ApplyError, ClaimFail};
use ckpt_shm::{Config, Consumer, Segment, WriteElement};

fn dir_config(dir: &tempfile::TempDir) -> Config {
    Config {
        log_bytes: Some(1 << 20),
        ..Config::with_dir(dir.path())
    }
}

fn rwc() -> OpenFlags {
    OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE
}

/// Two hosts' directories (kept until dropped) and configurations, and a
/// primary of checkpoint `name` on the first: asynchronous, `collocated` or
/// not, 4 sections of 64 bytes.
struct TwoHosts {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    pc: Config,
    rc: Config,
    primary: Segment,
}

fn two_hosts(name: &str, collocated: bool) -> TwoHosts {
    let (pd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pc, rc) = (dir_config(&pd), dir_config(&rd));
    let name = CheckpointName::new(name).unwrap();
    let attrs = CreationAttributes {
        flags: CreationFlags::new(UpdateMode::ActiveReplica, collocated),
        ..CreationAttributes::new(4, 64)
    };
    let primary = Segment::open(&pc, &name, rwc(), Some(&attrs)).unwrap();
    TwoHosts {
        _dirs: (pd, rd),
        pc,
        rc,
        primary,
    }
}

/// The replica, made from the primary's first frame (its creation).
fn replica_of(consumer: &mut Consumer<'_>, replica_config: &Config) -> Segment {
    let frame = consumer.next_frame().unwrap().unwrap();
    assert_eq!(frame.header.kind, FrameKind::CheckpointCreated);
    Segment::open_replica(replica_config, &frame).unwrap()
}

/// Applies every frame the consumer has not passed yet; returns their headers.
fn ship(consumer: &mut Consumer<'_>, replica: &Segment) -> Vec<FrameHeader> {
    let mut shipped = Vec::new();
    while let Some(frame) = consumer.next_frame().unwrap() {
        shipped.push(frame.header);
        assert_eq!(
            replica.apply(&frame),
            Ok(Applied::Done),
            "{:?}",
            frame.header
        );
    }
    shipped
}

/// Owned copies of the frames the consumer has not passed yet, as a
/// receiver has them (decode each with `frame::decode(bytes, false)`).
fn owned_frames(consumer: &mut Consumer<'_>) -> Vec<Vec<u8>> {
    let mut bytes = Vec::new();
    while let Some(f) = consumer.next_frame().unwrap() {
        let mut b = vec![0u8; f.header.frame_bytes()];
        ckpt_core::frame::encode(&f.header, f.id, f.data, &mut b).unwrap();
        bytes.push(b);
    }
    bytes
}

/// (id, data, version, expiration, lastUpdate) of a section.
type Copied = (Vec<u8>, Vec<u8>, u64, Time, Time);

/// Every section, sorted.
fn sections(seg: &Segment) -> Vec<Copied> {
    let mut out = Vec::new();
    let mut views = Vec::new();
    seg.for_each_section(SectionsChosen::Any, |v| {
        views.push((v.section, v.id.to_vec(), v.expiration, v.last_update))
    });
    for (s, id, exp, t) in views {
        let (data, meta) = seg.read_to_vec(s).unwrap();
        out.push((id, data, meta.version, exp, t));
    }
    out.sort();
    out
}

#[test]
fn a_replica_fed_the_log_alone_equals_the_primary_and_its_standbys_see_the_same_frames() {
    let (pd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pc, rc) = (dir_config(&pd), dir_config(&rd));
    let name = CheckpointName::new("safCkpt=replicated").unwrap();
    let primary = Segment::open(&pc, &name, rwc(), Some(&CreationAttributes::new(8, 128))).unwrap();
    let mut consumer = primary.consumer(Some(0));
    let replica = replica_of(&mut consumer, &rc);
    // A standby on the replica's host follows the replica's own ring.
    let mut standby = replica.consumer(None);

    primary.set_active_replica(7).unwrap();
    let (a, _) = primary
        .create_section(Some(b"a"), Time::END, b"alpha")
        .unwrap();
    let (b, _) = primary
        .create_section(None, Time(4_102_444_800_000_000_000), b"generated")
        .unwrap();
    primary.write(a, Some(5), b"-beta").unwrap();
    primary.write(b, None, b"over").unwrap();
    let elements = [
        WriteElement {
            section: a,
            offset: Some(0),
            data: b"A",
        },
        WriteElement {
            section: b,
            offset: None,
            data: b"vec",
        },
    ];
    primary.write_many(&elements).unwrap();
    primary
        .overwrite_with(a, 3, |buf| buf.copy_from_slice(b"zcp"))
        .unwrap();
    primary
        .set_expiration(a, Time(4_102_444_800_000_000_001))
        .unwrap();
    primary.set_retention(Time::from_secs(5)).unwrap();
    let (c, _) = primary
        .create_section(Some(b"c"), Time::END, b"doomed")
        .unwrap();
    primary.delete_section(c).unwrap();
    let shipped = ship(&mut consumer, &replica);

    assert_eq!(sections(&replica), sections(&primary));
    assert_eq!(replica.usage(), primary.usage());
    assert_eq!(replica.last_seq(), primary.last_seq());
    let (p_ar, r_ar) = (primary.active_replica(), replica.active_replica());
    assert_eq!(p_ar, r_ar);
    assert_eq!(r_ar.unwrap().node, 7);
    assert_eq!(
        replica
            .header()
            .retention_ns
            .load(std::sync::atomic::Ordering::SeqCst),
        Time::from_secs(5).0
    );
    // The replica republished exactly the frames it applied.
    let mut mirrored = Vec::new();
    while let Some(frame) = standby.next_frame().unwrap() {
        mirrored.push(frame.header);
    }
    assert_eq!(mirrored, shipped);
    assert!(shipped
        .iter()
        .any(|h| h.flags & ckpt_core::frame::FLAG_MORE != 0));
}

#[test]
fn a_replica_refuses_local_writers_gaps_other_incarnations_and_deposed_terms() {
    let (pd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pc, rc) = (dir_config(&pd), dir_config(&rd));
    let name = CheckpointName::new("refusals").unwrap();
    let primary = Segment::open(&pc, &name, rwc(), Some(&CreationAttributes::new(8, 64))).unwrap();
    let mut consumer = primary.consumer(Some(0));
    primary
        .create_section(Some(b"k"), Time::END, b"v1")
        .unwrap();
    let replica = replica_of(&mut consumer, &rc);
    ship(&mut consumer, &replica);
    assert!(replica.is_replica());

    // Local writers are refused: only the primary's frames change a replica.
    let k = replica.lookup(b"k").unwrap().unwrap();
    assert_eq!(
        replica.write(k, None, b"local"),
        Err(WriteError::NoActiveReplica)
    );
    assert!(replica.create_section(Some(b"x"), Time::END, b"").is_err());
    assert!(replica.set_retention(Time(0)).is_err());

    // Re-applying what it holds changes nothing; a gap is refused.
    let mut again = primary.consumer(Some(0));
    while let Some(f) = again.next_frame().unwrap() {
        if f.header.seq > 1 {
            assert_eq!(replica.apply(&f), Ok(Applied::Already));
        }
    }
    let k_primary = primary.lookup(b"k").unwrap().unwrap();
    primary.write(k_primary, None, b"v2").unwrap();
    primary.write(k_primary, None, b"v3").unwrap();
    let mut late = primary.consumer(Some(consumer.position()));
    let v2 = late.next_frame().unwrap().unwrap().header.seq;
    let v3 = late.next_frame().unwrap().unwrap();
    assert_eq!(
        replica.apply(&v3),
        Err(ApplyError::Gap { expected: v2 }),
        "v3 before v2"
    );

    // A frame of another incarnation (the name re-created elsewhere) is refused.
    let mut foreign = v3;
    foreign.header.incarnation ^= 1;
    assert!(matches!(
        replica.apply(&foreign),
        Err(ApplyError::Incarnation { .. })
    ));

    // After a change of active replica (a new term), the deposed active's
    // frames, written in the old term, are refused.
    let old_term = v3.header.term;
    drop(late);
    primary.set_active_replica(2).unwrap();
    let mut rest = primary.consumer(Some(consumer.position()));
    while let Some(f) = rest.next_frame().unwrap() {
        assert_eq!(replica.apply(&f), Ok(Applied::Done));
    }
    let mut deposed = primary.consumer(Some(consumer.position()));
    let mut stale = deposed.next_frame().unwrap().unwrap();
    stale.header.seq = replica.last_seq() + 1;
    assert_eq!(stale.header.term, old_term);
    assert_eq!(
        replica.apply(&stale),
        Err(ApplyError::StaleTerm {
            ours: old_term + 1,
            frame: old_term
        })
    );
    assert_eq!(sections(&replica), sections(&primary));
}

#[test]
fn a_superseded_replica_is_never_promoted() {
    let TwoHosts {
        _dirs, rc, primary, ..
    } = two_hosts("superseded", true);
    primary.set_active_replica(1).unwrap();
    let mut consumer = primary.consumer(Some(0));
    let replica = replica_of(&mut consumer, &rc);
    ship(&mut consumer, &replica);
    assert!(!replica.is_superseded());
    // A snapshot put a new file under the name: a standby still on this one
    // cannot make it the primary (nobody would ship what it writes).
    replica.supersede().unwrap();
    assert!(replica.is_superseded() && replica.is_replica());
    assert_eq!(
        replica.promote(2),
        Err(ActiveFail::Claim(ClaimFail::Contended))
    );
    assert_eq!(
        replica.promote_caught_up(2, std::time::Duration::ZERO),
        Err(PromoteFail::Active(ActiveFail::Claim(ClaimFail::Contended)))
    );
    assert!(replica.is_replica());
}

#[test]
fn an_elected_replica_is_promoted_only_in_the_term_it_was_elected_in() {
    let TwoHosts {
        _dirs, rc, primary, ..
    } = two_hosts("elected", false);
    let mut consumer = primary.consumer(Some(0));
    let replica = replica_of(&mut consumer, &rc);
    ship(&mut consumer, &replica);
    replica.fence(true).unwrap();
    let term = replica.current_term();
    // Elected while it held another term (a newer primary's frames came
    // since): refused, still a fenced replica.
    assert_eq!(
        replica.promote_elected(2, term + 1),
        Err(ActiveFail::Claim(ClaimFail::Contended))
    );
    assert!(replica.is_replica() && replica.is_fenced());
    // In its own term: the fence is lifted and it is the primary.
    assert_eq!(replica.promote_elected(2, term), Ok(term + 1));
    assert!(!replica.is_replica() && !replica.is_fenced());
}

#[test]
fn a_promoted_replica_is_writable_in_a_new_term_and_applies_nothing() {
    let TwoHosts {
        _dirs, rc, primary, ..
    } = two_hosts("promote", false);
    // Non-collocated: placed on this node (0) at creation; the replica copies it.
    assert_eq!(primary.active_replica().unwrap().node, 0);
    let mut consumer = primary.consumer(Some(0));
    primary
        .create_section(Some(b"s"), Time::END, b"state")
        .unwrap();
    let replica = replica_of(&mut consumer, &rc);
    ship(&mut consumer, &replica);
    assert_eq!(replica.active_replica(), primary.active_replica());

    let term = replica.promote(9).unwrap();
    assert_eq!(term, primary.active_replica().unwrap().term + 1);
    assert!(!replica.is_replica());
    let s = replica.lookup(b"s").unwrap().unwrap();
    replica.write(s, None, b"new state").unwrap();
    let (data, _) = replica.read_to_vec(s).unwrap();
    assert_eq!(data, b"new state");
    // The old primary's next frame finds a primary, not a replica.
    let p = primary.lookup(b"s").unwrap().unwrap();
    primary.write(p, None, b"split brain").unwrap();
    let frame = consumer.next_frame().unwrap().unwrap();
    assert_eq!(replica.apply(&frame), Err(ApplyError::NotReplica));
}

#[test]
fn large_mutations_are_staged_into_a_replica_and_equal_the_primary() {
    let (pd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // 64 KiB rings: frames of at most 16 KiB, so 50 KB of data goes in stages.
    let small = |dir: &tempfile::TempDir| Config {
        log_bytes: Some(64 * 1024),
        ..Config::with_dir(dir.path())
    };
    let (pc, rc) = (small(&pd), small(&rd));
    let name = CheckpointName::new("staged").unwrap();
    let primary =
        Segment::open(&pc, &name, rwc(), Some(&CreationAttributes::new(4, 60_000))).unwrap();
    let mut consumer = primary.consumer(Some(0));
    let replica = replica_of(&mut consumer, &rc);
    // A standby of the replica, drained after each mutation (the ring holds
    // about one of them).
    let mut standby = replica.consumer(None);
    let mut mirror = |shipped: Vec<FrameHeader>| {
        let mut mirrored = Vec::new();
        while let Some(f) = standby.next_frame().unwrap() {
            mirrored.push(f.header);
        }
        assert_eq!(
            mirrored, shipped,
            "the replica's ring carries the same frames"
        );
        shipped
    };
    let data: Vec<u8> = (0..50_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let (big, _) = primary
        .create_section(Some(b"big"), Time::END, &data)
        .unwrap();
    let created = mirror(ship(&mut consumer, &replica));
    assert_eq!(created.len(), 4, "3 stages and the create: {created:?}");
    primary.write(big, Some(9_000), &data[..40_000]).unwrap();
    mirror(ship(&mut consumer, &replica));
    assert_eq!(sections(&replica), sections(&primary));
    primary.write(big, None, &data[7..47_007]).unwrap();
    mirror(ship(&mut consumer, &replica));
    primary
        .create_section(Some(b"small"), Time::END, b"after")
        .unwrap();
    mirror(ship(&mut consumer, &replica));
    assert_eq!(sections(&replica), sections(&primary));
    assert_eq!(replica.usage(), primary.usage());
}

#[test]
fn a_replica_drops_stages_the_primary_aborted() {
    let (pd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let small = |dir: &tempfile::TempDir| Config {
        log_bytes: Some(64 * 1024),
        ..Config::with_dir(dir.path())
    };
    let (pc, rc) = (small(&pd), small(&rd));
    let name = CheckpointName::new("aborted").unwrap();
    let primary =
        Segment::open(&pc, &name, rwc(), Some(&CreationAttributes::new(4, 60_000))).unwrap();
    let mut consumer = primary.consumer(Some(0));
    let (k, _) = primary
        .create_section(Some(b"k"), Time::END, b"before")
        .unwrap();
    let replica = replica_of(&mut consumer, &rc);
    ship(&mut consumer, &replica);
    let before = sections(&replica);
    // A large overwrite whose writer died after its stages: the replica gets
    // the stages, then the StageAbort the successor logged in its place.
    primary.write(k, None, &[7u8; 40_000]).unwrap();
    let mut last = None;
    while let Some(f) = consumer.next_frame().unwrap() {
        if f.header.kind == FrameKind::Stage {
            assert_eq!(replica.apply(&f), Ok(Applied::Done));
        } else {
            last = Some((f.header, f.id.to_vec()));
        }
    }
    let (own, id) = last.unwrap();
    let abort = FrameHeader {
        kind: FrameKind::StageAbort,
        flags: 0,
        id_len: id.len() as u16,
        data_len: 0,
        arg: 0,
        version: 0,
        ..own
    };
    let mut bytes = vec![0u8; abort.frame_bytes()];
    ckpt_core::frame::encode(&abort, &id, &[], &mut bytes).unwrap();
    let frame = ckpt_core::frame::decode(&bytes, false).unwrap();
    assert_eq!(replica.apply(&frame), Ok(Applied::Done));
    assert_eq!(
        sections(&replica),
        before,
        "the aborted overwrite left nothing"
    );
    // The section is writable again by the next (regular) frame.
    assert_eq!(replica.last_seq(), own.seq);
}

#[test]
fn a_batch_applies_under_one_claim_up_to_its_first_refused_frame() {
    let (pd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pc, rc) = (dir_config(&pd), dir_config(&rd));
    let name = CheckpointName::new("safCkpt=batch").unwrap();
    let primary = Segment::open(&pc, &name, rwc(), Some(&CreationAttributes::new(8, 128))).unwrap();
    let mut consumer = primary.consumer(Some(0));
    let replica = replica_of(&mut consumer, &rc);
    let (s, _) = primary
        .create_section(Some(b"s"), Time::END, b"v0")
        .unwrap();
    for n in 0..20u32 {
        primary.write(s, None, &n.to_le_bytes()).unwrap();
    }
    // Owned copies of the 21 frames, as a receiver has them.
    let bytes = owned_frames(&mut consumer);
    let frames: Vec<_> = bytes
        .iter()
        .map(|b| ckpt_core::frame::decode(b, false).unwrap())
        .collect();
    // The first ten, then again the first twelve (ten held already).
    assert_eq!(replica.apply_all(frames[..10].iter().copied()), Ok(10));
    assert_eq!(replica.apply_all(frames[..12].iter().copied()), Ok(12));
    // A gap: frames before it are applied, the rest is not.
    let gapped = frames[12..14].iter().chain(&frames[15..]).copied();
    assert_eq!(
        replica.apply_all(gapped),
        Err((
            2,
            ApplyError::Gap {
                expected: frames[14].header.seq
            }
        ))
    );
    assert_eq!(replica.last_seq(), frames[13].header.seq);
    assert_eq!(replica.apply_all(frames[14..].iter().copied()), Ok(7));
    assert_eq!(sections(&replica), sections(&primary));
}

#[test]
fn a_replica_behind_a_live_primary_is_promoted_only_once_it_caught_up() {
    use ckpt_shm::ops::checkpoint::PromoteFail;
    use std::time::Duration;
    let (pd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pc, rc) = (dir_config(&pd), dir_config(&rd));
    let name = CheckpointName::new("promote_caught_up").unwrap();
    let attrs = CreationAttributes::new(8, 64);
    let primary = Segment::open(&pc, &name, rwc(), Some(&attrs)).unwrap();
    let mut consumer = primary.consumer(Some(0));
    let replica = replica_of(&mut consumer, &rc);
    ship(&mut consumer, &replica);
    for i in 0..5u8 {
        primary.create_section(Some(&[i]), Time::END, b"x").unwrap();
    }
    // The link heard the primary ship 5 frames the replica does not hold
    // yet: while the primary is heard from, no promotion.
    replica.heard_primary(Some(primary.last_seq()));
    assert_eq!(replica.behind_live_primary(Duration::from_secs(1)), 5);
    assert_eq!(
        replica.promote_caught_up(2, Duration::from_millis(20)),
        Err(PromoteFail::Behind { frames: 5 })
    );
    assert!(replica.is_replica());
    // A primary gone quiet counts as gone: nothing to wait for.
    assert_eq!(replica.behind_live_primary(Duration::ZERO), 0);
    // Once the frames are in, it is promoted.
    ship(&mut consumer, &replica);
    let term = replica
        .promote_caught_up(2, Duration::from_millis(20))
        .unwrap();
    assert_eq!(term, primary.current_term() + 1);
    assert!(!replica.is_replica());
}

#[test]
fn a_promoted_replica_starts_its_retention_clock_over() {
    let (pd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pc, rc) = (dir_config(&pd), dir_config(&rd));
    let name = CheckpointName::new("promote_retention").unwrap();
    let attrs = CreationAttributes {
        retention_ns: 50_000_000,
        ..CreationAttributes::new(4, 64)
    };
    let primary = Segment::open(&pc, &name, rwc(), Some(&attrs)).unwrap();
    let mut consumer = primary.consumer(Some(0));
    let replica = replica_of(&mut consumer, &rc);
    ship(&mut consumer, &replica);
    // A standby opened the replica once and closed it, long ago.
    drop(Segment::open(&rc, &name, OpenFlags::READ, None).unwrap());
    std::thread::sleep(std::time::Duration::from_millis(100));
    replica.promote(2).unwrap();
    // The sweep right after the promotion keeps the new primary.
    let listed = ckpt_shm::dir::list(&rc).unwrap();
    assert!(
        listed.iter().all(|l| !l.removed),
        "the promoted checkpoint was swept"
    );
    assert!(Segment::open(&rc, &name, OpenFlags::READ, None).is_ok());
}

#[test]
fn a_fenced_copy_refuses_local_writers_and_promotion_and_still_applies() {
    use ckpt_shm::ops::checkpoint::ActiveFail;
    use ckpt_shm::ops::ClaimFail;
    let TwoHosts {
        _dirs,
        pc,
        rc,
        primary,
        ..
    } = two_hosts("fenced", false);
    let mut consumer = primary.consumer(Some(0));
    primary
        .create_section(Some(b"s"), Time::END, b"one")
        .unwrap();
    let replica = replica_of(&mut consumer, &rc);
    ship(&mut consumer, &replica);

    // A fenced primary: writes are refused as TRY_AGAIN, reads go on.
    primary.fence(true).unwrap();
    assert!(primary.is_fenced() && !primary.is_replica());
    let s = primary.lookup(b"s").unwrap().unwrap();
    assert_eq!(primary.write(s, None, b"two"), Err(WriteError::TryAgain));
    assert_eq!(
        primary.set_active_replica(3),
        Err(ActiveFail::Claim(ClaimFail::NoQuorum))
    );
    assert_eq!(primary.read_to_vec(s).unwrap().0, b"one");
    // The fence outlives a demotion and a promotion changes nothing of it.
    primary.demote().unwrap();
    assert!(primary.is_fenced() && primary.is_replica());
    assert_eq!(
        primary.promote(1),
        Err(ActiveFail::Claim(ClaimFail::NoQuorum))
    );
    assert!(primary.is_replica(), "a fenced copy was promoted");
    primary.fence(false).unwrap();
    primary.promote(1).unwrap();
    assert!(!primary.is_fenced());
    primary.write(s, None, b"two").unwrap();

    // A fenced replica still applies its primary's frames.
    replica.fence(true).unwrap();
    ship(&mut consumer, &replica);
    let r = replica.lookup(b"s").unwrap().unwrap();
    assert_eq!(replica.read_to_vec(r).unwrap().0, b"two");
    assert_eq!(
        replica.promote(2),
        Err(ActiveFail::Claim(ClaimFail::NoQuorum))
    );

    // While the directory holds the fence marker, new checkpoints are born
    // fenced; once it is gone, they are born writable.
    ckpt_shm::dir::set_fence_marker(&pc, true).unwrap();
    let late = CheckpointName::new("born_fenced").unwrap();
    let born = Segment::open(&pc, &late, rwc(), Some(primary.attributes())).unwrap();
    assert!(born.is_fenced());
    assert_eq!(
        born.create_section(Some(b"x"), Time::END, b"x").map(drop),
        Err(ckpt_core::error::SectionCreateError::TryAgain)
    );
    ckpt_shm::dir::set_fence_marker(&pc, false).unwrap();
    ckpt_shm::dir::set_fence_marker(&pc, false).unwrap();
    let later = CheckpointName::new("born_free").unwrap();
    assert!(
        !Segment::open(&pc, &later, rwc(), Some(primary.attributes()))
            .unwrap()
            .is_fenced()
    );
    assert!(
        ckpt_shm::dir::list(&pc).unwrap().len() == 3,
        "the marker is not listed as a checkpoint"
    );
}

#[test]
fn a_replica_takes_its_primarys_ring_size_unless_its_host_sets_a_larger_one() {
    let (pd, rd, od) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let pc = Config {
        log_bytes: Some(1 << 21),
        ..Config::with_dir(pd.path())
    };
    let name = CheckpointName::new("ring_size").unwrap();
    let attrs = CreationAttributes::new(4, 64);
    let primary = Segment::open(&pc, &name, rwc(), Some(&attrs)).unwrap();
    let mut consumer = primary.consumer(Some(0));
    let created = consumer.next_frame().unwrap().unwrap();
    // No ring size on the replica's host: the primary's, not one sized
    // from the attributes (which would be smaller here).
    let replica = Segment::open_replica(&Config::with_dir(rd.path()), &created).unwrap();
    assert_eq!(replica.geometry().log_bytes, 1 << 21);
    // The host's own setting, if larger, wins; a smaller one does not (a
    // replica's ring must take the primary's largest frames: below).
    let larger = Config {
        log_bytes: Some(1 << 22),
        ..Config::with_dir(od.path())
    };
    let replica = Segment::open_replica(&larger, &created).unwrap();
    assert_eq!(replica.geometry().log_bytes, 1 << 22);
    drop(replica);
    let od = tempfile::tempdir().unwrap();
    let own = Config {
        log_bytes: Some(64 << 10),
        ..Config::with_dir(od.path())
    };
    let replica = Segment::open_replica(&own, &created).unwrap();
    assert_eq!(replica.geometry().log_bytes, 1 << 21);
    // The largest frame the primary logs whole (a quarter of its ring)
    // applies (a 64 KiB ring refused it: `Diverged`, for ever).
    let attrs_big = CreationAttributes::new(2, 400 << 10);
    let big_name = CheckpointName::new("ring_size_big").unwrap();
    let big = Segment::open(&pc, &big_name, rwc(), Some(&attrs_big)).unwrap();
    big.create_section(Some(b"k"), Time::END, &vec![7u8; 400 << 10])
        .unwrap();
    let mut from_big = big.consumer(Some(0));
    let big_created = from_big.next_frame().unwrap().unwrap();
    let big_replica = Segment::open_replica(&own, &big_created).unwrap();
    while let Some(f) = from_big.next_frame().unwrap() {
        big_replica.apply(&f).unwrap();
    }
    let k = big_replica.lookup(b"k").unwrap().unwrap();
    assert_eq!(big_replica.read_to_vec(k).unwrap().0, vec![7u8; 400 << 10]);
    // Its log still begins with the primary's creation frame, byte for
    // byte (its standbys and its own replicas see what the primary logged).
    let mut own_log = replica.consumer(Some(0));
    let first = own_log.next_frame().unwrap().unwrap();
    assert_eq!(
        (first.header, first.id, first.data),
        (created.header, created.id, created.data)
    );
}

#[test]
fn remote_openers_keep_a_checkpoint_and_the_last_of_them_starts_its_clock() {
    let d = tempfile::tempdir().unwrap();
    let c = dir_config(&d);
    let name = CheckpointName::new("remote_openers").unwrap();
    let attrs = CreationAttributes {
        retention_ns: 1_000_000_000,
        ..CreationAttributes::new(4, 64)
    };
    let primary = Segment::open(&c, &name, rwc(), Some(&attrs)).unwrap();
    // A link's registration: not an open.
    let link = Segment::open_for_link(&c, &name, OpenFlags::READ).unwrap();
    link.register_replica(2, 0).unwrap();
    link.set_remote_openers(2, 1);
    drop(primary);
    let later = |s: i64| Time(ckpt_shm::segment::now().0 + s * 1_000_000_000);
    assert!(
        !link.retention_expired(later(5)),
        "open on a replica's host: never expired"
    );
    // The remote opener closes: the clock starts now, not at the local
    // close.
    link.set_remote_openers(2, 0);
    assert!(!link.retention_expired(later(0)));
    assert!(link.retention_expired(later(2)));
    // A count a dead daemon left behind is dropped, as a close, when a new
    // link registers the replica (or a daemon starts shipping).
    link.set_remote_openers(2, 3);
    link.register_replica(2, 0).unwrap();
    assert!(!link.remote_open());
    link.set_remote_openers(2, 3);
    link.forget_remote_openers();
    assert!(!link.remote_open() && !link.retention_expired(later(0)));
}

/// A primary offered the same term by a higher node is deposed and marked
/// diverged (counted as holding nothing until a snapshot replaces it); one
/// offered the same term by a lower node, or an older term, is not. A
/// diverged copy is not promoted (TRY_AGAIN: a promotion would clear the
/// mark and make its frames, which may differ under the same numbers and
/// terms, the cluster's).
#[test]
fn an_equal_term_deposes_only_for_a_higher_node_and_a_diverged_copy_is_not_promoted() {
    use ckpt_shm::ops::checkpoint::ActiveFail;
    use ckpt_shm::ops::ClaimFail;
    let p = tempfile::tempdir().unwrap();
    let pc = Config {
        node_id: 5,
        ..dir_config(&p)
    };
    let name = CheckpointName::new("deposed_at_equal_terms").unwrap();
    let attrs = CreationAttributes {
        flags: CreationFlags::new(UpdateMode::ActiveReplica, false),
        ..CreationAttributes::new(4, 64)
    };
    let primary = Segment::open(&pc, &name, rwc(), Some(&attrs)).unwrap();
    let term = primary.current_term();
    assert_eq!(primary.depose(term - 1, 9), Ok(false), "an older term");
    assert_eq!(
        primary.depose(term, 4),
        Ok(false),
        "the same term, a lower node"
    );
    assert!(!primary.is_replica() && !primary.is_diverged());
    assert_eq!(
        primary.depose(term, 6),
        Ok(true),
        "the same term, a higher node"
    );
    assert!(primary.is_replica() && primary.is_diverged());
    assert_eq!(
        primary.promote(5),
        Err(ActiveFail::Claim(ClaimFail::Contended))
    );
    assert!(primary.is_replica() && primary.is_diverged());
    // A newer term deposes without the mark.
    let other = CheckpointName::new("deposed_by_a_newer_term").unwrap();
    let second = Segment::open(&pc, &other, rwc(), Some(&attrs)).unwrap();
    let t = second.current_term();
    assert_eq!(second.depose(t + 1, 1), Ok(true));
    assert!(second.is_replica() && !second.is_diverged());
    second.promote(5).unwrap();
    assert!(!second.is_replica());
}

#[test]
fn of_two_incarnations_of_a_name_the_outranked_unwritten_primary_yields() {
    let dir = tempfile::tempdir().unwrap();
    let attrs = CreationAttributes {
        flags: CreationFlags::new(UpdateMode::ActiveReplica, true),
        ..CreationAttributes::new(4, 64)
    };
    let open = |name: &str| {
        let name = CheckpointName::new(name).unwrap();
        Segment::open(&dir_config(&dir), &name, rwc(), Some(&attrs)).unwrap()
    };
    let primary = open("twice");
    let (term, mine) = (primary.current_term(), primary.incarnation());
    let (lower, higher) = (mine.saturating_sub(1), mine.saturating_add(1));
    assert!(!primary.is_written());
    // Unwritten both: an older term, or the same term and a higher
    // incarnation, does not outrank it.
    assert_eq!(primary.yield_to(false, term - 1, lower), Ok(false));
    assert_eq!(primary.yield_to(false, term, higher), Ok(false));
    assert!(!primary.is_replica() && !primary.is_yielded());
    // The same term and a lower incarnation does: a diverged, yielded
    // replica, which no local writer changes.
    assert_eq!(primary.yield_to(false, term, lower), Ok(true));
    assert!(primary.is_replica() && primary.is_diverged() && primary.is_yielded());
    assert_eq!(
        primary.create_section(Some(b"k"), Time::END, b"v").err(),
        Some(ckpt_core::error::SectionCreateError::NoActiveReplica)
    );
    // A replica does not yield again; promoted before the other's snapshot
    // came, it is its own incarnation's primary again, unmarked.
    assert_eq!(primary.yield_to(true, term + 1, 0), Ok(false));
    assert!(primary.promote(1).is_ok());
    assert!(!primary.is_replica() && !primary.is_diverged() && !primary.is_yielded());
    assert!(primary.is_written());
    // A written primary never yields, whatever outranks it.
    assert_eq!(primary.yield_to(true, u32::MAX, 0), Ok(false));
    // An unwritten one yields to any written one.
    let other = open("twice-other");
    let t = other.current_term();
    assert_eq!(other.yield_to(true, t - 1, u64::MAX), Ok(true));
}

/// A standby on a replica's host reading two sections in one call while the
/// primary writes both in each call, and a shipper applies what the primary
/// published in batches: it sees each call whole (the primary publishes a
/// group's frames at once, so a batch holds whole groups; the replica
/// applies them between the flip counter's two steps). Applied frame by
/// frame with no counter, a reader saw one section a call ahead.
#[test]
fn a_standby_of_a_replica_sees_each_vector_write_whole() {
    let hosts = two_hosts("safCkpt=replica_groups", false);
    let primary = &hosts.primary;
    let mut consumer = primary.consumer(Some(0));
    let replica = replica_of(&mut consumer, &hosts.rc);
    let (a, _) = primary
        .create_section(Some(b"a"), Time::END, &0u64.to_le_bytes())
        .unwrap();
    let (b, _) = primary
        .create_section(Some(b"b"), Time::END, &0u64.to_le_bytes())
        .unwrap();
    const WRITES: u64 = 50_000;
    use std::sync::atomic::{AtomicBool, Ordering};
    let written = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for n in 1..=WRITES {
                let v = n.to_le_bytes();
                let element = |section| WriteElement {
                    section,
                    offset: None,
                    data: &v,
                };
                primary.write_many(&[element(a), element(b)]).unwrap();
                // Within the ring of the shipper's consumer.
                while primary.last_seq() > replica.last_seq() + 1_000 {
                    std::thread::yield_now();
                }
            }
            written.store(true, Ordering::Release);
        });
        let shipper = scope.spawn(|| {
            // Owned copies of what is published, applied as one batch.
            loop {
                let last = written.load(Ordering::Acquire).then(|| primary.last_seq());
                if last.is_some_and(|last| replica.last_seq() == last) {
                    break;
                }
                let bytes = owned_frames(&mut consumer);
                let frames: Vec<_> = bytes
                    .iter()
                    .map(|b| ckpt_core::frame::decode(b, false).unwrap())
                    .collect();
                assert_eq!(replica.apply_all(frames.iter().copied()), Ok(frames.len()));
                std::thread::yield_now();
            }
        });
        let find = |id: &[u8]| loop {
            if let Ok(Some(s)) = replica.lookup(id) {
                break s;
            }
            std::thread::yield_now();
        };
        let (ra, rb) = (find(b"a"), find(b"b"));
        let mut reads = 0u64;
        while !shipper.is_finished() {
            let (mut va, mut vb) = ([0u8; 8], [0u8; 8]);
            replica.read_isolated(|| {
                // b first: the order opposite the flips.
                replica.read(rb, 0, &mut vb).unwrap();
                replica.read(ra, 0, &mut va).unwrap();
            });
            let (va, vb) = (u64::from_le_bytes(va), u64::from_le_bytes(vb));
            assert_eq!(va, vb, "read {reads}: a {va}, b {vb}");
            reads += 1;
        }
    });
    assert_eq!(sections(&replica), sections(primary));
}
