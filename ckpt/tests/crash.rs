//! Guarantee 2: a writer SIGKILLed at any instruction leaves every section at
//! its last committed or its new version, the index intact, the delta log
//! complete, and the checkpoint usable by the next opener with no repair.
//!
//! The test re-executes itself as a writer process (`crash_writer_child`) that
//! creates, overwrites, grows and deletes sections as fast as it can; the parent
//! kills it at a random moment, 250 times, and after each kill checks every
//! section with a checker and replays the delta log onto a model.
//!
//! Every version of every section has known contents (`content`), so the
//! checker can tell a whole version from a torn one. Seed: `CKPT_CRASH_SEED`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Rng, ENV_SEED};

use ckpt::{
    Checkpoint, Config, CreationAttributes, Mutation, OpenFlags, SectionsChosen, Service, Time,
};

const KILLS: u32 = 250;
const IDS: u64 = 12;
const ENV_DIR: &str = "CKPT_CRASH_CHILD_DIR";

fn attrs() -> CreationAttributes {
    common::small_attrs(16)
}

fn config(dir: &std::path::Path) -> Config {
    common::big_ring(dir)
}

/// The contents of version `v` of section `s`: 16-byte header (v, s) and a
/// body whose bytes depend on both and on their position.
fn content(s: u64, v: u64) -> Vec<u8> {
    let len = 16 + ((s * 13 + v * 7) % 200) as usize;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&v.to_be_bytes());
    out.extend_from_slice(&s.to_be_bytes());
    out.extend((0..len - 16).map(|i| (s * 31 + v + i as u64) as u8));
    out
}

fn id(s: u64) -> Vec<u8> {
    format!("s{s}").into_bytes()
}

/// The writer process: runs until killed.
#[test]
fn crash_writer_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return; // Only meaningful when the crash test starts it.
    };
    let seed = std::env::var(ENV_SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let service = Service::with_config(config(dir.as_ref()));
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let ck = service
        .open("crash", flags, Some(&attrs()))
        .expect("writer opens");
    println!("ready");
    let mut rng = Rng(seed | 1);
    loop {
        let s = rng.next() % IDS;
        let id = id(s);
        match ck.section(&id) {
            Err(_) => {
                ck.create_section(&id, Time::END, &content(s, 1))
                    .expect("create");
            }
            Ok(section) => {
                let v = section.version().expect("version");
                let next = content(s, v + 1);
                let old_len = content(s, v).len();
                match rng.next() % 10 {
                    0 => ck.delete_section(&id).expect("delete"),
                    1..=3 if next.len() >= old_len => section.write_at(0, &next).expect("write"),
                    _ => section.overwrite(&next).expect("overwrite"),
                }
            }
        }
    }
}

/// Applies one logged mutation to the model of the sections.
fn apply(model: &mut BTreeMap<Vec<u8>, Vec<u8>>, m: Mutation<'_>) {
    match m {
        Mutation::Create { id, data, .. } => {
            assert!(
                model.insert(id.to_vec(), data.to_vec()).is_none(),
                "create of an existing section logged"
            );
        }
        Mutation::Overwrite { id, data } => {
            *model
                .get_mut(id)
                .expect("overwrite of a missing section logged") = data.to_vec();
        }
        Mutation::Write { id, offset, data } => {
            let section = model
                .get_mut(id)
                .expect("write to a missing section logged");
            let end = offset as usize + data.len();
            if section.len() < end {
                section.resize(end, 0);
            }
            section[offset as usize..end].copy_from_slice(data);
        }
        Mutation::Delete { id } => {
            assert!(
                model.remove(id).is_some(),
                "delete of a missing section logged"
            );
        }
        Mutation::ExpirationSet { .. } => {}
        // Checkpoint-wide frames do not change sections; this writer's data
        // always fits one frame, so no stages either.
        Mutation::CheckpointCreated { .. }
        | Mutation::ActiveReplicaSet { .. }
        | Mutation::RetentionSet { .. }
        | Mutation::Unlink => {}
        Mutation::Stage { .. } | Mutation::StageAbort { .. } => panic!("unexpected stage frame"),
    }
}

