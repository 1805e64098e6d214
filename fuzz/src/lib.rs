//! Helpers shared by the fuzz targets in `fuzz_targets/`.

pub mod primary;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

use tempfile::TempDir;

/// Scratch directories alive in this process. A failing target aborts without
/// unwinding, so the panic hook removes these: segments left on tmpfs would
/// hold memory until reboot.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A fresh, empty segment directory, removed when dropped or on a panic.
pub struct ScratchDir(TempDir);

impl ScratchDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Ok(mut live) = LIVE.lock() {
            live.retain(|p| p != self.0.path());
        }
    }
}

/// A new scratch directory, on tmpfs (`/dev/shm`) when there is one, like
/// real segments: mapping and preallocating there costs no disk I/O.
pub fn scratch_dir() -> ScratchDir {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // Runs before the hook libFuzzer installed at start-up, which aborts.
        let next = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // try_lock: the panic may have struck while the lock was held.
            if let Ok(live) = LIVE.try_lock() {
                for dir in live.iter() {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            next(info);
        }));
    });
    let mut builder = tempfile::Builder::new();
    builder.prefix("ckpt-fuzz-");
    let dir = builder
        .tempdir_in("/dev/shm")
        .or_else(|_| builder.tempdir())
        .expect("cannot create a temporary directory");
    LIVE.lock()
        .expect("scratch list")
        .push(dir.path().to_owned());
    ScratchDir(dir)
}
