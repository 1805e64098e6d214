//! The write stage: overwriting a section, beside raw stores into shared memory.
//!
//! Groups (each with its baselines in the same group):
//! - `write_64B`: overwrite through a `SectionRef` (hot), by section id
//!   (lookup + write), zero-copy `overwrite_with`; baselines: a 64 B `memcpy`
//!   into a `MAP_SHARED` tmpfs mapping and a Release store of a sequence
//!   counter in that mapping.
//! - `write_4KiB`: overwrite through a `SectionRef`; baseline: a 4 KiB `memcpy`
//!   into the shared mapping.

mod common;

use std::hint::black_box;
use std::sync::atomic::Ordering;

use ckpt_benches::Scratch;
use ckpt_core::Time;
use common::quick_group_settings;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn write(c: &mut Criterion) {
    let scratch = Scratch::new("write");
    let seg = scratch.segment("write", 4, 4096, None);
    let (s64, _) = seg
        .create_section(Some(b"s64"), Time::END, &[0; 64])
        .unwrap();
    let (s4k, _) = seg
        .create_section(Some(b"s4k"), Time::END, &[0; 4096])
        .unwrap();
    let mut memory = scratch.region("memcpy", 4096);
    let counter = scratch.region("counter", 64);
    let data64 = [0x5Au8; 64];
    let data4k = [0xA5u8; 4096];

    let mut group = c.benchmark_group("write_64B");
    quick_group_settings(&mut group);
    group.throughput(Throughput::Elements(1));
    group.bench_function("ckpt_overwrite_handle", |b| {
        b.iter(|| seg.write(s64, None, black_box(&data64)).unwrap())
    });
    group.bench_function("ckpt_overwrite_by_id", |b| {
        b.iter(|| {
            let section = seg.lookup(black_box(b"s64")).unwrap().unwrap();
            seg.write(section, None, black_box(&data64)).unwrap()
        })
    });
    group.bench_function("ckpt_overwrite_with_fill", |b| {
        b.iter(|| {
            seg.overwrite_with(s64, 64, |dst| dst.copy_from_slice(black_box(&data64)))
                .unwrap()
        })
    });
    group.bench_function("baseline_memcpy_shm", |b| {
        let dst = &mut memory.bytes()[..64];
        b.iter(|| {
            dst.copy_from_slice(black_box(&data64));
            black_box(&mut *dst);
        })
    });
    group.bench_function("baseline_seq_store_shm", |b| {
        let word = counter.counter();
        let mut seq = 0u64;
        b.iter(|| {
            seq += 1;
            word.store(black_box(seq), Ordering::Release);
        })
    });
    group.finish();

    let mut group = c.benchmark_group("write_4KiB");
    quick_group_settings(&mut group);
    group.throughput(Throughput::Bytes(4096));
    group.bench_function("ckpt_overwrite_handle", |b| {
        b.iter(|| seg.write(s4k, None, black_box(&data4k)).unwrap())
    });
    group.bench_function("baseline_memcpy_shm", |b| {
        let dst = &mut memory.bytes()[..4096];
        b.iter(|| {
            dst.copy_from_slice(black_box(&data4k));
            black_box(&mut *dst);
        })
    });
    group.finish();
}

criterion_group!(benches, write);
criterion_main!(benches);
