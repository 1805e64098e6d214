//! The delta-log stage: a consumer draining N frames a producer wrote (N
//! overwrites of 64 B), beside a `memcpy` of the same bytes, frame by frame,
//! out of a `MAP_SHARED` mapping (group `log_drain_1000x64B`, reported per
//! frame). Only the draining is timed; the producer runs between samples.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use ckpt_benches::Scratch;
use ckpt_core::frame::frame_bytes;
use ckpt_core::Time;
use common::quick_group_settings;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const FRAMES: u64 = 1000;
const ID: &[u8] = b"s64";

fn log(c: &mut Criterion) {
    let scratch = Scratch::new("log");
    // 1 MiB ring: 1000 frames of 120 bytes fit without lapping the consumer.
    let seg = scratch.segment("log", 4, 64, Some(1 << 20));
    let (s64, _) = seg.create_section(Some(ID), Time::END, &[0; 64]).unwrap();
    let frame = frame_bytes(ID.len(), 64);
    let mut memory = scratch.region("frames", frame * FRAMES as usize);
    let mut buf = vec![0u8; frame];
    let data = [0x5Au8; 64];

    let mut group = c.benchmark_group("log_drain_1000x64B");
    quick_group_settings(&mut group);
    group.throughput(Throughput::Elements(FRAMES));
    group.bench_function("ckpt_consumer_drain", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut consumer = seg.consumer(None);
                for _ in 0..FRAMES {
                    seg.write(s64, None, &data).unwrap();
                }
                let start = Instant::now();
                let mut seen = 0u64;
                while let Some(f) = consumer.next_frame().unwrap() {
                    seen += 1;
                    black_box(f.data);
                }
                total += start.elapsed();
                assert_eq!(seen, FRAMES);
            }
            total
        })
    });
    group.bench_function("baseline_memcpy_frames_shm", |b| {
        let src = memory.bytes();
        b.iter(|| {
            for chunk in src.chunks_exact(frame) {
                buf.copy_from_slice(black_box(chunk));
                black_box(&buf);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, log);
criterion_main!(benches);
