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

/// Why [`Library::try_queue`] did not queue a callback.
pub enum Refused {
    /// The queue holds [`PENDING_MAX`] callbacks: here is this one back.
    Full(Callback),
    /// The instance is finalized, or tracking is off for a track callback.
    Closed,
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
        self.try_queue(callback).is_ok()
    }

    /// Queues a callback, or says why not: the queue is full (the callback
    /// comes back, to be queued later), or the instance is finalized (or, for
    /// a track callback, tracking is off).
    pub fn try_queue(&self, callback: Callback) -> Result<(), Refused> {
        let mut s = self.state();
        // Checked under the lock `stop_tracking` takes: nothing is queued
        // for a change a tracker saw after tracking stopped.
        if s.finalized || matches!(callback, Callback::Track { .. }) && !self.tracking() {
            return Err(Refused::Closed);
        }
        if s.pending.len() >= PENDING_MAX {
            return Err(Refused::Full(callback));
        }
        s.pending.push_back(callback);
        if s.pending.len() == 1 {
            self.set_readable();
        }
        Ok(())
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
    /// The creation flags this handle's open passed (`None` if it passed no
    /// creation attributes), before the profile dropped any.
    pub creation_flags: Option<u32>,
    /// SAFplus's immediate consumption, if registered on this handle.
    pub immediate: Mutex<Option<Immediate>>,
}

/// A `clCkptImmediateConsumptionRegister` registration: its tracker calls
/// `callback` with the full contents of the sections other handles change.
#[derive(Clone, Copy)]
pub struct Immediate {
    pub callback: unsafe extern "C" fn(
        SaCkptCheckpointHandleT,
        *mut SaNameT,
        *mut SaCkptIOVectorElementT,
        u32,
        *mut core::ffi::c_void,
    ) -> ClRcT,
    /// The application's cookie, handed back as it was given.
    pub cookie: usize,
}

/// Own writes remembered per tracked handle (older ones are forgotten: a
/// tracker more than this many of its handle's writes behind reports them).
const OWN_WRITES_MAX: usize = 1024;

impl Open {
    pub fn new(
        checkpoint: Checkpoint,
        library: SaCkptHandleT,
        profile: Profile,
        creation_flags: Option<u32>,
    ) -> Open {
        Open {
            checkpoint,
            library,
            profile,
            tracked: AtomicBool::new(false),
            tracker: Mutex::new(None),
            own: Mutex::new(VecDeque::new()),
            iterations: Mutex::new(Vec::new()),
            creation_flags,
            immediate: Mutex::new(None),
        }
    }

