//! Byte copies into and out of memory that another thread or process may be
//! writing or reading at the same time: section buffers and the log ring.
//!
//! The seqlock protocols ([`crate::slot`], [`crate::log`]) discard any copy
//! that raced with a writer, but the racing copy itself must not be a data
//! race in Rust's memory model, which plain `ptr::copy` would be. So every
//! such copy here is a sequence of atomic accesses: Relaxed `AtomicU64` words
//! for the aligned middle and `AtomicU8` bytes for the ends (the byte-wise
//! atomic memcpy of C++ proposal P1478) on the shared side, plain accesses on
//! the private side. Ordering comes from the protocols'
//! fences around the copy, as for any Relaxed access.
//!
//! On x86_64, copies use inline assembly instead: `rep movsb` from 2 KiB,
//! 16-byte SSE moves from 16 bytes (the last moves overlapping the ones before
//! when the length is not a multiple of 16), the atomics above only below 16
//! bytes.
//! The compiler cannot split, widen or elide them, and on x86 every byte such
//! an instruction moves is moved by an atomic access (the argument of the
//! `atomic-memcpy` crate), so it is the same byte-wise atomic copy at memcpy
//! speed. `cargo bench -p ckpt-benches` and `ckpt bench` measure both paths.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Copies of at least this many bytes use `rep movsb` on x86_64: below it,
/// its start-up costs more than the SSE moves save (on this project's machine,
/// 256 B took 8.6 ns by `rep movsb` and 2.5 ns by 16-byte moves; 1 KiB 12.7 and
/// 10.2 ns; 4 KiB 21.6 and 48 ns).
const STRING_COPY_MIN: usize = 2048;

/// Copies of at least this many bytes use the SSE moves on x86_64.
const VECTOR_COPY_MIN: usize = 16;

/// Copies `dst.len()` bytes from shared memory at `src` into `dst`.
///
/// # Safety
/// `src..src + dst.len()` is valid for reads (inside a live mapping) and every
/// access to it by others is atomic or another copy of this module.
#[inline(always)]
pub unsafe fn load(dst: &mut [u8], src: *const u8) {
    // SAFETY: forwarded; `dst` is exclusively ours.
    unsafe { load_raw(dst.as_mut_ptr(), src, dst.len()) }
}

/// Copies `len` bytes from shared memory at `src` to `dst`, which need not
/// be initialized.
///
/// # Safety
/// `src..src + len` is valid for reads (inside a live mapping) and every
/// access to it by others is atomic or another copy of this module;
/// `dst..dst + len` is valid for writes and exclusively the caller's.
#[inline(always)]
pub unsafe fn load_raw(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: forwarded.
    unsafe { copy_one_side_shared::<false>(dst, src, len) }
}

/// Copies `src` into shared memory at `dst`.
///
/// # Safety
/// `dst..dst + src.len()` is valid for writes (inside a live mapping) and every
/// access to it by others is atomic or another copy of this module.
#[inline(always)]
pub unsafe fn store(dst: *mut u8, src: &[u8]) {
    // SAFETY: forwarded; `src` is ours to read.
    unsafe { copy_one_side_shared::<true>(dst, src.as_ptr(), src.len()) }
}

/// Stores `len` zero bytes into shared memory at `dst` (a section's hole:
/// rare, so kept out of its callers' hot paths).
///
/// # Safety
/// As for [`store`], over `dst..dst + len`.
#[cold]
#[inline(never)]
pub unsafe fn zero(dst: *mut u8, len: usize) {
    static ZEROS: [u8; 4096] = [0; 4096];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(ZEROS.len());
        // SAFETY: `at + n <= len`: inside the caller's range.
        unsafe { store(dst.add(at), &ZEROS[..n]) };
        at += n;
    }
}

