//! Byte copies into and out of memory that another thread or process may be
//! writing or reading at the same time: section buffers and the log ring.
//!
//! The seqlock protocols ([`crate::slot`], [`crate::log`]) discard any copy
//! that raced with a writer, but the racing copy itself must not be a data
//! race in Rust's memory model, which plain `ptr::copy` would be. So every
//! such copy here is a sequence of atomic accesses: Relaxed `AtomicU64` words
//! for the aligned middle and `AtomicU8` bytes for the ends (the byte-wise
//! atomic memcpy of C++ proposal P1478). Ordering comes from the protocols'
//! fences around the copy, as for any Relaxed access.
//!
//! Large copies on x86_64 use `rep movsb` in inline assembly instead: the
//! compiler cannot split, widen or elide them, and on x86 every byte the
//! instruction moves is moved by an atomic access (the argument of the
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
#[inline]
pub unsafe fn load(dst: &mut [u8], src: *const u8) {
    // SAFETY: forwarded; `dst` is exclusively ours.
    unsafe { copy(dst.as_mut_ptr(), src, dst.len()) }
}

/// Copies `src` into shared memory at `dst`.
///
/// # Safety
/// `dst..dst + src.len()` is valid for writes (inside a live mapping) and every
/// access to it by others is atomic or another copy of this module.
#[inline]
pub unsafe fn store(dst: *mut u8, src: &[u8]) {
    // SAFETY: forwarded; `src` is ours to read.
    unsafe { copy(dst, src.as_ptr(), src.len()) }
}

/// Copies `len` bytes from `src` to `dst`; either or both may be shared.
///
/// # Safety
/// Both ranges are valid, do not overlap, and every concurrent access to them
/// is atomic or another copy of this module.
#[inline]
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    if len >= STRING_COPY_MIN {
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
        return;
    }
    // SAFETY: forwarded.
    unsafe { copy_words(dst, src, len) }
}

/// The portable path: atomic bytes up to `src`'s 8-byte alignment, atomic
/// words, atomic bytes. A word is stored as one atomic access where `dst` is
/// aligned too, else as bytes.
///
/// # Safety
/// As for [`copy`].
#[inline]
unsafe fn copy_words(dst: *mut u8, src: *const u8, len: usize) {
    let byte = |i: usize| {
        // SAFETY: i < len: both bytes are in the caller's ranges; AtomicU8 has
        // alignment 1.
        unsafe {
            let v = (*(src.add(i) as *const AtomicU8)).load(Ordering::Relaxed);
            (*(dst.add(i) as *const AtomicU8)).store(v, Ordering::Relaxed);
        }
    };
    let head = (src.align_offset(8)).min(len);
    (0..head).for_each(byte);
    let mut i = head;
    let dst_aligned = (dst as usize + head) % 8 == 0;
    while i + 8 <= len {
        // SAFETY: src + i is 8-aligned (past the head) and in range.
        let v = unsafe { (*(src.add(i) as *const AtomicU64)).load(Ordering::Relaxed) };
        if dst_aligned {
            // SAFETY: dst + i is 8-aligned too, and in range.
            unsafe { (*(dst.add(i) as *const AtomicU64)).store(v, Ordering::Relaxed) };
        } else {
            for (k, b) in v.to_ne_bytes().into_iter().enumerate() {
                // SAFETY: in range; AtomicU8 has alignment 1.
                unsafe { (*(dst.add(i + k) as *const AtomicU8)).store(b, Ordering::Relaxed) };
            }
        }
        i += 8;
    }
    (i..len).for_each(byte);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn every_length_and_alignment_copies_exactly() {
        let src: Vec<u8> = (0..1200u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 255, 256, 257, 1000] {
            for s_off in 0..9 {
                for d_off in 0..9 {
                    let mut dst = vec![0xEEu8; 1200];
                    // SAFETY: both ranges are inside their vectors and unshared.
                    unsafe { copy(dst.as_mut_ptr().add(d_off), src.as_ptr().add(s_off), len) };
                    assert_eq!(&dst[d_off..d_off + len], &src[s_off..s_off + len]);
                    assert!(dst[..d_off].iter().all(|&b| b == 0xEE));
                    assert!(dst[d_off + len..].iter().all(|&b| b == 0xEE));
                }
            }
        }
    }
}
