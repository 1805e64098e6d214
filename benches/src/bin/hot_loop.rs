//! A tight loop of one hot operation, for instruction counts and profiles:
//!
//! ```text
//! cargo build --release -p ckpt-benches --bin hot_loop
//! valgrind --tool=callgrind target/release/hot_loop write 100000
//! target/release/hot_loop write 50000000     # prints ns per op
//! ```
//!
//! Operations: `write` (64 B overwrite through a `SectionRef`), `by-id`
//! (lookup + 64 B overwrite), `write-4k` (4 KiB overwrite), `read` (64 B
//! consistent read), and through libSaCkpt's C ABI `c-overwrite`
//! (`saCkptSectionOverwrite` of 64 B) and `c-read` (`saCkptCheckpointRead`). It prints the mean cost per operation over the loop
//! (after a warm-up of a tenth of the count); `ckpt bench` is the measurement
//! with baselines, this is the profiling harness.

use std::hint::black_box;
use std::time::Instant;

use ckpt_benches::Scratch;
use ckpt_core::Time;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (op, count) = match args.as_slice() {
        [_, op, count] => match count.parse::<u64>() {
            Ok(n) if n > 0 => (op.as_str(), n),
            _ => usage(),
        },
        _ => usage(),
    };
    if let Some(c_op) = op.strip_prefix("c-") {
        return c_loop(c_op, count);
    }
    let scratch = Scratch::new("hot-loop");
    let seg = scratch.segment("hot", 4, 4096, None);
    let (s64, _) = seg
        .create_section(Some(b"s64"), Time::END, &[0; 64])
        .expect("create s64");
    let (s4k, _) = seg
        .create_section(Some(b"s4k"), Time::END, &[0; 4096])
        .expect("create s4k");
    let data64 = [0x5Au8; 64];
    let data4k = [0xA5u8; 4096];
    let mut out = [0u8; 64];
    let mut run = |n: u64| -> u64 {
        let mut failed = 0u64;
        for _ in 0..n {
            let ok = match op {
                "write" => seg.write(s64, None, black_box(&data64)).is_ok(),
                "by-id" => match seg.lookup(black_box(b"s64")) {
                    Ok(Some(s)) => seg.write(s, None, black_box(&data64)).is_ok(),
                    _ => false,
                },
                "write-4k" => seg.write(s4k, None, black_box(&data4k)).is_ok(),
                "read" => matches!(seg.read(black_box(s64), 0, &mut out), Ok((64, _))),
                _ => usage(),
            };
            black_box(&mut out);
            failed += !ok as u64;
        }
        failed
    };
    let warm = run((count / 10).max(1));
    let start = Instant::now();
    let failed = warm + run(count);
    let ns = start.elapsed().as_nanos() as f64 / count as f64;
    println!("{op}: {count} ops, {ns:.1} ns/op, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

/// The C path: a checkpoint opened through libSaCkpt as a C program opens
/// it, then `count` calls of `op` (`overwrite` or `read`) on one 64 B section.
fn c_loop(op: &str, count: u64) {
    use SaCkpt::types::*;
    let scratch = Scratch::new("hot-loop-c");
    std::env::set_var("CKPT_DIR", scratch.path());
    let (mut lib, mut ckpt) = (0, 0);
    let mut version = SaVersionT {
        release_code: b'B',
        major_version: 2,
        minor_version: 2,
    };
    let sa_name = SaNameT::new(b"safCkpt=hot").expect("a short name");
    let attrs = SaCkptCheckpointCreationAttributesT {
        creation_flags: 0x2 | 0x8,
        checkpoint_size: 128,
        retention_duration: 0,
        max_sections: 2,
        max_section_size: 64,
        max_section_id_size: 16,
    };
    let mut id_bytes = *b"s64";
    let id = SaCkptSectionIdT {
        id_len: 3,
        id: id_bytes.as_mut_ptr(),
    };
    let data = [0x5Au8; 64];
    let mut out = [0u8; 64];
    let mut create = SaCkptSectionCreationAttributesT {
        section_id: &id as *const _ as *mut _,
        expiration_time: i64::MAX,
    };
    // SAFETY: pointers to locals that outlive the calls.
    let ok = unsafe {
        SaCkpt::saCkptInitialize(&mut lib, std::ptr::null(), &mut version) == SA_AIS_OK
            && SaCkpt::saCkptCheckpointOpen(lib, &sa_name, &attrs, 7, i64::MAX, &mut ckpt)
                == SA_AIS_OK
            && SaCkpt::saCkptActiveReplicaSet(ckpt) == SA_AIS_OK
            && SaCkpt::saCkptSectionCreate(ckpt, &mut create, data.as_ptr().cast(), 64) == SA_AIS_OK
    };
    assert!(ok, "setting up the C checkpoint failed");
    let mut run = |n: u64| -> u64 {
        let mut failed = 0;
        for _ in 0..n {
            // SAFETY: pointers to locals that outlive the calls.
            let e = unsafe {
                match op {
                    "overwrite" => SaCkpt::saCkptSectionOverwrite(
                        black_box(ckpt),
                        &id,
                        black_box(&data).as_ptr().cast(),
                        64,
                    ),
                    "read" => {
                        let mut iov = SaCkptIOVectorElementT {
                            section_id: id,
                            data_buffer: out.as_mut_ptr().cast(),
                            data_size: 64,
                            data_offset: 0,
                            read_size: 0,
                        };
                        SaCkpt::saCkptCheckpointRead(
                            black_box(ckpt),
                            &mut iov,
                            1,
                            std::ptr::null_mut(),
                        )
                    }
                    _ => usage(),
                }
            };
            black_box(&mut out);
            failed += (e != SA_AIS_OK) as u64;
        }
        failed
    };
    let warm = run((count / 10).max(1));
    let start = Instant::now();
    let failed = warm + run(count);
    let ns = start.elapsed().as_nanos() as f64 / count as f64;
    println!("c-{op}: {count} ops, {ns:.1} ns/op, {failed} failed");
    // SAFETY: plain call.
    unsafe { SaCkpt::saCkptFinalize(lib) };
    if failed > 0 {
        std::process::exit(1);
    }
}

fn usage() -> ! {
    eprintln!("usage: hot_loop write|by-id|write-4k|read|c-overwrite|c-read COUNT");
    std::process::exit(2)
}
