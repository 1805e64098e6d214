//! Installing a snapshot a peer sends (untrusted bytes): a `SnapshotPart`
//! body of arbitrary records and a `SnapshotEnd` of arbitrary fields, for a
//! checkpoint of arbitrary attributes. `decode_message`, `Installer::record`
//! and `Installer::finish` never panic; whatever they accept leaves a replica
//! that holds exactly the sections the accepted records describe (ids, data,
//! versions, expirations, the sequence numbers they carry), within the
//! checkpoint's attributes, reads back consistently, and continues its log
//! after the snapshot's start. Whatever they refuse leaves the replica that
//! was there untouched and no temporary file behind.
//!
//! Input: bytes 0..8 pick the attributes (sections, section size, id size)
//! and the end's fields; the rest is the part's body.

#![no_main]

use std::collections::BTreeMap;

use ckpt_core::frame::{
    self, decode_message, encode_message, FrameHeader, FrameKind, SnapshotTail,
};
use ckpt_core::repl::{Message, Position};
use ckpt_core::{CreationAttributes, OpenFlags, SectionsChosen};
use ckpt_shm::{Config, Segment};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1 << 20;

fuzz_target!(|input: &[u8]| {
    let byte = |i: usize| input.get(i).copied().unwrap_or(0);
    let mut attrs = CreationAttributes::new(1 + byte(0) as u32 % 8, 1 + byte(1) as u64 % 300);
    attrs.section_id_bytes_max = 1 + byte(2) as u64 % 16;
    if attrs.validate().is_err() {
        return;
    }
    let body = input.get(8..).unwrap_or(&[]);
    let body = &body[..body.len() / 8 * 8];
    let dir = tempfile::tempdir().unwrap();
    let config = Config::with_dir(dir.path());
    // The creation frame, as a primary sends it.
    let name = b"safCkpt=fuzz_install";
    let payload = frame::encode_created(&attrs, 1 << 20);
    let h = FrameHeader {
        seq: 1,
        term: 1,
        incarnation: 77,
        id_len: name.len() as u16,
        data_len: payload.len() as u32,
        time_ns: 1,
        ..FrameHeader::new(FrameKind::CheckpointCreated)
    };
    let mut created = vec![0u8; h.frame_bytes()];
    frame::encode(&h, name, &payload, &mut created).unwrap();
    let created = frame::decode(&created, false).unwrap();
    // An older replica already there: untouched unless an install succeeds.
    let old = Segment::open_replica(&config, &created).unwrap();
    drop(old);
    let files = || {
        let mut v: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let before = files();
    let mut installer = Segment::install_begin(&config, &created).unwrap();
    // The part: its records counted, as a sender would.
    let count = frame::records(body).count() as u32;
    let part = Message::SnapshotPart { records: count };
    let mut msg = vec![0u8; 64];
    let own = encode_message(1, &part, &[], body, &mut msg).unwrap();
    msg.truncate(own);
    msg.extend_from_slice(body);
    let Ok((m, _)) = decode_message(&msg, LIMIT) else {
        drop(installer);
        assert_eq!(files(), before, "a refused copy is removed");
        return;
    };
    // What the accepted records say the replica holds (the newer copy of an
    // id wins, as between two copies a scan met).
    let mut want: BTreeMap<Vec<u8>, (Vec<u8>, u64, i64, u64, u64)> = BTreeMap::new();
    let mut sections = 0u64;
    let mut refused = false;
    let mut current: Option<(Vec<u8>, bool)> = None;
    for r in frame::records(m.records) {
        if installer.record(&r).is_err() {
            refused = true;
            break;
        }
        if r.offset == 0 {
            sections += 1;
            let newest = r.data_seq.max(r.expiration_seq);
            let newer = want.get(r.id).is_none_or(|w| newest > w.3.max(w.4));
            if newer {
                want.insert(
                    r.id.to_vec(),
                    (
                        vec![0; r.size as usize],
                        r.version,
                        r.expiration,
                        r.data_seq,
                        r.expiration_seq,
                    ),
                );
            }
            current = Some((r.id.to_vec(), newer));
        }
        if let Some((id, true)) = &current {
            let w = want.get_mut(id).unwrap();
            w.0[r.offset as usize..r.offset as usize + r.piece.len()].copy_from_slice(r.piece);
        }
    }
    let start = Position {
        seq: u64::from(byte(3)),
        term: 1 + u32::from(byte(4) % 3),
    };
    let tail = SnapshotTail {
        end_seq: start.seq + u64::from(byte(5) % 4),
        state_seq: u64::from(byte(6) % 8),
        active: (byte(7) % 2 == 1).then_some(u32::from(byte(7))),
        term: start.term,
        // (A retention shorter than the test would delete the replica at its
        // last close.)
        retention_ns: (1 + i64::from(byte(6))) * 1_000_000_000,
        unlinked: false,
    };
    let counted = if byte(7) & 0x80 != 0 {
        sections + 1
    } else {
        sections
    };
    if refused {
        drop(installer);
        assert_eq!(files(), before, "a refused copy is removed");
        return;
    }
    let Ok(staged) = installer.finish(start, counted, &tail) else {
        assert_eq!(files(), before, "a refused copy is removed");
        return;
    };
    if !staged.caught_up() {
        // Frames up to its horizon are missing: the copy is not put in
        // place, and dropped, it is removed.
        assert_eq!(staged.segment().last_seq(), start.seq);
        drop(staged);
        assert_eq!(
            files(),
            before,
            "a copy dropped before it caught up is removed"
        );
        return;
    }
    let old = Segment::open_for_link(
        &config,
        &ckpt_core::CheckpointName::new(name).unwrap(),
        OpenFlags::READ | OpenFlags::WRITE,
    )
    .unwrap();
    let replica = staged.publish(Some(&old)).unwrap().expect("not unlinked");
    assert!(old.is_superseded(), "the replaced replica is marked");
    drop(old);
    assert_eq!(
        files(),
        before,
        "the copy replaced the replica under its name"
    );
    assert_eq!(replica.last_seq(), start.seq);
    assert_eq!(replica.incarnation(), 77);
    // Exactly the sections the records describe.
    let mut got = BTreeMap::new();
    let mut views = Vec::new();
    replica.for_each_section(SectionsChosen::Any, |v| {
        views.push((v.section, v.id.to_vec()))
    });
    for (section, id) in views {
        let (data, meta) = replica.read_to_vec(section).unwrap();
        assert!(data.len() as u64 <= attrs.section_bytes_max);
        assert!(id.len() as u64 <= attrs.section_id_bytes_max);
        got.insert(id, (data, meta.version, meta.seq));
    }
    let mut expected = BTreeMap::new();
    let now = ckpt_shm::segment::now().0;
    for (id, (data, version, expiration, data_seq, _)) in &want {
        if *expiration > now {
            expected.insert(id.clone(), (data.clone(), *version, *data_seq));
        }
    }
    assert_eq!(got, expected);
    // Readers open it like any replica.
    drop(replica);
    let reopened = Segment::open(
        &config,
        &ckpt_core::CheckpointName::new(name).unwrap(),
        OpenFlags::READ,
        None,
    )
    .unwrap();
    assert!(reopened.is_replica());
    assert_eq!(reopened.last_seq(), start.seq);
});
