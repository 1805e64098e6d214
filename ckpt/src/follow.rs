//! The files an open checkpoint has been on.
//!
//! A replica that fell behind its primary's ring, or holds another history,
//! is rebuilt from a snapshot into a new file, which takes the checkpoint's
//! name in one rename; the node daemon then marks the old file superseded
//! (`Segment::supersede`). A handle opened on the old file moves to the new
//! one the next time it is used: [`Files::current`] sees the mark, opens the
//! checkpoint by name again and, if that is the same checkpoint (the same
//! incarnation; or the incarnation its file yielded to, created on another
//! node at the same time, with the same attributes) and not superseded
//! itself, uses it from then on. Section
//! handles and watchers made on an older file find their place in the new
//! one (a section by its id; a watcher by a resynchronization).
//!
//! Every file stays mapped until the handle closes: references into an older
//! one (a watcher's consumer, a `&Segment` a caller holds) stay valid, and
//! nothing here needs `unsafe`. A file costs its mapping; rebuilds are rare
//! (a link down for longer than the ring holds, or a new incarnation).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ckpt_core::error::OpenError;
use ckpt_core::{CreationAttributes, OpenFlags};
use ckpt_shm::segment::Mapped;
use ckpt_shm::Segment;

/// How long a handle whose file is superseded waits before it tries again
/// to find the checkpoint's next file, after a try that failed for a
/// reason that may pass (the file could not be opened or mapped).
pub const FOLLOW_RETRY: Duration = Duration::from_millis(100);

/// One file of the chain, and the one that replaced it.
struct File {
    segment: Segment,
    next: OnceLock<Box<File>>,
}

impl File {
    fn new(segment: Segment) -> File {
        File {
            segment,
            next: OnceLock::new(),
        }
    }
}

/// The files of one open checkpoint, first to newest. A file's number is
/// its place in the chain (0: the one the handle opened).
pub(crate) struct Files {
    first: File,
    /// Held while a thread looks for the next file (one at a time; the
    /// others go on with the file they have meanwhile).
    following: Mutex<()>,
    /// Before this time (ms on [`Files::epoch`]) nobody looks again, after
    /// a look that failed for a reason that may pass.
    retry_at_ms: AtomicU64,
    epoch: Instant,
    /// True once the newest file is the last this handle will have: the
    /// name is gone, or another incarnation (another checkpoint) holds it.
    settled: AtomicBool,
}

impl Files {
    pub fn new(segment: Segment) -> Files {
        Files {
            first: File::new(segment),
            following: Mutex::new(()),
            retry_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            settled: AtomicBool::new(false),
        }
    }

    /// The file the handle opened: for what every file of the chain has
    /// alike (the name, the creation attributes, the open flags, the
    /// configuration), without a look at which is current.
    #[inline]
    pub fn first(&self) -> &Segment {
        &self.first.segment
    }

    /// The file the handle is on now, and its number: the first one unless
    /// it was superseded (one load of its role word).
    #[inline]
    pub fn current(&self) -> (&Segment, u32) {
        let first = &self.first.segment;
        if !first.is_superseded() {
            return (first, 0);
        }
        self.follow()
    }

    /// File `number` of the chain, if the handle has had that many.
    pub fn get(&self, number: u32) -> Option<&Segment> {
        let mut file = &self.first;
        for _ in 0..number {
            file = file.next.get()?;
        }
        Some(&file.segment)
    }

    /// The newest file of the chain and its number.
    fn newest(&self) -> (&File, u32) {
        let (mut file, mut number) = (&self.first, 0);
        while let Some(next) = file.next.get() {
            (file, number) = (next, number + 1);
        }
        (file, number)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The newest file, after moving to the checkpoint's next one if the
    /// newest was superseded. Never waits: a thread that finds another
    /// looking, or a look due later, goes on with the file it has. The next
    /// file is looked at without registering as its opener (an open of
    /// another incarnation would restart that one's retention), and is
    /// opened only if it is the same checkpoint (the same incarnation) and
    /// not superseded itself. A handle whose checkpoint's name is gone, or
    /// held by another incarnation, stays where it is for good: a
    /// checkpoint unlinked and created again is another checkpoint, which an
    /// open handle never moves to (SA: it keeps the one it opened).
    #[cold]
    fn follow(&self) -> (&Segment, u32) {
        let (file, number) = self.newest();
        let old = &file.segment;
        if !old.is_superseded()
            || self.settled.load(Ordering::Acquire)
            || self.now_ms() < self.retry_at_ms.load(Ordering::Relaxed)
        {
            return (old, number);
        }
        let Ok(_looking) = self.following.try_lock() else {
            return (old, number);
        };
        // Another thread may have moved on before this one took the lock.
        let (file, number) = self.newest();
        let old = &file.segment;
        if !old.is_superseded() || self.settled.load(Ordering::Acquire) {
            return (old, number);
        }
        let retry = || {
            let at = self.now_ms() + FOLLOW_RETRY.as_millis() as u64;
            self.retry_at_ms.store(at, Ordering::Relaxed);
        };
        match ckpt_shm::segment::inspect(old.config(), old.name()) {
            Ok(next) if same_checkpoint(old, &next) => {}
            Ok(_) | Err(OpenError::NotExist) => {
                // SYNC POINT: Release pairs with the Acquire loads above
                // (a flag only: the chain itself is read through OnceLock).
                self.settled.store(true, Ordering::Release);
                return (old, number);
            }
            Err(_) => {
                retry();
                return (old, number);
            }
        }
        let kept = old.flags().bits() & !OpenFlags::CREATE.bits();
        let flags = OpenFlags::from_bits(kept).unwrap_or(OpenFlags::READ);
        match Segment::open(old.config(), old.name(), flags, None) {
            Ok(new) if same_checkpoint(old, &new) && !new.is_superseded() => {
                let next = file.next.get_or_init(|| Box::new(File::new(new)));
                (&next.segment, number + 1)
            }
            // Replaced again since the look (a rebuild just now: its file
            // is marked in a moment), or another incarnation came.
            _ => {
                retry();
                (old, number)
            }
        }
    }
}

/// True if `next`, now under the name of a handle's superseded file `old`,
/// is the checkpoint the handle opened: the same incarnation, or, where
/// `old` yielded to another incarnation created elsewhere at the same time
/// (`Segment::yield_to`), that one if it has the creation attributes the
/// handle opened with (an open of it would have succeeded).
fn same_checkpoint(old: &Segment, next: &Mapped) -> bool {
    if next.incarnation() == old.incarnation() {
        return true;
    }
    let kept = |a: &CreationAttributes| CreationAttributes {
        retention_ns: 0,
        ..*a
    };
    old.is_yielded() && kept(next.attributes()) == kept(old.attributes())
}
