//! The files an open checkpoint has been on.
//!
//! A replica that fell behind its primary's ring, or holds another history,
//! is rebuilt from a snapshot into a new file, which takes the checkpoint's
//! name in one rename; the node daemon then marks the old file superseded
//! (`Segment::supersede`). A handle opened on the old file moves to the new
//! one the next time it is used: [`Files::current`] sees the mark, opens the
//! checkpoint by name again and, if that is the same checkpoint (the same
//! incarnation) and not superseded itself, uses it from then on. Section
//! handles and watchers made on an older file find their place in the new
//! one (a section by its id; a watcher by a resynchronization).
//!
//! Every file stays mapped until the handle closes: references into an older
//! one (a watcher's consumer, a `&Segment` a caller holds) stay valid, and
//! nothing here needs `unsafe`. A file costs its mapping; rebuilds are rare
//! (a link down for longer than the ring holds, or a new incarnation).

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ckpt_core::OpenFlags;
use ckpt_shm::Segment;

/// How long a handle whose file is superseded waits before it tries again
/// to open the checkpoint by name, after a try that did not find the
/// checkpoint's next file (gone, another incarnation, or superseded too).
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
    /// Held while a handle opens the next file (one open at a time); when
    /// the last try found none, the time before which it does not try again.
    following: Mutex<Option<Instant>>,
}

impl Files {
    pub fn new(segment: Segment) -> Files {
        Files {
            first: File::new(segment),
            following: Mutex::new(None),
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

    /// The newest file, after opening the checkpoint's next one if the
    /// newest was superseded (at most once per [`FOLLOW_RETRY`] when there is
    /// none to find). A handle that finds none stays on the file it has: a
    /// checkpoint unlinked and created again is another checkpoint, which an
    /// open handle never moves to (SA: it keeps the one it opened).
    #[cold]
    fn follow(&self) -> (&Segment, u32) {
        let (file, number) = self.newest();
        if !file.segment.is_superseded() {
            return (&file.segment, number);
        }
        let mut retry = self.following.lock().unwrap_or_else(|e| e.into_inner());
        // Another thread may have moved on while this one waited.
        let (file, number) = self.newest();
        let old = &file.segment;
        if !old.is_superseded() || retry.is_some_and(|at| Instant::now() < at) {
            return (old, number);
        }
        let kept = old.flags().bits() & !OpenFlags::CREATE.bits();
        let flags = OpenFlags::from_bits(kept).unwrap_or(OpenFlags::READ);
        match Segment::open(old.config(), old.name(), flags, None) {
            Ok(new) if new.incarnation() == old.incarnation() && !new.is_superseded() => {
                *retry = None;
                let next = file.next.get_or_init(|| Box::new(File::new(new)));
                (&next.segment, number + 1)
            }
            _ => {
                *retry = Some(Instant::now() + FOLLOW_RETRY);
                (old, number)
            }
        }
    }
}
