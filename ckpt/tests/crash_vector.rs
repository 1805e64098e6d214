//! A vector write (`saCkptCheckpointWrite` of several elements) is all or
//! nothing for its writer's death too (SA §3.7.1: for `WR_ALL_REPLICAS` and
//! `WR_ACTIVE_REPLICA`, "if the invocation does not complete ..., nothing has
//! been written at all"): a writer SIGKILLed at a random moment, 400 times,
//! leaves every section of its last call at the old version or every one at
//! the new; the delta log agrees with the sections.
//!
//! The writer's calls each write counter `k` into three sections, one of
//! them twice (two elements merged into one version): `a` at 0 and 8, `b`
//! at 0, `c` at 8, then a fourth section `d` overwritten whole by every
//! other call, with a size that changes. After each kill the checker reads
//! them in one call, at once (no writer has recovered the dead one's claim
//! yet), and finds one `k` everywhere. Seed: `CKPT_CRASH_SEED`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Rng, ENV_SEED};

use ckpt::{
    Checkpoint, Config, CreationAttributes, Mutation, OpenFlags, ReadVec, Service, Time, WriteVec,
};
use ckpt_shm::ops::WriteElement;

const KILLS: u32 = 400;
const ENV_DIR: &str = "CKPT_CRASH_VECTOR_DIR";

fn attrs() -> CreationAttributes {
    common::small_attrs(5)
}

fn config(dir: &std::path::Path) -> Config {
    common::big_ring(dir)
}

/// Section `d` after the call that wrote counter `k`: `k` then a body
/// whose length depends on it.
fn d_content(k: u64) -> Vec<u8> {
    let mut out = k.to_le_bytes().to_vec();
    out.extend((0..(k % 100) as usize).map(|i| (k + i as u64) as u8));
    out
}

/// The elements of the call that writes (even) counter `k`.
fn call(k: &[u8; 8], d: &[u8]) -> [WriteVec<'static>; 5] {
    // Leaked once per call: the writer runs until killed, a few MB at most.
    let k: &'static [u8] = Box::leak(Box::new(*k));
    let d: &'static [u8] = Box::leak(d.to_vec().into_boxed_slice());
    [
        WriteVec {
            id: b"a",
            offset: 0,
            data: k,
        },
        WriteVec {
            id: b"b",
            offset: 0,
            data: k,
        },
        WriteVec {
            id: b"a",
            offset: 8,
            data: k,
        },
        WriteVec {
            id: b"c",
            offset: 8,
            data: k,
        },
        WriteVec {
            id: b"d",
            offset: 0,
            data: d,
        },
    ]
}

/// The writer process: runs until killed.
#[test]
fn crash_vector_writer_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return; // Only meaningful when the crash test starts it.
    };
    let service = Service::with_config(config(dir.as_ref()));
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let ck = service
        .open("crash-vector", flags, Some(&attrs()))
        .expect("writer opens");
    let mut k = counters(&ck).expect("consistent before the writer starts")[0];
    // Odd calls go straight to the segment (less time around the commit
    // point, so more kills land in it), even ones through the API.
    let segment = ck.segment();
    let find = |id: &[u8]| segment.lookup(id).unwrap().unwrap();
    let (a, b, c) = (find(b"a"), find(b"b"), find(b"c"));
    println!("ready");
    loop {
        k += 1;
        let bytes = k.to_le_bytes();
        if k % 2 == 1 {
            let element = |section, offset| WriteElement {
                section,
                offset: Some(offset),
                data: &bytes,
            };
            let elements = [element(a, 0), element(b, 0), element(a, 8), element(c, 8)];
            segment.write_many(&elements).expect("vector write");
        } else {
            ck.write(&call(&bytes, &d_content(k)))
                .expect("vector write");
        }
    }
}

