//! Writes of 4 GiB and more: no truncation, no panic, and the log alone still
//! carries every byte (as Stage frames).

use ckpt_core::error::WriteError;
use ckpt_core::{CheckpointName, CreationAttributes, OpenFlags};
use ckpt_shm::{Config, Segment};

const GIB: u64 = 1 << 30;

/// `len` readable zero bytes that cost no memory (untouched anonymous pages
/// all map the kernel's zero page).
struct Zeros {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Zeros {
    fn new(len: usize) -> Zeros {
        // SAFETY: a fresh private anonymous mapping; no address requested.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap of {len} zero bytes");
        Zeros { ptr, len }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes, alive while `self` is.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Zeros {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

fn free_bytes(dir: &std::path::Path) -> u64 {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs is plain integers: all zeroes is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs fills the struct we own from a NUL-terminated path.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    st.f_bavail as u64 * st.f_frsize as u64
}

#[test]
fn a_write_of_more_than_4_gib_is_logged_whole_and_read_back() {
    let len = 4 * GIB + 24;
    let dir = tempfile::Builder::new()
        .prefix("ckpt-large-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    // The section's buffer fills 4 GiB of tmpfs, plus the ring.
    if free_bytes(dir.path()) < 5 * GIB {
        println!(
            "SKIPPED: {} has less than 5 GiB free for a 4 GiB write",
            dir.path().display()
        );
        return;
    }
    let config = Config {
        log_bytes: Some(16 << 20),
        ..Config::with_dir(dir.path())
    };
    let name = CheckpointName::new("four-gib").unwrap();
    // One section: the default one (empty id).
    let attrs = CreationAttributes::new(1, len);
    let seg = Segment::open(
        &config,
        &name,
        OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE,
        Some(&attrs),
    )
    .unwrap();
    let section = seg.lookup(b"").unwrap().unwrap();
    let zeros = Zeros::new(len as usize + 1);

    // One byte more than the section may hold: an error, not a panic.
    assert_eq!(
        seg.write(section, None, zeros.bytes()),
        Err(WriteError::TooLarge)
    );
    assert_eq!(
        seg.write(section, Some(u64::MAX - 2), b"xyz"),
        Err(WriteError::TooLarge)
    );

    // The ring (16 MiB) cannot hold 4 GiB: the data goes as Stage frames of
    // at most a quarter of the ring, published as they fill (writers never
    // wait for consumers), then the overwrite's own frame with the last piece.
    let data = &zeros.bytes()[..len as usize];
    let before = seg.last_seq();
    let position = seg.log_tail();
    seg.write(section, None, data).unwrap();
    let room = ((16u64 << 20) / 4 - 64) & !7;
    let stages = (len - 1) / room;
    assert_eq!(
        seg.last_seq() - before,
        stages + 1,
        "{stages} stages and the overwrite"
    );
    assert!(
        seg.log_tail() - position > len,
        "every byte went through the ring"
    );
    let mut tail = [1u8; 64];
    let (n, meta) = seg.read(section, len - 64, &mut tail).unwrap();
    assert_eq!((n, meta.size, meta.version), (64, len, 2));
    assert_eq!(tail, [0u8; 64]);
}
