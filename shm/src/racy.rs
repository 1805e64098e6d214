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
//! On x86_64, copies use inline assembly instead: `rep movsb` from 256 bytes,
//! 16-byte SSE moves below (the atomics above only for the last 15 bytes).
//! The compiler cannot split, widen or elide them, and on x86 every byte such
//! an instruction moves is moved by an atomic access (the argument of the
//! `atomic-memcpy` crate), so it is the same byte-wise atomic copy at memcpy
//! speed. `cargo bench -p ckpt-benches` and `ckpt bench` measure both paths.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Copies of at least this many bytes use `rep movsb` on x86_64.
const STRING_COPY_MIN: usize = 256;

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
    if len >= STRING_COPY_MIN {
        // SAFETY: forwarded: the first `8 * whole` bytes.
        unsafe { string_copy(dst as *mut u8, src.as_ptr(), 8 * whole) };
    }
    // Below that, 16-byte moves for the bulk: at most one word is left.
    #[cfg(target_arch = "x86_64")]
    let first = if len >= STRING_COPY_MIN {
        whole
    } else {
        // SAFETY: forwarded: the first `8 * whole` bytes (rounded down to 16).
        unsafe { chunks16(dst as *mut u8, src.as_ptr(), 8 * whole) / 8 }
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
    if len >= STRING_COPY_MIN {
        // SAFETY: forwarded.
        return unsafe { string_copy(dst, src, len) };
    }
    #[cfg(target_arch = "x86_64")]
    let (dst, src, len) = {
        // SAFETY: forwarded.
        let done = unsafe { chunks16(dst, src, len) };
        // SAFETY: done <= len: still inside both ranges.
        unsafe { (dst.add(done), src.add(done), len - done) }
    };
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
    if len >= STRING_COPY_MIN {
        // SAFETY: forwarded.
        return unsafe { string_copy(dst, src, len) };
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

/// Copies `len & !15` bytes in 16-byte unaligned SSE moves (inline assembly,
/// byte-atomic like `rep movsb`, without its start-up cost); returns the
/// bytes copied. The caller copies the rest.
///
/// # Safety
/// As for [`copy`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn chunks16(dst: *mut u8, src: *const u8, len: usize) -> usize {
    let n = len & !15;
    if n != 0 {
        // SAFETY: the caller vouches for both ranges; the loop moves exactly
        // `n` bytes forward, 16 at a time (n > 0, a multiple of 16), and uses
        // only the named registers and xmm0 (declared clobbered).
        unsafe {
            core::arch::asm!(
                "2:",
                "movups xmm0, [{src}]",
                "movups [{dst}], xmm0",
                "add {src}, 16",
                "add {dst}, 16",
                "sub {n}, 16",
                "jnz 2b",
                src = inout(reg) src => _,
                dst = inout(reg) dst => _,
                n = inout(reg) n => _,
                out("xmm0") _,
                options(nostack),
            );
        }
    }
    n
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
        let src: Vec<u8> = (0..1200u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 255, 256, 257, 262, 1000] {
            for s_off in 0..9 {
                for d_off in 0..9 {
                    let check = |dst: &[u8]| {
                        assert_eq!(&dst[d_off..d_off + len], &src[s_off..s_off + len]);
                        assert!(dst[..d_off].iter().all(|&b| b == 0xEE));
                        assert!(dst[d_off + len..].iter().all(|&b| b == 0xEE));
                    };
                    let mut dst = vec![0xEEu8; 1200];
                    // SAFETY: both ranges are inside their vectors and unshared.
                    unsafe { copy(dst.as_mut_ptr().add(d_off), src.as_ptr().add(s_off), len) };
                    check(&dst);
                    let mut dst = vec![0xEEu8; 1200];
                    // SAFETY: as above.
                    unsafe { store(dst.as_mut_ptr().add(d_off), &src[s_off..s_off + len]) };
                    check(&dst);
                    let mut dst = vec![0xEEu8; 1200];
                    // SAFETY: as above.
                    unsafe { load(&mut dst[d_off..d_off + len], src.as_ptr().add(s_off)) };
                    check(&dst);
                }
                if len > 0 {
                    let mut words = vec![u64::MAX; 160];
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
                let mut words = vec![u64::MAX; 160];
                // SAFETY: the vector is 8-aligned and holds len rounded up to
                // whole words (len <= 1000 < 1280 bytes); unshared.
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
