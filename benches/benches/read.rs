//! The read stage: a consistent 64 B read through a `SectionRef`, beside a
//! 64 B `memcpy` out of a `MAP_SHARED` tmpfs mapping (group `read_64B`).

mod common;

use std::hint::black_box;

use ckpt_benches::Scratch;
use ckpt_core::Time;
use common::quick_group_settings;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn read(c: &mut Criterion) {
    let scratch = Scratch::new("read");
    let seg = scratch.segment("read", 4, 64, None);
    let (s64, _) = seg
        .create_section(Some(b"s64"), Time::END, &[0x5A; 64])
        .unwrap();
    let mut memory = scratch.region("memcpy", 64);
    memory.bytes().fill(0x5A);
    let mut out = [0u8; 64];

    let mut group = c.benchmark_group("read_64B");
    quick_group_settings(&mut group);
    group.throughput(Throughput::Elements(1));
    group.bench_function("ckpt_read_handle", |b| {
        b.iter(|| {
            let (n, meta) = seg.read(black_box(s64), 0, &mut out).unwrap();
            black_box((&out, n, meta));
        })
    });
    group.bench_function("baseline_memcpy_out_shm", |b| {
        let src = &memory.bytes()[..64];
        b.iter(|| {
            out.copy_from_slice(black_box(src));
            black_box(&out);
        })
    });
    group.finish();
}

criterion_group!(benches, read);
criterion_main!(benches);
