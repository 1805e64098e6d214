//! The iteration stage: `for_each_section` over 100k sections, reported per
//! section (`Throughput::Elements(100_000)`), beside a loop that loads one
//! `u64` per cache line over as many cache lines of a `MAP_SHARED` mapping:
//! at a 64-byte stride (the brief's baseline) and at the slot-header stride
//! of the segment (128 bytes with 16-byte ids), which is the memory the
//! iteration actually walks.

mod common;

use std::hint::black_box;

use ckpt_benches::Scratch;
use ckpt_core::{SectionsChosen, Time};
use common::quick_group_settings;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SECTIONS: u32 = 100_000;

fn touch(lines: &[u8], stride: usize) -> u64 {
    let mut sum = 0u64;
    for line in lines.chunks_exact(stride) {
        sum = sum.wrapping_add(u64::from_le_bytes(line[..8].try_into().unwrap()));
    }
    sum
}

fn iterate(c: &mut Criterion) {
    let scratch = Scratch::new("iterate");
    let seg = scratch.segment("iterate", SECTIONS, 64, Some(1 << 20));
    for i in 0..SECTIONS {
        seg.create_section(
            Some(format!("s{i}").as_bytes()),
            Time::END,
            &i.to_le_bytes(),
        )
        .unwrap();
    }
    let slot_stride = seg.geometry().slot_header_stride as usize;
    let mut memory = scratch.region("lines", SECTIONS as usize * slot_stride.max(64));

    let mut group = c.benchmark_group("iterate_100k");
    quick_group_settings(&mut group);
    group.sample_size(30);
    group.throughput(Throughput::Elements(SECTIONS as u64));
    group.bench_function("ckpt_for_each_section", |b| {
        b.iter(|| {
            let (mut n, mut bytes) = (0u64, 0u64);
            seg.for_each_section(SectionsChosen::Any, |view| {
                n += 1;
                bytes += view.size_bytes + view.id.len() as u64;
            });
            assert_eq!(n, SECTIONS as u64);
            black_box(bytes)
        })
    });
    let lines = memory.bytes();
    group.bench_function("baseline_touch_u64_stride64", |b| {
        let lines = &lines[..SECTIONS as usize * 64];
        b.iter(|| black_box(touch(black_box(lines), 64)))
    });
    group.bench_function(format!("baseline_touch_u64_stride{slot_stride}"), |b| {
        b.iter(|| black_box(touch(black_box(lines), slot_stride)))
    });
    group.finish();
}

criterion_group!(benches, iterate);
criterion_main!(benches);