/// Checks every section, the index and the counters; returns the sections.
fn check(ck: &Checkpoint) -> BTreeMap<Vec<u8>, Vec<u8>> {
    // The first write after a kill takes the writer claim from the dead
    // process and finishes or undoes its last mutation.
    let status = ck.status().expect("status after a kill");
    let mut sections = BTreeMap::new();
    let mut bytes = 0;
    for d in ck.sections(SectionsChosen::Any).expect("iterate") {
        let data = ck
            .read_section(d.id.as_bytes())
            .expect("read every listed section");
        assert!(
            data.len() >= 16,
            "section {} too short: {}",
            d.id,
            data.len()
        );
        let v = u64::from_be_bytes(data[..8].try_into().unwrap());
        let s = u64::from_be_bytes(data[8..16].try_into().unwrap());
        assert_eq!(
            d.id.as_bytes(),
            id(s),
            "section {} holds the data of s{s}",
            d.id
        );
        assert_eq!(
            data,
            content(s, v),
            "section {} is not a whole version (v{v})",
            d.id
        );
        let handle = ck
            .section(d.id.as_bytes())
            .expect("the index finds every listed section");
        assert_eq!(
            handle.version().unwrap(),
            v,
            "data of v{v} under another version number"
        );
        bytes += data.len() as u64;
        sections.insert(d.id.0.clone(), data);
    }
    assert_eq!(
        status.sections as usize,
        sections.len(),
        "section count after recovery"
    );
    assert_eq!(
        status.memory_used_bytes, bytes,
        "memory used after recovery"
    );
    for s in 0..IDS {
        if !sections.contains_key(&id(s)) {
            assert!(
                ck.section(&id(s)).is_err(),
                "index finds s{s}, iteration does not"
            );
        }
    }
    sections
}

#[test]
fn writers_killed_at_any_moment_leave_whole_versions_and_a_complete_log() {
    let seed = common::seed("crash test");
    let dir = tempfile::tempdir().unwrap();
    let service = Service::with_config(config(dir.path()));
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let ck = service.open("crash", flags, Some(&attrs())).unwrap();
    let mut log = ck.watch();
    let mut model = BTreeMap::new();
    let mut rng = Rng(seed | 1);
    let mut frames = 0u64;
    for round in 0..KILLS {
        let envs = [
            (ENV_DIR, dir.path().to_str().unwrap().to_string()),
            (ENV_SEED, (seed ^ (round as u64 + 1)).to_string()),
        ];
        common::kill_after(
            "crash_writer_child",
            &envs,
            Duration::from_micros(rng.next() % 3000),
            &format!("round {round}: the writer could not open the checkpoint (seed {seed})"),
        );

        let sections = check(&ck);
        loop {
            match log.next_change() {
                Ok(Some(change)) => {
                    frames += 1;
                    apply(&mut model, change.mutation);
                }
                Ok(None) => break,
                Err(e) => panic!("round {round}: delta log: {e} (seed {seed})"),
            }
        }
        assert_eq!(
            model, sections,
            "round {round}: the delta log disagrees with the sections (seed {seed})"
        );

        // Usable with no repair: a full create / write / delete cycle.
        ck.create_section(b"probe", Time::END, b"p").unwrap();
        ck.overwrite(b"probe", b"probe!").unwrap();
        ck.delete_section(b"probe").unwrap();
        while let Ok(Some(change)) = log.next_change() {
            apply(&mut model, change.mutation);
        }
    }
    let recoveries = ck
        .segment()
        .header()
        .recoveries
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{KILLS} kills, {frames} frames replayed, {recoveries} claims recovered from dead writers"
    );
    assert!(
        frames > KILLS as u64,
        "the writers barely wrote: the test proves nothing"
    );
    assert!(
        recoveries > 0,
        "no kill landed inside a mutation: the test proves nothing"
    );
}