/// Copies `src` into shared memory at the 8-aligned `dst` as whole words: the
/// last word is completed with zero bytes, so `src.len()` rounded up to a
/// multiple of 8 bytes are written. The frame format pads ids and data this
/// way, and a section buffer's bytes past its size are never read as data.
///
/// # Safety
/// `dst` is 8-aligned, `dst..dst + src.len().next_multiple_of(8)` is valid for
/// writes (inside a live mapping), and every access to it by others is atomic
/// or another copy of this module.
#[inline(always)]
pub unsafe fn store_padded(dst: *mut u64, src: &[u8]) {
    let len = src.len();
    let whole = len / 8;
    #[cfg(target_arch = "x86_64")]
    let first = if len >= VECTOR_COPY_MIN {
        // SAFETY: forwarded: the first `8 * whole >= 16` bytes.
        unsafe { vector_copy(dst as *mut u8, src.as_ptr(), 8 * whole) };
        whole
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let first = 0;
    for i in first..whole {
        // SAFETY: word i lies inside `src` (i < len / 8) and inside the
        // caller's aligned destination range.
        unsafe {
            let v = (src.as_ptr().add(8 * i) as *const u64).read_unaligned();
            AtomicU64::from_ptr(dst.add(i)).store(v, Ordering::Relaxed);
        }
    }
    if len % 8 != 0 {
        // SAFETY: word `whole` is the last of the caller's destination range.
        unsafe { AtomicU64::from_ptr(dst.add(whole)) }
            .store(tail_word(src).to_le(), Ordering::Relaxed);
    }
}

/// True if the `id.len()` bytes of shared memory at the 8-aligned `shared`
/// equal `id`: word loads (atomic) against unaligned reads of `id`, the last
/// word masked to the bytes that count.
///
/// # Safety
/// `shared` is 8-aligned and `shared..shared + id.len().next_multiple_of(8)`
/// is valid for reads (inside a live mapping); every access to it by others
/// is atomic or another copy of this module.
#[inline]
pub unsafe fn equals(shared: *const u64, id: &[u8]) -> bool {
    let whole = id.len() / 8;
    for i in 0..whole {
        // SAFETY: word i < len / 8 of the caller's range; bytes 8i..8i+8 of id.
        let (got, want) = unsafe {
            (
                AtomicU64::from_ptr(shared.add(i) as *mut u64).load(Ordering::Relaxed),
                (id.as_ptr().add(8 * i) as *const u64).read_unaligned(),
            )
        };
        if got != want {
            return false;
        }
    }
    let rest = id.len() % 8;
    if rest == 0 {
        return true;
    }
    // SAFETY: word `whole` is the last of the caller's (padded) range.
    let got = unsafe { AtomicU64::from_ptr(shared.add(whole) as *mut u64) }.load(Ordering::Relaxed);
    u64::from_le(got) & (u64::MAX >> (64 - 8 * rest)) == tail_word(id)
}

/// The last `src.len() % 8` bytes of `src` as the low bytes of a
/// little-endian word, zero above: one unaligned load and a shift when `src`
/// has at least 8 bytes.
#[inline(always)]
fn tail_word(src: &[u8]) -> u64 {
    let rest = src.len() % 8;
    match src.len().checked_sub(8) {
        Some(start) if rest != 0 => {
            let mut last = [0u8; 8];
            last.copy_from_slice(&src[start..]);
            u64::from_le_bytes(last) >> (8 * (8 - rest))
        }
        _ => src[src.len() - rest..]
            .iter()
            .rev()
            .fold(0u64, |v, &b| v << 8 | b as u64),
    }
}

/// Copies `len` bytes where one side is shared (`dst` if `SHARED_DST`, else
/// `src`) and the other is private: atomic accesses on the shared side,
/// aligned to its words, plain ones on the private side.
///
/// # Safety
/// Both ranges are valid and do not overlap; the private one is ours alone,
/// and every concurrent access to the shared one is atomic or another copy of
/// this module.
#[inline(always)]
unsafe fn copy_one_side_shared<const SHARED_DST: bool>(dst: *mut u8, src: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    if len >= VECTOR_COPY_MIN {
        // SAFETY: forwarded.
        return unsafe { vector_copy(dst, src, len) };
    }
    let shared = if SHARED_DST {
        dst as usize
    } else {
        src as usize
    };
    // Callers keep i < len (both ranges); the private side is accessed
    // plainly (unaligned), the shared side atomically.
    let byte = |i: usize| {
        // SAFETY: i < len keeps both ranges; AtomicU8 needs no alignment.
        unsafe {
            if SHARED_DST {
                AtomicU8::from_ptr(dst.add(i)).store(*src.add(i), Ordering::Relaxed);
            } else {
                *dst.add(i) = AtomicU8::from_ptr(src.add(i) as *mut u8).load(Ordering::Relaxed);
            }
        }
    };
    let word = |i: usize| {
        // SAFETY: i + 8 <= len keeps both ranges; the shared side is 8-aligned
        // at `i` (past the head), as AtomicU64 needs.
        unsafe {
            if SHARED_DST {
                let v = (src.add(i) as *const u64).read_unaligned();
                AtomicU64::from_ptr(dst.add(i) as *mut u64).store(v, Ordering::Relaxed);
            } else {
                let v = AtomicU64::from_ptr(src.add(i) as *mut u64).load(Ordering::Relaxed);
                (dst.add(i) as *mut u64).write_unaligned(v);
            }
        }
    };
    let head = shared.wrapping_neg() % 8;
    let head = head.min(len);
    (0..head).for_each(byte);
    let mut i = head;
    while i + 8 <= len {
        word(i);
        i += 8;
    }
    (i..len).for_each(byte);
}

/// Copies `len` bytes from `src` to `dst`, both shared.
///
/// # Safety
/// Both ranges are valid, do not overlap, and every concurrent access to them
/// is atomic or another copy of this module.
#[inline]
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    if len >= VECTOR_COPY_MIN {
        // SAFETY: forwarded.
        return unsafe { vector_copy(dst, src, len) };
    }
    // SAFETY: offsets < len are inside both ranges; words only where both
    // sides are 8-aligned (they are aligned alike), else bytes.
    unsafe {
        let mut i = 0;
        if (dst as usize) % 8 == (src as usize) % 8 {
            while i < len && (src as usize + i) % 8 != 0 {
                let v = AtomicU8::from_ptr(src.add(i) as *mut u8).load(Ordering::Relaxed);
                AtomicU8::from_ptr(dst.add(i)).store(v, Ordering::Relaxed);
                i += 1;
            }
            while i + 8 <= len {
                let v = AtomicU64::from_ptr(src.add(i) as *mut u64).load(Ordering::Relaxed);
                AtomicU64::from_ptr(dst.add(i) as *mut u64).store(v, Ordering::Relaxed);
                i += 8;
            }
        }
        while i < len {
            let v = AtomicU8::from_ptr(src.add(i) as *mut u8).load(Ordering::Relaxed);
            AtomicU8::from_ptr(dst.add(i)).store(v, Ordering::Relaxed);
            i += 1;
        }
    }
}

