//! What the handles name: a library instance (`saCkptInitialize`) with its
//! callback queue and selection object, its open checkpoints, and their
//! section iterations.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use ckpt::{Checkpoint, Mutation, SectionCursor, Service, WatchError};

use crate::handles::{Kind, Table};
use crate::profile::Profile;
use crate::types::SaCkptCheckpointTrackCallbackT;
use crate::types::*;

/// Library instances (`SaCkptHandleT`).
pub static LIBRARIES: Table<Library> = Table::new(Kind::Library);
/// Open checkpoints (`SaCkptCheckpointHandleT`).
pub static CHECKPOINTS: Table<Open> = Table::new(Kind::Checkpoint);
/// Section iterations (`SaCkptSectionIterationHandleT`).
pub static ITERATIONS: Table<Iteration> = Table::new(Kind::Iteration);

/// Callbacks queued per library instance at most (then the async call that
/// would queue one more gets `TRY_AGAIN`).
pub const PENDING_MAX: usize = 4096;

/// A section change a track callback reports (without data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub id: Vec<u8>,
    pub offset: u64,
    pub size: u64,
}

/// Changes one track callback reports at most.
pub const TRACK_BATCH_MAX: usize = 64;

/// A callback waiting for `saCkptDispatch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    /// `saCkptCheckpointOpenCallback(invocation, checkpoint, error)`.
    Open {
        invocation: SaInvocationT,
        checkpoint: SaCkptCheckpointHandleT,
        error: SaAisErrorT,
    },
    /// `saCkptCheckpointSynchronizeCallback(invocation, error)`, for `checkpoint`.
    Synchronize {
        invocation: SaInvocationT,
        checkpoint: SaCkptCheckpointHandleT,
        error: SaAisErrorT,
    },
    /// The track callback: sections of `checkpoint` that another handle changed.
    Track {
        checkpoint: SaCkptCheckpointHandleT,
        changes: Vec<Changed>,
    },
}

impl Callback {
    fn checkpoint(&self) -> SaCkptCheckpointHandleT {
        match *self {
            Callback::Open { checkpoint, .. }
            | Callback::Synchronize { checkpoint, .. }
            | Callback::Track { checkpoint, .. } => checkpoint,
        }
    }
}

/// Mutable state of a library instance.
#[derive(Default)]
pub struct LibraryState {
    pub finalized: bool,
    pub pending: VecDeque<Callback>,
    /// Checkpoint handles opened through this instance (closed by finalize).
    pub checkpoints: Vec<SaCkptCheckpointHandleT>,
}

/// A library instance.
pub struct Library {
    pub service: Service,
    pub callbacks: SaCkptCallbacksT,
    /// The version the caller asked for (B.01 callers free with `free()`).
    pub version: SaVersionT,
    /// Its compatibility profile.
    pub profile: Profile,
    /// The track callback (`saCkptInitialize_2`, or an arrival callback).
    pub track: Mutex<SaCkptCheckpointTrackCallbackT>,
    /// Tracking is on (`saCkptTrack`, or an arrival callback registered).
    pub tracking: AtomicBool,
    /// The selection object: an eventfd that is readable exactly while
    /// callbacks are queued (or the instance is finalized, to wake blocking
    /// dispatchers). It is set and cleared under the state lock, as the
    /// queue changes, so it never disagrees with the queue for long.
    events: OwnedFd,
    state: Mutex<LibraryState>,
}