/// The counters in `a` (twice), `b`, `c` and `d` (if written yet), read in
/// one call; `Err` if they disagree.
fn counters(ck: &Checkpoint) -> Result<Vec<u64>, String> {
    let (mut a, mut b, mut c, mut d) = ([0u8; 16], [0u8; 8], [0u8; 16], [0u8; 8]);
    let mut elements = [
        ReadVec {
            id: b"a",
            offset: 0,
            buf: &mut a,
            read_bytes: 0,
        },
        ReadVec {
            id: b"b",
            offset: 0,
            buf: &mut b,
            read_bytes: 0,
        },
        ReadVec {
            id: b"c",
            offset: 0,
            buf: &mut c,
            read_bytes: 0,
        },
        ReadVec {
            id: b"d",
            offset: 0,
            buf: &mut d,
            read_bytes: 0,
        },
    ];
    ck.read(&mut elements).map_err(|e| format!("read: {e:?}"))?;
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
    let got = vec![
        word(&a[..8]),
        word(&a[8..]),
        word(&b),
        word(&c[8..]),
        word(&d),
    ];
    // `d` holds the last even counter (or 0 before the first).
    let k = got[0];
    let d_expected = if k % 2 == 0 { k } else { k - 1 };
    if got[1..4].iter().any(|&x| x != k) || got[4] != d_expected {
        return Err(format!(
            "a vector write is half applied: a {:?}, b {}, c {}, d {} (k {k})",
            &got[..2],
            got[2],
            got[3],
            got[4]
        ));
    }
    Ok(got)
}

fn apply(model: &mut BTreeMap<Vec<u8>, Vec<u8>>, m: Mutation<'_>) {
    match m {
        Mutation::Create { id, data, .. } => {
            model.insert(id.to_vec(), data.to_vec());
        }
        Mutation::Overwrite { id, data } => {
            *model.get_mut(id).expect("overwrite of a missing section") = data.to_vec();
        }
        Mutation::Write { id, offset, data } => {
            let s = model.get_mut(id).expect("write to a missing section");
            let end = offset as usize + data.len();
            if s.len() < end {
                s.resize(end, 0);
            }
            s[offset as usize..end].copy_from_slice(data);
        }
        Mutation::CheckpointCreated { .. }
        | Mutation::ActiveReplicaSet { .. }
        | Mutation::RetentionSet { .. } => {}
        other => panic!("unexpected frame {other:?}"),
    }
}

#[test]
fn writers_killed_inside_a_vector_write_leave_all_of_it_or_none() {
    let seed = common::seed("vector crash test");
    let dir = tempfile::tempdir().unwrap();
    let service = Service::with_config(config(dir.path()));
    let flags = OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE;
    let ck = service.open("crash-vector", flags, Some(&attrs())).unwrap();
    let mut log = ck.watch();
    ck.create_section(b"a", Time::END, &[0; 16]).unwrap();
    ck.create_section(b"b", Time::END, &[0; 8]).unwrap();
    ck.create_section(b"c", Time::END, &[0; 16]).unwrap();
    ck.create_section(b"d", Time::END, &d_content(0)).unwrap();
    ck.create_section(b"p", Time::END, b"").unwrap();
    let mut model = BTreeMap::new();
    let mut rng = Rng(seed | 1);
    let mut last = 0;
    for round in 0..KILLS {
        let envs = [
            (ENV_DIR, dir.path().to_str().unwrap().to_string()),
            (ENV_SEED, seed.to_string()),
        ];
        common::kill_after(
            "crash_vector_writer_child",
            &envs,
            Duration::from_micros(rng.next() % 2000),
            &format!("round {round}: the writer could not open the checkpoint (seed {seed})"),
        );
        // Read at once, before any writer comes: a read of several
        // sections finishes a group its dead writer was flipping.
        let got = counters(&ck).unwrap_or_else(|e| panic!("round {round}: {e} (seed {seed})"));
        assert!(got[0] >= last, "round {round}: the counter went back");
        last = got[0];
        // The next write takes the dead writer's claim (if the read did not).
        ck.overwrite(b"p", &round.to_le_bytes()).unwrap();
        assert_eq!(
            counters(&ck).unwrap()[0],
            last,
            "round {round}: changed by recovery"
        );
        while let Some(change) = log.next_change().unwrap() {
            apply(&mut model, change.mutation);
        }
        let mut sections = BTreeMap::new();
        for id in [&b"a"[..], b"b", b"c", b"d", b"p"] {
            sections.insert(id.to_vec(), ck.read_section(id).unwrap());
        }
        assert_eq!(
            model, sections,
            "round {round}: the delta log disagrees with the sections (seed {seed})"
        );
    }
    let recoveries = ck
        .segment()
        .header()
        .recoveries
        .load(std::sync::atomic::Ordering::Relaxed);
    println!("{KILLS} kills, counter {last}, {recoveries} claims recovered from dead writers");
    assert!(
        last > KILLS as u64,
        "the writers barely wrote: the test proves nothing"
    );
    assert!(
        recoveries > KILLS as u64 / 4,
        "few kills landed inside a call: the test proves little"
    );
}