/// Copies exactly `len >= 16` bytes: `rep movsb` from [`STRING_COPY_MIN`],
/// else 16-byte unaligned SSE moves (inline assembly, byte-atomic like `rep
/// movsb`, without its start-up cost), 64 bytes a step. Where `len` is not a
/// multiple of the step, the last moves overlap the ones before: those bytes
/// are loaded and stored twice, which the seqlock protocols treat like any
/// other racing copy (a private destination ends with one of the values
/// loaded, a shared one is stored the same source value twice).
///
/// # Safety
/// As for [`copy`], with `len >= 16`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn vector_copy(dst: *mut u8, src: *const u8, len: usize) {
    debug_assert!(len >= VECTOR_COPY_MIN);
    if len >= STRING_COPY_MIN {
        // SAFETY: forwarded.
        return unsafe { string_copy(dst, src, len) };
    }
    // SAFETY: every range the moves below name lies inside `0..len` of both
    // sides (len >= 16; the bounds are spelled at each call).
    unsafe {
        if len <= 32 {
            // [0, 16) and [len - 16, len).
            move_pair(dst, src, len - 16);
        } else if len <= 64 {
            // [0, 32) and [len - 32, len).
            move_pair(dst, src, len - 32);
            move_pair(dst.add(16), src.add(16), len - 32);
        } else {
            // [at, at + 64) while more than 64 bytes are left, then the last 64.
            let step = |at: usize| {
                move_pair(dst.add(at), src.add(at), 32);
                move_pair(dst.add(at + 16), src.add(at + 16), 32);
            };
            let mut at = 0;
            while at + 64 < len {
                step(at);
                at += 64;
            }
            step(len - 64);
        }
    }
}