impl Library {
    /// A new instance; `None` if no eventfd could be made.
    pub fn new(
        callbacks: SaCkptCallbacksT,
        track: SaCkptCheckpointTrackCallbackT,
        version: SaVersionT,
        profile: Profile,
    ) -> Option<Library> {
        // SAFETY: plain system call; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return None;
        }
        Some(Library {
            service: Service::new(),
            callbacks,
            version,
            profile,
            track: Mutex::new(track),
            tracking: AtomicBool::new(false),
            // SAFETY: fd is a new descriptor that nothing else owns.
            events: unsafe { OwnedFd::from_raw_fd(fd) },
            state: Mutex::new(LibraryState::default()),
        })
    }

    pub fn state(&self) -> MutexGuard<'_, LibraryState> {
        // Every update of the state is complete before any code that can
        // panic runs, so a poisoned lock still guards consistent data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The selection object's descriptor.
    pub fn selection_object(&self) -> i32 {
        self.events.as_raw_fd()
    }

    /// Makes the selection object readable. (A forked child never gets here
    /// with its parent's instance: the handle tables refuse its copies.)
    fn set_readable(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd; its count
        // stays tiny (set only when it is clear, or at finalize).
        unsafe { libc::write(self.events.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Makes the selection object not readable (reads its whole count).
    fn clear_readable(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our (non-blocking) eventfd.
        unsafe { libc::read(self.events.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
    }

    /// Queues a callback; false if the queue is full or the instance finalized.
    pub fn queue(&self, callback: Callback) -> bool {
        let mut s = self.state();
        if s.finalized || s.pending.len() >= PENDING_MAX {
            return false;
        }
        // Checked under the lock `stop_tracking` takes: nothing is queued
        // for a change a tracker saw after tracking stopped.
        if matches!(callback, Callback::Track { .. }) && !self.tracking() {
            return false;
        }
        s.pending.push_back(callback);
        if s.pending.len() == 1 {
            self.set_readable();
        }
        true
    }

    /// Takes the next queued callback (the selection object is cleared when
    /// the queue empties, and whenever it is found empty).
    pub fn next_callback(&self) -> Option<Callback> {
        let mut s = self.state();
        let callback = s.pending.pop_front();
        if s.pending.is_empty() && !s.finalized {
            self.clear_readable();
        }
        callback
    }

    /// Drops the queued callbacks that concern `checkpoint` (it was closed).
    pub fn cancel(&self, checkpoint: SaCkptCheckpointHandleT) {
        let mut s = self.state();
        s.pending.retain(|c| c.checkpoint() != checkpoint);
        if s.pending.is_empty() && !s.finalized {
            self.clear_readable();
        }
    }

    /// Runs `callback` in the caller's thread.
    pub fn run(&self, callback: Callback) {
        match callback {
            Callback::Open {
                invocation,
                checkpoint,
                error,
            } => {
                if let Some(f) = self.callbacks.open {
                    // SAFETY: the application registered this function with
                    // this signature; we call it as the API says.
                    unsafe { f(invocation, checkpoint, error) };
                }
            }
            Callback::Synchronize {
                invocation, error, ..
            } => {
                if let Some(f) = self.callbacks.synchronize {
                    // SAFETY: as above.
                    unsafe { f(invocation, error) };
                }
            }
            Callback::Track {
                checkpoint,
                mut changes,
            } => {
                let Some(f) = *self.track.lock().unwrap_or_else(|p| p.into_inner()) else {
                    return;
                };
                let mut iov: Vec<SaCkptIOVectorElementT> = changes
                    .iter_mut()
                    .map(|c| SaCkptIOVectorElementT {
                        section_id: SaCkptSectionIdT {
                            id_len: c.id.len() as u16,
                            id: if c.id.is_empty() {
                                std::ptr::null_mut()
                            } else {
                                c.id.as_mut_ptr()
                            },
                        },
                        data_buffer: std::ptr::null_mut(),
                        data_size: c.size,
                        data_offset: c.offset,
                        read_size: 0,
                    })
                    .collect();
                // SAFETY: the application registered this function with this
                // signature; the vector and the ids it points to live until
                // it returns.
                unsafe { f(checkpoint, iov.as_mut_ptr(), iov.len() as u32) };
            }
        }
    }

    /// Stops tracking and drops the track callbacks not yet dispatched;
    /// false if tracking was off.
    pub fn stop_tracking(&self) -> bool {
        let mut s = self.state();
        if !self.tracking.swap(false, Ordering::AcqRel) {
            return false;
        }
        s.pending.retain(|c| !matches!(c, Callback::Track { .. }));
        if s.pending.is_empty() && !s.finalized {
            self.clear_readable();
        }
        true
    }

    /// True while tracking is on.
    pub fn tracking(&self) -> bool {
        self.tracking.load(Ordering::Acquire)
    }

    /// Marks the instance finalized and wakes blocking dispatchers; returns
    /// the checkpoints it had open.
    pub fn finalize(&self) -> Vec<SaCkptCheckpointHandleT> {
        let mut s = self.state();
        s.finalized = true;
        s.pending.clear();
        let checkpoints = std::mem::take(&mut s.checkpoints);
        self.set_readable();
        checkpoints
    }

    pub fn is_finalized(&self) -> bool {
        self.state().finalized
    }

    /// Waits until the selection object is readable (or `ms` passes; -1:
    /// forever). Interrupted waits return early.
    pub fn wait(&self, ms: i32) {
        let mut pfd = libc::pollfd {
            fd: self.events.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        unsafe { libc::poll(&mut pfd, 1, ms) };
    }
}

/// An open checkpoint.
pub struct Open {
    pub checkpoint: Checkpoint,
    /// The library instance it was opened through.
    pub library: SaCkptHandleT,
    /// That instance's profile.
    pub profile: Profile,
    /// A tracker follows this handle's checkpoint: its writes record the
    /// sequence numbers of their frames in `own` (first..=last per call), so
    /// the tracker does not report them.
    pub tracked: AtomicBool,
    pub own: Mutex<VecDeque<(u64, u64)>>,
    /// The tracker thread, joined by close (so that the checkpoint is closed
    /// when close returns, not when the tracker next looks).
    tracker: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Its iterations (finalized when it closes).
    pub iterations: Mutex<Vec<SaCkptSectionIterationHandleT>>,
}

/// Own writes remembered per tracked handle (older ones are forgotten: a
/// tracker more than this many of its handle's writes behind reports them).
const OWN_WRITES_MAX: usize = 1024;

impl Open {
    pub fn new(checkpoint: Checkpoint, library: SaCkptHandleT, profile: Profile) -> Open {
        Open {
            checkpoint,
            library,
            profile,
            tracked: AtomicBool::new(false),
            tracker: Mutex::new(None),
            own: Mutex::new(VecDeque::new()),
            iterations: Mutex::new(Vec::new()),
        }
    }

    pub fn iterations(&self) -> MutexGuard<'_, Vec<SaCkptSectionIterationHandleT>> {
        self.iterations.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tracker(&self) -> MutexGuard<'_, Option<std::thread::JoinHandle<()>>> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for this handle's tracker to end (its handle is closed: it
    /// stops within its poll interval). Called by close.
    pub fn join_tracker(&self) {
        let tracker = self.tracker().take();
        if let Some(t) = tracker {
            let _ = t.join();
        }
    }

    fn own(&self) -> MutexGuard<'_, VecDeque<(u64, u64)>> {
        self.own.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `mutation` through this handle. If the handle is tracked, the
    /// sequence numbers of the frames it logged (this thread's, so no other
    /// writer's) are remembered, under the lock its tracker takes to ask, so
    /// the tracker cannot see the frames before they are remembered.
    #[inline]
    pub fn through<T, E>(&self, mutation: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        if !self.tracked.load(Ordering::Relaxed) {
            return mutation();
        }
        let mut own = self.own();
        ckpt::thread_frames_reset();
        let result = mutation();
        if let Some(frames) = ckpt::thread_frames() {
            if own.len() == OWN_WRITES_MAX {
                own.pop_front();
            }
            own.push_back((*frames.start(), *frames.end()));
        }
        result
    }

    /// True if the frame numbered `seq` was logged through this handle.
    fn is_own(&self, seq: u64) -> bool {
        let mut own = self.own();
        while own.front().is_some_and(|&(_, last)| last < seq) {
            own.pop_front();
        }
        own.front().is_some_and(|&(first, _)| first <= seq)
    }
}

/// How often a tracker checks whether it should stop.
const TRACK_POLL: Duration = Duration::from_millis(10);

/// Starts a tracker for checkpoint handle `handle` of `lib` if tracking is on,
/// the handle was opened for reading, and none runs yet.
pub fn track(lib: &Arc<Library>, handle: SaCkptCheckpointHandleT, open: &Arc<Open>) {
    let readable = open.checkpoint.flags().contains(ckpt::OpenFlags::READ);
    if !lib.tracking() || !readable || open.tracked.swap(true, Ordering::AcqRel) {
        return;
    }
    // Changes from now on, however late the thread starts.
    let from = open.checkpoint.watch().position();
    // A tracker that ended (tracking was stopped) is joined first.
    open.join_tracker();
    let (weak, theirs) = (Arc::downgrade(lib), open.clone());
    let spawned = std::thread::Builder::new()
        .name("ckpt-track".into())
        .spawn(move || follow(weak, handle, &theirs, from));
    match spawned {
        Ok(t) => *open.tracker() = Some(t),
        Err(_) => {
            // No thread: nothing is tracked for this handle (as with tracking off).
            open.tracked.store(false, Ordering::Release);
            eprintln!("libSaCkpt: could not start a tracker thread; track callbacks are off for this checkpoint");
        }
    }
}

/// A tracker: turns the checkpoint's changes made through other handles into
/// track callbacks, until tracking stops, the handle closes or the instance
/// is finalized.
fn follow(lib: Weak<Library>, handle: SaCkptCheckpointHandleT, open: &Arc<Open>, from: u64) {
    let mut watcher = open.checkpoint.watch_from(from);
    loop {
        let Some(l) = lib.upgrade() else { break };
        if l.is_finalized() || !l.tracking() || CHECKPOINTS.get(handle).is_none() {
            break;
        }
        drop(l);
        watcher.wait(TRACK_POLL, Duration::ZERO);
        let mut changes = Vec::new();
        while changes.len() < TRACK_BATCH_MAX {
            let change = match watcher.next_change() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(WatchError::Lagged { .. }) => {
                    // Changes were lost to the ring: go on from now (the
                    // application reads the sections for their state).
                    let _ = watcher.resync();
                    break;
                }
                Err(_) => break,
            };
            if open.is_own(change.seq) {
                continue;
            }
            let (id, offset, size) = match change.mutation {
                Mutation::Create { id, data, .. } if !data.is_empty() => (id, 0, data.len()),
                Mutation::Write { id, offset, data } => (id, offset, data.len()),
                Mutation::Overwrite { id, data } => (id, 0, data.len()),
                _ => continue,
            };
            changes.push(Changed {
                id: id.to_vec(),
                offset,
                size: size as u64,
            });
        }
        if !changes.is_empty() {
            if let Some(l) = lib.upgrade() {
                l.queue(Callback::Track {
                    checkpoint: handle,
                    changes,
                });
            }
        }
    }
    open.tracked.store(false, Ordering::Release);
}

/// A section iteration: the chosen sections, each described as it is when
/// it is handed out.
pub struct Iteration {
    pub checkpoint: Arc<Open>,
    pub state: Mutex<IterationState>,
}

pub struct IterationState {
    pub cursor: SectionCursor,
    /// The id of the section last returned: the descriptor points to it until
    /// the next call.
    pub current: Vec<u8>,
}

impl Iteration {
    pub fn state(&self) -> MutexGuard<'_, IterationState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