    /// The immediate-consumption registration, if any.
    pub fn immediate(&self) -> Option<Immediate> {
        *self.immediate.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn iterations(&self) -> MutexGuard<'_, Vec<SaCkptSectionIterationHandleT>> {
        self.iterations.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tracker(&self) -> MutexGuard<'_, Option<std::thread::JoinHandle<()>>> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for this handle's tracker to end (its handle is closed: it
    /// stops within its poll interval). Called by close. An immediate
    /// consumption callback that closes its own handle runs on the tracker:
    /// that tracker is not waited for (it ends when the callback returns).
    pub fn join_tracker(&self) {
        use std::os::unix::thread::JoinHandleExt;
        let tracker = self.tracker().take();
        if let Some(t) = tracker {
            // By pthread id, not `std::thread::current()`: that gives a C
            // thread (the program's main thread) a std handle its exit never
            // frees (valgrind: "possibly lost").
            // SAFETY: pthread_self has no preconditions.
            let me = unsafe { libc::pthread_self() };
            if t.as_pthread_t() as libc::pthread_t != me {
                let _ = t.join();
            }
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

/// Starts a tracker for checkpoint handle `handle` of `lib` if the handle
/// was opened for reading, tracking is on or an immediate consumption is
/// registered, and none runs yet.
pub fn track(lib: &Arc<Library>, handle: SaCkptCheckpointHandleT, open: &Arc<Open>) {
    let readable = open.checkpoint.flags().contains(ckpt::OpenFlags::READ);
    let wanted = lib.tracking() || open.immediate().is_some();
    if !wanted || !readable || open.tracked.swap(true, Ordering::AcqRel) {
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

/// True while the tracker of `handle` has work: its instance is live, the
/// handle open, and tracking on or an immediate consumption registered.
fn following(lib: &Weak<Library>, handle: SaCkptCheckpointHandleT, open: &Open) -> bool {
    let Some(l) = lib.upgrade() else { return false };
    !l.is_finalized()
        && CHECKPOINTS.get(handle).is_some()
        && (l.tracking() || open.immediate().is_some())
}

/// A tracker: turns the checkpoint's changes made through other handles into
/// track callbacks (queued for dispatch) and immediate-consumption callbacks
/// (called here), until neither is wanted, the handle closes or the instance
/// is finalized. If the log's ring overtakes it, the sections as they are
/// then stand for the changes it lost: every section is reported.
fn follow(
    lib: Weak<Library>,
    handle: SaCkptCheckpointHandleT,
    open: &Arc<Open>,
    from: ckpt::WatchPosition,
) {
    let mut watcher = open.checkpoint.watch_from(from);
    let mut consumer = Consumer::default();
    while following(&lib, handle, open) {
        watcher.wait(TRACK_POLL, Duration::ZERO);
        let mut changes = Vec::new();
        loop {
            let change = match watcher.next_change() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(WatchError::Lagged { .. }) => {
                    if let Ok(snapshot) = watcher.resync() {
                        changes = snapshot
                            .sections
                            .into_iter()
                            .map(|s| Changed {
                                size: s.data.len() as u64,
                                id: s.id,
                                offset: 0,
                            })
                            .collect();
                    }
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
            if changes.len() == TRACK_BATCH_MAX {
                break;
            }
        }
        if changes.is_empty() {
            continue;
        }
        if let Some(immediate) = open.immediate() {
            consumer.deliver(open, handle, immediate, &changes);
        }
        let tracking = lib.upgrade().is_some_and(|l| l.tracking());
        for batch in changes.chunks(TRACK_BATCH_MAX).filter(|_| tracking) {
            if !queue_track(&lib, handle, open, batch.to_vec()) {
                break;
            }
        }
    }
    open.tracked.store(false, Ordering::Release);
    // Tracking turned on again while this tracker was ending found it still
    // marked running: start its successor.
    if following(&lib, handle, open) {
        if let Some(l) = lib.upgrade() {
            track(&l, handle, open);
        }
    }
}

/// Queues a track callback, waiting while the queue is full (the tracker
/// falls behind, and reports every section if the ring overtakes it);
/// false if the tracker should stop.
fn queue_track(
    lib: &Weak<Library>,
    handle: SaCkptCheckpointHandleT,
    open: &Open,
    changes: Vec<Changed>,
) -> bool {
    let mut callback = Callback::Track {
        checkpoint: handle,
        changes,
    };
    loop {
        let Some(l) = lib.upgrade() else { return false };
        match l.try_queue(callback) {
            Ok(()) | Err(Refused::Closed) => return true,
            Err(Refused::Full(c)) => callback = c,
        }
        drop(l);
        if !following(lib, handle, open) {
            return false;
        }
        std::thread::sleep(TRACK_POLL);
    }
}

/// The buffers of a tracker's immediate-consumption calls (kept across
/// calls: after the first few, a call allocates only for a bigger section).
#[derive(Default)]
struct Consumer {
    ids: Vec<Vec<u8>>,
    data: Vec<Vec<u8>>,
    iov: Vec<SaCkptIOVectorElementT>,
}

impl Consumer {
    /// Calls `immediate` once with the current contents of each section
    /// `changes` names (each once; deleted or expired ones left out).
    fn deliver(
        &mut self,
        open: &Open,
        handle: SaCkptCheckpointHandleT,
        immediate: Immediate,
        changes: &[Changed],
    ) {
        let mut n = 0;
        for c in changes {
            if self.ids[..n].contains(&c.id) {
                continue;
            }
            if n == self.ids.len() {
                self.ids.push(Vec::new());
                self.data.push(Vec::new());
            }
            if open
                .checkpoint
                .read_section_into(&c.id, &mut self.data[n])
                .is_err()
            {
                continue;
            }
            self.ids[n].clear();
            self.ids[n].extend_from_slice(&c.id);
            n += 1;
        }
        if n == 0 {
            return;
        }
        self.iov.clear();
        for (id, data) in self.ids[..n].iter_mut().zip(&mut self.data[..n]) {
            self.iov.push(SaCkptIOVectorElementT {
                section_id: SaCkptSectionIdT {
                    id_len: id.len() as u16,
                    id: if id.is_empty() {
                        std::ptr::null_mut()
                    } else {
                        id.as_mut_ptr()
                    },
                },
                data_buffer: data.as_mut_ptr().cast(),
                data_size: data.len() as u64,
                data_offset: 0,
                read_size: data.len() as u64,
            });
        }
        // A fresh copy per call: the callback may write to it.
        let Some(mut name) = SaNameT::new(open.checkpoint.name().as_bytes()) else {
            return;
        };
        // SAFETY: the application registered this function with this
        // signature; the name, the vector, the ids and the data it points to
        // live until it returns.
        unsafe {
            (immediate.callback)(
                handle,
                &mut name,
                self.iov.as_mut_ptr(),
                n as u32,
                immediate.cookie as *mut core::ffi::c_void,
            )
        };
    }
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