/// Moves `[0, 16)` and `[second, second + 16)` from `src` to `dst` with
/// 16-byte SSE moves, both loads before the first store.
///
/// # Safety
/// Both ranges are inside both sides, which do not overlap; as for [`copy`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn move_pair(dst: *mut u8, src: *const u8, second: usize) {
    // SAFETY: the caller vouches for the four ranges; the block touches only
    // them, the named registers and xmm0-xmm1 (declared clobbered).
    unsafe {
        core::arch::asm!(
            "movups xmm0, [{src}]",
            "movups xmm1, [{src} + {second}]",
            "movups [{dst}], xmm0",
            "movups [{dst} + {second}], xmm1",
            src = in(reg) src,
            dst = in(reg) dst,
            second = in(reg) second,
            out("xmm0") _,
            out("xmm1") _,
            options(nostack, preserves_flags),
        );
    }
}

/// `rep movsb`: a byte-atomic copy at memcpy speed (see the module docs).
///
/// # Safety
/// As for [`copy`].
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn string_copy(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the caller vouches for both ranges; `rep movsb` moves `len`
    // bytes forward from `src` to `dst`, reads and writes nothing else, and
    // leaves the direction flag (clear, per the ABI) as it found it.
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") len => _,
            inout("rsi") src => _,
            inout("rdi") dst => _,
            options(nostack, preserves_flags),
        );
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn every_length_and_alignment_copies_exactly() {
        const ROOM: usize = 4200;
        let src: Vec<u8> = (0..ROOM as u32).map(|i| (i * 7 + 3) as u8).collect();
        // Each side of every threshold: words, 16-byte moves (one pair, two
        // pairs, 64-byte steps with an overlapping last step), `rep movsb`.
        let lens = [
            0, 1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64, 65, 100, 127, 128, 129, 255,
            256, 257, 262, 1000, 2047, 2048, 2049, 4100,
        ];
        for len in lens {
            for s_off in 0..9 {
                for d_off in 0..9 {
                    let check = |dst: &[u8]| {
                        assert_eq!(&dst[d_off..d_off + len], &src[s_off..s_off + len]);
                        assert!(dst[..d_off].iter().all(|&b| b == 0xEE));
                        assert!(dst[d_off + len..].iter().all(|&b| b == 0xEE));
                    };
                    let mut dst = vec![0xEEu8; ROOM];
                    // SAFETY: both ranges are inside their vectors and unshared.
                    unsafe { copy(dst.as_mut_ptr().add(d_off), src.as_ptr().add(s_off), len) };
                    check(&dst);
                    let mut dst = vec![0xEEu8; ROOM];
                    // SAFETY: as above.
                    unsafe { store(dst.as_mut_ptr().add(d_off), &src[s_off..s_off + len]) };
                    check(&dst);
                    let mut dst = vec![0xEEu8; ROOM];
                    // SAFETY: as above.
                    unsafe { load(&mut dst[d_off..d_off + len], src.as_ptr().add(s_off)) };
                    check(&dst);
                }
                if len > 0 {
                    let mut words = vec![u64::MAX; ROOM / 8 + 1];
                    // SAFETY: the vector is 8-aligned and holds len rounded up.
                    unsafe { store_padded(words.as_mut_ptr(), &src[s_off..s_off + len]) };
                    // Bytes past len are not compared: make them differ.
                    let w = len / 8;
                    if len % 8 != 0 {
                        words[w] |= !(u64::MAX >> (64 - 8 * (len % 8))).to_le();
                    }
                    let id = &src[s_off..s_off + len];
                    // SAFETY: as above, read-only.
                    assert!(unsafe { equals(words.as_ptr(), id) }, "len {len}");
                    let mut other = id.to_vec();
                    other[len - 1] ^= 1;
                    // SAFETY: as above.
                    assert!(!unsafe { equals(words.as_ptr(), &other) }, "len {len}");
                }
                let mut words = vec![u64::MAX; ROOM / 8 + 1];
                // SAFETY: the vector is 8-aligned and holds len rounded up to
                // whole words (len + 8 <= ROOM + 8 bytes); unshared.
                unsafe { store_padded(words.as_mut_ptr(), &src[s_off..s_off + len]) };
                let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
                let padded = len.next_multiple_of(8);
                assert_eq!(&bytes[..len], &src[s_off..s_off + len], "len {len}");
                assert!(bytes[len..padded].iter().all(|&b| b == 0), "len {len}");
                assert!(bytes[padded..].iter().all(|&b| b == 0xFF), "len {len}");
            }
        }
    }
}
